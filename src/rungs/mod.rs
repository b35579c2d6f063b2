//! Rungs 4–5 of the verification ladder, as library functions returning counts:
//!
//! - (a) [`rung_plan_exact`]: the plan run over ℚ equals the expression evaluated over
//!   ℚ by [`crate::ir::eval`], exactly (per gradient slot for VJPs).
//! - (b) [`rung_f64_exact`]: the f64 executor equals the ℚ executor bit for bit on
//!   small dyadic inputs, where every f64 operation is exact. A softmax subterm is
//!   read from a saved input `S` (its f64 forward is not exact: see (d)).
//! - (c) [`rung_f64_bound`]: on general inputs every f64 output lies within a rigorous
//!   forward-error bound computed in ℚ by ball arithmetic ([`bounded`]), softmax
//!   included (a standalone exp, libm's, is not modeled).
//! - (d) [`rung_softmax_enclosure`]: the f64 softmax forward lies inside a rigorous
//!   rational enclosure of softmax, widened by the f64 rounding bound ([`enclosure`]).
//! - (e) [`check_f64_same`]: a generated kernel gives the f64 executor's bits on
//!   general inputs.

pub mod bounded;
pub mod enclosure;
pub mod quotient;
pub mod ratio;
pub mod reduce;

pub use bounded::rung_f64_bound;
pub use enclosure::rung_softmax_enclosure;

use crate::exec::{exec_exact, exec_f64, ExecError, Tensors};
use crate::ir::eval::{eval, Binding, Env, EvalError, Value};
use crate::ir::shape::{concrete_dims, Shape, ShapeEnv};
use crate::ir::Expr;
use crate::lower::{Instr, Plan, Role, Saved, Step, Unary};
use crate::manifest::{Built, ManifestError};
use crate::scalar::{f64_to_rational, ExpOracle, Rational};
use crate::tensor::{Tensor, TensorError};
use egg::Symbol;
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::BTreeMap;

/// The result of one rung: how many cases ran and held, the worst error/bound ratio
/// where the rung measures one, and the first failure.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RungCount {
    /// Cases run.
    pub cases: usize,
    /// Cases that held.
    pub passed: usize,
    /// The worst |error| / bound over all entries (bounded rungs only).
    pub worst: Option<f64>,
    /// What went wrong first.
    pub first_failure: Option<String>,
}

impl RungCount {
    /// Records one case.
    pub fn record(&mut self, failure: Option<String>) {
        self.cases += 1;
        match failure {
            None => self.passed += 1,
            Some(f) => {
                self.first_failure.get_or_insert(f);
            }
        }
    }

    /// Folds a measured ratio into `worst`.
    pub fn measure(&mut self, ratio: f64) {
        self.worst = Some(self.worst.map_or(ratio, |w| w.max(ratio)));
    }

    /// Adds `other`'s cases into these (worst ratio and first failure kept).
    pub fn absorb(&mut self, other: RungCount) {
        self.cases += other.cases;
        self.passed += other.passed;
        if let Some(w) = other.worst {
            self.measure(w);
        }
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
    }

    /// True when every case held and there was at least one.
    pub fn holds(&self) -> bool {
        self.cases > 0 && self.passed == self.cases
    }
}

/// How many cases, from which seed, with dims up to `max_dim` (the first half of the
/// cases non-empty, the rest may have zero sizes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RungConfig {
    /// Random cases.
    pub cases: usize,
    /// Seed of the generator (and of the exp oracle over ℚ).
    pub seed: u64,
    /// Largest size of a dim.
    pub max_dim: usize,
}

