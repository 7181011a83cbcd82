//! The threads that supervise the daemon's runs, kept for the next run once theirs has
//! ended.
//!
//! A run is supervised by one thread for as long as it lasts (`Supervisor::run` blocks
//! until its process is reaped), so the daemon needs as many threads as runs in
//! progress. Making a thread for each run and ending it after cost every run about ten
//! system calls of its own (the clone, the stack's mapping, guard page and unmapping,
//! the signal stack, ...) and the loop the clone itself. Here a thread that finished a
//! run waits for the next one; a run given while none waits gets a new thread at once,
//! so runs never queue behind each other. A thread left without work for [`IDLE`] ends, so an idle
//! daemon holds no thread of this pool and nothing here wakes it.
//!
//! One thread starting a batch of up to 16 runs and then polling all their pidfds halved
//! these threads' context switches per run (2.6 to 1.4) at a thousand runs a second, but
//! not their CPU: the spawns, directories and files are what they cost, and the daemon's
//! CPU per run came out the same within the machine's noise (0.194-0.216 against
//! 0.196-0.215 ms in six paired 20 s rounds). It was not kept: a run supervised on a
//! thread of its own is simpler, and the wake-ups that did cost were the loop's (see
//! `service.rs`).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

/// How long a thread waits for another run before it ends.
const IDLE: Duration = Duration::from_secs(10);

/// The stack of a thread of the pool. A run's thread makes the run's directory and
/// file, starts the process and waits for it: a few kilobytes of stack (its largest
/// frames hold 4 KiB buffers), where Rust's default reserves 2 MiB a thread, which at a
/// thousand runs a second and several hundred runs at once was most of the daemon's
/// address space. 256 KiB leaves a wide margin; the daemon's tests run every run on
/// such a thread, in debug builds whose frames are several times larger.
const STACK: usize = 256 * 1024;

/// The work of one run.
type Work = Box<dyn FnOnce() + Send + 'static>;

#[derive(Default)]
struct State {
    queue: VecDeque<Work>,
    /// Threads waiting for work, plus threads made and not yet looking for it: each
    /// will take one piece of work from the queue.
    available: usize,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    work: Condvar,
}

/// The pool; cloning shares it.
#[derive(Clone, Default)]
pub(super) struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    /// An empty pool: threads are made as runs need them.
    pub(super) fn new() -> Pool {
        Pool::default()
    }

    /// Runs `work` on a waiting thread, or on a new one when none waits. An error
    /// means that no thread could be made for it; `work` is dropped then.
    pub(super) fn run(&self, work: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        let mut state = self.lock();
        if state.queue.len() >= state.available {
            let shared = Arc::clone(&self.shared);
            std::thread::Builder::new()
                .name("run".to_owned())
                .stack_size(STACK)
                .spawn(move || serve(&shared))?;
            state.available += 1;
        }
        state.queue.push_back(Box::new(work));
        drop(state);
        self.shared.work.notify_one();
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The lock is never held while work runs: a panic cannot poison it mid-update.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Threads waiting or about to take work (for tests).
    #[cfg(test)]
    fn available(&self) -> usize {
        self.lock().available
    }
}

/// One thread of the pool: takes work until none comes for [`IDLE`].
fn serve(shared: &Shared) {
    let lock = || shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    let mut state = lock();
    loop {
        if let Some(work) = state.queue.pop_front() {
            state.available -= 1;
            drop(state);
            // A panicking run must not take the thread's count down with it: the
            // count was given back above, and the thread ends here.
            work();
            state = lock();
            state.available += 1;
            continue;
        }
        let (next, waited) = shared
            .work
            .wait_timeout(state, IDLE)
            .unwrap_or_else(PoisonError::into_inner);
        state = next;
        if waited.timed_out() && state.queue.is_empty() {
            state.available -= 1;
            return;
        }
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
