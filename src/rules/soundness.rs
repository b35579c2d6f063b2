//! The soundness check every rule passes before use: both sides evaluated exactly
//! (BigRational, dual numbers, the exp oracle) on random shapes and points.
//!
//! Each pattern variable is instantiated by what its side conditions allow, so the
//! check exercises the rule where it may fire: `tangent_free ?x` and `is_input ?x` get
//! a plain input `V`, `row_const ?x` a row sum `(rowsum V)`, `is_const ?x` a number
//! (in every other case a runtime parameter `@V` bound to that number),
//! variables under `tan`/`grad` an input name, gradient variables `(grad V W)`, and
//! every other variable the affine term `(+ V (tan V))`, which depends on both the
//! point and the tangent. A rule whose sides differ is refused with the witness.

use super::file::{CondKind, RuleDef};
use super::RuleSet;
use crate::ir::eval::{eval, values_equal, Binding, Env, EvalError, Value};
use crate::ir::shape::{Inference, Ty};
use crate::ir::{Expr, Op};
use crate::scalar::{ExpOracle, Rational, Scalar, ScalarError};
use crate::tensor::{Tensor, TensorError};
use egg::{ENodeOrVar, Id, Language, RecExpr, Symbol, Var};
use num_bigint::BigInt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::fmt;

/// How hard to check.
#[derive(Debug, Clone, Copy)]
pub struct CheckConfig {
    /// Random cases per rule.
    pub cases: usize,
    /// Seed of the case generator.
    pub seed: u64,
    /// Largest size drawn for each dim (sizes run from 0).
    pub max_dim: usize,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            cases: 24,
            seed: 0x5eed,
            max_dim: 3,
        }
    }
}

/// A counterexample: the instantiated sides and the point where they differ.
#[derive(Debug, Clone)]
pub struct Witness {
    /// The lhs as instantiated.
    pub lhs: String,
    /// The rhs as instantiated.
    pub rhs: String,
    /// Each input's shape, value and tangent.
    pub inputs: Vec<String>,
    /// The lhs value.
    pub lhs_value: String,
    /// The rhs value.
    pub rhs_value: String,
}

impl fmt::Display for Witness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  lhs {} = {}", self.lhs, self.lhs_value)?;
        writeln!(f, "  rhs {} = {}", self.rhs, self.rhs_value)?;
        for i in &self.inputs {
            writeln!(f, "  {i}")?;
        }
        Ok(())
    }
}

/// The outcome for one rule.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Both sides agreed on every case that could be evaluated.
    Sound {
        /// Cases evaluated.
        checked: usize,
        /// Cases skipped (a division by zero on one side).
        skipped: usize,
    },
    /// The sides differ at the witness.
    Unsound(Box<Witness>),
    /// The rule could not be evaluated at all (every case divided by zero, or a side
    /// cannot be evaluated).
    Unchecked(String),
}

/// One rule's result.
#[derive(Debug, Clone)]
pub struct RuleReport {
    /// The rule's name.
    pub name: String,
    /// Where it is defined.
    pub location: String,
    /// The verdict.
    pub verdict: Verdict,
}

impl RuleReport {
    /// True when the rule passed.
    pub fn passed(&self) -> bool {
        matches!(self.verdict, Verdict::Sound { .. })
    }
}

impl fmt::Display for RuleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.verdict {
            Verdict::Sound { checked, skipped } => write!(
                f,
                "ok       {} ({checked} cases, {skipped} skipped)",
                self.name
            ),
            Verdict::Unsound(w) => write!(
                f,
                "UNSOUND  {} at {}: the two sides differ\n{w}",
                self.name, self.location
            ),
            Verdict::Unchecked(why) => {
                write!(f, "UNCHECKED {} at {}: {why}", self.name, self.location)
            }
        }
    }
}

/// Checks every rule of a set.
pub fn check_rules(set: &RuleSet, config: &CheckConfig) -> Vec<RuleReport> {
    check_rules_where(set, config, |_| true)
}

/// [`check_rules`] for the rules whose names `pick` accepts, each with the seed of
/// its place in the whole set (so a rule gets the same cases either way). The checks
/// are independent and run in parallel; reports come in the set's order.
pub fn check_rules_where(
    set: &RuleSet,
    config: &CheckConfig,
    pick: impl Fn(&str) -> bool + Sync,
) -> Vec<RuleReport> {
    use rayon::prelude::*;
    set.rules
        .par_iter()
        .enumerate()
        .filter(|(_, r)| pick(&r.name))
        .map(|(i, r)| check_rule(r, config, config.seed.wrapping_add(i as u64)))
        .collect()
}

