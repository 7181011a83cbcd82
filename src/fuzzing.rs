//! Entry points for the fuzz targets under `fuzz/` and for the property tests below: each
//! feeds arbitrary bytes to one reader of untrusted input, the way runner reads it, and
//! must return (an error is fine) without panicking or stalling.
//!
//! Not part of runner's interface: the module is public only so that the separate
//! `fuzz` crate can reach readers that are otherwise `pub(crate)`.

use std::path::Path;

use chrono::{TimeZone, Utc};

use crate::config::ChainConfig;
use crate::config::daemon::DaemonConfig;
use crate::schedule::Schedule;

/// Splits fuzz input into a main part and an include part at the first NUL, so one input
/// drives both the main INI file and an `include_dir` file.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// The chain INI reader with `include_dir`: `data` is the main file, then (after a NUL)
/// one file of the include directory. Every merged value is typed as a run would.
pub fn ini_with_includes(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let (main, include) = split(data);
    let conf_d = dir.path().join("conf.d");
    let main_path = dir.path().join("runner.ini");
    let written = std::fs::create_dir(&conf_d)
        .and_then(|()| std::fs::write(conf_d.join("10-more.ini"), include))
        .and_then(|()| std::fs::write(&main_path, main));
    if written.is_err() {
        return;
    }
    if let Ok(config) = ChainConfig::load(Some(&main_path)) {
        // Every section header in either file, typed as a task's settings would be.
        let text = [main, include].concat();
        let text = String::from_utf8_lossy(&text);
        for line in text.lines() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                let _ = config.task_settings(name.trim());
            }
        }
    }
}

/// The daemon configuration reader, as YAML (`yaml`) or JSON, and the schedules of every
/// job it accepts.
pub fn daemon_config(data: &[u8], yaml: bool) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir
        .path()
        .join(if yaml { "runner.yaml" } else { "runner.json" });
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(config) = DaemonConfig::load(dir.path())
        && let Ok(jobs) = crate::daemon::jobs::prepare(&config)
    {
        let from = Utc.timestamp_opt(1_700_000_000, 0).single();
        for job in jobs.values() {
            if let Some(from) = from {
                let _ = job.next_after(from);
            }
        }
    }
}

/// A schedule expression (first line), job name (second line) and optional zone (third
/// line), and its next few due times.
pub fn schedule(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(3, '\n');
    let expr = lines.next().unwrap_or("");
    let name = lines.next().unwrap_or("");
    let tz = lines
        .next()
        .and_then(|z| z.trim().parse::<chrono_tz::Tz>().ok());
    let Ok(schedule) = Schedule::parse(expr, name, tz) else {
        return;
    };
    let Some(mut after) = Utc.timestamp_opt(1_700_000_000, 0).single() else {
        return;
    };
    for _ in 0..5 {
        match schedule.next_after(after) {
            Some(next) => after = next,
            None => break,
        }
    }
}

/// A trigger file, as the daemon reads it from the trigger directory (`yaml` picks the
/// file name `trigger.yaml`, else `trigger.json`).
pub fn trigger_file(data: &[u8], yaml: bool) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let job_dir = crate::triggers::job_dir(dir.path(), "job");
    let name = if yaml { "trigger.yaml" } else { "trigger.json" };
    if std::fs::create_dir_all(&job_dir)
        .and_then(|()| std::fs::write(job_dir.join(name), data))
        .is_err()
    {
        return;
    }
    let _ = crate::triggers::take(dir.path(), "job");
}

