//! Scalars: the fields every stage of fderiv computes over.
//!
//! [`Scalar`] is implemented for `f64` (fast, rounded), for [`Rational`]
//! (`num_rational::BigRational`, exact) and for [`Dual`] numbers over any scalar
//! (value + tangent, forward mode). The spec is over ℝ and uses `exp`; over the
//! rationals `exp` is not computable exactly, so it comes from an explicit
//! [`ExpOracle`]: a rule that assigns a value to `exp` at each point, the same value
//! for equal arguments. Asking for `exp` of a rational without an oracle is an
//! error ([`ScalarError::NoExpOracle`]), never a silent rounding.

use num_bigint::BigInt;
use num_traits::{One, ToPrimitive, Zero};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Add, Mul, Neg, Sub};

/// Exact rational numbers, the ground truth of every check.
pub type Rational = num_rational::BigRational;

/// What can go wrong in scalar arithmetic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScalarError {
    /// `1/0` was asked for.
    #[error("division by zero")]
    DivisionByZero,
    /// `exp` of an exact value was asked for but no exp oracle was given.
    #[error("exp({arg}) over exact rationals needs an exp oracle (none was given)")]
    NoExpOracle {
        /// The argument, printed.
        arg: String,
    },
    /// A value could not be converted exactly.
    #[error("{value} cannot be represented exactly as {target}")]
    Inexact {
        /// The value, printed.
        value: String,
        /// The target type.
        target: &'static str,
    },
}

/// How `exp` is evaluated over exact scalars.
///
/// The derivative checks treat `exp` as an opaque positive function whose only law is
/// `exp' = exp`: any rule that is consistent (equal arguments give equal values) and
/// positive makes the algebraic checks meaningful. `f64` ignores the oracle and uses
/// `f64::exp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpOracle {
    /// No oracle: `exp` over exact scalars is an error.
    None,
    /// A deterministic pseudo-random positive rational per argument: `exp(q)` is
    /// `(1 + a) / (1 + b)` with `a < 64`, `b < 16` drawn from a hash of `q` and `seed`.
    Hashed {
        /// Selects one of many consistent oracles.
        seed: u64,
    },
    /// `exp(q)` is the exact rational value of the platform's f64 `exp` at the double
    /// nearest `q`: not the real exponential, but the values an f64 kernel uses, so
    /// that an exact run can be compared with an f64 run (the rest of the difference is
    /// f64 rounding). An error where that `exp` is not finite.
    Libm,
}

impl ExpOracle {
    /// The hashed oracle with the given seed.
    pub fn hashed(seed: u64) -> Self {
        ExpOracle::Hashed { seed }
    }

    /// `exp(q)` as this oracle defines it.
    pub fn exp_rational(&self, q: &Rational) -> Result<Rational, ScalarError> {
        match self {
            ExpOracle::None => Err(ScalarError::NoExpOracle { arg: q.to_string() }),
            ExpOracle::Hashed { seed } => {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                seed.hash(&mut hasher);
                q.numer().hash(&mut hasher);
                q.denom().hash(&mut hasher);
                let h = hasher.finish();
                let a = BigInt::from(1 + (h % 64));
                let b = BigInt::from(1 + ((h >> 16) % 16));
                Ok(Rational::new(a, b))
            }
            ExpOracle::Libm => {
                let x = q.to_f64().unwrap_or(f64::NAN);
                Rational::from_float(x.exp()).ok_or(ScalarError::Inexact {
                    value: format!("exp({x})"),
                    target: "a finite rational",
                })
            }
        }
    }
}

/// A field with `exp`: what the spec mirror, the IR evaluator and the executors are
/// generic over.
pub trait Scalar:
    Clone
    + PartialEq
    + fmt::Debug
    + fmt::Display
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Neg<Output = Self>
    + 'static
{
    /// The additive identity.
    fn zero() -> Self;
    /// The multiplicative identity.
    fn one() -> Self;
    /// An integer, exactly (f64: rounded to nearest if beyond 2^53).
    fn from_i64(v: i64) -> Self;
    /// The exact rational `v`, where representable (f64: the nearest double).
    fn from_rational(v: &Rational) -> Self;
    /// `1/self`; an error for zero.
    fn recip(&self) -> Result<Self, ScalarError>;
    /// `exp(self)`, taking exact values from `oracle`.
    fn exp(&self, oracle: &ExpOracle) -> Result<Self, ScalarError>;
    /// `self / other`; an error for a zero divisor.
    fn div(&self, other: &Self) -> Result<Self, ScalarError> {
        Ok(self.clone() * other.recip()?)
    }
    /// True for the additive identity.
    fn is_zero_value(&self) -> bool {
        *self == Self::zero()
    }
}

