//! The facts TorchLean proves about the nodes of multi-head attention
//! (`Tape/Nodes/Shape.lean`, `Arithmetic.lean`, `Matrix.lean`) and about the graph
//! `mhaDGraph` (`mha_backpropVec_eq_adjoint_fderiv`, via `DGraph.backpropVec_eq_adjoint_fderiv`
//! and `Graph.jvpVec_eq_fderiv`), checked exactly over ℚ on random shapes with every
//! dim from 0 (the first cases of each kind enumerate dims 0 and 1). The `rejects_*`
//! tests put a wrong node into the graph and show which checks catch it.

use fderiv::scalar::{Dual, ExpOracle, Rational, Scalar};
use fderiv::spec::cases::{BuildNode, CaseGen, NodeCase};
use fderiv::spec::context::{Context, Idx};
use fderiv::spec::facts;
use fderiv::spec::graph::{DGraph, Graph};
use fderiv::spec::graph_cases::{GraphNodeKind, MhaCase};
use fderiv::spec::graph_facts;
use fderiv::spec::matrix_node::matmul;
use fderiv::spec::mha::{gamma_mha, mha_dgraph, Layout, MhaDims};
use fderiv::spec::node::Node;
use fderiv::spec::report::{mha_facts, node_facts};
use fderiv::spec::shape_ops::{reshape, transpose3d_last_two};
use fderiv::spec::SpecError;
use proptest::prelude::*;

fn oracle() -> ExpOracle {
    ExpOracle::hashed(11)
}

fn q(p: i64, d: i64) -> Rational {
    Rational::new(p.into(), d.into())
}

/// The case drawn after `skip` others of the same kind from a generator seeded `seed`:
/// small `skip` gives the enumerated 0/1 shapes, larger ones random shapes.
fn drawn<T>(seed: u64, skip: usize, draw: impl Fn(&mut CaseGen) -> Result<T, SpecError>) -> T {
    let mut gen = CaseGen::new(seed);
    (0..skip).for_each(|_| {
        draw(&mut gen).unwrap();
    });
    draw(&mut gen).unwrap()
}

const FACTS: [&str; 4] = ["correct_inner", "jvp_eq", "vjp_eq_adjoint", "hasFDerivAt"];

fn assert_node_facts(case: &NodeCase<GraphNodeKind>) -> Result<(), TestCaseError> {
    let ok = node_facts(case, &oracle()).unwrap();
    for (name, ok) in FACTS.iter().zip(ok) {
        prop_assert!(ok, "{} fails on {:?}", name, case);
    }
    Ok(())
}

