//! Refusing, as root, to execute or trust files that someone else could have changed.
//!
//! A boot chain runs as root, so a task file or configuration that a group or any user may
//! write is a way to become root. The same holds for every directory above such a file
//! (whoever can write a directory can replace what is in it) and for every symlink on the
//! way. cron and sshd (`StrictModes`) refuse such files for the same reason; runner does
//! too, unless `--insecure` says the admin knows better.
//!
//! The walk goes from `/` down each component of the path as given. A symlink is checked
//! as a link (its owner, since in a sticky directory the owner may replace it) and then
//! followed: its target is walked the same way. A root-owned sticky directory such as
//! `/tmp` may be writable by everyone, because only root can then replace the root-owned
//! entry below it. A path that does not exist passes: whoever needs the file reports it
//! missing with a better message.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Symlinks followed on one path before giving up, as the kernel's `ELOOP` limit.
const MAX_LINKS: u32 = 40;

/// A file runner will not trust while running as root.
#[derive(Debug, thiserror::Error)]
#[error("refusing to use {what} {}: {reason}", path.display())]
pub struct UnsafeError {
    what: &'static str,
    path: PathBuf,
    reason: String,
    fix: String,
}

impl UnsafeError {
    /// How to repair the file, or how to override the check.
    pub(crate) fn hint(&self) -> String {
        format!("run `{}`, or pass --insecure to run anyway", self.fix)
    }
}

/// What a file is, for messages ("task file", "configuration file", "task directory").
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// A file that will be executed.
    TaskFile,
    /// The halt task.
    HaltTask,
    /// The task directory itself (anyone who can write it can add tasks).
    TaskDir,
    /// An INI file (the main file or one of `include_dir`).
    Config,
    /// The `include_dir` itself (anyone who can write it can add configuration).
    IncludeDir,
    /// The `interpreter` a task file is handed to.
    Interpreter,
    /// A hook command (`task_hook`, `post_*_hook`).
    Hook,
    /// A daemon configuration file.
    DaemonConfig,
    /// The program of a daemon `command` job.
    Command,
    /// A trigger file.
    Trigger,
    /// The state (or data) directory.
    StateDir,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::TaskFile => "task file",
            Kind::HaltTask => "halt task",
            Kind::TaskDir => "task directory",
            Kind::Config => "configuration file",
            Kind::IncludeDir => "include directory",
            Kind::Interpreter => "interpreter",
            Kind::Hook => "hook",
            Kind::DaemonConfig => "daemon configuration",
            Kind::Command => "job command",
            Kind::Trigger => "trigger file",
            Kind::StateDir => "state directory",
        }
    }
}

/// Whether the checks apply: only a root runner has something to lose.
pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Set once `--insecure` was given anywhere in this process.
static RELAXED: AtomicBool = AtomicBool::new(false);

/// Turns the checks off for the rest of the process (`--insecure`), with one warning.
pub(crate) fn relax() {
    if is_root() && !RELAXED.swap(true, Ordering::Relaxed) {
        log::warn!(
            "--insecure: running as root without checking who can change the files runner executes and reads"
        );
    }
    RELAXED.store(true, Ordering::Relaxed);
}

/// Whether `--insecure` turned the checks off (a daemon passes it on to its chain jobs).
pub(crate) fn is_relaxed() -> bool {
    RELAXED.load(Ordering::Relaxed)
}

/// Whether a root runner should check at all; `insecure` (or an earlier [`relax`]) says
/// no.
pub(crate) fn is_enforced(insecure: bool) -> bool {
    if insecure {
        relax();
    }
    is_root() && !is_relaxed()
}

/// Checks `path`, every directory above it and every symlink on the way (followed, as
/// execution follows them): each must be owned by root and not writable by its group or
/// others, except root-owned sticky directories above the file.
pub(crate) fn check(kind: Kind, path: &Path) -> Result<(), UnsafeError> {
    check_all(kind, [path])
}

