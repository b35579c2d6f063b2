//! The softmax forward's division (`runtime::divide_exps`): by FMAs when the row's
//! spread and sum allow, by the division otherwise; the division's bits either way,
//! down to every generated kernel equalling the executor (which divides) bit for bit.
//! (The exact rung of the FMA quotient itself is `rungs::quotient`.)

mod common;

use common::{bits, three_call_softmax_row, NANS};
use fderiv::kernels::runtime;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A softmax row's terms as the generated forward computes them: the row's
/// extrema, then exp(x − top) and their sum.
fn terms(x: &[f64]) -> (Vec<f64>, f64, f64) {
    let (top, low) = runtime::max_min(x);
    let mut e = vec![0.0; x.len()];
    let total = runtime::exp_shift_sum(x, top, top - low, &mut e, &[]);
    (e, total, top - low)
}

/// Rows of length n with entries in [−spread, 0] (the extremes included), some with
/// a −∞ mask, a NaN or a +∞.
fn rows(rng: &mut ChaCha8Rng) -> Vec<Vec<f64>> {
    let mut out = Vec::new();
    for n in [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 1024] {
        for spread in [
            0.0, 1.0, 30.0, 599.0, 600.0, 601.0, 708.0, 740.0, 800.0, 1e6,
        ] {
            let mut x: Vec<f64> = (0..n).map(|_| -rng.gen_range(0.0..=spread)).collect();
            x[0] = 0.0;
            x[n - 1] = -spread;
            out.push(x.clone());
            for special in [f64::NEG_INFINITY, f64::NAN, f64::INFINITY] {
                let mut y = x.clone();
                y[rng.gen_range(0..n)] = special;
                out.push(y);
            }
        }
    }
    out
}

#[test]
fn divide_exps_gives_the_divisions_bits_on_every_row() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (mut fast, mut slow) = (0, 0);
    for x in rows(&mut rng) {
        let (e, total, spread) = terms(&x);
        if runtime::fma_quotients(total, spread) {
            fast += 1;
        } else {
            slow += 1;
        }
        let want: Vec<f64> = e.iter().map(|v| v / total).collect();
        let mut got = e.clone();
        runtime::divide_exps(&mut got, total, spread);
        assert_eq!(bits(&got), bits(&want), "row {x:?}");
    }
    // Both paths ran (the FMA one on this CPU when it has AVX2 and FMA).
    assert!(fast >= 80 && slow >= 400, "{fast} {slow}");
}

/// The bits of [`three_call_softmax_row`] on `x`.
fn three_calls(x: &[f64]) -> Vec<u64> {
    let mut e = vec![0.0; x.len()];
    three_call_softmax_row(x, &mut e);
    bits(&e)
}

/// The softmax row in one call (`runtime::softmax_row`, and each vector path's) gives
/// the bits of the three calls it replaces on every row of `rows` (far logits, masks,
/// NaN and +∞ included) and on every length to 129, leaving the rest of a longer
/// output alone; the comparison rejects the row of an input one ulp off.
#[test]
fn the_one_call_softmax_row_gives_the_three_calls_bits_on_every_path() {
    let paths = vector_paths();
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let mut xs = rows(&mut rng);
    xs.extend((0..=129).map(|n| (0..n).map(|_| rng.gen_range(-30.0..30.0)).collect()));
    // NaNs of four payloads, alone in a row and among numbers (a NaN row's sum is NaN:
    // the exps are computed again with the per-block test, as `exp_shift_sum` does).
    for nan in NANS.map(f64::from_bits) {
        let mut x: Vec<f64> = (0..70).map(|_| rng.gen_range(-30.0..30.0)).collect();
        x[rng.gen_range(0..70)] = nan;
        xs.push(x);
        xs.push(vec![nan; 70]);
    }
    for x in &xs {
        let want = three_calls(x);
        let mut got = vec![7.0; x.len() + 3];
        runtime::softmax_row(x, &mut got, &[]);
        assert_eq!(bits(&got[..x.len()]), want, "{x:?}");
        assert!(got[x.len()..].iter().all(|v| *v == 7.0), "{x:?}");
        for p in &paths {
            let mut got = vec![0.0; x.len()];
            p.softmax_row(x, &mut got);
            assert_eq!(bits(&got), want, "{p:?}, {x:?}");
        }
    }
    let mut x: Vec<f64> = (0..100).map(|_| rng.gen_range(-30.0..30.0)).collect();
    x[37] = 31.25; // the maximum: one ulp off shifts every exp argument
    let mut off = x.clone();
    off[37] = f64::from_bits(off[37].to_bits() + 1);
    let mut got = vec![0.0; 100];
    runtime::softmax_row(&off, &mut got, &[]);
    assert_ne!(bits(&got), three_calls(&x));
}

