//! Lowering: a derivative-free IR term to a kernel [`Plan`].
//!
//! The translation is generic, one case per operator shape (in the manner of ISLE's
//! lowering rules), and never evaluates anything:
//!
//! | term                         | plan                                          |
//! |------------------------------|-----------------------------------------------|
//! | input `A`, `(tan A)`, `G`    | input buffer `A`, `dA`, `G`                    |
//! | parameter `@c`               | a 1×1×1 buffer `c` of role `Param`, read as a number |
//! | `(bmm x y)`                  | [`Step::Gemm`]; each `(T … (T z))` operand is a transpose flag on `z` (parity) |
//! | `(T x)` elsewhere            | [`Step::Transpose`] (a copy), or nothing for an even chain |
//! | `(split k x)`, `merge`, `reshape`, `unreshape`, `flat`, `unflat`, `swap` | [`Step::Relayout`] (a copy) |
//! | `+ - * / neg inv exp rowsum softmax`, numbers | instructions of a fused [`Step::RowPass`] |
//! | `(grad A w)`, `(g+ …)`       | one output `gA` per slot, the slot's weights summed |
//! | `(+ (bmm …) (bmm …) …)`, each bmm read only there | the first GEMM writes the sum's buffer, the others accumulate into it (β = 1): no temporaries, no add pass |
//!
//! A row-wise subterm is computed inside the row pass of the buffer that consumes it;
//! it gets its own buffer only when a GEMM, a transpose or an output needs it, or when
//! two different passes would otherwise both recompute it. The term is hash-consed
//! first, so a repeated subterm such as `(softmax X)` is computed once.
//!
//! [`lower_with`] can treat chosen subterms as saved inputs: `(softmax X)` as a
//! buffer `S` supplied by the caller, as a backward pass receives the forward output.

mod build;
mod plan;

pub use plan::{
    Arg, Binary, BufId, Buffer, GemmOperand, Instr, Plan, Reg, Role, RowProgram, Step, Unary,
};

use crate::ir::shape::{ShapeEnv, ShapeError};
use crate::ir::Expr;

/// Why a term cannot be lowered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LowerError {
    /// The term is ill-shaped for the declared inputs.
    #[error("the term is ill-shaped: {0}")]
    Shape(#[from] ShapeError),
    /// A derivative operator (`jvp`, `vjp`, `adj`) survives: derive first.
    #[error("{0} is a derivative operator: derive the term before lowering it")]
    DerivativeOperator(String),
    /// An operator in a position the plan has no step for.
    #[error("cannot lower {term}: {why}")]
    Unsupported {
        /// The subterm, printed.
        term: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A dimension shape inference left unknown.
    #[error("the shape of {0} is not determined by the inputs' shapes")]
    UnknownShape(String),
    /// A saved subterm names an input or output that already exists.
    #[error("saved buffer {0} clashes with an input or output of the same name")]
    NameClash(String),
    /// A subterm to keep as an output does not occur in the term.
    #[error("{0} is not a subterm of the term lowered")]
    NotASubterm(String),
}

/// A subterm the caller supplies as an input buffer instead of computing it.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    /// The subterm, e.g. `(softmax X)`.
    pub term: Expr,
    /// The input buffer's name, e.g. `S`.
    pub name: String,
}

/// Lowers a derivative-free term whose inputs have the declared `shapes` (for a VJP,
/// including the cotangent `G`).
pub fn lower(expr: &Expr, shapes: &ShapeEnv) -> Result<Plan, LowerError> {
    lower_with(expr, shapes, &[])
}

/// [`lower`], with each of `saved` read from an input buffer instead of computed.
pub fn lower_with(expr: &Expr, shapes: &ShapeEnv, saved: &[Saved]) -> Result<Plan, LowerError> {
    build::Builder::new(expr, shapes, saved)?.build()
}

/// [`lower`] with extra outputs: each of `keep` (a subterm of `expr`) is written to an
/// output buffer of its name beside `out`, as a forward pass saves what its backward
/// pass reads.
pub fn lower_saving(expr: &Expr, shapes: &ShapeEnv, keep: &[Saved]) -> Result<Plan, LowerError> {
    build::Builder::new(expr, shapes, &[])?
        .keeping(keep)?
        .build()
}

#[cfg(test)]
mod tests;
