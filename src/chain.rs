//! Running a [`Plan`]: the attempt loop, what each exit decides, retries, the halt task.
//!
//! One chain attempt (a *pass*) starts every task whose dependencies are done, at most
//! `parallel` at a time, in plan order. The first task that does not succeed stops new
//! starts; tasks already running finish, and the most severe result decides
//! (HALT over EXIT over RETRY). A RETRY pauses per [`crate::retry`] and starts the next
//! pass from the first task, or with `retry_from = failed` from the tasks not yet done.
//! Workers only run processes; the recorder is called from this thread alone.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::StdRng;

use crate::config::{ChainConfig, Frequency, RetryFrom};
use crate::error::exit_codes;
use crate::events::Events;
use crate::exec::{
    AttemptReport, Command, Exit, Limits, Output, SharedCapture, Stop, Supervisor, TaskEnv,
};
use crate::hooks::{self, TaskHookPayload};
use crate::plan::{Plan, Step};
mod observer;
mod waiting;

pub(crate) use observer::{Observer, TaskStart, Unobserved};

use waiting::{Readiness, Waiting, waits_for_events};

use crate::record::{
    AttemptEnd, AttemptStart, InstanceStatus, Recorder, RunStart, RunStatus, StartWrite, TaskResult,
};

/// How a run of the chain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChainResult {
    /// Every task succeeded.
    Ok,
    /// A task exited 2; the halt task ran.
    Halted,
    /// A task exited 3.
    Exited,
    /// A task kept failing until `max_tries`; the halt task ran.
    Failed,
    /// runner received this signal.
    Interrupted(i32),
}

impl ChainResult {
    /// runner's exit code for this result.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            ChainResult::Ok => exit_codes::OK,
            ChainResult::Halted | ChainResult::Exited | ChainResult::Failed => exit_codes::FAILED,
            ChainResult::Interrupted(sig) => {
                exit_codes::SIGNALED.saturating_add(u8::try_from(sig).unwrap_or(0))
            }
        }
    }

    /// The run status recorded for this result.
    pub(crate) fn status(self) -> RunStatus {
        match self {
            ChainResult::Ok => RunStatus::Ok,
            ChainResult::Halted => RunStatus::Halted,
            ChainResult::Exited => RunStatus::Exited,
            ChainResult::Failed => RunStatus::Failed,
            ChainResult::Interrupted(_) => RunStatus::Interrupted,
        }
    }
}

/// What a task's exit decides (the table in section 4 of the contract).
pub(crate) fn result_of(report: &AttemptReport) -> TaskResult {
    if report.stopped.is_some() {
        return TaskResult::Retry;
    }
    match report.exit {
        Exit::Code(0) => TaskResult::Ok,
        Exit::Code(2) => TaskResult::Halt,
        Exit::Code(3) => TaskResult::Exit,
        _ => TaskResult::Retry,
    }
}

/// Everything about a chain that stays the same across its runs.
pub(crate) struct Chain<'a> {
    /// The ordered tasks.
    pub(crate) plan: &'a Plan,
    /// The configuration they were planned from.
    pub(crate) config: &'a ChainConfig,
    /// The task directory, absolute: every task's working directory.
    pub(crate) taskdir: &'a Path,
    /// The job name runs are recorded under.
    pub(crate) job: &'a str,
    /// The event session.
    pub(crate) session: &'a str,
    /// runner's own absolute path, for `RUNNER_CONFIG_CMD`.
    pub(crate) exe: PathBuf,
    /// Runs every process.
    pub(crate) supervisor: Supervisor,
    /// A private directory for per-attempt files (`RUNNER_RESULT`, `RUNNER_EVENTS`).
    pub(crate) scratch: PathBuf,
    /// The events of the chain's session.
    pub(crate) events: &'a Events,
    /// Told of every task start and end (the live view on a terminal).
    pub(crate) observer: &'a dyn Observer,
}

