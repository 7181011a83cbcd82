//! Cron expressions, evaluated on naive wall-clock time.
//!
//! Semantics follow croniter (which dsari uses), including its corner cases,
//! so that expressions behave as they did under dsari. Time zones and DST are
//! handled one level up (`timing.rs`); here a time is a `NaiveDateTime`.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use super::error::FieldError;
use super::field::{FieldKind, NTH_LAST, parse_day_of_month, parse_day_of_week, parse_field};
use super::hash;

/// A parsed cron expression: one bit mask per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CronSpec {
    /// Bit `v` set = value `v` allowed; indexed by `FieldKind::position`.
    masks: [u64; 6],
    /// Whether seconds were given (6 fields). With 5 fields times have
    /// minute resolution and second 0, as in croniter.
    has_seconds: bool,
    /// Whether the seconds field is the hashed one appended to 5 fields.
    appended_seconds: bool,
    /// croniter's `*` detection for the two day fields: only when both are
    /// restricted does a day match if *either* matches (Vixie cron OR).
    dom_star: bool,
    dow_star: bool,
    /// `L` in the day of month: the month's last day.
    dom_last: bool,
    /// `NW` in the day of month: the weekday nearest to day N (the field's only item).
    nearest: Option<u32>,
    /// `D#N` and `LD` in the day of week, per weekday (see `field::DayOfWeek`).
    nth: [u8; 7],
}

impl CronSpec {
    /// Parses 5 or 6 whitespace-separated fields (seconds last), expanding
    /// `H`/`R` with `crc` (the CRC-32 of the job name).
    pub(crate) fn parse(fields: &[&str], crc: u32) -> Result<Self, FieldError> {
        if fields.len() != 5 && fields.len() != 6 {
            return Err(FieldError::new(
                "schedule",
                format!("expected 5 or 6 fields, got {}", fields.len()),
            ));
        }
        let mut masks = [0u64; 6];
        // Seconds default to 0 in a 5-field expression.
        masks[5] = 1;
        let mut dom = None;
        let mut dow = None;
        for (kind, raw) in FieldKind::ALL.iter().copied().zip(fields) {
            let lower = raw.to_ascii_lowercase();
            let expanded = match hash::expand(&lower, kind, crc) {
                Some(result) => result?,
                None => lower,
            };
            // croniter reads a lone `?` as `*`.
            let expanded = if expanded == "?"
                && matches!(kind, FieldKind::DayOfMonth | FieldKind::DayOfWeek)
            {
                "*".to_owned()
            } else {
                expanded
            };
            masks[kind.position() as usize] = match kind {
                FieldKind::DayOfMonth => {
                    let field = parse_day_of_month(&expanded)?;
                    dom = Some(field);
                    field.mask
                }
                FieldKind::DayOfWeek => {
                    let field = parse_day_of_week(&expanded)?;
                    dow = Some(field);
                    field.mask
                }
                _ => parse_field(kind, &expanded)?,
            };
        }
        let (Some(dom), Some(dow)) = (dom, dow) else {
            return Err(FieldError::new("schedule", "missing day fields"));
        };
        // croniter: a field is `*` if an item is `*`, or if its list has every value;
        // a full day-of-month list stays restricted when the weekday field has no `*`
        // in it (and vice versa), so "1-31 * * 1" still ORs. A collapsed list matches
        // every day, whatever it listed (`2-31,L` is 31 entries: the 1st too).
        let dom_collapsed = dom.entries() == 31 && fields[4].contains('*');
        let dom_star = dom.star || dom_collapsed;
        let dow_star = dow.star || (dow.entries() == 7 && fields[2].contains('*'));
        let mut dom_last = dom.last;
        if dom_collapsed {
            let (min, max) = FieldKind::DayOfMonth.range();
            masks[2] = (min..=max).fold(0u64, |m, v| m | (1 << v));
            dom_last = false;
        }
        Ok(Self {
            masks,
            has_seconds: fields.len() == 6,
            appended_seconds: false,
            dom_star,
            dow_star,
            dom_last,
            nearest: dom.nearest,
            nth: dow.nth,
        })
    }

