//! keepalived's `enable_script_security`, as haldir applies it.
//!
//! * On (`global_defs { enable_script_security }`, TOML `enable_script_security = true`):
//!   every script (notify*, `vrrp_script`, `MISC_CHECK`) and the configuration file with
//!   its includes are refused when anyone but root can change the file or a directory on
//!   its path (`haldir_scripts::path_security`; sticky directories such as /tmp are fine).
//!   The errors come from validation, so `haldir check`, start and reload all refuse the
//!   configuration, naming the file, the component and who can write it; a reload keeps
//!   the running configuration.
//! * Off (the default, as in keepalived, whose default it is and whose users' scripts
//!   often live in group-writable places): scripts that would run as root (a root
//!   `script_user`, or a set-uid/gid-root file) are refused anyway when insecure — where
//!   keepalived only logs a warning — and every other insecure script is reported by
//!   [`warnings`]: `haldir check` prints them, the daemon logs them at start and reload.

use haldir_config::{CheckKind, Model};
use haldir_health::launcher::Policy;
use haldir_health::misc::{self, MiscCheckConfig, MiscCommand};

/// One script a configuration runs: where it is configured, its command line, and the
/// account it names (`None`: `script_user`).
pub struct ScriptUse<'a> {
    /// `file:line: block: keyword`, for messages.
    pub place: String,
    /// The command line as written.
    pub line: &'a str,
    /// Its own `user`, if it names one.
    pub user: Option<&'a str>,
    /// Its own `group`.
    pub group: Option<&'a str>,
}

/// Every script `model` runs: notify scripts of instances and sync groups, `vrrp_script`s,
/// `MISC_CHECK`s, the notify FIFOs' readers, and the LVS `notify_up` / `notify_down` /
/// `quorum_up` / `quorum_down`.
pub fn every_script(model: &Model) -> Vec<ScriptUse<'_>> {
    let mut all = Vec::new();
    for instance in &model.vrrp_instances {
        for (keyword, line) in instance.notify.iter() {
            all.push(ScriptUse {
                place: format!(
                    "{}: vrrp_instance {:?}: {keyword}",
                    instance.loc, instance.name
                ),
                line,
                user: None,
                group: None,
            });
        }
    }
    for group in &model.sync_groups {
        for (keyword, line) in group.notify.iter() {
            all.push(ScriptUse {
                place: format!("{}: vrrp_sync_group {:?}: {keyword}", group.loc, group.name),
                line,
                user: None,
                group: None,
            });
        }
    }
    for script in &model.vrrp_scripts {
        all.push(ScriptUse {
            place: format!("{}: vrrp_script {:?}", script.loc, script.name),
            line: script.script.as_str(),
            user: script.user.as_deref(),
            group: script.group.as_deref(),
        });
    }
    for fifo in &model.notify_fifos.fifos {
        if let Some(script) = &fifo.script {
            all.push(ScriptUse {
                place: format!("{}_script", fifo.events.keyword()),
                line: script.command.as_str(),
                user: script.user.as_deref(),
                group: script.group.as_deref(),
            });
        }
    }
    for server in &model.virtual_servers {
        for (keyword, line) in [
            ("quorum_up", server.quorum_scripts.up()),
            ("quorum_down", server.quorum_scripts.down()),
        ] {
            if let Some(line) = line {
                all.push(ScriptUse {
                    place: format!("virtual_server {}: {keyword}", server.loc),
                    line,
                    user: None,
                    group: None,
                });
            }
        }
        for real in &server.real_servers {
            for (keyword, line) in [
                ("notify_up", real.notify.up()),
                ("notify_down", real.notify.down()),
            ] {
                if let Some(line) = line {
                    all.push(ScriptUse {
                        place: format!("real_server {}: {keyword}", real.ip),
                        line,
                        user: None,
                        group: None,
                    });
                }
            }
            for check in &real.checks {
                if let CheckKind::Misc(spec) = &check.kind {
                    all.push(ScriptUse {
                        place: format!("{}: MISC_CHECK", check.loc),
                        line: spec.misc_path.as_str(),
                        user: spec.user.as_deref(),
                        group: spec.group.as_deref(),
                    });
                }
            }
        }
    }
    all
}

/// What the script launcher may start for `model`: the account and the program of every
/// script it runs, resolved as the daemon resolves them when it runs them (a script whose
/// user or program does not resolve cannot run anyway and adds nothing).
pub fn launcher_policy(model: &Model) -> Policy {
    let mut policy = Policy::default();
    for script in every_script(model) {
        let (user, group) = match script.user {
            Some(user) => (Some(user), script.group),
            None => (
                model.scripts.user.as_deref(),
                model.scripts.group.as_deref(),
            ),
        };
        let Ok(user) = haldir_scripts::ScriptUser::resolve(user, group) else {
            continue;
        };
        let Ok(argv) = haldir_scripts::command_argv(script.line) else {
            continue;
        };
        let Some(Ok(program)) = argv.first().map(|p| haldir_scripts::resolve_program(p)) else {
            continue;
        };
        policy.users.insert((user.uid, user.gid));
        policy.programs.insert(program);
    }
    policy
}

/// One line per script of `model` that `enable_script_security` would refuse, when it is
/// off (when it is on, validation refuses them and there is nothing to warn about).
pub fn warnings(model: &Model) -> Vec<String> {
    if model.scripts.security {
        return Vec::new();
    }
    let mut lines = Vec::new();
    let mut warn = |place: String, command: &str| {
        let Ok(command) = MiscCommand::parse(command) else {
            return;
        };
        let config = MiscCheckConfig::new(command, model.scripts.notify_timeout);
        if let Some(why) = misc::security_warning(&config) {
            lines.push(format!(
                "{place}: {why} (enable_script_security would refuse it)"
            ));
        }
    };
    for instance in &model.vrrp_instances {
        for (keyword, line) in instance.notify.iter() {
            warn(
                format!(
                    "{}: vrrp_instance {:?}: {keyword}",
                    instance.loc, instance.name
                ),
                line,
            );
        }
    }
    for group in &model.sync_groups {
        for (keyword, line) in group.notify.iter() {
            warn(
                format!("{}: vrrp_sync_group {:?}: {keyword}", group.loc, group.name),
                line,
            );
        }
    }
    for script in &model.vrrp_scripts {
        warn(
            format!("{}: vrrp_script {:?}", script.loc, script.name),
            script.script.as_str(),
        );
    }
    for server in &model.virtual_servers {
        for real in &server.real_servers {
            for check in &real.checks {
                if let CheckKind::Misc(spec) = &check.kind {
                    warn(
                        format!("{}: MISC_CHECK", check.loc),
                        spec.misc_path.as_str(),
                    );
                }
            }
        }
    }
    lines
}
