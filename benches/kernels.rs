//! f64 executor vs generated kernels vs naive loops: forward, JVP and VJP of matmul and
//! softmax_last. Executor and generated kernels run the same plans (softmax JVP/VJP
//! read the saved forward output `S`).
//!
//! Run: `cargo bench --bench kernels`. Figures are in `docs/performance.md`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fderiv::derive::Limits;
use fderiv::exec::{exec_f64, Tensors};
use fderiv::kernels::{runtime::Tensor3, KERNELS};
use fderiv::lower::{Plan, Role};
use fderiv::manifest::{KernelMode, Manifest};
use fderiv::rules::RuleSet;
use fderiv::tensor::Tensor;
use std::hint::black_box;
use std::time::Duration;

/// Inputs for every buffer of `plan`, each dim named h → `h`, others → `n`.
fn inputs(plan: &Plan, h: usize, n: usize) -> Tensors<f64> {
    plan.with_role(Role::Input)
        .map(|(_, b)| {
            let dims = b
                .shape
                .clone()
                .map(|d| if d.to_string() == "h" { h } else { n });
            let len = dims.iter().product();
            let data = (0..len)
                .map(|i| ((i * 7919) % 1000) as f64 / 500.0 - 1.0)
                .collect();
            (b.name.clone(), Tensor::new(dims, data).unwrap())
        })
        .collect()
}

/// The naive batched matmul: three nested loops per head, row-major.
fn naive_bmm(a: &[f64], b: &[f64], c: &mut [f64], h: usize, n: usize) {
    for k in 0..h {
        let (a, b, c) = (&a[k * n * n..], &b[k * n * n..], &mut c[k * n * n..]);
        for i in 0..n {
            for j in 0..n {
                let mut s = 0.0;
                for l in 0..n {
                    s += a[i * n + l] * b[l * n + j];
                }
                c[i * n + j] = s;
            }
        }
    }
}

/// The naive softmax: exp, row sums and division, each a full pass, no shift.
fn naive_softmax(x: &[f64], out: &mut [f64], n: usize) {
    for (xr, or) in x.chunks(n).zip(out.chunks_mut(n)) {
        let mut s = 0.0;
        for (o, v) in or.iter_mut().zip(xr) {
            *o = v.exp();
            s += *o;
        }
        for o in or.iter_mut() {
            *o /= s;
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("kernels");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let manifest = Manifest::embedded().unwrap();
    let rules = RuleSet::embedded().unwrap();
    for (h, n) in [(8, 128), (8, 256)] {
        for def in &manifest.kernels {
            for mode in KernelMode::ALL {
                let plan = def.build(mode, &rules, &Limits::default()).unwrap().plan;
                let ins = inputs(&plan, h, n);
                let name = def.mode_name(mode);
                let size = format!("h{h}_n{n}");
                g.bench_with_input(
                    BenchmarkId::new(format!("exec/{name}"), &size),
                    &ins,
                    |bch, ins| bch.iter(|| exec_f64(&plan, black_box(ins)).unwrap()),
                );
                let entry = KERNELS.iter().find(|e| e.name == name).unwrap();
                let given: Vec<Tensor3> = entry
                    .inputs
                    .iter()
                    .map(|i| Tensor3::from(&ins[*i]))
                    .collect();
                let refs: Vec<&Tensor3> = given.iter().collect();
                g.bench_function(
                    BenchmarkId::new(format!("generated/{name}"), &size),
                    |bch| bch.iter(|| (entry.run)(black_box(&refs)).unwrap()),
                );
            }
        }
        let a: Vec<f64> = (0..h * n * n).map(|i| (i % 17) as f64).collect();
        let mut out = vec![0.0; h * n * n];
        g.bench_function(BenchmarkId::new("naive/bmm", format!("h{h}_n{n}")), |bch| {
            bch.iter(|| naive_bmm(black_box(&a), black_box(&a), &mut out, h, n))
        });
        g.bench_function(
            BenchmarkId::new("naive/softmax", format!("h{h}_n{n}")),
            |bch| bch.iter(|| naive_softmax(black_box(&a), &mut out, n)),
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
