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
//! * RRULEs get a DTSTART on the job's hashed second of the day (same
//!   function); see `rrule.rs`.

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
        // A bound outside the field is refused for every job name; croniter would only
        // notice when the hashed value of a given name happens to land outside. A bound
        // of 0 means "the field's own bound" to dsari, so it is allowed everywhere.
        if (a != 0 && a < min) || b > max {
            return Err(FieldError::new(
                kind.name(),
                format!("hash range {a}-{b} outside {min}-{max}"),
            ));
        }
    }
    let hash = |lo: u32, hi: u32| {
        dsari_hash(crc, position, lo, hi).ok_or_else(|| {
            FieldError::new(
                kind.name(),
                format!("hash range in \"{token}\" holds no value"),
            )
        })
    };
    // What dsari's `croniter_hash.py` computes, quirks included: its hash helper treats
    // a bound of 0 as "not given" (so `H(0-0)` is the whole field and `H(0-5)` in the
    // day of month starts at 1), the `/n` forms hash over `min..=n` whatever the range
    // (n + 1 values for minutes, not n), and `H(a-b)/n` adds `a` to that value even when
    // the sum passes `b` (croniter then reads `x-b/n` as a backwards range, or refuses a
    // value past the field).
    Ok(match (range, divisor) {
        // H(30-59)/10 -> x-59/10, x = 30 + a hash over 0..=10.
        (Some((a, b)), Some(n)) => format!("{}-{b}/{n}", hash(min, n)? + i64::from(a)),
        // H(0-29) -> one value hashed in 0..=29; H(6-6) is 6.
        (Some((a, b)), None) => {
            let lo = if a == 0 { min } else { a };
            let hi = if b == 0 { max } else { b };
            hash(lo, hi)?.to_string()
        }
        // H/15 -> x-59/15, x hashed over 0..=15.
        (None, Some(n)) => format!("{}-{max}/{n}", hash(min, n)?),
        // H -> one value hashed over the whole field.
        (None, None) => hashed_value(crc, position, min, max).to_string(),
    })
}

/// dsari's hash helper with Python's arithmetic: `((crc >> position) % (hi - lo + 1)) + lo`,
/// where `%` takes the sign of the divisor, so a backwards range `H(10-5)` still gives a
/// value (7 to 10) as under dsari. `None` where Python divides by zero (`hi = lo - 1`).
fn dsari_hash(crc: u32, position: u32, lo: u32, hi: u32) -> Option<i64> {
    let divisor = i64::from(hi) - i64::from(lo) + 1;
    if divisor == 0 {
        return None;
    }
    let value = i64::from(crc >> position);
    let mut rem = value % divisor;
    if rem != 0 && (rem < 0) != (divisor < 0) {
        rem += divisor;
    }
    Some(rem + i64::from(lo))
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
            Some(Ok("3-23/3".into()))
        );
        assert_eq!(
            expand("h(30-59)/10", FieldKind::Minute, HELLO),
            Some(Ok("31-59/10".into()))
        );
        assert_eq!(
            expand("h/15", FieldKind::DayOfMonth, HELLO),
            Some(Ok("3-31/15".into()))
        );
    }

    /// What dsari 2.0's `croniter_hash` expands these to for "hello" (printed
    /// by croniter's `expressions` after expansion).
    #[test]
    fn dsari_quirks_are_kept() {
        let minute = |t| expand(t, FieldKind::Minute, HELLO);
        // A one-value range.
        assert_eq!(minute("h(6-6)"), Some(Ok("6".into())));
        // A backwards range hashes with Python's modulo.
        assert_eq!(minute("h(10-5)"), Some(Ok("8".into())));
        // A bound of 0 is "not given": the whole field, or its minimum.
        assert_eq!(minute("h(0-0)"), Some(Ok("10".into())));
        assert_eq!(
            expand("h(0-5)", FieldKind::DayOfMonth, HELLO),
            Some(Ok("3".into()))
        );
        // H(a-b)/n adds a to a value hashed over 0..=n, even past b.
        assert_eq!(minute("h(10-12)/20"), Some(Ok("26-12/20".into())));
        assert_eq!(minute("h(50-57)/20"), Some(Ok("66-57/20".into())));
        // Python would divide by zero: refused.
        assert!(matches!(minute("h(6-5)"), Some(Err(_))));
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
        assert!(err("h(5-60)", FieldKind::Minute).is_some());
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
