//! The scheduler daemon: dsari configurations, schedules, triggers, concurrency,
//! signals and crash recovery, against the real binary.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::{Daemon, is_alive, skip, wait_for};

const EVERY_SECOND: &str = "* * * * * *";

/// Reads KEY=VALUE lines a run wrote into its `env` file.
fn env_of(daemon: &Daemon, run: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    let job = run["job_name"].as_str().expect("job");
    let id = run["run_id"].as_str().expect("id");
    let path = daemon
        .state_dir()
        .join("runs")
        .join(job)
        .join(id)
        .join("env");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn a_dsari_configuration_directory_runs_unchanged() {
    // dsari's layout: dsari.json plus config.d/*.json, dsari's keys only.
    let mut daemon = Daemon::new(&[
        (
            "dsari.json",
            r#"{
                "shutdown_kill_runs": true,
                "environment": {"SITE": "global", "LAYER": "global"},
                "jobs": {
                    "sample-job": {
                        "command": ["/bin/sh", "-c", "env > env"],
                        "schedule": "* * * * * *",
                        "environment": {"LAYER": "job"},
                        "concurrency_groups": ["sample-group"],
                        "jenkins_environment": true
                    }
                },
                "concurrency_groups": {"sample-group": {"max": 1}}
            }"#,
        ),
        (
            "config.d/10-more.json",
            r#"{"jobs": {"appended": {"command": ["true"], "command_append_run": true}}}"#,
        ),
    ]);
    daemon.start("");
    assert!(
        wait_for(Duration::from_secs(20), || daemon
            .finished_runs("sample-job")
            .len()
            >= 2),
        "{}",
        daemon.daemon_log()
    );
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));

    let runs = daemon.finished_runs("sample-job");
    let newest = &runs[0];
    assert_eq!(newest["status"], "ok");
    assert_eq!(newest["trigger_type"], "schedule");
    let env = env_of(&daemon, newest);
    let id = newest["run_id"].as_str().expect("id");
    let run_dir = daemon.state_dir().join("runs/sample-job").join(id);
    assert_eq!(env["CI"], "true");
    assert_eq!(env["DSARI"], "true");
    assert_eq!(env["JOB_NAME"], "sample-job");
    assert_eq!(env["RUN_ID"], id);
    assert_eq!(env["RUN_DIR"], run_dir.display().to_string());
    assert_eq!(env["PWD"], run_dir.display().to_string());
    assert_eq!(env["DATA_DIR"], daemon.state_dir().display().to_string());
    assert_eq!(env["TRIGGER_TYPE"], "schedule");
    assert_eq!(env["CONCURRENCY_GROUP"], "sample-group");
    assert_eq!(env["SITE"], "global");
    assert_eq!(env["LAYER"], "job", "job environment wins over global");
    assert_eq!(env["WORKSPACE"], run_dir.display().to_string());
    assert_eq!(env["BUILD_TAG"], format!("dsari-sample-job-{id}"));
    let schedule: f64 = env["SCHEDULE_TIME"].parse().expect("float");
    let start: f64 = env["START_TIME"].parse().expect("float");
    assert!(
        start >= schedule && start - schedule < 5.0,
        "{schedule} {start}"
    );
    assert_eq!(newest["schedule_time"].as_f64(), Some(schedule));
    // The second run knows the first.
    let older = runs.last().expect("older run");
    assert_eq!(
        env["PREVIOUS_RUN_ID"],
        older["run_id"].as_str().expect("id")
    );
    assert_eq!(env["PREVIOUS_EXIT_CODE"], "0");
    assert_eq!(env["PREVIOUS_GOOD_RUN_ID"], env["PREVIOUS_RUN_ID"]);
    assert!(!env.contains_key("PREVIOUS_BAD_RUN_ID"));
    // Due ticks are one second apart and none was skipped.
    let mut times: Vec<f64> = runs
        .iter()
        .map(|r| r["schedule_time"].as_f64().expect("t"))
        .collect();
    times.sort_by(f64::total_cmp);
    for pair in times.windows(2) {
        assert!((pair[1] - pair[0] - 1.0).abs() < 0.01, "ticks {times:?}");
    }
}

#[test]
fn trigger_files_are_picked_up_consumed_and_bad_ones_renamed() {
    let mut daemon = Daemon::new(&[(
        "runner.yaml",
        "jobs:\n  manual:\n    command: [\"/bin/sh\", \"-c\", \"env > env\"]\n    environment:\n      FROM: job\n",
    )]);
    daemon.start("runner.yaml");
    let trigger = daemon.runner(&[
        "trigger",
        "manual",
        "--env",
        "FROM=trigger",
        "--type",
        "git",
        "--description",
        "new commit",
    ]);
    trigger.assert_code(0);
    let path = std::path::PathBuf::from(trigger.stdout().trim());
    daemon.wait_runs("manual", 1);
    assert!(!path.exists(), "a consumed trigger is deleted");
    let run = &daemon.finished_runs("manual")[0];
    // dsari's: a trigger file's run is of type "file"; the file's own type is data.
    assert_eq!(run["trigger_type"], "file");
    assert_eq!(run["trigger_data"]["type"], "git");
    assert_eq!(run["trigger_data"]["description"], "new commit");
    assert_eq!(env_of(&daemon, run)["TRIGGER_TYPE"], "file");
    assert_eq!(
        env_of(&daemon, run)["FROM"],
        "trigger",
        "trigger environment wins"
    );

    // Malformed: renamed .invalid, no run.
    let dir = daemon.state_dir().join("trigger/manual");
    std::fs::write(dir.join("trigger.json"), "{\"environment\": ").expect("write");
    assert!(wait_for(Duration::from_secs(10), || dir
        .join("trigger.json.invalid")
        .exists()));
    // Owned by someone else: refused the same way.
    if crate::support::is_root() {
        let tmp = dir.join(".foreign");
        std::fs::write(&tmp, "{}").expect("write");
        nix::unistd::chown(&tmp, Some(nix::unistd::Uid::from_raw(65534)), None).expect("chown");
        std::fs::rename(&tmp, dir.join("trigger.yaml")).expect("rename");
        assert!(wait_for(Duration::from_secs(10), || dir
            .join("trigger.yaml.invalid")
            .exists()));
        assert!(daemon.daemon_log().contains("owned by uid 65534"));
    }
    // The files are renamed where they are read: no trigger came of them.
    let consumed = daemon
        .daemon_log()
        .matches("consumed for job \"manual\"")
        .count();
    assert_eq!(consumed, 1, "bad triggers start nothing");
    assert_eq!(daemon.finished_runs("manual").len(), 1);
    assert!(daemon.daemon_log().contains("invalid trigger"));
    let mode = std::fs::metadata(&dir).expect("dir").permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "trigger directories are private");
}

