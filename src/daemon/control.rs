//! The daemon's answers to the outside: trigger files, SIGHUP reloads, SIGTERM/SIGINT
//! shutdown and SIGQUIT status. The scheduling itself is in `service`.

use std::cmp::Reverse;

use chrono::Utc;

use super::jobs;
use super::launch::Request;
use super::service::{Service, Timer, TimerKind, data_dir};
use crate::config::daemon::DaemonConfig;
use crate::error::Error;
use crate::triggers;

impl Service {
    pub(super) fn scan_triggers(&mut self) {
        let names: Vec<String> = self.jobs.keys().cloned().collect();
        for job in names {
            self.take_trigger(&job);
        }
    }

    pub(super) fn take_trigger(&mut self, job: &str) {
        if !self.jobs.contains_key(job) {
            return;
        }
        let Some(trigger) = triggers::take(&self.data_dir, job) else {
            return;
        };
        let now = Utc::now();
        let request = Request {
            job: trigger.job,
            schedule_time: trigger.schedule_time.unwrap_or(now),
            trigger_type: trigger.kind,
            trigger_data: trigger.data,
            environment: trigger.environment,
        };
        match trigger.schedule_time {
            Some(due) if due > now => {
                let id = self.next_deferred;
                self.next_deferred += 1;
                log::info!("job \"{job}\": triggered run deferred until {due}");
                self.deferred.insert(id, request);
                self.timers.push(Reverse(Timer {
                    due,
                    kind: TimerKind::Deferred(id),
                }));
            }
            _ => self.enqueue(request),
        }
    }

    /// SIGHUP: swap in the new configuration only if it loads completely; running runs
    /// finish under the old one.
    pub(super) fn reload(&mut self) {
        let loaded = DaemonConfig::load(&self.setup.config_path)
            .map_err(Error::from)
            .and_then(|mut config| {
                let jobs = jobs::prepare(&config)?;
                config.jobs.clear();
                Ok((jobs, config))
            });
        let (jobs, config) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                log::error!(
                    "reload failed, keeping the running configuration: {}",
                    crate::error::one_line(&e)
                );
                return;
            }
        };
        let new_dir = data_dir(&config, self.setup.state_dir.as_deref());
        if new_dir != self.data_dir {
            log::warn!(
                "data_dir changed to {}; it takes effect when the daemon restarts",
                new_dir.display()
            );
        }
        for warning in &config.warnings {
            log::warn!("{warning}");
        }
        let added: Vec<String> = jobs
            .keys()
            .filter(|j| !self.jobs.contains_key(*j))
            .cloned()
            .collect();
        self.config = config;
        self.jobs = jobs;
        self.generation += 1;
        triggers::prepare_dirs(&self.data_dir, added.iter().map(String::as_str));
        if let Some(watcher) = self.watcher.as_mut() {
            for job in &added {
                watcher.add(job);
            }
        }
        self.schedule_all(Utc::now());
        log::info!("configuration reloaded: {} job(s)", self.jobs.len());
    }

    pub(super) fn shutdown(&mut self, sig: i32) {
        if self.stopping {
            log::warn!(
                "signal {sig} again: killing {} running run(s) now",
                self.running.len()
            );
            for run in self.running.values() {
                run.interrupt.raise(sig);
                run.interrupt.raise(sig);
            }
            return;
        }
        self.stopping = true;
        self.pending.clear();
        if self.running.is_empty() {
            log::info!("signal {sig}: stopping");
        } else if self.config.shutdown_kill_runs {
            log::info!(
                "signal {sig}: stopping {} running run(s)",
                self.running.len()
            );
            for run in self.running.values() {
                run.interrupt.raise(sig);
            }
        } else {
            log::info!(
                "signal {sig}: no new runs; waiting for {} running run(s) to finish",
                self.running.len()
            );
        }
    }

    pub(super) fn log_status(&self) {
        log::info!(
            "status: {} job(s), {} running, {} waiting",
            self.jobs.len(),
            self.running.len(),
            self.pending.len()
        );
        for (run_id, run) in &self.running {
            log::info!(
                "status: run {run_id} of job \"{}\" running for {:.1}s{}",
                run.job,
                run.started.elapsed().as_secs_f64(),
                run.group
                    .as_ref()
                    .map(|g| format!(" in group \"{g}\""))
                    .unwrap_or_default()
            );
        }
        for request in &self.pending {
            log::info!(
                "status: job \"{}\" waiting ({})",
                request.job,
                request.trigger_type
            );
        }
        let now = Utc::now();
        for (name, job) in &self.jobs {
            match job.next_after(now) {
                Some(next) => log::info!("status: job \"{name}\" next due {}", next.to_rfc3339()),
                None => log::info!("status: job \"{name}\" has no scheduled time"),
            }
        }
    }
}
