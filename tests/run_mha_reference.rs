//! Cross-check of `fderiv run` on the multi-head attention kernels (`mha_h4`, `mha_h8`,
//! `mha_lean_h4`) against independent references (`tests/mha_reference.py`): a NumPy
//! forward and backward written by hand from the math, and `jax.vjp` of the same forward
//! when JAX is importable. Odd shapes (n, m, d in 1, 2, 3, 5, 7), n = 0, m = 0 and
//! d = 0; the forward
//! output and saved tensors, and the VJP both from the saved tensors and recomputing them.
//!
//! The forward cases run the `fderiv` binary; the VJP cases run the same code in-process
//! ([`fderiv::run::execute_task`]) with one kernel build per kernel, since deriving the
//! MHA VJP takes seconds in a debug build.
//!
//! Needs `python3` with NumPy and JAX (`pip install -r requirements-dev.txt`). Under CI
//! (`CI` set) both are required; elsewhere a missing NumPy skips the test and a missing
//! JAX skips the JAX comparison, each loudly.

use fderiv::manifest::KernelMode;
use fderiv::run::{execute_task, ParamSpec, RunArgs, Task};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script() -> String {
    format!("{}/tests/mha_reference.py", env!("CARGO_MANIFEST_DIR"))
}

fn imports(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
}

fn python(args: &[&str]) -> Output {
    Command::new("python3")
        .arg(script())
        .args(args)
        .output()
        .expect("python3 runs")
}

/// `check DIR`: its exit code and stdout.
fn check(root: &str) -> (Option<i32>, String) {
    let mut args = vec!["check", root];
    if in_ci() {
        args.push("--require-jax");
    }
    let out = python(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code(), stdout)
}

struct Case {
    kernel: String,
    mode: KernelMode,
    inputs: Vec<(String, PathBuf)>,
    c: f64,
    out: PathBuf,
}

fn cases(root: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(root.join("manifest.json")).unwrap();
    let v: Vec<Value> = serde_json::from_str(&text).unwrap();
    v.iter()
        .map(|c| Case {
            kernel: c["kernel"].as_str().unwrap().to_string(),
            mode: match c["mode"].as_str().unwrap() {
                "forward" => KernelMode::Forward,
                "vjp" => KernelMode::Vjp,
                m => panic!("unexpected mode {m}"),
            },
            inputs: c["inputs"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, rel)| (k.clone(), root.join(rel.as_str().unwrap())))
                .collect(),
            c: c["params"]["c"].as_f64().unwrap(),
            out: root.join(c["out"].as_str().unwrap()),
        })
        .collect()
}

/// Runs the forward cases through the binary and the VJP cases in-process.
fn run_cases(cases: &[Case]) {
    let mut tasks: BTreeMap<String, Task> = BTreeMap::new();
    for case in cases {
        if case.mode == KernelMode::Forward {
            run_binary(case);
            continue;
        }
        let task = tasks
            .entry(case.kernel.clone())
            .or_insert_with(|| Task::load(None, &case.kernel, case.mode).unwrap());
        let inputs: Vec<(&str, &Path)> = case
            .inputs
            .iter()
            .map(|(k, p)| (k.as_str(), p.as_path()))
            .collect();
        let mut args = RunArgs::new(&case.kernel, case.mode, &inputs, &case.out);
        args.params.push(ParamSpec {
            name: "c".to_string(),
            value: case.c,
        });
        args.force = true;
        execute_task(task, &args).unwrap_or_else(|e| panic!("{} vjp: {e}", case.kernel));
    }
}

