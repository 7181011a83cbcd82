//! The pages' contents: view structs built from the store's model, rendered with the
//! templates in `templates/`. minijinja escapes every inserted value in `.html`
//! templates, so a job name, trigger data or task output holding markup stays text.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use chrono::{Local, TimeZone};
use minijinja::Environment;
use serde::Serialize;

use super::site::JobInput;
use crate::error::Error;
use crate::store::model::{RunDetail, RunRecord, RunStatus, StoredOutput};

/// The style sheet, written as `style.css`.
pub(crate) const STYLE: &str = include_str!("templates/style.css");

/// How many results the index's strip shows per job.
const STRIP: usize = 30;

/// How much of each output a run page shows (its end).
pub(crate) const OUTPUT_LIMIT: u64 = 256 * 1024;

/// The templates, compiled once.
pub(crate) struct Renderer {
    env: Environment<'static>,
    store: String,
}

#[derive(Serialize)]
struct Cell {
    status: &'static str,
    started: String,
    page: Option<String>,
}

#[derive(Serialize)]
struct JobRow {
    name: String,
    file: String,
    last: Option<RunRow>,
    strip: Vec<Cell>,
    success: String,
    total: u64,
    shown: usize,
    runs: Vec<RunRow>,
}

#[derive(Serialize)]
struct RunRow {
    short: String,
    page: String,
    status: &'static str,
    started: String,
    duration: String,
    exit: String,
    trigger: String,
}

#[derive(Serialize)]
struct Tick {
    left: String,
    label: String,
}

#[derive(Serialize)]
struct Bar {
    left: String,
    width: String,
    result: String,
    try_num: u32,
    duration: String,
}

#[derive(Serialize)]
struct AttemptRow {
    try_num: u32,
    result: String,
    exit: String,
    started: String,
    duration: String,
    note: String,
    result_data: Option<String>,
}

#[derive(Serialize)]
struct TaskView {
    instance: String,
    status: &'static str,
    bars: Vec<Bar>,
    attempts: Vec<AttemptRow>,
}

/// One event a task (or, for a daemon run, the job) waited for or watched.
#[derive(Serialize)]
struct EventRow {
    /// `TASK#n`, or `(run)` for the job's own `after` events in a daemon run.
    waiter: String,
    name: String,
    kind: String,
    /// `fired`, `not fired`, or `passed on` (a dependency's cascade).
    outcome: &'static str,
    fired_at: String,
    source: String,
    /// How long the task waited for its events, or `-`.
    waited: String,
}

#[derive(Serialize)]
struct OutputView {
    label: String,
    text: String,
    truncated: bool,
    shown: String,
    size: String,
}

#[derive(Serialize)]
struct RunView {
    id: String,
    short: String,
    job: String,
    job_file: String,
    status: &'static str,
    scheduled: String,
    started: String,
    stopped: String,
    duration: String,
    exit: String,
    trigger: String,
    trigger_data: String,
    run_data: Option<String>,
    ticks: Vec<Tick>,
    tasks: Vec<TaskView>,
    events: Vec<EventRow>,
    outputs: Vec<OutputView>,
}

impl Renderer {
    /// Compiles the templates.
    pub(crate) fn new(store: &str) -> Renderer {
        let mut env = Environment::new();
        // The names end in `.html`: minijinja turns auto-escaping on for them.
        for (name, source) in [
            ("base.html", include_str!("templates/base.html")),
            ("index.html", include_str!("templates/index.html")),
            ("job.html", include_str!("templates/job.html")),
            ("run.html", include_str!("templates/run.html")),
        ] {
            env.add_template(name, source)
                .expect("the report's templates compile");
        }
        Renderer {
            env,
            store: store.to_owned(),
        }
    }

    fn render(
        &self,
        name: &str,
        root: &str,
        key: &str,
        value: impl Serialize,
    ) -> Result<String, Error> {
        let template = self.env.get_template(name).expect("a known template");
        let mut context = std::collections::BTreeMap::new();
        context.insert("root", minijinja::Value::from(root));
        context.insert("version", minijinja::Value::from(env!("CARGO_PKG_VERSION")));
        context.insert("store", minijinja::Value::from(self.store.as_str()));
        context.insert(key, minijinja::Value::from_serialize(&value));
        template
            .render(context)
            .map_err(|e| Error::Refused(format!("cannot render {name}: {e:#}")))
    }

