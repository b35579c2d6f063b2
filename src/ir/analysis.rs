//! The e-class analysis the rules' side conditions read.
//!
//! Per e-class it records facts that hold for every member (they are equal terms), so
//! merging takes the OR: a class is tangent-free as soon as one member is shown to be.

use super::lang::Op;
use egg::{Analysis, DidMerge, EGraph, Id, Symbol};

/// Facts about an e-class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The class does not depend on any tangent (dA, dX, ...): it is a constant for
    /// the linear map being transposed.
    pub tangent_free: bool,
    /// The class is constant along the last axis (built from row sums and numbers),
    /// so it may move into or out of a row sum.
    pub row_const: bool,
    /// The class is a number: built from constants and runtime parameters (no
    /// input occurs in it), so its tangent is zero.
    pub constant: bool,
    /// The class contains a named input.
    pub input: Option<Symbol>,
}

/// The analysis computing [`Facts`].
#[derive(Debug, Default, Clone)]
pub struct TensorAnalysis;

/// The e-graph fderiv derives in.
pub type Graph = EGraph<Op, TensorAnalysis>;

impl Analysis<Op> for TensorAnalysis {
    type Data = Facts;

    fn make(egraph: &mut Graph, enode: &Op, _id: Id) -> Facts {
        let f = |id: &Id| &egraph[*id].data;
        let all = |ids: &[Id], p: fn(&Facts) -> bool| ids.iter().all(|i| p(f(i)));
        let tf = |x: &Facts| x.tangent_free;
        let rc = |x: &Facts| x.row_const;
        let (tangent_free, row_const) = match enode {
            Op::Num(_) | Op::Param(_) => (true, true),
            Op::Input(_) => (true, false),
            Op::Tan(_) | Op::Jvp(_) | Op::Vjp(_) | Op::Adj(_) | Op::Grad(_) | Op::GAdd(_) => {
                (false, false)
            }
            Op::RowSum(c) => (all(c, tf), true),
            Op::Add(c) | Op::Sub(c) | Op::Mul(c) | Op::Div(c) => (all(c, tf), all(c, rc)),
            Op::Neg(c) | Op::Inv(c) | Op::Exp(c) => (all(c, tf), all(c, rc)),
            Op::Bmm(c) => (all(c, tf), false),
            Op::Split(c)
            | Op::Merge(c)
            | Op::Reshape(c)
            | Op::Unreshape(c)
            | Op::Flat(c)
            | Op::Unflat(c) => (all(c, tf), false),
            Op::Swap(c) => (all(c, tf), false),
            Op::Transpose(c) | Op::Softmax(c) => (all(c, tf), false),
        };
        let input = match enode {
            Op::Input(s) => Some(*s),
            _ => None,
        };
        let constant = match enode {
            Op::Num(_) | Op::Param(_) => true,
            Op::Add(c) | Op::Sub(c) | Op::Mul(c) | Op::Div(c) => all(c, |x| x.constant),
            Op::Neg(c) | Op::Inv(c) | Op::Exp(c) => all(c, |x| x.constant),
            _ => false,
        };
        Facts {
            tangent_free,
            row_const,
            constant,
            input,
        }
    }

    fn merge(&mut self, a: &mut Facts, b: Facts) -> DidMerge {
        let before = a.clone();
        a.tangent_free |= b.tangent_free;
        a.row_const |= b.row_const;
        a.constant |= b.constant;
        a.input = a.input.or(b.input);
        DidMerge(*a != before, *a != b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::parse_term;

    fn facts(text: &str) -> Facts {
        let mut g = Graph::default();
        let id = g.add_expr(&parse_term(text).unwrap());
        g.rebuild();
        g[id].data.clone()
    }

    #[test]
    fn tangent_dependence_and_row_constancy() {
        assert!(facts("(bmm A (T B))").tangent_free);
        assert!(!facts("(bmm A (tan B))").tangent_free);
        assert!(facts("(inv (rowsum (exp X)))").row_const);
        assert!(!facts("(exp X)").row_const);
        assert_eq!(facts("X").input, Some(Symbol::from("X")));
    }

    #[test]
    fn merge_is_an_or_equal_terms_share_facts() {
        let mut g = Graph::default();
        let a = g.add_expr(&parse_term("(- (tan X) (tan X))").unwrap());
        let z = g.add_expr(&parse_term("0").unwrap());
        assert!(!g[a].data.tangent_free);
        g.union(a, z);
        g.rebuild();
        assert!(g[a].data.tangent_free);
    }
}
