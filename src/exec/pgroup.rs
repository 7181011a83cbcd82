//! Process groups: signalling a task's whole tree, and the guardian that cleans up when
//! runner itself is killed.
//!
//! This is the one file with `unsafe` in the crate. Each task runs in its own process
//! group, so one `kill(-pgid, sig)` reaches the task and everything it started (unless a
//! child deliberately left the group with `setsid`).
//!
//! `PR_SET_PDEATHSIG` is not enough for "a `kill -9` of runner leaves no task behind": it
//! only reaches the direct child, and it fires when the spawning *thread* exits, which
//! with parallel tasks is not runner's death. Instead, a tiny forked guardian process
//! holds the read end of a pipe, and shares with runner a table (see [`Table`]) of the
//! groups runner starts and has not reaped yet. When the pipe reaches end-of-file, runner
//! is gone (however it died): the guardian sends SIGTERM to every group still listed,
//! waits the grace time, sends SIGKILL, removes runner's scratch directory (which a
//! `kill -9` would otherwise leak) and exits.
//!
//! A group is not all of a task: a child that calls `setsid` (or a daemon that double
//! forks into a new session) leaves it, and once runner is dead nothing links it to the
//! task any more. So every attempt also carries a mark in its environment,
//! [`MARK_VAR`]`=NONCE-SEQ` (the nonce random per guardian, the sequence number per
//! attempt; after the marks of enclosing runners, comma-separated), which its
//! descendants inherit whatever group or session they move to. The live marks are
//! listed in the same table; when runner dies the guardian also signals every process whose `/proc/PID/environ` carries a live mark, and sweeps again
//! after the SIGKILL until no such process is left. A kept leftover's attempt is
//! forgotten when the attempt ends, so it survives runner as it always did.
//!
//! The other raw pieces of supervision live here too: becoming a child subreaper,
//! reaping one orphan, pidfds of any process, and the relay that keeps copying a kept
//! leftover's output once runner has exited.

use std::cell::Cell;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::spawn::{Child, Command};

/// The process group of one task attempt; its id is the leader's pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessGroup(i32);

impl ProcessGroup {
    /// The group led by `child`, which leads its own (see `spawn.rs`).
    pub(crate) fn of(child: &Child) -> ProcessGroup {
        // Pids fit in i32 on every Unix; std hands them out as u32.
        ProcessGroup(child.id() as i32)
    }

    /// The group id.
    pub(crate) fn id(self) -> i32 {
        self.0
    }

    /// Sends `sig` to every process in the group. A group that is already gone is not an
    /// error: the caller wanted it to stop, and it has.
    pub(crate) fn signal(self, sig: Signal) -> io::Result<()> {
        match killpg(Pid::from_raw(self.0), sig) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(e) => Err(io::Error::from(e)),
        }
    }
}

/// A descriptor that becomes readable when `child` exits (a pidfd, Linux 5.3 and
/// later), so one `poll` can wait for the exit and for output at once. `None` on older
/// kernels; callers then poll with short sleeps.
pub(crate) fn exit_fd(child: &mut Child) -> Option<OwnedFd> {
    // The one its clone made, if the kernel made one; else one opened now. The child is
    // not reaped yet, so its pid cannot have been reused.
    child
        .pidfd
        .take()
        .or_else(|| pidfd(i32::try_from(child.id()).ok()?))
}

/// A pidfd of any process: readable once it has exited. The caller must know that
/// `pid` still names the process it means (it saw it in the same scan, just now).
pub(crate) fn pidfd(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    let fd = RawFd::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the descriptor was just created and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The time since boot in the clock ticks of `/proc/PID/stat`'s start time, which the
/// kernel takes from the same clock (`CLOCK_BOOTTIME`, in a time namespace too) and
/// rounds down the same way: a process created between two readings started in the
/// ticks between them. `None` if the clock or the tick rate cannot be read.
pub(crate) fn boot_ticks() -> Option<u64> {
    static TICK_NS: OnceLock<u64> = OnceLock::new();
    let tick = *TICK_NS.get_or_init(|| {
        // SAFETY: sysconf only reads a constant.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        u64::try_from(hz)
            .ok()
            .filter(|hz| *hz > 0 && 1_000_000_000 % hz == 0)
            .map_or(0, |hz| 1_000_000_000 / hz)
    });
    if tick == 0 {
        return None;
    }
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a local timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) } != 0 {
        return None;
    }
    let ns = u64::try_from(now.tv_sec).ok()? * 1_000_000_000 + u64::try_from(now.tv_nsec).ok()?;
    Some(ns / tick)
}

/// Whether any process (a zombie included) is left in group `pgid`.
pub(crate) fn group_exists(pgid: i32) -> bool {
    !matches!(killpg(Pid::from_raw(pgid), None), Err(Errno::ESRCH))
}

/// Sends `sig` to one process; one that is already gone is not an error.
pub(crate) fn signal_pid(pid: i32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid), sig);
}

/// Makes this process a child subreaper: orphans of its descendants become its children
/// (instead of init's), so runner sees them, reaps them, and can stop them.
pub(crate) fn become_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)
}

/// Writes a byte to `wake` at each SIGCHLD, unless it tells of the exit of one of
/// `leaders` (see `reaper.rs`; only the first `used` slots may hold one): the thread
/// reading `wake` reaps the orphans.
pub(crate) fn wake_on_sigchld(
    wake: std::os::unix::net::UnixStream,
    leaders: &'static [AtomicI32],
    used: &'static AtomicUsize,
) -> io::Result<()> {
    wake.set_nonblocking(true)?;
    let fd = wake.as_raw_fd();
    // SAFETY: the handler only reads its siginfo and atomics, and calls `send` (which is
    // async-signal-safe) on a socket it owns from here on: `wake` is kept open for the
    // life of the process by the handler's closure.
    unsafe {
        signal_hook_registry::register_sigaction(libc::SIGCHLD, move |info| {
            let _keep = &wake;
            let exited = matches!(
                info.si_code,
                libc::CLD_EXITED | libc::CLD_KILLED | libc::CLD_DUMPED
            );
            let pid = info.si_pid();
            let listed = &leaders[..used.load(Ordering::Acquire).min(leaders.len())];
            if exited && pid > 0 && listed.iter().any(|c| c.load(Ordering::Relaxed) == pid) {
                return;
            }
            let byte = [b'X'];
            libc::send(fd, byte.as_ptr().cast(), 1, libc::MSG_DONTWAIT);
        })?;
    }
    Ok(())
}

/// Whether runner is PID 1 (of a container or a PID namespace): then every orphan of
/// the namespace is its child, and nobody else reaps them.
pub(crate) fn is_init() -> bool {
    std::process::id() == 1
}

/// Reaps `pid` if it is a zombie child of ours; returns whether it did.
pub(crate) fn reap(pid: i32) -> bool {
    matches!(
        waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)),
        Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..))
    )
}

/// Sends `sig` to every process but this one (as PID 1: the whole namespace).
pub(crate) fn signal_everyone(sig: Signal) {
    let _ = kill(Pid::from_raw(-1), sig);
}

/// Groups (and marks) the guardian can hold at once; runner never has more running than
/// `parallel`.
const GUARDIAN_SLOTS: usize = 1024;

/// The environment variable that marks every process of a task attempt (see the module
/// comment): `NONCE-SEQ`, a 16-digit hex nonce and a decimal sequence number.
pub(crate) const MARK_VAR: &str = "RUNNER_ATTEMPT_TOKEN";

/// The longest inherited mark list kept in front of an attempt's own mark (some 30
/// nested runners); a longer one is dropped rather than grown further.
const MARK_MAX_OUTER: usize = 1024;

/// `MARK_VAR=` as bytes, for the guardian's matching (it cannot allocate).
const MARK_PREFIX: &[u8] = b"RUNNER_ATTEMPT_TOKEN=";

/// How many times the guardian sweeps for marked processes after the SIGKILL: each sweep
/// kills what the previous one missed (a process forked while the sweep ran).
const KILL_SWEEPS: usize = 200;

/// The mark of one attempt, handed back to [`Guardian::unmark`] when it ended: the slot
/// of the table that lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark(usize);

