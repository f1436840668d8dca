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
use haldir_health::misc::{self, MiscCheckConfig, MiscCommand};

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
