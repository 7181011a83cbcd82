//! The command line of a process runner supervises, and starting it without copying
//! runner.
//!
//! A task must be listed with the guardian (see `pgroup.rs`) before its program runs,
//! or a `kill -9` of runner just after the start would leave it running for good. Only
//! the child can do that in time, between its creation and its `exec`. std's
//! `Command::spawn` allows code there (`pre_exec`) only by forking runner, and a fork
//! copies runner's page tables and makes both sides take copy-on-write faults: about a
//! quarter of a millisecond per task, more than everything else a trivial task costs.
//! So runner starts its processes the way glibc's `posix_spawn` does, with
//! `clone(CLONE_VM | CLONE_VFORK)` (`pgroup::spawn_process`): the child borrows runner's
//! memory on a small stack of its own, lists its group, and execs, while the spawning
//! thread waits. Everything the child needs (paths, argv, environment) is prepared
//! here, before, since the child may not allocate.
//!
//! [`Command`] is the subset of std's builder that runner's callers use; [`Child`] is
//! the started process, reaped by its supervisor.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ChildStdout, ExitStatus};
use std::sync::OnceLock;
use std::sync::atomic::AtomicI32;

use super::pgroup::{self, ExecPlan};

/// Where the child's stdout or stderr goes.
#[derive(Debug, Default)]
pub(crate) enum Stdio {
    /// runner's own descriptor.
    #[default]
    Inherit,
    /// A new pipe, read by runner.
    Piped,
    /// For stderr: where stdout goes, its pipe or its file (one for both streams).
    SameAsStdout,
    /// This file.
    File(File),
}

/// A program, its arguments, environment and working directory. Its stdin is always
/// `/dev/null` and it leads a process group of its own.
#[derive(Debug)]
pub(crate) struct Command {
    program: OsString,
    arg0: Option<OsString>,
    args: Vec<OsString>,
    clear_env: bool,
    env: BTreeMap<OsString, Option<OsString>>,
    cwd: Option<PathBuf>,
    pub(crate) stdout: Stdio,
    pub(crate) stderr: Stdio,
    /// Keep runner's copies of the pipes' write ends in the [`Child`] (see
    /// [`Child::write_ends`]) instead of closing them once the child runs.
    pub(crate) hold_write_ends: bool,
}

impl Command {
    /// Runs `program`: a path, or a name looked up in the child's PATH.
    pub(crate) fn new(program: impl AsRef<OsStr>) -> Command {
        Command {
            program: program.as_ref().to_owned(),
            arg0: None,
            args: Vec::new(),
            clear_env: false,
            env: BTreeMap::new(),
            cwd: None,
            stdout: Stdio::Inherit,
            stderr: Stdio::Inherit,
            hold_write_ends: false,
        }
    }

    /// The name the program sees as its `argv[0]` (the program by default).
    pub(crate) fn arg0(&mut self, arg0: impl AsRef<OsStr>) -> &mut Command {
        self.arg0 = Some(arg0.as_ref().to_owned());
        self
    }

    /// One more argument.
    pub(crate) fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// More arguments.
    pub(crate) fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets one variable of the child's environment.
    pub(crate) fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Command {
        self.env
            .insert(key.as_ref().to_owned(), Some(value.as_ref().to_owned()));
        self
    }

