//! `Matmul` (`NN/Proofs/Autograd/Tape/Nodes/Matrix.lean`): single-matrix
//! multiplication on row-major flattened matrices, `matmulVec`, `matmulCLMRight` and the
//! bilinear `matmulBilin`, with the partial adjoints `δ ↦ Aᵀ·δ` and `δ ↦ δ·Bᵀ`.

use super::bilinear::Bilinear;
use super::clm::{BoxClm, Clm};
use super::error::SpecError;
use super::vector::check_len;
use crate::scalar::Scalar;

/// `Matmul.matSize m n = m * n` (defined in [`super::shape`]).
pub use super::shape::mat_size;

/// `out[i·cols + j] = Σₜ left(i, t) · right(t, j)` for `i < rows`, `j < cols`,
/// `t < inner`: the one contraction every product and partial adjoint here is.
fn contract<S: Scalar>(
    rows: usize,
    cols: usize,
    inner: usize,
    left: impl Fn(usize, usize) -> S,
    right: impl Fn(usize, usize) -> S,
) -> Vec<S> {
    let mut out = Vec::with_capacity(rows * cols);
    for i in 0..rows {
        for j in 0..cols {
            out.push((0..inner).fold(S::zero(), |acc, t| acc + left(i, t) * right(t, j)));
        }
    }
    out
}

/// `Matmul.matmulVec a b`: `(A·B)[i·p + k] = Σⱼ A[i·n + j] · B[j·p + k]` for an `m×n`
/// matrix `a` and an `n×p` matrix `b`.
pub fn matmul_vec<S: Scalar>(
    m: usize,
    n: usize,
    p: usize,
    a: &[S],
    b: &[S],
) -> Result<Vec<S>, SpecError> {
    check_len("matmul left", &[m, n], mat_size(m, n)?, a.len())?;
    check_len("matmul right", &[n, p], mat_size(n, p)?, b.len())?;
    mat_size(m, p)?;
    Ok(contract(
        m,
        p,
        n,
        |i, j| a[i * n + j].clone(),
        |j, k| b[j * p + k].clone(),
    ))
}

/// `Matmul.matmulBilin : Vec (m*n) →L Vec (n*p) →L Vec (m*p)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulBilin {
    m: usize,
    n: usize,
    p: usize,
}

/// `Matmul.matmulBilin` for `m×n` times `n×p`; an error if a size overflows.
pub fn matmul_bilin(m: usize, n: usize, p: usize) -> Result<MatmulBilin, SpecError> {
    mat_size(m, n)?;
    mat_size(n, p)?;
    mat_size(m, p)?;
    Ok(MatmulBilin { m, n, p })
}

/// `Matmul.matmulCLMRight a : b ↦ a·b`; adjoint `δ ↦ aᵀ·δ` (the partial adjoint of
/// `matmulBilin` in its right slot).
struct MatmulClmRight<S> {
    dims: MatmulBilin,
    a: Vec<S>,
}

/// `matmulBilin.flip b : a ↦ a·b`; adjoint `δ ↦ δ·bᵀ` (the partial adjoint of
/// `matmulBilin` in its left slot).
struct MatmulClmLeft<S> {
    dims: MatmulBilin,
    b: Vec<S>,
}

impl<S: Scalar> Clm<S> for MatmulClmRight<S> {
    fn dim_in(&self) -> usize {
        self.dims.n * self.dims.p
    }
    fn dim_out(&self) -> usize {
        self.dims.m * self.dims.p
    }
    fn apply(&self, b: &[S]) -> Result<Vec<S>, SpecError> {
        let MatmulBilin { m, n, p } = self.dims;
        matmul_vec(m, n, p, &self.a, b)
    }
    fn adjoint(&self, delta: &[S]) -> Result<Vec<S>, SpecError> {
        let MatmulBilin { m, n, p } = self.dims;
        check_len("matmul cotangent", &[m, p], m * p, delta.len())?;
        let a = &self.a;
        // (aᵀ·δ)[j·p + k] = Σᵢ a[i·n + j] · δ[i·p + k]
        Ok(contract(
            n,
            p,
            m,
            |j, i| a[i * n + j].clone(),
            |i, k| delta[i * p + k].clone(),
        ))
    }
}

impl<S: Scalar> Clm<S> for MatmulClmLeft<S> {
    fn dim_in(&self) -> usize {
        self.dims.m * self.dims.n
    }
    fn dim_out(&self) -> usize {
        self.dims.m * self.dims.p
    }
    fn apply(&self, a: &[S]) -> Result<Vec<S>, SpecError> {
        let MatmulBilin { m, n, p } = self.dims;
        matmul_vec(m, n, p, a, &self.b)
    }
    fn adjoint(&self, delta: &[S]) -> Result<Vec<S>, SpecError> {
        let MatmulBilin { m, n, p } = self.dims;
        check_len("matmul cotangent", &[m, p], m * p, delta.len())?;
        let b = &self.b;
        // (δ·bᵀ)[i·n + j] = Σₖ δ[i·p + k] · b[j·p + k]
        Ok(contract(
            m,
            n,
            p,
            |i, k| delta[i * p + k].clone(),
            |k, j| b[j * p + k].clone(),
        ))
    }
}

impl<S: Scalar> Bilinear<S> for MatmulBilin {
    fn dim_left(&self) -> usize {
        self.m * self.n
    }
    fn dim_right(&self) -> usize {
        self.n * self.p
    }
    fn dim_out(&self) -> usize {
        self.m * self.p
    }
    fn left(&self, a: &[S]) -> Result<BoxClm<S>, SpecError> {
        check_len("matmul left", &[self.m, self.n], self.m * self.n, a.len())?;
        Ok(Box::new(MatmulClmRight {
            dims: *self,
            a: a.to_vec(),
        }))
    }
    fn flip(&self, b: &[S]) -> Result<BoxClm<S>, SpecError> {
        check_len("matmul right", &[self.n, self.p], self.n * self.p, b.len())?;
        Ok(Box::new(MatmulClmLeft {
            dims: *self,
            b: b.to_vec(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_vec_is_row_major() {
        // [[1,2],[3,4]] · [[5],[6]] = [[17],[39]]
        let c = matmul_vec(2, 2, 1, &[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0]).unwrap();
        assert_eq!(c, vec![17.0, 39.0]);
    }

    #[test]
    fn partial_adjoints_are_transposes() {
        let bil = matmul_bilin(1, 2, 1).unwrap();
        let a = [1.0, 2.0];
        let b = [3.0, 4.0];
        // (B a)† δ = aᵀ δ, (B.flip b)† δ = δ bᵀ
        assert_eq!(
            Bilinear::<f64>::left(&bil, &a)
                .unwrap()
                .adjoint(&[5.0])
                .unwrap(),
            vec![5.0, 10.0]
        );
        assert_eq!(
            bil.flip(&b).unwrap().adjoint(&[5.0]).unwrap(),
            vec![15.0, 20.0]
        );
    }

    #[test]
    fn wrong_lengths_name_the_dims() {
        let err = matmul_vec(2, 3, 1, &[1.0; 5], &[1.0; 3]).unwrap_err();
        assert!(err.to_string().contains("[2, 3]"), "{err}");
    }
}
