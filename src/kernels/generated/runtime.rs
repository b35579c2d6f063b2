//! Support code for the kernels `fderiv emit` generates: shape and length checks, the
//! batched GEMM (on `matrixmultiply`, heads in parallel on `rayon`), the transpose copy
//! the parallel row-pass driver and the reusable [`Workspace`] for temporaries.
//!
//! Hand-written, and emitted verbatim beside the generated kernels so that the folder
//! stands alone: it needs only the crates `matrixmultiply` and `rayon`.
//!
//! Layout everywhere: row-major h×m×n, contiguous, entry (k, i, j) at k·m·n + i·n + j.

use rayon::prelude::*;
use std::fmt;

/// Why a kernel refused its arguments. Kernels never panic on bad shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelError {
    /// A buffer's length is not the product of its dims.
    Length {
        /// The buffer's name.
        buffer: &'static str,
        /// The length its dims need.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// An input's dim disagrees with the same dim fixed by an earlier input.
    Shape {
        /// The input's name.
        input: &'static str,
        /// Its dims.
        dims: [usize; 3],
        /// The dim's name.
        dim: &'static str,
        /// The size fixed earlier.
        expected: usize,
    },
    /// The product of a buffer's dims overflows `usize`.
    Overflow {
        /// The buffer's name.
        buffer: &'static str,
    },
    /// The wrong number of inputs for a kernel's uniform entry point.
    Arity {
        /// The kernel.
        kernel: &'static str,
        /// Inputs it takes.
        expected: usize,
        /// Inputs given.
        found: usize,
    },
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::Length {
                buffer,
                expected,
                found,
            } => write!(f, "{buffer} has {found} values but its dims need {expected}"),
            KernelError::Shape {
                input,
                dims,
                dim,
                expected,
            } => write!(
                f,
                "{input} has shape {}×{}×{} but {dim} = {expected} from an earlier input",
                dims[0], dims[1], dims[2]
            ),
            KernelError::Overflow { buffer } => write!(f, "the size of {buffer} overflows usize"),
            KernelError::Arity {
                kernel,
                expected,
                found,
            } => write!(f, "{kernel} takes {expected} inputs, {found} given"),
        }
    }
}

impl std::error::Error for KernelError {}

/// A dense h×m×n tensor of f64, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor3 {
    /// h, m, n.
    pub dims: [usize; 3],
    /// The values, row-major.
    pub data: Vec<f64>,
}

impl Tensor3 {
    /// A tensor from dims and data; the length must match.
    pub fn new(dims: [usize; 3], data: Vec<f64>) -> Result<Tensor3, KernelError> {
        check_len("tensor", data.len(), dims)?;
        Ok(Tensor3 { dims, data })
    }

    /// The all-zero tensor. The values come from `calloc`: fresh zero pages for large
    /// tensors, first touched by the parallel workers of the kernel that writes them.
    pub fn zeros(buffer: &'static str, dims: [usize; 3]) -> Result<Tensor3, KernelError> {
        Ok(Tensor3 {
            dims,
            data: vec![0.0; size(buffer, dims)?],
        })
    }
}

/// The number of entries of `dims`, checked.
pub fn size(buffer: &'static str, dims: [usize; 3]) -> Result<usize, KernelError> {
    dims[0]
        .checked_mul(dims[1])
        .and_then(|x| x.checked_mul(dims[2]))
        .ok_or(KernelError::Overflow { buffer })
}

/// Checks that a buffer of `len` values has dims `dims`.
pub fn check_len(buffer: &'static str, len: usize, dims: [usize; 3]) -> Result<(), KernelError> {
    let expected = size(buffer, dims)?;
    if len == expected {
        Ok(())
    } else {
        Err(KernelError::Length {
            buffer,
            expected,
            found: len,
        })
    }
}

/// Checks that `input`'s axis `axis` has the size fixed earlier for `dim`.
pub fn same_dim(
    input: &'static str,
    dims: [usize; 3],
    axis: usize,
    dim: &'static str,
    expected: usize,
) -> Result<(), KernelError> {
    if dims[axis] == expected {
        Ok(())
    } else {
        Err(KernelError::Shape {
            input,
            dims,
            dim,
            expected,
        })
    }
}

