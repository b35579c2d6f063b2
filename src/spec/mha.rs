//! `MultiHeadAttention.mhaDGraph`
//! (`NN/Proofs/Autograd/Tape/Ops/Attention/MultiHeadSelfAttention.lean`), node for node,
//! and the PyTorch-layout block beside it (not a Lean declaration), with the calls the
//! rest of fderiv uses: [`mha_forward`], [`mha_jvp`], [`mha_backprop`].
//!
//! The graph computes `x Wq Wk Wv Wo ↦ concat_heads(softmax(c·(Q Kᵀ)) V) · Wo` with
//! `Q = x·Wq`, `K = x·Wk`, `V = x·Wv`. Its inputs `ΓMHA` are `[x : n×dModel, Wq, Wk, Wv
//! : dModel×(h·d), Wo : (h·d)×dModel]`. The two layouts differ only in how `Qbig : n×(h·d)`
//! (and `Kbig`, `Vbig`) is split into `h×n×d` heads:
//! - [`Layout::Lean`] (`mhaDGraph`): one `reshape`, i.e. the same row-major coordinates
//!   read with shape `h×n×d` (`heads[k][i][j] = Qbig.flat[k·n·d + i·d + j]`);
//! - [`Layout::PyTorch`] (`torch.nn.MultiheadAttention`): `view(n, h, d).transpose(0, 1)`,
//!   here `reshape` to `n×h×d` then `swapFirstTwo3d` (`heads[k][i][j] = Qbig[i][k·d + j]`).
//!
//! Both merge the heads back with `swapFirstTwo3d` then `reshape` (PyTorch's
//! `transpose(0, 1).contiguous().view(n, h·d)`). See `docs/mha-layout.md`.

use super::arithmetic::scale;
use super::batched::{matmul_node as bmatmul, softmax_last_node};
use super::context::{Context, Idx};
use super::error::SpecError;
use super::graph::DGraph;
use super::matrix_node::matmul;
use super::node::{Node, NodeFDerivCorrect};
use super::shape::mat_size;
use super::shape_ops::{reshape, swap_first_two3d, transpose3d_last_two};
use super::vector::zeros;
use crate::scalar::{ExpOracle, Scalar};

/// The sizes of one attention block: sequence length `n`, model width `d_model`,
/// `heads` (`numHeads`) of width `head_dim` (`headDim`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MhaDims {
    /// Sequence length `n`.
    pub n: usize,
    /// Model width `dModel`.
    pub d_model: usize,
    /// Number of heads `numHeads`.
    pub heads: usize,
    /// Head width `headDim`.
    pub head_dim: usize,
}

impl MhaDims {
    /// PyTorch's convention: `d_model = heads · head_dim`, all four weights
    /// `d_model×d_model`; an error naming both numbers unless `heads` is positive and
    /// divides `d_model`.
    pub fn square(n: usize, d_model: usize, heads: usize) -> Result<Self, SpecError> {
        if heads == 0 || !d_model.is_multiple_of(heads) {
            return Err(SpecError::Incompatible {
                op: "multi-head attention (heads must be positive and divide the model width)",
                left: vec![d_model],
                right: vec![heads],
            });
        }
        Ok(MhaDims {
            n,
            d_model,
            heads,
            head_dim: d_model / heads,
        })
    }

    /// `h·d`, the width of `Qbig`; an error if it overflows.
    pub fn width(&self) -> Result<usize, SpecError> {
        mat_size(self.heads, self.head_dim)
    }
}

/// `XShape n dModel = n×dModel`.
pub fn x_shape(d: &MhaDims) -> Vec<usize> {
    vec![d.n, d.d_model]
}

/// `BigShape n numHeads headDim = n×(numHeads·headDim)`.
pub fn big_shape(d: &MhaDims) -> Result<Vec<usize>, SpecError> {
    Ok(vec![d.n, d.width()?])
}

