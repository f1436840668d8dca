//! haldir's configuration: the one validated [`Model`] the daemon is built
//! from (VRRP instances and IPVS virtual servers), and the TOML front-end
//! that reads it.
//!
//! Loading is two passes that both collect every problem instead of stopping at
//! the first: the front-end checks the file's shape (TOML syntax, known keys,
//! value types), then validation checks every range and cross-field rule on the
//! values read. Each [`ConfigError`] names `file:line:col` and what to change, so
//! `haldir check` can print them all at once.
//!
//! The key names are keepalived's; see `FORMAT.md` for the reference and
//! `examples/haldir.toml` for a documented example. keepalived.conf itself is
//! read too (the subset haldir implements, see `KEEPALIVED.md`): both
//! front-ends build the same intermediate form, so validation and the
//! resulting [`Model`] are the same. [`to_toml`] writes a model back as TOML.

mod draft;
mod error;
mod keepalived_front;
mod lvs_sync;
mod model;
mod model_health;
mod to_toml;
mod toml_front;
mod validate;
mod validate_health;
mod validate_ipvs;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

pub use error::{ConfigError, ConfigErrors, Loc};
pub use model::{
    AddressFamily, Authentication, LvsMethod, LvsPersistence, LvsProtocol, LvsScheduler, Model,
    NotifyScripts, RealServer, ScriptSettings, SyncGroup, VirtualAddress, VirtualAddressError,
    VirtualServer, VirtualServerAddress, VrrpInstance, VrrpVersion,
};

pub use lvs_sync::LvsSyncDaemon;
pub use model_health::{
    CheckConnection, CheckKind, CheckTimingSpec, DnsCheckSpec, HealthCheck, HttpCheckSpec,
    HttpUrlSpec, MiscCheckSpec, SorryServer, TlsVerify, TrackScript, VrrpScript,
};
pub use to_toml::{not_converted, to_toml};

/// The syntax of a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// Decide from the content ([`detect_format`]).
    #[default]
    Auto,
    /// haldir's TOML (`FORMAT.md`).
    Toml,
    /// keepalived.conf (`KEEPALIVED.md`).
    Keepalived,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Auto => "auto",
            Format::Toml => "toml",
            Format::Keepalived => "keepalived",
        })
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Format::Auto),
            "toml" => Ok(Format::Toml),
            "keepalived" => Ok(Format::Keepalived),
            other => Err(format!(
                "unknown configuration format {other:?}; use toml, keepalived or auto"
            )),
        }
    }
}

/// Which syntax `text` is in ([`Format::Toml`] or [`Format::Keepalived`],
/// never `Auto`). The content decides: the first line that is not blank or a
/// `#` comment is TOML if it is a `[table]` header or a `key = value` line,
/// keepalived.conf if it is a `!` comment or keyword words (`global_defs {`,
/// `vrrp_instance VI_1 {`, `include ...`). Only a file with nothing but
/// comments falls back on `path`'s extension (`.conf` → keepalived).
pub fn detect_format(text: &str, path: &Path) -> Format {
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            return Format::Toml;
        }
        // A TOML key: bare (A-Za-z0-9_-), quoted or dotted, then `=`.
        let key_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || "_-.\"' \t".contains(c)))
            .unwrap_or(line.len());
        if line[key_end..].starts_with('=') && key_end > 0 {
            return Format::Toml;
        }
        return Format::Keepalived;
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("conf" | "cfg") => Format::Keepalived,
        _ => Format::Toml,
    }
}

/// Reads, parses and validates the configuration file at `path`, in the
/// syntax its content shows ([`detect_format`]).
///
/// Locations in errors use `path` as written (via [`Path::display`]), and
/// included files' paths as resolved from it.
pub fn load_file(path: &Path) -> Result<Model, ConfigErrors> {
    load_file_as(path, Format::Auto)
}

/// [`load_file`] in a given syntax (`Format::Auto` detects it).
pub fn load_file_as(path: &Path, format: Format) -> Result<Model, ConfigErrors> {
    let file_name = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            return Err(ConfigErrors(vec![ConfigError::whole_file(
                &Arc::from(file_name),
                format!("cannot read the configuration file: {e}"),
            )]))
        }
    };
    let format = match format {
        Format::Auto => detect_format(&text, path),
        given => given,
    };
    match format {
        Format::Keepalived => parse_keepalived(&text, &file_name),
        _ => parse_toml(&text, &file_name),
    }
}

/// Parses and validates TOML configuration `text`; `file_name` is what error
/// locations call the file.
pub fn parse_toml(text: &str, file_name: &str) -> Result<Model, ConfigErrors> {
    let file: Arc<str> = Arc::from(file_name);
    let (draft, errors) =
        toml_front::read(text, file).map_err(|syntax| ConfigErrors(vec![syntax]))?;
    validate::validate(&draft, errors)
}

/// Parses and validates keepalived.conf `text`; `file_name` is what error
/// locations call the file, and relative `include`s are resolved against its
/// directory (as keepalived does), so it should be the file's path.
///
/// Errors in the file's structure (an unclosed block or quote, a stray
/// brace, an include that is missing or loops) are reported alone, in the
/// order they occur; otherwise every keyword and validation error is
/// reported together.
pub fn parse_keepalived(text: &str, file_name: &str) -> Result<Model, ConfigErrors> {
    let file: Arc<str> = Arc::from(file_name);
    let path = Path::new(file_name);
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let canonical: Option<PathBuf> = path.canonicalize().ok();
    let (draft, errors) =
        keepalived_front::read(text, file, canonical, &dir).map_err(ConfigErrors)?;
    validate::validate(&draft, errors)
}

/// How deep keepalived.conf `include`s may nest.
pub const MAX_INCLUDE_DEPTH: usize = keepalived_front::MAX_INCLUDE_DEPTH;
