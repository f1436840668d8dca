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

#[macro_use]
mod keywords;

mod announce;
mod auth_hmac;
mod draft;
mod error;
mod keepalived_front;
mod lvs_sync;
mod model;
mod model_health;
mod notify_fifo;
mod pieces;
mod to_toml;
mod toml_front;
mod track_file;
mod track_process;
mod validate;
mod validate_health;
mod validate_ipvs;
mod validate_values;
mod virtual_ip;
mod virtual_route;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use pieces::Pieces as _;

pub use error::{ConfigError, ConfigErrors, FileName, Loc};
pub use model::{
    AddressFamily, Authentication, LvsMethod, LvsPersistence, LvsProtocol, LvsScheduler,
    LvsScripts, LvsTimeouts, Model, NotifyScripts, RealServer, SchedulerFlags, ScriptSettings,
    Statics, SyncGroup, TrackedInterface, VirtualAddress, VirtualAddressError, VirtualServer,
    VirtualServerAddress, VrrpInstance, VrrpVersion,
};

pub use announce::{Announce, DEFAULT_DRAIN as DEFAULT_ANNOUNCE_DRAIN};
pub use auth_hmac::{AuthHmac, AuthHmacMode, HmacKey};
pub use lvs_sync::LvsSyncDaemon;
pub use model_health::{
    CheckConnection, CheckKind, CheckTimingSpec, DnsCheckSpec, DnsType, HealthCheck, HexBytes,
    HttpCheckOptions, HttpCheckSpec, HttpUrlSpec, MiscCheckSpec, ScriptCommand, Shared,
    SmtpCheckSpec, SorryServer, StatusCodes, StatusCodesError, TlsVerify, TrackScript,
    UdpCheckSpec, UrlOptions, VrrpScript, DEFAULT_HELO_NAME,
};
pub use notify_fifo::{FifoEvents, FifoScript, NotifyFifo, NotifyFifos};
pub use to_toml::{not_converted, to_toml};
pub use track_file::{TrackFile, TrackFileInit, TrackedFile};
pub use track_process::{ParamMatch, TrackProcess, TrackedProcess, COMM_MAX_LEN};
pub use virtual_ip::{AddressScope, VirtualIp, Vmac};
pub use virtual_route::{RouteKind, VirtualRoute, VirtualRule};

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
    format_by_content(text).unwrap_or_else(|| match path.extension().and_then(|e| e.to_str()) {
        Some("conf" | "cfg") => Format::Keepalived,
        _ => Format::Toml,
    })
}

/// [`detect_format`] by the first line that is not blank or a `#` comment; `None` if
/// there is none.
fn format_by_content(text: &str) -> Option<Format> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            return Some(Format::Toml);
        }
        // A TOML key: bare (A-Za-z0-9_-), quoted or dotted, then `=`.
        let key_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || "_-.\"' \t".contains(c)))
            .unwrap_or(line.len());
        if line[key_end..].starts_with('=') && key_end > 0 {
            return Some(Format::Toml);
        }
        return Some(Format::Keepalived);
    }
    None
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
    load_file_with_warnings(path, format).0
}

/// [`load_file_as`], and the warnings: keywords accepted that haldir does not
/// act on (one per keyword per file, each naming its `file:line:col`), which
/// `haldir check` prints, `haldir check --strict` turns into errors and
/// `haldir run` logs. The warnings are given whether or not the file is valid.
pub fn load_file_with_warnings(
    path: &Path,
    format: Format,
) -> (Result<Model, ConfigErrors>, Vec<ConfigError>) {
    let file_name = path.display().to_string();
    let cannot_read = |e: std::io::Error| {
        (
            Err(ConfigErrors(vec![ConfigError::unreadable(
                FileName::new(&file_name),
                &e,
            )])),
            Vec::new(),
        )
    };
    // Read in pieces (pieces.rs): keepalived.conf is read line by line from them; the
    // whole text is gathered only for TOML, or to tell the syntax of a file whose first
    // piece is all comments.
    let mut input = match std::fs::File::open(path) {
        Ok(file) => pieces::LinePieces::new(file),
        Err(e) => return cannot_read(e),
    };
    let mut whole = None;
    let format = match format {
        Format::Auto => {
            let by_content = match input.next_piece() {
                Ok(first) => first.and_then(format_by_content),
                Err(e) => return cannot_read(e),
            };
            input.hand_again();
            match by_content {
                Some(format) => format,
                None => match input.rest() {
                    Ok(text) => {
                        let format = detect_format(&text, path);
                        whole = Some(text);
                        format
                    }
                    Err(e) => return cannot_read(e),
                },
            }
        }
        given => given,
    };
    let read = match (format, whole) {
        (Format::Keepalived, Some(text)) => {
            parse_keepalived_reading(&mut pieces::Whole(Some(&text)), &file_name)
        }
        (Format::Keepalived, None) => parse_keepalived_reading(&mut input, &file_name),
        (_, Some(text)) => parse_toml_reading(&text, &file_name),
        (_, None) => match input.rest() {
            Ok(text) => parse_toml_reading(&text, &file_name),
            Err(e) => return cannot_read(e),
        },
    };
    // The files are judged whenever the option is written, even in an
    // otherwise invalid file, so every error shows at once.
    let mut errors = if read.script_security {
        insecure_config_files(path, &file_name, &read.included)
    } else {
        Vec::new()
    };
    let model = match read.model {
        Ok(model) if errors.is_empty() => Ok(model),
        Ok(_) => Err(ConfigErrors(errors)),
        Err(ConfigErrors(more)) => {
            errors.extend(more);
            Err(ConfigErrors(errors))
        }
    };
    (model, read.warnings)
}

