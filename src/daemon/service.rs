//! The daemon around its scheduling decisions: the loop, the store, the processes and
//! the signals.
//!
//! One thread, the loop, owns the [`Planner`] and acts on what it decides. It sleeps on its
//! event channel until the planner's next due time or an event: a signal, a trigger file
//! or a configuration read by the intake thread (parsed there, never here), a run that
//! ended. No periodic polling, so a daemon with ten thousand hourly jobs is idle between
//! due times. Each run is supervised on a thread of its own while it lasts (threads are
//! kept for the next run, see `pool`), which hands its end to the loop (see `ends`): a
//! slot freed in a concurrency group is handed to a waiting run at once, an end nothing
//! waits for wakes nobody, and the ends that come within a few milliseconds of each
//! other are recorded together.
//! Jobs with `after`, `unless` or `and_every` are woken by the events watch (inotify on
//! `events.notify` beside the database, as waiting chains are): a run held for an event
//! costs nothing until something is fired.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};

use super::ends::{End, Ends};
use super::gate::{self, Gates};
use super::intake::{self, Intake, Loaded};
use super::launch::{self, Context, RunPaths};
use super::planner::{Added, Admission, Planner, RunSlot, Start};
use super::pool::Pool;
use super::signals;
use crate::config::daemon::{CatchUp, DaemonConfig, Job};
use crate::error::Error;
use crate::exec::{Exit, Guardian, Limits, Output, Supervisor};
use crate::interrupt::Interrupt;
use crate::store::model::{RunRecord, RunStatus};
use crate::store::{EventStore, Location, NewRun, Owner, RunEnd, RunStore};
use crate::triggers::{self, Trigger};

/// A scheduled run this much later than its time gets a warning (a suspended machine, a
/// stopped daemon, a job far longer than its interval).
const LATE_WARNING: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// What wakes the loop.
pub(super) enum Event {
    Signal(signals::Request),
    /// A trigger file, read and consumed by the intake thread.
    Trigger(Trigger),
    /// The configuration, loaded again by the intake thread (SIGHUP).
    Reloaded(Box<Result<Loaded, Error>>),
    /// A run ended while the loop asked to hear of it at once (see `ends`).
    Ended,
    /// The intake thread took the trigger files that were there at start.
    Ready,
    /// An event was fired (the events watch).
    Fired,
}

/// A run in progress.
struct Running {
    run_id: String,
    job: String,
    group: Option<String>,
    interrupt: Arc<Interrupt>,
    paths: RunPaths,
    started: Instant,
    /// When it was due and when it started, as recorded (epoch seconds).
    schedule_time: f64,
    start_time: f64,
}

/// A run the planner let start, with everything made for it, before it is recorded.
struct Prepared {
    slot: RunSlot,
    job: Job,
    request: launch::Request,
    group: Option<String>,
    run_id: String,
    paths: RunPaths,
    start_time: DateTime<Utc>,
    env: BTreeMap<String, String>,
    /// The data of the events it waited for, written into its directory.
    events: Option<String>,
}

/// At most this many ended runs are recorded in one transaction.
const ENDS_AT_ONCE: usize = 1024;

/// How long an ended run may wait for others to be recorded with it. Ends come one by
/// one as processes exit; recorded as they came, a thousand runs a second made a
/// thousand small transactions that each wrote the same pages again. An end not yet
/// recorded when the daemon is killed is recorded as lost by the next daemon, as a run
/// still running would be; before a run of the same job starts, the ends waiting are
/// recorded first, so that its `PREVIOUS_*` and the store agree. With a thousand jobs,
/// each end also writes a page of each index by job of its own: the longer the wait, the
/// more ends share those pages (20 ms wrote a tenth more per run than 50 ms).
const ENDS_WAIT: Duration = Duration::from_millis(50);

/// How long a due run may wait for others due after it, to be recorded in one
/// transaction with them. Jobs are spread over their period (dsari's times), so at a
/// thousand runs a second one is due every millisecond or so: alone, each start was a
/// commit of its own, which wrote the same half a dozen index pages again. A run with no
/// other due within this time starts at once; the others start together at its end, and
/// the loop sleeps until then (see `Service::run`).
const GATHER: chrono::TimeDelta = chrono::TimeDelta::milliseconds(1);

/// The wait of [`GATHER`] while the daemon is busy (see [`BUSY_STARTS`]). At a thousand
/// runs a second, 3 ms (three runs to a transaction and a wake of the loop, instead of one
/// or two) cost 10-30% less CPU per run than 1 ms; 6 ms (about six runs) cost 4-16% less
/// again and 15% fewer WAL writes per run (`bench/daemon.py`, `bench/daemon_counts.py`),
/// for a start about 1.4 ms later at the median and 2.5 ms at the 99th percentile. Below
/// that rate the CPU is there to spare, and the start on time is worth more.
const GATHER_BUSY: chrono::TimeDelta = chrono::TimeDelta::milliseconds(6);

/// Starts a second from which the daemon counts as busy, over the last second or more.
const BUSY_STARTS: f64 = 500.0;

/// The page cache of the daemon's second connection to its store, which writes only the
/// events of runs that succeeded and reads the events that jobs wait for: 512 KiB
/// instead of SQLite's 2 MiB, most of which it filled with index pages it rarely reads
/// again.
const EVENTS_CACHE_KIB: i64 = 512;

