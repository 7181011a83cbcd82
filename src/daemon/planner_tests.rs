//! The planner's rules, driven by a small discrete-event simulation: made-up times, runs
//! that last a given time, triggers at given moments. No thread, clock or process.
//!
//! The expected sequences of the dsari cases were observed with dsari 2.0's own daemon
//! (`dsari-daemon` with croniter 7.0.0), as the comments say.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;

use super::*;
use crate::config::daemon::DaemonConfig;
use crate::daemon::jobs;

/// Every two seconds (seconds are the sixth field).
const EVERY_2S: &str = "* * * * * */2";

fn load(yaml: &str) -> (JobTable, BTreeMap<String, usize>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("runner.yaml");
    std::fs::write(&path, yaml).expect("write");
    let config = DaemonConfig::load(&path).expect("config loads");
    let limits = config
        .concurrency_groups
        .iter()
        .map(|(name, g)| (name.clone(), g.max))
        .collect();
    (jobs::prepare(&config).expect("jobs"), limits)
}

fn at(t: DateTime<Utc>, secs: f64) -> DateTime<Utc> {
    t + TimeDelta::microseconds((secs * 1e6).round() as i64)
}

fn secs(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_microseconds().expect("small") as f64 / 1e4).round() / 100.0
}

fn trigger(job: &str, due: DateTime<Utc>) -> Request {
    Request {
        job: job.to_owned(),
        schedule_time: due,
        trigger_type: "file",
        trigger_data: serde_json::json!({}),
        environment: BTreeMap::new(),
    }
}

/// One run as the simulation saw it, times in seconds from the simulation's origin.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    job: String,
    kind: String,
    schedule: f64,
    start: f64,
    end: f64,
    group: Option<String>,
    /// The exact nominal time.
    nominal: DateTime<Utc>,
}

/// Drives a planner: runs last `duration[job]` seconds (default 0.05), triggers arrive at
/// their moments, and the planner is polled whenever something happens.
struct Sim {
    planner: Planner,
    origin: DateTime<Utc>,
    now: DateTime<Utc>,
    durations: HashMap<String, f64>,
    /// (arrival, request), in arrival order.
    triggers: Vec<(DateTime<Utc>, Request)>,
    running: Vec<(DateTime<Utc>, RunSlot, usize)>,
    seen: Vec<Seen>,
    /// Moments of a SIGHUP that loads the same configuration again.
    reloads: Vec<DateTime<Utc>>,
    limits: BTreeMap<String, usize>,
}

impl Sim {
    fn new(yaml: &str, origin: DateTime<Utc>) -> Sim {
        let (jobs, limits) = load(yaml);
        let mut planner = Planner::new(jobs, limits.clone());
        planner.plan_schedules(origin);
        Sim {
            reloads: Vec::new(),
            limits,
            planner,
            origin,
            now: origin,
            durations: HashMap::new(),
            triggers: Vec::new(),
            running: Vec::new(),
            seen: Vec::new(),
        }
    }

    fn lasting(mut self, job: &str, secs: f64) -> Sim {
        self.durations.insert(job.to_owned(), secs);
        self
    }

    /// A trigger for `job` arriving at `arrival`, due at `due` (seconds from the origin).
    fn trigger_at(&mut self, arrival: f64, job: &str, due: f64) {
        let request = trigger(job, at(self.origin, due));
        self.triggers.push((at(self.origin, arrival), request));
        self.triggers.sort_by_key(|(t, _)| *t);
    }

