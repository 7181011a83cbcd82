//! The daemon configuration as a whole: top-level keys, concurrency groups, the database.
//!
//! `DaemonConfig::load` reads the files (see `source`), then checks every key, so that every
//! configuration error is found before the daemon schedules anything, and a reload (SIGHUP)
//! can keep the old configuration when the new one is bad.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::cell::RefCell;

use serde::de::IgnoredAny;

use super::de::{self, Ctx};
use super::job::Job;
use super::job_groups::build_jobs;
use super::source;
use super::tree::{Node, Value};
use crate::config::error::{ConfigError, Scope};

/// A loaded, checked daemon configuration.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DaemonConfig {
    /// The path given to `--config` (a file or a directory).
    pub(crate) path: PathBuf,
    /// Every file that was read, in merge order.
    pub(crate) files: Vec<PathBuf>,
    /// `data_dir` as configured (resolved against its file's directory), for
    /// `state::resolve(flag, configured_data_dir)` to apply the contract's precedence.
    pub(crate) configured_data_dir: Option<PathBuf>,
    /// Where runs are recorded.
    pub(crate) database: Database,
    /// The jobs by name, `job_groups` already expanded.
    pub(crate) jobs: BTreeMap<String, Job>,
    /// Every concurrency group a job names, declared or implicit, by name.
    pub(crate) concurrency_groups: BTreeMap<String, ConcurrencyGroup>,
    /// Variables for every run, below the job's own.
    pub(crate) environment: BTreeMap<String, String>,
    /// On SIGTERM/SIGINT, stop running runs (true) or let them finish (false, dsari's default).
    pub(crate) shutdown_kill_runs: bool,
    /// With `shutdown_kill_runs`, the time between SIGTERM and SIGKILL; `None` uses each job's
    /// `max_execution_grace`.
    pub(crate) shutdown_kill_grace: Option<Duration>,
    /// dsari-render's template override directory; kept for the report writer.
    pub(crate) template_dir: Option<PathBuf>,
    /// dsari-render's gzip switch; kept for the report writer.
    pub(crate) report_html_gz: bool,
    /// dsari-render's output size limit in bytes (0: none); kept for the report writer.
    pub(crate) report_output_limit: u64,
    /// Non-fatal oddities, each worth one warning in the log.
    pub(crate) warnings: Vec<String>,
}

/// A concurrency group: at most `max` runs of its jobs at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConcurrencyGroup {
    /// The group's name, valid as for jobs.
    pub(crate) name: String,
    /// How many runs may hold the group at once; at least 1.
    pub(crate) max: usize,
    /// True when a job names the group but `concurrency_groups` does not declare it; dsari
    /// then creates it with `max: 1` (doc/concurrency.md), and so does runner.
    pub(crate) is_implicit: bool,
}

/// The `database` key: dsari's SQLite form, or its PostgreSQL form (`type: postgresql`, `dsn`).
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Database {
    /// `database.file`, resolved against its file's directory; `None` for the default.
    pub(crate) file: Option<PathBuf>,
    /// `database.dsn` with `type: postgresql`: the fleet's database (section 13). It may
    /// hold a password, so it is never printed (see the `Debug` below).
    pub(crate) dsn: Option<String>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("file", &self.file)
            .field("dsn", &self.dsn.as_ref().map(|_| "(hidden)"))
            .finish()
    }
}

