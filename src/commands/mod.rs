//! One module per subcommand; `dispatch` picks one.

mod check;
mod completions;
mod daemon;
mod dispatch;
mod events;
mod fire;
mod get;
mod live;
mod metrics;
mod prepare;
mod print;
mod replay;
mod report;
mod run;
mod runs;
mod schedule;
mod trigger;
mod workbench;

pub(crate) use dispatch::dispatch;