    /// Sets several variables.
    pub(crate) fn envs<I, K, V>(&mut self, vars: I) -> &mut Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (key, value) in vars {
            self.env(key, value);
        }
        self
    }

    /// Sets every variable of `vars`, keeping their strings as they are instead of
    /// copying them: the daemon hands over each run's environment this way.
    pub(crate) fn envs_owned(&mut self, vars: BTreeMap<String, String>) -> &mut Command {
        if self.env.is_empty() {
            // In order already: the map is built in one pass.
            self.env = vars
                .into_iter()
                .map(|(k, v)| (OsString::from(k), Some(OsString::from(v))))
                .collect();
        } else {
            for (key, value) in vars {
                self.env.insert(key.into(), Some(value.into()));
            }
        }
        self
    }

    /// Starts the child's environment empty instead of from runner's.
    pub(crate) fn env_clear(&mut self) -> &mut Command {
        self.clear_env = true;
        self.env.clear();
        self
    }

    /// The child's working directory.
    pub(crate) fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Command {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// The program as given.
    pub(crate) fn get_program(&self) -> &OsStr {
        &self.program
    }

    /// The arguments after `argv[0]`.
    pub(crate) fn get_args(&self) -> impl Iterator<Item = &OsStr> {
        self.args.iter().map(OsString::as_os_str)
    }

    /// The variables set on top of the inherited (or cleared) environment.
    pub(crate) fn get_envs(&self) -> impl Iterator<Item = (&OsStr, Option<&OsStr>)> {
        self.env.iter().map(|(k, v)| (k.as_os_str(), v.as_deref()))
    }

    /// Everything the child needs, as C strings.
    fn plan(&self) -> io::Result<Prepared> {
        let argv0 = self.arg0.as_ref().unwrap_or(&self.program);
        let argv = std::iter::once(argv0)
            .chain(&self.args)
            .map(|a| c_string(a.as_bytes().to_vec()))
            .collect::<io::Result<Vec<_>>>()?;
        // The variables the command sets, `KEY=value` and a NUL each, one after another in
        // one buffer: a daemon run sets some thirty, and a C string of its own for each
        // was most of the allocations of its start.
        let size = self
            .env
            .iter()
            .filter_map(|(k, v)| Some(k.len() + v.as_ref()?.len() + 2))
            .sum();
        let mut set = Vec::with_capacity(size);
        let mut starts = Vec::with_capacity(self.env.len());
        for (key, value) in &self.env {
            if let Some(value) = value {
                if key.as_bytes().contains(&0) || value.as_bytes().contains(&0) {
                    return Err(nul_error());
                }
                starts.push((key.as_os_str(), set.len()));
                set.extend_from_slice(key.as_bytes());
                set.push(b'=');
                set.extend_from_slice(value.as_bytes());
                set.push(0);
            }
        }
        // Filled: from here on the buffer never moves, and pointers into it stay valid.
        let base: *const libc::c_char = set.as_ptr().cast();
        // SAFETY: every start is an offset inside `set`, where a NUL-terminated entry begins.
        let at = |start: usize| unsafe { base.add(start) };
        // runner's variables that the command neither sets nor removes, merged with the
        // command's: both are sorted by name, and so is the result, as std has it.
        let inherited: &[(OsString, CString)] = if self.clear_env { &[] } else { inherited() };
        let mut envp = Vec::with_capacity(inherited.len() + starts.len() + 1);
        let mut changes = self.env.keys().peekable();
        let mut own = starts.iter().peekable();
        for (key, entry) in inherited {
            while let Some(&(_, start)) = own.next_if(|(k, _)| *k < key.as_os_str()) {
                envp.push(at(start));
            }
            while changes
                .next_if(|k| k.as_os_str() < key.as_os_str())
                .is_some()
            {}
            if changes.peek().is_none_or(|k| *k != key) {
                envp.push(entry.as_ptr());
            }
        }
        envp.extend(own.map(|&(_, start)| at(start)));
        envp.push(std::ptr::null());
        let path = match self.env.get(OsStr::new("PATH")) {
            Some(Some(value)) => Some(value.as_bytes()),
            Some(None) => None,
            None => inherited
                .iter()
                .find(|(k, _)| k == "PATH")
                .map(|(_, entry)| &entry.as_bytes()[5..]),
        };
        let paths = self.candidates(path)?;
        let cwd = match &self.cwd {
            Some(dir) => Some(c_string(dir.as_os_str().as_bytes().to_vec())?),
            None => None,
        };
        Ok(Prepared {
            paths,
            argv,
            _set: set,
            envp,
            cwd,
        })
    }

    /// The paths the child tries in turn, as `execvp` would: the program itself when it
    /// names a path, else the program in each directory of the child's PATH
    /// (`/bin:/usr/bin` when it has none).
    fn candidates(&self, path: Option<&[u8]>) -> io::Result<Vec<CString>> {
        let program = self.program.as_bytes();
        if program.is_empty() {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        if program.contains(&b'/') {
            return Ok(vec![c_string(program.to_vec())?]);
        }
        path.unwrap_or(b"/bin:/usr/bin")
            .split(|b| *b == b':')
            .map(|dir| {
                let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
                let mut candidate = Vec::with_capacity(dir.len() + program.len() + 2);
                candidate.extend_from_slice(dir);
                candidate.push(b'/');
                candidate.extend_from_slice(program);
                c_string(candidate)
            })
            .collect()
    }
}

/// What [`Command::plan`] prepared: the C strings and the pointer array the child uses.
struct Prepared {
    paths: Vec<CString>,
    argv: Vec<CString>,
    /// The variables the command sets, `KEY=value` and a NUL each, which `envp` points
    /// into.
    _set: Vec<u8>,
    /// Null-terminated; points into `_set` and into [`inherited`].
    envp: Vec<*const libc::c_char>,
    cwd: Option<CString>,
}

/// runner's own environment as `KEY=value` strings sorted by name, read once: runner
/// never changes it, and copying it for every task was a good part of a task's cost.
fn inherited() -> &'static [(OsString, CString)] {
    static ENV: OnceLock<Vec<(OsString, CString)>> = OnceLock::new();
    ENV.get_or_init(|| {
        let vars: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
        vars.into_iter()
            .filter_map(|(k, v)| Some((k.clone(), pair(&k, &v).ok()?)))
            .collect()
    })
}

