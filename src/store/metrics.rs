//! The aggregations behind `runner metrics` and the report's index: counts, sums and
//! quantiles read from SQLite's indexes in order, so that a store of many runs is never
//! loaded whole.
//!
//! Every run is read once, from the covering (job_name, start_time, ...) index in job
//! order (migration 6), with one job's latencies and durations in memory at a time (16
//! bytes a run), sorted here: a run quantile is exact and computed as dsari's exporter
//! computes it (linear interpolation between the two closest ranks of the sorted
//! values), and the sums are added as SQLite's `total` adds them, so that the numbers
//! are those the indexes of one value each (migration 4, dropped because every run paid
//! for them) gave. Every scan over all runs reads an index in its order, with no sort
//! and no look-up per run. A task's attempts are many more (one or more per task per
//! run), so their quantiles come from a bounded uniform sample of [`TASK_SAMPLE`]
//! attempts per task, drawn as they stream past; their counts and sums are exact. The
//! rendering of the numbers (Prometheus text, HTML) is not here.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::types::{FromSql, FromSqlError, Value, ValueRef};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

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
        acc.observe(&mut self.rng, result, seconds);
    }
}

impl TaskAcc {
    fn observe(&mut self, rng: &mut StdRng, result: &str, seconds: f64) {
        match self.metrics.attempts_by_result.get_mut(result) {
            Some(n) => *n += 1,
            None => {
                self.metrics.attempts_by_result.insert(result.to_owned(), 1);
            }
        }
        self.metrics.duration.count += 1;
        self.metrics.duration.sum += seconds;
        // Every attempt seen so far has the same chance to be in the sample.
        if self.sample.len() < TASK_SAMPLE {
            self.sample.push(seconds);
        } else {
            let slot = rng.gen_range(0..self.metrics.duration.count as usize);
            if slot < TASK_SAMPLE {
                self.sample[slot] = seconds;
            }
        }
    }
}

/// Each task instance's (job, task) pair, by instance id. Instance ids are a table's
/// rowids, handed out in order: a dense table indexed by id is a quarter of the size of
/// a hash map and a memory read per look-up; ids spread out far (many deleted rows)
/// fall back to a binary search.
enum InstanceIndex {
    Dense { first: i64, pairs: Vec<u32> },
    Sorted(Vec<(i64, u32)>),
}

impl InstanceIndex {
    /// Stands for "no pair" in a dense table.
    const NONE: u32 = u32::MAX;

    /// From `(instance id, pair)` sorted by id.
    fn new(instances: Vec<(i64, u32)>) -> InstanceIndex {
        let (Some(&(first, _)), Some(&(last, _))) = (instances.first(), instances.last()) else {
            return InstanceIndex::Sorted(instances);
        };
        let span = u64::try_from(last - first).unwrap_or(u64::MAX);
        if span > 4 * instances.len() as u64 + 1024 {
            return InstanceIndex::Sorted(instances);
        }
        let mut pairs = vec![Self::NONE; span as usize + 1];
        for (id, pair) in instances {
            pairs[(id - first) as usize] = pair;
        }
        InstanceIndex::Dense { first, pairs }
    }

    fn get(&self, id: i64) -> Option<u32> {
        match self {
            InstanceIndex::Dense { first, pairs } => {
                let at = usize::try_from(id.checked_sub(*first)?).ok()?;
                pairs.get(at).copied().filter(|&p| p != Self::NONE)
            }
            InstanceIndex::Sorted(instances) => instances
                .binary_search_by_key(&id, |&(id, _)| id)
                .ok()
                .map(|at| instances[at].1),
        }
    }
}

/// Every job's metrics, by job name.
pub(crate) type Metrics = BTreeMap<String, JobMetrics>;

/// Every task instance with its job and name, in run id order: run_meta through its
/// (run_id, job_name) index (migration 4), each run's instances through their (run_id, name,
/// instance) index, both read front to back, where an order of run_meta's rowids would
/// look instances up at random places of an index larger than the cache. (Ordering by
/// job name too is what makes SQLite pick that index over run_meta's primary key.)
const INSTANCE_TASKS: &str = "
    SELECT t.id, m.job_name, t.name
    FROM run_meta m
    CROSS JOIN task_instances t ON t.run_id = m.run_id
    ORDER BY m.run_id, m.job_name";

