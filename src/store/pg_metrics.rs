//! What `runner metrics` and `runner report` read, whichever store holds the records:
//! the [`RecordsView`] seam, and its PostgreSQL side, so that a fleet's metrics and
//! report cover every host (contract sections 11 and 13).
//!
//! PostgreSQL computes the numbers itself: counts and sums are aggregates, and the
//! quantiles are `percentile_cont`, the same linear interpolation between the two
//! closest ranks that dsari's exporter (and the SQLite side) uses; task quantiles here
//! are exact, not sampled. Each scrape reads everything again: the task counters are
//! what the database holds, so pruning old runs lowers them.

use std::collections::BTreeMap;

use postgres::Row;

use super::backend::RunStore;
use super::metrics::{LastRun, Metrics, Summary, TaskTally};
use super::owner::Owner;
use super::postgres::PgStore;
use super::sqlite::{Store, StoreError};

/// Finished runs by job and status word.
pub(crate) type RunsByResult = BTreeMap<String, BTreeMap<String, u64>>;

/// The records as the metrics and the report read them.
pub(crate) trait RecordsView: RunStore {
    /// Every job's metrics; a server asking again and again passes the same `tally`.
    fn metrics_view(&self, quantiles: &[f64], tally: &mut TaskTally)
    -> Result<Metrics, StoreError>;
    /// Finished runs of every job by status word.
    fn runs_by_result_view(&self) -> Result<RunsByResult, StoreError>;
    /// The names of every job with a recorded or running run.
    fn job_names_view(&self) -> Result<Vec<String>, StoreError>;
}

impl RecordsView for Store {
    fn metrics_view(
        &self,
        quantiles: &[f64],
        tally: &mut TaskTally,
    ) -> Result<Metrics, StoreError> {
        self.metrics_since(quantiles, tally)
    }
    fn runs_by_result_view(&self) -> Result<RunsByResult, StoreError> {
        self.runs_by_result()
    }
    fn job_names_view(&self) -> Result<Vec<String>, StoreError> {
        self.job_names()
    }
}

/// Opens the records for the metrics and the report: the fleet's database when one is
/// named (every host's records), else the file read-only (never created, migrated or
/// changed), ready for scans; `None` when there is no file yet.
pub(crate) fn open_records_view(
    location: &super::Location,
    host: &str,
) -> Result<Option<Box<dyn RecordsView>>, StoreError> {
    if let Some(url) = &location.fleet {
        return Ok(Some(Box::new(PgStore::open(url, host)?)));
    }
    let Some(store) = Store::read_only(location)? else {
        return Ok(None);
    };
    store.cache_for_scans()?;
    Ok(Some(Box::new(store)))
}

/// A run's status word, as `runs list` gives it.
const STATUS: &str = "coalesce(m.status, CASE WHEN r.exit_code = 0 THEN 'ok' ELSE 'failed' END)";

fn epoch_of(column: &str) -> String {
    format!("extract(epoch FROM ({column} AT TIME ZONE 'UTC'))::float8")
}

/// A summary from a row `(key..., count, sum, quantiles[])` whose values start at `at`.
fn summary(row: &Row, at: usize, quantiles: &[f64]) -> Summary {
    let count: i64 = row.get(at);
    let values: Option<Vec<Option<f64>>> = row.get(at + 2);
    Summary {
        count: count.max(0) as u64,
        sum: row.get::<_, Option<f64>>(at + 1).unwrap_or(0.0),
        quantiles: match values {
            Some(values) if count > 0 => quantiles
                .iter()
                .copied()
                .zip(values.into_iter().map(|v| v.unwrap_or(f64::NAN)))
                .collect(),
            _ => Vec::new(),
        },
    }
}

