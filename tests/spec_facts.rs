//! The facts TorchLean proves about `NN.Proofs.Autograd.Tape.Nodes.Batched`, checked
//! exactly over ℚ on random shapes (every dim in 0..=3, so every size-0 and size-1
//! case), random contexts with extra unrelated inputs and repeated indices (`A·A`).
//! Each test is named after the Lean fact it checks. The `rejects_*` tests feed wrong
//! objects to the same checks and assert they fail: every check can fail.

use std::rc::Rc;

use fderiv::scalar::{Dual, ExpOracle, Rational, Scalar};
use fderiv::spec::batched::{matmul_bilin, matmul_node, softmax_last_node, MatmulBilin};
use fderiv::spec::bilinear::{precomp_l, precomp_r, Bilinear};
use fderiv::spec::cases::{context_from_slots, slots, NodeCase, NodeKind};
use fderiv::spec::clm::{clm_add, smul_right, BoxClm, Clm};
use fderiv::spec::context::Context;
use fderiv::spec::facts;
use fderiv::spec::heads::{heads_clm, unheads_clm};
use fderiv::spec::node::{Node, NodeFDerivCorrect, OfVec};
use fderiv::spec::softmax_vec::{softmax_deriv, softmax_jvp, softmax_vec};
use fderiv::spec::SpecError;
use proptest::prelude::*;

fn oracle() -> ExpOracle {
    ExpOracle::hashed(11)
}

fn q(p: i64, d: i64) -> Rational {
    Rational::new(p.into(), d.into())
}

fn rational() -> impl Strategy<Value = Rational> {
    (-6i64..=6, 1i64..=4).prop_map(|(p, d)| q(p, d))
}

fn vector(n: usize) -> impl Strategy<Value = Vec<Rational>> {
    prop::collection::vec(rational(), n)
}

fn dim() -> impl Strategy<Value = usize> {
    0usize..=3
}

/// A context holding `needed` among 0–2 unrelated inputs of rank 0–3, shuffled; with
/// the positions of the needed shapes.
fn context(needed: Vec<Vec<usize>>) -> impl Strategy<Value = (Context, Vec<usize>)> {
    prop::collection::vec(prop::collection::vec(dim(), 0..=3), 0..=2)
        .prop_flat_map(move |extras| Just(slots(&needed, extras)).prop_shuffle())
        .prop_map(|s| context_from_slots(s).unwrap())
}

fn with_values(ctx: Context, kind: NodeKind, out: usize) -> impl Strategy<Value = NodeCase> {
    let n = ctx.size();
    (vector(n), vector(n), vector(out)).prop_map(move |(x, dx, delta)| NodeCase {
        ctx: ctx.clone(),
        kind: kind.clone(),
        x,
        dx,
        delta,
    })
}

/// Batched matmul cases; about 30% are `A·A` (one input, `m = n = p`).
fn matmul_case() -> impl Strategy<Value = NodeCase> {
    (dim(), dim(), dim(), dim(), prop::bool::weighted(0.3)).prop_flat_map(|(h, m, n, p, same)| {
        let (m, p) = if same { (n, n) } else { (m, p) };
        let (sa, sb) = (vec![h, m, n], vec![h, n, p]);
        let needed = if same {
            vec![sa.clone()]
        } else {
            vec![sa.clone(), sb.clone()]
        };
        context(needed).prop_flat_map(move |(ctx, pos)| {
            let a = ctx.idx(pos[0], &sa).unwrap();
            let b = ctx.idx(pos[pos.len() - 1], &sb).unwrap();
            with_values(ctx, NodeKind::Matmul { a, b }, h * m * p)
        })
    })
}

fn softmax_last_case() -> impl Strategy<Value = NodeCase> {
    (dim(), dim(), dim()).prop_flat_map(|(h, m, n)| {
        let s = vec![h, m, n];
        context(vec![s.clone()]).prop_flat_map(move |(ctx, pos)| {
            let idx = ctx.idx(pos[0], &s).unwrap();
            with_values(ctx, NodeKind::SoftmaxLast { idx }, h * m * n)
        })
    })
}

