//! Starting one daemon run: its directory, its environment (dsari's, with dsari's
//! precedence), its command, and what is left when it ends (`return_data.json`).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::config::daemon::Job;
use crate::exec::{AttemptReport, Command, Exit, Stop};
use crate::store::Location;
use crate::store::model::RunRecord;

/// A run that was asked for and waits to start.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Request {
    /// The job.
    pub(crate) job: String,
    /// When it was due.
    pub(crate) schedule_time: DateTime<Utc>,
    /// `schedule`, `file` (a trigger file), `catch_up` or `event`: always one of those
    /// constants, so planning a run copies no string.
    pub(crate) trigger_type: &'static str,
    /// Recorded as the run's `trigger_data`.
    pub(crate) trigger_data: serde_json::Value,
    /// The trigger's environment, which wins over everything else.
    pub(crate) environment: BTreeMap<String, String>,
}

/// Where a run lives on disk.
#[derive(Debug, Clone)]
pub(crate) struct RunPaths {
    /// `DATA_DIR`.
    pub(crate) data_dir: PathBuf,
    /// `DATA_DIR/runs/JOB`.
    pub(crate) job_dir: PathBuf,
    /// `DATA_DIR/runs/JOB/RUN_ID`: the cwd and the home of `output.txt`.
    pub(crate) run_dir: PathBuf,
}

impl RunPaths {
    /// The paths of run `run_id` of `job`.
    pub(crate) fn new(data_dir: &Path, job: &str, run_id: &str) -> RunPaths {
        let job_dir = data_dir.join("runs").join(job);
        RunPaths {
            data_dir: data_dir.to_owned(),
            run_dir: job_dir.join(run_id),
            job_dir,
        }
    }
}

/// Everything the environment of a run is built from.
pub(crate) struct Context<'a> {
    /// The job.
    pub(crate) job: &'a Job,
    /// The request.
    pub(crate) request: &'a Request,
    /// The run's id.
    pub(crate) run_id: &'a str,
    /// Its paths.
    pub(crate) paths: &'a RunPaths,
    /// When it starts.
    pub(crate) start_time: DateTime<Utc>,
    /// The concurrency group it took a slot in.
    pub(crate) group: Option<&'a str>,
    /// The previous run, the previous good and the previous bad one.
    pub(crate) previous: &'a [Option<RunRecord>; 3],
    /// The global `environment`.
    pub(crate) global_env: &'a BTreeMap<String, String>,
}

fn epoch(t: DateTime<Utc>) -> String {
    format_epoch(crate::epoch::utc_seconds(t))
}

fn format_epoch(t: f64) -> String {
    use std::fmt::Write;
    // Python's str(float) form, which dsari scripts parse: shortest round-trip digits.
    // Room for any epoch to the microsecond, so the digits are written in one allocation.
    let mut text = String::with_capacity(24);
    let _ = write!(text, "{t}");
    text
}

/// The daemon's user: its name and home, looked up once (the password database is read
/// on each lookup, and the daemon's user does not change while it runs).
fn daemon_user() -> Option<&'static (String, String)> {
    static USER: std::sync::OnceLock<Option<(String, String)>> = std::sync::OnceLock::new();
    USER.get_or_init(|| {
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid()).ok()??;
        Some((user.name, user.dir.display().to_string()))
    })
    .as_ref()
}

/// The names of the variables for the previous run, the previous good one and the
/// previous bad one: run id, schedule, start and stop time, exit code. Spelled out, so
/// that a run's start formats none of them.
const PREVIOUS_NAMES: [[&str; 5]; 3] = [
    [
        "PREVIOUS_RUN_ID",
        "PREVIOUS_SCHEDULE_TIME",
        "PREVIOUS_START_TIME",
        "PREVIOUS_STOP_TIME",
        "PREVIOUS_EXIT_CODE",
    ],
    [
        "PREVIOUS_GOOD_RUN_ID",
        "PREVIOUS_GOOD_SCHEDULE_TIME",
        "PREVIOUS_GOOD_START_TIME",
        "PREVIOUS_GOOD_STOP_TIME",
        "PREVIOUS_GOOD_EXIT_CODE",
    ],
    [
        "PREVIOUS_BAD_RUN_ID",
        "PREVIOUS_BAD_SCHEDULE_TIME",
        "PREVIOUS_BAD_START_TIME",
        "PREVIOUS_BAD_STOP_TIME",
        "PREVIOUS_BAD_EXIT_CODE",
    ],
];

