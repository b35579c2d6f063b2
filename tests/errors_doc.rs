//! Every row of `docs/errors.md`: the command runs in a fresh folder of fixtures and
//! must exit with the row's code and print the row's message. Adding an error to the
//! CLI is adding a row to the document (and a fixture here if it needs one).

mod common;

use common::raw_header;
use fderiv::run::npy::encode_tensor;
use fderiv::tensor::Tensor;
use std::path::Path;
use std::process::Command;

const DOC: &str = include_str!("../docs/errors.md");

/// One table row: message template, exit code, command line.
struct Row {
    message: String,
    code: i32,
    command: String,
}

/// The rows whose last cell is a command `fderiv ...`.
fn rows() -> Vec<Row> {
    DOC.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line
                .strip_prefix('|')?
                .strip_suffix('|')?
                .split(" | ")
                .map(str::trim)
                .collect();
            let [message, code, command] = cells.as_slice() else {
                return None;
            };
            let command = command.strip_prefix("`fderiv ")?.strip_suffix('`')?;
            Some(Row {
                message: message.trim_matches('`').to_string(),
                code: code.parse().ok()?,
                command: command.to_string(),
            })
        })
        .collect()
}

/// Splits a command line as a POSIX shell would for the forms the document uses:
/// words, '...' and "..." quoting, and "$(cat FILE)" (the file's contents, read in
/// `dir`).
fn words(line: &str, dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
            continue;
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            match c {
                ' ' => break,
                '\'' | '"' => {
                    chars.next();
                    let quoted: String = chars.by_ref().take_while(|&q| q != c).collect();
                    match quoted
                        .strip_prefix("$(cat ")
                        .and_then(|f| f.strip_suffix(')'))
                    {
                        Some(file) if c == '"' => {
                            word.push_str(&std::fs::read_to_string(dir.join(file)).unwrap())
                        }
                        _ => word.push_str(&quoted),
                    }
                }
                _ => {
                    word.push(c);
                    chars.next();
                }
            }
        }
        out.push(word);
    }
    out
}

/// Whether `text` contains the literal pieces of `template` in order (`{…}` matches
/// anything).
fn matches(template: &str, text: &str) -> bool {
    let mut rest = text;
    let mut t = template;
    loop {
        let (piece, after) = match t.find('{') {
            Some(i) => (&t[..i], t[i..].find('}').map(|j| &t[i + j + 1..])),
            None => (t, None),
        };
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
        match after {
            Some(a) => t = a,
            None => return true,
        }
    }
}

fn npy(dir: &Path, name: &str, dims: [usize; 3], data: Vec<f64>) -> Vec<u8> {
    let bytes = encode_tensor(&Tensor::new(dims, data).unwrap()).unwrap();
    std::fs::write(dir.join(name), &bytes).unwrap();
    bytes
}

fn f8_header(shape: &str) -> Vec<u8> {
    raw_header(&format!(
        "{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}"
    ))
}

/// A rule file: group algebra, one rule `x` with these lines after `name`.
fn rule(body: &str) -> String {
    format!("group = \"algebra\"\n[[rule]]\nname = \"x\"\n{body}")
}

fn rules_dir(dir: &Path, name: &str, files: &[(&str, &str)]) {
    let d = dir.join(name);
    std::fs::create_dir(&d).unwrap();
    for (f, text) in files {
        std::fs::write(d.join(f), text).unwrap();
    }
}

