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

/// The day-of-month field: plain days, and croniter's `L` (the month's last day) and
/// `NW` / `WN` (the weekday nearest to day N, within the month).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DayOfMonth {
    /// Days that match (bit d); every day when an item is `*`.
    pub(crate) mask: u64,
    /// The days croniter lists from items other than `*` (the `W` day included).
    values: u64,
    /// `L` is in the list.
    pub(crate) last: bool,
    /// `NW`: the field is only this (croniter allows no list with it).
    pub(crate) nearest: Option<u32>,
    /// An item is `*` (or the field is `?`): the field does not restrict.
    pub(crate) star: bool,
}

impl DayOfMonth {
    /// How many entries croniter's expanded list has (`L` and `*` are one each).
    pub(crate) fn entries(&self) -> u32 {
        self.values.count_ones() + u32::from(self.last) + u32::from(self.star)
    }
}

/// Parses the (hash-expanded, lowercased) day-of-month field.
pub(crate) fn parse_day_of_month(text: &str) -> Result<DayOfMonth, FieldError> {
    let kind = FieldKind::DayOfMonth;
    let (min, max) = kind.range();
    let items: Vec<&str> = text.split(',').collect();
    let mut field = DayOfMonth {
        mask: 0,
        values: 0,
        last: false,
        nearest: None,
        star: text == "?",
    };
    for item in &items {
        if let Some(day) = nearest_weekday_item(item) {
            if !(min..=max).contains(&day) {
                return Err(FieldError::new(
                    kind.name(),
                    format!("nearest weekday day {day} out of range {min}-{max}"),
                ));
            }
            if items.len() > 1 {
                return Err(FieldError::new(
                    kind.name(),
                    format!("\"{item}\" (nearest weekday) must be the field's only item"),
                ));
            }
            field.nearest = Some(day);
            field.mask |= 1 << day;
            field.values |= 1 << day;
            continue;
        }
        if *item == "l" {
            field.last = true;
            continue;
        }
        if item.starts_with('l') {
            return Err(FieldError::new(
                kind.name(),
                format!("\"{item}\": L (the last day) stands alone or ends a range (a-L)"),
            ));
        }
        if *item == "*" {
            field.star = true;
            field.mask |= parse_item(kind, item, min, max)?;
            continue;
        }
        // croniter: `a-L` (and `a-L/n`) ends at 31; `L` opens no range.
        let item = match item.split_once('/') {
            Some((body, step)) => match body.strip_suffix("-l") {
                Some(low) => format!("{low}-{max}/{step}"),
                None => (*item).to_owned(),
            },
            None => match item.strip_suffix("-l") {
                Some(low) => format!("{low}-{max}"),
                None => (*item).to_owned(),
            },
        };
        let days = parse_item(kind, &item, min, max)?;
        field.mask |= days;
        field.values |= days;
    }
    Ok(field)
}

/// `15w` or `w15`: the day, when `item` is a nearest-weekday item.
fn nearest_weekday_item(item: &str) -> Option<u32> {
    let digits = item.strip_suffix('w').or_else(|| item.strip_prefix('w'))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // A huge number is out of range like any other: say so.
    Some(digits.parse().unwrap_or(u32::MAX))
}

/// `L` as an occurrence: the weekday's last in the month.
pub(crate) const NTH_LAST: u8 = 1 << 6;

/// The day-of-week field: plain weekdays, and croniter's `D#N` (the Nth such weekday of
/// the month, N 1-5, D a weekday or a range of weekday names) and `LD` (the last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DayOfWeek {
    /// Weekdays that match without occurrences (bit d, Sunday 0); all when an item
    /// is `*`.
    pub(crate) mask: u64,
    /// The weekdays croniter lists from items other than `*`, occurrences included.
    values: u64,
    /// Per weekday: bit n for `#n`, [`NTH_LAST`] for `L`. All zero without such items.
    pub(crate) nth: [u8; 7],
    /// An item is `*` (or the field is `?`): the field does not restrict.
    pub(crate) star: bool,
}