#[test]
fn the_fma_path_is_taken_only_for_sums_in_1_to_2_to_the_64_and_spreads_to_600() {
    let ok = runtime::fma_quotients;
    assert!(ok(1.0, 0.0) && ok(2f64.powi(64), runtime::FMA_QUOTIENT_SPREAD));
    // The f64 after (before) a positive x.
    let after = |x: f64| f64::from_bits(x.to_bits() + 1);
    let before = |x: f64| f64::from_bits(x.to_bits() - 1);
    assert!(!ok(before(1.0), 0.0));
    assert!(!ok(after(2f64.powi(64)), 0.0));
    assert!(!ok(f64::NAN, 0.0) && !ok(f64::INFINITY, 0.0));
    assert!(!ok(2.0, after(runtime::FMA_QUOTIENT_SPREAD)));
    assert!(!ok(2.0, f64::NAN) && !ok(2.0, f64::INFINITY));
}

#[test]
fn past_the_spread_limit_the_fma_quotient_would_change_bits() {
    // Terms of exp arguments in [−745, −708] are subnormal: there the remainder of the
    // FMA quotient is inexact and its result can differ from the division (how often
    // depends on the sum), so such rows must be divided.
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let mut differs = 0;
    for _ in 0..20 {
        let mut x: Vec<f64> = (0..1024).map(|_| -rng.gen_range(708.0..745.0)).collect();
        // A sum that is not a power of two (1/total inexact).
        x[..8]
            .iter_mut()
            .for_each(|v| *v = -rng.gen_range(0.0..2.0));
        x[0] = 0.0;
        let (e, total, spread) = terms(&x);
        assert!(!runtime::fma_quotients(total, spread));
        let y = 1.0 / total;
        differs += e
            .iter()
            .filter(|a| runtime::fma_quotient(**a, total, y).to_bits() != (**a / total).to_bits())
            .count();
        let mut got = e.clone();
        runtime::divide_exps(&mut got, total, spread);
        let want: Vec<f64> = e.iter().map(|v| v / total).collect();
        assert_eq!(bits(&got), bits(&want));
    }
    assert!(differs > 0);
}

#[test]
fn max_min_gives_both_extrema_and_skips_nans() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    for n in 0..70 {
        let mut x: Vec<f64> = (0..n).map(|_| rng.gen_range(-1e3..1e3)).collect();
        if n > 2 {
            x[rng.gen_range(0..n)] = f64::NAN;
        }
        let hi = x
            .iter()
            .copied()
            .filter(|v| !v.is_nan())
            .fold(f64::NEG_INFINITY, f64::max);
        let lo = x
            .iter()
            .copied()
            .filter(|v| !v.is_nan())
            .fold(f64::INFINITY, f64::min);
        assert_eq!(runtime::max_min(&x), (hi, lo), "{x:?}");
        assert_eq!(runtime::max(&x), hi);
    }
    assert_eq!(
        runtime::max_min(&[f64::NAN; 20]),
        (f64::NEG_INFINITY, f64::INFINITY)
    );
}

/// Every generated kernel (every mode) against the f64 executor on the same plan, bit
/// for bit on general inputs (`rungs::check_f64_same`, also a `verify` rung), here with
/// sizes up to 40 (several vector chunks and a remainder): they share the GEMM, the exp
/// and the lane order of the row sums, and the forwards' FMA division gives the
/// executor's division bits.
#[test]
fn every_generated_kernel_equals_the_executor_bit_for_bit_on_general_inputs() {
    use fderiv::derive::Limits;
    use fderiv::exec::{exec_f64, Tensors};
    use fderiv::kernels;
    use fderiv::manifest::Manifest;
    use fderiv::rules::RuleSet;
    use fderiv::rungs::{check_f64_same, RungConfig};
    use fderiv::verify::generated_run;
    let rules = RuleSet::embedded().unwrap();
    let cfg = RungConfig {
        cases: 6,
        seed: 14,
        max_dim: 40,
    };
    let mut compared = 0;
    for def in &Manifest::embedded().unwrap().kernels {
        for mode in &def.modes {
            let built = def.build(*mode, &rules, &Limits::default()).unwrap();
            let name = def.mode_name(*mode);
            let entry = kernels::KERNELS.iter().find(|e| e.name == name).unwrap();
            let run = |i: &Tensors<f64>| generated_run(entry, i);
            let executor = |i: &Tensors<f64>| exec_f64(&built.plan, i);
            let count = check_f64_same(&built.plan, &run, &executor, &cfg).unwrap();
            assert!(count.holds(), "{name}: {:?}", count.first_failure);
            compared += count.cases;
        }
    }
    assert_eq!(compared, 6 * 15);
}

