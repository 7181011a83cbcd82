//! Crash safety: `kill -9` of runner at random moments never corrupts the store, never
//! leaves a run in an unknown state, and never leaves a task process behind.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::{Rng, SeedableRng};

use crate::support::{Chain, is_alive, wait_for};

const KILLS: usize = 30;

#[test]
fn kill_9_at_random_moments_loses_nothing() {
    let seed: u64 = std::env::var("RUNNER_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed {seed} (set RUNNER_TEST_SEED to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Slow tasks that record their pids, one of them with a grandchild, some retries.
    let chain = Chain::new()
        .task("10-a.sh", "echo $$ >> \"$LOG.pids\"; sleep 0.05")
        .task(
            "20-b.sh",
            "sleep 30 & echo $! >> \"$LOG.pids\"; echo $$ >> \"$LOG.pids\"; sleep 0.1; kill $!",
        )
        .task(
            "30-c.sh",
            "echo $$ >> \"$LOG.pids\"; sleep 0.05; [ $(($$ % 3)) -ne 0 ] || exit 1",
        )
        .task("halt.sh", "echo $$ >> \"$LOG.pids\"")
        .ini("[runner]\nmax_tries = 2\nkill_grace = 1");
    let started = Instant::now();
    for _ in 0..KILLS {
        let mut child = chain.spawn(&[]);
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..400)));
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        child.wait().expect("reap");
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "bounded in time"
        );
    }
    // One run to its end finalizes what the last kill left (task c may fail it).
    let last = chain.run(&[]);
    assert!(matches!(last.code(), Some(0 | 1)), "{}", last.stderr());

    let db = rusqlite::Connection::open(chain.state_dir().join("runner.sqlite3")).expect("open");
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(check, "ok");

    let list = chain.runs_json(&["list", "--limit", "1000"]);
    let runs = list.as_array().expect("list");
    assert!(!runs.is_empty());
    for run in runs {
        let status = run["status"].as_str().expect("status");
        assert!(
            ["ok", "failed", "halted", "lost"].contains(&status),
            "run {} is {status}",
            run["run_id"]
        );
    }
    let pids: Vec<i32> = std::fs::read_to_string(chain.path().join("log.pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(!pids.is_empty());
    assert!(
        wait_for(Duration::from_secs(15), || pids
            .iter()
            .all(|&p| !is_alive(p))),
        "a task process survived: {:?}",
        pids.iter().filter(|&&p| is_alive(p)).collect::<Vec<_>>()
    );
}
