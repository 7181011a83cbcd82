//! The chain's INI configuration: reading ([`ini`]), typing ([`chain`]) and durations.

pub(crate) mod chain;
pub(crate) mod daemon;
pub(crate) mod duration;
mod error;
pub(crate) mod ini;
mod near_miss;
pub(crate) mod nesting;

pub(crate) use chain::{ChainConfig, Frequency, Leftovers, RetryFrom, TaskSettings};
pub(crate) use error::ConfigError;
