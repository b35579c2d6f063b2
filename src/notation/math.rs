//! The Unicode notation of the Lean file and of papers: `s ⊙ (G − rowsum(s ⊙ G))`
//! where `s = softmax(X)`. Every printed term reads back with [`super::parse()`].
//!
//! | term | notation | | term | notation |
//! |---|---|---|---|---|
//! | `(+ a b)`, `(- a b)` | `a + b`, `a − b` | | `(T a)`, `(inv a)` | `aᵀ`, `a⁻¹` |
//! | `(* a b)` | `a ⊙ b` (entrywise) | | `(exp a)`, `(rowsum a)`, `(softmax a)` | `exp(a)` … |
//! | `(bmm a b)` | `a · b` (per head) | | `(tan X)`, `(jvp e)` | `dX`, `d(e)` |
//! | `(/ a b)`, `(neg a)` | `a / b`, `−a` | | `(vjp e G)`, `(adj E G)` | `vjp(e, G)`, `adj(E, G)` |
//! | `(grad A w)` | `∇A = w` | | `(g+ x y)` | `x; y` |
//!
//! Precedence, loosest first: `;`, `∇A =`, `+ −`, `⊙ · /` (all left-associative), unary
//! `−`, postfix `ᵀ ⁻¹`. Numbers are exact: `2`, `−1/2` (a fraction has no spaces;
//! the quotient of two terms does: `1 / X`). A name that is not a plain identifier, or
//! that could be misread (`dX`, `exp`), is quoted: `«dX»`.

use super::term::{
    plain_binding, render, render_defs, Binding, Func, Infix, Names, Postfix, Style,
};
use super::NotationError;
use crate::ir::{parse_term, Const, Expr, Op};
use crate::rules::RuleSet;
use crate::trace::Trace;
use egg::{ENodeOrVar, Id, Language, RecExpr, Symbol};
use std::collections::HashMap;
use std::fmt::Write as _;

/// Words the notation uses for functions; an input with such a name is quoted.
pub const RESERVED: &[&str] = &[
    "exp",
    "rowsum",
    "softmax",
    "d",
    "vjp",
    "adj",
    "tan",
    "where",
    "split",
    "merge",
    "reshape",
    "unreshape",
    "flat",
    "unflat",
    "swap",
];

/// Whether `c` may start a name.
pub fn is_name_start(c: char) -> bool {
    (c.is_alphabetic() || c == '_' || c == '?') && !is_operator_letter(c)
}

/// Whether `c` may continue a name.
pub fn is_name_continue(c: char) -> bool {
    (c.is_alphanumeric() || c == '_' || c == '?' || c == '\'') && !is_operator_letter(c)
}

/// `ᵀ`, `¹` (of `⁻¹`) are letters or digits to Unicode but operators here.
fn is_operator_letter(c: char) -> bool {
    matches!(c, 'ᵀ' | '¹')
}

/// Whether `name` prints as itself (else it is quoted `«name»`).
pub fn is_plain(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    is_name_start(first)
        && chars.all(is_name_continue)
        && !RESERVED.contains(&name)
        && !(first == 'd' && name.len() > 1)
}

/// The Unicode style.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unicode;

