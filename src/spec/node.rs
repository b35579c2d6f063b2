//! `Node`, `Node.ofVec` and `NodeFDerivCorrect`
//! (`NN/Proofs/Autograd/Tape/Nodes/Context.lean`, `.../Core/FDeriv.lean`).
//!
//! A node reads its inputs from a context vector (`CtxVec Γ`) and produces a vector of
//! its output shape. Its vjp returns a whole context vector: cotangents for every input,
//! added together where two indices name the same input. The proof `correct_inner` of
//! the Lean structure becomes the exact check [`super::facts::correct_inner`].

use std::rc::Rc;

use super::clm::BoxClm;
use super::context::Context;
use super::error::SpecError;
use super::explicit::{of_vec, ExplicitNode};
use crate::scalar::Scalar;

/// A forward map `CtxVec Γ → Vec |τ|`.
pub type ForwardFn<S> = Box<dyn Fn(&[S]) -> Result<Vec<S>, SpecError>>;
/// A derivative `x ↦ deriv x : CtxVec Γ →L Vec |τ|`.
pub type DerivFn<S> = Rc<dyn Fn(&[S]) -> Result<BoxClm<S>, SpecError>>;

/// `Node Γ τ` in vectorized form: forward, jvp and vjp on context vectors.
pub trait Node<S: Scalar> {
    /// The context Γ.
    fn context(&self) -> &Context;
    /// The output shape τ.
    fn out_shape(&self) -> &[usize];
    /// `forwardVec x`.
    fn forward(&self, x: &[S]) -> Result<Vec<S>, SpecError>;
    /// `jvpVec x dx`.
    fn jvp(&self, x: &[S], dx: &[S]) -> Result<Vec<S>, SpecError>;
    /// `vjpVec x δ`: a cotangent for the whole context.
    fn vjp(&self, x: &[S], delta: &[S]) -> Result<Vec<S>, SpecError>;
}

/// `Node.ofVec f jvp vjp`, with `jvp x dx = deriv x dx` and `vjp x δ = (deriv x)† δ`, as
/// both nodes of `Batched` are built: an [`ExplicitNode`] whose jvp and vjp are read off
/// the derivative.
pub type OfVec<S> = ExplicitNode<S>;

/// `NodeFDerivCorrect node`: the derivative `deriv x` as a linear map. Its fields
/// `hasFDerivAt` and `jvp_eq` are the exact checks [`super::facts::has_fderiv_at`] and
/// [`super::facts::jvp_eq`].
pub struct NodeFDerivCorrect<S> {
    deriv: DerivFn<S>,
}

impl<S: Scalar> NodeFDerivCorrect<S> {
    /// Packages a derivative.
    pub fn new(deriv: DerivFn<S>) -> Self {
        NodeFDerivCorrect { deriv }
    }
    /// `deriv x`.
    pub fn deriv(&self, x: &[S]) -> Result<BoxClm<S>, SpecError> {
        (self.deriv)(x)
    }
}

/// Builds `Node.ofVec f (fun x dx => deriv x dx) (fun x δ => (deriv x).adjoint δ)`
/// and its `NodeFDerivCorrect` (sharing `deriv`).
pub fn of_deriv<S: Scalar>(
    ctx: Context,
    out_shape: Vec<usize>,
    f: ForwardFn<S>,
    deriv: DerivFn<S>,
) -> Result<(OfVec<S>, NodeFDerivCorrect<S>), SpecError> {
    let fd = NodeFDerivCorrect::new(deriv.clone());
    let adj = deriv.clone();
    let jvp = Box::new(move |x: &[S], dx: &[S]| deriv(x)?.apply(dx));
    let vjp = Box::new(move |x: &[S], d: &[S]| adj(x)?.adjoint(d));
    Ok((of_vec(ctx, out_shape, f, jvp, vjp)?, fd))
}