fn build<S: Scalar>(case: &NodeCase) -> (OfVec<S>, NodeFDerivCorrect<S>) {
    case.kind.build(&case.ctx, &oracle()).unwrap()
}

fn check_correct_inner(case: &NodeCase) -> bool {
    let (node, _) = build::<Rational>(case);
    facts::correct_inner(&node, &case.x, &case.dx, &case.delta).unwrap()
}

fn check_jvp_eq(case: &NodeCase) -> bool {
    let (node, fd) = build::<Rational>(case);
    facts::jvp_eq(&node, &fd, &case.x, &case.dx).unwrap()
        && facts::vjp_eq_adjoint(&node, &fd, &case.x, &case.delta).unwrap()
}

fn check_has_fderiv_at(case: &NodeCase) -> bool {
    let (node, _) = build::<Rational>(case);
    let (dual, _) = build::<Dual<Rational>>(case);
    facts::has_fderiv_at(&dual, &node, &case.x, &case.dx).unwrap()
}

type Triple = (Vec<Rational>, Vec<Rational>, Vec<Rational>);

/// `(x, dx, δ)` of one length in 0..=3, for vector softmax.
fn softmax_vectors() -> impl Strategy<Value = Triple> {
    dim().prop_flat_map(|n| (vector(n), vector(n), vector(n)))
}

