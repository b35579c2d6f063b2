//! Rungs (a)–(d) for every kernel of the crate's manifest (forward, JVP and VJP),
//! and their power to fail, including on the lowering bugs only terms outside the
//! manifest expose (double transposes, repeated gradient slots, transpose copies).

use fderiv::derive::Limits;
use fderiv::exec::{exec_f64, ExecError, Tensors};
use fderiv::ir::parse_term;
use fderiv::ir::shape::{parse_shape, ShapeEnv};
use fderiv::lower::{lower, Arg, Plan, RowProgram, Step};
use fderiv::manifest::{Built, KernelMode, Manifest};
use fderiv::rules::RuleSet;
use fderiv::rungs::bounded::check_f64_bound;
use fderiv::rungs::{
    check_f64_exact, check_plan_exact, rung_f64_bound, rung_f64_exact, rung_plan_exact, RungConfig,
};
use fderiv::tensor::Tensor;

const CFG: RungConfig = RungConfig {
    cases: 16,
    seed: 7,
    max_dim: 3,
};

fn built(kernel: &str, mode: KernelMode) -> Built {
    let rules = RuleSet::embedded().unwrap();
    let manifest = Manifest::embedded().unwrap();
    manifest
        .kernel(kernel)
        .unwrap()
        .build(mode, &rules, &Limits::default())
        .unwrap()
}

fn kernels() -> Vec<Built> {
    let mut v = Vec::new();
    for k in ["matmul", "softmax_last"] {
        for m in KernelMode::ALL {
            v.push(built(k, m));
        }
    }
    v
}

fn saved(kernel: &str) -> Vec<fderiv::lower::Saved> {
    Manifest::embedded()
        .unwrap()
        .kernel(kernel)
        .unwrap()
        .save
        .clone()
}

#[test]
fn plans_print() {
    for b in kernels() {
        println!("{} {}: {}\n{}", b.kernel, b.mode, b.term, b.full_plan);
        println!("as run:\n{}", b.plan);
    }
}

#[test]
fn rung_a_plan_over_q_equals_the_expression_for_every_kernel() {
    for b in kernels() {
        let c = rung_plan_exact(&b, &saved(&b.kernel), &CFG).unwrap();
        assert!(c.holds(), "{} {}: {c:?}", b.kernel, b.mode);
    }
}

#[test]
fn rung_b_f64_equals_q_on_dyadic_inputs() {
    for b in kernels() {
        if (b.kernel.as_str(), b.mode) == ("softmax_last", KernelMode::Forward) {
            assert!(rung_f64_exact(&b, &CFG).is_err());
            continue;
        }
        let c = rung_f64_exact(&b, &CFG).unwrap();
        assert!(c.holds(), "{} {}: {c:?}", b.kernel, b.mode);
    }
}

#[test]
fn rung_c_f64_within_the_bound() {
    for b in kernels() {
        let c = rung_f64_bound(&b, &CFG).unwrap();
        assert!(c.holds(), "{} {}: {c:?}", b.kernel, b.mode);
        println!("{} {}: worst {:?}", b.kernel, b.mode, c.worst);
    }
}

fn matmul_plan(mode: KernelMode) -> (fderiv::ir::Expr, ShapeEnv, Plan) {
    let b = built("matmul", mode);
    (b.term, b.shapes, b.full_plan)
}

/// The matmul JVP plan with its accumulating GEMM corrupted to overwrite (β = 0).
fn overwriting(plan: &Plan) -> Plan {
    let mut bad = plan.clone();
    let Some(Step::Gemm { accumulate, .. }) = bad.steps.last_mut() else {
        panic!("the JVP ends with a GEMM accumulating into the first")
    };
    assert!(*accumulate, "{plan}");
    *accumulate = false;
    bad
}