    /// The index: one row per job.
    pub(crate) fn index(&self, jobs: &[JobInput]) -> Result<String, Error> {
        let rows: Vec<JobRow> = jobs.iter().map(|j| job_row(j, "")).collect();
        self.render("index.html", "", "jobs", rows)
    }

    /// A job's page: its newest runs.
    pub(crate) fn job(&self, job: &JobInput) -> Result<String, Error> {
        self.render("job.html", "../", "job", job_row(job, "../"))
    }

    /// A run's page: facts, timeline, attempts and output (`kept`: the output's end as
    /// the store keeps it, when it does; else the output files are read).
    pub(crate) fn run(&self, detail: &RunDetail, kept: &[StoredOutput]) -> Result<String, Error> {
        self.render("run.html", "../", "run", run_view(detail, kept))
    }
}

/// The page of a job, inside `jobs/`: its name with anything but letters, digits, `.`,
/// `_` and `-` written as `%XX`, so any name makes one safe file name.
pub(crate) fn job_file(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && !out.is_empty()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{out}.html")
}

/// A page's file name as a link: the `%` of its escapes escaped again, since a browser
/// decodes a link before it opens the file.
pub(crate) fn href(file: &str) -> String {
    file.replace('%', "%25")
}

/// A run's page, relative to the site's root.
pub(crate) fn run_page(run_id: &str) -> String {
    format!("runs/{}", job_file(run_id))
}

fn job_row(job: &JobInput, root: &str) -> JobRow {
    let total: u64 = job.counts.values().sum();
    let ok = job.counts.get("ok").copied().unwrap_or(0);
    let success = if total == 0 {
        "-".to_owned()
    } else {
        format!("{:.1}%", ok as f64 * 100.0 / total as f64)
    };
    let strip = job
        .runs
        .iter()
        .take(STRIP)
        .rev()
        .map(|r| Cell {
            status: r.status.as_str(),
            started: time(r.start_time),
            page: Some(format!("{root}{}", href(&run_page(&r.run_id)))),
        })
        .collect();
    JobRow {
        name: job.name.clone(),
        file: href(&job_file(&job.name)),
        last: job.runs.first().map(run_row),
        strip,
        success,
        total,
        shown: job.runs.len(),
        runs: job.runs.iter().map(run_row).collect(),
    }
}

fn run_row(run: &RunRecord) -> RunRow {
    RunRow {
        short: run.run_id.chars().take(8).collect(),
        page: href(&run_page(&run.run_id)),
        status: run.status.as_str(),
        started: time(run.start_time),
        duration: span(run.start_time, run.stop_time),
        exit: run.exit_code.map_or("-".to_owned(), |c| c.to_string()),
        trigger: run.trigger_type.clone().unwrap_or_default(),
    }
}

