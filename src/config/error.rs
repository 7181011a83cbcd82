//! Errors in a chain configuration, located by file and line.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A problem in a configuration file, located as precisely as runner knows it.
#[derive(Debug)]
pub struct ConfigError {
    path: PathBuf,
    line: Option<usize>,
    kind: ConfigErrorKind,
}

/// What is wrong; the location lives in [`ConfigError`].
#[derive(Debug)]
enum ConfigErrorKind {
    /// The file (or include directory) could not be read.
    Io(io::Error),
    /// A line is not a comment, a section header or a key.
    Syntax(String),
    /// A key runner does not know in a section it owns.
    UnknownKey {
        section: String,
        key: String,
        suggestion: Option<&'static str>,
    },
    /// A section that is not `[runner]`, `[env]`, `[DEFAULT]` or a task's, but looks like
    /// one of them misspelt.
    UnknownSection { section: String, known: String },
    /// A task's `#!` line names an interpreter that is not there.
    MissingShebang { interpreter: String },
    /// A known key with a value of the wrong shape.
    BadValue {
        section: String,
        key: String,
        reason: String,
    },
}

impl ConfigError {
    pub(crate) fn io(path: &Path, source: io::Error) -> ConfigError {
        ConfigError {
            path: path.to_owned(),
            line: None,
            kind: ConfigErrorKind::Io(source),
        }
    }

    /// A problem with a whole file or directory, not one of its lines (a job name taken
    /// from the task directory's name).
    pub(crate) fn whole(path: &Path, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.to_owned(),
            line: None,
            kind: ConfigErrorKind::Syntax(reason.into()),
        }
    }

    pub(crate) fn syntax(path: &Path, line: usize, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.to_owned(),
            line: Some(line),
            kind: ConfigErrorKind::Syntax(reason.into()),
        }
    }

    pub(crate) fn unknown_key(
        origin: &super::ini::Origin,
        section: &str,
        key: &str,
        suggestion: Option<&'static str>,
    ) -> ConfigError {
        ConfigError {
            path: origin.path.to_path_buf(),
            line: Some(origin.line),
            kind: ConfigErrorKind::UnknownKey {
                section: section.to_owned(),
                key: key.to_owned(),
                suggestion,
            },
        }
    }

    pub(crate) fn unknown_section(
        origin: &super::ini::Origin,
        section: &str,
        known: &str,
    ) -> ConfigError {
        ConfigError {
            path: origin.path.to_path_buf(),
            line: Some(origin.line),
            kind: ConfigErrorKind::UnknownSection {
                section: section.to_owned(),
                known: known.to_owned(),
            },
        }
    }

    /// The `#!` line (line 1) of task file `path` names `interpreter`, which does not exist.
    pub(crate) fn missing_shebang(path: &Path, interpreter: &str) -> ConfigError {
        ConfigError {
            path: path.to_owned(),
            line: Some(1),
            kind: ConfigErrorKind::MissingShebang {
                interpreter: interpreter.to_owned(),
            },
        }
    }

    pub(crate) fn bad_value(
        origin: &super::ini::Origin,
        section: &str,
        key: &str,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            path: origin.path.to_path_buf(),
            line: Some(origin.line),
            kind: ConfigErrorKind::BadValue {
                section: section.to_owned(),
                key: key.to_owned(),
                reason: reason.into(),
            },
        }
    }

    /// A suggestion for the user, printed on its own line under the error.
    pub(crate) fn hint(&self) -> Option<String> {
        match &self.kind {
            ConfigErrorKind::UnknownKey {
                suggestion: Some(s),
                ..
            } => Some(format!("did you mean \"{s}\"?")),
            ConfigErrorKind::UnknownKey {
                section,
                suggestion: None,
                ..
            } if section == "runner" => {
                Some("see `runner --help` or the README for the keys of [runner]".to_owned())
            }
            ConfigErrorKind::UnknownSection { known, .. } => Some(format!(
                "did you mean [{known}]? (section names are matched exactly, case included)"
            )),
            _ => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        match &self.kind {
            ConfigErrorKind::Io(_) => write!(f, ": cannot read configuration"),
            ConfigErrorKind::Syntax(reason) => write!(f, ": {reason}"),
            ConfigErrorKind::UnknownKey { section, key, .. } => {
                write!(f, ": unknown key \"{key}\" in [{section}]")
            }
            ConfigErrorKind::UnknownSection { section, .. } => write!(
                f,
                ": section [{section}] is not [runner], [env], [DEFAULT] or a task's, and its \
                 name is too close to one of them to be a free section"
            ),
            ConfigErrorKind::MissingShebang { interpreter } => write!(
                f,
                ": the task's #! line names interpreter {interpreter:?}, which does not exist"
            ),
            ConfigErrorKind::BadValue {
                section,
                key,
                reason,
            } => write!(f, ": [{section}] {key}: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ConfigErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}
