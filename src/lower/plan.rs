//! The kernel plan: named buffers with symbolic shapes and the steps that fill them.
//!
//! A plan is plain data (printable, serializable). Every buffer is rank 3, h×m×n,
//! row-major; a step reads buffers and writes exactly one buffer that no earlier step
//! wrote (single assignment), so steps run in order with no aliasing. The one
//! exception is an accumulating GEMM (`out += op(a)·op(b)`, β = 1), which adds into a
//! buffer an earlier GEMM wrote and reads only other buffers ([`Plan::check_writes`]).

use crate::ir::layout::Layout;
use crate::ir::shape::{fmt_shape, Shape};
use crate::ir::Const;
use serde::{Serialize, Serializer};
use std::fmt;

/// The index of a buffer in [`Plan::buffers`].
pub type BufId = usize;

/// What a buffer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Supplied by the caller: an input value `A`, a tangent `dA`, the cotangent `G`
    /// or a saved forward output such as `S`.
    Input,
    /// A runtime scalar parameter supplied by the caller (a 1×1×1 buffer; an `f64`
    /// argument of a generated kernel), read by row programs as a broadcast number.
    Param,
    /// Written and read by the plan only.
    Temp,
    /// Returned to the caller.
    Output,
}

/// A named buffer with its symbolic shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Buffer {
    /// The name the caller uses (`A`, `dA`, `G`, `gA`, `out`) or `t0`, `t1`, ...
    pub name: String,
    /// Its shape h×m×n, dims named as the inputs declare them.
    #[serde(serialize_with = "ser_shape")]
    pub shape: Shape,
    /// Input, temporary or output.
    pub role: Role,
}

/// One operand of a GEMM: a buffer, read transposed (last two axes) or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GemmOperand {
    /// The buffer read.
    pub buf: BufId,
    /// Whether the operand is the transpose of the buffer (a stride swap, no copy).
    pub transposed: bool,
}

/// A register of a row program: a row of n values or one value per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Reg {
    /// A row register (n values).
    Row(usize),
    /// A per-row scalar register (one value, broadcast along the row).
    Scalar(usize),
}

/// What a row instruction reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Arg {
    /// The current row of a buffer.
    Buf(BufId),
    /// A register.
    Reg(Reg),
    /// An exact number, broadcast.
    Num(#[serde(serialize_with = "ser_const")] Const),
    /// The value of a runtime parameter (a [`Role::Param`] buffer), broadcast.
    Param(BufId),
}

/// Entrywise unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unary {
    /// `-x`.
    Neg,
    /// `1/x`.
    Inv,
    /// `exp x`.
    Exp,
}

/// Entrywise binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Binary {
    /// `x + y`.
    Add,
    /// `x - y`.
    Sub,
    /// `x * y`.
    Mul,
    /// `x / y`.
    Div,
}

/// One instruction of a row program; `dst` is never read by the same instruction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Instr {
    /// `dst = op x` entrywise.
    Unary {
        /// The operator.
        op: Unary,
        /// The operand.
        x: Arg,
        /// The destination (a row register if `x` is a row).
        dst: Reg,
    },
    /// `dst = a op b` entrywise, a scalar broadcasting against a row.
    Binary {
        /// The operator.
        op: Binary,
        /// The left operand.
        a: Arg,
        /// The right operand.
        b: Arg,
        /// The destination (a row register if either operand is a row).
        dst: Reg,
    },
    /// `dst = Σ_j x_j` over the row (a scalar operand counts n times).
    RowSum {
        /// The summed operand.
        x: Arg,
        /// The scalar register written.
        dst: usize,
    },
    /// `dst = softmax(x)` along the row.
    Softmax {
        /// The operand (broadcast to a row if scalar).
        x: Arg,
        /// The row register written.
        dst: usize,
    },
}

/// A fused row-wise pass: for each of the h·m rows of the output, run `instrs` over
/// the row (every buffer read has the output's shape) and store `result`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowProgram {
    /// The instructions, in order.
    pub instrs: Vec<Instr>,
    /// What is stored into the output row.
    pub result: Arg,
    /// Row registers used.
    pub row_regs: usize,
    /// Scalar registers used.
    pub scalar_regs: usize,
}

