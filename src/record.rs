//! The seam between running a chain and recording it.
//!
//! The chain reports what happens through [`Recorder`]; the store implements it, and
//! `--no-record` uses [`NullRecorder`]. A recorder never fails the chain: a store that
//! cannot write warns once and carries on, so the trait's methods return nothing.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serialize};

/// A writer that keeps a copy of an attempt's output, shared between the process's
/// supervisor, which writes it, and the recorder, which finishes it. Plain std types, so
/// that neither the chain's recorder nor exec need know the other (`exec::SharedCapture`
/// is the same type).
pub(crate) type SharedCapture = Arc<Mutex<dyn Write + Send>>;

/// What one task attempt decided, in the contract's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub(crate) enum TaskResult {
    /// Exit 0: go on.
    Ok,
    /// Anything unexpected: retry the chain.
    Retry,
    /// Exit 3: stop without the halt task.
    Exit,
    /// Exit 2: run the halt task and stop.
    Halt,
}

impl TaskResult {
    /// The word used in hooks, logs and records.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TaskResult::Ok => "OK",
            TaskResult::Retry => "RETRY",
            TaskResult::Exit => "EXIT",
            TaskResult::Halt => "HALT",
        }
    }
}

/// A word from a fixed set (a result, an event kind), read back by the helpers below.
/// Named, not spelled `&'static str` in a field, so that serde does not take the field
/// for one borrowed from its input (which would tie reading it to `'static` input).
pub(crate) type Word = &'static str;

/// Reads back an attempt's result word (a record spooled for later) as the word
/// [`TaskResult::as_str`] gives, refusing any other.
pub(crate) fn result_word<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let known = [
        TaskResult::Ok,
        TaskResult::Retry,
        TaskResult::Exit,
        TaskResult::Halt,
    ]
    .map(TaskResult::as_str);
    known_word(d, &known, "attempt result")
}

/// Reads back [`EventWait::kind`], refusing anything but `after` and `unless`.
fn event_kind<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    known_word(d, &["after", "unless"], "event kind")
}

/// The one of `known` that `d` holds; any other word is an error naming `what`.
fn known_word<'de, D: Deserializer<'de>>(
    d: D,
    known: &[&'static str],
    what: &str,
) -> Result<&'static str, D::Error> {
    let word = String::deserialize(d)?;
    known
        .iter()
        .copied()
        .find(|k| *k == word)
        .ok_or_else(|| serde::de::Error::custom(format!("unknown {what} {word:?}")))
}

/// The state of a run, as `runs list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RunStatus {
    /// Still in `runs_running` and its process is alive.
    Running,
    /// Every task succeeded.
    Ok,
    /// Retries ran out.
    Failed,
    /// A task exited 2.
    Halted,
    /// A task exited 3.
    Exited,
    /// runner was signalled.
    Interrupted,
    /// The process recording it died without finishing it (kill -9, power loss).
    Lost,
}

impl RunStatus {
    /// The word stored and shown.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
            RunStatus::Halted => "halted",
            RunStatus::Exited => "exited",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Lost => "lost",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<RunStatus, String> {
        Ok(match s {
            "running" => RunStatus::Running,
            "ok" => RunStatus::Ok,
            "failed" => RunStatus::Failed,
            "halted" => RunStatus::Halted,
            "exited" => RunStatus::Exited,
            "interrupted" => RunStatus::Interrupted,
            "lost" => RunStatus::Lost,
            other => return Err(format!("unknown run status {other:?}")),
        })
    }
}

/// The state of one task instance within a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum InstanceStatus {
    /// Not reached (yet).
    Unstarted,
    /// Waiting for events.
    Waiting,
    /// An attempt is running.
    Running,
    /// Succeeded.
    Finished,
    /// Its last attempt failed.
    Failed,
    /// Failed, and replaced by a replayed instance.
    Replayed,
    /// Not run: skipped by frequency or by hand.
    Skipped,
    /// Not run: an `unless` event fired, or a dependency was abandoned.
    Abandoned,
}

impl InstanceStatus {
    /// The word stored and shown.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Unstarted => "unstarted",
            InstanceStatus::Waiting => "waiting",
            InstanceStatus::Running => "running",
            InstanceStatus::Finished => "finished",
            InstanceStatus::Failed => "failed",
            InstanceStatus::Replayed => "replayed",
            InstanceStatus::Skipped => "skipped",
            InstanceStatus::Abandoned => "abandoned",
        }
    }
}

