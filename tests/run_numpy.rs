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

    // The check can fail: one output entry off by 1e-9 relative is caught.
    let target = find_output(dir.path(), "gX.npy").expect("a softmax_last vjp output");
    let t = fderiv::run::npy::read_tensor(&target).unwrap();
    let mut data = t.data().to_vec();
    let i = data
        .iter()
        .position(|v| *v != 0.0)
        .expect("a non-zero entry");
    data[i] *= 1.0 + 1e-9;
    let bad = fderiv::tensor::Tensor::new(t.dims(), data).unwrap();
    std::fs::write(&target, fderiv::run::npy::encode_tensor(&bad).unwrap()).unwrap();
    let check = Command::new("python3")
        .arg(script())
        .args(["check", root])
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stdout).contains("35 cases agree, 1 disagree"));
}

/// The first file named `name` below `dir` whose tensor has a non-zero entry.
fn find_output(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()? {
        let path = entry.ok()?.path();
        if path.is_dir() {
            if let Some(found) = find_output(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == name) {
            let t = fderiv::run::npy::read_tensor(&path).ok()?;
            if t.data().iter().any(|v| *v != 0.0) {
                return Some(path);
            }
        }
    }
    None
}
