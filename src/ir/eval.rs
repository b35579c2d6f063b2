//! The meaning of every IR term: an evaluator over any [`Scalar`].
//!
//! Plain operators compute tensors. `(tan A)` reads A's tangent from the environment.
//! `(jvp e)` is the directional derivative of `e` along the tangents, computed with
//! dual numbers (exact over ℚ, exp from the oracle with exp' = exp). `(adj E G)` is the
//! gradient of `dx ↦ ⟨G, E(dx) − E(0)⟩`, found by probing E with every unit tangent,
//! and `(vjp e G)` is `(adj (jvp e) G)`. None of this uses a derivative *rule*: it is
//! the independent semantics against which the rules are checked.

use super::lang::{Expr, Op};
use crate::scalar::{Dual, ExpOracle, Scalar, ScalarError};
use crate::tensor::{Tensor, TensorError};
use egg::{Id, Symbol};
use std::collections::BTreeMap;

/// A value: a number, a tensor, or a gradient (one tensor per input slot).
#[derive(Debug, Clone, PartialEq)]
pub enum Value<S> {
    /// A number (broadcasts).
    Scalar(S),
    /// A tensor.
    Tensor(Tensor<S>),
    /// A gradient: missing slots are zero.
    Grad(BTreeMap<Symbol, Tensor<S>>),
}

/// An input's value and tangent at the point of evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding<S> {
    /// The input's value x.
    pub value: Tensor<S>,
    /// Its tangent dx (same shape).
    pub tangent: Tensor<S>,
}

/// The point of evaluation: every input's value and tangent, and the exp oracle.
#[derive(Debug, Clone)]
pub struct Env<S> {
    /// Inputs by name.
    pub inputs: BTreeMap<Symbol, Binding<S>>,
    /// Runtime parameters by name (`@c` reads `params[c]`); they have no tangent.
    pub params: BTreeMap<Symbol, S>,
    /// How `exp` is evaluated over exact scalars.
    pub oracle: ExpOracle,
}

impl<S: Scalar> Env<S> {
    /// One line per input: `A = value, dA = tangent` (for witnesses and failures).
    pub fn describe(&self) -> Vec<String> {
        self.inputs
            .iter()
            .map(|(k, b)| format!("{k} = {}, d{k} = {}", b.value, b.tangent))
            .chain(self.params.iter().map(|(k, v)| format!("@{k} = {v}")))
            .collect()
    }
}

/// Why a term could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// An input with no binding.
    #[error("input {0} has no value")]
    Unbound(String),
    /// Shapes disagree at run time.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// The wrong kind of value for an operator.
    #[error("{op}: expected {expected}")]
    Kind {
        /// The operator.
        op: String,
        /// What it needs.
        expected: &'static str,
    },
    /// A derivative operator inside a derivative (second order is out of scope).
    #[error("{0} inside jvp: second-order derivatives are not supported")]
    Nested(String),
}

impl From<ScalarError> for EvalError {
    fn from(e: ScalarError) -> Self {
        EvalError::Tensor(TensorError::Scalar(e))
    }
}

/// Evaluates `expr` at `env`.
pub fn eval<S: Scalar>(expr: &Expr, env: &Env<S>) -> Result<Value<S>, EvalError> {
    let root = Id::from(expr.as_ref().len().saturating_sub(1));
    Evaluator::new(expr, env, &Exact).eval(root)
}

/// How derivative operators are evaluated at one level of scalars.
trait Derivatives<T: Scalar> {
    /// The directional derivative of node `e` along the environment's tangents.
    fn jvp(&self, expr: &Expr, e: Id, env: &Env<T>) -> Result<Value<T>, EvalError>;
    /// Whether `adj` and `vjp` may be evaluated here.
    fn allows_adjoint(&self) -> bool;
}

/// Derivatives at the base level: jvp by dual numbers, adj by probing.
struct Exact;

/// Inside a jvp (over dual numbers): no further derivative operators.
struct Inside;

impl<T: Scalar> Derivatives<T> for Inside {
    fn jvp(&self, _: &Expr, _: Id, _: &Env<T>) -> Result<Value<T>, EvalError> {
        Err(EvalError::Nested("jvp".into()))
    }
    fn allows_adjoint(&self) -> bool {
        false
    }
}

