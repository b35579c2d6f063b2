//! The `--param NAME=VALUE` arguments: the runtime scalar parameters a kernel's term
//! uses (`@c`), each a finite number, given once, and none the kernel does not use.

use super::task::Task;
use super::RunError;
use crate::lower::Role;
use crate::tensor::Tensor;
use std::collections::BTreeMap;
use std::str::FromStr;

/// One `--param NAME=VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// The parameter's name (`c` for `@c`).
    pub name: String,
    /// Its value.
    pub value: f64,
}

impl FromStr for ParamSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, value) = s
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))?;
        let name = name.trim().trim_start_matches('@').to_string();
        let value: f64 = value
            .trim()
            .parse()
            .map_err(|_| format!("--param {name}: {value:?} is not a number"))?;
        if name.is_empty() {
            return Err(format!("expected NAME=VALUE, got {s:?}"));
        }
        Ok(ParamSpec { name, value })
    }
}

/// Checks `given` against the parameters plan `plan` of `task` reads, and adds each as
/// a 1×1×1 tensor to `inputs`.
pub fn bind(
    task: &Task,
    plan: usize,
    given: &[ParamSpec],
    inputs: &mut BTreeMap<String, Tensor<f64>>,
) -> Result<(), RunError> {
    let wanted: Vec<String> = task
        .plans
        .get(plan)
        .map(|p| {
            p.with_role(Role::Param)
                .map(|(_, b)| b.name.clone())
                .collect()
        })
        .unwrap_or_default();
    for (i, p) in given.iter().enumerate() {
        if given[..i].iter().any(|q| q.name == p.name) {
            return Err(RunError::BadParam {
                name: p.name.clone(),
                why: "given twice".into(),
            });
        }
        if !wanted.contains(&p.name) {
            return Err(RunError::BadParam {
                name: p.name.clone(),
                why: format!(
                    "{} takes no such parameter (it takes: {})",
                    task.label,
                    if wanted.is_empty() {
                        "none".to_string()
                    } else {
                        wanted.join(", ")
                    }
                ),
            });
        }
        if !p.value.is_finite() {
            return Err(RunError::BadParam {
                name: p.name.clone(),
                why: format!("{} is not finite", p.value),
            });
        }
        let t = Tensor::new([1, 1, 1], vec![p.value]).map_err(crate::exec::ExecError::from)?;
        inputs.insert(p.name.clone(), t);
    }
    if let Some(missing) = wanted.iter().find(|w| given.iter().all(|p| &p.name != *w)) {
        return Err(RunError::BadParam {
            name: missing.clone(),
            why: format!("{} needs it: add --param {missing}=VALUE", task.label),
        });
    }
    Ok(())
}
