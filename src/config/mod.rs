//! The configurations: the chain's INI (reading in [`ini`], typing in [`chain`]), the
//! daemon's YAML/JSON ([`daemon`]), and what they share: one error type, durations, the
//! near-miss rule and the nesting bounds.

pub(crate) mod chain;
pub(crate) mod daemon;
pub(crate) mod duration;
pub(crate) mod error;
pub(crate) mod ini;
pub(crate) mod names;
mod near_miss;
pub(crate) mod nesting;

pub(crate) use chain::{ChainConfig, Frequency, Leftovers, RetryFrom, TaskSettings};
pub(crate) use error::{ConfigError, ErrorKind, Position, Scope};
