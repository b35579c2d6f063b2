//! The spec mirror: an executable, exact Rust mirror of the TorchLean module
//! `NN.Proofs.Autograd.Tape.Nodes.Batched` and the declarations it leans on.
//!
//! Every Lean declaration is one Rust item, generic over [`crate::scalar::Scalar`]
//! (f64, exact rationals, dual numbers), with a doc comment naming it. Vectors are
//! flattened row-major exactly as Mathlib's `finProdFinEquiv`. The proofs become exact
//! checks in [`facts`], run over random cases from [`cases`]. This module depends on
//! [`crate::scalar`] only: it is the independent oracle for the rest of the crate.
//! See `docs/lean-correspondence.md` for the declaration-by-declaration table.

pub mod arithmetic;
pub mod batched;
pub mod bilinear;
pub mod cases;
pub mod clm;
pub mod context;
pub mod error;
pub mod explicit;
pub mod facts;
pub mod graph;
pub mod graph_cases;
pub mod graph_facts;
pub mod heads;
pub mod matrix;
pub mod matrix_node;
pub mod mha;
pub mod node;
pub mod report;
pub mod shape;
pub mod shape_ops;
pub mod softmax_last_axis;
pub mod softmax_vec;
pub mod vector;

pub use error::SpecError;