impl PgStore {
    fn run_summaries(
        &self,
        x: &str,
        quantiles: &[f64],
    ) -> Result<Vec<(String, Summary)>, postgres::Error> {
        let sql = format!(
            "SELECT job_name, count(*), sum(x), percentile_cont($1::float8[])
                 WITHIN GROUP (ORDER BY x)
             FROM (SELECT job_name, {x} AS x FROM runs) s GROUP BY job_name"
        );
        let rows = self.client().query(&sql, &[&quantiles])?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), summary(r, 1, quantiles)))
            .collect())
    }

    fn pg_runs_by_result(&self) -> Result<RunsByResult, postgres::Error> {
        let sql = format!(
            "SELECT r.job_name, {STATUS}, count(*) FROM runs r LEFT JOIN run_meta m
             USING (run_id) GROUP BY 1, 2"
        );
        let mut out = RunsByResult::new();
        for row in self.client().query(&sql, &[])? {
            let n: i64 = row.get(2);
            out.entry(row.get(0))
                .or_default()
                .insert(row.get(1), n as u64);
        }
        Ok(out)
    }

    fn pg_metrics(&self, quantiles: &[f64]) -> Result<Metrics, postgres::Error> {
        let mut jobs = Metrics::new();
        for (job, counts) in self.pg_runs_by_result()? {
            jobs.entry(job).or_default().runs_by_result = counts;
        }
        let last = format!(
            "SELECT DISTINCT ON (job_name) job_name, {}, exit_code::bigint, {}, {}
             FROM runs ORDER BY job_name, stop_time DESC",
            epoch_of("stop_time"),
            epoch_of("schedule_time"),
            epoch_of("start_time")
        );
        for row in self.client().query(&last, &[])? {
            jobs.entry(row.get(0)).or_default().last_run = Some(LastRun {
                stop_time: row.get(1),
                exit_code: row.get(2),
                schedule_time: row.get(3),
                start_time: row.get(4),
            });
        }
        let latency = format!("{} - {}", epoch_of("start_time"), epoch_of("schedule_time"));
        for (job, s) in self.run_summaries(&latency, quantiles)? {
            jobs.entry(job).or_default().latency = s;
        }
        let duration = format!("{} - {}", epoch_of("stop_time"), epoch_of("start_time"));
        for (job, s) in self.run_summaries(&duration, quantiles)? {
            jobs.entry(job).or_default().duration = s;
        }
        // Runs in progress: another host's run counts as running until that host says
        // otherwise; this host's are judged by their process, as `runs list` does.
        let running = self.client().query(
            "SELECT r.job_name, m.pid, m.pid_start, m.boot_id, m.host
             FROM runs_running r LEFT JOIN run_meta m USING (run_id)",
            &[],
        )?;
        for row in running {
            let pid: Option<i32> = row.get(1);
            let host: Option<String> = row.get(4);
            let alive = match pid {
                Some(pid) if host.as_deref() == Some(self.host()) => Owner {
                    pid: pid as u32,
                    start_ticks: row.get(2),
                    boot_id: row.get(3),
                }
                .is_alive(),
                _ => true,
            };
            let entry = jobs.entry(row.get(0)).or_default();
            if alive {
                entry.running += 1;
            } else {
                *entry.runs_by_result.entry("lost".to_owned()).or_default() += 1;
            }
        }
        let attempts = "FROM attempts a JOIN task_instances t ON t.id = a.instance_id
             JOIN run_meta m ON m.run_id = t.run_id
             WHERE a.result IS NOT NULL AND a.stop_time IS NOT NULL";
        let by_result =
            format!("SELECT m.job_name, t.name, a.result, count(*) {attempts} GROUP BY 1, 2, 3");
        for row in self.client().query(&by_result, &[])? {
            let n: i64 = row.get(3);
            jobs.entry(row.get(0))
                .or_default()
                .tasks
                .entry(row.get(1))
                .or_default()
                .attempts_by_result
                .insert(row.get(2), n as u64);
        }
        let durations = format!(
            "SELECT m.job_name, t.name, count(*), sum(a.stop_time - a.start_time),
                percentile_cont($1::float8[]) WITHIN GROUP (ORDER BY a.stop_time - a.start_time)
             {attempts} GROUP BY 1, 2"
        );
        for row in self.client().query(&durations, &[&quantiles])? {
            jobs.entry(row.get(0))
                .or_default()
                .tasks
                .entry(row.get(1))
                .or_default()
                .duration = summary(&row, 2, quantiles);
        }
        Ok(jobs)
    }
}

impl RecordsView for PgStore {
    fn metrics_view(
        &self,
        quantiles: &[f64],
        _tally: &mut TaskTally,
    ) -> Result<Metrics, StoreError> {
        // One snapshot for every query, so that the numbers agree with each other.
        let result = (|| {
            self.client()
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
            let found = self.pg_metrics(quantiles);
            self.client().batch_execute("COMMIT")?;
            found
        })();
        if result.is_err() {
            let _ = self.client().batch_execute("ROLLBACK");
        }
        result.map_err(|e| self.wrap(e))
    }

    fn runs_by_result_view(&self) -> Result<RunsByResult, StoreError> {
        self.pg_runs_by_result().map_err(|e| self.wrap(e))
    }

    fn job_names_view(&self) -> Result<Vec<String>, StoreError> {
        self.client()
            .query(
                "SELECT job_name FROM runs UNION SELECT job_name FROM runs_running ORDER BY 1",
                &[],
            )
            .map(|rows| rows.iter().map(|r| r.get(0)).collect())
            .map_err(|e| self.wrap(e))
    }
}
