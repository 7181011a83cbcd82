//! Fuzz target: the chain INI reader with include_dir (main file, a NUL, then an include file).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    runner::fuzzing::ini_with_includes(data);
});
