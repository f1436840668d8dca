//! `[announce]`: active-active directors behind ECMP (issue 17). haldir makes each
//! announced VIP present as a /32 (/128) on an interface while this director should
//! receive the VIP's traffic, and FRR's bgpd announces it (`network VIP/32`, whose
//! import check follows the address); see `docs/active-active.md`.
//!
//! A haldir extension, read from TOML only: keepalived has no such block (its
//! keepalived.conf front-end refuses nothing new, it simply has no keyword for it).
//! The rules: `interface` is a Linux interface name (default `lo`); `drain` is
//! 0..=3600 seconds in whole milliseconds (default 5); `vips`, when given, lists
//! addresses each of which is the address of at least one `[[virtual_server]]`
//! (its health decides the announcement), each once; left out, every virtual
//! server address is announced (fwmark services have no address and are not). An
//! announced VIP may not also be a `virtual_ipaddress` of a VRRP instance: an
//! address is either moved by VRRP or announced over BGP. `track_interface` names
//! interfaces (the uplinks) that must be up for anything to be announced.
//! `sloppy_tcp` and `sloppy_sctp` (default true) are the kernel's
//! `net.ipv4.vs.sloppy_tcp` / `sloppy_sctp`, set while `[announce]` is configured:
//! ECMP moves a flow to another director when the set of directors changes, and
//! that director sees the flow's next packet mid-stream; without them IPVS
//! schedules only a SYN (SCTP: an INIT) and the moved connection dies.
//! `bmp_listen` (an address:port, none by default) is where haldir listens for the BGP
//! speaker's BMP connection (RFC 7854; FRR's `bmp connect`), which reports the BGP
//! sessions' state for the status.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::draft::Located;
use crate::error::{ConfigError, Loc};
use crate::model::{VirtualServer, VirtualServerAddress, VrrpInstance};
use crate::validate::{is_interface_name, push, whole_units, MAX_INTERFACE_NAME_BYTES};

/// The default interface the VIPs go on.
pub const DEFAULT_INTERFACE: &str = "lo";
/// The default drain time: long enough for the router to take the withdrawal
/// (measured ~125 ms with `network` import check, plus a BGP update), short
/// enough not to hold a restart up.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(5);
/// The longest drain time accepted.
pub const MAX_DRAIN_SECS: f64 = 3600.0;

/// The validated `[announce]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// Where the VIPs' /32 (/128) addresses go (`lo`, or a dummy interface).
    pub interface: String,
    /// How long a stopping haldir waits after withdrawing every VIP before it stops.
    pub drain: Duration,
    /// The VIPs as listed (`vips`), in file order; `None`: every virtual server
    /// address, in the order of the virtual servers.
    pub vips: Option<Vec<IpAddr>>,
    /// `track_interface`: interfaces that must be up (administratively and with
    /// carrier) for any VIP to be announced.
    pub track_interfaces: Vec<String>,
    /// `sloppy_tcp`: IPVS schedules a TCP flow from any packet, not only its SYN.
    pub sloppy_tcp: bool,
    /// `sloppy_sctp`: likewise for SCTP flows (not only from an INIT).
    pub sloppy_sctp: bool,
    /// `bmp_listen`: where the BGP speaker's BMP connection is accepted, if anywhere.
    pub bmp_listen: Option<SocketAddr>,
}

impl Announce {
    /// The VIPs announced under `virtual_servers`: as listed, else every virtual
    /// server address once, in configuration order.
    pub fn addresses(&self, virtual_servers: &[VirtualServer]) -> Vec<IpAddr> {
        match &self.vips {
            Some(vips) => vips.clone(),
            None => {
                let mut seen = Vec::new();
                for vs in virtual_servers {
                    if let VirtualServerAddress::Socket { ip, .. } = vs.address {
                        if !seen.contains(&ip) {
                            seen.push(ip);
                        }
                    }
                }
                seen
            }
        }
    }
}

