//! Derivation traces: egg's explanation rendered as numbered steps a person can
//! follow, each naming its rule, the rule's group and the Lean fact it mirrors, with
//! the whole term after the step. Runs of bookkeeping (`algebra`) steps are folded
//! into one step that lists the laws used.

use crate::derive::{Derivation, HELD_CONSTANT};
use crate::ir::Op;
use crate::rules::file::Group;
use crate::rules::{RuleSet, REV};
use egg::FlatTerm;
use serde::Serialize;
use std::fmt::Write as _;

/// One step of a trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// 1-based step number.
    pub n: usize,
    /// The rule applied (for a folded step: `algebra`).
    pub rule: String,
    /// `forward` (lhs ⇒ rhs) or `backward` (rhs ⇒ lhs).
    pub direction: String,
    /// The rule's group.
    pub group: String,
    /// The Lean or Mathlib fact it mirrors.
    pub lean: String,
    /// For a folded step, the bookkeeping rules it stands for, with counts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub folded: Vec<String>,
    /// The whole term after the step.
    pub term: String,
}

/// A derivation trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trace {
    /// JVP or VJP.
    pub mode: String,
    /// The forward term.
    pub forward: String,
    /// The start term.
    pub start: String,
    /// The derived result.
    pub result: String,
    /// Why egg stopped.
    pub stop: String,
    /// Egg's raw rewrite steps before folding.
    pub raw_steps: usize,
    /// The steps.
    pub steps: Vec<Step>,
}

/// Builds the trace of a derivation; `rules` supplies each step's Lean fact.
pub fn trace(d: &Derivation, rules: &RuleSet) -> Trace {
    let raw = raw_steps(&d.explanation, rules);
    Trace {
        mode: d.request.mode.to_string(),
        forward: d.request.forward.to_string(),
        start: d.start.to_string(),
        result: d.result.to_string(),
        stop: d.stop.clone(),
        raw_steps: raw.len(),
        steps: fold(raw),
    }
}

fn rewrite_in(t: &FlatTerm<Op>) -> Option<(String, bool)> {
    if let Some(r) = t.forward_rule {
        return Some((r.to_string(), true));
    }
    if let Some(r) = t.backward_rule {
        return Some((r.to_string(), false));
    }
    t.children.iter().find_map(rewrite_in)
}

fn raw_steps(flat: &[FlatTerm<Op>], rules: &RuleSet) -> Vec<Step> {
    flat.iter()
        .skip(1)
        .filter_map(|t| {
            let (name, forward) = rewrite_in(t)?;
            let (group, lean, forward) = match rules.find(&name) {
                Some(r) => {
                    // A `-rev` rewrite is the rule read right to left.
                    let rev = name.ends_with(REV) && r.bidirectional;
                    (r.group.to_string(), r.lean.clone(), forward != rev)
                }
                None if name == HELD_CONSTANT => (
                    "request".to_string(),
                    "an input outside --wrt is held constant: its tangent is zero".to_string(),
                    forward,
                ),
                None => ("unknown".to_string(), String::new(), forward),
            };
            let base = name.strip_suffix(REV).unwrap_or(&name).to_string();
            Some(Step {
                n: 0,
                rule: base,
                direction: if forward { "forward" } else { "backward" }.into(),
                group,
                lean,
                folded: Vec::new(),
                term: t.remove_rewrites().get_recexpr().to_string(),
            })
        })
        .collect()
}

/// Folds each run of algebra steps into one step and numbers the result.
fn fold(raw: Vec<Step>) -> Vec<Step> {
    let algebra = Group::Algebra.to_string();
    let mut out: Vec<Step> = Vec::new();
    for step in raw {
        let extends = out
            .last()
            .is_some_and(|last| last.group == algebra && step.group == algebra);
        if extends {
            if let Some(last) = out.last_mut() {
                last.folded.push(step.rule);
                last.term = step.term;
            }
            continue;
        }
        let mut step = step;
        if step.group == algebra {
            step.folded = vec![std::mem::take(&mut step.rule)];
            step.rule = algebra.clone();
            step.direction = "both".into();
            step.lean = "ring and linearity laws (folded bookkeeping)".into();
        }
        out.push(step);
    }
    for (i, s) in out.iter_mut().enumerate() {
        s.n = i + 1;
        s.folded = counted(&s.folded);
    }
    out
}

/// `["a", "b", "a"]` ⇒ `["a ×2", "b"]`, in first-seen order.
fn counted(names: &[String]) -> Vec<String> {
    let mut seen: Vec<(String, usize)> = Vec::new();
    for n in names {
        match seen.iter_mut().find(|(m, _)| m == n) {
            Some((_, c)) => *c += 1,
            None => seen.push((n.clone(), 1)),
        }
    }
    seen.into_iter()
        .map(|(n, c)| if c == 1 { n } else { format!("{n} ×{c}") })
        .collect()
}

impl Trace {
    /// The trace as text.
    pub fn to_text(&self) -> String {
        self.to_text_with(&self.forward, "", &|term| term.to_string())
    }

    /// The text form with `forward` as the heading's term, `preface` lines after the
    /// heading, and every other term (start, each step's, result) printed by `show`
    /// from its s-expression: how the notation prints a trace.
    pub fn to_text_with(
        &self,
        forward: &str,
        preface: &str,
        show: &dyn Fn(&str) -> String,
    ) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{} of {forward}", self.mode);
        s.push_str(preface);
        let _ = writeln!(s, "start:  {}", show(&self.start));
        for step in &self.steps {
            let arrow = if step.direction == "backward" {
                " (←)"
            } else {
                ""
            };
            let _ = writeln!(s, "{:>3}. {}{arrow} [{}]", step.n, step.rule, step.group);
            if !step.folded.is_empty() {
                let _ = writeln!(s, "     uses: {}", step.folded.join(", "));
            }
            if !step.lean.is_empty() {
                let _ = writeln!(s, "     lean: {}", step.lean);
            }
            let _ = writeln!(s, "     ⇒ {}", show(&step.term));
        }
        let _ = writeln!(s, "result: {}", show(&self.result));
        let _ = writeln!(
            s,
            "({} steps shown, {} egg rewrites; egg stopped: {})",
            self.steps.len(),
            self.raw_steps,
            self.stop
        );
        s
    }

    /// The trace as pretty JSON (schema in docs/derivation.md).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_keeps_first_seen_order() {
        let v: Vec<String> = ["a", "b", "a"].iter().map(|s| s.to_string()).collect();
        assert_eq!(counted(&v), vec!["a ×2".to_string(), "b".to_string()]);
    }

    fn step(rule: &str, group: &str) -> Step {
        Step {
            n: 0,
            rule: rule.into(),
            direction: "forward".into(),
            group: group.into(),
            lean: String::new(),
            folded: vec![],
            term: rule.into(),
        }
    }

    #[test]
    fn runs_of_algebra_fold_into_one_step() {
        let raw = vec![
            step("jvp-mul", "differentiation"),
            step("mul-comm", "algebra"),
            step("mul-assoc", "algebra"),
            step("mul-comm", "algebra"),
            step("softmax-def", "definition"),
        ];
        let folded = fold(raw);
        assert_eq!(folded.len(), 3);
        assert_eq!(folded[1].rule, "algebra");
        assert_eq!(folded[1].folded, vec!["mul-comm ×2", "mul-assoc"]);
        assert_eq!(folded[1].term, "mul-comm");
        assert_eq!(folded[2].n, 3);
    }
}
