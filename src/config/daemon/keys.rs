//! Which keys a daemon configuration may hold, and what becomes of the others.
//!
//! dsari's loader takes the keys it knows and passes over every other one, so dsari
//! configurations carry notes such as `description:` that mean nothing to either program.
//! Those are a warning naming file, job and key, and the configuration runs. A key that is
//! a near miss of a known one (`schedul`) is a typo whose setting would be lost without a
//! word: that stays an error, with a "did you mean". This pass runs over the merged tree
//! before anything is read, and takes the ignored keys out, so the typed readers only ever
//! see known keys.

use std::collections::BTreeMap;

use super::job::JOB_KEYS;
use super::tree::{Node, Value};
use crate::config::error::{ConfigError, ErrorKind, Scope};
use crate::config::near_miss::suggest;

/// The top-level keys: dsari's (its `build_base` and what its loader and dsari-render
/// read), then runner's own.
pub(crate) const TOP_KEYS: &[&str] = &[
    "jobs",
    "job_groups",
    "concurrency_groups",
    "environment",
    "data_dir",
    "database",
    "shutdown_kill_runs",
    "shutdown_kill_grace",
    "config_d",
    "template_dir",
    "report_html_gz",
    "report_run_output_start",
    "report_run_output_end",
    "report_output_limit",
];

/// The keys of `database`: dsari's for each of its backends (SQLite `file`, PostgreSQL
/// `dsn`, MySQL `connection`, MongoDB `uri`, `connection` and `database`).
pub(crate) const DATABASE_KEYS: &[&str] = &["type", "file", "dsn", "connection", "uri", "database"];

/// The keys of a `concurrency_groups` entry.
pub(crate) const GROUP_KEYS: &[&str] = &["max"];

/// Takes the unknown keys out of `root` (the merged top-level mapping), each with one
/// warning in `warnings`; fails on the first near miss of a known key.
pub(crate) fn sift(
    root: &mut BTreeMap<String, Node>,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    sift_map(root, TOP_KEYS, &Scope::Top, "", warnings)?;
    if let Some(Value::Map(db)) = root.get_mut("database").map(|n| &mut n.value) {
        sift_map(db, DATABASE_KEYS, &Scope::Top, "database.", warnings)?;
    }
    if let Some(Value::Map(groups)) = root.get_mut("concurrency_groups").map(|n| &mut n.value) {
        for (name, node) in groups.iter_mut() {
            if let Value::Map(group) = &mut node.value {
                let scope = Scope::ConcurrencyGroup(name.clone());
                sift_map(group, GROUP_KEYS, &scope, "", warnings)?;
            }
        }
    }
    if let Some(Value::Map(jobs)) = root.get_mut("jobs").map(|n| &mut n.value) {
        for (name, node) in jobs.iter_mut() {
            if let Value::Map(job) = &mut node.value {
                let scope = Scope::Job {
                    name: name.clone(),
                    group: None,
                };
                sift_map(job, JOB_KEYS, &scope, "", warnings)?;
            }
        }
    }
    if let Some(Value::Map(groups)) = root.get_mut("job_groups").map(|n| &mut n.value) {
        let mut known = JOB_KEYS.to_vec();
        known.push("job_names");
        for (name, node) in groups.iter_mut() {
            if let Value::Map(template) = &mut node.value {
                let scope = Scope::JobGroup(name.clone());
                sift_map(template, &known, &scope, "", warnings)?;
            }
        }
    }
    Ok(())
}

