//! The `--input NAME=FILE` arguments: which names an op and mode take, reading the
//! files, and checking their shapes against each other.

use super::{names, npy, RunError, RunMode};
use crate::derive::{Mode, SpecOp, COTANGENT};
use crate::ir::shape::{Dim, Shape};
use crate::rungs::RungError;
use crate::tensor::{fmt_dims, Dims, Tensor};
use egg::Symbol;
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

/// `op mode`, as error messages name the task.
pub fn task(op: SpecOp, mode: RunMode) -> String {
    format!("{op} {mode}")
}

/// Checks the given names (no repeats, none unknown, none missing) and returns the
/// files in the order of [`names::inputs`].
pub fn select(op: SpecOp, mode: RunMode, given: &[InputSpec]) -> Result<Vec<InputSpec>, RunError> {
    let wanted = names::inputs(op, mode);
    let mut by_name: BTreeMap<&str, &InputSpec> = BTreeMap::new();
    for spec in given {
        if let Some(first) = by_name.insert(&spec.name, spec) {
            return Err(RunError::DuplicateInput {
                name: spec.name.clone(),
                first: first.path.clone(),
                second: spec.path.clone(),
            });
        }
        if !wanted.contains(&spec.name) {
            return Err(RunError::UnknownInput {
                name: spec.name.clone(),
                task: task(op, mode),
                expected: wanted.join(", "),
            });
        }
    }
    wanted
        .iter()
        .map(|w| {
            by_name
                .get(w.as_str())
                .map(|s| (*s).clone())
                .ok_or_else(|| RunError::MissingInput {
                    name: w.clone(),
                    task: task(op, mode),
                })
        })
        .collect()
}

/// The symbolic shape of every input name of `op` (primals, tangents, cotangent), as
/// the derivation request declares them.
fn symbolic_shapes(op: SpecOp) -> Result<BTreeMap<String, Shape>, RunError> {
    let cotangent = Symbol::from(COTANGENT);
    let mut shapes = BTreeMap::new();
    for (name, shape) in op.request(Mode::Vjp).map_err(RungError::from)?.shapes {
        if name != cotangent {
            shapes.insert(names::tangent(name.as_str()), shape.clone());
        }
        shapes.insert(name.to_string(), shape);
    }
    Ok(shapes)
}

/// Reads the selected files (each of at most `max_elements` entries) and checks their
/// shapes against each other: each input's dims must agree with the dims the inputs
/// before it fixed. Then every shape the op's derivatives use (each output has the
/// shape of an input or of the cotangent) must also hold at most `max_elements`
/// entries: zero-size inputs `1×N×0` and `1×0×N` would otherwise ask for an `N×N`
/// result.
pub fn load(
    op: SpecOp,
    files: &[InputSpec],
    max_elements: u64,
) -> Result<BTreeMap<String, Tensor<f64>>, RunError> {
    let shapes = symbolic_shapes(op)?;
    let mut bound: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut tensors = BTreeMap::new();
    for spec in files {
        let t = npy::read_tensor_within(&spec.path, max_elements)?;
        if let Some(shape) = shapes.get(&spec.name) {
            unify(spec, shape, t.dims(), &mut bound, &tensors)?;
        }
        tensors.insert(spec.name.clone(), t);
    }
    for shape in shapes.values() {
        let dims: Vec<u64> = shape
            .iter()
            .map(|d| match d {
                Dim::Size(k) => *k as u64,
                Dim::Named(s) => bound.get(s).map_or(0, |(v, _)| *v as u64),
            })
            .collect();
        let entries = dims.iter().try_fold(1u64, |a, d| a.checked_mul(*d));
        if entries.is_none_or(|n| n > max_elements) {
            return Err(RunError::ResultTooLarge {
                task: op.to_string(),
                shape: dims
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("×"),
                limit: max_elements,
            });
        }
    }
    Ok(tensors)
}

/// Binds `shape`'s letters to `dims`, or says which earlier inputs disagree.
fn unify(
    spec: &InputSpec,
    shape: &Shape,
    dims: Dims,
    bound: &mut BTreeMap<String, (usize, String)>,
    earlier: &BTreeMap<String, Tensor<f64>>,
) -> Result<(), RunError> {
    let agrees = shape.iter().zip(dims).all(|(d, v)| match d {
        Dim::Size(k) => *k == v,
        Dim::Named(s) => bound.get(s).is_none_or(|(b, _)| *b == v),
    });
    if !agrees {
        let needed: Vec<String> = shape
            .iter()
            .map(|d| match d {
                Dim::Named(s) => bound.get(s).map_or(s.clone(), |(b, _)| b.to_string()),
                Dim::Size(k) => k.to_string(),
            })
            .collect();
        let mut fixers: Vec<&String> = shape
            .iter()
            .filter_map(|d| match d {
                Dim::Named(s) => bound.get(s).map(|(_, by)| by),
                Dim::Size(_) => None,
            })
            .collect();
        fixers.sort();
        fixers.dedup();
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
    for (d, v) in shape.iter().zip(dims) {
        if let Dim::Named(s) = d {
            bound.entry(s.clone()).or_insert((v, spec.name.clone()));
        }
    }
    Ok(())
}
