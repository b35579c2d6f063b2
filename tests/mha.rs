//! The whole multi-head attention block as one IR term, in the PyTorch layout (heads
//! split by `view(n,h,d).transpose(0,1)`) and in TorchLean's `mhaDGraph` layout (split
//! by `reshape`, merged by `swapFirstTwo3d` then `reshape`): derived by the rules (VJP
//! w.r.t. x, Wq, Wk, Wv, Wo, and the JVP), snapshotted, lowered, run over f64, plan over
//! ℚ = expression over ℚ, and derived = dual-number JVP / adjoint by probing over ℚ.
//!
//! The derivations are bounded by iterations (deterministic), not by time: the VJP
//! needs 20 egg iterations, the JVP 12 (figures in docs/derivation.md).

mod common;

use common::{random_env, shapes};
use fderiv::derive::{derive_unchecked, Derivation, Limits, Mode, Request};
use fderiv::exec::{exec_f64, Tensors};
use fderiv::ir::eval::{eval, values_equal, Value};
use fderiv::ir::parse_term;
use fderiv::ir::shape::ShapeEnv;
use fderiv::lower::{lower, Role};
use fderiv::rules::RuleSet;
use fderiv::rungs::{check_plan_exact, RungConfig};
use fderiv::tensor::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::OnceLock;

/// The MHA block with `k` heads, heads split by `split` and merged by `merge`:
/// `Wo·merge(softmax(c·Q·Kᵀ)·V)` with `Q = split(x·Wq)`, and so on.
fn mha(k: usize, split: &str, merge: &dyn Fn(&str) -> String) -> String {
    let s = |w: &str| format!("({split} {k} (bmm x {w}))");
    let scores = format!("(softmax (* @c (bmm {} (T {}))))", s("Wq"), s("Wk"));
    format!("(bmm {} Wo)", merge(&format!("(bmm {scores} {})", s("Wv"))))
}

/// PyTorch's layout with two heads.
fn torch() -> String {
    mha(2, "split", &|y| format!("(merge 2 {y})"))
}

/// TorchLean's `mhaDGraph` layout with two heads.
fn lean() -> String {
    mha(2, "reshape", &|y| format!("(flat 2 (swap {y}))"))
}

/// x is n×(2·d), every projection (2·d)×(2·d).
fn mha_shapes() -> ShapeEnv {
    shapes(&[
        ("x", "1,n,2*d"),
        ("Wq", "1,2*d,2*d"),
        ("Wk", "1,2*d,2*d"),
        ("Wv", "1,2*d,2*d"),
        ("Wo", "1,2*d,2*d"),
    ])
}

fn limits(_mode: Mode) -> Limits {
    // The schedule (differentiate, then simplify) finishes both at the defaults.
    Limits::default().unexplained()
}

