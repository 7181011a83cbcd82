//! The PostgreSQL store of a fleet (contract section 13): the same model as the SQLite
//! store, shared by every host, with each run's host and its output kept in the database.
//!
//! dsari's `runs` and `runs_running` are created exactly as dsari 2.0 creates them for
//! PostgreSQL (`run_id uuid`, `timestamp` times, `json` data), so a dsari installation's
//! database and its users' SQL keep working; runner's own tables keep epoch seconds as
//! the SQLite store does. The client is the synchronous `postgres` crate: runner's code
//! is threads and blocking calls throughout, and every wait is bounded by the connect and
//! statement timeouts that [`FleetUrl::config`] adds.

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::SystemTime;

use postgres::{Client, NoTls, Row};

use super::backend::{AttemptStarting, RunStore, StoredOutput};
use super::fleet_url::FleetUrl;
use super::lost::LOST_EXIT_CODE;
use super::model::{
    AttemptRecord, EventRecordOfTask, InstanceStatus, RunDetail, RunFilter, RunRecord, RunStatus,
    TaskRecord,
};
use super::owner::Owner;
use super::sqlite::{AttemptEnding, NewRun, StoreError, epoch};
use crate::record::EventWait;

/// Migrations in order, as for SQLite; each runs under a transaction-level advisory
/// lock, so hosts starting at once never apply one twice.
const MIGRATIONS: &[&str] = &[
    // 1: dsari's tables (as dsari makes them), run metadata with the host and the run's
    // output, task instances, attempts with their output, events.
    "
    CREATE TABLE IF NOT EXISTS runs (
        job_name text NOT NULL,
        run_id uuid PRIMARY KEY,
        schedule_time timestamp NOT NULL,
        start_time timestamp NOT NULL,
        stop_time timestamp NOT NULL,
        exit_code smallint NOT NULL,
        trigger_type text NOT NULL,
        trigger_data json NOT NULL,
        run_data json NOT NULL
    );
    CREATE TABLE IF NOT EXISTS runs_running (
        job_name text NOT NULL,
        run_id uuid PRIMARY KEY,
        schedule_time timestamp NOT NULL,
        start_time timestamp NOT NULL,
        trigger_type text NOT NULL,
        trigger_data json NOT NULL,
        run_data json NOT NULL
    );
    CREATE INDEX IF NOT EXISTS runs_job_start_time ON runs (job_name, start_time);
    CREATE TABLE run_meta (
        run_id uuid PRIMARY KEY,
        job_name text NOT NULL,
        status text NOT NULL,
        host text,
        pid integer,
        pid_start bigint,
        boot_id text,
        session text,
        output_dir text,
        output bytea
    );
    CREATE INDEX run_meta_job ON run_meta (job_name);
    CREATE INDEX run_meta_host ON run_meta (host);
    CREATE TABLE task_instances (
        id bigserial PRIMARY KEY,
        run_id uuid NOT NULL,
        name text NOT NULL,
        file text NOT NULL,
        instance integer NOT NULL,
        position integer NOT NULL,
        status text NOT NULL,
        parent_id bigint,
        UNIQUE (run_id, name, instance)
    );
    CREATE INDEX task_instances_name ON task_instances (name, run_id);
    CREATE TABLE attempts (
        id bigserial PRIMARY KEY,
        instance_id bigint NOT NULL REFERENCES task_instances (id) ON DELETE CASCADE,
        try_num integer NOT NULL,
        start_time double precision NOT NULL,
        stop_time double precision,
        exit_code integer,
        signal integer,
        result text,
        note text,
        output_path text,
        result_data text,
        output bytea,
        leftovers text
    );
    CREATE INDEX attempts_instance ON attempts (instance_id);
    CREATE TABLE events (
        id bigserial PRIMARY KEY,
        session text NOT NULL,
        name text NOT NULL,
        data text NOT NULL,
        fired_at double precision NOT NULL,
        source text,
        host text
    );
    CREATE INDEX events_session_name ON events (session, name);
    ",
    // 2: the events each task instance waited for or watched (SQLite's migration 5).
    "
    CREATE TABLE instance_events (
        id bigserial PRIMARY KEY,
        instance_id bigint NOT NULL REFERENCES task_instances (id) ON DELETE CASCADE,
        name text NOT NULL,
        kind text NOT NULL,
        event_id bigint,
        fired_at double precision,
        source text,
        waited_since double precision,
        decided_at double precision NOT NULL
    );
    CREATE INDEX instance_events_instance ON instance_events (instance_id);
    ",
    // 3: a firing's own id, made by the firing process: a firing sent again after its
    // connection died (its commit may have landed) is recorded once.
    "
    ALTER TABLE events ADD COLUMN firing_id uuid;
    CREATE UNIQUE INDEX events_firing_id ON events (firing_id);
    ",
];

/// Sets an instance's status.
const SET_STATUS: &str = "UPDATE task_instances SET status = $1 WHERE id = $2";

/// The advisory lock key under which migrations run (any constant unique to runner).
const MIGRATION_LOCK: i64 = 0x7275_6e6e_6572_0001;