impl RowProgram {
    /// Every operand the program reads, the result last.
    pub fn args(&self) -> impl Iterator<Item = &Arg> {
        self.instrs
            .iter()
            .flat_map(|i| match i {
                Instr::Unary { x, .. } | Instr::RowSum { x, .. } | Instr::Softmax { x, .. } => {
                    vec![x]
                }
                Instr::Binary { a, b, .. } => vec![a, b],
            })
            .chain(std::iter::once(&self.result))
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Step {
    /// `out = op(a) · op(b)` head by head, `op` a transpose where flagged; with
    /// `accumulate`, `out += op(a) · op(b)` (β = 1) into the `out` an earlier GEMM wrote.
    Gemm {
        /// The left operand.
        a: GemmOperand,
        /// The right operand.
        b: GemmOperand,
        /// The output buffer.
        out: BufId,
        /// Add into `out` instead of overwriting it.
        accumulate: bool,
    },
    /// `out = xᵀ` (last two axes), a copy: only for transposes no GEMM absorbs.
    Transpose {
        /// The transposed buffer.
        x: BufId,
        /// The output buffer.
        out: BufId,
    },
    /// `out = layout(x)` with `heads` heads: a head split or merge, a copy that moves
    /// every entry of `x` once (see [`crate::ir::layout`]).
    Relayout {
        /// The operator.
        layout: Layout,
        /// The head count (unused by `swap`).
        heads: usize,
        /// The operand.
        x: BufId,
        /// The output buffer.
        out: BufId,
    },
    /// A fused row-wise pass writing `out`.
    RowPass {
        /// The output buffer.
        out: BufId,
        /// The per-row program.
        program: RowProgram,
    },
}

impl Step {
    /// Whether this step reads buffer `b`.
    pub fn reads(&self, b: BufId) -> bool {
        match self {
            Step::Gemm { a, b: right, .. } => a.buf == b || right.buf == b,
            Step::Transpose { x, .. } | Step::Relayout { x, .. } => *x == b,
            Step::RowPass { program, .. } => program.args().any(|a| *a == Arg::Buf(b)),
        }
    }

    /// The buffer this step writes.
    pub fn out(&self) -> BufId {
        match self {
            Step::Gemm { out, .. }
            | Step::Transpose { out, .. }
            | Step::Relayout { out, .. }
            | Step::RowPass { out, .. } => *out,
        }
    }
}

/// A kernel plan: buffers and the steps that fill the temporaries and outputs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// All buffers; steps refer to them by index.
    pub buffers: Vec<Buffer>,
    /// The steps, in execution order.
    pub steps: Vec<Step>,
}

impl Plan {
    /// Checks the write discipline: a plain step writes a buffer no earlier step wrote
    /// (and no input); an accumulating GEMM adds into a buffer an earlier GEMM wrote
    /// and does not read it. Returns what is wrong with the first bad step.
    pub fn check_writes(&self) -> Result<(), String> {
        let mut written: Vec<Option<bool>> = vec![None; self.buffers.len()];
        for (i, step) in self.steps.iter().enumerate() {
            let o = step.out();
            let Some(slot) = written.get_mut(o) else {
                return Err(format!(
                    "step {} writes buffer {o}, which does not exist",
                    i + 1
                ));
            };
            let name = &self.buffers[o].name;
            match step {
                Step::Gemm {
                    a,
                    b,
                    accumulate: true,
                    ..
                } => {
                    if *slot != Some(true) {
                        return Err(format!(
                            "step {} accumulates into {name}, which no earlier GEMM wrote",
                            i + 1
                        ));
                    }
                    if a.buf == o || b.buf == o {
                        return Err(format!("step {} reads {name} while adding into it", i + 1));
                    }
                }
                _ if slot.is_some()
                    || matches!(self.buffers[o].role, Role::Input | Role::Param) =>
                {
                    return Err(format!("step {} writes {name} a second time", i + 1));
                }
                _ => *slot = Some(matches!(step, Step::Gemm { .. })),
            }
        }
        Ok(())
    }

    /// An instruction as the plan prints it (`r0 = exp X`).
    pub fn instr_text(&self, i: &Instr) -> String {
        Named(self, i).to_string()
    }

