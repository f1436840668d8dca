//! The validated model → the VRRP driver's inputs: one [`InstanceSpec`] per
//! `vrrp_instance` (RFC 5798 router settings, the v2 password, `auth_hmac`), the sync
//! groups, and what an instance's tracked scripts and files mean for its priority ([`tracking`]).
//! Plain mappings with keepalived's meaning of the keywords; no sockets.

use std::time::Duration;

use crate::track_process::{process_effect, ProcessEffect};
use haldir_config::{
    AddressFamily, AddressScope, Authentication, Model, RouteKind, VirtualIp, VirtualRoute,
    VirtualRule, VrrpInstance, VrrpVersion,
};
use haldir_vrrp::driver::{
    AddressPlacement, InstanceSpec, InterfaceTrack, SyncGroupSpec, Tracking,
};
use haldir_vrrp::netif::{AddressOptions, RouteSpec, RuleSpec};
use haldir_vrrp::router::{GarpConfig, RouterConfig};
use haldir_vrrp::vmac::VmacSpec;
use haldir_vrrp::wire::vrrp::{Auth, Version};

/// How the driver adds one `virtual_ipaddress` (or excluded) entry: a `dev`
/// naming the instance's own interface is the same as none; with `use_vmac`
/// an address of the instance's family without a `dev` goes on the macvlan
/// (keepalived.conf(5), `use_vmac`).
fn address_placement(vip: &VirtualIp, instance: &VrrpInstance) -> AddressPlacement {
    let interface = &instance.interface;
    let device = match (&vip.device, &instance.use_vmac) {
        (Some(device), _) => Some(device.clone()).filter(|device| device != interface),
        (None, Some(vmac)) if AddressFamily::of(&vip.addr()) == instance.family => {
            Some(vmac.name.clone())
        }
        (None, _) => None,
    };
    AddressPlacement {
        address: vip.addr(),
        prefix_len: vip.address.prefix_len,
        device,
        options: address_options(vip),
    }
}

/// The label, broadcast address and scope of an entry.
fn address_options(vip: &VirtualIp) -> AddressOptions {
    AddressOptions {
        label: vip.label.clone(),
        broadcast: vip.broadcast,
        scope: vip.scope.map(AddressScope::kernel_number),
    }
}

/// A `virtual_routes` entry in the kernel's terms.
fn route_spec(route: &VirtualRoute) -> RouteSpec {
    RouteSpec {
        // rtnetlink.h, RTN_*.
        kind: match route.kind {
            RouteKind::Unicast => 1,
            RouteKind::Blackhole => 6,
            RouteKind::Unreachable => 7,
            RouteKind::Prohibit => 8,
            RouteKind::Throw => 9,
        },
        destination: route.destination.addr,
        prefix_len: route.destination.prefix_len,
        source: route.source,
        gateway: route.gateway,
        device: route.device.clone(),
        scope: route.scope.map(AddressScope::kernel_number),
        table: route.table,
        metric: route.metric,
        protocol: route.protocol,
        onlink: route.onlink,
    }
}

/// A `virtual_rules` entry in the kernel's terms.
fn rule_spec(rule: &VirtualRule) -> RuleSpec {
    let prefix = |p: &haldir_config::VirtualAddress| (p.addr, p.prefix_len);
    RuleSpec {
        ipv6: rule.family() == AddressFamily::Ipv6,
        from: rule.from.as_ref().map(prefix),
        to: rule.to.as_ref().map(prefix),
        input_interface: rule.input_interface.clone(),
        output_interface: rule.output_interface.clone(),
        fwmark: rule.fwmark,
        priority: rule.priority,
        table: rule.table,
    }
}

/// keepalived's static addresses, routes and rules in the kernel's terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticSpecs {
    /// Addresses, each with its `dev`.
    pub addresses: Vec<AddressPlacement>,
    /// Routes.
    pub routes: Vec<RouteSpec>,
    /// Rules.
    pub rules: Vec<RuleSpec>,
}

impl StaticSpecs {
    /// The statics of `model`.
    pub fn of(model: &Model) -> StaticSpecs {
        let statics = &model.statics;
        StaticSpecs {
            addresses: statics
                .addresses
                .iter()
                .map(|vip| AddressPlacement {
                    address: vip.addr(),
                    prefix_len: vip.address.prefix_len,
                    device: vip.device.clone(),
                    options: address_options(vip),
                })
                .collect(),
            routes: statics.routes.iter().map(route_spec).collect(),
            rules: statics.rules.iter().map(rule_spec).collect(),
        }
    }

