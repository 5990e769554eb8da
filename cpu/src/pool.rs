//! The threads the kernels run on: [`Threads`], one control for every parallel part (the f32
//! and int8 kernels, the optimizer's pass, the data loader), and [`with_spinning_pool`],
//! which keeps them awake through a loop of short parallel products.
//!
//! Every kernel runs its parallel parts on the *current* rayon pool: inside
//! [`Threads::install`] that is the pool it built, elsewhere rayon's global pool (one thread
//! per core, or `RAYON_NUM_THREADS`). Every output is computed by one task in a fixed order,
//! so results are the same bits for any thread count.
//!
//! A training step is a chain of short parallel regions with serial work between them (the
//! output layer, the loss). Between regions rayon puts its idle threads to sleep, and where
//! waking a core is slow (as on a virtual machine) the next region runs mostly on the calling
//! thread. OpenMP runtimes (and so PyTorch) avoid this the same way: their idle threads spin a
//! while before they sleep. Measurements: docs/PERFORMANCE.md, "The spinning pool".
//!
//! [`with_spinning_pool`] runs a closure on one of rayon's threads while every other thread of
//! the pool runs a *spinner*: a job that polls for work with [`rayon::yield_now`] (which runs
//! any pending job, e.g. half of a product) until the closure returns. Those threads use
//! their cores fully in the meantime, which is the price of the speed.
//!
//! [`with_spinning_pool_and`] puts that time to use: a spinner that finds no job runs a small
//! unit of background work instead (the data loader distorting the next batch's images while
//! the serial parts of a step run), and goes back to polling between units.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A pool of a chosen number of threads for the kernels (see the [module docs](self)).
///
/// ```
/// let two = cpu::pool::Threads::new(2)?;
/// assert_eq!(two.install(rayon::current_num_threads), 2);
/// # Ok::<(), cpu::pool::ThreadsError>(())
/// ```
#[derive(Debug)]
pub struct Threads {
    pool: rayon::ThreadPool,
}

impl Threads {
    /// A pool of `count` threads (at least 1).
    pub fn new(count: usize) -> Result<Self, ThreadsError> {
        if count == 0 {
            return Err(ThreadsError::Zero);
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(count)
            .thread_name(|i| format!("mlp-{i}"))
            // Whole commands run here (`host --threads N`): give them a main thread's stack.
            .stack_size(8 << 20)
            .build()
            .map_err(|e| ThreadsError::Spawn(e.to_string()))?;
        Ok(Self { pool })
    }

    /// The number of threads.
    pub fn count(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Runs `f` on this pool: every kernel it calls runs its parallel parts on these threads.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }
}

/// Why a [`Threads`] pool could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadsError {
    /// Zero threads were asked for.
    Zero,
    /// The operating system refused to start the threads.
    Spawn(String),
}

impl std::fmt::Display for ThreadsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ThreadsError::Zero => write!(f, "the number of threads must be at least 1"),
            ThreadsError::Spawn(e) => write!(f, "could not start the threads: {e}"),
        }
    }
}

impl std::error::Error for ThreadsError {}

thread_local! {
    /// Set while this thread runs a spinner: a second one picked up from inside it returns.
    static SPINNING: Cell<bool> = const { Cell::new(false) };
}

/// How long the caller waits for the spinners to start before it goes on without them (they
/// only ever help; a pool busy with other work may not start them at once).
const START_WAIT: Duration = Duration::from_millis(2);

/// Runs `f` on rayon's pool (on one of its threads) while the pool's other threads wait for
/// work by polling instead of sleeping (see the module docs). Results are those of `f`
/// alone: the spinners only run jobs that `f` (or anybody else) hands to the pool.
///
/// The spinners are skipped when the pool has one thread or more threads than the machine
/// has cores (where spinning would take time from the threads doing the work).
pub fn with_spinning_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    with_spinning_pool_and(&|| false, f)
}

/// [`with_spinning_pool`] whose spinners, whenever the pool has no job for them, call `idle`:
/// one small unit of background work (a few microseconds, so a job handed to the pool waits
/// no longer than that), returning false when it had none. `f` must not wait for `idle`'s
/// work to be done by a spinner: there may be none (one thread, or a pool busy elsewhere),
/// so whoever needs the work finishes what is left of it.
pub fn with_spinning_pool_and<R: Send>(idle: &(dyn Fn() -> bool + Sync), f: impl FnOnce() -> R + Send) -> R {
    let threads = rayon::current_num_threads();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    with_spinners(if threads > 1 && threads <= cores { threads - 1 } else { 0 }, idle, f)
}

