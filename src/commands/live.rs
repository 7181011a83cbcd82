//! The live view of a chain run on a terminal: one status line per running task (name,
//! try, time so far, `max_time`) below the task output, and a summary table at the end
//! with the command that shows the run again.
//!
//! It is shown only when stderr is a terminal, without `-q`, and with `TERM` other than
//! `dumb`; otherwise a run prints its plain log lines only. `NO_COLOR` takes the colour
//! away, not the view (the convention is about colour alone). The status lines are
//! indicatif bars; task output and log lines reach the terminal through
//! [`crate::terminal`], which clears the bars for every write and draws them again.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::print::{self, Style};
use crate::chain::{Observer, TaskStart};
use crate::record::{RunStatus, TaskResult};
use crate::terminal::{self, Screen};

/// How often the status lines are redrawn (the elapsed time and the spinner move).
const TICK: Duration = Duration::from_millis(200);

/// Whether the live view is wanted: stderr is a terminal, `-q` is not given, and the
/// terminal can move its cursor.
pub(crate) fn is_wanted(quiet: bool) -> bool {
    !quiet
        && std::io::stderr().is_terminal()
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// The bars, as the terminal seam sees them.
struct Bars(MultiProgress);

impl Screen for Bars {
    fn suspend(&self, write: &mut dyn FnMut()) {
        self.0.suspend(write);
    }
}

/// One task's line in the summary.
struct Row {
    task: String,
    /// The last attempt's result (`OK`, `RETRY`...), or `abandoned`.
    result: Option<&'static str>,
    tries: u32,
    took: Duration,
}

/// The view of the runs of one `runner run`.
pub(crate) struct LiveView {
    bars: MultiProgress,
    running: Mutex<HashMap<(String, u32), ProgressBar>>,
    /// The status lines of tasks waiting for events, by task.
    waiting: Mutex<HashMap<String, ProgressBar>>,
    rows: Mutex<Vec<Row>>,
    style: Style,
    /// `runner [--state-dir DIR] runs show`, or `None` when runs are not recorded.
    show: Option<String>,
}

impl LiveView {
    /// Starts the view and puts it on the terminal; `show` is the command that shows a
    /// run again, without its id (`None` with `--no-record`).
    pub(crate) fn start(show: Option<String>) -> Arc<LiveView> {
        let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        terminal::set(Some(Arc::new(Bars(bars.clone()))));
        Arc::new(LiveView {
            bars,
            running: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
            rows: Mutex::new(Vec::new()),
            style: Style::for_stderr(),
            show,
        })
    }

    /// Takes the view off the terminal.
    pub(crate) fn finish(&self) {
        let _ = self.bars.clear();
        terminal::set(None);
    }

    fn bar_style(&self, start: &TaskStart<'_>) -> ProgressStyle {
        let max_time = match start.max_time {
            Some(limit) => format!("max_time {}", crate::config::duration::display(limit)),
            None => "no max_time".to_owned(),
        };
        // Only digits and a duration go into the template; the name is the prefix.
        self.line_style(&format!(
            "try {} of {}  {{elapsed}} ({max_time})",
            start.try_num, start.max_tries
        ))
    }

    /// A spinner's line: its spinner, the task's name, then `rest` (a template).
    fn line_style(&self, rest: &str) -> ProgressStyle {
        let (spinner, name) = if self.style.is_colour() {
            ("{spinner:.cyan}", "{prefix:.bold}")
        } else {
            ("{spinner}", "{prefix}")
        };
        ProgressStyle::with_template(&format!("{spinner} {name}  {rest}"))
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
    }

    fn add_line(&self, task: &str, style: ProgressStyle) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new_spinner());
        bar.set_style(style);
        bar.set_prefix(task.to_owned());
        bar.enable_steady_tick(TICK);
        bar
    }

    fn remove_line(&self, bar: Option<ProgressBar>) {
        if let Some(bar) = bar {
            bar.finish_and_clear();
            self.bars.remove(&bar);
        }
    }

    fn row(&self, task: &str) -> std::sync::MutexGuard<'_, Vec<Row>> {
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        if !rows.iter().any(|r| r.task == task) {
            rows.push(Row {
                task: task.to_owned(),
                result: None,
                tries: 0,
                took: Duration::ZERO,
            });
        }
        rows
    }

    fn summary(&self, run_id: &str, status: RunStatus) -> String {
        let rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        let mut table = vec![vec![
            "TASK".to_owned(),
            "RESULT".to_owned(),
            "TRIES".to_owned(),
            "DURATION".to_owned(),
        ]];
        for row in rows.iter() {
            table.push(vec![
                row.task.clone(),
                match row.result {
                    Some(word) => self.style.status(word),
                    None => "-".to_owned(),
                },
                row.tries.to_string(),
                print::human(row.took),
            ]);
        }
        let mut text = String::from("\n");
        if rows.is_empty() {
            text.push_str("no task ran\n");
        } else {
            text.push_str(&print::table(&table));
        }
        text.push_str(&format!(
            "run {run_id}: {}\n",
            self.style.status(status.as_str())
        ));
        match &self.show {
            Some(show) => text.push_str(&format!("see it again: {show} {run_id}\n")),
            None => text.push_str("not recorded (--no-record)\n"),
        }
        text
    }
}

impl Observer for LiveView {
    fn run_started(&self, _run_id: &str) {
        self.rows.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn task_waiting(&self, task: &str, missing: &[String], wait_time: Option<Duration>) {
        drop(self.row(task));
        let limit = match wait_time {
            Some(limit) => format!("wait_time {}", crate::config::duration::display(limit)),
            None => "no wait_time".to_owned(),
        };
        // Event names are the message, not the template: they are not escaped there.
        let bar = self.add_line(
            task,
            self.line_style(&format!("{{msg}}  {{elapsed}} ({limit})")),
        );
        bar.set_message(format!("waiting for {}", missing.join(", ")));
        let old = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(task.to_owned(), bar);
        self.remove_line(old);
    }

    fn task_abandoned(&self, task: &str) {
        let bar = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(task);
        self.remove_line(bar);
        let mut rows = self.row(task);
        if let Some(row) = rows.iter_mut().find(|r| r.task == task) {
            row.result = Some("abandoned");
        }
    }

    fn task_started(&self, start: &TaskStart<'_>) {
        drop(self.row(start.task));
        let waited = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(start.task);
        self.remove_line(waited);
        let bar = self.add_line(start.task, self.bar_style(start));
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((start.task.to_owned(), start.try_num), bar);
    }

    fn task_finished(&self, task: &str, try_num: u32, result: TaskResult, took: Duration) {
        let bar = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(task.to_owned(), try_num));
        self.remove_line(bar);
        let waited = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(task);
        self.remove_line(waited);
        let mut rows = self.row(task);
        if let Some(row) = rows.iter_mut().find(|r| r.task == task) {
            row.result = Some(result.as_str());
            row.tries += 1;
            row.took += took;
        }
    }

    fn run_finished(&self, run_id: &str, status: RunStatus) {
        let waiting: Vec<ProgressBar> = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, bar)| bar)
            .collect();
        for bar in waiting {
            self.remove_line(Some(bar));
        }
        let text = self.summary(run_id, status);
        terminal::write(|| {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        });
    }
}
