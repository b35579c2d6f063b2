//! insta snapshots stored in the top-level `snapshots/` folder (shared by the snapshot
//! tests; review every change like code: `cargo insta review`).

/// Asserts `value` against `snapshots/NAME.snap`.
pub fn snapshot(name: &str, value: &str) {
    insta::with_settings!({
        snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, value);
    });
}
