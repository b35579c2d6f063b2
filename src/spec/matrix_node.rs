//! The 2-D matrix-multiplication node `TapeNodes.matmul` and its `TapeNodes.matmulFderiv`,
//! with `MatTranspose.transposeVec` (`NN/Proofs/Autograd/Tape/Nodes/Matrix.lean`).
//!
//! Unlike `Batched.matmul`, the Lean node writes its jvp and vjp by hand (`dA·B + A·dB`
//! and `single A (δ·Bᵀ) + single B (Aᵀ·δ)`); `matmulFderiv` packages the derivative
//! `Bmul.precompR (get A x) (getCLM B) + Bmul.precompL (getCLM A) (get B x)` separately.

use std::rc::Rc;

use super::bilinear::{precomp_l, precomp_r};
use super::clm::clm_add;
use super::context::{Context, Idx};
use super::error::SpecError;
use super::explicit::of_vec;
use super::matrix::{mat_size, matmul_bilin, matmul_vec};
use super::node::NodeFDerivCorrect;
use super::shape::fin_prod_fin_symm;
use super::shape_ops::NodePair;
use super::vector::{add, check_len};
use crate::scalar::Scalar;

/// `MatTranspose.transposeVec x`: the `n×m` transpose of an `m×n` matrix,
/// `out[j·m + i] = x[i·n + j]`.
pub fn transpose_vec<S: Scalar>(m: usize, n: usize, x: &[S]) -> Result<Vec<S>, SpecError> {
    let size = mat_size(m, n)?;
    check_len("transposeVec input", &[m, n], size, x.len())?;
    (0..size)
        .map(|k| {
            let (j, i) = fin_prod_fin_symm(n, m, k).ok_or(SpecError::IndexOutOfRange {
                position: k,
                len: size,
            })?;
            Ok(x[i * n + j].clone())
        })
        .collect()
}

/// `TapeNodes.matmul A B` and `TapeNodes.matmulFderiv A B` for `A : m×n`, `B : n×p`
/// (possibly the same input); an error naming both shapes if they do not fit.
pub fn matmul<S: Scalar>(ctx: &Context, a: &Idx, b: &Idx) -> Result<NodePair<S>, SpecError> {
    ctx.check_idx(a)?;
    ctx.check_idx(b)?;
    let [m, n] = a.dims("matmul left operand (m×n)")?;
    let [nb, p] = b.dims("matmul right operand (n×p)")?;
    if n != nb {
        return Err(SpecError::Incompatible {
            op: "matmul (m×n · n×p)",
            left: a.shape().to_vec(),
            right: b.shape().to_vec(),
        });
    }
    let bmul = matmul_bilin(m, n, p)?;
    let (fa, fb) = (a.clone(), b.clone());
    let f = Box::new(move |x: &[S]| matmul_vec(m, n, p, &fa.get(x)?, &fb.get(x)?));
    let (ja, jb) = (a.clone(), b.clone());
    let jvp = Box::new(move |x: &[S], dx: &[S]| {
        let (av, bv) = (ja.get(x)?, jb.get(x)?);
        add(
            &matmul_vec(m, n, p, &ja.get(dx)?, &bv)?,
            &matmul_vec(m, n, p, &av, &jb.get(dx)?)?,
        )
    });
    let (va, vb) = (a.clone(), b.clone());
    let vjp = Box::new(move |x: &[S], d: &[S]| {
        let da = matmul_vec(m, p, n, d, &transpose_vec(n, p, &vb.get(x)?)?)?;
        let db = matmul_vec(n, m, p, &transpose_vec(m, n, &va.get(x)?)?, d)?;
        add(&va.single(&da)?, &vb.single(&db)?)
    });
    let (da, db) = (a.clone(), b.clone());
    let deriv = Rc::new(move |x: &[S]| {
        clm_add(
            precomp_r(&bmul, &da.get(x)?, db.get_clm()?)?,
            precomp_l(&bmul, da.get_clm()?, &db.get(x)?)?,
        )
    });
    let node = of_vec(ctx.clone(), vec![m, p], f, jvp, vjp)?;
    Ok((node, NodeFDerivCorrect::new(deriv)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::node::Node;

    #[test]
    fn transpose_vec_is_the_matrix_transpose() {
        let t = transpose_vec(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!(t, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }

    #[test]
    fn matmul_vjp_is_delta_bt_and_at_delta() {
        // A = [1 2], B = [3; 4], δ = [5]: gA = δ·Bᵀ = [15 20], gB = Aᵀ·δ = [5; 10]
        let ctx = Context::new(vec![vec![1, 2], vec![2, 1]]).unwrap();
        let (a, b) = (ctx.idx(0, &[1, 2]).unwrap(), ctx.idx(1, &[2, 1]).unwrap());
        let (node, _) = matmul::<f64>(&ctx, &a, &b).unwrap();
        let x = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(node.forward(&x).unwrap(), vec![11.0]);
        assert_eq!(node.vjp(&x, &[5.0]).unwrap(), vec![15.0, 20.0, 5.0, 10.0]);
    }

    #[test]
    fn mismatched_inner_dims_name_both_shapes() {
        let ctx = Context::new(vec![vec![1, 2], vec![3, 1]]).unwrap();
        let (a, b) = (ctx.idx(0, &[1, 2]).unwrap(), ctx.idx(1, &[3, 1]).unwrap());
        let err = matmul::<f64>(&ctx, &a, &b).err().unwrap();
        assert!(err.to_string().contains("[1, 2]") && err.to_string().contains("[3, 1]"));
    }
}
