//! Runs every fact of [`super::facts`] over `N` generated cases and counts the
//! outcomes: the engine behind `fderiv verify`'s spec rung.

use super::bilinear::Bilinear;
use super::cases::{BuildNode, CaseGen, NodeCase};
use super::error::SpecError;
use super::facts;
use super::graph_cases::MhaCase;
use super::graph_facts;
use super::mha::{layout_dgraph, Layout};
use crate::scalar::{Dual, ExpOracle, Rational};

/// Outcomes of one fact over all cases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactCount {
    /// The Lean fact (e.g. `matmul.correct_inner`).
    pub name: &'static str,
    /// Cases where both sides agreed.
    pub passed: usize,
    /// Cases where they did not.
    pub failed: usize,
}

/// The counts of a verification run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The generator seed.
    pub seed: u64,
    /// The number of cases per fact.
    pub cases: usize,
    /// One entry per fact, in a fixed order.
    pub facts: Vec<FactCount>,
}

impl VerifyReport {
    /// True when no check failed.
    pub fn all_passed(&self) -> bool {
        self.facts.iter().all(|f| f.failed == 0)
    }

    fn record(&mut self, name: &'static str, ok: bool) {
        let entry = match self.facts.iter_mut().position(|f| f.name == name) {
            Some(i) => &mut self.facts[i],
            None => {
                self.facts.push(FactCount {
                    name,
                    passed: 0,
                    failed: 0,
                });
                let last = self.facts.len() - 1;
                &mut self.facts[last]
            }
        };
        if ok {
            entry.passed += 1;
        } else {
            entry.failed += 1;
        }
    }
}

/// The four node facts for one case, in this order: `correct_inner`, `jvp_eq`,
/// vjp = adjoint of deriv, exact `hasFDerivAt`.
pub fn node_facts<K: BuildNode>(
    case: &NodeCase<K>,
    oracle: &ExpOracle,
) -> Result<[bool; 4], SpecError> {
    let (node, fd) = case.kind.build_node::<Rational>(&case.ctx, oracle)?;
    let (dual_node, _) = case.kind.build_node::<Dual<Rational>>(&case.ctx, oracle)?;
    let (x, dx, d) = (&case.x, &case.dx, &case.delta);
    Ok([
        facts::correct_inner(&*node, x, dx, d)?,
        facts::jvp_eq(&*node, &fd, x, dx)?,
        facts::vjp_eq_adjoint(&*node, &fd, x, d)?,
        facts::has_fderiv_at(&*dual_node, &*node, x, dx)?,
    ])
}

/// The whole-graph facts of the MHA block in one layout, in this order:
/// `backprop_correct_inner`, `jvpVec_eq_fderiv`, `backpropVec_eq_adjoint_fderiv` along
/// `dx`, the same by probing every input coordinate, `GraphFDerivCorrectAt`.
pub fn mha_facts(
    case: &MhaCase,
    layout: Layout,
    oracle: &ExpOracle,
) -> Result<[bool; 5], SpecError> {
    let dg = layout_dgraph::<Rational>(layout, &case.dims, &case.c, oracle)?;
    let dc = Dual::constant(case.c.clone());
    let dual = layout_dgraph::<Dual<Rational>>(layout, &case.dims, &dc, oracle)?;
    let seed = match layout {
        Layout::Lean => &case.seed,
        Layout::PyTorch => &case.pytorch_seed,
    };
    let (g, dg_dual, x, dx) = (dg.g(), dual.g(), &case.x, &case.dx);
    Ok([
        graph_facts::backprop_correct_inner(g, x, dx, seed)?,
        graph_facts::jvp_vec_eq_fderiv(dg_dual, g, x, dx)?,
        graph_facts::backprop_vec_eq_adjoint_fderiv(dg_dual, g, x, dx, seed)?,
        graph_facts::backprop_vec_eq_adjoint_by_probing(dg_dual, g, x, seed)?,
        graph_facts::graph_fderiv_correct_at(&dual, &dg, x, dx)?,
    ])
}

