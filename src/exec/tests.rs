use super::*;
use crate::ir::parse_term;
use crate::ir::shape::parse_shape;
use crate::lower::lower;
use egg::Symbol;

fn softmax_plan() -> Plan {
    let shapes = [(Symbol::from("X"), parse_shape("h,m,n").unwrap())].into();
    lower(&parse_term("(softmax X)").unwrap(), &shapes).unwrap()
}

fn run_softmax(row: &[f64]) -> Vec<f64> {
    let x = Tensor::new([1, 1, row.len()], row.to_vec()).unwrap();
    let out = exec_f64(&softmax_plan(), &[("X".to_string(), x)].into()).unwrap();
    out["out"].data().to_vec()
}

#[test]
fn softmax_of_huge_logits_is_right_and_an_all_minus_inf_row_is_nan() {
    assert_eq!(run_softmax(&[1e300, 0.0, -1e300]), [1.0, 0.0, 0.0]);
    assert_eq!(run_softmax(&[1e300, 1e300]), [0.5, 0.5]);
    assert!(run_softmax(&[f64::NEG_INFINITY; 3])
        .iter()
        .all(|v| v.is_nan()));
    assert!(run_softmax(&[1.0, f64::NAN]).iter().all(|v| v.is_nan()));
}

#[test]
fn input_shapes_are_checked_and_errors_name_both_shapes() {
    let shapes = [
        (Symbol::from("A"), parse_shape("h,m,n").unwrap()),
        (Symbol::from("B"), parse_shape("h,n,p").unwrap()),
    ]
    .into();
    let plan = lower(&parse_term("(bmm A B)").unwrap(), &shapes).unwrap();
    let t = |d| Tensor::filled(d, 1.0).unwrap();
    let inputs: Tensors<f64> = [("A".into(), t([2, 3, 4])), ("B".into(), t([2, 5, 6]))].into();
    let err = exec_f64(&plan, &inputs).unwrap_err();
    assert_eq!(
        err.to_string(),
        "input B: the plan expects h×n×p (= 2×4×p), found 2×5×6"
    );
    let missing: Tensors<f64> = [("A".into(), t([2, 3, 4]))].into();
    assert_eq!(
        exec_f64(&plan, &missing).unwrap_err(),
        ExecError::Missing("B".into())
    );
    let ok: Tensors<f64> = [("A".into(), t([2, 3, 4])), ("B".into(), t([2, 4, 0]))].into();
    assert_eq!(exec_f64(&plan, &ok).unwrap()["out"].dims(), [2, 3, 0]);
}

#[test]
fn exact_division_by_zero_is_an_error_and_f64_gives_inf() {
    let shapes = [(Symbol::from("A"), parse_shape("1,1,1").unwrap())].into();
    let plan = lower(&parse_term("(inv A)").unwrap(), &shapes).unwrap();
    fn zero<S: crate::scalar::Scalar>() -> Tensors<S> {
        [(
            "A".to_string(),
            Tensor::filled([1, 1, 1], S::zero()).unwrap(),
        )]
        .into()
    }
    assert_eq!(
        exec_f64(&plan, &zero()).unwrap()["out"].data(),
        [f64::INFINITY]
    );
    let q: Tensors<crate::scalar::Rational> = zero();
    assert!(exec_exact(&plan, &q, &ExpOracle::None).is_err());
}

#[test]
fn product_dims_bind_their_last_factor_and_reject_a_size_that_does_not_divide() {
    let shapes = [
        (Symbol::from("X"), parse_shape("1,n,h*d").unwrap()),
        (Symbol::from("W"), parse_shape("1,h*d,h").unwrap()),
    ]
    .into();
    let plan = lower(&parse_term("(bmm X W)").unwrap(), &shapes).unwrap();
    let t = |d| Tensor::filled(d, 1.0).unwrap();
    // h = 2 from W's last axis, then d = 6 / 2 = 3 from X.
    let ok: Tensors<f64> = [("X".into(), t([1, 4, 6])), ("W".into(), t([1, 6, 2]))].into();
    assert_eq!(bind(&plan, &ok).unwrap()[2], [1, 4, 2]);
    assert_eq!(exec_f64(&plan, &ok).unwrap()["out"].data(), &[6.0; 8]);
    let bad: Tensors<f64> = [("X".into(), t([1, 4, 7])), ("W".into(), t([1, 7, 2]))].into();
    let err = exec_f64(&plan, &bad).unwrap_err();
    assert!(matches!(err, ExecError::Shape { .. }), "{err}");
    assert!(err.to_string().contains("h*d"), "{err}");
    // Only products over two unknown names: undetermined.
    let only: BTreeMap<Symbol, _> = [(Symbol::from("X"), parse_shape("1,n,h*d").unwrap())].into();
    let plan = lower(&parse_term("(exp X)").unwrap(), &only).unwrap();
    let err = exec_f64(&plan, &[("X".into(), t([1, 2, 6]))].into()).unwrap_err();
    assert!(matches!(err, ExecError::Unbound(d) if d == "h*d"));
}

#[test]
fn the_f64_gemm_is_the_runtimes_and_refuses_a_short_buffer() {
    use crate::scalar::Rational;
    use kernels::{ExecScalar, GemmShape};
    // op(A) = Aᵀ (stored 2×3×2), B 2×3×2: the runtime's GEMM with its transpose flag,
    // against the generic (exact-order) GEMM of the same trait.
    let s = GemmShape::new([2, 3, 2], true, [2, 3, 2], false);
    let a: Vec<f64> = (0..12).map(|i| i as f64 - 5.0).collect();
    let b: Vec<f64> = (0..12).map(|i| (i * 7 % 5) as f64).collect();
    let mut fast = vec![f64::NAN; 8];
    <f64 as ExecScalar>::gemm(&s, &a, &b, &mut fast, false).unwrap();
    let mut plain = vec![0.0; 8];
    for h in 0..2 {
        for i in 0..2 {
            for j in 0..2 {
                plain[h * 4 + i * 2 + j] = (0..3)
                    .map(|l| a[h * 6 + l * 2 + i] * b[h * 6 + l * 2 + j])
                    .sum();
            }
        }
    }
    assert_eq!(
        fast, plain,
        "small integers: every order gives the same sums"
    );
    let err = <f64 as ExecScalar>::gemm(&s, &a[..11], &b, &mut fast, false).unwrap_err();
    assert!(err.to_string().contains("gemm left operand"), "{err}");
    // The exact GEMM checks the same lengths (an error, not an index panic).
    let q = |xs: &[f64]| -> Vec<Rational> {
        xs.iter()
            .map(|x| Rational::from_float(*x).unwrap())
            .collect()
    };
    let mut out = vec![Rational::from_integer(0.into()); 8];
    <Rational as ExecScalar>::gemm(&s, &q(&a), &q(&b), &mut out, false).unwrap();
    assert_eq!(out, q(&plain));
    let err =
        <Rational as ExecScalar>::gemm(&s, &q(&a), &q(&b[..11]), &mut out, false).unwrap_err();
    assert!(err.to_string().contains("gemm right operand"), "{err}");
}
