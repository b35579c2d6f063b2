//! Rung (d): the f64 softmax forward inside a rigorous rational enclosure.
//!
//! **exp over ℚ.** For rational r with |r| ≤ 1/2, Taylor's theorem with the Lagrange
//! remainder gives `exp r = Σ_{k≤N} rᵏ/k! + e^ξ r^{N+1}/(N+1)!` for some ξ between 0
//! and r; `e^ξ ≤ e^{1/2} < 2`, so `exp r` lies within `2|r|^{N+1}/(N+1)!` of the
//! partial sum ([`exp_bounds`] takes N = 30). For |y| ≤ 1000 we write `y = 2ʲ r` with
//! |r| ≤ 1/2 and square the enclosure j times (`exp 2r = (exp r)²`; squaring is
//! monotone on positive bounds). Between squarings the bounds are rounded outward to
//! 256 significant bits, so they stay small; the lower bound stays positive. For
//! y < −1000 the enclosure is `[0, hi(exp(−1000))]` by monotonicity.
//!
//! **softmax.** With m the row maximum (exact), `softmax(x)ⱼ = exp(yⱼ)/Σₖ exp(yₖ)`,
//! `yⱼ = xⱼ − m ≤ 0` (shift invariance, an identity). As `e/(e + R)` increases in e
//! and decreases in R, `[Lⱼ/(Lⱼ + Σ_{k≠j} Uₖ), Uⱼ/(Uⱼ + Σ_{k≠j} Lₖ)]` encloses it.
//!
//! **The f64 kernel** ([`crate::exec::kernels`]) computes `tⱼ = fl(xⱼ − m)`, within
//! u|yⱼ| of yⱼ; `êⱼ = exp(tⱼ)` by libm, assumed within 1 ulp (relative 2u, plus the
//! subnormal spacing η below the normal range); `Ŝ = Σ êₖ` left to right, within
//! γₙ₋₁ Ŝ-relative of the exact sum of the êₖ (all positive); `ŝⱼ = fl(êⱼ/Ŝ)`. So
//! `ŝⱼ ∈ [Lⱼ′(1−u)/S_hi − η, Uⱼ′(1+u)/S_lo + η]` with `Lⱼ′ = exp_lo(yⱼ(1+u))(1−2u) − η`,
//! `Uⱼ′ = exp_hi(yⱼ(1−u))(1+2u) + η`, `S_lo = (1−γₙ₋₁)Σ L′`, `S_hi = (1+γₙ₋₁)Σ U′`.
//! The rung checks ŝⱼ lies there, and reports as `worst` its distance outside the
//! exact enclosure over the widening (≤ 1 when it passes).

use super::bounded::gamma;
use super::{random_inputs, to_rational, F64Run, RungConfig, RungCount, RungError};
use crate::exec::{exec_f64, Tensors};
use crate::ir::{Expr, Op};
use crate::lower::Plan;
use crate::manifest::Built;
use crate::scalar::Rational;
use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{One, Signed, ToPrimitive, Zero};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Significant bits kept by outward rounding.
const PRECISION: i64 = 256;
/// Taylor terms.
const TERMS: u32 = 30;

fn pow2(k: i64) -> Rational {
    let p = Rational::from_integer(BigInt::one() << k.unsigned_abs());
    if k >= 0 {
        p
    } else {
        p.recip()
    }
}

/// `q > 0` rounded to [`PRECISION`] significant bits, up or down.
fn round(q: &Rational, up: bool) -> Rational {
    let e = q.numer().bits() as i64 - q.denom().bits() as i64;
    let scale = pow2(PRECISION - e);
    let scaled = q * &scale;
    let (d, r) = scaled.numer().div_rem(scaled.denom());
    let m = if up && !r.is_zero() { d + 1 } else { d };
    Rational::from_integer(m) / scale
}

