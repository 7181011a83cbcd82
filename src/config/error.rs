//! The one error type of every configuration runner reads: the chain's INI and the
//! daemon's YAML/JSON.
//!
//! Every message opens with where the mistake is, `FILE:LINE:COLUMN` as far as the format
//! knows it (INI lines have no useful column), then what it is about (an INI section, a
//! daemon job or group) and the key, because a configuration is often spread over
//! includes or `config.d/` and the operator must know which file to open. The "did you
//! mean" is kept apart ([`ConfigError::hint`]) so that `main` prints it on its own line.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A line (1-based) and, where the format has one, a column (1-based, in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Position {
    pub(crate) line: usize,
    pub(crate) column: Option<usize>,
}

/// What part of a configuration an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The file as a whole, or a top-level key of the daemon's.
    Top,
    /// An INI section.
    Section(String),
    /// A daemon job; `group` is set when the job was expanded from `job_groups`.
    Job { name: String, group: Option<String> },
    /// A `job_groups` entry itself (its name or `job_names`).
    JobGroup(String),
    /// A `concurrency_groups` entry.
    ConcurrencyGroup(String),
}

/// What is wrong; the location lives in [`ConfigError`].
#[derive(Debug)]
pub(crate) enum ErrorKind {
    /// The file (or directory) could not be read.
    Io(io::Error),
    /// The text is not the format it should be, or its shape is wrong outside of any key.
    Syntax(String),
    /// A key runner does not know, with the known key it is a near miss of.
    UnknownKey {
        key: String,
        suggestion: Option<&'static str>,
    },
    /// An INI section that is not `[runner]`, `[env]`, `[DEFAULT]` or a task's, but looks
    /// like one of them misspelt.
    UnknownSection { section: String, known: String },
    /// A task's `#!` line names an interpreter that is not there.
    MissingShebang { interpreter: String },
    /// A name (of a job or a group) that cannot become a directory name.
    InvalidName { reason: &'static str },
    /// A known key whose value has the wrong type.
    BadType {
        key: String,
        expected: String,
        found: &'static str,
    },
    /// A known key whose value has the right type but is not acceptable.
    BadValue { key: String, reason: String },
}

/// A configuration that cannot be used, located as precisely as runner knows it.
///
/// Boxed so that the many `Result`s of the loaders stay one pointer wide on the happy path.
#[derive(Debug)]
pub struct ConfigError(Box<Located>);

#[derive(Debug)]
struct Located {
    path: PathBuf,
    position: Option<Position>,
    scope: Scope,
    kind: ErrorKind,
}

impl ConfigError {
    pub(crate) fn new(path: &Path, scope: Scope, kind: ErrorKind) -> ConfigError {
        ConfigError(Box::new(Located {
            path: path.to_owned(),
            position: None,
            scope,
            kind,
        }))
    }

    /// The same error, at `position` of its file (no change when `None`).
    pub(crate) fn at(mut self, position: Option<Position>) -> ConfigError {
        if position.is_some() {
            self.0.position = position;
        }
        self
    }

    /// The same error, at `line` of its file.
    fn at_line(self, line: usize) -> ConfigError {
        self.at(Some(Position { line, column: None }))
    }

    pub(crate) fn io(path: &Path, source: io::Error) -> ConfigError {
        ConfigError::new(path, Scope::Top, ErrorKind::Io(source))
    }

    /// A problem with a whole file or directory, not one of its lines (a job name taken
    /// from the task directory's name, a top level that is not a mapping).
    pub(crate) fn whole(path: &Path, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(path, Scope::Top, ErrorKind::Syntax(reason.into()))
    }

    pub(crate) fn syntax(path: &Path, line: usize, reason: impl Into<String>) -> ConfigError {
        ConfigError::whole(path, reason).at_line(line)
    }

    pub(crate) fn unknown_key(
        origin: &super::ini::Origin,
        section: &str,
        key: &str,
        suggestion: Option<&'static str>,
    ) -> ConfigError {
        ConfigError::new(
            &origin.path,
            Scope::Section(section.to_owned()),
            ErrorKind::UnknownKey {
                key: key.to_owned(),
                suggestion,
            },
        )
        .at_line(origin.line)
    }

    pub(crate) fn unknown_section(
        origin: &super::ini::Origin,
        section: &str,
        known: &str,
    ) -> ConfigError {
        ConfigError::new(
            &origin.path,
            Scope::Top,
            ErrorKind::UnknownSection {
                section: section.to_owned(),
                known: known.to_owned(),
            },
        )
        .at_line(origin.line)
    }

    /// The `#!` line (line 1) of task file `path` names `interpreter`, which does not exist.
    pub(crate) fn missing_shebang(path: &Path, interpreter: &str) -> ConfigError {
        ConfigError::new(
            path,
            Scope::Top,
            ErrorKind::MissingShebang {
                interpreter: interpreter.to_owned(),
            },
        )
        .at_line(1)
    }

