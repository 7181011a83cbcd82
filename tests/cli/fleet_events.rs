//! Events shared by the hosts of a fleet (contract section 13), against a real
//! PostgreSQL server: a chain on one "host" (a state dir with its own `RUNNER_HOST`)
//! woken by `runner fire` or a cascade on another, the daemon's event jobs likewise,
//! and what `fire` and a waiting chain do when the database cannot be reached.
//!
//! Every waiting chain here has a `wait_time` far longer than the tests' own bounds, and
//! its state dir sees no local `events.notify`: only the database's NOTIFY can wake it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::pg_server::{PgServer, db_name, shared_or_skip};
use crate::support::{Chain, Daemon, Run, runner, wait_for};

/// `runner --state-dir DIR --database DSN ARGS...` as host `host` in session `session`.
fn on_host(host: &str, state: &Path, dsn: &str, session: &str, args: &[&str]) -> Run {
    let mut cmd = runner();
    cmd.env("RUNNER_HOST", host)
        .env("RUNNER_SESSION", session)
        .arg("--state-dir")
        .arg(state)
        .args(["--database", dsn])
        .args(args);
    Run::of(cmd)
}

/// A chain whose task `wait` needs event `after`, writing what it got to `$LOG`.
fn waiting_chain(after: &str) -> Chain {
    Chain::new()
        .task("10-wait.sh", "cat \"$RUNNER_EVENTS\" > \"$LOG\"")
        .ini(&format!("[wait]\nafter = {after}\nwait_time = 3600\n"))
}

/// Starts `chain` on `host` in `session`, recording into `dsn`, and waits until its
/// task says it is waiting.
fn start_waiting(chain: &Chain, host: &str, dsn: &str, session: &str) -> std::process::Child {
    let mut cmd = chain.command(&["--database", dsn]);
    let log = std::fs::File::create(chain.path().join("runner.log")).expect("log");
    cmd.env("RUNNER_HOST", host)
        .env("RUNNER_SESSION", session)
        .stdout(std::process::Stdio::null())
        .stderr(log);
    let child = cmd.spawn().expect("spawn runner");
    let waiting = wait_for(Duration::from_secs(60), || {
        chain.read("runner.log").contains("waiting for event(s)")
    });
    assert!(waiting, "not waiting: {}", chain.read("runner.log"));
    child
}