/// `(m, n, (x, dx, δ))` for matrix softmax.
fn mn_vectors() -> impl Strategy<Value = (usize, usize, Triple)> {
    (dim(), dim()).prop_flat_map(|(m, n)| {
        let k = m * n;
        (Just(m), Just(n), (vector(k), vector(k), vector(k)))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn matmul_correct_inner(case in matmul_case()) {
        prop_assert!(check_correct_inner(&case));
    }

    #[test]
    fn matmul_fderiv_jvp_eq(case in matmul_case()) {
        prop_assert!(check_jvp_eq(&case));
    }

    #[test]
    fn matmul_fderiv_has_fderiv_at(case in matmul_case()) {
        prop_assert!(check_has_fderiv_at(&case));
    }

    #[test]
    fn softmax_last_correct_inner(case in softmax_last_case()) {
        prop_assert!(check_correct_inner(&case));
    }

    #[test]
    fn softmax_last_fderiv_jvp_eq(case in softmax_last_case()) {
        prop_assert!(check_jvp_eq(&case));
    }

    #[test]
    fn softmax_last_fderiv_has_fderiv_at(case in softmax_last_case()) {
        prop_assert!(check_has_fderiv_at(&case));
    }

    #[test]
    fn heads_unheads_inverse((h, n) in (dim(), dim()), seed in vector(18)) {
        let (x, r) = (&seed[..h * n], &seed[9..9 + h * n]);
        prop_assert!(facts::heads_unheads_inverse(h, n, x, r).unwrap());
    }

    #[test]
    fn heads_clm_adjoint_unheads_clm((h, n) in (dim(), dim()), seed in vector(18)) {
        let (x, r) = (&seed[..h * n], &seed[9..9 + h * n]);
        prop_assert!(facts::heads_clm_adjoint_unheads_clm(h, n, x, r).unwrap());
    }

    #[test]
    fn inner_softmax_jvp_comm((x, dx, d) in softmax_vectors()) {
        prop_assert!(facts::inner_softmax_jvp_comm(&x, &dx, &d, &oracle()).unwrap());
    }

    #[test]
    fn softmax_jvp_eq_deriv((x, dx, _) in softmax_vectors()) {
        prop_assert!(facts::softmax_jvp_eq_deriv(&x, &dx, &oracle()).unwrap());
    }

    #[test]
    fn has_fderiv_at_softmax_vec((x, dx, _) in softmax_vectors()) {
        prop_assert!(facts::has_fderiv_at_softmax_vec(&x, &dx, &oracle()).unwrap());
    }

    #[test]
    fn jvp_mn_eq_deriv_mn((m, n, (x, dx, _)) in mn_vectors()) {
        prop_assert!(facts::jvp_mn_eq_deriv_mn(m, n, &x, &dx, &oracle()).unwrap());
    }

    #[test]
    fn inner_jvp_mn_comm((m, n, (x, dx, d)) in mn_vectors()) {
        prop_assert!(facts::inner_jvp_mn_comm(m, n, &x, &dx, &d, &oracle()).unwrap());
    }

    #[test]
    fn has_fderiv_at_forward_mn((m, n, (x, dx, _)) in mn_vectors()) {
        prop_assert!(facts::has_fderiv_at_forward_mn(m, n, &x, &dx, &oracle()).unwrap());
    }

    #[test]
    fn matmul_bilin_bilinear(
        (h, m, n, p) in (dim(), dim(), dim(), dim()),
        vs in prop::collection::vec(vector(27), 4),
        c in rational(),
    ) {
        let bil = matmul_bilin(h, m, n, p).unwrap();
        let (la, lb) = (h * m * n, h * n * p);
        let ok = facts::bilinear::<Rational>(
            &bil,
            [&vs[0][..la], &vs[1][..la]],
            [&vs[2][..lb], &vs[3][..lb]],
            &c,
        );
        prop_assert!(ok.unwrap());
    }

    #[test]
    fn matmul_bilin_partial_adjoints(
        (h, m, n, p) in (dim(), dim(), dim(), dim()),
        vs in prop::collection::vec(vector(27), 3),
    ) {
        let bil = matmul_bilin(h, m, n, p).unwrap();
        let (a, b, d) = (&vs[0][..h * m * n], &vs[1][..h * n * p], &vs[2][..h * m * p]);
        let left = Bilinear::<Rational>::left(&bil, a).unwrap();
        prop_assert!(facts::clm_adjoint_identity(&*left, b, d).unwrap());
        prop_assert!(facts::clm_adjoint_identity(&*bil.flip(b).unwrap(), a, d).unwrap());
    }

    #[test]
    fn ctx_vec_get_clm_adjoint_is_single(case in matmul_case()) {
        let NodeKind::Matmul { a, .. } = &case.kind else { unreachable!() };
        let get = a.get_clm::<Rational>().unwrap();
        let d: Vec<Rational> = case.dx.iter().take(a.size()).cloned().collect();
        prop_assert!(facts::clm_adjoint_identity(&*get, &case.x, &d).unwrap());
        // the adjoint puts the block in A's slot and zeros everywhere else
        let scattered = get.adjoint(&d).unwrap();
        prop_assert_eq!(a.get(&scattered).unwrap(), d.clone());
        let nonzero = scattered.iter().filter(|v| !v.is_zero_value()).count();
        let nonzero_d = d.iter().filter(|v| !v.is_zero_value()).count();
        prop_assert_eq!(nonzero, nonzero_d);
    }

    #[test]
    fn size3_eq((h, m, n) in (any::<usize>(), 0usize..=1000, 0usize..=1000)) {
        match facts::size3_eq(h, m, n) {
            Ok(eq) => prop_assert!(eq),
            Err(e) => prop_assert!(matches!(e, SpecError::Overflow { .. }), "{}", e),
        }
    }
}

#[test]
fn every_size_zero_and_one_shape_passes_every_node_fact() {
    let o = oracle();
    let v = |n: usize, k: i64| (0..n as i64).map(|i| q(i - k, 3)).collect::<Vec<_>>();
    for bits in 0..16usize {
        let [h, m, n, p] = [0, 1, 2, 3].map(|b| (bits >> b) & 1);
        let shapes = vec![vec![2], vec![h, m, n], vec![h, n, p], vec![h, n, n]];
        let ctx = Context::new(shapes).unwrap();
        let kinds = [
            NodeKind::Matmul {
                a: ctx.idx(1, &[h, m, n]).unwrap(),
                b: ctx.idx(2, &[h, n, p]).unwrap(),
            },
            NodeKind::Matmul {
                a: ctx.idx(3, &[h, n, n]).unwrap(),
                b: ctx.idx(3, &[h, n, n]).unwrap(),
            },
            NodeKind::SoftmaxLast {
                idx: ctx.idx(1, &[h, m, n]).unwrap(),
            },
        ];
        for kind in kinds {
            let (node, _) = kind.build::<Rational>(&ctx, &o).unwrap();
            let out: usize = node.out_shape().iter().product();
            let case = NodeCase {
                ctx: ctx.clone(),
                kind,
                x: v(ctx.size(), 1),
                dx: v(ctx.size(), 3),
                delta: v(out, 2),
            };
            assert!(check_correct_inner(&case), "{case:?}");
            assert!(check_jvp_eq(&case), "{case:?}");
            assert!(check_has_fderiv_at(&case), "{case:?}");
        }
    }
}

#[test]
fn softmax_vec_zero_is_identity() {
    let empty: Vec<Rational> = Vec::new();
    // n = 0: identity, even without an exp oracle; jvp and deriv are the identity too.
    assert_eq!(softmax_vec(&empty, &ExpOracle::None).unwrap(), empty);
    assert_eq!(
        softmax_jvp(&empty, &empty, &ExpOracle::None).unwrap(),
        empty
    );
    let d = softmax_deriv::<Rational>(&empty, &ExpOracle::None).unwrap();
    assert_eq!((d.dim_in(), d.dim_out()), (0, 0));
}

#[test]
fn softmax_vec_sums_to_one_exactly() {
    let y = softmax_vec(&[q(1, 2), q(-3, 1), q(2, 3)], &oracle()).unwrap();
    assert_eq!(y.into_iter().fold(q(0, 1), |a, b| a + b), q(1, 1));
}

#[test]
fn matmul_vjp_adds_both_contributions_into_a_shared_slot() {
    // A·A with A = [[1,2],[3,4]] (h = 1) in a context [extra, A]: vjp δ = δAᵀ + Aᵀδ.
    let ctx = Context::new(vec![vec![1], vec![1, 2, 2]]).unwrap();
    let a = ctx.idx(1, &[1, 2, 2]).unwrap();
    let (node, _) = matmul_node::<Rational>(&ctx, &a, &a).unwrap();
    let x: Vec<Rational> = [9, 1, 2, 3, 4].iter().map(|&v| q(v, 1)).collect();
    let delta: Vec<Rational> = [1, 0, 0, 1].iter().map(|&v| q(v, 1)).collect();
    // δ = I: δAᵀ + Aᵀδ = Aᵀ + Aᵀ = [[2,6],[4,8]]
    let want: Vec<Rational> = [0, 2, 6, 4, 8].iter().map(|&v| q(v, 1)).collect();
    assert_eq!(node.vjp(&x, &delta).unwrap(), want);
}

// ---------------------------------------------------------------------------
// f64 sanity against plain loops
// ---------------------------------------------------------------------------

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-12 * (1.0 + y.abs()))
}

