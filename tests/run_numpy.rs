//! Cross-check of `fderiv run` against an independent NumPy implementation
//! (`tests/numpy_reference.py`): the script writes random cases of odd and zero
//! shapes, runs the `fderiv run` binary on each, and compares to 1e-12 relative.
//!
//! Needs `python3` with NumPy (`pip install -r requirements-dev.txt`). Without it the
//! test fails under CI (`CI` set) and is skipped loudly elsewhere.

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
    let out = python(&[
        "all",
        root,
        "--seed",
        "7",
        "--fderiv",
        env!("CARGO_BIN_EXE_fderiv"),
    ]);
    assert!(out.contains("36 cases agree, 0 disagree"), "{out}");
}
