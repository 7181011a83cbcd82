//! Schedule computation: when is a job due next?
//!
//! Supports cron expressions (5 fields, or 6 with seconds last), `@aliases`,
//! Jenkins-style `H`/`R` hashing and RFC 5545 `RRULE:` strings, all hashed the
//! way dsari hashes them so a job migrated from dsari keeps its exact times.
//! `tests/data/dsari-schedules.tsv` holds 2,000 schedules with the times
//! dsari 2.0 itself computed; `fixture.rs` checks every row, and
//! `tests/cli/schedules.rs` a sample through `runner schedule`.

mod cron;
mod error;
mod field;
#[cfg(test)]
mod fixture;
mod hash;
#[cfg(test)]
mod props;
mod rrule;
mod timing;
mod zone;

pub(crate) use error::ScheduleError;
pub(crate) use timing::Schedule;
pub(crate) use zone::instant_of;