/// Every attempt, the unfinished ones (result NULL) too: the first of them is where a
/// tally's floor stops.
const FINISHED_ATTEMPTS: &str = "
    SELECT id, instance_id, result, stop_time - start_time FROM attempts ORDER BY id";

/// The attempts after `?1` (a range of `attempts`' rowids), each with its job: a few
/// rows after the first scrape, so the look-ups by run id cost nothing much.
const FINISHED_ATTEMPTS_SINCE: &str = "
    SELECT a.id, m.job_name, t.name, a.result, a.stop_time - a.start_time
    FROM attempts a
    CROSS JOIN task_instances t ON t.id = a.instance_id
    CROSS JOIN run_meta m ON m.run_id = t.run_id
    WHERE a.id > ?1 AND a.result IS NOT NULL AND a.stop_time IS NOT NULL";

/// Every run with a job, from the covering (job_name, start_time, stop_time, exit_code,
/// schedule_time) index in its order (migration 6): what [`Store::scan_runs`] needs of
/// each, the differences and the comparison computed by SQLite as its aggregates did.
const RUN_SCAN: &str = "
    SELECT job_name, rowid, stop_time, exit_code, schedule_time, start_time,
           exit_code = 0, start_time - schedule_time, stop_time - start_time
    FROM runs WHERE job_name IS NOT NULL ORDER BY job_name";

/// Each job's runs with exit code 0 and all its runs, from the same index.
const EXIT_COUNTS: &str = "
    SELECT job_name, CAST(total(exit_code = 0) AS INTEGER), count(*) FROM runs
    WHERE job_name IS NOT NULL GROUP BY job_name";

/// The reader's page cache, in KiB (SQLite's negative `cache_size`).
const READ_CACHE_KIB: i64 = -16 * 1024;

/// How many attempt durations per task the quantiles are computed from.
pub(crate) const TASK_SAMPLE: usize = 1024;

