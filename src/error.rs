//! Errors of runner itself and the exit codes they map to.
//!
//! An [`Error`] means runner could not do what it was asked (bad configuration, a task
//! directory it refuses, a job that is already running). What a *task* did is never an
//! error: that is an `Outcome` and flows through the chain into the exit code instead.
//! Every exit code the program can return is defined here, in [`exit_codes`].

use std::io;
use std::path::PathBuf;

use crate::config::ConfigError;
use crate::events::EventError;
use crate::plan::PlanError;
use crate::schedule::ScheduleError;
use crate::security::UnsafeError;
use crate::state::DirError;
use crate::state::lock::LockError;
use crate::store::StoreError;
use crate::taskdir::TaskDirError;

// Warnings all over the house use it; it lives with the logging, below every layer.
pub(crate) use crate::logging::one_line;

/// The exit codes of the contract, in one place so that no module invents its own.
pub mod exit_codes {
    /// Everything asked for was done.
    pub const OK: u8 = 0;
    /// The chain failed (halt, exit 3, retries exhausted) or an operation was refused.
    pub const FAILED: u8 = 1;
    /// The command line was malformed; clap uses the same code for its own errors.
    pub const USAGE: u8 = 2;
    /// Another run of the job holds the lock (EX_TEMPFAIL: try again later).
    pub const LOCKED: u8 = 75;
    /// The configuration, task directory or a file's permissions are wrong (EX_CONFIG).
    pub const CONFIG: u8 = 78;
    /// Base of "interrupted by signal N": the code is `SIGNALED + N`, as shells report it.
    pub const SIGNALED: u8 = 128;
}

/// Why runner itself failed. Each variant knows its exit code and how to explain itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration (the chain's INI, the daemon's YAML/JSON) is malformed or holds a
    /// bad value.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A schedule expression given on the command line is wrong.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// An event given on the command line is malformed.
    #[error(transparent)]
    Event(#[from] EventError),
    /// The task directory cannot be read or holds something runner will not run.
    #[error(transparent)]
    TaskDir(#[from] TaskDirError),
    /// The dependency graph of the tasks is broken (unknown task, cycle).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Running as root, a file others could write would be executed.
    #[error(transparent)]
    Unsafe(#[from] UnsafeError),
    /// Another invocation holds the job's lock.
    #[error("job \"{job}\" is already running: {holder}")]
    Locked {
        /// The job whose lock is held.
        job: String,
        /// Who holds it, as the holder wrote it into the lock file.
        holder: String,
    },
    /// The records could not be read (or a run id matched nothing).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An operation was refused (exit 1): the thing exists but cannot be done.
    #[error("{0}")]
    Refused(String),
    /// The command line parsed but makes no sense (clap catches the rest).
    #[error("{0}")]
    Usage(String),
    /// A file or directory runner needs could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file the operation was about.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The process exit code for this error, per the contract's section 12.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_)
            | Error::Schedule(_)
            | Error::TaskDir(_)
            | Error::Plan(_)
            | Error::Unsafe(_)
            | Error::Store(StoreError::Unsupported { .. } | StoreError::BadUrl { .. })
            | Error::Event(_) => exit_codes::CONFIG,
            Error::Locked { .. } => exit_codes::LOCKED,
            Error::Usage(_) => exit_codes::USAGE,
            Error::Io { .. } | Error::Store(_) | Error::Refused(_) => exit_codes::FAILED,
        }
    }

    /// A line of advice printed under the message, when there is an obvious next step.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Config(e) => e.hint(),
            Error::Schedule(_) | Error::Event(_) => None,
            Error::Plan(e) => e.hint(),
            Error::Unsafe(e) => Some(e.hint()),
            Error::TaskDir(e) => e.hint(),
            Error::Locked { .. } => {
                Some("pass --wait to wait for it to finish instead of failing".to_owned())
            }
            Error::Store(StoreError::Ambiguous { .. }) => {
                Some("give more characters of the run id".to_owned())
            }
            Error::Usage(_) | Error::Io { .. } | Error::Store(_) | Error::Refused(_) => None,
        }
    }

    /// Wraps an `io::Error` with the path it happened on, so that no message lacks its file.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<LockError> for Error {
    fn from(e: LockError) -> Error {
        match e {
            LockError::Held { job, holder } => Error::Locked { job, holder },
            LockError::File(e) => e.into(),
        }
    }
}

impl From<DirError> for Error {
    fn from(e: DirError) -> Error {
        Error::Io {
            path: e.path,
            source: e.source,
        }
    }
}
