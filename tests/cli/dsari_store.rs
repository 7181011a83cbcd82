//! One store with dsari's tools (contract section 7): runner reads a store dsari made
//! (built here with dsari's documented tables and `runs/JOB/RUN_ID/output.txt` layout, as
//! dsari 2.0's own daemon creates them) without changing it, continues its history, and
//! leaves in its own store what dsari's tools need (an `output.txt` for every run, no
//! NULL `stop_time` or `exit_code` on a finished or lost run).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::support::{Chain, Daemon, Run, runner, wait_for};

/// dsari's two tables, exactly as its SQLite backend creates them.
const DSARI_SCHEMA: &str = "
    CREATE TABLE runs (
        job_name text, run_id text, schedule_time real, start_time real, stop_time real,
        exit_code integer, trigger_type text, trigger_data text, run_data text
    );
    CREATE TABLE runs_running (
        job_name text, run_id text, schedule_time real, start_time real,
        trigger_type text, trigger_data text, run_data text
    );";

const OK_RUN: &str = "11111111-1111-4111-8111-111111111111";
const BAD_RUN: &str = "22222222-2222-4222-8222-222222222222";
const NEWEST_RUN: &str = "33333333-3333-4333-8333-333333333333";
const STALE_RUN: &str = "44444444-4444-4444-8444-444444444444";

fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// A data directory as dsari leaves it: `dsari.sqlite3` (rollback journal, dsari's
/// tables only) with three finished runs of `hello` and one left in `runs_running` by a
/// dsari that died, each with its `output.txt`.
fn dsari_data_dir(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let db = rusqlite::Connection::open(dir.join("dsari.sqlite3")).expect("open");
    db.execute_batch(DSARI_SCHEMA).expect("schema");
    let t = now() - 3600.0;
    let finished = [
        (OK_RUN, t, 0, "{}", r#"{"return_data": {"k": "v"}}"#),
        (BAD_RUN, t + 60.0, 3, r#"{"type": "file"}"#, "{}"),
        (NEWEST_RUN, t + 180.0, 0, "{}", "{}"),
    ];
    for (id, start, code, trigger_data, run_data) in finished {
        let trigger = if code == 3 { "file" } else { "schedule" };
        db.execute(
            "INSERT INTO runs VALUES ('hello', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            rusqlite::params![
                id,
                start - 0.5,
                start,
                start + 2.0,
                code,
                trigger,
                trigger_data,
                run_data
            ],
        )
        .expect("insert run");
        write_output(dir, id, &format!("output of {id}\n"));
    }
    db.execute(
        "INSERT INTO runs_running VALUES ('hello', ?1, ?2, ?3, 'schedule', '{}', '{}')",
        rusqlite::params![STALE_RUN, t + 119.5, t + 120.0],
    )
    .expect("insert running");
    write_output(dir, STALE_RUN, "half a run\n");
}

fn write_output(dir: &Path, run_id: &str, text: &str) {
    let run_dir = dir.join("runs/hello").join(run_id);
    std::fs::create_dir_all(&run_dir).expect("mkdir run dir");
    std::fs::write(run_dir.join("output.txt"), text).expect("output.txt");
}

/// The tables of a SQLite file and its journal mode.
fn tables_and_mode(file: &Path) -> (Vec<String>, String) {
    let db =
        rusqlite::Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open");
    let tables = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let mode = db
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal mode");
    (tables, mode)
}

fn with_state_dir(state: &Path, args: &[&str]) -> Run {
    let mut cmd = runner();
    cmd.arg("--state-dir").arg(state).args(args);
    Run::of(cmd)
}

fn json(run: &Run) -> Value {
    run.assert_code(0);
    serde_json::from_str(&run.stdout()).expect("JSON")
}

#[test]
fn runs_dsari_recorded_read_back_and_reading_changes_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("data");
    dsari_data_dir(&data);
    let file = data.join("dsari.sqlite3");
    let before = std::fs::read(&file).expect("read");

    let list = json(&with_state_dir(
        &data,
        &["runs", "list", "--format", "json"],
    ));
    let rows: Vec<(&str, &str, Value)> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            (
                r["run_id"].as_str().expect("id"),
                r["status"].as_str().expect("status"),
                r["exit_code"].clone(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (NEWEST_RUN, "ok", Value::from(0)),
            // Left by a dsari that may still be running it: nothing says otherwise.
            (STALE_RUN, "running", Value::Null),
            (BAD_RUN, "failed", Value::from(3)),
            (OK_RUN, "ok", Value::from(0)),
        ],
        "{list}"
    );

    let show = json(&with_state_dir(
        &data,
        &["runs", "show", &OK_RUN[..8], "--format", "json"],
    ));
    assert_eq!(show["job_name"], "hello");
    assert_eq!(show["trigger_type"], "schedule");
    assert_eq!(show["run_data"]["return_data"]["k"], "v");
    assert_eq!(show["tasks"], Value::Array(Vec::new()));
    let bad = json(&with_state_dir(
        &data,
        &["runs", "show", BAD_RUN, "--format", "json"],
    ));
    assert_eq!(bad["trigger_data"]["type"], "file");
    // Its output's directory, in dsari's layout, as for runner's own runs.
    let dir = data.join("runs").join("hello").join(BAD_RUN);
    assert_eq!(bad["output_dir"], dir.display().to_string(), "{bad}");

    let output = with_state_dir(&data, &["runs", "output", &BAD_RUN[..8]]);
    output.assert_code(0);
    assert_eq!(output.stdout(), format!("output of {BAD_RUN}\n"));
    // A finished run: tail prints what there is and ends.
    let tail = with_state_dir(&data, &["runs", "tail", NEWEST_RUN]);
    tail.assert_code(0)
        .assert_stdout_contains(&format!("output of {NEWEST_RUN}"));

    // jobs list reads the same file through an unchanged dsari configuration.
    let etc = root.path().join("etc");
    std::fs::create_dir(&etc).expect("mkdir");
    std::fs::write(
        etc.join("dsari.yaml"),
        format!(
            "data_dir: {}\njobs:\n  hello:\n    command: [\"true\"]\n",
            data.display()
        ),
    )
    .expect("config");
    let mut cmd = runner();
    cmd.args(["jobs", "list", "--format", "json", "--config"])
        .arg(&etc);
    let jobs = json(&Run::of(cmd));
    assert_eq!(jobs[0]["last_run"]["run_id"], NEWEST_RUN, "{jobs}");
    let mut cmd = runner();
    cmd.args(["runs", "list", "--format", "json", "--config"])
        .arg(&etc);
    assert_eq!(json(&Run::of(cmd)).as_array().expect("list").len(), 4);

    assert_eq!(
        std::fs::read(&file).expect("read"),
        before,
        "reading changed dsari's file"
    );
    assert_eq!(
        tables_and_mode(&file),
        (
            vec!["runs".to_owned(), "runs_running".to_owned()],
            "delete".to_owned()
        )
    );
    assert!(!data.join("dsari.sqlite3-wal").exists());
    assert!(!data.join("runner.sqlite3").exists());
}

#[test]
fn a_chain_recorded_into_a_dsari_data_dir_continues_its_history() {
    let chain = Chain::new().task("10-a.sh", "echo chained");
    dsari_data_dir(&chain.state_dir());
    chain.run(&[]).assert_code(0);
    assert!(
        !chain.state_dir().join("runner.sqlite3").exists(),
        "the chain recorded into dsari's file"
    );
    let list = chain.runs_json(&["list"]);
    assert_eq!(list.as_array().expect("list").len(), 5, "{list}");
    assert_eq!(list[0]["job_name"], "tasks.d");
    // The first write migrated the file: runner's tables beside dsari's, WAL.
    let (tables, mode) = tables_and_mode(&chain.state_dir().join("dsari.sqlite3"));
    assert!(tables.contains(&"task_instances".to_owned()), "{tables:?}");
    assert!(tables.contains(&"runs".to_owned()));
    assert_eq!(mode, "wal");
}

