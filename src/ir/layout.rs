//! Head split and merge: the layout operators between n×(k·d) and k×n×d, as
//! coordinate maps (each output entry is one input entry), shared by the evaluator and
//! the executors.
//!
//! An n×(k·d) matrix is the rank-3 tensor 1×n×(k·d). With `k` the head count:
//!
//! | operator        | shape                       | output entry                 | origin |
//! |-----------------|-----------------------------|------------------------------|--------|
//! | `(split k X)`   | 1×n×(k·d) → k×n×d           | `out[h,i,j] = X[0,i,h·d+j]`  | PyTorch `view(n,k,d).transpose(0,1)` |
//! | `(merge k Y)`   | k×n×d → 1×n×(k·d)           | `out[0,i,h·d+j] = Y[h,i,j]`  | its inverse (concatenating heads) |
//! | `(reshape k X)` | 1×n×(k·d) → k×n×d           | the same row-major data      | Lean `reshape` (a `castVec`) |
//! | `(unreshape k Y)` | k×n×d → 1×n×(k·d)         | the same row-major data      | Lean `reshape` back |
//! | `(flat k Z)`    | n×k×d → 1×n×(k·d)           | the same row-major data      | Lean `reshape` of the swapped heads |
//! | `(unflat k X)`  | 1×n×(k·d) → n×k×d           | the same row-major data      | its inverse |
//! | `(swap Y)`      | a×b×c → b×a×c               | `out[i,h,j] = Y[h,i,j]`      | Lean `swapFirstTwo3d` |
//!
//! Every one is a permutation of coordinates, so its adjoint is its inverse.

use crate::tensor::{checked_size, Dims, Tensor, TensorError};
use serde::Serialize;
use std::fmt;

/// A layout operator (the head count, where it takes one, is given separately).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// 1×n×(k·d) → k×n×d, PyTorch's head split.
    Split,
    /// k×n×d → 1×n×(k·d), PyTorch's head merge.
    Merge,
    /// 1×n×(k·d) → k×n×d, a row-major cast.
    Reshape,
    /// k×n×d → 1×n×(k·d), a row-major cast.
    Unreshape,
    /// n×k×d → 1×n×(k·d), a row-major cast.
    Flat,
    /// 1×n×(k·d) → n×k×d, a row-major cast.
    Unflat,
    /// a×b×c → b×a×c.
    Swap,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())
    }
}