impl FromStr for InstanceStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<InstanceStatus, String> {
        Ok(match s {
            "unstarted" => InstanceStatus::Unstarted,
            "waiting" => InstanceStatus::Waiting,
            "running" => InstanceStatus::Running,
            "finished" => InstanceStatus::Finished,
            "failed" => InstanceStatus::Failed,
            "replayed" => InstanceStatus::Replayed,
            "skipped" => InstanceStatus::Skipped,
            "abandoned" => InstanceStatus::Abandoned,
            other => return Err(format!("unknown task status {other:?}")),
        })
    }
}

/// A run beginning.
#[derive(Debug)]
pub(crate) struct RunStart<'a> {
    /// Its id.
    pub(crate) run_id: &'a str,
    /// The job it belongs to.
    pub(crate) job: &'a str,
    /// When it started.
    pub(crate) started: SystemTime,
    /// The task directory.
    pub(crate) taskdir: &'a Path,
    /// The configuration file, if any.
    pub(crate) config: Option<&'a Path>,
    /// The event session.
    pub(crate) session: &'a str,
    /// The planned tasks in order: (name, file name).
    pub(crate) tasks: &'a [(&'a str, &'a str)],
    /// How many tasks may run at once; above 1, recorded output is prefixed per line
    /// with the task's name, as on the terminal.
    pub(crate) parallel: usize,
}

/// An attempt of a task instance beginning.
#[derive(Debug)]
pub(crate) struct AttemptStart<'a> {
    /// The run.
    pub(crate) run_id: &'a str,
    /// The task's name.
    pub(crate) task: &'a str,
    /// The task's file name.
    pub(crate) file: &'a str,
    /// The instance number (`TASK#n`).
    pub(crate) instance: u32,
    /// The chain attempt, from 1.
    pub(crate) try_num: u32,
    /// When it started.
    pub(crate) started: SystemTime,
}

/// An attempt's end.
#[derive(Debug)]
pub(crate) struct AttemptEnd {
    /// The exit code, if it exited by itself.
    pub(crate) exit_code: Option<i32>,
    /// The signal that ended it, if any.
    pub(crate) signal: Option<i32>,
    /// What it decided.
    pub(crate) result: TaskResult,
    /// When it ended.
    pub(crate) stopped: SystemTime,
    /// Why runner ended it or why it never started, for people.
    pub(crate) note: Option<String>,
    /// The JSON object the task wrote to `RUNNER_RESULT`, if any.
    pub(crate) result_data: Option<serde_json::Value>,
    /// The processes it left running when it exited.
    pub(crate) leftovers: Vec<crate::exec::Leftover>,
    /// The data of the cascade event this attempt fires (named after the task), when it
    /// ended `OK`.
    pub(crate) cascade: Option<serde_json::Value>,
}

/// One event a task instance waited for (`after`) or watched (`unless`), as it stood
/// when the instance was decided: started, abandoned, or given up on (`wait_time`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EventWait {
    /// The event's name.
    pub(crate) name: String,
    /// `after` or `unless`.
    #[serde(deserialize_with = "event_kind")]
    pub(crate) kind: Word,
    /// The firing that counted (its id in the events table), if it was fired.
    pub(crate) event_id: Option<i64>,
    /// When it was fired (epoch seconds), if it was.
    pub(crate) fired_at: Option<f64>,
    /// Who fired it (`fire`, `cascade RUN_ID`, ...); `cascade` for a dependency's
    /// cascade of this run.
    pub(crate) source: Option<String>,
}

/// What a task instance's events came to, for [`Recorder::events_waited`].
#[derive(Debug, Clone)]
pub(crate) struct EventsWaited<'a> {
    pub(crate) run_id: &'a str,
    pub(crate) task: &'a str,
    pub(crate) file: &'a str,
    pub(crate) instance: u32,
    /// When it began to wait; `None` when nothing was missing when it was first ready.
    pub(crate) since: Option<SystemTime>,
    /// When it was decided.
    pub(crate) decided: SystemTime,
    pub(crate) events: Vec<EventWait>,
}

