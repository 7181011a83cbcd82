//! The first word of the command line (contract section 1): a subcommand's name is always
//! the subcommand, never a directory of that name, and a word that is neither is named as
//! an unknown command with a hint.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use clap::CommandFactory;

use crate::support::{Run, runner, wait_for};

#[test]
fn a_subcommand_name_never_runs_a_directory_of_that_name() {
    let root = tempfile::tempdir().expect("tempdir");
    let log = root.path().join("log");
    // Every subcommand clap knows, so that one added later is covered too.
    let names: Vec<String> = runner::cli::Cli::command()
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .chain(
            [
                "help", "report", "metrics", "fire", "events", "replay", "skip",
            ]
            .map(String::from),
        )
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(names.iter().any(|n| n == "check"), "{names:?}");
    for name in &names {
        let dir = root.path().join(name);
        fs::create_dir(&dir).expect("mkdir");
        let task = dir.join("10-a.sh");
        fs::write(&task, format!("#!/bin/sh\necho {name} >> \"$LOG\"\n")).expect("write");
        fs::set_permissions(&task, fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut child = runner()
            .args(["--state-dir"])
            .arg(root.path().join("state"))
            .arg(name)
            .env("LOG", &log)
            .env("XDG_CONFIG_HOME", root.path().join("no-config"))
            .current_dir(root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        // A subcommand that waits (the daemon) is stopped; it must not have run the tasks.
        let ended = wait_for(Duration::from_secs(10), || {
            child.try_wait().expect("wait").is_some()
        });
        if !ended {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert_eq!(
            fs::read_to_string(&log).unwrap_or_default(),
            "",
            "`runner {name}` ran ./{name}"
        );
    }
    // `./NAME` is the way to run such a directory.
    let mut cmd = runner();
    cmd.arg("--no-record")
        .arg("./check")
        .env("LOG", &log)
        .current_dir(root.path());
    Run::of(cmd).assert_code(0);
    assert_eq!(fs::read_to_string(&log).expect("log"), "check\n");
}

#[test]
fn a_mistyped_subcommand_is_an_unknown_command_with_a_hint() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut cmd = runner();
    cmd.args(["chek", "-c", "runner.ini", "tasks.d"])
        .current_dir(root.path());
    Run::of(cmd)
        .assert_code(2)
        .assert_stderr_contains("unknown command chek (did you mean check?)");
    let mut cmd = runner();
    cmd.arg("frobnicate").current_dir(root.path());
    Run::of(cmd)
        .assert_code(2)
        .assert_stderr_contains("unknown command frobnicate");
}
