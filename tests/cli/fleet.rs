//! A fleet in one PostgreSQL database (contract section 13), against a real server that
//! these tests start themselves (see `pg_server.rs`): chains on several "hosts" (state
//! dirs with different `RUNNER_HOST`), the records commands from any host, the daemon
//! with dsari's `database: {type: postgresql}`, and the database away at start or
//! killed mid-run.

use std::time::Duration;

use crate::pg_server::{PgServer, db_name, shared_or_skip};
use crate::support::{Chain, Daemon, runner, wait_for};

/// `runner --state-dir DIR --database DSN ARGS...` as host `host`, to completion.
fn on_host(host: &str, state: &std::path::Path, dsn: &str, args: &[&str]) -> crate::support::Run {
    let mut cmd = runner();
    cmd.env("RUNNER_HOST", host)
        .arg("--state-dir")
        .arg(state)
        .args(["--database", dsn])
        .args(args);
    crate::support::Run::of(cmd)
}

fn json(run: &crate::support::Run) -> serde_json::Value {
    run.assert_code(0);
    serde_json::from_str(&run.stdout()).unwrap_or_else(|e| panic!("{e}: {}", run.stdout()))
}

#[test]
fn chains_on_two_hosts_record_into_one_database_read_from_either() {
    let Some(pg) = shared_or_skip("chains_on_two_hosts") else {
        return;
    };
    let dsn = pg.database();
    let a = Chain::new()
        .task("10-hello.sh", "echo hello from $RUNNER_HOST_NAME")
        .task("20-two.sh", "echo two");
    let b = Chain::new().task("10-other.sh", "echo other");
    let mut run = a.command(&["--database", &dsn]);
    run.env("RUNNER_HOST", "host-a")
        .env("RUNNER_HOST_NAME", "a");
    crate::support::Run::of(run).assert_code(0);
    let mut run = b.command(&["--database", &dsn]);
    run.env("RUNNER_HOST", "host-b");
    crate::support::Run::of(run).assert_code(0);

    // A third machine, with an empty state dir of its own, sees both.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let all = json(&on_host(
        "host-c",
        elsewhere.path(),
        &dsn,
        &["--format", "json", "runs", "list"],
    ));
    let hosts: Vec<&str> = all
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["host"].as_str().expect("host"))
        .collect();
    assert_eq!(hosts.len(), 2, "{all}");
    assert!(
        hosts.contains(&"host-a") && hosts.contains(&"host-b"),
        "{all}"
    );
    let only_a = json(&on_host(
        "host-c",
        elsewhere.path(),
        &dsn,
        &["--format", "json", "runs", "list", "--host", "host-a"],
    ));
    let only_a = only_a.as_array().expect("array");
    assert_eq!(only_a.len(), 1);
    assert_eq!(only_a[0]["status"], "ok");
    let id = only_a[0]["run_id"].as_str().expect("id").to_owned();

    let show = on_host(
        "host-c",
        elsewhere.path(),
        &dsn,
        &["runs", "show", &id[..8]],
    );
    show.assert_code(0)
        .assert_stdout_contains("host:     host-a");
    let detail = json(
        &on_host(
            "host-c",
            elsewhere.path(),
            &dsn,
            &["--format", "yaml", "runs", "show", &id],
        )
        .assert_code(0)
        .pipe_yaml(),
    );
    assert_eq!(detail["host"], "host-a");
    assert_eq!(detail["tasks"].as_array().expect("tasks").len(), 2);

    // The output is in the database: readable where no file of it exists.
    let output = on_host(
        "host-c",
        elsewhere.path(),
        &dsn,
        &["runs", "output", &id, "--task", "hello"],
    );
    output.assert_code(0);
    assert_eq!(output.stdout(), "hello from a\n");
    let tail = on_host("host-c", elsewhere.path(), &dsn, &["runs", "tail", &id]);
    tail.assert_code(0).assert_stdout_contains("two\n");

    // dsari's own columns, with dsari's PostgreSQL types, hold the run.
    let row = pg.psql(
        db_name(&dsn),
        &format!(
            "SELECT job_name, exit_code, pg_typeof(run_id), pg_typeof(start_time), \
             pg_typeof(trigger_data), stop_time >= start_time FROM runs WHERE run_id = '{id}'"
        ),
    );
    assert_eq!(row, "tasks.d|0|uuid|timestamp without time zone|json|t");
}

