//! Random well-typed terms, for checking every stage on terms no kernel author wrote:
//! every operator, repeated inputs (as in A·A), chains of transposes, shared subterms
//! and constants. All inputs are h×n×n, so every product and transpose is well-typed.

use super::{parse_term, Expr};
use rand::seq::SliceRandom;
use rand::Rng;

/// The names of the inputs random terms draw from.
pub const INPUTS: [&str; 3] = ["A", "B", "C"];

/// What a random term may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermShape {
    /// Depth of the deepest path (≥ 1).
    pub depth: usize,
    /// Whether `exp`, `softmax`, `inv` and `/` may occur (denominators are always
    /// positive: `exp`, `softmax`, or a positive constant plus `exp`).
    pub smooth: bool,
}

struct Gen<'a, R: Rng> {
    rng: &'a mut R,
    shape: TermShape,
    pool: Vec<String>,
}

impl<R: Rng> Gen<'_, R> {
    fn constant(&mut self) -> &'static str {
        ["2", "-1", "1/2", "3/4", "-2"][self.rng.gen_range(0..5)]
    }

    /// A tensor term of depth `d`: a fresh first child keeps the depth exact; other
    /// children may reuse an earlier subterm (sharing).
    fn term(&mut self, d: usize) -> String {
        if d <= 1 {
            return INPUTS[self.rng.gen_range(0..INPUTS.len())].to_string();
        }
        let first = self.term(d - 1);
        let other = if !self.pool.is_empty() && self.rng.gen_bool(0.3) {
            self.pool
                .choose(self.rng)
                .cloned()
                .unwrap_or_else(|| first.clone())
        } else {
            let depth = self.rng.gen_range(1..d);
            self.term(depth)
        };
        let mut ops: Vec<u8> = (0..10).collect();
        if self.shape.smooth {
            ops.extend(10..14);
        }
        let t = match ops.choose(self.rng).copied().unwrap_or(0) {
            0 => format!("(+ {first} {other})"),
            1 => format!("(- {first} {other})"),
            2 => format!("(* {first} {other})"),
            3 => format!("(bmm {first} {other})"),
            4 => format!("(bmm {first} {first})"),
            5 => format!("(T (T {first}))"),
            6 => format!("(bmm (T {first}) {other})"),
            7 => format!("(neg {first})"),
            8 => format!("(rowsum {first})"),
            9 => format!("(* {} {first})", self.constant()),
            10 => format!("(softmax {first})"),
            11 => format!("(exp (* 1/4 {first}))"),
            12 => format!("(/ {first} (+ 1 (exp {other})))"),
            _ => format!("(* {first} (inv (softmax {other})))"),
        };
        self.pool.push(t.clone());
        t
    }
}

/// A random well-typed term of `shape` over [`INPUTS`] (each h×n×n); the text it
/// builds always parses, so an error here is a bug in the generator.
pub fn random_term(rng: &mut impl Rng, shape: TermShape) -> Result<Expr, String> {
    let mut g = Gen {
        rng,
        shape,
        pool: Vec::new(),
    };
    let text = g.term(shape.depth.max(1));
    parse_term(&text)
}

/// The multiplicative degree of a term: the most input factors in one monomial
/// (`*` and `bmm` add, the rest keep the largest); `None` when it holds exp, softmax
/// or a reciprocal. f64 evaluation of a term of degree d on dyadic inputs k/2^j
/// (|k| ≤ 8, j ≤ 3) with small sizes is exact while 7·d stays well below 53 bits.
pub fn degree(e: &Expr) -> Option<usize> {
    use super::Op;
    let mut deg: Vec<usize> = Vec::with_capacity(e.as_ref().len());
    for node in e.as_ref() {
        let c = |i: &egg::Id| deg[usize::from(*i)];
        let d = match node {
            Op::Input(_) | Op::Tan(_) => 1,
            Op::Num(_) => 0,
            Op::Mul([a, b]) | Op::Bmm([a, b]) => c(a) + c(b),
            Op::Add([a, b]) | Op::Sub([a, b]) | Op::GAdd([a, b]) | Op::Grad([a, b]) => {
                c(a).max(c(b))
            }
            Op::Neg([a]) | Op::Transpose([a]) | Op::RowSum([a]) => c(a),
            _ => return None,
        };
        deg.push(d);
    }
    deg.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::shape::{infer_term, parse_shape, ShapeEnv, Ty};
    use rand::SeedableRng;

    #[test]
    fn random_terms_are_well_typed_and_deep() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let shapes: ShapeEnv = INPUTS
            .iter()
            .map(|n| (egg::Symbol::from(*n), parse_shape("h,n,n").unwrap()))
            .collect();
        for i in 0..200 {
            let e = random_term(
                &mut rng,
                TermShape {
                    depth: 4,
                    smooth: i % 2 == 0,
                },
            )
            .unwrap();
            assert!(e.as_ref().len() >= 4, "{e}");
            assert!(matches!(infer_term(&e, &shapes), Ok(Ty::Tensor(_))), "{e}");
        }
    }

    #[test]
    fn degree_counts_factors() {
        let d = |t: &str| degree(&parse_term(t).unwrap());
        assert_eq!(d("(bmm A (* B (+ A 2)))"), Some(3));
        assert_eq!(d("(rowsum (T A))"), Some(1));
        assert_eq!(d("(softmax A)"), None);
    }
}
