//! The verification ladder behind `fderiv verify`: every stage checked against the
//! others, exactly over ℚ, on random shapes (sizes 0 and 1 included) and points.
//!
//! Rungs: the spec mirror's facts (correct_inner, jvp_eq, hasFDerivAt made exact, ...);
//! the rules are sound; the derived JVP equals the dual-number derivative of the
//! forward term and the spec mirror's jvp; the derived VJP equals the adjoint of the
//! derivative and the spec mirror's vjp, and satisfies ⟨vjp δ, dx⟩ = ⟨δ, jvp dx⟩; the
//! lowered plans run over ℚ equal the expressions; the f64 executor equals the ℚ run
//! bit for bit on dyadic inputs and stays inside a rigorous error bound elsewhere; the
//! f64 softmax forward lies inside a rational enclosure of exp.

use crate::derive::{derive_unchecked, Derivation, Limits, Mode, SpecOp, COTANGENT};
use crate::emit::{self, KernelId};
use crate::exec::{ExecError, Tensors};
use crate::ir::eval::{eval, values_equal, Binding, Env, EvalError, Value};
use crate::ir::shape::{concrete_dims, ShapeEnv};
use crate::ir::Expr;
use crate::kernels::{self, runtime::Tensor3};
use crate::outcome::{Failure, Format};
use crate::rules::soundness::{check_rules, random_tensor, CheckConfig};
use crate::rules::RuleSet;
use crate::rungs::bounded::{check_f64_bound, rung_f64_bound};
use crate::rungs::enclosure::{check_softmax_enclosure, rung_softmax_enclosure};
use crate::rungs::{
    check_f64_exact, rung_f64_exact, rung_plan_exact, Kernel, RungConfig, RungCount, RungError,
};
use crate::scalar::{ExpOracle, Rational, Scalar};
use crate::spec;
use crate::spec::batched::{matmul_node, softmax_last_node};
use crate::spec::context::Context;
use crate::spec::node::{Node, OfVec};
use crate::spec::SpecError;
use crate::tensor::Tensor;
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
    /// Fixed sizes `h,m,n,p` to check in addition to the random ones (repeatable;
    /// softmax_last uses h, m, n). Every fixed shape is run once per op and mode.
    #[arg(long = "shapes", value_name = "H,M,N,P", value_parser = parse_dims)]
    pub shapes: Vec<[usize; 4]>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Parses `h,m,n,p` sizes.
pub fn parse_dims(text: &str) -> Result<[usize; 4], String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let sizes: Vec<usize> = parts
        .iter()
        .map(|p| p.parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{text:?}: {e}"))?;
    match sizes.as_slice() {
        [h, m, n, p] if sizes.iter().all(|d| *d <= 64) => Ok([*h, *m, *n, *p]),
        [_, _, _, _] => Err(format!("{text:?}: exact checks take sizes up to 64")),
        _ => Err(format!("{text:?}: expected four sizes h,m,n,p")),
    }
}

/// How a case picks its dims.
#[derive(Debug, Clone, Copy)]
pub enum Sizes {
    /// Random sizes from 0 (or 1 when `nonempty`) to `max`.
    Random {
        /// Largest size.
        max: usize,
        /// Whether 0 is excluded.
        nonempty: bool,
    },
    /// The given h, m, n, p.
    Fixed([usize; 4]),
}

/// One row of the report: a rung checked for one op and mode.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The rung.
    pub rung: String,
    /// The op (or `rules`).
    pub op: String,
    /// `forward`, `jvp`, `vjp` or `-`.
    pub mode: String,
    /// Cases, passes, worst error/bound ratio, first failure.
    #[serde(flatten)]
    pub count: RungCount,
}

impl Row {
    fn new(rung: &str, op: &str, mode: &str) -> Row {
        Row {
            rung: rung.into(),
            op: op.into(),
            mode: mode.into(),
            count: RungCount::default(),
        }
    }

    /// Records one case.
    pub fn record(&mut self, ok: bool, why: impl FnOnce() -> String) {
        self.count.record((!ok).then(why));
    }

