//! Contexts, `CtxVec`, `Idx`, `CtxVec.get` and `CtxVec.getCLM`
//! (`NN/Proofs/Autograd/Tape/Nodes/Context.lean`, `.../Core/FDeriv.lean`).
//!
//! A context Γ is a list of input shapes; a `CtxVec Γ` is all inputs concatenated into
//! one vector (a plain `Vec<S>` of length [`Context::size`]). An [`Idx`] picks one
//! input and remembers its shape; two indices may name the same input.

use super::clm::{cast_clm, comp, BoxClm, Clm};
use super::error::SpecError;
use super::shape::shape_size;
use super::vector::{check_len, zeros};
use crate::scalar::Scalar;

/// A context Γ: the shapes of a node's inputs, with their checked sizes and offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    shapes: Vec<Vec<usize>>,
    offsets: Vec<usize>,
    sizes: Vec<usize>,
    size: usize,
}

impl Context {
    /// The context with these input shapes; an error if a size or the total overflows.
    pub fn new(shapes: Vec<Vec<usize>>) -> Result<Self, SpecError> {
        let mut offsets = Vec::with_capacity(shapes.len());
        let mut sizes = Vec::with_capacity(shapes.len());
        let mut size = 0usize;
        for s in &shapes {
            let n = shape_size(s)?;
            offsets.push(size);
            sizes.push(n);
            size = size.checked_add(n).ok_or_else(|| SpecError::Overflow {
                dims: sizes.clone(),
            })?;
        }
        Ok(Context {
            shapes,
            offsets,
            sizes,
            size,
        })
    }

    /// The input shapes.
    pub fn shapes(&self) -> &[Vec<usize>] {
        &self.shapes
    }

    /// `ctxSize Γ`: the length of a `CtxVec Γ`.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Concatenates one buffer per input into a `CtxVec Γ`, checking every length.
    pub fn ctx_vec<S: Scalar>(&self, inputs: &[Vec<S>]) -> Result<Vec<S>, SpecError> {
        check_len(
            "context input count",
            &[self.shapes.len()],
            self.shapes.len(),
            inputs.len(),
        )?;
        let mut out = Vec::with_capacity(self.size);
        for ((input, shape), &n) in inputs.iter().zip(&self.shapes).zip(&self.sizes) {
            check_len("context input", shape, n, input.len())?;
            out.extend(input.iter().cloned());
        }
        Ok(out)
    }

    /// Checks that `x` is a `CtxVec Γ`.
    pub fn check<S: Scalar>(&self, x: &[S]) -> Result<(), SpecError> {
        check_len("context vector", &[self.size], self.size, x.len())
    }

    /// Re-validates an index against this context (it may have been made for another
    /// one): the slot at its position must exist and have its shape.
    pub fn check_idx(&self, idx: &Idx) -> Result<(), SpecError> {
        let again = self.idx(idx.position(), idx.shape())?;
        if again == *idx {
            Ok(())
        } else {
            Err(SpecError::Incompatible {
                op: "index made for another context",
                left: vec![self.size()],
                right: idx.shape().to_vec(),
            })
        }
    }

    /// `Idx Γ s`: the input at `position`, declared with shape `shape`; an error if the
    /// position is out of range or the slot has another shape (naming both shapes).
    pub fn idx(&self, position: usize, shape: &[usize]) -> Result<Idx, SpecError> {
        let slot = self
            .shapes
            .get(position)
            .ok_or(SpecError::IndexOutOfRange {
                position,
                len: self.shapes.len(),
            })?;
        if slot.as_slice() != shape {
            return Err(SpecError::IdxShapeMismatch {
                position,
                declared: shape.to_vec(),
                slot: slot.clone(),
            });
        }
        Ok(Idx {
            position,
            shape: shape.to_vec(),
            offset: self.offsets[position],
            len: self.sizes[position],
            ctx_size: self.size,
        })
    }
}

/// `Idx Γ s`: a position `i` in Γ with a proof `Γ.get i = s` (here: checked when made
/// by [`Context::idx`]). Remembers where its block sits in a `CtxVec Γ`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idx {
    position: usize,
    shape: Vec<usize>,
    offset: usize,
    len: usize,
    ctx_size: usize,
}

