//! RFC 5545 `RRULE:` schedules, expanded by the `rrule` crate, hashed like
//! dsari.
//!
//! dsari (`utils.get_next_schedule_time`) does not fill BYSECOND, BYMINUTE,
//! ... itself. It gives the rule a hashed DTSTART and lets the RFC 5545
//! defaults (which take unset BYxxx parts from DTSTART) do the rest:
//!
//! ```text
//! m       = crc32(job_name) % 86400
//! dtstart = start - (start_timestamp % m)   # latest multiple of m seconds
//! next    = rrulestr(rule, dtstart=dtstart).after(start) + subsecond_offset
//! ```
//!
//! So `RRULE:FREQ=DAILY` runs at DTSTART's hour/minute/second, `FREQ=WEEKLY`
//! on DTSTART's weekday, and so on. DTSTART depends on `start` (it moves
//! every `m` seconds), so the time of day is spread per job but not fixed;
//! we reproduce that exactly rather than "fix" it, so a migrated job keeps
//! dsari's times. An explicit `DTSTART` line in the expression replaces the
//! hashed one, as in dateutil.

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
    text: String,
    tz: Tz,
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
        let text = normalise(expr, tz);
        for line in text.lines() {
            if let Some(rule) = line.strip_prefix("RRULE:") {
                check_rule(rule)?;
            }
        }
        let spec = Self { text, tz };
        // Validation needs some DTSTART; any instant will do.
        let probe = Utc.timestamp_opt(0, 0).single().unwrap_or_default();
        let set = spec.build(probe)?;
        if set.get_rrule().iter().any(|r| r.get_count().is_some()) {
            return Err(count_error());
        }
        Ok(spec)
    }

    /// The first occurrence strictly after `base`, DTSTART hashed from
    /// `base` with `alignment` (`crc % 86400`) as dsari does.
    pub(crate) fn next_after(&self, base: DateTime<Utc>, alignment: i64) -> Option<DateTime<Utc>> {
        let ts = base.timestamp();
        let dtstart = Utc
            .timestamp_opt(ts - ts.rem_euclid(alignment), 0)
            .single()?;
        let zone = ::rrule::Tz::Tz(self.tz);
        let set = self.build(dtstart).ok()?.after(base.with_timezone(&zone));
        // `after` is inclusive; two results are enough to step past `base`.
        set.all(2)
            .dates
            .into_iter()
            .map(|d| d.with_timezone(&Utc))
            .find(|d| *d > base)
    }

    fn build(&self, dtstart: DateTime<Utc>) -> Result<RRuleSet, FieldError> {
        let start = dtstart.with_timezone(&::rrule::Tz::Tz(self.tz));
        RRuleSet::new(start)
            .set_from_string(&self.text)
            .map_err(|e| FieldError::new("RRULE", lowercase_reason(&e.to_string())))
    }
}

/// Uppercases rule text (dateutil is case-insensitive) and pins floating
/// DTSTART/RDATE/EXDATE values to the schedule's zone, since the `rrule`
/// crate would read them in the machine's zone.
fn normalise(expr: &str, tz: Tz) -> String {
    let mut lines = Vec::new();
    for raw in expr.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (name, value) = raw.split_once(':').unwrap_or((raw, ""));
        let upper_name = name.to_ascii_uppercase();
        let line = match upper_name.as_str() {
            "RRULE" | "EXRULE" => format!(
                "{upper_name}:{}",
                pin_until(&value.to_ascii_uppercase(), tz)
            ),
            "DTSTART" | "RDATE" | "EXDATE" if !value.ends_with(['Z', 'z']) => {
                format!("{upper_name};TZID={}:{value}", tz.name())
            }
            _ => match name.split_once(';') {
                Some((prop, params)) => format!("{};{params}:{value}", prop.to_ascii_uppercase()),
                None => format!("{upper_name}:{value}"),
            },
        };
        lines.push(line);
    }
    lines.join("\n")
}

/// Rewrites a floating `UNTIL` (no `Z`) as UTC, reading it in the schedule
/// zone: dateutil accepts it, but RFC 5545 (and the `rrule` crate) require
/// UTC once DTSTART has a zone. Unparsable values are left for the parser
/// to report.
fn pin_until(rule: &str, tz: Tz) -> String {
    let parts: Vec<String> = rule
        .split(';')
        .map(|part| match part.strip_prefix("UNTIL=") {
            Some(value) if !value.ends_with('Z') => floating_to_utc(value, tz)
                .map_or_else(|| part.to_owned(), |utc| format!("UNTIL={utc}")),
            _ => part.to_owned(),
        })
        .collect();
    parts.join(";")
}