/// A slot of the guardian's table of groups, reserved for one attempt before its spawn;
/// the child writes its pid there (its group's id) before it execs. Handed back to
/// [`Guardian::forget`] once runner has reaped the group.
#[derive(Debug)]
pub(crate) struct GroupSlot<'a> {
    cell: &'a AtomicI32,
}

impl GroupSlot<'_> {
    /// The cell the child of [`spawn_process`] stores its pid in.
    pub(crate) fn cell(&self) -> &AtomicI32 {
        self.cell
    }
}

/// What the guardian watches, in memory runner shares with it (`MAP_SHARED`, mapped
/// before the fork): the groups (pids, 0 when free, [`RESERVED`] between a reservation
/// and the child's store) and the marks' sequence numbers (0 when free). runner and its
/// spawning children write it with atomic stores; the guardian reads it once runner is
/// gone. No message per attempt goes through the pipe, so listing and forgetting an
/// attempt costs no system call and never wakes the guardian.
///
/// Reading it only after the end-of-file is as safe as the messages were: the pipe ends
/// when the last copy of its write end closes, and a child between its clone and its
/// exec holds one (close-on-exec), so every store that runner or a child made before it
/// died or exec'd is in the table by then.
#[repr(C)]
struct Table {
    groups: [AtomicI32; GUARDIAN_SLOTS],
    marks: [AtomicU32; GUARDIAN_SLOTS],
}

/// A group slot taken by a spawn under way, whose child has not stored its pid yet.
const RESERVED: i32 = -1;

/// The handle runner keeps on its guardian process. Dropping it (or runner dying) closes
/// the pipe, which tells the guardian to clean up whatever is still listed.
#[derive(Debug)]
pub(crate) struct Guardian {
    pipe: Option<File>,
    pid: i32,
    /// The table shared with the guardian; null without one.
    table: *const Table,
    /// The random half of every mark this guardian knows.
    nonce: u64,
    /// The next attempt's sequence number.
    next: AtomicU32,
}

// SAFETY: the table is only accessed through atomics, and the mapping lives as long as
// the handle (it is unmapped in `drop`, once the guardian is reaped).
unsafe impl Send for Guardian {}
// SAFETY: as above.
unsafe impl Sync for Guardian {}

impl Drop for Guardian {
    /// Closes the pipe and reaps the guardian, which exits at once when no group is
    /// listed: left to init, it would be a zombie wherever PID 1 does not reap.
    fn drop(&mut self) {
        if self.pipe.take().is_some() {
            let _ = waitpid(Pid::from_raw(self.pid), None);
        }
        if !self.table.is_null() {
            // SAFETY: the mapping was made by `map_table` with this size, and nothing
            // refers to it any more (slots borrow the guardian, which is being dropped).
            unsafe {
                libc::munmap(self.table.cast_mut().cast(), std::mem::size_of::<Table>());
            }
        }
    }
}

impl Guardian {
    /// A guardian that does nothing, for commands that run no tasks.
    pub(crate) fn none() -> Guardian {
        Guardian {
            pipe: None,
            pid: 0,
            table: std::ptr::null(),
            nonce: 0,
            next: AtomicU32::new(1),
        }
    }

    /// Forks the guardian process; it removes `scratch` (if given) once runner is gone.
    /// On failure, runner carries on without one and says so.
    pub(crate) fn start(grace: Duration, scratch: Option<&Path>) -> Guardian {
        let scratch = scratch.and_then(|p| CString::new(p.as_os_str().as_bytes()).ok());
        let nonce = rand::random::<u64>();
        let started = map_table().and_then(|table| {
            // SAFETY: the mapping is fresh, zeroed and of the table's size.
            match fork_guardian(grace, scratch.as_ref(), nonce, unsafe { &*table }) {
                Ok(forked) => Ok((forked, table)),
                Err(e) => {
                    // SAFETY: nothing else has seen the mapping.
                    unsafe { libc::munmap(table.cast_mut().cast(), std::mem::size_of::<Table>()) };
                    Err(e)
                }
            }
        });
        match started {
            Ok(((pipe, pid), table)) => Guardian {
                pipe: Some(pipe),
                pid,
                table,
                nonce,
                next: AtomicU32::new(1),
            },
            Err(e) => {
                log::warn!(
                    "cannot start the guardian process ({e}); tasks may outlive a killed runner"
                );
                Guardian::none()
            }
        }
    }

    fn table(&self) -> Option<&Table> {
        // SAFETY: non-null only when mapped by `start`, unmapped only in `drop`.
        (!self.table.is_null()).then(|| unsafe { &*self.table })
    }

    /// Reserves the slot an attempt's group is listed in; its child fills it in before
    /// it execs. `None` without a guardian, or (with a warning) when the table is full.
    pub(crate) fn reserve(&self) -> Option<GroupSlot<'_>> {
        let table = self.table()?;
        let cell = table.groups.iter().find(|cell| {
            cell.compare_exchange(0, RESERVED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        });
        if cell.is_none() {
            log::warn!("the guardian's table is full; a task may outlive a killed runner");
        }
        cell.map(|cell| GroupSlot { cell })
    }

    /// Removes a group that runner has reaped itself (or whose spawn failed).
    pub(crate) fn forget(&self, slot: GroupSlot<'_>) {
        slot.cell.store(0, Ordering::Release);
    }

