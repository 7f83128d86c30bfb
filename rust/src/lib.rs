//! Rust core of the crewai fork.
//!
//! The plain modules here know nothing of Python and are tested with
//! `cargo test`, one per component of the Python package (`database`,
//! `memory`, `serialization`, `tasks`); `python` (behind the `python` feature) is the
//! thin PyO3 layer that maturin builds into `crewai_rust._native`, laid out the
//! same way.

pub mod build_info;
pub mod database;
pub mod memory;
pub mod serialization;
pub mod tasks;

/// Lock `mutex`, also when a panic poisoned it: every panic here surfaces as
/// a Python exception, and the data each of these mutexes guards stays
/// consistent at every panic point (a pool of connections, a slot, a flag).
pub(crate) fn locked<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(feature = "python")]
mod python;

#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::{Arc, Barrier};

    /// Run `work` on `threads` threads released at the same moment; their results in order.
    pub(crate) fn at_once<T: Send + 'static>(threads: usize, work: impl Fn() -> T + Send + Sync + 'static) -> Vec<T> {
        let (start, work) = (Arc::new(Barrier::new(threads)), Arc::new(work));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (start, work) = (Arc::clone(&start), Arc::clone(&work));
                std::thread::spawn(move || {
                    start.wait();
                    work()
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().unwrap()).collect()
    }
}
