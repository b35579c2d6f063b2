//! The seed module `Batched` (`NN/Proofs/Autograd/Tape/Nodes/Batched.lean`): the
//! batched bilinear `matmulBilin`, the nodes `matmul` and `softmaxLast`, and their
//! `NodeFDerivCorrect` values `matmulFderiv` and `softmaxLastFderiv`.

use std::rc::Rc;

use super::bilinear::{precomp_l, precomp_r, Bilinear};
use super::clm::{cast_clm, clm_add, comp, BoxClm};
use super::context::{Context, Idx};
use super::error::SpecError;
use super::heads::{heads, lift_headwise, map_heads};
use super::matrix;
use super::node::{of_deriv, NodeFDerivCorrect, OfVec};
use super::shape::{hmat_size, mat_size, shape_size};
use super::softmax_last_axis::{deriv_mn, forward_mn};
use crate::scalar::{ExpOracle, Scalar};

/// `Batched.matmulBilin : Vec (h*(m*n)) →L Vec (h*(n*p)) →L Vec (h*(m*p))`
/// `= unheadsCLM ∘ (head-wise Matmul.matmulBilin) ∘ headsCLM`: `C[k] = A[k]·B[k]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulBilin {
    h: usize,
    inner: matrix::MatmulBilin,
    mn: usize,
    np: usize,
    mp: usize,
}

/// `Batched.matmulBilin` for `h` heads of `m×n` times `n×p`; an error if a size
/// overflows.
pub fn matmul_bilin(h: usize, m: usize, n: usize, p: usize) -> Result<MatmulBilin, SpecError> {
    hmat_size(h, m, n)?;
    hmat_size(h, n, p)?;
    hmat_size(h, m, p)?;
    Ok(MatmulBilin {
        h,
        inner: matrix::matmul_bilin(m, n, p)?,
        mn: mat_size(m, n)?,
        np: mat_size(n, p)?,
        mp: mat_size(m, p)?,
    })
}

impl<S: Scalar> Bilinear<S> for MatmulBilin {
    fn dim_left(&self) -> usize {
        self.h * self.mn
    }
    fn dim_right(&self) -> usize {
        self.h * self.np
    }
    fn dim_out(&self) -> usize {
        self.h * self.mp
    }
    /// `LC ∘ (BH (LA a)) ∘ LB` with `BH aH = pi (fun k => B (aH k) ∘ proj k)`.
    fn left(&self, a: &[S]) -> Result<BoxClm<S>, SpecError> {
        let blocks = heads(self.h, self.mn, a)?
            .iter()
            .map(|ak| self.inner.left(ak))
            .collect::<Result<Vec<_>, _>>()?;
        lift_headwise(self.np, self.mp, blocks)
    }
    /// The flip: `LC ∘ pi (fun k => (B.flip (bH k)) ∘ proj k) ∘ LA`.
    fn flip(&self, b: &[S]) -> Result<BoxClm<S>, SpecError> {
        let blocks = heads(self.h, self.np, b)?
            .iter()
            .map(|bk| self.inner.flip(bk))
            .collect::<Result<Vec<_>, _>>()?;
        lift_headwise(self.mn, self.mp, blocks)
    }
}

/// `Batched.matmul A B` and `Batched.matmulFderiv A B` (they share `deriv`).
///
/// `A : h×m×n`, `B : h×n×p` (possibly the same input). forward `x = matmulBilin (get A
/// x) (get B x)`; `deriv x = Bmul.precompR (get A x) (getCLM B) + Bmul.precompL
/// (getCLM A) (get B x)`; jvp = deriv applied; vjp = its adjoint.
pub fn matmul_node<S: Scalar>(
    ctx: &Context,
    a: &Idx,
    b: &Idx,
) -> Result<(OfVec<S>, NodeFDerivCorrect<S>), SpecError> {
    ctx.check_idx(a)?;
    ctx.check_idx(b)?;
    let [h, m, n] = a.dims("matmul left operand")?;
    let [hb, nb, p] = b.dims("matmul right operand")?;
    if h != hb || n != nb {
        return Err(SpecError::Incompatible {
            op: "matmul (h×m×n · h×n×p)",
            left: a.shape().to_vec(),
            right: b.shape().to_vec(),
        });
    }
    let bmul = matmul_bilin(h, m, n, p)?;
    let (fa, fb) = (a.clone(), b.clone());
    let forward = Box::new(move |x: &[S]| bmul.apply(&fa.get(x)?, &fb.get(x)?));
    let (da, db) = (a.clone(), b.clone());
    let deriv = Rc::new(move |x: &[S]| {
        clm_add(
            precomp_r(&bmul, &da.get(x)?, db.get_clm()?)?,
            precomp_l(&bmul, da.get_clm()?, &db.get(x)?)?,
        )
    });
    of_deriv(ctx.clone(), vec![h, m, p], forward, deriv)
}

