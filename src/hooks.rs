//! Calling `task_hook` (and the `post_*_hook`s) with the contract's JSON payload.
//!
//! The command is split like a shell would split it, but no shell runs: the JSON is one
//! argv element, so no task name can break the quoting. A hook is supervised like a task
//! (own process group, `hook_timeout`); its failure is logged and changes nothing else.
//! It runs with the environment its task gets (`[env]` and the `RUNNER_*` variables), as
//! Mozilla's runner gave its hook the tasks' environment.

use std::ffi::OsStr;
use std::time::Duration;

use serde::Serialize;

use crate::exec::{Command, Exit, Limits, Output, Supervisor};

/// The JSON object a task hook receives (section 5 of the contract).
#[derive(Debug, Serialize)]
pub(crate) struct TaskHookPayload<'a> {
    /// The task's file name.
    pub(crate) task: &'a str,
    /// The task's name.
    pub(crate) name: &'a str,
    /// The chain attempt number, from 1.
    pub(crate) try_num: u32,
    /// The task's `max_tries`.
    pub(crate) max_retries: u32,
    /// `RUNNING` before the attempt, the result after it.
    pub(crate) result: &'a str,
    /// The run this attempt belongs to.
    pub(crate) run_id: &'a str,
    /// The exit code (post call only; null when killed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) exit_code: Option<Option<i32>>,
    /// Seconds the attempt took (post call only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) duration: Option<f64>,
}

/// Calls `hook` with `payload` serialized as its last argument and waits for it; `env` is
/// laid over the inherited environment.
pub(crate) fn call<'a>(
    supervisor: &Supervisor,
    hook: &[String],
    payload: &impl Serialize,
    env: impl IntoIterator<Item = (&'a OsStr, &'a OsStr)>,
    timeout: Duration,
    grace: Duration,
) {
    let Some((program, args)) = hook.split_first() else {
        return;
    };
    let json = match serde_json::to_string(payload) {
        Ok(json) => json,
        Err(e) => {
            log::warn!("cannot encode the hook payload: {e}");
            return;
        }
    };
    let mut cmd = Command::new(program);
    cmd.args(args).arg(&json).envs(env);
    let limits = Limits {
        max_time: Some(timeout),
        kill_grace: grace.min(timeout),
        interrupt_grace: None,
        // A hook that starts something long-lived means it (as a task would).
        leftovers: crate::exec::Leftovers::Keep,
    };
    let report = supervisor.run(cmd, limits, &Output::default());
    if !report.leftovers.is_empty() {
        log::warn!(
            "hook {program} left {} process(es) running: {}",
            report.leftovers.len(),
            crate::exec::describe_leftovers(&report.leftovers)
        );
    }
    match (&report.exit, report.stopped) {
        (_, Some(crate::exec::Stop::Timeout)) => log::warn!(
            "hook {program} was stopped after {:.1}s (hook_timeout is {})",
            report.duration.as_secs_f64(),
            crate::config::duration::display(timeout)
        ),
        (_, Some(crate::exec::Stop::Interrupt(sig))) => {
            log::warn!("hook {program} was stopped: runner received signal {sig}")
        }
        (Exit::Code(0), None) => {}
        (exit, None) => log::warn!("hook {program} {exit}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_payload_has_no_exit_fields_and_post_has_null_exit_code() {
        let mut p = TaskHookPayload {
            task: "10-it's \"x\".sh",
            name: "it's \"x\"",
            try_num: 1,
            max_retries: 5,
            result: "RUNNING",
            run_id: "r1",
            exit_code: None,
            duration: None,
        };
        let pre: serde_json::Value = serde_json::to_value(&p).expect("json");
        assert_eq!(pre["task"], "10-it's \"x\".sh");
        assert!(pre.get("exit_code").is_none());
        p.result = "RETRY";
        p.exit_code = Some(None);
        p.duration = Some(1.5);
        let post: serde_json::Value = serde_json::to_value(&p).expect("json");
        assert!(post["exit_code"].is_null());
        assert_eq!(post["duration"], 1.5);
    }
}
