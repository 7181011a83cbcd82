//! The environment tasks see, `-g`, and hooks.

use crate::support::Chain;

#[test]
fn environment_has_env_section_and_runner_variables() {
    let chain = Chain::new()
        .task(
            "10-show.sh",
            "for v in GREETING RUNNER_TASK RUNNER_TASK_FILE RUNNER_TRY RUNNER_MAX_TRIES RUNNER_JOB RUNNER_TASKDIR RUNNER_CONFIG; do\n  eval \"echo $v=\\$$v\" >> \"$LOG\"\ndone\npwd >> \"$LOG\"\n[ -n \"$RUNNER_RUN_ID\" ] && [ -n \"$RUNNER_SESSION\" ] && echo ids-set >> \"$LOG\"",
        )
        .ini("[env]\nGREETING = hello world\nRUNNER_TASK = cannot override\n[runner]\nname = demo");
    chain.run(&[]).assert_code(0);
    let taskdir = chain.taskdir();
    let expected = [
        "GREETING=hello world".to_owned(),
        "RUNNER_TASK=show".to_owned(),
        format!("RUNNER_TASK_FILE={}", taskdir.join("10-show.sh").display()),
        "RUNNER_TRY=1".to_owned(),
        "RUNNER_MAX_TRIES=5".to_owned(),
        "RUNNER_JOB=demo".to_owned(),
        format!("RUNNER_TASKDIR={}", taskdir.display()),
        format!("RUNNER_CONFIG={}", chain.config_path().display()),
        taskdir.display().to_string(),
        "ids-set".to_owned(),
    ];
    assert_eq!(chain.log_lines(), expected);
}

#[test]
fn config_cmd_reads_values_from_sh() {
    let chain = Chain::new()
        .task(
            "10-get.sh",
            "$RUNNER_CONFIG_CMD -g hg.remote >> \"$LOG\"\necho \"missing=[$($RUNNER_CONFIG_CMD -g hg.nothing)]\" >> \"$LOG\"\n$RUNNER_CONFIG_CMD -g dotted.a.b >> \"$LOG\"",
        )
        .ini("[hg]\nremote = https://hg.example/repo\n[dotted]\na.b = split at the first dot");
    chain.run(&[]).assert_code(0);
    assert_eq!(
        chain.log_lines(),
        [
            "https://hg.example/repo",
            "missing=[]",
            "split at the first dot"
        ]
    );
}

#[test]
fn get_prints_value_or_nothing() {
    let chain = Chain::new().ini("[hg]\nremote = x y z\nempty =");
    let config = chain.config_path();
    let config = config.to_str().expect("utf-8");
    chain
        .runner(&["-c", config, "-g", "hg.remote"])
        .assert_code(0);
    let run = chain.runner(&["-c", config, "-g", "hg.remote"]);
    assert_eq!(run.stdout(), "x y z\n");
    let run = chain.runner(&["-c", config, "-g", "hg.none"]);
    run.assert_code(0);
    assert_eq!(run.stdout(), "");
    let run = chain.runner(&["-c", config, "-g", "nosuch.section"]);
    run.assert_code(0);
    assert_eq!(run.stdout(), "");
    let run = chain.runner(&["-c", config, "-g", "hg.empty"]);
    assert_eq!(run.stdout(), "\n");
    chain
        .runner(&["-c", config, "-g", "nodot"])
        .assert_code(2)
        .assert_stderr_contains("SECTION.OPTION");
}

#[test]
fn get_sees_include_dir_values() {
    let chain = Chain::new().ini("[runner]\ninclude_dir = conf.d\n[app]\nport = 1");
    let conf = chain.path().join("conf.d");
    std::fs::create_dir(&conf).expect("mkdir");
    std::fs::write(conf.join("10-port.ini"), "[app]\nport = 2\n").expect("write");
    std::fs::write(conf.join("20-host.ini"), "[app]\nhost = h\n").expect("write");
    let config = chain.config_path();
    let config = config.to_str().expect("utf-8");
    let _ = chain.run(&[]); // writes the config file
    assert_eq!(
        chain.runner(&["-c", config, "-g", "app.port"]).stdout(),
        "2\n"
    );
    assert_eq!(
        chain.runner(&["-c", config, "-g", "app.host"]).stdout(),
        "h\n"
    );
}

