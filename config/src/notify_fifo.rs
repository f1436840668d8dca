//! keepalived's notify FIFOs (`global_defs`: `notify_fifo`, `vrrp_notify_fifo`,
//! `lvs_notify_fifo`, each with its `..._script`, and `fifo_write_vrrp_states_on_reload`):
//! a named pipe haldir writes one line per event to, in the order the events happen, and
//! optionally a long-running reader it starts with the FIFO's path as its last argument.
//! This module holds the model, the drafts both front-ends fill, the validation and the
//! TOML form; the lines are `haldir_director::notify`'s, the pipe is the daemon's.
//!
//! keepalived's rules, followed here: `notify_fifo PATH [USER [GROUP]]` receives both the
//! VRRP lines (`INSTANCE "VI_1" MASTER 100`, `GROUP "VG_1" BACKUP 0`) and the checker's
//! (`VS [192.0.2.1]:tcp:80 UP`, `RS [10.0.0.1]:tcp:80 [192.0.2.1]:tcp:80 DOWN`);
//! `vrrp_notify_fifo` only the first, `lvs_notify_fifo` only the second. A FIFO that does
//! not exist is created (mode 0644, owned by USER:GROUP if given) and removed at exit; the
//! script runs as its own USER [GROUP], else as `script_user`.
//!
//! Where haldir is stricter: the path must be absolute, the FIFOs' paths must differ
//! (keepalived.conf(5) says so too), and a script without its FIFO is an error (keepalived
//! would ignore it).

use crate::draft::Located;
use crate::error::{ConfigError, Loc};
use crate::model::ScriptSettings;
use crate::validate::push;

/// Which events a FIFO receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FifoEvents {
    /// `notify_fifo`: VRRP and checker events.
    All,
    /// `vrrp_notify_fifo`: instance and sync group transitions.
    Vrrp,
    /// `lvs_notify_fifo`: virtual server quorum and real server changes.
    Lvs,
}

impl FifoEvents {
    /// The three kinds, in keepalived's order.
    pub const ALL: [FifoEvents; 3] = [FifoEvents::All, FifoEvents::Vrrp, FifoEvents::Lvs];

    /// The `global_defs` keyword of the FIFO.
    pub fn keyword(self) -> &'static str {
        match self {
            FifoEvents::All => "notify_fifo",
            FifoEvents::Vrrp => "vrrp_notify_fifo",
            FifoEvents::Lvs => "lvs_notify_fifo",
        }
    }

    /// The keyword of its script.
    pub fn script_keyword(self) -> &'static str {
        match self {
            FifoEvents::All => "notify_fifo_script",
            FifoEvents::Vrrp => "vrrp_notify_fifo_script",
            FifoEvents::Lvs => "lvs_notify_fifo_script",
        }
    }

    /// Whether it receives VRRP lines.
    pub fn takes_vrrp(self) -> bool {
        self != FifoEvents::Lvs
    }

    /// Whether it receives checker lines.
    pub fn takes_lvs(self) -> bool {
        self != FifoEvents::Vrrp
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A validated notify FIFO.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NotifyFifo {
    /// Which events it receives.
    pub events: FifoEvents,
    /// The absolute path of the named pipe.
    pub path: String,
    /// The owner given to a FIFO haldir creates (`None`: haldir's own).
    pub user: Option<String>,
    /// Its group (`None`: the user's primary group, or haldir's).
    pub group: Option<String>,
    /// The reader haldir starts, if any.
    pub script: Option<FifoScript>,
}

/// A FIFO's `..._script`: started once the FIFO exists, with its path appended, and
/// stopped (SIGTERM) when haldir stops or the FIFO is removed from the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FifoScript {
    /// The command line.
    pub command: String,
    /// The account it runs as (`None`: `script_user`).
    pub user: Option<String>,
    /// Its group.
    pub group: Option<String>,
}

/// The notify FIFOs of a configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct NotifyFifos {
    /// Each configured FIFO, in keepalived's order (`notify_fifo`, `vrrp_`, `lvs_`).
    pub fifos: Vec<NotifyFifo>,
    /// `fifo_write_vrrp_states_on_reload`: a reload writes every instance's and sync
    /// group's state to the FIFOs that take VRRP lines.
    pub write_states_on_reload: bool,
}

/// `PATH [USER [GROUP]]` or `COMMAND [USER [GROUP]]` as written.
#[derive(Debug, Clone)]
pub(crate) struct FifoDraft {
    /// The path or command line.
    pub(crate) value: Located<String>,
    pub(crate) user: Option<Located<String>>,
    pub(crate) group: Option<Located<String>>,
}

/// The FIFO keywords of `global_defs` as read, by [`FifoEvents`] index.
#[derive(Debug, Clone, Default)]
pub(crate) struct NotifyFifosDraft {
    pub(crate) fifos: [Option<FifoDraft>; 3],
    pub(crate) scripts: [Option<FifoDraft>; 3],
    pub(crate) write_states_on_reload: Option<Located<bool>>,
}

impl NotifyFifosDraft {
    /// Where the FIFO of `events` is kept.
    pub(crate) fn fifo_mut(&mut self, events: FifoEvents) -> &mut Option<FifoDraft> {
        &mut self.fifos[events.index()]
    }

    /// Where the script of `events` is kept.
    pub(crate) fn script_mut(&mut self, events: FifoEvents) -> &mut Option<FifoDraft> {
        &mut self.scripts[events.index()]
    }
}

