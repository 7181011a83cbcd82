//! The SQLite store (`runner.sqlite3`, or dsari's file; see `location`), WAL, one
//! transaction per state change.
//!
//! This is the only place with SQL. Its API is deliberately small (begin/finish a run,
//! an instance, an attempt; list and show; prune) so that a second backend can offer the
//! same calls. A finished run moves from `runs_running` to `runs` in one transaction,
//! exactly as dsari does it.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use super::checkpoint::{Checkpointer, Restart};
use super::location::Location;
use super::model::{InstanceStatus, RunStatus};
use super::owner::Owner;
use super::schema;
use crate::record::EventWait;

/// How long a write waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("cannot use the run store {}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer runner.
    #[error("{}: schema version {found} is newer than this runner understands ({})", path.display(), schema::CURRENT)]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: usize,
    },
    /// No run id starts with the prefix.
    #[error("no recorded run matches \"{prefix}\"")]
    NotFound {
        /// What was asked for.
        prefix: String,
    },
    /// `--database` names a store runner cannot use (yet).
    #[error("database \"{url}\": {reason}")]
    Unsupported {
        /// What was given.
        url: String,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// A PostgreSQL connection string that cannot be read (shown without itself, since
    /// it may hold a password).
    #[error("database: {reason}")]
    BadUrl {
        /// Why.
        reason: String,
    },
    /// PostgreSQL failed.
    #[error("cannot use the fleet database {url}")]
    Postgres {
        /// The database, without its password.
        url: String,
        /// The client's error.
        #[source]
        source: postgres::Error,
    },
    /// A record names a file outside its place: a job name or run id that is not one
    /// plain file name, or a stored path that is not the run's own (see `paths.rs`).
    #[error("run {run_id:?}: its {what} {value:?} {reason}; runner reads no file for it")]
    UnsafePath {
        /// The run whose record it is.
        run_id: String,
        /// Which field (`job name`, `run id`, `task name`, `output file`, ...).
        what: &'static str,
        /// What the field holds.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The fleet database did not answer a moment ago; it is not asked again yet.
    #[error("the fleet database {url} is unreachable")]
    FleetAway {
        /// The database, without its password.
        url: String,
    },
    /// Several runs start with the prefix.
    #[error("\"{prefix}\" matches several runs: {}", candidates.join(", "))]
    Ambiguous {
        /// What was asked for.
        prefix: String,
        /// Some of the matching ids.
        candidates: Vec<String>,
    },
}

/// A run being started.
#[derive(Debug)]
pub(crate) struct NewRun<'a> {
    /// Its id.
    pub(crate) run_id: &'a str,
    /// Its job.
    pub(crate) job: &'a str,
    /// When it was due.
    pub(crate) schedule_time: SystemTime,
    /// When it started.
    pub(crate) start_time: SystemTime,
    /// What started it.
    pub(crate) trigger_type: &'a str,
    /// Details of the trigger.
    pub(crate) trigger_data: &'a serde_json::Value,
    /// Its event session.
    pub(crate) session: &'a str,
    /// Where its output files go.
    pub(crate) output_dir: &'a Path,
    /// The process recording it.
    pub(crate) owner: &'a Owner,
    /// Its tasks in plan order: (name, file).
    pub(crate) tasks: &'a [(&'a str, &'a str)],
    /// The host it runs on.
    pub(crate) host: &'a str,
}

/// A run's end, for [`Store::finish_runs`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunEnd<'a> {
    /// Its id.
    pub(crate) run_id: &'a str,
    /// How it ended.
    pub(crate) status: RunStatus,
    /// Its exit code.
    pub(crate) exit_code: Option<i32>,
    /// When it ended.
    pub(crate) stop_time: Option<SystemTime>,
    /// The event its end fires (a daemon job that succeeded), written in the same
    /// transaction: a run recorded as ended has fired its event, even if runner is
    /// killed the moment after.
    pub(crate) event: Option<super::events::NewEvent<'a>>,
}

