//! Events in the store: fired, listed, looked up by name, pruned, and the file whose
//! change tells waiting chains that something was fired; the [`EventStore`] seam that
//! the fleet's PostgreSQL implements too (`store/pg_events.rs`).
//!
//! An event is one row of `events`: its id is the order in which events were committed,
//! so "which came first" has one answer for every reader. After each commit the firing
//! process closes [`NOTIFY_FILE`] in the state directory after writing it; waiting chains
//! watch the directory with inotify (see `crate::events`), which is how they wake without
//! polling.

use std::collections::HashMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::SystemTime;

use rusqlite::{TransactionBehavior, params};
use serde::Serialize;

use super::sqlite::{Store, StoreError, epoch};

/// The file in the state directory that is written after every committed event.
pub(crate) const NOTIFY_FILE: &str = "events.notify";

/// One fired event, as `events list` shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EventRecord {
    /// Its sequence number: events are ordered by it.
    pub(crate) id: i64,
    /// The session it was fired in.
    pub(crate) session: String,
    /// Its name.
    pub(crate) name: String,
    /// Its data, always a JSON object.
    pub(crate) data: serde_json::Value,
    /// When it was fired (epoch seconds).
    pub(crate) fired_at: f64,
    /// Who fired it: `fire`, `cascade RUN_ID`, `skip RUN_ID`.
    pub(crate) source: Option<String>,
}

/// An event to insert.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewEvent<'a> {
    /// The session.
    pub(crate) session: &'a str,
    /// The name.
    pub(crate) name: &'a str,
    /// A JSON object.
    pub(crate) data: &'a serde_json::Value,
    /// Who fired it.
    pub(crate) source: &'a str,
}

impl NewEvent<'_> {
    /// The event as stored with `id`, fired at `at`.
    pub(super) fn stored(&self, id: i64, at: SystemTime) -> EventRecord {
        EventRecord {
            id,
            session: self.session.to_owned(),
            name: self.name.to_owned(),
            data: self.data.clone(),
            fired_at: epoch(at),
            source: Some(self.source.to_owned()),
        }
    }
}

const COLUMNS: &str = "id, session, name, data, fired_at, source";

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRecord> {
    let data: String = r.get(3)?;
    Ok(EventRecord {
        id: r.get(0)?,
        session: r.get(1)?,
        name: r.get(2)?,
        data: serde_json::from_str(&data).unwrap_or_else(|_| serde_json::json!({})),
        fired_at: r.get(4)?,
        source: r.get(5)?,
    })
}

/// Inserts `event` inside an open transaction; returns its id.
pub(super) fn insert_event(
    tx: &rusqlite::Connection,
    event: &NewEvent<'_>,
    at: SystemTime,
) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO events (session, name, data, fired_at, source) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        event.session,
        event.name,
        event.data.to_string(),
        epoch(at),
        event.source
    ])?;
    Ok(tx.last_insert_rowid())
}

