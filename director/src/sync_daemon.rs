//! The kernel IPVS sync daemon's roles as VRRP asks for them (`global_defs.lvs_sync_daemon`),
//! and the operations that turn the kernel's running daemons into them. Pure: the binary's
//! task reads the kernel, asks [`plan`] and carries the operations out.
//!
//! Roles follow keepalived 2.x (`ipvs_syncd_master` / `ipvs_syncd_backup`, called when an
//! instance becomes or leaves MASTER): with an instance, the **master** daemon while it is
//! MASTER and the **backup** daemon in every other state; without one, both all the time.

use haldir_config::LvsSyncDaemon;
use haldir_ipvs::client::{DaemonRole, SyncDaemon};
use haldir_vrrp::router::State;

/// The daemons `config` asks for while its instance is in `state` (`None`:
/// the instance has not reported yet).
pub fn desired(config: &LvsSyncDaemon, state: Option<State>) -> Vec<SyncDaemon> {
    let daemon = |role| SyncDaemon {
        role,
        interface: config.interface.clone(),
        sync_id: config.sync_id,
        max_len: config.max_len,
        group: config.group,
        port: config.port,
        ttl: config.ttl,
    };
    match (&config.instance, state) {
        (None, _) => vec![daemon(DaemonRole::Master), daemon(DaemonRole::Backup)],
        (Some(_), Some(State::Master)) => vec![daemon(DaemonRole::Master)],
        (Some(_), _) => vec![daemon(DaemonRole::Backup)],
    }
}

/// Whether the kernel's `running` daemon is what `wanted` asks for. The
/// kernel reports its defaults (port 8848, TTL 1, ...); a setting left to
/// the kernel matches whatever it reports.
pub fn satisfies(running: &SyncDaemon, wanted: &SyncDaemon) -> bool {
    running.role == wanted.role
        && running.interface == wanted.interface
        && running.sync_id == wanted.sync_id
        && wanted.max_len.is_none_or(|v| running.max_len == Some(v))
        && wanted.group.is_none_or(|v| running.group == Some(v))
        && wanted.port.is_none_or(|v| running.port == Some(v))
        && wanted.ttl.is_none_or(|v| running.ttl == Some(v))
}

/// An operation on the kernel's daemons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonOp {
    /// Stop the daemon of this role.
    Stop(DaemonRole),
    /// Start this daemon.
    Start(SyncDaemon),
}

/// What turns `running` into `wanted`: every stop first (the old role goes
/// before the new one starts, as keepalived does), then the starts.
pub fn plan(running: &[SyncDaemon], wanted: &[SyncDaemon]) -> Vec<DaemonOp> {
    let mut stops = Vec::new();
    let mut starts = Vec::new();
    for role in [DaemonRole::Master, DaemonRole::Backup] {
        let have = running.iter().find(|d| d.role == role);
        let want = wanted.iter().find(|d| d.role == role);
        match (have, want) {
            (Some(h), Some(w)) if satisfies(h, w) => {}
            (Some(_), Some(w)) => {
                stops.push(DaemonOp::Stop(role));
                starts.push(DaemonOp::Start(w.clone()));
            }
            (Some(_), None) => stops.push(DaemonOp::Stop(role)),
            (None, Some(w)) => starts.push(DaemonOp::Start(w.clone())),
            (None, None) => {}
        }
    }
    // The role being given up is stopped first.
    stops.sort_by_key(|op| match op {
        DaemonOp::Stop(role) => !wanted.iter().all(|w| w.role != *role),
        DaemonOp::Start(_) => false,
    });
    stops.extend(starts);
    stops
}

