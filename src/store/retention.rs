//! Deleting old runs (`keep_runs`, `keep_days`) in the background of a run.
//!
//! Pruning uses its own connection on its own thread and deletes in small batches, so
//! the chain's own writes wait at most one short transaction. Rows go first, then the
//! output directories: an interrupted prune leaves at worst an orphan directory, never a
//! record whose output is gone.

use std::path::{Path, PathBuf};

use super::sqlite::Store;

/// Runs deleted per transaction.
const BATCH: usize = 200;

/// Starts pruning `job`'s old runs on a background thread.
pub(crate) fn spawn(state_dir: &Path, job: &str, keep_runs: u64, keep_days: Option<u64>) {
    let state_dir = state_dir.to_owned();
    let job = job.to_owned();
    let spawned = std::thread::Builder::new()
        .name("retention".to_owned())
        .spawn(move || prune(&state_dir, &job, keep_runs, keep_days));
    if let Err(e) = spawned {
        log::debug!("cannot start pruning old runs: {e}");
    }
}

/// Prunes synchronously; returns how many runs were deleted.
pub(crate) fn prune(state_dir: &Path, job: &str, keep_runs: u64, keep_days: Option<u64>) -> usize {
    let mut store = match Store::open(state_dir) {
        Ok(store) => store,
        Err(e) => {
            log::debug!("not pruning old runs: {e}");
            return 0;
        }
    };
    let mut deleted = 0;
    loop {
        let dirs: Vec<PathBuf> = match store.prune(job, keep_runs, keep_days, BATCH) {
            Ok(dirs) => dirs,
            Err(e) => {
                log::warn!("cannot prune old runs of job \"{job}\": {e}");
                return deleted;
            }
        };
        let count = dirs.len();
        for dir in dirs {
            // Only ever delete below our own runs directory.
            if dir.starts_with(state_dir.join("runs")) {
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
