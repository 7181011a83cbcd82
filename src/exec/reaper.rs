//! Which live processes belong to which attempt, and reaping the orphans nobody waits for.
//!
//! runner is a child subreaper (and may be PID 1 of a container), so every orphan of its
//! tasks becomes runner's child: a shell's `sleep` once the shell died, a daemon that
//! double-forked, a child that called `setsid`. Two duties follow:
//!
//! - **Reaping.** A thread woken by SIGCHLD reaps every zombie child of runner that no
//!   supervisor waits for itself. Supervisors' own children (attempt leaders) are listed
//!   in `spawned` before `spawn` returns. The registry lock is not held across the spawn
//!   itself (a fork and exec take milliseconds on a loaded machine, and a daemon starting
//!   hundreds of runs a second would queue behind them): whoever looks at runner's
//!   children waits, after looking, until the spawns under way then have listed theirs
//!   ([`settle`]), so a child seen is either listed by then or nobody's leader, and the
//!   reaper never steals an exit status.
//! - **Membership.** An attempt's processes are its leader, its process group, and every
//!   descendant of those by parent links, plus orphans (now runner's children) traced
//!   back to it: by having been seen as members before, by a process group or session
//!   named after a member (the double fork's `setsid`), or, when only one attempt could
//!   have started it, by that. Zombies never count. Processes a finished attempt left
//!   behind and kept are remembered, so a later attempt does not claim them.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, Once};

use super::pgroup;
use super::spawn::{self, Child, Command};
use super::tree::{Proc, ProcKey, Snapshot};

/// Everything the registry knows, behind one lock.
#[derive(Default)]
struct Registry {
    next_id: u64,
    /// Pids that their supervisor reaps itself.
    spawned: HashSet<i32>,
    /// Live attempts by id.
    attempts: HashMap<u64, Track>,
    /// Processes that finished attempts left behind and kept.
    kept: HashSet<ProcKey>,
    /// Groups and sessions named after kept processes.
    kept_groups: HashSet<i32>,
    /// runner's own helper processes (the guardian), never anyone's member.
    helpers: HashSet<i32>,
    /// Spawns under way, by number: their children may exist, not listed yet.
    in_flight: HashSet<u64>,
    next_spawn: u64,
    /// Threads waiting in [`settle`]: a spawn wakes them only when there are some.
    settling: usize,
}

/// Signalled whenever a spawn under way has listed its child.
static SETTLED: Condvar = Condvar::new();

/// What is known of one live attempt.
struct Track {
    leader: i32,
    pgid: i32,
    /// The leader's start time (clock ticks after boot) lies in `since..=until`: read
    /// from the clock just before and just after its spawn, which spares reading its
    /// `stat` for each attempt. An orphan older than `since` cannot be the attempt's.
    since: u64,
    until: u64,
    known: HashSet<ProcKey>,
    groups: HashSet<i32>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

fn registry() -> MutexGuard<'static, Option<Registry>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

fn with<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    let mut guard = registry();
    f(guard.get_or_insert_with(Registry::default))
}

/// [`settle`], when one of `children` is neither a listed leader nor a helper: only such
/// a child can be one that a spawn under way has not listed yet. Usually there is none,
/// and nobody waits.
fn settle_for(children: &[i32]) {
    if with(|r| {
        children
            .iter()
            .any(|c| !r.spawned.contains(c) && !r.helpers.contains(c))
    }) {
        settle();
    }
}

/// Waits until every spawn under way now has listed its child: at most one fork and exec.
/// Called after reading runner's children and before judging them, so that a child seen
/// is either in `spawned` by then or no supervisor's.
fn settle() {
    let mut guard = registry();
    let waiting: Vec<u64> = match guard.as_mut() {
        Some(r) if !r.in_flight.is_empty() => {
            r.settling += 1;
            r.in_flight.iter().copied().collect()
        }
        _ => return,
    };
    while guard
        .as_ref()
        .is_some_and(|r| waiting.iter().any(|id| r.in_flight.contains(id)))
    {
        guard = SETTLED.wait(guard).unwrap_or_else(|e| e.into_inner());
    }
    if let Some(r) = guard.as_mut() {
        r.settling -= 1;
    }
}

/// runner's own group and session: never recorded as an attempt's.
fn own_ids() -> (i32, i32) {
    let pgid = nix::unistd::getpgrp().as_raw();
    let sid = nix::unistd::getsid(None).map_or(pgid, |s| s.as_raw());
    (pgid, sid)
}

static INIT: Once = Once::new();

