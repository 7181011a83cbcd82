//! One run of a job at a time.

use std::time::Duration;

use crate::support::{Chain, wait_for};

#[test]
fn second_run_of_the_same_job_exits_75_naming_the_run() {
    let chain = Chain::new().task(
        "10-a.sh",
        "echo \"$RUNNER_RUN_ID\" > \"$LOG.id\"\nwhile [ ! -e \"$LOG.release\" ]; do sleep 0.05; done",
    );
    let mut first = chain.spawn(&[]);
    let id_path = chain.path().join("log.id");
    assert!(wait_for(Duration::from_secs(20), || id_path.exists()));
    let run_id = std::fs::read_to_string(&id_path)
        .expect("id")
        .trim()
        .to_owned();

    let second = chain.run(&[]);
    second
        .assert_code(75)
        .assert_stderr_contains("is already running")
        .assert_stderr_contains(&run_id);
    assert!(second.elapsed < Duration::from_secs(5), "must fail at once");

    std::fs::write(chain.path().join("log.release"), "").expect("release");
    assert_eq!(first.wait().expect("wait").code(), Some(0));
}

#[test]
fn wait_flag_waits_for_the_running_job() {
    let chain = Chain::new().task(
        "10-a.sh",
        "echo run >> \"$LOG\"\nwhile [ ! -e \"$LOG.release\" ]; do sleep 0.05; done",
    );
    let mut first = chain.spawn(&[]);
    assert!(wait_for(Duration::from_secs(20), || chain
        .log_lines()
        .len()
        == 1));
    let mut second = chain.spawn_logged(&["--wait"], "second.log");
    // Once it says it waits, it has met the lock: had it not, its task would have run.
    assert!(
        wait_for(Duration::from_secs(20), || chain
            .read("second.log")
            .contains("is already running")),
        "the second run must say it waits: {}",
        chain.read("second.log")
    );
    assert_eq!(
        chain.log_lines().len(),
        1,
        "the waiting run must not start yet"
    );
    std::fs::write(chain.path().join("log.release"), "").expect("release");
    assert_eq!(first.wait().expect("wait").code(), Some(0));
    assert_eq!(second.wait().expect("wait").code(), Some(0));
    assert_eq!(chain.log_lines().len(), 2);
}

#[test]
fn different_jobs_do_not_block_each_other() {
    let chain = Chain::new()
        .task(
            "10-a.sh",
            "while [ ! -e \"$LOG.release\" ]; do sleep 0.05; done",
        )
        .ini("[runner]\nname = first");
    let mut first = chain.spawn(&[]);
    let other = Chain::new().task("10-b.sh", "echo b >> \"$LOG\"");
    // Same state dir, another job (named after its task directory).
    let mut cmd = crate::support::runner();
    cmd.arg("--state-dir")
        .arg(chain.state_dir())
        .arg(other.taskdir());
    cmd.env("LOG", other.log_path());
    crate::support::Run::of(cmd).assert_code(0);
    assert_eq!(other.log_lines(), ["b"]);
    std::fs::write(chain.path().join("log.release"), "").expect("release");
    assert_eq!(first.wait().expect("wait").code(), Some(0));
}
