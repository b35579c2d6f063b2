//! The facts the Lean module proves, as exact checks.
//!
//! Each function evaluates both sides of one Lean statement at the given point and
//! returns whether they are equal (over [`Rational`] the comparison is exact). They
//! take the objects to check as arguments, so a wrong vjp, jvp or derivative fed to
//! them is rejected. `hasFDerivAt` is made exact with forward-mode dual numbers over ℚ:
//! the tangent of `forward(x + ε·dx)` is the directional derivative, and must equal the
//! jvp bit for bit (with `exp` from an oracle obeying `exp' = exp`).

use super::bilinear::Bilinear;
use super::clm::Clm;
use super::error::SpecError;
use super::heads::{blocks, heads, heads_clm, unheads, unheads_clm};
use super::node::{Node, NodeFDerivCorrect};
use super::softmax_last_axis::{deriv_mn, forward_mn, jvp_mn};
use super::softmax_vec::{softmax_deriv, softmax_jvp, softmax_vec};
use super::vector::{add, check_len, inner, scale};
use crate::scalar::{Dual, ExpOracle, Rational, Scalar};

/// `x + ε·dx` as dual numbers.
pub fn duals(x: &[Rational], dx: &[Rational]) -> Result<Vec<Dual<Rational>>, SpecError> {
    check_len("dual tangent", &[x.len()], x.len(), dx.len())?;
    Ok(x.iter()
        .zip(dx)
        .map(|(v, t)| Dual::new(v.clone(), t.clone()))
        .collect())
}

/// The tangent parts of a dual vector.
pub fn tangents(v: &[Dual<Rational>]) -> Vec<Rational> {
    v.iter().map(|d| d.tangent.clone()).collect()
}

/// `Node.correct_inner`: `⟨vjp x δ, dx⟩ = ⟨δ, jvp x dx⟩`.
pub fn correct_inner<S: Scalar>(
    node: &dyn Node<S>,
    x: &[S],
    dx: &[S],
    delta: &[S],
) -> Result<bool, SpecError> {
    Ok(inner(&node.vjp(x, delta)?, dx)? == inner(delta, &node.jvp(x, dx)?)?)
}

/// `NodeFDerivCorrect.jvp_eq`: `jvp x dx = deriv x dx`.
pub fn jvp_eq<S: Scalar>(
    node: &dyn Node<S>,
    fd: &NodeFDerivCorrect<S>,
    x: &[S],
    dx: &[S],
) -> Result<bool, SpecError> {
    Ok(node.jvp(x, dx)? == fd.deriv(x)?.apply(dx)?)
}

/// The nodes' `vjp := (deriv x).adjoint δ`: `vjp x δ = (deriv x)† δ`.
pub fn vjp_eq_adjoint<S: Scalar>(
    node: &dyn Node<S>,
    fd: &NodeFDerivCorrect<S>,
    x: &[S],
    delta: &[S],
) -> Result<bool, SpecError> {
    Ok(node.vjp(x, delta)? == fd.deriv(x)?.adjoint(delta)?)
}

/// `NodeFDerivCorrect.hasFDerivAt`, exactly: the tangent of `dual_node.forward(x + ε·dx)`
/// equals `node.jvp x dx` (`dual_node` is the same node built over dual numbers).
pub fn has_fderiv_at(
    dual_node: &dyn Node<Dual<Rational>>,
    node: &dyn Node<Rational>,
    x: &[Rational],
    dx: &[Rational],
) -> Result<bool, SpecError> {
    let out = dual_node.forward(&duals(x, dx)?)?;
    Ok(tangents(&out) == node.jvp(x, dx)?)
}

/// The adjoint identity of a linear map: `⟨L x, δ⟩ = ⟨x, L† δ⟩`.
pub fn clm_adjoint_identity<S: Scalar>(
    map: &dyn Clm<S>,
    x: &[S],
    delta: &[S],
) -> Result<bool, SpecError> {
    Ok(inner(&map.apply(x)?, delta)? == inner(x, &map.adjoint(delta)?)?)
}

