//! Every process of a task accounted for: timeouts end the whole tree (group, `setsid`,
//! double fork) within the contract's bound and leave no zombie, under this machine's
//! PID 1 and with runner as PID 1 of a new PID namespace; leftovers of a normal exit
//! are kept (and keep working) or stopped.
//!
//! Timing is read from the records (the attempt's start and stop), not from how long
//! the test waited. Where a tight bound is the subject (1.1 s for max_time = 1 s), a
//! try that misses it only by timing is repeated, up to [`TRIES`] times: a machine busy
//! with other builds can delay one attempt by a scheduling slice, but an implementation
//! that waits for zombies or for the grace misses every try. What is left behind is
//! checked on every try.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{Chain, Daemon, is_alive, is_root, read_pid, skip, wait_for};

/// Tries of a timing bound (see the module comment).
const TRIES: usize = 3;

/// Runs `attempt` until the duration it returns is in `bound`, at most [`TRIES`] times;
/// panics with every figure otherwise.
fn within(what: &str, bound: std::ops::Range<f64>, mut attempt: impl FnMut() -> f64) {
    let mut figures = Vec::new();
    for _ in 0..TRIES {
        let took = attempt();
        assert!(
            took >= bound.start,
            "{what}: took {took:.3}s, below {}s",
            bound.start
        );
        if bound.contains(&took) {
            return;
        }
        figures.push(format!("{took:.3}s"));
    }
    panic!(
        "{what}: took {} in {TRIES} tries; expected under {}s",
        figures.join(", "),
        bound.end
    );
}

/// Times out after 1 s with a 3 s grace, once.
const LIMITS: &str = "[runner]\nmax_time = 1\nkill_grace = 3\nmax_tries = 1";

/// The halt task: lists every process named in `$LOG.pids` that still exists (alive or
/// zombie) when the chain goes on after the timeout. Pids are the task's own view, so
/// inside a PID namespace the namespace's /proc is read.
const HALT: &str = "touch \"$LOG.left\"\nwhile read p; do\n  if [ -e /proc/$p ]; then read s < /proc/$p/stat; echo \"$s\" >> \"$LOG.left\"; fi\ndone < \"$LOG.pids\"\necho halted >> \"$LOG\"";

/// A process that records its pid and then becomes `sleep 30`.
const SLEEPER: &str = "sh -c 'echo $$ >> \"$LOG.pids\"; exec sleep 30'";

/// The five shapes of the issue: (name, task body, processes that record their pid).
fn shapes() -> Vec<(&'static str, String, usize)> {
    vec![
        (
            "shell with a child",
            format!("echo $$ >> \"$LOG.pids\"\n{SLEEPER}"),
            2,
        ),
        (
            "shell with a background child",
            format!("echo $$ >> \"$LOG.pids\"\n{SLEEPER} &\n{SLEEPER}"),
            3,
        ),
        (
            "20 children",
            format!(
                "echo $$ >> \"$LOG.pids\"\ni=0\nwhile [ $i -lt 20 ]; do {SLEEPER} & i=$((i+1)); done\nwait"
            ),
            21,
        ),
        (
            "a child calling setsid",
            format!("echo $$ >> \"$LOG.pids\"\nsetsid {SLEEPER} &\nwait"),
            2,
        ),
        (
            "a double-forked daemon",
            format!("echo $$ >> \"$LOG.pids\"\n( setsid {SLEEPER} & )\n{SLEEPER}"),
            3,
        ),
    ]
}

