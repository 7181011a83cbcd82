//! `runner` runs a directory of tasks in order, each as its own process, with retries,
//! timeouts, a halt task and hooks, and records every run.
//!
//! The binary is a thin shell over [`run`]. Inside, the layers point one way:
//!
//! - [`cli`]: the command line (clap types only).
//! - `commands`: one module per subcommand; they assemble the pieces below.
//! - `chain`: the attempt loop over a plan: exits, retries, the halt task.
//! - `exec`: spawning and supervising processes, process groups, output routing.
//! - `hooks`, `record`, `lock`, `state`: calls out, the recording seam, the job lock,
//!   the state directory.
//! - `config`, `taskdir`, `plan`, `security`: reading and validating what to run.
//! - [`error`]: runner's own failures and every exit code.
#![warn(missing_docs)]
#![warn(unreachable_pub)]

pub mod cli;
pub mod error;
pub mod logging;

mod chain;
mod commands;
mod config;
mod daemon;
mod exec;
mod hooks;
mod lock;
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
mod triggers;

pub use error::Error;

/// Runs the parsed command line and returns the process exit code.
///
/// Failures of runner itself come back as [`Error`]; what tasks did is in the code.
pub fn run(cli: cli::Cli) -> Result<u8, Error> {
    commands::dispatch(cli)
}