    /// Parses the 5 fields of `fields` with the hashed seconds field dsari
    /// appends (`h`, the sixth), remembering that it was appended.
    pub(crate) fn parse_with_hashed_seconds(fields: &[&str], crc: u32) -> Result<Self, FieldError> {
        let mut with = fields.to_vec();
        with.push("h");
        let mut spec = Self::parse(&with, crc)?;
        spec.appended_seconds = true;
        Ok(spec)
    }

    /// True when the seconds field is the hashed one dsari appends.
    pub(crate) fn dsari_seconds(&self) -> bool {
        self.appended_seconds
    }

    /// The same expression as croniter reads 5 fields: at second 0, to the minute.
    pub(crate) fn without_hashed_seconds(mut self) -> Self {
        self.masks[5] = 1;
        self.has_seconds = false;
        self.appended_seconds = false;
        self
    }

    /// Whether every occurrence falls on the same second of its minute (one
    /// value in the seconds field, as in every 5-field expression).
    pub(crate) fn single_second(&self) -> bool {
        self.masks[5].count_ones() == 1
    }

    /// The first matching wall-clock time strictly after `after`.
    ///
    /// Like croniter, the search starts at the next whole second (6 fields)
    /// or whole minute (5 fields). Gives up after 50 years without a match
    /// (croniter's `max_years_between_matches`), e.g. for `0 0 31 2 *`.
    pub(crate) fn next_after(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let truncated = after.with_nanosecond(0)?;
        let start = if self.has_seconds {
            truncated.checked_add_signed(Duration::seconds(1))?
        } else {
            truncated
                .with_second(0)?
                .checked_add_signed(Duration::minutes(1))?
        };
        let has_nth = self.nth.iter().any(|n| *n != 0);
        if !self.dom_star && !self.dow_star && (has_nth || self.nearest.is_some()) {
            // croniter ORs the two day fields by searching each alone (the other set to
            // `*`) and taking the earlier time. But `#`, `L` of a weekday and `W` are
            // not blanked with their field, so each side keeps them, and a side that
            // finds nothing makes the whole expression fail (`L * 5#2`).
            let first = self.search(start, |d| {
                self.dom_matches(d) && (!has_nth || self.dow_matches(d))
            })?;
            let second = self.search(start, |d| {
                (self.nearest.is_none() || self.dom_matches(d)) && self.dow_matches(d)
            })?;
            return Some(first.min(second));
        }
        self.search(start, |d| self.date_matches(d))
    }

    /// The first time at or after `start` on a day `day_matches` accepts (and in an
    /// allowed month), looking 50 years ahead.
    fn search(
        &self,
        start: NaiveDateTime,
        day_matches: impl Fn(NaiveDate) -> bool,
    ) -> Option<NaiveDateTime> {
        let mut date = start.date();
        let mut from = start.time();
        for _ in 0..(50 * 366) {
            if has(self.masks[3], date.month())
                && day_matches(date)
                && let Some(time) = self.first_time_from(from)
            {
                return Some(date.and_time(time));
            }
            date = date.succ_opt()?;
            from = NaiveTime::MIN;
        }
        None
    }