impl Store {
    /// Records an event in its own transaction and returns it as stored.
    pub(crate) fn fire_event(&mut self, event: &NewEvent<'_>) -> Result<EventRecord, StoreError> {
        let now = SystemTime::now();
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let id = insert_event(&tx, event, now)?;
            tx.commit()?;
            Ok(id)
        })();
        let id = result.map_err(|e| self.wrap(e))?;
        Ok(event.stored(id, now))
    }

    /// The events of `session` (of every session for `None`), oldest first.
    pub(crate) fn list_events(
        &self,
        session: Option<&str>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let result = (|| {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM events WHERE ?1 IS NULL OR session = ?1 ORDER BY id"
            ))?;
            let rows = stmt.query_map([session], event_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })();
        result.map_err(|e| self.wrap(e))
    }

    /// The latest firing of each of `names` in `session`, by name.
    pub(crate) fn latest_events(
        &self,
        session: &str,
        names: &[String],
    ) -> Result<HashMap<String, EventRecord>, StoreError> {
        let names_json = serde_json::to_string(names).unwrap_or_else(|_| "[]".to_owned());
        let result = (|| {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM events WHERE id IN (
                    SELECT max(id) FROM events WHERE session = ?1
                      AND name IN (SELECT value FROM json_each(?2)) GROUP BY name)"
            ))?;
            let rows = stmt.query_map(params![session, names_json], event_row)?;
            rows.map(|r| r.map(|e| (e.name.clone(), e)))
                .collect::<rusqlite::Result<HashMap<_, _>>>()
        })();
        result.map_err(|e| self.wrap(e))
    }

    /// The events of `session` named one of `names` committed after event `after`,
    /// oldest first (what a daemon job's `and_every` has not seen yet).
    pub(crate) fn events_since(
        &self,
        session: &str,
        names: &[String],
        after: i64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let names_json = serde_json::to_string(names).unwrap_or_else(|_| "[]".to_owned());
        let result = (|| {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM events WHERE session = ?1 AND id > ?3
                   AND name IN (SELECT value FROM json_each(?2)) ORDER BY id"
            ))?;
            let rows = stmt.query_map(params![session, names_json, after], event_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })();
        result.map_err(|e| self.wrap(e))
    }

    /// The id of the newest event (0 when there is none).
    pub(crate) fn last_event_id(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT coalesce(max(id), 0) FROM events", [], |r| r.get(0))
            .map_err(|e| self.wrap(e))
    }

    /// The directory whose [`NOTIFY_FILE`] announces this store's events: the one
    /// holding the database file.
    pub(crate) fn notify_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Deletes the events fired before `cutoff` (epoch seconds); returns how many.
    pub(crate) fn prune_events(&mut self, cutoff: f64) -> Result<usize, StoreError> {
        self.conn
            .execute("DELETE FROM events WHERE fired_at < ?1", [cutoff])
            .map_err(|e| self.wrap(e))
    }
}

