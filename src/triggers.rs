//! Trigger files: `DATA_DIR/trigger/JOB/trigger.json` (or `.yaml`) asks the daemon for a
//! run of JOB, as in dsari.
//!
//! This module is their format: it reads, validates and consumes them, and writes them
//! atomically for `runner trigger`. A malformed file, or one owned by a user other than
//! the daemon's or root, is renamed to `*.invalid` with the reason logged, so it is never
//! retried. The daemon watches for them (`daemon/watch.rs`) and reads them on a thread of
//! their own, never on the one that schedules.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// File names the daemon looks for, in the order it takes them: JSON first.
pub(crate) const NAMES: [&str; 2] = ["trigger.json", "trigger.yaml"];

/// The trigger type of every run a trigger file asks for (dsari's).
pub(crate) const TRIGGER_TYPE: &str = "file";

/// The largest trigger file read: it is recorded as the run's `trigger_data`, and the
/// store should not hold megabytes per run because someone wrote them into a file.
const MAX_FILE_BYTES: u64 = 64 << 10;

/// The longest trigger `type`: it is shown in every run list.
pub(crate) const MAX_TYPE_BYTES: usize = 256;

/// Reads a trigger file of at most `MAX_FILE_BYTES`. Never blocks: [`take`] looks only
/// at regular files, but one swapped for a FIFO after that look is refused here rather
/// than waited on for good.
fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut text = String::new();
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| e.to_string())?;
    if !file.metadata().map_err(|e| e.to_string())?.is_file() {
        return Err("it is not a regular file".to_owned());
    }
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("it is larger than {} KiB", MAX_FILE_BYTES >> 10));
    }
    Ok(text)
}

/// A trigger file's contents (all keys optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct TriggerFile {
    /// Free text for people and scripts (`git`, `manual`), kept in the run's
    /// `trigger_data`; the run's trigger type is always [`TRIGGER_TYPE`].
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<String>,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
    /// Environment of the run; wins over every other source.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) environment: BTreeMap<String, serde_json::Value>,
    /// When to run: epoch seconds or an ISO 8601 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) schedule_time: Option<serde_json::Value>,
    /// The zone of a `schedule_time` without an offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) schedule_timezone: Option<String>,
    /// Any other key: kept as trigger data, as dsari keeps it.
    #[serde(flatten)]
    pub(crate) extra: BTreeMap<String, serde_json::Value>,
}

/// A consumed, valid trigger.
#[derive(Debug, Clone)]
pub(crate) struct Trigger {
    /// The job it asks for.
    pub(crate) job: String,
    /// When the run is due: the file's `schedule_time`, else (as dsari) the time the file
    /// was written, or now if that is in the future.
    pub(crate) schedule_time: DateTime<Utc>,
    /// Environment strings for the run.
    pub(crate) environment: BTreeMap<String, String>,
    /// The file's contents, recorded as the run's `trigger_data`.
    pub(crate) data: serde_json::Value,
}

/// The directory of every job's trigger directory: the runs' `TRIGGER_DIR`, so that a
/// run can trigger another job with `${TRIGGER_DIR}/${OTHER_JOB}/trigger.json`.
pub(crate) fn base_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("trigger")
}

/// The trigger directory of `job`.
pub(crate) fn job_dir(data_dir: &Path, job: &str) -> PathBuf {
    base_dir(data_dir).join(job)
}

/// Creates `DATA_DIR/trigger` (mode 0700: only the daemon's user may ask for runs). The
/// job directories in it are made by whoever asks for a run: `runner trigger`, or a
/// script with `mkdir -p`, as dsari's documentation says.
pub(crate) fn prepare_base(data_dir: &Path) {
    let dir = base_dir(data_dir);
    if let Err(e) = fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
    {
        log::warn!("cannot create trigger directory {}: {e}", dir.display());
    }
}

/// The names of the directories in `DATA_DIR/trigger`: the jobs that may have trigger
/// files (one directory listing, however many jobs are configured).
pub(crate) fn job_dirs(data_dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(base_dir(data_dir)) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

/// Consumes the trigger files of `job`: `trigger.json`, then `trigger.yaml` (dsari takes
/// both when both are there, JSON first). Each valid one is returned and deleted; an
/// unusable one is renamed to `*.invalid` with the reason logged.
pub(crate) fn take(data_dir: &Path, job: &str) -> Vec<Trigger> {
    let dir = job_dir(data_dir, job);
    NAMES
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.is_file())
        .filter_map(|path| take_one(&path, job))
        .collect()
}

fn take_one(path: &Path, job: &str) -> Option<Trigger> {
    match read(path, job) {
        Ok(trigger) => {
            if let Err(e) = fs::remove_file(path) {
                // A trigger that cannot be removed would run again and again.
                log::error!("cannot remove trigger {}: {e}; ignoring it", path.display());
                return None;
            }
            log::info!("trigger {} consumed for job \"{job}\"", path.display());
            Some(trigger)
        }
        Err(reason) => {
            let mut invalid = path.to_owned().into_os_string();
            invalid.push(".invalid");
            log::error!(
                "invalid trigger {}: {reason}; renamed to *.invalid",
                path.display()
            );
            if let Err(e) = fs::rename(path, &invalid) {
                log::error!("cannot rename {}: {e}", path.display());
            }
            None
        }
    }
}

