//! The rule-file format and its static checks.
//!
//! ```toml
//! group = "differentiation"          # differentiation | adjoint | algebra | definition
//!
//! [[rule]]
//! name = "jvp-bmm"                   # unique across all files
//! lhs  = "(jvp (bmm ?a ?b))"         # egg pattern syntax
//! rhs  = "(+ (bmm (jvp ?a) ?b) (bmm ?a (jvp ?b)))"
//! lean = "ContinuousLinearMap.hasFDerivAt_of_bilinear"
//! if   = ["tangent_free ?b"]         # optional: tangent_free, row_const, is_input, is_const
//! bidirectional = false              # optional: also rewrite rhs => lhs
//! ```
//!
//! Errors carry `file:line:column` and the rule name: malformed TOML, unknown
//! operators, rhs variables the lhs does not bind, ill-typed sides, duplicates.

use crate::ir::analysis::TensorAnalysis;
use crate::ir::shape::{Inference, ShapeError, Ty};
use crate::ir::Op;
use egg::{Id, Pattern, Subst, Var};
use serde::Deserialize;
use std::fmt;
use std::ops::Range;
use toml::Spanned;

/// A position in a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file's name.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

impl Location {
    /// The location of byte `offset` of `text` (clamped to its end) in `file`.
    pub fn at(file: &str, text: &str, offset: usize) -> Location {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Location {
            file: file.to_string(),
            line,
            col,
        }
    }
}

/// What is wrong with a rule or rule file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleErrorKind {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Io(String),
    /// The TOML is malformed or has unknown keys.
    #[error("malformed rule file: {0}")]
    Toml(String),
    /// A side is not a pattern of the IR (syntax or unknown operator).
    #[error("{side} is not a pattern of the IR: {message}")]
    Pattern {
        /// `lhs` or `rhs`.
        side: &'static str,
        /// The parser's message.
        message: String,
    },
    /// A variable on the right is not bound by the left.
    #[error("{var} in the {side} is not bound by the {other}")]
    Unbound {
        /// The variable.
        var: String,
        /// Where it occurs.
        side: &'static str,
        /// The side that must bind it.
        other: &'static str,
    },
    /// A condition that is not `tangent_free ?x`, `row_const ?x` or `is_input ?x`, or
    /// names a variable the lhs does not bind.
    #[error("bad condition {0:?}: expected tangent_free ?x, row_const ?x, is_input ?x or is_const ?x with ?x bound by the lhs")]
    Condition(String),
    /// The two sides do not type-check together.
    #[error("sides are ill-typed: {0}")]
    Shape(ShapeError),
    /// The two sides have different types.
    #[error("lhs has type {lhs} but rhs has type {rhs}")]
    Types {
        /// The lhs type.
        lhs: String,
        /// The rhs type.
        rhs: String,
    },
    /// A second rule with the same name.
    #[error("duplicate rule name (first defined at {first})")]
    Duplicate {
        /// Where the first one is.
        first: Location,
    },
    /// egg refused the rewrite.
    #[error("egg refused the rewrite: {0}")]
    Egg(String),
}

/// A rule-file error with its location and rule name.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct RuleError {
    /// Where (file:line:column), when known.
    pub location: Option<Location>,
    /// The rule's name, when known.
    pub rule: Option<String>,
    /// What is wrong.
    pub kind: Box<RuleErrorKind>,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.location {
            write!(f, "{l}: ")?;
        }
        if let Some(r) = &self.rule {
            write!(f, "rule {r}: ")?;
        }
        write!(f, "{}", self.kind)
    }
}

impl RuleError {
    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, e: std::io::Error) -> RuleError {
        RuleError {
            location: None,
            rule: None,
            kind: Box::new(RuleErrorKind::Io(format!("{}: {e}", path.display()))),
        }
    }
}

/// A side condition: a fact the e-class analysis must show for a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CondKind {
    /// The class does not depend on tangents.
    TangentFree,
    /// The class is constant along the last axis.
    RowConst,
    /// The class is a named input.
    IsInput,
    /// The class is a number.
    IsConst,
}

impl fmt::Display for CondKind {
    /// The keyword the rule files use (`tangent_free`, …).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CondKind::TangentFree => "tangent_free",
            CondKind::RowConst => "row_const",
            CondKind::IsInput => "is_input",
            CondKind::IsConst => "is_const",
        })
    }
}

/// All of a rule's side conditions (egg checks them before applying the rhs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Condition(pub Vec<(CondKind, Var)>);

impl Condition {
    /// The condition on `v`, if any.
    pub fn on(&self, v: Var) -> Option<CondKind> {
        self.0.iter().find(|(_, x)| *x == v).map(|(k, _)| *k)
    }
}

