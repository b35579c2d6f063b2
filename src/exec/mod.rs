//! Executors: run a lowered [`Plan`] over f64 (fast, multi-core) or over any exact
//! scalar (ℚ, dual numbers, error-tracking values), with one step dispatcher.
//!
//! An executor never interprets expressions: it binds the plan's symbolic dims to
//! the inputs' sizes (checking every input's shape), allocates every temporary and
//! output buffer once, then runs the steps in order. The scalar type decides how a
//! GEMM, a row sum and a softmax row are computed ([`ExecScalar`]): exactly over ℚ as
//! the IR evaluator defines them; with `matrixmultiply` and `rayon` and a
//! max-shifted softmax over f64 ([`kernels`]).

pub mod kernels;
mod rows;

pub use kernels::{ExecScalar, GemmShape};
pub use rows::{Compiled, Store};

use crate::ir::shape::fmt_shape;
use crate::lower::{Plan, Role, Step};
use crate::scalar::{ExpOracle, ScalarError};
use crate::tensor::{checked_size, fmt_dims, Dims, Tensor, TensorError};
use std::collections::BTreeMap;

/// Why a plan could not be run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExecError {
    /// An input the plan reads was not given.
    #[error("input {0} is missing")]
    Missing(String),
    /// A tensor was given for a name the plan does not read.
    #[error("{0} is not an input of the plan")]
    Unexpected(String),
    /// An input's shape disagrees with the plan.
    #[error("input {name}: the plan expects {expected}, found {found}")]
    Shape {
        /// The input.
        name: String,
        /// The plan's shape, with the sizes bound so far.
        expected: String,
        /// The given shape.
        found: String,
    },
    /// A buffer's dim is bound by no input.
    #[error("dim {0} is not bound by any input")]
    Unbound(String),
    /// A hand-edited plan whose steps disagree with its buffers' shapes.
    #[error("malformed row program: {0}")]
    Malformed(String),
    /// A kernel under test (not this executor) refused its inputs.
    #[error("kernel failed: {0}")]
    Kernel(String),
    /// Sizes overflow or scalar arithmetic failed (ℚ division by zero, no exp oracle).
    #[error(transparent)]
    Tensor(#[from] TensorError),
}

impl From<ScalarError> for ExecError {
    fn from(e: ScalarError) -> Self {
        ExecError::Tensor(TensorError::Scalar(e))
    }
}

/// Inputs or outputs by buffer name.
pub type Tensors<S> = BTreeMap<String, Tensor<S>>;

/// The concrete dims of every buffer of `plan`, bound from the inputs' shapes.
pub fn bind<S: crate::scalar::Scalar>(
    plan: &Plan,
    inputs: &Tensors<S>,
) -> Result<Vec<Dims>, ExecError> {
    if let Some(extra) = inputs.keys().find(|k| {
        !plan
            .buffers
            .iter()
            .any(|b| matches!(b.role, Role::Input | Role::Param) && &b.name == *k)
    }) {
        return Err(ExecError::Unexpected(extra.clone()));
    }
    let mut sizes: BTreeMap<String, usize> = BTreeMap::new();
    let mut pending: Vec<(&crate::lower::Buffer, Dims)> = Vec::new();
    let supplied = plan
        .with_role(Role::Input)
        .chain(plan.with_role(Role::Param));
    for (_, b) in supplied {
        let t = inputs
            .get(&b.name)
            .ok_or_else(|| ExecError::Missing(b.name.clone()))?;
        pending.push((b, t.dims()));
    }
    // A product dim binds its last unknown factor once the others are bound: sweep
    // until nothing changes.
    let mut open: Vec<(usize, usize)> = (0..pending.len())
        .flat_map(|i| (0..3).map(move |a| (i, a)))
        .collect();
    loop {
        let before = open.len();
        let mut still = Vec::new();
        for (i, axis) in open {
            let (b, found) = pending[i];
            match b.shape[axis].bind(found[axis], &mut sizes) {
                Some(true) => {}
                Some(false) => return Err(shape_mismatch(b, found, &sizes)),
                None => still.push((i, axis)),
            }
        }
        open = still;
        if open.is_empty() || open.len() == before {
            break;
        }
    }
    if let Some((i, axis)) = open.first() {
        return Err(ExecError::Unbound(pending[*i].0.shape[*axis].to_string()));
    }
    plan.buffers
        .iter()
        .map(|b| {
            let mut dims = [0; 3];
            for (slot, d) in dims.iter_mut().zip(&b.shape) {
                *slot = d
                    .size_with(&|n| sizes.get(n).copied())
                    .ok_or_else(|| ExecError::Unbound(d.to_string()))?;
            }
            checked_size(dims)?;
            Ok(dims)
        })
        .collect()
}