/// `HeadsShape n numHeads headDim = numHeads×n×headDim`.
pub fn heads_shape(d: &MhaDims) -> Vec<usize> {
    vec![d.heads, d.n, d.head_dim]
}

/// `KtShape n numHeads headDim = numHeads×headDim×n`.
pub fn kt_shape(d: &MhaDims) -> Vec<usize> {
    vec![d.heads, d.head_dim, d.n]
}

/// `ScoresShape n numHeads = numHeads×n×n`.
pub fn scores_shape(d: &MhaDims) -> Vec<usize> {
    vec![d.heads, d.n, d.n]
}

/// `SwappedShape n numHeads headDim = n×numHeads×headDim`.
pub fn swapped_shape(d: &MhaDims) -> Vec<usize> {
    vec![d.n, d.heads, d.head_dim]
}

/// `WqShape dModel numHeads headDim = dModel×(numHeads·headDim)` (also `Wk`, `Wv`).
pub fn wq_shape(d: &MhaDims) -> Result<Vec<usize>, SpecError> {
    Ok(vec![d.d_model, d.width()?])
}

/// `WoShape dModel numHeads headDim = (numHeads·headDim)×dModel`.
pub fn wo_shape(d: &MhaDims) -> Result<Vec<usize>, SpecError> {
    Ok(vec![d.width()?, d.d_model])
}

/// `ΓMHA n dModel numHeads headDim = [x, Wq, Wk, Wv, Wo]`; an error if a size overflows.
pub fn gamma_mha(d: &MhaDims) -> Result<Context, SpecError> {
    let w = wq_shape(d)?;
    Context::new(vec![x_shape(d), w.clone(), w.clone(), w, wo_shape(d)?])
}

/// `ssMHA`: the shapes of the fourteen node outputs of `mhaDGraph`, in order.
pub fn ss_mha(d: &MhaDims) -> Result<Vec<Vec<usize>>, SpecError> {
    let (big, hd, kt, sc) = (big_shape(d)?, heads_shape(d), kt_shape(d), scores_shape(d));
    Ok(vec![
        big.clone(),
        hd.clone(),
        big.clone(),
        hd.clone(),
        kt,
        big.clone(),
        hd.clone(),
        sc.clone(),
        sc.clone(),
        sc,
        hd,
        swapped_shape(d),
        big,
        x_shape(d),
    ])
}

/// How `Qbig`, `Kbig`, `Vbig` are split into heads (the merge is the same for both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `mhaDGraph`: `reshape` `n×(h·d) → h×n×d`.
    Lean,
    /// `torch.nn.MultiheadAttention`: `reshape` `n×(h·d) → n×h×d`, then
    /// `swapFirstTwo3d` `→ h×n×d`. Not a Lean declaration.
    PyTorch,
}

/// The positions of the inputs in `ΓMHA`: `idxX`, `idxWq`, `idxWk`, `idxWv`, `idxWo`.
const IDX_X: usize = 0;
const IDX_WQ: usize = 1;
const IDX_WK: usize = 2;
const IDX_WV: usize = 3;
const IDX_WO: usize = 4;

/// A `DGraph` under construction: each step reads its indices in the current context
/// and appends one node (`DGraph.snoc`).
struct Builder<'a, S> {
    dims: &'a MhaDims,
    dg: DGraph<S>,
}

