//! The generated kernels: fresh (regenerating gives the committed bytes), sensitive to
//! the rules, verified by the same rungs as the executed plans, and snapshotted.

use fderiv::derive::Limits;
use fderiv::emit::{self, EmitError, COMMITTED_DIR};
use fderiv::exec::{exec_f64, ExecError, Tensors};
use fderiv::kernels;
use fderiv::manifest::{KernelMode, Manifest};
use fderiv::rules::{RuleSet, Source, EMBEDDED};
use fderiv::rungs::{check_f64_exact, check_f64_same, RungConfig};
use fderiv::verify::{generated_rows, generated_run, shared_balls};
use std::path::{Path, PathBuf};
use std::process::Command;

fn committed() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED_DIR)
}

fn manifest() -> Manifest {
    Manifest::embedded().unwrap()
}

fn cfg() -> RungConfig {
    RungConfig {
        cases: 24,
        seed: 11,
        max_dim: 3,
    }
}

#[test]
fn the_committed_kernels_are_fresh() {
    let rules = RuleSet::embedded().unwrap();
    if let Err(e) = emit::check(&manifest(), &rules, Some(&committed())) {
        panic!("{e}");
    }
}

#[test]
fn changing_the_rules_makes_the_committed_kernels_stale() {
    let extra = "\n[[rule]]\nname = \"neg-neg-again\"\nlhs = \"(neg (neg ?x))\"\nrhs = \"?x\"\nlean = \"neg_neg\"\n";
    let files: Vec<(String, String)> = EMBEDDED
        .iter()
        .map(|(n, t)| {
            let text = if *n == "algebra.toml" {
                format!("{t}{extra}")
            } else {
                t.to_string()
            };
            (n.to_string(), text)
        })
        .collect();
    let changed = RuleSet::from_files(Source::Embedded, &files).unwrap();
    match emit::check(&manifest(), &changed, Some(&committed())) {
        Err(EmitError::Stale { stale, .. }) => {
            assert!(stale.contains(&"mod.rs".to_string()), "{stale:?}");
            assert!(
                stale.contains(&"softmax_last_vjp.rs".to_string()),
                "{stale:?}"
            );
        }
        other => panic!("expected stale files, got {other:?}"),
    }
}

#[test]
fn generated_kernels_pass_the_ladder() {
    let rules = RuleSet::embedded().unwrap();
    let (mut rows, mut skipped) = (Vec::new(), Vec::new());
    for def in &manifest().kernels {
        for mode in &def.modes {
            let built = def.build(*mode, &rules, &Limits::default()).unwrap();
            let balls = shared_balls(&built, &cfg()).unwrap();
            generated_rows(def, &built, &cfg(), &balls, &mut rows, &mut skipped).unwrap();
        }
    }
    // Bit-exact and bound rows for every kernel mode, except a forward computing
    // softmax (bound only), plus the enclosure row of the softmax forward: matmul 6,
    // softmax_last 2 + 2 + 2, three attention kernels 1 + 2 + 2 each; and the
    // executor's-bits row for each of the 15 modes.
    assert_eq!(rows.len(), 27 + 15, "rows: {rows:?}");
    for row in rows {
        assert!(
            row.holds(),
            "{} {} {}: {:?}",
            row.rung,
            row.op,
            row.mode,
            row.count.first_failure
        );
    }
}

#[test]
fn a_one_ulp_error_in_a_generated_kernel_is_rejected() {
    let rules = RuleSet::embedded().unwrap();
    let m = manifest();
    let def = m.kernel("softmax_last").unwrap();
    let plan = emit::lower_kernel(def, KernelMode::Vjp, &rules)
        .unwrap()
        .plan;
    let entry = kernels::KERNELS
        .iter()
        .find(|e| e.name == "softmax_last_vjp")
        .unwrap();
    let corrupted = |i: &Tensors<f64>| -> Result<Tensors<f64>, ExecError> {
        let mut out = generated_run(entry, i)?;
        for t in out.values_mut() {
            if let Some(first) = t.data().first().copied() {
                let mut data = t.data().to_vec();
                data[0] = f64::from_bits(first.to_bits() + 1);
                *t = fderiv::tensor::Tensor::new(t.dims(), data).unwrap();
            }
        }
        Ok(out)
    };
    let honest = check_f64_exact(&plan, &|i| generated_run(entry, i), &cfg()).unwrap();
    assert!(honest.holds());
    let count = check_f64_exact(&plan, &corrupted, &cfg()).unwrap();
    assert!(!count.holds(), "{count:?}");
    // The executor's-bits rung sees it too.
    let executor = |i: &Tensors<f64>| exec_f64(&plan, i);
    let same = check_f64_same(&plan, &|i| generated_run(entry, i), &executor, &cfg()).unwrap();
    assert!(same.holds(), "{same:?}");
    let count = check_f64_same(&plan, &corrupted, &executor, &cfg()).unwrap();
    let failure = count.first_failure.expect("a one-ulp change is seen");
    assert!(
        failure.contains("differs from the executor's bits"),
        "{failure}"
    );
}

