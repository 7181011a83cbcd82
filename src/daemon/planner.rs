//! The daemon's scheduling decisions, apart from everything that acts on them.
//!
//! A [`Planner`] knows the jobs, the runs asked for (by a schedule, a trigger file or a
//! catch-up), the runs in progress and the concurrency slots they hold. Given the time, it
//! says which runs start now. It reads no clock, file or store, starts no process and no
//! thread, so every rule below is tested with made-up times (see the tests at the end);
//! `service` does the acting.
//!
//! The rules are dsari's (its daemon's `process_trigger_job` and `process_scheduled_run`):
//! - A job with a schedule has one scheduled run planned at a time. When that run starts,
//!   the next is planned: the first time of the schedule after the start. Times that went
//!   by while the run waited (for its job's previous run, for a slot, for a suspended
//!   machine) are merged into the run that starts and never replayed, so a job never runs
//!   twice for one nominal time and never falls further and further behind.
//! - A trigger for a job without `concurrent_runs` replaces the job's planned run, scheduled
//!   or triggered, even when it asks for a later time; it takes over the schedule, which
//!   resumes once the trigger's run starts. With `concurrent_runs`, a trigger adds a run.
//! - A due run starts when its job has no run in progress (unless `concurrent_runs`) and,
//!   if the job names concurrency groups, one of them has a free slot (the first free one
//!   in the job's order). Due runs start in the order they fell due.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use chrono::{DateTime, Utc};

use super::jobs::{JobTable, ScheduledJob};
use super::launch::Request;

/// The trigger type of a run planned by a schedule.
pub(super) const SCHEDULE: &str = "schedule";

/// A run the planner let start; handed back to [`Planner::finished`] when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct RunSlot(pub(super) u64);

/// A run to start now.
#[derive(Debug, Clone)]
pub(super) struct Start {
    /// Its place among the runs in progress.
    pub(super) slot: RunSlot,
    /// What was asked for; `schedule_time` is the nominal time.
    pub(super) request: Request,
    /// The concurrency group whose slot it holds.
    pub(super) group: Option<String>,
    /// For a scheduled run that starts after its schedule's following time: that time, the
    /// first of those merged into this run.
    pub(super) merged_from: Option<DateTime<Utc>>,
}

/// What [`Planner::poll_with`]'s caller says of a due run that could start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// Start it now.
    Start,
    /// Keep it planned; ask again at the next poll.
    Wait,
    /// Drop it; a scheduled one's schedule goes on.
    Abandon,
}

/// What became of a trigger.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Added {
    /// A new run was planned.
    Planned,
    /// It replaced this planned run of the same job.
    Replaced(Request),
    /// No such job: nothing was planned.
    UnknownJob,
}

#[derive(Debug)]
struct Planned {
    /// Boxed: the map of planned runs has a slot for every run planned and a third as
    /// many again empty, each slot as large as its value.
    request: Box<Request>,
    /// Whether starting it plans the job's next scheduled run.
    respawn: bool,
    /// Whether its time has come (it is in `due`).
    is_due: bool,
}

#[derive(Debug)]
struct Held {
    job: String,
    group: Option<String>,
}

/// The scheduling state of the daemon; see the module comment for its rules.
#[derive(Debug, Default)]
pub(super) struct Planner {
    jobs: JobTable,
    /// `max` of every concurrency group a job names.
    limits: BTreeMap<String, usize>,
    planned: HashMap<u64, Planned>,
    /// The planned runs of each job, by the job's place in `jobs` and then in the order
    /// they were asked for (ids grow). One set for all jobs, not a list per job: a
    /// daemon with ten thousand jobs plans ten thousand runs.
    by_job: BTreeSet<(usize, u64)>,
    /// When each planned run falls due. Entries of runs replaced since stay in the heap
    /// and are dropped when they come up.
    timers: BinaryHeap<Reverse<(DateTime<Utc>, u64)>>,
    /// Planned runs whose time came, in that order, waiting for their job or a slot.
    due: Vec<u64>,
    running: HashMap<RunSlot, Held>,
    busy: HashMap<String, usize>,
    group_use: HashMap<String, usize>,
    next_id: u64,
}

