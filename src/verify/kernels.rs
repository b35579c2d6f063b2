//! The lowering and execution rungs of every built kernel, and of its committed
//! generated source: plan over ℚ = expression over ℚ; f64 plan = ℚ plan bit for bit on
//! dyadic inputs; f64 inside the rigorous forward-error bound on general inputs (softmax
//! included, by ball arithmetic); the f64 softmax forward inside a rational enclosure of
//! exp; the generated kernels equal to the executor bit for bit on general inputs; the
//! generated source fresh.

use super::{Row, Skipped};
use crate::emit::{self, Folder};
use crate::exec::exec_f64;
use crate::exec::{ExecError, Tensors};
use crate::kernels::{self, runtime::Tensor3};
use crate::manifest::{Built, KernelDef};
use crate::outcome::Failure;
use crate::rungs::bounded::Balls;
use crate::rungs::enclosure::{check_softmax_enclosure, rung_softmax_enclosure, softmax_of_input};
use crate::rungs::{
    check_f64_exact, check_f64_same, rung_f64_exact, rung_plan_exact, F64Run, RungConfig,
    RungCount, RungError,
};
use crate::tensor::Tensor;
use std::path::Path;

/// One rung's outcome: a row, or the reason it does not apply.
fn push(
    rows: &mut Vec<Row>,
    skipped: &mut Vec<Skipped>,
    label: Row,
    result: Result<RungCount, RungError>,
) -> Result<(), Failure> {
    match result {
        Ok(count) => rows.push(Row { count, ..label }),
        Err(RungError::NotApplicable(why)) => skipped.push(Skipped {
            rung: label.rung,
            kernel: label.op,
            mode: label.mode,
            why,
        }),
        Err(e) => return Err(Failure::input(e)),
    }
    Ok(())
}

/// Rung (c)'s balls for one built kernel's plan, computed once and shared by the rows
/// of its executor and of its generated kernel: the balls, or why the rung does not
/// apply.
pub type SharedBalls = Result<Balls, String>;

/// The [`SharedBalls`] of `built`'s plan under `cfg` (a rung error other than "does
/// not apply" is a failure).
pub fn shared_balls(built: &Built, cfg: &RungConfig) -> Result<SharedBalls, Failure> {
    match Balls::of(&built.plan, cfg) {
        Ok(b) => Ok(Ok(b)),
        Err(RungError::NotApplicable(why)) => Ok(Err(why)),
        Err(e) => Err(Failure::input(e)),
    }
}

/// Rung (c) for the f64 run `run` against the shared balls.
fn bound_rung(balls: &SharedBalls, run: &F64Run<'_>) -> Result<RungCount, RungError> {
    match balls {
        Ok(b) => Ok(b.check(run)),
        Err(why) => Err(RungError::NotApplicable(why.clone())),
    }
}

/// The rungs of one built kernel on the plans the executors run (`balls`: rung (c)'s,
/// from [`shared_balls`]).
pub fn kernel_rows(
    def: &KernelDef,
    built: &Built,
    cfg: &RungConfig,
    balls: &SharedBalls,
    rows: &mut Vec<Row>,
    skipped: &mut Vec<Skipped>,
) -> Result<(), Failure> {
    let mode = built.mode.to_string();
    let label = |rung: &str| Row::new(rung, &def.name, &mode);
    let rungs: [(&str, Result<RungCount, RungError>); 4] = [
        (
            "plan over ℚ = expression over ℚ",
            rung_plan_exact(built, &def.save, cfg),
        ),
        (
            "f64 plan = ℚ plan, bit for bit (dyadic)",
            rung_f64_exact(built, cfg),
        ),
        (
            "f64 plan within rigorous error bound",
            bound_rung(balls, &|i| exec_f64(&built.plan, i)),
        ),
        (
            "f64 softmax inside rational exp enclosure",
            rung_softmax_enclosure(built, cfg),
        ),
    ];
    for (rung, result) in rungs {
        push(rows, skipped, label(rung), result)?;
    }
    Ok(())
}

