//! The runtime's FMA quotient (`runtime::fma_quotient`, which `runtime::divide_exps`
//! uses for the softmax forward's division) checked exactly over ℚ: every quotient must
//! be the f64 nearest a/b (ties to even), the IEEE division's result.
//!
//! The cases are those its proof (docs/numerics.md) leaves closest, plus random ones,
//! all inside the range the runtime uses it on (a ∈ [2⁻⁹⁰⁰, 2], b ∈ [1, 2⁶⁴]):
//! - quotients within a few 2⁻¹⁰⁶ of a rounding midpoint, built from the inverse of an
//!   odd divisor modulo 2⁵⁴ (the hardest cases for any division);
//! - dividends and divisors whose significands are the largest few below 2 (the only
//!   ones where a·(1/b) can be off by more than one ulp before the correction);
//! - a = b (the first product rounds below 1), divisors at and next to powers of two;
//! - random pairs spread over the whole range.
//!
//! The check takes the quotient as a function so that tests feed corrupted ones.

use crate::scalar::{f64_to_rational, Rational};
use num_traits::Signed;
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::RungCount;

/// A quotient under test: `divide(a, b)` ≈ a/b.
pub type QuotientFn<'a> = &'a dyn Fn(f64, f64) -> f64;

fn exact(x: f64) -> Result<Rational, String> {
    f64_to_rational(x).map_err(|w| format!("{x}: {w}"))
}

/// Checks one quotient: `divide(a, b)` is the f64 nearest a/b (ties to even),
/// compared exactly over ℚ with both of its f64 neighbours.
pub fn check_quotient(divide: QuotientFn<'_>, a: f64, b: f64) -> Result<(), String> {
    let got = divide(a, b);
    let want = exact(a)? / exact(b)?;
    let off = |x: f64| exact(x).map(|x| (x - want.clone()).abs());
    let d = off(got)?;
    // Its neighbours (quotients here are positive and finite: ±1 on the bits).
    let [up, down] = [1, -1].map(|d| f64::from_bits(got.to_bits().wrapping_add_signed(d)));
    for n in [up, down] {
        let dn = off(n)?;
        let even = got.to_bits().is_multiple_of(2);
        if dn < d || (dn == d && !even) {
            return Err(format!(
                "{a:e} / {b:e} gave {got:e} ({:#x}); {n:e} ({:#x}) is nearer the exact quotient",
                got.to_bits(),
                n.to_bits()
            ));
        }
    }
    Ok(())
}

/// The inverse of an odd `b` modulo 2⁶⁴ (Newton's iteration doubles the correct bits).
fn inverse_mod_2_64(b: u64) -> u64 {
    let mut x = b; // correct to 3 bits for odd b
    for _ in 0..5 {
        x = x.wrapping_mul(2u64.wrapping_sub(b.wrapping_mul(x)));
    }
    x
}

/// A quotient a/b = M + s/B within |s|/B of the rounding midpoint M (odd, 2⁵³ ≤ M <
/// 2⁵⁴, so halfway between two f64s): B·M + s = A·2⁵⁴ with A < 2⁵³, scaled into
/// b ∈ [1, 2) and a ∈ [2⁻¹, 2). `None` when M falls below 2⁵³.
fn near_midpoint(big_b: u64, s: i64) -> Option<(f64, f64)> {
    let m_mask = (1u128 << 54) - 1;
    let inv = u128::from(inverse_mod_2_64(big_b)) & m_mask;
    let m = ((-i128::from(s)).rem_euclid(1 << 54) as u128 * inv) & m_mask;
    if m < 1 << 53 {
        return None;
    }
    let total = (u128::from(big_b) * m).checked_add_signed(i128::from(s))?;
    let big_a = total >> 54;
    // Exact: A < 2⁵³ and B < 2⁵³ are f64 integers, the scalings powers of two.
    Some((scaled(big_a as f64, -52), scaled(big_b as f64, -52)))
}

/// `x · 2ᵉ` for −1074 ≤ e ≤ 1023, rounded once (exact while the result is normal).
fn scaled(x: f64, e: i32) -> f64 {
    let p = if e >= -1022 {
        f64::from_bits(((e + 1023) as u64) << 52)
    } else {
        f64::from_bits(1 << (e + 1074))
    };
    x * p
}

