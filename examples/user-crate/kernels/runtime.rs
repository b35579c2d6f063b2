//! Support code for the kernels `fderiv emit` generates: shape and length checks, the
//! batched GEMM (on `matrixmultiply`, heads in parallel on `rayon`), the transpose copy
//! the parallel row-pass driver, the reusable [`Workspace`] for temporaries, and the
//! softmax row's exp, extrema and division vectorized for AVX2 and AVX-512 ([`VectorPath`]).
//!
//! Hand-written, and emitted verbatim beside the generated kernels so that the folder
//! stands alone: it needs only the crates `matrixmultiply` and `rayon`, and Rust 1.89 or
//! newer (the AVX-512 intrinsics).
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
    /// An input's axis is not a multiple of the known factors of its product dim.
    Factor {
        /// The input's name.
        input: &'static str,
        /// Its dims.
        dims: [usize; 3],
        /// The product dim, e.g. `h*d`.
        dim: &'static str,
        /// The product of its factors fixed earlier.
        known: usize,
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
            KernelError::Factor {
                input,
                dims,
                dim,
                known,
            } => write!(
                f,
                "{input} has shape {}×{}×{} but its dim {dim} must be a multiple of {known}",
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
    /// tensors, first touched by the parallel workers of the kernel that writes them;
    /// on Linux, large tensors ask for transparent huge pages (one fault per 2 MiB
    /// instead of per 4 KiB).
    pub fn zeros(buffer: &'static str, dims: [usize; 3]) -> Result<Tensor3, KernelError> {
        let data = vec![0.0; size(buffer, dims)?];
        advise_huge_pages(&data);
        Ok(Tensor3 { dims, data })
    }

    /// A tensor for a kernel to write whole: its values are unspecified (finite or
    /// not). A large one reuses the buffer of a dropped tensor of the same length when
    /// one is kept (see [`set_recycle_limit`]): no fresh pages, so no page faults and no
    /// zeroing by the OS; otherwise it is [`Tensor3::zeros`]. The allocating kernels
    /// take their outputs from here.
    pub fn output(buffer: &'static str, dims: [usize; 3]) -> Result<Tensor3, KernelError> {
        let len = size(buffer, dims)?;
        match recycled(len) {
            Some(data) => Ok(Tensor3 { dims, data }),
            None => Tensor3::zeros(buffer, dims),
        }
    }

    /// The values, taken out of the tensor (which is then dropped empty).
    pub fn into_data(mut self) -> Vec<f64> {
        std::mem::take(&mut self.data)
    }
}

/// A dropped tensor hands a large buffer to the recycling store (bounded by
/// [`set_recycle_limit`]) instead of returning it to the allocator.
impl Drop for Tensor3 {
    fn drop(&mut self) {
        recycle(std::mem::take(&mut self.data));
    }
}

/// Buffers shorter than this (256 KiB) are freed as usual: the allocator reuses small
/// blocks without page faults by itself.
const RECYCLE_MIN_VALUES: usize = 1 << 15;

/// The most bytes of dropped buffers the store keeps (default 1 GiB).
static RECYCLE_LIMIT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1 << 30);

/// The buffers of dropped large tensors, oldest first, waiting for [`Tensor3::output`].
static RECYCLED: std::sync::Mutex<Vec<Vec<f64>>> = std::sync::Mutex::new(Vec::new());

/// Sets the most bytes of dropped tensors' buffers kept for reuse by the allocating
/// kernels (default 1 GiB; 0 turns recycling off) and frees the oldest kept buffers
/// beyond it at once. Kept buffers are memory the process holds: a loop that drops the
/// outputs of one call before the next reuses them, while a program done with the
/// kernels can call `set_recycle_limit(0)` to give them back.
pub fn set_recycle_limit(bytes: usize) {
    RECYCLE_LIMIT.store(bytes, std::sync::atomic::Ordering::Relaxed);
    if let Ok(mut kept) = RECYCLED.lock() {
        trim(&mut kept, bytes);
    }
}

/// The bytes of dropped tensors' buffers kept for reuse now.
pub fn recycled_bytes() -> usize {
    RECYCLED.lock().map_or(0, |kept| bytes(&kept))
}

/// The bytes of the buffers' allocations.
fn bytes(kept: &[Vec<f64>]) -> usize {
    kept.iter().map(|b| b.capacity() * 8).sum()
}

/// Frees the oldest kept buffers until the rest fit in `limit` bytes.
fn trim(kept: &mut Vec<Vec<f64>>, limit: usize) {
    while !kept.is_empty() && bytes(kept) > limit {
        kept.remove(0);
    }
}

/// Keeps a dropped tensor's buffer when it is large and fits under the limit.
fn recycle(data: Vec<f64>) {
    let limit = RECYCLE_LIMIT.load(std::sync::atomic::Ordering::Relaxed);
    if data.len() < RECYCLE_MIN_VALUES || data.capacity() * 8 > limit {
        return;
    }
    // A poisoned lock (a panic elsewhere while holding it) only turns recycling off.
    if let Ok(mut kept) = RECYCLED.lock() {
        kept.push(data);
        trim(&mut kept, limit);
    }
}

/// The newest kept buffer of exactly `len` values, if any.
fn recycled(len: usize) -> Option<Vec<f64>> {
    if len < RECYCLE_MIN_VALUES {
        return None;
    }
    let mut kept = RECYCLED.lock().ok()?;
    let at = kept.iter().rposition(|b| b.len() == len)?;
    Some(kept.remove(at))
}

/// Asks Linux to back the whole 2 MiB pages inside `data` (from 8 MiB on) with
/// transparent huge pages, before anything touches them. Advice only: the contents
/// do not change, and a refusal (no THP, other kernels) changes nothing.
#[cfg(target_os = "linux")]
fn advise_huge_pages(data: &[f64]) {
    const HUGE: usize = 2 << 20;
    const MADV_HUGEPAGE: std::ffi::c_int = 14;
    unsafe extern "C" {
        fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: std::ffi::c_int) -> std::ffi::c_int;
    }
    let bytes = std::mem::size_of_val(data);
    let start = data.as_ptr() as usize;
    let (first, end) = (start.next_multiple_of(HUGE), (start + bytes) / HUGE * HUGE);
    if bytes >= 4 * HUGE && end > first {
        // SAFETY: [first, end) is whole pages inside the allocation `data` owns;
        // MADV_HUGEPAGE only changes how later faults are served, never the contents
        // (fresh pages read as zero either way). The result is ignored: advice.
        unsafe {
            madvise(first as *mut std::ffi::c_void, end - first, MADV_HUGEPAGE);
        }
    }
}

/// Elsewhere no advice is given.
#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_: &[f64]) {}

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

/// The value of a runtime parameter passed as a 1×1×1 tensor.
pub fn scalar(input: &'static str, t: &Tensor3) -> Result<f64, KernelError> {
    for axis in 0..3 {
        same_dim(input, t.dims, axis, "1", 1)?;
    }
    check_len(input, t.data.len(), t.dims)?;
    Ok(t.data[0])
}

