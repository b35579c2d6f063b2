//! `TapeNodes.ShapeOps` (`NN/Proofs/Autograd/Tape/Nodes/Shape.lean`): the shape nodes
//! of multi-head attention. `reshape` is a cast (the same coordinates, read with another
//! shape); `swapFirstTwo3d` and `transpose3dLastTwo` reindex along the `Fin`
//! equivalences `swapFirstTwoEquiv` and `transposeLastTwoEquiv`, built from
//! `finProdFinEquiv` (row-major) exactly as the Lean text composes them.

use std::rc::Rc;

use super::clm::{cast_clm, comp, BoxClm, Clm};
use super::context::{Context, Idx};
use super::error::SpecError;
use super::explicit::{of_vec, ExplicitNode};
use super::node::NodeFDerivCorrect;
use super::shape::{fin_prod_fin as pair, fin_prod_fin_symm as unpair, mat_size, shape_size};
use super::vector::check_len;
use crate::scalar::Scalar;

/// Which permutation of `Shape.lean` a [`FinEquiv`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `swapFirstTwoEquiv m n k`.
    SwapFirstTwo { m: usize, n: usize, k: usize },
    /// `transposeLastTwoEquiv a b c`.
    TransposeLastTwo { a: usize, b: usize, c: usize },
}

/// A coordinate permutation `Fin size ≃ Fin size` from `Shape.lean`
/// (`swapFirstTwoEquiv`, `transposeLastTwoEquiv`) or its inverse (`Equiv.symm`); the
/// size is checked for overflow when it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinEquiv {
    kind: Kind,
    inverse: bool,
    size: usize,
}

/// `swapFirstTwoEquiv m n k : Fin (m*(n*k)) ≃ Fin (n*(m*k))`, `(a, (b, c)) ↦ (b, (a,
/// c))`; an error if `m*(n*k)` overflows.
pub fn swap_first_two_equiv(m: usize, n: usize, k: usize) -> Result<FinEquiv, SpecError> {
    Ok(FinEquiv {
        kind: Kind::SwapFirstTwo { m, n, k },
        inverse: false,
        size: shape_size(&[m, n, k])?,
    })
}

/// `transposeLastTwoEquiv a b c : Fin (a*(b*(c*1))) ≃ Fin (a*(c*(b*1)))`, `(x, (p, (q,
/// 0))) ↦ (x, (q, (p, 0)))`; an error if `a*(b*c)` overflows.
pub fn transpose_last_two_equiv(a: usize, b: usize, c: usize) -> Result<FinEquiv, SpecError> {
    Ok(FinEquiv {
        kind: Kind::TransposeLastTwo { a, b, c },
        inverse: false,
        size: shape_size(&[a, b, c])?,
    })
}

impl FinEquiv {
    /// The size of the domain and of the codomain.
    pub fn size(&self) -> usize {
        self.size
    }

    /// `Equiv.symm`.
    pub fn symm(&self) -> FinEquiv {
        FinEquiv {
            inverse: !self.inverse,
            ..*self
        }
    }

    /// The image of `i`, following the Lean chain of `finProdFinEquiv`, `prodAssoc`,
    /// `prodComm` step by step (the inverse runs the chain backwards); `None` when `i`
    /// is out of range. Every product is at most the checked size.
    pub fn apply(&self, i: usize) -> Option<usize> {
        if i >= self.size {
            return None; // also: below, every dim is nonzero, so no product overflows
        }
        match (self.kind, self.inverse) {
            // e_m_nk.symm, e_n_k.symm, assoc.symm, comm, assoc, e_m_k, e_n_mk
            (Kind::SwapFirstTwo { m, n, k }, false) => {
                let (a, bc) = unpair(m, n * k, i)?;
                let (b, c) = unpair(n, k, bc)?;
                pair(n, m * k, b, pair(m, k, a, c)?)
            }
            (Kind::SwapFirstTwo { m, n, k }, true) => {
                let (b, ac) = unpair(n, m * k, i)?;
                let (a, c) = unpair(m, k, ac)?;
                pair(m, n * k, a, pair(n, k, b, c)?)
            }
            // e_a_bc1.symm, then swapBC on the second factor, then e_a_cb1
            (Kind::TransposeLastTwo { a, b, c }, false) => {
                let (x, bc1) = unpair(a, b * c, i)?;
                let (p, c1) = unpair(b, c, bc1)?;
                let (q, one) = unpair(c, 1, c1)?;
                pair(a, c * b, x, pair(c, b, q, pair(b, 1, p, one)?)?)
            }
            (Kind::TransposeLastTwo { a, b, c }, true) => {
                let (x, cb1) = unpair(a, c * b, i)?;
                let (q, b1) = unpair(c, b, cb1)?;
                let (p, one) = unpair(b, 1, b1)?;
                pair(a, b * c, x, pair(b, c, p, pair(c, 1, q, one)?)?)
            }
        }
    }
}

