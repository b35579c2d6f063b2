//! Rung (c): a rigorous componentwise forward-error bound for the f64 executor,
//! computed in ℚ by running the same plan over [`Bounded`] values (ball arithmetic).
//!
//! A [`Bounded`] is a ball (c, e): e bounds both |x̂ − c| (x̂ the f64 executor's value)
//! and |x − c| (x the real value of the plan's computation on the inputs). Without exp
//! the center c is x itself; a softmax makes it a rational near x. Let u = 2⁻⁵³,
//! γₙ = nu/(1 − nu), η = 2⁻¹⁰⁷⁴ (the smallest subnormal). Each f64 operation returns
//! fl(v) with |fl(v) − v| ≤ u|v|, plus η/2 when a product or quotient underflows; sums
//! never add an underflow error (no overflow assumed: an infinite or NaN output fails
//! the case, unless it is the infinity of the sign of a ball lying wholly beyond the
//! overflow threshold 2¹⁰²⁴ − 2⁹⁷⁰, where f64 rounding gives ±inf). Per step kind, the
//! pre-rounding term p bounds both |v̂ − c| (v̂ the exact result of the f64 operands)
//! and the real result's distance, and e ≥ p:
//!
//! - inputs: e = 0; a number c: e = |fl(c) − c|, computed exactly.
//! - x ± y: p = eₓ + e_y bounds both x̂ ± ŷ and x ± y; fl adds ≤ u(|cₓ ± c_y| + p):
//!   e = (1+u)p + u|cₓ ± c_y|.
//! - x·y: p = |cₓ|e_y + |c_y|eₓ + eₓe_y bounds |x̂ŷ − cₓc_y| and |xy − cₓc_y|;
//!   e = (1+u)p + u|cₓc_y| + η.
//! - 1/x (and x/y as x·(1/y), which bounds the single rounding of x̂/ŷ as well as
//!   x̂·fl(1/ŷ)): needs eₓ < |cₓ| (else the case fails); for any v within eₓ,
//!   |1/v − 1/cₓ| ≤ eₓ/(|cₓ|(|cₓ| − eₓ)) =: p; e = (1+u)p + u/|cₓ| + η.
//! - a row sum of n terms, summed in lanes (`runtime::fused`; any order in which each
//!   term passes through at most n − 1 additions): Higham's bound,
//!   |fl(Σx̂ᵢ) − Σx̂ᵢ| ≤ γₙ₋₁ Σ|x̂ᵢ| ≤ γₙ₋₁ Σ(|cᵢ| + eᵢ), plus p = Σeᵢ (the lane sum
//!   itself is checked by [`super::reduce`]).
//! - a GEMM entry, a dot product of length k in whatever order and blocking
//!   matrixmultiply uses, FMA or not: |fl(Σâᵢb̂ᵢ) − Σâᵢb̂ᵢ| ≤ γₖ Σ|âᵢb̂ᵢ|, so
//!   e = Σ(|aᵢ|e_bᵢ + eₐᵢ|bᵢ| + eₐᵢe_bᵢ) + γₖ Σ(|aᵢ| + eₐᵢ)(|bᵢ| + e_bᵢ) + kη.
//! - an accumulating GEMM entry (β = 1), c + Σaᵢbᵢ: the old entry ĉ is one more term
//!   of the sum (k + 1 terms, each through at most k additions and one rounded or
//!   fused product), so e = e_c + Σ(…as above…) + γₖ₊₁ ((|c| + e_c) + Σ(|aᵢ| + eₐᵢ)(|bᵢ| + e_bᵢ)) + kη.
//! - transposes and copies: exact.
//! - exp of a ball (c, e) whose values are ≤ 0 (a softmax's shifted row): the real
//!   exp(x) lies in [exp_lo(a), exp_hi(b)], a = c − e, b = min(c + e, 0), both
//!   rounded outward to multiples of 2⁻⁶⁰; exp_lo/exp_hi are the rigorous enclosure
//!   ([`super::enclosure::exp_bounds`]) at the point z = a rounded down to a multiple
//!   of 2⁻⁸ (short rationals, cheap), times a 6-term Taylor bound of exp(y − z) for
//!   0 ≤ y − z ≤ 1/2 (remainder ≤ 2(y − z)⁷/7!). The runtime exp of x̂ is within
//!   ε = EXP_ULPS·2⁻⁵² relative plus η of exp(x̂) (the widening the enclosure rung
//!   uses and checks). So with lo′ = max(0, exp_lo(a)(1 − ε) − η) and
//!   hi′ = exp_hi(b)(1 + ε) + η, rounded outward to 256 bits, the ball is
//!   ((lo′ + hi′)/2, (hi′ − lo′)/2).
//! - softmax of a row, as the f64 kernels compute it (m̂ = max x̂ᵢ, tⱼ = fl(x̂ⱼ − m̂),
//!   êⱼ = exp tⱼ, Ŝ = Σ êₖ in any order, sⱼ = fl(êⱼ/Ŝ)): max is 1-Lipschitz in the sup
//!   norm, so m̂ and the real row max M both lie in (max cᵢ, max eᵢ); tⱼ and the real
//!   xⱼ − M are in the ball of the subtraction, and both are ≤ 0; exp, sum and divide
//!   follow the rules above. By shift invariance the real softmax(x)ⱼ is
//!   exp(xⱼ − M)/Σₖ exp(xₖ − M), so the ball of the quotient holds it and ŝⱼ. The sum
//!   and the quotients are re-centered to 256 bits (radius rounded up to cover the
//!   shift) so the rationals stay small.
//!
//! A standalone exp (the platform's libm in f64) is not modeled: plans with one are
//! refused.

