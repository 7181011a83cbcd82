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
        return Err(not_a_regular_file());
    }
    Ok(file)
}

/// A directory of the state held open: the files made and read in it are found by
/// name in it, not by a walk down its whole path each time.
///
/// The daemon makes each run's output file in the run's directory and, when the run
/// has ended, looks there for what it left; at a thousand runs a second the walks down
/// `DATA_DIR/runs/JOB/RUN_ID/` were a tenth of the loop's CPU. The directory itself is
/// opened without following a symlink, and so is every file in it, as
/// [`open_private`] and [`open_left_file`] do by path.
pub(crate) struct Dir {
    fd: std::os::fd::OwnedFd,
}

impl Dir {
    /// Opens the directory `path` (a symlink there is an error).
    pub(crate) fn open(path: &Path) -> std::io::Result<Dir> {
        use nix::fcntl::OFlag;
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty())?;
        // SAFETY: `open` just returned this descriptor, and nothing else owns it.
        let fd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
        Ok(Dir { fd })
    }

    /// Opens `name` in this directory with `flags` (always `O_NOFOLLOW | O_CLOEXEC`),
    /// creating it with `mode` when `flags` say so.
    fn open_at(
        &self,
        name: &str,
        flags: nix::fcntl::OFlag,
        mode: u32,
    ) -> std::io::Result<std::fs::File> {
        use nix::fcntl::OFlag;
        use std::os::fd::AsRawFd;
        let fd = nix::fcntl::openat(
            Some(self.fd.as_raw_fd()),
            name,
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::from_bits_truncate(mode),
        )?;
        // SAFETY: `openat` just returned this descriptor, and nothing else owns it.
        Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
    }

    /// [`open_private`] of `name` in this directory, for writing and truncated.
    pub(crate) fn create_private(&self, name: &str, mode: u32) -> std::io::Result<std::fs::File> {
        use nix::fcntl::OFlag;
        self.open_at(
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC,
            mode,
        )
    }

    /// [`open_left_file`] of `name` in this directory.
    pub(crate) fn open_left(&self, name: &str) -> std::io::Result<std::fs::File> {
        use nix::fcntl::OFlag;
        let file = self.open_at(name, OFlag::O_RDONLY | OFlag::O_NONBLOCK, 0)?;
        if !file.metadata()?.is_file() {
            return Err(not_a_regular_file());
        }
        Ok(file)
    }
}

fn not_a_regular_file() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file")
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn a_dir_makes_and_reads_files_by_name_in_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = Dir::open(tmp.path()).expect("open");
        {
            use std::io::Write;
            let mut file = dir.create_private("out.txt", 0o600).expect("create");
            file.write_all(b"first, longer\n").expect("write");
        }
        assert_eq!(mode(&tmp.path().join("out.txt")), 0o600);
        // Made again, it starts empty, as `open_private` with `truncate`.
        drop(dir.create_private("out.txt", 0o600).expect("create again"));
        assert_eq!(
            std::fs::read(tmp.path().join("out.txt")).expect("read"),
            b""
        );
        std::fs::write(tmp.path().join("left.json"), "{}").expect("write");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut dir.open_left("left.json").expect("open"), &mut text)
            .expect("read");
        assert_eq!(text, "{}");
        let missing = dir.open_left("missing.json").expect_err("no such file");
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn a_dir_follows_no_symlink_to_itself_or_in_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let target = tmp.path().join("target");
        std::fs::create_dir(&target).expect("mkdir");
        std::os::unix::fs::symlink(&target, tmp.path().join("link")).expect("symlink");
        assert!(
            Dir::open(&tmp.path().join("link")).is_err(),
            "a linked directory"
        );

        let dir = Dir::open(&target).expect("open");
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "kept").expect("write");
        std::os::unix::fs::symlink(&victim, target.join("out.txt")).expect("symlink");
        std::os::unix::fs::symlink(&victim, target.join("left.json")).expect("symlink");
        assert!(
            dir.create_private("out.txt", 0o600).is_err(),
            "made through a link"
        );
        assert!(dir.open_left("left.json").is_err(), "read through a link");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "kept");
    }

    #[test]
    fn a_fifo_left_in_a_dir_is_refused_not_waited_on() {
        let tmp = tempfile::tempdir().expect("tempdir");
        nix::unistd::mkfifo(&tmp.path().join("left.json"), nix::sys::stat::Mode::S_IRWXU)
            .expect("mkfifo");
        let dir = Dir::open(tmp.path()).expect("open");
        let refused = dir.open_left("left.json").expect_err("a FIFO");
        assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
    }
}