#[test]
fn include_dir_settings_apply_to_the_chain() {
    let chain = Chain::new()
        .task("10-a.sh", "echo \"a $RUNNER_MAX_TRIES\" >> \"$LOG\"")
        .ini("[runner]\ninclude_dir = conf.d\nmax_tries = 2");
    let conf = chain.path().join("conf.d");
    std::fs::create_dir(&conf).expect("mkdir");
    std::fs::write(conf.join("50-tries.ini"), "[runner]\nmax_tries = 9\n").expect("write");
    chain.run(&[]).assert_code(0);
    assert_eq!(chain.log_lines(), ["a 9"]);
}

/// A hook that appends its JSON argument (and argument count) to the log.
fn hook_script(chain: &Chain) -> String {
    let hook = chain.path().join("hook.sh");
    std::fs::write(&hook, "#!/bin/sh\necho \"$# $2\" >> \"$LOG\"\n").expect("write hook");
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    format!("[runner]\ntask_hook = '{}' fixed-arg", hook.display())
}

#[test]
fn hook_gets_json_before_and_after_each_attempt() {
    let chain = Chain::new()
        .task("10-it's \"x\".sh", "exit 0")
        .task("20-fail.sh", "exit 3");
    let ini = hook_script(&chain);
    let chain = chain.ini(&ini);
    chain.run(&[]).assert_code(1);
    let lines = chain.log_lines();
    assert_eq!(lines.len(), 4, "{lines:?}");
    let parse = |line: &str| -> serde_json::Value {
        let (count, json) = line.split_once(' ').expect("count and json");
        assert_eq!(count, "2", "one fixed argument plus one JSON argument");
        serde_json::from_str(json).expect("valid JSON")
    };
    let pre = parse(&lines[0]);
    assert_eq!(pre["task"], "10-it's \"x\".sh");
    assert_eq!(pre["name"], "it's \"x\"");
    assert_eq!(pre["try_num"], 1);
    assert_eq!(pre["max_retries"], 5);
    assert_eq!(pre["result"], "RUNNING");
    assert!(pre["run_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(pre.get("exit_code").is_none());
    let post = parse(&lines[1]);
    assert_eq!(post["result"], "OK");
    assert_eq!(post["exit_code"], 0);
    assert!(post["duration"].as_f64().is_some_and(|d| d >= 0.0));
    assert_eq!(post["run_id"], pre["run_id"]);
    let post_fail = parse(&lines[3]);
    assert_eq!(post_fail["name"], "fail");
    assert_eq!(post_fail["result"], "EXIT");
    assert_eq!(post_fail["exit_code"], 3);
}

#[test]
fn hook_sees_null_exit_code_when_killed_and_failing_hook_changes_nothing() {
    let chain = Chain::new().task("10-slow.sh", "sleep 30");
    let hook = chain.path().join("hook.sh");
    std::fs::write(&hook, "#!/bin/sh\necho \"$1\" >> \"$LOG\"\nexit 9\n").expect("write");
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let chain = chain.ini(&format!(
        "[runner]\ntask_hook = {}\nmax_time = 1\nmax_tries = 1",
        hook.display()
    ));
    chain
        .run(&[])
        .assert_code(1)
        .assert_stderr_contains("exited with code 9");
    let lines = chain.log_lines();
    assert_eq!(lines.len(), 2);
    let post: serde_json::Value = serde_json::from_str(&lines[1]).expect("json");
    assert_eq!(post["result"], "RETRY");
    assert!(post["exit_code"].is_null());
}

#[test]
fn missing_hook_is_only_a_warning() {
    let chain = Chain::new()
        .task("10-a.sh", "echo a >> \"$LOG\"")
        .ini("[runner]\ntask_hook = /nonexistent/hook");
    chain
        .run(&[])
        .assert_code(0)
        .assert_stderr_contains("could not start");
    assert_eq!(chain.log_lines(), ["a"]);
}

#[test]
fn without_a_config_defaults_apply_and_lookups_are_empty() {
    let chain = Chain::new()
        .without_config()
        .task(
            "10-a.sh",
            "echo \"[$($RUNNER_CONFIG_CMD -g runner.max_tries)] $RUNNER_MAX_TRIES [$RUNNER_CONFIG]\" >> \"$LOG\"",
        );
    chain.run(&[]).assert_code(0);
    assert_eq!(chain.log_lines(), ["[] 5 []"]);
}

#[test]
fn a_signal_during_the_pre_hook_starts_no_task() {
    let chain = Chain::new().task("10-a.sh", "echo ran >> \"$LOG\"");
    let hook = chain.path().join("hook.sh");
    std::fs::write(&hook, "#!/bin/sh\necho hooked >> \"$LOG.hook\"\nsleep 5\n").expect("write");
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let chain = chain.ini(&format!(
        "[runner]\ntask_hook = {}\nkill_grace = 1",
        hook.display()
    ));
    let mut child = chain.spawn(&[]);
    let hooked = chain.path().join("log.hook");
    assert!(crate::support::wait_for(
        std::time::Duration::from_secs(20),
        || hooked.exists()
    ));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal");
    assert_eq!(child.wait().expect("wait").code(), Some(143));
    assert!(
        chain.log_lines().is_empty(),
        "the task must not start after the signal"
    );
}

#[test]
fn hook_runs_with_the_environment_of_its_task() {
    let chain = Chain::new().task("10-a.sh", "true");
    let hook = chain.path().join("env-hook.sh");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho \"FOO=$FOO task=$RUNNER_TASK try=$RUNNER_TRY cmd=${RUNNER_CONFIG_CMD:+set}\" >> \"$LOG\"\n",
    )
    .expect("write hook");
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let chain = chain.ini(&format!(
        "[runner]\ntask_hook = {}\n[env]\nFOO = from env",
        hook.display()
    ));
    chain.run(&[]).assert_code(0);
    let line = "FOO=from env task=a try=1 cmd=set";
    assert_eq!(chain.log_lines(), [line, line]);
}

#[test]
fn include_dir_reads_every_file_but_backups_and_leftovers() {
    let chain = Chain::new()
        .task("10-a.sh", "$RUNNER_CONFIG_CMD -g app.from >> \"$LOG\"")
        .ini("[runner]\ninclude_dir = conf.d\n[app]\nfrom = main");
    let conf = chain.path().join("conf.d");
    std::fs::create_dir(&conf).expect("mkdir");
    std::fs::create_dir(conf.join("sub.ini")).expect("mkdir");
    for (name, text) in [
        (
            "10-a.ini",
            "[app]\nfrom = 10-a.ini\n[runner]\nmax_tries = 2\n",
        ),
        ("extra.cfg", "[app]\nfrom = extra.cfg\n"),
        ("zz.ini~", "[app]\nfrom = backup\n"),
        ("zz.ini.dpkg-old", "[app]\nfrom = dpkg-old\n"),
        ("zz.ini.rpmnew", "[app]\nfrom = rpmnew\n"),
        (".zz.ini.swp", "[app]\nfrom = swap\n"),
        (".hidden", "[app]\nfrom = hidden\n"),
    ] {
        std::fs::write(conf.join(name), text).expect("write");
    }
    chain.run(&[]).assert_code(0);
    assert_eq!(chain.log_lines(), ["extra.cfg"]);
}

#[test]
fn an_attempt_is_recorded_as_started_while_its_pre_hook_runs() {
    // The attempt starts with its hook: a `kill -9` while the hook runs still leaves the
    // attempt in the records, and the next run finalizes it.
    let chain = Chain::new().task("10-a.sh", "echo ran >> \"$LOG\"");
    let hook = chain.path().join("hook.sh");
    std::fs::write(
        &hook,
        "#!/bin/sh\ncase \"$1\" in *RUNNING*) echo hooked >> \"$LOG.hook\"; sleep 30;; esac\n",
    )
    .expect("write");
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let chain = chain.ini(&format!("[runner]\ntask_hook = {}", hook.display()));
    let mut child = chain.spawn(&[]);
    let hooked = chain.path().join("log.hook");
    assert!(crate::support::wait_for(
        std::time::Duration::from_secs(20),
        || hooked.exists()
    ));
    let run = chain.last_run();
    let attempts = &run["tasks"][0]["attempts"];
    assert_eq!(attempts.as_array().map(Vec::len), Some(1), "{run}");
    assert!(attempts[0]["start_time"].as_f64().is_some(), "{run}");
    assert!(attempts[0]["stop_time"].is_null(), "{run}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("signal");
    child.wait().expect("wait");
    let id = run["run_id"].as_str().expect("id").to_owned();
    // The hook was left behind by the kill; the next run's own hook call is quick.
    std::fs::write(&hook, "#!/bin/sh\n").expect("write");
    chain.run(&[]).assert_code(0);
    let killed = chain.runs_json(&["show", &id]);
    assert_eq!(killed["status"], "lost", "{killed}");
    assert_eq!(
        killed["tasks"][0]["attempts"].as_array().map(Vec::len),
        Some(1),
        "{killed}"
    );
}
