//! The notation as LaTeX: a document that compiles with plain `pdflatex` and only
//! amsmath and geometry, one `align*` block per trace, one line per step with the rule
//! name beside it and its Lean fact as a comment.

use super::math::TraceTerms;
use super::term::{render, render_defs, Binding, Func, Infix, Names, Postfix, Style};
use super::NotationError;
use crate::ir::{Const, Expr};
use crate::trace::Trace;
use num_traits::{One, Signed};
use std::fmt::Write as _;

/// The LaTeX style.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latex;

/// Text safe inside `\text{…}` and on a comment line: TeX specials escaped, other
/// non-ASCII characters kept only in comments (`comment` = true).
pub fn escape_text(s: &str, comment: bool) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            _ if comment => out.push(c),
            '\\' => out.push_str("\\textbackslash{}"),
            '{' | '}' | '#' | '$' | '%' | '&' | '_' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '←' => out.push_str("$\\leftarrow$"),
            '×' => out.push_str("$\\times$"),
            c if c.is_ascii() => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

impl Style for Latex {
    fn name(&self, name: &str) -> String {
        if name.len() == 1 && name.chars().all(|c| c.is_ascii_alphabetic()) {
            return name.to_string();
        }
        format!("\\mathit{{{}}}", escape_text(name, false))
    }
    fn param(&self, name: &str) -> String {
        format!("\\mathtt{{@}}{}", self.name(name))
    }
    fn tangent(&self, name: &str) -> String {
        format!("\\mathrm{{d}}{}", self.name(name))
    }
    fn number(&self, c: &Const) -> String {
        let r = &c.0;
        let sign = if r.is_negative() { "-" } else { "" };
        if r.denom().is_one() {
            r.to_string()
        } else {
            format!("{sign}\\tfrac{{{}}}{{{}}}", r.numer().abs(), r.denom())
        }
    }
    fn binding(&self, b: &Binding) -> String {
        match b.index {
            None => b.letter.to_string(),
            Some(i) => format!("{}_{{{i}}}", b.letter),
        }
    }
    fn infix(&self, op: Infix) -> &'static str {
        match op {
            Infix::Seq => ";\\quad ",
            Infix::Add => " + ",
            Infix::Sub => " - ",
            Infix::Mul => " \\odot ",
            Infix::Bmm => " \\cdot ",
            Infix::Div => " / ",
        }
    }
    fn neg(&self, x: &str) -> String {
        format!("-{x}")
    }
    fn postfix(&self, op: Postfix, x: &str) -> String {
        match op {
            Postfix::T => format!("{{{x}}}^{{\\top}}"),
            Postfix::Inv => format!("{{{x}}}^{{-1}}"),
        }
    }
    fn func(&self, f: Func, args: &[String]) -> String {
        let name = match f {
            Func::Exp => "\\exp",
            Func::RowSum => "\\operatorname{rowsum}",
            Func::Softmax => "\\operatorname{softmax}",
            Func::D => "\\mathrm{d}",
            Func::Vjp => "\\operatorname{vjp}",
            Func::Adj => "\\operatorname{adj}",
            Func::Tan => "\\operatorname{tan}",
            Func::Layout(l) => {
                return format!("\\operatorname{{{}}}({})", l.name(), args.join(", "))
            }
        };
        format!("{name}({})", args.join(", "))
    }
    fn paren(&self, x: &str) -> String {
        format!("({x})")
    }
    fn grad(&self, name: &str, w: &str) -> String {
        format!("\\nabla_{{{name}}}\\colon {w}")
    }
}

/// The preamble, on a page `lines` display lines high (so a whole trace fits on one
/// page that needs no cropping; a longer one breaks across pages).
fn preamble(lines: usize) -> String {
    let height = 4 + (lines * 6).div_ceil(10);
    format!(
        "\\documentclass{{article}}
\\usepackage{{amsmath}}
\\usepackage[paperwidth=25cm,paperheight={height}cm,margin=1cm]{{geometry}}
\\allowdisplaybreaks
\\pagestyle{{empty}}
\\begin{{document}}
"
    )
}

