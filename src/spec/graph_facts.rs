//! The graph theorems of `NN/Proofs/Autograd/Tape/Core/FDeriv.lean` (and their bundled
//! `DGraph` forms in `.../Nodes/GraphComposition.lean`) as exact checks, on the same
//! pattern as [`super::facts`]: each evaluates both sides at a given point and returns
//! whether they are equal. The Fréchet derivative of `evalVec` is made exact with dual
//! numbers: the tangent of `evalVec (x + ε·dx)` over `Dual<Rational>` is `D evalVec(x)
//! dx`; its adjoint at a seed is read by probing with every unit tangent.

use super::facts::{duals, has_fderiv_at, jvp_eq, tangents};
use super::graph::{DGraph, Graph};
use super::vector::{check_len, inner, zeros};
use crate::scalar::{Dual, Rational, Scalar};

/// `D evalVec(x) dx`, exactly: the tangent of the dual graph's `evalVec (x + ε·dx)`.
pub fn fderiv_eval_vec(
    dual: &Graph<Dual<Rational>>,
    x: &[Rational],
    dx: &[Rational],
) -> Result<Vec<Rational>, super::SpecError> {
    Ok(tangents(&dual.eval_vec(&duals(x, dx)?)?))
}

/// `(D evalVec(x))† seed`, exactly, by probing: entry `i` is `⟨seed, D evalVec(x) eᵢ⟩`
/// for the unit tangent `eᵢ` (one dual evaluation per input coordinate).
pub fn adjoint_by_probing(
    dual: &Graph<Dual<Rational>>,
    x: &[Rational],
    seed: &[Rational],
) -> Result<Vec<Rational>, super::SpecError> {
    let size = dual.context().size();
    check_len("graph seed", &[size], size, seed.len())?;
    (0..x.len())
        .map(|i| {
            let mut e = zeros::<Rational>(x.len());
            e[i] = Rational::one();
            inner(seed, &fderiv_eval_vec(dual, x, &e)?)
        })
        .collect()
}

/// `Graph.backprop_correct_inner`: `⟨jvpVec x dx, seed⟩ = ⟨dx, backpropVec x seed⟩`.
pub fn backprop_correct_inner<S: Scalar>(
    g: &Graph<S>,
    x: &[S],
    dx: &[S],
    seed: &[S],
) -> Result<bool, super::SpecError> {
    Ok(inner(&g.jvp_vec(x, dx)?, seed)? == inner(dx, &g.backprop_vec(x, seed)?)?)
}

/// `Graph.jvpVec_eq_fderiv`: `jvpVec x dx = fderiv evalVec x dx` (the right side by
/// dual numbers; `dual` is the same graph built over `Dual<Rational>`).
pub fn jvp_vec_eq_fderiv(
    dual: &Graph<Dual<Rational>>,
    g: &Graph<Rational>,
    x: &[Rational],
    dx: &[Rational],
) -> Result<bool, super::SpecError> {
    Ok(g.jvp_vec(x, dx)? == fderiv_eval_vec(dual, x, dx)?)
}

/// `DGraph.backpropVec_eq_adjoint_fderiv` (and `mha_backpropVec_eq_adjoint_fderiv`) in
/// direction `dx`: `⟨backpropVec x seed, dx⟩ = ⟨seed, fderiv evalVec x dx⟩`.
pub fn backprop_vec_eq_adjoint_fderiv(
    dual: &Graph<Dual<Rational>>,
    g: &Graph<Rational>,
    x: &[Rational],
    dx: &[Rational],
    seed: &[Rational],
) -> Result<bool, super::SpecError> {
    Ok(inner(&g.backprop_vec(x, seed)?, dx)? == inner(seed, &fderiv_eval_vec(dual, x, dx)?)?)
}

/// `DGraph.backpropVec_eq_adjoint_fderiv` as an equality of vectors:
/// `backpropVec x seed = (fderiv evalVec x)† seed`, the adjoint by probing.
pub fn backprop_vec_eq_adjoint_by_probing(
    dual: &Graph<Dual<Rational>>,
    g: &Graph<Rational>,
    x: &[Rational],
    seed: &[Rational],
) -> Result<bool, super::SpecError> {
    Ok(g.backprop_vec(x, seed)? == adjoint_by_probing(dual, x, seed)?)
}

/// `GraphFDerivCorrectAt g x` along `dx`: every node's `jvp_eq` and `hasFDerivAt` hold at
/// the values the graph actually computes (node `k` at the prefix of `evalVec x`, with
/// the prefix of `jvpVec x dx` as its tangent).
pub fn graph_fderiv_correct_at(
    dual: &DGraph<Dual<Rational>>,
    dg: &DGraph<Rational>,
    x: &[Rational],
    dx: &[Rational],
) -> Result<bool, super::SpecError> {
    let (ctx, dctx) = (dg.g().eval_vec(x)?, dg.g().jvp_vec(x, dx)?);
    let nodes = dg.g().nodes().iter().zip(dg.hg()).zip(dual.g().nodes());
    for ((node, hn), dual_node) in nodes {
        let before = node.context().size();
        let (c, dc) = (&ctx[..before], &dctx[..before]);
        if !(jvp_eq(&**node, hn, c, dc)? && has_fderiv_at(&**dual_node, &**node, c, dc)?) {
            return Ok(false);
        }
    }
    Ok(true)
}