    /// Marks the environment of `cmd` as one attempt's and lists the mark, before the
    /// spawn: whatever the attempt starts, in whatever group or session, is then found
    /// should runner die. `None` without a guardian (nothing is added to `cmd`).
    ///
    /// A mark the command would inherit (runner runs inside another runner's task, or
    /// is a daemon's chain job) is kept in front of this one, comma-separated, so the
    /// outer guardian also finds what this attempt starts.
    pub(crate) fn mark(&self, cmd: &mut Command) -> Option<Mark> {
        let table = self.table()?;
        // 0 marks a free slot, so no attempt has the sequence number 0.
        let seq = loop {
            let seq = self.next.fetch_add(1, Ordering::Relaxed);
            if seq != 0 {
                break seq;
            }
        };
        let Some(slot) = table.marks.iter().position(|cell| {
            cell.compare_exchange(0, seq, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        }) else {
            log::warn!("the guardian's table is full; a task may outlive a killed runner");
            return None;
        };
        let own = format!("{:016x}-{seq}", self.nonce);
        let outer = cmd
            .get_envs()
            .find(|(key, _)| *key == MARK_VAR)
            .map(|(_, value)| value.map(std::ffi::OsStr::to_owned))
            .unwrap_or_else(inherited_mark)
            .and_then(|v| v.into_string().ok())
            .filter(|v| !v.is_empty() && v.len() <= MARK_MAX_OUTER);
        match outer {
            Some(outer) => cmd.env(MARK_VAR, format!("{outer},{own}")),
            None => cmd.env(MARK_VAR, own),
        };
        Some(Mark(slot))
    }

    /// Takes back a mark once its attempt has ended: what it left behind and runner
    /// kept is no longer the guardian's to stop.
    pub(crate) fn unmark(&self, mark: Mark) {
        if let Some(table) = self.table() {
            table.marks[mark.0].store(0, Ordering::Release);
        }
    }
}

/// The mark runner itself inherited, read once: runner never changes its environment,
/// and this was a scan of it under its lock for every process started.
fn inherited_mark() -> Option<std::ffi::OsString> {
    static MARK: std::sync::OnceLock<Option<std::ffi::OsString>> = std::sync::OnceLock::new();
    MARK.get_or_init(|| std::env::var_os(MARK_VAR)).clone()
}

/// The table shared with the guardian: anonymous shared memory, zeroed by the kernel.
fn map_table() -> io::Result<*const Table> {
    // SAFETY: a fresh anonymous mapping; no existing memory is touched.
    let table = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            std::mem::size_of::<Table>(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if table == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(table.cast_const().cast())
}

/// Stack of the child between `clone` and `exec`: it only makes a few system calls.
const CHILD_STACK: usize = 64 * 1024;

/// What the child of [`spawn_process`] needs, prepared by the parent: the child shares
/// runner's memory and may not allocate.
#[derive(Debug)]
pub(crate) struct ExecPlan<'a> {
    /// The paths to exec, tried in turn as `execvp` does.
    pub(crate) paths: &'a [CString],
    /// The arguments, `argv[0]` included.
    pub(crate) argv: &'a [CString],
    /// The whole environment, `KEY=value` each, null-terminated; every pointer is valid
    /// for the call.
    pub(crate) envp: &'a [*const libc::c_char],
    /// The working directory, if it changes.
    pub(crate) cwd: Option<&'a std::ffi::CStr>,
}

/// The child's arguments, pointers into the parent's suspended frame.
struct ChildArgs {
    paths: *const *const libc::c_char,
    path_count: usize,
    argv: *const *const libc::c_char,
    /// `/bin/sh`, a slot for the path, then `argv[1..]`: a file without `#!` is a shell
    /// script, as `execvp` has it.
    sh_argv: *mut *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    stdio: [RawFd; 3],
    /// The guardian's slot for the child's group, or null.
    listing: *const AtomicI32,
    /// The reaper's slot for the child's pid, or null.
    leader: *const AtomicI32,
    /// The signals to give back their default action (see [`Dispositions`]).
    dispositions: Dispositions,
    /// Set by the child as it starts: the parent sees it only if the child shares its
    /// memory (see [`SHARES_MEMORY`]).
    started: AtomicBool,
    /// The errno of a failure before or at the exec, stored by the child before it exits;
    /// 0 while there is none.
    errno: AtomicI32,
    /// The error pipe's write end, or -1 when the parent reads `errno` instead.
    error: RawFd,
    /// The limit on open files the child sets before it execs: the one runner was
    /// started with, when runner raised its own (see `limits.rs`).
    open_files: Option<libc::rlimit>,
}

/// Whether the child of a spawn shares runner's memory until it execs or exits, as
/// `CLONE_VM | CLONE_VFORK` promise: 0 until the first spawn tells, then 1 (yes) or 2
/// (no: valgrind runs the clone as a fork). When it does, the clone returns only once the
/// child has exec'd or exited, and a failure is read from `ChildArgs::errno`, as glibc's
/// `posix_spawn` does; otherwise (and for the first spawn, which finds out) from a
/// close-on-exec pipe, whose end-of-file is the exec. The pipe cost four system calls
/// per task.
static SHARES_MEMORY: AtomicU8 = AtomicU8::new(0);

/// Which signals the child of [`spawn_process`] must give back their default action
/// before it unblocks signals: those with one of runner's handlers, which would
/// otherwise run in the child, in runner's memory, should such a signal arrive before the
/// exec (the exec itself resets handled signals; only ignored ones stay ignored, as they
/// should). Bits by signal number.
#[derive(Debug, Clone, Copy)]
struct Dispositions {
    /// Signals seen with a handler: reset without asking.
    handled: u64,
    /// Signals runner may give a handler later (or only in some modes): asked, and reset
    /// when they have one.
    maybe: u64,
}

/// The signals runner's own code or std may handle; see [`dispositions`].
const MAYBE_HANDLED: [libc::c_int; 11] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGCHLD,
    libc::SIGALRM,
    libc::SIGWINCH,
    libc::SIGSEGV,
    libc::SIGBUS,
];

/// The signals handled now, read once (one `sigaction` per signal), and the ones runner's
/// code may handle later. Resetting every signal in each child, as it was done, cost some
/// seventy system calls per task; a handler installed after the first spawn for a signal
/// outside [`MAYBE_HANDLED`] (runner has none) would not be reset.
fn dispositions() -> Dispositions {
    static SEEN: OnceLock<u64> = OnceLock::new();
    let handled = *SEEN.get_or_init(|| {
        let mut handled = 0u64;
        for sig in 1..=libc::SIGRTMAX().min(64) {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            // SAFETY: sigaction only reads the disposition into a local struct.
            let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
            if unsafe { libc::sigaction(sig, std::ptr::null(), &mut current) } == 0
                && current.sa_sigaction != libc::SIG_DFL
                && current.sa_sigaction != libc::SIG_IGN
            {
                handled |= 1 << (sig - 1);
            }
        }
        handled
    });
    let maybe = MAYBE_HANDLED
        .iter()
        .fold(0u64, |bits, &sig| bits | 1 << (sig - 1));
    Dispositions {
        handled,
        maybe: maybe & !handled,
    }
}

/// Starts `plan` as a new process that leads its own process group, with `stdio`
/// (`None` keeps runner's descriptor) as fds 0-2, and returns its pid once it has exec'd.
/// Before the exec the child stores its pid in `listing` (a guardian's slot), so the
/// guardian knows the group before the program runs, and in `leader` (the reaper's slot,
/// see `reaper.rs`), so that its SIGCHLD is known for a leader's however soon it exits. A failure before or at the exec (a missing program, a
/// working directory that is gone) is returned as that error, the child reaped.
pub(crate) fn spawn_process(
    plan: &ExecPlan,
    stdio: [Option<RawFd>; 3],
    listing: Option<&AtomicI32>,
    leader: Option<&AtomicI32>,
) -> io::Result<(i32, Option<OwnedFd>)> {
    let paths: Vec<*const libc::c_char> = plan.paths.iter().map(|p| p.as_ptr()).collect();
    let argv: Vec<*const libc::c_char> = plan
        .argv
        .iter()
        .map(|a| a.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    let mut sh_argv: Vec<*const libc::c_char> = [c"/bin/sh".as_ptr(), std::ptr::null()]
        .into_iter()
        .chain(argv.iter().skip(1).copied())
        .collect();
    if plan.envp.last().is_none_or(|p| !p.is_null()) {
        return Err(io::Error::other(
            "the environment of a spawn is not null-terminated",
        ));
    }
    let error_pipe = match SHARES_MEMORY.load(Ordering::Relaxed) {
        1 => None,
        _ => Some(pipe()?),
    };
    let args = ChildArgs {
        paths: paths.as_ptr(),
        path_count: paths.len(),
        argv: argv.as_ptr(),
        sh_argv: sh_argv.as_mut_ptr(),
        envp: plan.envp.as_ptr(),
        cwd: plan.cwd.map_or(std::ptr::null(), |c| c.as_ptr()),
        stdio: stdio.map(|fd| fd.unwrap_or(-1)),
        listing: listing.map_or(std::ptr::null(), std::ptr::from_ref),
        leader: leader.map_or(std::ptr::null(), std::ptr::from_ref),
        dispositions: dispositions(),
        started: AtomicBool::new(false),
        errno: AtomicI32::new(0),
        error: error_pipe
            .as_ref()
            .map_or(-1, |(_, write)| write.as_raw_fd()),
        open_files: super::limits::for_children(),
    };
    // Not zeroed: the child only pushes onto it. Kept for the thread's next spawn:
    // allocating 64 KiB for each one made glibc sort its free lists every time.
    thread_local! {
        static STACK: Cell<Option<Box<[std::mem::MaybeUninit<u8>]>>> = const { Cell::new(None) };
    }
    // A thread whose locals are being dropped allocates one as before.
    let mut stack = STACK
        .try_with(Cell::take)
        .ok()
        .flatten()
        .unwrap_or_else(|| Box::new_uninit_slice(CHILD_STACK));
    // SAFETY: the stack is ours and outlives the child's use of it (the parent is
    // suspended until the child execs or exits); `args` and everything it points to live
    // in this frame until then. All signals are blocked around the clone so that none of
    // runner's handlers runs in the child, which shares runner's memory; the child resets
    // them (see `child_main`) before it unblocks.
    //
    // The clone also makes the child's pidfd (`CLONE_PIDFD`, Linux 5.2), which its
    // supervisor polls for the exit: a `pidfd_open` less for every process. A kernel
    // that refuses the flag (a seccomp filter may) is asked once more without it, and
    // not again; one that predates it ignores it and leaves `pidfd` at -1.
    let mut pidfd: libc::c_int = -1;
    let pid = unsafe {
        let top = stack.as_mut_ptr().add(CHILD_STACK);
        let top = top.sub(top as usize % 16);
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
        let arg = std::ptr::from_ref(&args).cast_mut().cast();
        let mut pid = -1;
        let mut refused = None;
        if !NO_CLONE_PIDFD.load(Ordering::Relaxed) {
            pid = libc::clone(
                child_main,
                top.cast(),
                flags | libc::CLONE_PIDFD,
                arg,
                &raw mut pidfd,
            );
            if pid < 0 {
                let e = io::Error::last_os_error();
                // Out of descriptors (or memory, or processes) is not a refusal of the
                // flag: this spawn goes without, and the next one asks again.
                let passing = matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EAGAIN)
                );
                if !passing {
                    NO_CLONE_PIDFD.store(true, Ordering::Relaxed);
                    refused = Some(e);
                }
                pidfd = -1;
            }
        }
        if pid < 0 {
            pid = libc::clone(child_main, top.cast(), flags, arg);
        }
        let clone_error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if let Some(e) = refused {
            log::debug!("clone with CLONE_PIDFD refused ({e}); pidfds come from pidfd_open");
        }
        if pid < 0 {
            return Err(clone_error);
        }
        pid
    };
    // SAFETY: a descriptor the clone just made for this process alone.
    let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
    // Under CLONE_VFORK the child has exec'd or exited by now; elsewhere (valgrind turns
    // the clone into a fork) the read waits for the exec to close the pipe.
    let errno = match error_pipe {
        None => args.errno.load(Ordering::Acquire),
        Some((error_read, error_write)) => {
            drop(error_write);
            let mut report = [0u8; 4];
            let n = loop {
                // SAFETY: reading into a stack buffer of the stated length from an owned fd.
                let n =
                    unsafe { libc::read(error_read.as_raw_fd(), report.as_mut_ptr().cast(), 4) };
                if n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                    break n;
                }
            };
            if SHARES_MEMORY.load(Ordering::Relaxed) == 0 {
                let shared = args.started.load(Ordering::Acquire);
                SHARES_MEMORY.store(if shared { 1 } else { 2 }, Ordering::Relaxed);
            }
            if n == 4 {
                i32::from_le_bytes(report)
            } else {
                0
            }
        }
    };
    // The child has exec'd or exited, or has a copy of its own: the stack is free.
    let _ = STACK.try_with(|kept| kept.set(Some(stack)));
    if errno != 0 {
        // The child may have listed itself before the exec failed: take it back before
        // the pid is free again, or the guardian could one day signal whatever group
        // reuses it. The slot stays reserved for its owner, who forgets it.
        if let Some(listing) = listing {
            listing.store(RESERVED, Ordering::Release);
        }
        let _ = wait_for(pid, true);
        return Err(io::Error::from_raw_os_error(errno));
    }
    Ok((pid, pidfd))
}

