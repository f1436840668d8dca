//! Between the model ([`crate::model`]) and the wire attributes
//! ([`crate::netlink`]): one place for every per-family and per-byte-order
//! decision.

use crate::diff::Op;
use crate::model::{
    AddressFamily, DestKey, Destination, Forwarding, Persistence, Protocol, Service, ServiceFlags,
    ServiceKey, Tunnel, TunnelEncapsulation, TunnelFlags,
};
use crate::netlink::{
    self, DestAttribute, FlagsWithMask, ForwardingMethod, InetAddr, IpvsAttribute, IpvsCommand,
    IpvsMessage, ServiceAttribute, Stats, TunnelType,
};

pub(crate) fn wire_family(family: AddressFamily) -> netlink::AddressFamily {
    match family {
        AddressFamily::Ipv4 => netlink::AddressFamily::Inet,
        AddressFamily::Ipv6 => netlink::AddressFamily::Inet6,
    }
}

pub(crate) fn wire_protocol(protocol: Protocol) -> netlink::Protocol {
    match protocol {
        Protocol::Tcp => netlink::Protocol::Tcp,
        Protocol::Udp => netlink::Protocol::Udp,
        Protocol::Sctp => netlink::Protocol::Sctp,
    }
}

/// The attributes that identify `key` (enough for DEL_SERVICE, GET_DEST and
/// as the service of a destination command).
pub(crate) fn service_key_attributes(key: &ServiceKey) -> Vec<ServiceAttribute> {
    let mut attributes = vec![ServiceAttribute::AddressFamily(wire_family(key.family()))];
    match key {
        ServiceKey::Address {
            protocol,
            addr,
            port,
        } => attributes.extend([
            ServiceAttribute::Protocol(wire_protocol(*protocol)),
            ServiceAttribute::Address(InetAddr::from(*addr)),
            ServiceAttribute::Port(*port),
        ]),
        ServiceKey::Fwmark { mark, .. } => attributes.push(ServiceAttribute::Fwmark(*mark)),
    }
    attributes
}

/// The IPVS_SVC_ATTR_NETMASK value for a prefix length. IPv4: the mask,
/// big-endian on the wire. IPv6: `ip_vs_add_service` reads the four bytes as
/// a host-order prefix length 1..=128 (`(__force __u32) u->netmask`), so the
/// host-order bytes of the length are what must be on the wire.
pub(crate) fn netmask_attribute(family: AddressFamily, prefix_len: u8) -> u32 {
    match family {
        AddressFamily::Ipv4 => match prefix_len.min(32) {
            0 => 0,
            len => u32::MAX << (32 - u32::from(len)),
        },
        AddressFamily::Ipv6 => u32::from_be_bytes(u32::from(prefix_len).to_ne_bytes()),
    }
}

/// The prefix length an IPVS_SVC_ATTR_NETMASK value means (inverse of
/// [`netmask_attribute`]); a non-contiguous IPv4 mask counts its one bits.
pub(crate) fn prefix_len_of_netmask(family: AddressFamily, netmask: u32) -> u8 {
    match family {
        AddressFamily::Ipv4 => netmask.count_ones() as u8,
        AddressFamily::Ipv6 => u32::from_ne_bytes(netmask.to_be_bytes()).min(128) as u8,
    }
}

/// Every attribute of `key` + `service` (NEW_SERVICE / SET_SERVICE need the
/// scheduler, flags, timeout and netmask).
pub(crate) fn service_attributes(key: &ServiceKey, service: &Service) -> Vec<ServiceAttribute> {
    let mut attributes = service_key_attributes(key);
    attributes.push(ServiceAttribute::SchedName(service.scheduler.clone()));
    if let Some(engine) = &service.persistence_engine {
        attributes.push(ServiceAttribute::PeName(engine.clone()));
    }
    let settings = ServiceSettings::of(key, service);
    attributes.extend([
        ServiceAttribute::Flags(FlagsWithMask {
            flags: settings.flags,
            mask: u32::MAX,
        }),
        ServiceAttribute::Timeout(settings.timeout),
        ServiceAttribute::Netmask(settings.netmask),
    ]);
    attributes
}