/// Checks each of `paths` as [`check`] does, looking at each directory above them once:
/// the files of a task directory share every directory above them, which were looked at
/// again for each of them (nine `stat`s a task file where two do).
pub(crate) fn check_all<'p>(
    kind: Kind,
    paths: impl IntoIterator<Item = &'p Path>,
) -> Result<(), UnsafeError> {
    let mut passed = HashSet::new();
    for path in paths {
        let Ok(abs) = std::path::absolute(path) else {
            continue;
        };
        let mut walk = Walk {
            kind,
            file: &abs,
            links: 0,
            passed: &mut passed,
        };
        walk.walk(PathBuf::from("/"), &abs, true)?;
    }
    Ok(())
}

/// Checks a state directory (records, locks, run output) that root writes into: owned by
/// root and writable by nobody else, and the same for every directory above it.
pub(crate) fn check_state_dir(path: &Path) -> Result<(), UnsafeError> {
    check(Kind::StateDir, path)
}

/// Checks the program of a command (`interpreter`, a hook, a job's `command`): a name
/// without `/` is looked up on `search_path` as `execvp` would, a relative path is taken
/// from `cwd`. A program that cannot be found passes: running it fails by itself.
pub(crate) fn check_program(
    kind: Kind,
    program: &str,
    cwd: &Path,
    search_path: Option<&OsStr>,
) -> Result<(), UnsafeError> {
    match resolve_program(program, cwd, search_path) {
        Some(path) => check(kind, &path),
        None => Ok(()),
    }
}

/// Where `program` would be found, if anywhere.
pub(crate) fn resolve_program(
    program: &str,
    cwd: &Path,
    search_path: Option<&OsStr>,
) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(cwd.join(program));
    }
    let default = std::env::var_os("PATH");
    let search = search_path.or(default.as_deref())?;
    std::env::split_paths(search)
        .map(|dir| cwd.join(dir).join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

struct Walk<'a> {
    kind: Kind,
    file: &'a Path,
    links: u32,
    /// Real directories above a file, by path, that passed already.
    passed: &'a mut HashSet<PathBuf>,
}

