//! `track_process` (keepalived's `vrrp_track_process`): processes whose presence moves the
//! `vrrp_instance`s that track them (keepalived.conf(5), "VRRP track processes"). This
//! module holds the model, the drafts both front-ends fill, the validation and the TOML
//! form; which processes match and when a block counts as up is
//! `haldir_director::track_process`, scanning `/proc` is the daemon's.
//!
//! keepalived's rules, followed here: `process NAME [PARAM ...]` names the process; without
//! parameters and without `full_command` it is matched against the process name
//! (`/proc/PID/comm`), otherwise against the command line (`/proc/PID/cmdline`), the
//! parameters as `param_match` says (`exact` when parameters are given, else `partial` or
//! `initial`). The block is up while the number of matching processes is within
//! `quorum` (default 1) ..= `quorum_max` (default unlimited; `quorum_max 0` alone means
//! "up while none runs"); `fork_delay` / `terminate_delay` (`delay` sets both) hold a
//! change back. `weight` (-254..=254) defaults to 0: a lost quorum puts the instances in
//! FAULT; `reverse` turns the meaning round. An instance's entry may set its own weight
//! and direction.
//!
//! Where haldir is stricter: a name matched against `/proc/PID/comm` longer than the 15
//! characters the kernel keeps there is an error (it could never match); `quorum` above
//! `quorum_max` is an error (keepalived ignores the line); a block lists `process` once.

use std::collections::HashMap;
use std::time::Duration;

use crate::draft::{InstanceDraft, Located, Present};
use crate::error::{ConfigError, Loc};
use crate::model::VrrpInstance;
use crate::validate::{in_range, push, resolve_weighted, TrackedKind, WeightedBlock};

/// Largest weight of a block or an entry (keepalived's range).
const MAX_WEIGHT: i64 = 254;
/// Largest `quorum` / `quorum_max` (keepalived's range).
const MAX_QUORUM: i64 = 65_535;
/// Longest delay (keepalived: 3600 s).
const MAX_DELAY_SECS: f64 = 3600.0;
/// The kernel keeps at most this many bytes of a process name in `/proc/PID/comm`
/// (TASK_COMM_LEN 16, with the terminating NUL).
pub const COMM_MAX_LEN: usize = 15;

/// How the parameters of a `full_command` match are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamMatch {
    /// The process has exactly the parameters given (none given: none at all).
    Exact,
    /// The process's first parameters are the ones given; it may have more.
    Partial,
    /// As `Partial`, and the last one given may be the start of the process's.
    Initial,
}

impl ParamMatch {
    /// keepalived's word for it.
    pub fn keyword(self) -> &'static str {
        match self {
            ParamMatch::Exact => "exact",
            ParamMatch::Partial => "partial",
            ParamMatch::Initial => "initial",
        }
    }
}

/// A validated `track_process` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackProcess {
    /// Unique name, referred to by the instances' `track_process` entries.
    pub name: String,
    /// The process name (or, with `full_command`, the command's first word).
    pub process: String,
    /// The parameters compared with the command line's.
    pub params: Vec<String>,
    /// How `params` are compared; `None`: they are not.
    pub param_match: Option<ParamMatch>,
    /// Match `/proc/PID/cmdline` rather than `/proc/PID/comm` (set by parameters or
    /// `param_match` too).
    pub full_command: bool,
    /// `weight` (default 0: FAULT while the quorum is lost).
    pub weight: i32,
    /// `weight N reverse`.
    pub reverse: bool,
    /// Fewest matching processes that are up.
    pub quorum: u32,
    /// Most matching processes that are up (`None`: no limit).
    pub quorum_max: Option<u32>,
    /// How long a gained quorum must hold before it counts.
    pub fork_delay: Duration,
    /// How long a lost quorum must stay lost before it counts.
    pub terminate_delay: Duration,
    /// Where the block starts.
    pub loc: Loc,
}

