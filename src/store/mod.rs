//! Recording runs: the SQLite store (and which file it is), output capture, retention,
//! and the chain recorder.

mod backend;
mod capture;
mod checkpoint;
mod events;
mod fleet_lock;
mod fleet_sync;
mod fleet_url;
mod location;
mod lost;
pub(crate) mod metrics;
pub(crate) mod model;
mod owner;
pub(crate) mod paths;
mod pg_events;
mod pg_metrics;
mod postgres;
mod quantile;
mod query;
mod recorder;
mod resume;
pub(crate) mod retention;
mod run_id;
mod schema;
mod spool;
mod sqlite;
mod writer;

pub(crate) use backend::{RunStore, StoredOutput, open_for_reading, open_for_writing};
pub(crate) use events::{
    EventRecord, EventStore, Fired, NOTIFY_FILE, NewEvent, fire, open_events_for_reading,
};
pub(crate) use fleet_lock::{FleetLock, FleetLockOutcome};
pub(crate) use fleet_url::{FleetUrl, warn_away};
pub(crate) use location::Location;
pub(crate) use owner::Owner;
pub(crate) use pg_events::{FleetEvents, Listener};
pub(crate) use pg_metrics::{RecordsView, open_records_view};
pub(crate) use recorder::StoreRecorder;
pub(crate) use resume::FleetCopy;
pub(crate) use run_id::new_run_id;
pub(crate) use spool::finish as finish_records;
pub(crate) use sqlite::{NewRun, RunEnd, Store, StoreError};