/// Set once a clone with `CLONE_PIDFD` was refused: later ones go without.
static NO_CLONE_PIDFD: AtomicBool = AtomicBool::new(false);

/// The child of [`spawn_process`], on its own stack in runner's memory, with every
/// signal blocked: resets the handlers, takes its group, stdio and working directory,
/// lists itself with the guardian, and execs. Only async-signal-safe calls, no
/// allocation; a failure is reported (see [`fail`]) and ends the child with 127.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `ChildArgs`, alive while the parent is suspended
    // (or copied with the whole memory when the clone became a fork); every call below is
    // async-signal-safe and works on descriptors and memory that `spawn_process` set up.
    unsafe {
        let args = &*arg.cast::<ChildArgs>();
        args.started.store(true, Ordering::Release);
        if let Some(leader) = args.leader.as_ref() {
            // Before anything that could end this child: its exit is a leader's.
            leader.store(libc::getpid(), Ordering::Release);
        }
        // runner's handlers must not run here, in its memory: back to the default.
        // What is ignored stays ignored across exec, as with std.
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        let mut current: libc::sigaction = std::mem::zeroed();
        let Dispositions { handled, maybe } = args.dispositions;
        for sig in 1..=64 {
            let bit = 1u64 << (sig - 1);
            let reset = handled & bit != 0
                || (maybe & bit != 0
                    && libc::sigaction(sig, std::ptr::null(), &mut current) == 0
                    && current.sa_sigaction != libc::SIG_DFL
                    && current.sa_sigaction != libc::SIG_IGN);
            if reset {
                libc::sigaction(sig, &default, std::ptr::null_mut());
            }
        }
        let fail = |errno: libc::c_int| fail(args, errno);
        if libc::setpgid(0, 0) != 0 {
            fail(*libc::__errno_location());
        }
        for (target, &source) in args.stdio.iter().enumerate() {
            let target = target as RawFd;
            if source < 0 {
                continue;
            }
            // dup2 onto itself would keep close-on-exec set.
            let ok = if source == target {
                libc::fcntl(target, libc::F_SETFD, 0) == 0
            } else {
                libc::dup2(source, target) == target
            };
            if !ok {
                fail(*libc::__errno_location());
            }
        }
        if !args.cwd.is_null() && libc::chdir(args.cwd) != 0 {
            fail(*libc::__errno_location());
        }
        if let Some(listing) = args.listing.as_ref() {
            // Shared memory, which the guardian reads once runner is gone: this child
            // holds a copy of the guardian's pipe until it execs, so that is after this.
            listing.store(libc::getpid(), Ordering::Release);
        }
        // The program sees the limit runner was started with, not the one it raised.
        // Lowering a soft limit cannot be refused.
        if let Some(open_files) = args.open_files.as_ref() {
            libc::setrlimit(libc::RLIMIT_NOFILE, open_files);
        }
        // std gives programs SIGPIPE at its default (runner ignores it).
        libc::sigaction(libc::SIGPIPE, &default, std::ptr::null_mut());
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());

        let mut error = libc::ENOENT;
        let mut denied = false;
        for i in 0..args.path_count {
            let path = *args.paths.add(i);
            libc::execve(path, args.argv, args.envp);
            let e = *libc::__errno_location();
            if e == libc::ENOEXEC {
                *args.sh_argv.add(1) = path;
                libc::execve(c"/bin/sh".as_ptr(), args.sh_argv.cast_const(), args.envp);
                error = *libc::__errno_location();
                break;
            }
            match e {
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                other => {
                    error = other;
                    denied = false;
                    break;
                }
            }
        }
        if denied {
            error = libc::EACCES;
        }
        fail(error)
    }
}

/// Reports `errno` (in the parent's memory, and on the error pipe when there is one)
/// and ends the child of [`spawn_process`].
///
/// # Safety
/// Only in that child: an atomic store, `write` and `_exit`.
unsafe fn fail(args: &ChildArgs, errno: libc::c_int) -> ! {
    // A failure with errno 0 would read as a success.
    let errno = if errno == 0 { libc::EINVAL } else { errno };
    args.errno.store(errno, Ordering::Release);
    // SAFETY: writing a stack buffer to the child's own descriptor, then exiting.
    unsafe {
        if args.error >= 0 {
            write_all(args.error, &errno.to_le_bytes());
        }
        libc::_exit(127)
    }
}