/// Where events are kept, whichever engine holds them: the SQLite file of one host, or
/// the fleet's PostgreSQL, shared by every host (contract section 13). Firing through it
/// also wakes the waiters it can reach (inotify beside the file, NOTIFY in the database).
pub(crate) trait EventStore {
    /// Records an event in its own transaction, wakes waiters, returns it as stored.
    fn fire_event(&mut self, event: &NewEvent<'_>) -> Result<EventRecord, StoreError>;
    /// Records several events, in the order given, and wakes waiters once; one result
    /// each. Each is fired on its own unless the store can do better.
    fn fire_events(&mut self, events: &[NewEvent<'_>]) -> Vec<Result<(), StoreError>> {
        events
            .iter()
            .map(|event| self.fire_event(event).map(drop))
            .collect()
    }
    /// The events of `session` (of every session for `None`), oldest first.
    fn list_events(&self, session: Option<&str>) -> Result<Vec<EventRecord>, StoreError>;
    /// The latest firing of each of `names` in `session`, by name.
    fn latest_events(
        &self,
        session: &str,
        names: &[String],
    ) -> Result<HashMap<String, EventRecord>, StoreError>;
    /// The events of `session` named one of `names` committed after event `after`.
    fn events_since(
        &self,
        session: &str,
        names: &[String],
        after: i64,
    ) -> Result<Vec<EventRecord>, StoreError>;
    /// The id of the newest event (0 when there is none).
    fn last_event_id(&self) -> Result<i64, StoreError>;
    /// Deletes the events fired before `cutoff` (epoch seconds); returns how many.
    fn prune_events(&mut self, cutoff: f64) -> Result<usize, StoreError>;
}

impl EventStore for Store {
    fn fire_event(&mut self, event: &NewEvent<'_>) -> Result<EventRecord, StoreError> {
        let fired = Store::fire_event(self, event)?;
        notify(self.notify_dir());
        Ok(fired)
    }
    /// One transaction and one wake-up for all of them (the daemon fires an event for
    /// each run that succeeds, a thousand a second on a busy one); one by one if that
    /// transaction fails.
    fn fire_events(&mut self, events: &[NewEvent<'_>]) -> Vec<Result<(), StoreError>> {
        if events.len() > 1 {
            let now = SystemTime::now();
            let at_once = (|| {
                let tx = self
                    .conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)?;
                for event in events {
                    insert_event(&tx, event, now)?;
                }
                tx.commit()
            })();
            match at_once {
                Ok(()) => {
                    notify(self.notify_dir());
                    return events.iter().map(|_| Ok(())).collect();
                }
                Err(e) => log::debug!(
                    "cannot fire {} events at once ({e}); one by one",
                    events.len()
                ),
            }
        }
        events
            .iter()
            .map(|event| EventStore::fire_event(self, event).map(drop))
            .collect()
    }
    fn list_events(&self, session: Option<&str>) -> Result<Vec<EventRecord>, StoreError> {
        Store::list_events(self, session)
    }
    fn latest_events(
        &self,
        session: &str,
        names: &[String],
    ) -> Result<HashMap<String, EventRecord>, StoreError> {
        Store::latest_events(self, session, names)
    }
    fn events_since(
        &self,
        session: &str,
        names: &[String],
        after: i64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        Store::events_since(self, session, names, after)
    }
    fn last_event_id(&self) -> Result<i64, StoreError> {
        Store::last_event_id(self)
    }
    fn prune_events(&mut self, cutoff: f64) -> Result<usize, StoreError> {
        Store::prune_events(self, cutoff)
    }
}

/// Where a fired event went.
pub(crate) enum Fired {
    /// Into the store named: the fleet's database when there is one.
    Stored(EventRecord),
    /// Into this host's file only: the fleet database named did not take it (why).
    LocalOnly(EventRecord, StoreError),
}

/// Fires `event` into the store at `location`: the fleet's database when one is named
/// (falling back, when it cannot be reached, to this host's file, so that this host's
/// chains still see it), else the file.
pub(crate) fn fire(
    location: &super::Location,
    host: &str,
    event: &NewEvent<'_>,
) -> Result<Fired, StoreError> {
    if let Some(url) = &location.fleet {
        // A connection that dies under the firing (its commit may have landed or not)
        // is tried once more, fresh, as the same firing: recorded once either way.
        let firing = super::pg_events::Firing::new();
        let shared = super::postgres::PgStore::open(url, host).and_then(|mut pg| {
            match pg.fire_once(event, &firing) {
                Ok(fired) => Ok(fired),
                Err(e) => {
                    log::debug!(
                        "firing \"{}\" again: {}",
                        event.name,
                        crate::logging::one_line(&e)
                    );
                    super::postgres::PgStore::open(url, host)?.fire_once(event, &firing)
                }
            }
        });
        match shared {
            Ok(fired) => return Ok(Fired::Stored(fired)),
            Err(e) => {
                let mut local = Store::open_at(location)?;
                let fired = EventStore::fire_event(&mut local, event)?;
                return Ok(Fired::LocalOnly(fired, e));
            }
        }
    }
    let mut local = Store::open_at(location)?;
    Ok(Fired::Stored(EventStore::fire_event(&mut local, event)?))
}

/// Opens the events at `location` for reading: the fleet's database (an error when it
/// cannot be reached, as for runs), else the file, `None` when there is none yet.
pub(crate) fn open_events_for_reading(
    location: &super::Location,
    host: &str,
) -> Result<Option<Box<dyn EventStore>>, StoreError> {
    if let Some(url) = &location.fleet {
        return Ok(Some(Box::new(super::postgres::PgStore::open(url, host)?)));
    }
    Ok(Store::read_only(location)?.map(|s| Box::new(s) as Box<dyn EventStore>))
}

/// Tells waiting chains that an event was committed: opens `events.notify` in `dir`, the
/// database file's directory, for writing (never through a symlink) and closes it, which
/// inotify reports as `IN_CLOSE_WRITE`. The file stays empty, so it is not truncated: that
/// would update its inode at every cascade, once for each task of a chain.
/// Failure only delays waiters until their next wake-up, so it is logged at debug level
/// and otherwise ignored.
pub(crate) fn notify(dir: &Path) {
    let path = dir.join(NOTIFY_FILE);
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path);
    if let Err(e) = opened {
        log::debug!("cannot write {}: {e}", path.display());
    }
}