/// Why a rung could not run at all (a failing case is counted, not an error).
#[derive(Debug, thiserror::Error)]
pub enum RungError {
    /// Building the kernel failed.
    #[error(transparent)]
    Build(#[from] ManifestError),
    /// Building inputs failed.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// The rung does not apply to this kernel.
    #[error("{0}")]
    NotApplicable(String),
}

/// Random inputs for every input and parameter buffer of `plan`: one size per named
/// dim, values from `value` (a parameter is a 1×1×1 tensor).
pub fn random_inputs<T: Clone + crate::scalar::Scalar>(
    plan: &Plan,
    rng: &mut ChaCha8Rng,
    max_dim: usize,
    nonempty: bool,
    value: impl FnMut(&mut ChaCha8Rng) -> T,
) -> Result<Tensors<T>, TensorError> {
    let named: Vec<(String, Shape)> = plan
        .with_role(Role::Input)
        .chain(plan.with_role(Role::Param))
        .map(|(_, b)| (b.name.clone(), b.shape.clone()))
        .collect();
    random_named(&named, rng, max_dim, nonempty, value)
}

/// Random tensors for `named` buffers, dims shared by name.
fn random_named<T: Clone + crate::scalar::Scalar>(
    named: &[(String, Shape)],
    rng: &mut ChaCha8Rng,
    max_dim: usize,
    nonempty: bool,
    mut value: impl FnMut(&mut ChaCha8Rng) -> T,
) -> Result<Tensors<T>, TensorError> {
    let mut sizes: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (name, shape) in named {
        let dims = concrete_dims(shape, &mut sizes, |_| {
            rng.gen_range(usize::from(nonempty).min(max_dim)..=max_dim)
        });
        let len = crate::tensor::checked_size(dims)?;
        let data = (0..len).map(|_| value(rng)).collect();
        out.insert(name.clone(), Tensor::new(dims, data)?);
    }
    Ok(out)
}

/// The IR environment of plan inputs: value `A` with tangent `dA` (zero if absent),
/// and the plan's parameters.
fn env_of(
    plan: &Plan,
    inputs: &Tensors<Rational>,
    shapes: &ShapeEnv,
    oracle: &ExpOracle,
) -> Result<Env<Rational>, TensorError> {
    let mut env = BTreeMap::new();
    for name in shapes.keys() {
        let Some(value) = inputs.get(name.as_str()) else {
            continue;
        };
        let tangent = match inputs.get(&format!("d{name}")) {
            Some(t) => t.clone(),
            None => Tensor::filled(value.dims(), num_traits::Zero::zero())?,
        };
        env.insert(
            *name,
            Binding {
                value: value.clone(),
                tangent,
            },
        );
    }
    let params = plan
        .with_role(Role::Param)
        .filter_map(|(_, b)| {
            let v = inputs.get(&b.name)?.data().first()?.clone();
            Some((Symbol::from(b.name.as_str()), v))
        })
        .collect();
    Ok(Env {
        inputs: env,
        params,
        oracle: oracle.clone(),
    })
}

fn show(inputs: &Tensors<Rational>) -> String {
    inputs
        .iter()
        .map(|(k, t)| format!("{k} = {t}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Rung (a) for a built kernel: [`check_plan_exact`] on both its plans (the one
/// computing everything, and the one reading or writing the saved subterms).
pub fn rung_plan_exact(
    b: &Built,
    saved: &[Saved],
    cfg: &RungConfig,
) -> Result<RungCount, RungError> {
    let mut count = check_plan_exact(&b.term, &b.shapes, &b.full_plan, &[], cfg)?;
    let kernel = check_plan_exact(&b.term, &b.shapes, &b.plan, saved, cfg)?;
    count.absorb(kernel);
    Ok(count)
}

/// Rung (a): `plan` run over ℚ equals `e` evaluated over ℚ, output by output, on
/// random small rational inputs (exp from a hashed oracle, the same for both). Each
/// of `saved` the plan reads is given its exact value (the subterm evaluated at the
/// same point); each it writes must equal that value.
pub fn check_plan_exact(
    e: &Expr,
    shapes: &ShapeEnv,
    plan: &Plan,
    saved: &[Saved],
    cfg: &RungConfig,
) -> Result<RungCount, RungError> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let oracle = ExpOracle::hashed(cfg.seed);
    let mut count = RungCount::default();
    for case in 0..cfg.cases {
        // Values for what the plan reads and for every input of the term (a saved
        // subterm is made from inputs the plan itself does not read).
        let mut named: Vec<(String, Shape)> = plan
            .with_role(Role::Input)
            .chain(plan.with_role(Role::Param))
            .map(|(_, b)| (b.name.clone(), b.shape.clone()))
            .collect();
        for (name, shape) in shapes {
            if named.iter().all(|(n, _)| n != name.as_str()) {
                named.push((name.to_string(), shape.clone()));
            }
        }
        let drawn = random_named(&named, &mut rng, cfg.max_dim, case < cfg.cases / 2, |r| {
            crate::rules::soundness::small_rational(r)
        })?;
        let env = env_of(plan, &drawn, shapes, &oracle)?;
        let reads = |k: &String| {
            plan.with_role(Role::Input)
                .chain(plan.with_role(Role::Param))
                .any(|(_, b)| &b.name == k)
        };
        let mut inputs: Tensors<Rational> = drawn.into_iter().filter(|(k, _)| reads(k)).collect();
        let failure = match saved_values(saved, &env) {
            Err(x) => Some(format!("saved subterm failed: {x}")),
            Ok(values) => {
                for (name, v) in &values {
                    if inputs.contains_key(name) {
                        inputs.insert(name.clone(), v.clone());
                    }
                }
                match (exec_exact(plan, &inputs, &oracle), eval(e, &env)) {
                    (Ok(got), Ok(want)) => compare_exact(&got, &want)
                        .or_else(|| compare_saved(&got, &values))
                        .map(|why| format!("{why} at {}", show(&inputs))),
                    (Err(x), _) => Some(format!("plan failed: {x} at {}", show(&inputs))),
                    (_, Err(x)) => Some(format!("expression failed: {}", EvalError::to_string(&x))),
                }
            }
        };
        count.record(failure);
    }
    Ok(count)
}

/// The exact value of each saved subterm at the point `env`.
fn saved_values(
    saved: &[Saved],
    env: &Env<Rational>,
) -> Result<BTreeMap<String, Tensor<Rational>>, EvalError> {
    saved
        .iter()
        .map(|s| match eval(&s.term, env)? {
            Value::Tensor(t) => Ok((s.name.clone(), t)),
            _ => Err(EvalError::Kind {
                op: s.name.clone(),
                expected: "a saved subterm that is a tensor",
            }),
        })
        .collect()
}

/// Whether every saved subterm the plan writes equals its exact value.
fn compare_saved(
    got: &Tensors<Rational>,
    values: &BTreeMap<String, Tensor<Rational>>,
) -> Option<String> {
    values.iter().find_map(|(name, want)| match got.get(name) {
        Some(g) if g != want => Some(format!(
            "saved {name}: plan gives {g}, expression gives {want}"
        )),
        _ => None,
    })
}

/// Whether the plan's outputs equal the evaluator's value: `out` for a tensor, `gA`
/// for slot `A` of a gradient (a missing slot is zero).
fn compare_exact(got: &Tensors<Rational>, want: &Value<Rational>) -> Option<String> {
    let zero = |t: &Tensor<Rational>| t.data().iter().all(num_traits::Zero::is_zero);
    let pairs: Vec<(String, Option<&Tensor<Rational>>)> = match want {
        Value::Tensor(t) => vec![("out".into(), Some(t))],
        Value::Grad(g) => got
            .keys()
            .map(|k| {
                (
                    k.clone(),
                    k.strip_prefix('g').and_then(|s| g.get(&Symbol::from(s))),
                )
            })
            .collect(),
        Value::Scalar(s) => return Some(format!("the expression is the number {s}")),
    };
    for (name, want) in pairs {
        let ok = match (got.get(&name), want) {
            (Some(g), Some(w)) => g == w,
            (Some(g), None) => zero(g),
            (None, _) => false,
        };
        if !ok {
            let g = got.get(&name).map_or("missing".into(), |t| t.to_string());
            let w = want.map_or("zero".into(), |t| t.to_string());
            return Some(format!("{name}: plan gives {g}, expression gives {w}"));
        }
    }
    None
}

/// An f64 executor under test (the real one, or a corrupted one in tests).
pub type F64Run<'a> = dyn Fn(&Tensors<f64>) -> Result<Tensors<f64>, ExecError> + 'a;

/// Whether a row pass of `plan` has an instruction matching `pred`.
fn plan_has(plan: &Plan, pred: impl Fn(&Instr) -> bool) -> bool {
    plan.steps.iter().any(|s| match s {
        Step::RowPass { program, .. } => program.instrs.iter().any(&pred),
        _ => false,
    })
}

/// Rung (b) does not apply to a plan computing exp (a softmax or a standalone exp).
fn refuse_exp(plan: &Plan, rung: &str) -> Result<(), RungError> {
    let exp = |i: &Instr| {
        matches!(
            i,
            Instr::Softmax { .. } | Instr::Unary { op: Unary::Exp, .. }
        )
    };
    if plan_has(plan, exp) {
        return Err(RungError::NotApplicable(format!(
            "{rung}: the plan computes exp, which f64 rounds; the rigorous error bound rung covers it"
        )));
    }
    Ok(())
}

/// Rung (c) does not apply to a plan with a standalone exp: f64 takes it from the
/// platform's libm, whose error is not modeled (a softmax's exp is the runtime's,
/// within `EXP_ULPS`).
fn refuse_libm_exp(plan: &Plan, rung: &str) -> Result<(), RungError> {
    if plan_has(plan, |i| matches!(i, Instr::Unary { op: Unary::Exp, .. })) {
        return Err(RungError::NotApplicable(format!(
            "{rung}: the plan computes a standalone exp, which f64 takes from the platform's libm (its error is not modeled)"
        )));
    }
    Ok(())
}

/// Rung (b) for a built kernel: [`check_f64_exact`] on the plan it runs.
pub fn rung_f64_exact(b: &Built, cfg: &RungConfig) -> Result<RungCount, RungError> {
    check_f64_exact(&b.plan, &|i| exec_f64(&b.plan, i), cfg)
}

/// A dyadic k/2^j with |k| ≤ 8, j ≤ 3: products and short sums of these are exact
/// in f64.
fn dyadic(rng: &mut ChaCha8Rng) -> f64 {
    f64::from(rng.gen_range(-8i32..=8)) / f64::from(1u32 << rng.gen_range(0..=3))
}

/// The exact rationals of f64 tensors.
pub fn to_rational(t: &Tensors<f64>) -> Result<Tensors<Rational>, TensorError> {
    t.iter()
        .map(|(k, v)| {
            let data = v
                .data()
                .iter()
                .map(|x| f64_to_rational(*x))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((k.clone(), Tensor::new(v.dims(), data)?))
        })
        .collect()
}

/// Rung (b): `run` (an f64 execution) equals `plan` run over ℚ exactly, on dyadic
/// inputs small enough that f64 arithmetic is exact. Plans with exp are refused (f64
/// rounds exp: rung (c) bounds them).
pub fn check_f64_exact(
    plan: &Plan,
    run: &F64Run<'_>,
    cfg: &RungConfig,
) -> Result<RungCount, RungError> {
    refuse_exp(plan, "f64 = ℚ bit for bit")?;
    f64_cases(plan, run, cfg, dyadic, |f, exact_in, _| {
        let q = match exec_exact(plan, exact_in, &ExpOracle::None) {
            Ok(q) => q,
            Err(x) => return Some(format!("ℚ run failed: {x}")),
        };
        match to_rational(f) {
            Ok(f) if f == q => None,
            Ok(_) => Some(format!("f64 and ℚ runs differ at {}", show(exact_in))),
            Err(x) => Some(format!("f64 output not finite: {x}")),
        }
    })
}

/// Rung (e): `run` (a generated kernel) gives the bits of `reference` (the f64
/// executor on the same plan) on general inputs, every output entry: the two share the
/// GEMM, the exp and the lane order of row sums, and the generated softmax forward's
/// FMA division must give the executor's division bits. Complements (b), which is
/// exact only where every f64 operation is.
pub fn check_f64_same(
    plan: &Plan,
    run: &F64Run<'_>,
    reference: &F64Run<'_>,
    cfg: &RungConfig,
) -> Result<RungCount, RungError> {
    let mut count = RungCount::default();
    for inputs in f64_draws(plan, cfg, bounded::general)? {
        let failure = match (run(&inputs), reference(&inputs)) {
            (Ok(got), Ok(want)) => want.iter().find_map(|(name, w)| {
                let same = got.get(name).is_some_and(|g| {
                    g.dims() == w.dims()
                        && g.data()
                            .iter()
                            .zip(w.data())
                            .all(|(a, b)| a.to_bits() == b.to_bits())
                });
                (!same).then(|| format!("output {name} differs from the executor's bits"))
            }),
            (Err(x), _) => Some(format!("f64 run failed: {x}")),
            (_, Err(x)) => Some(format!("executor run failed: {x}")),
        };
        count.record(failure);
    }
    Ok(count)
}

/// The inputs of `cfg.cases` f64 cases of `plan`, drawn by `value` (the first half
/// non-empty), each with its exact rationals: the same for every rung and run that
/// asks with the same `cfg`.
pub(crate) type Drawn = (Tensors<f64>, Tensors<Rational>);

/// Draws the [`Drawn`] inputs of `cfg.cases` cases of `plan`.
pub(crate) fn f64_inputs(
    plan: &Plan,
    cfg: &RungConfig,
    value: fn(&mut ChaCha8Rng) -> f64,
) -> Result<Vec<Drawn>, RungError> {
    f64_draws(plan, cfg, value)?
        .into_iter()
        .map(|inputs| {
            let exact_in = to_rational(&inputs)?;
            Ok((inputs, exact_in))
        })
        .collect()
}

/// The f64 inputs of [`f64_inputs`] alone, for rungs that compare f64 runs.
fn f64_draws(
    plan: &Plan,
    cfg: &RungConfig,
    value: fn(&mut ChaCha8Rng) -> f64,
) -> Result<Vec<Tensors<f64>>, RungError> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    (0..cfg.cases)
        .map(|case| {
            let nonempty = case < cfg.cases / 2;
            Ok(random_inputs(plan, &mut rng, cfg.max_dim, nonempty, value)?)
        })
        .collect()
}

/// Runs `cfg.cases` cases of `run` on random inputs drawn by `value`, each judged by
/// `check`.
pub(crate) fn f64_cases(
    plan: &Plan,
    run: &F64Run<'_>,
    cfg: &RungConfig,
    value: fn(&mut ChaCha8Rng) -> f64,
    mut check: impl FnMut(&Tensors<f64>, &Tensors<Rational>, &mut RungCount) -> Option<String>,
) -> Result<RungCount, RungError> {
    let mut count = RungCount::default();
    for (inputs, exact_in) in f64_inputs(plan, cfg, value)? {
        let failure = match run(&inputs) {
            Ok(f) => check(&f, &exact_in, &mut count),
            Err(x) => Some(format!("f64 run failed: {x}")),
        };
        count.record(failure);
    }
    Ok(count)
}
