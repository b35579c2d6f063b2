//! The overflow guard: outputs are refused when they hold NaN or ±inf that no NaN or
//! ±inf input explains, so garbage is never written as a result.

use super::{compute, task::Task, RunError};
use crate::tensor::Tensor;
use std::collections::BTreeMap;

type Named = BTreeMap<String, Tensor<f64>>;

fn first_non_finite(tensors: &Named) -> Option<String> {
    tensors
        .iter()
        .find(|(_, t)| t.data().iter().any(|v| !v.is_finite()))
        .map(|(name, _)| name.clone())
}

/// Checks `outputs` (computed from `inputs`). Non-finite inputs propagate as IEEE
/// arithmetic says; but if the same computation with every non-finite input entry
/// replaced by 0 still yields a non-finite output, the f64 evaluation itself
/// overflowed, and this is an error ([`RunError::NonFinite`]). Costs a second
/// computation only when some output and some input are non-finite.
pub fn check_finite(
    task: &Task,
    plan: usize,
    inputs: &Named,
    outputs: &Named,
) -> Result<(), RunError> {
    let Some(first) = first_non_finite(outputs) else {
        return Ok(());
    };
    let culprit = if first_non_finite(inputs).is_none() {
        Some(first)
    } else {
        let finite_part: Named = inputs
            .iter()
            .map(|(k, t)| (k.clone(), t.map(|v| if v.is_finite() { *v } else { 0.0 })))
            .collect();
        first_non_finite(&compute(task, plan, &finite_part)?)
    };
    match culprit {
        Some(output) => Err(RunError::NonFinite {
            output,
            task: task.label.clone(),
        }),
        None => Ok(()),
    }
}