/// A wait at least this long for the next run or end to record is a pause in which the
/// store checkpoints (see [`RunStore::lull`]): long enough for one to finish in it.
const LULL: Duration = Duration::from_millis(50);

/// At most this many runs due at once are recorded in one transaction and then started:
/// a thousand runs due at one instant start in turns, so that the first of them does not
/// wait for all the others to be made and recorded.
const STARTS_AT_ONCE: usize = 64;

/// Where the daemon's configuration comes from and what overrides it.
pub(crate) struct Setup {
    /// The configuration file or directory.
    pub(crate) config_path: PathBuf,
    /// `--state-dir` (or `RUNNER_STATE_DIR`), which wins over `data_dir`.
    pub(crate) state_dir: Option<PathBuf>,
    /// `--database` (or `RUNNER_DATABASE`), which wins over `database.file`.
    pub(crate) database: Option<String>,
}

/// How much of a run's output a fleet database keeps (its end), as a chain's capture
/// keeps at most `log_max_bytes` by default.
const OUTPUT_KEPT: usize = 16 << 20;

/// The running scheduler.
pub(crate) struct Service {
    setup: Setup,
    /// The configuration in force, without its jobs (the planner has them).
    config: DaemonConfig,
    data_dir: PathBuf,
    planner: Planner,
    running: HashMap<RunSlot, Running>,
    store: Box<dyn RunStore>,
    /// The events (fired, waited for): the fleet's when a fleet database is named, else
    /// this host's SQLite file.
    events_store: Box<dyn EventStore>,
    /// Each job's previous run, previous good and previous bad one (`PREVIOUS_*`), read
    /// from the store at the job's first start and kept up to date as its runs end: the
    /// store's look-up walks back through the job's runs to the last bad one, which a job
    /// that never fails makes a walk through all of them, at every start.
    previous: HashMap<String, [Option<RunRecord>; 3]>,
    /// Where the store is: handed to the chains the daemon starts.
    location: Location,
    /// The host runs are recorded with.
    host: String,
    owner: Owner,
    exe: PathBuf,
    guardian: Arc<Guardian>,
    sender: Sender<Event>,
    events: Receiver<Event>,
    intake: Option<Intake>,
    /// Runs that ended, not yet taken by the loop.
    ends: Arc<Ends>,
    stopping: bool,
    /// The event rules of the daemon's session.
    gates: Gates,
    /// The jobs with `after`, `unless` or `and_every`, by name.
    event_jobs: HashMap<String, Job>,
    /// Wakes the loop when an event is fired, while it lives.
    on_event: Option<crate::interrupt::Subscription>,
    /// The threads that supervise runs.
    pool: Pool,
    /// The programs found for the runs of this instant.
    programs: launch::Programs,
    /// Runs that ended and are not recorded yet, oldest first; their slots are free.
    ended: Vec<End>,
    /// When the oldest of them has waited [`ENDS_WAIT`].
    record_ends_at: Option<Instant>,
    /// Whether anything was written since the store was last told of a pause.
    wrote: bool,
    /// Runs due that wait, until `held_until`, for the others due within [`GATHER`].
    held: Vec<Start>,
    held_until: Option<DateTime<Utc>>,
    /// The starts counted since `rate_since`, and whether the rate of the interval
    /// before made the daemon busy (see [`GATHER_BUSY`]).
    rate_count: u32,
    rate_since: Instant,
    busy: bool,
}

/// The jobs that use events.
fn event_jobs(jobs: &super::jobs::JobTable) -> HashMap<String, Job> {
    jobs.iter()
        .filter(|(_, j)| gate::has_events(&j.job))
        .map(|(name, j)| (name.clone(), j.job.clone()))
        .collect()
}

/// The data directory: `--state-dir` first, then the configuration's `data_dir`.
pub(crate) fn data_dir(config: &DaemonConfig, state_dir: Option<&Path>) -> PathBuf {
    crate::state::resolve(state_dir, config.configured_data_dir.as_deref())
}

/// Each concurrency group's `max`.
fn limits(config: &DaemonConfig) -> BTreeMap<String, usize> {
    config
        .concurrency_groups
        .iter()
        .map(|(name, group)| (name.clone(), group.max))
        .collect()
}