/// A finished attempt: how the process ended and what it left in `RUNNER_RESULT`.
struct Finished {
    report: AttemptReport,
    result_data: Option<serde_json::Value>,
}

/// One attempt handed to a worker.
struct Job<'s> {
    step: &'s Step,
    index: usize,
    try_num: u32,
    output: Output,
    /// The attempt's `RUNNER_EVENTS` file.
    events: PathBuf,
    /// Extra environment (a replayed instance's `--env`).
    extra_env: Vec<(String, String)>,
}

/// What wakes the loop of a pass.
enum Message {
    /// An attempt ended.
    Finished(usize, Finished),
    /// An event was fired or a signal arrived: look again.
    Wake,
}

/// Mutable state of one run.
struct RunState<'r> {
    run_id: &'r str,
    recorder: &'r mut dyn Recorder,
    rng: &'r mut StdRng,
    /// The instance number each step runs as (`TASK#n`).
    instances: Vec<u32>,
    /// Steps abandoned in this run (they stay abandoned across chain attempts).
    abandoned: Vec<bool>,
    /// The cascade data of the tasks that ended `OK` in this run, by task name.
    cascades: HashMap<String, serde_json::Value>,
    /// Extra environment of a replayed step.
    extra_env: HashMap<usize, Vec<(String, String)>>,
    /// The instance number of the halt task.
    halt_instance: u32,
    /// Steps settled before this process took the run over (a resumed run).
    settled: Option<Vec<bool>>,
}

/// Where a resumed run (`replay`, `skip --cascade`) picks up: what was settled before,
/// and the instance each step runs as now.
#[derive(Debug, Clone)]
pub(crate) struct Resume {
    /// Steps that need not run again (finished, skipped, abandoned).
    pub(crate) done: Vec<bool>,
    /// Steps abandoned before.
    pub(crate) abandoned: Vec<bool>,
    /// The instance number each step runs as.
    pub(crate) instances: Vec<u32>,
    /// The instance number of the halt task, should it run.
    pub(crate) halt_instance: u32,
    /// Cascade data of the settled steps, by task name.
    pub(crate) cascades: HashMap<String, serde_json::Value>,
    /// Extra environment of the replayed step.
    pub(crate) extra_env: HashMap<usize, Vec<(String, String)>>,
}

