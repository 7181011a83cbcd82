//! Watching the trigger directories with inotify, so that a trigger file is noticed the
//! moment it is complete: when its writer closes it, or when it is renamed into place.
//!
//! The daemon makes no directory per job: `DATA_DIR/trigger` is watched for directories
//! that appear in it (`runner trigger` makes a job's directory, a script `mkdir -p`s it,
//! as dsari's documentation says), and each one is watched from the moment it appears.
//! A daemon with ten thousand jobs so starts with the watches of the directories that
//! exist, not ten thousand of them, and nothing per job on disk.
//!
//! One thread reads the inotify events and reports the job whose directory got a file;
//! reading the file is the intake thread's business.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

use crate::triggers::{NAMES, base_dir};

/// What a job's directory is watched for. A file written in place is read once its
/// writer closes it, not when it is created empty; one renamed into place is read at
/// once; a creation alone (a hard link) is read a moment later.
const FILE_MASK: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::CREATE);

/// What the base directory is watched for: job directories made or moved into it.
const BASE_MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::ONLYDIR);

/// The watched directories: the job each one is of, `None` for the base directory.
type Watched = Arc<Mutex<HashMap<WatchDescriptor, Option<String>>>>;

/// Watches the trigger directories with inotify and reports a job's name whenever a
/// trigger file appears in its directory.
pub(crate) struct Watcher;

impl Watcher {
    /// Watches `DATA_DIR/trigger` (made if missing, mode 0700) and every directory in it,
    /// and starts the watching thread; `None` if inotify is unavailable (the caller then
    /// looks every second instead). `notify(job, complete)` hears of every trigger file:
    /// `complete` when it was closed after writing or renamed into place, not when it was
    /// only created (a hard link, or a file whose writer may still be writing), nor when
    /// its directory just appeared (a file found there may be half written). It returns
    /// `false` once nobody listens. When `start` returns, every directory there is
    /// watched: a file that came before its watch is found by a scan made after it.
    pub(crate) fn start(
        data_dir: &Path,
        notify: impl Fn(String, bool) -> bool + Send + 'static,
    ) -> Option<Watcher> {
        let base = base_dir(data_dir);
        crate::triggers::prepare_base(data_dir);
        let mut inotify = match Inotify::init() {
            Ok(i) => i,
            Err(e) => {
                log::warn!("inotify is unavailable ({e}); looking for trigger files every second");
                return None;
            }
        };
        let watches = inotify.watches();
        let watched: Watched = Arc::default();
        match watches.clone().add(&base, BASE_MASK) {
            Ok(wd) => {
                lock(&watched).insert(wd, None);
            }
            Err(e) => {
                log::warn!(
                    "cannot watch {} ({e}); looking for trigger files every second",
                    base.display()
                );
                return None;
            }
        }
        // The directories there already; the base's watch reports those made from now on.
        for job in crate::triggers::job_dirs(data_dir) {
            add(&watches, &watched, &base, &job);
        }
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
                        if event.mask.contains(EventMask::IGNORED) {
                            // The directory is gone; one made again is a new one.
                            lock(&watched).remove(&event.wd);
                            continue;
                        }
                        let Some(name) = event.name.and_then(|n| n.to_str()) else {
                            continue;
                        };
                        let dir_job = lock(&watched).get(&event.wd).cloned();
                        let told = match dir_job {
                            // In the base: a job's directory appeared. Watch it, then
                            // look into it, as what it holds came before the watch.
                            Some(None) if event.mask.contains(EventMask::ISDIR) => {
                                !add(&watches, &watched, &base, name)
                                    || notify(name.to_owned(), false)
                            }
                            Some(Some(job)) if NAMES.contains(&name) => {
                                notify(job, !event.mask.contains(EventMask::CREATE))
                            }
                            _ => true,
                        };
                        if !told {
                            return;
                        }
                    }
                }
            });
        match spawned {
            Ok(_) => Some(Watcher),
            Err(e) => {
                log::warn!("cannot start watching trigger files ({e}); looking every second");
                None
            }
        }
    }
}

fn lock(watched: &Watched) -> std::sync::MutexGuard<'_, HashMap<WatchDescriptor, Option<String>>> {
    watched.lock().unwrap_or_else(|e| e.into_inner())
}

/// Watches the trigger directory `base/job`; whether it is watched.
fn add(watches: &inotify::Watches, watched: &Watched, base: &Path, job: &str) -> bool {
    let dir: PathBuf = base.join(job);
    match watches.clone().add(&dir, FILE_MASK | WatchMask::ONLYDIR) {
        Ok(wd) => {
            lock(watched).insert(wd, Some(job.to_owned()));
            true
        }
        Err(e) => {
            // Gone again already, or not a directory: nothing to watch.
            log::debug!("cannot watch {}: {e}", dir.display());
            false
        }
    }
}
