//! fderiv: trustworthy derivatives of tensor kernels.
//!
//! A Rust mirror of TorchLean's `NN.Proofs.Autograd.Tape.Nodes.Batched` ([`spec`]) and a
//! symbolic differentiation engine built on `egg`: terms ([`ir`]), rules as data
//! ([`rules`]), derivation ([`mod@derive`]) with readable traces ([`trace`]) in the notation of papers
//! ([`notation`]), all checked
//! exactly over ℚ ([`verify`]). See `docs/ARCHITECTURE.md`.

pub mod bench;
pub mod cli;
pub mod derive;
pub mod emit;
pub mod exec;
pub mod ir;
pub mod kernels;
pub mod lower;
pub mod manifest;
pub mod notation;
pub mod outcome;
pub mod rules;
pub mod run;
pub mod rungs;
pub mod scalar;
pub mod spec;
pub mod tensor;
pub mod trace;
pub mod verify;
