//! Records a chain could not write before its process exits, handed on instead of
//! waited for (contract section 12: a boot chain waits for nothing it does not need).
//!
//! When runner ends while the store refuses writes (another process holds its lock), the
//! recording thread writes what is still pending (the operations, and the row ids it
//! knows) to a spool file `STATE_DIR/spool/RUN_ID.PID.json` (mode 0600, never through a
//! symlink), takes an exclusive `flock` on it, and starts a detached finisher (runner
//! itself, `runner internal-finish-records`, in its own session) that inherits the
//! locked file. The finisher writes the records once the store is writable again and
//! removes the file; it gives up after [`FINISH_WAIT`], saying so in syslog, and leaves
//! the file for the next runner that finalizes lost runs, which replays any spool file
//! nobody holds ([`replay_unheld`]). While a spool file is held, its run is not
//! finalized as `lost` ([`held_runs`]).
//!
//! Replaying is idempotent (see [`super::writer`]): a run, an attempt, an ending or a
//! cascade event already in the store is not written again, so a finisher killed
//! half-way, or a spool replayed twice, never duplicates a row.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::owner::Owner;
use super::sqlite::AttemptEnding;
use super::writer::Op;

/// How long a finisher waits for the store to be writable before it gives up.
pub(crate) const FINISH_WAIT: Duration = Duration::from_secs(3600);

/// The file descriptor the finisher finds its locked spool file on.
pub(crate) const SPOOL_FD: i32 = 3;

/// The hidden subcommand a finisher runs.
pub(crate) const FINISH_COMMAND: &str = "internal-finish-records";

/// Everything a writer needs to go on where the chain's left off.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Spool {
    pub(crate) store: PathBuf,
    pub(crate) job: String,
    pub(crate) host: String,
    pub(crate) attached: bool,
    pub(crate) resumed: bool,
    pub(crate) owner_pid: u32,
    pub(crate) owner_start_ticks: Option<i64>,
    pub(crate) owner_boot_id: Option<String>,
    /// The run these records belong to, if its start was among them or known.
    pub(crate) run_id: Option<String>,
    /// Attempt rows already written: task, instance, try, row id.
    pub(crate) attempts: Vec<(String, u32, u32, i64)>,
    /// Attempt endings held back, not yet written.
    pub(crate) ended: Vec<AttemptEnding>,
    /// The operations not yet written, in order.
    pub(crate) ops: Vec<Op>,
}

impl Spool {
    pub(crate) fn owner(&self) -> Owner {
        Owner {
            pid: self.owner_pid,
            start_ticks: self.owner_start_ticks,
            boot_id: self.owner_boot_id.clone(),
        }
    }
}

/// Where the spool files of the store at `store` are kept.
pub(crate) fn dir_of(store: &Path) -> PathBuf {
    store
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("spool")
}

fn flock(file: &File, how: libc::c_int) -> bool {
    // SAFETY: flock on a descriptor this File owns; no memory is passed.
    unsafe { libc::flock(file.as_raw_fd(), how) == 0 }
}

/// Writes `spool` to a new file in the spool directory of its store and locks it; the
/// file is complete (written, then renamed into place) before anyone can see it.
pub(crate) fn write(spool: &Spool) -> std::io::Result<(PathBuf, File)> {
    let dir = dir_of(&spool.store);
    crate::state::ensure_dir(&dir).map_err(|e| std::io::Error::other(e.to_string()))?;
    let name = format!(
        "{}.{}.json",
        spool.run_id.as_deref().unwrap_or("norun"),
        std::process::id()
    );
    let path = dir.join(&name);
    let partial = dir.join(format!(".{name}.partial"));
    let mut file = crate::state::open_private(&partial, 0o600, true, true)?;
    if !flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
        return Err(std::io::Error::last_os_error());
    }
    serde_json::to_writer(&mut file, spool).map_err(std::io::Error::other)?;
    file.flush()?;
    std::fs::rename(&partial, &path)?;
    Ok((path, file))
}

/// Reads the spool in `file` (from its start).
pub(crate) fn read(file: &mut File) -> Result<Spool, String> {
    let mut text = String::new();
    file.rewind().map_err(|e| e.to_string())?;
    file.read_to_string(&mut text).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

/// The spool files beside the store at `store`.
fn files(store: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir_of(store)) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect()
}

/// Opens a spool file to replay, never through a symlink.
fn open(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// The runs whose records a live finisher still holds: not to be finalized as `lost`.
pub(crate) fn held_runs(store: &Path) -> HashSet<String> {
    let mut held = HashSet::new();
    for path in files(store) {
        let Ok(file) = open(&path) else { continue };
        if flock(&file, libc::LOCK_SH | libc::LOCK_NB) {
            continue;
        }
        if let Some(run) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split('.').next())
        {
            held.insert(run.to_owned());
        }
    }
    held
}

/// Replays every spool file beside the store at `store` that nobody holds (its finisher
/// gave up or was killed); each one written is removed, and so is a partial file that
/// a runner killed while writing it left.
pub(crate) fn replay_unheld(store: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir_of(store)) {
        for path in entries.filter_map(Result::ok).map(|e| e.path()) {
            let partial = path.extension().is_some_and(|e| e == "partial");
            if partial && open(&path).is_ok_and(|f| flock(&f, libc::LOCK_EX | libc::LOCK_NB)) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    for path in files(store) {
        let Ok(mut file) = open(&path) else { continue };
        if !flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            continue;
        }
        match read(&mut file) {
            Ok(mut spool) => {
                // Its records belong in this store, whatever the file says.
                spool.store = store.to_owned();
                if super::writer::replay(spool, Some(Duration::ZERO)) {
                    let _ = std::fs::remove_file(&path);
                }
            }
            Err(e) => log::warn!("cannot read the pending records {}: {e}", path.display()),
        }
    }
}

