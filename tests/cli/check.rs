//! `runner check`: the plan, every file accounted for, nothing run.

use crate::support::Chain;

fn planned() -> Chain {
    let chain = Chain::new()
        .task("10-fetch.sh", "echo ran >> \"$LOG\"")
        .task("20-build.sh", "echo ran >> \"$LOG\"")
        .task("05-report.sh", "echo ran >> \"$LOG\"")
        .task("30-off.sh", "echo ran >> \"$LOG\"")
        .task(".hidden", "true")
        .task("40-old.sh~", "true")
        .task("50-x.dpkg-dist", "true")
        .task("halt.sh", "true")
        .ini("[report]\ndepends_on = build\nfrequency = once\n[off]\nenabled = false\n[build]\nmax_time = 2m\ninterpreter = /bin/sh -e");
    std::fs::create_dir(chain.taskdir().join("sub")).expect("mkdir");
    chain
}

#[test]
fn check_prints_every_file_with_its_position_or_reason() {
    let chain = planned();
    let mut args = vec!["check", "-c"];
    let config = chain.config_path();
    let config = config.to_str().expect("utf-8").to_owned();
    args.push(&config);
    let taskdir = chain.taskdir();
    let taskdir = taskdir.to_str().expect("utf-8").to_owned();
    args.push(&taskdir);
    let _ = chain.command(&[]); // writes the configuration
    let run = chain.runner(&args);
    run.assert_code(0)
        .assert_stdout_contains("job:            tasks.d")
        .assert_stdout_contains("ok: 3 task(s) will run");
    let out = run.stdout();
    let line = |file: &str| {
        out.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(file))
            .unwrap_or_else(|| panic!("no line for {file}:\n{out}"))
            .to_owned()
    };
    assert!(line("10-fetch.sh").starts_with("1  "), "{out}");
    assert!(line("20-build.sh").starts_with("2  "), "{out}");
    assert!(line("05-report.sh").starts_with("3  "), "{out}");
    assert!(line("05-report.sh").contains("depends_on=build"));
    assert!(line("05-report.sh").contains("frequency=once"));
    assert!(line("20-build.sh").contains("max_time=2m"));
    assert!(line("20-build.sh").contains("interpreter=/bin/sh -e"));
    assert!(line("30-off.sh").contains("not run: disabled"));
    assert!(line(".hidden").contains("not run: hidden file"));
    assert!(line("40-old.sh~").contains("not run: backup file"));
    assert!(line("50-x.dpkg-dist").contains("not run: package or editor leftover"));
    assert!(line("halt.sh").contains("not run: halt task"));
    assert!(line("sub").contains("not run: directory"));
    assert!(chain.log_lines().is_empty(), "check runs nothing");
    assert!(!chain.state_dir().exists(), "check records nothing");
}

#[test]
fn check_json_is_the_same_plan_for_scripts() {
    let chain = planned();
    let _ = chain.command(&[]);
    let config = chain.config_path();
    let taskdir = chain.taskdir();
    let run = chain.runner(&[
        "check",
        "--format",
        "json",
        "-c",
        config.to_str().expect("utf-8"),
        taskdir.to_str().expect("utf-8"),
    ]);
    run.assert_code(0);
    let plan: serde_json::Value = serde_json::from_str(&run.stdout()).expect("json");
    let names: Vec<&str> = plan["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["fetch", "build", "report"]);
    assert_eq!(plan["tasks"][1]["settings"]["max_time"], 120.0);
    assert_eq!(plan["tasks"][0]["settings"]["max_tries"], 5);
    assert_eq!(plan["not_run"].as_array().map(Vec::len), Some(6));
}

#[test]
fn check_finds_the_errors_a_run_would() {
    let chain = Chain::new()
        .task("10-a.sh", "true")
        .ini("[a]\ndepends_on = ghost");
    let _ = chain.command(&[]);
    let config = chain.config_path();
    let taskdir = chain.taskdir();
    chain
        .runner(&[
            "check",
            "-c",
            config.to_str().expect("utf-8"),
            taskdir.to_str().expect("utf-8"),
        ])
        .assert_code(78)
        .assert_stderr_contains("depends on \"ghost\"");
}

#[test]
fn syslog_flag_runs_the_chain_whether_or_not_a_syslog_listens() {
    let chain = Chain::new().task("10-a.sh", "echo a >> \"$LOG\"");
    chain.run(&["--syslog"]).assert_code(0);
    assert_eq!(chain.log_lines(), ["a"]);
}

#[test]
fn check_finds_what_a_run_would_only_meet_at_the_first_spawn() {
    for (ini, needle) in [
        ("[env]\nX = a\0b", "[env] X: the value holds a NUL byte"),
        (
            "[runner]\ninterpreter = python4 -u",
            "interpreter \"python4\" is not found",
        ),
        ("[runnr]\nmax_tries = 1", "did you mean [runner]?"),
    ] {
        let chain = Chain::new()
            .task("10-a.sh", "echo ran >> \"$LOG\"")
            .ini(ini);
        let _ = chain.command(&[]); // writes the configuration
        let config = chain.config_path();
        let taskdir = chain.taskdir();
        chain
            .runner(&[
                "check",
                "-c",
                config.to_str().expect("utf-8"),
                taskdir.to_str().expect("utf-8"),
            ])
            .assert_code(78)
            .assert_stderr_contains(needle);
        assert!(chain.log_lines().is_empty(), "check ran a task");
    }
}

/// README's first command: the repository's own example chain, with its configuration.
#[test]
fn the_example_chain_of_the_readme_checks_and_runs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let state = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let mut cmd = crate::support::runner();
        cmd.arg("--state-dir")
            .arg(state.path())
            .args(args)
            .args(["-c", "runner.ini"])
            .arg("example-tasks.d")
            .current_dir(root);
        crate::support::Run::of(cmd)
    };
    // The checkout may be writable by its group (CI's clone is not); permissions are
    // another test's subject.
    run(&["check", "--insecure"])
        .assert_code(0)
        .assert_stdout_contains("ok: 3 task(s) will run");
    run(&["run", "--insecure", "-H"])
        .assert_code(0)
        .assert_stdout_contains("greet: hello from runner.ini, to every VM in the fleet")
        .assert_stdout_contains("halt: the chain is done");
}
