//! What the daemon reads from outside while it runs: trigger files and, on SIGHUP, its
//! configuration. Both are parsed here, on a thread of their own, and handed to the
//! scheduling loop ready to use, so that a large or slow file never delays a run that
//! is due (a scheduling loop stuck in a parser keeps no times).
//!
//! The thread also owns the inotify watches of the trigger directories (see `watch`);
//! without inotify it lists `DATA_DIR/trigger` once a second and looks into the
//! directories of configured jobs there.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use super::jobs::{self, JobTable};
use super::service::Event;
use super::watch::Watcher;
use crate::config::daemon::DaemonConfig;
use crate::error::Error;
use crate::triggers;

/// Without inotify, how often the trigger directories are scanned.
const TRIGGER_POLL: Duration = Duration::from_secs(1);

/// How long after a trigger file was only created (no close after writing, no rename:
/// a hard link) it is read, leaving a writer that created it in place time to finish.
const CREATED_GRACE: Duration = Duration::from_millis(500);

/// A configuration loaded and checked completely, with every job's schedule parsed.
pub(super) struct Loaded {
    /// The configuration; its `jobs` are emptied, `jobs` below holds them.
    pub(super) config: DaemonConfig,
    /// The jobs, ready to schedule.
    pub(super) jobs: JobTable,
}

/// Loads the configuration at `path` (at start, and for a reload on the intake thread).
///
/// The files are read on a thread of their own, and what is kept is copied back here.
/// Reading builds every file's whole tree, several times the size of the jobs taken out
/// of it, and the jobs' memory lies between the tree's: were it read here, the pages of
/// the freed tree that also hold a job could never be given back, and a daemon with ten
/// thousand jobs would keep most of its peak for as long as it runs. The reading thread
/// has an allocator arena of its own (glibc gives each new thread one), which is all
/// free once the copies are made and the originals dropped.
pub(super) fn load(path: &Path) -> Result<Loaded, Error> {
    let outcome = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("config".to_owned())
            .spawn_scoped(scope, || read(path))
            .map(|reader| reader.join())
    });
    let loaded = match outcome {
        Ok(Ok(loaded)) => loaded?,
        // The reader panicked: that panic is the caller's.
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        // No thread to be had: read here, at the cost of the memory kept.
        Err(_) => return read(path),
    };
    let copy = Loaded {
        config: loaded.config.clone(),
        jobs: loaded.jobs.deep_copy(),
    };
    drop(loaded);
    // The freed tree lies between the jobs' allocations: only a trim hands it back.
    crate::memory::release_freed();
    Ok(copy)
}

/// Reads the configuration at `path` and checks it, its jobs taken out into the table.
fn read(path: &Path) -> Result<Loaded, Error> {
    let mut config = DaemonConfig::load(path)?;
    jobs::check_ownership(&config)?;
    // The configuration keeps no second copy of every job.
    let jobs = jobs::take(&mut config)?;
    Ok(Loaded { config, jobs })
}

enum Work {
    /// A complete trigger file appeared in this job's directory.
    Look(String),
    /// A trigger file was created in this job's directory; read it a moment later.
    Created(String),
    /// SIGUSR1: look into every job's directory there is.
    ScanAll,
    /// SIGHUP: load the configuration again.
    Reload,
    Stop,
}

/// The handle of the intake thread.
pub(super) struct Intake {
    work: Sender<Work>,
}

impl Intake {
    /// Watches the trigger directories, then starts the thread, which takes the trigger
    /// files already there, says [`Event::Ready`], and sends everything it reads to
    /// `events`.
    pub(super) fn start(
        data_dir: &Path,
        config_path: &Path,
        jobs: JobTable,
        events: Sender<Event>,
    ) -> std::io::Result<Intake> {
        let (work, inbox) = mpsc::channel();
        let to_self = work.clone();
        let mut reader = Reader {
            data_dir: data_dir.to_owned(),
            config_path: config_path.to_owned(),
            jobs,
            created: Vec::new(),
            watcher: Watcher::start(data_dir, move |job, complete| {
                let work = if complete {
                    Work::Look(job)
                } else {
                    Work::Created(job)
                };
                to_self.send(work).is_ok()
            }),
            events,
        };
        // The directories there are watched before the daemon says it started; a file
        // that came before its watch is found by the first scan, made after it.
        std::thread::Builder::new()
            .name("intake".to_owned())
            .spawn(move || {
                if reader.scan_all() && reader.events.send(Event::Ready).is_ok() {
                    reader.serve(&inbox);
                }
            })?;
        Ok(Intake { work })
    }

