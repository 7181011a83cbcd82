//! The scheduler daemon: dsari's jobs, schedules, triggers and concurrency groups, with
//! every run recorded in the same store as chain runs.
//!
//! `planner` makes every scheduling decision from the time it is given (pure, unit-tested);
//! `service` is the loop around it that starts processes, records runs and answers
//! signals; `intake` reads trigger files and reloaded configurations on its own thread,
//! told by `watch` (inotify) when a file arrives; `launch` builds one run's directory,
//! environment and command; `ends` hands ended runs to the loop; `gate` holds or drops due runs of jobs that wait for events.

mod ends;
mod gate;
mod intake;
pub(crate) mod jobs;
mod launch;
mod planner;
mod pool;
mod service;
mod signals;
mod watch;

pub(crate) use service::{Service, Setup, data_dir};
