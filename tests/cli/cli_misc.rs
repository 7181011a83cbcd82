//! The command line itself: completions, verbosity, --version, record filters.

use crate::support::{Chain, Run, runner};

#[test]
fn completions_for_each_shell_mention_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let mut cmd = runner();
        cmd.args(["completions", shell]);
        let run = Run::of(cmd);
        run.assert_code(0).assert_stdout_contains("runner");
        assert!(
            run.stdout().contains("daemon") && run.stdout().contains("check"),
            "{shell}"
        );
    }
    let mut cmd = runner();
    cmd.args(["completions", "tcsh"]);
    Run::of(cmd).assert_code(2);
}

#[test]
fn quiet_hides_progress_and_verbose_shows_decisions() {
    let chain = Chain::new().task("10-a.sh", "true");
    let run = chain.run(&["-q"]);
    run.assert_code(0);
    assert_eq!(run.stderr(), "", "-q logs only errors");
    let run = chain.run(&[]);
    run.assert_stderr_contains("runner: info: task \"a\"");
    let run = chain.run(&["-v"]);
    run.assert_code(0);
    assert!(run.stderr().contains("runner: debug:"), "{}", run.stderr());
}

#[test]
fn version_and_help_exit_zero() {
    let mut cmd = runner();
    cmd.arg("--version");
    Run::of(cmd)
        .assert_code(0)
        .assert_stdout_contains(env!("CARGO_PKG_VERSION"));
    let mut cmd = runner();
    cmd.arg("--help");
    Run::of(cmd)
        .assert_code(0)
        .assert_stdout_contains("Exit codes");
}

#[test]
fn chain_options_before_a_subcommand_are_refused() {
    let chain = Chain::new();
    chain
        .runner(&["-c", "x.ini", "runs", "list"])
        .assert_code(2)
        .assert_stderr_contains("go after the subcommand");
}

#[test]
fn runs_list_filters_by_job_and_limits() {
    let chain = Chain::new()
        .task("10-a.sh", "true")
        .ini("[runner]\nname = alpha");
    for _ in 0..3 {
        chain.run(&[]).assert_code(0);
    }
    let other = Chain::new()
        .task("10-b.sh", "true")
        .ini("[runner]\nname = beta");
    let _ = other.command(&[]); // writes beta's configuration file
    let mut cmd = runner();
    cmd.arg("--state-dir").arg(chain.state_dir());
    cmd.arg("-c").arg(other.config_path()).arg(other.taskdir());
    Run::of(cmd).assert_code(0);

    let all = chain.runs_json(&["list"]);
    assert_eq!(all.as_array().map(Vec::len), Some(4));
    assert_eq!(all[0]["job_name"], "beta", "newest first");
    let alpha = chain.runs_json(&["list", "--job", "alpha", "--limit", "2"]);
    let alpha = alpha.as_array().expect("array");
    assert_eq!(alpha.len(), 2);
    assert!(alpha.iter().all(|r| r["job_name"] == "alpha"));
    let both = chain.runs_json(&["list", "--job", "alpha", "--job", "beta"]);
    assert_eq!(both.as_array().map(Vec::len), Some(4));
}

#[test]
fn an_io_error_is_said_once_with_its_path() {
    let chain = Chain::new();
    let file = chain.path().join("not-a-dir");
    std::fs::write(&file, "x").expect("write");
    let mut cmd = runner();
    cmd.arg("--state-dir")
        .arg(chain.state_dir())
        .args(["report", "--out"])
        .arg(&file);
    let run = Run::of(cmd);
    run.assert_code(1);
    let stderr = run.stderr();
    assert!(stderr.contains("not-a-dir: File exists"), "{stderr}");
    assert_eq!(stderr.matches("File exists").count(), 1, "{stderr}");
}