/// Solves `input`'s axis `axis`, declared as the product dim `dim`, for its one unknown
/// factor: the axis divided by `known` (the product of the other factors), which must
/// divide it. Fails for `known = 0` (the unknown factor is then undetermined).
pub fn factor(
    input: &'static str,
    dims: [usize; 3],
    axis: usize,
    dim: &'static str,
    known: usize,
) -> Result<usize, KernelError> {
    if known > 0 && dims[axis].is_multiple_of(known) {
        Ok(dims[axis] / known)
    } else {
        Err(KernelError::Factor {
            input,
            dims,
            dim,
            known,
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
    if h == 0 || m == 0 || p == 0 {
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
    // Heads run in parallel; when there are fewer heads than threads (a projection is
    // one head) each head's rows are split into bands too, so every thread has work.
    // From a thread outside the pool the caller takes part, as in `par_chunks`.
    let bands = rayon::current_num_threads().div_ceil(h).max(1);
    let rows = m.div_ceil(bands).max(GEMM_MIN_BAND);
    let run_band = |(head, band, c): (usize, usize, &mut [f64])| {
        let a = &a[head * m * k..(head + 1) * m * k];
        let b = &b[head * k * p..(head + 1) * k * p];
        let first = band * rows;
        let count = c.len() / p;
        // SAFETY: `a` holds m·k values, and for every row i < m and l < k the
        // offset i·rsa + l·csa < m·k for both stride pairs; this band reads rows
        // first..first + count ≤ m, starting at first·rsa. `b` holds k·p values
        // reached by l·rsb + j·csb < k·p. `c` is this band's count·p values at
        // i·p + j. The slices do not overlap (`c` is a distinct `&mut`, read in
        // place when β = 1).
        unsafe {
            matrixmultiply::dgemm(
                count,
                k,
                p,
                1.0,
                a.as_ptr().add(first * rsa),
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
    };
    if rayon::current_thread_index().is_some() {
        out.par_chunks_mut(m * p).enumerate().for_each(|(head, c)| {
            c.par_chunks_mut(rows * p)
                .enumerate()
                .for_each(|(i, c)| run_band((head, i, c)))
        });
    } else {
        let heads = out.chunks_mut(m * p).enumerate();
        let items = heads.flat_map(|(head, c)| {
            c.chunks_mut(rows * p).enumerate().map(move |(i, c)| (head, i, c))
        });
        with_caller(h * m.div_ceil(rows), items, run_band);
    }
    Ok(())
}

/// The fewest rows of one GEMM band (below this, splitting costs more than it gains).
const GEMM_MIN_BAND: usize = 32;

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

/// PyTorch's head split `view(n, k, d).transpose(0, 1)`: `x` is 1×n×(k·d), `out` is
/// k×n×d, `out[h,i,j] = x[0,i,h·d+j]`. Lengths are checked.
pub fn split_heads([k, n, d]: [usize; 3], x: &[f64], out: &mut [f64]) -> Result<(), KernelError> {
    check_len("split input", x.len(), [k, n, d])?;
    check_len("split output", out.len(), [k, n, d])?;
    for h in 0..k {
        for i in 0..n {
            let src = &x[i * k * d + h * d..][..d];
            out[(h * n + i) * d..][..d].copy_from_slice(src);
        }
    }
    Ok(())
}

/// The head merge (inverse of [`split_heads`]): `x` is k×n×d, `out` is 1×n×(k·d),
/// `out[0,i,h·d+j] = x[h,i,j]`. Lengths are checked.
pub fn merge_heads([k, n, d]: [usize; 3], x: &[f64], out: &mut [f64]) -> Result<(), KernelError> {
    check_len("merge input", x.len(), [k, n, d])?;
    check_len("merge output", out.len(), [k, n, d])?;
    for h in 0..k {
        for i in 0..n {
            let src = &x[(h * n + i) * d..][..d];
            out[i * k * d + h * d..][..d].copy_from_slice(src);
        }
    }
    Ok(())
}

/// Swaps the first two axes: `x` is a×b×c, `out` is b×a×c, `out[i,h,j] = x[h,i,j]`.
pub fn swap([a, b, c]: [usize; 3], x: &[f64], out: &mut [f64]) -> Result<(), KernelError> {
    check_len("swap input", x.len(), [a, b, c])?;
    check_len("swap output", out.len(), [b, a, c])?;
    for h in 0..a {
        for i in 0..b {
            out[(i * a + h) * c..][..c].copy_from_slice(&x[(h * b + i) * c..][..c]);
        }
    }
    Ok(())
}

/// A row-major cast (`reshape`, `unreshape`, `flat`, `unflat`): the same values under
/// other dims, copied. Both buffers hold `dims`' entries.
pub fn cast(dims: [usize; 3], x: &[f64], out: &mut [f64]) -> Result<(), KernelError> {
    check_len("cast input", x.len(), dims)?;
    check_len("cast output", out.len(), dims)?;
    out.copy_from_slice(x);
    Ok(())
}

/// Rows per parallel task of a row pass: enough work to amortize the task, few enough
/// values that a task's rows stay in the core's L2.
const ROW_CHUNK_VALUES: usize = 1 << 14;

thread_local! {
    /// Each thread's row registers, grown once and reused by every later pass.
    static REGISTERS: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `body(row, out_row, registers)` over every row of length `n` of `out`, chunks
/// of rows in parallel ([`par_chunks`]). The `R` row registers (n values each) come
/// from the thread's reused scratch, so a pass allocates nothing once each thread
/// taking part (workers, and a caller outside the pool) has run one; their
/// contents on entry are unspecified (every register is written before it is read).
/// `out_row` and every register hold exactly n values.
///
/// The body is compiled where it is written: a kernel's steps written inside
/// `multiversion!` give it 4-wide AVX2 loops on CPUs that have them.
pub fn row_pass<const R: usize>(
    out: &mut [f64],
    n: usize,
    body: impl Fn(usize, &mut [f64], [&mut [f64]; R]) + Sync + Send,
) {
    if n == 0 {
        return;
    }
    let rows = (ROW_CHUNK_VALUES / n).max(1);
    let task = |(chunk, out): (usize, &mut [f64])| {
        REGISTERS.with(|cell| {
            let mut scratch = cell.borrow_mut();
            if scratch.len() < R * n {
                scratch.resize(R * n, 0.0);
            }
            let first = chunk * rows;
            for (i, out_row) in out.chunks_exact_mut(n).enumerate() {
                let mut regs = scratch[..R * n].chunks_exact_mut(n);
                let regs = std::array::from_fn(|_| regs.next().unwrap_or_default());
                body(first + i, out_row, regs);
            }
        })
    };
    par_chunks(out, rows * n, task);
}

/// Runs `task((i, chunk))` on every chunk i of `len` values of `buf` (the last may be
/// shorter), in parallel: on a rayon worker by rayon's work stealing; from a thread
/// outside the pool, the caller takes part (`with_caller`) instead of handing the
/// whole job to the pool and sleeping until it is done.
pub fn par_chunks(buf: &mut [f64], len: usize, task: impl Fn((usize, &mut [f64])) + Sync + Send) {
    let len = len.max(1);
    if rayon::current_thread_index().is_some() {
        buf.par_chunks_mut(len).enumerate().for_each(task);
    } else {
        with_caller(buf.len().div_ceil(len), buf.chunks_mut(len).enumerate(), task);
    }
}

/// Runs `task` on every item of `items` (`count` of them) from a thread outside
/// rayon's pool: the caller and up to (pool threads − 1) helpers spawned into the pool,
/// never more helpers than items beyond the first, each claim the next item while any
/// is left, and the caller then waits, spinning, for the items still in a helper's
/// hands; a single item runs on the caller alone, the pool untouched. The caller works
/// from the first instant, where handing the whole job to the pool put it to sleep
/// until a worker woke and again until it was woken itself (about 17 µs a call on the
/// measured VM: docs/performance.md, stop 24).
fn with_caller<I, F>(count: usize, items: I, task: F)
where
    I: Iterator + Send,
    I::Item: Send,
    F: Fn(I::Item) + Sync,
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    /// Marks a claimed item finished when dropped (also when its task panics, so that
    /// the caller never waits on it forever; rayon rethrows the panic).
    struct Done<'a>(&'a AtomicUsize);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Release);
        }
    }
    let items = std::sync::Mutex::new(items);
    let busy = AtomicUsize::new(0);
    let work = || loop {
        let item = {
            let mut items = items.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let item = items.next();
            if item.is_some() {
                busy.fetch_add(1, Ordering::Relaxed);
            }
            item
        };
        let Some(item) = item else { return };
        let _done = Done(&busy);
        task(item);
    };
    let helpers = rayon::current_num_threads().min(count).saturating_sub(1);
    if helpers == 0 {
        return items.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner).for_each(task);
    }
    rayon::in_place_scope(|s| {
        for _ in 0..helpers {
            s.spawn(|_| work());
        }
        work();
        while busy.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
        }
    });
}

/// Defines a kernel's steps as a function of the listed parameters twice, once
/// compiled for AVX2 and FMA (x86-64 only) and once portable, and calls the first when
/// [`vector_copies`] says so, the second otherwise. Used where `runtime` names this
/// module (every generated kernel file).
///
/// Closures inherit the target features of the function they are written in, so the
/// row-pass bodies among the steps get 4-wide loops; a body written elsewhere would
/// be compiled for baseline x86-64 (2-wide SSE2) even when called from AVX2 code.
/// Both copies perform the same IEEE operations in the same order (Rust never
/// contracts `a * b + c` into a fused multiply-add), so they give the same bits.
macro_rules! multiversion {
    (($($p:ident: $t:ty),* $(,)?) -> $r:ty $body:block) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        #[allow(unused_variables)] // a dim only the length checks read
        unsafe fn avx2($($p: $t),*) -> $r $body
        #[allow(unused_variables)]
        fn portable($($p: $t),*) -> $r $body
        #[cfg(target_arch = "x86_64")]
        {
            if runtime::vector_copies() {
                // SAFETY: the CPU has the features `avx2` is compiled for.
                return unsafe { avx2($($p),*) };
            }
        }
        portable($($p),*)
    }};
}
pub(crate) use multiversion;

static PORTABLE_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether `multiversion!` runs its AVX2 copy: the CPU has AVX2 and FMA and
/// [`set_portable_only`] has not turned the copies off.
pub fn vector_copies() -> bool {
    !PORTABLE_ONLY.load(std::sync::atomic::Ordering::Relaxed) && avx2_fma()
}

