//! Events for daemon jobs (`after`, `unless`, `and_every`, `with_params`): whether a
//! due run may start, and which new firings ask for runs.
//!
//! The planner asks, through `poll_with`, about each due run that has its job and a slot;
//! [`Gates::admit`] answers from the store: start (with the events' data added to the
//! request), hold, or drop.
//!
//! The rules are a chain task's: a run of a job with `after` waits until every event
//! listed was fired in the daemon's session (before or after the daemon started); a
//! run of a job with `unless` is dropped if that event was fired by the time it would
//! start (`unless` wins, whatever the order). `and_every: E` makes each firing of `E`
//! after the daemon started request one more run. The loop is woken by the same inotify
//! watch as a waiting chain, so a job that waits costs nothing until something is fired.

use super::jobs::{JobTable, ScheduledJob};
use super::launch::Request;
use super::planner::Admission;
use crate::config::daemon::Job;
use crate::store::{EventRecord, EventStore};

/// The trigger type of a run asked for by events (`after` alone, or `and_every`).
pub(crate) const TRIGGER_TYPE: &str = "event";

/// The file in a run's directory that `RUNNER_EVENTS` names.
pub(crate) const EVENTS_FILE: &str = "events.json";

/// Whether a run may start.
#[derive(Debug)]
pub(crate) enum Gate {
    /// Yes: the data of the events it waited for, by name, `with_params` merged in.
    Open(serde_json::Map<String, serde_json::Value>),
    /// Not yet: an `after` event is missing.
    Wait,
    /// Never: this `unless` event was fired.
    Closed(String),
}

/// Whether `job` uses events at all.
pub(crate) fn has_events(job: &Job) -> bool {
    !job.after().is_empty() || !job.unless().is_empty() || job.and_every().is_some()
}

/// Whether a job's run needs an initial request to wait for its `after` events: a job
/// with `after` and neither a schedule nor `and_every` runs once they are fired.
pub(crate) fn runs_once_after(job: &ScheduledJob) -> bool {
    !job.job.after().is_empty() && job.schedule().is_none() && job.job.and_every().is_none()
}

/// What the event rules of the daemon's session need to remember.
pub(crate) struct Gates {
    session: String,
    /// The newest event already turned into `and_every` runs; unknown while the store
    /// could not be read yet (a fleet database away when the daemon started): the
    /// first successful read sets it, so that old firings never start runs.
    seen: Option<i64>,
}

impl Gates {
    /// Gates for `session`; only events fired from now on count for `and_every`.
    pub(crate) fn new(store: &dyn EventStore, session: String) -> Gates {
        let seen = store
            .last_event_id()
            .map_err(|e| log::warn!("cannot read events: {}", crate::logging::one_line(&e)))
            .ok();
        Gates { session, seen }
    }

    /// The session.
    pub(crate) fn session(&self) -> &str {
        &self.session
    }

    /// Whether a run of `job` may start now. `every` is the `and_every` firing that
    /// requested the run, if one did.
    pub(crate) fn check(
        &self,
        store: &dyn EventStore,
        job: &Job,
        every: Option<&EventRecord>,
    ) -> Gate {
        let names: Vec<String> = job
            .after()
            .iter()
            .chain(job.unless().iter())
            .cloned()
            .collect();
        let fired = if names.is_empty() {
            Default::default()
        } else {
            match store.latest_events(&self.session, &names) {
                Ok(fired) => fired,
                Err(e) => {
                    log::warn!("cannot read events: {}", crate::logging::one_line(&e));
                    return Gate::Wait;
                }
            }
        };
        if let Some(event) = job.unless().iter().find(|n| fired.contains_key(*n)) {
            return Gate::Closed(event.clone());
        }
        let mut data = serde_json::Map::new();
        for name in job.after() {
            match fired.get(name) {
                Some(event) => {
                    data.insert(name.clone(), with_params(&event.data, job));
                }
                None => return Gate::Wait,
            }
        }
        if let Some(event) = every {
            data.insert(event.name.clone(), with_params(&event.data, job));
        }
        Gate::Open(data)
    }

    /// What the planner does with a due run of `job`: start it (its `trigger_data` gets
    /// `events`, the data of the events it waited for), hold it until the next event,
    /// or drop it (an `unless` event was fired).
    pub(crate) fn admit(
        &self,
        store: &dyn EventStore,
        job: &Job,
        request: &mut Request,
    ) -> Admission {
        if !has_events(job) {
            return Admission::Start;
        }
        // A run asked for by an `and_every` firing carries that firing's id.
        let every = request.trigger_data.get("event_id").and_then(|id| {
            let id = id.as_i64()?;
            let name = job.and_every()?.to_owned();
            store
                .events_since(&self.session, &[name], id - 1)
                .ok()?
                .into_iter()
                .find(|e| e.id == id)
        });
        match self.check(store, job, every.as_ref()) {
            Gate::Wait => Admission::Wait,
            Gate::Closed(event) => {
                log::info!(
                    "job \"{}\": a {} run is abandoned: event \"{event}\" was fired (unless)",
                    job.name,
                    request.trigger_type
                );
                Admission::Abandon
            }
            Gate::Open(data) => {
                if let serde_json::Value::Object(t) = &mut request.trigger_data {
                    t.insert("events".to_owned(), serde_json::Value::Object(data));
                } else {
                    request.trigger_data = serde_json::json!({ "events": data });
                }
                Admission::Start
            }
        }
    }

