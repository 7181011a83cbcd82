//! The aggregations behind `runner metrics` and the report's index: counts, sums and
//! quantiles computed by SQLite, so that a store of many runs is never loaded whole.
//!
//! Counts and sums are SQL aggregates. A run quantile is exact and computed as dsari's
//! exporter computes it (linear interpolation between the two closest ranks of the sorted
//! values): SQLite sorts the values, and they stream past once, one row in memory at a
//! time, while the ranks a quantile needs are picked (a sort is four times faster here
//! than SQLite's window functions). A task's attempts are many more (one or more per task
//! per run), so their quantiles come from a bounded uniform sample of
//! [`TASK_SAMPLE`] attempts per task, drawn as they stream past; their counts and sums
//! are exact. The rendering of the numbers (Prometheus text, HTML) is not here.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

use super::owner::Owner;
use super::quantile::{RankPicker, quantile_of_sorted};
use super::sqlite::{Store, StoreError};

/// A summary of observations: how many, their sum, and the asked-for quantiles.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Summary {
    /// The number of observations.
    pub(crate) count: u64,
    /// Their sum.
    pub(crate) sum: f64,
    /// `(quantile, value)`, in the order asked; empty when there is no observation.
    pub(crate) quantiles: Vec<(f64, f64)>,
}

/// The last finished run of a job (the one that stopped last, as in dsari).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LastRun {
    /// Its exit code.
    pub(crate) exit_code: Option<i64>,
    /// When it was due.
    pub(crate) schedule_time: Option<f64>,
    /// When it started.
    pub(crate) start_time: Option<f64>,
    /// When it stopped.
    pub(crate) stop_time: Option<f64>,
}

/// What the metrics say of one job.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobMetrics {
    /// Start minus schedule time of its finished runs.
    pub(crate) latency: Summary,
    /// Stop minus start time of its finished runs.
    pub(crate) duration: Summary,
    /// Finished runs by status word (`ok`, `failed`, ..., `lost`).
    pub(crate) runs_by_result: BTreeMap<String, u64>,
    /// Its last finished run.
    pub(crate) last_run: Option<LastRun>,
    /// Runs in progress now.
    pub(crate) running: u64,
    /// Per task name.
    pub(crate) tasks: BTreeMap<String, TaskMetrics>,
}

/// What the metrics say of one task of a job.
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskMetrics {
    /// Durations of its finished attempts.
    pub(crate) duration: Summary,
    /// Finished attempts by result (`OK`, `RETRY`, `HALT`, `EXIT`).
    pub(crate) attempts_by_result: BTreeMap<String, u64>,
}

/// The task counts a metrics server keeps between scrapes (see
/// [`Store::metrics_since`]).
#[derive(Debug)]
pub(crate) struct TaskTally {
    /// Every finished attempt with an id up to this one is counted.
    floor: i64,
    /// Attempts above the floor that are counted (finished while an older one ran).
    counted: std::collections::BTreeSet<i64>,
    /// Per job and task.
    tasks: BTreeMap<String, BTreeMap<String, TaskAcc>>,
    rng: StdRng,
}

#[derive(Debug, Default)]
struct TaskAcc {
    metrics: TaskMetrics,
    /// A uniform sample of the durations (Vitter's algorithm R).
    sample: Vec<f64>,
}

impl Default for TaskTally {
    fn default() -> TaskTally {
        TaskTally {
            floor: 0,
            counted: Default::default(),
            tasks: BTreeMap::new(),
            // A fixed seed: the same store gives the same numbers.
            rng: StdRng::seed_from_u64(0x5eed),
        }
    }
}

impl TaskTally {
    fn add(&mut self, job: &str, task: &str, result: &str, seconds: f64) {
        if !self.tasks.contains_key(job) {
            self.tasks.insert(job.to_owned(), BTreeMap::new());
        }
        let tasks = self.tasks.get_mut(job).expect("just inserted");
        if !tasks.contains_key(task) {
            tasks.insert(task.to_owned(), TaskAcc::default());
        }
        let acc = tasks.get_mut(task).expect("just inserted");
        match acc.metrics.attempts_by_result.get_mut(result) {
            Some(n) => *n += 1,
            None => {
                acc.metrics.attempts_by_result.insert(result.to_owned(), 1);
            }
        }
        acc.metrics.duration.count += 1;
        acc.metrics.duration.sum += seconds;
        // Every attempt seen so far has the same chance to be in the sample.
        if acc.sample.len() < TASK_SAMPLE {
            acc.sample.push(seconds);
        } else {
            let slot = self.rng.gen_range(0..acc.metrics.duration.count as usize);
            if slot < TASK_SAMPLE {
                acc.sample[slot] = seconds;
            }
        }
    }
}

