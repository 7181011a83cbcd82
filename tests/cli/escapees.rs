//! A `kill -9` of runner (chain or daemon) leaves no process of a running task behind,
//! not even one that left the task's process group and session (`setsid`, a double fork
//! into a new session): the guardian finds them by the attempt's environment mark. A
//! leftover that a finished task left and runner kept is not the guardian's to stop.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{Chain, Daemon, is_alive, read_pid, wait_for};

/// A task body that starts two escapees, each in a session of its own, and then runs
/// on: `setsid sleep` from the task's shell (its pid in `$LOG.setsid`), and a double fork
/// whose middle process exits at once (the grandchild's pid in `$LOG.daemon`). The
/// task's own pid goes to `$LOG.task` last, once both pids are written.
const ESCAPES: &str = "setsid sleep 1000 &\necho $! > \"$LOG.setsid\"\n\
     sh -c 'setsid sleep 1001 & echo $! > \"$LOG.daemon\"'\n\
     echo $$ > \"$LOG.task\"\nexec sleep 1002";

/// The session a live process belongs to, from `/proc/PID/stat`.
fn session_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the parenthesised command: state, ppid, pgrp, session.
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

/// Waits until each of `pids` leads a session of its own (it has called setsid), so
/// the test checks a real escapee and not a process still in the task's group.
fn assert_escaped(pids: &[i32]) {
    assert!(
        wait_for(Duration::from_secs(20), || pids
            .iter()
            .all(|&pid| session_of(pid) == Some(pid))),
        "the escapees {pids:?} never led sessions of their own: {:?}",
        pids.iter().map(|&p| session_of(p)).collect::<Vec<_>>()
    );
}

/// Waits for every one of `pids` to be gone (a zombie counts as gone: init reaps it).
fn assert_all_gone(what: &str, pids: &[i32]) {
    let gone = wait_for(Duration::from_secs(30), || {
        pids.iter().all(|&pid| !is_alive(pid))
    });
    let alive: Vec<i32> = pids.iter().copied().filter(|&p| is_alive(p)).collect();
    // Leave nothing behind for the next test, whatever the outcome.
    for &pid in &alive {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    assert!(gone, "{what}: still alive after kill -9: {alive:?}");
}

/// The pids of one run of [`ESCAPES`] that wrote its files under `dir` with prefix `log`.
fn escapee_pids(dir: &Path, log: &str) -> (i32, i32, i32) {
    let task = read_pid(&dir.join(format!("{log}.task")));
    let setsid = read_pid(&dir.join(format!("{log}.setsid")));
    let daemon = read_pid(&dir.join(format!("{log}.daemon")));
    (task, setsid, daemon)
}

#[test]
fn kill_9_of_a_chain_ends_processes_that_left_the_group_and_session() {
    let chain = Chain::new()
        .task("10-escape.sh", ESCAPES)
        .ini("[runner]\nkill_grace = 1");
    let mut child = chain.spawn(&[]);
    let (task, setsid, daemon) = escapee_pids(chain.path(), "log");
    assert_escaped(&[setsid, daemon]);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).expect("kill -9");
    child.wait().expect("reap runner");
    assert_all_gone("a chain's task and its escapees", &[task, setsid, daemon]);
}

#[test]
fn kill_9_of_a_chain_ends_escapees_of_parallel_tasks() {
    let chain = Chain::new()
        .task("10-a.sh", &ESCAPES.replace("$LOG", "$LOG.a"))
        .task("10-b.sh", &ESCAPES.replace("$LOG", "$LOG.b"))
        .ini("[runner]\nkill_grace = 1\nparallel = 2");
    let mut child = chain.spawn(&[]);
    let (task_a, setsid_a, daemon_a) = escapee_pids(chain.path(), "log.a");
    let (task_b, setsid_b, daemon_b) = escapee_pids(chain.path(), "log.b");
    assert_escaped(&[setsid_a, daemon_a, setsid_b, daemon_b]);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).expect("kill -9");
    child.wait().expect("reap runner");
    assert_all_gone(
        "two parallel tasks and their escapees",
        &[task_a, setsid_a, daemon_a, task_b, setsid_b, daemon_b],
    );
}

