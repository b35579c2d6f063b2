use super::*;

const GOOD: &str = r#"
[[kernel]]
name = "head"
term = "(bmm (softmax (+ (bmm Q (T K)) M)) V)"
inputs = { Q = "h,m,d", K = "h,n,d", V = "h,n,e", M = "h,m,n" }
output = "O"
save = { P = "(softmax (+ (bmm Q (T K)) M))" }
wrt = ["Q", "K", "V"]
out = "gen"
"#;

fn parse(text: &str) -> Result<Vec<KernelDef>, ManifestError> {
    parse_manifest("m.toml", text, Path::new("/base"))
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn a_good_manifest_parses_in_declaration_order() {
    let ks = parse(GOOD).unwrap();
    let k = &ks[0];
    assert_eq!(k.name, "head");
    let names: Vec<String> = k.inputs.iter().map(|s| s.to_string()).collect();
    assert_eq!(names, ["Q", "K", "V", "M"]);
    assert_eq!(k.output, "O");
    assert_eq!(k.modes, KernelMode::ALL);
    assert_eq!(k.save[0].name, "P");
    assert_eq!(k.out_dir, Path::new("/base/gen"));
    assert_eq!(k.at.to_string(), "m.toml:3:8");
}

#[test]
fn the_embedded_manifest_holds_the_spec_ops_and_attention() {
    let m = Manifest::embedded().unwrap();
    let names = ["matmul", "softmax_last", "mha_h4", "mha_h8", "mha_lean_h4"];
    assert_eq!(m.names(), names);
    assert_eq!(m.kernel("matmul").unwrap().spec, Some(SpecOp::Matmul));
    let mha = |layout, heads| Some(SpecOp::Mha { layout, heads });
    assert_eq!(
        m.kernel("mha_h8").unwrap().spec,
        mha(HeadLayout::PyTorch, 8)
    );
    assert_eq!(
        m.kernel("mha_lean_h4").unwrap().spec,
        mha(HeadLayout::Lean, 4)
    );
    let e = m.kernel("nope").unwrap_err().to_string();
    assert_eq!(
        e,
        format!("no kernel named \"nope\" (kernels: {})", names.join(", "))
    );
}

#[test]
fn an_attention_kernel_must_be_the_mirrors_block_in_its_layout() {
    let block = SpecOp::Mha {
        layout: HeadLayout::PyTorch,
        heads: 2,
    }
    .term()
    .0;
    let inputs = r#"inputs = { x = "1,n,m", Wq = "1,m,2*d", Wk = "1,m,2*d", Wv = "1,m,2*d", Wo = "1,2*d,m" }"#;
    let entry = |spec: &str, term: &str| {
        format!("[[kernel]]\nname = \"a\"\nterm = \"{term}\"\n{inputs}\nspec = \"{spec}\"\n")
    };
    let ok = parse(&entry("mha_pytorch", &block)).unwrap();
    assert_eq!(
        ok[0].spec,
        Some(SpecOp::Mha {
            layout: HeadLayout::PyTorch,
            heads: 2
        })
    );
    // The PyTorch block named as TorchLean's graph, and the block without its scale.
    for (spec, term) in [
        ("mha_lean", block.clone()),
        ("mha_pytorch", block.replace("(* @c ", "(* 1 ")),
    ] {
        let e = parse(&entry(spec, &term)).unwrap_err();
        assert!(
            matches!(*e.kind, ManifestErrorKind::SpecMismatch { .. }),
            "{spec}: {e}"
        );
        assert!(e.to_string().contains(":5:8"), "{e}");
    }
}

#[test]
fn every_kernel_builds_in_every_mode_with_saved_subterms() {
    let ks = parse(GOOD).unwrap();
    let rules = RuleSet::embedded().unwrap();
    let limits = Limits::default().unexplained();
    let fwd = ks[0].build(KernelMode::Forward, &rules, &limits).unwrap();
    let outs: Vec<&str> = fwd
        .plan
        .with_role(crate::lower::Role::Output)
        .map(|(_, b)| b.name.as_str())
        .collect();
    assert!(outs.contains(&"out") && outs.contains(&"P"), "{outs:?}");
    let vjp = ks[0].build(KernelMode::Vjp, &rules, &limits).unwrap();
    let ins: Vec<&str> = vjp
        .plan
        .with_role(crate::lower::Role::Input)
        .map(|(_, b)| b.name.as_str())
        .collect();
    assert!(ins.contains(&"P"), "the VJP reads the saved P: {ins:?}");
    let slots: Vec<&str> = vjp
        .plan
        .with_role(crate::lower::Role::Output)
        .map(|(_, b)| b.name.as_str())
        .collect();
    assert_eq!(slots, ["gK", "gQ", "gV"], "M is not in wrt");
}

fn with(field: &str, value: &str) -> String {
    let mut lines: Vec<String> = GOOD.lines().map(str::to_string).collect();
    match lines
        .iter_mut()
        .find(|l| l.starts_with(&format!("{field} ")))
    {
        Some(l) => *l = format!("{field} = {value}"),
        None => lines.push(format!("{field} = {value}")),
    }
    lines.join("\n")
}

#[test]
fn bad_input_is_a_located_typed_error() {
    let cases: &[(String, &str)] = &[
        (
            with("term", "\"(bmm (softmax Q\""),
            "m.toml:4:8: kernel head: bad term",
        ),
        (
            with("term", "\"(bmm (softmax (+ (bmm Q K) M)) V)\""),
            "m.toml:4:8: kernel head: bmm (h×m×n)·(h×n×p): shapes h×m×d and h×n×d disagree",
        ),
        (
            with("term", "\"(bmm (softmax (+ (bmm Q (T K)) M)) W)\""),
            "m.toml:4:8: kernel head: the term uses input W, which `inputs` does not declare",
        ),
        (
            with(
                "inputs",
                "{ Q = \"h,m,d\", K = \"h,n,d\", V = \"h,n,e\", M = \"h,m,n\", Z = \"h,m,n\" }",
            ),
            "m.toml:5:10: kernel head: input Z is declared but the term does not use it",
        ),
        (
            with(
                "inputs",
                "{ Q = \"h,m\", K = \"h,n,d\", V = \"h,n,e\", M = \"h,m,n\" }",
            ),
            "m.toml:5:16: kernel head: input Q:",
        ),
        (
            with(
                "inputs",
                "{ Q = \"h,m,d\", K = \"h,n,d\", V = \"h,n,e\", M = \"h,n,m\" }",
            ),
            "m.toml:4:8: kernel head: ",
        ),
        (
            with("modes", "[]"),
            "kernel head: modes = [] builds nothing",
        ),
        (
            with("wrt", "[]"),
            "kernel head: wrt = [] differentiates nothing",
        ),
        (
            with("bench", "[{ h = 1, m = 2, n = 3, d = 4, e = 5, x = 6 }]"),
            "kernel head: bench sizes name h, m, n, d, e, x, but the kernel's dims are h, m, d, n, e",
        ),
        (
            with("wrt", "[\"Q\", \"X\"]"),
            "kernel head: wrt names X, which is not an input (inputs: Q, K, V, M)",
        ),
        (
            with("save", "{ P = \"(softmax (bmm Q (T V)))\" }"),
            "kernel head: saved term (softmax (bmm Q (T V))) is not a subterm of the forward term",
        ),
        (
            with("save", "{ Q = \"(softmax (+ (bmm Q (T K)) M))\" }"),
            "kernel head: saved name \"Q\"",
        ),
        (
            with("save", "{ P = \"(bmm (softmax (+ (bmm Q (T K)) M)) V)\" }"),
            "P saves the whole forward term: name it O",
        ),
        (with("modes", "[\"hessian\"]"), "unknown mode \"hessian\""),
        (with("spec", "\"conv\""), "unknown spec op \"conv\""),
        (
            with("spec", "\"matmul\""),
            "spec = \"matmul\" needs exactly the term (bmm A B)",
        ),
        (with("name", "\"Head\""), "kernel name \"Head\""),
        (with("output", "\"Q\""), "output name \"Q\""),
        (
            with("colour", "\"red\""),
            "m.toml:10:1: unknown field `colour`",
        ),
        (
            format!("{GOOD}\n{GOOD}"),
            "m.toml:13:8: kernel head: duplicate kernel name (first declared at m.toml:3:8)",
        ),
        (
            String::from("# nothing\n"),
            "m.toml:1:1: the manifest declares no [[kernel]]",
        ),
    ];
    for (text, want) in cases {
        let got = err(text);
        assert!(
            got.contains(want),
            "want {want:?} in {got:?}\n--- manifest:\n{text}"
        );
    }
}

#[test]
fn a_missing_manifest_file_names_the_path() {
    let e = Manifest::from_path(Path::new("/no/such/fderiv.toml")).unwrap_err();
    assert!(e.to_string().contains("/no/such/fderiv.toml"), "{e}");
}

#[test]
fn a_mode_the_kernel_does_not_build_is_refused() {
    let ks = parse(&with("modes", "[\"forward\"]")).unwrap();
    let rules = RuleSet::embedded().unwrap();
    let e = ks[0]
        .build(KernelMode::Vjp, &rules, &Limits::default())
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("does not build vjp (modes: forward)"),
        "{e}"
    );
}
