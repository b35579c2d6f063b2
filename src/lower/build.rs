//! The translation from a hash-consed term to plan steps (see the module doc of
//! [`crate::lower`] for the table of cases).

use super::plan::{
    Arg, Binary, BufId, Buffer, GemmOperand, Instr, Plan, Reg, Role, RowProgram, Step, Unary,
};
use super::{LowerError, Saved};
use crate::derive::subterm;
use crate::ir::layout::Layout;
use crate::ir::shape::{infer_term, Dim, Shape, ShapeEnv, ShapeError, Ty};
use crate::ir::{Expr, Op};
use egg::{Id, Language, Symbol};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// How one node is lowered.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// An input buffer (`A`, `(tan A)`).
    Leaf,
    /// A number, broadcast inside row passes.
    Num,
    /// `(bmm x y)`: operands stripped of transposes, with their parities.
    Gemm((Id, bool), (Id, bool)),
    /// A transpose chain outside a bmm: its base and parity.
    Transpose(Id, bool),
    /// An entrywise, rowsum or softmax node.
    Row,
    /// A head split or merge: the operator, the head count and the operand.
    Layout(Layout, usize, Id),
}

/// The lowering state of one term.
pub(super) struct Builder {
    expr: Expr,
    shapes: ShapeEnv,
    outputs: Vec<(String, Id, Shape)>,
    kinds: BTreeMap<Id, Kind>,
    row_parents: HashMap<Id, Vec<Id>>,
    materialized: BTreeSet<Id>,
    buffers: Vec<Buffer>,
    buffer_of: HashMap<Id, BufId>,
}

/// Rebuilds `expr` hash-consed (equal subterms share one node), with the nodes in
/// `replace` swapped for the given leaves. Returns the new term and the new id of
/// every old node.
fn hashcons(expr: &Expr, replace: &HashMap<Id, Op>) -> (Expr, Vec<Id>) {
    let mut out = Expr::default();
    let mut seen: HashMap<Op, Id> = HashMap::new();
    let mut map = Vec::with_capacity(expr.as_ref().len());
    for (i, node) in expr.as_ref().iter().enumerate() {
        let node = match replace.get(&Id::from(i)) {
            Some(leaf) => leaf.clone(),
            None => node.clone().map_children(|c| map[usize::from(c)]),
        };
        let id = *seen.entry(node.clone()).or_insert_with(|| out.add(node));
        map.push(id);
    }
    (out, map)
}

/// The id `term`'s root has inside the hash-consed `expr`, if it occurs there.
fn find(expr: &Expr, term: &Expr) -> Option<Id> {
    let index: HashMap<&Op, Id> = expr
        .as_ref()
        .iter()
        .enumerate()
        .map(|(i, n)| (n, Id::from(i)))
        .collect();
    let mut map: Vec<Id> = Vec::new();
    for node in term.as_ref() {
        let node = node.clone().map_children(|c| map[usize::from(c)]);
        map.push(*index.get(&node)?);
    }
    map.last().copied()
}

fn root(expr: &Expr) -> Id {
    Id::from(expr.as_ref().len().saturating_sub(1))
}

fn tensor_shape(ty: Ty, what: &dyn Fn() -> String) -> Result<Shape, LowerError> {
    match ty {
        Ty::Tensor([Some(h), Some(m), Some(n)]) => Ok([h, m, n]),
        Ty::Tensor(_) => Err(LowerError::UnknownShape(what())),
        _ => Err(LowerError::Unsupported {
            term: what(),
            why: "it is not a tensor",
        }),
    }
}

/// Strips a chain of transposes: the base and whether the chain is odd.
fn strip(expr: &Expr, mut id: Id) -> (Id, bool) {
    let mut odd = false;
    while let Op::Transpose([x]) = expr[id] {
        id = x;
        odd = !odd;
    }
    (id, odd)
}

