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
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::model::{InstanceStatus, RunStatus};
use super::owner::Owner;
use super::sqlite::{AttemptEnding, Cascade};
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
    pub(crate) ended: Vec<Ending>,
    /// The operations not yet written, in order.
    pub(crate) ops: Vec<SpoolOp>,
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

/// An [`AttemptEnding`] as spooled.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Ending {
    attempt_id: i64,
    instance_id: i64,
    stop_time: SystemTime,
    exit_code: Option<i32>,
    signal: Option<i32>,
    result: String,
    note: Option<String>,
    result_data: Option<serde_json::Value>,
    leftovers: Option<serde_json::Value>,
    instance_status: String,
    has_output: bool,
    /// Session, name, data, source.
    cascade: Option<(String, String, serde_json::Value, String)>,
}

impl Ending {
    pub(crate) fn of(e: &AttemptEnding) -> Ending {
        Ending {
            attempt_id: e.attempt_id,
            instance_id: e.instance_id,
            stop_time: e.stop_time,
            exit_code: e.exit_code,
            signal: e.signal,
            result: e.result.to_owned(),
            note: e.note.clone(),
            result_data: e.result_data.clone(),
            leftovers: e.leftovers.clone(),
            instance_status: e.instance_status.as_str().to_owned(),
            has_output: e.has_output,
            cascade: e.cascade.as_ref().map(|c| {
                (
                    c.session.clone(),
                    c.name.clone(),
                    c.data.clone(),
                    c.source.clone(),
                )
            }),
        }
    }

    pub(crate) fn restore(self) -> Result<AttemptEnding, String> {
        // The results runner writes; anything else is not a spool runner wrote.
        use crate::record::TaskResult;
        let result = [
            TaskResult::Ok,
            TaskResult::Retry,
            TaskResult::Exit,
            TaskResult::Halt,
        ]
        .into_iter()
        .map(TaskResult::as_str)
        .find(|r| *r == self.result)
        .ok_or_else(|| format!("unknown attempt result {:?}", self.result))?;
        Ok(AttemptEnding {
            attempt_id: self.attempt_id,
            instance_id: self.instance_id,
            stop_time: self.stop_time,
            exit_code: self.exit_code,
            signal: self.signal,
            result,
            note: self.note,
            result_data: self.result_data,
            leftovers: self.leftovers,
            instance_status: self.instance_status.parse::<InstanceStatus>()?,
            has_output: self.has_output,
            cascade: self.cascade.map(|(session, name, data, source)| Cascade {
                session,
                name,
                data,
                source,
            }),
        })
    }
}

/// A [`crate::record::EventWait`] as spooled: name, kind, event id, fired at, source.
type Waited = (String, String, Option<i64>, Option<f64>, Option<String>);

/// An [`Op`] as spooled.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum SpoolOp {
    FinalizeLost,
    RunStarted {
        run_id: String,
        job: String,
        started: SystemTime,
        trigger_type: String,
        trigger_data: serde_json::Value,
        session: String,
        output_dir: PathBuf,
        tasks: Vec<(String, String)>,
    },
    AttemptStarted {
        run_id: String,
        task: String,
        file: String,
        instance: u32,
        try_num: u32,
        started: SystemTime,
        output: Option<PathBuf>,
    },
    AttemptFinished {
        task: String,
        instance: u32,
        try_num: u32,
        ending: Ending,
    },
    Flush,
    InstanceStatus {
        run_id: String,
        task: String,
        file: String,
        instance: u32,
        status: String,
    },
    EventsWaited {
        run_id: String,
        task: String,
        file: String,
        instance: u32,
        since: Option<SystemTime>,
        decided: SystemTime,
        events: Vec<Waited>,
    },
    RunFinished {
        run_id: String,
        status: String,
        exit_code: i32,
        stopped: SystemTime,
    },
}

