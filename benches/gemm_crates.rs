//! The kernels' batched GEMM beside the Rust GEMM crates, in one run:
//! `cargo bench --bench gemm_crates`. Each row is h heads of (m×k)·(k×p), row-major:
//! fderiv's `runtime::bmm` (matrixmultiply, heads in parallel on rayon, a head's rows
//! split into bands when there are fewer heads than threads), `matrixmultiply` one
//! head per rayon task, and `gemm` (faer's) one head per rayon task (its own rayon
//! parallelism inside the head when there is one head). Each crate is timed paired
//! with fderiv, as `fderiv bench` times a row with its reference
//! (`bench::paired_medians`: alternating 20 ms batches, at least 15 calls each, more
//! until 0.3 s), so a slow phase of the machine slows both sides of a pair; the
//! columns are fderiv beside matrixmultiply, matrixmultiply, fderiv beside gemm,
//! gemm, and the last is the smaller of the two crate-over-fderiv time ratios: the
//! fastest crate's time over fderiv's (issue 11's target: at least 0.9). Shapes: the matmul bench shapes and the attention
//! projections of `mha_h4` and `mha_h8`.

use fderiv::bench::paired_medians;
use fderiv::kernels::runtime;
use rayon::prelude::*;

fn main() -> Result<(), fderiv::bench::BenchError> {
    let shapes = [
        [8, 64, 64, 64],
        [16, 128, 128, 128],
        [8, 512, 512, 512],
        [1, 128, 256, 256],
        [1, 512, 512, 512],
    ];
    println!(
        "shape (h,m,k,p)      fderiv bmm        matrixmultiply    fderiv bmm        gemm 0.19         fastest/fderiv"
    );
    for [h, m, k, p] in shapes {
        let a: Vec<f64> = (0..h * m * k).map(|i| (i % 17) as f64 / 17.0).collect();
        let b: Vec<f64> = (0..h * k * p).map(|i| (i % 13) as f64 / 13.0).collect();
        let mut c = vec![0.0; h * m * p];
        let mut d = vec![0.0; h * m * p];
        let mut reference = vec![0.0; h * m * p];
        runtime::bmm([h, m, k, p], &a, false, &b, false, &mut reference, false)?;
        // A sanity check that the three compute the same product (not an exactness
        // check: summation orders differ).
        let same = |c: &[f64]| {
            c.iter()
                .zip(&reference)
                .all(|(x, y)| (x - y).abs() <= 1e-9 * y.abs().max(1.0))
        };
        let gflops = |t: f64| 2.0 * (h * m * k * p) as f64 / t / 1e9;
        let mut fderiv = || {
            Ok(runtime::bmm(
                [h, m, k, p],
                &a,
                false,
                &b,
                false,
                &mut d,
                false,
            )?)
        };
        let mm_call = || {
            c.par_chunks_mut(m * p).enumerate().for_each(|(i, c)| {
                let (a, b) = (&a[i * m * k..][..m * k], &b[i * k * p..][..k * p]);
                // SAFETY: a is m×k, b is k×p and c is m×p, row-major, contiguous.
                unsafe {
                    let (rs, ps) = (k as isize, p as isize);
                    let (ap, bp, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
                    matrixmultiply::dgemm(m, k, p, 1.0, ap, rs, 1, bp, ps, 1, 0.0, cp, ps, 1)
                }
            });
            Ok(())
        };
        let (fderiv_mm, mm) = paired_medians(15, &mut fderiv, mm_call)?;
        assert!(
            same(&c),
            "matrixmultiply per head disagrees with runtime::bmm"
        );
        let inner = if h == 1 {
            gemm::Parallelism::Rayon(0)
        } else {
            gemm::Parallelism::None
        };
        let faer_call = || {
            c.par_chunks_mut(m * p).enumerate().for_each(|(i, c)| {
                let (a, b) = (&a[i * m * k..][..m * k], &b[i * k * p..][..k * p]);
                // SAFETY: as above; gemm takes (rows, cols, dst, col stride, row stride, ...).
                unsafe {
                    let (ks, ps) = (k as isize, p as isize);
                    let (ap, bp, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
                    gemm::gemm(
                        m, p, k, cp, 1, ps, false, ap, 1, ks, bp, 1, ps, 0.0, 1.0, false, false,
                        false, inner,
                    )
                }
            });
            Ok(())
        };
        let (fderiv_faer, faer) = paired_medians(15, &mut fderiv, faer_call)?;
        assert!(same(&c), "gemm disagrees with runtime::bmm");
        let cell = |t: f64| format!("{:8.3} ms {:5.1}", t * 1e3, gflops(t));
        println!(
            "{:<20} {}  {}  {}  {}  {:.2}",
            format!("{h}x{m}x{k}x{p}"),
            cell(fderiv_mm),
            cell(mm),
            cell(fderiv_faer),
            cell(faer),
            (mm / fderiv_mm).min(faer / fderiv_faer)
        );
    }
    Ok(())
}
