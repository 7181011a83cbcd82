//! Finalizing runs whose recorder died (`kill -9`, a crash, power loss): they move from
//! `runs_running` to `runs` as `lost`, with a `stop_time` and an exit code, never NULLs,
//! since dsari's tools compute with both.

use std::path::PathBuf;
use std::time::SystemTime;

use rusqlite::{OptionalExtension, TransactionBehavior};

use super::model::RunStatus;
use super::owner::Owner;
use super::sqlite::{Store, StoreError, epoch};

/// The `exit_code` of a run finalized as `lost`: no process can exit with it (exit
/// statuses are 0..=255, and dsari writes 128+N for a signal), so a script can tell a
/// lost run from a real failure, and it is not 0, so dsari's tools count it as failed.
pub(crate) const LOST_EXIT_CODE: i32 = -1;

impl Store {
    /// Finalizes as `lost` the runs of `job` (or of every job) left in `runs_running`
    /// by a process that is gone. Returns their ids.
    ///
    /// A lost run gets the last moment it was known alive as its `stop_time` (see
    /// [`Store::last_alive`]) and [`LOST_EXIT_CODE`], never NULLs: dsari's tools compute
    /// with both.
    pub(crate) fn finalize_lost(&mut self, job: Option<&str>) -> Result<Vec<String>, StoreError> {
        // Records a runner handed on at its exit come first (their runs end as they
        // did); a run whose finisher still waits for the store is not lost.
        super::spool::replay_unheld(&self.path);
        let held = super::spool::held_runs(&self.path);
        let running = self.running_owners(job)?;
        let mut lost = Vec::new();
        for (run_id, owner) in running {
            if owner.as_ref().is_some_and(Owner::is_alive) || held.contains(&run_id) {
                continue;
            }
            // A row without an owner was written by dsari itself; only finalize it when
            // asked for every job (the daemon's start), as dsari does.
            if owner.is_none() && job.is_some() {
                continue;
            }
            let result = (|| {
                let tx = self
                    .conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.prepare_cached(
                    "UPDATE attempts SET note = coalesce(note, 'lost: runner died during this attempt')
                     WHERE stop_time IS NULL AND instance_id IN
                        (SELECT id FROM task_instances WHERE run_id = ?1)",
                )?
                .execute([&run_id])?;
                tx.prepare_cached(
                    "UPDATE task_instances SET status = 'failed'
                     WHERE run_id = ?1 AND status IN ('running', 'waiting')",
                )?
                .execute([&run_id])?;
                tx.commit()
            })();
            result.map_err(|e| self.wrap(e))?;
            let stop = self.last_alive(&run_id)?;
            self.finish_run(&run_id, RunStatus::Lost, Some(LOST_EXIT_CODE), Some(stop))?;
            lost.push(run_id);
        }
        Ok(lost)
    }

    /// The last moment a run in `runs_running` is known to have been alive: the latest
    /// of its start, its attempts' starts and ends, and the modification times of the
    /// files in its output directory (output is written as it comes, so the last write is
    /// the last sign of life). Never before its start.
    fn last_alive(&self, run_id: &str) -> Result<SystemTime, StoreError> {
        let result = (|| {
            self.conn
                .prepare_cached(
                    "SELECT r.job_name, r.start_time, m.output_dir,
                        (SELECT max(max(a.start_time, coalesce(a.stop_time, a.start_time)))
                         FROM attempts a JOIN task_instances t ON t.id = a.instance_id
                         WHERE t.run_id = r.run_id)
                     FROM runs_running r LEFT JOIN run_meta m USING (run_id)
                     WHERE r.run_id = ?1",
                )?
                .query_row([run_id], |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<f64>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<f64>>(3)?,
                    ))
                })
                .optional()
        })();
        let Some((job, start, output_dir, attempts)) = result.map_err(|e| self.wrap(e))? else {
            return Ok(SystemTime::now());
        };
        let mut last = start.unwrap_or(0.0).max(attempts.unwrap_or(0.0));
        let dir = match (output_dir, job) {
            (Some(dir), _) => Some(PathBuf::from(dir)),
            // A record whose names are no safe file names names no directory.
            (None, Some(job)) => super::paths::run_dir(&self.data_dir, &job, run_id).ok(),
            (None, None) => None,
        };
        if let Some(entries) = dir.and_then(|d| std::fs::read_dir(d).ok()) {
            for entry in entries.flatten() {
                let modified = entry.metadata().and_then(|m| m.modified());
                if let Ok(modified) = modified {
                    last = last.max(epoch(modified));
                }
            }
        }
        if last <= 0.0 {
            return Ok(SystemTime::now());
        }
        Ok(crate::epoch::time(last))
    }

    fn running_owners(
        &self,
        job: Option<&str>,
    ) -> Result<Vec<(String, Option<Owner>)>, StoreError> {
        let result = (|| -> rusqlite::Result<Vec<(String, Option<Owner>)>> {
            let mut stmt = self.conn.prepare(
                "SELECT r.run_id, m.pid, m.pid_start, m.boot_id
                 FROM runs_running r LEFT JOIN run_meta m ON m.run_id = r.run_id
                 WHERE ?1 IS NULL OR r.job_name = ?1",
            )?;
            let rows = stmt.query_map([job], |r| {
                let pid: Option<u32> = r.get(1)?;
                let owner = match pid {
                    Some(pid) => Some(Owner {
                        pid,
                        start_ticks: r.get(2)?,
                        boot_id: r.get(3)?,
                    }),
                    None => None,
                };
                Ok((r.get::<_, String>(0)?, owner))
            })?;
            rows.collect()
        })();
        result.map_err(|e| self.wrap(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_dsari_left_becomes_lost_with_its_last_output_as_stop_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open_file(&dir.path().join("dsari.sqlite3")).expect("open");
        store
            .conn
            .execute(
                "INSERT INTO runs_running VALUES ('hello', 'r1', 99.0, 100.0, 'schedule', '{}', '{}')",
                [],
            )
            .expect("insert");
        let run_dir = dir.path().join("runs/hello/r1");
        std::fs::create_dir_all(&run_dir).expect("mkdir");
        std::fs::write(run_dir.join("output.txt"), "half\n").expect("write");
        let written = epoch(
            std::fs::metadata(run_dir.join("output.txt"))
                .and_then(|m| m.modified())
                .expect("mtime"),
        );
        assert_eq!(
            store.finalize_lost(Some("hello")).expect("finalize"),
            Vec::<String>::new(),
            "a chain's own finalizing leaves dsari's rows alone"
        );
        assert_eq!(store.finalize_lost(None).expect("finalize"), ["r1"]);
        let run = store.find_run("r1").expect("found");
        assert_eq!(run.status, RunStatus::Lost);
        assert_eq!(run.exit_code, Some(i64::from(LOST_EXIT_CODE)));
        let stop = run.stop_time.expect("a stop time");
        assert!((stop - written).abs() < 0.001, "{stop} vs {written}");
    }
}