#[test]
fn trigger_dir_is_the_base_so_a_run_can_trigger_another_job() {
    // dsari's documented cascade: ${TRIGGER_DIR}/${OTHER_JOB}/trigger.json. As with
    // dsari 2.0, which makes no trigger directory, the run makes the other job's.
    let mut daemon = Daemon::new(&[(
        "runner.yaml",
        "jobs:\n  first:\n    command: [\"/bin/sh\", \"-c\", \"env > env; mkdir -p $TRIGGER_DIR/second; echo '{\\\"type\\\": \\\"cascade\\\", \\\"description\\\": \\\"from first\\\"}' > $TRIGGER_DIR/second/.new && mv $TRIGGER_DIR/second/.new $TRIGGER_DIR/second/trigger.json\"]\n  second:\n    command: [\"/bin/sh\", \"-c\", \"env > env\"]\n",
    )]);
    daemon.start("runner.yaml");
    let first = daemon.trigger_and_wait("first");
    assert_eq!(first["status"], "ok", "{}", daemon.daemon_log());
    let second = daemon.wait_runs("second", 1).remove(0);
    assert_eq!(second["trigger_type"], "file");
    assert_eq!(second["trigger_data"]["type"], "cascade");
    assert_eq!(second["trigger_data"]["description"], "from first");
    let base = daemon.state_dir().join("trigger").display().to_string();
    for run in [&first, &second] {
        let env = env_of(&daemon, run);
        assert_eq!(env["TRIGGER_DIR"], base);
        assert_eq!(env["TRIGGER_TYPE"], "file");
    }
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));
}

#[test]
fn a_trigger_for_later_replaces_the_planned_scheduled_run() {
    // As dsari 2.0 did: a job every 2 s, a trigger for +4 s replaces the run planned
    // before it, which then never runs; the schedule resumes after the trigger's run.
    let mut daemon = Daemon::new(&[(
        "runner.yaml",
        "jobs:\n  tick:\n    command: [\"true\"]\n    schedule: \"* * * * * */2\"\n",
    )]);
    daemon.start("runner.yaml");
    daemon.wait_runs("tick", 1);
    let at = (chrono::Utc::now() + chrono::TimeDelta::seconds(4)).timestamp_millis() as f64 / 1e3;
    daemon
        .runner(&["trigger", "tick", "--at", &at.to_string()])
        .assert_code(0);
    assert!(
        wait_for(Duration::from_secs(20), || daemon
            .daemon_log()
            .contains("replacing the schedule run due")),
        "{}",
        daemon.daemon_log()
    );
    let log = daemon.daemon_log();
    let replaced = log
        .split("replacing the schedule run due ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(|t| chrono::DateTime::parse_from_rfc3339(t).expect("rfc3339"))
        .expect("the replaced run's time");
    let replaced = replaced.timestamp_micros() as f64 / 1e6;
    assert!(replaced < at, "the replaced run was due before the trigger");
    assert!(
        wait_for(Duration::from_secs(30), || {
            let runs = daemon.finished_runs("tick");
            let after = |t: f64| runs.iter().any(|r| r["schedule_time"].as_f64() > Some(t));
            runs.iter().any(|r| r["trigger_type"] == "file") && after(at + 0.5)
        }),
        "{}",
        daemon.daemon_log()
    );
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));
    let runs = daemon.finished_runs("tick");
    let nominal: Vec<f64> = runs
        .iter()
        .filter(|r| r["trigger_type"] == "schedule")
        .filter_map(|r| r["schedule_time"].as_f64())
        .collect();
    assert!(
        nominal.iter().all(|t| (t - replaced).abs() > 0.001),
        "the replaced run never ran: {nominal:?}"
    );
    assert!(
        nominal.iter().all(|t| *t <= replaced || *t > at),
        "no scheduled run between the replaced one and the trigger's: {nominal:?} {at}"
    );
}

#[test]
fn previous_runs_are_told_exactly_as_recorded_good_and_bad() {
    // A run fails when a trigger says so: good, bad, good, and each run's PREVIOUS_*
    // must be what the store holds of the runs before it, to the digit.
    let mut daemon = Daemon::new(&[(
        "runner.yaml",
        "jobs:\n  flip:\n    command: [\"/bin/sh\", \"-c\", \"env > env; exit ${CODE:-0}\"]\n",
    )]);
    daemon.start("runner.yaml");
    for (n, code) in ["0", "3", "0", "0"].iter().enumerate() {
        daemon
            .runner(&["trigger", "flip", "--env", &format!("CODE={code}")])
            .assert_code(0);
        daemon.wait_runs("flip", n + 1);
    }
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));
    let mut runs = daemon.finished_runs("flip");
    runs.reverse();
    let told = |env: &std::collections::BTreeMap<String, String>, prefix: &str| {
        [
            "RUN_ID",
            "SCHEDULE_TIME",
            "START_TIME",
            "STOP_TIME",
            "EXIT_CODE",
        ]
        .map(|k| env.get(&format!("{prefix}_{k}")).cloned())
    };
    let recorded = |run: &serde_json::Value| {
        [
            "run_id",
            "schedule_time",
            "start_time",
            "stop_time",
            "exit_code",
        ]
        .map(|k| {
            Some(match &run[k] {
                serde_json::Value::String(s) => s.clone(),
                v => {
                    if k == "exit_code" {
                        v.to_string()
                    } else {
                        format!("{}", v.as_f64().expect("time"))
                    }
                }
            })
        })
    };
    let none = [None, None, None, None, None];
    for (i, run) in runs.iter().enumerate() {
        let env = env_of(&daemon, run);
        let before = &runs[..i];
        let last = before.last().map_or(none.clone(), recorded);
        let good = before
            .iter()
            .rev()
            .find(|r| r["exit_code"] == 0)
            .map_or(none.clone(), recorded);
        let bad = before
            .iter()
            .rev()
            .find(|r| r["exit_code"] != 0)
            .map_or(none.clone(), recorded);
        assert_eq!(told(&env, "PREVIOUS"), last, "run {i}");
        assert_eq!(told(&env, "PREVIOUS_GOOD"), good, "run {i}");
        assert_eq!(told(&env, "PREVIOUS_BAD"), bad, "run {i}");
    }
    assert_eq!(runs[3]["exit_code"], 0);
    assert_eq!(runs[1]["exit_code"], 3);
}

