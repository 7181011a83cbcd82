//! Daemon jobs with `after`, `unless`, `and_every` and `with_params`, and the event a
//! successful job run fires, against the real binary.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::{Daemon, wait_for};

/// The daemon runs in session `s1`, as `fire --session s1` does.
fn start(daemon: &mut Daemon) {
    daemon.start_with_env("runner.json", &[("RUNNER_SESSION", PathBuf::from("s1"))]);
}

fn fire(daemon: &Daemon, event: &str, data: &str) {
    daemon
        .runner(&["fire", event, "--session", "s1", "--data", data])
        .assert_code(0);
}

fn events_file(daemon: &Daemon, run: &serde_json::Value) -> serde_json::Value {
    let path = daemon
        .state_dir()
        .join("runs")
        .join(run["job_name"].as_str().expect("job"))
        .join(run["run_id"].as_str().expect("id"))
        .join("seen.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("RUNNER_EVENTS is JSON")
}

#[test]
fn a_job_with_after_runs_once_its_events_are_fired_with_with_params_merged() {
    let mut daemon = Daemon::new(&[(
        "runner.json",
        r#"{"jobs": {"mount": {
            "command": ["/bin/sh", "-c", "cat \"$RUNNER_EVENTS\" > seen.json"],
            "after": ["disk", "net"],
            "with_params": {"mode": "ro"}
        }, "marker": {"command": ["true"], "and_every": "sync"}}}"#,
    )]);
    start(&mut daemon);
    fire(&daemon, "disk", r#"{"dev": "sdb"}"#);
    // Another session's "net" does not count.
    daemon
        .runner(&["fire", "net", "--session", "elsewhere"])
        .assert_code(0);
    let mut cmd = crate::support::runner();
    cmd.env("RUNNER_SESSION", "s1")
        .arg("--state-dir")
        .arg(daemon.state_dir())
        .args(["jobs", "list", "--config"])
        .arg(daemon.config_dir().join("runner.json"));
    crate::support::Run::of(cmd)
        .assert_code(0)
        .assert_stdout_contains("after disk, net (waiting for net)");
    // The daemon has seen the other session's "net" once it ran marker for a later
    // "sync": the poll that started marker asked about mount's run too.
    fire(&daemon, "sync", "{}");
    assert_eq!(daemon.wait_runs("marker", 1)[0]["status"], "ok");
    assert!(
        daemon.finished_runs("mount").is_empty()
            && !daemon.daemon_log().contains("job \"mount\" started"),
        "net of another session counted: {}",
        daemon.daemon_log()
    );
    fire(&daemon, "net", "{}");
    let runs = daemon.wait_runs("mount", 1);
    assert_eq!(runs[0]["status"], "ok", "{}", daemon.daemon_log());
    assert_eq!(runs[0]["trigger_type"], "event");
    assert_eq!(
        events_file(&daemon, &runs[0]),
        serde_json::json!({"disk": {"dev": "sdb", "mode": "ro"}, "net": {"mode": "ro"}})
    );
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));
}

#[test]
fn a_job_with_unless_does_not_start_once_its_event_was_fired() {
    let mut daemon = Daemon::new(&[(
        "runner.json",
        r#"{"jobs": {
            "guarded": {"command": ["true"], "schedule": "* * * * * *", "unless": ["maintenance"]},
            "free": {"command": ["true"], "schedule": "* * * * * *"}
        }}"#,
    )]);
    // Fired before the daemon starts: stored, so it counts.
    fire(&daemon, "maintenance", "{}");
    start(&mut daemon);
    daemon.wait_runs("free", 3);
    assert!(
        daemon.finished_runs("guarded").is_empty(),
        "{}",
        daemon.daemon_log()
    );
    assert!(daemon.daemon_log().contains("abandoned"));
    let mut cmd = crate::support::runner();
    cmd.env("RUNNER_SESSION", "s1")
        .arg("--state-dir")
        .arg(daemon.state_dir())
        .args(["jobs", "list", "--config"])
        .arg(daemon.config_dir().join("runner.json"));
    crate::support::Run::of(cmd)
        .assert_code(0)
        .assert_stdout_contains("unless maintenance (maintenance fired)");
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));
}

