//! The `.npy` reader: `run::npy::decode_tensor` on arbitrary bytes, with a small
//! element limit so no input can ask for much memory. Every input must give a tensor
//! or a non-empty error, never a panic; a tensor read must encode and read back to the
//! same bits.
#![no_main]

use fderiv::run::npy::{decode_tensor, encode_tensor};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.npy");
    match decode_tensor(data, path, 1 << 16) {
        Ok(t) => {
            let bytes = encode_tensor(&t).expect("encoding into memory");
            let back = decode_tensor(&bytes, path, 1 << 16).expect("re-reading what was written");
            assert_eq!(back.dims(), t.dims());
            let bits = |x: &[f64]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(back.data()), bits(t.data()));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