/// An attempt's end, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AttemptEnding {
    /// The attempt's row.
    pub(crate) attempt_id: i64,
    /// Its instance's row.
    pub(crate) instance_id: i64,
    /// When it ended.
    pub(crate) stop_time: SystemTime,
    /// Exit code, if it exited.
    pub(crate) exit_code: Option<i32>,
    /// Signal, if one ended it.
    pub(crate) signal: Option<i32>,
    /// `OK`, `RETRY`, `HALT`, `EXIT`.
    #[serde(deserialize_with = "crate::record::result_word")]
    pub(crate) result: crate::record::Word,
    /// Why runner ended it.
    pub(crate) note: Option<String>,
    /// What the task wrote to `RUNNER_RESULT`.
    pub(crate) result_data: Option<serde_json::Value>,
    /// The processes it left running (`[{pid, command}]`), if any.
    pub(crate) leftovers: Option<serde_json::Value>,
    /// The instance's new status.
    pub(crate) instance_status: InstanceStatus,
    /// Whether the attempt printed anything; a silent one keeps no output file.
    pub(crate) has_output: bool,
    /// The cascade event the attempt fires, in the same transaction.
    pub(crate) cascade: Option<Cascade>,
}

/// A cascade event: a task that ended `OK` fires an event named after itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Cascade {
    /// The run's session.
    pub(crate) session: String,
    /// The task's name.
    pub(crate) name: String,
    /// What it wrote to `RUNNER_RESULT`, or `{}`.
    pub(crate) data: serde_json::Value,
    /// `cascade RUN_ID`.
    pub(crate) source: String,
}

/// An open store.
pub(crate) struct Store {
    /// The thread that checkpoints for a [`Store::for_many_writes`] connection, and the
    /// batches written since it was last woken; first, so that its connection closes
    /// before `conn`.
    checkpointer: Option<(Checkpointer, u32)>,
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
    /// Where runs without a recorded output directory (dsari's) keep their
    /// `runs/JOB/RUN_ID/output.txt`: the database file's directory, as in dsari's layout.
    pub(super) data_dir: PathBuf,
}

/// The WAL frames (pages of 4 KiB) after which a [`Store::for_many_writes`] connection
/// checkpoints by itself: about 64 MiB, a bound its checkpoint thread keeps it from
/// reaching ([`RESTART_WAL_FRAMES`]). The connection's own checkpoint copies all that
/// the thread has not and syncs two files between two of the daemon's batches: at a
/// thousand runs a second on a disk with slow syncs that paused the loop 30 to 130 ms
/// every two seconds or so.
const BUSY_WAL_FRAMES: i64 = 16_000;

/// The WAL frames (about 32 MiB) from which the checkpoint thread of a
/// [`Store::for_many_writes`] connection lets the WAL start over (see
/// [`super::checkpoint`]). Each start-over pauses the loop for two syncs (the restart's,
/// under the write lock) and one more (SQLite syncs the new WAL header at the next
/// commit), however long the WAL, so a long WAL means fewer pauses: every five seconds
/// or so at a thousand runs a second. Half the connection's own bound, so the thread has
/// seconds of tries before that is reached.
const RESTART_WAL_FRAMES: i64 = BUSY_WAL_FRAMES / 2;

/// The size a [`Store::for_many_writes`] connection cuts its WAL file back to when the
/// WAL starts over: a little more than it fills up to before the thread restarts it, so
/// that the file is not shrunk and grown again each time.
const BUSY_WAL_KEPT: i64 = 36 * 1024 * 1024;

/// How many batches a [`Store::for_many_writes`] connection writes between two wake-ups
/// of its checkpoint thread: at a thousand runs a second, a checkpoint every twentieth of
/// a second or so, each of a few hundred frames.
const BATCHES_PER_CHECKPOINT: u32 = 50;

/// How often a [`Store::for_many_writes`] connection looks again at a lock it wants:
/// every [`BRIEF_POLL`] for the first [`BRIEF_POLLS`] times, then every [`LONG_POLL`].
const BRIEF_POLL: Duration = Duration::from_millis(1);
const BRIEF_POLLS: u32 = 50;
const LONG_POLL: Duration = Duration::from_millis(10);

/// The busy handler of a [`Store::for_many_writes`] connection: the lock it waits for is
/// mostly its checkpoint thread's restart of the WAL, held for a few milliseconds, and
/// SQLite's own handler (asleep for 1, 2, 5, 10, 15, 20 ms in turn) kept the daemon's loop
/// waiting up to twice as long as the lock was held. Gives up after about
/// [`BUSY_TIMEOUT`], as the other connections do.
fn wait_briefly(tries: i32) -> bool {
    let tries = u32::try_from(tries).unwrap_or(0);
    let waited =
        BRIEF_POLL * tries.min(BRIEF_POLLS) + LONG_POLL * tries.saturating_sub(BRIEF_POLLS);
    if waited >= BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(if tries < BRIEF_POLLS {
        BRIEF_POLL
    } else {
        LONG_POLL
    });
    true
}

