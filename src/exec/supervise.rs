//! Running one process to its end: spawn, wait, enforce the deadline, honour interrupts.
//!
//! Waiting polls a pidfd of the child together with its output pipes, so an exit is
//! seen at once and output is copied by the same thread; on kernels without pidfds,
//! `wait-timeout` (a SIGCHLD self-pipe) takes its place. Waits last at most [`SLICE`],
//! and the interrupt is looked at between them. On the deadline
//! or an interrupt the whole process group gets SIGTERM, then SIGKILL after the grace
//! time; every path reaps the child and returns an [`AttemptReport`].

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use wait_timeout::ChildExt;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::output::{Output, Pump};
use super::pgroup::{self, Guardian, ProcessGroup};
use crate::signals::Interrupt;

/// Longest wait between two looks at the interrupt and the deadline.
const SLICE: Duration = Duration::from_millis(50);

/// How often to look whether a terminated group has emptied.
const GROUP_POLL: Duration = Duration::from_millis(5);

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
    /// It never ran: the spawn failed (missing interpreter, permission, ...).
    NotStarted(String),
}

/// Why runner stopped the process itself, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// It ran past its time limit.
    Timeout,
    /// runner received this signal.
    Interrupt(i32),
}

/// Everything known about one finished attempt.
#[derive(Debug, Clone)]
pub(crate) struct AttemptReport {
    /// Wall-clock start.
    pub(crate) started: SystemTime,
    /// Time from spawn to reaping.
    pub(crate) duration: Duration,
    /// How it ended.
    pub(crate) exit: Exit,
    /// Set when runner ended it.
    pub(crate) stopped: Option<Stop>,
}

impl AttemptReport {
    /// The exit code, when it exited by itself with one.
    pub(crate) fn exit_code(&self) -> Option<i32> {
        match self.exit {
            Exit::Code(code) => Some(code),
            _ => None,
        }
    }

    /// The wall-clock end.
    pub(crate) fn stopped_at(&self) -> SystemTime {
        self.started + self.duration
    }
}

/// Limits of one attempt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Time limit; `None` means none.
    pub(crate) max_time: Option<Duration>,
    /// Time between SIGTERM and SIGKILL.
    pub(crate) kill_grace: Duration,
    /// The grace after an interrupt, when it differs (the daemon's
    /// `shutdown_kill_grace`); `None` uses `kill_grace`.
    pub(crate) interrupt_grace: Option<Duration>,
}

/// Runs processes under the shared interrupt and guardian.
#[derive(Clone)]
pub(crate) struct Supervisor {
    interrupt: Arc<Interrupt>,
    guardian: Arc<Guardian>,
}

impl Supervisor {
    /// A supervisor reporting its groups to `guardian` and stopping on `interrupt`.
    pub(crate) fn new(interrupt: Arc<Interrupt>, guardian: Arc<Guardian>) -> Supervisor {
        Supervisor {
            interrupt,
            guardian,
        }
    }

    /// The interrupt this supervisor honours.
    pub(crate) fn interrupt(&self) -> &Interrupt {
        &self.interrupt
    }

