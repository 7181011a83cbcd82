//! The store as the chain's [`Recorder`]: every run, instance and attempt as it happens,
//! and each attempt's output in `STATE_DIR/runs/JOB/RUN_ID/`, where the whole run's
//! output also goes to dsari's `output.txt`.
//!
//! A recording failure never fails the chain. The first one is reported in one warning,
//! and recording stops for the rest of the process: half-recorded runs are shown as
//! `lost` later, which is the truth.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::capture::{CaptureFile, RunOutput};
use super::location::Location;
use super::model::{InstanceStatus, RunStatus};
use super::owner::Owner;
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
    ) -> StoreRecorder {
        let store = match Store::open_at(location) {
            Ok(store) => Some(store),
            Err(e) => {
                warn_unrecorded(&e);
                None
            }
        };
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
            return;
        }
        let trigger_data = serde_json::json!({
            "taskdir": run.taskdir,
            "config": run.config,
            "pid": self.owner.pid,
        });
        let trigger_type = self.trigger_type.clone();
        let owner = self.owner.clone();
        self.with_store(|s| {
            s.begin_run(&NewRun {
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
            })
        });
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
    }
}