impl Planner {
    /// A planner for `jobs`, with each concurrency group's `max` in `limits` (a group
    /// missing there admits one run). Nothing is planned yet: see [`Planner::plan_schedules`].
    pub(super) fn new(jobs: JobTable, limits: BTreeMap<String, usize>) -> Planner {
        Planner {
            jobs,
            limits,
            ..Planner::default()
        }
    }

    /// The jobs, by name.
    pub(super) fn jobs(&self) -> &JobTable {
        &self.jobs
    }

    /// How many runs are in progress.
    #[cfg(test)]
    pub(super) fn running(&self) -> usize {
        self.running.len()
    }

    /// Every planned run with whether its time has come, in job order.
    pub(super) fn planned(&self) -> Vec<(&Request, bool)> {
        let mut out: Vec<(&Request, bool)> = self
            .planned
            .values()
            .map(|p| (&*p.request, p.is_due))
            .collect();
        out.sort_by(|a, b| (&a.0.job, a.0.schedule_time).cmp(&(&b.0.job, b.0.schedule_time)));
        out
    }

    /// Plans the next scheduled run, after `now`, of every job with a schedule that has
    /// none planned.
    pub(super) fn plan_schedules(&mut self, now: DateTime<Utc>) {
        let jobs = self.jobs.clone();
        for (index, job) in jobs.values().enumerate() {
            if self.has_respawn(index) {
                continue;
            }
            if let Some(due) = first_after(job, now) {
                self.plan(scheduled(&job.job.name, due, SCHEDULE), true);
            }
        }
    }

    /// `catch_up: once`: plans the job's scheduled run at `missed`, a time that passed while
    /// the daemon was down, recorded with trigger type `catch_up`. Its start plans the next.
    pub(super) fn catch_up(&mut self, job: &str, missed: DateTime<Utc>) {
        if self
            .jobs
            .index_of(job)
            .is_some_and(|i| !self.has_respawn(i))
        {
            self.plan(scheduled(job, missed, "catch_up"), true);
        }
    }

    /// Plans a triggered run at `request.schedule_time` (see the module comment for when
    /// it replaces one).
    pub(super) fn trigger(&mut self, request: Request) -> Added {
        let Some(index) = self.jobs.index_of(&request.job) else {
            return Added::UnknownJob;
        };
        if !self.jobs.at(index).job.concurrent_runs {
            let first = self.ids_of(index).next();
            if let Some(old) = first {
                let Some(old) = self.unplan(old) else {
                    return Added::UnknownJob;
                };
                self.plan(request, old.respawn);
                return Added::Replaced(*old.request);
            }
        }
        self.plan(request, false);
        Added::Planned
    }

    /// Plans a run at `request.schedule_time` that replaces nothing, whether or not the
    /// job has `concurrent_runs` (an `and_every` firing: each one asks for its own run).
    pub(super) fn add(&mut self, request: Request) -> Added {
        if !self.jobs.contains_key(&request.job) {
            return Added::UnknownJob;
        }
        self.plan(request, false);
        Added::Planned
    }

    /// The runs that start at `now`. Each holds its job and its group's slot until
    /// [`Planner::finished`].
    #[cfg(test)]
    pub(super) fn poll(&mut self, now: DateTime<Utc>) -> Vec<Start> {
        self.poll_with(now, |_| Admission::Start)
    }

