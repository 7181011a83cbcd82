//! Which files run, in which order.

use crate::support::{Chain, skip};

#[test]
fn tasks_run_in_file_name_order_like_run_parts() {
    let chain = Chain::new()
        .task("20-b.sh", "echo b >> \"$LOG\"")
        .task("10-a.sh", "echo a >> \"$LOG\"")
        .task("B.sh", "echo B >> \"$LOG\"")
        .task("c", "echo c >> \"$LOG\"");
    chain.run(&[]).assert_code(0);
    assert_eq!(chain.log_lines(), ["a", "b", "B", "c"]);
}

#[test]
fn ignored_files_never_run() {
    let chain = Chain::new()
        .task("10-a.sh", "echo a >> \"$LOG\"")
        .task(".hidden.sh", "echo hidden >> \"$LOG\"")
        .task("20-b.sh~", "echo backup >> \"$LOG\"")
        .task("30-c.dpkg-old", "echo dpkg >> \"$LOG\"")
        .task("40-d.rpmnew", "echo rpm >> \"$LOG\"")
        .task("halt.sh", "echo halt >> \"$LOG\"");
    std::fs::create_dir(chain.taskdir().join("50-dir")).expect("mkdir");
    chain.run(&[]).assert_code(0);
    assert_eq!(chain.log_lines(), ["a"]);
}

#[test]
fn depends_on_reorders_with_file_name_tie_break() {
    let chain = Chain::new()
        .task("10-report.sh", "echo report >> \"$LOG\"")
        .task("20-fetch.sh", "echo fetch >> \"$LOG\"")
        .task("30-build.sh", "echo build >> \"$LOG\"")
        .task("40-other.sh", "echo other >> \"$LOG\"")
        .ini("[report]\ndepends_on = build\n[build]\ndepends_on = fetch");
    chain.run(&[]).assert_code(0);
    assert_eq!(chain.log_lines(), ["fetch", "build", "report", "other"]);
}

#[test]
fn disabled_task_is_skipped_and_satisfies_dependents() {
    let chain = Chain::new()
        .task("10-a.sh", "echo a >> \"$LOG\"")
        .task("20-b.sh", "echo b >> \"$LOG\"")
        .ini("[a]\nenabled = false\n[b]\ndepends_on = a");
    chain.run(&[]).assert_code(0);
    assert_eq!(chain.log_lines(), ["b"]);
}

#[test]
fn interpreter_runs_files_without_execute_bit() {
    let chain = Chain::new()
        .file("10-a.sh", "echo \"a $0\" >> \"$LOG\"\n", 0o644)
        .ini("[runner]\ninterpreter = /bin/sh");
    chain.run(&[]).assert_code(0);
    let log = chain.log();
    assert!(log.starts_with("a /"), "{log}");
    assert!(log.trim_end().ends_with("10-a.sh"), "{log}");
}

#[test]
fn per_task_interpreter_with_arguments() {
    let has_python = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("python3").is_file()));
    if !has_python {
        skip("per_task_interpreter_with_arguments: python3 is not on PATH");
        return;
    }
    let chain = Chain::new()
        .file("10-py.txt", "print('from', 'python')\n", 0o644)
        .file("20-sh.txt", "echo from sh >> \"$LOG\"\n", 0o644)
        .ini("[py]\ninterpreter = python3 -u\n[sh]\ninterpreter = /bin/sh");
    chain
        .run(&[])
        .assert_code(0)
        .assert_stdout_contains("from python");
    assert_eq!(chain.log_lines(), ["from sh"]);
}

#[test]
fn iterations_run_the_chain_n_times_and_halt_after() {
    let chain = Chain::new()
        .task("10-a.sh", "echo \"a $RUNNER_RUN_ID\" >> \"$LOG\"")
        .task("halt.sh", "echo halt >> \"$LOG\"");
    chain.run(&["-n", "3", "-H"]).assert_code(0);
    let lines = chain.log_lines();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[3], "halt");
    let ids: std::collections::BTreeSet<&String> = lines[..3].iter().collect();
    assert_eq!(ids.len(), 3, "each iteration is its own run: {lines:?}");
}

#[test]
fn parallel_runs_independent_tasks_together_with_prefixes() {
    // a and b wait for each other through files: they can only both finish if they
    // run at the same time. c depends on both.
    let dir_wait =
        "i=0; while [ ! -e \"$LOG.$1\" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done";
    let chain = Chain::new()
        .task(
            "10-a.sh",
            &format!(
                "set -- b\n: > \"$LOG.a\"\n{dir_wait}\n[ -e \"$LOG.b\" ] || exit 1\necho a-out"
            ),
        )
        .task(
            "20-b.sh",
            &format!(
                "set -- a\n: > \"$LOG.b\"\n{dir_wait}\n[ -e \"$LOG.a\" ] || exit 1\necho b-out"
            ),
        )
        .task("30-c.sh", "echo c >> \"$LOG\"")
        .ini("[runner]\nparallel = 2\nmax_tries = 1\n[c]\ndepends_on = a, b");
    let run = chain.run(&[]);
    run.assert_code(0)
        .assert_stdout_contains("[a] a-out")
        .assert_stdout_contains("[b] b-out");
    assert_eq!(chain.log_lines(), ["c"]);
}

#[test]
fn a_prefixed_last_line_without_newline_is_ended_before_the_next_task() {
    let chain = Chain::new()
        .task("10-a.sh", "echo a-out; printf a-partial")
        .task("20-b.sh", "echo b-out")
        .ini("[runner]\nparallel = 2\nmax_tries = 1\n[b]\ndepends_on = a");
    let run = chain.run(&[]);
    run.assert_code(0);
    let stdout = run.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        ["[a] a-out", "[a] a-partial", "[b] b-out"],
        "{stdout}"
    );
}

#[test]
fn strictly_sequential_by_default() {
    let chain = Chain::new()
        .task(
            "10-a.sh",
            "echo start-a >> \"$LOG\"; sleep 0.2; echo end-a >> \"$LOG\"",
        )
        .task("20-b.sh", "echo start-b >> \"$LOG\"");
    chain.run(&[]).assert_code(0);
    assert_eq!(chain.log_lines(), ["start-a", "end-a", "start-b"]);
}

#[test]
fn zero_iterations_runs_forever_until_signalled() {
    let chain = Chain::new().task("10-a.sh", "echo \"$RUNNER_RUN_ID\" >> \"$LOG\"");
    let mut child = chain.spawn(&["-n", "0"]);
    assert!(crate::support::wait_for(
        std::time::Duration::from_secs(20),
        || chain.log_lines().len() >= 5
    ));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal");
    assert_eq!(child.wait().expect("wait").code(), Some(143));
    let runs = chain.runs_json(&["list", "--limit", "1000"]);
    let runs = runs.as_array().expect("runs");
    assert!(runs.len() >= 5);
    assert!(
        runs.iter().skip(1).all(|r| r["status"] == "ok"),
        "every finished iteration succeeded"
    );
}
