//! The store's schema as numbered, forward-only migrations.
//!
//! `runs` and `runs_running` keep dsari's columns and types exactly, so dsari's tools and
//! users' SQL keep working, and a dsari database can be opened in place (every statement
//! of migration 1 tolerates existing tables). Everything else is runner's own.

use rusqlite::{Connection, Transaction, TransactionBehavior};

/// Migrations in order; the store's version is the number applied.
const MIGRATIONS: &[&str] = &[
    // 1: dsari's tables, run metadata, task instances, attempts, events.
    "
    CREATE TABLE IF NOT EXISTS runs (
        job_name text,
        run_id text,
        schedule_time real,
        start_time real,
        stop_time real,
        exit_code integer,
        trigger_type text,
        trigger_data text,
        run_data text
    );
    CREATE TABLE IF NOT EXISTS runs_running (
        job_name text,
        run_id text,
        schedule_time real,
        start_time real,
        trigger_type text,
        trigger_data text,
        run_data text
    );
    CREATE INDEX IF NOT EXISTS runs_run_id ON runs (run_id);
    CREATE INDEX IF NOT EXISTS runs_start_time ON runs (start_time);
    CREATE INDEX IF NOT EXISTS runs_job_start_time ON runs (job_name, start_time);
    CREATE INDEX IF NOT EXISTS runs_running_run_id ON runs_running (run_id);

    -- Who is recording a run (to tell running from lost) and how it ended.
    CREATE TABLE run_meta (
        run_id TEXT PRIMARY KEY,
        job_name TEXT NOT NULL,
        status TEXT NOT NULL,
        pid INTEGER,
        pid_start INTEGER,
        boot_id TEXT,
        session TEXT,
        output_dir TEXT
    );
    CREATE INDEX run_meta_job ON run_meta (job_name);

    CREATE TABLE task_instances (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        name TEXT NOT NULL,
        file TEXT NOT NULL,
        instance INTEGER NOT NULL,
        position INTEGER NOT NULL,
        status TEXT NOT NULL,
        parent_id INTEGER,
        UNIQUE (run_id, name, instance)
    );
    CREATE INDEX task_instances_name ON task_instances (name, run_id);

    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        instance_id INTEGER NOT NULL REFERENCES task_instances (id) ON DELETE CASCADE,
        try_num INTEGER NOT NULL,
        start_time REAL NOT NULL,
        stop_time REAL,
        exit_code INTEGER,
        signal INTEGER,
        result TEXT,
        note TEXT,
        output_path TEXT,
        result_data TEXT
    );
    CREATE INDEX attempts_instance ON attempts (instance_id);

    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        session TEXT NOT NULL,
        name TEXT NOT NULL,
        data TEXT NOT NULL,
        fired_at REAL NOT NULL,
        source TEXT
    );
    CREATE INDEX events_session_name ON events (session, name);
    ",
    // 2: the processes an attempt left running when it exited (JSON: [{pid, command}]).
    "ALTER TABLE attempts ADD COLUMN leftovers TEXT;",
    // 3: the host each run ran on (section 13), and whether a run recorded here while
    // the fleet's database was unreachable still has to be sent there.
    "
    ALTER TABLE run_meta ADD COLUMN host TEXT;
    ALTER TABLE run_meta ADD COLUMN fleet_pending INTEGER NOT NULL DEFAULT 0;
    ",
    // 4: indexes that let `runner metrics` and the report read their numbers in index
    // order, without a sort or a look-up per run: each run's duration and latency by
    // job (the quantiles), its stop time and exit code by job (counts, the last run),
    // run_meta's status by job and job by run id.
    "
    CREATE INDEX IF NOT EXISTS runs_job_duration ON runs (job_name, stop_time - start_time);
    CREATE INDEX IF NOT EXISTS runs_job_latency ON runs (job_name, start_time - schedule_time);
    CREATE INDEX IF NOT EXISTS runs_job_stop ON runs (job_name, stop_time, exit_code);
    CREATE INDEX run_meta_job_status ON run_meta (job_name, status);
    DROP INDEX run_meta_job;
    CREATE INDEX run_meta_run_job ON run_meta (run_id, job_name);
    ",
    // 5: the events each task instance waited for (`after`) or watched (`unless`), as
    // they stood when it was started, abandoned or given up on; event_id and fired_at
    // are NULL for an event that was not fired.
    "
    CREATE TABLE instance_events (
        id INTEGER PRIMARY KEY,
        instance_id INTEGER NOT NULL REFERENCES task_instances (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        event_id INTEGER,
        fired_at REAL,
        source TEXT,
        waited_since REAL,
        decided_at REAL NOT NULL
    );
    CREATE INDEX instance_events_instance ON instance_events (instance_id);
    ",
    // 6: one index of `runs` by job instead of four. Every run that ends writes to each
    // index of `runs`, at its job's place in it (a page of its own per index, with many
    // jobs), which was most of the daemon's writes per run; the metrics now read every
    // value they need from this one covering index, in job order, and sort each job's
    // values in memory. Its (job_name, start_time) prefix still serves `runs list --job`,
    // the previous runs and the last scheduled time.
    "
    DROP INDEX IF EXISTS runs_job_duration;
    DROP INDEX IF EXISTS runs_job_latency;
    DROP INDEX IF EXISTS runs_job_stop;
    DROP INDEX IF EXISTS runs_job_start_time;
    CREATE INDEX runs_job_start_time
        ON runs (job_name, start_time, stop_time, exit_code, schedule_time);
    ",
    // 7: run_meta's (job_name, status) index holds the runs that ended only, the rows
    // its one reader (the counts by job and status) asks for. A run's start wrote its
    // 'running' entry at its job's place in the index, a page of its own per job, and
    // its end moved it: with many jobs that was one of the half-dozen pages each start's
    // transaction wrote, where the others are at the ends of their tables and indexes
    // and shared by the runs that start together.
    "
    DROP INDEX IF EXISTS run_meta_job_status;
    CREATE INDEX run_meta_job_status ON run_meta (job_name, status)
        WHERE status != 'running';
    ",
];