/// Seconds since the epoch, as dsari stores times.
pub(crate) use crate::epoch::seconds as epoch;

impl Store {
    /// Opens (creating and migrating as needed) the store at `location`.
    pub(crate) fn open_at(location: &Location) -> Result<Store, StoreError> {
        Store::open_file(location.file())
    }

    /// Opens (creating and migrating as needed) the store at `path`. This is the first
    /// write to a file dsari made: runner's tables are added beside dsari's, and the
    /// file switches to WAL.
    pub(crate) fn open_file(path: &Path) -> Result<Store, StoreError> {
        Store::open_file_waiting(path, BUSY_TIMEOUT)
    }

    /// [`Store::open_file`], waiting at most `busy` for another process's lock (the
    /// recorder notices a locked store at once and retries by itself).
    pub(crate) fn open_file_waiting(path: &Path, busy: Duration) -> Result<Store, StoreError> {
        let path = path.to_owned();
        let wrap = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        // As dsari does for `database.file`: its directory is made when missing.
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.exists()
        {
            let made = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent);
            if let Err(e) = made {
                log::debug!("cannot create {}: {e}", parent.display());
            }
        }
        // A symlink planted where the database belongs is refused, not followed.
        let flags = OpenFlags::default() | OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let mut conn = Connection::open_with_flags(&path, flags).map_err(wrap)?;
        conn.busy_timeout(busy).map_err(wrap)?;
        // Processes that create a new file at once (twenty `runner fire`s at boot) can get
        // SQLITE_BUSY from the switch to WAL or the first migration without SQLite's busy
        // handler being called (it is not, where waiting could deadlock): those steps are
        // repeated, with a short pause, within the same bound as the busy timeout.
        let deadline = std::time::Instant::now() + busy;
        loop {
            match prepare(&mut conn) {
                Ok(migrated) => {
                    return match migrated {
                        Ok(()) => Ok(Store::new(conn, path)),
                        Err(found) => Err(StoreError::NewerSchema { path, found }),
                    };
                }
                Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(
                        10 + u64::from(rand::random::<u8>() % 40),
                    ));
                }
                Err(e) => return Err(wrap(e)),
            }
        }
    }

    fn new(conn: Connection, path: PathBuf) -> Store {
        let data_dir = path.parent().map(Path::to_owned).unwrap_or_default();
        Store {
            checkpointer: None,
            conn,
            path,
            data_dir,
        }
    }

    /// Tunes this connection for a writer that commits all the time (the daemon): its
    /// commits checkpoint only past [`BUSY_WAL_FRAMES`] frames instead of 1,000, a
    /// thread of its own checkpoints every [`BATCHES_PER_CHECKPOINT`] batches and when
    /// the writer expects a pause ([`Store::lull`]) and lets the WAL start over from
    /// [`RESTART_WAL_FRAMES`] on, and the connection waits for a lock in steps of a
    /// millisecond ([`wait_briefly`]).
    ///
    /// Every checkpoint syncs the WAL and the database file and copies each page the WAL
    /// holds; at 1,000 runs a second SQLite's default made a dozen checkpoints a second
    /// on the daemon's own thread, whose syncs alone were a tenth of its CPU, and which
    /// copied the same index pages again each time. The thread's passive checkpoints copy
    /// most of the WAL while the daemon goes on; the connection's own, at the bound, then
    /// has little left to copy, and lets the WAL start over (see [`super::checkpoint`]).
    /// Readers and durability are as before (a commit is in the WAL); the WAL file is cut
    /// back to [`BUSY_WAL_KEPT`] when it starts over.
    pub(crate) fn for_many_writes(&mut self, checkpoints: bool) {
        if checkpoints && self.checkpointer.is_none() {
            self.checkpointer =
                Checkpointer::start(&self.path, Restart::From(RESTART_WAL_FRAMES)).map(|c| (c, 0));
        }
        let tuned = self
            .conn
            .busy_handler(Some(wait_briefly))
            .and_then(|()| {
                self.conn.pragma_update_and_check(
                    None,
                    "wal_autocheckpoint",
                    BUSY_WAL_FRAMES,
                    |r| r.get::<_, i64>(0),
                )
            })
            .and_then(|_| {
                self.conn
                    .pragma_update(None, "journal_size_limit", BUSY_WAL_KEPT)
            });
        if let Err(e) = tuned {
            log::debug!(
                "cannot tune {} for frequent commits: {e}",
                self.path.display()
            );
        }
    }

    /// Keeps this connection's page cache to at most `kib` KiB.
    pub(crate) fn limit_cache(&mut self, kib: i64) {
        if let Err(e) = self.conn.pragma_update(None, "cache_size", -kib) {
            log::debug!("cannot size the page cache of {}: {e}", self.path.display());
        }
    }

    /// Nothing more will be written for a while: a checkpoint now, on the checkpoint
    /// thread (if [`Store::for_many_writes`] started one), never waiting for it.
    pub(crate) fn lull(&mut self) {
        if let Some((checkpointer, batches)) = &mut self.checkpointer {
            *batches = 0;
            checkpointer.wake();
        }
    }

    /// Counts a batch written, waking the checkpoint thread every
    /// [`BATCHES_PER_CHECKPOINT`].
    fn wrote_batch(&mut self) {
        if let Some((checkpointer, batches)) = &mut self.checkpointer {
            *batches += 1;
            if *batches >= BATCHES_PER_CHECKPOINT {
                *batches = 0;
                checkpointer.wake();
            }
        }
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the store at `location` for reading only; `None` when the file does not
    /// exist. Reading never changes the file: no migration, no journal-mode switch, and
    /// runner's tables that a dsari (or older) file lacks are stood in for by empty
    /// temporary tables, which live in this connection only.
    pub(crate) fn read_only(location: &Location) -> Result<Option<Store>, StoreError> {
        let path = location.file().to_owned();
        if !path.exists() {
            return Ok(None);
        }
        let wrap = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(wrap)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(wrap)?;
        schema::stand_in_for_missing(&conn).map_err(wrap)?;
        Ok(Some(Store::new(conn, path)))
    }

    /// One statement outside any explicit transaction (SQLite makes it one).
    fn execute(&self, sql: &str, params: impl rusqlite::Params) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute(params))
            .map(drop)
            .map_err(|e| self.wrap(e))
    }

    pub(super) fn wrap(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Runs `write` in an `IMMEDIATE` transaction whose `BEGIN` and `COMMIT` are cached
    /// statements (a chain step's transaction and the daemon's batches, a few hundred a
    /// second, where parsing them each time showed), and rolls it back when `write` or
    /// the commit fails.
    fn immediate<T>(
        &self,
        write: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let result = write(&self.conn).and_then(|value| {
            self.conn.prepare_cached("COMMIT")?.execute([])?;
            Ok(value)
        });
        if result.is_err()
            && !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            log::debug!("cannot roll back in {}: {e}", self.path.display());
        }
        result
    }

    /// Records a starting run: `runs_running`, its owner and its task instances, at once.
    pub(crate) fn begin_run(&mut self, run: &NewRun<'_>) -> Result<(), StoreError> {
        self.immediate(|tx| insert_run(tx, run))
            .map_err(|e| self.wrap(e))
    }

    /// Records the runs that start together in one transaction, each in a savepoint of
    /// its own so that one refused row leaves the others. If the transaction cannot be
    /// had or committed, each run is recorded on its own, as with [`Store::begin_run`].
    pub(crate) fn begin_runs(&mut self, runs: &[NewRun<'_>]) -> Vec<Result<(), StoreError>> {
        self.batch(runs, insert_run, Store::begin_run)
    }

    /// Moves several ended runs to `runs`, as [`Store::begin_runs`] records starts.
    /// An end's event is written with it; those waiting for events hear of them once
    /// the ends are committed.
    pub(crate) fn finish_runs(&mut self, ends: &[RunEnd<'_>]) -> Vec<Result<(), StoreError>> {
        let written = self.batch(ends, move_to_runs, Store::finish_end);
        let fired = ends
            .iter()
            .zip(&written)
            .any(|(end, written)| end.event.is_some() && written.is_ok());
        if fired {
            super::events::notify(self.notify_dir());
        }
        written
    }

    /// Applies `write` to each item in one transaction, a savepoint each; falls back to
    /// `alone` for each item when the transaction fails as a whole.
    ///
    /// The transaction is tried first without savepoints: a savepoint copies every page
    /// its item touches into a statement journal, which made most of a batch's cost. An
    /// item refused there rolls the whole transaction back (nothing of it is kept), and
    /// the batch is written again, a savepoint each.
    fn batch<T>(
        &mut self,
        items: &[T],
        write: impl Fn(&Connection, &T) -> rusqlite::Result<()>,
        alone: impl Fn(&mut Store, &T) -> Result<(), StoreError>,
    ) -> Vec<Result<(), StoreError>> {
        self.wrote_batch();
        if items.len() == 1 {
            return vec![alone(self, &items[0])];
        }
        let at_once = self.immediate(|tx| items.iter().try_for_each(|item| write(tx, item)));
        match at_once {
            Ok(()) => return items.iter().map(|_| Ok(())).collect(),
            Err(e) => log::debug!(
                "cannot write {} records at once ({e}); a savepoint each",
                items.len()
            ),
        }
        let mut failed = Vec::new();
        let committed = (|| {
            let mut tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            for item in items {
                let sp = tx.savepoint()?;
                failed.push(write(&sp, item).err());
                if failed.last().is_some_and(Option::is_none) {
                    sp.commit()?;
                }
            }
            tx.commit()
        })();
        match committed {
            Ok(()) => failed
                .into_iter()
                .map(|e| e.map_or(Ok(()), |e| Err(self.wrap(e))))
                .collect(),
            Err(e) => {
                log::debug!(
                    "cannot write {} records at once ({e}); one by one",
                    items.len()
                );
                items.iter().map(|item| alone(self, item)).collect()
            }
        }
    }

    /// Adds the planned task instances of a run someone else started (a daemon run of a
    /// chain job).
    pub(crate) fn add_instances(
        &mut self,
        run_id: &str,
        tasks: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            insert_instances(&tx, run_id, tasks)?;
            tx.commit()
        })();
        result.map_err(|e| self.wrap(e))
    }

    /// The id of instance `name#instance` of a run, creating it (after every planned
    /// task) if the plan did not have it, as for the halt task.
    pub(crate) fn instance_id(
        &mut self,
        run_id: &str,
        name: &str,
        file: &str,
        instance: u32,
    ) -> Result<i64, StoreError> {
        let found = self
            .conn
            .prepare_cached(
                "SELECT id FROM task_instances WHERE run_id = ?1 AND name = ?2 AND instance = ?3",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![run_id, name, instance], |r| r.get::<_, i64>(0))
                    .optional()
            })
            .map_err(|e| self.wrap(e))?;
        if let Some(id) = found {
            return Ok(id);
        }
        self.conn
            .prepare_cached(
                "INSERT INTO task_instances (run_id, name, file, instance, position, status)
                 VALUES (?1, ?2, ?3, ?4,
                    (SELECT coalesce(max(position), -1) + 1 FROM task_instances WHERE run_id = ?1),
                    'unstarted')",
            )
            .and_then(|mut stmt| stmt.execute(params![run_id, name, file, instance]))
            .map_err(|e| self.wrap(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The ids of every task instance of a run: (name, instance, id).
    pub(crate) fn instance_ids(&self, run_id: &str) -> Result<Vec<(String, u32, i64)>, StoreError> {
        let found = self
            .conn
            .prepare_cached("SELECT name, instance, id FROM task_instances WHERE run_id = ?1")
            .and_then(|mut stmt| {
                stmt.query_map([run_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            });
        found.map_err(|e| self.wrap(e))
    }

    /// Sets an instance's status (waiting, skipped, abandoned, ...).
    pub(crate) fn set_instance_status(
        &mut self,
        instance_id: i64,
        status: InstanceStatus,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE task_instances SET status = ?1 WHERE id = ?2",
            params![status.as_str(), instance_id],
        )
    }

    /// Records what the events of task instance `instance_id` came to (see
    /// [`crate::record::EventsWaited`]), in one transaction.
    pub(crate) fn record_instance_events(
        &mut self,
        instance_id: i64,
        since: Option<SystemTime>,
        decided: SystemTime,
        events: &[EventWait],
    ) -> Result<(), StoreError> {
        let result = (|| {
            let tx = self.conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO instance_events (instance_id, name, kind, event_id, fired_at,
                        source, waited_since, decided_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for e in events {
                    stmt.execute(params![
                        instance_id,
                        e.name,
                        e.kind,
                        e.event_id,
                        e.fired_at,
                        e.source,
                        since.map(epoch),
                        epoch(decided),
                    ])?;
                }
            }
            tx.commit()
        })();
        result.map_err(|e| self.wrap(e))
    }

    /// Records the attempts that `ended` and then, when given, an attempt starting (and
    /// its instance running), all in one transaction; returns the new attempt's id.
    ///
    /// One chain step is "the last attempt ended, the next one starts": writing both at
    /// once halves the transactions of a chain, which is most of what recording costs.
    pub(crate) fn record_attempts(
        &mut self,
        ended: &[AttemptEnding],
        starting: Option<(i64, u32, SystemTime, Option<&Path>)>,
    ) -> Result<Option<i64>, StoreError> {
        let result = self.immediate(|tx| {
            for end in ended {
                end_attempt(tx, end, end.attempt_id)?;
            }
            starting
                .map(|(instance_id, try_num, start_time, output)| {
                    start_attempt(tx, instance_id, try_num, start_time, output)
                })
                .transpose()
        });
        let id = result.map_err(|e| self.wrap(e))?;
        if ended.iter().any(|e| e.cascade.is_some()) {
            super::events::notify(self.notify_dir());
        }
        Ok(id)
    }

    /// As [`Store::record_attempts`] for the records a chain gathered (see the writer's
    /// `GATHER`): the endings of attempts written before, then attempts started since,
    /// each with its ending when it has one already, all in one transaction. Returns the
    /// new attempts' ids, in order.
    pub(crate) fn record_gathered(
        &mut self,
        ended: &[AttemptEnding],
        starts: &[GatheredStart<'_>],
    ) -> Result<Vec<i64>, StoreError> {
        let result = self.immediate(|tx| {
            for end in ended {
                end_attempt(tx, end, end.attempt_id)?;
            }
            let mut ids = Vec::with_capacity(starts.len());
            for start in starts {
                let id = match start.ending {
                    Some(end) => ended_attempt(tx, start, end)?,
                    None => start_attempt(
                        tx,
                        start.instance_id,
                        start.try_num,
                        start.started,
                        start.output,
                    )?,
                };
                ids.push(id);
            }
            Ok(ids)
        });
        let ids = result.map_err(|e| self.wrap(e))?;
        let cascades = ended.iter().chain(starts.iter().filter_map(|s| s.ending));
        if cascades.into_iter().any(|e| e.cascade.is_some()) {
            super::events::notify(self.notify_dir());
        }
        Ok(ids)
    }

    /// Moves a run from `runs_running` to `runs` with its end, in one transaction.
    pub(crate) fn finish_run(
        &mut self,
        run_id: &str,
        status: RunStatus,
        exit_code: Option<i32>,
        stop_time: Option<SystemTime>,
    ) -> Result<(), StoreError> {
        self.finish_end(&RunEnd {
            run_id,
            status,
            exit_code,
            stop_time,
            event: None,
        })
    }

    /// Moves one ended run to `runs` (firing its event, if it has one) in a transaction
    /// of its own.
    fn finish_end(&mut self, end: &RunEnd<'_>) -> Result<(), StoreError> {
        self.immediate(|tx| move_to_runs(tx, end))
            .map_err(|e| self.wrap(e))
    }

    /// Sets a running run's `run_data` (the daemon's `return_data`).
    pub(crate) fn set_run_data(
        &mut self,
        run_id: &str,
        data: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE runs_running SET run_data = ?1 WHERE run_id = ?2",
            params![data.to_string(), run_id],
        )
    }

    /// Deletes the runs of `keep.job` that started before `keep.before` and are beyond
    /// the newest `keep.runs` of those or older than `keep.days`, at most `batch` at a
    /// time, and returns their output directories. Runs from `before` on (the current
    /// one) are never counted, so what is kept does not depend on whether it has
    /// finished yet.
    pub(crate) fn prune(
        &mut self,
        keep: &super::retention::Keep<'_>,
        batch: usize,
    ) -> Result<Vec<PathBuf>, StoreError> {
        let (job, keep_runs) = (keep.job, keep.runs);
        let cutoff = keep.cutoff();
        let before = epoch(keep.before);
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let victims: Vec<(String, Option<String>)> = {
                let mut stmt = tx.prepare(
                    "SELECT r.run_id, m.output_dir FROM runs r LEFT JOIN run_meta m USING (run_id)
                     WHERE r.job_name = ?1 AND r.start_time < ?5 AND (
                        r.run_id IN (SELECT run_id FROM runs WHERE job_name = ?1
                                       AND start_time < ?5
                                     ORDER BY start_time DESC LIMIT -1 OFFSET ?2)
                        OR (?3 IS NOT NULL AND r.start_time < ?3))
                     LIMIT ?4",
                )?;
                let rows = stmt.query_map(
                    params![job, keep_runs as i64, cutoff, batch as i64, before],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                rows.collect::<Result<_, _>>()?
            };
            for (run_id, _) in &victims {
                tx.prepare_cached(
                    "DELETE FROM instance_events WHERE instance_id IN
                        (SELECT id FROM task_instances WHERE run_id = ?1)",
                )?
                .execute([run_id])?;
                tx.prepare_cached(
                    "DELETE FROM attempts WHERE instance_id IN
                        (SELECT id FROM task_instances WHERE run_id = ?1)",
                )?
                .execute([run_id])?;
                tx.prepare_cached("DELETE FROM task_instances WHERE run_id = ?1")?
                    .execute([run_id])?;
                tx.prepare_cached("DELETE FROM run_meta WHERE run_id = ?1")?
                    .execute([run_id])?;
                tx.prepare_cached("DELETE FROM runs WHERE run_id = ?1")?
                    .execute([run_id])?;
            }
            tx.commit()?;
            Ok(victims
                .into_iter()
                .filter_map(|(_, dir)| dir.map(PathBuf::from))
                .collect())
        })();
        result.map_err(|e| self.wrap(e))
    }
}

fn insert_instances(tx: &Connection, run_id: &str, tasks: &[(&str, &str)]) -> rusqlite::Result<()> {
    // A daemon's command run has no tasks: no statement to prepare for every start.
    if tasks.is_empty() {
        return Ok(());
    }
    let mut insert = tx.prepare_cached(
        "INSERT INTO task_instances (run_id, name, file, instance, position, status)
         VALUES (?1, ?2, ?3, 0, ?4, 'unstarted')",
    )?;
    for (position, (name, file)) in tasks.iter().enumerate() {
        insert.execute(params![run_id, name, file, position as i64])?;
    }
    Ok(())
}

/// An attempt a chain started and recorded later, with the records gathered with it.
pub(crate) struct GatheredStart<'a> {
    pub(crate) instance_id: i64,
    pub(crate) try_num: u32,
    pub(crate) started: SystemTime,
    pub(crate) output: Option<&'a Path>,
    /// Its ending, when it ended before it was written.
    pub(crate) ending: Option<&'a AttemptEnding>,
}

