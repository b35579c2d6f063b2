//! What every notation shares: a term as a hash-consed DAG, the naming of its shared
//! subterms (`where` clauses), and an infix printer with the usual precedence that a
//! [`Style`] turns into Unicode or LaTeX.

use crate::ir::{Const, Expr, Op};
use egg::{Id, Language};
use std::collections::HashMap;

/// A term with every repeated subterm stored once; children index `nodes`.
#[derive(Debug, Clone)]
pub struct Dag {
    /// The distinct nodes, children before parents.
    pub nodes: Vec<Op>,
    /// Each node's s-expression text (the key that identifies a subterm across terms).
    pub keys: Vec<String>,
    /// The root's index.
    pub root: usize,
}

impl Dag {
    /// Hash-conses `expr`.
    pub fn new(expr: &Expr) -> Dag {
        let mut seen: HashMap<Op, usize> = HashMap::new();
        let mut nodes: Vec<Op> = Vec::new();
        let mut keys: Vec<String> = Vec::new();
        let mut map: Vec<usize> = Vec::with_capacity(expr.as_ref().len());
        for node in expr.as_ref() {
            let canon = node.clone().map_children(|c| Id::from(map[usize::from(c)]));
            let idx = *seen.entry(canon.clone()).or_insert_with(|| {
                let key = if canon.is_leaf() {
                    canon.to_string()
                } else {
                    let kids: Vec<&str> = canon
                        .children()
                        .iter()
                        .map(|c| keys[usize::from(*c)].as_str())
                        .collect();
                    format!("({} {})", canon, kids.join(" "))
                };
                nodes.push(canon);
                keys.push(key);
                nodes.len() - 1
            });
            map.push(idx);
        }
        let root = map.last().copied().unwrap_or(0);
        Dag { nodes, keys, root }
    }

    /// The children of node `i`, as indices.
    pub fn children(&self, i: usize) -> Vec<usize> {
        self.nodes[i]
            .children()
            .iter()
            .map(|c| usize::from(*c))
            .collect()
    }

    /// The subterms worth a name: those that occur at least twice in the term once
    /// every named subterm is written out only once, in order of first appearance
    /// from the root (parents first). Leaves, tangents, `−x`, `xᵀ`, `x⁻¹` are as short
    /// as a name, and derivative operators and gradients are what a step changes, so
    /// none of these is named.
    pub fn shared(&self) -> Vec<usize> {
        if self.nodes.is_empty() {
            return Vec::new();
        }
        // Children have smaller indices than their parents: walk parents first.
        let mut occurs = vec![0usize; self.nodes.len()];
        let mut named = vec![false; self.nodes.len()];
        occurs[self.root] = 1;
        for i in (0..=self.root).rev() {
            named[i] = occurs[i] >= 2 && nameable(&self.nodes[i]);
            let passed = if named[i] { 1 } else { occurs[i] };
            for c in self.children(i) {
                occurs[c] += passed;
            }
        }
        let mut order = Vec::new();
        let mut visited = vec![false; self.nodes.len()];
        self.preorder(self.root, &mut visited, &mut order);
        order.into_iter().filter(|&i| named[i]).collect()
    }

    fn preorder(&self, i: usize, visited: &mut [bool], out: &mut Vec<usize>) {
        if self.nodes.is_empty() || visited[i] {
            return;
        }
        visited[i] = true;
        out.push(i);
        for c in self.children(i) {
            self.preorder(c, visited, out);
        }
    }

    /// The subterm at node `i` as an [`Expr`].
    pub fn expr_at(&self, i: usize) -> Expr {
        let mut out = Expr::default();
        let mut memo: HashMap<usize, Id> = HashMap::new();
        self.build(i, &mut out, &mut memo);
        out
    }

    fn build(&self, i: usize, out: &mut Expr, memo: &mut HashMap<usize, Id>) -> Id {
        if let Some(id) = memo.get(&i) {
            return *id;
        }
        let node = self.nodes[i]
            .clone()
            .map_children(|c| self.build(usize::from(c), out, memo));
        let id = out.add(node);
        memo.insert(i, id);
        id
    }
}

/// Whether a repeated subterm with this head gets a name (see [`Dag::shared`]).
fn nameable(op: &Op) -> bool {
    !op.is_leaf()
        && !op.is_derivative_operator()
        && !matches!(
            op,
            Op::Tan(_) | Op::Neg(_) | Op::Inv(_) | Op::Transpose(_) | Op::Grad(_) | Op::GAdd(_)
        )
}

/// The name of a shared subterm: a letter chosen by its head and an optional index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Binding {
    /// `s` for softmax, `e` for exp, `r` for rowsum, `u` otherwise.
    pub letter: char,
    /// `None` for the first of its letter, `Some(2)`, `Some(3)`… after.
    pub index: Option<usize>,
}