#[test]
fn trigger_directories_are_made_by_whoever_triggers_and_watched_once_they_appear() {
    // dsari 2.0 makes no trigger directory (its documentation says `mkdir -p`); the
    // daemon makes none per job either, and watches each one from when it appears.
    let mut daemon = Daemon::new(&[(
        "runner.yaml",
        "jobs:\n  a:\n    command: [\"true\"]\n  b:\n    command: [\"true\"]\n",
    )]);
    daemon.start("runner.yaml");
    let base = daemon.state_dir().join("trigger");
    assert!(base.is_dir(), "the base directory is there for TRIGGER_DIR");
    assert!(
        !base.join("a").exists() && !base.join("b").exists(),
        "no directory per job at start"
    );
    // A script's mkdir and a file written in place right after it, racing the new watch.
    std::fs::create_dir(base.join("a")).expect("mkdir");
    std::fs::write(base.join("a/trigger.json"), r#"{"type": "by-hand"}"#).expect("write");
    let run = daemon.wait_runs("a", 1).remove(0);
    assert_eq!(run["trigger_data"]["type"], "by-hand");
    // Removed and made again (by `runner trigger` this time): watched again.
    std::fs::remove_dir(base.join("a")).expect("rmdir (the trigger was consumed)");
    let again = daemon.trigger_and_wait("a");
    assert_eq!(again["trigger_type"], "file");
    let mode = std::fs::metadata(base.join("a"))
        .expect("made by runner trigger")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "trigger directories are private");
    // A directory moved into place, file and all.
    let staged = daemon.state_dir().join("staged-b");
    std::fs::create_dir(&staged).expect("mkdir");
    std::fs::write(staged.join("trigger.yaml"), "type: moved\n").expect("write");
    std::fs::rename(&staged, base.join("b")).expect("rename");
    let moved = daemon.wait_runs("b", 1).remove(0);
    assert_eq!(moved["trigger_data"]["type"], "moved");
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));
}

#[test]
fn a_trigger_hard_linked_into_place_is_noticed() {
    // A hard link makes no close and no rename: inotify says only that it was created.
    let mut daemon = Daemon::new(&[("runner.yaml", "jobs:\n  manual:\n    command: [\"true\"]\n")]);
    daemon.start("runner.yaml");
    let dir = daemon.state_dir().join("trigger/manual");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join(".prepared"), r#"{"type": "linked"}"#).expect("write");
    std::fs::hard_link(dir.join(".prepared"), dir.join("trigger.json")).expect("link");
    let run = daemon.wait_runs("manual", 1).remove(0);
    assert_eq!(run["trigger_data"]["type"], "linked");
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));
}

#[test]
fn json_and_yaml_triggers_together_are_both_taken_json_first() {
    // As dsari 2.0 did with both files in place: the JSON one ran, then the YAML one
    // after it (the job does not overlap itself).
    let mut daemon = Daemon::new(&[(
        "runner.yaml",
        "jobs:\n  manual:\n    command: [\"/bin/sh\", \"-c\", \"sleep 0.3\"]\n",
    )]);
    let dir = daemon.state_dir().join("trigger/manual");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::write(dir.join("trigger.yaml"), "type: from-yaml\n").expect("write");
    std::fs::write(dir.join("trigger.json"), r#"{"type": "from-json"}"#).expect("write");
    // Without schedule_time, a trigger is due when it was written (dsari uses the mtime).
    let written = std::time::SystemTime::now() - Duration::from_secs(100);
    std::fs::File::options()
        .write(true)
        .open(dir.join("trigger.yaml"))
        .and_then(|f| f.set_modified(written))
        .expect("mtime");
    let written = written
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    daemon.start("runner.yaml");
    let runs = daemon.wait_runs("manual", 2);
    let (newer, older) = (&runs[0], &runs[1]);
    assert_eq!(older["trigger_data"]["type"], "from-json");
    assert_eq!(newer["trigger_data"]["type"], "from-yaml");
    let due = newer["schedule_time"].as_f64().expect("schedule_time");
    assert!((due - written).abs() < 0.01, "{due} {written}");
    assert!(runs.iter().all(|r| r["trigger_type"] == "file"));
    let ended = older["stop_time"].as_f64().expect("stop");
    let started = newer["start_time"].as_f64().expect("start");
    assert!(started >= ended, "the second waited for the first");
    assert!(!dir.join("trigger.yaml").exists() && !dir.join("trigger.json").exists());
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));
}

#[test]
fn a_concurrency_group_of_two_is_never_exceeded() {
    let mut yaml = String::from("concurrency_groups:\n  pair:\n    max: 2\njobs:\n");
    for i in 0..5 {
        yaml.push_str(&format!(
            "  job{i}:\n    command: [\"/bin/sh\", \"-c\", \"echo start $(date +%s.%N) >> @ROOT@/spans; sleep 0.3; echo end $(date +%s.%N) >> @ROOT@/spans\"]\n    schedule: \"{EVERY_SECOND}\"\n    concurrency_groups: [pair]\n"
        ));
    }
    let mut daemon = Daemon::new(&[("runner.yaml", &yaml)]);
    daemon.start("runner.yaml");
    assert!(wait_for(Duration::from_secs(30), || daemon.runs().len() >= 12));
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));
    let spans = std::fs::read_to_string(daemon.path().join("spans")).expect("spans");
    let mut events: Vec<(f64, i32)> = spans
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(kind, t)| {
            (
                t.parse().expect("time"),
                if kind == "start" { 1 } else { -1 },
            )
        })
        .collect();
    // Ends sort before starts at the same instant.
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0, 0);
    for (_, delta) in &events {
        now += delta;
        most = most.max(now);
    }
    assert_eq!(
        most, 2,
        "at most two runs at once, and the group was used fully: {spans}"
    );
    let groups: std::collections::BTreeSet<String> = daemon
        .runs()
        .iter()
        .map(|r| r["job_name"].as_str().expect("job").to_owned())
        .collect();
    assert_eq!(groups.len(), 5, "every job got to run");
}