    /// A row program's operand as the plan prints it (a buffer name, register or number).
    pub fn arg_text(&self, a: &Arg) -> String {
        Named(self, a).to_string()
    }

    /// A GEMM operand as the plan prints it (`Kᵀ`).
    pub fn operand_text(&self, o: GemmOperand) -> String {
        Named(self, o).to_string()
    }

    /// The buffers with `role`, with their ids.
    pub fn with_role(&self, role: Role) -> impl Iterator<Item = (BufId, &Buffer)> {
        self.buffers
            .iter()
            .enumerate()
            .filter(move |(_, b)| b.role == role)
    }
}

fn ser_shape<S: Serializer>(shape: &Shape, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(shape.iter().map(|d| d.to_string()))
}

fn ser_const<S: Serializer>(c: &Const, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&c.to_string())
}

struct Named<'a, T>(&'a Plan, T);

impl fmt::Display for Named<'_, &Arg> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Arg::Buf(b) => write!(f, "{}", self.0.buffers[*b].name),
            Arg::Reg(r) => write!(f, "{r}"),
            Arg::Num(c) => write!(f, "{c}"),
            Arg::Param(b) => write!(f, "@{}", self.0.buffers[*b].name),
        }
    }
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reg::Row(i) => write!(f, "r{i}"),
            Reg::Scalar(i) => write!(f, "s{i}"),
        }
    }
}

impl fmt::Display for Named<'_, &Instr> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.0;
        match self.1 {
            Instr::Unary { op, x, dst } => {
                let name = match op {
                    Unary::Neg => "neg",
                    Unary::Inv => "inv",
                    Unary::Exp => "exp",
                };
                write!(f, "{dst} = {name} {}", Named(p, x))
            }
            Instr::Binary { op, a, b, dst } => {
                let sym = match op {
                    Binary::Add => "+",
                    Binary::Sub => "-",
                    Binary::Mul => "*",
                    Binary::Div => "/",
                };
                write!(f, "{dst} = {} {sym} {}", Named(p, a), Named(p, b))
            }
            Instr::RowSum { x, dst } => write!(f, "s{dst} = rowsum {}", Named(p, x)),
            Instr::Softmax { x, dst } => {
                write!(f, "r{dst} = softmax {} (max-shifted in f64)", Named(p, x))
            }
        }
    }
}

impl fmt::Display for Named<'_, GemmOperand> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = if self.1.transposed { "ᵀ" } else { "" };
        write!(f, "{}{t}", self.0.buffers[self.1.buf].name)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "buffers:")?;
        let width = self.buffers.iter().map(|b| b.name.len()).max().unwrap_or(0);
        for b in &self.buffers {
            let role = match b.role {
                Role::Input => "input ",
                Role::Param => "param ",
                Role::Temp => "temp  ",
                Role::Output => "output",
            };
            writeln!(f, "  {:width$}  {role}  {}", b.name, fmt_shape(&b.shape))?;
        }
        writeln!(f, "steps:")?;
        for (i, step) in self.steps.iter().enumerate() {
            let out = &self.buffers[step.out()].name;
            match step {
                Step::Gemm {
                    a, b, accumulate, ..
                } => writeln!(
                    f,
                    "  {}. {out} {}= gemm {} · {}   (per head)",
                    i + 1,
                    if *accumulate { "+" } else { "" },
                    Named(self, *a),
                    Named(self, *b)
                )?,
                Step::Transpose { x, .. } => {
                    writeln!(f, "  {}. {out} = copy {}ᵀ", i + 1, self.buffers[*x].name)?
                }
                Step::Relayout {
                    layout, heads, x, ..
                } => {
                    let k = match layout {
                        Layout::Swap => String::new(),
                        _ => format!(" {heads}"),
                    };
                    let x = &self.buffers[*x].name;
                    writeln!(f, "  {}. {out} = copy ({layout}{k} {x})", i + 1)?
                }
                Step::RowPass { program, .. } => {
                    writeln!(f, "  {}. {out} = row pass, per row:", i + 1)?;
                    for ins in &program.instrs {
                        writeln!(f, "       {}", Named(self, ins))?;
                    }
                    writeln!(f, "       store {}", Named(self, &program.result))?;
                }
            }
        }
        Ok(())
    }
}