/// The daemon's own `PATH`, read once: runner never changes its environment.
fn daemon_path() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_owned()))
}

/// A path as the text of a variable (as `Path::display` shows it).
fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The run's environment, built from scratch (only PATH is inherited), in dsari's
/// precedence: automatic < global `environment` < job `environment` < trigger.
pub(crate) fn environment(ctx: &Context<'_>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_owned(), v);
    };
    let run_dir = text(&ctx.paths.run_dir);
    set("CI", "true".to_owned());
    set("DSARI", "true".to_owned());
    set("PATH", daemon_path().to_owned());
    if let Some((name, home)) = daemon_user() {
        set("LOGNAME", name.clone());
        set("HOME", home.clone());
    }
    set("PWD", run_dir.clone());
    set("DATA_DIR", text(&ctx.paths.data_dir));
    set("JOB_NAME", ctx.job.name.clone());
    set("JOB_DIR", text(&ctx.paths.job_dir));
    set("RUN_ID", ctx.run_id.to_owned());
    set("RUN_DIR", run_dir.clone());
    set("SCHEDULE_TIME", epoch(ctx.request.schedule_time));
    set("START_TIME", epoch(ctx.start_time));
    set("TRIGGER_TYPE", ctx.request.trigger_type.to_owned());
    // The base directory, as dsari sets it: `${TRIGGER_DIR}/${OTHER_JOB}/trigger.json`.
    set(
        "TRIGGER_DIR",
        text(&crate::triggers::base_dir(&ctx.paths.data_dir)),
    );
    if let Some(group) = ctx.group {
        set("CONCURRENCY_GROUP", group.to_owned());
    }
    if let Some(group) = ctx.job.job_group() {
        set("JOB_GROUP", group.to_owned());
    }
    for (names, run) in PREVIOUS_NAMES.iter().zip(ctx.previous.iter()) {
        let Some(run) = run else { continue };
        let [run_id, schedule, start, stop, exit_code] = *names;
        set(run_id, run.run_id.clone());
        for (name, value) in [
            (schedule, run.schedule_time),
            (start, run.start_time),
            (stop, run.stop_time),
        ] {
            if let Some(value) = value {
                set(name, format_epoch(value));
            }
        }
        if let Some(code) = run.exit_code {
            set(exit_code, code.to_string());
        }
    }
    if ctx.job.jenkins_environment {
        let data_url = format!("file://{}/", ctx.paths.data_dir.display());
        set("BUILD_ID", ctx.run_id.to_owned());
        set("BUILD_NUMBER", ctx.run_id.to_owned());
        set(
            "BUILD_TAG",
            format!("dsari-{}-{}", ctx.job.name, ctx.run_id),
        );
        set("BUILD_URL", format!("file://{run_dir}/"));
        set("EXECUTOR_NUMBER", "0".to_owned());
        set("JENKINS_URL", data_url);
        set("NODE_NAME", "master".to_owned());
        set("WORKSPACE", run_dir);
    }
    for layer in [
        ctx.global_env,
        ctx.job.environment(),
        &ctx.request.environment,
    ] {
        for (k, v) in layer {
            env.insert(k.clone(), v.clone());
        }
    }
    env
}