impl Style for Unicode {
    fn name(&self, name: &str) -> String {
        if is_plain(name) {
            name.to_string()
        } else {
            format!("«{name}»")
        }
    }
    fn param(&self, name: &str) -> String {
        format!("@{name}")
    }
    fn tangent(&self, name: &str) -> String {
        format!("d{}", self.name(name))
    }
    fn number(&self, c: &Const) -> String {
        c.to_string().replace('-', "−")
    }
    fn binding(&self, b: &Binding) -> String {
        plain_binding(b)
    }
    fn infix(&self, op: Infix) -> &'static str {
        match op {
            Infix::Seq => "; ",
            Infix::Add => " + ",
            Infix::Sub => " − ",
            Infix::Mul => " ⊙ ",
            Infix::Bmm => " · ",
            Infix::Div => " / ",
        }
    }
    fn neg(&self, x: &str) -> String {
        format!("−{x}")
    }
    fn postfix(&self, op: Postfix, x: &str) -> String {
        match op {
            Postfix::T => format!("{x}ᵀ"),
            Postfix::Inv => format!("{x}⁻¹"),
        }
    }
    fn func(&self, f: Func, args: &[String]) -> String {
        let name = match f {
            Func::Exp => "exp",
            Func::RowSum => "rowsum",
            Func::Softmax => "softmax",
            Func::D => "d",
            Func::Vjp => "vjp",
            Func::Adj => "adj",
            Func::Tan => "tan",
            Func::Layout(l) => l.name(),
        };
        format!("{name}({})", args.join(", "))
    }
    fn paren(&self, x: &str) -> String {
        format!("({x})")
    }
    fn grad(&self, name: &str, w: &str) -> String {
        format!("∇{name} = {w}")
    }
}

/// The input names of terms, which shared-subterm names must avoid.
pub fn input_names<'a>(exprs: impl IntoIterator<Item = &'a Expr>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in exprs {
        for n in e.as_ref() {
            if let Op::Input(s) = n {
                if !out.iter().any(|o| o == s.as_str()) {
                    out.push(s.to_string());
                }
            }
        }
    }
    out
}

/// `body` followed by its `where` clause, one definition per line.
fn with_where(body: &str, defs: &[(String, String)], indent: &str) -> String {
    let mut s = body.to_string();
    for (i, (name, def)) in defs.iter().enumerate() {
        let lead = if i == 0 { "where" } else { "     " };
        let comma = if i + 1 < defs.len() { "," } else { "" };
        let _ = write!(s, "\n{indent}{lead} {name} = {def}{comma}");
    }
    s
}

/// A term in the notation, its shared subterms named in a `where` clause.
pub fn term(expr: &Expr) -> String {
    let mut names = Names::avoiding(input_names([expr]));
    names.name_shared(expr);
    with_where(
        &render(expr, &names, &Unicode),
        &render_defs(&names, &Unicode),
        "  ",
    )
}

/// Parses a term of a trace (the trace stores s-expression text).
pub fn trace_term(text: &str) -> Result<Expr, NotationError> {
    parse_term(text).map_err(|why| NotationError::Term {
        text: text.to_string(),
        why,
    })
}

/// The terms of a trace, parsed: forward, start, each step's term, result.
pub struct TraceTerms {
    /// The forward term.
    pub forward: Expr,
    /// The start term.
    pub start: Expr,
    /// The term after each step.
    pub steps: Vec<Expr>,
    /// The result.
    pub result: Expr,
}

impl TraceTerms {
    /// Parses every term of `t`.
    pub fn of(t: &Trace) -> Result<TraceTerms, NotationError> {
        Ok(TraceTerms {
            forward: trace_term(&t.forward)?,
            start: trace_term(&t.start)?,
            steps: t
                .steps
                .iter()
                .map(|s| trace_term(&s.term))
                .collect::<Result<_, _>>()?,
            result: trace_term(&t.result)?,
        })
    }

    /// One table of names for the whole trace: every subterm shared inside some term,
    /// named once, so a name means the same thing on every line.
    pub fn names(&self) -> Names {
        let all = || {
            std::iter::once(&self.start)
                .chain(&self.steps)
                .chain(std::iter::once(&self.result))
        };
        let mut names = Names::avoiding(input_names(all()));
        for e in all() {
            names.name_shared(e);
        }
        names
    }
}

