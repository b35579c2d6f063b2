//! The claims of docs/numerics.md that tests/run_outputs.rs does not already test:
//! PyTorch's NaN/±inf behaviour of softmax rows, huge logits in every mode, sizes 0 and
//! 1 in every position of every op and mode, and the overflow error naming its entry.

use fderiv::manifest::KernelMode;
use fderiv::run::finite::check_finite;
use fderiv::run::task::input_names;
use fderiv::run::{compute, RunError, Task};
use fderiv::tensor::Tensor;
use std::collections::BTreeMap;

type Named = BTreeMap<String, Tensor<f64>>;

fn named(pairs: Vec<(&str, Tensor<f64>)>) -> Named {
    pairs.into_iter().map(|(k, t)| (k.to_string(), t)).collect()
}

fn t(dims: [usize; 3], data: Vec<f64>) -> Tensor<f64> {
    Tensor::new(dims, data).unwrap()
}

/// Small dyadic entries, so that sums and products of a few of them are exact in f64.
fn dyadic(dims: [usize; 3], seed: usize) -> Tensor<f64> {
    let n = dims.iter().product::<usize>();
    t(
        dims,
        (0..n)
            .map(|i| ((i * 7 + seed * 3) % 9) as f64 / 4.0 - 1.0)
            .collect(),
    )
}

/// `kernel` of the crate's manifest in `mode`.
fn task(kernel: &str, mode: KernelMode) -> Task {
    Task::load(None, kernel, mode).unwrap()
}

/// The index of the plan of `task` that reads exactly the names of `inputs`.
fn plan_for(task: &Task, inputs: &Named) -> usize {
    let mut given: Vec<String> = inputs.keys().cloned().collect();
    given.sort();
    task.plans
        .iter()
        .position(|p| {
            let mut names = input_names(p);
            names.sort();
            names == given
        })
        .unwrap_or_else(|| panic!("{}: no plan reads {given:?}", task.label))
}

/// Runs `task` on `inputs` with the plan that reads them.
fn run(task: &Task, inputs: &Named) -> Named {
    compute(task, plan_for(task, inputs), inputs).unwrap()
}

/// Checks outputs as `fderiv run` does.
fn check(task: &Task, inputs: &Named, outputs: &Named) -> Result<(), RunError> {
    check_finite(task, plan_for(task, inputs), inputs, outputs)
}

fn softmax_forward(x: Tensor<f64>) -> Vec<f64> {
    let inputs = named(vec![("X", x)]);
    run(&task("softmax_last", KernelMode::Forward), &inputs)["S"]
        .data()
        .to_vec()
}

#[test]
fn softmax_rows_treat_nan_and_inf_as_pytorch_does() {
    let (inf, nan) = (f64::INFINITY, f64::NAN);
    // torch.softmax([+inf, 1]) = [nan, nan]; ([nan, 1]) = [nan, nan];
    // ([-inf, -inf]) = [nan, nan]; ([-inf, 0]) = [0, 1].
    for (row, want) in [
        ([inf, 1.0], [nan, nan]),
        ([nan, 1.0], [nan, nan]),
        ([-inf, -inf], [nan, nan]),
        ([-inf, 0.0], [0.0, 1.0]),
        ([inf, -inf], [nan, nan]),
    ] {
        let got = softmax_forward(t([1, 1, 2], row.to_vec()));
        let same = got
            .iter()
            .zip(want)
            .all(|(g, w)| g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()));
        assert!(same, "softmax({row:?}) = {got:?}, PyTorch gives {want:?}");
    }
    // A non-finite entry touches its own row only.
    let got = softmax_forward(t([1, 2, 2], vec![inf, 0.0, 0.0, 0.0]));
    assert!(got[0].is_nan() && got[1].is_nan());
    assert_eq!(&got[2..], [0.5, 0.5]);
}

