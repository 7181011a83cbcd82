//! What a chain tells whoever watches it: each task attempt as it starts and ends, and
//! the run's end. The chain only reports; a view (the live view on a terminal, in
//! `commands::live`) decides what to draw. Calls come from the chain's own thread.

use std::time::Duration;

use crate::record::{RunStatus, TaskResult};

/// One task attempt that starts.
pub(crate) struct TaskStart<'a> {
    /// The task's name.
    pub(crate) task: &'a str,
    /// This try, from 1.
    pub(crate) try_num: u32,
    /// The task's `max_tries`.
    pub(crate) max_tries: u32,
    /// The task's `max_time`, if it has one.
    pub(crate) max_time: Option<Duration>,
}

/// Watches a chain run.
pub(crate) trait Observer: Sync {
    /// Run `run_id` starts.
    fn run_started(&self, _run_id: &str) {}
    /// A task attempt starts.
    fn task_started(&self, _start: &TaskStart<'_>) {}
    /// `task` waits for the `after` events `missing`, at most `wait_time`.
    fn task_waiting(&self, _task: &str, _missing: &[String], _wait_time: Option<Duration>) {}
    /// `task` will not run in this run (an `unless` event, an abandoned dependency).
    fn task_abandoned(&self, _task: &str) {}
    /// The attempt of `task` that started as `try_num` ended (or its wait ran out).
    fn task_finished(&self, _task: &str, _try_num: u32, _result: TaskResult, _took: Duration) {}
    /// Run `run_id` ended with `status`.
    fn run_finished(&self, _run_id: &str, _status: RunStatus) {}
}

/// Watches nothing: for chains nobody looks at (a daemon's, tests).
pub(crate) struct Unobserved;

impl Observer for Unobserved {}