impl Builder {
    /// Hash-conses `expr`, substitutes the saved subterms and finds the outputs.
    pub(super) fn new(expr: &Expr, shapes: &ShapeEnv, saved: &[Saved]) -> Result<Self, LowerError> {
        let mut shapes = shapes.clone();
        let (consed, _) = hashcons(expr, &HashMap::new());
        let mut replace = HashMap::new();
        for s in saved {
            let name = Symbol::from(&s.name);
            if shapes.contains_key(&name) {
                return Err(LowerError::NameClash(s.name.clone()));
            }
            let ty = infer_term(&s.term, &shapes)?;
            shapes.insert(name, tensor_shape(ty, &|| s.term.to_string())?);
            if let Some(id) = find(&consed, &s.term) {
                replace.insert(id, Op::Input(name));
            }
        }
        let (mut expr, _) = hashcons(&consed, &replace);
        // Substitution may leave dead nodes before the root: the root stays last.
        let outputs = Self::outputs(&mut expr, &shapes)?;
        Ok(Builder {
            expr,
            shapes,
            outputs,
            kinds: BTreeMap::new(),
            row_parents: HashMap::new(),
            materialized: BTreeSet::new(),
            buffers: Vec::new(),
            buffer_of: HashMap::new(),
        })
    }

    /// Adds an output buffer for each of `keep`, which must occur in the term.
    pub(super) fn keeping(mut self, keep: &[Saved]) -> Result<Self, LowerError> {
        for k in keep {
            let id = find(&self.expr, &hashcons(&k.term, &HashMap::new()).0)
                .ok_or_else(|| LowerError::NotASubterm(k.term.to_string()))?;
            if self.outputs.iter().any(|(name, _, _)| name == &k.name)
                || self.shapes.contains_key(&Symbol::from(&k.name))
            {
                return Err(LowerError::NameClash(k.name.clone()));
            }
            let shape = tensor_shape(infer_term(&k.term, &self.shapes)?, &|| k.term.to_string())?;
            self.outputs.push((k.name.clone(), id, shape));
        }
        Ok(self)
    }

    /// One output `out` for a tensor root; one `gA` per slot for a gradient root,
    /// the slot's weights summed by `+` nodes appended to `expr`.
    fn outputs(expr: &mut Expr, shapes: &ShapeEnv) -> Result<Vec<(String, Id, Shape)>, LowerError> {
        let top = root(expr);
        let ty = infer_term(expr, shapes)?;
        if ty != Ty::Grad {
            let shape = tensor_shape(ty, &|| expr.to_string())?;
            return Ok(vec![("out".into(), top, shape)]);
        }
        let mut slots: BTreeMap<Symbol, Vec<Id>> = BTreeMap::new();
        let mut stack = vec![top];
        while let Some(id) = stack.pop() {
            match &expr[id] {
                Op::GAdd([a, b]) => stack.extend([*b, *a]),
                Op::Grad([a, w]) => match &expr[*a] {
                    Op::Input(s) => slots.entry(*s).or_default().push(*w),
                    _ => {
                        return Err(LowerError::Unsupported {
                            term: subterm(expr, id).to_string(),
                            why: "a gradient slot must be an input name",
                        })
                    }
                },
                _ => {
                    return Err(LowerError::Unsupported {
                        term: subterm(expr, id).to_string(),
                        why: "a gradient is built from grad and g+ only",
                    })
                }
            }
        }
        let mut outs = Vec::new();
        for (slot, weights) in slots {
            let shape = shapes
                .get(&slot)
                .cloned()
                .ok_or_else(|| ShapeError::UnknownInput(slot.to_string()))?;
            let mut sum = weights[0];
            for w in &weights[1..] {
                sum = expr.add(Op::Add([sum, *w]));
            }
            outs.push((format!("g{slot}"), sum, shape));
        }
        Ok(outs)
    }

