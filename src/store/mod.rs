//! Recording runs: the SQLite store (and which file it is), output capture, retention,
//! and the chain recorder.

mod capture;
mod events;
mod location;
mod lost;
pub(crate) mod metrics;
pub(crate) mod model;
mod owner;
mod quantile;
mod query;
mod recorder;
mod resume;
pub(crate) mod retention;
mod schema;
mod sqlite;
mod writer;

pub(crate) use events::{EventRecord, NOTIFY_FILE, NewEvent, notify};
pub(crate) use location::Location;
pub(crate) use owner::Owner;
pub(crate) use recorder::StoreRecorder;
pub(crate) use sqlite::{NewRun, Store, StoreError};
