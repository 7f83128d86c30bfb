//! A bounded pool of worker threads that run queued jobs, reused across
//! submissions: what runs crewai's async tasks on the fork.
//!
//! The pool starts a worker only when a job waits and no worker is idle, up to
//! `max_workers`; an idle worker exits after `idle_timeout`. A job submitted
//! as `nested` (from inside a running job, which may wait for it) may start a
//! worker beyond the bound: a job that waits for another queued behind it
//! would otherwise wait forever once every worker does the same.
//!
//! The job type and what running one means belong to the caller (the Python
//! bindings run a Python callable); a job that panics is reported to
//! `on_panic` and its worker goes on.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

/// How a job is run, and what to do when running one panics (its message).
pub trait Runner<J>: Send + Sync + 'static {
    fn run(&self, job: J);
    fn on_panic(&self, message: String);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Worker threads alive now.
    pub workers: usize,
    /// The most worker threads alive at once since the pool was made.
    pub peak_workers: usize,
    /// Jobs running now.
    pub running: usize,
    /// Jobs waiting for a worker.
    pub queued: usize,
}

struct State<J> {
    queue: VecDeque<J>,
    workers: usize,
    idle: usize,
    peak_workers: usize,
    running: usize,
    closed: bool,
    next_worker_number: usize,
}

struct Shared<J> {
    state: Mutex<State<J>>,
    /// Signalled when a job is queued or the pool closes.
    work: Condvar,
    /// Signalled when a job ends or a worker exits.
    settled: Condvar,
    max_workers: usize,
    stack_size: usize,
    idle_timeout: Duration,
    name: String,
}

impl<J> Shared<J> {
    fn lock(&self) -> MutexGuard<'_, State<J>> {
        // A job runs outside the lock and panics are caught around it: a poisoned
        // lock only means a panic between two plain field updates, which leaves
        // the counters as they were. Go on with them.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// The pool was shut down.
    Closed,
    /// The operating system would not start a worker thread (the message says why).
    Spawn(String),
}

pub struct WorkerPool<J: Send + 'static> {
    shared: Arc<Shared<J>>,
    runner: Arc<dyn Runner<J>>,
}

impl<J: Send + 'static> WorkerPool<J> {
    /// A pool of at most `max_workers` workers (at least one), each with a
    /// stack of `stack_size` bytes, named `name-N`.
    pub fn new(
        max_workers: usize,
        stack_size: usize,
        idle_timeout: Duration,
        name: &str,
        runner: Arc<dyn Runner<J>>,
    ) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                workers: 0,
                idle: 0,
                peak_workers: 0,
                running: 0,
                closed: false,
                next_worker_number: 0,
            }),
            work: Condvar::new(),
            settled: Condvar::new(),
            max_workers: max_workers.max(1),
            stack_size,
            idle_timeout,
            name: name.to_string(),
        });
        WorkerPool { shared, runner }
    }

    pub fn max_workers(&self) -> usize {
        self.shared.max_workers
    }

    /// Queue `job`; start a worker for it when none is idle and the bound (or,
    /// for a `nested` job, nothing) stops it. On an error the job is handed back.
    pub fn submit(&self, job: J, nested: bool) -> Result<(), (J, SubmitError)> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err((job, SubmitError::Closed));
        }
        let waiting = state.queue.len();
        let needs_worker = state.idle <= waiting && (nested || state.workers < self.shared.max_workers);
        if needs_worker {
            let number = state.next_worker_number;
            if let Err(err) = self.spawn_worker(number) {
                if state.workers == 0 {
                    // Nothing would ever run it.
                    return Err((job, SubmitError::Spawn(err.to_string())));
                }
            } else {
                state.next_worker_number += 1;
                state.workers += 1;
                state.idle += 1; // it takes the job below like any idle worker
                state.peak_workers = state.peak_workers.max(state.workers);
            }
        }
        state.queue.push_back(job);
        drop(state);
        self.shared.work.notify_one();
        Ok(())
    }

    fn spawn_worker(&self, number: usize) -> std::io::Result<()> {
        let shared = Arc::clone(&self.shared);
        let runner = Arc::clone(&self.runner);
        thread::Builder::new()
            .name(format!("{}-{number}", self.shared.name))
            .stack_size(self.shared.stack_size)
            .spawn(move || work(&shared, runner.as_ref()))
            .map(|_| ())
    }

    pub fn stats(&self) -> PoolStats {
        let state = self.shared.lock();
        PoolStats {
            workers: state.workers,
            peak_workers: state.peak_workers,
            running: state.running,
            queued: state.queue.len(),
        }
    }

    /// Refuse new jobs and hand back the queued ones (never started); the
    /// running ones finish, then their workers exit.
    pub fn close(&self) -> Vec<J> {
        let mut state = self.shared.lock();
        state.closed = true;
        let queued = state.queue.drain(..).collect();
        drop(state);
        self.shared.work.notify_all();
        queued
    }

    /// Wait until no job runs and no job is queued, at most `timeout`; true when so.
    pub fn wait_idle(&self, timeout: Option<Duration>) -> bool {
        let state = self.shared.lock();
        let settled = |s: &mut State<J>| s.running > 0 || !s.queue.is_empty();
        match timeout {
            None => {
                let _state = self.shared.settled.wait_while(state, settled).unwrap_or_else(|p| p.into_inner());
                true
            }
            Some(limit) => {
                let (_state, result) =
                    self.shared.settled.wait_timeout_while(state, limit, settled).unwrap_or_else(|p| p.into_inner());
                !result.timed_out()
            }
        }
    }
}