impl Chain<'_> {
    /// Runs the chain once as run `run_id`; with `halt_after`, runs the halt task after a
    /// success too (`-H` on the last iteration).
    pub(crate) fn run(
        &self,
        run_id: &str,
        halt_after: bool,
        recorder: &mut dyn Recorder,
        rng: &mut StdRng,
    ) -> ChainResult {
        self.run_from(run_id, halt_after, recorder, rng, None)
    }

    /// Continues run `run_id` from where `resume` says, recorded in the same run.
    /// A retry starts again from the first step that was not settled before.
    pub(crate) fn resume(
        &self,
        run_id: &str,
        resume: Resume,
        recorder: &mut dyn Recorder,
        rng: &mut StdRng,
    ) -> ChainResult {
        self.run_from(run_id, false, recorder, rng, Some(resume))
    }

    fn run_from(
        &self,
        run_id: &str,
        halt_after: bool,
        recorder: &mut dyn Recorder,
        rng: &mut StdRng,
        resume: Option<Resume>,
    ) -> ChainResult {
        let started = SystemTime::now();
        let tasks: Vec<(&str, &str)> = self
            .plan
            .steps
            .iter()
            .map(|s| (s.task.name.as_str(), s.task.file_name.as_str()))
            .collect();
        recorder.run_started(&RunStart {
            run_id,
            job: self.job,
            started,
            taskdir: self.taskdir,
            config: self.config.file.as_deref(),
            session: self.session,
            tasks: &tasks,
            parallel: self.config.runner.parallel,
        });
        log::info!(
            "run {run_id} of job \"{}\" started: {} task(s) in {}",
            self.job,
            self.plan.steps.len(),
            self.taskdir.display()
        );
        self.observer.run_started(run_id);
        let steps = self.plan.steps.len();
        let mut state = RunState {
            run_id,
            recorder,
            rng,
            instances: vec![0; steps],
            abandoned: vec![false; steps],
            cascades: HashMap::new(),
            extra_env: HashMap::new(),
            halt_instance: 0,
            settled: None,
        };
        if let Some(resume) = resume {
            state.instances = resume.instances;
            state.abandoned = resume.abandoned;
            state.cascades = resume.cascades;
            state.extra_env = resume.extra_env;
            state.halt_instance = resume.halt_instance;
            state.settled = Some(resume.done);
        }
        let result = self.attempts(&mut state);
        let result = match result {
            ChainResult::Halted | ChainResult::Failed => {
                self.halt(&mut state);
                result
            }
            ChainResult::Ok if halt_after => {
                self.halt(&mut state);
                result
            }
            other => other,
        };
        let code = i32::from(result.exit_code());
        state
            .recorder
            .run_finished(run_id, result.status(), code, SystemTime::now());
        let elapsed = started.elapsed().unwrap_or_default().as_secs_f64();
        match result {
            ChainResult::Ok => log::info!("run {run_id} succeeded in {elapsed:.2}s"),
            other => log::warn!(
                "run {run_id} ended {} after {elapsed:.2}s",
                format!("{:?}", other.status()).to_lowercase()
            ),
        }
        self.observer.run_finished(run_id, result.status());
        result
    }

    /// The chain attempts of one run, until success, a stop, or retries run out.
    fn attempts(&self, state: &mut RunState<'_>) -> ChainResult {
        let skipped = match state.settled.take() {
            Some(settled) => settled,
            None => self.skipped_by_frequency(state),
        };
        let mut done = skipped.clone();
        let mut try_num = 1u32;
        loop {
            let failure = match self.pass(state, try_num, &mut done) {
                Ok(()) => return ChainResult::Ok,
                Err(failure) => failure,
            };
            match failure.outcome {
                Outcome::Interrupted(sig) => return ChainResult::Interrupted(sig),
                Outcome::Result(TaskResult::Halt) => return ChainResult::Halted,
                Outcome::Result(TaskResult::Exit) => return ChainResult::Exited,
                Outcome::Result(_) => {}
            }
            let step = &self.plan.steps[failure.index];
            if try_num >= step.settings.max_tries {
                log::warn!(
                    "task \"{}\" failed on chain attempt {try_num} of {}; giving up",
                    step.task.name,
                    step.settings.max_tries
                );
                return ChainResult::Failed;
            }
            let pause = crate::retry::delay(
                try_num,
                step.settings.sleep_time,
                step.settings.retry_jitter,
                state.rng,
            );
            log::warn!(
                "task \"{}\" failed; retrying the chain in {} (attempt {} of {})",
                step.task.name,
                crate::config::duration::display(pause),
                try_num + 1,
                step.settings.max_tries
            );
            state.recorder.flush();
            if self.supervisor.interrupt().sleep(pause) {
                let sig = self
                    .supervisor
                    .interrupt()
                    .received()
                    .unwrap_or(libc::SIGTERM);
                return ChainResult::Interrupted(sig);
            }
            if self.config.runner.retry_from == RetryFrom::Start {
                for (i, done) in done.iter_mut().enumerate() {
                    *done = skipped[i] || state.abandoned[i];
                }
            }
            try_num += 1;
        }
    }

    /// Which steps `frequency` skips in this run, decided once from the records.
    fn skipped_by_frequency(&self, state: &mut RunState<'_>) -> Vec<bool> {
        self.plan
            .steps
            .iter()
            .map(|step| {
                let this_boot_only = match step.settings.frequency {
                    Frequency::Always => return false,
                    Frequency::OncePerBoot => true,
                    Frequency::Once => false,
                };
                if !state
                    .recorder
                    .succeeded_before(&step.task.name, this_boot_only)
                {
                    return false;
                }
                log::info!(
                    "task \"{}\" skipped: it already succeeded {}",
                    step.task.name,
                    if this_boot_only { "since boot" } else { "once" }
                );
                state.recorder.instance_status(
                    state.run_id,
                    &step.task.name,
                    &step.task.file_name,
                    0,
                    InstanceStatus::Skipped,
                );
                true
            })
            .collect()
    }

    /// One chain attempt over the steps not yet `done`.
    ///
    /// A step whose dependencies are done starts when its `after` events were fired; until
    /// then it is `waiting` and, with `parallel > 1`, takes no slot, so independent steps
    /// go on. An `unless` event fired before the step would start abandons it, and so
    /// does an abandoned dependency. The loop blocks on one channel that finished
    /// attempts, fired events (inotify) and signals all write to: no polling.
    fn pass(
        &self,
        state: &mut RunState<'_>,
        try_num: u32,
        done: &mut [bool],
    ) -> Result<(), Failure> {
        let steps = &self.plan.steps;
        let parallel = self.config.runner.parallel.max(1);
        let mut started = vec![false; steps.len()];
        let mut waiting: Vec<Option<Waiting>> = vec![None; steps.len()];
        let mut failure: Option<Failure> = None;
        std::thread::scope(|scope| {
            let (tx, messages) = mpsc::channel::<Message>();
            let wake = tx.clone();
            let _on_signal = self.supervisor.interrupt().subscribe(move || {
                let _ = wake.send(Message::Wake);
            });
            let mut on_event = None;
            let mut running: Vec<(usize, AttemptStart<'_>)> = Vec::new();
            // Steps before this one are all done or started, and stay so in this pass:
            // the search for the next step to start begins here, not at the first.
            let mut settled = 0;
            loop {
                let interrupted = self.supervisor.interrupt().received();
                let mut deadline: Option<Instant> = None;
                while settled < steps.len() && (done[settled] || started[settled]) {
                    settled += 1;
                }
                if failure.is_none() && interrupted.is_none() {
                    for index in settled..steps.len() {
                        if running.len() >= parallel {
                            break;
                        }
                        if done[index] || started[index] {
                            continue;
                        }
                        let step = &steps[index];
                        if !step.deps.iter().all(|&d| done[d]) {
                            // One at a time means in plan order: nothing overtakes.
                            if parallel == 1 {
                                break;
                            }
                            continue;
                        }
                        if let Some(&dep) = step.deps.iter().find(|&&d| state.abandoned[d]) {
                            let why = format!(
                                "it depends on \"{}\", which was abandoned",
                                steps[dep].task.name
                            );
                            self.abandon(state, index, &why);
                            done[index] = true;
                            continue;
                        }
                        if on_event.is_none() && waits_for_events(step) {
                            // Watch before reading, so nothing fired in between is missed.
                            let wake = tx.clone();
                            on_event = Some(self.events.watcher().map(|w| {
                                w.subscribe(move || {
                                    let _ = wake.send(Message::Wake);
                                })
                            }));
                        }
                        let (readiness, waits) = self.readiness(step, state);
                        match readiness {
                            Readiness::Abandon(event) => {
                                self.record_waits(state, index, waiting[index].as_ref(), waits);
                                let why = format!("event \"{event}\" was fired (unless)");
                                self.abandon(state, index, &why);
                                done[index] = true;
                                continue;
                            }
                            Readiness::Wait(missing) => {
                                let since = waiting[index].get_or_insert_with(|| {
                                    self.start_waiting(state, index, &missing)
                                });
                                if let Some(limit) = step.settings.wait_time {
                                    let end = since.instant + limit;
                                    if Instant::now() >= end {
                                        let since = *since;
                                        self.record_waits(state, index, Some(&since), waits);
                                        self.wait_expired(state, index, try_num, &since, &missing);
                                        failure = Some(Failure {
                                            index,
                                            outcome: Outcome::Result(TaskResult::Retry),
                                        });
                                        break;
                                    }
                                    deadline = Some(deadline.map_or(end, |d: Instant| d.min(end)));
                                }
                                if parallel == 1 {
                                    break;
                                }
                                continue;
                            }
                            Readiness::Go(fired) => {
                                self.record_waits(state, index, waiting[index].as_ref(), waits);
                                started[index] = true;
                                let attempt = AttemptStart {
                                    run_id: state.run_id,
                                    task: &step.task.name,
                                    file: &step.task.file_name,
                                    instance: state.instances[index],
                                    try_num,
                                    started: SystemTime::now(),
                                };
                                // Only the capture before the spawn: the start's record
                                // is written while the task's process starts.
                                let capture = state.recorder.attempt_output(&attempt);
                                self.observer.task_started(&task_start(step, try_num));
                                let job = Job {
                                    step,
                                    index,
                                    try_num,
                                    output: self.output_for(step, capture, parallel),
                                    events: self.events_file(state, index, try_num, fired),
                                    extra_env: state
                                        .extra_env
                                        .get(&index)
                                        .cloned()
                                        .unwrap_or_default(),
                                };
                                let finished = tx.clone();
                                let run_id = state.run_id;
                                if parallel == 1 {
                                    // One at a time: no thread to start and hand back from;
                                    // the start is written while the task's process starts.
                                    let mut job = job;
                                    job.output.on_spawn =
                                        Mutex::new(state.recorder.attempt_spawning(&attempt));
                                    let outcome = self.attempt(&job, run_id);
                                    let _ = finished.send(Message::Finished(job.index, outcome));
                                } else {
                                    scope.spawn(move || {
                                        let outcome = self.attempt(&job, run_id);
                                        let _ =
                                            finished.send(Message::Finished(job.index, outcome));
                                    });
                                    state.recorder.attempt_started(&attempt, StartWrite::Here);
                                }
                                running.push((index, attempt));
                            }
                        }
                    }
                }
                if running.is_empty() {
                    let is_waiting =
                        (0..steps.len()).any(|i| waiting[i].is_some() && !started[i] && !done[i]);
                    if failure.is_some() || interrupted.is_some() || !is_waiting {
                        if let (None, Some(sig)) = (&failure, interrupted) {
                            failure = Some(Failure {
                                index: 0,
                                outcome: Outcome::Interrupted(sig),
                            });
                        }
                        break;
                    }
                }
                // A task run on this thread has its end waiting already: no wait, so
                // the records gathered with it are not written yet.
                let message = match messages.try_recv() {
                    Ok(message) => message,
                    Err(mpsc::TryRecvError::Disconnected) => break,
                    Err(mpsc::TryRecvError::Empty) => {
                        // About to wait: nothing recorded may lag behind the wait.
                        state.recorder.flush();
                        // Without inotify, waiting steps look again every second.
                        if matches!(on_event, Some(None)) {
                            let soon = Instant::now() + Duration::from_secs(1);
                            deadline = Some(deadline.map_or(soon, |d| d.min(soon)));
                        }
                        match deadline {
                            Some(end) => match messages
                                .recv_timeout(end.saturating_duration_since(Instant::now()))
                            {
                                Ok(message) => message,
                                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                            },
                            None => match messages.recv() {
                                Ok(message) => message,
                                Err(_) => break,
                            },
                        }
                    }
                };
                let Message::Finished(index, finished_attempt) = message else {
                    continue;
                };
                let Some(pos) = running.iter().position(|(i, _)| *i == index) else {
                    continue;
                };
                let (_, attempt) = running.swap_remove(pos);
                let result = result_of(&finished_attempt.report);
                let mut end = end_of(&finished_attempt, result);
                if result == TaskResult::Ok {
                    let data = finished_attempt
                        .result_data
                        .clone()
                        .unwrap_or_else(|| serde_json::json!({}));
                    state
                        .cascades
                        .insert(steps[index].task.name.clone(), data.clone());
                    end.cascade = Some(data);
                }
                state.recorder.attempt_finished(&attempt, &end);
                self.observer.task_finished(
                    attempt.task,
                    attempt.try_num,
                    result,
                    finished_attempt.report.duration,
                );
                let outcome = match finished_attempt.report.stopped {
                    Some(Stop::Interrupt(sig)) => Outcome::Interrupted(sig),
                    _ => Outcome::Result(result),
                };
                if outcome == Outcome::Result(TaskResult::Ok) {
                    done[index] = true;
                } else if failure.as_ref().is_none_or(|f| outcome > f.outcome) {
                    failure = Some(Failure { index, outcome });
                }
            }
        });
        // Steps still waiting when the pass ended were never started.
        for (index, step) in steps.iter().enumerate() {
            if waiting[index].is_some() && !started[index] && !done[index] {
                state.recorder.instance_status(
                    state.run_id,
                    &step.task.name,
                    &step.task.file_name,
                    state.instances[index],
                    InstanceStatus::Unstarted,
                );
            }
        }
        // Without a failure every step ran: the plan is acyclic, so some step was
        // always ready, or waiting, while any was left.
        failure.map_or(Ok(()), Err)
    }

    fn output_for(&self, step: &Step, capture: Option<SharedCapture>, parallel: usize) -> Output {
        Output {
            prefix: (parallel > 1).then(|| format!("[{}] ", step.task.name)),
            capture,
            ..Output::default()
        }
    }

    /// Runs one attempt with its hooks; called on a worker thread.
    fn attempt(&self, job: &Job<'_>, run_id: &str) -> Finished {
        let step = job.step;
        let settings = &step.settings;
        log::info!(
            "task \"{}\" ({}) starting, try {} of {}",
            step.task.name,
            step.task.file_name,
            job.try_num,
            settings.max_tries
        );
        let hook = self.config.runner.task_hook.as_deref();
        let mut payload = TaskHookPayload {
            task: &step.task.file_name,
            name: &step.task.name,
            try_num: job.try_num,
            max_retries: settings.max_tries,
            result: "RUNNING",
            run_id,
            exit_code: None,
            duration: None,
        };
        // The name is unique to this run, task and try, so no stale file can be there.
        let result_file = self.scratch.join(format!(
            "{run_id}.{}.{}.result.json",
            job.index, job.try_num
        ));
        let mut cmd = self.command(step);
        TaskEnv {
            configured: &self.config.env,
            exe: &self.exe,
            config_file: self.config.file.as_deref(),
            taskdir: self.taskdir,
            task: &step.task.name,
            task_file: &step.task.path,
            try_num: job.try_num,
            max_tries: settings.max_tries,
            run_id,
            job: self.job,
            session: self.session,
            state_dir: self.events.state_dir(),
            result_file: &result_file,
            events_file: &job.events,
            extra: &job.extra_env,
        }
        .apply(&mut cmd);
        // Hooks get the task's environment (contract section 5), copied only when there
        // is a hook: two strings for each of a dozen variables, for every attempt.
        let hook_env: Vec<(OsString, OsString)> = match hook {
            Some(_) => cmd
                .get_envs()
                .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
                .collect(),
            None => Vec::new(),
        };
        if let Some(hook) = hook {
            // The attempt begins with its hook: its start is written now, not when the
            // task's process is spawned after a hook that may take long.
            job.output.record_now();
            self.call_hook(hook, &payload, &hook_env, settings.kill_grace);
        }
        let limits = Limits {
            max_time: settings.max_time,
            kill_grace: settings.kill_grace,
            interrupt_grace: None,
            leftovers: settings.leftovers,
        };
        log::debug!(
            "task \"{}\": running {:?} {:?} in {}",
            step.task.name,
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            self.taskdir.display()
        );
        let report = self.supervisor.run(cmd, limits, &job.output);
        let result_data = read_result(&result_file, &step.task.name);
        let result = result_of(&report);
        log_report(step, &report, result);
        if let Some(hook) = hook {
            payload.result = result.as_str();
            payload.exit_code = Some(report.exit_code());
            payload.duration = Some(report.duration.as_secs_f64());
            self.call_hook(hook, &payload, &hook_env, settings.kill_grace);
        }
        Finished {
            report,
            result_data,
        }
    }

    fn call_hook(
        &self,
        hook: &[String],
        payload: &TaskHookPayload<'_>,
        env: &[(OsString, OsString)],
        grace: std::time::Duration,
    ) {
        hooks::call(
            &self.supervisor,
            hook,
            payload,
            env.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str())),
            self.config.runner.hook_timeout,
            grace,
        );
    }

    /// The task's command line, run in the task directory; [`TaskEnv`] adds its
    /// environment.
    fn command(&self, step: &Step) -> Command {
        let mut cmd = match &step.settings.interpreter {
            Some(words) => {
                let mut cmd = Command::new(&words[0]);
                cmd.args(&words[1..]).arg(&step.task.path);
                cmd
            }
            None => Command::new(&step.task.path),
        };
        cmd.current_dir(self.taskdir);
        cmd
    }

    /// Runs the halt task, if there is one. Its result changes nothing: the chain is
    /// already stopping.
    fn halt(&self, state: &mut RunState<'_>) {
        let Some(step) = &self.plan.halt else {
            log::warn!(
                "halt task \"{}\" not found in {}; nothing to halt",
                self.config.runner.halt_task,
                self.taskdir.display()
            );
            return;
        };
        if self.supervisor.interrupt().received().is_some() {
            return;
        }
        let attempt = AttemptStart {
            run_id: state.run_id,
            task: &step.task.name,
            file: &step.task.file_name,
            instance: state.halt_instance,
            try_num: 1,
            started: SystemTime::now(),
        };
        let capture = state.recorder.attempt_output(&attempt);
        self.observer.task_started(&task_start(step, 1));
        let mut job = Job {
            step,
            index: self.plan.steps.len(),
            try_num: 1,
            output: self.output_for(step, capture, self.config.runner.parallel),
            events: self.scratch.join(NO_EVENTS),
            extra_env: Vec::new(),
        };
        job.output.on_spawn = Mutex::new(state.recorder.attempt_spawning(&attempt));
        let finished = self.attempt(&job, state.run_id);
        let result = result_of(&finished.report);
        state
            .recorder
            .attempt_finished(&attempt, &end_of(&finished, result));
        self.observer
            .task_finished(attempt.task, 1, result, finished.report.duration);
    }
}

