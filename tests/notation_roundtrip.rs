//! The Unicode notation reads back to the term it was printed from: random well-typed
//! terms (every operator, numbers, tangents, gradients, repeated subterms that get
//! `where` names, input names that must be quoted or avoided), printed by
//! `notation::math::term` and parsed by `notation::parse`.

use fderiv::ir::shape::{infer_term, parse_shape, ShapeEnv, Ty};
use fderiv::ir::{parse_term, Expr};
use fderiv::notation::{math, parse};
use proptest::prelude::*;

/// Inputs, all h×n×n so that every product is well-typed; some names collide with the
/// notation's words or with the names it gives shared subterms.
const NAMES: &[&str] = &[
    "A", "B", "X", "dX", "exp", "where", "x_1", "α", "s", "e", "u₂",
];

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(NAMES).prop_map(str::to_string)
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        (-3i64..4).prop_map(|n| n.to_string()),
        ((-5i64..6), (2i64..5)).prop_map(|(n, d)| format!("{n}/{d}")),
    ]
}

/// A tensor-valued term as s-expression text.
fn tensor() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![name(), name().prop_map(|n| format!("(tan {n})"))];
    leaf.prop_recursive(5, 48, 2, |t| {
        let unary =
            prop::sample::select(&["neg", "inv", "exp", "rowsum", "T", "softmax", "jvp"][..]);
        let binary = prop::sample::select(&["+", "-", "*", "/", "bmm"][..]);
        let entrywise = prop::sample::select(&["+", "-", "*", "/"][..]);
        prop_oneof![
            (unary, t.clone()).prop_map(|(op, a)| format!("({op} {a})")),
            (binary.clone(), t.clone(), t.clone()).prop_map(|(op, a, b)| format!("({op} {a} {b})")),
            // The same subterm twice: a candidate for a `where` name.
            (binary, t.clone()).prop_map(|(op, a)| format!("({op} {a} (exp {a}))")),
            // Numbers broadcast in entrywise operations, on either side.
            (entrywise.clone(), number(), t.clone())
                .prop_map(|(op, n, a)| format!("({op} {n} {a})")),
            (entrywise, t.clone(), number()).prop_map(|(op, a, n)| format!("({op} {a} {n})")),
        ]
    })
}

/// A gradient-valued term: slots, sums of gradients, VJPs and adjoints.
fn gradient() -> impl Strategy<Value = String> {
    let one = prop_oneof![
        (name(), tensor()).prop_map(|(n, w)| format!("(grad {n} {w})")),
        (tensor(), tensor()).prop_map(|(e, g)| format!("(vjp {e} {g})")),
        (tensor(), tensor()).prop_map(|(e, g)| format!("(adj {e} {g})")),
    ];
    one.prop_recursive(3, 8, 2, |g| {
        (g.clone(), g).prop_map(|(a, b)| format!("(g+ {a} {b})"))
    })
}

fn env() -> ShapeEnv {
    NAMES
        .iter()
        .map(|n| (egg::Symbol::from(*n), parse_shape("h,n,n").unwrap()))
        .collect()
}

/// Parses the generated text and checks that it is well-typed.
fn typed(text: &str) -> Expr {
    let e = parse_term(text).unwrap();
    let ty = infer_term(&e, &env()).unwrap_or_else(|err| panic!("{text}: {err}"));
    assert!(matches!(ty, Ty::Tensor(_) | Ty::Grad), "{text}: {ty}");
    e
}

fn round_trip(e: &Expr) {
    let shown = math::term(e);
    let back = parse(&shown).unwrap_or_else(|err| panic!("{shown}\n{err}"));
    assert_eq!(back.to_string(), e.to_string(), "printed as:\n{shown}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn tensor_terms_read_back(text in tensor()) {
        round_trip(&typed(&text));
    }

    #[test]
    fn gradient_terms_read_back(text in gradient()) {
        round_trip(&typed(&text));
    }
}

/// The check can fail: a printed term with one operator, parenthesis or name changed
/// reads back as a different term.
#[test]
fn a_corrupted_rendering_reads_back_differently() {
    let e = parse_term("(grad X (* (softmax X) (- G (rowsum (* (softmax X) G)))))").unwrap();
    let shown = math::term(&e);
    assert_eq!(
        shown,
        "∇X = s ⊙ (G − rowsum(s ⊙ G))\n  where s = softmax(X)"
    );
    for corrupt in [
        shown.replacen('⊙', "·", 1),
        shown.replace("(G − rowsum(s ⊙ G))", "G − rowsum(s ⊙ G)"),
        shown.replace("softmax(X)", "exp(X)"),
        shown.replace("where s = softmax(X)", ""),
    ] {
        let back = parse(&corrupt).unwrap();
        assert_ne!(back.to_string(), e.to_string(), "{corrupt}");
    }
}
