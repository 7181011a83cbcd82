//! What reads and prunes the records, with a fleet database (contract section 13)
//! against a real PostgreSQL server: retention (`keep_runs`) in the database, each
//! host keeping its own history.

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
