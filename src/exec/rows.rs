//! Buffers of one execution and the row-program interpreter.
//!
//! A row program runs once per row; each instruction is a tight loop over the row
//! (or one scalar operation), reading buffer rows in place and writing registers
//! allocated once per call of [`run_rows`], never per row.

use super::kernels::ExecScalar;
use super::ExecError;
use crate::lower::{Arg, Binary, Instr, Plan, Reg, Role, RowProgram, Unary};
use crate::scalar::{ExpOracle, ScalarError};
use crate::tensor::{Dims, Tensor};
use std::collections::BTreeMap;

/// The buffers of one execution: inputs borrowed, the rest owned.
pub struct Store<'a, S> {
    slots: Vec<Slot<'a, S>>,
}

enum Slot<'a, S> {
    Borrowed(&'a [S]),
    Owned(Vec<S>),
}

impl<'a, S: ExecScalar> Store<'a, S> {
    /// Borrows the inputs and allocates every other buffer (zero-filled) once.
    pub(super) fn new(plan: &Plan, inputs: &'a BTreeMap<String, Tensor<S>>, dims: &[Dims]) -> Self {
        let slots = plan
            .buffers
            .iter()
            .zip(dims)
            .map(|(b, d)| match (b.role, inputs.get(&b.name)) {
                (Role::Input | Role::Param, Some(t)) => Slot::Borrowed(t.data()),
                _ => Slot::Owned(vec![S::zero(); d[0] * d[1] * d[2]]),
            })
            .collect();
        Store { slots }
    }

    /// The contents of buffer `b` (empty while taken).
    pub fn get(&self, b: usize) -> &[S] {
        match &self.slots[b] {
            Slot::Borrowed(s) => s,
            Slot::Owned(v) => v,
        }
    }

    /// Takes an owned buffer out to be written.
    pub(super) fn take(&mut self, b: usize) -> Vec<S> {
        match &mut self.slots[b] {
            Slot::Owned(v) => std::mem::take(v),
            Slot::Borrowed(s) => s.to_vec(),
        }
    }

    /// Puts a written buffer back.
    pub(super) fn put(&mut self, b: usize, v: Vec<S>) {
        self.slots[b] = Slot::Owned(v);
    }
}

/// An operand with its numbers converted to the scalar type.
#[derive(Debug, Clone, Copy)]
enum Src {
    Buf(usize),
    Row(usize),
    Scalar(usize),
    Const(usize),
    Param(usize),
}

/// A row program ready to run: numbers converted once per execution.
pub struct Compiled<'p, S> {
    program: &'p RowProgram,
    consts: Vec<S>,
    srcs: Vec<Src>,
}

impl<'p, S: ExecScalar> Compiled<'p, S> {
    /// Converts the program's numbers; checks every register index against the
    /// program's counts and every buffer read against the output's dims.
    pub(super) fn new(
        program: &'p RowProgram,
        dims: &[Dims],
        out: usize,
    ) -> Result<Self, ExecError> {
        let mut consts = Vec::new();
        let mut srcs = Vec::new();
        let row = |r: usize| r < program.row_regs;
        let scalar = |s: usize| s < program.scalar_regs;
        for a in program.args() {
            srcs.push(match a {
                Arg::Buf(b) if dims.get(*b) == Some(&dims[out]) => Src::Buf(*b),
                Arg::Reg(Reg::Row(r)) if row(*r) => Src::Row(*r),
                Arg::Reg(Reg::Scalar(s)) if scalar(*s) => Src::Scalar(*s),
                Arg::Num(c) => {
                    consts.push(S::from_rational(&c.0));
                    Src::Const(consts.len() - 1)
                }
                Arg::Param(b) if dims.get(*b) == Some(&[1, 1, 1]) => Src::Param(*b),
                other => return Err(bad_program(&format!("operand {other:?} is out of range"))),
            });
        }
        let dsts_ok = program.instrs.iter().all(|i| match i {
            Instr::Unary { dst, .. } | Instr::Binary { dst, .. } => match dst {
                Reg::Row(r) => row(*r),
                Reg::Scalar(s) => scalar(*s),
            },
            Instr::RowSum { dst, .. } => scalar(*dst),
            Instr::Softmax { dst, .. } => row(*dst),
        });
        if !dsts_ok {
            return Err(bad_program("a destination register is out of range"));
        }
        Ok(Compiled {
            program,
            consts,
            srcs,
        })
    }
}

/// A read-only view of one operand on the current row.
enum View<'a, S> {
    Row(&'a [S]),
    One(&'a S),
}

impl<S: Clone> View<'_, S> {
    fn fill(&self, d: &mut [S]) {
        match self {
            View::Row(x) => d.clone_from_slice(x),
            View::One(x) => d.fill((*x).clone()),
        }
    }
}

struct Regs<S> {
    rows: Vec<Vec<S>>,
    scalars: Vec<S>,
}

fn view<'a, S>(
    src: Src,
    row: usize,
    n: usize,
    store: &'a Store<'_, S>,
    regs: &'a Regs<S>,
    consts: &'a [S],
) -> View<'a, S>
where
    S: ExecScalar,
{
    match src {
        Src::Buf(b) => View::Row(&store.get(b)[row * n..(row + 1) * n]),
        Src::Row(r) => View::Row(&regs.rows[r]),
        Src::Scalar(s) => View::One(&regs.scalars[s]),
        Src::Const(c) => View::One(&consts[c]),
        Src::Param(b) => View::One(&store.get(b)[0]),
    }
}