impl Scalar for f64 {
    fn zero() -> Self {
        0.0
    }
    fn one() -> Self {
        1.0
    }
    fn from_i64(v: i64) -> Self {
        v as f64
    }
    fn from_rational(v: &Rational) -> Self {
        v.to_f64().unwrap_or(f64::NAN)
    }
    fn recip(&self) -> Result<Self, ScalarError> {
        // IEEE semantics: 1/0 = inf, as PyTorch; f64 never errors here.
        Ok(1.0 / self)
    }
    fn exp(&self, _oracle: &ExpOracle) -> Result<Self, ScalarError> {
        Ok(f64::exp(*self))
    }
    fn div(&self, other: &Self) -> Result<Self, ScalarError> {
        Ok(self / other)
    }
}

impl Scalar for Rational {
    fn zero() -> Self {
        Zero::zero()
    }
    fn one() -> Self {
        One::one()
    }
    fn from_i64(v: i64) -> Self {
        Rational::from_integer(BigInt::from(v))
    }
    fn from_rational(v: &Rational) -> Self {
        v.clone()
    }
    fn recip(&self) -> Result<Self, ScalarError> {
        if self.is_zero() {
            Err(ScalarError::DivisionByZero)
        } else {
            Ok(num_traits::Inv::inv(self))
        }
    }
    fn exp(&self, oracle: &ExpOracle) -> Result<Self, ScalarError> {
        oracle.exp_rational(self)
    }
}

/// The exact rational value of a finite `f64` (every finite double is a dyadic
/// rational); an error for NaN and infinities.
pub fn f64_to_rational(v: f64) -> Result<Rational, ScalarError> {
    Rational::from_float(v).ok_or(ScalarError::Inexact {
        value: v.to_string(),
        target: "a rational",
    })
}

/// A forward-mode dual number `value + tangent·ε` with `ε² = 0`.
///
/// Evaluating a function on `x + dx·ε` gives `f(x) + (Df(x) dx)·ε`: the tangent part
/// is the exact directional derivative. `exp` obeys `exp' = exp`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dual<S> {
    /// The primal value.
    pub value: S,
    /// The tangent (the coefficient of ε).
    pub tangent: S,
}

impl<S: Scalar> Dual<S> {
    /// `value + tangent·ε`.
    pub fn new(value: S, tangent: S) -> Self {
        Dual { value, tangent }
    }
    /// A constant: zero tangent.
    pub fn constant(value: S) -> Self {
        Dual {
            value,
            tangent: S::zero(),
        }
    }
}

impl<S: Scalar> fmt::Display for Dual<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} + {}ε", self.value, self.tangent)
    }
}

impl<S: Scalar> Add for Dual<S> {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Dual::new(self.value + o.value, self.tangent + o.tangent)
    }
}

impl<S: Scalar> Sub for Dual<S> {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Dual::new(self.value - o.value, self.tangent - o.tangent)
    }
}

impl<S: Scalar> Mul for Dual<S> {
    type Output = Self;
    fn mul(self, o: Self) -> Self {
        let tangent = self.value.clone() * o.tangent + self.tangent * o.value.clone();
        Dual::new(self.value * o.value, tangent)
    }
}

impl<S: Scalar> Neg for Dual<S> {
    type Output = Self;
    fn neg(self) -> Self {
        Dual::new(-self.value, -self.tangent)
    }
}

impl<S: Scalar> Scalar for Dual<S> {
    fn zero() -> Self {
        Dual::constant(S::zero())
    }
    fn one() -> Self {
        Dual::constant(S::one())
    }
    fn from_i64(v: i64) -> Self {
        Dual::constant(S::from_i64(v))
    }
    fn from_rational(v: &Rational) -> Self {
        Dual::constant(S::from_rational(v))
    }
    fn recip(&self) -> Result<Self, ScalarError> {
        // (1/v)' = -v'/v²
        let r = self.value.recip()?;
        let tangent = -(self.tangent.clone() * r.clone() * r.clone());
        Ok(Dual::new(r, tangent))
    }
    fn exp(&self, oracle: &ExpOracle) -> Result<Self, ScalarError> {
        // exp' = exp
        let e = self.value.exp(oracle)?;
        Ok(Dual::new(e.clone(), e * self.tangent.clone()))
    }
}

