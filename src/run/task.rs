//! What one `fderiv run KERNEL MODE` computes, built from the manifest: the plans it
//! may run, the input names each reads, and the file name of each output.
//!
//! A kernel's plan reads the saved subterms (a softmax VJP reads the forward output
//! `S`); when the caller gives the inputs the saved subterms are made from instead
//! (`X`), the plan that recomputes them runs. Outputs: the forward output under the
//! kernel's `output` name (`C`, `S`) plus the saved subterms; a JVP writes `d` + that
//! name; a VJP writes `g` + each input in `wrt` (zero where the derivative does not
//! depend on it).

use super::RunError;
use crate::derive::{Limits, COTANGENT};
use crate::ir::shape::Shape;
use crate::lower::{Plan, Role};
use crate::manifest::{KernelDef, KernelMode, Manifest};
use crate::rules::RuleSet;
use std::collections::BTreeMap;
use std::path::Path;

/// A kernel in one mode, ready to run.
#[derive(Debug)]
pub struct Task {
    /// `matmul vjp`, as messages name it.
    pub label: String,
    /// The mode.
    pub mode: KernelMode,
    /// The plans that compute it: the kernel's own first, then (if it reads saved
    /// subterms) the one recomputing them.
    pub plans: Vec<Plan>,
    /// Plan output name → file name (`out` → `C`, `gA` → `gA`).
    pub outputs: BTreeMap<String, String>,
    /// Gradient outputs the plan may lack (a zero gradient): file name → the input
    /// whose shape it has.
    pub zero_slots: BTreeMap<String, String>,
}

impl Task {
    /// Reads `kernel` from the manifest (`path`, or the embedded one) and builds it in
    /// `mode` with the embedded rules.
    pub fn load(manifest: Option<&Path>, kernel: &str, mode: KernelMode) -> Result<Task, RunError> {
        let manifest = Manifest::load(manifest).map_err(Box::new)?;
        let def = manifest.kernel(kernel).map_err(Box::new)?;
        let rules = RuleSet::embedded().map_err(|e| RunError::Rules(e.to_string()))?;
        Task::new(def, mode, &rules)
    }

    /// Builds `def` in `mode`.
    pub fn new(def: &KernelDef, mode: KernelMode, rules: &RuleSet) -> Result<Task, RunError> {
        let built = def
            .build(mode, rules, &Limits::default())
            .map_err(Box::new)?;
        let mut plans = vec![built.plan];
        if input_names(&built.full_plan) != input_names(&plans[0]) {
            plans.push(built.full_plan);
        }
        let mut outputs = BTreeMap::new();
        let mut zero_slots = BTreeMap::new();
        match mode {
            KernelMode::Forward => {
                outputs.insert("out".to_string(), def.output.clone());
                for s in def.save.iter().filter(|s| s.term != def.term) {
                    outputs.insert(s.name.clone(), s.name.clone());
                }
            }
            KernelMode::Jvp => {
                outputs.insert("out".to_string(), format!("d{}", def.output));
            }
            KernelMode::Vjp => {
                for w in &def.wrt {
                    let g = format!("g{w}");
                    outputs.insert(g.clone(), g.clone());
                    zero_slots.insert(g, w.to_string());
                }
            }
        }
        Ok(Task {
            label: format!("{} {mode}", def.name),
            mode,
            plans,
            outputs,
            zero_slots,
        })
    }

    /// The file names written, sorted.
    pub fn output_files(&self) -> Vec<String> {
        let mut v: Vec<String> = self.outputs.values().cloned().collect();
        v.sort();
        v
    }
}

/// The input names a plan reads, sorted: values, tangents `dA`, saved subterms, `G`.
pub fn input_names(plan: &Plan) -> Vec<String> {
    let mut v: Vec<String> = plan
        .with_role(Role::Input)
        .map(|(_, b)| b.name.clone())
        .collect();
    v.sort_by_key(|n| (n == COTANGENT, n.starts_with('d') && n.len() > 1, n.clone()));
    v
}

/// The symbolic shape of each input a plan reads.
pub fn input_shapes(plan: &Plan) -> BTreeMap<String, Shape> {
    plan.with_role(Role::Input)
        .map(|(_, b)| (b.name.clone(), b.shape.clone()))
        .collect()
}
