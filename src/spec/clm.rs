//! Continuous linear maps with explicit adjoints, on flattened vectors.
//!
//! Mirrors the part of Mathlib's `ContinuousLinearMap` API the Lean module uses:
//! composition, sum and difference, `smulRight`, `ContinuousLinearMap.pi`,
//! `ContinuousLinearMap.proj`, and `Graph.castCLM`. A product space `Fin h → Vec n` is
//! flattened by concatenating its blocks (row-major, as `finProdFinEquiv`). Every
//! adjoint is written from the algebra (the adjoint of a composition is the reversed
//! composition of adjoints, of a sum the sum of adjoints, of `pi` the sum of the
//! components' adjoints), never by materializing a matrix.

use super::error::SpecError;
use super::vector::{add, check_len, scale, zeros};
use crate::scalar::Scalar;

/// A linear map `Vec dim_in → Vec dim_out` together with its adjoint
/// `Vec dim_out → Vec dim_in` (⟨L x, δ⟩ = ⟨x, L* δ⟩).
pub trait Clm<S: Scalar> {
    /// The input dimension.
    fn dim_in(&self) -> usize;
    /// The output dimension.
    fn dim_out(&self) -> usize;
    /// `L x`; an error if `x.len() != dim_in`.
    fn apply(&self, x: &[S]) -> Result<Vec<S>, SpecError>;
    /// `L* δ`; an error if `δ.len() != dim_out`.
    fn adjoint(&self, delta: &[S]) -> Result<Vec<S>, SpecError>;
}

/// A boxed linear map, as the combinators store them.
pub type BoxClm<S> = Box<dyn Clm<S>>;

fn check_in<S: Scalar>(map: &dyn Clm<S>, x: &[S]) -> Result<(), SpecError> {
    check_len("linear map input", &[map.dim_in()], map.dim_in(), x.len())
}

fn check_out<S: Scalar>(map: &dyn Clm<S>, delta: &[S]) -> Result<(), SpecError> {
    check_len(
        "adjoint input",
        &[map.dim_out()],
        map.dim_out(),
        delta.len(),
    )
}

/// `ContinuousLinearMap.comp outer inner`: `x ↦ outer (inner x)`; adjoint
/// `δ ↦ inner* (outer* δ)`.
pub struct Comp<S> {
    outer: BoxClm<S>,
    inner: BoxClm<S>,
}

/// `outer.comp inner`; an error if `inner`'s output is not `outer`'s input.
pub fn comp<S: Scalar>(outer: BoxClm<S>, inner: BoxClm<S>) -> Result<BoxClm<S>, SpecError> {
    if outer.dim_in() != inner.dim_out() {
        return Err(SpecError::Incompatible {
            op: "comp (outer input vs inner output)",
            left: vec![outer.dim_in()],
            right: vec![inner.dim_out()],
        });
    }
    Ok(Box::new(Comp { outer, inner }))
}

impl<S: Scalar> Clm<S> for Comp<S> {
    fn dim_in(&self) -> usize {
        self.inner.dim_in()
    }
    fn dim_out(&self) -> usize {
        self.outer.dim_out()
    }
    fn apply(&self, x: &[S]) -> Result<Vec<S>, SpecError> {
        self.outer.apply(&self.inner.apply(x)?)
    }
    fn adjoint(&self, delta: &[S]) -> Result<Vec<S>, SpecError> {
        self.inner.adjoint(&self.outer.adjoint(delta)?)
    }
}

/// `f + g` or `f - g` (Mathlib's `ContinuousLinearMap.add` / `sub`); the adjoint is
/// `f* ± g*`.
pub struct Sum<S> {
    left: BoxClm<S>,
    right: BoxClm<S>,
    subtract: bool,
}

fn sum<S: Scalar>(
    left: BoxClm<S>,
    right: BoxClm<S>,
    subtract: bool,
) -> Result<BoxClm<S>, SpecError> {
    if left.dim_in() != right.dim_in() || left.dim_out() != right.dim_out() {
        return Err(SpecError::Incompatible {
            op: if subtract { "sub" } else { "add" },
            left: vec![left.dim_in(), left.dim_out()],
            right: vec![right.dim_in(), right.dim_out()],
        });
    }
    Ok(Box::new(Sum {
        left,
        right,
        subtract,
    }))
}

