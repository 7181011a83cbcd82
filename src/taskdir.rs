//! Reading a task directory: which files are tasks, what they are called, and why the
//! others are left out.
//!
//! The rules mirror run-parts and Mozilla's runner (see the contract, section 3): every
//! regular file is a task except hidden files, editor backups, package-manager leftovers
//! and the halt task. This module only looks at names and file types; executability and
//! ownership are checked by the plan and the security check.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Suffixes of files that package managers and editors leave behind.
const LEFTOVER_SUFFIXES: &[&str] = &[
    ".dpkg-old",
    ".dpkg-dist",
    ".dpkg-new",
    ".dpkg-tmp",
    ".rpmnew",
    ".rpmsave",
    ".rpmorig",
    ".swp",
];

/// A file that will run as a task.
#[derive(Debug, Clone)]
pub(crate) struct TaskFile {
    /// The file name inside the task directory.
    pub(crate) file_name: String,
    /// Its absolute path.
    pub(crate) path: PathBuf,
    /// The task name derived from the file name.
    pub(crate) name: String,
    /// Its permission bits as the scan found them (a link's target's), so that the plan
    /// needs no second look at each file to tell whether it is executable.
    pub(crate) mode: u32,
}

/// Why a file in the task directory is not a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Exclusion {
    /// The name starts with a dot.
    Hidden,
    /// The name ends with `~`.
    Backup,
    /// A package manager's or editor's leftover (`.dpkg-old`, `.rpmnew`, `.swp`, ...).
    Leftover,
    /// A directory (or a link to one).
    Directory,
    /// Not a regular file (socket, fifo, device).
    NotRegular,
    /// The configured halt task.
    HaltTask,
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Exclusion::Hidden => "hidden file",
            Exclusion::Backup => "backup file",
            Exclusion::Leftover => "package or editor leftover",
            Exclusion::Directory => "directory",
            Exclusion::NotRegular => "not a regular file",
            Exclusion::HaltTask => "halt task",
        })
    }
}

/// The scanned task directory.
#[derive(Debug, Clone)]
pub(crate) struct TaskDir {
    /// The directory, absolute.
    pub(crate) path: PathBuf,
    /// The tasks, in byte order of their file names.
    pub(crate) tasks: Vec<TaskFile>,
    /// Every other entry with the reason it does not run.
    pub(crate) excluded: Vec<(String, Exclusion)>,
    /// The halt task's path, if the file exists.
    pub(crate) halt: Option<PathBuf>,
}

/// A task directory runner refuses to work with.
#[derive(Debug, thiserror::Error)]
pub enum TaskDirError {
    /// The directory could not be listed.
    #[error("cannot read task directory {}", path.display())]
    Unreadable {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Two files derive the same task name, so sections and dependencies would be ambiguous.
    #[error("task files {first:?} and {second:?} in {} both have the task name \"{name}\"", dir.display())]
    DuplicateName {
        /// The directory.
        dir: PathBuf,
        /// The shared name.
        name: String,
        /// The first file (byte order).
        first: String,
        /// The second file.
        second: String,
    },
    /// A file name that is not UTF-8 cannot be named in config sections or records.
    #[error("file name {name:?} in {} is not valid UTF-8", dir.display())]
    NonUtf8Name {
        /// The directory.
        dir: PathBuf,
        /// The name, lossily decoded.
        name: String,
    },
    /// A link whose target does not exist would fail at every attempt.
    #[error("task file {} is a link to nothing", path.display())]
    BrokenLink {
        /// The link.
        path: PathBuf,
    },
}

impl TaskDirError {
    /// Advice printed under the message.
    pub(crate) fn hint(&self) -> Option<String> {
        match self {
            TaskDirError::DuplicateName { .. } => Some(
                "a task name drops the ordering prefix and the extension: rename one of the files"
                    .to_owned(),
            ),
            TaskDirError::BrokenLink { .. } => {
                Some("remove the link or give it a target".to_owned())
            }
            _ => None,
        }
    }
}

/// Derives a task's name: the file name without a leading `digits-` or `digits_` ordering
/// prefix and without its last extension (`10-check_ami.py` is `check_ami`).
pub(crate) fn task_name(file_name: &str) -> String {
    let digits = file_name.bytes().take_while(u8::is_ascii_digit).count();
    let rest = match file_name.as_bytes().get(digits) {
        Some(b'-' | b'_') if digits > 0 && digits + 1 < file_name.len() => &file_name[digits + 1..],
        _ => file_name,
    };
    match rest.rfind('.') {
        Some(dot) if dot > 0 => rest[..dot].to_owned(),
        _ => rest.to_owned(),
    }
}

/// Why `file_name` is skipped by name alone, if it is.
pub(crate) fn excluded_by_name(file_name: &str) -> Option<Exclusion> {
    if file_name.starts_with('.') {
        Some(Exclusion::Hidden)
    } else if file_name.ends_with('~') {
        Some(Exclusion::Backup)
    } else if LEFTOVER_SUFFIXES.iter().any(|s| file_name.ends_with(s)) {
        Some(Exclusion::Leftover)
    } else {
        None
    }
}

impl TaskDir {
    /// Lists `dir` and sorts its entries into tasks and exclusions.
    ///
    /// `halt_task` is a file name in `dir` or a path; that file is never a normal task.
    pub(crate) fn scan(dir: &Path, halt_task: &str) -> Result<TaskDir, TaskDirError> {
        let unreadable = |source| TaskDirError::Unreadable {
            path: dir.to_owned(),
            source,
        };
        let path = std::path::absolute(dir).map_err(unreadable)?;
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&path).map_err(unreadable)? {
            let entry = entry.map_err(unreadable)?;
            let name = entry.file_name();
            match name.into_string() {
                Ok(name) => names.push(name),
                Err(raw) => {
                    return Err(TaskDirError::NonUtf8Name {
                        dir: path,
                        name: raw.to_string_lossy().into_owned(),
                    });
                }
            }
        }
        names.sort();

