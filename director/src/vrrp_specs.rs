//! The validated model → the VRRP driver's inputs: one [`InstanceSpec`] per
//! `vrrp_instance` (RFC 5798 router settings, the v2 password, `auth_hmac`), the sync
//! groups, and what an instance's tracked scripts mean for its priority ([`tracking`]).
//! Plain mappings with keepalived's meaning of the keywords; no sockets.

use std::time::Duration;

use haldir_config::{Authentication, Model, VrrpInstance, VrrpVersion};
use haldir_vrrp::driver::{InstanceSpec, SyncGroupSpec, Tracking};
use haldir_vrrp::router::{GarpConfig, RouterConfig};
use haldir_vrrp::wire::vrrp::{Auth, Version};

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
            virtual_addresses: instance.virtual_ipaddress.iter().map(|v| v.addr).collect(),
            auth,
            garp: GarpConfig {
                repeat: instance.garp_master_repeat,
                interval: Duration::from_millis(u64::from(instance.garp_interval_millis)),
                master_delay: Duration::from_secs(u64::from(instance.garp_master_delay_secs)),
                refresh: (instance.garp_master_refresh_secs > 0)
                    .then(|| Duration::from_secs(u64::from(instance.garp_master_refresh_secs))),
            },
        },
        virtual_prefix_lens: instance
            .virtual_ipaddress
            .iter()
            .map(|v| v.prefix_len)
            .collect(),
        unicast_source: instance.unicast_src_ip,
        unicast_peers: instance.unicast_peer.clone(),
        accept: instance.accept,
        track_interfaces: instance.track_interface.clone(),
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

/// The effect of an instance's tracked scripts (keepalived semantics): a positive weight
/// is added while its script is OK, a negative one while it fails; a failing script of
/// weight 0 means FAULT. `ok(name)` is the script's state (unknown: OK).
pub fn tracking(instance: &VrrpInstance, ok: &dyn Fn(&str) -> Option<bool>) -> Tracking {
    let mut result = Tracking::default();
    for tracked in &instance.track_script {
        let ok = ok(&tracked.name).unwrap_or(true);
        match (tracked.weight, ok) {
            (w, true) if w > 0 => result.priority_delta += w,
            (w, false) if w < 0 => result.priority_delta += w,
            (0, false) => result.fault = true,
            _ => {}
        }
    }
    result
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
        assert_eq!(spec.virtual_prefix_lens, vec![24]);
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
            tracking(i, &|name| map.get(name).copied())
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
}
