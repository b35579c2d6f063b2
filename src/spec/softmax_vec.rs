//! Vector softmax and its derivative (`NN/Proofs/Autograd/FDeriv/Softmax.lean`):
//! `sumExp`, `softmaxVec`, `dotCLM`, `evalCLM`, `softmaxDerivCoord`,
//! `softmaxDerivCLM`, `softmaxJvp`. Every `exp` goes through an [`ExpOracle`].

use super::clm::{cast_clm, clm_sub, pi, proj, smul_right, BoxClm, Clm};
use super::error::SpecError;
use super::vector::{check_len, inner};
use crate::scalar::{ExpOracle, Scalar};

/// `sumExp x = Σᵢ exp xᵢ`.
pub fn sum_exp<S: Scalar>(x: &[S], oracle: &ExpOracle) -> Result<S, SpecError> {
    x.iter()
        .try_fold(S::zero(), |acc, xi| Ok(acc + xi.exp(oracle)?))
}

/// `softmaxVec x i = exp xᵢ / sumExp x`; for `n = 0` the identity on the empty vector.
pub fn softmax_vec<S: Scalar>(x: &[S], oracle: &ExpOracle) -> Result<Vec<S>, SpecError> {
    if x.is_empty() {
        return Ok(Vec::new());
    }
    let s = sum_exp(x, oracle)?;
    x.iter().map(|xi| Ok(xi.exp(oracle)?.div(&s)?)).collect()
}

/// `dotCLM y : Vec n →L ℝ`, `x ↦ Σⱼ yⱼ·xⱼ`; adjoint `t ↦ t·y`.
pub struct DotClm<S> {
    y: Vec<S>,
}

/// `dotCLM y`.
pub fn dot_clm<S: Scalar>(y: &[S]) -> BoxClm<S> {
    Box::new(DotClm { y: y.to_vec() })
}

impl<S: Scalar> Clm<S> for DotClm<S> {
    fn dim_in(&self) -> usize {
        self.y.len()
    }
    fn dim_out(&self) -> usize {
        1
    }
    fn apply(&self, x: &[S]) -> Result<Vec<S>, SpecError> {
        Ok(vec![inner(&self.y, x)?])
    }
    fn adjoint(&self, delta: &[S]) -> Result<Vec<S>, SpecError> {
        check_len("dotCLM cotangent", &[1], 1, delta.len())?;
        let t = delta[0].clone();
        Ok(self.y.iter().map(|yj| yj.clone() * t.clone()).collect())
    }
}

/// `evalCLM i : Vec n →L ℝ`, `x ↦ xᵢ`: `ContinuousLinearMap.proj i` on `Fin n → ℝ`.
pub fn eval_clm<S: Scalar>(n: usize, i: usize) -> Result<BoxClm<S>, SpecError> {
    proj(n, 1, i)
}

/// `softmaxDerivCoord` given `y = softmaxVec x`:
/// `(evalCLM i).smulRight yᵢ − (dotCLM y).smulRight yᵢ`.
fn deriv_coord_at<S: Scalar>(y: &[S], i: usize) -> Result<BoxClm<S>, SpecError> {
    let yi = y
        .get(i)
        .ok_or(SpecError::IndexOutOfRange {
            position: i,
            len: y.len(),
        })?
        .clone();
    clm_sub(
        smul_right(eval_clm(y.len(), i)?, yi.clone()),
        smul_right(dot_clm(y), yi),
    )
}

/// `softmaxDerivCoord x i : dx ↦ yᵢ·dxᵢ − yᵢ·⟨y, dx⟩` with `y = softmaxVec x`.
pub fn softmax_deriv_coord<S: Scalar>(
    x: &[S],
    i: usize,
    oracle: &ExpOracle,
) -> Result<BoxClm<S>, SpecError> {
    deriv_coord_at(&softmax_vec(x, oracle)?, i)
}

/// `softmaxDerivCLM x = (euclideanEquiv n).symm ∘ pi (softmaxDerivCoord x)`; the
/// equivalence is the identity reindexing ([`cast_clm`]).
pub fn softmax_deriv<S: Scalar>(x: &[S], oracle: &ExpOracle) -> Result<BoxClm<S>, SpecError> {
    let y = softmax_vec(x, oracle)?;
    let n = y.len();
    let coords = (0..n)
        .map(|i| deriv_coord_at(&y, i))
        .collect::<Result<Vec<_>, _>>()?;
    super::clm::comp(cast_clm(n, n)?, pi(n, coords)?)
}

/// `softmaxJvp x dx = y ⊙ (dx − ⟨y, dx⟩·1)` with `y = softmaxVec x`; for `n = 0`, `dx`.
pub fn softmax_jvp<S: Scalar>(x: &[S], dx: &[S], oracle: &ExpOracle) -> Result<Vec<S>, SpecError> {
    check_len("softmaxJvp tangent", &[x.len()], x.len(), dx.len())?;
    if x.is_empty() {
        return Ok(dx.to_vec());
    }
    let y = softmax_vec(x, oracle)?;
    let s = inner(&y, dx)?;
    Ok(y.iter()
        .zip(dx)
        .map(|(yi, dxi)| yi.clone() * (dxi.clone() - s.clone()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_of_zero_length_is_identity_and_sums_to_one_otherwise() {
        let o = ExpOracle::None;
        assert_eq!(softmax_vec::<f64>(&[], &o).unwrap(), Vec::<f64>::new());
        let y = softmax_vec(&[0.0, 1.0, -2.0], &o).unwrap();
        assert!((y.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((y[1] - 1f64.exp() / (1.0 + 1f64.exp() + (-2f64).exp())).abs() < 1e-12);
    }

    #[test]
    fn deriv_coord_rejects_out_of_range_coordinates() {
        let err = softmax_deriv_coord(&[0.0f64, 1.0], 2, &ExpOracle::None).err();
        assert_eq!(
            err,
            Some(SpecError::IndexOutOfRange {
                position: 2,
                len: 2
            })
        );
    }

    #[test]
    fn jvp_rejects_mismatched_tangent() {
        let err = softmax_jvp(&[0.0f64, 1.0], &[1.0], &ExpOracle::None).unwrap_err();
        assert!(matches!(
            err,
            SpecError::Length {
                expected: 2,
                found: 1,
                ..
            }
        ));
    }
}