/// The cases of this module's header, `random` of them random, from `seed`.
pub fn quotient_cases(random: usize, seed: u64) -> Vec<(f64, f64)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cases = Vec::new();
    // Exponent shifts that keep a ∈ [2⁻⁹⁰⁰, 2] and b ∈ [1, 2⁶⁴].
    let shifts = [(0, 0), (-1, 0), (-899, 0), (0, 63), (-40, 20), (-899, 62)];
    for _ in 0..40 {
        let big_b = rng.gen_range(1u64 << 52..1 << 53) | 1;
        for s in [-7i64, -5, -3, -1, 1, 3, 5, 7] {
            if let Some((a, b)) = near_midpoint(big_b, s) {
                let (ea, eb) = shifts[rng.gen_range(0..shifts.len())];
                cases.push((scaled(a, ea), scaled(b, eb)));
            }
        }
    }
    // Significands 2 − kε, k = 1…8 (ε = 2⁻⁵²), every pair, at every shift.
    let top = |k: u64| f64::from_bits(2f64.to_bits() - 1 - (k - 1));
    for ka in 1..=8 {
        for kb in 1..=8 {
            for (ea, eb) in shifts {
                cases.push((scaled(top(ka), ea), scaled(top(kb), eb)));
            }
        }
    }
    // Equal significands (a/b a power of two, a·(1/b) possibly just below it), and
    // divisors at and next to powers of two.
    for e in [0, 1, 31, 52, 63] {
        for s in [1.0, f64::from_bits(1f64.to_bits() + 1), top(1), top(2)] {
            let b = scaled(s, e);
            cases.push((s, b));
            cases.push((rng.gen_range(0.5..2.0), b));
        }
    }
    for _ in 0..random {
        let a = scaled(rng.gen_range(1.0..2.0), rng.gen_range(-900..=0));
        let b = scaled(rng.gen_range(1.0..2.0), rng.gen_range(0..=63));
        cases.push((a, b));
    }
    cases
}

/// The exact rung of the FMA quotient: every case of [`quotient_cases`] (`random`
/// random ones from `seed`) must be the nearest f64 to a/b.
pub fn rung_fma_quotient(divide: QuotientFn<'_>, random: usize, seed: u64) -> RungCount {
    let mut count = RungCount::default();
    for (a, b) in quotient_cases(random, seed) {
        count.record(check_quotient(divide, a, b).err());
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::runtime;

    fn fma_quotient(a: f64, b: f64) -> f64 {
        runtime::fma_quotient(a, b, 1.0 / b)
    }

    #[test]
    fn the_cases_lie_in_the_range_of_the_proof() {
        let cases = quotient_cases(1000, 1);
        assert!(cases.len() > 1000 + 300, "{}", cases.len());
        for (a, b) in cases {
            assert!((2f64.powi(-900)..=2.0).contains(&a), "a = {a:e}");
            assert!((1.0..=2f64.powi(64)).contains(&b), "b = {b:e}");
        }
    }

    #[test]
    fn the_near_midpoint_cases_are_within_a_few_units_of_2_to_the_minus_106() {
        // a/b − M·2⁻⁵³ (scaled): |s|/B relative to a quotient near 1, so the exact
        // quotient is within 2⁻¹⁰³ of a midpoint of the f64 grid.
        let (a, b) = (0..)
            .find_map(|i| near_midpoint((1 << 52) | (2 * i + 1), 3))
            .unwrap();
        let q = exact(a).unwrap() / exact(b).unwrap();
        let nearest = exact(a / b).unwrap();
        let half_ulp = exact((a / b).next_up()).unwrap() - nearest.clone();
        let half_ulp = half_ulp / Rational::from_integer(2.into());
        let from_midpoint = ((q - nearest).abs() - half_ulp).abs();
        assert!(
            from_midpoint < exact(2f64.powi(-103)).unwrap(),
            "{from_midpoint}"
        );
    }

    #[test]
    fn the_fma_quotient_is_correctly_rounded_on_every_case() {
        let count = rung_fma_quotient(&fma_quotient, 20_000, 2);
        assert_eq!(count.passed, count.cases, "{:?}", count.first_failure);
        // The hardware division agrees (IEEE), as a sanity check of the checker.
        for (a, b) in quotient_cases(2000, 3) {
            assert_eq!(
                fma_quotient(a, b).to_bits(),
                (a / b).to_bits(),
                "{a:e} / {b:e}"
            );
        }
        assert!(rung_fma_quotient(&|a, b| a / b, 2000, 4).holds());
    }

    #[test]
    fn a_quotient_without_its_correction_is_rejected() {
        let count = rung_fma_quotient(&|a, b| a * (1.0 / b), 0, 5);
        let err = count
            .first_failure
            .expect("a·(1/b) is not always the nearest");
        assert!(err.contains("is nearer the exact quotient"), "{err}");
    }

    #[test]
    fn a_correction_from_an_unfused_remainder_is_rejected() {
        let unfused = |a: f64, b: f64| {
            let y = 1.0 / b;
            let q = a * y;
            (a - q * b).mul_add(y, q)
        };
        assert!(!rung_fma_quotient(&unfused, 0, 6).holds());
    }

    #[test]
    fn below_its_range_the_fma_quotient_can_miss() {
        // Quotients in the subnormal range: the remainder a − b·q is no longer exact,
        // which is why `divide_exps` keeps the FMA path to a ≥ 2⁻⁹⁰⁰.
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let missed = (0..10_000).any(|_| {
            let a = scaled(rng.gen_range(1.0..2.0), rng.gen_range(-1074..=-1000));
            let b = rng.gen_range(1.0..2.0);
            check_quotient(&fma_quotient, a, b).is_err()
        });
        assert!(missed);
    }
}