/// Whether the CPU has AVX2 and FMA (detected at run time; false off x86-64).
fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// With `true`, every kernel runs its portable copy of the steps (process-wide), so
/// that tests can compare the two copies bit for bit and benches can time the portable
/// one. The hand-vectorized exp, extrema and division ([`VectorPath`]) are chosen by the
/// CPU alone.
pub fn set_portable_only(on: bool) {
    PORTABLE_ONLY.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Partial sums of a row reduction: term j goes to lane j mod `LANES`.
pub const LANES: usize = 8;

/// One fused loop over a row of n values: for each j in increasing order,
/// `(o, k) = f(ins[·][j])`, then `outs[i][j] = o[i]` and `k[i]` is added to the i-th
/// returned sum. Every slice holds at least n values (only the first n are used).
///
/// The rows are walked in chunks of [`LANES`] values with one bounds check per chunk
/// and slice, so the body is inlined with constant lane indices and vectorizes. Each
/// sum is taken in LANES partial sums, term j into lane j mod LANES, the lanes then
/// added by [`lanes_total`]: a fixed order, so the same bits on every path; each term
/// passes through at most n − 1 additions, so Higham's bound for summation in any
/// order holds: |fl(Σxⱼ) − Σxⱼ| ≤ γₙ₋₁ Σ|xⱼ|.
#[inline(always)]
pub fn fused<const I: usize, const O: usize, const K: usize>(
    n: usize,
    ins: [&[f64]; I],
    outs: [&mut [f64]; O],
    f: impl FnMut([f64; I]) -> ([f64; O], [f64; K]),
) -> [f64; K] {
    fused_stores::<I, O, K, false>(n, ins, outs, f)
}

/// Outputs of at least this many values (8 MiB) get their last row-pass stores
/// non-temporal ([`stream_stores`]): far beyond one core's caches, a line written
/// whole is then not read from memory first.
pub const STREAM_MIN_VALUES: usize = 1 << 20;

/// Whether a row pass writing an output of `len` values streams its final stores.
pub fn stream_stores(len: usize) -> bool {
    len >= STREAM_MIN_VALUES
}

/// [`fused`] for a loop whose outputs are written once and not read again in the row
/// pass: with `stream`, each chunk of [`LANES`] values goes to memory by non-temporal
/// stores (x86-64, 16-byte aligned chunks; other chunks and the tail by plain stores).
/// The values and sums are [`fused`]'s, bit for bit: only the store differs.
#[inline(always)]
pub fn fused_streamed<const I: usize, const O: usize, const K: usize>(
    stream: bool,
    n: usize,
    ins: [&[f64]; I],
    outs: [&mut [f64]; O],
    f: impl FnMut([f64; I]) -> ([f64; O], [f64; K]),
) -> [f64; K] {
    if !stream {
        return fused_stores::<I, O, K, false>(n, ins, outs, f);
    }
    let sums = fused_stores::<I, O, K, true>(n, ins, outs, f);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of x86-64. Orders the streamed stores before any later
    // store (a worker's completion signal included).
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
    sums
}

/// The loop of [`fused`] and [`fused_streamed`]: each chunk's values are computed
/// lane by lane, then stored ([`store_chunk`]). `STREAM` is a parameter of the type,
/// not a run-time flag, so that the plain copy has no branch in its loop and writes
/// each chunk straight to the output (with a flag, LLVM kept the chunk on the stack
/// and copied it: two more stores and loads per 4 values).
#[inline(always)]
fn fused_stores<const I: usize, const O: usize, const K: usize, const STREAM: bool>(
    n: usize,
    ins: [&[f64]; I],
    mut outs: [&mut [f64]; O],
    mut f: impl FnMut([f64; I]) -> ([f64; O], [f64; K]),
) -> [f64; K] {
    let mut acc = [[0.0_f64; LANES]; K];
    // Lane l of a chunk: f's terms into lane l of the sums, its values returned.
    let mut lane = |xs: [f64; I], l: usize| {
        let (o, k) = f(xs);
        for (a, k) in acc.iter_mut().zip(k) {
            a[l] += k;
        }
        o
    };
    let full = n - n % LANES;
    for c in (0..full).step_by(LANES) {
        let chunk = ins.map(|x| &x[c..c + LANES]);
        // A fresh array per chunk: LLVM keeps it in registers.
        let mut vals = [[0.0_f64; LANES]; O];
        for l in 0..LANES {
            for (v, o) in vals.iter_mut().zip(lane(chunk.map(|x| x[l]), l)) {
                v[l] = o;
            }
        }
        for (out, v) in outs.iter_mut().zip(&vals) {
            store_chunk(STREAM, &mut out[c..c + LANES], v);
        }
    }
    let tail = n - full;
    let mut vals = [[0.0_f64; LANES]; O];
    for l in 0..tail {
        for (v, o) in vals.iter_mut().zip(lane(ins.map(|x| x[full + l]), l)) {
            v[l] = o;
        }
    }
    for (out, v) in outs.iter_mut().zip(&vals) {
        out[full..n].copy_from_slice(&v[..tail]);
    }
    acc.map(lanes_total)
}

/// `out = v` for one chunk: non-temporal stores when `stream` and the chunk is
/// 16-byte aligned on x86-64, plain ones otherwise.
#[inline(always)]
fn store_chunk(stream: bool, out: &mut [f64], v: &[f64; LANES]) {
    #[cfg(target_arch = "x86_64")]
    if stream && out.len() == LANES && (out.as_ptr() as usize).is_multiple_of(16) {
        use std::arch::x86_64::{_mm_loadu_pd, _mm_stream_pd};
        for i in (0..LANES).step_by(2) {
            // SAFETY: SSE2 is part of x86-64; out[i..i + 2] is in bounds and 16-byte
            // aligned (the chunk is, and i is even); v[i..i + 2] is in bounds.
            unsafe { _mm_stream_pd(out.as_mut_ptr().add(i), _mm_loadu_pd(v.as_ptr().add(i))) };
        }
        return;
    }
    let _ = stream;
    out.copy_from_slice(v);
}

/// The total of [`LANES`] partial sums, added pairwise: lane l + lane l+4, then
/// l + l+2, then the two left (the order of [`fused`]).
#[inline(always)]
pub fn lanes_total(a: [f64; LANES]) -> f64 {
    let b = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    let c = [b[0] + b[2], b[1] + b[3]];
    c[0] + c[1]
}

/// The largest value of a row in [`LANES`] partial maxima (a NaN entry is skipped, as
/// by `f64::max`; −∞ for an empty row). The maximum of a set does not depend on the
/// order, up to the sign of a zero maximum.
#[inline(always)]
pub fn max(xs: &[f64]) -> f64 {
    extreme::<true>(xs)
}

/// The largest (`UP`) or smallest value of a row in [`LANES`] partial extrema, NaN
/// entries skipped (±∞ for an empty row).
#[inline(always)]
fn extreme<const UP: bool>(xs: &[f64]) -> f64 {
    // `x > a` is false for a NaN x, so a NaN is skipped; the accumulators never hold
    // one. This form is one `maxpd` per chunk (`f64::max` adds a NaN test and a blend).
    let step = |a: &mut f64, x: f64| *a = if (UP && x > *a) || (!UP && x < *a) { x } else { *a };
    let start = if UP { f64::NEG_INFINITY } else { f64::INFINITY };
    let mut acc = [start; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            step(a, *x);
        }
    }
    for (a, x) in acc.iter_mut().zip(chunks.remainder()) {
        step(a, *x);
    }
    let fold = if UP { f64::max } else { f64::min };
    acc.into_iter().fold(start, fold)
}

/// The largest and the smallest value of a row (NaN entries skipped, as by
/// `f64::max`/`f64::min`; (−∞, +∞) for an empty row or one of NaNs only). Neither
/// depends on the order, up to the sign of a zero. The softmax forward takes both in
/// one pass: the maximum shifts its exp, the spread lets [`divide_exps`] divide by
/// FMAs. On the widest [`VectorPath`] the CPU has (4 registers a step in 8
/// independent chains), otherwise two passes of [`LANES`] partial extrema.
pub fn max_min(xs: &[f64]) -> (f64, f64) {
    match VectorPath::best_routines() {
        // SAFETY: the CPU has the path's features (`best_routines`).
        Some(r) => unsafe { (r.max_min)(xs) },
        None => (extreme::<true>(xs), extreme::<false>(xs)),
    }
}

/// The extrema of `xs` and of (hi, lo) one value at a time (`x > a` is false for a
/// NaN x, so a NaN is skipped).
#[inline(always)]
fn max_min_from(xs: &[f64], hi: f64, lo: f64) -> (f64, f64) {
    xs.iter().fold((hi, lo), |(hi, lo), &x| {
        (if x > hi { x } else { hi }, if x < lo { x } else { lo })
    })
}

/// The largest spread `top − min x` of a softmax row for which [`divide_exps`] divides
/// by FMAs: every exp argument is then ≥ −600 (a small margin for the rounding of the
/// spread), so every term is ≥ e⁻⁶⁰⁰ ≈ 2⁻⁸⁶⁵·⁶, well inside the range [2⁻⁹⁰⁰, 2⁹⁰⁰]
/// where the FMA quotient is the correctly rounded one.
pub const FMA_QUOTIENT_SPREAD: f64 = 600.0;

/// `xs[j] /= total` for the terms of one softmax row, bit for bit the IEEE division:
/// `xs[j] = exp(x_j − top)` as [`exp_shift_sum`] wrote them, `total` their sum and
/// `spread = top − min x_j` ([`max_min`]).
///
/// When `total` ∈ [1, 2⁶⁴] and `spread` ≤ [`FMA_QUOTIENT_SPREAD`] (every term then
/// lies in [2⁻⁹⁰⁰, 2]) on a CPU with a [`VectorPath`], each quotient comes from y =
/// 1/total (once per row), q = a·y, r = fma(−q, total, a), q′ = fma(r, y, q):
/// Markstein's correction, which gives the correctly rounded a/total for such a and
/// total (the proof is in fderiv's docs/numerics.md; tests check it exactly over ℚ and
/// against the division on the cases the proof leaves closest). Three vector
/// operations of full throughput instead of one division, which took about twice as
/// long per value on the CPU measured (0.36 against 0.16–0.20 ns, row in L1).
/// Otherwise (a −∞ mask, a far logit, a NaN row, no vector path) each value is
/// divided.
pub fn divide_exps(xs: &mut [f64], total: f64, spread: f64) {
    let p = xs.as_mut_ptr();
    // SAFETY: `xs` is valid for its length (in place).
    unsafe { divide_with(p, p, xs.len(), total, spread, false) }
}

/// `dst[j] = src[j] / total` for j < n with [`divide_exps`]'s bits (the FMA quotient
/// when [`fma_quotients`] allows and the CPU has a [`VectorPath`], else the
/// division); with `stream`, the vector path's stores are non-temporal.
///
/// # Safety
/// `src` and `dst` are valid for n values (they may be the same buffer).
unsafe fn divide_with(src: *const f64, dst: *mut f64, n: usize, total: f64, spread: f64, stream: bool) {
    if let (true, Some(r)) = (fma_quotients(total, spread), VectorPath::best_routines()) {
        // SAFETY: the CPU has the path's features (`best_routines`); the pointers as
        // the caller promised.
        unsafe { (r.divide)(src, dst, n, total, stream) };
        #[cfg(target_arch = "x86_64")]
        if stream {
            // SAFETY: SSE2 is part of x86-64. Orders the streamed stores before any
            // later store.
            unsafe { std::arch::x86_64::_mm_sfence() };
        }
        return;
    }
    for j in 0..n {
        // SAFETY: j < n.
        unsafe { *dst.add(j) = *src.add(j) / total };
    }
}