#[test]
fn f64_matmul_forward_and_vjp_match_plain_loops() {
    let (h, m, n, p) = (2, 3, 2, 4);
    let ctx = Context::new(vec![vec![h, m, n], vec![5], vec![h, n, p]]).unwrap();
    let ia = ctx.idx(0, &[h, m, n]).unwrap();
    let ib = ctx.idx(2, &[h, n, p]).unwrap();
    let x: Vec<f64> = (0..ctx.size()).map(|i| (i as f64 * 0.37).sin()).collect();
    let delta: Vec<f64> = (0..h * m * p).map(|i| (i as f64 * 0.11).cos()).collect();
    let (node, _) = matmul_node::<f64>(&ctx, &ia, &ib).unwrap();
    let (a, b) = (ia.get(&x).unwrap(), ib.get(&x).unwrap());
    let mut c = vec![0.0; h * m * p];
    let mut ga = vec![0.0; h * m * n];
    let mut gb = vec![0.0; h * n * p];
    for k in 0..h {
        for i in 0..m {
            for j in 0..n {
                for l in 0..p {
                    let ai = k * m * n + i * n + j;
                    let bi = k * n * p + j * p + l;
                    let ci = k * m * p + i * p + l;
                    c[ci] += a[ai] * b[bi];
                    ga[ai] += delta[ci] * b[bi];
                    gb[bi] += a[ai] * delta[ci];
                }
            }
        }
    }
    assert!(close(&node.forward(&x).unwrap(), &c));
    let g = node.vjp(&x, &delta).unwrap();
    assert!(close(&ia.get(&g).unwrap(), &ga));
    assert!(close(&ib.get(&g).unwrap(), &gb));
    assert!(g[h * m * n..h * m * n + 5].iter().all(|v| *v == 0.0));
}