impl egg::Condition<Op, TensorAnalysis> for Condition {
    fn check(&self, egraph: &mut crate::ir::analysis::Graph, _eclass: Id, subst: &Subst) -> bool {
        self.0.iter().all(|(kind, var)| {
            let Some(id) = subst.get(*var) else {
                return false;
            };
            let facts = &egraph[*id].data;
            match kind {
                CondKind::TangentFree => facts.tangent_free,
                CondKind::RowConst => facts.row_const,
                CondKind::IsInput => facts.input.is_some(),
                CondKind::IsConst => facts.constant,
            }
        })
    }
}

/// What a rule is for; the trace folds `algebra` steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    /// Derivative rules (the calculus).
    Differentiation,
    /// Transposition rules (adjoints).
    Adjoint,
    /// Ring laws and bookkeeping.
    Algebra,
    /// Definitions unfolded or folded back (softmax).
    Definition,
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Group::Differentiation => "differentiation",
            Group::Adjoint => "adjoint",
            Group::Algebra => "algebra",
            Group::Definition => "definition",
        };
        write!(f, "{s}")
    }
}

/// One rule, parsed and checked.
#[derive(Debug, Clone)]
pub struct RuleDef {
    /// Unique name.
    pub name: String,
    /// The left side, as written.
    pub lhs: String,
    /// The right side, as written.
    pub rhs: String,
    /// The Lean or Mathlib fact the rule mirrors.
    pub lean: String,
    /// Its group.
    pub group: Group,
    /// Whether it also rewrites right to left.
    pub bidirectional: bool,
    /// Its side conditions.
    pub conditions: Condition,
    /// Withheld from the differentiation phase of the schedule (a law that only
    /// reorders: commutes, associates, distributes); used when simplifying.
    pub simplify_only: bool,
    /// The parsed left side.
    pub lhs_pattern: Pattern<Op>,
    /// The parsed right side.
    pub rhs_pattern: Pattern<Op>,
    /// Where its name is.
    pub at: Location,
}

impl RuleDef {
    /// `file:line:column` of its name.
    pub fn location(&self) -> Location {
        self.at.clone()
    }

