//! What a chain asks about events: which of the names it waits for were fired in its
//! session, and a way to be woken when more are.
//!
//! With a fleet database (contract section 13) the events are the fleet's, shared by
//! every host of the session, together with those in this host's file (the chain's own
//! cascades, and what `runner fire` kept here while the database was away): a name's
//! latest firing in either counts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::watch::Watcher;
use crate::store::{EventRecord, EventStore, FleetEvents, Location, Store};

/// The events of one session in one state directory, opened lazily: a chain whose
/// tasks wait for nothing never touches them.
pub(crate) struct Events {
    state_dir: PathBuf,
    location: Location,
    session: String,
    store: Mutex<Option<Store>>,
    /// The fleet's events, when a fleet database is named.
    fleet: Option<Mutex<FleetEvents>>,
    watcher: OnceLock<Option<Watcher>>,
}

impl Events {
    /// The events of `session` in the store at `location` (a chain's state directory
    /// is `state_dir`), for a chain on host `host`.
    pub(crate) fn new(state_dir: &Path, location: &Location, session: &str, host: &str) -> Events {
        Events {
            state_dir: state_dir.to_owned(),
            location: location.clone(),
            session: session.to_owned(),
            store: Mutex::new(None),
            fleet: location
                .fleet
                .as_ref()
                .map(|url| Mutex::new(FleetEvents::new(url, host, Duration::ZERO))),
            watcher: OnceLock::new(),
        }
    }

    /// The state directory the events are recorded in.
    pub(crate) fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The directory of the database file, where `events.notify` is written.
    fn notify_dir(&self) -> &Path {
        self.location.file().parent().unwrap_or(Path::new("."))
    }

    /// The session.
    pub(crate) fn session(&self) -> &str {
        &self.session
    }

    /// The latest firing of each of `names` in the session. A store that cannot be
    /// read yet (nothing fired, nothing recorded) has no events.
    pub(crate) fn fired(&self, names: &[String]) -> HashMap<String, EventRecord> {
        if names.is_empty() {
            return HashMap::new();
        }
        let mut found = self.fired_here(names);
        let Some(fleet) = &self.fleet else {
            return found;
        };
        let fleet = fleet.lock().unwrap_or_else(|e| e.into_inner());
        // An error was logged (once per outage): this host's events still count.
        if let Ok(shared) = fleet.latest_events(&self.session, names) {
            for (name, event) in shared {
                let newer = found
                    .get(&name)
                    .is_none_or(|here| here.fired_at <= event.fired_at);
                if newer {
                    found.insert(name, event);
                }
            }
        }
        found
    }

    /// The latest firing of each of `names` in this host's file.
    fn fired_here(&self, names: &[String]) -> HashMap<String, EventRecord> {
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        if store.is_none() {
            match Store::read_only(&self.location) {
                Ok(opened) => *store = opened,
                Err(e) => log::debug!("cannot read events: {}", crate::logging::one_line(&e)),
            }
        }
        let Some(open) = store.as_ref() else {
            return HashMap::new();
        };
        match open.latest_events(&self.session, names) {
            Ok(found) => found,
            Err(e) => {
                log::warn!("cannot read events: {}", crate::logging::one_line(&e));
                *store = None;
                HashMap::new()
            }
        }
    }

    /// The watcher that wakes waiting tasks, started on first use; `None` when inotify
    /// is unavailable (one warning; waiting then looks once a second).
    pub(crate) fn watcher(&self) -> Option<&Watcher> {
        self.watcher
            .get_or_init(
                || match Watcher::start(self.notify_dir(), self.location.fleet.as_ref()) {
                    Ok(w) => Some(w),
                    Err(e) => {
                        log::warn!(
                            "cannot watch {} for events ({e}); looking for them every second",
                            self.notify_dir().display()
                        );
                        None
                    }
                },
            )
            .as_ref()
    }
}