/// The daemon `d` in a log line: role, interface, syncid and the settings given.
pub fn describe(d: &SyncDaemon) -> String {
    let mut text = format!(
        "{} daemon on {} (syncid {}",
        role_name(d.role),
        d.interface,
        d.sync_id
    );
    if let Some(v) = d.max_len {
        text.push_str(&format!(", maxlen {v}"));
    }
    if let Some(v) = d.group {
        text.push_str(&format!(", group {v}"));
    }
    if let Some(v) = d.port {
        text.push_str(&format!(", port {v}"));
    }
    if let Some(v) = d.ttl {
        text.push_str(&format!(", ttl {v}"));
    }
    text.push(')');
    text
}

/// "master" or "backup".
pub fn role_name(role: DaemonRole) -> &'static str {
    match role {
        DaemonRole::Master => "master",
        DaemonRole::Backup => "backup",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(instance: Option<&str>) -> LvsSyncDaemon {
        LvsSyncDaemon {
            interface: "eth1".into(),
            instance: instance.map(Into::into),
            sync_id: 7,
            max_len: None,
            port: Some(8848),
            ttl: None,
            group: None,
            bulk_resync: true,
        }
    }

    fn kernel(role: DaemonRole, sync_id: u8) -> SyncDaemon {
        SyncDaemon {
            role,
            interface: "eth1".into(),
            sync_id,
            max_len: Some(1472),
            group: Some("224.0.0.81".parse().unwrap()),
            port: Some(8848),
            ttl: Some(1),
        }
    }

    #[test]
    fn roles_follow_the_instance_state() {
        let c = config(Some("VI_1"));
        let roles = |s| desired(&c, s).iter().map(|d| d.role).collect::<Vec<_>>();
        assert_eq!(roles(Some(State::Master)), [DaemonRole::Master]);
        assert_eq!(roles(Some(State::Backup)), [DaemonRole::Backup]);
        assert_eq!(roles(Some(State::Fault)), [DaemonRole::Backup]);
        assert_eq!(roles(None), [DaemonRole::Backup]);
        let both = desired(&config(None), Some(State::Backup));
        assert_eq!(both.len(), 2);
    }

    #[test]
    fn kernel_defaults_satisfy_unset_settings() {
        let wanted = &desired(&config(Some("VI_1")), Some(State::Master))[0];
        assert!(satisfies(&kernel(DaemonRole::Master, 7), wanted));
        assert!(!satisfies(&kernel(DaemonRole::Master, 8), wanted));
        assert!(!satisfies(&kernel(DaemonRole::Backup, 7), wanted));
    }

    #[test]
    fn a_transition_stops_the_old_role_then_starts_the_new() {
        let c = config(Some("VI_1"));
        let master = desired(&c, Some(State::Master));
        let ops = plan(&[kernel(DaemonRole::Backup, 7)], &master);
        assert_eq!(
            ops,
            [
                DaemonOp::Stop(DaemonRole::Backup),
                DaemonOp::Start(master[0].clone())
            ]
        );
        let backup = desired(&c, Some(State::Backup));
        let ops = plan(&[kernel(DaemonRole::Master, 7)], &backup);
        assert_eq!(
            ops,
            [
                DaemonOp::Stop(DaemonRole::Master),
                DaemonOp::Start(backup[0].clone())
            ]
        );
    }

    #[test]
    fn matching_daemons_are_adopted_and_others_replaced() {
        let c = config(Some("VI_1"));
        let backup = desired(&c, Some(State::Backup));
        assert!(plan(&[kernel(DaemonRole::Backup, 7)], &backup).is_empty());
        // A left-over daemon with another sync id is replaced; a stray master stopped.
        let ops = plan(
            &[kernel(DaemonRole::Backup, 3), kernel(DaemonRole::Master, 3)],
            &backup,
        );
        assert_eq!(
            ops,
            [
                DaemonOp::Stop(DaemonRole::Master),
                DaemonOp::Stop(DaemonRole::Backup),
                DaemonOp::Start(backup[0].clone())
            ]
        );
        assert_eq!(
            plan(&[kernel(DaemonRole::Master, 7)], &[]),
            [DaemonOp::Stop(DaemonRole::Master)]
        );
    }
}