const MATMUL_FACTS: [&str; 4] = [
    "matmul.correct_inner",
    "matmulFderiv.jvp_eq",
    "matmul.vjp_eq_adjoint",
    "matmulFderiv.hasFDerivAt",
];
const SOFTMAX_FACTS: [&str; 4] = [
    "softmaxLast.correct_inner",
    "softmaxLastFderiv.jvp_eq",
    "softmaxLast.vjp_eq_adjoint",
    "softmaxLastFderiv.hasFDerivAt",
];

/// The four node facts of each attention-graph node, in [`node_facts`] order.
const GRAPH_NODE_FACTS: [[&str; 4]; 5] = [
    [
        "reshape.correct_inner",
        "reshapeFderiv.jvp_eq",
        "reshape.vjp_eq_adjoint",
        "reshapeFderiv.hasFDerivAt",
    ],
    [
        "swapFirstTwo3d.correct_inner",
        "swapFirstTwo3dFderiv.jvp_eq",
        "swapFirstTwo3d.vjp_eq_adjoint",
        "swapFirstTwo3dFderiv.hasFDerivAt",
    ],
    [
        "transpose3dLastTwo.correct_inner",
        "transpose3dLastTwoFderiv.jvp_eq",
        "transpose3dLastTwo.vjp_eq_adjoint",
        "transpose3dLastTwoFderiv.hasFDerivAt",
    ],
    [
        "scale.correct_inner",
        "scaleFderiv.jvp_eq",
        "scale.vjp_eq_adjoint",
        "scaleFderiv.hasFDerivAt",
    ],
    [
        "Matrix.matmul.correct_inner",
        "Matrix.matmulFderiv.jvp_eq",
        "Matrix.matmul.vjp_eq_adjoint",
        "Matrix.matmulFderiv.hasFDerivAt",
    ],
];

/// The MHA graph facts, in [`mha_facts`] order, for `mhaDGraph` (`(dx)`: along the
/// tangent; `(all)`: the whole adjoint, by probing every input coordinate).
const MHA_FACTS: [&str; 5] = [
    "mhaDGraph.backprop_correct_inner",
    "mhaDGraph.jvpVec_eq_fderiv",
    "mha_backpropVec_eq_adjoint_fderiv (dx)",
    "mha_backpropVec_eq_adjoint_fderiv (all)",
    "mhaDGraph.GraphFDerivCorrectAt",
];

/// The same for the PyTorch-layout block (`torch-layout`: not a Lean declaration, see
/// `docs/mha-layout.md`); `backprop=fderiv†` is `backpropVec_eq_adjoint_fderiv`.
const PYTORCH_MHA_FACTS: [&str; 5] = [
    "torch-layout MHA: backprop_correct_inner",
    "torch-layout MHA: jvpVec_eq_fderiv",
    "torch-layout MHA: backprop=fderiv† (dx)",
    "torch-layout MHA: backprop=fderiv† (all)",
    "torch-layout MHA: GraphFDerivCorrectAt",
];

/// Runs every fact on `cases` generated cases from `seed`, with `oracle` for `exp`
/// (use [`ExpOracle::hashed`]; [`ExpOracle::None`] makes the softmax facts error).
pub fn verify(seed: u64, cases: usize, oracle: &ExpOracle) -> Result<VerifyReport, SpecError> {
    let mut gen = CaseGen::new(seed);
    let mut report = VerifyReport {
        seed,
        cases,
        facts: Vec::new(),
    };
    for _ in 0..cases {
        for (names, case) in [
            (MATMUL_FACTS, gen.matmul_case()?),
            (SOFTMAX_FACTS, gen.softmax_last_case()?),
        ] {
            for (name, ok) in names.iter().zip(node_facts(&case, oracle)?) {
                report.record(name, ok);
            }
        }
        vector_facts(&mut gen, &mut report, oracle)?;
        graph_facts_case(&mut gen, &mut report, oracle)?;
    }
    Ok(report)
}

