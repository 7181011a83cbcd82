//! One job: dsari's job keys plus runner's own (`taskdir`, `config`, `catch_up`, events).
//!
//! This owns the shape and validity of one job. The schedule module decides whether a schedule
//! expression is valid, asked from here so the error names the file; whether a concurrency
//! group exists is decided by `load`, which sees all of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::de;
use super::tree::Node;
use crate::config::names::check_daemon;
use crate::config::near_miss::{NearMisses, suggest};
use crate::config::{ConfigError, Scope};
use crate::schedule::Schedule;

/// dsari's default for `max_execution_grace` (doc/configuration.md).
pub(crate) const DEFAULT_MAX_EXECUTION_GRACE: Duration = Duration::from_secs(60);

/// What to do about a scheduled time that passed while the daemon was not running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum CatchUp {
    /// Skip it, as dsari does.
    #[default]
    None,
    /// Run the job once at start, recorded with trigger type `catch_up`.
    Once,
}

/// One configured job, as the daemon schedules it.
///
/// A daemon keeps every job for as long as it runs, ten thousand of them in a large one:
/// what nearly every job sets is kept inline, the keys few jobs set ([`Rare`]) in one
/// allocation that a job setting none of them does without, read through accessors.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Job {
    /// The job's name, valid as a directory name (see `config::names::check_daemon`).
    pub(crate) name: String,
    /// The command to run, when the job runs a command; `None` when it runs a chain.
    pub(crate) command: Option<Vec<String>>,
    /// Append the job name and the run id to `command` (dsari).
    pub(crate) command_append_run: bool,
    /// The schedule expression as written.
    pub(crate) schedule: Option<String>,
    /// The IANA time zone `schedule_timezone` names (its name is the one written, as
    /// zone names are matched exactly); `None` means local time.
    pub(crate) schedule_timezone: Option<chrono_tz::Tz>,
    /// `schedule` parsed in `schedule_timezone` and hashed on the job name, once, where
    /// the job is read, so a bad expression is blamed on the file that wrote it.
    pub(crate) parsed_schedule: Option<Schedule>,
    /// How long after that SIGTERM the run gets SIGKILL.
    pub(crate) max_execution_grace: Duration,
    /// Whether runs of this job may overlap.
    pub(crate) concurrent_runs: bool,
    /// Whether runs get the Jenkins-compatible variables.
    pub(crate) jenkins_environment: bool,
    /// Whether the report shows this job.
    pub(crate) render_reports: bool,
    /// What to do about a schedule missed while the daemon was down.
    pub(crate) catch_up: CatchUp,
    /// The keys few jobs set; `None` when the job sets none of them.
    rare: Option<Box<Rare>>,
}

/// The keys of a job that most jobs leave out (see [`Job`]).
#[derive(Debug, Clone, Default, PartialEq)]
struct Rare {
    environment: BTreeMap<String, String>,
    max_execution: Option<Duration>,
    concurrency_groups: Vec<String>,
    job_group: Option<String>,
    taskdir: Option<PathBuf>,
    config: Option<PathBuf>,
    after: Vec<String>,
    unless: Vec<String>,
    and_every: Option<String>,
    with_params: serde_json::Map<String, serde_json::Value>,
}

/// What the accessors of a job without [`Rare`] keys return.
static NO_RARE: std::sync::LazyLock<Rare> = std::sync::LazyLock::new(Rare::default);

impl Rare {
    /// `self`, boxed, unless every key is left out.
    fn boxed(self) -> Option<Box<Rare>> {
        (self != Rare::default()).then(|| Box::new(self))
    }
}

impl Job {
    fn rare(&self) -> &Rare {
        self.rare.as_deref().unwrap_or(&NO_RARE)
    }

    /// The job's own variables, above the global ones and below a trigger's.
    pub(crate) fn environment(&self) -> &BTreeMap<String, String> {
        &self.rare().environment
    }

    /// How long a run may take before it is sent SIGTERM; `None` waits forever.
    pub(crate) fn max_execution(&self) -> Option<Duration> {
        self.rare().max_execution
    }

    /// Names of the concurrency groups the job runs in (all known to the configuration).
    pub(crate) fn concurrency_groups(&self) -> &[String] {
        &self.rare().concurrency_groups
    }

    /// The job group the job was expanded from (or set by hand); becomes `JOB_GROUP`.
    pub(crate) fn job_group(&self) -> Option<&str> {
        self.rare().job_group.as_deref()
    }

