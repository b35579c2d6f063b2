//! Rung (c): a rigorous componentwise forward-error bound for the f64 executor,
//! computed in ℚ by running the same plan over [`Bounded`] values.
//!
//! A [`Bounded`] is a pair (x, e): x is the exact value of the plan's computation on
//! the inputs and e ≥ |x̂ − x| bounds the distance of the f64 executor's value x̂. Let
//! u = 2⁻⁵³, γₙ = nu/(1 − nu), η = 2⁻¹⁰⁷⁴ (the smallest subnormal). Each f64
//! operation returns fl(v) with |fl(v) − v| ≤ u|v|, plus η/2 when a product or
//! quotient underflows; sums never add an underflow error (no overflow assumed:
//! an infinite or NaN output fails the case). Per step kind:
//!
//! - inputs: e = 0; a number c: e = |fl(c) − c|, computed exactly.
//! - x ± y: x̂ ± ŷ is within eₓ + e_y of x ± y, so fl adds ≤ u(|x ± y| + eₓ + e_y):
//!   e = (1+u)(eₓ + e_y) + u|x ± y|.
//! - x·y: |x̂ŷ − xy| ≤ |x|e_y + |y|eₓ + eₓe_y =: p; e = (1+u)p + u|xy| + η.
//! - 1/x (and x/y as x·(1/y), which bounds the single rounding of x̂/ŷ as well):
//!   needs eₓ < |x|; |1/x̂ − 1/x| ≤ eₓ/(|x|(|x| − eₓ)) =: q; e = (1+u)q + u/|x| + η.
//! - a row sum of n terms, summed in lanes (`runtime::fused`; any order in which each
//!   term passes through at most n − 1 additions): Higham's bound for summation,
//!   |fl(Σx̂ᵢ) − Σx̂ᵢ| ≤ γₙ₋₁ Σ|x̂ᵢ| ≤ γₙ₋₁ Σ(|xᵢ| + eᵢ), plus the input errors Σeᵢ
//!   (the lane sum itself is checked by [`super::reduce`]).
//! - a GEMM entry, a dot product of length k in whatever order and blocking
//!   matrixmultiply uses, FMA or not: |fl(Σâᵢb̂ᵢ) − Σâᵢb̂ᵢ| ≤ γₖ Σ|âᵢb̂ᵢ|, so
//!   e = Σ(|aᵢ|e_bᵢ + eₐᵢ|bᵢ| + eₐᵢe_bᵢ) + γₖ Σ(|aᵢ| + eₐᵢ)(|bᵢ| + e_bᵢ) + kη.
//! - an accumulating GEMM entry (β = 1), c + Σaᵢbᵢ: the old entry ĉ is one more term
//!   of the sum (k + 1 terms, each through at most k additions and one rounded or
//!   fused product), so e = e_c + Σ(…as above…) + γₖ₊₁ ((|c| + e_c) + Σ(|aᵢ| + eₐᵢ)(|bᵢ| + e_bᵢ)) + kη.
//! - transposes and copies: exact.
//!
//! `exp` has no bound here (f64's libm is not modeled in this rung): plans with exp
//! are refused; the softmax forward is checked by [`super::enclosure`].

use super::{f64_cases, refuse_exp, show, F64Run, RungConfig, RungCount, RungError};
use crate::exec::{exec_exact, exec_f64, ExecScalar, Tensors};
use crate::lower::Plan;
use crate::manifest::Built;
use crate::scalar::{f64_to_rational, ExpOracle, Rational, Scalar, ScalarError};
use num_bigint::BigInt;
use num_traits::{One, Signed, ToPrimitive, Zero};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::fmt;
use std::ops::{Add, Mul, Neg, Sub};

/// An exact value and a bound on the f64 executor's distance from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounded {
    /// The exact value x.
    pub value: Rational,
    /// e ≥ |x̂ − x|.
    pub err: Rational,
}

fn pow2(k: i32) -> Rational {
    let two = Rational::from_integer(BigInt::from(2));
    num_traits::pow::Pow::pow(&two, k)
}

fn r_one() -> Rational {
    One::one()
}

fn r_zero() -> Rational {
    Zero::zero()
}

/// u = 2⁻⁵³.
fn unit() -> Rational {
    pow2(-53)
}

/// η = 2⁻¹⁰⁷⁴.
fn eta() -> Rational {
    pow2(-1074)
}

/// γₙ = nu/(1 − nu).
pub fn gamma(n: usize) -> Rational {
    let nu = unit() * Rational::from_integer(BigInt::from(n));
    nu.clone() / (r_one() - nu)
}

impl Bounded {
    fn exact(value: Rational) -> Self {
        Bounded {
            value,
            err: r_zero(),
        }
    }

    fn mag(&self) -> Rational {
        self.value.abs() + self.err.clone()
    }
}

impl fmt::Display for Bounded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ± {}", self.value, self.err)
    }
}

fn add_like(v: Rational, e: Rational) -> Bounded {
    let u = unit();
    Bounded {
        err: (r_one() + u.clone()) * e + u * v.abs(),
        value: v,
    }
}

impl Add for Bounded {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        add_like(self.value + o.value, self.err + o.err)
    }
}

impl Sub for Bounded {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        add_like(self.value - o.value, self.err + o.err)
    }
}

impl Mul for Bounded {
    type Output = Self;
    fn mul(self, o: Self) -> Self {
        let u = unit();
        let p =
            self.value.abs() * o.err.clone() + o.value.abs() * self.err.clone() + self.err * o.err;
        let v = self.value * o.value;
        Bounded {
            err: (r_one() + u.clone()) * p + u * v.abs() + eta(),
            value: v,
        }
    }
}