impl<S: Scalar> Derivatives<S> for Exact {
    fn jvp(&self, expr: &Expr, e: Id, env: &Env<S>) -> Result<Value<S>, EvalError> {
        let dual_env = Env {
            inputs: env
                .inputs
                .iter()
                .map(|(k, b)| {
                    let value = zip_dual(&b.value, &b.tangent)?;
                    let tangent = b.tangent.map(|t| Dual::constant(t.clone()));
                    Ok((*k, Binding { value, tangent }))
                })
                .collect::<Result<_, EvalError>>()?,
            params: env
                .params
                .iter()
                .map(|(k, v)| (*k, Dual::constant(v.clone())))
                .collect(),
            oracle: env.oracle.clone(),
        };
        Ok(match Evaluator::new(expr, &dual_env, &Inside).eval(e)? {
            Value::Scalar(d) => Value::Scalar(d.tangent),
            Value::Tensor(t) => Value::Tensor(t.map(|d| d.tangent.clone())),
            Value::Grad(_) => {
                return Err(EvalError::Kind {
                    op: "jvp".into(),
                    expected: "a number or a tensor",
                })
            }
        })
    }
    fn allows_adjoint(&self) -> bool {
        true
    }
}

/// A function of the environment's tangents.
type OfTangents<'f, T> = dyn Fn(&Env<T>) -> Result<Value<T>, EvalError> + 'f;

/// The gradient of `dx ↦ ⟨g, f(dx) − f(0)⟩`, by probing `f` with every unit tangent.
fn adjoint_by_probing<T: Scalar>(
    f: &OfTangents<'_, T>,
    g: &Tensor<T>,
    env: &Env<T>,
) -> Result<Value<T>, EvalError> {
    let mut base_env = env.clone();
    for b in base_env.inputs.values_mut() {
        b.tangent = Tensor::filled(b.tangent.dims(), T::zero())?;
    }
    let at = |probe: &Env<T>| broadcast("adj", f(probe)?, g);
    let base = at(&base_env)?;
    let mut grads = BTreeMap::new();
    for (name, b) in &env.inputs {
        let dims = b.tangent.dims();
        let len = b.tangent.data().len();
        let mut out = Vec::with_capacity(len);
        for k in 0..len {
            let mut probe = base_env.clone();
            let mut unit = vec![T::zero(); len];
            unit[k] = T::one();
            if let Some(slot) = probe.inputs.get_mut(name) {
                slot.tangent = Tensor::new(dims, unit)?;
            }
            let diff = at(&probe)?.zip(&base, "adj", |a, b| Ok(a.clone() - b.clone()))?;
            out.push(g.inner(&diff)?);
        }
        grads.insert(*name, Tensor::new(dims, out)?);
    }
    Ok(Value::Grad(grads))
}

fn zip_dual<S: Scalar>(v: &Tensor<S>, t: &Tensor<S>) -> Result<Tensor<Dual<S>>, EvalError> {
    let data = v
        .data()
        .iter()
        .zip(t.data())
        .map(|(a, b)| Dual::new(a.clone(), b.clone()))
        .collect();
    Ok(Tensor::new(v.dims(), data)?)
}

fn tensor_of<T: Scalar>(op: &str, v: Value<T>) -> Result<Tensor<T>, EvalError> {
    match v {
        Value::Tensor(t) => Ok(t),
        _ => Err(EvalError::Kind {
            op: op.into(),
            expected: "a tensor",
        }),
    }
}

/// A value as a tensor shaped like `like` (numbers broadcast).
fn broadcast<T: Scalar>(op: &str, v: Value<T>, like: &Tensor<T>) -> Result<Tensor<T>, EvalError> {
    match v {
        Value::Scalar(s) => Ok(Tensor::filled(like.dims(), s)?),
        other => tensor_of(op, other),
    }
}

struct Evaluator<'a, T: Scalar> {
    expr: &'a Expr,
    env: &'a Env<T>,
    derivs: &'a dyn Derivatives<T>,
    memo: Vec<Option<Value<T>>>,
}

impl<'a, T: Scalar> Evaluator<'a, T> {
    fn new(expr: &'a Expr, env: &'a Env<T>, derivs: &'a dyn Derivatives<T>) -> Self {
        Evaluator {
            expr,
            env,
            derivs,
            memo: vec![None; expr.as_ref().len()],
        }
    }

    fn eval(&mut self, id: Id) -> Result<Value<T>, EvalError> {
        let i = usize::from(id);
        if let Some(v) = &self.memo[i] {
            return Ok(v.clone());
        }
        let v = self.compute(&self.expr[id])?;
        self.memo[i] = Some(v.clone());
        Ok(v)
    }

