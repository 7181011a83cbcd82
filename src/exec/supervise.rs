//! Running one process to its end: spawn, wait, enforce the deadline, honour interrupts,
//! and account for every process the task started.
//!
//! Waiting polls a pidfd of the child together with its output pipes, so an exit is
//! seen at once and output is copied by the same thread. Waits last at most [`SLICE`],
//! and the interrupt is looked at between them. On the deadline or an interrupt every
//! live member of the attempt (its group, and what escaped it: see `reaper.rs`) gets
//! SIGTERM, then SIGKILL after the grace; the grace ends the moment the last member is
//! gone, which a poll over the members' pidfds sees at once. A zombie is not a member.
//! When the task exits by itself, what it left behind is named in the report and, per
//! [`Leftovers`], kept or stopped the same way. Every path reaps the child and returns an
//! [`AttemptReport`].

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;

use super::output::{self, Output, Pump};
use super::pgroup::{self, Guardian, ProcessGroup};
use super::reaper::{self, Tracker};
use super::spawn::{Child, Command};
use super::tree::{self, Proc, ProcKey};
use crate::interrupt::Interrupt;

/// Longest wait between two looks at the interrupt and the deadline.
const SLICE: Duration = Duration::from_millis(50);

/// Without pidfds, how often to look whether a child exited or the members are gone.
const POLL_FALLBACK: Duration = Duration::from_millis(5);

/// How long SIGKILLed members may take to disappear (a process in uninterruptible
/// sleep dies only when its I/O returns) before runner gives up waiting and says so.
const KILL_WAIT: Duration = Duration::from_secs(5);

pub(crate) use crate::config::Leftovers;

/// A process a task left behind, for the log and the record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Leftover {
    /// Its pid.
    pub(crate) pid: i32,
    /// Its command line.
    pub(crate) command: String,
}

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

/// How it ended, in the words every log line about a task or hook uses.
impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exited with code {code}"),
            Exit::Signal(sig) => write!(f, "killed by signal {sig}"),
            Exit::NotStarted(e) => write!(f, "could not start: {e}"),
        }
    }
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
    /// Processes it left behind when it exited by itself (kept or stopped per policy).
    pub(crate) leftovers: Vec<Leftover>,
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
    /// What happens to processes left behind by a normal exit.
    pub(crate) leftovers: Leftovers,
}

/// Runs processes under the shared interrupt and guardian.
#[derive(Clone)]
pub(crate) struct Supervisor {
    interrupt: Arc<Interrupt>,
    guardian: Arc<Guardian>,
}