/// The fixtures the document's commands name (listed at the end of the document).
fn fixtures(dir: &Path) {
    let seq = |n: usize| (0..n).map(|i| i as f64 + 0.5).collect::<Vec<_>>();
    let x = npy(dir, "X.npy", [1, 2, 3], seq(6));
    npy(dir, "A.npy", [1, 2, 3], seq(6));
    npy(dir, "B.npy", [1, 3, 2], seq(6));
    npy(dir, "B_bad.npy", [1, 2, 2], seq(4));
    npy(dir, "W10.npy", [1, 3, 10], seq(30));
    npy(dir, "W10t.npy", [1, 10, 3], seq(30));
    npy(dir, "W12.npy", [1, 3, 12], seq(36));
    npy(dir, "W12t.npy", [1, 12, 3], seq(36));
    npy(dir, "huge_A.npy", [1, 1, 1], vec![1e300]);
    npy(dir, "huge_B.npy", [1, 1, 1], vec![1e300]);
    npy(dir, "wide_A.npy", [1, 1_000_000_000, 0], vec![]);
    npy(dir, "wide_B.npy", [1, 0, 1_000_000_000], vec![]);
    let mut i4 = raw_header("{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1, 2), }");
    i4.extend([1, 0, 0, 0, 2, 0, 0, 0]);
    let mut fortran = raw_header("{'descr': '<f8', 'fortran_order': True, 'shape': (1, 2, 3), }");
    fortran.extend(&x[x.len() - 48..]);
    let mut rank2 = f8_header("(2, 3)");
    rank2.extend(&x[x.len() - 48..]);
    let mut trailing = x.clone();
    trailing.extend([0u8; 8]);
    let mut long_header = b"\x93NUMPY\x02\x00".to_vec();
    long_header.extend(u32::MAX.to_le_bytes());
    let nested = format!("{}1{}", "(".repeat(20), ")".repeat(20));
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("i4.npy", i4),
        ("fortran.npy", fortran),
        ("rank2.npy", rank2),
        ("truncated.npy", x[..x.len() - 3].to_vec()),
        ("trailing.npy", trailing),
        ("garbage.npy", b"not a numpy file\n".to_vec()),
        ("headless.npy", x[..40].to_vec()),
        ("v7.npy", b"\x93NUMPY\x07\x00rest".to_vec()),
        ("long_header.npy", long_header),
        ("nested.npy", f8_header(&nested)),
        (
            "noshape.npy",
            raw_header("{'descr': '<f8', 'fortran_order': False, }"),
        ),
        ("negshape.npy", f8_header("(-1, 2, 3)")),
        ("notdict.npy", raw_header("[1, 2, 3]")),
        (
            "overflow.npy",
            f8_header("(4294967296, 4294967296, 4294967296)"),
        ),
        ("huge.npy", f8_header("(1024, 1048576, 1024)")),
        ("afile", b"a file".to_vec()),
    ];
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    std::fs::create_dir(dir.join("adir")).unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("loop2.npy", dir.join("loop.npy")).unwrap();
        std::os::unix::fs::symlink("loop.npy", dir.join("loop2.npy")).unwrap();
        std::os::unix::fs::symlink("missing.npy", dir.join("dangling.npy")).unwrap();
    }
    std::fs::create_dir(dir.join("has_S")).unwrap();
    std::fs::write(dir.join("has_S/S.npy"), &x).unwrap();
    std::fs::create_dir_all(dir.join("has_S_dir/S.npy")).unwrap();
    term_fixtures(dir);
    rule_fixtures(dir);
    manifest_fixtures(dir);
    let gen = dir.join("gen_stale");
    std::fs::create_dir(&gen).unwrap();
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/kernels/generated");
    for f in std::fs::read_dir(committed).unwrap() {
        let p = f.unwrap().path();
        std::fs::copy(&p, gen.join(p.file_name().unwrap())).unwrap();
    }
    let edited = gen.join("matmul_forward.rs");
    let text = std::fs::read_to_string(&edited).unwrap();
    std::fs::write(&edited, format!("{text}// edited\n")).unwrap();
}

fn term_fixtures(dir: &Path) {
    let deep = format!("{}X{}", "(exp ".repeat(300), ")".repeat(300));
    std::fs::write(dir.join("deep_term.txt"), deep).unwrap();
}

/// A manifest of one kernel `k` with these lines after `name`.
fn kernel(body: &str) -> String {
    format!("[[kernel]]\nname = \"k\"\n{body}")
}

fn manifest_fixtures(dir: &Path) {
    let ok = kernel("term = \"(exp X)\"\ninputs = { X = \"h,m,n\" }\nout = \"handwritten\"\n");
    let cases: [(&str, String); 13] = [
        (
            "m_nowrt.toml",
            kernel("term = \"(exp X)\"\ninputs = { X = \"h,m,n\" }\nwrt = []\n"),
        ),
        (
            "m_bench.toml",
            kernel("term = \"(exp X)\"\ninputs = { X = \"h,m,n\" }\nbench = [{ h = 1, m = 2 }]\n"),
        ),
        (
            "m_nobench.toml",
            kernel("term = \"(exp X)\"\ninputs = { X = \"h,m,n\" }\n"),
        ),
        (
            "m_nomodes.toml",
            kernel("term = \"(exp X)\"\ninputs = { X = \"h,m,n\" }\nmodes = []\n"),
        ),
        ("m_ok.toml", ok.clone()),
        (
            "m_fwd.toml",
            kernel("term = \"(exp X)\"\ninputs = { X = \"h,m,n\" }\nmodes = [\"forward\"]\n"),
        ),
        (
            "m_term.toml",
            kernel("term = \"(frob X)\"\ninputs = { X = \"h,m,n\" }\n"),
        ),
        (
            "m_shapes.toml",
            kernel("term = \"(bmm A B)\"\ninputs = { A = \"h,m,n\", B = \"h,p,n\" }\n"),
        ),
        (
            "m_save.toml",
            kernel(
                "term = \"(softmax X)\"\ninputs = { X = \"h,m,n\" }\nsave = { T = \"(exp X)\" }\n",
            ),
        ),
        (
            "m_wrt.toml",
            kernel("term = \"(exp X)\"\ninputs = { X = \"h,m,n\" }\nwrt = [\"Y\"]\n"),
        ),
        ("m_dup.toml", format!("{ok}{ok}")),
        (
            "m_mode.toml",
            kernel("term = \"(exp X)\"\ninputs = { X = \"h,m,n\" }\nmodes = [\"sideways\"]\n"),
        ),
        ("m_garbage.toml", "[[kernel]\nname = \"k\"\n".to_string()),
    ];
    for (name, text) in &cases {
        std::fs::write(dir.join(name), text).unwrap();
    }
    std::fs::create_dir(dir.join("handwritten")).unwrap();
    std::fs::write(dir.join("handwritten/k_forward.rs"), "// mine\n").unwrap();
}

