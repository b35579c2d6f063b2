//! A deterministic generator of check cases (ChaCha8, seeded): small rational values
//! `p/q`, shapes with dims in `0..=MAX_DIM` (the first cases of each kind enumerate
//! every combination of dims 0 and 1), contexts with extra unrelated inputs in random
//! positions, and matmuls whose two operands are the same input (`A·A`).

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::batched::{matmul_node, softmax_last_node};
use super::context::{Context, Idx};
use super::error::SpecError;
use super::node::{Node, NodeFDerivCorrect, OfVec};
use super::shape::shape_size;
use crate::scalar::{ExpOracle, Rational, Scalar};

/// The largest dim drawn.
pub const MAX_DIM: usize = 3;

/// Which `Batched` node a case exercises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// `Batched.matmul A B` (`a == b` for `A·A`).
    Matmul {
        /// The left operand, `h×m×n`.
        a: Idx,
        /// The right operand, `h×n×p`.
        b: Idx,
    },
    /// `Batched.softmaxLast idx`.
    SoftmaxLast {
        /// The input, `h×m×n`.
        idx: Idx,
    },
}

impl NodeKind {
    /// Builds the node and its `NodeFDerivCorrect` over the scalar `S`.
    pub fn build<S: Scalar>(
        &self,
        ctx: &Context,
        oracle: &ExpOracle,
    ) -> Result<(OfVec<S>, NodeFDerivCorrect<S>), SpecError> {
        match self {
            NodeKind::Matmul { a, b } => matmul_node(ctx, a, b),
            NodeKind::SoftmaxLast { idx } => softmax_last_node(ctx, idx, oracle),
        }
    }
}

/// A node (boxed) with its `NodeFDerivCorrect`.
pub type BoxedNode<S> = (Box<dyn Node<S>>, NodeFDerivCorrect<S>);

/// A node kind a case can build over any scalar, with its `NodeFDerivCorrect`.
pub trait BuildNode {
    /// Builds the node (boxed) and its derivative over the scalar `S`.
    fn build_node<S: Scalar>(
        &self,
        ctx: &Context,
        oracle: &ExpOracle,
    ) -> Result<BoxedNode<S>, SpecError>;
}

impl BuildNode for NodeKind {
    fn build_node<S: Scalar>(
        &self,
        ctx: &Context,
        oracle: &ExpOracle,
    ) -> Result<BoxedNode<S>, SpecError> {
        let (node, fd) = self.build(ctx, oracle)?;
        Ok((Box::new(node), fd))
    }
}

/// One node check: a context, the node, a point `x`, a tangent `dx` and a cotangent `δ`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeCase<K = NodeKind> {
    /// The context Γ.
    pub ctx: Context,
    /// The node.
    pub kind: K,
    /// The point (a `CtxVec Γ`).
    pub x: Vec<Rational>,
    /// The tangent (a `CtxVec Γ`).
    pub dx: Vec<Rational>,
    /// The output cotangent.
    pub delta: Vec<Rational>,
}

/// A context slot: `Some(i)` for the `i`-th needed input, `None` for an unrelated one.
pub type Slot = (Option<usize>, Vec<usize>);

/// The needed shapes (tagged with their order) followed by the extra ones.
pub fn slots(needed: &[Vec<usize>], extras: Vec<Vec<usize>>) -> Vec<Slot> {
    let tagged = needed
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, s)| (Some(i), s));
    tagged
        .chain(extras.into_iter().map(|s| (None, s)))
        .collect()
}

/// The context of these slots (in this order) and the positions of the needed inputs.
pub fn context_from_slots(slots: Vec<Slot>) -> Result<(Context, Vec<usize>), SpecError> {
    let mut positions = vec![0; slots.iter().filter(|s| s.0.is_some()).count()];
    for (pos, (which, _)) in slots.iter().enumerate() {
        if let Some(i) = *which {
            if let Some(p) = positions.get_mut(i) {
                *p = pos;
            }
        }
    }
    let ctx = Context::new(slots.into_iter().map(|(_, s)| s).collect())?;
    Ok((ctx, positions))
}

/// The seeded case generator.
pub struct CaseGen {
    pub(super) rng: ChaCha8Rng,
    /// How many cases of each kind were drawn (the first ones enumerate dims 0 and 1).
    drawn: std::collections::BTreeMap<&'static str, usize>,
}

