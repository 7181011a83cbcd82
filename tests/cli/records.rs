//! Every run, task instance and attempt is recorded and can be read back.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::support::{Chain, is_alive, read_pid, skip, wait_for};

fn statuses(tasks: &Value) -> Vec<(String, String)> {
    tasks
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| {
            (
                t["instance"].as_str().expect("instance").to_owned(),
                t["status"].as_str().expect("status").to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_run_is_recorded_with_tasks_and_attempts() {
    let chain = Chain::new()
        .task("10-a.sh", "echo out-a; echo err-a >&2")
        .task(
            "20-flaky.sh",
            "if [ ! -e \"$LOG.m\" ]; then : > \"$LOG.m\"; exit 7; fi",
        )
        .task(
            "30-c.sh",
            "echo out-c; echo '{\"answer\": 42}' > \"$RUNNER_RESULT\"",
        )
        .ini("[runner]\nname = rec");
    chain.run(&[]).assert_code(0);
    let run = chain.last_run();
    assert_eq!(run["job_name"], "rec");
    assert_eq!(run["status"], "ok");
    assert_eq!(run["exit_code"], 0);
    assert_eq!(run["trigger_type"], "manual");
    let (start, stop) = (run["start_time"].as_f64(), run["stop_time"].as_f64());
    assert!(start.is_some() && stop.is_some() && stop >= start, "{run}");
    assert_eq!(
        statuses(&run["tasks"]),
        [
            ("a#0".to_owned(), "finished".to_owned()),
            ("flaky#0".to_owned(), "finished".to_owned()),
            ("c#0".to_owned(), "finished".to_owned())
        ]
    );
    let flaky = &run["tasks"][1]["attempts"];
    assert_eq!(flaky.as_array().map(Vec::len), Some(2));
    assert_eq!(flaky[0]["try_num"], 1);
    assert_eq!(flaky[0]["exit_code"], 7);
    assert_eq!(flaky[0]["result"], "RETRY");
    assert_eq!(flaky[1]["result"], "OK");
    assert_eq!(run["tasks"][2]["attempts"][0]["result_data"]["answer"], 42);

    let id = run["run_id"].as_str().expect("id");
    let output = chain.runner(&["runs", "output", &id[..8], "--task", "c"]);
    output.assert_code(0);
    assert_eq!(output.stdout(), "out-c\n", "one attempt: its output alone");
    let output = chain.runner(&["runs", "output", &id[..8], "--task", "a"]);
    assert!(output.stdout().contains("out-a") && output.stdout().contains("err-a"));
    let output = chain.runner(&["runs", "output", id]);
    assert!(
        output.stdout().contains("==> a#0 try 1 <=="),
        "{}",
        output.stdout()
    );
    assert!(output.stdout().contains("==> a#0 try 2 <=="));

    let table = chain.runner(&["runs", "show", &id[..6]]);
    table
        .assert_code(0)
        .assert_stdout_contains("flaky#0")
        .assert_stdout_contains("RETRY");
    chain
        .runner(&["runs", "list"])
        .assert_code(0)
        .assert_stdout_contains(&id[..8]);
    let yaml = chain.runner(&["runs", "show", id, "--format", "yaml"]);
    yaml.assert_code(0).assert_stdout_contains("job_name: rec");
}

#[test]
fn each_ending_has_its_status() {
    for (body, status, code) in [
        ("exit 2", "halted", 1),
        ("exit 3", "exited", 1),
        ("exit 1", "failed", 1),
        ("exit 0", "ok", 0),
    ] {
        let chain = Chain::new()
            .task("10-a.sh", body)
            .ini("[runner]\nmax_tries = 2");
        chain.run(&[]).assert_code(code);
        let run = chain.last_run();
        assert_eq!(run["status"], status, "{body}");
        assert_eq!(run["exit_code"], code, "{body}");
    }
}

#[test]
fn a_task_that_cannot_be_started_is_recorded_with_its_attempt() {
    // The first task takes the second one's file away: its spawn fails, and the start
    // the spawn would have written is written with the attempt's end.
    let chain = Chain::new()
        .task("10-a.sh", "rm -f \"$RUNNER_TASKDIR/20-gone.sh\"")
        .task("20-gone.sh", "true")
        .ini("[runner]\nmax_tries = 1");
    chain.run(&[]).assert_code(1);
    let run = chain.last_run();
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(
        statuses(&run["tasks"]),
        [
            ("a#0".to_owned(), "finished".to_owned()),
            ("gone#0".to_owned(), "failed".to_owned())
        ]
    );
    let attempts = run["tasks"][1]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{run}");
    assert!(attempts[0]["start_time"].as_f64().is_some(), "{run}");
    assert!(attempts[0]["stop_time"].as_f64().is_some(), "{run}");
}

#[test]
fn quick_tasks_and_a_long_one_are_recorded_while_it_runs() {
    // Quick tasks' records are gathered into few transactions; none of them, nor the
    // start of the long task after them, may wait for the long task to end.
    let mut chain = Chain::new();
    for i in 1..=9 {
        chain = chain.task(&format!("1{i}-quick{i}.sh"), "true");
    }
    let chain = chain.task("20-long.sh", "echo $$ > \"$LOG.long\"; sleep 30");
    let mut child = chain.spawn(&[]);
    read_pid(&chain.path().join("log.long"));
    let mut run = Value::Null;
    let recorded = wait_for(Duration::from_secs(20), || {
        run = chain.last_run();
        run["tasks"].as_array().is_some_and(|tasks| {
            tasks
                .iter()
                .all(|t| t["attempts"].as_array().map(Vec::len) == Some(1))
        })
    });
    assert!(
        recorded,
        "every started attempt is recorded while the last one runs: {run}"
    );
    let tasks = run["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 10, "{run}");
    for quick in &tasks[..9] {
        assert_eq!(quick["status"], "finished", "{run}");
        assert_eq!(quick["attempts"][0]["result"], "OK", "{run}");
    }
    assert_eq!(tasks[9]["status"], "running", "{run}");
    assert!(tasks[9]["attempts"][0]["stop_time"].is_null(), "{run}");
    // On disk, not only in runner's memory: a kill -9 keeps all of it.
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).expect("kill");
    child.wait().expect("wait");
    let id = run["run_id"].as_str().expect("id").to_owned();
    std::fs::remove_file(chain.taskdir().join("20-long.sh")).expect("remove");
    chain.run(&[]).assert_code(0);
    let killed = chain.runs_json(&["show", &id]);
    assert_eq!(killed["status"], "lost", "{killed}");
    let attempts: usize = killed["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["attempts"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(attempts, 10, "{killed}");
}

fn attempts_of(run: &Value) -> usize {
    run["tasks"].as_array().map_or(0, |tasks| {
        tasks
            .iter()
            .map(|t| t["attempts"].as_array().map_or(0, Vec::len))
            .sum()
    })
}

#[test]
fn a_store_that_refuses_attempts_for_good_is_one_warning() {
    let chain = Chain::new().task("10-a.sh", "true");
    chain.run(&[]).assert_code(0);
    let db = rusqlite::Connection::open(chain.state_dir().join("runner.sqlite3")).expect("open");
    db.execute_batch(
        "CREATE TRIGGER no_attempts BEFORE INSERT ON attempts \
         BEGIN SELECT RAISE(ABORT, 'refused'); END;",
    )
    .expect("trigger");
    drop(db);
    std::fs::remove_file(chain.taskdir().join("10-a.sh")).expect("remove");
    let chain = chain.task("20-long.sh", "sleep 0.5");
    let run = chain.run(&[]);
    run.assert_code(0);
    assert_eq!(
        run.stderr().matches("cannot record this run").count(),
        1,
        "{}",
        run.stderr()
    );
}

/// Runs `chain`, whose task writes its pid to `$LOG.pid` and is then stopped with a long
/// grace; its start must be in the store during the grace.
fn start_is_recorded_during_the_grace(chain: &Chain) {
    let mut child = chain.spawn(&[]);
    read_pid(&chain.path().join("log.pid"));
    let mut run = Value::Null;
    let recorded = wait_for(Duration::from_secs(5), || {
        run = chain.last_run();
        attempts_of(&run) == 1
    });
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let _ = child.wait();
    assert!(
        recorded,
        "the start is not in the store during the grace: {run}"
    );
}

#[test]
fn a_start_is_recorded_while_leftovers_are_stopped() {
    let chain = Chain::new()
        .ini("[runner]\nleftovers = kill\nkill_grace = 8")
        .task(
            "10-a.sh",
            "(trap '' TERM; exec sleep 30) & echo $! > \"$LOG.pid\"",
        );
    start_is_recorded_during_the_grace(&chain);
}

#[test]
fn a_start_is_recorded_while_an_interrupted_task_is_stopped() {
    let chain = Chain::new().ini("[runner]\nkill_grace = 8").task(
        "10-a.sh",
        "trap '' TERM; kill -TERM $PPID; echo $$ > \"$LOG.pid\"; exec sleep 30",
    );
    start_is_recorded_during_the_grace(&chain);
}

#[test]
fn a_runner_result_fifo_is_refused_not_waited_on() {
    let chain = Chain::new()
        .task("10-fifo.sh", "mkfifo \"$RUNNER_RESULT\"")
        .task("20-next.sh", "echo '{\"n\": 2}' > \"$RUNNER_RESULT\"");
    let run = chain.run(&[]);
    run.assert_code(0)
        .assert_stderr_contains("left a RUNNER_RESULT that cannot be read (not a regular file)");
    let recorded = chain.last_run();
    assert!(
        recorded["tasks"][0]["attempts"][0]["result_data"].is_null(),
        "{recorded}"
    );
    assert_eq!(
        recorded["tasks"][1]["attempts"][0]["result_data"]["n"], 2,
        "{recorded}"
    );
}

#[test]
fn interrupted_run_is_recorded_as_interrupted() {
    let chain = Chain::new()
        .task("10-slow.sh", "echo $$ > \"$LOG.task\"; sleep 300")
        .task("20-never.sh", "true");
    let mut child = chain.spawn(&[]);
    read_pid(&chain.path().join("log.task"));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("signal");
    assert_eq!(child.wait().expect("wait").code(), Some(143));
    let run = chain.last_run();
    assert_eq!(run["status"], "interrupted");
    assert_eq!(run["exit_code"], 143);
    assert_eq!(
        statuses(&run["tasks"]),
        [
            ("slow#0".to_owned(), "failed".to_owned()),
            ("never#0".to_owned(), "unstarted".to_owned())
        ]
    );
}

#[test]
fn unknown_and_ambiguous_run_ids_are_refused() {
    let chain = Chain::new().task("10-a.sh", "true");
    chain.run(&[]).assert_code(0);
    chain
        .runner(&["runs", "show", "zzzz"])
        .assert_code(1)
        .assert_stderr_contains("no recorded run matches \"zzzz\"");
    // Runs until two ids share a first character, then ask for that character.
    let ids: Vec<String> = loop {
        chain.run(&[]).assert_code(0);
        let list = chain.runs_json(&["list", "--limit", "100"]);
        let ids: Vec<String> = list
            .as_array()
            .expect("list")
            .iter()
            .map(|r| r["run_id"].as_str().expect("id").to_owned())
            .collect();
        let firsts: std::collections::BTreeSet<char> = ids
            .iter()
            .map(|i| i.chars().next().expect("char"))
            .collect();
        if firsts.len() < ids.len() {
            break ids;
        }
    };
    let shared = ids
        .iter()
        .map(|i| i.chars().next().expect("char"))
        .find(|c| ids.iter().filter(|i| i.starts_with(*c)).count() > 1)
        .expect("a shared first character");
    chain
        .runner(&["runs", "show", &shared.to_string()])
        .assert_code(1)
        .assert_stderr_contains("matches several runs");
}

#[test]
fn output_is_capped_keeping_head_and_tail() {
    let chain = Chain::new()
        .task(
            "10-loud.sh",
            "echo FIRST-LINE; i=0; while [ $i -lt 20000 ]; do echo \"line $i of noise\"; i=$((i+1)); done; echo LAST-LINE",
        )
        .ini("[runner]\nlog_max_bytes = 4096");
    let run = chain.run(&[]);
    run.assert_code(0)
        .assert_stdout_contains("line 19999 of noise");
    let record = chain.last_run();
    let path = record["tasks"][0]["attempts"][0]["output"]
        .as_str()
        .expect("output path");
    let captured = std::fs::read_to_string(path).expect("capture");
    assert!(
        captured.len() < 4096 + 200,
        "capture is capped: {}",
        captured.len()
    );
    assert!(captured.starts_with("FIRST-LINE\n"));
    assert!(captured.trim_end().ends_with("LAST-LINE"));
    assert!(captured.contains("bytes of output omitted"));
}

#[test]
fn a_run_whose_last_task_is_running_shows_it_running_and_the_one_before_it_ended() {
    // The start of a task (with the end of the one before it) is written while its
    // process starts; it must be there while the task runs, not only once it ends.
    let chain = Chain::new().task("10-a.sh", "echo a").task(
        "20-b.sh",
        "touch \"$LOG.b\"\nwhile [ ! -e \"$LOG.go\" ]; do sleep 0.05; done",
    );
    let mut runner = chain.spawn(&[]);
    assert!(wait_for(Duration::from_secs(20), || chain
        .path()
        .join("log.b")
        .exists()));
    let mut seen = Value::Null;
    let shown = wait_for(Duration::from_secs(20), || {
        seen = chain.last_run();
        seen["status"] == "running"
            && statuses(&seen["tasks"])
                == [
                    ("a#0".to_owned(), "finished".to_owned()),
                    ("b#0".to_owned(), "running".to_owned()),
                ]
    });
    std::fs::write(chain.path().join("log.go"), "").expect("go");
    assert_eq!(runner.wait().expect("runner").code(), Some(0));
    assert!(shown, "while b ran: {seen}");
    let run = chain.last_run();
    assert_eq!(run["status"], "ok");
    assert_eq!(
        statuses(&run["tasks"]),
        [
            ("a#0".to_owned(), "finished".to_owned()),
            ("b#0".to_owned(), "finished".to_owned()),
        ]
    );
}

#[test]
fn tail_follows_a_running_run_until_it_ends() {
    let chain = Chain::new().task(
        "10-a.sh",
        "echo before\nwhile [ ! -e \"$LOG.go\" ]; do sleep 0.05; done\necho after",
    );
    let mut runner = chain.spawn(&[]);
    assert!(wait_for(Duration::from_secs(20), || {
        chain
            .runs_json(&["list"])
            .as_array()
            .is_some_and(|l| l.len() == 1)
    }));
    let mut tail = crate::support::runner();
    tail.arg("--state-dir")
        .arg(chain.state_dir())
        .args(["runs", "tail"]);
    let mut tail = tail.stdout(Stdio::piped()).spawn().expect("spawn tail");
    let mut stdout = tail.stdout.take().expect("stdout");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let seen = std::sync::Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .expect("lock")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    // Only once tail is following (it printed the output so far) does the task go on.
    assert!(wait_for(Duration::from_secs(20), || seen
        .lock()
        .expect("lock")
        .contains("before")));
    std::fs::write(chain.path().join("log.go"), "").expect("go");
    assert_eq!(runner.wait().expect("runner").code(), Some(0));
    assert_eq!(
        tail.wait().expect("tail ends when the run ends").code(),
        Some(0)
    );
    reader.join().expect("reader");
    let text = seen.lock().expect("lock").clone();
    assert!(text.contains("before") && text.contains("after"), "{text}");
    assert!(text.contains(" a#0 try 1 started at "), "{text}");
    assert!(text.contains(" a#0 try 1 OK (exit 0) after "), "{text}");
    assert!(text.contains(" tasks.d ended ok (exit 0) after "), "{text}");
}

#[test]
fn tail_exits_with_the_run_result_and_says_when_nothing_runs() {
    let chain = Chain::new()
        .task("10-bad.sh", "echo nope; exit 5")
        .ini("[runner]\nmax_tries = 1");
    chain
        .runner(&["runs", "tail"])
        .assert_code(0)
        .assert_stderr_contains("no run is running");
    chain.run(&[]).assert_code(1);
    let id = chain.last_run()["run_id"].as_str().expect("id").to_owned();
    chain
        .runner(&["runs", "tail", &id[..8]])
        .assert_code(1)
        .assert_stdout_contains("bad#0 try 1 RETRY (exit 5)")
        .assert_stdout_contains("nope\n")
        .assert_stdout_contains("ended failed (exit 1)");
    chain
        .runner(&["runs", "tail"])
        .assert_code(0)
        .assert_stderr_contains("no run is running");
}

#[test]
fn list_filters_by_status_and_start_time_and_shows_the_zone() {
    let chain = Chain::new()
        .task("10-t.sh", "exit ${FAIL:-0}")
        .ini("[runner]\nmax_tries = 1");
    chain.run(&[]).assert_code(0);
    let mut failing = chain.command(&[]);
    failing.env("FAIL", "1");
    crate::support::Run::of(failing).assert_code(1);
    let failed = chain.runs_json(&["list", "--status", "failed"]);
    assert_eq!(failed.as_array().map(Vec::len), Some(1), "{failed}");
    assert_eq!(failed[0]["status"], "failed");
    let both = chain.runs_json(&["list", "--status", "failed", "--status", "ok"]);
    assert_eq!(both.as_array().map(Vec::len), Some(2), "{both}");
    assert_eq!(
        chain
            .runs_json(&["list", "--since", "1h"])
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let future = chain.runs_json(&["list", "--since", "2999-01-01"]);
    assert_eq!(future.as_array().map(Vec::len), Some(0), "{future}");
    chain
        .runner(&["runs", "list", "--status", "bogus"])
        .assert_code(2);
    chain
        .runner(&["runs", "list", "--since", "yesterday-ish"])
        .assert_code(2);
    // Times in tables carry their UTC offset.
    let table = chain.runner(&["runs", "list"]);
    table.assert_code(0);
    let line = table.stdout().lines().nth(1).unwrap_or_default().to_owned();
    let has_offset = line.split_whitespace().any(|w| {
        w.len() == 6 && (w.starts_with('+') || w.starts_with('-')) && w.as_bytes()[3] == b':'
    });
    assert!(has_offset, "no UTC offset in {line:?}");
}

#[test]
fn a_killed_runner_leaves_a_lost_run_that_the_next_run_finalizes() {
    let chain = Chain::new().task("10-slow.sh", "echo $$ > \"$LOG.task\"; sleep 300");
    let mut child = chain.spawn(&[]);
    let task = read_pid(&chain.path().join("log.task"));
    // The attempt's start is written within the gathering window (5 ms) of the task's
    // start, while it runs; a kill -9 inside that window may lose it (the run stays
    // recorded, and lost). This test is about what happens after a start is recorded.
    assert!(
        wait_for(Duration::from_secs(10), || {
            chain.last_run()["tasks"][0]["attempts"][0]["start_time"].is_f64()
        }),
        "the attempt's start is recorded while the task runs"
    );
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).expect("kill -9");
    child.wait().expect("reap");
    assert!(wait_for(Duration::from_secs(10), || !is_alive(task)));
    let list = chain.runs_json(&["list"]);
    assert_eq!(list[0]["status"], "lost", "{list}");
    assert!(list[0]["stop_time"].is_null());

    // The next run of the job moves it from runs_running to runs, still lost.
    std::fs::write(chain.taskdir().join("10-slow.sh"), "#!/bin/sh\ntrue\n").expect("rewrite");
    chain
        .run(&[])
        .assert_code(0)
        .assert_stderr_contains("recorded as lost");
    let list = chain.runs_json(&["list"]);
    let statuses: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["status"].as_str().expect("s"))
        .collect();
    assert_eq!(statuses, ["ok", "lost"]);
    let db = rusqlite::Connection::open(chain.state_dir().join("runner.sqlite3")).expect("open");
    let running: i64 = db
        .query_row("SELECT count(*) FROM runs_running", [], |r| r.get(0))
        .expect("count");
    assert_eq!(running, 0);
    // dsari's tools compute with stop_time and exit_code: a lost run has both, the
    // stop time being the last sign of life (here: the attempt's start).
    let lost = &list[1];
    assert_eq!(lost["exit_code"], -1, "{lost}");
    let (start, stop) = (
        lost["start_time"].as_f64().expect("start"),
        lost["stop_time"].as_f64().expect("a stop_time"),
    );
    assert!(stop >= start, "{lost}");
    let id = lost["run_id"].as_str().expect("id");
    let shown = chain.runs_json(&["show", id]);
    let attempt_start = shown["tasks"][0]["attempts"][0]["start_time"]
        .as_f64()
        .expect("attempt start");
    assert!(stop >= attempt_start, "{shown}");
}

#[test]
fn frequency_once_and_once_per_boot_skip_after_success() {
    let chain = Chain::new()
        .task("10-setup.sh", "echo setup >> \"$LOG\"")
        .task("20-boot.sh", "echo boot >> \"$LOG\"")
        .task("30-always.sh", "echo always >> \"$LOG\"")
        .ini("[setup]\nfrequency = once\n[boot]\nfrequency = once-per-boot");
    chain.run(&[]).assert_code(0);
    chain
        .run(&[])
        .assert_code(0)
        .assert_stderr_contains("skipped");
    assert_eq!(chain.log_lines(), ["setup", "boot", "always", "always"]);
    let run = chain.last_run();
    assert_eq!(
        statuses(&run["tasks"]),
        [
            ("setup#0".to_owned(), "skipped".to_owned()),
            ("boot#0".to_owned(), "skipped".to_owned()),
            ("always#0".to_owned(), "finished".to_owned())
        ]
    );
    // A different boot: once-per-boot runs again, once does not.
    let db = rusqlite::Connection::open(chain.state_dir().join("runner.sqlite3")).expect("open");
    db.execute("UPDATE run_meta SET boot_id = 'an-earlier-boot'", [])
        .expect("update");
    chain.run(&[]).assert_code(0);
    assert_eq!(
        chain.log_lines(),
        ["setup", "boot", "always", "always", "boot", "always"]
    );
}

#[test]
fn failed_once_task_runs_again() {
    let chain = Chain::new()
        .task("10-setup.sh", "echo setup >> \"$LOG\"; [ -e \"$LOG.ok\" ]")
        .ini("[runner]\nmax_tries = 1\n[setup]\nfrequency = once");
    chain.run(&[]).assert_code(1);
    std::fs::write(chain.path().join("log.ok"), "").expect("ok");
    chain.run(&[]).assert_code(0);
    chain.run(&[]).assert_code(0);
    assert_eq!(chain.log_lines(), ["setup", "setup"]);
}

#[test]
fn retention_keeps_the_newest_runs_and_removes_their_output() {
    let chain = Chain::new()
        .task("10-a.sh", "echo hi")
        .ini("[runner]\nkeep_runs = 2");
    for _ in 0..5 {
        chain.run(&[]).assert_code(0);
    }
    let list = chain.runs_json(&["list", "--limit", "100"]);
    let ids: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["run_id"].as_str().expect("id"))
        .collect();
    // Pruning runs at the start of a run: two finished runs kept, plus the newest.
    assert_eq!(ids.len(), 3, "{ids:?}");
    let dirs = std::fs::read_dir(chain.state_dir().join("runs/tasks.d"))
        .expect("runs dir")
        .count();
    assert_eq!(dirs, 3, "output of pruned runs is removed");
}

#[test]
fn no_record_writes_nothing() {
    let chain = Chain::new().task("10-a.sh", "echo a >> \"$LOG\"");
    chain.run(&["--no-record"]).assert_code(0);
    assert_eq!(chain.log_lines(), ["a"]);
    assert!(!chain.state_dir().join("runner.sqlite3").exists());
    let list = chain.runs_json(&["list"]);
    assert_eq!(list, serde_json::json!([]));
}

#[test]
fn an_unusable_store_warns_once_and_the_chain_keeps_its_exit_code() {
    // A state "directory" that is a file: neither the lock nor the store can be made.
    let chain = Chain::new().task("10-a.sh", "echo a >> \"$LOG\"; exit 3");
    std::fs::write(chain.state_dir(), "not a directory").expect("write");
    let run = chain.run(&[]);
    run.assert_code(1);
    assert_eq!(chain.log_lines(), ["a"]);
    assert_eq!(
        run.stderr().matches("cannot record").count(),
        1,
        "{}",
        run.stderr()
    );

    // A store file that is not a database.
    let chain = Chain::new().task("10-a.sh", "echo a >> \"$LOG\"");
    std::fs::create_dir(chain.state_dir()).expect("mkdir");
    std::fs::write(chain.state_dir().join("runner.sqlite3"), vec![b'x'; 8192]).expect("garbage");
    let run = chain.run(&[]);
    run.assert_code(0);
    assert_eq!(
        run.stderr().matches("cannot record").count(),
        1,
        "{}",
        run.stderr()
    );
    assert_eq!(chain.log_lines(), ["a"]);
}

#[test]
fn a_store_locked_past_the_busy_timeout_is_survived() {
    let chain = Chain::new().task("10-a.sh", "echo a >> \"$LOG\"");
    chain.run(&[]).assert_code(0);
    let db = rusqlite::Connection::open(chain.state_dir().join("runner.sqlite3")).expect("open");
    db.execute_batch("BEGIN EXCLUSIVE").expect("lock the store");
    let run = chain.run(&[]);
    run.assert_code(0)
        .assert_stderr_contains("cannot write the run store for now")
        .assert_stderr_contains("written by a background runner");
    assert_eq!(chain.log_lines(), ["a", "a"]);
    db.execute_batch("COMMIT").expect("unlock");
    // The finisher writes the second run once the store is writable; the first stays.
    let recorded = wait_for(Duration::from_secs(60), || {
        chain.runs_json(&["list"]).as_array().is_some_and(|l| {
            l.len() == 2 && l.iter().all(|r| r["status"] == "ok" && r["exit_code"] == 0)
        })
    });
    assert!(recorded, "{:#}", chain.runs_json(&["list"]));
    assert!(
        wait_for(Duration::from_secs(30), || spool_files(&chain).is_empty()),
        "the spool file was not removed: {:?}",
        spool_files(&chain)
    );
}

/// The records a runner left for its finisher, not yet written.
fn spool_files(chain: &Chain) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(chain.state_dir().join("spool"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// The pids of the finishers writing this chain's pending records.
fn finishers(chain: &Chain) -> Vec<i32> {
    let root = chain.state_dir().to_string_lossy().into_owned();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("internal-finish-records") && c.contains(&root)
            })
        })
        .filter(|pid| is_alive(*pid))
        .collect()
}

