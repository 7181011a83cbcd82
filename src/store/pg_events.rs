//! Events in the fleet's PostgreSQL (contract section 13): shared by every host of a
//! session, and waking waiters on any host with LISTEN/NOTIFY, without polling.
//!
//! Firing inserts the event and calls `pg_notify` on [`CHANNEL`] in one transaction;
//! PostgreSQL delivers the notification to every listening connection when it commits.
//! A [`Listener`] is one connection that only listens: a waiting chain or daemon blocks
//! on its socket and is woken by the server. Event ids come from one sequence, and
//! firings take one advisory lock for the length of their transaction, so ids commit in
//! order and "the events after id N" (a daemon's `and_every`) never skips a late commit.
//!
//! [`FleetEvents`] is the fleet's events for a long-lived process (a chain, the daemon):
//! it connects on first use, and when the database goes away it warns once (for the
//! whole process) and reconnects. A chain looks only when woken, so it tries again at
//! every look; the daemon's loop looks often, so after a failed connect it answers with
//! an error at once for a few seconds rather than wait on a dead network each time.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls, Row};

use super::events::{EventRecord, EventStore, NewEvent};
use super::fleet_url::FleetUrl;
use super::postgres::{PgStore, Prepared};
use super::sqlite::{StoreError, epoch};

/// The channel events are announced on; the payload is the event's session.
pub(crate) const CHANNEL: &str = "runner_events";

/// The advisory lock every firing holds until it commits (any constant unique to runner).
const FIRE_LOCK: i64 = 0x7275_6e6e_6572_0002;

const COLUMNS: &str = "id, session, name, data, fired_at, source";

fn event_row(row: &Row) -> EventRecord {
    let data: String = row.get(3);
    EventRecord {
        id: row.get(0),
        session: row.get(1),
        name: row.get(2),
        data: serde_json::from_str(&data).unwrap_or_else(|_| serde_json::json!({})),
        fired_at: row.get(4),
        source: row.get(5),
    }
}

/// Inserts `event` inside an open transaction and announces it at commit, in one
/// statement (the lock first: the insert reads its row); its id.
pub(super) fn insert_event(
    tx: &mut postgres::Transaction<'_>,
    prepared: &mut Prepared,
    event: &NewEvent<'_>,
    at: SystemTime,
    host: &str,
) -> Result<i64, postgres::Error> {
    let insert = prepared.get(
        tx,
        "WITH locked AS (SELECT pg_advisory_xact_lock($7::bigint)),
              added AS (INSERT INTO events (session, name, data, fired_at, source, host)
                        SELECT $1::text, $2::text, $3::text, $4::float8, $5::text, $6::text
                        FROM locked RETURNING id, session)
         SELECT id, (SELECT count(*) FROM (SELECT pg_notify($8::text, session) FROM added) n)
         FROM added",
    )?;
    let row = tx.query_one(
        &insert,
        &[
            &event.session,
            &event.name,
            &event.data.to_string(),
            &epoch(at),
            &event.source,
            &host,
            &FIRE_LOCK,
            &CHANNEL,
        ],
    )?;
    Ok(row.get(0))
}

/// Inserts, inside an open transaction, each of `events` (a run's, sent late from the
/// local store) that the database does not have yet: the same session, name, source
/// and firing time, as the live mirror wrote it before the connection went away. The
/// firing lock is taken first, in a statement of its own, so that the check sees every
/// firing committed before it; each event inserted is announced at commit.
pub(super) fn insert_sent_events(
    tx: &mut postgres::Transaction<'_>,
    events: &[EventRecord],
    host: &str,
) -> Result<(), postgres::Error> {
    if events.is_empty() {
        return Ok(());
    }
    tx.execute("SELECT pg_advisory_xact_lock($1::bigint)", &[&FIRE_LOCK])?;
    let insert = tx.prepare(
        "WITH added AS (INSERT INTO events (session, name, data, fired_at, source, host)
                        SELECT $1::text, $2::text, $3::text, $4::float8, $5::text, $6::text
                        WHERE NOT EXISTS (SELECT 1 FROM events WHERE session = $1::text
                            AND name = $2::text AND fired_at = $4::float8
                            AND source IS NOT DISTINCT FROM $5::text)
                        RETURNING session)
         SELECT count(*) FROM (SELECT pg_notify($7::text, session) FROM added) n",
    )?;
    for event in events {
        tx.query_one(
            &insert,
            &[
                &event.session,
                &event.name,
                &event.data.to_string(),
                &event.fired_at,
                &event.source,
                &host,
                &CHANNEL,
            ],
        )?;
    }
    Ok(())
}

