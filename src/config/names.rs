//! The rules for job names, in one place, with the difference between them explicit.
//!
//! A job name becomes a directory or file name under the state or data directory, so both
//! kinds of job keep to what a file name can hold. They differ on purpose (the contract
//! allows it):
//!
//! - a **chain's** job name (`[runner] name`, or the task directory's base name) takes any
//!   text that makes one file name: not empty, no `/`, no leading `.`, no control
//!   character, and short enough for `NAME.lock`. Existing task directories are named
//!   freely, so nothing narrower would do.
//! - a **daemon's** job, job group and concurrency group names follow dsari's
//!   `is_valid_name` (dsari/config.py): 1 to 64 of `A-Za-z0-9`, space and `-_+.:@`, not `.`
//!   or `..`, so that every dsari configuration loads and nothing else does.

/// The longest file name most file systems take (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// The longest chain job name: its lock file `NAME.lock` must fit in one file name.
pub(crate) const MAX_CHAIN_JOB_BYTES: usize = NAME_MAX - ".lock".len();

/// The longest daemon job or group name (dsari's limit).
const MAX_DAEMON_NAME_CHARS: usize = 64;

/// Checks a chain's job name for what makes it one file name; the length is
/// [`check_chain_job_length`]'s, asked once the name is final.
pub(crate) fn check_chain_job(name: &str) -> Result<(), String> {
    // A control character (a newline from a continuation line, a tab) would make a
    // directory name no listing shows straight, and split `runs list` rows.
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.chars().any(char::is_control);
    if valid {
        return Ok(());
    }
    Err(format!(
        "{name:?} cannot be a job name: it must not be empty, start with \".\", or contain \"/\" or a control character"
    ))
}

/// A chain job name that does not fit its lock file's name would leave the run without
/// its one-run-at-a-time guard.
pub(crate) fn check_chain_job_length(name: &str) -> Result<(), String> {
    if name.len() <= MAX_CHAIN_JOB_BYTES {
        return Ok(());
    }
    Err(format!(
        "the job name is {} bytes long; at most {MAX_CHAIN_JOB_BYTES} fit in its lock file's name",
        name.len()
    ))
}

/// Checks a daemon job, job group or concurrency group name with dsari's rule.
pub(crate) fn check_daemon(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name == "." || name == ".." {
        return Err("\".\" and \"..\" are not names");
    }
    if name.len() > MAX_DAEMON_NAME_CHARS {
        return Err("longer than 64 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " -_+.:@".contains(c))
    {
        return Err("only letters, digits, space and - _ + . : @ are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_names_follow_dsari() {
        for good in [
            "a",
            "sample-job",
            "a b",
            "x_y+z.w:1@host",
            "...",
            &"a".repeat(64),
        ] {
            assert_eq!(check_daemon(good), Ok(()), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a\nb", "é", "a*", &"a".repeat(65)] {
            assert!(check_daemon(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn chain_names_are_any_one_file_name() {
        for good in ["nightly", "é-job", "a*b", "x...", &"a".repeat(250)] {
            assert_eq!(check_chain_job(good), Ok(()), "{good}");
            assert_eq!(check_chain_job_length(good), Ok(()), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "a\nb", "a\tb"] {
            assert!(check_chain_job(bad).is_err(), "{bad:?}");
        }
        assert!(check_chain_job_length(&"a".repeat(251)).is_err());
    }

    #[test]
    fn the_two_rules_differ_where_the_contract_lets_them() {
        // Wider for chains: task directories are named freely.
        for name in ["é-job", "a*b", &"a".repeat(65)] {
            assert!(check_chain_job(name).is_ok() && check_daemon(name).is_err());
        }
        // Wider for the daemon: dsari takes a leading dot.
        assert!(check_daemon(".x").is_ok() && check_chain_job(".x").is_err());
    }
}
