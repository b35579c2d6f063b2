//! The allocating kernels reuse the buffers of dropped large tensors (one test: the
//! store is process-wide, so its steps run in order in their own binary).

use fderiv::kernels::{self, runtime, runtime::Tensor3};

/// 256×256 values: above the recycling threshold (2¹⁵ values).
const DIMS: [usize; 3] = [1, 256, 256];

fn input() -> Tensor3 {
    let len = DIMS.iter().product::<usize>();
    let data = (0..len)
        .map(|i| ((i * 37 % 101) as f64 - 50.0) / 7.0)
        .collect();
    Tensor3::new(DIMS, data).unwrap()
}

#[test]
fn dropped_outputs_are_reused_whole_and_the_limit_holds() {
    let x = input();
    let first = kernels::softmax_last_forward(&x).unwrap();
    let reference = first.data.clone();
    let bytes = reference.len() * 8;

    // A dropped output is kept and handed to the next call, which overwrites it all:
    // the buffer is filled with NaN before it is dropped, so an entry the kernel
    // skipped would show.
    let mut poisoned = first;
    poisoned.data.fill(f64::NAN);
    let at = poisoned.data.as_ptr();
    drop(poisoned);
    assert_eq!(runtime::recycled_bytes(), bytes);
    let again = kernels::softmax_last_forward(&x).unwrap();
    assert_eq!(again.data.as_ptr(), at, "the kept buffer was not reused");
    assert_eq!(runtime::recycled_bytes(), 0);
    assert_eq!(again.data, reference);

    // Small buffers are freed as usual.
    drop(Tensor3::new([1, 1, 8], vec![0.0; 8]).unwrap());
    assert_eq!(runtime::recycled_bytes(), 0);

    // A buffer larger than the limit is not kept; lowering the limit frees at once.
    runtime::set_recycle_limit(bytes - 1);
    drop(kernels::softmax_last_forward(&x).unwrap());
    assert_eq!(runtime::recycled_bytes(), 0);
    runtime::set_recycle_limit(2 * bytes);
    drop(kernels::softmax_last_forward(&x).unwrap());
    drop(kernels::softmax_last_forward(&x).unwrap());
    drop(x);
    assert_eq!(
        runtime::recycled_bytes(),
        2 * bytes,
        "three dropped, the oldest freed"
    );
    runtime::set_recycle_limit(0);
    assert_eq!(runtime::recycled_bytes(), 0);

    // A value moved out with `into_data` is the caller's: nothing is kept.
    runtime::set_recycle_limit(1 << 30);
    let data = kernels::softmax_last_forward(&input()).unwrap().into_data();
    assert_eq!(data, reference);
    assert_eq!(runtime::recycled_bytes(), bytes, "only the input was kept");
}
