//! Events: `fire`, `events list`, tasks with `after`/`unless`/`wait_time`, cascades and
//! `RUNNER_EVENTS`, sessions.

use std::time::Duration;

use crate::support::{Chain, wait_for};

/// The newest run's task statuses by name, read while it may still be running.
fn statuses(chain: &Chain) -> Vec<(String, String)> {
    let list = chain.runs_json(&["list", "--limit", "1"]);
    let Some(id) = list[0]["run_id"].as_str() else {
        return Vec::new();
    };
    let show = chain.runs_json(&["show", id]);
    show["tasks"]
        .as_array()
        .map(|tasks| {
            tasks
                .iter()
                .map(|t| {
                    (
                        t["name"].as_str().unwrap_or_default().to_owned(),
                        t["status"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn status_of(chain: &Chain, task: &str) -> Option<String> {
    statuses(chain)
        .into_iter()
        .find(|(name, _)| name == task)
        .map(|(_, status)| status)
}

fn events_json(chain: &Chain, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["events", "list", "--format", "json"];
    all.extend_from_slice(args);
    let run = chain.runner(&all);
    run.assert_code(0);
    serde_json::from_str(&run.stdout()).expect("events list prints JSON")
}

#[test]
fn fire_records_an_event_and_refuses_data_that_is_not_an_object() {
    let chain = Chain::new();
    chain
        .runner(&[
            "fire",
            "disk-up",
            "--data",
            r#"{"dev": "sdb"}"#,
            "--session",
            "s1",
        ])
        .assert_code(0);
    for bad in ["[1, 2]", "\"text\"", "{not json", "3"] {
        chain
            .runner(&["fire", "disk-up", "--data", bad, "--session", "s1"])
            .assert_code(78)
            .assert_stderr_contains("is not a JSON object");
    }
    chain
        .runner(&["fire", "a,b", "--session", "s1"])
        .assert_code(78)
        .assert_stderr_contains("comma");
    let events = events_json(&chain, &["--session", "s1"]);
    assert_eq!(events.as_array().map(Vec::len), Some(1), "{events}");
    assert_eq!(events[0]["name"], "disk-up");
    assert_eq!(events[0]["data"]["dev"], "sdb");
    assert_eq!(events[0]["session"], "s1");
    let table = chain.runner(&["events", "list", "--session", "s1"]);
    table.assert_code(0).assert_stdout_contains("disk-up");
    let yaml = chain.runner(&["events", "list", "--session", "s1", "--format", "yaml"]);
    yaml.assert_code(0).assert_stdout_contains("name: disk-up");
    assert_eq!(
        events_json(&chain, &["--session", "other"])
            .as_array()
            .map(Vec::len),
        Some(0)
    );
}

#[test]
fn twenty_concurrent_fires_lose_nothing() {
    let chain = Chain::new();
    // No store yet: the twenty also race to create and migrate it.
    let children: Vec<_> = (0..20)
        .map(|i| {
            let mut cmd = crate::support::runner();
            cmd.arg("--state-dir")
                .arg(chain.state_dir())
                .args(["-q", "fire", &format!("e{i}"), "--session", "s"])
                .args(["--data", &format!("{{\"n\": {i}}}")])
                .spawn()
                .expect("spawn fire")
        })
        .collect();
    for mut child in children {
        let status = child.wait().expect("wait fire");
        assert!(status.success(), "a fire failed: {status:?}");
    }
    let events = events_json(&chain, &["--session", "s"]);
    let mut names: Vec<String> = events
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("e{i}")).collect();
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn an_event_fired_before_the_run_counts() {
    let chain = Chain::new()
        .task("10-wait.sh", "cat \"$RUNNER_EVENTS\" >> \"$LOG\"")
        .ini("[wait]\nafter = ready\nwait_time = 60");
    chain
        .runner(&["fire", "ready", "--data", r#"{"x": 1}"#])
        .assert_code(0);
    chain.run(&[]).assert_code(0);
    let events: serde_json::Value = serde_json::from_str(&chain.log()).expect("RUNNER_EVENTS");
    assert_eq!(events, serde_json::json!({"ready": {"x": 1}}));
}

#[test]
fn a_waiting_task_wakes_on_fire_and_does_not_block_independent_tasks() {
    let chain = Chain::new()
        .task("10-wait.sh", "echo wait >> \"$LOG\"")
        .task("20-free.sh", "echo free >> \"$LOG\"")
        .task("30-also.sh", "echo also >> \"$LOG\"")
        .ini("[runner]\nparallel = 2\n[wait]\nafter = go\n[also]\nafter = go");
    let mut child = chain.spawn(&[]);
    let waiting = wait_for(Duration::from_secs(30), || {
        status_of(&chain, "wait").as_deref() == Some("waiting")
            && status_of(&chain, "also").as_deref() == Some("waiting")
            && status_of(&chain, "free").as_deref() == Some("finished")
    });
    assert!(waiting, "not waiting as expected: {:?}", statuses(&chain));
    assert_eq!(chain.log_lines(), ["free"], "only the independent task ran");
    chain.runner(&["fire", "go"]).assert_code(0);
    let status = child.wait().expect("wait runner");
    assert_eq!(status.code(), Some(0));
    let mut lines = chain.log_lines();
    lines.sort();
    assert_eq!(lines, ["also", "free", "wait"]);
    assert!(statuses(&chain).iter().all(|(_, s)| s == "finished"));
}

#[test]
fn unless_wins_over_after_and_abandons_dependents_without_failing_the_run() {
    let chain = Chain::new()
        .task("10-guarded.sh", "echo guarded >> \"$LOG\"")
        .task("20-child.sh", "echo child >> \"$LOG\"")
        .task("30-other.sh", "echo other >> \"$LOG\"")
        .ini("[guarded]\nafter = go\nunless = stop\n[child]\ndepends_on = guarded");
    // `stop` first, then `go`, and the other way round: unless wins either way.
    for order in [["stop", "go"], ["go", "stop"]] {
        let session = format!("s-{}", order[0]);
        for event in order {
            chain
                .runner(&["fire", event, "--session", &session])
                .assert_code(0);
        }
        let _ = std::fs::remove_file(chain.log_path());
        let mut cmd = chain.command(&[]);
        cmd.env("RUNNER_SESSION", &session);
        crate::support::Run::of(cmd).assert_code(0);
        assert_eq!(chain.log_lines(), ["other"]);
        let run = chain.last_run();
        assert_eq!(run["status"], "ok");
        let tasks = run["tasks"].as_array().expect("tasks");
        assert_eq!(tasks[0]["status"], "abandoned", "{run}");
        assert_eq!(tasks[1]["status"], "abandoned", "{run}");
        assert_eq!(tasks[2]["status"], "finished", "{run}");
    }
}

#[test]
fn past_wait_time_the_attempt_is_retry() {
    let chain = Chain::new()
        .task("10-wait.sh", "echo ran >> \"$LOG\"")
        .ini("[runner]\nmax_tries = 2\n[wait]\nafter = never\nwait_time = 1");
    let run = chain.run(&[]);
    run.assert_code(1);
    assert_eq!(chain.log(), "", "the task never started");
    let show = chain.last_run();
    assert_eq!(show["status"], "failed");
    let attempts = show["tasks"][0]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{show}");
    for attempt in attempts {
        assert_eq!(attempt["result"], "RETRY");
        assert!(attempt["exit_code"].is_null());
        assert!(
            attempt["note"]
                .as_str()
                .is_some_and(|n| n.contains("never")),
            "{attempt}"
        );
    }
}

#[test]
fn two_tasks_waiting_for_one_event_both_start() {
    let chain = Chain::new()
        .task("10-one.sh", "echo one >> \"$LOG\"")
        .task("20-two.sh", "echo two >> \"$LOG\"")
        .ini("[runner]\nparallel = 3\n[one]\nafter = go\n[two]\nafter = go");
    let mut child = chain.spawn(&[]);
    assert!(wait_for(Duration::from_secs(30), || {
        statuses(&chain)
            .iter()
            .filter(|(_, s)| s == "waiting")
            .count()
            == 2
    }));
    chain.runner(&["fire", "go"]).assert_code(0);
    assert_eq!(child.wait().expect("wait").code(), Some(0));
    let mut lines = chain.log_lines();
    lines.sort();
    assert_eq!(lines, ["one", "two"]);
}

#[test]
fn cascade_data_reaches_a_dependent_task_through_runner_events() {
    let chain = Chain::new()
        .task(
            "10-probe.sh",
            "printf '{\"disk\": \"/dev/sdb\"}' > \"$RUNNER_RESULT\"",
        )
        .task("20-bad.sh", "echo '[1]' > \"$RUNNER_RESULT\"")
        .task("30-use.sh", "cat \"$RUNNER_EVENTS\" > \"$LOG\"")
        .ini("[use]\ndepends_on = probe, bad");
    let run = chain.run(&[]);
    run.assert_code(0)
        .assert_stderr_contains("something other than a JSON object");
    let events: serde_json::Value = serde_json::from_str(&chain.log()).expect("RUNNER_EVENTS");
    assert_eq!(
        events,
        serde_json::json!({"probe": {"disk": "/dev/sdb"}, "bad": {}})
    );
    // The cascades are events of the session, for other chains too.
    let fired = events_json(&chain, &[]);
    let names: Vec<&str> = fired
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["probe", "bad", "use"]);
    assert_eq!(fired[0]["data"]["disk"], "/dev/sdb");
}

#[test]
fn an_event_of_another_session_does_not_count() {
    let chain = Chain::new()
        .task("10-wait.sh", "echo ran >> \"$LOG\"")
        .ini("[runner]\nmax_tries = 1\nsession = mine\n[wait]\nafter = go\nwait_time = 1");
    chain
        .runner(&["fire", "go", "--session", "theirs"])
        .assert_code(0);
    chain.run(&[]).assert_code(1);
    assert_eq!(chain.log(), "");
    chain
        .runner(&["fire", "go", "--session", "mine"])
        .assert_code(0);
    chain.run(&[]).assert_code(0);
    assert_eq!(chain.log_lines(), ["ran"]);
}

#[test]
fn events_older_than_event_keep_days_go_with_old_runs() {
    let chain = Chain::new()
        .task("10-a.sh", "true")
        .ini("[runner]\nevent_keep_days = 7\nsession = s");
    chain
        .runner(&["fire", "old", "--session", "s"])
        .assert_code(0);
    chain
        .runner(&["fire", "new", "--session", "s"])
        .assert_code(0);
    let db = rusqlite::Connection::open(chain.state_dir().join("runner.sqlite3")).expect("db");
    db.execute(
        "UPDATE events SET fired_at = fired_at - 30 * 86400 WHERE name = 'old'",
        [],
    )
    .expect("age");
    drop(db);
    chain.run(&[]).assert_code(0);
    let names: Vec<String> = events_json(&chain, &["--session", "s"])
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(names, ["new", "a"]);
}

#[test]
fn a_task_fires_an_event_that_a_sibling_waits_for() {
    let chain = Chain::new()
        .task("10-waits.sh", "cat \"$RUNNER_EVENTS\" >> \"$LOG\"")
        .task(
            "20-fires.sh",
            &format!(
                "{} -q fire ready --data '{{\"from\": \"sibling\"}}'",
                env!("CARGO_BIN_EXE_runner")
            ),
        )
        .ini("[runner]\nparallel = 2\n[waits]\nafter = ready\nwait_time = 60");
    chain.run(&[]).assert_code(0);
    let events: serde_json::Value = serde_json::from_str(&chain.log()).expect("RUNNER_EVENTS");
    assert_eq!(events, serde_json::json!({"ready": {"from": "sibling"}}));
}

#[test]
fn a_signal_ends_a_chain_that_only_waits() {
    let chain = Chain::new()
        .task("10-wait.sh", "echo ran >> \"$LOG\"")
        .ini("[wait]\nafter = never");
    let mut child = chain.spawn(&[]);
    assert!(wait_for(Duration::from_secs(30), || {
        status_of(&chain, "wait").as_deref() == Some("waiting")
    }));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal");
    let mut status = None;
    assert!(
        wait_for(Duration::from_secs(20), || {
            status = child.try_wait().expect("wait");
            status.is_some()
        }),
        "runner did not stop on SIGTERM while waiting"
    );
    assert_eq!(status.and_then(|s| s.code()), Some(128 + 15));
    assert_eq!(chain.log(), "");
    let run = chain.last_run();
    assert_eq!(run["status"], "interrupted");
    assert_eq!(run["tasks"][0]["status"], "unstarted", "{run}");
}

#[test]
fn a_cascade_waits_out_a_locked_store_and_still_wakes_its_waiter() {
    let chain = Chain::new()
        .task("10-probe.sh", "echo probe >> \"$LOG\"")
        .task("20-use.sh", "echo use >> \"$LOG\"")
        .ini("[runner]\nmax_tries = 1\n[use]\nafter = probe\nwait_time = 60");
    // Creates the store without an event of the chain's session.
    chain
        .runner(&["fire", "setup", "--session", "elsewhere"])
        .assert_code(0);
    let store = chain.state_dir().join("runner.sqlite3");
    let log = chain.log_path();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    // Holds the store until the probe has run (or 60 s): its cascade can only be
    // committed after that, by the recording thread's retries.
    let locker = std::thread::spawn(move || {
        let db = rusqlite::Connection::open(store).expect("open");
        db.execute_batch("BEGIN EXCLUSIVE").expect("lock the store");
        locked_tx.send(()).expect("send");
        let probed = wait_for(Duration::from_secs(60), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("probe"))
        });
        db.execute_batch("COMMIT").expect("unlock");
        probed
    });
    locked_rx.recv().expect("locked");
    let run = chain.run(&[]);
    assert!(
        locker.join().expect("locker"),
        "the probe did not run while the store was locked"
    );
    run.assert_code(0);
    assert_eq!(chain.log_lines(), ["probe", "use"]);
    let fired = events_json(&chain, &[]);
    let names: Vec<&str> = fired
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(names.contains(&"probe"), "no cascade recorded: {fired}");
    assert!(names.contains(&"use"), "no cascade recorded: {fired}");
    let newest = chain.runs_json(&["list", "--limit", "1"]);
    assert_eq!(newest[0]["status"], "ok", "{newest}");
}
