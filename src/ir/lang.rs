//! The operators of the IR and its text form (s-expressions, parsed and printed by egg).
//!
//! All tensors are rank 3, h×m×n (head, row, column); numbers are scalars that
//! broadcast. `bmm` and `rowsum` act head by head: they are the headwise (`pi`) maps of
//! the spec. Softmax is a *definition* that the rules unfold, never a primitive
//! derivative.

use super::layout::Layout;
use crate::scalar::{parse_rational, Rational};
use egg::{define_language, Id, RecExpr, Symbol};
use std::fmt;
use std::str::FromStr;

/// An exact rational constant leaf, written `3`, `-1`, `1/2` or `0.25`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Const(pub Rational);

impl FromStr for Const {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Only text that starts like a number is a number: names stay names.
        let starts_numeric = s
            .trim_start_matches('-')
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit());
        if !starts_numeric {
            return Err(format!("{s} is not a number"));
        }
        parse_rational(s)
            .map(Const)
            .ok_or_else(|| format!("{s} is not a rational number"))
    }
}

impl Const {
    /// The number as a head count: a whole number ≥ 1.
    pub fn heads(&self) -> Option<usize> {
        if self.0.is_integer() && self.0 >= Rational::from_integer(1.into()) {
            self.0.to_integer().try_into().ok()
        } else {
            None
        }
    }
}

impl fmt::Display for Const {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A runtime scalar parameter, written `@c`: a number bound when the kernel runs
/// (`Env::params` in the evaluator, a 1×1×1 plan input of role `Param`, an `f64`
/// argument of a generated kernel), never differentiated.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParamName(pub Symbol);

impl FromStr for ParamName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s
            .strip_prefix('@')
            .ok_or_else(|| format!("{s} is not @name"))?;
        let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ok {
            Ok(ParamName(Symbol::from(name)))
        } else {
            Err(format!("{s} is not @name"))
        }
    }
}

impl fmt::Display for ParamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}

define_language! {
    /// One operator of the tensor IR: `+ - * /` entrywise (a number broadcasts),
    /// `neg`, `inv` (reciprocal), `exp`; `rowsum` (row sum along the last axis,
    /// broadcast back); `bmm` (batched matmul (h×m×n)·(h×n×p), head by head); `T`
    /// (transpose of the last two axes); `softmax` (along the last axis, a definition
    /// the rules unfold); `tan` (the tangent dA of input A); `jvp` (Fréchet derivative
    /// applied to the tangents); `vjp e G` (its adjoint applied to the cotangent G);
    /// `adj E G` (adjoint of a tangent-linear E applied to G); `grad A W` (W in input
    /// A's slot); `g+` (sum of gradients); the head layout operators `split`,
    /// `merge`, `reshape`, `unreshape`, `flat`, `unflat` (head count `k`, a whole
    /// number, first: `(split 2 X)`) and `swap` (see [`super::layout`]); rational
    /// numbers; runtime scalar parameters `@c`; input names.
    pub enum Op {
        "+" = Add([Id; 2]),
        "-" = Sub([Id; 2]),
        "*" = Mul([Id; 2]),
        "/" = Div([Id; 2]),
        "neg" = Neg([Id; 1]),
        "inv" = Inv([Id; 1]),
        "exp" = Exp([Id; 1]),
        "rowsum" = RowSum([Id; 1]),
        "bmm" = Bmm([Id; 2]),
        "T" = Transpose([Id; 1]),
        "softmax" = Softmax([Id; 1]),
        "tan" = Tan([Id; 1]),
        "jvp" = Jvp([Id; 1]),
        "vjp" = Vjp([Id; 2]),
        "adj" = Adj([Id; 2]),
        "grad" = Grad([Id; 2]),
        "g+" = GAdd([Id; 2]),
        "split" = Split([Id; 2]),
        "merge" = Merge([Id; 2]),
        "reshape" = Reshape([Id; 2]),
        "unreshape" = Unreshape([Id; 2]),
        "flat" = Flat([Id; 2]),
        "unflat" = Unflat([Id; 2]),
        "swap" = Swap([Id; 1]),
        Num(Const),
        Param(ParamName),
        Input(Symbol),
    }
}

/// A term of the IR.
pub type Expr = RecExpr<Op>;

/// The runtime parameters a term uses (`@c` → `c`), sorted, each once.
pub fn params(expr: &Expr) -> Vec<Symbol> {
    let mut out: Vec<Symbol> = expr
        .as_ref()
        .iter()
        .filter_map(|n| match n {
            Op::Param(p) => Some(p.0),
            _ => None,
        })
        .collect();
    out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    out.dedup();
    out
}

/// Parses a term from its s-expression text.
pub fn parse_term(text: &str) -> Result<Expr, String> {
    text.parse::<Expr>().map_err(|e| e.to_string())
}

impl Op {
    /// A layout operator's kind, head-count child (none for `swap`) and operand.
    pub fn layout(&self) -> Option<(Layout, Option<Id>, Id)> {
        Some(match self {
            Op::Split([k, x]) => (Layout::Split, Some(*k), *x),
            Op::Merge([k, x]) => (Layout::Merge, Some(*k), *x),
            Op::Reshape([k, x]) => (Layout::Reshape, Some(*k), *x),
            Op::Unreshape([k, x]) => (Layout::Unreshape, Some(*k), *x),
            Op::Flat([k, x]) => (Layout::Flat, Some(*k), *x),
            Op::Unflat([k, x]) => (Layout::Unflat, Some(*k), *x),
            Op::Swap([x]) => (Layout::Swap, None, *x),
            _ => return None,
        })
    }

    /// The operators that must not survive derivation.
    pub fn is_derivative_operator(&self) -> bool {
        matches!(self, Op::Jvp(_) | Op::Vjp(..) | Op::Adj(..))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_terms_reparse_to_themselves() {
        for text in [
            "(jvp (softmax X))",
            "(- (* (softmax X) (tan X)) (* (softmax X) (rowsum (* (softmax X) (tan X)))))",
            "(g+ (grad A (bmm G (T B))) (grad B (bmm (T A) G)))",
            "(* -1/2 (exp X))",
            "(* @c (bmm Q (T K)))",
            "(merge 2 (bmm (softmax (split 2 X)) (reshape 2 Y)))",
            "(flat 4 (swap (unreshape 4 (unflat 4 X))))",
        ] {
            let e = parse_term(text).unwrap();
            assert_eq!(e.to_string(), text);
            assert_eq!(parse_term(&e.to_string()).unwrap(), e);
        }
    }

    #[test]
    fn unknown_operators_and_arity_are_rejected() {
        assert!(parse_term("(frob X)").is_err());
        assert!(parse_term("(bmm X)").is_err());
        assert!(parse_term("(+ X").is_err());
        assert_eq!(
            params(&parse_term("(* @c (+ @b @c))").unwrap()),
            ["b", "c"].map(Symbol::from)
        );
    }
}
