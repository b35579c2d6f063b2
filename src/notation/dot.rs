//! Graphviz DOT: a plan's buffers and steps, or a term's DAG with every shared subterm
//! drawn once. Render with `dot -Tpng`.

use super::math::Unicode;
use super::term::{Dag, Style};
use crate::ir::shape::fmt_shape;
use crate::ir::{Expr, Op};
use crate::lower::{Arg, Plan, Role, Step};
use std::fmt::Write as _;

/// `s` as a DOT quoted string; each line break becomes `\n` (centred) or, with
/// `left`, `\l` (left-justified, the last line too).
fn quote(s: &str, left: bool) -> String {
    let brk = if left { "\\l" } else { "\\n" };
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str(brk),
            _ => out.push(c),
        }
    }
    if left {
        out.push_str(brk);
    }
    out.push('"');
    out
}

const HEADER: &str = "  graph [fontname=\"Helvetica\", nodesep=0.3, ranksep=0.35];
  node [fontname=\"Helvetica\", fontsize=11];
  edge [arrowsize=0.7];
";

/// A plan as a graph: buffers (inputs blue, temporaries grey, outputs green) and the
/// numbered steps that read and write them.
pub fn plan(p: &Plan) -> String {
    let mut s = format!("digraph plan {{\n{HEADER}");
    for (i, b) in p.buffers.iter().enumerate() {
        let color = match b.role {
            Role::Input => "#d6e6f5",
            Role::Temp => "#eeeeee",
            Role::Output => "#d5f0d5",
            Role::Param => "#f5efc4",
        };
        let label = format!("{}\n{}", b.name, fmt_shape(&b.shape));
        let _ = writeln!(
            s,
            "  b{i} [shape=box, style=\"rounded,filled\", fillcolor=\"{color}\", label={}];",
            quote(&label, false)
        );
    }
    for (k, step) in p.steps.iter().enumerate() {
        let out = &p.buffers[step.out()].name;
        let (label, reads, color): (String, Vec<usize>, &str) = match step {
            Step::Gemm {
                a, b, accumulate, ..
            } => (
                format!(
                    "{}. gemm\n{out} {}= {} · {}",
                    k + 1,
                    if *accumulate { "+" } else { "" },
                    p.operand_text(*a),
                    p.operand_text(*b)
                ),
                vec![a.buf, b.buf],
                "#fbe3c4",
            ),
            Step::Transpose { x, .. } => (
                format!("{}. copy\n{out} = {}ᵀ", k + 1, p.buffers[*x].name),
                vec![*x],
                "#f5d5e5",
            ),
            Step::Relayout {
                layout, heads, x, ..
            } => (
                format!(
                    "{}. copy\n{out} = {layout}({heads}, {})",
                    k + 1,
                    p.buffers[*x].name
                ),
                vec![*x],
                "#f5d5e5",
            ),
            Step::RowPass { program, .. } => {
                let mut label = format!("{}. row pass → {out}", k + 1);
                for ins in &program.instrs {
                    let _ = write!(label, "\n{}", p.instr_text(ins));
                }
                let _ = write!(label, "\nstore {}", p.arg_text(&program.result));
                let reads = program
                    .args()
                    .filter_map(|a| match a {
                        Arg::Buf(b) => Some(*b),
                        _ => None,
                    })
                    .collect();
                (label, reads, "#fff5c2")
            }
        };
        let left = matches!(step, Step::RowPass { .. });
        let _ = writeln!(
            s,
            "  s{k} [shape=box, style=filled, fillcolor=\"{color}\", label={}];",
            quote(&label, left)
        );
        let mut seen = Vec::new();
        for r in reads {
            if !seen.contains(&r) {
                seen.push(r);
                let _ = writeln!(s, "  b{r} -> s{k};");
            }
        }
        let _ = writeln!(s, "  s{k} -> b{};", step.out());
    }
    s.push_str("}\n");
    s
}

/// A term's DAG: one node per distinct subterm, children left to right; a tangent `dX`
/// and a gradient slot `∇A` are drawn as one node with the input's name.
pub fn term(expr: &Expr) -> String {
    let dag = Dag::new(expr);
    let u = Unicode;
    let name_of = |k: usize| match &dag.nodes[k] {
        Op::Input(n) => Some(u.name(n.as_str())),
        _ => None,
    };
    let drawn: Vec<(String, &str, Vec<usize>)> = dag
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let kids = dag.children(i);
            match (node, kids.first().and_then(|&k| name_of(k))) {
                (Op::Input(_), _) => (name_of(i).unwrap_or_default(), "ellipse", vec![]),
                (Op::Num(c), _) => (u.number(c), "plaintext", vec![]),
                (Op::Tan(_), Some(n)) => (format!("d{n}"), "ellipse", vec![]),
                (Op::Grad(_), Some(n)) => (format!("∇{n}"), "box", vec![kids[1]]),
                (other, _) => (symbol(other).to_string(), "circle", kids),
            }
        })
        .collect();
    // Only what the root reaches through drawn edges (an input seen only as `dX` or
    // `∇X` has no node of its own).
    let mut reached = vec![false; dag.nodes.len()];
    let mut stack = vec![dag.root];
    while let Some(i) = stack.pop() {
        if i < reached.len() && !reached[i] {
            reached[i] = true;
            stack.extend(&drawn[i].2);
        }
    }
    let mut s = format!("digraph term {{\n  graph [ordering=out];\n{HEADER}");
    for (i, (label, shape, edges)) in drawn.iter().enumerate() {
        if !reached[i] {
            continue;
        }
        let _ = writeln!(s, "  n{i} [shape={shape}, label={}];", quote(label, false));
        for k in edges {
            let _ = writeln!(s, "  n{i} -> n{k};");
        }
    }
    s.push_str("}\n");
    s
}