fn unary<S: ExecScalar>(op: Unary, x: &S, oracle: &ExpOracle) -> Result<S, ScalarError> {
    match op {
        Unary::Neg => Ok(-x.clone()),
        Unary::Inv => x.recip(),
        Unary::Exp => x.exp(oracle),
    }
}

fn binary<S: ExecScalar>(op: Binary, x: &S, y: &S) -> Result<S, ScalarError> {
    Ok(match op {
        Binary::Add => x.clone() + y.clone(),
        Binary::Sub => x.clone() - y.clone(),
        Binary::Mul => x.clone() * y.clone(),
        Binary::Div => x.div(y)?,
    })
}

/// Runs `c` on the rows of `out` (rows of length `n > 0`), the first of which is
/// row `first` of the output buffer; `store` holds every buffer the program reads.
pub fn run_rows<S: ExecScalar>(
    c: &Compiled<'_, S>,
    n: usize,
    first: usize,
    out: &mut [S],
    store: &Store<'_, S>,
    oracle: &ExpOracle,
) -> Result<(), ExecError> {
    let p = c.program;
    let mut regs = Regs {
        rows: vec![vec![S::zero(); n]; p.row_regs],
        scalars: vec![S::zero(); p.scalar_regs],
    };
    for (r, out_row) in out.chunks_mut(n).enumerate() {
        let row = first + r;
        let mut k = 0;
        let mut next = || {
            k += 1;
            c.srcs[k - 1]
        };
        for ins in &p.instrs {
            match ins {
                Instr::Unary { op, dst, .. } => {
                    let x = next();
                    match *dst {
                        Reg::Row(d) => {
                            let mut dr = std::mem::take(&mut regs.rows[d]);
                            match view(x, row, n, store, &regs, &c.consts) {
                                View::Row(x) => {
                                    for (d, x) in dr.iter_mut().zip(x) {
                                        *d = unary(*op, x, oracle)?;
                                    }
                                }
                                View::One(x) => dr.fill(unary(*op, x, oracle)?),
                            }
                            regs.rows[d] = dr;
                        }
                        Reg::Scalar(d) => {
                            let v = match view(x, row, n, store, &regs, &c.consts) {
                                View::One(x) => unary(*op, x, oracle)?,
                                View::Row(_) => {
                                    return Err(bad_program("a row operand into a scalar"))
                                }
                            };
                            regs.scalars[d] = v;
                        }
                    }
                }
                Instr::Binary { op, dst, .. } => {
                    let (a, b) = (next(), next());
                    match *dst {
                        Reg::Row(d) => {
                            let mut dr = std::mem::take(&mut regs.rows[d]);
                            let va = view(a, row, n, store, &regs, &c.consts);
                            let vb = view(b, row, n, store, &regs, &c.consts);
                            binary_row(*op, &mut dr, va, vb)?;
                            regs.rows[d] = dr;
                        }
                        Reg::Scalar(d) => {
                            let v = match (
                                view(a, row, n, store, &regs, &c.consts),
                                view(b, row, n, store, &regs, &c.consts),
                            ) {
                                (View::One(x), View::One(y)) => binary(*op, x, y)?,
                                _ => return Err(bad_program("a row operand into a scalar")),
                            };
                            regs.scalars[d] = v;
                        }
                    }
                }
                Instr::RowSum { dst, .. } => {
                    let v = match view(next(), row, n, store, &regs, &c.consts) {
                        View::Row(x) => S::sum(x.iter().cloned()),
                        View::One(x) => S::sum(std::iter::repeat_n(x.clone(), n)),
                    };
                    regs.scalars[*dst] = v;
                }
                Instr::Softmax { dst, .. } => {
                    let mut dr = std::mem::take(&mut regs.rows[*dst]);
                    view(next(), row, n, store, &regs, &c.consts).fill(&mut dr);
                    S::softmax_in_place(&mut dr, oracle)?;
                    regs.rows[*dst] = dr;
                }
            }
        }
        view(next(), row, n, store, &regs, &c.consts).fill(out_row);
    }
    Ok(())
}

fn bad_program(what: &str) -> ExecError {
    ExecError::Malformed(what.to_string())
}

fn binary_row<S: ExecScalar>(
    op: Binary,
    d: &mut [S],
    a: View<'_, S>,
    b: View<'_, S>,
) -> Result<(), ScalarError> {
    match (a, b) {
        (View::Row(x), View::Row(y)) => {
            for ((d, x), y) in d.iter_mut().zip(x).zip(y) {
                *d = binary(op, x, y)?;
            }
        }
        (View::Row(x), View::One(y)) => {
            for (d, x) in d.iter_mut().zip(x) {
                *d = binary(op, x, y)?;
            }
        }
        (View::One(x), View::Row(y)) => {
            for (d, y) in d.iter_mut().zip(y) {
                *d = binary(op, x, y)?;
            }
        }
        (View::One(x), View::One(y)) => d.fill(binary(op, x, y)?),
    }
    Ok(())
}
