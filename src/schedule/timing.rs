//! The public entry point: [`Schedule`] parsing and next-run computation.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::cron::CronSpec;
use super::error::{FieldError, ScheduleError};
use super::hash;
use super::rrule::{self as rule, RruleSpec};
use super::zone;

/// A parsed schedule for one job.
///
/// Holds everything `next_after` needs so the daemon can ask repeatedly
/// without re-parsing: the expanded cron masks (or validated RRULE), the
/// resolved zone and the job's dsari hash values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Schedule {
    kind: Kind,
    tz: Tz,
    /// The CRC-32 of the job name, which places the hashed RRULE DTSTART and gives
    /// the sub-second offset (see [`Schedule::offset`]), computed when needed rather
    /// than kept: a daemon keeps ten thousand schedules.
    crc: u32,
    /// The expression, when it has `R` fields: dsari draws them again for every
    /// next time it computes, and so does `next_after`.
    random: Option<Box<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Cron(CronSpec),
    Rrule(RruleSpec),
}

/// The `@` aliases, expanded as croniter does when given a hash id
/// (6 fields, hashed seconds last).
const ALIASES: [(&str, &str); 7] = [
    ("@midnight", "h h(0-2) * * * h"),
    ("@hourly", "h * * * * h"),
    ("@daily", "h h * * * h"),
    ("@weekly", "h h * * h h"),
    ("@monthly", "h h h * * h"),
    ("@yearly", "h h h h * h"),
    ("@annually", "h h h h * h"),
];

/// The same aliases written in any other case (`@DAILY`): dsari's hashing only knows
/// them in lower case, and croniter then reads them as plain cron, unhashed, at second 0.
const UNHASHED_ALIASES: [(&str, &str); 7] = [
    ("@midnight", "0 0 * * * 0"),
    ("@hourly", "0 * * * * 0"),
    ("@daily", "0 0 * * * 0"),
    ("@weekly", "0 0 * * 0 0"),
    ("@monthly", "0 0 1 * * 0"),
    ("@yearly", "0 0 1 1 * 0"),
    ("@annually", "0 0 1 1 * 0"),
];

/// Upper bound on wall times examined per query. Only reached when many
/// candidates fall inside a repeated (fall-back) hour, e.g. every second.
const MAX_CANDIDATES: usize = 100_000;

impl Schedule {
    /// Parses a cron expression (5 fields, or 6 with seconds last), an
    /// `@alias`, or an RRULE set (`RRULE:...`, optionally with
    /// DTSTART/RDATE/EXDATE lines). `job_name` drives `H`/`R` hashing and
    /// the sub-second offset; `tz` is the schedule time zone, `None` meaning
    /// the machine's. An expression that can never fire (`0 0 30 2 *`) is an
    /// error too: a job with it would silently never run.
    pub(crate) fn parse(expr: &str, job_name: &str, tz: Option<Tz>) -> Result<Self, ScheduleError> {
        let crc = hash::crc32(job_name.as_bytes());
        let tz = zone::resolve(tz);
        let kind = full_kind(expr, crc, tz).map_err(|e| e.into_schedule_error(expr))?;
        let random = matches!(kind, Kind::Cron(_)) && has_random_field(expr);
        let schedule = Self {
            kind,
            tz,
            crc,
            random: random.then(|| expr.into()),
        };
        // Any time since 1970 that fires is enough to show the schedule is possible; an
        // RRULE whose UNTIL has passed since then still parses (it ran once). A random
        // field may draw a value that never fires (`0 0 R 2 *`) and the next draw not.
        if !random && schedule.next_after(DateTime::UNIX_EPOCH).is_none() {
            let reason = match schedule.kind {
                Kind::Cron(_) => {
                    "never fires: no date matches its day of month, month and day of week"
                }
                Kind::Rrule(_) => "never fires: the rule gives no occurrence",
            };
            return Err(ScheduleError::new(expr, "schedule", reason));
        }
        Ok(schedule)
    }

