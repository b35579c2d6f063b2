//! The softmax forward's exp pass (`runtime::exp_shift_sum`) told the row's spread:
//! when it is at most `EXP_NEAR_SPREAD`, the AVX2 path skips its per-block test for
//! far values. The bits must be those of the tested path (spread unknown) on every
//! row: spreads on both sides of the limit, −∞ masks, +∞ and NaNs of four payloads.

mod common;

use common::{bits, three_call_softmax_row, NANS};
use fderiv::kernels::runtime;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// exp(x − top) and its sum, told the spread `spread` (+∞: not told).
fn exps(x: &[f64], top: f64, spread: f64) -> (Vec<u64>, u64) {
    let mut e = vec![0.0; x.len()];
    let total = runtime::exp_shift_sum(x, top, spread, &mut e, &[]);
    (bits(&e), total.to_bits())
}

#[test]
fn a_row_told_its_spread_gets_the_tested_paths_bits() {
    let mut rng = ChaCha8Rng::seed_from_u64(20);
    let mut rows = 0;
    for n in [1, 2, 3, 7, 8, 9, 31, 32, 33, 63, 64, 65, 100, 1024] {
        for spread in [
            0.0,
            1.0,
            300.0,
            707.0,
            runtime::EXP_NEAR_SPREAD,
            f64::from_bits(runtime::EXP_NEAR_SPREAD.to_bits() + 1),
            709.0,
            745.0,
            1e6,
        ] {
            let mut x: Vec<f64> = (0..n).map(|_| 3.0 - rng.gen_range(0.0..=spread)).collect();
            x[0] = 3.0;
            x[n - 1] = 3.0 - spread;
            let mut variants = vec![x.clone()];
            for special in NANS
                .map(f64::from_bits)
                .into_iter()
                .chain([f64::NEG_INFINITY, f64::INFINITY])
            {
                let mut y = x.clone();
                y[rng.gen_range(0..n)] = special;
                variants.push(y);
            }
            variants.push(vec![f64::from_bits(NANS[1]); n]);
            for y in variants {
                let (top, low) = runtime::max_min(&y);
                let told = exps(&y, top, top - low);
                assert_eq!(told, exps(&y, top, f64::INFINITY), "spread {spread}: {y:?}");
                rows += 1;
            }
        }
    }
    assert_eq!(rows, 14 * 9 * 8);
}

#[test]
fn an_understated_spread_is_told_apart() {
    if !runtime::vector_copies() {
        eprintln!("no AVX2 + FMA here: the exp has no untested path to tell apart");
        return;
    }
    // Values down to −720 (e^x below the normal range) need the careful form: told
    // a spread of 0, the pass runs them in the fast form and the bits differ. So the
    // comparison above can fail, and the limit is where the fast form stops being
    // exact.
    let x: Vec<f64> = (0..64).map(|j| -(j as f64) * 720.0 / 63.0).collect();
    let (top, low) = runtime::max_min(&x);
    assert!(top - low > runtime::EXP_NEAR_SPREAD);
    assert_ne!(exps(&x, top, 0.0), exps(&x, top, top - low));
    // Just past the limit the same holds (a block of 32 values: fewer are computed
    // one at a time, always carefully).
    let mut beyond = [-709.0; 32];
    beyond[0] = 0.0;
    assert_ne!(exps(&beyond, 0.0, 0.0), exps(&beyond, 0.0, 709.0));
}

/// `softmax_out_row` (the whole row in one call, a later output row claimed) gives the
/// three calls' bits row by row through a buffer, rows long enough to claim and the
/// last claims reaching past the end; the comparison rejects an input one ulp off.
#[test]
fn the_one_call_output_row_gives_the_three_calls_bits_on_every_row() {
    let mut rng = ChaCha8Rng::seed_from_u64(22);
    for n in [1, 7, 64, 255, 256, 300, 512] {
        let rows = 9;
        let mut x: Vec<f64> = (0..rows * n).map(|_| rng.gen_range(-30.0..30.0)).collect();
        x[n / 2] = 31.25; // the first row's maximum: one ulp off shifts its exps
        let (mut one, mut three) = (vec![0.0; rows * n], vec![0.0; rows * n]);
        for (row, (o, t)) in one.chunks_mut(n).zip(three.chunks_mut(n)).enumerate() {
            let ahead = [runtime::row_after(&x, row, n)];
            let x = &x[row * n..(row + 1) * n];
            runtime::softmax_out_row(x, o, &ahead);
            three_call_softmax_row(x, t);
        }
        assert_eq!(bits(&one), bits(&three), "n {n}");
        if n == 1 {
            continue; // a one-value row is 1 whatever its value
        }
        let mut off = x.clone();
        off[n / 2] = f64::from_bits(off[n / 2].to_bits() + 1);
        runtime::softmax_out_row(&off[..n], &mut one[..n], &[]);
        assert_ne!(bits(&one), bits(&three), "n {n}");
    }
}

/// A row pass prefetches the row at least `AHEAD_VALUES` values on (whole rows, at
/// least the next one) when its rows are at least `FETCH_MIN_ROW` long, and nothing
/// past the end of the buffer or for shorter rows.
#[test]
fn a_row_pass_fetches_the_row_ahead_values_on() {
    let buf: Vec<f64> = (0..8192).map(|j| j as f64).collect();
    for n in [1, 100, 128, 255] {
        assert!(runtime::row_after(&buf, 0, n).is_empty(), "n {n}");
    }
    for n in [256, 512, 1000, 1024, 4096] {
        let rows = runtime::AHEAD_VALUES.div_ceil(n).max(1);
        let got = runtime::row_after(&buf, 0, n);
        if rows * n + n <= buf.len() {
            assert_eq!(got.first(), Some(&((rows * n) as f64)), "n {n}");
            assert_eq!(got.len(), n, "n {n}");
        } else {
            assert!(got.is_empty(), "n {n}");
        }
        assert!(
            runtime::row_after(&buf, buf.len() / n, n).is_empty(),
            "n {n}"
        );
    }
    assert!(runtime::row_after(&buf, usize::MAX, 300).is_empty());
}