    /// An error about this rule.
    pub fn error(&self, kind: RuleErrorKind) -> RuleError {
        RuleError {
            location: Some(self.at.clone()),
            rule: Some(self.name.clone()),
            kind: Box::new(kind),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    group: Group,
    #[serde(default)]
    rule: Vec<RuleToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleToml {
    name: Spanned<String>,
    lhs: Spanned<String>,
    rhs: Spanned<String>,
    lean: Spanned<String>,
    #[serde(default)]
    bidirectional: bool,
    #[serde(default, rename = "if")]
    conditions: Vec<Spanned<String>>,
    #[serde(default)]
    simplify_only: bool,
}

/// Parses one rule file and checks each rule statically.
pub fn parse_rules_file(file: &str, text: &str) -> Result<Vec<RuleDef>, RuleError> {
    let at = |span: Range<usize>| Location::at(file, text, span.start);
    let parsed: FileToml = toml::from_str(text).map_err(|e| RuleError {
        location: Some(at(e.span().unwrap_or(0..0))),
        rule: None,
        kind: Box::new(RuleErrorKind::Toml(e.message().to_string())),
    })?;
    parsed
        .rule
        .into_iter()
        .map(|r| check_rule(r, parsed.group, &at))
        .collect()
}

fn check_rule(
    r: RuleToml,
    group: Group,
    at: &dyn Fn(Range<usize>) -> Location,
) -> Result<RuleDef, RuleError> {
    let name = r.name.get_ref().clone();
    let err = |span: Range<usize>, kind| RuleError {
        location: Some(at(span)),
        rule: Some(name.clone()),
        kind: Box::new(kind),
    };
    let pattern = |side: &'static str, s: &Spanned<String>| {
        s.get_ref().parse::<Pattern<Op>>().map_err(|e| {
            err(
                s.span(),
                RuleErrorKind::Pattern {
                    side,
                    message: e.to_string(),
                },
            )
        })
    };
    let lhs = pattern("lhs", &r.lhs)?;
    let rhs = pattern("rhs", &r.rhs)?;
    let unbound = |from: &Pattern<Op>, to: &Pattern<Op>| {
        to.vars().into_iter().find(|v| !from.vars().contains(v))
    };
    if let Some(v) = unbound(&lhs, &rhs) {
        let kind = RuleErrorKind::Unbound {
            var: v.to_string(),
            side: "rhs",
            other: "lhs",
        };
        return Err(err(r.rhs.span(), kind));
    }
    if r.bidirectional {
        if let Some(v) = unbound(&rhs, &lhs) {
            let kind = RuleErrorKind::Unbound {
                var: v.to_string(),
                side: "lhs",
                other: "rhs of a bidirectional rule",
            };
            return Err(err(r.lhs.span(), kind));
        }
    }
    let mut conditions = Condition::default();
    for c in &r.conditions {
        let bad = || err(c.span(), RuleErrorKind::Condition(c.get_ref().clone()));
        let mut words = c.get_ref().split_whitespace();
        let kind = match words.next() {
            Some("tangent_free") => CondKind::TangentFree,
            Some("row_const") => CondKind::RowConst,
            Some("is_input") => CondKind::IsInput,
            Some("is_const") => CondKind::IsConst,
            _ => return Err(bad()),
        };
        let var: Var = words.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
        let bound_by_searchers =
            lhs.vars().contains(&var) && (!r.bidirectional || rhs.vars().contains(&var));
        if words.next().is_some() || !bound_by_searchers {
            return Err(bad());
        }
        conditions.0.push((kind, var));
    }
    let mut inf = Inference::for_patterns();
    let typed = |inf: &mut Inference, p: &Pattern<Op>, s: &Spanned<String>| {
        inf.infer(&p.ast)
            .map_err(|e| err(s.span(), RuleErrorKind::Shape(e)))
    };
    let lt = typed(&mut inf, &lhs, &r.lhs)?;
    let rt = typed(&mut inf, &rhs, &r.rhs)?;
    let compatible = match (&lt, &rt) {
        (Ty::Grad, Ty::Grad) => true,
        (Ty::Grad, _) | (_, Ty::Grad) => false,
        _ => true,
    };
    if !compatible {
        let kind = RuleErrorKind::Types {
            lhs: lt.to_string(),
            rhs: rt.to_string(),
        };
        return Err(err(r.rhs.span(), kind));
    }
    Ok(RuleDef {
        at: at(r.name.span()),
        name,
        lhs: r.lhs.into_inner(),
        rhs: r.rhs.into_inner(),
        lean: r.lean.into_inner(),
        group,
        bidirectional: r.bidirectional,
        conditions,
        simplify_only: r.simplify_only,
        lhs_pattern: lhs,
        rhs_pattern: rhs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse_rules_file("t.toml", text).unwrap_err().to_string()
    }

    const HEAD: &str = "group = \"algebra\"\n[[rule]]\nname = \"r\"\nlean = \"x\"\n";

    #[test]
    fn malformed_toml_is_located() {
        let e = err("group = \"algebra\"\n[[rule]]\nname = \n");
        assert!(e.starts_with("t.toml:3:"), "{e}");
        assert!(e.contains("malformed rule file"), "{e}");
        assert!(err("group = \"nope\"\n").starts_with("t.toml:1:9: malformed rule file"));
        assert!(err(&format!("{HEAD}lhs = \"?a\"\nrhs = \"?a\"\ncolour = 1\n")).contains("colour"));
    }

    #[test]
    fn unknown_operators_and_unbound_variables_are_located() {
        let e = err(&format!("{HEAD}lhs = \"(frob ?a)\"\nrhs = \"?a\"\n"));
        assert!(
            e.starts_with("t.toml:5:7: rule r: lhs is not a pattern of the IR"),
            "{e}"
        );
        let e = err(&format!("{HEAD}lhs = \"(neg ?a)\"\nrhs = \"?b\"\n"));
        assert_eq!(
            e,
            "t.toml:6:7: rule r: ?b in the rhs is not bound by the lhs"
        );
    }

    #[test]
    fn bad_conditions_and_ill_typed_sides_are_rejected() {
        let e = err(&format!(
            "{HEAD}lhs = \"(neg ?a)\"\nrhs = \"?a\"\nif = [\"shiny ?a\"]\n"
        ));
        assert!(e.starts_with("t.toml:7:7: rule r: bad condition"), "{e}");
        let e = err(&format!(
            "{HEAD}lhs = \"(neg ?a)\"\nrhs = \"?a\"\nif = [\"row_const ?z\"]\n"
        ));
        assert!(e.contains("bad condition"), "{e}");
        let e = err(&format!("{HEAD}lhs = \"(neg ?a)\"\nrhs = \"(g+ ?a ?a)\"\n"));
        assert!(
            e.starts_with("t.toml:6:7: rule r: sides are ill-typed: g+: expected a gradient"),
            "{e}"
        );
        let e = err(&format!("{HEAD}lhs = \"(grad ?x ?a)\"\nrhs = \"?a\"\n"));
        assert!(e.contains("lhs has type gradient"), "{e}");
    }

    #[test]
    fn a_good_rule_parses_with_its_conditions() {
        let rules = parse_rules_file(
            "t.toml",
            &format!("{HEAD}lhs = \"(* ?c (rowsum ?e))\"\nrhs = \"(rowsum (* ?c ?e))\"\nif = [\"row_const ?c\"]\n"),
        )
        .unwrap();
        assert_eq!(rules[0].at.to_string(), "t.toml:3:8");
        assert_eq!(
            rules[0].conditions.on("?c".parse().unwrap()),
            Some(CondKind::RowConst)
        );
    }
}
