//! Timeouts, signals and cleanup: no task process may outlive what ended it.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{Chain, is_alive, read_pid, wait_for};

/// A task that leaves a grandchild in its group and records both pids.
const SPAWNS_GRANDCHILD: &str =
    "sleep 300 &\necho $! > \"$LOG.grandchild\"\necho $$ > \"$LOG.task\"\nsleep 300";

#[test]
fn timeout_kills_the_whole_group_and_retries() {
    let chain = Chain::new()
        .task("10-slow.sh", SPAWNS_GRANDCHILD)
        .task("halt.sh", "echo halt >> \"$LOG\"")
        .ini("[runner]\nmax_time = 1\nmax_tries = 1\nkill_grace = 2");
    let run = chain.run(&[]);
    run.assert_code(1).assert_stderr_contains("timed out");
    assert!(
        run.elapsed < Duration::from_secs(30),
        "took {:?}",
        run.elapsed
    );
    let grandchild = read_pid(&chain.path().join("log.grandchild"));
    let task = read_pid(&chain.path().join("log.task"));
    assert!(
        wait_for(Duration::from_secs(10), || !is_alive(grandchild)
            && !is_alive(task)),
        "task {task} or grandchild {grandchild} survived the timeout"
    );
    assert_eq!(chain.log_lines(), ["halt"]);
}

#[test]
fn timeout_escalates_to_sigkill_after_grace() {
    // The task ignores SIGTERM, so only SIGKILL after kill_grace ends it.
    let chain = Chain::new()
        .task(
            "10-stubborn.sh",
            "trap '' TERM\necho $$ > \"$LOG.task\"\nwhile :; do sleep 0.1; done",
        )
        .ini("[runner]\nmax_time = 1\nmax_tries = 1\nkill_grace = 1");
    let run = chain.run(&[]);
    run.assert_code(1);
    assert!(
        run.elapsed >= Duration::from_secs(2),
        "grace not honoured: {:?}",
        run.elapsed
    );
    assert!(
        run.elapsed < Duration::from_secs(30),
        "took {:?}",
        run.elapsed
    );
    let task = read_pid(&chain.path().join("log.task"));
    assert!(wait_for(Duration::from_secs(10), || !is_alive(task)));
}

#[test]
fn zero_max_time_means_no_limit() {
    let chain = Chain::new()
        .task("10-a.sh", "sleep 1.2; echo done >> \"$LOG\"")
        .ini("[runner]\nmax_time = 1\n[a]\nmax_time = 0");
    chain.run(&[]).assert_code(0);
    assert_eq!(chain.log_lines(), ["done"]);
}

fn interrupt_case(signal: Signal, expected_code: i32) {
    let chain = Chain::new()
        .task("10-slow.sh", SPAWNS_GRANDCHILD)
        .task("20-next.sh", "echo next >> \"$LOG\"")
        .task("halt.sh", "echo halt >> \"$LOG\"")
        .ini("[runner]\nkill_grace = 2");
    let child = chain
        .command(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let task = read_pid(&chain.path().join("log.task"));
    let grandchild = read_pid(&chain.path().join("log.grandchild"));
    kill(Pid::from_raw(child.id() as i32), signal).expect("signal runner");
    let start = Instant::now();
    let output = child.wait_with_output().expect("wait");
    assert!(start.elapsed() < Duration::from_secs(20));
    assert_eq!(
        output.status.code(),
        Some(expected_code),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        wait_for(Duration::from_secs(10), || !is_alive(task)
            && !is_alive(grandchild)),
        "a task process survived {signal}"
    );
    assert!(
        chain.log_lines().is_empty(),
        "no task (nor halt) may run after an interrupt: {:?}",
        chain.log_lines()
    );
}

#[test]
fn sigterm_stops_the_task_group_and_exits_143() {
    interrupt_case(Signal::SIGTERM, 143);
}

#[test]
fn sigint_exits_130() {
    interrupt_case(Signal::SIGINT, 130);
}

#[test]
fn sighup_exits_129() {
    interrupt_case(Signal::SIGHUP, 129);
}

#[test]
fn interrupt_during_retry_pause_exits_at_once() {
    let chain = Chain::new()
        .task("10-a.sh", "echo a >> \"$LOG\"; exit 1")
        .ini("[runner]\nsleep_time = 300\nmax_tries = 3");
    let mut child = chain.spawn_logged(&[], "runner.log");
    // The pause has begun once runner says when it retries.
    assert!(
        wait_for(Duration::from_secs(20), || chain
            .read("runner.log")
            .contains("retrying the chain in")),
        "runner must announce the retry: {}",
        chain.read("runner.log")
    );
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("signal");
    let start = Instant::now();
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(143));
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn kill_9_of_runner_leaves_no_task_behind() {
    let chain = Chain::new()
        .task("10-slow.sh", SPAWNS_GRANDCHILD)
        .ini("[runner]\nkill_grace = 1");
    let mut child = chain.spawn(&[]);
    let task = read_pid(&chain.path().join("log.task"));
    let grandchild = read_pid(&chain.path().join("log.grandchild"));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).expect("kill -9");
    child.wait().expect("reap runner");
    assert!(
        wait_for(Duration::from_secs(10), || !is_alive(task)
            && !is_alive(grandchild)),
        "task {task} or grandchild {grandchild} outlived a killed runner"
    );
}