    /// The next due time after `after`, as dsari computes it: the first
    /// occurrence whose whole second is later than `after`'s, plus the job's
    /// sub-second offset. Fed its own result it gives the following one; a
    /// time exactly on an occurrence skips it, as dsari does. `None` if the
    /// schedule never fires again (an RRULE past its UNTIL).
    ///
    /// Occurrences are wall-clock times in the schedule zone, each turned into
    /// one instant by the zone rule (`zone.rs`). When every occurrence is on the
    /// same second of its minute (a 5-field expression, whose seconds dsari
    /// hashes, or an RRULE whose seconds come from the hashed DTSTART), that
    /// second is a spread added after the rule, not part of the nominal time:
    /// a nominal minute in a spring-forward gap runs at the gap's end plus the
    /// spread, together with the first minute after the gap when that one is
    /// nominal too, instead of a few seconds before it.
    pub(crate) fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let floor = DateTime::from_timestamp(after.timestamp(), 0)?;
        let occurrence = match (&self.kind, &self.random) {
            (Kind::Cron(_), Some(expr)) => {
                (0..8).find_map(|_| match full_kind(expr, self.crc, self.tz) {
                    Ok(Kind::Cron(spec)) => self.next_cron(&spec, floor),
                    _ => None,
                })
            }
            (Kind::Cron(spec), None) => self.next_cron(spec, floor),
            (Kind::Rrule(spec), _) => self.next_rrule(spec, floor),
        }?;
        occurrence.checked_add_signed(self.offset())
    }

    /// Added to every due time, exactly as dsari does, so jobs sharing a second are
    /// still started in a stable, spread-out order.
    fn offset(&self) -> Duration {
        hash::subsecond_offset(self.crc)
    }

    /// The zone this schedule is evaluated in (after resolving `None`).
    pub(crate) fn time_zone(&self) -> Tz {
        self.tz
    }

    /// Where a scan of wall times must start so that no occurrence later than
    /// `floor` is missed: `floor`'s own wall time, or a minute earlier when a
    /// spread second can carry an occurrence from a gap minute past `floor`.
    fn scan_start(&self, floor: DateTime<Utc>, spread: bool) -> NaiveDateTime {
        let from = if spread {
            floor - Duration::seconds(60)
        } else {
            floor
        };
        from.with_timezone(&self.tz).naive_local()
    }

    /// The one instant a wall-clock occurrence stands for. `prefer` (an
    /// offset, and the time of the query) picks the pass of a repeated time
    /// with that UTC offset when neither pass has come yet (see `next_rrule`);
    /// otherwise the zone rule takes the first pass.
    fn instant(
        &self,
        wall: NaiveDateTime,
        spread: bool,
        prefer: Option<(i32, DateTime<Utc>)>,
    ) -> Option<DateTime<Utc>> {
        let (nominal, extra) = if spread {
            (wall.with_second(0)?, i64::from(wall.second()))
        } else {
            (wall, 0)
        };
        let chosen = match (self.tz.from_local_datetime(&nominal), prefer) {
            (LocalResult::Ambiguous(a, b), Some((offset, floor)))
                if a.min(b).with_timezone(&Utc) > floor =>
            {
                [a, b]
                    .into_iter()
                    .find(|t| t.offset().fix().local_minus_utc() == offset)
                    .map(|t| t.with_timezone(&Utc))
            }
            _ => None,
        };
        chosen
            .or_else(|| zone::instant_of(self.tz, nominal))?
            .checked_add_signed(Duration::seconds(extra))
    }

    /// Scans matching wall times in order and returns the first whose
    /// instant is after `floor`. The wall-to-instant mapping never goes
    /// backwards (see `zone.rs`), so the first such instant is the earliest.
    fn next_cron(&self, spec: &CronSpec, floor: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let spread = spec.single_second();
        let mut wall = self.scan_start(floor, spread);
        for _ in 0..MAX_CANDIDATES {
            let candidate = spec.next_after(wall)?;
            let instant = self.instant(candidate, spread, None)?;
            if instant > floor {
                return Some(instant);
            }
            wall = candidate;
        }
        None
    }

    /// dsari's RRULE step: DTSTART is the last instant at or before `floor`
    /// whose epoch second is the job's CRC modulo a day, read as a wall time
    /// with the UTC offset in force at `floor` (dsari subtracts on the
    /// zone-aware start time), then the first occurrence after `floor`.
    ///
    /// At a daylight-saving change that offset goes stale: occurrences from a
    /// DTSTART read with the old offset run on past the change while the next
    /// query reads DTSTART with the new one, so dsari fires a daily rule at
    /// both 04:21 and 05:21 on the day after spring-forward. runner's rule:
    /// an occurrence from a DTSTART read with one offset counts only while
    /// that offset is in force; past the change the DTSTART is read with the
    /// new offset, so the job moves over to its new times once. Away from a
    /// change this is exactly dsari's computation.
    fn next_rrule(&self, spec: &RruleSpec, floor: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let since = (floor.timestamp() - i64::from(self.crc)).rem_euclid(86_400);
        let hashed = floor
            .checked_sub_signed(Duration::seconds(since))?
            .naive_utc();
        let dtstart = |offset: i32| hashed.checked_add_signed(Duration::seconds(i64::from(offset)));
        let before = self.utc_offset(floor);
        let (nominal, found) = self.first_rrule(spec, dtstart(before)?, floor, None, None)?;
        let after = self.utc_offset(found);
        let moved = dtstart(after)?;
        // An occurrence nominally before the DTSTART read with the new offset (a fixed
        // time just after the change) is not a stale one: it stands.
        if after == before || nominal < moved {
            return Some(found);
        }
        // Read with the new offset, the hashed DTSTART may fall in the spring gap; the
        // occurrence there is the hashed instant itself, already past: not a new time.
        let skip = zone::instant_of(self.tz, moved)
            .is_some_and(|t| t.with_timezone(&self.tz).naive_local() != moved)
            .then_some(moved);
        self.first_rrule(spec, moved, floor, Some(after), skip)
            .map_or(Some(found), |(_, instant)| Some(instant))
    }

    /// The first occurrence after `floor` of `spec` expanded from `dtstart`
    /// (with `offset`, the first at that UTC offset; never the wall time
    /// `skip`): its wall time and instant.
    fn first_rrule(
        &self,
        spec: &RruleSpec,
        dtstart: NaiveDateTime,
        floor: DateTime<Utc>,
        offset: Option<i32>,
        skip: Option<NaiveDateTime>,
    ) -> Option<(NaiveDateTime, DateTime<Utc>)> {
        let spread = spec.single_second();
        let start = self.scan_start(floor, spread);
        spec.occurrences(dtstart)?
            .filter(|occurrence| *occurrence > start && Some(*occurrence) != skip)
            .take(MAX_CANDIDATES)
            .filter_map(|occurrence| {
                let prefer = offset.map(|o| (o, floor));
                Some((occurrence, self.instant(occurrence, spread, prefer)?))
            })
            .filter(|(_, instant)| *instant > floor)
            .find(|(_, instant)| offset.is_none_or(|o| self.utc_offset(*instant) == o))
    }

    /// Seconds east of UTC in the schedule zone at `t`.
    fn utc_offset(&self, t: DateTime<Utc>) -> i32 {
        self.tz
            .offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc()
    }
}