impl Idx {
    /// The position in the context.
    pub fn position(&self) -> usize {
        self.position
    }
    /// The declared shape `s`.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// `Shape.size s`.
    pub fn size(&self) -> usize {
        self.len
    }

    /// The dims of the declared shape, which must have rank `R` (for the operation
    /// `op`, named in the error).
    pub fn dims<const R: usize>(&self, op: &'static str) -> Result<[usize; R], SpecError> {
        <[usize; R]>::try_from(self.shape.as_slice()).map_err(|_| SpecError::Rank {
            op,
            expected: R,
            shape: self.shape.clone(),
        })
    }

    /// `CtxVec.get idx x`: the block of `x` this index names.
    pub fn get<S: Scalar>(&self, x: &[S]) -> Result<Vec<S>, SpecError> {
        check_len("context vector", &[self.ctx_size], self.ctx_size, x.len())?;
        Ok(x[self.offset..self.offset + self.len].to_vec())
    }

    /// `CtxVec.single idx v`: the block `v` placed at this index among zeros (a
    /// `CtxVec Γ`); the adjoint of [`Idx::get`].
    pub fn single<S: Scalar>(&self, v: &[S]) -> Result<Vec<S>, SpecError> {
        GetRaw { idx: self.clone() }.adjoint(v)
    }

    /// `CtxVec.getCLM idx = Graph.castCLM ∘ getCLMRaw idx.i`: the read as a linear map
    /// (a projection); its adjoint is `CtxVec.single`, the block placed among zeros.
    pub fn get_clm<S: Scalar>(&self) -> Result<BoxClm<S>, SpecError> {
        comp(
            cast_clm(self.len, self.len)?,
            Box::new(GetRaw { idx: self.clone() }),
        )
    }
}

/// `CtxVec.getCLMRaw i`; adjoint `CtxVec.singleRaw i`.
struct GetRaw {
    idx: Idx,
}

impl<S: Scalar> Clm<S> for GetRaw {
    fn dim_in(&self) -> usize {
        self.idx.ctx_size
    }
    fn dim_out(&self) -> usize {
        self.idx.len
    }
    fn apply(&self, x: &[S]) -> Result<Vec<S>, SpecError> {
        self.idx.get(x)
    }
    fn adjoint(&self, delta: &[S]) -> Result<Vec<S>, SpecError> {
        check_len("context block", &self.idx.shape, self.idx.len, delta.len())?;
        let mut out = zeros(self.idx.ctx_size);
        out[self.idx.offset..self.idx.offset + self.idx.len].clone_from_slice(delta);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_reads_the_named_block_and_single_scatters() {
        let ctx = Context::new(vec![vec![2], vec![1, 3], vec![]]).unwrap();
        assert_eq!(ctx.size(), 6);
        let x: Vec<f64> = (0..6).map(f64::from).collect();
        let i = ctx.idx(1, &[1, 3]).unwrap();
        assert_eq!(i.get(&x).unwrap(), vec![2.0, 3.0, 4.0]);
        let clm = i.get_clm::<f64>().unwrap();
        assert_eq!(
            clm.adjoint(&[7.0, 8.0, 9.0]).unwrap(),
            vec![0.0, 0.0, 7.0, 8.0, 9.0, 0.0]
        );
    }

    #[test]
    fn bad_indices_are_typed_errors_naming_shapes() {
        let ctx = Context::new(vec![vec![2, 2]]).unwrap();
        let err = ctx.idx(3, &[2, 2]).unwrap_err();
        assert_eq!(
            err,
            SpecError::IndexOutOfRange {
                position: 3,
                len: 1
            }
        );
        let err = ctx.idx(0, &[4]).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, SpecError::IdxShapeMismatch { .. }));
        assert!(msg.contains("[4]") && msg.contains("[2, 2]"), "{msg}");
    }

    #[test]
    fn overflowing_contexts_are_rejected() {
        let err = Context::new(vec![vec![usize::MAX], vec![2]]).unwrap_err();
        assert!(matches!(err, SpecError::Overflow { .. }));
    }
}
