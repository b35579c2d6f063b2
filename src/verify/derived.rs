//! The IR-level rungs of a kernel: derived JVP = dual-number derivative; derived VJP =
//! adjoint of the derivative (by probing); ⟨vjp δ, dx⟩ = ⟨δ, jvp dx⟩ with both derived;
//! and, where the spec mirror has the kernel's op, derived = the mirror's jvp and vjp.
//! All over ℚ, exactly, on random points (sizes 0 and 1 included).

use super::{Row, VerifyArgs};
use crate::derive::{Derivation, COTANGENT};
use crate::ir::eval::{eval, values_equal, Binding, Env, EvalError, Value};
use crate::ir::shape::{concrete_dims, ShapeEnv};
use crate::ir::Expr;
use crate::manifest::{Built, HeadLayout, KernelMode, SpecOp};
use crate::outcome::Failure;
use crate::rules::soundness::random_tensor;
use crate::scalar::{ExpOracle, Rational, Scalar};
use crate::spec::batched::{matmul_node, softmax_last_node};
use crate::spec::context::Context;
use crate::spec::mha::{mha_backprop, mha_jvp, Layout, MhaDims, MhaInputs};
use crate::spec::node::{Node, OfVec};
use crate::spec::SpecError;
use crate::tensor::Tensor;
use egg::Symbol;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::BTreeMap;

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

