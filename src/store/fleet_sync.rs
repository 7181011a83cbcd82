//! Runs recorded on this host while the fleet's database was unreachable: marked in the
//! local SQLite store, and sent whole to PostgreSQL once it answers again.
//!
//! A run is sent in one PostgreSQL transaction that first removes whatever part of it
//! reached the database before the connection went away, so a run is never there twice
//! and never half there; the local mark is cleared only after that commit. The events
//! the run fired (its cascades, a skip's) go in the same transaction, each unless the
//! database has it already (sent live before the connection went away).

use rusqlite::params;

use super::backend::RunStore;
use super::events::EventRecord;
use super::model::RunDetail;
use super::postgres::PgStore;
use super::sqlite::{Store, StoreError};

/// What the fleet database needs of a run beyond its detail.
#[derive(Debug, Clone)]
pub(crate) struct RunOrigin {
    /// The host it ran on.
    pub(crate) host: Option<String>,
    /// Its event session.
    pub(crate) session: Option<String>,
    /// The recording process.
    pub(crate) pid: Option<i64>,
    /// Its start ticks.
    pub(crate) pid_start: Option<i64>,
    /// Its boot.
    pub(crate) boot_id: Option<String>,
}

impl Store {
    /// Marks a run as not (wholly) in the fleet database yet.
    pub(crate) fn mark_fleet_pending(&mut self, run_id: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE run_meta SET fleet_pending = 1 WHERE run_id = ?1",
                [run_id],
            )
            .map(drop)
            .map_err(|e| self.wrap(e))
    }

    /// Whether a run is marked as not (wholly) in the fleet database yet.
    pub(crate) fn is_fleet_pending(&self, run_id: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT fleet_pending FROM run_meta WHERE run_id = ?1",
                [run_id],
                |r| r.get::<_, i64>(0),
            )
            .map(|flag| flag != 0)
            .map_err(|e| self.wrap(e))
    }

    /// The finished runs still to be sent, oldest first.
    pub(crate) fn fleet_pending(&self) -> Result<Vec<String>, StoreError> {
        let result = (|| {
            self.conn
                .prepare(
                    "SELECT m.run_id FROM run_meta m JOIN runs r USING (run_id)
                     WHERE m.fleet_pending = 1 ORDER BY r.start_time",
                )?
                .query_map([], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()
        })();
        result.map_err(|e| self.wrap(e))
    }

    fn run_origin(&self, run_id: &str) -> Result<RunOrigin, StoreError> {
        self.conn
            .query_row(
                "SELECT host, session, pid, pid_start, boot_id FROM run_meta WHERE run_id = ?1",
                params![run_id],
                |r| {
                    Ok(RunOrigin {
                        host: r.get(0)?,
                        session: r.get(1)?,
                        pid: r.get(2)?,
                        pid_start: r.get(3)?,
                        boot_id: r.get(4)?,
                    })
                },
            )
            .map_err(|e| self.wrap(e))
    }

    /// The events run `run_id` fired (its cascades, a skip of one of its instances),
    /// oldest first.
    fn run_events(&self, run_id: &str) -> Result<Vec<EventRecord>, StoreError> {
        let result = (|| {
            self.conn
                .prepare(
                    "SELECT id, session, name, data, fired_at, source FROM events
                     WHERE source IN ('cascade ' || ?1, 'skip ' || ?1) ORDER BY id",
                )?
                .query_map([run_id], |r| {
                    let data: String = r.get(3)?;
                    Ok(EventRecord {
                        id: r.get(0)?,
                        session: r.get(1)?,
                        name: r.get(2)?,
                        data: serde_json::from_str(&data).unwrap_or_else(|_| serde_json::json!({})),
                        fired_at: r.get(4)?,
                        source: r.get(5)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()
        })();
        result.map_err(|e| self.wrap(e))
    }

    fn clear_fleet_pending(&mut self, run_id: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE run_meta SET fleet_pending = 0 WHERE run_id = ?1",
                [run_id],
            )
            .map(drop)
            .map_err(|e| self.wrap(e))
    }
}

/// Sends every pending run of `local` to `fleet`; returns how many went. Stops at the
/// first failure (the database went away again): the rest stay marked.
pub(crate) fn send_pending(local: &mut Store, fleet: &mut PgStore) -> Result<usize, StoreError> {
    let mut sent = 0;
    for run_id in local.fleet_pending()? {
        let detail = local.run_detail(&run_id)?;
        let origin = local.run_origin(&run_id)?;
        let outputs = attempt_outputs(&detail);
        let events = local.run_events(&run_id)?;
        fleet.upload(&detail, &origin, &outputs, &events)?;
        local.clear_fleet_pending(&run_id)?;
        log::info!(
            "run {run_id} of job \"{}\" recorded while {} was unreachable: sent",
            detail.run.job_name,
            fleet.describe()
        );
        sent += 1;
    }
    Ok(sent)
}

/// Each attempt's captured output, in the detail's order (`None` where no file is left).
fn attempt_outputs(detail: &RunDetail) -> Vec<Option<Vec<u8>>> {
    detail
        .tasks
        .iter()
        .flat_map(|t| t.attempts.iter())
        .map(|a| a.output.as_ref().and_then(|p| std::fs::read(p).ok()))
        .collect()
}
