//! RFC 5545 `RRULE:` schedules, expanded by the `rrule` crate, hashed like
//! dsari.
//!
//! dsari (`utils.get_next_schedule_time`) does not fill BYSECOND, BYMINUTE,
//! ... itself. It gives the rule a hashed DTSTART and lets the RFC 5545
//! defaults (which take unset BYxxx parts from DTSTART) do the rest:
//!
//! ```text
//! dtstart = start - ((start_timestamp - crc32(job_name)) % 86400)  # wall-clock arithmetic
//! next    = rrulestr(rule, dtstart=dtstart).after(start) + subsecond_offset
//! ```
//!
//! DTSTART is the last instant at or before `start` whose epoch second is the
//! job's CRC modulo one day, so `RRULE:FREQ=DAILY` runs at the same hashed time
//! every day, `FREQ=WEEKLY` on a hashed weekday, and so on. Rules with an
//! INTERVAL restart their count from that DTSTART at each query, which is what
//! dsari does; we reproduce it rather than "fix" it, so a migrated job keeps
//! dsari's times. An explicit `DTSTART` line in the expression replaces the
//! hashed one, as in dateutil.
//!
//! The crate is given wall-clock times of the schedule's zone written as UTC,
//! so it expands the rule in wall-clock time the way dateutil does with a
//! zone-aware DTSTART, and never applies its own daylight-saving rule; the
//! caller (`timing.rs`) turns each wall time into one instant by runner's rule.
//! The crate follows dateutil's expansion (it is a port of the same
//! algorithm), which the dsari fixture table checks row by row.

use ::rrule::{RRule, RRuleSet, Unvalidated};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::error::FieldError;
use super::zone;

/// The parts RFC 5545 defines for a recurrence rule.
const KNOWN_PARTS: [&str; 14] = [
    "FREQ",
    "UNTIL",
    "COUNT",
    "INTERVAL",
    "BYSECOND",
    "BYMINUTE",
    "BYHOUR",
    "BYDAY",
    "BYMONTHDAY",
    "BYYEARDAY",
    "BYWEEKNO",
    "BYMONTH",
    "BYSETPOS",
    "WKST",
];

/// A validated RRULE set, kept as normalised text because the `rrule`
/// crate binds DTSTART at parse time and ours changes with every query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RruleSpec {
    /// Content lines, every date value a wall time of the schedule zone
    /// written as UTC (see the module docs).
    text: String,
    /// True when every occurrence falls on the same second of its minute
    /// (BYSECOND unset or one value, below FREQ=SECONDLY, no RDATE).
    single_second: bool,
}

/// True when the expression is an RRULE set rather than cron.
///
/// dsari checks `schedule.upper().startswith("RRULE:")`; we also accept a
/// set whose first line is `DTSTART`/`RDATE`/`EXDATE` with an RRULE later.
pub(crate) fn is_rrule(expr: &str) -> bool {
    expr.lines()
        .any(|line| line.trim_start().to_ascii_uppercase().starts_with("RRULE:"))
}

impl RruleSpec {
    /// Parses and validates an RRULE set (one content line per line).
    pub(crate) fn parse(expr: &str, tz: Tz) -> Result<Self, FieldError> {
        // RFC 5545 rules are ASCII, and the `rrule` crate slices some parts by byte
        // (a non-ASCII BYDAY value panicked it; found by fuzzing).
        if !expr.is_ascii() {
            return Err(FieldError::new(
                "RRULE",
                "only ASCII characters may appear in a rule",
            ));
        }
        let text = normalise(expr, tz)?;
        let mut single_second = true;
        for line in text.lines() {
            if let Some(rule) = line.strip_prefix("RRULE:") {
                check_rule(rule)?;
                single_second &= rule_has_single_second(rule);
            } else if line.starts_with("RDATE") {
                single_second = false;
            }
        }
        let spec = Self {
            text,
            single_second,
        };
        // Validation needs some DTSTART; any time will do.
        let set = spec.build(DateTime::UNIX_EPOCH.naive_utc())?;
        if set.get_rrule().iter().any(|r| r.get_count().is_some()) {
            return Err(count_error());
        }
        Ok(spec)
    }

    /// Whether every occurrence has the same second (see `timing.rs` for why
    /// that matters at a daylight-saving change).
    pub(crate) fn single_second(&self) -> bool {
        self.single_second
    }