use super::enclosure::{exp_bounds, exp_eps, round};
use super::ratio;
use super::{f64_inputs, refuse_libm_exp, show, Drawn, F64Run, RungConfig, RungCount, RungError};
use crate::exec::{exec_exact, exec_f64, ExecScalar, Tensors};
use crate::lower::Plan;
use crate::manifest::Built;
use crate::scalar::{f64_to_rational, ExpOracle, Rational, Scalar, ScalarError};
use num_bigint::BigInt;
use num_traits::{One, Signed, ToPrimitive, Zero};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::fmt;
use std::ops::{Add, Mul, Neg, Sub};
use std::sync::OnceLock;

/// A ball holding both the f64 executor's value and the real value.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounded {
    /// The center c (the exact value, for plans without exp).
    pub value: Rational,
    /// e ≥ |x̂ − c| and e ≥ |x − c|.
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

/// u, 1 + u and η, made once (the hot loops below read them per operation).
struct Constants {
    u: Rational,
    one_plus_u: Rational,
    eta: Rational,
}

fn constants() -> &'static Constants {
    static C: OnceLock<Constants> = OnceLock::new();
    C.get_or_init(|| Constants {
        u: unit(),
        one_plus_u: r_one() + unit(),
        eta: eta(),
    })
}

/// (1 + u)·p + u·|v| (+ η when `under`): the radius after rounding a result v whose
/// pre-rounding radius is p.
fn rounded_err(p: &Rational, v: &Rational, under: bool) -> Rational {
    let c = constants();
    let e = ratio::add(&ratio::mul(&c.one_plus_u, p), &ratio::mul(&c.u, &v.abs()));
    if under {
        ratio::add(&e, &c.eta)
    } else {
        e
    }
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
        ratio::add(&self.value.abs(), &self.err)
    }

    /// The ball with its center rounded toward zero to 256 bits and its radius rounded
    /// up to cover the shift: a superset, with small rationals.
    fn rounded(self) -> Self {
        if self.value.is_zero() {
            return self;
        }
        let c = round(&self.value.abs(), false);
        let c = if self.value.is_negative() { -c } else { c };
        let r = self.err + (self.value - c.clone()).abs();
        Bounded {
            value: c,
            err: if r.is_zero() { r } else { round(&r, true) },
        }
    }
}

/// Fractional bits of the grid exp's argument ends are rounded outward to.
const ARG_BITS: i32 = 60;
/// Fractional bits of the coarse point exp is enclosed at exactly.
const COARSE_BITS: i32 = 8;

/// `q` rounded down (`up`: up) to a multiple of 2⁻ᵇⁱᵗˢ.
fn to_grid(q: &Rational, bits: i32, up: bool) -> Rational {
    let g = pow2(bits);
    let s = q.clone() * g.clone();
    (if up { s.ceil() } else { s.floor() }) / g
}