/// `ShapeOps.reindexVec e v = fun i => v (e.symm i)`.
pub fn reindex_vec<S: Scalar>(e: &FinEquiv, v: &[S]) -> Result<Vec<S>, SpecError> {
    check_len("reindexVec input", &[e.size()], e.size(), v.len())?;
    let back = e.symm();
    (0..e.size())
        .map(|i| {
            back.apply(i)
                .and_then(|j| v.get(j).cloned())
                .ok_or(SpecError::IndexOutOfRange {
                    position: i,
                    len: v.len(),
                })
        })
        .collect()
}

/// `ShapeOps.reindexLin e`: `reindexVec e` as a linear map; its adjoint is
/// `reindexVec e.symm` (`inner_reindex_left`).
pub struct ReindexLin {
    e: FinEquiv,
}

/// `ShapeOps.reindexLin e`.
pub fn reindex_lin<S: Scalar>(e: FinEquiv) -> BoxClm<S> {
    Box::new(ReindexLin { e })
}

impl<S: Scalar> Clm<S> for ReindexLin {
    fn dim_in(&self) -> usize {
        self.e.size()
    }
    fn dim_out(&self) -> usize {
        self.e.size()
    }
    fn apply(&self, x: &[S]) -> Result<Vec<S>, SpecError> {
        reindex_vec(&self.e, x)
    }
    fn adjoint(&self, delta: &[S]) -> Result<Vec<S>, SpecError> {
        reindex_vec(&self.e.symm(), delta)
    }
}

/// A node and its `NodeFDerivCorrect`.
pub type NodePair<S> = (ExplicitNode<S>, NodeFDerivCorrect<S>);

/// `ShapeOps.reshape idx h` and `ShapeOps.reshapeFderiv idx h`, `h : Shape.size s₁ =
/// Shape.size s₂` (checked: an error naming both shapes).
///
/// forward `x = castVec h (get idx x)`; jvp `= castVec h (get idx dx)`; vjp `= single
/// idx (castVec h.symm δ)`; `deriv _ = castCLM h ∘ getCLM idx`.
pub fn reshape<S: Scalar>(
    ctx: &Context,
    idx: &Idx,
    to: &[usize],
) -> Result<NodePair<S>, SpecError> {
    ctx.check_idx(idx)?;
    let (n1, n2) = (idx.size(), shape_size(to)?);
    if n1 != n2 {
        return Err(SpecError::Incompatible {
            op: "reshape (Shape.size s₁ = Shape.size s₂)",
            left: idx.shape().to_vec(),
            right: to.to_vec(),
        });
    }
    let (fi, ji, vi, di) = (idx.clone(), idx.clone(), idx.clone(), idx.clone());
    let f = Box::new(move |x: &[S]| cast_clm(n1, n2)?.apply(&fi.get(x)?));
    let jvp = Box::new(move |_: &[S], dx: &[S]| cast_clm(n1, n2)?.apply(&ji.get(dx)?));
    let vjp = Box::new(move |_: &[S], d: &[S]| vi.single(&cast_clm(n2, n1)?.apply(d)?));
    let deriv = Rc::new(move |_: &[S]| comp(cast_clm(n1, n2)?, di.get_clm()?));
    let node = of_vec(ctx.clone(), to.to_vec(), f, jvp, vjp)?;
    Ok((node, NodeFDerivCorrect::new(deriv)))
}

