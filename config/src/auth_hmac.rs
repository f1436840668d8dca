//! `auth_hmac`: HMAC-SHA256 authentication of a VRRP instance's adverts,
//! keepalived's keyword and block (its newest sources; see `FORMAT.md`,
//! "Advert authentication", and `haldir_vrrp::wire::auth` for the wire).
//!
//! keepalived.conf:
//!
//! ```text
//! auth_hmac {
//!     key 1 hex:000102...1f         # id 1..=255; hex:, file:PATH or ASCII
//!     key 2 file:/etc/haldir/vrrp51.key
//!     active_key 2                  # signs; any configured id verifies
//!     mode enforce                  # enforce | permissive | receive-only
//!     anti_replay time              # time | monotonic
//!     time_window 5                 # seconds, 1..=300 (time only)
//! }
//! ```
//!
//! TOML: `auth_hmac = { key = [{ id = 1, value = "hex:..." }], active_key = 1,
//! mode = "enforce", anti_replay = "time", time_window = 5 }`.
//!
//! Rules (keepalived's, stricter where keepalived only logs): each key is
//! 32..=64 bytes and its id unique; a key file is read at load (and reload)
//! time, one line holding what the inline value would (`hex:...` or ASCII),
//! and refused when group or others may read or write it; `active_key`
//! names a configured key (it may be left out when there is one key, or in
//! receive-only mode, which signs nothing); `auth_hmac` and the v2
//! `authentication` block exclude each other. The `time_window` default is
//! `max(3 × advert_int, 5)` seconds, at most 300.

use std::collections::HashMap;
use std::fmt;

use crate::draft::Located;
use crate::error::{ConfigError, Loc};
use crate::validate::{in_range, push};

/// Shortest key, bytes.
pub const KEY_MIN_BYTES: usize = 32;
/// Longest key, bytes.
pub const KEY_MAX_BYTES: usize = 64;
/// Largest `time_window`, seconds.
pub const MAX_TIME_WINDOW_SECS: u16 = 300;

/// The validated `auth_hmac` of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHmac {
    /// The keys, in file order; any of them verifies.
    pub keys: Vec<HmacKey>,
    /// The id of the key adverts are signed with.
    pub active_key: u8,
    /// `mode`.
    pub mode: AuthHmacMode,
    /// `anti_replay`: true for `time` (the default), false for `monotonic`.
    pub anti_replay_time: bool,
    /// `time_window` as written; `None`: the default
    /// (see [`AuthHmac::time_window_secs`]).
    pub time_window: Option<u16>,
}

impl AuthHmac {
    /// The freshness window in effect for an instance advertising every
    /// `advert_int_centis`: as written, else `max(3 × advert_int, 5)` s
    /// (rounded up), at most 300.
    pub fn time_window_secs(&self, advert_int_centis: u16) -> u16 {
        self.time_window.unwrap_or_else(|| {
            let three_intervals = (u32::from(advert_int_centis) * 3).div_ceil(100);
            three_intervals.clamp(5, u32::from(MAX_TIME_WINDOW_SECS)) as u16
        })
    }
}

/// `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthHmacMode {
    /// Sign; drop adverts that fail.
    #[default]
    Enforce,
    /// Sign; count failures, accept anyway.
    Permissive,
    /// Do not sign; verify what is signed, count failures, accept anyway.
    ReceiveOnly,
}

impl AuthHmacMode {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthHmacMode::Enforce => "enforce",
            AuthHmacMode::Permissive => "permissive",
            AuthHmacMode::ReceiveOnly => "receive-only",
        }
    }
}

/// One `key ID VALUE`.
#[derive(Clone, PartialEq, Eq)]
pub struct HmacKey {
    /// 1..=255.
    pub id: u8,
    /// The value as written: `hex:...`, `file:PATH` or the ASCII key itself.
    pub value: String,
    /// The key bytes (from the file for `file:`).
    pub secret: Vec<u8>,
}

/// Keeps inline secrets out of logs (a `file:` path is shown).
impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = if self.value.starts_with("file:") {
            self.value.as_str()
        } else {
            "<redacted>"
        };
        write!(f, "HmacKey {{ id: {}, value: {value:?} }}", self.id)
    }
}

/// One `key` as read.
#[derive(Debug, Clone)]
pub(crate) struct KeyDraft {
    pub(crate) loc: Loc,
    pub(crate) id: Option<Located<i64>>,
    pub(crate) value: Option<Located<String>>,
}