/// The program to start for `name`: a bare name (`true`, `make`) is looked up here in
/// the run's own `PATH`, as `execvp` in the child would. Handing std a path matters for
/// speed: with a bare name and a `PATH` of the run's own, std cannot use `posix_spawn`
/// and forks the whole daemon (page tables of every thread included) for each run. A
/// name that is not found, or a `PATH` with a relative directory (which the child would
/// resolve from its own working directory), is left to std as it is.
fn program(name: &OsString, env: &BTreeMap<String, String>) -> OsString {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.contains(&b'/') {
        return name.clone();
    }
    let Some(path) = env.get("PATH") else {
        return name.clone();
    };
    if path.split(':').any(|dir| !dir.starts_with('/')) {
        return name.clone();
    }
    for dir in path.split(':') {
        let candidate = Path::new(dir).join(name);
        let runnable = std::fs::metadata(&candidate)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            && nix::unistd::access(&candidate, nix::unistd::AccessFlags::X_OK).is_ok();
        if runnable {
            return candidate.into_os_string();
        }
    }
    name.clone()
}

/// The programs found for runs, by name and `PATH`, for a second: a thousand runs of
/// `true` a second look it up once, not a thousand times (each look-up is a `stat` of
/// it in each directory of `PATH` before the one that has it). Forgotten after a
/// second, so a program installed or removed meanwhile is found as it is now.
pub(crate) struct Programs {
    found: std::collections::HashMap<(OsString, String), OsString>,
    since: std::time::Instant,
}

impl Default for Programs {
    fn default() -> Programs {
        Programs {
            found: std::collections::HashMap::new(),
            since: std::time::Instant::now(),
        }
    }
}

impl Programs {
    /// Forgets what was found more than a second ago.
    pub(crate) fn expire(&mut self) {
        if self.since.elapsed() >= std::time::Duration::from_secs(1) {
            *self = Programs::default();
        }
    }

    /// The program to start for `name` in `env` (see [`program`]).
    fn find(&mut self, name: &OsString, env: &BTreeMap<String, String>) -> OsString {
        let path = env.get("PATH").cloned().unwrap_or_default();
        let key = (name.clone(), path);
        if let Some(found) = self.found.get(&key) {
            return found.clone();
        }
        let found = program(name, env);
        self.found.insert(key, found.clone());
        found
    }
}

/// The command of a run: the job's `command` (plus job name and run id with
/// `command_append_run`), or runner itself running the job's chain attached to this run.
pub(crate) fn command(
    job: &Job,
    run_id: &str,
    env: BTreeMap<String, String>,
    paths: &RunPaths,
    exe: &Path,
    database: &Location,
    programs: &mut Programs,
) -> Command {
    let mut fleet = None;
    let argv: Vec<OsString> = match (&job.command, job.taskdir()) {
        (Some(command), _) => {
            let mut argv: Vec<OsString> = command.iter().map(OsString::from).collect();
            if job.command_append_run {
                argv.push(job.name.clone().into());
                argv.push(run_id.into());
            }
            argv
        }
        (None, Some(taskdir)) => {
            let mut argv: Vec<OsString> = vec![
                exe.into(),
                "--state-dir".into(),
                paths.data_dir.clone().into(),
            ];
            // The chain records into the daemon's store, wherever that is. A fleet's
            // connection string may hold a password: it goes through the environment,
            // which only the chain's own user can read, never argv (`ps` shows that).
            match &database.fleet {
                Some(url) => fleet = Some(url.secret_text().to_owned()),
                None => {
                    argv.push("--database".into());
                    argv.push(database.file().into());
                }
            }
            argv.extend([
                "run".into(),
                "--attach-run".into(),
                run_id.into(),
                "--job-name".into(),
                job.name.clone().into(),
            ]);
            if crate::security::is_relaxed() {
                argv.push("--insecure".into());
            }
            if let Some(config) = job.config() {
                argv.push("-c".into());
                argv.push(config.into());
            }
            argv.push(taskdir.into());
            argv
        }
        // The loader requires one of the two.
        (None, None) => vec![OsString::from("false")],
    };
    let mut cmd = Command::new(programs.find(&argv[0], &env));
    // The job sees the name it gave as its argv[0], as with a search in the child.
    cmd.arg0(&argv[0]);
    // dsari lets PWD (from the job or a trigger) choose the working directory. The run
    // directory (the usual PWD) is made just before the run starts.
    let cwd = env
        .get("PWD")
        .map(PathBuf::from)
        .filter(|p| *p != paths.run_dir && p.is_dir())
        .unwrap_or_else(|| paths.run_dir.clone());
    cmd.current_dir(cwd);
    cmd.args(&argv[1..]).env_clear().envs_owned(env);
    if let Some(url) = fleet {
        cmd.env("RUNNER_DATABASE", url);
        cmd.env("RUNNER_HOST", crate::state::host(None));
    }
    cmd
}