/// A vector map, as the general checks take them.
pub type VecMap<'a, S> = &'a dyn Fn(&[S]) -> Result<Vec<S>, SpecError>;

/// `f (g r) = r` and `g (f x) = x`.
pub fn mutually_inverse<S: Scalar>(
    f: VecMap<'_, S>,
    g: VecMap<'_, S>,
    x: &[S],
    r: &[S],
) -> Result<bool, SpecError> {
    Ok(g(&f(x)?)? == x && f(&g(r)?)? == r)
}

/// `⟨f x, r⟩ = ⟨x, g r⟩`, `f† = g` at `r` and `g† = f` at `x`.
pub fn mutually_adjoint<S: Scalar>(
    f: &dyn Clm<S>,
    g: &dyn Clm<S>,
    x: &[S],
    r: &[S],
) -> Result<bool, SpecError> {
    Ok(inner(&f.apply(x)?, r)? == inner(x, &g.apply(r)?)?
        && f.adjoint(r)? == g.apply(r)?
        && g.adjoint(x)? == f.apply(x)?)
}

/// Symmetry of a linear map `J`: `⟨J dx, δ⟩ = ⟨dx, J δ⟩`.
pub fn symmetric<S: Scalar>(j: VecMap<'_, S>, dx: &[S], delta: &[S]) -> Result<bool, SpecError> {
    Ok(inner(&j(dx)?, delta)? == inner(dx, &j(delta)?)?)
}

/// A closed-form jvp agrees with a derivative: `jvp dx = deriv dx`.
pub fn agrees<S: Scalar>(
    jvp: VecMap<'_, S>,
    deriv: &dyn Clm<S>,
    dx: &[S],
) -> Result<bool, SpecError> {
    Ok(jvp(dx)? == deriv.apply(dx)?)
}

/// `HasFDerivAt f D x`, exactly: the tangent of `f (x + ε·dx)` (f over dual numbers)
/// equals `D dx`.
pub fn tangent_matches(
    f: VecMap<'_, Dual<Rational>>,
    deriv: &dyn Clm<Rational>,
    x: &[Rational],
    dx: &[Rational],
) -> Result<bool, SpecError> {
    Ok(tangents(&f(&duals(x, dx)?)?) == deriv.apply(dx)?)
}

/// `heads`/`unheads` are mutually inverse: `unheads (heads x) = x` and
/// `heads (unheads r) = r` (both flattened).
pub fn heads_unheads_inverse<S: Scalar>(
    h: usize,
    n: usize,
    x: &[S],
    r: &[S],
) -> Result<bool, SpecError> {
    let f = |v: &[S]| Ok(heads(h, n, v)?.concat());
    let g = |v: &[S]| unheads(h, n, &blocks(h, n, v)?);
    mutually_inverse(&f, &g, x, r)
}

/// `headsCLM` and `unheadsCLM` are each the adjoint of the other.
pub fn heads_clm_adjoint_unheads_clm<S: Scalar>(
    h: usize,
    n: usize,
    x: &[S],
    r: &[S],
) -> Result<bool, SpecError> {
    mutually_adjoint(&*heads_clm(h, n)?, &*unheads_clm(h, n)?, x, r)
}

/// `inner_softmaxJvp_comm`: `⟨softmaxJvp x dx, δ⟩ = ⟨dx, softmaxJvp x δ⟩`.
pub fn inner_softmax_jvp_comm<S: Scalar>(
    x: &[S],
    dx: &[S],
    delta: &[S],
    oracle: &ExpOracle,
) -> Result<bool, SpecError> {
    symmetric(&|v: &[S]| softmax_jvp(x, v, oracle), dx, delta)
}

