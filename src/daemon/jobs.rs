//! A daemon configuration made ready to schedule: every job with its parsed schedule.
//!
//! Schedules are parsed when the configuration is read, so `runner check --daemon`,
//! `runner jobs` and a reload all reject a bad expression before anything runs, with the
//! file, job and key named.
//!
//! A daemon keeps its jobs in one [`JobTable`]: a sorted slice, each job once, shared by
//! the scheduling loop and the intake thread. Ten thousand jobs in a map keyed by a copy
//! of their names, plus a second set of those names on the intake thread, cost more than
//! the jobs themselves.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;

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

/// The jobs of one configuration, sorted by name, read-only; cloning shares them.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobTable(Arc<[ScheduledJob]>);

impl JobTable {
    /// The jobs of `jobs` (a map, so sorted by name and each once).
    fn new(jobs: BTreeMap<String, Job>) -> JobTable {
        debug_assert!(jobs.iter().all(|(name, job)| *name == job.name));
        let jobs: Vec<ScheduledJob> = jobs.into_values().map(|job| ScheduledJob { job }).collect();
        JobTable(jobs.into())
    }

    /// The job's place in [`JobTable::values`].
    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.0
            .binary_search_by(|j| j.job.name.as_str().cmp(name))
            .ok()
    }

    /// The job at `index` (see [`JobTable::index_of`]).
    pub(crate) fn at(&self, index: usize) -> &ScheduledJob {
        &self.0[index]
    }

    /// The job called `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&ScheduledJob> {
        self.index_of(name).map(|i| &self.0[i])
    }

    pub(crate) fn contains_key(&self, name: &str) -> bool {
        self.index_of(name).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The jobs, in name order.
    pub(crate) fn values(&self) -> std::slice::Iter<'_, ScheduledJob> {
        self.0.iter()
    }

    /// The names, in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|j| &j.job.name)
    }

    /// Each job with its name, in name order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &ScheduledJob)> {
        self.0.iter().map(|j| (&j.job.name, j))
    }

    /// A copy of every job, for a caller that wants to own them.
    pub(crate) fn to_vec(&self) -> Vec<ScheduledJob> {
        self.0.to_vec()
    }

    /// A copy made now, in memory allocated now: see `intake::load`.
    pub(crate) fn deep_copy(&self) -> JobTable {
        JobTable(self.0.iter().cloned().collect())
    }
}

impl<'a> IntoIterator for &'a JobTable {
    type Item = (&'a String, &'a ScheduledJob);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, ScheduledJob>,
        fn(&'a ScheduledJob) -> (&'a String, &'a ScheduledJob),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|j| (&j.job.name, j))
    }
}

#[cfg(test)]
impl std::ops::Index<&str> for JobTable {
    type Output = ScheduledJob;

    fn index(&self, name: &str) -> &ScheduledJob {
        match self.get(name) {
            Some(job) => job,
            None => panic!("no job {name:?}"),
        }
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
            let search_path = job.environment().get("PATH");
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

/// Checks what each job needs to exist and makes the table of a copy of the jobs.
pub(crate) fn prepare(config: &DaemonConfig) -> Result<JobTable, ConfigError> {
    check(config)?;
    Ok(JobTable::new(config.jobs.clone()))
}

/// [`prepare`], taking the jobs out of `config` instead of copying them.
pub(crate) fn take(config: &mut DaemonConfig) -> Result<JobTable, ConfigError> {
    check(config)?;
    Ok(JobTable::new(std::mem::take(&mut config.jobs)))
}

/// Checks what each job needs to exist (the schedules were parsed where each job was
/// read, errors naming the file: see `config::daemon::job`).
fn check(config: &DaemonConfig) -> Result<(), ConfigError> {
    for (name, job) in &config.jobs {
        let bad = |key: &str, reason: String| {
            let scope = Scope::Job {
                name: name.clone(),
                group: job.job_group().map(str::to_owned),
            };
            ConfigError::new(
                &config.path,
                scope,
                ErrorKind::BadValue {
                    key: key.to_owned(),
                    reason,
                },
            )
        };
        // `with_params` is merged into the data of the events a run waited for; without
        // `after` or `and_every` there are none, so it would do nothing.
        if !job.with_params().is_empty() && job.after().is_empty() && job.and_every().is_none() {
            log::warn!(
                "{}: job \"{name}\": key \"with_params\" does nothing without \"after\" or \"and_every\"",
                config.path.display()
            );
        }
        // A chain job whose directory or configuration is missing would fail every run:
        // say so now, like any other configuration error.
        if let Some(taskdir) = &job.taskdir()
            && !taskdir.is_dir()
        {
            return Err(bad(
                "taskdir",
                format!("{} is not a directory", taskdir.display()),
            ));
        }
        if let Some(chain_config) = &job.config()
            && !chain_config.is_file()
        {
            return Err(bad(
                "config",
                format!("{} is not a readable file", chain_config.display()),
            ));
        }
    }
    Ok(())
}
