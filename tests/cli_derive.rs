//! The derive / trace / rules commands, run as a user runs them.

use std::path::Path;
use tempfile::TempDir;

#[path = "support/cli.rs"]
mod cli;
use cli::{fderiv, stderr, stdout};

/// Runs a derivation that must succeed and returns the printed result.
fn derived(args: &[&str]) -> String {
    let o = fderiv(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    stdout(&o).trim().to_string()
}

/// A fresh folder (removed when dropped) holding copies of the embedded rule files, edited by `edit`.
fn rules_dir(tag: &str, edit: impl Fn(&str, String) -> String) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("fderiv-rules-{tag}-"))
        .tempdir()
        .unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("rewrites");
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(dir.path().join(&name), edit(&name, text)).unwrap();
    }
    dir
}

/// The embedded rules plus an unsound rule `name`: `(jvp (op ?a)) ⇒ (jvp ?a)`.
fn with_bad_jvp_rule(tag: &str, name: &str, op: &str) -> TempDir {
    let bad = format!(
        "\n[[rule]]\nname = \"{name}\"\nlhs = \"(jvp ({op} ?a))\"\nrhs = \"(jvp ?a)\"\nlean = \"none\"\n"
    );
    rules_dir(tag, |file, t| {
        if file == "differentiation.toml" {
            t + &bad
        } else {
            t
        }
    })
}

/// Removes the `[[rule]]` table named `name` from a rule file's text.
fn without_rule(text: &str, name: &str) -> String {
    text.split("[[rule]]")
        .filter(|chunk| !chunk.contains(&format!("name = \"{name}\"")))
        .collect::<Vec<_>>()
        .join("[[rule]]")
}

#[test]
fn softmax_last_vjp_is_s_times_g_minus_rowsum() {
    assert_eq!(
        derived(&["derive", "softmax_last", "--mode", "vjp"]),
        "(grad X (* (softmax X) (- G (rowsum (* (softmax X) G)))))"
    );
}