    /// Sets [`Job::job_group`]: a job made by a job group belongs to it.
    pub(crate) fn set_job_group(&mut self, group: String) {
        let mut rare = self.rare.take().map(|r| *r).unwrap_or_default();
        rare.job_group = Some(group);
        self.rare = rare.boxed();
    }

    /// The task directory of the chain the job runs, instead of a command.
    pub(crate) fn taskdir(&self) -> Option<&Path> {
        self.rare().taskdir.as_deref()
    }

    /// The chain's INI file; only with `taskdir`.
    pub(crate) fn config(&self) -> Option<&Path> {
        self.rare().config.as_deref()
    }

    /// Events that must have fired before a run starts.
    pub(crate) fn after(&self) -> &[String] {
        &self.rare().after
    }

    /// Events that, once fired, stop the job from starting.
    pub(crate) fn unless(&self) -> &[String] {
        &self.rare().unless
    }

    /// An event whose every further firing starts a new run.
    pub(crate) fn and_every(&self) -> Option<&str> {
        self.rare().and_every.as_deref()
    }

    /// Data merged into the events' data given to a run.
    pub(crate) fn with_params(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.rare().with_params
    }
}

/// A job's keys as written (dsari's, then runner's); a job group's too, which adds
/// `job_names`. Checked and turned into a [`Job`] by [`build_job`].
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct JobKeys {
    #[serde(default, deserialize_with = "de::command")]
    command: Option<Vec<String>>,
    #[serde(default)]
    command_append_run: bool,
    schedule: Option<String>,
    schedule_timezone: Option<String>,
    #[serde(default, deserialize_with = "de::environment")]
    environment: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "de::duration")]
    max_execution: Option<Duration>,
    #[serde(default, deserialize_with = "de::duration")]
    max_execution_grace: Option<Duration>,
    #[serde(default)]
    concurrency_groups: Vec<String>,
    #[serde(default)]
    concurrent_runs: bool,
    pub(crate) job_group: Option<String>,
    #[serde(default)]
    jenkins_environment: bool,
    render_reports: Option<bool>,
    taskdir: Option<String>,
    config: Option<String>,
    catch_up: Option<String>,
    #[serde(default)]
    after: Vec<String>,
    #[serde(default)]
    unless: Vec<String>,
    and_every: Option<String>,
    #[serde(default)]
    with_params: serde_json::Map<String, serde_json::Value>,
    /// Only in `job_groups`: the jobs the group makes.
    pub(crate) job_names: Option<Vec<String>>,
}