/// Every job's metrics, by job name.
pub(crate) type Metrics = BTreeMap<String, JobMetrics>;

/// Finished attempts of every task, with their job. The join order is forced: a scan of
/// `run_meta`, then each run's instances through the covering (run_id, name, instance)
/// index, then their attempts, reads each page about once; starting from `attempts`
/// would look rows up by random run ids and read pages many times over.
const FINISHED_ATTEMPTS: &str = "
    SELECT a.id, m.job_name, t.name, a.result, a.stop_time - a.start_time
    FROM run_meta m
    CROSS JOIN task_instances t ON t.run_id = m.run_id
    CROSS JOIN attempts a ON a.instance_id = t.id
    WHERE a.result IS NOT NULL AND a.stop_time IS NOT NULL AND ?1 >= 0";

/// The attempts after `?1` (a range of `attempts`' rowids), each with its job: a few
/// rows after the first scrape, so the look-ups by run id cost nothing much.
const FINISHED_ATTEMPTS_SINCE: &str = "
    SELECT a.id, m.job_name, t.name, a.result, a.stop_time - a.start_time
    FROM attempts a
    CROSS JOIN task_instances t ON t.id = a.instance_id
    CROSS JOIN run_meta m ON m.run_id = t.run_id
    WHERE a.id > ?1 AND a.result IS NOT NULL AND a.stop_time IS NOT NULL";

/// The reader's page cache, in KiB (SQLite's negative `cache_size`).
const READ_CACHE_KIB: i64 = -16 * 1024;

/// How many attempt durations per task the quantiles are computed from.
pub(crate) const TASK_SAMPLE: usize = 1024;

