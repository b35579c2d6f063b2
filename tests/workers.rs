//! `runtime::on_workers`: a kernel with several parallel steps runs them from a rayon
//! worker thread (each step then forks from inside the pool). `runtime::par_chunks`:
//! chunks in parallel, the caller taking part when it is outside the pool.

use fderiv::kernels::runtime::{on_workers, par_chunks};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[test]
fn on_workers_runs_its_closure_on_a_rayon_worker_and_returns_its_value() {
    // The test thread is not a worker: a closure run in place would see `None` here.
    assert_eq!(rayon::current_thread_index(), None);
    let (index, value) = on_workers(|| (rayon::current_thread_index(), 41 + 1));
    assert!(index.is_some(), "the closure ran outside the pool");
    assert_eq!(value, 42);
}

#[test]
fn on_workers_runs_in_place_on_a_worker_and_passes_errors_through() {
    // Already on a worker: the same thread runs the closure.
    let (outer, inner) = rayon::scope(|_| {
        let outer = rayon::current_thread_index();
        (outer, on_workers(rayon::current_thread_index))
    });
    assert!(outer.is_some());
    assert_eq!(outer, inner);
    let err: Result<(), String> = on_workers(|| Err("a step failed".to_string()));
    assert_eq!(err, Err("a step failed".to_string()));
}

/// Every chunk once, with its index, whatever the buffer's and the chunk's length (0
/// counts as 1), from the test thread (outside the pool: the caller takes part) and
/// from a worker.
#[test]
fn par_chunks_runs_every_chunk_once_from_outside_the_pool_and_from_a_worker() {
    let run = |len: usize, chunk: usize| {
        let mut buf = vec![-1.0; len];
        let visits: Vec<AtomicUsize> = (0..len).map(|_| AtomicUsize::new(0)).collect();
        par_chunks(&mut buf, chunk, |(i, c)| {
            for (j, v) in c.iter_mut().enumerate() {
                *v = i as f64;
                visits[i * chunk.max(1) + j].fetch_add(1, Ordering::Relaxed);
            }
        });
        let want: Vec<f64> = (0..len).map(|j| (j / chunk.max(1)) as f64).collect();
        assert_eq!(buf, want, "len {len}, chunk {chunk}");
        assert!(visits.iter().all(|v| v.load(Ordering::Relaxed) == 1));
    };
    assert_eq!(rayon::current_thread_index(), None);
    for (len, chunk) in [(0, 4), (1, 4), (10_000, 7), (10_000, 0), (50_000, 1 << 14)] {
        run(len, chunk);
        rayon::scope(|_| run(len, chunk));
    }
}

/// A task that panics on a helper (a pool worker taking part) reaches the caller as a
/// panic, and the caller, which waits for the chunks in helpers' hands, does not wait
/// forever on the chunk whose task panicked.
#[test]
fn a_panic_in_a_helpers_chunk_reaches_the_caller_without_a_hang() {
    if rayon::current_num_threads() < 2 {
        return; // no helper in a pool of one
    }
    let helper_claimed = AtomicBool::new(false);
    let mut buf = vec![0.0; 64];
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        par_chunks(&mut buf, 1, |_| {
            if rayon::current_thread_index().is_some() {
                helper_claimed.store(true, Ordering::Relaxed);
                panic!("a helper's chunk failed");
            }
            // The caller leaves time for a helper to wake and claim a chunk.
            let start = Instant::now();
            while !helper_claimed.load(Ordering::Relaxed)
                && start.elapsed() < Duration::from_secs(5)
            {
                std::thread::yield_now();
            }
        });
    }));
    assert!(
        helper_claimed.load(Ordering::Relaxed),
        "no helper claimed a chunk in 5 s"
    );
    assert!(result.is_err());
}