/// [`with_spinning_pool_and`] with `spinners` spinners (at most the pool's other threads).
fn with_spinners<R: Send>(
    spinners: usize,
    idle: &(dyn Fn() -> bool + Sync),
    f: impl FnOnce() -> R + Send,
) -> R {
    let done = AtomicBool::new(false);
    let started = AtomicUsize::new(0);
    rayon::scope(|scope| {
        let owner = rayon::current_thread_index();
        let (done, started) = (&done, &started);
        for _ in 0..spinners {
            scope.spawn(move |_| spin(owner, spinners, started, done, idle));
        }
        let since = Instant::now();
        while started.load(Ordering::Acquire) < spinners && since.elapsed() < START_WAIT {
            std::hint::spin_loop();
        }
        // Stops the spinners even if `f` panics (the scope waits for them before it unwinds).
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let _stop = Stop(done);
        f()
    })
}

/// One spinner: polls the pool for jobs until `done`, running `idle` when there is none. It
/// returns at once on the thread that runs the caller's closure (which must never block on
/// it) and inside another spinner.
fn spin(
    owner: Option<usize>,
    spinners: usize,
    started: &AtomicUsize,
    done: &AtomicBool,
    idle: &(dyn Fn() -> bool + Sync),
) {
    started.fetch_add(1, Ordering::AcqRel);
    if rayon::current_thread_index() == owner || SPINNING.with(|s| s.replace(true)) {
        return;
    }
    // Takes no job before every spinner is running, so none picks up another spinner.
    while started.load(Ordering::Acquire) < spinners && !done.load(Ordering::Acquire) {
        std::hint::spin_loop();
    }
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() != Some(rayon::Yield::Executed) && !idle() {
            std::hint::spin_loop();
        }
    }
    SPINNING.with(|s| s.set(false));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool")
    }

    #[test]
    fn returns_the_closures_result_and_runs_its_parallel_parts() {
        for threads in [1, 2, 3] {
            let got = pool(threads).install(|| {
                with_spinners(threads - 1, &|| false, || {
                    // Two halves that wait for each other: they finish only if two threads
                    // run them at once, i.e. a spinner (or a woken thread) took one.
                    let meet = Barrier::new(2.min(threads));
                    let halves = || {
                        if threads > 1 {
                            meet.wait();
                        }
                        (0..1000u64).sum::<u64>()
                    };
                    let (a, b) = if threads > 1 { rayon::join(halves, halves) } else { (halves(), halves()) };
                    a + b
                })
            });
            assert_eq!(got, 999_000, "{threads} threads");
        }
    }

    #[test]
    fn spinners_without_jobs_run_the_idle_work() {
        let units = AtomicUsize::new(0);
        let idle = || units.fetch_add(1, Ordering::Relaxed) < 1000;
        let seen = pool(2).install(|| {
            with_spinners(1, &idle, || {
                // No job for the spinner: it runs the idle work meanwhile.
                let since = Instant::now();
                while units.load(Ordering::Relaxed) == 0 && since.elapsed() < Duration::from_secs(10) {
                    std::hint::spin_loop();
                }
                units.load(Ordering::Relaxed)
            })
        });
        assert!(seen > 0, "the spinner ran no idle work in 10 s");
        // One thread: no spinner, so nobody runs it.
        units.store(0, Ordering::Relaxed);
        pool(1).install(|| with_spinners(0, &idle, || ()));
        assert_eq!(units.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_spinners_stop_when_the_closure_returns_and_when_it_panics() {
        let pool = pool(2);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.install(|| with_spinners(1, &|| false, || panic!("the closure failed")))
        }));
        assert!(panicked.is_err(), "the closure's panic reaches the caller");
        // The pool is free again: a spinner left running would hold its second thread, and
        // these halves would wait on each other forever.
        let meet = Barrier::new(2);
        pool.install(|| rayon::join(|| meet.wait(), || meet.wait()));
    }

    #[test]
    fn concurrent_callers_on_one_pool_all_finish() {
        // Callers from several threads share a 2-thread pool: a spinner may pick up another
        // caller's closure, and a closure another caller's spinner; all must finish.
        let pool = Arc::new(pool(2));
        let callers: Vec<_> = (0..4u64)
            .map(|i| {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || {
                    pool.install(|| {
                        with_spinners(1, &|| false, || {
                            (0..200u64).map(|k| rayon::join(|| k * i, || k).0).sum::<u64>()
                        })
                    })
                })
            })
            .collect();
        for (i, caller) in callers.into_iter().enumerate() {
            assert_eq!(caller.join().expect("a caller"), 19_900 * i as u64);
        }
    }
}