/// An `auth_hmac` block as read.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuthHmacDraft {
    pub(crate) keys: Vec<KeyDraft>,
    pub(crate) active_key: Option<Located<i64>>,
    pub(crate) mode: Option<Located<String>>,
    pub(crate) anti_replay: Option<Located<String>>,
    pub(crate) time_window: Option<Located<i64>>,
}

/// Validates an instance's `auth_hmac`. `legacy` is where its v2
/// `authentication` block starts, if it has one.
pub(crate) fn validate(
    errors: &mut Vec<ConfigError>,
    d: &Located<AuthHmacDraft>,
    legacy: Option<&Loc>,
) -> Option<AuthHmac> {
    let errors_before = errors.len();
    let d_loc = &d.loc;
    let d = &d.value;
    if let Some(legacy) = legacy {
        push(
            errors,
            d_loc,
            format!("auth_hmac: cannot be combined with the `authentication` block at {legacy} (keepalived drops the latter); remove one"),
        );
    }
    if d.keys.is_empty() {
        push(
            errors,
            d_loc,
            "auth_hmac has no key; add e.g. `key 1 hex:<64 hex digits>` (TOML: `key = [{ id = 1, value = \"hex:...\" }]`)",
        );
    }
    let mut keys = Vec::new();
    let mut ids: HashMap<u8, Loc> = HashMap::new();
    for k in &d.keys {
        let id = match &k.id {
            Some(id) => in_range(errors, "auth_hmac key id", id, 1..=255, "must be 1..=255")
                .map(|n| (n as u8, &id.loc)),
            None => {
                push(errors, &k.loc, "auth_hmac key needs an id, 1..=255");
                None
            }
        };
        if let Some((id, loc)) = id {
            if let Some(first) = ids.get(&id) {
                push(
                    errors,
                    loc,
                    format!(
                        "auth_hmac key {id}: id already used at {first}; give each key its own id"
                    ),
                );
            } else {
                ids.insert(id, *loc);
            }
        }
        let secret = match &k.value {
            Some(value) => key_secret(errors, id.map_or(0, |(id, _)| id), value),
            None => {
                push(
                    errors,
                    &k.loc,
                    "auth_hmac key needs a value: hex:<hex digits>, file:<path> or the key itself",
                );
                None
            }
        };
        if let (Some((id, _)), Some(secret), Some(value)) = (id, secret, &k.value) {
            keys.push(HmacKey {
                id,
                value: value.value.clone(),
                secret,
            });
        }
    }

    let mode = match &d.mode {
        None => Some(AuthHmacMode::Enforce),
        Some(m) => match m.value.as_str() {
            "enforce" => Some(AuthHmacMode::Enforce),
            "permissive" => Some(AuthHmacMode::Permissive),
            "receive-only" => Some(AuthHmacMode::ReceiveOnly),
            other => {
                push(
                    errors,
                    &m.loc,
                    format!(
                        "auth_hmac mode {other:?}: must be enforce, permissive or receive-only"
                    ),
                );
                None
            }
        },
    };
    let anti_replay_time = match &d.anti_replay {
        None => Some(true),
        Some(a) => match a.value.as_str() {
            "time" => Some(true),
            "monotonic" => Some(false),
            other => {
                push(
                    errors,
                    &a.loc,
                    format!("auth_hmac anti_replay {other:?}: must be time or monotonic"),
                );
                None
            }
        },
    };
    let time_window = d.time_window.as_ref().and_then(|w| {
        in_range(
            errors,
            "auth_hmac time_window",
            w,
            1..=i64::from(MAX_TIME_WINDOW_SECS),
            "must be 1..=300 seconds",
        )
        .map(|n| n as u16)
    });

    let active_key = match &d.active_key {
        Some(active) => in_range(
            errors,
            "auth_hmac active_key",
            active,
            1..=255,
            "must be 1..=255",
        )
        .and_then(|n| {
            let n = n as u8;
            if ids.contains_key(&n) || d.keys.len() != keys.len() {
                Some(n)
            } else {
                let defined: Vec<String> = keys.iter().map(|k| k.id.to_string()).collect();
                push(
                    errors,
                    &active.loc,
                    format!(
                        "auth_hmac active_key {n}: no key has that id (defined: {}); add `key {n} ...` or pick one of those",
                        defined.join(", ")
                    ),
                );
                None
            }
        }),
        None if keys.len() == 1 => Some(keys[0].id),
        None if mode == Some(AuthHmacMode::ReceiveOnly) => keys.first().map(|k| k.id),
        None => {
            if keys.len() > 1 {
                push(
                    errors,
                    d_loc,
                    "auth_hmac has several keys: say which one signs with `active_key ID`",
                );
            }
            None
        }
    };

    if errors.len() > errors_before {
        return None;
    }
    Some(AuthHmac {
        keys,
        active_key: active_key?,
        mode: mode?,
        anti_replay_time: anti_replay_time?,
        time_window,
    })
}

