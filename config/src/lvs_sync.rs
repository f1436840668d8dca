//! `global_defs.lvs_sync_daemon`: the kernel's IPVS connection-sync daemon,
//! driven by a VRRP instance (keepalived's `lvs_sync_daemon IF [INSTANCE]
//! [id N] [maxlen N] [port N] [ttl N] [group ADDR]`).
//!
//! keepalived's rules, followed here: the interface is at most 15 bytes; the
//! sync id is 0..=255 and defaults to the instance's `virtual_router_id` (0
//! without an instance); `maxlen` is 1..=65507 (65535 minus the IP and UDP
//! headers), `port` 1..=65535, `ttl` 1..=255, `group` a multicast address.
//! `maxlen`, `port`, `ttl` and `group` left out are left to the kernel
//! (payload from the MTU, port 8848, TTL 1, group 224.0.0.81 / ff02::81).
//! Where keepalived logs a bad value and ignores it, haldir refuses the file.
//!
//! haldir extension: `bulk_resync on|off` (TOML `bulk_resync = true|false`),
//! default on; see `src/bulk_resync.rs`. keepalived has no such option.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::draft::{InstanceDraft, Located};
use crate::error::{ConfigError, Loc};
use crate::validate::{in_range, is_interface_name, push, MAX_INTERFACE_NAME_BYTES};

/// The validated `lvs_sync_daemon`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvsSyncDaemon {
    /// Interface the sync messages are sent and received on.
    pub interface: String,
    /// The VRRP instance whose state picks the daemon's role (master while
    /// it is MASTER, backup otherwise). `None`: both daemons run all the
    /// time, as keepalived does without an instance.
    pub instance: Option<String>,
    /// The sync id: as written, else the instance's `virtual_router_id`,
    /// else 0.
    pub sync_id: u8,
    /// `maxlen`: the UDP payload size; `None`: the kernel's (from the MTU).
    pub max_len: Option<u16>,
    /// `port`; `None`: the kernel's 8848.
    pub port: Option<u16>,
    /// `ttl`; `None`: the kernel's 1.
    pub ttl: Option<u8>,
    /// `group`; `None`: the kernel's 224.0.0.81 (ff02::81 for IPv6).
    pub group: Option<IpAddr>,
    /// haldir extension `bulk_resync` (default on): a backup asks the master
    /// for its whole connection table when it becomes backup, and holds a
    /// preemption until it has it (`src/bulk_resync.rs`). Off: the kernel's
    /// own sync alone, as keepalived runs it.
    pub bulk_resync: bool,
}

/// `lvs_sync_daemon` as read.
#[derive(Debug, Clone)]
pub(crate) struct LvsSyncDraft {
    pub(crate) loc: Loc,
    pub(crate) interface: Option<Located<String>>,
    pub(crate) instance: Option<Located<String>>,
    pub(crate) id: Option<Located<i64>>,
    pub(crate) maxlen: Option<Located<i64>>,
    pub(crate) port: Option<Located<i64>>,
    pub(crate) ttl: Option<Located<i64>>,
    pub(crate) group: Option<Located<String>>,
    pub(crate) bulk_resync: Option<Located<bool>>,
}

impl LvsSyncDraft {
    pub(crate) fn new(loc: Loc) -> Self {
        LvsSyncDraft {
            loc,
            interface: None,
            instance: None,
            id: None,
            maxlen: None,
            port: None,
            ttl: None,
            group: None,
            bulk_resync: None,
        }
    }
}

/// Largest `maxlen`: 65535 minus the IPv4 and UDP headers.
const MAX_MAXLEN: i64 = 65535 - 20 - 8;

