//! Runtime scalar parameters (`@c`): typed as numbers, never differentiated, bound at
//! run time; derived = dual-number JVP / adjoint by probing over ℚ, lowered to a
//! `Param` buffer, plan over ℚ = expression over ℚ, and a plan that ignores the
//! parameter is rejected.

mod common;

use common::{check_derived, shapes};
use fderiv::derive::Mode;
use fderiv::exec::{exec_f64, Tensors};
use fderiv::ir::parse_term;
use fderiv::ir::shape::{infer_term, Ty};
use fderiv::lower::{lower, Arg, Role, Step};
use fderiv::rungs::{check_plan_exact, RungConfig};
use fderiv::tensor::Tensor;

#[test]
fn a_parameter_is_a_number_and_an_unbound_one_is_an_error() {
    let s = shapes(&[("X", "h,m,n")]);
    let ty = infer_term(&parse_term("(* @c X)").unwrap(), &s).unwrap();
    assert_eq!(ty.to_string(), "h×m×n");
    assert_eq!(
        infer_term(&parse_term("(* @c @c)").unwrap(), &s).unwrap(),
        Ty::Scalar
    );
    // A parameter is a number, not a tensor: bmm refuses it.
    assert!(infer_term(&parse_term("(bmm @c X)").unwrap(), &s).is_err());
}

#[test]
fn scaled_terms_derive_through_the_rules_and_match_the_semantics() {
    let s = shapes(&[("Q", "h,m,d"), ("K", "h,n,d"), ("X", "h,m,n")]);
    for term in ["(* X @c)", "(exp (* @c X))", "(bmm (* @c Q) (T K))"] {
        for mode in [Mode::Jvp, Mode::Vjp] {
            let d = check_derived(term, &s, mode, 6);
            assert!(!d.result.to_string().contains("tan @"), "{}", d.result);
        }
    }
}

#[test]
fn a_parameter_lowers_to_a_param_buffer_and_the_plan_matches_the_expression() {
    let s = shapes(&[("X", "h,m,n")]);
    let e = parse_term("(exp (* @c X))").unwrap();
    let plan = lower(&e, &s).unwrap();
    let (_, c) = plan.with_role(Role::Param).next().expect("a param buffer");
    assert_eq!(c.name, "c");
    assert!(plan.to_string().contains("@c"), "{plan}");
    let cfg = RungConfig {
        cases: 16,
        seed: 7,
        max_dim: 3,
    };
    let count = check_plan_exact(&e, &s, &plan, &[], &cfg).unwrap();
    assert!(count.first_failure.is_none(), "{:?}", count.first_failure);
    // f64: c = 2 doubles.
    let x = Tensor::new([1, 1, 2], vec![0.0, 0.5]).unwrap();
    let c = Tensor::new([1, 1, 1], vec![2.0]).unwrap();
    let ins: Tensors<f64> = [("X".to_string(), x.clone()), ("c".to_string(), c)].into();
    let out = exec_f64(&plan, &ins).unwrap();
    assert_eq!(out["out"].data(), &[1.0, 1f64.exp()]);
    // Without c, or with c of the wrong shape: errors naming it.
    let err = exec_f64(&plan, &[("X".to_string(), x.clone())].into()).unwrap_err();
    assert_eq!(err.to_string(), "input c is missing");
    let wide = Tensor::new([1, 1, 2], vec![2.0, 2.0]).unwrap();
    let ins: Tensors<f64> = [("X".to_string(), x), ("c".to_string(), wide)].into();
    assert!(exec_f64(&plan, &ins)
        .unwrap_err()
        .to_string()
        .contains("input c"));
}

#[test]
fn a_plan_that_reads_a_number_instead_of_the_parameter_is_rejected() {
    let s = shapes(&[("X", "h,m,n")]);
    let e = parse_term("(* @c X)").unwrap();
    let mut plan = lower(&e, &s).unwrap();
    for step in &mut plan.steps {
        if let Step::RowPass { program, .. } = step {
            for ins in &mut program.instrs {
                if let fderiv::lower::Instr::Binary { a, b, .. } = ins {
                    for arg in [a, b] {
                        if matches!(arg, Arg::Param(_)) {
                            *arg = Arg::Num("1".parse().unwrap());
                        }
                    }
                }
            }
        }
    }
    let cfg = RungConfig {
        cases: 16,
        seed: 7,
        max_dim: 3,
    };
    let count = check_plan_exact(&e, &s, &plan, &[], &cfg).unwrap();
    assert!(count.first_failure.is_some());
}

#[test]
fn a_parameter_named_like_an_input_is_a_clash() {
    let s = shapes(&[("c", "h,m,n")]);
    let err = lower(&parse_term("(* @c c)").unwrap(), &s).unwrap_err();
    assert_eq!(
        err.to_string(),
        "saved buffer c clashes with an input or output of the same name"
    );
}