/// Checks the keys `k` read from `node` (the job's mapping, or its group's) and makes the
/// job; errors are reported in `scope`, against the file and place that set the key.
pub(crate) fn build_job(
    name: String,
    k: JobKeys,
    node: &Node,
    scope: &Scope,
) -> Result<Job, ConfigError> {
    let bad_key = |key: &str, reason: &str| de::blame(node, scope, key, false, reason);
    let bad_value = |key: &str, reason: String| de::blame(node, scope, key, true, reason);
    let taskdir = de::path(node, scope, "taskdir", k.taskdir)?;
    let config = de::path(node, scope, "config", k.config)?;
    match (&k.command, &taskdir) {
        (Some(_), Some(_)) => {
            return Err(bad_key(
                "taskdir",
                "command and taskdir are mutually exclusive; keep one",
            ));
        }
        (None, None) => {
            return Err(bad_key(
                "command",
                "a job needs a command (or a taskdir to run a chain)",
            ));
        }
        _ => {}
    }
    if config.is_some() && taskdir.is_none() {
        return Err(bad_key(
            "config",
            "config names the chain's INI file and needs taskdir",
        ));
    }
    if k.command_append_run && k.command.is_none() {
        return Err(bad_key(
            "command_append_run",
            "applies to command, not to taskdir",
        ));
    }

    let zone = match &k.schedule_timezone {
        None => None,
        Some(tz) => Some(tz.parse::<chrono_tz::Tz>().map_err(|_| {
            let reason = match closest_timezone(tz) {
                Some(close) => format!("unknown time zone {tz:?}; did you mean \"{close}\"?"),
                None => {
                    format!("unknown time zone {tz:?}; use an IANA name such as \"Europe/Paris\"")
                }
            };
            bad_value("schedule_timezone", reason)
        })?),
    };
    // Parsed here, hashed on the job name, so a bad expression is blamed on its file.
    let parsed_schedule = match &k.schedule {
        None => None,
        Some(expr) => Some(Schedule::parse(expr, &name, zone).map_err(|e| {
            bad_value(
                "schedule",
                format!("{:?}: {}: {}", e.expr, e.field, e.reason),
            )
        })?),
    };
    if k.max_execution.is_some_and(|d| d.is_zero()) {
        return Err(bad_value(
            "max_execution",
            "must be more than zero; leave it out to wait forever".to_owned(),
        ));
    }
    for group in &k.concurrency_groups {
        if let Err(reason) = check_daemon(group) {
            return Err(bad_value(
                "concurrency_groups",
                format!("{group:?} is not a valid concurrency group name: {reason}"),
            ));
        }
    }
    let catch_up = match k.catch_up.as_deref() {
        None | Some("none") => CatchUp::None,
        Some("once") => CatchUp::Once,
        Some(other) => {
            let hint = suggest(other, &["none", "once"])
                .map(|c| format!(" (did you mean \"{c}\"?)"))
                .unwrap_or_default();
            return Err(bad_value(
                "catch_up",
                format!("{other:?} is not \"none\" or \"once\"{hint}"),
            ));
        }
    };
    for (key, names) in [
        ("after", k.after.as_slice()),
        ("unless", k.unless.as_slice()),
        ("and_every", k.and_every.as_slice()),
    ] {
        if let Some(bad) = names
            .iter()
            .find(|n| n.trim().is_empty() || n.chars().any(char::is_control))
        {
            return Err(bad_value(key, format!("{bad:?} is not an event name")));
        }
    }

    let rare = Rare {
        environment: k.environment,
        max_execution: k.max_execution,
        concurrency_groups: k.concurrency_groups,
        job_group: k.job_group,
        taskdir,
        config,
        after: k.after,
        unless: k.unless,
        and_every: k.and_every,
        with_params: k.with_params,
    };
    Ok(Job {
        name,
        command: k.command,
        command_append_run: k.command_append_run,
        schedule: k.schedule,
        schedule_timezone: zone,
        parsed_schedule,
        max_execution_grace: k.max_execution_grace.unwrap_or(DEFAULT_MAX_EXECUTION_GRACE),
        concurrent_runs: k.concurrent_runs,
        jenkins_environment: k.jenkins_environment,
        render_reports: k.render_reports.unwrap_or(true),
        catch_up,
        rare: rare.boxed(),
    })
}

