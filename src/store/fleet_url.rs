//! A PostgreSQL connection string (contract section 13): a `postgres[ql]://` URL or a
//! libpq `key=value` DSN, with bounded waits added and the password kept out of sight.
//!
//! The string itself is only ever handed to the `postgres` crate and, through the
//! environment (never argv), to the chains a daemon starts. Everything people see goes
//! through [`FleetUrl::describe`], which has no password in it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Whether this process has warned that the fleet database is unreachable.
static WARNED_AWAY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Says that the fleet database cannot be used: a warning the first time in this
/// process (records, events and their wake-ups all depend on it, and one warning is
/// what the contract promises), a debug line after that.
pub(crate) fn warn_away(message: &str) {
    if WARNED_AWAY.swap(true, std::sync::atomic::Ordering::Relaxed) {
        log::debug!("{message}");
    } else {
        log::warn!("{message}");
    }
}

/// How long connecting may take before the store counts as unreachable.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one statement may take: a chain must never stall on a slow network.
pub(crate) const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL database to record into.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct FleetUrl {
    text: String,
}

impl FleetUrl {
    /// Whether `text` is a PostgreSQL connection string rather than an SQLite file.
    pub(crate) fn is_postgres(text: &str) -> bool {
        let lower = text.trim().to_ascii_lowercase();
        lower.starts_with("postgres://")
            || lower.starts_with("postgresql://")
            || (text.contains('=') && !text.contains('/') && !lower.starts_with("sqlite:"))
            || (text.contains('=') && text.split_whitespace().any(|w| w.starts_with("host=")))
    }

    /// Parses a URL or DSN; the error has no password in it.
    pub(crate) fn parse(text: &str) -> Result<FleetUrl, String> {
        let text = text.trim();
        postgres::Config::from_str(text).map_err(|e| {
            // The parser's message names a bad key or a bad URL part, never the value.
            format!("not a PostgreSQL connection string: {e}")
        })?;
        Ok(FleetUrl {
            text: text.to_owned(),
        })
    }

    /// The string as given, password included: only for the client library and for the
    /// environment of child processes.
    pub(crate) fn secret_text(&self) -> &str {
        &self.text
    }

    /// The client configuration, with a connect timeout and a statement timeout when the
    /// string sets none.
    pub(crate) fn config(&self) -> postgres::Config {
        let mut config =
            postgres::Config::from_str(&self.text).expect("parsed when the FleetUrl was made");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let options = config.get_options().unwrap_or("").to_owned();
        if !options.contains("statement_timeout") {
            // synchronous_commit=off: a commit does not wait for the server's WAL flush,
            // as the SQLite store runs WAL with synchronous=NORMAL; a server crash can
            // lose the last fraction of a second of records, never corrupt them, and a
            // chain's state changes stop costing a disk flush each.
            let extra = format!(
                "-c statement_timeout={} -c lock_timeout={} -c client_min_messages=warning \
                 -c synchronous_commit=off",
                STATEMENT_TIMEOUT.as_millis(),
                STATEMENT_TIMEOUT.as_millis()
            );
            config.options(format!("{options} {extra}").trim());
        }
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("runner");
        }
        config
    }

    /// Who and where, for messages: `postgresql://USER@HOST:PORT/DBNAME`, never the
    /// password.
    pub(crate) fn describe(&self) -> String {
        let Ok(config) = postgres::Config::from_str(&self.text) else {
            return "postgresql://(invalid)".to_owned();
        };
        let host = config
            .get_hosts()
            .first()
            .map(|h| match h {
                postgres::config::Host::Tcp(name) => name.clone(),
                postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".to_owned());
        let port = config
            .get_ports()
            .first()
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        let user = config
            .get_user()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let db = config.get_dbname().unwrap_or("");
        format!("postgresql://{user}{host}{port}/{db}")
    }
}

impl fmt::Debug for FleetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl fmt::Display for FleetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_dsns_are_postgres_and_files_are_not() {
        for pg in [
            "postgresql://u:p@h/d",
            "postgres://h/d",
            "host=db dbname=dsari",
            "host=/tmp/sock dbname=x",
        ] {
            assert!(FleetUrl::is_postgres(pg), "{pg}");
        }
        for file in [
            "/srv/db.sqlite3",
            "sqlite:/srv/a=b.db",
            "rel.db",
            "a=b/c.db",
        ] {
            assert!(!FleetUrl::is_postgres(file), "{file}");
        }
    }

    #[test]
    fn the_password_is_never_shown() {
        for text in [
            "postgresql://alice:s3cret@db.example:5433/fleet",
            "host=db.example port=5433 user=alice password=s3cret dbname=fleet",
        ] {
            let url = FleetUrl::parse(text).expect(text);
            let shown = format!("{url} {url:?} {}", url.describe());
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("alice@db.example:5433/fleet"), "{shown}");
        }
        let err = FleetUrl::parse("host=x password=s3cret bogus=1").expect_err("bad key");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn bounded_waits_are_added() {
        let config = FleetUrl::parse("host=h dbname=d").expect("dsn").config();
        assert_eq!(config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert!(
            config
                .get_options()
                .is_some_and(|o| o.contains("statement_timeout=10000"))
        );
    }
}