/// Six tasks of half a second; each appends `N SECONDS` to `$LOG` when it ends.
fn timed_chain() -> Chain {
    let mut chain = Chain::new();
    for n in 0..6 {
        chain = chain.task(
            &format!("{}-t{n}.sh", 10 + n * 10),
            &format!("sleep 0.5; echo {n} $(date +%s.%N) >> \"$LOG\""),
        );
    }
    chain.ini("[runner]\nmax_tries = 1")
}

/// When each task of [`timed_chain`]'s last run ended.
fn task_ends(chain: &Chain) -> Vec<f64> {
    let lines = chain.log_lines();
    lines[lines.len().saturating_sub(6)..]
        .iter()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// Holds an exclusive lock on the store from the moment the first task of the chain's
/// next run ended until told to let go (or 120 s); sends the moment it locked.
fn lock_after_first_task(
    chain: &Chain,
) -> (
    std::sync::mpsc::Receiver<f64>,
    std::sync::mpsc::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let store = chain.state_dir().join("runner.sqlite3");
    let log = chain.log_path();
    let before = chain.log_lines().len();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let locker = std::thread::spawn(move || {
        let db = rusqlite::Connection::open(store).expect("open");
        let first_ended = wait_for(Duration::from_secs(60), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.lines().count() > before)
        });
        assert!(first_ended, "the first task never ended");
        db.execute_batch("BEGIN EXCLUSIVE").expect("lock the store");
        locked_tx.send(now()).expect("send");
        let _ = release_rx.recv_timeout(Duration::from_secs(120));
        db.execute_batch("COMMIT").expect("unlock");
    });
    (locked_rx, release_tx, locker)
}