/// The known time zone `name` is a near miss of (case or a small typo), by the rule every
/// "did you mean" follows.
fn closest_timezone(name: &str) -> Option<&'static str> {
    let zones: Vec<&'static str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
    NearMisses::new(&zones).of(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Scope;
    use crate::config::daemon::job_groups::jobs_of;
    use std::path::Path;

    fn jobs(yaml: &str) -> Result<BTreeMap<String, Job>, ConfigError> {
        jobs_of(yaml)
    }

    fn err(yaml: &str) -> ConfigError {
        jobs(yaml).expect_err("should fail")
    }

    #[test]
    fn names_follow_dsari() {
        let e = err("jobs:\n  a/b: {command: [x]}\n");
        assert_eq!(
            e.to_string(),
            "/etc/runner/runner.yaml:2:3: job \"a/b\": invalid name: only letters, digits, space and - _ + . : @ are allowed"
        );
        assert!(e.hint().is_some());
    }

    #[test]
    fn defaults() {
        let jobs = jobs("jobs:\n  j: {command: /usr/bin/env}\n").expect("loads");
        let j = &jobs["j"];
        assert_eq!(j.command.as_deref(), Some(&["/usr/bin/env".to_owned()][..]));
        assert!(!j.command_append_run && !j.concurrent_runs && !j.jenkins_environment);
        assert!(j.render_reports);
        assert_eq!(j.max_execution(), None);
        assert_eq!(j.max_execution_grace, Duration::from_secs(60));
        assert_eq!(j.catch_up, CatchUp::None);
        assert!(j.after().is_empty() && j.unless().is_empty() && j.with_params().is_empty());
    }

    #[test]
    fn command_strings_split_like_a_shell() {
        let jobs =
            jobs("jobs:\n  j: {command: \"sh -c 'echo \\\"hi there\\\"' x\"}\n").expect("loads");
        assert_eq!(
            jobs["j"].command.as_deref(),
            Some(
                &[
                    "sh".to_owned(),
                    "-c".to_owned(),
                    "echo \"hi there\"".to_owned(),
                    "x".to_owned()
                ][..]
            )
        );
        let e = err("jobs:\n  j: {command: \"echo 'open\"}\n");
        assert!(
            e.to_string()
                .contains("job \"j\": key \"command\": cannot split"),
            "{e}"
        );
        let e = err("jobs:\n  j: {command: []}\n");
        assert!(
            e.to_string()
                .ends_with("key \"command\": the command is empty"),
            "{e}"
        );
    }

    #[test]
    fn runner_keys() {
        let jobs = jobs(
            "jobs:\n  chain:\n    taskdir: tasks/nightly\n    config: nightly.ini\n    catch_up: once\n\
             \x20   after: [fetched, built]\n    unless: [holiday]\n    and_every: fetched\n\
             \x20   with_params: {env: prod, n: 3}\n    max_execution: 1h\n    max_execution_grace: 5\n",
        )
        .expect("loads");
        let j = &jobs["chain"];
        assert_eq!(j.command, None);
        assert_eq!(j.taskdir(), Some(Path::new("/etc/runner/tasks/nightly")));
        assert_eq!(j.config(), Some(Path::new("/etc/runner/nightly.ini")));
        assert_eq!(j.catch_up, CatchUp::Once);
        assert_eq!(j.after(), ["fetched", "built"]);
        assert_eq!(j.unless(), ["holiday"]);
        assert_eq!(j.and_every(), Some("fetched"));
        assert_eq!(j.with_params()["n"], serde_json::json!(3));
        assert_eq!(j.max_execution(), Some(Duration::from_secs(3600)));
        assert_eq!(j.max_execution_grace, Duration::from_secs(5));
    }

    #[test]
    fn schedules_are_parsed_with_their_zone_and_job_name() {
        let jobs = jobs("jobs:\n  hello: {command: [x], schedule: 'RRULE:FREQ=DAILY', schedule_timezone: UTC}\n")
            .expect("valid");
        let parsed = jobs["hello"].parsed_schedule.as_ref().expect("parsed");
        assert_eq!(parsed.time_zone(), chrono_tz::Tz::UTC);
        // dsari's time for job "hello": its hashed second of the day.
        let from = chrono::DateTime::from_timestamp(1_577_836_800, 0).expect("2020-01-01");
        assert_eq!(
            parsed.next_after(from).map(|t| t.to_rfc3339()),
            Some("2020-01-01T09:21:10.211192+00:00".to_owned())
        );
        let e = err("jobs:\n  j: {command: [x], schedule: '0 0 32 * *'}\n");
        assert_eq!(
            e.to_string(),
            "/etc/runner/runner.yaml:2:31: job \"j\": key \"schedule\": \"0 0 32 * *\": day of month: value 32 out of range 1-31"
        );
        let e = err("jobs:\n  j: {command: [x], schedule: '0 0 30 2 *'}\n");
        assert!(e.to_string().contains("never fires"), "{e}");
    }

    #[test]
    fn a_bad_schedule_in_config_d_names_that_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let write = |name: &str, text: &str| {
            let path = d.join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, text).expect("write");
        };
        write(
            "runner.yaml",
            "jobs:\n  a: {command: [x], schedule: '@daily'}\n",
        );
        write(
            "config.d/20-b.yaml",
            "jobs:\n  b: {command: [x], schedule: 'H H * * * 60'}\n",
        );
        let e = crate::config::daemon::DaemonConfig::load(d).expect_err("bad schedule");
        assert_eq!(e.path(), d.join("config.d/20-b.yaml"));
        assert_eq!(e.key(), Some("schedule"));
        assert!(
            e.to_string().contains("second: value 60 out of range 0-59"),
            "{e}"
        );
        // The zone set in another file than the expression is still the job's zone.
        write(
            "config.d/20-b.yaml",
            "jobs:\n  b: {command: [x], schedule: '0 9 * * * 0'}\n",
        );
        write(
            "config.d/30-tz.yaml",
            "jobs:\n  b: {schedule_timezone: Asia/Tokyo}\n",
        );
        let c = crate::config::daemon::DaemonConfig::load(d).expect("valid");
        let parsed = c.jobs["b"].parsed_schedule.as_ref().expect("parsed");
        assert_eq!(parsed.time_zone(), chrono_tz::Tz::Asia__Tokyo);
    }

    #[test]
    fn command_and_taskdir() {
        let e = err("jobs:\n  j: {command: [x], taskdir: t}\n");
        assert_eq!(
            e.to_string(),
            "/etc/runner/runner.yaml:2:21: job \"j\": key \"taskdir\": command and taskdir are mutually exclusive; keep one"
        );
        let e = err("jobs:\n  j: {schedule: '@daily'}\n");
        assert_eq!(e.key(), Some("command"));
        assert!(
            e.to_string()
                .contains("job \"j\": key \"command\": a job needs a command"),
            "{e}"
        );
        let e = err("jobs:\n  j: {command: [x], config: c.ini}\n");
        assert_eq!(e.key(), Some("config"));
        let e = err("jobs:\n  j: {taskdir: t, command_append_run: true}\n");
        assert_eq!(e.key(), Some("command_append_run"));
    }

    #[test]
    fn bad_keys_types_and_values_name_job_and_key() {
        let e = err("jobs:\n  backup: {command: [x], scedule: '@daily'}\n");
        assert_eq!(
            e.to_string(),
            "/etc/runner/runner.yaml:2:26: job \"backup\": unknown key \"scedule\""
        );
        assert_eq!(e.hint().as_deref(), Some("did you mean \"schedule\"?"));

        let e = err("jobs:\n  backup: {command: [x], concurrent_runs: [1]}\n");
        assert_eq!(
            e.to_string(),
            "/etc/runner/runner.yaml:2:43: job \"backup\": key \"concurrent_runs\": expected a bool, found a list"
        );

        let e = err("jobs:\n  backup: {command: [x], schedule_timezone: Europe/Pari}\n");
        assert_eq!(
            e.to_string(),
            "/etc/runner/runner.yaml:2:45: job \"backup\": key \"schedule_timezone\": unknown time zone \"Europe/Pari\"; did you mean \"Europe/Paris\"?"
        );
        let e = err("jobs:\n  backup: {command: [x], schedule_timezone: europe/paris}\n");
        assert!(
            e.to_string().ends_with("did you mean \"Europe/Paris\"?"),
            "{e}"
        );
        let e = err("jobs:\n  backup: {command: [x], schedule_timezone: Nowhere/Special}\n");
        assert!(e.to_string().contains("use an IANA name"), "{e}");

        let e = err("jobs:\n  backup: {command: [x], catch_up: onse}\n");
        assert!(
            e.to_string().contains("key \"catch_up\": \"onse\" is not"),
            "{e}"
        );
        let e = err("jobs:\n  backup: {command: [x], concurrency_groups: [a/b]}\n");
        assert!(
            e.to_string()
                .contains("key \"concurrency_groups\": \"a/b\" is not a valid"),
            "{e}"
        );
        let e = err("jobs:\n  backup: {command: [x], after: fetched}\n");
        assert!(
            e.to_string()
                .contains("key \"after\": expected a list of strings, found a string"),
            "{e}"
        );
        let e = err("jobs:\n  backup: {command: [x], with_params: [1]}\n");
        assert!(
            e.to_string()
                .contains("key \"with_params\": expected a mapping"),
            "{e}"
        );
        let e = err("jobs:\n  backup: {command: [x], max_execution: 0}\n");
        assert_eq!(e.key(), Some("max_execution"));
        let e = err("jobs:\n  backup: [x]\n");
        assert!(
            e.to_string()
                .contains("key \"jobs\": expected a mapping, found a list"),
            "{e}"
        );
        assert!(matches!(e.scope(), Scope::Job { name, .. } if name == "backup"));
    }

    #[test]
    fn keys_few_jobs_set_cost_the_others_nothing() {
        let jobs = jobs(
            "jobs:\n  plain: {command: [x], schedule: '@daily', schedule_timezone: US/Eastern}\n\
             \x20 rich: {command: [x], after: [e]}\n  grouped: {command: [x], job_group: g}\n",
        )
        .expect("loads");
        assert!(jobs["plain"].rare.is_none());
        assert!(jobs["rich"].rare.is_some() && jobs["grouped"].rare.is_some());
        assert_eq!(jobs["rich"].after(), ["e"]);
        assert_eq!(jobs["grouped"].job_group(), Some("g"));
        // A link's name is kept as written, not replaced by the zone it links to.
        assert_eq!(
            jobs["plain"].schedule_timezone.map(|tz| tz.name()),
            Some("US/Eastern")
        );
        // Ten thousand jobs are kept by a large daemon: each byte here is 10 kB there.
        #[cfg(target_pointer_width = "64")]
        assert!(
            std::mem::size_of::<Job>() <= 200,
            "Job is {} bytes",
            std::mem::size_of::<Job>()
        );
    }

    #[test]
    fn timezones_parse() {
        let jobs = jobs("jobs:\n  j: {command: [x], schedule: '0 3 * * *', schedule_timezone: America/New_York}\n")
            .expect("loads");
        assert_eq!(
            jobs["j"].schedule_timezone.map(|tz| tz.name()),
            Some("America/New_York")
        );
        assert_eq!(jobs["j"].schedule.as_deref(), Some("0 3 * * *"));
    }
}
