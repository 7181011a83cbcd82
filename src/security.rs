//! Refusing, as root, to execute or trust files that someone else could have changed.
//!
//! A boot chain runs as root, so a task file or configuration that a group or any user may
//! write is a way to become root. cron and sshd refuse such files for the same reason;
//! runner does too, unless `--insecure` says the admin knows better.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A file runner will not trust while running as root.
#[derive(Debug, thiserror::Error)]
#[error("refusing to use {what} {}: {reason}", path.display())]
pub struct UnsafeError {
    what: &'static str,
    path: PathBuf,
    reason: String,
    fix: String,
}

impl UnsafeError {
    /// How to repair the file, or how to override the check.
    pub(crate) fn hint(&self) -> String {
        format!("run `{}`, or pass --insecure to run anyway", self.fix)
    }
}

/// What a file is, for messages ("task file", "configuration file", "task directory").
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// A file that will be executed.
    TaskFile,
    /// The task directory itself (anyone who can write it can add tasks).
    TaskDir,
    /// An INI file.
    Config,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::TaskFile => "task file",
            Kind::TaskDir => "task directory",
            Kind::Config => "configuration file",
        }
    }
}

/// Whether the checks apply: only a root runner has something to lose.
pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Checks one path (following links, as execution does) for group/other write access and
/// for an owner other than root.
pub(crate) fn check(kind: Kind, path: &Path) -> Result<(), UnsafeError> {
    let Ok(meta) = std::fs::metadata(path) else {
        // A missing file is reported by whoever needs it, with a better message.
        return Ok(());
    };
    let mode = meta.mode();
    let fail = |reason: String, fix: String| UnsafeError {
        what: kind.describe(),
        path: path.to_owned(),
        reason,
        fix,
    };
    if meta.uid() != 0 {
        return Err(fail(
            format!("it is owned by uid {}, not root", meta.uid()),
            format!("chown root {}", path.display()),
        ));
    }
    if mode & 0o022 != 0 {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "its group and all users",
            (true, false) => "its group",
            _ => "all users",
        };
        return Err(fail(
            format!("it is writable by {who} (mode {:04o})", mode & 0o7777),
            format!("chmod go-w {}", path.display()),
        ));
    }
    Ok(())
}