fn mha(seed: u64, skip: usize) -> MhaCase {
    drawn(seed, skip, CaseGen::mha_case)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn reshape_and_reshape_fderiv(seed in any::<u64>(), skip in 0usize..24) {
        assert_node_facts(&drawn(seed, skip, CaseGen::reshape_case))?;
    }

    #[test]
    fn swap_first_two3d_and_fderiv(seed in any::<u64>(), skip in 0usize..24) {
        assert_node_facts(&drawn(seed, skip, CaseGen::swap_first_two3d_case))?;
    }

    #[test]
    fn transpose3d_last_two_and_fderiv(seed in any::<u64>(), skip in 0usize..24) {
        assert_node_facts(&drawn(seed, skip, CaseGen::transpose3d_last_two_case))?;
    }

    #[test]
    fn scale_and_scale_fderiv(seed in any::<u64>(), skip in 0usize..24) {
        assert_node_facts(&drawn(seed, skip, CaseGen::scale_case))?;
    }

    #[test]
    fn matrix_matmul_and_matmul_fderiv(seed in any::<u64>(), skip in 0usize..24) {
        assert_node_facts(&drawn(seed, skip, CaseGen::matmul2d_case))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn mha_backprop_vec_eq_adjoint_fderiv(seed in any::<u64>(), skip in 0usize..24) {
        let case = mha(seed, skip);
        let ok = mha_facts(&case, Layout::Lean, &oracle()).unwrap();
        prop_assert!(ok.iter().all(|b| *b), "{:?} on {:?}", ok, case.dims);
    }

    #[test]
    fn pytorch_layout_backprop_vec_eq_adjoint_fderiv(seed in any::<u64>(), skip in 0usize..24) {
        let case = mha(seed, skip);
        let ok = mha_facts(&case, Layout::PyTorch, &oracle()).unwrap();
        prop_assert!(ok.iter().all(|b| *b), "{:?} on {:?}", ok, case.dims);
    }
}

#[test]
fn every_size_zero_and_one_mha_shape_passes_every_graph_fact() {
    let mut gen = CaseGen::new(5);
    for _ in 0..16 {
        let case = gen.mha_case().unwrap();
        let d = case.dims;
        assert!([d.n, d.d_model, d.heads, d.head_dim]
            .iter()
            .all(|v| *v <= 1));
        for layout in [Layout::Lean, Layout::PyTorch] {
            let ok = mha_facts(&case, layout, &oracle()).unwrap();
            assert!(ok.iter().all(|b| *b), "{ok:?} {layout:?} {d:?}");
        }
    }
}

#[test]
fn swap_and_transpose_equivs_are_bijections_with_their_symm() {
    use fderiv::spec::shape_ops::{swap_first_two_equiv, transpose_last_two_equiv};
    for (a, b, c) in [(2, 3, 4), (1, 2, 3), (3, 1, 2), (0, 2, 2), (2, 2, 1)] {
        for e in [
            swap_first_two_equiv(a, b, c).unwrap(),
            transpose_last_two_equiv(a, b, c).unwrap(),
        ] {
            let image: Vec<usize> = (0..e.size()).map(|i| e.apply(i).unwrap()).collect();
            let mut sorted = image.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..e.size()).collect::<Vec<_>>(), "{e:?}");
            assert!(image
                .iter()
                .enumerate()
                .all(|(i, j)| e.symm().apply(*j) == Some(i)));
        }
        // entry (x, y, z) of a×b×c lands at (y, x, z) of b×a×c, and at (x, z, y) of a×c×b
        let (s, t) = (
            swap_first_two_equiv(a, b, c).unwrap(),
            transpose_last_two_equiv(a, b, c).unwrap(),
        );
        for x in 0..a {
            for y in 0..b {
                for z in 0..c {
                    let i = (x * b + y) * c + z;
                    assert_eq!(s.apply(i), Some((y * a + x) * c + z));
                    assert_eq!(t.apply(i), Some((x * c + z) * b + y));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Corrupted nodes, and the checks that reject them
// ---------------------------------------------------------------------------------

/// A node that differs from `inner` in one way.
struct Corrupt<S: Scalar> {
    inner: Box<dyn Node<S>>,
    how: How<S>,
}

enum How<S: Scalar> {
    /// The forward of another node (same context and output shape).
    Forward(Box<dyn Node<S>>),
    /// The vjp without its contribution to one input (a dropped term).
    DropVjpTerm(Idx),
    /// The jvp with its first entry increased by one.
    BumpJvp,
    /// The vjp with its first entry increased by one.
    BumpVjp,
}

impl<S: Scalar> Node<S> for Corrupt<S> {
    fn context(&self) -> &Context {
        self.inner.context()
    }
    fn out_shape(&self) -> &[usize] {
        self.inner.out_shape()
    }
    fn forward(&self, x: &[S]) -> Result<Vec<S>, SpecError> {
        match &self.how {
            How::Forward(other) => other.forward(x),
            _ => self.inner.forward(x),
        }
    }
    fn jvp(&self, x: &[S], dx: &[S]) -> Result<Vec<S>, SpecError> {
        let mut v = self.inner.jvp(x, dx)?;
        if let (How::BumpJvp, Some(first)) = (&self.how, v.first_mut()) {
            *first = first.clone() + S::one();
        }
        Ok(v)
    }
    fn vjp(&self, x: &[S], d: &[S]) -> Result<Vec<S>, SpecError> {
        let v = self.inner.vjp(x, d)?;
        match &self.how {
            How::DropVjpTerm(idx) => {
                let term = idx.single(&idx.get(&v)?)?;
                Ok(v.iter().zip(term).map(|(a, b)| a.clone() - b).collect())
            }
            How::BumpVjp => {
                let mut v = v;
                if let Some(first) = v.first_mut() {
                    *first = first.clone() + S::one();
                }
                Ok(v)
            }
            _ => Ok(v),
        }
    }
}

const DIMS: MhaDims = MhaDims {
    n: 2,
    d_model: 2,
    heads: 2,
    head_dim: 2,
};

/// Node 13 of `mhaDGraph` (`out := concat * Wo`), with its vjp missing the `Wo` term.
fn drop_wo_term<S: Scalar>(dg: DGraph<S>) -> DGraph<S> {
    let ctx = dg.g().nodes()[13].context().clone();
    let last = ctx.shapes().len() - 1;
    let concat = ctx.idx(last, &ctx.shapes()[last]).unwrap();
    let wo = ctx.idx(4, &ctx.shapes()[4]).unwrap();
    let (node, hn) = matmul::<S>(&ctx, &concat, &wo).unwrap();
    let how = How::DropVjpTerm(wo);
    let bad = Corrupt {
        inner: Box::new(node),
        how,
    };
    dg.replace(13, Box::new(bad), hn).unwrap()
}

/// Node 4 of `mhaDGraph` (`Kᵀ := transpose3dLastTwo Kheads`), with the forward of a
/// `reshape` to the same `h×d×n` shape (the transpose swapped for a cast).
fn swapped_transpose<S: Scalar>(dg: DGraph<S>) -> DGraph<S> {
    let ctx = dg.g().nodes()[4].context().clone();
    let last = ctx.shapes().len() - 1;
    let k_heads = ctx.idx(last, &ctx.shapes()[last]).unwrap();
    let (node, hn) = transpose3d_last_two::<S>(&ctx, &k_heads).unwrap();
    let (cast, _) = reshape::<S>(&ctx, &k_heads, node.out_shape()).unwrap();
    let how = How::Forward(Box::new(cast));
    let bad = Corrupt {
        inner: Box::new(node),
        how,
    };
    dg.replace(4, Box::new(bad), hn).unwrap()
}

/// Node 8 of `mhaDGraph` (`scaled := scale scores c`), with a jvp off by one entry.
fn bumped_scale_jvp<S: Scalar>(dg: DGraph<S>, c: &S) -> DGraph<S> {
    let ctx = dg.g().nodes()[8].context().clone();
    let last = ctx.shapes().len() - 1;
    let scores = ctx.idx(last, &ctx.shapes()[last]).unwrap();
    let (node, hn) = fderiv::spec::arithmetic::scale::<S>(&ctx, &scores, c).unwrap();
    let bad = Corrupt {
        inner: Box::new(node),
        how: How::BumpJvp,
    };
    dg.replace(8, Box::new(bad), hn).unwrap()
}

/// The point, tangent and seed of the corruption tests (every entry nonzero).
fn point() -> (Vec<Rational>, Vec<Rational>, Vec<Rational>) {
    let size = gamma_mha(&DIMS).unwrap().size();
    let full = mha_dgraph::<Rational>(&DIMS, &q(1, 2), &oracle())
        .unwrap()
        .g()
        .context()
        .size();
    let v = |n: usize, k: i64| -> Vec<Rational> {
        (0..n as i64).map(|i| q((i * 7 + k) % 11 - 5, 3)).collect()
    };
    let nonzero = |v: Vec<Rational>| -> Vec<Rational> {
        v.into_iter()
            .map(|e| if e.is_zero_value() { q(1, 5) } else { e })
            .collect()
    };
    (
        nonzero(v(size, 1)),
        nonzero(v(size, 4)),
        nonzero(v(full, 2)),
    )
}

/// `[backprop_correct_inner, jvpVec_eq_fderiv, backpropVec_eq_adjoint_fderiv (dx),
/// by probing, GraphFDerivCorrectAt]` on a (possibly corrupted) pair of graphs.
fn graph_checks(dg: &DGraph<Rational>, dual: &DGraph<Dual<Rational>>) -> [bool; 5] {
    let (x, dx, seed) = point();
    let (g, d): (&Graph<Rational>, &Graph<Dual<Rational>>) = (dg.g(), dual.g());
    [
        graph_facts::backprop_correct_inner(g, &x, &dx, &seed).unwrap(),
        graph_facts::jvp_vec_eq_fderiv(d, g, &x, &dx).unwrap(),
        graph_facts::backprop_vec_eq_adjoint_fderiv(d, g, &x, &dx, &seed).unwrap(),
        graph_facts::backprop_vec_eq_adjoint_by_probing(d, g, &x, &seed).unwrap(),
        graph_facts::graph_fderiv_correct_at(dual, dg, &x, &dx).unwrap(),
    ]
}

fn graphs() -> (DGraph<Rational>, DGraph<Dual<Rational>>) {
    let c = q(1, 2);
    (
        mha_dgraph(&DIMS, &c, &oracle()).unwrap(),
        mha_dgraph(&DIMS, &Dual::constant(c), &oracle()).unwrap(),
    )
}

#[test]
fn the_uncorrupted_graph_passes_every_check_at_the_test_point() {
    let (dg, dual) = graphs();
    assert_eq!(graph_checks(&dg, &dual), [true; 5]);
}

#[test]
fn rejects_mha_graph_whose_output_matmul_vjp_drops_the_wo_term() {
    let (dg, dual) = graphs();
    let bad = drop_wo_term(dg);
    // every check that reads the vjp rejects it; the forward-mode ones cannot see it
    assert_eq!(graph_checks(&bad, &dual), [false, true, false, false, true]);
    // and the node facts reject the node itself
    let node = &bad.g().nodes()[13];
    let ctx = bad.g().eval_vec(&point().0).unwrap();
    let before = node.context().size();
    let (x, dx) = (&ctx[..before], &point().2[..before]);
    let d: Vec<Rational> = (0..DIMS.n * DIMS.d_model)
        .map(|i| q(i as i64 + 1, 2))
        .collect();
    assert!(!facts::correct_inner(&**node, x, dx, &d).unwrap());
    assert!(!facts::vjp_eq_adjoint(&**node, &bad.hg()[13], x, &d).unwrap());
}

#[test]
fn rejects_mha_graph_whose_transpose_is_swapped_for_a_reshape() {
    let (dg, dual) = graphs();
    let (bad, bad_dual) = (swapped_transpose(dg), swapped_transpose(dual));
    // jvp and vjp still agree with each other, but not with the forward they follow
    assert_eq!(
        graph_checks(&bad, &bad_dual),
        [true, false, false, false, false]
    );
}

#[test]
fn rejects_mha_graph_whose_scale_jvp_is_off_by_one_entry() {
    let (dg, dual) = graphs();
    let bad = bumped_scale_jvp(dg, &q(1, 2));
    assert_eq!(graph_checks(&bad, &dual), [false, false, true, true, false]);
}

#[test]
fn rejects_a_wrong_jvp_or_vjp_in_each_attention_node_kind() {
    let mut gen = CaseGen::new(3);
    let mut rejected = [0usize; 5];
    for _ in 0..30 {
        let cases = [
            gen.reshape_case().unwrap(),
            gen.swap_first_two3d_case().unwrap(),
            gen.transpose3d_last_two_case().unwrap(),
            gen.scale_case().unwrap(),
            gen.matmul2d_case().unwrap(),
        ];
        for (count, case) in rejected.iter_mut().zip(cases) {
            let build = || {
                case.kind
                    .build_node::<Rational>(&case.ctx, &oracle())
                    .unwrap()
            };
            let (dual, _) = case
                .kind
                .build_node::<Dual<Rational>>(&case.ctx, &oracle())
                .unwrap();
            let (node, fd) = build();
            // an empty output has no entry to corrupt; the first context entry must meet
            // a nonzero tangent or cotangent for a bumped one to show
            let (x, dx, d) = (&case.x, &case.dx, &case.delta);
            if d.is_empty() || dx[0].is_zero_value() || d.iter().all(|v| v.is_zero_value()) {
                continue;
            }
            let jvp = Corrupt {
                inner: node,
                how: How::BumpJvp,
            };
            assert!(!facts::jvp_eq(&jvp, &fd, x, dx).unwrap(), "{case:?}");
            assert!(
                !facts::has_fderiv_at(&*dual, &jvp, x, dx).unwrap(),
                "{case:?}"
            );
            let (node, fd) = build();
            let vjp = Corrupt {
                inner: node,
                how: How::BumpVjp,
            };
            assert!(!facts::correct_inner(&vjp, x, dx, d).unwrap(), "{case:?}");
            assert!(!facts::vjp_eq_adjoint(&vjp, &fd, x, d).unwrap(), "{case:?}");
            *count += 1;
        }
    }
    assert!(rejected.iter().all(|c| *c > 0), "{rejected:?}");
}

#[test]
fn bad_input_graph_snoc_and_replace_name_the_mismatch() {
    let inputs = Context::new(vec![vec![2, 3]]).unwrap();
    let other = Context::new(vec![vec![1, 3, 2]]).unwrap();
    let i = other.idx(0, &[1, 3, 2]).unwrap();
    let (node, hn) = transpose3d_last_two::<Rational>(&other, &i).unwrap();
    let err = DGraph::nil(inputs).snoc(Box::new(node), hn).err().unwrap();
    assert!(matches!(err, SpecError::ContextMismatch { .. }), "{err}");
    assert!(err.to_string().contains("[2, 3]") && err.to_string().contains("[1, 3, 2]"));
    let (r, rh) = reshape::<Rational>(&other, &i, &[6]).unwrap();
    let dg = DGraph::nil(other.clone()).snoc(Box::new(r), rh).unwrap();
    let (r2, rh2) = reshape::<Rational>(&other, &i, &[2, 3]).unwrap();
    let err = dg.replace(0, Box::new(r2), rh2).err().unwrap();
    assert!(err.to_string().contains("[6]") && err.to_string().contains("[2, 3]"));
}

#[test]
fn the_public_calls_are_forward_jvp_and_vjp_of_one_function() {
    use fderiv::spec::mha::{mha_backprop, mha_forward, mha_jvp, MhaInputs};
    let (x, dx, _) = point();
    let g_out: Vec<Rational> = (0..DIMS.n * DIMS.d_model)
        .map(|i| q(3 - i as i64, 2))
        .collect();
    let c = q(1, 3);
    for layout in [Layout::Lean, Layout::PyTorch] {
        let inputs = MhaInputs::from_ctx_vec(&DIMS, &x).unwrap();
        let tangents = MhaInputs::from_ctx_vec(&DIMS, &dx).unwrap();
        let dual_inputs = MhaInputs::from_ctx_vec(&DIMS, &facts::duals(&x, &dx).unwrap()).unwrap();
        let dual_out = mha_forward(
            layout,
            &DIMS,
            &dual_inputs,
            &Dual::constant(c.clone()),
            &oracle(),
        )
        .unwrap();
        let out = mha_forward(layout, &DIMS, &inputs, &c, &oracle()).unwrap();
        let jvp = mha_jvp(layout, &DIMS, &inputs, &tangents, &c, &oracle()).unwrap();
        let grads = mha_backprop(layout, &DIMS, &inputs, &g_out, &c, &oracle()).unwrap();
        // forward = value part of the dual forward, jvp = its tangent part
        assert_eq!(
            out,
            dual_out.iter().map(|d| d.value.clone()).collect::<Vec<_>>()
        );
        assert_eq!(jvp, facts::tangents(&dual_out));
        // ⟨backprop g, dx⟩ = ⟨g, jvp dx⟩
        let lhs = fderiv::spec::vector::inner(&grads.ctx_vec(&DIMS).unwrap(), &dx).unwrap();
        assert_eq!(
            lhs,
            fderiv::spec::vector::inner(&g_out, &jvp).unwrap(),
            "{layout:?}"
        );
    }
    // and a wrong cotangent length is a typed error, not a panic
    let inputs = MhaInputs::from_ctx_vec(&DIMS, &x).unwrap();
    let err = mha_backprop(Layout::Lean, &DIMS, &inputs, &g_out[1..], &c, &oracle());
    assert!(matches!(err, Err(SpecError::Length { .. })));
}