#[test]
fn f64_softmax_last_forward_and_vjp_match_plain_loops() {
    let (h, m, n) = (2, 2, 3);
    let ctx = Context::new(vec![vec![h, m, n]]).unwrap();
    let idx = ctx.idx(0, &[h, m, n]).unwrap();
    let x: Vec<f64> = (0..12).map(|i| (i as f64 * 0.7).sin() * 3.0).collect();
    let delta: Vec<f64> = (0..12).map(|i| (i as f64 * 0.3).cos()).collect();
    let (node, _) = softmax_last_node::<f64>(&ctx, &idx, &ExpOracle::None).unwrap();
    let mut y = vec![0.0; 12];
    let mut g = vec![0.0; 12];
    for row in 0..h * m {
        let r = row * n..(row + 1) * n;
        let s: f64 = x[r.clone()].iter().map(|v| f64::exp(*v)).sum();
        for i in r.clone() {
            y[i] = f64::exp(x[i]) / s;
        }
        let dot: f64 = r.clone().map(|i| y[i] * delta[i]).sum();
        for i in r {
            g[i] = y[i] * (delta[i] - dot);
        }
    }
    assert!(close(&node.forward(&x).unwrap(), &y));
    assert!(close(&node.vjp(&x, &delta).unwrap(), &g));
}

// ---------------------------------------------------------------------------
// Every check can fail: wrong objects are rejected
// ---------------------------------------------------------------------------

/// A node whose vjp (or jvp) has entry 0 perturbed by one.
struct Perturbed<N> {
    inner: N,
    vjp: bool,
}

fn bump<S: Scalar>(mut v: Vec<S>, yes: bool) -> Vec<S> {
    if yes {
        v[0] = v[0].clone() + S::one();
    }
    v
}

impl<S: Scalar, N: Node<S>> Node<S> for Perturbed<N> {
    fn context(&self) -> &Context {
        self.inner.context()
    }
    fn out_shape(&self) -> &[usize] {
        self.inner.out_shape()
    }
    fn forward(&self, x: &[S]) -> Result<Vec<S>, SpecError> {
        self.inner.forward(x)
    }
    fn jvp(&self, x: &[S], dx: &[S]) -> Result<Vec<S>, SpecError> {
        Ok(bump(self.inner.jvp(x, dx)?, !self.vjp))
    }
    fn vjp(&self, x: &[S], delta: &[S]) -> Result<Vec<S>, SpecError> {
        Ok(bump(self.inner.vjp(x, delta)?, self.vjp))
    }
}

/// A 1×2×2 matmul A·B in context [A, B] with nonzero data.
fn square_case() -> NodeCase {
    let ctx = Context::new(vec![vec![1, 2, 2], vec![1, 2, 2]]).unwrap();
    let kind = NodeKind::Matmul {
        a: ctx.idx(0, &[1, 2, 2]).unwrap(),
        b: ctx.idx(1, &[1, 2, 2]).unwrap(),
    };
    let v = |k: &[i64]| k.iter().map(|&i| q(i, 1)).collect::<Vec<_>>();
    NodeCase {
        ctx,
        kind,
        x: v(&[1, 2, 3, 4, 5, 6, 7, 8]),
        dx: v(&[1, 1, 1, 1, 2, 0, 1, 3]),
        delta: v(&[1, -1, 2, 1]),
    }
}

