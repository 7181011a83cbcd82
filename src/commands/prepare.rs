//! Loading and validating a chain before anything runs: configuration, task directory,
//! plan, job name and (as root) file permissions. Shared by `run` and `check`, so that
//! `check` finds exactly the errors a run would.

use std::path::Path;

use crate::config::ChainConfig;
use crate::error::Error;
use crate::plan::Plan;
use crate::security::{self, Kind};
use crate::taskdir::TaskDir;

/// A chain that passed every check.
pub(crate) struct Prepared {
    /// The loaded configuration.
    pub(crate) config: ChainConfig,
    /// The scanned task directory.
    pub(crate) dir: TaskDir,
    /// The ordered plan.
    pub(crate) plan: Plan,
    /// The job name runs are recorded under.
    pub(crate) job: String,
}

/// Loads everything and finds every configuration error before the first task starts.
/// `job` overrides the job name (the daemon names the runs of its chain jobs).
pub(crate) fn prepare(
    config: Option<&Path>,
    taskdir: &Path,
    insecure: bool,
    job: Option<&str>,
) -> Result<Prepared, Error> {
    let config = ChainConfig::load(config)?;
    let dir = TaskDir::scan(taskdir, &config.runner.halt_task)?;
    let plan = Plan::build(&dir, &config)?;
    let job = match job {
        Some(job) => job.to_owned(),
        None => job_name(&config, &dir)?,
    };
    if security::is_root() && !insecure {
        security::check(Kind::TaskDir, &dir.path)?;
        for file in config.doc.files() {
            security::check(Kind::Config, file)?;
        }
        for step in plan.steps.iter().chain(plan.halt.iter()) {
            security::check(Kind::TaskFile, &step.task.path)?;
        }
    }
    Ok(Prepared {
        config,
        dir,
        plan,
        job,
    })
}

/// `[runner] name`, or the task directory's base name. A job name becomes a directory
/// name under the state directory, so it may not contain `/` or start with a dot.
fn job_name(config: &ChainConfig, dir: &TaskDir) -> Result<String, Error> {
    let (name, origin) = match &config.runner.name {
        Some(name) => (name.clone(), config.origin_of("runner", "name")),
        None => {
            // `..` or a trailing `/.` has no file name of its own: ask the file system.
            let named = dir
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            let base = named
                .or_else(|| {
                    let real = dir.path.canonicalize().ok()?;
                    real.file_name().map(|n| n.to_string_lossy().into_owned())
                })
                .unwrap_or_default();
            (base, None)
        }
    };
    let valid = !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\0']);
    if valid {
        return Ok(name);
    }
    let reason = format!(
        "{name:?} cannot be a job name: it must not be empty, start with \".\" or contain \"/\""
    );
    match origin {
        Some(entry) => {
            Err(
                crate::config::ConfigError::bad_value(&entry.origin, "runner", "name", reason)
                    .into(),
            )
        }
        None => Err(Error::Usage(format!("{reason}; set [runner] name"))),
    }
}