/// Opens `RUN_DIR/output.txt` for the run's stdout and stderr. Task output may hold
/// secrets: the run directory is 0700 and the file 0600, as a chain's logs, and a symlink
/// planted in their place is not followed.
pub(crate) fn output_file(paths: &RunPaths) -> std::io::Result<File> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&paths.run_dir)?;
    crate::state::open_private(&paths.run_dir.join("output.txt"), 0o600, false, true)
}

/// Adds to the run's `output.txt` why its command could not start (the process had the
/// file; runner kept no descriptor of it).
pub(crate) fn note_not_started(paths: &RunPaths, error: &str) {
    use std::io::Write;
    let path = paths.run_dir.join("output.txt");
    let written = crate::state::open_private(&path, 0o600, false, false).and_then(|mut file| {
        use std::io::Seek;
        file.seek(std::io::SeekFrom::End(0))?;
        writeln!(file, "runner: cannot start the command: {error}")
    });
    if let Err(e) = written {
        log::warn!("cannot write to {}: {e}", path.display());
    }
}

/// The run's exit code in dsari's terms: the code, or 128 + the signal that ended it.
pub(crate) fn exit_code(report: &AttemptReport) -> i32 {
    match &report.exit {
        Exit::Code(code) => *code,
        Exit::Signal(sig) => i32::from(crate::error::exit_codes::SIGNALED) + sig,
        // The shell's "command not found".
        Exit::NotStarted(_) => 127,
    }
}

/// Why the daemon ended a run itself, for the log.
pub(crate) fn stop_reason(report: &AttemptReport) -> Option<&'static str> {
    match report.stopped {
        Some(Stop::Timeout) => Some("max_execution reached"),
        Some(Stop::Interrupt(_)) => Some("stopped at shutdown"),
        None => None,
    }
}

/// `run_data` for a finished run: `{"return_data": ...}` when the run left a valid
/// `return_data.json` in its directory.
pub(crate) fn run_data(paths: &RunPaths) -> Option<serde_json::Value> {
    let path = paths.run_dir.join("return_data.json");
    let mut file = match crate::state::open_left_file(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            log::warn!("{} cannot be read ({e}); not recorded", path.display());
            return None;
        }
    };
    // The job wrote it with its own umask; it is task output, as private as output.txt.
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = file.set_permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut text = String::new();
    let limit = crate::chain::MAX_RESULT_BYTES;
    std::io::Read::read_to_string(&mut std::io::Read::take(&mut file, limit + 1), &mut text)
        .ok()?;
    if text.len() as u64 > limit {
        log::warn!(
            "{} is larger than {} KiB; not recorded",
            path.display(),
            limit >> 10
        );
        return None;
    }
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(value) => Some(serde_json::json!({ "return_data": value })),
        Err(e) => {
            log::warn!("{} is not valid JSON ({e}); not recorded", path.display());
            None
        }
    }
}

/// Writes the data of the events a run waited for where its `RUNNER_EVENTS` points
/// (the run's directory exists by then).
pub(crate) fn write_events(paths: &RunPaths, events: &str) {
    let path = paths.run_dir.join(super::gate::EVENTS_FILE);
    if let Err(e) = std::fs::write(&path, events) {
        log::warn!("cannot write {}: {e}", path.display());
    }
}

#[cfg(test)]
#[path = "launch_tests.rs"]
mod tests;