#[test]
fn a_store_locked_mid_chain_neither_stalls_the_chain_nor_holds_its_exit() {
    let chain = timed_chain();
    chain.run(&[]).assert_code(0);
    let (locked, release, locker) = lock_after_first_task(&chain);
    let run = chain.run(&[]);
    let exited = now();
    let locked = locked.recv().expect("locked");
    run.assert_code(0);
    let ends = task_ends(&chain);
    assert_eq!(ends.len(), 6, "{:?}", chain.log_lines());
    // Before, the first write after the lock was taken waited 2 s, and the exit waited
    // 10 s for the lock: five tasks of 0.5 s after the lock took 14.6 s.
    let worst_gap = ends.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(
        worst_gap < 2.0,
        "a task waited {worst_gap:.2}s after the one before it (tasks take 0.5s): {ends:?}"
    );
    let after_lock = exited - locked;
    assert!(
        after_lock < 7.0,
        "the chain needed {after_lock:.2}s after the store was locked for 2.5s of tasks"
    );
    run.assert_stderr_contains("written by a background runner");
    // The lock outlived the chain; once it is let go, the run ends as it did.
    release.send(()).expect("release");
    locker.join().expect("locker");
    let recorded = wait_for(Duration::from_secs(60), || {
        let run = chain.last_run();
        run["status"] == "ok" && run["exit_code"] == 0
    });
    assert!(recorded, "{:#}", chain.last_run());
    let run = chain.last_run();
    let tasks = run["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 6, "{run:#}");
    for task in tasks {
        assert_eq!(task["status"], "finished", "{run:#}");
        assert_eq!(
            task["attempts"].as_array().map(Vec::len),
            Some(1),
            "{run:#}"
        );
    }
    assert!(
        wait_for(Duration::from_secs(30), || spool_files(&chain).is_empty()
            && finishers(&chain).is_empty()),
        "the finisher is left: {:?} {:?}",
        spool_files(&chain),
        finishers(&chain)
    );
}

#[test]
fn records_handed_on_survive_a_kill_9_of_their_finisher() {
    let chain = timed_chain();
    chain.run(&[]).assert_code(0);
    let (locked, release, locker) = lock_after_first_task(&chain);
    let run = chain.run(&[]);
    locked.recv().expect("locked");
    run.assert_code(0)
        .assert_stderr_contains("written by a background runner");
    let mut pids = Vec::new();
    assert!(
        wait_for(Duration::from_secs(30), || {
            pids = finishers(&chain);
            !pids.is_empty()
        }),
        "no finisher runs"
    );
    for pid in &pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    assert!(
        wait_for(Duration::from_secs(30), || finishers(&chain).is_empty()),
        "the finisher survived kill -9"
    );
    assert_eq!(spool_files(&chain).len(), 1, "the records are kept");
    release.send(()).expect("release");
    locker.join().expect("locker");
    // The next run of the job writes them first, then its own.
    chain.run(&[]).assert_code(0);
    let list = chain.runs_json(&["list"]);
    let runs = list.as_array().expect("list");
    assert_eq!(runs.len(), 3, "{list:#}");
    for run in runs {
        assert_eq!(run["status"], "ok", "{list:#}");
        assert_eq!(run["exit_code"], 0, "{list:#}");
    }
    let handed = chain.runs_json(&["show", runs[1]["run_id"].as_str().expect("id")]);
    for task in handed["tasks"].as_array().expect("tasks") {
        assert_eq!(
            task["attempts"].as_array().map(Vec::len),
            Some(1),
            "{handed:#}"
        );
    }
    assert!(spool_files(&chain).is_empty(), "{:?}", spool_files(&chain));
}

/// The newest run must be recorded with the chain's real result.
fn assert_newest_run(chain: &Chain, status: &str, exit: i64, tasks: usize) {
    let run = chain.last_run();
    assert_eq!(run["status"], status, "{run:#}");
    assert_eq!(run["exit_code"], exit, "{run:#}");
    let instances = run["tasks"].as_array();
    assert_eq!(instances.map(Vec::len), Some(tasks), "{run:#}");
}

#[test]
fn a_store_locked_for_a_while_neither_stalls_the_chain_nor_loses_its_end() {
    let chain = Chain::new()
        .task("10-a.sh", "echo a >> \"$LOG\"")
        .task("20-b.sh", "echo b >> \"$LOG\"")
        .task("30-c.sh", "echo c >> \"$LOG\"");
    chain.run(&[]).assert_code(0);
    let store = chain.state_dir().join("runner.sqlite3");
    let log = chain.log_path();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    // Holds the store until the whole chain has run (or 60 s), then lets go.
    let locker = std::thread::spawn(move || {
        let db = rusqlite::Connection::open(store).expect("open");
        db.execute_batch("BEGIN EXCLUSIVE").expect("lock the store");
        locked_tx.send(()).expect("send");
        let all_ran = crate::support::wait_for(std::time::Duration::from_secs(60), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.lines().count() >= 6)
        });
        db.execute_batch("COMMIT").expect("unlock");
        all_ran
    });
    locked_rx.recv().expect("locked");
    let run = chain.run(&[]);
    assert!(
        locker.join().expect("locker"),
        "the chain waited for the store instead of running its tasks"
    );
    run.assert_code(0);
    assert_newest_run(&chain, "ok", 0, 3);
}