/// The error for an input whose dims disagree with its buffer's shape.
fn shape_mismatch(
    b: &crate::lower::Buffer,
    found: Dims,
    sizes: &BTreeMap<String, usize>,
) -> ExecError {
    let bound: Vec<String> = b
        .shape
        .iter()
        .map(|d| {
            d.size_with(&|n| sizes.get(n).copied())
                .map_or(d.to_string(), |v| v.to_string())
        })
        .collect();
    ExecError::Shape {
        name: b.name.clone(),
        expected: format!("{} (= {})", fmt_shape(&b.shape), bound.join("×")),
        found: fmt_dims(&found),
    }
}

/// Runs `plan` over f64: GEMMs by `matrixmultiply` (heads in parallel), fused row
/// passes in parallel over rows, softmax shifted by the row maximum. See
/// [`kernels`] for layouts, preconditions and error bounds.
pub fn exec_f64(plan: &Plan, inputs: &Tensors<f64>) -> Result<Tensors<f64>, ExecError> {
    run(plan, inputs, &ExpOracle::None)
}

/// Runs `plan` over an exact scalar (ℚ, dual numbers, ...): the same steps, with
/// GEMMs and row sums summed left to right and `exp` taken from `oracle`.
pub fn exec_exact<S: ExecScalar>(
    plan: &Plan,
    inputs: &Tensors<S>,
    oracle: &ExpOracle,
) -> Result<Tensors<S>, ExecError> {
    run(plan, inputs, oracle)
}

fn run<S: ExecScalar>(
    plan: &Plan,
    inputs: &Tensors<S>,
    oracle: &ExpOracle,
) -> Result<Tensors<S>, ExecError> {
    let dims = bind(plan, inputs)?;
    plan.check_writes().map_err(ExecError::Malformed)?;
    let in_range =
        |b: usize| b < dims.len() && !matches!(plan.buffers[b].role, Role::Input | Role::Param);
    for step in &plan.steps {
        let reads_ok = match step {
            Step::Gemm { a, b, .. } => a.buf < dims.len() && b.buf < dims.len(),
            Step::Transpose { x, .. } | Step::Relayout { x, .. } => *x < dims.len(),
            Step::RowPass { .. } => true,
        };
        if !reads_ok || !in_range(step.out()) {
            return Err(ExecError::Malformed(format!("{step:?} names a bad buffer")));
        }
    }
    let mut store = Store::new(plan, inputs, &dims);
    for step in &plan.steps {
        let o = step.out();
        let mut out = store.take(o);
        match step {
            Step::Gemm {
                a, b, accumulate, ..
            } => {
                let shape = GemmShape::new(dims[a.buf], a.transposed, dims[b.buf], b.transposed);
                if !shape.fits(dims[b.buf][0], dims[o]) {
                    return Err(ExecError::Malformed(format!(
                        "gemm of {} and {} into {}",
                        fmt_dims(&dims[a.buf]),
                        fmt_dims(&dims[b.buf]),
                        fmt_dims(&dims[o])
                    )));
                }
                S::gemm(
                    &shape,
                    store.get(a.buf),
                    store.get(b.buf),
                    &mut out,
                    *accumulate,
                )?;
            }
            Step::Transpose { x, .. } => {
                let [h, r, c] = dims[*x];
                if dims[o] != [h, c, r] {
                    return Err(ExecError::Malformed("transpose of the wrong shape".into()));
                }
                S::transpose(dims[*x], store.get(*x), &mut out)
            }
            Step::Relayout {
                layout, heads, x, ..
            } => {
                if layout.out_dims(dims[*x], *heads).ok() != Some(dims[o]) {
                    return Err(ExecError::Malformed(format!(
                        "{layout} {heads} of {} into {}",
                        fmt_dims(&dims[*x]),
                        fmt_dims(&dims[o])
                    )));
                }
                let src = store.get(*x);
                for (slot, i) in out.iter_mut().zip(layout.sources(dims[*x], *heads)?) {
                    *slot = src[i].clone();
                }
            }
            Step::RowPass { program, .. } => {
                let compiled = Compiled::new(program, &dims, o)?;
                S::row_pass(&compiled, dims[o][2], &store, &mut out, oracle)?;
            }
        }
        store.put(o, out);
    }
    let mut outs = BTreeMap::new();
    for (id, b) in plan.with_role(Role::Output) {
        outs.insert(b.name.clone(), Tensor::new(dims[id], store.take(id))?);
    }
    Ok(outs)
}

#[cfg(test)]
mod tests;
