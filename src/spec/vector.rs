//! Euclidean-space helpers on flattened vectors (`Vec n` in the Lean text): length
//! checks, the inner product ⟨x, y⟩ = Σ xᵢyᵢ, sums and scalings.

use super::error::SpecError;
use crate::scalar::Scalar;

/// Checks that `found` (a buffer length) equals `expected`, the size of `dims`.
pub fn check_len(
    what: &'static str,
    dims: &[usize],
    expected: usize,
    found: usize,
) -> Result<(), SpecError> {
    if expected == found {
        Ok(())
    } else {
        Err(SpecError::Length {
            what,
            dims: dims.to_vec(),
            expected,
            found,
        })
    }
}

/// The zero vector of length `n`.
pub fn zeros<S: Scalar>(n: usize) -> Vec<S> {
    vec![S::zero(); n]
}

/// The Euclidean inner product ⟨x, y⟩ = Σ xᵢyᵢ; an error if the lengths differ.
pub fn inner<S: Scalar>(x: &[S], y: &[S]) -> Result<S, SpecError> {
    check_len("inner product", &[x.len()], x.len(), y.len())?;
    Ok(x.iter()
        .zip(y)
        .fold(S::zero(), |acc, (a, b)| acc + a.clone() * b.clone()))
}

/// `x + y`; an error if the lengths differ.
pub fn add<S: Scalar>(x: &[S], y: &[S]) -> Result<Vec<S>, SpecError> {
    check_len("vector sum", &[x.len()], x.len(), y.len())?;
    Ok(x.iter()
        .zip(y)
        .map(|(a, b)| a.clone() + b.clone())
        .collect())
}

/// `c • x`.
pub fn scale<S: Scalar>(c: &S, x: &[S]) -> Vec<S> {
    x.iter().map(|a| c.clone() * a.clone()).collect()
}