/// What parsing a file found, for [`load_file_as`].
struct Read {
    model: Result<Model, ConfigErrors>,
    /// Included files, each with its `include` line.
    included: Vec<(PathBuf, Loc)>,
    /// `enable_script_security` is on (as written, even if the file is invalid).
    script_security: bool,
    /// Keywords accepted with no effect (keepalived.conf only).
    warnings: Vec<ConfigError>,
}

/// `enable_script_security` for the configuration itself: the main file and
/// every included file must be changeable by root only (the file and each
/// directory on its path, as for scripts; see `haldir_scripts::path_security`).
/// An included file's error is reported at its `include` line.
fn insecure_config_files(
    path: &Path,
    file_name: &str,
    included: &[(PathBuf, Loc)],
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if let Err(e) = haldir_scripts::path_security::check(path) {
        errors.push(ConfigError::whole_file(
            FileName::new(file_name),
            format!("enable_script_security: refusing the configuration file: {e}"),
        ));
    }
    for (file, at) in included {
        if let Err(e) = haldir_scripts::path_security::check(file) {
            errors.push(ConfigError::at(
                at,
                format!(
                    "enable_script_security: refusing the included file {}: {e}",
                    file.display()
                ),
            ));
        }
    }
    errors
}

/// Parses and validates TOML configuration `text`; `file_name` is what error
/// locations call the file.
pub fn parse_toml(text: &str, file_name: &str) -> Result<Model, ConfigErrors> {
    parse_toml_reading(text, file_name).model
}

fn parse_toml_reading(text: &str, file_name: &str) -> Read {
    let file = FileName::new(file_name);
    match toml_front::read(text, file) {
        Ok((draft, errors)) => Read {
            script_security: script_security(&draft),
            model: validate::validate(draft, errors),
            included: Vec::new(),
            warnings: Vec::new(),
        },
        Err(syntax) => Read {
            model: Err(ConfigErrors(vec![syntax])),
            included: Vec::new(),
            script_security: false,
            warnings: Vec::new(),
        },
    }
}

fn script_security(draft: &draft::Draft) -> bool {
    draft
        .scripts
        .enable_script_security
        .as_ref()
        .is_some_and(|f| f.value)
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
    parse_keepalived_reading(&mut pieces::Whole(Some(text)), file_name).model
}

/// [`parse_keepalived`], and its warnings (see [`load_file_with_warnings`]).
pub fn parse_keepalived_with_warnings(
    text: &str,
    file_name: &str,
) -> (Result<Model, ConfigErrors>, Vec<ConfigError>) {
    let read = parse_keepalived_reading(&mut pieces::Whole(Some(text)), file_name);
    (read.model, read.warnings)
}

/// [`parse_keepalived`], and the files it included (each with its `include` line).
fn parse_keepalived_reading(input: &mut dyn pieces::Pieces, file_name: &str) -> Read {
    let file = FileName::new(file_name);
    let path = Path::new(file_name);
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let canonical: Option<PathBuf> = path.canonicalize().ok();
    match keepalived_front::read(input, file, canonical, &dir) {
        Ok(reading) => Read {
            script_security: script_security(&reading.draft),
            model: validate::validate(reading.draft, reading.errors),
            included: reading.included,
            warnings: reading.warnings,
        },
        Err(errors) => Read {
            model: Err(ConfigErrors(errors)),
            included: Vec::new(),
            script_security: false,
            warnings: Vec::new(),
        },
    }
}

/// Every keyword the keepalived.conf front-end knows, per block, as (block,
/// keyword, classification, why); for the KEEPALIVED.md table and its test.
#[doc(hidden)]
pub fn keepalived_keyword_table() -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    keepalived_front::keyword_table()
}

/// How deep keepalived.conf `include`s may nest.
pub const MAX_INCLUDE_DEPTH: usize = keepalived_front::MAX_INCLUDE_DEPTH;
