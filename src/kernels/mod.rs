//! Generated, verified f64 kernels: the forward, JVP and VJP of `matmul` and
//! `softmax_last`, emitted by `fderiv emit` from the derived expressions and committed in
//! `src/kernels/generated/` (a test and `fderiv emit --check` require them to be fresh).
//!
//! ```
//! use fderiv::kernels::{softmax_last_vjp, runtime::Tensor3};
//! let s = Tensor3::new([1, 1, 2], vec![0.5, 0.5]).unwrap();
//! let g = Tensor3::new([1, 1, 2], vec![1.0, 0.0]).unwrap();
//! assert_eq!(softmax_last_vjp(&s, &g).unwrap().data, vec![0.25, -0.25]);
//! // Shapes are checked: an error, not a panic.
//! let bad = Tensor3::new([1, 1, 3], vec![0.0; 3]).unwrap();
//! assert!(softmax_last_vjp(&s, &bad).is_err());
//! ```

#[rustfmt::skip]
pub mod generated;

pub use generated::*;

use crate::tensor::Tensor;

impl From<&Tensor<f64>> for runtime::Tensor3 {
    fn from(t: &Tensor<f64>) -> Self {
        runtime::Tensor3 {
            dims: t.dims(),
            data: t.data().to_vec(),
        }
    }
}