impl Service {
    /// Loads everything and opens the store; nothing runs yet.
    pub(crate) fn new(setup: Setup) -> Result<Service, Error> {
        // A run's thread allocates little; with hundreds of runs in progress their own
        // arenas were a quarter of the daemon's resident memory.
        crate::memory::limit_arenas(2);
        // Each run in progress holds a few descriptors; its process gets the limit back.
        if let Some((before, after)) = crate::exec::limits::raise_open_files() {
            log::debug!("limit on open files raised from {before} to {after}; runs get {before}");
        }
        let Loaded { config, jobs } = intake::load(&setup.config_path)?;
        for warning in &config.warnings {
            log::warn!("{warning}");
        }
        let data_dir = data_dir(&config, setup.state_dir.as_deref());
        if crate::security::is_enforced(false) {
            crate::security::check_state_dir(&data_dir)?;
        }
        crate::state::ensure_dir(&data_dir)?;
        let location = Location::resolve(setup.database.as_deref(), Some(&config), &data_dir)?;
        let host = crate::state::host(None);
        let mut store = crate::store::open_for_writing(&location, &host)?;
        store.for_many_writes();
        // With a fleet database, events are the fleet's: a job here waits for `runner
        // fire` on any host of the session.
        let events_store: Box<dyn EventStore> = match &location.fleet {
            Some(url) => Box::new(crate::store::FleetEvents::new(
                url,
                &host,
                Duration::from_secs(2),
            )),
            None => {
                // The same file: the run store's checkpoints are this connection's too.
                let mut events = crate::store::Store::open_at(&location)?;
                events.for_many_writes(false);
                events.limit_cache(EVENTS_CACHE_KIB);
                Box::new(events)
            }
        };
        let exe = std::env::current_exe().map_err(|e| Error::io("/proc/self/exe", e))?;
        let grace = jobs
            .values()
            .map(|j| j.job.max_execution_grace)
            .max()
            .unwrap_or(Duration::from_secs(60));
        let (sender, events) = mpsc::channel();
        let gates = Gates::new(&*events_store, crate::events::resolve_session(None, None));
        Ok(Service {
            setup,
            event_jobs: event_jobs(&jobs),
            planner: Planner::new(jobs, limits(&config)),
            config,
            data_dir,
            running: HashMap::new(),
            store,
            events_store,
            previous: HashMap::new(),
            location,
            host,
            owner: Owner::current(),
            exe,
            guardian: Arc::new(Guardian::start(grace, None)),
            sender,
            events,
            intake: None,
            ends: Arc::default(),
            stopping: false,
            gates,
            on_event: None,
            pool: Pool::new(),
            programs: launch::Programs::default(),
            ended: Vec::new(),
            record_ends_at: None,
            wrote: false,
            held: Vec::new(),
            held_until: None,
            rate_count: 0,
            rate_since: Instant::now(),
            busy: false,
        })
    }

