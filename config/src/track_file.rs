//! `track_file` (keepalived's `vrrp_track_file` is the older name of the same block): a
//! file holding a number, and the `vrrp_instance`s whose priority it moves
//! (keepalived.conf(5), "Track files"). This module holds the model, the drafts both
//! front-ends fill, the validation and the TOML form; what a value does to an instance is
//! `haldir_director::vrrp_specs::tracking`, reading the file is the daemon's.
//!
//! keepalived's rules, followed here: the file's `weight` defaults to 1 and may be
//! followed by `reverse`; an instance's `track_file` entry may set its own weight
//! (-254..=254) and direction (`reverse` / `noreverse`), else it takes the file's.
//! `init_file [VALUE] [overwrite]` writes VALUE (default 0) when the file does not exist,
//! or always with `overwrite`. As for `track_script`, the address owner (priority 255)
//! cannot be moved by a weight, so only weight 0 is allowed there.
//!
//! Where haldir is stricter: the path must be absolute (keepalived would read a relative
//! one from its working directory, `/`), and each instance lists a file once.

use std::collections::HashMap;

use crate::draft::{InstanceDraft, Located, Present};
use crate::error::{ConfigError, Loc};
use crate::model::VrrpInstance;
use crate::validate::{in_range, push, resolve_weighted, TrackedKind, WeightedBlock};

/// Largest weight of a `track_file` block (keepalived's range).
const MAX_FILE_WEIGHT: i64 = 2_147_483_647;

/// A validated `track_file` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackFile {
    /// Unique name, referred to by the instances' `track_file` entries.
    pub name: String,
    /// `file`: the absolute path read.
    pub path: String,
    /// `weight` (default 1): the value read is multiplied by it; 0 means a non-zero value
    /// is a failure.
    pub weight: i32,
    /// `weight N reverse`: the direction of the weight is reversed.
    pub reverse: bool,
    /// `init_file`: what to write before the first read.
    pub init: Option<TrackFileInit>,
    /// Where the block starts.
    pub loc: Loc,
}

/// `init_file [VALUE] [overwrite]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackFileInit {
    /// The value written (default 0).
    pub value: i32,
    /// Write it even when the file exists.
    pub overwrite: bool,
}

/// One entry of an instance's `track_file` list, its weight and direction resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrackedFile {
    /// The `track_file` block's name.
    pub name: String,
    /// The entry's weight if written, else the block's.
    pub weight: i32,
    /// The entry's `reverse` / `noreverse` if written, else the block's.
    pub reverse: bool,
}

/// A `track_file` block as read.
#[derive(Debug, Clone)]
pub(crate) struct TrackFileDraft {
    pub(crate) loc: Loc,
    /// The keys written (a front-end that reports a missing name itself marks it present).
    pub(crate) present: Present,
    pub(crate) name: Option<Located<String>>,
    pub(crate) file: Option<Located<String>>,
    pub(crate) weight: Option<Located<i64>>,
    pub(crate) reverse: Option<Located<bool>>,
    /// `init_file` was written (with or without a value).
    pub(crate) init: Option<Loc>,
    pub(crate) init_value: Option<Located<i64>>,
    pub(crate) init_overwrite: Option<Located<bool>>,
}

impl TrackFileDraft {
    /// A block with nothing set, starting at `loc`.
    pub(crate) fn new(loc: Loc) -> Self {
        TrackFileDraft {
            loc,
            present: Present::new(),
            name: None,
            file: None,
            weight: None,
            reverse: None,
            init: None,
            init_value: None,
            init_overwrite: None,
        }
    }
}

