//! Snapshots of the derived derivatives and their traces (stored in the top-level
//! `snapshots/` folder; review every change like code: `cargo insta review`).

use fderiv::derive::{derive_unchecked, Limits, Mode};
use fderiv::manifest::Manifest;
use fderiv::rules::RuleSet;
use fderiv::trace::trace;

#[path = "support/snap.rs"]
mod snap;
use snap::snapshot;

fn derive_and_snapshot(kernel: &str, mode: Mode) {
    let rules = RuleSet::embedded().expect("the embedded rules load");
    let manifest = Manifest::embedded().expect("the manifest loads");
    let def = manifest.kernel(kernel).expect("a kernel of the manifest");
    let request = def.request(mode).expect("a request");
    let d = derive_unchecked(&request, &rules, &Limits::default()).expect("derives");
    let t = trace(&d, &rules);
    let stem = format!("{kernel}_{mode}");
    snapshot(&stem, &d.result.to_string());
    snapshot(&format!("{stem}_trace"), &t.to_text());
    snapshot(&format!("{stem}_trace_json"), &t.to_json());
}

#[test]
fn matmul_jvp() {
    derive_and_snapshot("matmul", Mode::Jvp);
}

#[test]
fn matmul_vjp() {
    derive_and_snapshot("matmul", Mode::Vjp);
}

#[test]
fn softmax_last_jvp() {
    derive_and_snapshot("softmax_last", Mode::Jvp);
}

#[test]
fn softmax_last_vjp() {
    derive_and_snapshot("softmax_last", Mode::Vjp);
}
