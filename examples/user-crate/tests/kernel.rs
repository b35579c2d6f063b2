//! A user's tests of their own kernel with fderiv as a library: the derivation is
//! snapshotted (term, trace, plan), the generated source is fresh, and the compiled
//! generated kernels pass fderiv's exact rungs.

use fderiv::derive::Limits;
use fderiv::exec::{ExecError, Tensors};
use fderiv::manifest::{Built, KernelMode, Manifest};
use fderiv::rules::RuleSet;
use fderiv::rungs::bounded::check_f64_bound;
use fderiv::rungs::{check_f64_exact, RungConfig};
use fderiv::tensor::Tensor;
use fderiv_user_example::kernels::{runtime::Tensor3, Entry, KERNELS};
use std::path::Path;

fn manifest() -> Manifest {
    Manifest::from_path(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fderiv.toml")).unwrap()
}

/// egg's default limits without the time limit, so that the iteration limit alone
/// decides where a phase stops and the snapshots do not depend on the machine.
fn limits() -> Limits {
    Limits {
        time: std::time::Duration::from_secs(3600),
        ..Limits::default()
    }
}

fn built(mode: KernelMode) -> Built {
    let rules = RuleSet::embedded().unwrap();
    manifest()
        .kernel("attn_head")
        .unwrap()
        .build(mode, &rules, &limits())
        .unwrap()
}

#[test]
fn the_derived_vjp_its_trace_and_its_plan_are_as_reviewed() {
    let vjp = built(KernelMode::Vjp);
    let rules = RuleSet::embedded().unwrap();
    let d = vjp.derivation.as_ref().unwrap();
    insta::assert_snapshot!("attn_head_vjp", d.result.to_string());
    insta::assert_snapshot!(
        "attn_head_vjp_trace",
        fderiv::trace::trace(d, &rules).to_text()
    );
    insta::assert_snapshot!("attn_head_vjp_plan", vjp.plan.to_string());
}

#[test]
fn the_committed_generated_source_is_fresh() {
    let rules = RuleSet::embedded().unwrap();
    let n = fderiv::emit::check(&manifest(), &rules, None).unwrap();
    assert_eq!(n, 5, "mod.rs, runtime.rs and three kernels");
}

/// The compiled generated kernel `entry` as an f64 run over named tensors.
fn run(entry: &Entry, inputs: &Tensors<f64>) -> Result<Tensors<f64>, ExecError> {
    let given: Vec<Tensor3> = entry
        .inputs
        .iter()
        .map(|name| {
            let t = inputs
                .get(*name)
                .ok_or_else(|| ExecError::Missing(name.to_string()))?;
            Ok(Tensor3 {
                dims: t.dims(),
                data: t.data().to_vec(),
            })
        })
        .collect::<Result<_, ExecError>>()?;
    let refs: Vec<&Tensor3> = given.iter().collect();
    let outs = (entry.run)(&refs).map_err(|e| ExecError::Kernel(e.to_string()))?;
    entry
        .outputs
        .iter()
        .zip(outs)
        .map(|(name, t)| Ok((name.to_string(), Tensor::new(t.dims, t.into_data())?)))
        .collect()
}

fn entry(name: &str) -> &'static Entry {
    KERNELS.iter().find(|e| e.name == name).unwrap()
}

const CFG: RungConfig = RungConfig {
    cases: 24,
    seed: 5,
    max_dim: 3,
};

#[test]
fn the_generated_backward_passes_pass_the_exact_rungs() {
    for (mode, name) in [
        (KernelMode::Jvp, "attn_head_jvp"),
        (KernelMode::Vjp, "attn_head_vjp"),
    ] {
        let plan = built(mode).plan;
        let e = entry(name);
        let exact = check_f64_exact(&plan, &|i| run(e, i), &CFG).unwrap();
        assert!(exact.holds(), "{name}: {exact:?}");
        let bound = check_f64_bound(&plan, &|i| run(e, i), &CFG).unwrap();
        assert!(bound.holds(), "{name}: {bound:?}");
    }
}

/// The forward computes exp, so it has no bit-for-bit rung; its rigorous error bound
/// (ball arithmetic through the softmax) holds.
#[test]
fn the_generated_forward_is_within_its_rigorous_bound() {
    let plan = built(KernelMode::Forward).plan;
    let e = entry("attn_head_forward");
    let bound = check_f64_bound(&plan, &|i| run(e, i), &CFG).unwrap();
    assert!(bound.holds() && bound.cases > 0, "{bound:?}");
}

#[test]
fn a_one_ulp_error_in_the_generated_vjp_is_rejected() {
    let plan = built(KernelMode::Vjp).plan;
    let e = entry("attn_head_vjp");
    let nudged = |i: &Tensors<f64>| -> Result<Tensors<f64>, ExecError> {
        let mut out = run(e, i)?;
        for t in out.values_mut() {
            let mut data = t.data().to_vec();
            if let Some(x) = data.first_mut() {
                *x = f64::from_bits(x.to_bits() + 1);
            }
            *t = Tensor::new(t.dims(), data)?;
        }
        Ok(out)
    };
    let c = check_f64_exact(&plan, &nudged, &CFG).unwrap();
    assert!(!c.holds(), "{c:?}");
}