    /// What is in `self` and not in `other` (a reload removes what the old
    /// statics have that the new do not, and adds the reverse).
    pub fn without(&self, other: &StaticSpecs) -> StaticSpecs {
        StaticSpecs {
            addresses: missing_from(&self.addresses, &other.addresses),
            routes: missing_from(&self.routes, &other.routes),
            rules: missing_from(&self.rules, &other.rules),
        }
    }

    /// Nothing at all.
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty() && self.routes.is_empty() && self.rules.is_empty()
    }
}

/// The entries of `list` that `other` does not have.
fn missing_from<T: Clone + PartialEq>(list: &[T], other: &[T]) -> Vec<T> {
    list.iter()
        .filter(|e| !other.contains(e))
        .cloned()
        .collect()
}

/// The driver's view of every configured instance; with `dynamic_interfaces`,
/// each waits for a missing interface instead of failing the start.
pub fn instance_specs(model: &Model) -> Vec<InstanceSpec> {
    model
        .vrrp_instances
        .iter()
        .map(|instance| InstanceSpec {
            wait_for_interface: model.dynamic_interfaces,
            ..instance_spec(instance)
        })
        .collect()
}

/// The driver's view of one configured instance.
pub fn instance_spec(instance: &VrrpInstance) -> InstanceSpec {
    let auth = match &instance.authentication {
        None => Auth::None,
        Some(Authentication::Pass(password)) => {
            // RFC 3768 §5.3.10: the password, zero-padded to 8 bytes.
            let mut data = [0u8; 8];
            let bytes = password.as_bytes();
            data[..bytes.len().min(8)].copy_from_slice(&bytes[..bytes.len().min(8)]);
            Auth::Simple(data)
        }
    };
    InstanceSpec {
        name: instance.name.clone(),
        interface: instance.interface.clone(),
        router: RouterConfig {
            version: match instance.version {
                VrrpVersion::V2 => Version::V2,
                VrrpVersion::V3 => Version::V3,
            },
            vrid: instance.virtual_router_id,
            priority: instance.priority,
            advert_interval_centis: instance.advert_int_centis,
            preempt: instance.preempt,
            preempt_delay: Duration::from_secs(u64::from(instance.preempt_delay_secs)),
            // Set by the driver from the interface (or unicast_src_ip).
            primary_address: instance
                .unicast_src_ip
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            virtual_addresses: instance
                .virtual_ipaddress
                .iter()
                .map(VirtualIp::addr)
                .collect(),
            excluded_addresses: instance
                .virtual_ipaddress_excluded
                .iter()
                .map(VirtualIp::addr)
                .collect(),
            auth,
            garp: GarpConfig {
                repeat: instance.garp_master_repeat,
                refresh_repeat: instance.garp_master_refresh_repeat,
                interval: Duration::from_millis(u64::from(instance.garp_interval_millis)),
                master_delay: Duration::from_secs(u64::from(instance.garp_master_delay_secs)),
                refresh: (instance.garp_master_refresh_secs > 0)
                    .then(|| Duration::from_secs(u64::from(instance.garp_master_refresh_secs))),
            },
        },
        addresses: instance
            .virtual_ipaddress
            .iter()
            .chain(&instance.virtual_ipaddress_excluded)
            .map(|vip| address_placement(vip, instance))
            .collect(),
        routes: instance.virtual_routes.iter().map(route_spec).collect(),
        rules: instance.virtual_rules.iter().map(rule_spec).collect(),
        wait_for_interface: false,
        vmac: instance.use_vmac.as_ref().map(|vmac| VmacSpec {
            name: vmac.name.clone(),
            mac: vmac.mac,
            xmit_base: instance.vmac_xmit_base,
        }),
        unicast_source: instance.unicast_src_ip,
        unicast_peers: instance.unicast_peer.clone(),
        accept: instance.accept,
        track_interfaces: instance
            .track_interface
            .iter()
            .map(|t| InterfaceTrack {
                name: t.name.clone(),
                weight: t.weight,
                reverse: t.reverse,
            })
            .collect(),
        auth: instance
            .auth_hmac
            .as_ref()
            .map(|a| auth_config(a, instance.advert_int_centis)),
    }
}