#[test]
fn hup_with_a_broken_config_keeps_the_old_one_and_a_good_one_is_taken() {
    let good =
        format!("jobs:\n  tick:\n    command: [\"true\"]\n    schedule: \"{EVERY_SECOND}\"\n");
    let mut daemon = Daemon::new(&[("runner.yaml", &good)]);
    daemon.start("runner.yaml");
    let config = daemon.config_dir().join("runner.yaml");
    std::fs::write(&config, "jobs:\n  tick:\n    comand: [true]\n").expect("break");
    daemon.signal(Signal::SIGHUP);
    assert!(wait_for(Duration::from_secs(10), || daemon
        .daemon_log()
        .contains("reload failed")));
    assert!(
        daemon.daemon_log().contains("unknown key \"comand\""),
        "{}",
        daemon.daemon_log()
    );
    let before = daemon.finished_runs("tick").len();
    assert!(
        wait_for(Duration::from_secs(10), || daemon
            .finished_runs("tick")
            .len()
            > before + 1),
        "old config still runs"
    );

    std::fs::write(
        &config,
        format!("{good}  tock:\n    command: [\"true\"]\n    schedule: \"{EVERY_SECOND}\"\n"),
    )
    .expect("fix");
    daemon.signal(Signal::SIGHUP);
    assert!(wait_for(Duration::from_secs(10), || daemon
        .daemon_log()
        .contains("configuration reloaded: 2 job(s)")));
    assert!(wait_for(Duration::from_secs(10), || !daemon
        .finished_runs("tock")
        .is_empty()));
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));
}

#[test]
fn runs_keep_starting_while_a_large_reload_is_parsed() {
    // The configuration is parsed off the scheduling thread: a job due every second keeps
    // starting while a reload reads an 8 MB file (a long list under a key dsari ignores).
    let mut daemon = Daemon::new(&[(
        "runner.yaml",
        &format!("jobs:\n  tick:\n    command: [\"true\"]\n    schedule: \"{EVERY_SECOND}\"\n"),
    )]);
    daemon.start("");
    daemon.wait_runs("tick", 1);
    let list: Vec<String> = (0..1_000_000).map(|i| i.to_string()).collect();
    let big = format!("notes: [{}]\n", list.join(", "));
    std::fs::create_dir_all(daemon.config_dir().join("config.d")).expect("mkdir");
    std::fs::write(daemon.config_dir().join("config.d/big.yaml"), big).expect("write");
    let epoch = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64()
    };
    let sent = epoch();
    daemon.signal(Signal::SIGHUP);
    assert!(
        wait_for(Duration::from_secs(120), || daemon
            .daemon_log()
            .contains("configuration reloaded")),
        "{}",
        daemon.daemon_log()
    );
    let done = epoch();
    assert!(
        daemon
            .daemon_log()
            .contains("unknown key \"notes\", ignored")
    );
    if done - sent < 3.0 {
        skip(format!(
            "the reload took {:.1}s, too short to show runs starting during it",
            done - sent
        ));
    } else {
        let during = daemon
            .finished_runs("tick")
            .iter()
            .filter_map(|r| r["start_time"].as_f64())
            .filter(|t| *t > sent + 0.5 && *t < done - 0.5)
            .count();
        eprintln!(
            "{during} run(s) started during the {:.1}s of the reload",
            done - sent
        );
        assert!(
            during >= 1,
            "no run started during the {:.1}s of the reload:\n{}",
            done - sent,
            daemon.daemon_log()
        );
    }
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));
}

fn long_job(kill_runs: bool) -> Daemon {
    let yaml = format!(
        "shutdown_kill_runs: {kill_runs}\nshutdown_kill_grace: 1\njobs:\n  long:\n    command: [\"/bin/sh\", \"-c\", \"echo $$ > @ROOT@/pid; sleep 2; echo done\"]\n"
    );
    let mut daemon = Daemon::new(&[("runner.yaml", &yaml)]);
    daemon.start("runner.yaml");
    daemon.runner(&["trigger", "long"]).assert_code(0);
    assert!(wait_for(Duration::from_secs(10), || daemon
        .path()
        .join("pid")
        .exists()));
    daemon
}

#[test]
fn term_with_shutdown_kill_runs_stops_the_running_run() {
    let mut daemon = long_job(true);
    let pid = daemon.pid("pid");
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));
    assert!(!is_alive(pid));
    let run = &daemon.finished_runs("long")[0];
    assert_eq!(run["status"], "interrupted");
    assert_eq!(run["exit_code"], 143);
}

#[test]
fn term_without_shutdown_kill_runs_waits_for_the_run() {
    let mut daemon = long_job(false);
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));
    let run = &daemon.finished_runs("long")[0];
    assert_eq!(run["status"], "ok");
    let output = daemon.runner(&["runs", "output", run["run_id"].as_str().expect("id")]);
    output.assert_stdout_contains("done");
}

#[test]
fn max_execution_ends_the_run_with_sigterm() {
    let mut daemon = Daemon::new(&[(
        "runner.yaml",
        "jobs:\n  slow:\n    command: [\"/bin/sh\", \"-c\", \"sleep 300 & echo $! > @ROOT@/child; wait\"]\n    max_execution: 1\n    max_execution_grace: 1\n",
    )]);
    daemon.start("runner.yaml");
    daemon.trigger_and_wait("slow");
    let run = &daemon.finished_runs("slow")[0];
    assert_eq!(run["exit_code"], 143);
    assert_eq!(run["status"], "failed");
    let duration =
        run["stop_time"].as_f64().expect("stop") - run["start_time"].as_f64().expect("start");
    assert!((0.9..5.0).contains(&duration), "{duration}");
    let child = daemon.pid("child");
    assert!(
        wait_for(Duration::from_secs(5), || !is_alive(child)),
        "the run's whole group is ended"
    );
    daemon.signal(Signal::SIGTERM);
    daemon.wait();
}

#[test]
fn kill_9_then_restart_finalizes_lost_runs_without_duplicates() {
    let yaml =
        "jobs:\n  long:\n    command: [\"/bin/sh\", \"-c\", \"echo $$ > @ROOT@/pid; sleep 300\"]\n";
    let mut daemon = Daemon::new(&[("runner.yaml", yaml)]);
    daemon.start("runner.yaml");
    daemon.runner(&["trigger", "long"]).assert_code(0);
    assert!(wait_for(Duration::from_secs(10), || daemon
        .path()
        .join("pid")
        .exists()));
    let pid = daemon.pid("pid");
    daemon.signal(Signal::SIGKILL);
    daemon.wait();
    assert!(
        wait_for(Duration::from_secs(15), || !is_alive(pid)),
        "the guardian ends the orphaned run"
    );
    assert_eq!(daemon.runs()[0]["status"], "lost");

    daemon.start("runner.yaml");
    assert!(
        daemon.daemon_log().contains("recorded as lost"),
        "{}",
        daemon.daemon_log()
    );
    // "daemon started" comes after the loop planned and started what was due at start.
    let runs = daemon.runs();
    assert_eq!(runs.len(), 1, "no run was started again: {runs:?}");
    assert_eq!(runs[0]["status"], "lost");
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));
    let db = rusqlite::Connection::open(daemon.state_dir().join("runner.sqlite3")).expect("db");
    let running: i64 = db
        .query_row("SELECT count(*) FROM runs_running", [], |r| r.get(0))
        .expect("count");
    assert_eq!(running, 0);
}