impl Store {
    /// Gives a read-only connection a page cache that holds the `runs` index of a large
    /// store: the metrics and the report read it more than once, and re-reading it from
    /// the file costs a system call a page.
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
        let scanned = self.scan_runs(quantiles)?;
        let by_exit = scanned
            .iter()
            .map(|(job, s)| (job.clone(), [s.ok, s.runs - s.ok, 0, 0]))
            .collect();
        for (job, counts) in self.count_runs(ours, by_exit)? {
            jobs.entry(job).or_default().runs_by_result = counts;
        }
        for (job, s) in scanned {
            // A job gets an entry from each part it has a number for, as from the
            // aggregates each part used to be.
            if s.last_run.is_none() && s.latency.is_none() && s.duration.is_none() {
                continue;
            }
            let entry = jobs.entry(job).or_default();
            if let Some(last) = s.last_run {
                entry.last_run = Some(last.finish()?);
            }
            if let Some(latency) = s.latency {
                entry.latency = latency;
            }
            if let Some(duration) = s.duration {
                entry.duration = duration;
            }
        }
        Ok(())
    }

    /// Every run with a job, read once from the covering `runs_job_start_time` index
    /// (migration 6) in job order, one job's values in memory at a time: its counts by
    /// exit code, its latency and duration summaries (the values sorted here, summed in
    /// ascending order as the (job_name, value) indexes of old handed them to SQLite's
    /// `total`, so the numbers are the same to the bit) and its last finished run.
    fn scan_runs(&self, quantiles: &[f64]) -> rusqlite::Result<BTreeMap<String, RunScan>> {
        let mut out: BTreeMap<String, RunScan> = BTreeMap::new();
        let mut stmt = self.conn.prepare(RUN_SCAN)?;
        let mut rows = stmt.query([])?;
        let mut latencies: Vec<f64> = Vec::new();
        let mut durations: Vec<f64> = Vec::new();
        let mut current: Option<(String, RunScan)> = None;
        let mut finish =
            |job: String, mut scan: RunScan, latencies: &mut Vec<f64>, durations: &mut Vec<f64>| {
                scan.latency = summarize(latencies, quantiles);
                scan.duration = summarize(durations, quantiles);
                out.insert(job, scan);
            };
        while let Some(row) = rows.next()? {
            let job = row.get_ref(0)?.as_str()?;
            if current.as_ref().is_none_or(|(j, _)| j != job) {
                if let Some((done, scan)) = current.take() {
                    finish(done, scan, &mut latencies, &mut durations);
                }
                current = Some((job.to_owned(), RunScan::default()));
            }
            let Some((_, scan)) = current.as_mut() else {
                continue;
            };
            scan.runs += 1;
            if row.get::<_, Option<i64>>(6)? == Some(1) {
                scan.ok += 1;
            }
            if let Some(x) = row.get::<_, Option<f64>>(7)? {
                latencies.push(x);
            }
            if let Some(x) = row.get::<_, Option<f64>>(8)? {
                durations.push(x);
            }
            scan.offer_last(row)?;
        }
        if let Some((done, scan)) = current {
            finish(done, scan, &mut latencies, &mut durations);
        }
        Ok(out)
    }

    /// Finished runs of every job by status word (`ok`, `failed`, ...), for the
    /// report's success rates.
    pub(crate) fn runs_by_result(
        &self,
    ) -> Result<BTreeMap<String, BTreeMap<String, u64>>, StoreError> {
        let ours = self.has_table("run_meta")?;
        let result = (|| {
            let mut by_exit: BTreeMap<String, [i64; 4]> = BTreeMap::new();
            let mut stmt = self.conn.prepare(EXIT_COUNTS)?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let ok: i64 = row.get(1)?;
                let all: i64 = row.get(2)?;
                by_exit.insert(row.get(0)?, [ok, all - ok, 0, 0]);
            }
            self.count_runs(ours, by_exit)
        })();
        result.map_err(|e| self.wrap(e))
    }

    /// Finished runs by job and status, from `by_exit` (each job's runs in `runs` with
    /// exit 0 and the others, read from the covering index) and one scan of run_meta's
    /// (job_name, status) index; no per-run look-up (joining `runs` to `run_meta` by
    /// random run ids costs several times more on a large store). Our runs' statuses come
    /// from `run_meta`; runs dsari wrote have none, and are judged by exit code: they are
    /// what `runs` counts beyond `run_meta`'s finished runs (exit 0 for `ok`, anything
    /// else for the rest).
    fn count_runs(
        &self,
        ours: bool,
        mut by_exit: BTreeMap<String, [i64; 4]>,
    ) -> rusqlite::Result<BTreeMap<String, BTreeMap<String, u64>>> {
        let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
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
        let (first_unfinished, newest) = if tally.floor == 0 && tally.counted.is_empty() {
            self.tally_all(tally)?
        } else {
            self.tally_since(tally)?
        };
        // Everything up to the first attempt still running is counted now.
        tally.floor = match first_unfinished {
            Some(u) => (u - 1).max(tally.floor),
            None => newest.max(tally.floor),
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

    /// Counts the attempts finished since `tally`'s floor that it has not counted yet,
    /// through the joins in SQL (few rows after a first tally). Returns the first
    /// attempt still unfinished and the newest counted.
    fn tally_since(&self, tally: &mut TaskTally) -> rusqlite::Result<(Option<i64>, i64)> {
        // Attempts below the floor are all counted; above it, `counted` says which.
        let first_unfinished: Option<i64> = self.conn.query_row(
            "SELECT min(id) FROM attempts WHERE id > ?1 AND result IS NULL",
            [tally.floor],
            |r| r.get(0),
        )?;
        let mut stmt = self.conn.prepare(FINISHED_ATTEMPTS_SINCE)?;
        let mut rows = stmt.query([tally.floor])?;
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
        Ok((first_unfinished, newest))
    }

    /// Counts every finished attempt into an empty `tally`: instances with their job and
    /// task, then attempts in id order, joined here (a join in SQL would look each
    /// attempt's instance up at random), the jobs and tasks numbered as they first
    /// appear so that an attempt costs one look-up and no string compare.
    /// Returns the first attempt still unfinished and the newest counted.
    fn tally_all(&self, tally: &mut TaskTally) -> rusqlite::Result<(Option<i64>, i64)> {
        // Job names; (job, task) pairs; each instance's pair.
        let mut job_names: Vec<String> = Vec::new();
        let mut pairs: Vec<(u32, String)> = Vec::new();
        let mut instances: Vec<(i64, u32)> = Vec::new();
        {
            let mut jobs_by_name: HashMap<String, u32> = HashMap::new();
            let mut by_task: Vec<HashMap<String, u32>> = Vec::new();
            let mut stmt = self.conn.prepare(INSTANCE_TASKS)?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let job_name = row.get_ref(1)?.as_str()?;
                let job = match jobs_by_name.get(job_name) {
                    Some(&j) => j,
                    None => {
                        let j = job_names.len() as u32;
                        job_names.push(job_name.to_owned());
                        jobs_by_name.insert(job_name.to_owned(), j);
                        by_task.push(HashMap::new());
                        j
                    }
                };
                let task = row.get_ref(2)?.as_str()?;
                let tasks = &mut by_task[job as usize];
                let pair = match tasks.get(task) {
                    Some(&p) => p,
                    None => {
                        let p = pairs.len() as u32;
                        pairs.push((job, task.to_owned()));
                        tasks.insert(task.to_owned(), p);
                        p
                    }
                };
                instances.push((row.get(0)?, pair));
            }
        }
        instances.sort_unstable_by_key(|&(id, _)| id);
        let pair_of = InstanceIndex::new(instances);
        let mut accs: Vec<TaskAcc> = Vec::new();
        accs.resize_with(pairs.len(), TaskAcc::default);
        let mut first_unfinished: Option<i64> = None;
        let mut newest = 0;
        let mut stmt = self.conn.prepare(FINISHED_ATTEMPTS)?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            // In id order: every attempt after the first unfinished one is counted by id.
            let id: i64 = row.get(0)?;
            let result = row.get_ref(2)?.as_str_or_null()?;
            let seconds: Option<f64> = row.get(3)?;
            let Some(result) = result else {
                first_unfinished.get_or_insert(id);
                continue;
            };
            let Some(seconds) = seconds else { continue };
            let instance: i64 = row.get(1)?;
            let Some(pair) = pair_of.get(instance) else {
                continue;
            };
            newest = newest.max(id);
            if first_unfinished.is_some() {
                tally.counted.insert(id);
            }
            accs[pair as usize].observe(&mut tally.rng, result, seconds);
        }
        for ((job, task), acc) in pairs.into_iter().zip(accs) {
            let tasks = tally
                .tasks
                .entry(job_names[job as usize].clone())
                .or_default();
            tasks.insert(task, acc);
        }
        Ok((first_unfinished, newest))
    }
}

