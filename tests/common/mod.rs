//! Shared helpers: shapes from text, hand-built `.npy` headers, and the exact check of a derivation against the
//! semantics (dual-number JVP, adjoint by probing) on random points over ℚ.
#![allow(dead_code)]

use egg::Symbol;
use fderiv::derive::{derive_unchecked, Derivation, Limits, Mode, Request};
use fderiv::ir::eval::{eval, values_equal, Binding, Env};
use fderiv::ir::params;
use fderiv::ir::shape::{concrete_dims, parse_shape, ShapeEnv};
use fderiv::rules::soundness::{random_tensor, small_rational};
use fderiv::rules::RuleSet;
use fderiv::scalar::{ExpOracle, Rational};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// A shape environment from `name, shape` pairs.
pub fn shapes(pairs: &[(&str, &str)]) -> ShapeEnv {
    pairs
        .iter()
        .map(|(k, v)| (Symbol::from(*k), parse_shape(v).unwrap()))
        .collect()
}

/// A random point for `d`'s start term: sizes 0..=2 (1..=2 in the first half),
/// small rationals, parameters too.
pub fn random_env(d: &Derivation, rng: &mut ChaCha8Rng, nonempty: bool) -> Env<Rational> {
    let mut sizes = BTreeMap::new();
    let mut inputs = BTreeMap::new();
    for (name, shape) in &d.request.shapes {
        let dims = concrete_dims(shape, &mut sizes, |_| {
            rng.gen_range(usize::from(nonempty)..=2)
        });
        let value = random_tensor(rng, dims).unwrap();
        let tangent = random_tensor(rng, dims).unwrap();
        inputs.insert(*name, Binding { value, tangent });
    }
    let params = params(&d.request.forward)
        .into_iter()
        .map(|p| (p, small_rational(rng)))
        .collect();
    Env {
        inputs,
        params,
        oracle: ExpOracle::hashed(11),
    }
}

/// Derives `term` (every input varies) and checks start = result exactly at `cases`
/// random points: the derived JVP equals the dual-number derivative, the derived VJP
/// the adjoint by probing.
pub fn check_derived(term: &str, s: &ShapeEnv, mode: Mode, cases: usize) -> Derivation {
    let rules = RuleSet::embedded().unwrap();
    let req = Request::new(term, s.clone(), None, mode).unwrap();
    let d = derive_unchecked(&req, &rules, &Limits::default())
        .unwrap_or_else(|e| panic!("{term} {mode:?}: {e}"));
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for case in 0..cases {
        let env = random_env(&d, &mut rng, case < cases / 2);
        let want = eval(&d.start, &env).unwrap();
        let got = eval(&d.result, &env).unwrap();
        assert!(
            values_equal(&want, &got),
            "{term} {mode:?}: {} differs at {:?}",
            d.result,
            env.describe()
        );
    }
    d
}

/// A version-1 `.npy` header with the given dict text, padded as NumPy pads it.
pub fn raw_header(dict: &str) -> Vec<u8> {
    let mut text = dict.to_string();
    while !(10 + text.len() + 1).is_multiple_of(64) {
        text.push(' ');
    }
    text.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((text.len() as u16).to_le_bytes());
    out.extend(text.as_bytes());
    out
}

/// The bit patterns of f64 values: comparisons that tell apart −0 from 0 and every
/// NaN payload.
pub fn bits(xs: &[f64]) -> Vec<u64> {
    xs.iter().map(|v| v.to_bits()).collect()
}

/// A softmax row as the generator emitted it before the one-call `runtime::softmax_row`
/// (and as the unstreamed forward's rows are): the row's extrema, the shifted exps and
/// their sum into `out`, then the division. The reference the one-call and streamed
/// forms are held to, bit for bit.
pub fn three_call_softmax_row(x: &[f64], out: &mut [f64]) {
    let (top, low) = fderiv::kernels::runtime::max_min(x);
    let total = fderiv::kernels::runtime::exp_shift_sum(x, top, top - low, out, &[]);
    fderiv::kernels::runtime::divide_exps(out, total, top - low);
}

/// NaNs whose payloads reach the exp's table and scale bits differently.
pub const NANS: [u64; 4] = [
    0x7FF8_0000_0000_0000,
    0x7FF8_0000_0000_7FFF,
    0xFFF8_0000_0001_2345,
    0x7FFF_FFFF_FFFF_FFFF,
];
