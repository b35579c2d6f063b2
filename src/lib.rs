//! fderiv: trustworthy derivatives of tensor kernels.
//!
//! A Rust mirror of TorchLean's `NN.Proofs.Autograd.Tape.Nodes.Batched` ([`spec`]) and a
//! symbolic differentiation engine built on `egg`. See `docs/ARCHITECTURE.md`.

pub mod cli;
pub mod scalar;
pub mod spec;