    fn date_matches(&self, date: NaiveDate) -> bool {
        let dom = self.dom_matches(date);
        let dow = self.dow_matches(date);
        if !self.dom_star && !self.dow_star {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// The day-of-month field alone: a listed day, the last day for `L`, or the
    /// nearest weekday for `NW` (which replaces the list, as in croniter).
    fn dom_matches(&self, date: NaiveDate) -> bool {
        let day = date.day();
        if let Some(target) = self.nearest {
            return day == nearest_weekday(date, target);
        }
        has(self.masks[2], day) || (self.dom_last && day == last_day(date))
    }

    /// The day-of-week field alone: a listed weekday, or, with `#`/`L` items, only
    /// those occurrences.
    fn dow_matches(&self, date: NaiveDate) -> bool {
        let weekday = date.weekday().num_days_from_sunday();
        if self.nth.iter().all(|n| *n == 0) {
            return has(self.masks[4], weekday);
        }
        let wanted = self.nth[weekday as usize];
        let day = date.day();
        let occurrence = (day - 1) / 7 + 1;
        wanted & (1 << occurrence) != 0 || (wanted & NTH_LAST != 0 && day + 7 > last_day(date))
    }

    /// The first allowed time of day at or after `from`.
    fn first_time_from(&self, from: NaiveTime) -> Option<NaiveTime> {
        let (h0, m0, s0) = (from.hour(), from.minute(), from.second());
        let mut hour = next_bit(self.masks[1], h0);
        while let Some(h) = hour {
            let m_from = if h == h0 { m0 } else { 0 };
            let mut minute = next_bit(self.masks[0], m_from);
            while let Some(m) = minute {
                let s_from = if h == h0 && m == m0 { s0 } else { 0 };
                if let Some(s) = next_bit(self.masks[5], s_from) {
                    return NaiveTime::from_hms_opt(h, m, s);
                }
                minute = next_bit(self.masks[0], m + 1);
            }
            hour = next_bit(self.masks[1], h + 1);
        }
        None
    }
}

/// The last day of `date`'s month.
fn last_day(date: NaiveDate) -> u32 {
    let (year, month) = (date.year(), date.month());
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    };
    next.and_then(|d| d.pred_opt()).map_or(28, |d| d.day())
}

/// croniter's nearest weekday (Monday to Friday) to day `target` of `date`'s month: the
/// day itself (the last day when the month is shorter) if a weekday; for a Saturday the
/// Friday before, or the Monday after when that Friday is in the previous month; for a
/// Sunday the Monday after, or the Friday before when that Monday is in the next month.
fn nearest_weekday(date: NaiveDate, target: u32) -> u32 {
    let last = last_day(date);
    let day = target.min(last);
    let weekday = date
        .with_day(day)
        .map_or(0, |d| d.weekday().num_days_from_monday());
    match weekday {
        5 if day > 1 => day - 1,
        5 => day + 2,
        6 if day < last => day + 1,
        6 => day - 2,
        _ => day,
    }
}

fn has(mask: u64, value: u32) -> bool {
    value < 64 && mask & (1 << value) != 0
}

/// The lowest set bit at or above `from`.
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let masked = mask & (u64::MAX << from);
    (masked != 0).then(|| masked.trailing_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &[u8] = b"hello";

    fn dt(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|x| x.and_hms_opt(h, mi, s))
            .unwrap_or(NaiveDateTime::MIN)
    }

    fn epoch() -> NaiveDateTime {
        dt(2020, 1, 1, 0, 0, 0)
    }

    /// croniter-style iteration: the first two times after `start`.
    fn two(expr: &str, id: &[u8], start: NaiveDateTime) -> (NaiveDateTime, NaiveDateTime) {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let spec = match CronSpec::parse(&fields, hash::crc32(id)) {
            Ok(spec) => spec,
            Err(e) => panic!("{expr}: {e:?}"),
        };
        let first = spec.next_after(start).unwrap_or(NaiveDateTime::MIN);
        let second = spec.next_after(first).unwrap_or(NaiveDateTime::MIN);
        (first, second)
    }

    fn parse_err(expr: &str) -> FieldError {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        match CronSpec::parse(&fields, 0) {
            Ok(_) => panic!("{expr} should not parse"),
            Err(e) => e,
        }
    }

    fn masks(expr: &str) -> [u64; 6] {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        CronSpec::parse(&fields, hash::crc32(HELLO))
            .map(|s| s.masks)
            .unwrap_or([0; 6])
    }

    fn bits(mask: u64) -> Vec<u32> {
        (0..64).filter(|v| has(mask, *v)).collect()
    }

    // ---- dsari tests/test_croniter_hash.py, one test per published case ----

    #[test]
    fn dsari_hash_hourly() {
        let (a, b) = two("H * * * *", HELLO, epoch());
        assert_eq!(a, dt(2020, 1, 1, 0, 10, 0));
        assert_eq!(b, a + Duration::hours(1));
    }

    #[test]
    fn dsari_hash_daily() {
        let (a, b) = two("H H * * *", HELLO, epoch());
        assert_eq!(a, dt(2020, 1, 1, 11, 10, 0));
        assert_eq!(b, a + Duration::days(1));
    }

