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
//! holds the read end of a pipe and learns the groups runner starts and reaps. When the
//! pipe reaches end-of-file, runner is gone (however it died): the guardian sends SIGTERM
//! to every group still listed, waits the grace time, sends SIGKILL and exits.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::process::Child;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The process group of one task attempt; its id is the leader's pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessGroup(i32);

impl ProcessGroup {
    /// The group led by `child`, which was spawned with `process_group(0)`.
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

    /// Whether no process is left in the group. A group we may not signal (a setuid
    /// grandchild) still has members.
    pub(crate) fn is_empty(self) -> bool {
        matches!(killpg(Pid::from_raw(self.0), None), Err(Errno::ESRCH))
    }
}

/// A descriptor that becomes readable when `child` exits (a pidfd, Linux 5.3 and
/// later), so one `poll` can wait for the exit and for output at once. `None` on older
/// kernels; callers then fall back to `wait-timeout`.
pub(crate) fn exit_fd(child: &Child) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(child.id()).ok()?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1. The
    // child is not reaped yet, so its pid cannot have been reused.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = RawFd::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the descriptor was just created and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Groups the guardian can hold at once; runner never has more running than `parallel`.
const GUARDIAN_SLOTS: usize = 1024;

/// The handle runner keeps on its guardian process. Dropping it (or runner dying) closes
/// the pipe, which tells the guardian to clean up whatever is still listed.
#[derive(Debug)]
pub(crate) struct Guardian {
    pipe: Option<File>,
}

impl Guardian {
    /// A guardian that does nothing, for commands that run no tasks.
    pub(crate) fn none() -> Guardian {
        Guardian { pipe: None }
    }

    /// Forks the guardian process. On failure, runner carries on without one and says so.
    pub(crate) fn start(grace: Duration) -> Guardian {
        match fork_guardian(grace) {
            Ok(pipe) => Guardian { pipe: Some(pipe) },
            Err(e) => {
                log::warn!(
                    "cannot start the guardian process ({e}); tasks may outlive a killed runner"
                );
                Guardian::none()
            }
        }
    }

    /// Lists a group to clean up should runner die.
    pub(crate) fn watch(&self, group: ProcessGroup) {
        self.send(b'+', group);
    }

    /// Removes a group that runner has reaped itself.
    pub(crate) fn forget(&self, group: ProcessGroup) {
        self.send(b'-', group);
    }

    fn send(&self, op: u8, group: ProcessGroup) {
        if let Some(mut pipe) = self.pipe.as_ref() {
            let mut message = [op, 0, 0, 0, 0];
            message[1..].copy_from_slice(&group.0.to_le_bytes());
            // Five bytes are below PIPE_BUF, so the write is atomic even with parallel
            // tasks writing from several threads. A dead guardian only costs the cleanup.
            let _ = pipe.write_all(&message);
        }
    }
}

fn fork_guardian(grace: Duration) -> io::Result<File> {
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
            unsafe { guard(read_end, write_end, grace) }
        }
        _ => {
            // SAFETY: read_end is ours to close; write_end becomes owned by the File.
            unsafe {
                libc::close(read_end);
                Ok(File::from_raw_fd(write_end))
            }
        }
    }
}

/// The guardian's whole life. Only async-signal-safe calls: no allocation, no locks.
///
/// # Safety
/// Must only be called in a freshly forked child.
unsafe fn guard(read_end: RawFd, write_end: RawFd, grace: Duration) -> ! {
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

        let mut groups = [0i32; GUARDIAN_SLOTS];
        let mut count = 0usize;
        let mut buf = [0u8; 5 * 64];
        let mut have = 0usize;
        loop {
            let n = libc::read(3, buf.as_mut_ptr().add(have).cast(), buf.len() - have);
            if n == 0 {
                break;
            }
            if n < 0 {
                if *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                break;
            }
            have += n as usize;
            let whole = have - have % 5;
            for message in buf[..whole].chunks_exact(5) {
                let pgid = i32::from_le_bytes([message[1], message[2], message[3], message[4]]);
                if message[0] == b'+' {
                    if count < GUARDIAN_SLOTS {
                        groups[count] = pgid;
                        count += 1;
                    }
                } else if let Some(i) = groups[..count].iter().position(|&g| g == pgid) {
                    groups[i] = groups[count - 1];
                    count -= 1;
                }
            }
            buf.copy_within(whole..have, 0);
            have -= whole;
        }
        if count == 0 {
            libc::_exit(0);
        }
        for &pgid in &groups[..count] {
            libc::kill(-pgid, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < grace {
            if groups[..count].iter().all(|&g| libc::kill(-g, 0) != 0) {
                libc::_exit(0);
            }
            let pause = libc::timespec {
                tv_sec: 0,
                tv_nsec: 20_000_000,
            };
            libc::nanosleep(&pause, std::ptr::null_mut());
        }
        for &pgid in &groups[..count] {
            libc::kill(-pgid, libc::SIGKILL);
        }
        libc::_exit(0)
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