/// Taylor terms of [`exp_small`].
const SMALL_TERMS: i64 = 6;

/// Bounds on exp(d) for 0 ≤ d ≤ 1/2: the Taylor sum to d⁶/6! below (every term is
/// ≥ 0), plus 2d⁷/7! above (the Lagrange remainder e^ξ d⁷/7! with e^ξ < 2). For
/// d < 2⁻⁷ the two differ by less than 2⁻⁶¹.
fn exp_small(d: &Rational, up: bool) -> Rational {
    let (mut sum, mut term) = (r_zero(), r_one());
    for k in 1..=SMALL_TERMS + 1 {
        sum += term.clone();
        term = term * d.clone() / Rational::from_integer(BigInt::from(k));
    }
    if up {
        sum + term * Rational::from_integer(BigInt::from(2))
    } else {
        sum
    }
}

/// Rational bounds lo ≤ exp(y) ≤ hi for every y in [a, b], b ≤ 0: one exact
/// enclosure at the coarse grid point z ≤ a ([`exp_bounds`], short rationals), times
/// exp(y − z) by [`exp_small`] (a and b rounded outward to the fine grid).
fn exp_range(a: &Rational, b: &Rational) -> Result<(Rational, Rational), ScalarError> {
    let bounds = |y: &Rational| {
        exp_bounds(y).ok_or_else(|| ScalarError::Inexact {
            value: format!("exp({y})"),
            target: "a bounded f64 (argument above 1000)",
        })
    };
    let z = to_grid(a, COARSE_BITS, false);
    let (a, b) = (to_grid(a, ARG_BITS, false), to_grid(b, ARG_BITS, true));
    let (lo, hi) = bounds(&z)?;
    let lo = lo * exp_small(&(a - z.clone()), false);
    let d = b.clone() - z;
    let half = Rational::new(BigInt::one(), BigInt::from(2));
    let hi = if d <= half {
        hi * exp_small(&d, true)
    } else {
        bounds(&b)?.1
    };
    Ok((lo, hi))
}

/// The ball of exp over a ball whose values (real and f64) are ≤ 0, for an f64 exp
/// within relative `eps` plus η (see the module doc).
fn exp_ball(x: &Bounded, eps: &Rational) -> Result<Bounded, ScalarError> {
    let a = x.value.clone() - x.err.clone();
    let b = (x.value.clone() + x.err.clone()).min(r_zero());
    let (lo, hi) = exp_range(&a, &b)?;
    let lo = lo * (r_one() - eps.clone()) - eta();
    let lo = if lo.is_positive() {
        round(&lo, false)
    } else {
        r_zero()
    };
    let hi = round(&(hi * (r_one() + eps.clone()) + eta()), true);
    let two = Rational::from_integer(BigInt::from(2));
    Ok(Bounded {
        value: (lo.clone() + hi.clone()) / two.clone(),
        err: (hi - lo) / two,
    })
}

impl fmt::Display for Bounded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ± {}", self.value, self.err)
    }
}

fn add_like(v: Rational, e: Rational) -> Bounded {
    Bounded {
        err: rounded_err(&e, &v, false),
        value: v,
    }
}

impl Add for Bounded {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        add_like(
            ratio::add(&self.value, &o.value),
            ratio::add(&self.err, &o.err),
        )
    }
}

impl Sub for Bounded {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        add_like(
            ratio::sub(&self.value, &o.value),
            ratio::add(&self.err, &o.err),
        )
    }
}

/// |a|·e_b + e_a·|b| + e_a·e_b: the pre-rounding radius of a product.
fn product_err(a: &Bounded, b: &Bounded) -> Rational {
    let p = ratio::add(
        &ratio::mul(&a.value.abs(), &b.err),
        &ratio::mul(&a.err, &b.value.abs()),
    );
    ratio::add(&p, &ratio::mul(&a.err, &b.err))
}

impl Mul for Bounded {
    type Output = Self;
    fn mul(self, o: Self) -> Self {
        let p = product_err(&self, &o);
        let v = ratio::mul(&self.value, &o.value);
        Bounded {
            err: rounded_err(&p, &v, true),
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
            target: "a bounded f64 (a standalone exp is libm's, not modeled)",
        })
    }
}

