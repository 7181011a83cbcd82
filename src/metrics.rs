//! The Prometheus text format (version 0.0.4) of the store's metrics, and the small
//! HTTP listener that serves it at `/metrics`.
//!
//! The numbers come from `store::metrics` (computed by SQLite); this file only names
//! and prints them. Names follow Prometheus conventions: `runner_` prefix, base units
//! (`_seconds`), counters ending in `_total`. Every known job gets every series, at 0
//! when it has no run yet, so alerts work before the first run.

use std::fmt::Write as _;

use crate::store::metrics::{Metrics, Summary};

/// The run results a job's `runner_runs_total` always shows, even at 0.
const RUN_RESULTS: &[&str] = &["ok", "failed", "halted", "exited", "interrupted", "lost"];

/// The attempt results a task's `runner_task_attempts_total` always shows.
const ATTEMPT_RESULTS: &[&str] = &["OK", "RETRY", "HALT", "EXIT"];

/// The Content-Type of the text format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders `metrics` (plus a 0-valued entry for each of `known_jobs` without runs) in
/// the text format, with the summaries' quantiles as given.
pub(crate) fn render(metrics: &Metrics, known_jobs: &[String], quantiles: &[f64]) -> String {
    let mut jobs: Metrics = metrics.clone();
    for job in known_jobs {
        jobs.entry(job.clone()).or_default();
    }
    let mut out = String::new();

    family(
        &mut out,
        "runner_run_latency_seconds",
        "summary",
        "Time from a run's schedule time to its start, over finished runs",
    );
    for (job, m) in &jobs {
        summary(
            &mut out,
            "runner_run_latency_seconds",
            &[("job_name", job)],
            &m.latency,
            quantiles,
        );
    }
    family(
        &mut out,
        "runner_run_duration_seconds",
        "summary",
        "Time from a run's start to its stop, over finished runs",
    );
    for (job, m) in &jobs {
        summary(
            &mut out,
            "runner_run_duration_seconds",
            &[("job_name", job)],
            &m.duration,
            quantiles,
        );
    }
    family(
        &mut out,
        "runner_runs_total",
        "counter",
        "Finished runs of a job by result (ok, failed, halted, exited, interrupted, lost)",
    );
    for (job, m) in &jobs {
        for (result, count) in with_zeros(m.runs_by_result.iter(), RUN_RESULTS) {
            sample(
                &mut out,
                "runner_runs_total",
                &[("job_name", job), ("result", &result)],
                count as f64,
            );
        }
    }
    family(
        &mut out,
        "runner_running_runs",
        "gauge",
        "Runs of a job in progress now",
    );
    for (job, m) in &jobs {
        sample(
            &mut out,
            "runner_running_runs",
            &[("job_name", job)],
            m.running as f64,
        );
    }
    last_run_gauges(&mut out, &jobs);

    family(
        &mut out,
        "runner_task_duration_seconds",
        "summary",
        "Duration of a task's finished attempts",
    );
    for (job, m) in &jobs {
        for (task, t) in &m.tasks {
            summary(
                &mut out,
                "runner_task_duration_seconds",
                &[("job_name", job), ("task", task)],
                &t.duration,
                quantiles,
            );
        }
    }
    family(
        &mut out,
        "runner_task_attempts_total",
        "counter",
        "Finished attempts of a task by result (OK, RETRY, HALT, EXIT)",
    );
    for (job, m) in &jobs {
        for (task, t) in &m.tasks {
            for (result, count) in with_zeros(t.attempts_by_result.iter(), ATTEMPT_RESULTS) {
                sample(
                    &mut out,
                    "runner_task_attempts_total",
                    &[("job_name", job), ("task", task), ("result", &result)],
                    count as f64,
                );
            }
        }
    }
    family(
        &mut out,
        "runner_build_info",
        "gauge",
        "The runner version serving these metrics, constant 1",
    );
    sample(
        &mut out,
        "runner_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    out
}

/// Answers HTTP requests on `server` until it fails: `GET /metrics` gets the text from
/// `collect` (a 500 with the reason when that fails), anything else a 404. Requests are
/// answered one at a time: a scrape is short, and one at a time bounds the memory.
pub(crate) fn serve(
    server: &tiny_http::Server,
    mut collect: impl FnMut() -> Result<String, String>,
) {
    let content_type =
        tiny_http::Header::from_bytes("Content-Type", CONTENT_TYPE).expect("a valid header");
    let plain = tiny_http::Header::from_bytes("Content-Type", "text/plain; charset=utf-8")
        .expect("a valid header");
    for request in server.incoming_requests() {
        let path = request.url().split('?').next().unwrap_or("");
        let is_read = matches!(
            request.method(),
            tiny_http::Method::Get | tiny_http::Method::Head
        );
        let response = if path != "/metrics" {
            tiny_http::Response::from_string("not found: metrics are at /metrics\n")
                .with_status_code(404)
                .with_header(plain.clone())
        } else if !is_read {
            tiny_http::Response::from_string("only GET and HEAD\n")
                .with_status_code(405)
                .with_header(plain.clone())
        } else {
            match collect() {
                Ok(text) => {
                    tiny_http::Response::from_string(text).with_header(content_type.clone())
                }
                Err(e) => {
                    log::warn!("cannot collect metrics: {e}");
                    tiny_http::Response::from_string(format!("cannot collect metrics: {e}\n"))
                        .with_status_code(500)
                        .with_header(plain.clone())
                }
            }
        };
        if let Err(e) = request.respond(response) {
            log::debug!("metrics client went away: {e}");
        }
    }
}

/// The last run's exit code and times; a job without a finished run has none of these
/// series (a 0 would read as "succeeded in 1970").
fn last_run_gauges(out: &mut String, jobs: &Metrics) {
    type Pick = fn(&crate::store::metrics::LastRun) -> Option<f64>;
    let gauges: [(&str, &str, Pick); 4] = [
        (
            "runner_last_run_exit_code",
            "Exit code of a job's last finished run",
            |l| l.exit_code.map(|c| c as f64),
        ),
        (
            "runner_last_run_schedule_time_seconds",
            "Schedule time of a job's last finished run, seconds since the epoch",
            |l| l.schedule_time,
        ),
        (
            "runner_last_run_start_time_seconds",
            "Start time of a job's last finished run, seconds since the epoch",
            |l| l.start_time,
        ),
        (
            "runner_last_run_stop_time_seconds",
            "Stop time of a job's last finished run, seconds since the epoch",
            |l| l.stop_time,
        ),
    ];
    for (name, help, pick) in gauges {
        family(out, name, "gauge", help);
        for (job, m) in jobs {
            if let Some(value) = m.last_run.as_ref().and_then(pick) {
                sample(out, name, &[("job_name", job)], value);
            }
        }
    }
}

/// The known results first (0 when absent), then any other word the store holds.
fn with_zeros<'a>(
    counts: impl Iterator<Item = (&'a String, &'a u64)>,
    known: &[&str],
) -> Vec<(String, u64)> {
    let counts: Vec<(&String, &u64)> = counts.collect();
    let mut out: Vec<(String, u64)> = known
        .iter()
        .map(|k| {
            let n = counts
                .iter()
                .find(|(r, _)| r.as_str() == *k)
                .map_or(0, |(_, n)| **n);
            ((*k).to_owned(), n)
        })
        .collect();
    for (result, n) in counts {
        if !known.contains(&result.as_str()) {
            out.push((result.clone(), *n));
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn summary(out: &mut String, name: &str, labels: &[(&str, &str)], s: &Summary, quantiles: &[f64]) {
    for q in quantiles {
        // No observation yet: NaN, as Prometheus client libraries report it.
        let value = s
            .quantiles
            .iter()
            .find(|(have, _)| have == q)
            .map_or(f64::NAN, |(_, v)| *v);
        let q = q.to_string();
        let mut with_q = labels.to_vec();
        with_q.push(("quantile", &q));
        sample(out, name, &with_q, value);
    }
    sample(out, &format!("{name}_sum"), labels, s.sum);
    sample(out, &format!("{name}_count"), labels, s.count as f64);
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{key}=\"{}\"", escape_label(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", number(value));
}

/// A label value with `\`, `"` and newlines escaped, as the text format requires.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_job_without_runs_has_its_series_at_zero() {
        let text = render(&Metrics::new(), &["nightly".to_owned()], &[0.5]);
        assert!(text.contains("runner_runs_total{job_name=\"nightly\",result=\"ok\"} 0\n"));
        assert!(text.contains("runner_running_runs{job_name=\"nightly\"} 0\n"));
        assert!(text.contains("runner_run_duration_seconds_count{job_name=\"nightly\"} 0\n"));
        assert!(
            text.contains(
                "runner_run_duration_seconds{job_name=\"nightly\",quantile=\"0.5\"} NaN\n"
            )
        );
        assert!(!text.contains("runner_last_run_exit_code{"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
