//! The store as the chain's [`Recorder`]: every run, instance and attempt as it happens,
//! and each attempt's output in `STATE_DIR/runs/JOB/RUN_ID/`.
//!
//! A recording failure never fails the chain, and never stalls it: the writes happen on
//! their own thread ([`super::writer`]), which retries what a busy, locked or full store
//! refused until it is writable again. While the store is healthy, each state change is
//! on disk before the chain goes on (waiting at most [`ACK_WAIT`]), so a `kill -9` loses
//! nothing already started; once the store refuses a write, the chain stops waiting at
//! once, and it loses at most [`STALL_BUDGET`] in all to a store in trouble. At the end
//! the process waits up to [`DRAIN_WAIT`] for the last records of a healthy store only:
//! records a locked store refuses are handed to a detached finisher ([`super::spool`]),
//! so someone else's lock never holds runner's exit.
//!
//! With a fleet database (section 13) the writer mirrors every state change to
//! PostgreSQL after writing it to the local store (see [`super::writer`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::capture::{CaptureFile, RunOutput};
use super::location::Location;
use super::model::{InstanceStatus, RunStatus};
use super::owner::Owner;
use super::sqlite::{AttemptEnding, Cascade, Store};
use super::writer::{Op, Progress, Writer};
use crate::record::{
    AttemptEnd, AttemptStart, EventsWaited, Recorder, RunStart, SharedCapture, StartOnSpawn,
    StartWrite, TaskResult,
};

/// How long the chain waits for a state change to land while the store is healthy
/// (opening a store on a loaded machine); a locked store ends the wait at once.
const ACK_WAIT: Duration = Duration::from_secs(2);

/// How long in all the chain may lose to a store in trouble (the waits that ended with
/// the store refusing a write); past it, the chain waits for no record again.
const STALL_BUDGET: Duration = Duration::from_millis(100);

/// How many task starts written behind (see [`StoreRecorder::send_behind`]) may still be
/// unwritten when the chain next records something before starts are written on the
/// chain's thread again: a recording thread that keeps lagging (no core free to run it
/// on) costs the chain a thread round trip per task instead of saving the commit.
const BEHIND_LATE_MAX: u32 = 8;

/// How long the process waits at its end for the last records of a healthy store.
const DRAIN_WAIT: Duration = Duration::from_secs(10);

/// How long the writer goes on retrying at the process's end before it hands on what
/// the store still refuses.
const EXIT_GRACE: Duration = Duration::from_millis(250);

/// How long the process waits at its end for the writer to hand on the records a store
/// in trouble refuses (one busy wait, a file written, a process started).
const HAND_OVER_WAIT: Duration = Duration::from_secs(5);

/// What became of a start handed to an attempt's spawn.
enum SpawnedStart {
    /// Not written yet: the spawn has not happened (or never will).
    Waiting(Box<Op>),
    /// Written on the spawning thread (or refused for good, which stopped recording).
    Written,
    /// Handed to the writer thread (the start, or what was held with it), not counted
    /// as sent yet.
    Queued,
}

/// Records into a [`Store`] through the writer thread.
pub(crate) struct StoreRecorder {
    ops: Option<Sender<Op>>,
    /// The writer, shared with its thread: the front applies an operation itself when
    /// nothing is queued (see [`Writer::apply_here`]).
    writer: Option<Arc<Mutex<Writer>>>,
    thread: Option<JoinHandle<()>>,
    progress: Arc<Progress>,
    closing: Arc<(Mutex<Option<Instant>>, Condvar)>,
    /// Operations sent so far.
    sent: u64,
    /// Time the chain lost waiting for a store that then refused the write.
    stalled: Duration,
    /// A start was handed to the writer thread without waiting for it.
    behind: bool,
    /// How often such a start had not landed yet by the chain's next record.
    behind_late: u32,
    /// The start handed to the attempt's spawn (see [`Recorder::attempt_spawning`]),
    /// until the chain's next record looks at what became of it.
    spawned_start: Option<Arc<Mutex<SpawnedStart>>>,
    state_dir: PathBuf,
    location: Location,
    job: String,
    log_max_bytes: u64,
    owner: Owner,
    trigger_type: String,
    output_dir: Option<PathBuf>,
    /// The run's dsari `output.txt`, which every attempt's capture also writes to.
    run_output: Option<RunOutput>,
    /// Whether captured output is prefixed with the task's name (parallel runs).
    prefixed: bool,
    /// Output captures of attempts that have not ended.
    captures: HashMap<(String, u32, u32), Arc<Mutex<CaptureFile>>>,
    /// Recording into a run that another process (the daemon) started and finishes.
    attached: bool,
    /// The run's event session, for cascades.
    session: String,
    /// Continuing a run that already exists (replay, skip): its rows are there.
    resumed: bool,
    /// A connection for reads (`frequency`), opened when first needed.
    reader: Option<Store>,
    /// The host runs are recorded with.
    host: String,
}