/// The FIFO and script keyword of `word`, if it is one.
pub(crate) fn fifo_keyword(word: &str) -> Option<(FifoEvents, bool)> {
    FifoEvents::ALL.into_iter().find_map(|e| {
        if word == e.keyword() {
            Some((e, false))
        } else if word == e.script_keyword() {
            Some((e, true))
        } else {
            None
        }
    })
}

/// A user or group name as an owner: it must exist (checked here, so a typo is a
/// configuration error and not a FIFO with the wrong owner).
fn owner(
    errors: &mut Vec<ConfigError>,
    user: Option<&Located<String>>,
    group: Option<&Located<String>>,
) -> bool {
    let Some(u) = user else {
        return true;
    };
    match haldir_scripts::ScriptUser::resolve(Some(&u.value), group.map(|g| g.value.as_str())) {
        Ok(_) => true,
        Err(e) => {
            let (at, message) = match (&e, group) {
                (haldir_scripts::ScriptError::UnknownGroup(_), Some(g)) => (
                    &g.loc,
                    format!(
                        "the FIFO's group {:?} does not exist; create it or name another",
                        g.value
                    ),
                ),
                _ => (
                    &u.loc,
                    format!(
                        "the FIFO's owner {:?} does not exist; create the account or name another",
                        u.value
                    ),
                ),
            };
            push(errors, at, message);
            false
        }
    }
}

/// Validates the FIFOs and their scripts.
pub(crate) fn notify_fifos(
    errors: &mut Vec<ConfigError>,
    draft: &NotifyFifosDraft,
    settings: &ScriptSettings,
) -> NotifyFifos {
    let mut result = NotifyFifos {
        fifos: Vec::new(),
        write_states_on_reload: draft
            .write_states_on_reload
            .as_ref()
            .is_some_and(|w| w.value),
    };
    let mut paths: Vec<(&str, &Loc)> = Vec::new();
    for events in FifoEvents::ALL {
        let fifo = &draft.fifos[events.index()];
        let script = &draft.scripts[events.index()];
        let Some(fifo) = fifo else {
            if let Some(script) = script {
                push(
                    errors,
                    &script.value.loc,
                    format!(
                        "{}: it reads `{}`, which is not set; add `{} /run/haldir/notify.fifo`",
                        events.script_keyword(),
                        events.keyword(),
                        events.keyword()
                    ),
                );
            }
            continue;
        };
        let path = &fifo.value;
        if !path.value.starts_with('/') || path.value.contains('\0') || path.value.ends_with('/') {
            push(
                errors,
                &path.loc,
                format!(
                    "{} {:?}: give the FIFO's absolute path, e.g. /run/haldir/notify.fifo",
                    events.keyword(),
                    path.value
                ),
            );
            continue;
        }
        if let Some((_, first)) = paths.iter().find(|(p, _)| *p == path.value) {
            push(
                errors,
                &path.loc,
                format!(
                    "{} {:?}: the FIFO at {first} has this path; give each FIFO its own",
                    events.keyword(),
                    path.value
                ),
            );
            continue;
        }
        paths.push((&path.value, &path.loc));
        if !owner(errors, fifo.user.as_ref(), fifo.group.as_ref()) {
            continue;
        }
        let script = match script {
            None => None,
            Some(s) => {
                let user = s
                    .user
                    .as_ref()
                    .map(|u| u.value.as_str())
                    .or(settings.user.as_deref());
                let group = match &s.user {
                    Some(_) => s.group.as_ref().map(|g| g.value.as_str()),
                    None => settings.group.as_deref(),
                };
                let at = s.user.as_ref().map_or(&s.value.loc, |u| &u.loc);
                if crate::validate_health::script_runs(
                    errors,
                    events.script_keyword(),
                    &s.value,
                    (user, group),
                    at,
                    settings.security,
                )
                .is_none()
                {
                    continue;
                }
                Some(FifoScript {
                    command: s.value.value.clone(),
                    user: s.user.as_ref().map(|u| u.value.clone()),
                    group: s.group.as_ref().map(|g| g.value.clone()),
                })
            }
        };
        result.fifos.push(NotifyFifo {
            events,
            path: path.value.clone(),
            user: fifo.user.as_ref().map(|u| u.value.clone()),
            group: fifo.group.as_ref().map(|g| g.value.clone()),
            script,
        });
    }
    result
}

/// The `[global_defs]` lines of `fifos` (written only when set).
pub(crate) fn toml_lines(out: &mut String, fifos: &NotifyFifos, string: impl Fn(&str) -> String) {
    use std::fmt::Write as _;
    let table = |first: (&str, &str), user: &Option<String>, group: &Option<String>| {
        let mut parts = vec![format!("{} = {}", first.0, string(first.1))];
        if let Some(u) = user {
            parts.push(format!("user = {}", string(u)));
        }
        if let Some(g) = group {
            parts.push(format!("group = {}", string(g)));
        }
        format!("{{ {} }}", parts.join(", "))
    };
    for fifo in &fifos.fifos {
        let _ = writeln!(
            out,
            "{} = {}",
            fifo.events.keyword(),
            table(("path", &fifo.path), &fifo.user, &fifo.group)
        );
        if let Some(script) = &fifo.script {
            let _ = writeln!(
                out,
                "{} = {}",
                fifo.events.script_keyword(),
                table(("command", &script.command), &script.user, &script.group)
            );
        }
    }
    if fifos.write_states_on_reload {
        out.push_str("fifo_write_vrrp_states_on_reload = true\n");
    }
}
