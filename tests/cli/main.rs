//! Black-box tests of the `runner` binary: real task directories in temp dirs, real
//! processes, real signals.

mod pg_server;
mod support;

mod check;
mod cli_misc;
mod config_errors;
mod crash;
mod daemon;
mod daemon_events;
mod dsari_store;
mod escapees;
mod events;
mod exits;
mod fleet;
mod fleet_events;
mod fleet_records;
mod fleet_replay;
mod hooks_env;
mod hostile;
mod live;
mod lock;
mod mozilla;
mod observe;
mod order;
mod processes;
mod records;
mod replay;
mod safety;
mod schedules;
mod store_paths;
mod supervision;
mod words;
