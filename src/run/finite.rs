//! The overflow guard: outputs are refused when they hold NaN or ±inf that no NaN or
//! ±inf input explains, so garbage is never written as a result.

use super::{compute, task::Task, RunError};
use crate::tensor::Tensor;
use std::collections::BTreeMap;

type Named = BTreeMap<String, Tensor<f64>>;

/// The first non-finite entry: the tensor's name, the entry's index (k, i, j) and value.
fn first_non_finite(tensors: &Named) -> Option<(String, [usize; 3], f64)> {
    tensors.iter().find_map(|(name, t)| {
        let at = t.data().iter().position(|v| !v.is_finite())?;
        let [_, m, n] = t.dims();
        let index = [at / (m * n), at / n % m, at % n];
        Some((name.clone(), index, t.data()[at]))
    })
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
        Some((output, index, value)) => Err(RunError::NonFinite {
            output,
            index,
            value,
            task: task.label.clone(),
        }),
        None => Ok(()),
    }
}