/// The flags, timeout and netmask attribute values of a service to add or edit.
pub(crate) struct ServiceSettings {
    pub(crate) flags: u32,
    pub(crate) timeout: u32,
    pub(crate) netmask: u32,
}

impl ServiceSettings {
    pub(crate) fn of(key: &ServiceKey, service: &Service) -> ServiceSettings {
        let family = key.family();
        let mut flags = service.flags.bits();
        // Not persistent: timeout 0 and a full netmask, as ipvsadm sends (an IPv6
        // service needs a prefix length 1..=128 even then).
        let (timeout, prefix_len) = match service.persistence {
            Some(p) => {
                flags |= ServiceFlags::PERSISTENT_BIT;
                (p.timeout_secs, p.netmask_prefix_len)
            }
            None => (0, family.max_prefix_len()),
        };
        ServiceSettings {
            flags,
            timeout,
            netmask: netmask_attribute(family, prefix_len),
        }
    }
}

/// The forwarding method attribute of a destination.
pub(crate) fn forwarding_method(forwarding: &Forwarding) -> ForwardingMethod {
    match forwarding {
        Forwarding::DirectRoute => ForwardingMethod::DirectRoute,
        Forwarding::Masquerade => ForwardingMethod::Masquerade,
        Forwarding::Tunnel(_) => ForwardingMethod::Tunnel,
        Forwarding::LocalNode => ForwardingMethod::LocalNode,
        Forwarding::Bypass => ForwardingMethod::Bypass,
    }
}

/// The tunnel type attribute of a tunnelled destination.
pub(crate) fn tunnel_type(encapsulation: TunnelEncapsulation) -> TunnelType {
    match encapsulation {
        TunnelEncapsulation::Ipip => TunnelType::Ipip,
        TunnelEncapsulation::Gue => TunnelType::Gue,
        TunnelEncapsulation::Gre => TunnelType::Gre,
    }
}

/// The attributes of a destination (`full` adds the settings NEW_DEST and
/// SET_DEST need; DEL_DEST needs only the key).
pub(crate) fn dest_attributes(key: &DestKey, dest: Option<&Destination>) -> Vec<DestAttribute> {
    let mut attributes = vec![
        DestAttribute::Address(InetAddr::from(key.addr)),
        DestAttribute::Port(key.port),
        DestAttribute::AddressFamily(wire_family(AddressFamily::of(&key.addr))),
    ];
    let Some(dest) = dest else {
        return attributes;
    };
    attributes.extend([
        DestAttribute::ForwardingMethod(forwarding_method(&dest.forwarding)),
        DestAttribute::Weight(dest.weight),
        DestAttribute::UpperThreshold(dest.upper_threshold),
        DestAttribute::LowerThreshold(dest.lower_threshold),
    ]);
    if let Forwarding::Tunnel(tunnel) = dest.forwarding {
        attributes.extend([
            DestAttribute::TunnelType(tunnel_type(tunnel.encapsulation)),
            DestAttribute::TunnelPort(tunnel.port),
            DestAttribute::TunnelFlags(tunnel.flags.0),
        ]);
    }
    attributes
}

/// The request that performs `op`.
pub(crate) fn op_message(op: &Op) -> IpvsMessage {
    let (command, attributes) = match op {
        Op::AddService { key, service } => (
            IpvsCommand::NewService,
            vec![IpvsAttribute::Service(service_attributes(key, service))],
        ),
        Op::SetService { key, service } => (
            IpvsCommand::SetService,
            vec![IpvsAttribute::Service(service_attributes(key, service))],
        ),
        Op::DelService { key } => (
            IpvsCommand::DelService,
            vec![IpvsAttribute::Service(service_key_attributes(key))],
        ),
        Op::AddDest { service, key, dest } => (
            IpvsCommand::NewDest,
            vec![
                IpvsAttribute::Service(service_key_attributes(service)),
                IpvsAttribute::Dest(dest_attributes(key, Some(dest))),
            ],
        ),
        Op::SetDest { service, key, dest } => (
            IpvsCommand::SetDest,
            vec![
                IpvsAttribute::Service(service_key_attributes(service)),
                IpvsAttribute::Dest(dest_attributes(key, Some(dest))),
            ],
        ),
        Op::DelDest { service, key } => (
            IpvsCommand::DelDest,
            vec![
                IpvsAttribute::Service(service_key_attributes(service)),
                IpvsAttribute::Dest(dest_attributes(key, None)),
            ],
        ),
    };
    IpvsMessage::new(command, attributes)
}

