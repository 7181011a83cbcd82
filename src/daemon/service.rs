//! The scheduler loop: one thread owns every decision.
//!
//! Due times sit in one timer heap. The loop sleeps on its event channel until the next
//! due time or an event (a signal, a trigger file, a run that ended): no periodic
//! polling, so a daemon with ten thousand hourly jobs is idle between due times. Each
//! run is supervised on its own thread, which reports back through the channel, so a
//! slot freed in a concurrency group is handed to a waiting run at once.
//!
//! Ticks are scheduled from the nominal due time, never from the (possibly late) time
//! the loop got to them, so a busy moment never skips the next tick.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};

use super::jobs::{self, ScheduledJob};
use super::launch::{self, Context, Request, RunPaths};
use super::signals;
use crate::config::daemon::{CatchUp, DaemonConfig};
use crate::error::Error;
use crate::exec::{AttemptReport, Exit, Guardian, Limits, Output, Supervisor};
use crate::signals::Interrupt;
use crate::store::model::RunStatus;
use crate::store::{Location, NewRun, Owner, Store};
use crate::triggers::{self, Watcher};

/// Without inotify, how often the trigger directories are scanned.
const TRIGGER_POLL: Duration = Duration::from_secs(1);

/// Ticks older than this when the loop gets to them (a suspended machine, a stopped
/// process) are skipped, not replayed one by one.
const MAX_TICK_BACKLOG: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// What wakes the loop.
pub(super) enum Event {
    Signal(signals::Request),
    Trigger(String),
    Finished {
        run_id: String,
        report: AttemptReport,
    },
}

/// One entry of the timer heap.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Timer {
    pub(super) due: DateTime<Utc>,
    pub(super) kind: TimerKind,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerKind {
    /// The next scheduled tick of a job, valid for one configuration generation.
    Tick { job: String, generation: u64 },
    /// A trigger with a future `schedule_time`, waiting in `deferred`.
    Deferred(u64),
}

/// A run in progress.
pub(super) struct Running {
    pub(super) job: String,
    pub(super) group: Option<String>,
    pub(super) interrupt: Arc<Interrupt>,
    pub(super) paths: RunPaths,
    pub(super) started: Instant,
}

/// Where the daemon's configuration comes from and what overrides it.
pub(crate) struct Setup {
    /// The configuration file or directory.
    pub(crate) config_path: PathBuf,
    /// `--state-dir` (or `RUNNER_STATE_DIR`), which wins over `data_dir`.
    pub(crate) state_dir: Option<PathBuf>,
    /// `--database` (or `RUNNER_DATABASE`), which wins over `database.file`.
    pub(crate) database: Option<String>,
}

/// The running scheduler.
pub(crate) struct Service {
    pub(super) setup: Setup,
    pub(super) config: DaemonConfig,
    pub(super) data_dir: PathBuf,
    pub(super) jobs: BTreeMap<String, ScheduledJob>,
    pub(super) store: Store,
    pub(super) owner: Owner,
    pub(super) exe: PathBuf,
    pub(super) guardian: Arc<Guardian>,
    pub(super) sender: Sender<Event>,
    pub(super) events: Receiver<Event>,
    pub(super) timers: BinaryHeap<Reverse<Timer>>,
    pub(super) deferred: HashMap<u64, Request>,
    pub(super) next_deferred: u64,
    pub(super) generation: u64,
    pub(super) pending: Vec<Request>,
    pub(super) running: HashMap<String, Running>,
    pub(super) group_use: HashMap<String, usize>,
    pub(super) watcher: Option<Watcher>,
    pub(super) stopping: bool,
}

/// The data directory: `--state-dir` first, then the configuration's `data_dir`.
pub(crate) fn data_dir(config: &DaemonConfig, state_dir: Option<&Path>) -> PathBuf {
    crate::state::resolve(state_dir, config.configured_data_dir.as_deref())
}

