//! Taking a finished run back up (`runner replay`, `runner skip --cascade`): the run
//! returns to `runs_running` under the resuming process, and its instances change state.
//!
//! With a fleet database, each change is made there too ([`FleetCopy`]), so that every
//! host sees a skipped or replayed instance; where the database is away, the run is
//! marked in the local store and sent whole once it answers, as a run recorded while it
//! was away is.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::fleet_url::FleetUrl;
use super::location::Location;
use super::model::InstanceStatus;
use super::owner::Owner;
use super::postgres::PgStore;
use super::sqlite::{Store, StoreError};

impl Store {
    /// Moves a finished run back to `runs_running`, owned by `owner`, in one
    /// transaction: dsari's tools see it running again until it ends once more.
    pub(crate) fn reopen_run(&mut self, run_id: &str, owner: &Owner) -> Result<(), StoreError> {
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO runs_running (job_name, run_id, schedule_time, start_time,
                    trigger_type, trigger_data, run_data)
                 SELECT job_name, run_id, schedule_time, start_time, trigger_type,
                    trigger_data, run_data FROM runs WHERE run_id = ?1",
                [run_id],
            )?;
            tx.execute("DELETE FROM runs WHERE run_id = ?1", [run_id])?;
            tx.execute(
                "UPDATE run_meta SET status = 'running', pid = ?2, pid_start = ?3, boot_id = ?4
                 WHERE run_id = ?1",
                params![run_id, owner.pid, owner.start_ticks, owner.boot_id],
            )?;
            tx.commit()
        })();
        result.map_err(|e| self.wrap(e))
    }

    /// The event session a run was recorded in.
    pub(crate) fn run_session(&self, run_id: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT session FROM run_meta WHERE run_id = ?1",
                [run_id],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.wrap(e))
    }

    /// Sets the status of instance `name#instance` of a run.
    pub(crate) fn set_status_of(
        &mut self,
        run_id: &str,
        name: &str,
        instance: u32,
        status: InstanceStatus,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE task_instances SET status = ?4
                 WHERE run_id = ?1 AND name = ?2 AND instance = ?3",
                params![run_id, name, instance, status.as_str()],
            )
            .map(drop)
            .map_err(|e| self.wrap(e))
    }
}

/// The fleet database's copy of a run that replay or skip changes in the local store.
pub(crate) struct FleetCopy {
    url: Option<FleetUrl>,
    fleet: Option<PgStore>,
    run_id: String,
}

impl FleetCopy {
    /// Connects to the fleet database named by `location`, if any (bounded by the
    /// connect timeout); one warning, and the run marked to be sent, when it is away.
    pub(crate) fn open(
        location: &Location,
        host: &str,
        local: &mut Store,
        run_id: &str,
    ) -> FleetCopy {
        let mut copy = FleetCopy {
            url: location.fleet.clone(),
            fleet: None,
            run_id: run_id.to_owned(),
        };
        if let Some(url) = &copy.url {
            match PgStore::open(url, host) {
                Ok(pg) => copy.fleet = Some(pg),
                Err(e) => copy.away(local, &e),
            }
        }
        copy
    }

    /// Sets an instance's status here and in the fleet.
    pub(crate) fn set_status_of(
        &mut self,
        local: &mut Store,
        name: &str,
        instance: u32,
        status: InstanceStatus,
    ) -> Result<(), StoreError> {
        local.set_status_of(&self.run_id, name, instance, status)?;
        let run_id = self.run_id.clone();
        self.mirror(local, |pg| {
            pg.set_status_of(&run_id, name, instance, status)
        });
        Ok(())
    }

    /// Takes the run back up here and in the fleet.
    pub(crate) fn reopen_run(
        &mut self,
        local: &mut Store,
        owner: &Owner,
    ) -> Result<(), StoreError> {
        local.reopen_run(&self.run_id, owner)?;
        let run_id = self.run_id.clone();
        self.mirror(local, |pg| pg.reopen_run(&run_id, owner));
        Ok(())
    }

    /// Applies `change` to the fleet's copy; `Ok(false)` (the run is not there, not yet
    /// sent) and a failure both leave the run to be sent whole.
    fn mirror(
        &mut self,
        local: &mut Store,
        change: impl FnOnce(&mut PgStore) -> Result<bool, StoreError>,
    ) {
        let Some(pg) = self.fleet.as_mut() else {
            return;
        };
        match change(pg) {
            Ok(true) => {}
            Ok(false) => {
                self.fleet = None;
                self.mark(local);
            }
            Err(e) => self.away(local, &e),
        }
    }

    fn away(&mut self, local: &mut Store, e: &StoreError) {
        self.fleet = None;
        super::fleet_url::warn_away(&format!(
            "{}; run {} is changed in {} and sent there once it answers",
            crate::logging::one_line(e),
            self.run_id,
            local.path().display()
        ));
        self.mark(local);
    }

    fn mark(&mut self, local: &mut Store) {
        if let Err(e) = local.mark_fleet_pending(&self.run_id) {
            log::debug!("cannot mark run {} to be sent later: {e}", self.run_id);
        }
    }
}

impl PgStore {
    /// As [`Store::reopen_run`], in the fleet; whether the run was there.
    pub(crate) fn reopen_run(&mut self, run_id: &str, owner: &Owner) -> Result<bool, StoreError> {
        let result = (|| {
            let (client, _) = self.client_mut();
            let mut tx = client.transaction()?;
            tx.execute(
                "INSERT INTO runs_running (job_name, run_id, schedule_time, start_time,
                    trigger_type, trigger_data, run_data)
                 SELECT job_name, run_id, schedule_time, start_time, trigger_type,
                    trigger_data, run_data FROM runs WHERE run_id = $1::text::uuid
                 ON CONFLICT (run_id) DO NOTHING",
                &[&run_id],
            )?;
            tx.execute("DELETE FROM runs WHERE run_id = $1::text::uuid", &[&run_id])?;
            let found = tx.execute(
                "UPDATE run_meta SET status = 'running', pid = $2, pid_start = $3, boot_id = $4
                 WHERE run_id = $1::text::uuid",
                &[
                    &run_id,
                    &(owner.pid as i32),
                    &owner.start_ticks,
                    &owner.boot_id,
                ],
            )?;
            tx.commit()?;
            Ok(found > 0)
        })();
        result.map_err(|e| self.wrap(e))
    }

    /// As [`Store::set_status_of`], in the fleet; whether the instance was there.
    pub(crate) fn set_status_of(
        &mut self,
        run_id: &str,
        name: &str,
        instance: u32,
        status: InstanceStatus,
    ) -> Result<bool, StoreError> {
        let (client, _) = self.client_mut();
        client
            .execute(
                "UPDATE task_instances SET status = $4
                 WHERE run_id = $1::text::uuid AND name = $2 AND instance = $3",
                &[&run_id, &name, &(instance as i32), &status.as_str()],
            )
            .map(|n| n > 0)
            .map_err(|e| self.wrap(e))
    }
}