#[test]
fn a_nan_cotangent_or_tangent_poisons_only_its_row() {
    let x = t([1, 2, 2], vec![0.0, 0.0, 1.0, -1.0]);
    let bad = t([1, 2, 2], vec![f64::NAN, 1.0, 1.0, 0.0]);
    for (mode, name, out) in [(KernelMode::Vjp, "G", "gX"), (KernelMode::Jvp, "dX", "dS")] {
        let task = task("softmax_last", mode);
        let inputs = named(vec![("X", x.clone()), (name, bad.clone())]);
        let outputs = run(&task, &inputs);
        let d = outputs[out].data();
        assert!(d[0].is_nan() && d[1].is_nan(), "{mode:?}: {d:?}");
        assert!(d[2].is_finite() && d[3].is_finite(), "{mode:?}: {d:?}");
        // Propagated, not produced: the overflow guard lets it through.
        check(&task, &inputs, &outputs).unwrap();
    }
}

#[test]
fn logits_of_magnitude_1e300_give_the_right_jvp() {
    // Row 0: two equal huge logits (S = ½, ½); row 1: one dominates (S = 1, 0).
    let x = t([1, 2, 2], vec![1e300, 1e300, 1e300, -1e300]);
    let dx = t([1, 2, 2], vec![1.0, 0.0, 1.0, 0.0]);
    let inputs = named(vec![("X", x), ("dX", dx)]);
    let out = run(&task("softmax_last", KernelMode::Jvp), &inputs);
    // dS = S ⊙ (dX − ⟨S, dX⟩): row 0 [¼, −¼], row 1 [0, 0].
    assert_eq!(out["dS"].data(), [0.25, -0.25, 0.0, 0.0]);
}

/// Every shape with each size 0, 1 or 2, and each position taking 0 and 1 at least
/// once with the others at 2 or 3.
fn size_cases(positions: usize) -> Vec<Vec<usize>> {
    let mut cases = Vec::new();
    for pos in 0..positions {
        for small in [0, 1] {
            let mut dims: Vec<usize> = (0..positions).map(|i| 2 + i % 2).collect();
            dims[pos] = small;
            cases.push(dims);
        }
    }
    cases.push(vec![1; positions]);
    cases.push(vec![0; positions]);
    cases
}

fn inner(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
    a.data().iter().zip(b.data()).map(|(x, y)| x * y).sum()
}

#[test]
fn sizes_0_and_1_work_in_every_position_of_matmul() {
    let tasks: Vec<(KernelMode, Task)> = [KernelMode::Forward, KernelMode::Jvp, KernelMode::Vjp]
        .into_iter()
        .map(|m| (m, task("matmul", m)))
        .collect();
    for d in size_cases(4) {
        let (h, m, n, p) = (d[0], d[1], d[2], d[3]);
        let (a, b) = (dyadic([h, m, n], 1), dyadic([h, n, p], 2));
        let (da, db, g) = (
            dyadic([h, m, n], 3),
            dyadic([h, n, p], 4),
            dyadic([h, m, p], 5),
        );
        let run = |mode, extra: Vec<(&str, Tensor<f64>)>| {
            let mut inputs = named(vec![("A", a.clone()), ("B", b.clone())]);
            inputs.extend(named(extra));
            let task = &tasks.iter().find(|(m, _)| *m == mode).unwrap().1;
            let out = run(task, &inputs);
            assert_eq!(out.keys().cloned().collect::<Vec<_>>(), task.output_files());
            out
        };
        let c = &run(KernelMode::Forward, vec![])["C"];
        assert_eq!(c.dims(), [h, m, p], "{d:?}");
        // The forward product, entry by entry (an empty sum is 0).
        for (idx, v) in c.data().iter().enumerate() {
            let (k, i, j) = (idx / (m * p), idx / p % m, idx % p);
            let want: f64 = (0..n)
                .map(|l| a.data()[k * m * n + i * n + l] * b.data()[k * n * p + l * p + j])
                .sum();
            assert_eq!(*v, want, "{d:?} at {idx}");
        }
        let dc = &run(
            KernelMode::Jvp,
            vec![("dA", da.clone()), ("dB", db.clone())],
        )["dC"];
        let grads = run(KernelMode::Vjp, vec![("G", g.clone())]);
        assert_eq!(dc.dims(), [h, m, p], "{d:?}");
        assert_eq!(grads["gA"].dims(), [h, m, n], "{d:?}");
        assert_eq!(grads["gB"].dims(), [h, n, p], "{d:?}");
        // ⟨G, dC⟩ = ⟨gA, dA⟩ + ⟨gB, dB⟩, exactly: dyadic entries, few terms.
        let lhs = inner(&g, dc);
        let rhs = inner(&grads["gA"], &da) + inner(&grads["gB"], &db);
        assert_eq!(lhs, rhs, "{d:?}");
    }
}

