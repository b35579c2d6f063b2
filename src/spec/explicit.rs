//! `Node.ofVec f jvp vjp` with a hand-written jvp and vjp
//! (`NN/Proofs/Autograd/Tape/Nodes/Context.lean`), as the shape nodes (`reshape`,
//! `swapFirstTwo3d`, `transpose3dLastTwo`), `scale` and the 2-D `matmul` are built.
//!
//! Unlike [`super::node::of_deriv`] (where jvp and vjp are read off a derivative), the
//! three maps here are independent closures, as in the Lean text; that they agree is
//! what the facts `correct_inner`, `jvp_eq`, vjp = adjoint and `hasFDerivAt` check.

use super::context::Context;
use super::error::SpecError;
use super::node::{ForwardFn, Node};
use super::shape::shape_size;
use super::vector::check_len;
use crate::scalar::Scalar;

/// A jvp `(x, dx) ↦ jvp x dx` or a vjp `(x, δ) ↦ vjp x δ` on context vectors.
pub type PairFn<S> = Box<dyn Fn(&[S], &[S]) -> Result<Vec<S>, SpecError>>;

/// `Node.ofVec f jvp vjp`: a node from its three maps.
pub struct ExplicitNode<S> {
    ctx: Context,
    out_shape: Vec<usize>,
    out_size: usize,
    f: ForwardFn<S>,
    jvp: PairFn<S>,
    vjp: PairFn<S>,
}

/// `Node.ofVec (Γ := ctx) (τ := out_shape) f jvp vjp`; an error if the output size
/// overflows.
pub fn of_vec<S: Scalar>(
    ctx: Context,
    out_shape: Vec<usize>,
    f: ForwardFn<S>,
    jvp: PairFn<S>,
    vjp: PairFn<S>,
) -> Result<ExplicitNode<S>, SpecError> {
    let out_size = shape_size(&out_shape)?;
    Ok(ExplicitNode {
        ctx,
        out_shape,
        out_size,
        f,
        jvp,
        vjp,
    })
}

impl<S: Scalar> ExplicitNode<S> {
    fn check_out(&self, what: &'static str, v: &[S]) -> Result<(), SpecError> {
        check_len(what, &self.out_shape, self.out_size, v.len())
    }
}

impl<S: Scalar> Node<S> for ExplicitNode<S> {
    fn context(&self) -> &Context {
        &self.ctx
    }
    fn out_shape(&self) -> &[usize] {
        &self.out_shape
    }
    fn forward(&self, x: &[S]) -> Result<Vec<S>, SpecError> {
        self.ctx.check(x)?;
        let y = (self.f)(x)?;
        self.check_out("node output", &y)?;
        Ok(y)
    }
    fn jvp(&self, x: &[S], dx: &[S]) -> Result<Vec<S>, SpecError> {
        self.ctx.check(x)?;
        self.ctx.check(dx)?;
        let dy = (self.jvp)(x, dx)?;
        self.check_out("node tangent", &dy)?;
        Ok(dy)
    }
    fn vjp(&self, x: &[S], delta: &[S]) -> Result<Vec<S>, SpecError> {
        self.ctx.check(x)?;
        self.check_out("node cotangent", delta)?;
        let dx = (self.vjp)(x, delta)?;
        self.ctx.check(&dx)?;
        Ok(dx)
    }
}