impl Supervisor {
    /// A supervisor reporting its groups to `guardian` and stopping on `interrupt`. The
    /// first one makes runner a child subreaper that reaps its tasks' orphans.
    pub(crate) fn new(interrupt: Arc<Interrupt>, guardian: Arc<Guardian>) -> Supervisor {
        reaper::init();
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
                leftovers: Vec::new(),
            };
        }
        // Listed before the spawn, so no moment of the attempt goes unmarked.
        let mark = self.guardian.mark(&mut cmd);
        // The child lists its group with the guardian itself, before its program runs.
        let slot = self.guardian.reserve();
        let spawned = reaper::spawn(&cmd, slot.as_ref().map(|s| s.cell()));
        // The child has its own copies of the descriptors the command holds (a daemon
        // run's output file): runner's go now, not when the attempt ends.
        drop(cmd);
        let (mut child, tracker) = match spawned {
            Ok(spawned) => spawned,
            Err(e) => {
                if let Some(slot) = slot {
                    self.guardian.forget(slot);
                }
                if let Some(mark) = mark {
                    self.guardian.unmark(mark);
                }
                return AttemptReport {
                    started,
                    duration: clock.elapsed(),
                    exit: Exit::NotStarted(e.to_string()),
                    stopped: None,
                    leftovers: Vec::new(),
                };
            }
        };
        let group = ProcessGroup::of(&child);
        let mut records_due = output.spawned();
        let mut waiter = Waiter {
            exit_fd: pgroup::exit_fd(&mut child),
            pump: output.pump(child.stdout.take(), child.stderr.take()),
            write_ends: std::mem::take(&mut child.write_ends),
            child,
            status: None,
            looked: false,
        };
        // Durations are validated to a sane range; a deadline past what the clock can
        // express would simply never come.
        let deadline = limits.max_time.and_then(|d| clock.checked_add(d));

        let mut stopped = None;
        loop {
            if let Some(sig) = self.interrupt.received() {
                stopped = Some(Stop::Interrupt(sig));
                // Stopping may take the whole grace: what was held is written first.
                if records_due.take().is_some() {
                    output.record_now();
                }
                let grace = limits.interrupt_grace.unwrap_or(limits.kill_grace);
                self.stop_all(&mut waiter, &tracker, group, grace);
                break;
            }
            let now = Instant::now();
            // Records held back since the spawn are due: written while the task runs.
            if records_due.is_some_and(|due| now >= due) {
                records_due = output.records_due();
            }
            let slice = match deadline {
                Some(deadline) => {
                    if now >= deadline {
                        stopped = Some(Stop::Timeout);
                        if records_due.take().is_some() {
                            output.record_now();
                        }
                        self.stop_all(&mut waiter, &tracker, group, limits.kill_grace);
                        break;
                    }
                    (deadline - now).min(SLICE)
                }
                None => SLICE,
            };
            let slice = match records_due {
                Some(due) => slice.min(due.saturating_duration_since(now)),
                None => slice,
            };
            match waiter.wait(slice) {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    log::warn!(
                        "waiting for pid {} failed ({e}); killing its processes",
                        waiter.child.id()
                    );
                    self.stop_all(&mut waiter, &tracker, group, Duration::ZERO);
                    break;
                }
            }
        }
        let duration = clock.elapsed();
        tracker.leader_reaped();
        let mut leftovers = Vec::new();
        if stopped.is_none() && tracker.may_have_members() {
            let left = tracker.members();
            if !left.is_empty() {
                // Stopping them (or waiting for their output) may take long.
                if records_due.take().is_some() {
                    output.record_now();
                }
                leftovers = left
                    .iter()
                    .map(|p| Leftover {
                        pid: p.pid,
                        command: tree::command_line(p.pid),
                    })
                    .collect();
                match limits.leftovers {
                    Leftovers::Keep => tracker.keep(&left),
                    Leftovers::Kill => {
                        let grace = if self.interrupt.received().is_some() {
                            limits.interrupt_grace.unwrap_or(limits.kill_grace)
                        } else {
                            limits.kill_grace
                        };
                        self.stop_all(&mut waiter, &tracker, group, grace);
                    }
                }
            }
        }
        if let Some(slot) = slot {
            self.guardian.forget(slot);
        }
        if let Some(mark) = mark {
            self.guardian.unmark(mark);
        }
        drop(tracker);
        waiter.finish_output(leftovers.is_empty() || limits.leftovers == Leftovers::Kill);
        let exit = match waiter.status {
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
            leftovers,
        }
    }

    /// Stops every live member of the attempt: SIGTERM (and SIGCONT, so a stopped
    /// process can act on it), then SIGKILL after `grace` (at once when it is zero or the
    /// interrupt is urgent). Returns as soon as the leader is reaped and no member is
    /// left. Output keeps flowing meanwhile, so a task blocked on a full pipe can still
    /// handle SIGTERM.
    fn stop_all(
        &self,
        waiter: &mut Waiter,
        tracker: &Tracker,
        group: ProcessGroup,
        grace: Duration,
    ) {
        let mut watched = Watched::new(Signal::SIGTERM);
        if !grace.is_zero() && !self.interrupt.is_urgent() {
            let end = Instant::now()
                .checked_add(grace)
                .unwrap_or_else(|| Instant::now() + SLICE);
            if let Err(e) = group.signal(Signal::SIGTERM) {
                log::warn!("cannot send SIGTERM to process group {}: {e}", group.id());
            }
            let _ = group.signal(Signal::SIGCONT);
            loop {
                if waiter.status.is_some() && !tracker.may_have_members() {
                    return;
                }
                let members = tracker.members();
                watched.update(&members);
                if waiter.status.is_some() && members.is_empty() {
                    return;
                }
                let now = Instant::now();
                if now >= end || self.interrupt.is_urgent() {
                    break;
                }
                if waiter
                    .wait_gone((end - now).min(SLICE), &mut watched.fds())
                    .is_err()
                {
                    break;
                }
            }
        }
        let _ = group.signal(Signal::SIGKILL);
        let mut watched = Watched::new(Signal::SIGKILL);
        let end = Instant::now() + KILL_WAIT;
        loop {
            if waiter.status.is_some() && !tracker.may_have_members() {
                return;
            }
            let members = tracker.members();
            watched.update(&members);
            if waiter.status.is_some() && members.is_empty() {
                return;
            }
            let now = Instant::now();
            if now >= end {
                log::warn!(
                    "{} process(es) of group {} survive SIGKILL (uninterruptible sleep?): {}",
                    members.len(),
                    group.id(),
                    describe(&members)
                );
                if waiter.status.is_none() {
                    waiter.status = waiter.child.wait().ok();
                }
                return;
            }
            if waiter
                .wait_gone((end - now).min(SLICE), &mut watched.fds())
                .is_err()
            {
                waiter.status = waiter.child.wait().ok();
            }
        }
    }
}

