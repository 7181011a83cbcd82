//! One module per subcommand; [`dispatch`] picks one.

mod check;
mod completions;
mod get;
mod prepare;
mod print;
mod run;
mod runs;

use crate::cli::{Cli, Command};
use crate::error::Error;

/// Runs whatever the command line asks for.
pub(crate) fn dispatch(cli: Cli) -> Result<u8, Error> {
    let global = &cli.global;
    match cli.command {
        Some(Command::Run(args)) => run::run(global, &args.chain, &args.taskdir),
        Some(Command::Check(args)) => check::check(global, &args),
        Some(Command::Runs(command)) => runs::runs(global, command),
        Some(Command::Completions(args)) => completions::completions(args.shell),
        None => match (&cli.get, &cli.taskdir) {
            (Some(key), _) => get::get(cli.chain.config.as_deref(), key),
            (None, Some(taskdir)) => run::run(global, &cli.chain, taskdir),
            (None, None) => Err(Error::Usage(
                "a TASKDIR or -g SECTION.OPTION is required".to_owned(),
            )),
        },
    }
}
