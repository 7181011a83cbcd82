//! Fuzz target: the daemon configuration reader, YAML, and every accepted job's schedule.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    runner::fuzzing::daemon_config(data, true);
});
