//! `Batched.heads` / `unheads` / `headsCLM` / `unheadsCLM`
//! (`NN/Proofs/Autograd/Tape/Nodes/Batched.lean`): splitting a flattened `h·n` vector
//! into `h` heads of length `n` and back. Pure reshapes: mutually inverse and each the
//! adjoint of the other.

use super::clm::{comp, headwise, BoxClm, Clm};
use super::error::SpecError;
use super::shape::mat_size;
use super::vector::check_len;
use crate::scalar::Scalar;

/// `Batched.heads`: `heads x k j = x[finProdFinEquiv (k, j)] = x[k·n + j]`
/// (see [`super::shape::fin_prod_fin`]; in range once `x.len() = h·n` is checked).
pub fn heads<S: Scalar>(h: usize, n: usize, x: &[S]) -> Result<Vec<Vec<S>>, SpecError> {
    check_len("heads input", &[h, n], mat_size(h, n)?, x.len())?;
    Ok((0..h)
        .map(|k| (0..n).map(|j| x[k * n + j].clone()).collect())
        .collect())
}

/// `Batched.unheads`: the concatenation of `h` heads of length `n`, entry
/// `finProdFinEquiv.symm ip = (k, j)` taken from head `k`.
pub fn unheads<S: Scalar>(h: usize, n: usize, r: &[Vec<S>]) -> Result<Vec<S>, SpecError> {
    let size = mat_size(h, n)?;
    check_len("unheads head count", &[h, n], h, r.len())?;
    let mut out = Vec::with_capacity(size);
    for head in r {
        check_len("unheads head", &[h, n], n, head.len())?;
        out.extend(head.iter().cloned());
    }
    Ok(out)
}

/// A value of the product space `Fin h → Vec n`, given flattened (blocks
/// concatenated), as a list of blocks.
pub fn blocks<S: Scalar>(h: usize, n: usize, flat: &[S]) -> Result<Vec<Vec<S>>, SpecError> {
    check_len("product-space value", &[h, n], mat_size(h, n)?, flat.len())?;
    Ok((0..h).map(|k| flat[k * n..(k + 1) * n].to_vec()).collect())
}

/// `Batched.headsCLM : Vec (h*n) →L (Fin h → Vec n)`; adjoint `unheads`.
pub struct HeadsClm {
    h: usize,
    n: usize,
}

/// `Batched.unheadsCLM : (Fin h → Vec n) →L Vec (h*n)`; adjoint `heads`.
pub struct UnheadsClm {
    h: usize,
    n: usize,
}

/// `Batched.headsCLM` for `h` heads of length `n`; an error if `h·n` overflows.
pub fn heads_clm<S: Scalar>(h: usize, n: usize) -> Result<BoxClm<S>, SpecError> {
    mat_size(h, n)?;
    Ok(Box::new(HeadsClm { h, n }))
}

/// `Batched.unheadsCLM` for `h` heads of length `n`; an error if `h·n` overflows.
pub fn unheads_clm<S: Scalar>(h: usize, n: usize) -> Result<BoxClm<S>, SpecError> {
    mat_size(h, n)?;
    Ok(Box::new(UnheadsClm { h, n }))
}

fn heads_flat<S: Scalar>(h: usize, n: usize, x: &[S]) -> Result<Vec<S>, SpecError> {
    Ok(heads(h, n, x)?.concat())
}

fn unheads_flat<S: Scalar>(h: usize, n: usize, r: &[S]) -> Result<Vec<S>, SpecError> {
    unheads(h, n, &blocks(h, n, r)?)
}

impl<S: Scalar> Clm<S> for HeadsClm {
    fn dim_in(&self) -> usize {
        self.h * self.n
    }
    fn dim_out(&self) -> usize {
        self.h * self.n
    }
    fn apply(&self, x: &[S]) -> Result<Vec<S>, SpecError> {
        heads_flat(self.h, self.n, x)
    }
    fn adjoint(&self, delta: &[S]) -> Result<Vec<S>, SpecError> {
        unheads_flat(self.h, self.n, delta)
    }
}

impl<S: Scalar> Clm<S> for UnheadsClm {
    fn dim_in(&self) -> usize {
        self.h * self.n
    }
    fn dim_out(&self) -> usize {
        self.h * self.n
    }
    fn apply(&self, r: &[S]) -> Result<Vec<S>, SpecError> {
        unheads_flat(self.h, self.n, r)
    }
    fn adjoint(&self, delta: &[S]) -> Result<Vec<S>, SpecError> {
        heads_flat(self.h, self.n, delta)
    }
}

/// `unheadsCLM ∘ (pi over heads of blocks[k] ∘ proj k) ∘ headsCLM`: a head-wise family
/// of maps `Vec block_in →L Vec block_out` lifted to flattened `h·block_in` vectors, as
/// `Batched.matmulBilin`, `SoftmaxLastAxis.derivMN` and `Batched.softmaxLast` build it.
pub fn lift_headwise<S: Scalar>(
    block_in: usize,
    block_out: usize,
    blocks: Vec<BoxClm<S>>,
) -> Result<BoxClm<S>, SpecError> {
    let h = blocks.len();
    let inner = comp(headwise(block_in, blocks)?, heads_clm(h, block_in)?)?;
    comp(unheads_clm(h, block_out)?, inner)
}

/// Applies `f` to every head of `x` and concatenates: `unheads (fun k => f (heads x k))`.
pub fn map_heads<S: Scalar>(
    h: usize,
    n: usize,
    x: &[S],
    f: impl Fn(&[S]) -> Result<Vec<S>, SpecError>,
) -> Result<Vec<S>, SpecError> {
    let out = heads(h, n, x)?
        .iter()
        .map(|head| f(head))
        .collect::<Result<Vec<_>, _>>()?;
    unheads(h, n, &out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_reads_row_major_and_unheads_concatenates() {
        let x: Vec<f64> = (0..6).map(f64::from).collect();
        let r = heads(2, 3, &x).unwrap();
        assert_eq!(r, vec![vec![0.0, 1.0, 2.0], vec![3.0, 4.0, 5.0]]);
        assert_eq!(unheads(2, 3, &r).unwrap(), x);
    }

    #[test]
    fn empty_heads_keep_their_count() {
        let r = heads::<f64>(3, 0, &[]).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(blocks::<f64>(3, 0, &[]).unwrap().len(), 3);
        assert_eq!(unheads::<f64>(3, 0, &r).unwrap(), Vec::<f64>::new());
    }

    #[test]
    fn wrong_lengths_are_typed_errors() {
        let err = heads(2, 3, &[1.0f64; 5]).unwrap_err();
        assert!(matches!(
            err,
            SpecError::Length {
                expected: 6,
                found: 5,
                ..
            }
        ));
        assert!(err.to_string().contains("[2, 3]"));
        let err = unheads(2, 2, &[vec![1.0f64, 2.0], vec![3.0]]).unwrap_err();
        assert!(matches!(
            err,
            SpecError::Length {
                expected: 2,
                found: 1,
                ..
            }
        ));
    }
}
