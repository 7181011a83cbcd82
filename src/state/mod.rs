//! Where runner keeps its state (records, locks, run output), per section 7 of the contract.

pub(crate) mod lock;

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
///
/// A symlink where the directory should be is refused, not followed: whoever planted it
/// would otherwise choose where root writes (section 12).
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), DirError> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(DirError {
                path: dir.to_owned(),
                source: std::io::Error::other(
                    "is a symlink; runner does not follow links in its state directory",
                ),
            });
        }
        _ => {}
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

/// Opens (creating with `mode`) a file inside the state directory for writing, never
/// through a symlink: `O_NOFOLLOW` makes a planted link an error instead of a way to make
/// root overwrite its target.
pub(crate) fn open_private(
    path: &Path,
    mode: u32,
    read: bool,
    truncate: bool,
) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(read)
        .write(true)
        .create(true)
        .truncate(truncate)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Opens a file a task or job left for runner to read (`RUNNER_RESULT`,
/// `return_data.json`), never through a symlink and never blocking: a FIFO (or any
/// other file that is not a regular one) is refused rather than waited on forever.
pub(crate) fn open_left_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
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
