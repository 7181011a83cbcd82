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
//! it expects a pause (`Store::lull`), so that a checkpoint can run while nothing waits
//! and finish before the next writes, which lets the WAL start over.
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

/// The thread that checkpoints the store; dropping it lets the thread end and waits for it.
pub(crate) struct Checkpointer {
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// A checkpointer for the database at `path` (which exists: the recorder just opened
    /// it), or `None` when it cannot have its own connection or thread.
    pub(crate) fn start(path: &Path) -> Option<Checkpointer> {
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
            .spawn(move || checkpoint_when_woken(&conn, &woken));
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

/// Runs a passive checkpoint at each wake-up until the recorder hangs up.
fn checkpoint_when_woken(conn: &Connection, woken: &Receiver<()>) {
    while woken.recv().is_ok() {
        // Busy (another process checkpointing, a reader on an old snapshot) is fine: the
        // next wake-up tries again, and the WAL is read correctly however long it is.
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        });
        match done {
            Ok((busy, frames, copied)) => {
                log::trace!("checkpoint: busy {busy}, {copied} of {frames} WAL frames copied");
            }
            Err(e) => log::debug!("cannot checkpoint the run store: {e}"),
        }
    }
}