#[test]
fn a_task_that_kills_runner_at_once_is_still_ended_by_the_guardian() {
    // runner gets no chance to do anything after the start: the task's group must have
    // been listed with the guardian before its program ran.
    let chain = Chain::new()
        .task(
            "10-a.sh",
            "echo $$ > \"$LOG.task\"; kill -9 $PPID; exec sleep 300",
        )
        .ini("[runner]\nkill_grace = 1");
    let mut child = chain.spawn(&[]);
    let status = child.wait().expect("reap runner");
    assert_eq!(status.signal(), Some(9), "the task killed runner");
    let task = read_pid(&chain.path().join("log.task"));
    assert!(
        wait_for(Duration::from_secs(10), || !is_alive(task)),
        "task {task} outlived runner"
    );
}

#[test]
fn task_output_passes_through_separately() {
    let chain = Chain::new().task("10-a.sh", "echo to-stdout; echo to-stderr >&2");
    let run = chain.run(&[]);
    run.assert_code(0)
        .assert_stdout_contains("to-stdout")
        .assert_stderr_contains("to-stderr");
    assert!(!run.stdout().contains("to-stderr"));
}

#[test]
fn output_to_one_pipe_keeps_the_order_it_was_written_in() {
    // runner's stdout and stderr are one pipe (`2>&1`): both streams of a recorded task
    // come through it, and into the capture, in the order the task wrote them.
    let chain = Chain::new().task(
        "10-a.sh",
        "echo out-1; echo err-1 >&2; echo out-2; echo err-2 >&2",
    );
    let (read, write) = std::io::pipe().expect("pipe");
    let mut cmd = chain.command(&[]);
    cmd.stdout(write.try_clone().expect("dup")).stderr(write);
    let status = cmd.status().expect("run");
    drop(cmd);
    assert!(status.success());
    let mut all = String::new();
    std::io::Read::read_to_string(&mut { read }, &mut all).expect("read");
    let written = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("out-") || l.starts_with("err-"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(written(&all), ["out-1", "err-1", "out-2", "err-2"], "{all}");
    let run = chain.last_run();
    let id = run["run_id"].as_str().expect("run id");
    let output = chain.runner(&["runs", "output", id]);
    output.assert_code(0);
    assert_eq!(
        written(&output.stdout()),
        ["out-1", "err-1", "out-2", "err-2"]
    );
}

#[test]
fn stdin_is_dev_null() {
    let chain = Chain::new().task(
        "10-a.sh",
        "if read line; then echo got-input >> \"$LOG\"; else echo eof >> \"$LOG\"; fi",
    );
    let mut cmd = chain.command(&[]);
    cmd.stdin(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn");
    // Keep our end of stdin open: a task reading runner's stdin would hang here.
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    assert_eq!(chain.log_lines(), ["eof"]);
}

#[test]
fn sigterm_to_runner_stops_what_left_the_group_too() {
    // A child that called setsid and a double-forked daemon are outside the task's
    // process group; they still go, and the grace is not waited out.
    let chain = Chain::new()
        .task(
            "10-a.sh",
            "touch \"$LOG.pids\"\nsetsid sh -c 'echo $$ >> \"$LOG.pids\"; exec sleep 300' &\n( setsid sh -c 'echo $$ >> \"$LOG.pids\"; exec sleep 300' & )\nwhile [ $(wc -l < \"$LOG.pids\") -lt 2 ]; do sleep 0.01; done\necho ready > \"$LOG.ready\"\nsleep 300",
        )
        .ini("[runner]\nkill_grace = 30");
    let mut child = chain.spawn(&[]);
    wait_ready(&chain.path().join("log.ready"));
    let pids: Vec<i32> = std::fs::read_to_string(chain.path().join("log.pids"))
        .expect("pids")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert_eq!(pids.len(), 2);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("signal");
    let start = Instant::now();
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(143));
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "kill_grace (30 s) was waited out: {:?}",
        start.elapsed()
    );
    for pid in pids {
        assert!(
            wait_for(Duration::from_secs(10), || !is_alive(pid)),
            "{pid} escaped the interrupt"
        );
    }
}

/// Waits until a task wrote `ready` into `path`.
fn wait_ready(path: &std::path::Path) {
    assert!(
        wait_for(Duration::from_secs(20), || std::fs::read_to_string(path)
            .is_ok_and(|s| s.contains("ready"))),
        "the task did not get ready"
    );
}
