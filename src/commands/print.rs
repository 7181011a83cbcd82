//! Printing records for people (tables, local times, colour on a terminal) and for
//! scripts (JSON and YAML straight from the serde types).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anstyle::AnsiColor;
use serde::Serialize;

use crate::cli::Format;
use crate::error::Error;

/// Prints `value` as JSON or YAML, or calls `table` for the table format.
pub(crate) fn records<T: Serialize>(
    format: Format,
    value: &T,
    table: impl FnOnce(&Style) -> String,
) -> Result<(), Error> {
    let text = match format {
        Format::Json => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
        Format::Yaml => serde_yaml::to_string(value).map_err(|e| e.to_string()),
        Format::Table => Ok(table(&Style::for_stdout())),
    };
    let text = text.map_err(|e| Error::Usage(format!("cannot format the output: {e}")))?;
    write_stdout(text.as_bytes())
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a message.
pub(crate) fn write_stdout(bytes: &[u8]) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("<stdout>", e)),
    }
}

/// Whether to colour: only on a terminal, and never with `NO_COLOR` set.
pub(crate) struct Style {
    colour: bool,
}

impl Style {
    fn for_stdout() -> Style {
        Style {
            colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    /// Colour for what is written to stderr (the live view).
    pub(crate) fn for_stderr() -> Style {
        Style {
            colour: std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    /// Whether colour is on.
    pub(crate) fn is_colour(&self) -> bool {
        self.colour
    }

    /// Colours a status word by what it means: green good, red bad, yellow in between.
    pub(crate) fn status(&self, word: &str) -> String {
        if !self.colour {
            return word.to_owned();
        }
        let colour = match word {
            "ok" | "finished" | "OK" => AnsiColor::Green,
            "failed" | "halted" | "lost" | "HALT" | "RETRY" => AnsiColor::Red,
            "running" | "waiting" | "interrupted" | "exited" | "EXIT" | "abandoned" => {
                AnsiColor::Yellow
            }
            _ => return word.to_owned(),
        };
        let style = colour.on_default();
        format!("{style}{word}{style:#}")
    }
}

/// Lays out rows in columns; the first row is the header. Colour codes do not count
/// towards the width.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let visible = |s: &str| anstream::adapter::strip_str(s).to_string().chars().count();
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| visible(s))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                line.push_str(&" ".repeat(widths[c] - visible(cell) + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// An epoch time as local time with its UTC offset, `YYYY-MM-DD HH:MM:SS +HH:MM`, so a
/// table read in another zone (or pasted into a ticket) is not ambiguous.
pub(crate) fn local_time(epoch: Option<f64>) -> String {
    let Some(epoch) = epoch else {
        return "-".to_owned();
    };
    match crate::epoch::utc(epoch) {
        Some(t) => t
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S %:z")
            .to_string(),
        None => "-".to_owned(),
    }
}

/// A duration for people: `0.42s`, `12.3s`, `4m 05s`, `2h 03m`.
pub(crate) fn duration(start: Option<f64>, stop: Option<f64>) -> String {
    match (start, stop) {
        (Some(a), Some(b)) if b >= a => human(Duration::from_secs_f64(b - a)),
        _ => "-".to_owned(),
    }
}

pub(crate) fn human(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 10.0 {
        format!("{secs:.2}s")
    } else if secs < 60.0 {
        format!("{secs:.1}s")
    } else if secs < 3600.0 {
        format!("{}m {:02}s", d.as_secs() / 60, d.as_secs() % 60)
    } else {
        format!("{}h {:02}m", d.as_secs() / 3600, (d.as_secs() % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(Duration::from_millis(420)), "0.42s");
        assert_eq!(human(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(human(Duration::from_secs(245)), "4m 05s");
        assert_eq!(human(Duration::from_secs(7380)), "2h 03m");
        assert_eq!(duration(Some(10.0), None), "-");
    }

    #[test]
    fn status_words_are_coloured_by_meaning_only_when_asked() {
        let on = Style { colour: true };
        assert_eq!(on.status("ok"), "\x1b[32mok\x1b[0m");
        assert_eq!(on.status("HALT"), "\x1b[31mHALT\x1b[0m");
        assert_eq!(on.status("waiting"), "\x1b[33mwaiting\x1b[0m");
        assert_eq!(on.status("replayed"), "replayed");
        assert_eq!(Style { colour: false }.status("ok"), "ok");
    }

    #[test]
    fn table_aligns_ignoring_colour_codes() {
        let rows = vec![
            vec!["A".to_owned(), "B".to_owned(), "C".to_owned()],
            vec![
                "\x1b[32mok\x1b[0m".to_owned(),
                "long value".to_owned(),
                "x".to_owned(),
            ],
        ];
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "A   B           C");
        assert!(
            lines[1].ends_with("ok\x1b[0m  long value  x"),
            "{:?}",
            lines[1]
        );
    }
}