fn where_line(names: &Names) -> String {
    let defs: Vec<String> = render_defs(names, &Latex)
        .into_iter()
        .map(|(n, d)| format!("${n} = {d}$"))
        .collect();
    if defs.is_empty() {
        String::new()
    } else {
        format!("\\noindent where {}.\n", defs.join(",\\quad "))
    }
}

/// A term as a LaTeX document: the display, then its `where` clause.
pub fn term_document(expr: &Expr) -> String {
    let mut names = Names::avoiding(super::math::input_names([expr]));
    names.name_shared(expr);
    let body = render(expr, &names, &Latex);
    format!(
        "% fderiv: {expr}\n{}\\[\n  {body}\n\\]\n{}\\end{{document}}\n",
        preamble(2),
        where_line(&names)
    )
}

/// A trace as a LaTeX document: the shared subterms named once, then an `align*` block
/// with the start term and one line per step (`&= term && \text{n. rule}`), each
/// step's Lean fact (and the folded laws) as a comment at the end of its line.
pub fn trace_document(t: &Trace) -> Result<String, NotationError> {
    let terms = TraceTerms::of(t)?;
    let names = terms.names();
    let show = |e: &Expr| render(e, &names, &Latex);
    let forward = render(&terms.forward, &Names::default(), &Latex);
    let mut s = format!(
        "% fderiv trace: {} of {}\n{}",
        t.mode,
        t.forward,
        preamble(t.steps.len() + 1)
    );
    let _ = writeln!(
        s,
        "\\noindent\\textbf{{{} of}} ${forward}$\\par",
        t.mode.to_uppercase()
    );
    s.push_str(&where_line(&names));
    s.push_str("\\begin{align*}\n");
    let end = if t.steps.is_empty() { "" } else { " \\\\" };
    let _ = writeln!(s, "  & {} && \\text{{start}}{end}", show(&terms.start));
    for (step, e) in t.steps.iter().zip(&terms.steps) {
        let arrow = if step.direction == "backward" {
            " \\;(\\leftarrow)"
        } else {
            ""
        };
        let mut comment = format!("{} [{}]", step.rule, step.group);
        if !step.folded.is_empty() {
            let _ = write!(comment, " uses {}", step.folded.join(", "));
        }
        if !step.lean.is_empty() {
            let _ = write!(comment, "; lean: {}", step.lean);
        }
        let end = if step.n == t.steps.len() { "" } else { " \\\\" };
        let _ = writeln!(
            s,
            "  &= {} && \\text{{{}. {}}}{arrow}{end} % {}",
            show(e),
            step.n,
            escape_text(&step.rule, false),
            escape_text(&comment, true)
        );
    }
    s.push_str("\\end{align*}\n");
    let _ = writeln!(
        s,
        "\\noindent {} steps shown, {} egg rewrites; egg stopped: {}.",
        t.steps.len(),
        t.raw_steps,
        escape_text(&t.stop, false)
    );
    s.push_str("\\end{document}\n");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::parse_term;

    #[test]
    fn operators_and_numbers_are_latex() {
        let e = parse_term("(* -1/2 (bmm (T (inv A)) (tan B)))").unwrap();
        assert_eq!(
            render(&e, &Names::default(), &Latex),
            "-\\tfrac{1}{2} \\odot ({{A}^{-1}}^{\\top} \\cdot \\mathrm{d}B)"
        );
    }

    #[test]
    fn text_escapes_tex_specials() {
        assert_eq!(escape_text("a_b%c", false), "a\\_b\\%c");
        assert_eq!(escape_text("x ×2", false), "x $\\times$2");
        assert_eq!(escape_text("⟨y,δ⟩", true), "⟨y,δ⟩");
    }
}