    fn run_until(&mut self, until: f64) -> &[Seen] {
        let until = at(self.origin, until);
        loop {
            let next = [
                self.planner.next_due(),
                self.running.iter().map(|r| r.0).min(),
                self.triggers.first().map(|t| t.0),
                self.reloads.first().copied(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|t| *t <= until) else {
                break;
            };
            self.now = next.max(self.now);
            let now = self.now;
            let (ended, left): (Vec<_>, Vec<_>) = self.running.drain(..).partition(|r| r.0 <= now);
            self.running = left;
            for (_, slot, _) in ended {
                self.planner.finished(slot);
            }
            while self.triggers.first().is_some_and(|t| t.0 <= now) {
                let (_, request) = self.triggers.remove(0);
                self.planner.trigger(request);
                let starts = self.planner.poll(now);
                self.start(starts);
            }
            while self.reloads.first().is_some_and(|t| *t <= now) {
                self.reloads.remove(0);
                let jobs = self.planner.jobs().clone();
                self.planner.reload(jobs, self.limits.clone(), now);
            }
            let starts = self.planner.poll(now);
            self.start(starts);
        }
        &self.seen
    }

    fn start(&mut self, starts: Vec<Start>) {
        for s in starts {
            let lasts = self.durations.get(&s.request.job).copied().unwrap_or(0.05);
            let end = at(self.now, lasts);
            self.running.push((end, s.slot, self.seen.len()));
            self.seen.push(Seen {
                job: s.request.job,
                kind: s.request.trigger_type.to_owned(),
                schedule: secs(self.origin, s.request.schedule_time),
                start: secs(self.origin, self.now),
                end: secs(self.origin, end),
                group: s.group,
                nominal: s.request.schedule_time,
            });
        }
    }

    /// (kind, schedule time, start time) of every run, kind's first letter only.
    fn short(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|s| {
                let k = s.kind.chars().next().unwrap_or('?').to_ascii_uppercase();
                if (s.schedule - s.start).abs() < 0.005 {
                    format!("{k}@{}", s.schedule)
                } else {
                    format!("{k}@{}>{}", s.schedule, s.start)
                }
            })
            .collect()
    }
}

/// The origin of a simulation: the first time of `job`'s schedule after a round time, so
/// that the schedule's times are whole seconds from it.
fn first_time(yaml: &str, job: &str) -> DateTime<Utc> {
    let (jobs, _) = load(yaml);
    let round = DateTime::from_timestamp(1_767_225_600, 0).expect("2026-01-01");
    jobs[job].next_after(round).expect("a schedule")
}

fn every_2s(extra: &str) -> String {
    format!("jobs:\n  tick:\n    command: [\"true\"]\n    schedule: \"{EVERY_2S}\"\n{extra}")
}

#[test]
fn a_trigger_for_later_replaces_the_pending_scheduled_run() {
    // dsari 2.0, job every 2 s, a trigger written at +1.2 s asking for +4.2 s: it ran
    // S@0 F@4.21 S@6 S@8 S@10 (the trigger replaced the run due at 2; the schedule
    // resumed from the trigger's start, so 4 never ran either).
    let yaml = every_2s("");
    let t0 = first_time(&yaml, "tick");
    let mut sim = Sim::new(&yaml, at(t0, -0.5));
    sim.origin = t0;
    sim.trigger_at(1.2, "tick", 4.2);
    sim.run_until(9.0);
    assert_eq!(sim.short(), ["S@0", "F@4.2", "S@6", "S@8"]);
}

#[test]
fn a_second_trigger_replaces_the_first_while_it_waits() {
    // dsari 2.0, a job without a schedule: trigger A for +5 s, then trigger B for now at
    // +1.5 s; only B ran ("replacing" A in dsari's log).
    let yaml = "jobs:\n  twice:\n    command: [\"true\"]\n";
    let origin = DateTime::from_timestamp(1_767_225_600, 0).expect("time");
    let mut sim = Sim::new(yaml, origin);
    sim.trigger_at(0.0, "twice", 5.0);
    sim.trigger_at(1.5, "twice", 1.5);
    sim.run_until(10.0);
    assert_eq!(sim.short(), ["F@1.5"]);
}

#[test]
fn a_trigger_that_started_is_not_replaced_by_the_next_one() {
    // dsari 2.0 with trigger.json and trigger.yaml both in place, the job running 1 s:
    // the JSON run at 0.10, the YAML run at 1.16 when the first ended. The service polls
    // between the two triggers, so the first has started when the second comes.
    let yaml = "jobs:\n  both:\n    command: [\"true\"]\n";
    let origin = DateTime::from_timestamp(1_767_225_600, 0).expect("time");
    let mut sim = Sim::new(yaml, origin).lasting("both", 1.0);
    sim.trigger_at(0.1, "both", 0.0);
    sim.trigger_at(0.1, "both", 0.0);
    sim.run_until(5.0);
    assert_eq!(sim.short(), ["F@0>0.1", "F@0>1.1"]);
}

