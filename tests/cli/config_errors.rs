//! Bad input: every configuration error exits 78 before any task runs, and names the
//! culprit; usage errors exit 2; nothing panics.

use std::os::unix::fs::PermissionsExt;

use crate::support::{Chain, Run, is_root, runner, skip};

fn a_task() -> Chain {
    Chain::new().task("10-a.sh", "echo ran >> \"$LOG\"")
}

#[track_caller]
fn assert_config_error(chain: &Chain, needle: &str) {
    chain
        .run(&[])
        .assert_code(78)
        .assert_stderr_contains(needle);
    assert!(chain.log_lines().is_empty(), "a task ran despite the error");
}

#[test]
fn malformed_line_names_file_and_line() {
    let chain = a_task().ini("[runner]\nthis line is wrong");
    // The fast defaults take 4 lines, then a blank line: the bad line is line 7.
    let needle = format!(
        "{}:7: expected \"key = value\"",
        chain.config_path().display()
    );
    assert_config_error(&chain, &needle);
}

#[test]
fn unknown_runner_key_is_named_with_a_suggestion() {
    let chain = a_task().ini("[runner]\nmax_tris = 3");
    assert_config_error(&chain, "unknown key \"max_tris\" in [runner]");
    chain
        .run(&[])
        .assert_stderr_contains("did you mean \"max_tries\"?");
}

#[test]
fn bad_value_names_key() {
    let chain = a_task().ini("[a]\nmax_time = forever");
    assert_config_error(&chain, "[a] max_time: \"forever\" is not a duration");
}

#[test]
fn unknown_dependency_names_both_tasks() {
    let chain = a_task().ini("[a]\ndepends_on = nosuch");
    assert_config_error(&chain, "task \"a\" depends on \"nosuch\"");
}

#[test]
fn cycle_names_the_tasks() {
    let chain = a_task()
        .task("20-b.sh", "true")
        .task("30-c.sh", "true")
        .ini("[a]\ndepends_on = c\n[b]\ndepends_on = a\n[c]\ndepends_on = b");
    assert_config_error(&chain, "dependency cycle: a -> c -> b -> a");
}

#[test]
fn duplicate_task_names_are_an_error() {
    let chain = a_task().task("20-a.py", "true");
    assert_config_error(&chain, "both have the task name \"a\"");
}

#[test]
fn non_executable_task_is_an_error_before_anything_runs() {
    let chain = a_task().file("20-b.sh", "#!/bin/sh\ntrue\n", 0o644);
    assert_config_error(&chain, "20-b.sh is not executable");
    chain.run(&[]).assert_stderr_contains("chmod +x");
}

#[test]
fn missing_config_file_is_78() {
    let chain = a_task();
    let mut cmd = runner();
    cmd.arg("--state-dir").arg(chain.state_dir());
    cmd.args(["-c", "/nonexistent/runner.ini"])
        .arg(chain.taskdir());
    Run::of(cmd)
        .assert_code(78)
        .assert_stderr_contains("/nonexistent/runner.ini: cannot read configuration");
}

#[test]
fn missing_task_directory_is_78() {
    let mut cmd = runner();
    cmd.args(["--state-dir", "/tmp/unused-state", "/nonexistent/tasks.d"]);
    Run::of(cmd)
        .assert_code(78)
        .assert_stderr_contains("cannot read task directory");
}

#[test]
fn usage_errors_exit_2() {
    Run::of({
        let mut c = runner();
        c.arg("--no-such-flag");
        c
    })
    .assert_code(2);
    Run::of({
        let mut c = runner();
        c.args(["-n", "many", "x"]);
        c
    })
    .assert_code(2);
    Run::of(runner()).assert_code(2);
}

#[test]
fn unsafe_permissions_are_refused_as_root() {
    if !is_root() {
        skip("permission checks only apply when runner runs as root");
        return;
    }
    let chain = a_task();
    let task = chain.taskdir().join("10-a.sh");
    std::fs::set_permissions(&task, std::fs::Permissions::from_mode(0o775)).expect("chmod");
    assert_config_error(&chain, "refusing to use task file");
    chain.run(&[]).assert_stderr_contains("chmod go-w");
    chain.run(&["--insecure"]).assert_code(0);

    let chain = a_task();
    std::fs::set_permissions(chain.taskdir(), std::fs::Permissions::from_mode(0o777))
        .expect("chmod");
    assert_config_error(&chain, "refusing to use task directory");

    let chain = a_task();
    chain.run(&[]).assert_code(0);
    std::fs::set_permissions(chain.config_path(), std::fs::Permissions::from_mode(0o666))
        .expect("chmod");
    // `run` rewrites the config with mode 0644, so check through `check` on the file as is.
    let mut cmd = runner();
    cmd.args(["check", "-c"])
        .arg(chain.config_path())
        .arg(chain.taskdir());
    Run::of(cmd)
        .assert_code(78)
        .assert_stderr_contains("refusing to use configuration file");

    let chain = a_task();
    let task = chain.taskdir().join("10-a.sh");
    nix::unistd::chown(&task, Some(nix::unistd::Uid::from_raw(65534)), None).expect("chown");
    assert_config_error(&chain, "owned by uid 65534");
}

