//! Derivation: runs egg with the rule set on `(jvp e)` or `(vjp e G)`, extracts the
//! cheapest derivative-free term, and keeps the explanation for the trace.
//!
//! No derivative formula is written here: every step comes from the rules. This module
//! only sets up the start term, refuses unsound rule sets, runs egg within the
//! user's limits, and refuses results in which a derivative operator survives.

use crate::ir::analysis::{Graph, TensorAnalysis};
use crate::ir::shape::{infer_term, ShapeEnv, ShapeError, Ty};
use crate::ir::{parse_term, Expr, Op};
use crate::rules::soundness::{check_rules_where, CheckConfig, RuleReport};
use crate::rules::{RuleError, RuleSet, REV};
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
    /// Forward subterms the result uses in their declared form (see
    /// [`Request::keeping`]).
    pub keep: Vec<Expr>,
}

impl Request {
    /// Checks the term against the shapes and builds the request; `wrt` defaults to
    /// every input of the term.
    pub fn new(
        term: &str,
        shapes: ShapeEnv,
        wrt: Option<Vec<Symbol>>,
        mode: Mode,
    ) -> Result<Request, DeriveError> {
        let forward = parse_term(term).map_err(DeriveError::Parse)?;
        Request::from_expr(forward, shapes, wrt, mode)
    }

    /// [`Request::new`] for a parsed term.
    pub fn from_expr(
        forward: Expr,
        mut shapes: ShapeEnv,
        wrt: Option<Vec<Symbol>>,
        mode: Mode,
    ) -> Result<Request, DeriveError> {
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
            keep: Vec::new(),
        })
    }

    /// The request with `keep`: forward subterms (saved by the forward pass) that the
    /// result must use in exactly their declared form wherever it uses them.
    pub fn keeping(self, keep: Vec<Expr>) -> Request {
        Request { keep, ..self }
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

/// egg's limits, all raisable from the command line, and whether to keep the
/// explanation a trace is built from.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Iterations of the runner.
    pub iterations: usize,
    /// E-nodes in the e-graph.
    pub nodes: usize,
    /// Wall-clock time.
    pub time: Duration,
    /// Record egg's explanation (needed for a trace; costs time and memory on large
    /// terms, so commands that print no trace turn it off).
    pub explain: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            iterations: 30,
            nodes: 20_000,
            time: Duration::from_secs(10),
            explain: true,
        }
    }
}

impl Limits {
    /// These limits without the explanation.
    pub fn unexplained(self) -> Limits {
        Limits {
            explain: false,
            ..self
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
    /// egg's explanation of start = result, flattened: one term per rewrite (empty
    /// unless [`Limits::explain`] was set).
    pub explanation: Vec<FlatTerm<Op>>,
    /// Whether the explanation was recorded.
    pub explained: bool,
    /// Why egg stopped.
    pub stop: String,
    /// The schedule's phases.
    pub phases: Vec<Phase>,
    /// Runner iterations, over all phases.
    pub iterations: usize,
    /// E-nodes at the end of the largest phase.
    pub egraph_nodes: usize,
    /// E-classes at the end of the largest phase.
    pub egraph_classes: usize,
    /// Time spent in egg, over all phases.
    pub seconds: f64,
    /// Time spent in all (egg, extraction, explanation).
    pub total_seconds: f64,
    /// The process's peak resident memory after the derivation, in bytes (Linux only).
    pub peak_rss: Option<u64>,
    /// The names of the rewrites egg applied in any phase (a bidirectional rule's
    /// right-to-left direction as its name with the suffix [`REV`]), sorted.
    pub applied: Vec<String>,
}

/// The process's peak resident set size (`VmHWM` in `/proc/self/status`), if the
/// platform reports it.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// Costs that prefer what a kernel computes cheaply: derivative operators are
/// prohibitive, transposes are free inside a GEMM (transpose flags), the saved
/// softmax output is cheap to reuse, and fewer passes over the data win.
/// It reads the e-graph only to order the factors of a commutative product or sum
/// whose two orders cost the same.
pub struct KernelCost<'a> {
    /// The e-graph extracted from.
    pub egraph: &'a Graph,
}

impl KernelCost<'_> {
    fn holds_softmax(&self, id: Id) -> bool {
        self.egraph[id]
            .nodes
            .iter()
            .any(|n| matches!(n, Op::Softmax(_)))
    }
}