/// Parses YAML stdout into JSON values for assertions.
trait PipeYaml {
    fn pipe_yaml(&self) -> crate::support::Run;
}

impl PipeYaml for crate::support::Run {
    fn pipe_yaml(&self) -> crate::support::Run {
        let value: serde_json::Value = serde_yaml::from_str(&self.stdout())
            .unwrap_or_else(|e| panic!("{e}: {}", self.stdout()));
        let mut output = self.output.clone();
        output.stdout = value.to_string().into_bytes();
        crate::support::Run {
            argv: self.argv.clone(),
            output,
            elapsed: self.elapsed,
        }
    }
}

#[test]
fn an_unreachable_database_warns_once_keeps_the_run_and_sends_it_later() {
    let Some(pg) = shared_or_skip("an_unreachable_database") else {
        return;
    };
    let dsn = pg.database();
    let nowhere = tempfile::tempdir().expect("tempdir");
    let dead = format!(
        "host={} user=runner password=s3cret-pw dbname=nothing connect_timeout=2",
        nowhere.path().display()
    );
    let chain = Chain::new().task("10-a.sh", "echo a >> \"$LOG\"; exit 0");
    let mut cmd = chain.command(&["--database", &dead]);
    cmd.env("RUNNER_HOST", "offline");
    let first = crate::support::Run::of(cmd);
    first.assert_code(0);
    let warnings = first.stderr().matches("warn:").count();
    assert_eq!(warnings, 1, "one warning:\n{}", first.stderr());
    assert!(!first.stderr().contains("s3cret-pw"), "{}", first.stderr());
    assert_eq!(chain.log_lines(), ["a"]);

    // The next run reaches the database: both runs are there, once each.
    let mut cmd = chain.command(&["--database", &dsn]);
    cmd.env("RUNNER_HOST", "offline");
    crate::support::Run::of(cmd).assert_code(0);
    let mut cmd = chain.command(&["--database", &dsn]);
    cmd.env("RUNNER_HOST", "offline");
    crate::support::Run::of(cmd).assert_code(0);
    let count = pg.psql(
        db_name(&dsn),
        "SELECT count(*), count(DISTINCT run_id) FROM runs",
    );
    assert_eq!(count, "3|3", "three runs, none twice");
    let attempts = pg.psql(
        db_name(&dsn),
        "SELECT count(*) FROM attempts WHERE result = 'OK'",
    );
    assert_eq!(attempts, "3");
}

