//! Choosing the command: the subcommand, or the bare Mozilla-runner form.

use super::{
    check, completions, daemon, events, fire, get, metrics, replay, report, run, runs, schedule,
    trigger,
};
use crate::cli::{Cli, Command};
use crate::error::Error;

/// Runs whatever the command line asks for.
pub(crate) fn dispatch(cli: Cli) -> Result<u8, Error> {
    let global = &cli.global;
    if cli.command.is_some() && has_chain_args(&cli) {
        return Err(Error::Usage(
            "chain options (-c, -n, -H, -g, --wait, --no-record, --insecure, TASKDIR) go after the subcommand"
                .to_owned(),
        ));
    }
    match cli.command {
        Some(Command::Run(args)) => run::run(global, &args.chain, &args.taskdir),
        Some(Command::Check(args)) => check::check(global, &args),
        Some(Command::Runs(args)) => runs::runs(global, args),
        Some(Command::Daemon(args)) => daemon::daemon(global, &args.config, args.insecure),
        Some(Command::Jobs(command)) => daemon::jobs(global, command),
        Some(Command::Trigger(args)) => trigger::trigger(global, args),
        Some(Command::Schedule(args)) => schedule::schedule(&args),
        Some(Command::Completions(args)) => completions::completions(args.shell),
        Some(Command::Metrics(args)) => metrics::metrics(global, &args),
        Some(Command::Report(args)) => report::report(global, &args),
        Some(Command::Fire(args)) => fire::fire(global, &args),
        Some(Command::Events(command)) => events::events(global, command),
        Some(Command::Replay(args)) => replay::replay(global, &args),
        Some(Command::Skip(args)) => replay::skip(global, &args),
        Some(Command::FinishRecords { path }) => Ok(crate::store::finish_records(&path)),
        None => match (&cli.get, &cli.taskdir) {
            (Some(key), _) => get::get(cli.chain.config.as_deref(), key),
            (None, Some(taskdir)) => run::run(global, &cli.chain, taskdir),
            (None, None) => Err(Error::Usage(
                "a TASKDIR or -g SECTION.OPTION is required".to_owned(),
            )),
        },
    }
}

/// Whether the bare (Mozilla) form's options were used; they make no sense before a
/// subcommand, and silently ignoring them would surprise.
fn has_chain_args(cli: &Cli) -> bool {
    let c = &cli.chain;
    cli.taskdir.is_some()
        || cli.get.is_some()
        || c.config.is_some()
        || c.iterations != 1
        || c.halt_after
        || c.wait
        || c.no_record
        || c.insecure
        || c.attach_run.is_some()
        || c.job_name.is_some()
}