#[test]
fn a_trigger_while_the_job_runs_waits_for_it_and_takes_over_the_schedule() {
    // The trigger (due now) replaces the scheduled run planned at 2; it starts when the
    // running run ends, and the schedule resumes after that start. dsari 2.0, a job every
    // 2 s running 3 s, a trigger at +1 s for now: S@0 F@1>3.16 S@4>6.27 S@8>9.36.
    let yaml = every_2s("");
    let t0 = first_time(&yaml, "tick");
    let mut sim = Sim::new(&yaml, at(t0, -0.5)).lasting("tick", 3.0);
    sim.origin = t0;
    sim.trigger_at(1.0, "tick", 1.0);
    sim.run_until(9.5);
    assert_eq!(sim.short(), ["S@0", "F@1>3", "S@4>6", "S@8>9"]);
}

#[test]
fn with_concurrent_runs_a_trigger_adds_a_run_and_the_schedule_keeps_its_times() {
    // dsari 2.0 adds the trigger too, but starts S@2 only at 3.15, when S@0 ends: its loop
    // sleeps until a child ends without waking for the run it planned meanwhile. runner
    // starts every run at its time, which is what concurrent_runs asks for.
    let yaml = every_2s("    concurrent_runs: true\n");
    let t0 = first_time(&yaml, "tick");
    let mut sim = Sim::new(&yaml, at(t0, -0.5)).lasting("tick", 3.0);
    sim.origin = t0;
    sim.trigger_at(1.2, "tick", 3.0);
    sim.run_until(6.5);
    assert_eq!(sim.short(), ["S@0", "S@2", "F@3", "S@4", "S@6"]);
    let overlapping = sim
        .seen
        .windows(2)
        .filter(|w| w[1].start < w[0].end)
        .count();
    assert!(overlapping > 0, "runs overlap: {:?}", sim.seen);
}

#[test]
fn a_run_longer_than_the_interval_merges_the_times_it_missed() {
    // S@2 waits for S@0 until 5; 4 went by meanwhile and is merged into it, so the next
    // is 6 (not 4, which would keep the job ever later). dsari 2.0, a job every 2 s
    // running 5 s: S@0 S@2>5.11 S@6>10.21 S@12>15.30 S@16>20.43.
    let yaml = every_2s("");
    let t0 = first_time(&yaml, "tick");
    let mut sim = Sim::new(&yaml, at(t0, -0.5)).lasting("tick", 5.0);
    sim.origin = t0;
    sim.run_until(16.0);
    assert_eq!(sim.short(), ["S@0", "S@2>5", "S@6>10", "S@12>15"]);
}

#[test]
fn a_daemon_that_was_stopped_runs_once_and_skips_the_backlog() {
    // Polled 100 s late (a suspended machine): one run, for the oldest time, and the
    // schedule resumes after now.
    let yaml = every_2s("");
    let (jobs, limits) = load(&yaml);
    let t0 = first_time(&yaml, "tick");
    let mut planner = Planner::new(jobs, limits);
    planner.plan_schedules(at(t0, -0.5));
    let late = at(t0, 100.3);
    let starts = planner.poll(late);
    assert_eq!(starts.len(), 1);
    assert_eq!(starts[0].request.schedule_time, t0);
    assert_eq!(starts[0].merged_from, Some(at(t0, 2.0)));
    assert!(planner.poll(late).is_empty(), "nothing else is due");
    assert_eq!(planner.next_due(), Some(at(t0, 102.0)));
}

#[test]
fn a_run_started_past_its_second_keeps_the_next_time_of_its_schedule() {
    // "late" runs at .434 past every second. Started 0.6 s late, in the next second,
    // the following time (.434 of that second) is still ahead and is not passed over,
    // though `next_after` counts from the whole second, as dsari's croniter does.
    let yaml = "jobs:\n  late:\n    command: [\"true\"]\n    schedule: \"* * * * * *\"\n";
    let (jobs, limits) = load(yaml);
    let t0 = first_time(yaml, "late");
    assert_eq!(
        t0.timestamp_subsec_micros(),
        434_237,
        "the job's hashed offset"
    );
    let mut planner = Planner::new(jobs, limits);
    planner.plan_schedules(at(t0, -0.5));
    assert_eq!(planner.poll(at(t0, 0.6)).len(), 1);
    assert_eq!(planner.next_due(), Some(at(t0, 1.0)));
    // A reload within a second before a time plans that time, not the one after.
    let (jobs, limits) = load(yaml);
    planner.reload(jobs, limits, at(t0, 0.8));
    assert_eq!(planner.next_due(), Some(at(t0, 1.0)));
}