#[test]
fn catch_up_once_runs_a_missed_schedule_at_start() {
    let yaml = "jobs:\n  nightly:\n    command: [\"true\"]\n    schedule: \"* * * * *\"\n    catch_up: once\n";
    let mut daemon = Daemon::new(&[("runner.yaml", yaml)]);
    // A scheduled run three minutes ago: at least two ticks were missed since.
    std::fs::create_dir_all(daemon.state_dir()).expect("mkdir");
    let old = chrono::Utc::now().timestamp() - 180;
    let db = rusqlite::Connection::open(daemon.state_dir().join("runner.sqlite3")).expect("db");
    db.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS runs (job_name text, run_id text, schedule_time real, start_time real, stop_time real, exit_code integer, trigger_type text, trigger_data text, run_data text);
         INSERT INTO runs VALUES ('nightly', 'old-run', {old}, {old}, {old}, 0, 'schedule', '{{}}', '{{}}');"
    ))
    .expect("seed");
    drop(db);
    daemon.start("runner.yaml");
    assert!(
        wait_for(Duration::from_secs(10), || daemon
            .runs()
            .iter()
            .any(|r| r["trigger_type"] == "catch_up")),
        "{}",
        daemon.daemon_log()
    );
    let runs = daemon.runs();
    let catch_ups = runs
        .iter()
        .filter(|r| r["trigger_type"] == "catch_up")
        .count();
    let listed: Vec<String> = runs
        .iter()
        .map(|r| {
            format!(
                "{} {} schedule_time={} start_time={} status={}",
                r["run_id"], r["trigger_type"], r["schedule_time"], r["start_time"], r["status"]
            )
        })
        .collect();
    assert_eq!(
        catch_ups,
        1,
        "caught up once, not once per missed tick; seeded {old}, runs:\n{}\nlog:\n{}",
        listed.join("\n"),
        daemon.daemon_log()
    );
    daemon.signal(Signal::SIGTERM);
    daemon.wait();
}

#[test]
fn a_chain_job_records_its_tasks_under_the_daemon_run() {
    let mut daemon = Daemon::new(&[
        (
            "runner.yaml",
            "jobs:\n  provision:\n    taskdir: tasks.d\n    config: chain.ini\n",
        ),
        (
            "chain.ini",
            "[runner]\nsleep_time = 0\nretry_jitter = 0\n[env]\nWHO = chain\n",
        ),
        (
            "tasks.d/10-a.sh",
            "#!/bin/sh\necho \"a from $WHO in $RUNNER_JOB run $RUNNER_RUN_ID\"\n",
        ),
        (
            "tasks.d/20-b.sh",
            "#!/bin/sh\necho b\necho '{\"from\": \"b\"}' > \"$RUN_DIR/return_data.json\"\n",
        ),
    ]);
    for task in ["10-a.sh", "20-b.sh"] {
        let path = daemon.config_dir().join("tasks.d").join(task);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    daemon.start("runner.yaml");
    daemon.trigger_and_wait("provision");
    let id = daemon.finished_runs("provision")[0]["run_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let show = daemon.runner(&["runs", "show", &id, "--format", "json"]);
    show.assert_code(0);
    let detail: serde_json::Value = serde_json::from_str(&show.stdout()).expect("json");
    assert_eq!(detail["status"], "ok");
    assert_eq!(detail["trigger_type"], "file");
    assert_eq!(
        detail["run_data"]["return_data"]["from"], "b",
        "the daemon finished the run"
    );
    let tasks: Vec<&str> = detail["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["instance"].as_str().expect("i"))
        .collect();
    assert_eq!(tasks, ["a#0", "b#0"]);
    let output = daemon.runner(&["runs", "output", &id, "--task", "a"]);
    output.assert_stdout_contains(&format!("a from chain in provision run {id}"));
    assert_eq!(
        daemon.runs().len(),
        1,
        "one run, not a daemon run plus a chain run"
    );
    daemon.signal(Signal::SIGTERM);
    daemon.wait();
}

#[test]
fn check_daemon_names_the_job_and_key() {
    let daemon = Daemon::new(&[
        (
            "bad-key.yaml",
            "jobs:\n  backup:\n    command: [\"true\"]\n    scedule: \"@daily\"\n",
        ),
        (
            "bad-schedule.yaml",
            "jobs:\n  backup:\n    command: [\"true\"]\n    schedule: \"0 0 32 * *\"\n",
        ),
        (
            "good.yaml",
            "jobs:\n  backup:\n    command: [\"true\"]\n    schedule: \"@daily\"\n",
        ),
    ]);
    let check = |file: &str| {
        daemon.runner(&[
            "check",
            "--daemon",
            daemon.config_dir().join(file).to_str().expect("utf-8"),
        ])
    };
    check("bad-key.yaml")
        .assert_code(78)
        .assert_stderr_contains("job \"backup\"")
        .assert_stderr_contains("\"scedule\"")
        .assert_stderr_contains("did you mean \"schedule\"?");
    check("bad-schedule.yaml")
        .assert_code(78)
        .assert_stderr_contains("job \"backup\"")
        .assert_stderr_contains("day of month");
    check("good.yaml")
        .assert_code(0)
        .assert_stdout_contains("backup");
}

#[test]
fn keys_dsari_ignores_are_a_warning_and_the_configuration_runs() {
    // dsari's loader passes over keys it does not know; report_run_output_* are its own.
    let mut daemon = Daemon::new(&[
        (
            "dsari.yaml",
            "notify_email: ops@example.org\nreport_run_output_start: 5\nreport_run_output_end: 5\n",
        ),
        (
            "config.d/20-backup.yaml",
            "jobs:\n  backup:\n    command: [\"true\"]\n    description: nightly backup\n",
        ),
    ]);
    let dir = daemon.config_dir();
    let check = daemon.runner(&["check", "--daemon", dir.to_str().expect("utf-8")]);
    check
        .assert_code(0)
        .assert_stdout_contains("backup")
        .assert_stderr_contains(&format!(
            "{}:4:5: job \"backup\": unknown key \"description\", ignored",
            dir.join("config.d/20-backup.yaml").display()
        ))
        .assert_stderr_contains(&format!(
            "{}:1:1: unknown key \"notify_email\", ignored",
            dir.join("dsari.yaml").display()
        ));
    assert!(
        !check.stderr().contains("report_run_output"),
        "{}",
        check.stderr()
    );
    daemon.start("");
    assert!(
        daemon
            .daemon_log()
            .contains("unknown key \"description\", ignored")
    );
    let run = daemon.trigger_and_wait("backup");
    assert_eq!(run["status"], "ok");
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));
}

#[test]
fn schedule_prints_next_times_and_rejects_bad_fields() {
    let daemon = Daemon::new(&[]);
    let run = daemon.runner(&[
        "schedule",
        "H/15 * * * *",
        "--name",
        "tick",
        "--from",
        "2026-01-01T00:00:00Z",
        "--count",
        "3",
        "--tz",
        "UTC",
    ]);
    run.assert_code(0);
    let lines: Vec<&str> = run
        .output
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| std::str::from_utf8(l).expect("utf-8"))
        .collect();
    assert_eq!(lines.len(), 3);
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = lines
        .iter()
        .map(|l| chrono::DateTime::parse_from_rfc3339(l).expect("rfc3339"))
        .collect();
    for pair in times.windows(2) {
        assert_eq!((pair[1] - pair[0]).num_seconds(), 900);
    }
    daemon
        .runner(&["schedule", "0 0 32 * *"])
        .assert_code(78)
        .assert_stderr_contains("day of month");
}