/// One entry of an instance's `track_process` list, its weight and direction resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrackedProcess {
    /// The `track_process` block's name.
    pub name: String,
    /// The entry's weight if written, else the block's.
    pub weight: i32,
    /// The entry's `reverse` / `noreverse` if written, else the block's.
    pub reverse: bool,
}

/// A `track_process` block as read.
#[derive(Debug, Clone)]
pub(crate) struct TrackProcessDraft {
    pub(crate) loc: Loc,
    /// The keys written (a front-end that reports a missing name itself marks it present).
    pub(crate) present: Present,
    pub(crate) name: Option<Located<String>>,
    /// `process NAME [PARAM ...]`: the name then the parameters.
    pub(crate) process: Option<Located<Vec<String>>>,
    /// `param_match [exact|partial|initial]` (a bare `param_match` is `exact`).
    pub(crate) param_match: Option<Located<String>>,
    pub(crate) weight: Option<Located<i64>>,
    pub(crate) reverse: Option<Located<bool>>,
    pub(crate) quorum: Option<Located<i64>>,
    pub(crate) quorum_max: Option<Located<i64>>,
    pub(crate) delay: Option<Located<f64>>,
    pub(crate) fork_delay: Option<Located<f64>>,
    pub(crate) terminate_delay: Option<Located<f64>>,
    pub(crate) full_command: Option<Located<bool>>,
}

impl TrackProcessDraft {
    /// A block with nothing set, starting at `loc`.
    pub(crate) fn new(loc: Loc) -> Self {
        TrackProcessDraft {
            loc,
            present: Present::new(),
            name: None,
            process: None,
            param_match: None,
            weight: None,
            reverse: None,
            quorum: None,
            quorum_max: None,
            delay: None,
            fork_delay: None,
            terminate_delay: None,
            full_command: None,
        }
    }
}

/// A delay in seconds, 0 (absent) or within keepalived's (0, 3600].
fn delay(
    errors: &mut Vec<ConfigError>,
    key: &str,
    value: Option<&Located<f64>>,
) -> Option<Duration> {
    let Some(value) = value else {
        return Some(Duration::ZERO);
    };
    if value.value > 0.0 && value.value <= MAX_DELAY_SECS {
        Some(Duration::from_secs_f64(value.value))
    } else {
        push(
            errors,
            &value.loc,
            format!(
                "{key} = {}: must be more than 0 and at most 3600 seconds",
                value.value
            ),
        );
        None
    }
}

