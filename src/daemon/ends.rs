//! The runs that ended, handed from the threads that supervised them to the loop, which
//! is woken for an end only when it has a use for it at once.
//!
//! Sent on the loop's channel, every end woke the loop: at a thousand runs a second that
//! was a thousand wake-ups (and rounds of the loop) a second on top of the due times,
//! most of them only to free a slot nothing waited for and to put the end in a batch
//! recorded 50 ms later anyway. Here an end joins a queue, and the loop is sent
//! [`Event::Ended`](super::service::Event) only if it asked for that when it went to
//! sleep: when it has no end waiting to be recorded (so the first end of a batch is
//! recorded within the batch's wait, however far the next due time is), when a due run
//! waits for its job or a slot, or while the daemon stops. Otherwise the queue is taken
//! at the loop's next wake-up, always before it starts a run, so a run never starts
//! without the ends before it.
//!
//! The queue and the wish to be woken share one lock: the loop asks only while the queue
//! is empty ([`Ends::sleep`]), and a thread that adds an end reads the wish in the same
//! critical section ([`Ends::push`]), so no end can slip in between the loop's look and
//! its sleep.

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::planner::RunSlot;
use crate::exec::AttemptReport;

/// A run that ended, and how.
pub(super) struct End {
    /// Its slot in the planner.
    pub(super) slot: RunSlot,
    /// How its process ended.
    pub(super) report: AttemptReport,
    /// What it left in its `return_data.json`, read on its own thread: on a busy disk
    /// the look-up of that file (which most runs never write) could keep the loop
    /// waiting for tens of milliseconds behind other runs' directories.
    pub(super) run_data: Option<serde_json::Value>,
}

#[derive(Default)]
struct State {
    queue: Vec<End>,
    /// The loop sleeps and wants to hear of the next end at once.
    wake: bool,
}

/// The queue of ends; shared by the loop and the run threads.
#[derive(Default)]
pub(super) struct Ends {
    state: Mutex<State>,
}

impl Ends {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code that can panic runs under the lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds an end; returns whether the loop asked to be woken for it (then the caller
    /// wakes it, once).
    pub(super) fn push(&self, end: End) -> bool {
        let mut state = self.lock();
        state.queue.push(end);
        std::mem::take(&mut state.wake)
    }

    /// Every end added since the last call, oldest first.
    pub(super) fn take(&self) -> Vec<End> {
        let mut state = self.lock();
        state.wake = false;
        std::mem::take(&mut state.queue)
    }

    /// The loop is about to sleep: `false` if ends came meanwhile (take them first);
    /// otherwise records whether the next end must wake it.
    pub(super) fn sleep(&self, wake_for_an_end: bool) -> bool {
        let mut state = self.lock();
        if !state.queue.is_empty() {
            return false;
        }
        state.wake = wake_for_an_end;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::exec::Exit;

    fn end(n: u64) -> End {
        End {
            slot: RunSlot(n),
            report: AttemptReport {
                started: SystemTime::now(),
                duration: Duration::ZERO,
                exit: Exit::Code(0),
                stopped: None,
                leftovers: Vec::new(),
            },
            run_data: None,
        }
    }

    #[test]
    fn an_end_wakes_the_loop_only_when_it_asked_and_only_once() {
        let ends = Ends::default();
        assert!(ends.sleep(false));
        assert!(!ends.push(end(1)), "the loop did not ask");
        assert!(
            !ends.sleep(true),
            "an end is queued: take it before sleeping"
        );
        assert_eq!(ends.take().len(), 1);
        assert!(ends.sleep(true));
        assert!(ends.push(end(2)), "the loop asked");
        assert!(!ends.push(end(3)), "it is woken once");
        let taken: Vec<u64> = ends.take().into_iter().map(|end| end.slot.0).collect();
        assert_eq!(taken, [2, 3], "oldest first");
        assert!(!ends.push(end(4)), "taking the queue ends the wish");
    }

    #[test]
    fn no_end_is_missed_between_the_look_and_the_sleep() {
        // A loop that always asks to be woken, and threads that end runs meanwhile:
        // every end is taken, and the loop never sleeps with an end it was not told of.
        let ends = Arc::new(Ends::default());
        let (wake, woken) = mpsc::channel();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let ends = Arc::clone(&ends);
                let wake = wake.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        if ends.push(end(t * 1000 + i)) {
                            wake.send(()).expect("the loop listens");
                        }
                    }
                })
            })
            .collect();
        drop(wake);
        let mut taken = 0;
        loop {
            taken += ends.take().len();
            if taken == 2000 {
                break;
            }
            if ends.sleep(true) {
                woken
                    .recv_timeout(Duration::from_secs(10))
                    .expect("an end that came after the look woke the loop");
            }
        }
        for thread in threads {
            thread.join().expect("thread");
        }
        assert_eq!(taken + ends.take().len(), 2000);
    }
}
