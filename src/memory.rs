//! Two knobs of glibc's allocator that runner's resident memory depends on, in one place
//! so that the daemon and the chain set them the same way.
//!
//! glibc gives a thread that finds the other threads' arenas busy an arena of its own, up
//! to eight per core, and each keeps the memory freed into it. runner's threads allocate
//! little, so those arenas are mostly kept free memory: a quarter of the daemon's
//! resident set at a thousand runs a second, and a few hundred kilobytes of a chain's
//! peak. And freed memory between live allocations is only handed back when asked.
//! Elsewhere (musl, other systems) both are no-ops.

/// Keeps the allocator to `arenas` arenas, set before the threads that would make more;
/// `MALLOC_ARENA_MAX` in the environment still wins.
pub(crate) fn limit_arenas(arenas: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a tuning parameter of the allocator.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = arenas;
}

/// Gives the memory freed so far back to the system: all free pages of every arena, not
/// only the top of the main one.
pub(crate) fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