#[test]
fn the_database_killed_mid_run_and_brought_back_loses_nothing_and_doubles_nothing() {
    let pg = match PgServer::start() {
        Ok(pg) => pg,
        Err(reason) => {
            crate::support::skip(format!(
                "the_database_killed_mid_run: no PostgreSQL server: {reason}"
            ));
            return;
        }
    };
    let dsn = pg.database();
    let chain = Chain::new()
        .task("10-first.sh", "echo first; touch \"$LOG.started\"")
        .task(
            "20-wait.sh",
            "while [ ! -e \"$LOG.go\" ]; do sleep 0.05; done; echo second",
        )
        .task("30-last.sh", "echo last");
    let mut cmd = chain.command(&["--database", &dsn]);
    cmd.env("RUNNER_HOST", "flaky-net")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    let started = chain.log_path().with_extension("started");
    assert!(wait_for(Duration::from_secs(30), || started.exists()));
    // The first task's records are in; now the database dies under the chain.
    assert!(wait_for(Duration::from_secs(30), || {
        pg.psql(
            db_name(&dsn),
            "SELECT count(*) FROM attempts WHERE result = 'OK'",
        ) == "1"
    }));
    pg.kill();
    std::fs::write(chain.log_path().with_extension("go"), "").expect("go");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.matches("warn:").count(), 1, "one warning:\n{stderr}");

    pg.restart();
    let mut cmd = runner();
    cmd.env("RUNNER_HOST", "flaky-net")
        .env("LOG", chain.log_path())
        .arg("--state-dir")
        .arg(chain.state_dir())
        .args(["--database", &dsn, "run"])
        .arg(chain.taskdir());
    crate::support::Run::of(cmd).assert_code(0);
    let db = db_name(&dsn);
    assert_eq!(
        pg.psql(db, "SELECT count(*), count(DISTINCT run_id) FROM runs"),
        "2|2"
    );
    assert_eq!(
        pg.psql(db, "SELECT count(*) FROM attempts WHERE result = 'OK'"),
        "6",
        "every attempt of both runs, once"
    );
    assert_eq!(pg.psql(db, "SELECT count(*) FROM runs_running"), "0");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let list = json(&on_host(
        "other",
        elsewhere.path(),
        &dsn,
        &["--format", "json", "runs", "list"],
    ));
    let first = list
        .as_array()
        .expect("array")
        .last()
        .expect("the first run")
        .clone();
    assert_eq!(first["status"], "ok");
    let id = first["run_id"].as_str().expect("id");
    let output = on_host(
        "other",
        elsewhere.path(),
        &dsn,
        &["runs", "output", id, "--task", "wait"],
    );
    assert_eq!(output.stdout(), "second\n", "its output was sent too");
    // Its cascades too: the first fired live, the two fired while the database was
    // down sent with the run, none twice; the second run's fired live.
    assert_eq!(
        pg.psql(
            db,
            &format!(
                "SELECT string_agg(name || '@' || host, ',' ORDER BY id) FROM events
                 WHERE source = 'cascade {id}'"
            )
        ),
        "first@flaky-net,wait@flaky-net,last@flaky-net"
    );
    assert_eq!(
        pg.psql(
            db,
            "SELECT count(*), count(DISTINCT (name, source)) FROM events"
        ),
        "6|6"
    );
    // Another host of the session sees them.
    let events = on_host(
        "other",
        elsewhere.path(),
        &dsn,
        &["--format", "json", "events", "list", "--session", "boot"],
    );
    let events = json(&events);
    assert_eq!(events.as_array().map(Vec::len), Some(6), "{events}");
}

#[test]
fn a_dsari_style_daemon_records_into_postgresql_and_hides_the_password() {
    let Some(pg) = shared_or_skip("a_dsari_style_daemon") else {
        return;
    };
    let dsn = format!("{} password=hunter2-secret", pg.database());
    let yaml = format!(
        "database:\n  type: postgresql\n  dsn: '{dsn}'\njobs:\n  hello:\n    command: [sh, -c, 'echo hi from a command']\n  provision:\n    taskdir: tasks.d\n"
    );
    let mut daemon = Daemon::new(&[
        ("dsari.yaml", &yaml),
        (
            "tasks.d/10-argv.sh",
            "#!/bin/sh\ntr '\\0' ' ' < /proc/$PPID/cmdline\necho\n",
        ),
    ]);
    let task = daemon.config_dir().join("tasks.d/10-argv.sh");
    std::fs::set_permissions(&task, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let config = daemon.config_dir().join("dsari.yaml");
    let config = config.to_str().expect("utf-8");
    let check = daemon.runner(&["check", "--daemon", config]);
    check.assert_code(0);
    assert!(!check.stdout().contains("hunter2"), "{}", check.stdout());
    assert!(
        check.stdout().contains("postgresql://runner@"),
        "{}",
        check.stdout()
    );

    daemon.start("dsari.yaml");
    daemon.runner(&["trigger", "hello"]).assert_code(0);
    daemon.runner(&["trigger", "provision"]).assert_code(0);
    let db = db_name(dsn.split(" password").next().expect("dsn"));
    assert!(
        wait_for(Duration::from_secs(30), || pg
            .psql(db, "SELECT count(*) FROM runs")
            == "2"),
        "{}",
        daemon.daemon_log()
    );
    assert!(
        !daemon.daemon_log().contains("hunter2"),
        "{}",
        daemon.daemon_log()
    );
    let list = daemon.runner(&["runs", "list", "--config", config, "--format", "json"]);
    let list = json(&list);
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 2, "{list:?}");
    for run in list {
        assert_eq!(run["status"], "ok", "{run}");
        assert!(run["host"].is_string(), "{run}");
        let id = run["run_id"].as_str().expect("id");
        let out = daemon.runner(&["runs", "output", "--config", config, id]);
        out.assert_code(0);
        assert!(
            !out.stdout().contains("hunter2"),
            "the chain's argv has no password: {}",
            out.stdout()
        );
        if run["job_name"] == "hello" {
            assert_eq!(out.stdout(), "hi from a command\n");
        } else {
            assert!(
                out.stdout().contains("run --attach-run"),
                "{}",
                out.stdout()
            );
        }
    }
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    daemon.wait();
}

