//! Fuzz target: the daemon configuration reader, JSON, and every accepted job's schedule.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    runner::fuzzing::daemon_config(data, false);
});
