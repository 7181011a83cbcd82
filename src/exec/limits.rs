//! The daemon's limit on open files, and the one its runs get.
//!
//! A service manager starts the daemon with a soft limit of 1024 open files (systemd's
//! default) and a far higher hard limit. Each run in progress holds a few of the daemon's
//! descriptors (its pidfd, its `output.txt`, ...), so some three hundred long runs at once
//! ran out: output files could not be made and `return_data.json` could not be read. The
//! daemon raises its own soft limit to the hard one ([`raise_open_files`]), as systemd
//! recommends for services that need many descriptors. Its runs get the soft limit back
//! before they exec (see `pgroup::child_main`): a program that uses `select()` breaks on a
//! descriptor past 1024, and some close every descriptor up to the limit at start, so
//! they see the limit they would see without runner.

use std::sync::OnceLock;

/// The highest soft limit runner sets itself: a hard limit of "unlimited" is not a
/// number of descriptors anyone needs.
const MOST: libc::rlim_t = 1 << 20;

/// The limit the daemon was started with, once it raised its own: what its children get.
static FOR_CHILDREN: OnceLock<libc::rlimit> = OnceLock::new();

/// Raises the soft limit on open files to the hard one (at most [`MOST`]) and remembers
/// the one before for the processes runner starts from now on. Returns the soft limits
/// before and after, when it raised it.
pub(crate) fn raise_open_files() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given, which lives on this stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    let wanted = limit.rlim_max.min(MOST);
    if wanted <= limit.rlim_cur {
        return None;
    }
    let raised = libc::rlimit {
        rlim_cur: wanted,
        rlim_max: limit.rlim_max,
    };
    // Remembered first: a process spawned meanwhile gets the old limit, which is its own.
    if FOR_CHILDREN.set(limit).is_err() {
        return None;
    }
    // SAFETY: setrlimit reads the struct it is given, which lives on this stack.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        log::warn!(
            "cannot raise the limit on open files from {} ({}); many runs at once may run out",
            limit.rlim_cur,
            std::io::Error::last_os_error()
        );
        return None;
    }
    Some((limit.rlim_cur, wanted))
}

/// The limit on open files that a process runner starts gets before it execs, when
/// runner raised its own; `None` when it did not (the child inherits runner's).
pub(crate) fn for_children() -> Option<libc::rlimit> {
    FOR_CHILDREN.get().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_raised_once_and_children_get_the_one_before() {
        let mut before = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut before) },
            0
        );
        match raise_open_files() {
            Some((old, new)) => {
                assert_eq!(old, before.rlim_cur);
                assert_eq!(new, before.rlim_max.min(MOST));
                let child = for_children().expect("remembered");
                assert_eq!(child.rlim_cur, before.rlim_cur);
                assert_eq!(child.rlim_max, before.rlim_max);
                let mut now = before;
                // SAFETY: as above.
                assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) }, 0);
                assert_eq!(now.rlim_cur, new);
                // Once only: the limit children get stays the one before the first.
                assert_eq!(raise_open_files(), None);
                assert_eq!(for_children().expect("kept").rlim_cur, before.rlim_cur);
            }
            // Already at the hard limit (or at MOST): nothing to raise, nothing to give back.
            None => assert!(before.rlim_cur >= before.rlim_max.min(MOST)),
        }
    }
}