#[test]
fn the_softmax_trace_passes_through_the_calculus_rules() {
    let o = fderiv(&["trace", "softmax_last", "--mode", "vjp"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for rule in [
        "jvp-mul",
        "jvp-inv",
        "jvp-exp",
        "jvp-rowsum",
        "adj-tan",
        "adj-rowsum",
        "softmax-def",
    ] {
        assert!(
            text.contains(&format!(". {rule}")),
            "{rule} missing in\n{text}"
        );
    }
    let json = fderiv(&[
        "derive",
        "softmax_last",
        "--mode",
        "vjp",
        "--trace",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        v["result"],
        "(grad X (* (softmax X) (- G (rowsum (* (softmax X) G)))))"
    );
    assert!(v["steps"].as_array().unwrap().len() > 10);
}

#[test]
fn an_empty_rules_folder_derives_nothing() {
    let dir = rules_dir("empty", |_, t| t);
    for f in std::fs::read_dir(dir.path()).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let o = fderiv(&["derive", "matmul", "--rules", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).is_empty());
    assert!(
        stderr(&o).contains("residual subterm (jvp (bmm A B))"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_removed_differentiation_rule_leaves_a_named_residual() {
    let dir = rules_dir("noexp", |_, t| without_rule(&t, "jvp-exp"));
    let o = fderiv(&[
        "derive",
        "softmax_last",
        "--rules",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("residual subterm (jvp (exp X))"), "{err}");
    assert!(err.contains("saturated"), "{err}");
}

#[test]
fn an_unsound_rule_is_refused_by_check_and_by_derive() {
    let dir = with_bad_jvp_rule("unsound", "exp-bad", "exp");
    let check = fderiv(&["rules", "check", dir.path().to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(1));
    let out = stdout(&check);
    assert!(out.contains("UNSOUND  exp-bad at "), "{out}");
    assert!(out.contains("differentiation.toml:"), "{out}");
    let derive = fderiv(&[
        "derive",
        "softmax_last",
        "--rules",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(derive.status.code(), Some(1));
    assert!(stderr(&derive).contains("refusing to derive with unsound rules"));
    assert!(stderr(&derive).contains("exp-bad"));
}

#[test]
fn derive_checks_exactly_the_rules_it_applied() {
    // An unsound rule that no matmul derivation can apply (no tan in the term):
    // derive checks exactly the rules egg applied, so the matmul VJP is derived; the
    // same set is refused by `rules check`, and by a derivation that applies it.
    let dir = with_bad_jvp_rule("unused", "tan-bad", "tan");
    let d = dir.path().to_str().unwrap();
    let matmul = derived(&["derive", "matmul", "--mode", "vjp", "--rules", d]);
    assert_eq!(matmul, derived(&["derive", "matmul", "--mode", "vjp"]));
    let check = fderiv(&["rules", "check", d]);
    assert_eq!(check.status.code(), Some(1));
    assert!(stdout(&check).contains("UNSOUND  tan-bad at "));
    let tan = fderiv(&[
        "derive", "--expr", "(tan X)", "--shape", "X=2,2,2", "--rules", d,
    ]);
    assert_eq!(tan.status.code(), Some(1));
    assert!(stderr(&tan).contains("tan-bad"), "{}", stderr(&tan));
}

#[test]
fn the_embedded_rules_check_clean() {
    let o = fderiv(&["rules", "check"]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("0 refused"));
    let list = fderiv(&["rules", "list"]);
    assert!(stdout(&list).contains("jvp-bmm"));
    assert!(stdout(&list).contains("hasFDerivAt_of_bilinear"));
}

#[test]
fn a_broken_rule_file_is_located() {
    let dir = rules_dir("broken", |name, t| {
        if name == "algebra.toml" {
            t.replace("lhs  = \"(neg (neg ?a))\"", "lhs  = \"(neg (nag ?a))\"")
        } else {
            t
        }
    });
    let o = fderiv(&["rules", "list", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("algebra.toml:"), "{err}");
    assert!(
        err.contains("rule neg-neg: lhs is not a pattern of the IR"),
        "{err}"
    );
}

#[test]
fn bad_terms_give_clear_errors() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["derive", "--expr", "(frob X)", "--shape", "X=h,m,n"],
            "cannot parse",
        ),
        (
            &[
                "derive",
                "--expr",
                "(bmm A B)",
                "--shape",
                "A=h,m,n",
                "--shape",
                "B=h,p,n",
            ],
            "shapes h×m×n and h×p×n disagree",
        ),
        (
            &["derive", "--expr", "(exp Y)"],
            "input Y has no declared shape",
        ),
        (
            &["derive", "--expr", "(exp X)", "--shape", "X=h,m"],
            "not h,m,n",
        ),
        (
            &[
                "derive", "--expr", "(exp X)", "--shape", "X=h,m,n", "--wrt", "Z",
            ],
            "no input Z",
        ),
    ];
    for (args, needle) in cases {
        let o = fderiv(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn hitting_a_limit_is_reported_with_its_name() {
    let o = fderiv(&[
        "derive",
        "softmax_last",
        "--mode",
        "vjp",
        "--iter-limit",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("iteration limit (2)"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--iter-limit"), "{}", stderr(&o));
}

#[test]
fn one_attention_head_is_differentiated_by_the_same_rules() {
    let o = fderiv(&[
        "derive",
        "--expr",
        "(bmm (softmax (bmm Q (T K))) V)",
        "--shape",
        "Q=h,m,d",
        "--shape",
        "K=h,n,d",
        "--shape",
        "V=h,n,e",
        "--mode",
        "vjp",
        "--wrt",
        "Q,V",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("(grad V (bmm (T (softmax (bmm Q (T K)))) G))"),
        "{out}"
    );
    assert!(out.contains("(grad Q "), "{out}");
    assert!(!out.contains("(grad K "), "{out}");
}

#[test]
fn inputs_outside_wrt_are_held_constant_in_jvps() {
    assert_eq!(
        derived(&[
            "derive",
            "--expr",
            "(bmm A B)",
            "--shape",
            "A=h,m,n",
            "--shape",
            "B=h,n,p",
            "--wrt",
            "A",
        ]),
        "(bmm (tan A) B)"
    );
}

#[test]
fn a_times_a_sums_both_contributions_into_one_slot() {
    assert_eq!(
        derived(&[
            "derive",
            "--expr",
            "(bmm A A)",
            "--shape",
            "A=h,n,n",
            "--mode",
            "vjp",
        ]),
        "(grad A (+ (bmm G (T A)) (bmm (T A) G)))"
    );
}

#[test]
fn printed_results_reparse_to_themselves() {
    for op in ["matmul", "softmax_last"] {
        for mode in ["jvp", "vjp"] {
            let printed = derived(&["derive", op, "--mode", mode]);
            let term = fderiv::ir::parse_term(&printed).unwrap();
            assert_eq!(term.to_string(), printed);
        }
    }
}

#[test]
fn the_plan_uses_transpose_flags_and_one_fused_row_pass() {
    let matmul = derived(&["derive", "matmul", "--mode", "vjp", "--plan"]);
    assert!(matmul.contains("gA = gemm G · Bᵀ"), "{matmul}");
    assert!(matmul.contains("gB = gemm Aᵀ · G"), "{matmul}");
    assert!(
        !matmul.contains("transpose"),
        "no materialized transpose: {matmul}"
    );
    let softmax = derived(&["derive", "softmax_last", "--mode", "vjp", "--plan"]);
    assert_eq!(softmax.matches("row pass").count(), 1, "{softmax}");
}