/// Rational bounds `lo ≤ exp(y) ≤ hi` (see the module doc for the proof); `None` for
/// y > 1000.
pub fn exp_bounds(y: &Rational) -> Option<(Rational, Rational)> {
    let limit = Rational::from_integer(BigInt::from(1000));
    if y > &limit {
        return None;
    }
    if y < &-limit.clone() {
        let (_, hi) = exp_bounds(&-limit)?;
        return Some((Rational::zero(), hi));
    }
    let half = Rational::new(BigInt::one(), BigInt::from(2));
    let (mut r, mut j) = (y.clone(), 0);
    while r.abs() > half {
        r /= Rational::from_integer(BigInt::from(2));
        j += 1;
    }
    let (mut sum, mut term) = (Rational::zero(), Rational::one());
    for k in 1..=TERMS + 1 {
        sum += term.clone();
        term = term * r.clone() / Rational::from_integer(BigInt::from(k));
    }
    // `term` is now r^{N+1}/(N+1)!.
    let rem = term.abs() * Rational::from_integer(BigInt::from(2));
    let (mut lo, mut hi) = (
        round(&(sum.clone() - rem.clone()), false),
        round(&(sum + rem), true),
    );
    for _ in 0..j {
        lo = round(&(lo.clone() * lo), false);
        hi = round(&(hi.clone() * hi), true);
    }
    Some((lo, hi))
}

/// Checks one row of f64 softmax output `s` for inputs `x`; returns the measured
/// ratio or why it fails.
fn check_row(x: &[Rational], s: &[f64]) -> Result<f64, String> {
    let Some(m) = x.iter().max().cloned() else {
        return Ok(0.0);
    };
    let u = pow2(-53);
    let eta = pow2(-1074);
    let one = Rational::one();
    let mut exact = Vec::new();
    let mut widened = Vec::new();
    for xj in x {
        let y = xj.clone() - m.clone();
        let (l, h) = exp_bounds(&y).ok_or("exp argument above 1000")?;
        let (lw, _) = exp_bounds(&(y.clone() * (one.clone() + u.clone()))).ok_or("exp range")?;
        let (_, hw) = exp_bounds(&(y * (one.clone() - u.clone()))).ok_or("exp range")?;
        let two_u = u.clone() * Rational::from_integer(BigInt::from(2));
        let lw = (lw * (one.clone() - two_u.clone()) - eta.clone()).max(Rational::zero());
        let hw = hw * (one.clone() + two_u) + eta.clone();
        exact.push((l, h));
        widened.push((lw, hw));
    }
    let g = gamma(x.len().saturating_sub(1));
    let sum = |v: &[(Rational, Rational)], hi: bool| -> Rational {
        v.iter()
            .map(|p| if hi { p.1.clone() } else { p.0.clone() })
            .sum()
    };
    let (sl, sh) = (sum(&exact, false), sum(&exact, true));
    let s_lo = (one.clone() - g.clone()) * sum(&widened, false);
    let s_hi = (one.clone() + g) * sum(&widened, true);
    let mut worst: f64 = 0.0;
    for (j, sj) in s.iter().enumerate() {
        let got = crate::scalar::f64_to_rational(*sj).map_err(|e| format!("entry {j}: {e}"))?;
        let (l, h) = &exact[j];
        // Exact enclosure: L/(L + Σ_{k≠j} U) .. U/(U + Σ_{k≠j} L).
        let lo = l.clone() / (l.clone() + sh.clone() - h.clone());
        let hi = h.clone() / (h.clone() + sl.clone() - l.clone());
        let (lw, hw) = &widened[j];
        let lo_w =
            (lw.clone() * (one.clone() - u.clone()) / s_hi.clone() - eta.clone()).min(lo.clone());
        let hi_w =
            (hw.clone() * (one.clone() + u.clone()) / s_lo.clone() + eta.clone()).max(hi.clone());
        if got < lo_w || got > hi_w {
            return Err(format!(
                "entry {j} = {sj} outside [{}, {}]",
                lo_w.to_f64().unwrap_or(0.0),
                hi_w.to_f64().unwrap_or(0.0)
            ));
        }
        let outside = (lo.clone() - got.clone())
            .max(got - hi.clone())
            .max(Rational::zero());
        let widening = (lo - lo_w).max(hi_w - hi);
        if !widening.is_zero() {
            worst = worst.max((outside / widening).to_f64().unwrap_or(f64::INFINITY));
        }
    }
    Ok(worst)
}

/// The input `x` of a kernel whose term is `(softmax x)`, if it is one.
pub fn softmax_of_input(term: &Expr) -> Option<String> {
    match term.as_ref() {
        [Op::Input(x), Op::Softmax(_)] => Some(x.to_string()),
        _ => None,
    }
}

