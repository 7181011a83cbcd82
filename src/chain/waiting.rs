//! The event side of a pass: whether a step may start (`after`, `unless`), waiting and
//! its `wait_time`, abandoning, and the `RUNNER_EVENTS` file of an attempt.

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use super::{Chain, NO_EVENTS, RunState};
use crate::plan::Step;
use crate::record::{
    AttemptEnd, AttemptStart, EventWait, EventsWaited, InstanceStatus, StartWrite, TaskResult,
};

/// Whether a step can start now.
pub(super) enum Readiness {
    /// Yes, with the data of its `after` events.
    Go(serde_json::Map<String, serde_json::Value>),
    /// Not yet: these `after` events are missing.
    Wait(Vec<String>),
    /// Never: this `unless` event was fired.
    Abandon(String),
}

/// Since when a step waits for events.
#[derive(Debug, Clone, Copy)]
pub(super) struct Waiting {
    pub(super) instant: Instant,
    pub(super) at: SystemTime,
}

/// Whether a step has `after` or `unless` events.
pub(super) fn waits_for_events(step: &Step) -> bool {
    !step.settings.after.is_empty() || !step.settings.unless.is_empty()
}

impl Chain<'_> {
    /// Whether `step` may start now, must wait, or is abandoned, with each of its
    /// events as it stands (for the records). `unless` wins over `after`: if any
    /// `unless` event was fired by the time the step would start, it is abandoned,
    /// whatever the order in which the events came.
    pub(super) fn readiness(
        &self,
        step: &Step,
        state: &RunState<'_>,
    ) -> (Readiness, Vec<EventWait>) {
        let settings = &step.settings;
        if !waits_for_events(step) {
            return (Readiness::Go(serde_json::Map::new()), Vec::new());
        }
        let names: Vec<String> = settings
            .after
            .iter()
            .chain(settings.unless.iter())
            .cloned()
            .collect();
        let fired = self.events.fired(&names);
        let data_of = |name: &str| {
            fired
                .get(name)
                .map(|e| e.data.clone())
                .or_else(|| state.cascades.get(name).cloned())
        };
        let wait = |name: &String, kind: &'static str| {
            let event = fired.get(name);
            EventWait {
                name: name.clone(),
                kind,
                event_id: event.map(|e| e.id),
                fired_at: event.map(|e| e.fired_at),
                source: match event {
                    Some(e) => e.source.clone(),
                    None => state
                        .cascades
                        .contains_key(name)
                        .then(|| "cascade".to_owned()),
                },
            }
        };
        let waits: Vec<EventWait> = settings
            .after
            .iter()
            .map(|n| wait(n, "after"))
            .chain(settings.unless.iter().map(|n| wait(n, "unless")))
            .collect();
        if let Some(event) = settings.unless.iter().find(|n| data_of(n).is_some()) {
            return (Readiness::Abandon(event.clone()), waits);
        }
        let mut data = serde_json::Map::new();
        let mut missing = Vec::new();
        for name in &settings.after {
            match data_of(name) {
                Some(value) => {
                    data.insert(name.clone(), value);
                }
                None => missing.push(name.clone()),
            }
        }
        if missing.is_empty() {
            (Readiness::Go(data), waits)
        } else {
            (Readiness::Wait(missing), waits)
        }
    }

    /// Records what the events of step `index` came to, now that it is decided.
    pub(super) fn record_waits(
        &self,
        state: &mut RunState<'_>,
        index: usize,
        since: Option<&Waiting>,
        events: Vec<EventWait>,
    ) {
        if events.is_empty() {
            return;
        }
        let step = &self.plan.steps[index];
        state.recorder.events_waited(&EventsWaited {
            run_id: state.run_id,
            task: &step.task.name,
            file: &step.task.file_name,
            instance: state.instances[index],
            since: since.map(|w| w.at),
            decided: SystemTime::now(),
            events,
        });
    }

    /// Writes the `RUNNER_EVENTS` file of an attempt: the `after` events' data and the
    /// cascades of its dependencies, by name.
    pub(super) fn events_file(
        &self,
        state: &RunState<'_>,
        index: usize,
        try_num: u32,
        mut fired: serde_json::Map<String, serde_json::Value>,
    ) -> PathBuf {
        let step = &self.plan.steps[index];
        for &dep in &step.deps {
            let name = &self.plan.steps[dep].task.name;
            if let Some(data) = state.cascades.get(name) {
                fired.entry(name.clone()).or_insert_with(|| data.clone());
            }
        }
        if fired.is_empty() {
            return self.scratch.join(NO_EVENTS);
        }
        let path = self
            .scratch
            .join(format!("{}.{index}.{try_num}.events.json", state.run_id));
        let text = serde_json::Value::Object(fired).to_string();
        if let Err(e) = std::fs::write(&path, text) {
            log::warn!("cannot write {}: {e}", path.display());
            return self.scratch.join(NO_EVENTS);
        }
        path
    }

    pub(super) fn abandon(&self, state: &mut RunState<'_>, index: usize, why: &str) {
        let step = &self.plan.steps[index];
        log::info!("task \"{}\" abandoned: {why}", step.task.name);
        state.abandoned[index] = true;
        self.observer.task_abandoned(&step.task.name);
        state.recorder.instance_status(
            state.run_id,
            &step.task.name,
            &step.task.file_name,
            state.instances[index],
            InstanceStatus::Abandoned,
        );
    }

    pub(super) fn start_waiting(
        &self,
        state: &mut RunState<'_>,
        index: usize,
        missing: &[String],
    ) -> Waiting {
        let step = &self.plan.steps[index];
        log::info!(
            "task \"{}\" waiting for event(s) {} in session {}{}",
            step.task.name,
            missing.join(", "),
            self.events.session(),
            step.settings
                .wait_time
                .map(|w| format!(" (wait_time {})", crate::config::duration::display(w)))
                .unwrap_or_default()
        );
        state.recorder.instance_status(
            state.run_id,
            &step.task.name,
            &step.task.file_name,
            state.instances[index],
            InstanceStatus::Waiting,
        );
        self.observer
            .task_waiting(&step.task.name, missing, step.settings.wait_time);
        Waiting {
            instant: Instant::now(),
            at: SystemTime::now(),
        }
    }

    /// Records the attempt of a step whose `wait_time` ran out: `RETRY`, never started.
    pub(super) fn wait_expired(
        &self,
        state: &mut RunState<'_>,
        index: usize,
        try_num: u32,
        since: &Waiting,
        missing: &[String],
    ) {
        let step = &self.plan.steps[index];
        let limit = step.settings.wait_time.unwrap_or_default();
        let note = format!(
            "waited {} for event(s) {}",
            crate::config::duration::display(limit),
            missing.join(", ")
        );
        log::warn!("task \"{}\" {note}: RETRY", step.task.name);
        self.observer.task_finished(
            &step.task.name,
            try_num,
            TaskResult::Retry,
            since.instant.elapsed(),
        );
        let attempt = AttemptStart {
            run_id: state.run_id,
            task: &step.task.name,
            file: &step.task.file_name,
            instance: state.instances[index],
            try_num,
            started: since.at,
        };
        state.recorder.attempt_started(&attempt, StartWrite::Here);
        state.recorder.attempt_finished(
            &attempt,
            &AttemptEnd {
                exit_code: None,
                signal: None,
                result: TaskResult::Retry,
                stopped: SystemTime::now(),
                note: Some(note),
                result_data: None,
                leftovers: Vec::new(),
                cascade: None,
            },
        );
    }
}
