//! Head split and merge: shape rules and their errors, plan over ℚ = expression over ℚ
//! for terms that split and merge, and a plan whose split is replaced by the Lean cast
//! rejected.

mod common;

use common::{check_derived, shapes};
use fderiv::derive::Mode;
use fderiv::ir::layout::Layout;
use fderiv::ir::parse_term;
use fderiv::ir::shape::infer_term;
use fderiv::lower::{lower, Step};
use fderiv::rungs::{check_plan_exact, RungConfig};

fn ty(term: &str, pairs: &[(&str, &str)]) -> Result<String, String> {
    infer_term(&parse_term(term).unwrap(), &shapes(pairs))
        .map(|t| t.to_string())
        .map_err(|e| e.to_string())
}

#[test]
fn shape_rules_carry_the_head_count_and_name_the_shape_that_does_not_fit() {
    let x = [("X", "1,n,2*d")];
    assert_eq!(ty("(split 2 X)", &x).unwrap(), "2×n×d");
    assert_eq!(ty("(reshape 2 X)", &x).unwrap(), "2×n×d");
    assert_eq!(ty("(unflat 2 X)", &x).unwrap(), "n×2×d");
    assert_eq!(ty("(merge 2 (split 2 X))", &x).unwrap(), "1×n×2*d");
    assert_eq!(ty("(flat 2 (swap (reshape 2 X)))", &x).unwrap(), "1×n×2*d");
    assert_eq!(ty("(split 3 X)", &[("X", "1,n,6")]).unwrap(), "3×n×2");
    assert_eq!(
        ty("(split 2 X)", &[("X", "1,n,h*d")]).unwrap_err(),
        "split (k = 2): expected 1×n×(k·d), found 1×n×h*d"
    );
    assert_eq!(
        ty("(split 2 X)", &[("X", "1,n,5")]).unwrap_err(),
        "split (k = 2): expected 1×n×(k·d), found 1×n×5"
    );
    assert_eq!(
        ty("(split 2 X)", &[("X", "2,n,4")]).unwrap_err(),
        "split (k = 2): expected 1×n×(k·d), found 2×n×4"
    );
    assert_eq!(
        ty("(merge 2 Y)", &[("Y", "3,n,d")]).unwrap_err(),
        "merge (k = 2): expected k×n×d, found 3×n×d"
    );
    assert!(ty("(split 0 X)", &x).unwrap_err().contains("a head count"));
    assert!(ty("(split 1/2 X)", &x)
        .unwrap_err()
        .contains("a head count"));
    assert!(ty("(split Y X)", &[("X", "1,n,2*d"), ("Y", "1,1,1")])
        .unwrap_err()
        .contains("a head count"));
}

#[test]
fn layouts_lower_to_copies_and_the_plan_matches_the_expression() {
    let s = shapes(&[("X", "1,n,2*d"), ("Y", "1,n,2*d")]);
    let cfg = RungConfig {
        cases: 16,
        seed: 3,
        max_dim: 3,
    };
    for term in [
        "(merge 2 (bmm (softmax (split 2 X)) (T (reshape 2 Y))))",
        "(flat 2 (swap (reshape 2 (exp X))))",
        "(unreshape 2 (swap (unflat 2 (+ X Y))))",
    ] {
        let e = parse_term(term).unwrap();
        let plan = lower(&e, &s).unwrap();
        assert!(
            plan.steps
                .iter()
                .any(|st| matches!(st, Step::Relayout { .. })),
            "{plan}"
        );
        let count = check_plan_exact(&e, &s, &plan, &[], &cfg).unwrap();
        assert!(
            count.first_failure.is_none(),
            "{term}: {:?}",
            count.first_failure
        );
    }
}

#[test]
fn a_plan_whose_split_became_the_lean_cast_is_rejected() {
    let s = shapes(&[("X", "1,n,2*d")]);
    let e = parse_term("(exp (split 2 X))").unwrap();
    let mut plan = lower(&e, &s).unwrap();
    for st in &mut plan.steps {
        if let Step::Relayout { layout, .. } = st {
            assert_eq!(*layout, Layout::Split);
            *layout = Layout::Reshape;
        }
    }
    let cfg = RungConfig {
        cases: 16,
        seed: 3,
        max_dim: 3,
    };
    let count = check_plan_exact(&e, &s, &plan, &[], &cfg).unwrap();
    assert!(count.first_failure.is_some());
    // A head count that does not match the buffers: a malformed plan.
    for st in &mut plan.steps {
        if let Step::Relayout { layout, heads, .. } = st {
            *layout = Layout::Split;
            *heads = 3;
        }
    }
    let count = check_plan_exact(&e, &s, &plan, &[], &cfg).unwrap();
    assert!(count.first_failure.unwrap().contains("malformed"));
}

#[test]
fn split_and_merge_derive_through_the_rules() {
    let s = shapes(&[("X", "1,n,2*d"), ("W", "1,2*d,2*d")]);
    for term in [
        "(merge 2 (exp (split 2 X)))",
        "(bmm (merge 2 (softmax (split 2 (bmm X W)))) W)",
        "(flat 2 (swap (softmax (reshape 2 X))))",
        "(flat 2 (* @c (unflat 2 X)))",
    ] {
        for mode in [Mode::Jvp, Mode::Vjp] {
            check_derived(term, &s, mode, 6);
        }
    }
}