impl DayOfWeek {
    /// Whether any `#` or `L` item is present.
    pub(crate) fn has_nth(&self) -> bool {
        self.nth.iter().any(|n| *n != 0)
    }

    /// How many entries croniter's expanded list has (`*` is one).
    pub(crate) fn entries(&self) -> u32 {
        self.values.count_ones() + u32::from(self.star)
    }
}

/// Parses the (hash-expanded, lowercased) day-of-week field.
pub(crate) fn parse_day_of_week(text: &str) -> Result<DayOfWeek, FieldError> {
    let kind = FieldKind::DayOfWeek;
    let (min, max) = kind.range();
    let mut field = DayOfWeek {
        mask: 0,
        values: 0,
        nth: [0; 7],
        star: text == "?",
    };
    let mut plain = 0u64;
    for item in text.split(',') {
        if item.len() > 1 && item.ends_with('l') && !item.contains('#') {
            return Err(FieldError::new(
                kind.name(),
                format!(
                    "invalid value \"{item}\": the last such weekday of the month is written L and a number (L5: the last Friday)"
                ),
            ));
        }
        if let Some((days, nth)) = occurrence_item(item)? {
            for day in (0..7).filter(|d| days & (1 << d) != 0) {
                field.nth[day as usize] |= nth;
            }
            field.mask |= days;
            field.values |= days;
            continue;
        }
        let days = parse_item(kind, item, min, max)?;
        if item == "*" {
            field.star = true;
        } else {
            plain |= days;
            field.values |= days;
        }
        field.mask |= days;
    }
    if field.has_nth() {
        let nth_days = (0..7).fold(
            0u64,
            |m, d| {
                if field.nth[d] != 0 { m | (1 << d) } else { m }
            },
        );
        // croniter refuses plain weekdays beside `#`/`L` ones, unless its list of the
        // field has all seven entries or collapsed to `*` (seven entries and a `*` in
        // the day-of-month field).
        let entries = field.entries();
        if plain & !nth_days != 0 && entries != 7 {
            return Err(FieldError::new(
                kind.name(),
                "plain weekdays cannot be mixed with \"#\" or \"L\" ones",
            ));
        }
    }
    Ok(field)
}

/// `D#N` (D a number or weekday name, or a range of weekday names; N 1-5) or `LD`:
/// the weekdays and the occurrence bit, when `item` is one.
fn occurrence_item(item: &str) -> Result<Option<(u64, u8)>, FieldError> {
    let kind = FieldKind::DayOfWeek;
    let (min, max) = kind.range();
    if let Some(day) = item.strip_prefix('l') {
        if !day.is_empty() && day.bytes().all(|b| b.is_ascii_digit()) {
            let day = kind.value(day)?;
            return Ok(Some((1 << day, NTH_LAST)));
        }
        return Ok(None);
    }
    let Some((days, n)) = item.split_once('#') else {
        return Ok(None);
    };
    let bad = || FieldError::new(kind.name(), format!("invalid value \"{item}\""));
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u32 = n.parse().unwrap_or(u32::MAX);
    if !(1..=5).contains(&n) {
        return Err(FieldError::new(
            kind.name(),
            format!("occurrence {n} in \"{item}\" out of range 1-5"),
        ));
    }
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let names = |s: &str| s.len() == 3 && s.bytes().all(|b| b.is_ascii_lowercase());
    let mask = match days.split_once('-') {
        // A range only of weekday names (croniter's pattern takes no numbers there).
        Some((a, b)) if names(a) && names(b) => parse_item(kind, days, min, max)?,
        Some(_) => return Err(bad()),
        None if word(days) => 1 << kind.value(days)?,
        None => return Err(bad()),
    };
    Ok(Some((mask, 1 << n)))
}