fn run_binary(case: &Case) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fderiv"));
    cmd.args(["run", &case.kernel, "forward", "--force", "--out"])
        .arg(&case.out)
        .arg("--param")
        .arg(format!("c={:?}", case.c));
    for (k, p) in &case.inputs {
        cmd.arg("--input").arg(format!("{k}={}", p.display()));
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{} forward: {}",
        case.kernel,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(path: &Path) -> fderiv::tensor::Tensor<f64> {
    fderiv::run::npy::read_tensor(path).unwrap()
}

fn write(path: &Path, t: &fderiv::tensor::Tensor<f64>) {
    std::fs::write(path, fderiv::run::npy::encode_tensor(t).unwrap()).unwrap();
}

/// Multiplies the entry of largest magnitude of the tensor in `path` by `factor`.
fn bump_largest(path: &Path, factor: f64) {
    let t = read(path);
    let mut data = t.data().to_vec();
    let i = (0..data.len())
        .max_by(|a, b| data[*a].abs().total_cmp(&data[*b].abs()))
        .expect("an entry");
    data[i] *= factor;
    write(path, &fderiv::tensor::Tensor::new(t.dims(), data).unwrap());
}

#[test]
fn mha_run_agrees_with_numpy_and_jax_references() {
    if !imports("numpy") {
        assert!(
            !in_ci(),
            "CI needs python3 with NumPy and JAX for this test: pip install -r requirements-dev.txt"
        );
        eprintln!("SKIPPED mha_run_agrees_with_numpy_and_jax_references: python3 with NumPy is not available (pip install -r requirements-dev.txt)");
        return;
    }
    let jax = imports("jax");
    if !jax {
        eprintln!("JAX IS NOT IMPORTABLE: the jax.vjp comparison of the MHA kernels is SKIPPED (pip install -r requirements-dev.txt)");
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().expect("a UTF-8 temp path");
    let gen = python(&["gen", root, "--seed", "7"]);
    assert!(gen.status.success(), "{gen:?}");
    let all = cases(dir.path());
    assert_eq!(all.len(), 65);
    run_cases(&all);

    let agree = |s: &str, lib: &str, ok: usize, bad: usize| {
        s.contains(&format!(
            "mha {lib} reference: {ok} cases agree, {bad} disagree"
        ))
    };
    let (code, out) = check(root);
    assert_eq!(code, Some(0), "{out}");
    assert!(agree(&out, "numpy", 65, 0), "{out}");
    assert!(!jax || agree(&out, "jax", 65, 0), "{out}");
    assert!(out.contains("mha layout rows: 8 of 8 as expected"), "{out}");
    // n = 1: the Lean kernel equals the PyTorch-layout block; n ≥ 2 it differs.
    assert!(
        out.contains(
            "mha_lean_h4 Y equals the PyTorch-layout NumPy block at (n, m, h, d) = (1, 3, 4, 2)"
        ),
        "{out}"
    );
    assert!(out.contains("mha_lean_h4 Y differs from the PyTorch-layout NumPy block at (n, m, h, d) = (2, 2, 4, 1)"), "{out}");
    assert!(out.contains("layout witness: mha_lean_h4 Y = [[[0.5, 0.0], [0.5, 0.0]]], PyTorch-layout NumPy Y = [[[0.0, 0.0], [0.0, 0.0]]] (as docs/mha-layout.md says)"), "{out}");

    // A VJP output off by 1e-9 relative in one entry is caught by both references.
    let g = dir.path().join("mha_h8-vjp-5x3x2/out/gWq.npy");
    let clean = std::fs::read(&g).unwrap();
    bump_largest(&g, 1.0 + 1e-9);
    let (code, out) = check(root);
    assert_eq!(code, Some(1), "{out}");
    assert!(agree(&out, "numpy", 64, 1), "{out}");
    assert!(!jax || agree(&out, "jax", 64, 1), "{out}");
    std::fs::write(&g, clean).unwrap();

    // The Lean kernel's outputs checked against the PyTorch layout fail exactly for the
    // Lean cases with n ≥ 2: four random shapes, three runs each, and the witness.
    let manifest = dir.path().join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("\"mha_lean_h4\"", "\"mha_h4\"")).unwrap();
    let (code, out) = check(root);
    assert_eq!(code, Some(1), "{out}");
    assert!(agree(&out, "numpy", 52, 13), "{out}");
    std::fs::write(&manifest, &text).unwrap();

    // The layout row fails when the Lean kernel's output is the PyTorch one.
    let y = dir
        .path()
        .join("mha_lean_h4-forward-witnessx2x2x1/out/Y.npy");
    let clean = std::fs::read(&y).unwrap();
    let t = read(&y);
    write(
        &y,
        &fderiv::tensor::Tensor::new(t.dims(), vec![0.0; t.data().len()]).unwrap(),
    );
    let (code, out) = check(root);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("mha layout rows: 7 of 8 as expected"), "{out}");
    assert!(out.contains("NOT as docs/mha-layout.md says"), "{out}");
    std::fs::write(&y, clean).unwrap();

    // The saved-tensor VJP reads the saved P: a P off by 1e-6 in one entry changes its
    // result, which the references (recomputing P from x) reject.
    let case = all
        .iter()
        .find(|c| c.out.ends_with("mha_h4-vjp-saved-3x5x2/out"))
        .expect("the case");
    let p = &case.inputs.iter().find(|(k, _)| k == "P").unwrap().1;
    bump_largest(p, 1.0 + 1e-6);
    run_cases(std::slice::from_ref(case));
    let (code, out) = check(root);
    assert_eq!(code, Some(1), "{out}");
    assert!(agree(&out, "numpy", 64, 1), "{out}");
}