#[test]
fn absurd_durations_and_empty_commands_are_configuration_errors() {
    let chain = a_task().ini("[runner]\nmax_time = 18446744073709551615");
    assert_config_error(&chain, "longer than ten years");
    let chain = a_task().ini("[a]\nkill_grace = 200 years");
    assert_config_error(&chain, "longer than ten years");
    let chain = a_task().ini("[runner]\ninterpreter = \"\"");
    assert_config_error(&chain, "[runner] interpreter: empty command");
}

#[test]
fn a_task_may_not_take_the_halt_tasks_or_a_reserved_sections_name() {
    let chain = a_task().task("20-halt.sh", "true").task("halt.sh", "true");
    assert_config_error(
        &chain,
        "\"20-halt.sh\" has the name \"halt\", which is the halt task's",
    );
    let chain = a_task().task("20-env.sh", "true");
    assert_config_error(&chain, "is the [env] section of the configuration");
}

#[test]
fn a_byte_order_mark_is_ignored() {
    let chain = a_task();
    let _ = chain.command(&[]); // writes the configuration
    let text = std::fs::read_to_string(chain.config_path()).expect("read ini");
    std::fs::write(
        chain.config_path(),
        format!("\u{feff}{text}\n[env]\nGREETING = hi\n"),
    )
    .expect("write ini");
    // `run` writes the file again: go through `check` and `-g` on the file as it is.
    let mut cmd = runner();
    cmd.arg("-c")
        .arg(chain.config_path())
        .args(["-g", "env.GREETING"]);
    assert_eq!(Run::of(cmd).assert_code(0).stdout(), "hi\n");
    let mut cmd = runner();
    cmd.args(["check", "-c"])
        .arg(chain.config_path())
        .arg(chain.taskdir());
    Run::of(cmd).assert_code(0);
}

#[test]
fn misspelt_sections_are_errors_with_a_hint() {
    let chain = a_task().ini("[runnr]\nmax_tries = 1");
    assert_config_error(&chain, "runner.ini:6: section [runnr] is not [runner]");
    chain
        .run(&[])
        .assert_stderr_contains("did you mean [runner]?");
    let chain = a_task()
        .task("20-flaky.sh", "true")
        .ini("[flakey]\nmax_tries = 9");
    assert_config_error(&chain, "section [flakey]");
    chain
        .run(&[])
        .assert_stderr_contains("did you mean [flaky]?");
    let chain = a_task().ini("[Env]\nFOO = 1");
    assert_config_error(&chain, "did you mean [env]?");
    let chain = a_task().ini("[default]\nFOO = 1");
    assert_config_error(&chain, "did you mean [DEFAULT]?");
    // Sections that are no near miss are free for tasks.
    let chain = a_task().ini("[hg]\nremote = x\n[a]\nmax_tries = 1\n[mozharness]\nx = 1");
    chain.run(&[]).assert_code(0);
    assert_eq!(chain.log_lines(), ["ran"]);
}

#[test]
fn a_nul_byte_in_env_is_found_before_any_task() {
    let chain = a_task().ini("[env]\nOK = 1\nBAD = a\0b");
    assert_config_error(
        &chain,
        "runner.ini:8: [env] BAD: the value holds a NUL byte",
    );
    let mut cmd = runner();
    cmd.args(["check", "-c"])
        .arg(chain.config_path())
        .arg(chain.taskdir());
    Run::of(cmd)
        .assert_code(78)
        .assert_stderr_contains("[env] BAD: the value holds a NUL byte");
}

#[test]
fn a_job_name_too_long_for_its_lock_file_is_an_error() {
    let name = "j".repeat(300);
    let chain = a_task().ini(&format!("[runner]\nname = {name}"));
    assert_config_error(
        &chain,
        "runner.ini:7: [runner] name: the job name is 300 bytes long; at most 250 fit",
    );
    let chain = a_task().ini(&format!("[runner]\nname = {}", "j".repeat(250)));
    chain.run(&[]).assert_code(0);
}

#[test]
fn a_job_name_with_a_control_character_is_an_error() {
    // A continuation line makes the name "a\nb": a newline in a directory name and in
    // every `runs list` row.
    let chain = a_task().ini("[runner]\nname = a\n  b");
    assert_config_error(
        &chain,
        "runner.ini:7: [runner] name: \"a\\nb\" cannot be a job name",
    );
    let chain = a_task().ini("[runner]\nname = a\tb");
    assert_config_error(&chain, "or a control character");
    let chain = a_task().ini("[runner]\nname = a b-ü");
    chain.run(&[]).assert_code(0);
}

