//! What the store holds, as plain data: runs, task instances and attempts.
//!
//! These types are what `runs`, the report and the metrics read; they know nothing of
//! SQL or processes. Field names follow the contract's JSON (section 7), so they
//! serialize as they are.

use serde::Serialize;

// The states belong to the recording seam, which the chain reports through; the
// records carry them, so readers of the store find them here too.
pub(crate) use crate::record::{InstanceStatus, RunStatus};

/// Which runs a listing returns, newest first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunFilter<'a> {
    /// Of these jobs (all when empty).
    pub(crate) jobs: &'a [String],
    /// With one of these statuses (any when empty).
    pub(crate) statuses: &'a [RunStatus],
    /// Started at or after this (epoch seconds).
    pub(crate) since: Option<f64>,
    /// Of this host only.
    pub(crate) host: Option<&'a str>,
    /// At most this many.
    pub(crate) limit: usize,
}

impl<'a> RunFilter<'a> {
    /// The newest `limit` runs of `jobs` (all when empty), whatever their status.
    pub(crate) fn newest(jobs: &'a [String], limit: usize) -> RunFilter<'a> {
        RunFilter {
            jobs,
            statuses: &[],
            since: None,
            host: None,
            limit,
        }
    }
}

/// The output an attempt (or, for a dsari run, the whole run) left in the store itself:
/// PostgreSQL keeps it there, capped as on disk, so that any host can read it.
#[derive(Debug, Clone)]
pub(crate) struct StoredOutput {
    /// The task's name (empty for a run's `output.txt`).
    pub(crate) task: String,
    /// `TASK#n`, or `output.txt`.
    pub(crate) instance: String,
    /// The chain attempt (0 for a run's `output.txt`).
    pub(crate) try_num: u32,
    /// The bytes, as captured (or their end, when asked for a tail).
    pub(crate) bytes: Vec<u8>,
    /// How many bytes are stored in all.
    pub(crate) size: u64,
}

/// The one run of `found` that `prefix` names: the run whose id it is, else the only
/// one whose id starts with it; none or several is an error that says so.
pub(crate) fn pick_run(
    mut found: Vec<RunRecord>,
    prefix: &str,
) -> Result<RunRecord, super::StoreError> {
    if let Some(exact) = found.iter().position(|r| r.run_id == prefix) {
        return Ok(found.swap_remove(exact));
    }
    match found.len() {
        0 => Err(super::StoreError::NotFound {
            prefix: prefix.to_owned(),
        }),
        1 => Ok(found.remove(0)),
        _ => Err(super::StoreError::Ambiguous {
            prefix: prefix.to_owned(),
            candidates: found.into_iter().map(|r| r.run_id).collect(),
        }),
    }
}

/// One run, with dsari's columns plus its status.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunRecord {
    /// The run's id (a UUID).
    pub(crate) run_id: String,
    /// The job it belongs to.
    pub(crate) job_name: String,
    /// Its state.
    pub(crate) status: RunStatus,
    /// When it was due (epoch seconds).
    pub(crate) schedule_time: Option<f64>,
    /// When it started.
    pub(crate) start_time: Option<f64>,
    /// When it ended; `None` while running.
    pub(crate) stop_time: Option<f64>,
    /// runner's exit code for the run (128+N for a signal).
    pub(crate) exit_code: Option<i64>,
    /// What started it: `manual`, `schedule`, `file`, `catch_up`, ...
    pub(crate) trigger_type: Option<String>,
    /// Details of the trigger.
    pub(crate) trigger_data: serde_json::Value,
    /// Extra data (the daemon's `return_data`).
    pub(crate) run_data: serde_json::Value,
    /// The host it ran on; `None` for runs recorded before hosts were (or by dsari).
    pub(crate) host: Option<String>,
}

/// One task instance (`TASK#n`) with its attempts.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TaskRecord {
    /// The task's name.
    pub(crate) name: String,
    /// `name#n`.
    pub(crate) instance: String,
    /// The task's file name.
    pub(crate) file: String,
    /// Its state.
    pub(crate) status: InstanceStatus,
    /// Its attempts, oldest first.
    pub(crate) attempts: Vec<AttemptRecord>,
    /// The events it waited for (`after`) or watched (`unless`), as they stood each
    /// time it was decided (started, abandoned, or given up on at `wait_time`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) events: Vec<EventRecordOfTask>,
}

/// One event of a task instance, as it stood when the instance was decided.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EventRecordOfTask {
    /// The event's name.
    pub(crate) name: String,
    /// `after` or `unless`.
    pub(crate) kind: String,
    /// Whether it had been fired (or passed on as a dependency's cascade).
    pub(crate) fired: bool,
    /// The firing's id in `events list`, if it was fired.
    pub(crate) event_id: Option<i64>,
    /// When it was fired (epoch seconds).
    pub(crate) fired_at: Option<f64>,
    /// Who fired it: `fire`, `cascade RUN_ID`, ... (`cascade`: a dependency of this run).
    pub(crate) source: Option<String>,
    /// Since when the instance waited; `None` when nothing was missing.
    pub(crate) waited_since: Option<f64>,
    /// When the instance was decided.
    pub(crate) decided_at: f64,
}

/// One attempt of a task instance.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AttemptRecord {
    /// The chain attempt it belonged to, from 1.
    pub(crate) try_num: u32,
    /// The exit code, when the task exited by itself.
    pub(crate) exit_code: Option<i64>,
    /// The signal that ended it, if any.
    pub(crate) signal: Option<i64>,
    /// `OK`, `RETRY`, `HALT` or `EXIT`; `None` while running.
    pub(crate) result: Option<String>,
    /// Epoch seconds.
    pub(crate) start_time: f64,
    /// Epoch seconds; `None` while running.
    pub(crate) stop_time: Option<f64>,
    /// Why runner ended it, or why it could not start.
    pub(crate) note: Option<String>,
    /// The captured output file, if any.
    pub(crate) output: Option<String>,
    /// What the task wrote to `RUNNER_RESULT`.
    pub(crate) result_data: Option<serde_json::Value>,
    /// The processes it left running when it exited: `[{"pid", "command"}]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) leftovers: Option<serde_json::Value>,
}

/// A run with its tasks, for `runs show`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunDetail {
    /// The run.
    #[serde(flatten)]
    pub(crate) run: RunRecord,
    /// Its task instances in run order.
    pub(crate) tasks: Vec<TaskRecord>,
    /// The directory holding its output (a daemon run's `output.txt`, a chain's
    /// per-attempt files).
    pub(crate) output_dir: Option<String>,
}
