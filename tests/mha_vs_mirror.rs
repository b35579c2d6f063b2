//! The whole multi-head attention block derived by the rules as one term equals,
//! exactly over ℚ, the backprop of TorchLean's graph as the spec mirror builds it
//! (`mha_backpropVec_eq_adjoint_fderiv`'s left side), in both layouts; and the
//! forward equals `evalVec`. A corrupted derivation is rejected.

use egg::Symbol;
use fderiv::derive::{derive_unchecked, Limits, Mode, Request};
use fderiv::ir::eval::{eval, Binding, Env, Value};
use fderiv::ir::parse_term;
use fderiv::ir::shape::{parse_shape, ShapeEnv};
use fderiv::rules::soundness::small_rational;
use fderiv::rules::RuleSet;
use fderiv::scalar::{ExpOracle, Rational};
use fderiv::spec::mha::{mha_backprop, mha_forward, Layout, MhaDims, MhaInputs};
use fderiv::tensor::Tensor;
use num_traits::Zero;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// The block with `k` heads, split by `split` and merged by `merge`.
fn block(k: usize, split: &str, merge: &dyn Fn(&str) -> String) -> String {
    let s = |w: &str| format!("({split} {k} (bmm x {w}))");
    let scores = format!("(softmax (* @c (bmm {} (T {}))))", s("Wq"), s("Wk"));
    format!("(bmm {} Wo)", merge(&format!("(bmm {scores} {})", s("Wv"))))
}

fn term(layout: Layout) -> String {
    match layout {
        Layout::PyTorch => block(2, "split", &|y| format!("(merge 2 {y})")),
        Layout::Lean => block(2, "reshape", &|y| format!("(flat 2 (swap {y}))")),
    }
}

fn shapes() -> ShapeEnv {
    [
        ("x", "1,n,2*d"),
        ("Wq", "1,2*d,2*d"),
        ("Wk", "1,2*d,2*d"),
        ("Wv", "1,2*d,2*d"),
        ("Wo", "1,2*d,2*d"),
    ]
    .iter()
    .map(|(n, s)| (Symbol::from(*n), parse_shape(s).unwrap()))
    .collect()
}

fn random(rng: &mut ChaCha8Rng, len: usize) -> Vec<Rational> {
    (0..len).map(|_| small_rational(rng)).collect()
}

struct Point {
    env: Env<Rational>,
    dims: MhaDims,
    inputs: MhaInputs<Rational>,
    g: Vec<Rational>,
    c: Rational,
}

/// A random point: n tokens, 2 heads of width d.
fn point(n: usize, d: usize, seed: u64) -> Point {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dm = 2 * d;
    let inputs = MhaInputs {
        x: random(&mut rng, n * dm),
        wq: random(&mut rng, dm * dm),
        wk: random(&mut rng, dm * dm),
        wv: random(&mut rng, dm * dm),
        wo: random(&mut rng, dm * dm),
    };
    let g = random(&mut rng, n * dm);
    let c = small_rational(&mut rng);
    let bind = |v: &Vec<Rational>, rows: usize| {
        let value = Tensor::new([1, rows, dm], v.clone()).unwrap();
        let tangent = Tensor::filled([1, rows, dm], Rational::zero()).unwrap();
        Binding { value, tangent }
    };
    let mut env_inputs = BTreeMap::new();
    env_inputs.insert(Symbol::from("x"), bind(&inputs.x, n));
    env_inputs.insert(Symbol::from("Wq"), bind(&inputs.wq, dm));
    env_inputs.insert(Symbol::from("Wk"), bind(&inputs.wk, dm));
    env_inputs.insert(Symbol::from("Wv"), bind(&inputs.wv, dm));
    env_inputs.insert(Symbol::from("Wo"), bind(&inputs.wo, dm));
    env_inputs.insert(Symbol::from("G"), bind(&g, n));
    let env = Env {
        inputs: env_inputs,
        params: [(Symbol::from("c"), c.clone())].into_iter().collect(),
        oracle: ExpOracle::hashed(seed),
    };
    Point {
        env,
        dims: MhaDims::square(n, dm, 2).unwrap(),
        inputs,
        g,
        c,
    }
}

fn slot(v: &Value<Rational>, name: &str) -> Vec<Rational> {
    match v {
        Value::Grad(g) => g
            .get(&Symbol::from(name))
            .map(|t| t.data().to_vec())
            .unwrap_or_default(),
        _ => panic!("a gradient, not {v:?}"),
    }
}

fn derived_vjp(layout: Layout) -> fderiv::ir::Expr {
    let rules = RuleSet::embedded().unwrap();
    let req = Request::new(&term(layout), shapes(), None, Mode::Vjp).unwrap();
    derive_unchecked(&req, &rules, &Limits::default().unexplained())
        .unwrap()
        .result
}

/// Whether the derived VJP `e` equals the mirror's backprop at every point tried.
fn agrees(layout: Layout, e: &fderiv::ir::Expr) -> bool {
    for (n, d, seed) in [(2, 1, 1), (3, 2, 2), (1, 2, 3), (2, 2, 4)] {
        let p = point(n, d, seed);
        let oracle = p.env.oracle.clone();
        let got = eval(e, &p.env).unwrap();
        let want = mha_backprop(layout, &p.dims, &p.inputs, &p.g, &p.c, &oracle).unwrap();
        let pairs = [
            ("x", &want.x),
            ("Wq", &want.wq),
            ("Wk", &want.wk),
            ("Wv", &want.wv),
            ("Wo", &want.wo),
        ];
        if pairs.iter().any(|(name, w)| slot(&got, name) != **w) {
            return false;
        }
    }
    true
}

#[test]
fn the_forward_term_is_the_mirrors_eval_vec() {
    for layout in [Layout::PyTorch, Layout::Lean] {
        let e = parse_term(&term(layout)).unwrap();
        for (n, d, seed) in [(2, 1, 1), (3, 2, 2)] {
            let p = point(n, d, seed);
            let want = mha_forward(layout, &p.dims, &p.inputs, &p.c, &p.env.oracle).unwrap();
            match eval(&e, &p.env).unwrap() {
                Value::Tensor(t) => assert_eq!(t.data(), &want[..], "{layout:?}"),
                other => panic!("{other:?}"),
            }
        }
    }
}

#[test]
fn the_derived_vjp_is_the_mirrors_backprop_exactly() {
    for layout in [Layout::PyTorch, Layout::Lean] {
        let e = derived_vjp(layout);
        assert!(agrees(layout, &e), "{layout:?}: derived VJP ≠ backpropVec");
        // Each layout's derivative is the other's wrong answer (they differ from two
        // heads and two tokens on: docs/mha-layout.md).
        let other = match layout {
            Layout::PyTorch => Layout::Lean,
            Layout::Lean => Layout::PyTorch,
        };
        assert!(
            !agrees(other, &e),
            "{layout:?}: the check cannot tell the layouts apart"
        );
    }
}

#[test]
fn a_corrupted_derivation_is_rejected() {
    // Drop the scale from one gradient slot: (* @c w) becomes w wherever it occurs.
    let e = derived_vjp(Layout::PyTorch);
    let corrupt = parse_term(&e.to_string().replacen("(* @c ", "(* 1 ", 1)).unwrap();
    assert_ne!(corrupt, e, "the derived VJP scales by @c somewhere");
    assert!(!agrees(Layout::PyTorch, &corrupt));
}