impl CaseGen {
    /// A generator; the same seed gives the same cases.
    pub fn new(seed: u64) -> Self {
        CaseGen {
            rng: ChaCha8Rng::seed_from_u64(seed),
            drawn: Default::default(),
        }
    }

    /// A small rational `p/q` with `|p| ≤ 5`, `1 ≤ q ≤ 4`.
    pub fn rational(&mut self) -> Rational {
        let p: i64 = self.rng.gen_range(-5..=5);
        let q: i64 = self.rng.gen_range(1..=4);
        Rational::new(p.into(), q.into())
    }

    /// A vector of `n` small rationals.
    pub fn vector(&mut self, n: usize) -> Vec<Rational> {
        (0..n).map(|_| self.rational()).collect()
    }

    /// A dim in `0..=MAX_DIM`.
    pub fn dim(&mut self) -> usize {
        self.rng.gen_range(0..=MAX_DIM)
    }

    /// `K` dims for the next case of `kind`: the bits of the number of `kind` cases
    /// drawn so far while it is below `2^K` (so the first cases cover every combination
    /// of 0 and 1), random dims in `0..=max` afterwards.
    pub(super) fn dims<const K: usize>(&mut self, kind: &'static str, max: usize) -> [usize; K] {
        let counter = *self.drawn.entry(kind).or_default();
        self.drawn.insert(kind, counter + 1);
        let mut out = [0; K];
        for (bit, d) in out.iter_mut().enumerate() {
            *d = if counter < 1 << K {
                (counter >> bit) & 1
            } else {
                self.rng.gen_range(0..=max)
            };
        }
        out
    }

    /// A shape of rank `0..=3` for an unrelated input.
    fn extra_shape(&mut self) -> Vec<usize> {
        let rank = self.rng.gen_range(0..=3);
        (0..rank).map(|_| self.dim()).collect()
    }

    /// A context holding `needed` (in order of the returned positions) among 0–2 extra
    /// inputs, in a random order.
    pub(super) fn context_with(
        &mut self,
        needed: &[Vec<usize>],
    ) -> Result<(Context, Vec<usize>), SpecError> {
        let extras: Vec<Vec<usize>> = (0..self.rng.gen_range(0..=2))
            .map(|_| self.extra_shape())
            .collect();
        let mut slots = slots(needed, extras);
        slots.shuffle(&mut self.rng);
        context_from_slots(slots)
    }

    pub(super) fn node_case<K>(
        &mut self,
        ctx: Context,
        kind: K,
        out_shape: &[usize],
    ) -> Result<NodeCase<K>, SpecError> {
        let x = self.vector(ctx.size());
        let dx = self.vector(ctx.size());
        let delta = self.vector(shape_size(out_shape)?);
        Ok(NodeCase {
            ctx,
            kind,
            x,
            dx,
            delta,
        })
    }

    /// A batched-matmul case; about a third are `A·A` (`m = n = p`, one input).
    pub fn matmul_case(&mut self) -> Result<NodeCase, SpecError> {
        let [h, m, n, p] = self.dims::<4>("matmul", MAX_DIM);
        if self.rng.gen_bool(1.0 / 3.0) {
            let shape = vec![h, n, n];
            let (ctx, pos) = self.context_with(std::slice::from_ref(&shape))?;
            let a = ctx.idx(pos[0], &shape)?;
            let kind = NodeKind::Matmul { a: a.clone(), b: a };
            return self.node_case(ctx, kind, &shape);
        }
        let (sa, sb) = (vec![h, m, n], vec![h, n, p]);
        let (ctx, pos) = self.context_with(&[sa.clone(), sb.clone()])?;
        let kind = NodeKind::Matmul {
            a: ctx.idx(pos[0], &sa)?,
            b: ctx.idx(pos[1], &sb)?,
        };
        self.node_case(ctx, kind, &[h, m, p])
    }

    /// A batched softmax-last case.
    pub fn softmax_last_case(&mut self) -> Result<NodeCase, SpecError> {
        let shape = self.dims::<3>("softmaxLast", MAX_DIM).to_vec();
        let (ctx, pos) = self.context_with(std::slice::from_ref(&shape))?;
        let kind = NodeKind::SoftmaxLast {
            idx: ctx.idx(pos[0], &shape)?,
        };
        self.node_case(ctx, kind, &shape)
    }
}
