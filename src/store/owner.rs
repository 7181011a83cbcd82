//! Which process is recording a run, so that a reader can tell `running` from `lost`.
//!
//! A pid alone is not enough: after a crash and a reboot, or simply a long time, another
//! process may carry the same pid. The owner is the pid plus the process's start time
//! (in clock ticks since boot, from `/proc/PID/stat`) plus the boot id.

/// The identity of a live process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    /// Its pid.
    pub(crate) pid: u32,
    /// Its start time in clock ticks since boot, if known.
    pub(crate) start_ticks: Option<i64>,
    /// The boot it ran in, if known.
    pub(crate) boot_id: Option<String>,
}

impl Owner {
    /// This process.
    pub(crate) fn current() -> Owner {
        let pid = std::process::id();
        Owner {
            pid,
            start_ticks: start_ticks(pid),
            boot_id: Some(crate::state::boot_id()),
        }
    }

    /// Whether that process still exists: same boot, same pid, same start time.
    pub(crate) fn is_alive(&self) -> bool {
        if let Some(boot) = &self.boot_id
            && *boot != crate::state::boot_id()
        {
            return false;
        }
        match (start_ticks(self.pid), self.start_ticks) {
            (None, _) => false,
            (Some(now), Some(then)) => now == then,
            (Some(_), None) => true,
        }
    }
}

/// Field 22 of `/proc/PID/stat`: when the process started, in ticks since boot.
fn start_ticks(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses; fields after the
    // last ')' start with field 3.
    let rest = stat.rsplit_once(')')?.1;
    let state = rest.split_whitespace().next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let me = Owner::current();
        assert!(me.start_ticks.is_some());
        assert!(me.is_alive());
        let impostor = Owner {
            start_ticks: me.start_ticks.map(|t| t + 1),
            ..me.clone()
        };
        assert!(!impostor.is_alive());
        let other_boot = Owner {
            boot_id: Some("another-boot".to_owned()),
            ..me
        };
        assert!(!other_boot.is_alive());
    }
}
