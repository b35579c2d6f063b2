//! Rungs (a)–(d) for both spec ops, forward, JVP and VJP, and their power to fail.

use fderiv::derive::{Mode, SpecOp};
use fderiv::exec::{exec_f64, ExecError, Tensors};
use fderiv::lower::{lower, Plan, Step};
use fderiv::rungs::bounded::check_f64_bound;
use fderiv::rungs::{
    check_f64_exact, check_plan_exact, kernel_term, rung_f64_bound, rung_f64_exact,
    rung_plan_exact, saved_plan, Kernel, RungConfig,
};
use fderiv::tensor::Tensor;

const CFG: RungConfig = RungConfig {
    cases: 16,
    seed: 7,
    max_dim: 3,
};

fn kernels() -> Vec<(SpecOp, Kernel)> {
    let mut v = Vec::new();
    for op in [SpecOp::Matmul, SpecOp::SoftmaxLast] {
        for k in [
            Kernel::Forward,
            Kernel::Derived(Mode::Jvp),
            Kernel::Derived(Mode::Vjp),
        ] {
            v.push((op, k));
        }
    }
    v
}

#[test]
fn plans_print() {
    for (op, k) in kernels() {
        let (e, shapes) = kernel_term(op, k).unwrap();
        println!("{op} {k:?}: {e}\n{}", lower(&e, &shapes).unwrap());
        println!("saved:\n{}", saved_plan(op, k).unwrap());
    }
}

#[test]
fn rung_a_plan_over_q_equals_the_expression_for_every_kernel() {
    for (op, k) in kernels() {
        let c = rung_plan_exact(op, k, &CFG).unwrap();
        assert!(c.holds(), "{op} {k:?}: {c:?}");
    }
}

#[test]
fn rung_b_f64_equals_q_on_dyadic_inputs() {
    for (op, k) in kernels() {
        if (op, k) == (SpecOp::SoftmaxLast, Kernel::Forward) {
            assert!(rung_f64_exact(op, k, &CFG).is_err());
            continue;
        }
        let c = rung_f64_exact(op, k, &CFG).unwrap();
        assert!(c.holds(), "{op} {k:?}: {c:?}");
    }
}

#[test]
fn rung_c_f64_within_the_bound() {
    for (op, k) in kernels() {
        if (op, k) == (SpecOp::SoftmaxLast, Kernel::Forward) {
            continue;
        }
        let c = rung_f64_bound(op, k, &CFG).unwrap();
        assert!(c.holds(), "{op} {k:?}: {c:?}");
        println!("{op} {k:?}: worst {:?}", c.worst);
    }
}

fn matmul_plan(mode: Mode) -> (fderiv::ir::Expr, fderiv::ir::shape::ShapeEnv, Plan) {
    let (e, shapes) = kernel_term(SpecOp::Matmul, Kernel::Derived(mode)).unwrap();
    let plan = lower(&e, &shapes).unwrap();
    (e, shapes, plan)
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
    let (_, _, plan) = matmul_plan(Mode::Jvp);
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
fn rung_a_rejects_a_plan_whose_accumulate_overwrites() {
    let (e, shapes, plan) = matmul_plan(Mode::Jvp);
    let c = check_plan_exact(&e, &shapes, &overwriting(&plan), &CFG).unwrap();
    assert!(c.passed < c.cases / 2, "{c:?}");
}

#[test]
fn rungs_b_and_c_reject_an_executor_whose_accumulate_overwrites() {
    let plan = saved_plan(SpecOp::Matmul, Kernel::Derived(Mode::Jvp)).unwrap();
    let bad = overwriting(&plan);
    let run = |i: &Tensors<f64>| exec_f64(&bad, i);
    let c = check_f64_exact(&plan, &run, &CFG).unwrap();
    assert!(c.passed < c.cases / 2, "{c:?}");
    let c = check_f64_bound(&plan, &run, &CFG).unwrap();
    assert!(c.passed < c.cases / 2, "{c:?}");
}

#[test]
fn an_accumulate_into_an_unwritten_buffer_is_malformed() {
    let (_, _, mut plan) = matmul_plan(Mode::Jvp);
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
    let (e, shapes, mut plan) = matmul_plan(Mode::Vjp);
    let Some(Step::Gemm { b, .. }) = plan.steps.first_mut() else {
        panic!("the VJP starts with a GEMM")
    };
    b.transposed = !b.transposed;
    let c = check_plan_exact(&e, &shapes, &plan, &CFG).unwrap();
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
    for (op, k) in [
        (SpecOp::Matmul, Kernel::Forward),
        (SpecOp::SoftmaxLast, Kernel::Derived(Mode::Vjp)),
    ] {
        let plan = saved_plan(op, k).unwrap();
        assert!(check_f64_exact(&plan, &|i| exec_f64(&plan, i), &CFG)
            .unwrap()
            .holds());
        let c = check_f64_exact(&plan, &nudged(&plan, 1), &CFG).unwrap();
        assert!(c.passed < c.cases / 2, "{op} {k:?}: {c:?}");
    }
}

#[test]
fn rung_c_rejects_an_error_beyond_the_bound() {
    // The rigorous bound is at least half an ulp wide by construction, so a one-ulp
    // nudge may stay inside it; 2^20 ulps (a relative error near 1e-10) may not.
    let plan = saved_plan(SpecOp::SoftmaxLast, Kernel::Derived(Mode::Jvp)).unwrap();
    let c = check_f64_bound(&plan, &nudged(&plan, 1 << 20), &CFG).unwrap();
    assert!(c.passed < c.cases / 2, "{c:?}");
}

#[test]
fn rung_d_softmax_forward_in_its_enclosure() {
    let c = fderiv::rungs::rung_softmax_enclosure(&CFG).unwrap();
    assert!(c.holds(), "{c:?}");
}

mod exact_on_random_shapes {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    type Lowered = (fderiv::ir::Expr, fderiv::ir::shape::ShapeEnv, Plan);

    fn lowered() -> &'static Vec<Lowered> {
        static KERNELS: OnceLock<Vec<Lowered>> = OnceLock::new();
        KERNELS.get_or_init(|| {
            kernels()
                .into_iter()
                .map(|(op, k)| {
                    let (e, s) = kernel_term(op, k).unwrap();
                    let p = lower(&e, &s).unwrap();
                    (e, s, p)
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn plan_over_q_equals_expression(seed in any::<u64>(), max_dim in 0usize..4, which in 0usize..6) {
            let (e, s, p) = &lowered()[which];
            let cfg = RungConfig { cases: 2, seed, max_dim };
            let c = check_plan_exact(e, s, p, &cfg).unwrap();
            prop_assert!(c.holds(), "{:?}", c);
        }
    }
}
