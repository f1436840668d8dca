//! The IPVS table as key-indexed maps: what haldir wants the kernel to hold,
//! or what it read from the kernel. Services are keyed by [`ServiceKey`],
//! destinations by [`DestKey`] within their service, so the diff is a walk
//! over two sorted maps.
//!
//! The types hold meaning, not wire form: persistence is one optional value
//! (the kernel's `IP_VS_SVC_F_PERSISTENT` flag + timeout + netmask), the
//! kernel's bookkeeping flag `IP_VS_SVC_F_HASHED` is not part of
//! [`ServiceFlags`], and the tunnel settings exist only for tunnelled
//! destinations. Equality of two values therefore means "the kernel needs no
//! change".

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::ops::BitOr;

/// IP address family of a service or destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddressFamily {
    /// IPv4 (`AF_INET`).
    Ipv4,
    /// IPv6 (`AF_INET6`).
    Ipv6,
}

impl AddressFamily {
    /// The family of `addr`.
    pub fn of(addr: &IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => AddressFamily::Ipv4,
            IpAddr::V6(_) => AddressFamily::Ipv6,
        }
    }

    /// The longest prefix of the family: 32 or 128.
    pub fn max_prefix_len(self) -> u8 {
        match self {
            AddressFamily::Ipv4 => 32,
            AddressFamily::Ipv6 => 128,
        }
    }
}

impl fmt::Display for AddressFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressFamily::Ipv4 => "IPv4",
            AddressFamily::Ipv6 => "IPv6",
        })
    }
}

/// Transport protocol of an address-keyed service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

/// What identifies a virtual service in the kernel (`ip_vs_genl_parse_service`:
/// AF + fwmark, or AF + protocol + address + port). The family of an
/// address-keyed service is its address's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceKey {
    /// `ipvsadm -t/-u/--sctp-service ADDR:PORT`.
    Address {
        /// Transport protocol.
        protocol: Protocol,
        /// Virtual address.
        addr: IpAddr,
        /// Virtual port (0 for a port-less persistent service).
        port: u16,
    },
    /// `ipvsadm -f MARK`: packets carrying a netfilter mark.
    Fwmark {
        /// Family of the marked packets.
        family: AddressFamily,
        /// The mark, 1..=u32::MAX.
        mark: u32,
    },
}

impl ServiceKey {
    /// The service's address family.
    pub fn family(&self) -> AddressFamily {
        match self {
            ServiceKey::Address { addr, .. } => AddressFamily::of(addr),
            ServiceKey::Fwmark { family, .. } => *family,
        }
    }
}

impl fmt::Display for ServiceKey {
    /// `TCP 192.0.2.10:80`, `UDP [2001:db8::1]:53`, `FWM 42 IPv4`: close to `ipvsadm -Ln`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Address {
                protocol,
                addr,
                port,
            } => write!(f, "{protocol} {}", DestKey::new(*addr, *port)),
            ServiceKey::Fwmark { family, mark } => write!(f, "FWM {mark} {family}"),
        }
    }
}

/// `IP_VS_SVC_F_*` bits a configuration sets: one-packet scheduling and the
/// scheduler flags. `IP_VS_SVC_F_PERSISTENT` is [`Service::persistence`];
/// `IP_VS_SVC_F_HASHED` is kernel bookkeeping and never part of this value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ServiceFlags(u32);

impl ServiceFlags {
    /// No flags.
    pub const NONE: ServiceFlags = ServiceFlags(0);
    /// `IP_VS_SVC_F_ONEPACKET` (keepalived `ops`): schedule every UDP datagram.
    pub const ONE_PACKET: ServiceFlags = ServiceFlags(0x0004);
    /// `IP_VS_SVC_F_SCHED1` (sh-fallback / mh-fallback).
    pub const SCHED1: ServiceFlags = ServiceFlags(0x0008);
    /// `IP_VS_SVC_F_SCHED2` (sh-port / mh-port).
    pub const SCHED2: ServiceFlags = ServiceFlags(0x0010);
    /// `IP_VS_SVC_F_SCHED3`.
    pub const SCHED3: ServiceFlags = ServiceFlags(0x0020);
    /// `IP_VS_SVC_F_PERSISTENT`, on the wire only.
    pub(crate) const PERSISTENT_BIT: u32 = 0x0001;
    /// `IP_VS_SVC_F_HASHED`, on the wire only.
    pub(crate) const HASHED_BIT: u32 = 0x0002;

