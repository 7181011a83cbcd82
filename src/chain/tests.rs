//! The chain loop against a recorder that only takes notes: what the chain reports, in
//! which order, for each way a run can end. The tasks are real shell scripts run by the
//! real supervisor; only the store is left out.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::{Chain, ChainResult};
use crate::config::ChainConfig;
use crate::exec::{Guardian, Supervisor};
use crate::interrupt::Interrupt;
use crate::plan::Plan;
use crate::record::{
    AttemptEnd, AttemptStart, InstanceStatus, Recorder, RunStart, RunStatus, StartWrite,
};
use crate::taskdir::TaskDir;

/// Writes down every call, one line each.
#[derive(Default)]
struct Notes {
    lines: Vec<String>,
    /// Tasks `succeeded_before` says yes for.
    done_before: Vec<String>,
}

impl Recorder for Notes {
    fn run_started(&mut self, run: &RunStart<'_>) {
        let tasks: Vec<&str> = run.tasks.iter().map(|(name, _)| *name).collect();
        self.lines.push(format!(
            "run {} {}: {}",
            run.run_id,
            run.job,
            tasks.join(" ")
        ));
    }
    fn attempt_started(&mut self, attempt: &AttemptStart<'_>, _how: StartWrite) {
        self.lines.push(format!(
            "start {}#{} try {}",
            attempt.task, attempt.instance, attempt.try_num
        ));
    }
    fn attempt_finished(&mut self, attempt: &AttemptStart<'_>, end: &AttemptEnd) {
        self.lines.push(format!(
            "end {} try {}: {} {:?}",
            attempt.task,
            attempt.try_num,
            end.result.as_str(),
            end.exit_code
        ));
    }
    fn flush(&mut self) {}
    fn instance_status(
        &mut self,
        _run_id: &str,
        task: &str,
        _file: &str,
        _instance: u32,
        status: InstanceStatus,
    ) {
        self.lines.push(format!("{task}: {}", status.as_str()));
    }
    fn succeeded_before(&mut self, task: &str, _this_boot_only: bool) -> bool {
        self.done_before.iter().any(|t| t == task)
    }
    fn run_finished(
        &mut self,
        run_id: &str,
        status: RunStatus,
        exit_code: i32,
        _stopped: std::time::SystemTime,
    ) {
        self.lines
            .push(format!("finished {run_id}: {status} {exit_code}"));
    }
}

/// Runs a task directory of `(file, shell body)` with `ini` once, as run "r1" of job "j".
fn run(tasks: &[(&str, &str)], ini: &str, notes: &mut Notes) -> ChainResult {
    let dir = tempfile::tempdir().expect("tempdir");
    let taskdir = dir.path().join("tasks");
    std::fs::create_dir(&taskdir).expect("mkdir");
    for (file, body) in tasks {
        let path = taskdir.join(file);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write task");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let ini_path = dir.path().join("runner.ini");
    std::fs::write(&ini_path, ini).expect("write ini");
    let config = ChainConfig::load(Some(&ini_path)).expect("config");
    let scanned = TaskDir::scan(&taskdir, &config.runner.halt_task).expect("scan");
    let plan = Plan::build(&scanned, &config).expect("plan");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).expect("mkdir");
    let state = dir.path().join("state");
    let events = crate::events::Events::new(
        &state,
        &crate::store::Location::in_state_dir(&state),
        "s",
        "h",
    );
    let chain = Chain {
        plan: &plan,
        config: &config,
        taskdir: &scanned.path,
        job: "j",
        session: "s",
        exe: std::path::PathBuf::from("/bin/false"),
        supervisor: Supervisor::new(Interrupt::new(), Arc::new(Guardian::none())),
        scratch,
        events: &events,
        observer: &crate::chain::Unobserved,
    };
    chain.run("r1", false, notes, &mut StdRng::seed_from_u64(1))
}

const QUICK: &str = "[runner]\nsleep_time = 0\nretry_jitter = 0\nmax_tries = 2\n";

#[test]
fn a_good_chain_reports_each_attempt_in_order_then_ok() {
    let mut notes = Notes::default();
    let result = run(
        &[("10-a.sh", "exit 0"), ("20-b.sh", "exit 0")],
        QUICK,
        &mut notes,
    );
    assert_eq!(result, ChainResult::Ok);
    assert_eq!(
        notes.lines,
        [
            "run r1 j: a b",
            "start a#0 try 1",
            "end a try 1: OK Some(0)",
            "start b#0 try 1",
            "end b try 1: OK Some(0)",
            "finished r1: ok 0",
        ]
    );
}

#[test]
fn a_failing_task_retries_the_chain_then_gives_up_and_halts() {
    let mut notes = Notes::default();
    let result = run(
        &[
            ("10-a.sh", "exit 0"),
            ("20-b.sh", "exit 1"),
            ("halt.sh", "exit 0"),
        ],
        QUICK,
        &mut notes,
    );
    assert_eq!(result, ChainResult::Failed);
    assert_eq!(result.exit_code(), 1);
    assert_eq!(
        notes.lines,
        [
            "run r1 j: a b",
            "start a#0 try 1",
            "end a try 1: OK Some(0)",
            "start b#0 try 1",
            "end b try 1: RETRY Some(1)",
            "start a#0 try 2",
            "end a try 2: OK Some(0)",
            "start b#0 try 2",
            "end b try 2: RETRY Some(1)",
            "start halt#0 try 1",
            "end halt try 1: OK Some(0)",
            "finished r1: failed 1",
        ]
    );
}

#[test]
fn exit_2_halts_and_exit_3_stops_without_the_halt_task() {
    let tasks = |code: &'static str| {
        [
            ("10-a.sh", code),
            ("20-never.sh", "exit 0"),
            ("halt.sh", "exit 0"),
        ]
    };
    let mut notes = Notes::default();
    assert_eq!(
        run(&tasks("exit 2"), QUICK, &mut notes),
        ChainResult::Halted
    );
    assert_eq!(
        notes.lines,
        [
            "run r1 j: a never",
            "start a#0 try 1",
            "end a try 1: HALT Some(2)",
            "start halt#0 try 1",
            "end halt try 1: OK Some(0)",
            "finished r1: halted 1",
        ]
    );

    let mut notes = Notes::default();
    assert_eq!(
        run(&tasks("exit 3"), QUICK, &mut notes),
        ChainResult::Exited
    );
    assert_eq!(
        notes.lines,
        [
            "run r1 j: a never",
            "start a#0 try 1",
            "end a try 1: EXIT Some(3)",
            "finished r1: exited 1",
        ]
    );
}

#[test]
fn a_once_task_the_records_know_is_skipped_without_an_attempt() {
    let mut notes = Notes {
        done_before: vec!["a".to_owned()],
        ..Notes::default()
    };
    let ini = format!("{QUICK}[a]\nfrequency = once\n");
    let result = run(
        &[("10-a.sh", "exit 1"), ("20-b.sh", "exit 0")],
        &ini,
        &mut notes,
    );
    assert_eq!(result, ChainResult::Ok);
    assert_eq!(
        notes.lines,
        [
            "run r1 j: a b",
            "a: skipped",
            "start b#0 try 1",
            "end b try 1: OK Some(0)",
            "finished r1: ok 0",
        ]
    );
}