    fn unsupported(&self, id: Id, why: &'static str) -> LowerError {
        LowerError::Unsupported {
            term: subterm(&self.expr, id).to_string(),
            why,
        }
    }

    fn classify(&self, id: Id) -> Result<Kind, LowerError> {
        Ok(match &self.expr[id] {
            Op::Input(_) | Op::Param(_) => Kind::Leaf,
            op @ (Op::Split(_)
            | Op::Merge(_)
            | Op::Reshape(_)
            | Op::Unreshape(_)
            | Op::Flat(_)
            | Op::Unflat(_)
            | Op::Swap(_)) => {
                let heads = |k: Id| match &self.expr[k] {
                    Op::Num(c) => c.heads(),
                    _ => None,
                };
                match op.layout() {
                    Some((layout, None, x)) => Kind::Layout(layout, 0, x),
                    Some((layout, Some(k), x)) => match heads(k) {
                        Some(k) => Kind::Layout(layout, k, x),
                        None => {
                            return Err(
                                self.unsupported(id, "the head count is not a whole number ≥ 1")
                            )
                        }
                    },
                    None => return Err(self.unsupported(id, "not a layout operator")),
                }
            }
            Op::Tan([a]) => match self.expr[*a] {
                Op::Input(_) => Kind::Leaf,
                _ => return Err(self.unsupported(id, "tan applies to an input name")),
            },
            Op::Num(_) => Kind::Num,
            Op::Bmm([a, b]) => Kind::Gemm(strip(&self.expr, *a), strip(&self.expr, *b)),
            Op::Transpose(_) => {
                let (base, odd) = strip(&self.expr, id);
                Kind::Transpose(base, odd)
            }
            Op::Add(_)
            | Op::Sub(_)
            | Op::Mul(_)
            | Op::Div(_)
            | Op::Neg(_)
            | Op::Inv(_)
            | Op::Exp(_)
            | Op::RowSum(_)
            | Op::Softmax(_) => Kind::Row,
            op @ (Op::Jvp(_) | Op::Vjp(_) | Op::Adj(_)) => {
                return Err(LowerError::DerivativeOperator(op.to_string()))
            }
            Op::Grad(_) | Op::GAdd(_) => {
                return Err(self.unsupported(id, "a gradient inside a tensor expression"))
            }
        })
    }

    /// Classifies every node reachable from the outputs and decides which get buffers.
    fn analyse(&mut self) -> Result<(), LowerError> {
        let mut stack: Vec<Id> = self.outputs.iter().map(|o| o.1).collect();
        self.materialized.extend(stack.iter().copied());
        while let Some(id) = stack.pop() {
            if self.kinds.contains_key(&id) {
                continue;
            }
            let kind = self.classify(id)?;
            self.kinds.insert(id, kind);
            match kind {
                Kind::Leaf | Kind::Num => {}
                Kind::Gemm((a, _), (b, _)) => {
                    self.materialized.extend([id, a, b]);
                    stack.extend([a, b]);
                }
                Kind::Transpose(x, _) | Kind::Layout(_, _, x) => {
                    self.materialized.extend([id, x]);
                    stack.push(x);
                }
                Kind::Row => {
                    for &c in self.expr[id].children() {
                        self.row_parents.entry(c).or_default().push(id);
                        stack.push(c);
                    }
                }
            }
        }
        // Parents have larger ids than children: visit top-down, giving every row
        // node the one pass that consumes it, or its own buffer when passes differ.
        let mut owner: HashMap<Id, Id> = HashMap::new();
        for (&id, kind) in self.kinds.iter().rev() {
            if !matches!(kind, Kind::Row) {
                continue;
            }
            if self.materialized.contains(&id) {
                owner.insert(id, id);
                continue;
            }
            let owners: BTreeSet<Id> = self.row_parents[&id].iter().map(|p| owner[p]).collect();
            let own = match owners.len() {
                1 => owners.into_iter().next().unwrap_or(id),
                _ => {
                    self.materialized.insert(id);
                    id
                }
            };
            owner.insert(id, own);
        }
        Ok(())
    }

