//! Watching the trigger directories with inotify, so that a trigger file is noticed the
//! moment it is complete: when its writer closes it, or when it is renamed into place.
//!
//! One thread reads the inotify events and reports the job whose directory got a file;
//! reading the file is the intake thread's business.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

use crate::triggers::{NAMES, job_dir};

/// Watches the trigger directories with inotify and reports a job's name whenever a
/// trigger file appears in its directory.
pub(crate) struct Watcher {
    data_dir: PathBuf,
    watches: inotify::Watches,
    jobs: Arc<Mutex<HashMap<WatchDescriptor, String>>>,
}

impl Watcher {
    /// Starts the watching thread; `None` if inotify is unavailable (the caller then
    /// looks every second instead). `notify(job, complete)` hears of every trigger file:
    /// `complete` when it was closed after writing or renamed into place, not when it was
    /// only created (a hard link, or a file whose writer may still be writing). It
    /// returns `false` once nobody listens.
    pub(crate) fn start(
        data_dir: &Path,
        notify: impl Fn(String, bool) -> bool + Send + 'static,
    ) -> Option<Watcher> {
        let mut inotify = match Inotify::init() {
            Ok(i) => i,
            Err(e) => {
                log::warn!("inotify is unavailable ({e}); looking for trigger files every second");
                return None;
            }
        };
        let jobs: Arc<Mutex<HashMap<WatchDescriptor, String>>> = Arc::default();
        let watcher = Watcher {
            data_dir: data_dir.to_owned(),
            watches: inotify.watches(),
            jobs: Arc::clone(&jobs),
        };
        let spawned = std::thread::Builder::new()
            .name("triggers".to_owned())
            .spawn(move || {
                let mut buffer = [0u8; 4096];
                loop {
                    let events = match inotify.read_events_blocking(&mut buffer) {
                        Ok(events) => events,
                        Err(e) => {
                            log::error!("watching trigger files failed: {e}");
                            return;
                        }
                    };
                    for event in events {
                        let is_trigger = event
                            .name
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| NAMES.contains(&n));
                        if !is_trigger {
                            continue;
                        }
                        let job = jobs
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get(&event.wd)
                            .cloned();
                        let complete = !event.mask.contains(EventMask::CREATE);
                        if let Some(job) = job {
                            if !notify(job, complete) {
                                return;
                            }
                        }
                    }
                }
            });
        match spawned {
            Ok(_) => Some(watcher),
            Err(e) => {
                log::warn!("cannot start watching trigger files ({e}); looking every second");
                None
            }
        }
    }

    /// Starts watching the trigger directory of `job` (which must exist).
    pub(crate) fn add(&mut self, job: &str) {
        let dir = job_dir(&self.data_dir, job);
        // A file written in place is read once its writer closes it, not when it is
        // created empty; one renamed into place is read at once; a creation alone (a
        // hard link) is read a moment later.
        let mask = WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO | WatchMask::CREATE;
        match self.watches.add(&dir, mask) {
            Ok(wd) => {
                self.jobs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(wd, job.to_owned());
            }
            Err(e) => log::warn!("cannot watch {}: {e}", dir.display()),
        }
    }
}