/// A pipe, both ends close-on-exec: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reaps child `pid`: its raw wait status, or `None` when it still runs and `block`
/// is false.
pub(crate) fn wait_for(pid: i32, block: bool) -> io::Result<Option<i32>> {
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into a local int.
        let got = unsafe { libc::waitpid(pid, &mut status, flags) };
        if got == pid {
            return Ok(Some(status));
        }
        if got == 0 {
            return Ok(None);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Writes `bytes` (at most PIPE_BUF, so in one piece) to `fd`, again after a signal.
///
/// # Safety
/// Async-signal-safe: only `write`.
unsafe fn write_all(fd: RawFd, bytes: &[u8]) {
    loop {
        // SAFETY: writing from a valid slice to a descriptor the caller owns.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        // SAFETY: errno is thread-local and always readable.
        if n >= 0 || unsafe { *libc::__errno_location() } != libc::EINTR {
            return;
        }
    }
}

fn fork_guardian(
    grace: Duration,
    scratch: Option<&CString>,
    nonce: u64,
    table: &Table,
) -> io::Result<(File, i32)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let [read_end, write_end] = fds;
    // SAFETY: the child only calls async-signal-safe functions (see `guard`) and never
    // returns into Rust code that could touch state copied mid-update from other threads.
    match unsafe { libc::fork() } {
        -1 => {
            let err = io::Error::last_os_error();
            // SAFETY: both fds were just created by pipe2 and are owned here.
            unsafe {
                libc::close(read_end);
                libc::close(write_end);
            }
            Err(err)
        }
        0 => {
            // SAFETY: we are the freshly forked child; see `guard`.
            unsafe { guard(read_end, write_end, grace, scratch, nonce, table) }
        }
        pid => {
            super::reaper::add_helper(pid);
            // SAFETY: read_end is ours to close; write_end becomes owned by the File.
            unsafe {
                libc::close(read_end);
                Ok((File::from_raw_fd(write_end), pid))
            }
        }
    }
}

/// The guardian's whole life. Only async-signal-safe calls: no allocation, no locks.
///
/// # Safety
/// Must only be called in a freshly forked child.
unsafe fn guard(
    read_end: RawFd,
    write_end: RawFd,
    grace: Duration,
    scratch: Option<&CString>,
    nonce: u64,
    table: &Table,
) -> ! {
    // SAFETY: only async-signal-safe libc calls on descriptors and memory this freshly
    // forked process owns (see the function's contract).
    unsafe {
        libc::close(write_end);
        // Leave runner's process group, so that a Ctrl-C meant for runner does not end the
        // guardian before runner has had its say, and ignore the usual stop signals for the
        // same reason: the guardian ends when runner's end of the pipe closes.
        libc::setpgid(0, 0);
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGTSTP,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
        // Let go of runner's terminal, pipes, lock file and database: whoever waits for
        // runner's output or lock must not wait for the guardian too.
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
        }
        if libc::dup2(read_end, 3) == 3 {
            close_from(4);
        } else {
            libc::_exit(1);
        }

        // No process that started before the guardian can carry one of its marks.
        let (runner, since) = match stat_of(libc::AT_FDCWD, b"/proc/self") {
            Some((parent, start)) => (parent, start),
            None => (libc::getppid(), 0),
        };
        // runner writes nothing: the pipe only ends when runner is gone.
        let mut buf = [0u8; 64];
        loop {
            let n = libc::read(3, buf.as_mut_ptr().cast(), buf.len());
            if n == 0 {
                break;
            }
            if n < 0 && *libc::__errno_location() != libc::EINTR {
                break;
            }
        }
        let mut groups = [0i32; GUARDIAN_SLOTS];
        let mut count = 0usize;
        for cell in &table.groups {
            let pgid = cell.load(Ordering::Acquire);
            if pgid > 0 {
                groups[count] = pgid;
                count += 1;
            }
        }
        let mut marks = [0u32; GUARDIAN_SLOTS];
        let mut marked = 0usize;
        for cell in &table.marks {
            let seq = cell.load(Ordering::Acquire);
            if seq != 0 {
                marks[marked] = seq;
                marked += 1;
            }
        }
        if count > 0 || marked > 0 {
            let mut prefix = [0u8; 64];
            let prefix_len = mark_prefix(nonce, &mut prefix);
            let groups = &groups[..count];
            let marks = Marks {
                prefix: &prefix[..prefix_len],
                seqs: &marks[..marked],
                groups,
                since,
                runner,
            };
            // Runner's children (the guardian among them) are handed to its reaper as it
            // dies; give that a moment, so the reaper is known. Until then their parent
            // is still runner, which the sweep takes as a root too.
            for _ in 0..40 {
                if libc::getppid() != runner {
                    break;
                }
                pause_ms(5);
            }
            for &pgid in groups {
                libc::kill(-pgid, libc::SIGTERM);
                libc::kill(-pgid, libc::SIGCONT);
            }
            sweep(&marks, libc::SIGTERM);
            let start = Instant::now();
            // runner is gone, so its tasks' zombies are init's to reap: a group whose
            // members are all zombies still answers kill(-pgid, 0) until then, and the
            // guardian only ends its wait early, never late. A zombie has no
            // environment, so the sweep never counts one; it is looked for only once
            // the groups are gone, and then every 100 ms (a sweep reads /proc).
            while start.elapsed() < grace {
                let groups_gone = groups.iter().all(|&g| libc::kill(-g, 0) != 0);
                if groups_gone && sweep(&marks, 0) == 0 {
                    break;
                }
                pause_ms(if groups_gone { 100 } else { 20 });
            }
            for &pgid in groups {
                libc::kill(-pgid, libc::SIGKILL);
            }
            for _ in 0..KILL_SWEEPS {
                if sweep(&marks, libc::SIGKILL) == 0 {
                    break;
                }
                pause_ms(5);
            }
        }
        if let Some(scratch) = scratch {
            remove_flat_dir(scratch);
        }
        libc::_exit(0)
    }
}

/// The live marks of a guardian: `NONCE-` and the sequence numbers listed, and the
/// groups it signals as groups.
struct Marks<'a> {
    prefix: &'a [u8],
    seqs: &'a [u32],
    groups: &'a [i32],
    /// The guardian's own start (clock ticks after boot): older processes are skipped
    /// unread, which keeps a sweep cheap (reading the environment of a process that is
    /// busy mapping memory can take a good part of a second).
    since: u64,
    /// runner's pid: with the guardian's parent now, the roots of [`descends`].
    runner: libc::pid_t,
}

/// Writes `NONCE-` (the nonce in 16 hex digits, as [`Guardian::mark`] formats it) into
/// `out` and returns its length; no allocation.
fn mark_prefix(nonce: u64, out: &mut [u8; 64]) -> usize {
    let mut len = 0;
    for shift in (0..16).rev() {
        let digit = ((nonce >> (shift * 4)) & 0xf) as u8;
        out[len] = if digit < 10 {
            b'0' + digit
        } else {
            b'a' + digit - 10
        };
        len += 1;
    }
    out[len] = b'-';
    len + 1
}

/// Reads one process's environment and says whether it carries a live mark: an entry
/// `MARK_VAR=` whose comma-separated list holds `NONCE-SEQ` with this guardian's nonce
/// and a listed SEQ. Entries are matched as they stream past (NUL-separated), so a
/// buffer of any size will do.
struct MarkMatcher<'a> {
    marks: &'a Marks<'a>,
    /// How much of `MARK_VAR=` the current entry has matched; `None` once it differs.
    name: Option<usize>,
    /// Inside the list: how much of `NONCE-` the current element has matched; `None`
    /// once it differs.
    element: Option<usize>,
    seq: u64,
    digits: usize,
    found: bool,
}

impl<'a> MarkMatcher<'a> {
    fn new(marks: &'a Marks<'a>) -> MarkMatcher<'a> {
        MarkMatcher {
            marks,
            name: Some(0),
            element: Some(0),
            seq: 0,
            digits: 0,
            found: false,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == 0 {
                self.end_element();
                self.name = Some(0);
                continue;
            }
            match self.name {
                Some(n) if n < MARK_PREFIX.len() => {
                    self.name = (MARK_PREFIX[n] == b).then_some(n + 1);
                }
                Some(_) if b == b',' => self.end_element(),
                Some(_) => {
                    let prefix = self.marks.prefix;
                    self.element = match self.element {
                        Some(n) if n < prefix.len() => (prefix[n] == b).then_some(n + 1),
                        Some(n) if b.is_ascii_digit() && self.digits < 10 => {
                            self.seq = self.seq * 10 + u64::from(b - b'0');
                            self.digits += 1;
                            Some(n)
                        }
                        _ => None,
                    };
                }
                None => {}
            }
        }
    }

    /// Ends one element of the list (at a comma or the end of the entry).
    fn end_element(&mut self) {
        if self.name == Some(MARK_PREFIX.len())
            && self.element == Some(self.marks.prefix.len())
            && self.digits > 0
            && self.marks.seqs.iter().any(|&s| u64::from(s) == self.seq)
        {
            self.found = true;
        }
        self.element = Some(0);
        self.seq = 0;
        self.digits = 0;
    }

    fn finish(mut self) -> bool {
        self.end_element();
        self.found
    }
}