fn sift_map(
    map: &mut BTreeMap<String, Node>,
    known: &[&'static str],
    scope: &Scope,
    prefix: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let unknown: Vec<String> = map
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .cloned()
        .collect();
    for key in unknown {
        let Some(node) = map.remove(&key) else {
            continue;
        };
        let suggestion = suggest(&key, known);
        let error = ConfigError::new(
            &node.origin.path,
            scope.clone(),
            ErrorKind::UnknownKey {
                key: format!("{prefix}{key}"),
                suggestion,
            },
        )
        .at(Some(node.key_at));
        if suggestion.is_some() {
            return Err(error);
        }
        warnings.push(format!("{error}, ignored (dsari ignores it too)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::daemon::tree::{Format, SourceFile, parse};
    use std::path::PathBuf;
    use std::sync::Arc;

    fn sifted(yaml: &str) -> Result<(BTreeMap<String, Node>, Vec<String>), ConfigError> {
        let origin = Arc::new(SourceFile {
            path: PathBuf::from("/etc/runner/config.d/10-x.yaml"),
            format: Format::Yaml,
        });
        let Value::Map(mut root) = parse(yaml, &origin).expect("parses").value else {
            panic!("a mapping");
        };
        let mut warnings = Vec::new();
        sift(&mut root, &mut warnings)?;
        Ok((root, warnings))
    }

    #[test]
    fn every_key_dsari_knows_is_known() {
        // dsari 2.0's config.py (build_base, build_job, build_concurrency_groups) and
        // database.py.
        let (_, warnings) = sifted(
            "data_dir: /d\ntemplate_dir: /t\nreport_html_gz: true\nreport_run_output_start: 10\n\
             report_run_output_end: 20\nshutdown_kill_runs: true\nshutdown_kill_grace: 5\n\
             environment: {A: b}\ndatabase: {type: sqlite3, file: /x, dsn: y, connection: {}, uri: z, database: w}\n\
             concurrency_groups: {g: {max: 2}}\nconfig_d: /c\n\
             jobs:\n  j:\n    command: [x]\n    schedule: '@daily'\n    schedule_timezone: UTC\n\
             \x20   max_execution: 5\n    max_execution_grace: 5\n    environment: {}\n\
             \x20   render_reports: false\n    command_append_run: true\n    jenkins_environment: true\n\
             \x20   job_group: g\n    concurrent_runs: true\n    concurrency_groups: [g]\n\
             job_groups:\n  jg:\n    job_names: [a]\n    command: [x]\n",
        )
        .expect("all known");
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn other_keys_are_a_warning_naming_file_job_and_key_and_are_dropped() {
        let (root, warnings) = sifted(
            "notify_email: a@b\njobs:\n  backup:\n    command: [x]\n    description: nightly\n\
             job_groups:\n  g:\n    job_names: [a]\n    command: [x]\n    notes: hi\n\
             concurrency_groups:\n  c:\n    max: 1\n    comment: x\n",
        )
        .expect("warnings only");
        assert_eq!(
            warnings,
            [
                "/etc/runner/config.d/10-x.yaml:1:1: unknown key \"notify_email\", ignored (dsari ignores it too)",
                "/etc/runner/config.d/10-x.yaml:14:5: concurrency group \"c\": unknown key \"comment\", ignored (dsari ignores it too)",
                "/etc/runner/config.d/10-x.yaml:5:5: job \"backup\": unknown key \"description\", ignored (dsari ignores it too)",
                "/etc/runner/config.d/10-x.yaml:10:5: job group \"g\": unknown key \"notes\", ignored (dsari ignores it too)",
            ]
        );
        assert!(!root.contains_key("notify_email"));
        let Value::Map(jobs) = &root["jobs"].value else {
            panic!("jobs");
        };
        let Value::Map(backup) = &jobs["backup"].value else {
            panic!("backup");
        };
        assert!(!backup.contains_key("description"));
    }

    #[test]
    fn a_near_miss_stays_an_error_with_a_hint() {
        for (yaml, message, hint) in [
            (
                "jobs:\n  j:\n    command: [x]\n    schedul: '@daily'\n",
                "job \"j\": unknown key \"schedul\"",
                "\"schedule\"",
            ),
            ("job: {}\n", "unknown key \"job\"", "\"jobs\""),
            (
                "database: {fiel: x}\n",
                "unknown key \"database.fiel\"",
                "\"file\"",
            ),
            (
                "report_run_output_stat: 1\n",
                "unknown key \"report_run_output_stat\"",
                "\"report_run_output_start\"",
            ),
        ] {
            let e = sifted(yaml).expect_err(yaml);
            assert!(e.to_string().ends_with(message), "{e}");
            assert!(e.hint().expect("a hint").contains(hint), "{:?}", e.hint());
        }
    }
}