impl Walk<'_> {
    /// Walks `rel` from the resolved directory `base`; `target` says whether the last
    /// component is the file itself (else a directory above it). Returns the resolved
    /// path, or `None` when something on it does not exist.
    fn walk(
        &mut self,
        base: PathBuf,
        rel: &Path,
        target: bool,
    ) -> Result<Option<PathBuf>, UnsafeError> {
        let mut current = base;
        let components: Vec<Component<'_>> = rel.components().collect();
        let last = components
            .iter()
            .rposition(|c| matches!(c, Component::Normal(_)));
        if rel.has_root() {
            current = PathBuf::from("/");
            let is_target = target && last.is_none();
            if is_target || !self.passed.contains(&current) {
                let Ok(meta) = std::fs::symlink_metadata(&current) else {
                    return Ok(None);
                };
                self.entry(&current, is_target, &meta)?;
                if !is_target {
                    self.passed.insert(current.clone());
                }
            }
        }
        for (i, component) in components.iter().enumerate() {
            let name = match component {
                Component::Normal(name) => name,
                Component::ParentDir => {
                    current.pop();
                    continue;
                }
                Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
            };
            let is_target = target && Some(i) == last;
            let next = current.join(name);
            if !is_target && self.passed.contains(&next) {
                current = next;
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&next) else {
                return Ok(None);
            };
            if meta.file_type().is_symlink() {
                if meta.uid() != 0 {
                    return Err(self.fail(
                        format!(
                            "symlink {} is owned by uid {}, not root",
                            next.display(),
                            meta.uid()
                        ),
                        format!("chown -h root {}", next.display()),
                    ));
                }
                self.links += 1;
                if self.links > MAX_LINKS {
                    return Ok(None);
                }
                let Ok(target_path) = std::fs::read_link(&next) else {
                    return Ok(None);
                };
                match self.walk(current.clone(), &target_path, is_target)? {
                    Some(resolved) => current = resolved,
                    None => return Ok(None),
                }
                continue;
            }
            current = next;
            self.entry(&current, is_target, &meta)?;
            if !is_target {
                self.passed.insert(current.clone());
            }
        }
        Ok(Some(current))
    }

    /// Checks one real (non-link) entry, `meta` being its own (not followed) metadata.
    fn entry(&self, path: &Path, is_target: bool, meta: &Metadata) -> Result<(), UnsafeError> {
        let mode = meta.mode();
        let subject = if is_target {
            "it".to_owned()
        } else {
            format!("directory {} above it", path.display())
        };
        if meta.uid() != 0 {
            return Err(self.fail(
                format!("{subject} is owned by uid {}, not root", meta.uid()),
                format!("chown root {}", path.display()),
            ));
        }
        let sticky = meta.is_dir() && mode & 0o1000 != 0;
        // Only root can replace a root-owned entry in a root-owned sticky directory.
        let shared_ok = sticky && !is_target;
        if mode & 0o022 != 0 && !shared_ok {
            let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
                (true, true) => "its group and all users",
                (true, false) => "its group",
                _ => "all users",
            };
            return Err(self.fail(
                format!(
                    "{subject} is writable by {who} (mode {:04o})",
                    mode & 0o7777
                ),
                format!("chmod go-w {}", path.display()),
            ));
        }
        Ok(())
    }

    fn fail(&self, reason: String, fix: String) -> UnsafeError {
        UnsafeError {
            what: self.kind.describe(),
            path: self.file.to_owned(),
            reason,
            fix,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_on_the_search_path() {
        let found = resolve_program("sh", Path::new("/"), Some(OsStr::new("/nonexistent:/bin")));
        assert_eq!(found, Some(PathBuf::from("/bin/sh")));
        let relative = resolve_program("./x", Path::new("/etc"), None);
        assert_eq!(relative, Some(PathBuf::from("/etc/./x")));
        assert_eq!(
            resolve_program("no-such-program-xyz", Path::new("/"), None),
            None
        );
    }

    #[test]
    fn system_files_pass_as_root() {
        if !is_root() {
            eprintln!("SKIPPED: ownership checks need root");
            return;
        }
        check(Kind::Interpreter, Path::new("/bin/sh")).expect("/bin/sh is root's");
        let tmp = tempfile::tempdir().expect("tempdir");
        check(Kind::TaskDir, tmp.path()).expect("a root tempdir under sticky /tmp is fine");
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let err = check(Kind::TaskDir, tmp.path()).expect_err("0777 dir");
        assert!(err.to_string().contains("writable by"), "{err}");
        let inner = tmp.path().join("f");
        std::fs::write(&inner, "").expect("write");
        let err = check(Kind::TaskFile, &inner).expect_err("dir above is 0777");
        assert!(err.to_string().contains("above it"), "{err}");
    }

    #[test]
    fn files_checked_together_are_each_checked_and_so_are_their_links() {
        if !is_root() {
            eprintln!("SKIPPED: ownership checks need root");
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let (a, b, c) = (
            tmp.path().join("a"),
            tmp.path().join("b"),
            tmp.path().join("c"),
        );
        for file in [&a, &b] {
            std::fs::write(file, "").expect("write");
        }
        check_all(Kind::TaskFile, [a.as_path(), b.as_path()]).expect("both root's");
        // The directories above were looked at for `a`; `b` itself still is.
        std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let err = check_all(Kind::TaskFile, [a.as_path(), b.as_path()]).expect_err("b is 0666");
        assert!(err.to_string().contains(&*b.to_string_lossy()), "{err}");
        assert!(err.to_string().contains("writable by"), "{err}");
        // A symlink to a file others may write is followed and refused, after files that
        // passed through the same directories.
        std::os::unix::fs::symlink(&b, &c).expect("symlink");
        let err = check_all(Kind::TaskFile, [a.as_path(), c.as_path()]).expect_err("c -> b");
        assert!(err.to_string().contains("writable by"), "{err}");
    }
}
