//! A point in time as trigger files and `runner trigger --at` give it: epoch seconds,
//! RFC 3339, or an ISO 8601 time without offset read in a named zone.
//!
//! The trigger-file format and the command line read times the same way; this is the
//! one reader, low in the house, so that neither borrows it from the other.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

/// Reads `schedule_time`: epoch seconds, RFC 3339, or an ISO 8601 time without offset
/// in `zone` (default UTC, as the value most scripts write).
pub(crate) fn parse(
    value: &serde_json::Value,
    zone: Option<&str>,
) -> Result<DateTime<Utc>, String> {
    if let Some(epoch) = value.as_f64() {
        return crate::epoch::utc(epoch).ok_or_else(|| format!("{epoch} is out of range"));
    }
    let Some(text) = value.as_str() else {
        return Err(format!(
            "schedule_time {value} is neither a number nor a string"
        ));
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .ok_or_else(|| format!("schedule_time {text:?} is not an ISO 8601 time"))?;
    match zone {
        None => Ok(Utc.from_utc_datetime(&naive)),
        Some(zone) => {
            let tz: chrono_tz::Tz = zone
                .parse()
                .map_err(|_| format!("schedule_timezone {zone:?} is not an IANA zone"))?;
            tz.from_local_datetime(&naive)
                .earliest()
                .map(|t| t.with_timezone(&Utc))
                .ok_or_else(|| format!("{text} does not exist in {zone}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_epoch_rfc3339_and_naive() {
        let t = parse(&serde_json::json!(1473546507), None).expect("epoch");
        assert_eq!(t.timestamp(), 1473546507);
        let t = parse(&serde_json::json!("2016-09-10T14:28:27Z"), None).expect("rfc3339");
        assert_eq!(t.timestamp(), 1473517707);
        let t = parse(&serde_json::json!("2016-09-10T14:28:27"), None).expect("naive");
        assert_eq!(t.timestamp(), 1473517707);
        let t = parse(
            &serde_json::json!("2016-09-10T14:28:27"),
            Some("America/New_York"),
        )
        .expect("zoned");
        assert_eq!(t.timestamp(), 1473517707 + 4 * 3600);
        assert!(parse(&serde_json::json!("yesterday"), None).is_err());
        assert!(parse(&serde_json::json!([1]), None).is_err());
    }
}