    /// [`Planner::poll`], asking `admit` about each due run that has its job and a slot:
    /// the place for rules the planner cannot decide alone (events a run waits for). It
    /// may add to the request (its `trigger_data`) when it lets the run start.
    pub(super) fn poll_with(
        &mut self,
        now: DateTime<Utc>,
        mut admit: impl FnMut(&mut Request) -> Admission,
    ) -> Vec<Start> {
        while let Some(&Reverse((due, id))) = self.timers.peek() {
            if due > now {
                break;
            }
            self.timers.pop();
            if let Some(planned) = self.planned.get_mut(&id)
                && !planned.is_due
            {
                planned.is_due = true;
                self.due.push(id);
            }
        }
        let mut starts = Vec::new();
        let mut waiting = Vec::new();
        for id in std::mem::take(&mut self.due) {
            let Some(planned) = self.planned.get_mut(&id) else {
                continue;
            };
            let Some(job) = self.jobs.get(&planned.request.job) else {
                self.unplan(id);
                continue;
            };
            let name = &planned.request.job;
            if !job.job.concurrent_runs && self.busy.get(name).is_some_and(|n| *n > 0) {
                waiting.push(id);
                continue;
            }
            let group = if job.job.concurrency_groups().is_empty() {
                None
            } else {
                let free = job.job.concurrency_groups().iter().find(|g| {
                    let max = self.limits.get(*g).copied().unwrap_or(1);
                    self.group_use.get(*g).copied().unwrap_or(0) < max
                });
                match free {
                    Some(g) => Some(g.clone()),
                    None => {
                        waiting.push(id);
                        continue;
                    }
                }
            };
            match admit(&mut planned.request) {
                Admission::Start => {}
                Admission::Wait => {
                    waiting.push(id);
                    continue;
                }
                Admission::Abandon => {
                    // Its schedule goes on without it.
                    if let Some(planned) = self.unplan(id)
                        && planned.respawn
                    {
                        self.plan_next(&planned.request, now);
                    }
                    continue;
                }
            }
            let Some(planned) = self.unplan(id) else {
                continue;
            };
            let request = *planned.request;
            let merged_from = if planned.respawn {
                self.plan_next(&request, now)
            } else {
                None
            };
            let slot = RunSlot(self.next_id);
            self.next_id += 1;
            *self.busy.entry(request.job.clone()).or_insert(0) += 1;
            if let Some(g) = &group {
                *self.group_use.entry(g.clone()).or_insert(0) += 1;
            }
            self.running.insert(
                slot,
                Held {
                    job: request.job.clone(),
                    group: group.clone(),
                },
            );
            starts.push(Start {
                slot,
                request,
                group,
                merged_from,
            });
        }
        self.due = waiting;
        starts
    }

    /// Plans the job's next scheduled run: the schedule's first time after `now`, when
    /// `request` (due, planned with `respawn`) starts or is abandoned. Returns the first
    /// of the times merged into `request`, if it is a scheduled run and some went by.
    fn plan_next(&mut self, request: &Request, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let job = self.jobs.get(&request.job)?;
        // A run never starts before its time, so the first time after now is the first
        // after its time unless some went by since.
        let mut merged_from = None;
        let next = match first_after(job, request.schedule_time) {
            Some(first) if first <= now => {
                if request.trigger_type == SCHEDULE {
                    merged_from = Some(first);
                }
                first_after(job, now)
            }
            first => first,
        };
        if let Some(next) = next {
            self.plan(scheduled(&request.job, next, SCHEDULE), true);
        }
        merged_from
    }

    /// A run ended: its job and its slot are free again.
    pub(super) fn finished(&mut self, slot: RunSlot) {
        let Some(held) = self.running.remove(&slot) else {
            return;
        };
        if let Some(n) = self.busy.get_mut(&held.job) {
            *n = n.saturating_sub(1);
        }
        if let Some(g) = &held.group
            && let Some(n) = self.group_use.get_mut(g)
        {
            *n = n.saturating_sub(1);
        }
    }

    /// Whether a due run waits for its job, a slot or an event: then a run that ends
    /// may let it start, and the loop wants to hear of every end at once.
    pub(super) fn has_waiting(&self) -> bool {
        !self.due.is_empty()
    }

