//! Taking a finished run back up (`runner replay`, `runner skip --cascade`): the run
//! returns to `runs_running` under the resuming process, and its instances change state.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::model::InstanceStatus;
use super::owner::Owner;
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
