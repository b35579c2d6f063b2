//! The numbers: the f64 kernel of an op and mode applied to named inputs.
//!
//! The kernel is the op's forward term or its JVP/VJP derived with the embedded rules
//! ([`kernel_term`]), lowered to a plan ([`lower`]) and run by the f64 executor
//! ([`exec_f64`]: GEMMs with transpose flags, fused row passes, a softmax that
//! subtracts the row maximum). [`compute`]'s signature is what the rest of `run` relies
//! on.

use super::{names, RunError, RunMode};
use crate::derive::SpecOp;
use crate::exec::{exec_f64, Tensors};
use crate::lower::{lower, Role};
use crate::rungs::{kernel_term, Kernel};
use crate::tensor::Tensor;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Runs `op` in `mode` on `inputs` (keyed by [`names::inputs`], shapes already
/// checked) and returns the outputs keyed by [`names::outputs`].
pub fn compute(
    op: SpecOp,
    mode: RunMode,
    inputs: &BTreeMap<String, Tensor<f64>>,
) -> Result<BTreeMap<String, Tensor<f64>>, RunError> {
    let kernel = match mode.derivative() {
        None => Kernel::Forward,
        Some(m) => Kernel::Derived(m),
    };
    let (term, shapes) = kernel_term(op, kernel)?;
    let plan = lower(&term, &shapes)?;
    // The plan reads only the inputs its term mentions (a derivative may drop one);
    // copy the inputs only in that case.
    let reads = |name: &String| plan.with_role(Role::Input).any(|(_, b)| &b.name == name);
    let given: Cow<'_, Tensors<f64>> = if inputs.keys().all(reads) {
        Cow::Borrowed(inputs)
    } else {
        Cow::Owned(
            inputs
                .iter()
                .filter(|(k, _)| reads(k))
                .map(|(k, t)| (k.clone(), t.clone()))
                .collect(),
        )
    };
    let mut results = exec_f64(&plan, &given)?;
    let mut outputs = BTreeMap::new();
    match mode {
        RunMode::Forward | RunMode::Jvp => {
            let out = results
                .remove("out")
                .ok_or(RunError::Missing("out".into()))?;
            outputs.insert(names::outputs(op, mode).remove(0), out);
        }
        RunMode::Vjp => {
            for p in names::primals(op) {
                let name = names::gradient(p);
                // A slot the derivation left out is a zero gradient.
                let g = match results.remove(&name) {
                    Some(g) => g,
                    None => {
                        let dims = inputs
                            .get(p)
                            .ok_or_else(|| RunError::Missing(p.to_string()))?
                            .dims();
                        Tensor::filled(dims, 0.0).map_err(crate::exec::ExecError::from)?
                    }
                };
                outputs.insert(name, g);
            }
        }
    }
    Ok(outputs)
}
