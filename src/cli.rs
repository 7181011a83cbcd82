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

    /// Log only errors, and show no live view of a running chain on a terminal.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Log to the local syslog socket instead of stderr.
    #[arg(long, global = true)]
    pub syslog: bool,

    /// Where runs are recorded [default: /var/lib/runner as root,
    /// $XDG_STATE_HOME/runner otherwise].
    #[arg(long, global = true, env = "RUNNER_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// The run store: an SQLite file or sqlite:PATH URL [default: STATE_DIR/runner.sqlite3,
    /// or STATE_DIR/dsari.sqlite3 when only dsari's file is there].
    #[arg(long, global = true, env = "RUNNER_DATABASE", value_name = "URL")]
    pub database: Option<String>,

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

    /// Record the chain's tasks under this existing run (the daemon runs chain jobs so).
    #[arg(long, hide = true, value_name = "RUN_ID", requires = "job_name")]
    pub attach_run: Option<String>,

    /// The job name to record under, instead of `[runner] name` or the directory's name.
    #[arg(long, hide = true, value_name = "JOB")]
    pub job_name: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a task chain (the same as the bare `runner TASKDIR` form).
    Run(RunArgs),
    /// Validate the configuration and task directory and print the plan.
    Check(CheckArgs),
    /// Read recorded runs: list, show, output, tail.
    Runs(RunsArgs),
    /// Run the scheduler daemon in the foreground until SIGTERM or SIGINT.
    Daemon(DaemonArgs),
    /// The daemon's jobs and their next times.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Ask the daemon for a run of JOB by writing a trigger file.
    Trigger(TriggerArgs),
    /// Print the next times of a schedule expression, as the daemon computes them.
    ///
    /// Times are dsari's (H hashing and sub-second offset from the job name). A time
    /// missing on a spring-forward day runs once at the end of the gap, a repeated one
    /// once; an expression that can never fire is an error (exit 78).
    Schedule(ScheduleArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Prometheus metrics of the recorded runs: print them, or serve them at /metrics.
    Metrics(MetricsArgs),
    /// Write a static HTML report of the recorded runs.
    Report(ReportArgs),
    /// Fire a named event in a session: tasks waiting for it (`after`) may start,
    /// tasks it forbids (`unless`) are abandoned. With a fleet database every host of
    /// the session sees it; exit 75 when that database could not take it.
    Fire(FireArgs),
    /// Read fired events.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Re-run the failed task instance of a run and resume the chain in that run.
    Replay(ReplayArgs),
    /// Mark the failed task instance of a run skipped; with --cascade, resume the chain.
    Skip(SkipArgs),
    /// Internal: write the records a runner left pending in PATH once the store is
    /// writable (started by runner itself at its exit; fd 3 is the locked file).
    #[command(name = "internal-finish-records", hide = true)]
    FinishRecords {
        /// The spool file.
        path: std::path::PathBuf,
    },
}

/// Arguments of `runner metrics`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["dump", "listen"])))]
pub struct MetricsArgs {
    /// Print the metrics once and exit.
    #[arg(long)]
    pub dump: bool,
    /// Serve the metrics at http://ADDR/metrics until stopped [default: 127.0.0.1:50575].
    #[arg(
        long,
        value_name = "ADDR",
        num_args = 0..=1,
        default_missing_value = "127.0.0.1:50575"
    )]
    pub listen: Option<String>,
    /// Allow --listen on an address other hosts can reach (records can be sensitive).
    #[arg(long, requires = "listen")]
    pub allow_remote: bool,
    /// The quantiles of the summaries, comma-separated.
    #[arg(long, value_name = "Q,...", default_value = "0.01,0.1,0.5,0.9,0.99")]
    pub quantiles: String,
    /// A daemon configuration: use its database, and give its jobs series before their
    /// first run.
    #[arg(long = "config", value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// Arguments of `runner report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The directory to write the site into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Only this job (repeatable).
    #[arg(long = "job", value_name = "JOB")]
    pub jobs: Vec<String>,
    /// How many of each job's newest runs get a page.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub runs_per_job: usize,
    /// A daemon configuration: use its database, and list its jobs before their first run.
    #[arg(long = "config", value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// Arguments of `runner fire`.
#[derive(Debug, Args)]
pub struct FireArgs {
    /// The event's name.
    #[arg(value_name = "EVENT")]
    pub event: String,
    /// The event's data: a JSON object [default: {}].
    #[arg(long, value_name = "JSON")]
    pub data: Option<String>,
    /// The session [default: the configuration's session, else $RUNNER_SESSION, else
    /// the current boot id].
    #[arg(long, value_name = "S")]
    pub session: Option<String>,
    /// A chain's INI file, for its session, state_dir and post_fire_hook.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// As root, read the configuration even if others could write it.
    #[arg(long, requires = "config")]
    pub insecure: bool,
}

/// The `events` subcommands.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List the events of a session, oldest first.
    List {
        /// The session [default: $RUNNER_SESSION, else the current boot id].
        #[arg(long, value_name = "S", conflicts_with = "all")]
        session: Option<String>,
        /// Events of every session.
        #[arg(long)]
        all: bool,
    },
}