/// A committed generated kernel as an f64 run over named tensors (the rungs' interface).
pub fn generated_run(
    entry: &kernels::Entry,
    inputs: &Tensors<f64>,
) -> Result<Tensors<f64>, ExecError> {
    let given: Vec<Tensor3> = entry
        .inputs
        .iter()
        .map(|name| {
            inputs
                .get(*name)
                .map(Tensor3::from)
                .ok_or_else(|| ExecError::Missing(name.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let refs: Vec<&Tensor3> = given.iter().collect();
    let outs = (entry.run)(&refs).map_err(|e| ExecError::Kernel(e.to_string()))?;
    entry
        .outputs
        .iter()
        .zip(outs)
        .map(|(name, t)| Ok((name.to_string(), Tensor::new(t.dims, t.into_data())?)))
        .collect()
}

/// Whether `dir` is the folder compiled into this crate as [`crate::kernels`].
pub fn is_compiled_in(dir: &Path) -> bool {
    dir == Path::new(emit::COMMITTED_DIR)
}

/// The rungs for the committed generated source of one built kernel, against the
/// plan the rules give: f64 = ℚ bit for bit on dyadic inputs (kernels without exp),
/// the f64 executor's bits on general inputs, the error bound (softmax included; `balls` from [`shared_balls`]), the exp
/// enclosure (a softmax forward).
pub fn generated_rows(
    def: &KernelDef,
    built: &Built,
    cfg: &RungConfig,
    balls: &SharedBalls,
    rows: &mut Vec<Row>,
    skipped: &mut Vec<Skipped>,
) -> Result<(), Failure> {
    let name = def.mode_name(built.mode);
    let mode = built.mode.to_string();
    let label = |rung: &str| Row::new(&format!("generated: {rung}"), &def.name, &mode);
    if !is_compiled_in(&def.out_dir) {
        skipped.push(Skipped {
            rung: "generated: f64 rungs".into(),
            kernel: def.name.clone(),
            mode,
            why: format!(
                "its source goes to {}, which this binary does not compile; the crate that compiles it runs them (docs/your-own-kernel.md)",
                def.out_dir.display()
            ),
        });
        return Ok(());
    }
    let entry = kernels::KERNELS
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| Failure::check(format!("no generated kernel {name}: run fderiv emit")))?;
    let plan = &built.plan;
    let run = |i: &Tensors<f64>| generated_run(entry, i);
    let enclosure = match softmax_of_input(&built.term) {
        Some(input) if built.mode == crate::manifest::KernelMode::Forward => {
            check_softmax_enclosure(plan, &run, &input, cfg)
        }
        _ => Err(RungError::NotApplicable(format!(
            "{name}: the exp enclosure covers a softmax forward"
        ))),
    };
    let executor = |i: &Tensors<f64>| exec_f64(plan, i);
    let checks: [(&str, Result<RungCount, RungError>); 4] = [
        (
            "f64 = ℚ plan, bit for bit (dyadic)",
            check_f64_exact(plan, &run, cfg),
        ),
        (
            "= f64 executor, bit for bit (general inputs)",
            check_f64_same(plan, &run, &executor, cfg),
        ),
        ("within rigorous error bound", bound_rung(balls, &run)),
        ("inside rational exp enclosure", enclosure),
    ];
    for (rung, result) in checks {
        push(rows, skipped, label(rung), result)?;
    }
    Ok(())
}

/// One row per generated folder: every file it should hold is there, byte for byte.
pub fn fresh_rows(folders: &[&Folder]) -> Vec<Row> {
    folders
        .iter()
        .map(|f| {
            let stale = emit::differing(&f.dir, &f.files);
            let mut row = Row::new(
                "generated source fresh (emit --check)",
                &f.dir.display().to_string(),
                "-",
            );
            for (file, _) in &f.files {
                row.record(!stale.contains(file), || {
                    format!("{file} is stale or missing")
                });
            }
            row
        })
        .collect()
}
