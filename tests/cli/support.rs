//! A builder for black-box tests: a task directory and config in a temp dir, the real
//! binary, and assertions that print everything on failure.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Settings that keep tests fast: no retry pauses, a short grace.
const FAST: &str = "[runner]\nsleep_time = 0\nretry_jitter = 0\nkill_grace = 1\n";

/// A task directory, its configuration and a state dir, all in one temp dir.
pub struct Chain {
    root: tempfile::TempDir,
    ini: Option<String>,
}

impl Chain {
    pub fn new() -> Chain {
        let root = tempfile::Builder::new()
            .prefix("runner-test-")
            .tempdir()
            .expect("tempdir");
        let chain = Chain {
            root,
            ini: Some(FAST.to_owned()),
        };
        fs::create_dir(chain.taskdir()).expect("mkdir tasks.d");
        fs::set_permissions(chain.taskdir(), fs::Permissions::from_mode(0o755)).expect("chmod");
        chain
    }

    /// Adds an executable `#!/bin/sh` task with `body`.
    pub fn task(self, file: &str, body: &str) -> Chain {
        self.file(file, &format!("#!/bin/sh\n{body}\n"), 0o755)
    }

    /// Adds a file to the task directory with an exact mode.
    pub fn file(self, file: &str, content: &str, mode: u32) -> Chain {
        let path = self.taskdir().join(file);
        fs::write(&path, content).expect("write task");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        self
    }

    /// Appends to the configuration (after the fast defaults).
    pub fn ini(mut self, text: &str) -> Chain {
        let ini = self.ini.get_or_insert_with(String::new);
        ini.push('\n');
        ini.push_str(text);
        ini.push('\n');
        self
    }

    /// Runs without any `-c`.
    pub fn without_config(mut self) -> Chain {
        self.ini = None;
        self
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    pub fn taskdir(&self) -> PathBuf {
        self.root.path().join("tasks.d")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.path().join("state")
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.path().join("runner.ini")
    }

    /// The file tasks append to through `$LOG`.
    pub fn log_path(&self) -> PathBuf {
        self.root.path().join("log")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Non-empty lines of the log.
    pub fn log_lines(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn write_config(&self) {
        if let Some(ini) = &self.ini {
            fs::write(self.config_path(), ini).expect("write ini");
            fs::set_permissions(self.config_path(), fs::Permissions::from_mode(0o644))
                .expect("chmod");
        }
    }

    /// `runner --state-dir S [-c INI] ARGS... TASKDIR`, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        self.write_config();
        let mut cmd = runner();
        cmd.arg("--state-dir").arg(self.state_dir());
        if self.ini.is_some() {
            cmd.arg("-c").arg(self.config_path());
        }
        cmd.args(args).arg(self.taskdir());
        cmd.env("LOG", self.log_path()).current_dir(self.path());
        cmd
    }

    /// Starts the chain in the background, its output discarded.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn runner")
    }

    /// Starts the chain in the background, its stderr (runner's log) into `name` in the
    /// test directory, so that a test can wait for what runner says it is doing.
    pub fn spawn_logged(&self, args: &[&str], name: &str) -> std::process::Child {
        let log = std::fs::File::create(self.path().join(name)).expect("create log");
        self.command(args)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn runner")
    }

    /// The text of `name` in the test directory, empty while it does not exist.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path().join(name)).unwrap_or_default()
    }

    /// Runs the chain to its end.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::of(self.command(args))
    }

    /// Runs `runner ARGS...` with this chain's state dir and config file, no TASKDIR.
    pub fn runner(&self, args: &[&str]) -> Run {
        self.write_config();
        let mut cmd = runner();
        cmd.arg("--state-dir").arg(self.state_dir());
        cmd.args(args)
            .env("LOG", self.log_path())
            .current_dir(self.path());
        Run::of(cmd)
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        if std::env::var_os("RUNNER_TEST_KEEP").is_some() {
            let kept = std::mem::replace(&mut self.root, tempfile::tempdir().expect("tempdir"));
            eprintln!("kept test dir {}", kept.keep().display());
        }
    }
}

