//! The scheduler daemon's configuration: dsari's YAML/JSON keys plus runner's own.
//!
//! `source` finds the files and merges them as dsari does, `tree` (with `yaml` for YAML)
//! parses one file into values that remember their file, line and column, `fields` reads
//! typed keys with errors that name file, line, column, job and key,
//! `keys` says which keys exist (and drops, with a warning, those dsari would ignore),
//! `job` reads one job, `job_groups` assembles `jobs` and expands `job_groups`, and `load`
//! checks the whole. Schedule expressions are kept as text: the schedule module validates them.

mod fields;
mod job;
mod job_groups;
mod keys;
mod load;
mod source;
mod tree;
mod yaml;

pub(crate) use job::{CatchUp, Job};
pub(crate) use load::DaemonConfig;