/// The label of an operator node.
fn symbol(op: &Op) -> &'static str {
    match op {
        Op::Add(_) => "+",
        Op::Sub(_) => "−",
        Op::Mul(_) => "⊙",
        Op::Bmm(_) => "·",
        Op::Div(_) => "/",
        Op::Neg(_) => "neg",
        Op::Inv(_) => "⁻¹",
        Op::Exp(_) => "exp",
        Op::RowSum(_) => "rowsum",
        Op::Softmax(_) => "softmax",
        Op::Transpose(_) => "ᵀ",
        Op::Tan(_) => "tan",
        Op::Jvp(_) => "d",
        Op::Vjp(_) => "vjp",
        Op::Adj(_) => "adj",
        Op::Grad(_) => "∇",
        Op::GAdd(_) => "g+",
        Op::Num(_) | Op::Input(_) | Op::Param(_) => "leaf",
        other => other.layout().map_or("?", |l| l.0.name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::parse_term;

    #[test]
    fn a_shared_subterm_is_drawn_once() {
        let e = parse_term("(* (softmax X) (- G (rowsum (* (softmax X) G))))").unwrap();
        let dot = term(&e);
        assert_eq!(dot.matches("label=\"softmax\"").count(), 1);
        assert_eq!(dot.matches("label=\"X\"").count(), 1);
        assert_eq!(dot.matches(" -> ").count(), 8);
    }

    #[test]
    fn an_input_seen_only_as_a_slot_or_tangent_has_no_node() {
        let dot = term(&parse_term("(grad X (* (tan Y) G))").unwrap());
        assert!(
            dot.contains("label=\"∇X\"") && dot.contains("label=\"dY\""),
            "{dot}"
        );
        assert!(
            !dot.contains("label=\"X\"") && !dot.contains("label=\"Y\""),
            "{dot}"
        );
    }

    #[test]
    fn quotes_and_backslashes_in_names_are_escaped() {
        // `parse_term` refuses such names; a term built otherwise may still hold them.
        let e: crate::ir::Expr = "(+ a\"b c\\n)".parse().unwrap();
        let dot = term(&e);
        assert!(dot.contains("label=\"«a\\\"b»\""), "{dot}");
        assert!(dot.contains("label=\"«c\\\\n»\""), "{dot}");
    }
}