/// Makes runner a child subreaper and starts the reaping thread, once per process.
pub(crate) fn init() {
    INIT.call_once(|| {
        if let Err(e) = pgroup::become_subreaper() {
            log::warn!(
                "cannot become a child subreaper ({e}); processes that escape a task may be missed"
            );
        }
        if let Err(e) = start_reaping() {
            log::warn!("cannot watch for orphaned processes ({e}); they are reaped less often");
        }
    });
}

/// The leaders whose supervisors reap them, for the SIGCHLD handler (which may not
/// lock): the exit of one of them does not wake the reaping thread, since its
/// supervisor reaps it and then looks at runner's children itself
/// ([`Tracker::may_have_members`], which also reaps the zombie orphans it meets). That
/// spares a wakeup of the thread and a read of the children list for each attempt.
///
/// SIGCHLDs that arrive together are delivered as one, with the first one's pid: an
/// orphan that died along with a leader is then reaped by that leader's supervisor, when
/// it looks at runner's children after its attempt, and not later than that.
///
/// A slot is taken before the spawn and the child writes its own pid into it before it
/// execs ([`reserve_leader`]): listed by the parent once the spawn returned, a program as
/// quick as `true` had often exited already, on a busy machine where the parent waits for
/// a CPU after the exec, and its SIGCHLD, taken by another thread, woke the reaping
/// thread for nothing: for some 30% of the runs of a daemon starting 1,000 a second.
static LEADERS: [AtomicI32; LEADER_SLOTS] = [const { AtomicI32::new(0) }; LEADER_SLOTS];

/// Leaders listed in [`LEADERS`] at once; more still run, and wake the thread.
const LEADER_SLOTS: usize = 1024;

/// A slot of [`LEADERS`] taken and not yet named: it matches no pid.
const LEADER_RESERVED: i32 = -1;

/// How many slots at the front of [`LEADERS`] have ever been taken: the SIGCHLD handler
/// looks only at those. Slots are taken first free first, so this is the most leaders
/// that ran at once, not all 1,024 slots for each exit.
static LEADERS_USED: AtomicUsize = AtomicUsize::new(0);

/// Takes a free slot of [`LEADERS`] for a leader about to be spawned, if there is one.
fn reserve_leader() -> Option<&'static AtomicI32> {
    let (index, cell) = LEADERS.iter().enumerate().find(|(_, cell)| {
        cell.compare_exchange(0, LEADER_RESERVED, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })?;
    // Before the spawn, so the handler already looks at this slot when the child exits.
    LEADERS_USED.fetch_max(index + 1, Ordering::AcqRel);
    Some(cell)
}