#[test]
fn usr1_scans_quit_logs_status_and_systemd_hears_ready() {
    let socket_path = tempfile::tempdir().expect("tempdir");
    let socket =
        std::os::unix::net::UnixDatagram::bind(socket_path.path().join("notify")).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut daemon = Daemon::new(&[(
        "runner.yaml",
        "jobs:\n  hourly:\n    command: [\"true\"]\n    schedule: \"@hourly\"\n  manual:\n    command: [\"true\"]\n",
    )]);
    daemon.start_with_env(
        "runner.yaml",
        &[("NOTIFY_SOCKET", socket_path.path().join("notify"))],
    );
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("a notification");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));

    daemon.signal(Signal::SIGQUIT);
    assert!(wait_for(Duration::from_secs(10), || daemon
        .daemon_log()
        .contains("status: job \"hourly\" next due")));
    assert!(
        daemon
            .daemon_log()
            .contains("status: job \"manual\" has no scheduled time")
    );

    // A trigger put into place, then SIGUSR1: picked up either way (inotify or the
    // scan), once. Renamed into place: a file written in place is read half a second
    // after its creation, empty if the writer stalled that long, which a loaded machine
    // can do and which is not what this test is about.
    let dir = daemon.state_dir().join("trigger/manual");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join(".new"), "{}").expect("write");
    std::fs::rename(dir.join(".new"), dir.join("trigger.json")).expect("rename");
    daemon.signal(Signal::SIGUSR1);
    assert!(wait_for(Duration::from_secs(10), || daemon
        .daemon_log()
        .contains("SIGUSR1: scanned")));
    daemon.wait_runs("manual", 1);
    let consumed = daemon
        .daemon_log()
        .matches("consumed for job \"manual\"")
        .count();
    assert_eq!(consumed, 1, "taken once, by inotify or by the scan");
    assert_eq!(daemon.finished_runs("manual").len(), 1);
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));
    let n = socket.recv(&mut buf).expect("a notification");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
}

