//! Reading the store: lists, single runs with their tasks, and the look-ups the chain and
//! the daemon make (earlier successes, previous runs, the last scheduled time).

use rusqlite::{OptionalExtension, Row, params};

use super::model::{
    AttemptRecord, EventRecordOfTask, InstanceStatus, RunDetail, RunFilter, RunRecord, RunStatus,
    TaskRecord,
};
use super::owner::Owner;
use super::sqlite::{Store, StoreError};

impl Store {
    /// The newest finished run of `job`, the newest with exit 0 and the newest without:
    /// what the daemon's `PREVIOUS_*`, `PREVIOUS_GOOD_*` and `PREVIOUS_BAD_*` describe.
    pub(crate) fn previous_runs(&self, job: &str) -> Result<[Option<RunRecord>; 3], StoreError> {
        let one = |condition: &str| -> rusqlite::Result<Option<RunRecord>> {
            let sql = format!(
                "SELECT {FINISHED_COLUMNS} FROM runs r LEFT JOIN run_meta m USING (run_id)
                 WHERE r.job_name = ?1 {condition} ORDER BY r.start_time DESC LIMIT 1"
            );
            self.conn
                .prepare_cached(&sql)?
                .query_row([job], finished_row)
                .optional()
        };
        let result = (|| {
            Ok([
                one("")?,
                one("AND r.exit_code = 0")?,
                one("AND r.exit_code IS NOT NULL AND r.exit_code != 0")?,
            ])
        })();
        result.map_err(|e| self.wrap(e))
    }