    pub(crate) fn bad_value(
        origin: &super::ini::Origin,
        section: &str,
        key: &str,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError::new(
            &origin.path,
            Scope::Section(section.to_owned()),
            ErrorKind::BadValue {
                key: key.to_owned(),
                reason: reason.into(),
            },
        )
        .at_line(origin.line)
    }

    /// The file the error is about.
    pub(crate) fn path(&self) -> &Path {
        &self.0.path
    }

    /// Where in the file, when known.
    pub(crate) fn position(&self) -> Option<Position> {
        self.0.position
    }

    /// The section, job, group or top level the error is about.
    #[cfg(test)]
    pub(crate) fn scope(&self) -> &Scope {
        &self.0.scope
    }

    /// The offending key, when there is one.
    #[cfg(test)]
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
            ErrorKind::UnknownKey {
                suggestion: None, ..
            } if self.0.scope == Scope::Section("runner".to_owned()) => {
                Some("see `runner --help` or the README for the keys of [runner]".to_owned())
            }
            ErrorKind::UnknownSection { known, .. } => Some(format!(
                "did you mean [{known}]? (section names are matched exactly, case included)"
            )),
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
            // An INI section is named with its key, as `[section] key`.
            Scope::Top | Scope::Section(_) => Ok(()),
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

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Located {
            path,
            position,
            scope,
            kind,
        } = &*self.0;
        write!(f, "{}", path.display())?;
        if let Some(Position { line, column }) = position {
            write!(f, ":{line}")?;
            if let Some(column) = column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {scope}")?;
        let section = match scope {
            Scope::Section(s) => Some(s),
            _ => None,
        };
        match kind {
            ErrorKind::Io(_) => write!(f, "cannot read configuration"),
            ErrorKind::Syntax(reason) => write!(f, "{reason}"),
            ErrorKind::UnknownKey { key, .. } => match section {
                Some(section) => write!(f, "unknown key \"{key}\" in [{section}]"),
                None => write!(f, "unknown key \"{key}\""),
            },
            ErrorKind::UnknownSection { section, .. } => write!(
                f,
                "section [{section}] is not [runner], [env], [DEFAULT] or a task's, and its \
                 name is too close to one of them to be a free section"
            ),
            ErrorKind::MissingShebang { interpreter } => write!(
                f,
                "the task's #! line names interpreter {interpreter:?}, which does not exist"
            ),
            ErrorKind::InvalidName { reason } => write!(f, "invalid name: {reason}"),
            ErrorKind::BadType {
                key,
                expected,
                found,
            } => write!(f, "key \"{key}\": expected {expected}, found {found}"),
            ErrorKind::BadValue { key, reason } => match section {
                Some(section) => write!(f, "[{section}] {key}: {reason}"),
                None => write!(f, "key \"{key}\": {reason}"),
            },
        }
    }
}

impl std::error::Error for ConfigError {
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
    fn messages_name_file_position_scope_and_key() {
        let e = ConfigError::new(
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

        let e = ConfigError::new(
            Path::new("d/config.d/10.json"),
            Scope::Job {
                name: "a".to_owned(),
                group: Some("g".to_owned()),
            },
            ErrorKind::BadType {
                key: "concurrent_runs".to_owned(),
                expected: "a bool".to_owned(),
                found: "a list",
            },
        )
        .at(Some(Position {
            line: 3,
            column: Some(7),
        }));
        assert_eq!(
            e.to_string(),
            "d/config.d/10.json:3:7: job \"a\" (job group \"g\"): key \"concurrent_runs\": \
             expected a bool, found a list"
        );

        let e = ConfigError::new(
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
    fn ini_messages_name_the_section_with_the_key() {
        let origin = crate::config::ini::Origin {
            path: Path::new("runner.ini").into(),
            line: 4,
        };
        let e = ConfigError::bad_value(&origin, "a", "max_time", "too long");
        assert_eq!(e.to_string(), "runner.ini:4: [a] max_time: too long");
        assert_eq!(
            e.position(),
            Some(Position {
                line: 4,
                column: None
            })
        );
        let e = ConfigError::unknown_key(&origin, "runner", "max_tris", None);
        assert_eq!(
            e.to_string(),
            "runner.ini:4: unknown key \"max_tris\" in [runner]"
        );
        assert!(e.hint().expect("hint").contains("runner --help"));
    }

    #[test]
    fn io_errors() {
        let e = ConfigError::io(Path::new("/nope"), io::ErrorKind::NotFound.into());
        assert_eq!(e.to_string(), "/nope: cannot read configuration");
        assert!(std::error::Error::source(&e).is_some());
    }
}
