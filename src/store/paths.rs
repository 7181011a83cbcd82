//! Files named by what a store holds: checked before any is opened or removed.
//!
//! A store is data, and data can be made by hand (or by another program): a job named
//! `../../x`, a run id with a `/`, or a stored output path like `/etc/shadow` would make
//! `runs output`, `runs tail`, the report or retention read (or delete) outside the
//! state directory. Every path a reader builds from a record, or takes from one, goes
//! through here first. Names become one path component each; stored paths must have the
//! exact shape runner writes (`…/runs/JOB/RUN_ID/` for a run's directory,
//! `TASK#N.TRY.log` in it for an attempt's output) and no `.` or `..` anywhere.

use std::path::{Component, Path, PathBuf};

use super::StoreError;
use super::model::RunDetail;

/// The longest name a file system takes for one component.
const NAME_MAX: usize = 255;

/// Why `name` cannot be one path component, if it cannot.
fn component_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name == "." || name == ".." {
        Some("names a directory above or at its place")
    } else if name.contains('/') {
        Some("holds a /")
    } else if name.contains('\0') {
        Some("holds a NUL byte")
    } else if name.len() > NAME_MAX {
        Some("is longer than a file name may be")
    } else {
        None
    }
}

fn unsafe_path(run_id: &str, what: &'static str, value: &str, reason: &str) -> StoreError {
    StoreError::UnsafePath {
        run_id: run_id.to_owned(),
        what,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

/// `base/runs/JOB/RUN_ID`, dsari's layout of a run's directory, once the job name and
/// the run id are each a safe file name.
pub(crate) fn run_dir(base: &Path, job: &str, run_id: &str) -> Result<PathBuf, StoreError> {
    if let Some(reason) = component_problem(job) {
        return Err(unsafe_path(run_id, "job name", job, reason));
    }
    if let Some(reason) = component_problem(run_id) {
        return Err(unsafe_path(run_id, "run id", run_id, reason));
    }
    Ok(base.join("runs").join(job).join(run_id))
}

/// Whether `path` lies below `base`, lexically: each component after `base` is a plain
/// name (no `..` that would climb back out, as `Path::starts_with` alone would allow).
pub(crate) fn is_below(path: &Path, base: &Path) -> bool {
    path.strip_prefix(base).is_ok_and(|rest| {
        rest.components().next().is_some()
            && rest.components().all(|c| matches!(c, Component::Normal(_)))
    })
}

/// Whether `path` is absolute, without `.` or `..`, and ends in `runs/JOB/RUN_ID`.
fn is_run_dir(path: &Path, job: &str, run_id: &str) -> bool {
    let mut components = path.components();
    if components.next() != Some(Component::RootDir) {
        return false;
    }
    let names: Vec<_> = components
        .map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    if names.iter().any(Option::is_none) || names.len() < 3 {
        return false;
    }
    let tail = &names[names.len() - 3..];
    tail[0] == Some("runs".as_ref())
        && tail[1] == Some(job.as_ref())
        && tail[2] == Some(run_id.as_ref())
}

/// Checks every name and path of `detail` that a reader would build a path from or
/// open: the job name, the run id, the task names, the run's output directory and each
/// attempt's output file. The first bad one is the error, naming run, field and value.
pub(crate) fn check_detail(detail: &RunDetail) -> Result<(), StoreError> {
    let run = &detail.run;
    let run_id = run.run_id.as_str();
    run_dir(Path::new("/"), &run.job_name, run_id)?;
    if let Some(dir) = &detail.output_dir
        && !is_run_dir(Path::new(dir), &run.job_name, run_id)
    {
        return Err(unsafe_path(
            run_id,
            "output directory",
            dir,
            "is not the run's own directory (an absolute …/runs/JOB/RUN_ID)",
        ));
    }
    for task in &detail.tasks {
        if let Some(reason) = component_problem(&task.name) {
            return Err(unsafe_path(run_id, "task name", &task.name, reason));
        }
        for attempt in &task.attempts {
            let Some(output) = &attempt.output else {
                continue;
            };
            let path = Path::new(output);
            let expected = format!("{}.{}.log", task.instance, attempt.try_num);
            let in_run_dir = path
                .parent()
                .is_some_and(|dir| is_run_dir(dir, &run.job_name, run_id));
            let named = path
                .file_name()
                .is_some_and(|name| name == expected.as_str());
            if !in_run_dir || !named {
                return Err(unsafe_path(
                    run_id,
                    "output file",
                    output,
                    "is not the attempt's own file in the run's directory",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_one_plain_component() {
        for bad in [
            "",
            ".",
            "..",
            "../../x",
            "a/b",
            "/etc",
            "a\0b",
            &"x".repeat(256),
        ] {
            assert!(component_problem(bad).is_some(), "{bad:?}");
            assert!(run_dir(Path::new("/s"), bad, "r").is_err(), "{bad:?}");
            assert!(run_dir(Path::new("/s"), "j", bad).is_err(), "{bad:?}");
        }
        for good in ["nightly", "..x", "a.b", "é", "-n", &"x".repeat(255)] {
            assert!(component_problem(good).is_none(), "{good:?}");
        }
        assert_eq!(
            run_dir(Path::new("/s"), "j", "r").expect("safe"),
            Path::new("/s/runs/j/r")
        );
    }

    #[test]
    fn below_means_below_without_climbing() {
        assert!(is_below(Path::new("/s/runs/j/r"), Path::new("/s/runs")));
        assert!(!is_below(
            Path::new("/s/runs/../../x"),
            Path::new("/s/runs")
        ));
        assert!(!is_below(Path::new("/s/runs"), Path::new("/s/runs")));
        assert!(!is_below(Path::new("/t/runs/j"), Path::new("/s/runs")));
    }

    #[test]
    fn a_run_dir_has_the_shape_runner_writes() {
        assert!(is_run_dir(Path::new("/var/lib/runner/runs/j/r"), "j", "r"));
        assert!(!is_run_dir(Path::new("var/lib/runner/runs/j/r"), "j", "r"));
        assert!(!is_run_dir(
            Path::new("/var/runs/j/../../etc/runs/j/r/.."),
            "j",
            "r"
        ));
        assert!(!is_run_dir(Path::new("/etc"), "j", "r"));
        assert!(!is_run_dir(Path::new("/s/runs/other/r"), "j", "r"));
        assert!(!is_run_dir(Path::new("/s/logs/j/r"), "j", "r"));
    }
}