/// `key=value` as a C string.
fn pair(key: &OsStr, value: &OsStr) -> io::Result<CString> {
    let mut bytes = Vec::with_capacity(key.len() + value.len() + 2);
    bytes.extend_from_slice(key.as_bytes());
    bytes.push(b'=');
    bytes.extend_from_slice(value.as_bytes());
    c_string(bytes)
}

fn c_string(bytes: Vec<u8>) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| nul_error())
}

fn nul_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "a NUL byte in a program, argument or environment variable",
    )
}

/// `/dev/null`, opened once for every child's stdin.
fn dev_null() -> io::Result<&'static OwnedFd> {
    static NULL: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = NULL.get() {
        return Ok(fd);
    }
    let file = File::open("/dev/null")?;
    Ok(NULL.get_or_init(|| OwnedFd::from(file)))
}

/// A started process, waited for by whoever started it.
#[derive(Debug)]
pub(crate) struct Child {
    pid: i32,
    /// Its pidfd, when its clone made one (see [`pgroup::exit_fd`]).
    pub(crate) pidfd: Option<OwnedFd>,
    /// The read end of its stdout pipe, when piped.
    pub(crate) stdout: Option<ChildStdout>,
    /// The read end of its stderr pipe, when piped.
    pub(crate) stderr: Option<ChildStderr>,
    /// runner's copies of the write ends of those pipes, when the command asked to hold
    /// them ([`Command::hold_write_ends`]): while they are open the pipes never reach
    /// end-of-file, so whoever holds them must read what is ready, not to the end, and
    /// drop them once the child is reaped.
    pub(crate) write_ends: Vec<OwnedFd>,
    status: Option<ExitStatus>,
}

impl Child {
    /// Its pid.
    pub(crate) fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Reaps it if it has exited.
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = pgroup::wait_for(self.pid, false)?.map(ExitStatus::from_raw);
        }
        Ok(self.status)
    }

    /// Waits for it to exit and reaps it.
    pub(crate) fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        match pgroup::wait_for(self.pid, true)? {
            Some(raw) => {
                let status = ExitStatus::from_raw(raw);
                self.status = Some(status);
                Ok(status)
            }
            None => Err(io::Error::other("the process was not reaped")),
        }
    }
}

