//! The pure plan of a reload: which instances are kept, changed in place,
//! replaced, added or removed.

use std::net::IpAddr;

use super::InstanceSpec;

/// What a reload did, by instance name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Identical configuration: untouched (state, timers and adverts go on).
    pub kept: Vec<String>,
    /// Changed in place (priority, interval, addresses, preemption, ...).
    pub updated: Vec<String>,
    /// Changed identity (interface, VRID, version, family, source, peers, or
    /// how a kept address is added: its prefix, device or options): the
    /// old router resigned and a new one started in Backup.
    pub replaced: Vec<String>,
    /// New: started in Backup (Master at once for an address owner).
    pub added: Vec<String>,
    /// Gone: resigned with a priority-0 advert and released its addresses.
    pub removed: Vec<String>,
}

/// What a reload does with one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadStep {
    /// Unchanged.
    Keep(String),
    /// Same identity, other settings: change in place.
    Update(InstanceSpec),
    /// Same name, other identity: remove the old router, start a new one.
    Replace(InstanceSpec),
    /// A new instance.
    Add(InstanceSpec),
    /// An instance that is no longer configured.
    Remove(String),
}

/// Whether two specs describe the same virtual router on the same link, so a
/// change between them can be applied in place.
fn same_identity(a: &InstanceSpec, b: &InstanceSpec) -> bool {
    let family = |s: &InstanceSpec| s.router.virtual_addresses.first().map(IpAddr::is_ipv6);
    a.interface == b.interface
        && a.router.vrid == b.router.vrid
        && a.router.version == b.router.version
        && a.unicast_source == b.unicast_source
        && a.unicast_peers == b.unicast_peers
        && family(a) == family(b)
        && same_placements(a, b)
}

/// Whether every address both specs hold is added the same way (prefix,
/// device, options): moving a held address is a remove and an add on
/// another device, which only a new router does in order.
fn same_placements(a: &InstanceSpec, b: &InstanceSpec) -> bool {
    a.addresses.iter().all(|placement| {
        b.addresses
            .iter()
            .find(|other| other.address == placement.address)
            .is_none_or(|other| other == placement)
    })
}

/// The pure plan of a reload: instances are matched by name. Removals come
/// first in the result, so an address or VRID that moves between instances is
/// released before it is taken again.
pub fn plan_reload(old: &[InstanceSpec], new: &[InstanceSpec]) -> Vec<ReloadStep> {
    let mut steps: Vec<ReloadStep> = old
        .iter()
        .filter(|o| !new.iter().any(|n| n.name == o.name))
        .map(|o| ReloadStep::Remove(o.name.clone()))
        .collect();
    for spec in new {
        let step = match old.iter().find(|o| o.name == spec.name) {
            None => ReloadStep::Add(spec.clone()),
            Some(o) if o == spec => ReloadStep::Keep(spec.name.clone()),
            Some(o) if same_identity(o, spec) => ReloadStep::Update(spec.clone()),
            Some(_) => ReloadStep::Replace(spec.clone()),
        };
        steps.push(step);
    }
    steps
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::driver::AddressPlacement;
    use crate::router::{GarpConfig, RouterConfig};
    use crate::wire::vrrp::{Auth, Version};

    fn placement(address: &str) -> AddressPlacement {
        AddressPlacement {
            address: address.parse().unwrap(),
            prefix_len: 24,
            device: None,
            options: Default::default(),
        }
    }

    fn spec(name: &str, vrid: u8, priority: u8) -> InstanceSpec {
        InstanceSpec {
            name: name.into(),
            interface: "eth0".into(),
            router: RouterConfig {
                version: Version::V3,
                vrid,
                priority,
                advert_interval_centis: 100,
                preempt: true,
                preempt_delay: Duration::ZERO,
                primary_address: "0.0.0.0".parse().unwrap(),
                virtual_addresses: vec!["10.0.0.100".parse().unwrap()],
                excluded_addresses: Vec::new(),
                auth: Auth::None,
                garp: GarpConfig::default(),
            },
            addresses: vec![placement("10.0.0.100")],
            routes: Vec::new(),
            rules: Vec::new(),
            wait_for_interface: false,
            vmac: None,
            unicast_source: None,
            unicast_peers: Vec::new(),
            track_interfaces: Vec::new(),
            auth: None,
            accept: true,
        }
    }

    #[test]
    fn identical_configuration_keeps_every_instance() {
        let old = vec![spec("a", 1, 100), spec("b", 2, 100)];
        assert_eq!(
            plan_reload(&old, &old),
            vec![ReloadStep::Keep("a".into()), ReloadStep::Keep("b".into())]
        );
    }

    #[test]
    fn settings_change_in_place_and_identity_changes_replace() {
        let old = vec![spec("a", 1, 100), spec("b", 2, 100), spec("gone", 3, 100)];
        let mut a = spec("a", 1, 120);
        a.router
            .virtual_addresses
            .push("10.0.0.101".parse().unwrap());
        a.addresses.push(placement("10.0.0.101"));
        let b = spec("b", 9, 100);
        let new = vec![a.clone(), b.clone(), spec("new", 4, 100)];
        assert_eq!(
            plan_reload(&old, &new),
            vec![
                ReloadStep::Remove("gone".into()),
                ReloadStep::Update(a),
                ReloadStep::Replace(b),
                ReloadStep::Add(spec("new", 4, 100)),
            ]
        );
    }

    #[test]
    fn interface_family_peers_and_version_are_identity() {
        let old = spec("a", 1, 100);
        let mut changes = Vec::new();
        let mut other = old.clone();
        other.interface = "eth1".into();
        changes.push(other);
        let mut other = old.clone();
        other.router.version = Version::V2;
        changes.push(other);
        let mut other = old.clone();
        other.router.virtual_addresses = vec!["fd00::100".parse().unwrap()];
        changes.push(other);
        let mut other = old.clone();
        other.unicast_peers = vec!["10.0.0.2".parse().unwrap()];
        changes.push(other);
        // A kept address moved to another device, or given a label.
        let mut other = old.clone();
        other.addresses[0].device = Some("eth1".into());
        changes.push(other);
        let mut other = old.clone();
        other.addresses[0].options.label = Some("eth0:1".into());
        changes.push(other);
        for new in changes {
            assert_eq!(
                plan_reload(std::slice::from_ref(&old), std::slice::from_ref(&new)),
                vec![ReloadStep::Replace(new.clone())]
            );
        }
    }
}