/// A service as the kernel reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    /// Its key.
    pub key: ServiceKey,
    /// Its settings.
    pub service: Service,
    /// Its counters (the 64-bit block when the kernel sends one).
    pub stats: Stats,
}

/// A destination as the kernel reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestEntry {
    /// Its key.
    pub key: DestKey,
    /// Its settings.
    pub dest: Destination,
    /// Active connections.
    pub active_conns: u32,
    /// Inactive connections.
    pub inactive_conns: u32,
    /// Persistence templates.
    pub persistent_conns: u32,
    /// Its counters (the 64-bit block when the kernel sends one).
    pub stats: Stats,
}

/// Reads a service from the kernel's attributes.
pub(crate) fn service_entry(attributes: &[ServiceAttribute]) -> Result<ServiceEntry, String> {
    let mut family = None;
    let mut protocol = None;
    let mut addr = None;
    let mut port = None;
    let mut fwmark = None;
    let mut scheduler = None;
    let mut engine = None;
    let mut flags = 0;
    let mut timeout = 0;
    let mut netmask = u32::MAX;
    let mut stats = None;
    let mut stats64 = None;
    for attribute in attributes {
        match attribute {
            ServiceAttribute::AddressFamily(f) => family = Some(*f),
            ServiceAttribute::Protocol(p) => protocol = Some(*p),
            ServiceAttribute::Address(a) => addr = Some(*a),
            ServiceAttribute::Port(p) => port = Some(*p),
            ServiceAttribute::Fwmark(m) => fwmark = Some(*m),
            ServiceAttribute::SchedName(s) => scheduler = Some(s.clone()),
            ServiceAttribute::PeName(s) => engine = Some(s.clone()),
            ServiceAttribute::Flags(f) => flags = f.flags,
            ServiceAttribute::Timeout(t) => timeout = *t,
            ServiceAttribute::Netmask(m) => netmask = *m,
            ServiceAttribute::Stats(s) => stats = Some(*s),
            ServiceAttribute::Stats64(s) => stats64 = Some(*s),
            _ => {}
        }
    }
    let family = match family.ok_or("service without IPVS_SVC_ATTR_AF")? {
        netlink::AddressFamily::Inet => AddressFamily::Ipv4,
        netlink::AddressFamily::Inet6 => AddressFamily::Ipv6,
        other => return Err(format!("service of unknown address family {other:?}")),
    };
    // ip_vs_genl_fill_service: a fwmark service carries FWMARK instead of
    // PROTOCOL / ADDR / PORT.
    let key = match fwmark.filter(|&mark| mark != 0) {
        Some(mark) => ServiceKey::Fwmark { family, mark },
        None => {
            let protocol = match protocol.ok_or("service without protocol or fwmark")? {
                netlink::Protocol::Tcp => Protocol::Tcp,
                netlink::Protocol::Udp => Protocol::Udp,
                netlink::Protocol::Sctp => Protocol::Sctp,
                other => return Err(format!("service of unknown protocol {other:?}")),
            };
            let addr = addr
                .ok_or("service without IPVS_SVC_ATTR_ADDR")?
                .to_ip(wire_family(family))
                .ok_or("service address of unknown family")?;
            ServiceKey::Address {
                protocol,
                addr,
                port: port.ok_or("service without IPVS_SVC_ATTR_PORT")?,
            }
        }
    };
    let persistence = (flags & ServiceFlags::PERSISTENT_BIT != 0).then(|| Persistence {
        timeout_secs: timeout,
        netmask_prefix_len: prefix_len_of_netmask(family, netmask),
    });
    let service = Service {
        scheduler: scheduler.unwrap_or_else(|| "none".to_owned()),
        flags: ServiceFlags::from_bits(flags),
        persistence,
        persistence_engine: engine,
    };
    Ok(ServiceEntry {
        key,
        service,
        stats: stats64.or(stats).unwrap_or_default(),
    })
}