/// The binary under test.
pub fn runner() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
    cmd.env_remove("RUNNER_STATE_DIR")
        .env_remove("RUNNER_DATABASE")
        .env_remove("RUST_LOG");
    cmd
}

/// A finished invocation.
pub struct Run {
    pub argv: String,
    pub output: Output,
    pub elapsed: Duration,
}

impl Run {
    pub fn of(mut cmd: Command) -> Run {
        let argv = format!("{cmd:?}");
        let start = Instant::now();
        let output = cmd.output().expect("spawn runner");
        Run {
            argv,
            output,
            elapsed: start.elapsed(),
        }
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    fn explain(&self) -> String {
        format!(
            "argv: {}\nstatus: {:?}\n--- stdout\n{}--- stderr\n{}---",
            self.argv,
            self.output.status,
            self.stdout(),
            self.stderr()
        )
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code(),
            Some(code),
            "unexpected exit code\n{}",
            self.explain()
        );
        assert!(
            !self.stderr().contains("panicked"),
            "runner panicked\n{}",
            self.explain()
        );
        self
    }

    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Run {
        assert!(
            self.stderr().contains(needle),
            "stderr lacks {needle:?}\n{}",
            self.explain()
        );
        self
    }

    #[track_caller]
    pub fn assert_stdout_contains(&self, needle: &str) -> &Run {
        assert!(
            self.stdout().contains(needle),
            "stdout lacks {needle:?}\n{}",
            self.explain()
        );
        self
    }
}