/// A fleet database, opened and migrated.
pub(crate) struct PgStore {
    /// Reads take `&self` in the seam and the client needs `&mut` for every query; one
    /// store is used by one thread at a time.
    client: RefCell<Client>,
    /// The statements of the per-task path, prepared once per connection.
    prepared: Prepared,
    url: FleetUrl,
    /// This host: only its own runs can be told `running` from `lost` by their process.
    host: String,
}

/// Statements prepared once on a connection, by their SQL: a statement given as text is
/// parsed by the server on every call, a round trip of its own before the one that runs
/// it, and a chain's records are a few statements per task.
#[derive(Default)]
pub(super) struct Prepared(std::collections::HashMap<&'static str, postgres::Statement>);

impl Prepared {
    /// `sql`, prepared on `client` the first time.
    pub(super) fn get(
        &mut self,
        client: &mut impl postgres::GenericClient,
        sql: &'static str,
    ) -> Result<postgres::Statement, postgres::Error> {
        if let Some(statement) = self.0.get(sql) {
            return Ok(statement.clone());
        }
        let statement = client.prepare(sql)?;
        self.0.insert(sql, statement.clone());
        Ok(statement)
    }
}

/// Epoch seconds to dsari's `timestamp` (UTC, without a zone).
const TO_TS: &str = "(to_timestamp($X) AT TIME ZONE 'UTC')";

/// dsari's `timestamp` column back to epoch seconds.
fn from_ts(column: &str) -> String {
    format!("extract(epoch FROM ({column} AT TIME ZONE 'UTC'))::float8")
}

impl PgStore {
    /// Connects (within the connect timeout) and migrates.
    pub(crate) fn open(url: &FleetUrl, host: &str) -> Result<PgStore, StoreError> {
        let wrap = |source| StoreError::Postgres {
            url: url.describe(),
            source,
        };
        let client = url.config().connect(NoTls).map_err(wrap)?;
        let mut store = PgStore {
            client: RefCell::new(client),
            prepared: Prepared::default(),
            url: url.clone(),
            host: host.to_owned(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The host this store records as.
    pub(super) fn host(&self) -> &str {
        &self.host
    }

    /// The connection, for a read (one thread uses a store at a time).
    pub(super) fn client(&self) -> std::cell::RefMut<'_, Client> {
        self.client.borrow_mut()
    }

    /// The connection, for a write, and the statements prepared on it.
    pub(super) fn client_mut(&mut self) -> (&mut Client, &mut Prepared) {
        (self.client.get_mut(), &mut self.prepared)
    }

    pub(super) fn wrap(&self, source: postgres::Error) -> StoreError {
        StoreError::Postgres {
            url: self.url.describe(),
            source,
        }
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let result = (|| -> Result<Result<(), usize>, postgres::Error> {
            let mut tx = self.client.get_mut().transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)",
            )?;
            let version: Option<i32> = tx
                .query_one("SELECT max(version) FROM schema_version", &[])?
                .get(0);
            let version = version.unwrap_or(0) as usize;
            if version > MIGRATIONS.len() {
                return Ok(Err(version));
            }
            for (n, sql) in MIGRATIONS.iter().enumerate().skip(version) {
                tx.batch_execute(sql)?;
                tx.execute(
                    "INSERT INTO schema_version (version) VALUES ($1)",
                    &[&(n as i32 + 1)],
                )?;
            }
            tx.commit()?;
            Ok(Ok(()))
        })();
        match result.map_err(|e| self.wrap(e))? {
            Ok(()) => Ok(()),
            Err(found) => Err(StoreError::NewerSchema {
                path: PathBuf::from(self.url.describe()),
                found,
            }),
        }
    }

    fn running_row(&self, row: &Row) -> RunRecord {
        let host: Option<String> = row.get(10);
        let pid: Option<i32> = row.get(7);
        // Another host's process cannot be looked at from here: its run is running
        // until its own host says otherwise.
        let alive = match (pid, host.as_deref() == Some(self.host.as_str())) {
            (Some(pid), true) => Owner {
                pid: pid as u32,
                start_ticks: row.get(8),
                boot_id: row.get(9),
            }
            .is_alive(),
            _ => true,
        };
        RunRecord {
            run_id: row.get(0),
            job_name: row.get(1),
            status: if alive {
                RunStatus::Running
            } else {
                RunStatus::Lost
            },
            schedule_time: row.get(2),
            start_time: row.get(3),
            stop_time: None,
            exit_code: None,
            trigger_type: row.get(4),
            trigger_data: json(row.get(5)),
            run_data: json(row.get(6)),
            host,
        }
    }

    fn running_columns() -> String {
        format!(
            "r.run_id::text, r.job_name, {}, {}, r.trigger_type, r.trigger_data::text,
             r.run_data::text, m.pid, m.pid_start, m.boot_id, m.host",
            from_ts("r.schedule_time"),
            from_ts("r.start_time")
        )
    }

    fn finished_columns() -> String {
        format!(
            "r.run_id::text, r.job_name, {}, {}, r.trigger_type, r.trigger_data::text,
             r.run_data::text, {}, r.exit_code::bigint, m.status, m.host",
            from_ts("r.schedule_time"),
            from_ts("r.start_time"),
            from_ts("r.stop_time")
        )
    }

    fn is_prefix(prefix: &str) -> bool {
        !prefix.is_empty() && prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
    }
}

fn json(text: Option<String>) -> serde_json::Value {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| serde_json::json!({}))
}

