//! Waking waiting chains when an event is fired, without polling.
//!
//! `runner fire` (and a chain's cascade) writes and closes `events.notify` beside the
//! database file after the event's transaction commits. One thread per process blocks in
//! `read(2)` on an inotify descriptor watching that directory for `IN_CLOSE_WRITE`, and calls
//! every subscriber when that file is closed. A waiting chain therefore uses no CPU at
//! all until something is fired, and wakes a few milliseconds after the commit.
//!
//! With a fleet database (contract section 13) events fired on other hosts are
//! announced by PostgreSQL's NOTIFY: a second thread blocks on a connection that LISTENs
//! (`store::Listener`) and wakes the same subscribers. It listens before `start` returns,
//! so an event committed after that is never missed. If the connection breaks, one
//! warning; it reconnects with a growing pause (not a poll of the events: nothing is
//! read until it is back) and wakes everyone once it is, for what was fired meanwhile.
//!
//! Why inotify on a file, rather than a FIFO or SQLite's `data_version`: a FIFO needs a
//! reader to exist (a `fire` with no waiter would block or fail) and one FIFO per waiter;
//! `data_version` only changes for a connection that asks, so it means polling. The
//! directory watch is set up before the waiter first reads the store, so an event
//! committed between the read and the wait still wakes it.

use std::path::Path;
use std::time::Duration;

use inotify::{Inotify, WatchMask};

use crate::interrupt::{Subscription, Wakers};
use crate::store::{FleetUrl, Listener, NOTIFY_FILE, warn_away};

/// The first pause before listening again after the fleet connection broke.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(10);

/// The inotify thread and its subscribers.
pub(crate) struct Watcher {
    wakers: Wakers,
}

impl Watcher {
    /// Starts watching `dir` (created if needed) and, with a fleet database, listening
    /// for its announcements. An error means no wake-ups: the caller falls back to
    /// looking now and then.
    pub(crate) fn start(dir: &Path, fleet: Option<&FleetUrl>) -> std::io::Result<Watcher> {
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
        if let Some(url) = fleet {
            // Connected here, so that the caller's first read comes after the LISTEN.
            let first = Listener::open(url).map_err(|e| {
                warn_away(&format!(
                    "{}; events of other hosts wake nothing until it answers",
                    crate::logging::one_line(&e)
                ));
            });
            let url = url.clone();
            let theirs = wakers.clone();
            std::thread::Builder::new()
                .name("events-listen".to_owned())
                .spawn(move || listen(&url, first.ok(), &theirs))?;
        }
        Ok(Watcher { wakers })
    }

    /// Calls `wake` (on the watching thread) whenever an event is fired, until the
    /// returned subscription is dropped.
    pub(crate) fn subscribe(&self, wake: impl Fn() + Send + 'static) -> Subscription {
        self.wakers.subscribe(wake)
    }
}

/// Wakes `wakers` at every announcement of the fleet database, reconnecting for ever.
fn listen(url: &FleetUrl, first: Option<Listener>, wakers: &Wakers) {
    let mut listener = first;
    let mut warned = listener.is_none();
    let mut pause = FIRST_PAUSE;
    loop {
        match listener.as_mut() {
            Some(open) => match open.wait() {
                Ok(()) => wakers.wake_all(),
                Err(e) => {
                    if !warned {
                        warn_away(&format!(
                            "{}; events of other hosts wake nothing until it answers",
                            crate::logging::one_line(&e)
                        ));
                        warned = true;
                    }
                    listener = None;
                }
            },
            None => {
                std::thread::sleep(pause);
                match Listener::open(url) {
                    Ok(open) => {
                        log::info!("{} answers again; listening for events", url.describe());
                        listener = Some(open);
                        warned = false;
                        pause = FIRST_PAUSE;
                        // What was fired while away is looked at now.
                        wakers.wake_all();
                    }
                    Err(_) => pause = (pause * 2).min(MAX_PAUSE),
                }
            }
        }
    }
}