thread_local! {
    /// Each thread's scratch row for [`softmax_row_streamed`], grown once.
    static SOFTMAX_SCRATCH: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Outputs of at least this many values (32 MiB, an L3 cache's size here) get a
/// softmax forward's quotients by non-temporal stores ([`softmax_row_streamed`]): on
/// the machine measured it was 10 % faster with 2²⁵ values and slower with 2²¹ (whose
/// output the L3 still held for the next call).
pub const SOFTMAX_STREAM_MIN_VALUES: usize = 1 << 22;

/// Whether a softmax forward writing an output of `len` values streams its quotients.
pub fn stream_softmax(len: usize) -> bool {
    len >= SOFTMAX_STREAM_MIN_VALUES
}

/// One softmax row with the bits of [`softmax_row`] (`out[j] = exp(x[j] − top) / Σ` for
/// the first min(|x|, |out|) values, the rest of `out` left alone), but the exps go to
/// this thread's reused scratch row and the quotients to `out` by non-temporal stores
/// (when the FMA division applies), so that an output beyond the caches is written
/// without being read first: the same values, a third fewer bytes moved.
pub fn softmax_row_streamed(x: &[f64], out: &mut [f64], ahead: &[&[f64]]) {
    let n = x.len().min(out.len());
    let (x, out) = (&x[..n], &mut out[..n]);
    let streamed = SOFTMAX_SCRATCH.with(|cell| {
        // A nested call (none in a row pass) finds the scratch taken: unstreamed.
        let Ok(mut scratch) = cell.try_borrow_mut() else {
            return false;
        };
        if scratch.len() < n {
            scratch.resize(n, 0.0);
        }
        let e = &mut scratch[..n];
        let (top, low) = max_min(x);
        let total = exp_shift_sum(x, top, top - low, e, ahead);
        // SAFETY: `e` and `out` hold n values each and do not overlap.
        unsafe { divide_with(e.as_ptr(), out.as_mut_ptr(), n, total, top - low, true) };
        true
    });
    if !streamed {
        softmax_row(x, out, ahead);
    }
}

/// One softmax row, `out[j] = exp(x[j] − top) / Σ` for the first min(|x|, |out|) values
/// (the rest of `out` left alone), with the bits of [`max_min`], [`exp_shift_sum`] and
/// [`divide_exps`] in turn, in one call of the widest [`VectorPath`] the CPU has (its
/// row functions inlined into one: a short row's fixed costs paid once). `x` and `out`
/// are distinct rows (the borrows say so).
pub fn softmax_row(x: &[f64], out: &mut [f64], ahead: &[&[f64]]) {
    softmax_row_claiming(x, out, ahead, false)
}

/// [`softmax_row`] into a row of a row pass's output (`out`), whose following rows the
/// pass writes next: meanwhile the lines of the row [`AHEAD_VALUES`] on (whole rows;
/// rows of at least [`FETCH_MIN_ROW`]) are fetched for writing (a hint only; the same
/// bits). Beyond the caches this spares each store of the row a wait for its line.
pub fn softmax_out_row(x: &[f64], out: &mut [f64], ahead: &[&[f64]]) {
    softmax_row_claiming(x, out, ahead, true)
}

/// [`softmax_row`], claiming the output row [`AHEAD_VALUES`] on when `claim_next`.
fn softmax_row_claiming(x: &[f64], out: &mut [f64], ahead: &[&[f64]], claim_next: bool) {
    let n = x.len().min(out.len());
    let (x, out) = (&x[..n], &mut out[..n]);
    if let Some(r) = VectorPath::best_routines() {
        // SAFETY: the CPU has the path's features (`best_routines`); `x` and `out` hold
        // n values each and do not overlap (a shared and a mutable borrow).
        return unsafe { (r.softmax_row)(x.as_ptr(), out.as_mut_ptr(), n, ahead, claim_next) };
    }
    let (top, low) = max_min(x);
    let total = exp_shift_sum_claiming(x, top, top - low, out, ahead, claim_next);
    divide_exps(out, total, top - low);
}

/// Whether [`divide_exps`] may divide by FMAs: `total` ∈ [1, 2⁶⁴] and `spread` ≤
/// [`FMA_QUOTIENT_SPREAD`] (false for NaN).
pub fn fma_quotients(total: f64, spread: f64) -> bool {
    (1.0..=18_446_744_073_709_551_616.0).contains(&total) && spread <= FMA_QUOTIENT_SPREAD
}

/// `a / b` by Markstein's correction of a·(1/b) (see [`divide_exps`]): the correctly
/// rounded quotient for b ∈ [1, 2⁶⁴] and a ∈ [2⁻⁹⁰⁰, 2⁹⁰⁰] (or a = +0), with y = the
/// f64 nearest 1/b passed in. Public for the tests that check it over ℚ.
#[inline(always)]
pub fn fma_quotient(a: f64, b: f64, y: f64) -> f64 {
    let q = a * y;
    let r = (-q).mul_add(b, a);
    r.mul_add(y, q)
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

thread_local! {
    static WORKSPACE: std::cell::RefCell<Workspace> = std::cell::RefCell::new(Workspace::default());
}

/// Runs `f` with this thread's reused [`Workspace`]: the allocating forms take their
/// temporaries from it, so repeated calls allocate only their outputs (the workspace
/// keeps the largest temporaries a thread has needed until the thread ends). A nested
/// call on the same thread gets a fresh workspace.
pub fn with_workspace<T>(f: impl FnOnce(&mut Workspace) -> T) -> T {
    WORKSPACE.with(|w| match w.try_borrow_mut() {
        Ok(mut ws) => f(&mut ws),
        Err(_) => f(&mut Workspace::default()),
    })
}

/// Row `row` of length `n` of a buffer.
pub fn row(buf: &[f64], row: usize, n: usize) -> &[f64] {
    &buf[row * n..][..n]
}

/// The largest error of [`exp_sum`]'s `exp` in ulps of the exact value: for a normal
/// result e, |ê − e| ≤ `EXP_ULPS` · 2⁻⁵² · e; below the normal range, plus one
/// subnormal spacing 2⁻¹⁰⁷⁴. Checked against exact rational enclosures of exp over
/// the whole domain a max-shifted softmax feeds it (x ≤ 0 down to past the underflow
/// point, −745.2), and carried into the rigorous bound of `fderiv verify`'s softmax rung.
///
/// Why it holds, to first order (u = 2⁻⁵³, ulp = 2u; `exp1` for the steps; the full
/// argument is in fderiv's docs/numerics.md). With x = k·ln2/4 + r, |r| ≤ 0.0867: the
/// computed r is within 0.0867u + 2⁻⁷⁵ (one rounding), ≤ 0.044 ulp of e^r; the
/// polynomial ([`EXP_POLY`]) is within 0.025 ulp of e^r − 1 (bounded exactly over ℚ);
/// its roundings (2.1u relative on e^r − 1) are multiplied by |e^r − 1| ≤ 0.0906,
/// ≤ 0.1 ulp; the table entry ([`EXP2_QUARTERS`], checked exactly) ≤ 0.5 ulp; the
/// final multiply-add 0.5 ulp. In all ≈ 1.17 ulp (portable ≈ 1.26), inside `EXP_ULPS`
/// = 2; a subnormal result rounds once more (half a subnormal spacing).
pub const EXP_ULPS: f64 = 2.0;

const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000); // ln2 to 32 bits: k·LN2_HI/4 is exact for |k| < 2²¹
const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76); // ln2 − LN2_HI, rounded
const SHIFTER: f64 = 6_755_399_441_055_744.0; // 1.5·2⁵²: adding it rounds to an integer
/// 4/ln2: 4 times the f64 nearest log₂e (exact).
const FOUR_LOG2_E: f64 = 4.0 * std::f64::consts::LOG2_E;
/// |x| up to which the vector paths apply 2^q by one exponent add: e^x is then normal
/// (e^−708 > 2⁻¹⁰²²), so no clamp and no second scaling are needed.
const FAST_LIMIT: f64 = 708.0;
/// The exp's table: 2^(j/4) for j < 4, each the nearest f64 (public for its test).
pub const EXP2_QUARTERS: [f64; 4] = [
    f64::from_bits(0x3FF0_0000_0000_0000),
    f64::from_bits(0x3FF3_06FE_0A31_B715),
    f64::from_bits(0x3FF6_A09E_667F_3BCD),
    f64::from_bits(0x3FFA_E89F_995A_D3AD),
];
/// The bits of `EXP2_QUARTERS[j]` less j·2⁵⁰: adding k·2⁵⁰ (k = 4q + j) gives the bits
/// of 2^(j/4)·2^q whenever that is a normal f64. Laid out as 8 32-bit halves, it is
/// the one register the AVX2 exp permutes.
const SCALED_QUARTERS: [i64; 4] = {
    let mut t = [0; 4];
    let mut j = 0;
    while j < 4 {
        t[j] = (EXP2_QUARTERS[j].to_bits() as i64).wrapping_sub((j as i64) << 50);
        j += 1;
    }
    t
};
/// The exp's polynomial, highest coefficient first: e^r − 1 ≈ r · Σᵢ cᵢ rⁱ (i ≤ 7) on
/// |r| ≤ 0.0867 (public for its test). c₀ = 1 and c₁ = ½; c₂…c₇ are a minimax fit
/// (linear programming on 4 001 points, rounded to f64; fderiv's docs/exp_poly.py
/// reproduces it) that brings |r·P(r) − (e^r − 1)| below 0.025·2⁻⁵²·e^r, where the
/// degree-8 Taylor polynomial is 3.7 ulps off.
pub const EXP_POLY: [f64; 8] = [
    f64::from_bits(0x3EFA_02F8_76BC_0EF9),
    f64::from_bits(0x3F2A_030C_AC6B_83A1),
    f64::from_bits(0x3F56_C16C_0EA3_E0FA),
    f64::from_bits(0x3F81_1111_0A16_972D),
    f64::from_bits(0x3FA5_5555_5555_74C3),
    f64::from_bits(0x3FC5_5555_5555_7E77),
    0.5,
    1.0,
];

/// The bits of 2^(j/4)·2^q₁ and of 2^q₂ for k = 4q + j, q₁ = ⌊q/2⌋, q₂ = q − q₁ (both
/// normal for |k| < 2¹³): two scalings, so that a result below the normal range is
/// rounded once, at the second.
#[inline(always)]
fn exp_scales(k: i64) -> (f64, f64) {
    let q = k >> 2;
    let q2 = q - (q >> 1);
    let t = SCALED_QUARTERS[(k & 3) as usize]
        .wrapping_add(k.wrapping_shl(50))
        .wrapping_sub(q2.wrapping_shl(52));
    (f64::from_bits(t as u64), f64::from_bits((q2.wrapping_add(1023) as u64) << 52))
}

/// `exp x`, branch-free (so loops over it vectorize): x = k·ln2/4 + r with |r| ≲ ln2/8
/// (Cody–Waite, k by the 1.5·2⁵² rounding trick), e^r − 1 by the degree-8 polynomial
/// r·[`EXP_POLY`] (Horner), e^x = 2^(j/4)·2^q·(1 + (e^r − 1)) for k = 4q + j, the table
/// entry times 2^q₁ exact and 2^q₂ applied last (see [`exp_scales`]). The error
/// analysis is at [`EXP_ULPS`]. NaN → NaN, −∞ → 0, +∞ → +∞. `FMA` chooses fused
/// multiply-adds (with hardware FMA) or plain ones (the portable fallback).
#[inline(always)]
fn exp1<const FMA: bool>(x: f64) -> f64 {
    let fma = |a: f64, b: f64, c: f64| if FMA { a.mul_add(b, c) } else { a * b + c };
    let x = x.clamp(-746.0, 710.0);
    let t = fma(x, FOUR_LOG2_E, SHIFTER);
    let kf = t - SHIFTER;
    let k = (t.to_bits() as i64).wrapping_sub(SHIFTER.to_bits() as i64);
    let r = fma(-kf, LN2_LO / 4.0, fma(-kf, LN2_HI / 4.0, x));
    let mut p = EXP_POLY[0];
    for c in &EXP_POLY[1..] {
        p = fma(p, r, *c);
    }
    let (table, scale) = exp_scales(k);
    fma(table, p * r, table) * scale
}

/// `xⱼ ← exp xⱼ` over the slice with [`exp1`], returning Σ exp xⱼ (term j into lane
/// j mod [`LANES`], the lanes added by [`lanes_total`]).
#[inline(always)]
fn exp_sum_with<const FMA: bool>(xs: &mut [f64]) -> f64 {
    let mut lanes = [0.0; LANES];
    let mut chunks = xs.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (v, l) in c.iter_mut().zip(&mut lanes) {
            *v = exp1::<FMA>(*v);
            *l += *v;
        }
    }
    for (v, l) in chunks.into_remainder().iter_mut().zip(&mut lanes) {
        *v = exp1::<FMA>(*v);
        *l += *v;
    }
    lanes_total(lanes)
}