#[test]
fn a_chain_ini_names_the_database_and_the_host() {
    let Some(pg) = shared_or_skip("a_chain_ini_names_the_database") else {
        return;
    };
    let dsn = pg.database();
    let chain = Chain::new()
        .task("10-a.sh", "true")
        .ini(&format!("[runner]\ndatabase = {dsn}\nhost = from-ini"));
    chain.run(&[]).assert_code(0);
    assert_eq!(
        pg.psql(db_name(&dsn), "SELECT host FROM run_meta"),
        "from-ini"
    );
}

#[test]
fn lock_fleet_admits_one_run_of_a_job_in_the_fleet_and_a_dead_holder_frees_it() {
    let Some(pg) = shared_or_skip("lock_fleet") else {
        return;
    };
    let dsn = pg.database();
    let ini = format!("[runner]\nname = provision\nlock = fleet\ndatabase = {dsn}");
    let a = Chain::new()
        .task(
            "10-hold.sh",
            "touch \"$LOG.started\"; while [ ! -e \"$LOG.go\" ]; do sleep 0.05; done",
        )
        .ini(&ini);
    let b = Chain::new().task("10-b.sh", "echo b >> \"$LOG\"").ini(&ini);
    let mut holder = a.command(&[]);
    holder
        .env("RUNNER_HOST", "host-a")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut holder = holder.spawn().expect("spawn");
    let started = a.log_path().with_extension("started");
    assert!(wait_for(Duration::from_secs(30), || started.exists()));

    let mut other = b.command(&[]);
    other.env("RUNNER_HOST", "host-b");
    let refused = crate::support::Run::of(other);
    refused
        .assert_code(75)
        .assert_stderr_contains("another host of the fleet");
    assert!(b.log_lines().is_empty(), "the second host ran nothing");

    // The holder dies without a word: the server drops its session and the lock.
    holder.kill().expect("kill -9");
    holder.wait().expect("reap");
    // Its task, orphaned, ends too: no process outlives the test.
    std::fs::write(a.log_path().with_extension("go"), "").expect("go");
    let mut other = b.command(&[]);
    other.env("RUNNER_HOST", "host-b");
    crate::support::Run::of(other).assert_code(0);
    assert_eq!(b.log_lines(), ["b"]);
}

#[test]
fn the_events_a_task_waited_for_are_in_the_fleet_database_too() {
    let Some(pg) = shared_or_skip("the_events_a_task_waited_for") else {
        return;
    };
    let dsn = pg.database();
    let chain = Chain::new()
        .task("10-gated.sh", "echo gated")
        .ini("[runner]\nmax_tries = 1\n[gated]\nafter = go\nwait_time = 60");
    let fired = on_host("host-a", &chain.state_dir(), &dsn, &["fire", "go"]);
    fired.assert_code(0);
    let mut cmd = chain.command(&["--database", &dsn]);
    cmd.env("RUNNER_HOST", "host-a");
    crate::support::Run::of(cmd).assert_code(0);

    // Read back from another host, through the database only.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let list = json(&on_host(
        "host-b",
        elsewhere.path(),
        &dsn,
        &["--format", "json", "runs", "list", "--limit", "1"],
    ));
    let id = list[0]["run_id"].as_str().expect("run id");
    let show = json(&on_host(
        "host-b",
        elsewhere.path(),
        &dsn,
        &["--format", "json", "runs", "show", id],
    ));
    let events = show["tasks"][0]["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{show}");
    assert_eq!(events[0]["name"], "go");
    assert_eq!(events[0]["kind"], "after");
    assert_eq!(events[0]["fired"], true, "{show}");
    assert!(events[0]["event_id"].is_i64(), "{show}");
    assert!(
        events[0]["waited_since"].is_null(),
        "fired before the run: no wait\n{show}"
    );
    let rows = pg.psql(
        db_name(&dsn),
        "SELECT count(*) FROM instance_events WHERE name = 'go' AND event_id IS NOT NULL",
    );
    assert_eq!(rows, "1");
}