/// A read-only transaction whose statements all see the database as of its first: a
/// run that ends moves from `runs_running` to `runs` in one commit, and two statements
/// each at its own moment (PostgreSQL's default, read committed) found it in both.
fn one_moment(client: &mut Client) -> Result<postgres::Transaction<'_>, postgres::Error> {
    client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
}

fn finished_row(row: &Row) -> RunRecord {
    let exit_code: Option<i64> = row.get(8);
    let status: Option<String> = row.get(9);
    let status = status
        .and_then(|s| s.parse().ok())
        .unwrap_or(if exit_code == Some(0) {
            RunStatus::Ok
        } else {
            RunStatus::Failed
        });
    RunRecord {
        run_id: row.get(0),
        job_name: row.get(1),
        status,
        schedule_time: row.get(2),
        start_time: row.get(3),
        stop_time: row.get(7),
        exit_code,
        trigger_type: row.get(4),
        trigger_data: json(row.get(5)),
        run_data: json(row.get(6)),
        host: row.get(10),
    }
}

fn insert_instances(
    tx: &mut postgres::Transaction<'_>,
    run_id: &str,
    tasks: &[(&str, &str)],
) -> Result<(), postgres::Error> {
    let insert = tx.prepare(
        "INSERT INTO task_instances (run_id, name, file, instance, position, status)
         VALUES ($1::text::uuid, $2, $3, 0, $4, 'unstarted')",
    )?;
    for (position, (name, file)) in tasks.iter().enumerate() {
        tx.execute(&insert, &[&run_id, name, file, &(position as i32)])?;
    }
    Ok(())
}

impl RunStore for PgStore {
    fn describe(&self) -> String {
        self.url.describe()
    }

