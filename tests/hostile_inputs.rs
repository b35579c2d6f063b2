//! Random and mutated inputs to every parser the CLI exposes (terms, rule files,
//! manifests, `.npy` files) and random argument lists to the binary (with mutated
//! `--manifest` files): never a panic, and every refusal
//! says something. The fuzz targets in `fuzz/` do the same at length (docs/fuzzing.md);
//! these properties keep it so in the normal test suite, with modest case counts.

use fderiv::derive::{Mode, Request};
use fderiv::ir::parse_term;
use fderiv::ir::shape::{infer_term, parse_shape, ShapeEnv};
use fderiv::manifest::parse_manifest;
use fderiv::rules::{RuleSet, Source};
use fderiv::run::npy::{decode_tensor, encode_tensor};
use fderiv::tensor::Tensor;
use proptest::prelude::*;
use std::path::Path;
use std::process::Command;

/// One edit of a byte string: flip a byte, insert one, delete a run, repeat a run.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize, usize),
    Repeat(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Edit::Repeat(i, n)),
    ]
}

fn mutate(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for e in edits {
        let len = v.len().max(1);
        match *e {
            Edit::Set(i, b) if !v.is_empty() => v[i % len] = b,
            Edit::Insert(i, b) => v.insert(i % (v.len() + 1), b),
            Edit::Delete(i, n) if !v.is_empty() => {
                let at = i % len;
                v.drain(at..(at + n).min(v.len()));
            }
            Edit::Repeat(i, n) if !v.is_empty() => {
                let at = i % len;
                let run: Vec<u8> = v[at..(at + n).min(v.len())].to_vec();
                v.splice(at..at, run);
            }
            _ => {}
        }
    }
    v
}

/// A shipped input, mutated by up to `max_edits` edits.
fn mutated(seeds: Vec<Vec<u8>>, max_edits: usize) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(seeds),
        prop::collection::vec(edit(), 0..max_edits),
    )
        .prop_map(|(s, e)| mutate(&s, &e))
}

fn env(pairs: &[(&str, &str)]) -> ShapeEnv {
    pairs
        .iter()
        .map(|(k, v)| ((*k).into(), parse_shape(v).unwrap()))
        .collect()
}

/// What the term fuzz target checks: a term or a non-empty error, printing re-parses.
fn check_term(text: &str) {
    let term = match parse_term(text) {
        Ok(t) => t,
        Err(e) => return assert!(!e.is_empty()),
    };
    assert_eq!(parse_term(&term.to_string()).as_ref(), Ok(&term));
    let shapes = env(&[("A", "h,m,n"), ("B", "h,n,p"), ("X", "0,1,4")]);
    if let Err(e) = infer_term(&term, &shapes) {
        assert!(!e.to_string().is_empty());
    }
    for mode in [Mode::Jvp, Mode::Vjp] {
        if let Err(e) = Request::new(text, shapes.clone(), None, mode) {
            assert!(!e.to_string().is_empty());
        }
    }
}

fn term_seeds() -> Vec<Vec<u8>> {
    [
        "(bmm A B)",
        "(vjp (bmm (softmax (bmm A (T B))) X) G)",
        "(* -1/2 (exp (+ A 0.25)))",
        "(g+ (grad A (bmm G (T B))) (grad B (bmm (T A) G)))",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn rule_seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rewrites");
    let mut files: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|f| std::fs::read(f.unwrap().path()).unwrap())
        .collect();
    files.sort();
    files
}