        let halt_path = path.join(halt_task);
        // The halt task may be named as a file of TASKDIR or as a path (`./halt.sh`,
        // `/etc/runner/tasks.d/halt.sh`); either way, a file of TASKDIR that is it must
        // never run as a normal task.
        let halt_name: Option<String> = match (halt_path.canonicalize(), path.canonicalize()) {
            (Ok(halt), Ok(dir)) if halt.parent() == Some(dir.as_path()) => {
                halt.file_name().map(|n| n.to_string_lossy().into_owned())
            }
            _ => {
                (Path::new(halt_task).parent() == Some(Path::new(""))).then(|| halt_task.to_owned())
            }
        };
        let mut tasks: Vec<TaskFile> = Vec::new();
        let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        let mut excluded = Vec::new();
        for file_name in names {
            if let Some(reason) = excluded_by_name(&file_name) {
                excluded.push((file_name, reason));
                continue;
            }
            if halt_name.as_deref() == Some(file_name.as_str()) {
                excluded.push((file_name, Exclusion::HaltTask));
                continue;
            }
            let file_path = path.join(&file_name);
            // Follow links: a link to a script is a task, a link to a directory is not.
            let meta = match std::fs::metadata(&file_path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(TaskDirError::BrokenLink { path: file_path });
                }
                Err(e) => return Err(unreadable(e)),
            };
            if meta.is_dir() {
                excluded.push((file_name, Exclusion::Directory));
                continue;
            }
            if !meta.is_file() {
                excluded.push((file_name, Exclusion::NotRegular));
                continue;
            }
            let name = task_name(&file_name);
            // By name, not by a look through the tasks so far: that compared 124,750
            // pairs of names for a directory of 500 tasks.
            match seen.entry(name.clone()) {
                std::collections::hash_map::Entry::Occupied(first) => {
                    return Err(TaskDirError::DuplicateName {
                        dir: path.clone(),
                        name,
                        first: tasks[*first.get()].file_name.clone(),
                        second: file_name,
                    });
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(tasks.len());
                }
            }
            tasks.push(TaskFile {
                file_name,
                path: file_path,
                name,
                mode: meta.permissions().mode(),
            });
        }
        let halt = halt_path.is_file().then_some(halt_path);
        Ok(TaskDir {
            path,
            tasks,
            excluded,
            halt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_drop_prefix_and_last_extension() {
        assert_eq!(task_name("10-check_ami.py"), "check_ami");
        assert_eq!(task_name("update-repos.sh"), "update-repos");
        assert_eq!(task_name("halt"), "halt");
        assert_eq!(task_name("05_fetch.tar.gz"), "fetch.tar");
        assert_eq!(task_name("2024-backup"), "backup");
        assert_eq!(task_name("99"), "99");
        assert_eq!(task_name("10-"), "10-");
        assert_eq!(task_name("x1-y.sh"), "x1-y");
    }

    #[test]
    fn leftovers_and_hidden_files_are_not_tasks() {
        assert_eq!(excluded_by_name(".hidden"), Some(Exclusion::Hidden));
        assert_eq!(excluded_by_name("a.sh~"), Some(Exclusion::Backup));
        for s in LEFTOVER_SUFFIXES {
            assert_eq!(
                excluded_by_name(&format!("a{s}")),
                Some(Exclusion::Leftover)
            );
        }
        assert_eq!(excluded_by_name("10-a.sh"), None);
    }

    #[test]
    fn scan_sorts_by_bytes_and_rejects_duplicates() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["b.sh", "10-a.sh", "B.sh", ".x", "halt.sh", "c.rpmnew"] {
            std::fs::write(dir.path().join(name), "").expect("write");
        }
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        let scanned = TaskDir::scan(dir.path(), "halt.sh").expect("scan");
        let files: Vec<&str> = scanned.tasks.iter().map(|t| t.file_name.as_str()).collect();
        assert_eq!(files, ["10-a.sh", "B.sh", "b.sh"]);
        assert!(scanned.halt.is_some());
        assert!(
            scanned
                .excluded
                .contains(&("sub".to_owned(), Exclusion::Directory))
        );
        assert!(
            scanned
                .excluded
                .contains(&("halt.sh".to_owned(), Exclusion::HaltTask))
        );

        std::fs::write(dir.path().join("20-b.py"), "").expect("write");
        let err = TaskDir::scan(dir.path(), "halt.sh").expect_err("duplicate");
        assert!(err.to_string().contains("both have the task name \"b\""));
    }
}
