//! The rule-file loader: `rules::parse_rules_file` on one TOML file, then building the
//! egg rewrites of the rules it accepts. Any UTF-8 text must give rules or a
//! non-empty error, never a panic.
#![no_main]

use fderiv::rules::{RuleSet, Source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let files = [("fuzz.toml".to_string(), text.to_string())];
    match RuleSet::from_files(Source::Embedded, &files) {
        Ok(set) => {
            if let Err(e) = set.rewrites() {
                assert!(!e.to_string().is_empty());
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
