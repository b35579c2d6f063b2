//! Continuous bilinear maps `B : E →L F →L G` in curried form, with Mathlib's
//! `precompR` / `precompL` (`Mathlib/Analysis/NormedSpace/OperatorNorm`), as used by
//! `Batched.matmul` and `ContinuousLinearMap.hasFDerivAt_of_bilinear`.

use super::clm::{comp, BoxClm};
use super::error::SpecError;
use crate::scalar::Scalar;

/// A bilinear map `B : Vec dim_left →L Vec dim_right →L Vec dim_out`.
///
/// The two partial maps carry the partial adjoints: `(B a)†` is the adjoint in the right
/// slot, `(B.flip b)†` the adjoint in the left slot.
pub trait Bilinear<S: Scalar> {
    /// The dimension of the left argument.
    fn dim_left(&self) -> usize;
    /// The dimension of the right argument.
    fn dim_right(&self) -> usize;
    /// The dimension of the result.
    fn dim_out(&self) -> usize;
    /// `B a : F →L G`, linear in the right argument.
    fn left(&self, a: &[S]) -> Result<BoxClm<S>, SpecError>;
    /// `B.flip b : E →L G`, linear in the left argument.
    fn flip(&self, b: &[S]) -> Result<BoxClm<S>, SpecError>;
    /// `B a b`.
    fn apply(&self, a: &[S], b: &[S]) -> Result<Vec<S>, SpecError> {
        self.left(a)?.apply(b)
    }
}

/// `B.precompR P a L = (B a).comp L`: `dx ↦ B(a, L dx)`; adjoint `L† ∘ (B a)†`.
pub fn precomp_r<S: Scalar>(
    bil: &dyn Bilinear<S>,
    a: &[S],
    l: BoxClm<S>,
) -> Result<BoxClm<S>, SpecError> {
    comp(bil.left(a)?, l)
}

/// `B.precompL P L b = (B.flip b).comp L`: `dx ↦ B(L dx, b)`; adjoint `L† ∘ (B.flip b)†`.
pub fn precomp_l<S: Scalar>(
    bil: &dyn Bilinear<S>,
    l: BoxClm<S>,
    b: &[S],
) -> Result<BoxClm<S>, SpecError> {
    comp(bil.flip(b)?, l)
}