    /// The firings of `and_every` events since the last call, each with its job.
    pub(crate) fn new_firings(
        &mut self,
        store: &dyn EventStore,
        jobs: &JobTable,
    ) -> Vec<(String, EventRecord)> {
        let names: Vec<String> = jobs
            .values()
            .filter_map(|j| j.job.and_every().map(str::to_owned))
            .collect();
        if names.is_empty() {
            return Vec::new();
        }
        let Some(seen) = self.seen else {
            // Events already there when the store first answers count as seen.
            self.seen = store.last_event_id().ok();
            return Vec::new();
        };
        let found = match store.events_since(&self.session, &names, seen) {
            Ok(found) => found,
            Err(e) => {
                log::warn!("cannot read events: {}", crate::logging::one_line(&e));
                return Vec::new();
            }
        };
        let mut runs = Vec::new();
        for event in found {
            self.seen = Some(self.seen.unwrap_or(seen).max(event.id));
            for (name, job) in jobs {
                if job.job.and_every() == Some(event.name.as_str()) {
                    runs.push((name.clone(), event.clone()));
                }
            }
        }
        runs
    }
}

/// An event's data with the job's `with_params` merged in (the job's keys win: they are
/// what its configuration says the run gets).
fn with_params(data: &serde_json::Value, job: &Job) -> serde_json::Value {
    let mut merged = match data {
        serde_json::Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    for (k, v) in job.with_params() {
        merged.insert(k.clone(), v.clone());
    }
    serde_json::Value::Object(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::daemon::DaemonConfig;
    use crate::store::{NewEvent, Store};

    fn setup(yaml: &str) -> (tempfile::TempDir, Store, JobTable) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("runner.yaml");
        std::fs::write(&path, yaml).expect("write");
        let config = DaemonConfig::load(&path).expect("config loads");
        let jobs = super::super::jobs::prepare(&config).expect("jobs");
        let store = Store::open_file(&dir.path().join("runner.db")).expect("store");
        (dir, store, jobs)
    }

    fn fire(store: &mut Store, session: &str, name: &str, data: serde_json::Value) {
        store
            .fire_event(&NewEvent {
                session,
                name,
                data: &data,
                source: "fire",
            })
            .expect("fire");
    }

    #[test]
    fn after_waits_unless_wins_and_with_params_is_merged() {
        let (_dir, mut store, jobs) = setup(
            "jobs:\n  j:\n    command: [\"true\"]\n    after: [a]\n    unless: [c]\n    \
             with_params: {mode: ro}\n",
        );
        let job = &jobs["j"].job;
        let gates = Gates::new(&store, "s1".to_owned());
        assert!(matches!(gates.check(&store, job, None), Gate::Wait));
        // Another session's event does not count.
        fire(&mut store, "s2", "a", serde_json::json!({}));
        assert!(matches!(gates.check(&store, job, None), Gate::Wait));
        fire(
            &mut store,
            "s1",
            "a",
            serde_json::json!({"dev": "sdb", "mode": "rw"}),
        );
        match gates.check(&store, job, None) {
            Gate::Open(data) => assert_eq!(
                serde_json::Value::Object(data),
                serde_json::json!({"a": {"dev": "sdb", "mode": "ro"}})
            ),
            other => panic!("expected open, got {other:?}"),
        }
        fire(&mut store, "s1", "c", serde_json::json!({}));
        assert!(matches!(gates.check(&store, job, None), Gate::Closed(e) if e == "c"));
    }

    #[test]
    fn and_every_counts_each_firing_after_the_start_once() {
        let (_dir, mut store, jobs) =
            setup("jobs:\n  j:\n    command: [\"true\"]\n    and_every: push\n");
        fire(&mut store, "s1", "push", serde_json::json!({"n": 0}));
        let mut gates = Gates::new(&store, "s1".to_owned());
        assert!(gates.new_firings(&store, &jobs).is_empty(), "fired before");
        fire(&mut store, "s1", "push", serde_json::json!({"n": 1}));
        fire(&mut store, "s2", "push", serde_json::json!({"n": 9}));
        fire(&mut store, "s1", "push", serde_json::json!({"n": 2}));
        let found = gates.new_firings(&store, &jobs);
        let ns: Vec<_> = found.iter().map(|(_, e)| e.data["n"].clone()).collect();
        assert_eq!(ns, [1, 2]);
        assert!(gates.new_firings(&store, &jobs).is_empty(), "each once");
    }
}