/// What one scan of the runs found of a job.
#[derive(Debug, Default)]
struct RunScan {
    /// Its runs, and those of them with exit code 0.
    runs: i64,
    ok: i64,
    /// Start minus schedule time where neither is NULL; `None` when no run has one.
    latency: Option<Summary>,
    /// Stop minus start time, likewise.
    duration: Option<Summary>,
    /// The run that stopped last so far.
    last_run: Option<LastCandidate>,
}

/// The run that stopped last, with its values as SQLite holds them until the end (a
/// value of a type that does not fit is an error only when it is the one shown, as it
/// was when this run was looked up by its stop time).
#[derive(Debug)]
struct LastCandidate {
    stop_time: Value,
    exit_code: Value,
    rowid: i64,
    schedule_time: Value,
    start_time: Value,
}

impl RunScan {
    /// Takes the run of `row` (a row of [`RUN_SCAN`]) as the last one when it stopped
    /// later than the last one so far. Among runs that stopped at the same time the one
    /// shown is the one the (job_name, stop_time, exit_code) index of old gave first: the
    /// lowest exit code in SQLite's order (NULL first), then the lowest rowid.
    fn offer_last(&mut self, row: &rusqlite::Row<'_>) -> rusqlite::Result<()> {
        let stop_time = row.get_ref(2)?;
        if stop_time == ValueRef::Null {
            return Ok(());
        }
        let exit_code = row.get_ref(3)?;
        let rowid: i64 = row.get(1)?;
        let later = match &self.last_run {
            None => true,
            Some(last) => sqlite_order(stop_time, (&last.stop_time).into())
                .then_with(|| sqlite_order((&last.exit_code).into(), exit_code))
                .then_with(|| last.rowid.cmp(&rowid))
                .is_gt(),
        };
        if later {
            self.last_run = Some(LastCandidate {
                stop_time: stop_time.into(),
                exit_code: exit_code.into(),
                rowid,
                schedule_time: row.get_ref(4)?.into(),
                start_time: row.get_ref(5)?.into(),
            });
        }
        Ok(())
    }
}

