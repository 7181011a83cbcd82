//! The store as the chain's [`Recorder`]: every run, instance and attempt as it happens,
//! and each attempt's output in `STATE_DIR/runs/JOB/RUN_ID/`, where the whole run's
//! output also goes to dsari's `output.txt`.
//!
//! A recording failure never fails the chain. The first one is reported in one warning,
//! and recording stops for the rest of the process: half-recorded runs are shown as
//! `lost` later, which is the truth.
//!
//! With a fleet database (section 13) the local SQLite store still records everything,
//! and every state change is mirrored to PostgreSQL as it happens. If PostgreSQL cannot
//! be reached at start, or goes away mid-run, one warning says so, the run is marked
//! in the local store, and it is sent whole once PostgreSQL answers again: at this
//! run's end if it is back by then, else at the next run's start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::backend::RunStore;
use super::capture::{CaptureFile, RunOutput};
use super::fleet_sync;
use super::fleet_url::FleetUrl;
use super::location::Location;
use super::model::{InstanceStatus, RunStatus};
use super::owner::Owner;
use super::postgres::PgStore;
use super::sqlite::{AttemptEnding, Cascade, NewRun, Store, StoreError};
use crate::record::{AttemptEnd, AttemptStart, Recorder, RunStart, SharedCapture, TaskResult};

/// Records into a [`Store`], or into nothing once the store has failed.
pub(crate) struct StoreRecorder {
    store: Option<Store>,
    state_dir: PathBuf,
    job: String,
    log_max_bytes: u64,
    owner: Owner,
    trigger_type: String,
    output_dir: Option<PathBuf>,
    /// The run's dsari `output.txt`, which every attempt's capture also writes to.
    run_output: Option<RunOutput>,
    /// Whether captured output is prefixed with the task's name (parallel runs).
    prefixed: bool,
    instances: HashMap<(String, u32), i64>,
    attempts: HashMap<(String, u32, u32), OpenAttempt>,
    /// Recording into a run that another process (the daemon) started and finishes.
    attached: bool,
    /// Attempt endings not written yet: they go with the next state change, which in a
    /// chain follows at once (see [`Store::record_attempts`]), or with [`Recorder::flush`].
    ended: Vec<AttemptEnding>,
    /// The run's event session, for cascades.
    session: String,
    /// Continuing a run that already exists (replay, skip): its rows are there.
    resumed: bool,
    /// The host runs are recorded with.
    host: String,
    /// The fleet database named, if any.
    fleet_url: Option<FleetUrl>,
    /// The fleet mirror, while PostgreSQL answers.
    fleet: Option<Mirror>,
    /// The run being recorded, and whether it still has to be sent to the fleet.
    current: Option<(String, bool)>,
}

/// The fleet database and the ids its rows got, by the local rows' ids.
struct Mirror {
    store: PgStore,
    instances: HashMap<i64, i64>,
    attempts: HashMap<i64, i64>,
}

impl Mirror {
    fn translate(&self, ended: &[AttemptEnding]) -> Option<Vec<AttemptEnding>> {
        ended
            .iter()
            .map(|e| {
                let mut e = e.clone();
                e.attempt_id = *self.attempts.get(&e.attempt_id)?;
                e.instance_id = *self.instances.get(&e.instance_id)?;
                Some(e)
            })
            .collect()
    }
}

/// An attempt that started and has not ended yet.
struct OpenAttempt {
    id: i64,
    capture: Option<Arc<Mutex<CaptureFile>>>,
}