impl<S: Scalar> Builder<'_, S> {
    fn ctx(&self) -> Context {
        self.dg.g().context().clone()
    }
    /// An index into the current context; `Idx.weaken` of an earlier index is the same
    /// position read in the longer context.
    fn idx(&self, position: usize, shape: &[usize]) -> Result<Idx, SpecError> {
        self.dg.g().context().idx(position, shape)
    }
    /// `idxLast`, returning its position.
    fn last(&self) -> Result<(usize, Idx), SpecError> {
        let i = self.dg.g().idx_last()?;
        Ok((i.position(), i))
    }
    fn push<N: Node<S> + 'static>(
        mut self,
        (node, hn): (N, NodeFDerivCorrect<S>),
    ) -> Result<Self, SpecError> {
        self.dg = self.dg.snoc(Box::new(node), hn)?;
        Ok(self)
    }
    /// `xBig := x * W` (2-D `matmul`, `matmulFderiv`).
    fn project(self, w: usize) -> Result<Self, SpecError> {
        let x = self.idx(IDX_X, &x_shape(self.dims))?;
        let w = self.idx(w, &wq_shape(self.dims)?)?;
        let pair = matmul(&self.ctx(), &x, &w)?;
        self.push(pair)
    }
    /// The head split of the last value, returning the position of the heads.
    fn split(self, layout: Layout) -> Result<(Self, usize), SpecError> {
        let (_, big) = self.last()?;
        let b = match layout {
            Layout::Lean => {
                let pair = reshape(&self.ctx(), &big, &heads_shape(self.dims))?;
                self.push(pair)?
            }
            Layout::PyTorch => {
                let pair = reshape(&self.ctx(), &big, &swapped_shape(self.dims))?;
                let b = self.push(pair)?;
                let (_, view) = b.last()?;
                let pair = swap_first_two3d(&b.ctx(), &view)?;
                b.push(pair)?
            }
        };
        let (pos, _) = b.last()?;
        Ok((b, pos))
    }
}

/// The graph of a layout ([`mha_dgraph`] or [`pytorch_mha_dgraph`]); `c` is the score
/// scale, `oracle` gives `exp` over exact scalars.
pub fn layout_dgraph<S: Scalar>(
    layout: Layout,
    dims: &MhaDims,
    c: &S,
    oracle: &ExpOracle,
) -> Result<DGraph<S>, SpecError> {
    let b = Builder {
        dims,
        dg: DGraph::nil(gamma_mha(dims)?),
    };
    let hd = heads_shape(dims);
    // 1) Qbig := x * Wq, 2) Qheads := split Qbig
    let (b, q_heads) = b.project(IDX_WQ)?.split(layout)?;
    // 3) Kbig := x * Wk, 4) Kheads := split Kbig, 5) Kᵀ := transpose3dLastTwo Kheads
    let (b, _) = b.project(IDX_WK)?.split(layout)?;
    let (_, k_heads) = b.last()?;
    let pair = transpose3d_last_two(&b.ctx(), &k_heads)?;
    let b = b.push(pair)?;
    let (kt, _) = b.last()?;
    // 6) Vbig := x * Wv, 7) Vheads := split Vbig
    let (b, v_heads) = b.project(IDX_WV)?.split(layout)?;
    // 8) scores := Qheads * Kᵀ (batched)
    let (q, k) = (b.idx(q_heads, &hd)?, b.idx(kt, &kt_shape(dims))?);
    let pair = bmatmul(&b.ctx(), &q, &k)?;
    let b = b.push(pair)?;
    // 9) scaled := scale scores c
    let (_, scores) = b.last()?;
    let pair = scale(&b.ctx(), &scores, c)?;
    let b = b.push(pair)?;
    // 10) probs := softmaxLast scaled
    let (_, scaled) = b.last()?;
    let pair = softmax_last_node(&b.ctx(), &scaled, oracle)?;
    let b = b.push(pair)?;
    // 11) headOut := probs * Vheads (batched)
    let (_, probs) = b.last()?;
    let v = b.idx(v_heads, &hd)?;
    let pair = bmatmul(&b.ctx(), &probs, &v)?;
    let b = b.push(pair)?;
    // 12) swapped := swapFirstTwo3d headOut, 13) concat := reshape swapped
    let (_, head_out) = b.last()?;
    let pair = swap_first_two3d(&b.ctx(), &head_out)?;
    let b = b.push(pair)?;
    let (_, swapped) = b.last()?;
    let pair = reshape(&b.ctx(), &swapped, &big_shape(dims)?)?;
    let b = b.push(pair)?;
    // 14) out := concat * Wo
    let (_, concat) = b.last()?;
    let wo = b.idx(IDX_WO, &wo_shape(dims)?)?;
    let pair = matmul(&b.ctx(), &concat, &wo)?;
    Ok(b.push(pair)?.dg)
}

