//! Events (section 8 of the contract): sessions, names and data as users give them, and
//! what a chain needs to wait for them.
//!
//! The store keeps the events (`store/events.rs`); this module decides what counts as a
//! valid event, which session a command or chain is in, and wakes waiting chains
//! ([`watch`]). The chain asks [`Events`] which of the names it waits for were fired.

mod source;
mod watch;

pub(crate) use source::Events;
pub(crate) use watch::Watcher;

/// Why an event given on the command line was refused (exit 78).
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// `--data` is not a JSON object.
    #[error("--data {given:?} is not a JSON object: {reason}")]
    Data {
        /// What was given.
        given: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The event name cannot be used.
    #[error("event name {name:?} {reason}")]
    Name {
        /// What was given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Checks an event name: what `after`/`unless` lists can name (no comma, no spaces at
/// the ends, not empty, no control characters).
pub(crate) fn validate_name(name: &str) -> Result<(), EventError> {
    let reason = if name.is_empty() {
        "is empty"
    } else if name.contains(',') {
        "contains a comma (after and unless are comma-separated lists)"
    } else if name.trim() != name {
        "starts or ends with white space"
    } else if name.chars().any(char::is_control) {
        "contains a control character"
    } else {
        return Ok(());
    };
    Err(EventError::Name {
        name: name.to_owned(),
        reason,
    })
}

/// Parses `--data`: a JSON object, or the reason it is not one.
pub(crate) fn parse_data(text: &str) -> Result<serde_json::Value, EventError> {
    let refuse = |reason: String| EventError::Data {
        given: text.to_owned(),
        reason,
    };
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value @ serde_json::Value::Object(_)) => Ok(value),
        Ok(other) => Err(refuse(format!("it is {}", kind_of(&other)))),
        Err(e) => Err(refuse(e.to_string())),
    }
}

fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The session of a command or chain: the `--session` flag, else a session set in the
/// configuration's `[runner] session` (`boot` meaning the boot id), else
/// `RUNNER_SESSION`, else the current boot id. A task calling `runner fire` inherits
/// `RUNNER_SESSION` from its chain, so its events land in the chain's session.
pub(crate) fn resolve_session(flag: Option<&str>, configured: Option<&str>) -> String {
    let chosen = flag
        .map(str::to_owned)
        .or_else(|| configured.map(str::to_owned));
    let chosen = chosen.or_else(|| {
        std::env::var("RUNNER_SESSION")
            .ok()
            .filter(|s| !s.is_empty())
    });
    match chosen.as_deref() {
        None | Some("boot") => crate::state::boot_id(),
        Some(other) => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_must_be_an_object() {
        assert!(parse_data(r#"{"a": 1}"#).is_ok());
        let e = parse_data("[1]").expect_err("array");
        assert!(e.to_string().contains("an array"), "{e}");
        let e = parse_data("{").expect_err("bad json");
        assert!(e.to_string().contains("not a JSON object"), "{e}");
        assert!(parse_data("3").is_err());
    }

    #[test]
    fn names_that_lists_cannot_hold_are_refused() {
        assert!(validate_name("disk-up").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a,b").is_err());
        assert!(validate_name(" a").is_err());
        assert!(validate_name("a\nb").is_err());
    }
}