impl ExecScalar for Bounded {
    fn sum(xs: impl Iterator<Item = Self>) -> Self {
        let (mut v, mut e, mut m, mut n) = (r_zero(), r_zero(), r_zero(), 0);
        for x in xs {
            m = ratio::add(&m, &x.mag());
            v = ratio::add(&v, &x.value);
            e = ratio::add(&e, &x.err);
            n += 1usize;
        }
        Bounded {
            value: v,
            err: ratio::add(&e, &ratio::mul(&gamma(n.saturating_sub(1)), &m)),
        }
    }

    fn dot(pairs: impl Iterator<Item = (Self, Self)>) -> Self {
        dot_from(Self::zero(), 0, pairs)
    }

    fn softmax_in_place(row: &mut [Self], _: &ExpOracle) -> Result<(), ScalarError> {
        softmax_with(row, &exp_eps())
    }

    fn dot_onto(c: Self, pairs: impl Iterator<Item = (Self, Self)>) -> Self {
        dot_from(c, 1, pairs)
    }
}

/// The softmax ball of a row (see the module doc), the f64 exp within relative `eps`.
fn softmax_with(row: &mut [Bounded], eps: &Rational) -> Result<(), ScalarError> {
    let Some(m) = row.iter().map(|x| x.value.clone()).max() else {
        return Ok(());
    };
    let shift = Bounded {
        value: m,
        err: row
            .iter()
            .map(|x| x.err.clone())
            .max()
            .unwrap_or_else(r_zero),
    };
    for v in row.iter_mut() {
        *v = exp_ball(&(v.clone() - shift.clone()), eps)?;
    }
    let total = Bounded::sum(row.iter().cloned()).rounded();
    for v in row.iter_mut() {
        *v = v.div(&total)?.rounded();
    }
    Ok(())
}

/// `c + Σ aᵢbᵢ` with `terms` extra summands already in `c` (0: a plain dot product
/// from an exact zero; 1: an accumulated entry).
fn dot_from(c: Bounded, terms: usize, pairs: impl Iterator<Item = (Bounded, Bounded)>) -> Bounded {
    let (mut v, mut p, mut m, mut k) = (c.value.clone(), c.err.clone(), c.mag(), 0);
    for (a, b) in pairs {
        p = ratio::add(&p, &product_err(&a, &b));
        m = ratio::add(&m, &ratio::mul(&a.mag(), &b.mag()));
        v = ratio::add(&v, &ratio::mul(&a.value, &b.value));
        k += 1usize;
    }
    let under = eta() * Rational::from_integer(BigInt::from(k));
    let err = ratio::add(&p, &ratio::mul(&gamma(k + terms), &m));
    Bounded {
        value: v,
        err: ratio::add(&err, &under),
    }
}

/// Rung (c) for a built kernel, on the plan it runs.
pub fn rung_f64_bound(b: &Built, cfg: &RungConfig) -> Result<RungCount, RungError> {
    check_f64_bound(&b.plan, &|i| exec_f64(&b.plan, i), cfg)
}

/// A general f64 in [−4, 4) with a full random mantissa.
pub(crate) fn general(rng: &mut ChaCha8Rng) -> f64 {
    rng.gen_range(-4.0..4.0)
}

/// Rung (c): every entry of `run`'s outputs lies within the [`Bounded`] error of the
/// exact value; `worst` is the largest |error| / bound seen.
pub fn check_f64_bound(
    plan: &Plan,
    run: &F64Run<'_>,
    cfg: &RungConfig,
) -> Result<RungCount, RungError> {
    Ok(Balls::of(plan, cfg)?.check(run))
}

/// Rung (c)'s expensive half, computed once per plan and configuration: the inputs of
/// every case and the ball of every output there (or why the ball run failed). Any
/// number of f64 runs of the same plan (the executor, the generated kernel) are then
/// checked against the same balls, case for case as [`check_f64_bound`] would.
pub struct Balls {
    cases: Vec<(Drawn, Result<Tensors<Bounded>, String>)>,
}