    #[test]
    fn dsari_hash_weekly() {
        // dsari accepts Jan 3 (range 0-6, current croniter) or Jan 5 (0-7);
        // we use croniter's current 0-6 range.
        let (a, b) = two("H H * * H", HELLO, epoch());
        assert_eq!(a, dt(2020, 1, 3, 11, 10, 0));
        assert_eq!(b, a + Duration::weeks(1));
    }

    #[test]
    fn dsari_hash_monthly() {
        let (a, b) = two("H H H * *", HELLO, epoch());
        assert_eq!(a, dt(2020, 1, 1, 11, 10, 0));
        assert_eq!(b, a + Duration::days(31));
    }

    #[test]
    fn dsari_hash_yearly() {
        let (a, b) = two("H H H H *", HELLO, epoch());
        assert_eq!(a, dt(2020, 9, 1, 11, 10, 0));
        assert_eq!(b, a + Duration::days(365));
    }

    #[test]
    fn dsari_hash_second() {
        let (a, b) = two("H H * * * H", HELLO, epoch());
        assert_eq!(a, dt(2020, 1, 1, 11, 10, 32));
        assert_eq!(b, a + Duration::days(1));
    }

    #[test]
    fn dsari_hash_id_change() {
        let (a, b) = two("H H * * *", HELLO, epoch());
        assert_eq!(a, dt(2020, 1, 1, 11, 10, 0));
        assert_eq!(b, a + Duration::days(1));
        let (a, b) = two("H H * * *", b"different id", epoch());
        assert_eq!(a, dt(2020, 1, 1, 0, 24, 0));
        assert_eq!(b, a + Duration::days(1));
    }

    #[test]
    fn dsari_hash_epoch_change() {
        let (a, b) = two("H H * * *", HELLO, epoch());
        assert_eq!(a, dt(2020, 1, 1, 11, 10, 0));
        assert_eq!(b, a + Duration::days(1));
        let (a, b) = two("H H * * *", HELLO, dt(2011, 11, 11, 11, 11, 0));
        assert_eq!(a, dt(2011, 11, 12, 11, 10, 0));
        assert_eq!(b, a + Duration::days(1));
    }

    #[test]
    fn dsari_hash_range() {
        let (a, b) = two("H H H(3-5) * *", HELLO, epoch());
        assert_eq!(a, dt(2020, 1, 5, 11, 10, 0));
        assert_eq!(b, a + Duration::days(31));
    }

    #[test]
    fn dsari_hash_id_bytes() {
        let (a, b) = two("H H * * *", b"\x01\x02\x03\x04", epoch());
        assert_eq!(a, dt(2020, 1, 1, 14, 53, 0));
        assert_eq!(b, a + Duration::days(1));
    }

    #[test]
    fn dsari_hash_float() {
        // croniter's float result is the naive time read as UTC.
        let (a, b) = two("H H * * *", HELLO, epoch());
        assert_eq!(a.and_utc().timestamp(), 1_577_877_000);
        assert_eq!(b.and_utc().timestamp(), 1_577_877_000 + 60 * 60 * 24);
    }

    #[test]
    fn dsari_random() {
        for _ in 0..50 {
            let (a, b) = two("R R * * *", HELLO, epoch());
            assert!(a >= dt(2020, 1, 1, 0, 0, 0) && a <= dt(2020, 1, 2, 0, 0, 0));
            assert!(b >= dt(2020, 1, 2, 0, 0, 0) && b <= dt(2020, 1, 3, 0, 0, 0));
        }
    }

    #[test]
    fn dsari_random_range() {
        for _ in 0..50 {
            let (a, b) = two("R R R(10-20) * *", HELLO, epoch());
            assert!(a >= dt(2020, 1, 10, 0, 0, 0) && a <= dt(2020, 1, 21, 0, 0, 0));
            assert!(b >= dt(2020, 2, 10, 0, 0, 0) && b <= dt(2020, 2, 21, 0, 0, 0));
        }
    }

    #[test]
    fn dsari_random_float() {
        for _ in 0..50 {
            let (a, b) = two("R R * * *", HELLO, epoch());
            let (a, b) = (a.and_utc().timestamp(), b.and_utc().timestamp());
            assert!((1_577_836_800..=1_577_836_800 + 86_400).contains(&a));
            assert!((1_577_923_200..=1_577_923_200 + 86_400).contains(&b));
        }
    }