#[test]
fn a_missing_interpreter_is_named_before_any_task() {
    let chain = a_task().ini("[runner]\ninterpreter = python4 -u");
    assert_config_error(
        &chain,
        "runner.ini:7: [runner] interpreter: interpreter \"python4\" is not found in PATH",
    );
    let chain = a_task()
        .task("20-b.sh", "true")
        .ini("[b]\ninterpreter = /nonexistent/sh");
    assert_config_error(
        &chain,
        "runner.ini:7: [b] interpreter: interpreter \"/nonexistent/sh\" does not exist",
    );
    // The PATH tasks get is the one searched: [env] may set it.
    let chain = a_task().ini("[runner]\ninterpreter = sh\n[env]\nPATH = /nonexistent");
    assert_config_error(&chain, "interpreter \"sh\" is not found in PATH");
}

#[test]
fn a_missing_shebang_interpreter_is_named_before_any_task() {
    let chain = a_task().file("20-b.py", "#!/usr/bin/python4 -u\nprint(1)\n", 0o755);
    assert_config_error(
        &chain,
        "20-b.py:1: the task's #! line names interpreter \"/usr/bin/python4\", which does not exist",
    );
    let chain = a_task().file("20-b.py", "#!/usr/bin/env python4\nprint(1)\n", 0o755);
    assert_config_error(
        &chain,
        "names interpreter \"python4\", which does not exist",
    );
    let chain = a_task().file("20-b", "#! /bin/sh -e\necho b >> \"$LOG\"\n", 0o755);
    chain.run(&[]).assert_code(0);
    assert_eq!(chain.log_lines(), ["ran", "b"]);
}

#[test]
fn a_task_directory_name_too_long_for_a_job_name_is_a_configuration_error() {
    let chain = a_task();
    let long = chain.path().join("d".repeat(252));
    std::fs::rename(chain.taskdir(), &long).expect("rename");
    let mut cmd = runner();
    cmd.arg("--state-dir")
        .arg(chain.state_dir())
        .arg("check")
        .arg(&long);
    Run::of(cmd)
        .assert_code(78)
        .assert_stderr_contains("the job name is 252 bytes long")
        .assert_stderr_contains("set [runner] name");
}

/// `runner check --daemon PATH` on files under a fresh config dir, expecting exit 78 and
/// `FILE:LINE:COLUMN: REST` on stderr.
#[track_caller]
fn assert_daemon_error(files: &[(&str, &str)], check: &str, file: &str, rest: &str) {
    let daemon = crate::support::Daemon::new(files);
    let dir = daemon.config_dir();
    daemon
        .runner(&[
            "check",
            "--daemon",
            dir.join(check).to_str().expect("utf-8"),
        ])
        .assert_code(78)
        .assert_stderr_contains(&format!("{}:{rest}", dir.join(file).display()));
}

#[test]
fn daemon_value_errors_name_file_line_column_job_and_key() {
    // YAML, flow style: the column of the bad value.
    assert_daemon_error(
        &[(
            "daemon.yaml",
            "jobs: {a: {command: [x], schedule: \"*/5 * * * * * * *\"}}\n",
        )],
        "daemon.yaml",
        "daemon.yaml",
        "1:36: job \"a\": key \"schedule\": ",
    );
    // YAML, block style: a bad duration.
    assert_daemon_error(
        &[(
            "daemon.yaml",
            "jobs:\n  a:\n    command: [x]\n    max_execution: soon\n",
        )],
        "daemon.yaml",
        "daemon.yaml",
        "4:20: job \"a\": key \"max_execution\": \"soon\" is not a duration",
    );
    // JSON: a wrong type.
    assert_daemon_error(
        &[(
            "daemon.json",
            "{\n  \"jobs\": {\n    \"a\": {\n      \"command\": [\"x\"],\n      \"max_execution\": [1]\n    }\n  }\n}\n",
        )],
        "daemon.json",
        "daemon.json",
        "5:24: job \"a\": key \"max_execution\": expected seconds",
    );
    // config.d files, YAML and JSON: the file that set the key, not the main one.
    let main = ("conf/runner.yaml", "jobs:\n  a: {command: [x]}\n");
    assert_daemon_error(
        &[
            main,
            (
                "conf/config.d/10-a.yaml",
                "jobs:\n  a:\n    max_execution: -5\n",
            ),
        ],
        "conf",
        "conf/config.d/10-a.yaml",
        "3:20: job \"a\": key \"max_execution\": -5 is negative",
    );
    assert_daemon_error(
        &[
            main,
            (
                "conf/config.d/20-a.json",
                "{\"jobs\": {\"a\": {\n  \"concurrent_runs\": \"maybe\"}}}\n",
            ),
        ],
        "conf",
        "conf/config.d/20-a.json",
        "2:22: job \"a\": key \"concurrent_runs\": expected a bool, found a string",
    );
    // An unknown key is placed at the key.
    assert_daemon_error(
        &[
            main,
            (
                "conf/config.d/30-a.yaml",
                "jobs:\n  a:\n    scedule: '@daily'\n",
            ),
        ],
        "conf",
        "conf/config.d/30-a.yaml",
        "3:5: job \"a\": unknown key \"scedule\"",
    );
}