/// The driver's view of an instance's `auth_hmac`.
pub fn auth_config(
    auth: &haldir_config::AuthHmac,
    advert_int_centis: u16,
) -> haldir_vrrp::auth::AuthConfig {
    use haldir_config::AuthHmacMode;
    use haldir_vrrp::auth::{AntiReplay, AuthConfig, AuthKey, Mode};
    AuthConfig {
        keys: auth
            .keys
            .iter()
            .map(|k| AuthKey {
                id: k.id,
                secret: k.secret.clone(),
            })
            .collect(),
        active_key: auth.active_key,
        mode: match auth.mode {
            AuthHmacMode::Enforce => Mode::Enforce,
            AuthHmacMode::Permissive => Mode::Permissive,
            AuthHmacMode::ReceiveOnly => Mode::ReceiveOnly,
        },
        anti_replay: if auth.anti_replay_time {
            AntiReplay::Time {
                window_secs: auth.time_window_secs(advert_int_centis),
            }
        } else {
            AntiReplay::Monotonic
        },
    }
}

/// The driver's view of the configured sync groups.
pub fn sync_group_specs(model: &Model) -> Vec<SyncGroupSpec> {
    model
        .sync_groups
        .iter()
        .map(|g| SyncGroupSpec {
            name: g.name.clone(),
            members: g.members.clone(),
        })
        .collect()
}

/// The effect of an instance's tracked scripts and files (keepalived semantics).
///
/// Scripts: a positive weight is added while its script is OK, a negative one while it
/// fails; a failing script of weight 0 means FAULT. `script_ok(name)` is the script's
/// state (unknown: OK).
///
/// Files: see [`track_file_effect`]; `file_value(name)` is the value last read (unknown:
/// 0, as keepalived reads a missing file).
///
/// Processes: see [`crate::track_process::process_effect`]; `process_up(name)` is the
/// block's counted quorum (unknown: held).
pub fn tracking(
    instance: &VrrpInstance,
    script_ok: &dyn Fn(&str) -> Option<bool>,
    file_value: &dyn Fn(&str) -> Option<i64>,
    process_up: &dyn Fn(&str) -> Option<bool>,
) -> Tracking {
    let mut result = Tracking::default();
    for tracked in &instance.track_script {
        let ok = script_ok(&tracked.name).unwrap_or(true);
        match (tracked.weight, ok) {
            (w, true) if w > 0 => result.priority_delta += w,
            (w, false) if w < 0 => result.priority_delta += w,
            (0, false) => result.fault = true,
            _ => {}
        }
    }
    let mut file_delta: i64 = 0;
    for tracked in &instance.track_file {
        let value = file_value(&tracked.name).unwrap_or(0);
        match track_file_effect(value, tracked.weight, tracked.reverse) {
            TrackFileEffect::Fault => result.fault = true,
            TrackFileEffect::Priority(delta) => file_delta += delta,
        }
    }
    for tracked in &instance.track_process {
        let up = process_up(&tracked.name).unwrap_or(true);
        match process_effect(up, tracked.weight, tracked.reverse) {
            ProcessEffect::Fault => result.fault = true,
            ProcessEffect::Priority(delta) => file_delta += i64::from(delta),
        }
    }
    let total = i64::from(result.priority_delta).saturating_add(file_delta);
    result.priority_delta = total.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
    result
}

/// What one tracked file's value does to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackFileEffect {
    /// Added to the priority (the effective priority stays within 1..=254).
    Priority(i64),
    /// The instance goes to FAULT.
    Fault,
}

/// keepalived.conf(5), "Track files": with weight 0 a non-zero value is a failure (with
/// `reverse`, a zero value is); otherwise value × weight, negated by `reverse`, is added
/// to the priority, and a result below -253 is a failure.
pub fn track_file_effect(value: i64, weight: i32, reverse: bool) -> TrackFileEffect {
    if weight == 0 {
        return if (value != 0) != reverse {
            TrackFileEffect::Fault
        } else {
            TrackFileEffect::Priority(0)
        };
    }
    let direction = if reverse { -1 } else { 1 };
    let delta = value
        .saturating_mul(i64::from(weight))
        .saturating_mul(direction);
    if delta < -253 {
        TrackFileEffect::Fault
    } else {
        TrackFileEffect::Priority(delta)
    }
}

/// How many bytes of a tracked file are read (keepalived reads at most 127).
pub const TRACK_FILE_READ_LIMIT: usize = 127;

