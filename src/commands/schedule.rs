//! `runner schedule EXPR`: the next times of a schedule, as the daemon would compute them.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};

use crate::cli::ScheduleArgs;
use crate::error::{Error, exit_codes};
use crate::schedule::{self, Schedule, ScheduleError};

/// Prints the next `--count` times after `--from`, one RFC 3339 time per line.
pub(crate) fn schedule(args: &ScheduleArgs) -> Result<u8, Error> {
    let tz = match &args.tz {
        Some(zone) => Some(zone.parse::<chrono_tz::Tz>().map_err(|_| {
            Error::Schedule(ScheduleError::new(
                &args.expr,
                "time zone",
                format!("{zone:?} is not an IANA time zone"),
            ))
        })?),
        None => None,
    };
    let schedule = Schedule::parse(&args.expr, &args.name, tz)?;
    let zone = schedule.time_zone();
    let mut after: DateTime<Utc> = match &args.from {
        Some(text) => parse_from(text, zone).map_err(|e| Error::Usage(format!("--from: {e}")))?,
        None => Utc::now(),
    };
    let mut out = String::new();
    for _ in 0..args.count {
        let Some(next) = schedule.next_after(after) else {
            break;
        };
        let line = format_time(&zone.from_utc_datetime(&next.naive_utc()));
        out.push_str(&line);
        out.push('\n');
        after = next;
    }
    super::print::write_stdout(out.as_bytes())?;
    Ok(exit_codes::OK)
}

/// Epoch seconds, RFC 3339 with an offset, or a time without one, read as a wall time
/// of the schedule's zone (the zone rule decides a time in a gap or a repeated hour).
fn parse_from(text: &str, zone: chrono_tz::Tz) -> Result<DateTime<Utc>, String> {
    if let Ok(epoch) = text.parse::<f64>() {
        return crate::epoch::utc(epoch).ok_or_else(|| format!("{epoch} is out of range"));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let wall = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .ok_or_else(|| format!("{text:?} is neither epoch seconds nor an RFC 3339 time"))?;
    schedule::instant_of(zone, wall).ok_or_else(|| format!("{text} is out of range"))
}

fn format_time<Tz: TimeZone>(t: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}
