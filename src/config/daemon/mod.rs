//! The scheduler daemon's configuration: dsari's YAML/JSON keys plus runner's own.
//!
//! `source` finds the files and merges them as dsari does, `tree` (with `yaml` for YAML)
//! parses one file into values that remember their file, line and column, `de` reads them
//! into serde-derived structs with errors that name file, line, column, job and key (and
//! warns about keys dsari would ignore), `job` checks one job, `job_groups` assembles
//! `jobs` and expands `job_groups`, and `load` reads the top level and checks the whole. Schedule expressions are kept as text: the schedule module validates them.

mod de;
mod job;
mod job_groups;
mod load;
mod source;
mod tree;
mod yaml;

pub(crate) use job::{CatchUp, Job};
pub(crate) use load::DaemonConfig;
