//! The thread that writes a chain's records, so that a busy or full store never stalls
//! the chain (contract section 12: a boot chain waits for nothing it does not need).
//!
//! The chain thread sends [`Op`]s in order; this thread applies each to the store, one
//! transaction per state change (a one-at-a-time chain's thread gathers the records of
//! a few milliseconds into one: see [`GATHER`]). A write that fails for a reason that passes
//! (the database is locked or busy, the disk is full, an I/O error) is retried with a
//! growing pause until it succeeds, so the record ends with the real result once the
//! store is writable again; later operations wait in the channel behind it, in order.
//! Any other failure (a newer schema, a database that cannot be opened at all) stops
//! recording with one warning, as before.
//!
//! Kill -9 safety is kept by the front ([`super::StoreRecorder`]): while the store is
//! healthy, the front waits for each write to land before the chain goes on, so a
//! started run is on disk before its first task runs; once a write was refused (the
//! `troubled` flag, which wakes the front's wait), it stops waiting until a write
//! succeeds again. When the process exits while the store still refuses writes, this
//! thread hands what is pending to a finisher ([`super::spool`]) instead of giving up;
//! [`replay`] is how a finisher (or the job's next run) writes it, skipping what is in
//! the store already. While the store is
//! open and healthy and nothing is queued, the front even applies the operation itself
//! ([`Writer::apply_here`]) instead of handing it over and waiting: the same write,
//! without two thread switches per state change.
//!
//! With a fleet database (section 13) each operation, once written to the local store,
//! is mirrored to PostgreSQL. If PostgreSQL cannot be reached when the first operation
//! comes, or goes away mid-run, one warning says so, mirroring stops, the run is marked
//! in the local store, and it is sent whole once PostgreSQL answers again: at this run's
//! end if it is back by then, else at the next run's start. The local store stays the
//! record of truth; a fleet failure never stalls or fails the chain.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::backend::RunStore;
use super::checkpoint::{COMMITS_PER_CHECKPOINT, Checkpointer, Restart};
use super::fleet_sync;
use super::fleet_url::FleetUrl;
use super::model::{InstanceStatus, RunStatus};
use super::owner::Owner;
use super::postgres::PgStore;
use super::spool::{self, Spool};
use super::sqlite::{AttemptEnding, GatheredStart, NewRun, Store, StoreError};

/// The first pause before retrying a failed write; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(20);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// SQLite's own wait for a lock, per try on this thread; the chain waits for the first
/// try at most, so this is also how soon a locked store is noticed.
const BUSY_WAIT: Duration = Duration::from_millis(50);

/// SQLite's wait for a lock when the chain's thread writes itself ([`Writer::apply_here`]):
/// a lock held longer than a normal transaction hands the write to this thread.
const FRONT_BUSY_WAIT: Duration = Duration::from_millis(10);

/// How long a one-at-a-time chain holds its records back to write them together: an
/// attempt that starts is written with what comes in the next few milliseconds (its own
/// end, the next attempts) in one transaction, or on its own once the time is up while
/// it still runs. A chain of quick tasks pays for a transaction every few tasks rather
/// than for every one; no record waits longer than this (plus the supervising loop's
/// reaction) to be written, and a chain about to wait for anything writes first.
pub(crate) const GATHER: Duration = Duration::from_millis(5);

/// The recorder connection's page cache: 256 KiB (a negative `cache_size` counts KiB).
const WRITER_CACHE: i64 = -256;

/// With a checkpoint thread, the recorder's connection still checkpoints by itself once
/// the WAL holds this many frames (about 16 MiB). A passive checkpoint running beside a
/// steady stream of commits never finds the WAL fully copied, and only a fully copied
/// WAL starts over from its beginning: without this bound a long chain's WAL grows by
/// every page it writes. This connection's own checkpoint, taken after its commit,
/// finds little left to copy (the thread copied the rest) and lets the next commit
/// start the WAL over.
const WRITER_WAL_FRAMES: i64 = 4_000;

/// The size the WAL file is cut back to when it starts over: 4 MiB, SQLite's own
/// threshold of 1,000 frames.
const WAL_SIZE_LIMIT: i64 = 4 * 1024 * 1024;

/// One state change of a chain, with everything it needs owned; a finisher reads it
/// back from a spool file ([`super::spool`]) as it was written.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    /// Finalize the job's runs whose recorder died.
    FinalizeLost,
    /// A run began (or, attached, its instances were planned; resumed, it goes on).
    RunStarted {
        run_id: String,
        job: String,
        started: SystemTime,
        trigger_type: String,
        trigger_data: serde_json::Value,
        session: String,
        output_dir: PathBuf,
        tasks: Vec<(String, String)>,
    },
    /// An attempt began.
    AttemptStarted {
        run_id: String,
        task: String,
        file: String,
        instance: u32,
        try_num: u32,
        started: SystemTime,
        output: Option<PathBuf>,
    },
    /// An attempt ended; written with the next state change.
    AttemptFinished {
        task: String,
        instance: u32,
        try_num: u32,
        ending: Box<AttemptEnding>,
    },
    /// Write the attempt endings held back.
    Flush,
    /// An instance changed state without an attempt.
    InstanceStatus {
        run_id: String,
        task: String,
        file: String,
        instance: u32,
        status: InstanceStatus,
    },
    /// A task instance's events were decided.
    EventsWaited {
        run_id: String,
        task: String,
        file: String,
        instance: u32,
        since: Option<SystemTime>,
        decided: SystemTime,
        events: Vec<crate::record::EventWait>,
    },
    /// The run ended.
    RunFinished {
        run_id: String,
        status: RunStatus,
        exit_code: i32,
        stopped: SystemTime,
    },
}

