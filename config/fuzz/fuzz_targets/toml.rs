//! Fuzzes the TOML front-end: it must never panic, and whatever it accepts
//! must survive `to_toml` → `parse_toml` unchanged (locations aside).
//!
//! Validation reads the file an HTTPS check's `ca_file` names, so inputs
//! naming one are skipped: the fuzzer must not read /dev/zero or /proc files.

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `ca_file` spelled out, or maybe spelled with TOML's \u escapes.
    if text.contains("ca_file") || text.contains("\\u") || text.contains("\\U") {
        return;
    }
    if let Ok(model) = haldir_config::parse_toml(text, "fuzz.toml") {
        common::round_trip(model);
    }
});
