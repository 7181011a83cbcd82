//! `runner schedule` against what dsari itself computes: every row of the dsari fixture
//! table, and the behaviours around it that dsari does not decide (daylight-saving
//! changes, schedules that never fire, `--from` without an offset).

use chrono::DateTime;

use crate::support::{Run, runner};

/// The times `runner schedule` printed, as epoch seconds with microseconds.
fn times(run: &Run) -> Vec<f64> {
    run.stdout()
        .lines()
        .map(|line| match DateTime::parse_from_rfc3339(line) {
            Ok(t) => t.timestamp() as f64 + f64::from(t.timestamp_subsec_micros()) / 1e6,
            Err(e) => panic!("{line:?} is not RFC 3339: {e}\n{}", run.argv),
        })
        .collect()
}

fn schedule(expr: &str, name: &str, tz: &str, from: &str, count: usize) -> Run {
    let mut cmd = runner();
    cmd.args(["schedule", expr])
        .arg(format!("--name={name}"))
        .args(["--from", from, "--tz", tz, "--count"])
        .arg(count.to_string());
    Run::of(cmd)
}

/// Every row of the dsari table is checked in-process (`src/schedule/fixture.rs`); this
/// runs every tenth through the binary, so the command's own part (`--name=` for names
/// starting with `-`, `--tz`, `--from` with an offset, the printed format) is covered too.
#[test]
fn dsari_fixture_rows_through_the_command() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/dsari-schedules.tsv"
    );
    let table = std::fs::read_to_string(path).expect("read the dsari fixture");
    let mut checked = 0;
    let mut failed = Vec::new();
    for line in table.lines().skip(1).filter(|l| !l.is_empty()).step_by(10) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 9, "bad fixture line {line:?}");
        let name: String = serde_json::from_str(cols[1]).expect("name is a JSON string");
        let want: Vec<i64> = cols[4..]
            .iter()
            .map(|t| t.parse::<f64>().expect("epoch seconds").floor() as i64)
            .collect();
        let run = schedule(cols[0], &name, cols[2], cols[3], 5);
        let got: Vec<i64> = if run.code() == Some(0) {
            times(&run).iter().map(|t| t.floor() as i64).collect()
        } else {
            Vec::new()
        };
        checked += 1;
        if got != want {
            failed.push(format!(
                "{}: want {want:?}, got {got:?} {}",
                run.argv,
                run.stderr().trim()
            ));
        }
    }
    assert_eq!(checked, 200);
    assert!(
        failed.is_empty(),
        "{} of {checked} rows differ from dsari, first:\n{}",
        failed.len(),
        failed[..failed.len().min(5)].join("\n")
    );
}

/// The special day forms (`L`, `W`, `#`; `tests/data/dsari-special-schedules.tsv`),
/// every twentieth row through the binary: dsari's times, or exit 78 where dsari
/// refuses the expression.
#[test]
fn dsari_special_form_rows_through_the_command() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/dsari-special-schedules.tsv"
    );
    let table = std::fs::read_to_string(path).expect("read the special-form fixture");
    let mut checked = 0;
    let mut failed = Vec::new();
    for line in table.lines().skip(1).filter(|l| !l.is_empty()).step_by(20) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 9, "bad fixture line {line:?}");
        let name: String = serde_json::from_str(cols[1]).expect("name is a JSON string");
        let run = schedule(cols[0], &name, cols[2], cols[3], 5);
        checked += 1;
        if cols[4] == "error" {
            if run.code() != Some(78) {
                failed.push(format!(
                    "{}: dsari refuses it, runner {:?}",
                    run.argv,
                    run.code()
                ));
            }
            continue;
        }
        let want: Vec<i64> = cols[4..]
            .iter()
            .map(|t| t.parse::<f64>().expect("epoch seconds").floor() as i64)
            .collect();
        let got: Vec<i64> = if run.code() == Some(0) {
            times(&run).iter().map(|t| t.floor() as i64).collect()
        } else {
            Vec::new()
        };
        if got != want {
            failed.push(format!(
                "{}: want {want:?}, got {got:?} {}",
                run.argv,
                run.stderr().trim()
            ));
        }
    }
    assert!(checked >= 60, "only {checked} rows");
    assert!(
        failed.is_empty(),
        "{} of {checked} rows differ from dsari, first:\n{}",
        failed.len(),
        failed[..failed.len().min(5)].join("\n")
    );
}

#[test]
fn rrule_daily_fires_every_24_hours() {
    let run = schedule("RRULE:FREQ=DAILY", "hello", "UTC", "2020-01-01T00:00:00", 4);
    run.assert_code(0);
    let t = times(&run);
    assert_eq!(t.len(), 4);
    for pair in t.windows(2) {
        assert_eq!((pair[1] - pair[0]).round(), 86_400.0, "{}", run.stdout());
    }
    // One time a day for a rule with its hour and minute, on the job's hashed second.
    let run = schedule(
        "RRULE:FREQ=DAILY;BYHOUR=14;BYMINUTE=30",
        "hello",
        "UTC",
        "2020-01-01T00:00:00",
        30,
    );
    run.assert_code(0);
    for line in run.stdout().lines() {
        assert!(line.contains("T14:30:10.211192+00:00"), "{line}");
    }
    let t = times(&run);
    for pair in t.windows(2) {
        assert_eq!((pair[1] - pair[0]).round(), 86_400.0, "{}", run.stdout());
    }
}

