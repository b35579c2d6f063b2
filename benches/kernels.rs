//! Criterion benches of every generated kernel of the crate's manifest (forward, JVP
//! and VJP of each kernel) on the sizes its `bench` entries give, as `fderiv bench`, in the
//! allocating form (`run`) and the form writing into reused outputs (`run_into`).
//!
//! Run: `cargo bench --bench kernels` (filter with e.g. `-- softmax_last_vjp`).
//! Figures are in `docs/performance.md`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fderiv::bench::{compiled, entry_shape, tensors};
use fderiv::kernels::runtime::{Tensor3, Workspace};
use fderiv::manifest::Manifest;
use std::hint::black_box;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("kernels");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    let manifest = Manifest::embedded().unwrap();
    for def in &manifest.kernels {
        for e in def.modes.iter().filter_map(|m| compiled(def, *m)) {
            for sizes in &def.bench {
                let shape = entry_shape(def, e, sizes).unwrap();
                let (ins, mut outs) = tensors(e, &shape).unwrap();
                let refs: Vec<&Tensor3> = ins.iter().collect();
                let size: Vec<String> = sizes.iter().map(|d| d.to_string()).collect();
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
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
