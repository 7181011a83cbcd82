//! Fuzz target: schedule expressions (expression, job name and zone on three lines) and their next times.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    runner::fuzzing::schedule(data);
});