    /// The flags among `bits`, without the persistent and hashed bits.
    pub fn from_bits(bits: u32) -> Self {
        ServiceFlags(bits & !(Self::PERSISTENT_BIT | Self::HASHED_BIT))
    }

    /// The raw bits.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: ServiceFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for ServiceFlags {
    type Output = ServiceFlags;
    fn bitor(self, other: ServiceFlags) -> ServiceFlags {
        ServiceFlags(self.0 | other.0)
    }
}

/// Client persistence: connections from one client (network) go to the same
/// destination for `timeout_secs` after the last one ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Persistence {
    /// Seconds (keepalived `persistence_timeout`), at least 1.
    pub timeout_secs: u32,
    /// Client networks of this prefix length share a destination (keepalived
    /// `persistence_granularity`): IPv4 0..=32, IPv6 1..=128.
    pub netmask_prefix_len: u8,
}

/// How a virtual service schedules (everything but its key and destinations).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Service {
    /// Scheduler name as the kernel knows it (`ip_vs_<name>` module): rr, wrr,
    /// lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos.
    pub scheduler: String,
    /// One-packet and scheduler flags.
    pub flags: ServiceFlags,
    /// Client persistence, if any.
    pub persistence: Option<Persistence>,
    /// Persistence engine (e.g. "sip"), if any.
    pub persistence_engine: Option<String>,
}

impl Service {
    /// A service with `scheduler`, no flags and no persistence.
    pub fn new(scheduler: impl Into<String>) -> Self {
        Service {
            scheduler: scheduler.into(),
            flags: ServiceFlags::NONE,
            persistence: None,
            persistence_engine: None,
        }
    }
}

/// What identifies a destination within its service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DestKey {
    /// Real server address (its family may differ from the service's only for tunnelling).
    pub addr: IpAddr,
    /// Real server port (ignored by the kernel for direct routing and tunnelling).
    pub port: u16,
}

impl DestKey {
    /// `addr:port`.
    pub fn new(addr: IpAddr, port: u16) -> Self {
        DestKey { addr, port }
    }
}

impl fmt::Display for DestKey {
    /// `192.0.2.1:80` or `[2001:db8::1]:80`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(v4) => write!(f, "{v4}:{}", self.port),
            IpAddr::V6(v6) => write!(f, "[{v6}]:{}", self.port),
        }
    }
}

/// Tunnel encapsulation (`IP_VS_CONN_F_TUNNEL_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TunnelEncapsulation {
    /// IP-in-IP, the classic LVS-TUN.
    #[default]
    Ipip,
    /// Generic UDP Encapsulation (needs a port).
    Gue,
    /// GRE.
    Gre,
}

/// `IP_VS_TUNNEL_ENCAP_FLAG_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TunnelFlags(pub u16);

impl TunnelFlags {
    /// `IP_VS_TUNNEL_ENCAP_FLAG_CSUM`.
    pub const CHECKSUM: TunnelFlags = TunnelFlags(1 << 0);
    /// `IP_VS_TUNNEL_ENCAP_FLAG_REMCSUM`.
    pub const REMOTE_CHECKSUM: TunnelFlags = TunnelFlags(1 << 1);
}

/// Settings of a tunnelled destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tunnel {
    /// Encapsulation.
    pub encapsulation: TunnelEncapsulation,
    /// UDP port for GUE; 0 otherwise.
    pub port: u16,
    /// Checksum flags.
    pub flags: TunnelFlags,
}

/// How packets reach a destination (`IP_VS_CONN_F_FWD_MASK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forwarding {
    /// Direct routing (`lb_kind DR`): rewrite the MAC address only.
    DirectRoute,
    /// NAT (`lb_kind NAT`, "masquerading").
    Masquerade,
    /// IP tunnelling (`lb_kind TUN`).
    Tunnel(Tunnel),
    /// The destination is this host (read from the kernel only).
    LocalNode,
    /// Cache bypass (read from the kernel only).
    Bypass,
}

