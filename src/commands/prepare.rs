//! Loading and validating a chain before anything runs: configuration, task directory,
//! plan, job name, interpreters and (as root) file permissions. Shared by `run` and
//! `check`, so that `check` finds exactly the errors a run would.
//!
//! What exec would only find out at the first spawn (an interpreter that is not there, a
//! `#!` line naming one, a job name too long for its lock file) is looked up here, where
//! it is cheap: one `stat` per program and the first line of each task file.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::{ChainConfig, ConfigError, names};
use crate::error::Error;
use crate::plan::{Plan, Step};
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
    check_halt_task(&config)?;
    let dir = TaskDir::scan(taskdir, &config.runner.halt_task)?;
    let halt_name = dir
        .halt
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| crate::taskdir::task_name(&n.to_string_lossy()));
    config.check_sections(
        dir.tasks
            .iter()
            .map(|t| t.name.as_str())
            .chain(halt_name.as_deref()),
    )?;
    let plan = Plan::build(&dir, &config)?;
    let job = match job {
        Some(job) => job.to_owned(),
        None => job_name(&config, &dir)?,
    };
    check_job_name_length(&config, &dir, &job)?;
    let mut found = HashSet::new();
    for step in plan.steps.iter().chain(plan.halt.iter()) {
        check_interpreter(&config, &dir.path, step, &mut found)?;
    }
    if security::is_enforced(insecure) {
        check_ownership(&config, &dir, &plan)?;
    }
    Ok(Prepared {
        config,
        dir,
        plan,
        job,
    })
}

/// Every file the chain will execute or read as configuration, with the directories above
/// it (section 12): the INI files, the task directory, task files, the halt task, each
/// interpreter and every hook command.
fn check_ownership(config: &ChainConfig, dir: &TaskDir, plan: &Plan) -> Result<(), Error> {
    for file in config.doc.files() {
        security::check(Kind::Config, file)?;
    }
    // The include directory too, empty or not: whoever can write it can add configuration.
    if let (Some(main), Some(entry)) = (&config.file, config.doc.get("runner", "include_dir")) {
        let base = main.parent().unwrap_or(std::path::Path::new("."));
        security::check(Kind::IncludeDir, &base.join(&entry.value))?;
    }
    security::check(Kind::TaskDir, &dir.path)?;
    security::check_all(
        Kind::TaskFile,
        plan.steps.iter().map(|step| step.task.path.as_path()),
    )?;
    if let Some(step) = &plan.halt {
        security::check(Kind::HaltTask, &step.task.path)?;
    }
    // Programs are looked up as the child will look them up: on the PATH of `[env]` when
    // it sets one, relative to the task directory for tasks and to here for hooks.
    let search_path = config
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| std::ffi::OsStr::new(v.as_str()));
    for step in plan.steps.iter().chain(plan.halt.iter()) {
        if let Some(words) = &step.settings.interpreter {
            security::check_program(Kind::Interpreter, &words[0], &dir.path, search_path)?;
        }
    }
    let here = std::env::current_dir().unwrap_or_else(|_| dir.path.clone());
    let runner = &config.runner;
    let hooks = [
        &runner.task_hook,
        &runner.post_fire_hook,
        &runner.post_replay_hook,
        &runner.post_skip_hook,
    ];
    for words in hooks.into_iter().flatten() {
        security::check_program(Kind::Hook, &words[0], &here, search_path)?;
    }
    Ok(())
}

/// `halt_task` names a file of the task directory; a path could point anywhere, and a
/// chain would then run as root whatever it points to.
fn check_halt_task(config: &ChainConfig) -> Result<(), Error> {
    let name = &config.runner.halt_task;
    if !name.is_empty() && !name.contains('/') && name != "." && name != ".." {
        return Ok(());
    }
    let reason = format!("{name:?} must be a file name in the task directory, not a path");
    match config.origin_of("runner", "halt_task") {
        Some(entry) => {
            Err(
                crate::config::ConfigError::bad_value(&entry.origin, "runner", "halt_task", reason)
                    .into(),
            )
        }
        None => Err(Error::Usage(reason)),
    }
}

/// `[runner] name`, or the task directory's base name, checked by the chain's rule for
/// job names (`config/names.rs`).
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
    let Err(reason) = names::check_chain_job(&name) else {
        return Ok(name);
    };
    Err(bad_job_name(origin, dir, reason))
}