fn graph_facts_case(
    gen: &mut CaseGen,
    report: &mut VerifyReport,
    oracle: &ExpOracle,
) -> Result<(), SpecError> {
    let cases = [
        gen.reshape_case()?,
        gen.swap_first_two3d_case()?,
        gen.transpose3d_last_two_case()?,
        gen.scale_case()?,
        gen.matmul2d_case()?,
    ];
    for (names, case) in GRAPH_NODE_FACTS.iter().zip(&cases) {
        for (name, ok) in names.iter().zip(node_facts(case, oracle)?) {
            report.record(name, ok);
        }
    }
    let case = gen.mha_case()?;
    for (names, layout) in [
        (MHA_FACTS, Layout::Lean),
        (PYTORCH_MHA_FACTS, Layout::PyTorch),
    ] {
        for (name, ok) in names.iter().zip(mha_facts(&case, layout, oracle)?) {
            report.record(name, ok);
        }
    }
    Ok(())
}

fn vector_facts(
    gen: &mut CaseGen,
    report: &mut VerifyReport,
    oracle: &ExpOracle,
) -> Result<(), SpecError> {
    let (h, m, n, p) = (gen.dim(), gen.dim(), gen.dim(), gen.dim());
    report.record("size3_eq", facts::size3_eq(h, m, n)?);
    let (x, r) = (gen.vector(h * n), gen.vector(h * n));
    report.record(
        "heads_unheads_inverse",
        facts::heads_unheads_inverse(h, n, &x, &r)?,
    );
    report.record(
        "headsCLM_adjoint_unheadsCLM",
        facts::heads_clm_adjoint_unheads_clm(h, n, &x, &r)?,
    );
    let v: Vec<Vec<Rational>> = (0..3).map(|_| gen.vector(n)).collect();
    report.record(
        "inner_softmaxJvp_comm",
        facts::inner_softmax_jvp_comm(&v[0], &v[1], &v[2], oracle)?,
    );
    report.record(
        "softmaxJvp_eq_deriv",
        facts::softmax_jvp_eq_deriv(&v[0], &v[1], oracle)?,
    );
    report.record(
        "hasFDerivAt_softmaxVec",
        facts::has_fderiv_at_softmax_vec(&v[0], &v[1], oracle)?,
    );
    let mn: Vec<Vec<Rational>> = (0..3).map(|_| gen.vector(m * n)).collect();
    report.record(
        "jvpMN_eq_derivMN",
        facts::jvp_mn_eq_deriv_mn(m, n, &mn[0], &mn[1], oracle)?,
    );
    report.record(
        "inner_jvpMN_comm",
        facts::inner_jvp_mn_comm(m, n, &mn[0], &mn[1], &mn[2], oracle)?,
    );
    report.record(
        "hasFDerivAt_forwardMN",
        facts::has_fderiv_at_forward_mn(m, n, &mn[0], &mn[1], oracle)?,
    );
    let bil = super::batched::matmul_bilin(h, m, n, p)?;
    let a = [gen.vector(h * m * n), gen.vector(h * m * n)];
    let b = [gen.vector(h * n * p), gen.vector(h * n * p)];
    let c = gen.rational();
    report.record(
        "matmulBilin_bilinear",
        facts::bilinear::<Rational>(&bil, [&a[0], &a[1]], [&b[0], &b[1]], &c)?,
    );
    report.record(
        "matmulBilin_adjoint",
        facts::clm_adjoint_identity(&*bil.left(&a[0])?, &b[0], &gen.vector(h * m * p))?
            && facts::clm_adjoint_identity(&*bil.flip(&b[0])?, &a[0], &gen.vector(h * m * p))?,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_passes_every_fact_and_counts_cases() {
        let report = verify(7, 20, &ExpOracle::hashed(3)).unwrap();
        assert!(report.all_passed(), "{report:?}");
        assert!(report.facts.iter().all(|f| f.passed == 20), "{report:?}");
        assert_eq!(report.facts.len(), 19 + 20 + 10);
    }

    #[test]
    fn verify_without_an_exp_oracle_is_an_error() {
        let err = verify(7, 10, &ExpOracle::None).unwrap_err();
        assert!(matches!(err, SpecError::Scalar(_)));
    }
}