/// Checks one rule.
pub fn check_rule(rule: &RuleDef, config: &CheckConfig, seed: u64) -> RuleReport {
    let verdict = match Instantiator::new(rule) {
        Ok(inst) => inst.run(config, seed),
        Err(why) => Verdict::Unchecked(why),
    };
    RuleReport {
        name: rule.name.clone(),
        location: rule.location().to_string(),
        verdict,
    }
}

/// What a pattern variable becomes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Name,
    Plain,
    RowSum,
    Number,
    Affine,
    Gradient,
    /// A head count: the size of its dim class, as a number.
    Heads,
}

struct Instantiator<'a> {
    rule: &'a RuleDef,
    roles: BTreeMap<Var, Role>,
    /// Per variable, the dim classes of its shape.
    dims: BTreeMap<Var, [usize; 3]>,
    /// Per head-count variable, its dim class.
    heads: BTreeMap<Var, usize>,
    /// Product dim classes and their factors' classes.
    products: BTreeMap<usize, Vec<usize>>,
    /// Dim classes of fixed size.
    fixed: BTreeMap<usize, usize>,
}

fn sym(prefix: &str, v: Var) -> Symbol {
    let name = v.to_string();
    Symbol::from(format!("{prefix}{}", name.trim_start_matches('?')))
}

impl<'a> Instantiator<'a> {
    fn new(rule: &'a RuleDef) -> Result<Self, String> {
        let mut inf = Inference::for_patterns();
        let (lt, names) = inf
            .infer_pattern(&rule.lhs_pattern.ast)
            .map_err(|e| e.to_string())?;
        inf.infer(&rule.rhs_pattern.ast)
            .map_err(|e| e.to_string())?;
        let summary = inf.summary(lt, names);
        let mut roles = BTreeMap::new();
        for (v, ty) in &summary.vars {
            let role = if summary.head_dims.contains_key(v) {
                Role::Heads
            } else if summary.name_vars.contains(v) {
                Role::Name
            } else if *ty == Ty::Grad {
                Role::Gradient
            } else {
                match rule.conditions.on(*v) {
                    Some(CondKind::TangentFree) | Some(CondKind::IsInput) => Role::Plain,
                    Some(CondKind::RowConst) => Role::RowSum,
                    Some(CondKind::IsConst) => Role::Number,
                    None => Role::Affine,
                }
            };
            roles.insert(*v, role);
        }
        // Gradient variables have no shape of their own: give each a fresh one.
        let mut next = usize::MAX / 2;
        let mut dims = summary.var_dims.clone();
        for (v, role) in &roles {
            if *role == Role::Gradient {
                dims.insert(*v, [next, next - 1, next - 2]);
                next -= 3;
            }
        }
        Ok(Instantiator {
            rule,
            roles,
            dims,
            heads: summary.head_dims.clone(),
            products: summary.products.clone(),
            fixed: summary.sizes.clone(),
        })
    }

    /// The term a variable stands for in this check.
    fn term_for(
        &self,
        v: Var,
        number: &Option<Rational>,
        sizes: &BTreeMap<usize, usize>,
        out: &mut Vec<Op>,
    ) -> Id {
        let push = |op: Op, out: &mut Vec<Op>| {
            out.push(op);
            Id::from(out.len() - 1)
        };
        let input = |out: &mut Vec<Op>, p: &str| push(Op::Input(sym(p, v)), out);
        match self.roles.get(&v).copied().unwrap_or(Role::Affine) {
            Role::Name | Role::Plain => input(out, "V"),
            Role::Number => match number {
                Some(q) => push(Op::Num(crate::ir::Const(q.clone())), out),
                None => push(Op::Param(crate::ir::ParamName(sym("V", v))), out),
            },
            Role::RowSum => {
                let x = input(out, "V");
                push(Op::RowSum([x]), out)
            }
            Role::Affine => {
                let x = input(out, "V");
                let name = input(out, "V");
                let t = push(Op::Tan([name]), out);
                push(Op::Add([x, t]), out)
            }
            Role::Heads => {
                let k = self
                    .heads
                    .get(&v)
                    .and_then(|c| sizes.get(c))
                    .copied()
                    .unwrap_or(1);
                let k = Rational::from_integer(BigInt::from(k));
                push(Op::Num(crate::ir::Const(k)), out)
            }
            Role::Gradient => {
                let slot = input(out, "V");
                let w = input(out, "W");
                push(Op::Grad([slot, w]), out)
            }
        }
    }