impl Balls {
    /// The balls of `cfg.cases` cases of `plan` on general inputs, the cases run in
    /// parallel; refused for a plan with a standalone exp.
    pub fn of(plan: &Plan, cfg: &RungConfig) -> Result<Balls, RungError> {
        refuse_libm_exp(plan, "f64 within the forward-error bound")?;
        let cases = f64_inputs(plan, cfg, general)?
            .into_par_iter()
            .map(|(inputs, exact_in)| {
                let bounded_in: Tensors<Bounded> = exact_in
                    .iter()
                    .map(|(k, t)| (k.clone(), t.map(|q| Bounded::exact(q.clone()))))
                    .collect();
                let balls = exec_exact(plan, &bounded_in, &ExpOracle::None)
                    .map_err(|x| format!("bound run failed: {x}"));
                ((inputs, exact_in), balls)
            })
            .collect();
        Ok(Balls { cases })
    }

    /// Rung (c) for `run`: each case's f64 outputs inside their balls.
    pub fn check(&self, run: &F64Run<'_>) -> RungCount {
        let mut count = RungCount::default();
        for ((inputs, exact_in), balls) in &self.cases {
            let failure = match (run(inputs), balls) {
                (Ok(f), Ok(b)) => {
                    within(&f, b, &mut count).map(|w| format!("{w} at {}", show(exact_in)))
                }
                (Ok(_), Err(why)) => Some(why.clone()),
                (Err(x), _) => Some(format!("f64 run failed: {x}")),
            };
            count.record(failure);
        }
        count
    }
}

