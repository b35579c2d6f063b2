//! Check cases for the nodes of the attention graph (`reshape`, `swapFirstTwo3d`,
//! `transpose3dLastTwo`, `scale`, the 2-D `matmul`) and for the whole MHA graph, drawn
//! by the seeded [`CaseGen`] like the `Batched` cases: dims from 0, the first cases of
//! each kind enumerating every combination of 0 and 1, contexts with unrelated extra
//! inputs, and `A·A` for the 2-D matmul.

use rand::Rng;

use super::arithmetic::scale;
use super::cases::{BoxedNode, BuildNode, CaseGen, NodeCase, MAX_DIM};
use super::context::{Context, Idx};
use super::error::SpecError;
use super::matrix_node::matmul;
use super::mha::{gamma_mha, layout_dgraph, Layout, MhaDims};
use super::shape_ops::{reshape, swap_first_two3d, transpose3d_last_two};
use crate::scalar::{ExpOracle, Rational, Scalar};

/// The largest dim drawn for an MHA case (its probing check evaluates the graph once
/// per input coordinate).
pub const MHA_MAX_DIM: usize = 2;

/// Which attention-graph node a case exercises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphNodeKind {
    /// `ShapeOps.reshape idx h` to the shape `to`.
    Reshape {
        /// The input.
        idx: Idx,
        /// The output shape (same size).
        to: Vec<usize>,
    },
    /// `ShapeOps.swapFirstTwo3d idx`.
    SwapFirstTwo3d {
        /// The input, `m×n×rest`.
        idx: Idx,
    },
    /// `ShapeOps.transpose3dLastTwo idx`.
    Transpose3dLastTwo {
        /// The input, `a×b×c`.
        idx: Idx,
    },
    /// `TapeNodes.scale idx c`.
    Scale {
        /// The input.
        idx: Idx,
        /// The constant.
        c: Rational,
    },
    /// `TapeNodes.matmul A B` (2-D; `a == b` for `A·A`).
    Matmul {
        /// The left operand, `m×n`.
        a: Idx,
        /// The right operand, `n×p`.
        b: Idx,
    },
}

impl BuildNode for GraphNodeKind {
    fn build_node<S: Scalar>(
        &self,
        ctx: &Context,
        _oracle: &ExpOracle,
    ) -> Result<BoxedNode<S>, SpecError> {
        let (node, fd) = match self {
            GraphNodeKind::Reshape { idx, to } => reshape(ctx, idx, to)?,
            GraphNodeKind::SwapFirstTwo3d { idx } => swap_first_two3d(ctx, idx)?,
            GraphNodeKind::Transpose3dLastTwo { idx } => transpose3d_last_two(ctx, idx)?,
            GraphNodeKind::Scale { idx, c } => scale(ctx, idx, &S::from_rational(c))?,
            GraphNodeKind::Matmul { a, b } => matmul(ctx, a, b)?,
        };
        Ok((Box::new(node), fd))
    }
}

/// One whole-graph check of the MHA block in a layout: a point `x` (a `CtxVec ΓMHA`), a
/// tangent `dx` and a seed for all of `Γ ++ ss`.
#[derive(Debug, Clone, PartialEq)]
pub struct MhaCase {
    /// The sizes.
    pub dims: MhaDims,
    /// The score scale `c`.
    pub c: Rational,
    /// The point.
    pub x: Vec<Rational>,
    /// The tangent.
    pub dx: Vec<Rational>,
    /// The cotangent of every value (`CtxVec (Γ ++ ss)`) for the Lean layout.
    pub seed: Vec<Rational>,
    /// The same for the PyTorch layout (more values).
    pub pytorch_seed: Vec<Rational>,
}

impl CaseGen {
    /// A case of one input of shape `shape` among unrelated inputs.
    fn one_input(
        &mut self,
        shape: Vec<usize>,
        kind: impl FnOnce(Idx) -> GraphNodeKind,
        out: &[usize],
    ) -> Result<NodeCase<GraphNodeKind>, SpecError> {
        let (ctx, pos) = self.context_with(std::slice::from_ref(&shape))?;
        let kind = kind(ctx.idx(pos[0], &shape)?);
        self.node_case(ctx, kind, out)
    }

