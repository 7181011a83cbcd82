//! `runner` runs a directory of tasks in order, each as its own process, with retries,
//! timeouts, a halt task and hooks, and records every run.
//!
//! The binary is a thin shell over [`run`]. Inside, the layers point one way, each using
//! only those below it (`scripts/layers.py` checks it):
//!
//! - `commands`: one module per subcommand; they assemble the pieces below.
//! - `chain`, `daemon`, `metrics`, `report`: the attempt loop over a plan (exits,
//!   retries, the halt task); the scheduler daemon (due times, triggers, concurrency, its
//!   runs); the Prometheus metrics and the HTML report of the records.
//! - [`error`]: runner's own failures and every exit code; it wraps the errors below.
//! - `events`: sessions, event names and data, waking chains that wait for events.
//! - `hooks`, `store`: calls out; the records (SQLite, output capture, retention).
//! - `exec`, `record`: spawning and supervising processes, process groups, output
//!   routing, a task's environment; the recording seam the chain reports through and the
//!   store implements.
//! - `config`, `plan`, `taskdir`, `schedule`, `triggers`: reading and validating what to
//!   run and when: the INI and daemon configurations, the ordered plan, the task
//!   directory, schedule expressions, the trigger-file format.
//! - `state`, `security`, `signals`, `interrupt`, `retry`, `epoch`, `timestamp`,
//!   `memory`: the state directory and the job lock in it, root's checks, a chain run's
//!   signal handling, the shared "stop was asked" state, retry delays, epoch seconds,
//!   points in time as files and flags write them, the allocator's knobs.
//! - [`cli`], [`argv`], [`logging`], `terminal`: the command line (clap types only);
//!   telling a mistyped subcommand from a task directory; log output; the seam that lets
//!   a live view step aside for task output and log lines.
#![warn(missing_docs)]
#![warn(unreachable_pub)]

pub mod argv;
pub mod cli;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod logging;

mod chain;
mod commands;
mod config;
mod daemon;
mod epoch;
mod events;
mod exec;
mod hooks;
mod interrupt;
mod memory;
mod metrics;
mod plan;
mod record;
mod report;
mod retry;
mod schedule;
mod security;
mod signals;
mod state;
mod store;
mod taskdir;
mod terminal;
mod timestamp;
mod triggers;

pub use error::Error;

/// Runs the parsed command line and returns the process exit code.
///
/// Failures of runner itself come back as [`Error`]; what tasks did is in the code.
pub fn run(cli: cli::Cli) -> Result<u8, Error> {
    commands::dispatch(cli)
}
