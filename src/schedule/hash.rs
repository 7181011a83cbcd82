//! dsari-compatible hashing of job names.
//!
//! Everything here reproduces dsari exactly, because the point of hashing is
//! that a job keeps the times it had under dsari:
//!
//! * `H` tokens in cron fields are expanded the way croniter's `HashExpander`
//!   does (dsari ≥ 3 passes `hash_id=job_name` to croniter; the older
//!   `dsari/croniter_hash.py` used the same CRC and shift): the CRC-32 of the
//!   job name, shifted right by the field's position, modulo the size of the
//!   allowed range, plus the range start.
//! * The sub-second offset added to every run is `crc / 0xFFFFFFFF` seconds,
//!   rounded to microseconds (dsari `utils.get_next_schedule_time`).
//! * RRULEs get a DTSTART aligned on a multiple of `crc % 86400` seconds
//!   (same function); see `rrule.rs`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use chrono::Duration;

use super::error::FieldError;
use super::field::FieldKind;

/// CRC-32 (IEEE, as Python's `binascii.crc32`) of the job name bytes.
pub(crate) fn crc32(id: &[u8]) -> u32 {
    crc32fast::hash(id)
}

/// croniter's hashed value: `((crc >> position) % (hi - lo + 1)) + lo`.
///
/// `position` is the field index in croniter's order (minute 0, hour 1, day
/// of month 2, month 3, day of week 4, second 5), which is why two `H` fields
/// of the same job get different values.
pub(crate) fn hashed_value(crc: u32, position: u32, lo: u32, hi: u32) -> u32 {
    // Callers guarantee lo <= hi, so the modulus is at least 1.
    ((crc >> position) % (hi - lo + 1)) + lo
}

/// The sub-second offset dsari adds to every scheduled time of a job.
///
/// dsari: `timedelta(seconds=float(crc) / float(0xFFFFFFFF))`; `timedelta`
/// rounds to the nearest microsecond, ties to even, which we mirror.
pub(crate) fn subsecond_offset(crc: u32) -> Duration {
    let seconds = f64::from(crc) / f64::from(u32::MAX);
    let micros = (seconds * 1_000_000.0).round_ties_even();
    // In 0..=1_000_000, so the cast is exact.
    Duration::microseconds(micros as i64)
}

/// The alignment (in seconds) of the hashed RRULE DTSTART: `crc % 86400`.
///
/// dsari would divide by zero for the one-in-86400 names whose CRC is a
/// multiple of 86400; we use a whole day instead (midnight UTC alignment).
pub(crate) fn rrule_alignment(crc: u32) -> i64 {
    match i64::from(crc) % 86_400 {
        0 => 86_400,
        m => m,
    }
}

/// A random 32-bit value, standing in for croniter's
/// `random.randint(0, 0xFFFFFFFF)` used by the `R` forms.
///
/// std's `RandomState` is randomly keyed per instance, which is plenty for
/// spreading load and avoids a dependency on `rand`.
fn random_u32() -> u32 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0x5eed);
    // Truncation keeps the low 32 bits, which is what we want.
    hasher.finish() as u32
}

/// Expands one `H`/`R` cron field into plain cron syntax, like croniter.
///
/// `token` must already be lowercased. Returns `None` when the token is not
/// a hash expression (it is then parsed as ordinary cron syntax).
/// croniter only recognises a hash expression as a whole field
/// (`^(h|r)(\(a-b\))?(/n)?$`), never inside a list, and so do we.
pub(crate) fn expand(token: &str, kind: FieldKind, crc: u32) -> Option<Result<String, FieldError>> {
    let mut chars = token.chars();
    let random = match chars.next() {
        Some('h') => false,
        Some('r') => true,
        _ => return None,
    };
    let rest = chars.as_str();
    Some(expand_parts(
        token,
        rest,
        kind,
        if random { random_u32() } else { crc },
    ))
}