/// The bytes of a key value; errors name the key id, never the secret.
fn key_secret(errors: &mut Vec<ConfigError>, id: u8, value: &Located<String>) -> Option<Vec<u8>> {
    let (secret, origin) = match value.value.strip_prefix("file:") {
        Some(path) => {
            let text = read_key_file(errors, id, path, &value.loc)?;
            let text = text.trim_end_matches(['\n', '\r']).to_owned();
            (
                decode(errors, id, &text, &value.loc)?,
                format!(" (from {path})"),
            )
        }
        None => (decode(errors, id, &value.value, &value.loc)?, String::new()),
    };
    if !(KEY_MIN_BYTES..=KEY_MAX_BYTES).contains(&secret.len()) {
        push(
            errors,
            &value.loc,
            format!(
                "auth_hmac key {id}{origin}: is {} bytes; must be {KEY_MIN_BYTES}..={KEY_MAX_BYTES} (e.g. `hex:` and the output of `openssl rand -hex 32`)",
                secret.len()
            ),
        );
        return None;
    }
    Some(secret)
}

/// `hex:DIGITS` or the ASCII key itself.
fn decode(errors: &mut Vec<ConfigError>, id: u8, text: &str, loc: &Loc) -> Option<Vec<u8>> {
    let Some(digits) = text.strip_prefix("hex:") else {
        return Some(text.as_bytes().to_vec());
    };
    let bytes = digits.as_bytes();
    let valid = bytes.len() % 2 == 0 && bytes.iter().all(u8::is_ascii_hexdigit);
    if !valid {
        push(
            errors,
            loc,
            format!("auth_hmac key {id}: hex: needs an even number of hex digits (0-9, a-f)"),
        );
        return None;
    }
    Some(
        bytes
            .chunks(2)
            .map(|pair| {
                let text = std::str::from_utf8(pair).unwrap_or("00");
                u8::from_str_radix(text, 16).unwrap_or(0)
            })
            .collect(),
    )
}

/// Reads a key file, refusing one that group or others may read or write.
fn read_key_file(errors: &mut Vec<ConfigError>, id: u8, path: &str, loc: &Loc) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            push(
                errors,
                loc,
                format!("auth_hmac key {id}: cannot read key file {path}: {e}"),
            );
            return None;
        }
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o066 != 0 {
        push(
            errors,
            loc,
            format!(
                "auth_hmac key {id}: key file {path} has mode {mode:04o}, so group or others may read or change the secret; run `chmod 600 {path}`"
            ),
        );
        return None;
    }
    if metadata.len() > 4096 {
        push(
            errors,
            loc,
            format!(
                "auth_hmac key {id}: key file {path} is {} bytes; a key file holds one line",
                metadata.len()
            ),
        );
        return None;
    }
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) => {
            push(
                errors,
                loc,
                format!("auth_hmac key {id}: cannot read key file {path}: {e}"),
            );
            None
        }
    }
}

