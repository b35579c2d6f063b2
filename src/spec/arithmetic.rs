//! `TapeNodes.scale` and `TapeNodes.scaleFderiv`
//! (`NN/Proofs/Autograd/Tape/Nodes/Arithmetic.lean`): a context entry times a constant.

use std::rc::Rc;

use super::clm::smul_right;
use super::context::{Context, Idx};
use super::error::SpecError;
use super::explicit::of_vec;
use super::shape_ops::NodePair;
use super::vector::scale as smul;
use crate::scalar::Scalar;

/// `TapeNodes.scale idx c` and `TapeNodes.scaleFderiv idx c`.
///
/// forward `x = c • get idx x`; jvp `= c • get idx dx`; vjp `= single idx (c • δ)`;
/// `deriv _ = c • getCLM idx` (built as `smul_right`, the same map `x ↦ c·(getCLM x)`).
pub fn scale<S: Scalar>(ctx: &Context, idx: &Idx, c: &S) -> Result<NodePair<S>, SpecError> {
    ctx.check_idx(idx)?;
    let (fi, ji, vi, di) = (idx.clone(), idx.clone(), idx.clone(), idx.clone());
    let (fc, jc, vc, dc) = (c.clone(), c.clone(), c.clone(), c.clone());
    let f = Box::new(move |x: &[S]| Ok(smul(&fc, &fi.get(x)?)));
    let jvp = Box::new(move |_: &[S], dx: &[S]| Ok(smul(&jc, &ji.get(dx)?)));
    let vjp = Box::new(move |_: &[S], d: &[S]| vi.single(&smul(&vc, d)));
    let deriv = Rc::new(move |_: &[S]| Ok(smul_right(di.get_clm()?, dc.clone())));
    let node = of_vec(ctx.clone(), idx.shape().to_vec(), f, jvp, vjp)?;
    Ok((node, super::node::NodeFDerivCorrect::new(deriv)))
}