/// Parses a rational written `p`, `p/q` or a decimal `1.25` (exactly).
pub fn parse_rational(text: &str) -> Option<Rational> {
    let t = text.trim();
    if let Some((p, q)) = t.split_once('/') {
        let p: BigInt = p.trim().parse().ok()?;
        let q: BigInt = q.trim().parse().ok()?;
        if q.is_zero() {
            return None;
        }
        return Some(Rational::new(p, q));
    }
    if let Some((int, frac)) = t.split_once('.') {
        if frac.is_empty() || !frac.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let negative = int.starts_with('-');
        let int_digits = int.trim_start_matches(['-', '+']);
        if !int_digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let digits: BigInt = format!("{int_digits}{frac}").parse().ok()?;
        let scale = num_traits::pow(BigInt::from(10), frac.len());
        let q = Rational::new(digits, scale);
        return Some(if negative { -q } else { q });
    }
    t.parse::<BigInt>().ok().map(Rational::from_integer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(p: i64, d: i64) -> Rational {
        Rational::new(BigInt::from(p), BigInt::from(d))
    }

    #[test]
    fn exp_without_oracle_is_an_error_not_a_rounding() {
        let err = q(1, 2).exp(&ExpOracle::None).unwrap_err();
        assert_eq!(err, ScalarError::NoExpOracle { arg: "1/2".into() });
    }

    #[test]
    fn hashed_oracle_is_consistent_and_positive() {
        let o = ExpOracle::hashed(7);
        let a = q(3, 4).exp(&o).unwrap();
        // 6/8 is the same rational as 3/4: same value.
        assert_eq!(a, q(6, 8).exp(&o).unwrap());
        assert!(a > q(0, 1));
        // Different seeds give different oracles somewhere.
        let differs = (0..20)
            .any(|k| q(k, 3).exp(&o).unwrap() != q(k, 3).exp(&ExpOracle::hashed(8)).unwrap());
        assert!(differs);
    }

    #[test]
    fn libm_oracle_gives_the_f64_values_exactly() {
        let e = q(1, 2).exp(&ExpOracle::Libm).unwrap();
        assert_eq!(e, f64_to_rational(0.5f64.exp()).unwrap());
        assert!(q(1000, 1).exp(&ExpOracle::Libm).is_err());
    }

    #[test]
    fn dual_exp_obeys_exp_prime_is_exp() {
        let o = ExpOracle::hashed(1);
        let x = Dual::new(q(1, 3), q(5, 1));
        let e = x.exp(&o).unwrap();
        assert_eq!(e.tangent, e.value.clone() * q(5, 1));
    }

    #[test]
    fn dual_recip_is_minus_tangent_over_square() {
        let x = Dual::new(q(2, 1), q(1, 1));
        let r = x.recip().unwrap();
        assert_eq!(r, Dual::new(q(1, 2), q(-1, 4)));
        assert_eq!(
            Dual::new(q(0, 1), q(1, 1)).recip().unwrap_err(),
            ScalarError::DivisionByZero
        );
    }

    #[test]
    fn rational_parsing_is_exact() {
        assert_eq!(parse_rational("1.25"), Some(q(5, 4)));
        assert_eq!(parse_rational("-0.5"), Some(q(-1, 2)));
        assert_eq!(parse_rational("3/6"), Some(q(1, 2)));
        assert_eq!(parse_rational("7"), Some(q(7, 1)));
        assert_eq!(parse_rational("1/0"), None);
        assert_eq!(parse_rational("x"), None);
        assert_eq!(parse_rational("1.-5"), None);
    }

    #[test]
    fn f64_to_rational_is_exact_and_rejects_nan() {
        assert_eq!(f64_to_rational(0.375).unwrap(), q(3, 8));
        assert!(f64_to_rational(f64::NAN).is_err());
        assert!(f64_to_rational(f64::INFINITY).is_err());
    }
}
