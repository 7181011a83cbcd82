//! The `jobs` mapping and the expansion of `job_groups` into more jobs.
//!
//! dsari's job groups (doc/configuration.md, "Job Groups") are templates: every name of
//! `job_names` becomes a job with the group's keys and `job_group` set to the group's name.
//! One job's keys are read by `job`.

use std::collections::BTreeMap;

use super::fields::Table;
use super::job::{JOB_KEYS, Job, build_job};
use super::tree::Node;
use crate::config::error::{ConfigError, ErrorKind, Scope};
use crate::config::names::check_daemon;

/// Builds the jobs of `jobs` and `job_groups`. A name given twice (in both, or in two groups)
/// is an error: dsari silently lets the group win, which hides a mistake.
pub(crate) fn build_jobs(
    jobs: Option<Table>,
    job_groups: Option<Table>,
) -> Result<BTreeMap<String, Job>, ConfigError> {
    let mut out = BTreeMap::new();
    if let Some(jobs) = jobs {
        for (name, node) in jobs.into_entries() {
            let scope = Scope::Job {
                name: name.clone(),
                group: None,
            };
            check_name(&name, &node, scope.clone())?;
            let table = Table::from_node(node, scope, "jobs")?;
            out.insert(name.clone(), build_job(name, table)?);
        }
    }
    let Some(groups) = job_groups else {
        return Ok(out);
    };
    let mut group_of: BTreeMap<String, String> = BTreeMap::new();
    for (group, node) in groups.into_entries() {
        let scope = Scope::JobGroup(group.clone());
        check_name(&group, &node, scope.clone())?;
        let mut template = Table::from_node(node, scope, "job_groups")?;
        let Some((names, names_node)) = template.string_list("job_names")? else {
            return Err(template.bad_key("job_names", "a job group needs job_names"));
        };
        if let Some(node) = template.take("job_group") {
            return Err(template.bad_value(
                &node,
                "job_group",
                "a job group sets job_group to its own name; remove this key",
            ));
        }
        template.check_keys(JOB_KEYS)?;
        let origin = template.origin.clone();
        let at = template.at;
        let entries = template.into_entries();
        for name in names {
            let scope = Scope::Job {
                name: name.clone(),
                group: Some(group.clone()),
            };
            check_name(&name, &names_node, scope.clone())?;
            let clash = if out.contains_key(&name) && !group_of.contains_key(&name) {
                Some("it is also defined under jobs".to_owned())
            } else {
                group_of
                    .get(&name)
                    .map(|other| format!("it is also listed in job group \"{other}\""))
            };
            if let Some(reason) = clash {
                return Err(ConfigError::new(
                    &names_node.origin.path,
                    scope,
                    ErrorKind::BadValue {
                        key: "job_names".to_owned(),
                        reason,
                    },
                )
                .at(Some(names_node.at)));
            }
            let table = Table::new(entries.clone(), scope, origin.clone(), at);
            let mut job = build_job(name.clone(), table)?;
            job.job_group = Some(group.clone());
            group_of.insert(name.clone(), group.clone());
            out.insert(name, job);
        }
    }
    Ok(out)
}

fn check_name(name: &str, node: &Node, scope: Scope) -> Result<(), ConfigError> {
    check_daemon(name).map_err(|reason| {
        ConfigError::new(&node.origin.path, scope, ErrorKind::InvalidName { reason })
            .at(Some(node.key_at))
    })
}

/// For tests: builds the jobs of a YAML document with `jobs` and `job_groups` at the top.
#[cfg(test)]
pub(crate) fn jobs_of(yaml: &str) -> Result<BTreeMap<String, Job>, ConfigError> {
    let origin = std::sync::Arc::new(super::tree::SourceFile {
        path: std::path::PathBuf::from("/etc/runner/runner.yaml"),
        format: super::tree::Format::Yaml,
    });
    let mut top = Table::from_node(super::tree::parse(yaml, &origin)?, Scope::Top, "")?;
    let jobs = top
        .take("jobs")
        .map(|n| Table::from_node(n, Scope::Top, "jobs"))
        .transpose()?;
    let groups = top
        .take("job_groups")
        .map(|n| Table::from_node(n, Scope::Top, "job_groups"))
        .transpose()?;
    build_jobs(jobs, groups)
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
            assert_eq!(j.job_group.as_deref(), Some("sample-jobs"));
            assert_eq!(j.schedule.as_deref(), Some("H H * * *"));
            assert_eq!(j.command.as_deref(), Some(&["job-wrapper".to_owned()][..]));
            assert_eq!(j.environment["A"], "b");
        }
        assert_eq!(jobs["solo"].job_group, None);
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
                "/etc/runner/runner.yaml:2:52: job \"a\" (job group \"g\"): key \"max_execution\""
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