/// A trace in the notation: the shared subterms named once at the top, then each step
/// with its rule, group, Lean fact and the term after it.
pub fn trace(t: &Trace) -> Result<String, NotationError> {
    let terms = TraceTerms::of(t)?;
    let names = terms.names();
    let texts = std::iter::once(&t.start)
        .chain(t.steps.iter().map(|s| &s.term))
        .chain(std::iter::once(&t.result));
    let exprs = std::iter::once(&terms.start)
        .chain(&terms.steps)
        .chain(std::iter::once(&terms.result));
    let shown: HashMap<&str, String> = texts
        .zip(exprs)
        .map(|(text, e)| (text.as_str(), render(e, &names, &Unicode)))
        .collect();
    let forward = render(&terms.forward, &Names::default(), &Unicode);
    let defs = render_defs(&names, &Unicode);
    let preface = if defs.is_empty() {
        String::new()
    } else {
        format!("{}\n", with_where("", &defs, "").trim_start())
    };
    let show = |text: &str| shown.get(text).cloned().unwrap_or_else(|| text.to_string());
    Ok(t.to_text_with(&forward, &preface, &show))
}

/// A rule side as a term: each pattern variable `?a` becomes the name `?a`.
pub fn pattern_term(p: &RecExpr<ENodeOrVar<Op>>) -> Expr {
    let mut out = Expr::default();
    for node in p.as_ref() {
        let op = match node {
            ENodeOrVar::ENode(op) => op.clone().map_children(|c| Id::from(usize::from(c))),
            ENodeOrVar::Var(v) => Op::Input(Symbol::from(v.to_string())),
        };
        out.add(op);
    }
    out
}

/// The rule list in the notation: name, group, `lhs ⇒ rhs` (`⇔` both ways), the side
/// conditions and the Lean fact.
pub fn rules(set: &RuleSet) -> String {
    let mut s = String::new();
    let plain = Names::default();
    for r in &set.rules {
        let arrow = if r.bidirectional { "⇔" } else { "⇒" };
        let lhs = render(&pattern_term(&r.lhs_pattern.ast), &plain, &Unicode);
        let rhs = render(&pattern_term(&r.rhs_pattern.ast), &plain, &Unicode);
        let _ = writeln!(s, "{} [{}]", r.name, r.group);
        let _ = writeln!(s, "    {lhs}  {arrow}  {rhs}");
        for (kind, var) in &r.conditions.0 {
            let _ = writeln!(s, "    if {kind} {var}");
        }
        let _ = writeln!(s, "    lean: {}", r.lean);
    }
    let _ = writeln!(s, "{} rules from {}", set.rules.len(), set.source);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn math(text: &str) -> String {
        term(&parse_term(text).unwrap())
    }

    #[test]
    fn the_softmax_vjp_reads_as_in_the_lean_file() {
        assert_eq!(
            math("(grad X (* (softmax X) (- G (rowsum (* (softmax X) G)))))"),
            "∇X = s ⊙ (G − rowsum(s ⊙ G))\n  where s = softmax(X)"
        );
    }

    #[test]
    fn precedence_and_associativity_add_only_needed_parentheses() {
        assert_eq!(math("(- (- A B) (- C D))"), "A − B − (C − D)");
        assert_eq!(math("(* (+ A B) C)"), "(A + B) ⊙ C");
        assert_eq!(math("(bmm A (T (inv B)))"), "A · B⁻¹ᵀ");
        assert_eq!(math("(T (neg A))"), "(−A)ᵀ");
        assert_eq!(math("(neg (* A B))"), "−(A ⊙ B)");
        assert_eq!(math("(neg 2)"), "−(2)");
        assert_eq!(math("(* -1/2 (tan A))"), "−1/2 ⊙ dA");
        assert_eq!(math("(/ 1 X)"), "1 / X");
        assert_eq!(
            math("(g+ (grad A (bmm G (T B))) (grad B (bmm (T A) G)))"),
            "∇A = G · Bᵀ; ∇B = Aᵀ · G"
        );
    }

    #[test]
    fn names_that_could_be_misread_are_quoted() {
        assert_eq!(math("(+ dX exp)"), "«dX» + «exp»");
        assert_eq!(math("(tan dX)"), "d«dX»");
        assert_eq!(math("(jvp (tan X))"), "d(dX)");
    }
}