/// Validates the `track_process` blocks.
pub(crate) fn track_processes(
    errors: &mut Vec<ConfigError>,
    drafts: &[TrackProcessDraft],
) -> Vec<TrackProcess> {
    let mut seen: HashMap<String, Loc> = HashMap::new();
    let mut result = Vec::new();
    for d in drafts {
        let errors_before = errors.len();
        for (key, example) in [
            ("name", "name = \"haproxy_up\""),
            ("process", "process = \"haproxy\""),
        ] {
            if !d.present.contains(&key) {
                push(
                    errors,
                    &d.loc,
                    format!("this track_process is missing `{key}`; add e.g. `{example}`"),
                );
            }
        }
        let name = d.name.as_ref().and_then(|n| {
            if n.value.is_empty() || n.value.contains(char::is_whitespace) {
                push(
                    errors,
                    &n.loc,
                    format!("name = {:?}: give the track_process a name without spaces", n.value),
                );
                return None;
            }
            if let Some(first) = seen.get(&n.value) {
                push(
                    errors,
                    &n.loc,
                    format!(
                        "name = {:?}: already used by the track_process at {first}; give each its own name",
                        n.value
                    ),
                );
                return None;
            }
            seen.insert(n.value.clone(), d.loc);
            Some(n.value.clone())
        });
        let param_match = match &d.param_match {
            None => Some(None),
            Some(m) => match m.value.as_str() {
                "" | "exact" => Some(Some(ParamMatch::Exact)),
                "partial" => Some(Some(ParamMatch::Partial)),
                "initial" => Some(Some(ParamMatch::Initial)),
                other => {
                    push(
                        errors,
                        &m.loc,
                        format!("param_match {other:?}: write `exact`, `partial` or `initial`"),
                    );
                    None
                }
            },
        };
        let process = d.process.as_ref().and_then(|p| {
            let (first, params) = p.value.split_first()?;
            if first.is_empty() || first.contains('\0') || params.iter().any(|a| a.contains('\0')) {
                push(
                    errors,
                    &p.loc,
                    "process: give the process name (and its parameters, if they are to match)",
                );
                return None;
            }
            Some((first.clone(), params.to_vec(), p.loc))
        });
        if d.process.as_ref().is_some_and(|p| p.value.is_empty()) {
            let loc = &d.process.as_ref().expect("checked").loc;
            push(
                errors,
                loc,
                "process needs the process name, e.g. `process haproxy`",
            );
        }
        let weight = match &d.weight {
            Some(w) => in_range(
                errors,
                "weight",
                w,
                -MAX_WEIGHT..=MAX_WEIGHT,
                "must be -254..=254 (0: a lost quorum puts the tracking instances in FAULT)",
            )
            .map(|w| w as i32),
            None => Some(0),
        };
        let quorum = match &d.quorum {
            Some(q) => {
                in_range(errors, "quorum", q, 1..=MAX_QUORUM, "must be 1..=65535").map(|q| q as u32)
            }
            None => Some(1),
        };
        let quorum_max = match &d.quorum_max {
            Some(q) => in_range(errors, "quorum_max", q, 0..=MAX_QUORUM, "must be 0..=65535")
                .map(|q| Some(q as u32)),
            None => Some(None),
        };
        // keepalived: `quorum_max 0` without a `quorum` means "up while none runs".
        let quorum = match (quorum, quorum_max, &d.quorum) {
            (Some(_), Some(Some(0)), None) => Some(0),
            (quorum, _, _) => quorum,
        };
        if let (Some(q), Some(Some(max)), Some(at)) = (quorum, quorum_max, d.quorum_max.as_ref()) {
            if q > max {
                push(
                    errors,
                    &at.loc,
                    format!("quorum_max = {max}: is below quorum = {q}; no number of processes would be up"),
                );
            }
        }
        // `fork_delay` / `terminate_delay` written beside `delay` take precedence.
        let general = delay(errors, "delay", d.delay.as_ref());
        let fork_delay = match &d.fork_delay {
            Some(_) => delay(errors, "fork_delay", d.fork_delay.as_ref()),
            None => general,
        };
        let terminate_delay = match &d.terminate_delay {
            Some(_) => delay(errors, "terminate_delay", d.terminate_delay.as_ref()),
            None => general,
        };
        if errors.len() > errors_before {
            continue;
        }
        let (
            Some(name),
            Some((process, params, process_loc)),
            Some(param_match),
            Some(weight),
            Some(quorum),
            Some(quorum_max),
            Some(fork_delay),
            Some(terminate_delay),
        ) = (
            name,
            process,
            param_match,
            weight,
            quorum,
            quorum_max,
            fork_delay,
            terminate_delay,
        )
        else {
            continue;
        };
        // Parameters or `param_match` compare the command line (keepalived does the same).
        let param_match = match param_match {
            None if !params.is_empty() => Some(ParamMatch::Exact),
            other => other,
        };
        let full_command =
            param_match.is_some() || d.full_command.as_ref().is_some_and(|f| f.value);
        if !full_command && process.len() > COMM_MAX_LEN {
            push(
                errors,
                &process_loc,
                format!(
                    "process {process:?}: a process name holds at most {COMM_MAX_LEN} characters (/proc/PID/comm), so this would never match; add `full_command` to match the command line"
                ),
            );
            continue;
        }
        result.push(TrackProcess {
            name,
            process,
            params,
            param_match,
            full_command,
            weight,
            reverse: d.reverse.as_ref().is_some_and(|r| r.value),
            quorum,
            quorum_max,
            fork_delay,
            terminate_delay,
            loc: d.loc,
        });
    }
    result
}