    /// The latest schedule time of `job`'s scheduled runs, for `catch_up`.
    pub(crate) fn last_scheduled(&self, job: &str) -> Result<Option<f64>, StoreError> {
        let sql = "SELECT max(schedule_time) FROM (
                SELECT schedule_time FROM runs WHERE job_name = ?1
                    AND trigger_type IN ('schedule', 'catch_up')
                UNION ALL
                SELECT schedule_time FROM runs_running WHERE job_name = ?1
                    AND trigger_type IN ('schedule', 'catch_up'))";
        self.conn
            .query_row(sql, [job], |r| r.get::<_, Option<f64>>(0))
            .map_err(|e| self.wrap(e))
    }

    /// Whether `task` of `job` ever finished `OK` (in boot `boot_id`, when given).
    pub(crate) fn has_succeeded(
        &self,
        job: &str,
        task: &str,
        boot_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT EXISTS (
                    SELECT 1 FROM task_instances t
                    JOIN run_meta m ON m.run_id = t.run_id
                    JOIN attempts a ON a.instance_id = t.id
                    WHERE t.name = ?2 AND m.job_name = ?1 AND a.result = 'OK'
                      AND (?3 IS NULL OR m.boot_id = ?3))",
                params![job, task, boot_id],
                |r| r.get::<_, bool>(0),
            )
            .map_err(|e| self.wrap(e))
    }

    /// The newest runs (running ones first) of `jobs` (all when empty) whose status is
    /// one of `statuses` (any when empty), that started at or after `since` (epoch
    /// seconds), and of one host only when `host` is given.
    pub(crate) fn list_runs_on(
        &self,
        filter: &RunFilter<'_>,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let RunFilter {
            jobs,
            statuses,
            since,
            host,
            limit,
        } = *filter;
        let words: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        let statuses_json = serde_json::to_string(&words).unwrap_or_else(|_| "[]".to_owned());
        // One query per job, `job_name = ?1`, so that SQLite walks the (job_name,
        // start_time) index from the newest run down and stops at the limit; a filter
        // SQLite cannot tell at planning time whether it holds (a list of jobs, maybe
        // empty) made it walk every job's runs by start time, fetching each row.
        let filter = |by_job: bool| {
            format!(
                "{} AND (?3 IS NULL OR r.start_time >= ?3) AND (?5 IS NULL OR m.host = ?5)",
                if by_job {
                    "r.job_name = ?1"
                } else {
                    "?1 IS NULL"
                }
            )
        };
        let each_job: Vec<Option<&str>> = if jobs.is_empty() {
            vec![None]
        } else {
            // A job named twice is asked for once.
            let names: std::collections::BTreeSet<&str> = jobs.iter().map(|j| j.as_str()).collect();
            names.into_iter().map(Some).collect()
        };
        // A run still in runs_running is running or lost: only its owner can tell.
        let want_unfinished = statuses.is_empty()
            || statuses
                .iter()
                .any(|s| matches!(s, RunStatus::Running | RunStatus::Lost));
        let result = self.snapshot(|| {
            let mut runs = Vec::new();
            for &job in &each_job {
                let filter = filter(job.is_some());
                if want_unfinished {
                    let mut running = self.conn.prepare_cached(&format!(
                        "SELECT {RUNNING_COLUMNS} FROM runs_running r
                         LEFT JOIN run_meta m USING (run_id)
                         WHERE {filter} ORDER BY r.start_time DESC LIMIT ?2"
                    ))?;
                    for run in running.query_map(
                        params![job, limit as i64, since, statuses_json, host],
                        running_row,
                    )? {
                        let run = run?;
                        if statuses.is_empty() || statuses.contains(&run.status) {
                            runs.push(run);
                        }
                    }
                }
                let mut finished = self.conn.prepare_cached(&format!(
                    "SELECT {FINISHED_COLUMNS} FROM runs r LEFT JOIN run_meta m USING (run_id)
                     WHERE {filter} AND (?4 = '[]' OR coalesce(m.status,
                         CASE WHEN r.exit_code = 0 THEN 'ok' ELSE 'failed' END)
                         IN (SELECT value FROM json_each(?4)))
                     ORDER BY r.start_time DESC LIMIT ?2"
                ))?;
                for run in finished.query_map(
                    params![job, limit as i64, since, statuses_json, host],
                    finished_row,
                )? {
                    runs.push(run?);
                }
            }
            // Each list is newest first; their union is sorted so (a run left running by
            // a dead runner sorts by when it started, like any other), and each holds its
            // job's newest, so the newest `limit` of all are among them.
            runs.sort_by(|a, b| {
                let key = |r: &RunRecord| r.start_time.unwrap_or(f64::NEG_INFINITY);
                key(b).total_cmp(&key(a))
            });
            runs.truncate(limit);
            Ok(runs)
        });
        result.map_err(|e| self.wrap(e))
    }

    /// Runs `read` in one read transaction, so that its statements see the store as of one
    /// moment. A run that ends moves from `runs_running` to `runs` in one commit; a reader
    /// whose two statements each saw their own moment found it in both tables (listed
    /// twice, running and finished) when that commit fell between them. Inside a
    /// transaction already, `read` just runs: that transaction is the moment.
    fn snapshot<T>(&self, read: impl FnOnce() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        if !self.conn.is_autocommit() {
            return read();
        }
        let tx = self.conn.unchecked_transaction()?;
        let out = read()?;
        tx.commit()?;
        Ok(out)
    }

    /// The run whose id is `prefix` or starts with it. Any id a store holds can be
    /// named in full (a hand-written or foreign row may hold any text); the empty string
    /// matches only a run whose id is empty, never every run.
    pub(crate) fn find_run(&self, prefix: &str) -> Result<RunRecord, StoreError> {
        // GLOB is case-sensitive and can use the run_id indexes for a prefix; its own
        // wildcards in the id are matched literally.
        let pattern = match glob_literal(prefix) {
            literal if prefix.is_empty() => literal,
            literal => format!("{literal}*"),
        };
        let result = self.snapshot(|| {
            let mut found = Vec::new();
            let mut running = self.conn.prepare_cached(&format!(
                "SELECT {RUNNING_COLUMNS} FROM runs_running r LEFT JOIN run_meta m USING (run_id)
                 WHERE r.run_id GLOB ?1 LIMIT 5"
            ))?;
            for run in running.query_map([&pattern], running_row)? {
                found.push(run?);
            }
            let mut finished = self.conn.prepare_cached(&format!(
                "SELECT {FINISHED_COLUMNS} FROM runs r LEFT JOIN run_meta m USING (run_id)
                 WHERE r.run_id GLOB ?1 LIMIT 5"
            ))?;
            for run in finished.query_map([&pattern], finished_row)? {
                found.push(run?);
            }
            Ok(found)
        });
        let found = result.map_err(|e| self.wrap(e))?;
        super::model::pick_run(found, prefix)
    }

    /// A run with its task instances and attempts.
    pub(crate) fn run_detail(&self, prefix: &str) -> Result<RunDetail, StoreError> {
        let run = self.find_run(prefix)?;
        let result = (|| {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, name, file, instance, status FROM task_instances
                 WHERE run_id = ?1 ORDER BY position, instance",
            )?;
            let instances: Vec<(i64, String, String, i64, String)> = stmt
                .query_map([&run.run_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<Result<_, _>>()?;
            let mut attempts_stmt = self.conn.prepare_cached(
                "SELECT try_num, exit_code, signal, result, start_time, stop_time, note,
                    output_path, result_data, leftovers
                 FROM attempts WHERE instance_id = ?1 ORDER BY id",
            )?;
            let mut events_stmt = self.conn.prepare_cached(
                "SELECT name, kind, event_id, fired_at, source, waited_since, decided_at
                 FROM instance_events WHERE instance_id = ?1 ORDER BY id",
            )?;
            let mut tasks = Vec::with_capacity(instances.len());
            for (id, name, file, instance, status) in instances {
                let attempts = attempts_stmt
                    .query_map([id], attempt_row)?
                    .collect::<Result<Vec<_>, _>>()?;
                let events = events_stmt
                    .query_map([id], |r| {
                        let source: Option<String> = r.get(4)?;
                        let event_id: Option<i64> = r.get(2)?;
                        Ok(EventRecordOfTask {
                            name: r.get(0)?,
                            kind: r.get(1)?,
                            fired: event_id.is_some() || source.is_some(),
                            event_id,
                            fired_at: r.get(3)?,
                            source,
                            waited_since: r.get(5)?,
                            decided_at: r.get(6)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                tasks.push(TaskRecord {
                    instance: format!("{name}#{instance}"),
                    name,
                    file,
                    status: status.parse().unwrap_or(InstanceStatus::Failed),
                    attempts,
                    events,
                });
            }
            Ok(tasks)
        })();
        let tasks = result.map_err(|e| self.wrap(e))?;
        let output_dir = self
            .conn
            .query_row(
                "SELECT output_dir FROM run_meta WHERE run_id = ?1",
                [&run.run_id],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map_err(|e| self.wrap(e))?
            .flatten();
        Ok(RunDetail {
            run,
            tasks,
            output_dir,
        })
    }
}

/// `text` as a GLOB pattern that matches exactly it: `*`, `?` and `[` each in brackets.
fn glob_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '*' | '?' | '[' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            _ => out.push(c),
        }
    }
    out
}

const RUNNING_COLUMNS: &str = "r.run_id, r.job_name, r.schedule_time, r.start_time, r.trigger_type,
    r.trigger_data, r.run_data, m.pid, m.pid_start, m.boot_id, m.host";

const FINISHED_COLUMNS: &str =
    "r.run_id, r.job_name, r.schedule_time, r.start_time, r.trigger_type,
    r.trigger_data, r.run_data, r.stop_time, r.exit_code, m.status, m.host";

fn json_column(row: &Row<'_>, index: usize) -> rusqlite::Result<serde_json::Value> {
    let text: Option<String> = row.get(index)?;
    Ok(text
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| serde_json::json!({})))
}

fn running_row(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
    let pid: Option<u32> = row.get(7)?;
    let alive = match pid {
        Some(pid) => Owner {
            pid,
            start_ticks: row.get(8)?,
            boot_id: row.get(9)?,
        }
        .is_alive(),
        // Written by dsari itself: nothing to check it against.
        None => true,
    };
    Ok(RunRecord {
        run_id: row.get(0)?,
        job_name: row.get(1)?,
        status: if alive {
            RunStatus::Running
        } else {
            RunStatus::Lost
        },
        schedule_time: row.get(2)?,
        start_time: row.get(3)?,
        stop_time: None,
        exit_code: None,
        trigger_type: row.get(4)?,
        trigger_data: json_column(row, 5)?,
        run_data: json_column(row, 6)?,
        host: row.get(10)?,
    })
}

fn finished_row(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
    let exit_code: Option<i64> = row.get(8)?;
    let status: Option<String> = row.get(9)?;
    // Runs written by dsari have no status of ours: judge them by the exit code.
    let status = status
        .and_then(|s| s.parse().ok())
        .unwrap_or(if exit_code == Some(0) {
            RunStatus::Ok
        } else {
            RunStatus::Failed
        });
    Ok(RunRecord {
        run_id: row.get(0)?,
        job_name: row.get(1)?,
        status,
        schedule_time: row.get(2)?,
        start_time: row.get(3)?,
        stop_time: row.get(7)?,
        exit_code,
        trigger_type: row.get(4)?,
        trigger_data: json_column(row, 5)?,
        run_data: json_column(row, 6)?,
        host: row.get(10)?,
    })
}

fn attempt_row(row: &Row<'_>) -> rusqlite::Result<AttemptRecord> {
    let result_data: Option<String> = row.get(8)?;
    Ok(AttemptRecord {
        try_num: row.get(0)?,
        exit_code: row.get(1)?,
        signal: row.get(2)?,
        result: row.get(3)?,
        start_time: row.get(4)?,
        stop_time: row.get(5)?,
        note: row.get(6)?,
        output: row.get(7)?,
        result_data: result_data.and_then(|t| serde_json::from_str(&t).ok()),
        leftovers: row
            .get::<_, Option<String>>(9)?
            .and_then(|t| serde_json::from_str(&t).ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_stored_run_id_can_be_named_in_full_and_wildcards_are_literal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_file(&dir.path().join("dsari.sqlite3")).expect("open");
        for id in ["..", "a/b", "x*", "", "abc-1"] {
            store
                .conn
                .execute(
                    "INSERT INTO runs VALUES ('j', ?1, 1.0, 2.0, 3.0, 0, 'schedule', '{}', '{}')",
                    [id],
                )
                .expect("insert");
        }
        for id in ["..", "a/b", "x*", ""] {
            assert_eq!(store.find_run(id).expect(id).run_id, id);
        }
        // `x` is a prefix of `x*` only; `*` is not a wildcard that matches `abc-1`.
        assert_eq!(store.find_run("x").expect("x").run_id, "x*");
        assert!(matches!(
            store.find_run("*"),
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(store.find_run("abc").expect("abc").run_id, "abc-1");
    }

    /// A run that ends while it is being listed or looked up is seen once: running or
    /// ended, never both. The end is committed, by a second connection as the daemon's,
    /// at each step of the reading statements in turn (SQLite's progress handler runs
    /// `end_at` at every virtual-machine step), so every place between the reads is tried.
    #[test]
    fn a_run_that_ends_while_it_is_read_is_seen_once() {
        use super::super::sqlite::NewRun;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("runner.sqlite3");
        let mut store = Store::open_file(&path).expect("open");
        let owner = Owner::current();
        let data = serde_json::json!({});
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        let daemon = Arc::new(Mutex::new(Store::open_file(&path).expect("open again")));
        type Read = fn(&Store) -> usize;
        let reads: [(&str, Read); 2] = [
            ("runs list", |store| {
                let listed = store
                    .list_runs_on(&RunFilter::newest(&[], 100))
                    .expect("list");
                listed.iter().filter(|r| r.run_id == "run-1").count()
            }),
            ("runs show by prefix", |store| {
                match store.find_run("run-") {
                    Ok(run) => usize::from(run.run_id == "run-1"),
                    Err(e) => panic!("{e}"),
                }
            }),
        ];
        for (what, read) in reads {
            let mut step = 1;
            loop {
                store
                    .conn
                    .execute_batch(
                        "DELETE FROM runs; DELETE FROM runs_running; DELETE FROM run_meta;",
                    )
                    .expect("empty");
                store
                    .begin_run(&NewRun {
                        run_id: "run-1",
                        job: "j",
                        schedule_time: at,
                        start_time: at,
                        trigger_type: "schedule",
                        trigger_data: &data,
                        session: "s",
                        output_dir: dir.path(),
                        owner: &owner,
                        tasks: &[],
                        host: "h",
                    })
                    .expect("begin");
                let steps = Arc::new(AtomicUsize::new(0));
                let (end_at, counted, daemon) = (step, steps.clone(), daemon.clone());
                store.conn.progress_handler(
                    1,
                    Some(move || {
                        if counted.fetch_add(1, Ordering::SeqCst) + 1 == end_at {
                            let mut daemon = daemon.lock().expect("lock");
                            daemon
                                .finish_run("run-1", RunStatus::Ok, Some(0), Some(at))
                                .expect("end");
                        }
                        false
                    }),
                );
                let seen = read(&store);
                store.conn.progress_handler(0, None::<fn() -> bool>);
                assert_eq!(seen, 1, "{what}: the run ended at step {step} of the reads");
                if steps.load(Ordering::SeqCst) < step {
                    break;
                }
                step += 1;
                assert!(step < 100_000, "{what}: the reads never end");
            }
        }
    }

    #[test]
    fn runs_started_and_ended_together_are_each_recorded_and_a_refused_one_alone_fails() {
        use super::super::sqlite::{NewRun, RunEnd};
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open_file(&dir.path().join("runner.sqlite3")).expect("open");
        let owner = Owner::current();
        let data = serde_json::json!({});
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        let new = |run_id| NewRun {
            run_id,
            job: "j",
            schedule_time: at,
            start_time: at,
            trigger_type: "schedule",
            trigger_data: &data,
            session: "s",
            output_dir: dir.path(),
            owner: &owner,
            tasks: &[],
            host: "h",
        };
        let runs = [new("a"), new("b"), new("a"), new("c")];
        let begun = store.begin_runs(&runs);
        assert!(begun[0].is_ok() && begun[1].is_ok() && begun[3].is_ok());
        assert!(begun[2].is_err(), "a run id recorded twice is refused");
        assert_eq!(store.find_run("c").expect("c").status, RunStatus::Running);
        let end = |run_id, status| RunEnd {
            run_id,
            status,
            exit_code: Some(i32::from(status != RunStatus::Ok)),
            stop_time: Some(at + std::time::Duration::from_secs(1)),
            event: None,
        };
        let ended = store.finish_runs(&[
            end("a", RunStatus::Ok),
            end("b", RunStatus::Failed),
            end("c", RunStatus::Ok),
        ]);
        assert!(ended.iter().all(Result::is_ok));
        for (id, status) in [
            ("a", RunStatus::Ok),
            ("b", RunStatus::Failed),
            ("c", RunStatus::Ok),
        ] {
            let run = store.find_run(id).expect(id);
            assert_eq!(run.status, status, "{id}");
            assert_eq!(run.stop_time, Some(1001.0), "{id}");
        }
        let running: i64 = store
            .conn
            .query_row("SELECT count(*) FROM runs_running", [], |r| r.get(0))
            .expect("count");
        assert_eq!(running, 0, "every ended run left runs_running");
    }

    #[test]
    fn a_run_end_and_its_event_are_written_together_or_not_at_all() {
        use super::super::events::NewEvent;
        use super::super::sqlite::{NewRun, RunEnd};
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open_file(&dir.path().join("runner.sqlite3")).expect("open");
        let owner = Owner::current();
        let empty = serde_json::json!({});
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        let new = |run_id| NewRun {
            run_id,
            job: run_id,
            schedule_time: at,
            start_time: at,
            trigger_type: "schedule",
            trigger_data: &empty,
            session: "s",
            output_dir: dir.path(),
            owner: &owner,
            tasks: &[],
            host: "h",
        };
        assert!(
            store
                .begin_runs(&[new("good"), new("bad"), new("quiet")])
                .iter()
                .all(Result::is_ok)
        );
        // The event of "bad" cannot be written, as on a store that refuses it.
        store
            .conn
            .execute_batch(
                "CREATE TEMP TRIGGER refuse BEFORE INSERT ON events WHEN NEW.name = 'bad'
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .expect("trigger");
        let data = serde_json::json!({"answer": 42});
        let event = |name| NewEvent {
            session: "s",
            name,
            data: &data,
            source: "job",
        };
        let end = |run_id, event| RunEnd {
            run_id,
            status: RunStatus::Ok,
            exit_code: Some(0),
            stop_time: Some(at + std::time::Duration::from_secs(1)),
            event,
        };
        let ended = store.finish_runs(&[
            end("good", Some(event("good"))),
            end("bad", Some(event("bad"))),
            end("quiet", None),
        ]);
        assert!(ended[0].is_ok() && ended[2].is_ok(), "{ended:?}");
        assert!(
            ended[1].is_err(),
            "the end whose event was refused is refused"
        );
        assert_eq!(store.find_run("good").expect("good").status, RunStatus::Ok);
        assert_eq!(
            store.find_run("quiet").expect("quiet").status,
            RunStatus::Ok
        );
        assert_eq!(
            store.find_run("bad").expect("bad").status,
            RunStatus::Running,
            "a refused end stays unwritten, as its event"
        );
        let events = store.list_events(Some("s")).expect("events");
        let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["good"]);
        assert_eq!(events[0].data, data);
        assert_eq!(events[0].source.as_deref(), Some("job"));
        assert!(
            dir.path().join(super::super::events::NOTIFY_FILE).exists(),
            "waiters were told"
        );
    }

    #[test]
    fn runs_of_several_jobs_are_the_newest_of_all_once_each() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_file(&dir.path().join("runner.sqlite3")).expect("open");
        // a: runs at 1, 3, 5; b: at 2, 4, 6; c: at 7.
        for (i, job) in ["a", "b", "a", "b", "a", "b", "c"].iter().enumerate() {
            store
                .conn
                .execute(
                    "INSERT INTO runs VALUES (?1, ?2, ?3, ?3, ?3, 0, 'manual', '{}', '{}')",
                    params![job, format!("r{}", i + 1), (i + 1) as f64],
                )
                .expect("insert");
        }
        let ids = |jobs: &[&str], limit: usize| -> Vec<String> {
            let jobs: Vec<String> = jobs.iter().map(|j| j.to_string()).collect();
            store
                .list_runs_on(&RunFilter::newest(&jobs, limit))
                .expect("list")
                .into_iter()
                .map(|r| r.run_id)
                .collect()
        };
        assert_eq!(ids(&["a", "b"], 3), ["r6", "r5", "r4"]);
        assert_eq!(ids(&["a", "a"], 10), ["r5", "r3", "r1"]);
        assert_eq!(ids(&[], 2), ["r7", "r6"]);
        assert_eq!(ids(&["c", "a"], 2), ["r7", "r5"]);
    }
}