/// One vector register of f64 lanes and the operations the vector exp takes on it (the
/// `*_bits` ones on its bits as 64-bit integers): AVX2's 4 lanes and AVX-512's 8, so
/// that [`exp_block`] and [`exp_shift_sum_lanes`] are written once. Every method is
/// inlined into a caller compiled with the register's features.
#[cfg(target_arch = "x86_64")]
trait Lanes: Copy {
    /// Values per register.
    const WIDTH: usize;
    /// Every lane `v`.
    unsafe fn splat(v: f64) -> Self;
    /// Every lane's bits `v`.
    unsafe fn splat_bits(v: i64) -> Self;
    /// `WIDTH` values from `p`.
    unsafe fn load(p: *const f64) -> Self;
    /// The lanes to `p`.
    unsafe fn store(self, p: *mut f64);
    /// The lanes to `p` by a non-temporal store; `p` is aligned to the register's size.
    unsafe fn stream(self, p: *mut f64);
    /// Lane-wise `self + b`.
    unsafe fn add(self, b: Self) -> Self;
    /// Lane-wise `self − b`.
    unsafe fn sub(self, b: Self) -> Self;
    /// Lane-wise `self · b`.
    unsafe fn mul(self, b: Self) -> Self;
    /// Lane-wise `self · b + c`, rounded once.
    unsafe fn fmadd(self, b: Self, c: Self) -> Self;
    /// Lane-wise `c − self · b`, rounded once.
    unsafe fn fnmadd(self, b: Self, c: Self) -> Self;
    /// Lane-wise `self > b ? self : b` (`b` when either is NaN).
    unsafe fn max(self, b: Self) -> Self;
    /// Lane-wise `self < b ? self : b` (`b` when either is NaN).
    unsafe fn min(self, b: Self) -> Self;
    /// Lane-wise min(hi, max(lo, self)); a NaN lane stays NaN (max and min return
    /// their second operand when either is NaN).
    #[inline(always)]
    unsafe fn clamp(self, lo: f64, hi: f64) -> Self {
        Self::splat(hi).min(Self::splat(lo).max(self))
    }
    /// Whether some lane of `x` is NaN or beyond `limit` in magnitude.
    unsafe fn any_beyond(x: &[Self], limit: f64) -> bool;
    /// Lane-wise bits(self) + bits(b), wrapping.
    unsafe fn add_bits(self, b: Self) -> Self;
    /// Lane-wise bits(self) − bits(b), wrapping.
    unsafe fn sub_bits(self, b: Self) -> Self;
    /// Lane-wise bits(self) shifted left by `n`.
    unsafe fn shl_bits(self, n: i32) -> Self;
    /// Lane-wise bits(self) shifted right by `n`, zeros shifted in.
    unsafe fn shr_bits(self, n: i32) -> Self;
    /// For t = SHIFTER + k and kf = k (k = 4q + j): the bits `SCALED_QUARTERS[j] +
    /// k·2⁵⁰`, those of 2^(j/4)·2^q when that is a normal f64.
    unsafe fn quarter_scale(t: Self, kf: Self) -> Self;
}

/// AVX2 + FMA: the 4-entry table is one register of 8 halves, looked up by one 32-bit
/// permute at 2j and 2j + 1 (2k sits in the low bits of SHIFTER + 2k).
#[cfg(target_arch = "x86_64")]
impl Lanes for std::arch::x86_64::__m256d {
    const WIDTH: usize = 4;
    #[inline(always)]
    unsafe fn splat(v: f64) -> Self {
        std::arch::x86_64::_mm256_set1_pd(v)
    }
    #[inline(always)]
    unsafe fn splat_bits(v: i64) -> Self {
        use std::arch::x86_64::*;
        _mm256_castsi256_pd(_mm256_set1_epi64x(v))
    }
    #[inline(always)]
    unsafe fn load(p: *const f64) -> Self {
        std::arch::x86_64::_mm256_loadu_pd(p)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f64) {
        std::arch::x86_64::_mm256_storeu_pd(p, self)
    }
    #[inline(always)]
    unsafe fn stream(self, p: *mut f64) {
        std::arch::x86_64::_mm256_stream_pd(p, self)
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        std::arch::x86_64::_mm256_add_pd(self, b)
    }
    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        std::arch::x86_64::_mm256_sub_pd(self, b)
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        std::arch::x86_64::_mm256_mul_pd(self, b)
    }
    #[inline(always)]
    unsafe fn fmadd(self, b: Self, c: Self) -> Self {
        std::arch::x86_64::_mm256_fmadd_pd(self, b, c)
    }
    #[inline(always)]
    unsafe fn fnmadd(self, b: Self, c: Self) -> Self {
        std::arch::x86_64::_mm256_fnmadd_pd(self, b, c)
    }
    #[inline(always)]
    unsafe fn max(self, b: Self) -> Self {
        std::arch::x86_64::_mm256_max_pd(self, b)
    }
    #[inline(always)]
    unsafe fn min(self, b: Self) -> Self {
        std::arch::x86_64::_mm256_min_pd(self, b)
    }
    #[inline(always)]
    unsafe fn any_beyond(x: &[Self], limit: f64) -> bool {
        use std::arch::x86_64::*;
        let abs = _mm256_castsi256_pd(_mm256_set1_epi64x(i64::MAX));
        let mut far = _mm256_setzero_pd();
        for v in x {
            // Unordered: a NaN counts as beyond.
            far = _mm256_or_pd(far, _mm256_cmp_pd::<_CMP_NLE_UQ>(_mm256_and_pd(*v, abs), _mm256_set1_pd(limit)));
        }
        _mm256_movemask_pd(far) != 0
    }
    #[inline(always)]
    unsafe fn add_bits(self, b: Self) -> Self {
        use std::arch::x86_64::*;
        _mm256_castsi256_pd(_mm256_add_epi64(_mm256_castpd_si256(self), _mm256_castpd_si256(b)))
    }
    #[inline(always)]
    unsafe fn sub_bits(self, b: Self) -> Self {
        use std::arch::x86_64::*;
        _mm256_castsi256_pd(_mm256_sub_epi64(_mm256_castpd_si256(self), _mm256_castpd_si256(b)))
    }
    #[inline(always)]
    unsafe fn shl_bits(self, n: i32) -> Self {
        use std::arch::x86_64::*;
        _mm256_castsi256_pd(_mm256_sll_epi64(_mm256_castpd_si256(self), _mm_cvtsi32_si128(n)))
    }
    #[inline(always)]
    unsafe fn shr_bits(self, n: i32) -> Self {
        use std::arch::x86_64::*;
        _mm256_castsi256_pd(_mm256_srl_epi64(_mm256_castpd_si256(self), _mm_cvtsi32_si128(n)))
    }
    #[inline(always)]
    unsafe fn quarter_scale(t: Self, kf: Self) -> Self {
        use std::arch::x86_64::*;
        let halves = _mm256_loadu_si256(SCALED_QUARTERS.as_ptr().cast());
        // SHIFTER + 2k, exact (an integer in [2⁵², 2⁵³)): an addition here is cheaper
        // than doubling k among the integer operations.
        let bits = _mm256_castpd_si256(_mm256_add_pd(t, kf)); // its low 32 bits are 2k mod 2³²
        // 2k in both halves of each lane (the permute reads their low 3 bits), then
        // 2k + 1 in the high half: the halves of entry k mod 4.
        let both_halves = _mm256_shuffle_epi32::<0xA0>(bits);
        let index = _mm256_or_si256(both_halves, _mm256_set_epi32(1, 0, 1, 0, 1, 0, 1, 0));
        let entry = _mm256_permutevar8x32_epi32(halves, index);
        // k·2⁵⁰ = bits·2⁴⁹ mod 2⁶⁴ (bits(SHIFTER)·2⁴⁹ ≡ 0).
        _mm256_castsi256_pd(_mm256_add_epi64(entry, _mm256_slli_epi64::<49>(bits)))
    }
}

