//! The store seam: what the chain's recorder, the daemon and the records commands ask of
//! a store, whichever engine holds it.
//!
//! Two implementations: [`Store`] (SQLite, the default, embedded) and
//! [`super::postgres::PgStore`] (a fleet's PostgreSQL). Both keep the same model: dsari's
//! `runs`/`runs_running`, runner's run metadata (with the host), task instances and
//! attempts. Callers hold a `Box<dyn RunStore>` and never know which one it is.

use std::path::Path;
use std::time::SystemTime;

pub(crate) use super::model::StoredOutput;
use super::model::{InstanceStatus, RunDetail, RunFilter, RunRecord, RunStatus};
use super::sqlite::{AttemptEnding, NewRun, RunEnd, Store, StoreError};
use crate::record::EventWait;

/// A starting attempt: its instance's row, chain attempt, start and output file.
pub(crate) type AttemptStarting<'a> = (i64, u32, SystemTime, Option<&'a Path>);

/// Everything runner records and reads, per engine. Each state change is one transaction.
pub(crate) trait RunStore {
    /// The store for people: a file, or a database without its password.
    fn describe(&self) -> String;
    /// Tunes the store for a writer that commits all the time (see
    /// [`Store::for_many_writes`]); nothing to do for the fleet's server.
    fn for_many_writes(&mut self) {}
    /// The writer expects to write nothing for a while (see [`Store::lull`]).
    fn lull(&mut self) {}
    /// Records a starting run: `runs_running`, its owner, host and task instances.
    fn begin_run(&mut self, run: &NewRun<'_>) -> Result<(), StoreError>;
    /// Adds the planned instances of a run someone else started.
    fn add_instances(&mut self, run_id: &str, tasks: &[(&str, &str)]) -> Result<(), StoreError>;
    /// The row of instance `name#instance`, created when the plan did not have it.
    fn instance_id(
        &mut self,
        run_id: &str,
        name: &str,
        file: &str,
        instance: u32,
    ) -> Result<i64, StoreError>;
    /// Sets an instance's status.
    fn set_instance_status(
        &mut self,
        instance_id: i64,
        status: InstanceStatus,
    ) -> Result<(), StoreError>;
    /// Records what the events of an instance came to (`after`/`unless`).
    fn record_instance_events(
        &mut self,
        instance_id: i64,
        since: Option<SystemTime>,
        decided: SystemTime,
        events: &[EventWait],
    ) -> Result<(), StoreError>;
    /// Records ended attempts and, when given, one starting; returns the new attempt's id.
    fn record_attempts(
        &mut self,
        ended: &[AttemptEnding],
        starting: Option<AttemptStarting<'_>>,
    ) -> Result<Option<i64>, StoreError>;
    /// Keeps an ended attempt's captured output in the store itself, where the engine is
    /// shared by hosts; an embedded store keeps output in files only.
    fn store_output(&mut self, _attempt_id: i64, _bytes: &[u8]) -> Result<(), StoreError> {
        Ok(())
    }
    /// Keeps a run's whole output (dsari's `output.txt`) in the store, likewise.
    fn store_run_output(&mut self, _run_id: &str, _bytes: &[u8]) -> Result<(), StoreError> {
        Ok(())
    }
    /// Moves a run from `runs_running` to `runs` with its end.
    fn finish_run(
        &mut self,
        run_id: &str,
        status: RunStatus,
        exit_code: Option<i32>,
        stop_time: Option<SystemTime>,
    ) -> Result<(), StoreError>;
    /// Sets a running run's `run_data`.
    fn set_run_data(&mut self, run_id: &str, data: &serde_json::Value) -> Result<(), StoreError>;
    /// Records the runs that start at one scheduling instant; each result is that run's.
    /// A store that can writes them in one transaction (the daemon starting a thousand
    /// runs at once makes one commit, not a thousand); durable as one `begin_run` each.
    fn begin_runs(&mut self, runs: &[NewRun<'_>]) -> Vec<Result<(), StoreError>> {
        runs.iter().map(|run| self.begin_run(run)).collect()
    }
    /// Whether [`RunStore::finish_runs`] writes each end's `event` with it, into the
    /// events of this same store. One that does not leaves the events to the caller.
    fn fires_events(&self) -> bool {
        false
    }
    /// Records the ends of several runs, as [`RunStore::begin_runs`] their starts.
    fn finish_runs(&mut self, ends: &[RunEnd<'_>]) -> Vec<Result<(), StoreError>> {
        ends.iter()
            .map(|e| self.finish_run(e.run_id, e.status, e.exit_code, e.stop_time))
            .collect()
    }
    /// Finalizes as `lost` the runs of `job` (or all) whose recorder on this host died.
    fn finalize_lost(&mut self, job: Option<&str>) -> Result<Vec<String>, StoreError>;
    /// The newest, newest good and newest bad finished run of `job`.
    fn previous_runs(&self, job: &str) -> Result<[Option<RunRecord>; 3], StoreError>;
    /// The latest schedule time of `job`'s scheduled runs.
    fn last_scheduled(&self, job: &str) -> Result<Option<f64>, StoreError>;
    /// The newest runs that `filter` lets through.
    fn list_runs_on(&self, filter: &RunFilter<'_>) -> Result<Vec<RunRecord>, StoreError>;
    /// The run whose id is `prefix` or starts with it.
    fn find_run(&self, prefix: &str) -> Result<RunRecord, StoreError>;
    /// A run with its task instances and attempts.
    fn run_detail(&self, prefix: &str) -> Result<RunDetail, StoreError>;
    /// The output kept in the store for a run, in run order (empty for an embedded store).
    fn stored_output(&self, _run_id: &str) -> Result<Vec<StoredOutput>, StoreError> {
        Ok(Vec::new())
    }
    /// The same, each output cut to its last `limit` bytes (the report's share of it).
    fn stored_output_tail(
        &self,
        _run_id: &str,
        _limit: u64,
    ) -> Result<Vec<StoredOutput>, StoreError> {
        Ok(Vec::new())
    }
}

/// The page cache of a store written many times a second (the daemon's), in KiB.
const BUSY_CACHE_KIB: i64 = 1024;

impl RunStore for Store {
    fn describe(&self) -> String {
        self.path().display().to_string()
    }
    fn for_many_writes(&mut self) {
        Store::for_many_writes(self, true);
        // SQLite's default is 2 MiB. A busy daemon touches the tail of each table and
        // index again and again, and its random run ids spread over more pages than
        // either size holds: at 1,000 runs a second 1 MiB reads no more pages
        // (`bench/daemon.py`, `pread` per run), and holds 1 MB less.
        self.limit_cache(BUSY_CACHE_KIB);
    }
    fn lull(&mut self) {
        Store::lull(self);
    }
    fn begin_run(&mut self, run: &NewRun<'_>) -> Result<(), StoreError> {
        Store::begin_run(self, run)
    }
    fn add_instances(&mut self, run_id: &str, tasks: &[(&str, &str)]) -> Result<(), StoreError> {
        Store::add_instances(self, run_id, tasks)
    }
    fn instance_id(
        &mut self,
        run_id: &str,
        name: &str,
        file: &str,
        instance: u32,
    ) -> Result<i64, StoreError> {
        Store::instance_id(self, run_id, name, file, instance)
    }
    fn set_instance_status(
        &mut self,
        instance_id: i64,
        status: InstanceStatus,
    ) -> Result<(), StoreError> {
        Store::set_instance_status(self, instance_id, status)
    }
    fn record_instance_events(
        &mut self,
        instance_id: i64,
        since: Option<SystemTime>,
        decided: SystemTime,
        events: &[EventWait],
    ) -> Result<(), StoreError> {
        Store::record_instance_events(self, instance_id, since, decided, events)
    }
    fn record_attempts(
        &mut self,
        ended: &[AttemptEnding],
        starting: Option<AttemptStarting<'_>>,
    ) -> Result<Option<i64>, StoreError> {
        Store::record_attempts(self, ended, starting)
    }
    fn finish_run(
        &mut self,
        run_id: &str,
        status: RunStatus,
        exit_code: Option<i32>,
        stop_time: Option<SystemTime>,
    ) -> Result<(), StoreError> {
        Store::finish_run(self, run_id, status, exit_code, stop_time)
    }
    fn set_run_data(&mut self, run_id: &str, data: &serde_json::Value) -> Result<(), StoreError> {
        Store::set_run_data(self, run_id, data)
    }
    fn begin_runs(&mut self, runs: &[NewRun<'_>]) -> Vec<Result<(), StoreError>> {
        Store::begin_runs(self, runs)
    }
    fn fires_events(&self) -> bool {
        true
    }
    fn finish_runs(&mut self, ends: &[RunEnd<'_>]) -> Vec<Result<(), StoreError>> {
        Store::finish_runs(self, ends)
    }
    fn finalize_lost(&mut self, job: Option<&str>) -> Result<Vec<String>, StoreError> {
        Store::finalize_lost(self, job)
    }
    fn previous_runs(&self, job: &str) -> Result<[Option<RunRecord>; 3], StoreError> {
        Store::previous_runs(self, job)
    }
    fn last_scheduled(&self, job: &str) -> Result<Option<f64>, StoreError> {
        Store::last_scheduled(self, job)
    }
    fn list_runs_on(&self, filter: &RunFilter<'_>) -> Result<Vec<RunRecord>, StoreError> {
        Store::list_runs_on(self, filter)
    }
    fn find_run(&self, prefix: &str) -> Result<RunRecord, StoreError> {
        Store::find_run(self, prefix)
    }
    fn run_detail(&self, prefix: &str) -> Result<RunDetail, StoreError> {
        Store::run_detail(self, prefix)
    }
}

/// Opens (creating and migrating as needed) the store at `location` for writing: the
/// fleet's PostgreSQL when one is named, else the SQLite file. A fleet database that
/// cannot be reached falls back, with one warning, to the local file.
pub(crate) fn open_for_writing(
    location: &super::Location,
    host: &str,
) -> Result<Box<dyn RunStore>, StoreError> {
    if let Some(url) = &location.fleet {
        match super::postgres::PgStore::open(url, host) {
            Ok(store) => return Ok(Box::new(store)),
            Err(e) => log::warn!(
                "cannot use {} ({}); recording in {} instead",
                url.describe(),
                crate::logging::one_line(&e),
                location.file().display()
            ),
        }
    }
    Ok(Box::new(Store::open_at(location)?))
}

/// Opens the store at `location` for reading: the fleet's PostgreSQL (an error when it
/// cannot be reached: a reader must not silently show one host's part), else the SQLite
/// file read-only, `None` when it does not exist.
pub(crate) fn open_for_reading(
    location: &super::Location,
    host: &str,
) -> Result<Option<Box<dyn RunStore>>, StoreError> {
    if let Some(url) = &location.fleet {
        return Ok(Some(Box::new(super::postgres::PgStore::open(url, host)?)));
    }
    Ok(Store::read_only(location)?.map(|s| Box::new(s) as Box<dyn RunStore>))
}
