//! `runner replay RUN_ID` and `runner skip RUN_ID`: resolve the failed task instance of
//! a finished run, then resume the chain in that same run, in the foreground.
//!
//! Only a run that ended `failed`, `halted`, `exited` or `interrupted` is taken up, and
//! only a failed instance is replayed or skipped; anything else is refused (exit 1) with
//! the reason. The job lock is held throughout, so nothing else runs the job meanwhile.
//! A replayed instance `T#n` becomes `replayed` and `T#n+1` runs with the extra
//! environment; a skipped one becomes `skipped` and, with `--cascade`, fires its cascade
//! event with the given data and lets the rest of the chain run.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use super::fire::{FireHookPayload, call_post_hook};
use super::prepare::{Prepared, prepare};
use super::workbench::Workbench;
use crate::chain::{ChainResult, Resume};
use crate::cli::{GlobalArgs, ReplayArgs, SkipArgs};
use crate::error::{Error, exit_codes};
use crate::interrupt::Interrupt;
use crate::state;
use crate::state::lock::{Acquired, JobLock};
use crate::store::model::{InstanceStatus, RunDetail, RunStatus, TaskRecord};
use crate::store::{FleetCopy, Location, NewEvent, Owner, Store, StoreError, StoreRecorder};

/// What is done to the failed instance.
enum Action {
    Replay {
        env: Vec<(String, String)>,
    },
    Skip {
        cascade: bool,
        data: serde_json::Value,
    },
}

impl Action {
    fn verb(&self) -> &'static str {
        match self {
            Action::Replay { .. } => "replayed",
            Action::Skip { .. } => "skipped",
        }
    }
}

/// What `post_replay_hook` receives.
#[derive(Debug, Serialize)]
struct ReplayHookPayload<'a> {
    run_id: &'a str,
    job: &'a str,
    task: &'a str,
    name: &'a str,
    /// The new instance, `T#n`.
    instance: String,
    /// The failed instance it replaces.
    replaced: String,
    env: BTreeMap<&'a str, &'a str>,
}

/// What `post_skip_hook` receives.
#[derive(Debug, Serialize)]
struct SkipHookPayload<'a> {
    run_id: &'a str,
    job: &'a str,
    task: &'a str,
    name: &'a str,
    /// The skipped instance, `T#n`.
    instance: String,
    cascade: bool,
    data: &'a serde_json::Value,
}

/// `runner replay`.
pub(crate) fn replay(global: &GlobalArgs, args: &ReplayArgs) -> Result<u8, Error> {
    let action = Action::Replay {
        env: args.env.clone(),
    };
    take_up(global, &args.run_id, args.task.as_deref(), action)
}

/// `runner skip`.
pub(crate) fn skip(global: &GlobalArgs, args: &SkipArgs) -> Result<u8, Error> {
    let data = match &args.data {
        Some(text) => crate::events::parse_data(text)?,
        None => serde_json::json!({}),
    };
    let action = Action::Skip {
        cascade: args.cascade,
        data,
    };
    take_up(global, &args.run_id, args.task.as_deref(), action)
}

