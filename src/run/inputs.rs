//! The `--input NAME=FILE` arguments: which names a kernel and mode take, reading the
//! files, and checking their shapes against each other.

use super::task::{input_names, input_shapes, Task};
use super::{npy, RunError};
use crate::ir::shape::{Dim, Shape};
use crate::lower::{Plan, Role};
use crate::tensor::{fmt_dims, Dims, Tensor};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

/// One `--input NAME=FILE.npy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    /// The input's name (`A`, `dA`, `G`, ...).
    pub name: String,
    /// The `.npy` file holding it.
    pub path: PathBuf,
}

impl FromStr for InputSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((name, path)) if !name.trim().is_empty() && !path.is_empty() => Ok(InputSpec {
                name: name.trim().to_string(),
                path: PathBuf::from(path),
            }),
            _ => Err(format!("expected NAME=FILE.npy, got {s:?}")),
        }
    }
}

/// Checks the given names (no repeats, none unknown, none missing) against the plans
/// of `task`; returns the index of the plan whose inputs they are, and the files.
pub fn select(task: &Task, given: &[InputSpec]) -> Result<(usize, Vec<InputSpec>), RunError> {
    let mut by_name: BTreeMap<&str, &InputSpec> = BTreeMap::new();
    for spec in given {
        if let Some(first) = by_name.insert(&spec.name, spec) {
            return Err(RunError::DuplicateInput {
                name: spec.name.clone(),
                first: first.path.clone(),
                second: spec.path.clone(),
            });
        }
    }
    let wanted: Vec<Vec<String>> = task.plans.iter().map(input_names).collect();
    let expected = wanted
        .iter()
        .map(|w| w.join(", "))
        .collect::<Vec<_>>()
        .join("; or ");
    if let Some(unknown) = given
        .iter()
        .find(|s| !wanted.iter().any(|w| w.contains(&s.name)))
    {
        return Err(RunError::UnknownInput {
            name: unknown.name.clone(),
            task: task.label.clone(),
            expected,
        });
    }
    // The plan whose inputs are all given; else the one missing the fewest.
    let missing = |w: &Vec<String>| {
        w.iter()
            .filter(|n| !by_name.contains_key(n.as_str()))
            .count()
    };
    let best = (0..wanted.len())
        .min_by_key(|i| missing(&wanted[*i]))
        .unwrap_or(0);
    let files = wanted[best]
        .iter()
        .map(|w| {
            by_name
                .get(w.as_str())
                .map(|s| (*s).clone())
                .ok_or_else(|| RunError::MissingInput {
                    name: w.clone(),
                    task: task.label.clone(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if files.len() != given.len() {
        let extra = given
            .iter()
            .find(|s| !wanted[best].contains(&s.name))
            .map_or_else(String::new, |s| s.name.clone());
        return Err(RunError::UnknownInput {
            name: extra,
            task: task.label.clone(),
            expected: wanted[best].join(", "),
        });
    }
    Ok((best, files))
}

/// Reads the selected files (each of at most `max_elements` entries) and checks their
/// shapes against each other and the plan's declared shapes: each input's dims must
/// agree with the dims the inputs before it fixed. A rank-2 array is read as 1×m×n
/// where the declared h is 1. Then every buffer the plan computes (outputs and
/// temporaries, with the dims the inputs bound) must also hold at most `max_elements`
/// entries: zero-size inputs `1×N×0` and `1×0×N` would otherwise ask for an `N×N`
/// result.
pub fn load(
    task: &Task,
    plan: &Plan,
    files: &[InputSpec],
    max_elements: u64,
) -> Result<BTreeMap<String, Tensor<f64>>, RunError> {
    let shapes = input_shapes(plan);
    let mut bound: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut tensors = BTreeMap::new();
    for spec in files {
        let (t, rank) = npy::read_array_within(&spec.path, max_elements)?;
        let shape = shapes.get(&spec.name);
        if rank == 2 && shape.is_some_and(|s| s[0] != Dim::Size(1)) {
            return Err(RunError::Rank {
                path: spec.path.clone(),
                shape: t.dims()[1..].iter().map(|d| *d as u64).collect(),
            });
        }
        if let Some(shape) = shape {
            unify(spec, shape, t.dims(), &mut bound, &tensors)?;
        }
        tensors.insert(spec.name.clone(), t);
    }
    check_result_sizes(task, plan, &bound, max_elements)?;
    Ok(tensors)
}

/// Refuses a plan whose computed buffers, with the dims `bound` by the inputs (an
/// unbound name counts as 0), would hold more than `max_elements` entries.
fn check_result_sizes(
    task: &Task,
    plan: &Plan,
    bound: &BTreeMap<String, (usize, String)>,
    max_elements: u64,
) -> Result<(), RunError> {
    let size_of = |n: &str| Some(bound.get(n).map_or(0, |(v, _)| *v));
    let computed = plan
        .with_role(Role::Output)
        .chain(plan.with_role(Role::Temp));
    for (_, buffer) in computed {
        let dims: Vec<Option<u64>> = buffer
            .shape
            .iter()
            .map(|d| d.size_with(&size_of).map(|v| v as u64))
            .collect();
        let entries = dims
            .iter()
            .try_fold(1u64, |a, d| d.and_then(|d| a.checked_mul(d)));
        if entries.is_none_or(|n| n > max_elements) {
            return Err(RunError::ResultTooLarge {
                task: task.label.clone(),
                shape: buffer
                    .shape
                    .iter()
                    .zip(&dims)
                    .map(|(d, v)| v.map_or_else(|| d.to_string(), |v| v.to_string()))
                    .collect::<Vec<_>>()
                    .join("×"),
                limit: max_elements,
            });
        }
    }
    Ok(())
}

/// Why no sizes of the free names make `shape` fit `dims`, given the sizes bound so
/// far: the first axis that cannot fit, e.g. `10 is not a multiple of 4 (4*d)`.
fn misfit(shape: &Shape, dims: Dims, sizes: &BTreeMap<String, usize>) -> String {
    shape
        .iter()
        .zip(dims)
        .enumerate()
        .find(|(_, (d, v))| d.bind(*v, &mut sizes.clone()) == Some(false))
        .map_or_else(String::new, |(axis, (d, v))| {
            let fixed = d
                .clone()
                .factors()
                .iter()
                .filter_map(|f| f.size_with(&|n| sizes.get(n).copied()))
                .product::<usize>();
            if matches!(d, Dim::Product(_)) && fixed > 1 && v % fixed != 0 {
                format!("axis {axis}: {v} is not a multiple of {fixed} ({d})")
            } else {
                format!("axis {axis}: {v} is not {d}")
            }
        })
}

/// Binds `shape`'s letters to `dims`, or says which earlier inputs disagree.
fn unify(
    spec: &InputSpec,
    shape: &Shape,
    dims: Dims,
    bound: &mut BTreeMap<String, (usize, String)>,
    earlier: &BTreeMap<String, Tensor<f64>>,
) -> Result<(), RunError> {
    let sizes: BTreeMap<String, usize> = bound.iter().map(|(k, (v, _))| (k.clone(), *v)).collect();
    let mut trial = sizes.clone();
    // A product dim still undetermined here is checked by the executor.
    let agrees = shape
        .iter()
        .zip(dims)
        .all(|(d, v)| d.bind(v, &mut trial) != Some(false));
    if !agrees {
        let needed: Vec<String> = shape
            .iter()
            .map(|d| {
                d.size_with(&|n| sizes.get(n).copied())
                    .map_or(d.to_string(), |v| v.to_string())
            })
            .collect();
        let mut fixers: Vec<&String> = shape
            .iter()
            .flat_map(|d| d.clone().factors())
            .filter_map(|d| match d {
                Dim::Named(s) => bound.get(&s).map(|(_, by)| by),
                _ => None,
            })
            .collect();
        fixers.sort();
        fixers.dedup();
        if fixers.is_empty() {
            return Err(RunError::Declared {
                name: spec.name.clone(),
                path: spec.path.clone(),
                shape: fmt_dims(&dims),
                why: format!(
                    "its declared shape {}: {}",
                    needed.join("×"),
                    misfit(shape, dims, &sizes)
                ),
            });
        }
        let fixed_by: Vec<String> = fixers
            .iter()
            .map(|n| format!("{n} ({})", fmt_dims(&earlier[*n].dims())))
            .collect();
        return Err(RunError::Shape {
            name: spec.name.clone(),
            path: spec.path.clone(),
            shape: fmt_dims(&dims),
            fixed_by: fixed_by.join(" and "),
            needed: needed.join("×"),
        });
    }
    for (name, v) in trial {
        bound.entry(name).or_insert((v, spec.name.clone()));
    }
    Ok(())
}
