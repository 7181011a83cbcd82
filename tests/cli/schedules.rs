//! `runner schedule` against what dsari itself computes: every row of the dsari fixture
//! table, and the behaviours around it that dsari does not decide (daylight-saving
//! changes, schedules that never fire, `--from` without an offset).

use std::collections::BTreeMap;

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

/// Which of the fixture's forms an expression is, for the failure report.
fn form(expr: &str) -> &'static str {
    if expr.to_ascii_uppercase().starts_with("RRULE:") {
        return "RRULE";
    }
    if expr.starts_with('@') {
        return "@alias";
    }
    let fields: Vec<&str> = expr.split(' ').collect();
    let has = |f: &dyn Fn(&str) -> bool| fields.iter().any(|x| f(x));
    let range = |x: &str| x.starts_with("H(");
    if has(&|x| range(x) && x.contains('/')) {
        "H(a-b)/n"
    } else if has(&|x| x.starts_with("H/")) {
        "H/n"
    } else if has(&range) {
        "H(a-b)"
    } else if has(&|x| x == "H") {
        "H"
    } else if fields.len() == 6 {
        "6 fields"
    } else {
        "plain cron"
    }
}

#[test]
fn every_dsari_fixture_row_gives_dsari_times() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/dsari-schedules.tsv"
    );
    let table = std::fs::read_to_string(path).expect("read the dsari fixture");
    let mut total: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failed: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut rows = 0;
    for line in table.lines().skip(1).filter(|l| !l.is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 9, "bad fixture line {line:?}");
        let name: String = serde_json::from_str(cols[1]).expect("name is a JSON string");
        let want: Vec<f64> = cols[4..]
            .iter()
            .map(|t| t.parse().expect("epoch seconds"))
            .collect();
        let run = schedule(cols[0], &name, cols[2], cols[3], 5);
        let got = if run.code() == Some(0) {
            times(&run)
        } else {
            Vec::new()
        };
        let form = form(cols[0]);
        rows += 1;
        *total.entry(form).or_default() += 1;
        let whole = |v: &[f64]| v.iter().map(|t| t.floor() as i64).collect::<Vec<_>>();
        if whole(&got) != whole(&want) {
            failed.entry(form).or_default().push(format!(
                "{} --name={name} --tz {} --from {}: want {:?}, got {:?} {}",
                cols[0],
                cols[2],
                cols[3],
                whole(&want),
                whole(&got),
                run.stderr().trim()
            ));
        }
    }
    assert_eq!(rows, 2000, "the fixture has 2,000 rows");
    let bad: usize = failed.values().map(Vec::len).sum();
    if bad > 0 {
        let mut report = format!("{} of {rows} fixture rows match dsari\n", rows - bad);
        for (form, lines) in &failed {
            report += &format!("{form}: {} of {} fail, first:\n", lines.len(), total[form]);
            for l in lines.iter().take(3) {
                report += &format!("  {l}\n");
            }
        }
        panic!("{report}");
    }
    // Every form the issue names is in the table, so none passed by being absent.
    for form in [
        "plain cron",
        "6 fields",
        "H",
        "H(a-b)",
        "H/n",
        "H(a-b)/n",
        "@alias",
        "RRULE",
    ] {
        assert!(total.get(form).copied().unwrap_or(0) > 0, "no {form} rows");
    }
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
