//! `fderiv bench`: argument errors and the JSON shape (tiny shapes; no timing
//! assertions — figures are in docs/performance.md).

use std::process::{Command, Output};

fn fderiv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fderiv"))
        .arg("bench")
        .args(args)
        .output()
        .unwrap()
}

fn refused(args: &[&str], needle: &str) {
    let out = fderiv(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?}");
}

#[test]
fn bad_arguments_are_refused_with_exit_2() {
    refused(
        &["nope"],
        "unknown kernel nope; known: matmul, softmax_last",
    );
    refused(&["--shapes", "2xa"], "bad shape \"2xa\"");
    refused(&["--shapes", "2x3"], "no selected kernel has 2 dims");
    refused(
        &["softmax_last", "--shapes", "1x2x2x2"],
        "no selected kernel has 4 dims",
    );
    refused(&["--format", "yaml"], "invalid value");
}

#[test]
fn json_rows_name_op_mode_shape_and_median() {
    let out = fderiv(&[
        "matmul_jvp",
        "softmax_last",
        "--shapes",
        "1x2x3x4,2x1x3",
        "--reps",
        "1",
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    let key = |r: &serde_json::Value| {
        let shape: Vec<u64> = r["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        (
            r["op"].as_str().unwrap().to_string(),
            r["mode"].as_str().unwrap().to_string(),
            shape,
            r["form"].as_str().unwrap().to_string(),
        )
    };
    for r in rows {
        assert!(r["median_s"].as_f64().unwrap() >= 0.0, "{r}");
    }
    let keys: Vec<_> = rows.iter().map(key).collect();
    let s = |x: &str| x.to_string();
    for want in [
        (s("reference"), s("gemm"), vec![1, 2, 3, 4], s("into")),
        (s("matmul"), s("jvp"), vec![1, 2, 3, 4], s("alloc")),
        (s("matmul"), s("jvp"), vec![1, 2, 3, 4], s("into")),
        (s("reference"), s("triad"), vec![6], s("into")),
        (s("softmax_last"), s("forward"), vec![2, 1, 3], s("into")),
        (s("softmax_last"), s("jvp"), vec![2, 1, 3], s("alloc")),
        (s("softmax_last"), s("vjp"), vec![2, 1, 3], s("into")),
    ] {
        assert!(keys.contains(&want), "{want:?} missing from {keys:?}");
    }
    // matmul forward and vjp were not selected; only the 3-dim shape reaches softmax.
    assert_eq!(keys.len(), 3 + 1 + 6, "{keys:?}");
}