impl Store {
    /// Gives a read-only connection a page cache that holds the `runs` table of a large
    /// store: the metrics scan it more than once, and re-reading it from the file costs
    /// a system call a page.
    pub(crate) fn cache_for_scans(&self) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "cache_size", READ_CACHE_KIB)
            .map_err(|e| self.wrap(e))
    }

    /// Whether the store has table `name` (a dsari store lacks runner's own).
    pub(crate) fn has_table(&self, name: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
                [name],
                |r| r.get(0),
            )
            .map_err(|e| self.wrap(e))
    }

    /// Every job's metrics, with `quantiles` (each in 0..=1) in the summaries, read in
    /// one transaction so that the numbers agree with each other.
    #[cfg(test)]
    pub(crate) fn metrics(&self, quantiles: &[f64]) -> Result<Metrics, StoreError> {
        self.metrics_since(quantiles, &mut TaskTally::default())
    }

    /// [`Store::metrics`] for a server that asks again and again: the task counts are
    /// kept in `tally` and only attempts finished since the last call are read, so a
    /// scrape costs little more than the runs' part. Its task counters never go down,
    /// even when old runs are pruned, as Prometheus expects of a counter.
    pub(crate) fn metrics_since(
        &self,
        quantiles: &[f64],
        tally: &mut TaskTally,
    ) -> Result<Metrics, StoreError> {
        let ours = self.has_table("run_meta")?;
        let tasks = ours && self.has_table("task_instances")? && self.has_table("attempts")?;
        let result = (|| {
            // A deferred transaction: one snapshot for every query below.
            self.conn.execute_batch("BEGIN")?;
            let mut jobs = Metrics::new();
            self.run_metrics(ours, quantiles, &mut jobs)?;
            self.running_metrics(ours, &mut jobs)?;
            if tasks {
                self.task_metrics(quantiles, tally, &mut jobs)?;
            }
            Ok(jobs)
        })();
        // Only a read happened: ending it cannot lose anything.
        let _ = self.conn.execute_batch("COMMIT");
        result.map_err(|e| self.wrap(e))
    }

    fn run_metrics(
        &self,
        ours: bool,
        quantiles: &[f64],
        jobs: &mut Metrics,
    ) -> rusqlite::Result<()> {
        for (job, counts) in self.count_runs(ours)? {
            jobs.entry(job).or_default().runs_by_result = counts;
        }
        // SQLite takes the bare columns from the row holding the max().
        let mut stmt = self.conn.prepare(
            "SELECT job_name, max(stop_time), exit_code, schedule_time, start_time
             FROM runs WHERE stop_time IS NOT NULL GROUP BY job_name",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let job: String = row.get(0)?;
            jobs.entry(job).or_default().last_run = Some(LastRun {
                stop_time: row.get(1)?,
                exit_code: row.get(2)?,
                schedule_time: row.get(3)?,
                start_time: row.get(4)?,
            });
        }
        // `+job_name` keeps SQLite off the (job_name, start_time) index: walking it
        // would fetch every row by rowid, where a scan and a sort are much cheaper.
        let latency = "SELECT +job_name AS key, start_time - schedule_time AS x FROM runs
             WHERE start_time IS NOT NULL AND schedule_time IS NOT NULL";
        for (job, summary) in self.summaries(latency, quantiles)? {
            jobs.entry(job).or_default().latency = summary;
        }
        let duration = "SELECT +job_name AS key, stop_time - start_time AS x FROM runs
             WHERE start_time IS NOT NULL AND stop_time IS NOT NULL";
        for (job, summary) in self.summaries(duration, quantiles)? {
            jobs.entry(job).or_default().duration = summary;
        }
        Ok(())
    }

    /// Finished runs of every job by status word (`ok`, `failed`, ...), for the
    /// report's success rates.
    pub(crate) fn runs_by_result(
        &self,
    ) -> Result<BTreeMap<String, BTreeMap<String, u64>>, StoreError> {
        let ours = self.has_table("run_meta")?;
        self.count_runs(ours).map_err(|e| self.wrap(e))
    }

    /// Finished runs by job and status, from two scans and no per-run look-up (joining
    /// `runs` to `run_meta` by random run ids costs several times more on a large
    /// store). Our runs' statuses come from `run_meta`; runs dsari wrote have none, and
    /// are judged by exit code: they are what `runs` counts beyond `run_meta`'s finished
    /// runs (exit 0 for `ok`, anything else for the rest).
    fn count_runs(&self, ours: bool) -> rusqlite::Result<BTreeMap<String, BTreeMap<String, u64>>> {
        let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        // Per job: runs with exit 0, and the others, in `runs` and in `run_meta`.
        let mut by_exit: BTreeMap<String, [i64; 4]> = BTreeMap::new();
        let mut stmt = self.conn.prepare(
            "SELECT +job_name, coalesce(exit_code = 0, 0), count(*) FROM runs GROUP BY 1, 2",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let job: String = row.get(0)?;
            let ok: bool = row.get(1)?;
            let n: i64 = row.get(2)?;
            by_exit.entry(job).or_default()[usize::from(!ok)] += n;
        }
        if ours {
            let mut stmt = self.conn.prepare(
                "SELECT job_name, status, count(*) FROM run_meta
                 WHERE status != 'running' GROUP BY 1, 2",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let job: String = row.get(0)?;
                let status: String = row.get(1)?;
                let n: i64 = row.get(2)?;
                let slot = if status == "ok" { 2 } else { 3 };
                by_exit.entry(job.clone()).or_default()[slot] += n;
                *out.entry(job).or_default().entry(status).or_default() += n as u64;
            }
        }
        for (job, [ok, other, meta_ok, meta_other]) in by_exit {
            let counts = out.entry(job).or_default();
            let dsari_ok = (ok - meta_ok).max(0) as u64;
            let dsari_other = (other - meta_other).max(0) as u64;
            if dsari_ok > 0 {
                *counts.entry("ok".to_owned()).or_default() += dsari_ok;
            }
            if dsari_other > 0 {
                *counts.entry("failed".to_owned()).or_default() += dsari_other;
            }
        }
        out.retain(|_, counts| !counts.is_empty());
        Ok(out)
    }

    /// The names of every job with a recorded or running run.
    pub(crate) fn job_names(&self) -> Result<Vec<String>, StoreError> {
        let result = (|| {
            let mut stmt = self.conn.prepare(
                "SELECT job_name FROM runs UNION SELECT job_name FROM runs_running ORDER BY 1",
            )?;
            let names = stmt
                .query_map([], |r| r.get::<_, Option<String>>(0))?
                .filter_map(|r| r.transpose())
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(names)
        })();
        result.map_err(|e| self.wrap(e))
    }

    fn running_metrics(&self, ours: bool, jobs: &mut Metrics) -> rusqlite::Result<()> {
        let sql = if ours {
            "SELECT r.job_name, m.pid, m.pid_start, m.boot_id
             FROM runs_running r LEFT JOIN run_meta m USING (run_id)"
        } else {
            "SELECT job_name, NULL, NULL, NULL FROM runs_running"
        };
        let mut stmt = self.conn.prepare(sql)?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let job: String = row.get(0)?;
            let pid: Option<u32> = row.get(1)?;
            // As `runs list` judges it: a run whose recorder is gone is lost.
            let alive = match pid {
                Some(pid) => Owner {
                    pid,
                    start_ticks: row.get(2)?,
                    boot_id: row.get(3)?,
                }
                .is_alive(),
                None => true,
            };
            let entry = jobs.entry(job).or_default();
            if alive {
                entry.running += 1;
            } else {
                *entry.runs_by_result.entry("lost".to_owned()).or_default() += 1;
            }
        }
        Ok(())
    }

    /// Brings `tally` up to date with the attempts finished since it last looked, and
    /// copies it into `jobs`.
    fn task_metrics(
        &self,
        quantiles: &[f64],
        tally: &mut TaskTally,
        jobs: &mut Metrics,
    ) -> rusqlite::Result<()> {
        // Attempts below the floor are all counted; above it, `counted` says which.
        let first_unfinished: Option<i64> = self.conn.query_row(
            "SELECT min(id) FROM attempts WHERE id > ?1 AND result IS NULL",
            [tally.floor],
            |r| r.get(0),
        )?;
        let (sql, params): (&str, i64) = if tally.floor == 0 && tally.counted.is_empty() {
            (FINISHED_ATTEMPTS, 0)
        } else {
            (FINISHED_ATTEMPTS_SINCE, tally.floor)
        };
        let mut stmt = self.conn.prepare(sql)?;
        let mut rows = stmt.query([params])?;
        let mut newest = tally.floor;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            if id <= tally.floor || tally.counted.contains(&id) {
                continue;
            }
            newest = newest.max(id);
            if first_unfinished.is_some_and(|u| id > u) {
                tally.counted.insert(id);
            }
            let job = row.get_ref(1)?.as_str()?;
            let task = row.get_ref(2)?.as_str()?;
            let result = row.get_ref(3)?.as_str()?;
            let seconds: f64 = row.get::<_, Option<f64>>(4)?.unwrap_or(0.0);
            tally.add(job, task, result, seconds);
        }
        // Everything up to the first attempt still running is counted now.
        tally.floor = match first_unfinished {
            Some(u) => (u - 1).max(tally.floor),
            None => newest,
        };
        let floor = tally.floor;
        tally.counted.retain(|&id| id > floor);
        for (job, tasks) in &tally.tasks {
            let entry = jobs.entry(job.clone()).or_default();
            for (task, acc) in tasks {
                let mut sample = acc.sample.clone();
                sample.sort_by(f64::total_cmp);
                let mut metrics = acc.metrics.clone();
                metrics.duration.quantiles = quantiles
                    .iter()
                    .map(|&q| (q, quantile_of_sorted(&sample, q)))
                    .collect();
                entry.tasks.insert(task.clone(), metrics);
            }
        }
        Ok(())
    }

    /// Count, sum and quantiles of `x` per `key` of `values` (a SELECT of `key, x`).
    fn summaries(
        &self,
        values: &str,
        quantiles: &[f64],
    ) -> rusqlite::Result<BTreeMap<String, Summary>> {
        let mut out: BTreeMap<String, Summary> = BTreeMap::new();
        let mut stmt = self.conn.prepare(&format!(
            "SELECT key, count(*), total(x) FROM ({values}) GROUP BY key"
        ))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let key: String = row.get(0)?;
            let count: i64 = row.get(1)?;
            out.insert(
                key,
                Summary {
                    count: count as u64,
                    sum: row.get(2)?,
                    quantiles: Vec::new(),
                },
            );
        }
        if quantiles.is_empty() {
            return Ok(out);
        }
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT key, x FROM ({values}) ORDER BY key, x"))?;
        let mut rows = stmt.query([])?;
        let mut picker: Option<(String, RankPicker)> = None;
        while let Some(row) = rows.next()? {
            let key = row.get_ref(0)?.as_str()?;
            let x: f64 = row.get(1)?;
            if picker.as_ref().is_none_or(|(k, _)| k != key) {
                if let Some((done, p)) = picker.take() {
                    if let Some(s) = out.get_mut(&done) {
                        s.quantiles = p.finish();
                    }
                }
                let n = out.get(key).map_or(0, |s| s.count);
                picker = Some((key.to_owned(), RankPicker::new(quantiles, n)));
            }
            if let Some((_, p)) = picker.as_mut() {
                p.push(x);
            }
        }
        if let Some((done, p)) = picker {
            if let Some(s) = out.get_mut(&done) {
                s.quantiles = p.finish();
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(durations: &[f64]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_file(&dir.path().join("runner.sqlite3")).expect("store");
        for (i, d) in durations.iter().enumerate() {
            store
                .conn
                .execute(
                    "INSERT INTO runs (job_name, run_id, schedule_time, start_time, stop_time,
                        exit_code, trigger_type, trigger_data, run_data)
                     VALUES ('j', ?1, 100.0, 101.0, 101.0 + ?2, ?3, 'manual', '{}', '{}')",
                    rusqlite::params![format!("r{i}"), d, (i % 2) as i64],
                )
                .expect("insert");
        }
        (dir, store)
    }

    #[test]
    fn quantiles_interpolate_between_ranks_as_dsari_does() {
        // dsari: k = (n-1)q; 4 values 1, 2, 3, 10: q 0.5 -> 2.5, q 0.9 -> 3 + 0.7*7.
        let (_dir, store) = store_with(&[3.0, 1.0, 10.0, 2.0]);
        let m = store.metrics(&[0.0, 0.5, 0.9, 1.0]).expect("metrics");
        let job = &m["j"];
        assert_eq!(job.duration.count, 4);
        assert_eq!(job.duration.sum, 16.0);
        let q: Vec<f64> = job.duration.quantiles.iter().map(|p| p.1).collect();
        assert_eq!(q.len(), 4);
        assert!((q[0] - 1.0).abs() < 1e-9, "{q:?}");
        assert!((q[1] - 2.5).abs() < 1e-9, "{q:?}");
        assert!((q[2] - 7.9).abs() < 1e-9, "{q:?}");
        assert!((q[3] - 10.0).abs() < 1e-9, "{q:?}");
        assert_eq!(job.latency.quantiles[1].1, 1.0);
        assert_eq!(job.runs_by_result.get("ok"), Some(&2));
        assert_eq!(job.runs_by_result.get("failed"), Some(&2));
    }

    #[test]
    fn runs_of_ours_and_of_dsari_are_counted_by_status() {
        // r0 ok, r1 failed, r2 ok, r3 failed by exit code; r1 is ours and halted.
        let (_dir, store) = store_with(&[1.0, 2.0, 3.0, 4.0]);
        store
            .conn
            .execute(
                "INSERT INTO run_meta (run_id, job_name, status) VALUES ('r1', 'j', 'halted')",
                [],
            )
            .expect("insert");
        let counts = store.runs_by_result().expect("counts");
        let j: Vec<(&str, u64)> = counts["j"].iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(j, [("failed", 1), ("halted", 1), ("ok", 2)]);
    }

    #[test]
    fn a_tally_counts_each_attempt_once_across_calls() {
        let (_dir, store) = store_with(&[]);
        let attempt = |id: i64, result: Option<&str>| {
            store
                .conn
                .execute(
                    "INSERT INTO attempts (id, instance_id, try_num, start_time, stop_time, result)
                     VALUES (?1, 1, 1, 10.0, CASE WHEN ?2 IS NULL THEN NULL ELSE 12.0 END, ?2)",
                    rusqlite::params![id, result],
                )
                .expect("insert attempt");
        };
        store
            .conn
            .execute_batch(
                "INSERT INTO run_meta (run_id, job_name, status) VALUES ('r', 'j', 'running');
                 INSERT INTO task_instances (id, run_id, name, file, instance, position, status)
                    VALUES (1, 'r', 't', '10-t', 0, 0, 'running');",
            )
            .expect("insert run");
        attempt(1, Some("RETRY"));
        attempt(2, None);
        attempt(3, Some("OK"));
        let mut tally = TaskTally::default();
        let count = |m: &Metrics| m["j"].tasks["t"].duration.count;
        assert_eq!(
            count(&store.metrics_since(&[0.5], &mut tally).expect("m")),
            2
        );
        assert_eq!(
            count(&store.metrics_since(&[0.5], &mut tally).expect("m")),
            2
        );
        store
            .conn
            .execute(
                "UPDATE attempts SET result = 'OK', stop_time = 13.0 WHERE id = 2",
                [],
            )
            .expect("finish");
        attempt(4, Some("HALT"));
        let m = store.metrics_since(&[0.5], &mut tally).expect("m");
        assert_eq!(count(&m), 4);
        assert_eq!(m["j"].tasks["t"].attempts_by_result.get("OK"), Some(&2));
        assert_eq!(count(&store.metrics(&[0.5]).expect("fresh")), 4);
    }

    #[test]
    fn one_value_is_every_quantile() {
        let (_dir, store) = store_with(&[5.0]);
        let m = store.metrics(&[0.01, 0.99]).expect("metrics");
        assert_eq!(m["j"].duration.quantiles, vec![(0.01, 5.0), (0.99, 5.0)]);
    }

    #[test]
    fn an_empty_store_has_no_jobs() {
        let (_dir, store) = store_with(&[]);
        assert!(store.metrics(&[0.5]).expect("metrics").is_empty());
    }
}
