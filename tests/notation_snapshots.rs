//! Snapshots of the seed derivations (matmul and softmax_last, JVP and VJP) and the
//! attention head in every notation: the trace in Unicode math and as a LaTeX
//! document, the result as a LaTeX document, the plan and the result's DAG as Graphviz
//! DOT (stored in `snapshots/`; `.ci/render-snapshots` compiles the LaTeX and renders
//! the DOT). Every term of every
//! trace is also read back from its printed form.

use fderiv::derive::{derive_unchecked, Derivation, Limits, Mode, Request};
use fderiv::ir::shape::{parse_shape, ShapeEnv};
use fderiv::lower::lower;
use fderiv::notation::math::TraceTerms;
use fderiv::notation::term::{render, render_defs};
use fderiv::notation::{dot, latex, math, parse};
use fderiv::rules::RuleSet;
use fderiv::trace::{trace, Trace};

#[path = "support/snap.rs"]
mod snap;
use snap::snapshot;

fn derivation(term: &str, shapes: &[(&str, &str)], mode: Mode) -> (Derivation, Trace) {
    let rules = RuleSet::embedded().expect("the embedded rules load");
    let env: ShapeEnv = shapes
        .iter()
        .map(|(n, s)| (egg::Symbol::from(*n), parse_shape(s).unwrap()))
        .collect();
    let request = Request::new(term, env, None, mode).expect("a request");
    let d = derive_unchecked(&request, &rules, &Limits::default()).expect("derives");
    let t = trace(&d, &rules);
    (d, t)
}

/// Every line of the math trace reads back, with the trace's `where` clause, to the
/// term it shows.
fn trace_terms_read_back(t: &Trace) {
    let terms = TraceTerms::of(t).unwrap();
    let names = terms.names();
    let defs: Vec<String> = render_defs(&names, &math::Unicode)
        .into_iter()
        .map(|(n, d)| format!("{n} = {d}"))
        .collect();
    let clause = if defs.is_empty() {
        String::new()
    } else {
        format!(" where {}", defs.join(", "))
    };
    let all = std::iter::once(&terms.start)
        .chain(&terms.steps)
        .chain(std::iter::once(&terms.result));
    for e in all {
        let line = format!("{}{clause}", render(e, &names, &math::Unicode));
        let back = parse(&line).unwrap_or_else(|err| panic!("{line}: {err}"));
        assert_eq!(back.to_string(), e.to_string(), "{line}");
    }
}

fn all_formats(stem: &str, term: &str, shapes: &[(&str, &str)], mode: Mode) {
    let (d, t) = derivation(term, shapes, mode);
    trace_terms_read_back(&t);
    snapshot(&format!("{stem}_math"), &math::trace(&t).unwrap());
    snapshot(
        &format!("{stem}_latex"),
        &latex::trace_document(&t).unwrap(),
    );
    snapshot(
        &format!("{stem}_result_latex"),
        &latex::term_document(&d.result),
    );
    let plan = lower(&d.result, &d.request.shapes).expect("lowers");
    snapshot(&format!("{stem}_plan_dot"), &dot::plan(&plan));
    snapshot(&format!("{stem}_dag_dot"), &dot::term(&d.result));
}

const MATMUL: (&str, &[(&str, &str)]) = ("(bmm A B)", &[("A", "h,m,n"), ("B", "h,n,p")]);
const SOFTMAX: (&str, &[(&str, &str)]) = ("(softmax X)", &[("X", "h,m,n")]);

#[test]
fn matmul_jvp() {
    all_formats("matmul_jvp", MATMUL.0, MATMUL.1, Mode::Jvp);
}

#[test]
fn matmul_vjp() {
    all_formats("matmul_vjp", MATMUL.0, MATMUL.1, Mode::Vjp);
}

#[test]
fn softmax_last_jvp() {
    all_formats("softmax_last_jvp", SOFTMAX.0, SOFTMAX.1, Mode::Jvp);
}

#[test]
fn softmax_last_vjp() {
    all_formats("softmax_last_vjp", SOFTMAX.0, SOFTMAX.1, Mode::Vjp);
}

/// The attention head of docs/derivation.md (its plan is the picture there).
#[test]
fn attention_vjp() {
    let (d, _) = derivation(
        "(bmm (softmax (bmm Q (T K))) V)",
        &[("Q", "h,m,d"), ("K", "h,n,d"), ("V", "h,n,e")],
        Mode::Vjp,
    );
    snapshot("attention_vjp_math", &math::term(&d.result));
    let plan = lower(&d.result, &d.request.shapes).expect("lowers");
    snapshot("attention_vjp_plan_dot", &dot::plan(&plan));
    snapshot("attention_vjp_dag_dot", &dot::term(&d.result));
}

#[test]
fn rules_in_math() {
    snapshot(
        "rules_math",
        &math::rules(&RuleSet::embedded().expect("the embedded rules load")),
    );
}
