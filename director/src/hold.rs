//! Which VRRP instances a bulk resync's preemption hold covers: the instance
//! `lvs_sync_daemon` follows and every other member of its sync groups, those that could
//! preempt. A member that preempted alone would take the whole group, and the VIP with
//! it, before the connection table is there (`docs/bulk_resync.md`).

use haldir_config::{LvsSyncDaemon, Model};

/// The instances whose preemption a hold for `instance` (the
/// `lvs_sync_daemon` one) covers: it and every other member of the sync
/// groups it belongs to, those that could preempt (preempt on, not the
/// address owner); empty when none could.
pub fn instances_to_hold(model: &Model, instance: &str) -> Vec<String> {
    let mut names = vec![instance.to_owned()];
    for group in &model.sync_groups {
        if group.members.iter().any(|m| m == instance) {
            for member in &group.members {
                if !names.contains(member) {
                    names.push(member.clone());
                }
            }
        }
    }
    names
        .into_iter()
        .filter(|name| {
            model
                .vrrp_instances
                .iter()
                .any(|i| &i.name == name && i.preempt && i.priority != 255)
        })
        .collect()
}

/// The instances whose preemption is held from haldir's start: those of the
/// hold ([`instances_to_hold`]) when bulk resync is on and follows an
/// instance. A backup may preempt one Master_Down_Interval after it starts,
/// before a hold sent once it runs could arrive (seen in the VM: a second
/// instance's start kept the driver busy that long), so the driver starts
/// them held and the bulk-resync task lifts the hold as usual.
pub fn held_at_start(model: &Model) -> Vec<String> {
    match &model.lvs_sync_daemon {
        Some(LvsSyncDaemon {
            bulk_resync: true,
            instance: Some(instance),
            ..
        }) => instances_to_hold(model, instance),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(text: &str) -> Model {
        haldir_config::parse_toml(text, "test.toml").unwrap()
    }

    const GROUP: &str = r#"
[global_defs]
lvs_sync_daemon = { interface = "eth0", instance = "VI_PUB", id = 1 }

[[vrrp_sync_group]]
name = "G"
group = ["VI_PUB", "VI_PRIV"]

[[vrrp_instance]]
name = "VI_PUB"
interface = "eth0"
virtual_router_id = 1
priority = 150
virtual_ipaddress = ["10.0.0.100/24"]

[[vrrp_instance]]
name = "VI_PRIV"
interface = "eth1"
virtual_router_id = 2
priority = 150
virtual_ipaddress = ["10.1.0.100/24"]

[[vrrp_instance]]
name = "VI_OTHER"
interface = "eth2"
virtual_router_id = 3
priority = 150
virtual_ipaddress = ["10.2.0.100/24"]
"#;

    #[test]
    fn the_hold_covers_the_sync_daemons_instance_and_its_sync_group_only() {
        assert_eq!(held_at_start(&model(GROUP)), ["VI_PUB", "VI_PRIV"]);
        assert_eq!(instances_to_hold(&model(GROUP), "VI_OTHER"), ["VI_OTHER"]);
    }

    #[test]
    fn instances_that_cannot_preempt_are_not_held() {
        let text = GROUP.replacen(
            "virtual_router_id = 2\npriority = 150",
            "virtual_router_id = 2\npriority = 150\nnopreempt = true",
            1,
        );
        assert_eq!(held_at_start(&model(&text)), ["VI_PUB"]);
        let owner = GROUP.replacen(
            "virtual_router_id = 1\npriority = 150",
            "virtual_router_id = 1\npriority = 255",
            1,
        );
        assert_eq!(held_at_start(&model(&owner)), ["VI_PRIV"]);
    }

    #[test]
    fn nothing_is_held_at_start_without_bulk_resync_or_an_instance() {
        let off = GROUP.replacen("id = 1 }", "id = 1, bulk_resync = false }", 1);
        assert!(held_at_start(&model(&off)).is_empty());
        let no_instance = GROUP.replacen("instance = \"VI_PUB\", ", "", 1);
        assert!(held_at_start(&model(&no_instance)).is_empty());
    }
}
