//! `runner schedule EXPR`: the next times of a schedule, as the daemon would compute them.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

use crate::cli::ScheduleArgs;
use crate::error::{Error, exit_codes};
use crate::schedule::{Schedule, ScheduleError};

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
    let mut after: DateTime<Utc> = match &args.from {
        Some(text) => crate::triggers::parse_time(&json_time(text), None)
            .map_err(|e| Error::Usage(format!("--from: {e}")))?,
        None => Utc::now(),
    };
    let mut out = String::new();
    for _ in 0..args.count {
        let Some(next) = schedule.next_after(after) else {
            break;
        };
        let zone = schedule.time_zone();
        let line = format_time(&zone.from_utc_datetime(&next.naive_utc()));
        out.push_str(&line);
        out.push('\n');
        after = next;
    }
    super::print::write_stdout(out.as_bytes())?;
    Ok(exit_codes::OK)
}

/// A number is epoch seconds; anything else is a time string.
fn json_time(text: &str) -> serde_json::Value {
    match text.parse::<f64>() {
        Ok(n) => serde_json::json!(n),
        Err(_) => serde_json::json!(text),
    }
}

fn format_time<Tz: TimeZone>(t: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}
