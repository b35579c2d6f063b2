//! `.ci/render-snapshots` fails on a LaTeX snapshot pdflatex cannot compile and on a DOT
//! snapshot Graphviz cannot render, and passes on good ones. Needs pdflatex and dot
//! (`.ci/run` installs them); without them the test says so and checks nothing.

use std::path::Path;
use std::process::Command;
use tempfile::TempDir;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

const GOOD_TEX: &str = "\\documentclass{article}\n\\usepackage{amsmath}\n\\begin{document}\n\\begin{align*}\n  &x \\odot y\n\\end{align*}\n\\end{document}\n";
const GOOD_DOT: &str =
    "digraph term {\n  n0 [label=\"X\"];\n  n1 [label=\"exp\"];\n  n1 -> n0;\n}\n";

/// A fresh folder (removed when dropped) of two snapshots in insta's layout, with the given contents.
fn folder(tag: &str, tex: &str, dot: &str) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("fderiv-render-{tag}-"))
        .tempdir()
        .unwrap();
    let snap = |body: &str| format!("---\nsource: tests/notation_snapshots.rs\n---\n{body}");
    std::fs::write(dir.path().join("t_latex.snap"), snap(tex)).unwrap();
    std::fs::write(dir.path().join("t_dag_dot.snap"), snap(dot)).unwrap();
    dir
}

fn render(dir: &Path) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/render-snapshots");
    let o = Command::new(script)
        .env("SNAPSHOTS", dir)
        .output()
        .expect("the script runs");
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), text)
}

#[test]
fn broken_latex_or_dot_fails_the_render_check() {
    if !have("pdflatex") || !have("dot") {
        eprintln!("pdflatex or dot is not installed: skipped (.ci/run installs them)");
        return;
    }
    let (ok, text) = render(folder("good", GOOD_TEX, GOOD_DOT).path());
    assert!(ok, "{text}");
    assert!(
        text.contains("1 LaTeX snapshots compiled, 1 DOT snapshots rendered"),
        "{text}"
    );

    let unclosed = GOOD_TEX.replace("\\end{align*}\n", "");
    let (ok, text) = render(folder("tex", &unclosed, GOOD_DOT).path());
    assert!(!ok && text.contains("pdflatex failed"), "{text}");

    let unknown_package = GOOD_TEX.replace("amsmath", "no-such-package");
    let (ok, text) = render(folder("pkg", &unknown_package, GOOD_DOT).path());
    assert!(!ok && text.contains("pdflatex failed"), "{text}");

    let (ok, text) = render(folder("dot", GOOD_TEX, "digraph term {\n  n0 -> \n").path());
    assert!(!ok && text.contains("dot failed"), "{text}");
}

#[test]
fn an_empty_folder_fails_the_render_check() {
    if !have("pdflatex") || !have("dot") {
        eprintln!("pdflatex or dot is not installed: skipped (.ci/run installs them)");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("fderiv-render-empty-")
        .tempdir()
        .unwrap();
    let (ok, text) = render(dir.path());
    assert!(!ok && text.contains("no LaTeX or DOT snapshots"), "{text}");
}