#[test]
fn a_group_of_two_admits_two_and_hands_a_freed_slot_on_in_order() {
    let mut yaml = String::from("concurrency_groups:\n  pair:\n    max: 2\njobs:\n");
    for name in ["a", "b", "c", "d"] {
        yaml.push_str(&format!(
            "  {name}:\n    command: [\"true\"]\n    concurrency_groups: [pair]\n"
        ));
    }
    let (jobs, limits) = load(&yaml);
    let mut planner = Planner::new(jobs, limits);
    let t = DateTime::from_timestamp(1_767_225_600, 0).expect("time");
    for (i, name) in ["c", "a", "d", "b"].iter().enumerate() {
        planner.trigger(trigger(name, at(t, i as f64 * 0.001)));
    }
    let first = planner.poll(at(t, 1.0));
    let names: Vec<_> = first.iter().map(|s| s.request.job.as_str()).collect();
    assert_eq!(names, ["c", "a"], "the first two to fall due");
    assert!(first.iter().all(|s| s.group.as_deref() == Some("pair")));
    assert!(planner.poll(at(t, 2.0)).is_empty(), "the group is full");
    assert!(
        planner.has_waiting(),
        "d and b wait: the loop wants every end at once"
    );
    planner.finished(first[1].slot);
    let next = planner.poll(at(t, 3.0));
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].request.job, "d");
    assert!(planner.has_waiting(), "b still waits");
    planner.finished(first[0].slot);
    assert_eq!(planner.poll(at(t, 4.0)).len(), 1);
    assert!(
        !planner.has_waiting(),
        "nothing waits: an end can wait for the next look"
    );
}

#[test]
fn a_job_in_two_groups_takes_the_first_free_one() {
    let yaml = "concurrency_groups:\n  g1:\n    max: 1\n  g2:\n    max: 1\njobs:\n  \
                x:\n    command: [\"true\"]\n    concurrency_groups: [g1]\n  \
                y:\n    command: [\"true\"]\n    concurrency_groups: [g1, g2]\n";
    let (jobs, limits) = load(yaml);
    let mut planner = Planner::new(jobs, limits);
    let t = DateTime::from_timestamp(1_767_225_600, 0).expect("time");
    planner.trigger(trigger("x", t));
    planner.trigger(trigger("y", t));
    let starts = planner.poll(t);
    let got: Vec<_> = starts
        .iter()
        .map(|s| (s.request.job.as_str(), s.group.as_deref()))
        .collect();
    assert_eq!(got, [("x", Some("g1")), ("y", Some("g2"))]);
}

#[test]
fn catch_up_runs_the_missed_time_and_then_the_schedule() {
    let yaml = every_2s("");
    let (jobs, limits) = load(&yaml);
    let t0 = first_time(&yaml, "tick");
    let mut planner = Planner::new(jobs, limits);
    planner.catch_up("tick", t0);
    planner.plan_schedules(at(t0, 30.5));
    assert_eq!(
        planner.planned().len(),
        1,
        "the catch-up run is the scheduled one"
    );
    let starts = planner.poll(at(t0, 30.5));
    assert_eq!(starts.len(), 1);
    assert_eq!(starts[0].request.trigger_type, "catch_up");
    assert_eq!(starts[0].request.schedule_time, t0);
    assert_eq!(
        starts[0].merged_from, None,
        "a catch-up says it is late itself"
    );
    assert_eq!(planner.next_due(), Some(at(t0, 32.0)));
}

/// The daemon's start as `service` makes it, at every tenth of a second of a minute
/// (the CLI test's job, every minute, last run 180 s before): one catch-up run, then the
/// schedule's times, each once, whatever the start's place in the minute.
#[test]
fn catch_up_once_is_one_run_wherever_in_the_minute_the_daemon_starts() {
    let yaml = "jobs:\n  nightly:\n    command: [\"true\"]\n    schedule: \"* * * * *\"\n";
    let (jobs, limits) = load(yaml);
    let minute = DateTime::from_timestamp(1_767_225_600, 0).expect("2026-01-01");
    for tenth in 0..600 {
        let start = at(minute, f64::from(tenth) / 10.0);
        let last = DateTime::from_timestamp(start.timestamp() - 180, 0).expect("time");
        let missed = jobs["nightly"].next_after(last).expect("a time");
        let mut planner = Planner::new(jobs.clone(), limits.clone());
        planner.catch_up("nightly", missed);
        planner.plan_schedules(start);
        let mut now = start;
        let mut seen: Vec<(&str, DateTime<Utc>)> = Vec::new();
        while now < at(start, 200.0) {
            for run in planner.poll(now) {
                seen.push((run.request.trigger_type, run.request.schedule_time));
                planner.finished(run.slot);
            }
            now = match planner.next_due() {
                Some(due) => due.max(at(now, 0.001)),
                None => break,
            };
        }
        let catch_ups: Vec<_> = seen.iter().filter(|(t, _)| *t == "catch_up").collect();
        assert_eq!(
            catch_ups,
            [&("catch_up", missed)],
            "start at {start}: {seen:?}"
        );
        assert!(
            seen.windows(2).all(|w| w[0].1 < w[1].1),
            "start at {start}: each time once, in order: {seen:?}"
        );
        assert!(
            seen.len() >= 4,
            "start at {start}: the schedule went on: {seen:?}"
        );
    }
}