/// AVX-512F: the table twice over fills one register of 8 entries, looked up by one
/// 64-bit permute that reads the low 3 bits of SHIFTER + k (k mod 8) as they are.
#[cfg(target_arch = "x86_64")]
impl Lanes for std::arch::x86_64::__m512d {
    const WIDTH: usize = 8;
    #[inline(always)]
    unsafe fn splat(v: f64) -> Self {
        std::arch::x86_64::_mm512_set1_pd(v)
    }
    #[inline(always)]
    unsafe fn splat_bits(v: i64) -> Self {
        use std::arch::x86_64::*;
        _mm512_castsi512_pd(_mm512_set1_epi64(v))
    }
    #[inline(always)]
    unsafe fn load(p: *const f64) -> Self {
        std::arch::x86_64::_mm512_loadu_pd(p)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f64) {
        std::arch::x86_64::_mm512_storeu_pd(p, self)
    }
    #[inline(always)]
    unsafe fn stream(self, p: *mut f64) {
        std::arch::x86_64::_mm512_stream_pd(p, self)
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        std::arch::x86_64::_mm512_add_pd(self, b)
    }
    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        std::arch::x86_64::_mm512_sub_pd(self, b)
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        std::arch::x86_64::_mm512_mul_pd(self, b)
    }
    #[inline(always)]
    unsafe fn fmadd(self, b: Self, c: Self) -> Self {
        std::arch::x86_64::_mm512_fmadd_pd(self, b, c)
    }
    #[inline(always)]
    unsafe fn fnmadd(self, b: Self, c: Self) -> Self {
        std::arch::x86_64::_mm512_fnmadd_pd(self, b, c)
    }
    #[inline(always)]
    unsafe fn max(self, b: Self) -> Self {
        std::arch::x86_64::_mm512_max_pd(self, b)
    }
    #[inline(always)]
    unsafe fn min(self, b: Self) -> Self {
        std::arch::x86_64::_mm512_min_pd(self, b)
    }
    #[inline(always)]
    unsafe fn any_beyond(x: &[Self], limit: f64) -> bool {
        use std::arch::x86_64::*;
        let mut far: __mmask8 = 0;
        for v in x {
            // Unordered: a NaN counts as beyond.
            far |= _mm512_cmp_pd_mask::<_CMP_NLE_UQ>(_mm512_abs_pd(*v), _mm512_set1_pd(limit));
        }
        far != 0
    }
    #[inline(always)]
    unsafe fn add_bits(self, b: Self) -> Self {
        use std::arch::x86_64::*;
        _mm512_castsi512_pd(_mm512_add_epi64(_mm512_castpd_si512(self), _mm512_castpd_si512(b)))
    }
    #[inline(always)]
    unsafe fn sub_bits(self, b: Self) -> Self {
        use std::arch::x86_64::*;
        _mm512_castsi512_pd(_mm512_sub_epi64(_mm512_castpd_si512(self), _mm512_castpd_si512(b)))
    }
    #[inline(always)]
    unsafe fn shl_bits(self, n: i32) -> Self {
        use std::arch::x86_64::*;
        _mm512_castsi512_pd(_mm512_sll_epi64(_mm512_castpd_si512(self), _mm_cvtsi32_si128(n)))
    }
    #[inline(always)]
    unsafe fn shr_bits(self, n: i32) -> Self {
        use std::arch::x86_64::*;
        _mm512_castsi512_pd(_mm512_srl_epi64(_mm512_castpd_si512(self), _mm_cvtsi32_si128(n)))
    }
    #[inline(always)]
    unsafe fn quarter_scale(t: Self, _kf: Self) -> Self {
        use std::arch::x86_64::*;
        let q = SCALED_QUARTERS;
        let table = [q[0], q[1], q[2], q[3], q[0], q[1], q[2], q[3]];
        let bits = _mm512_castpd_si512(t); // bits(SHIFTER) + k: k mod 8 in the low 3 bits
        let entry = _mm512_permutexvar_epi64(bits, _mm512_loadu_epi64(table.as_ptr()));
        // k·2⁵⁰ = bits·2⁵⁰ mod 2⁶⁴ (bits(SHIFTER)·2⁵⁰ ≡ 0).
        _mm512_castsi512_pd(_mm512_add_epi64(entry, _mm512_slli_epi64::<50>(bits)))
    }
}

/// `exp` of V registers in lockstep: each step of [`exp1`]`::<true>` is taken for all V
/// before the next, so the out-of-order core has V independent multiply-adds ready.
/// `CAREFUL` is the scalar path's every step; without it (allowed when no value is
/// beyond [`FAST_LIMIT`], the usual case) the clamp and the second scaling are skipped:
/// both are then exact no-ops, so the bits are the scalar FMA path's either way.
///
/// # Safety
/// The CPU has `L`'s features (the caller is compiled with them).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn exp_block<L: Lanes, const V: usize, const CAREFUL: bool>(mut x: [L; V]) -> [L; V] {
    // Loops, not closures: a closure here would be compiled without L's features.
    if CAREFUL {
        for v in &mut x {
            *v = v.clamp(-746.0, 710.0);
        }
    }
    let (mut t, mut kf, mut r) = (x, x, x);
    for v in 0..V {
        t[v] = x[v].fmadd(L::splat(FOUR_LOG2_E), L::splat(SHIFTER));
        kf[v] = t[v].sub(L::splat(SHIFTER));
        r[v] = kf[v].fnmadd(L::splat(LN2_LO / 4.0), kf[v].fnmadd(L::splat(LN2_HI / 4.0), x[v]));
    }
    let mut p = [L::splat(EXP_POLY[0]); V];
    for c in &EXP_POLY[1..] {
        for v in 0..V {
            p[v] = p[v].fmadd(r[v], L::splat(*c));
        }
    }
    for v in 0..V {
        let table = L::quarter_scale(t[v], kf[v]);
        let pm1 = p[v].mul(r[v]);
        x[v] = if CAREFUL {
            // [`exp_scales`] without a 64-bit arithmetic shift: kb = k + 2¹³ > 0
            // (clamped), qb = q + 2048, qb − ⌊qb/2⌋ = q₂ + 1024, sh = (q₂ + 1024)·2⁵².
            let kb = t[v].sub_bits(L::splat_bits(SHIFTER.to_bits() as i64 - (1 << 13)));
            let qb = kb.shr_bits(2);
            let sh = qb.sub_bits(qb.shr_bits(1)).shl_bits(52);
            let table = table.sub_bits(sh).add_bits(L::splat_bits(1024 << 52));
            let scale = sh.sub_bits(L::splat_bits(1 << 52));
            table.fmadd(pm1, table).mul(scale)
        } else {
            table.fmadd(pm1, table)
        };
    }
    x
}

/// `dst[j] = exp(src[j] − top)` for j < n, returning the sum with term j in lane j mod
/// [`LANES`]: blocks of `BIG` registers through [`exp_block`], then of `SMALL` (`SMALL`
/// registers hold [`LANES`] values), then single values (the scalar FMA path's
/// operations and lanes, so its bits). While a big block runs, its span of each `ahead`
/// slice is prefetched (a hint: a later row's inputs arrive while this row computes),
/// and when `claim_next` (and n ≥ [`FETCH_MIN_ROW`]), its span of the row
/// [`rows_ahead`] after `dst` is fetched for writing (a hint: a row pass writes its
/// output rows in order, so that row's lines are owned by the time it is written,
/// instead of each store waiting on its line).
/// `near`: the caller knows `|src[j] − top|` ≤ [`FAST_LIMIT`] for every non-NaN `src[j]`;
/// no block then tests for far values, each takes the fast form (a NaN lane too: see
/// [`exp_shift_sum`]).
///
/// # Safety
/// The CPU has `L`'s features (the caller is compiled with them); `src` and `dst` are
/// valid for n values (they may be the same buffer: each block is read whole before it
/// is written).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn exp_shift_sum_lanes<L: Lanes, const BIG: usize, const SMALL: usize>(
    src: *const f64,
    dst: *mut f64,
    n: usize,
    top: f64,
    near: bool,
    ahead: &[&[f64]],
    claim_next: bool,
) -> f64 {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0, _MM_HINT_T0};
    debug_assert_eq!(L::WIDTH * SMALL, LANES);
    let shift = L::splat(top);
    let claim_next = claim_next && n >= FETCH_MIN_ROW;
    let claim = if claim_next { rows_ahead(n) * n } else { 0 };
    // Register v of a block holds lanes (v·WIDTH) mod LANES onwards: their partial
    // sums are acc[v mod SMALL].
    let mut acc = [L::splat(0.0); SMALL];
    let mut j = 0;
    macro_rules! blocks {
        ($v:expr, $prefetch:expr) => {
            while j + L::WIDTH * $v <= n {
                if $prefetch {
                    for a in ahead {
                        for l in (j..(j + L::WIDTH * $v).min(a.len())).step_by(8) {
                            // SAFETY: l < a.len(): a line of `a`; a prefetch never faults.
                            _mm_prefetch::<_MM_HINT_T0>(unsafe { a.as_ptr().add(l) } as *const i8);
                        }
                    }
                    if claim_next {
                        for l in (j..j + L::WIDTH * $v).step_by(8) {
                            // A prefetch never faults, wherever the address points.
                            _mm_prefetch::<_MM_HINT_ET0>(dst.wrapping_add(claim + l) as *const i8);
                        }
                    }
                }
                let mut x = [shift; $v];
                for (v, x) in x.iter_mut().enumerate() {
                    // SAFETY: j + WIDTH·V ≤ n values of `src` (caller's contract).
                    *x = unsafe { L::load(src.add(j + L::WIDTH * v)) }.sub(shift);
                }
                let e = if !near && L::any_beyond(&x, FAST_LIMIT) { exp_block::<L, $v, true>(x) } else { exp_block::<L, $v, false>(x) };
                for (v, e) in e.into_iter().enumerate() {
                    // SAFETY: as for the loads; `dst` is valid for n values.
                    unsafe { e.store(dst.add(j + L::WIDTH * v)) };
                    let a = v % SMALL;
                    acc[a] = acc[a].add(e);
                }
                j += L::WIDTH * $v;
            }
        };
    }
    blocks!(BIG, true);
    blocks!(SMALL, false);
    let mut lanes = [0.0; LANES];
    for (a, acc) in acc.iter().enumerate() {
        // SAFETY: SMALL registers of WIDTH values fill `lanes`.
        unsafe { acc.store(lanes.as_mut_ptr().add(L::WIDTH * a)) };
    }
    for (l, i) in lanes.iter_mut().zip(j..n) {
        // SAFETY: i < n.
        let e = unsafe { exp1::<true>(*src.add(i) - top) };
        unsafe { *dst.add(i) = e };
        *l += e;
    }
    lanes_total(lanes)
}

