//! `runner runs list|show|output|tail`: reading the records back, and choosing (and
//! opening read-only) the store every reading command uses.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::print::{self, Style, duration, local_time};
use crate::cli::{GlobalArgs, RunsArgs, RunsCommand};
use crate::config::daemon::DaemonConfig;
use crate::daemon::data_dir;
use crate::error::{Error, exit_codes};
use crate::state;
use crate::store::model::{RunDetail, RunFilter, RunRecord, RunStatus};
use crate::store::{Location, RunStore, StoreError, StoredOutput, paths};

/// How often `runs tail` looks for new output and for the runs' ends.
const TAIL_POLL: Duration = Duration::from_millis(200);

/// The store a records command reads, and the data directory whose `runs/` holds the
/// runs' output.
pub(crate) struct Records {
    /// The store; `None` when nothing was ever recorded there.
    pub(crate) store: Option<Box<dyn RunStore>>,
    /// `STATE_DIR`, or the daemon configuration's data directory.
    pub(crate) data_dir: PathBuf,
}

/// Opens, read-only, the store a reading command uses: `--database`, else the daemon
/// configuration's (when `daemon_config` is given: its `database.file`, or its data
/// directory's file), else the state directory's. The file is never changed.
pub(crate) fn open_records(
    global: &GlobalArgs,
    daemon_config: Option<&Path>,
) -> Result<Records, Error> {
    let (location, data_dir) = match daemon_config {
        Some(path) => {
            let config = DaemonConfig::load(path)?;
            let data_dir = data_dir(&config, global.state_dir.as_deref());
            let location = Location::resolve(global.database.as_deref(), Some(&config), &data_dir)?;
            (location, data_dir)
        }
        None => {
            let state_dir = state::resolve(global.state_dir.as_deref(), None);
            let location = Location::resolve(global.database.as_deref(), None, &state_dir)?;
            (location, state_dir)
        }
    };
    let store = crate::store::open_for_reading(&location, &state::host(None))?;
    Ok(Records { store, data_dir })
}

/// Runs one `runs` subcommand.
pub(crate) fn runs(global: &GlobalArgs, args: RunsArgs) -> Result<u8, Error> {
    let Records { store, data_dir } = open_records(global, args.config.as_deref())?;
    match args.command {
        RunsCommand::List {
            jobs,
            limit,
            statuses,
            since,
            host,
        } => {
            let statuses = statuses
                .iter()
                .map(|s| s.parse::<RunStatus>().map_err(Error::Usage))
                .collect::<Result<Vec<_>, _>>()?;
            let since = since.as_deref().map(parse_since).transpose()?;
            let runs = match &store {
                Some(store) => store.list_runs_on(&RunFilter {
                    jobs: &jobs,
                    statuses: &statuses,
                    since,
                    host: host.as_deref(),
                    limit,
                })?,
                None => Vec::new(),
            };
            print::records(global.format, &runs, |style| list_table(&runs, style))?;
        }
        RunsCommand::Show { run_id } => {
            let mut detail = require(store.as_deref(), &run_id)?.run_detail(&run_id)?;
            // A run dsari recorded has its output in dsari's layout beside the store.
            // (Not for a record whose names are no safe file names: it is shown as it
            // is, and nothing is looked up for it.)
            if detail.output_dir.is_none()
                && let Ok(dir) = paths::run_dir(&data_dir, &detail.run.job_name, &detail.run.run_id)
                && dir.join("output.txt").is_file()
            {
                detail.output_dir = Some(dir.display().to_string());
            }
            print::records(global.format, &detail, |style| show_table(&detail, style))?;
        }
        RunsCommand::Output { run_id, task } => {
            let store = require(store.as_deref(), &run_id)?;
            let detail = store.run_detail(&run_id)?;
            paths::check_detail(&detail)?;
            let stored = store.stored_output(&detail.run.run_id)?;
            print_output(&detail, &data_dir, task.as_deref(), &stored)?;
        }
        RunsCommand::Tail { run_ids } => {
            let Some(store) = store else {
                if !run_ids.is_empty() {
                    require(None, &run_ids[0])?;
                }
                eprintln!("no run is running");
                return Ok(exit_codes::OK);
            };
            return tail(store.as_ref(), &data_dir, &run_ids);
        }
    }
    Ok(exit_codes::OK)
}