/// [`parse_kind`] of the trimmed text, then dsari's rule for its hashed seconds: it
/// appends them only when the text, split on single spaces, has exactly 5 parts, so
/// `0  3 * * *` (two spaces) runs at 03:00:00 there.
fn full_kind(expr: &str, crc: u32, tz: Tz) -> Result<Kind, FieldError> {
    Ok(match parse_kind(expr.trim(), crc, tz)? {
        Kind::Cron(spec) if expr.split(' ').count() != 5 && spec.dsari_seconds() => {
            Kind::Cron(spec.without_hashed_seconds())
        }
        other => other,
    })
}

/// Whether a cron field is one of the random forms (`R`, `R(a-b)`, `R/n`, ...).
fn has_random_field(expr: &str) -> bool {
    expr.split_whitespace().any(|field| {
        let lower = field.to_ascii_lowercase();
        lower == "r" || lower.starts_with("r(") || lower.starts_with("r/")
    })
}

fn parse_kind(expr: &str, crc: u32, tz: Tz) -> Result<Kind, FieldError> {
    if expr.is_empty() {
        return Err(FieldError::new("schedule", "empty expression"));
    }
    if rule::is_rrule(expr) {
        return RruleSpec::parse(expr, tz).map(Kind::Rrule);
    }
    let lower = expr.to_ascii_lowercase();
    let fields: Vec<&str> = if lower.starts_with('@') {
        let aliases = if lower == expr {
            &ALIASES
        } else {
            &UNHASHED_ALIASES
        };
        let expansion = aliases
            .iter()
            .find(|(alias, _)| *alias == lower)
            .map(|(_, fields)| *fields)
            .ok_or_else(|| {
                FieldError::new(
                    "schedule",
                    format!(
                        "unknown alias \"{expr}\" (expected @hourly, @daily, @midnight, @weekly, @monthly, @yearly or @annually)"
                    ),
                )
            })?;
        expansion.split_whitespace().collect()
    } else {
        expr.split_whitespace().collect()
    };
    // dsari appends a hashed seconds field to 5-field expressions, so each
    // job fires at its own second of the minute (`Schedule::parse` takes it
    // back off where dsari's own test for 5 fields would not have added it).
    if fields.len() == 5 {
        return CronSpec::parse_with_hashed_seconds(&fields, crc).map(Kind::Cron);
    }
    CronSpec::parse(&fields, crc).map(Kind::Cron)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDateTime;

    fn at(text: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .unwrap_or_default()
            .and_utc()
    }

    fn schedule(expr: &str, job: &str, tz: Tz) -> Schedule {
        match Schedule::parse(expr, job, Some(tz)) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn next(expr: &str, job: &str, tz: Tz, after: &str) -> Option<DateTime<Utc>> {
        schedule(expr, job, tz).next_after(at(after))
    }

    fn error(expr: &str) -> ScheduleError {
        match Schedule::parse(expr, "job", Some(Tz::UTC)) {
            Ok(_) => panic!("{expr} should be rejected"),
            Err(e) => e,
        }
    }

    /// dsari's own result for each case: `dsari.utils.get_next_schedule_time`
    /// of dsari 2.0 with croniter 7.0.0 and python-dateutil 2.9, given `after`
    /// as a time of the schedule zone. The fixture table
    /// (`tests/data/dsari-schedules.tsv`) checks 2,000 more through the CLI.
    #[test]
    fn matches_dsari_reference_times() {
        let cases = [
            (
                "H H * * *",
                "hello",
                "2020-01-01T00:00:00",
                "2020-01-01T11:10:32.211192",
            ),
            (
                "@daily",
                "hello",
                "2020-01-01T00:00:00",
                "2020-01-01T11:10:32.211192",
            ),
            (
                "@weekly",
                "nightly-backup",
                "2026-05-05T13:14:15",
                "2026-05-09T12:24:00.499824",
            ),
            (
                "@monthly",
                "nightly-backup",
                "2026-05-05T13:14:15",
                "2026-06-02T12:24:00.499824",
            ),
            (
                "@yearly",
                "db-vacuum",
                "2026-05-05T13:14:15",
                "2027-04-18T14:29:45.722319",
            ),
            (
                "@midnight",
                "db-vacuum",
                "2026-05-05T13:14:15",
                "2026-05-06T02:29:45.722319",
            ),
            (
                "@hourly",
                "db-vacuum",
                "2026-05-05T13:14:15",
                "2026-05-05T13:29:45.722319",
            ),
            (
                "H/15 * * * *",
                "db-vacuum",
                "2026-05-05T13:14:15",
                "2026-05-05T13:28:45.722319",
            ),
            (
                "H(30-59)/10 H(0-7) * * 1-5",
                "report",
                "2026-05-09T13:14:15",
                "2026-05-11T02:30:20.766349",
            ),
            (
                "H H(9-17) H/3 * *",
                "report",
                "2026-05-09T13:14:15",
                "2026-05-09T13:44:20.766349",
            ),
            (
                "0 9 * jan-mar mon",
                "report",
                "2026-05-09T13:14:15",
                "2027-01-04T09:00:20.766349",
            ),
            (
                "*/20 * * * * H/7",
                "poll",
                "2026-05-09T13:14:15",
                "2026-05-09T13:20:02.518509",
            ),
            (
                "0 0 13 * fri",
                "spooky",
                "2026-05-09T13:14:15",
                "2026-05-13T00:00:37.291873",
            ),
            (
                "RRULE:FREQ=DAILY",
                "hello",
                "2020-01-01T00:00:00",
                "2020-01-01T09:21:10.211192",
            ),
            (
                "RRULE:FREQ=WEEKLY",
                "nightly-backup",
                "2026-05-05T13:14:15",
                "2026-05-12T09:04:24.499824",
            ),
            (
                "RRULE:FREQ=HOURLY;INTERVAL=3",
                "nightly-backup",
                "2026-05-05T13:14:15",
                "2026-05-05T15:04:24.499824",
            ),
            (
                "RRULE:FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
                "report",
                "2026-05-05T13:14:15",
                "2026-05-29T10:18:44.766349",
            ),
            (
                "RRULE:FREQ=MINUTELY;INTERVAL=5",
                "poll",
                "2026-05-05T13:14:15",
                "2026-05-05T13:19:09.518509",
            ),
        ];
        for (expr, job, after, expected) in cases {
            assert_eq!(
                next(expr, job, Tz::UTC, after),
                Some(at(expected)),
                "{expr} / {job}"
            );
        }
    }

    /// Same, in America/New_York (`after` is still written in UTC here).
    #[test]
    fn matches_dsari_reference_times_new_york() {
        let ny = Tz::America__New_York;
        let cases = [
            (
                "RRULE:FREQ=WEEKLY",
                "nightly-backup",
                "2026-05-05T13:14:15",
                "2026-05-12T09:04:24.499824",
            ),
            (
                "RRULE:FREQ=DAILY;BYHOUR=9",
                "hello",
                "2026-07-01T00:00:00",
                "2026-07-01T13:21:10.211192",
            ),
            (
                "@weekly",
                "nightly-backup",
                "2026-05-05T13:14:15",
                "2026-05-09T16:24:00.499824",
            ),
            (
                "H(0-7) * * * 1-5",
                "report",
                "2026-05-09T13:14:15",
                "2026-05-11T04:04:20.766349",
            ),
        ];
        for (expr, job, after, expected) in cases {
            assert_eq!(
                next(expr, job, ny, after),
                Some(at(expected)),
                "{expr} / {job}"
            );
        }
    }

    #[test]
    fn five_fields_get_hashed_seconds_and_offset() {
        // test_hash_second's 11:10:32 plus hello's 0.211192 s offset.
        let s = schedule("H H * * *", "hello", Tz::UTC);
        assert_eq!(s.offset(), Duration::microseconds(211_192));
        assert_eq!(
            s.next_after(at("2020-01-01T00:00:00")),
            Some(at("2020-01-01T11:10:32.211192"))
        );
    }

    #[test]
    fn hashed_seconds_only_where_dsari_adds_them() {
        // dsari counts fields with `split(" ")`: with two spaces it adds no hashed
        // seconds and croniter reads 5 fields, at second 0 (checked against dsari).
        let got = next("0  3 * * *", "hello", Tz::UTC, "2021-06-15T00:00:00");
        assert_eq!(got, Some(at("2021-06-15T03:00:00.211192")));
        let got = next("0 3 * * *", "hello", Tz::UTC, "2021-06-15T00:00:00");
        assert_eq!(got, Some(at("2021-06-15T03:00:32.211192")));
        let got = next("*/5  * * * *", "hello", Tz::UTC, "2021-06-15T00:00:00");
        assert_eq!(got, Some(at("2021-06-15T00:05:00.211192")));
    }

    #[test]
    fn random_fields_are_drawn_again_for_every_time() {
        // dsari expands `R` anew each time it computes a next time.
        let s = schedule("R R * * *", "x", Tz::UTC);
        let from = at("2020-01-01T00:00:00");
        let draws: std::collections::BTreeSet<_> =
            (0..20).filter_map(|_| s.next_after(from)).collect();
        assert!(draws.len() > 1, "{draws:?}");
        assert!(
            draws
                .iter()
                .all(|t| *t > from && *t < from + Duration::days(2))
        );
        // A draw that cannot fire (30 February) is drawn again, not an error.
        assert!(Schedule::parse("0 0 R 2 *", "x", Some(Tz::UTC)).is_ok());
        assert!(next("0 0 R 2 *", "x", Tz::UTC, "2020-01-01T00:00:00").is_some());
    }

    #[test]
    fn six_fields_have_seconds_last() {
        let got = next("0 12 * * * 45", "hello", Tz::UTC, "2020-01-01T00:00:00");
        assert_eq!(got, Some(at("2020-01-01T12:00:45.211192")));
    }

    #[test]
    fn every_alias_parses_and_repeats() {
        let cases = [
            ("@hourly", Duration::hours(1)),
            ("@daily", Duration::days(1)),
            ("@midnight", Duration::days(1)),
            ("@weekly", Duration::weeks(1)),
            ("@monthly", Duration::days(31)),
            ("@yearly", Duration::days(365)),
            ("@annually", Duration::days(365)),
            ("@DAILY", Duration::days(1)),
        ];
        for (alias, gap) in cases {
            let s = schedule(alias, "hello", Tz::UTC);
            let first = s.next_after(at("2020-01-01T00:00:00"));
            let second = first.and_then(|t| s.next_after(t));
            assert_eq!(second.zip(first).map(|(b, a)| b - a), Some(gap), "{alias}");
        }
        let midnight = next("@midnight", "hello", Tz::UTC, "2020-01-01T00:00:00");
        assert_eq!(midnight, Some(at("2020-01-01T02:10:32.211192")));
        let yearly = next("@yearly", "hello", Tz::UTC, "2020-01-01T00:00:00");
        assert_eq!(
            next("@annually", "hello", Tz::UTC, "2020-01-01T00:00:00"),
            yearly
        );
    }

    #[test]
    fn aliases_in_another_case_are_unhashed_like_dsari() {
        // dsari 2.0 (croniter 7.0.0), job "j", after 2026-01-01T00:00:00Z: only the
        // lower-case aliases are hashed; the others are croniter's plain cron.
        for (alias, due) in [
            ("@HOURLY", "2026-01-01T01:00:00.497641"),
            ("@Midnight", "2026-01-02T00:00:00.497641"),
            ("@DAILY", "2026-01-02T00:00:00.497641"),
            ("@WEEKLY", "2026-01-04T00:00:00.497641"),
            ("@Monthly", "2026-02-01T00:00:00.497641"),
            ("@ANNUALLY", "2027-01-01T00:00:00.497641"),
        ] {
            let got = next(alias, "j", Tz::UTC, "2026-01-01T00:00:00");
            assert_eq!(got, Some(at(due)), "{alias}");
        }
        assert_eq!(
            next("@daily", "j", Tz::UTC, "2026-01-01T00:00:00"),
            Some(at("2026-01-01T13:39:14.497641"))
        );
    }

    #[test]
    fn next_after_skips_a_time_on_the_tick_like_dsari() {
        // dsari looks for the first occurrence whose whole second is after the
        // given time's, then adds the offset; fed its own result it moves on.
        let s = schedule("H H * * *", "hello", Tz::UTC);
        let due = at("2020-01-01T11:10:32.211192");
        assert_eq!(s.next_after(due), Some(due + Duration::days(1)));
        assert_eq!(
            s.next_after(at("2020-01-01T11:10:32")),
            Some(due + Duration::days(1))
        );
        assert_eq!(s.next_after(at("2020-01-01T11:10:31.9")), Some(due));
        let six = schedule("17 * * * * *", "kg7g7y1", Tz::UTC);
        assert_eq!(
            six.next_after(at("2035-07-10T07:17:11")),
            Some(at("2035-07-10T07:17:12.229910"))
        );
        let r = schedule("RRULE:FREQ=HOURLY;BYMINUTE=0;BYSECOND=0", "hello", Tz::UTC);
        let due = at("2020-01-01T01:00:00.211192");
        assert_eq!(r.next_after(due), Some(due + Duration::hours(1)));
        assert_eq!(r.next_after(at("2020-01-01T00:59:59.5")), Some(due));
        assert_eq!(
            r.next_after(at("2020-01-01T01:00:00")),
            Some(due + Duration::hours(1))
        );
    }

    #[test]
    fn rrule_daily_keeps_its_time_of_day() {
        // dsari's hashed DTSTART is on the job's own second of the day, so a
        // daily rule fires every 24 h (it used to drift with the query time).
        let s = schedule("RRULE:FREQ=DAILY", "hello", Tz::UTC);
        let mut t = at("2020-01-01T00:00:00");
        let mut got = Vec::new();
        for _ in 0..4 {
            t = s.next_after(t).unwrap_or_default();
            got.push(t);
        }
        assert_eq!(got[0], at("2020-01-01T09:21:10.211192"));
        for pair in got.windows(2) {
            assert_eq!(pair[1] - pair[0], Duration::days(1));
        }
        let s = schedule("RRULE:FREQ=DAILY;BYHOUR=14;BYMINUTE=30", "hello", Tz::UTC);
        let first = s.next_after(at("2020-01-01T00:00:00"));
        assert_eq!(first, Some(at("2020-01-01T14:30:10.211192")));
        let second = first.and_then(|t| s.next_after(t));
        assert_eq!(second, Some(at("2020-01-02T14:30:10.211192")));
    }

    #[test]
    fn time_zone_is_applied() {
        // 09:00 in London is 08:00Z in summer and 09:00Z in winter.
        let london = Tz::Europe__London;
        let summer = next("0 9 * * * 0", "hello", london, "2026-07-01T00:00:00");
        assert_eq!(summer, Some(at("2026-07-01T08:00:00.211192")));
        let winter = next("0 9 * * * 0", "hello", london, "2026-01-05T00:00:00");
        assert_eq!(winter, Some(at("2026-01-05T09:00:00.211192")));
        assert_eq!(schedule("@daily", "x", london).time_zone(), london);
        assert!(Schedule::parse("@daily", "x", None).is_ok());
    }

    #[test]
    fn spring_forward_runs_once_at_end_of_gap() {
        // 02:30 does not exist in New York on 2026-03-08; it runs at 03:00.
        let s = schedule("30 2 * * * 0", "hello", Tz::America__New_York);
        let mut t = at("2026-03-07T00:00:00");
        let mut got = Vec::new();
        for _ in 0..3 {
            t = s.next_after(t).unwrap_or_default();
            got.push(t);
        }
        assert_eq!(
            got,
            [
                at("2026-03-07T07:30:00.211192"), // 02:30 EST
                at("2026-03-08T07:00:00.211192"), // 03:00 EDT, once
                at("2026-03-09T06:30:00.211192"), // 02:30 EDT
            ]
        );
    }

    #[test]
    fn spring_forward_collapses_gap_runs() {
        let s = schedule("*/15 * * * * 0", "hello", Tz::America__New_York);
        let first = s.next_after(at("2026-03-08T06:50:00")); // 01:50 EST
        assert_eq!(first, Some(at("2026-03-08T07:00:00.211192"))); // 03:00 EDT
        let second = first.and_then(|t| s.next_after(t));
        assert_eq!(second, Some(at("2026-03-08T07:15:00.211192"))); // 03:15 EDT
    }

    #[test]
    fn fall_back_runs_once() {
        // 01:30 happens twice in New York on 2026-11-01; run the first.
        let s = schedule("30 1 * * * 0", "hello", Tz::America__New_York);
        let first = s.next_after(at("2026-10-31T16:00:00"));
        assert_eq!(first, Some(at("2026-11-01T05:30:00.211192"))); // 01:30 EDT
        let second = first.and_then(|t| s.next_after(t));
        assert_eq!(second, Some(at("2026-11-02T06:30:00.211192"))); // 01:30 EST next day
        // Asked during the repeated hour (01:00 EST), still not again today.
        let during = s.next_after(at("2026-11-01T06:00:00"));
        assert_eq!(during, Some(at("2026-11-02T06:30:00.211192")));
    }

    #[test]
    fn rrule_dst_follows_the_zone_rule() {
        // RRULE occurrences are wall times too: a missing 02:30 runs once, at
        // 03:00 EDT; a repeated 01:30 runs once, the first time.
        let s = schedule(
            "RRULE:FREQ=DAILY;BYHOUR=2;BYMINUTE=30;BYSECOND=0",
            "hello",
            Tz::America__New_York,
        );
        let first = s.next_after(at("2026-03-08T00:00:00"));
        assert_eq!(first, Some(at("2026-03-08T07:00:00.211192")));
        let second = first.and_then(|t| s.next_after(t));
        assert_eq!(second, Some(at("2026-03-09T06:30:00.211192")));
        let fall = schedule(
            "RRULE:FREQ=DAILY;BYHOUR=1;BYMINUTE=30;BYSECOND=0",
            "hello",
            Tz::America__New_York,
        );
        let first = fall.next_after(at("2026-10-31T16:00:00"));
        assert_eq!(first, Some(at("2026-11-01T05:30:00.211192")));
        let second = first.and_then(|t| fall.next_after(t));
        assert_eq!(second, Some(at("2026-11-02T06:30:00.211192")));
    }

    #[test]
    fn hourly_across_spring_forward_fires_once_per_hour() {
        // `0 * * * *` gets a hashed second; the missing 02:00 joins 03:00
        // instead of firing a few seconds before it.
        let ny = Tz::America__New_York;
        for expr in ["0 * * * *", "RRULE:FREQ=HOURLY;BYMINUTE=0"] {
            let s = schedule(expr, "hello", ny);
            let mut t = at("2026-03-08T05:30:00"); // 00:30 EST
            let mut got = Vec::new();
            for _ in 0..4 {
                t = s.next_after(t).unwrap_or_default();
                got.push(t);
            }
            let gaps: Vec<i64> = got
                .windows(2)
                .map(|p| (p[1] - p[0]).num_seconds())
                .collect();
            // 01:00 EST, then 03:00 EDT (02:00 and 03:00 together), then 04:00.
            assert_eq!(gaps, [3600, 3600, 3600], "{expr}: {got:?}");
        }
    }

    #[test]
    fn rrule_multiline_and_lowercase() {
        let s = schedule(
            "rrule:freq=daily;byhour=6;byminute=0;bysecond=0\nEXDATE:20200102T060000",
            "hello",
            Tz::UTC,
        );
        assert_eq!(
            s.next_after(at("2020-01-01T07:00:00")),
            Some(at("2020-01-03T06:00:00.211192"))
        );
    }

    #[test]
    fn never_fires_is_an_error_and_ending_is_none() {
        for expr in ["0 0 30 2 *", "0 0 31 2 * 0", "0 0 31 4,6,9,11 *"] {
            let e = error(expr);
            assert_eq!(e.field, "schedule", "{expr}");
            assert!(e.reason.starts_with("never fires"), "{expr}: {e}");
        }
        // 29 February comes back, and so does the 31st when a weekday is given too.
        assert!(Schedule::parse("0 0 29 2 *", "job", Some(Tz::UTC)).is_ok());
        assert!(Schedule::parse("0 0 31 2 mon", "job", Some(Tz::UTC)).is_ok());
        let e = error("RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30");
        assert!(e.reason.starts_with("never fires"), "{e}");
        let until = "RRULE:FREQ=DAILY;UNTIL=20200101T000000Z";
        assert_eq!(next(until, "hello", Tz::UTC, "2021-01-01T00:00:00"), None);
    }

    #[test]
    fn errors_name_the_field() {
        let e = error("0 0 32 * *");
        assert_eq!(
            (e.field.as_str(), e.reason.as_str()),
            ("day of month", "value 32 out of range 1-31")
        );
        assert_eq!(
            e.to_string(),
            "schedule \"0 0 32 * *\": day of month: value 32 out of range 1-31"
        );
        assert_eq!(error("0 0 * * * 60").field, "second");
        assert_eq!(error("0 0 * * mo").field, "day of week");
        assert_eq!(error("H(5-4) * * * *").field, "minute");
        assert!(Schedule::parse("H(6-6) * * * *", "job", Some(Tz::UTC)).is_ok());
        assert_eq!(error("@fortnightly").field, "schedule");
        assert_eq!(error("   ").reason, "empty expression");
        assert_eq!(error("1 2 3").reason, "expected 5 or 6 fields, got 3");
        let count = error("RRULE:FREQ=DAILY;COUNT=5");
        assert_eq!(count.field, "COUNT");
        assert_eq!(
            count.to_string(),
            "schedule \"RRULE:FREQ=DAILY;COUNT=5\": COUNT: not supported, a schedule has no fixed start to count from (use UNTIL)"
        );
        assert_eq!(error("RRULE:FREQ=DAILY;BYMINUTE=61").field, "BYMINUTE");
    }
}