    /// SIGUSR1: look for trigger files now.
    pub(super) fn scan(&self) {
        let _ = self.work.send(Work::ScanAll);
    }

    /// SIGHUP: load the configuration again; the result comes back as an event.
    pub(super) fn reload(&self) {
        let _ = self.work.send(Work::Reload);
    }

    /// Shutdown: take no more trigger files.
    pub(super) fn stop(&self) {
        let _ = self.work.send(Work::Stop);
    }
}

struct Reader {
    data_dir: PathBuf,
    config_path: PathBuf,
    /// The jobs whose trigger files are read: those of the configuration last loaded
    /// (shared with the scheduling loop, not copied).
    jobs: JobTable,
    /// Jobs whose directory got a file only created, and when to look into it.
    created: Vec<(Instant, String)>,
    watcher: Option<Watcher>,
    events: Sender<Event>,
}

impl Reader {
    fn serve(&mut self, inbox: &Receiver<Work>) {
        let mut next_scan = Instant::now() + TRIGGER_POLL;
        loop {
            let now = Instant::now();
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.created)
                .into_iter()
                .partition(|(at, _)| *at <= now);
            self.created = later;
            if !due.iter().all(|(_, job)| self.look(job)) {
                return;
            }
            if self.watcher.is_none() && next_scan <= now {
                if !self.scan_all() {
                    return;
                }
                next_scan = now + TRIGGER_POLL;
            }
            let mut wake = self.created.iter().map(|(at, _)| *at).min();
            if self.watcher.is_none() {
                wake = Some(wake.map_or(next_scan, |w| w.min(next_scan)));
            }
            let work = match wake {
                None => match inbox.recv() {
                    Ok(work) => work,
                    Err(_) => return,
                },
                Some(at) => match inbox.recv_timeout(at.saturating_duration_since(now)) {
                    Ok(work) => work,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return,
                },
            };
            let alive = match work {
                Work::Look(job) => self.look(&job),
                Work::Created(job) => {
                    self.created.push((Instant::now() + CREATED_GRACE, job));
                    true
                }
                Work::ScanAll => {
                    let alive = self.scan_all();
                    log::debug!(
                        "SIGUSR1: scanned the trigger directories of {} job(s)",
                        self.jobs.len()
                    );
                    alive
                }
                Work::Reload => self.reload(),
                Work::Stop => return,
            };
            if !alive {
                return;
            }
        }
    }

    /// Sends the triggers of `job`; `false` once the loop is gone.
    fn look(&self, job: &str) -> bool {
        if !self.jobs.contains_key(job) {
            return true;
        }
        for trigger in triggers::take(&self.data_dir, job) {
            if self.events.send(Event::Trigger(trigger)).is_err() {
                return false;
            }
        }
        true
    }

    /// Looks into the directory of every configured job that has one.
    fn scan_all(&self) -> bool {
        triggers::job_dirs(&self.data_dir)
            .iter()
            .all(|job| self.look(job))
    }

    fn reload(&mut self) -> bool {
        let loaded = load(&self.config_path);
        let mut added = Vec::new();
        if let Ok(loaded) = &loaded {
            // Triggers of the new jobs are read from now on; the loop gets the new
            // configuration before any of them, as the channel keeps the order.
            added = loaded
                .jobs
                .keys()
                .filter(|name| !self.jobs.contains_key(name))
                .cloned()
                .collect();
            self.jobs = loaded.jobs.clone();
        }
        if self.events.send(Event::Reloaded(Box::new(loaded))).is_err() {
            return false;
        }
        added.iter().all(|job| self.look(job))
    }
}
