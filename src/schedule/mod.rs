//! Schedule computation: when is a job due next?
//!
//! Supports cron expressions (5 fields, or 6 with seconds last), `@aliases`,
//! Jenkins-style `H`/`R` hashing and RFC 5545 `RRULE:` strings, all hashed the
//! way dsari hashes them so a job migrated from dsari keeps its exact times.
//! See `NOTES.md` for the sources each rule was derived from.

mod cron;
mod error;
mod field;
mod hash;
mod rrule;
mod timing;
mod zone;

pub(crate) use error::ScheduleError;
pub(crate) use timing::Schedule;
