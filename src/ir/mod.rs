//! The expression IR: an `egg` language of tensor expressions ([`lang`]), its typing
//! and shape inference ([`shape`]), the e-class analysis the rules' conditions read
//! ([`analysis`]) and an exact evaluator ([`eval`]) that gives every term its meaning.

pub mod analysis;
pub mod eval;
pub mod lang;
pub mod layout;
pub mod random;
pub mod shape;

pub use lang::{params, parse_term, Const, Expr, Op, ParamName};