/// `[announce]` as read.
#[derive(Debug, Clone)]
pub(crate) struct AnnounceDraft {
    pub(crate) loc: Loc,
    pub(crate) interface: Option<Located<String>>,
    pub(crate) drain: Option<Located<f64>>,
    pub(crate) vips: Option<Located<Vec<Located<String>>>>,
    pub(crate) track_interface: Option<Located<Vec<Located<String>>>>,
    pub(crate) sloppy_tcp: Option<Located<bool>>,
    pub(crate) sloppy_sctp: Option<Located<bool>>,
    pub(crate) bmp_listen: Option<Located<String>>,
}

impl AnnounceDraft {
    pub(crate) fn new(loc: Loc) -> Self {
        AnnounceDraft {
            loc,
            interface: None,
            drain: None,
            vips: None,
            track_interface: None,
            sloppy_tcp: None,
            sloppy_sctp: None,
            bmp_listen: None,
        }
    }
}

/// Validates `d` against the validated virtual servers and VRRP instances.
pub(crate) fn validate(
    errors: &mut Vec<ConfigError>,
    d: &AnnounceDraft,
    virtual_servers: &[VirtualServer],
    instances: &[Option<VrrpInstance>],
) -> Option<Announce> {
    let before = errors.len();
    let interface = match &d.interface {
        None => DEFAULT_INTERFACE.to_owned(),
        Some(i) => {
            if !is_interface_name(&i.value) {
                push(
                    errors,
                    &i.loc,
                    format!(
                        "announce interface = {:?}: not a Linux interface name; use 1..={MAX_INTERFACE_NAME_BYTES} bytes without spaces or '/' (e.g. \"lo\" or a dummy interface)",
                        i.value
                    ),
                );
            }
            i.value.clone()
        }
    };
    let drain = match &d.drain {
        None => DEFAULT_DRAIN,
        Some(v) => {
            let millis =
                whole_units(v.value, 1000.0).filter(|m| *m as f64 <= MAX_DRAIN_SECS * 1000.0);
            match millis {
                Some(m) => Duration::from_millis(m),
                None => {
                    push(
                        errors,
                        &v.loc,
                        format!(
                            "announce drain = {}: give 0..={MAX_DRAIN_SECS} seconds in whole milliseconds (e.g. 5 or 0.5)",
                            v.value
                        ),
                    );
                    DEFAULT_DRAIN
                }
            }
        }
    };
    let mut track_interfaces = Vec::new();
    if let Some(list) = &d.track_interface {
        for name in &list.value {
            if !is_interface_name(&name.value) {
                push(
                    errors,
                    &name.loc,
                    format!(
                        "announce track_interface {:?}: not a Linux interface name; use 1..={MAX_INTERFACE_NAME_BYTES} bytes without spaces or '/'",
                        name.value
                    ),
                );
            } else if track_interfaces.contains(&name.value) {
                push(
                    errors,
                    &name.loc,
                    format!(
                        "announce track_interface {:?}: listed twice; list each interface once",
                        name.value
                    ),
                );
            } else {
                track_interfaces.push(name.value.clone());
            }
        }
    }
    let served: Vec<IpAddr> = virtual_servers
        .iter()
        .filter_map(|vs| match vs.address {
            VirtualServerAddress::Socket { ip, .. } => Some(ip),
            VirtualServerAddress::Fwmark(_) => None,
        })
        .collect();
    // Each VRRP address with the instance that moves it.
    let mut vrrp_addresses: HashMap<IpAddr, &str> = HashMap::new();
    for instance in instances.iter().flatten() {
        for vip in instance
            .virtual_ipaddress
            .iter()
            .chain(&instance.virtual_ipaddress_excluded)
        {
            vrrp_addresses.entry(vip.addr()).or_insert(&instance.name);
        }
    }
    let vrrp_conflict = |errors: &mut Vec<ConfigError>, loc: &Loc, vip: IpAddr, how: &str| {
        if let Some(instance) = vrrp_addresses.get(&vip) {
            push(
                errors,
                loc,
                format!(
                    "announce: {vip}{how} is also a virtual_ipaddress of vrrp_instance {instance:?}; an address is either moved by VRRP or announced over BGP, not both{}",
                    if how.is_empty() {
                        ""
                    } else {
                        " (list the VIPs to announce with `vips = [...]`)"
                    }
                ),
            );
        }
    };
    let vips = match &d.vips {
        None => {
            if served.is_empty() {
                push(
                    errors,
                    &d.loc,
                    "[announce] has nothing to announce: no [[virtual_server]] has an address (fwmark services have none); add a virtual server with `ip` and `port`",
                );
            }
            let mut checked = Vec::new();
            for vip in &served {
                if !checked.contains(vip) {
                    checked.push(*vip);
                    vrrp_conflict(
                        errors,
                        &d.loc,
                        *vip,
                        " (a virtual server address, announced by default)",
                    );
                }
            }
            None
        }
        Some(list) => {
            if list.value.is_empty() {
                push(
                    errors,
                    &list.loc,
                    "announce vips = []: list at least one VIP, or leave `vips` out to announce every virtual server address",
                );
            }
            let mut vips = Vec::new();
            for entry in &list.value {
                let Ok(vip) = entry.value.parse::<IpAddr>() else {
                    push(
                        errors,
                        &entry.loc,
                        format!(
                            "announce vips entry {:?}: not an IP address (write the address alone, e.g. \"192.0.2.10\"; it is announced as a /32, /128 for IPv6)",
                            entry.value
                        ),
                    );
                    continue;
                };
                if vips.contains(&vip) {
                    push(
                        errors,
                        &entry.loc,
                        format!("announce vips entry {vip}: listed twice; list each VIP once"),
                    );
                    continue;
                }
                if !served.contains(&vip) {
                    push(
                        errors,
                        &entry.loc,
                        format!(
                            "announce vips entry {vip}: no [[virtual_server]] has this address, so no health decides its announcement; announce only virtual server addresses"
                        ),
                    );
                }
                vrrp_conflict(errors, &entry.loc, vip, "");
                vips.push(vip);
            }
            Some(vips)
        }
    };
    let bmp_listen = d.bmp_listen.as_ref().and_then(|listen| {
        let parsed = listen.value.parse::<SocketAddr>().ok();
        if parsed.is_none() {
            push(
                errors,
                &listen.loc,
                format!(
                    "announce bmp_listen = {:?}: give an address and port, e.g. \"127.0.0.1:11019\" (FRR: `bmp connect 127.0.0.1 port 11019`)",
                    listen.value
                ),
            );
        }
        parsed
    });
    if errors.len() > before {
        return None;
    }
    Some(Announce {
        interface,
        drain,
        vips,
        track_interfaces,
        sloppy_tcp: d.sloppy_tcp.as_ref().is_none_or(|v| v.value),
        sloppy_sctp: d.sloppy_sctp.as_ref().is_none_or(|v| v.value),
        bmp_listen,
    })
}

/// The `[announce]` table's TOML text.
pub(crate) fn toml_table(out: &mut String, a: &Announce, string: impl Fn(&str) -> String) {
    let list = |items: &mut dyn Iterator<Item = String>| {
        let items: Vec<String> = items.map(|s| string(&s)).collect();
        format!("[{}]", items.join(", "))
    };
    out.push_str("[announce]\n");
    out.push_str(&format!("interface = {}\n", string(&a.interface)));
    out.push_str(&format!("drain = {}\n", a.drain.as_secs_f64()));
    if let Some(vips) = &a.vips {
        out.push_str(&format!(
            "vips = {}\n",
            list(&mut vips.iter().map(ToString::to_string))
        ));
    }
    if !a.track_interfaces.is_empty() {
        out.push_str(&format!(
            "track_interface = {}\n",
            list(&mut a.track_interfaces.iter().cloned())
        ));
    }
    out.push_str(&format!("sloppy_tcp = {}\n", a.sloppy_tcp));
    out.push_str(&format!("sloppy_sctp = {}\n", a.sloppy_sctp));
    if let Some(listen) = a.bmp_listen {
        out.push_str(&format!("bmp_listen = {}\n", string(&listen.to_string())));
    }
}