impl StoreRecorder {
    /// A recorder for `job` into the store at `location`, keeping output under
    /// `state_dir`. Nothing is opened here: the writer opens the store, and a store that
    /// cannot be opened is one warning.
    pub(crate) fn open(
        state_dir: &Path,
        location: &Location,
        job: &str,
        log_max_bytes: u64,
        trigger_type: &str,
        host: &str,
    ) -> StoreRecorder {
        StoreRecorder {
            ops: None,
            writer: None,
            thread: None,
            progress: Arc::new(Progress::default()),
            closing: Arc::new((Mutex::new(None), Condvar::new())),
            sent: 0,
            stalled: Duration::ZERO,
            behind: false,
            behind_late: 0,
            spawned_start: None,
            state_dir: state_dir.to_owned(),
            location: location.clone(),
            job: job.to_owned(),
            log_max_bytes,
            owner: Owner::current(),
            trigger_type: trigger_type.to_owned(),
            output_dir: None,
            run_output: None,
            prefixed: false,
            captures: HashMap::new(),
            attached: false,
            session: String::new(),
            resumed: false,
            reader: None,
            host: host.to_owned(),
        }
    }

    /// Records task instances and attempts into an existing run, leaving the run itself
    /// to whoever started it.
    pub(crate) fn attached(mut self) -> StoreRecorder {
        self.attached = true;
        self
    }

    /// Records into a run that already exists and that this process finishes again
    /// (`replay`, `skip --cascade`).
    pub(crate) fn resumed(mut self) -> StoreRecorder {
        self.resumed = true;
        self
    }

    /// Finalizes this job's runs whose recording process died (the job lock is held, so
    /// none of them can still be running).
    pub(crate) fn finalize_lost(&mut self) {
        self.send(Op::FinalizeLost);
    }

    fn is_dead(&self) -> bool {
        self.progress.dead.load(Ordering::Relaxed)
    }

    /// Starts the writer on first use; `false` when there is none (recording is off).
    fn start_writer(&mut self) -> bool {
        if self.is_dead() {
            return false;
        }
        if self.ops.is_none() {
            let (sender, receiver) = mpsc::channel();
            let writer = Writer::new(
                self.location.file().to_owned(),
                self.location.fleet.clone(),
                self.host.clone(),
                self.job.clone(),
                self.owner.clone(),
                self.attached,
                self.resumed,
                Arc::clone(&self.progress),
                Arc::clone(&self.closing),
            );
            let writer = Arc::new(Mutex::new(writer));
            let shared = Arc::clone(&writer);
            match std::thread::Builder::new()
                .name("recorder".to_owned())
                .spawn(move || Writer::run(shared, receiver))
            {
                Ok(thread) => {
                    self.ops = Some(sender);
                    self.writer = Some(writer);
                    self.thread = Some(thread);
                }
                Err(e) => {
                    log::warn!("cannot record this run (no recording thread: {e})");
                    self.progress.set_dead();
                    return false;
                }
            }
        }
        true
    }

    /// Hands `op` to the writer thread and goes on at once: the chain's thread has a
    /// task to start, and the write lands meanwhile. The next [`StoreRecorder::send`]
    /// finds it written (and writes from here again), or waits for it as for its own.
    fn send_behind(&mut self, op: Op) {
        if !self.start_writer() {
            return;
        }
        if let Some(ops) = &self.ops
            && ops.send(op).is_ok()
        {
            self.sent += 1;
            self.behind = true;
        }
    }

