//! Parallel work from outside rayon's pool and from inside it: `runtime::par_chunks`
//! (the row passes' chunks) and `runtime::bmm` (the GEMM steps' heads and bands), the
//! caller taking part when it is outside the pool, running alone when there is one item.

use fderiv::kernels::runtime::{bmm, par_chunks};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

/// One chunk runs on the calling thread, the pool untouched: a single-chunk step (a
/// small row pass, a one-band GEMM) pays no hand-over to a worker. Shown with every
/// worker held busy: a helper spawned into the pool could not run, and the caller,
/// which waits for its helpers, would not return until the workers are let go.
#[test]
fn a_single_chunk_runs_on_the_caller_without_the_pool() {
    let threads = rayon::current_num_threads();
    let (held, release) = (AtomicUsize::new(0), AtomicBool::new(false));
    rayon::scope(|s| {
        for _ in 0..threads {
            s.spawn(|_| {
                held.fetch_add(1, Ordering::AcqRel);
                while !release.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
            });
        }
        // This closure runs on a worker too: with the others held, no worker is free.
        while held.load(Ordering::Acquire) < threads - 1 {
            std::hint::spin_loop();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let caller = std::thread::spawn(move || {
            let mut buf = vec![0.0; 100];
            par_chunks(&mut buf, 1 << 14, |(_, c)| c.fill(1.0));
            let _ = tx.send(buf);
        });
        let got = rx.recv_timeout(Duration::from_secs(5));
        release.store(true, Ordering::Release);
        caller.join().expect("the caller panicked");
        let buf = got.expect("one chunk waited for the (busy) pool");
        assert!(buf.iter().all(|&v| v == 1.0));
    });
}

/// `bmm` gives every entry of every head exactly (small integers: every product and
/// partial sum is an exact f64), plain and accumulated, transposes included, from the
/// test thread and from a worker, for head counts and row counts that split the heads
/// into bands of `GEMM_MIN_BAND` rows and more, one of them shorter.
#[test]
fn bmm_gives_every_head_and_band_exactly_from_outside_the_pool_and_from_a_worker() {
    let value = |i: usize, seed: usize| ((i * 7 + seed * 13) % 11) as f64 - 5.0;
    let check = |[h, m, k, p]: [usize; 4], ta: bool, tb: bool| {
        let a: Vec<f64> = (0..h * m * k).map(|i| value(i, 1)).collect();
        let b: Vec<f64> = (0..h * k * p).map(|i| value(i, 2)).collect();
        let old: Vec<f64> = (0..h * m * p).map(|i| value(i, 3)).collect();
        // op(a)[i][l] and op(b)[l][j] of head t, read by the layouts bmm documents.
        let a_at =
            |t: usize, i: usize, l: usize| a[t * m * k + if ta { l * m + i } else { i * k + l }];
        let b_at =
            |t: usize, l: usize, j: usize| b[t * k * p + if tb { j * k + l } else { l * p + j }];
        let mut want = vec![0.0; h * m * p];
        for t in 0..h {
            for i in 0..m {
                for j in 0..p {
                    want[(t * m + i) * p + j] = (0..k).map(|l| a_at(t, i, l) * b_at(t, l, j)).sum();
                }
            }
        }
        let summed: Vec<f64> = want.iter().zip(&old).map(|(w, o)| w + o).collect();
        let run = |accumulate: bool| {
            let mut out = if accumulate {
                old.clone()
            } else {
                vec![f64::NAN; h * m * p]
            };
            bmm([h, m, k, p], &a, ta, &b, tb, &mut out, accumulate).unwrap();
            out
        };
        for (accumulate, want) in [(false, &want), (true, &summed)] {
            let shape = format!("{h}x{m}x{k}x{p}, ta {ta}, tb {tb}, accumulate {accumulate}");
            assert_eq!(&run(accumulate), want, "{shape}, outside the pool");
            assert_eq!(
                &rayon::scope(|_| run(accumulate)),
                want,
                "{shape}, on a worker"
            );
        }
    };
    assert_eq!(rayon::current_thread_index(), None);
    for dims in [
        [1, 1, 1, 1],
        [1, 100, 7, 9],
        [3, 70, 5, 4],
        [2, 33, 3, 65],
        [5, 31, 2, 3],
    ] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            check(dims, ta, tb);
        }
    }
}
