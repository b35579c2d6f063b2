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
        "no kernel named \"nope\" (kernels: matmul, softmax_last, mha_h4",
    );
    refused(&["--shapes", "2xa"], "bad shape \"2xa\"");
    refused(&["--shapes", "2x3"], "no selected kernel has 2 named dims");
    refused(
        &["softmax_last", "--shapes", "1x2x2x2"],
        "no selected kernel has 4 named dims",
    );
    refused(
        &["--manifest", "/nonexistent/m.toml"],
        "cannot read the manifest",
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

/// A manifest kernel this crate has not compiled is timed through the f64 executor on
/// its plan, at its `bench` sizes; one without sizes is refused with the line to add.
#[test]
fn a_users_kernel_is_timed_through_its_plan() {
    let dir = std::env::temp_dir().join(format!("fderiv-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("fderiv.toml");
    let kernel = |bench: &str| {
        format!(
            "[[kernel]]\nname = \"gated\"\nterm = \"(* (softmax (* @c X)) (bmm X W))\"\ninputs = {{ X = \"h,n,n\", W = \"h,n,n\" }}\n{bench}"
        )
    };
    std::fs::write(&manifest, kernel("bench = [{ h = 2, n = 3 }]\n")).unwrap();
    let m = manifest.to_str().unwrap();
    let out = fderiv(&["--manifest", m, "--reps", "1", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut seen: Vec<(String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["op"] == "gated")
        .map(|r| {
            assert_eq!(r["shape"], serde_json::json!([2, 3]), "{r}");
            (
                r["mode"].as_str().unwrap().into(),
                r["form"].as_str().unwrap().into(),
            )
        })
        .collect();
    seen.sort();
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        seen,
        [s("forward", "exec"), s("jvp", "exec"), s("vjp", "exec")]
    );
    std::fs::write(&manifest, kernel("")).unwrap();
    refused(
        &["--manifest", m],
        "kernel gated has no sizes to time: add bench = [{ h = 64, n = 64 }]",
    );
    std::fs::write(&manifest, kernel("bench = [{ h = 2 }]\n")).unwrap();
    refused(
        &["--manifest", m],
        "kernel gated: bench sizes name h, but the kernel's dims are h, n",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