impl Service {
    /// Loads everything and opens the store; nothing runs yet.
    pub(crate) fn new(setup: Setup) -> Result<Service, Error> {
        let mut config = DaemonConfig::load(&setup.config_path)?;
        let jobs = jobs::prepare(&config)?;
        // The prepared jobs are the ones the loop uses; keeping a second copy of every
        // job in the configuration would double the memory of a large daemon.
        config.jobs.clear();
        for warning in &config.warnings {
            log::warn!("{warning}");
        }
        let data_dir = data_dir(&config, setup.state_dir.as_deref());
        crate::state::ensure_dir(&data_dir)?;
        let location = Location::resolve(setup.database.as_deref(), Some(&config), &data_dir)?;
        let store = Store::open_at(&location)?;
        let exe = std::env::current_exe().map_err(|e| Error::io("/proc/self/exe", e))?;
        let grace = jobs
            .values()
            .map(|j| j.job.max_execution_grace)
            .max()
            .unwrap_or(Duration::from_secs(60));
        let (sender, events) = mpsc::channel();
        Ok(Service {
            setup,
            config,
            data_dir,
            jobs,
            store,
            owner: Owner::current(),
            exe,
            guardian: Arc::new(Guardian::start(grace, None)),
            sender,
            events,
            timers: BinaryHeap::new(),
            deferred: HashMap::new(),
            next_deferred: 0,
            generation: 0,
            pending: Vec::new(),
            running: HashMap::new(),
            group_use: HashMap::new(),
            watcher: None,
            stopping: false,
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
        triggers::prepare_dirs(&self.data_dir, self.jobs.keys().map(String::as_str));
        let sender = self.sender.clone();
        self.watcher = Watcher::start(&self.data_dir, move |job| {
            sender.send(Event::Trigger(job)).is_ok()
        });
        let names: Vec<String> = self.jobs.keys().cloned().collect();
        if let Some(watcher) = self.watcher.as_mut() {
            for job in &names {
                watcher.add(job);
            }
        }
        let now = Utc::now();
        self.catch_up(now);
        self.schedule_all(now);
        self.scan_triggers();
        log::info!(
            "daemon started: {} job(s), data in {}",
            self.jobs.len(),
            self.data_dir.display()
        );
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

        let mut last_scan = Instant::now();
        loop {
            let now = Utc::now();
            if !self.stopping {
                self.fire_timers(now);
            }
            self.start_ready();
            if self.stopping && self.running.is_empty() {
                break;
            }
            let mut wait = match (self.stopping, self.timers.peek()) {
                (false, Some(Reverse(timer))) => {
                    Some((timer.due - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                }
                _ => None,
            };
            if self.watcher.is_none() && !self.stopping {
                let left = TRIGGER_POLL.saturating_sub(last_scan.elapsed());
                wait = Some(wait.map_or(left, |w| w.min(left)));
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
            if let Some(event) = event {
                self.handle(event);
            }
            if self.watcher.is_none() && last_scan.elapsed() >= TRIGGER_POLL {
                self.scan_triggers();
                last_scan = Instant::now();
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
            Event::Signal(signals::Request::Reload) => self.reload(),
            Event::Signal(signals::Request::ScanTriggers) => {
                log::info!("SIGUSR1: scanning the trigger directories");
                self.scan_triggers();
            }
            Event::Signal(signals::Request::Status) => self.log_status(),
            Event::Signal(signals::Request::Shutdown(sig)) => self.shutdown(sig),
            Event::Trigger(job) => {
                if !self.stopping {
                    self.take_trigger(&job);
                }
            }
            Event::Finished { run_id, report } => self.finished(&run_id, &report),
        }
    }

    /// Schedules the next tick of every job, from `now`.
    pub(super) fn schedule_all(&mut self, now: DateTime<Utc>) {
        let generation = self.generation;
        for (name, job) in &self.jobs {
            if let Some(due) = job.next_after(now) {
                self.timers.push(Reverse(Timer {
                    due,
                    kind: TimerKind::Tick {
                        job: name.clone(),
                        generation,
                    },
                }));
            }
        }
    }

    /// `catch_up: once`: a job whose scheduled time passed while the daemon was down
    /// runs once now.
    fn catch_up(&mut self, now: DateTime<Utc>) {
        let mut due = Vec::new();
        for (name, job) in &self.jobs {
            if job.job.catch_up != CatchUp::Once || job.schedule.is_none() {
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
                due.push(Request {
                    job: name.clone(),
                    schedule_time: missed,
                    trigger_type: "catch_up".to_owned(),
                    trigger_data: serde_json::json!({}),
                    environment: BTreeMap::new(),
                });
            }
        }
        for request in due {
            self.enqueue(request);
        }
    }

    fn fire_timers(&mut self, now: DateTime<Utc>) {
        while let Some(Reverse(timer)) = self.timers.peek() {
            if timer.due > now {
                return;
            }
            let Some(Reverse(timer)) = self.timers.pop() else {
                return;
            };
            match timer.kind {
                TimerKind::Deferred(id) => {
                    if let Some(request) = self.deferred.remove(&id) {
                        self.enqueue(request);
                    }
                }
                TimerKind::Tick { job, generation } => {
                    if generation != self.generation {
                        continue;
                    }
                    let Some(scheduled) = self.jobs.get(&job) else {
                        continue;
                    };
                    let mut next = scheduled.next_after(timer.due);
                    if let Some(n) = next.filter(|n| now - *n > MAX_TICK_BACKLOG) {
                        log::warn!(
                            "job \"{job}\": ticks from {} to {now} were missed (the daemon was not running); skipping to the next",
                            n
                        );
                        next = scheduled.next_after(now);
                    }
                    if let Some(due) = next {
                        self.timers.push(Reverse(Timer {
                            due,
                            kind: TimerKind::Tick {
                                job: job.clone(),
                                generation,
                            },
                        }));
                    }
                    self.enqueue(Request {
                        job,
                        schedule_time: timer.due,
                        trigger_type: "schedule".to_owned(),
                        trigger_data: serde_json::json!({}),
                        environment: BTreeMap::new(),
                    });
                }
            }
        }
    }

    /// Queues a run. A job without `concurrent_runs` has at most one waiting run: a
    /// trigger replaces a waiting scheduled run, and a tick finding one waiting is merged
    /// into it.
    pub(super) fn enqueue(&mut self, request: Request) {
        let Some(job) = self.jobs.get(&request.job) else {
            return;
        };
        if !job.job.concurrent_runs {
            if let Some(waiting) = self.pending.iter_mut().find(|p| p.job == request.job) {
                if waiting.trigger_type == "schedule" && request.trigger_type != "schedule" {
                    log::info!(
                        "job \"{}\": a {} run replaces the waiting scheduled run",
                        request.job,
                        request.trigger_type
                    );
                    *waiting = request;
                } else {
                    log::debug!(
                        "job \"{}\" already has a run waiting; {} request merged",
                        request.job,
                        request.trigger_type
                    );
                }
                return;
            }
        }
        self.pending.push(request);
    }

    /// Starts every waiting run that may start, in the order they were asked for.
    fn start_ready(&mut self) {
        if self.stopping {
            self.pending.clear();
            return;
        }
        let mut i = 0;
        while i < self.pending.len() {
            let name = self.pending[i].job.clone();
            let Some(job) = self.jobs.get(&name) else {
                self.pending.remove(i);
                continue;
            };
            if !job.job.concurrent_runs && self.running.values().any(|r| r.job == name) {
                i += 1;
                continue;
            }
            let group = if job.job.concurrency_groups.is_empty() {
                None
            } else {
                let free = job.job.concurrency_groups.iter().find(|g| {
                    let max = self.config.concurrency_groups.get(*g).map_or(1, |c| c.max);
                    self.group_use.get(*g).copied().unwrap_or(0) < max
                });
                match free {
                    Some(g) => Some(g.clone()),
                    None => {
                        i += 1;
                        continue;
                    }
                }
            };
            let request = self.pending.remove(i);
            self.start(request, group);
        }
    }

    fn start(&mut self, request: Request, group: Option<String>) {
        let Some(scheduled) = self.jobs.get(&request.job) else {
            return;
        };
        let job = scheduled.job.clone();
        let run_id = uuid::Uuid::new_v4().to_string();
        let paths = RunPaths::new(&self.data_dir, &job.name, &run_id);
        let start_time = Utc::now();
        let previous = self.store.previous_runs(&job.name).unwrap_or_else(|e| {
            log::warn!(
                "cannot read the previous runs of \"{}\": {}",
                job.name,
                crate::error::one_line(&e)
            );
            [None, None, None]
        });
        let env = launch::environment(&Context {
            job: &job,
            request: &request,
            run_id: &run_id,
            paths: &paths,
            start_time,
            group: group.as_deref(),
            previous: &previous,
            global_env: &self.config.environment,
        });
        let file = match launch::output_file(&paths) {
            Ok(file) => Some(file),
            Err(e) => {
                log::error!(
                    "cannot create {}: {e}; the run's output is lost",
                    paths.run_dir.join("output.txt").display()
                );
                None
            }
        };
        let recorded = self.store.begin_run(&NewRun {
            run_id: &run_id,
            job: &job.name,
            schedule_time: request.schedule_time.into(),
            start_time: start_time.into(),
            trigger_type: &request.trigger_type,
            trigger_data: &request.trigger_data,
            session: &crate::state::boot_id(),
            output_dir: &paths.run_dir,
            owner: &self.owner,
            tasks: &[],
        });
        if let Err(e) = recorded {
            log::warn!("cannot record run {run_id}: {}", crate::error::one_line(&e));
        }
        let cmd = launch::command(&job, &run_id, &env, &paths, &self.exe, self.store.path());
        let interrupt = Interrupt::new();
        let supervisor = Supervisor::new(Arc::clone(&interrupt), Arc::clone(&self.guardian));
        let limits = Limits {
            max_time: job.max_execution,
            kill_grace: job.max_execution_grace,
            interrupt_grace: Some(
                self.config
                    .shutdown_kill_grace
                    .unwrap_or(job.max_execution_grace),
            ),
            leftovers: crate::exec::Leftovers::Keep,
        };
        let sender = self.sender.clone();
        let id = run_id.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("run-{}", &run_id[..8]))
            .spawn(move || {
                let output = Output {
                    file,
                    ..Output::default()
                };
                let report = supervisor.run(cmd, limits, &output);
                if let (Exit::NotStarted(e), Some(mut file)) = (&report.exit, output.file) {
                    use std::io::Write;
                    let _ = writeln!(file, "runner: cannot start the command: {e}");
                }
                let _ = sender.send(Event::Finished { run_id: id, report });
            });
        if let Err(e) = spawned {
            log::error!("cannot start a thread for run {run_id}: {e}");
            let _ = self.store.finish_run(
                &run_id,
                RunStatus::Failed,
                Some(127),
                Some(SystemTime::now()),
            );
            return;
        }
        if let Some(g) = &group {
            *self.group_use.entry(g.clone()).or_insert(0) += 1;
        }
        let late = (start_time - request.schedule_time).num_milliseconds();
        log::info!(
            "run {run_id} of job \"{}\" started ({}, {late} ms after its due time)",
            job.name,
            request.trigger_type
        );
        self.running.insert(
            run_id,
            Running {
                job: job.name,
                group,
                interrupt,
                paths,
                started: Instant::now(),
            },
        );
    }

    fn finished(&mut self, run_id: &str, report: &AttemptReport) {
        let Some(run) = self.running.remove(run_id) else {
            return;
        };
        if let Some(g) = &run.group {
            if let Some(used) = self.group_use.get_mut(g) {
                *used = used.saturating_sub(1);
            }
        }
        let code = launch::exit_code(report);
        if let Some(data) = launch::run_data(&run.paths) {
            if let Err(e) = self.store.set_run_data(run_id, &data) {
                log::warn!(
                    "cannot record return_data of run {run_id}: {}",
                    crate::error::one_line(&e)
                );
            }
        }
        let status = match (code, report.stopped) {
            (_, Some(crate::exec::Stop::Interrupt(_))) => RunStatus::Interrupted,
            (0, _) => RunStatus::Ok,
            _ => RunStatus::Failed,
        };
        if let Err(e) = self
            .store
            .finish_run(run_id, status, Some(code), Some(report.stopped_at()))
        {
            log::warn!(
                "cannot record the end of run {run_id}: {}",
                crate::error::one_line(&e)
            );
        }
        if !report.leftovers.is_empty() {
            log::warn!(
                "run {run_id} of job \"{}\" left {} process(es) running: {}",
                run.job,
                report.leftovers.len(),
                crate::exec::describe_leftovers(&report.leftovers)
            );
        }
        let reason = launch::stop_reason(report)
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        log::info!(
            "run {run_id} of job \"{}\" ended with exit code {code} after {:.2}s{reason}",
            run.job,
            run.started.elapsed().as_secs_f64()
        );
    }
}
