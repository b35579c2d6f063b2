//! Derivation: runs egg with the rule set on `(jvp e)` or `(vjp e G)`, extracts the
//! cheapest derivative-free term, and keeps the explanation for the trace.
//!
//! No derivative formula is written here: every step comes from the rules. This module
//! only sets up the start term, refuses unsound rule sets, runs egg within the
//! user's limits, and refuses results in which a derivative operator survives.

use crate::ir::analysis::{Graph, TensorAnalysis};
use crate::ir::shape::{infer_term, parse_shape, ShapeEnv, ShapeError, Ty};
use crate::ir::{parse_term, Expr, Op};
use crate::rules::soundness::{check_rules, CheckConfig, RuleReport};
use crate::rules::{RuleError, RuleSet};
use egg::{CostFunction, Extractor, FlatTerm, Id, Language, RecExpr, Runner, StopReason, Symbol};
use std::fmt;
use std::time::Duration;

/// JVP or VJP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The Fréchet derivative applied to the inputs' tangents.
    Jvp,
    /// The adjoint of the derivative applied to a cotangent G.
    Vjp,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Jvp => "jvp",
            Mode::Vjp => "vjp",
        })
    }
}

/// The two spec ops, as IR terms with their input shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SpecOp {
    /// `Batched.matmul`: (h×m×n)·(h×n×p).
    Matmul,
    /// `Batched.softmaxLast`: softmax along the last axis of h×m×n.
    #[value(name = "softmax_last")]
    SoftmaxLast,
}

impl fmt::Display for SpecOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpecOp::Matmul => "matmul",
            SpecOp::SoftmaxLast => "softmax_last",
        })
    }
}

impl SpecOp {
    /// The forward term and its inputs' symbolic shapes.
    pub fn term(&self) -> (&'static str, &'static [(&'static str, &'static str)]) {
        match self {
            SpecOp::Matmul => ("(bmm A B)", &[("A", "h,m,n"), ("B", "h,n,p")]),
            SpecOp::SoftmaxLast => ("(softmax X)", &[("X", "h,m,n")]),
        }
    }

    /// The derivation request for this op.
    pub fn request(&self, mode: Mode) -> Result<Request, DeriveError> {
        let (term, shapes) = self.term();
        let shapes = shapes
            .iter()
            .map(|(k, v)| Ok((Symbol::from(*k), parse_shape(v)?)))
            .collect::<Result<ShapeEnv, ShapeError>>()
            .map_err(DeriveError::Shape)?;
        Request::new(term, shapes, None, mode)
    }
}

/// The name of the cotangent in VJPs.
pub const COTANGENT: &str = "G";

/// What to derive.
#[derive(Debug, Clone)]
pub struct Request {
    /// The forward term.
    pub forward: Expr,
    /// Its inputs' shapes (plus the cotangent's, for VJPs).
    pub shapes: ShapeEnv,
    /// The inputs that vary (JVP: the others' tangents are zero; VJP: the gradient
    /// slots reported).
    pub wrt: Vec<Symbol>,
    /// JVP or VJP.
    pub mode: Mode,
}

impl Request {
    /// Checks the term against the shapes and builds the request; `wrt` defaults to
    /// every input of the term.
    pub fn new(
        term: &str,
        mut shapes: ShapeEnv,
        wrt: Option<Vec<Symbol>>,
        mode: Mode,
    ) -> Result<Request, DeriveError> {
        let forward = parse_term(term).map_err(DeriveError::Parse)?;
        let inputs = inputs_of(&forward);
        let cot = Symbol::from(COTANGENT);
        if inputs.contains(&cot) {
            return Err(DeriveError::Request(format!(
                "{COTANGENT} names the cotangent: rename that input"
            )));
        }
        if let Some(bad) = forward.as_ref().iter().find(|n| n.is_derivative_operator()) {
            return Err(DeriveError::Request(format!(
                "the forward term must not contain {}",
                bad
            )));
        }
        let out = match infer_term(&forward, &shapes).map_err(DeriveError::Shape)? {
            Ty::Tensor(d) => d,
            other => {
                return Err(DeriveError::Request(format!(
                    "the forward term must be a tensor, not {other}"
                )))
            }
        };
        let wrt = wrt.unwrap_or_else(|| inputs.clone());
        if let Some(w) = wrt.iter().find(|w| !inputs.contains(w)) {
            return Err(DeriveError::Request(format!(
                "--wrt {w}: the term has no input {w} (inputs: {})",
                names(&inputs)
            )));
        }
        if mode == Mode::Vjp {
            let dims = out.map(|d| d.expect("a term with declared inputs has known dims"));
            shapes.insert(cot, dims);
        }
        Ok(Request {
            forward,
            shapes,
            wrt,
            mode,
        })
    }