impl DaemonConfig {
    /// Loads and checks the configuration at `path`: a YAML or JSON file, or a directory with
    /// `runner.yaml`/`runner.json` (or `dsari.yaml`/`dsari.json`) and `config.d/`.
    pub(crate) fn load(path: &Path) -> Result<DaemonConfig, ConfigError> {
        // Relative paths inside resolve against the configuration's directory; runs work
        // in their own directories, so those must be absolute from here on.
        let path = &std::path::absolute(path).map_err(|e| ConfigError::io(path, e))?;
        let sources = source::read(path)?;
        let warnings = RefCell::new(sources.warnings);
        let root = Node {
            value: Value::Map(sources.root),
            origin: sources.main,
            at: Default::default(),
            key_at: Default::default(),
        };
        let ctx = Ctx {
            scope: Scope::Top,
            warnings: &warnings,
        };
        let top: TopKeys = de::read(&root, "", &ctx)?;
        let configured_data_dir = de::path(&root, &Scope::Top, "data_dir", top.data_dir)?;
        let template_dir = de::path(&root, &Scope::Top, "template_dir", top.template_dir)?;
        let database = database(&root, top.database)?;
        let mut concurrency_groups =
            declared_groups(de::entry(&root, "concurrency_groups"), &warnings)?;
        let jobs = build_jobs(
            de::entry(&root, "jobs"),
            de::entry(&root, "job_groups"),
            &warnings,
        )?;
        let mut warnings = warnings.into_inner();

        for job in jobs.values() {
            for group in job.concurrency_groups() {
                if !concurrency_groups.contains_key(group) {
                    warnings.push(format!(
                        "job \"{}\": concurrency group \"{group}\" is not declared; it admits one run at a time",
                        job.name
                    ));
                    concurrency_groups.insert(
                        group.clone(),
                        ConcurrencyGroup {
                            name: group.clone(),
                            max: 1,
                            is_implicit: true,
                        },
                    );
                }
            }
        }

        Ok(DaemonConfig {
            path: path.to_owned(),
            files: sources.files,
            configured_data_dir,
            database,
            jobs,
            concurrency_groups,
            environment: top.environment,
            shutdown_kill_runs: top.shutdown_kill_runs,
            shutdown_kill_grace: top.shutdown_kill_grace,
            template_dir,
            report_html_gz: top.report_html_gz,
            report_output_limit: top.report_output_limit.unwrap_or(0),
            warnings,
        })
    }
}

/// The top-level keys: dsari's (its `build_base`, and what its loader and dsari-render read),
/// then runner's own. `jobs`, `job_groups` and `concurrency_groups` are read entry by entry,
/// `config_d` by `source`.
#[derive(serde::Deserialize)]
struct TopKeys {
    #[serde(default)]
    #[allow(dead_code)]
    jobs: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    job_groups: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    concurrency_groups: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    config_d: Option<IgnoredAny>,
    #[serde(default, deserialize_with = "de::environment")]
    environment: BTreeMap<String, String>,
    data_dir: Option<String>,
    database: Option<DatabaseKeys>,
    #[serde(default)]
    shutdown_kill_runs: bool,
    #[serde(default, deserialize_with = "de::duration")]
    shutdown_kill_grace: Option<Duration>,
    template_dir: Option<String>,
    #[serde(default)]
    report_html_gz: bool,
    report_output_limit: Option<u64>,
    // dsari-render's, for its run pages; checked as dsari checks them, not used yet.
    #[allow(dead_code)]
    report_run_output_start: Option<u64>,
    #[allow(dead_code)]
    report_run_output_end: Option<u64>,
}

/// The keys of `database`: dsari's for each of its backends (SQLite `file`, PostgreSQL
/// `dsn`, MySQL `connection`, MongoDB `uri`, `connection` and `database`).
#[derive(serde::Deserialize)]
struct DatabaseKeys {
    #[serde(rename = "type")]
    kind: Option<String>,
    file: Option<String>,
    dsn: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    connection: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    uri: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    database: Option<IgnoredAny>,
}