    fn begin_run(&mut self, run: &NewRun<'_>) -> Result<(), StoreError> {
        let result = (|| {
            let mut tx = self.client.get_mut().transaction()?;
            let sql = format!(
                "INSERT INTO runs_running (job_name, run_id, schedule_time, start_time,
                    trigger_type, trigger_data, run_data)
                 VALUES ($1, $2::text::uuid, {}, {}, $5, $6::text::json, '{{}}')",
                TO_TS.replace("$X", "$3"),
                TO_TS.replace("$X", "$4")
            );
            tx.execute(
                &sql,
                &[
                    &run.job,
                    &run.run_id,
                    &epoch(run.schedule_time),
                    &epoch(run.start_time),
                    &run.trigger_type,
                    &run.trigger_data.to_string(),
                ],
            )?;
            tx.execute(
                "INSERT INTO run_meta (run_id, job_name, status, pid, pid_start, boot_id,
                    session, output_dir, host)
                 VALUES ($1::text::uuid, $2, 'running', $3, $4, $5, $6, $7, $8)",
                &[
                    &run.run_id,
                    &run.job,
                    &(run.owner.pid as i32),
                    &run.owner.start_ticks,
                    &run.owner.boot_id,
                    &run.session,
                    &run.output_dir.to_string_lossy().as_ref(),
                    &run.host,
                ],
            )?;
            insert_instances(&mut tx, run.run_id, run.tasks)?;
            tx.commit()
        })();
        result.map_err(|e| self.wrap(e))
    }

    fn add_instances(&mut self, run_id: &str, tasks: &[(&str, &str)]) -> Result<(), StoreError> {
        let result = (|| {
            let mut tx = self.client.get_mut().transaction()?;
            insert_instances(&mut tx, run_id, tasks)?;
            tx.commit()
        })();
        result.map_err(|e| self.wrap(e))
    }

    fn instance_id(
        &mut self,
        run_id: &str,
        name: &str,
        file: &str,
        instance: u32,
    ) -> Result<i64, StoreError> {
        let instance = instance as i32;
        let result = (|| {
            let client = self.client.get_mut();
            let find = self.prepared.get(
                client,
                "SELECT id FROM task_instances
                 WHERE run_id = $1::text::uuid AND name = $2 AND instance = $3",
            )?;
            if let Some(row) = client.query_opt(&find, &[&run_id, &name, &instance])? {
                return Ok(row.get::<_, i64>(0));
            }
            let row = client.query_one(
                "INSERT INTO task_instances (run_id, name, file, instance, position, status)
                 VALUES ($1::text::uuid, $2, $3, $4,
                    (SELECT coalesce(max(position), -1) + 1 FROM task_instances
                     WHERE run_id = $1::text::uuid),
                    'unstarted')
                 RETURNING id",
                &[&run_id, &name, &file, &instance],
            )?;
            Ok(row.get::<_, i64>(0))
        })();
        result.map_err(|e| self.wrap(e))
    }

    fn record_instance_events(
        &mut self,
        instance_id: i64,
        since: Option<SystemTime>,
        decided: SystemTime,
        events: &[EventWait],
    ) -> Result<(), StoreError> {
        let since = since.map(epoch);
        let decided = epoch(decided);
        let result = (|| {
            let mut tx = self.client.get_mut().transaction()?;
            for e in events {
                tx.execute(
                    "INSERT INTO instance_events (instance_id, name, kind, event_id, fired_at,
                        source, waited_since, decided_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &instance_id,
                        &e.name,
                        &e.kind,
                        &e.event_id,
                        &e.fired_at,
                        &e.source,
                        &since,
                        &decided,
                    ],
                )?;
            }
            tx.commit()
        })();
        result.map_err(|e| self.wrap(e))
    }

    fn set_instance_status(
        &mut self,
        instance_id: i64,
        status: InstanceStatus,
    ) -> Result<(), StoreError> {
        let client = self.client.get_mut();
        self.prepared
            .get(client, SET_STATUS)
            .and_then(|set| client.execute(&set, &[&status.as_str(), &instance_id]))
            .map(drop)
            .map_err(|e| self.wrap(e))
    }

    fn record_attempts(
        &mut self,
        ended: &[AttemptEnding],
        starting: Option<AttemptStarting<'_>>,
    ) -> Result<Option<i64>, StoreError> {
        let prepared = &mut self.prepared;
        let host = &self.host;
        let result = (|| {
            let mut tx = self.client.get_mut().transaction()?;
            for end in ended {
                let update = prepared.get(
                    &mut tx,
                    "UPDATE attempts SET stop_time = $1, exit_code = $2, signal = $3,
                        result = $4, note = $5, result_data = $6,
                        output_path = CASE WHEN $8 THEN output_path END, leftovers = $9
                     WHERE id = $7",
                )?;
                tx.execute(
                    &update,
                    &[
                        &epoch(end.stop_time),
                        &end.exit_code,
                        &end.signal,
                        &end.result,
                        &end.note,
                        &end.result_data.as_ref().map(|v| v.to_string()),
                        &end.attempt_id,
                        &end.has_output,
                        &end.leftovers.as_ref().map(|v| v.to_string()),
                    ],
                )?;
                let set = prepared.get(&mut tx, SET_STATUS)?;
                tx.execute(&set, &[&end.instance_status.as_str(), &end.instance_id])?;
                if let Some(cascade) = &end.cascade {
                    let event = super::events::NewEvent {
                        session: &cascade.session,
                        name: &cascade.name,
                        data: &cascade.data,
                        source: &cascade.source,
                    };
                    super::pg_events::insert_event(&mut tx, prepared, &event, end.stop_time, host)?;
                }
            }
            let mut id = None;
            if let Some((instance_id, try_num, start_time, output)) = starting {
                let insert = prepared.get(
                    &mut tx,
                    "INSERT INTO attempts (instance_id, try_num, start_time, output_path)
                     VALUES ($1, $2, $3, $4) RETURNING id",
                )?;
                let row = tx.query_one(
                    &insert,
                    &[
                        &instance_id,
                        &(try_num as i32),
                        &epoch(start_time),
                        &output.map(|p| p.to_string_lossy().into_owned()),
                    ],
                )?;
                id = Some(row.get::<_, i64>(0));
                let set = prepared.get(&mut tx, SET_STATUS)?;
                tx.execute(&set, &[&"running", &instance_id])?;
            }
            tx.commit()?;
            Ok(id)
        })();
        result.map_err(|e| self.wrap(e))
    }

    fn store_output(&mut self, attempt_id: i64, bytes: &[u8]) -> Result<(), StoreError> {
        let client = self.client.get_mut();
        self.prepared
            .get(client, "UPDATE attempts SET output = $1 WHERE id = $2")
            .and_then(|set| client.execute(&set, &[&bytes, &attempt_id]))
            .map(drop)
            .map_err(|e| self.wrap(e))
    }

    fn store_run_output(&mut self, run_id: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.client
            .get_mut()
            .execute(
                "UPDATE run_meta SET output = $1 WHERE run_id = $2::text::uuid",
                &[&bytes, &run_id],
            )
            .map(drop)
            .map_err(|e| self.wrap(e))
    }

    fn finish_run(
        &mut self,
        run_id: &str,
        status: RunStatus,
        exit_code: Option<i32>,
        stop_time: Option<SystemTime>,
    ) -> Result<(), StoreError> {
        // dsari's columns are NOT NULL: an unknown end is "now", an unknown code lost's.
        let stop = epoch(stop_time.unwrap_or_else(SystemTime::now));
        let code = exit_code.unwrap_or(LOST_EXIT_CODE) as i16;
        let result = (|| {
            let mut tx = self.client.get_mut().transaction()?;
            let sql = format!(
                "INSERT INTO runs (job_name, run_id, schedule_time, start_time, stop_time,
                    exit_code, trigger_type, trigger_data, run_data)
                 SELECT job_name, run_id, schedule_time, start_time, {}, $3, trigger_type,
                    trigger_data, run_data
                 FROM runs_running WHERE run_id = $1::text::uuid
                 ON CONFLICT (run_id) DO NOTHING",
                TO_TS.replace("$X", "$2")
            );
            tx.execute(&sql, &[&run_id, &stop, &code])?;
            tx.execute(
                "DELETE FROM runs_running WHERE run_id = $1::text::uuid",
                &[&run_id],
            )?;
            tx.execute(
                "INSERT INTO run_meta (run_id, job_name, status)
                 SELECT run_id, job_name, $1 FROM runs WHERE run_id = $2::text::uuid
                 ON CONFLICT (run_id) DO UPDATE SET status = excluded.status",
                &[&status.as_str(), &run_id],
            )?;
            tx.commit()
        })();
        result.map_err(|e| self.wrap(e))
    }

    fn set_run_data(&mut self, run_id: &str, data: &serde_json::Value) -> Result<(), StoreError> {
        self.client
            .get_mut()
            .execute(
                "UPDATE runs_running SET run_data = $1::text::json WHERE run_id = $2::text::uuid",
                &[&data.to_string(), &run_id],
            )
            .map(drop)
            .map_err(|e| self.wrap(e))
    }

    fn finalize_lost(&mut self, job: Option<&str>) -> Result<Vec<String>, StoreError> {
        let rows = self
            .client
            .get_mut()
            .query(
                "SELECT r.run_id::text, m.pid, m.pid_start, m.boot_id FROM runs_running r
                 JOIN run_meta m USING (run_id)
                 WHERE m.host = $1 AND ($2::text IS NULL OR r.job_name = $2)",
                &[&self.host, &job],
            )
            .map_err(|e| self.wrap(e))?;
        let mut lost = Vec::new();
        for row in rows {
            let run_id: String = row.get(0);
            let pid: Option<i32> = row.get(1);
            let alive = pid.is_some_and(|pid| {
                Owner {
                    pid: pid as u32,
                    start_ticks: row.get(2),
                    boot_id: row.get(3),
                }
                .is_alive()
            });
            if alive {
                continue;
            }
            let result = (|| {
                let mut tx = self.client.get_mut().transaction()?;
                tx.execute(
                    "UPDATE attempts SET note = coalesce(note, 'lost: runner died during this attempt')
                     WHERE stop_time IS NULL AND instance_id IN
                        (SELECT id FROM task_instances WHERE run_id = $1::text::uuid)",
                    &[&run_id],
                )?;
                tx.execute(
                    "UPDATE task_instances SET status = 'failed'
                     WHERE run_id = $1::text::uuid AND status IN ('running', 'waiting')",
                    &[&run_id],
                )?;
                let last: Option<f64> = tx
                    .query_one(
                        &format!(
                            "SELECT greatest(
                                (SELECT {} FROM runs_running r WHERE run_id = $1::text::uuid),
                                (SELECT max(greatest(a.start_time, a.stop_time)) FROM attempts a
                                 JOIN task_instances t ON t.id = a.instance_id
                                 WHERE t.run_id = $1::text::uuid))",
                            from_ts("r.start_time")
                        ),
                        &[&run_id],
                    )?
                    .get(0);
                tx.commit()?;
                Ok(last)
            })();
            let last = result.map_err(|e| self.wrap(e))?;
            let stop = last.map(|s| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs_f64(s));
            self.finish_run(&run_id, RunStatus::Lost, Some(LOST_EXIT_CODE), stop)?;
            lost.push(run_id);
        }
        Ok(lost)
    }

    fn previous_runs(&self, job: &str) -> Result<[Option<RunRecord>; 3], StoreError> {
        let mut client = self.client.borrow_mut();
        let mut one = |condition: &str| -> Result<Option<RunRecord>, postgres::Error> {
            let sql = format!(
                "SELECT {} FROM runs r LEFT JOIN run_meta m USING (run_id)
                 WHERE r.job_name = $1 {condition} ORDER BY r.start_time DESC LIMIT 1",
                PgStore::finished_columns()
            );
            Ok(client.query_opt(&sql, &[&job])?.as_ref().map(finished_row))
        };
        let result = (|| {
            Ok([
                one("")?,
                one("AND r.exit_code = 0")?,
                one("AND r.exit_code != 0")?,
            ])
        })();
        result.map_err(|e| self.wrap(e))
    }

    fn last_scheduled(&self, job: &str) -> Result<Option<f64>, StoreError> {
        let sql = format!(
            "SELECT max(t) FROM (
                SELECT {} AS t FROM runs WHERE job_name = $1
                    AND trigger_type IN ('schedule', 'catch_up')
                UNION ALL
                SELECT {} FROM runs_running WHERE job_name = $1
                    AND trigger_type IN ('schedule', 'catch_up')) s",
            from_ts("schedule_time"),
            from_ts("schedule_time")
        );
        let row = self
            .client
            .borrow_mut()
            .query_one(&sql, &[&job])
            .map_err(|e| self.wrap(e))?;
        Ok(row.get(0))
    }

    fn list_runs_on(&self, filter: &RunFilter<'_>) -> Result<Vec<RunRecord>, StoreError> {
        let RunFilter {
            jobs,
            statuses,
            since,
            host,
            limit,
        } = *filter;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let filter = format!(
            "(cardinality($1::text[]) = 0 OR r.job_name = ANY($1))
            AND ($2::text IS NULL OR m.host = $2)
            AND ($4::float8 IS NULL OR {} >= $4)",
            from_ts("r.start_time")
        );
        let words: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        let status_filter = "AND (cardinality($5::text[]) = 0 OR coalesce(m.status,
            CASE WHEN r.exit_code = 0 THEN 'ok' ELSE 'failed' END) = ANY($5))";
        // A run still in runs_running is running or lost: only its owner can tell.
        let want_unfinished = statuses.is_empty()
            || statuses
                .iter()
                .any(|s| matches!(s, RunStatus::Running | RunStatus::Lost));
        let result = (|| {
            let mut client = self.client.borrow_mut();
            let mut client = one_moment(&mut client)?;
            let running = if want_unfinished {
                client.query(
                    &format!(
                        "SELECT {} FROM runs_running r LEFT JOIN run_meta m USING (run_id)
                         WHERE {filter} ORDER BY r.start_time DESC LIMIT $3",
                        PgStore::running_columns()
                    ),
                    &[&jobs, &host, &limit, &since],
                )?
            } else {
                Vec::new()
            };
            let finished = client.query(
                &format!(
                    "SELECT {} FROM runs r LEFT JOIN run_meta m USING (run_id)
                     WHERE {filter} {status_filter} ORDER BY r.start_time DESC LIMIT $3",
                    PgStore::finished_columns()
                ),
                &[&jobs, &host, &limit, &since, &words],
            )?;
            client.commit()?;
            Ok((running, finished))
        })();
        let (running, finished) = result.map_err(|e| self.wrap(e))?;
        let mut runs: Vec<RunRecord> = running
            .iter()
            .map(|r| self.running_row(r))
            .filter(|r| statuses.is_empty() || statuses.contains(&r.status))
            .collect();
        runs.extend(finished.iter().map(finished_row));
        runs.sort_by(|a, b| {
            let key = |r: &RunRecord| r.start_time.unwrap_or(f64::NEG_INFINITY);
            key(b).total_cmp(&key(a))
        });
        runs.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(runs)
    }

    fn find_run(&self, prefix: &str) -> Result<RunRecord, StoreError> {
        if !PgStore::is_prefix(prefix) {
            return Err(StoreError::NotFound {
                prefix: prefix.to_owned(),
            });
        }
        let pattern = format!("{}%", prefix.to_ascii_lowercase());
        let result = (|| {
            let mut client = self.client.borrow_mut();
            let mut client = one_moment(&mut client)?;
            let running = client.query(
                &format!(
                    "SELECT {} FROM runs_running r LEFT JOIN run_meta m USING (run_id)
                     WHERE r.run_id::text LIKE $1 LIMIT 5",
                    PgStore::running_columns()
                ),
                &[&pattern],
            )?;
            let finished = client.query(
                &format!(
                    "SELECT {} FROM runs r LEFT JOIN run_meta m USING (run_id)
                     WHERE r.run_id::text LIKE $1 LIMIT 5",
                    PgStore::finished_columns()
                ),
                &[&pattern],
            )?;
            client.commit()?;
            Ok((running, finished))
        })();
        let (running, finished) = result.map_err(|e| self.wrap(e))?;
        let mut found: Vec<RunRecord> = running.iter().map(|r| self.running_row(r)).collect();
        found.extend(finished.iter().map(finished_row));
        super::model::pick_run(found, prefix)
    }

    fn run_detail(&self, prefix: &str) -> Result<RunDetail, StoreError> {
        let run = self.find_run(prefix)?;
        let result = (|| {
            let mut client = self.client.borrow_mut();
            let instances = client.query(
                "SELECT id, name, file, instance, status FROM task_instances
                 WHERE run_id = $1::text::uuid ORDER BY position, instance",
                &[&run.run_id],
            )?;
            let attempts = client.prepare(
                "SELECT try_num, exit_code, signal, result, start_time, stop_time, note,
                    output_path, result_data, leftovers
                 FROM attempts WHERE instance_id = $1 ORDER BY id",
            )?;
            let events = client.prepare(
                "SELECT name, kind, event_id, fired_at, source, waited_since, decided_at
                 FROM instance_events WHERE instance_id = $1 ORDER BY id",
            )?;
            let mut tasks = Vec::with_capacity(instances.len());
            for row in &instances {
                let id: i64 = row.get(0);
                let name: String = row.get(1);
                let instance: i32 = row.get(3);
                let status: String = row.get(4);
                let attempts = client
                    .query(&attempts, &[&id])?
                    .iter()
                    .map(|a| AttemptRecord {
                        try_num: a.get::<_, i32>(0) as u32,
                        exit_code: a.get::<_, Option<i32>>(1).map(i64::from),
                        signal: a.get::<_, Option<i32>>(2).map(i64::from),
                        result: a.get(3),
                        start_time: a.get(4),
                        stop_time: a.get(5),
                        note: a.get(6),
                        output: a.get(7),
                        result_data: a
                            .get::<_, Option<String>>(8)
                            .and_then(|t| serde_json::from_str(&t).ok()),
                        leftovers: a
                            .get::<_, Option<String>>(9)
                            .and_then(|t| serde_json::from_str(&t).ok()),
                    })
                    .collect();
                let events = client
                    .query(&events, &[&id])?
                    .iter()
                    .map(|e| {
                        let event_id: Option<i64> = e.get(2);
                        let source: Option<String> = e.get(4);
                        EventRecordOfTask {
                            name: e.get(0),
                            kind: e.get(1),
                            fired: event_id.is_some() || source.is_some(),
                            event_id,
                            fired_at: e.get(3),
                            source,
                            waited_since: e.get(5),
                            decided_at: e.get(6),
                        }
                    })
                    .collect();
                tasks.push(TaskRecord {
                    instance: format!("{name}#{instance}"),
                    name,
                    file: row.get(2),
                    status: status.parse().unwrap_or(InstanceStatus::Failed),
                    attempts,
                    events,
                });
            }
            let output_dir = client
                .query_opt(
                    "SELECT output_dir FROM run_meta WHERE run_id = $1::text::uuid",
                    &[&run.run_id],
                )?
                .and_then(|r| r.get::<_, Option<String>>(0));
            Ok((tasks, output_dir))
        })();
        let (tasks, output_dir) = result.map_err(|e| self.wrap(e))?;
        Ok(RunDetail {
            run,
            tasks,
            output_dir,
        })
    }

    fn stored_output(&self, run_id: &str) -> Result<Vec<StoredOutput>, StoreError> {
        self.output_ends(run_id, i64::from(i32::MAX))
    }

    fn stored_output_tail(
        &self,
        run_id: &str,
        limit: u64,
    ) -> Result<Vec<StoredOutput>, StoreError> {
        self.output_ends(run_id, i64::try_from(limit).unwrap_or(i64::MAX))
    }
}