fn take_up(
    global: &GlobalArgs,
    run_id: &str,
    task: Option<&str>,
    action: Action,
) -> Result<u8, Error> {
    let verb = action.verb();
    let state_dir = state::resolve(global.state_dir.as_deref(), None);
    let not_found = || {
        Error::Store(StoreError::NotFound {
            prefix: run_id.to_owned(),
        })
    };
    let location = Location::resolve(global.database.as_deref(), None, &state_dir)?;
    let store = Store::read_only(&location)?.ok_or_else(not_found)?;
    let detail = store.run_detail(run_id)?;
    drop(store);
    // The run goes on writing under runs/JOB/RUN_ID: names from the record must be
    // plain file names before they become paths.
    crate::store::paths::check_detail(&detail)?;
    refuse_unless_ended_badly(&detail, verb)?;
    let (taskdir, config) = chain_of(&detail, verb)?;
    let prepared = prepare(config.as_deref(), &taskdir, false, None)?;
    if prepared.job != detail.run.job_name {
        return Err(Error::Refused(format!(
            "run {} is a run of job \"{}\", but {} is now job \"{}\"",
            detail.run.run_id,
            detail.run.job_name,
            taskdir.display(),
            prepared.job
        )));
    }
    let interrupt = Interrupt::new();
    if let Err(e) = crate::signals::install(&interrupt) {
        log::warn!("cannot install signal handlers ({e}); signals will kill runner outright");
    }
    let mut lock = match JobLock::acquire(&state_dir, &prepared.job, false, &interrupt)? {
        Acquired::Held(lock) => lock,
        Acquired::Interrupted => {
            let sig = interrupt.received().unwrap_or(libc::SIGTERM);
            return Ok(ChainResult::Interrupted(sig).exit_code());
        }
    };
    let run_id = detail.run.run_id.clone();
    lock.announce(&run_id);

    // Read again under the lock: another replay may have taken the run meanwhile.
    let mut store = Store::open_at(&location)?;
    let detail = store.run_detail(&run_id)?;
    refuse_unless_ended_badly(&detail, verb)?;
    let halt_name = prepared.plan.halt.as_ref().map(|h| h.task.name.clone());
    let target = pick(&detail, task, halt_name.as_deref(), verb)?;
    let (target_name, target_instance, target_file) = (
        target.name.clone(),
        instance_number(target),
        target.file.clone(),
    );
    let Some(target_index) = prepared
        .plan
        .steps
        .iter()
        .position(|s| s.task.name == target_name)
    else {
        return Err(Error::Refused(format!(
            "task \"{target_name}\" of run {run_id} is no longer in {}",
            taskdir.display()
        )));
    };
    let session = store
        .run_session(&run_id)?
        .unwrap_or_else(crate::state::boot_id);
    let mut resume = resume_of(&prepared, &detail, halt_name.as_deref());
    let job = prepared.job.clone();
    let host = crate::state::host(prepared.config.runner.host.as_deref());
    // Each change below is made in the fleet database too, for every host to see.
    let mut fleet = FleetCopy::open(&location, &host, &mut store, &run_id);

    match &action {
        Action::Replay { env } => {
            resume.extra_env.insert(target_index, env.clone());
        }
        Action::Skip { cascade, data } => {
            fleet.set_status_of(
                &mut store,
                &target_name,
                target_instance,
                InstanceStatus::Skipped,
            )?;
            log::info!("{target_name}#{target_instance} of run {run_id} skipped");
            if *cascade {
                let fired = crate::store::fire(
                    &location,
                    &host,
                    &NewEvent {
                        session: &session,
                        name: &target_name,
                        data,
                        source: &format!("skip {run_id}"),
                    },
                )?;
                let event = super::fire::shared_or_warn(fired);
                call_post_hook(
                    &prepared.config,
                    prepared.config.runner.post_fire_hook.as_deref(),
                    &FireHookPayload::of(&event),
                );
                resume.done[target_index] = true;
                resume.instances[target_index] = target_instance;
                resume.cascades.insert(target_name.clone(), data.clone());
            }
            call_post_hook(
                &prepared.config,
                prepared.config.runner.post_skip_hook.as_deref(),
                &SkipHookPayload {
                    run_id: &run_id,
                    job: &job,
                    task: &target_file,
                    name: &target_name,
                    instance: format!("{target_name}#{target_instance}"),
                    cascade: *cascade,
                    data,
                },
            );
            if !*cascade {
                return Ok(exit_codes::OK);
            }
        }
    }
    // Every failed instance that runs again is replaced by a new one.
    for (index, step) in prepared.plan.steps.iter().enumerate() {
        let Some(latest) = latest_instance(&detail, &step.task.name) else {
            continue;
        };
        if latest.status == InstanceStatus::Failed && !resume.done[index] {
            let n = instance_number(latest);
            fleet.set_status_of(&mut store, &step.task.name, n, InstanceStatus::Replayed)?;
            log::info!(
                "{}#{n} of run {run_id} replayed as {}#{}",
                step.task.name,
                step.task.name,
                n + 1
            );
        }
    }
    if let Action::Replay { env } = &action {
        call_post_hook(
            &prepared.config,
            prepared.config.runner.post_replay_hook.as_deref(),
            &ReplayHookPayload {
                run_id: &run_id,
                job: &job,
                task: &target_file,
                name: &target_name,
                instance: format!("{target_name}#{}", resume.instances[target_index]),
                replaced: format!("{target_name}#{target_instance}"),
                env: env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            },
        );
    }
    fleet.reopen_run(&mut store, &Owner::current())?;
    drop(fleet);
    drop(store);
    let result = run_resumed(
        &prepared, &state_dir, &location, &session, &run_id, resume, interrupt,
    )?;
    Ok(result.exit_code())
}

/// Runs the rest of the chain in run `run_id`.
fn run_resumed(
    prepared: &Prepared,
    state_dir: &std::path::Path,
    location: &Location,
    session: &str,
    run_id: &str,
    resume: Resume,
    interrupt: Arc<Interrupt>,
) -> Result<ChainResult, Error> {
    let config = &prepared.config;
    let bench = Workbench::new(prepared, interrupt)?;
    let grace = bench.grace;
    let host = crate::state::host(config.runner.host.as_deref());
    let events = crate::events::Events::new(state_dir, location, session, &host);
    let (chain, _scratch) = bench.chain(prepared, session, &events, &crate::chain::Unobserved);
    let mut recorder = StoreRecorder::open(
        state_dir,
        location,
        &prepared.job,
        config.runner.log_max_bytes,
        "manual",
        &host,
    )
    .resumed();
    let mut rng = StdRng::from_entropy();
    let result = chain.resume(run_id, resume, &mut recorder, &mut rng);
    // The recorder first, then the chain (which reaps the guardian), then the scratch.
    drop(recorder);
    drop(chain);
    // As after a run: kept leftovers get their output relay, and as PID 1 the orphans.
    crate::exec::finish(grace);
    Ok(result)
}