/// [`max_min`] on registers of `L`: 4 registers a step in 8 independent chains
/// (`max(x, a)` is `x > a ? x : a`, so a NaN x leaves `a`: the accumulators never
/// hold a NaN), then one register a step, the rest one value at a time. The chains
/// meet in a tree (registers, then lanes), a few dependent operations a row rather
/// than one per lane.
///
/// # Safety
/// The CPU has `L`'s features (the caller is compiled with them).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn max_min_lanes<L: Lanes>(xs: &[f64]) -> (f64, f64) {
    debug_assert!(L::WIDTH <= 8 && L::WIDTH.is_power_of_two());
    let mut hi = [L::splat(f64::NEG_INFINITY); 4];
    let mut lo = [L::splat(f64::INFINITY); 4];
    let mut blocks = xs.chunks_exact(4 * L::WIDTH);
    for b in &mut blocks {
        for v in 0..4 {
            // SAFETY: the block holds 4·WIDTH values.
            let x = unsafe { L::load(b.as_ptr().add(L::WIDTH * v)) };
            hi[v] = x.max(hi[v]);
            lo[v] = x.min(lo[v]);
        }
    }
    // No accumulator holds a NaN, so the order in which they meet changes at most the
    // sign of a zero extremum.
    let (mut top, mut low) = (hi[0].max(hi[1]).max(hi[2].max(hi[3])), lo[0].min(lo[1]).min(lo[2].min(lo[3])));
    let mut registers = blocks.remainder().chunks_exact(L::WIDTH);
    for r in &mut registers {
        // SAFETY: the chunk holds WIDTH values.
        let x = unsafe { L::load(r.as_ptr()) };
        top = x.max(top);
        low = x.min(low);
    }
    let (mut h, mut l) = ([0.0; 8], [0.0; 8]);
    // SAFETY: a register of at most 8 values fits in `h` and in `l`.
    unsafe {
        top.store(h.as_mut_ptr());
        low.store(l.as_mut_ptr());
    }
    let mut width = L::WIDTH;
    while width > 1 {
        width /= 2;
        for j in 0..width {
            h[j] = if h[j + width] > h[j] { h[j + width] } else { h[j] };
            l[j] = if l[j + width] < l[j] { l[j + width] } else { l[j] };
        }
    }
    max_min_from(registers.remainder(), h[0], l[0])
}

/// `dst[j] = fma_quotient(src[j], total, 1/total)` for j < n, on registers of `L` (the
/// scalar function's operations, so its bits), the rest one value at a time. With
/// `STREAM`, the registers go to `dst` by non-temporal stores from the first value
/// aligned to a register's size (the values before it by plain stores).
///
/// # Safety
/// The CPU has `L`'s features (the caller is compiled with them); `src` and `dst` are
/// valid for n values (they may be the same buffer: each value is read before it is
/// written, and nothing else is read after).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn divide_lanes<L: Lanes, const STREAM: bool>(src: *const f64, dst: *mut f64, n: usize, total: f64) {
    let y = 1.0 / total;
    let (b, yv) = (L::splat(total), L::splat(y));
    let bytes = 8 * L::WIDTH;
    let head = if STREAM { ((bytes - dst as usize % bytes) % bytes / 8).min(n) } else { 0 };
    let mut j = 0;
    while j < head {
        // SAFETY: j < n.
        unsafe { *dst.add(j) = fma_quotient(*src.add(j), total, y) };
        j += 1;
    }
    while j + L::WIDTH <= n {
        // SAFETY: j + WIDTH ≤ n values; with STREAM, dst + j is aligned (j ≥ head, and
        // head + a multiple of WIDTH).
        unsafe {
            let a = L::load(src.add(j));
            // As `fma_quotient`: q = a·y, r = fma(−q, total, a), q′ = fma(r, y, q).
            let q = a.mul(yv);
            let r = q.fnmadd(b, a);
            if STREAM {
                r.fmadd(yv, q).stream(dst.add(j));
            } else {
                r.fmadd(yv, q).store(dst.add(j));
            }
        }
        j += L::WIDTH;
    }
    while j < n {
        // SAFETY: j < n.
        unsafe { *dst.add(j) = fma_quotient(*src.add(j), total, y) };
        j += 1;
    }
}

/// The runtime's hand-vectorized routines compiled for one [`VectorPath`]: registers
/// `$lanes`, features `$features`, exp blocks of `$big` registers then `$small`.
macro_rules! vector_path {
    ($name:ident, $features:literal, $lanes:ty, $big:literal, $small:literal) => {
        #[cfg(target_arch = "x86_64")]
        mod $name {
            use super::*;

            /// [`exp_shift_sum_lanes`] on this path.
            ///
            /// # Safety
            /// The CPU has the features; `src` and `dst` as for [`exp_shift_sum_lanes`].
            #[target_feature(enable = $features)]
            pub unsafe fn exp_shift_sum(src: *const f64, dst: *mut f64, n: usize, top: f64, near: bool, ahead: &[&[f64]], claim_next: bool) -> f64 {
                exp_shift_sum_lanes::<$lanes, $big, $small>(src, dst, n, top, near, ahead, claim_next)
            }

            /// [`max_min_lanes`] on this path.
            ///
            /// # Safety
            /// The CPU has the features.
            #[target_feature(enable = $features)]
            pub unsafe fn max_min(xs: &[f64]) -> (f64, f64) {
                max_min_lanes::<$lanes>(xs)
            }

            /// [`divide_lanes`] on this path, streamed or not.
            ///
            /// # Safety
            /// The CPU has the features; `src` and `dst` as for [`divide_lanes`].
            #[target_feature(enable = $features)]
            pub unsafe fn divide(src: *const f64, dst: *mut f64, n: usize, total: f64, stream: bool) {
                if stream {
                    divide_lanes::<$lanes, true>(src, dst, n, total)
                } else {
                    divide_lanes::<$lanes, false>(src, dst, n, total)
                }
            }

            /// One softmax row on this path ([`softmax_row`]: the steps of
            /// [`max_min`], [`exp_shift_sum`] and [`divide_exps`], the NaN retry and
            /// the FMA division's test included) in one call, the lane functions
            /// inlined.
            ///
            /// # Safety
            /// The CPU has the features; `src` and `dst` are valid for n values and
            /// do not overlap.
            #[target_feature(enable = $features)]
            pub unsafe fn softmax_row(src: *const f64, dst: *mut f64, n: usize, ahead: &[&[f64]], claim_next: bool) {
                // SAFETY: `src` is valid for n values (caller).
                let (top, low) = max_min_lanes::<$lanes>(unsafe { std::slice::from_raw_parts(src, n) });
                let spread = top - low;
                let near = spread <= EXP_NEAR_SPREAD;
                let mut total = exp_shift_sum_lanes::<$lanes, $big, $small>(src, dst, n, top, near, ahead, claim_next);
                if near && total.is_nan() {
                    total = exp_shift_sum(src, dst, n, top, false, &[], false);
                }
                if fma_quotients(total, spread) {
                    divide_lanes::<$lanes, false>(dst, dst, n, total);
                } else {
                    for j in 0..n {
                        // SAFETY: j < n.
                        unsafe { *dst.add(j) /= total };
                    }
                }
            }

            /// This path's routines.
            pub const ROUTINES: Routines = Routines { exp_shift_sum, max_min, divide, softmax_row };
        }
    };
}
vector_path!(avx2, "avx2,fma", std::arch::x86_64::__m256d, 8, 2);
vector_path!(avx512, "avx512f,avx2,fma", std::arch::x86_64::__m512d, 8, 1);

/// [`exp_shift_sum_lanes`]'s signature: (src, dst, n, top, near, ahead, claim_next) →
/// the sum.
type ExpShiftSum = unsafe fn(*const f64, *mut f64, usize, f64, bool, &[&[f64]], bool) -> f64;

/// A [`VectorPath`]'s routines, each compiled for the path's features (so each may be
/// called only on a CPU that has them: [`VectorPath::routines`] gives them only then).
struct Routines {
    /// [`exp_shift_sum_lanes`].
    exp_shift_sum: ExpShiftSum,
    /// [`max_min_lanes`].
    max_min: unsafe fn(&[f64]) -> (f64, f64),
    /// [`divide_lanes`], streamed or not.
    divide: unsafe fn(*const f64, *mut f64, usize, f64, bool),
    /// One softmax row: (src, dst, n, ahead, claim_next).
    softmax_row: unsafe fn(*const f64, *mut f64, usize, &[&[f64]], bool),
}