/// The TOML inline table of `auth` (`haldir convert`).
pub(crate) fn to_toml(auth: &AuthHmac, quote: impl Fn(&str) -> String) -> String {
    let AuthHmac {
        keys,
        active_key,
        mode,
        anti_replay_time,
        time_window,
    } = auth;
    let keys: Vec<String> = keys
        .iter()
        .map(|k| format!("{{ id = {}, value = {} }}", k.id, quote(&k.value)))
        .collect();
    let mut out = format!(
        "{{ key = [{}], active_key = {active_key}, mode = {}, anti_replay = {}",
        keys.join(", "),
        quote(mode.as_str()),
        quote(if *anti_replay_time {
            "time"
        } else {
            "monotonic"
        }),
    );
    if let Some(window) = time_window {
        out.push_str(&format!(", time_window = {window}"));
    }
    out.push_str(" }");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(line: u32) -> Loc {
        Loc {
            file: "t.conf".into(),
            line,
            col: 5,
        }
    }

    fn l<T>(value: T, line: u32) -> Located<T> {
        Located {
            value,
            loc: loc(line),
        }
    }

    fn key(id: i64, value: &str, line: u32) -> KeyDraft {
        KeyDraft {
            loc: loc(line),
            id: Some(l(id, line)),
            value: Some(l(value.to_owned(), line)),
        }
    }

    const HEX32: &str = "hex:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn run(d: AuthHmacDraft) -> (Option<AuthHmac>, Vec<String>) {
        let mut errors = Vec::new();
        let out = validate(&mut errors, &l(d, 1), None);
        (out, errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn one_hex_key_signs_by_default_with_enforce_and_time() {
        let (auth, errors) = run(AuthHmacDraft {
            keys: vec![key(1, HEX32, 2)],
            ..Default::default()
        });
        assert!(errors.is_empty(), "{errors:?}");
        let auth = auth.unwrap();
        assert_eq!(auth.active_key, 1);
        assert_eq!(auth.mode, AuthHmacMode::Enforce);
        assert!(auth.anti_replay_time);
        assert_eq!(auth.keys[0].secret, (0u8..32).collect::<Vec<_>>());
        assert_eq!(auth.time_window_secs(100), 5);
        assert_eq!(auth.time_window_secs(300), 9);
        assert_eq!(auth.time_window_secs(25500), 300);
    }

    #[test]
    fn errors_name_the_place_and_never_the_secret() {
        let (auth, errors) = run(AuthHmacDraft {
            keys: vec![
                key(1, "short-secret", 2),
                key(1, HEX32, 3),
                key(0, "hex:abc", 4),
            ],
            active_key: Some(l(7, 5)),
            mode: Some(l("strict".into(), 6)),
            ..Default::default()
        });
        assert!(auth.is_none());
        let all = errors.join("\n");
        assert!(
            all.contains("t.conf:2:5: auth_hmac key 1: is 12 bytes; must be 32..=64"),
            "{all}"
        );
        assert!(
            all.contains("t.conf:3:5: auth_hmac key 1: id already used at t.conf:2:5"),
            "{all}"
        );
        assert!(
            all.contains("t.conf:4:5: auth_hmac key id = 0: must be 1..=255"),
            "{all}"
        );
        assert!(
            all.contains("t.conf:4:5: auth_hmac key 0: hex: needs an even number"),
            "{all}"
        );
        assert!(
            all.contains("t.conf:6:5: auth_hmac mode \"strict\""),
            "{all}"
        );
        assert!(!all.contains("short-secret"), "{all}");
    }

    #[test]
    fn active_key_must_exist_and_is_required_with_several_keys() {
        let (_, errors) = run(AuthHmacDraft {
            keys: vec![key(1, HEX32, 2), key(2, HEX32, 3)],
            ..Default::default()
        });
        assert!(errors[0].contains("say which one signs"), "{errors:?}");
        let (_, errors) = run(AuthHmacDraft {
            keys: vec![key(1, HEX32, 2)],
            active_key: Some(l(3, 4)),
            ..Default::default()
        });
        assert!(
            errors[0]
                .contains("t.conf:4:5: auth_hmac active_key 3: no key has that id (defined: 1)"),
            "{errors:?}"
        );
    }

    #[test]
    fn key_file_is_read_and_must_not_be_open_to_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("haldir-auth-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k");
        std::fs::write(&path, format!("{HEX32}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let value = format!("file:{}", path.display());
        let (auth, errors) = run(AuthHmacDraft {
            keys: vec![key(1, &value, 2)],
            ..Default::default()
        });
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(auth.unwrap().keys[0].secret, (0u8..32).collect::<Vec<_>>());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (auth, errors) = run(AuthHmacDraft {
            keys: vec![key(1, &value, 2)],
            ..Default::default()
        });
        assert!(auth.is_none());
        assert!(
            errors[0].contains("has mode 0644, so group or others may read or change the secret"),
            "{errors:?}"
        );
        let (_, errors) = run(AuthHmacDraft {
            keys: vec![key(1, "file:/nonexistent/haldir.key", 2)],
            ..Default::default()
        });
        assert!(
            errors[0].contains("t.conf:2:5: auth_hmac key 1: cannot read key file"),
            "{errors:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn legacy_authentication_excludes_auth_hmac() {
        let mut errors = Vec::new();
        let d = AuthHmacDraft {
            keys: vec![key(1, HEX32, 2)],
            ..Default::default()
        };
        assert!(validate(&mut errors, &l(d, 1), Some(&loc(9))).is_none());
        assert!(errors[0]
            .to_string()
            .contains("`authentication` block at t.conf:9:5"));
    }

    #[test]
    fn debug_hides_inline_keys() {
        let k = HmacKey {
            id: 1,
            value: "hex:00".into(),
            secret: vec![0],
        };
        assert_eq!(format!("{k:?}"), "HmacKey { id: 1, value: \"<redacted>\" }");
    }
}