fn run_view(detail: &RunDetail, kept: &[StoredOutput]) -> RunView {
    let run = &detail.run;
    let attempts = detail.tasks.iter().flat_map(|t| t.attempts.iter());
    let first = attempts
        .clone()
        .map(|a| a.start_time)
        .fold(run.start_time.unwrap_or(f64::INFINITY), f64::min);
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let last = run.stop_time.unwrap_or_else(|| {
        attempts
            .clone()
            .map(|a| a.stop_time.unwrap_or(now))
            .fold(first, f64::max)
    });
    let origin = if first.is_finite() { first } else { 0.0 };
    let length = (last - origin).max(0.001);
    let pct = |t: f64| format!("{:.3}", ((t - origin) / length * 100.0).clamp(0.0, 100.0));
    let ticks = (0..=4)
        .map(|i| {
            let at = length * i as f64 / 4.0;
            Tick {
                left: format!("{}", i * 25),
                label: format!("+{}", seconds(at)),
            }
        })
        .collect();
    let tasks = detail
        .tasks
        .iter()
        .map(|t| TaskView {
            instance: t.instance.clone(),
            status: t.status.as_str(),
            bars: t
                .attempts
                .iter()
                .map(|a| {
                    let stop = a.stop_time.unwrap_or(last);
                    Bar {
                        left: pct(a.start_time),
                        width: format!(
                            "{:.3}",
                            ((stop - a.start_time) / length * 100.0).clamp(0.0, 100.0)
                        ),
                        result: a.result.clone().unwrap_or_else(|| "running".to_owned()),
                        try_num: a.try_num,
                        duration: span(Some(a.start_time), a.stop_time),
                    }
                })
                .collect(),
            attempts: t
                .attempts
                .iter()
                .map(|a| AttemptRow {
                    try_num: a.try_num,
                    result: a.result.clone().unwrap_or_else(|| "running".to_owned()),
                    exit: match (a.exit_code, a.signal) {
                        (Some(code), _) => code.to_string(),
                        (None, Some(sig)) => format!("signal {sig}"),
                        (None, None) => "-".to_owned(),
                    },
                    started: time(Some(a.start_time)),
                    duration: span(Some(a.start_time), a.stop_time),
                    note: a.note.clone().unwrap_or_default(),
                    result_data: a.result_data.as_ref().map(|d| d.to_string()),
                })
                .collect(),
        })
        .collect();
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    RunView {
        id: run.run_id.clone(),
        short: run.run_id.chars().take(8).collect(),
        job: run.job_name.clone(),
        job_file: href(&job_file(&run.job_name)),
        status: run.status.as_str(),
        scheduled: time(run.schedule_time),
        started: time(run.start_time),
        stopped: if run.status == RunStatus::Running {
            "still running".to_owned()
        } else {
            time(run.stop_time)
        },
        duration: span(run.start_time, run.stop_time),
        exit: run.exit_code.map_or("-".to_owned(), |c| c.to_string()),
        trigger: run.trigger_type.clone().unwrap_or_else(|| "-".to_owned()),
        trigger_data: pretty(&run.trigger_data),
        run_data: run
            .run_data
            .as_object()
            .filter(|o| !o.is_empty())
            .map(|_| pretty(&run.run_data)),
        ticks,
        tasks,
        events: events(detail),
        outputs: outputs(detail, kept),
    }
}

/// The events the run waited for: a daemon run's own (the `events` of its trigger
/// data), then each task instance's, as recorded when it was decided.
fn events(detail: &RunDetail) -> Vec<EventRow> {
    let mut rows = Vec::new();
    if let Some(own) = detail.run.trigger_data["events"].as_object() {
        for name in own.keys() {
            rows.push(EventRow {
                waiter: "(run)".to_owned(),
                name: name.clone(),
                kind: "after".to_owned(),
                outcome: "fired",
                fired_at: "-".to_owned(),
                source: "-".to_owned(),
                waited: "-".to_owned(),
            });
        }
    }
    for task in &detail.tasks {
        for e in &task.events {
            let outcome = match (e.fired, e.source.as_deref()) {
                (false, _) => "not fired",
                (true, Some("cascade")) => "passed on",
                (true, _) => "fired",
            };
            rows.push(EventRow {
                waiter: task.instance.clone(),
                name: e.name.clone(),
                kind: e.kind.clone(),
                outcome,
                fired_at: time(e.fired_at),
                source: e.source.clone().unwrap_or_else(|| "-".to_owned()),
                waited: span(e.waited_since, e.waited_since.map(|_| e.decided_at)),
            });
        }
    }
    rows
}