#[test]
fn a_reload_keeps_triggers_and_due_runs_and_plans_the_new_schedules() {
    let yaml = every_2s("  manual:\n    command: [\"true\"]\n  gone:\n    command: [\"true\"]\n");
    let t0 = first_time(&yaml, "tick");
    let (jobs, limits) = load(&yaml);
    let mut planner = Planner::new(jobs, limits);
    planner.plan_schedules(at(t0, -0.5));
    planner.trigger(trigger("manual", at(t0, 50.0)));
    planner.trigger(trigger("gone", at(t0, 50.0)));
    // The new configuration: tick every 4 s instead, "gone" removed.
    let new = "jobs:\n  tick:\n    command: [\"true\"]\n    schedule: \"* * * * * */4\"\n  \
               manual:\n    command: [\"true\"]\n";
    let (jobs, limits) = load(new);
    planner.reload(jobs, limits, at(t0, -0.25));
    let planned: Vec<_> = planner
        .planned()
        .iter()
        .map(|(r, _)| (r.job.clone(), secs(t0, r.schedule_time)))
        .collect();
    let next4 = planner.jobs()["tick"]
        .next_after(at(t0, -0.25))
        .expect("next");
    assert_eq!(
        planned,
        [
            ("manual".to_owned(), 50.0),
            ("tick".to_owned(), secs(t0, next4))
        ]
    );
}

#[test]
fn shutdown_plans_nothing_more_but_keeps_running_slots() {
    let yaml = every_2s("");
    let t0 = first_time(&yaml, "tick");
    let (jobs, limits) = load(&yaml);
    let mut planner = Planner::new(jobs, limits);
    planner.plan_schedules(at(t0, -0.5));
    let starts = planner.poll(t0);
    assert_eq!(starts.len(), 1);
    planner.clear();
    assert_eq!(planner.next_due(), None);
    assert!(planner.poll(at(t0, 10.0)).is_empty());
    assert_eq!(planner.running(), 1);
    planner.finished(starts[0].slot);
    assert_eq!(planner.running(), 0);
}

#[test]
fn admission_can_hold_a_run_drop_it_or_add_to_it() {
    let yaml = every_2s("  manual:\n    command: [\"true\"]\n");
    let t0 = first_time(&yaml, "tick");
    let (jobs, limits) = load(&yaml);
    let mut planner = Planner::new(jobs, limits);
    planner.plan_schedules(at(t0, -0.5));
    planner.trigger(trigger("manual", t0));
    // Held: nothing starts, both stay planned.
    assert!(planner.poll_with(t0, |_| Admission::Wait).is_empty());
    assert_eq!(planner.planned().len(), 2);
    // The scheduled run is dropped, its schedule goes on; the trigger starts, with data.
    let starts = planner.poll_with(at(t0, 0.5), |r| {
        if r.trigger_type == SCHEDULE {
            return Admission::Abandon;
        }
        r.trigger_data = serde_json::json!({"events": {}});
        Admission::Start
    });
    assert_eq!(starts.len(), 1);
    assert_eq!(starts[0].request.job, "manual");
    assert_eq!(
        starts[0].request.trigger_data["events"],
        serde_json::json!({})
    );
    assert_eq!(
        planner.next_due(),
        Some(at(t0, 2.0)),
        "tick's schedule goes on"
    );
    assert_eq!(planner.running(), 1, "an abandoned run holds no slot");
}

