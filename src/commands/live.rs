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
    result: Option<TaskResult>,
    tries: u32,
    took: Duration,
}

/// The view of the runs of one `runner run`.
pub(crate) struct LiveView {
    bars: MultiProgress,
    running: Mutex<HashMap<(String, u32), ProgressBar>>,
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
        // Only digits and a duration are put into the template; the name is the prefix.
        let (spinner, name) = if self.style.is_colour() {
            ("{spinner:.cyan}", "{prefix:.bold}")
        } else {
            ("{spinner}", "{prefix}")
        };
        let template = format!(
            "{spinner} {name}  try {} of {}  {{elapsed}} ({max_time})",
            start.try_num, start.max_tries
        );
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_spinner())
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
                    Some(result) => self.style.status(result.as_str()),
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

    fn task_started(&self, start: &TaskStart<'_>) {
        {
            let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
            if !rows.iter().any(|r| r.task == start.task) {
                rows.push(Row {
                    task: start.task.to_owned(),
                    result: None,
                    tries: 0,
                    took: Duration::ZERO,
                });
            }
        }
        let bar = self.bars.add(ProgressBar::new_spinner());
        bar.set_style(self.bar_style(start));
        bar.set_prefix(start.task.to_owned());
        bar.enable_steady_tick(TICK);
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
        if let Some(bar) = bar {
            bar.finish_and_clear();
            self.bars.remove(&bar);
        }
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(row) = rows.iter_mut().find(|r| r.task == task) {
            row.result = Some(result);
            row.tries += 1;
            row.took += took;
        }
    }

    fn run_finished(&self, run_id: &str, status: RunStatus) {
        let text = self.summary(run_id, status);
        terminal::write(|| {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        });
    }
}
