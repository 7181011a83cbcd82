//! Which store a command uses (contract sections 7 and 13): `--database`, a daemon's
//! `database`, or the state directory's file, which is dsari's `dsari.sqlite3` when
//! the state directory is one dsari made; and, for a fleet, the PostgreSQL database
//! beside it.
//!
//! Every command goes through [`Location`], so a daemon, `runs list` and `jobs list` given
//! the same configuration always read and write the same file. This module only decides
//! where; opening is `sqlite.rs`.

use std::path::{Path, PathBuf};

use super::fleet_url::FleetUrl;
use super::sqlite::StoreError;
use crate::config::daemon::DaemonConfig;

/// runner's own file in a state directory.
pub(crate) const RUNNER_FILE: &str = "runner.sqlite3";

/// dsari's default file in its data directory.
pub(crate) const DSARI_FILE: &str = "dsari.sqlite3";

/// The daemon configuration file names that are dsari's own.
const DSARI_CONFIG_FILES: &[&str] = &["dsari.yaml", "dsari.json"];

/// Where the store is: an SQLite file, and a fleet's PostgreSQL database when one is
/// named. With one, PostgreSQL is the store every command reads and writes; the file is
/// where a chain keeps its records while PostgreSQL cannot be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Location {
    /// The database file.
    pub(crate) file: PathBuf,
    /// The fleet's database, if any.
    pub(crate) fleet: Option<FleetUrl>,
}

impl Location {
    /// The store of a state directory: `runner.sqlite3`, unless only dsari's
    /// `dsari.sqlite3` is there, so that a dsari data directory keeps its history.
    pub(crate) fn in_state_dir(state_dir: &Path) -> Location {
        Location::in_data_dir(state_dir, false)
    }

    /// The store of a data directory; `prefer_dsari` (a dsari configuration without a
    /// `database` key) always takes `dsari.sqlite3`, which is where dsari's own tools look.
    fn in_data_dir(dir: &Path, prefer_dsari: bool) -> Location {
        let runner = dir.join(RUNNER_FILE);
        let dsari = dir.join(DSARI_FILE);
        let file = if prefer_dsari || (!runner.exists() && dsari.exists()) {
            dsari
        } else {
            runner
        };
        Location { file, fleet: None }
    }

    /// The store a command uses: `--database` (or `RUNNER_DATABASE`) first, then the
    /// daemon configuration's `database.file`, then the data directory's file.
    pub(crate) fn resolve(
        flag: Option<&str>,
        daemon: Option<&DaemonConfig>,
        state_dir: &Path,
    ) -> Result<Location, StoreError> {
        if let Some(url) = flag {
            if FleetUrl::is_postgres(url) {
                return Location::fleet(url, state_dir);
            }
            return Location::from_url(url);
        }
        if let Some(config) = daemon {
            if let Some(dsn) = &config.database.dsn {
                return Location::fleet(dsn, state_dir);
            }
            if let Some(file) = &config.database.file {
                return Ok(Location {
                    file: file.clone(),
                    fleet: None,
                });
            }
            return Ok(Location::in_data_dir(state_dir, is_dsari_config(config)));
        }
        Ok(Location::in_state_dir(state_dir))
    }

    /// A fleet's PostgreSQL database, with the state directory's file for the times it
    /// cannot be reached. The error never shows the string (it may hold a password).
    fn fleet(url: &str, state_dir: &Path) -> Result<Location, StoreError> {
        let fleet = FleetUrl::parse(url).map_err(|reason| StoreError::BadUrl { reason })?;
        Ok(Location {
            file: Location::in_state_dir(state_dir).file,
            fleet: Some(fleet),
        })
    }

    /// Reads an SQLite `--database`: a file's path, or an `sqlite:` URL (`sqlite:PATH`,
    /// `sqlite://PATH`, `sqlite:///ABSOLUTE`).
    pub(crate) fn from_url(url: &str) -> Result<Location, StoreError> {
        let text = url.trim();
        let lower = text.to_ascii_lowercase();
        let path = match lower.strip_prefix("sqlite:") {
            Some(_) => {
                let rest = &text["sqlite:".len()..];
                rest.strip_prefix("//").unwrap_or(rest)
            }
            None if lower.contains("://") => {
                return Err(StoreError::Unsupported {
                    url: url.to_owned(),
                    reason: "only SQLite files (a path or sqlite:PATH) are supported",
                });
            }
            None => text,
        };
        if path.is_empty() {
            return Err(StoreError::Unsupported {
                url: url.to_owned(),
                reason: "no file named",
            });
        }
        let path = Path::new(path);
        // Absolute: the daemon hands it to the chains it starts, which work elsewhere.
        let file = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        Ok(Location { file, fleet: None })
    }

    /// The database file.
    pub(crate) fn file(&self) -> &Path {
        &self.file
    }

    /// The store for people: the file, or the fleet database without its password.
    pub(crate) fn describe(&self) -> String {
        match &self.fleet {
            Some(fleet) => fleet.describe(),
            None => self.file.display().to_string(),
        }
    }
}

/// Whether the configuration's main file is one of dsari's names: then, without a
/// `database` key, the store is dsari's default file, as dsari's own tools expect.
fn is_dsari_config(config: &DaemonConfig) -> bool {
    config.files.first().is_some_and(|f| {
        f.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| DSARI_CONFIG_FILES.contains(&n))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_dir_with_only_dsari_s_file_uses_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        assert_eq!(Location::in_state_dir(d).file, d.join(RUNNER_FILE));
        std::fs::write(d.join(DSARI_FILE), "").expect("write");
        assert_eq!(Location::in_state_dir(d).file, d.join(DSARI_FILE));
        std::fs::write(d.join(RUNNER_FILE), "").expect("write");
        assert_eq!(
            Location::in_state_dir(d).file,
            d.join(RUNNER_FILE),
            "runner's own file wins once it exists"
        );
        assert_eq!(
            Location::in_data_dir(d, true).file,
            d.join(DSARI_FILE),
            "a dsari configuration always means dsari's file"
        );
    }

    #[test]
    fn database_urls() {
        let file = |url: &str| Location::from_url(url).expect(url).file;
        assert_eq!(file("/srv/db.sqlite3"), PathBuf::from("/srv/db.sqlite3"));
        assert_eq!(
            file("sqlite:///srv/db.sqlite3"),
            PathBuf::from("/srv/db.sqlite3")
        );
        assert_eq!(file("SQLITE:/srv/db"), PathBuf::from("/srv/db"));
        assert!(file("sqlite://rel.db").is_absolute());
        assert!(file("rel.db").ends_with("rel.db"));
        for bad in ["mysql://h/d", "sqlite:"] {
            let e = Location::from_url(bad).expect_err(bad);
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn a_postgres_url_names_the_fleet_and_keeps_the_local_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        for url in ["postgresql://u:pw@h/d", "host=h dbname=d password=pw"] {
            let l = Location::resolve(Some(url), None, dir.path()).expect(url);
            assert_eq!(l.file, dir.path().join(RUNNER_FILE));
            assert!(l.fleet.is_some());
            assert!(!l.describe().contains("pw"), "{}", l.describe());
        }
        let e = Location::resolve(Some("host=h password=pw nonsense=1"), None, dir.path())
            .expect_err("bad key");
        assert!(!e.to_string().contains("pw "), "{e}");
    }
}