impl StoreRecorder {
    /// Opens the store at `location` for `job`, keeping output under `state_dir`. On failure, warns once and returns a
    /// recorder that records nothing.
    pub(crate) fn open(
        state_dir: &Path,
        location: &Location,
        job: &str,
        log_max_bytes: u64,
        trigger_type: &str,
        host: &str,
    ) -> StoreRecorder {
        let mut store = match Store::open_at(location) {
            Ok(store) => Some(store),
            Err(e) => {
                warn_unrecorded(&e);
                None
            }
        };
        let fleet = location.fleet.as_ref().and_then(|url| {
            match PgStore::open(url, host) {
                Ok(mut pg) => {
                    if let Some(local) = store.as_mut() {
                        if let Err(e) = fleet_sync::send_pending(local, &mut pg) {
                            log::warn!(
                                "cannot send runs recorded while {} was unreachable ({}); they are kept here",
                                url.describe(),
                                crate::error::one_line(&e)
                            );
                        }
                    }
                    Some(Mirror {
                        store: pg,
                        instances: HashMap::new(),
                        attempts: HashMap::new(),
                    })
                }
                Err(e) => {
                    warn_fleet_lost(url, &e, location);
                    None
                }
            }
        });
        StoreRecorder {
            store,
            state_dir: state_dir.to_owned(),
            job: job.to_owned(),
            log_max_bytes,
            owner: Owner::current(),
            trigger_type: trigger_type.to_owned(),
            output_dir: None,
            run_output: None,
            prefixed: false,
            instances: HashMap::new(),
            attempts: HashMap::new(),
            attached: false,
            ended: Vec::new(),
            session: String::new(),
            resumed: false,
            host: host.to_owned(),
            fleet_url: location.fleet.clone(),
            fleet,
            current: None,
        }
    }

    /// Mirrors one state change to the fleet database; on failure, warns once, stops
    /// mirroring and marks the run to be sent later.
    fn mirror<T>(&mut self, f: impl FnOnce(&mut Mirror) -> Result<T, StoreError>) -> Option<T> {
        let result = f(self.fleet.as_mut()?);
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.fleet = None;
                if let Some(url) = &self.fleet_url {
                    let location = Location {
                        file: self
                            .store
                            .as_ref()
                            .map(|s| s.path().to_owned())
                            .unwrap_or_default(),
                        fleet: None,
                    };
                    warn_fleet_lost(url, &e, &location);
                }
                self.mark_pending();
                None
            }
        }
    }

    /// Marks the current run as still to be sent (never an attached run: the daemon
    /// records that one).
    fn mark_pending(&mut self) {
        if self.attached || self.fleet_url.is_none() {
            return;
        }
        let Some((run_id, pending)) = self.current.clone() else {
            return;
        };
        if !pending {
            self.current = Some((run_id.clone(), true));
            self.with_store(|s| s.mark_fleet_pending(&run_id));
        }
    }

    /// At a run's end: if its records still have to go to the fleet, try once more.
    fn send_if_pending(&mut self) {
        let (Some(url), Some((_, true))) = (self.fleet_url.clone(), self.current.clone()) else {
            return;
        };
        let Some(local) = self.store.as_mut() else {
            return;
        };
        // Bounded by the connect timeout; a database still away costs one attempt.
        if let Ok(mut pg) = PgStore::open(&url, &self.host) {
            match fleet_sync::send_pending(local, &mut pg) {
                Ok(_) => log::info!(
                    "{} answers again; this run's records were sent",
                    url.describe()
                ),
                Err(e) => log::debug!("cannot send pending runs yet: {e}"),
            }
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
        let job = self.job.clone();
        let result = match self.store.as_mut() {
            Some(store) => store.finalize_lost(Some(&job)),
            None => return,
        };
        match result {
            Ok(lost) => {
                self.mirror(|m| m.store.finalize_lost(Some(&job)).map(drop));
                for run_id in lost {
                    log::warn!(
                        "run {run_id} of job \"{job}\" was left unfinished by a runner that died; recorded as lost"
                    );
                }
            }
            Err(e) => self.fail(&e),
        }
    }

    fn fail(&mut self, e: &StoreError) {
        if self.store.take().is_some() {
            warn_unrecorded(e);
        }
    }

    fn with_store<T>(&mut self, f: impl FnOnce(&mut Store) -> Result<T, StoreError>) -> Option<T> {
        let result = f(self.store.as_mut()?);
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.fail(&e);
                None
            }
        }
    }

    fn instance(&mut self, run_id: &str, task: &str, file: &str, instance: u32) -> Option<i64> {
        let key = (task.to_owned(), instance);
        if let Some(id) = self.instances.get(&key) {
            return Some(*id);
        }
        let id = self.with_store(|s| s.instance_id(run_id, task, file, instance))?;
        self.instances.insert(key, id);
        self.mirror(|m| {
            let fleet_id = m.store.instance_id(run_id, task, file, instance)?;
            m.instances.insert(id, fleet_id);
            Ok(())
        });
        Some(id)
    }

    fn capture(&self, attempt: &AttemptStart<'_>) -> Option<(PathBuf, Arc<Mutex<CaptureFile>>)> {
        let dir = self.output_dir.as_ref()?;
        let path = dir.join(format!(
            "{}#{}.{}.log",
            attempt.task, attempt.instance, attempt.try_num
        ));
        let mut capture = CaptureFile::new(&path, self.log_max_bytes);
        if let Some(output) = &self.run_output {
            let prefix = self.prefixed.then(|| format!("[{}] ", attempt.task));
            capture = capture.mirrored(output.clone(), prefix);
        }
        Some((path, Arc::new(Mutex::new(capture))))
    }
}