fn npy_seeds() -> Vec<Vec<u8>> {
    let t = |dims, data| encode_tensor(&Tensor::new(dims, data).unwrap()).unwrap();
    vec![
        t(
            [1, 2, 3],
            vec![1.5, -2.0, 0.0, f64::NAN, f64::INFINITY, 1e-310],
        ),
        t([2, 0, 3], vec![]),
        t([1, 1, 1], vec![7.0]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_text_is_a_term_or_an_error(text in "[()A-Za-z0-9?/.+*_ {}%\"\t\x0c'-]{0,60}") {
        check_term(&text);
    }

    #[test]
    fn mutated_terms_are_terms_or_errors(bytes in mutated(term_seeds(), 6)) {
        if let Ok(text) = std::str::from_utf8(&bytes) {
            check_term(text);
        }
    }

    #[test]
    fn mutated_npy_files_are_tensors_or_errors(bytes in mutated(npy_seeds(), 6)) {
        match decode_tensor(&bytes, Path::new("m.npy"), 1 << 16) {
            Ok(t) => prop_assert_eq!(t.data().len(), t.dims().iter().product::<usize>()),
            Err(e) => prop_assert!(e.to_string().contains("m.npy"), "{}", e),
        }
    }

    #[test]
    fn random_bytes_are_not_npy_files(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let e = decode_tensor(&bytes, Path::new("r.npy"), 1 << 16).unwrap_err();
        prop_assert!(e.to_string().contains("r.npy"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn mutated_rule_files_load_or_are_located(bytes in mutated(rule_seeds(), 4)) {
        let Ok(text) = String::from_utf8(bytes) else { return Ok(()) };
        let files = [("m.toml".to_string(), text)];
        match RuleSet::from_files(Source::Embedded, &files) {
            Ok(set) => {
                if let Err(e) = set.rewrites() {
                    prop_assert!(!e.to_string().is_empty());
                }
            }
            Err(e) => prop_assert!(e.to_string().starts_with("m.toml:"), "{}", e),
        }
    }
}

/// Words random argument lists are drawn from: every subcommand but `verify` and `emit`
/// (slow, and `emit` writes into the source tree), their flags, good and bad values.
const WORDS: &[&str] = &[
    "derive",
    "trace",
    "rules",
    "list",
    "check",
    "run",
    "matmul",
    "softmax_last",
    "forward",
    "jvp",
    "vjp",
    "--mode",
    "--expr",
    "(bmm A B)",
    "(softmax X)",
    "(frob",
    "--shape",
    "A=h,m,n",
    "B=h,n,p",
    "X=2,3,0",
    "X=1,2",
    "--wrt",
    "A",
    "--format",
    "json",
    "text",
    "--plan",
    "--trace",
    "--iter-limit",
    "--node-limit",
    "--time-limit",
    "0",
    "1",
    "-1",
    "1e300",
    "nan",
    "3",
    "--rules",
    ".",
    "missing",
    "--input",
    "X=X.npy",
    "A=X.npy",
    "B=B.npy",
    "G=X.npy",
    "dX=X.npy",
    "X=missing.npy",
    "X=.",
    "--out",
    "out",
    "--force",
    "--max-elements",
    "5",
    "--cases",
    "2",
    "--seed",
    "--manifest",
    "g.toml",
    "fderiv.toml",
    "missing.toml",
    "--help",
    "-h",
    "--version",
    "=",
    "",
];

/// The crate's manifest and a variant with a saved subterm, as seeds for mutation.
fn manifest_seeds() -> Vec<Vec<u8>> {
    vec![
        include_bytes!("../fderiv.toml").to_vec(),
        b"[[kernel]]\nname = \"k\"\nterm = \"(bmm (softmax X) B)\"\ninputs = { X = \"h,m,n\", B = \"h,n,p\" }\nsave = { S = \"(softmax X)\" }\nwrt = [\"X\"]\nmodes = [\"vjp\"]\n".to_vec(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn mutated_manifests_parse_or_are_located(bytes in mutated(manifest_seeds(), 6)) {
        let Ok(text) = String::from_utf8(bytes) else { return Ok(()) };
        match parse_manifest("m.toml", &text, Path::new(".")) {
            Ok(kernels) => prop_assert!(kernels.iter().all(|k| !k.modes.is_empty())),
            Err(e) => prop_assert!(e.to_string().starts_with("m.toml:"), "{}", e),
        }
    }
}

fn cli_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let t = |dims, n: usize| Tensor::new(dims, (0..n).map(|i| i as f64).collect()).unwrap();
    std::fs::write(
        dir.path().join("X.npy"),
        encode_tensor(&t([1, 2, 3], 6)).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("B.npy"),
        encode_tensor(&t([1, 3, 2], 6)).unwrap(),
    )
    .unwrap();
    dir
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn random_argument_lists_never_panic(
        args in prop::collection::vec(prop::sample::select(WORDS), 0..8),
        manifest in mutated(manifest_seeds(), 6),
    ) {
        let dir = cli_dir();
        // `--manifest g.toml`: a mutated manifest, often garbage.
        std::fs::write(dir.path().join("g.toml"), &manifest).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_fderiv"))
            .args(&args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        prop_assert!(!stderr.contains("panicked"), "{:?}: {}", args, stderr);
        match out.status.code() {
            Some(0) => {}
            Some(1 | 2) => prop_assert!(!stderr.trim().is_empty(), "{:?} failed silently", args),
            other => prop_assert!(false, "{:?} exited with {:?}: {}", args, other, stderr),
        }
    }
}

#[test]
fn the_argument_property_can_fail() {
    // The panic this property would have caught before --time-limit was range-checked.
    let dir = cli_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_fderiv"))
        .args(["derive", "matmul", "--time-limit", "1e300"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--time-limit must be"));
}