fn expand_parts(token: &str, rest: &str, kind: FieldKind, crc: u32) -> Result<String, FieldError> {
    let bad = || FieldError::new(kind.name(), format!("invalid hash expression \"{token}\""));
    let (min, max) = kind.range();
    let position = kind.position();

    // Split "(a-b)" and "/n" off the rest.
    let (range, divisor_text) = match rest.strip_prefix('(') {
        Some(inner) => {
            let close = inner.find(')').ok_or_else(bad)?;
            let (a, b) = inner[..close].split_once('-').ok_or_else(bad)?;
            let range = (
                parse_number(a).ok_or_else(bad)?,
                parse_number(b).ok_or_else(bad)?,
            );
            (Some(range), &inner[close + 1..])
        }
        None => (None, rest),
    };
    let divisor = match divisor_text {
        "" => None,
        text => {
            let n = text
                .strip_prefix('/')
                .and_then(parse_number)
                .ok_or_else(bad)?;
            if n == 0 {
                return Err(FieldError::new(
                    kind.name(),
                    format!("step must be at least 1 in \"{token}\""),
                ));
            }
            Some(n)
        }
    };
    if let Some((a, b)) = range {
        // croniter: "Range end must be greater than range begin".
        if a >= b {
            return Err(FieldError::new(
                kind.name(),
                format!("hash range end must be greater than range begin in \"{token}\""),
            ));
        }
        // croniter only notices an out-of-range bound if the hashed value
        // happens to land outside; we reject it for every job name.
        if a < min || b > max {
            return Err(FieldError::new(
                kind.name(),
                format!("hash range {a}-{b} outside {min}-{max}"),
            ));
        }
    }

    Ok(match (range, divisor) {
        // H(30-59)/10 -> x-59/10 with x hashed in 30..=39.
        (Some((a, b)), Some(n)) => {
            let start = hashed_value(crc, position, a, a.saturating_add(n - 1));
            format!("{start}-{b}/{n}")
        }
        // H(0-29) -> one value hashed in 0..=29.
        (Some((a, b)), None) => hashed_value(crc, position, a, b).to_string(),
        // H/15 -> x-59/15 with x hashed in 0..=14 (field minimum based).
        (None, Some(n)) => {
            let start = hashed_value(crc, position, min, min.saturating_add(n - 1));
            format!("{start}-{max}/{n}")
        }
        // H -> one value hashed over the whole field.
        (None, None) => hashed_value(crc, position, min, max).to_string(),
    })
}

/// Parses a plain decimal number (croniter's `\d+`).
fn parse_number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: u32 = 907_060_870;

    #[test]
    fn crc_matches_python_binascii() {
        assert_eq!(crc32(b"hello"), HELLO);
        assert_eq!(crc32(b"different id"), 934_250_784);
        assert_eq!(crc32(b"\x01\x02\x03\x04"), 3_057_449_933);
    }

    #[test]
    fn subsecond_offset_matches_python_timedelta() {
        // Values printed by `timedelta(seconds=float(crc)/float(0xFFFFFFFF))`.
        assert_eq!(subsecond_offset(HELLO), Duration::microseconds(211_192));
        assert_eq!(
            subsecond_offset(934_250_784),
            Duration::microseconds(217_522)
        );
        assert_eq!(
            subsecond_offset(3_057_449_933),
            Duration::microseconds(711_868)
        );
        assert_eq!(subsecond_offset(0), Duration::zero());
        assert_eq!(subsecond_offset(u32::MAX), Duration::seconds(1));
    }

    #[test]
    fn rrule_alignment_is_crc_mod_day() {
        assert_eq!(rrule_alignment(HELLO), 33_670);
        assert_eq!(rrule_alignment(86_400 * 3), 86_400);
    }

    #[test]
    fn plain_h_uses_position_shift() {
        assert_eq!(expand("h", FieldKind::Minute, HELLO), Some(Ok("10".into())));
        assert_eq!(expand("h", FieldKind::Hour, HELLO), Some(Ok("11".into())));
        assert_eq!(
            expand("h", FieldKind::DayOfMonth, HELLO),
            Some(Ok("1".into()))
        );
        assert_eq!(expand("h", FieldKind::Month, HELLO), Some(Ok("9".into())));
        // croniter's current day-of-week range is 0-6: Friday.
        assert_eq!(
            expand("h", FieldKind::DayOfWeek, HELLO),
            Some(Ok("5".into()))
        );
        assert_eq!(expand("h", FieldKind::Second, HELLO), Some(Ok("32".into())));
    }

    #[test]
    fn range_and_step_forms() {
        assert_eq!(
            expand("h(3-5)", FieldKind::DayOfMonth, HELLO),
            Some(Ok("5".into()))
        );
        assert_eq!(
            expand("h/3", FieldKind::Hour, HELLO),
            Some(Ok("2-23/3".into()))
        );
        assert_eq!(
            expand("h(30-59)/10", FieldKind::Minute, HELLO),
            Some(Ok("30-59/10".into()))
        );
        assert_eq!(
            expand("h/15", FieldKind::DayOfMonth, HELLO),
            Some(Ok("3-31/15".into()))
        );
    }

    #[test]
    fn non_hash_tokens_are_left_alone() {
        assert_eq!(expand("*/5", FieldKind::Minute, HELLO), None);
        assert_eq!(expand("mon", FieldKind::DayOfWeek, HELLO), None);
    }

    #[test]
    fn hash_errors_name_the_field() {
        let err = |t, k| expand(t, k, HELLO).and_then(Result::err);
        assert_eq!(
            err("h(11-10)", FieldKind::Minute).map(|e| e.field),
            Some("minute".into())
        );
        assert!(err("h/0", FieldKind::DayOfMonth).is_some());
        assert!(err("h(0-99)", FieldKind::Minute).is_some());
        assert!(err("h(5)", FieldKind::Hour).is_some());
        assert!(err("hx", FieldKind::Hour).is_some());
    }

    #[test]
    fn random_forms_stay_in_range() {
        for _ in 0..200 {
            let v: u32 = match expand("r(10-20)", FieldKind::DayOfMonth, HELLO) {
                Some(Ok(s)) => s.parse().unwrap_or(0),
                _ => 0,
            };
            assert!((10..=20).contains(&v), "{v}");
        }
    }
}
