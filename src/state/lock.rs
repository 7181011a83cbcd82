//! One run of a job at a time: an exclusive `flock` on `STATE_DIR/locks/JOB.lock`.
//!
//! The kernel drops the lock when runner dies, however it dies, so there is no stale
//! lock to clean up. The holder writes who it is into the file, so that the invocation
//! that is turned away (exit 75) can name the run that is in the way.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::interrupt::Interrupt;

/// How often `--wait` tries the lock again.
const WAIT_POLL: Duration = Duration::from_millis(100);

/// What the holder of a lock writes about itself.
#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    pid: u32,
    run_id: String,
    started: f64,
}

/// Why the lock could not be taken. Runner's error turns [`LockError::Held`] into exit
/// 75 and the rest into a failure naming the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    /// Another invocation holds the job's lock.
    #[error("job \"{job}\" is already running: {holder}")]
    Held {
        /// The job whose lock is held.
        job: String,
        /// Who holds it, as the holder wrote it into the lock file.
        holder: String,
    },
    /// The lock file or its directory could not be made or opened.
    #[error(transparent)]
    File(#[from] crate::state::DirError),
}

/// A held job lock; dropping it releases the job.
#[derive(Debug)]
pub(crate) struct JobLock {
    file: Flock<File>,
    path: PathBuf,
}

/// What `acquire` found.
pub(crate) enum Acquired {
    /// The lock is ours.
    Held(JobLock),
    /// A signal arrived while waiting.
    Interrupted,
}

impl JobLock {
    /// Takes the lock of `job`, failing at once if it is held, or waiting if `wait`.
    pub(crate) fn acquire(
        state_dir: &Path,
        job: &str,
        wait: bool,
        interrupt: &Interrupt,
    ) -> Result<Acquired, LockError> {
        let dir = state_dir.join("locks");
        crate::state::ensure_dir(&dir)?;
        let path = dir.join(format!("{job}.lock"));
        let mut announced = false;
        loop {
            let file = crate::state::open_private(&path, 0o600, true, false).map_err(|source| {
                crate::state::DirError {
                    path: path.clone(),
                    source,
                }
            })?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(file) => return Ok(Acquired::Held(JobLock { file, path })),
                Err((mut file, Errno::EWOULDBLOCK)) => {
                    let holder = describe_holder(&mut file);
                    if !wait {
                        return Err(LockError::Held {
                            job: job.to_owned(),
                            holder,
                        });
                    }
                    if !announced {
                        log::info!("job \"{job}\" is already running ({holder}); waiting for it");
                        announced = true;
                    }
                    if interrupt.sleep(WAIT_POLL) {
                        return Ok(Acquired::Interrupted);
                    }
                }
                Err((_, errno)) => {
                    return Err(LockError::File(crate::state::DirError {
                        path,
                        source: errno.into(),
                    }));
                }
            }
        }
    }

    /// Writes the current run into the lock file for whoever is turned away.
    pub(crate) fn announce(&mut self, run_id: &str) {
        let holder = Holder {
            pid: std::process::id(),
            run_id: run_id.to_owned(),
            started: crate::epoch::seconds(SystemTime::now()),
        };
        let Ok(text) = serde_json::to_string(&holder) else {
            return;
        };
        let file: &mut File = &mut self.file;
        let written = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(text.as_bytes()));
        if let Err(e) = written {
            log::debug!("cannot write {}: {e}", self.path.display());
        }
    }
}

fn describe_holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    match serde_json::from_str::<Holder>(&text) {
        Ok(h) => {
            let started = crate::epoch::time(h.started);
            format!(
                "run {} (pid {}, started {})",
                h.run_id,
                h.pid,
                humantime::format_rfc3339_seconds(started)
            )
        }
        Err(_) => "another runner holds its lock".to_owned(),
    }
}
