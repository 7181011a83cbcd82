//! Input built to stall or slip through (contract section 12): deeply nested YAML is
//! refused at once, trigger files are bounded before they reach the store, and names
//! with control characters cannot forge log lines.

use std::fs;
use std::time::Duration;

use crate::support::{Chain, Daemon, Run, runner, wait_for};

#[test]
fn deeply_nested_yaml_and_json_are_refused_at_once() {
    let root = tempfile::tempdir().expect("tempdir");
    for (name, text) in [
        (
            "deep.yaml",
            format!("jobs: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)),
        ),
        (
            "deep.json",
            format!(
                "{{\"jobs\": {}{}}}\n",
                "[".repeat(100_000),
                "]".repeat(100_000)
            ),
        ),
        ("stairs.yaml", {
            let mut s = String::from("jobs:\n");
            for level in 1..2000 {
                s.push_str(&" ".repeat(level));
                s.push_str("k:\n");
            }
            s
        }),
        ("dashes.yaml", format!("jobs:\n{}x\n", "- ".repeat(50_000))),
    ] {
        let path = root.path().join(name);
        fs::write(&path, text).expect("write");
        let mut cmd = runner();
        cmd.arg("--state-dir")
            .arg(root.path().join("state"))
            .args(["check", "--daemon"])
            .arg(&path);
        let run = Run::of(cmd);
        run.assert_code(78)
            .assert_stderr_contains("nested more than 64 levels deep");
        // Generous for a loaded machine: before the bound this took 21 s.
        assert!(
            run.elapsed < Duration::from_secs(10),
            "{name}: {:?}",
            run.elapsed
        );
    }
}

#[test]
fn hostile_trigger_files_are_refused_and_bounded() {
    let mut daemon = Daemon::new(&[("runner.yaml", "jobs:\n  manual:\n    command: [\"true\"]\n")]);
    daemon.start("runner.yaml");
    let dir = daemon.state_dir().join("trigger/manual");
    fs::create_dir_all(&dir).expect("mkdir");
    let drop_in = |name: &str, text: String| {
        let tmp = dir.join(".tmp");
        fs::write(&tmp, text).expect("write");
        fs::rename(&tmp, dir.join(name)).expect("rename");
        let invalid = dir.join(format!("{name}.invalid"));
        assert!(
            wait_for(Duration::from_secs(20), || invalid.exists()),
            "{name} was not refused:\n{}",
            daemon.daemon_log()
        );
        fs::remove_file(invalid).expect("rm");
    };
    let nested = format!("a: {}{}\n", "[".repeat(30_000), "]".repeat(30_000));
    drop_in("trigger.yaml", nested);
    assert!(daemon.daemon_log().contains("nested more than 64 levels"));
    drop_in(
        "trigger.json",
        format!("{{\"type\": \"{}\"}}", "x".repeat(1 << 20)),
    );
    assert!(daemon.daemon_log().contains("larger than 64 KiB"));
    drop_in(
        "trigger.json",
        format!("{{\"type\": \"{}\"}}", "x".repeat(1000)),
    );
    assert!(
        daemon
            .daemon_log()
            .contains("type must be at most 256 bytes")
    );
    daemon
        .runner(&["trigger", "manual", "--type", &"x".repeat(1000)])
        .assert_code(2)
        .assert_stderr_contains("--type must be at most 256 bytes");
    // A good one still runs, and nothing was recorded from the others.
    let run = daemon.trigger_and_wait("manual");
    assert_eq!(run["trigger_type"], "file");
    assert_eq!(daemon.finished_runs("manual").len(), 1);
}

#[test]
fn control_characters_in_names_are_escaped_in_the_log() {
    let chain = Chain::new().task("10-a\nrunner: error: forged\u{1b}[2J.sh", "true");
    let run = chain.run(&[]);
    run.assert_code(0)
        .assert_stderr_contains("task \"a\\nrunner: error: forged\\x1b[2J\"");
    assert!(
        !run.stderr()
            .lines()
            .any(|l| l.starts_with("runner: error: forged")),
        "{}",
        run.stderr()
    );
    assert!(!run.stderr().contains('\u{1b}'));
}

#[test]
fn a_non_ascii_rrule_is_a_configuration_error_not_a_panic() {
    // Found by fuzzing the schedule reader: the rrule crate panicked here.
    let mut cmd = runner();
    cmd.args(["schedule", "RRULE:FREQ=MINUTELY;BYDAY=0\u{d9}2"]);
    Run::of(cmd)
        .assert_code(78)
        .assert_stderr_contains("only ASCII characters");
}