/// The value of a tracked file's text, read as keepalived does (C's `strtol` with base
/// 0): leading white space, an optional sign, then `0x` hex, `0` octal or decimal
/// digits, up to the first other character. No digits read as 0. `None`: the number is
/// outside 32 bits (keepalived then ignores the read and keeps the last value).
pub fn track_file_value(text: &[u8]) -> Option<i64> {
    let text = &text[..text.len().min(TRACK_FILE_READ_LIMIT)];
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let mut rest = &text[start..];
    let negative = match rest.first() {
        Some(b'-') => {
            rest = &rest[1..];
            true
        }
        Some(b'+') => {
            rest = &rest[1..];
            false
        }
        _ => false,
    };
    let hex_digit_follows = rest.get(2).is_some_and(u8::is_ascii_hexdigit);
    let (radix, digits) = match rest {
        [b'0', b'x' | b'X', ..] if hex_digit_follows => (16, &rest[2..]),
        [b'0', ..] => (8, rest),
        _ => (10, rest),
    };
    let mut magnitude: i64 = 0;
    for &b in digits {
        let Some(digit) = char::from(b).to_digit(radix) else {
            break;
        };
        magnitude = magnitude
            .saturating_mul(i64::from(radix))
            .saturating_add(i64::from(digit));
    }
    let value = if negative { -magnitude } else { magnitude };
    // keepalived accepts INT32_MIN..=INT32_MAX + 1.
    (i64::from(i32::MIN)..=i64::from(i32::MAX) + 1)
        .contains(&value)
        .then_some(value)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use haldir_config::Model;

    use super::*;

    fn model(text: &str) -> Model {
        haldir_config::parse_toml(text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    const INSTANCE: &str = r#"
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
priority = 100
virtual_ipaddress = ["192.0.2.10/24"]
"#;

    #[test]
    fn a_v2_password_is_zero_padded_to_eight_bytes() {
        let m = model(&format!("{INSTANCE}version = 2\nauthentication = {{ auth_type = \"PASS\", auth_pass = \"abc\" }}\n"));
        let spec = instance_spec(&m.vrrp_instances[0]);
        assert_eq!(spec.router.auth, Auth::Simple(*b"abc\0\0\0\0\0"));
        assert_eq!(spec.router.version, Version::V2);
        assert_eq!(spec.router.vrid, 51);
        assert_eq!(spec.addresses.len(), 1);
        assert_eq!(spec.addresses[0].prefix_len, 24);
        assert_eq!(spec.addresses[0].device, None);
    }

    #[test]
    fn placements_carry_device_label_and_scope_and_excluded_addresses_are_held_not_advertised() {
        let m = model(&format!(
            "{INSTANCE}virtual_ipaddress_excluded = [\"198.51.100.7/24 dev eth1 label eth1:ev brd 198.51.100.127 scope link\", \"2001:db8::7/64 dev eth0\"]\n"
        ));
        let spec = instance_spec(&m.vrrp_instances[0]);
        assert_eq!(
            spec.router.virtual_addresses,
            vec!["192.0.2.10".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(
            spec.router.excluded_addresses,
            vec![
                "198.51.100.7".parse::<std::net::IpAddr>().unwrap(),
                "2001:db8::7".parse().unwrap()
            ]
        );
        let evip = &spec.addresses[1];
        assert_eq!(evip.device.as_deref(), Some("eth1"));
        assert_eq!(evip.options.label.as_deref(), Some("eth1:ev"));
        assert_eq!(
            evip.options.broadcast,
            Some("198.51.100.127".parse().unwrap())
        );
        assert_eq!(evip.options.scope, Some(253));
        // `dev` naming the instance's own interface is no other device.
        assert_eq!(spec.addresses[2].device, None);
        assert_eq!(spec.addresses[2].prefix_len, 64);
    }

    #[test]
    fn tracking_follows_keepalived_weights() {
        let m = model(
            r#"
    [[vrrp_script]]
    name = "plus"
    script = "/bin/true"
    weight = 10
    [[vrrp_script]]
    name = "minus"
    script = "/bin/true"
    weight = -20
    [[vrrp_script]]
    name = "zero"
    script = "/bin/true"
    [[vrrp_instance]]
    name = "VI_1"
    interface = "eth0"
    virtual_router_id = 51
    priority = 100
    virtual_ipaddress = ["192.0.2.10/24"]
    track_script = ["plus", "minus", { name = "zero", weight = 0 }]
    "#,
        );
        let i = &m.vrrp_instances[0];
        let with = |states: &[(&str, bool)]| {
            let map: HashMap<&str, bool> = states.iter().copied().collect();
            tracking(i, &|name| map.get(name).copied(), &|_| None, &|_| None)
        };
        assert_eq!(
            with(&[]),
            Tracking {
                priority_delta: 10,
                fault: false
            },
            "all OK: +10"
        );
        assert_eq!(
            with(&[("plus", false)]),
            Tracking {
                priority_delta: 0,
                fault: false
            }
        );
        assert_eq!(
            with(&[("minus", false)]),
            Tracking {
                priority_delta: -10,
                fault: false
            }
        );
        assert_eq!(
            with(&[("plus", false), ("minus", false), ("zero", false)]),
            Tracking {
                priority_delta: -20,
                fault: true
            }
        );
    }

    #[test]
    fn a_track_file_value_reads_as_strtol_with_base_zero() {
        assert_eq!(track_file_value(b"42\n"), Some(42));
        assert_eq!(track_file_value(b"  -7 apples"), Some(-7));
        assert_eq!(track_file_value(b"+3"), Some(3));
        assert_eq!(track_file_value(b"0x1F"), Some(31));
        assert_eq!(track_file_value(b"010"), Some(8), "a leading 0 is octal");
        assert_eq!(
            track_file_value(b"0x"),
            Some(0),
            "0x without a hex digit reads the 0"
        );
        assert_eq!(track_file_value(b""), Some(0), "an empty file is 0");
        assert_eq!(track_file_value(b"ready"), Some(0), "no digits read as 0");
        assert_eq!(track_file_value(b"2147483648"), Some(2_147_483_648));
        assert_eq!(
            track_file_value(b"2147483649"),
            None,
            "past 32 bits is ignored"
        );
        assert_eq!(track_file_value(b"-2147483649"), None);
        assert_eq!(track_file_value(b"99999999999999999999999999"), None);
        let mut long = vec![b' '; TRACK_FILE_READ_LIMIT];
        long.extend_from_slice(b"5");
        assert_eq!(
            track_file_value(&long),
            Some(0),
            "only the first bytes are read"
        );
    }

    #[test]
    fn a_track_file_value_times_its_weight_moves_the_priority() {
        use TrackFileEffect::{Fault, Priority};
        assert_eq!(track_file_effect(0, 0, false), Priority(0));
        assert_eq!(
            track_file_effect(3, 0, false),
            Fault,
            "weight 0: non-zero fails"
        );
        assert_eq!(
            track_file_effect(0, 0, true),
            Fault,
            "weight 0 reverse: zero fails"
        );
        assert_eq!(track_file_effect(3, 0, true), Priority(0));
        assert_eq!(track_file_effect(5, 2, false), Priority(10));
        assert_eq!(track_file_effect(5, 2, true), Priority(-10));
        assert_eq!(track_file_effect(-5, 2, false), Priority(-10));
        assert_eq!(track_file_effect(-253, 1, false), Priority(-253));
        assert_eq!(track_file_effect(-254, 1, false), Fault, "below -253 fails");
        assert_eq!(track_file_effect(1000, 1, false), Priority(1000));
        assert_eq!(
            track_file_effect(i64::from(i32::MAX) + 1, i32::MAX, true),
            Fault,
            "no overflow"
        );
    }

    #[test]
    fn tracked_files_add_to_tracked_scripts() {
        let m = model(
            r#"
    [[vrrp_script]]
    name = "minus"
    script = "/bin/true"
    weight = -20
    [[track_file]]
    name = "load"
    file = "/run/load"
    weight = -1
    [[track_file]]
    name = "gate"
    file = "/run/gate"
    weight = 0
    [[vrrp_instance]]
    name = "VI_1"
    interface = "eth0"
    virtual_router_id = 51
    priority = 100
    virtual_ipaddress = ["192.0.2.10/24"]
    track_script = ["minus"]
    track_file = ["load", { name = "gate", weight = 0, reverse = true }]
    "#,
        );
        let i = &m.vrrp_instances[0];
        let with = |script_ok: bool, load: i64, gate: i64| {
            tracking(
                i,
                &|_| Some(script_ok),
                &|name| match name {
                    "load" => Some(load),
                    _ => Some(gate),
                },
                &|_| None,
            )
        };
        assert_eq!(
            with(true, 30, 1),
            Tracking {
                priority_delta: -30,
                fault: false
            }
        );
        assert_eq!(
            with(false, 30, 1),
            Tracking {
                priority_delta: -50,
                fault: false
            }
        );
        assert!(with(true, 0, 0).fault, "gate reversed: 0 fails");
        assert!(with(true, 300, 1).fault, "load 300 x -1 is below -253");
        assert_eq!(
            tracking(i, &|_| None, &|_| None, &|_| None),
            Tracking {
                priority_delta: 0,
                fault: true
            },
            "unknown files read as 0: the reversed gate fails"
        );
    }
}
