//! The `jobs` mapping and the expansion of `job_groups` into more jobs.
//!
//! dsari's job groups (doc/configuration.md, "Job Groups") are templates: every name of
//! `job_names` becomes a job with the group's keys and `job_group` set to the group's name.
//! One job's keys are read by `job`.

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::de::{self, Ctx};
use super::job::{Job, JobKeys, build_job};
use super::tree::Node;
use crate::config::error::{ConfigError, ErrorKind, Scope};
use crate::config::names::check_daemon;

/// Builds the jobs of `jobs` and `job_groups`. A name given twice (in both, or in two groups)
/// is an error: dsari silently lets the group win, which hides a mistake.
pub(crate) fn build_jobs(
    jobs: Option<&Node>,
    job_groups: Option<&Node>,
    warnings: &RefCell<Vec<String>>,
) -> Result<BTreeMap<String, Job>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, node) in de::mapping(jobs, "jobs")? {
        let scope = Scope::Job {
            name: name.clone(),
            group: None,
        };
        de::check_name(name, node, &scope)?;
        let ctx = Ctx {
            scope: scope.clone(),
            warnings,
        };
        let keys: JobKeys = de::read(node, "jobs", &ctx)?;
        if let Some(names) = de::entry(node, "job_names").filter(|_| keys.job_names.is_some()) {
            // As dsari does with any key it does not know in a job.
            ctx.ignored(ctx.unknown("job_names".to_owned(), names, None));
        }
        out.insert(name.clone(), build_job(name.clone(), keys, node, &scope)?);
    }
    let mut group_of: BTreeMap<String, String> = BTreeMap::new();
    for (group, node) in de::mapping(job_groups, "job_groups")? {
        let scope = Scope::JobGroup(group.clone());
        de::check_name(group, node, &scope)?;
        let template: JobKeys = de::read(
            node,
            "job_groups",
            &Ctx {
                scope: scope.clone(),
                warnings,
            },
        )?;
        let Some(names) = template.job_names.clone() else {
            return Err(de::blame(
                node,
                &scope,
                "job_names",
                false,
                "a job group needs job_names",
            ));
        };
        if template.job_group.is_some() {
            return Err(de::blame(
                node,
                &scope,
                "job_group",
                true,
                "a job group sets job_group to its own name; remove this key",
            ));
        }
        for name in names {
            let scope = Scope::Job {
                name: name.clone(),
                group: Some(group.clone()),
            };
            let blame = |reason: String| de::blame(node, &scope, "job_names", true, reason);
            if let Err(reason) = check_daemon(&name) {
                let e = blame(String::new());
                return Err(ConfigError::new(
                    e.path(),
                    scope.clone(),
                    ErrorKind::InvalidName { reason },
                )
                .at(e.position()));
            }
            let clash = if out.contains_key(&name) && !group_of.contains_key(&name) {
                Some("it is also defined under jobs".to_owned())
            } else {
                group_of
                    .get(&name)
                    .map(|other| format!("it is also listed in job group \"{other}\""))
            };
            if let Some(reason) = clash {
                return Err(blame(reason));
            }
            let mut job = build_job(name.clone(), template.clone(), node, &scope)?;
            job.set_job_group(group.clone());
            group_of.insert(name.clone(), group.clone());
            out.insert(name, job);
        }
    }
    Ok(out)
}

/// For tests: builds the jobs of a YAML document with `jobs` and `job_groups` at the top.
#[cfg(test)]
pub(crate) fn jobs_of(yaml: &str) -> Result<BTreeMap<String, Job>, ConfigError> {
    let origin = std::sync::Arc::new(super::tree::SourceFile {
        path: std::path::PathBuf::from("/etc/runner/runner.yaml"),
        format: super::tree::Format::Yaml,
    });
    let root = super::tree::parse(yaml, &origin)?;
    let warnings = RefCell::new(Vec::new());
    build_jobs(
        de::entry(&root, "jobs"),
        de::entry(&root, "job_groups"),
        &warnings,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(yaml: &str) -> ConfigError {
        jobs_of(yaml).expect_err("should fail")
    }

    #[test]
    fn job_groups_expand_into_jobs() {
        let jobs = jobs_of(
            "job_groups:\n  sample-jobs:\n    job_names: [sample-job-1, sample-job-2]\n\
             \x20   command: [job-wrapper]\n    schedule: H H * * *\n    environment: {A: b}\n\
             jobs:\n  solo: {command: [x]}\n",
        )
        .expect("loads");
        assert_eq!(
            jobs.keys().collect::<Vec<_>>(),
            ["sample-job-1", "sample-job-2", "solo"]
        );
        for name in ["sample-job-1", "sample-job-2"] {
            let j = &jobs[name];
            assert_eq!(j.name, name);
            assert_eq!(j.job_group(), Some("sample-jobs"));
            assert_eq!(j.schedule.as_deref(), Some("H H * * *"));
            assert_eq!(j.command.as_deref(), Some(&["job-wrapper".to_owned()][..]));
            assert_eq!(j.environment()["A"], "b");
        }
        assert_eq!(jobs["solo"].job_group(), None);
    }

    #[test]
    fn job_group_errors() {
        let e = err("job_groups:\n  g: {command: [x]}\n");
        assert_eq!(
            e.to_string(),
            "/etc/runner/runner.yaml:2:3: job group \"g\": key \"job_names\": a job group needs job_names"
        );
        let e = err("job_groups:\n  g: {job_names: [a], command: [x], scheduel: x}\n");
        assert_eq!(
            e.to_string(),
            "/etc/runner/runner.yaml:2:37: job group \"g\": unknown key \"scheduel\""
        );
        let e = err("job_groups:\n  g: {job_names: [a], command: [x], max_execution: soon}\n");
        assert!(
            e.to_string().starts_with(
                "/etc/runner/runner.yaml:2:52: job group \"g\": key \"max_execution\""
            ),
            "{e}"
        );
        let e = err("job_groups:\n  g: {job_names: [a/b], command: [x]}\n");
        assert!(
            e.to_string()
                .contains("job \"a/b\" (job group \"g\"): invalid name"),
            "{e}"
        );
        let e = err("job_groups:\n  g/h: {job_names: [a], command: [x]}\n");
        assert!(
            e.to_string().contains("job group \"g/h\": invalid name"),
            "{e}"
        );
        let e =
            err("jobs:\n  a: {command: [x]}\njob_groups:\n  g: {job_names: [a], command: [x]}\n");
        assert!(
            e.to_string()
                .contains("key \"job_names\": it is also defined under jobs"),
            "{e}"
        );
        let e = err(
            "job_groups:\n  g: {job_names: [a], command: [x]}\n  h: {job_names: [a], command: [y]}\n",
        );
        assert!(
            e.to_string()
                .contains("it is also listed in job group \"g\""),
            "{e}"
        );
        let e = err("job_groups:\n  g: {job_names: [a], command: [x], job_group: other}\n");
        assert_eq!(e.key(), Some("job_group"));
    }
}
