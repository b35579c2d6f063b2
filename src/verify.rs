//! The verification ladder behind `fderiv verify`: every stage checked against the
//! others, exactly over ℚ, on random shapes (sizes 0 and 1 included) and points.
//!
//! Rungs: the rules are sound; the derived JVP equals the dual-number derivative of
//! the forward term (hasFDerivAt made exact); the derived VJP equals the adjoint of
//! the derivative and satisfies ⟨vjp δ, dx⟩ = ⟨δ, jvp dx⟩ (correct_inner).

use crate::cli::{Failure, Format};
use crate::derive::{derive_unchecked, Derivation, Limits, Mode, SpecOp, COTANGENT};
use crate::ir::eval::{eval, values_equal, Binding, Env, EvalError, Value};
use crate::ir::shape::{Dim, ShapeEnv};
use crate::ir::{parse_term, Expr};
use crate::rules::soundness::{check_rules, random_tensor, CheckConfig};
use crate::rules::RuleSet;
use crate::scalar::{ExpOracle, Rational, Scalar};
use clap::Args;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Arguments of `fderiv verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Random cases per rung, op and mode.
    #[arg(long, default_value_t = 64)]
    pub cases: usize,
    /// Seed of the case generator.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Largest size drawn for each dim (sizes start at 0).
    #[arg(long, default_value_t = 3)]
    pub max_dim: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// One row of the report: a rung checked for one op and mode.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The rung.
    pub rung: String,
    /// The op (or `rules`).
    pub op: String,
    /// `jvp`, `vjp` or `-`.
    pub mode: String,
    /// Cases run.
    pub cases: usize,
    /// Cases that held.
    pub passed: usize,
    /// What went wrong first, if anything.
    pub first_failure: Option<String>,
}

impl Row {
    fn new(rung: &str, op: &str, mode: &str) -> Row {
        Row {
            rung: rung.into(),
            op: op.into(),
            mode: mode.into(),
            cases: 0,
            passed: 0,
            first_failure: None,
        }
    }

    /// Records one case.
    pub fn record(&mut self, ok: bool, why: impl FnOnce() -> String) {
        self.cases += 1;
        if ok {
            self.passed += 1;
        } else if self.first_failure.is_none() {
            self.first_failure = Some(why());
        }
    }

    /// True when every case held (and there was at least one).
    pub fn holds(&self) -> bool {
        self.cases > 0 && self.passed == self.cases
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The seed used.
    pub seed: u64,
    /// The rows.
    pub rows: Vec<Row>,
}

impl Report {
    /// True when every row holds.
    pub fn all_hold(&self) -> bool {
        self.rows.iter().all(Row::holds)
    }

    /// The report as a text table.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<46} {:<13} {:<5} {:>6} {:>6}  status",
            "rung", "op", "mode", "cases", "passed"
        );
        for r in &self.rows {
            let status = if r.holds() { "ok" } else { "FAILED" };
            let _ = writeln!(
                s,
                "{:<46} {:<13} {:<5} {:>6} {:>6}  {status}",
                r.rung, r.op, r.mode, r.cases, r.passed
            );
            if let Some(f) = &r.first_failure {
                let _ = writeln!(s, "    first failure: {f}");
            }
        }
        let verdict = if self.all_hold() {
            "every check holds"
        } else {
            "SOME CHECKS FAILED"
        };
        let _ = writeln!(s, "seed {}: {verdict}", self.seed);
        s
    }
}

/// A random point for a term's inputs: a size per named dim (0 to `max`, or 1 to
/// `max` when `nonempty`), then small rational values and tangents.
pub fn random_env(
    shapes: &ShapeEnv,
    rng: &mut ChaCha8Rng,
    max: usize,
    nonempty: bool,
    oracle: &ExpOracle,
) -> Result<Env<Rational>, Failure> {
    let mut sizes: BTreeMap<String, usize> = BTreeMap::new();
    let mut inputs = BTreeMap::new();
    for (name, shape) in shapes {
        let dims = shape.clone().map(|d| match d {
            Dim::Size(n) => n,
            Dim::Named(s) => *sizes
                .entry(s)
                .or_insert_with(|| rng.gen_range(usize::from(nonempty)..=max)),
        });
        let value = random_tensor(rng, dims).map_err(Failure::input)?;
        let tangent = random_tensor(rng, dims).map_err(Failure::input)?;
        inputs.insert(*name, Binding { value, tangent });
    }
    Ok(Env {
        inputs,
        oracle: oracle.clone(),
    })
}

fn sum_inner(g: &Value<Rational>, env: &Env<Rational>) -> Result<Rational, EvalError> {
    let mut total = <Rational as Scalar>::zero();
    if let Value::Grad(map) = g {
        for (name, t) in map {
            if let Some(b) = env.inputs.get(name) {
                total += t.inner(&b.tangent)?;
            }
        }
    }
    Ok(total)
}

fn case_text(env: &Env<Rational>) -> String {
    env.inputs
        .iter()
        .map(|(k, b)| format!("{k} = {}, d{k} = {}", b.value, b.tangent))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The IR-level rungs for one op: derived JVP = dual-number derivative; derived VJP =
/// adjoint by probing; ⟨vjp δ, dx⟩ = ⟨δ, jvp dx⟩ with both derived.
pub fn derived_rungs(
    op: SpecOp,
    jvp: &Derivation,
    vjp: &Derivation,
    args: &VerifyArgs,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<Row>, Failure> {
    let name = op.to_string();
    let oracle = ExpOracle::hashed(args.seed);
    let mut dual = Row::new("derived JVP = dual-number derivative", &name, "jvp");
    let mut adjoint = Row::new("derived VJP = adjoint of the derivative", &name, "vjp");
    let mut inner = Row::new("⟨vjp δ, dx⟩ = ⟨δ, jvp dx⟩ (derived)", &name, "vjp");
    let jvp_start = jvp.start.clone();
    let vjp_start: Expr = vjp.start.clone();
    for case in 0..args.cases {
        let env = random_env(
            &vjp.request.shapes,
            rng,
            args.max_dim,
            case < args.cases / 2,
            &oracle,
        )?;
        let run = |e: &Expr| eval(e, &env).map_err(Failure::input);
        let (derived_jvp, semantic_jvp) = (run(&jvp.result)?, run(&jvp_start)?);
        dual.record(values_equal(&derived_jvp, &semantic_jvp), || {
            case_text(&env)
        });
        let (derived_vjp, semantic_vjp) = (run(&vjp.result)?, run(&vjp_start)?);
        adjoint.record(values_equal(&derived_vjp, &semantic_vjp), || {
            case_text(&env)
        });
        let delta = env
            .inputs
            .get(&egg::Symbol::from(COTANGENT))
            .map(|b| b.value.clone())
            .ok_or_else(|| Failure::input("the VJP request has no cotangent"))?;
        let lhs = sum_inner(&derived_vjp, &env).map_err(Failure::input)?;
        let rhs = match &derived_jvp {
            Value::Tensor(t) => delta.inner(t).map_err(Failure::input)?,
            _ => return Err(Failure::input("the derived JVP is not a tensor")),
        };
        inner.record(lhs == rhs, || {
            format!("{lhs} ≠ {rhs} at {}", case_text(&env))
        });
    }
    Ok(vec![dual, adjoint, inner])
}

fn rules_row(rules: &RuleSet, args: &VerifyArgs) -> Row {
    let mut row = Row::new("every rule sound (exact, both sides)", "rules", "-");
    let config = CheckConfig {
        seed: args.seed,
        ..CheckConfig::default()
    };
    for r in check_rules(rules, &config) {
        row.record(r.passed(), || r.to_string());
    }
    row
}

/// Runs the ladder and returns the report.
pub fn ladder(args: &VerifyArgs) -> Result<Report, Failure> {
    let rules = RuleSet::embedded().map_err(Failure::input)?;
    let mut rows = vec![rules_row(&rules, args)];
    if !rows[0].holds() {
        return Ok(Report {
            seed: args.seed,
            rows,
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    for op in [SpecOp::Matmul, SpecOp::SoftmaxLast] {
        progress(&format!("deriving and checking {op}"));
        let derive = |mode| {
            let req = op.request(mode).map_err(Failure::input)?;
            derive_unchecked(&req, &rules, &Limits::default()).map_err(Failure::input)
        };
        let (jvp, vjp) = (derive(Mode::Jvp)?, derive(Mode::Vjp)?);
        rows.extend(derived_rungs(op, &jvp, &vjp, args, &mut rng)?);
    }
    Ok(Report {
        seed: args.seed,
        rows,
    })
}

fn progress(msg: &str) {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        eprintln!("… {msg}");
    }
}

/// `fderiv verify`: runs the ladder, prints the report, fails (exit 1) unless every
/// check holds.
pub fn run(args: &VerifyArgs) -> Result<(), Failure> {
    if args.cases == 0 {
        return Err(Failure::input("--cases must be at least 1"));
    }
    let report = ladder(args)?;
    match args.format {
        Format::Text => print!("{}", report.to_text()),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(Failure::input)?
        ),
    }
    if report.all_hold() {
        Ok(())
    } else {
        Err(Failure::check("verification failed"))
    }
}

/// Parses a term, for tests that corrupt derived results.
pub fn corrupt(text: &str) -> Result<Expr, Failure> {
    parse_term(text).map_err(Failure::input)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> VerifyArgs {
        VerifyArgs {
            cases: 12,
            seed: 7,
            max_dim: 3,
            format: Format::Text,
        }
    }

    #[test]
    fn the_ladder_holds_for_the_embedded_rules() {
        let report = ladder(&args()).unwrap();
        assert!(report.all_hold(), "{}", report.to_text());
        assert_eq!(report.rows.len(), 7);
    }

    #[test]
    fn a_corrupted_derivation_is_rejected_by_every_rung_that_sees_it() {
        let rules = RuleSet::embedded().unwrap();
        let d = |op: SpecOp, mode| {
            derive_unchecked(&op.request(mode).unwrap(), &rules, &Limits::default()).unwrap()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // Flip a transpose in the matmul VJP: gB = A·G instead of Aᵀ·G.
        let (jvp, mut vjp) = (d(SpecOp::Matmul, Mode::Jvp), d(SpecOp::Matmul, Mode::Vjp));
        vjp.result = corrupt("(g+ (grad A (bmm G (T B))) (grad B (bmm A G)))").unwrap();
        let rows = derived_rungs(SpecOp::Matmul, &jvp, &vjp, &args(), &mut rng);
        // Non-square A makes the flipped term ill-shaped: an error, or a failed check.
        if let Ok(rows) = rows {
            assert!(!rows[1].holds() && !rows[2].holds());
        }
        // Drop the row-sum term of the softmax JVP.
        let (mut jvp, vjp) = (
            d(SpecOp::SoftmaxLast, Mode::Jvp),
            d(SpecOp::SoftmaxLast, Mode::Vjp),
        );
        jvp.result = corrupt("(* (softmax X) (tan X))").unwrap();
        let rows = derived_rungs(SpecOp::SoftmaxLast, &jvp, &vjp, &args(), &mut rng).unwrap();
        assert!(!rows[0].holds(), "dual rung must reject");
        assert!(!rows[2].holds(), "adjoint identity must reject");
        assert!(rows[1].holds(), "the VJP itself was not corrupted");
    }
}
