//! New run ids: UUIDs that the store's indexes take at one place at a time, and whose
//! first eight digits still tell runs apart.
//!
//! A run id is a key of several indexes (`runs`, `runs_running`, `run_meta`, and the
//! fleet's tables). A random (version 4) id lands each new run on a page of its own in
//! every one of them: a daemon starting a thousand runs a second wrote and re-read a
//! page per run and index, a third of its store's writes (`bench/daemon_counts.py`). A
//! standard time-ordered id (version 7) puts the runs of one moment side by side, but
//! begins with the time in milliseconds, so every run of the same minute would share
//! its first eight digits, the part `runs list` shows and the prefix users type.
//!
//! So runner's ids are RFC 9562 version 8 UUIDs (the layout is the maker's): the first
//! 32 bits are the microsecond the id was made, modulo 2^32 (they wrap every 71.6
//! minutes), the next 16 bits the microseconds' next bits, and the remaining 74 bits
//! outside version and variant are random. Runs made together sort together, wherever
//! in the index "now" currently is; two ids made by one process within 71 minutes
//! differ in their first eight digits, because a process never gives the same
//! microsecond twice (a second id in the same microsecond takes the next one). Ids of
//! different processes or hosts are kept apart by the random bits. dsari and its tools
//! treat a run id as text (or PostgreSQL's `uuid`, which takes any version).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The microsecond of the last id this process made.
static LAST: AtomicU64 = AtomicU64::new(0);

/// A new run id, in the hyphenated lowercase form dsari uses.
pub(crate) fn new_run_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    from_parts(next_micros(&LAST, now), rand::random())
}

/// `now`, or the microsecond after `last_given` when that is not earlier (ids made
/// in the same microsecond, or after the clock stepped back).
fn next_micros(last_given: &AtomicU64, now: u64) -> u64 {
    let mut given = now;
    // `fetch_update` retries while another thread moves it; the closure never fails.
    let _ = last_given.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
        given = now.max(last.wrapping_add(1));
        Some(given)
    });
    given
}

/// The id of microsecond `micros` with random bits `random`.
fn from_parts(micros: u64, random: [u8; 10]) -> String {
    let mut bytes = [0u8; 16];
    // Truncations intended: the low 32 bits, then the next 16.
    bytes[..4].copy_from_slice(&(micros as u32).to_be_bytes());
    bytes[4..6].copy_from_slice(&((micros >> 32) as u16).to_be_bytes());
    bytes[6..].copy_from_slice(&random);
    // Sets the version (8) and the variant over the random bits they fall on.
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_version_8_uuids_in_dsaris_form() {
        for _ in 0..100 {
            let id = new_run_id();
            let uuid = uuid::Uuid::parse_str(&id).expect("a UUID");
            assert_eq!(uuid.get_version_num(), 8, "{id}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
            assert_eq!(uuid.hyphenated().to_string(), id, "{id}");
        }
    }

    #[test]
    fn ids_made_together_have_distinct_first_digits_and_sort_together() {
        // Made far faster than one a microsecond: each still gets a microsecond of its own.
        let ids: Vec<String> = (0..10_000).map(|_| new_run_id()).collect();
        let prefixes: std::collections::HashSet<&str> = ids.iter().map(|id| &id[..8]).collect();
        assert_eq!(prefixes.len(), ids.len(), "first eight digits repeat");
        // In order, modulo the wrap of the first 32 bits every 71.6 minutes.
        for pair in ids.windows(2) {
            let [a, b] = [&pair[0], &pair[1]].map(|id| u32::from_str_radix(&id[..8], 16).unwrap());
            let step = b.wrapping_sub(a);
            assert!((1..1 << 31).contains(&step), "{} then {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn the_layout_is_the_microsecond_then_random_bits() {
        let micros = 0x0001_2345_89ab_cdef_u64;
        let id = from_parts(micros, [0xff; 10]);
        // Low 32 bits, next 16, then version 8 and the variant (10xx) over the random ones.
        assert_eq!(id, "89abcdef-2345-8fff-bfff-ffffffffffff");
        assert_eq!(&from_parts(micros, [0; 10])[..20], "89abcdef-2345-8000-8");
    }

    #[test]
    fn a_clock_that_steps_back_does_not_repeat_a_microsecond() {
        let last = AtomicU64::new(0);
        assert_eq!(next_micros(&last, 1_000), 1_000);
        assert_eq!(next_micros(&last, 1_000), 1_001, "the same microsecond");
        assert_eq!(next_micros(&last, 5), 1_002, "the clock stepped back");
        assert_eq!(next_micros(&last, 2_000), 2_000);
    }
}