/// `database`: `type` is `sqlite3` (dsari's default) or `postgresql` with a `dsn`.
fn database(root: &Node, keys: Option<DatabaseKeys>) -> Result<Database, ConfigError> {
    let (Some(keys), Some(node)) = (keys, de::entry(root, "database")) else {
        return Ok(Database::default());
    };
    let bad = |key: &str, reason: String| de::blame(node, &Scope::Top, key, true, reason);
    let postgres = match keys.kind.as_deref() {
        None | Some("sqlite3") => false,
        Some("postgresql") => true,
        Some(kind) => {
            return Err(bad(
                "database.type",
                format!("runner records runs in SQLite or PostgreSQL; \"{kind}\" is not supported"),
            ));
        }
    };
    let file = de::path(node, &Scope::Top, "database.file", keys.file)?;
    // dsari reads `dsn` only with `type: postgresql`; so does runner.
    let dsn = match (postgres, keys.dsn) {
        (true, None) => {
            return Err(bad(
                "database.dsn",
                "type postgresql needs a dsn (a postgresql:// URL or key=value pairs)".to_owned(),
            ));
        }
        (true, dsn) => dsn,
        (false, _) => None,
    };
    Ok(Database { file, dsn })
}

/// The `concurrency_groups` mapping: each group takes only `max`, a whole number of at
/// least 1 (dsari's default 1).
fn declared_groups(
    node: Option<&Node>,
    warnings: &RefCell<Vec<String>>,
) -> Result<BTreeMap<String, ConcurrencyGroup>, ConfigError> {
    #[derive(serde::Deserialize)]
    struct GroupKeys {
        max: Option<u64>,
    }
    let mut out = BTreeMap::new();
    for (name, node) in de::mapping(node, "concurrency_groups")? {
        let scope = Scope::ConcurrencyGroup(name.clone());
        de::check_name(name, node, &scope)?;
        let ctx = Ctx {
            scope: scope.clone(),
            warnings,
        };
        let keys: GroupKeys = de::read(node, "concurrency_groups", &ctx)?;
        let max = match keys.max {
            None => 1,
            Some(0) => {
                return Err(de::blame(
                    node,
                    &scope,
                    "max",
                    true,
                    "must be at least 1, or no run could start",
                ));
            }
            Some(n) => {
                usize::try_from(n).map_err(|_| de::blame(node, &scope, "max", true, "too large"))?
            }
        };
        out.insert(
            name.clone(),
            ConcurrencyGroup {
                name: name.clone(),
                max,
                is_implicit: false,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::daemon::job::CatchUp;
    use std::fs;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(&path, text).expect("write");
        path
    }

    fn load_text(name: &str, text: &str) -> Result<DaemonConfig, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), name, text);
        DaemonConfig::load(&path)
    }

    // Examples from dsari's documentation (see testdata/README.md for where each comes from).
    const DSARI_SAMPLE_YAML: &str = include_str!("testdata/dsari-sample.yaml");
    const DSARI_SAMPLE_JSON: &str = include_str!("testdata/dsari-sample.json");
    const DSARI_CONCURRENCY: &str = include_str!("testdata/dsari-concurrency-2.json");
    const DSARI_JOB_GROUPS: &str = include_str!("testdata/dsari-job-groups.json");
    const DSARI_JOB_GROUPS_EXPANDED: &str = include_str!("testdata/dsari-job-groups-expanded.json");
    const DSARI_ENVIRONMENT: &str = include_str!("testdata/dsari-environment-job.json");
    const DSARI_DATABASE: &str = include_str!("testdata/dsari-database.json");
    const DSARI_GETTING_STARTED: &str = include_str!("testdata/dsari-getting-started.json");
    const DSARI_ALL_OPTIONS: &str = include_str!("testdata/dsari-all-options.json");
    const DSARI_CONCURRENCY_UNGROUPED: &str = include_str!("testdata/dsari-concurrency-1.json");
    const DSARI_CONCURRENCY_TWO_GROUPS: &str = include_str!("testdata/dsari-concurrency-3.json");
    const DSARI_ENVIRONMENT_GLOBAL: &str = include_str!("testdata/dsari-environment-global.json");

    #[test]
    fn dsari_sample_loads_in_both_syntaxes() {
        let yaml = load_text("dsari.yaml", DSARI_SAMPLE_YAML).expect("yaml");
        let json = load_text("dsari.json", DSARI_SAMPLE_JSON).expect("json");
        for c in [&yaml, &json] {
            assert!(c.shutdown_kill_runs);
            let job = &c.jobs["sample-job"];
            assert_eq!(
                job.command.as_deref(),
                Some(&["/usr/bin/env".to_owned()][..])
            );
            assert_eq!(job.schedule.as_deref(), Some("H/5 * * * *"));
            assert_eq!(job.concurrency_groups(), ["sample-group"]);
            assert_eq!(c.concurrency_groups["sample-group"].max, 1);
            assert!(!c.concurrency_groups["sample-group"].is_implicit);
            assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        }
        assert_eq!(yaml.jobs, json.jobs);
        assert_eq!(yaml.concurrency_groups, json.concurrency_groups);
    }

    #[test]
    fn dsari_concurrency_example_declares_groups_implicitly() {
        let c = load_text("dsari.json", DSARI_CONCURRENCY).expect("loads");
        assert_eq!(c.jobs.len(), 5);
        assert_eq!(c.concurrency_groups["host-a_group"].max, 2);
        let b = &c.concurrency_groups["host-b_group"];
        assert_eq!((b.max, b.is_implicit), (1, true));
        assert_eq!(
            c.warnings.len(),
            1,
            "one warning per group: {:?}",
            c.warnings
        );
        assert!(c.warnings[0].contains("\"host-b_group\" is not declared"));
    }

    #[test]
    fn dsari_job_groups_example_equals_its_expansion() {
        let grouped = load_text("dsari.json", DSARI_JOB_GROUPS).expect("groups");
        let expanded = load_text("dsari.json", DSARI_JOB_GROUPS_EXPANDED).expect("expanded");
        assert_eq!(grouped.jobs, expanded.jobs);
        assert_eq!(
            grouped.jobs["sample-job-2"].job_group(),
            Some("sample-jobs")
        );
    }

    #[test]
    fn dsari_concurrency_examples_load() {
        let c = load_text("dsari.json", DSARI_CONCURRENCY_UNGROUPED).expect("ungrouped");
        assert_eq!(
            c.jobs["job2"].command.as_deref(),
            Some(&["/bin/sleep".to_owned(), "90".to_owned()][..])
        );
        assert!(c.concurrency_groups.is_empty());
        let c = load_text("dsari.json", DSARI_CONCURRENCY_TWO_GROUPS).expect("two groups");
        assert_eq!(
            c.jobs["job5"].concurrency_groups(),
            ["host-a_group", "host-b_group"]
        );
        assert_eq!(c.concurrency_groups["host-b_group"].max, 1);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn other_dsari_examples_load() {
        let c = load_text("dsari.json", DSARI_ENVIRONMENT_GLOBAL).expect("global environment");
        assert_eq!(
            c.environment["PATH"],
            "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
        );

        let c = load_text("dsari.json", DSARI_ENVIRONMENT).expect("environment");
        assert_eq!(c.environment["INSTALLATION_LOCATION"], "dc-west");
        assert_eq!(
            c.jobs["example_job"].environment()["JOB_CONTACT"],
            "Jane User <jane@example.com>"
        );

        let c = load_text("dsari.json", DSARI_DATABASE).expect("database");
        assert!(c.jobs.is_empty());
        assert_eq!(
            c.database.file,
            Some(PathBuf::from("/path/to/dsari.sqlite3"))
        );

        let c = load_text("dsari.json", DSARI_GETTING_STARTED).expect("getting started");
        assert_eq!(
            c.jobs["sample-job"].schedule.as_deref(),
            Some("*/5 * * * *")
        );

        let c = load_text("dsari.json", DSARI_ALL_OPTIONS).expect("all options");
        assert_eq!(
            c.configured_data_dir,
            Some(PathBuf::from("/path/to/data/dir"))
        );
        assert_eq!(c.shutdown_kill_grace, Some(Duration::from_secs(5)));
        assert_eq!(
            c.template_dir,
            Some(PathBuf::from("/path/to/custom/templates"))
        );
        let j = &c.jobs["sample-job"];
        assert!(j.command_append_run && j.jenkins_environment && j.concurrent_runs);
        assert!(!j.render_reports);
        assert_eq!(j.max_execution(), Some(Duration::from_secs(300)));
        assert_eq!(j.max_execution_grace, Duration::from_secs(60));
        assert_eq!(j.job_group(), Some("sample-job"));
        assert_eq!(j.catch_up, CatchUp::None);
        assert!(c.concurrency_groups["group-b"].is_implicit);
    }

    #[test]
    fn a_dsari_directory_of_every_example_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        write(d, "dsari.yaml", DSARI_SAMPLE_YAML);
        write(d, "dsari.json", DSARI_SAMPLE_JSON);
        write(d, "config.d/concurrency.json", DSARI_CONCURRENCY_TWO_GROUPS);
        write(d, "config.d/groups.json", DSARI_JOB_GROUPS);
        write(d, "config.d/environment.json", DSARI_ENVIRONMENT);
        write(d, "config.d/database.json", DSARI_DATABASE);
        let c = DaemonConfig::load(d).expect("loads");
        assert_eq!(c.jobs.len(), 1 + 5 + 2 + 1);
        assert_eq!(c.files.len(), 6);
    }

    #[test]
    fn a_dsari_directory_with_config_d() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        write(d, "dsari.yaml", DSARI_SAMPLE_YAML);
        write(
            d,
            "config.d/10-more.yaml",
            "jobs:\n  more: {command: [a], schedule: '@daily'}\n",
        );
        write(
            d,
            "config.d/20-more.yaml",
            "jobs:\n  more: {schedule: '@weekly'}\n",
        );
        write(
            d,
            "config.d/00-last.json",
            r#"{"jobs": {"more": {"schedule": "@hourly"}}}"#,
        );
        let c = DaemonConfig::load(d).expect("loads");
        assert_eq!(c.jobs.len(), 2);
        assert_eq!(c.jobs["more"].schedule.as_deref(), Some("@hourly"));
        assert_eq!(c.files.len(), 4);
        assert_eq!(c.path, d);
    }

    #[test]
    fn errors_name_the_config_d_file_that_set_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        write(d, "dsari.yaml", DSARI_SAMPLE_YAML);
        write(
            d,
            "config.d/50-typo.yaml",
            "jobs:\n  sample-job: {max_execusion: 5}\n",
        );
        let e = DaemonConfig::load(d).expect_err("typo");
        assert_eq!(
            e.to_string(),
            format!(
                "{}:2:16: job \"sample-job\": unknown key \"max_execusion\"",
                d.join("config.d/50-typo.yaml").display()
            )
        );
        assert_eq!(e.hint().as_deref(), Some("did you mean \"max_execution\"?"));

        // A conflict between files is reported against the file that made it.
        write(
            d,
            "config.d/50-typo.yaml",
            "jobs:\n  sample-job: {taskdir: tasks}\n",
        );
        let e = DaemonConfig::load(d).expect_err("both");
        assert_eq!(e.path(), d.join("config.d/50-typo.yaml"));
        assert_eq!(e.key(), Some("taskdir"));
    }

    #[test]
    fn top_level_errors() {
        let e = load_text("r.yaml", "job:\n  a: {command: [x]}\n").expect_err("typo");
        assert!(
            e.to_string().ends_with("r.yaml:1:1: unknown key \"job\""),
            "{e}"
        );
        assert_eq!(e.hint().as_deref(), Some("did you mean \"jobs\"?"));

        let e = load_text("r.yaml", "shutdown_kill_runs: 3\n").expect_err("type");
        assert!(
            e.to_string()
                .ends_with("key \"shutdown_kill_runs\": expected a bool, found a number"),
            "{e}"
        );

        let c = load_text(
            "r.yaml",
            "database: {type: postgresql, dsn: 'host=h password=pw'}\n",
        )
        .expect("dsari's PostgreSQL form");
        assert_eq!(c.database.dsn.as_deref(), Some("host=h password=pw"));
        assert!(!format!("{:?}", c.database).contains("pw"), "never shown");
        let e = load_text("r.yaml", "database: {type: postgresql}\n").expect_err("no dsn");
        assert!(e.to_string().contains("needs a dsn"), "{e}");
        let e = load_text("r.yaml", "database: {type: mysql}\n").expect_err("mysql");
        assert!(
            e.to_string()
                .contains("key \"database.type\": runner records runs in SQLite or PostgreSQL"),
            "{e}"
        );
        let e = load_text("r.yaml", "database: {type: sqlite3, fiel: x}\n").expect_err("typo");
        assert!(
            e.to_string().ends_with("unknown key \"database.fiel\""),
            "{e}"
        );

        let e = load_text("r.yaml", "concurrency_groups: {g: {max: 0}}\n").expect_err("zero");
        assert!(
            e.to_string().ends_with(
                "concurrency group \"g\": key \"max\": must be at least 1, or no run could start"
            ),
            "{e}"
        );
        let e = load_text("r.yaml", "concurrency_groups: {g: {maxx: 2}}\n").expect_err("typo");
        assert!(
            e.to_string()
                .ends_with("concurrency group \"g\": unknown key \"maxx\""),
            "{e}"
        );
        let e = load_text("r.yaml", "concurrency_groups: {g: {max: 1.5}}\n").expect_err("float");
        assert!(e.to_string().contains("expected a whole number"), "{e}");

        let e = load_text(
            "r.yaml",
            "jobs:\n  a: {command: [x], concurrency_groups: [no/pe]}\n",
        )
        .expect_err("bad group name");
        assert!(
            e.to_string()
                .contains("job \"a\": key \"concurrency_groups\""),
            "{e}"
        );
    }

    #[test]
    fn durations_numeric_and_humantime() {
        let c = load_text(
            "r.yaml",
            "shutdown_kill_grace: 2m\njobs:\n  a: {command: [x], max_execution: 1.5, max_execution_grace: \"30s\"}\n  b: {command: [x], max_execution: 90}\n",
        )
        .expect("loads");
        assert_eq!(c.shutdown_kill_grace, Some(Duration::from_secs(120)));
        assert_eq!(
            c.jobs["a"].max_execution(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(c.jobs["a"].max_execution_grace, Duration::from_secs(30));
        assert_eq!(c.jobs["b"].max_execution(), Some(Duration::from_secs(90)));
        let e = load_text("r.yaml", "shutdown_kill_grace: [1]\n").expect_err("list");
        assert_eq!(e.key(), Some("shutdown_kill_grace"));
    }

    #[test]
    fn relative_paths_resolve_against_their_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        write(
            d,
            "runner.yaml",
            "data_dir: var\ndatabase: {file: db/runs.sqlite3}\njobs:\n  a: {taskdir: tasks/a, config: a.ini}\n",
        );
        write(d, "config.d/b.yaml", "jobs:\n  b: {taskdir: ../tasks/b}\n");
        let c = DaemonConfig::load(d).expect("loads");
        assert_eq!(c.configured_data_dir, Some(d.join("var")));
        assert_eq!(c.database.file, Some(d.join("db/runs.sqlite3")));
        assert_eq!(c.jobs["a"].taskdir(), Some(d.join("tasks/a").as_path()));
        assert_eq!(c.jobs["a"].config(), Some(d.join("a.ini").as_path()));
        assert_eq!(
            c.jobs["b"].taskdir(),
            Some(d.join("config.d/../tasks/b").as_path())
        );
    }

    #[test]
    fn default_data_dir_and_database() {
        let c = load_text("r.yaml", "jobs: {}\n").expect("loads");
        assert_eq!(c.configured_data_dir, None);
        assert_eq!(c.database.file, None);
        assert!(c.jobs.is_empty());
        assert!(!c.shutdown_kill_runs);
        assert_eq!(c.shutdown_kill_grace, None);
    }

    #[test]
    fn null_means_default() {
        let c = load_text(
            "r.yaml",
            "environment:\njobs:\n  a:\n    command: [x]\n    schedule:\n    environment:\n",
        )
        .expect("loads");
        assert!(c.environment.is_empty());
        assert_eq!(c.jobs["a"].schedule, None);
    }

    #[test]
    fn every_key_dsari_knows_is_known() {
        // dsari 2.0's config.py (build_base, build_job, build_concurrency_groups) and
        // database.py.
        let c = load_text(
            "r.yaml",
            "data_dir: /d\ntemplate_dir: /t\nreport_html_gz: true\nreport_run_output_start: 10\n\
             report_run_output_end: 20\nshutdown_kill_runs: true\nshutdown_kill_grace: 5\n\
             environment: {A: b}\ndatabase: {type: sqlite3, file: /x, dsn: y, connection: {}, uri: z, database: w}\n\
             concurrency_groups: {g: {max: 2}}\n\
             jobs:\n  j:\n    command: [x]\n    schedule: '@daily'\n    schedule_timezone: UTC\n\
             \x20   max_execution: 5\n    max_execution_grace: 5\n    environment: {}\n\
             \x20   render_reports: false\n    command_append_run: true\n    jenkins_environment: true\n\
             \x20   job_group: g\n    concurrent_runs: true\n    concurrency_groups: [g]\n\
             job_groups:\n  jg:\n    job_names: [a]\n    command: [x]\n",
        )
        .expect("all known");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn other_keys_are_a_warning_naming_file_line_job_and_key() {
        let c = load_text(
            "r.yaml",
            "notify_email: a@b\njobs:\n  backup:\n    command: [x]\n    description: nightly\n\
             job_groups:\n  g:\n    job_names: [a]\n    command: [x]\n    notes: hi\n\
             concurrency_groups:\n  c:\n    max: 1\n    comment: x\n",
        )
        .expect("warnings only");
        let warnings: Vec<_> = c
            .warnings
            .iter()
            .map(|w| w.rsplit_once("/r.yaml").expect("names the file").1)
            .collect();
        assert_eq!(
            warnings,
            [
                ":1:1: unknown key \"notify_email\", ignored (dsari ignores it too)",
                ":14:5: concurrency group \"c\": unknown key \"comment\", ignored (dsari ignores it too)",
                ":5:5: job \"backup\": unknown key \"description\", ignored (dsari ignores it too)",
                ":10:5: job group \"g\": unknown key \"notes\", ignored (dsari ignores it too)",
            ]
        );
    }

    #[test]
    fn a_near_miss_stays_an_error_with_a_hint() {
        for (yaml, message, hint) in [
            (
                "jobs:\n  j:\n    command: [x]\n    schedul: '@daily'\n",
                ":4:5: job \"j\": unknown key \"schedul\"",
                "\"schedule\"",
            ),
            ("job: {}\n", ":1:1: unknown key \"job\"", "\"jobs\""),
            (
                "database: {fiel: x}\n",
                ":1:12: unknown key \"database.fiel\"",
                "\"file\"",
            ),
            (
                "report_run_output_stat: 1\n",
                ":1:1: unknown key \"report_run_output_stat\"",
                "\"report_run_output_start\"",
            ),
        ] {
            let e = load_text("r.yaml", yaml).expect_err(yaml);
            assert!(e.to_string().ends_with(message), "{e}");
            assert!(e.hint().expect("a hint").contains(hint), "{:?}", e.hint());
        }
        let e = load_text("r.yaml", "data_dir: ''\n").expect_err("empty path");
        assert!(
            e.to_string()
                .ends_with(":1:11: key \"data_dir\": the path is empty"),
            "{e}"
        );
    }

    #[test]
    fn unreadable_path() {
        let e = DaemonConfig::load(Path::new("/nonexistent/runner.yaml")).expect_err("missing");
        assert_eq!(
            e.to_string(),
            "/nonexistent/runner.yaml: cannot read configuration"
        );
    }
}