/// The run's output: what the store keeps of it (a fleet database, for every host's
/// runs) when it keeps any, else dsari's `output.txt` when there is one, else each
/// attempt's file.
fn outputs(detail: &RunDetail, kept: &[StoredOutput]) -> Vec<OutputView> {
    let cut = |o: &StoredOutput, label: String| {
        let start = o.bytes.len().saturating_sub(OUTPUT_LIMIT as usize);
        output_view(label, &o.bytes[start..], o.size)
    };
    if let Some(run) = kept.iter().find(|o| o.try_num == 0) {
        // A dsari run's whole output, as the store keeps it.
        return vec![cut(run, run.instance.clone())];
    }
    if !kept.is_empty() {
        // Each attempt's as the store keeps it, else (still running: it is stored when
        // the attempt ends) its file, where this host has it.
        let mut out = Vec::new();
        for t in &detail.tasks {
            for a in &t.attempts {
                let label = format!("{} try {}", t.instance, a.try_num);
                let stored = kept
                    .iter()
                    .find(|o| o.instance == t.instance && o.try_num == a.try_num);
                if let Some(o) = stored {
                    out.push(cut(o, label));
                } else if let Some((tail, size)) =
                    a.output.as_deref().and_then(|p| read_tail(Path::new(p)))
                {
                    out.push(output_view(label, &tail, size));
                }
            }
        }
        return out;
    }
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    if let Some(dir) = &detail.output_dir {
        let path = Path::new(dir).join("output.txt");
        if path.is_file() {
            files.push(("output.txt".to_owned(), path));
        }
    }
    if files.is_empty() {
        for t in &detail.tasks {
            for a in &t.attempts {
                if let Some(path) = &a.output {
                    files.push((
                        format!("{} try {}", t.instance, a.try_num),
                        PathBuf::from(path),
                    ));
                }
            }
        }
    }
    files
        .into_iter()
        .filter_map(|(label, path)| {
            let (tail, size) = read_tail(&path)?;
            Some(output_view(label, &tail, size))
        })
        .collect()
}

/// An output's end (`tail`, at most [`OUTPUT_LIMIT`] bytes) of `size` bytes in all.
fn output_view(label: String, tail: &[u8], size: u64) -> OutputView {
    OutputView {
        label,
        text: String::from_utf8_lossy(tail).into_owned(),
        truncated: size > OUTPUT_LIMIT,
        shown: bytes(OUTPUT_LIMIT.min(size)),
        size: bytes(size),
    }
}

/// The last [`OUTPUT_LIMIT`] bytes of `path`, and the file's size; `None` when it is
/// gone (pruned) or unreadable.
fn read_tail(path: &Path) -> Option<(Vec<u8>, u64)> {
    let mut file = std::fs::File::open(path).ok()?;
    let size = file.metadata().ok()?.len();
    if size > OUTPUT_LIMIT {
        file.seek(SeekFrom::Start(size - OUTPUT_LIMIT)).ok()?;
    }
    let mut buf = Vec::new();
    file.take(OUTPUT_LIMIT).read_to_end(&mut buf).ok()?;
    Some((buf, size))
}

fn bytes(n: u64) -> String {
    if n >= 1024 * 1024 {
        format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
    } else if n >= 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} bytes")
    }
}

/// A local time with its UTC offset, to the second.
fn time(t: Option<f64>) -> String {
    let Some(t) = t else {
        return "-".to_owned();
    };
    match Local.timestamp_millis_opt((t * 1000.0) as i64).single() {
        Some(local) => local.format("%Y-%m-%d %H:%M:%S %:z").to_string(),
        None => "-".to_owned(),
    }
}

fn span(start: Option<f64>, stop: Option<f64>) -> String {
    match (start, stop) {
        (Some(a), Some(b)) => seconds((b - a).max(0.0)),
        _ => "-".to_owned(),
    }
}