impl CostFunction<Op> for KernelCost<'_> {
    type Cost = f64;
    fn cost<C>(&mut self, enode: &Op, mut costs: C) -> f64
    where
        C: FnMut(Id) -> f64,
    {
        let order = match enode {
            Op::Mul([a, b]) => order_cost(self.holds_softmax(*a), self.holds_softmax(*b)),
            _ => 0.0,
        };
        enode.fold(op_cost(enode) + order, |acc, id| acc + costs(id))
    }
}

/// An operator's own cost (see [`KernelCost`]).
fn op_cost(op: &Op) -> f64 {
    match op {
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
    }
}

/// Of the two orders of a product, the one writing the softmax first (s ⊙ G, as the
/// Lean file writes y ⊙ (dx − ...)) wins a tie: a readable normal form that never
/// outweighs a real cost difference (at least 0.5).
fn order_cost(softmax_a: bool, softmax_b: bool) -> f64 {
    if softmax_b && !softmax_a {
        1e-9
    } else {
        0.0
    }
}

/// The [`KernelCost`] of one term (each subterm counted where it occurs).
pub fn term_cost(e: &Expr) -> f64 {
    let nodes = e.as_ref();
    let softmax = |id: &Id| matches!(nodes[usize::from(*id)], Op::Softmax(_));
    let mut cost: Vec<f64> = Vec::with_capacity(nodes.len());
    for node in nodes {
        let order = match node {
            Op::Mul([a, b]) => order_cost(softmax(a), softmax(b)),
            _ => 0.0,
        };
        let c = node.fold(op_cost(node) + order, |acc, id| acc + cost[usize::from(id)]);
        cost.push(c);
    }
    cost.last().copied().unwrap_or(0.0)
}

/// Derives `request` with `rules`: runs egg, extracts, checks that no derivative
/// operator survives, then checks exactly, over ℚ, every rule the derivation applied
/// (only applied rules put equalities in the e-graph, so only they can make the
/// result wrong) and refuses the result if one fails. `fderiv rules check` checks the
/// whole set; [`refuse_unsound`] is that check as an error.
pub fn derive(
    request: &Request,
    rules: &RuleSet,
    limits: &Limits,
) -> Result<Derivation, DeriveError> {
    let d = derive_unchecked(request, rules, limits)?;
    let applied =
        |name: &str| (d.applied.iter()).any(|a| a == name || a.strip_suffix(REV) == Some(name));
    refuse_unsound_among(rules, applied)?;
    Ok(d)
}

/// The soundness check of every rule of the set: an error listing each that fails.
pub fn refuse_unsound(rules: &RuleSet) -> Result<(), DeriveError> {
    refuse_unsound_among(rules, |_| true)
}

/// The soundness check of the rules whose names `pick` accepts.
fn refuse_unsound_among(
    rules: &RuleSet,
    pick: impl Fn(&str) -> bool + Sync,
) -> Result<(), DeriveError> {
    let unsound: Vec<RuleReport> = check_rules_where(rules, &CheckConfig::default(), pick)
        .into_iter()
        .filter(|r| !r.passed())
        .collect();
    if unsound.is_empty() {
        Ok(())
    } else {
        Err(DeriveError::Unsound(unsound))
    }
}

/// One phase of the derivation schedule, as `derive` reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Phase {
    /// `differentiate` or `simplify`.
    pub name: &'static str,
    /// Why egg stopped.
    pub stop: String,
    /// Runner iterations.
    pub iterations: usize,
    /// E-nodes at the end.
    pub enodes: usize,
    /// E-classes at the end.
    pub eclasses: usize,
    /// Time in egg.
    pub seconds: f64,
}

struct PhaseRun {
    runner: Runner<Op, TensorAnalysis>,
    root: Id,
    stats: Phase,
}

impl PhaseRun {
    /// Runs `rewrites` on `start` within `limits`.
    fn run(
        name: &'static str,
        start: &Expr,
        request: &Request,
        rewrites: &[egg::Rewrite<Op, TensorAnalysis>],
        limits: &Limits,
    ) -> PhaseRun {
        let mut egraph = Graph::new(TensorAnalysis);
        if limits.explain {
            egraph = egraph.with_explanations_enabled();
        }
        let root = egraph.add_expr(start);
        if request.mode == Mode::Jvp {
            hold_constant(&mut egraph, &request.constants());
        }
        let began = std::time::Instant::now();
        let runner = Runner::default()
            .with_egraph(egraph)
            .with_iter_limit(limits.iterations)
            .with_node_limit(limits.nodes)
            .with_time_limit(limits.time)
            .run(rewrites);
        let stats = Phase {
            name,
            stop: stop_text(runner.stop_reason.as_ref()),
            iterations: runner.iterations.len(),
            enodes: runner.egraph.total_number_of_nodes(),
            eclasses: runner.egraph.number_of_classes(),
            seconds: began.elapsed().as_secs_f64(),
        };
        PhaseRun {
            runner,
            root,
            stats,
        }
    }