/// `Batched.matmul A B`: the node.
pub fn matmul<S: Scalar>(ctx: &Context, a: &Idx, b: &Idx) -> Result<OfVec<S>, SpecError> {
    Ok(matmul_node(ctx, a, b)?.0)
}

/// `Batched.matmulFderiv A B`: its `NodeFDerivCorrect`.
pub fn matmul_fderiv<S: Scalar>(
    ctx: &Context,
    a: &Idx,
    b: &Idx,
) -> Result<NodeFDerivCorrect<S>, SpecError> {
    Ok(matmul_node(ctx, a, b)?.1)
}

/// `Batched.softmaxLast idx` and `Batched.softmaxLastFderiv idx` (sharing `deriv`).
///
/// With `hsz : Shape.size (h×m×n) = h*(m*n)` ([`super::shape::size3_eq`]):
/// forward `= castVec hsz.symm ∘ unheads ∘ (forwardMN per head) ∘ heads ∘ castVec hsz ∘
/// get idx`; `deriv x = castCLM hsz.symm ∘ deriv0 (castVec hsz (get idx x)) ∘ castCLM
/// hsz ∘ getCLM idx`, `deriv0 x = unheadsCLM ∘ pi (derivMN (heads x k) ∘ proj k) ∘
/// headsCLM`.
pub fn softmax_last_node<S: Scalar>(
    ctx: &Context,
    idx: &Idx,
    oracle: &ExpOracle,
) -> Result<(OfVec<S>, NodeFDerivCorrect<S>), SpecError> {
    ctx.check_idx(idx)?;
    let [h, m, n] = idx.dims("softmaxLast")?;
    let size = shape_size(idx.shape())?;
    let hsz = hmat_size(h, m, n)?;
    let mn = mat_size(m, n)?;
    let (fi, fo) = (idx.clone(), oracle.clone());
    let forward0 = move |x: &[S]| map_heads(h, mn, x, |head| forward_mn(m, n, head, &fo));
    let forward = Box::new(move |x: &[S]| {
        let x0 = cast_clm(size, hsz)?.apply(&fi.get(x)?)?;
        cast_clm(hsz, size)?.apply(&forward0(&x0)?)
    });
    let (di, dor) = (idx.clone(), oracle.clone());
    let deriv0 = move |x: &[S]| {
        let blocks = heads(h, mn, x)?
            .iter()
            .map(|head| deriv_mn(m, n, head, &dor))
            .collect::<Result<Vec<_>, _>>()?;
        lift_headwise(mn, mn, blocks)
    };
    let deriv = Rc::new(move |x: &[S]| -> Result<BoxClm<S>, SpecError> {
        let x0 = cast_clm(size, hsz)?.apply(&di.get(x)?)?;
        let read = comp(cast_clm(size, hsz)?, di.get_clm()?)?;
        comp(cast_clm(hsz, size)?, comp(deriv0(&x0)?, read)?)
    });
    of_deriv(ctx.clone(), vec![h, m, n], forward, deriv)
}

/// `Batched.softmaxLast idx`: the node.
pub fn softmax_last<S: Scalar>(
    ctx: &Context,
    idx: &Idx,
    oracle: &ExpOracle,
) -> Result<OfVec<S>, SpecError> {
    Ok(softmax_last_node(ctx, idx, oracle)?.0)
}

/// `Batched.softmaxLastFderiv idx`: its `NodeFDerivCorrect`.
pub fn softmax_last_fderiv<S: Scalar>(
    ctx: &Context,
    idx: &Idx,
    oracle: &ExpOracle,
) -> Result<NodeFDerivCorrect<S>, SpecError> {
    Ok(softmax_last_node(ctx, idx, oracle)?.1)
}
