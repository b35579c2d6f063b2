//! The term parser and shape inference: `ir::parse_term`, `ir::shape::infer_term` and
//! `derive::Request::new` (what `derive --expr` runs before egg). Any UTF-8 text must
//! give a term or a non-empty error, never a panic; a parsed term must print to text
//! that re-parses to itself.
#![no_main]

use fderiv::derive::{Mode, Request};
use fderiv::ir::parse_term;
use fderiv::ir::shape::{infer_term, parse_shape, ShapeEnv};
use libfuzzer_sys::fuzz_target;

fn env(pairs: &[(&str, &str)]) -> ShapeEnv {
    pairs
        .iter()
        .map(|(k, v)| ((*k).into(), parse_shape(v).expect("a valid shape")))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let term = match parse_term(text) {
        Ok(t) => t,
        Err(e) => {
            assert!(!e.is_empty());
            return;
        }
    };
    let printed = term.to_string();
    assert_eq!(parse_term(&printed).as_ref(), Ok(&term), "{printed}");
    let envs = [
        env(&[("A", "h,m,n"), ("B", "h,n,p"), ("X", "2,3,4")]),
        env(&[("A", "0,1,0"), ("B", "0,0,3"), ("X", "h,m,m")]),
    ];
    for shapes in envs {
        if let Err(e) = infer_term(&term, &shapes) {
            assert!(!e.to_string().is_empty());
        }
        for mode in [Mode::Jvp, Mode::Vjp] {
            if let Err(e) = Request::new(text, shapes.clone(), None, mode) {
                assert!(!e.to_string().is_empty());
            }
        }
    }
});