/// Validates the `track_file` blocks: names unique, paths absolute, values in range.
pub(crate) fn track_files(
    errors: &mut Vec<ConfigError>,
    drafts: &[TrackFileDraft],
) -> Vec<TrackFile> {
    let mut seen: HashMap<String, Loc> = HashMap::new();
    let mut result = Vec::new();
    for d in drafts {
        let errors_before = errors.len();
        for (key, example) in [
            ("name", "name = \"app_ready\""),
            ("file", "file = \"/run/app/ready\""),
        ] {
            if !d.present.contains(&key) {
                push(
                    errors,
                    &d.loc,
                    format!("this track_file is missing `{key}`; add e.g. `{example}`"),
                );
            }
        }
        let name = d.name.as_ref().and_then(|n| {
            if n.value.is_empty() || n.value.contains(char::is_whitespace) {
                push(
                    errors,
                    &n.loc,
                    format!(
                        "name = {:?}: give the track_file a name without spaces",
                        n.value
                    ),
                );
                return None;
            }
            if let Some(first) = seen.get(&n.value) {
                push(
                    errors,
                    &n.loc,
                    format!(
                        "name = {:?}: already used by the track_file at {first}; give each its own name",
                        n.value
                    ),
                );
                return None;
            }
            seen.insert(n.value.clone(), d.loc);
            Some(n.value.clone())
        });
        let path = d.file.as_ref().and_then(|f| {
            let absolute = f.value.starts_with('/') && !f.value.contains('\0');
            if !absolute {
                push(
                    errors,
                    &f.loc,
                    format!(
                        "file = {:?}: give an absolute path, e.g. \"/run/app/ready\"",
                        f.value
                    ),
                );
            }
            absolute.then(|| f.value.clone())
        });
        let weight = match &d.weight {
            Some(w) => in_range(
                errors,
                "weight",
                w,
                -MAX_FILE_WEIGHT..=MAX_FILE_WEIGHT,
                "must be -2147483647..=2147483647 (0: a non-zero value in the file puts the tracking instances in FAULT)",
            )
            .map(|w| w as i32),
            None => Some(1),
        };
        let init_value = match &d.init_value {
            Some(v) => in_range(
                errors,
                "init_file",
                v,
                i64::from(i32::MIN)..=i64::from(i32::MAX),
                "the value written must fit in 32 bits, as the values read do",
            )
            .map(|v| v as i32),
            None => Some(0),
        };
        if errors.len() > errors_before {
            continue;
        }
        let (Some(name), Some(path), Some(weight), Some(init_value)) =
            (name, path, weight, init_value)
        else {
            continue;
        };
        let init_written = d.init.is_some() || d.init_value.is_some() || d.init_overwrite.is_some();
        result.push(TrackFile {
            name,
            path,
            weight,
            reverse: d.reverse.as_ref().is_some_and(|r| r.value),
            init: init_written.then(|| TrackFileInit {
                value: init_value,
                overwrite: d.init_overwrite.as_ref().is_some_and(|o| o.value),
            }),
            loc: d.loc,
        });
    }
    result
}

/// Resolves every instance's `track_file` list against the blocks and stores it in the
/// validated instance (`instances` is aligned with `drafts`).
pub(crate) fn tracked_files(
    errors: &mut Vec<ConfigError>,
    drafts: &[InstanceDraft],
    instances: &mut [Option<VrrpInstance>],
    file_drafts: &[TrackFileDraft],
    files: &[TrackFile],
) {
    let defined: Vec<&str> = file_drafts
        .iter()
        .filter_map(|f| f.name.as_ref().map(|n| n.value.as_str()))
        .collect();
    let blocks: Vec<WeightedBlock> = files
        .iter()
        .map(|f| WeightedBlock {
            name: &f.name,
            weight: f.weight,
            reverse: f.reverse,
        })
        .collect();
    resolve_weighted(
        errors,
        &FILES,
        (drafts, instances),
        |d| d.track_file.as_ref(),
        (&defined, &blocks),
        (
            |name, weight, reverse| TrackedFile {
                name,
                weight,
                reverse,
            },
            |t| (t.name.as_str(), t.weight),
            |instance, tracked| instance.track_file = tracked,
        ),
    );
}

/// What `track_file` refers to, for the shared messages.
const FILES: TrackedKind = TrackedKind {
    keyword: "track_file",
    item: "file",
    block: "track_file block",
    items: "track files",
    weight_zero: "a non-zero value puts the instance in FAULT",
};

/// The `[[track_file]]` table of `file`, every setting written.
pub(crate) fn toml_table(out: &mut String, file: &TrackFile, string: impl Fn(&str) -> String) {
    use std::fmt::Write as _;
    let TrackFile {
        name,
        path,
        weight,
        reverse,
        init,
        loc: _,
    } = file;
    out.push_str("[[track_file]]\n");
    let _ = writeln!(out, "name = {}", string(name));
    let _ = writeln!(out, "file = {}", string(path));
    let _ = writeln!(out, "weight = {weight}");
    let _ = writeln!(out, "reverse = {reverse}");
    if let Some(TrackFileInit { value, overwrite }) = init {
        let _ = writeln!(
            out,
            "init_file = {{ value = {value}, overwrite = {overwrite} }}"
        );
    }
}

/// An instance's `track_file` line (each entry with its resolved weight and direction).
pub(crate) fn toml_line(
    out: &mut String,
    tracked: &[TrackedFile],
    string: impl Fn(&str) -> String,
) {
    crate::to_toml::weighted_entries(
        out,
        "track_file",
        tracked
            .iter()
            .map(|t| (t.name.as_str(), t.weight, t.reverse)),
        string,
    );
}
