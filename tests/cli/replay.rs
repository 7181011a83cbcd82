//! `runner replay` and `runner skip`: a failed instance replayed or skipped, the chain
//! resumed in the same run, refusals, and the post_*_hooks.

use std::time::Duration;

use crate::support::{Chain, wait_for};

/// a passes, b halts unless $FIX is set, c depends on b and prints its RUNNER_EVENTS.
fn halting_chain() -> Chain {
    Chain::new()
        .task("10-a.sh", "echo a >> \"$LOG\"")
        .task(
            "20-b.sh",
            "if [ -n \"$FIX\" ]; then echo fixed >> \"$LOG\"; exit 0; fi\necho broken >> \"$LOG\"; exit 2",
        )
        .task("30-c.sh", "echo c >> \"$LOG\"; cat \"$RUNNER_EVENTS\" >> \"$LOG\"; echo >> \"$LOG\"")
        .task("halt.sh", "echo halt >> \"$LOG\"")
        .ini("[c]\ndepends_on = b")
}

fn run_id(chain: &Chain) -> String {
    let list = chain.runs_json(&["list"]);
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(1),
        "one run only: {list}"
    );
    list[0]["run_id"].as_str().expect("run id").to_owned()
}

fn instances(show: &serde_json::Value) -> Vec<(String, String)> {
    show["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| {
            (
                t["instance"].as_str().unwrap_or_default().to_owned(),
                t["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[test]
fn replay_after_a_halt_with_a_fixing_env_var_resumes_the_same_run() {
    let chain = halting_chain();
    chain.run(&[]).assert_code(1);
    let id = run_id(&chain);
    let _ = std::fs::remove_file(chain.log_path());
    chain
        .runner(&["replay", &id[..8], "--env", "FIX=1"])
        .assert_code(0);
    assert_eq!(chain.log_lines(), ["fixed", "c", "{\"b\":{}}"]);
    assert_eq!(run_id(&chain), id, "the same run continued");
    let show = chain.runs_json(&["show", &id]);
    assert_eq!(show["status"], "ok", "{show}");
    assert_eq!(
        instances(&show),
        pairs(&[
            ("a#0", "finished"),
            ("b#0", "replayed"),
            ("c#0", "finished"),
            ("halt#0", "finished"),
            ("b#1", "finished"),
        ])
    );
}

#[test]
fn a_replay_that_fails_again_halts_again() {
    let chain = halting_chain();
    chain.run(&[]).assert_code(1);
    let id = run_id(&chain);
    let _ = std::fs::remove_file(chain.log_path());
    chain.runner(&["replay", &id]).assert_code(1);
    assert_eq!(chain.log_lines(), ["broken", "halt"]);
    let show = chain.runs_json(&["show", &id]);
    assert_eq!(show["status"], "halted");
    assert_eq!(
        instances(&show),
        pairs(&[
            ("a#0", "finished"),
            ("b#0", "replayed"),
            ("c#0", "unstarted"),
            ("halt#0", "finished"),
            ("b#1", "failed"),
            ("halt#1", "finished"),
        ])
    );
    // And the new failed instance can be replayed in turn.
    chain
        .runner(&["replay", &id, "--task", "b", "--env", "FIX=yes"])
        .assert_code(0);
}

#[test]
fn replay_refuses_what_did_not_fail() {
    let chain = halting_chain();
    chain.run(&[]).assert_code(1);
    let id = run_id(&chain);
    chain
        .runner(&["replay", &id, "--task", "a"])
        .assert_code(1)
        .assert_stderr_contains("a#0 of run")
        .assert_stderr_contains("is finished: only failed instances can be replayed");
    chain
        .runner(&["skip", &id, "--task", "nosuch"])
        .assert_code(1)
        .assert_stderr_contains("has no task \"nosuch\"");
    chain
        .runner(&["replay", "0000dead"])
        .assert_code(1)
        .assert_stderr_contains("no recorded run matches");
    chain
        .runner(&["replay", &id, "--env", "FIX=1"])
        .assert_code(0);
    chain
        .runner(&["replay", &id])
        .assert_code(1)
        .assert_stderr_contains("ended ok");
}

#[test]
fn replay_refuses_a_run_whose_chain_is_now_another_job() {
    let chain = halting_chain();
    chain.run(&[]).assert_code(1);
    let id = run_id(&chain);
    // The configuration now names another job: its instances are not this run's.
    let chain = chain.ini("[runner]\nname = renamed");
    chain
        .runner(&["replay", &id])
        .assert_code(1)
        .assert_stderr_contains("is now job \"renamed\"");
}

#[test]
fn replay_refuses_a_run_that_is_still_running() {
    let chain = Chain::new().task(
        "10-slow.sh",
        "echo $$ > \"$LOG.pid\"; while [ ! -e \"$LOG.go\" ]; do sleep 0.05; done",
    );
    let mut child = chain.spawn(&[]);
    let pid_file = chain.path().join("log.pid");
    crate::support::read_pid(&pid_file);
    assert!(wait_for(Duration::from_secs(20), || {
        chain.runs_json(&["list"])[0]["status"] == "running"
    }));
    let id = chain.runs_json(&["list"])[0]["run_id"]
        .as_str()
        .expect("id")
        .to_owned();
    chain
        .runner(&["replay", &id])
        .assert_code(1)
        .assert_stderr_contains("is still running");
    std::fs::write(chain.path().join("log.go"), "").expect("go");
    assert_eq!(child.wait().expect("wait").code(), Some(0));
}

#[test]
fn skip_without_cascade_only_marks_the_instance() {
    let chain = halting_chain();
    chain.run(&[]).assert_code(1);
    let id = run_id(&chain);
    let _ = std::fs::remove_file(chain.log_path());
    chain.runner(&["skip", &id]).assert_code(0);
    assert_eq!(chain.log(), "", "nothing ran");
    let show = chain.runs_json(&["show", &id]);
    assert_eq!(show["status"], "halted");
    assert_eq!(
        instances(&show)[1],
        ("b#0".to_owned(), "skipped".to_owned())
    );
    assert_eq!(
        instances(&show)[2],
        ("c#0".to_owned(), "unstarted".to_owned())
    );
    chain
        .runner(&["skip", &id])
        .assert_code(1)
        .assert_stderr_contains("no failed task instance");
}

#[test]
fn skip_with_cascade_fires_the_event_and_runs_the_rest() {
    let chain = halting_chain();
    chain.run(&[]).assert_code(1);
    let id = run_id(&chain);
    let _ = std::fs::remove_file(chain.log_path());
    chain
        .runner(&["skip", &id, "--cascade", "--data", r#"{"why": "manual"}"#])
        .assert_code(0);
    assert_eq!(chain.log_lines(), ["c", "{\"b\":{\"why\":\"manual\"}}"]);
    let show = chain.runs_json(&["show", &id]);
    assert_eq!(show["status"], "ok");
    assert_eq!(
        instances(&show),
        pairs(&[
            ("a#0", "finished"),
            ("b#0", "skipped"),
            ("c#0", "finished"),
            ("halt#0", "finished"),
        ])
    );
    let events = chain.runner(&["events", "list", "--format", "json"]);
    events.assert_code(0);
    let events: serde_json::Value = serde_json::from_str(&events.stdout()).expect("json");
    let b = events
        .as_array()
        .expect("array")
        .iter()
        .find(|e| e["name"] == "b")
        .expect("b's cascade was fired");
    assert_eq!(b["data"]["why"], "manual");
    assert!(b["source"].as_str().is_some_and(|s| s.starts_with("skip ")));
    chain
        .runner(&["skip", &id, "--data", "[1]", "--cascade"])
        .assert_code(78);
}

#[test]
fn post_hooks_get_the_event_and_the_instance() {
    let chain = halting_chain();
    let hook = chain.path().join("hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$2\" >> {}\n",
            chain.path().join("hooks").display()
        ),
    )
    .expect("hook");
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let h = hook.display();
    let chain = chain.ini(&format!(
        "[runner]\npost_fire_hook = {h} fire\npost_replay_hook = {h} replay\npost_skip_hook = {h} skip"
    ));
    let hooks = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(chain.path().join("hooks"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("hook JSON"))
            .collect()
    };
    chain.run(&[]).assert_code(1);
    let id = run_id(&chain);
    let config = chain.config_path();
    let config = config.to_str().expect("utf-8");
    chain
        .runner(&["fire", "-c", config, "up", "--data", r#"{"n": 1}"#])
        .assert_code(0);
    let seen = hooks();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["event"], "up");
    assert_eq!(seen[0]["data"]["n"], 1);
    chain.runner(&["replay", &id]).assert_code(1);
    let seen = hooks();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1]["run_id"], id);
    assert_eq!(seen[1]["instance"], "b#1");
    assert_eq!(seen[1]["replaced"], "b#0");
    chain.runner(&["skip", &id, "--cascade"]).assert_code(0);
    let seen = hooks();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(seen[2]["event"], "b", "the cascade's fire hook first");
    assert_eq!(seen[3]["instance"], "b#1");
    assert_eq!(seen[3]["cascade"], true);
}

#[test]
fn replay_takes_the_job_lock() {
    let chain = Chain::new().task(
        "10-a.sh",
        "if [ -n \"$BLOCK\" ]; then echo $$ > \"$LOG.pid\"; while [ ! -e \"$LOG.go\" ]; do sleep 0.05; done; fi\nexit 3",
    );
    chain.run(&[]).assert_code(1);
    let id = chain.runs_json(&["list"])[0]["run_id"]
        .as_str()
        .expect("id")
        .to_owned();
    // A second run of the job holds the lock while the first is replayed.
    let mut cmd = chain.command(&[]);
    cmd.env("BLOCK", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("spawn");
    crate::support::read_pid(&chain.path().join("log.pid"));
    chain
        .runner(&["replay", &id])
        .assert_code(75)
        .assert_stderr_contains("already running");
    std::fs::write(chain.path().join("log.go"), "").expect("go");
    assert_eq!(child.wait().expect("wait").code(), Some(1));
    chain.runner(&["replay", &id]).assert_code(1);
}

#[test]
fn a_replay_hands_a_kept_leftover_its_output_as_a_run_does() {
    // The replayed task leaves a process behind (leftovers = keep) that prints after
    // runner exited: the write must reach runner's stdout, not kill it with SIGPIPE.
    let chain = Chain::new()
        .task(
            "10-b.sh",
            "if [ -z \"$FIX\" ]; then exit 2; fi\n( while [ ! -e \"$LOG.go\" ]; do sleep 0.02; done; echo late; echo alive > \"$LOG.marker\" ) &\necho started",
        )
        .ini("[runner]\nleftovers = keep");
    chain.run(&[]).assert_code(1);
    let id = run_id(&chain);
    let stdout_path = chain.path().join("stdout");
    let out = std::fs::File::create(&stdout_path).expect("stdout file");
    let status = crate::support::runner()
        .arg("--state-dir")
        .arg(chain.state_dir())
        .args(["replay", &id, "--env", "FIX=1"])
        .env("LOG", chain.log_path())
        .stdout(out)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("replay");
    assert_eq!(status.code(), Some(0));
    std::fs::write(format!("{}.go", chain.log_path().display()), "").expect("go");
    let marker = std::path::PathBuf::from(format!("{}.marker", chain.log_path().display()));
    assert!(
        wait_for(Duration::from_secs(20), || marker.exists()),
        "the leftover died writing after runner exited"
    );
    assert!(
        wait_for(Duration::from_secs(10), || std::fs::read_to_string(
            &stdout_path
        )
        .is_ok_and(|s| s.contains("started") && s.contains("late"))),
        "{:?}",
        std::fs::read_to_string(&stdout_path)
    );
}