/// Sends `sig` (0: none, only count) to every process but this one whose environment
/// carries a live mark; returns how many it found. A process in one of the listed
/// groups is counted but not signalled: it got the signal with its group, and a second
/// SIGTERM would tell a runner inside it to skip its grace. Raw system calls only.
///
/// # Safety
/// Only for the guardian: async-signal-safe calls on memory it owns.
unsafe fn sweep(marks: &Marks, sig: libc::c_int) -> usize {
    if marks.seqs.is_empty() {
        return 0;
    }
    let mut found = 0;
    // SAFETY: open/getdents64/read/kill/close on descriptors this function owns and
    // stack buffers; names are NUL-terminated inside the buffer by the kernel.
    unsafe {
        let me = libc::getpid();
        let reaper = libc::getppid();
        let proc_fd = libc::open(
            c"/proc".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if proc_fd < 0 {
            return 0;
        }
        let mut buf = [0u8; 4096];
        loop {
            let n = libc::syscall(libc::SYS_getdents64, proc_fd, buf.as_mut_ptr(), buf.len());
            if n <= 0 {
                break;
            }
            let mut offset = 0usize;
            while offset + 19 < n as usize {
                let reclen = usize::from(u16::from_ne_bytes([buf[offset + 16], buf[offset + 17]]));
                let name = &buf[offset + 19..(offset + reclen).min(n as usize)];
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                if let Some(pid) = parse_pid(name)
                    && pid != me
                    && descends(proc_fd, name, [marks.runner, reaper], marks.since)
                    && environ_is_marked(proc_fd, name, marks)
                {
                    found += 1;
                    if sig != 0 && !marks.groups.contains(&libc::getpgid(pid)) {
                        libc::kill(pid, sig);
                        if sig == libc::SIGTERM {
                            libc::kill(pid, libc::SIGCONT);
                        }
                    }
                }
                if reclen == 0 {
                    break;
                }
                offset += reclen;
            }
        }
        libc::close(proc_fd);
    }
    found
}

/// Process `dir`'s parent and start (clock ticks after boot; fields 4 and 22 of its
/// `stat`), `dir` being `/proc/PID`, or `PID` relative to an open `/proc`; `None` when
/// it is gone or a zombie.
///
/// # Safety
/// Async-signal-safe: see [`stat_any`].
unsafe fn stat_of(at: RawFd, dir: &[u8]) -> Option<(libc::pid_t, u64)> {
    // SAFETY: as the caller's.
    match unsafe { stat_any(at, dir) } {
        Some((parent, start, false)) => Some((parent, start)),
        _ => None,
    }
}

/// As [`stat_of`], but a zombie is answered too, with `true` last; `None` only when the
/// process is gone (reaped).
///
/// # Safety
/// Async-signal-safe: openat/read/close on stack memory.
unsafe fn stat_any(at: RawFd, dir: &[u8]) -> Option<(libc::pid_t, u64, bool)> {
    let mut path = [0u8; 32];
    let suffix = b"/stat";
    if dir.len() + suffix.len() >= path.len() {
        return None;
    }
    path[..dir.len()].copy_from_slice(dir);
    path[dir.len()..dir.len() + suffix.len()].copy_from_slice(suffix);
    let mut buf = [0u8; 1024];
    // SAFETY: the path is NUL-terminated (zeroed and longer); the descriptor is ours.
    let n = unsafe {
        let fd = libc::openat(at, path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    let stat = buf.get(..usize::try_from(n).ok()?)?;
    // After the command in parentheses (which may hold anything): the state, the
    // parent, fields 5 to 21, then the start time.
    let close = stat.iter().rposition(|&b| b == b')')?;
    let mut fields = stat[close + 1..]
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty());
    let zombie = matches!(fields.next()?, b"Z" | b"X");
    let number = |field: &[u8]| -> Option<u64> {
        if field.is_empty() || !field.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(field.iter().fold(0u64, |t, &b| {
            t.saturating_mul(10).saturating_add(u64::from(b - b'0'))
        }))
    };
    let parent = libc::pid_t::try_from(number(fields.next()?)?).ok()?;
    let start = number(fields.nth(17)?)?;
    Some((parent, start, zombie))
}

/// `pid` as decimal digits in `out`; returns their number. No allocation.
fn pid_digits(pid: libc::pid_t, out: &mut [u8; 12]) -> usize {
    let mut digits = [0u8; 12];
    let (mut n, mut len) = (pid.unsigned_abs(), 0);
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        out[i] = digits[len - 1 - i];
    }
    len
}

/// Whether process `name` (a pid under the open `/proc`) can be one of runner's: it
/// and each ancestor up to `roots` (runner, and whoever took over its children) started
/// after the guardian. Everything else on the machine is skipped before its
/// environment is read, which keeps a sweep cheap and quick (reading the environment
/// of a process that is in the middle of an exec, or busy mapping memory, can take a
/// good part of a second on a loaded machine).
///
/// `name` itself must be alive; an ancestor may be dying. A runner killed with SIGKILL
/// (a daemon's chain job, once the daemon guardian's grace is over) shows as a zombie
/// as soon as its main thread has exited, while its other threads are still exiting
/// (on a loaded machine, for tens of milliseconds): the tasks those threads started
/// still name it as their parent until the last thread is gone and they are handed to
/// a reaper. So a zombie ancestor is followed to its own parent, and when an ancestor
/// has vanished altogether (reaped between two reads) the child is read again, to
/// follow its new parent.
///
/// # Safety
/// Async-signal-safe: see [`stat_any`].
unsafe fn descends(proc_fd: RawFd, name: &[u8], roots: [libc::pid_t; 2], since: u64) -> bool {
    let mut buf = [0u8; 12];
    let mut child = [0u8; 12];
    if name.len() > child.len() {
        return false;
    }
    let mut child_len = 0;
    let mut dir: &[u8] = name;
    let mut len;
    let mut rereads = 0;
    // A task tree is never this deep; a longer chain is not followed.
    for _ in 0..256 {
        // SAFETY: see `stat_any`.
        let (parent, start, zombie) = match unsafe { stat_any(proc_fd, dir) } {
            Some(stat) => stat,
            // An ancestor reaped since its child named it: that child has a new parent.
            None if child_len > 0 && rereads < 4 => {
                rereads += 1;
                buf[..child_len].copy_from_slice(&child[..child_len]);
                dir = &buf[..child_len];
                child_len = 0;
                continue;
            }
            None => return false,
        };
        // `dir == name` compares the digits: the process asked about, read again or not.
        if (zombie && dir == name) || start < since {
            return false;
        }
        if roots.contains(&parent) {
            return true;
        }
        if parent <= 1 {
            return false;
        }
        child_len = dir.len();
        child[..child_len].copy_from_slice(dir);
        len = pid_digits(parent, &mut buf);
        dir = &buf[..len];
    }
    false
}

/// A /proc entry's name as a pid, when it is one.
fn parse_pid(name: &[u8]) -> Option<libc::pid_t> {
    if name.is_empty() || name.len() > 9 || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let pid = name
        .iter()
        .fold(0i32, |pid, &b| pid * 10 + i32::from(b - b'0'));
    (pid > 0).then_some(pid)
}

/// Whether `/proc/NAME/environ` (relative to the open `/proc`) holds a live mark. A
/// process that is gone, a zombie, or one the guardian may not read is not marked.
///
/// # Safety
/// Async-signal-safe: openat/read/close on stack memory.
unsafe fn environ_is_marked(proc_fd: RawFd, name: &[u8], marks: &Marks) -> bool {
    let mut path = [0u8; 32];
    let suffix = b"/environ";
    if name.len() + suffix.len() >= path.len() {
        return false;
    }
    path[..name.len()].copy_from_slice(name);
    path[name.len()..name.len() + suffix.len()].copy_from_slice(suffix);
    // SAFETY: the path is NUL-terminated (the array was zeroed and is longer); the
    // descriptor is owned here.
    unsafe {
        let fd = libc::openat(
            proc_fd,
            path.as_ptr().cast(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return false;
        }
        let mut matcher = MarkMatcher::new(marks);
        let mut buf = [0u8; 4096];
        loop {
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            if n <= 0 {
                break;
            }
            matcher.feed(&buf[..n as usize]);
            if matcher.found {
                break;
            }
        }
        libc::close(fd);
        matcher.finish()
    }
}

/// Sleeps `ms` milliseconds with a raw system call.
///
/// # Safety
/// Async-signal-safe: only `nanosleep`.
unsafe fn pause_ms(ms: i64) {
    let pause = libc::timespec {
        tv_sec: 0,
        tv_nsec: ms * 1_000_000,
    };
    // SAFETY: nanosleep with a valid timespec on the stack.
    unsafe {
        libc::nanosleep(&pause, std::ptr::null_mut());
    }
}

/// Removes a directory and the files (and empty directories) directly in it, as runner's
/// scratch directory holds, with raw system calls only.
///
/// # Safety
/// Only for the guardian and the relay: async-signal-safe calls on memory they own.
unsafe fn remove_flat_dir(path: &CString) {
    // SAFETY: open/getdents64/unlinkat/close/rmdir on a descriptor this function owns
    // and a stack buffer; names are NUL-terminated inside the buffer by the kernel.
    unsafe {
        // Unlinking while reading may make the kernel skip entries: a few passes.
        for _ in 0..4 {
            let fd = libc::open(
                path.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            );
            if fd < 0 {
                return;
            }
            let mut buf = [0u8; 4096];
            loop {
                let n = libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len());
                if n <= 0 {
                    break;
                }
                let mut offset = 0usize;
                // struct linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, name.
                while offset + 19 < n as usize {
                    let reclen = u16::from_ne_bytes([buf[offset + 16], buf[offset + 17]]);
                    let name = buf.as_ptr().add(offset + 19).cast::<libc::c_char>();
                    let dot = *name == b'.' as libc::c_char
                        && (*name.add(1) == 0
                            || (*name.add(1) == b'.' as libc::c_char && *name.add(2) == 0));
                    if !dot && libc::unlinkat(fd, name, 0) != 0 {
                        libc::unlinkat(fd, name, libc::AT_REMOVEDIR);
                    }
                    if reclen == 0 {
                        break;
                    }
                    offset += usize::from(reclen);
                }
            }
            libc::close(fd);
            if libc::rmdir(path.as_ptr()) == 0 {
                return;
            }
        }
    }
}

/// Where a relayed stream goes: runner's stdout or stderr.
pub(crate) const RELAY_STDOUT: RawFd = 1;
/// See [`RELAY_STDOUT`].
pub(crate) const RELAY_STDERR: RawFd = 2;

/// Streams one relay process copies at most; more is never held by one runner.
const RELAY_SLOTS: usize = 64;

/// Forks the relay: a tiny process that copies each `(source, target)` pipe (a kept
/// leftover's output) to runner's stdout or stderr until every source reaches
/// end-of-file. It outlives runner, so a leftover that writes after runner exited is
/// neither blocked nor killed by SIGPIPE; when nobody reads runner's output any more,
/// the relay reads on and discards.
pub(crate) fn start_relay(streams: &[(RawFd, RawFd)]) -> io::Result<()> {
    let streams = &streams[..streams.len().min(RELAY_SLOTS)];
    let mut sources = [-1 as RawFd; RELAY_SLOTS];
    let mut targets = [RELAY_STDOUT; RELAY_SLOTS];
    for (i, (source, target)) in streams.iter().enumerate() {
        sources[i] = *source;
        targets[i] = *target;
    }
    let count = streams.len();
    // SAFETY: the child only calls async-signal-safe functions (see `relay`) on arrays
    // copied before the fork.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        // SAFETY: we are the freshly forked child.
        0 => unsafe { relay(&sources[..count], &targets[..count]) },
        _ => Ok(()),
    }
}

