//! The command line, as clap derive types. The doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

/// Run a directory of tasks in order, with retries, timeouts, a halt task and hooks.
///
/// `runner -c FILE TASKDIR` runs every executable in TASKDIR in order, each as its own
/// process. Exit 0 goes on, 2 halts (runs the halt task), 3 stops, anything else
/// retries the chain. Tasks read configuration with `$RUNNER_CONFIG_CMD -g SECTION.OPTION`.
#[derive(Debug, Parser)]
#[command(
    name = "runner",
    version,
    subcommand_negates_reqs = true,
    after_help = "Exit codes: 0 success, 1 chain failed or operation refused, 2 usage error, \
                  75 job already running, 78 configuration error, 128+N interrupted by signal N."
)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,

    /// How to run the chain (Mozilla-runner form).
    #[command(flatten)]
    pub chain: ChainArgs,

    /// Print the value of SECTION.OPTION from the configuration and exit
    /// (nothing, and exit 0, when it is not set).
    #[arg(
        short = 'g',
        long = "get",
        value_name = "SECTION.OPTION",
        conflicts_with_all = ["iterations", "halt_after", "wait", "taskdir"]
    )]
    pub get: Option<String>,

    /// The task directory to run.
    #[arg(value_name = "TASKDIR", required_unless_present = "get")]
    pub taskdir: Option<PathBuf>,

    /// A subcommand; without one, runner runs TASKDIR.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options accepted before or after any subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Log more (repeat for more detail); RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Log only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Log to the local syslog socket instead of stderr.
    #[arg(long, global = true)]
    pub syslog: bool,

    /// Where runs are recorded [default: /var/lib/runner as root,
    /// $XDG_STATE_HOME/runner otherwise].
    #[arg(long, global = true, env = "RUNNER_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Output format of commands that print records.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// How records are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts.
    Json,
    /// YAML for people and scripts.
    Yaml,
}

/// Options of a chain run, shared by the bare form and `runner run`.
#[derive(Debug, Args)]
pub struct ChainArgs {
    /// The chain's INI configuration file.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Run the whole chain N times (0 runs it forever).
    #[arg(short = 'n', long = "times", value_name = "N", default_value_t = 1)]
    pub iterations: u64,

    /// Run the halt task once after the last run succeeded.
    #[arg(short = 'H', long = "halt-after")]
    pub halt_after: bool,

    /// If the job is already running, wait for it instead of exiting 75.
    #[arg(long)]
    pub wait: bool,

    /// Do not record this run.
    #[arg(long)]
    pub no_record: bool,

    /// As root, run task files and read configuration even if others could write them.
    #[arg(long)]
    pub insecure: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a task chain (the same as the bare `runner TASKDIR` form).
    Run(RunArgs),
    /// Validate the configuration and task directory and print the plan.
    Check(CheckArgs),
    /// Read recorded runs: list, show, output, tail.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
}

/// The `runs` subcommands. A run id may be shortened to any unique prefix.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first.
    List {
        /// Only runs of this job (repeatable).
        #[arg(long = "job", value_name = "JOB")]
        jobs: Vec<String>,
        /// How many runs to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Show a run with its task instances and attempts.
    Show {
        /// The run (a unique prefix is enough).
        run_id: String,
    },
    /// Print the captured output of a run's attempts.
    Output {
        /// The run (a unique prefix is enough).
        run_id: String,
        /// Only this task's output.
        #[arg(long, value_name = "NAME")]
        task: Option<String>,
    },
    /// Follow the output of running runs until they end.
    Tail {
        /// The runs to follow; all running runs when none is given.
        run_ids: Vec<String>,
    },
}

/// Arguments of `runner run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// How to run the chain.
    #[command(flatten)]
    pub chain: ChainArgs,

    /// The task directory to run.
    #[arg(value_name = "TASKDIR")]
    pub taskdir: PathBuf,
}

/// Arguments of `runner check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The chain's INI configuration file.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Check permissions as a root run would, but do not fail on them.
    #[arg(long)]
    pub insecure: bool,

    /// The task directory to check.
    #[arg(value_name = "TASKDIR")]
    pub taskdir: PathBuf,
}

/// Arguments of `runner completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn mozilla_form_and_subcommand_form_parse() {
        let cli = Cli::try_parse_from(["runner", "-c", "r.ini", "-n", "3", "-H", "tasks.d"])
            .expect("parses");
        assert_eq!(cli.chain.iterations, 3);
        assert!(cli.chain.halt_after);
        assert_eq!(cli.taskdir, Some(PathBuf::from("tasks.d")));
        let cli =
            Cli::try_parse_from(["runner", "-c", "r.ini", "-g", "hg.remote"]).expect("parses");
        assert_eq!(cli.get.as_deref(), Some("hg.remote"));
        let cli = Cli::try_parse_from(["runner", "run", "-c", "r.ini", "tasks.d"]).expect("parses");
        assert!(matches!(cli.command, Some(Command::Run(_))));
    }

    #[test]
    fn missing_taskdir_is_a_usage_error() {
        let err = Cli::try_parse_from(["runner", "-c", "r.ini"]).expect_err("missing");
        assert_eq!(err.exit_code(), 2);
    }
}