fn work<J: Send + 'static>(shared: &Shared<J>, runner: &dyn Runner<J>) {
    let mut state = shared.lock();
    loop {
        if let Some(job) = state.queue.pop_front() {
            state.idle -= 1;
            state.running += 1;
            drop(state);
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| runner.run(job))) {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic payload".to_string());
                runner.on_panic(message);
            }
            state = shared.lock();
            state.running -= 1;
            state.idle += 1;
            shared.settled.notify_all();
            continue;
        }
        if state.closed {
            break;
        }
        let (next, waited) = shared.work.wait_timeout(state, shared.idle_timeout).unwrap_or_else(|p| p.into_inner());
        state = next;
        if waited.timed_out() && state.queue.is_empty() {
            break;
        }
    }
    state.idle -= 1;
    state.workers -= 1;
    drop(state);
    shared.settled.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Instant;

    /// Runs a job (a closure); counts panics.
    struct Calls {
        panics: AtomicUsize,
    }

    type Job = Box<dyn FnOnce() + Send>;

    impl Runner<Job> for Calls {
        fn run(&self, job: Job) {
            job()
        }
        fn on_panic(&self, _message: String) {
            self.panics.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn pool(max: usize, idle: Duration) -> (WorkerPool<Job>, Arc<Calls>) {
        let calls = Arc::new(Calls { panics: AtomicUsize::new(0) });
        (WorkerPool::new(max, 256 * 1024, idle, "test", calls.clone()), calls)
    }

    #[test]
    fn runs_every_job_with_at_most_max_workers() {
        let (pool, _) = pool(3, Duration::from_secs(5));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (done, results) = mpsc::channel();
        for i in 0..50 {
            let (running, most, done) = (running.clone(), most.clone(), done.clone());
            let job: Job = Box::new(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(2));
                running.fetch_sub(1, Ordering::SeqCst);
                done.send(i).unwrap();
            });
            pool.submit(job, false).map_err(|(_, e)| e).unwrap();
        }
        let mut seen: Vec<i32> = (0..50).map(|_| results.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
        seen.sort();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= 3);
        assert!(pool.stats().peak_workers <= 3);
        assert!(pool.wait_idle(Some(Duration::from_secs(5))));
    }

    #[test]
    fn a_nested_job_runs_although_every_worker_waits_for_one() {
        let (pool, _) = pool(1, Duration::from_secs(5));
        let pool = Arc::new(pool);
        let (done, result) = mpsc::channel();
        let inner_pool = pool.clone();
        let outer: Job = Box::new(move || {
            let (inner_done, inner_result) = mpsc::channel();
            let inner: Job = Box::new(move || inner_done.send(7).unwrap());
            inner_pool.submit(inner, true).map_err(|(_, e)| e).unwrap();
            done.send(inner_result.recv_timeout(Duration::from_secs(10)).unwrap()).unwrap();
        });
        pool.submit(outer, false).map_err(|(_, e)| e).unwrap();
        assert_eq!(result.recv_timeout(Duration::from_secs(10)).unwrap(), 7);
        assert_eq!(pool.stats().peak_workers, 2);
    }

    #[test]
    fn a_panicking_job_is_reported_and_its_worker_goes_on() {
        let (pool, calls) = pool(1, Duration::from_secs(5));
        pool.submit(Box::new(|| panic!("boom")), false).map_err(|(_, e)| e).unwrap();
        let (done, result) = mpsc::channel();
        pool.submit(Box::new(move || done.send(1).unwrap()), false).map_err(|(_, e)| e).unwrap();
        assert_eq!(result.recv_timeout(Duration::from_secs(10)).unwrap(), 1);
        assert_eq!(calls.panics.load(Ordering::SeqCst), 1);
        assert_eq!(pool.stats().peak_workers, 1);
    }

    #[test]
    fn idle_workers_exit_and_new_ones_start_on_demand() {
        let (pool, _) = pool(2, Duration::from_millis(20));
        let (done, result) = mpsc::channel();
        let first = done.clone();
        pool.submit(Box::new(move || first.send(1).unwrap()), false).map_err(|(_, e)| e).unwrap();
        result.recv_timeout(Duration::from_secs(10)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.stats().workers > 0 {
            assert!(Instant::now() < deadline, "the idle worker never exited");
            thread::sleep(Duration::from_millis(5));
        }
        pool.submit(Box::new(move || done.send(2).unwrap()), false).map_err(|(_, e)| e).unwrap();
        assert_eq!(result.recv_timeout(Duration::from_secs(10)).unwrap(), 2);
    }

    #[test]
    fn close_hands_back_queued_jobs_and_refuses_new_ones() {
        let (pool, _) = pool(1, Duration::from_secs(5));
        let (started, wait_start) = mpsc::channel();
        let (release, gate) = mpsc::channel::<()>();
        pool.submit(
            Box::new(move || {
                started.send(()).unwrap();
                gate.recv().unwrap();
            }),
            false,
        )
        .map_err(|(_, e)| e)
        .unwrap();
        wait_start.recv_timeout(Duration::from_secs(10)).unwrap();
        pool.submit(Box::new(|| unreachable!("a queued job ran after close")), false).map_err(|(_, e)| e).unwrap();
        let queued = pool.close();
        assert_eq!(queued.len(), 1);
        assert!(matches!(pool.submit(Box::new(|| ()), false), Err((_, SubmitError::Closed))));
        assert!(!pool.wait_idle(Some(Duration::from_millis(20))));
        release.send(()).unwrap();
        assert!(pool.wait_idle(Some(Duration::from_secs(10))));
    }
}