fn rule_fixtures(dir: &Path) {
    let deep = format!("{}?a{}", "(neg ".repeat(300), ")".repeat(300));
    let ok_rule = rule("lhs = \"(neg (neg ?a))\"\nrhs = \"?a\"\nlean = \"neg_neg\"\n");
    let big = format!("{ok_rule}#{}\n", "x".repeat((1 << 20) - ok_rule.len() - 1));
    rules_dir(dir, "rules_empty", &[]);
    rules_dir(
        dir,
        "rules_toml",
        &[("a.toml", "group = \"algebra\"\n[[rule]\n")],
    );
    rules_dir(dir, "rules_group", &[("a.toml", "group = \"magic\"\n")]);
    let cases: [(&str, String); 8] = [
        (
            "rules_pattern",
            rule("lhs = \"(frob ?a)\"\nrhs = \"?a\"\nlean = \"none\"\n"),
        ),
        (
            "rules_deep",
            rule(&format!(
                "lhs = \"{deep}\"\nrhs = \"?a\"\nlean = \"none\"\n"
            )),
        ),
        (
            "rules_unbound",
            rule("lhs = \"(neg ?a)\"\nrhs = \"(+ ?a ?b)\"\nlean = \"none\"\n"),
        ),
        (
            "rules_unbound_bidi",
            rule("lhs = \"(+ ?a ?b)\"\nrhs = \"?a\"\nlean = \"none\"\nbidirectional = true\n"),
        ),
        (
            "rules_condition",
            rule("lhs = \"(neg ?a)\"\nrhs = \"?a\"\nlean = \"none\"\nif = [\"smooth ?a\"]\n"),
        ),
        (
            "rules_illtyped",
            rule("lhs = \"(g+ ?a (exp ?a))\"\nrhs = \"?a\"\nlean = \"none\"\n"),
        ),
        (
            "rules_types",
            rule("lhs = \"(exp ?a)\"\nrhs = \"(grad ?a ?a)\"\nlean = \"none\"\n"),
        ),
        ("rules_big", big),
    ];
    for (name, text) in &cases {
        rules_dir(dir, name, &[("a.toml", text)]);
    }
    rules_dir(
        dir,
        "rules_duplicate",
        &[("a.toml", &ok_rule), ("b.toml", &ok_rule)],
    );
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("rewrites");
    let unsound = dir.join("rules_unsound");
    std::fs::create_dir(&unsound).unwrap();
    for f in std::fs::read_dir(shipped).unwrap() {
        let p = f.unwrap().path();
        let mut text = std::fs::read_to_string(&p).unwrap();
        if p.ends_with("differentiation.toml") {
            text.push_str("\n[[rule]]\nname = \"exp-bad\"\nlhs = \"(jvp (exp ?a))\"\nrhs = \"(jvp ?a)\"\nlean = \"none\"\n");
        }
        std::fs::write(unsound.join(p.file_name().unwrap()), text).unwrap();
    }
}

#[test]
fn the_table_parser_and_matcher_work() {
    assert!(rows().len() > 60, "{} rows", rows().len());
    assert!(matches("a {x} c", "xx a bbb c"));
    assert!(!matches("a {x} c", "c a"));
    let dir = Path::new(".");
    assert_eq!(
        words("derive --expr '(exp X)' --shape X=h,m,n", dir),
        ["derive", "--expr", "(exp X)", "--shape", "X=h,m,n"]
    );
}

#[test]
fn every_documented_error_is_printed_with_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    fixtures(dir.path());
    let mut failures = Vec::new();
    for row in rows() {
        let out = Command::new(env!("CARGO_BIN_EXE_fderiv"))
            .args(words(&row.command, dir.path()))
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let ok = out.status.code() == Some(row.code)
            && stderr.starts_with("error: ")
            && matches(&row.message, &stderr)
            && !stderr.contains("panicked");
        if !ok {
            failures.push(format!(
                "fderiv {}\n  want exit {} and `{}`\n  got exit {:?}: {}",
                row.command,
                row.code,
                row.message,
                out.status.code(),
                stderr.chars().take(400).collect::<String>()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