    #[test]
    fn dsari_cron() {
        let (a, b) = two("35 6 * * *", HELLO, epoch());
        assert_eq!(a, dt(2020, 1, 1, 6, 35, 0));
        assert_eq!(b, a + Duration::days(1));
    }

    #[test]
    fn dsari_invalid_definition() {
        let err = parse_err("X X * * *");
        assert_eq!(err.field, "minute");
        assert_eq!(err.reason, "invalid value \"x\"");
    }

    #[test]
    fn dsari_invalid_types_are_compile_time() {
        // test_invalid_get_next_type / test_invalid_hash_id_type: Python
        // raises TypeError for a non-datetime return type or a non-bytes id.
        // In Rust both are fixed by the signatures (NaiveDateTime out, &[u8]
        // in); a str id hashes as its UTF-8 bytes, as croniter encodes it.
        assert_eq!(hash::crc32("hello".as_bytes()), hash::crc32(b"hello"));
        let (a, _) = two("H H * * *", "hello".as_bytes(), epoch());
        assert_eq!(a, dt(2020, 1, 1, 11, 10, 0));
    }

    // ---- croniter's published hash cases, with what dsari's own hashing gives ----
    // (dsari's `croniter_hash.py` hashes `H/n` over n + 1 values from the field
    // minimum, where croniter's built-in hashing uses n; dsari is the reference.)

    #[test]
    fn croniter_hash_division() {
        let (a, b) = two("H H/3 * * *", HELLO, epoch());
        assert_eq!(a, dt(2020, 1, 1, 3, 10, 0));
        assert_eq!(b, a + Duration::hours(3));
    }

    #[test]
    fn croniter_hash_range_division() {
        let (a, b) = two("H(30-59)/10 H * * *", HELLO, epoch());
        assert_eq!(a, dt(2020, 1, 1, 11, 31, 0));
        assert_eq!(b, a + Duration::minutes(10));
    }

    #[test]
    fn croniter_hash_invalid_range_and_divisor() {
        let fields = ["H(11-10)", "H", "*", "*", "*"];
        assert!(CronSpec::parse(&fields, 1).is_err());
        let fields = ["*", "*", "H/0", "*", "*"];
        let err = CronSpec::parse(&fields, 1).err().map(|e| e.field);
        assert_eq!(err.as_deref(), Some("day of month"));
    }

    // ---- plain cron syntax ----

    #[test]
    fn lists_ranges_steps() {
        let m = masks("0,15,30-32 */6 1-10/3 * * 10/20");
        assert_eq!(bits(m[0]), vec![0, 15, 30, 31, 32]);
        assert_eq!(bits(m[1]), vec![0, 6, 12, 18]);
        assert_eq!(bits(m[2]), vec![1, 4, 7, 10]);
        assert_eq!(bits(m[5]), vec![10, 30, 50]);
    }