    /// The pattern with its variables replaced; numbers are `number`, or runtime
    /// parameters when it is `None`.
    fn instantiate(
        &self,
        pat: &RecExpr<ENodeOrVar<Op>>,
        number: &Option<Rational>,
        sizes: &BTreeMap<usize, usize>,
    ) -> Expr {
        let mut out: Vec<Op> = Vec::new();
        let mut map: Vec<Id> = Vec::new();
        for node in pat.as_ref() {
            let id = match node {
                ENodeOrVar::Var(v) => self.term_for(*v, number, sizes, &mut out),
                ENodeOrVar::ENode(op) => {
                    let op = op.clone().map_children(|c| map[usize::from(c)]);
                    out.push(op);
                    Id::from(out.len() - 1)
                }
            };
            map.push(id);
        }
        out.into()
    }

    fn run(&self, config: &CheckConfig, seed: u64) -> Verdict {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut checked, mut skipped) = (0, 0);
        for case in 0..config.cases {
            let number = small_rational(&mut rng);
            // Every other case, numbers become runtime parameters bound to `number`.
            let literal = (case % 2 == 0).then(|| number.clone());
            // The first half of the cases use only non-empty dims.
            let min = usize::from(case < config.cases / 2).min(config.max_dim);
            let (mut env, sizes) = match self.random_env(&mut rng, min, config.max_dim, seed) {
                Ok(env) => env,
                Err(e) => return Verdict::Unchecked(e.to_string()),
            };
            let lhs = self.instantiate(&self.rule.lhs_pattern.ast, &literal, &sizes);
            let rhs = self.instantiate(&self.rule.rhs_pattern.ast, &literal, &sizes);
            for (v, role) in &self.roles {
                if *role == Role::Number {
                    env.params.insert(sym("V", *v), number.clone());
                }
            }
            match (eval(&lhs, &env), eval(&rhs, &env)) {
                (Ok(a), Ok(b)) if values_equal(&a, &b) => checked += 1,
                (Ok(a), Ok(b)) => {
                    return Verdict::Unsound(Box::new(witness(&lhs, &rhs, &env, &a, &b)));
                }
                (Err(e), _) | (_, Err(e)) if is_division_by_zero(&e) => skipped += 1,
                (Err(e), _) | (_, Err(e)) => {
                    return Verdict::Unchecked(format!("cannot evaluate: {e}"))
                }
            }
        }
        if checked == 0 {
            return Verdict::Unchecked(format!("all {skipped} cases divided by zero"));
        }
        Verdict::Sound { checked, skipped }
    }

    fn random_env(
        &self,
        rng: &mut ChaCha8Rng,
        min: usize,
        max: usize,
        seed: u64,
    ) -> Result<(Env<Rational>, BTreeMap<usize, usize>), TensorError> {
        let mut sizes: BTreeMap<usize, usize> = self.fixed.clone();
        // Head counts are at least 1; a product class is the product of its factors.
        for c in self.heads.values() {
            sizes.insert(*c, rng.gen_range(min.max(1)..=max.max(1)));
        }
        let mut inputs = BTreeMap::new();
        for (v, classes) in &self.dims {
            let dims = classes.map(|c| self.size_of(c, &mut sizes, rng, min, max));
            let mut names = vec![sym("V", *v)];
            if self.roles.get(v) == Some(&Role::Gradient) {
                names.push(sym("W", *v));
            }
            for name in names {
                let value = random_tensor(rng, dims)?;
                let tangent = random_tensor(rng, dims)?;
                inputs.insert(name, Binding { value, tangent });
            }
        }
        let env = Env {
            inputs,
            params: BTreeMap::new(),
            oracle: ExpOracle::hashed(seed),
        };
        Ok((env, sizes))
    }

    /// The size of a dim class: drawn once, or the product of its factors' sizes.
    fn size_of(
        &self,
        c: usize,
        sizes: &mut BTreeMap<usize, usize>,
        rng: &mut ChaCha8Rng,
        min: usize,
        max: usize,
    ) -> usize {
        if let Some(s) = sizes.get(&c) {
            return *s;
        }
        let s = match self.products.get(&c) {
            Some(fs) => fs
                .iter()
                .map(|f| self.size_of(*f, sizes, rng, min, max))
                .product(),
            None => rng.gen_range(min..=max),
        };
        sizes.insert(c, s);
        s
    }
}

fn is_division_by_zero(e: &EvalError) -> bool {
    matches!(
        e,
        EvalError::Tensor(TensorError::Scalar(ScalarError::DivisionByZero))
    )
}