fn task_start(step: &Step, try_num: u32) -> TaskStart<'_> {
    TaskStart {
        task: &step.task.name,
        try_num,
        max_tries: step.settings.max_tries,
        max_time: step.settings.max_time,
    }
}

/// What ended a pass early, with the step that caused it.
#[derive(Debug)]
struct Failure {
    index: usize,
    outcome: Outcome,
}

/// A pass-ending outcome, ordered by severity: an interrupt beats everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Result(TaskResult),
    Interrupted(i32),
}

/// The file every task's `RUNNER_EVENTS` points to until it waits for events: `{}`.
pub(crate) const NO_EVENTS: &str = "no-events.json";

/// The most a task may leave in `RUNNER_RESULT` (and a daemon job in `return_data.json`).
pub(crate) const MAX_RESULT_BYTES: u64 = 1 << 20;

/// Reads the JSON object a task wrote to `RUNNER_RESULT`, and removes the file.
fn read_result(path: &Path, task: &str) -> Option<serde_json::Value> {
    use std::io::Read;
    let mut text = String::new();
    let read = crate::state::open_left_file(path)
        .and_then(|f| f.take(MAX_RESULT_BYTES + 1).read_to_string(&mut text));
    match &read {
        // Most tasks write none: nothing to remove either.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            log::warn!("task \"{task}\" left a RUNNER_RESULT that cannot be read ({e}); ignored");
            let _ = std::fs::remove_file(path);
            return None;
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
    }
    // It is recorded with the attempt: a task cannot make the store hold gigabytes.
    if text.len() as u64 > MAX_RESULT_BYTES {
        log::warn!(
            "task \"{task}\" wrote more than {} KiB to RUNNER_RESULT; ignored",
            MAX_RESULT_BYTES >> 10
        );
        return None;
    }
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(value @ serde_json::Value::Object(_)) => Some(value),
        Ok(_) | Err(_) => {
            log::warn!(
                "task \"{task}\" wrote something other than a JSON object to RUNNER_RESULT; ignored"
            );
            None
        }
    }
}

