//! Running one process to its end: spawn, wait, enforce the deadline, honour interrupts.
//!
//! Waiting uses `wait-timeout` (a SIGCHLD self-pipe, so an exit is seen at once) in
//! slices of at most [`SLICE`], looking at the interrupt between slices. On the deadline
//! or an interrupt the whole process group gets SIGTERM, then SIGKILL after the grace
//! time; every path reaps the child and returns an [`AttemptReport`].

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use wait_timeout::ChildExt;

use super::output::Output;
use super::pgroup::{Guardian, ProcessGroup};
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
        let readers = output.start(child.stdout.take(), child.stderr.take());
        let deadline = limits.max_time.map(|d| clock + d);

        let mut stopped = None;
        let status = loop {
            if let Some(sig) = self.interrupt.received() {
                stopped = Some(Stop::Interrupt(sig));
                let grace = limits.interrupt_grace.unwrap_or(limits.kill_grace);
                break self.terminate(&mut child, group, grace);
            }
            let slice = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        stopped = Some(Stop::Timeout);
                        break self.terminate(&mut child, group, limits.kill_grace);
                    }
                    (deadline - now).min(SLICE)
                }
                None => SLICE,
            };
            match child.wait_timeout(slice) {
                Ok(Some(status)) => break Some(status),
                Ok(None) => {}
                Err(e) => {
                    log::warn!(
                        "waiting for pid {} failed ({e}); killing its group",
                        child.id()
                    );
                    break self.terminate(&mut child, group, Duration::ZERO);
                }
            }
        };
        let duration = clock.elapsed();
        self.guardian.forget(group);
        readers.finish();
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
    /// group empty.
    fn terminate(
        &self,
        child: &mut std::process::Child,
        group: ProcessGroup,
        grace: Duration,
    ) -> Option<ExitStatus> {
        let mut status = None;
        if !grace.is_zero() && !self.interrupt.is_urgent() {
            if let Err(e) = group.signal(Signal::SIGTERM) {
                log::warn!("cannot send SIGTERM to process group {}: {e}", group.id());
            }
            let end = Instant::now() + grace;
            loop {
                let now = Instant::now();
                if now >= end || self.interrupt.is_urgent() {
                    break;
                }
                match status {
                    None => match child.wait_timeout((end - now).min(SLICE)) {
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
            None => child.wait().ok(),
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