/// `MultiHeadAttention.mhaDGraph c : DGraph (ΓMHA n dModel numHeads headDim) (ssMHA …)`,
/// its fourteen nodes in the Lean order (`matmul`, `reshape`, `matmul`, `reshape`,
/// `transpose3dLastTwo`, `matmul`, `reshape`, `Batched.matmul`, `scale`,
/// `Batched.softmaxLast`, `Batched.matmul`, `swapFirstTwo3d`, `reshape`, `matmul`).
pub fn mha_dgraph<S: Scalar>(
    dims: &MhaDims,
    c: &S,
    oracle: &ExpOracle,
) -> Result<DGraph<S>, SpecError> {
    layout_dgraph(Layout::Lean, dims, c, oracle)
}

/// The PyTorch-layout block — NOT a Lean declaration: `mhaDGraph` with each head split
/// `reshape` replaced by `reshape` to `n×h×d` then `swapFirstTwo3d`
/// (`view(n, h, d).transpose(0, 1)`); seventeen nodes, the same proved node kinds.
pub fn pytorch_mha_dgraph<S: Scalar>(
    dims: &MhaDims,
    c: &S,
    oracle: &ExpOracle,
) -> Result<DGraph<S>, SpecError> {
    layout_dgraph(Layout::PyTorch, dims, c, oracle)
}

/// The five inputs of the block, each row-major: `x : n×d_model`, `wq`, `wk`, `wv :
/// d_model×(h·d)`, `wo : (h·d)×d_model`. Also the type of their gradients or tangents.
#[derive(Debug, Clone, PartialEq)]
pub struct MhaInputs<S> {
    /// `x`.
    pub x: Vec<S>,
    /// `Wq`.
    pub wq: Vec<S>,
    /// `Wk`.
    pub wk: Vec<S>,
    /// `Wv`.
    pub wv: Vec<S>,
    /// `Wo`.
    pub wo: Vec<S>,
}

impl<S: Scalar> MhaInputs<S> {
    /// The context vector `[x, Wq, Wk, Wv, Wo]`, every length checked against `dims`.
    pub fn ctx_vec(&self, dims: &MhaDims) -> Result<Vec<S>, SpecError> {
        gamma_mha(dims)?.ctx_vec(&[
            self.x.clone(),
            self.wq.clone(),
            self.wk.clone(),
            self.wv.clone(),
            self.wo.clone(),
        ])
    }

    /// Splits a `CtxVec ΓMHA` (length checked) back into the five named blocks.
    pub fn from_ctx_vec(dims: &MhaDims, v: &[S]) -> Result<Self, SpecError> {
        let gamma = gamma_mha(dims)?;
        gamma.check(v)?;
        let blocks = gamma
            .shapes()
            .iter()
            .enumerate()
            .map(|(i, s)| gamma.idx(i, s)?.get(v))
            .collect::<Result<Vec<_>, _>>()?;
        let [x, wq, wk, wv, wo] =
            <[Vec<S>; 5]>::try_from(blocks).map_err(|b| SpecError::IndexOutOfRange {
                position: 5,
                len: b.len(),
            })?;
        Ok(MhaInputs { x, wq, wk, wv, wo })
    }
}

/// The block's output `n×d_model`: the last value of `Graph.evalVec`.
pub fn mha_forward<S: Scalar>(
    layout: Layout,
    dims: &MhaDims,
    inputs: &MhaInputs<S>,
    c: &S,
    oracle: &ExpOracle,
) -> Result<Vec<S>, SpecError> {
    let dg = layout_dgraph(layout, dims, c, oracle)?;
    let all = dg.g().eval_vec(&inputs.ctx_vec(dims)?)?;
    Ok(all[all.len() - dims.n * dims.d_model..].to_vec())
}