#[test]
fn kill_9_of_a_chain_spares_a_kept_leftover_of_a_finished_task() {
    let chain = Chain::new()
        .task(
            "10-service.sh",
            "setsid sleep 1003 > /dev/null 2>&1 &\necho $! > \"$LOG.service\"",
        )
        .task("20-slow.sh", "echo $$ > \"$LOG.task\"\nexec sleep 1004")
        .ini("[runner]\nkill_grace = 1\nleftovers = keep");
    let mut child = chain.spawn(&[]);
    let service = read_pid(&chain.path().join("log.service"));
    let task = read_pid(&chain.path().join("log.task"));
    assert_escaped(&[service]);
    // The guardian is runner's child that runs in a process group of its own.
    let guardians = children_in_own_group(child.id() as i32, &[task, service]);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).expect("kill -9");
    child.wait().expect("reap runner");
    assert_all_gone("the running task", &[task]);
    // Once the guardian has exited its sweeps are over: the kept service lives on.
    let guardian_done = wait_for(Duration::from_secs(30), || {
        guardians.iter().all(|&g| !is_alive(g))
    });
    let service_alive = is_alive(service);
    let _ = kill(Pid::from_raw(service), Signal::SIGKILL);
    assert!(guardian_done, "the guardian {guardians:?} did not exit");
    assert!(
        service_alive,
        "the kept leftover {service} of a finished task was killed with runner"
    );
}

/// Children of `parent` other than `tasks` that lead their own process group.
fn children_in_own_group(parent: i32, tasks: &[i32]) -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(threads) = fs::read_dir(format!("/proc/{parent}/task")) else {
        return pids;
    };
    for thread in threads.flatten() {
        let children = fs::read_to_string(thread.path().join("children")).unwrap_or_default();
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let pgrp = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().nth(2))
                .and_then(|p| p.parse::<i32>().ok());
            if !tasks.contains(&pid) && pgrp == Some(pid) {
                pids.push(pid);
            }
        }
    }
    assert!(!pids.is_empty(), "runner {parent} has no guardian child");
    pids
}

#[test]
fn kill_9_of_the_daemon_ends_processes_that_left_the_group_and_session() {
    let script = ESCAPES.replace("$LOG", "@ROOT@/log").replace('"', "\\\"");
    let yaml = format!(
        "jobs:\n  escape:\n    command: [\"/bin/sh\", \"-c\", \"{}\"]\n    max_execution_grace: 1\n",
        script.replace('\n', "\\n")
    );
    let mut daemon = Daemon::new(&[("runner.yaml", &yaml)]);
    daemon.start("runner.yaml");
    daemon.runner(&["trigger", "escape"]).assert_code(0);
    let (task, setsid, grandchild) = escapee_pids(daemon.path(), "log");
    assert_escaped(&[setsid, grandchild]);
    daemon.signal(Signal::SIGKILL);
    daemon.wait();
    assert_all_gone("a daemon run and its escapees", &[task, setsid, grandchild]);
}

#[test]
fn kill_9_of_the_daemon_ends_a_chain_jobs_tasks_that_ignore_sigterm() {
    // The daemon runs a chain job as a runner child with a guardian of its own; that
    // runner and its guardian carry the daemon's mark and are killed with the rest after
    // the daemon guardian's one-second grace. The task and its escapee ignore SIGTERM and
    // carry only the inner runner's mark, so they are found only through the daemon's
    // mark kept in front of it.
    let task = "#!/bin/sh\ntrap '' TERM\n\
        setsid sh -c 'trap \"\" TERM; echo $$ > @ROOT@/log.setsid; exec sleep 1000' &\n\
        echo $$ > @ROOT@/log.task\nexec sleep 1002\n";
    let mut daemon = Daemon::new(&[
        (
            "runner.yaml",
            "jobs:\n  provision:\n    taskdir: tasks.d\n    config: chain.ini\n    max_execution_grace: 1\n",
        ),
        ("chain.ini", "[runner]\nkill_grace = 60\nmax_tries = 1\n"),
        ("tasks.d/10-stubborn.sh", task),
    ]);
    let path = daemon.config_dir().join("tasks.d/10-stubborn.sh");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
    daemon.start("runner.yaml");
    daemon.runner(&["trigger", "provision"]).assert_code(0);
    let task = read_pid(&daemon.path().join("log.task"));
    let setsid = read_pid(&daemon.path().join("log.setsid"));
    assert_escaped(&[setsid]);
    daemon.signal(Signal::SIGKILL);
    daemon.wait();
    assert_all_gone(
        "a chain job's stubborn task and its escapee",
        &[task, setsid],
    );
}
