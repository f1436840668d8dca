//! Notify scripts as keepalived runs them: which state name a transition is notified as,
//! which command lines run (`notify_STATE` with its own arguments, `notify` with
//! `INSTANCE|GROUP NAME STATE PRIORITY` appended, priority 0 for a group), and when a sync
//! group as a whole enters a state, and the lines a notify FIFO receives (keepalived's
//! `notify_fifo` format). Pure: the binary's notify task feeds it transitions and runs or
//! writes what it returns.

use std::collections::BTreeMap;

use haldir_config::{
    LvsProtocol, NotifyScripts, RealServer, SyncGroup, VirtualServer, VirtualServerAddress,
};
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
        let argv = misc::command_argv(line).map_err(|e| format!("{what}: {e}"))?;
        commands.push((what, argv));
    }
    if let Some(line) = scripts.notify.as_deref() {
        let argv = misc::command_argv(line).map_err(|e| format!("notify: {e}"))?;
        let mut extra = vec![kind.to_owned(), name.to_owned(), state.to_owned()];
        if let Some(priority) = priority {
            extra.push(priority.to_string());
        }
        let argv = misc::with_args(argv, &extra);
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

/// A notify FIFO's line for an instance (`kind` `INSTANCE`) or sync group (`GROUP`, priority
/// 0) entering `state`: `INSTANCE "VI_1" MASTER 150` and a newline, as keepalived writes it.
pub fn fifo_vrrp_line(kind: &str, name: &str, state: &str, priority: u8) -> String {
    format!("{kind} \"{name}\" {state} {priority}\n")
}

/// A virtual server as keepalived's FIFO lines name it: `[192.0.2.1]:tcp:80`, or
/// `FWM 5` for a firewall-mark service. (keepalived names a `virtual_server_group` member
/// by its group; haldir has expanded groups into their members, and names each.)
pub fn fifo_service_name(vs: &VirtualServer) -> String {
    match vs.address {
        VirtualServerAddress::Socket { ip, port } => trio(ip, vs.protocol, port),
        VirtualServerAddress::Fwmark(mark) => format!("FWM {mark}"),
    }
}

fn trio(ip: std::net::IpAddr, protocol: LvsProtocol, port: u16) -> String {
    let protocol = match protocol {
        LvsProtocol::Tcp => "tcp",
        LvsProtocol::Udp => "udp",
        LvsProtocol::Sctp => "sctp",
    };
    format!("[{ip}]:{protocol}:{port}")
}

/// The FIFO line of a virtual server whose quorum was gained (`UP`) or lost (`DOWN`).
pub fn fifo_quorum_line(vs: &VirtualServer, up: bool) -> String {
    format!("VS {} {}\n", fifo_service_name(vs), up_down(up))
}

/// The FIFO line of a real server that came up or went down (all its checkers up, or
/// one down): `RS [10.0.0.1]:tcp:80 [192.0.2.1]:tcp:80 UP`.
pub fn fifo_real_server_line(vs: &VirtualServer, rs: &RealServer, up: bool) -> String {
    format!(
        "RS {} {} {}\n",
        trio(rs.ip, vs.protocol, rs.port),
        fifo_service_name(vs),
        up_down(up)
    )
}

fn up_down(up: bool) -> &'static str {
    if up {
        "UP"
    } else {
        "DOWN"
    }
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
    fn fifo_lines_are_keepalived_lines() {
        assert_eq!(
            fifo_vrrp_line("INSTANCE", "VI_1", "MASTER", 150),
            "INSTANCE \"VI_1\" MASTER 150\n"
        );
        let text = "[[virtual_server]]\nip = \"2001:db8::1\"\nport = 443\nprotocol = \"TCP\"\nlb_algo = \"rr\"\nlb_kind = \"DR\"\n[[virtual_server.real_server]]\nip = \"2001:db8::10\"\nport = 443\n";
        let model = haldir_config::parse_toml(text, "t.toml").unwrap();
        let vs = &model.virtual_servers[0];
        assert_eq!(
            fifo_quorum_line(vs, false),
            "VS [2001:db8::1]:tcp:443 DOWN\n"
        );
        assert_eq!(
            fifo_real_server_line(vs, &vs.real_servers[0], true),
            "RS [2001:db8::10]:tcp:443 [2001:db8::1]:tcp:443 UP\n"
        );
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