/// Event data as `--data JSON` and trigger files carry it: bounded nesting first, then
/// JSON; what parses must print and parse back to the same value.
pub fn event_data(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if crate::config::nesting::check(text).is_err() {
        return;
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    let printed = serde_json::to_string(&value).expect("a parsed value prints");
    let again: serde_json::Value = serde_json::from_str(&printed).expect("printed JSON parses");
    assert_eq!(value, again, "JSON round trip");
}

/// Replays every file of `fuzz/corpus/TARGET/` through `run`; the count replayed.
pub fn replay_corpus(root: &Path, target: &str, run: impl Fn(&[u8])) -> usize {
    let Ok(entries) = std::fs::read_dir(root.join("fuzz/corpus").join(target)) else {
        return 0;
    };
    let mut count = 0;
    for entry in entries.flatten() {
        if let Ok(data) = std::fs::read(entry.path()) {
            run(&data);
            count += 1;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    //! The fuzz targets as bounded property tests, so `cargo test` tries them on every
    //! build (cargo-fuzz needs a nightly compiler CI does not have), plus a replay of
    //! the fixed corpus and of every input a fuzzer ever found to crash or stall.

    use super::*;
    use proptest::prelude::*;

    fn config() -> ProptestConfig {
        // Bounded: these write temp files; a few hundred cases each stay well under a
        // second or two on a loaded machine.
        ProptestConfig {
            cases: 200,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// Text that looks like the input (keys, brackets, quotes, indentation) more often
    /// than random bytes would.
    fn yamlish() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("jobs:\n".to_owned()),
                Just("  a:\n".to_owned()),
                Just("    command: [\"true\"]\n".to_owned()),
                Just("    schedule: \"H/5 * * * *\"\n".to_owned()),
                Just("    taskdir: /nonexistent\n".to_owned()),
                Just("- ".to_owned()),
                Just("[".to_owned()),
                Just("]".to_owned()),
                Just("{".to_owned()),
                Just("}".to_owned()),
                Just("'".to_owned()),
                Just("\"".to_owned()),
                Just("&a ".to_owned()),
                Just("*a".to_owned()),
                Just("<<: ".to_owned()),
                Just("|\n".to_owned()),
                Just("#".to_owned()),
                Just(", ".to_owned()),
                Just(": ".to_owned()),
                "[ -~]{0,12}",
                "\n {0,8}",
            ],
            0..40,
        )
        .prop_map(|parts| parts.concat())
    }

    fn iniish() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("[runner]\n".to_owned()),
                Just("[env]\n".to_owned()),
                Just("[a]\n".to_owned()),
                Just("include_dir = conf.d\n".to_owned()),
                Just("max_tries = ".to_owned()),
                Just("max_time = 1h".to_owned()),
                Just("depends_on = a b".to_owned()),
                Just("interpreter = 'sh".to_owned()),
                Just("\0".to_owned()),
                Just("\u{feff}".to_owned()),
                Just(" = ".to_owned()),
                Just("\\\n".to_owned()),
                Just(";".to_owned()),
                "[ -~]{0,12}",
                "\n {0,4}",
            ],
            0..40,
        )
        .prop_map(|parts| parts.concat())
    }

    fn scheduleish() -> impl Strategy<Value = String> {
        let field = prop_oneof![
            Just("*".to_owned()),
            Just("H".to_owned()),
            Just("R".to_owned()),
            Just("H(0-59)/7".to_owned()),
            "[0-9]{1,3}",
            "[0-9]{1,2}-[0-9]{1,2}(/[0-9]{1,3})?",
            Just("L".to_owned()),
            Just("1W".to_owned()),
            Just("MON#2".to_owned()),
            Just("jan".to_owned()),
            "[ -~]{0,4}",
        ];
        prop_oneof![
            proptest::collection::vec(field, 1..8).prop_map(|f| f.join(" ")),
            Just("@daily".to_owned()),
            "RRULE:FREQ=(SECONDLY|MINUTELY|DAILY|YEARLY);(INTERVAL=[0-9]{1,4};)?(BYMONTH=[0-9]{1,2};)?(BYMONTHDAY=-?[0-9]{1,2};)?(COUNT=[0-9]{1,3})?",
            "[ -~]{0,30}",
        ]
        .prop_flat_map(|expr| {
            ("[a-z]{0,8}", prop_oneof![Just(""), Just("UTC"), Just("Europe/London"), Just("Pacific/Chatham")])
                .prop_map(move |(name, tz)| format!("{expr}\n{name}\n{tz}"))
        })
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn ini_reader_never_panics(main in iniish(), include in iniish()) {
            let mut data = main.into_bytes();
            data.push(0);
            data.extend(include.into_bytes());
            ini_with_includes(&data);
        }

        #[test]
        fn ini_reader_takes_raw_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            ini_with_includes(&data);
        }

        #[test]
        fn daemon_yaml_never_panics(text in yamlish()) {
            daemon_config(text.as_bytes(), true);
        }

        #[test]
        fn daemon_json_never_panics(text in yamlish()) {
            daemon_config(text.as_bytes(), false);
        }

        #[test]
        fn schedules_never_panic_or_stall(text in scheduleish()) {
            let start = std::time::Instant::now();
            schedule(text.as_bytes());
            // Not a timing test: a stall here is minutes, the bound is generous.
            prop_assert!(start.elapsed() < std::time::Duration::from_secs(20), "{text:?} stalled");
        }

        #[test]
        fn trigger_files_never_panic(text in yamlish(), yaml in any::<bool>()) {
            trigger_file(text.as_bytes(), yaml);
        }

        #[test]
        fn event_data_round_trips(text in yamlish()) {
            event_data(text.as_bytes());
        }

        #[test]
        fn nesting_bound_holds_for_any_text(text in yamlish()) {
            // The depth estimate never panics, whatever the text.
            let _ = crate::config::nesting::check(&text);
        }
    }

    /// Found by `cargo fuzz run event_data`: without serde_json's `float_roundtrip`, a
    /// long number parsed to a float one bit off, so recorded data printed and read
    /// back changed (Python, and so dsari, reads it exactly).
    #[test]
    fn long_numbers_round_trip_exactly() {
        event_data(format!(" \t{}   ", "5".repeat(44)).as_bytes());
        event_data(b"[0.30000000000000004, 1e308, 2.2250738585072014e-308]");
    }

    /// Found by `cargo fuzz run schedule`: the `rrule` crate panicked on a non-ASCII
    /// BYDAY value (a byte index inside a character).
    #[test]
    fn non_ascii_rrule_parts_are_errors() {
        schedule("RRULE:FREQ=MINUTELY;INTERVAL=7;BYDAY==0 u0a\u{d9}2\n".as_bytes());
        schedule("RRULE:FREQ=DAILY;BYDAY=0\u{d9}2".as_bytes());
        let tz = Some(chrono_tz::Tz::UTC);
        assert!(Schedule::parse("RRULE:FREQ=DAILY;BYDAY=\u{e9}MO", "", tz).is_err());
    }

    #[test]
    fn the_fixed_corpus_replays_cleanly() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut total = 0;
        total += replay_corpus(root, "ini", ini_with_includes);
        total += replay_corpus(root, "daemon_yaml", |d| daemon_config(d, true));
        total += replay_corpus(root, "daemon_json", |d| daemon_config(d, false));
        total += replay_corpus(root, "schedule", schedule);
        total += replay_corpus(root, "trigger", |d| {
            trigger_file(d, d.first() != Some(&b'{'))
        });
        total += replay_corpus(root, "event_data", event_data);
        assert!(total >= 12, "the corpus is missing: {total} files replayed");
    }
}
