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
//! `examples/haldir.toml` for a documented example.

mod draft;
mod error;
mod model;
mod toml_front;
mod validate;
mod validate_ipvs;

use std::path::Path;
use std::sync::Arc;

pub use error::{ConfigError, ConfigErrors, Loc};
pub use model::{
    AddressFamily, Authentication, LvsMethod, LvsPersistence, LvsProtocol, LvsScheduler, Model,
    RealServer, VirtualAddress, VirtualAddressError, VirtualServer, VirtualServerAddress,
    VrrpInstance, VrrpVersion,
};

/// Reads, parses and validates the TOML configuration file at `path`.
///
/// Locations in errors use `path` as written (via [`Path::display`]).
pub fn load_file(path: &Path) -> Result<Model, ConfigErrors> {
    let file_name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_toml(&text, &file_name),
        Err(e) => Err(ConfigErrors(vec![ConfigError::whole_file(
            &Arc::from(file_name),
            format!("cannot read the configuration file: {e}"),
        )])),
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
