//! `runner [run] [-c FILE] [-n N] [-H] TASKDIR`: run the chain.

use std::path::Path;
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::live::{self, LiveView};
use super::prepare::prepare;
use super::workbench::Workbench;
use crate::chain::{Chain, ChainResult, Observer, Unobserved};
use crate::cli::{ChainArgs, GlobalArgs};
use crate::error::Error;
use crate::interrupt::Interrupt;
use crate::record::{NullRecorder, Recorder};
use crate::state;
use crate::state::lock::{Acquired, JobLock, LockError};
use crate::store::{FleetLock, FleetLockOutcome, Location, StoreRecorder, retention};

/// Runs the chain in `taskdir` as often as `-n` says and returns the exit code.
pub(crate) fn run(global: &GlobalArgs, args: &ChainArgs, taskdir: &Path) -> Result<u8, Error> {
    let prepared = prepare(
        args.config.as_deref(),
        taskdir,
        args.insecure,
        args.job_name.as_deref(),
    )?;
    let config = &prepared.config;
    // The recorder's and the supervisor's threads allocate little: one arena serves them.
    crate::memory::limit_arenas(1);

    let interrupt = Interrupt::new();
    if let Err(e) = crate::signals::install(&interrupt) {
        log::warn!("cannot install signal handlers ({e}); signals will kill runner outright");
    }
    let state_dir = state::resolve(
        global.state_dir.as_deref(),
        config.runner.state_dir.as_deref(),
    );
    // `--database` / RUNNER_DATABASE first, then `[runner] database`.
    let database = global.database.as_deref().or(config
        .runner
        .database
        .as_ref()
        .map(|d| d.0.as_str()));
    let location = Location::resolve(database, None, &state_dir)?;
    let host = state::host(config.runner.host.as_deref());
    if crate::security::is_enforced(args.insecure) {
        crate::security::check_state_dir(&state_dir)?;
    }
    let mut lock = match JobLock::acquire(&state_dir, &prepared.job, args.wait, &interrupt) {
        Ok(Acquired::Held(lock)) => Some(lock),
        Ok(Acquired::Interrupted) => {
            let sig = interrupt.received().unwrap_or(libc::SIGTERM);
            return Ok(ChainResult::Interrupted(sig).exit_code());
        }
        Err(e @ LockError::Held { .. }) => return Err(e.into()),
        Err(e) => {
            log::warn!(
                "cannot lock job \"{}\" ({e}); running without the one-run-at-a-time guard",
                prepared.job
            );
            None
        }
    };

    // `lock = fleet`: beside this host's lock, one run of the job in the whole fleet.
    let _fleet_lock = match (&location.fleet, config.runner.fleet_lock) {
        (Some(url), true) => {
            match FleetLock::acquire(url, &prepared.job, args.wait, || {
                interrupt.received().is_some()
            }) {
                Ok(FleetLockOutcome::Held(lock)) => Some(lock),
                Ok(FleetLockOutcome::Busy) => {
                    if let Some(sig) = interrupt.received() {
                        return Ok(ChainResult::Interrupted(sig).exit_code());
                    }
                    return Err(Error::Locked {
                        job: prepared.job.clone(),
                        holder: format!("another host of the fleet ({})", url.describe()),
                    });
                }
                Err(e) => {
                    log::warn!(
                        "cannot take the fleet lock of job \"{}\" ({}); only this host's lock holds",
                        prepared.job,
                        crate::error::one_line(&e)
                    );
                    None
                }
            }
        }
        (None, true) => {
            log::warn!(
                "lock = fleet needs a fleet database (a PostgreSQL --database); only this host's lock holds"
            );
            None
        }
        _ => None,
    };

    let session =
        crate::events::resolve_session(None, super::fire::configured_session(Some(config)));
    let bench = Workbench::new(&prepared, Arc::clone(&interrupt))?;
    let grace = bench.grace;
    let events = crate::events::Events::new(&state_dir, &location, &session, &host);
    // The daemon's chains (attached) write to a file: nobody watches them live.
    let live = (args.attach_run.is_none() && live::is_wanted(global.quiet))
        .then(|| LiveView::start((!args.no_record).then(|| show_command(global))));
    let observer: &dyn Observer = match &live {
        Some(view) => view.as_ref(),
        None => &Unobserved,
    };
    let (chain, _scratch) = bench.chain(&prepared, &session, &events, observer);
    let mut pruning = None;
    let mut recorder: Box<dyn Recorder> = if args.no_record {
        Box::new(NullRecorder)
    } else {
        let mut store = StoreRecorder::open(
            &state_dir,
            &location,
            &prepared.job,
            config.runner.log_max_bytes,
            "manual",
            &host,
        );
        if args.attach_run.is_some() {
            store = store.attached();
        } else {
            if lock.is_some() {
                store.finalize_lost();
            }
            pruning = retention::spawn(
                &state_dir,
                &location,
                &prepared.job,
                config.runner.keep_runs,
                config.runner.keep_days,
                config.runner.event_keep_days,
                &host,
            );
        }
        Box::new(store)
    };
    let mut rng = StdRng::from_entropy();
    let result = iterate(&chain, args, lock.as_mut(), recorder.as_mut(), &mut rng);
    if let Some(view) = &live {
        view.finish();
    }
    if let Some(pruning) = pruning {
        pruning.finish();
    }
    drop(recorder);
    // The guardian is reaped here (dropping the chain drops the last handle on it).
    drop(chain);
    crate::exec::finish(grace);
    Ok(result.exit_code())
}

/// Runs the chain `-n` times (forever for 0), stopping at the first run that fails.
fn iterate(
    chain: &Chain<'_>,
    args: &ChainArgs,
    mut lock: Option<&mut JobLock>,
    recorder: &mut dyn Recorder,
    rng: &mut StdRng,
) -> ChainResult {
    let mut iteration = 0u64;
    loop {
        iteration += 1;
        let run_id = match &args.attach_run {
            Some(id) => id.clone(),
            None => crate::store::new_run_id(),
        };
        if let Some(lock) = lock.as_deref_mut() {
            lock.announce(&run_id);
        }
        // An attached chain is one run of the daemon's: exactly one iteration.
        let last =
            args.attach_run.is_some() || (args.iterations != 0 && iteration >= args.iterations);
        let result = chain.run(&run_id, last && args.halt_after, recorder, rng);
        if result != ChainResult::Ok || last {
            return result;
        }
        if let Some(sig) = chain.supervisor.interrupt().received() {
            return ChainResult::Interrupted(sig);
        }
    }
}

/// The command that shows a run again, without the id: `runner runs show`, with the
/// `--state-dir` or `--database` this run was given so that it finds the same store.
fn show_command(global: &GlobalArgs) -> String {
    let mut words = vec!["runner".to_owned()];
    if let Some(dir) = &global.state_dir {
        words.push("--state-dir".to_owned());
        words.push(dir.display().to_string());
    }
    if let Some(url) = &global.database {
        words.push("--database".to_owned());
        words.push(url.clone());
    }
    words.push("runs".to_owned());
    words.push("show".to_owned());
    shell_words::join(words)
}
