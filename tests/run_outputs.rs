//! `fderiv run` outputs: no overwriting without --force, each file whole or not at
//! all, NaN/±inf propagation, and the overflow guard.

use fderiv::manifest::KernelMode;
use fderiv::run::{execute, npy, run, RunArgs, RunError};
use fderiv::tensor::Tensor;
use std::path::{Path, PathBuf};

fn save(dir: &Path, name: &str, dims: [usize; 3], data: Vec<f64>) -> PathBuf {
    let path = dir.join(format!("{name}.npy"));
    let t = Tensor::new(dims, data).unwrap();
    std::fs::write(&path, npy::encode_tensor(&t).unwrap()).unwrap();
    path
}

fn seq(n: usize) -> Vec<f64> {
    (0..n).map(|i| (i % 5) as f64 - 2.0).collect()
}

fn args(op: &str, mode: KernelMode, inputs: &[(&str, &Path)], out: &Path) -> RunArgs {
    RunArgs::new(op, mode, inputs, out)
}

/// Matmul vjp inputs in a fresh folder; returns the folder and the arguments.
fn matmul_vjp() -> (tempfile::TempDir, RunArgs) {
    let dir = tempfile::tempdir().unwrap();
    let a = save(dir.path(), "A", [1, 2, 3], seq(6));
    let b = save(dir.path(), "B", [1, 3, 2], seq(6));
    let g = save(dir.path(), "G", [1, 2, 2], seq(4));
    let out = dir.path().join("out");
    let a = args(
        "matmul",
        KernelMode::Vjp,
        &[("A", &a), ("B", &b), ("G", &g)],
        &out,
    );
    (dir, a)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn existing_outputs_are_kept_without_force_and_replaced_with_it() {
    let (_dir, mut a) = matmul_vjp();
    std::fs::create_dir_all(&a.out).unwrap();
    let gb = a.out.join("gB.npy");
    std::fs::write(&gb, b"precious").unwrap();
    let e = execute(&a).unwrap_err();
    assert!(
        matches!(e, RunError::OutputExists { ref path } if *path == gb),
        "{e}"
    );
    assert!(e.to_string().contains("pass --force"), "{e}");
    assert_eq!(run(&a).unwrap_err().code, 2);
    // Nothing was written: not even gA, which did not exist.
    assert_eq!(listing(&a.out), ["gB.npy"]);
    assert_eq!(std::fs::read(&gb).unwrap(), b"precious");
    a.force = true;
    run(&a).unwrap();
    assert_eq!(listing(&a.out), ["gA.npy", "gB.npy"]);
    assert_eq!(npy::read_tensor(&gb).unwrap().dims(), [1, 3, 2]);
}

#[test]
fn an_output_path_that_is_a_directory_fails_before_anything_is_written() {
    let (_dir, mut a) = matmul_vjp();
    std::fs::create_dir_all(a.out.join("gB.npy")).unwrap();
    a.force = true;
    let e = execute(&a).unwrap_err();
    assert!(matches!(e, RunError::OutputNotFile { .. }), "{e}");
    assert_eq!(listing(&a.out), ["gB.npy"]);
}

#[test]
fn an_out_dir_that_is_a_file_is_refused_and_no_temporary_file_remains() {
    let (dir, mut a) = matmul_vjp();
    std::fs::write(&a.out, b"a file").unwrap();
    let e = execute(&a).unwrap_err();
    assert!(matches!(e, RunError::Write { .. }), "{e}");
    assert_eq!(run(&a).unwrap_err().code, 2);
    assert_eq!(listing(dir.path()), ["A.npy", "B.npy", "G.npy", "out"]);
    // A failing run in a good folder leaves no partial or temporary file either.
    a.out = dir.path().join("fresh");
    std::fs::create_dir(&a.out).unwrap();
    a.inputs[2].path = dir.path().join("A.npy");
    assert!(matches!(execute(&a).unwrap_err(), RunError::Shape { .. }));
    assert!(listing(&a.out).is_empty());
    a.inputs[2].path = dir.path().join("G.npy");
    run(&a).unwrap();
    assert_eq!(listing(&a.out), ["gA.npy", "gB.npy"]);
}

#[test]
fn nan_and_inf_inputs_propagate_to_the_entries_they_touch() {
    let dir = tempfile::tempdir().unwrap();
    // A is 1×2×2 with a NaN in row 0 and +inf in row 1; B is the identity-like [1 0; 0 2].
    let a = save(
        dir.path(),
        "A",
        [1, 2, 2],
        vec![f64::NAN, 1.0, f64::INFINITY, 3.0],
    );
    let b = save(dir.path(), "B", [1, 2, 2], vec![1.0, 0.0, 0.0, 2.0]);
    let out = dir.path().join("out");
    run(&args(
        "matmul",
        KernelMode::Forward,
        &[("A", &a), ("B", &b)],
        &out,
    ))
    .unwrap();
    let c = npy::read_tensor(&out.join("C.npy")).unwrap();
    let c = c.data();
    assert!(c[0].is_nan() && c[1].is_nan(), "{c:?}");
    // inf·0 is NaN, inf·1 is inf: IEEE, as NumPy computes it.
    assert!(c[2] == f64::INFINITY && c[3].is_nan(), "{c:?}");
    // softmax: a NaN row is NaN, the other row is untouched.
    let x = save(dir.path(), "X", [1, 2, 2], vec![0.0, f64::NAN, 0.0, 0.0]);
    run(&args(
        "softmax_last",
        KernelMode::Forward,
        &[("X", &x)],
        &out,
    ))
    .unwrap();
    let s = npy::read_tensor(&out.join("S.npy")).unwrap();
    assert!(s.data()[0].is_nan() && s.data()[1].is_nan());
    assert_eq!(&s.data()[2..], [0.5, 0.5]);
    // -inf logits are exact zeros of the softmax; the other entries stay finite.
    let x = save(
        dir.path(),
        "X",
        [1, 1, 3],
        vec![f64::NEG_INFINITY, 0.0, 0.0],
    );
    let mut a = args("softmax_last", KernelMode::Forward, &[("X", &x)], &out);
    a.force = true;
    run(&a).unwrap();
    let s = npy::read_tensor(&out.join("S.npy")).unwrap();
    assert_eq!(s.data(), [0.0, 0.5, 0.5]);
}

/// Logits near 1e300 overflow `exp`. The evaluation must then either refuse (nothing
/// written) or, with an overflow-safe kernel, write the right finite answer; never
/// write NaN as if it were the softmax.
#[test]
fn huge_logits_give_the_right_softmax() {
    let dir = tempfile::tempdir().unwrap();
    let x = save(
        dir.path(),
        "X",
        [1, 2, 2],
        vec![1e300, 1e300, 1e300, -1e300],
    );
    let g = save(dir.path(), "G", [1, 2, 2], vec![1.0, 0.0, 0.0, 1.0]);
    let out = dir.path().join("out");
    for (mode, extra, expect) in [
        (KernelMode::Forward, None, [0.5, 0.5, 1.0, 0.0]),
        (KernelMode::Vjp, Some(("G", &g)), [0.25, -0.25, 0.0, 0.0]),
    ] {
        let mut inputs = vec![("X", x.as_path())];
        inputs.extend(extra.map(|(n, p)| (n, p.as_path())));
        let written = execute(&args("softmax_last", mode, &inputs, &out)).unwrap();
        let t = npy::read_tensor(&written[0].0).unwrap();
        assert_eq!(t.data(), expect, "{mode:?}");
    }
}

#[test]
fn an_overflow_from_finite_inputs_is_refused_even_beside_a_nan() {
    let dir = tempfile::tempdir().unwrap();
    // Head 0 holds a NaN (it propagates); head 1 overflows: 1e300·1e300 = inf.
    let a = save(dir.path(), "A", [2, 1, 1], vec![f64::NAN, 1e300]);
    let b = save(dir.path(), "B", [2, 1, 1], vec![1.0, 1e300]);
    let out = dir.path().join("out");
    let a = args("matmul", KernelMode::Forward, &[("A", &a), ("B", &b)], &out);
    let e = execute(&a).unwrap_err();
    assert!(matches!(e, RunError::NonFinite { .. }), "{e}");
    assert_eq!(run(&a).unwrap_err().code, 1);
    assert!(!out.exists(), "nothing is written when refusing");
}