fn refuse_unless_ended_badly(detail: &RunDetail, verb: &str) -> Result<(), Error> {
    let id = &detail.run.run_id;
    match detail.run.status {
        RunStatus::Failed | RunStatus::Halted | RunStatus::Exited | RunStatus::Interrupted => {
            Ok(())
        }
        RunStatus::Running => Err(Error::Refused(format!(
            "run {id} is still running: only a run that has ended can be {verb}"
        ))),
        other => Err(Error::Refused(format!(
            "run {id} ended {other}: only instances of a run that ended failed, halted, exited or interrupted can be {verb}"
        ))),
    }
}

/// The task directory and configuration a chain run was started with.
fn chain_of(detail: &RunDetail, verb: &str) -> Result<(PathBuf, Option<PathBuf>), Error> {
    let data = &detail.run.trigger_data;
    let Some(taskdir) = data.get("taskdir").and_then(|v| v.as_str()) else {
        return Err(Error::Refused(format!(
            "run {} of job \"{}\" is not a chain run: it has no task instances to be {verb}",
            detail.run.run_id, detail.run.job_name
        )));
    };
    let config = data
        .get("config")
        .and_then(|v| v.as_str())
        .map(PathBuf::from);
    Ok((PathBuf::from(taskdir), config))
}

fn instance_number(task: &TaskRecord) -> u32 {
    task.instance
        .rsplit_once('#')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

fn latest_instance<'d>(detail: &'d RunDetail, name: &str) -> Option<&'d TaskRecord> {
    detail
        .tasks
        .iter()
        .filter(|t| t.name == name)
        .max_by_key(|t| instance_number(t))
}

/// The instance to replay or skip: T's latest (`--task T` or `--task T#n`), else the
/// first failed one in run order.
fn pick<'d>(
    detail: &'d RunDetail,
    task: Option<&str>,
    halt: Option<&str>,
    verb: &str,
) -> Result<&'d TaskRecord, Error> {
    let id = &detail.run.run_id;
    let refuse = |why: String| Err(Error::Refused(why));
    let Some(wanted) = task else {
        let failed = detail.tasks.iter().find(|t| {
            t.status == InstanceStatus::Failed
                && Some(t.name.as_str()) != halt
                && latest_instance(detail, &t.name).is_some_and(|l| l.instance == t.instance)
        });
        return match failed {
            Some(t) => Ok(t),
            None => refuse(format!(
                "run {id} has no failed task instance: only failed instances can be {verb}"
            )),
        };
    };
    let (name, number) = match wanted.rsplit_once('#') {
        Some((name, n)) => (name, n.parse::<u32>().ok()),
        None => (wanted, None),
    };
    if Some(name) == halt {
        return refuse(format!("the halt task \"{name}\" cannot be {verb}"));
    }
    let Some(latest) = latest_instance(detail, name) else {
        return refuse(format!("run {id} has no task \"{name}\""));
    };
    if let Some(n) = number
        && n != instance_number(latest)
    {
        let what = detail
            .tasks
            .iter()
            .find(|t| t.name == name && instance_number(t) == n)
            .map_or("does not exist".to_owned(), |t| {
                format!("is {}", t.status.as_str())
            });
        return refuse(format!(
            "{name}#{n} of run {id} {what}: only its latest instance {} can be {verb}",
            latest.instance
        ));
    }
    if latest.status != InstanceStatus::Failed {
        return refuse(format!(
            "{} of run {id} is {}: only failed instances can be {verb}",
            latest.instance,
            latest.status.as_str()
        ));
    }
    Ok(latest)
}

/// What was settled in the run, and the instance each step runs as now.
fn resume_of(prepared: &Prepared, detail: &RunDetail, halt: Option<&str>) -> Resume {
    let steps = &prepared.plan.steps;
    let mut resume = Resume {
        done: vec![false; steps.len()],
        abandoned: vec![false; steps.len()],
        instances: vec![0; steps.len()],
        halt_instance: 0,
        cascades: HashMap::new(),
        extra_env: HashMap::new(),
    };
    for (index, step) in steps.iter().enumerate() {
        let Some(latest) = latest_instance(detail, &step.task.name) else {
            continue;
        };
        let n = instance_number(latest);
        resume.instances[index] = n;
        match latest.status {
            InstanceStatus::Finished | InstanceStatus::Skipped => {
                resume.done[index] = true;
                let data = latest
                    .attempts
                    .iter()
                    .rev()
                    .find(|a| a.result.as_deref() == Some("OK"))
                    .and_then(|a| a.result_data.clone());
                if latest.status == InstanceStatus::Finished {
                    resume.cascades.insert(
                        step.task.name.clone(),
                        data.unwrap_or_else(|| serde_json::json!({})),
                    );
                }
            }
            InstanceStatus::Abandoned => {
                resume.done[index] = true;
                resume.abandoned[index] = true;
            }
            InstanceStatus::Failed => resume.instances[index] = n + 1,
            _ => {}
        }
    }
    if let Some(halt) = halt
        && let Some(latest) = latest_instance(detail, halt)
    {
        resume.halt_instance = instance_number(latest) + 1;
    }
    resume
}