#[test]
fn a_held_run_keeps_no_slot_and_its_job_waits_for_it_without_replaying_times() {
    // `waits` (scheduled every 2 s) is held, as a job whose `after` event is missing;
    // `other` shares its group of one.
    let yaml = format!(
        "concurrency_groups:\n  g:\n    max: 1\njobs:\n  \
         waits:\n    command: [\"true\"]\n    schedule: \"{EVERY_2S}\"\n    concurrency_groups: [g]\n  \
         other:\n    command: [\"true\"]\n    concurrency_groups: [g]\n"
    );
    let t0 = first_time(&yaml, "waits");
    let (jobs, limits) = load(&yaml);
    let mut planner = Planner::new(jobs, limits);
    planner.plan_schedules(at(t0, -0.5));
    planner.trigger(trigger("other", t0));
    let hold = |r: &mut Request| {
        if r.job == "waits" {
            Admission::Wait
        } else {
            Admission::Start
        }
    };
    let starts = planner.poll_with(t0, hold);
    assert_eq!(starts.len(), 1, "the held run leaves the slot to other");
    assert_eq!(starts[0].request.job, "other");
    planner.finished(starts[0].slot);
    // Held for 7 s: no further scheduled run is planned meanwhile, nothing starts.
    for step in 1..=7 {
        assert!(planner.poll_with(at(t0, f64::from(step)), hold).is_empty());
    }
    assert_eq!(
        planner.next_due(),
        None,
        "the held run is the job's one planned run"
    );
    // Let go: it starts once, the times that went by are merged into it, and the
    // schedule resumes after now.
    let starts = planner.poll_with(at(t0, 7.5), |_| Admission::Start);
    assert_eq!(starts.len(), 1);
    assert_eq!(starts[0].request.schedule_time, t0);
    assert_eq!(starts[0].merged_from, Some(at(t0, 2.0)));
    assert_eq!(planner.next_due(), Some(at(t0, 8.0)));
}

#[test]
fn a_dropped_triggered_run_is_gone_and_the_job_runs_again_when_asked() {
    let (jobs, limits) = load("jobs:\n  guarded:\n    command: [\"true\"]\n");
    let mut planner = Planner::new(jobs, limits);
    let t = DateTime::from_timestamp(1_767_225_600, 0).expect("time");
    planner.trigger(trigger("guarded", t));
    assert!(planner.poll_with(t, |_| Admission::Abandon).is_empty());
    assert!(planner.planned().is_empty(), "dropped, not held");
    assert_eq!(planner.running(), 0);
    assert_eq!(planner.next_due(), None);
    assert!(
        planner
            .poll_with(at(t, 1.0), |_| Admission::Start)
            .is_empty()
    );
    planner.trigger(trigger("guarded", at(t, 2.0)));
    assert_eq!(planner.poll_with(at(t, 2.0), |_| Admission::Start).len(), 1);
}

#[test]
fn added_runs_replace_nothing_and_start_one_after_another() {
    // Each `and_every` firing adds a run, even for a job without `concurrent_runs`.
    let (jobs, limits) = load("jobs:\n  build:\n    command: [\"true\"]\n");
    let mut planner = Planner::new(jobs, limits);
    let t = DateTime::from_timestamp(1_767_225_600, 0).expect("time");
    for n in 0..3 {
        let mut request = trigger("build", t);
        request.trigger_data = serde_json::json!({ "n": n });
        assert_eq!(planner.add(request), Added::Planned);
    }
    assert_eq!(planner.planned().len(), 3);
    let mut seen = Vec::new();
    for step in 0..3 {
        let starts = planner.poll(at(t, f64::from(step)));
        assert_eq!(starts.len(), 1, "the job never overlaps itself");
        seen.push(starts[0].request.trigger_data["n"].clone());
        planner.finished(starts[0].slot);
    }
    assert_eq!(seen, [0, 1, 2], "in the order they were asked for");
    assert_eq!(planner.add(trigger("nope", t)), Added::UnknownJob);
}

#[test]
fn an_unknown_job_is_not_planned() {
    let (jobs, limits) = load(&every_2s(""));
    let mut planner = Planner::new(jobs, limits);
    let t = DateTime::from_timestamp(1_767_225_600, 0).expect("time");
    assert_eq!(planner.trigger(trigger("nope", t)), Added::UnknownJob);
    assert!(planner.planned().is_empty());
}

/// One job of a random configuration.
#[derive(Debug, Clone)]
struct JobSpec {
    schedule: Option<&'static str>,
    concurrent: bool,
    groups: Vec<&'static str>,
    lasts: f64,
}

