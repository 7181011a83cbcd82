//! A daemon configuration made ready to schedule: every job with its parsed schedule.
//!
//! Schedules are parsed when the configuration is read, so `runner check --daemon`,
//! `runner jobs` and a reload all reject a bad expression before anything runs, with the
//! file, job and key named.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::config::daemon::{DaemonConfig, Job};
use crate::config::{ConfigError, ErrorKind, Scope};
use crate::schedule::Schedule;
use crate::security::{self, Kind, UnsafeError};

/// A job ready to schedule, its schedule parsed (none for jobs that only run on
/// triggers).
#[derive(Debug, Clone)]
pub(crate) struct ScheduledJob {
    /// The configured job.
    pub(crate) job: Job,
}

impl ScheduledJob {
    /// Its parsed schedule: the job's own, not a copy (a daemon with ten thousand jobs
    /// would keep a megabyte of copies).
    pub(crate) fn schedule(&self) -> Option<&Schedule> {
        self.job.parsed_schedule.as_ref()
    }

    /// The first due time strictly after `after`.
    pub(crate) fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule()?.next_after(after)
    }
}

/// As root, refuses a configuration that another user could change, or a job command
/// that another user could replace (section 12); chain jobs are checked by the chain
/// runner they start, which reads their task directory and INI file itself.
pub(crate) fn check_ownership(config: &DaemonConfig) -> Result<(), UnsafeError> {
    if !security::is_enforced(false) {
        return Ok(());
    }
    for file in &config.files {
        security::check(Kind::DaemonConfig, file)?;
    }
    let here = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    // Each program once: ten thousand jobs running `true` are one check, not ten
    // thousand walks up the directory tree (sixteen stats each).
    let mut checked = std::collections::HashSet::new();
    for job in config.jobs.values() {
        if let Some(program) = job.command.as_ref().and_then(|argv| argv.first()) {
            let search_path = job.environment.get("PATH");
            if checked.insert((program, search_path)) {
                security::check_program(
                    Kind::Command,
                    program,
                    &here,
                    search_path.map(OsStr::new),
                )?;
            }
        }
    }
    Ok(())
}

/// Parses every job's schedule and checks what each job needs to exist.
pub(crate) fn prepare(
    config: &DaemonConfig,
) -> Result<BTreeMap<String, ScheduledJob>, ConfigError> {
    let mut jobs = BTreeMap::new();
    for (name, job) in &config.jobs {
        let scope = Scope::Job {
            name: name.clone(),
            group: job.job_group.clone(),
        };
        let bad = |key: &str, reason: String| {
            ConfigError::new(
                &config.path,
                scope.clone(),
                ErrorKind::BadValue {
                    key: key.to_owned(),
                    reason,
                },
            )
        };
        // `with_params` is merged into the data of the events a run waited for; without
        // `after` or `and_every` there are none, so it would do nothing.
        if !job.with_params.is_empty() && job.after.is_empty() && job.and_every.is_none() {
            log::warn!(
                "{}: job \"{name}\": key \"with_params\" does nothing without \"after\" or \"and_every\"",
                config.path.display()
            );
        }
        // A chain job whose directory or configuration is missing would fail every run:
        // say so now, like any other configuration error.
        if let Some(taskdir) = &job.taskdir {
            if !taskdir.is_dir() {
                return Err(bad(
                    "taskdir",
                    format!("{} is not a directory", taskdir.display()),
                ));
            }
        }
        if let Some(chain_config) = &job.config {
            if !chain_config.is_file() {
                return Err(bad(
                    "config",
                    format!("{} is not a readable file", chain_config.display()),
                ));
            }
        }
        // The schedule was parsed where the job was read (config::daemon::job), errors
        // naming the file.
        jobs.insert(name.clone(), ScheduledJob { job: job.clone() });
    }
    Ok(jobs)
}