fn pids(path: &Path) -> Vec<i32> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The attempts of task `name` in a `runs show` object: (start, stop) pairs.
fn attempt_times(run: &serde_json::Value, name: &str) -> Vec<(f64, f64)> {
    run["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter(|t| t["name"] == name)
        .flat_map(|t| t["attempts"].as_array().expect("attempts").clone())
        .map(|a| {
            (
                a["start_time"].as_f64().expect("start"),
                a["stop_time"].as_f64().expect("stop"),
            )
        })
        .collect()
}

/// Runs a chain whose task times out (`what` names it in messages): exit 1 and the
/// timeout said on stderr, which is returned.
fn timed_out(cmd: &mut Command, what: &str) -> String {
    let output = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{what}: {stderr}");
    assert!(stderr.contains("timed out"), "{what}: {stderr}");
    stderr
}

/// Runs one shape, with `wrap` put before runner's command line (for `unshare`), checks
/// that nothing is left, and returns the attempt's recorded duration.
fn timeout_case(shape: &str, body: &str, expected: usize, wrap: &[&str]) -> f64 {
    let chain = Chain::new()
        .task("10-a.sh", body)
        .task("halt.sh", HALT)
        .ini(LIMITS);
    let plain = chain.command(&[]);
    let mut cmd = match wrap.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args)
                .arg(plain.get_program())
                .args(plain.get_args());
            for (k, v) in plain.get_envs() {
                match v {
                    Some(v) => cmd.env(k, v),
                    None => cmd.env_remove(k),
                };
            }
            cmd.current_dir(chain.path());
            cmd
        }
        None => plain,
    };
    let stderr = timed_out(&mut cmd, shape);
    let recorded = pids(&chain.path().join("log.pids"));
    assert_eq!(
        recorded.len(),
        expected,
        "{shape}: pids {recorded:?}\n{stderr}"
    );
    assert_eq!(chain.log_lines(), ["halted"], "{shape}: {stderr}");
    let left = fs::read_to_string(chain.path().join("log.left")).expect("halt task ran");
    assert!(
        left.is_empty(),
        "{shape}: processes (or zombies) left when the chain went on:\n{left}"
    );
    let run = chain.last_run();
    let times = attempt_times(&run, "a");
    assert_eq!(times.len(), 1, "{shape}: {run}");
    let (start, stop) = times[0];
    if wrap.is_empty() {
        for pid in recorded {
            assert!(
                wait_for(Duration::from_secs(5), || !Path::new(&format!(
                    "/proc/{pid}"
                ))
                .exists()),
                "{shape}: pid {pid} is still there (alive: {})",
                is_alive(pid)
            );
        }
    }
    stop - start
}

#[test]
fn a_timeout_ends_every_shape_of_task_at_once_and_leaves_nothing() {
    // max_time is 1 s and every process dies on SIGTERM at once.
    for (shape, body, expected) in shapes() {
        within(shape, 1.0..1.1, || {
            timeout_case(shape, &body, expected, &[])
        });
    }
}

/// `unshare -fp --mount-proc`, when this test may create PID namespaces.
fn unshare() -> Option<Vec<&'static str>> {
    if !is_root() {
        skip("runner as PID 1 needs root to create a PID namespace");
        return None;
    }
    let probe = Command::new("unshare")
        .args(["-fp", "--mount-proc", "true"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        skip("`unshare -fp --mount-proc` is not permitted here");
        return None;
    }
    Some(vec!["unshare", "-fp", "--mount-proc"])
}

#[test]
fn as_pid_1_a_timeout_ends_every_shape_at_once_and_leaves_no_zombie() {
    let Some(wrap) = unshare() else { return };
    for (shape, body, expected) in shapes() {
        within(shape, 1.0..1.1, || {
            timeout_case(shape, &body, expected, &wrap)
        });
    }
}

#[test]
fn a_task_ignoring_sigterm_takes_exactly_the_grace() {
    // max_time 1 s + kill_grace 3 s, then SIGKILL, and everything is gone at once.
    within("a task ignoring SIGTERM", 4.0..4.2, || {
        let chain = Chain::new()
            .task(
                "10-a.sh",
                &format!("trap '' TERM\necho $$ >> \"$LOG.pids\"\n{SLEEPER} &\n{SLEEPER}"),
            )
            .task("halt.sh", HALT)
            .ini(LIMITS);
        chain.run(&[]).assert_code(1);
        assert_eq!(pids(&chain.path().join("log.pids")).len(), 3);
        let left = fs::read_to_string(chain.path().join("log.left")).expect("halt ran");
        assert!(left.is_empty(), "left after SIGKILL:\n{left}");
        let run = chain.last_run();
        let (start, stop) = attempt_times(&run, "a")[0];
        stop - start
    });
}