    /// The occurrences, as wall-clock times in order, of the set expanded
    /// from `dtstart` (a wall time; replaced by an explicit DTSTART line).
    /// Ends where the rule ends, or where the crate's loop guard gives up on a
    /// rule that matches nothing.
    pub(crate) fn occurrences(
        &self,
        dtstart: NaiveDateTime,
    ) -> Option<impl Iterator<Item = NaiveDateTime>> {
        let set = self.build(dtstart).ok()?.limit();
        Some((&set).into_iter().map(|d| d.naive_utc()))
    }

    fn build(&self, dtstart: NaiveDateTime) -> Result<RRuleSet, FieldError> {
        let start = ::rrule::Tz::UTC.from_utc_datetime(&dtstart);
        RRuleSet::new(start)
            .set_from_string(&self.text)
            .map_err(|e| FieldError::new("RRULE", lowercase_reason(&e.to_string())))
    }
}

/// Whether a rule puts all its occurrences on one second of the minute.
fn rule_has_single_second(rule: &str) -> bool {
    let part = |name: &str| {
        rule.split(';')
            .find_map(|p| p.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
    };
    match part("BYSECOND") {
        Some(values) => !values.contains(','),
        None => part("FREQ") != Some("SECONDLY"),
    }
}

/// Uppercases rule text (dateutil is case-insensitive) and rewrites every
/// date value (DTSTART, RDATE, EXDATE, UNTIL) as a wall time of the schedule
/// zone written as UTC: a `Z` value is converted to that zone, a `TZID=`
/// value from its zone, a floating value is taken as it is.
fn normalise(expr: &str, tz: Tz) -> Result<String, FieldError> {
    let mut lines = Vec::new();
    for raw in expr.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (head, value) = raw.split_once(':').unwrap_or((raw, ""));
        let mut params = head.split(';');
        let name = params.next().unwrap_or_default().to_ascii_uppercase();
        let line = match name.as_str() {
            "RRULE" | "EXRULE" => {
                let rule = value.to_ascii_uppercase();
                let parts: Result<Vec<String>, FieldError> = rule
                    .split(';')
                    .map(|part| match part.strip_prefix("UNTIL=") {
                        Some(v) => wall_value(v, None, tz, "UNTIL").map(|w| format!("UNTIL={w}")),
                        None => Ok(part.to_owned()),
                    })
                    .collect();
                format!("{name}:{}", parts?.join(";"))
            }
            "DTSTART" | "RDATE" | "EXDATE" => {
                let zone = params.find_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.eq_ignore_ascii_case("TZID").then_some(v)
                });
                let values: Result<Vec<String>, FieldError> = value
                    .split(',')
                    .map(|v| wall_value(v.trim(), zone, tz, &name))
                    .collect();
                format!("{name}:{}", values?.join(","))
            }
            _ => format!("{}:{value}", head.to_ascii_uppercase()),
        };
        lines.push(line);
    }
    Ok(lines.join("\n"))
}

/// One date value as a wall time of `tz`, written `YYYYMMDDTHHMMSSZ`.
fn wall_value(value: &str, zone: Option<&str>, tz: Tz, part: &str) -> Result<String, FieldError> {
    let bad = || FieldError::new(part, format!("invalid date {value:?}"));
    let upper = value.to_ascii_uppercase();
    let (text, utc) = match upper.strip_suffix('Z') {
        Some(t) => (t, true),
        None => (upper.as_str(), false),
    };
    let naive = NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%S")
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y%m%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .ok_or_else(bad)?;
    let wall = if utc {
        Utc.from_utc_datetime(&naive)
            .with_timezone(&tz)
            .naive_local()
    } else if let Some(name) = zone {
        let from: Tz = name
            .parse()
            .map_err(|_| FieldError::new(part, format!("{name:?} is not an IANA time zone")))?;
        let instant: DateTime<Utc> = zone::instant_of(from, naive).ok_or_else(bad)?;
        instant.with_timezone(&tz).naive_local()
    } else {
        naive
    };
    Ok(wall.format("%Y%m%dT%H%M%SZ").to_string())
}