/// Starts `cmd` with stdin from `/dev/null`, leading a new process group that the child
/// itself lists with the guardian in `listing` (a guardian's slot, when there is one)
/// and, as a leader, in `leader` (the reaper's slot) before it execs. Returns once the
/// program runs, or with the reason it could not.
pub(crate) fn spawn(
    cmd: &Command,
    listing: Option<&AtomicI32>,
    leader: Option<&AtomicI32>,
) -> io::Result<Child> {
    let prepared = cmd.plan()?;
    let plan = ExecPlan {
        paths: &prepared.paths,
        argv: &prepared.argv,
        envp: &prepared.envp,
        cwd: prepared.cwd.as_deref(),
    };
    let null = dev_null()?;
    let (stdout_read, stdout_fd) = target(&cmd.stdout)?;
    let (stderr_read, stderr_fd) = target(&cmd.stderr)?;
    // The descriptor a stream gets: its pipe's write end, or the file it was given.
    let fd_of = |made: &Option<OwnedFd>, stdio: &Stdio| {
        made.as_ref().map(|fd| fd.as_raw_fd()).or(match stdio {
            Stdio::File(f) => Some(f.as_raw_fd()),
            _ => None,
        })
    };
    let stdout = fd_of(&stdout_fd, &cmd.stdout);
    let stderr = match &cmd.stderr {
        Stdio::SameAsStdout => stdout,
        other => fd_of(&stderr_fd, other),
    };
    let stdio = [Some(null.as_raw_fd()), stdout, stderr];
    let (pid, pidfd) = pgroup::spawn_process(&plan, stdio, listing, leader)?;
    // The child has exec'd (or failed): runner's copies of the write ends go, unless
    // they were asked for.
    let write_ends = if cmd.hold_write_ends {
        [stdout_fd, stderr_fd].into_iter().flatten().collect()
    } else {
        drop(stdout_fd);
        drop(stderr_fd);
        Vec::new()
    };
    Ok(Child {
        pid,
        pidfd,
        stdout: stdout_read.map(ChildStdout::from),
        stderr: stderr_read.map(ChildStderr::from),
        write_ends,
        status: None,
    })
}