#[test]
fn shapes_are_checked_not_panicked_on() {
    use kernels::runtime::{KernelError, Tensor3};
    let a = Tensor3::new([2, 3, 4], vec![1.0; 24]).unwrap();
    let b = Tensor3::new([2, 5, 6], vec![1.0; 60]).unwrap();
    let err = kernels::matmul_forward(&a, &b).unwrap_err();
    assert_eq!(
        err,
        KernelError::Shape {
            input: "B",
            dims: [2, 5, 6],
            dim: "n",
            expected: 4
        }
    );
    assert_eq!(
        err.to_string(),
        "B has shape 2×5×6 but n = 4 from an earlier input"
    );
    let mut out = vec![0.0; 5];
    let err =
        kernels::matmul_forward::matmul_forward_into(2, 3, 4, 6, &a.data, &[0.0; 48], &mut out);
    assert!(
        matches!(err, Err(KernelError::Length { buffer: "out", .. })),
        "{err:?}"
    );
    assert!(Tensor3::new([2, 2, 2], vec![0.0; 7]).is_err());
}

#[test]
fn zero_heads_give_an_empty_output_not_a_panic() {
    use kernels::runtime::Tensor3;
    // A GEMM with no heads but nonzero rows and columns (the band split once divided
    // by the head count).
    let a = Tensor3::new([0, 3, 4], vec![]).unwrap();
    let b = Tensor3::new([0, 4, 2], vec![]).unwrap();
    let out = kernels::matmul_forward(&a, &b).unwrap();
    assert_eq!(out.dims, [0, 3, 2]);
    assert!(out.data.is_empty());
}

#[test]
fn emit_writes_the_committed_bytes_and_never_clobbers_without_force() {
    let bin = env!("CARGO_BIN_EXE_fderiv");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kernels");
    let o = Command::new(bin)
        .args(["emit", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for entry in std::fs::read_dir(committed()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        assert_eq!(
            std::fs::read(out.join(name)).unwrap(),
            std::fs::read(&path).unwrap(),
            "{name:?}"
        );
    }
    let check = Command::new(bin)
        .args(["emit", "--check", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(check.status.success());
    let generated = std::fs::read_to_string(out.join("matmul_vjp.rs")).unwrap();
    let edited = generated.replace("Term:", "Term (edited):");
    std::fs::write(out.join("matmul_vjp.rs"), &edited).unwrap();
    let stale = Command::new(bin)
        .args(["emit", "--check", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(stale.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stale.stderr).contains("matmul_vjp.rs"));
    let refused = Command::new(bin)
        .args(["emit", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(
        std::fs::read_to_string(out.join("matmul_vjp.rs")).unwrap(),
        edited
    );
    let forced = Command::new(bin)
        .args(["emit", "--force", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(forced.status.success());
    assert_eq!(
        std::fs::read_to_string(out.join("matmul_vjp.rs")).unwrap(),
        generated
    );
    // A hand-written file of a kernel's name is never overwritten, even with --force.
    std::fs::write(out.join("matmul_vjp.rs"), "// mine\n").unwrap();
    let kept = Command::new(bin)
        .args(["emit", "--force", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(kept.status.code(), Some(2));
    let err = String::from_utf8_lossy(&kept.stderr);
    assert!(
        err.contains("hand-written") && err.contains("matmul_vjp.rs"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("matmul_vjp.rs")).unwrap(),
        "// mine\n"
    );
}

#[test]
fn emitted_source_snapshots() {
    let rules = RuleSet::embedded().unwrap();
    let folders = emit::generate(&manifest(), &rules, None).unwrap();
    for (name, text) in folders.into_iter().flat_map(|f| f.files) {
        if name == "runtime.rs" {
            continue;
        }
        insta::with_settings!({
            snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(format!("emitted_{}", name.trim_end_matches(".rs")), text);
        });
    }
}

#[test]
fn the_into_forms_match_the_allocating_forms_and_check_output_dims() {
    use fderiv::kernels::runtime::{Tensor3, Workspace};
    let mut ws = Workspace::default();
    for entry in kernels::KERNELS {
        // Named dims get small sizes; sizes stand for themselves; products multiply.
        let dim = |d: &str| -> usize {
            d.split('*')
                .map(|f| {
                    f.parse().unwrap_or(match f {
                        "h" => 2,
                        "m" => 3,
                        "n" => 4,
                        _ => 5,
                    })
                })
                .product()
        };
        let make = |ds: &[&str; 3], seed: usize| {
            let dims = ds.map(dim);
            let len = dims.iter().product();
            let data = (0..len)
                .map(|i| ((i * 37 + seed) % 11) as f64 / 8.0)
                .collect();
            Tensor3::new(dims, data).unwrap()
        };
        let ins: Vec<Tensor3> = entry
            .input_dims
            .iter()
            .enumerate()
            .map(|(i, d)| make(d, i))
            .collect();
        let refs: Vec<&Tensor3> = ins.iter().collect();
        let want = (entry.run)(&refs).unwrap();
        // Outputs full of garbage: every entry must be overwritten, twice in a row.
        let mut outs: Vec<Tensor3> = entry.output_dims.iter().map(|d| make(d, 99)).collect();
        for _ in 0..2 {
            (entry.run_into)(&refs, &mut outs, &mut ws).unwrap();
            assert_eq!(outs, want, "{}", entry.name);
        }
        let mut wrong: Vec<Tensor3> = entry
            .output_dims
            .iter()
            .map(|d| Tensor3::zeros("o", [d.map(dim)[0] + 1, 1, 1]).unwrap())
            .collect();
        assert!(
            (entry.run_into)(&refs, &mut wrong, &mut ws).is_err(),
            "{}",
            entry.name
        );
        assert!(
            (entry.run_into)(&refs[1..], &mut outs, &mut ws).is_err(),
            "{}",
            entry.name
        );
    }
}