impl Neg for Bounded {
    type Output = Self;
    fn neg(self) -> Self {
        Bounded {
            value: -self.value,
            err: self.err,
        }
    }
}

impl Scalar for Bounded {
    fn zero() -> Self {
        Bounded::exact(r_zero())
    }
    fn one() -> Self {
        Bounded::exact(r_one())
    }
    fn from_i64(v: i64) -> Self {
        Self::from_rational(&Rational::from_integer(BigInt::from(v)))
    }
    fn from_rational(v: &Rational) -> Self {
        let err = match f64_to_rational(f64::from_rational(v)) {
            Ok(r) => (r - v.clone()).abs(),
            Err(_) => v.abs(),
        };
        Bounded {
            value: v.clone(),
            err,
        }
    }
    fn recip(&self) -> Result<Self, ScalarError> {
        let a = self.value.abs();
        if a <= self.err {
            return Err(ScalarError::Inexact {
                value: format!("1/({self})"),
                target: "a bounded f64 (the divisor's enclosure contains 0)",
            });
        }
        let u = unit();
        let q = self.err.clone() / (a.clone() * (a.clone() - self.err.clone()));
        Ok(Bounded {
            value: self.value.recip(),
            err: (r_one() + u.clone()) * q + u / a + eta(),
        })
    }
    fn exp(&self, _: &ExpOracle) -> Result<Self, ScalarError> {
        Err(ScalarError::Inexact {
            value: format!("exp({self})"),
            target: "a bounded f64 (exp is checked by the enclosure rung)",
        })
    }
}

impl ExecScalar for Bounded {
    fn sum(xs: impl Iterator<Item = Self>) -> Self {
        let (mut v, mut e, mut m, mut n) = (r_zero(), r_zero(), r_zero(), 0);
        for x in xs {
            m += x.mag();
            v += x.value;
            e += x.err;
            n += 1usize;
        }
        Bounded {
            value: v,
            err: e + gamma(n.saturating_sub(1)) * m,
        }
    }

    fn dot(pairs: impl Iterator<Item = (Self, Self)>) -> Self {
        dot_from(Self::zero(), 0, pairs)
    }

    fn dot_onto(c: Self, pairs: impl Iterator<Item = (Self, Self)>) -> Self {
        dot_from(c, 1, pairs)
    }
}

/// `c + Σ aᵢbᵢ` with `terms` extra summands already in `c` (0: a plain dot product
/// from an exact zero; 1: an accumulated entry).
fn dot_from(c: Bounded, terms: usize, pairs: impl Iterator<Item = (Bounded, Bounded)>) -> Bounded {
    let (mut v, mut p, mut m, mut k) = (c.value.clone(), c.err.clone(), c.mag(), 0);
    for (a, b) in pairs {
        p += a.value.abs() * b.err.clone()
            + a.err.clone() * b.value.abs()
            + a.err.clone() * b.err.clone();
        m += a.mag() * b.mag();
        v += a.value * b.value;
        k += 1usize;
    }
    let under = eta() * Rational::from_integer(BigInt::from(k));
    Bounded {
        value: v,
        err: p + gamma(k + terms) * m + under,
    }
}

/// Rung (c) for a built kernel, on the plan it runs.
pub fn rung_f64_bound(b: &Built, cfg: &RungConfig) -> Result<RungCount, RungError> {
    check_f64_bound(&b.plan, &|i| exec_f64(&b.plan, i), cfg)
}

/// A general f64 in [−4, 4) with a full random mantissa.
fn general(rng: &mut ChaCha8Rng) -> f64 {
    rng.gen_range(-4.0..4.0)
}

/// Rung (c): every entry of `run`'s outputs lies within the [`Bounded`] error of the
/// exact value; `worst` is the largest |error| / bound seen.
pub fn check_f64_bound(
    plan: &Plan,
    run: &F64Run<'_>,
    cfg: &RungConfig,
) -> Result<RungCount, RungError> {
    refuse_exp(plan, "f64 within the forward-error bound")?;
    f64_cases(plan, run, cfg, general, |f, exact_in, count| {
        let bounded_in: Tensors<Bounded> = exact_in
            .iter()
            .map(|(k, t)| (k.clone(), t.map(|q| Bounded::exact(q.clone()))))
            .collect();
        match exec_exact(plan, &bounded_in, &ExpOracle::None) {
            Ok(b) => within(f, &b, count).map(|w| format!("{w} at {}", show(exact_in))),
            Err(x) => Some(format!("bound run failed: {x}")),
        }
    })
}

/// The first entry of `f` outside its bound, measuring the ratios into `count`.
fn within(f: &Tensors<f64>, b: &Tensors<Bounded>, count: &mut RungCount) -> Option<String> {
    for (name, want) in b {
        let Some(got) = f.get(name) else {
            return Some(format!("output {name} is missing"));
        };
        if got.dims() != want.dims() {
            return Some(format!("output {name} has the wrong shape"));
        }
        for (i, (x, w)) in got.data().iter().zip(want.data()).enumerate() {
            let Ok(x) = f64_to_rational(*x) else {
                return Some(format!("{name}[{i}] = {x} is not finite"));
            };
            let dist = (x - w.value.clone()).abs();
            if dist > w.err {
                return Some(format!(
                    "{name}[{i}] is {dist} from exact, beyond the bound {}",
                    w.err
                ));
            }
            if !w.err.is_zero() {
                count.measure((dist / w.err.clone()).to_f64().unwrap_or(f64::INFINITY));
            }
        }
    }
    None
}