impl LastCandidate {
    fn finish(self) -> rusqlite::Result<LastRun> {
        fn value<T: FromSql>(column: usize, v: &Value) -> rusqlite::Result<T> {
            T::column_result(v.into()).map_err(|e| match e {
                FromSqlError::InvalidType => {
                    rusqlite::Error::InvalidColumnType(column, String::new(), v.data_type())
                }
                other => rusqlite::Error::FromSqlConversionFailure(
                    column,
                    v.data_type(),
                    Box::new(other),
                ),
            })
        }
        Ok(LastRun {
            stop_time: Some(value(2, &self.stop_time)?),
            exit_code: value(3, &self.exit_code)?,
            schedule_time: value(4, &self.schedule_time)?,
            start_time: value(5, &self.start_time)?,
        })
    }
}

/// The summary of `values` (in any order; emptied), `None` when there are none: sorted
/// in memory, summed in ascending order as SQLite's `total` sums, and the quantiles
/// picked by [`RankPicker`].
fn summarize(values: &mut Vec<f64>, quantiles: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable_by(f64::total_cmp);
    let mut picker = RankPicker::new(quantiles, values.len() as u64);
    for &x in values.iter() {
        picker.push(x);
    }
    let summary = Summary {
        count: values.len() as u64,
        sum: sqlite_total(values),
        quantiles: picker.finish(),
    };
    values.clear();
    Some(summary)
}

/// SQLite's `total()` of `values` in their order: since SQLite 3.43 it adds with a
/// Kahan-Babuska-Neumaier compensation term and adds that term at the end unless it
/// overflowed, so the same values in the same order give the same bits. (SQLite keeps
/// integers apart until the first real; the values here are differences of REAL
/// columns, reals, or small integers from text, which both ways add exactly.)
fn sqlite_total(values: &[f64]) -> f64 {
    let (mut sum, mut compensation) = (0.0_f64, 0.0_f64);
    for &x in values {
        let t = sum + x;
        compensation += if sum.abs() > x.abs() {
            (sum - t) + x
        } else {
            (x - t) + sum
        };
        sum = t;
    }
    if compensation.is_finite() {
        sum + compensation
    } else {
        sum
    }
}

