//! Fuzz target: event data JSON: bounded nesting, parse, print and parse back.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    runner::fuzzing::event_data(data);
});