impl SpoolOp {
    pub(crate) fn of(op: &Op) -> SpoolOp {
        match op {
            Op::FinalizeLost => SpoolOp::FinalizeLost,
            Op::RunStarted {
                run_id,
                job,
                started,
                trigger_type,
                trigger_data,
                session,
                output_dir,
                tasks,
            } => SpoolOp::RunStarted {
                run_id: run_id.clone(),
                job: job.clone(),
                started: *started,
                trigger_type: trigger_type.clone(),
                trigger_data: trigger_data.clone(),
                session: session.clone(),
                output_dir: output_dir.clone(),
                tasks: tasks.clone(),
            },
            Op::AttemptStarted {
                run_id,
                task,
                file,
                instance,
                try_num,
                started,
                output,
            } => SpoolOp::AttemptStarted {
                run_id: run_id.clone(),
                task: task.clone(),
                file: file.clone(),
                instance: *instance,
                try_num: *try_num,
                started: *started,
                output: output.clone(),
            },
            Op::AttemptFinished {
                task,
                instance,
                try_num,
                ending,
            } => SpoolOp::AttemptFinished {
                task: task.clone(),
                instance: *instance,
                try_num: *try_num,
                ending: Ending::of(ending),
            },
            Op::Flush => SpoolOp::Flush,
            Op::InstanceStatus {
                run_id,
                task,
                file,
                instance,
                status,
            } => SpoolOp::InstanceStatus {
                run_id: run_id.clone(),
                task: task.clone(),
                file: file.clone(),
                instance: *instance,
                status: status.as_str().to_owned(),
            },
            Op::EventsWaited {
                run_id,
                task,
                file,
                instance,
                since,
                decided,
                events,
            } => SpoolOp::EventsWaited {
                run_id: run_id.clone(),
                task: task.clone(),
                file: file.clone(),
                instance: *instance,
                since: *since,
                decided: *decided,
                events: events
                    .iter()
                    .map(|e| {
                        (
                            e.name.clone(),
                            e.kind.to_owned(),
                            e.event_id,
                            e.fired_at,
                            e.source.clone(),
                        )
                    })
                    .collect(),
            },
            Op::RunFinished {
                run_id,
                status,
                exit_code,
                stopped,
            } => SpoolOp::RunFinished {
                run_id: run_id.clone(),
                status: status.as_str().to_owned(),
                exit_code: *exit_code,
                stopped: *stopped,
            },
        }
    }

    pub(crate) fn restore(self) -> Result<Op, String> {
        Ok(match self {
            SpoolOp::FinalizeLost => Op::FinalizeLost,
            SpoolOp::RunStarted {
                run_id,
                job,
                started,
                trigger_type,
                trigger_data,
                session,
                output_dir,
                tasks,
            } => Op::RunStarted {
                run_id,
                job,
                started,
                trigger_type,
                trigger_data,
                session,
                output_dir,
                tasks,
            },
            SpoolOp::AttemptStarted {
                run_id,
                task,
                file,
                instance,
                try_num,
                started,
                output,
            } => Op::AttemptStarted {
                run_id,
                task,
                file,
                instance,
                try_num,
                started,
                output,
            },
            SpoolOp::AttemptFinished {
                task,
                instance,
                try_num,
                ending,
            } => Op::AttemptFinished {
                task,
                instance,
                try_num,
                ending: Box::new(ending.restore()?),
            },
            SpoolOp::Flush => Op::Flush,
            SpoolOp::InstanceStatus {
                run_id,
                task,
                file,
                instance,
                status,
            } => Op::InstanceStatus {
                run_id,
                task,
                file,
                instance,
                status: status.parse::<InstanceStatus>()?,
            },
            SpoolOp::EventsWaited {
                run_id,
                task,
                file,
                instance,
                since,
                decided,
                events,
            } => Op::EventsWaited {
                run_id,
                task,
                file,
                instance,
                since,
                decided,
                events: events
                    .into_iter()
                    .map(|(name, kind, event_id, fired_at, source)| {
                        let kind = ["after", "unless"]
                            .into_iter()
                            .find(|k| *k == kind)
                            .ok_or_else(|| format!("unknown event kind {kind:?}"))?;
                        Ok(crate::record::EventWait {
                            name,
                            kind,
                            event_id,
                            fired_at,
                            source,
                        })
                    })
                    .collect::<Result<_, String>>()?,
            },
            SpoolOp::RunFinished {
                run_id,
                status,
                exit_code,
                stopped,
            } => Op::RunFinished {
                run_id,
                status: status.parse::<RunStatus>()?,
                exit_code,
                stopped,
            },
        })
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

    #[test]
    fn an_op_survives_the_spool() {
        let op = Op::RunFinished {
            run_id: "r".to_owned(),
            status: RunStatus::Ok,
            exit_code: 0,
            stopped: SystemTime::UNIX_EPOCH + Duration::from_millis(1500),
        };
        let text = serde_json::to_string(&SpoolOp::of(&op)).expect("serialize");
        let back: SpoolOp = serde_json::from_str(&text).expect("parse");
        let Ok(Op::RunFinished {
            status, stopped, ..
        }) = back.restore()
        else {
            panic!("not a run end: {text}");
        };
        assert_eq!(status, RunStatus::Ok);
        assert_eq!(
            stopped,
            SystemTime::UNIX_EPOCH + Duration::from_millis(1500)
        );
    }
}
