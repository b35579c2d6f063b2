//! [`SpecError`]: everything that can go wrong when the spec mirror is fed user data.

use crate::scalar::ScalarError;

/// What can go wrong in the spec mirror. Every path that takes user data returns one
/// of these instead of panicking.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A buffer's length disagrees with the dims it was declared with.
    #[error("{what}: dims {dims:?} need a buffer of length {expected}, got length {found}")]
    Length {
        /// Which buffer (e.g. `heads input`, `clm apply`).
        what: &'static str,
        /// The declared dims.
        dims: Vec<usize>,
        /// The length the dims require.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// The size product of some dims overflows `usize`.
    #[error("size of dims {dims:?} overflows usize")]
    Overflow {
        /// The dims whose product (or sum of sizes) overflowed.
        dims: Vec<usize>,
    },
    /// A context index names no input.
    #[error("context index {position} is out of range: the context has {len} inputs")]
    IndexOutOfRange {
        /// The requested position.
        position: usize,
        /// The number of inputs in the context.
        len: usize,
    },
    /// An index declares a shape that is not the shape of its context slot.
    #[error(
        "index {position} declares shape {declared:?}, but the context slot has shape {slot:?}"
    )]
    IdxShapeMismatch {
        /// The position in the context.
        position: usize,
        /// The shape the index declares.
        declared: Vec<usize>,
        /// The shape of the context slot.
        slot: Vec<usize>,
    },
    /// Two shapes that an operation needs to agree do not (e.g. matmul's inner dims).
    #[error("{op}: shapes {left:?} and {right:?} are incompatible")]
    Incompatible {
        /// The operation.
        op: &'static str,
        /// The first shape.
        left: Vec<usize>,
        /// The second shape.
        right: Vec<usize>,
    },
    /// An operation needs a shape of another rank.
    #[error("{op}: needs a rank-{expected} shape, got shape {shape:?}")]
    Rank {
        /// The operation.
        op: &'static str,
        /// The rank it needs.
        expected: usize,
        /// The shape given.
        shape: Vec<usize>,
    },
    /// A node appended to a graph reads another context than the graph's `Γ ++ ss`.
    #[error("Graph.snoc: the node reads context {found:?}, but the graph provides {expected:?}")]
    ContextMismatch {
        /// The graph's context `Γ ++ ss`.
        expected: Vec<Vec<usize>>,
        /// The node's context.
        found: Vec<Vec<usize>>,
    },
    /// Scalar arithmetic failed (division by zero, missing exp oracle, ...).
    #[error(transparent)]
    Scalar(#[from] ScalarError),
}