/// The job's lock file is `JOB.lock` in one directory: a name that does not fit would
/// leave the run without its one-run-at-a-time guard, so it is refused before the run.
fn check_job_name_length(config: &ChainConfig, dir: &TaskDir, job: &str) -> Result<(), Error> {
    let Err(reason) = names::check_chain_job_length(job) else {
        return Ok(());
    };
    Err(bad_job_name(
        config.origin_of("runner", "name"),
        dir,
        reason,
    ))
}

/// A job name that breaks a rule: blamed on `[runner] name` where it was set, else on the
/// task directory whose name it is.
fn bad_job_name(
    set_at: Option<&crate::config::ini::Entry>,
    dir: &TaskDir,
    reason: String,
) -> Error {
    match set_at {
        Some(entry) => ConfigError::bad_value(&entry.origin, "runner", "name", reason).into(),
        None => ConfigError::whole(&dir.path, format!("{reason}; set [runner] name")).into(),
    }
}

/// Finds the program a task will be started with: its `interpreter`, else the one its
/// `#!` line names. A missing one is a configuration error naming it, not a "could not
/// start" retried `max_tries` times. `found` remembers the programs already looked up,
/// so a chain of 500 `#!/bin/sh` tasks costs one lookup, plus one read of each first line.
fn check_interpreter(
    config: &ChainConfig,
    taskdir: &Path,
    step: &Step,
    found: &mut HashSet<String>,
) -> Result<(), Error> {
    let path_var = task_path_var(config);
    let mut find = |program: &str| {
        found.contains(program) || {
            let there = if program.starts_with('/') {
                Path::new(program).is_file()
            } else {
                find_program(program, taskdir, path_var.as_deref())
            };
            if there {
                found.insert(program.to_owned());
            }
            there
        }
    };
    if let Some(words) = &step.settings.interpreter {
        if find(&words[0]) {
            return Ok(());
        }
        let reason = format!("interpreter {:?} {}", words[0], not_found(&words[0]));
        let origin = [step.task.name.as_str(), "runner"]
            .into_iter()
            .find_map(|s| config.origin_of(s, "interpreter").map(|e| (s, e)));
        return Err(match origin {
            Some((section, entry)) => {
                ConfigError::bad_value(&entry.origin, section, "interpreter", reason)
            }
            None => ConfigError::whole(&step.task.path, reason),
        }
        .into());
    }
    let Some(shebang) = shebang(&step.task.path) else {
        return Ok(());
    };
    let mut words = shebang.split_whitespace();
    let Some(program) = words.next() else {
        return Ok(());
    };
    // The kernel resolves a relative `#!` against the cwd; only absolute ones are sure.
    if !program.starts_with('/') {
        return Ok(());
    }
    if !find(program) {
        return Err(ConfigError::missing_shebang(&step.task.path, program).into());
    }
    // `#!/usr/bin/env python3`: env exists, the program it looks for may not.
    if Path::new(program).file_name() == Some(OsStr::new("env"))
        && let Some(name) = words
            .next()
            .filter(|w| !w.starts_with('-') && !w.contains('='))
        && !find(name)
    {
        return Err(ConfigError::missing_shebang(&step.task.path, name).into());
    }
    Ok(())
}

/// The `PATH` a task gets: `[env]` wins over the inherited one.
fn task_path_var(config: &ChainConfig) -> Option<std::ffi::OsString> {
    match config.env.iter().find(|(k, _)| k == "PATH") {
        Some((_, v)) => Some(v.into()),
        None => std::env::var_os("PATH"),
    }
}

/// Whether `program` names a file that exec would find: a path (relative ones from the
/// task directory, the task's working directory), or a name looked up in `path_var`.
fn find_program(program: &str, taskdir: &Path, path_var: Option<&OsStr>) -> bool {
    if program.contains('/') {
        return taskdir.join(program).is_file();
    }
    let Some(path_var) = path_var else {
        return false;
    };
    std::env::split_paths(path_var).any(|dir| {
        let candidate: PathBuf = if dir.as_os_str().is_empty() {
            taskdir.join(program)
        } else {
            dir.join(program)
        };
        std::fs::metadata(&candidate)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn not_found(program: &str) -> &'static str {
    if program.contains('/') {
        "does not exist"
    } else {
        "is not found in PATH"
    }
}

/// The rest of a task file's first line after `#!`, if it has one.
fn shebang(path: &Path) -> Option<String> {
    let mut head = [0u8; 256];
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.read(&mut head).ok()?;
    let line = head[..len].strip_prefix(b"#!")?;
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    Some(String::from_utf8_lossy(&line[..end]).into_owned())
}