/// (layout, mode, derivation), derived once.
fn derivations() -> &'static Vec<(&'static str, Mode, Derivation)> {
    static CELL: OnceLock<Vec<(&'static str, Mode, Derivation)>> = OnceLock::new();
    CELL.get_or_init(|| {
        let rules = RuleSet::embedded().unwrap();
        let mut out = Vec::new();
        for (name, term) in [("torch", torch()), ("lean", lean())] {
            for mode in [Mode::Jvp, Mode::Vjp] {
                let req = Request::new(&term, mha_shapes(), None, mode).unwrap();
                let d = derive_unchecked(&req, &rules, &limits(mode))
                    .unwrap_or_else(|e| panic!("{name} {mode:?}: {e}"));
                eprintln!(
                    "mha {name} {mode:?}: {} e-nodes, {} iterations, {:.2} s in egg, result {} nodes ({})",
                    d.egraph_nodes,
                    d.iterations,
                    d.seconds,
                    d.result.as_ref().len(),
                    d.stop
                );
                out.push((name, mode, d));
            }
        }
        out
    })
}

#[test]
fn the_derived_mha_derivatives_equal_the_semantics_exactly() {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    for (name, mode, d) in derivations() {
        let wrt = &d.request.wrt;
        assert_eq!(wrt.len(), 5, "{name}: every input is differentiated");
        for case in 0..4 {
            let env = random_env(d, &mut rng, case < 2);
            let want = eval(&d.start, &env).unwrap();
            let got = eval(&d.result, &env).unwrap();
            assert!(
                values_equal(&want, &got),
                "{name} {mode:?} at {:?}",
                env.describe()
            );
            if let Value::Grad(g) = &got {
                assert!(g.keys().all(|k| wrt.contains(k)));
            }
        }
    }
}

#[test]
fn the_derived_mha_derivatives_lower_run_and_match_over_q() {
    let cfg = RungConfig {
        cases: 4,
        seed: 5,
        max_dim: 2,
    };
    for (name, mode, d) in derivations() {
        let plan = lower(&d.result, &d.request.shapes).unwrap();
        assert_eq!(
            plan.with_role(Role::Param).count(),
            1,
            "{name}: the scale is a parameter"
        );
        let count = check_plan_exact(&d.result, &d.request.shapes, &plan, &[], &cfg).unwrap();
        assert!(
            count.first_failure.is_none(),
            "{name} {mode:?}: {:?}",
            count.first_failure
        );
        if *mode == Mode::Vjp {
            let mut outs: Vec<&str> = plan
                .with_role(Role::Output)
                .map(|(_, b)| b.name.as_str())
                .collect();
            outs.sort();
            assert_eq!(outs, ["gWk", "gWo", "gWq", "gWv", "gx"], "{name}");
        }
        // f64: n = 3, d = 2 (model width 4), c = 1/2.
        let mut ins: Tensors<f64> = Tensors::new();
        for (_, b) in plan.with_role(Role::Input) {
            let dims = match b.name.trim_start_matches('d') {
                "x" | "G" => [1, 3, 4],
                _ => [1, 4, 4],
            };
            let data = (0..16 * dims[1] / 4 * 4)
                .map(|i| ((i % 7) as f64 - 3.0) / 8.0)
                .collect::<Vec<_>>();
            ins.insert(
                b.name.clone(),
                Tensor::new(dims, data[..dims[1] * 4].to_vec()).unwrap(),
            );
        }
        ins.insert("c".into(), Tensor::new([1, 1, 1], vec![0.5]).unwrap());
        let out = exec_f64(&plan, &ins).unwrap();
        assert!(out.values().all(|t| t.data().iter().all(|v| v.is_finite())));
    }
}

#[test]
fn snapshots_of_the_derived_mha_terms() {
    for (name, mode, d) in derivations() {
        insta::with_settings!({
            snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(format!("mha_{name}_{mode}"), d.result.to_string());
        });
    }
}

/// Issue 10, question 3: the Lean graph's split (`reshape`) and PyTorch's
/// (`view(n,h,d).transpose(0,1)`) differ as soon as there are two heads and two
/// tokens; with one token (or one head) they agree. The merges agree always.
#[test]
fn the_lean_and_pytorch_layouts_agree_only_for_one_token_or_one_head() {
    let rules_free = |k: usize, n: usize, d: usize, seed: u64| {
        let sh = shapes(&[
            ("x", &format!("1,{n},{}", k * d)),
            ("Wq", &format!("1,{},{}", k * d, k * d)),
            ("Wk", &format!("1,{},{}", k * d, k * d)),
            ("Wv", &format!("1,{},{}", k * d, k * d)),
            ("Wo", &format!("1,{},{}", k * d, k * d)),
        ]);
        let t = mha(k, "split", &|y| format!("(merge {k} {y})"));
        let l = mha(k, "reshape", &|y| format!("(flat {k} (swap {y}))"));
        let req = Request::new(&t, sh, None, Mode::Jvp).unwrap();
        let fake = Derivation {
            start: req.forward.clone(),
            result: req.forward.clone(),
            request: req,
            explanation: vec![],
            explained: false,
            phases: vec![],
            total_seconds: 0.0,
            peak_rss: None,
            stop: String::new(),
            iterations: 0,
            egraph_nodes: 0,
            egraph_classes: 0,
            seconds: 0.0,
            applied: vec![],
        };
        let env = random_env(&fake, &mut ChaCha8Rng::seed_from_u64(seed), true);
        let a = eval(&parse_term(&t).unwrap(), &env).unwrap();
        let b = eval(&parse_term(&l).unwrap(), &env).unwrap();
        values_equal(&a, &b)
    };
    for seed in 0..4 {
        assert!(rules_free(2, 1, 2, seed), "one token");
        assert!(rules_free(1, 3, 2, seed), "one head");
        assert!(
            !rules_free(2, 2, 1, seed),
            "two heads, two tokens, d = 1: the smallest witness"
        );
    }
    let merge = "(merge 2 Y)";
    let lean_merge = "(flat 2 (swap Y))";
    let sh = shapes(&[("Y", "2,n,d")]);
    let cfg = RungConfig {
        cases: 8,
        seed: 1,
        max_dim: 3,
    };
    let plan = lower(&parse_term(lean_merge).unwrap(), &sh).unwrap();
    let count = check_plan_exact(&parse_term(merge).unwrap(), &sh, &plan, &[], &cfg).unwrap();
    assert!(count.first_failure.is_none(), "{:?}", count.first_failure);
}