/// How far the writer got, shared with the front.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Operations applied (or dropped for good), in order.
    done: Mutex<u64>,
    changed: Condvar,
    /// Recording stopped for good.
    pub(crate) dead: AtomicBool,
    /// The store refused the last write for now (or the writer is far behind): the
    /// chain does not wait for records until a write succeeds again.
    pub(crate) troubled: AtomicBool,
}

impl Progress {
    /// Waits until `seq` operations are done, at most `limit`; whether they are.
    pub(crate) fn wait_for(&self, seq: u64, limit: Duration) -> bool {
        self.wait(seq, limit, false)
    }

    /// As [`Progress::wait_for`], but gives up as soon as the store refuses a write (or
    /// recording stopped): the chain never waits out someone else's lock.
    pub(crate) fn wait_healthy(&self, seq: u64, limit: Duration) -> bool {
        self.wait(seq, limit, true)
    }

    fn wait(&self, seq: u64, limit: Duration, healthy_only: bool) -> bool {
        let deadline = Instant::now() + limit;
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while *done < seq {
            if healthy_only
                && (self.troubled.load(Ordering::Relaxed) || self.dead.load(Ordering::Relaxed))
            {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            done = self
                .changed
                .wait_timeout(done, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// How many operations are done.
    pub(crate) fn done(&self) -> u64 {
        *self.done.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn advance(&self) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.changed.notify_all();
    }

    /// Marks the store as refusing writes (or not), waking whoever waits for records.
    pub(crate) fn set_troubled(&self, troubled: bool) {
        let _guard = self.done.lock().unwrap_or_else(|e| e.into_inner());
        self.troubled.store(troubled, Ordering::Relaxed);
        self.changed.notify_all();
    }

    /// Marks recording as stopped for good, waking whoever waits for records.
    pub(crate) fn set_dead(&self) {
        let _guard = self.done.lock().unwrap_or_else(|e| e.into_inner());
        self.dead.store(true, Ordering::Relaxed);
        self.changed.notify_all();
    }
}

/// What the writer thread owns.
pub(crate) struct Writer {
    pub(crate) store_path: PathBuf,
    pub(crate) job: String,
    pub(crate) owner: Owner,
    pub(crate) attached: bool,
    /// Continuing a run that already exists (replay, skip): its rows are there.
    pub(crate) resumed: bool,
    pub(crate) progress: Arc<Progress>,
    /// Set by the front when the process is about to exit: give up retrying then.
    pub(crate) closing: Arc<(Mutex<Option<Instant>>, Condvar)>,
    /// Checkpoints the store off the chain's thread (see [`super::checkpoint`]); declared
    /// before `store` so that it is dropped, and its connection closed, first.
    checkpointer: Option<Checkpointer>,
    /// Commits since the last checkpoint was asked for.
    commits: u32,
    store: Option<Store>,
    instances: HashMap<(String, u32), i64>,
    attempts: HashMap<(String, u32, u32), i64>,
    ended: Vec<AttemptEnding>,
    /// Attempts started and not written yet (see [`GATHER`]), in order.
    held: Vec<HeldStart>,
    /// When the oldest record not written yet (in `held` or `ended`) was made.
    held_since: Option<Instant>,
    /// The operation being applied may be held back ([`Writer::apply_gathered`]).
    gathering: bool,
    warned: bool,
    /// The fleet database named, if any, and the host runs are recorded with.
    fleet_url: Option<FleetUrl>,
    host: String,
    /// The fleet mirror, while PostgreSQL answers.
    fleet: Option<Mirror>,
    /// Whether connecting to the fleet database was tried yet.
    fleet_tried: bool,
    /// The run being recorded, and whether it still has to be sent to the fleet.
    current: Option<(String, bool)>,
    /// Each started attempt's output file, by its local row id.
    outputs: HashMap<i64, PathBuf>,
    /// Writing records a runner that exited left pending ([`super::spool`]): what is
    /// in the store already is not written again.
    replaying: bool,
    /// The run being recorded, for the spool and for replaying.
    run_id: Option<String>,
}

/// An attempt started and held back, with what the spool needs to write it later.
struct HeldStart {
    run_id: String,
    task: String,
    file: String,
    instance: u32,
    try_num: u32,
    instance_id: i64,
    started: SystemTime,
    output: Option<PathBuf>,
    /// Its ending, when it ended before it was written.
    ending: Option<AttemptEnding>,
}

impl HeldStart {
    fn is(&self, task: &str, instance: u32, try_num: u32) -> bool {
        self.task == task && self.instance == instance && self.try_num == try_num
    }
}

/// How applying one operation ended.
enum Applied {
    /// Written, or dropped for good.
    Done,
    /// The process is exiting and the store still refuses it: hand it on.
    HandOver,
}

/// The fleet database and the ids its rows got, by the local rows' ids.
struct Mirror {
    store: PgStore,
    instances: HashMap<i64, i64>,
    attempts: HashMap<i64, i64>,
}

impl Mirror {
    fn translate(&self, ended: &[AttemptEnding]) -> Vec<AttemptEnding> {
        ended
            .iter()
            .filter_map(|e| {
                let mut e = e.clone();
                e.attempt_id = *self.attempts.get(&e.attempt_id)?;
                e.instance_id = *self.instances.get(&e.instance_id)?;
                Some(e)
            })
            .collect()
    }

    /// The fleet row of the local instance `local`, looked up once.
    fn instance(
        &mut self,
        local: i64,
        run_id: &str,
        task: &str,
        file: &str,
        n: u32,
    ) -> Result<i64, StoreError> {
        if let Some(&id) = self.instances.get(&local) {
            return Ok(id);
        }
        let id = self.store.instance_id(run_id, task, file, n)?;
        self.instances.insert(local, id);
        Ok(id)
    }
}

/// Whether a failure passes by itself: someone else holds the database, or the disk is
/// full or failing for the moment.
fn is_transient(e: &StoreError) -> bool {
    let StoreError::Sqlite { source, .. } = e else {
        return false;
    };
    use rusqlite::ErrorCode::*;
    matches!(
        source.sqlite_error_code(),
        Some(DatabaseBusy | DatabaseLocked | DiskFull | SystemIoFailure)
    )
}

impl Writer {
    /// A writer for the store at `store_path`.
    #[expect(
        clippy::too_many_arguments,
        reason = "one writer per chain, built in one place from the recorder's fields"
    )]
    pub(crate) fn new(
        store_path: PathBuf,
        fleet_url: Option<FleetUrl>,
        host: String,
        job: String,
        owner: Owner,
        attached: bool,
        resumed: bool,
        progress: Arc<Progress>,
        closing: Arc<(Mutex<Option<Instant>>, Condvar)>,
    ) -> Writer {
        Writer {
            store_path,
            job,
            owner,
            attached,
            resumed,
            progress,
            closing,
            checkpointer: None,
            commits: 0,
            store: None,
            instances: HashMap::new(),
            attempts: HashMap::new(),
            ended: Vec::new(),
            held: Vec::new(),
            held_since: None,
            gathering: false,
            warned: false,
            fleet_url,
            host,
            fleet: None,
            fleet_tried: false,
            current: None,
            outputs: HashMap::new(),
            replaying: false,
            run_id: None,
        }
    }

    /// Applies every operation until the front hangs up.
    pub(crate) fn run(writer: Arc<Mutex<Writer>>, ops: Receiver<Op>) {
        loop {
            let op = match ops.recv_timeout(Duration::from_secs(3600)) {
                Ok(op) => op,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut this = writer.lock().unwrap_or_else(|e| e.into_inner());
            let mut handed = 1;
            if !this.progress.dead.load(Ordering::Relaxed)
                && let Applied::HandOver = this.apply_with_retries(&op)
            {
                // The front has hung up: what is queued is all there is.
                let mut pending = vec![op];
                pending.extend(ops.iter());
                handed = pending.len();
                this.hand_over(pending);
            }
            let progress = Arc::clone(&this.progress);
            drop(this);
            for _ in 0..handed {
                progress.advance();
            }
        }
    }

    /// Writes `pending` (and what this writer knows) to a spool file and starts the
    /// finisher that writes them once the store is writable ([`super::spool`]).
    fn hand_over(&mut self, pending: Vec<Op>) {
        // Held-back attempts go first, as the operations they came as.
        let mut ops = Vec::with_capacity(self.held.len() * 2 + pending.len());
        for held in std::mem::take(&mut self.held) {
            ops.push(Op::AttemptStarted {
                run_id: held.run_id,
                task: held.task.clone(),
                file: held.file,
                instance: held.instance,
                try_num: held.try_num,
                started: held.started,
                output: held.output,
            });
            if let Some(ending) = held.ending {
                ops.push(Op::AttemptFinished {
                    task: held.task,
                    instance: held.instance,
                    try_num: held.try_num,
                    ending: Box::new(ending),
                });
            }
        }
        ops.extend(pending);
        let pending = ops;
        let spool = Spool {
            store: self.store_path.clone(),
            job: self.job.clone(),
            host: self.host.clone(),
            attached: self.attached,
            resumed: self.resumed,
            owner_pid: self.owner.pid,
            owner_start_ticks: self.owner.start_ticks,
            owner_boot_id: self.owner.boot_id.clone(),
            run_id: self.run_id.clone().or_else(|| {
                pending.iter().find_map(|op| match op {
                    Op::RunStarted { run_id, .. } => Some(run_id.clone()),
                    _ => None,
                })
            }),
            attempts: self
                .attempts
                .iter()
                .map(|((task, n, t), id)| (task.clone(), *n, *t, *id))
                .collect(),
            ended: self.ended.clone(),
            ops: pending,
        };
        let started = spool::write(&spool)
            .and_then(|(path, file)| spool::start_finisher(&path, file).map(|()| path));
        match started {
            Ok(path) => log::warn!(
                "the run store is still locked; this run's last records are kept in {} and written by a background runner once it is writable",
                path.display()
            ),
            Err(e) => log::warn!(
                "cannot keep this run's last records for later ({e}); the end of this run is not recorded"
            ),
        }
        self.progress.set_dead();
    }

    /// Applies `op` once, on the caller's thread (the chain's), when the store is open,
    /// healthy and nothing waits in the channel: the write lands as it would here, minus
    /// the hand-over between two threads that a trivial task paid twice. Returns `false`
    /// when `op` must go through the channel after all: the store is not open yet, a
    /// fleet database is mirrored (PostgreSQL must not stall the chain), or the write
    /// failed for a reason that passes, which the thread then retries and reports.
    pub(crate) fn apply_here(&mut self, op: &Op) -> bool {
        if self.fleet_url.is_some() || self.store.is_none() {
            return false;
        }
        // Never SQLite's longer wait on the chain's thread: a lock held longer than a
        // transaction takes hands the write to the recording thread, which retries.
        self.set_busy_wait(FRONT_BUSY_WAIT);
        let applied = self.apply(op);
        self.set_busy_wait(BUSY_WAIT);
        match applied {
            Ok(()) => true,
            Err(e) if is_transient(&e) => {
                self.progress.set_troubled(true);
                false
            }
            Err(e) => {
                log::warn!(
                    "cannot record this run ({}); the chain goes on without recording",
                    crate::logging::one_line(&e)
                );
                self.progress.set_dead();
                true
            }
        }
    }

    /// As [`Writer::apply_here`], but an attempt's start may be held back to be written
    /// with the records that follow it (see [`GATHER`]); [`Writer::gathered_due`] says
    /// by when what is held must be written.
    pub(crate) fn apply_gathered(&mut self, op: &Op) -> bool {
        self.gathering = true;
        let applied = self.apply_here(op);
        self.gathering = false;
        applied
    }

    /// When the records held back must be written, if any are.
    pub(crate) fn gathered_due(&self) -> Option<Instant> {
        // Recording stopped for good: nothing more will be written.
        if (self.held.is_empty() && self.ended.is_empty())
            || self.progress.dead.load(Ordering::Relaxed)
        {
            return None;
        }
        self.held_since.map(|since| since + GATHER)
    }

    fn set_busy_wait(&mut self, wait: Duration) {
        if let Some(store) = &self.store
            && let Err(e) = store.conn.busy_timeout(wait)
        {
            log::debug!("cannot set the run store's busy timeout: {e}");
        }
    }

    fn apply_with_retries(&mut self, op: &Op) -> Applied {
        let mut pause = FIRST_PAUSE;
        let mut episode = false;
        loop {
            // The endings held back, for the fleet mirror (nothing without a fleet).
            let ended = match self.fleet_url {
                Some(_) => self.ended.clone(),
                None => Vec::new(),
            };
            match self.apply(op) {
                Ok(()) => {
                    if self.fleet_url.is_some() {
                        self.mirror_op(op, &ended);
                    }
                    self.progress.set_troubled(false);
                    if episode {
                        log::info!("the run store is writable again; recording caught up");
                    }
                    return Applied::Done;
                }
                Err(e) if is_transient(&e) => {
                    if !episode && !self.warned {
                        log::warn!(
                            "cannot write the run store for now ({}); the chain goes on and its records follow when the store is writable",
                            crate::logging::one_line(&e)
                        );
                        self.warned = true;
                    }
                    episode = true;
                    self.progress.set_troubled(true);
                    if !self.pause(pause) {
                        return Applied::HandOver;
                    }
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                Err(e) => {
                    log::warn!(
                        "cannot record this run ({}); the chain goes on without recording",
                        crate::logging::one_line(&e)
                    );
                    self.progress.set_dead();
                    return Applied::Done;
                }
            }
        }
    }

    /// Sleeps `pause` before a retry (less when the front's exit deadline comes first; the
    /// front setting a deadline ends the sleep, for one more try at once); `false` once
    /// the deadline has passed.
    fn pause(&self, pause: Duration) -> bool {
        let (lock, changed) = &*self.closing;
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let before = *guard;
        let wait = match before {
            Some(deadline) => pause.min(deadline.saturating_duration_since(Instant::now())),
            None => pause,
        };
        if wait.is_zero() {
            return before.is_none();
        }
        let (guard, _) = changed
            .wait_timeout(guard, wait)
            .unwrap_or_else(|e| e.into_inner());
        guard.is_none_or(|deadline| Instant::now() < deadline)
    }

    fn store(&mut self) -> Result<&mut Store, StoreError> {
        if self.store.is_none() {
            // A short busy timeout, opening too: this thread retries by itself, and a
            // locked store should be noticed (and the chain stop waiting) at once.
            let store = Store::open_file_waiting(&self.store_path, BUSY_WAIT)?;
            // A chain step touches a few dozen pages (the ends of five B-trees); SQLite's
            // default 2 MiB cache only ever fills with the pages the chain appended.
            if let Err(e) = store.conn.pragma_update(None, "cache_size", WRITER_CACHE) {
                log::debug!("cannot size the run store's page cache: {e}");
            }
            if let Err(e) = store
                .conn
                .pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
            {
                log::debug!("cannot limit the size of the run store's WAL: {e}");
            }
            self.checkpointer =
                Checkpointer::start(&self.store_path, Restart::Never).filter(|_| {
                    // SQLite's own checkpoints on this connection only as a bound, or no thread.
                    store
                        .conn
                        .pragma_update_and_check(
                            None,
                            "wal_autocheckpoint",
                            WRITER_WAL_FRAMES,
                            |r| r.get::<_, i64>(0),
                        )
                        .map_err(|e| log::debug!("cannot leave checkpoints to their thread: {e}"))
                        .is_ok()
                });
            self.store = Some(store);
        }
        Ok(self.store.as_mut().expect("just opened"))
    }

    /// Counts a commit, asking for a checkpoint every [`COMMITS_PER_CHECKPOINT`].
    fn committed(&mut self) {
        self.commits += 1;
        if self.commits >= COMMITS_PER_CHECKPOINT {
            self.commits = 0;
            if let Some(checkpointer) = &self.checkpointer {
                checkpointer.wake();
            }
        }
    }

    fn instance(
        &mut self,
        run_id: &str,
        task: &str,
        file: &str,
        n: u32,
    ) -> Result<i64, StoreError> {
        let key = (task.to_owned(), n);
        if let Some(id) = self.instances.get(&key) {
            return Ok(*id);
        }
        let id = self.store()?.instance_id(run_id, task, file, n)?;
        self.instances.insert(key, id);
        Ok(id)
    }

    /// Learns the ids of the run's task instances at once, rather than one query for
    /// each attempt's first start.
    fn known_instances(&mut self, run_id: &str) -> Result<(), StoreError> {
        for (task, n, id) in self.store()?.instance_ids(run_id)? {
            self.instances.insert((task, n), id);
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Result<(), StoreError> {
        self.apply_op(op)?;
        self.committed();
        Ok(())
    }

    fn apply_op(&mut self, op: &Op) -> Result<(), StoreError> {
        match op {
            Op::FinalizeLost => {
                let job = self.job.clone();
                for run_id in self.store()?.finalize_lost(Some(&job))? {
                    log::warn!(
                        "run {run_id} of job \"{job}\" was left unfinished by a runner that died; recorded as lost"
                    );
                }
            }
            Op::RunStarted {
                run_id,
                job,
                started,
                trigger_type,
                trigger_data,
                session,
                output_dir,
                tasks,
            } => {
                self.run_id = Some(run_id.clone());
                if self.replaying {
                    // The row ids and endings the spool carries are this run's.
                    let written = if self.attached {
                        self.query_exists(
                            "SELECT 1 FROM task_instances WHERE run_id = ?1",
                            [run_id],
                        )?
                    } else {
                        self.run_recorded(run_id)?
                    };
                    if !self.resumed && written {
                        return Ok(());
                    }
                } else {
                    self.instances.clear();
                    self.attempts.clear();
                    self.ended.clear();
                    self.held.clear();
                    self.held_since = None;
                }
                // Resumed, its run, instances and earlier attempts are recorded already.
                if !self.resumed {
                    let (attached, owner, host) =
                        (self.attached, self.owner.clone(), self.host.clone());
                    let start = RunStart {
                        run_id,
                        job,
                        started: *started,
                        trigger_type,
                        trigger_data,
                        session,
                        output_dir,
                        tasks,
                    };
                    start.record(self.store()?, attached, &owner, &host)?;
                }
                self.known_instances(run_id)?;
            }
            Op::AttemptStarted {
                run_id,
                task,
                file,
                instance,
                try_num,
                started,
                output,
            } => {
                self.run_id = Some(run_id.clone());
                let instance_id = self.instance(run_id, task, file, *instance)?;
                self.drop_written_endings()?;
                if self.replaying
                    && let Some((id, _)) = self.recorded_attempt(task, *instance, *try_num)?
                {
                    self.flush()?;
                    self.attempts
                        .insert((task.clone(), *instance, *try_num), id);
                    return Ok(());
                }
                if self.gathering && !self.replaying {
                    if !self.held.iter().any(|h| h.is(task, *instance, *try_num)) {
                        self.held.push(HeldStart {
                            run_id: run_id.clone(),
                            task: task.clone(),
                            file: file.clone(),
                            instance: *instance,
                            try_num: *try_num,
                            instance_id,
                            started: *started,
                            output: output.clone(),
                            ending: None,
                        });
                        self.held_since.get_or_insert_with(Instant::now);
                    }
                    if self.gathered_due().is_some_and(|due| due <= Instant::now()) {
                        self.write_held()?;
                    }
                    return Ok(());
                }
                // In order: what is held back is written before this start (and the
                // start itself, when a refused gathered write comes back here).
                if !self.held.is_empty() {
                    let was_held = self.held.iter().any(|h| h.is(task, *instance, *try_num));
                    self.write_held()?;
                    if was_held {
                        return Ok(());
                    }
                }
                let ended = self.ended.clone();
                let id = self.store()?.record_attempts(
                    &ended,
                    Some((instance_id, *try_num, *started, output.as_deref())),
                )?;
                self.ended.clear();
                self.held_since = None;
                if let Some(id) = id {
                    self.attempts
                        .insert((task.clone(), *instance, *try_num), id);
                }
            }
            Op::AttemptFinished {
                task,
                instance,
                try_num,
                ending,
            } => {
                if let Some(held) = self
                    .held
                    .iter_mut()
                    .find(|h| h.is(task, *instance, *try_num))
                {
                    if held.ending.is_none() {
                        let mut ending = (**ending).clone();
                        ending.instance_id = held.instance_id;
                        held.ending = Some(ending);
                    }
                    return Ok(());
                }
                // An attempt whose start was never written has no row to end.
                let key = (task.clone(), *instance, *try_num);
                let known = match (
                    self.attempts.remove(&key),
                    self.instances.get(&(task.clone(), *instance)),
                ) {
                    (Some(id), Some(&instance_id)) => Some((id, instance_id)),
                    _ if self.replaying => self.recorded_attempt(task, *instance, *try_num)?,
                    _ => None,
                };
                let Some((id, instance_id)) = known else {
                    return Ok(());
                };
                let mut ending = (**ending).clone();
                ending.attempt_id = id;
                ending.instance_id = instance_id;
                self.ended.push(ending);
                self.held_since.get_or_insert_with(Instant::now);
            }
            Op::Flush => self.flush()?,
            Op::InstanceStatus {
                run_id,
                task,
                file,
                instance,
                status,
            } => {
                self.flush()?;
                let instance_id = self.instance(run_id, task, file, *instance)?;
                self.store()?.set_instance_status(instance_id, *status)?;
            }
            Op::EventsWaited {
                run_id,
                task,
                file,
                instance,
                since,
                decided,
                events,
            } => {
                let instance_id = self.instance(run_id, task, file, *instance)?;
                if self.replaying
                    && self.query_exists(
                        "SELECT 1 FROM instance_events WHERE instance_id = ?1",
                        [instance_id],
                    )?
                {
                    return Ok(());
                }
                self.store()?
                    .record_instance_events(instance_id, *since, *decided, events)?;
            }
            Op::RunFinished {
                run_id,
                status,
                exit_code,
                stopped,
            } => {
                self.flush()?;
                // An attached chain's run is the daemon's to finish.
                if self.attached {
                } else if self.replaying {
                    self.finish_replayed(run_id, *status, *exit_code, *stopped)?;
                } else {
                    self.store()?
                        .finish_run(run_id, *status, Some(*exit_code), Some(*stopped))?;
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.drop_written_endings()?;
        if self.held.is_empty() && self.ended.is_empty() {
            self.held_since = None;
            return Ok(());
        }
        self.write_held()
    }

    /// Writes the endings and the starts held back, in one transaction; what it holds
    /// is let go only once the transaction is committed.
    fn write_held(&mut self) -> Result<(), StoreError> {
        let held = std::mem::take(&mut self.held);
        let ended = std::mem::take(&mut self.ended);
        let starts: Vec<GatheredStart<'_>> = held
            .iter()
            .map(|h| GatheredStart {
                instance_id: h.instance_id,
                try_num: h.try_num,
                started: h.started,
                output: h.output.as_deref(),
                ending: h.ending.as_ref(),
            })
            .collect();
        let written = self
            .store()
            .and_then(|store| store.record_gathered(&ended, &starts));
        drop(starts);
        match written {
            Ok(ids) => {
                for (held, id) in held.into_iter().zip(ids) {
                    if held.ending.is_none() {
                        self.attempts
                            .insert((held.task, held.instance, held.try_num), id);
                    }
                }
                self.held_since = None;
                Ok(())
            }
            Err(e) => {
                self.held = held;
                self.ended = ended;
                Err(e)
            }
        }
    }
}

/// Writes the records of `spool` (see [`super::spool`]), retrying while the store
/// refuses them for at most `wait`; whether all of them are written now.
pub(crate) fn replay(spool: Spool, wait: Option<Duration>) -> bool {
    let owner = spool.owner();
    let closing = Arc::new((Mutex::new(wait.map(|w| Instant::now() + w)), Condvar::new()));
    let mut writer = Writer::new(
        spool.store.clone(),
        // The fleet database hears of this run with the next one (it is marked pending
        // only by a writer that mirrors); the local store is the record of truth.
        None,
        spool.host.clone(),
        spool.job.clone(),
        owner,
        spool.attached,
        spool.resumed,
        Arc::new(Progress::default()),
        closing,
    );
    writer.replaying = true;
    writer.run_id = spool.run_id.clone();
    writer.attempts = spool
        .attempts
        .into_iter()
        .map(|(task, n, t, id)| ((task, n, t), id))
        .collect();
    writer.ended = spool.ended;
    for op in spool.ops {
        // The job's lost runs are finalized by its next chain (this one is not lost).
        if matches!(op, Op::FinalizeLost) {
            continue;
        }
        if let Applied::HandOver = writer.apply_with_retries(&op) {
            return false;
        }
        if writer.progress.dead.load(Ordering::Relaxed) {
            return false;
        }
    }
    true
}

/// What replaying checks, so that nothing already in the store is written twice.
impl Writer {
    fn run_recorded(&mut self, run_id: &str) -> Result<bool, StoreError> {
        self.query_exists(
            "SELECT 1 FROM runs_running WHERE run_id = ?1 UNION ALL
             SELECT 1 FROM runs WHERE run_id = ?1",
            rusqlite::params![run_id],
        )
    }

    fn query_exists(
        &mut self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<bool, StoreError> {
        let store = self.store()?;
        let found = store
            .conn
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.exists(params));
        found.map_err(|source| StoreError::Sqlite {
            path: self.store_path.clone(),
            source,
        })
    }

    /// The row of attempt `try_num` of `task` instance `n` in this run, if written.
    fn recorded_attempt(
        &mut self,
        task: &str,
        n: u32,
        try_num: u32,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        let Some(run_id) = self.run_id.clone() else {
            return Ok(None);
        };
        let store = self.store()?;
        let found = store
            .conn
            .prepare_cached(
                "SELECT a.id, a.instance_id FROM attempts a
                 JOIN task_instances i ON i.id = a.instance_id
                 WHERE i.run_id = ?1 AND i.name = ?2 AND i.instance = ?3 AND a.try_num = ?4",
            )
            .and_then(|mut stmt| {
                use rusqlite::OptionalExtension;
                stmt.query_row(rusqlite::params![run_id, task, n, try_num], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
            });
        found.map_err(|source| StoreError::Sqlite {
            path: self.store_path.clone(),
            source,
        })
    }

    /// Drops the held-back endings that are written already (replaying only).
    fn drop_written_endings(&mut self) -> Result<(), StoreError> {
        if !self.replaying {
            return Ok(());
        }
        let mut kept = Vec::new();
        for ending in std::mem::take(&mut self.ended) {
            let written = self.query_exists(
                "SELECT 1 FROM attempts WHERE id = ?1 AND stop_time IS NOT NULL",
                [ending.attempt_id],
            )?;
            if !written {
                kept.push(ending);
            }
        }
        self.ended = kept;
        Ok(())
    }

    /// Ends a run when replaying: as [`Store::finish_run`] while it is running; a run
    /// finalized as `lost` meanwhile gets its real end; a finished one is left alone.
    fn finish_replayed(
        &mut self,
        run_id: &str,
        status: RunStatus,
        exit_code: i32,
        stopped: SystemTime,
    ) -> Result<(), StoreError> {
        if self.query_exists("SELECT 1 FROM runs_running WHERE run_id = ?1", [run_id])? {
            return self
                .store()?
                .finish_run(run_id, status, Some(exit_code), Some(stopped));
        }
        if !self.query_exists(
            "SELECT 1 FROM run_meta WHERE run_id = ?1 AND status = 'lost'",
            [run_id],
        )? {
            return Ok(());
        }
        let path = self.store_path.clone();
        let store = self.store()?;
        let result = (|| {
            let tx = store
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "UPDATE runs SET stop_time = ?2, exit_code = ?3 WHERE run_id = ?1",
                rusqlite::params![run_id, super::sqlite::epoch(stopped), exit_code],
            )?;
            tx.execute(
                "UPDATE run_meta SET status = ?2 WHERE run_id = ?1",
                rusqlite::params![run_id, status.as_str()],
            )?;
            tx.commit()
        })();
        result.map_err(|source| StoreError::Sqlite { path, source })
    }
}

/// The fleet mirror (section 13): each operation after it is in the local store.
impl Writer {
    /// Connects to the fleet database on first use, sending what earlier runs could not.
    fn connect_fleet(&mut self) {
        if self.fleet_tried {
            return;
        }
        self.fleet_tried = true;
        let Some(url) = self.fleet_url.clone() else {
            return;
        };
        match PgStore::open(&url, &self.host) {
            Ok(mut pg) => {
                if let Ok(local) = self.store()
                    && let Err(e) = fleet_sync::send_pending(local, &mut pg)
                {
                    log::warn!(
                        "cannot send runs recorded while {} was unreachable ({}); they are kept here",
                        url.describe(),
                        crate::logging::one_line(&e)
                    );
                }
                self.fleet = Some(Mirror {
                    store: pg,
                    instances: HashMap::new(),
                    attempts: HashMap::new(),
                });
            }
            Err(e) => self.fleet_lost(&e),
        }
    }

    /// One warning: the fleet database is away; the run waits to be sent.
    fn fleet_lost(&mut self, e: &StoreError) {
        self.fleet = None;
        // The error names the database already (without its password).
        super::fleet_url::warn_away(&format!(
            "{}; recording in {} and sending the run there once it answers",
            crate::logging::one_line(e),
            self.store_path.display()
        ));
        self.mark_pending();
    }

    /// Marks the current run as still to be sent (never an attached run: the daemon
    /// records that one).
    fn mark_pending(&mut self) {
        if self.attached {
            return;
        }
        let Some((run_id, false)) = self.current.clone() else {
            return;
        };
        self.current = Some((run_id.clone(), true));
        if let Ok(store) = self.store()
            && let Err(e) = store.mark_fleet_pending(&run_id)
        {
            log::debug!("cannot mark run {run_id} to be sent later: {e}");
        }
    }

    /// At a run's end: if its records still have to go to the fleet, try once more.
    fn send_if_pending(&mut self) {
        let (Some(url), Some((_, true))) = (self.fleet_url.clone(), self.current.clone()) else {
            return;
        };
        // Bounded by the connect timeout; a database still away costs one attempt.
        let Ok(mut pg) = PgStore::open(&url, &self.host) else {
            return;
        };
        let Ok(local) = self.store() else { return };
        match fleet_sync::send_pending(local, &mut pg) {
            Ok(_) => log::info!(
                "{} answers again; this run's records were sent",
                url.describe()
            ),
            Err(e) => log::debug!("cannot send pending runs yet: {e}"),
        }
    }

    /// Mirrors `op`, just written locally; `ended` are the attempt endings that were
    /// held back before it (local row ids).
    fn mirror_op(&mut self, op: &Op, ended: &[AttemptEnding]) {
        if let Op::RunStarted { run_id, .. } = op {
            // A run taken up again while the database was away is sent whole at its
            // end: the fleet's copy of it is not to be patched.
            let pending = self.resumed
                && self
                    .store()
                    .and_then(|s| s.is_fleet_pending(run_id))
                    .unwrap_or(false);
            self.current = Some((run_id.clone(), pending));
            self.outputs.clear();
            if let Some(m) = self.fleet.as_mut() {
                m.instances.clear();
                m.attempts.clear();
            }
        }
        self.connect_fleet();
        if self.fleet.is_none() || matches!(self.current, Some((_, true))) {
            if matches!(op, Op::RunStarted { .. }) && !self.resumed {
                self.mark_pending();
            }
            if let Op::RunFinished { .. } = op {
                self.send_if_pending();
            }
            return;
        }
        if let Err(e) = self.mirror_apply(op, ended) {
            self.fleet_lost(&e);
        }
        if let Op::RunFinished { .. } = op {
            self.send_if_pending();
        }
    }

    fn mirror_apply(&mut self, op: &Op, ended: &[AttemptEnding]) -> Result<(), StoreError> {
        let attached = self.attached;
        let resumed = self.resumed;
        let job = self.job.clone();
        let host = self.host.clone();
        let owner = self.owner.clone();
        // Local ids the operation just got.
        let local_instance =
            |w: &Writer, task: &str, n: u32| w.instances.get(&(task.to_owned(), n)).copied();
        match op {
            Op::FinalizeLost => {
                let m = self.fleet.as_mut().expect("checked");
                m.store.finalize_lost(Some(&job))?;
            }
            Op::RunStarted {
                run_id,
                job,
                started,
                trigger_type,
                trigger_data,
                session,
                output_dir,
                tasks,
            } => {
                // Resumed, its rows are in the fleet already (or it is marked to be sent).
                if !resumed {
                    let m = self.fleet.as_mut().expect("checked");
                    let start = RunStart {
                        run_id,
                        job,
                        started: *started,
                        trigger_type,
                        trigger_data,
                        session,
                        output_dir,
                        tasks,
                    };
                    start.record(&mut m.store, attached, &owner, &host)?;
                }
            }
            Op::AttemptStarted {
                run_id,
                task,
                file,
                instance,
                try_num,
                started,
                output,
            } => {
                let Some(local) = local_instance(self, task, *instance) else {
                    return Ok(());
                };
                let attempt = self
                    .attempts
                    .get(&(task.clone(), *instance, *try_num))
                    .copied();
                if let (Some(id), Some(path)) = (attempt, output) {
                    self.outputs.insert(id, path.clone());
                }
                let m = self.fleet.as_mut().expect("checked");
                let fleet_instance = m.instance(local, run_id, task, file, *instance)?;
                let ended = m.translate(ended);
                let fleet_id = m.store.record_attempts(
                    &ended,
                    Some((fleet_instance, *try_num, *started, output.as_deref())),
                )?;
                if let (Some(id), Some(fleet_id)) = (attempt, fleet_id) {
                    m.attempts.insert(id, fleet_id);
                }
            }
            Op::AttemptFinished { .. } => {
                // The ending is held back locally; its output goes to the fleet now
                // (as capped on disk), for every host to read.
                let Some(ending) = self.ended.last() else {
                    return Ok(());
                };
                if !ending.has_output {
                    return Ok(());
                }
                let id = ending.attempt_id;
                let Some(path) = self.outputs.remove(&id) else {
                    return Ok(());
                };
                let Ok(bytes) = std::fs::read(&path) else {
                    return Ok(());
                };
                let m = self.fleet.as_mut().expect("checked");
                if let Some(&fleet_id) = m.attempts.get(&id) {
                    m.store.store_output(fleet_id, &bytes)?;
                }
            }
            Op::EventsWaited {
                run_id,
                task,
                file,
                instance,
                since,
                decided,
                events,
            } => {
                let Some(local) = local_instance(self, task, *instance) else {
                    return Ok(());
                };
                let m = self.fleet.as_mut().expect("checked");
                let id = m.instance(local, run_id, task, file, *instance)?;
                m.store
                    .record_instance_events(id, *since, *decided, events)?;
            }
            Op::Flush | Op::InstanceStatus { .. } | Op::RunFinished { .. } => {
                // The endings held back were written locally with this operation.
                let m = self.fleet.as_mut().expect("checked");
                let ended = m.translate(ended);
                if !ended.is_empty() {
                    m.store.record_attempts(&ended, None)?;
                }
                match op {
                    Op::InstanceStatus {
                        run_id,
                        task,
                        file,
                        instance,
                        status,
                    } => {
                        let Some(local) = local_instance(self, task, *instance) else {
                            return Ok(());
                        };
                        let m = self.fleet.as_mut().expect("checked");
                        let id = m.instance(local, run_id, task, file, *instance)?;
                        m.store.set_instance_status(id, *status)?;
                    }
                    Op::RunFinished {
                        run_id,
                        status,
                        exit_code,
                        stopped,
                    } if !attached => {
                        m.store
                            .finish_run(run_id, *status, Some(*exit_code), Some(*stopped))?;
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// The start of a run as an [`Op::RunStarted`] carries it, recorded the same way in the
/// local store and in the fleet's.
struct RunStart<'a> {
    run_id: &'a str,
    job: &'a str,
    started: SystemTime,
    trigger_type: &'a str,
    trigger_data: &'a serde_json::Value,
    session: &'a str,
    output_dir: &'a std::path::Path,
    tasks: &'a [(String, String)],
}

impl RunStart<'_> {
    /// Attached (the daemon recorded the run), only its task instances; otherwise the run.
    fn record(
        &self,
        store: &mut dyn RunStore,
        attached: bool,
        owner: &Owner,
        host: &str,
    ) -> Result<(), StoreError> {
        let tasks: Vec<(&str, &str)> = self
            .tasks
            .iter()
            .map(|(n, f)| (n.as_str(), f.as_str()))
            .collect();
        if attached {
            return store.add_instances(self.run_id, &tasks);
        }
        store.begin_run(&NewRun {
            run_id: self.run_id,
            job: self.job,
            schedule_time: self.started,
            start_time: self.started,
            trigger_type: self.trigger_type,
            trigger_data: self.trigger_data,
            session: self.session,
            output_dir: self.output_dir,
            owner,
            tasks: &tasks,
            host,
        })
    }
}
