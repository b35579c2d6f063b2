//! The kernels behind each plan step, per scalar type.
//!
//! Layout everywhere: rank-3 buffers h×r×c, row-major (entry (k, i, j) at
//! `k·r·c + i·c + j`). A GEMM operand is read through explicit row and column strides,
//! so a transposed operand is a stride swap, never a copy.
//!
//! **Exact scalars** (ℚ, dual numbers) use the provided methods: dot products and row
//! sums left to right from zero, softmax exactly as the IR defines it
//! (`exp xᵢ / Σⱼ exp xⱼ`, exp from the oracle); the results equal the IR evaluator's.
//!
//! **f64** overrides them:
//! - GEMM: the generated kernels' `runtime::bmm` (`matrixmultiply::dgemm` per head or
//!   band of a head's rows, in parallel with rayon). Every
//!   output entry is a dot product of length k summed in some order (blocked, maybe
//!   with FMA); for any order, `|fl(Σ aᵢbᵢ) − Σ aᵢbᵢ| ≤ γₖ Σ|aᵢbᵢ|` with
//!   `γₖ = k·u/(1 − k·u)`, `u = 2⁻⁵³` (Higham, *Accuracy and Stability*, §3.1), barring
//!   underflow (each product may then add ≤ 2⁻¹⁰⁷⁵) and overflow. An accumulating
//!   GEMM (β = 1) adds the old entry c as one more term: `fl(c + Σ aᵢbᵢ)` is within
//!   `γₖ₊₁ (|c| + Σ|aᵢbᵢ|)` of the exact sum, whatever the blocking.
//! - Row passes: rows in parallel chunks, each chunk with its own registers; every
//!   entrywise operation is one IEEE operation (error ≤ u·|result|), a row sum of n
//!   terms is summed in the generated kernels' order (`runtime::fused`: 8 lanes, term
//!   j into lane j mod 8, lanes added pairwise), within γₙ₋₁ Σ|xᵢ| as any order.
//! - Softmax row: `m = max xⱼ`, `eᵢ = exp(xᵢ − m)`, `sᵢ = eᵢ / Σ eⱼ`. The shift makes
//!   rows with entries of magnitude 1e300 give the right softmax. NaN anywhere in the
//!   row gives a NaN row; an all −∞ row gives NaN (−∞ − (−∞)), as PyTorch; a +∞ entry
//!   gives NaN too. The shift, exp and the row sum are the generated runtime's vectorized
//!   `exp_shift_sum_in_place` (AVX2/FMA or portable, within `EXP_ULPS` ulps, summed in 8 lanes: a
//!   sum of n terms in any order is within γₙ₋₁ Σ|xᵢ|). A standalone `exp`
//!   instruction uses the platform's libm.
//!
//! NaN and ±∞ propagate as IEEE arithmetic does everywhere else.

use super::rows::{run_rows, Compiled, Store};
use super::ExecError;
use crate::kernels::runtime;
use crate::scalar::{Dual, ExpOracle, Rational, Scalar, ScalarError};
use crate::tensor::Dims;
use rayon::prelude::*;

/// The sizes of a batched GEMM `C = op(A)·op(B)`, head by head: op(A) is m×k, op(B)
/// is k×n, C is m×n row-major; each head of A (B) is stored contiguously, transposed
/// when flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmShape {
    /// Heads.
    pub heads: usize,
    /// Rows of op(A) and C.
    pub m: usize,
    /// The inner dim.
    pub k: usize,
    /// Columns of op(B) and C.
    pub n: usize,
    /// Rows of op(B): equal to `k` in a well-formed GEMM.
    pub b_k: usize,
    /// Whether A is stored transposed (op(A) = Aᵀ).
    pub ta: bool,
    /// Whether B is stored transposed.
    pub tb: bool,
}

impl GemmShape {
    /// The GEMM of stored operands with dims `a` and `b` (h×r×c), transposed as flagged.
    pub fn new(a: Dims, ta: bool, b: Dims, tb: bool) -> Self {
        let logical = |[_, r, c]: Dims, t: bool| if t { (c, r) } else { (r, c) };
        let ((m, k), (b_k, n)) = (logical(a, ta), logical(b, tb));
        GemmShape {
            heads: a[0],
            m,
            k,
            n,
            b_k,
            ta,
            tb,
        }
    }

    /// Row and column strides of op(A) inside one head.
    pub fn a_strides(&self) -> [usize; 2] {
        if self.ta {
            [1, self.m]
        } else {
            [self.k, 1]
        }
    }

    /// Row and column strides of op(B) inside one head.
    pub fn b_strides(&self) -> [usize; 2] {
        if self.tb {
            [1, self.b_k]
        } else {
            [self.n, 1]
        }
    }

    /// The buffers' lengths against the shape: A h×m×k, B h×k×n, C h×m×n values
    /// (the checks `runtime::bmm` makes, for the generic GEMM).
    fn check_lens(&self, a: usize, b: usize, c: usize) -> Result<(), ExecError> {
        let [h, m, k, n] = [self.heads, self.m, self.k, self.n];
        let check = |what, len, dims| runtime::check_len(what, len, dims);
        check("gemm left operand", a, [h, m, k])
            .and_then(|()| check("gemm right operand", b, [h, self.b_k, n]))
            .and_then(|()| check("gemm output", c, [h, m, n]))
            .map_err(|e| ExecError::Kernel(e.to_string()))
    }
}

impl GemmShape {
    /// Whether the operands agree (heads and inner dim) and `out` is h×m×n.
    pub fn fits(&self, b_heads: usize, out: Dims) -> bool {
        b_heads == self.heads && self.b_k == self.k && out == [self.heads, self.m, self.n]
    }
}