    /// True when every case held (and there was at least one).
    pub fn holds(&self) -> bool {
        self.count.holds()
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
            "{:<46} {:<13} {:<7} {:>6} {:>6} {:>11}  status",
            "rung", "op", "mode", "cases", "passed", "worst/bound"
        );
        for r in &self.rows {
            let status = if r.holds() { "ok" } else { "FAILED" };
            let worst = r.count.worst.map_or("-".to_string(), |w| format!("{w:.3}"));
            let _ = writeln!(
                s,
                "{:<46} {:<13} {:<7} {:>6} {:>6} {:>11}  {status}",
                r.rung, r.op, r.mode, r.count.cases, r.count.passed, worst
            );
            if let Some(f) = &r.count.first_failure {
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

/// A random point for a term's inputs: a size per named dim (`sizes`: random, or
/// fixed h, m, n, p by name), then small rational values and tangents.
pub fn random_env(
    shapes: &ShapeEnv,
    rng: &mut ChaCha8Rng,
    sizes_from: Sizes,
    oracle: &ExpOracle,
) -> Result<Env<Rational>, Failure> {
    let mut sizes: BTreeMap<String, usize> = BTreeMap::new();
    let mut inputs = BTreeMap::new();
    for (name, shape) in shapes {
        let dims = concrete_dims(shape, &mut sizes, |s| match sizes_from {
            Sizes::Random { max, nonempty } => rng.gen_range(usize::from(nonempty).min(max)..=max),
            Sizes::Fixed(d) => ["h", "m", "n", "p"]
                .iter()
                .position(|k| *k == s)
                .map_or(1, |i| d[i]),
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
    env.describe().join("; ")
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
    let mut spec_jvp = Row::new("derived JVP = spec jvp (Lean mirror)", &name, "jvp");
    let mut spec_vjp = Row::new("derived VJP = spec vjp (Lean mirror)", &name, "vjp");
    let jvp_start = jvp.start.clone();
    let vjp_start: Expr = vjp.start.clone();
    let random = (0..args.cases).map(|case| Sizes::Random {
        max: args.max_dim,
        nonempty: case < args.cases / 2,
    });
    let fixed = args.shapes.iter().map(|d| Sizes::Fixed(*d));
    for sizes in random.chain(fixed) {
        let env = random_env(&vjp.request.shapes, rng, sizes, &oracle)?;
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
        let mirror = SpecPoint::new(op, &env).map_err(Failure::input)?;
        let (want_jvp, want_vjp) = mirror.jvp_vjp(&delta).map_err(Failure::input)?;
        let got_jvp = match &derived_jvp {
            Value::Tensor(t) => t.data().to_vec(),
            _ => Vec::new(),
        };
        spec_jvp.record(got_jvp == want_jvp, || case_text(&env));
        let got_vjp = mirror.flatten_grad(&derived_vjp);
        spec_vjp.record(got_vjp == want_vjp, || case_text(&env));
    }
    Ok(vec![dual, spec_jvp, adjoint, spec_vjp, inner])
}

/// A point of an op's IR inputs, restated for the spec mirror: the context Γ lists
/// the op's inputs in order (A, B or X), x and dx concatenate their values and tangents.
struct SpecPoint {
    node: OfVec<Rational>,
    order: Vec<(egg::Symbol, usize)>,
    x: Vec<Rational>,
    dx: Vec<Rational>,
}

impl SpecPoint {
    fn new(op: SpecOp, env: &Env<Rational>) -> Result<SpecPoint, SpecError> {
        let names: &[&str] = match op {
            SpecOp::Matmul => &["A", "B"],
            SpecOp::SoftmaxLast => &["X"],
        };
        let mut shapes = Vec::new();
        let (mut x, mut dx, mut order) = (Vec::new(), Vec::new(), Vec::new());
        for n in names {
            let sym = egg::Symbol::from(*n);
            let b = env.inputs.get(&sym).ok_or(SpecError::IndexOutOfRange {
                position: shapes.len(),
                len: env.inputs.len(),
            })?;
            shapes.push(b.value.dims().to_vec());
            x.extend_from_slice(b.value.data());
            dx.extend_from_slice(b.tangent.data());
            order.push((sym, b.value.data().len()));
        }
        let ctx = Context::new(shapes.clone())?;
        let idx = |i: usize| ctx.idx(i, &shapes[i]);
        let (node, _) = match op {
            SpecOp::Matmul => matmul_node(&ctx, &idx(0)?, &idx(1)?)?,
            SpecOp::SoftmaxLast => softmax_last_node(&ctx, &idx(0)?, &env.oracle)?,
        };
        Ok(SpecPoint { node, order, x, dx })
    }

    fn jvp_vjp(
        &self,
        delta: &Tensor<Rational>,
    ) -> Result<(Vec<Rational>, Vec<Rational>), SpecError> {
        Ok((
            self.node.jvp(&self.x, &self.dx)?,
            self.node.vjp(&self.x, delta.data())?,
        ))
    }

    /// A derived gradient as a context vector (missing slots are zero).
    fn flatten_grad(&self, g: &Value<Rational>) -> Vec<Rational> {
        let mut out = Vec::new();
        for (sym, len) in &self.order {
            match g {
                Value::Grad(map) if map.contains_key(sym) => {
                    out.extend_from_slice(map[sym].data());
                }
                _ => out.extend(std::iter::repeat_n(<Rational as Scalar>::zero(), *len)),
            }
        }
        out
    }
}

fn spec_rows(args: &VerifyArgs) -> Result<Vec<Row>, Failure> {
    let report = spec::report::verify(args.seed, args.cases, &ExpOracle::hashed(args.seed))
        .map_err(Failure::input)?;
    Ok(report
        .facts
        .iter()
        .map(|f| {
            let op = if f.name.starts_with("matmul") {
                "matmul"
            } else if f.name.starts_with("softmaxLast") {
                "softmax_last"
            } else {
                "-"
            };
            let mut row = Row::new(&format!("spec: {}", f.name), op, "-");
            row.count.cases = f.passed + f.failed;
            row.count.passed = f.passed;
            if f.failed > 0 {
                let total = row.count.cases;
                row.count.first_failure = Some(format!("{} of {total} cases failed", f.failed));
            }
            row
        })
        .collect())
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

/// The lowering and execution rungs for every op and kernel: plan over ℚ = expression
/// over ℚ; f64 plan = ℚ plan bit for bit on dyadic inputs; f64 inside the rigorous
/// forward-error bound on general inputs; the f64 softmax forward inside a rational
/// enclosure of exp.
fn kernel_rows(args: &VerifyArgs) -> Result<Vec<Row>, Failure> {
    let cfg = RungConfig {
        cases: args.cases,
        seed: args.seed,
        max_dim: args.max_dim,
    };
    let mut rows = Vec::new();
    let kernels = [
        Kernel::Forward,
        Kernel::Derived(Mode::Jvp),
        Kernel::Derived(Mode::Vjp),
    ];
    for op in [SpecOp::Matmul, SpecOp::SoftmaxLast] {
        progress(&format!("lowering and running {op}"));
        for kernel in kernels {
            let mode = match kernel {
                Kernel::Forward => "forward".to_string(),
                Kernel::Derived(m) => m.to_string(),
            };
            let rungs: [(&str, RungFn); 3] = [
                ("plan over ℚ = expression over ℚ", rung_plan_exact),
                ("f64 plan = ℚ plan, bit for bit (dyadic)", rung_f64_exact),
                ("f64 plan within rigorous error bound", rung_f64_bound),
            ];
            for (name, rung) in rungs {
                match rung(op, kernel, &cfg) {
                    Ok(count) => rows.push(Row {
                        count,
                        ..Row::new(name, &op.to_string(), &mode)
                    }),
                    Err(RungError::NotApplicable(_)) => {}
                    Err(e) => return Err(Failure::input(e)),
                }
            }
        }
    }
    let count = rung_softmax_enclosure(&cfg).map_err(Failure::input)?;
    rows.push(Row {
        count,
        ..Row::new(
            "f64 softmax inside rational exp enclosure",
            "softmax_last",
            "forward",
        )
    });
    Ok(rows)
}

type RungFn = fn(SpecOp, Kernel, &RungConfig) -> Result<RungCount, RungError>;

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
        .map(|(name, t)| Ok((name.to_string(), Tensor::new(t.dims, t.data)?)))
        .collect()
}

/// The rungs for the committed generated kernels, against the plans the embedded rules
/// give (checked for soundness by the ladder's rules row): f64 = ℚ bit for bit on dyadic inputs and the error bound (kernels without exp),
/// the exp enclosure (the softmax forward).
pub fn generated_rows(cfg: &RungConfig) -> Result<Vec<Row>, Failure> {
    let rules = RuleSet::embedded().map_err(Failure::input)?;
    let mut rows = Vec::new();
    for id in KernelId::all() {
        let name = id.name();
        let entry = kernels::KERNELS
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| {
                Failure::check(format!("no generated kernel {name}: run fderiv emit"))
            })?;
        let plan = emit::lower_kernel(id, &rules).map_err(Failure::input)?.plan;
        let run = |i: &Tensors<f64>| generated_run(entry, i);
        let mode = match id.kernel {
            Kernel::Forward => "forward".to_string(),
            Kernel::Derived(m) => m.to_string(),
        };
        let label = |rung: &str| Row::new(&format!("generated: {rung}"), &id.op.to_string(), &mode);
        let checks: [(&str, Result<RungCount, RungError>); 2] = [
            (
                "f64 = ℚ plan, bit for bit (dyadic)",
                check_f64_exact(&plan, &run, cfg),
            ),
            (
                "within rigorous error bound",
                check_f64_bound(&plan, &run, cfg),
            ),
        ];
        let mut applicable = 0;
        for (rung, result) in checks {
            match result {
                Ok(count) => {
                    applicable += 1;
                    rows.push(Row {
                        count,
                        ..label(rung)
                    });
                }
                Err(RungError::NotApplicable(_)) => {}
                Err(e) => return Err(Failure::input(e)),
            }
        }
        if applicable == 0 {
            let count = check_softmax_enclosure(&plan, &run, cfg).map_err(Failure::input)?;
            rows.push(Row {
                count,
                ..label("inside rational exp enclosure")
            });
        }
    }
    Ok(rows)
}

/// Runs the ladder and returns the report.
pub fn ladder(args: &VerifyArgs) -> Result<Report, Failure> {
    let rules = RuleSet::embedded().map_err(Failure::input)?;
    progress("spec mirror facts");
    let mut rows = spec_rows(args)?;
    progress("rule soundness");
    rows.push(rules_row(&rules, args));
    if !rows.iter().all(Row::holds) {
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
    rows.extend(kernel_rows(args)?);
    progress("generated kernels");
    rows.extend(generated_rows(&RungConfig {
        cases: args.cases,
        seed: args.seed,
        max_dim: args.max_dim,
    })?);
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
    if args.max_dim > 64 {
        return Err(Failure::input(
            "--max-dim: exact checks take sizes up to 64",
        ));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn corrupt(text: &str) -> Result<Expr, Failure> {
        crate::ir::parse_term(text).map_err(Failure::input)
    }

    fn args() -> VerifyArgs {
        VerifyArgs {
            cases: 12,
            seed: 7,
            max_dim: 3,
            shapes: vec![[2, 3, 1, 4], [1, 0, 2, 2]],
            format: Format::Text,
        }
    }

    #[test]
    fn the_ladder_holds_for_the_embedded_rules() {
        let report = ladder(&args()).unwrap();
        assert!(report.all_hold(), "{}", report.to_text());
        // 19 spec facts, the rules, 5 derived rungs for each of the two ops, 3 kernel
        // rungs per op and kernel but the softmax forward's 1, the enclosure, then the
        // generated kernels: 2 rungs each but the softmax forward's 1.
        assert_eq!(
            report.rows.len(),
            19 + 1 + 10 + 16 + 1 + 11,
            "{}",
            report.to_text()
        );
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
        match rows {
            Ok(rows) => assert!(!rows[2].holds() && !rows[3].holds() && !rows[4].holds()),
            Err(e) => assert!(e.message.contains("bmm"), "{}", e.message),
        }
        // Drop the row-sum term of the softmax JVP.
        let (mut jvp, vjp) = (
            d(SpecOp::SoftmaxLast, Mode::Jvp),
            d(SpecOp::SoftmaxLast, Mode::Vjp),
        );
        jvp.result = corrupt("(* (softmax X) (tan X))").unwrap();
        let rows = derived_rungs(SpecOp::SoftmaxLast, &jvp, &vjp, &args(), &mut rng).unwrap();
        assert!(!rows[0].holds(), "dual rung must reject");
        assert!(!rows[1].holds(), "spec jvp rung must reject");
        assert!(!rows[4].holds(), "adjoint identity must reject");
        assert!(
            rows[2].holds() && rows[3].holds(),
            "the VJP itself was not corrupted"
        );
    }
}