/// The names given to shared subterms, keyed by the subterm's s-expression text, with
/// their definitions in the order they were named.
#[derive(Debug, Clone, Default)]
pub struct Names {
    by_key: HashMap<String, Binding>,
    /// `(name, definition)` in naming order.
    pub defs: Vec<(Binding, Expr)>,
    taken: Vec<String>,
}

impl Names {
    /// An empty table that will avoid the given input names.
    pub fn avoiding(inputs: impl IntoIterator<Item = String>) -> Names {
        Names {
            taken: inputs.into_iter().collect(),
            ..Names::default()
        }
    }

    /// Names every subterm shared inside `expr` that has no name yet.
    pub fn name_shared(&mut self, expr: &Expr) {
        let dag = Dag::new(expr);
        for i in dag.shared() {
            if self.by_key.contains_key(&dag.keys[i]) {
                continue;
            }
            let letter = match dag.nodes[i] {
                Op::Softmax(_) => 's',
                Op::Exp(_) => 'e',
                Op::RowSum(_) => 'r',
                _ => 'u',
            };
            let binding = self.fresh(letter);
            self.by_key.insert(dag.keys[i].clone(), binding.clone());
            self.defs.push((binding, dag.expr_at(i)));
        }
    }

    fn fresh(&mut self, letter: char) -> Binding {
        let mut count = 0;
        loop {
            count += 1;
            let b = Binding {
                letter,
                index: (count > 1).then_some(count),
            };
            let text = plain_binding(&b);
            if !self.taken.contains(&text) {
                self.taken.push(text);
                return b;
            }
        }
    }

    fn get(&self, key: &str) -> Option<&Binding> {
        self.by_key.get(key)
    }
}

/// A binding as the Unicode notation writes it: `s`, `s₂`.
pub fn plain_binding(b: &Binding) -> String {
    let mut s = b.letter.to_string();
    if let Some(i) = b.index {
        for d in i.to_string().chars() {
            let sub = char::from_u32(0x2080 + d.to_digit(10).unwrap_or(0)).unwrap_or('_');
            s.push(sub);
        }
    }
    s
}

/// The functions written `f(x, …)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// `exp`.
    Exp,
    /// `rowsum`.
    RowSum,
    /// `softmax`.
    Softmax,
    /// The differential `d(e)` (`jvp`).
    D,
    /// `vjp(e, G)`.
    Vjp,
    /// `adj(E, G)`.
    Adj,
    /// `tan(e)` of a term that is not an input (ill-typed, but printable).
    Tan,
    /// A head split, merge or reshape: `split(k, X)`, `swap(Y)`, ...
    Layout(crate::ir::layout::Layout),
}

/// Infix operators, each with its precedence level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Infix {
    /// `;` between gradients (`g+`).
    Seq,
    /// `+`.
    Add,
    /// `−`.
    Sub,
    /// Entrywise product `⊙`.
    Mul,
    /// Batched product `·`.
    Bmm,
    /// Entrywise quotient `/`.
    Div,
}

/// Postfix operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Postfix {
    /// Transpose `ᵀ`.
    T,
    /// Reciprocal `⁻¹`.
    Inv,
}

/// How a notation spells each piece; the precedence logic is shared.
pub trait Style {
    /// An input name.
    fn name(&self, name: &str) -> String;
    /// A runtime parameter `@c`.
    fn param(&self, name: &str) -> String;
    /// The tangent of an input.
    fn tangent(&self, name: &str) -> String;
    /// A number.
    fn number(&self, c: &Const) -> String;
    /// The name of a shared subterm.
    fn binding(&self, b: &Binding) -> String;
    /// An infix operator with its spacing.
    fn infix(&self, op: Infix) -> &'static str;
    /// Unary minus applied to a printed operand.
    fn neg(&self, x: &str) -> String;
    /// A postfix operator applied to a printed operand.
    fn postfix(&self, op: Postfix, x: &str) -> String;
    /// A function applied to printed arguments.
    fn func(&self, f: Func, args: &[String]) -> String;
    /// `(x)`.
    fn paren(&self, x: &str) -> String;
    /// The gradient `w` in the slot of input `name` (printed).
    fn grad(&self, name: &str, w: &str) -> String;
}

const SEQ: u8 = 0;
const GRAD: u8 = 1;
const SUM: u8 = 2;
const PROD: u8 = 3;
const UNARY: u8 = 4;
const POSTFIX: u8 = 5;
const ATOM: u8 = 6;

/// Prints `expr` in `style`, writing each subterm named in `names` by its name (except
/// the whole term itself).
pub fn render(expr: &Expr, names: &Names, style: &dyn Style) -> String {
    let dag = Dag::new(expr);
    if dag.nodes.is_empty() {
        return String::new();
    }
    Printer {
        dag: &dag,
        names,
        style,
    }
    .print(dag.root, true)
    .0
}

/// The `where` definitions of `names`, each as `(name, definition)` printed in `style`.
pub fn render_defs(names: &Names, style: &dyn Style) -> Vec<(String, String)> {
    names
        .defs
        .iter()
        .map(|(b, e)| (style.binding(b), render(e, names, style)))
        .collect()
}