    /// Spawns `cmd` in a new process group with stdin from /dev/null and supervises it.
    pub(crate) fn run(&self, mut cmd: Command, limits: Limits, output: &Output) -> AttemptReport {
        cmd.stdin(Stdio::null()).process_group(0);
        output.configure(&mut cmd);
        let started = SystemTime::now();
        let clock = Instant::now();
        // A signal that came while the caller prepared (a pre-task hook, say) means no
        // new process may start.
        if let Some(sig) = self.interrupt.received() {
            return AttemptReport {
                started,
                duration: Duration::ZERO,
                exit: Exit::NotStarted(format!("not started: runner received signal {sig}")),
                stopped: Some(Stop::Interrupt(sig)),
            };
        }
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                return AttemptReport {
                    started,
                    duration: clock.elapsed(),
                    exit: Exit::NotStarted(e.to_string()),
                    stopped: None,
                };
            }
        };
        let group = ProcessGroup::of(&child);
        self.guardian.watch(group);
        let pump = output.pump(child.stdout.take(), child.stderr.take());
        let mut waiter = Waiter {
            exit_fd: pgroup::exit_fd(&child),
            child,
            pump,
        };
        // Durations are validated to a sane range; a deadline past what the clock can
        // express would simply never come.
        let deadline = limits.max_time.and_then(|d| clock.checked_add(d));

        let mut stopped = None;
        let status = loop {
            if let Some(sig) = self.interrupt.received() {
                stopped = Some(Stop::Interrupt(sig));
                let grace = limits.interrupt_grace.unwrap_or(limits.kill_grace);
                break self.terminate(&mut waiter, group, grace);
            }
            let slice = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        stopped = Some(Stop::Timeout);
                        break self.terminate(&mut waiter, group, limits.kill_grace);
                    }
                    (deadline - now).min(SLICE)
                }
                None => SLICE,
            };
            match waiter.wait(slice) {
                Ok(Some(status)) => break Some(status),
                Ok(None) => {}
                Err(e) => {
                    log::warn!(
                        "waiting for pid {} failed ({e}); killing its group",
                        waiter.child.id()
                    );
                    break self.terminate(&mut waiter, group, Duration::ZERO);
                }
            }
        };
        let duration = clock.elapsed();
        self.guardian.forget(group);
        waiter.drain(READER_BOUND);
        let exit = match status {
            Some(status) => exit_of(status),
            None => Exit::NotStarted("the process could not be reaped".to_owned()),
        };
        if let Some(stop) = stopped {
            log::debug!("group {} stopped ({stop:?}) after {duration:?}", group.id());
        }
        AttemptReport {
            started,
            duration,
            exit,
            stopped,
        }
    }

    /// SIGTERM to the group, SIGKILL after `grace` (or at once when the interrupt is
    /// urgent), and reap the leader. Returns as soon as the leader is reaped and the
    /// group empty. Output keeps flowing meanwhile, so a task blocked on a full pipe can
    /// still handle SIGTERM.
    fn terminate(
        &self,
        waiter: &mut Waiter,
        group: ProcessGroup,
        grace: Duration,
    ) -> Option<ExitStatus> {
        let mut status = None;
        if !grace.is_zero() && !self.interrupt.is_urgent() {
            if let Err(e) = group.signal(Signal::SIGTERM) {
                log::warn!("cannot send SIGTERM to process group {}: {e}", group.id());
            }
            let end = Instant::now()
                .checked_add(grace)
                .unwrap_or_else(|| Instant::now() + SLICE);
            loop {
                let now = Instant::now();
                if now >= end || self.interrupt.is_urgent() {
                    break;
                }
                match status {
                    None => match waiter.wait((end - now).min(SLICE)) {
                        Ok(Some(s)) => status = Some(s),
                        Ok(None) => {}
                        Err(_) => break,
                    },
                    Some(_) if group.is_empty() => return status,
                    Some(_) => std::thread::sleep(GROUP_POLL.min(end - now)),
                }
            }
        }
        if let Err(e) = group.signal(Signal::SIGKILL) {
            log::warn!("cannot send SIGKILL to process group {}: {e}", group.id());
        }
        match status {
            Some(s) => Some(s),
            None => waiter.child.wait().ok(),
        }
    }
}

/// How long to keep draining output after the task exited. A grandchild that keeps the
/// pipe open (a daemon started with `&`) must not hold up the chain.
const READER_BOUND: Duration = Duration::from_millis(500);

/// Waits for a child's exit while moving its output.
struct Waiter {
    child: Child,
    exit_fd: Option<OwnedFd>,
    pump: Option<Pump>,
}

impl Waiter {
    /// Waits up to `timeout` for the child to exit, draining its pipes meanwhile.
    fn wait(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match (&self.exit_fd, &self.pump) {
                // No pidfd and no pipes: wait-timeout's SIGCHLD self-pipe.
                (None, None) => return self.child.wait_timeout(left),
                // No pidfd: poll the pipes, and look at the child every few ms.
                (None, Some(_)) => self.poll(left.min(GROUP_POLL)),
                (Some(_), _) => self.poll(left),
            }
        }
    }

    /// One `poll` over the exit descriptor and the open pipes; drains what is ready.
    fn poll(&mut self, timeout: Duration) {
        let ms = u16::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
        let ready: Vec<usize> = {
            let mut fds = Vec::with_capacity(3);
            let mut streams = Vec::with_capacity(2);
            if let Some(fd) = &self.exit_fd {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
            if let Some(pump) = &self.pump {
                for (index, fd) in pump.fds() {
                    fds.push(PollFd::new(fd, PollFlags::POLLIN));
                    streams.push(index);
                }
            }
            if fds.is_empty() {
                std::thread::sleep(timeout);
                return;
            }
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let skip = usize::from(self.exit_fd.is_some());
            fds[skip..]
                .iter()
                .zip(&streams)
                .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
                .map(|(_, index)| *index)
                .collect()
        };
        if let Some(pump) = self.pump.as_mut() {
            for index in ready {
                pump.drain(index);
            }
        }
    }

    /// After the exit: copies what is left in the pipes, for at most `bound`.
    fn drain(&mut self, bound: Duration) {
        let end = Instant::now() + bound;
        self.exit_fd = None;
        while self.pump.as_ref().is_some_and(|p| !p.is_done()) {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::debug!("a task's output pipe is still held open by a leftover process");
                return;
            }
            self.poll(left);
        }
    }
}

fn exit_of(status: ExitStatus) -> Exit {
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(sig)) => Exit::Signal(sig),
        (None, None) => Exit::NotStarted(format!("unknown wait status {status:?}")),
    }
}
