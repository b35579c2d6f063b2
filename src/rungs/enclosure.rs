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
//! u|yⱼ| of yⱼ; `êⱼ = exp(tⱼ)` by the runtime's vectorized exp, within
//! [`EXP_ULPS`] ulps (relative ε = 2·EXP_ULPS·u, plus the subnormal spacing η below
//! the normal range: checked by [`check_exp`]); `Ŝ = Σ êₖ` in any order, within
//! γₙ₋₁ Ŝ-relative of the exact sum of the êₖ (all positive); `ŝⱼ = fl(êⱼ/Ŝ)`. So
//! `ŝⱼ ∈ [Lⱼ′(1−u)/S_hi − η, Uⱼ′(1+u)/S_lo + η]` with `Lⱼ′ = exp_lo(yⱼ(1+u))(1−ε) − η`,
//! `Uⱼ′ = exp_hi(yⱼ(1−u))(1+ε) + η`, `S_lo = (1−γₙ₋₁)Σ L′`, `S_hi = (1+γₙ₋₁)Σ U′`.
//!
//! **The exp itself** ([`check_exp`]): each ê of an `exp_sum` path on sample points
//! lies within EXP_ULPS · 2⁻⁵² · lo (+ η) of the exact enclosure [lo, hi] of exp.
//! The rung checks ŝⱼ lies there, and reports as `worst` its distance outside the
//! exact enclosure over the widening (≤ 1 when it passes).