/// Waits (at most a minute) for `child` to exit; its code.
fn exit_of(child: &mut std::process::Child, chain: &Chain) -> Option<i32> {
    let mut code = None;
    let ended = wait_for(Duration::from_secs(60), || {
        match child.try_wait().expect("try_wait") {
            Some(status) => {
                code = status.code();
                true
            }
            None => false,
        }
    });
    if !ended {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the chain was not woken: {}", chain.read("runner.log"));
    }
    code
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn a_chain_on_one_host_wakes_when_another_host_fires() {
    let Some(pg) = shared_or_skip("a_chain_on_one_host_wakes") else {
        return;
    };
    let dsn = pg.database();
    let chain = waiting_chain("db-ready");
    let mut child = start_waiting(&chain, "host-a", &dsn, "boot-1");
    let b = tempfile::tempdir().expect("tempdir");
    // Another session's firing wakes nobody into running.
    on_host(
        "host-b",
        b.path(),
        &dsn,
        "boot-2",
        &["fire", "db-ready", "--data", r#"{"wrong": true}"#],
    )
    .assert_code(0);
    on_host(
        "host-b",
        b.path(),
        &dsn,
        "boot-1",
        &["fire", "db-ready", "--data", r#"{"port": 5432}"#],
    )
    .assert_code(0);
    assert_eq!(exit_of(&mut child, &chain), Some(0));
    assert_eq!(
        json(&chain.log()),
        serde_json::json!({"db-ready": {"port": 5432}})
    );
    // The event is the fleet's, recorded with the host that fired it, and no host's
    // file has it.
    assert_eq!(
        pg.psql(
            db_name(&dsn),
            "SELECT host || ' ' || session FROM events WHERE data LIKE '%5432%'"
        ),
        "host-b boot-1"
    );
    let c = tempfile::tempdir().expect("tempdir");
    let listed = on_host(
        "host-c",
        c.path(),
        &dsn,
        "boot-1",
        &["--format", "json", "events", "list"],
    );
    listed.assert_code(0);
    let listed = json(&listed.stdout());
    let names: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["name"].as_str().expect("name"))
        .collect();
    // The fired event, then the cascade of the task it woke.
    assert_eq!(names, ["db-ready", "wait"], "{listed}");
    assert!(!b.path().join("runner.sqlite3").exists());
}

#[test]
fn a_cascade_on_one_host_wakes_a_chain_on_another() {
    let Some(pg) = shared_or_skip("a_cascade_on_one_host_wakes") else {
        return;
    };
    let dsn = pg.database();
    let chain = waiting_chain("provision");
    let mut child = start_waiting(&chain, "host-a", &dsn, "boot-3");
    let other = Chain::new().task(
        "10-provision.sh",
        "echo '{\"ip\": \"10.0.0.2\"}' > \"$RUNNER_RESULT\"",
    );
    let mut cmd = other.command(&["--database", &dsn]);
    cmd.env("RUNNER_HOST", "host-b")
        .env("RUNNER_SESSION", "boot-3");
    Run::of(cmd).assert_code(0);
    assert_eq!(exit_of(&mut child, &chain), Some(0));
    assert_eq!(
        json(&chain.log()),
        serde_json::json!({"provision": {"ip": "10.0.0.2"}})
    );
}

#[test]
fn a_daemon_job_waiting_for_an_event_runs_when_another_host_fires_it() {
    let Some(pg) = shared_or_skip("a_daemon_job_waiting_for_an_event") else {
        return;
    };
    let dsn = pg.database();
    let yaml = format!(
        "database:\n  type: postgresql\n  dsn: '{dsn}'\njobs:\n  mount:\n    command: [sh, -c, 'cat \"$RUNNER_EVENTS\" > seen.json']\n    after: [disk]\n  again:\n    command: ['true']\n    and_every: sync\n"
    );
    let mut daemon = Daemon::new(&[("dsari.yaml", &yaml)]);
    daemon.start_with_env(
        "dsari.yaml",
        &[
            ("RUNNER_SESSION", PathBuf::from("boot-4")),
            ("RUNNER_HOST", PathBuf::from("host-a")),
        ],
    );
    let b = tempfile::tempdir().expect("tempdir");
    on_host(
        "host-b",
        b.path(),
        &dsn,
        "boot-4",
        &["fire", "disk", "--data", r#"{"dev": "sdb"}"#],
    )
    .assert_code(0);
    for _ in 0..2 {
        on_host("host-b", b.path(), &dsn, "boot-4", &["fire", "sync"]).assert_code(0);
    }
    let db = db_name(&dsn);
    let count = |job: &str| {
        pg.psql(
            db,
            &format!("SELECT count(*) FROM runs WHERE job_name = '{job}' AND exit_code = 0"),
        )
    };
    let ran = wait_for(Duration::from_secs(60), || {
        count("mount") == "1" && count("again") == "2"
    });
    assert!(ran, "{}", daemon.daemon_log());
    let seen = std::fs::read_dir(daemon.state_dir().join("runs/mount"))
        .expect("run dirs")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("seen.json")).ok())
        .next()
        .expect("seen.json");
    assert_eq!(json(&seen), serde_json::json!({"disk": {"dev": "sdb"}}));
    // A successful job run fires its event into the fleet too.
    assert!(
        wait_for(Duration::from_secs(30), || {
            pg.psql(
                db,
                "SELECT count(*) FROM events WHERE name = 'mount' AND host = 'host-a'",
            ) == "1"
        }),
        "{}",
        daemon.daemon_log()
    );
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    daemon.wait();
}

#[test]
fn with_the_database_unreachable_fire_keeps_the_event_here_and_says_so() {
    let chain =
        waiting_chain("late").ini("[runner]\nmax_tries = 1\n[wait]\nafter = late\nwait_time = 1\n");
    let dsn = format!(
        "host={} dbname=nothing connect_timeout=2",
        chain.path().join("no-server").display()
    );
    let mut cmd = runner();
    cmd.arg("--state-dir").arg(chain.state_dir()).args([
        "--database",
        &dsn,
        "fire",
        "here",
        "--session",
        "s9",
    ]);
    let fired = Run::of(cmd);
    fired.assert_code(75);
    assert_eq!(
        fired.stderr().matches("recorded on this host only").count(),
        1,
        "{}",
        fired.stderr()
    );
    let local = chain.state_dir().join("runner.sqlite3");
    let mut cmd = runner();
    cmd.arg("--state-dir").arg(chain.state_dir()).args([
        "--database",
        local.to_str().expect("utf-8"),
        "--format",
        "json",
        "events",
        "list",
        "--session",
        "s9",
    ]);
    let listed = Run::of(cmd);
    listed.assert_code(0);
    assert_eq!(json(&listed.stdout())[0]["name"], "here");

    // A chain waiting for an event it cannot get waits its wait_time, no longer, and
    // fails as a wait that expired does.
    let mut cmd = chain.command(&["--database", &dsn]);
    cmd.env("RUNNER_SESSION", "s9");
    let run = Run::of(cmd);
    run.assert_code(1);
    assert_eq!(
        run.stderr()
            .matches("cannot use the fleet database")
            .count(),
        1,
        "one warning for records, events and wake-ups: {}",
        run.stderr()
    );
    run.assert_stderr_contains("waited 1s for event(s) late: RETRY");
}

#[test]
fn a_waiting_chain_listens_again_after_the_database_restarts() {
    let pg = match PgServer::start() {
        Ok(pg) => pg,
        Err(reason) => {
            crate::support::skip(format!(
                "a_waiting_chain_listens_again: no PostgreSQL server: {reason}"
            ));
            return;
        }
    };
    let dsn = pg.database();
    let chain = waiting_chain("db-ready");
    let mut child = start_waiting(&chain, "host-a", &dsn, "boot-5");
    pg.kill();
    // While it is away, the chain keeps waiting (its wait_time is an hour).
    // The listener (or the recorder, whichever notices first) says so, once.
    let warned = wait_for(Duration::from_secs(90), || {
        chain.read("runner.log").contains("warn:")
    });
    assert!(warned, "no warning: {}", chain.read("runner.log"));
    pg.restart();
    let b = tempfile::tempdir().expect("tempdir");
    on_host("host-b", b.path(), &dsn, "boot-5", &["fire", "db-ready"]).assert_code(0);
    assert_eq!(exit_of(&mut child, &chain), Some(0));
    assert_eq!(json(&chain.log()), serde_json::json!({"db-ready": {}}));
    let log = chain.read("runner.log");
    assert_eq!(log.matches("warn:").count(), 1, "one warning: {log}");
}

/// A unix-socket relay in front of the server that, once, lets a firing's `COMMIT`
/// through and drops the connection before its answer comes back: the firing is in
/// the database, and the firing process only sees its connection die.
struct CommitDropper {
    dir: tempfile::TempDir,
    dropped: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl CommitDropper {
    fn start(server_dir: &str) -> CommitDropper {
        use std::io::{Read, Write};
        use std::os::unix::net::{UnixListener, UnixStream};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = UnixListener::bind(dir.path().join(".s.PGSQL.5432")).expect("bind");
        let server = PathBuf::from(server_dir).join(".s.PGSQL.5432");
        let dropped = Arc::new(AtomicBool::new(false));
        let armed = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&dropped);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(upstream) = UnixStream::connect(&server) else {
                    continue;
                };
                let drop_reply = Arc::new(AtomicBool::new(false));
                let (mut c_in, mut s_out) = (
                    client.try_clone().expect("clone"),
                    upstream.try_clone().expect("clone"),
                );
                let (armed, drop_up) = (Arc::clone(&armed), Arc::clone(&drop_reply));
                std::thread::spawn(move || {
                    let mut saw_insert = false;
                    let mut buf = [0u8; 65536];
                    while let Ok(n @ 1..) = c_in.read(&mut buf) {
                        let chunk = &buf[..n];
                        let has = |text: &[u8]| chunk.windows(text.len()).any(|w| w == text);
                        saw_insert |= has(b"INSERT INTO events");
                        if saw_insert && has(b"COMMIT") && armed.swap(false, Ordering::SeqCst) {
                            drop_up.store(true, Ordering::SeqCst);
                        }
                        if s_out.write_all(chunk).is_err() {
                            break;
                        }
                    }
                });
                let (mut s_in, mut c_out) = (upstream, client);
                let flag = Arc::clone(&flag);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n @ 1..) = s_in.read(&mut buf) {
                        if drop_reply.load(Ordering::SeqCst) {
                            // The server answered the COMMIT: it has landed.
                            flag.store(true, Ordering::SeqCst);
                            let _ = c_out.shutdown(std::net::Shutdown::Both);
                            let _ = s_in.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        if c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        CommitDropper { dir, dropped }
    }
}

#[test]
fn a_fire_whose_connection_dies_at_its_commit_is_recorded_once() {
    let Some(pg) = shared_or_skip("a_fire_whose_connection_dies_at_its_commit") else {
        return;
    };
    let dsn = pg.database();
    let server_dir = dsn
        .strip_prefix("host=")
        .and_then(|rest| rest.split(' ').next())
        .expect("host= first");
    let relay = CommitDropper::start(server_dir);
    let relayed = dsn.replacen(server_dir, &relay.dir.path().display().to_string(), 1);
    let state = tempfile::tempdir().expect("tempdir");
    let fire = on_host("host-a", state.path(), &relayed, "s1", &["fire", "deploy"]);
    assert!(
        relay.dropped.load(std::sync::atomic::Ordering::SeqCst),
        "the relay dropped the answer to the firing's commit:\n{}",
        fire.stderr()
    );
    fire.assert_code(0);
    assert_eq!(
        pg.psql(
            db_name(&dsn),
            "SELECT count(*), count(firing_id) FROM events WHERE name = 'deploy'"
        ),
        "1|1",
        "sent twice, recorded once"
    );
}
