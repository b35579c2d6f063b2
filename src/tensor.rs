//! Dense rank-3 tensors (h×m×n, row-major as Mathlib's `finProdFinEquiv`) over any
//! [`Scalar`], with the operations the IR names. Rank 0 (a scalar) broadcasts.
//!
//! This is the value type of the IR evaluator; it is deliberately simple (clarity over
//! speed): the fast f64 paths live in the executors.

use crate::scalar::{Scalar, ScalarError};
use std::fmt;

/// Concrete sizes h×m×n.
pub type Dims = [usize; 3];

/// What can go wrong building or combining tensors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    /// The buffer length is not the product of the dims.
    #[error("a buffer of {len} values does not fit shape {}", fmt_dims(dims))]
    Length {
        /// The declared dims.
        dims: Dims,
        /// The buffer length.
        len: usize,
    },
    /// The product of the dims overflows `usize`.
    #[error("the size of shape {} overflows usize", fmt_dims(dims))]
    Overflow {
        /// The declared dims.
        dims: Dims,
    },
    /// Two operands' shapes disagree.
    #[error("{op}: shapes {} and {} disagree", fmt_dims(left), fmt_dims(right))]
    Mismatch {
        /// The operation.
        op: &'static str,
        /// The left operand's dims.
        left: Dims,
        /// The right operand's dims.
        right: Dims,
    },
    /// A head split or merge whose input dims do not fit its head count.
    #[error("{op} with {heads} heads: shape {} does not fit", fmt_dims(dims))]
    Heads {
        /// The layout operator.
        op: &'static str,
        /// The input's dims.
        dims: Dims,
        /// The head count.
        heads: usize,
    },
    /// Scalar arithmetic failed.
    #[error(transparent)]
    Scalar(#[from] ScalarError),
}

/// `h×m×n`.
pub fn fmt_dims(d: &Dims) -> String {
    format!("{}×{}×{}", d[0], d[1], d[2])
}

/// The number of entries of `dims`, checked.
pub fn checked_size(dims: Dims) -> Result<usize, TensorError> {
    dims[0]
        .checked_mul(dims[1])
        .and_then(|x| x.checked_mul(dims[2]))
        .ok_or(TensorError::Overflow { dims })
}

/// A dense h×m×n tensor, row-major: entry (k, i, j) at `k·(m·n) + i·n + j`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor<S> {
    dims: Dims,
    data: Vec<S>,
}

impl<S: Scalar> Tensor<S> {
    /// A tensor from its dims and row-major buffer; the length must match.
    pub fn new(dims: Dims, data: Vec<S>) -> Result<Self, TensorError> {
        let size = checked_size(dims)?;
        if size != data.len() {
            return Err(TensorError::Length {
                dims,
                len: data.len(),
            });
        }
        Ok(Tensor { dims, data })
    }

    /// The all-`v` tensor.
    pub fn filled(dims: Dims, v: S) -> Result<Self, TensorError> {
        Ok(Tensor {
            dims,
            data: vec![v; checked_size(dims)?],
        })
    }

    /// The dims h×m×n.
    pub fn dims(&self) -> Dims {
        self.dims
    }

    /// The row-major buffer.
    pub fn data(&self) -> &[S] {
        &self.data
    }

    /// The row-major buffer, owned.
    pub fn into_data(self) -> Vec<S> {
        self.data
    }

    /// Applies `f` to every entry.
    pub fn map<T: Scalar>(&self, f: impl Fn(&S) -> T) -> Tensor<T> {
        Tensor {
            dims: self.dims,
            data: self.data.iter().map(f).collect(),
        }
    }

    /// Applies a fallible `f` to every entry.
    pub fn try_map(&self, f: impl Fn(&S) -> Result<S, ScalarError>) -> Result<Self, TensorError> {
        let data = self.data.iter().map(f).collect::<Result<Vec<_>, _>>()?;
        Ok(Tensor {
            dims: self.dims,
            data,
        })
    }

