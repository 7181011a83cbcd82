//! `runner daemon`, `runner check --daemon` and `runner jobs list|next`.

use std::path::{Path, PathBuf};

use chrono::{Local, SecondsFormat, Utc};
use serde::Serialize;

use super::print::{self, Style, local_time};
use crate::cli::{DaemonConfigArgs, GlobalArgs, JobsCommand};
use crate::config::daemon::DaemonConfig;
use crate::daemon::jobs::{self, ScheduledJob};
use crate::daemon::{Service, Setup, data_dir};
use crate::error::{Error, exit_codes};
use crate::store::model::RunFilter;
use crate::store::{EventStore, Location};

/// The daemon configuration to use: `--config`, else `/etc/runner` as root and
/// `$XDG_CONFIG_HOME/runner` (default `~/.config/runner`) otherwise.
pub(crate) fn config_path(args: &DaemonConfigArgs) -> PathBuf {
    if let Some(path) = &args.config {
        return path.clone();
    }
    if crate::security::is_root() {
        return PathBuf::from("/etc/runner");
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("/etc"));
    base.join("runner")
}

/// Runs the scheduler in the foreground.
pub(crate) fn daemon(
    global: &GlobalArgs,
    args: &DaemonConfigArgs,
    insecure: bool,
) -> Result<u8, Error> {
    if insecure {
        crate::security::relax();
    }
    let service = Service::new(Setup {
        config_path: config_path(args),
        state_dir: global.state_dir.clone(),
        database: global.database.clone(),
    })?;
    service.run()
}

/// One job as `check --daemon` and `jobs list` print it.
#[derive(Serialize)]
struct JobView {
    name: String,
    schedule: Option<String>,
    schedule_timezone: Option<String>,
    next: Option<String>,
    command: Option<Vec<String>>,
    taskdir: Option<PathBuf>,
    concurrency_groups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_run: Option<LastRun>,
    /// The job's event keys, when it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<JobEvents>,
}

/// What a job waits for: its event keys, and (from the records) the `after` events
/// not fired yet in the daemon's session.
#[derive(Serialize)]
struct JobEvents {
    after: Vec<String>,
    unless: Vec<String>,
    and_every: Option<String>,
    with_params: serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    waiting_for: Option<Vec<String>>,
    /// The `unless` events already fired (a run would be dropped).
    #[serde(skip_serializing_if = "Option::is_none")]
    unless_fired: Option<Vec<String>>,
}

impl JobEvents {
    fn of(job: &ScheduledJob, store: Option<&dyn EventStore>) -> Option<JobEvents> {
        let j = &job.job;
        if j.after().is_empty() && j.unless().is_empty() && j.and_every().is_none() {
            return None;
        }
        // In the session a daemon started from here would be in.
        let fired = store.map(|store| {
            let session = crate::events::resolve_session(None, None);
            let names: Vec<String> = j.after().iter().chain(j.unless()).cloned().collect();
            store.latest_events(&session, &names).unwrap_or_default()
        });
        let waiting_for = fired.as_ref().map(|fired| {
            j.after()
                .iter()
                .filter(|n| !fired.contains_key(*n))
                .cloned()
                .collect()
        });
        let unless_fired = fired.as_ref().map(|fired| {
            j.unless()
                .iter()
                .filter(|n| fired.contains_key(*n))
                .cloned()
                .collect()
        });
        Some(JobEvents {
            after: j.after().to_vec(),
            unless: j.unless().to_vec(),
            and_every: j.and_every().map(str::to_owned),
            with_params: j.with_params().clone(),
            waiting_for,
            unless_fired,
        })
    }

    /// `after a, b (waiting for b); unless c (c fired); every e`.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.after.is_empty() {
            let mut part = format!("after {}", self.after.join(", "));
            if let Some(missing) = &self.waiting_for
                && !missing.is_empty()
            {
                part.push_str(&format!(" (waiting for {})", missing.join(", ")));
            }
            parts.push(part);
        }
        if !self.unless.is_empty() {
            let mut part = format!("unless {}", self.unless.join(", "));
            if let Some(fired) = self.unless_fired.as_ref().filter(|f| !f.is_empty()) {
                part.push_str(&format!(" ({} fired)", fired.join(", ")));
            }
            parts.push(part);
        }
        if let Some(every) = &self.and_every {
            parts.push(format!("every {every}"));
        }
        parts.join("; ")
    }
}

#[derive(Serialize)]
struct LastRun {
    run_id: String,
    status: String,
    start_time: Option<f64>,
}

fn view(job: &ScheduledJob, last_run: Option<LastRun>, store: Option<&dyn EventStore>) -> JobView {
    let next = job.next_after(Utc::now()).map(|t| {
        t.with_timezone(&Local)
            .to_rfc3339_opts(SecondsFormat::Millis, false)
    });
    JobView {
        name: job.job.name.clone(),
        schedule: job.job.schedule.clone(),
        schedule_timezone: job.job.schedule_timezone.map(|tz| tz.name().to_owned()),
        next,
        command: job.job.command.clone(),
        taskdir: job.job.taskdir().map(Path::to_owned),
        concurrency_groups: job.job.concurrency_groups().to_vec(),
        last_run,
        events: JobEvents::of(job, store),
    }
}