    fn shape_of(&self, id: Id) -> Result<Shape, LowerError> {
        let term = subterm(&self.expr, id);
        tensor_shape(infer_term(&term, &self.shapes)?, &|| term.to_string())
    }

    fn add_buffer(&mut self, name: String, shape: Shape, role: Role) -> BufId {
        self.buffers.push(Buffer { name, shape, role });
        self.buffers.len() - 1
    }

    fn input_buffers(&mut self) -> Result<(), LowerError> {
        let mut leaves: Vec<(String, Symbol, Id)> = Vec::new();
        let mut params: Vec<(String, Id)> = Vec::new();
        for (&id, kind) in &self.kinds {
            if let Kind::Leaf = kind {
                let (name, sym) = match &self.expr[id] {
                    Op::Param(p) => {
                        params.push((p.0.to_string(), id));
                        continue;
                    }
                    Op::Tan([a]) => match self.expr[*a] {
                        Op::Input(s) => (format!("d{s}"), s),
                        _ => return Err(self.unsupported(id, "tan applies to an input name")),
                    },
                    Op::Input(s) => (s.to_string(), *s),
                    _ => return Err(self.unsupported(id, "not an input")),
                };
                leaves.push((name, sym, id));
            }
        }
        leaves.sort();
        for (name, sym, id) in leaves {
            let shape = self
                .shapes
                .get(&sym)
                .cloned()
                .ok_or_else(|| ShapeError::UnknownInput(sym.to_string()))?;
            let b = self.add_buffer(name, shape, Role::Input);
            self.buffer_of.insert(id, b);
        }
        params.sort();
        for (name, id) in params {
            if self.buffers.iter().any(|b| b.name == name) {
                return Err(LowerError::NameClash(name));
            }
            let b = self.add_buffer(name, [1, 1, 1].map(Dim::Size), Role::Param);
            self.buffer_of.insert(id, b);
        }
        Ok(())
    }

    fn buffer(&self, id: Id) -> Result<BufId, LowerError> {
        let id = match self.kinds.get(&id) {
            Some(Kind::Transpose(base, false)) => *base,
            _ => id,
        };
        self.buffer_of
            .get(&id)
            .copied()
            .ok_or_else(|| self.unsupported(id, "no buffer holds it (a number?)"))
    }

    /// How many consumers each node has: the nodes that read it (a GEMM its operands'
    /// bases, a transpose its base, a row node each child occurrence) and the outputs.
    fn uses(&self) -> HashMap<Id, usize> {
        let mut uses: HashMap<Id, usize> = HashMap::new();
        let mut count = |c: Id| *uses.entry(c).or_default() += 1;
        for (&id, kind) in &self.kinds {
            match kind {
                Kind::Leaf | Kind::Num => {}
                Kind::Gemm((a, _), (b, _)) => [*a, *b].into_iter().for_each(&mut count),
                Kind::Transpose(x, _) | Kind::Layout(_, _, x) => count(*x),
                Kind::Row => self.expr[id]
                    .children()
                    .iter()
                    .copied()
                    .for_each(&mut count),
            }
        }
        self.outputs.iter().for_each(|o| count(o.1));
        uses
    }

    /// The GEMMs a buffered `(+ …)` node sums, when it is a sum of GEMMs each read by
    /// that sum only (through inlined, single-use `+` nodes), in term order: the first
    /// writes the buffer, the others accumulate into it (β = 1), with no temporaries
    /// and no add pass. `None` for any other node.
    fn gemm_sum(&self, id: Id, uses: &HashMap<Id, usize>) -> Option<Vec<Id>> {
        fn leaves(b: &Builder, id: Id, uses: &HashMap<Id, usize>, out: &mut Vec<Id>) -> bool {
            let Op::Add([x, y]) = b.expr[id] else {
                return false;
            };
            [x, y].into_iter().all(|c| {
                let single = uses.get(&c) == Some(&1);
                match b.kinds.get(&c) {
                    Some(Kind::Gemm(..)) if single => {
                        out.push(c);
                        true
                    }
                    Some(Kind::Row) if single && !b.materialized.contains(&c) => {
                        leaves(b, c, uses, out)
                    }
                    _ => false,
                }
            })
        }
        let mut out = Vec::new();
        (matches!(self.kinds.get(&id), Some(Kind::Row)) && leaves(self, id, uses, &mut out))
            .then_some(out)
    }