    /// Combines two same-shaped tensors entrywise.
    pub fn zip(
        &self,
        other: &Self,
        op: &'static str,
        f: impl Fn(&S, &S) -> Result<S, ScalarError>,
    ) -> Result<Self, TensorError> {
        if self.dims != other.dims {
            return Err(TensorError::Mismatch {
                op,
                left: self.dims,
                right: other.dims,
            });
        }
        let data = self
            .data
            .iter()
            .zip(&other.data)
            .map(|(a, b)| f(a, b))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Tensor {
            dims: self.dims,
            data,
        })
    }

    /// The row sum along the last axis, broadcast back along it:
    /// `out[k,i,j] = Σ_l x[k,i,l]`.
    pub fn rowsum(&self) -> Self {
        let n = self.dims[2];
        let mut data = Vec::with_capacity(self.data.len());
        for row in self.data.chunks(n.max(1)) {
            let s = row.iter().fold(S::zero(), |acc, v| acc + v.clone());
            data.extend(std::iter::repeat_n(s, row.len()));
        }
        Tensor {
            dims: self.dims,
            data,
        }
    }

    /// The transpose of the last two axes: h×m×n ↦ h×n×m.
    pub fn transpose(&self) -> Self {
        let [h, m, n] = self.dims;
        let mut data = Vec::with_capacity(self.data.len());
        for k in 0..h {
            for j in 0..n {
                for i in 0..m {
                    data.push(self.data[k * m * n + i * n + j].clone());
                }
            }
        }
        Tensor {
            dims: [h, n, m],
            data,
        }
    }

    /// Batched matmul: (h×m×n)·(h×n×p) = h×m×p, head by head.
    pub fn bmm(&self, other: &Self) -> Result<Self, TensorError> {
        let [h, m, n] = self.dims;
        let [h2, n2, p] = other.dims;
        if h != h2 || n != n2 {
            return Err(TensorError::Mismatch {
                op: "bmm",
                left: self.dims,
                right: other.dims,
            });
        }
        let mut data = Vec::with_capacity(h * m * p);
        for k in 0..h {
            for i in 0..m {
                for c in 0..p {
                    let mut acc = S::zero();
                    for j in 0..n {
                        acc = acc
                            + self.data[k * m * n + i * n + j].clone()
                                * other.data[k * n * p + j * p + c].clone();
                    }
                    data.push(acc);
                }
            }
        }
        Ok(Tensor {
            dims: [h, m, p],
            data,
        })
    }

    /// The Euclidean inner product `Σ xᵢ yᵢ` of two same-shaped tensors.
    pub fn inner(&self, other: &Self) -> Result<S, TensorError> {
        if self.dims != other.dims {
            return Err(TensorError::Mismatch {
                op: "inner",
                left: self.dims,
                right: other.dims,
            });
        }
        Ok(self
            .data
            .iter()
            .zip(&other.data)
            .fold(S::zero(), |acc, (a, b)| acc + a.clone() * b.clone()))
    }
}

impl<S: Scalar> fmt::Display for Tensor<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [", fmt_dims(&self.dims))?;
        for (i, v) in self.data.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{v}")?;
        }
        write!(f, "]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(dims: Dims, v: &[i64]) -> Tensor<f64> {
        Tensor::new(dims, v.iter().map(|&x| x as f64).collect()).unwrap()
    }

    #[test]
    fn bad_lengths_and_overflow_are_errors() {
        assert_eq!(
            Tensor::new([1, 2, 2], vec![0.0; 3]).unwrap_err(),
            TensorError::Length {
                dims: [1, 2, 2],
                len: 3
            }
        );
        let err = Tensor::<f64>::filled([usize::MAX, 2, 1], 0.0).unwrap_err();
        assert!(err.to_string().contains("overflows"));
    }

    #[test]
    fn bmm_transpose_rowsum_follow_row_major() {
        let a = t([1, 2, 2], &[1, 2, 3, 4]);
        let b = t([1, 2, 1], &[5, 6]);
        assert_eq!(a.bmm(&b).unwrap(), t([1, 2, 1], &[17, 39]));
        assert_eq!(a.transpose(), t([1, 2, 2], &[1, 3, 2, 4]));
        assert_eq!(a.rowsum(), t([1, 2, 2], &[3, 3, 7, 7]));
        let err = a.bmm(&a.transpose().bmm(&b).unwrap().transpose());
        assert!(matches!(err, Err(TensorError::Mismatch { op: "bmm", .. })));
    }
}