use super::bounded::gamma;
use super::{random_inputs, to_rational, F64Run, RungConfig, RungCount, RungError};
use crate::exec::{exec_f64, Tensors};
use crate::ir::{Expr, Op};
use crate::kernels::runtime::EXP_ULPS;
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
pub(super) fn round(q: &Rational, up: bool) -> Rational {
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

/// ε = EXP_ULPS · 2⁻⁵², the runtime exp's relative error bound.
pub(super) fn exp_eps() -> Rational {
    Rational::from_float(EXP_ULPS).unwrap_or_else(Rational::one) * pow2(-52)
}

/// Checks `exp` (an `exp_sum` path: exponentiates a slice in place) at every point
/// of `xs` against the exact enclosure of exp: each ê must lie within
/// EXP_ULPS · 2⁻⁵² · lo (+ η, the subnormal spacing) of [lo, hi]. Returns the worst
/// measured error in ulps over the normal results (distance outside [lo, hi] over
/// 2⁻⁵² · lo, a rigorous lower bound of the true error), or the first point outside.
pub fn check_exp(exp: &dyn Fn(&mut [f64]) -> f64, xs: &[f64]) -> Result<f64, String> {
    let mut got = xs.to_vec();
    exp(&mut got);
    let eta = pow2(-1074);
    let mut worst: f64 = 0.0;
    for (x, e) in xs.iter().zip(&got) {
        let q = crate::scalar::f64_to_rational(*x).map_err(|w| format!("exp({x}): {w}"))?;
        let (lo, hi) = exp_bounds(&q).ok_or_else(|| format!("exp({x}): out of range"))?;
        let e_q = crate::scalar::f64_to_rational(*e).map_err(|w| format!("exp({x}) = {e}: {w}"))?;
        let outside = (lo.clone() - e_q.clone())
            .max(e_q - hi)
            .max(Rational::zero());
        let allowed = exp_eps() * lo.clone() + eta.clone();
        if outside > allowed {
            return Err(format!(
                "exp({x:e}) = {e:e} is {:e} outside the exact enclosure, beyond {EXP_ULPS} ulps",
                outside.to_f64().unwrap_or(f64::INFINITY)
            ));
        }
        if lo >= pow2(-1022) {
            let ulps = outside / (lo * pow2(-52));
            worst = worst.max(ulps.to_f64().unwrap_or(f64::INFINITY));
        }
    }
    Ok(worst)
}

/// Sample points over the softmax exp's domain: x ≤ 0 down to past the underflow
/// point (−745.2), uniform, log-uniform in magnitude, around the reduction boundaries
/// (k ± 1/2)·ln2/4, through the subnormal range, and the edges.
pub fn exp_domain_samples(count: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut xs = vec![
        0.0,
        -0.0,
        -f64::MIN_POSITIVE,
        -1e-300,
        -1e-16,
        -0.5,
        -708.0,
        -708.000_000_000_000_1,
        -708.39,
        -708.4,
        -745.13,
        -745.14,
        -745.2,
        -746.0,
    ];
    for i in 0..count {
        let x: f64 = match i % 4 {
            0 => rng.gen_range(-745.2..=0.0),
            1 => -(10f64.powf(rng.gen_range(-300.0..2.87))),
            2 => {
                let k = f64::from(rng.gen_range(-4300i32..=0));
                let near = (k + 0.5) * std::f64::consts::LN_2 / 4.0;
                near + rng.gen_range(-1e-12..1e-12)
            }
            _ => rng.gen_range(-745.2..=-708.0),
        };
        xs.push(x.min(0.0));
    }
    xs
}

/// Systematic points of the softmax exp's domain (x ≤ 0 down to −746): the lower edge
/// of every binade of |x| (2⁻¹⁰⁷⁴ … 2⁹, subnormals included), the reduction
/// boundaries (k + ½)·ln2/4 (every k from −128 to 0, then every 3rd down to −4300, so
/// every table index k mod 4 throughout), as their f64 products (within an ulp or two
/// of the boundary), where the reduction switches k and |r| is largest, and both sides
/// of the AVX2 path's fast limit, −708.
pub fn exp_systematic_samples() -> Vec<f64> {
    let pow2 = |e: i32| {
        if e >= -1022 {
            f64::from_bits(((e + 1023) as u64) << 52)
        } else {
            f64::from_bits(1u64 << (e + 1074))
        }
    };
    let mut xs = Vec::new();
    for e in -1074..=9 {
        xs.push(-pow2(e));
    }
    // The reduction's boundaries (k + 1/2)·ln2/4: every k near 0, then every 3rd
    // (so every residue of k mod 4, the table index, through the whole range).
    for k in (-128..=0).chain((-4300..-128).step_by(3)) {
        xs.push((f64::from(k) + 0.5) * std::f64::consts::LN_2 / 4.0);
    }
    // Both sides of the AVX2 path's fast limit.
    xs.extend([-708.0, -708.000_000_000_000_1, -707.999_999_999_999_9]);
    xs.retain(|x| (-746.0..=0.0).contains(x));
    xs
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
        let lw = (lw * (one.clone() - exp_eps()) - eta.clone()).max(Rational::zero());
        let hw = hw * (one.clone() + exp_eps()) + eta.clone();
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
            "{}: the exp enclosure covers a kernel that is the softmax of an input",
            b.kernel
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

/// The f64 softmax forward of `X` with each exp value but the row's last scaled
/// by `1 + k·2⁻⁵²` before the sum (a corrupted softmax the rungs must reject; the
/// rung (c) and rung (d) tests share it).
#[cfg(test)]
pub(super) fn softmax_off(
    k: f64,
) -> impl Fn(&Tensors<f64>) -> Result<Tensors<f64>, crate::exec::ExecError> {
    move |i| {
        let x = &i["X"];
        let n = x.dims()[2].max(1);
        let mut data = x.data().to_vec();
        for row in data.chunks_mut(n) {
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            row.iter_mut().for_each(|v| *v -= m);
            crate::kernels::runtime::exp_sum(row);
            let last = row.len() - 1;
            row[..last]
                .iter_mut()
                .for_each(|e| *e *= 1.0 + f64::EPSILON * k);
            let total: f64 = row.iter().sum();
            row.iter_mut().for_each(|e| *e /= total);
        }
        let out = crate::tensor::Tensor::new(x.dims(), data)?;
        Ok([("out".to_string(), out)].into_iter().collect())
    }
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

    use crate::kernels::runtime::{exp_sum, exp_sum_portable, exp_sum_scalar_fma, VectorPath};

    #[test]
    fn every_exp_path_is_within_exp_ulps_over_the_softmax_domain() {
        let xs = exp_domain_samples(300, 11);
        for (name, path) in [
            ("dispatched", exp_sum as fn(&mut [f64]) -> f64),
            ("scalar fma", exp_sum_scalar_fma),
            ("portable", exp_sum_portable),
        ] {
            let worst = check_exp(&path, &xs).unwrap_or_else(|e| panic!("{name}: {e}"));
            println!("{name}: worst {worst} ulps");
            assert!(worst <= EXP_ULPS, "{name}");
        }
    }

    /// The vector paths this CPU has ([`VectorPath::exp_sum`]); each test of a path
    /// says which ran, so a CPU without AVX-512 shows that path untested.
    fn vector_paths() -> Vec<(VectorPath, impl Fn(&mut [f64]) -> f64)> {
        VectorPath::ALL
            .into_iter()
            .filter(|p| {
                let on = p.available();
                println!("{p:?}: {}", if on { "run" } else { "not on this CPU" });
                on
            })
            .map(|p| (p, move |xs: &mut [f64]| p.exp_sum(xs).unwrap()))
            .collect()
    }

    #[test]
    fn every_vector_exp_is_within_exp_ulps_on_every_binade_and_boundary() {
        let xs = exp_systematic_samples();
        assert!(xs.len() > 2000);
        for (path, exp) in vector_paths() {
            let worst = check_exp(&exp, &xs).unwrap();
            println!(
                "{path:?}: worst {worst} ulps on {} systematic points",
                xs.len()
            );
            assert!(worst <= EXP_ULPS, "{path:?}");
        }
        let worst = check_exp(&exp_sum, &xs).unwrap();
        assert!(worst <= EXP_ULPS, "dispatched");
    }

    #[test]
    fn the_portable_exp_is_within_exp_ulps_on_every_binade_and_boundary() {
        let xs = exp_systematic_samples();
        let worst = check_exp(&exp_sum_portable, &xs).unwrap();
        println!(
            "portable: worst {worst} ulps on {} systematic points",
            xs.len()
        );
        assert!(worst <= EXP_ULPS);
    }

    /// The first length whose sum or entries differ in bits between `exp` and the
    /// scalar FMA path, over every prefix of `xs`.
    fn first_bits_difference(exp: &dyn Fn(&mut [f64]) -> f64, xs: &[f64]) -> Option<usize> {
        (0..=xs.len()).find(|&len| {
            let (mut a, mut b) = (xs[..len].to_vec(), xs[..len].to_vec());
            let (sa, sb) = (exp(&mut a), exp_sum_scalar_fma(&mut b));
            sa.to_bits() != sb.to_bits()
                || a.iter().zip(&b).any(|(x, y)| x.to_bits() != y.to_bits())
        })
    }

    #[test]
    fn every_vector_path_gives_the_scalar_fma_paths_bits() {
        // Every length up to past two of AVX-512's blocks of 64, so big blocks, small
        // ones and the remainder lanes are all covered on both widths.
        let xs = exp_domain_samples(150, 13);
        for (path, exp) in vector_paths() {
            assert_eq!(first_bits_difference(&exp, &xs), None, "{path:?}");
        }
        assert_eq!(first_bits_difference(&exp_sum, &xs), None, "dispatched");
        // The comparison sees one entry one ulp off, at the last length.
        let off = |v: &mut [f64]| {
            let s = exp_sum(v);
            if let Some(e) = v.get_mut(xs.len().saturating_sub(1)) {
                *e = f64::from_bits(e.to_bits() + 1);
            }
            s
        };
        assert_eq!(first_bits_difference(&off, &xs), Some(xs.len()));
    }

    #[test]
    fn every_vector_fast_path_gives_the_scalar_fma_paths_bits_and_is_left_for_one_far_lane() {
        // Blocks whose every |x| ≤ 708 take the fast path (one exponent add); one far
        // lane anywhere in a block (32 values on AVX2, 64 on AVX-512) must send the
        // whole block the careful way.
        let mut rng = ChaCha8Rng::seed_from_u64(19);
        let near: Vec<f64> = (0..160).map(|_| rng.gen_range(-708.0..=708.0)).collect();
        for (path, exp) in vector_paths() {
            for far in [-720.0, -745.0, 709.5, f64::NEG_INFINITY] {
                for at in 0..=near.len() {
                    let mut xs = near.clone();
                    if at < xs.len() {
                        xs[at] = far;
                    }
                    let (mut a, mut b) = (xs.clone(), xs.clone());
                    let (sa, sb) = (exp(&mut a), exp_sum_scalar_fma(&mut b));
                    assert_eq!(sa.to_bits(), sb.to_bits(), "{path:?}: sum, {far} at {at}");
                    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                        assert_eq!(
                            x.to_bits(),
                            y.to_bits(),
                            "{path:?}: {far} at {at}: entry {i}"
                        );
                    }
                }
            }
        }
    }

    /// An upper bound, exact over ℚ, on |r·P(r) − (e^r − 1)| for r in [lo, hi] (both of
    /// magnitude below 1/2), P the polynomial with coefficients `poly` (highest first,
    /// as the runtime's `EXP_POLY`). D(r) = r·P(r) − Σ_{m ≤ 13} rᵐ/m! is a polynomial:
    /// between two points of a grid of 2¹² + 1, |D| is at most the larger of its two
    /// ends plus C·h²/8 (the chord's error; C ≥ |D″| from the absolute values of its
    /// coefficients, h the spacing); the Taylor tail beyond r¹³ is below 2·ρ¹⁴/14!
    /// (ρ = max(|lo|, |hi|)).
    fn exp_poly_error_bound(poly: &[f64], lo: &Rational, hi: &Rational) -> Rational {
        let int = |i: usize| Rational::from_integer(BigInt::from(i));
        let terms = 13;
        let mut fact = Rational::one();
        // d[m] is D's coefficient of rᵐ.
        let mut d = vec![Rational::zero(); terms + 1];
        for (m, dm) in d.iter_mut().enumerate().skip(1) {
            fact *= int(m);
            *dm = -(Rational::one() / fact.clone());
        }
        for (i, c) in poly.iter().rev().enumerate() {
            d[i + 1] += crate::scalar::f64_to_rational(*c).unwrap();
        }
        let eval = |r: &Rational| d.iter().rev().fold(Rational::zero(), |a, c| a * r + c);
        let n = 1 << 12;
        let h = (hi.clone() - lo.clone()) / int(n);
        let grid = (0..=n)
            .map(|i| eval(&(lo.clone() + h.clone() * int(i))).abs())
            .max()
            .unwrap();
        let rho = lo.abs().max(hi.abs());
        let curvature = d
            .iter()
            .enumerate()
            .skip(2)
            .map(|(m, c)| c.abs() * int(m * (m - 1)) * rho.pow(m as i32 - 2))
            .fold(Rational::zero(), |a, b| a + b);
        fact *= int(terms + 1);
        let tail = int(2) * rho.pow(terms as i32 + 1) / fact;
        grid + curvature * h.clone() * h / int(8) + tail
    }

    /// Whether |r·P(r) − (e^r − 1)| ≤ ulps·2⁻⁵²·e^r for every |r| ≤ `reach`, exactly:
    /// on [−reach, 0] against e^r ≥ 1 − reach, on [0, reach] against e^r ≥ 1.
    fn exp_poly_within(poly: &[f64], reach: &Rational, ulps: &Rational) -> bool {
        let unit = ulps.clone() * pow2(-52);
        let zero = Rational::zero();
        exp_poly_error_bound(poly, &-reach.clone(), &zero)
            <= unit.clone() * (Rational::one() - reach.clone())
            && exp_poly_error_bound(poly, &zero, reach) <= unit
    }

    #[test]
    fn the_exp_polynomial_is_within_a_fortieth_of_an_ulp_of_expm1() {
        use crate::kernels::runtime::EXP_POLY;
        // |r| ≤ 0.0867 covers the reduction: |r| ≤ ln2/8 + 10⁻¹³ (a k off by the
        // rounding of x·(4·fl(log₂e)) only).
        let reach = Rational::new(BigInt::from(867), BigInt::from(10_000));
        let fortieth = Rational::new(BigInt::from(1), BigInt::from(40));
        assert!(exp_poly_within(&EXP_POLY, &reach, &fortieth));
        // The check can fail: the degree-8 Taylor polynomial (3.7 ulps off at the
        // ends), the fit with its highest coefficient one part in 10⁴ off, and the fit
        // out to 0.1, beyond where it was made.
        let mut fact = 1.0;
        let mut taylor: Vec<f64> = (1..=8)
            .map(|m| {
                fact *= f64::from(m);
                1.0 / fact
            })
            .collect();
        taylor.reverse();
        assert!(!exp_poly_within(&taylor, &reach, &fortieth));
        let mut off = EXP_POLY;
        off[0] *= 1.0001;
        assert!(!exp_poly_within(&off, &reach, &fortieth));
        let wider = Rational::new(BigInt::from(1), BigInt::from(10));
        assert!(!exp_poly_within(&EXP_POLY, &wider, &fortieth));
    }

    #[test]
    fn the_exp_table_is_within_half_an_ulp() {
        use crate::kernels::runtime::EXP2_QUARTERS;
        // 2^(j/4) lies in (T − 2⁻⁵³, T + 2⁻⁵³) (half an ulp: T is in [1, 2)) iff
        // (T − 2⁻⁵³)⁴ < 2ʲ < (T + 2⁻⁵³)⁴, exactly in ℚ.
        let half_ulp = pow2(-53);
        let nearest = |t: f64, j: i64| {
            let t = crate::scalar::f64_to_rational(t).unwrap();
            let two_j = pow2(j);
            let lo = t.clone() - half_ulp.clone();
            let hi = t + half_ulp.clone();
            (0..2).fold(lo, |a, _| a.clone() * a) < two_j
                && two_j < (0..2).fold(hi, |a, _| a.clone() * a)
        };
        for (j, t) in EXP2_QUARTERS.iter().enumerate() {
            assert!((1.0..2.0).contains(t), "entry {j}");
            assert!(nearest(*t, j as i64), "entry {j} is not the nearest f64");
            // The check can fail: the neighbours are rejected.
            let up = f64::from_bits(t.to_bits() + 1);
            let down = f64::from_bits(t.to_bits() - 1);
            assert!(
                !nearest(up, j as i64) && !nearest(down, j as i64),
                "entry {j}"
            );
        }
    }

    #[test]
    fn the_shifted_one_pass_forms_give_the_two_pass_bits() {
        use crate::kernels::runtime::{exp_shift_sum, exp_shift_sum_in_place};
        // Lengths past two blocks of 32, so blocks, chunks of 8 and single values are
        // all covered; a shift that is not exact for every entry; prefetch hints of
        // other lengths (a hint never changes a value).
        let xs = exp_domain_samples(90, 17);
        let top = 0.3;
        let ahead = [&xs[..5], &xs[..]];
        for len in 0..=xs.len() {
            let mut two_pass: Vec<f64> = xs[..len].iter().map(|x| x - top).collect();
            let total = exp_sum_scalar_fma(&mut two_pass);
            let mut out = vec![f64::NAN; len];
            let s = exp_shift_sum(&xs, top, f64::INFINITY, &mut out, &ahead);
            let mut in_place = xs[..len].to_vec();
            let t = exp_shift_sum_in_place(&mut in_place, top, &ahead);
            for (name, sum, row) in [("separate", s, &out), ("in place", t, &in_place)] {
                assert_eq!(sum.to_bits(), total.to_bits(), "{name}: sum of {len}");
                assert!(
                    row.iter()
                        .zip(&two_pass)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{name}: {len}"
                );
            }
        }
        // The check can fail: an unshifted exp is told apart.
        let mut unshifted = xs.clone();
        exp_sum_scalar_fma(&mut unshifted);
        let mut out = vec![0.0; xs.len()];
        exp_shift_sum(&xs, top, f64::INFINITY, &mut out, &[]);
        assert_ne!(out, unshifted);
    }

    #[test]
    fn an_exp_off_by_2_to_the_10_ulps_is_rejected() {
        let xs = exp_domain_samples(40, 12);
        let off = |v: &mut [f64]| {
            let s = exp_sum(v);
            for e in v.iter_mut() {
                *e *= 1.0 + f64::EPSILON * 1024.0;
            }
            s
        };
        let err = check_exp(&off, &xs).unwrap_err();
        assert!(err.contains("beyond"), "{err}");
        // Two ulps off is caught too: the check has no slack beyond EXP_ULPS.
        let two = |v: &mut [f64]| {
            exp_sum(v);
            v.iter_mut()
                .for_each(|e| *e *= 1.0 + f64::EPSILON * (EXP_ULPS + 1.0));
            0.0
        };
        assert!(check_exp(&two, &xs).is_err());
    }

    /// The manifest's softmax forward, built.
    fn softmax_forward() -> Built {
        let manifest = crate::manifest::Manifest::embedded().unwrap();
        let rules = crate::rules::RuleSet::embedded().unwrap();
        manifest
            .kernel("softmax_last")
            .unwrap()
            .build(
                crate::manifest::KernelMode::Forward,
                &rules,
                &crate::derive::Limits::default(),
            )
            .unwrap()
    }

    #[test]
    fn rung_d_rejects_a_softmax_whose_exp_is_off_by_2_to_the_10_ulps() {
        let plan = softmax_forward().plan;
        let run = softmax_off(1024.0);
        let cfg = RungConfig {
            cases: 16,
            seed: 3,
            max_dim: 4,
        };
        let c = check_softmax_enclosure(&plan, &run, "X", &cfg).unwrap();
        assert!(c.passed < c.cases / 2, "{c:?}");
        let good = check_softmax_enclosure(&plan, &|i| exec_f64(&plan, i), "X", &cfg).unwrap();
        assert!(good.holds(), "{good:?}");
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
        let c = rung_softmax_enclosure(&softmax_forward(), &cfg).unwrap();
        assert!(c.holds(), "{c:?}");
        assert!(c.worst.unwrap_or(0.0) <= 1.0);
    }
}
