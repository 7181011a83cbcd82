//! The dsari fixture table, every row: what dsari 2.0 computed is what runner computes.
//!
//! `tests/data/dsari-schedules.tsv` (see the README beside it) holds 2,000 schedules with
//! the next five times dsari's own `get_next_schedule_time` gave, each from the previous.
//! This checks all of them in-process, in a fraction of a second; `tests/cli/schedules.rs`
//! runs a sample of the same rows through `runner schedule`.

use std::collections::BTreeMap;

use chrono::DateTime;
use chrono_tz::Tz;

use super::Schedule;

const TABLE: &str = include_str!("../../tests/data/dsari-schedules.tsv");

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

/// One row's five times from runner, as whole epoch seconds, or why there are none.
fn runner_times(expr: &str, name: &str, tz: &str, start: &str) -> Result<Vec<i64>, String> {
    let zone: Tz = tz.parse().map_err(|_| format!("bad zone {tz}"))?;
    let start = DateTime::parse_from_rfc3339(start).map_err(|e| e.to_string())?;
    let schedule = Schedule::parse(expr, name, Some(zone)).map_err(|e| e.to_string())?;
    let mut t = start.to_utc();
    let mut out = Vec::new();
    for _ in 0..5 {
        t = schedule.next_after(t).ok_or("no next time")?;
        out.push(t.timestamp());
    }
    Ok(out)
}

#[test]
fn every_row_gives_dsari_times_to_the_second() {
    let mut total: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failed: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut rows = 0;
    for line in TABLE.lines().skip(1).filter(|l| !l.is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 9, "bad fixture line {line:?}");
        let name: String = serde_json::from_str(cols[1]).unwrap_or_else(|e| panic!("{e}"));
        let want: Vec<i64> = cols[4..]
            .iter()
            .map(|t| t.parse::<f64>().map_or(i64::MIN, |t| t.floor() as i64))
            .collect();
        let got = runner_times(cols[0], &name, cols[2], cols[3]);
        let form = form(cols[0]);
        rows += 1;
        *total.entry(form).or_default() += 1;
        if got.as_ref() != Ok(&want) {
            failed.entry(form).or_default().push(format!(
                "{:?} name {name:?} tz {} from {}: dsari {want:?}, runner {got:?}",
                cols[0], cols[2], cols[3]
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
    // Every form the table is meant to hold is there, so none passed by being absent.
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

const SPECIAL: &str = include_str!("../../tests/data/dsari-special-schedules.tsv");

/// Which of croniter's special day forms an expression uses, for the failure report.
fn special_form(expr: &str) -> &'static str {
    let fields: Vec<String> = expr.split(' ').map(str::to_ascii_lowercase).collect();
    let (dom, dow) = (
        fields.get(2).map_or("", String::as_str),
        fields.get(4).map_or("", String::as_str),
    );
    let special_dom = dom.contains('l') || dom.contains('w');
    let special_dow = dow.contains('#') || dow.contains('l');
    match (special_dom, special_dow) {
        (true, true) => "both day fields",
        (true, false) if dom.contains('w') => "W",
        (true, false) => "L (day of month)",
        (false, true) if dow.contains('#') => "#",
        (false, true) => "L (day of week)",
        (false, false) => "other",
    }
}

#[test]
fn every_special_form_row_gives_dsari_times_or_its_refusal() {
    let mut total: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failed: Vec<String> = Vec::new();
    let (mut rows, mut refused) = (0, 0);
    for line in SPECIAL.lines().skip(1).filter(|l| !l.is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 9, "bad fixture line {line:?}");
        let name: String = serde_json::from_str(cols[1]).unwrap_or_else(|e| panic!("{e}"));
        let got = runner_times(cols[0], &name, cols[2], cols[3]);
        rows += 1;
        *total.entry(special_form(cols[0])).or_default() += 1;
        if cols[4] == "error" {
            refused += 1;
            if let Ok(times) = got {
                failed.push(format!(
                    "{:?} name {name:?} from {}: dsari refuses it, runner gives {times:?}",
                    cols[0], cols[3]
                ));
            }
            continue;
        }
        let want: Vec<i64> = cols[4..]
            .iter()
            .map(|t| t.parse::<f64>().map_or(i64::MIN, |t| t.floor() as i64))
            .collect();
        if got.as_ref() != Ok(&want) {
            failed.push(format!(
                "{:?} name {name:?} tz {} from {}: dsari {want:?}, runner {got:?}",
                cols[0], cols[2], cols[3]
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {rows} special-form rows differ from dsari, first:\n  {}",
        failed.len(),
        failed
            .iter()
            .take(12)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    assert!(
        rows > 1000 && refused > 50,
        "{rows} rows, {refused} refused"
    );
    for form in [
        "L (day of month)",
        "W",
        "#",
        "L (day of week)",
        "both day fields",
    ] {
        assert!(
            total.get(form).copied().unwrap_or(0) > 20,
            "few {form} rows: {total:?}"
        );
    }
}
