//! `SoftmaxLastAxis` (`NN/Proofs/Autograd/Tape/Nodes/Softmax.lean`): row-wise softmax
//! on a flattened `m×n` matrix. `rows`/`unrows` are, in the Lean text, the same
//! definitions as `Batched.heads`/`unheads` (with `m` rows of length `n`), so they
//! delegate to them.

use super::clm::BoxClm;
use super::error::SpecError;
use super::heads::{heads, heads_clm, lift_headwise, map_heads, unheads, unheads_clm};
use super::softmax_vec::{softmax_deriv, softmax_jvp, softmax_vec};
use crate::scalar::{ExpOracle, Scalar};

/// `SoftmaxLastAxis.rows`: `m` rows of length `n`, row `i` entry `j` at `i·n + j`.
pub fn rows<S: Scalar>(m: usize, n: usize, x: &[S]) -> Result<Vec<Vec<S>>, SpecError> {
    heads(m, n, x)
}

/// `SoftmaxLastAxis.unrows`: concatenate `m` rows of length `n`.
pub fn unrows<S: Scalar>(m: usize, n: usize, r: &[Vec<S>]) -> Result<Vec<S>, SpecError> {
    unheads(m, n, r)
}

/// `SoftmaxLastAxis.rowsCLM`.
pub fn rows_clm<S: Scalar>(m: usize, n: usize) -> Result<BoxClm<S>, SpecError> {
    heads_clm(m, n)
}

/// `SoftmaxLastAxis.unrowsCLM`.
pub fn unrows_clm<S: Scalar>(m: usize, n: usize) -> Result<BoxClm<S>, SpecError> {
    unheads_clm(m, n)
}

/// `SoftmaxLastAxis.forwardMN x = unrows (fun i => softmaxVec (rows x i))`.
pub fn forward_mn<S: Scalar>(
    m: usize,
    n: usize,
    x: &[S],
    oracle: &ExpOracle,
) -> Result<Vec<S>, SpecError> {
    map_heads(m, n, x, |row| softmax_vec(row, oracle))
}

/// `SoftmaxLastAxis.jvpMN x dx = unrows (fun i => softmaxJvp (rows x i) (rows dx i))`.
pub fn jvp_mn<S: Scalar>(
    m: usize,
    n: usize,
    x: &[S],
    dx: &[S],
    oracle: &ExpOracle,
) -> Result<Vec<S>, SpecError> {
    let out = rows(m, n, x)?
        .iter()
        .zip(rows(m, n, dx)?)
        .map(|(xi, dxi)| softmax_jvp(xi, &dxi, oracle))
        .collect::<Result<Vec<_>, _>>()?;
    unrows(m, n, &out)
}

/// `SoftmaxLastAxis.derivMN x = unrowsCLM ∘ pi (fun i => softmaxDerivCLM (rows x i) ∘
/// proj i) ∘ rowsCLM`.
pub fn deriv_mn<S: Scalar>(
    m: usize,
    n: usize,
    x: &[S],
    oracle: &ExpOracle,
) -> Result<BoxClm<S>, SpecError> {
    let blocks = rows(m, n, x)?
        .iter()
        .map(|row| softmax_deriv(row, oracle))
        .collect::<Result<Vec<_>, _>>()?;
    lift_headwise(n, n, blocks)
}