fn table(views: &[JobView], style: &Style, with_last: bool) -> String {
    let mut header = vec!["JOB", "SCHEDULE", "NEXT", "RUNS"];
    if with_last {
        header.push("LAST RUN");
    }
    let with_events = views.iter().any(|v| v.events.is_some());
    if with_events {
        header.push("EVENTS");
    }
    let mut rows = vec![header.into_iter().map(str::to_owned).collect::<Vec<_>>()];
    for v in views {
        let what = match (&v.command, &v.taskdir) {
            (Some(c), _) => shell_words::join(c),
            (None, Some(t)) => format!("chain {}", t.display()),
            (None, None) => String::new(),
        };
        let mut row = vec![
            v.name.clone(),
            v.schedule.clone().unwrap_or_else(|| match v.events {
                Some(_) => "(events)".to_owned(),
                None => "(triggers only)".to_owned(),
            }),
            v.next.clone().unwrap_or_else(|| "-".to_owned()),
            what,
        ];
        if with_last {
            row.push(match &v.last_run {
                Some(last) => format!(
                    "{} {}",
                    style.status(&last.status),
                    local_time(last.start_time)
                ),
                None => "-".to_owned(),
            });
        }
        if with_events {
            row.push(
                v.events
                    .as_ref()
                    .map(JobEvents::describe)
                    .unwrap_or_default(),
            );
        }
        rows.push(row);
    }
    print::table(&rows)
}

fn load(path: &Path) -> Result<(DaemonConfig, Vec<ScheduledJob>), Error> {
    let config = DaemonConfig::load(path)?;
    let jobs = jobs::prepare(&config)?.to_vec();
    Ok((config, jobs))
}

/// `check --daemon PATH`: validates without starting anything and prints each job with
/// its next time.
pub(crate) fn check(global: &GlobalArgs, path: &Path) -> Result<u8, Error> {
    let (config, jobs) = load(path)?;
    jobs::check_ownership(&config)?;
    for warning in &config.warnings {
        log::warn!("{warning}");
    }
    let views: Vec<JobView> = jobs.iter().map(|j| view(j, None, None)).collect();
    let dir = data_dir(&config, global.state_dir.as_deref());
    // Which file the daemon will record into: dsari's, for a dsari configuration.
    let location = Location::resolve(global.database.as_deref(), Some(&config), &dir)?;
    print::records(global.format, &views, |style| {
        format!(
            "{}\nok: {} job(s); data in {}, runs recorded in {}\n",
            table(&views, style, false),
            views.len(),
            dir.display(),
            location.describe()
        )
    })?;
    Ok(exit_codes::OK)
}

/// `jobs list` and `jobs next`.
pub(crate) fn jobs(global: &GlobalArgs, command: JobsCommand) -> Result<u8, Error> {
    match command {
        JobsCommand::List { config } => {
            let (config, jobs) = load(&config_path(&config))?;
            let dir = data_dir(&config, global.state_dir.as_deref());
            let location = Location::resolve(global.database.as_deref(), Some(&config), &dir)?;
            let store = crate::store::open_for_reading(&location, &crate::state::host(None))?;
            // The events the daemon would wait on: the fleet's, with a fleet database.
            let events =
                crate::store::open_events_for_reading(&location, &crate::state::host(None))?;
            let mut views = Vec::new();
            for job in &jobs {
                let last = match &store {
                    Some(store) => store
                        .list_runs_on(&RunFilter::newest(std::slice::from_ref(&job.job.name), 1))?
                        .into_iter()
                        .next()
                        .map(|r| LastRun {
                            run_id: r.run_id,
                            status: r.status.to_string(),
                            start_time: r.start_time,
                        }),
                    None => None,
                };
                views.push(view(job, last, events.as_deref()));
            }
            print::records(global.format, &views, |style| table(&views, style, true))?;
        }
        JobsCommand::Next { config, count } => {
            let (_, jobs) = load(&config_path(&config))?;
            let now = Utc::now();
            let mut due = Vec::new();
            for job in &jobs {
                let mut after = now;
                for _ in 0..count {
                    let Some(next) = job.next_after(after) else {
                        break;
                    };
                    due.push((next, job.job.name.clone()));
                    after = next;
                }
            }
            due.sort();
            due.truncate(count);
            #[derive(Serialize)]
            struct Due {
                time: String,
                job: String,
            }
            let due: Vec<Due> = due
                .into_iter()
                .map(|(t, job)| Due {
                    time: t
                        .with_timezone(&Local)
                        .to_rfc3339_opts(SecondsFormat::Millis, false),
                    job,
                })
                .collect();
            print::records(global.format, &due, |_| {
                let mut rows = vec![vec!["TIME".to_owned(), "JOB".to_owned()]];
                rows.extend(due.iter().map(|d| vec![d.time.clone(), d.job.clone()]));
                print::table(&rows)
            })?;
        }
    }
    Ok(exit_codes::OK)
}