#[test]
fn rejects_vjp_with_one_entry_perturbed() {
    let case = square_case();
    let (node, fd) = build::<Rational>(&case);
    let bad = Perturbed {
        inner: node,
        vjp: true,
    };
    assert!(!facts::correct_inner(&bad, &case.x, &case.dx, &case.delta).unwrap());
    assert!(!facts::vjp_eq_adjoint(&bad, &fd, &case.x, &case.delta).unwrap());
}

#[test]
fn rejects_jvp_with_one_entry_perturbed() {
    let case = square_case();
    let (node, fd) = build::<Rational>(&case);
    let (dual, _) = build::<Dual<Rational>>(&case);
    let bad = Perturbed {
        inner: node,
        vjp: false,
    };
    assert!(!facts::jvp_eq(&bad, &fd, &case.x, &case.dx).unwrap());
    assert!(!facts::has_fderiv_at(&dual, &bad, &case.x, &case.dx).unwrap());
    assert!(!facts::correct_inner(&bad, &case.x, &case.dx, &case.delta).unwrap());
}

#[test]
fn rejects_matmul_deriv_with_a_transposed_factor() {
    let case = square_case();
    let NodeKind::Matmul { a, b } = case.kind.clone() else {
        unreachable!()
    };
    let (node, _) = build::<Rational>(&case);
    // dx ↦ A·dB + dA·Bᵀ instead of A·dB + dA·B
    let bmul = matmul_bilin(1, 2, 2, 2).unwrap();
    let wrong = move |x: &[Rational]| -> Result<BoxClm<Rational>, SpecError> {
        let bv = b.get(x)?;
        let bt = [0, 2, 1, 3].map(|i| bv[i].clone());
        clm_add(
            precomp_r(&bmul, &a.get(x)?, b.get_clm()?)?,
            precomp_l(&bmul, a.get_clm()?, &bt)?,
        )
    };
    let wrong = NodeFDerivCorrect::new(Rc::new(wrong));
    assert!(!facts::jvp_eq(&node, &wrong, &case.x, &case.dx).unwrap());
    assert!(!facts::vjp_eq_adjoint(&node, &wrong, &case.x, &case.delta).unwrap());
}

#[test]
fn rejects_wrong_softmax_jvp() {
    let o = oracle();
    let x = vec![q(1, 2), q(-1, 1), q(2, 1)];
    let dx = vec![q(1, 1), q(0, 1), q(-2, 3)];
    let d = vec![q(0, 1), q(3, 1), q(1, 1)];
    let y = softmax_vec(&x, &o).unwrap();
    // y ⊙ dx: the ⟨y, dx⟩ term forgotten
    let forgot = |v: &[Rational]| -> Result<Vec<Rational>, SpecError> {
        Ok(y.iter()
            .zip(v)
            .map(|(a, b)| a.clone() * b.clone())
            .collect())
    };
    // y ⊙ dx − y·⟨1, dx⟩: a non-symmetric Jacobian
    let wrong_sym = |v: &[Rational]| -> Result<Vec<Rational>, SpecError> {
        let s = v.iter().fold(q(0, 1), |a, b| a + b.clone());
        Ok(y.iter()
            .zip(v)
            .map(|(a, b)| a.clone() * b.clone() - a.clone() * s.clone())
            .collect())
    };
    // the forward of another function: exp without normalisation
    let unnormalised = |v: &[Dual<Rational>]| -> Result<Vec<Dual<Rational>>, SpecError> {
        v.iter().map(|t| Ok(t.exp(&o)?)).collect()
    };
    let deriv = softmax_deriv(&x, &o).unwrap();
    assert!(!facts::agrees(&forgot, &*deriv, &dx).unwrap());
    assert!(!facts::symmetric(&wrong_sym, &dx, &d).unwrap());
    assert!(!facts::tangent_matches(&unnormalised, &*deriv, &x, &dx).unwrap());
    // while the real ones pass at the same point
    let right = |v: &[Rational]| softmax_jvp(&x, v, &o);
    assert!(facts::agrees(&right, &*deriv, &dx).unwrap());
    assert!(facts::symmetric(&right, &dx, &d).unwrap());
}