    fn name(&self, id: Id, op: &str) -> Result<Symbol, EvalError> {
        match &self.expr[id] {
            Op::Input(s) => Ok(*s),
            _ => Err(EvalError::Kind {
                op: op.into(),
                expected: "an input name",
            }),
        }
    }

    fn binding(&self, s: Symbol) -> Result<&'a Binding<T>, EvalError> {
        self.env
            .inputs
            .get(&s)
            .ok_or_else(|| EvalError::Unbound(s.to_string()))
    }

    fn entrywise(
        &mut self,
        op: &'static str,
        [a, b]: [Id; 2],
        f: fn(&T, &T) -> Result<T, ScalarError>,
    ) -> Result<Value<T>, EvalError> {
        Ok(match (self.eval(a)?, self.eval(b)?) {
            (Value::Scalar(x), Value::Scalar(y)) => Value::Scalar(f(&x, &y)?),
            (Value::Scalar(x), Value::Tensor(t)) => Value::Tensor(t.try_map(|y| f(&x, y))?),
            (Value::Tensor(t), Value::Scalar(y)) => Value::Tensor(t.try_map(|x| f(x, &y))?),
            (Value::Tensor(s), Value::Tensor(t)) => Value::Tensor(s.zip(&t, op, f)?),
            _ => {
                return Err(EvalError::Kind {
                    op: op.into(),
                    expected: "numbers or tensors",
                })
            }
        })
    }

    fn unary(
        &mut self,
        op: &'static str,
        a: Id,
        f: impl Fn(&T) -> Result<T, ScalarError>,
    ) -> Result<Value<T>, EvalError> {
        Ok(match self.eval(a)? {
            Value::Scalar(x) => Value::Scalar(f(&x)?),
            Value::Tensor(t) => Value::Tensor(t.try_map(f)?),
            Value::Grad(_) => {
                return Err(EvalError::Kind {
                    op: op.into(),
                    expected: "a number or a tensor",
                })
            }
        })
    }

    fn tensor(&mut self, op: &str, a: Id) -> Result<Tensor<T>, EvalError> {
        let v = self.eval(a)?;
        tensor_of(op, v)
    }

    fn adjoint_operand(&mut self, op: &str, g: Id) -> Result<Tensor<T>, EvalError> {
        if !self.derivs.allows_adjoint() {
            return Err(EvalError::Nested(op.into()));
        }
        self.tensor(op, g)
    }

    fn grad(&mut self, op: &str, a: Id) -> Result<BTreeMap<Symbol, Tensor<T>>, EvalError> {
        match self.eval(a)? {
            Value::Grad(g) => Ok(g),
            _ => Err(EvalError::Kind {
                op: op.into(),
                expected: "a gradient",
            }),
        }
    }

    /// A layout operator applied to its operand (the head count read from the term).
    fn layout(&mut self, node: &Op) -> Result<Value<T>, EvalError> {
        let Some((layout, k, x)) = node.layout() else {
            return Err(EvalError::Kind {
                op: node.to_string(),
                expected: "a layout operator",
            });
        };
        let k = match k.map(|k| &self.expr[k]) {
            None => 0,
            Some(Op::Num(c)) => c.heads().ok_or(EvalError::Kind {
                op: layout.to_string(),
                expected: "a head count (a whole number ≥ 1)",
            })?,
            Some(_) => {
                return Err(EvalError::Kind {
                    op: layout.to_string(),
                    expected: "a head count (a whole number ≥ 1)",
                })
            }
        };
        let x = self.tensor(layout.name(), x)?;
        Ok(Value::Tensor(layout.apply(&x, k)?))
    }

    fn compute(&mut self, node: &Op) -> Result<Value<T>, EvalError> {
        let oracle = &self.env.oracle;
        Ok(match node {
            Op::Split(_)
            | Op::Merge(_)
            | Op::Reshape(_)
            | Op::Unreshape(_)
            | Op::Flat(_)
            | Op::Unflat(_)
            | Op::Swap(_) => self.layout(node)?,
            Op::Num(c) => Value::Scalar(T::from_rational(&c.0)),
            Op::Param(p) => Value::Scalar(
                self.env
                    .params
                    .get(&p.0)
                    .cloned()
                    .ok_or_else(|| EvalError::Unbound(p.to_string()))?,
            ),
            Op::Input(s) => Value::Tensor(self.binding(*s)?.value.clone()),
            Op::Tan([a]) => Value::Tensor(self.binding(self.name(*a, "tan")?)?.tangent.clone()),
            Op::Add(c) => self.entrywise("+", *c, |x, y| Ok(x.clone() + y.clone()))?,
            Op::Sub(c) => self.entrywise("-", *c, |x, y| Ok(x.clone() - y.clone()))?,
            Op::Mul(c) => self.entrywise("*", *c, |x, y| Ok(x.clone() * y.clone()))?,
            Op::Div(c) => self.entrywise("/", *c, |x, y| x.div(y))?,
            Op::Neg([a]) => self.unary("neg", *a, |x| Ok(-x.clone()))?,
            Op::Inv([a]) => self.unary("inv", *a, |x| x.recip())?,
            Op::Exp([a]) => {
                let oracle = oracle.clone();
                self.unary("exp", *a, move |x| x.exp(&oracle))?
            }
            Op::RowSum([a]) => Value::Tensor(self.tensor("rowsum", *a)?.rowsum()),
            Op::Transpose([a]) => Value::Tensor(self.tensor("T", *a)?.transpose()),
            Op::Bmm([a, b]) => {
                let x = self.tensor("bmm", *a)?;
                Value::Tensor(x.bmm(&self.tensor("bmm", *b)?)?)
            }
            Op::Softmax([a]) => Value::Tensor(softmax_last(&self.tensor("softmax", *a)?, oracle)?),
            Op::Jvp([e]) => self.derivs.jvp(self.expr, *e, self.env)?,
            Op::Vjp([e, g]) => {
                // vjp e G = adj (jvp e) G
                let g = self.adjoint_operand("vjp", *g)?;
                let (expr, derivs) = (self.expr, self.derivs);
                let f = |env: &Env<T>| derivs.jvp(expr, *e, env);
                adjoint_by_probing(&f, &g, self.env)?
            }
            Op::Adj([e, g]) => {
                let g = self.adjoint_operand("adj", *g)?;
                let (expr, derivs) = (self.expr, self.derivs);
                let f = |env: &Env<T>| Evaluator::new(expr, env, derivs).eval(*e);
                adjoint_by_probing(&f, &g, self.env)?
            }
            Op::Grad([a, w]) => {
                let name = self.name(*a, "grad")?;
                let w = self.tensor("grad", *w)?;
                Value::Grad(BTreeMap::from([(name, w)]))
            }
            Op::GAdd([a, b]) => {
                let mut x = self.grad("g+", *a)?;
                for (k, t) in self.grad("g+", *b)? {
                    let sum = match x.remove(&k) {
                        Some(s) => s.zip(&t, "g+", |p, q| Ok(p.clone() + q.clone()))?,
                        None => t,
                    };
                    x.insert(k, sum);
                }
                Value::Grad(x)
            }
        })
    }
}