/// The output tangent for input tangents `tangents`: the last value of `Graph.jvpVec`.
pub fn mha_jvp<S: Scalar>(
    layout: Layout,
    dims: &MhaDims,
    inputs: &MhaInputs<S>,
    tangents: &MhaInputs<S>,
    c: &S,
    oracle: &ExpOracle,
) -> Result<Vec<S>, SpecError> {
    let dg = layout_dgraph(layout, dims, c, oracle)?;
    let x = inputs.ctx_vec(dims)?;
    let all = dg.g().jvp_vec(&x, &tangents.ctx_vec(dims)?)?;
    Ok(all[all.len() - dims.n * dims.d_model..].to_vec())
}

/// The gradients of `⟨out, g_out⟩` with respect to the five inputs: `Graph.backpropVec`
/// with the seed `g_out` on the output and zero on every other value of `Γ ++ ss`.
pub fn mha_backprop<S: Scalar>(
    layout: Layout,
    dims: &MhaDims,
    inputs: &MhaInputs<S>,
    g_out: &[S],
    c: &S,
    oracle: &ExpOracle,
) -> Result<MhaInputs<S>, SpecError> {
    let dg = layout_dgraph(layout, dims, c, oracle)?;
    let out = x_shape(dims);
    let size = dg.g().context().size();
    let before = size - dims.n * dims.d_model;
    super::vector::check_len("mha output cotangent", &out, size - before, g_out.len())?;
    let mut seed = zeros(before);
    seed.extend(g_out.iter().cloned());
    let grads = dg.g().backprop_vec(&inputs.ctx_vec(dims)?, &seed)?;
    MhaInputs::from_ctx_vec(dims, &grads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lean_graph_has_the_fourteen_ssmha_shapes() {
        let d = MhaDims {
            n: 2,
            d_model: 3,
            heads: 2,
            head_dim: 1,
        };
        let dg = mha_dgraph::<f64>(&d, &0.5, &ExpOracle::None).unwrap();
        let shapes = dg.g().context().shapes();
        assert_eq!(&shapes[..5], gamma_mha(&d).unwrap().shapes());
        assert_eq!(shapes[5..].to_vec(), ss_mha(&d).unwrap());
        let py = pytorch_mha_dgraph::<f64>(&d, &0.5, &ExpOracle::None).unwrap();
        assert_eq!(py.g().nodes().len(), 17);
    }

    #[test]
    fn heads_that_do_not_divide_the_width_are_an_error_naming_both() {
        let err = MhaDims::square(4, 6, 4).unwrap_err();
        assert!(err.to_string().contains("[6]") && err.to_string().contains("[4]"));
        assert!(MhaDims::square(4, 6, 0).is_err());
        assert_eq!(MhaDims::square(4, 6, 3).unwrap().head_dim, 2);
    }

    #[test]
    fn wrong_input_lengths_are_typed_errors() {
        let d = MhaDims::square(2, 2, 1).unwrap();
        let bad = MhaInputs {
            x: vec![0.0; 3],
            wq: vec![0.0; 4],
            wk: vec![0.0; 4],
            wv: vec![0.0; 4],
            wo: vec![0.0; 4],
        };
        let err = mha_forward(Layout::Lean, &d, &bad, &1.0, &ExpOracle::None).unwrap_err();
        assert!(matches!(err, SpecError::Length { found: 3, .. }), "{err}");
        let ok = MhaInputs {
            x: vec![0.0; 4],
            ..bad
        };
        let err = mha_backprop(Layout::Lean, &d, &ok, &[0.0; 3], &1.0, &ExpOracle::None);
        assert!(matches!(err, Err(SpecError::Length { found: 3, .. })));
    }
}