fn job_spec() -> impl Strategy<Value = JobSpec> {
    (
        prop::option::of(prop::sample::select(vec![
            "* * * * * *",
            "* * * * * */2",
            "* * * * * */3",
            "* * * * * 5,7,20-25",
            "* * * * *",
        ])),
        any::<bool>(),
        prop::sample::subsequence(vec!["g1", "g2"], 0..=2),
        0.01f64..7.0,
    )
        .prop_map(|(schedule, concurrent, groups, lasts)| JobSpec {
            schedule,
            concurrent,
            groups,
            lasts,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the jobs, triggers, reloads and run lengths: no job runs twice for one nominal
    /// time, a job without concurrent_runs never overlaps itself, no group holds more runs
    /// than its max, no run starts before its time, and every scheduled run is at a time
    /// of its schedule.
    #[test]
    fn the_planner_never_fires_a_job_twice_for_one_nominal_time(
        specs in prop::collection::vec(job_spec(), 1..4),
        triggers in prop::collection::vec((0usize..4, 0.0f64..60.0, -5.0f64..10.0), 0..12),
        reloads in prop::collection::vec(0.0f64..90.0, 0..3),
        max1 in 1usize..3,
    ) {
        let mut yaml = format!(
            "concurrency_groups:\n  g1:\n    max: {max1}\n  g2:\n    max: 1\njobs:\n"
        );
        for (i, spec) in specs.iter().enumerate() {
            yaml.push_str(&format!("  j{i}:\n    command: [\"true\"]\n"));
            if let Some(s) = spec.schedule {
                yaml.push_str(&format!("    schedule: \"{s}\"\n"));
            }
            yaml.push_str(&format!("    concurrent_runs: {}\n", spec.concurrent));
            if !spec.groups.is_empty() {
                yaml.push_str(&format!("    concurrency_groups: [{}]\n", spec.groups.join(", ")));
            }
        }
        let origin = DateTime::from_timestamp(1_767_225_600, 250_000_000).expect("time");
        let mut sim = Sim::new(&yaml, origin);
        for (i, spec) in specs.iter().enumerate() {
            sim = sim.lasting(&format!("j{i}"), spec.lasts);
        }
        for (job, arrival, delay) in &triggers {
            let job = job % specs.len();
            sim.trigger_at(*arrival, &format!("j{job}"), arrival + delay);
        }
        sim.reloads = reloads.iter().map(|t| at(origin, *t)).collect();
        sim.reloads.sort();
        sim.run_until(90.0);
        let seen = sim.seen.clone();
        let jobs = sim.planner.jobs().clone();
        if specs.iter().any(|s| s.schedule.is_some()) {
            prop_assert!(!seen.is_empty(), "a scheduled job ran in 90 s");
        }
        for (i, spec) in specs.iter().enumerate() {
            let name = format!("j{i}");
            let runs: Vec<&Seen> = seen.iter().filter(|s| s.job == name).collect();
            let mut nominal: Vec<DateTime<Utc>> = runs
                .iter()
                .filter(|s| s.kind == SCHEDULE)
                .map(|s| s.nominal)
                .collect();
            let count = nominal.len();
            nominal.sort();
            nominal.dedup();
            prop_assert_eq!(count, nominal.len(), "{} ran twice for one time: {:?}", name, runs);
            for s in &runs {
                prop_assert!(s.start + 1e-9 >= s.schedule, "early: {:?}", s);
                if s.kind == SCHEDULE {
                    // A time of the schedule: next_after counts from the whole second.
                    let t = s.nominal;
                    let before = t - TimeDelta::seconds(1);
                    prop_assert_eq!(jobs[&name].next_after(before), Some(t), "{:?}", s);
                }
            }
            if !spec.concurrent {
                for pair in runs.windows(2) {
                    prop_assert!(pair[1].start >= pair[0].end, "overlap: {:?}", pair);
                }
            }
        }
        for (group, max) in [("g1", max1), ("g2", 1)] {
            let held: Vec<&Seen> = seen.iter().filter(|s| s.group.as_deref() == Some(group)).collect();
            for s in &held {
                let at_once = held.iter().filter(|o| o.start <= s.start && s.start < o.end).count();
                prop_assert!(at_once <= max, "{} over its max at {}: {:?}", group, s.start, held);
            }
        }
    }
}