/// One firing of an event: its id, made once by the firing process, and its time, so
/// that sending it again (its connection died, maybe after the commit landed) records
/// it once.
#[derive(Debug, Clone)]
pub(crate) struct Firing {
    id: String,
    at: SystemTime,
}

impl Firing {
    /// A new firing, now.
    pub(crate) fn new() -> Firing {
        Firing {
            id: uuid::Uuid::new_v4().to_string(),
            at: SystemTime::now(),
        }
    }
}

impl PgStore {
    /// Records `firing` of `event` unless the database has it already (an earlier try
    /// of the same firing committed), and announces it when it is new; the event as
    /// stored either way.
    pub(crate) fn fire_once(
        &mut self,
        event: &NewEvent<'_>,
        firing: &Firing,
    ) -> Result<EventRecord, StoreError> {
        let host = self.host().to_owned();
        let result = (|| {
            let (client, prepared) = self.client_mut();
            let mut tx = client.transaction()?;
            let insert = prepared.get(
                &mut tx,
                "WITH locked AS (SELECT pg_advisory_xact_lock($7::bigint)),
                      added AS (INSERT INTO events (session, name, data, fired_at, source,
                                    host, firing_id)
                                SELECT $1::text, $2::text, $3::text, $4::float8, $5::text,
                                    $6::text, $9::text::uuid
                                FROM locked
                                ON CONFLICT (firing_id) DO NOTHING
                                RETURNING id, fired_at, session)
                 SELECT id, fired_at,
                    (SELECT count(*) FROM (SELECT pg_notify($8::text, session) FROM added) n)
                 FROM added",
            )?;
            let added = tx.query_opt(
                &insert,
                &[
                    &event.session,
                    &event.name,
                    &event.data.to_string(),
                    &epoch(firing.at),
                    &event.source,
                    &host,
                    &FIRE_LOCK,
                    &CHANNEL,
                    &firing.id,
                ],
            )?;
            // Not new: the earlier try's row (a statement of its own, whose snapshot
            // sees that commit even if it landed while this one waited).
            let row = match added {
                Some(row) => row,
                None => tx.query_one(
                    "SELECT id, fired_at FROM events WHERE firing_id = $1::text::uuid",
                    &[&firing.id],
                )?,
            };
            tx.commit()?;
            Ok((row.get::<_, i64>(0), row.get::<_, f64>(1)))
        })();
        let (id, fired_at) = result.map_err(|e| self.wrap(e))?;
        let mut stored = event.stored(id, firing.at);
        stored.fired_at = fired_at;
        Ok(stored)
    }
}

impl EventStore for PgStore {
    fn fire_event(&mut self, event: &NewEvent<'_>) -> Result<EventRecord, StoreError> {
        self.fire_once(event, &Firing::new())
    }

    fn list_events(&self, session: Option<&str>) -> Result<Vec<EventRecord>, StoreError> {
        self.client()
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM events WHERE $1::text IS NULL OR session = $1
                     ORDER BY id"
                ),
                &[&session],
            )
            .map(|rows| rows.iter().map(event_row).collect())
            .map_err(|e| self.wrap(e))
    }

    fn latest_events(
        &self,
        session: &str,
        names: &[String],
    ) -> Result<HashMap<String, EventRecord>, StoreError> {
        self.client()
            .query(
                &format!(
                    "SELECT DISTINCT ON (name) {COLUMNS} FROM events
                     WHERE session = $1 AND name = ANY($2) ORDER BY name, id DESC"
                ),
                &[&session, &names],
            )
            .map(|rows| {
                rows.iter()
                    .map(event_row)
                    .map(|e| (e.name.clone(), e))
                    .collect()
            })
            .map_err(|e| self.wrap(e))
    }

    fn events_since(
        &self,
        session: &str,
        names: &[String],
        after: i64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.client()
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM events
                     WHERE session = $1 AND name = ANY($2) AND id > $3 ORDER BY id"
                ),
                &[&session, &names, &after],
            )
            .map(|rows| rows.iter().map(event_row).collect())
            .map_err(|e| self.wrap(e))
    }

    fn last_event_id(&self) -> Result<i64, StoreError> {
        self.client()
            .query_one("SELECT coalesce(max(id), 0)::bigint FROM events", &[])
            .map(|row| row.get(0))
            .map_err(|e| self.wrap(e))
    }

    fn prune_events(&mut self, cutoff: f64) -> Result<usize, StoreError> {
        self.client_mut()
            .0
            .execute("DELETE FROM events WHERE fired_at < $1", &[&cutoff])
            .map(|n| n as usize)
            .map_err(|e| self.wrap(e))
    }
}