/// A random point for a term's inputs: a size per named dim (`sizes`: random, or
/// fixed h, m, n, p by name), then small rational values and tangents.
pub fn random_env(
    shapes: &ShapeEnv,
    params: &[Symbol],
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
    let params = params
        .iter()
        .map(|p| (*p, crate::rules::soundness::small_rational(rng)))
        .collect();
    Ok(Env {
        inputs,
        params,
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

/// The derivations of one kernel, as the derived rungs check them.
pub struct Derived<'a> {
    /// The kernel's name (for the report).
    pub name: &'a str,
    /// Its derived JVP, if built.
    pub jvp: Option<&'a Derivation>,
    /// Its derived VJP, if built.
    pub vjp: Option<&'a Derivation>,
    /// Its counterpart in the spec mirror.
    pub spec: Option<SpecOp>,
}

impl<'a> Derived<'a> {
    /// The derivations among `built` (the modes of kernel `name`).
    pub fn of(name: &'a str, built: &'a [Built], spec: Option<SpecOp>) -> Derived<'a> {
        let of = |mode: KernelMode| {
            built
                .iter()
                .find(|b| b.mode == mode)
                .and_then(|b| b.derivation.as_ref())
        };
        Derived {
            name,
            jvp: of(KernelMode::Jvp),
            vjp: of(KernelMode::Vjp),
            spec,
        }
    }
}

/// The semantic VJP restricted to the slots `wrt` (the derived VJP reports only
/// those).
fn only_slots(v: Value<Rational>, wrt: &[Symbol]) -> Value<Rational> {
    match v {
        Value::Grad(g) => Value::Grad(g.into_iter().filter(|(k, _)| wrt.contains(k)).collect()),
        other => other,
    }
}

/// The IR-level rungs for one kernel: derived JVP = dual-number derivative; derived
/// VJP = adjoint by probing; ⟨vjp δ, dx⟩ = ⟨δ, jvp dx⟩ with both derived; derived =
/// spec mirror where there is one. Inputs outside `wrt` get zero tangents.
pub fn derived_rungs(
    k: &Derived<'_>,
    args: &VerifyArgs,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<Row>, Failure> {
    let name = k.name;
    let oracle = ExpOracle::hashed(args.seed);
    let mut dual = Row::new("derived JVP = dual-number derivative", name, "jvp");
    let mut adjoint = Row::new("derived VJP = adjoint of the derivative", name, "vjp");
    let mut inner = Row::new("⟨vjp δ, dx⟩ = ⟨δ, jvp dx⟩ (derived)", name, "vjp");
    let mut spec_jvp = Row::new("derived JVP = spec jvp (Lean mirror)", name, "jvp");
    let mut spec_vjp = Row::new("derived VJP = spec vjp (Lean mirror)", name, "vjp");
    let Some(any) = k.jvp.or(k.vjp) else {
        return Ok(Vec::new());
    };
    let wrt = any.request.wrt.clone();
    let mut shapes = any.request.shapes.clone();
    if let Some(v) = k.vjp {
        shapes.extend(v.request.shapes.clone());
    }
    let random = (0..args.cases).map(|case| Sizes::Random {
        max: args.max_dim,
        nonempty: case < args.cases / 2,
    });
    let fixed = args.shapes.iter().map(|d| Sizes::Fixed(*d));
    // The points are drawn in order from `rng`; the cases then run in parallel and
    // are recorded in order (the first failure, or error, is the first case's).
    let params = crate::ir::params(&any.request.forward);
    let envs = random
        .chain(fixed)
        .map(|sizes| {
            let mut env = random_env(&shapes, &params, rng, sizes, &oracle)?;
            for (input, b) in env.inputs.iter_mut() {
                if !wrt.contains(input) {
                    b.tangent = Tensor::filled(b.value.dims(), <Rational as Scalar>::zero())
                        .map_err(Failure::input)?;
                }
            }
            Ok(env)
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    let outcomes: Vec<Result<Outcome, Failure>> = envs
        .par_iter()
        .map(|env| case_outcome(k, &wrt, env))
        .collect();
    for (env, outcome) in envs.iter().zip(outcomes) {
        let o = outcome?;
        let why = || case_text(env);
        if let Some(ok) = o.dual {
            dual.record(ok, why);
        }
        if let Some(ok) = o.adjoint {
            adjoint.record(ok, why);
        }
        if let Some((lhs, rhs)) = &o.inner {
            inner.record(lhs == rhs, || format!("{lhs} ≠ {rhs} at {}", why()));
        }
        if let Some((jvp_ok, vjp_ok)) = o.spec {
            spec_jvp.record(jvp_ok, why);
            spec_vjp.record(vjp_ok, why);
        }
    }
    Ok([dual, spec_jvp, adjoint, spec_vjp, inner]
        .into_iter()
        .filter(|r| r.count.cases > 0)
        .collect())
}

/// What one case of [`derived_rungs`] found, rung by rung (`None`: not run).
struct Outcome {
    dual: Option<bool>,
    adjoint: Option<bool>,
    /// ⟨vjp δ, dx⟩ and ⟨δ, jvp dx⟩.
    inner: Option<(Rational, Rational)>,
    /// derived = mirror, for the JVP and the VJP.
    spec: Option<(bool, bool)>,
}

/// Runs one case of [`derived_rungs`] at the point `env`.
fn case_outcome(k: &Derived<'_>, wrt: &[Symbol], env: &Env<Rational>) -> Result<Outcome, Failure> {
    let run = |e: &Expr| eval(e, env).map_err(Failure::input);
    let mut o = Outcome {
        dual: None,
        adjoint: None,
        inner: None,
        spec: None,
    };
    let derived_jvp = match k.jvp {
        Some(j) => {
            let (got, want) = (run(&j.result)?, run(&j.start)?);
            o.dual = Some(values_equal(&got, &want));
            Some(got)
        }
        None => None,
    };
    let derived_vjp = match k.vjp {
        Some(v) => {
            let (got, want) = (run(&v.result)?, only_slots(run(&v.start)?, wrt));
            o.adjoint = Some(values_equal(&got, &want));
            Some(got)
        }
        None => None,
    };
    let delta = env
        .inputs
        .get(&Symbol::from(COTANGENT))
        .map(|b| b.value.clone());
    if let (Some(j), Some(v), Some(delta)) = (&derived_jvp, &derived_vjp, &delta) {
        let lhs = sum_inner(v, env).map_err(Failure::input)?;
        let rhs = match j {
            Value::Tensor(t) => delta.inner(t).map_err(Failure::input)?,
            _ => return Err(Failure::input("the derived JVP is not a tensor")),
        };
        o.inner = Some((lhs, rhs));
        if let Some(op) = k.spec {
            let mirror = SpecPoint::new(op, env)?;
            let (want_jvp, want_vjp) = mirror.jvp_vjp(delta).map_err(Failure::input)?;
            let got_jvp = match j {
                Value::Tensor(t) => t.data().to_vec(),
                _ => Vec::new(),
            };
            o.spec = Some((got_jvp == want_jvp, mirror.flatten_grad(v) == want_vjp));
        }
    }
    Ok(o)
}

/// A point of an op's IR inputs, restated for the spec mirror: the context Γ lists
/// the op's inputs in order (A, B; X; or x, Wq, Wk, Wv, Wo), x and dx concatenate
/// their values and tangents.
struct SpecPoint {
    mirror: Mirror,
    order: Vec<(egg::Symbol, usize)>,
    x: Vec<Rational>,
    dx: Vec<Rational>,
}

/// The mirror's counterpart at a point: one node, or the whole attention graph.
enum Mirror {
    Node(OfVec<Rational>),
    Mha {
        layout: Layout,
        dims: MhaDims,
        c: Rational,
        oracle: ExpOracle,
    },
}

impl SpecPoint {
    fn new(op: SpecOp, env: &Env<Rational>) -> Result<SpecPoint, Failure> {
        let (_, inputs) = op.term();
        let mut shapes = Vec::new();
        let (mut x, mut dx, mut order) = (Vec::new(), Vec::new(), Vec::new());
        for (n, _) in &inputs {
            let sym = Symbol::from(*n);
            let b = env.inputs.get(&sym).ok_or_else(|| {
                Failure::input(format!(
                    "the spec term's input {n} has no value at this point"
                ))
            })?;
            shapes.push(b.value.dims().to_vec());
            x.extend_from_slice(b.value.data());
            dx.extend_from_slice(b.tangent.data());
            order.push((sym, b.value.data().len()));
        }
        let ctx = Context::new(shapes.clone()).map_err(Failure::input)?;
        let idx = |i: usize| ctx.idx(i, &shapes[i]).map_err(Failure::input);
        let mirror = match op {
            SpecOp::Matmul => {
                let node = matmul_node(&ctx, &idx(0)?, &idx(1)?).map_err(Failure::input)?;
                Mirror::Node(node.0)
            }
            SpecOp::SoftmaxLast => {
                let node =
                    softmax_last_node(&ctx, &idx(0)?, &env.oracle).map_err(Failure::input)?;
                Mirror::Node(node.0)
            }
            SpecOp::Mha { layout, heads } => {
                // x : 1×n×dModel and Wq : 1×dModel×(h·d), as `SpecOp::term` declares.
                let c = env.params.get(&Symbol::from("c")).cloned().ok_or_else(|| {
                    Failure::input("the attention spec's scale @c has no value at this point")
                })?;
                Mirror::Mha {
                    layout: match layout {
                        HeadLayout::Lean => Layout::Lean,
                        HeadLayout::PyTorch => Layout::PyTorch,
                    },
                    dims: MhaDims {
                        n: shapes[0][1],
                        d_model: shapes[0][2],
                        heads,
                        head_dim: shapes[1][2] / heads,
                    },
                    c,
                    oracle: env.oracle.clone(),
                }
            }
        };
        Ok(SpecPoint {
            mirror,
            order,
            x,
            dx,
        })
    }

    /// The mirror's jvp at (x, dx) and its vjp (the graph's `backpropVec`) of `delta`.
    fn jvp_vjp(
        &self,
        delta: &Tensor<Rational>,
    ) -> Result<(Vec<Rational>, Vec<Rational>), SpecError> {
        match &self.mirror {
            Mirror::Node(node) => Ok((
                node.jvp(&self.x, &self.dx)?,
                node.vjp(&self.x, delta.data())?,
            )),
            Mirror::Mha {
                layout,
                dims,
                c,
                oracle,
            } => {
                let inputs = MhaInputs::from_ctx_vec(dims, &self.x)?;
                let tangents = MhaInputs::from_ctx_vec(dims, &self.dx)?;
                let jvp = mha_jvp(*layout, dims, &inputs, &tangents, c, oracle)?;
                let back = mha_backprop(*layout, dims, &inputs, delta.data(), c, oracle)?;
                Ok((jvp, back.ctx_vec(dims)?))
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::shape::parse_shape;
    use rand::SeedableRng;

    #[test]
    fn an_attention_point_without_its_scale_is_named_not_indexed() {
        let op = SpecOp::Mha {
            layout: HeadLayout::PyTorch,
            heads: 2,
        };
        let (_, inputs) = op.term();
        let shapes: ShapeEnv = inputs
            .iter()
            .map(|(n, s)| (Symbol::from(*n), parse_shape(s).unwrap()))
            .collect();
        let oracle = ExpOracle::hashed(1);
        let sizes = Sizes::Random {
            max: 2,
            nonempty: true,
        };
        let point = |params: &[Symbol]| {
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let env = random_env(&shapes, params, &mut rng, sizes, &oracle).unwrap();
            SpecPoint::new(op, &env).map(|_| ())
        };
        assert!(point(&[Symbol::from("c")]).is_ok());
        let err = point(&[]).unwrap_err().message;
        assert!(err.contains("scale @c has no value"), "{err}");
    }
}
