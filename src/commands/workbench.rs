//! What the run of a prepared chain stands on, set up the same way for `runner run` and
//! `runner replay` (and `skip --cascade`): runner's own path, a private scratch directory
//! for each attempt's files, the guardian that removes it should runner be killed
//! outright, and the supervisor of every process.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;

use super::prepare::Prepared;
use crate::chain::{Chain, Observer};
use crate::error::Error;
use crate::events::Events;
use crate::exec::{Guardian, Supervisor};
use crate::interrupt::Interrupt;

/// The pieces of a chain run that are not in its plan.
pub(crate) struct Workbench {
    /// The longest kill grace of the chain's tasks: the guardian's, and what
    /// `exec::finish` gives leftovers at the end.
    pub(crate) grace: Duration,
    exe: PathBuf,
    scratch: TempDir,
    supervisor: Supervisor,
}

impl Workbench {
    /// Finds runner's path, makes the scratch directory (with the empty events file of
    /// attempts that no event started) and starts the guardian.
    pub(crate) fn new(prepared: &Prepared, interrupt: Arc<Interrupt>) -> Result<Workbench, Error> {
        let grace = prepared
            .plan
            .steps
            .iter()
            .chain(prepared.plan.halt.iter())
            .map(|s| s.settings.kill_grace)
            .max()
            .unwrap_or(prepared.config.defaults.kill_grace);
        let exe = std::env::current_exe().map_err(|e| Error::io("/proc/self/exe", e))?;
        let scratch = tempfile::Builder::new()
            .prefix("runner-")
            .tempdir()
            .map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let no_events = scratch.path().join(crate::chain::NO_EVENTS);
        std::fs::write(&no_events, "{}\n").map_err(|e| Error::io(&no_events, e))?;
        // The guardian removes the scratch directory should runner be killed outright.
        let guardian = Guardian::start(grace, Some(scratch.path()));
        let supervisor = Supervisor::new(interrupt, Arc::new(guardian));
        Ok(Workbench {
            grace,
            exe,
            scratch,
            supervisor,
        })
    }

    /// The chain of `prepared`, and the scratch directory it uses: keep that until the
    /// chain is dropped (dropping the chain reaps the guardian; dropping the directory
    /// removes it).
    pub(crate) fn chain<'a>(
        self,
        prepared: &'a Prepared,
        session: &'a str,
        events: &'a Events,
        observer: &'a dyn Observer,
    ) -> (Chain<'a>, TempDir) {
        let chain = Chain {
            plan: &prepared.plan,
            config: &prepared.config,
            taskdir: &prepared.dir.path,
            job: &prepared.job,
            session,
            exe: self.exe,
            supervisor: self.supervisor,
            scratch: self.scratch.path().to_owned(),
            events,
            observer,
        };
        (chain, self.scratch)
    }
}