    /// Hands `op` to the writer, starting it on first use, and waits briefly for it to
    /// land if the writer was keeping up.
    fn send(&mut self, op: Op) {
        if !self.start_writer() {
            return;
        }
        self.settle_spawned_start();
        if std::mem::take(&mut self.behind) && self.progress.done() != self.sent {
            self.behind_late += 1;
        }
        let patient = self.stalled < STALL_BUDGET;
        // Healthy and nothing queued: write it from here, in order, and be done. A lock
        // is noticed within a short busy wait, and the write goes to the thread.
        if patient
            && !self.is_troubled()
            && self.progress.done() == self.sent
            && let Some(Ok(mut writer)) = self.writer.as_ref().map(|w| w.try_lock())
        {
            let began = Instant::now();
            if writer.apply_here(&op) {
                return;
            }
            self.stalled += began.elapsed();
        }
        let Some(ops) = &self.ops else { return };
        if ops.send(op).is_err() {
            return;
        }
        self.sent += 1;
        if patient && !self.is_troubled() {
            let began = Instant::now();
            if !self.progress.wait_healthy(self.sent, ACK_WAIT) {
                self.stalled += began.elapsed();
                // Slow without saying why: stop waiting until the writer succeeds again.
                self.progress.set_troubled(true);
            }
        }
    }

    fn is_troubled(&self) -> bool {
        self.progress.troubled.load(Ordering::Relaxed)
    }

    /// Accounts for the start handed to the last spawn: written by it, handed to the
    /// writer thread by it, or (the spawn never happened) still to be written: now.
    fn settle_spawned_start(&mut self) {
        let Some(slot) = self.spawned_start.take() else {
            return;
        };
        let state = std::mem::replace(
            &mut *slot.lock().unwrap_or_else(|e| e.into_inner()),
            SpawnedStart::Written,
        );
        match state {
            SpawnedStart::Written => {}
            SpawnedStart::Queued => {
                self.sent += 1;
                self.behind = true;
            }
            SpawnedStart::Waiting(op) => self.send(*op),
        }
    }

    /// The record of `attempt`'s start.
    fn start_op(&self, attempt: &AttemptStart<'_>) -> Op {
        Op::AttemptStarted {
            run_id: attempt.run_id.to_owned(),
            task: attempt.task.to_owned(),
            file: attempt.file.to_owned(),
            instance: attempt.instance,
            try_num: attempt.try_num,
            started: attempt.started,
            output: self.output_path(attempt),
        }
    }

    /// Where an attempt's output is kept, when output is kept.
    fn output_path(&self, attempt: &AttemptStart<'_>) -> Option<PathBuf> {
        let dir = self.output_dir.as_ref()?;
        Some(dir.join(format!(
            "{}#{}.{}.log",
            attempt.task, attempt.instance, attempt.try_num
        )))
    }

    fn capture(&self, attempt: &AttemptStart<'_>) -> Option<(PathBuf, Arc<Mutex<CaptureFile>>)> {
        let path = self.output_path(attempt)?;
        let mut capture = CaptureFile::new(&path, self.log_max_bytes);
        if let Some(output) = &self.run_output {
            let prefix = self.prefixed.then(|| format!("[{}] ", attempt.task));
            capture = capture.mirrored(output.clone(), prefix);
        }
        Some((path, Arc::new(Mutex::new(capture))))
    }
}

impl Drop for StoreRecorder {
    /// Waits (bounded) for the writer to write everything, then lets it end.
    fn drop(&mut self) {
        // Records still gathered are written now (or handed to the thread).
        if self.ops.is_some() && !self.is_dead() {
            self.send(Op::Flush);
        }
        let Some(ops) = self.ops.take() else { return };
        drop(ops);
        // A healthy store gets the last records now; one that refuses them (someone
        // else's lock) is not waited out: the writer hands them to a finisher.
        if !self.progress.wait_healthy(self.sent, DRAIN_WAIT) {
            // One more try at once (a disk the chain freed, a lock just let go), then
            // whatever is still refused is handed on.
            let (lock, changed) = &*self.closing;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + EXIT_GRACE);
            changed.notify_all();
            if !self
                .progress
                .wait_for(self.sent, EXIT_GRACE + HAND_OVER_WAIT)
            {
                log::warn!("the run store does not answer; the end of this run is not recorded");
            }
        }
        if let Some(thread) = self.thread.take()
            && self.progress.done() >= self.sent
        {
            let _ = thread.join();
        }
    }
}

