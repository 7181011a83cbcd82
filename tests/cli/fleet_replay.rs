//! `runner skip` and `runner replay` with a fleet database (contract section 13): what
//! they change in a run is in PostgreSQL too, so `runs show` from any host sees it, and
//! a change made while the database is away is sent with the run once it answers.

use crate::pg_server::{PgServer, db_name, shared_or_skip};
use crate::support::{Chain, Run, runner};

/// a passes, b fails unless $FIX is set, c depends on b.
fn failing_chain() -> Chain {
    Chain::new()
        .task("10-a.sh", "echo a")
        .task(
            "20-b.sh",
            "if [ -n \"$FIX\" ]; then echo fixed; exit 0; fi; echo broken; exit 1",
        )
        .task("30-c.sh", "echo c")
        .ini("[runner]\nmax_tries = 1\n[c]\ndepends_on = b\n")
}

/// `runner --state-dir (chain's) --database DSN ARGS...` on host a.
fn on_a(chain: &Chain, dsn: &str, args: &[&str]) -> Run {
    let mut cmd = runner();
    cmd.env("RUNNER_HOST", "host-a")
        .arg("--state-dir")
        .arg(chain.state_dir())
        .args(["--database", dsn])
        .args(args);
    Run::of(cmd)
}

/// Runs the chain on host a.
fn run_chain(chain: &Chain, dsn: &str, code: i32) {
    let mut cmd = chain.command(&["--database", dsn]);
    cmd.env("RUNNER_HOST", "host-a");
    Run::of(cmd).assert_code(code);
}

/// `runs ARGS --format json` from host c, which has no records of its own.
fn from_c(dsn: &str, args: &[&str]) -> serde_json::Value {
    let state = tempfile::tempdir().expect("tempdir");
    let mut cmd = runner();
    cmd.env("RUNNER_HOST", "host-c")
        .arg("--state-dir")
        .arg(state.path())
        .args(["--database", dsn, "--format", "json", "runs"])
        .args(args);
    let run = Run::of(cmd);
    run.assert_code(0);
    serde_json::from_str(&run.stdout()).unwrap_or_else(|e| panic!("{e}: {}", run.stdout()))
}

/// The newest run's id, as host c lists it.
fn newest(dsn: &str) -> String {
    from_c(dsn, &["list"])[0]["run_id"]
        .as_str()
        .expect("run id")
        .to_owned()
}

fn instances(show: &serde_json::Value) -> Vec<String> {
    show["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| {
            format!(
                "{}={}",
                t["instance"].as_str().unwrap_or(""),
                t["status"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn skip_and_replay_change_the_run_in_the_database_for_every_host() {
    let Some(pg) = shared_or_skip("skip_and_replay_change_the_run_in_the_database") else {
        return;
    };
    let dsn = pg.database();
    let chain = failing_chain();
    run_chain(&chain, &dsn, 1);
    let skipped = newest(&dsn);
    on_a(&chain, &dsn, &["skip", &skipped]).assert_code(0);
    let show = from_c(&dsn, &["show", &skipped]);
    assert_eq!(show["status"], "failed");
    assert_eq!(
        instances(&show),
        ["a#0=finished", "b#0=skipped", "c#0=unstarted"]
    );

    run_chain(&chain, &dsn, 1);
    let replayed = newest(&dsn);
    assert_ne!(replayed, skipped);
    let mut cmd = runner();
    cmd.env("RUNNER_HOST", "host-a")
        .env("FIX", "1")
        .arg("--state-dir")
        .arg(chain.state_dir())
        .args(["--database", &dsn, "replay", &replayed]);
    Run::of(cmd).assert_code(0);
    let show = from_c(&dsn, &["show", &replayed]);
    assert_eq!(show["status"], "ok", "{show}");
    assert_eq!(
        instances(&show),
        [
            "a#0=finished",
            "b#0=replayed",
            "c#0=finished",
            "b#1=finished"
        ]
    );
    let db = db_name(&dsn);
    assert_eq!(
        pg.psql(db, "SELECT count(*), count(DISTINCT run_id) FROM runs"),
        "2|2"
    );
    assert_eq!(pg.psql(db, "SELECT count(*) FROM runs_running"), "0");
    assert_eq!(
        pg.psql(
            db,
            &format!("SELECT exit_code FROM runs WHERE run_id = '{replayed}'")
        ),
        "0",
        "the replayed run's end is the new one"
    );
}

#[test]
fn a_skip_while_the_database_is_away_is_sent_with_the_run_later() {
    let pg = match PgServer::start() {
        Ok(pg) => pg,
        Err(reason) => {
            crate::support::skip(format!(
                "a_skip_while_the_database_is_away: no PostgreSQL server: {reason}"
            ));
            return;
        }
    };
    let dsn = pg.database();
    let chain = failing_chain();
    run_chain(&chain, &dsn, 1);
    let id = newest(&dsn);
    pg.kill();
    let skip = on_a(&chain, &dsn, &["skip", &id]);
    skip.assert_code(0);
    assert_eq!(
        skip.stderr().matches("warn:").count(),
        1,
        "one warning:\n{}",
        skip.stderr()
    );
    pg.restart();
    // The next run reaches the database and sends the changed run first.
    run_chain(&chain, &dsn, 1);
    let show = from_c(&dsn, &["show", &id]);
    assert_eq!(
        instances(&show),
        ["a#0=finished", "b#0=skipped", "c#0=unstarted"]
    );
    assert_eq!(
        pg.psql(
            db_name(&dsn),
            "SELECT count(*), count(DISTINCT run_id) FROM runs"
        ),
        "2|2"
    );
}

#[test]
fn a_skip_with_cascade_while_the_database_is_away_sends_the_resumed_run_and_its_events() {
    let pg = match PgServer::start() {
        Ok(pg) => pg,
        Err(reason) => {
            crate::support::skip(format!(
                "a_skip_with_cascade_while_the_database_is_away: no PostgreSQL server: {reason}"
            ));
            return;
        }
    };
    let dsn = pg.database();
    let chain = failing_chain();
    run_chain(&chain, &dsn, 1);
    let id = newest(&dsn);
    pg.kill();
    let skip = on_a(&chain, &dsn, &["skip", &id, "--cascade"]);
    skip.assert_code(0);
    assert_eq!(
        skip.stderr().matches("warn:").count(),
        1,
        "one warning:\n{}",
        skip.stderr()
    );
    pg.restart();
    run_chain(&chain, &dsn, 1);
    let show = from_c(&dsn, &["show", &id]);
    assert_eq!(show["status"], "ok", "{show}");
    assert_eq!(
        instances(&show),
        ["a#0=finished", "b#0=skipped", "c#0=finished"]
    );
    let db = db_name(&dsn);
    // a's cascade went live, the skip's event and c's cascade with the run; none twice.
    assert_eq!(
        pg.psql(
            db,
            &format!(
                "SELECT string_agg(name || ' ' || split_part(source, ' ', 1), ',' ORDER BY name)
                 FROM events WHERE source LIKE '% {id}'"
            )
        ),
        "a cascade,b skip,c cascade"
    );
    assert_eq!(
        pg.psql(db, "SELECT count(*), count(DISTINCT run_id) FROM runs"),
        "2|2"
    );
    assert_eq!(pg.psql(db, "SELECT count(*) FROM runs_running"), "0");
}
