//! The scheduler daemon: dsari's jobs, schedules, triggers and concurrency groups, with
//! every run recorded in the same store as chain runs.

mod control;
pub(crate) mod jobs;
mod launch;
mod service;
mod signals;

pub(crate) use service::{Service, Setup, data_dir};