#[test]
fn and_every_starts_a_run_per_firing_and_a_good_run_fires_the_jobs_event() {
    let mut daemon = Daemon::new(&[(
        "runner.json",
        r#"{"jobs": {
            "build": {"command": ["/bin/sh", "-c", "cat \"$RUNNER_EVENTS\" > seen.json; echo '{\"artifact\": 7}' > return_data.json"],
                      "and_every": "push"},
            "deploy": {"command": ["/bin/sh", "-c", "cat \"$RUNNER_EVENTS\" > seen.json"],
                       "after": ["build"]}
        }}"#,
    )]);
    // Fired before the daemon starts: `and_every` counts only later firings.
    fire(&daemon, "push", r#"{"n": 0}"#);
    start(&mut daemon);
    for n in 1..=3 {
        fire(&daemon, "push", &format!("{{\"n\": {n}}}"));
        let runs = daemon.wait_runs("build", n);
        assert_eq!(runs.len(), n, "one run per firing");
        assert_eq!(
            events_file(&daemon, &runs[0]),
            serde_json::json!({"push": {"n": n}})
        );
    }
    // The first good build fired "build", which deploy waited for.
    let deploy = daemon.wait_runs("deploy", 1);
    assert_eq!(deploy[0]["status"], "ok");
    assert_eq!(
        events_file(&daemon, &deploy[0])["build"],
        serde_json::json!({"artifact": 7})
    );
    assert!(wait_for(Duration::from_secs(5), || daemon
        .finished_runs("build")
        .len()
        == 3));
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));
}

#[test]
fn a_job_with_after_added_by_a_reload_waits_and_runs() {
    let mut daemon = Daemon::new(&[(
        "runner.json",
        r#"{"jobs": {"plain": {"command": ["true"]}}}"#,
    )]);
    start(&mut daemon);
    std::fs::write(
        daemon.config_dir().join("runner.json"),
        r#"{"jobs": {"plain": {"command": ["true"]}, "late": {"command": ["true"], "after": ["ready"]}}}"#,
    )
    .expect("rewrite");
    daemon.signal(Signal::SIGHUP);
    assert!(wait_for(Duration::from_secs(20), || daemon
        .daemon_log()
        .contains("configuration reloaded: 2 job(s)")));
    fire(&daemon, "ready", "{}");
    let runs = daemon.wait_runs("late", 1);
    assert_eq!(runs[0]["status"], "ok");
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));
}

#[test]
fn runner_fire_inside_a_run_reaches_the_daemon_in_its_session() {
    // The run's environment is built from scratch: only RUNNER_SESSION and
    // RUNNER_DATABASE from the daemon make this fire land where the daemon looks.
    let fire_cmd = format!(
        "{} fire inner --data '{{\"from\": \"run\"}}'",
        env!("CARGO_BIN_EXE_runner")
    );
    let config = serde_json::json!({"jobs": {
        "first": {"command": ["/bin/sh", "-c", fire_cmd], "schedule": "* * * * * *"},
        "second": {"command": ["/bin/sh", "-c", "cat \"$RUNNER_EVENTS\" > seen.json"],
                   "after": ["inner"]}
    }});
    let mut daemon = Daemon::new(&[("runner.json", &config.to_string())]);
    start(&mut daemon);
    let runs = daemon.wait_runs("second", 1);
    assert_eq!(runs[0]["status"], "ok", "{}", daemon.daemon_log());
    assert_eq!(
        events_file(&daemon, &runs[0]),
        serde_json::json!({"inner": {"from": "run"}})
    );
    let listed = daemon.runner(&["events", "list", "--session", "s1", "--format", "json"]);
    listed.assert_code(0).assert_stdout_contains("\"inner\"");
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));
}