struct Printer<'a> {
    dag: &'a Dag,
    names: &'a Names,
    style: &'a dyn Style,
}

impl Printer<'_> {
    /// The printed node and its level; `top` means "do not replace by its name".
    fn print(&self, i: usize, top: bool) -> (String, u8) {
        let s = self.style;
        if !top {
            if let Some(b) = self.names.get(&self.dag.keys[i]) {
                return (s.binding(b), ATOM);
            }
        }
        let kids = self.dag.children(i);
        let at = |k: usize, min: u8| self.at_least(kids[k], min);
        let infix = |op: Infix, level: u8| {
            let text = format!("{}{}{}", at(0, level), s.infix(op), at(1, level + 1));
            (text, level)
        };
        let func = |f: Func| {
            let args: Vec<String> = kids.iter().map(|&k| self.at_least(k, SEQ)).collect();
            (s.func(f, &args), ATOM)
        };
        match &self.dag.nodes[i] {
            Op::GAdd(_) => infix(Infix::Seq, SEQ),
            Op::Grad(_) => (s.grad(&at(0, ATOM), &at(1, SUM)), GRAD),
            Op::Add(_) => infix(Infix::Add, SUM),
            Op::Sub(_) => infix(Infix::Sub, SUM),
            Op::Mul(_) => infix(Infix::Mul, PROD),
            Op::Bmm(_) => infix(Infix::Bmm, PROD),
            Op::Div(_) => infix(Infix::Div, PROD),
            Op::Neg([x]) => {
                let x = usize::from(*x);
                let inner = self.at_least(x, UNARY);
                // `−2` would read back as the number −2: write −(2).
                let inner = if self.starts_with_number(x) {
                    s.paren(&inner)
                } else {
                    inner
                };
                (s.neg(&inner), UNARY)
            }
            Op::Transpose(_) => (s.postfix(Postfix::T, &at(0, POSTFIX)), POSTFIX),
            Op::Inv(_) => (s.postfix(Postfix::Inv, &at(0, POSTFIX)), POSTFIX),
            Op::Exp(_) => func(Func::Exp),
            Op::RowSum(_) => func(Func::RowSum),
            Op::Softmax(_) => func(Func::Softmax),
            Op::Jvp(_) => func(Func::D),
            Op::Vjp(_) => func(Func::Vjp),
            Op::Adj(_) => func(Func::Adj),
            Op::Tan([x]) => match &self.dag.nodes[usize::from(*x)] {
                Op::Input(name) => (s.tangent(name.as_str()), ATOM),
                _ => func(Func::Tan),
            },
            Op::Num(c) => (s.number(c), ATOM),
            Op::Input(name) => (s.name(name.as_str()), ATOM),
            Op::Param(p) => (s.param(p.0.as_str()), ATOM),
            other => match other.layout() {
                Some(l) => func(Func::Layout(l.0)),
                None => (s.name(&other.to_string()), ATOM),
            },
        }
    }

    fn at_least(&self, i: usize, min: u8) -> String {
        let (text, level) = self.print(i, false);
        if level < min {
            self.style.paren(&text)
        } else {
            text
        }
    }

    /// Whether node `i` prints starting with a non-negative number (a number, or a
    /// postfix chain on one), so that a unary minus before it must add parentheses.
    fn starts_with_number(&self, i: usize) -> bool {
        if self.names.get(&self.dag.keys[i]).is_some() {
            return false;
        }
        match &self.dag.nodes[i] {
            Op::Num(c) => c.0 >= num_traits::Zero::zero(),
            Op::Transpose([x]) | Op::Inv([x]) => self.starts_with_number(usize::from(*x)),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::parse_term;

    #[test]
    fn hash_consing_stores_a_repeated_subterm_once() {
        let e = parse_term("(* (softmax X) (- G (rowsum (* (softmax X) G))))").unwrap();
        let dag = Dag::new(&e);
        let softmaxes = dag
            .nodes
            .iter()
            .filter(|n| matches!(n, Op::Softmax(_)))
            .count();
        assert_eq!(softmaxes, 1);
        let shared: Vec<&str> = dag.shared().iter().map(|&i| dag.keys[i].as_str()).collect();
        assert_eq!(shared, vec!["(softmax X)"]);
        assert_eq!(dag.expr_at(dag.root).to_string(), e.to_string());
    }

    #[test]
    fn names_avoid_inputs_and_count_per_letter() {
        let e = parse_term("(+ (* (exp X) (exp X)) (* (exp Y) (exp Y)))").unwrap();
        let mut names = Names::avoiding(["e".to_string()]);
        names.name_shared(&e);
        let texts: Vec<String> = names.defs.iter().map(|(b, _)| plain_binding(b)).collect();
        assert_eq!(texts, vec!["e₂", "e₃"]);
    }
}
