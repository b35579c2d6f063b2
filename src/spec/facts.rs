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

/// `heads`/`unheads` are mutually inverse: `unheads (heads x) = x` and
/// `heads (unheads r) = r` (`r` given flattened, as a value of `Fin h → Vec n`).
pub fn heads_unheads_inverse<S: Scalar>(
    h: usize,
    n: usize,
    x: &[S],
    r: &[S],
) -> Result<bool, SpecError> {
    let r = blocks(h, n, r)?;
    Ok(unheads(h, n, &heads(h, n, x)?)? == x && heads(h, n, &unheads(h, n, &r)?)? == r)
}

/// `headsCLM` and `unheadsCLM` are each the adjoint of the other:
/// `⟨headsCLM x, r⟩ = ⟨x, unheadsCLM r⟩`, `headsCLM† = unheadsCLM` and
/// `unheadsCLM† = headsCLM` at the given points.
pub fn heads_clm_adjoint_unheads_clm<S: Scalar>(
    h: usize,
    n: usize,
    x: &[S],
    r: &[S],
) -> Result<bool, SpecError> {
    let hc = heads_clm::<S>(h, n)?;
    let uc = unheads_clm::<S>(h, n)?;
    Ok(inner(&hc.apply(x)?, r)? == inner(x, &uc.apply(r)?)?
        && hc.adjoint(r)? == uc.apply(r)?
        && uc.adjoint(x)? == hc.apply(x)?)
}

/// `inner_softmaxJvp_comm`: `⟨softmaxJvp x dx, δ⟩ = ⟨dx, softmaxJvp x δ⟩`.
pub fn inner_softmax_jvp_comm<S: Scalar>(
    x: &[S],
    dx: &[S],
    delta: &[S],
    oracle: &ExpOracle,
) -> Result<bool, SpecError> {
    Ok(inner(&softmax_jvp(x, dx, oracle)?, delta)? == inner(dx, &softmax_jvp(x, delta, oracle)?)?)
}

/// `softmaxJvp_eq_deriv`: `softmaxJvp x dx = softmaxDerivCLM x dx`.
pub fn softmax_jvp_eq_deriv<S: Scalar>(
    x: &[S],
    dx: &[S],
    oracle: &ExpOracle,
) -> Result<bool, SpecError> {
    Ok(softmax_jvp(x, dx, oracle)? == softmax_deriv(x, oracle)?.apply(dx)?)
}

/// `hasFDerivAt_softmaxVec`, exactly: the tangent of `softmaxVec (x + ε·dx)` equals
/// `softmaxDerivCLM x dx`.
pub fn has_fderiv_at_softmax_vec(
    x: &[Rational],
    dx: &[Rational],
    oracle: &ExpOracle,
) -> Result<bool, SpecError> {
    let out = softmax_vec(&duals(x, dx)?, oracle)?;
    Ok(tangents(&out) == softmax_deriv(x, oracle)?.apply(dx)?)
}

/// `SoftmaxLastAxis.jvpMN_eq_derivMN`: `jvpMN x dx = derivMN x dx`.
pub fn jvp_mn_eq_deriv_mn<S: Scalar>(
    m: usize,
    n: usize,
    x: &[S],
    dx: &[S],
    oracle: &ExpOracle,
) -> Result<bool, SpecError> {
    Ok(jvp_mn(m, n, x, dx, oracle)? == deriv_mn(m, n, x, oracle)?.apply(dx)?)
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
    Ok(
        inner(&jvp_mn(m, n, x, dx, oracle)?, delta)?
            == inner(dx, &jvp_mn(m, n, x, delta, oracle)?)?,
    )
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
    let out = forward_mn(m, n, &duals(x, dx)?, oracle)?;
    Ok(tangents(&out) == deriv_mn(m, n, x, oracle)?.apply(dx)?)
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
