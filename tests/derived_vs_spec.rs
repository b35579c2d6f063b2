//! Property: every derived JVP and VJP, evaluated exactly over ℚ on random shapes
//! (sizes 0 included) and points, equals the spec mirror's jvp and vjp, the dual-number
//! derivative and the adjoint of the derivative.

use fderiv::derive::{Derivation, Limits};
use fderiv::manifest::{KernelMode, Manifest, SpecOp};
use fderiv::outcome::Format;
use fderiv::rules::RuleSet;
use fderiv::verify::{derived_rungs, Derived, VerifyArgs};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::OnceLock;

type Kernel = (String, Option<SpecOp>, Derivation, Derivation);

/// Every kernel of the crate's manifest, derived once.
fn derivations() -> &'static Vec<Kernel> {
    static CELL: OnceLock<Vec<Kernel>> = OnceLock::new();
    CELL.get_or_init(|| {
        let rules = RuleSet::embedded().expect("the embedded rules load");
        let manifest = Manifest::embedded().expect("the manifest loads");
        manifest
            .kernels
            .iter()
            .map(|def| {
                let d = |mode| {
                    def.build(mode, &rules, &Limits::default().unexplained())
                        .expect("builds")
                        .derivation
                        .expect("a derivative")
                };
                (
                    def.name.clone(),
                    def.spec,
                    d(KernelMode::Jvp),
                    d(KernelMode::Vjp),
                )
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn derived_derivatives_equal_the_spec_mirror(seed in any::<u64>(), max_dim in 0usize..=3) {
        let args = VerifyArgs {
            cases: 4, seed, max_dim, shapes: vec![], format: Format::Text,
            manifest: None, kernels: vec![], random_terms: 0,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for (name, spec, jvp, vjp) in derivations() {
            let k = Derived { name, jvp: Some(jvp), vjp: Some(vjp), spec: *spec };
            let rows = derived_rungs(&k, &args, &mut rng).expect("evaluates");
            prop_assert_eq!(rows.len(), if spec.is_some() { 5 } else { 3 });
            for row in rows {
                prop_assert!(row.holds(), "{} {} {}: {:?}", row.rung, row.op, row.mode, row.count.first_failure);
            }
        }
    }
}