/// Takes `pid` out of [`LEADERS`].
fn unlist_leader(pid: i32) {
    let used = LEADERS_USED.load(Ordering::Acquire);
    if let Some(cell) = LEADERS[..used]
        .iter()
        .find(|cell| cell.load(Ordering::Acquire) == pid)
    {
        let _ = cell.compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}

fn start_reaping() -> io::Result<()> {
    let (mut read, write) = UnixStream::pair()?;
    pgroup::wake_on_sigchld(write, &LEADERS, &LEADERS_USED)?;
    std::thread::Builder::new()
        .name("reaper".to_owned())
        .spawn(move || {
            let mut buf = [0u8; 64];
            // Each SIGCHLD writes a byte; one sweep answers all that arrived meanwhile.
            while read.read(&mut buf).is_ok_and(|n| n > 0) {
                sweep();
            }
        })?;
    // Orphans may have arrived before the thread (a re-exec'd runner as PID 1).
    sweep();
    Ok(())
}

/// Reaps the zombie children nobody waits for, and forgets kept processes that are gone.
/// Runner's orphans are read from its main thread's `children` file (see `own_children`);
/// the whole table is only read when there are kept processes to forget.
fn sweep() {
    let me = super::tree::own_pid();
    let children = super::tree::own_children();
    let needs_table = children.is_none() || with(|r| !r.kept.is_empty());
    let snapshot = if needs_table {
        Snapshot::take()
    } else {
        Snapshot::default()
    };
    let children: Vec<i32> =
        children.unwrap_or_else(|| snapshot.children(me).map(|p| p.pid).collect());
    settle_for(&children);
    with(|r| {
        for pid in children {
            // WNOHANG: a live child is left alone.
            if !r.spawned.contains(&pid) && !r.helpers.contains(&pid) {
                pgroup::reap(pid);
            }
        }
        if needs_table && !r.kept.is_empty() {
            r.kept
                .retain(|(pid, start)| snapshot.get(*pid).is_some_and(|p| p.start == *start));
            let live: HashSet<i32> = snapshot
                .iter()
                .filter(|p| !p.zombie)
                .flat_map(|p| [p.pgid, p.sid])
                .collect();
            r.kept_groups.retain(|g| live.contains(g));
        }
    });
}

/// Lists runner's own helper process `pid` (the guardian), which belongs to no attempt.
pub(crate) fn add_helper(pid: i32) {
    with(|r| r.helpers.insert(pid));
}

/// Whether `pid` is one of runner's helpers.
pub(crate) fn is_helper(pid: i32) -> bool {
    with(|r| r.helpers.contains(&pid))
}

/// One attempt's membership, from spawn until it is dropped.
#[derive(Debug)]
pub(crate) struct Tracker {
    id: u64,
    leader: i32,
}

/// Spawns `cmd` (see `spawn.rs`; the child lists its group in `listing`, a guardian's
/// slot) and starts tracking its processes.
pub(crate) fn spawn(
    cmd: &Command,
    listing: Option<&std::sync::atomic::AtomicI32>,
) -> io::Result<(Child, Tracker)> {
    // Until the child is listed below, whoever looks at runner's children waits for it
    // (see `settle`); other threads spawn, reap and look up members meanwhile.
    let spawn_id = with(|r| {
        r.next_spawn += 1;
        r.in_flight.insert(r.next_spawn);
        r.next_spawn
    });
    let before = pgroup::boot_ticks();
    let slot = reserve_leader();
    let spawned = spawn::spawn(cmd, listing, slot);
    if let Some(slot) = slot {
        // The child wrote its pid already, unless the spawn ran as a fork (valgrind).
        let pid = spawned.as_ref().map_or(0, |child| child.id() as i32);
        slot.store(pid, Ordering::Release);
    }
    let (since, until) = match (before, pgroup::boot_ticks(), &spawned) {
        (Some(before), Some(after), _) => (before, after),
        (_, _, Ok(child)) => {
            let leader = child.id() as i32;
            let start = std::fs::read_to_string(format!("/proc/{leader}/stat"))
                .ok()
                .and_then(|s| super::tree::start_of(leader, &s));
            (start.unwrap_or(0), start.unwrap_or(u64::MAX))
        }
        _ => (0, u64::MAX),
    };
    let mut wake = false;
    let tracked = with(|r| {
        r.in_flight.remove(&spawn_id);
        wake = r.settling > 0;
        spawned.map(|child| {
            let leader = child.id() as i32;
            r.spawned.insert(leader);
            r.next_id += 1;
            let id = r.next_id;
            r.attempts.insert(
                id,
                Track {
                    leader,
                    pgid: leader,
                    since,
                    until,
                    known: HashSet::new(),
                    groups: HashSet::from([leader]),
                },
            );
            (child, Tracker { id, leader })
        })
    });
    if wake {
        SETTLED.notify_all();
    }
    tracked
}

impl Tracker {
    /// The attempt's live processes now (the leader too while it runs), zombies
    /// excluded; zombie orphans met on the way are reaped.
    pub(crate) fn members(&self) -> Vec<Proc> {
        let snapshot = Snapshot::take();
        let me = super::tree::own_pid();
        settle_for(&snapshot.children(me).map(|p| p.pid).collect::<Vec<_>>());
        let (own_pgid, own_sid) = own_ids();
        with(|r| {
            for proc in snapshot.children(me) {
                if proc.zombie && !r.spawned.contains(&proc.pid) {
                    pgroup::reap(proc.pid);
                }
            }
            let Some(track) = r.attempts.get(&self.id) else {
                return Vec::new();
            };
            let mut roots: Vec<i32> = Vec::new();
            if snapshot
                .get(track.leader)
                .is_some_and(|p| (track.since..=track.until).contains(&p.start))
            {
                roots.push(track.leader);
            }
            for proc in snapshot.iter() {
                if proc.pid == me || r.helpers.contains(&proc.pid) {
                    continue;
                }
                let orphan = proc.ppid == me && !r.spawned.contains(&proc.pid);
                if proc.pgid == track.pgid
                    || track.known.contains(&proc.key())
                    || (orphan && attribute(r, proc) == Some(self.id))
                {
                    roots.push(proc.pid);
                }
            }
            let mut seen: HashSet<i32> = HashSet::new();
            let mut members = Vec::new();
            while let Some(pid) = roots.pop() {
                if pid == me || !seen.insert(pid) {
                    continue;
                }
                let Some(proc) = snapshot.get(pid) else {
                    continue;
                };
                roots.extend(snapshot.children(pid).map(|c| c.pid));
                if !proc.zombie && !r.helpers.contains(&pid) && !r.kept.contains(&proc.key()) {
                    members.push(*proc);
                }
            }
            let track = r.attempts.get_mut(&self.id).expect("looked up above");
            for proc in &members {
                track.known.insert(proc.key());
                for id in [proc.pid, proc.pgid] {
                    if id != own_pgid && id != own_sid {
                        track.groups.insert(id);
                    }
                }
            }
            members
        })
    }

    /// Whether the attempt may still have members, cheaply (no scan of the whole
    /// table): once the leader is reaped, an empty group and no child of runner besides
    /// leaders and helpers mean none, since any escaped process descends from a live
    /// group member or from an orphan, and an orphan is runner's child. Zombie orphans
    /// are reaped on the way (all of a dead group's zombies are runner's children).
    pub(crate) fn may_have_members(&self) -> bool {
        let Some(children) = super::tree::own_children() else {
            return true;
        };
        settle_for(&children);
        let orphans: Vec<i32> = with(|r| {
            children
                .into_iter()
                .filter(|c| !r.spawned.contains(c) && !r.helpers.contains(c))
                .collect()
        });
        let mut live = false;
        for orphan in orphans {
            live |= !pgroup::reap(orphan);
        }
        live || pgroup::group_exists(self.leader)
    }

    /// The leader was reaped by its supervisor: the reaper may reap its pid from now on
    /// (should it ever be reused by an orphan).
    pub(crate) fn leader_reaped(&self) {
        with(|r| {
            if r.spawned.remove(&self.leader) {
                unlist_leader(self.leader);
            }
        });
    }

    /// Remembers `procs` as kept leftovers, nobody's members from now on.
    pub(crate) fn keep(&self, procs: &[Proc]) {
        let (own_pgid, own_sid) = own_ids();
        with(|r| {
            for proc in procs {
                r.kept.insert(proc.key());
                for id in [proc.pid, proc.pgid] {
                    if id != own_pgid && id != own_sid {
                        r.kept_groups.insert(id);
                    }
                }
            }
        });
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        with(|r| {
            r.attempts.remove(&self.id);
            if r.spawned.remove(&self.leader) {
                unlist_leader(self.leader);
            }
        });
    }
}

/// The attempt an orphan (a child of runner it did not spawn) belongs to, if it can be
/// told.
fn attribute(r: &Registry, proc: &Proc) -> Option<u64> {
    if r.kept.contains(&proc.key())
        || r.kept_groups.contains(&proc.pgid)
        || r.kept_groups.contains(&proc.sid)
    {
        return None;
    }
    if let Some((id, _)) = r.attempts.iter().find(|(_, t)| {
        t.known.contains(&proc.key())
            || t.groups.contains(&proc.pgid)
            || t.groups.contains(&proc.sid)
    }) {
        return Some(*id);
    }
    let mut candidates = r.attempts.iter().filter(|(_, t)| t.since <= proc.start);
    match (candidates.next(), candidates.next()) {
        (Some((id, _)), None) => Some(*id),
        _ => None,
    }
}

/// As PID 1, what an init does before it exits: SIGTERM to every process left, SIGKILL
/// to those still there after `grace`, and reap them all, so nothing is cut off without
/// a chance to finish (the kernel would SIGKILL them the moment PID 1 exits).
pub(crate) fn shutdown_as_init(grace: std::time::Duration) {
    if !pgroup::is_init() {
        return;
    }
    let me = super::tree::own_pid();
    let others = || -> Vec<i32> {
        sweep();
        let snapshot = Snapshot::take();
        snapshot
            .iter()
            .filter(|p| p.pid != me && !p.zombie && !is_helper(p.pid))
            .map(|p| p.pid)
            .collect()
    };
    if others().is_empty() {
        return;
    }
    pgroup::signal_everyone(nix::sys::signal::Signal::SIGTERM);
    pgroup::signal_everyone(nix::sys::signal::Signal::SIGCONT);
    let end = std::time::Instant::now() + grace;
    let mut pause = std::time::Duration::from_millis(1);
    while std::time::Instant::now() < end {
        if others().is_empty() {
            return;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(50));
    }
    pgroup::signal_everyone(nix::sys::signal::Signal::SIGKILL);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !others().is_empty() && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