/// A connection that listens on [`CHANNEL`], and nothing else.
pub(crate) struct Listener {
    client: Client,
    url: FleetUrl,
}

impl Listener {
    /// Connects (within the connect timeout) and starts listening: every event committed
    /// from the moment this returns is announced to it.
    pub(crate) fn open(url: &FleetUrl) -> Result<Listener, StoreError> {
        let wrap = |source| StoreError::Postgres {
            url: url.describe(),
            source,
        };
        let mut client = url.config().connect(NoTls).map_err(wrap)?;
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .map_err(wrap)?;
        Ok(Listener {
            client,
            url: url.clone(),
        })
    }

    /// Blocks until an event is announced; an error when the connection is gone (TCP
    /// keepalives bound how long a dead network takes to notice).
    pub(crate) fn wait(&mut self) -> Result<(), StoreError> {
        let mut notifications = self.client.notifications();
        let next = notifications.blocking_iter().next();
        match next {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(StoreError::FleetAway {
                url: self.url.describe(),
            }),
            Err(source) => Err(StoreError::Postgres {
                url: self.url.describe(),
                source,
            }),
        }
    }
}

/// The fleet's events for a long-lived process: connected on first use, reconnected
/// after a failure (not sooner than its `retry_after`), one warning per outage.
pub(crate) struct FleetEvents {
    url: FleetUrl,
    host: String,
    retry_after: Duration,
    store: RefCell<Option<PgStore>>,
    next_try: Cell<Option<Instant>>,
    away: Cell<bool>,
}

impl FleetEvents {
    /// The events of the fleet database `url`, as host `host`; nothing is connected yet.
    /// After a failed connect, it answers with an error at once for `retry_after` (a
    /// loop that must not stall on a dead network); zero tries again at every call.
    pub(crate) fn new(url: &FleetUrl, host: &str, retry_after: Duration) -> FleetEvents {
        FleetEvents {
            url: url.clone(),
            host: host.to_owned(),
            retry_after,
            store: RefCell::new(None),
            next_try: Cell::new(None),
            away: Cell::new(false),
        }
    }

    fn with<T>(&self, f: impl Fn(&mut PgStore) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut store = self.store.borrow_mut();
        // A connection kept from before may have died since (a restarted server): its
        // failure is tried again at once on a fresh one, or a wake-up would be lost.
        if let Some(open) = store.as_mut() {
            match f(open) {
                Ok(found) => return Ok(found),
                Err(e) => log::debug!(
                    "fleet events: {}; reconnecting",
                    crate::logging::one_line(&e)
                ),
            }
            *store = None;
        }
        if self.next_try.get().is_some_and(|t| Instant::now() < t) {
            return Err(StoreError::FleetAway {
                url: self.url.describe(),
            });
        }
        let result = PgStore::open(&self.url, &self.host).and_then(|mut opened| {
            let found = f(&mut opened)?;
            *store = Some(opened);
            Ok(found)
        });
        match &result {
            Ok(_) => {
                if self.away.replace(false) {
                    log::info!("{} answers again; events are shared", self.url.describe());
                }
            }
            Err(e) => self.lost(e),
        }
        result
    }

    fn lost(&self, e: &StoreError) {
        self.next_try.set(Some(Instant::now() + self.retry_after));
        if !self.away.replace(true) {
            super::fleet_url::warn_away(&format!(
                "{}; events of other hosts are not seen until it answers",
                crate::logging::one_line(e)
            ));
        }
    }
}

impl EventStore for FleetEvents {
    fn fire_event(&mut self, event: &NewEvent<'_>) -> Result<EventRecord, StoreError> {
        // A try again on a fresh connection is the same firing.
        let firing = Firing::new();
        self.with(|s| s.fire_once(event, &firing))
    }
    fn list_events(&self, session: Option<&str>) -> Result<Vec<EventRecord>, StoreError> {
        self.with(|s| EventStore::list_events(s, session))
    }
    fn latest_events(
        &self,
        session: &str,
        names: &[String],
    ) -> Result<HashMap<String, EventRecord>, StoreError> {
        self.with(|s| EventStore::latest_events(s, session, names))
    }
    fn events_since(
        &self,
        session: &str,
        names: &[String],
        after: i64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.with(|s| EventStore::events_since(s, session, names, after))
    }
    fn last_event_id(&self) -> Result<i64, StoreError> {
        self.with(|s| EventStore::last_event_id(s))
    }
    fn prune_events(&mut self, cutoff: f64) -> Result<usize, StoreError> {
        self.with(|s| EventStore::prune_events(s, cutoff))
    }
}
