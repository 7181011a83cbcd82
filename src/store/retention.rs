//! Deleting old runs (`keep_runs`, `keep_days`) in the background of a run: in the
//! SQLite file and, with a fleet database, this host's runs there too.
//!
//! Pruning uses its own connection on its own thread and deletes in small batches, so
//! the chain's own writes wait at most one short transaction. Rows go first, then the
//! output directories: an interrupted prune leaves at worst an orphan directory, never a
//! record whose output is gone.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use super::location::Location;
use super::sqlite::Store;

/// Runs deleted per transaction.
const BATCH: usize = 200;

/// How long runner lingers at exit for a prune still going on: long enough for the
/// usual handful of runs, short enough that a huge backlog never delays an exit much
/// (what is left is pruned next time).
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// How long a prune waits for another process's lock on the store: a store locked for
/// longer is pruned next time, rather than holding runner's exit for [`EXIT_WAIT`].
const BUSY_WAIT: Duration = Duration::from_millis(200);

/// Which old runs of a job a prune deletes (either store, in batches).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keep<'a> {
    /// The job.
    pub(crate) job: &'a str,
    /// How many of its newest runs are kept.
    pub(crate) runs: u64,
    /// Runs older than this many days go, however few there are.
    pub(crate) days: Option<u64>,
    /// Runs started at or after this are never touched (the pruning run, and later).
    pub(crate) before: SystemTime,
}

impl Keep<'_> {
    /// The start time (epoch seconds) before which `days` deletes a run.
    pub(crate) fn cutoff(&self) -> Option<f64> {
        self.days
            .map(|d| super::sqlite::epoch(SystemTime::now()) - d as f64 * 86_400.0)
    }
}

/// A prune running in the background.
pub(crate) struct Pruning {
    done: mpsc::Receiver<usize>,
}

impl Pruning {
    /// Waits (boundedly) for the prune to end, so short runs leave a tidy store.
    pub(crate) fn finish(self) {
        let _ = self.done.recv_timeout(EXIT_WAIT);
    }
}

/// Starts pruning `job`'s old runs on a background thread.
pub(crate) fn spawn(
    state_dir: &Path,
    location: &Location,
    job: &str,
    keep_runs: u64,
    keep_days: Option<u64>,
    event_keep_days: Option<u64>,
    host: &str,
) -> Option<Pruning> {
    let state_dir = state_dir.to_owned();
    let host = host.to_owned();
    let location = location.clone();
    let job = job.to_owned();
    let before = SystemTime::now();
    let (tx, done) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("retention".to_owned())
        .spawn(move || {
            let deleted = prune(
                &state_dir, &location, &job, keep_runs, keep_days, before, &host,
            );
            if let Some(days) = event_keep_days.or(keep_days) {
                prune_events(&location, days, &host);
            }
            let _ = tx.send(deleted);
        });
    match spawned {
        Ok(_) => Some(Pruning { done }),
        Err(e) => {
            log::debug!("cannot start pruning old runs: {e}");
            None
        }
    }
}

/// Deletes the events (of every session) fired more than `days` days ago: with the
/// runs they belonged to gone, nothing should start on them any more.
pub(crate) fn prune_events(location: &Location, days: u64, host: &str) {
    let cutoff = super::sqlite::epoch(SystemTime::now()) - days as f64 * 86_400.0;
    // The fleet's events too, with a fleet database (this host's file keeps some).
    if let Some(url) = &location.fleet {
        let pruned = super::postgres::PgStore::open(url, host)
            .and_then(|mut pg| super::events::EventStore::prune_events(&mut pg, cutoff));
        if let Err(e) = pruned {
            log::debug!("cannot prune old events: {}", crate::logging::one_line(&e));
        }
    }
    let result = Store::open_file_waiting(location.file(), BUSY_WAIT)
        .and_then(|mut store| store.prune_events(cutoff));
    match result {
        Ok(0) => {}
        Ok(n) => log::debug!("pruned {n} event(s) older than {days} day(s)"),
        Err(e) => log::warn!("cannot prune old events: {}", crate::logging::one_line(&e)),
    }
}

/// Prunes synchronously; returns how many runs were deleted.
pub(crate) fn prune(
    state_dir: &Path,
    location: &Location,
    job: &str,
    keep_runs: u64,
    keep_days: Option<u64>,
    before: SystemTime,
    host: &str,
) -> usize {
    let mut store = match Store::open_file_waiting(location.file(), BUSY_WAIT) {
        Ok(store) => store,
        Err(e) => {
            log::debug!("not pruning old runs: {}", crate::logging::one_line(&e));
            return 0;
        }
    };
    let keep = Keep {
        job,
        runs: keep_runs,
        days: keep_days,
        before,
    };
    let local = prune_in(state_dir, job, |batch| store.prune(&keep, batch));
    // The fleet's database keeps this host's runs too (as many, as long).
    let Some(url) = &location.fleet else {
        return local;
    };
    let mut pg = match super::postgres::PgStore::open(url, host) {
        Ok(pg) => pg,
        Err(e) => {
            log::debug!(
                "not pruning old runs in the fleet: {}",
                crate::logging::one_line(&e)
            );
            return local;
        }
    };
    local.max(prune_in(state_dir, job, |batch| pg.prune(&keep, batch)))
}

/// Deletes batches with `batch_of` until one comes back short, and the deleted runs'
/// output directories; how many runs were deleted.
fn prune_in(
    state_dir: &Path,
    job: &str,
    mut batch_of: impl FnMut(usize) -> Result<Vec<PathBuf>, super::sqlite::StoreError>,
) -> usize {
    let mut deleted = 0;
    loop {
        let dirs: Vec<PathBuf> = match batch_of(BATCH) {
            Ok(dirs) => dirs,
            Err(e) => {
                log::warn!(
                    "cannot prune old runs of job \"{job}\": {}",
                    crate::logging::one_line(&e)
                );
                return deleted;
            }
        };
        let count = dirs.len();
        for dir in dirs {
            // Only ever delete below our own runs directory.
            if super::paths::is_below(&dir, &state_dir.join("runs")) {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        deleted += count;
        if count < BATCH {
            if deleted > 0 {
                log::debug!("pruned {deleted} old run(s) of job \"{job}\"");
            }
            return deleted;
        }
    }
}