#[test]
fn sigterm_to_runner_as_pid_1_ends_the_chain_promptly() {
    let Some(wrap) = unshare() else { return };
    let chain = Chain::new()
        .task(
            "10-a.sh",
            &format!("echo $$ >> \"$LOG.pids\"\n{SLEEPER} &\n{SLEEPER}"),
        )
        .ini("[runner]\nkill_grace = 10");
    let plain = chain.command(&[]);
    // unshare forks runner as PID 1 of the namespace; `docker stop` signals that one.
    let mut child = Command::new(wrap[0])
        .args(&wrap[1..])
        .arg(plain.get_program())
        .args(plain.get_args())
        .envs(plain.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .current_dir(chain.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    assert!(
        wait_for(Duration::from_secs(20), || pids(
            &chain.path().join("log.pids")
        )
        .len()
            == 3),
        "the task did not start"
    );
    let unshare_pid = child.id() as i32;
    let runner_pid = fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        .expect("unshare's child is runner");
    let signalled = std::time::Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(runner_pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal runner");
    let status = child.wait().expect("wait");
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(143));
    // kill_grace is 10 s; every process dies on SIGTERM at once, so the run ends well
    // before it (the bound is loose on purpose: the figure is the benchmark's).
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// The files a kept leftover uses to talk with the test.
struct Handshake {
    dir: PathBuf,
}

impl Handshake {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

#[test]
fn a_kept_leftover_keeps_working_after_its_task_and_after_runner() {
    // The leftover prints once after its task ended (while the next task waits for it)
    // and once after runner exited; neither write may block it or kill it with SIGPIPE.
    let leftover = "( echo $$ > /dev/null; while [ ! -e \"$LOG.go1\" ]; do sleep 0.02; done; echo late-one; touch \"$LOG.ack1\"; while [ ! -e \"$LOG.go2\" ]; do sleep 0.02; done; echo late-two; echo alive > \"$LOG.marker\" ) &\necho $! > \"$LOG.leftover\"\necho started";
    let chain = Chain::new()
        .task("10-start.sh", leftover)
        .task(
            "20-next.sh",
            "touch \"$LOG.go1\"\ni=0\nwhile [ ! -e \"$LOG.ack1\" ] && [ $i -lt 1000 ]; do sleep 0.02; i=$((i+1)); done\n[ -e \"$LOG.ack1\" ] && echo next-saw-ack >> \"$LOG\"",
        );
    let hs = Handshake {
        dir: chain.path().to_owned(),
    };
    let out = fs::File::create(hs.path("stdout")).expect("stdout file");
    let err = fs::File::create(hs.path("stderr")).expect("stderr file");
    let status = chain
        .command(&[])
        .stdout(out)
        .stderr(err)
        .status()
        .expect("run");
    let stderr = fs::read_to_string(hs.path("stderr")).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(chain.log_lines(), ["next-saw-ack"], "{stderr}");
    let pid = read_pid(&hs.path("log.leftover"));
    assert!(
        is_alive(pid),
        "the kept leftover survived its task and runner"
    );
    // The subshell is named with its pid and command line (with whatever it runs now).
    assert!(
        stderr.contains("process(es) behind, kept running: ")
            && stderr.contains(&format!("{pid} (/bin/sh ")),
        "{stderr}"
    );
    let stdout = fs::read_to_string(hs.path("stdout")).unwrap_or_default();
    assert!(
        stdout.contains("started") && stdout.contains("late-one"),
        "{stdout}"
    );

    // Recorded: the leftover and what it printed while the run lasted.
    let run = chain.last_run();
    let start = run["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["name"] == "start")
        .expect("task start")
        .clone();
    let left = start["attempts"][0]["leftovers"]
        .as_array()
        .expect("leftovers recorded")
        .clone();
    let subshell = left
        .iter()
        .find(|l| l["pid"] == pid)
        .unwrap_or_else(|| panic!("pid {pid} not recorded: {run}"));
    assert!(
        subshell["command"]
            .as_str()
            .is_some_and(|c| c.contains("10-start.sh")),
        "{run}"
    );
    let id = run["run_id"].as_str().expect("id");
    chain
        .runner(&["runs", "output", id, "--task", "start"])
        .assert_code(0)
        .assert_stdout_contains("late-one");
    chain
        .runner(&["runs", "show", id])
        .assert_code(0)
        .assert_stdout_contains(&format!("start#0 try 1: pid {pid} "));

    // After runner exited: the write still reaches runner's stdout (the relay).
    fs::write(hs.path("log.go2"), "").expect("go2");
    assert!(
        wait_for(Duration::from_secs(20), || hs.path("log.marker").exists()),
        "the leftover died writing after runner exited"
    );
    assert!(
        wait_for(Duration::from_secs(10), || fs::read_to_string(
            hs.path("stdout")
        )
        .is_ok_and(|s| s.contains("late-two"))),
        "the late line went nowhere"
    );
    assert!(wait_for(Duration::from_secs(10), || !is_alive(pid)));
}

#[test]
fn a_kept_leftover_does_not_hold_up_the_chain() {
    // The old bound was 0.5 s of waiting for the pipe; now the chain goes on at once.
    within("the gap after a task that left a process", 0.0..0.4, || {
        let chain = Chain::new()
            .task(
                "10-start.sh",
                "sleep 30 &\necho $! > \"$LOG.leftover\"\necho started",
            )
            .task("20-next.sh", "echo next >> \"$LOG\"");
        // Not `output()`: the leftover holds runner's stdout (through the relay) as it
        // would without recording, so the end of that pipe is the leftover's end.
        let out = fs::File::create(chain.path().join("stdout")).expect("stdout file");
        let status = chain
            .command(&[])
            .stdout(out)
            .stderr(Stdio::null())
            .status()
            .expect("run");
        assert_eq!(status.code(), Some(0));
        let stdout = fs::read_to_string(chain.path().join("stdout")).unwrap_or_default();
        assert!(stdout.contains("started"), "{stdout}");
        let run = chain.last_run();
        let (_, start_stopped) = attempt_times(&run, "start")[0];
        let (next_started, _) = attempt_times(&run, "next")[0];
        let pid = read_pid(&chain.path().join("log.leftover"));
        assert!(is_alive(pid), "kept by default");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("clean up");
        next_started - start_stopped
    });
}

#[test]
fn leftovers_kill_stops_them_before_the_chain_goes_on() {
    for ini in ["[runner]\nleftovers = kill", "[start]\nleftovers = kill"] {
        let chain = Chain::new()
            .task(
                "10-start.sh",
                "touch \"$LOG.pids\"\nsleep 30 &\necho $! >> \"$LOG.pids\"\nsetsid sh -c 'echo $$ >> \"$LOG.pids\"; exec sleep 30' &\nwhile [ $(wc -l < \"$LOG.pids\") -lt 2 ]; do sleep 0.01; done",
            )
            .task(
                "20-next.sh",
                "while read p; do [ -e /proc/$p ] && echo \"left $p\" >> \"$LOG\"; done < \"$LOG.pids\"\necho next >> \"$LOG\"",
            )
            .ini(ini);
        let run = chain.run(&[]);
        run.assert_code(0)
            .assert_stderr_contains("left 2 process(es) behind, stopped (leftovers = kill)");
        assert_eq!(chain.log_lines(), ["next"], "{ini}");
        let record = chain.last_run();
        let left = record["tasks"][0]["attempts"][0]["leftovers"]
            .as_array()
            .expect("leftovers recorded")
            .len();
        assert_eq!(left, 2, "{record}");
    }
}

#[test]
fn daemon_max_execution_ends_a_shell_with_a_child_at_once() {
    let mut daemon = Daemon::new(&[(
        "runner.yaml",
        "jobs:\n  slow:\n    command: [\"/bin/sh\", \"-c\", \"echo $$ >> @ROOT@/pids; sh -c 'echo $$ >> @ROOT@/pids; exec sleep 30'\"]\n    max_execution: 1\n    max_execution_grace: 3\n",
    )]);
    daemon.start("runner.yaml");
    // max_execution 1 s, grace 3 s, and everything dies on SIGTERM at once.
    within("daemon max_execution", 1.0..1.1, || {
        let run = daemon.trigger_and_wait("slow");
        assert_eq!(run["exit_code"], 143, "{run}");
        for pid in pids(&daemon.path().join("pids")) {
            assert!(
                wait_for(Duration::from_secs(5), || !Path::new(&format!(
                    "/proc/{pid}"
                ))
                .exists()),
                "pid {pid} left behind (or a zombie)"
            );
        }
        let _ = fs::remove_file(daemon.path().join("pids"));
        run["stop_time"].as_f64().expect("stop") - run["start_time"].as_f64().expect("start")
    });
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    daemon.wait();
}

#[test]
fn kill_9_of_runner_leaves_no_scratch_directory() {
    let chain = Chain::new().task(
        "10-a.sh",
        "dirname \"$RUNNER_RESULT\" > \"$LOG.scratch\"\necho x > \"$RUNNER_RESULT\"\nexec sleep 30",
    );
    let mut child = chain.spawn(&[]);
    let scratch = PathBuf::from(
        {
            let path = chain.path().join("log.scratch");
            assert!(wait_for(Duration::from_secs(20), || fs::read_to_string(
                &path
            )
            .is_ok_and(|s| s.ends_with('\n'))));
            fs::read_to_string(path).expect("scratch")
        }
        .trim(),
    );
    assert!(scratch.is_dir());
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    assert!(
        wait_for(Duration::from_secs(20), || !scratch.exists()),
        "{} leaked",
        scratch.display()
    );
}

/// Makes `cmd`'s process (and so everything it starts) see `clone` with `CLONE_PIDFD`
/// refused with EPERM, as a container's seccomp profile may refuse it; every other
/// system call, `clone` without the flag and `clone3` are allowed.
#[cfg(target_arch = "x86_64")]
fn refuse_clone_pidfd(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    let op = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let load = |offset: u32| op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset, 0, 0);
    let ret = |value: u32| op(libc::BPF_RET | libc::BPF_K, value, 0, 0);
    // Offsets into struct seccomp_data: nr at 0, arch at 4, args[0]'s low half at 16.
    let filter = [
        load(4),
        op(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            AUDIT_ARCH_X86_64,
            0,
            5,
        ),
        load(0),
        op(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            libc::SYS_clone as u32,
            0,
            3,
        ),
        load(16),
        op(
            libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K,
            libc::CLONE_PIDFD as u32,
            0,
            1,
        ),
        ret(libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        ret(libc::SECCOMP_RET_ALLOW),
    ];
    // SAFETY: the closure makes only two system calls, on memory it owns; nothing in it
    // allocates or takes a lock between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let program = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr().cast_mut(),
            };
            let set = libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &raw const program,
            );
            if set != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
#[cfg(target_arch = "x86_64")]
fn where_clone_refuses_pidfds_tasks_still_run_and_a_timeout_ends_them_at_once() {
    // The fallback takes each task's pidfd with pidfd_open after the clone: the task that
    // exits is seen to, the one that times out is ended with its whole group at the
    // limit, not after the grace, and nothing is left.
    within("a timeout without CLONE_PIDFD", 1.0..2.0, || {
        let chain = Chain::new()
            .task("10-a.sh", "echo a >> \"$LOG\"")
            .task("20-b.sh", SLEEPER)
            .task("halt.sh", HALT)
            .ini(LIMITS);
        let mut cmd = chain.command(&["-v"]);
        refuse_clone_pidfd(&mut cmd);
        let stderr = timed_out(&mut cmd, "without CLONE_PIDFD");
        assert!(
            stderr.contains("CLONE_PIDFD refused"),
            "the filter did not reach runner's clone: {stderr}"
        );
        assert_eq!(chain.log_lines(), ["a", "halted"], "{stderr}");
        let left = fs::read_to_string(chain.path().join("log.left")).expect("halt task ran");
        assert!(left.is_empty(), "left when the chain went on:\n{left}");
        let times = attempt_times(&chain.last_run(), "b");
        assert_eq!(times.len(), 1, "{stderr}");
        times[0].1 - times[0].0
    });
}
