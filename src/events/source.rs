//! What a chain asks about events: which of the names it waits for were fired in its
//! session, and a way to be woken when more are.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::watch::Watcher;
use crate::store::{EventRecord, Location, Store};

/// The events of one session in one state directory, opened lazily: a chain whose
/// tasks wait for nothing never touches them.
pub(crate) struct Events {
    state_dir: PathBuf,
    location: Location,
    session: String,
    store: Mutex<Option<Store>>,
    watcher: OnceLock<Option<Watcher>>,
}

impl Events {
    /// The events of `session` in the store at `location` (a chain's state directory
    /// is `state_dir`).
    pub(crate) fn new(state_dir: &Path, location: &Location, session: &str) -> Events {
        Events {
            state_dir: state_dir.to_owned(),
            location: location.clone(),
            session: session.to_owned(),
            store: Mutex::new(None),
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
            .get_or_init(|| match Watcher::start(self.notify_dir()) {
                Ok(w) => Some(w),
                Err(e) => {
                    log::warn!(
                        "cannot watch {} for events ({e}); looking for them every second",
                        self.notify_dir().display()
                    );
                    None
                }
            })
            .as_ref()
    }
}
