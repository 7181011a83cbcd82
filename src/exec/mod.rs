//! Running processes: spawning, supervising, signalling groups, routing output.
//!
//! Nothing here knows about chains, records or SQLite; callers get an [`AttemptReport`].

pub(crate) mod output;
pub(crate) mod pgroup;
pub(crate) mod supervise;

pub(crate) use output::{Output, SharedCapture};
pub(crate) use pgroup::Guardian;
pub(crate) use supervise::{AttemptReport, Exit, Limits, Stop, Supervisor};
