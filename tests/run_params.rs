//! `fderiv run` on a manifest kernel with a runtime parameter (`@c`) and a saved
//! subterm: the scaled attention head of `examples/user-crate/fderiv.toml`.

use fderiv::manifest::KernelMode;
use fderiv::run::{execute, npy, ParamSpec, RunArgs, RunError};
use fderiv::tensor::Tensor;
use std::path::{Path, PathBuf};

fn manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/user-crate/fderiv.toml")
}

/// Deterministic values in [-1, 1).
fn values(len: usize, seed: u64) -> Vec<f64> {
    (0..len as u64)
        .map(|i| {
            let x = (i.wrapping_mul(2654435761).wrapping_add(seed * 97)) % 1000;
            x as f64 / 500.0 - 1.0
        })
        .collect()
}

fn write(dir: &Path, name: &str, dims: [usize; 3], seed: u64) -> PathBuf {
    let t = Tensor::new(dims, values(dims.iter().product(), seed)).unwrap();
    let path = dir.join(format!("{name}.npy"));
    std::fs::write(&path, npy::encode_tensor(&t).unwrap()).unwrap();
    path
}

fn args(dir: &Path, params: &[&str]) -> RunArgs {
    let (h, m, n, d, e) = (2, 3, 4, 5, 3);
    let files: Vec<(&str, PathBuf)> = vec![
        ("Q", write(dir, "Q", [h, m, d], 1)),
        ("K", write(dir, "K", [h, n, d], 2)),
        ("V", write(dir, "V", [h, n, e], 3)),
        ("M", write(dir, "M", [h, m, n], 4)),
    ];
    let refs: Vec<(&str, &Path)> = files.iter().map(|(n, p)| (*n, p.as_path())).collect();
    let mut a = RunArgs::new("attn_head", KernelMode::Forward, &refs, &dir.join("out"));
    a.manifest = Some(manifest());
    a.params = params
        .iter()
        .map(|p| p.parse::<ParamSpec>().unwrap())
        .collect();
    a
}

/// softmax(c·Q·Kᵀ + M)·V, head by head, in plain loops.
fn reference(
    q: &Tensor<f64>,
    k: &Tensor<f64>,
    v: &Tensor<f64>,
    bias: &Tensor<f64>,
    c: f64,
) -> Vec<f64> {
    let [h, m, d] = q.dims();
    let n = k.dims()[1];
    let e = v.dims()[2];
    let mut out = vec![0.0; h * m * e];
    for hh in 0..h {
        for i in 0..m {
            let s: Vec<f64> = (0..n)
                .map(|j| {
                    let dot: f64 = (0..d)
                        .map(|t| q.data()[(hh * m + i) * d + t] * k.data()[(hh * n + j) * d + t])
                        .sum();
                    c * dot + bias.data()[(hh * m + i) * n + j]
                })
                .collect();
            let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
            let z: f64 = w.iter().sum();
            for f in 0..e {
                out[(hh * m + i) * e + f] = (0..n)
                    .map(|j| w[j] / z * v.data()[(hh * n + j) * e + f])
                    .sum();
            }
        }
    }
    out
}

#[test]
fn a_runtime_parameter_scales_the_scores_and_the_forward_saves_p() {
    let dir = tempfile::tempdir().unwrap();
    let a = args(dir.path(), &["c=0.125"]);
    let written = execute(&a).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["O.npy", "P.npy"],
        "the output and the saved softmax"
    );
    let read = |n: &str| npy::read_tensor(&dir.path().join(format!("{n}.npy"))).unwrap();
    assert_eq!(read("Q").dims(), [2, 3, 5]);
    let o = npy::read_tensor(&dir.path().join("out/O.npy")).unwrap();
    let want = reference(&read("Q"), &read("K"), &read("V"), &read("M"), 0.125);
    for (g, w) in o.data().iter().zip(&want) {
        assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "{g} vs {w}");
    }
    // A different c gives a different output: the parameter is really read.
    std::fs::create_dir_all(dir.path().join("b")).unwrap();
    execute(&args(&dir.path().join("b"), &["c=2"])).unwrap();
    let o2 = npy::read_tensor(&dir.path().join("b/out/O.npy")).unwrap();
    assert_ne!(o.data(), o2.data());
}

#[test]
fn missing_unknown_repeated_and_non_finite_parameters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (params, want) in [
        (
            vec![],
            "parameter c: attn_head forward needs it: add --param c=VALUE",
        ),
        (
            vec!["c=1", "k=2"],
            "parameter k: attn_head forward takes no such parameter (it takes: c)",
        ),
        (vec!["c=1", "c=2"], "parameter c: given twice"),
        (vec!["c=NaN"], "parameter c: NaN is not finite"),
        (vec!["c=inf"], "parameter c: inf is not finite"),
    ] {
        let a = args(dir.path(), &params);
        let e = execute(&a).unwrap_err();
        assert!(matches!(e, RunError::BadParam { .. }), "{e}");
        assert!(e.to_string().contains(want), "{e}");
        assert_eq!(e.exit_code(), 2);
        assert!(
            !dir.path().join("out").join("O.npy").exists(),
            "nothing written"
        );
    }
    assert!("c".parse::<ParamSpec>().is_err());
    assert!("c=abc".parse::<ParamSpec>().is_err());
}
