//! Where runner keeps its state (records, locks, run output), per section 7 of the contract.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// A directory of the state that could not be made; runner's error shows it as any
/// other file it could not write.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub(crate) struct DirError {
    /// The directory.
    pub(crate) path: PathBuf,
    /// What the operating system said.
    #[source]
    pub(crate) source: std::io::Error,
}

/// The state directory: `--state-dir` (or `RUNNER_STATE_DIR`, which clap folds into the
/// flag), else the configuration's `state_dir`, else `/var/lib/runner` for root and
/// `$XDG_STATE_HOME/runner` (default `~/.local/state/runner`) for everyone else.
pub(crate) fn resolve(flag: Option<&Path>, config: Option<&Path>) -> PathBuf {
    // Absolute, because records keep output paths and runs work in other directories.
    if let Some(dir) = flag.or(config) {
        return std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    }
    if crate::security::is_root() {
        return PathBuf::from("/var/lib/runner");
    }
    let xdg = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg.unwrap_or_else(|| {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"));
        home.join(".local/state")
    });
    base.join("runner")
}

/// Creates `dir` (and its parents) with mode 0700 if it does not exist yet: records hold
/// task output, which may hold secrets.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), DirError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| DirError {
            path: dir.to_owned(),
            source,
        })
}

/// The host runs are recorded with (section 13): `RUNNER_HOST`, else the configured
/// name (`[runner] host`), else the machine's hostname.
pub(crate) fn host(configured: Option<&str>) -> String {
    if let Some(host) = std::env::var("RUNNER_HOST").ok().filter(|h| !h.is_empty()) {
        return host;
    }
    if let Some(host) = configured.filter(|h| !h.is_empty()) {
        return host.to_owned();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The current boot's id, the default event session: records and events of one boot
/// belong together.
pub(crate) fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown-boot".to_owned())
}
