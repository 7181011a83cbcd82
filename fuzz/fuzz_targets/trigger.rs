//! Fuzz target: trigger files as the daemon reads and consumes them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    runner::fuzzing::trigger_file(data, data.first() != Some(&b'{'));
});