    /// Runs until SIGTERM or SIGINT and every run has ended; returns the exit code.
    pub(crate) fn run(mut self) -> Result<u8, Error> {
        let sender = self.sender.clone();
        signals::install(move |request| sender.send(Event::Signal(request)).is_ok())
            .map_err(|e| Error::io("signal handlers", e))?;
        match self.store.finalize_lost(None) {
            Ok(lost) => {
                for run_id in lost {
                    log::warn!(
                        "run {run_id} was left unfinished by a daemon that died; recorded as lost"
                    );
                }
            }
            Err(e) => log::warn!("cannot finalize lost runs: {}", crate::error::one_line(&e)),
        }
        let now = Utc::now();
        self.catch_up(now);
        self.planner.plan_schedules(now);
        self.watch_events(None);
        let intake = Intake::start(
            &self.data_dir,
            &self.setup.config_path,
            self.planner.jobs().clone(),
            self.sender.clone(),
        )
        .map_err(|e| Error::io("the trigger reader thread", e))?;
        self.intake = Some(intake);

        loop {
            self.take_ends();
            if self.record_ends_at.is_some_and(|at| at <= Instant::now()) {
                self.record_ends();
            }
            self.start_due(Utc::now());
            if self.stopping && self.running.is_empty() {
                break;
            }
            // Runs held for others due with them start at `held_until`, together with
            // every run due by then: the loop sleeps until that moment, not until each
            // of those runs is due. At a thousand runs a second one is due every
            // millisecond or so, and waking for each to add it to the held ones was most
            // of the loop's sleeps and wake-ups.
            let due = self
                .held_until
                .or_else(|| self.planner.next_due())
                .map(|due| (due - Utc::now()).to_std().unwrap_or(Duration::ZERO));
            let ends = self
                .record_ends_at
                .map(|at| at.saturating_duration_since(Instant::now()));
            let wait = match (due, ends) {
                (Some(due), Some(ends)) => Some(due.min(ends)),
                (due, ends) => due.or(ends),
            };
            // A pause ahead, after writes: the store checkpoints in it, on its own thread.
            if self.wrote && wait.is_none_or(|wait| wait >= LULL) {
                self.wrote = false;
                self.store.lull();
            }
            // An end is wanted at once by a run that waits for it, by the first end of a
            // batch (recorded within ENDS_WAIT of it) and by a daemon that stops.
            let wake_for_an_end =
                self.stopping || self.record_ends_at.is_none() || self.planner.has_waiting();
            if !self.ends.sleep(wake_for_an_end) {
                continue;
            }
            let event = match wait {
                Some(wait) => match self.events.recv_timeout(wait) {
                    Ok(event) => Some(event),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.events.recv() {
                    Ok(event) => Some(event),
                    Err(_) => break,
                },
            };
            // One event, then the planner again: a trigger that may start at once starts
            // before the next event can replace it (trigger.json, then trigger.yaml).
            if let Some(event) = event {
                self.handle(event);
            }
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        crate::exec::finish(
            self.config
                .shutdown_kill_grace
                .unwrap_or(Duration::from_secs(10)),
        );
        log::info!("daemon stopped");
        Ok(crate::error::exit_codes::OK)
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Signal(signals::Request::Reload) => {
                log::info!("SIGHUP: loading the configuration again");
                if let Some(intake) = &self.intake {
                    intake.reload();
                }
            }
            Event::Signal(signals::Request::ScanTriggers) => {
                log::info!("SIGUSR1: scanning the trigger directories");
                if let Some(intake) = &self.intake {
                    intake.scan();
                }
            }
            Event::Signal(signals::Request::Status) => self.log_status(),
            Event::Signal(signals::Request::Shutdown(sig)) => self.shutdown(sig),
            Event::Trigger(trigger) => self.trigger(trigger),
            Event::Reloaded(loaded) => self.reloaded(*loaded),
            // Taken at the top of the loop, with every other end that came meanwhile.
            Event::Ended => {}
            Event::Fired => {
                if !self.stopping {
                    self.take_firings();
                }
            }
            Event::Ready => {
                // Scheduling runs already; "started" means that the trigger files that
                // were there at start are taken too.
                log::info!(
                    "daemon started: {} job(s), data in {}",
                    self.planner.jobs().len(),
                    self.data_dir.display()
                );
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            }
        }
    }

    /// With jobs that use events: watches for fired events (once), and asks for the one
    /// run of each job (of `only`, when given: the jobs a reload added) that only waits
    /// for its `after` events.
    fn watch_events(&mut self, only: Option<&[String]>) {
        if self.event_jobs.is_empty() {
            return;
        }
        if self.on_event.is_none() {
            let notify_dir = self.notify_dir();
            match crate::events::Watcher::start(&notify_dir, self.location.fleet.as_ref()) {
                Ok(watcher) => {
                    let sender = self.sender.clone();
                    self.on_event = Some(watcher.subscribe(move || {
                        let _ = sender.send(Event::Fired);
                    }));
                }
                Err(e) => log::warn!(
                    "cannot watch {} for events ({e}); jobs waiting for events start only when something else wakes the daemon",
                    notify_dir.display()
                ),
            }
        }
        let once: Vec<String> = self
            .planner
            .jobs()
            .iter()
            .filter(|(name, j)| gate::runs_once_after(j) && only.is_none_or(|o| o.contains(name)))
            .map(|(name, _)| name.clone())
            .collect();
        for job in once {
            self.planner.add(launch::Request {
                job,
                schedule_time: Utc::now(),
                trigger_type: gate::TRIGGER_TYPE,
                trigger_data: serde_json::json!({}),
                environment: BTreeMap::new(),
            });
        }
    }

    /// Asks for a run for every new firing of a job's `and_every` event.
    fn take_firings(&mut self) {
        for (job, event) in self
            .gates
            .new_firings(&*self.events_store, self.planner.jobs())
        {
            log::info!(
                "event \"{}\" (#{}) was fired: job \"{job}\" runs (and_every)",
                event.name,
                event.id
            );
            self.planner.add(launch::Request {
                job,
                schedule_time: Utc::now(),
                trigger_type: gate::TRIGGER_TYPE,
                trigger_data: serde_json::json!({"event": event.name, "event_id": event.id}),
                environment: BTreeMap::new(),
            });
        }
    }

    /// `catch_up: once`: a job whose scheduled time passed while the daemon was down
    /// runs once now.
    fn catch_up(&mut self, now: DateTime<Utc>) {
        let mut missed_runs = Vec::new();
        for (name, job) in self.planner.jobs() {
            if job.job.catch_up != CatchUp::Once || job.schedule().is_none() {
                continue;
            }
            let last = match self.store.last_scheduled(name) {
                Ok(Some(last)) => last,
                Ok(None) => continue,
                Err(e) => {
                    log::warn!(
                        "cannot look up the last run of job \"{name}\": {}",
                        crate::error::one_line(&e)
                    );
                    continue;
                }
            };
            let Some(last) = DateTime::from_timestamp_micros((last * 1e6) as i64) else {
                continue;
            };
            if let Some(missed) = job.next_after(last).filter(|t| *t <= now) {
                log::info!("job \"{name}\" missed its run at {missed}; catching up once");
                missed_runs.push((name.clone(), missed));
            }
        }
        for (job, missed) in missed_runs {
            self.planner.catch_up(&job, missed);
        }
    }

    fn trigger(&mut self, trigger: Trigger) {
        if self.stopping {
            return;
        }
        let job = trigger.job.clone();
        let due = trigger.schedule_time;
        let added = self.planner.trigger(launch::Request {
            job: trigger.job,
            schedule_time: due,
            trigger_type: triggers::TRIGGER_TYPE,
            trigger_data: trigger.data,
            environment: trigger.environment,
        });
        let when = if due > Utc::now() {
            format!(" for {}", due.to_rfc3339())
        } else {
            String::new()
        };
        match added {
            Added::Planned => log::info!("job \"{job}\": triggered run planned{when}"),
            Added::Replaced(old) => log::info!(
                "job \"{job}\": triggered run planned{when}, replacing the {} run due {}",
                old.trigger_type,
                old.schedule_time.to_rfc3339()
            ),
            Added::UnknownJob => log::warn!("a trigger for unknown job \"{job}\" is ignored"),
        }
    }

    /// SIGHUP, once the intake thread has loaded the new configuration: take it only if
    /// it loaded completely; running runs finish under the old one.
    fn reloaded(&mut self, loaded: Result<Loaded, Error>) {
        let Loaded { config, jobs } = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                log::error!(
                    "reload failed, keeping the running configuration: {}",
                    crate::error::one_line(&e)
                );
                return;
            }
        };
        if self.stopping {
            return;
        }
        let new_dir = data_dir(&config, self.setup.state_dir.as_deref());
        if new_dir != self.data_dir {
            log::warn!(
                "data_dir changed to {}; it takes effect when the daemon restarts",
                new_dir.display()
            );
        }
        for warning in &config.warnings {
            log::warn!("{warning}");
        }
        let count = jobs.len();
        let added: Vec<String> = jobs
            .keys()
            .filter(|name| !self.planner.jobs().contains_key(name))
            .cloned()
            .collect();
        self.event_jobs = event_jobs(&jobs);
        self.planner.reload(jobs, limits(&config), Utc::now());
        self.config = config;
        // The jobs replaced are gone: their pages too (a daemon reloaded daily would
        // otherwise hold one more configuration's worth of holes after each).
        crate::memory::release_freed();
        self.watch_events(Some(&added));
        log::info!("configuration reloaded: {count} job(s)");
    }

    fn shutdown(&mut self, sig: i32) {
        if self.stopping {
            log::warn!(
                "signal {sig} again: killing {} running run(s) now",
                self.running.len()
            );
            for run in self.running.values() {
                run.interrupt.raise(sig);
                run.interrupt.raise(sig);
            }
            return;
        }
        self.stopping = true;
        self.planner.clear();
        // Due, not started: as the runs just cleared.
        for start in std::mem::take(&mut self.held) {
            self.planner.finished(start.slot);
        }
        self.held_until = None;
        if let Some(intake) = &self.intake {
            intake.stop();
        }
        if self.running.is_empty() {
            log::info!("signal {sig}: stopping");
        } else if self.config.shutdown_kill_runs {
            log::info!(
                "signal {sig}: stopping {} running run(s)",
                self.running.len()
            );
            for run in self.running.values() {
                run.interrupt.raise(sig);
            }
        } else {
            log::info!(
                "signal {sig}: no new runs; waiting for {} running run(s) to finish",
                self.running.len()
            );
        }
    }

    /// SIGQUIT: the running runs, the planned ones, and every job's next time.
    fn log_status(&self) {
        let planned = self.planner.planned();
        log::info!(
            "status: {} job(s), {} running, {} waiting",
            self.planner.jobs().len(),
            self.running.len(),
            planned.iter().filter(|(_, is_due)| *is_due).count()
        );
        for run in self.running.values() {
            log::info!(
                "status: run {} of job \"{}\" running for {:.1}s{}",
                run.run_id,
                run.job,
                run.started.elapsed().as_secs_f64(),
                run.group
                    .as_ref()
                    .map(|g| format!(" in group \"{g}\""))
                    .unwrap_or_default()
            );
        }
        for (request, is_due) in &planned {
            if *is_due {
                log::info!(
                    "status: job \"{}\" waiting ({}, due {})",
                    request.job,
                    request.trigger_type,
                    request.schedule_time.to_rfc3339()
                );
            }
        }
        for name in self.planner.jobs().keys() {
            let next = planned
                .iter()
                .filter(|(r, _)| &r.job == name)
                .map(|(r, _)| r.schedule_time)
                .min();
            match next {
                Some(next) => log::info!("status: job \"{name}\" next due {}", next.to_rfc3339()),
                None => log::info!("status: job \"{name}\" has no scheduled time"),
            }
        }
    }

    /// Starts every run the planner lets start now. The runs of one instant are recorded
    /// together, [`STARTS_AT_ONCE`] in one transaction, committed before any of them
    /// starts: a `kill -9` of the daemon after that finds each of them recorded (and
    /// finalizes it as lost), and a thousand runs due at once cost a few commits, not a
    /// thousand.
    ///
    /// A run due while another is due within [`GATHER`] of it waits for that one (and
    /// the next, within [`GATHER`] of the first), to be recorded with it; within
    /// [`GATHER_BUSY`] while the daemon is busy.
    fn start_due(&mut self, now: DateTime<Utc>) {
        let (store, gates, event_jobs) = (&*self.events_store, &self.gates, &self.event_jobs);
        let mut starts = std::mem::take(&mut self.held);
        starts.extend(
            self.planner
                .poll_with(now, |request| match event_jobs.get(&request.job) {
                    Some(job) => gates.admit(store, job, request),
                    None => Admission::Start,
                }),
        );
        let Some(first) = starts.iter().map(|s| s.request.schedule_time).min() else {
            self.held_until = None;
            return;
        };
        let gather = if self.busy { GATHER_BUSY } else { GATHER };
        let until = *self.held_until.get_or_insert(first + gather);
        if now < until && self.planner.next_due().is_some_and(|next| next <= until) {
            self.held = starts;
            return;
        }
        self.held_until = None;
        // What a run about to start is told of its job's previous runs is what the
        // store holds: the ends of its job are recorded first (with the others waiting).
        // Jobs are spread over their period, so a busy daemon starts a run every
        // millisecond or so, and the ends of other jobs keep waiting for theirs.
        let jobs: std::collections::HashSet<&str> =
            starts.iter().map(|s| s.request.job.as_str()).collect();
        let of_these = self.ended.iter().any(|end| {
            self.running
                .get(&end.slot)
                .is_some_and(|run| jobs.contains(run.job.as_str()))
        });
        drop(jobs);
        if of_these {
            self.record_ends();
        }
        self.programs.expire();
        self.count_starts(starts.len());
        let mut starts = starts.into_iter().peekable();
        while starts.peek().is_some() {
            let chunk: Vec<Start> = starts.by_ref().take(STARTS_AT_ONCE).collect();
            self.start_together(chunk);
        }
    }

    /// Counts `n` starts towards the rate that makes the daemon busy, judged anew once a
    /// second or more has passed (a daemon idle for an hour is not busy for its first
    /// run after).
    fn count_starts(&mut self, n: usize) {
        let elapsed = self.rate_since.elapsed();
        if elapsed >= Duration::from_secs(1) {
            self.busy = f64::from(self.rate_count) / elapsed.as_secs_f64() >= BUSY_STARTS;
            self.rate_count = 0;
            self.rate_since = Instant::now();
        }
        self.rate_count = self
            .rate_count
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
    }

    /// Makes, records (in one transaction) and starts runs that are due together.
    fn start_together(&mut self, starts: Vec<Start>) {
        let mut prepared = Vec::with_capacity(starts.len());
        for start in starts {
            let slot = start.slot;
            match self.prepare(start) {
                Some(run) => prepared.push(run),
                None => self.planner.finished(slot),
            }
        }
        if prepared.is_empty() {
            return;
        }
        let news: Vec<NewRun<'_>> = prepared
            .iter()
            .map(|run| NewRun {
                run_id: &run.run_id,
                job: &run.job.name,
                schedule_time: run.request.schedule_time.into(),
                start_time: run.start_time.into(),
                trigger_type: run.request.trigger_type,
                trigger_data: &run.request.trigger_data,
                session: self.gates.session(),
                output_dir: &run.paths.run_dir,
                owner: &self.owner,
                tasks: &[],
                host: &self.host,
            })
            .collect();
        let recorded = self.store.begin_runs(&news);
        self.wrote = true;
        drop(news);
        for (run, recorded) in prepared.into_iter().zip(recorded) {
            if let Err(e) = recorded {
                log::warn!(
                    "cannot record run {}: {}",
                    run.run_id,
                    crate::error::one_line(&e)
                );
            }
            let slot = run.slot;
            if !self.launch(run) {
                self.planner.finished(slot);
            }
        }
    }

    /// Everything a run needs before it is recorded and started; `None` if its job is
    /// gone.
    fn prepare(&mut self, start: Start) -> Option<Prepared> {
        let Start {
            slot,
            request,
            group,
            merged_from,
        } = start;
        let job = self.planner.jobs().get(&request.job)?.job.clone();
        let run_id = crate::store::new_run_id();
        let paths = RunPaths::new(&self.data_dir, &job.name, &run_id);
        let start_time = Utc::now();
        if let Some(from) = merged_from {
            let message = format!(
                "job \"{}\": its times from {} on went by while its {} run waited; they are merged into it",
                job.name,
                from.to_rfc3339(),
                request.schedule_time.to_rfc3339()
            );
            if start_time - request.schedule_time > LATE_WARNING {
                log::warn!("{message}");
            } else {
                log::debug!("{message}");
            }
        }
        let previous = match self.previous.get(&job.name) {
            Some(previous) => previous.clone(),
            None => match self.store.previous_runs(&job.name) {
                Ok(previous) => {
                    // A chain job's run is also written by the chain: always asked for.
                    if job.taskdir().is_none() {
                        self.previous.insert(job.name.clone(), previous.clone());
                    }
                    previous
                }
                Err(e) => {
                    log::warn!(
                        "cannot read the previous runs of \"{}\": {}",
                        job.name,
                        crate::error::one_line(&e)
                    );
                    [None, None, None]
                }
            },
        };
        let mut env = launch::environment(&Context {
            job: &job,
            request: &request,
            run_id: &run_id,
            paths: &paths,
            start_time,
            group: group.as_deref(),
            previous: &previous,
            global_env: &self.config.environment,
        });
        let events = self.event_environment(&mut env, &request, &paths);
        Some(Prepared {
            slot,
            job,
            request,
            group,
            run_id,
            paths,
            start_time,
            env,
            events,
        })
    }

    /// Starts a recorded run on a thread of the pool; `false` if it could not be started
    /// at all.
    fn launch(&mut self, run: Prepared) -> bool {
        let Prepared {
            slot,
            job,
            request,
            group,
            run_id,
            paths,
            start_time,
            env,
            events,
        } = run;
        let cmd = launch::command(
            &job,
            &run_id,
            env,
            &paths,
            &self.exe,
            &self.location,
            &mut self.programs,
        );
        let interrupt = Interrupt::new();
        let supervisor = Supervisor::new(Arc::clone(&interrupt), Arc::clone(&self.guardian));
        let limits = Limits {
            max_time: job.max_execution(),
            kill_grace: job.max_execution_grace,
            interrupt_grace: Some(
                self.config
                    .shutdown_kill_grace
                    .unwrap_or(job.max_execution_grace),
            ),
            leftovers: crate::exec::Leftovers::Keep,
        };
        let sender = self.sender.clone();
        let ends = Arc::clone(&self.ends);
        let run_paths = paths.clone();
        let spawned = self.pool.run(move || {
            // Making the run's directory and file is most of a run's start on a busy
            // file system: here it keeps the scheduling loop free for the next run.
            let file = match launch::output_file(&run_paths) {
                Ok(file) => Some(file),
                Err(e) => {
                    log::error!(
                        "cannot create {}: {e}; the run's output is lost",
                        run_paths.run_dir.join("output.txt").display()
                    );
                    None
                }
            };
            if let Some(events) = events {
                launch::write_events(&run_paths, &events);
            }
            let made = file.is_some();
            let output = Output {
                file: std::sync::Mutex::new(file),
                ..Output::default()
            };
            let report = supervisor.run(cmd, limits, &output);
            if let (Exit::NotStarted(e), true) = (&report.exit, made) {
                launch::note_not_started(&run_paths, e);
            }
            // Read here, after the process ended, not on the loop (see `End::run_data`).
            let run_data = launch::run_data(&run_paths);
            if ends.push(End {
                slot,
                report,
                run_data,
            }) {
                let _ = sender.send(Event::Ended);
            }
        });
        if let Err(e) = spawned {
            log::error!("cannot start a thread for run {run_id}: {e}");
            let _ = self.store.finish_run(
                &run_id,
                RunStatus::Failed,
                Some(127),
                Some(SystemTime::now()),
            );
            return false;
        }
        let late = (start_time - request.schedule_time).num_milliseconds();
        log::info!(
            "run {run_id} of job \"{}\" started ({}, {late} ms after its due time)",
            job.name,
            request.trigger_type
        );
        self.running.insert(
            slot,
            Running {
                run_id,
                job: job.name,
                group,
                interrupt,
                paths,
                started: Instant::now(),
                schedule_time: crate::epoch::seconds(request.schedule_time.into()),
                start_time: crate::epoch::seconds(start_time.into()),
            },
        );
        true
    }

    /// Keeps the job's `PREVIOUS_*` runs up to date with a run that ended, as the store's
    /// look-up would find them: the newest by start time, of all, of exit 0, of the rest.
    fn remember_previous(&mut self, run: &Running, code: i32, status: RunStatus, stop: f64) {
        let Some(previous) = self.previous.get_mut(&run.job) else {
            return;
        };
        let record = RunRecord {
            run_id: run.run_id.clone(),
            job_name: run.job.clone(),
            status,
            schedule_time: Some(run.schedule_time),
            start_time: Some(run.start_time),
            stop_time: Some(stop),
            exit_code: Some(i64::from(code)),
            trigger_type: None,
            trigger_data: serde_json::Value::Null,
            run_data: serde_json::Value::Null,
            host: None,
        };
        let kind = if code == 0 { 1 } else { 2 };
        for slot in [0, kind] {
            let newer = previous[slot]
                .as_ref()
                .is_none_or(|p| p.start_time.unwrap_or(f64::NEG_INFINITY) <= run.start_time);
            if newer {
                previous[slot] = Some(record.clone());
            }
        }
    }

    /// The runs that ended since the last look: their slots are free now.
    fn take_ends(&mut self) {
        for end in self.ends.take() {
            self.ended(end);
        }
    }

    /// A run ended: its slot is free now, its end is recorded within [`ENDS_WAIT`].
    fn ended(&mut self, end: End) {
        self.planner.finished(end.slot);
        self.ended.push(end);
        if self.ended.len() >= ENDS_AT_ONCE {
            self.record_ends();
        } else if self.record_ends_at.is_none() {
            self.record_ends_at = Some(Instant::now() + ENDS_WAIT);
        }
    }

    /// The runs that ended and wait, recorded together: one transaction for all their
    /// ends, and one for the events of those that succeeded.
    fn record_ends(&mut self) {
        self.record_ends_at = None;
        if self.ended.is_empty() {
            return;
        }
        let ended = std::mem::take(&mut self.ended);
        let mut done = Vec::with_capacity(ended.len());
        for End {
            slot,
            report,
            run_data: data,
        } in ended
        {
            let Some(run) = self.running.remove(&slot) else {
                continue;
            };
            let run_id = &run.run_id;
            let code = launch::exit_code(&report);
            if let Some(data) = &data
                && let Err(e) = self.store.set_run_data(run_id, data)
            {
                log::warn!(
                    "cannot record return_data of run {run_id}: {}",
                    crate::error::one_line(&e)
                );
            }
            let status = match (code, report.stopped) {
                (_, Some(crate::exec::Stop::Interrupt(_))) => RunStatus::Interrupted,
                (0, _) => RunStatus::Ok,
                _ => RunStatus::Failed,
            };
            // A fleet database keeps the run's output for every host (an embedded store
            // keeps only the file): at most its last OUTPUT_KEPT bytes.
            if self.location.fleet.is_some()
                && let Ok(bytes) = std::fs::read(run.paths.run_dir.join("output.txt"))
            {
                let from = bytes.len().saturating_sub(OUTPUT_KEPT);
                if let Err(e) = self.store.store_run_output(run_id, &bytes[from..]) {
                    log::debug!("cannot keep the output of run {run_id}: {e}");
                }
            }
            done.push((run, report, code, status, data));
        }
        // Each run that succeeded fires an event named after its job. With the local
        // store it is written in the transaction that records the run's end.
        let joint = self.location.fleet.is_none() && self.store.fires_events();
        let session = self.gates.session().to_owned();
        let firings: Vec<Option<(String, serde_json::Value)>> = done
            .iter()
            .map(|(run, _, _, status, data)| {
                (*status == RunStatus::Ok).then(|| job_event(&run.run_id, data.as_ref()))
            })
            .collect();
        let ends: Vec<RunEnd<'_>> = done
            .iter()
            .zip(&firings)
            .map(|((run, report, code, status, _), firing)| RunEnd {
                run_id: &run.run_id,
                status: *status,
                exit_code: Some(*code),
                stop_time: Some(report.stopped_at()),
                event: firing.as_ref().filter(|_| joint).map(|(source, data)| {
                    crate::store::NewEvent {
                        session: &session,
                        name: &run.job,
                        data,
                        source,
                    }
                }),
            })
            .collect();
        let recorded = self.store.finish_runs(&ends);
        self.wrote = true;
        drop(ends);
        let mut unfired = Vec::new();
        for (((run, report, code, status, _), recorded), firing) in
            done.into_iter().zip(recorded).zip(firings)
        {
            let run_id = &run.run_id;
            // An end that could not be written took its event with it: it is fired on
            // its own, as without the local store.
            let fired = joint && recorded.is_ok();
            match recorded {
                Ok(()) => {
                    let stop = crate::epoch::seconds(report.stopped_at());
                    self.remember_previous(&run, code, status, stop);
                }
                Err(e) => {
                    log::warn!(
                        "cannot record the end of run {run_id}: {}",
                        crate::error::one_line(&e)
                    );
                    // Whatever the store holds now is what the next run is told.
                    self.previous.remove(&run.job);
                }
            }
            if !report.leftovers.is_empty() {
                log::warn!(
                    "run {run_id} of job \"{}\" left {} process(es) running: {}",
                    run.job,
                    report.leftovers.len(),
                    crate::exec::describe_leftovers(&report.leftovers)
                );
            }
            if let Some((source, data)) = firing.filter(|_| !fired) {
                unfired.push((run.job.clone(), source, data));
            }
            let reason = launch::stop_reason(&report)
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            log::info!(
                "run {run_id} of job \"{}\" ended with exit code {code} after {:.2}s{reason}",
                run.job,
                run.started.elapsed().as_secs_f64()
            );
        }
        self.fire_job_events(&session, unfired);
    }

    /// What a run needs for events: `RUNNER_SESSION` and `RUNNER_DATABASE`, so that
    /// `runner fire` in it fires where this daemon looks, and, for a run that waited for
    /// events, `RUNNER_EVENTS`: the file [`gate::EVENTS_FILE`] in its run directory,
    /// holding their data as one JSON object keyed by event name (as a chain task gets
    /// it). Returns that file's content, written on the run's thread with its directory.
    fn event_environment(
        &self,
        env: &mut BTreeMap<String, String>,
        request: &launch::Request,
        paths: &RunPaths,
    ) -> Option<String> {
        env.insert("RUNNER_SESSION".to_owned(), self.gates.session().to_owned());
        // A database named by the launch stays; else the daemon's own (a fleet's
        // connection string goes through the environment only, never argv).
        env.entry("RUNNER_DATABASE".to_owned())
            .or_insert_with(|| match &self.location.fleet {
                Some(url) => url.secret_text().to_owned(),
                None => self.location.file().display().to_string(),
            });
        let events = request.trigger_data.get("events")?;
        env.insert(
            "RUNNER_EVENTS".to_owned(),
            paths.run_dir.join(gate::EVENTS_FILE).display().to_string(),
        );
        Some(events.to_string())
    }

    /// The directory whose `events.notify` announces this host's events.
    fn notify_dir(&self) -> PathBuf {
        self.location
            .file()
            .parent()
            .unwrap_or(Path::new("."))
            .to_owned()
    }

    /// Fires the events of jobs whose runs succeeded, `(job, source, data)` each, all in
    /// one transaction of the events store: those its run's end did not write.
    fn fire_job_events(
        &mut self,
        session: &str,
        firings: Vec<(String, String, serde_json::Value)>,
    ) {
        if firings.is_empty() {
            return;
        }
        let events: Vec<crate::store::NewEvent<'_>> = firings
            .iter()
            .map(|(job, source, data)| crate::store::NewEvent {
                session,
                name: job,
                data,
                source,
            })
            .collect();
        let fired = self.events_store.fire_events(&events);
        for (event, fired) in events.iter().zip(fired) {
            if let Err(e) = fired {
                log::warn!(
                    "cannot fire the event of job \"{}\": {}",
                    event.name,
                    crate::logging::one_line(&e)
                );
            }
        }
    }
}

/// The event a succeeded run fires: its source (`job RUN_ID`) and its data, the object
/// its `return_data.json` holds (or `{}`).
fn job_event(run_id: &str, run_data: Option<&serde_json::Value>) -> (String, serde_json::Value) {
    let data = run_data
        .and_then(|d| d.get("return_data").cloned())
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}));
    (format!("job {run_id}"), data)
}