#[test]
fn one_value_hash_range_and_six_fields_on_the_tick() {
    let run = schedule("H(6-6) * * * *", "x", "UTC", "2020-01-01T00:00:00", 2);
    run.assert_code(0);
    assert!(
        run.stdout().starts_with("2020-01-01T00:06:"),
        "{}",
        run.stdout()
    );
    // A --from exactly on a tick of a 6-field expression skips that tick, as dsari does.
    let run = schedule(
        "17 * * * * *",
        "kg7g7y1",
        "UTC",
        "2035-07-10T07:17:11+00:00",
        1,
    );
    run.assert_code(0);
    assert_eq!(run.stdout(), "2035-07-10T07:17:12.229910+00:00\n");
}

#[test]
fn spring_forward_fires_once_per_nominal_hour() {
    // New York skips 02:00-03:00 on 2026-03-08. The missing 02:00 runs at 03:00 EDT,
    // together with 03:00 itself: one run, not two a few seconds apart.
    for expr in ["0 * * * *", "RRULE:FREQ=HOURLY;BYMINUTE=0;BYSECOND=0"] {
        let run = schedule(expr, "hello", "America/New_York", "2026-03-08T00:30:00", 4);
        run.assert_code(0);
        let lines: Vec<String> = run.stdout().lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), 4, "{expr}");
        assert!(
            lines[0].starts_with("2026-03-08T01:00:"),
            "{expr}: {lines:?}"
        );
        assert!(lines[0].ends_with("-05:00"), "{expr}: {lines:?}");
        assert!(
            lines[1].starts_with("2026-03-08T03:00:"),
            "{expr}: {lines:?}"
        );
        assert!(
            lines[2].starts_with("2026-03-08T04:00:"),
            "{expr}: {lines:?}"
        );
        assert!(
            lines[3].starts_with("2026-03-08T05:00:"),
            "{expr}: {lines:?}"
        );
    }
    // A daily 02:30 runs once on the day 02:30 does not exist, at the end of the gap.
    let run = schedule(
        "30 2 * * * 0",
        "hello",
        "America/New_York",
        "2026-03-07T12:00:00",
        2,
    );
    run.assert_code(0);
    assert_eq!(
        run.stdout(),
        "2026-03-08T03:00:00.211192-04:00\n2026-03-09T02:30:00.211192-04:00\n"
    );
    // A repeated 01:30 runs once, the first time.
    let run = schedule(
        "30 1 * * * 0",
        "hello",
        "America/New_York",
        "2026-10-31T12:00:00",
        2,
    );
    run.assert_code(0);
    assert_eq!(
        run.stdout(),
        "2026-11-01T01:30:00.211192-04:00\n2026-11-02T01:30:00.211192-05:00\n"
    );
}

#[test]
fn from_without_offset_is_read_in_the_schedule_zone() {
    let local = schedule("0 12 * * * 0", "x", "Asia/Tokyo", "2026-05-01T11:00:00", 1);
    let explicit = schedule(
        "0 12 * * * 0",
        "x",
        "Asia/Tokyo",
        "2026-05-01T11:00:00+09:00",
        1,
    );
    local.assert_code(0);
    explicit.assert_code(0);
    assert!(
        local.stdout().starts_with("2026-05-01T12:00:00"),
        "{}",
        local.stdout()
    );
    assert_eq!(local.stdout(), explicit.stdout());
}

#[test]
fn a_schedule_that_never_fires_is_refused() {
    let run = schedule("0 0 30 2 *", "x", "UTC", "2020-01-01T00:00:00", 3);
    run.assert_code(78).assert_stderr_contains("never fires");
    assert_eq!(run.stdout(), "");
    let run = schedule(
        "RRULE:FREQ=YEARLY;BYMONTH=4;BYMONTHDAY=31",
        "x",
        "UTC",
        "2020-01-01T00:00:00",
        3,
    );
    run.assert_code(78).assert_stderr_contains("never fires");
    // 29 February is rare, not impossible.
    schedule("0 0 29 2 *", "x", "UTC", "2021-01-01T00:00:00", 1)
        .assert_code(0)
        .assert_stdout_contains("2024-02-29T00:00:");
}

#[test]
fn a_bad_schedule_in_config_d_is_reported_against_its_file() {
    let daemon = crate::support::Daemon::new(&[
        (
            "conf/runner.yaml",
            "jobs:\n  backup:\n    command: [\"true\"]\n    schedule: \"@daily\"\n",
        ),
        (
            "conf/config.d/20-report.yaml",
            "jobs:\n  report:\n    command: [\"true\"]\n    schedule: \"0 0 30 2 *\"\n",
        ),
    ]);
    let dir = daemon.config_dir().join("conf");
    let file = dir.join("config.d/20-report.yaml");
    daemon
        .runner(&["check", "--daemon", dir.to_str().expect("utf-8")])
        .assert_code(78)
        .assert_stderr_contains(&format!(
            "{}:4:15: job \"report\": key \"schedule\"",
            file.display()
        ))
        .assert_stderr_contains("never fires");
}