fn end_of(finished: &Finished, result: TaskResult) -> AttemptEnd {
    let report = &finished.report;
    let note = match (&report.exit, report.stopped) {
        (_, Some(Stop::Timeout)) => Some("timed out".to_owned()),
        (_, Some(Stop::Interrupt(sig))) => Some(format!("interrupted by signal {sig}")),
        (Exit::NotStarted(_), None) => Some(report.exit.to_string()),
        _ => None,
    };
    AttemptEnd {
        exit_code: report.exit_code(),
        signal: match report.exit {
            Exit::Signal(sig) => Some(sig),
            _ => None,
        },
        result,
        stopped: report.stopped_at(),
        note,
        result_data: finished.result_data.clone(),
        leftovers: report.leftovers.clone(),
        cascade: None,
    }
}

fn log_report(step: &Step, report: &AttemptReport, result: TaskResult) {
    // Worded only when it is written: under `-q` every task that succeeds skips it.
    let level = match result {
        TaskResult::Ok => log::Level::Info,
        _ => log::Level::Warn,
    };
    if log::log_enabled!(level) {
        log_how(step, report, result);
    }
    log_leftovers(step, report);
}

/// How an attempt ended, in one line at `info` (it succeeded) or `warn`.
fn log_how(step: &Step, report: &AttemptReport, result: TaskResult) {
    let secs = report.duration.as_secs_f64();
    let name = &step.task.name;
    let how = match (&report.exit, report.stopped) {
        (_, Some(Stop::Timeout)) => format!(
            "timed out after {secs:.2}s (max_time {})",
            step.settings
                .max_time
                .map(crate::config::duration::display)
                .unwrap_or_default()
        ),
        (_, Some(Stop::Interrupt(sig))) => format!("stopped by signal {sig} after {secs:.2}s"),
        (exit @ Exit::NotStarted(_), None) => exit.to_string(),
        (exit, None) => format!("{exit} after {secs:.2}s"),
    };
    match result {
        TaskResult::Ok => log::info!("task \"{name}\" {how}: {}", result.as_str()),
        _ => log::warn!("task \"{name}\" {how}: {}", result.as_str()),
    }
}

/// The processes an attempt left behind, when it left any.
fn log_leftovers(step: &Step, report: &AttemptReport) {
    let name = &step.task.name;
    if !report.leftovers.is_empty() {
        let what = match step.settings.leftovers {
            crate::config::Leftovers::Keep => "kept running",
            crate::config::Leftovers::Kill => "stopped (leftovers = kill)",
        };
        log::warn!(
            "task \"{name}\" left {} process(es) behind, {what}: {}",
            report.leftovers.len(),
            crate::exec::describe_leftovers(&report.leftovers)
        );
    }
}

#[cfg(test)]
mod tests;
