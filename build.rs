//! Link options of the release binary that cargo's profiles cannot express.
//!
//! Packed relative relocations (`DT_RELR`, GNU ld 2.38 and glibc 2.36 or later): runner
//! is a position-independent executable, and its some 42,000 relative relocations took
//! a megabyte of `.rela.dyn` that the loader reads at every start, resident for the
//! whole run; packed, they take a few kilobytes.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let gnu = std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|env| env == "gnu");
    if release && linux && gnu {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
