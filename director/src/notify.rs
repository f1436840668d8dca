//! Notify scripts as keepalived runs them: which state name a transition is notified as,
//! which command lines run (`notify_STATE` with its own arguments, `notify` with
//! `INSTANCE|GROUP NAME STATE PRIORITY` appended, priority 0 for a group), and when a sync
//! group as a whole enters a state. Pure: the binary's notify task feeds it transitions and runs what it returns.

use std::collections::BTreeMap;

use haldir_config::{NotifyScripts, SyncGroup};
use haldir_health::misc;
use haldir_vrrp::router::{State, TransitionReason};

/// keepalived's name of the state an instance entered: `STOP` for a
/// shutdown (or removal), `INIT` is never notified.
pub fn notify_state(to: State, reason: TransitionReason) -> Option<&'static str> {
    match (to, reason) {
        (_, TransitionReason::Shutdown) => Some("STOP"),
        (State::Master, _) => Some("MASTER"),
        (State::Backup, _) => Some("BACKUP"),
        (State::Fault, _) => Some("FAULT"),
        (State::Initialize, _) => None,
    }
}

/// The command lines to run for one transition: (what, argv).
pub fn commands_for(
    scripts: &NotifyScripts,
    kind: &str,
    name: &str,
    state: &str,
    priority: Option<u8>,
) -> Result<Vec<(&'static str, Vec<String>)>, String> {
    let specific = match state {
        "MASTER" => scripts.master.as_deref().map(|s| ("notify_master", s)),
        "BACKUP" => scripts.backup.as_deref().map(|s| ("notify_backup", s)),
        "FAULT" => scripts.fault.as_deref().map(|s| ("notify_fault", s)),
        "STOP" => scripts.stop.as_deref().map(|s| ("notify_stop", s)),
        _ => None,
    };
    let mut commands = Vec::new();
    if let Some((what, line)) = specific {
        let argv = misc::split_command_line(line).map_err(|e| format!("{what}: {e}"))?;
        commands.push((what, argv));
    }
    if let Some(line) = scripts.notify.as_deref() {
        let mut argv = misc::split_command_line(line).map_err(|e| format!("notify: {e}"))?;
        argv.extend([kind.to_owned(), name.to_owned(), state.to_owned()]);
        if let Some(priority) = priority {
            argv.push(priority.to_string());
        }
        commands.push(("notify", argv));
    }
    Ok(commands)
}

/// The sync group that enters `state` now that `instance` did: every member of the
/// instance's group is in `state` (by `instance_states`, the last notified state of each
/// instance) and the group was not (`group_states`, updated here). keepalived notifies a
/// sync group's scripts then, STOP included: on shutdown 2.2.7 runs a group's `notify` with
/// `GROUP NAME STOP 0` and its `notify_stop` once every member has stopped.
pub fn group_entered<'m>(
    groups: &'m [SyncGroup],
    instance: &str,
    state: &'static str,
    instance_states: &BTreeMap<String, &'static str>,
    group_states: &mut BTreeMap<String, &'static str>,
) -> Option<&'m SyncGroup> {
    let group = groups
        .iter()
        .find(|g| g.members.iter().any(|m| m == instance))?;
    if !group
        .members
        .iter()
        .all(|m| instance_states.get(m) == Some(&state))
        || group_states.get(&group.name) == Some(&state)
    {
        return None;
    }
    group_states.insert(group.name.clone(), state);
    Some(group)
}

/// The command lines of a sync group's transition: the group's `notify_STATE` and `notify`
/// with `GROUP NAME STATE 0`. keepalived 2.x passes a priority of 0 for a group (its
/// keepalived.conf(5): `notify` gets four arguments, `$(n)` the priority; 2.2.7 was seen
/// calling `notify GROUP VG_1 MASTER 0`), so a script written for it finds four here too.
pub fn group_commands(
    scripts: &NotifyScripts,
    group: &str,
    state: &str,
) -> Result<Vec<(&'static str, Vec<String>)>, String> {
    commands_for(scripts, "GROUP", group, state, Some(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_gets_keepalived_arguments_and_the_state_script_its_own() {
        let scripts = NotifyScripts {
            master: Some("/usr/local/bin/up 'a b'".into()),
            notify: Some("/usr/local/bin/notify --x".into()),
            ..Default::default()
        };
        let commands = commands_for(&scripts, "INSTANCE", "VI_1", "MASTER", Some(150)).unwrap();
        assert_eq!(
            commands,
            vec![
                (
                    "notify_master",
                    vec!["/usr/local/bin/up".to_owned(), "a b".to_owned()]
                ),
                (
                    "notify",
                    [
                        "/usr/local/bin/notify",
                        "--x",
                        "INSTANCE",
                        "VI_1",
                        "MASTER",
                        "150"
                    ]
                    .map(String::from)
                    .to_vec()
                ),
            ]
        );
        let backup = commands_for(&scripts, "INSTANCE", "VI_1", "BACKUP", Some(100)).unwrap();
        assert_eq!(backup.len(), 1, "no notify_backup: only notify");
        let group = group_commands(&scripts, "G1", "FAULT").unwrap();
        assert_eq!(
            group[0].1,
            ["/usr/local/bin/notify", "--x", "GROUP", "G1", "FAULT", "0"]
                .map(String::from)
                .to_vec()
        );
    }

    #[test]
    fn a_sync_group_enters_a_state_once_all_its_members_are_in_it() {
        let groups = [SyncGroup {
            name: "G1".into(),
            members: vec!["VI_1".into(), "VI_2".into()],
            notify: NotifyScripts::default(),
            loc: haldir_config::Loc {
                file: "k.conf".into(),
                line: 1,
                col: 1,
            },
        }];
        let mut instances = BTreeMap::new();
        let mut group_states = BTreeMap::new();
        instances.insert("VI_1".to_owned(), "MASTER");
        assert!(
            group_entered(&groups, "VI_1", "MASTER", &instances, &mut group_states).is_none(),
            "one member of two is not the group"
        );
        instances.insert("VI_2".to_owned(), "MASTER");
        let entered = group_entered(&groups, "VI_2", "MASTER", &instances, &mut group_states);
        assert_eq!(entered.map(|g| g.name.as_str()), Some("G1"));
        assert!(
            group_entered(&groups, "VI_2", "MASTER", &instances, &mut group_states).is_none(),
            "a group enters a state once"
        );
        instances.insert("VI_1".to_owned(), "STOP");
        assert!(
            group_entered(&groups, "VI_1", "STOP", &instances, &mut group_states).is_none(),
            "the group stops with its last member"
        );
        instances.insert("VI_2".to_owned(), "STOP");
        let stopped = group_entered(&groups, "VI_2", "STOP", &instances, &mut group_states);
        assert_eq!(stopped.map(|g| g.name.as_str()), Some("G1"));
        assert!(group_entered(&groups, "VI_9", "MASTER", &instances, &mut group_states).is_none());
    }

    #[test]
    fn shutdown_is_stop_and_init_is_not_notified() {
        assert_eq!(
            notify_state(State::Initialize, TransitionReason::Shutdown),
            Some("STOP")
        );
        assert_eq!(
            notify_state(State::Initialize, TransitionReason::Startup),
            None
        );
        assert_eq!(
            notify_state(State::Master, TransitionReason::MasterDown),
            Some("MASTER")
        );
    }
}