    fn best(&self) -> Expr {
        let root = self.runner.egraph.find(self.root);
        let egraph = &self.runner.egraph;
        Extractor::new(egraph, KernelCost { egraph })
            .find_best(root)
            .1
    }

    /// The best term, with every subterm equal to one of `keep` written exactly as
    /// `keep` writes it: each kept term's e-class gets a cheap placeholder leaf (a
    /// name, not a rewrite), the extraction picks it wherever the class occurs, and
    /// the placeholders are replaced by the kept terms.
    fn best_keeping(&mut self, keep: &[Expr]) -> Expr {
        if keep.is_empty() {
            return self.best();
        }
        let mut leaves: Vec<(Symbol, &Expr)> = Vec::new();
        for (k, term) in keep.iter().enumerate() {
            let egraph = &mut self.runner.egraph;
            let class = egraph.add_expr(term);
            let name = Symbol::from(format!("kept#{k}"));
            let leaf = egraph.add(Op::Input(name));
            egraph.union_trusted(class, leaf, KEPT);
            leaves.push((name, term));
        }
        self.runner.egraph.rebuild();
        let best = self.best();
        let mut out: Vec<Op> = Vec::new();
        let mut map: Vec<Id> = Vec::with_capacity(best.as_ref().len());
        for node in best.as_ref() {
            let id = match node {
                Op::Input(s) => match leaves.iter().find(|(n, _)| n == s) {
                    Some((_, term)) => {
                        let offset = out.len();
                        out.extend(term.as_ref().iter().map(|n| {
                            n.clone()
                                .map_children(|c| Id::from(usize::from(c) + offset))
                        }));
                        Id::from(out.len() - 1)
                    }
                    None => {
                        out.push(node.clone());
                        Id::from(out.len() - 1)
                    }
                },
                _ => {
                    out.push(node.clone().map_children(|c| map[usize::from(c)]));
                    Id::from(out.len() - 1)
                }
            };
            map.push(id);
        }
        RecExpr::from(out)
    }

    /// The error for a result that still holds a derivative operator.
    fn residual_error(&self, result: &Expr, found: Expr) -> DeriveError {
        let stuck = stuck_terms(&self.runner.egraph);
        let residual = stuck.first().cloned().unwrap_or(found);
        let hint = if matches!(self.runner.stop_reason, Some(StopReason::Saturated)) {
            "the rules cannot rewrite it: is a differentiation or adjoint rule missing?"
        } else {
            "raise the limit with --iter-limit/--node-limit/--time-limit, or add rules"
        };
        DeriveError::Residual {
            residual: residual.to_string(),
            result: result.to_string(),
            stop: format!("{} phase: {}", self.stats.name, self.stats.stop),
            hint: hint.into(),
        }
    }

    fn explain(&mut self, from: &Expr, to: &Expr) -> Vec<FlatTerm<Op>> {
        self.runner
            .explain_equivalence(from, to)
            .make_flat_explanation()
            .clone()
    }
}

