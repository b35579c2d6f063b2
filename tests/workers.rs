//! `runtime::on_workers`: a kernel with several parallel steps runs them from a rayon
//! worker thread (each step then forks from inside the pool).

use fderiv::kernels::runtime::on_workers;

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