#[test]
fn rejects_wrong_heads_maps() {
    let x: Vec<Rational> = (1..=6).map(|i| q(i, 1)).collect();
    let r: Vec<Rational> = (1..=6).map(|i| q(i, 2)).collect();
    let doubled = smul_right(unheads_clm::<Rational>(2, 3).unwrap(), q(2, 1));
    let heads = heads_clm(2, 3).unwrap();
    assert!(!facts::mutually_adjoint(&*heads, &*doubled, &x, &r).unwrap());
    let reversed = |v: &[Rational]| -> Result<Vec<Rational>, SpecError> {
        Ok(v.iter().rev().cloned().collect())
    };
    let id = |v: &[Rational]| -> Result<Vec<Rational>, SpecError> { Ok(v.to_vec()) };
    assert!(facts::mutually_inverse(&id, &id, &x, &r).unwrap());
    assert!(!facts::mutually_inverse(&reversed, &id, &x, &r).unwrap());
}

/// A map that is not bilinear: `B(a, b) = (a ⊙ a)·b`.
struct Squared(MatmulBilin);

impl Bilinear<Rational> for Squared {
    fn dim_left(&self) -> usize {
        Bilinear::<Rational>::dim_left(&self.0)
    }
    fn dim_right(&self) -> usize {
        Bilinear::<Rational>::dim_right(&self.0)
    }
    fn dim_out(&self) -> usize {
        Bilinear::<Rational>::dim_out(&self.0)
    }
    fn left(&self, a: &[Rational]) -> Result<BoxClm<Rational>, SpecError> {
        let sq: Vec<Rational> = a.iter().map(|v| v.clone() * v.clone()).collect();
        self.0.left(&sq)
    }
    fn flip(&self, b: &[Rational]) -> Result<BoxClm<Rational>, SpecError> {
        self.0.flip(b)
    }
}

#[test]
fn rejects_a_map_that_is_not_bilinear() {
    let bil = Squared(matmul_bilin(1, 1, 1, 1).unwrap());
    let (a1, a2, b1, b2) = ([q(1, 1)], [q(2, 1)], [q(3, 1)], [q(1, 2)]);
    assert!(!facts::bilinear(&bil, [&a1, &a2], [&b1, &b2], &q(3, 1)).unwrap());
}

/// A linear map with a wrong adjoint: `L = id`, `L† = 2·id`.
struct WrongAdjoint(usize);

impl Clm<Rational> for WrongAdjoint {
    fn dim_in(&self) -> usize {
        self.0
    }
    fn dim_out(&self) -> usize {
        self.0
    }
    fn apply(&self, x: &[Rational]) -> Result<Vec<Rational>, SpecError> {
        Ok(x.to_vec())
    }
    fn adjoint(&self, d: &[Rational]) -> Result<Vec<Rational>, SpecError> {
        Ok(d.iter().map(|v| v.clone() * q(2, 1)).collect())
    }
}

#[test]
fn rejects_a_wrong_adjoint() {
    let (x, d) = ([q(1, 1), q(2, 1)], [q(1, 1), q(0, 1)]);
    assert!(!facts::clm_adjoint_identity(&WrongAdjoint(2), &x, &d).unwrap());
}

// ---------------------------------------------------------------------------
// Bad inputs: typed errors, never panics
// ---------------------------------------------------------------------------

