//! Waking waiting chains when an event is fired, without polling.
//!
//! `runner fire` (and a chain's cascade) writes and closes `events.notify` beside the
//! database file after the event's transaction commits. One thread per process blocks in
//! `read(2)` on an inotify descriptor watching that directory for `IN_CLOSE_WRITE`, and calls
//! every subscriber when that file is closed. A waiting chain therefore uses no CPU at
//! all until something is fired, and wakes a few milliseconds after the commit.
//!
//! Why inotify on a file, rather than a FIFO or SQLite's `data_version`: a FIFO needs a
//! reader to exist (a `fire` with no waiter would block or fail) and one FIFO per waiter;
//! `data_version` only changes for a connection that asks, so it means polling. The
//! directory watch is set up before the waiter first reads the store, so an event
//! committed between the read and the wait still wakes it.

use std::path::Path;

use inotify::{Inotify, WatchMask};

use crate::interrupt::{Subscription, Wakers};
use crate::store::NOTIFY_FILE;

/// The inotify thread and its subscribers.
pub(crate) struct Watcher {
    wakers: Wakers,
}

impl Watcher {
    /// Starts watching `dir` (created if needed). An error means no wake-ups: the
    /// caller falls back to looking now and then.
    pub(crate) fn start(dir: &Path) -> std::io::Result<Watcher> {
        crate::state::ensure_dir(dir).map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut inotify = Inotify::init()?;
        inotify
            .watches()
            .add(dir, WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO)?;
        let wakers = Wakers::default();
        let theirs = wakers.clone();
        std::thread::Builder::new()
            .name("events".to_owned())
            .spawn(move || {
                let mut buffer = [0u8; 4096];
                loop {
                    let events = match inotify.read_events_blocking(&mut buffer) {
                        Ok(events) => events,
                        Err(e) => {
                            log::warn!("watching for events failed: {e}");
                            return;
                        }
                    };
                    let fired = events
                        .into_iter()
                        .any(|e| e.name.is_some_and(|n| n == NOTIFY_FILE));
                    if fired {
                        theirs.wake_all();
                    }
                }
            })?;
        Ok(Watcher { wakers })
    }

    /// Calls `wake` (on the watching thread) whenever an event is fired, until the
    /// returned subscription is dropped.
    pub(crate) fn subscribe(&self, wake: impl Fn() + Send + 'static) -> Subscription {
        self.wakers.subscribe(wake)
    }
}