/// Resolves every instance's `track_process` list against the blocks and stores it in the
/// validated instance (`instances` is aligned with `drafts`).
pub(crate) fn tracked_processes(
    errors: &mut Vec<ConfigError>,
    drafts: &[InstanceDraft],
    instances: &mut [Option<VrrpInstance>],
    process_drafts: &[TrackProcessDraft],
    processes: &[TrackProcess],
) {
    let defined: Vec<&str> = process_drafts
        .iter()
        .filter_map(|p| p.name.as_ref().map(|n| n.value.as_str()))
        .collect();
    let blocks: Vec<WeightedBlock> = processes
        .iter()
        .map(|p| WeightedBlock {
            name: &p.name,
            weight: p.weight,
            reverse: p.reverse,
        })
        .collect();
    resolve_weighted(
        errors,
        &PROCESSES,
        (drafts, instances),
        |d| d.track_process.as_ref(),
        (&defined, &blocks),
        (
            |name, weight, reverse| TrackedProcess {
                name,
                weight,
                reverse,
            },
            |t| (t.name.as_str(), t.weight),
            |instance, tracked| instance.track_process = tracked,
        ),
    );
}

/// What `track_process` refers to, for the shared messages.
const PROCESSES: TrackedKind = TrackedKind {
    keyword: "track_process",
    item: "process",
    block: "track_process block",
    items: "track processes",
    weight_zero: "a lost quorum puts the instance in FAULT",
};

/// Seconds as TOML writes them back: whole numbers without a fraction.
fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s}")
    }
}

/// The `[[track_process]]` table of `process`, every setting written.
pub(crate) fn toml_table(out: &mut String, block: &TrackProcess, string: impl Fn(&str) -> String) {
    use std::fmt::Write as _;
    let TrackProcess {
        name,
        process,
        params,
        param_match,
        full_command,
        weight,
        reverse,
        quorum,
        quorum_max,
        fork_delay,
        terminate_delay,
        loc: _,
    } = block;
    out.push_str("[[track_process]]\n");
    let _ = writeln!(out, "name = {}", string(name));
    let words: Vec<String> = std::iter::once(process)
        .chain(params)
        .map(|w| string(w))
        .collect();
    let _ = writeln!(out, "process = [{}]", words.join(", "));
    if let Some(m) = param_match {
        let _ = writeln!(out, "param_match = {}", string(m.keyword()));
    }
    let _ = writeln!(out, "full_command = {full_command}");
    let _ = writeln!(out, "weight = {weight}");
    let _ = writeln!(out, "reverse = {reverse}");
    // `quorum = 0` is written only with `quorum_max = 0`, where it is implied.
    if *quorum > 0 {
        let _ = writeln!(out, "quorum = {quorum}");
    }
    if let Some(max) = quorum_max {
        let _ = writeln!(out, "quorum_max = {max}");
    }
    if !fork_delay.is_zero() {
        let _ = writeln!(out, "fork_delay = {}", seconds(*fork_delay));
    }
    if !terminate_delay.is_zero() {
        let _ = writeln!(out, "terminate_delay = {}", seconds(*terminate_delay));
    }
}

/// An instance's `track_process` line (each entry with its resolved weight and direction).
pub(crate) fn toml_line(
    out: &mut String,
    tracked: &[TrackedProcess],
    string: impl Fn(&str) -> String,
) {
    crate::to_toml::weighted_entries(
        out,
        "track_process",
        tracked
            .iter()
            .map(|t| (t.name.as_str(), t.weight, t.reverse)),
        string,
    );
}
