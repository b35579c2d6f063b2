//! Shapes, checked sizes and the row-major layout of Mathlib's `finProdFinEquiv`.
//!
//! A shape is a list of dims (`Shape.dim h (.dim m (.dim n .scalar))` is `[h, m, n]`);
//! its size is the product of the dims folded from the right, `Shape.size .scalar = 1`,
//! `Shape.size (.dim d s) = d * Shape.size s`. Every product is checked for overflow.

use super::error::SpecError;

/// The size of a shape: `d₀ * (d₁ * (… * 1))`, checked. Mirrors `Spec.Shape.size`.
pub fn shape_size(dims: &[usize]) -> Result<usize, SpecError> {
    dims.iter().rev().try_fold(1usize, |acc, &d| {
        d.checked_mul(acc).ok_or_else(|| SpecError::Overflow {
            dims: dims.to_vec(),
        })
    })
}

/// `Matmul.matSize m n = m * n` (`NN/Proofs/Autograd/Tape/Nodes/Matrix.lean`), checked.
pub fn mat_size(m: usize, n: usize) -> Result<usize, SpecError> {
    m.checked_mul(n)
        .ok_or(SpecError::Overflow { dims: vec![m, n] })
}

/// `Batched.HMatSize h m n = h * Matmul.matSize m n`
/// (`NN/Proofs/Autograd/Tape/Nodes/Batched.lean`), checked.
pub fn hmat_size(h: usize, m: usize, n: usize) -> Result<usize, SpecError> {
    mat_size(m, n)?.checked_mul(h).ok_or(SpecError::Overflow {
        dims: vec![h, m, n],
    })
}

/// `Batched.size3_eq`: the size of the shape `h×m×n` equals `h * (m * n)`. Returns the
/// outcome of the comparison of the two checked sizes (an error if either overflows).
pub fn size3_eq(h: usize, m: usize, n: usize) -> Result<bool, SpecError> {
    Ok(shape_size(&[h, m, n])? == hmat_size(h, m, n)?)
}

/// `finProdFinEquiv (i, j) = i·n + j` on `Fin m × Fin n` (row-major); `None` when
/// `i ≥ m` or `j ≥ n`.
pub fn fin_prod_fin(m: usize, n: usize, i: usize, j: usize) -> Option<usize> {
    (i < m && j < n).then(|| i * n + j)
}

/// `finProdFinEquiv.symm k = (k / n, k % n)` on `Fin (m*n)`; `None` when `k ≥ m·n`.
pub fn fin_prod_fin_symm(m: usize, n: usize, k: usize) -> Option<(usize, usize)> {
    (k < m.checked_mul(n)?).then(|| (k / n, k % n))
}

/// The flat index of entry `(k, i, j)` of an `h×m×n` tensor, `k·(m·n) + i·n + j`;
/// `None` when out of range or when `h·(m·n)` overflows.
pub fn index3(h: usize, m: usize, n: usize, k: usize, i: usize, j: usize) -> Option<usize> {
    let mn = m.checked_mul(n)?;
    h.checked_mul(mn)?;
    fin_prod_fin(h, mn, k, fin_prod_fin(m, n, i, j)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_shape_has_size_one_and_zero_dims_give_zero() {
        assert_eq!(shape_size(&[]).unwrap(), 1);
        assert_eq!(shape_size(&[2, 0, 5]).unwrap(), 0);
        assert_eq!(shape_size(&[2, 3, 4]).unwrap(), 24);
    }

    #[test]
    fn overflow_names_the_dims() {
        let err = shape_size(&[usize::MAX, 2]).unwrap_err();
        assert_eq!(
            err,
            SpecError::Overflow {
                dims: vec![usize::MAX, 2]
            }
        );
        assert!(hmat_size(2, usize::MAX, 1).is_err());
        assert!(mat_size(usize::MAX, 3).is_err());
    }

    #[test]
    fn layout_is_row_major() {
        assert_eq!(index3(2, 3, 4, 1, 2, 3), Some(12 + 8 + 3));
        assert_eq!(index3(2, 3, 4, 2, 0, 0), None);
        assert_eq!(fin_prod_fin_symm(3, 4, 11), Some((2, 3)));
        assert_eq!(fin_prod_fin_symm(3, 0, 0), None);
        assert_eq!(fin_prod_fin(3, 4, 2, 3), Some(11));
        assert_eq!(fin_prod_fin(3, 4, 2, 4), None);
    }
}