/// Checks the rule parts one by one so an error can name the bad part.
fn check_rule(rule: &str) -> Result<(), FieldError> {
    let parts: Vec<(&str, &str)> = rule
        .split(';')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    for (name, _) in &parts {
        if !KNOWN_PARTS.contains(name) {
            return Err(FieldError::new(*name, "unknown rule part"));
        }
    }
    if parts.iter().any(|(name, _)| *name == "COUNT") {
        return Err(count_error());
    }
    // The `rrule` crate accepts INTERVAL=0 and then never fires.
    if parts
        .iter()
        .any(|(name, value)| *name == "INTERVAL" && value.trim_start_matches('0').is_empty())
    {
        return Err(FieldError::new("INTERVAL", "must be at least 1"));
    }
    let freq = parts
        .iter()
        .find(|(name, _)| *name == "FREQ")
        .ok_or_else(|| FieldError::new("FREQ", "missing, every RRULE needs a frequency"))?;
    // Parse each part alone next to FREQ: the first failure is the culprit.
    for (name, value) in &parts {
        let single = if *name == "FREQ" {
            format!("FREQ={}", freq.1)
        } else {
            format!("FREQ={};{name}={value}", freq.1)
        };
        if let Err(e) = single.parse::<RRule<Unvalidated>>() {
            return Err(FieldError::new(*name, lowercase_reason(&e.to_string())));
        }
    }
    Ok(())
}

fn count_error() -> FieldError {
    // dsari's docs: COUNT needs a fixed DTSTART, which hashed schedules lack.
    FieldError::new(
        "COUNT",
        "not supported, a schedule has no fixed start to count from (use UNTIL)",
    )
}

