//! The error type returned when a schedule expression cannot be parsed.

use std::fmt;

/// A schedule expression was rejected.
///
/// Structured (rather than a bare string) so callers such as a `validate`
/// command can point at the offending field, e.g. field `day of month`,
/// reason `value 32 out of range 1-31`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError {
    /// The expression as given by the user, kept for the message.
    pub(crate) expr: String,
    /// Which part is wrong: a cron field name ("second", "minute", "hour",
    /// "day of month", "month", "day of week"), an RRULE part ("COUNT",
    /// "BYHOUR", ...), or "schedule"/"RRULE" when the whole thing is wrong.
    pub(crate) field: String,
    /// Why it is wrong, lowercase, without a final period.
    pub(crate) reason: String,
}

impl ScheduleError {
    /// Builds an error; `field` and `reason` follow the conventions above.
    pub(crate) fn new(expr: &str, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            expr: expr.to_owned(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{:?}` quotes the expression and escapes newlines of multi-line
        // RRULE sets, keeping the message on one line.
        write!(
            f,
            "schedule {:?}: {}: {}",
            self.expr, self.field, self.reason
        )
    }
}

impl std::error::Error for ScheduleError {}

/// An error local to one field, before the whole expression is known.
///
/// The parsers below work field by field; `Schedule::parse` attaches the
/// expression text to turn this into a [`ScheduleError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub(crate) field: String,
    pub(crate) reason: String,
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Attaches the expression text.
    pub(crate) fn into_schedule_error(self, expr: &str) -> ScheduleError {
        ScheduleError::new(expr, self.field, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_expression_field_and_reason() {
        let err = ScheduleError::new("0 0 32 * *", "day of month", "value 32 out of range 1-31");
        assert_eq!(
            err.to_string(),
            "schedule \"0 0 32 * *\": day of month: value 32 out of range 1-31"
        );
    }

    #[test]
    fn display_escapes_newlines() {
        let err = ScheduleError::new("RRULE:FREQ=DAILY\nCOUNT", "RRULE", "bad");
        assert_eq!(
            err.to_string(),
            "schedule \"RRULE:FREQ=DAILY\\nCOUNT\": RRULE: bad"
        );
    }
}