/// Rung (d) for a built kernel whose term is the softmax of an input: the f64 forward
/// on random rows (a quarter of the cases scaled to magnitude 1e300, exercising the
/// max shift) lies inside the enclosure.
pub fn rung_softmax_enclosure(b: &Built, cfg: &RungConfig) -> Result<RungCount, RungError> {
    let input = softmax_of_input(&b.term).ok_or_else(|| {
        RungError::NotApplicable(format!(
            "{}: the exp enclosure covers a softmax of an input, not {}",
            b.kernel, b.term
        ))
    })?;
    check_softmax_enclosure(&b.plan, &|i| exec_f64(&b.plan, i), &input, cfg)
}

/// Rung (d) for any f64 run of the softmax forward `plan` (input `input`, output
/// `out`).
pub fn check_softmax_enclosure(
    plan: &Plan,
    run: &F64Run<'_>,
    input: &str,
    cfg: &RungConfig,
) -> Result<RungCount, RungError> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut count = RungCount::default();
    for case in 0..cfg.cases {
        let scale = if case % 4 == 3 { 1e300 } else { 8.0 };
        let inputs: Tensors<f64> =
            random_inputs(plan, &mut rng, cfg.max_dim, case < cfg.cases / 2, |r| {
                r.gen_range(-1.0..1.0) * scale
            })?;
        let x = to_rational(&inputs)?;
        let failure = match run(&inputs) {
            Err(e) => Some(e.to_string()),
            Ok(out) => {
                let (Some(xs), Some(s)) = (x.get(input), out.get("out")) else {
                    count.record(Some(format!("the run has no {input} or no out")));
                    continue;
                };
                let n = xs.dims()[2].max(1);
                xs.data()
                    .chunks(n)
                    .zip(s.data().chunks(n))
                    .enumerate()
                    .find_map(|(i, (xr, sr))| match check_row(xr, sr) {
                        Ok(w) => {
                            count.measure(w);
                            None
                        }
                        Err(why) => Some(format!("row {i}: {why}")),
                    })
            }
        };
        count.record(failure);
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(p: i64, d: i64) -> Rational {
        Rational::new(BigInt::from(p), BigInt::from(d))
    }

    #[test]
    fn exp_bounds_enclose_known_values_tightly() {
        for (y, v) in [
            (0.0f64, 1.0f64),
            (-1.0, (-1.0f64).exp()),
            (-20.5, (-20.5f64).exp()),
        ] {
            let (lo, hi) = exp_bounds(&crate::scalar::f64_to_rational(y).unwrap()).unwrap();
            let rel = ((hi.clone() - lo.clone()) / lo.clone()).to_f64().unwrap();
            assert!(rel < 1e-35, "{y}: width {rel}");
            let (l, h) = (lo.to_f64().unwrap(), hi.to_f64().unwrap());
            assert!(l <= v * (1.0 + 1e-15) && h >= v * (1.0 - 1e-15), "{y}");
        }
        assert!(exp_bounds(&q(0, 1)).unwrap().0 <= Rational::one());
        assert!(exp_bounds(&q(-5000, 1)).unwrap().0.is_zero());
        assert!(exp_bounds(&q(2000, 1)).is_none());
    }

    #[test]
    fn the_enclosure_rejects_a_wrong_softmax() {
        let x = [q(0, 1), q(-1, 1)];
        let e = (-1.0f64).exp();
        let right = [1.0 / (1.0 + e), e / (1.0 + e)];
        assert!(check_row(&x, &right).is_ok());
        let wrong = [right[0] * (1.0 + 1e-12), right[1]];
        assert!(check_row(&x, &wrong).is_err());
    }

    #[test]
    fn the_f64_softmax_forward_lies_in_the_enclosure() {
        let cfg = RungConfig {
            cases: 12,
            seed: 3,
            max_dim: 4,
        };
        let manifest = crate::manifest::Manifest::embedded().unwrap();
        let rules = crate::rules::RuleSet::embedded().unwrap();
        let built = manifest
            .kernel("softmax_last")
            .unwrap()
            .build(
                crate::manifest::KernelMode::Forward,
                &rules,
                &crate::derive::Limits::default(),
            )
            .unwrap();
        let c = rung_softmax_enclosure(&built, &cfg).unwrap();
        assert!(c.holds(), "{c:?}");
        assert!(c.worst.unwrap_or(0.0) <= 1.0);
    }
}