fn require<'s>(store: Option<&'s dyn RunStore>, run_id: &str) -> Result<&'s dyn RunStore, Error> {
    store.ok_or_else(|| {
        Error::Store(StoreError::NotFound {
            prefix: run_id.to_owned(),
        })
    })
}

fn short(run_id: &str) -> String {
    run_id.chars().take(8).collect()
}

fn list_table(runs: &[RunRecord], style: &Style) -> String {
    let mut rows = vec![vec![
        "RUN".to_owned(),
        "JOB".to_owned(),
        "STATUS".to_owned(),
        "STARTED".to_owned(),
        "DURATION".to_owned(),
        "EXIT".to_owned(),
        "TRIGGER".to_owned(),
    ]];
    for run in runs {
        rows.push(vec![
            short(&run.run_id),
            run.job_name.clone(),
            style.status(run.status.as_str()),
            local_time(run.start_time),
            duration(run.start_time, run.stop_time),
            run.exit_code.map_or("-".to_owned(), |c| c.to_string()),
            run.trigger_type.clone().unwrap_or_default(),
        ]);
    }
    if runs.is_empty() {
        return "no runs recorded\n".to_owned();
    }
    print::table(&rows)
}

fn show_table(detail: &RunDetail, style: &Style) -> String {
    let run = &detail.run;
    let mut out = String::new();
    let exit = run
        .exit_code
        .map_or(String::new(), |c| format!(" (exit {c})"));
    out.push_str(&format!("run:      {}\n", run.run_id));
    out.push_str(&format!("job:      {}\n", run.job_name));
    if let Some(host) = &run.host {
        out.push_str(&format!("host:     {host}\n"));
    }
    out.push_str(&format!(
        "status:   {}{exit}\n",
        style.status(run.status.as_str())
    ));
    out.push_str(&format!(
        "trigger:  {} {}\n",
        run.trigger_type.as_deref().unwrap_or("-"),
        run.trigger_data
    ));
    out.push_str(&format!("started:  {}\n", local_time(run.start_time)));
    out.push_str(&format!(
        "stopped:  {} (took {})\n",
        local_time(run.stop_time),
        duration(run.start_time, run.stop_time)
    ));
    if run.run_data.as_object().is_some_and(|o| !o.is_empty()) {
        out.push_str(&format!("data:     {}\n", run.run_data));
    }
    // A run of a command (a daemon's, or one dsari recorded) has no tasks to list.
    if detail.tasks.is_empty() {
        return out;
    }
    out.push('\n');
    let mut rows = vec![vec![
        "TASK".to_owned(),
        "STATUS".to_owned(),
        "TRY".to_owned(),
        "RESULT".to_owned(),
        "EXIT".to_owned(),
        "STARTED".to_owned(),
        "DURATION".to_owned(),
        "NOTE".to_owned(),
    ]];
    for task in &detail.tasks {
        let mut first = true;
        let status = style.status(task.status.as_str());
        if task.attempts.is_empty() {
            rows.push(vec![task.instance.clone(), status.clone()]);
        }
        for attempt in &task.attempts {
            let exit = match (attempt.exit_code, attempt.signal) {
                (Some(code), _) => code.to_string(),
                (None, Some(sig)) => format!("signal {sig}"),
                (None, None) => "-".to_owned(),
            };
            rows.push(vec![
                if first {
                    task.instance.clone()
                } else {
                    String::new()
                },
                if first { status.clone() } else { String::new() },
                attempt.try_num.to_string(),
                style.status(attempt.result.as_deref().unwrap_or("-")),
                exit,
                local_time(Some(attempt.start_time)),
                duration(Some(attempt.start_time), attempt.stop_time),
                attempt.note.clone().unwrap_or_default(),
            ]);
            first = false;
        }
    }
    out.push_str(&print::table(&rows));
    let waits: Vec<String> = detail
        .tasks
        .iter()
        .flat_map(|t| t.events.iter().map(move |e| (t, e)))
        .map(|(task, e)| {
            let outcome = match (e.fired, e.source.as_deref()) {
                (false, _) => "not fired".to_owned(),
                (true, Some("cascade")) => "passed on by a dependency".to_owned(),
                (true, source) => format!(
                    "fired {}{}",
                    local_time(e.fired_at),
                    source.map(|s| format!(" by {s}")).unwrap_or_default()
                ),
            };
            let waited = e
                .waited_since
                .map(|since| format!(" (waited {})", duration(Some(since), Some(e.decided_at))))
                .unwrap_or_default();
            format!(
                "  {} {} {}: {outcome}{waited}\n",
                task.instance, e.kind, e.name
            )
        })
        .collect();
    if !waits.is_empty() {
        out.push_str("\nevents waited for:\n");
        out.extend(waits);
    }
    let mut left = Vec::new();
    for task in &detail.tasks {
        for attempt in &task.attempts {
            let Some(procs) = attempt.leftovers.as_ref().and_then(|v| v.as_array()) else {
                continue;
            };
            for proc in procs {
                left.push(format!(
                    "  {} try {}: pid {} {}\n",
                    task.instance,
                    attempt.try_num,
                    proc["pid"],
                    proc["command"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    if !left.is_empty() {
        out.push_str("\nleft running when the task exited:\n");
        out.extend(left);
    }
    out
}

/// The output files of a run, in run order: (label, path). A chain run (standalone or
/// a daemon's) has one per attempt; a run without attempt files (a daemon run of a
/// command, a run dsari recorded) has dsari's `output.txt`, in the directory the run
/// recorded or else dsari's `DATA_DIR/runs/JOB/RUN_ID/`.
fn output_files(detail: &RunDetail, data_dir: &Path, task: Option<&str>) -> Vec<(String, PathBuf)> {
    let attempts: Vec<(String, PathBuf)> = detail
        .tasks
        .iter()
        .filter(|t| task.is_none_or(|name| t.name == name))
        .flat_map(|t| {
            t.attempts.iter().filter_map(move |a| {
                let path = a.output.as_ref()?;
                Some((
                    format!("{} try {}", t.instance, a.try_num),
                    PathBuf::from(path),
                ))
            })
        })
        .collect();
    if task.is_some() || !attempts.is_empty() {
        return attempts;
    }
    let run = &detail.run;
    let dir = match &detail.output_dir {
        Some(dir) => PathBuf::from(dir),
        None => match paths::run_dir(data_dir, &run.job_name, &run.run_id) {
            Ok(dir) => dir,
            // Callers check the record first; a bad name names no file at all.
            Err(_) => return Vec::new(),
        },
    };
    vec![("output.txt".to_owned(), dir.join("output.txt"))]
}

fn print_output(
    detail: &RunDetail,
    data_dir: &Path,
    task: Option<&str>,
    stored: &[StoredOutput],
) -> Result<(), Error> {
    if let Some(name) = task
        && !detail.tasks.iter().any(|t| t.name == name)
    {
        return Err(Error::Refused(format!(
            "run {} has no task \"{name}\"",
            short(&detail.run.run_id)
        )));
    }
    // A fleet database keeps the output itself: the same from every host.
    if !stored.is_empty() {
        let chosen: Vec<&StoredOutput> = stored
            .iter()
            .filter(|o| task.is_none_or(|name| o.task == name))
            .collect();
        let headers = chosen.len() > 1;
        for output in chosen {
            if headers {
                let label = format!("{} try {}", output.instance, output.try_num);
                print::write_stdout(format!("==> {label} <==\n").as_bytes())?;
            }
            print::write_stdout(&output.bytes)?;
        }
        return Ok(());
    }
    let files = output_files(detail, data_dir, task);
    let headers = files.len() > 1;
    for (label, path) in files {
        if headers {
            print::write_stdout(format!("==> {label} <==\n").as_bytes())?;
        }
        match std::fs::read(&path) {
            Ok(bytes) => print::write_stdout(&bytes)?,
            // Pruned since, or never written by an attempt cut short.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("cannot read {}: {e}", path.display()),
        }
    }
    Ok(())
}

/// `--since`: epoch seconds, RFC 3339, a local date and time, or a duration ago.
fn parse_since(text: &str) -> Result<f64, Error> {
    use chrono::{Local, NaiveDate, NaiveDateTime, TimeZone};
    if let Ok(epoch) = text.parse::<f64>() {
        return Ok(epoch);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis() as f64 / 1000.0);
    }
    let local = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    });
    if let Some(naive) = local
        && let Some(t) = Local.from_local_datetime(&naive).earliest()
    {
        return Ok(t.timestamp_millis() as f64 / 1000.0);
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        return Ok(now - ago.as_secs_f64());
    }
    Err(Error::Usage(format!(
        "--since {text:?}: expected epoch seconds, an RFC 3339 or YYYY-MM-DD[ HH:MM[:SS]] time, \
         or a time ago like 2h"
    )))
}

/// What `runs tail` has already said about one run.
#[derive(Default)]
struct Told {
    /// (instance, attempt index) of attempts whose start was shown.
    started: std::collections::HashSet<(String, usize)>,
    /// The same for attempts whose result was shown.
    ended: std::collections::HashSet<(String, usize)>,
    /// Whether the run's end was shown.
    finished: bool,
}

/// Follows `run_ids` (or every running run): task starts and results, new output, and
/// each run's end, until all have ended. Exits 0 when all ended `ok`, 1 otherwise.
fn tail(store: &dyn RunStore, data_dir: &Path, run_ids: &[String]) -> Result<u8, Error> {
    let ids: Vec<String> = if run_ids.is_empty() {
        store
            .list_runs_on(&RunFilter {
                statuses: &[RunStatus::Running],
                ..RunFilter::newest(&[], usize::MAX)
            })?
            .into_iter()
            .map(|r| r.run_id)
            .collect()
    } else {
        run_ids
            .iter()
            .map(|p| store.find_run(p).map(|r| r.run_id))
            .collect::<Result<_, _>>()?
    };
    if ids.is_empty() {
        eprintln!("no run is running");
        return Ok(exit_codes::OK);
    }
    let mut offsets: HashMap<PathBuf, u64> = HashMap::new();
    let mut told: HashMap<String, Told> = HashMap::new();
    let mut last_label = String::new();
    let mut all_ok = true;
    loop {
        let mut any_running = false;
        for id in &ids {
            let detail = store.run_detail(id)?;
            paths::check_detail(&detail)?;
            let told = told.entry(id.clone()).or_default();
            if told.finished {
                continue;
            }
            any_running |= detail.run.status == RunStatus::Running;
            // Another host's run (in a fleet database): its output is in the store.
            let local = detail
                .tasks
                .iter()
                .flat_map(|t| t.attempts.iter())
                .any(|a| a.output.as_ref().is_some_and(|p| Path::new(p).exists()));
            let stored = if local {
                Vec::new()
            } else {
                store.stored_output(id)?
            };
            for task in &detail.tasks {
                for (n, attempt) in task.attempts.iter().enumerate() {
                    let key = (task.instance.clone(), n);
                    if told.started.insert(key.clone()) {
                        let line = format!(
                            "-- {} {} try {} started at {}\n",
                            short(id),
                            task.instance,
                            attempt.try_num,
                            local_time(Some(attempt.start_time))
                        );
                        print::write_stdout(line.as_bytes())?;
                        last_label.clear();
                    }
                    let label = format!("{} {} try {}", short(id), task.instance, attempt.try_num);
                    let kept = stored
                        .iter()
                        .find(|o| o.instance == task.instance && o.try_num == attempt.try_num);
                    if let Some(kept) = kept {
                        let key = PathBuf::from(format!("{id}/{label}"));
                        print_fresh_bytes(&kept.bytes, key, &label, &mut offsets, &mut last_label)?;
                    } else if let Some(path) = &attempt.output {
                        print_fresh(&PathBuf::from(path), &label, &mut offsets, &mut last_label)?;
                    }
                    if let Some(result) = &attempt.result
                        && told.ended.insert(key)
                    {
                        let exit = match (attempt.exit_code, attempt.signal) {
                            (Some(code), _) => format!("exit {code}"),
                            (None, Some(sig)) => format!("signal {sig}"),
                            (None, None) => "no exit".to_owned(),
                        };
                        let line = format!(
                            "-- {} {} try {} {result} ({exit}) after {}\n",
                            short(id),
                            task.instance,
                            attempt.try_num,
                            duration(Some(attempt.start_time), attempt.stop_time)
                        );
                        print::write_stdout(line.as_bytes())?;
                        last_label.clear();
                    }
                }
            }
            // A daemon run of a command writes one output.txt.
            if detail.tasks.is_empty() {
                for (label, path) in output_files(&detail, data_dir, None) {
                    let label = format!("{} {label}", short(id));
                    print_fresh(&path, &label, &mut offsets, &mut last_label)?;
                }
            }
            if detail.run.status != RunStatus::Running {
                told.finished = true;
                all_ok &= detail.run.status == RunStatus::Ok;
                let exit = detail
                    .run
                    .exit_code
                    .map_or(String::new(), |c| format!(" (exit {c})"));
                let line = format!(
                    "== {} {} ended {}{exit} after {}\n",
                    short(id),
                    detail.run.job_name,
                    detail.run.status,
                    duration(detail.run.start_time, detail.run.stop_time)
                );
                print::write_stdout(line.as_bytes())?;
                last_label.clear();
            }
        }
        if !any_running {
            return Ok(if all_ok {
                exit_codes::OK
            } else {
                exit_codes::FAILED
            });
        }
        std::thread::sleep(TAIL_POLL);
    }
}

/// Prints what was added to `path` since the last look, under a header when the source
/// changed.
/// As [`print_fresh`], for output kept in the store rather than in a file.
fn print_fresh_bytes(
    bytes: &[u8],
    key: PathBuf,
    label: &str,
    offsets: &mut HashMap<PathBuf, u64>,
    last_label: &mut String,
) -> Result<(), Error> {
    let offset = offsets.entry(key).or_insert(0);
    let Some(fresh) = bytes.get(*offset as usize..).filter(|b| !b.is_empty()) else {
        return Ok(());
    };
    *offset += fresh.len() as u64;
    if label != last_label {
        print::write_stdout(format!("==> {label} <==\n").as_bytes())?;
        *last_label = label.to_owned();
    }
    print::write_stdout(fresh)
}

fn print_fresh(
    path: &PathBuf,
    label: &str,
    offsets: &mut HashMap<PathBuf, u64>,
    last_label: &mut String,
) -> Result<(), Error> {
    let offset = offsets.entry(path.clone()).or_insert(0);
    let Ok(mut file) = std::fs::File::open(path) else {
        return Ok(());
    };
    if file.seek(SeekFrom::Start(*offset)).is_err() {
        return Ok(());
    }
    let mut fresh = Vec::new();
    if file.read_to_end(&mut fresh).is_err() || fresh.is_empty() {
        return Ok(());
    }
    *offset += fresh.len() as u64;
    if label != last_label {
        print::write_stdout(format!("==> {label} <==\n").as_bytes())?;
        *last_label = label.to_owned();
    }
    print::write_stdout(&fresh)
}