/// Starts the detached finisher for the spool at `path`, locked through `file`.
pub(crate) fn start_finisher(path: &Path, file: File) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe()?;
    let fd = file.as_raw_fd();
    let mut command = Command::new(exe);
    command
        .arg("--syslog")
        .arg(FINISH_COMMAND)
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe calls (setsid, dup2, fcntl).
    unsafe {
        command.pre_exec(move || {
            libc::setsid();
            if fd == SPOOL_FD {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            } else if libc::dup2(fd, SPOOL_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn()?;
    // The finisher holds the lock now (the same open file).
    drop(file);
    Ok(())
}

/// Whether `path` (not followed) is the file open as `file`.
fn is_same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(open), Ok(named)) => {
            named.file_type().is_file() && open.dev() == named.dev() && open.ino() == named.ino()
        }
        _ => false,
    }
}

/// `runner internal-finish-records PATH`: writes the spool on fd 3 (locked by the
/// runner that started this process) once the store is writable, then removes `path`.
pub(crate) fn finish(path: &Path) -> u8 {
    use std::os::fd::FromRawFd;
    // SAFETY: the runner that started this process passed the spool file on SPOOL_FD.
    let mut file = unsafe { File::from_raw_fd(SPOOL_FD) };
    let spool = match read(&mut file) {
        Ok(spool) => spool,
        Err(e) => {
            log::warn!("cannot read the pending records {}: {e}", path.display());
            return 1;
        }
    };
    let run = spool.run_id.clone().unwrap_or_default();
    if super::writer::replay(spool, Some(FINISH_WAIT)) {
        // Only the file it was given, never what a path names otherwise.
        if is_same_file(&file, path) {
            let _ = std::fs::remove_file(path);
        }
        log::info!("the records of run {run} were written once the run store was writable");
        0
    } else {
        log::warn!(
            "the run store stayed unwritable for {}s; the records of run {run} are kept in {} for the next runner",
            FINISH_WAIT.as_secs(),
            path.display()
        );
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{EventWait, InstanceStatus, RunStatus};
    use std::time::SystemTime;

    fn through_json(op: &Op) -> Result<Op, String> {
        let text = serde_json::to_string(op).map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
    }

    #[test]
    fn an_op_survives_the_spool() {
        let op = Op::RunFinished {
            run_id: "r".to_owned(),
            status: RunStatus::Ok,
            exit_code: 0,
            stopped: SystemTime::UNIX_EPOCH + Duration::from_millis(1500),
        };
        let Ok(Op::RunFinished {
            status, stopped, ..
        }) = through_json(&op)
        else {
            panic!("not a run end: {op:?}");
        };
        assert_eq!(status, RunStatus::Ok);
        assert_eq!(
            stopped,
            SystemTime::UNIX_EPOCH + Duration::from_millis(1500)
        );
    }

    #[test]
    fn fixed_words_come_back_as_the_known_ones() {
        let ending = AttemptEnding {
            attempt_id: 1,
            instance_id: 2,
            stop_time: SystemTime::UNIX_EPOCH,
            exit_code: Some(2),
            signal: None,
            result: "HALT",
            note: None,
            result_data: None,
            leftovers: None,
            instance_status: InstanceStatus::Failed,
            has_output: true,
            cascade: None,
        };
        let op = Op::AttemptFinished {
            task: "t".to_owned(),
            instance: 1,
            try_num: 1,
            ending: Box::new(ending),
        };
        let Ok(Op::AttemptFinished { ending, .. }) = through_json(&op) else {
            panic!("not an attempt end: {op:?}");
        };
        assert_eq!(ending.result, "HALT");
        assert_eq!(ending.instance_status, InstanceStatus::Failed);
        let op = Op::EventsWaited {
            run_id: "r".to_owned(),
            task: "t".to_owned(),
            file: "10-t".to_owned(),
            instance: 1,
            since: None,
            decided: SystemTime::UNIX_EPOCH,
            events: vec![EventWait {
                name: "e".to_owned(),
                kind: "unless",
                event_id: Some(3),
                fired_at: Some(1.5),
                source: None,
            }],
        };
        let Ok(Op::EventsWaited { events, .. }) = through_json(&op) else {
            panic!("not an events decision: {op:?}");
        };
        assert_eq!(events[0].kind, "unless");
    }

    #[test]
    fn unknown_words_are_refused_by_name() {
        let bad_result = r#"{"attempt_id":1,"instance_id":2,"stop_time":{"secs_since_epoch":0,"nanos_since_epoch":0},"exit_code":null,"signal":null,"result":"MAYBE","note":null,"result_data":null,"leftovers":null,"instance_status":"failed","has_output":false,"cascade":null}"#;
        let e = serde_json::from_str::<AttemptEnding>(bad_result).expect_err("MAYBE accepted");
        assert!(
            e.to_string().contains("unknown attempt result \"MAYBE\""),
            "{e}"
        );
        let bad_kind =
            r#"{"name":"e","kind":"before","event_id":null,"fired_at":null,"source":null}"#;
        let e = serde_json::from_str::<EventWait>(bad_kind).expect_err("before accepted");
        assert!(
            e.to_string().contains("unknown event kind \"before\""),
            "{e}"
        );
        let bad_status = r#"{"RunFinished":{"run_id":"r","status":"meh","exit_code":0,"stopped":{"secs_since_epoch":0,"nanos_since_epoch":0}}}"#;
        let e = serde_json::from_str::<Op>(bad_status).expect_err("meh accepted");
        assert!(e.to_string().contains("meh"), "{e}");
    }
}