/// Reads a destination from the kernel's attributes; `service_family` is
/// the family when the kernel omits IPVS_DEST_ATTR_ADDR_FAMILY (before 4.x).
pub(crate) fn dest_entry(
    attributes: &[DestAttribute],
    service_family: AddressFamily,
) -> Result<DestEntry, String> {
    let mut addr = None;
    let mut port = None;
    let mut family = wire_family(service_family);
    let mut method = ForwardingMethod::DirectRoute;
    let mut entry = DestEntry {
        key: DestKey::new(std::net::Ipv4Addr::UNSPECIFIED.into(), 0),
        dest: Destination::new(Forwarding::DirectRoute, 0),
        active_conns: 0,
        inactive_conns: 0,
        persistent_conns: 0,
        stats: Stats::default(),
    };
    let mut tunnel = Tunnel::default();
    let mut stats64 = None;
    for attribute in attributes {
        match attribute {
            DestAttribute::Address(a) => addr = Some(*a),
            DestAttribute::Port(p) => port = Some(*p),
            DestAttribute::AddressFamily(f) => family = *f,
            DestAttribute::ForwardingMethod(m) => method = *m,
            DestAttribute::Weight(w) => entry.dest.weight = *w,
            DestAttribute::UpperThreshold(t) => entry.dest.upper_threshold = *t,
            DestAttribute::LowerThreshold(t) => entry.dest.lower_threshold = *t,
            DestAttribute::ActiveConns(n) => entry.active_conns = *n,
            DestAttribute::InactiveConns(n) => entry.inactive_conns = *n,
            DestAttribute::PersistentConns(n) => entry.persistent_conns = *n,
            DestAttribute::Stats(s) => entry.stats = *s,
            DestAttribute::Stats64(s) => stats64 = Some(*s),
            DestAttribute::TunnelType(t) => {
                tunnel.encapsulation = match t {
                    TunnelType::Gue => TunnelEncapsulation::Gue,
                    TunnelType::Gre => TunnelEncapsulation::Gre,
                    _ => TunnelEncapsulation::Ipip,
                }
            }
            DestAttribute::TunnelPort(p) => tunnel.port = *p,
            DestAttribute::TunnelFlags(f) => tunnel.flags = TunnelFlags(*f),
            _ => {}
        }
    }
    let addr = addr
        .ok_or("destination without IPVS_DEST_ATTR_ADDR")?
        .to_ip(family)
        .ok_or_else(|| format!("destination of unknown address family {family:?}"))?;
    entry.key = DestKey::new(addr, port.ok_or("destination without IPVS_DEST_ATTR_PORT")?);
    entry.dest.forwarding = match method {
        ForwardingMethod::DirectRoute => Forwarding::DirectRoute,
        ForwardingMethod::Masquerade => Forwarding::Masquerade,
        ForwardingMethod::Tunnel => Forwarding::Tunnel(tunnel),
        ForwardingMethod::LocalNode => Forwarding::LocalNode,
        ForwardingMethod::Bypass => Forwarding::Bypass,
        other => {
            return Err(format!(
                "destination with unknown forwarding method {other:?}"
            ))
        }
    };
    if let Some(s) = stats64 {
        entry.stats = s;
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn ipv4_netmask_is_a_mask_and_ipv6_netmask_a_host_order_length() {
        assert_eq!(netmask_attribute(AddressFamily::Ipv4, 24), 0xffff_ff00);
        assert_eq!(netmask_attribute(AddressFamily::Ipv4, 32), 0xffff_ffff);
        assert_eq!(netmask_attribute(AddressFamily::Ipv4, 0), 0);
        let v6 = netmask_attribute(AddressFamily::Ipv6, 64);
        // Emitted big-endian, these are the host-order bytes of 64.
        assert_eq!(v6.to_be_bytes(), 64u32.to_ne_bytes());
        for len in [0, 8, 24, 32] {
            let mask = netmask_attribute(AddressFamily::Ipv4, len);
            assert_eq!(prefix_len_of_netmask(AddressFamily::Ipv4, mask), len);
        }
        for len in [1, 48, 64, 128] {
            let mask = netmask_attribute(AddressFamily::Ipv6, len);
            assert_eq!(prefix_len_of_netmask(AddressFamily::Ipv6, mask), len);
        }
    }

    #[test]
    fn services_survive_the_trip_through_kernel_attributes() {
        let keys = [
            ServiceKey::Address {
                protocol: Protocol::Sctp,
                addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                port: 3868,
            },
            ServiceKey::Address {
                protocol: Protocol::Tcp,
                addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
                port: 443,
            },
            ServiceKey::Fwmark {
                family: AddressFamily::Ipv6,
                mark: 7,
            },
        ];
        let services = [
            Service::new("rr"),
            Service {
                scheduler: "sh".into(),
                flags: ServiceFlags::SCHED1 | ServiceFlags::SCHED2,
                persistence: Some(Persistence {
                    timeout_secs: 600,
                    netmask_prefix_len: 24,
                }),
                persistence_engine: Some("sip".into()),
            },
        ];
        for key in keys {
            for service in &services {
                let mut service = service.clone();
                if let Some(p) = &mut service.persistence {
                    p.netmask_prefix_len = p.netmask_prefix_len.max(1);
                }
                let mut attributes = service_attributes(&key, &service);
                // The kernel adds IP_VS_SVC_F_HASHED and never reports the
                // protocol of a fwmark service; neither may matter.
                for a in &mut attributes {
                    if let ServiceAttribute::Flags(f) = a {
                        f.flags |= ServiceFlags::HASHED_BIT;
                    }
                }
                let entry = service_entry(&attributes).unwrap();
                assert_eq!(entry.key, key);
                assert_eq!(entry.service, service);
            }
        }
    }

    #[test]
    fn destinations_survive_the_trip_and_tunnel_settings_only_matter_for_tunnels() {
        let key = DestKey::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 8080);
        let dests = [
            Destination::new(Forwarding::DirectRoute, 5),
            Destination {
                forwarding: Forwarding::Tunnel(Tunnel {
                    encapsulation: TunnelEncapsulation::Gue,
                    port: 5555,
                    flags: TunnelFlags::CHECKSUM,
                }),
                weight: 0,
                upper_threshold: 10,
                lower_threshold: 2,
            },
            Destination::new(Forwarding::Masquerade, 65535),
        ];
        for dest in dests {
            let mut attributes = dest_attributes(&key, Some(&dest));
            // The kernel reports tunnel attributes (zero) for every destination.
            if !matches!(dest.forwarding, Forwarding::Tunnel(_)) {
                attributes.extend([
                    DestAttribute::TunnelType(TunnelType::Ipip),
                    DestAttribute::TunnelPort(0),
                    DestAttribute::TunnelFlags(0),
                ]);
            }
            let entry = dest_entry(&attributes, AddressFamily::Ipv4).unwrap();
            assert_eq!((entry.key, entry.dest), (key, dest));
        }
    }

    #[test]
    fn fwmark_service_request_has_no_protocol_address_or_port() {
        let key = ServiceKey::Fwmark {
            family: AddressFamily::Ipv4,
            mark: 1,
        };
        let attributes = service_key_attributes(&key);
        assert_eq!(
            attributes,
            vec![
                ServiceAttribute::AddressFamily(netlink::AddressFamily::Inet),
                ServiceAttribute::Fwmark(1)
            ]
        );
    }
}