/// Writes an attempt's ending (row `attempt_id`), its instance's status and its cascade
/// event, inside the caller's transaction.
fn end_attempt(tx: &Connection, end: &AttemptEnding, attempt_id: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE attempts SET stop_time = ?1, exit_code = ?2, signal = ?3,
            result = ?4, note = ?5, result_data = ?6,
            output_path = CASE WHEN ?8 THEN output_path END, leftovers = ?9
         WHERE id = ?7",
    )?
    .execute(params![
        epoch(end.stop_time),
        end.exit_code,
        end.signal,
        end.result,
        end.note,
        end.result_data.as_ref().map(|v| v.to_string()),
        attempt_id,
        end.has_output,
        end.leftovers.as_ref().map(|v| v.to_string())
    ])?;
    set_ended_status(tx, end)
}

/// Inserts an attempt that ended before its start was written (see the writer's
/// `GATHER`) as one finished row, with its instance's status and its cascade, inside
/// the caller's transaction: the row [`start_attempt`] and then [`end_attempt`] would
/// leave, in two statements fewer (the `running` status would be overwritten in the
/// same transaction anyway). Returns the attempt's id.
fn ended_attempt(
    tx: &Connection,
    start: &GatheredStart<'_>,
    end: &AttemptEnding,
) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO attempts (instance_id, try_num, start_time, output_path, stop_time,
            exit_code, signal, result, note, result_data, leftovers)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        start.instance_id,
        start.try_num,
        epoch(start.started),
        start
            .output
            .filter(|_| end.has_output)
            .map(|p| p.to_string_lossy().into_owned()),
        epoch(end.stop_time),
        end.exit_code,
        end.signal,
        end.result,
        end.note,
        end.result_data.as_ref().map(|v| v.to_string()),
        end.leftovers.as_ref().map(|v| v.to_string())
    ])?;
    let id = tx.last_insert_rowid();
    set_ended_status(tx, end)?;
    Ok(id)
}

