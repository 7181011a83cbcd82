//! Durations as admins write them: a bare number of seconds (`90`, Mozilla's form) or a
//! humantime string (`30s`, `2m 30s`, `1h`).

use std::time::Duration;

/// The longest duration accepted anywhere: ten years. Longer values are certainly
/// mistakes, and clock arithmetic with them would overflow.
const MAX: Duration = Duration::from_secs(10 * 366 * 86_400);

/// Rejects durations longer than [`MAX`], with a reason for the error message.
pub(crate) fn check_range(d: Duration) -> Result<Duration, String> {
    if d > MAX {
        return Err(format!("{} is longer than ten years", display(d)));
    }
    Ok(d)
}

/// Parses `text` as whole seconds or a humantime duration.
///
/// Returns a reason fit to follow the key's name in an error message.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".to_owned());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("{text:?} is too large"))
            .and_then(check_range);
    }
    humantime::parse_duration(text).map_err(|e| {
        format!("{text:?} is not a duration ({e}); write seconds (\"90\") or a unit (\"30s\", \"2m 30s\")")
    })
    .and_then(check_range)
}

/// Formats a duration the way it would be written in the INI file.
pub(crate) fn display(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_humantime() {
        assert_eq!(parse("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse(" 0 "), Ok(Duration::ZERO));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("2m 30s"), Ok(Duration::from_secs(150)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        assert!(parse("").is_err());
        assert!(
            parse("-1")
                .expect_err("negative")
                .contains("not a duration")
        );
        assert!(parse("ten").is_err());
        assert!(parse("99999999999999999999999").is_err());
        assert!(
            parse("18446744073709551615")
                .expect_err("huge")
                .contains("ten years")
        );
        assert!(parse("20years").is_err());
        assert!(parse("9years").is_ok());
    }

    #[test]
    fn display_round_trips() {
        for text in ["0s", "1s", "2m 30s", "10m", "250ms"] {
            let d = parse(text).expect("valid");
            assert_eq!(parse(&display(d)), Ok(d));
        }
    }
}
