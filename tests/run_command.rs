//! `fderiv run` through the library: outputs, bad input, overwriting, atomicity,
//! NaN/inf propagation and the overflow guard.

use fderiv::manifest::KernelMode;
use fderiv::outcome::Failure;
use fderiv::run::{execute, npy, run, InputSpec, RunArgs, RunError};
use fderiv::tensor::Tensor;
use std::path::{Path, PathBuf};

fn tensor(dims: [usize; 3], f: impl Fn(usize) -> f64) -> Tensor<f64> {
    let n = dims.iter().product();
    Tensor::new(dims, (0..n).map(f).collect()).unwrap()
}

/// Small dyadic values: every f64 operation on them here is exact.
fn dyadic(dims: [usize; 3], seed: usize) -> Tensor<f64> {
    tensor(dims, |i| ((i * 7 + seed * 3) % 11) as f64 / 4.0 - 1.25)
}

fn save(dir: &Path, name: &str, t: &Tensor<f64>) -> PathBuf {
    let path = dir.join(format!("{name}.npy"));
    std::fs::write(&path, npy::encode_tensor(t).unwrap()).unwrap();
    path
}

fn args(op: &str, mode: KernelMode, inputs: &[(&str, &Path)], out: &Path) -> RunArgs {
    RunArgs::new(op, mode, inputs, out)
}

/// A matmul setup: A 2×3×4, B 2×4×5, dA, dB, G 2×3×5 saved in a fresh folder.
struct Matmul {
    dir: tempfile::TempDir,
    a: Tensor<f64>,
    b: Tensor<f64>,
}

impl Matmul {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let a = dyadic([2, 3, 4], 1);
        let b = dyadic([2, 4, 5], 2);
        save(dir.path(), "A", &a);
        save(dir.path(), "B", &b);
        save(dir.path(), "dA", &dyadic([2, 3, 4], 3));
        save(dir.path(), "dB", &dyadic([2, 4, 5], 4));
        save(dir.path(), "G", &dyadic([2, 3, 5], 5));
        Matmul { dir, a, b }
    }
    fn input(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.npy"))
    }
    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }
    fn args(&self, mode: KernelMode, names: &[&str]) -> RunArgs {
        let paths: Vec<(&str, PathBuf)> = names.iter().map(|n| (*n, self.input(n))).collect();
        let refs: Vec<(&str, &Path)> = paths.iter().map(|(n, p)| (*n, p.as_path())).collect();
        args("matmul", mode, &refs, &self.out())
    }
}

fn read(path: &Path) -> Tensor<f64> {
    npy::read_tensor(path).unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn matmul_forward_jvp_vjp_write_exact_results() {
    let m = Matmul::new();
    run(&m.args(KernelMode::Forward, &["A", "B"])).unwrap();
    assert_eq!(read(&m.out().join("C.npy")), m.a.bmm(&m.b).unwrap());
    run(&m.args(KernelMode::Jvp, &["A", "B", "dA", "dB"])).unwrap();
    let (da, db) = (read(&m.input("dA")), read(&m.input("dB")));
    let dc = da.bmm(&m.b).unwrap();
    let dc = dc
        .zip(&m.a.bmm(&db).unwrap(), "+", |x, y| Ok(x + y))
        .unwrap();
    assert_eq!(read(&m.out().join("dC.npy")), dc);
    run(&m.args(KernelMode::Vjp, &["A", "B", "G"])).unwrap();
    let g = read(&m.input("G"));
    assert_eq!(
        read(&m.out().join("gA.npy")),
        g.bmm(&m.b.transpose()).unwrap()
    );
    assert_eq!(
        read(&m.out().join("gB.npy")),
        m.a.transpose().bmm(&g).unwrap()
    );
    assert_eq!(files_in(&m.out()), ["C.npy", "dC.npy", "gA.npy", "gB.npy"]);
}

#[test]
fn softmax_last_modes_write_their_files_and_rows_sum_to_one() {
    let dir = tempfile::tempdir().unwrap();
    let x = save(dir.path(), "X", &dyadic([3, 2, 5], 1));
    let dx = save(dir.path(), "dX", &dyadic([3, 2, 5], 2));
    let g = save(dir.path(), "G", &dyadic([3, 2, 5], 3));
    let out = dir.path().join("a/b/out");
    let sm = "softmax_last";
    run(&args(sm, KernelMode::Forward, &[("X", &x)], &out)).unwrap();
    run(&args(sm, KernelMode::Jvp, &[("X", &x), ("dX", &dx)], &out)).unwrap();
    run(&args(sm, KernelMode::Vjp, &[("X", &x), ("G", &g)], &out)).unwrap();
    assert_eq!(files_in(&out), ["S.npy", "dS.npy", "gX.npy"]);
    let s = read(&out.join("S.npy"));
    for row in s.data().chunks(5) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-15);
    }
    // The JVP of softmax is tangent to the simplex: each row of dS sums to 0.
    for row in read(&out.join("dS.npy")).data().chunks(5) {
        assert!(row.iter().sum::<f64>().abs() < 1e-15);
    }
}