#[test]
fn command_append_run_and_concurrent_runs() {
    let mut daemon = Daemon::new(&[(
        "runner.yaml",
        "jobs:\n  args:\n    command: [\"/bin/sh\", \"-c\", \"echo \\\"$@\\\" > args\", \"sh\"]\n    command_append_run: true\n  overlap:\n    command: [\"sleep\", \"1.6\"]\n    schedule: \"* * * * * *\"\n    concurrent_runs: true\n  single:\n    command: [\"sleep\", \"1.6\"]\n    schedule: \"* * * * * *\"\n",
    )]);
    daemon.start("runner.yaml");
    daemon.runner(&["trigger", "args"]).assert_code(0);
    let run = daemon.wait_runs("args", 1).remove(0);
    let id = run["run_id"].as_str().expect("id");
    let args = std::fs::read_to_string(daemon.state_dir().join("runs/args").join(id).join("args"))
        .expect("args");
    assert_eq!(args.trim(), format!("args {id}"));

    let spans = |daemon: &Daemon, job: &str| -> Vec<(f64, f64)> {
        let mut v: Vec<(f64, f64)> = daemon
            .finished_runs(job)
            .iter()
            .map(|r| {
                (
                    r["start_time"].as_f64().expect("start"),
                    r["stop_time"].as_f64().expect("stop"),
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    };
    let overlapping = |v: &[(f64, f64)]| v.windows(2).any(|w| w[1].0 < w[0].1);
    assert!(
        wait_for(Duration::from_secs(30), || overlapping(&spans(
            &daemon, "overlap"
        )) && spans(&daemon, "single")
            .len()
            >= 2),
        "{}",
        daemon.daemon_log()
    );
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));
    assert!(
        overlapping(&spans(&daemon, "overlap")),
        "concurrent_runs lets runs of a job overlap"
    );
    assert!(!spans(&daemon, "single").is_empty());
    assert!(
        !overlapping(&spans(&daemon, "single")),
        "without it a job never overlaps itself"
    );
}

#[test]
fn jobs_list_and_next_show_schedules_and_last_runs() {
    let mut daemon = Daemon::new(&[(
        "runner.yaml",
        "jobs:\n  a:\n    command: [\"true\"]\n    schedule: \"0 12 * * *\"\n    schedule_timezone: UTC\n  b:\n    command: [\"true\"]\n    schedule: \"30 12 * * *\"\n    schedule_timezone: UTC\n  c:\n    command: [\"true\"]\n",
    )]);
    daemon.start("runner.yaml");
    daemon.trigger_and_wait("c");
    daemon.signal(Signal::SIGTERM);
    daemon.wait();
    let config = daemon.config_dir().join("runner.yaml");
    let config = config.to_str().expect("utf-8");
    let list = daemon.runner(&["jobs", "list", "--config", config, "--format", "json"]);
    list.assert_code(0);
    let jobs: serde_json::Value = serde_json::from_str(&list.stdout()).expect("json");
    let names: Vec<&str> = jobs
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(
        jobs[0]["next"]
            .as_str()
            .is_some_and(|t| t.contains("T12:00:") && t.ends_with("+00:00")),
        "{jobs}"
    );
    assert!(jobs[2]["next"].is_null());
    assert_eq!(jobs[2]["last_run"]["status"], "ok");
    let next = daemon.runner(&[
        "jobs", "next", "--config", config, "--count", "4", "--format", "json",
    ]);
    next.assert_code(0);
    let due: serde_json::Value = serde_json::from_str(&next.stdout()).expect("json");
    let order: Vec<&str> = due
        .as_array()
        .expect("due")
        .iter()
        .map(|d| d["job"].as_str().expect("job"))
        .collect();
    // a is due at 12:00 UTC and b at 12:30: between the two, b comes first.
    let seconds_of_day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        % 86_400;
    let expected = if (12 * 3600..12 * 3600 + 30 * 60).contains(&seconds_of_day) {
        ["b", "a", "b", "a"]
    } else {
        ["a", "b", "a", "b"]
    };
    assert_eq!(order, expected, "{due}");
    daemon
        .runner(&["jobs", "list", "--config", config])
        .assert_code(0)
        .assert_stdout_contains("(triggers only)");
}

#[test]
fn the_sample_from_dsaris_documentation_runs_unchanged() {
    // doc/configuration.md's sample, byte for byte in meaning: /usr/bin/env every five
    // minutes (hashed) in a concurrency group of one. A trigger runs it now.
    let sample = r#"{
        "shutdown_kill_runs": true,
        "jobs": {
            "sample-job": {
                "command": ["/usr/bin/env"],
                "schedule": "H/5 * * * *",
                "concurrency_groups": ["sample-group"]
            }
        },
        "concurrency_groups": {
            "sample-group": {
                "max": 1
            }
        }
    }"#;
    let mut daemon = Daemon::new(&[("dsari.json", sample)]);
    let check = daemon.runner(&[
        "check",
        "--daemon",
        daemon.config_dir().to_str().expect("utf-8"),
    ]);
    check
        .assert_code(0)
        .assert_stdout_contains("sample-job")
        .assert_stdout_contains("H/5 * * * *");
    daemon.start("");
    let dir = daemon.state_dir().join("trigger/sample-job");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join(".new"), "{}").expect("write");
    std::fs::rename(dir.join(".new"), dir.join("trigger.json")).expect("rename");
    let run = daemon.wait_runs("sample-job", 1).remove(0);
    assert_eq!(run["status"], "ok");
    let output = daemon.runner(&["runs", "output", run["run_id"].as_str().expect("id")]);
    output
        .assert_code(0)
        .assert_stdout_contains("DSARI=true")
        .assert_stdout_contains("JOB_NAME=sample-job")
        .assert_stdout_contains("CONCURRENCY_GROUP=sample-group")
        .assert_stdout_contains("TRIGGER_TYPE=file");
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));
}

#[test]
fn relative_paths_in_the_daemon_configuration_are_relative_to_it() {
    let daemon = Daemon::new(&[
        (
            "runner.yaml",
            "data_dir: data\njobs:\n  provision:\n    taskdir: tasks.d\n    config: chain.ini\n  cmd:\n    command: [\"/bin/sh\", \"-c\", \"cat $RUN_DIR/output.txt > /dev/null && echo ok\"]\n",
        ),
        ("chain.ini", "[runner]\nsleep_time = 0\n"),
        ("tasks.d/10-a.sh", "#!/bin/sh\necho from-chain\n"),
    ]);
    let task = daemon.config_dir().join("tasks.d/10-a.sh");
    std::fs::set_permissions(&task, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // Started from the configuration's directory with relative paths everywhere.
    let log = std::fs::File::create(daemon.log_path()).expect("log");
    let mut child = crate::support::runner()
        .args(["-v", "daemon", "--config", "runner.yaml"])
        .current_dir(daemon.config_dir())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn");
    assert!(
        wait_for(Duration::from_secs(20), || daemon
            .daemon_log()
            .contains("daemon started")),
        "{}",
        daemon.daemon_log()
    );
    let data = daemon.config_dir().join("data");
    for job in ["provision", "cmd"] {
        let mut trigger = crate::support::runner();
        trigger.arg("--state-dir").arg(&data).args(["trigger", job]);
        crate::support::Run::of(trigger).assert_code(0);
    }
    let show = |args: &[&str]| {
        let mut cmd = crate::support::runner();
        cmd.arg("--state-dir").arg(&data).args(args);
        crate::support::Run::of(cmd)
    };
    assert!(
        wait_for(Duration::from_secs(20), || {
            let list: serde_json::Value =
                serde_json::from_str(&show(&["runs", "list", "--format", "json"]).stdout())
                    .unwrap_or_default();
            list.as_array()
                .is_some_and(|l| l.len() == 2 && l.iter().all(|r| r["status"] != "running"))
        }),
        "{}",
        daemon.daemon_log()
    );
    let list: serde_json::Value =
        serde_json::from_str(&show(&["runs", "list", "--format", "json"]).stdout()).expect("json");
    for run in list.as_array().expect("runs") {
        assert_eq!(run["status"], "ok", "{run}");
        let id = run["run_id"].as_str().expect("id");
        let detail: serde_json::Value =
            serde_json::from_str(&show(&["runs", "show", id, "--format", "json"]).stdout())
                .expect("json");
        if run["job_name"] == "provision" {
            assert_eq!(detail["tasks"][0]["instance"], "a#0", "{detail}");
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    )
    .expect("signal");
    assert_eq!(child.wait().expect("wait").code(), Some(0));
}

#[test]
fn a_busy_daemon_keeps_its_wal_bounded_and_records_every_run() {
    // 200 jobs every second: several thousand WAL pages a second, far more than the
    // bound the daemon's store keeps its WAL under (4,000 frames, about 16 MiB).
    let mut yaml = String::from("jobs:\n");
    for i in 0..200 {
        yaml.push_str(&format!(
            "  job{i:03}:\n    command: [\"true\"]\n    schedule: \"{EVERY_SECOND}\"\n"
        ));
    }
    let mut daemon = Daemon::new(&[("runner.yaml", &yaml)]);
    daemon.start("runner.yaml");
    let db_path = daemon.state_dir().join("runner.sqlite3");
    let wal_path = daemon.state_dir().join("runner.sqlite3-wal");
    let finished = || -> i64 {
        rusqlite::Connection::open_with_flags(&db_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|db| db.query_row("SELECT count(*) FROM runs", [], |r| r.get(0)))
            .unwrap_or(0)
    };
    let mut largest = 0;
    let enough = wait_for(Duration::from_secs(90), || {
        largest = largest.max(std::fs::metadata(&wal_path).map_or(0, |m| m.len()));
        finished() >= 1_500
    });
    assert!(enough, "{}", daemon.daemon_log());
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0), "{}", daemon.daemon_log());
    // 1,500 runs wrote several times the bound to the WAL: it started over.
    assert!(
        largest <= 20 * 1024 * 1024,
        "the WAL reached {largest} bytes"
    );
    let db = rusqlite::Connection::open(&db_path).expect("db");
    let (all, bad): (i64, i64) = db
        .query_row(
            "SELECT count(*), total(exit_code != 0) FROM runs",
            [],
            |r| Ok((r.get(0)?, r.get::<_, f64>(1)? as i64)),
        )
        .expect("count");
    let running: i64 = db
        .query_row("SELECT count(*) FROM runs_running", [], |r| r.get(0))
        .expect("running");
    let owned: i64 = db
        .query_row(
            "SELECT count(*) FROM run_meta WHERE status = 'ok'",
            [],
            |r| r.get(0),
        )
        .expect("meta");
    assert!(all >= 1_500);
    assert_eq!(
        (bad, running),
        (0, 0),
        "every run ended with exit 0 and was moved to runs"
    );
    assert_eq!(owned, all, "every run has its status");
}