/// The vector paths this CPU has; each test says which ran.
fn vector_paths() -> Vec<runtime::VectorPath> {
    runtime::VectorPath::ALL
        .into_iter()
        .filter(|p| {
            println!(
                "{p:?}: {}",
                if p.available() {
                    "run"
                } else {
                    "not on this CPU"
                }
            );
            p.available()
        })
        .collect()
}

#[test]
fn every_vector_paths_fma_division_gives_the_scalar_quotients_bits() {
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    for path in vector_paths() {
        for x in rows(&mut rng) {
            let (e, total, spread) = terms(&x);
            if !runtime::fma_quotients(total, spread) {
                continue;
            }
            let y = 1.0 / total;
            let want: Vec<f64> = e
                .iter()
                .map(|a| runtime::fma_quotient(*a, total, y))
                .collect();
            let mut got = e.clone();
            assert_eq!(path.fma_divide(&mut got, total), Some(()));
            assert_eq!(bits(&got), bits(&want), "{path:?}: row {x:?}");
        }
        // The comparison sees a division by a total one ulp off.
        let e: Vec<f64> = (1..=40).map(|i| f64::from(i) / 97.0).collect();
        let total = 3.0_f64;
        let mut got = e.clone();
        path.fma_divide(&mut got, f64::from_bits(total.to_bits() + 1));
        let want: Vec<f64> = e.iter().map(|a| a / total).collect();
        assert_ne!(bits(&got), bits(&want), "{path:?}");
    }
}

/// The extrema meet in a tree (the chains' registers, then their lanes), so each is
/// placed at every position of rows whose lengths cover whole blocks, single
/// registers and a scalar rest: a lane or a register the tree dropped would lose it
/// (with the tree cut one level short, this test fails).
#[test]
fn every_vector_paths_extrema_are_found_at_every_position() {
    for path in vector_paths() {
        for n in [1, 7, 8, 9, 31, 32, 33, 40, 47, 63, 64, 65, 100, 129] {
            let base: Vec<f64> = (0..n).map(|j| ((j * 37) % 11) as f64 - 5.0).collect();
            for p in 0..n {
                let mut x = base.clone();
                x[p] = 100.0;
                if n - 1 - p != p {
                    x[n - 1 - p] = -100.0;
                }
                let low = x.iter().copied().fold(f64::INFINITY, f64::min);
                assert_eq!(
                    path.max_min(&x),
                    Some((100.0, low)),
                    "{path:?}: n {n}, at {p}"
                );
            }
        }
    }
}

#[test]
fn every_vector_paths_extrema_skip_nans_on_every_length() {
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    for path in vector_paths() {
        // Lengths past two of AVX-512's blocks of 32, so blocks and remainders count.
        for n in 0..80 {
            let mut x: Vec<f64> = (0..n).map(|_| rng.gen_range(-1e3..1e3)).collect();
            if n > 2 {
                x[rng.gen_range(0..n)] = f64::NAN;
            }
            let want = (
                x.iter()
                    .copied()
                    .filter(|v| !v.is_nan())
                    .fold(f64::NEG_INFINITY, f64::max),
                x.iter()
                    .copied()
                    .filter(|v| !v.is_nan())
                    .fold(f64::INFINITY, f64::min),
            );
            assert_eq!(path.max_min(&x), Some(want), "{path:?}: {x:?}");
            // The comparison sees a maximum or a minimum moved.
            if let Some(i) = x.iter().position(|v| *v == want.0) {
                x[i] = want.0 + 1.0;
                assert_ne!(path.max_min(&x), Some(want), "{path:?}");
            }
        }
        assert_eq!(
            path.max_min(&[f64::NAN; 40]),
            Some((f64::NEG_INFINITY, f64::INFINITY)),
            "{path:?}"
        );
    }
}
