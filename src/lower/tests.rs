use super::*;
use crate::ir::parse_term;
use crate::ir::shape::parse_shape;
use egg::Symbol;

fn shapes(pairs: &[(&str, &str)]) -> ShapeEnv {
    pairs
        .iter()
        .map(|(k, v)| (Symbol::from(*k), parse_shape(v).unwrap()))
        .collect()
}

fn plan(term: &str, env: &[(&str, &str)]) -> Result<Plan, LowerError> {
    lower(&parse_term(term).unwrap(), &shapes(env))
}

#[test]
fn a_repeated_softmax_is_computed_once_in_one_pass() {
    let p = plan(
        "(* (softmax X) (- (tan X) (rowsum (* (softmax X) (tan X)))))",
        &[("X", "h,m,n")],
    )
    .unwrap();
    assert_eq!(p.steps.len(), 1);
    let Step::RowPass { program, .. } = &p.steps[0] else {
        panic!("one row pass")
    };
    let softmaxes = program
        .instrs
        .iter()
        .filter(|i| matches!(i, Instr::Softmax { .. }))
        .count();
    assert_eq!(softmaxes, 1);
}

#[test]
fn transposes_under_bmm_are_flags_with_parity() {
    let env = [("A", "h,n,m"), ("B", "h,n,p")];
    let p = plan("(bmm (T (T (T A))) B)", &env).unwrap();
    assert_eq!(p.steps.len(), 1);
    let Step::Gemm { a, b, .. } = p.steps[0] else {
        panic!("one gemm")
    };
    assert!(a.transposed && !b.transposed);
    assert_eq!(p.buffers[a.buf].name, "A");
}

#[test]
fn a_transpose_outside_bmm_is_a_copy_and_an_even_chain_is_nothing() {
    let env = [("A", "h,m,n")];
    let p = plan("(exp (T A))", &env).unwrap();
    assert!(matches!(p.steps[0], Step::Transpose { .. }));
    let p = plan("(exp (T (T A)))", &env).unwrap();
    assert_eq!(p.steps.len(), 1);
    assert!(matches!(p.steps[0], Step::RowPass { .. }));
}

#[test]
fn a_subterm_two_passes_need_gets_its_own_buffer() {
    let env = [("A", "h,m,m")];
    let p = plan("(bmm (exp A) (+ (exp A) A))", &env).unwrap();
    let temps = p.with_role(Role::Temp).count();
    assert_eq!(temps, 2, "{p}");
}

#[test]
fn gradient_slots_become_outputs_and_repeated_slots_are_summed() {
    let env = [("A", "h,m,n"), ("G", "h,m,n")];
    let p = plan("(g+ (grad A G) (grad A (* 2 G)))", &env).unwrap();
    let outs: Vec<&str> = p
        .with_role(Role::Output)
        .map(|(_, b)| b.name.as_str())
        .collect();
    assert_eq!(outs, ["gA"]);
    let p = plan("(grad A G)", &env).unwrap();
    assert_eq!(p.steps.len(), 1, "a copy of G: {p}");
}

#[test]
fn lowering_errors_are_typed() {
    let env = [("A", "h,m,n"), ("B", "h,p,n")];
    assert!(matches!(
        plan("(jvp (exp A))", &env),
        Err(LowerError::DerivativeOperator(_))
    ));
    assert!(matches!(plan("(bmm A B)", &env), Err(LowerError::Shape(_))));
    assert!(matches!(
        plan("3", &env),
        Err(LowerError::Unsupported { .. })
    ));
    let saved = [Saved {
        term: parse_term("(exp A)").unwrap(),
        name: "A".into(),
    }];
    let err = lower_with(&parse_term("(exp A)").unwrap(), &shapes(&env), &saved);
    assert!(matches!(err, Err(LowerError::NameClash(_))));
}

#[test]
fn the_plan_prints_and_serializes() {
    let p = plan("(bmm A (T B))", &[("A", "h,m,n"), ("B", "h,p,n")]).unwrap();
    let text = p.to_string();
    assert!(text.contains("out = gemm A · Bᵀ"), "{text}");
    let json = serde_json::to_string(&p).unwrap();
    assert!(json.contains("\"transposed\":true"), "{json}");
}

/// Whether each step is an accumulating GEMM.
fn accumulates(p: &Plan) -> Vec<bool> {
    p.steps
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
        .collect()
}

#[test]
fn a_sum_of_single_use_gemms_accumulates_into_one_buffer() {
    let env = [("A", "h,m,m"), ("B", "h,m,m"), ("C", "h,m,m")];
    let p = plan("(+ (+ (bmm A B) (bmm B C)) (bmm C (T A)))", &env).unwrap();
    assert_eq!(accumulates(&p), [false, true, true], "{p}");
    assert_eq!(p.buffers.len(), 4, "no temporaries: {p}");
    assert_eq!(p.check_writes(), Ok(()));
    // A repeated gradient slot is summed the same way.
    let p = plan("(g+ (grad A (bmm B C)) (grad A (bmm C B)))", &env).unwrap();
    assert_eq!(accumulates(&p), [false, true], "{p}");
}

#[test]
fn a_gemm_read_twice_or_summed_with_a_row_term_is_not_accumulated() {
    let env = [("A", "h,m,m"), ("B", "h,m,m")];
    let p = plan("(+ (bmm A B) (exp (bmm A B)))", &env).unwrap();
    assert_eq!(accumulates(&p), [false, false], "{p}");
    let p = plan("(+ (bmm A B) A)", &env).unwrap();
    assert_eq!(accumulates(&p), [false, false], "{p}");
}

#[test]
fn check_writes_rejects_a_second_write_and_an_accumulate_reading_its_output() {
    let env = [("A", "h,m,m"), ("B", "h,m,m")];
    let mut p = plan("(+ (bmm A B) (bmm B A))", &env).unwrap();
    let good = p.clone();
    let Step::Gemm { a, out, .. } = &mut p.steps[1] else {
        panic!("{good}")
    };
    a.buf = *out;
    assert!(p.check_writes().unwrap_err().contains("reads out"));
    let mut p = good.clone();
    let Step::Gemm { accumulate, .. } = &mut p.steps[1] else {
        panic!("{good}")
    };
    *accumulate = false;
    assert!(p.check_writes().unwrap_err().contains("a second time"));
}