    #[test]
    fn names_are_case_insensitive() {
        let m = masks("0 0 * JAN,Mar-may Mon-FRI");
        assert_eq!(bits(m[3]), vec![1, 3, 4, 5]);
        assert_eq!(bits(m[4]), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn sunday_is_zero_or_seven() {
        assert_eq!(bits(masks("0 0 * * 7")[4]), vec![0]);
        assert_eq!(bits(masks("0 0 * * 5-7")[4]), vec![0, 5, 6]);
    }

    #[test]
    fn croniter_range_quirks() {
        // Backwards ranges wrap; equal bounds mean the whole cycle.
        assert_eq!(bits(masks("0 22-2 * * *")[1]), vec![0, 1, 2, 22, 23]);
        assert_eq!(bits(masks("0 22-2/3 * * *")[1]), vec![2, 22]);
        assert_eq!(bits(masks("0 0 * apr-jan/3 *")[3]), vec![1, 4, 7, 10]);
        assert_eq!(bits(masks("5-5/20 0 * * *")[0]), vec![0, 20, 40]);
    }

    #[test]
    fn hash_steps_and_ranges_expand() {
        let m = masks("H/15 H(0-7) * * *");
        let start = bits(m[0])[0];
        assert!(start < 15);
        assert_eq!(bits(m[0]), vec![start, start + 15, start + 30, start + 45]);
        assert!(bits(m[1]).iter().all(|h| *h <= 7));
    }

    #[test]
    fn day_or_when_both_restricted() {
        // 13th of the month OR a Friday (croniter/Vixie semantics).
        let (a, b) = two("0 0 13 * 5", HELLO, dt(2020, 3, 1, 0, 0, 0));
        assert_eq!(a, dt(2020, 3, 6, 0, 0, 0)); // Friday
        assert_eq!(b, dt(2020, 3, 13, 0, 0, 0)); // 13th (also a Friday)
        let (a, _) = two("0 0 10 * 5", HELLO, dt(2020, 3, 7, 0, 0, 0));
        assert_eq!(a, dt(2020, 3, 10, 0, 0, 0)); // 10th, a Tuesday
    }

    #[test]
    fn day_and_when_one_is_star() {
        let (a, _) = two("0 0 * * 5", HELLO, dt(2020, 3, 7, 0, 0, 0));
        assert_eq!(a, dt(2020, 3, 13, 0, 0, 0));
        // A full day-of-month list with a restricted weekday still ORs.
        let (a, _) = two("0 0 1-31 * 5", HELLO, dt(2020, 3, 7, 0, 0, 0));
        assert_eq!(a, dt(2020, 3, 8, 0, 0, 0));
    }

    #[test]
    fn six_fields_have_seconds_last() {
        let (a, b) = two("* * * * * */20", HELLO, dt(2020, 1, 1, 0, 0, 5));
        assert_eq!(a, dt(2020, 1, 1, 0, 0, 20));
        assert_eq!(b, dt(2020, 1, 1, 0, 0, 40));
    }

    #[test]
    fn next_is_strictly_after() {
        let (a, _) = two("35 6 * * *", HELLO, dt(2020, 1, 1, 6, 35, 0));
        assert_eq!(a, dt(2020, 1, 2, 6, 35, 0));
        let spec = CronSpec::parse(&["0", "0", "*", "*", "*", "0"], 0).ok();
        let sub = dt(2020, 1, 1, 0, 0, 0) + Duration::milliseconds(1);
        assert_eq!(
            spec.and_then(|s| s.next_after(sub)),
            Some(dt(2020, 1, 2, 0, 0, 0))
        );
    }

    #[test]
    fn leap_day_and_impossible_dates() {
        let (a, b) = two("0 0 29 2 *", HELLO, dt(2021, 1, 1, 0, 0, 0));
        assert_eq!(a, dt(2024, 2, 29, 0, 0, 0));
        assert_eq!(b, dt(2028, 2, 29, 0, 0, 0));
        let spec = CronSpec::parse(&["0", "0", "31", "2", "*"], 0).ok();
        assert_eq!(spec.and_then(|s| s.next_after(epoch())), None);
    }

    #[test]
    fn errors_name_each_field() {
        let cases = [
            ("60 * * * *", "minute", "value 60 out of range 0-59"),
            ("* 24 * * *", "hour", "value 24 out of range 0-23"),
            ("0 0 32 * *", "day of month", "value 32 out of range 1-31"),
            ("0 0 0 * *", "day of month", "value 0 out of range 1-31"),
            ("0 0 * 13 *", "month", "value 13 out of range 1-12"),
            ("0 0 * foo *", "month", "invalid value \"foo\""),
            ("0 0 * * 8", "day of week", "value 8 out of range 0-6"),
            ("0 0 * * * 61", "second", "value 61 out of range 0-59"),
            ("*/0 * * * *", "minute", "invalid step \"0\""),
            (
                "? * * * *",
                "minute",
                "\"?\" is only allowed in the day fields",
            ),
            ("0 0 * *", "schedule", "expected 5 or 6 fields, got 4"),
        ];
        for (expr, field, reason) in cases {
            let err = parse_err(expr);
            assert_eq!(
                (err.field.as_str(), err.reason.as_str()),
                (field, reason),
                "{expr}"
            );
        }
    }
}