/// Softmax along the last axis, as the spec defines it: `exp xᵢ / Σⱼ exp xⱼ` per row
/// (an empty row stays empty, the n = 0 identity).
fn softmax_last<T: Scalar>(x: &Tensor<T>, oracle: &ExpOracle) -> Result<Tensor<T>, EvalError> {
    let e = x.try_map(|v| v.exp(oracle))?;
    let s = e.rowsum();
    Ok(e.zip(&s, "softmax", |a, b| a.div(b))?)
}

/// Whether two values are equal, numbers broadcasting and missing gradient slots
/// counting as zero.
pub fn values_equal<S: Scalar>(a: &Value<S>, b: &Value<S>) -> bool {
    let zero_like = |t: &Tensor<S>| t.data().iter().all(|v| v.is_zero_value());
    match (a, b) {
        (Value::Scalar(x), Value::Scalar(y)) => x == y,
        (Value::Scalar(x), Value::Tensor(t)) | (Value::Tensor(t), Value::Scalar(x)) => {
            t.data().iter().all(|v| v == x)
        }
        (Value::Tensor(s), Value::Tensor(t)) => s == t,
        (Value::Grad(g), Value::Grad(h)) => {
            let keys: std::collections::BTreeSet<&Symbol> = g.keys().chain(h.keys()).collect();
            keys.into_iter().all(|k| match (g.get(k), h.get(k)) {
                (Some(s), Some(t)) => s == t,
                (Some(t), None) | (None, Some(t)) => zero_like(t),
                (None, None) => true,
            })
        }
        _ => false,
    }
}
