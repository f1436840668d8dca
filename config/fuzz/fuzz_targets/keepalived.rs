//! Fuzzes the keepalived.conf front-end: it must never panic, and whatever it
//! accepts must survive `to_toml` → `parse_toml` unchanged (locations aside).
//!
//! The file is "read" from an empty private directory, so relative
//! `include`s find nothing. An include pattern with a `/` could name any file
//! on the machine (the front-end refuses non-regular files such as /dev/zero,
//! but a regular file under /proc can block or be huge), so inputs with an
//! `include` and a `/` are skipped.

#![no_main]

#[path = "common.rs"]
mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// `<tmp>/haldir-config-fuzz-<pid>/fuzz.conf`, its directory created empty.
fn file_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let dir: PathBuf =
            std::env::temp_dir().join(format!("haldir-config-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the fuzz directory");
        dir.join("fuzz.conf").display().to_string()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains("include") && text.contains('/') {
        return;
    }
    if let Ok(model) = haldir_config::parse_keepalived(text, file_name()) {
        common::round_trip(model);
    }
});