/// [`derive()`] without the soundness check (for callers that just ran it).
///
/// The schedule has two phases. **differentiate**: every rule but the ones marked
/// `simplify_only` (commutativity, associativity, distribution), which multiply
/// e-nodes without bringing a derivative operator closer to elimination; the cheapest
/// term is extracted. **simplify**: every rule, on a fresh e-graph holding that term.
/// Each phase runs within `limits`; the trace is the two explanations joined.
pub fn derive_unchecked(
    request: &Request,
    rules: &RuleSet,
    limits: &Limits,
) -> Result<Derivation, DeriveError> {
    let began = std::time::Instant::now();
    let start = request.start();
    let differentiating = rules.rewrites_where(|r| !r.simplify_only)?;
    let mut first = PhaseRun::run("differentiate", &start, request, &differentiating, limits);
    let mid = first.best();
    if let Some(found) = residual(&mid) {
        return Err(first.residual_error(&mid, found));
    }
    let mut second = PhaseRun::run("simplify", &mid, request, &rules.rewrites()?, limits);
    let simplified = second.best_keeping(&request.keep);
    // Simplifying keeps the differentiated term unless it finds a cheaper one (a
    // rewrite for nothing would only lengthen the trace).
    let extracted = if term_cost(&simplified) < term_cost(&mid) || !request.keep.is_empty() {
        simplified
    } else {
        mid.clone()
    };
    let result = match request.mode {
        Mode::Vjp => keep_slots(&extracted, &request.wrt),
        Mode::Jvp => extracted.clone(),
    };
    if let Some(found) = residual(&result) {
        return Err(second.residual_error(&result, found));
    }
    let explanation = if limits.explain {
        let mut steps = first.explain(&start, &mid);
        steps.extend(second.explain(&mid, &extracted).into_iter().skip(1));
        steps
    } else {
        Vec::new()
    };
    let mut applied: Vec<String> = [&first, &second]
        .iter()
        .flat_map(|p| p.runner.iterations.iter())
        .flat_map(|it| it.applied.keys())
        .map(|name| name.as_str().to_string())
        .collect();
    applied.sort();
    applied.dedup();
    let phases = vec![first.stats, second.stats];
    Ok(Derivation {
        request: request.clone(),
        start,
        result,
        explanation,
        explained: limits.explain,
        stop: phases
            .iter()
            .map(|p| format!("{}: {}", p.name, p.stop))
            .collect::<Vec<_>>()
            .join("; "),
        iterations: phases.iter().map(|p| p.iterations).sum(),
        egraph_nodes: phases.iter().map(|p| p.enodes).max().unwrap_or(0),
        egraph_classes: phases.iter().map(|p| p.eclasses).max().unwrap_or(0),
        seconds: phases.iter().map(|p| p.seconds).sum(),
        phases,
        total_seconds: began.elapsed().as_secs_f64(),
        peak_rss: peak_rss(),
        applied,
    })
}

/// The reason a kept subterm's e-class gets a placeholder leaf.
pub const KEPT: &str = "kept";

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
    let extractor = Extractor::new(egraph, KernelCost { egraph });
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
    use crate::ir::shape::parse_shape;

    fn derive_term(term: &str, shapes: &[(&str, &str)], mode: Mode) -> Derivation {
        let rules = RuleSet::embedded().unwrap();
        let shapes = shapes
            .iter()
            .map(|(n, s)| (Symbol::from(*n), parse_shape(s).unwrap()))
            .collect();
        let req = Request::new(term, shapes, None, mode).unwrap();
        derive_unchecked(&req, &rules, &Limits::default()).unwrap()
    }

    #[test]
    fn softmax_last_jvp_and_vjp() {
        let x = [("X", "h,m,n")];
        let jvp = derive_term("(softmax X)", &x, Mode::Jvp);
        let vjp = derive_term("(softmax X)", &x, Mode::Vjp);
        assert_eq!(
            vjp.result.to_string(),
            "(grad X (* (softmax X) (- G (rowsum (* (softmax X) G)))))"
        );
        assert_eq!(
            jvp.result.to_string(),
            "(* (softmax X) (- (tan X) (rowsum (* (softmax X) (tan X)))))"
        );
        assert_eq!(vjp.phases.len(), 2);
        assert!(!vjp.explanation.is_empty() && vjp.explained);
    }

    #[test]
    fn matmul_jvp_and_vjp() {
        let ab = [("A", "h,m,n"), ("B", "h,n,p")];
        let jvp = derive_term("(bmm A B)", &ab, Mode::Jvp);
        let vjp = derive_term("(bmm A B)", &ab, Mode::Vjp);
        assert_eq!(
            jvp.result.to_string(),
            "(+ (bmm (tan A) B) (bmm A (tan B)))"
        );
        assert_eq!(
            vjp.result.to_string(),
            "(g+ (grad A (bmm G (T B))) (grad B (bmm (T A) G)))"
        );
    }

    #[test]
    fn no_explanation_is_kept_unless_asked_for() {
        let rules = RuleSet::embedded().unwrap();
        let shapes = [(Symbol::from("X"), parse_shape("h,m,n").unwrap())]
            .into_iter()
            .collect();
        let req = Request::new("(softmax X)", shapes, None, Mode::Vjp).unwrap();
        let d = derive_unchecked(&req, &rules, &Limits::default().unexplained()).unwrap();
        assert!(d.explanation.is_empty() && !d.explained);
    }

    #[test]
    fn the_schedule_finishes_a_term_one_run_could_not() {
        // One run with every rule took 27 s and 2.3 GB on this term.
        let d = derive_term(
            "(bmm (softmax (neg (+ C C))) A)",
            &[("A", "h,n,n"), ("C", "h,n,n")],
            Mode::Vjp,
        );
        assert!(residual(&d.result).is_none());
        assert!(d.egraph_nodes < 20_000, "{}", d.egraph_nodes);
    }
}