/// The relay's whole life. Only async-signal-safe calls: no allocation, no locks.
///
/// # Safety
/// Must only be called in a freshly forked child.
unsafe fn relay(sources: &[RawFd], targets: &[RawFd]) -> ! {
    // SAFETY: only async-signal-safe libc calls on descriptors this process owns.
    unsafe {
        libc::setpgid(0, 0);
        for sig in [libc::SIGINT, libc::SIGHUP, libc::SIGQUIT, libc::SIGPIPE] {
            libc::signal(sig, libc::SIG_IGN);
        }
        // Move the sources above everything, then to 3.., and close the rest: the relay
        // must not hold runner's lock file, database or any other task's pipe.
        let mut fds = [libc::pollfd {
            fd: -1,
            events: libc::POLLIN,
            revents: 0,
        }; RELAY_SLOTS];
        for (i, &source) in sources.iter().enumerate() {
            let high = libc::fcntl(source, libc::F_DUPFD, 1024);
            fds[i].fd = high;
        }
        for (i, fd) in fds.iter_mut().enumerate().take(sources.len()) {
            if fd.fd >= 0 {
                let low = 3 + i as RawFd;
                libc::dup2(fd.fd, low);
                fd.fd = low;
            }
        }
        close_from(3 + sources.len() as RawFd);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        if null >= 0 {
            libc::dup2(null, 0);
            if null > 2 && null >= 3 + sources.len() as RawFd {
                libc::close(null);
            }
        }
        let count = sources.len();
        let mut buf = [0u8; 8192];
        let mut discard = [false; 2];
        loop {
            if fds[..count].iter().all(|f| f.fd < 0) {
                libc::_exit(0);
            }
            if libc::poll(fds.as_mut_ptr(), count as libc::nfds_t, -1) < 0 {
                if *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                libc::_exit(1);
            }
            for i in 0..count {
                if fds[i].fd < 0 || fds[i].revents == 0 {
                    continue;
                }
                let n = libc::read(fds[i].fd, buf.as_mut_ptr().cast(), buf.len());
                if n == 0 || (n < 0 && *libc::__errno_location() != libc::EAGAIN) {
                    if n < 0 && *libc::__errno_location() == libc::EINTR {
                        continue;
                    }
                    libc::close(fds[i].fd);
                    fds[i].fd = -1;
                    continue;
                }
                if n < 0 {
                    continue;
                }
                let target = targets[i];
                let which = usize::from(target == RELAY_STDERR);
                let mut done = 0usize;
                while !discard[which] && done < n as usize {
                    let w = libc::write(target, buf.as_ptr().add(done).cast(), n as usize - done);
                    if w < 0 {
                        if *libc::__errno_location() == libc::EINTR {
                            continue;
                        }
                        // Nobody reads runner's output any more: keep reading, so the
                        // leftover never blocks or dies of SIGPIPE, and drop the bytes.
                        discard[which] = true;
                        break;
                    }
                    done += w as usize;
                }
            }
        }
    }
}