/// `out = op(a)·op(b)` head by head for h heads, `op(a)` m×k and `op(b)` k×p, `op` a
/// transpose where flagged (a stride swap, no copy); with `accumulate`,
/// `out += op(a)·op(b)` in place (GEMM β = 1: no temporary, no add pass). Buffers are
/// row-major: `a` is h×m×k (h×k×m when `ta`), `b` is h×k×p (h×p×k when `tb`), `out`
/// is h×m×p. Lengths are checked. Error: each entry is a length-k dot product,
/// |fl − exact| ≤ γₖ·Σ|aᵢbᵢ|; accumulated, γₖ₊₁·(|c| + Σ|aᵢbᵢ|) around the old entry c.
#[allow(clippy::too_many_arguments)]
pub fn bmm(
    [h, m, k, p]: [usize; 4],
    a: &[f64],
    ta: bool,
    b: &[f64],
    tb: bool,
    out: &mut [f64],
    accumulate: bool,
) -> Result<(), KernelError> {
    check_len("gemm left operand", a.len(), [h, m, k])?;
    check_len("gemm right operand", b.len(), [h, k, p])?;
    check_len("gemm output", out.len(), [h, m, p])?;
    if m == 0 || p == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            out.fill(0.0);
        }
        return Ok(());
    }
    // Row and column strides of op(a) (m×k) and op(b) (k×p) inside one head.
    let (rsa, csa) = if ta { (1, m) } else { (k, 1) };
    let (rsb, csb) = if tb { (1, k) } else { (p, 1) };
    out.par_chunks_mut(m * p).enumerate().for_each(|(head, c)| {
        let a = &a[head * m * k..(head + 1) * m * k];
        let b = &b[head * k * p..(head + 1) * k * p];
        // SAFETY: `a` holds m·k values, and for every i < m, l < k the offset
        // i·rsa + l·csa < m·k for both stride pairs; likewise `b` holds k·p values
        // reached by l·rsb + j·csb < k·p, and `c` holds m·p values at i·p + j. The
        // three slices do not overlap (`c` is a distinct `&mut`, read in place when β = 1).
        unsafe {
            matrixmultiply::dgemm(
                m,
                k,
                p,
                1.0,
                a.as_ptr(),
                rsa as isize,
                csa as isize,
                b.as_ptr(),
                rsb as isize,
                csb as isize,
                if accumulate { 1.0 } else { 0.0 },
                c.as_mut_ptr(),
                p as isize,
                1,
            );
        }
    });
    Ok(())
}

/// `out = xᵀ` over the last two axes: `x` is h×m×n, `out` h×n×m. Lengths are checked.
pub fn transpose([h, m, n]: [usize; 3], x: &[f64], out: &mut [f64]) -> Result<(), KernelError> {
    check_len("transposed buffer", x.len(), [h, m, n])?;
    check_len("transpose output", out.len(), [h, n, m])?;
    for k in 0..h {
        for i in 0..m {
            for j in 0..n {
                out[k * n * m + j * m + i] = x[k * m * n + i * n + j];
            }
        }
    }
    Ok(())
}

/// Rows per parallel task of a row pass: enough work to amortize the task.
const ROW_CHUNK_VALUES: usize = 1 << 14;

thread_local! {
    /// Each worker's row registers, grown once and reused by every later pass.
    static REGISTERS: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `body(row, out_row, registers)` over every row of length `n` of `out`, chunks
/// of rows in parallel. The `R` row registers (n values each) come from the worker's
/// reused scratch, so a pass allocates nothing once each worker has run one; their
/// contents on entry are unspecified (every register is written before it is read).
pub fn row_pass<const R: usize>(
    out: &mut [f64],
    n: usize,
    body: impl Fn(usize, &mut [f64], [&mut [f64]; R]) + Sync + Send,
) {
    if n == 0 {
        return;
    }
    let rows = (ROW_CHUNK_VALUES / n).max(1);
    out.par_chunks_mut(rows * n)
        .enumerate()
        .for_each(|(chunk, out)| {
            REGISTERS.with(|cell| {
                let mut scratch = cell.borrow_mut();
                if scratch.len() < R * n {
                    scratch.resize(R * n, 0.0);
                }
                for (i, out_row) in out.chunks_mut(n).enumerate() {
                    let mut regs = scratch.chunks_mut(n);
                    let regs = std::array::from_fn(|_| regs.next().unwrap_or_default());
                    body(chunk * rows + i, out_row, regs);
                }
            })
        });
}

/// Reusable scratch for a kernel's temporaries: grown on first use and kept, so that
/// repeated calls of a `*_into` kernel with the same workspace allocate nothing.
#[derive(Debug, Default)]
pub struct Workspace {
    buffers: Vec<Vec<f64>>,
}

impl Workspace {
    /// `N` buffers of the given lengths. Their contents are unspecified: each
    /// temporary is written whole by its step before any step reads it.
    pub fn buffers<const N: usize>(&mut self, lens: [usize; N]) -> [&mut [f64]; N] {
        if self.buffers.len() < N {
            self.buffers.resize_with(N, Vec::new);
        }
        for (b, &len) in self.buffers.iter_mut().zip(&lens) {
            if b.len() < len {
                b.resize(len, 0.0);
            }
        }
        let mut it = self.buffers.iter_mut().zip(lens);
        std::array::from_fn(|_| match it.next() {
            Some((b, len)) => &mut b[..len],
            None => &mut [],
        })
    }
}

/// Row `row` of length `n` of a buffer.
pub fn row(buf: &[f64], row: usize, n: usize) -> &[f64] {
    &buf[row * n..(row + 1) * n]
}