/// The common body of `swapFirstTwo3d` and `transpose3dLastTwo`: forward
/// `reindexVec e (get idx x)`, jvp `reindexVec e (get idx dx)`, vjp `single idx
/// (reindexVec e.symm δ)`, `deriv _ = reindexLin e ∘ getCLM idx`.
fn reindex_node<S: Scalar>(
    ctx: &Context,
    idx: &Idx,
    out_shape: Vec<usize>,
    e: FinEquiv,
) -> Result<NodePair<S>, SpecError> {
    let (fi, ji, vi, di) = (idx.clone(), idx.clone(), idx.clone(), idx.clone());
    let f = Box::new(move |x: &[S]| reindex_vec(&e, &fi.get(x)?));
    let jvp = Box::new(move |_: &[S], dx: &[S]| reindex_vec(&e, &ji.get(dx)?));
    let vjp = Box::new(move |_: &[S], d: &[S]| vi.single(&reindex_vec(&e.symm(), d)?));
    let deriv = Rc::new(move |_: &[S]| comp(reindex_lin(e), di.get_clm()?));
    let node = of_vec(ctx.clone(), out_shape, f, jvp, vjp)?;
    Ok((node, NodeFDerivCorrect::new(deriv)))
}

/// `ShapeOps.swapFirstTwo3d idx` and `ShapeOps.swapFirstTwo3dFderiv idx`: `.dim m
/// (.dim n rest) ↦ .dim n (.dim m rest)` along `swapFirstTwoEquiv m n (Shape.size
/// rest)` (PyTorch's `transpose(0, 1)`); an error for a shape of rank below 2.
pub fn swap_first_two3d<S: Scalar>(ctx: &Context, idx: &Idx) -> Result<NodePair<S>, SpecError> {
    ctx.check_idx(idx)?;
    let (m, n, rest) = match idx.shape() {
        [m, n, rest @ ..] => (*m, *n, rest),
        _ => {
            return Err(SpecError::Rank {
                op: "swapFirstTwo3d (.dim m (.dim n rest), rank ≥ 2)",
                expected: 2,
                shape: idx.shape().to_vec(),
            })
        }
    };
    let e = swap_first_two_equiv(m, n, shape_size(rest)?)?;
    let out = [&[n, m], rest].concat();
    reindex_node(ctx, idx, out, e)
}

/// `ShapeOps.transpose3dLastTwo idx` and `ShapeOps.transpose3dLastTwoFderiv idx`:
/// `.dim a (.dim b (.dim c .scalar)) ↦ .dim a (.dim c (.dim b .scalar))` along
/// `transposeLastTwoEquiv a b c`; an error unless the shape has rank 3.
pub fn transpose3d_last_two<S: Scalar>(ctx: &Context, idx: &Idx) -> Result<NodePair<S>, SpecError> {
    ctx.check_idx(idx)?;
    let [a, b, c] = idx.dims("transpose3dLastTwo")?;
    mat_size(a, mat_size(b, c)?)?;
    reindex_node(ctx, idx, vec![a, c, b], transpose_last_two_equiv(a, b, c)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_first_two_moves_entry_a_b_c_to_b_a_c() {
        // m=2, n=3, k=2: (a,b,c) = (1,2,0) at 1·6+2·2+0 = 10 goes to (2,1,0) at 2·4+1·2 = 10
        // and (0,1,1) at 3 goes to (1,0,1) at 4+1 = 5
        let e = swap_first_two_equiv(2, 3, 2).unwrap();
        assert_eq!(e.apply(3), Some(5));
        assert_eq!(e.symm().apply(5), Some(3));
        assert_eq!(e.apply(12), None);
    }

    #[test]
    fn transpose_last_two_is_a_per_batch_matrix_transpose() {
        // a=2, b=2, c=3: x[1][0][2] at 6+2 = 8 goes to y[1][2][0] at 6+4 = 10
        let e = transpose_last_two_equiv(2, 2, 3).unwrap();
        assert_eq!(e.apply(8), Some(10));
        let v: Vec<f64> = (0..12).map(f64::from).collect();
        let t = reindex_vec(&e, &v).unwrap();
        assert_eq!(&t[..6], &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    }

    #[test]
    fn bad_shapes_are_typed_errors_naming_them() {
        let ctx = Context::new(vec![vec![2, 3], vec![4]]).unwrap();
        let i = ctx.idx(0, &[2, 3]).unwrap();
        let err = reshape::<f64>(&ctx, &i, &[5]).err().unwrap();
        assert!(err.to_string().contains("[2, 3]") && err.to_string().contains("[5]"));
        let v = ctx.idx(1, &[4]).unwrap();
        let err = swap_first_two3d::<f64>(&ctx, &v).err().unwrap();
        assert!(matches!(err, SpecError::Rank { .. }), "{err}");
        let err = transpose3d_last_two::<f64>(&ctx, &i).err().unwrap();
        assert!(err.to_string().contains("[2, 3]"), "{err}");
    }
}
