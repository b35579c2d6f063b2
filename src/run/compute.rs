//! The numbers: the f64 kernel of an op and mode applied to named inputs.
//!
//! Today the kernel is the derived IR term (the embedded rules, [`derive_unchecked`])
//! evaluated by [`eval`] over f64; the forward kernel is the op's own term. The lowered
//! executor replaces this body; [`compute`]'s signature is what the rest of `run`
//! relies on.

use super::{names, RunError, RunMode};
use crate::derive::{derive_unchecked, DeriveError, Limits, SpecOp, COTANGENT};
use crate::ir::eval::{eval, Binding, Env, EvalError, Value};
use crate::ir::{parse_term, Expr};
use crate::rules::RuleSet;
use crate::scalar::ExpOracle;
use crate::tensor::Tensor;
use egg::Symbol;
use std::collections::BTreeMap;

/// Runs `op` in `mode` on `inputs` (keyed by [`names::inputs`], shapes already
/// checked) and returns the outputs keyed by [`names::outputs`].
pub fn compute(
    op: SpecOp,
    mode: RunMode,
    inputs: &BTreeMap<String, Tensor<f64>>,
) -> Result<BTreeMap<String, Tensor<f64>>, RunError> {
    let kernel = kernel(op, mode)?;
    let value = eval(&kernel, &env(op, mode, inputs)?)?;
    let mut outputs = BTreeMap::new();
    match (mode, value) {
        (RunMode::Forward | RunMode::Jvp, Value::Tensor(t)) => {
            outputs.insert(names::outputs(op, mode).remove(0), t);
        }
        (RunMode::Vjp, Value::Grad(mut grads)) => {
            for p in names::primals(op) {
                // A slot the derivation left out is a zero gradient.
                let g = match grads.remove(&Symbol::from(p)) {
                    Some(g) => g,
                    None => {
                        Tensor::filled(primal(inputs, p)?.dims(), 0.0).map_err(EvalError::from)?
                    }
                };
                outputs.insert(names::gradient(p), g);
            }
        }
        _ => {
            return Err(RunError::Eval(EvalError::Kind {
                op: format!("{op} {mode}"),
                expected: "a tensor (forward, jvp) or a gradient (vjp)",
            }))
        }
    }
    Ok(outputs)
}

/// The IR term computing `op` in `mode`: the forward term, or the derived JVP/VJP.
fn kernel(op: SpecOp, mode: RunMode) -> Result<Expr, RunError> {
    Ok(match mode.derivative() {
        None => parse_term(op.term().0).map_err(DeriveError::Parse)?,
        Some(m) => {
            let rules = RuleSet::embedded().map_err(DeriveError::from)?;
            derive_unchecked(&op.request(m)?, &rules, &Limits::default())?.result
        }
    })
}

fn primal<'a>(
    inputs: &'a BTreeMap<String, Tensor<f64>>,
    name: &str,
) -> Result<&'a Tensor<f64>, EvalError> {
    inputs
        .get(name)
        .ok_or_else(|| EvalError::Unbound(name.to_string()))
}

/// The evaluation point: primals with their tangents (zero unless given), and the
/// cotangent `G` for VJPs.
fn env(
    op: SpecOp,
    mode: RunMode,
    inputs: &BTreeMap<String, Tensor<f64>>,
) -> Result<Env<f64>, EvalError> {
    let bind = |value: &Tensor<f64>, tangent: Option<&Tensor<f64>>| -> Result<_, EvalError> {
        let tangent = match tangent {
            Some(t) => t.clone(),
            None => Tensor::filled(value.dims(), 0.0)?,
        };
        Ok(Binding {
            value: value.clone(),
            tangent,
        })
    };
    let mut bindings = BTreeMap::new();
    for p in names::primals(op) {
        let tangent = match mode {
            RunMode::Jvp => Some(primal(inputs, &names::tangent(p))?),
            _ => None,
        };
        bindings.insert(Symbol::from(p), bind(primal(inputs, p)?, tangent)?);
    }
    if mode == RunMode::Vjp {
        let g = bind(primal(inputs, COTANGENT)?, None)?;
        bindings.insert(Symbol::from(COTANGENT), g);
    }
    Ok(Env {
        inputs: bindings,
        oracle: ExpOracle::None,
    })
}