/// The status an ending gives its instance, and its cascade event.
fn set_ended_status(tx: &Connection, end: &AttemptEnding) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE task_instances SET status = ?1 WHERE id = ?2")?
        .execute(params![end.instance_status.as_str(), end.instance_id])?;
    if let Some(cascade) = &end.cascade {
        super::events::insert_event(
            tx,
            &super::events::NewEvent {
                session: &cascade.session,
                name: &cascade.name,
                data: &cascade.data,
                source: &cascade.source,
            },
            end.stop_time,
        )?;
    }
    Ok(())
}

/// Inserts a starting attempt and marks its instance running, inside the caller's
/// transaction; returns the attempt's id.
fn start_attempt(
    tx: &Connection,
    instance_id: i64,
    try_num: u32,
    start_time: SystemTime,
    output: Option<&Path>,
) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO attempts (instance_id, try_num, start_time, output_path)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        instance_id,
        try_num,
        epoch(start_time),
        output.map(|p| p.to_string_lossy().into_owned())
    ])?;
    let id = tx.last_insert_rowid();
    tx.prepare_cached("UPDATE task_instances SET status = 'running' WHERE id = ?1")?
        .execute([instance_id])?;
    Ok(id)
}

/// WAL mode, its durability setting and the migrations, on a fresh connection.
fn prepare(conn: &mut Connection) -> rusqlite::Result<Result<(), usize>> {
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))?;
    // In WAL mode NORMAL loses at most the last transactions on power loss and never
    // corrupts the file; it keeps each state change cheap.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    schema::migrate(conn)
}