/// `left + right`; an error unless both have the same dims.
pub fn clm_add<S: Scalar>(left: BoxClm<S>, right: BoxClm<S>) -> Result<BoxClm<S>, SpecError> {
    sum(left, right, false)
}

/// `left - right`; an error unless both have the same dims.
pub fn clm_sub<S: Scalar>(left: BoxClm<S>, right: BoxClm<S>) -> Result<BoxClm<S>, SpecError> {
    sum(left, right, true)
}

impl<S: Scalar> Sum<S> {
    fn combine(&self, a: Vec<S>, b: Vec<S>) -> Result<Vec<S>, SpecError> {
        if self.subtract {
            add(&a, &scale(&-S::one(), &b))
        } else {
            add(&a, &b)
        }
    }
}

impl<S: Scalar> Clm<S> for Sum<S> {
    fn dim_in(&self) -> usize {
        self.left.dim_in()
    }
    fn dim_out(&self) -> usize {
        self.left.dim_out()
    }
    fn apply(&self, x: &[S]) -> Result<Vec<S>, SpecError> {
        self.combine(self.left.apply(x)?, self.right.apply(x)?)
    }
    fn adjoint(&self, delta: &[S]) -> Result<Vec<S>, SpecError> {
        self.combine(self.left.adjoint(delta)?, self.right.adjoint(delta)?)
    }
}

/// `f.smulRight c` for a functional `f : E →L ℝ`: `x ↦ f(x) • c`; the adjoint is
/// `t ↦ f*(c • t)`. (Any `f` is accepted; its output is scaled by `c`.)
pub struct SmulRight<S> {
    f: BoxClm<S>,
    c: S,
}

/// `f.smulRight c`.
pub fn smul_right<S: Scalar>(f: BoxClm<S>, c: S) -> BoxClm<S> {
    Box::new(SmulRight { f, c })
}

impl<S: Scalar> Clm<S> for SmulRight<S> {
    fn dim_in(&self) -> usize {
        self.f.dim_in()
    }
    fn dim_out(&self) -> usize {
        self.f.dim_out()
    }
    fn apply(&self, x: &[S]) -> Result<Vec<S>, SpecError> {
        Ok(scale(&self.c, &self.f.apply(x)?))
    }
    fn adjoint(&self, delta: &[S]) -> Result<Vec<S>, SpecError> {
        check_out(self, delta)?;
        self.f.adjoint(&scale(&self.c, delta))
    }
}

/// `ContinuousLinearMap.pi f : E →L (Fin k → F)`, `x ↦ (i ↦ fᵢ x)` with the blocks
/// concatenated; the adjoint is `δ ↦ Σᵢ fᵢ* δᵢ`.
pub struct Pi<S> {
    dim_in: usize,
    dim_out: usize,
    components: Vec<BoxClm<S>>,
}

/// `ContinuousLinearMap.pi components`, every component a map from `Vec dim_in`; an
/// error if a component has another input dimension or the output size overflows.
pub fn pi<S: Scalar>(dim_in: usize, components: Vec<BoxClm<S>>) -> Result<BoxClm<S>, SpecError> {
    let mut dim_out = 0usize;
    for c in &components {
        if c.dim_in() != dim_in {
            return Err(SpecError::Incompatible {
                op: "pi (component input)",
                left: vec![dim_in],
                right: vec![c.dim_in()],
            });
        }
        dim_out = dim_out
            .checked_add(c.dim_out())
            .ok_or(SpecError::Overflow {
                dims: vec![dim_out, c.dim_out()],
            })?;
    }
    Ok(Box::new(Pi {
        dim_in,
        dim_out,
        components,
    }))
}

