//! One cron field: its kind, allowed values and item syntax.
//!
//! Follows croniter's expansion rules (lists, `a-b`, `a-b/n`, `*/n`, `a/n`,
//! month and weekday names, backwards ranges and their quirks) so that an
//! expression selects the same values as under dsari.

use super::error::FieldError;

/// The six cron fields, in croniter's internal order (seconds last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldKind {
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
    Second,
}

const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DOW_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl FieldKind {
    pub(crate) const ALL: [Self; 6] = [
        Self::Minute,
        Self::Hour,
        Self::DayOfMonth,
        Self::Month,
        Self::DayOfWeek,
        Self::Second,
    ];

    /// User-facing field name used in error messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::DayOfMonth => "day of month",
            Self::Month => "month",
            Self::DayOfWeek => "day of week",
            Self::Second => "second",
        }
    }

    /// Allowed values (croniter's `RANGES`; day of week is 0-6 with 7
    /// accepted as an alias of Sunday).
    pub(crate) fn range(self) -> (u32, u32) {
        match self {
            Self::Minute | Self::Second => (0, 59),
            Self::Hour => (0, 23),
            Self::DayOfMonth => (1, 31),
            Self::Month => (1, 12),
            Self::DayOfWeek => (0, 6),
        }
    }

    /// Field index in croniter, which is also the hash shift.
    pub(crate) fn position(self) -> u32 {
        match self {
            Self::Minute => 0,
            Self::Hour => 1,
            Self::DayOfMonth => 2,
            Self::Month => 3,
            Self::DayOfWeek => 4,
            Self::Second => 5,
        }
    }

    /// Parses one value: a number, or a month/weekday name (any case).
    fn value(self, text: &str) -> Result<u32, FieldError> {
        let (min, max) = self.range();
        let names: &[&str] = match self {
            Self::Month => &MONTH_NAMES,
            Self::DayOfWeek => &DOW_NAMES,
            _ => &[],
        };
        let lower = text.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            // Month names are 1-based, weekday names 0-based.
            let i = u32::try_from(i).unwrap_or(0);
            return Ok(if self == Self::Month { i + 1 } else { i });
        }
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FieldError::new(
                self.name(),
                format!("invalid value \"{text}\""),
            ));
        }
        let n: u32 = text
            .parse()
            .map_err(|_| FieldError::new(self.name(), format!("value {text} is too large")))?;
        // Sunday may be written 7, as in Vixie cron and dsari's docs.
        if self == Self::DayOfWeek && n == 7 {
            return Ok(0);
        }
        if n < min || n > max {
            return Err(FieldError::new(
                self.name(),
                format!("value {n} out of range {min}-{max}"),
            ));
        }
        Ok(n)
    }
}

/// Parses one (already hash-expanded, lowercased) field into a bit mask.
pub(crate) fn parse_field(kind: FieldKind, text: &str) -> Result<u64, FieldError> {
    let (min, max) = kind.range();
    if text == "?" && !matches!(kind, FieldKind::DayOfMonth | FieldKind::DayOfWeek) {
        return Err(FieldError::new(
            kind.name(),
            "\"?\" is only allowed in the day fields",
        ));
    }
    let mut mask = 0u64;
    for item in text.split(',') {
        mask |= parse_item(kind, item, min, max)?;
    }
    Ok(mask)
}

/// One list item: `*`, `?`, `v`, `a-b`, `a-b/n`, `*/n` or `a/n`.
fn parse_item(kind: FieldKind, item: &str, min: u32, max: u32) -> Result<u64, FieldError> {
    let (body, step) = match item.split_once('/') {
        Some((body, step_text)) => {
            let step: u32 = step_text.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                FieldError::new(kind.name(), format!("invalid step \"{step_text}\""))
            })?;
            (body, Some(step))
        }
        None => (item, None),
    };
    let (low, high) = match body {
        "*" | "?" => (min, max),
        _ => match body.split_once('-') {
            Some((a, b)) => (kind.value(a)?, kind.value(b)?),
            // croniter: "a/n" means "a-max/n"; a plain value is itself.
            None => {
                let v = kind.value(body)?;
                (v, if step.is_some() { max } else { v })
            }
        },
    };
    let is_range = body.contains('-') || step.is_some() || body == "*" || body == "?";
    let step = step.unwrap_or(1);
    let values: Vec<u32> = if !is_range {
        vec![low]
    } else if low < high {
        (low..=high).step_by(step as usize).collect()
    } else if low == high {
        // croniter: "Jan-Jan" (or "5-5") means the whole cycle.
        (min..=max).step_by(step as usize).collect()
    } else {
        wrapped_range(low, high, step, min, max)
    };
    Ok(values.into_iter().fold(0u64, |m, v| m | (1 << v)))
}

/// croniter's backwards range (`22-2`, `fri-mon`, `apr-jan/3`): from `low`
/// to the field maximum, then from the minimum to `high`, skipping at the
/// wrap as croniter does (its skip count is reproduced as is, so `22-2/3`
/// gives 22 and 2, exactly like croniter).
fn wrapped_range(low: u32, high: u32, step: u32, min: u32, max: u32) -> Vec<u32> {
    let mut values: Vec<u32> = (low..=max).step_by(step as usize).collect();
    let mut skip = 0;
    if let Some(&last) = values.last() {
        let size = max - min + 1;
        let already_skipped = max - last;
        let position = last - min;
        if position + step > size && already_skipped < step {
            skip = step - already_skipped;
        }
    }
    values.extend((min + skip..=high).step_by(step as usize));
    values
}