/// The runtime's hand-vectorized paths (x86-64): the softmax forward's exp, row
/// extrema and FMA division. Each performs the scalar code's operations lane by lane
/// (the exp the scalar FMA path's), so each gives its bits; the widest one the CPU
/// has runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VectorPath {
    /// 4 lanes: AVX2 and FMA.
    Avx2,
    /// 8 lanes: AVX-512F, with AVX2 and FMA.
    Avx512,
}

impl VectorPath {
    /// Every path, narrowest first.
    pub const ALL: [VectorPath; 2] = [VectorPath::Avx2, VectorPath::Avx512];

    /// Whether this CPU has the path's features (detected at run time; false off
    /// x86-64).
    pub fn available(self) -> bool {
        self.routines().is_some()
    }

    /// The widest path this CPU has, if any.
    pub fn best() -> Option<VectorPath> {
        VectorPath::ALL.into_iter().rev().find(|p| p.available())
    }

    /// The path's routines when this CPU has its features, else `None`.
    fn routines(self) -> Option<&'static Routines> {
        #[cfg(target_arch = "x86_64")]
        if avx2_fma() {
            match self {
                VectorPath::Avx2 => return Some(&avx2::ROUTINES),
                VectorPath::Avx512 if std::is_x86_feature_detected!("avx512f") => return Some(&avx512::ROUTINES),
                VectorPath::Avx512 => {}
            }
        }
        let _ = self;
        None
    }

    /// The widest path's routines, if the CPU has any path (what the dispatched
    /// [`exp_shift_sum`], [`max_min`] and [`divide_exps`] run).
    fn best_routines() -> Option<&'static Routines> {
        VectorPath::ALL.into_iter().rev().find_map(VectorPath::routines)
    }

    /// `xⱼ ← exp xⱼ` on this path, returning Σⱼ exp xⱼ as [`exp_sum`] does; `None` when
    /// the CPU lacks the path's features (for tests of every path on a CPU that has
    /// several).
    pub fn exp_sum(self, xs: &mut [f64]) -> Option<f64> {
        let r = self.routines()?;
        let p = xs.as_mut_ptr();
        // SAFETY: the CPU has the features (`routines`); `xs` is valid for its length
        // (in place).
        Some(unsafe { (r.exp_shift_sum)(p, p, xs.len(), 0.0, false, &[], false) })
    }

    /// [`max_min`] on this path; `None` when the CPU lacks the path's features.
    pub fn max_min(self, xs: &[f64]) -> Option<(f64, f64)> {
        let r = self.routines()?;
        // SAFETY: the CPU has the features (`routines`).
        Some(unsafe { (r.max_min)(xs) })
    }

    /// `xⱼ ← fma_quotient(xⱼ, total, 1/total)` on this path (the FMA division
    /// [`divide_exps`] takes when [`fma_quotients`] allows); `None` (and `xs` left
    /// alone) when the CPU lacks the path's features.
    pub fn fma_divide(self, xs: &mut [f64], total: f64) -> Option<()> {
        let r = self.routines()?;
        let p = xs.as_mut_ptr();
        // SAFETY: the CPU has the features (`routines`); `xs` is valid for its length
        // (in place).
        unsafe { (r.divide)(p, p, xs.len(), total, false) };
        Some(())
    }

    /// [`softmax_row`] on this path (nothing fetched ahead); `None` (and `out` left
    /// alone) when the CPU lacks the path's features.
    pub fn softmax_row(self, x: &[f64], out: &mut [f64]) -> Option<()> {
        let r = self.routines()?;
        let n = x.len().min(out.len());
        // SAFETY: the CPU has the features (`routines`); `x` and `out` hold at least n
        // values each and do not overlap (a shared and a mutable borrow).
        unsafe { (r.softmax_row)(x.as_ptr(), out.as_mut_ptr(), n, &[], false) };
        Some(())
    }
}

/// `xⱼ ← exp xⱼ` over the slice, returning Σⱼ exp xⱼ (all terms summed in some order).
/// The widest [`VectorPath`] the CPU has (detected at run time), a portable loop
/// otherwise; all within [`EXP_ULPS`].
pub fn exp_sum(xs: &mut [f64]) -> f64 {
    exp_shift_sum_in_place(xs, 0.0, &[])
}

/// `xⱼ ← exp(xⱼ − top)` over the slice, returning the sum as [`exp_sum`] does; the
/// same bits as subtracting `top` in one pass and calling [`exp_sum`], in one pass.
/// `ahead`: slices to prefetch while it runs (a later row's inputs; a hint only).
pub fn exp_shift_sum_in_place(xs: &mut [f64], top: f64, ahead: &[&[f64]]) -> f64 {
    exp_shift_sum_into(None, xs, top, false, ahead, false)
}

/// The largest spread `top − min x` of a softmax row for which [`exp_shift_sum`]
/// skips the per-block test for far values: every shifted value x − top then lies in
/// [−708, 0], where the exp's fast form gives its careful form's bits (e^x is normal
/// there, so the clamp and the second scaling change nothing).
pub const EXP_NEAR_SPREAD: f64 = FAST_LIMIT;

/// `outⱼ = exp(xⱼ − top)` for the first min(|x|, |out|) values (the rest of `out` is
/// left alone), returning their sum as [`exp_shift_sum_in_place`] does, with its bits.
///
/// `spread`: `top − min x` over the row's non-NaN values ([`max_min`]), or +∞ when not
/// known. When it is at most [`EXP_NEAR_SPREAD`], RN(xⱼ − top) ∈ [−spread, 0] for every
/// non-NaN xⱼ (rounding is monotone), so a vector path runs every block in its fast
/// form without testing it; a NaN entry makes the sum NaN, and the row is then computed
/// again with the per-block test, so that a NaN's lane carries the same bits as on
/// every other path. (A `spread` below the row's true one is a broken precondition:
/// its far values would come out wrong.)
pub fn exp_shift_sum(x: &[f64], top: f64, spread: f64, out: &mut [f64], ahead: &[&[f64]]) -> f64 {
    exp_shift_sum_claiming(x, top, spread, out, ahead, false)
}

/// [`exp_shift_sum`], claiming the output row [`AHEAD_VALUES`] on for writing when
/// `claim_next`.
fn exp_shift_sum_claiming(x: &[f64], top: f64, spread: f64, out: &mut [f64], ahead: &[&[f64]], claim_next: bool) -> f64 {
    let n = x.len().min(out.len());
    let near = spread <= EXP_NEAR_SPREAD;
    let total = exp_shift_sum_into(Some(&x[..n]), &mut out[..n], top, near, ahead, claim_next);
    if near && total.is_nan() {
        return exp_shift_sum_into(Some(&x[..n]), &mut out[..n], top, false, &[], false);
    }
    total
}

/// `dstⱼ = exp(srcⱼ − top)`, `src` being `dst` itself when `None` (same length
/// otherwise): the widest [`VectorPath`] path the CPU has (detected at run time), the
/// portable loop otherwise. `ahead` and `claim_next` as for [`exp_shift_sum_lanes`].
fn exp_shift_sum_into(src: Option<&[f64]>, dst: &mut [f64], top: f64, near: bool, ahead: &[&[f64]], claim_next: bool) -> f64 {
    if let Some(r) = VectorPath::best_routines() {
        let d = dst.as_mut_ptr();
        let s = src.map_or(d as *const f64, <[f64]>::as_ptr);
        // SAFETY: the CPU has the path's features (`best_routines`); `s` and `d` are
        // valid for dst.len() values (`src` has dst's length) and may be the same
        // buffer.
        return unsafe { (r.exp_shift_sum)(s, d, dst.len(), top, near, ahead, claim_next) };
    }
    let _ = (ahead, near, claim_next);
    match src {
        Some(x) => dst.iter_mut().zip(x).for_each(|(o, x)| *o = x - top),
        None => dst.iter_mut().for_each(|x| *x -= top),
    }
    exp_sum_with::<false>(dst)
}

/// How far ahead a softmax row pass fetches its inputs and claims its output rows:
/// at least this many values (whole rows, at least one). Measured at 8×512×512 (2²¹
/// values, about the L3), rows fetched one ahead left the pass waiting on its loads
/// and stores (docs/performance.md, stop 23).
pub const AHEAD_VALUES: usize = 1024;

/// The shortest row for which a softmax row pass fetches ahead ([`row_after`], and the
/// output rows [`softmax_out_row`] claims). Measured at 2²¹ values (docs/
/// performance.md, stop 24): fetching ahead made rows of 256 and more 17–35 % faster,
/// rows of 64 and 128 5–10 % slower. A short row's successor already lies within the
/// out-of-order window, whose loads then overlap this row's work, and the prefetches
/// only take issue slots.
pub const FETCH_MIN_ROW: usize = 256;

/// Rows of length n in [`AHEAD_VALUES`], rounded up (so at least one).
fn rows_ahead(n: usize) -> usize {
    AHEAD_VALUES.div_ceil(n.max(1))
}

/// The row [`AHEAD_VALUES`] on from `row` (whole rows of length n, at least the next)
/// of a buffer, or nothing past the end or for rows shorter than [`FETCH_MIN_ROW`]:
/// what a row pass prefetches while it computes `row`.
pub fn row_after(buf: &[f64], row: usize, n: usize) -> &[f64] {
    if n < FETCH_MIN_ROW {
        return &[];
    }
    let start = row.saturating_add(rows_ahead(n)).saturating_mul(n);
    buf.get(start..start.saturating_add(n)).unwrap_or_default()
}

/// The portable (no FMA) path of [`exp_sum`], for tests of both paths.
pub fn exp_sum_portable(xs: &mut [f64]) -> f64 {
    exp_sum_with::<false>(xs)
}

/// The scalar FMA path (every vector path's reference, bit for bit), for tests.
pub fn exp_sum_scalar_fma(xs: &mut [f64]) -> f64 {
    exp_sum_with::<true>(xs)
}