impl Recorder for StoreRecorder {
    fn run_started(&mut self, run: &RunStart<'_>) {
        self.captures.clear();
        self.session = run.session.to_owned();
        if self.is_dead() {
            return;
        }
        let dir = self.state_dir.join("runs").join(run.job).join(run.run_id);
        self.output_dir = match crate::state::ensure_dir(&dir) {
            Ok(()) => Some(dir.clone()),
            Err(e) => {
                log::warn!("cannot keep task output ({e}); recording runs without it");
                None
            }
        };
        self.prefixed = run.parallel > 1;
        // A daemon's chain run already has its output.txt: the daemon sends this
        // process's own output there.
        self.run_output = match (&self.output_dir, self.attached) {
            (Some(dir), false) => {
                let path = dir.join("output.txt");
                // A resumed run (replay, skip) goes on after what its output.txt holds.
                let opened = if self.resumed {
                    RunOutput::reopen(&path)
                } else {
                    RunOutput::create(&path)
                };
                opened
                    .map_err(|e| log::warn!("cannot create {}: {e}", path.display()))
                    .ok()
            }
            _ => None,
        };
        let trigger_data = serde_json::json!({
            "taskdir": run.taskdir,
            "config": run.config,
            "pid": self.owner.pid,
        });
        self.send(Op::RunStarted {
            run_id: run.run_id.to_owned(),
            job: run.job.to_owned(),
            started: run.started,
            trigger_type: self.trigger_type.clone(),
            trigger_data,
            session: run.session.to_owned(),
            output_dir: dir,
            tasks: run
                .tasks
                .iter()
                .map(|&(n, f)| (n.to_owned(), f.to_owned()))
                .collect(),
        });
    }

    fn attempt_output(&mut self, attempt: &AttemptStart<'_>) -> Option<SharedCapture> {
        if self.is_dead() {
            return None;
        }
        let (_, capture) = self.capture(attempt)?;
        self.captures.insert(
            (attempt.task.to_owned(), attempt.instance, attempt.try_num),
            Arc::clone(&capture),
        );
        Some(capture)
    }

    fn attempt_spawning(&mut self, attempt: &AttemptStart<'_>) -> Option<StartOnSpawn> {
        if self.is_dead() || !self.start_writer() {
            return None;
        }
        self.settle_spawned_start();
        // Written by the spawn only when the front would write it itself now: the store
        // open and healthy, nothing queued for the thread, no fleet database to mirror to
        // (those writes stay on the thread).
        let here = self.location.fleet.is_none()
            && self.stalled < STALL_BUDGET
            && !self.is_troubled()
            && self.progress.done() == self.sent;
        let (Some(writer), Some(ops), true) = (&self.writer, &self.ops, here) else {
            self.attempt_started(attempt, StartWrite::Behind);
            return None;
        };
        let (writer, ops) = (Arc::clone(writer), ops.clone());
        let op = Box::new(self.start_op(attempt));
        let slot = Arc::new(Mutex::new(SpawnedStart::Waiting(op)));
        self.spawned_start = Some(Arc::clone(&slot));
        Some(Box::new(move |now: bool| {
            let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
            // The first call brings the start; a later one, that the time to write what
            // was held with it has come.
            let op = match std::mem::replace(&mut *slot, SpawnedStart::Written) {
                SpawnedStart::Waiting(op) => *op,
                SpawnedStart::Written => Op::Flush,
                SpawnedStart::Queued => {
                    *slot = SpawnedStart::Queued;
                    return None;
                }
            };
            if let Ok(mut writer) = writer.try_lock() {
                let applied = if now || matches!(op, Op::Flush) {
                    writer.apply_here(&op)
                } else {
                    writer.apply_gathered(&op)
                };
                if applied {
                    return writer.gathered_due();
                }
            }
            // Not written from here (a lock, a write refused for now): the thread writes
            // it, retrying as it does, while the task runs.
            if ops.send(op).is_ok() {
                *slot = SpawnedStart::Queued;
            }
            None
        }))
    }