fn err(a: &RunArgs) -> RunError {
    execute(a).unwrap_err()
}

fn failure(a: &RunArgs) -> Failure {
    run(a).unwrap_err()
}

#[test]
fn unknown_missing_and_duplicate_inputs_are_refused_with_exit_2() {
    let m = Matmul::new();
    let mut a = m.args(KernelMode::Forward, &["A", "B", "dA"]);
    let e = err(&a);
    assert!(matches!(e, RunError::UnknownInput { ref name, .. } if name == "dA"));
    assert_eq!(
        e.to_string(),
        "unknown input dA for matmul forward (it takes A, B)"
    );
    a = m.args(KernelMode::Jvp, &["A", "B", "dA"]);
    assert_eq!(
        err(&a).to_string(),
        "matmul jvp needs input dB: add --input dB=FILE.npy"
    );
    a = m.args(KernelMode::Forward, &["A", "B", "A"]);
    assert!(matches!(err(&a), RunError::DuplicateInput { ref name, .. } if name == "A"));
    assert_eq!(failure(&a).code, 2);
    assert!(!m.out().exists());
}

#[test]
fn input_spec_parses_name_equals_file() {
    let s: InputSpec = "dA=some/dir/x=y.npy".parse().unwrap();
    assert_eq!(
        (s.name.as_str(), s.path),
        ("dA", PathBuf::from("some/dir/x=y.npy"))
    );
    assert!("A".parse::<InputSpec>().is_err());
    assert!("=a.npy".parse::<InputSpec>().is_err());
}

#[test]
fn shape_disagreements_name_both_shapes() {
    let m = Matmul::new();
    let b = save(m.dir.path(), "B", &dyadic([2, 5, 4], 2));
    let e = err(&m.args(KernelMode::Forward, &["A", "B"]));
    assert_eq!(
        e.to_string(),
        format!(
            "B ({}) has shape 2×5×4 but A (2×3×4) needs B to be 2×4×p",
            b.display()
        )
    );
    let m = Matmul::new();
    save(m.dir.path(), "G", &dyadic([2, 3, 4], 2));
    let e = err(&m.args(KernelMode::Vjp, &["A", "B", "G"]));
    assert!(
        e.to_string()
            .ends_with("has shape 2×3×4 but A (2×3×4) and B (2×4×5) need G to be 2×3×5"),
        "{e}"
    );
    save(m.dir.path(), "dA", &dyadic([2, 4, 3], 2));
    let e = err(&m.args(KernelMode::Jvp, &["A", "B", "dA", "dB"]));
    assert!(
        e.to_string()
            .ends_with("but A (2×3×4) needs dA to be 2×3×4"),
        "{e}"
    );
    assert_eq!(
        failure(&m.args(KernelMode::Jvp, &["A", "B", "dA", "dB"])).code,
        2
    );
}

#[test]
fn zero_sizes_are_fine() {
    let dir = tempfile::tempdir().unwrap();
    let a = save(dir.path(), "A", &dyadic([2, 0, 3], 1));
    let b = save(dir.path(), "B", &dyadic([2, 3, 4], 1));
    let out = dir.path().join("out");
    run(&args(
        "matmul",
        KernelMode::Forward,
        &[("A", &a), ("B", &b)],
        &out,
    ))
    .unwrap();
    assert_eq!(read(&out.join("C.npy")).dims(), [2, 0, 4]);
}
