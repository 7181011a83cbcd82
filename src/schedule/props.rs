//! Property tests of schedules across time zones and daylight-saving changes.
//!
//! The dsari fixture pins times away from DST changes; these check runner's own rule
//! where dsari's results depend on the hour of a change: times strictly increase, a
//! nominal time in a spring gap runs once (at the end of the gap), a repeated time runs
//! once, no nominal time is skipped or run twice, and `RRULE:FREQ=DAILY` keeps 24 h
//! steps (outside DST changes as dsari does, and across them by runner's rule).

use std::collections::BTreeSet;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use proptest::prelude::*;

use super::Schedule;

/// Zones with one-hour, half-hour and no DST, both hemispheres.
const ZONES: [Tz; 9] = [
    Tz::UTC,
    Tz::America__New_York,
    Tz::Europe__London,
    Tz::Europe__Berlin,
    Tz::Australia__Sydney,
    Tz::Australia__Lord_Howe,
    Tz::America__Santiago,
    Tz::Pacific__Auckland,
    Tz::Asia__Kolkata,
];

fn offset(tz: Tz, t: DateTime<Utc>) -> i32 {
    tz.offset_from_utc_datetime(&t.naive_utc())
        .fix()
        .local_minus_utc()
}

/// The first DST change of `tz` at or after `from` within a year, if any.
fn next_change(tz: Tz, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut day = from;
    let start = offset(tz, from);
    for _ in 0..400 {
        let next = day + Duration::days(1);
        if offset(tz, next) != start {
            // Narrow to the second.
            let (mut lo, mut hi) = (day, next);
            while hi - lo > Duration::seconds(1) {
                let mid = lo + (hi - lo) / 2;
                if offset(tz, mid) == start {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            return Some(hi);
        }
        day = next;
    }
    None
}

/// A start time: anywhere in 2000-2035, or (half the time) within two days before a
/// DST change of the zone, where the interesting cases are.
fn start_near_change(tz: Tz, seed: i64, near: bool, before: i64) -> DateTime<Utc> {
    let base = DateTime::from_timestamp(946_684_800 + seed.rem_euclid(36 * 365 * 86_400), 0)
        .unwrap_or_default();
    if !near {
        return base;
    }
    match next_change(tz, base) {
        Some(change) => change - Duration::seconds(before.rem_euclid(2 * 86_400)),
        None => base,
    }
}

fn times(schedule: &Schedule, from: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut t = from;
    for _ in 0..n {
        match schedule.next_after(t) {
            Some(next) => {
                out.push(next);
                t = next;
            }
            None => break,
        }
    }
    out
}

fn name() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::char::range('!', '~'), 1..16)
        .prop_map(|chars| chars.into_iter().collect())
}