/// A duration for people: `12ms`, `2.25s`, `42s`, `3m 04s`, `2h 05m`.
fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else if s < 10.0 {
        format!("{s:.2}s")
    } else if s < 60.0 {
        format!("{s:.0}s")
    } else if s < 3600.0 {
        format!("{}m {:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{}h {:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::{AttemptRecord, EventRecordOfTask, InstanceStatus, TaskRecord};

    fn detail(output: &str) -> (tempfile::TempDir, RunDetail) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out");
        std::fs::write(&path, output).expect("write");
        let detail = RunDetail {
            run: RunRecord {
                run_id: "0123abcd-x".to_owned(),
                job_name: "<b>job</b>".to_owned(),
                status: RunStatus::Ok,
                schedule_time: Some(100.0),
                start_time: Some(100.0),
                stop_time: Some(110.0),
                exit_code: Some(0),
                trigger_type: Some("manual".to_owned()),
                trigger_data: serde_json::json!({"why": "<img src=x onerror=alert(1)>"}),
                run_data: serde_json::json!({}),
                host: None,
            },
            tasks: vec![TaskRecord {
                name: "t".to_owned(),
                instance: "t#0".to_owned(),
                file: "10-t".to_owned(),
                status: InstanceStatus::Finished,
                attempts: vec![AttemptRecord {
                    try_num: 1,
                    exit_code: Some(0),
                    signal: None,
                    result: Some("OK".to_owned()),
                    start_time: 101.0,
                    stop_time: Some(106.0),
                    note: None,
                    output: Some(path.display().to_string()),
                    result_data: None,
                    leftovers: None,
                }],
                events: vec![EventRecordOfTask {
                    name: "<i>go</i>".to_owned(),
                    kind: "after".to_owned(),
                    fired: true,
                    event_id: Some(7),
                    fired_at: Some(100.5),
                    source: Some("fire".to_owned()),
                    waited_since: Some(100.2),
                    decided_at: 101.0,
                }],
            }],
            output_dir: None,
        };
        (dir, detail)
    }

    #[test]
    fn everything_from_records_is_escaped() {
        let (_dir, detail) = detail("<script>alert(1)</script>\n");
        let html = Renderer::new("/s").run(&detail, &[]).expect("render");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<b>job</b>"));
        assert!(!html.contains("<img"));
        assert!(!html.contains("<i>go</i>"));
        assert!(html.contains("&lt;i&gt;go&lt;&#x2f;i&gt;"), "{html}");
    }

    #[test]
    fn the_events_a_task_waited_for_are_rows_of_the_run_page() {
        let (_dir, mut detail) = detail("");
        detail.run.trigger_data = serde_json::json!({"events": {"deploy": {}}});
        let view = run_view(&detail, &[]);
        let rows: Vec<(&str, &str, &str, &str, &str)> = view
            .events
            .iter()
            .map(|e| {
                (
                    e.waiter.as_str(),
                    e.name.as_str(),
                    e.kind.as_str(),
                    e.outcome,
                    e.waited.as_str(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("(run)", "deploy", "after", "fired", "-"),
                ("t#0", "<i>go</i>", "after", "fired", "800ms"),
            ]
        );
    }

    #[test]
    fn output_the_store_keeps_is_shown_instead_of_files_and_cut_to_its_end() {
        let (_dir, detail) = detail("from the file\n");
        let mut bytes = b"head\n".to_vec();
        bytes.resize(OUTPUT_LIMIT as usize + 10, b'x');
        bytes.extend_from_slice(b"end\n");
        let kept = [StoredOutput {
            task: "t".to_owned(),
            instance: "t#0".to_owned(),
            try_num: 1,
            size: bytes.len() as u64,
            bytes,
        }];
        let view = run_view(&detail, &kept);
        let out = &view.outputs[..];
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].label, "t#0 try 1");
        assert!(out[0].truncated);
        assert_eq!(out[0].text.len(), OUTPUT_LIMIT as usize);
        assert!(out[0].text.ends_with("xend\n") && !out[0].text.contains("head"));
        assert!(!out[0].text.contains("from the file"));
        let files = run_view(&detail, &[]);
        assert_eq!(files.outputs[0].text, "from the file\n");
        // An attempt whose output is not stored yet (still running) shows its file.
        let mut detail = detail;
        let mut running = detail.tasks[0].attempts[0].clone();
        running.try_num = 2;
        detail.tasks[0].attempts.push(running);
        let view = run_view(&detail, &kept);
        let labels: Vec<&str> = view.outputs.iter().map(|o| o.label.as_str()).collect();
        assert_eq!(labels, ["t#0 try 1", "t#0 try 2"]);
        assert_eq!(view.outputs[1].text, "from the file\n");
    }

    #[test]
    fn bars_sit_on_the_run_time_axis() {
        let (_dir, detail) = detail("");
        let view = run_view(&detail, &[]);
        let bar = &view.tasks[0].bars[0];
        assert_eq!(
            (bar.left.as_str(), bar.width.as_str()),
            ("10.000", "50.000")
        );
    }

    #[test]
    fn any_job_name_makes_a_safe_file_name() {
        assert_eq!(job_file("nightly-build_2.x"), "nightly-build_2.x.html");
        assert_eq!(job_file("../etc/x y"), "%2E.%2Fetc%2Fx%20y.html");
        assert_eq!(job_file(".hidden"), "%2Ehidden.html");
    }
}