impl<S: Scalar> Clm<S> for Pi<S> {
    fn dim_in(&self) -> usize {
        self.dim_in
    }
    fn dim_out(&self) -> usize {
        self.dim_out
    }
    fn apply(&self, x: &[S]) -> Result<Vec<S>, SpecError> {
        check_in(self, x)?;
        let mut out = Vec::with_capacity(self.dim_out);
        for c in &self.components {
            out.extend(c.apply(x)?);
        }
        Ok(out)
    }
    fn adjoint(&self, delta: &[S]) -> Result<Vec<S>, SpecError> {
        check_out(self, delta)?;
        let mut acc = zeros(self.dim_in);
        let mut rest = delta;
        for c in &self.components {
            let (block, tail) = rest.split_at(c.dim_out());
            acc = add(&acc, &c.adjoint(block)?)?;
            rest = tail;
        }
        Ok(acc)
    }
}

/// `ContinuousLinearMap.proj i : (Fin count → Vec block) →L Vec block`, reading block
/// `i` of a concatenation; the adjoint places a block at `i` among zeros.
pub struct Proj {
    count: usize,
    block: usize,
    index: usize,
}

/// `ContinuousLinearMap.proj index` on `Fin count → Vec block`; an error if `index` is
/// out of range or `count·block` overflows.
pub fn proj<S: Scalar>(count: usize, block: usize, index: usize) -> Result<BoxClm<S>, SpecError> {
    super::shape::mat_size(count, block)?;
    if index >= count {
        return Err(SpecError::IndexOutOfRange {
            position: index,
            len: count,
        });
    }
    Ok(Box::new(Proj {
        count,
        block,
        index,
    }))
}

impl<S: Scalar> Clm<S> for Proj {
    fn dim_in(&self) -> usize {
        self.count * self.block
    }
    fn dim_out(&self) -> usize {
        self.block
    }
    fn apply(&self, x: &[S]) -> Result<Vec<S>, SpecError> {
        check_in(self, x)?;
        let start = self.index * self.block;
        Ok(x[start..start + self.block].to_vec())
    }
    fn adjoint(&self, delta: &[S]) -> Result<Vec<S>, SpecError> {
        check_out(self, delta)?;
        let mut out = zeros(self.count * self.block);
        let start = self.index * self.block;
        out[start..start + self.block].clone_from_slice(delta);
        Ok(out)
    }
}

/// The head-wise map `ContinuousLinearMap.pi (fun k => blocks[k].comp (proj k))` on
/// `Fin h → Vec block_in`, as `Batched.matmulBilin`, `SoftmaxLastAxis.derivMN` and
/// `Batched.softmaxLast` build it; `h = blocks.len()`.
pub fn headwise<S: Scalar>(
    block_in: usize,
    blocks: Vec<BoxClm<S>>,
) -> Result<BoxClm<S>, SpecError> {
    let count = blocks.len();
    let dim_in = super::shape::mat_size(count, block_in)?;
    let components = blocks
        .into_iter()
        .enumerate()
        .map(|(k, b)| comp(b, proj(count, block_in, k)?))
        .collect::<Result<Vec<_>, _>>()?;
    pi(dim_in, components)
}

/// `Graph.castCLM (h : a = b) : Vec a →L Vec b`, the identity reindexing along an
/// equality of dimensions; its adjoint is the cast back.
pub struct Cast {
    dim: usize,
}

/// `Graph.castCLM` from `Vec from` to `Vec to`; an error unless `from == to` (the
/// equality Lean's `h` proves).
pub fn cast_clm<S: Scalar>(from: usize, to: usize) -> Result<BoxClm<S>, SpecError> {
    if from != to {
        return Err(SpecError::Incompatible {
            op: "castCLM",
            left: vec![from],
            right: vec![to],
        });
    }
    Ok(Box::new(Cast { dim: from }))
}

impl<S: Scalar> Clm<S> for Cast {
    fn dim_in(&self) -> usize {
        self.dim
    }
    fn dim_out(&self) -> usize {
        self.dim
    }
    fn apply(&self, x: &[S]) -> Result<Vec<S>, SpecError> {
        check_in(self, x)?;
        Ok(x.to_vec())
    }
    fn adjoint(&self, delta: &[S]) -> Result<Vec<S>, SpecError> {
        check_out(self, delta)?;
        Ok(delta.to_vec())
    }
}
