//! What reads and prunes the records, with a fleet database (contract section 13)
//! against a real PostgreSQL server: retention (`keep_runs`) in the database, each
//! host keeping its own history; `metrics` and `report` of every host's runs.

use crate::pg_server::{db_name, shared_or_skip};
use crate::support::{Chain, Run};

/// Runs `chain` recording into `dsn` as host `host`.
fn run_on(chain: &Chain, host: &str, dsn: &str) {
    let mut cmd = chain.command(&["--database", dsn]);
    cmd.env("RUNNER_HOST", host);
    Run::of(cmd).assert_code(0);
}

#[test]
fn keep_runs_prunes_this_hosts_old_runs_in_the_database_and_no_other_hosts() {
    let Some(pg) = shared_or_skip("keep_runs_prunes_in_the_database") else {
        return;
    };
    let dsn = pg.database();
    let a = Chain::new()
        .task("10-one.sh", "echo one")
        .ini("[runner]\nkeep_runs = 2\n");
    let b = Chain::new()
        .task("10-one.sh", "echo one")
        .ini("[runner]\nkeep_runs = 2\n");
    run_on(&b, "host-b", &dsn);
    for _ in 0..4 {
        run_on(&a, "host-a", &dsn);
    }
    let db = db_name(&dsn);
    let per_host = pg.psql(
        db,
        "SELECT string_agg(host || '=' || n, ',' ORDER BY host) FROM
            (SELECT m.host, count(*) n FROM runs r JOIN run_meta m USING (run_id)
             GROUP BY m.host) c",
    );
    // A prune runs as a run starts: the run before it and itself are kept.
    assert_eq!(per_host, "host-a=3,host-b=1");
    assert_eq!(
        pg.psql(
            db,
            "SELECT count(*) FROM task_instances t
             WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.run_id = t.run_id)
               AND NOT EXISTS (SELECT 1 FROM runs_running r WHERE r.run_id = t.run_id)"
        ),
        "0",
        "no instance outlives its run"
    );
    assert_eq!(
        pg.psql(
            db,
            "SELECT count(*) FROM attempts a
             WHERE NOT EXISTS (SELECT 1 FROM task_instances t WHERE t.id = a.instance_id)"
        ),
        "0"
    );
}

/// `runner --state-dir DIR --database DSN ARGS...` from a host with no records of its own.
fn elsewhere(state: &std::path::Path, dsn: &str, args: &[&str]) -> Run {
    let mut cmd = crate::support::runner();
    cmd.env("RUNNER_HOST", "host-c")
        .arg("--state-dir")
        .arg(state)
        .args(["--database", dsn])
        .args(args);
    Run::of(cmd)
}

#[test]
fn metrics_and_the_report_read_every_hosts_runs_from_the_database() {
    let Some(pg) = shared_or_skip("metrics_and_the_report_read_every_host") else {
        return;
    };
    let dsn = pg.database();
    let good = Chain::new().task("10-greet.sh", "echo hello");
    let bad = Chain::new()
        .task("10-greet.sh", "echo hello")
        .task("20-check.sh", "exit 1")
        .ini("[runner]\nmax_tries = 1\n");
    run_on(&good, "host-a", &dsn);
    let mut cmd = bad.command(&["--database", &dsn]);
    cmd.env("RUNNER_HOST", "host-b");
    Run::of(cmd).assert_code(1);

    let c = tempfile::tempdir().expect("tempdir");
    let dump = elsewhere(c.path(), &dsn, &["metrics", "--dump"]);
    dump.assert_code(0);
    let text = dump.stdout();
    for line in [
        "runner_runs_total{job_name=\"tasks.d\",result=\"ok\"} 1\n",
        "runner_runs_total{job_name=\"tasks.d\",result=\"failed\"} 1\n",
        "runner_run_duration_seconds_count{job_name=\"tasks.d\"} 2\n",
        "runner_run_latency_seconds{job_name=\"tasks.d\",quantile=\"0.99\"} ",
        "runner_running_runs{job_name=\"tasks.d\"} 0\n",
        "runner_task_attempts_total{job_name=\"tasks.d\",task=\"greet\",result=\"OK\"} 2\n",
        "runner_task_attempts_total{job_name=\"tasks.d\",task=\"check\",result=\"RETRY\"} 1\n",
        "runner_task_duration_seconds_count{job_name=\"tasks.d\",task=\"greet\"} 2\n",
    ] {
        assert!(text.contains(line), "metrics lack {line:?}\n{text}");
    }
    assert!(
        !c.path().join("runner.sqlite3").exists(),
        "read from the database"
    );

    let out = c.path().join("site");
    let report = elsewhere(
        c.path(),
        &dsn,
        &["report", "--out", out.to_str().expect("utf-8")],
    );
    report.assert_code(0);
    let index = std::fs::read_to_string(out.join("index.html")).expect("index.html");
    assert!(index.contains("tasks.d"), "{index}");
    let pages = std::fs::read_dir(&out)
        .expect("site")
        .flatten()
        .map(|e| e.path())
        .collect::<Vec<_>>();
    let run_pages = walk(&out)
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(p).is_ok_and(|t| t.contains("greet") && t.contains("<html"))
        })
        .count();
    assert!(run_pages >= 2, "a page for each host's run: {pages:?}");
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn the_report_shows_another_hosts_output_from_the_database_capped() {
    let Some(pg) = shared_or_skip("the_report_shows_another_hosts_output") else {
        return;
    };
    let dsn = pg.database();
    // 300 KiB between the first line and the last: the page shows the end only.
    let chain = Chain::new().task(
        "10-talk.sh",
        "echo first-line-of-host-a; head -c 307200 /dev/zero | tr '\\0' x; echo; echo last-line-of-host-a",
    );
    run_on(&chain, "host-a", &dsn);
    // Host a's files are not on the reporting host: only the database has the output.
    let runs = chain.state_dir().join("runs");
    std::fs::remove_dir_all(&runs).expect("remove host a's output files");

    let c = tempfile::tempdir().expect("tempdir");
    let out = c.path().join("site");
    elsewhere(
        c.path(),
        &dsn,
        &["report", "--out", out.to_str().expect("utf-8")],
    )
    .assert_code(0);
    let page = walk(&out.join("runs"))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "html"))
        .expect("a run page");
    let html = std::fs::read_to_string(&page).expect("run page");
    assert!(html.contains("talk#0 try 1"), "labelled as its attempt");
    assert!(
        html.contains("last-line-of-host-a"),
        "the output's end, from the database"
    );
    assert!(
        !html.contains("first-line-of-host-a"),
        "capped at the page's share, as for files"
    );
    assert!(
        html.contains("Only the last 256.0 KiB of 300."),
        "says it is cut"
    );
}