impl Layout {
    /// The operator's name in the IR text.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Split => "split",
            Layout::Merge => "merge",
            Layout::Reshape => "reshape",
            Layout::Unreshape => "unreshape",
            Layout::Flat => "flat",
            Layout::Unflat => "unflat",
            Layout::Swap => "swap",
        }
    }

    /// The output dims for input dims `x` and head count `k` (ignored by `swap`), or
    /// an error naming the input's dims when they do not fit.
    pub fn out_dims(self, x: Dims, k: usize) -> Result<Dims, TensorError> {
        let bad = || TensorError::Heads {
            op: self.name(),
            dims: x,
            heads: k,
        };
        let [a, b, c] = x;
        let split_last = || {
            if a == 1 && k > 0 && c % k == 0 {
                Ok(c / k)
            } else {
                Err(bad())
            }
        };
        let joined = |d: usize| c.checked_mul(d).ok_or_else(bad);
        let out = match self {
            Layout::Split | Layout::Reshape => [k, b, split_last()?],
            Layout::Unflat => [b, k, split_last()?],
            Layout::Merge | Layout::Unreshape if a == k && k > 0 => [1, b, joined(a)?],
            Layout::Flat if b == k && k > 0 => [1, a, joined(b)?],
            Layout::Swap => [b, a, c],
            _ => return Err(bad()),
        };
        checked_size(out)?;
        Ok(out)
    }

    /// For each output entry (row-major), the row-major index of the input entry it
    /// copies. `x` must fit (see [`Layout::out_dims`]).
    pub fn sources(self, x: Dims, k: usize) -> Result<Vec<usize>, TensorError> {
        let out = self.out_dims(x, k)?;
        let [o0, o1, o2] = out;
        let mut src = Vec::with_capacity(checked_size(out)?);
        for p in 0..o0 {
            for q in 0..o1 {
                for r in 0..o2 {
                    src.push(match self {
                        // out[h,i,j] = X[0,i,h·d+j], d = o2.
                        Layout::Split => q * x[2] + p * o2 + r,
                        // out[0,i,h·d+j] = Y[h,i,j], d = x[2].
                        Layout::Merge => (r / x[2]) * x[1] * x[2] + q * x[2] + r % x[2],
                        // out[i,h,j] = Y[h,i,j].
                        Layout::Swap => q * x[1] * x[2] + p * x[2] + r,
                        Layout::Reshape | Layout::Unreshape | Layout::Flat | Layout::Unflat => {
                            (p * o1 + q) * o2 + r
                        }
                    });
                }
            }
        }
        Ok(src)
    }

    /// Applies the operator to a tensor.
    pub fn apply<S: crate::scalar::Scalar>(
        self,
        x: &Tensor<S>,
        k: usize,
    ) -> Result<Tensor<S>, TensorError> {
        let out = self.out_dims(x.dims(), k)?;
        let data = self.sources(x.dims(), k)?;
        Tensor::new(out, data.into_iter().map(|i| x.data()[i].clone()).collect())
    }

    /// The inverse (and adjoint) operator.
    pub fn inverse(self) -> Layout {
        match self {
            Layout::Split => Layout::Merge,
            Layout::Merge => Layout::Split,
            Layout::Reshape => Layout::Unreshape,
            Layout::Unreshape => Layout::Reshape,
            Layout::Flat => Layout::Unflat,
            Layout::Unflat => Layout::Flat,
            Layout::Swap => Layout::Swap,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar::Rational;

    fn iota(dims: Dims) -> Tensor<Rational> {
        let n = checked_size(dims).unwrap();
        Tensor::new(
            dims,
            (0..n)
                .map(|i| Rational::from_integer((i as i64).into()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn split_is_view_then_transpose_and_reshape_keeps_the_data() {
        // X = 1×2×4 (n = 2, k = 2, d = 2): rows [0 1 2 3], [4 5 6 7].
        let x = iota([1, 2, 4]);
        let s = Layout::Split.apply(&x, 2).unwrap();
        assert_eq!(s.dims(), [2, 2, 2]);
        let want: Vec<i64> = vec![0, 1, 4, 5, 2, 3, 6, 7];
        assert_eq!(
            s.data(),
            &want
                .iter()
                .map(|v| Rational::from_integer((*v).into()))
                .collect::<Vec<_>>()[..]
        );
        let r = Layout::Reshape.apply(&x, 2).unwrap();
        assert_eq!(r.data(), x.data());
        assert_ne!(r, s);
    }

    #[test]
    fn every_operator_is_inverted_by_its_inverse() {
        for (op, dims, k) in [
            (Layout::Split, [1, 3, 4], 2),
            (Layout::Merge, [2, 3, 2], 2),
            (Layout::Reshape, [1, 3, 6], 3),
            (Layout::Unreshape, [3, 2, 1], 3),
            (Layout::Flat, [3, 2, 2], 2),
            (Layout::Unflat, [1, 2, 4], 2),
            (Layout::Swap, [2, 3, 4], 0),
            (Layout::Split, [1, 0, 4], 2),
            (Layout::Merge, [2, 3, 0], 2),
        ] {
            let x = iota(dims);
            let y = op.apply(&x, k).unwrap();
            let back = op.inverse().apply(&y, k).unwrap();
            assert_eq!(back, x, "{op} then {}", op.inverse());
        }
    }

    #[test]
    fn dims_that_do_not_fit_are_errors() {
        assert!(Layout::Split.out_dims([1, 2, 5], 2).is_err());
        assert!(Layout::Split.out_dims([2, 2, 4], 2).is_err());
        assert!(Layout::Split.out_dims([1, 2, 4], 0).is_err());
        assert!(Layout::Merge.out_dims([3, 2, 4], 2).is_err());
        assert!(Layout::Flat.out_dims([2, 3, 4], 2).is_err());
    }
}
