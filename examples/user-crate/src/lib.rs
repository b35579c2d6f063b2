//! A user's crate: the kernels fderiv generated for `fderiv.toml`, compiled here.

/// The generated kernels (`fderiv emit --manifest fderiv.toml`).
#[rustfmt::skip]
#[path = "../kernels/mod.rs"]
pub mod kernels;
