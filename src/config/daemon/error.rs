//! The one error type of the daemon configuration loader.
//!
//! Every message names the file, and where it applies, the job (or group) and the key, because
//! a daemon configuration is often spread over `config.d/` and the operator must know which
//! file to open. The hint (a "did you mean") is kept apart, as for the chain's `ConfigError`,
//! so that `main` prints it on its own line.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What part of the configuration an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The file as a whole, or a top-level key.
    Top,
    /// A job; `group` is set when the job was expanded from `job_groups`.
    Job { name: String, group: Option<String> },
    /// A `job_groups` entry itself (its name or `job_names`).
    JobGroup(String),
    /// A `concurrency_groups` entry.
    ConcurrencyGroup(String),
}

/// What went wrong, without the location.
#[derive(Debug)]
pub(crate) enum ErrorKind {
    /// The file or directory could not be read.
    Io(io::Error),
    /// The file is not valid YAML or JSON.
    Parse {
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    /// The file parsed but its shape is wrong outside of any key (for example, the top level is
    /// a list, or nothing to load was found).
    Invalid(String),
    /// A name (of a job or a group) that cannot become a directory name.
    InvalidName { reason: &'static str },
    /// A key the loader does not know.
    UnknownKey {
        key: String,
        suggestion: Option<&'static str>,
    },
    /// A known key whose value has the wrong type.
    BadType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    /// A known key whose value has the right type but is not acceptable.
    BadValue { key: String, reason: String },
}

/// A daemon configuration that cannot be used, located by file, scope and key.
///
/// Boxed so that the many `Result`s of the loader stay one pointer wide on the happy path.
#[derive(Debug)]
pub struct DaemonConfigError(Box<Located>);

/// The parts of a [`DaemonConfigError`].
#[derive(Debug)]
struct Located {
    path: PathBuf,
    scope: Scope,
    kind: ErrorKind,
}

impl DaemonConfigError {
    pub(crate) fn new(path: &Path, scope: Scope, kind: ErrorKind) -> DaemonConfigError {
        DaemonConfigError(Box::new(Located {
            path: path.to_owned(),
            scope,
            kind,
        }))
    }

    pub(crate) fn io(path: &Path, source: io::Error) -> DaemonConfigError {
        DaemonConfigError::new(path, Scope::Top, ErrorKind::Io(source))
    }

    pub(crate) fn invalid(path: &Path, reason: impl Into<String>) -> DaemonConfigError {
        DaemonConfigError::new(path, Scope::Top, ErrorKind::Invalid(reason.into()))
    }

    /// The file the error is about.
    pub(crate) fn path(&self) -> &Path {
        &self.0.path
    }

    /// The job, group or top level the error is about.
    #[cfg(test)]
    pub(crate) fn scope(&self) -> &Scope {
        &self.0.scope
    }

    /// The offending key, when there is one.
    pub(crate) fn key(&self) -> Option<&str> {
        match &self.0.kind {
            ErrorKind::UnknownKey { key, .. }
            | ErrorKind::BadType { key, .. }
            | ErrorKind::BadValue { key, .. } => Some(key),
            _ => None,
        }
    }

    /// A suggestion for the user, printed on its own line under the error.
    pub(crate) fn hint(&self) -> Option<String> {
        match &self.0.kind {
            ErrorKind::UnknownKey {
                suggestion: Some(s),
                ..
            } => Some(format!("did you mean \"{s}\"?")),
            ErrorKind::InvalidName { .. } => Some(
                "names become directory names: use at most 64 of the characters \
                 A-Z a-z 0-9 space - _ + . : @"
                    .to_owned(),
            ),
            _ => None,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Top => Ok(()),
            Scope::Job { name, group: None } => write!(f, "job \"{name}\": "),
            Scope::Job {
                name,
                group: Some(group),
            } => write!(f, "job \"{name}\" (job group \"{group}\"): "),
            Scope::JobGroup(name) => write!(f, "job group \"{name}\": "),
            Scope::ConcurrencyGroup(name) => write!(f, "concurrency group \"{name}\": "),
        }
    }
}

impl fmt::Display for DaemonConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.0.path.display();
        match &self.0.kind {
            ErrorKind::Io(_) => return write!(f, "cannot read {path}"),
            ErrorKind::Parse {
                line,
                column,
                message,
            } => {
                write!(f, "{path}")?;
                if let Some(line) = line {
                    write!(f, ":{line}")?;
                    if let Some(column) = column {
                        write!(f, ":{column}")?;
                    }
                }
                return write!(f, ": {message}");
            }
            _ => {}
        }
        write!(f, "{path}: {}", self.0.scope)?;
        match &self.0.kind {
            ErrorKind::Io(_) | ErrorKind::Parse { .. } => Ok(()),
            ErrorKind::Invalid(reason) => write!(f, "{reason}"),
            ErrorKind::InvalidName { reason } => write!(f, "invalid name: {reason}"),
            ErrorKind::UnknownKey { key, .. } => write!(f, "unknown key \"{key}\""),
            ErrorKind::BadType {
                key,
                expected,
                found,
            } => write!(f, "key \"{key}\": expected {expected}, found {found}"),
            ErrorKind::BadValue { key, reason } => write!(f, "key \"{key}\": {reason}"),
        }
    }
}

impl std::error::Error for DaemonConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0.kind {
            ErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str) -> Scope {
        Scope::Job {
            name: name.to_owned(),
            group: None,
        }
    }

    #[test]
    fn messages_name_file_job_and_key() {
        let e = DaemonConfigError::new(
            Path::new("daemon.yaml"),
            job("backup"),
            ErrorKind::UnknownKey {
                key: "scedule".to_owned(),
                suggestion: Some("schedule"),
            },
        );
        assert_eq!(
            e.to_string(),
            "daemon.yaml: job \"backup\": unknown key \"scedule\""
        );
        assert_eq!(e.hint().as_deref(), Some("did you mean \"schedule\"?"));
        assert_eq!(e.key(), Some("scedule"));

        let e = DaemonConfigError::new(
            Path::new("d/config.d/10.json"),
            Scope::Job {
                name: "a".to_owned(),
                group: Some("g".to_owned()),
            },
            ErrorKind::BadType {
                key: "concurrent_runs".to_owned(),
                expected: "a bool",
                found: "a list",
            },
        );
        assert_eq!(
            e.to_string(),
            "d/config.d/10.json: job \"a\" (job group \"g\"): key \"concurrent_runs\": \
             expected a bool, found a list"
        );

        let e = DaemonConfigError::new(
            Path::new("x.yaml"),
            Scope::Top,
            ErrorKind::BadValue {
                key: "database.type".to_owned(),
                reason: "only \"sqlite3\" is supported".to_owned(),
            },
        );
        assert_eq!(
            e.to_string(),
            "x.yaml: key \"database.type\": only \"sqlite3\" is supported"
        );
    }

    #[test]
    fn parse_and_io_errors() {
        let e = DaemonConfigError::new(
            Path::new("x.json"),
            Scope::Top,
            ErrorKind::Parse {
                line: Some(3),
                column: Some(7),
                message: "invalid JSON: expected `,` or `}`".to_owned(),
            },
        );
        assert_eq!(
            e.to_string(),
            "x.json:3:7: invalid JSON: expected `,` or `}`"
        );

        let e = DaemonConfigError::io(Path::new("/nope"), io::ErrorKind::NotFound.into());
        assert_eq!(e.to_string(), "cannot read /nope");
        assert!(std::error::Error::source(&e).is_some());
    }
}
