//! `[runner] lock = fleet` (contract section 13): one run of a job in the whole fleet,
//! held as a PostgreSQL session-level advisory lock.
//!
//! The lock lives as long as its connection: when the holder exits, is killed, or its
//! host vanishes, the server drops the session and the lock with it, so a dead holder
//! never blocks the fleet (TCP keepalives bound how long a vanished host holds it).

use std::time::Duration;

use postgres::{Client, NoTls};

use super::fleet_url::FleetUrl;
use super::sqlite::StoreError;

/// How often `--wait` asks again for a lock another host holds.
const WAIT_SLICE: Duration = Duration::from_millis(250);

/// The advisory lock's key space: the job's name hashed by the server itself, in the
/// second of the two 32-bit keys, with runner's constant in the first.
const KEY_SPACE: i32 = 0x7275_6e01;

/// A held fleet lock; dropping it releases it (the connection closes).
pub(crate) struct FleetLock {
    _client: Box<Client>,
}

/// What asking for the lock came to.
pub(crate) enum FleetLockOutcome {
    /// Held until dropped.
    Held(FleetLock),
    /// Another process in the fleet holds it.
    Busy,
}

impl FleetLock {
    /// Takes the fleet lock of `job`; with `wait`, until it is free or `give_up` says so.
    pub(crate) fn acquire(
        url: &FleetUrl,
        job: &str,
        wait: bool,
        give_up: impl Fn() -> bool,
    ) -> Result<FleetLockOutcome, StoreError> {
        let wrap = |source| StoreError::Postgres {
            url: url.describe(),
            source,
        };
        let mut client = url.config().connect(NoTls).map_err(wrap)?;
        loop {
            let held: bool = client
                .query_one(
                    "SELECT pg_try_advisory_lock($1, hashtext($2))",
                    &[&KEY_SPACE, &job],
                )
                .map_err(wrap)?
                .get(0);
            if held {
                return Ok(FleetLockOutcome::Held(FleetLock {
                    _client: Box::new(client),
                }));
            }
            if !wait || give_up() {
                return Ok(FleetLockOutcome::Busy);
            }
            std::thread::sleep(WAIT_SLICE);
        }
    }
}