/// Validates `d` against the instances read.
pub(crate) fn validate(
    errors: &mut Vec<ConfigError>,
    d: &LvsSyncDraft,
    instances: &[InstanceDraft],
) -> Option<LvsSyncDaemon> {
    let before = errors.len();
    let interface = match &d.interface {
        None => {
            push(
                errors,
                &d.loc,
                "lvs_sync_daemon needs an interface, e.g. `lvs_sync_daemon eth1 VI_1` (TOML: `lvs_sync_daemon = { interface = \"eth1\", instance = \"VI_1\" }`)",
            );
            None
        }
        Some(i) if !is_interface_name(&i.value) => {
            push(
                errors,
                &i.loc,
                format!(
                    "lvs_sync_daemon interface {:?}: not a Linux interface name; use 1..={MAX_INTERFACE_NAME_BYTES} bytes without spaces or '/'",
                    i.value
                ),
            );
            None
        }
        Some(i) => Some(i.value.clone()),
    };
    let mut default_id = 0;
    if let Some(name) = &d.instance {
        let found = instances
            .iter()
            .find(|i| i.name.as_ref().is_some_and(|n| n.value == name.value));
        match found {
            Some(instance) => {
                default_id = instance
                    .virtual_router_id
                    .as_ref()
                    .map_or(0, |v| v.value.clamp(0, 255));
            }
            None => {
                let known: HashSet<&str> = instances
                    .iter()
                    .filter_map(|i| i.name.as_ref().map(|n| n.value.as_str()))
                    .collect();
                let mut known: Vec<&str> = known.into_iter().collect();
                known.sort_unstable();
                push(
                    errors,
                    &name.loc,
                    format!(
                        "lvs_sync_daemon instance {:?}: no vrrp_instance has that name (defined: {})",
                        name.value,
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
        }
    }
    let id =
        d.id.as_ref()
            .map(|v| in_range(errors, "lvs_sync_daemon id", v, 0..=255, "use 0..=255"));
    let maxlen = d.maxlen.as_ref().map(|v| {
        in_range(
            errors,
            "lvs_sync_daemon maxlen",
            v,
            1..=MAX_MAXLEN,
            "use 1..=65507 (bytes of UDP payload)",
        )
    });
    let port = d.port.as_ref().map(|v| {
        in_range(
            errors,
            "lvs_sync_daemon port",
            v,
            1..=65535,
            "use 1..=65535",
        )
    });
    let ttl = d
        .ttl
        .as_ref()
        .map(|v| in_range(errors, "lvs_sync_daemon ttl", v, 1..=255, "use 1..=255"));
    let group = d.group.as_ref().and_then(|g| match g.value.parse::<IpAddr>() {
        Ok(addr) if addr.is_multicast() => Some(addr),
        Ok(_) => {
            push(
                errors,
                &g.loc,
                format!(
                    "lvs_sync_daemon group {}: not a multicast address; e.g. 224.0.0.81 or ff02::81",
                    g.value
                ),
            );
            None
        }
        Err(_) => {
            push(
                errors,
                &g.loc,
                format!(
                    "lvs_sync_daemon group {:?}: not an IP address; e.g. 224.0.0.81",
                    g.value
                ),
            );
            None
        }
    });
    if errors.len() > before {
        return None;
    }
    Some(LvsSyncDaemon {
        interface: interface?,
        instance: d.instance.as_ref().map(|i| i.value.clone()),
        sync_id: id.flatten().unwrap_or(default_id) as u8,
        max_len: maxlen.flatten().map(|v| v as u16),
        port: port.flatten().map(|v| v as u16),
        ttl: ttl.flatten().map(|v| v as u8),
        group,
        bulk_resync: d.bulk_resync.as_ref().is_none_or(|b| b.value),
    })
}

/// The TOML line (`lvs_sync_daemon = { ... }`) for `[global_defs]`.
pub(crate) fn toml_line(d: &LvsSyncDaemon, string: impl Fn(&str) -> String) -> String {
    let mut fields = vec![format!("interface = {}", string(&d.interface))];
    if let Some(instance) = &d.instance {
        fields.push(format!("instance = {}", string(instance)));
    }
    fields.push(format!("id = {}", d.sync_id));
    if let Some(v) = d.max_len {
        fields.push(format!("maxlen = {v}"));
    }
    if let Some(v) = d.port {
        fields.push(format!("port = {v}"));
    }
    if let Some(v) = d.ttl {
        fields.push(format!("ttl = {v}"));
    }
    if let Some(v) = d.group {
        fields.push(format!("group = \"{v}\""));
    }
    if !d.bulk_resync {
        fields.push("bulk_resync = false".to_owned());
    }
    format!("lvs_sync_daemon = {{ {} }}\n", fields.join(", "))
}