/// Error text in our style: without the crate's "RRule parsing error: "
/// prefix, lowercase first letter, no final period.
fn lowercase_reason(text: &str) -> String {
    let mut trimmed = text.trim().trim_end_matches('.');
    for prefix in ["RRule parsing error: ", "RRule validation error: "] {
        trimmed = trimmed.strip_prefix(prefix).unwrap_or(trimmed);
    }
    let mut chars = trimmed.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "invalid rule".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wall(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|x| x.and_hms_opt(h, mi, s))
            .unwrap_or_default()
    }

    fn spec(expr: &str) -> RruleSpec {
        match RruleSpec::parse(expr, Tz::UTC) {
            Ok(s) => s,
            Err(e) => panic!("{expr}: {e:?}"),
        }
    }

    /// The first `n` occurrences expanded from `dtstart`.
    fn first(spec: &RruleSpec, dtstart: NaiveDateTime, n: usize) -> Vec<NaiveDateTime> {
        spec.occurrences(dtstart)
            .map(|it| it.take(n).collect())
            .unwrap_or_default()
    }

    #[test]
    fn detects_rrule_expressions() {
        assert!(is_rrule("RRULE:FREQ=DAILY"));
        assert!(is_rrule("rrule:freq=daily"));
        assert!(is_rrule("DTSTART:20200101T000000Z\nRRULE:FREQ=DAILY"));
        assert!(!is_rrule("H H * * *"));
    }

    #[test]
    fn unset_parts_come_from_dtstart() {
        let start = wall(2020, 1, 1, 16, 31, 10);
        assert_eq!(
            first(&spec("RRULE:FREQ=DAILY"), start, 2),
            [start, wall(2020, 1, 2, 16, 31, 10)]
        );
        // Thursday 2 January; seconds still from DTSTART.
        let s = spec("RRULE:FREQ=DAILY;BYDAY=MO,TH;BYHOUR=14;BYMINUTE=30");
        assert_eq!(first(&s, start, 1), [wall(2020, 1, 2, 14, 30, 10)]);
    }

    #[test]
    fn explicit_dtstart_replaces_the_given_one() {
        let s = spec("DTSTART:20200101T083000Z\nRRULE:FREQ=DAILY");
        assert_eq!(
            first(&s, wall(2020, 1, 5, 9, 0, 0), 1),
            [wall(2020, 1, 1, 8, 30, 0)]
        );
    }

    #[test]
    fn exdate_lines_are_honoured() {
        let s = spec("RRULE:FREQ=DAILY;BYHOUR=6;BYMINUTE=0;BYSECOND=0\nEXDATE:20200102T060000Z");
        assert_eq!(
            first(&s, wall(2020, 1, 1, 7, 0, 0), 1),
            [wall(2020, 1, 3, 6, 0, 0)]
        );
    }

    #[test]
    fn exrule_lines_are_honoured() {
        // As dateutil: weekdays at 06:00, so after Friday 3 January comes Monday.
        let s = spec(
            "RRULE:FREQ=DAILY;BYHOUR=6;BYMINUTE=0;BYSECOND=0\nEXRULE:FREQ=WEEKLY;BYDAY=SA,SU;BYHOUR=6;BYMINUTE=0;BYSECOND=0",
        );
        let after: Vec<_> = first(&s, wall(2020, 1, 1, 0, 0, 0), 4);
        assert_eq!(
            after,
            [
                wall(2020, 1, 1, 6, 0, 0),
                wall(2020, 1, 2, 6, 0, 0),
                wall(2020, 1, 3, 6, 0, 0),
                wall(2020, 1, 6, 6, 0, 0)
            ]
        );
    }

    #[test]
    fn until_ends_the_schedule() {
        let s = spec("RRULE:FREQ=DAILY;BYHOUR=6;BYMINUTE=0;BYSECOND=0;UNTIL=20200103T000000Z");
        assert_eq!(
            first(&s, wall(2020, 1, 1, 7, 0, 0), 5),
            [wall(2020, 1, 2, 6, 0, 0)]
        );
    }

    #[test]
    fn count_is_rejected() {
        let err = RruleSpec::parse("RRULE:FREQ=DAILY;COUNT=3", Tz::UTC).err();
        assert_eq!(err.map(|e| e.field), Some("COUNT".to_owned()));
    }

    #[test]
    fn date_values_become_wall_times_of_the_schedule_zone() {
        let ny = Tz::America__New_York;
        let s = RruleSpec::parse(
            "RRULE:FREQ=DAILY;BYHOUR=6;UNTIL=20200103T110000Z\nEXDATE;TZID=Europe/Paris:20200102T120000\nEXDATE:20200104T060000",
            ny,
        );
        let s = s.unwrap_or_else(|e| panic!("{e:?}"));
        assert!(s.text.contains("UNTIL=20200103T060000Z"), "{}", s.text);
        assert!(s.text.contains("EXDATE:20200102T060000Z"), "{}", s.text);
        assert!(s.text.contains("EXDATE:20200104T060000Z"), "{}", s.text);
        let err = RruleSpec::parse("RRULE:FREQ=DAILY\nEXDATE:tomorrow", ny).err();
        assert_eq!(err.map(|e| e.field).as_deref(), Some("EXDATE"));
    }

    #[test]
    fn single_second_is_known() {
        assert!(spec("RRULE:FREQ=DAILY").single_second());
        assert!(spec("RRULE:FREQ=MINUTELY;INTERVAL=5").single_second());
        assert!(spec("RRULE:FREQ=HOURLY;BYSECOND=7").single_second());
        assert!(!spec("RRULE:FREQ=SECONDLY;INTERVAL=30").single_second());
        assert!(!spec("RRULE:FREQ=HOURLY;BYSECOND=0,30").single_second());
        assert!(!spec("RRULE:FREQ=DAILY\nRDATE:20200101T000001Z").single_second());
    }

    #[test]
    fn errors_have_no_crate_prefix() {
        let err = RruleSpec::parse("RRULE:FREQ=DAILY;BYMINUTE=61", Tz::UTC).err();
        let reason = err.map(|e| e.reason).unwrap_or_default();
        assert!(
            reason.starts_with("`61` is not a valid BYMINUTE value"),
            "{reason}"
        );
        let err = RruleSpec::parse("RRULE:FREQ=DAILY;INTERVAL=0", Tz::UTC).err();
        assert_eq!(err.map(|e| e.field).as_deref(), Some("INTERVAL"));
    }

    #[test]
    fn errors_name_the_rule_part() {
        let field = |expr: &str| RruleSpec::parse(expr, Tz::UTC).err().map(|e| e.field);
        assert_eq!(field("RRULE:FREQ=SOMETIMES").as_deref(), Some("FREQ"));
        assert_eq!(field("RRULE:BYHOUR=3").as_deref(), Some("FREQ"));
        assert_eq!(
            field("RRULE:FREQ=DAILY;BYHOUR=25").as_deref(),
            Some("BYHOUR")
        );
        assert_eq!(field("RRULE:FREQ=DAILY;BYDAY=XX").as_deref(), Some("BYDAY"));
        assert_eq!(
            field("RRULE:FREQ=DAILY;COLOUR=RED").as_deref(),
            Some("COLOUR")
        );
    }
}