#[test]
fn a_full_disk_under_the_store_does_not_lose_the_runs_end() {
    if !crate::support::is_root() {
        skip("a_full_disk_under_the_store: mounting a small tmpfs needs root");
        return;
    }
    let chain = Chain::new()
        .task(
            "10-fill.sh",
            "dd if=/dev/zero of=\"$FILL\" bs=64k 2>/dev/null; echo filled >> \"$LOG\"",
        )
        .task(
            "20-free.sh",
            "rm -f \"$FILL\"; echo freed >> \"$LOG\"; exit 1",
        )
        .ini("[runner]\nmax_tries = 1");
    let disk = chain.path().join("disk");
    std::fs::create_dir(&disk).expect("mkdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&disk)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        skip("a_full_disk_under_the_store: cannot mount a tmpfs here");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(disk.clone());
    let state = disk.join("state");
    let _ = chain.command(&[]); // writes the configuration
    let run = |chain: &Chain| {
        let mut cmd = crate::support::runner();
        cmd.arg("--state-dir")
            .arg(&state)
            .arg("-c")
            .arg(chain.config_path())
            .arg(chain.taskdir())
            .env("LOG", chain.log_path())
            .env("FILL", disk.join("fill"));
        crate::support::Run::of(cmd)
    };
    run(&chain).assert_code(1);
    assert_eq!(chain.log_lines(), ["filled", "freed"]);
    let mut cmd = crate::support::runner();
    cmd.arg("--state-dir")
        .arg(&state)
        .args(["runs", "list", "--format", "json"]);
    let listed = crate::support::Run::of(cmd);
    listed.assert_code(0);
    let list: serde_json::Value = serde_json::from_str(&listed.stdout()).expect("json");
    assert_eq!(list[0]["status"], "failed", "{list:#}");
    assert_eq!(list[0]["exit_code"], 1, "{list:#}");
}

#[test]
fn keep_days_prunes_old_runs_and_the_state_dir_is_private() {
    let chain = Chain::new()
        .task("10-a.sh", "echo hi")
        .ini("[runner]\nkeep_days = 7");
    chain.run(&[]).assert_code(0);
    let mode = std::fs::metadata(chain.state_dir())
        .expect("state dir")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o700
    );
    // Age the first run by thirty days.
    let db = rusqlite::Connection::open(chain.state_dir().join("runner.sqlite3")).expect("db");
    db.execute("UPDATE runs SET start_time = start_time - 30 * 86400", [])
        .expect("age");
    drop(db);
    chain.run(&[]).assert_code(0);
    let list = chain.runs_json(&["list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
}

#[test]
fn state_dir_from_the_configuration_is_used_when_no_flag_or_env_says_otherwise() {
    let chain = Chain::new().task("10-a.sh", "true");
    let configured = chain.path().join("configured-state");
    let chain = chain.ini(&format!("[runner]\nstate_dir = {}", configured.display()));
    let _ = chain.command(&[]); // writes the configuration
    let mut cmd = crate::support::runner();
    cmd.arg("-c").arg(chain.config_path()).arg(chain.taskdir());
    crate::support::Run::of(cmd).assert_code(0);
    assert!(configured.join("runner.sqlite3").exists());
    // The environment wins over the configuration.
    let from_env = chain.path().join("env-state");
    let mut cmd = crate::support::runner();
    cmd.env("RUNNER_STATE_DIR", &from_env)
        .arg("-c")
        .arg(chain.config_path())
        .arg(chain.taskdir());
    crate::support::Run::of(cmd).assert_code(0);
    assert!(from_env.join("runner.sqlite3").exists());
}

#[test]
fn a_kill_9_of_runner_as_its_chain_ends_on_a_locked_store_leaves_a_sound_record() {
    let chain = timed_chain();
    chain.run(&[]).assert_code(0);
    let (locked, release, locker) = lock_after_first_task(&chain);
    let mut child = chain.spawn(&[]);
    locked.recv().expect("locked");
    let all_ran = wait_for(Duration::from_secs(60), || chain.log_lines().len() >= 12);
    assert!(all_ran, "{:?}", chain.log_lines());
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let _ = child.wait();
    release.send(()).expect("release");
    locker.join().expect("locker");
    // Whatever the kill interrupted, the next run leaves no run unfinished: the killed
    // one ends as it did if its records were handed on, else as lost.
    assert!(
        wait_for(Duration::from_secs(60), || finishers(&chain).is_empty()),
        "a finisher is left"
    );
    chain.run(&[]).assert_code(0);
    let list = chain.runs_json(&["list"]);
    let runs = list.as_array().expect("list");
    assert_eq!(runs.len(), 3, "{list:#}");
    assert!(
        runs[1]["status"] == "ok" || runs[1]["status"] == "lost",
        "{list:#}"
    );
    assert_eq!(runs[0]["status"], "ok", "{list:#}");
    let killed = chain.runs_json(&["show", runs[1]["run_id"].as_str().expect("id")]);
    for task in killed["tasks"].as_array().expect("tasks") {
        assert!(
            task["attempts"].as_array().map_or(0, Vec::len) <= 1,
            "{killed:#}"
        );
    }
    assert!(spool_files(&chain).is_empty(), "{:?}", spool_files(&chain));
}

#[test]
fn a_long_chain_checkpoints_its_store_while_it_runs() {
    // The recorder leaves checkpoints to a thread of their own: pages reach the database
    // file during the chain, not only when the last connection closes at its end. And the
    // WAL starts over now and then: a checkpoint beside a stream of commits never copies
    // all of it, and the recorder's own bound (4,000 frames) must still apply.
    let mut chain = Chain::new();
    for i in 0..1200 {
        chain = chain.task(&format!("t{i:04}"), "");
    }
    let chain = chain.task(
        "t9999",
        "cd \"$(dirname \"$LOG\")/state\" && stat -c %s runner.sqlite3 > \"$LOG.size\" && stat -c %s runner.sqlite3-wal > \"$LOG.wal\"",
    );
    chain.run(&[]).assert_code(0);
    let size = |name: &str| -> u64 { chain.read(name).trim().parse().expect("a size") };
    // A file that no checkpoint reached is one page: everything else is in the WAL. The
    // schema alone is more than 16 pages, the first 200 steps' records more still.
    let db = size("log.size");
    assert!(db > 64 * 1024, "the database file is {db} bytes");
    // 1,200 steps write some 6,000 frames: a WAL that never started over would be ~25 MB.
    let wal = size("log.wal");
    let frame = 4096 + 24;
    assert!(wal <= 32 + 4_000 * frame, "the WAL is {wal} bytes");
    let run = chain.last_run();
    assert_eq!(run["status"], "ok");
    let tasks = run["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 1201);
    assert!(tasks.iter().all(|t| t["status"] == "finished"), "{run}");
}

#[test]
fn a_task_that_closes_its_output_early_is_waited_for_and_runner_keeps_no_pipe_after_it() {
    // runner holds its own copy of each capture pipe's write end while a task runs, so
    // the end of a task's output is not taken for its exit, and drops it at the reap.
    // The chain goes on only once the quiet task has exited (20-b finds its mark), what
    // it wrote before closing is captured, and runner's pipes, counted by each task from
    // its parent's /proc entry, do not grow from task to task. A task can run before
    // runner's spawn has returned, while spawn's own descriptors are still open and the
    // task's pidfd not yet: each task waits for the pidfd, and counts only pipes, so that
    // a database connection another thread opens meanwhile does not count either.
    let count = "i=0; until ls -l /proc/$PPID/fd | grep -q pidfd || [ $i -ge 1000 ]; do \
                 sleep 0.01; i=$((i+1)); done; \
                 ls -l /proc/$PPID/fd | grep -c pipe: >> \"$LOG.fds\"";
    let chain = Chain::new()
        .task("05-first.sh", count)
        .task(
            "10-quiet.sh",
            "echo BEFORE; echo TO-STDERR >&2; exec >&- 2>&-; sleep 0.3; touch \"$LOG.done\"",
        )
        .task(
            "20-b.sh",
            &format!("test -e \"$LOG.done\" || exit 1; {count}"),
        )
        .task("30-c.sh", count)
        .task("40-d.sh", count);
    chain.run(&[]).assert_code(0);
    let record = chain.last_run();
    assert_eq!(record["status"], "ok", "{record}");
    let path = record["tasks"][1]["attempts"][0]["output"]
        .as_str()
        .expect("output path");
    let captured = std::fs::read_to_string(path).expect("capture");
    assert!(captured.contains("BEFORE"), "{captured:?}");
    assert!(captured.contains("TO-STDERR"), "{captured:?}");
    let counts: Vec<String> = std::fs::read_to_string(chain.path().join("log.fds"))
        .expect("counts")
        .lines()
        .map(|l| l.trim().to_owned())
        .collect();
    assert_eq!(counts.len(), 4, "{counts:?}");
    assert!(
        counts.iter().all(|c| *c == counts[0]),
        "runner's pipes grew from task to task: {counts:?}"
    );
}

#[test]
fn quick_attempts_written_with_their_ends_keep_their_output_and_cascades() {
    // Tasks this quick end before their start is written: each attempt is stored as one
    // finished row. A silent attempt names no output file; one that spoke names its own.
    let chain = Chain::new()
        .task("10-quiet.sh", "true")
        .task("20-talk.sh", "echo said")
        .task("30-still.sh", "true");
    chain.run(&[]).assert_code(0);
    let db = rusqlite::Connection::open(chain.state_dir().join("runner.sqlite3")).expect("open");
    // Name, instance status, output path, stop time, result.
    type Row = (String, String, Option<String>, Option<f64>, Option<String>);
    let rows: Vec<Row> = db
        .prepare(
            "SELECT i.name, i.status, a.output_path, a.stop_time, a.result
             FROM attempts a JOIN task_instances i ON i.id = a.instance_id ORDER BY a.id",
        )
        .expect("prepare")
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(names, ["quiet", "talk", "still"], "{rows:?}");
    for (name, status, output, stop, result) in &rows {
        assert_eq!(status, "finished", "{name}: {rows:?}");
        assert!(stop.is_some(), "{name} has no stop time: {rows:?}");
        assert_eq!(result.as_deref(), Some("OK"), "{name}: {rows:?}");
        assert_eq!(output.is_some(), name == "talk", "{name}: {rows:?}");
    }
    let talk = rows[1].2.as_deref().expect("talk's output");
    assert_eq!(std::fs::read_to_string(talk).expect("read"), "said\n");
    let cascades: i64 = db
        .query_row(
            "SELECT count(*) FROM events WHERE source LIKE 'cascade %'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(cascades, 3);
}