/// `softmaxJvp_eq_deriv`: `softmaxJvp x dx = softmaxDerivCLM x dx`.
pub fn softmax_jvp_eq_deriv<S: Scalar>(
    x: &[S],
    dx: &[S],
    oracle: &ExpOracle,
) -> Result<bool, SpecError> {
    agrees(
        &|v: &[S]| softmax_jvp(x, v, oracle),
        &*softmax_deriv(x, oracle)?,
        dx,
    )
}

/// `hasFDerivAt_softmaxVec`, exactly: the tangent of `softmaxVec (x + ε·dx)` equals
/// `softmaxDerivCLM x dx`.
pub fn has_fderiv_at_softmax_vec(
    x: &[Rational],
    dx: &[Rational],
    oracle: &ExpOracle,
) -> Result<bool, SpecError> {
    tangent_matches(
        &|v: &[Dual<Rational>]| softmax_vec(v, oracle),
        &*softmax_deriv(x, oracle)?,
        x,
        dx,
    )
}

/// `SoftmaxLastAxis.jvpMN_eq_derivMN`: `jvpMN x dx = derivMN x dx`.
pub fn jvp_mn_eq_deriv_mn<S: Scalar>(
    m: usize,
    n: usize,
    x: &[S],
    dx: &[S],
    oracle: &ExpOracle,
) -> Result<bool, SpecError> {
    agrees(
        &|v: &[S]| jvp_mn(m, n, x, v, oracle),
        &*deriv_mn(m, n, x, oracle)?,
        dx,
    )
}

/// `SoftmaxLastAxis.inner_jvpMN_comm`: `⟨jvpMN x dx, δ⟩ = ⟨dx, jvpMN x δ⟩`.
pub fn inner_jvp_mn_comm<S: Scalar>(
    m: usize,
    n: usize,
    x: &[S],
    dx: &[S],
    delta: &[S],
    oracle: &ExpOracle,
) -> Result<bool, SpecError> {
    symmetric(&|v: &[S]| jvp_mn(m, n, x, v, oracle), dx, delta)
}

/// `SoftmaxLastAxis.hasFDerivAt_forwardMN`, exactly: the tangent of
/// `forwardMN (x + ε·dx)` equals `derivMN x dx`.
pub fn has_fderiv_at_forward_mn(
    m: usize,
    n: usize,
    x: &[Rational],
    dx: &[Rational],
    oracle: &ExpOracle,
) -> Result<bool, SpecError> {
    tangent_matches(
        &|v: &[Dual<Rational>]| forward_mn(m, n, v, oracle),
        &*deriv_mn(m, n, x, oracle)?,
        x,
        dx,
    )
}

/// `Batched.size3_eq`, re-exported here with the other facts.
pub use super::shape::size3_eq;

/// Bilinearity of `bil` (the `map_add'`/`map_smul'` obligations of `matmulBilin`):
/// `B(a₁+a₂, b₁) = B(a₁,b₁) + B(a₂,b₁)`, `B(c·a₁, b₁) = c·B(a₁,b₁)`,
/// `B(a₁, b₁+b₂) = B(a₁,b₁) + B(a₁,b₂)`, `B(a₁, c·b₁) = c·B(a₁,b₁)`.
pub fn bilinear<S: Scalar>(
    bil: &dyn Bilinear<S>,
    a: [&[S]; 2],
    b: [&[S]; 2],
    c: &S,
) -> Result<bool, SpecError> {
    let [a1, a2] = a;
    let [b1, b2] = b;
    let ab = bil.apply(a1, b1)?;
    Ok(
        bil.apply(&add(a1, a2)?, b1)? == add(&ab, &bil.apply(a2, b1)?)?
            && bil.apply(&scale(c, a1), b1)? == scale(c, &ab)
            && bil.apply(a1, &add(b1, b2)?)? == add(&ab, &bil.apply(a1, b2)?)?
            && bil.apply(a1, &scale(c, b1))? == scale(c, &ab),
    )
}
