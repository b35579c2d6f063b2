//! The row reductions of the runtime (`runtime::fused`, `runtime::max`) checked on
//! their own, exactly over ℚ: the instructions every fused row pass is built from.
//!
//! - A lane sum of n terms: on dyadic rows whose every partial sum is representable
//!   (small integers times one power of two) it must equal the exact sum bit for bit;
//!   on any finite row it must lie within Higham's bound γₙ₋₁ Σ|xⱼ| of the exact sum
//!   (every term passes through at most n − 1 additions, whatever the lanes).
//! - A row maximum: exactly the largest entry (no rounding), NaN entries skipped,
//!   −∞ for an empty row.
//!
//! The checks take the reduction as a function so that tests feed corrupted ones.

use super::bounded::gamma;
use crate::scalar::{f64_to_rational, Rational};
use num_traits::{Signed, ToPrimitive, Zero};
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A row sum under test.
pub type SumFn<'a> = &'a dyn Fn(&[f64]) -> f64;

/// A row maximum under test.
pub type MaxFn<'a> = &'a dyn Fn(&[f64]) -> f64;

fn exact(x: f64) -> Result<Rational, String> {
    f64_to_rational(x).map_err(|w| format!("{x}: {w}"))
}

/// Checks `sum` on one row: equal to the exact sum when `dyadic`, else within
/// γₙ₋₁ Σ|xⱼ| of it.
pub fn check_sum_row(sum: SumFn<'_>, row: &[f64], dyadic: bool) -> Result<(), String> {
    let got = exact(sum(row))?;
    let terms = row
        .iter()
        .map(|x| exact(*x))
        .collect::<Result<Vec<_>, _>>()?;
    let want: Rational = terms.iter().sum();
    let err = (got - want.clone()).abs();
    let allowed = if dyadic {
        Rational::zero()
    } else {
        gamma(row.len().saturating_sub(1)) * terms.iter().map(|t| t.abs()).sum::<Rational>()
    };
    if err > allowed {
        return Err(format!(
            "the sum of {} terms is {:e} from the exact {:e}, allowed {:e}",
            row.len(),
            err.to_f64().unwrap_or(f64::NAN),
            want.to_f64().unwrap_or(f64::NAN),
            allowed.to_f64().unwrap_or(f64::NAN)
        ));
    }
    Ok(())
}

/// Checks `max` on one row: the largest non-NaN entry exactly (−∞ if none).
pub fn check_max_row(max: MaxFn<'_>, row: &[f64]) -> Result<(), String> {
    let want = row
        .iter()
        .filter(|x| !x.is_nan())
        .fold(f64::NEG_INFINITY, |m, x| if *x > m { *x } else { m });
    let got = max(row);
    if got == want {
        Ok(())
    } else {
        Err(format!("max of {row:?} is {got}, not {want}"))
    }
}

/// Random rows for the reduction checks: every length up to `max_len` (including 0
/// and every remainder modulo the lane count), `(row, dyadic)`: dyadic rows are
/// integers in ±2¹⁰ times 2⁻⁸ (every partial sum exact), the others spread over
/// magnitudes 2⁻⁶⁰…2⁶⁰ with both signs, so cancellation happens.
pub fn rows(max_len: usize, seed: u64) -> Vec<(Vec<f64>, bool)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for n in 0..=max_len {
        let dyadic = (0..n)
            .map(|_| f64::from(rng.gen_range(-1024i32..=1024)) / 256.0)
            .collect();
        out.push((dyadic, true));
        let general = (0..n)
            .map(|_| {
                let m: f64 = rng.gen_range(-1.0..1.0);
                m * 2f64.powi(rng.gen_range(-60..=60))
            })
            .collect();
        out.push((general, false));
    }
    out
}

/// Checks `sum` on every row of [`rows`]; the first failure.
pub fn check_sum(sum: SumFn<'_>, max_len: usize, seed: u64) -> Result<usize, String> {
    let rows = rows(max_len, seed);
    for (row, dyadic) in &rows {
        check_sum_row(sum, row, *dyadic)?;
    }
    Ok(rows.len())
}

/// Checks `max` on every row of [`rows`], each also with a NaN, a −∞ and a +∞ put in
/// turn at every position; the first failure.
pub fn check_max(max: MaxFn<'_>, max_len: usize, seed: u64) -> Result<usize, String> {
    let mut count = 0;
    for (row, _) in rows(max_len, seed) {
        check_max_row(max, &row)?;
        count += 1;
        for special in [f64::NAN, f64::NEG_INFINITY, f64::INFINITY] {
            for i in 0..row.len() {
                let mut r = row.clone();
                r[i] = special;
                check_max_row(max, &r)?;
                count += 1;
            }
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::runtime::{self, LANES};

    fn lane_sum(xs: &[f64]) -> f64 {
        runtime::fused(xs.len(), [xs], [], |[x]| ([], [x]))[0]
    }

    fn lane_max(xs: &[f64]) -> f64 {
        runtime::max(xs)
    }

    /// The first of two sums that also writes a row, to check that `fused` keeps its
    /// sums apart and writes every output entry.
    fn pair_sums(xs: &[f64]) -> f64 {
        let mut copy = vec![f64::NAN; xs.len()];
        let [a, b] = runtime::fused(xs.len(), [xs], [&mut copy], |[x]| ([x], [x, -x]));
        assert_eq!(a, -b);
        assert_eq!(copy, xs);
        a
    }

    #[test]
    fn the_runtime_lane_sum_and_max_hold() {
        assert!(check_sum(&lane_sum, 4 * LANES + 3, 1).is_ok());
        assert!(check_sum(&pair_sums, 2 * LANES + 1, 2).is_ok());
        assert!(check_max(&lane_max, 3 * LANES + 1, 3).is_ok());
    }

    #[test]
    fn a_sum_that_drops_the_remainder_is_rejected() {
        let short = |xs: &[f64]| lane_sum(&xs[..xs.len() - xs.len() % LANES]);
        let err = check_sum(&short, 2 * LANES, 4).unwrap_err();
        assert!(err.contains("from the exact"), "{err}");
    }

    #[test]
    fn a_sum_that_loses_a_lane_or_precision_is_rejected() {
        let lost_lane = |xs: &[f64]| {
            let mut acc = [0.0; LANES];
            for (j, x) in xs.iter().enumerate() {
                acc[j % LANES] += x;
            }
            acc[LANES - 1] = 0.0;
            runtime::lanes_total(acc)
        };
        assert!(check_sum(&lost_lane, 2 * LANES, 5).is_err());
        // Exact on the dyadic rows (integers times 2⁻⁸ are exact in f32 too), so only
        // the bound rejects it.
        let single = |xs: &[f64]| xs.iter().map(|x| *x as f32).sum::<f32>() as f64;
        assert!(rows(2 * LANES, 6)
            .iter()
            .filter(|(_, dyadic)| *dyadic)
            .all(|(r, _)| check_sum_row(&single, r, true).is_ok()));
        assert!(check_sum(&single, 2 * LANES, 6).is_err());
    }

    #[test]
    fn a_max_that_skips_the_remainder_or_keeps_nan_is_rejected() {
        let short = |xs: &[f64]| lane_max(&xs[..xs.len() - xs.len() % LANES]);
        assert!(check_max(&short, 2 * LANES, 7).is_err());
        let nan_wins = |xs: &[f64]| {
            xs.iter().fold(
                f64::NEG_INFINITY,
                |m, x| if x.is_nan() || *x > m { *x } else { m },
            )
        };
        assert!(check_max(&nan_wins, 2 * LANES, 8).is_err());
    }
}