/// Whether an SQLite error says another connection holds the lock.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// The rows of a starting run (see [`Store::begin_run`]), inside the caller's transaction.
fn insert_run(tx: &Connection, run: &NewRun<'_>) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO runs_running (job_name, run_id, schedule_time, start_time,
            trigger_type, trigger_data, run_data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, '{}')",
    )?
    .execute(params![
        run.job,
        run.run_id,
        epoch(run.schedule_time),
        epoch(run.start_time),
        run.trigger_type,
        run.trigger_data.to_string(),
    ])?;
    tx.prepare_cached(
        "INSERT INTO run_meta (run_id, job_name, status, pid, pid_start, boot_id,
            session, output_dir, host)
         VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        run.run_id,
        run.job,
        run.owner.pid,
        run.owner.start_ticks,
        run.owner.boot_id,
        run.session,
        run.output_dir.to_string_lossy(),
        run.host,
    ])?;
    insert_instances(tx, run.run_id, run.tasks)
}

/// A run's move from `runs_running` to `runs` (see [`Store::finish_run`]), inside the
/// caller's transaction.
///
/// Every statement here writes one row given by value. `INSERT ... SELECT` may write
/// many, so SQLite keeps a statement journal for it: an in-memory copy of each page it
/// changes that the transaction had changed before, which in a batch of ends is most of
/// them. That copying was about 9,600 of the 68,000 instructions (callgrind) this move
/// took per run.
fn move_to_runs(tx: &Connection, end: &RunEnd<'_>) -> rusqlite::Result<()> {
    use rusqlite::types::Value;
    // Copied as stored, whatever their types: dsari's columns are untyped.
    let rows: Vec<[Value; 6]> = tx
        .prepare_cached(
            "SELECT job_name, schedule_time, start_time, trigger_type, trigger_data, run_data
             FROM runs_running WHERE run_id = ?1",
        )?
        .query_map([end.run_id], |row| {
            Ok([
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
            ])
        })?
        .collect::<rusqlite::Result<_>>()?;
    for [
        job_name,
        schedule_time,
        start_time,
        trigger_type,
        trigger_data,
        run_data,
    ] in &rows
    {
        tx.prepare_cached(
            "INSERT INTO runs (job_name, run_id, schedule_time, start_time, stop_time,
                exit_code, trigger_type, trigger_data, run_data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            job_name,
            end.run_id,
            schedule_time,
            start_time,
            end.stop_time.map(epoch),
            end.exit_code,
            trigger_type,
            trigger_data,
            run_data
        ])?;
    }
    tx.prepare_cached("DELETE FROM runs_running WHERE run_id = ?1")?
        .execute([end.run_id])?;
    let updated = tx
        .prepare_cached("UPDATE run_meta SET status = ?1 WHERE run_id = ?2")?
        .execute(params![end.status.as_str(), end.run_id])?;
    if updated == 0 {
        // A run dsari started has no row of ours yet: without one it would be judged
        // by its exit code alone, and a lost run would read as failed.
        tx.prepare_cached(
            "INSERT INTO run_meta (run_id, job_name, status)
             SELECT run_id, job_name, ?1 FROM runs WHERE run_id = ?2 LIMIT 1",
        )?
        .execute(params![end.status.as_str(), end.run_id])?;
    }
    if let Some(event) = &end.event {
        super::events::insert_event(tx, event, SystemTime::now())?;
    }
    Ok(())
}