/// SQLite's order of two values, as an index with the BINARY collation sorts them:
/// NULL, then numbers by value, then text by its bytes, then blobs.
fn sqlite_order(a: ValueRef<'_>, b: ValueRef<'_>) -> Ordering {
    let class = |v: &ValueRef<'_>| match v {
        ValueRef::Null => 0,
        ValueRef::Integer(_) | ValueRef::Real(_) => 1,
        ValueRef::Text(_) => 2,
        ValueRef::Blob(_) => 3,
    };
    // SQLite holds no NaN; -0.0 and 0.0 are equal to it as to `partial_cmp`.
    let numbers = |x: f64, y: f64| x.partial_cmp(&y).unwrap_or(Ordering::Equal);
    match (a, b) {
        (ValueRef::Integer(x), ValueRef::Integer(y)) => x.cmp(&y),
        (ValueRef::Integer(x), ValueRef::Real(y)) => numbers(x as f64, y),
        (ValueRef::Real(x), ValueRef::Integer(y)) => numbers(x, y as f64),
        (ValueRef::Real(x), ValueRef::Real(y)) => numbers(x, y),
        (ValueRef::Text(x), ValueRef::Text(y)) | (ValueRef::Blob(x), ValueRef::Blob(y)) => x.cmp(y),
        (a, b) => class(&a).cmp(&class(&b)),
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

    /// The plans of the scans over every run: each reads an index in its order (no
    /// sort, no temporary b-tree), which is what keeps a large store's metrics cheap.
    #[test]
    fn the_scans_over_every_run_read_indexes_in_order() {
        let (_dir, store) = store_with(&[1.0]);
        let plan = |sql: &str| -> String {
            let mut stmt = store
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("explain");
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(3))
                .expect("plan")
                .collect::<rusqlite::Result<Vec<_>>>()
                .expect("plan rows");
            rows.join("; ")
        };
        // The runs' part: one scan of the covering index in its order, nothing else.
        for sql in [RUN_SCAN, EXIT_COUNTS] {
            let p = plan(sql);
            assert!(
                p.contains("COVERING INDEX runs_job_start_time"),
                "{sql}: {p}"
            );
            assert!(!p.contains("TEMP B-TREE"), "{sql}: {p}");
            assert!(!p.contains(';'), "one step only: {sql}: {p}");
        }
        let p = plan(INSTANCE_TASKS);
        assert!(p.contains("COVERING INDEX run_meta_run_job"), "{p}");
        assert!(!p.contains("TEMP B-TREE"), "{p}");
        let sql = "SELECT job_name, status, count(*) FROM run_meta
             WHERE status != 'running' GROUP BY 1, 2";
        let p = plan(sql);
        assert!(
            p.contains("COVERING INDEX run_meta_job_status"),
            "{sql}: {p}"
        );
        assert!(!p.contains("TEMP B-TREE"), "{sql}: {p}");
    }

    /// A store of several jobs as the daemon, `runner run` and dsari leave them: times
    /// with many decimals, NULL schedule, start and stop times (running, lost), runs
    /// without run_meta (dsari's), rows without a job, ties in the newest stop time.
    fn varied_store() -> (tempfile::TempDir, Store) {
        let (dir, store) = store_with(&[]);
        let mut rng = StdRng::seed_from_u64(13);
        let tx = store.conn.unchecked_transaction().expect("tx");
        let insert =
            |job: Option<String>, times: [Option<f64>; 3], exit_code: Option<i64>, ours: bool| {
                let n: i64 = tx
                    .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
                    .expect("count");
                let run_id = format!("r{n}");
                tx.execute(
                    "INSERT INTO runs (job_name, run_id, schedule_time, start_time, stop_time,
                    exit_code, trigger_type, trigger_data, run_data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'schedule', '{}', '{}')",
                    rusqlite::params![job, run_id, times[0], times[1], times[2], exit_code],
                )
                .expect("insert run");
                if let (true, Some(job)) = (ours, job) {
                    let status = match exit_code {
                        Some(0) => "ok",
                        Some(_) => "failed",
                        None => "lost",
                    };
                    tx.execute(
                        "INSERT INTO run_meta (run_id, job_name, status) VALUES (?1, ?2, ?3)",
                        rusqlite::params![run_id, job, status],
                    )
                    .expect("insert meta");
                }
            };
        for i in 0..3000 {
            let job = (rng.gen_range(0..50) != 0).then(|| format!("job-{}", rng.gen_range(0..6)));
            let schedule = 1.7e9 + i as f64 * 0.37 + rng.gen_range(0.0..1.0);
            let start = schedule + rng.gen_range(0.0..0.05_f64).powi(2);
            let stop = start + rng.gen_range(0.0..30.0_f64).powi(2) / 7.0;
            // Durations of every size and both signs (a clock set back), whose sum depends
            // on how it is added (differences of epoch times are multiples of 2^-22 s,
            // which add exactly up to 2^31 s).
            let sign = if rng.gen_range(0..2) == 0 { -1.0 } else { 1.0 };
            let stop = match &job {
                Some(j) if j == "job-5" => start + sign * 10_f64.powf(rng.gen_range(-6.0..10.0)),
                _ => stop,
            };
            let times = [
                (rng.gen_range(0..10) != 0).then_some(schedule),
                (rng.gen_range(0..30) != 0).then_some(start),
                (rng.gen_range(0..10) != 0).then_some(stop),
            ];
            let exit_code = match rng.gen_range(0..20) {
                0 => None,
                1..=3 => Some(1),
                4 => Some(255),
                _ => Some(0),
            };
            insert(job, times, exit_code, rng.gen_range(0..2) == 0);
        }
        // Ties in the newest stop time: the one shown is the lowest exit code (NULL
        // first), then the first inserted, whatever the start times.
        let job = |name: &str| Some(name.to_owned());
        let tie = 2e9;
        for (start, exit_code) in [(5.0, Some(2)), (4.0, None), (3.0, Some(1))] {
            insert(
                job("job-1"),
                [None, Some(tie - start), Some(tie)],
                exit_code,
                false,
            );
        }
        for (start, exit_code) in [(5.0, Some(3)), (4.0, Some(1)), (3.0, Some(1))] {
            insert(
                job("job-2"),
                [Some(1.0), Some(tie - start), Some(tie)],
                exit_code,
                true,
            );
        }
        // A job that never finished a run, and one of a single running run.
        insert(job("never"), [Some(1.0), Some(2.0), None], None, false);
        insert(job("once"), [Some(1.0), None, None], None, true);

        tx.commit().expect("commit");
        (dir, store)
    }

    /// The queries the metrics ran before migration 6, each over the index it had then,
    /// for comparison: counts by exit code, the last run by its stop time, and each
    /// summary as an aggregate and a sorted stream.
    fn old_run_metrics(store: &Store, quantiles: &[f64]) -> Metrics {
        store
            .conn
            .execute_batch(
                "DROP INDEX runs_job_start_time;
                 CREATE INDEX runs_job_start_time ON runs (job_name, start_time);
                 CREATE INDEX runs_job_duration ON runs (job_name, stop_time - start_time);
                 CREATE INDEX runs_job_latency ON runs (job_name, start_time - schedule_time);
                 CREATE INDEX runs_job_stop ON runs (job_name, stop_time, exit_code);",
            )
            .expect("old indexes");
        let conn = &store.conn;
        let mut jobs = Metrics::new();
        for (job, counts) in store.runs_by_result().expect("counts") {
            jobs.entry(job).or_default().runs_by_result = counts;
        }
        let mut newest = conn
            .prepare(
                "SELECT job_name, max(stop_time) FROM runs
                 WHERE job_name IS NOT NULL AND stop_time IS NOT NULL GROUP BY job_name",
            )
            .expect("newest");
        let mut run = conn
            .prepare(
                "SELECT exit_code, schedule_time, start_time FROM runs
                 WHERE job_name = ?1 AND stop_time = ?2 LIMIT 1",
            )
            .expect("run");
        let newest: Vec<(String, f64)> = newest
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("newest")
            .collect::<rusqlite::Result<_>>()
            .expect("newest rows");
        for (job, stop_time) in newest {
            let last = run
                .query_row(rusqlite::params![job, stop_time], |r| {
                    Ok(LastRun {
                        stop_time: Some(stop_time),
                        exit_code: r.get(0)?,
                        schedule_time: r.get(1)?,
                        start_time: r.get(2)?,
                    })
                })
                .expect("last run");
            jobs.entry(job).or_default().last_run = Some(last);
        }
        for (latency, x) in [
            (true, "start_time - schedule_time"),
            (false, "stop_time - start_time"),
        ] {
            let values = format!("FROM runs WHERE job_name IS NOT NULL AND {x} IS NOT NULL");
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT job_name, count(*), total({x}) {values} GROUP BY job_name"
                ))
                .expect("aggregate");
            let mut out: BTreeMap<String, Summary> = stmt
                .query_map([], |r| {
                    let count: i64 = r.get(1)?;
                    Ok((
                        r.get(0)?,
                        Summary {
                            count: count as u64,
                            sum: r.get(2)?,
                            quantiles: Vec::new(),
                        },
                    ))
                })
                .expect("aggregate")
                .collect::<rusqlite::Result<_>>()
                .expect("aggregate rows");
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT job_name, {x} {values} ORDER BY job_name, {x}"
                ))
                .expect("values");
            let mut sorted: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for row in stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))
                .expect("values")
            {
                let (job, x) = row.expect("value");
                sorted.entry(job).or_default().push(x);
            }
            for (job, values) in sorted {
                let summary = out.get_mut(&job).expect("counted");
                let mut picker = RankPicker::new(quantiles, summary.count);
                values.iter().for_each(|&x| picker.push(x));
                summary.quantiles = picker.finish();
            }
            for (job, summary) in out {
                let entry = jobs.entry(job).or_default();
                if latency {
                    entry.latency = summary;
                } else {
                    entry.duration = summary;
                }
            }
        }
        jobs
    }

    /// The numbers of one scan of the covering index are those of the queries over the
    /// four indexes it replaced, to the bit (`{:?}` of an f64 tells every bit apart).
    #[test]
    fn one_scan_gives_the_numbers_of_the_old_queries_to_the_bit() {
        for quantiles in [&[][..], &[0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0][..]] {
            let (_dir, store) = varied_store();
            let runs_part = |m: Metrics| -> Vec<String> {
                m.into_iter()
                    .filter(|(_, j)| {
                        !j.runs_by_result.is_empty()
                            || j.last_run.is_some()
                            || j.latency.count > 0
                            || j.duration.count > 0
                    })
                    .map(|(job, j)| {
                        format!(
                            "{job}: {:?} {:?} {:?} {:?}",
                            j.latency, j.duration, j.runs_by_result, j.last_run
                        )
                    })
                    .collect()
            };
            let mut new = Metrics::new();
            store
                .run_metrics(true, quantiles, &mut new)
                .expect("metrics");
            let new = runs_part(new);
            assert!(new.len() >= 7, "{new:#?}");
            let old = runs_part(old_run_metrics(&store, quantiles));
            assert_eq!(new, old);
            // Ties: the lowest exit code, NULL first; then the first inserted.
            let last = |job: &str| {
                let m = store.metrics(quantiles).expect("metrics");
                m[job].last_run.clone().expect("last run")
            };
            assert_eq!(last("job-1").exit_code, None);
            assert_eq!(last("job-1").start_time, Some(2e9 - 4.0));
            assert_eq!(last("job-2").exit_code, Some(1));
            assert_eq!(last("job-2").start_time, Some(2e9 - 4.0));
        }
    }

    #[test]
    fn sqlite_total_is_the_aggregate_to_the_bit() {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        conn.execute_batch("CREATE TABLE v (i INTEGER PRIMARY KEY, x REAL)")
            .expect("table");
        let mut rng = StdRng::seed_from_u64(7);
        let mut values: Vec<f64> = (0..5000)
            .map(|i| match i % 4 {
                0 => rng.gen_range(0.0..1.0),
                1 => rng.gen_range(0.0..1e12),
                2 => -rng.gen_range(0.0..1e-3),
                _ => 1e16 * rng.gen_range(0.0..1.0),
            })
            .collect();
        values.push(f64::INFINITY);
        for (n, &x) in values.iter().enumerate() {
            let prefix = &values[..=n];
            conn.execute("INSERT INTO v (x) VALUES (?1)", [x])
                .expect("insert");
            if n % 97 == 0 || n + 1 == values.len() {
                let total: f64 = conn
                    .query_row(
                        "SELECT total(x) FROM (SELECT x FROM v ORDER BY i)",
                        [],
                        |r| r.get(0),
                    )
                    .expect("total");
                assert_eq!(sqlite_total(prefix).to_bits(), total.to_bits(), "{n}");
            }
        }
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
