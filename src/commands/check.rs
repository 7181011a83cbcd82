//! `runner check [-c FILE] TASKDIR`: validate everything a run would, then print the plan.

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use super::prepare::{Prepared, prepare};
use crate::cli::{CheckArgs, Format, GlobalArgs};
use crate::config::TaskSettings;
use crate::config::duration::display;
use crate::error::{Error, exit_codes};

/// The printed plan.
#[derive(Serialize)]
struct PlanView {
    taskdir: PathBuf,
    config: Option<PathBuf>,
    job: String,
    tasks: Vec<TaskView>,
    not_run: Vec<NotRunView>,
}

#[derive(Serialize)]
struct TaskView {
    position: usize,
    file: String,
    name: String,
    settings: TaskSettings,
}

#[derive(Serialize)]
struct NotRunView {
    file: String,
    name: Option<String>,
    reason: String,
}

/// Validates the chain and prints its plan; configuration errors exit 78 like a run would.
pub(crate) fn check(global: &GlobalArgs, args: &CheckArgs) -> Result<u8, Error> {
    let taskdir = match (&args.daemon, &args.taskdir) {
        (Some(path), _) => {
            if args.insecure {
                crate::security::relax();
            }
            return super::daemon::check(global, path);
        }
        (None, Some(taskdir)) => taskdir,
        (None, None) => {
            return Err(Error::Usage(
                "a TASKDIR or --daemon PATH is required".to_owned(),
            ));
        }
    };
    let prepared = prepare(args.config.as_deref(), taskdir, args.insecure, None)?;
    let view = view_of(&prepared);
    let mut out = std::io::stdout().lock();
    let text = match global.format {
        Format::Json => serde_json::to_string_pretty(&view)
            .map(|mut s| {
                s.push('\n');
                s
            })
            .map_err(|e| e.to_string()),
        Format::Yaml => serde_yaml::to_string(&view).map_err(|e| e.to_string()),
        Format::Table => Ok(table(&view)),
    };
    let text = text.map_err(|e| Error::Usage(format!("cannot format the plan: {e}")))?;
    out.write_all(text.as_bytes())
        .map_err(|e| Error::io("<stdout>", e))?;
    Ok(exit_codes::OK)
}

fn view_of(p: &Prepared) -> PlanView {
    let tasks = p
        .plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| TaskView {
            position: i + 1,
            file: s.task.file_name.clone(),
            name: s.task.name.clone(),
            settings: s.settings.clone(),
        })
        .collect();
    let mut not_run: Vec<NotRunView> = p
        .plan
        .disabled
        .iter()
        .map(|t| NotRunView {
            file: t.file_name.clone(),
            name: Some(t.name.clone()),
            reason: "disabled".to_owned(),
        })
        .collect();
    for (file, reason) in &p.dir.excluded {
        not_run.push(NotRunView {
            file: file.clone(),
            name: None,
            reason: reason.to_string(),
        });
    }
    not_run.sort_by(|a, b| a.file.cmp(&b.file));
    PlanView {
        taskdir: p.dir.path.clone(),
        config: p.config.file.clone(),
        job: p.job.clone(),
        tasks,
        not_run,
    }
}

fn settings_line(s: &TaskSettings) -> String {
    let mut parts = vec![
        format!("max_time={}", s.max_time.map_or("none".to_owned(), display)),
        format!("max_tries={}", s.max_tries),
        format!("sleep_time={}", display(s.sleep_time)),
        format!("retry_jitter={}", display(s.retry_jitter)),
        format!("kill_grace={}", display(s.kill_grace)),
    ];
    if let Some(i) = &s.interpreter {
        parts.push(format!("interpreter={}", shell_words::join(i)));
    }
    if !s.depends_on.is_empty() {
        parts.push(format!("depends_on={}", s.depends_on.join(",")));
    }
    if !s.after.is_empty() {
        parts.push(format!("after={}", s.after.join(",")));
    }
    if !s.unless.is_empty() {
        parts.push(format!("unless={}", s.unless.join(",")));
    }
    if let Some(w) = s.wait_time {
        parts.push(format!("wait_time={}", display(w)));
    }
    if s.frequency != crate::config::Frequency::Always {
        parts.push(format!(
            "frequency={}",
            serde_json::to_value(s.frequency)
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .unwrap_or_default()
        ));
    }
    parts.join(" ")
}

fn table(view: &PlanView) -> String {
    let mut rows: Vec<[String; 4]> = vec![[
        "#".into(),
        "FILE".into(),
        "TASK".into(),
        "SETTINGS OR REASON".into(),
    ]];
    for t in &view.tasks {
        rows.push([
            t.position.to_string(),
            t.file.clone(),
            t.name.clone(),
            settings_line(&t.settings),
        ]);
    }
    for n in &view.not_run {
        rows.push([
            "-".into(),
            n.file.clone(),
            n.name.clone().unwrap_or_else(|| "-".into()),
            format!("not run: {}", n.reason),
        ]);
    }
    let widths: Vec<usize> = (0..3)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    out.push_str(&format!("task directory: {}\n", view.taskdir.display()));
    out.push_str(&format!(
        "configuration:  {}\n",
        view.config
            .as_ref()
            .map_or("(none, defaults apply)".to_owned(), |c| c
                .display()
                .to_string())
    ));
    out.push_str(&format!("job:            {}\n\n", view.job));
    for r in &rows {
        out.push_str(&format!(
            "{:>w0$}  {:<w1$}  {:<w2$}  {}\n",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        ));
    }
    out.push_str(&format!("\nok: {} task(s) will run\n", view.tasks.len()));
    out
}