    /// The start term: `(jvp e)` or `(vjp e G)`.
    pub fn start(&self) -> Expr {
        let mut nodes: Vec<Op> = self.forward.as_ref().to_vec();
        let root = Id::from(nodes.len() - 1);
        match self.mode {
            Mode::Jvp => nodes.push(Op::Jvp([root])),
            Mode::Vjp => {
                nodes.push(Op::Input(Symbol::from(COTANGENT)));
                let g = Id::from(nodes.len() - 1);
                nodes.push(Op::Vjp([root, g]));
            }
        }
        nodes.into()
    }

    /// Inputs held constant.
    pub fn constants(&self) -> Vec<Symbol> {
        inputs_of(&self.forward)
            .into_iter()
            .filter(|s| !self.wrt.contains(s))
            .collect()
    }
}

fn names(s: &[Symbol]) -> String {
    s.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The input names of a term, sorted, without repeats.
pub fn inputs_of(e: &Expr) -> Vec<Symbol> {
    let mut v: Vec<Symbol> = e
        .as_ref()
        .iter()
        .filter_map(|n| match n {
            Op::Input(s) => Some(*s),
            _ => None,
        })
        .collect();
    v.sort_by_key(|s| s.to_string());
    v.dedup();
    v
}

/// egg's limits, all raisable from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Iterations of the runner.
    pub iterations: usize,
    /// E-nodes in the e-graph.
    pub nodes: usize,
    /// Wall-clock time.
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            iterations: 30,
            nodes: 20_000,
            time: Duration::from_secs(10),
        }
    }
}