/// A destination's settings: everything but its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Destination {
    /// Forwarding method.
    pub forwarding: Forwarding,
    /// Weight, 0 = take no new connections. The kernel takes 0..=i32::MAX.
    pub weight: u32,
    /// Upper connection threshold, 0 = none.
    pub upper_threshold: u32,
    /// Lower connection threshold (at most the upper one when that is set).
    pub lower_threshold: u32,
}

impl Destination {
    /// A destination with `forwarding` and `weight` and no thresholds.
    pub fn new(forwarding: Forwarding, weight: u32) -> Self {
        Destination {
            forwarding,
            weight,
            upper_threshold: 0,
            lower_threshold: 0,
        }
    }
}

/// A service's destinations by key, in key order. A sorted vector rather than a
/// `BTreeMap`: a service has a handful of destinations, and a B-tree's smallest node has
/// room for eleven (at 10,000 services × 4 destinations: 2.0 MB instead of 4.6 MB).
pub type Dests = litemap::LiteMap<DestKey, Destination>;

/// A whole IPVS table: each service with its destinations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    /// Services by key, each with its destinations by key.
    pub services: BTreeMap<ServiceKey, (Service, Dests)>,
}

impl Table {
    /// An empty table.
    pub fn new() -> Self {
        Table::default()
    }

    /// Adds or replaces a service, keeping its destinations if it had any.
    pub fn insert_service(&mut self, key: ServiceKey, service: Service) {
        self.services
            .entry(key)
            .and_modify(|(existing, _)| *existing = service.clone())
            .or_insert_with(|| (service, Dests::new()));
    }

    /// Adds or replaces a destination of an existing service; returns false
    /// (and changes nothing) if the service is not in the table.
    pub fn insert_dest(&mut self, service: &ServiceKey, key: DestKey, dest: Destination) -> bool {
        match self.services.get_mut(service) {
            Some((_, dests)) => {
                dests.insert(key, dest);
                true
            }
            None => false,
        }
    }

    /// Number of services.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Number of destinations over all services.
    pub fn dest_count(&self) -> usize {
        self.services.values().map(|(_, dests)| dests.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn keys_display_like_ipvsadm() {
        let v4 = ServiceKey::Address {
            protocol: Protocol::Tcp,
            addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            port: 80,
        };
        assert_eq!(v4.to_string(), "TCP 192.0.2.10:80");
        let v6 = ServiceKey::Address {
            protocol: Protocol::Udp,
            addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
            port: 53,
        };
        assert_eq!(v6.to_string(), "UDP [::1]:53");
        assert_eq!(v6.family(), AddressFamily::Ipv6);
        let fwm = ServiceKey::Fwmark {
            family: AddressFamily::Ipv4,
            mark: 42,
        };
        assert_eq!(fwm.to_string(), "FWM 42 IPv4");
    }

    #[test]
    fn service_flags_never_hold_persistent_or_hashed() {
        let flags = ServiceFlags::from_bits(0x0001 | 0x0002 | 0x0004 | 0x0010);
        assert_eq!(flags, ServiceFlags::ONE_PACKET | ServiceFlags::SCHED2);
        assert!(flags.contains(ServiceFlags::ONE_PACKET));
        assert!(!flags.contains(ServiceFlags::SCHED1));
    }

    #[test]
    fn insert_dest_needs_its_service() {
        let mut table = Table::new();
        let key = ServiceKey::Fwmark {
            family: AddressFamily::Ipv4,
            mark: 1,
        };
        let dest_key = DestKey::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 0);
        let dest = Destination::new(Forwarding::DirectRoute, 1);
        assert!(!table.insert_dest(&key, dest_key, dest));
        table.insert_service(key, Service::new("rr"));
        assert!(table.insert_dest(&key, dest_key, dest));
        table.insert_service(key, Service::new("wrr"));
        assert_eq!(
            table.dest_count(),
            1,
            "replacing a service keeps its destinations"
        );
        assert_eq!(table.services[&key].0.scheduler, "wrr");
    }
}