#[test]
fn bad_input_wrong_buffer_lengths() {
    let case = square_case();
    let (node, _) = build::<Rational>(&case);
    let err = node.forward(&case.x[..7]).unwrap_err();
    assert!(
        matches!(
            err,
            SpecError::Length {
                expected: 8,
                found: 7,
                ..
            }
        ),
        "{err}"
    );
    let err = node.vjp(&case.x, &case.delta[..3]).unwrap_err();
    assert!(
        matches!(
            err,
            SpecError::Length {
                expected: 4,
                found: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("[1, 2, 2]"), "{err}");
    let err = node.jvp(&case.x, &case.dx[..2]).unwrap_err();
    assert!(matches!(err, SpecError::Length { .. }), "{err}");
    let inputs = [vec![q(1, 1); 4], vec![q(1, 1); 3]];
    let err = case.ctx.ctx_vec(&inputs).unwrap_err();
    assert!(
        matches!(
            err,
            SpecError::Length {
                expected: 4,
                found: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn bad_input_usize_overflowing_dims() {
    let big = usize::MAX / 2 + 1;
    let err = Context::new(vec![vec![big, 2, 1]]).unwrap_err();
    assert!(
        matches!(err, SpecError::Overflow { ref dims } if dims == &vec![big, 2, 1]),
        "{err}"
    );
    assert!(err.to_string().contains(&big.to_string()));
    let err = matmul_bilin(2, big, 2, 1).unwrap_err();
    assert!(matches!(err, SpecError::Overflow { .. }), "{err}");
    let err = Context::new(vec![vec![big], vec![big]]).unwrap_err();
    assert!(matches!(err, SpecError::Overflow { .. }), "{err}");
}

#[test]
fn bad_input_out_of_range_idx() {
    let ctx = Context::new(vec![vec![1, 1, 1]]).unwrap();
    let err = ctx.idx(1, &[1, 1, 1]).unwrap_err();
    assert_eq!(
        err,
        SpecError::IndexOutOfRange {
            position: 1,
            len: 1
        }
    );
}

#[test]
fn bad_input_idx_shape_mismatch_names_both_shapes() {
    let ctx = Context::new(vec![vec![2, 3, 4]]).unwrap();
    let err = ctx.idx(0, &[2, 4, 3]).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SpecError::IdxShapeMismatch { .. }));
    assert!(
        msg.contains("[2, 4, 3]") && msg.contains("[2, 3, 4]"),
        "{msg}"
    );
}

#[test]
fn bad_input_incompatible_matmul_and_rank() {
    let ctx = Context::new(vec![vec![2, 3, 4], vec![2, 3, 4], vec![3, 3]]).unwrap();
    let a = ctx.idx(0, &[2, 3, 4]).unwrap();
    let b = ctx.idx(1, &[2, 3, 4]).unwrap();
    let err = matmul_node::<Rational>(&ctx, &a, &b).err().unwrap();
    assert!(matches!(err, SpecError::Incompatible { .. }));
    assert!(err.to_string().contains("[2, 3, 4]"), "{err}");
    let r2 = ctx.idx(2, &[3, 3]).unwrap();
    let err = softmax_last_node::<Rational>(&ctx, &r2, &oracle())
        .err()
        .unwrap();
    assert!(matches!(err, SpecError::Rank { expected: 3, .. }), "{err}");
    assert!(err.to_string().contains("[3, 3]"), "{err}");
    // an index made for another context
    let other = Context::new(vec![vec![1], vec![2, 3, 4]]).unwrap();
    let err = matmul_node::<Rational>(&other, &a, &a).err().unwrap();
    assert!(matches!(err, SpecError::IdxShapeMismatch { .. }), "{err}");
}

#[test]
fn bad_input_missing_exp_oracle_is_a_scalar_error() {
    let ctx = Context::new(vec![vec![1, 1, 2]]).unwrap();
    let idx = ctx.idx(0, &[1, 1, 2]).unwrap();
    let (node, _) = softmax_last_node::<Rational>(&ctx, &idx, &ExpOracle::None).unwrap();
    let err = node.forward(&[q(1, 1), q(2, 1)]).unwrap_err();
    assert!(matches!(err, SpecError::Scalar(_)), "{err}");
}
