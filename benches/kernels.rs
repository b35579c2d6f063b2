//! Criterion benches of every generated kernel (`fderiv::kernels::KERNELS`: forward,
//! JVP and VJP of each op) on the same default shapes as `fderiv bench`, in the
//! allocating form (`run`) and the form writing into reused outputs (`run_into`).
//!
//! Run: `cargo bench --bench kernels` (filter with e.g. `-- softmax_last_vjp`).
//! Figures are in `docs/performance.md`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fderiv::bench::{tensors, DEFAULT_3, DEFAULT_4};
use fderiv::kernels::runtime::{Tensor3, Workspace};
use fderiv::kernels::KERNELS;
use std::hint::black_box;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("kernels");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for e in KERNELS {
        let shapes = if e.dims.len() == 4 {
            DEFAULT_4
        } else {
            DEFAULT_3
        };
        for shape in shapes {
            let (ins, mut outs) = tensors(e, shape).unwrap();
            let refs: Vec<&Tensor3> = ins.iter().collect();
            let size: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            let size = size.join("x");
            g.bench_function(BenchmarkId::new(format!("{}/alloc", e.name), &size), |b| {
                b.iter(|| (e.run)(black_box(&refs)).unwrap())
            });
            let mut ws = Workspace::default();
            g.bench_function(BenchmarkId::new(format!("{}/into", e.name), &size), |b| {
                b.iter(|| (e.run_into)(black_box(&refs), &mut outs, &mut ws).unwrap())
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