    /// A `reshape` case `h×m×n → m×(h·n)` or `→ (h·m·n)` (a rank change either way).
    pub fn reshape_case(&mut self) -> Result<NodeCase<GraphNodeKind>, SpecError> {
        let [h, m, n] = self.dims::<3>("reshape", MAX_DIM);
        let to = if self.rng.gen_bool(0.5) {
            vec![m, h * n]
        } else {
            vec![h * m * n]
        };
        let out = to.clone();
        self.one_input(
            vec![h, m, n],
            |idx| GraphNodeKind::Reshape { idx, to },
            &out,
        )
    }

    /// A `swapFirstTwo3d` case `m×n×k → n×m×k`.
    pub fn swap_first_two3d_case(&mut self) -> Result<NodeCase<GraphNodeKind>, SpecError> {
        let [m, n, k] = self.dims::<3>("swapFirstTwo3d", MAX_DIM);
        let f = |idx| GraphNodeKind::SwapFirstTwo3d { idx };
        self.one_input(vec![m, n, k], f, &[n, m, k])
    }

    /// A `transpose3dLastTwo` case `a×b×c → a×c×b`.
    pub fn transpose3d_last_two_case(&mut self) -> Result<NodeCase<GraphNodeKind>, SpecError> {
        let [a, b, c] = self.dims::<3>("transpose3dLastTwo", MAX_DIM);
        let f = |idx| GraphNodeKind::Transpose3dLastTwo { idx };
        self.one_input(vec![a, b, c], f, &[a, c, b])
    }

    /// A `scale` case on an `h×m×n` input.
    pub fn scale_case(&mut self) -> Result<NodeCase<GraphNodeKind>, SpecError> {
        let shape = self.dims::<3>("scale", MAX_DIM).to_vec();
        let c = self.rational();
        let out = shape.clone();
        self.one_input(shape, |idx| GraphNodeKind::Scale { idx, c }, &out)
    }

    /// A 2-D matmul case; about a third are `A·A` (`m = n = p`, one input).
    pub fn matmul2d_case(&mut self) -> Result<NodeCase<GraphNodeKind>, SpecError> {
        let [m, n, p] = self.dims::<3>("Matrix.matmul", MAX_DIM);
        if self.rng.gen_bool(1.0 / 3.0) {
            let f = |a: Idx| GraphNodeKind::Matmul { b: a.clone(), a };
            return self.one_input(vec![n, n], f, &[n, n]);
        }
        let (sa, sb) = (vec![m, n], vec![n, p]);
        let (ctx, pos) = self.context_with(&[sa.clone(), sb.clone()])?;
        let kind = GraphNodeKind::Matmul {
            a: ctx.idx(pos[0], &sa)?,
            b: ctx.idx(pos[1], &sb)?,
        };
        self.node_case(ctx, kind, &[m, p])
    }

    /// An MHA case: dims `(n, d_model, heads, head_dim)` in `0..=MHA_MAX_DIM`.
    pub fn mha_case(&mut self) -> Result<MhaCase, SpecError> {
        let [n, d_model, heads, head_dim] = self.dims::<4>("mha", MHA_MAX_DIM);
        let dims = MhaDims {
            n,
            d_model,
            heads,
            head_dim,
        };
        let size = gamma_mha(&dims)?.size();
        let seed_len = |layout| -> Result<usize, SpecError> {
            let dg =
                layout_dgraph::<Rational>(layout, &dims, &Rational::from_i64(1), &ExpOracle::None)?;
            Ok(dg.g().context().size())
        };
        let (lean, pytorch) = (seed_len(Layout::Lean)?, seed_len(Layout::PyTorch)?);
        Ok(MhaCase {
            dims,
            c: self.rational(),
            x: self.vector(size),
            dx: self.vector(size),
            seed: self.vector(lean),
            pytorch_seed: self.vector(pytorch),
        })
    }
}