/// A small rational p/q, p in -4..=4, q in 1..=3.
pub fn small_rational(rng: &mut impl Rng) -> Rational {
    let p: i64 = rng.gen_range(-4..=4);
    let q: i64 = rng.gen_range(1..=3);
    Rational::new(BigInt::from(p), BigInt::from(q))
}

/// A tensor of small random rationals.
pub fn random_tensor(
    rng: &mut impl Rng,
    dims: [usize; 3],
) -> Result<Tensor<Rational>, TensorError> {
    let len = crate::tensor::checked_size(dims)?;
    Tensor::new(dims, (0..len).map(|_| small_rational(rng)).collect())
}

fn show<S: Scalar>(v: &Value<S>) -> String {
    match v {
        Value::Scalar(s) => s.to_string(),
        Value::Tensor(t) => t.to_string(),
        Value::Grad(g) => g
            .iter()
            .map(|(k, t)| format!("{k}: {t}"))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

fn witness(
    lhs: &Expr,
    rhs: &Expr,
    env: &Env<Rational>,
    a: &Value<Rational>,
    b: &Value<Rational>,
) -> Witness {
    Witness {
        lhs: lhs.to_string(),
        rhs: rhs.to_string(),
        inputs: env.describe(),
        lhs_value: show(a),
        rhs_value: show(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{RuleSet, Source};

    fn one_rule(body: &str) -> RuleSet {
        let text = format!("group = \"algebra\"\n[[rule]]\nname = \"r\"\nlean = \"x\"\n{body}");
        RuleSet::from_files(Source::Embedded, &[("t.toml".into(), text)]).unwrap()
    }

    #[test]
    fn every_embedded_rule_is_sound() {
        let set = RuleSet::embedded().unwrap();
        for report in check_rules(&set, &CheckConfig::default()) {
            assert!(report.passed(), "{report}");
        }
    }

    #[test]
    fn an_unsound_rule_is_refused_with_a_witness() {
        // exp' = exp, not 1: a wrong exp rule.
        let set = one_rule("lhs = \"(jvp (exp ?a))\"\nrhs = \"(jvp ?a)\"\n");
        let report = &check_rules(&set, &CheckConfig::default())[0];
        assert!(matches!(report.verdict, Verdict::Unsound(_)), "{report}");
        let text = report.to_string();
        assert!(text.contains("UNSOUND  r at t.toml:3:8"), "{text}");
        assert!(text.contains("lhs (jvp (exp (+ Va (tan Va))))"), "{text}");
    }

    #[test]
    fn a_dropped_side_condition_is_caught() {
        // Moving a factor into a row sum needs it to be constant along the row.
        let sound = one_rule(
            "lhs = \"(* ?c (rowsum ?e))\"\nrhs = \"(rowsum (* ?c ?e))\"\nif = [\"row_const ?c\"]\n",
        );
        assert!(check_rules(&sound, &CheckConfig::default())[0].passed());
        let unsound = one_rule("lhs = \"(* ?c (rowsum ?e))\"\nrhs = \"(rowsum (* ?c ?e))\"\n");
        assert!(!check_rules(&unsound, &CheckConfig::default())[0].passed());
        // Transposing through bmm needs the other factor to be tangent-free.
        let unsound =
            one_rule("lhs = \"(adj (bmm ?e ?b) ?g)\"\nrhs = \"(adj ?e (bmm ?g (T ?b)))\"\n");
        assert!(!check_rules(&unsound, &CheckConfig::default())[0].passed());
    }

    #[test]
    fn a_head_split_whose_adjoint_is_the_lean_cast_is_caught() {
        // split and reshape have the same shapes but move entries differently.
        let set =
            one_rule("lhs = \"(adj (split ?k ?e) ?g)\"\nrhs = \"(adj ?e (unreshape ?k ?g))\"\n");
        let report = &check_rules(&set, &CheckConfig::default())[0];
        assert!(matches!(report.verdict, Verdict::Unsound(_)), "{report}");
        let sound =
            one_rule("lhs = \"(adj (split ?k ?e) ?g)\"\nrhs = \"(adj ?e (merge ?k ?g))\"\n");
        assert!(check_rules(&sound, &CheckConfig::default())[0].passed());
    }

    #[test]
    fn a_flipped_transpose_is_caught() {
        let set = one_rule(
            "lhs = \"(adj (bmm ?a ?e) ?g)\"\nrhs = \"(adj ?e (bmm ?a ?g))\"\nif = [\"tangent_free ?a\"]\n",
        );
        // Ill-typed unless square: the static check or the exact check rejects it.
        let report = &check_rules(&set, &CheckConfig::default())[0];
        assert!(!report.passed(), "{report}");
    }
}