fn read(path: &Path, job: &str) -> Result<Trigger, String> {
    // The link itself: a link someone else planted could point at any root-owned file.
    let meta = fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "it is owned by uid {}, not by the daemon's user ({me}) or root",
            meta.uid()
        ));
    }
    if crate::security::is_enforced(false) {
        crate::security::check(crate::security::Kind::Trigger, path).map_err(|e| e.to_string())?;
    }
    let text = read_bounded(path)?;
    crate::config::nesting::check(&text).map_err(|e| format!("line {}: {e}", e.line))?;
    let file: TriggerFile = if path.extension().is_some_and(|e| e == "yaml") {
        if text.trim().is_empty() {
            TriggerFile::default()
        } else {
            serde_yaml::from_str(&text).map_err(|e| e.to_string())?
        }
    } else {
        serde_json::from_str(&text).map_err(|e| e.to_string())?
    };
    let schedule_time = match &file.schedule_time {
        Some(value) => crate::timestamp::parse(value, file.schedule_timezone.as_deref())?,
        None => {
            let now = Utc::now();
            meta.modified()
                .map(DateTime::<Utc>::from)
                .map_or(now, |written| written.min(now))
        }
    };
    let mut environment = BTreeMap::new();
    for (key, value) in &file.environment {
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            other => {
                return Err(format!(
                    "environment {key}: {other} is not a string or number"
                ));
            }
        };
        environment.insert(key.clone(), text);
    }
    if let Some(kind) = &file.kind
        && (kind.len() > MAX_TYPE_BYTES || kind.chars().any(char::is_control))
    {
        return Err(format!(
            "type must be at most {MAX_TYPE_BYTES} bytes without control characters"
        ));
    }
    let data = serde_json::to_value(&file).map_err(|e| e.to_string())?;
    Ok(Trigger {
        job: job.to_owned(),
        schedule_time,
        environment,
        data,
    })
}

/// Writes a trigger file atomically (temporary name, then rename), so the daemon never
/// reads half a file.
pub(crate) fn write(data_dir: &Path, job: &str, file: &TriggerFile) -> std::io::Result<PathBuf> {
    let dir = job_dir(data_dir, job);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let path = dir.join(NAMES[0]);
    let tmp = dir.join(format!(".trigger.json.{}", std::process::id()));
    let text = serde_json::to_string_pretty(file).map_err(std::io::Error::other)?;
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.sync_all()?;
    drop(out);
    fs::rename(&tmp, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_take_round_trips_and_removes_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = TriggerFile {
            kind: Some("git".to_owned()),
            description: Some("new commit".to_owned()),
            environment: BTreeMap::from([("GIT_COMMIT".to_owned(), serde_json::json!("d170"))]),
            schedule_time: None,
            schedule_timezone: None,
            extra: BTreeMap::from([("commit".to_owned(), serde_json::json!("abc"))]),
        };
        let path = write(dir.path(), "job", &file).expect("write");
        let written = fs::metadata(&path)
            .expect("meta")
            .modified()
            .expect("mtime");
        let trigger = take(dir.path(), "job").pop().expect("valid");
        assert_eq!(trigger.data["type"], "git", "the file's type is data");
        assert_eq!(
            trigger.schedule_time,
            DateTime::<Utc>::from(written),
            "without schedule_time, the time the file was written (as dsari)"
        );
        assert_eq!(trigger.environment["GIT_COMMIT"], "d170");
        assert_eq!(trigger.data["description"], "new commit");
        assert_eq!(
            trigger.data["commit"], "abc",
            "unknown keys are kept as data"
        );
        assert!(!path.exists());
        assert!(take(dir.path(), "job").is_empty());
    }

    #[test]
    fn malformed_trigger_is_renamed_invalid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jobdir = job_dir(dir.path(), "job");
        fs::create_dir_all(&jobdir).expect("mkdir");
        fs::write(jobdir.join("trigger.json"), "{not json").expect("write");
        assert!(take(dir.path(), "job").is_empty());
        assert!(jobdir.join("trigger.json.invalid").exists());
        fs::write(jobdir.join("trigger.yaml"), "environment: [1, 2]\n").expect("write");
        assert!(take(dir.path(), "job").is_empty());
        assert!(jobdir.join("trigger.yaml.invalid").exists());
    }

    #[test]
    fn empty_yaml_and_empty_object_are_plain_triggers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jobdir = job_dir(dir.path(), "job");
        fs::create_dir_all(&jobdir).expect("mkdir");
        fs::write(jobdir.join("trigger.yaml"), "").expect("write");
        assert_eq!(take(dir.path(), "job").len(), 1);
        fs::write(jobdir.join("trigger.json"), "{}").expect("write");
        assert_eq!(take(dir.path(), "job").len(), 1);
    }

    #[test]
    fn json_and_yaml_together_are_both_taken_json_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jobdir = job_dir(dir.path(), "job");
        fs::create_dir_all(&jobdir).expect("mkdir");
        fs::write(jobdir.join("trigger.yaml"), "type: from-yaml\n").expect("write");
        fs::write(jobdir.join("trigger.json"), r#"{"type": "from-json"}"#).expect("write");
        let taken: Vec<_> = take(dir.path(), "job")
            .iter()
            .map(|t| t.data["type"].clone())
            .collect();
        assert_eq!(taken, ["from-json", "from-yaml"]);
        assert!(fs::read_dir(&jobdir).expect("dir").next().is_none());
    }

    #[test]
    fn the_base_directory_is_the_parent_of_every_job_directory() {
        let base = base_dir(Path::new("/var/lib/runner"));
        assert_eq!(base, Path::new("/var/lib/runner/trigger"));
        assert_eq!(
            job_dir(Path::new("/var/lib/runner"), "other"),
            base.join("other")
        );
    }
}
