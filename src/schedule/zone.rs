//! Time zone selection and wall-clock → instant resolution.
//!
//! Schedules are evaluated on wall-clock time in the job's zone, then each
//! wall time is mapped to exactly one instant:
//!
//! * a wall time that occurs once maps to that instant;
//! * a wall time that occurs twice (DST fall-back) maps to the *first*
//!   occurrence, so a daily 01:30 job runs once on the fall-back day;
//! * a wall time that does not exist (DST spring-forward gap) maps to the
//!   first instant after the gap (03:00 in America/New_York), so a daily
//!   02:30 job still runs once that day, as Vixie cron/cronie do.
//!
//! This mapping never goes backwards as wall time advances, which is what
//! lets `Schedule::next_after` scan wall times in order and stop at the
//! first instant after its argument without missing a run.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// The zone a schedule is evaluated in: the configured one, else the
/// machine's.
///
/// The machine's zone is `$TZ` when it names an IANA zone (so `TZ=...`
/// works as for cron), else the system setting via `iana-time-zone`, else
/// UTC. Using a real IANA zone (rather than `chrono::Local`) keeps one DST
/// code path for both cases.
pub(crate) fn resolve(tz: Option<Tz>) -> Tz {
    if let Some(tz) = tz {
        return tz;
    }
    let from_env = std::env::var("TZ")
        .ok()
        .and_then(|v| v.trim_start_matches(':').parse::<Tz>().ok());
    from_env
        .or_else(|| {
            iana_time_zone::get_timezone()
                .ok()
                .and_then(|name| name.parse::<Tz>().ok())
        })
        .unwrap_or(Tz::UTC)
}

/// The single instant a wall-clock time stands for (see the module docs).
pub(crate) fn instant_of(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
        LocalResult::None => gap_end(tz, wall),
    }
}

/// The first instant after the DST gap containing `wall`.
///
/// chrono-tz does not expose transitions, so step forward a minute at a
/// time to the first wall time that exists, then back by seconds in case
/// the transition is not minute-aligned (historic LMT offsets). Gaps are at
/// most a day long (Pacific/Apia skipped 2011-12-30), hence the bound.
fn gap_end(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    let mut probe = wall.with_second(0)?.with_nanosecond(0)?;
    for _ in 0..(2 * 24 * 60) {
        probe = probe.checked_add_signed(Duration::minutes(1))?;
        if let Some(mut found) = earliest(tz, probe) {
            for _ in 0..60 {
                let earlier = probe - Duration::seconds(1);
                match earliest(tz, earlier) {
                    Some(t) if earlier > wall => {
                        probe = earlier;
                        found = t;
                    }
                    _ => break,
                }
            }
            return Some(found.with_timezone(&Utc));
        }
    }
    None
}

fn earliest(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Tz>> {
    tz.from_local_datetime(&wall).earliest()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn wall(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|x| x.and_hms_opt(h, mi, 0))
            .unwrap_or(NaiveDateTime::MIN)
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Option<DateTime<Utc>> {
        Some(wall(y, mo, d, h, mi).and_utc())
    }

    #[test]
    fn configured_zone_wins() {
        assert_eq!(resolve(Some(Tz::Asia__Tokyo)), Tz::Asia__Tokyo);
    }

    #[test]
    fn gap_maps_to_end_of_gap() {
        let ny = Tz::America__New_York;
        // 02:30 does not exist on 2026-03-08; 03:00 EDT is 07:00Z.
        assert_eq!(
            instant_of(ny, wall(2026, 3, 8, 2, 30)),
            utc(2026, 3, 8, 7, 0)
        );
        assert_eq!(
            instant_of(ny, wall(2026, 3, 8, 3, 0)),
            utc(2026, 3, 8, 7, 0)
        );
    }

    #[test]
    fn ambiguous_maps_to_first_occurrence() {
        let ny = Tz::America__New_York;
        // 01:30 happens at 05:30Z (EDT) and 06:30Z (EST) on 2026-11-01.
        assert_eq!(
            instant_of(ny, wall(2026, 11, 1, 1, 30)),
            utc(2026, 11, 1, 5, 30)
        );
    }

    #[test]
    fn whole_day_gap() {
        // Samoa skipped 2011-12-30 entirely.
        let apia = Tz::Pacific__Apia;
        assert_eq!(
            instant_of(apia, wall(2011, 12, 30, 12, 0)),
            utc(2011, 12, 30, 10, 0)
        );
    }
}