/// The schema version this build writes.
pub(crate) const CURRENT: usize = MIGRATIONS.len();

/// Brings the database up to [`CURRENT`], every pending migration in one transaction.
///
/// The version is read inside the write transaction, so two processes opening a new
/// store at once never both apply the same migration. A database newer than this build
/// is refused rather than guessed at.
pub(crate) fn migrate(conn: &mut Connection) -> rusqlite::Result<Result<(), usize>> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    // Every migration still to apply, in one transaction: a reader of a file being
    // created sees none of runner's tables (and stands in for them) or all of them as
    // they are now, never a table from one migration without the column of the next.
    let tx: Transaction<'_> = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version = tx
        .query_row("SELECT max(version) FROM schema_version", [], |r| {
            r.get::<_, Option<i64>>(0)
        })?
        .unwrap_or(0) as usize;
    if version > CURRENT {
        return Ok(Err(version));
    }
    for (done, migration) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(migration)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [done as i64 + 1],
        )?;
    }
    tx.commit()?;
    Ok(Ok(()))
}

/// Makes a read-only connection able to run every query of the store without changing
/// the file: each table of the current schema that the file lacks (all of runner's, for a
/// file only dsari wrote) is created empty as a TEMP table of the same shape, which
/// shadows nothing and vanishes with the connection. A file at this build's version or
/// newer (reading cannot harm it) needs none.
pub(crate) fn stand_in_for_missing(conn: &Connection) -> rusqlite::Result<()> {
    let present: Vec<String> = conn
        .prepare("SELECT name FROM main.sqlite_master WHERE type = 'table'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if present.iter().any(|t| t == "schema_version") {
        let version = conn
            .query_row("SELECT max(version) FROM main.schema_version", [], |r| {
                r.get::<_, Option<i64>>(0)
            })?
            .unwrap_or(0) as usize;
        if version >= CURRENT {
            return Ok(());
        }
    }
    // The current shapes, from the migrations themselves, so that they never drift.
    let mut model = Connection::open_in_memory()?;
    migrate(&mut model)?.expect("an empty database is never newer than this build");
    let tables: Vec<(String, String)> = model
        .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql IS NOT NULL")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (name, sql) in tables {
        if present.contains(&name) {
            continue;
        }
        // SQLite keeps the text as `CREATE TABLE name (...)`; make it a TEMP table.
        let body = sql
            .get("CREATE TABLE".len()..)
            .filter(|_| sql.to_ascii_uppercase().starts_with("CREATE TABLE"))
            .unwrap_or(&sql);
        conn.execute_batch(&format!("CREATE TEMP TABLE {}", body.trim_start()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_an_empty_database_and_is_idempotent() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn).expect("sql").expect("version");
        migrate(&mut conn).expect("sql").expect("version");
        let v: i64 = conn
            .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(v as usize, CURRENT);
    }

    #[test]
    fn opens_a_dsari_database_in_place() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(
            "CREATE TABLE runs (job_name text, run_id text, schedule_time real, start_time real,
                stop_time real, exit_code integer, trigger_type text, trigger_data text, run_data text);
             INSERT INTO runs VALUES ('j', 'r1', 1.0, 2.0, 3.0, 0, 'schedule', '{}', '{}');",
        )
        .expect("dsari schema");
        migrate(&mut conn).expect("sql").expect("version");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 1, "existing dsari rows are kept");
    }

    #[test]
    fn a_read_only_dsari_file_gets_stand_ins_and_stays_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dsari.sqlite3");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            "CREATE TABLE runs (job_name text, run_id text, schedule_time real, start_time real,
                stop_time real, exit_code integer, trigger_type text, trigger_data text, run_data text);
             CREATE TABLE runs_running (job_name text, run_id text, schedule_time real,
                start_time real, trigger_type text, trigger_data text, run_data text);",
        )
        .expect("dsari schema");
        drop(conn);
        let before = std::fs::read(&path).expect("read");
        let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open read-only");
        stand_in_for_missing(&conn).expect("sql");
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM runs r LEFT JOIN run_meta m USING (run_id)
                 LEFT JOIN task_instances t ON t.run_id = r.run_id
                 LEFT JOIN attempts a ON a.instance_id = t.id",
                [],
                |r| r.get(0),
            )
            .expect("runner's queries work");
        assert_eq!(n, 0);
        drop(conn);
        assert_eq!(
            std::fs::read(&path).expect("read"),
            before,
            "file unchanged"
        );
        assert!(!dir.path().join("dsari.sqlite3-wal").exists());
    }

    /// Migration 7 keeps the runs still running out of `run_meta_job_status`: a store at
    /// version 6 keeps its rows, its index then holds only the ended ones, and a run that
    /// ends enters it. (That the counts by status read it, covering, is held by the plan
    /// test in `store::metrics`.)
    #[test]
    fn the_status_index_holds_the_ended_runs_only() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            .expect("version table");
        for (done, migration) in MIGRATIONS[..6].iter().enumerate() {
            conn.execute_batch(migration).expect("migration");
            conn.execute("INSERT INTO schema_version VALUES (?1)", [done as i64 + 1])
                .expect("version");
        }
        conn.execute_batch(
            "INSERT INTO run_meta (run_id, job_name, status) VALUES
                 ('r1', 'j', 'ok'), ('r2', 'j', 'running'), ('r3', 'k', 'failed');",
        )
        .expect("rows at version 6");
        migrate(&mut conn).expect("sql").expect("version");
        let indexed = |conn: &Connection| -> Vec<(String, String)> {
            conn.prepare(
                "SELECT job_name, status FROM run_meta INDEXED BY run_meta_job_status
                 WHERE status != 'running' ORDER BY job_name, status",
            )
            .expect("the partial index serves its term")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("scan")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
        };
        let pair = |j: &str, s: &str| (j.to_owned(), s.to_owned());
        assert_eq!(indexed(&conn), [pair("j", "ok"), pair("k", "failed")]);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM run_meta", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 3, "every row is kept");
        conn.execute("UPDATE run_meta SET status = 'ok' WHERE run_id = 'r2'", [])
            .expect("the run ends");
        assert_eq!(
            indexed(&conn),
            [pair("j", "ok"), pair("j", "ok"), pair("k", "failed")]
        );
        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'run_meta_job_status'",
                [],
                |r| r.get(0),
            )
            .expect("index");
        assert!(sql.contains("WHERE status != 'running'"), "{sql}");
    }

    /// Migration 6 widened `runs_job_start_time`: the look-ups by job and start time
    /// (`runs list --job`, the previous runs, the last scheduled time, retention) still
    /// search its (job_name, start_time) prefix, none scans `runs` or sorts.
    #[test]
    fn look_ups_by_job_search_the_wide_index_by_its_prefix() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn).expect("sql").expect("version");
        let columns = "r.run_id, r.job_name, r.schedule_time, r.start_time, r.trigger_type,
            r.trigger_data, r.run_data, r.stop_time, r.exit_code, m.status, m.host";
        let from = "FROM runs r LEFT JOIN run_meta m USING (run_id)";
        for sql in [
            format!(
                "SELECT {columns} {from} WHERE r.job_name = ?1 ORDER BY r.start_time DESC LIMIT 1"
            ),
            format!(
                "SELECT {columns} {from} WHERE r.job_name = ?1 AND r.exit_code = 0
                 ORDER BY r.start_time DESC LIMIT 1"
            ),
            format!(
                "SELECT {columns} {from} WHERE r.job_name = ?1
                 AND (?3 IS NULL OR r.start_time >= ?3) AND (?5 IS NULL OR m.host = ?5)
                 ORDER BY r.start_time DESC LIMIT ?2"
            ),
            "SELECT schedule_time FROM runs WHERE job_name = ?1
                AND trigger_type IN ('schedule', 'catch_up')"
                .to_owned(),
            "SELECT run_id FROM runs WHERE job_name = ?1 AND start_time < ?5
                ORDER BY start_time DESC LIMIT -1 OFFSET ?2"
                .to_owned(),
        ] {
            let mut stmt = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("explain");
            let nulls = vec![rusqlite::types::Null; stmt.parameter_count()];
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(nulls), |r| r.get(3))
                .expect("plan")
                .collect::<Result<_, _>>()
                .expect("plan rows");
            let plan = plan.join("; ");
            assert!(
                plan.contains("SEARCH r USING INDEX runs_job_start_time (job_name=?")
                    || plan.contains("SEARCH runs USING INDEX runs_job_start_time (job_name=?")
                    || plan.contains("USING COVERING INDEX runs_job_start_time (job_name=?"),
                "{sql}: {plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "{sql}: {plan}");
            assert!(
                !plan.contains("SCAN r") && !plan.contains("SCAN runs"),
                "{sql}: {plan}"
            );
        }
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn).expect("sql").expect("version");
        conn.execute(
            "INSERT INTO schema_version VALUES (?1)",
            [CURRENT as i64 + 5],
        )
        .expect("insert");
        assert_eq!(migrate(&mut conn).expect("sql"), Err(CURRENT + 5));
    }
}
