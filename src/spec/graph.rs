//! Tape graphs on vectorized contexts: `Graph`, `Graph.evalVec`, `Graph.jvpVec`,
//! `Graph.backpropVec` (`NN/Proofs/Autograd/Tape/Core/FDeriv.lean`, the inductive `Graph`
//! of `.../Tape/Core/Soundness.lean`) and the bundled `DGraph` with `DGraph.nil` and
//! `DGraph.snoc` (`NN/Proofs/Autograd/Tape/Nodes/GraphComposition.lean`).
//!
//! A graph over inputs Γ with node outputs `ss` is its list of nodes; node `k` reads the
//! context `Γ ++ ss[..k]`. Lean's context casts (`castCtxVec` along `List.append_assoc`
//! / `append_nil`, `snocCtx`, `unsnocCtx`) are identities on the concatenated vectors, so
//! they are the slicing and extending below.

use super::context::{Context, Idx};
use super::error::SpecError;
use super::node::{Node, NodeFDerivCorrect};
use super::vector::{add, check_len};
use crate::scalar::Scalar;

/// `Graph Γ ss`: nodes appended in topological order, each reading every earlier value.
pub struct Graph<S> {
    inputs: Context,
    nodes: Vec<Box<dyn Node<S>>>,
    /// `Γ ++ ss`.
    full: Context,
}

impl<S: Scalar> Graph<S> {
    /// `Graph.nil : Graph Γ []`.
    pub fn nil(inputs: Context) -> Self {
        Graph {
            full: inputs.clone(),
            inputs,
            nodes: Vec::new(),
        }
    }

    /// `Graph.snoc g node : Graph Γ (ss ++ [τ])`; an error unless the node reads exactly
    /// the context `Γ ++ ss`.
    pub fn snoc(self, node: Box<dyn Node<S>>) -> Result<Self, SpecError> {
        if node.context() != &self.full {
            return Err(SpecError::ContextMismatch {
                expected: self.full.shapes().to_vec(),
                found: node.context().shapes().to_vec(),
            });
        }
        let mut shapes = self.full.shapes().to_vec();
        shapes.push(node.out_shape().to_vec());
        let full = Context::new(shapes)?;
        let mut nodes = self.nodes;
        nodes.push(node);
        Ok(Graph {
            inputs: self.inputs,
            nodes,
            full,
        })
    }

    /// The inputs Γ.
    pub fn inputs(&self) -> &Context {
        &self.inputs
    }

    /// The context `Γ ++ ss` that [`Graph::eval_vec`] returns.
    pub fn context(&self) -> &Context {
        &self.full
    }

    /// The nodes, in order.
    pub fn nodes(&self) -> &[Box<dyn Node<S>>] {
        &self.nodes
    }

    /// `Idx.last`: the index of the most recently appended value (the last input for
    /// `Graph.nil`); an error for an empty context.
    pub fn idx_last(&self) -> Result<Idx, SpecError> {
        let shapes = self.full.shapes();
        let last = shapes
            .len()
            .checked_sub(1)
            .ok_or(SpecError::IndexOutOfRange {
                position: 0,
                len: 0,
            })?;
        self.full.idx(last, &shapes[last])
    }

    /// `Graph.evalVec g x : CtxVec (Γ ++ ss)`: the inputs followed by every node output.
    pub fn eval_vec(&self, x: &[S]) -> Result<Vec<S>, SpecError> {
        self.inputs.check(x)?;
        let mut ctx = x.to_vec();
        for node in &self.nodes {
            let y = node.forward(&ctx)?;
            ctx.extend(y);
        }
        Ok(ctx)
    }

    /// `Graph.jvpVec g x dx : CtxVec (Γ ++ ss)`: tangents of the inputs and of every
    /// node output, in forward mode.
    pub fn jvp_vec(&self, x: &[S], dx: &[S]) -> Result<Vec<S>, SpecError> {
        self.inputs.check(x)?;
        self.inputs.check(dx)?;
        let (mut ctx, mut dctx) = (x.to_vec(), dx.to_vec());
        for node in &self.nodes {
            let dy = node.jvp(&ctx, &dctx)?;
            ctx.extend(node.forward(&ctx)?);
            dctx.extend(dy);
        }
        Ok(dctx)
    }

    /// `Graph.backpropVec g x seed : CtxVec Γ`, `seed : CtxVec (Γ ++ ss)`: for the last
    /// node, split the seed into `(seedPrev, seedOut)` (`unsnocCtx`), add the node's
    /// `vjpVec ctx seedOut` to `seedPrev`, and recurse on the prefix graph. The contexts
    /// `evalVec` of the prefixes are the prefixes of one `evalVec` of the whole graph.
    pub fn backprop_vec(&self, x: &[S], seed: &[S]) -> Result<Vec<S>, SpecError> {
        let ctx = self.eval_vec(x)?;
        let size = self.full.size();
        check_len("backpropVec seed", &[size], size, seed.len())?;
        let mut seed = seed.to_vec();
        for node in self.nodes.iter().rev() {
            let before = node.context().size();
            let contrib = node.vjp(&ctx[..before], &seed[before..])?;
            seed = add(&seed[..before], &contrib)?;
        }
        Ok(seed)
    }
}

/// `DGraph Γ ss`: a graph with one `NodeFDerivCorrect` per node (`GraphFDerivCorrect`).
pub struct DGraph<S> {
    g: Graph<S>,
    hg: Vec<NodeFDerivCorrect<S>>,
}

impl<S: Scalar> DGraph<S> {
    /// `DGraph.nil`.
    pub fn nil(inputs: Context) -> Self {
        DGraph {
            g: Graph::nil(inputs),
            hg: Vec::new(),
        }
    }

    /// `DGraph.snoc dg node hn`; an error unless the node reads the context `Γ ++ ss`.
    pub fn snoc(self, node: Box<dyn Node<S>>, hn: NodeFDerivCorrect<S>) -> Result<Self, SpecError> {
        let mut hg = self.hg;
        hg.push(hn);
        Ok(DGraph {
            g: self.g.snoc(node)?,
            hg,
        })
    }

    /// `dg.g`: the underlying graph.
    pub fn g(&self) -> &Graph<S> {
        &self.g
    }

    /// `dg.hg`: the `NodeFDerivCorrect` of every node, in order.
    pub fn hg(&self) -> &[NodeFDerivCorrect<S>] {
        &self.hg
    }

    /// The same graph with node `k` (and its derivative) replaced by another reading the
    /// same context and producing the same shape — to show that the checks in
    /// [`super::graph_facts`] reject a wrong node; an error otherwise.
    pub fn replace(
        self,
        k: usize,
        node: Box<dyn Node<S>>,
        hn: NodeFDerivCorrect<S>,
    ) -> Result<Self, SpecError> {
        let len = self.g.nodes.len();
        let old = self
            .g
            .nodes
            .get(k)
            .ok_or(SpecError::IndexOutOfRange { position: k, len })?;
        if old.out_shape() != node.out_shape() {
            return Err(SpecError::Incompatible {
                op: "DGraph.replace (output shape)",
                left: old.out_shape().to_vec(),
                right: node.out_shape().to_vec(),
            });
        }
        let (mut nodes, mut hg) = (self.g.nodes, self.hg);
        nodes[k] = node;
        hg[k] = hn;
        let mut dg = DGraph::nil(self.g.inputs);
        for (node, hn) in nodes.into_iter().zip(hg) {
            dg = dg.snoc(node, hn)?;
        }
        Ok(dg)
    }
}
