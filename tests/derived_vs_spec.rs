//! Property: every derived JVP and VJP, evaluated exactly over ℚ on random shapes
//! (sizes 0 included) and points, equals the spec mirror's jvp and vjp, the dual-number
//! derivative and the adjoint of the derivative.

use fderiv::derive::{derive_unchecked, Derivation, Limits, Mode, SpecOp};
use fderiv::outcome::Format;
use fderiv::rules::RuleSet;
use fderiv::verify::{derived_rungs, VerifyArgs};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::OnceLock;

fn derivations() -> &'static Vec<(SpecOp, Derivation, Derivation)> {
    static CELL: OnceLock<Vec<(SpecOp, Derivation, Derivation)>> = OnceLock::new();
    CELL.get_or_init(|| {
        let rules = RuleSet::embedded().expect("the embedded rules load");
        [SpecOp::Matmul, SpecOp::SoftmaxLast]
            .into_iter()
            .map(|op| {
                let d = |mode| {
                    let req = op.request(mode).expect("request");
                    derive_unchecked(&req, &rules, &Limits::default()).expect("derives")
                };
                (op, d(Mode::Jvp), d(Mode::Vjp))
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn derived_derivatives_equal_the_spec_mirror(seed in any::<u64>(), max_dim in 0usize..=3) {
        let args = VerifyArgs { cases: 4, seed, max_dim, shapes: vec![], format: Format::Text };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for (op, jvp, vjp) in derivations() {
            let rows = derived_rungs(*op, jvp, vjp, &args, &mut rng).expect("evaluates");
            for row in rows {
                prop_assert!(row.holds(), "{} {} {}: {:?}", row.rung, row.op, row.mode, row.count.first_failure);
            }
        }
    }
}
