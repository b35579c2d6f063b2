//! Cross-check of `fderiv run` against an independent NumPy implementation
//! (`tests/numpy_reference.py`): the script writes random cases of odd and zero
//! shapes, the library's `run` computes them, the script compares to 1e-12 relative.
//!
//! Needs `python3` with NumPy (`pip install -r requirements-dev.txt`). Without it the
//! test fails under CI (`CI` set) and is skipped loudly elsewhere.

use fderiv::derive::SpecOp;
use fderiv::run::{execute, InputSpec, RunArgs, RunMode};
use std::path::Path;
use std::process::Command;

fn script() -> String {
    format!("{}/tests/numpy_reference.py", env!("CARGO_MANIFEST_DIR"))
}

fn numpy_available() -> bool {
    Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn python(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(script())
        .args(args)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "numpy_reference.py {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn value<T: clap::ValueEnum>(text: &str) -> T {
    T::from_str(text, false).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn run_case(root: &Path, case: &serde_json::Value) {
    let inputs = case["inputs"]
        .as_object()
        .expect("inputs")
        .iter()
        .map(|(name, rel)| InputSpec {
            name: name.clone(),
            path: root.join(rel.as_str().expect("a path")),
        })
        .collect();
    let args = RunArgs {
        op: value::<SpecOp>(case["op"].as_str().expect("op")),
        mode: value::<RunMode>(case["mode"].as_str().expect("mode")),
        inputs,
        out: root.join(case["out"].as_str().expect("out")),
        force: false,
    };
    execute(&args).unwrap_or_else(|e| panic!("{}: {e}", case["case"]));
}

#[test]
fn run_agrees_with_numpy_to_1e_12() {
    if !numpy_available() {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        assert!(
            !ci,
            "CI needs python3 with NumPy for this test: pip install -r requirements-dev.txt"
        );
        eprintln!("SKIPPED run_agrees_with_numpy_to_1e_12: python3 with NumPy is not available (pip install -r requirements-dev.txt)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().expect("a UTF-8 temp path");
    python(&["gen", root, "--seed", "7"]);
    let manifest = std::fs::read_to_string(dir.path().join("manifest.json")).unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&manifest).unwrap();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    for case in &cases {
        run_case(dir.path(), case);
    }
    let summary = python(&["check", root]);
    println!("{summary}");
    assert!(summary.contains(&format!("{} cases agree, 0 disagree", cases.len())));
}