/// Whether `x` is the infinity f64 rounds every value of the ball `w` to: the whole
/// ball lies beyond the overflow threshold (2¹⁰²⁴ − 2⁹⁷⁰) on `x`'s side.
fn overflowed(x: f64, w: &Bounded) -> bool {
    let threshold = pow2(1024) - pow2(970);
    let beyond = w.value.abs() - w.err.clone() >= threshold;
    x.is_infinite() && beyond && (x > 0.0) == w.value.is_positive()
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
                if overflowed(*x, w) {
                    continue;
                }
                return Some(format!(
                    "{name}[{i}] = {x} is not finite (its ball: {:e} ± {:e})",
                    w.value.to_f64().unwrap_or(f64::NAN),
                    w.err.to_f64().unwrap_or(f64::NAN)
                ));
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

#[cfg(test)]
mod tests {
    use super::super::enclosure::softmax_off;
    use super::*;
    use crate::manifest::KernelMode;

    fn built(kernel: &str, mode: KernelMode) -> Built {
        let manifest = crate::manifest::Manifest::embedded().unwrap();
        let rules = crate::rules::RuleSet::embedded().unwrap();
        manifest
            .kernel(kernel)
            .unwrap()
            .build(mode, &rules, &crate::derive::Limits::default())
            .unwrap()
    }

    const CFG: RungConfig = RungConfig {
        cases: 12,
        seed: 5,
        max_dim: 3,
    };

    use crate::exec::ExecError;
    use crate::kernels::runtime::{exp_sum, EXP_ULPS};
    use crate::rungs::enclosure::exp_domain_samples;

    fn q(x: f64) -> Rational {
        f64_to_rational(x).unwrap()
    }

    fn holds(b: &Bounded, x: &Rational) -> bool {
        (x.clone() - b.value.clone()).abs() <= b.err
    }

    #[test]
    fn the_exp_ball_holds_the_runtime_exp_and_the_real_exp() {
        for t in exp_domain_samples(200, 21) {
            let mut e = [t];
            exp_sum(&mut e);
            let ball = exp_ball(&Bounded::exact(q(t)), &exp_eps()).unwrap();
            assert!(holds(&ball, &q(e[0])), "exp({t}) = {}: {ball}", e[0]);
            let (lo, hi) = exp_bounds(&q(t)).unwrap();
            assert!(holds(&ball, &lo) && holds(&ball, &hi), "exp({t})");
            // A wide ball around t holds the ends of its range too.
            let wide = Bounded {
                value: q(t),
                err: pow2(-20),
            };
            let w = exp_ball(&wide, &exp_eps()).unwrap();
            let end = exp_bounds(&(q(t) - pow2(-20))).unwrap().0;
            assert!(holds(&w, &end) && holds(&w, &hi), "exp({t} ± 2⁻²⁰)");
        }
    }

    #[test]
    fn the_exp_ball_needs_its_eps_term() {
        // A value within the exp's contract (EXP_ULPS − 1/2 ulps above the exact
        // enclosure's upper end) is inside the ball; with ε = 0 (a radius bug) the
        // same value falls outside, so the check above (and rung (c)) would catch
        // such a bug.
        let mut caught = 0;
        for t in exp_domain_samples(50, 22) {
            let hi = exp_bounds(&q(t)).unwrap().1;
            if hi < q(f64::MIN_POSITIVE) {
                continue;
            }
            let off = hi * (r_one() + pow2(-52) * q(EXP_ULPS - 0.5));
            let x = Bounded::exact(q(t));
            assert!(holds(&exp_ball(&x, &exp_eps()).unwrap(), &off), "exp({t})");
            caught += usize::from(!holds(&exp_ball(&x, &r_zero()).unwrap(), &off));
        }
        assert!(caught > 40, "{caught}");
    }

    #[test]
    fn rung_c_bounds_the_softmax_forward_and_rejects_a_wrong_exp() {
        let plan = built("softmax_last", KernelMode::Forward).plan;
        let good = check_f64_bound(&plan, &|i| exec_f64(&plan, i), &CFG).unwrap();
        assert!(good.holds(), "{good:?}");
        assert!(check_f64_bound(&plan, &softmax_off(0.0), &CFG)
            .unwrap()
            .holds());
        // exp(x)·(1 + 2⁻³⁰), and exp off by 2¹⁰ ulps.
        for k in [(1u64 << 22) as f64, 1024.0] {
            let c = check_f64_bound(&plan, &softmax_off(k), &CFG).unwrap();
            // Every nonempty case (the first half) fails.
            assert!(c.passed <= c.cases / 2 && !c.holds(), "{k}: {c:?}");
        }
    }

    /// The f64 run of `plan` with every entry of output `name` moved by `ulps`.
    fn nudged<'a>(
        plan: &'a Plan,
        name: &'a str,
        ulps: u64,
    ) -> impl Fn(&Tensors<f64>) -> Result<Tensors<f64>, ExecError> + 'a {
        move |i| {
            let mut out = exec_f64(plan, i)?;
            if let Some(t) = out.get_mut(name) {
                let data = t.data().iter().map(|x| f64::from_bits(x.to_bits() + ulps));
                *t = crate::tensor::Tensor::new(t.dims(), data.collect())?;
            }
            Ok(out)
        }
    }

    #[test]
    fn rung_c_bounds_attention_and_rejects_a_softmax_off_by_2_to_the_10_ulps() {
        let plan = built("mha_h4", KernelMode::Forward).plan;
        let good = check_f64_bound(&plan, &|i| exec_f64(&plan, i), &CFG).unwrap();
        assert!(good.holds(), "{good:?}");
        // The saved softmax P, every entry 2¹⁰ ulps high.
        let c = check_f64_bound(&plan, &nudged(&plan, "P", 1 << 10), &CFG).unwrap();
        assert!(c.passed <= c.cases / 2 && !c.holds(), "{c:?}");
    }

    #[test]
    fn an_infinite_output_passes_only_when_its_whole_ball_overflows() {
        let one = |x: f64, w: Bounded| {
            let f = crate::tensor::Tensor::new([1, 1, 1], vec![x]).unwrap();
            let b = crate::tensor::Tensor::new([1, 1, 1], vec![w]).unwrap();
            let f: Tensors<f64> = [("out".to_string(), f)].into_iter().collect();
            let b: Tensors<Bounded> = [("out".to_string(), b)].into_iter().collect();
            within(&f, &b, &mut RungCount::default())
        };
        let huge = Bounded {
            value: pow2(1030),
            err: pow2(1020),
        };
        assert_eq!(one(f64::INFINITY, huge.clone()), None);
        assert!(one(f64::NEG_INFINITY, huge.clone()).is_some());
        // A ball reaching below the threshold, or a small one: inf is a failure.
        let straddling = Bounded {
            value: pow2(1024),
            err: pow2(1023),
        };
        assert!(one(f64::INFINITY, straddling).is_some());
        assert!(one(f64::INFINITY, Bounded::exact(r_one())).is_some());
        assert!(one(f64::NAN, huge).is_some());
    }
}