    fn gemm_step(&self, id: Id, out: BufId, accumulate: bool) -> Result<Step, LowerError> {
        let Some(Kind::Gemm((a, ta), (b, tb))) = self.kinds.get(&id).copied() else {
            return Err(self.unsupported(id, "not a GEMM"));
        };
        Ok(Step::Gemm {
            a: GemmOperand {
                buf: self.buffer(a)?,
                transposed: ta,
            },
            b: GemmOperand {
                buf: self.buffer(b)?,
                transposed: tb,
            },
            out,
            accumulate,
        })
    }

    /// Lowers the term.
    pub(super) fn build(mut self) -> Result<Plan, LowerError> {
        self.analyse()?;
        self.input_buffers()?;
        let uses = self.uses();
        let sums: BTreeMap<Id, Vec<Id>> = self
            .materialized
            .iter()
            .filter_map(|&id| Some((id, self.gemm_sum(id, &uses)?)))
            .collect();
        let absorbed: BTreeSet<Id> = sums.values().flatten().copied().collect();
        let mut steps = Vec::new();
        let mut named: BTreeMap<Id, String> = BTreeMap::new();
        for (name, id, _) in &self.outputs {
            named.entry(*id).or_insert_with(|| name.clone());
        }
        let mut temps = 0;
        let computed: Vec<(Id, Kind)> = self
            .materialized
            .iter()
            .filter_map(|id| Some((*id, *self.kinds.get(id)?)))
            .filter(|(_, k)| !matches!(k, Kind::Leaf | Kind::Num | Kind::Transpose(_, false)))
            .filter(|(id, _)| !absorbed.contains(id))
            .collect();
        for (id, kind) in computed {
            let shape = self.shape_of(id)?;
            let out = match named.get(&id) {
                Some(name) => self.add_buffer(name.clone(), shape, Role::Output),
                None => {
                    temps += 1;
                    self.add_buffer(format!("t{}", temps - 1), shape, Role::Temp)
                }
            };
            if let Some(gemms) = sums.get(&id) {
                for (i, &g) in gemms.iter().enumerate() {
                    steps.push(self.gemm_step(g, out, i > 0)?);
                }
                self.buffer_of.insert(id, out);
                continue;
            }
            let step = match kind {
                Kind::Gemm(..) => self.gemm_step(id, out, false)?,
                Kind::Transpose(x, _) => Step::Transpose {
                    x: self.buffer(x)?,
                    out,
                },
                Kind::Layout(layout, heads, x) => Step::Relayout {
                    layout,
                    heads,
                    x: self.buffer(x)?,
                    out,
                },
                _ => Step::RowPass {
                    out,
                    program: ProgramBuilder::new(&self, id).compile()?,
                },
            };
            self.buffer_of.insert(id, out);
            steps.push(step);
        }
        // Outputs not written by their own step: copies (or a broadcast number).
        let outputs = std::mem::take(&mut self.outputs);
        for (name, id, shape) in outputs {
            let written = self.buffer_of.get(&id).map(|b| &self.buffers[*b]);
            if written.is_some_and(|b| b.role == Role::Output && b.name == name) {
                continue;
            }
            let result = match &self.expr[id] {
                Op::Num(c) => Arg::Num(c.clone()),
                _ => Arg::Buf(self.buffer(id)?),
            };
            let out = self.add_buffer(name, shape, Role::Output);
            steps.push(Step::RowPass {
                out,
                program: RowProgram {
                    instrs: Vec::new(),
                    result,
                    row_regs: 0,
                    scalar_regs: 0,
                },
            });
        }
        Ok(Plan {
            buffers: self.buffers,
            steps,
        })
    }
}