fn warn_fleet_lost(url: &FleetUrl, e: &StoreError, local: &Location) {
    // The error names the database already (without its password).
    let _ = url;
    log::warn!(
        "{}; recording in {} and sending the run there once it answers",
        crate::error::one_line(e),
        local.file().display()
    );
}

fn warn_unrecorded(e: &StoreError) {
    log::warn!(
        "cannot record this run ({}); the chain goes on without recording",
        crate::logging::one_line(e)
    );
}

impl Recorder for StoreRecorder {
    fn run_started(&mut self, run: &RunStart<'_>) {
        self.instances.clear();
        self.attempts.clear();
        self.session = run.session.to_owned();
        if let Some(m) = self.fleet.as_mut() {
            m.instances.clear();
            m.attempts.clear();
        }
        self.current = Some((run.run_id.to_owned(), false));
        if self.store.is_none() {
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
        if self.resumed {
            return;
        }
        if self.attached {
            let tasks = run.tasks;
            self.with_store(|s| s.add_instances(run.run_id, tasks));
            self.mirror(|m| m.store.add_instances(run.run_id, tasks));
            return;
        }
        let trigger_data = serde_json::json!({
            "taskdir": run.taskdir,
            "config": run.config,
            "pid": self.owner.pid,
        });
        let trigger_type = self.trigger_type.clone();
        let owner = self.owner.clone();
        let host = self.host.clone();
        let new = NewRun {
            run_id: run.run_id,
            job: run.job,
            schedule_time: run.started,
            start_time: run.started,
            trigger_type: &trigger_type,
            trigger_data: &trigger_data,
            session: run.session,
            output_dir: &dir,
            owner: &owner,
            tasks: run.tasks,
            host: &host,
        };
        if self.with_store(|s| s.begin_run(&new)).is_none() {
            return;
        }
        if self.fleet.is_none() {
            self.mark_pending();
        }
        self.mirror(|m| m.store.begin_run(&new));
    }

    fn attempt_started(&mut self, attempt: &AttemptStart<'_>) -> Option<SharedCapture> {
        let instance =
            self.instance(attempt.run_id, attempt.task, attempt.file, attempt.instance)?;
        let capture = self.capture(attempt);
        let path = capture.as_ref().map(|(p, _)| p.clone());
        let ended = std::mem::take(&mut self.ended);
        let id = self
            .with_store(|s| {
                s.record_attempts(
                    &ended,
                    Some((instance, attempt.try_num, attempt.started, path.as_deref())),
                )
            })
            .flatten()?;
        self.mirror(|m| {
            let ended = m.translate(&ended).unwrap_or_default();
            let fleet_instance = *m.instances.get(&instance).ok_or(StoreError::NotFound {
                prefix: format!("{}#{}", attempt.task, attempt.instance),
            })?;
            let starting = (
                fleet_instance,
                attempt.try_num,
                attempt.started,
                path.as_deref(),
            );
            if let Some(fleet_id) = m.store.record_attempts(&ended, Some(starting))? {
                m.attempts.insert(id, fleet_id);
            }
            Ok(())
        });
        let shared = capture.map(|(_, c)| c);
        self.attempts.insert(
            (attempt.task.to_owned(), attempt.instance, attempt.try_num),
            OpenAttempt {
                id,
                capture: shared.clone(),
            },
        );
        shared.map(|c| -> SharedCapture { c })
    }

    fn attempt_finished(&mut self, attempt: &AttemptStart<'_>, end: &AttemptEnd) {
        let key = (attempt.task.to_owned(), attempt.instance, attempt.try_num);
        let Some(OpenAttempt { id, capture }) = self.attempts.remove(&key) else {
            return;
        };
        let mut has_output = false;
        if let Some(capture) = capture {
            let mut capture = capture.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = capture.finish() {
                log::warn!("cannot keep the output of task \"{}\": {e}", attempt.task);
            }
            // A process the task left running may still write into it: keep its name.
            has_output = !capture.is_empty() || !end.leftovers.is_empty();
        }
        // The fleet keeps the output itself (as capped on disk), for every host to read.
        if has_output && self.fleet.is_some() {
            if let Some(dir) = &self.output_dir {
                let path = dir.join(format!(
                    "{}#{}.{}.log",
                    attempt.task, attempt.instance, attempt.try_num
                ));
                if let Ok(bytes) = std::fs::read(&path) {
                    self.mirror(|m| match m.attempts.get(&id) {
                        Some(&fleet_id) => m.store.store_output(fleet_id, &bytes),
                        None => Ok(()),
                    });
                }
            }
        }
        let Some(&instance) = self
            .instances
            .get(&(attempt.task.to_owned(), attempt.instance))
        else {
            return;
        };
        let status = match end.result {
            TaskResult::Ok => InstanceStatus::Finished,
            _ => InstanceStatus::Failed,
        };
        self.ended.push(AttemptEnding {
            attempt_id: id,
            instance_id: instance,
            stop_time: end.stopped,
            exit_code: end.exit_code,
            signal: end.signal,
            result: end.result.as_str(),
            note: end.note.clone(),
            result_data: end.result_data.clone(),
            leftovers: (!end.leftovers.is_empty())
                .then(|| serde_json::to_value(&end.leftovers).ok())
                .flatten(),
            instance_status: status,
            has_output,
            cascade: end.cascade.as_ref().map(|data| Cascade {
                session: self.session.clone(),
                name: attempt.task.to_owned(),
                data: data.clone(),
                source: format!("cascade {}", attempt.run_id),
            }),
        });
    }

    fn flush(&mut self) {
        if self.ended.is_empty() {
            return;
        }
        let ended = std::mem::take(&mut self.ended);
        self.with_store(|s| s.record_attempts(&ended, None));
        self.mirror(|m| {
            let ended = m.translate(&ended).unwrap_or_default();
            m.store.record_attempts(&ended, None).map(drop)
        });
    }

    fn instance_status(
        &mut self,
        run_id: &str,
        task: &str,
        file: &str,
        instance: u32,
        status: InstanceStatus,
    ) {
        self.flush();
        if let Some(instance) = self.instance(run_id, task, file, instance) {
            self.with_store(|s| s.set_instance_status(instance, status));
            self.mirror(|m| match m.instances.get(&instance) {
                Some(&id) => m.store.set_instance_status(id, status),
                None => Ok(()),
            });
        }
    }

    fn succeeded_before(&mut self, task: &str, this_boot_only: bool) -> bool {
        let boot = this_boot_only.then(crate::state::boot_id);
        let job = self.job.clone();
        self.with_store(|s| s.has_succeeded(&job, task, boot.as_deref()))
            .unwrap_or(false)
    }

    fn run_finished(
        &mut self,
        run_id: &str,
        status: RunStatus,
        exit_code: i32,
        stopped: SystemTime,
    ) {
        self.flush();
        // An attached chain's run is the daemon's to finish, with the command's exit code.
        if self.attached {
            return;
        }
        self.with_store(|s| s.finish_run(run_id, status, Some(exit_code), Some(stopped)));
        self.mirror(|m| {
            m.store
                .finish_run(run_id, status, Some(exit_code), Some(stopped))
        });
        self.send_if_pending();
    }
}
