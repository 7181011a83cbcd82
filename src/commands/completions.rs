//! `runner completions SHELL`: the completion script, generated from the clap definition.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::{Error, exit_codes};

/// Writes the completion script for `shell` to stdout.
pub(crate) fn completions(shell: clap_complete::Shell) -> Result<u8, Error> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "runner", &mut std::io::stdout());
    Ok(exit_codes::OK)
}