/// The last `$2` bytes of output column `c`, cut by the server (a page shows the end
/// of what may be megabytes), and the column's whole length.
fn output_end(c: &str) -> String {
    format!(
        "substring({c} FROM greatest(1, octet_length({c})::int8 - $2::int8 + 1)::int4),
         octet_length({c})::int8"
    )
}

impl PgStore {
    /// The outputs kept for a run, each its last `limit` bytes: each attempt's in run
    /// order, else the run's own (a dsari run's `output.txt`).
    fn output_ends(&self, run_id: &str, limit: i64) -> Result<Vec<StoredOutput>, StoreError> {
        let result = (|| {
            let mut client = self.client.borrow_mut();
            let mut out: Vec<StoredOutput> = client
                .query(
                    &format!(
                        "SELECT t.name, t.instance, a.try_num, {} FROM attempts a
                         JOIN task_instances t ON t.id = a.instance_id
                         WHERE t.run_id = $1::text::uuid AND a.output IS NOT NULL
                          ORDER BY t.position, t.instance, a.id",
                        output_end("a.output")
                    ),
                    &[&run_id, &limit],
                )?
                .iter()
                .map(|r| {
                    let name: String = r.get(0);
                    StoredOutput {
                        instance: format!("{name}#{}", r.get::<_, i32>(1)),
                        task: name,
                        try_num: r.get::<_, i32>(2) as u32,
                        bytes: r.get(3),
                        size: r.get::<_, i64>(4).max(0) as u64,
                    }
                })
                .collect();
            if out.is_empty()
                && let Some(row) = client.query_opt(
                    &format!(
                        "SELECT {} FROM run_meta WHERE run_id = $1::text::uuid
                         AND output IS NOT NULL",
                        output_end("output")
                    ),
                    &[&run_id, &limit],
                )?
            {
                out.push(StoredOutput {
                    task: String::new(),
                    instance: "output.txt".to_owned(),
                    try_num: 0,
                    bytes: row.get(0),
                    size: row.get::<_, i64>(1).max(0) as u64,
                });
            }
            Ok(out)
        })();
        result.map_err(|e| self.wrap(e))
    }
}

