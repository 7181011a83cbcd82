//! Running processes: spawning, supervising, signalling groups, routing output, and
//! accounting for every process a task starts.
//!
//! Nothing here knows about chains, records or SQLite; callers get an [`AttemptReport`].

pub(crate) mod env;
pub(crate) mod limits;
pub(crate) mod output;
pub(crate) mod pgroup;
pub(crate) mod reaper;
pub(crate) mod spawn;
pub(crate) mod supervise;
pub(crate) mod tree;

pub(crate) use env::TaskEnv;
pub(crate) use output::{Output, SharedCapture};
pub(crate) use pgroup::Guardian;
pub(crate) use spawn::Command;
pub(crate) use supervise::{
    AttemptReport, Exit, Leftover, Leftovers, Limits, Stop, Supervisor, describe_leftovers,
};

/// What runner does with the processes of its tasks as it exits: as PID 1 it stops them
/// all as an init does (the kernel would kill them anyway); otherwise the pipes that
/// kept leftovers still write to go to the relay, so their output keeps flowing.
pub(crate) fn finish(grace: std::time::Duration) {
    if pgroup::is_init() {
        output::hand_off();
        reaper::shutdown_as_init(grace);
    } else {
        output::hand_off();
    }
}