    fn attempt_started(&mut self, attempt: &AttemptStart<'_>, how: StartWrite) {
        if self.is_dead() {
            return;
        }
        let op = self.start_op(attempt);
        match how {
            StartWrite::Behind if self.behind_late < BEHIND_LATE_MAX => self.send_behind(op),
            _ => self.send(op),
        }
    }

    fn attempt_finished(&mut self, attempt: &AttemptStart<'_>, end: &AttemptEnd) {
        let key = (attempt.task.to_owned(), attempt.instance, attempt.try_num);
        let mut has_output = false;
        if let Some(capture) = self.captures.remove(&key) {
            let mut capture = capture.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = capture.finish() {
                log::warn!("cannot keep the output of task \"{}\": {e}", attempt.task);
            }
            // A process the task left running may still write into it: keep its name.
            has_output = !capture.is_empty() || !end.leftovers.is_empty();
        }
        let status = match end.result {
            TaskResult::Ok => InstanceStatus::Finished,
            _ => InstanceStatus::Failed,
        };
        self.send(Op::AttemptFinished {
            task: attempt.task.to_owned(),
            instance: attempt.instance,
            try_num: attempt.try_num,
            // The writer fills in the row ids it knows.
            ending: Box::new(AttemptEnding {
                attempt_id: 0,
                instance_id: 0,
                stop_time: end.stopped,
                exit_code: end.exit_code,
                signal: end.signal,
                result: end.result.as_str(),
                note: end.note.clone(),
                result_data: end.result_data.clone(),
                instance_status: status,
                has_output,
                leftovers: (!end.leftovers.is_empty())
                    .then(|| serde_json::to_value(&end.leftovers).ok())
                    .flatten(),
                // Fired in the same transaction as the attempt's end.
                cascade: end.cascade.as_ref().map(|data| Cascade {
                    session: self.session.clone(),
                    name: attempt.task.to_owned(),
                    data: data.clone(),
                    source: format!("cascade {}", attempt.run_id),
                }),
            }),
        });
    }

    fn flush(&mut self) {
        self.send(Op::Flush);
    }

    fn instance_status(
        &mut self,
        run_id: &str,
        task: &str,
        file: &str,
        instance: u32,
        status: InstanceStatus,
    ) {
        self.send(Op::InstanceStatus {
            run_id: run_id.to_owned(),
            task: task.to_owned(),
            file: file.to_owned(),
            instance,
            status,
        });
    }

    fn events_waited(&mut self, waited: &EventsWaited<'_>) {
        self.send(Op::EventsWaited {
            run_id: waited.run_id.to_owned(),
            task: waited.task.to_owned(),
            file: waited.file.to_owned(),
            instance: waited.instance,
            since: waited.since,
            decided: waited.decided,
            events: waited.events.clone(),
        });
    }

    fn succeeded_before(&mut self, task: &str, this_boot_only: bool) -> bool {
        // Earlier iterations of this process count too: let their records land (unless
        // the store refuses them: then the read is of what is there), gathered ones too.
        if self.ops.is_some() && !self.is_dead() {
            self.send(Op::Flush);
        }
        self.progress.wait_healthy(self.sent, ACK_WAIT);
        if self.reader.is_none() {
            match Store::read_only(&self.location) {
                Ok(Some(store)) => self.reader = Some(store),
                Ok(None) => return false,
                Err(e) => {
                    log::warn!(
                        "cannot read earlier runs ({}); task \"{task}\" runs",
                        crate::logging::one_line(&e)
                    );
                    return false;
                }
            }
        }
        let boot = this_boot_only.then(crate::state::boot_id);
        let job = self.job.clone();
        let reader = self.reader.as_mut().expect("just opened");
        reader
            .has_succeeded(&job, task, boot.as_deref())
            .unwrap_or(false)
    }

    fn run_finished(
        &mut self,
        run_id: &str,
        status: RunStatus,
        exit_code: i32,
        stopped: SystemTime,
    ) {
        self.send(Op::RunFinished {
            run_id: run_id.to_owned(),
            status,
            exit_code,
            stopped,
        });
    }
}