/// Expressions with one second and one minute, so every fire is one nominal minute
/// of a known set: `(expression, minute, second, hours)`.
fn fixed_minute_schedule() -> impl Strategy<Value = (String, u32, u32, Vec<u32>)> {
    let hours = prop_oneof![
        Just((0..24).collect::<Vec<u32>>()),
        (2u32..7).prop_map(|k| (0..24).step_by(k as usize).collect()),
        proptest::collection::btree_set(0u32..24, 1..4).prop_map(|s| s.into_iter().collect()),
    ];
    (0u32..60, 0u32..60, hours, 0u8..3).prop_map(|(m, s, hours, form)| {
        let list = |sep: &str| {
            hours
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(sep)
        };
        let expr = match form {
            0 => format!("{m} {} * * * {s}", list(",")),
            1 if hours.len() == 24 => format!("RRULE:FREQ=HOURLY;BYMINUTE={m};BYSECOND={s}"),
            _ => format!(
                "RRULE:FREQ=DAILY;BYHOUR={};BYMINUTE={m};BYSECOND={s}",
                list(",")
            ),
        };
        (expr, m, s, hours)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// `RRULE:FREQ=DAILY` fires every 24 h: dsari's hashed time of day is a fixed
    /// second of the UTC day, and runner keeps it so across DST changes too, where
    /// dsari fires twice on the day after a spring-forward change. (Near local midnight
    /// a 25-hour day can then hold two of the times, 24 h apart.)
    #[test]
    fn freq_daily_is_24_hours_apart(
        job in name(), zone in 0..ZONES.len(), seed in any::<i64>(), near in any::<bool>(),
        before in any::<i64>(),
    ) {
        let tz = ZONES[zone];
        let s = Schedule::parse("RRULE:FREQ=DAILY", &job, Some(tz)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = times(&s, start_near_change(tz, seed, near, before), 8);
        prop_assert_eq!(got.len(), 8);
        for pair in got.windows(2) {
            prop_assert_eq!(pair[1] - pair[0], Duration::days(1), "{:?}", got);
        }
    }

    /// Every fire stands for nominal times of the schedule (its own wall time, or the
    /// matching times of the spring gap it ends), no nominal time is claimed twice, and
    /// none between the first and the last fire is left out.
    #[test]
    fn each_nominal_time_fires_once(
        (expr, minute, second, hours) in fixed_minute_schedule(), job in name(),
        zone in 0..ZONES.len(), seed in any::<i64>(), near in any::<bool>(), before in any::<i64>(),
    ) {
        let tz = ZONES[zone];
        let s = Schedule::parse(&expr, &job, Some(tz)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = times(&s, start_near_change(tz, seed, near, before), 30);
        prop_assert_eq!(got.len(), 30);
        let matches = |w: NaiveDateTime| w.minute() == minute && hours.contains(&w.hour());
        let mut claimed: BTreeSet<NaiveDateTime> = BTreeSet::new();
        for pair in got.windows(2) {
            prop_assert!(pair[1] > pair[0], "{expr}: {got:?}");
        }
        for t in &got {
            // Whole second, minus the schedule's second: the nominal minute's instant.
            let base = DateTime::from_timestamp(t.timestamp() - i64::from(second), 0).unwrap_or_default();
            let wall = base.with_timezone(&tz).naive_local();
            prop_assert_eq!(wall.second(), 0, "{} fired off its second: {}", expr, t);
            let mut slots = Vec::new();
            let shift = offset(tz, base) - offset(tz, base - Duration::seconds(1));
            if shift > 0 {
                // The end of a spring gap: it stands for the gap's matching minutes.
                let mut n = wall - Duration::seconds(i64::from(shift));
                while n < wall {
                    if matches(n) {
                        slots.push(n);
                    }
                    n += Duration::minutes(1);
                }
            }
            if matches(wall) {
                slots.push(wall);
            }
            prop_assert!(!slots.is_empty(), "{} fired at {} ({}), no nominal time", expr, t, wall);
            for slot in slots {
                prop_assert!(claimed.insert(slot), "{} fired twice for {} ({:?})", expr, slot, got);
            }
        }
        // Completeness: every matching minute from the first to the last nominal time.
        let (Some(first), Some(last)) = (claimed.first().copied(), claimed.last().copied()) else {
            return Err(TestCaseError::fail("no fires"));
        };
        let mut n = first;
        while n <= last {
            if matches(n) && !matches!(tz.from_local_datetime(&n), LocalResult::None) {
                prop_assert!(claimed.contains(&n), "{} skipped {} ({:?})", expr, n, got);
            }
            n += Duration::minutes(1);
        }
        prop_assert!(got.iter().all(|t| t.year() > 1999));
    }

    /// Any expression of the dsari fixture, in any zone, across DST changes: times
    /// strictly increase and no wall-clock reading is fired twice (a repeated hour).
    #[test]
    fn fixture_expressions_increase_and_never_repeat(
        row in 0usize..2000, job in name(), zone in 0..ZONES.len(), seed in any::<i64>(),
        near in any::<bool>(), before in any::<i64>(),
    ) {
        let table = include_str!("../../tests/data/dsari-schedules.tsv");
        let expr = table.lines().nth(row + 1).and_then(|l| l.split('\t').next()).unwrap_or("* * * * *");
        let tz = ZONES[zone];
        let s = Schedule::parse(expr, &job, Some(tz));
        // Some hashed forms are out of range for some names, as under dsari.
        let Ok(s) = s else { return Ok(()) };
        let got = times(&s, start_near_change(tz, seed, near, before), 12);
        let mut walls = BTreeSet::new();
        for pair in got.windows(2) {
            prop_assert!(pair[1] > pair[0], "{expr}: {got:?}");
        }
        for t in &got {
            prop_assert!(walls.insert(t.with_timezone(&tz).naive_local()), "{} repeated {} ({:?})", expr, t, got);
        }
    }

    /// The daemon recomputes a job's next time from "now" after a restart or a
    /// reload: for cron, any time between two fires (up to the whole second before
    /// the next) gives that next fire again, so a nominal time is neither run twice
    /// nor skipped. (A time within the second of a fire, before its sub-second
    /// offset, skips it, as in dsari.)
    #[test]
    fn cron_restarts_find_the_same_next_time(
        row in 0usize..2000, job in name(), zone in 0..ZONES.len(), seed in any::<i64>(),
        near in any::<bool>(), before in any::<i64>(), pick in any::<u64>(),
    ) {
        let table = include_str!("../../tests/data/dsari-schedules.tsv");
        let expr = table.lines().nth(row + 1).and_then(|l| l.split('\t').next()).unwrap_or("* * * * *");
        if expr.to_ascii_uppercase().starts_with("RRULE:") {
            return Ok(());
        }
        let tz = ZONES[zone];
        let Ok(s) = Schedule::parse(expr, &job, Some(tz)) else { return Ok(()) };
        let got = times(&s, start_near_change(tz, seed, near, before), 6);
        for pair in got.windows(2) {
            let span = (pair[1] - pair[0]).num_microseconds().unwrap_or(0) - 1_000_000;
            if span <= 0 {
                continue;
            }
            let t = pair[0] + Duration::microseconds((pick % span as u64) as i64);
            prop_assert_eq!(s.next_after(t), Some(pair[1]), "{} from {}: {:?}", expr, t, got);
        }
    }

    /// croniter's special day forms (`L`, `W`, `#`) of the second fixture, in any zone,
    /// across DST changes: times strictly increase, no wall-clock reading fires twice,
    /// and a restart anywhere between two fires finds the later one again.
    #[test]
    fn special_day_forms_increase_never_repeat_and_restart_alike(
        row in 0usize..1271, job in name(), zone in 0..ZONES.len(), seed in any::<i64>(),
        near in any::<bool>(), before in any::<i64>(), pick in any::<u64>(),
    ) {
        let table = include_str!("../../tests/data/dsari-special-schedules.tsv");
        let expr = table.lines().nth(row + 1).and_then(|l| l.split('\t').next()).unwrap_or("* * * * *");
        let tz = ZONES[zone];
        // About one row in six is an expression dsari refuses, and runner too.
        let Ok(s) = Schedule::parse(expr, &job, Some(tz)) else { return Ok(()) };
        let got = times(&s, start_near_change(tz, seed, near, before), 8);
        let mut walls = BTreeSet::new();
        for t in &got {
            prop_assert!(walls.insert(t.with_timezone(&tz).naive_local()), "{} repeated {} ({:?})", expr, t, got);
        }
        for pair in got.windows(2) {
            prop_assert!(pair[1] > pair[0], "{expr}: {got:?}");
            let span = (pair[1] - pair[0]).num_microseconds().unwrap_or(0) - 1_000_000;
            if span <= 0 {
                continue;
            }
            let t = pair[0] + Duration::microseconds((pick % span as u64) as i64);
            prop_assert_eq!(s.next_after(t), Some(pair[1]), "{} from {}: {:?}", expr, t, got);
        }
    }
}