/// Polls `check` until it holds or `limit` passes; returns whether it held.
pub fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` is a live process (a zombie waiting for a reaper counts as dead).
pub fn is_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the parenthesised command name.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.trim_start().chars().next());
            !matches!(state, Some('Z' | 'X'))
        }
        Err(_) => false,
    }
}

/// Reads a pid a task wrote into `path`, waiting for it to appear.
pub fn read_pid(path: &Path) -> i32 {
    let mut pid = None;
    let found = wait_for(Duration::from_secs(20), || {
        pid = fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        pid.is_some()
    });
    assert!(found, "no pid appeared in {}", path.display());
    pid.expect("pid")
}

/// Whether the tests run as root (CI does); permission checks only apply to root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

impl Chain {
    /// `runner runs ARGS... --format json`, parsed.
    pub fn runs_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["runs"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--format", "json"]);
        let run = self.runner(&all);
        run.assert_code(0);
        serde_json::from_str(&run.stdout()).expect("runs prints JSON")
    }

    /// The newest recorded run, as `runs show` prints it.
    pub fn last_run(&self) -> serde_json::Value {
        let list = self.runs_json(&["list", "--limit", "1"]);
        let id = list[0]["run_id"]
            .as_str()
            .expect("a run was recorded")
            .to_owned();
        self.runs_json(&["show", &id])
    }
}

/// A daemon configuration in a temp dir and the daemon process running it.
pub struct Daemon {
    root: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl Daemon {
    /// Writes `files` (relative path, content) under the config directory.
    pub fn new(files: &[(&str, &str)]) -> Daemon {
        let root = tempfile::Builder::new()
            .prefix("runner-daemon-")
            .tempdir()
            .expect("tempdir");
        for (path, content) in files {
            let path = root.path().join("etc").join(path);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(
                &path,
                content.replace("@ROOT@", &root.path().display().to_string()),
            )
            .expect("write config");
        }
        Daemon { root, child: None }
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    pub fn config_dir(&self) -> PathBuf {
        self.root.path().join("etc")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.path().join("state")
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.path().join("daemon.log")
    }

    pub fn daemon_log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `runner --state-dir S ARGS...`, to completion.
    pub fn runner(&self, args: &[&str]) -> Run {
        let mut cmd = runner();
        cmd.arg("--state-dir").arg(self.state_dir()).args(args);
        Run::of(cmd)
    }

    /// Starts `runner daemon --config CONFIG` (a path relative to the config directory,
    /// or the directory itself for "").
    pub fn start(&mut self, config: &str) {
        self.start_with_env(config, &[]);
    }

    /// Starts the daemon with extra environment variables.
    pub fn start_with_env(&mut self, config: &str, env: &[(&str, PathBuf)]) {
        let mut cmd = runner();
        for (key, value) in env {
            cmd.env(key, value);
        }
        self.start_command(config, cmd);
    }

    /// Starts the daemon with a soft limit of `soft` open files, as a service manager
    /// would set it (systemd's default is 1024); the hard limit is left as it is.
    pub fn start_with_open_files(&mut self, config: &str, soft: u64) {
        use std::os::unix::process::CommandExt;
        let mut cmd = runner();
        // SAFETY: the closure makes two system calls on its own stack memory; nothing
        // in it allocates or takes a lock between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let mut limit = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                limit.rlim_cur = soft.min(limit.rlim_max);
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.start_command(config, cmd);
    }

    fn start_command(&mut self, config: &str, mut cmd: Command) {
        let log = fs::File::create(self.log_path()).expect("log");
        cmd.arg("--state-dir")
            .arg(self.state_dir())
            .args(["-v", "daemon", "--config"])
            .arg(self.config_dir().join(config))
            .stdout(std::process::Stdio::null())
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn daemon"));
        let started = wait_for(Duration::from_secs(20), || {
            self.daemon_log().contains("daemon started") || self.daemon_log().contains("error")
        });
        assert!(started, "daemon did not start:\n{}", self.daemon_log());
        assert!(
            self.daemon_log().contains("daemon started"),
            "{}",
            self.daemon_log()
        );
    }

    /// The daemon's pid.
    pub fn child_pid(&self) -> u32 {
        self.child.as_ref().expect("started").id()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = self.child.as_ref().expect("started").id() as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("signal");
    }

    /// Waits for the daemon to exit and returns its exit code.
    pub fn wait(&mut self) -> Option<i32> {
        let mut child = self.child.take().expect("started");
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status.code();
            }
            if Instant::now() > end {
                let _ = child.kill();
                panic!("daemon did not stop:\n{}", self.daemon_log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every recorded run, newest first.
    pub fn runs(&self) -> Vec<serde_json::Value> {
        let run = self.runner(&["runs", "list", "--limit", "100000", "--format", "json"]);
        run.assert_code(0);
        let list: serde_json::Value = serde_json::from_str(&run.stdout()).expect("json");
        list.as_array().expect("array").clone()
    }

    /// Triggers a run of `job` with `runner trigger` and waits for it to finish.
    pub fn trigger_and_wait(&self, job: &str) -> serde_json::Value {
        let before = self.finished_runs(job).len();
        self.runner(&["trigger", job]).assert_code(0);
        self.wait_runs(job, before + 1).remove(0)
    }

    /// Waits until `job` has `count` finished runs and returns them, newest first.
    pub fn wait_runs(&self, job: &str, count: usize) -> Vec<serde_json::Value> {
        let done = wait_for(Duration::from_secs(20), || {
            self.finished_runs(job).len() >= count
        });
        assert!(
            done,
            "job {job} did not finish {count} run(s):\n{}",
            self.daemon_log()
        );
        self.finished_runs(job)
    }

    /// Reads a pid that a run wrote into `name` under the test directory.
    pub fn pid(&self, name: &str) -> i32 {
        read_pid(&self.root.path().join(name))
    }

    /// Finished runs of `job`.
    pub fn finished_runs(&self, job: &str) -> Vec<serde_json::Value> {
        self.runs()
            .into_iter()
            .filter(|r| r["job_name"] == job && r["status"] != "running")
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Says that a test is skipped and why. cargo test hides a passing test's stderr, so
/// the reason also goes to the file named by `RUNNER_TEST_SKIPS` (scripts/test.sh sets
/// it and prints the file after the run): a skip is never silent.
pub fn skip(reason: impl std::fmt::Display) {
    let line = format!("SKIPPED: {reason}");
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("RUNNER_TEST_SKIPS") {
        use std::io::Write;
        if let Ok(mut file) = fs::OpenOptions::new().create(true).append(true).open(path) {
            // One write per line, so that tests skipping at once do not interleave.
            let _ = file.write_all(format!("{line}\n").as_bytes());
        }
    }
}