/// For a piped stream: the read end (runner's) and the write end (the child's).
fn target(stdio: &Stdio) -> io::Result<(Option<OwnedFd>, Option<OwnedFd>)> {
    match stdio {
        Stdio::Piped => {
            let (read, write) = pgroup::pipe()?;
            Ok((Some(read), Some(write)))
        }
        _ => Ok((None, None)),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn the_child_lists_its_group_before_its_program_runs() {
        // Nothing but the child writes to this "guardian" slot and this reaper's slot,
        // and spawn returns only once the program runs: both listings must already be
        // there, naming the child, which leads its own group.
        let slot = AtomicI32::new(-1);
        let leader = AtomicI32::new(-1);
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "exec sleep 5"]);
        let mut child = spawn(&cmd, Some(&slot), Some(&leader)).expect("spawn");
        let pid = child.id() as i32;
        assert_eq!(slot.load(std::sync::atomic::Ordering::Acquire), pid);
        assert_eq!(leader.load(std::sync::atomic::Ordering::Acquire), pid);
        assert_eq!(
            nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid))).ok(),
            Some(nix::unistd::Pid::from_raw(pid))
        );
        crate::exec::pgroup::signal_pid(pid, nix::sys::signal::Signal::SIGKILL);
        assert!(child.wait().expect("wait").signal().is_some());
    }

    #[test]
    fn a_failed_start_is_the_error_of_the_exec_or_chdir() {
        let mut cmd = Command::new("/nonexistent/program");
        cmd.arg("x");
        let err = spawn(&cmd, None, None).expect_err("no such program");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let mut cmd = Command::new("/bin/true");
        cmd.current_dir("/nonexistent/dir");
        assert_eq!(
            spawn(&cmd, None, None)
                .expect_err("no such directory")
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn a_child_that_listed_itself_and_could_not_exec_is_taken_back() {
        let slot = AtomicI32::new(-1);
        let cmd = Command::new("/nonexistent/program");
        spawn(&cmd, Some(&slot), None).expect_err("no such program");
        // Back to reserved: still its owner's, naming no group.
        assert_eq!(slot.load(std::sync::atomic::Ordering::Acquire), -1);
    }

    #[test]
    fn an_ignored_signal_stays_ignored_and_sigpipe_is_at_its_default() {
        // The child resets only the signals runner handles; what runner's own parent had
        // ignored stays ignored for the program, as with std, and SIGPIPE (which std
        // ignores in runner) is back at its default.
        // SAFETY: setting a disposition; restored below.
        let old = unsafe { libc::signal(libc::SIGUSR2, libc::SIG_IGN) };
        let dir = tempfile::tempdir().expect("tempdir");
        let out = File::create(dir.path().join("out")).expect("out");
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "grep '^SigIgn:' /proc/self/status"]);
        cmd.stdout = Stdio::File(out);
        let mut child = spawn(&cmd, None, None).expect("spawn");
        let status = child.wait().expect("wait");
        // SAFETY: as above.
        unsafe { libc::signal(libc::SIGUSR2, old) };
        assert!(status.success());
        let text = std::fs::read_to_string(dir.path().join("out")).expect("read");
        let ignored = text
            .trim()
            .strip_prefix("SigIgn:")
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .unwrap_or_else(|| panic!("no SigIgn in {text:?}"));
        let bit = |sig: libc::c_int| 1u64 << (sig - 1);
        assert_ne!(ignored & bit(libc::SIGUSR2), 0, "{text}");
        assert_eq!(ignored & bit(libc::SIGPIPE), 0, "{text}");
    }

    #[test]
    fn argv_environment_cwd_and_path_search_reach_the_program() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = File::create(dir.path().join("out")).expect("out");
        let mut cmd = Command::new("sh");
        cmd.arg0("named")
            .args([
                "-c",
                "echo \"$0 $GIVEN ${HOME-unset} $(pwd)\"; head -c 6 /proc/$$/cmdline",
                "one",
            ])
            .env_clear()
            .env("GIVEN", "yes")
            .env("PATH", "/usr/bin:/bin")
            .current_dir(dir.path());
        cmd.stdout = Stdio::File(out);
        let mut child = spawn(&cmd, None, None).expect("spawn");
        assert!(child.wait().expect("wait").success());
        let text = std::fs::read_to_string(dir.path().join("out")).expect("read");
        let cwd = dir.path().canonicalize().expect("canonical");
        assert_eq!(text, format!("one yes unset {}\nnamed\0", cwd.display()));
    }

    #[test]
    fn the_environment_is_runners_with_the_commands_changes_sorted() {
        let mut cmd = Command::new("/usr/bin/env");
        cmd.env("PATH", "/bin:/usr/bin")
            .env("AAA_RUNNER_TEST", "first")
            .env("zzz_runner_test", "last");
        cmd.stdout = Stdio::Piped;
        let mut child = spawn(&cmd, None, None).expect("spawn");
        let mut out = String::new();
        child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .expect("read");
        assert!(child.wait().expect("wait").success());
        let lines: Vec<&str> = out.lines().collect();
        let names: Vec<&str> = lines
            .iter()
            .map(|l| l.split('=').next().unwrap_or(""))
            .collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "sorted by name");
        assert!(lines.contains(&"AAA_RUNNER_TEST=first"));
        assert!(lines.contains(&"zzz_runner_test=last"));
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("PATH="))
                .collect::<Vec<_>>(),
            [&"PATH=/bin:/usr/bin"]
        );
        // Everything else of runner's is there as it was.
        for (key, entry) in inherited() {
            let entry = entry.to_string_lossy();
            if key != "PATH" && !entry.contains('\n') {
                assert!(lines.contains(&entry.as_ref()), "{entry} missing");
            }
        }
    }

    #[test]
    fn a_piped_stream_ends_when_the_program_does() {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "echo out; echo err >&2"]);
        cmd.stdout = Stdio::Piped;
        cmd.stderr = Stdio::Piped;
        let mut child = spawn(&cmd, None, None).expect("spawn");
        let mut out = String::new();
        child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .expect("read");
        let mut err = String::new();
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut err)
            .expect("read");
        assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"));
        assert!(child.wait().expect("wait").success());
    }
}