/// Arguments of `runner replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The run (a unique prefix is enough).
    pub run_id: String,
    /// Replay this task's failed instance instead of the one that failed the run.
    #[arg(long, value_name = "T")]
    pub task: Option<String>,
    /// An extra environment variable for the replayed instance (repeatable).
    #[arg(long = "env", value_name = "K=V", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
}

/// Arguments of `runner skip`.
#[derive(Debug, Args)]
pub struct SkipArgs {
    /// The run (a unique prefix is enough).
    pub run_id: String,
    /// Skip this task's failed instance instead of the one that failed the run.
    #[arg(long, value_name = "T")]
    pub task: Option<String>,
    /// Fire the instance's cascade event and run the rest of the chain.
    #[arg(long)]
    pub cascade: bool,
    /// The cascade event's data: a JSON object [default: {}].
    #[arg(long, value_name = "JSON", requires = "cascade")]
    pub data: Option<String>,
}

/// Arguments of `runner runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Read the store of this daemon configuration (its data_dir and database.file),
    /// as `runner daemon --config PATH` writes it.
    // Its own id: a global argument's value also lands on same-named arguments of the
    // parent command, here the chain's `-c/--config`.
    #[arg(
        id = "runs_config",
        long = "config",
        global = true,
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,

    /// What to read.
    #[command(subcommand)]
    pub command: RunsCommand,
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
        /// Only runs with this status (repeatable): running, ok, failed, halted, exited,
        /// interrupted, lost.
        #[arg(long = "status", value_name = "S")]
        statuses: Vec<String>,
        /// Only runs started at or after TIME: epoch seconds, RFC 3339, a local
        /// `YYYY-MM-DD[ HH:MM[:SS]]`, or a time ago like `2h` or `3days`.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only runs recorded on this host (a fleet database holds many).
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
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
    /// Follow running runs (task starts and results, output) until they end; exits 0
    /// when every run followed ended ok, 1 otherwise.
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
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        conflicts_with = "daemon"
    )]
    pub config: Option<PathBuf>,

    /// As root, do not fail on files that others could write.
    #[arg(long)]
    pub insecure: bool,

    /// Check a daemon configuration (file or directory) instead of a chain.
    #[arg(long, value_name = "PATH", conflicts_with = "taskdir")]
    pub daemon: Option<PathBuf>,

    /// The task directory to check.
    #[arg(value_name = "TASKDIR", required_unless_present = "daemon")]
    pub taskdir: Option<PathBuf>,
}

/// Where the daemon's configuration is, shared by `daemon` and `jobs`.
#[derive(Debug, Args)]
pub struct DaemonConfigArgs {
    /// A YAML or JSON file, or a directory with runner.yaml/runner.json (or dsari's
    /// dsari.yaml/dsari.json) and config.d/ [default: /etc/runner as root,
    /// $XDG_CONFIG_HOME/runner otherwise].
    #[arg(long = "config", value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// Arguments of `runner daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// The daemon's configuration.
    #[command(flatten)]
    pub config: DaemonConfigArgs,

    /// As root, read configuration, trigger files and job commands even if others could
    /// change them (chain jobs get --insecure too).
    #[arg(long)]
    pub insecure: bool,
}

/// The `jobs` subcommands.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List the configured jobs with their schedules, next times and last runs.
    List {
        /// The daemon's configuration.
        #[command(flatten)]
        config: DaemonConfigArgs,
    },
    /// The next due runs of all jobs, soonest first.
    Next {
        /// The daemon's configuration.
        #[command(flatten)]
        config: DaemonConfigArgs,
        /// How many due times to print.
        #[arg(long, default_value_t = 10)]
        count: usize,
    },
}

/// Arguments of `runner trigger`.
#[derive(Debug, Args)]
pub struct TriggerArgs {
    /// The job to run.
    pub job: String,
    /// An environment variable for the run (repeatable).
    #[arg(long = "env", value_name = "K=V", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
    /// When to run: epoch seconds or an ISO 8601 time [default: now].
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// The file's `type` (e.g. git), recorded in the run's trigger_data; the run's trigger
    /// type is file, as in dsari.
    #[arg(long = "type", value_name = "T")]
    pub kind: Option<String>,
    /// A description for people.
    #[arg(long, value_name = "D")]
    pub description: Option<String>,
    /// The daemon's configuration, to find data_dir and check that JOB exists.
    #[arg(long = "config", value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// Arguments of `runner schedule`.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// A cron expression (5 fields, or 6 with seconds last), an @alias, or an RRULE.
    pub expr: String,
    /// The job name that H and R hash on.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Print times after this one (a time exactly on one is not included, as in dsari):
    /// epoch seconds, RFC 3339, or a time without an offset, read in --tz [default: now].
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// How many times to print.
    #[arg(long, default_value_t = 10)]
    pub count: usize,
    /// IANA time zone of the schedule and of the printed times [default: local].
    #[arg(long, value_name = "TZ")]
    pub tz: Option<String>,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
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