/// Compiles the row-wise subterm rooted at one node into a row program.
struct ProgramBuilder<'a> {
    b: &'a Builder,
    root: Id,
    memo: HashMap<Id, Arg>,
    instrs: Vec<Instr>,
    rows: usize,
    scalars: usize,
}

fn is_row(a: &Arg) -> bool {
    matches!(a, Arg::Buf(_) | Arg::Reg(Reg::Row(_)))
}

impl<'a> ProgramBuilder<'a> {
    fn new(b: &'a Builder, root: Id) -> Self {
        ProgramBuilder {
            b,
            root,
            memo: HashMap::new(),
            instrs: Vec::new(),
            rows: 0,
            scalars: 0,
        }
    }

    fn compile(mut self) -> Result<RowProgram, LowerError> {
        let result = self.arg(self.root)?;
        Ok(RowProgram {
            instrs: self.instrs,
            result,
            row_regs: self.rows,
            scalar_regs: self.scalars,
        })
    }

    fn row_reg(&mut self) -> usize {
        self.rows += 1;
        self.rows - 1
    }

    fn scalar_reg(&mut self) -> usize {
        self.scalars += 1;
        self.scalars - 1
    }

    fn dst(&mut self, row: bool) -> Reg {
        if row {
            Reg::Row(self.row_reg())
        } else {
            Reg::Scalar(self.scalar_reg())
        }
    }

    fn arg(&mut self, id: Id) -> Result<Arg, LowerError> {
        if let Some(a) = self.memo.get(&id) {
            return Ok(a.clone());
        }
        let node = &self.b.expr[id];
        let inline = id == self.root || !self.b.materialized.contains(&id);
        let arg = match node {
            Op::Num(c) => Arg::Num(c.clone()),
            Op::Param(_) => Arg::Param(self.b.buffer(id)?),
            Op::Add([x, y]) | Op::Sub([x, y]) | Op::Mul([x, y]) | Op::Div([x, y]) if inline => {
                let op = match node {
                    Op::Add(_) => Binary::Add,
                    Op::Sub(_) => Binary::Sub,
                    Op::Mul(_) => Binary::Mul,
                    _ => Binary::Div,
                };
                let (a, b) = (self.arg(*x)?, self.arg(*y)?);
                let dst = self.dst(is_row(&a) || is_row(&b));
                self.instrs.push(Instr::Binary { op, a, b, dst });
                Arg::Reg(dst)
            }
            Op::Neg([x]) | Op::Inv([x]) | Op::Exp([x]) if inline => {
                let op = match node {
                    Op::Neg(_) => Unary::Neg,
                    Op::Inv(_) => Unary::Inv,
                    _ => Unary::Exp,
                };
                let x = self.arg(*x)?;
                let dst = self.dst(is_row(&x));
                self.instrs.push(Instr::Unary { op, x, dst });
                Arg::Reg(dst)
            }
            Op::RowSum([x]) if inline => {
                let x = self.arg(*x)?;
                let dst = self.scalar_reg();
                self.instrs.push(Instr::RowSum { x, dst });
                Arg::Reg(Reg::Scalar(dst))
            }
            Op::Softmax([x]) if inline => {
                let x = self.arg(*x)?;
                let dst = self.row_reg();
                self.instrs.push(Instr::Softmax { x, dst });
                Arg::Reg(Reg::Row(dst))
            }
            _ => Arg::Buf(self.b.buffer(id)?),
        };
        self.memo.insert(id, arg.clone());
        Ok(arg)
    }
}