/// Why a derivation failed.
#[derive(Debug, thiserror::Error)]
pub enum DeriveError {
    /// The term does not parse.
    #[error("cannot parse the term: {0}")]
    Parse(String),
    /// The term is ill-shaped.
    #[error("ill-shaped term: {0}")]
    Shape(ShapeError),
    /// The request is inconsistent.
    #[error("{0}")]
    Request(String),
    /// The rule files are broken.
    #[error(transparent)]
    Rules(#[from] RuleError),
    /// Some rules failed the soundness check.
    #[error("refusing to derive with unsound rules:\n{}", .0.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("\n"))]
    Unsound(Vec<RuleReport>),
    /// A derivative operator survived extraction.
    #[error("the rules did not eliminate every derivative operator: residual subterm {residual}\n  in {result}\n  (egg stopped: {stop}; {hint})")]
    Residual {
        /// The smallest surviving subterm with a derivative operator.
        residual: String,
        /// The whole extracted term.
        result: String,
        /// Why egg stopped.
        stop: String,
        /// What to try.
        hint: String,
    },
}

/// A finished derivation.
#[derive(Debug)]
pub struct Derivation {
    /// The request.
    pub request: Request,
    /// The start term.
    pub start: Expr,
    /// The extracted derivative-free result.
    pub result: Expr,
    /// egg's explanation of start = result, flattened: one term per rewrite.
    pub explanation: Vec<FlatTerm<Op>>,
    /// Why egg stopped.
    pub stop: String,
    /// Runner statistics.
    pub iterations: usize,
    /// E-nodes at the end.
    pub egraph_nodes: usize,
    /// E-classes at the end.
    pub egraph_classes: usize,
    /// Time spent in egg.
    pub seconds: f64,
}

/// Costs that prefer what a kernel computes cheaply: derivative operators are
/// prohibitive, transposes are free inside a GEMM (transpose flags), the saved
/// softmax output is cheap to reuse, and fewer passes over the data win.
pub struct KernelCost;

impl CostFunction<Op> for KernelCost {
    type Cost = f64;
    fn cost<C>(&mut self, enode: &Op, mut costs: C) -> f64
    where
        C: FnMut(Id) -> f64,
    {
        let own = match enode {
            Op::Jvp(_) | Op::Vjp(_) | Op::Adj(_) => 1e6,
            Op::Num(_) | Op::Param(_) | Op::Input(_) | Op::Tan(_) => 1.0,
            Op::Grad(_) => 0.5,
            // Two contributions to one slot cost more than one summed contribution.
            Op::GAdd(_) => 4.0,
            Op::Transpose(_) => 0.5,
            Op::Add(_) | Op::Sub(_) | Op::Mul(_) | Op::Neg(_) => 2.0,
            Op::Div(_) | Op::Inv(_) => 3.0,
            Op::RowSum(_) => 3.0,
            Op::Softmax(_) => 2.0,
            Op::Exp(_) => 8.0,
            Op::Bmm(_) => 10.0,
            // A copy; the head count is free.
            Op::Split(_)
            | Op::Merge(_)
            | Op::Reshape(_)
            | Op::Unreshape(_)
            | Op::Flat(_)
            | Op::Unflat(_)
            | Op::Swap(_) => 2.0,
        };
        enode.fold(own, |acc, id| acc + costs(id))
    }
}

/// Derives `request` with `rules`: checks the rules for soundness first, then runs
/// egg, extracts, and checks that no derivative operator survives.
pub fn derive(
    request: &Request,
    rules: &RuleSet,
    limits: &Limits,
) -> Result<Derivation, DeriveError> {
    refuse_unsound(rules)?;
    derive_unchecked(request, rules, limits)
}

/// The soundness check [`derive`] runs first: an error listing every rule that fails.
pub fn refuse_unsound(rules: &RuleSet) -> Result<(), DeriveError> {
    let unsound: Vec<RuleReport> = check_rules(rules, &CheckConfig::default())
        .into_iter()
        .filter(|r| !r.passed())
        .collect();
    if unsound.is_empty() {
        Ok(())
    } else {
        Err(DeriveError::Unsound(unsound))
    }
}

/// [`derive`] without the soundness check (for callers that just ran it).
pub fn derive_unchecked(
    request: &Request,
    rules: &RuleSet,
    limits: &Limits,
) -> Result<Derivation, DeriveError> {
    let rewrites = rules.rewrites()?;
    let start = request.start();
    let mut egraph = Graph::new(TensorAnalysis).with_explanations_enabled();
    let root = egraph.add_expr(&start);
    if request.mode == Mode::Jvp {
        hold_constant(&mut egraph, &request.constants());
    }
    let began = std::time::Instant::now();
    let mut runner = Runner::default()
        .with_egraph(egraph)
        .with_iter_limit(limits.iterations)
        .with_node_limit(limits.nodes)
        .with_time_limit(limits.time)
        .run(&rewrites);
    let seconds = began.elapsed().as_secs_f64();
    let stop = stop_text(runner.stop_reason.as_ref());
    let root = runner.egraph.find(root);
    let (_, extracted) = Extractor::new(&runner.egraph, KernelCost).find_best(root);
    let result = match request.mode {
        Mode::Vjp => keep_slots(&extracted, &request.wrt),
        Mode::Jvp => extracted.clone(),
    };
    if let Some(found) = residual(&result) {
        let stuck = stuck_terms(&runner.egraph);
        let residual = stuck.first().cloned().unwrap_or(found);
        let hint = if matches!(runner.stop_reason, Some(StopReason::Saturated)) {
            "the rules cannot rewrite it: is a differentiation or adjoint rule missing?"
        } else {
            "raise the limit with --iter-limit/--node-limit/--time-limit, or add rules"
        };
        return Err(DeriveError::Residual {
            residual: residual.to_string(),
            result: result.to_string(),
            stop,
            hint: hint.into(),
        });
    }
    let explanation = runner
        .explain_equivalence(&start, &extracted)
        .make_flat_explanation()
        .clone();
    Ok(Derivation {
        request: request.clone(),
        start,
        result,
        explanation,
        stop,
        iterations: runner.iterations.len(),
        egraph_nodes: runner.egraph.total_number_of_nodes(),
        egraph_classes: runner.egraph.number_of_classes(),
        seconds,
    })
}

/// The reason a request holds an input constant: its tangent is a zero tensor.
pub const HELD_CONSTANT: &str = "held-constant";

fn hold_constant(egraph: &mut Graph, constants: &[Symbol]) {
    for c in constants {
        let x = egraph.add(Op::Input(*c));
        let tan = egraph.add(Op::Tan([x]));
        let zero = egraph.add(Op::Num(crate::ir::Const(num_traits::Zero::zero())));
        let zeros = egraph.add(Op::Mul([zero, x]));
        egraph.union_trusted(tan, zeros, HELD_CONSTANT);
    }
    egraph.rebuild();
}

fn stop_text(reason: Option<&StopReason>) -> String {
    match reason {
        Some(StopReason::Saturated) => "saturated".into(),
        Some(StopReason::IterationLimit(n)) => format!("iteration limit ({n})"),
        Some(StopReason::NodeLimit(n)) => format!("node limit ({n})"),
        Some(StopReason::TimeLimit(t)) => format!("time limit ({t:.1} s)"),
        Some(StopReason::Other(s)) => s.clone(),
        None => "not run".into(),
    }
}

/// The derivative operators no rule could rewrite: e-classes holding nothing but
/// derivative operators, extracted, smallest first. These name the missing rule.
fn stuck_terms(egraph: &Graph) -> Vec<Expr> {
    let extractor = Extractor::new(egraph, KernelCost);
    let mut stuck: Vec<Expr> = egraph
        .classes()
        .filter(|c| c.nodes.iter().all(Op::is_derivative_operator))
        .map(|c| extractor.find_best(c.id).1)
        .collect();
    stuck.sort_by_key(|e| (e.as_ref().len(), e.to_string()));
    stuck
}

/// The first subterm that still holds a derivative operator, if any.
pub fn residual(e: &Expr) -> Option<Expr> {
    let nodes = e.as_ref();
    let id = nodes.iter().position(|n| n.is_derivative_operator())?;
    Some(subterm(e, Id::from(id)))
}

/// The subterm of `e` rooted at `id`.
pub fn subterm(e: &Expr, id: Id) -> Expr {
    e[id].build_recexpr(|c| e[c].clone())
}

/// Drops the gradient slots of inputs not in `wrt` from a VJP result.
fn keep_slots(e: &Expr, wrt: &[Symbol]) -> Expr {
    let mut kept: Vec<Expr> = Vec::new();
    collect_grads(e, Id::from(e.as_ref().len() - 1), &mut kept);
    let wanted = |g: &Expr| match g.as_ref().last() {
        Some(Op::Grad([slot, _])) => !matches!(&g[*slot], Op::Input(s) if !wrt.contains(s)),
        _ => true,
    };
    let mut kept: Vec<Expr> = kept.into_iter().filter(wanted).collect();
    kept.sort_by_key(|g| g.to_string());
    match kept.len() {
        0 => e.clone(),
        _ => join_gadd(kept),
    }
}

fn collect_grads(e: &Expr, id: Id, out: &mut Vec<Expr>) {
    match &e[id] {
        Op::GAdd([a, b]) => {
            collect_grads(e, *a, out);
            collect_grads(e, *b, out);
        }
        _ => out.push(subterm(e, id)),
    }
}

fn join_gadd(parts: Vec<Expr>) -> Expr {
    let mut iter = parts.into_iter();
    let first = iter.next().unwrap_or_default();
    iter.fold(first, |acc, next| {
        let mut nodes: Vec<Op> = acc.as_ref().to_vec();
        let a = Id::from(nodes.len() - 1);
        let offset = nodes.len();
        nodes.extend(next.as_ref().iter().map(|n| {
            n.clone()
                .map_children(|c| Id::from(usize::from(c) + offset))
        }));
        let b = Id::from(nodes.len() - 1);
        nodes.push(Op::GAdd([a, b]));
        RecExpr::from(nodes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn derive_op(op: SpecOp, mode: Mode) -> Derivation {
        let rules = RuleSet::embedded().unwrap();
        derive_unchecked(&op.request(mode).unwrap(), &rules, &Limits::default()).unwrap()
    }

    #[test]
    fn softmax_last_jvp_and_vjp() {
        let jvp = derive_op(SpecOp::SoftmaxLast, Mode::Jvp);
        let vjp = derive_op(SpecOp::SoftmaxLast, Mode::Vjp);
        assert_eq!(
            vjp.result.to_string(),
            "(grad X (* (softmax X) (- G (rowsum (* (softmax X) G)))))"
        );
        assert_eq!(
            jvp.result.to_string(),
            "(* (softmax X) (- (tan X) (rowsum (* (softmax X) (tan X)))))"
        );
    }

    #[test]
    fn matmul_jvp_and_vjp() {
        let jvp = derive_op(SpecOp::Matmul, Mode::Jvp);
        let vjp = derive_op(SpecOp::Matmul, Mode::Vjp);
        assert_eq!(
            jvp.result.to_string(),
            "(+ (bmm (tan A) B) (bmm A (tan B)))"
        );
        assert_eq!(
            vjp.result.to_string(),
            "(g+ (grad A (bmm G (T B))) (grad B (bmm (T A) G)))"
        );
    }
}