#[test]
fn a_return_data_fifo_is_refused_not_waited_on() {
    // A job that leaves a FIFO where its return data goes must not hold its run (and the
    // run's thread) open forever.
    let mut daemon = Daemon::new(&[(
        "runner.yaml",
        "jobs:\n  fifo:\n    command: [\"/bin/sh\", \"-c\", \"mkfifo \\\"$RUN_DIR/return_data.json\\\"\"]\n",
    )]);
    daemon.start("runner.yaml");
    let run = daemon.trigger_and_wait("fifo");
    assert_eq!(run["exit_code"], 0, "{run}");
    assert!(
        daemon.daemon_log().contains("not a regular file"),
        "{}",
        daemon.daemon_log()
    );
    daemon.signal(Signal::SIGTERM);
    daemon.wait();
}

#[test]
fn many_runs_at_once_do_not_run_out_of_open_files_and_get_the_limit_they_came_with() {
    // A service manager starts the daemon with a soft limit of 1024 open files. Each run
    // in progress holds a few of the daemon's descriptors, so a few hundred long runs at
    // once ran out: output files could not be made. The daemon raises its own soft limit
    // to the hard one; its runs get the soft limit the daemon was started with, as they
    // would without it (a program using select() breaks on descriptors past 1024).
    const SOFT: u64 = 96;
    const JOBS: usize = 40;
    let mut jobs = String::from("jobs:\n");
    for i in 0..JOBS {
        jobs.push_str(&format!(
            "  job{i:02}:\n    command: [\"/bin/sh\", \"-c\", \"grep 'Max open files' /proc/self/limits > limits; sleep 3\"]\n    schedule: \"{EVERY_SECOND}\"\n"
        ));
    }
    let mut daemon = Daemon::new(&[("runner.yaml", &jobs)]);
    daemon.start_with_open_files("", SOFT);
    // Three seconds a run, a run a second: some 120 runs at once, each holding one of
    // the daemon's descriptors (its pidfd; three before), against a soft limit of 96.
    for i in 0..JOBS {
        daemon.wait_runs(&format!("job{i:02}"), 3);
    }
    let daemon_limits =
        std::fs::read_to_string(format!("/proc/{}/limits", daemon.child_pid())).expect("limits");
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));
    let log = daemon.daemon_log();
    assert!(!log.contains("Too many open files"), "{log}");
    let soft_of = |line: &str| -> u64 {
        line.split_whitespace()
            .nth(3)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no soft limit in {line:?}"))
    };
    let own = daemon_limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files line");
    assert!(soft_of(own) > SOFT, "the daemon kept its soft limit: {own}");
    let runs = daemon.runs();
    assert!(runs.len() >= 3 * JOBS, "{} runs", runs.len());
    let mut seen = 0;
    for run in runs.iter().filter(|r| r["status"] != "running") {
        assert_eq!(run["exit_code"], 0, "{run}\n{log}");
        let dir = daemon
            .state_dir()
            .join("runs")
            .join(run["job_name"].as_str().expect("job"))
            .join(run["run_id"].as_str().expect("run id"));
        assert!(
            dir.join("output.txt").is_file(),
            "no output.txt in {}",
            dir.display()
        );
        let limits = std::fs::read_to_string(dir.join("limits")).expect("the run's limits");
        assert_eq!(soft_of(&limits), SOFT, "{}: {limits}", dir.display());
        seen += 1;
    }
    assert!(seen >= 3 * JOBS, "{seen} finished runs");
}

#[test]
fn a_command_that_cannot_start_says_why_in_the_runs_output() {
    // The process is handed output.txt and runner keeps no descriptor of it; when the
    // spawn fails, runner opens the file again to say why.
    let mut daemon = Daemon::new(&[
        ("not-executable", "#!/bin/sh\necho never\n"),
        (
            "runner.yaml",
            "jobs:\n  broken:\n    command: [\"@ROOT@/etc/not-executable\"]\n",
        ),
    ]);
    daemon.start("runner.yaml");
    let run = daemon.trigger_and_wait("broken");
    assert_eq!(run["status"], "failed", "{run}\n{}", daemon.daemon_log());
    assert_eq!(run["exit_code"], 127, "{run}");
    let output = daemon
        .state_dir()
        .join("runs/broken")
        .join(run["run_id"].as_str().expect("run id"))
        .join("output.txt");
    let text = std::fs::read_to_string(&output).expect("output.txt");
    assert!(
        text.starts_with("runner: cannot start the command: ") && text.contains("ermission"),
        "{text:?}"
    );
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(), Some(0));
}