#[test]
fn a_dsari_configuration_keeps_dsari_s_file_and_its_history() {
    let mut daemon = Daemon::new(&[(
        "dsari.yaml",
        "jobs:\n  hello:\n    command: [\"/bin/sh\", \"-c\", \"echo previous=$PREVIOUS_RUN_ID\"]\n",
    )]);
    dsari_data_dir(&daemon.state_dir());
    let config = daemon.config_dir();
    daemon
        .runner(&["check", "--daemon", config.to_str().expect("utf-8")])
        .assert_code(0)
        .assert_stdout_contains(&format!(
            "runs recorded in {}",
            daemon.state_dir().join("dsari.sqlite3").display()
        ));
    daemon.start("");
    // The stale row of a dead dsari is finalized at start as lost, with a stop time
    // (its output's last write) and an exit code, never NULLs.
    let lost = wait_for(Duration::from_secs(20), || {
        daemon
            .runs()
            .iter()
            .any(|r| r["run_id"] == STALE_RUN && r["status"] == "lost")
    });
    assert!(lost, "{:?}\n{}", daemon.runs(), daemon.daemon_log());
    let run = daemon.trigger_and_wait("hello");
    let id = run["run_id"].as_str().expect("id");
    daemon
        .runner(&["runs", "output", id])
        .assert_code(0)
        .assert_stdout_contains(&format!("previous={NEWEST_RUN}"));
    assert!(
        !daemon.state_dir().join("runner.sqlite3").exists(),
        "an unchanged dsari configuration records where dsari's tools look"
    );
    let db = rusqlite::Connection::open(daemon.state_dir().join("dsari.sqlite3")).expect("db");
    let (stop, code, start): (Option<f64>, Option<i64>, f64) = db
        .query_row(
            "SELECT stop_time, exit_code, start_time FROM runs WHERE run_id = ?1",
            [STALE_RUN],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("the lost run is in runs");
    assert_eq!(code, Some(-1));
    assert!(stop.expect("a stop_time") >= start);
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    daemon.wait();
}

/// Every run, newest first, of the store `args` select.
fn runs_of(args: &[&str]) -> Vec<Value> {
    let mut cmd = runner();
    cmd.args(["runs", "list", "--format", "json"]).args(args);
    json(&Run::of(cmd)).as_array().expect("array").clone()
}

#[test]
fn a_database_file_elsewhere_is_read_with_the_same_config() {
    let mut daemon = Daemon::new(&[(
        "runner.yaml",
        "database: {type: sqlite3, file: ../db/runs.sqlite3}\njobs:\n  echo:\n    command: [\"/bin/sh\", \"-c\", \"echo from-echo\"]\n  provision:\n    taskdir: @ROOT@/tasks\n",
    )]);
    let tasks = daemon.path().join("tasks");
    std::fs::create_dir(&tasks).expect("mkdir");
    let task = tasks.join("10-a.sh");
    std::fs::write(&task, "#!/bin/sh\necho from-a\n").expect("task");
    std::fs::set_permissions(&task, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    daemon.start("");
    let config = daemon.config_dir();
    let config = config.to_str().expect("utf-8");
    let db: PathBuf = daemon.path().join("db/runs.sqlite3");
    for job in ["echo", "provision"] {
        daemon.runner(&["trigger", job]).assert_code(0);
    }
    let state = daemon.state_dir();
    let state = state.to_str().expect("utf-8");
    let done = wait_for(Duration::from_secs(30), || {
        runs_of(&["--state-dir", state, "--config", config])
            .iter()
            .filter(|r| r["status"] == "ok")
            .count()
            == 2
    });
    assert!(done, "{}", daemon.daemon_log());
    let by_database = runs_of(&["--database", db.to_str().expect("utf-8")]);
    assert_eq!(by_database.len(), 2);
    let mut cmd = runner();
    cmd.env("RUNNER_DATABASE", format!("sqlite://{}", db.display()));
    cmd.args(["runs", "list", "--format", "json"]);
    assert_eq!(json(&Run::of(cmd)).as_array().expect("list").len(), 2);
    assert!(!daemon.state_dir().join("runner.sqlite3").exists());

    // The chain job recorded its tasks into the same file.
    let provision = by_database
        .iter()
        .find(|r| r["job_name"] == "provision")
        .expect("provision run");
    let id = provision["run_id"].as_str().expect("id");
    let mut cmd = runner();
    cmd.args(["runs", "show", id, "--format", "json", "--config", config]);
    let show = json(&Run::of(cmd));
    assert_eq!(show["tasks"][0]["instance"], "a#0", "{show}");
    let mut cmd = runner();
    cmd.args(["runs", "output", id, "--task", "a", "--config", config]);
    Run::of(cmd).assert_code(0).assert_stdout_contains("from-a");

    let mut cmd = runner();
    cmd.args([
        "--state-dir",
        state,
        "jobs",
        "list",
        "--format",
        "json",
        "--config",
        config,
    ]);
    let jobs = json(&Run::of(cmd));
    for job in jobs.as_array().expect("jobs") {
        assert_eq!(job["last_run"]["status"], "ok", "{jobs}");
    }
    // What dsari's tools need: an output.txt for every run, no NULL end.
    for run in &by_database {
        let dir = daemon
            .state_dir()
            .join("runs")
            .join(run["job_name"].as_str().expect("job"))
            .join(run["run_id"].as_str().expect("id"));
        assert!(dir.join("output.txt").is_file(), "{run}");
        assert!(
            run["stop_time"].is_f64() && run["exit_code"].is_i64(),
            "{run}"
        );
    }
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    daemon.wait();
}

#[test]
fn every_chain_run_has_dsari_s_output_txt_in_run_order() {
    let chain = Chain::new()
        .task("10-a.sh", "echo a-$RUNNER_TRY")
        .task("20-b.sh", "true")
        .task("30-c.sh", "echo c-$RUNNER_TRY; [ \"$RUNNER_TRY\" -ge 2 ]")
        .ini("[runner]\nmax_tries = 2");
    chain.run(&[]).assert_code(0);
    let run = chain.last_run();
    let output_txt = |run: &Value| {
        chain
            .state_dir()
            .join("runs")
            .join(run["job_name"].as_str().expect("job"))
            .join(run["run_id"].as_str().expect("id"))
            .join("output.txt")
    };
    assert_eq!(
        std::fs::read_to_string(output_txt(&run)).expect("output.txt"),
        "a-1\nc-1\na-2\nc-2\n"
    );
    // runner's own view keeps the attempts apart.
    let id = run["run_id"].as_str().expect("id");
    chain
        .runner(&["runs", "output", id])
        .assert_stdout_contains("==> c#0 try 1 <==\nc-1\n");

    // A silent run still has one (dsari's tools read it), empty.
    std::fs::write(chain.taskdir().join("10-a.sh"), "#!/bin/sh\ntrue\n").expect("rewrite");
    std::fs::write(chain.taskdir().join("30-c.sh"), "#!/bin/sh\ntrue\n").expect("rewrite");
    chain.run(&[]).assert_code(0);
    let silent = chain.last_run();
    assert_eq!(std::fs::read(output_txt(&silent)).expect("output.txt"), b"");

    let db = rusqlite::Connection::open(chain.state_dir().join("runner.sqlite3")).expect("db");
    let nulls: i64 = db
        .query_row(
            "SELECT count(*) FROM runs WHERE stop_time IS NULL OR exit_code IS NULL",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(nulls, 0);
}

#[test]
fn parallel_output_txt_has_each_line_after_its_task() {
    let chain = Chain::new()
        .task("10-a.sh", "echo one; echo two")
        .task("20-b.sh", "echo three")
        .ini("[runner]\nparallel = 2");
    chain.run(&[]).assert_code(0);
    let run = chain.last_run();
    let path = chain
        .state_dir()
        .join("runs/tasks.d")
        .join(run["run_id"].as_str().expect("id"))
        .join("output.txt");
    let text = std::fs::read_to_string(path).expect("output.txt");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["[a] one", "[a] two", "[b] three"], "{text}");
}

#[test]
fn a_bad_postgresql_dsn_is_a_configuration_error_that_hides_its_password() {
    let chain = Chain::new().task("10-a.sh", "echo ran >> \"$LOG\"");
    let run = chain.run(&[
        "--database",
        "host=db.example password=s3cret-pw nonsense=1",
    ]);
    run.assert_code(78)
        .assert_stderr_contains("not a PostgreSQL connection string");
    assert!(!run.stderr().contains("s3cret-pw"), "{}", run.stderr());
    chain
        .runner(&["runs", "list", "--database", "mysql://db.example/runner"])
        .assert_code(78);
    assert_eq!(chain.log(), "", "no task ran");
}
