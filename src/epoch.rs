//! Seconds since the Unix epoch, as dsari stores and passes times, and back.
//!
//! Records, lock files, trigger files and run environments all carry times as a float of
//! seconds; this is the one place that converts, so that out-of-range values are handled
//! the same way everywhere (clamped or refused, never a panic on what a file said), as a
//! `SystemTime` (records, locks) or a chrono `DateTime<Utc>` (schedules, triggers, tables).

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

/// `t` as seconds since the epoch; a time before it counts as 0.
pub(crate) fn seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The time `secs` seconds after the epoch; negative or not-a-number counts as the epoch
/// itself, and one more than some 35,000 years out as that far.
pub(crate) fn time(secs: f64) -> SystemTime {
    if secs.is_nan() || secs <= 0.0 {
        return SystemTime::UNIX_EPOCH;
    }
    SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs.min(FAR))
}

/// `t` as seconds since the epoch, to the microsecond (what dsari's environment shows).
pub(crate) fn utc_seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

/// The UTC time `secs` seconds after the epoch, to the nanosecond; `None` when the clock
/// cannot hold it.
pub(crate) fn utc(secs: f64) -> Option<DateTime<Utc>> {
    if !secs.is_finite() {
        return None;
    }
    let whole = secs.floor();
    DateTime::from_timestamp(whole as i64, ((secs - whole) * 1e9) as u32)
}

/// 2^40 seconds, about 35,000 years: inside what every clock representation holds.
const FAR: f64 = (1u64 << 40) as f64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_clamps() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        assert_eq!(seconds(t), 1_700_000_000.25);
        assert_eq!(time(1_700_000_000.25), t);
        assert_eq!(
            seconds(SystemTime::UNIX_EPOCH - Duration::from_secs(5)),
            0.0
        );
        assert_eq!(time(-3.0), SystemTime::UNIX_EPOCH);
        assert_eq!(time(f64::NAN), SystemTime::UNIX_EPOCH);
        assert!(time(1e300) > SystemTime::now());
    }

    #[test]
    fn utc_round_trips_to_the_microsecond_and_refuses_what_it_cannot_hold() {
        let t = utc(1_700_000_000.25).expect("in range");
        assert_eq!(t.to_rfc3339(), "2023-11-14T22:13:20.250+00:00");
        assert_eq!(utc_seconds(t), 1_700_000_000.25);
        assert_eq!(utc(-1.5).map(|t| t.timestamp_millis()), Some(-1500));
        assert_eq!(utc(1e300), None);
        assert_eq!(utc(f64::INFINITY), None);
    }
}
