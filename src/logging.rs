//! Logging to stderr (env_logger) or to syslog; call sites only use the `log` macros.
//!
//! When stderr is the systemd journal (`JOURNAL_STREAM` names its device and inode, as
//! systemd sets it for a unit's stdout/stderr), every line starts with its syslog
//! priority (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug), which journald
//! strips and records; the journal adds its own timestamps, and runner's lines carry
//! none either way.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

use log::{Level, LevelFilter};

/// Whether stderr is the journal: `JOURNAL_STREAM=DEV:INODE` matches fd 2. A child
/// that inherited the variable but writes elsewhere (a pipe, a file) gets plain lines.
pub fn is_journal() -> bool {
    static JOURNAL: OnceLock<bool> = OnceLock::new();
    *JOURNAL.get_or_init(|| {
        let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
            return false;
        };
        let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
            return false;
        };
        let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
            return false;
        };
        dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
    })
}

/// The syslog priority prefix of a line at `level` when stderr is the journal; empty
/// otherwise.
pub fn priority(level: Level) -> &'static str {
    if !is_journal() {
        return "";
    }
    match level {
        Level::Error => "<3>",
        Level::Warn => "<4>",
        Level::Info => "<6>",
        Level::Debug | Level::Trace => "<7>",
    }
}

/// The level for `-v`/`-q`: warnings and info by default, debug with `-v`, trace with
/// `-vv`, errors only with `-q`.
pub(crate) fn level(verbose: u8, quiet: bool) -> LevelFilter {
    if quiet {
        return LevelFilter::Error;
    }
    match verbose {
        0 => LevelFilter::Info,
        1 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// Installs the logger once, at start. `RUST_LOG` overrides the level on stderr.
pub fn init(verbose: u8, quiet: bool, syslog: bool) {
    let level = level(verbose, quiet);
    if syslog {
        match syslog::init_unix(syslog::Facility::LOG_DAEMON, level) {
            Ok(()) => return,
            Err(e) => eprintln!("runner: warning: cannot log to syslog ({e}); logging to stderr"),
        }
    }
    let env = env_logger::Env::default().default_filter_or(level.as_str());
    let _ = env_logger::Builder::from_env(env)
        // Through the terminal seam, so a live view's status lines step aside.
        .target(env_logger::Target::Pipe(Box::new(crate::terminal::Stderr)))
        .format(|buf, record| {
            let prefix = priority(record.level());
            let level = record.level().as_str().to_ascii_lowercase();
            let text = record.args().to_string();
            let mut lines = log_lines(&text).into_iter();
            writeln!(
                buf,
                "{prefix}runner: {level}: {}",
                lines.next().unwrap_or_default()
            )?;
            // A hint on its own line keeps the message's priority in the journal.
            for line in lines {
                writeln!(buf, "{prefix}{line}")?;
            }
            Ok(())
        })
        .try_init();
}

/// An error and all its causes on one line (`a: b: c`), for warnings that do not go
/// through `main`'s multi-line rendering.
pub(crate) fn one_line(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The lines of a message, escaped: a continuation line is one runner wrote on purpose,
/// indented (`"\n  hint: ..."`); any other newline came from a value (a task name, a
/// file name) and is escaped with the rest, so no value can start a line of its own.
pub fn log_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for piece in text.split('\n') {
        match lines.last_mut() {
            Some(last) if !piece.starts_with("  ") => {
                last.push_str("\\n");
                last.push_str(&escape_controls(piece));
            }
            _ => lines.push(escape_controls(piece).into_owned()),
        }
    }
    lines
}

/// One log record is one line: a newline or terminal escape inside a task name, a job
/// name or an error must not forge further lines or repaint the terminal, so control
/// characters are written as escapes (`\n`, `\x1b`). Tabs stay.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let code = c as u32;
                if code < 0x100 {
                    out.push_str(&format!("\\x{code:02x}"));
                } else {
                    out.push_str(&format!("\\u{{{code:x}}}"));
                }
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain\tname"), "plain\tname");
        assert_eq!(
            escape_controls("a\nrunner: error: forged"),
            "a\\nrunner: error: forged"
        );
        assert_eq!(escape_controls("\u{1b}[31mred\r"), "\\x1b[31mred\\r");
        assert_eq!(escape_controls("\u{85}"), "\\x85");
        assert_eq!(
            log_lines("task \"a\nrunner: error: x\"\n  hint: do y"),
            ["task \"a\\nrunner: error: x\"", "  hint: do y"]
        );
    }
}
