//! The kernel manifest: `manifest::parse_manifest` on one TOML file. Any UTF-8 text
//! must give kernels or a non-empty error naming the file, never a panic; every
//! kernel accepted names an input it reads and a mode.
#![no_main]

use fderiv::manifest::parse_manifest;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_manifest("fuzz.toml", text, Path::new("base")) {
        Ok(kernels) => {
            for k in kernels {
                assert!(!k.name.is_empty() && !k.modes.is_empty());
            }
        }
        Err(e) => assert!(e.to_string().contains("fuzz.toml"), "{e}"),
    }
});