#[test]
fn sizes_0_and_1_work_in_every_position_of_softmax_last() {
    let jvp_task = task("softmax_last", KernelMode::Jvp);
    let vjp_task = task("softmax_last", KernelMode::Vjp);
    for d in size_cases(3) {
        let dims = [d[0], d[1], d[2]];
        let (x, dx, g) = (dyadic(dims, 1), dyadic(dims, 2), dyadic(dims, 3));
        let s = softmax_forward(x.clone());
        assert_eq!(s.len(), dims.iter().product::<usize>(), "{d:?}");
        // Each row sums to 1 (when rows are non-empty) and matches exp(x)/Σexp(x).
        for (r, row) in s.chunks(dims[2].max(1)).enumerate() {
            let xs = &x.data()[r * dims[2]..(r + 1) * dims[2]];
            let z: f64 = xs.iter().map(|v| v.exp()).sum();
            for (got, xv) in row.iter().zip(xs) {
                assert!((got - xv.exp() / z).abs() < 1e-15, "{d:?}");
            }
        }
        let jvp = run(
            &jvp_task,
            &named(vec![("X", x.clone()), ("dX", dx.clone())]),
        );
        let vjp = run(&vjp_task, &named(vec![("X", x.clone()), ("G", g.clone())]));
        assert_eq!(jvp["dS"].dims(), dims, "{d:?}");
        assert_eq!(vjp["gX"].dims(), dims, "{d:?}");
        let (lhs, rhs) = (inner(&g, &jvp["dS"]), inner(&vjp["gX"], &dx));
        assert!(
            (lhs - rhs).abs() <= 1e-14 * (1.0 + lhs.abs()),
            "{d:?}: {lhs} vs {rhs}"
        );
    }
}

#[test]
fn an_overflow_names_the_output_and_the_entry() {
    // Entry (0, 1, 0) of C is 1e200·1e200 = inf; the rest is finite.
    let a = t([1, 2, 1], vec![1.0, 1e200]);
    let b = t([1, 1, 2], vec![1e200, 1.0]);
    let inputs = named(vec![("A", a), ("B", b)]);
    let forward = task("matmul", KernelMode::Forward);
    let outputs = run(&forward, &inputs);
    let e = check(&forward, &inputs, &outputs).unwrap_err();
    assert!(
        matches!(e, RunError::NonFinite { ref output, index: [0, 1, 0], .. } if output == "C"),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("C[0, 1, 0] would be inf, which no NaN"),
        "{e}"
    );
    // The VJP overflows in gB = Aᵀ·G, in the entry that multiplies 1e200 by 1e200.
    let g = t([1, 2, 2], vec![0.0, 0.0, 0.0, 1e200]);
    let mut vjp_inputs = inputs.clone();
    vjp_inputs.insert("G".into(), g);
    let vjp = task("matmul", KernelMode::Vjp);
    let outputs = run(&vjp, &vjp_inputs);
    let e = check(&vjp, &vjp_inputs, &outputs).unwrap_err();
    assert!(e.to_string().starts_with("gB[0, 0, 1] would be inf"), "{e}");
}