    /// The time of the next planned run that is not due yet: when to poll again (runs
    /// that are due but wait for their job or a slot are polled when a run finishes).
    pub(super) fn next_due(&mut self) -> Option<DateTime<Utc>> {
        while let Some(&Reverse((due, id))) = self.timers.peek() {
            if self.planned.get(&id).is_some_and(|p| !p.is_due) {
                return Some(due);
            }
            self.timers.pop();
        }
        None
    }

    /// A new configuration (SIGHUP). Triggered runs and runs already due stay planned for
    /// the jobs that still exist; scheduled runs not due yet are planned again, after `now`,
    /// from the new schedules (dsari plans every job again and drops pending triggers too;
    /// a trigger file, once consumed, is not lost here). Runs in progress keep their slots until they end.
    pub(super) fn reload(
        &mut self,
        jobs: JobTable,
        limits: BTreeMap<String, usize>,
        now: DateTime<Utc>,
    ) {
        self.jobs = jobs;
        self.limits = limits;
        // The jobs' places changed: index the planned runs again.
        self.by_job = self
            .planned
            .iter()
            .filter_map(|(id, p)| Some((self.jobs.index_of(&p.request.job)?, *id)))
            .collect();
        let dropped: Vec<u64> = self
            .planned
            .iter()
            .filter(|(_, p)| {
                !self.jobs.contains_key(&p.request.job)
                    || (p.respawn
                        && p.request.trigger_type == SCHEDULE
                        && p.request.schedule_time > now)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in dropped {
            self.unplan(id);
        }
        self.plan_schedules(now);
    }

    /// Shutdown: nothing more starts. Runs in progress keep their slots until they end.
    pub(super) fn clear(&mut self) {
        self.planned.clear();
        self.by_job.clear();
        self.timers.clear();
        self.due.clear();
    }

    /// The planned runs of the job at `index` in `jobs`, in the order they were asked for.
    fn ids_of(&self, index: usize) -> impl Iterator<Item = u64> + '_ {
        self.by_job
            .range((index, 0)..=(index, u64::MAX))
            .map(|(_, id)| *id)
    }

    fn has_respawn(&self, index: usize) -> bool {
        self.ids_of(index)
            .any(|id| self.planned.get(&id).is_some_and(|p| p.respawn))
    }

    fn plan(&mut self, request: Request, respawn: bool) {
        let id = self.next_id;
        self.next_id += 1;
        self.timers.push(Reverse((request.schedule_time, id)));
        if let Some(index) = self.jobs.index_of(&request.job) {
            self.by_job.insert((index, id));
        }
        self.planned.insert(
            id,
            Planned {
                request: Box::new(request),
                respawn,
                is_due: false,
            },
        );
    }

    fn unplan(&mut self, id: u64) -> Option<Planned> {
        let planned = self.planned.remove(&id)?;
        if let Some(index) = self.jobs.index_of(&planned.request.job) {
            self.by_job.remove(&(index, id));
        }
        Some(planned)
    }
}

/// The schedule's first time strictly after `t`. `Schedule::next_after` counts from the
/// whole second before it, as dsari's croniter does, so it passes over a time that is
/// still ahead within that second (a job's times are whole seconds plus its hashed
/// sub-second offset): a run starting 40 ms after its second would skip the next one,
/// and a reload a tick still due. Times are whole seconds plus less than one, so the
/// only such time is the one of `t`'s own second.
fn first_after(job: &ScheduledJob, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let second_before = t.checked_sub_signed(chrono::TimeDelta::seconds(1))?;
    match job.next_after(second_before) {
        Some(ahead) if ahead > t => Some(ahead),
        _ => job.next_after(t),
    }
}

fn scheduled(job: &str, due: DateTime<Utc>, trigger_type: &'static str) -> Request {
    Request {
        job: job.to_owned(),
        schedule_time: due,
        trigger_type,
        trigger_data: serde_json::json!({}),
        environment: BTreeMap::new(),
    }
}

#[cfg(test)]
#[path = "planner_tests.rs"]
mod tests;
