//! Seconds since the Unix epoch, as dsari stores and passes times, and back.
//!
//! Records, lock files, trigger files and run environments all carry times as a float of
//! seconds; this is the one place that converts, so that out-of-range values are handled
//! the same way everywhere (clamped, never a panic on what a file said).

use std::time::{Duration, SystemTime};

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
}