/// Members already signalled, and a pidfd for each one still alive, to wait on all of
/// them at once.
struct Watched {
    sig: Signal,
    signalled: std::collections::HashSet<ProcKey>,
    fds: std::collections::HashMap<ProcKey, Arc<OwnedFd>>,
}

impl Watched {
    fn new(sig: Signal) -> Watched {
        Watched {
            sig,
            signalled: Default::default(),
            fds: Default::default(),
        }
    }

    /// Signals the members not signalled yet, watches every live member, and stops
    /// watching the gone (a pidfd stays readable once its process exited).
    fn update(&mut self, members: &[Proc]) {
        for proc in members {
            if self.signalled.insert(proc.key()) {
                pgroup::signal_pid(proc.pid, self.sig);
                if self.sig == Signal::SIGTERM {
                    pgroup::signal_pid(proc.pid, Signal::SIGCONT);
                }
            }
            if let std::collections::hash_map::Entry::Vacant(entry) = self.fds.entry(proc.key())
                && let Some(fd) = pgroup::pidfd(proc.pid)
            {
                entry.insert(Arc::new(fd));
            }
        }
        let live: std::collections::HashSet<ProcKey> = members.iter().map(Proc::key).collect();
        self.fds.retain(|key, _| live.contains(key));
    }

    fn fds(&self) -> Vec<Arc<OwnedFd>> {
        self.fds.values().cloned().collect()
    }
}