/// Closes every descriptor from `first` up.
///
/// # Safety
/// Only for the guardian, which owns nothing above `first`.
unsafe fn close_from(first: RawFd) {
    // SAFETY: closing descriptors the guardian does not use (see the contract).
    unsafe {
        if libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0,
        ) == 0
        {
            return;
        }
        // Kernels before 5.9 lack close_range; the soft limit bounds the loop.
        let max = libc::sysconf(libc::_SC_OPEN_MAX).clamp(256, 65_536) as RawFd;
        for fd in first..max {
            libc::close(fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked(environ: &[u8], nonce: u64, seqs: &[u32], chunk: usize) -> bool {
        let mut prefix = [0u8; 64];
        let len = mark_prefix(nonce, &mut prefix);
        let marks = Marks {
            prefix: &prefix[..len],
            seqs,
            groups: &[],
            since: 0,
            runner: 0,
        };
        let mut matcher = MarkMatcher::new(&marks);
        for piece in environ.chunks(chunk) {
            matcher.feed(piece);
        }
        matcher.finish()
    }

    #[test]
    fn a_live_mark_is_found_wherever_the_reads_split_it() {
        let environ = b"PATH=/bin\0RUNNER_ATTEMPT_TOKEN=00000000deadbeef-12\0HOME=/root\0";
        for chunk in 1..environ.len() {
            assert!(
                marked(environ, 0xdead_beef, &[3, 12], chunk),
                "chunk {chunk}"
            );
        }
        // The last entry needs no terminating NUL.
        assert!(marked(
            b"A=b\0RUNNER_ATTEMPT_TOKEN=00000000deadbeef-7",
            0xdead_beef,
            &[7],
            64
        ));
    }

    #[test]
    fn only_a_live_mark_of_this_guardian_counts() {
        let environ = b"RUNNER_ATTEMPT_TOKEN=00000000deadbeef-12\0";
        // Forgotten (kept leftover), another guardian's nonce, a prefix of the number.
        assert!(!marked(environ, 0xdead_beef, &[1, 2, 121], 64));
        assert!(!marked(environ, 0xdead_beee, &[12], 64));
        assert!(!marked(
            b"RUNNER_ATTEMPT_TOKEN=00000000deadbeef-12x\0",
            0xdead_beef,
            &[12],
            64
        ));
        assert!(!marked(
            b"XRUNNER_ATTEMPT_TOKEN=00000000deadbeef-12\0",
            0xdead_beef,
            &[12],
            64
        ));
        assert!(!marked(
            b"RUNNER_ATTEMPT_TOKEN=00000000deadbeef-\0",
            0xdead_beef,
            &[0],
            64
        ));
        assert!(!marked(b"", 0xdead_beef, &[0], 64));
    }

    #[test]
    fn stat_gives_parent_and_start_and_descent_follows_it() {
        // SAFETY: reading /proc files into stack buffers.
        let (me, init) = unsafe {
            (
                stat_of(libc::AT_FDCWD, b"/proc/self"),
                stat_of(libc::AT_FDCWD, b"/proc/1"),
            )
        };
        let (Some((parent, me)), Some((_, init))) = (me, init) else {
            panic!("no stat: self {me:?}, init {init:?}");
        };
        assert_eq!(parent, std::os::unix::process::parent_id() as libc::pid_t);
        assert!(me >= init, "self {me} before PID 1 {init}");
        // SAFETY: as above.
        assert_eq!(unsafe { stat_of(libc::AT_FDCWD, b"/proc/0") }, None);
        let mut buf = [0u8; 12];
        let len = pid_digits(std::process::id() as libc::pid_t, &mut buf);
        let name = buf[..len].to_vec();
        assert_eq!(name, std::process::id().to_string().as_bytes());
        let proc_fd = std::fs::File::open("/proc").expect("open /proc");
        let fd = proc_fd.as_raw_fd();
        // SAFETY: as above, on an open /proc.
        unsafe {
            // This process descends from its parent, also when only it is new enough...
            assert!(descends(fd, &name, [parent, parent], me));
            // ...but not when it started before the guardian would have...
            assert!(!descends(fd, &name, [parent, parent], me + 1));
            // ...nor from a root that is not among its ancestors.
            assert!(!descends(fd, &name, [-5, -5], 0));
        }
    }

    /// What the thread of [`an_ancestor_whose_main_thread_exited_is_followed`] needs,
    /// prepared before the fork.
    struct Sleeper {
        path: *const libc::c_char,
        argv: [*const libc::c_char; 4],
        envp: [*const libc::c_char; 1],
        report: RawFd,
    }

    /// That thread: starts `sleep` (whose parent is then this thread), reports its pid
    /// and keeps the process alive a while. Raw system calls only: it runs on a bare
    /// clone in the forked child's memory.
    extern "C" fn sleeper_thread(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` points to the `Sleeper` in the forked child's copy of the test's
        // frame; only raw system calls follow.
        unsafe {
            let sleeper = &*arg.cast::<Sleeper>();
            let pid = libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0);
            if pid == 0 {
                let (argv, envp) = (sleeper.argv.as_ptr(), sleeper.envp.as_ptr());
                libc::syscall(libc::SYS_execve, sleeper.path, argv, envp);
                libc::syscall(libc::SYS_exit_group, 127);
            }
            let bytes = (pid as i32).to_le_bytes();
            libc::syscall(libc::SYS_write, sleeper.report, bytes.as_ptr(), 4);
            let pause = libc::timespec {
                tv_sec: 30,
                tv_nsec: 0,
            };
            let rest = std::ptr::null_mut::<libc::timespec>();
            libc::syscall(libc::SYS_nanosleep, &pause, rest);
            libc::syscall(libc::SYS_exit_group, 0);
        }
        0
    }

    /// The field after the command in parentheses of a `stat` line, and the next.
    fn state_and_parent(stat: &str) -> (String, String) {
        let mut fields = stat.rsplit(')').next().unwrap_or("").split_whitespace();
        let state = fields.next().unwrap_or("").to_owned();
        (state, fields.next().unwrap_or("").to_owned())
    }

    #[test]
    fn an_ancestor_whose_main_thread_exited_is_followed() {
        // A runner killed with SIGKILL is a zombie once its main thread is gone, while
        // a thread that started a task is still exiting and the task still names it as
        // its parent. Here: a child whose main thread exits, leaving a thread that
        // started `sleep`.
        let (read, write) = pipe().expect("pipe");
        let mut sleeper = Sleeper {
            path: c"/bin/sh".as_ptr(),
            argv: [
                c"sh".as_ptr(),
                c"-c".as_ptr(),
                c"exec sleep 30".as_ptr(),
                std::ptr::null(),
            ],
            envp: [std::ptr::null()],
            report: write.as_raw_fd(),
        };
        let mut stack: Vec<u8> = vec![0; 64 * 1024];
        // SAFETY: the child only clones onto a stack allocated before the fork and makes
        // raw system calls; the parent reads a pipe and /proc.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // SAFETY: see above.
            unsafe {
                // Hold none of the other tests' descriptors.
                if libc::dup2(sleeper.report, 3) != 3 {
                    libc::_exit(1);
                }
                sleeper.report = 3;
                close_from(4);
                let top = stack.as_mut_ptr().add(stack.len());
                let top = top.sub(top as usize % 16);
                libc::clone(
                    sleeper_thread,
                    top.cast(),
                    libc::CLONE_VM
                        | libc::CLONE_FS
                        | libc::CLONE_FILES
                        | libc::CLONE_SIGHAND
                        | libc::CLONE_THREAD
                        | libc::CLONE_SYSVSEM,
                    std::ptr::from_ref(&sleeper).cast_mut().cast(),
                );
                // Only this thread ends: the process lives on in the other one.
                libc::syscall(libc::SYS_exit, 0);
            }
        }
        assert!(child > 0, "fork: {}", io::Error::last_os_error());
        drop(write);
        let mut report = [0u8; 4];
        // SAFETY: reading four bytes into a stack buffer from an owned descriptor.
        let n = unsafe { libc::read(read.as_raw_fd(), report.as_mut_ptr().cast(), 4) };
        // Never 0 or less: signal_pid would take it for a whole group.
        let sleep = Some(i32::from_le_bytes(report))
            .filter(|&pid| n == 4 && pid > 0)
            .unwrap_or(i32::MAX);
        let stat =
            |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let end = Instant::now() + Duration::from_secs(20);
        while state_and_parent(&stat(child)).0 != "Z" && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        let (leader, _) = state_and_parent(&stat(child));
        let (_, parent) = state_and_parent(&stat(sleep));
        let me = std::process::id() as libc::pid_t;
        let proc_fd = std::fs::File::open("/proc").expect("open /proc");
        let name = sleep.to_string();
        // SAFETY: reading /proc files into stack buffers.
        let follows = unsafe { descends(proc_fd.as_raw_fd(), name.as_bytes(), [me, me], 0) };
        signal_pid(sleep, Signal::SIGKILL);
        signal_pid(child, Signal::SIGKILL);
        let _ = wait_for(child, true);
        assert_eq!(n, 4, "no pid reported by the thread");
        assert_eq!(leader, "Z", "the main thread of {child} never exited");
        assert_eq!(parent, child.to_string(), "sleep {sleep} is not {child}'s");
        assert!(
            follows,
            "sleep {sleep} not seen to descend from {me} through {child}"
        );
    }

    #[test]
    fn a_process_started_between_two_clock_readings_has_its_start_between_them() {
        let before = boot_ticks().expect("clock");
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("5")
            .spawn()
            .expect("spawn");
        let after = boot_ticks().expect("clock");
        let pid = child.id() as i32;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let start = crate::exec::tree::start_of(pid, &stat).expect("start");
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            (before..=after).contains(&start),
            "{before} {start} {after}"
        );
    }

    #[test]
    fn the_prefix_is_formatted_as_the_mark_is() {
        let mut prefix = [0u8; 64];
        let len = mark_prefix(0x0123_4567_89ab_cdef, &mut prefix);
        let mark = format!("{:016x}-", 0x0123_4567_89ab_cdef_u64);
        assert_eq!(&prefix[..len], mark.as_bytes());
    }
}
