//! `--format math|latex|dot` on derive, trace and rules list, run as a user runs them.

#[path = "support/cli.rs"]
mod cli;
use cli::{fderiv, stderr, stdout};

const SOFTMAX: &[&str] = &[
    "--expr",
    "(softmax X)",
    "--shape",
    "X=h,m,n",
    "--mode",
    "vjp",
];

fn with(base: &[&'static str], more: &[&'static str]) -> Vec<&'static str> {
    base.iter().chain(more).copied().collect()
}

#[test]
fn the_softmax_vjp_trace_reads_as_a_person_writes_it() {
    let o = fderiv(&["trace", "softmax_last", "--mode", "vjp", "--format", "math"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("vjp of softmax(X)\nwhere e = exp(X),"),
        "{out}"
    );
    assert!(
        out.contains("  2. softmax-def [definition]\n     lean: softmaxVec"),
        "{out}"
    );
    assert!(
        out.contains("result: ∇X = s ⊙ (G − rowsum(s ⊙ G))\n"),
        "{out}"
    );
}

#[test]
fn derive_in_math_reads_back_to_the_derived_term() {
    let text = fderiv(&with(&["derive"], SOFTMAX));
    let math = fderiv(&with(&["derive"], &with(SOFTMAX, &["--format", "math"])));
    assert!(math.status.success(), "{}", stderr(&math));
    let back = fderiv::notation::parse(&stdout(&math)).expect("the notation parses");
    assert_eq!(back.to_string(), stdout(&text).trim());
}

#[test]
fn latex_and_dot_are_documents_and_graphs() {
    let tex = fderiv(&with(&["trace"], &with(SOFTMAX, &["--format", "latex"])));
    assert!(tex.status.success(), "{}", stderr(&tex));
    let tex = stdout(&tex);
    assert!(tex.contains("\\usepackage{amsmath}") && tex.contains("\\begin{align*}"));
    assert!(
        tex.contains("&& \\text{1. vjp-def} \\\\ % vjp-def [adjoint]; lean: "),
        "{tex}"
    );
    let plan = fderiv(&with(
        &["derive"],
        &with(SOFTMAX, &["--plan", "--format", "dot"]),
    ));
    assert!(
        stdout(&plan).starts_with("digraph plan {"),
        "{}",
        stderr(&plan)
    );
    let dag = fderiv(&with(&["derive"], &with(SOFTMAX, &["--format", "dot"])));
    assert!(
        stdout(&dag).starts_with("digraph term {"),
        "{}",
        stderr(&dag)
    );
}

#[test]
fn formats_that_cannot_show_the_request_are_refused() {
    for (args, why) in [
        (
            with(&["trace"], &with(SOFTMAX, &["--format", "dot"])),
            "a trace has no DOT form",
        ),
        (
            with(
                &["derive"],
                &with(SOFTMAX, &["--plan", "--format", "latex"]),
            ),
            "a plan has no LaTeX form",
        ),
        (vec!["verify", "--format", "math"], "invalid value 'math'"),
        (
            vec!["rules", "list", "--format", "dot"],
            "invalid value 'dot'",
        ),
    ] {
        let o = fderiv(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stdout(&o).is_empty(), "{args:?}");
        assert!(stderr(&o).contains(why), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn rules_list_in_math() {
    let o = fderiv(&["rules", "list", "--format", "math"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("jvp-mul [differentiation]\n    d(?a ⊙ ?b)  ⇒  d(?a) ⊙ ?b + ?a ⊙ d(?b)\n"),
        "{out}"
    );
    assert!(out.contains("    if tangent_free ?b\n"), "{out}");
}