fn floating_to_utc(value: &str, tz: Tz) -> Option<String> {
    let wall = NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%S")
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(value, "%Y%m%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })?;
    let instant = zone::instant_of(tz, wall)?;
    Some(instant.format("%Y%m%dT%H%M%SZ").to_string())
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
    use chrono::NaiveDate;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|x| x.and_hms_opt(h, mi, s))
            .unwrap_or_default()
            .and_utc()
    }

    fn spec(expr: &str) -> RruleSpec {
        match RruleSpec::parse(expr, Tz::UTC) {
            Ok(s) => s,
            Err(e) => panic!("{expr}: {e:?}"),
        }
    }

    #[test]
    fn detects_rrule_expressions() {
        assert!(is_rrule("RRULE:FREQ=DAILY"));
        assert!(is_rrule("rrule:freq=daily"));
        assert!(is_rrule("DTSTART:20200101T000000Z\nRRULE:FREQ=DAILY"));
        assert!(!is_rrule("H H * * *"));
    }

    #[test]
    fn daily_takes_time_of_day_from_hashed_dtstart() {
        // m = 33670 ("hello"); base 2020-01-01T00:00:00Z = 1577836800,
        // 1577836800 % 33670 = 26930, so DTSTART = 1577809870 =
        // 2019-12-31T16:31:10Z and the next daily occurrence is 16:31:10
        // (python-dateutil gives the same with dsari's formula).
        let next = spec("RRULE:FREQ=DAILY").next_after(utc(2020, 1, 1, 0, 0, 0), 33_670);
        assert_eq!(next, Some(utc(2020, 1, 1, 16, 31, 10)));
    }

    #[test]
    fn explicit_parts_override_hash() {
        let s = spec("RRULE:FREQ=DAILY;BYDAY=MO,TH;BYHOUR=14;BYMINUTE=30");
        // Seconds still come from the hashed DTSTART (16:31:10 -> 10).
        let next = s.next_after(utc(2020, 1, 1, 0, 0, 0), 33_670);
        assert_eq!(next, Some(utc(2020, 1, 2, 14, 30, 10))); // Thursday
    }

    #[test]
    fn explicit_dtstart_replaces_hash() {
        let s = spec("DTSTART:20200101T083000Z\nRRULE:FREQ=DAILY");
        let next = s.next_after(utc(2020, 1, 5, 9, 0, 0), 33_670);
        assert_eq!(next, Some(utc(2020, 1, 6, 8, 30, 0)));
    }

    #[test]
    fn exdate_lines_are_honoured() {
        let s = spec("RRULE:FREQ=DAILY;BYHOUR=6;BYMINUTE=0;BYSECOND=0\nEXDATE:20200102T060000Z");
        let next = s.next_after(utc(2020, 1, 1, 7, 0, 0), 33_670);
        assert_eq!(next, Some(utc(2020, 1, 3, 6, 0, 0)));
    }

    #[test]
    fn until_ends_the_schedule() {
        let s = spec("RRULE:FREQ=DAILY;BYHOUR=6;BYMINUTE=0;BYSECOND=0;UNTIL=20200103T000000Z");
        assert_eq!(
            s.next_after(utc(2020, 1, 1, 7, 0, 0), 33_670),
            Some(utc(2020, 1, 2, 6, 0, 0))
        );
        assert_eq!(s.next_after(utc(2020, 1, 2, 7, 0, 0), 33_670), None);
    }

    #[test]
    fn count_is_rejected() {
        let err = RruleSpec::parse("RRULE:FREQ=DAILY;COUNT=3", Tz::UTC).err();
        assert_eq!(err.map(|e| e.field), Some("COUNT".to_owned()));
    }

    #[test]
    fn floating_until_is_read_in_schedule_zone() {
        let ny = Tz::America__New_York;
        let s = RruleSpec::parse("RRULE:FREQ=DAILY;BYHOUR=6;UNTIL=20200103T060000", ny);
        let s = s.unwrap_or_else(|e| panic!("{e:?}"));
        assert!(s.text.contains("UNTIL=20200103T110000Z"), "{}", s.text);
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