#[test]
fn the_matmul_jvp_is_two_gemms_into_its_output_with_no_temporaries() {
    let (_, _, plan) = matmul_plan(KernelMode::Jvp);
    assert_eq!(plan.buffers.len(), 5, "{plan}");
    let acc: Vec<bool> = plan
        .steps
        .iter()
        .map(|s| {
            matches!(
                s,
                Step::Gemm {
                    accumulate: true,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(acc, [false, true], "{plan}");
    assert!(plan.to_string().contains("out += gemm"), "{plan}");
}

#[test]
fn rung_a_rejects_a_plan_with_a_dropped_term() {
    let (e, shapes, mut plan) = matmul_plan(KernelMode::Jvp);
    let Some(Step::Gemm {
        accumulate: true, ..
    }) = plan.steps.pop()
    else {
        panic!("the JVP ends with the GEMM adding its second term")
    };
    let c = check_plan_exact(&e, &shapes, &plan, &[], &CFG).unwrap();
    assert!(c.passed < c.cases / 2, "{c:?}");
}

#[test]
fn rung_a_rejects_a_plan_whose_accumulate_overwrites() {
    let (e, shapes, plan) = matmul_plan(KernelMode::Jvp);
    let c = check_plan_exact(&e, &shapes, &overwriting(&plan), &[], &CFG).unwrap();
    assert!(c.passed < c.cases / 2, "{c:?}");
}

#[test]
fn rungs_b_and_c_reject_an_executor_whose_accumulate_overwrites() {
    let plan = built("matmul", KernelMode::Jvp).plan;
    let bad = overwriting(&plan);
    let run = |i: &Tensors<f64>| exec_f64(&bad, i);
    let c = check_f64_exact(&plan, &run, &CFG).unwrap();
    assert!(c.passed < c.cases / 2, "{c:?}");
    let c = check_f64_bound(&plan, &run, &CFG).unwrap();
    assert!(c.passed < c.cases / 2, "{c:?}");
}

#[test]
fn an_accumulate_into_an_unwritten_buffer_is_malformed() {
    let (_, _, mut plan) = matmul_plan(KernelMode::Jvp);
    plan.steps.remove(0);
    let err = plan.check_writes().unwrap_err();
    assert!(err.contains("no earlier GEMM wrote"), "{err}");
    let ins = fderiv::rungs::random_inputs(
        &plan,
        &mut rand_chacha::rand_core::SeedableRng::seed_from_u64(1),
        2,
        true,
        |_| 1.0,
    )
    .unwrap();
    assert!(matches!(
        exec_f64(&plan, &ins),
        Err(ExecError::Malformed(_))
    ));
}

#[test]
fn rung_a_rejects_a_flipped_transpose_flag() {
    let (e, shapes, mut plan) = matmul_plan(KernelMode::Vjp);
    let Some(Step::Gemm { b, .. }) = plan.steps.first_mut() else {
        panic!("the VJP starts with a GEMM")
    };
    b.transposed = !b.transposed;
    let c = check_plan_exact(&e, &shapes, &plan, &[], &CFG).unwrap();
    assert!(c.passed < c.cases / 2, "{c:?}");
}

/// The f64 run with its first nonempty output's entry 0 moved by `ulps` units in the
/// last place.
fn nudged(
    plan: &Plan,
    ulps: u64,
) -> impl Fn(&Tensors<f64>) -> Result<Tensors<f64>, ExecError> + '_ {
    move |i| {
        let out = exec_f64(plan, i)?;
        Ok(out
            .into_iter()
            .map(|(k, t)| {
                let dims = t.dims();
                let mut data = t.into_data();
                if let Some(x) = data.first_mut() {
                    *x = f64::from_bits(x.to_bits() + ulps);
                }
                (k, Tensor::new(dims, data).unwrap())
            })
            .collect())
    }
}

#[test]
fn rung_b_rejects_one_ulp() {
    for (kernel, mode) in [
        ("matmul", KernelMode::Forward),
        ("softmax_last", KernelMode::Vjp),
    ] {
        let plan = built(kernel, mode).plan;
        assert!(check_f64_exact(&plan, &|i| exec_f64(&plan, i), &CFG)
            .unwrap()
            .holds());
        let c = check_f64_exact(&plan, &nudged(&plan, 1), &CFG).unwrap();
        assert!(c.passed < c.cases / 2, "{kernel} {mode}: {c:?}");
    }
}

#[test]
fn rung_c_rejects_an_error_beyond_the_bound() {
    // The rigorous bound is at least half an ulp wide by construction, so a one-ulp
    // nudge may stay inside it; 2^20 ulps (a relative error near 1e-10) may not.
    let plan = built("softmax_last", KernelMode::Jvp).plan;
    let c = check_f64_bound(&plan, &nudged(&plan, 1 << 20), &CFG).unwrap();
    assert!(c.passed < c.cases / 2, "{c:?}");
}

#[test]
fn rung_d_softmax_forward_in_its_enclosure() {
    let b = built("softmax_last", KernelMode::Forward);
    let c = fderiv::rungs::rung_softmax_enclosure(&b, &CFG).unwrap();
    assert!(c.holds(), "{c:?}");
}

mod exact_on_random_shapes {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    type Lowered = (fderiv::ir::Expr, ShapeEnv, Plan);

    fn lowered() -> &'static Vec<Lowered> {
        static KERNELS: OnceLock<Vec<Lowered>> = OnceLock::new();
        KERNELS.get_or_init(|| {
            kernels()
                .into_iter()
                .map(|b| (b.term, b.shapes, b.full_plan))
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn plan_over_q_equals_expression(seed in any::<u64>(), max_dim in 0usize..4, which in 0usize..6) {
            let (e, s, p) = &lowered()[which];
            let cfg = RungConfig { cases: 2, seed, max_dim };
            let c = check_plan_exact(e, s, p, &[], &cfg).unwrap();
            prop_assert!(c.holds(), "{:?}", c);
        }
    }
}

/// A term over square h×n×n inputs, derived in `mode` (or forward), and lowered.
fn square(term: &str, mode: KernelMode) -> (fderiv::ir::Expr, ShapeEnv, Plan) {
    let shapes: ShapeEnv = ["A", "B"]
        .iter()
        .map(|n| (egg::Symbol::from(*n), parse_shape("h,n,n").unwrap()))
        .collect();
    let (e, shapes) = match mode.derivative() {
        None => (parse_term(term).unwrap(), shapes),
        Some(m) => {
            let req = fderiv::derive::Request::new(term, shapes, None, m).unwrap();
            let rules = RuleSet::embedded().unwrap();
            let d = fderiv::derive::derive_unchecked(&req, &rules, &Limits::default()).unwrap();
            (d.result, d.request.shapes)
        }
    };
    let plan = lower(&e, &shapes).unwrap();
    (e, shapes, plan)
}

fn rejects(e: &fderiv::ir::Expr, shapes: &ShapeEnv, honest: &Plan, corrupt: &Plan) {
    let cfg = RungConfig {
        cases: 24,
        seed: 3,
        max_dim: 3,
    };
    assert!(check_plan_exact(e, shapes, honest, &[], &cfg)
        .unwrap()
        .holds());
    let c = check_plan_exact(e, shapes, corrupt, &[], &cfg).unwrap();
    assert!(!c.holds(), "the corrupted plan passed: {c:?}\n{corrupt}");
}

#[test]
fn rung_a_rejects_a_double_transpose_read_as_a_single_one() {
    let (e, shapes, plan) = square("(bmm (T (T A)) B)", KernelMode::Forward);
    let mut corrupt = plan.clone();
    let Some(Step::Gemm { a, .. }) = corrupt.steps.first_mut() else {
        panic!("a GEMM: {plan}")
    };
    assert!(!a.transposed, "an even chain is no transpose");
    a.transposed = true;
    rejects(&e, &shapes, &plan, &corrupt);
}

#[test]
fn rung_a_rejects_keeping_only_the_last_contribution_to_a_repeated_slot() {
    // d(A·A)ᵀ[G] puts two contributions in A's slot: G·Aᵀ + Aᵀ·G.
    let (e, shapes, plan) = square("(bmm A A)", KernelMode::Vjp);
    let mut corrupt = plan.clone();
    // The slot's two GEMMs: the first writes gA, the second adds into it (β = 1).
    // Keep only the second, overwriting.
    let Some(Step::Gemm { accumulate, .. }) = corrupt.steps.last_mut() else {
        panic!("the VJP ends with a GEMM: {plan}")
    };
    let summed = std::mem::replace(accumulate, false).then_some(());
    corrupt.steps.remove(corrupt.steps.len() - 2);
    assert!(summed.is_some(), "the slot's two GEMMs are summed: {plan}");
    rejects(&e, &shapes, &plan, &corrupt);
}

#[test]
fn rung_a_rejects_a_transpose_copy_that_does_not_transpose() {
    let (e, shapes, plan) = square("(+ (T A) B)", KernelMode::Forward);
    let mut corrupt = plan.clone();
    let step = corrupt
        .steps
        .iter_mut()
        .find(|s| matches!(s, Step::Transpose { .. }))
        .expect("a transpose copy");
    if let Step::Transpose { x, out } = *step {
        *step = Step::RowPass {
            out,
            program: RowProgram {
                instrs: Vec::new(),
                result: Arg::Buf(x),
                row_regs: 0,
                scalar_regs: 0,
            },
        };
    }
    rejects(&e, &shapes, &plan, &corrupt);
}
