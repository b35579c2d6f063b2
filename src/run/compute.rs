//! The numbers: the f64 plan of a kernel applied to named inputs.
//!
//! The plan comes from the manifest ([`Task`]: the forward term, or the JVP/VJP derived
//! with the embedded rules, lowered) and runs on the f64 executor ([`exec_f64`]: GEMMs
//! with transpose flags, fused row passes, a softmax that subtracts the row maximum).
//! [`compute`]'s signature is what the rest of `run` relies on.

use super::task::Task;
use super::RunError;
use crate::exec::{exec_f64, ExecError};
use crate::tensor::Tensor;
use std::collections::BTreeMap;

/// Runs plan `plan` of `task` on `inputs` (keyed by the plan's input names, shapes
/// already checked) and returns the outputs keyed by file name.
pub fn compute(
    task: &Task,
    plan: usize,
    inputs: &BTreeMap<String, Tensor<f64>>,
) -> Result<BTreeMap<String, Tensor<f64>>, RunError> {
    let plan = task
        .plans
        .get(plan)
        .ok_or_else(|| RunError::Missing(format!("plan {plan}")))?;
    let mut results = exec_f64(plan, inputs)?;
    let mut outputs = BTreeMap::new();
    for (name, file) in &task.outputs {
        let value = match (results.remove(name), task.zero_slots.get(file)) {
            (Some(v), _) => v,
            // A slot the derivation left out is a zero gradient.
            (None, Some(input)) => {
                let dims = inputs
                    .get(input)
                    .ok_or_else(|| RunError::Missing(input.clone()))?
                    .dims();
                Tensor::filled(dims, 0.0).map_err(ExecError::from)?
            }
            (None, None) => return Err(RunError::Missing(name.clone())),
        };
        outputs.insert(file.clone(), value);
    }
    Ok(outputs)
}
