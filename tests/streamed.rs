//! Row passes whose output passes `runtime::STREAM_MIN_VALUES` write their last loop
//! with non-temporal stores (`runtime::fused_streamed`), and a softmax forward whose
//! output passes `runtime::SOFTMAX_STREAM_MIN_VALUES` its quotients
//! (`runtime::softmax_row_streamed`); the values are the plain code's, bit for bit.

mod common;

use common::{bits, three_call_softmax_row};
use fderiv::kernels::{self, runtime, runtime::Tensor3};

fn value(i: usize, seed: usize) -> f64 {
    ((i * 7919 + seed * 31) % 1009) as f64 / 97.0 - 5.0
}

#[test]
fn the_streamed_loop_gives_the_plain_loops_values_and_sums() {
    let ins: Vec<f64> = (0..64).map(|i| value(i, 1)).collect();
    let other: Vec<f64> = (0..64).map(|i| value(i, 2)).collect();
    let f = |[a, b]: [f64; 2]| ([a * b - a, b / 3.0], [a * b]);
    for n in 0..=40 {
        // Offsets 0 and 1: a 16-byte aligned and a misaligned output (plain stores).
        for offset in 0..2 {
            let (mut plain, mut streamed) = (
                [vec![0.0; 48], vec![0.0; 48]],
                [vec![7.0; 48], vec![7.0; 48]],
            );
            let [p0, p1] = &mut plain;
            let want = runtime::fused(n, [&ins, &other], [&mut p0[offset..], &mut p1[offset..]], f);
            let [s0, s1] = &mut streamed;
            let got = runtime::fused_streamed(
                true,
                n,
                [&ins, &other],
                [&mut s0[offset..], &mut s1[offset..]],
                f,
            );
            assert_eq!(bits(&got), bits(&want), "n = {n}");
            for (s, p) in streamed.iter().zip(&plain) {
                assert_eq!(
                    bits(&s[offset..offset + n]),
                    bits(&p[offset..offset + n]),
                    "n = {n}"
                );
            }
        }
    }
}

#[test]
fn a_streamed_kernel_output_equals_the_same_rows_computed_unstreamed() {
    const ROWS: usize = 1024;
    const N: usize = 1024;
    assert!(runtime::stream_stores(ROWS * N));
    assert!(!runtime::stream_stores(64 * N));
    let s = Tensor3::new(
        [1, ROWS, N],
        (0..ROWS * N).map(|i| value(i, 3).abs() / 8.0).collect(),
    )
    .unwrap();
    let g = Tensor3::new([1, ROWS, N], (0..ROWS * N).map(|i| value(i, 4)).collect()).unwrap();
    for run in [kernels::softmax_last_vjp, kernels::softmax_last_jvp] {
        let whole = run(&s, &g).unwrap();
        // The same rows in 16 calls of 64 rows: outputs below the threshold.
        let mut pieces = Vec::with_capacity(ROWS * N);
        for k in 0..16 {
            let part = |t: &Tensor3| {
                Tensor3::new([1, 64, N], t.data[k * 64 * N..(k + 1) * 64 * N].to_vec()).unwrap()
            };
            pieces.extend(run(&part(&s), &part(&g)).unwrap().into_data());
        }
        assert_eq!(bits(&whole.data), bits(&pieces));
        // The comparison sees one flipped low bit.
        let mut corrupted = pieces.clone();
        corrupted[ROWS * N / 2] = f64::from_bits(corrupted[ROWS * N / 2].to_bits() ^ 1);
        assert_ne!(bits(&whole.data), bits(&corrupted));
    }
}

#[test]
fn the_streamed_softmax_row_gives_the_plain_rows_bits() {
    // Rows of every length to 80 and longer ones, every offset of a 64-byte line (so
    // the plain stores before the first aligned register and after the last are
    // covered), with a spread that takes the FMA division and one that does not.
    for scale in [1.0, 100.0] {
        for n in (0..=80).chain([127, 512, 1000]) {
            let x: Vec<f64> = (0..n).map(|i| value(i, 5) * scale).collect();
            let mut plain = vec![0.0; n];
            three_call_softmax_row(&x, &mut plain);
            for offset in 0..8 {
                let mut out = vec![7.0; n + 8];
                runtime::softmax_row_streamed(&x, &mut out[offset..], &[&x]);
                assert_eq!(
                    bits(&out[offset..offset + n]),
                    bits(&plain),
                    "n = {n}, offset {offset}"
                );
                assert!(out[..offset]
                    .iter()
                    .chain(&out[offset + n..])
                    .all(|v| *v == 7.0));
            }
        }
    }
    // The comparison rejects the row of an input whose maximum is one ulp off (every
    // exp argument shifts).
    let mut x: Vec<f64> = (0..40).map(|i| value(i, 6)).collect();
    x[17] = 6.25;
    let mut off = x.clone();
    off[17] = f64::from_bits(off[17].to_bits() + 1);
    let (mut plain, mut out) = (vec![0.0; 40], vec![0.0; 40]);
    three_call_softmax_row(&x, &mut plain);
    runtime::softmax_row_streamed(&off, &mut out, &[]);
    assert_ne!(bits(&out), bits(&plain));
}

#[test]
fn a_streamed_softmax_forward_equals_the_same_rows_computed_unstreamed() {
    const ROWS: usize = 4096;
    const N: usize = 1024;
    assert!(runtime::stream_softmax(ROWS * N));
    assert!(!runtime::stream_softmax(ROWS * N / 2));
    let x = Tensor3::new([1, ROWS, N], (0..ROWS * N).map(|i| value(i, 7)).collect()).unwrap();
    let whole = kernels::softmax_last_forward(&x).unwrap();
    // The same rows in 2 calls of half the rows: outputs below the threshold.
    let halves = |x: &[f64]| {
        let half = ROWS * N / 2;
        let mut out = Vec::with_capacity(ROWS * N);
        for k in 0..2 {
            let part =
                Tensor3::new([1, ROWS / 2, N], x[k * half..(k + 1) * half].to_vec()).unwrap();
            out.extend(kernels::softmax_last_forward(&part).unwrap().into_data());
        }
        out
    };
    assert_eq!(bits(&whole.data), bits(&halves(&x.data)));
    // The comparison sees the rows of an input one ulp off in one entry.
    let mut nudged = x.data.clone();
    nudged[ROWS * N / 3] = f64::from_bits(nudged[ROWS * N / 3].to_bits() + 1);
    assert_ne!(bits(&whole.data), bits(&halves(&nudged)));
}