/// Where [`Recorder::attempt_started`] writes an attempt's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartWrite {
    /// On the caller's thread, before it goes on: the task is already on its way on
    /// another thread (or no process runs at all).
    Here,
    /// Handed to the recording thread without waiting for it: the caller's thread runs
    /// the task itself next, and the write overlaps the task's spawn. A `kill -9` before
    /// the write lands leaves the start unwritten (the run is then finalized `lost`).
    Behind,
}

/// The write of an attempt's start that [`Recorder::attempt_spawning`] hands to whoever
/// spawns the attempt. Called with `false` when the process is spawned, it may hold the
/// start back to be written with the records that follow (a quick task's own end, the
/// next attempts) and returns when to call it again, while the process still runs, to
/// write what it held; called with `true`, it writes at once.
pub(crate) type StartOnSpawn = Box<dyn FnMut(bool) -> Option<std::time::Instant> + Send>;

/// Receives a chain's progress.
pub(crate) trait Recorder {
    /// A run started.
    fn run_started(&mut self, run: &RunStart<'_>);
    /// An attempt is about to start: the capture its output goes to, if any. Nothing is
    /// written yet; [`Recorder::attempt_started`] follows once the attempt is on its way.
    fn attempt_output(&mut self, _attempt: &AttemptStart<'_>) -> Option<SharedCapture> {
        None
    }
    /// The attempt is on its way (or about to be run by the caller, `how` says which):
    /// its start is written, with the endings held back before it.
    fn attempt_started(&mut self, attempt: &AttemptStart<'_>, how: StartWrite);
    /// The attempt is about to be run by the caller on this thread: what it returns is
    /// called the moment the task's process is spawned, and writes the start then (or
    /// soon after, with what follows: see [`StartOnSpawn`]), on the caller's thread
    /// while the process starts (no hand-over to another thread).
    /// A start whose write was never called (the spawn failed) is written with the next
    /// record. Without one, the start is written as [`StartWrite::Behind`] says.
    fn attempt_spawning(&mut self, attempt: &AttemptStart<'_>) -> Option<StartOnSpawn> {
        self.attempt_started(attempt, StartWrite::Behind);
        None
    }
    /// The attempt ended.
    fn attempt_finished(&mut self, attempt: &AttemptStart<'_>, end: &AttemptEnd);
    /// Writes whatever the recorder held back; called before the chain waits (for a
    /// task, for a retry pause), so records never lag behind a wait.
    fn flush(&mut self);
    /// A task instance changed state without an attempt (skipped, waiting, abandoned).
    fn instance_status(
        &mut self,
        run_id: &str,
        task: &str,
        file: &str,
        instance: u32,
        status: InstanceStatus,
    );
    /// Whether `task` of this job already succeeded (in this boot only, when asked):
    /// the records decide `frequency = once | once-per-boot`.
    fn succeeded_before(&mut self, task: &str, this_boot_only: bool) -> bool;
    /// A task instance with `after` or `unless` events was decided; these are its
    /// events as they stood. Recorders that keep no events ignore it.
    fn events_waited(&mut self, _waited: &EventsWaited<'_>) {}
    /// The run ended with `status` and runner's exit code for it.
    fn run_finished(
        &mut self,
        run_id: &str,
        status: RunStatus,
        exit_code: i32,
        stopped: SystemTime,
    );
}

/// Records nothing: `--no-record`, and the fallback when no store can be opened.
#[derive(Debug, Default)]
pub(crate) struct NullRecorder;

impl Recorder for NullRecorder {
    fn run_started(&mut self, _run: &RunStart<'_>) {}
    fn attempt_started(&mut self, _attempt: &AttemptStart<'_>, _how: StartWrite) {}
    fn attempt_finished(&mut self, _attempt: &AttemptStart<'_>, _end: &AttemptEnd) {}
    fn flush(&mut self) {}
    fn instance_status(
        &mut self,
        _run_id: &str,
        _task: &str,
        _file: &str,
        _instance: u32,
        _status: InstanceStatus,
    ) {
    }
    fn succeeded_before(&mut self, _task: &str, _this_boot_only: bool) -> bool {
        false
    }
    fn run_finished(
        &mut self,
        _run_id: &str,
        _status: RunStatus,
        _exit_code: i32,
        _stopped: SystemTime,
    ) {
    }
}