impl PgStore {
    /// Deletes up to `batch` of this host's old runs of `keep.job` (all but the newest
    /// `keep.runs`, and those older than `keep.days`), none started at or after `before`,
    /// as the SQLite store does; returns their output directories. Each host keeps its
    /// own history: `keep_runs` of one host never removes another's runs.
    pub(crate) fn prune(
        &mut self,
        keep: &super::retention::Keep<'_>,
        batch: usize,
    ) -> Result<Vec<PathBuf>, StoreError> {
        let (job, keep_runs) = (keep.job, keep.runs);
        let cutoff = keep.cutoff();
        let host = self.host.clone();
        let sql = format!(
            "WITH mine AS (
                SELECT r.run_id, r.start_time, m.output_dir FROM runs r
                JOIN run_meta m USING (run_id)
                WHERE r.job_name = $1 AND m.host = $2 AND r.start_time < {})
             SELECT run_id::text, output_dir FROM mine
             WHERE run_id IN (SELECT run_id FROM mine ORDER BY start_time DESC OFFSET $3)
                OR ($4::float8 IS NOT NULL AND start_time < {})
             LIMIT $6",
            TO_TS.replace("$X", "$5"),
            TO_TS.replace("$X", "$4")
        );
        let result = (|| {
            let mut tx = self.client.get_mut().transaction()?;
            let victims = tx.query(
                &sql,
                &[
                    &job,
                    &host,
                    &(keep_runs as i64),
                    &cutoff,
                    &epoch(keep.before),
                    &(batch as i64),
                ],
            )?;
            let ids: Vec<String> = victims.iter().map(|r| r.get(0)).collect();
            // Attempts go with their instances (ON DELETE CASCADE).
            for table in ["task_instances", "run_meta", "runs"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE run_id::text = ANY($1)"),
                    &[&ids],
                )?;
            }
            tx.commit()?;
            Ok(victims
                .iter()
                .filter_map(|r| r.get::<_, Option<String>>(1))
                .map(PathBuf::from)
                .collect())
        })();
        result.map_err(|e| self.wrap(e))
    }

    /// Writes a whole run recorded elsewhere (the local store, while this database was
    /// unreachable) in one transaction, replacing any part of it already here, with the
    /// `events` it fired that are not here yet.
    pub(crate) fn upload(
        &mut self,
        detail: &RunDetail,
        origin: &super::fleet_sync::RunOrigin,
        outputs: &[Option<Vec<u8>>],
        events: &[super::events::EventRecord],
    ) -> Result<(), StoreError> {
        let run = &detail.run;
        let host = origin.host.as_deref().unwrap_or(&self.host);
        let result = (|| {
            let mut tx = self.client.get_mut().transaction()?;
            super::pg_events::insert_sent_events(&mut tx, events, host)?;
            for table in ["task_instances", "run_meta", "runs", "runs_running"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE run_id = $1::text::uuid"),
                    &[&run.run_id],
                )?;
            }
            let start = run.start_time.unwrap_or(0.0);
            let finished = run.status != RunStatus::Running;
            let sql = format!(
                "INSERT INTO runs (job_name, run_id, schedule_time, start_time, stop_time,
                    exit_code, trigger_type, trigger_data, run_data)
                 VALUES ($1, $2::text::uuid, {}, {}, {}, $6, $7, $8::text::json, $9::text::json)",
                TO_TS.replace("$X", "$3"),
                TO_TS.replace("$X", "$4"),
                TO_TS.replace("$X", "$5"),
            );
            if finished {
                tx.execute(
                    &sql,
                    &[
                        &run.job_name,
                        &run.run_id,
                        &run.schedule_time.unwrap_or(start),
                        &start,
                        &run.stop_time.unwrap_or(start),
                        &(run.exit_code.unwrap_or(i64::from(LOST_EXIT_CODE)) as i16),
                        &run.trigger_type.clone().unwrap_or_default(),
                        &run.trigger_data.to_string(),
                        &run.run_data.to_string(),
                    ],
                )?;
            }
            tx.execute(
                "INSERT INTO run_meta (run_id, job_name, status, host, pid, pid_start, boot_id,
                    session, output_dir)
                 VALUES ($1::text::uuid, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &run.run_id,
                    &run.job_name,
                    &run.status.as_str(),
                    &origin.host,
                    &origin.pid.map(|p| p as i32),
                    &origin.pid_start,
                    &origin.boot_id,
                    &origin.session,
                    &detail.output_dir,
                ],
            )?;
            let mut outputs = outputs.iter();
            for (position, task) in detail.tasks.iter().enumerate() {
                let number: i32 = task
                    .instance
                    .rsplit('#')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let id: i64 = tx
                    .query_one(
                        "INSERT INTO task_instances (run_id, name, file, instance, position,
                            status)
                         VALUES ($1::text::uuid, $2, $3, $4, $5, $6) RETURNING id",
                        &[
                            &run.run_id,
                            &task.name,
                            &task.file,
                            &number,
                            &(position as i32),
                            &task.status.as_str(),
                        ],
                    )?
                    .get(0);
                for a in &task.attempts {
                    let output = outputs.next().cloned().flatten();
                    tx.execute(
                        "INSERT INTO attempts (instance_id, try_num, start_time, stop_time,
                            exit_code, signal, result, note, output_path, result_data, output,
                            leftovers)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                        &[
                            &id,
                            &(a.try_num as i32),
                            &a.start_time,
                            &a.stop_time,
                            &a.exit_code.map(|c| c as i32),
                            &a.signal.map(|c| c as i32),
                            &a.result,
                            &a.note,
                            &a.output,
                            &a.result_data.as_ref().map(|v| v.to_string()),
                            &output,
                            &a.leftovers.as_ref().map(|v| v.to_string()),
                        ],
                    )?;
                }
                for e in &task.events {
                    tx.execute(
                        "INSERT INTO instance_events (instance_id, name, kind, event_id,
                            fired_at, source, waited_since, decided_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        &[
                            &id,
                            &e.name,
                            &e.kind,
                            &e.event_id,
                            &e.fired_at,
                            &e.source,
                            &e.waited_since,
                            &e.decided_at,
                        ],
                    )?;
                }
            }
            tx.commit()
        })();
        result.map_err(|e| self.wrap(e))
    }
}
