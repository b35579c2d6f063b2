//! Criterion benches of the four seed derivations (matmul and softmax_last, JVP and
//! VJP) with explanations on, as `fderiv derive --trace` and `fderiv trace` run them:
//! egg's two phases, extraction and the explanation, not the soundness check of the
//! applied rules nor the process start.
//!
//! Run: `cargo bench --bench derive`. Figures are in `docs/performance.md`.

use criterion::{criterion_group, criterion_main, Criterion};
use fderiv::derive::{derive_unchecked, Limits, Mode};
use fderiv::manifest::Manifest;
use fderiv::rules::RuleSet;
use std::hint::black_box;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("derive");
    g.sample_size(50)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let manifest = Manifest::embedded().unwrap();
    let rules = RuleSet::embedded().unwrap();
    let limits = Limits::default();
    for kernel in ["matmul", "softmax_last"] {
        for (name, mode) in [("jvp", Mode::Jvp), ("vjp", Mode::Vjp)] {
            let request = manifest.kernel(kernel).unwrap().request(mode).unwrap();
            g.bench_function(format!("{kernel}_{name}"), |b| {
                b.iter(|| derive_unchecked(black_box(&request), &rules, &limits).unwrap())
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