/// `pid (command line)` for each leftover, for a log line.
pub(crate) fn describe_leftovers(leftovers: &[Leftover]) -> String {
    leftovers
        .iter()
        .map(|l| format!("{} ({})", l.pid, l.command))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `pid (command line)` for each process, for a log line.
pub(crate) fn describe(procs: &[Proc]) -> String {
    procs
        .iter()
        .map(|p| format!("{} ({})", p.pid, tree::command_line(p.pid)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How long to keep copying output after the task and every member are gone: the pipes
/// are at end-of-file by then, unless a process runner could not trace holds them, and
/// that one must not hold up the chain.
const DRAIN_BOUND: Duration = Duration::from_millis(100);

/// Waits for a child's exit while moving its output.
struct Waiter {
    child: Child,
    exit_fd: Option<OwnedFd>,
    pump: Option<Pump>,
    /// runner's copies of the pipes' write ends, held until the child is reaped. A
    /// process closes its descriptors just before it exits: with only the child's ends
    /// the pipe's end-of-file woke the supervising thread first, which took the CPU
    /// from the exiting task, found it not yet reaped and slept again until the exit
    /// fired. Held, the exit is one wake-up; the pipes end at once when they go.
    write_ends: Vec<OwnedFd>,
    status: Option<ExitStatus>,
    /// Whether `wait` has looked at the child before.
    looked: bool,
}

impl Waiter {
    /// Waits up to `timeout` for the child to exit, draining its pipes meanwhile.
    /// Returns whether the child has been reaped.
    fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        let end = Instant::now() + timeout;
        loop {
            // A child that has just exec'd has not exited: with a pidfd, the poll says
            // when it does, and the first look costs no `wait4`.
            let first = !std::mem::replace(&mut self.looked, true);
            if !(first && self.exit_fd.is_some()) && self.reap()? {
                return Ok(true);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            if self.poll(left, &mut Vec::new()) {
                return self.reap();
            }
        }
    }

    /// Waits up to `timeout` until every process in `pending` (members' pidfds) has
    /// exited, reaping the child and draining its pipes meanwhile. One scan of the
    /// process table follows, not one per exit: twenty children dying at once cost one
    /// look, not twenty.
    fn wait_gone(&mut self, timeout: Duration, pending: &mut Vec<Arc<OwnedFd>>) -> io::Result<()> {
        let end = Instant::now() + timeout;
        if pending.is_empty() {
            // No pidfds (an old kernel): look again shortly.
            self.poll(timeout.min(POLL_FALLBACK), pending);
            self.reap()?;
            return Ok(());
        }
        while !pending.is_empty() {
            self.reap()?;
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.poll(left, pending);
        }
        self.reap()?;
        Ok(())
    }

    /// Reaps the child if it exited; returns whether it is reaped (now or before).
    fn reap(&mut self) -> io::Result<bool> {
        if self.status.is_none()
            && let Some(status) = self.child.try_wait()?
        {
            self.status = Some(status);
            self.exit_fd = None;
            self.write_ends.clear();
        }
        Ok(self.status.is_some())
    }

    /// One `poll` over the exit descriptor, `extra` and the open pipes; drains what is
    /// ready. Returns whether the exit descriptor or one of `extra` fired.
    fn poll(&mut self, timeout: Duration, extra: &mut Vec<Arc<OwnedFd>>) -> bool {
        // Without pidfds an exit is only seen by looking: a short timeout.
        let timeout = if self.exit_fd.is_none() && (self.status.is_none() || extra.is_empty()) {
            timeout.min(POLL_FALLBACK)
        } else {
            timeout
        };
        let ms = u16::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
        let mut gone: Vec<bool> = Vec::with_capacity(extra.len());
        let (fired, ready): (bool, Vec<usize>) = {
            let mut fds = Vec::with_capacity(3 + extra.len());
            let mut streams = Vec::with_capacity(2);
            if let Some(fd) = &self.exit_fd {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
            for fd in extra.iter() {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
            let signals = fds.len();
            if let Some(pump) = &self.pump {
                for (index, fd) in pump.fds() {
                    fds.push(PollFd::new(fd, PollFlags::POLLIN));
                    streams.push(index);
                }
            }
            if fds.is_empty() {
                std::thread::sleep(timeout);
                return false;
            }
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
            let fired_at: Vec<bool> = fds[..signals]
                .iter()
                .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            let fired = fired_at.iter().any(|f| *f);
            // A pidfd stays readable once its process exited: forget the fired ones.
            let skip = usize::from(self.exit_fd.is_some());
            let mut at = fired_at[skip..].iter();
            gone.extend(extra.iter().map(|_| at.next().copied().unwrap_or(false)));
            let ready = fds[signals..]
                .iter()
                .zip(&streams)
                .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
                .map(|(_, index)| *index)
                .collect();
            (fired, ready)
        };
        if !gone.is_empty() {
            let mut gone = gone.into_iter();
            extra.retain(|_| !gone.next().unwrap_or(false));
        }
        if let Some(pump) = self.pump.as_mut() {
            for index in ready {
                pump.drain(index);
            }
        }
        fired
    }

    /// After the attempt: copies what is in the pipes. With `expect_eof` (no member is
    /// left) the pipes end shortly, so wait for that a little; otherwise (a kept
    /// leftover holds them) hand the pump to the lingering thread at once.
    fn finish_output(&mut self, expect_eof: bool) {
        self.exit_fd = None;
        self.write_ends.clear();
        if expect_eof {
            // The write ends runner held are gone: most often the pipes are at their end
            // already, which a read sees without a `poll` first.
            if let Some(pump) = self.pump.as_mut() {
                pump.drain_ready();
            }
            let end = Instant::now() + DRAIN_BOUND;
            while self.pump.as_ref().is_some_and(|p| !p.is_done()) {
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                self.poll(left, &mut Vec::new());
            }
        } else if let Some(pump) = self.pump.as_mut() {
            pump.drain_ready();
        }
        if let Some(pump) = self.pump.take().filter(|p| !p.is_done()) {
            log::debug!("a task's output pipe is still open; copying it in the background");
            output::linger(pump);
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
