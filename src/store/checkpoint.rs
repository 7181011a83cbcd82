//! Checkpoints of a chain's or the daemon's store, on a thread and connection of their
//! own, so that the writer's commits never wait for one.
//!
//! SQLite checkpoints a WAL file from the connection whose commit took it past 1,000
//! frames: that commit then also syncs the WAL to disk, copies its pages into the
//! database and syncs that too. On the chain's connection this was several milliseconds
//! every two hundred tasks, the largest single cost of recording a chain of trivial
//! tasks. The recorder moves its connection's own threshold up to a bound (see
//! `WRITER_WAL_FRAMES` in `writer.rs`: beside a stream of commits a passive checkpoint
//! never copies the whole WAL, and only the writer's own checkpoint lets it start over)
//! and wakes a [`Checkpointer`] every [`COMMITS_PER_CHECKPOINT`] commits, which runs a
//! `PASSIVE` checkpoint from its own connection while the chain goes on (a passive
//! checkpoint takes no lock that a writer or reader waits for). Nothing about durability
//! changes: commits are the same, and a checkpoint only moves what is already in the WAL.
//!
//! The daemon's connection does the same with a larger bound (`Store::for_many_writes`):
//! it wakes the checkpointer every `BATCHES_PER_CHECKPOINT` batches it writes, and when
//! it expects a pause (`Store::lull`). A daemon writes all the time, so its checkpointer
//! also lets the WAL start over itself ([`Restart`]): once the WAL is long and a passive
//! checkpoint has just copied it, a `RESTART` checkpoint takes the write lock, syncs and
//! copies the few frames written meanwhile, and leaves the WAL to start over at the next
//! commit. The daemon's loop then waits only for those few frames and two syncs, instead
//! of copying the whole WAL itself between two of its batches: on a disk whose syncs are
//! slow, that copy was the longest pause of its loop (30 to 130 ms every few seconds at
//! a thousand runs a second).
//!
//! If the second connection cannot be opened, or its thread not started, there is no
//! checkpointer and the writer's connection keeps SQLite's own checkpoints.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags};

/// How many commits of the recorder go between two checkpoints: a chain step writes about
/// five pages, so this keeps the WAL near SQLite's own 1,000-frame threshold.
pub(crate) const COMMITS_PER_CHECKPOINT: u32 = 200;

/// Whether a checkpointer also lets the WAL start over, and from how many frames on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Restart {
    /// Only passive checkpoints: the writer's own checkpoint at its bound restarts the
    /// WAL (a chain, whose thread would rather pay for that once in a while than wait
    /// for another thread's lock).
    Never,
    /// After a passive checkpoint that copied a WAL of at least this many frames, a
    /// `RESTART` checkpoint (the daemon).
    From(i64),
}

/// How long a restart waits for the write lock: a few of the daemon's transactions.
const RESTART_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// The thread that checkpoints the store; dropping it lets the thread end and waits for it.
pub(crate) struct Checkpointer {
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// A checkpointer for the database at `path` (which exists: the recorder just opened
    /// it), or `None` when it cannot have its own connection or thread.
    pub(crate) fn start(path: &Path, restart: Restart) -> Option<Checkpointer> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let conn = match Connection::open_with_flags(path, flags) {
            Ok(conn) => conn,
            Err(e) => {
                log::debug!("no checkpoints apart from the run store's commits: {e}");
                return None;
            }
        };
        // One wake-up waiting is enough: a checkpoint catches up with every commit before it.
        let (wake, woken) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("checkpoint".to_owned())
            .spawn(move || checkpoint_when_woken(&conn, &woken, restart));
        match thread {
            Ok(thread) => Some(Checkpointer {
                wake: Some(wake),
                thread: Some(thread),
            }),
            Err(e) => {
                log::debug!("no checkpoint thread ({e}); the run store's commits checkpoint");
                None
            }
        }
    }

    /// Asks for a checkpoint soon; never waits.
    pub(crate) fn wake(&self) {
        if let Some(wake) = &self.wake {
            // Full: a checkpoint is asked for already; gone: nothing to be done.
            let _ = wake.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    /// Lets the thread end (after the checkpoint under way, if any) and closes its
    /// connection before the recorder's, so the recorder's close is the last one, which
    /// checkpoints what is left as before.
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs a passive checkpoint at each wake-up until the recorder hangs up, and a restart
/// after it when `restart` says so.
fn checkpoint_when_woken(conn: &Connection, woken: &Receiver<()>, restart: Restart) {
    // A restart waits this long for the writer's transaction under way to end (a passive
    // checkpoint never waits); if it is still busy, it did no more than a passive
    // checkpoint, and the next wake-up tries again.
    if let Err(e) = conn.busy_timeout(RESTART_WAIT) {
        log::debug!("cannot set how long the run store's checkpoints wait: {e}");
    }
    while woken.recv().is_ok() {
        // Busy (another process checkpointing, a reader on an old snapshot) is fine: the
        // next wake-up tries again, and the WAL is read correctly however long it is.
        let Some((frames, copied)) = checkpoint(conn, "PASSIVE") else {
            continue;
        };
        if let Restart::From(at) = restart
            && frames >= at
            && copied == frames
        {
            checkpoint(conn, "RESTART");
        }
    }
}

/// A checkpoint in `mode`: the WAL's frames and how many of them are in the database
/// now, or `None` when it was busy or failed.
fn checkpoint(conn: &Connection, mode: &str) -> Option<(i64, i64)> {
    let done = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    });
    match done {
        Ok((busy, frames, copied)) => {
            log::trace!("checkpoint {mode}: busy {busy}, {copied} of {frames} WAL frames copied");
            (busy == 0).then_some((frames, copied))
        }
        Err(e) => {
            log::debug!("cannot checkpoint the run store: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The WAL's size in frames of a 4 KiB page, from its file's length.
    fn wal_frames(db: &Path) -> u64 {
        let wal = db.with_extension("sqlite3-wal");
        std::fs::metadata(wal).map_or(0, |m| m.len().saturating_sub(32) / (24 + 4096))
    }

    #[test]
    fn under_commits_that_never_pause_the_thread_lets_the_wal_start_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.sqlite3");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                 PRAGMA wal_autocheckpoint = 0;
                 CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB);",
            )
            .unwrap();
        let checkpointer = Checkpointer::start(&path, Restart::From(200)).expect("started");
        // Each commit writes four or five pages (2,700 frames in all); the writer's own
        // connection never checkpoints, so without the thread's restarts the WAL would
        // hold every frame written.
        for i in 0..600 {
            writer
                .execute(
                    "INSERT INTO t (v) VALUES (zeroblob(10000))",
                    rusqlite::params![],
                )
                .unwrap();
            if i % 5 == 0 {
                checkpointer.wake();
                // The thread wakes while the writer goes on; a restart needs the write
                // lock free for a moment, as between the daemon's batches.
                std::thread::sleep(std::time::Duration::from_micros(300));
            }
        }
        drop(checkpointer);
        let frames = wal_frames(&path);
        assert!(
            frames < 1_000,
            "the WAL grew to {frames} frames: restarted from 200 on, it stays near that"
        );
        let count: i64 = writer
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 600, "every commit is there");
    }
}