/// A scalar a plan can run over: how each step kind is computed.
pub trait ExecScalar: Scalar {
    /// `Σ xᵢ` (a row sum).
    fn sum(xs: impl Iterator<Item = Self>) -> Self {
        xs.fold(Self::zero(), |acc, x| acc + x)
    }

    /// `Σ aᵢ·bᵢ` (one GEMM entry).
    fn dot(pairs: impl Iterator<Item = (Self, Self)>) -> Self {
        pairs.fold(Self::zero(), |acc, (a, b)| acc + a * b)
    }

    /// Softmax of one row, in place: `exp xᵢ / Σⱼ exp xⱼ`.
    fn softmax_in_place(row: &mut [Self], oracle: &ExpOracle) -> Result<(), ScalarError> {
        for v in row.iter_mut() {
            *v = v.exp(oracle)?;
        }
        let total = Self::sum(row.iter().cloned());
        for v in row.iter_mut() {
            *v = v.div(&total)?;
        }
        Ok(())
    }

    /// `c + Σ aᵢ·bᵢ` (one entry of an accumulating GEMM).
    fn dot_onto(c: Self, pairs: impl Iterator<Item = (Self, Self)>) -> Self {
        c + Self::dot(pairs)
    }

    /// `c = op(a)·op(b)` head by head (`c += …` when `accumulate`); `c` has
    /// `heads·m·n` values. An error when a buffer's length disagrees with the shape.
    fn gemm(
        s: &GemmShape,
        a: &[Self],
        b: &[Self],
        c: &mut [Self],
        accumulate: bool,
    ) -> Result<(), ExecError> {
        s.check_lens(a.len(), b.len(), c.len())?;
        let [ar, ac] = s.a_strides();
        let [br, bc] = s.b_strides();
        for (h, ch) in c.chunks_mut((s.m * s.n).max(1)).enumerate().take(s.heads) {
            let (ah, bh) = (&a[h * s.m * s.k..], &b[h * s.b_k * s.n..]);
            for i in 0..s.m {
                for j in 0..s.n {
                    let pairs = (0..s.k)
                        .map(|l| (ah[i * ar + l * ac].clone(), bh[l * br + j * bc].clone()));
                    let c = &mut ch[i * s.n + j];
                    *c = if accumulate {
                        Self::dot_onto(c.clone(), pairs)
                    } else {
                        Self::dot(pairs)
                    };
                }
            }
        }
        Ok(())
    }

    /// `out = xᵀ` for a stored h×r×c `x`.
    fn transpose(d: Dims, x: &[Self], out: &mut [Self]) {
        let [h, r, c] = d;
        for k in 0..h {
            for i in 0..r {
                for j in 0..c {
                    out[k * r * c + j * r + i] = x[k * r * c + i * c + j].clone();
                }
            }
        }
    }

    /// Runs a row program over every row (length `n`) of `out`.
    fn row_pass(
        c: &Compiled<'_, Self>,
        n: usize,
        store: &Store<'_, Self>,
        out: &mut [Self],
        oracle: &ExpOracle,
    ) -> Result<(), ExecError> {
        if n == 0 {
            return Ok(());
        }
        run_rows(c, n, 0, out, store, oracle)
    }
}

impl ExecScalar for Rational {}

impl<S: Scalar> ExecScalar for Dual<S> {}

/// Rows per parallel task of an f64 row pass: enough work to amortize the task.
const ROW_CHUNK_VALUES: usize = 1 << 14;

impl ExecScalar for f64 {
    /// In the generated kernels' order (`runtime::fused`): term j into lane j mod
    /// `LANES`, the lanes added pairwise.
    fn sum(xs: impl Iterator<Item = f64>) -> f64 {
        let mut acc = [0.0; runtime::LANES];
        for (j, x) in xs.enumerate() {
            acc[j % runtime::LANES] += x;
        }
        runtime::lanes_total(acc)
    }

    fn softmax_in_place(row: &mut [f64], _oracle: &ExpOracle) -> Result<(), ScalarError> {
        let m = runtime::max(row);
        let total = runtime::exp_shift_sum_in_place(row, m, &[]);
        // max ignores NaN: a NaN entry still makes `total` NaN, so the row is NaN.
        for v in row.iter_mut() {
            *v /= total;
        }
        Ok(())
    }

    /// The generated kernels' GEMM itself (`runtime::bmm`: heads in parallel, a head's
    /// rows in bands when there are fewer heads than threads), so both give the same
    /// bits and `fderiv run` uses every core on one-head projections too.
    fn gemm(
        s: &GemmShape,
        a: &[f64],
        b: &[f64],
        c: &mut [f64],
        accumulate: bool,
    ) -> Result<(), ExecError> {
        let dims = [s.heads, s.m, s.k, s.n];
        runtime::bmm(dims, a, s.ta, b, s.tb, c, accumulate)
            .map_err(|e| ExecError::Kernel(e.to_string()))
    }

    fn row_pass(
        c: &Compiled<'_, f64>,
        n: usize,
        store: &Store<'_, f64>,
        out: &mut [f64],
        oracle: &ExpOracle,
    ) -> Result<(), ExecError> {
        if n == 0 {
            return Ok(());
        }
        let rows = (ROW_CHUNK_VALUES / n).max(1);
        out.par_chunks_mut(rows * n)
            .enumerate()
            .try_for_each(|(i, chunk)| run_rows(c, n, i * rows, chunk, store, oracle))
    }
}
