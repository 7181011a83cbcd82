//! What each exit code decides, retries and the halt task.

use crate::support::Chain;

#[test]
fn exit_two_runs_halt_and_stops() {
    let chain = Chain::new()
        .task("10-a.sh", "echo a >> \"$LOG\"; exit 2")
        .task("20-b.sh", "echo b >> \"$LOG\"")
        .task("halt.sh", "echo \"halt $RUNNER_TASK\" >> \"$LOG\"");
    chain.run(&[]).assert_code(1);
    assert_eq!(chain.log_lines(), ["a", "halt halt"]);
}

#[test]
fn exit_three_stops_without_halt() {
    let chain = Chain::new()
        .task("10-a.sh", "echo a >> \"$LOG\"; exit 3")
        .task("20-b.sh", "echo b >> \"$LOG\"")
        .task("halt.sh", "echo halt >> \"$LOG\"");
    chain.run(&[]).assert_code(1);
    assert_eq!(chain.log_lines(), ["a"]);
}

#[test]
fn other_exit_retries_from_the_start_until_max_tries_then_halts() {
    let chain = Chain::new()
        .task(
            "10-a.sh",
            "echo \"a $RUNNER_TRY/$RUNNER_MAX_TRIES\" >> \"$LOG\"",
        )
        .task("20-b.sh", "echo \"b $RUNNER_TRY\" >> \"$LOG\"; exit 1")
        .task("halt.sh", "echo halt >> \"$LOG\"")
        .ini("[runner]\nmax_tries = 3");
    chain.run(&[]).assert_code(1);
    assert_eq!(
        chain.log_lines(),
        ["a 1/3", "b 1", "a 2/3", "b 2", "a 3/3", "b 3", "halt"]
    );
}

#[test]
fn retry_that_succeeds_continues_the_chain() {
    let chain = Chain::new()
        .task("10-a.sh", "echo a >> \"$LOG\"")
        .task(
            "20-flaky.sh",
            "if [ ! -e \"$LOG.marker\" ]; then : > \"$LOG.marker\"; exit 7; fi\necho flaky >> \"$LOG\"",
        )
        .task("30-c.sh", "echo c >> \"$LOG\"")
        .task("halt.sh", "echo halt >> \"$LOG\"");
    chain.run(&[]).assert_code(0);
    assert_eq!(chain.log_lines(), ["a", "a", "flaky", "c"]);
}

#[test]
fn retry_from_failed_keeps_finished_tasks() {
    let chain = Chain::new()
        .task("10-a.sh", "echo a >> \"$LOG\"")
        .task(
            "20-flaky.sh",
            "if [ ! -e \"$LOG.marker\" ]; then : > \"$LOG.marker\"; exit 1; fi\necho \"flaky $RUNNER_TRY\" >> \"$LOG\"",
        )
        .ini("[runner]\nretry_from = failed");
    chain.run(&[]).assert_code(0);
    assert_eq!(chain.log_lines(), ["a", "flaky 2"]);
}

#[test]
fn task_max_tries_override_decides_when_to_give_up() {
    let chain = Chain::new()
        .task(
            "10-a.sh",
            "echo \"a $RUNNER_MAX_TRIES\" >> \"$LOG\"; exit 1",
        )
        .ini("[runner]\nmax_tries = 5\n[a]\nmax_tries = 2");
    chain.run(&[]).assert_code(1);
    assert_eq!(chain.log_lines(), ["a 2", "a 2"]);
}

#[test]
fn a_task_that_cannot_start_is_retried_not_fatal() {
    let chain = Chain::new()
        // An interpreter that is missing is a configuration error found before the run;
        // one that is there but cannot be executed is only found by exec.
        .file("10-bad.sh", "#!/etc/passwd\n", 0o755)
        .task("halt.sh", "echo halt >> \"$LOG\"")
        .ini("[runner]\nmax_tries = 2");
    chain
        .run(&[])
        .assert_code(1)
        .assert_stderr_contains("could not start");
    assert_eq!(chain.log_lines(), ["halt"]);
}

#[test]
fn killed_by_signal_is_a_retry() {
    let chain = Chain::new()
        .task("10-a.sh", "echo a >> \"$LOG\"; kill -9 $$")
        .ini("[runner]\nmax_tries = 2");
    chain
        .run(&[])
        .assert_code(1)
        .assert_stderr_contains("killed by signal 9");
    assert_eq!(chain.log_lines(), ["a", "a"]);
}

#[test]
fn missing_halt_task_is_a_warning() {
    let chain = Chain::new().task("10-a.sh", "exit 2");
    chain
        .run(&[])
        .assert_code(1)
        .assert_stderr_contains("halt task \"halt.sh\" not found");
}

#[test]
fn custom_halt_task_name() {
    let chain = Chain::new()
        .task("10-a.sh", "exit 2")
        .task("stop-now", "echo stopped >> \"$LOG\"")
        .ini("[runner]\nhalt_task = stop-now");
    chain.run(&[]).assert_code(1);
    assert_eq!(chain.log_lines(), ["stopped"]);
}

#[test]
fn retry_pause_follows_sleep_time() {
    // sleep_time = 1 and no jitter: the pause after attempt 1 is floor(1.14 * 1) = 1 s.
    let chain = Chain::new()
        .task("10-a.sh", "date +%s.%N >> \"$LOG\"; exit 1")
        .ini("[runner]\nmax_tries = 2\nsleep_time = 1\nretry_jitter = 0");
    chain.run(&[]).assert_code(1);
    let times: Vec<f64> = chain
        .log_lines()
        .iter()
        .map(|l| l.parse().expect("time"))
        .collect();
    assert_eq!(times.len(), 2);
    let gap = times[1] - times[0];
    assert!((0.95..10.0).contains(&gap), "pause was {gap}s");
}

#[test]
fn a_halt_task_given_as_a_path_is_a_configuration_error() {
    let chain = Chain::new()
        .task("10-a.sh", "echo a >> \"$LOG\"")
        .task("halt.sh", "echo halt >> \"$LOG\"");
    let by_path = chain.taskdir().join("halt.sh");
    let chain = chain.ini(&format!("[runner]\nhalt_task = {}", by_path.display()));
    chain
        .run(&[])
        .assert_code(78)
        .assert_stderr_contains("must be a file name in the task directory");
    assert_eq!(chain.log(), "", "nothing ran");
}
