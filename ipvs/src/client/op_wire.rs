//! Operations written straight into their datagram: the netlink header, the
//! generic-netlink header and the IPVS attributes as bytes, from the model, with no
//! message tree in between.
//!
//! The bulk path sends tens of thousands of operations (a start at 10,000 virtual
//! servers is 50,000). Built as [`IpvsMessage`](crate::netlink::IpvsMessage)s, each
//! cost a handful of allocations (the attribute lists, the scheduler's name) and an
//! emit that measures every nested list again at each level; under emulation that
//! was as much CPU as the kernel's own work on the requests. The bytes are the same
//! as [`convert::op_message`] emitted by netlink-packet (a test holds them equal for
//! every kind of operation); the tree stays for single requests, dumps and replies.
//!
//! Layout (`linux/netlink.h`, `linux/genetlink.h`): `nlmsghdr` (length u32, type u16,
//! flags u16, sequence u32, port u32), `genlmsghdr` (command u8, version u8, reserved
//! u16), then attributes: length u16 (header included, padding not), type u16, the
//! value, zeros to a multiple of 4. IPVS nests without `NLA_F_NESTED`, as the kernel
//! does (`nla_nest_start_noflag`).

use crate::diff::Op;
use crate::model::{DestKey, Destination, Forwarding, Service, ServiceKey};
use crate::netlink::{
    dest, service, AddressFamily, InetAddr, IpvsCommand, CMD_ATTR_DEST, CMD_ATTR_SERVICE,
    IPVS_GENL_VERSION,
};

use super::convert::{forwarding_method, tunnel_type, wire_family, wire_protocol, ServiceSettings};

/// Appends `op` to `out` as one netlink request of the family `family_id`.
pub(crate) fn append_op(family_id: u16, op: &Op, flags: u16, sequence: u32, out: &mut Vec<u8>) {
    let start = out.len();
    // The length is written once the message is complete.
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&family_id.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&sequence.to_ne_bytes());
    // Port 0: the message is for the kernel.
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&[u8::from(command(op)), IPVS_GENL_VERSION, 0, 0]);
    match op {
        Op::AddService { key, service } | Op::SetService { key, service } => {
            nested(out, CMD_ATTR_SERVICE, |out| {
                service_attributes(out, key, service)
            });
        }
        Op::DelService { key } => nested(out, CMD_ATTR_SERVICE, |out| service_key(out, key)),
        Op::AddDest { service, key, dest } | Op::SetDest { service, key, dest } => {
            nested(out, CMD_ATTR_SERVICE, |out| service_key(out, service));
            nested(out, CMD_ATTR_DEST, |out| {
                dest_attributes(out, key, Some(dest))
            });
        }
        Op::DelDest { service, key } => {
            nested(out, CMD_ATTR_SERVICE, |out| service_key(out, service));
            nested(out, CMD_ATTR_DEST, |out| dest_attributes(out, key, None));
        }
    }
    let length = u32::try_from(out.len() - start).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&length.to_ne_bytes());
}

fn command(op: &Op) -> IpvsCommand {
    match op {
        Op::AddService { .. } => IpvsCommand::NewService,
        Op::SetService { .. } => IpvsCommand::SetService,
        Op::DelService { .. } => IpvsCommand::DelService,
        Op::AddDest { .. } => IpvsCommand::NewDest,
        Op::SetDest { .. } => IpvsCommand::SetDest,
        Op::DelDest { .. } => IpvsCommand::DelDest,
    }
}

/// One attribute: header, value, padding.
fn attribute(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let length = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&length.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    pad(out, value.len());
}

/// A NUL-terminated string attribute (`NLA_NUL_STRING`).
fn string_attribute(out: &mut Vec<u8>, kind: u16, value: &str) {
    let length = u16::try_from(4 + value.len() + 1).unwrap_or(u16::MAX);
    out.extend_from_slice(&length.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value.as_bytes());
    out.push(0);
    pad(out, value.len() + 1);
}

/// An attribute holding the attributes `inner` appends.
fn nested(out: &mut Vec<u8>, kind: u16, inner: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    inner(out);
    let length = u16::try_from(out.len() - start).unwrap_or(u16::MAX);
    out[start..start + 2].copy_from_slice(&length.to_ne_bytes());
    out[start + 2..start + 4].copy_from_slice(&kind.to_ne_bytes());
}

/// Zeros after a value of `written` bytes, to the next multiple of 4.
fn pad(out: &mut Vec<u8>, written: usize) {
    out.resize(out.len() + (written.next_multiple_of(4) - written), 0);
}

/// The attributes that identify a service (`convert::service_key_attributes`).
fn service_key(out: &mut Vec<u8>, key: &ServiceKey) {
    let family = u16::from(wire_family(key.family()));
    attribute(out, service::AF, &family.to_ne_bytes());
    match key {
        ServiceKey::Address {
            protocol,
            addr,
            port,
        } => {
            let protocol = u16::from(wire_protocol(*protocol));
            attribute(out, service::PROTOCOL, &protocol.to_ne_bytes());
            attribute(out, service::ADDR, &InetAddr::from(*addr).0);
            attribute(out, service::PORT, &port.to_be_bytes());
        }
        ServiceKey::Fwmark { mark, .. } => attribute(out, service::FWMARK, &mark.to_ne_bytes()),
    }
}

/// Every attribute of a service to add or edit (`convert::service_attributes`).
fn service_attributes(out: &mut Vec<u8>, key: &ServiceKey, service: &Service) {
    service_key(out, key);
    string_attribute(out, service::SCHED_NAME, &service.scheduler);
    if let Some(engine) = &service.persistence_engine {
        string_attribute(out, service::PE_NAME, engine);
    }
    let settings = ServiceSettings::of(key, service);
    let mut flags = [0u8; 8];
    flags[..4].copy_from_slice(&settings.flags.to_ne_bytes());
    flags[4..].copy_from_slice(&u32::MAX.to_ne_bytes());
    attribute(out, service::FLAGS, &flags);
    attribute(out, service::TIMEOUT, &settings.timeout.to_ne_bytes());
    attribute(out, service::NETMASK, &settings.netmask.to_be_bytes());
}

/// A destination's key, and with `dest` its settings (`convert::dest_attributes`).
fn dest_attributes(out: &mut Vec<u8>, key: &DestKey, dest: Option<&Destination>) {
    attribute(out, dest::ADDR, &InetAddr::from(key.addr).0);
    attribute(out, dest::PORT, &key.port.to_be_bytes());
    let family = u16::from(AddressFamily::of(&key.addr));
    attribute(out, dest::ADDR_FAMILY, &family.to_ne_bytes());
    let Some(dest) = dest else { return };
    let method = u32::from(forwarding_method(&dest.forwarding));
    attribute(out, dest::FWD_METHOD, &method.to_ne_bytes());
    attribute(out, dest::WEIGHT, &dest.weight.to_ne_bytes());
    attribute(out, dest::U_THRESH, &dest.upper_threshold.to_ne_bytes());
    attribute(out, dest::L_THRESH, &dest.lower_threshold.to_ne_bytes());
    if let Forwarding::Tunnel(tunnel) = dest.forwarding {
        attribute(
            out,
            dest::TUN_TYPE,
            &[u8::from(tunnel_type(tunnel.encapsulation))],
        );
        attribute(out, dest::TUN_PORT, &tunnel.port.to_be_bytes());
        attribute(out, dest::TUN_FLAGS, &tunnel.flags.0.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use netlink_packet_core::NLM_F_REQUEST;

    use super::*;
    use crate::client::convert::op_message;
    use crate::model::{
        AddressFamily as Family, Persistence, Protocol, ServiceFlags, Tunnel, TunnelEncapsulation,
        TunnelFlags,
    };

    /// Every kind of operation, both families, fwmarks, persistence, an engine, every
    /// forwarding method and tunnel, and scheduler names of every length modulo 4.
    fn ops() -> Vec<Op> {
        let v4 = ServiceKey::Address {
            protocol: Protocol::Tcp,
            addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            port: 80,
        };
        let v6 = ServiceKey::Address {
            protocol: Protocol::Udp,
            addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            port: 5060,
        };
        let sctp = ServiceKey::Address {
            protocol: Protocol::Sctp,
            addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)),
            port: 0,
        };
        let mark = ServiceKey::Fwmark {
            family: Family::Ipv6,
            mark: 0xdead_beef,
        };
        let mut persistent = Service::new("wlc");
        persistent.persistence = Some(Persistence {
            timeout_secs: 360,
            netmask_prefix_len: 24,
        });
        persistent.flags = ServiceFlags::ONE_PACKET;
        let mut sip = Service::new("sh");
        sip.persistence = Some(Persistence {
            timeout_secs: 60,
            netmask_prefix_len: 64,
        });
        sip.persistence_engine = Some("sip".into());
        let real_v4 = DestKey::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 8080);
        let real_v6 = DestKey::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2)),
            80,
        );
        let mut ops = Vec::new();
        for (key, service) in [
            (v4, persistent),
            (v6, sip),
            (sctp, Service::new("rr")),
            (mark, Service::new("lblcr")),
            (v4, Service::new("mh")),
            (v4, Service::new("nq")),
        ] {
            ops.push(Op::AddService {
                key,
                service: service.clone(),
            });
            ops.push(Op::SetService { key, service });
            ops.push(Op::DelService { key });
        }
        let tunnels = [
            TunnelEncapsulation::Ipip,
            TunnelEncapsulation::Gue,
            TunnelEncapsulation::Gre,
        ]
        .map(|encapsulation| {
            Forwarding::Tunnel(Tunnel {
                encapsulation,
                port: 6080,
                flags: TunnelFlags(3),
            })
        });
        let forwardings = [
            Forwarding::DirectRoute,
            Forwarding::Masquerade,
            Forwarding::LocalNode,
            Forwarding::Bypass,
        ]
        .into_iter()
        .chain(tunnels);
        for (i, forwarding) in forwardings.enumerate() {
            let mut dest = Destination::new(forwarding, 7 + i as u32);
            dest.upper_threshold = 1000;
            dest.lower_threshold = 10 * i as u32;
            for (service, key) in [(v4, real_v4), (mark, real_v6), (v6, real_v4)] {
                ops.push(Op::AddDest { service, key, dest });
                ops.push(Op::SetDest { service, key, dest });
                ops.push(Op::DelDest { service, key });
            }
        }
        ops
    }

    #[test]
    fn every_operation_is_the_same_bytes_as_the_message_tree_emits() {
        for (sequence, op) in ops().iter().enumerate() {
            let sequence = 1000 + sequence as u32;
            let mut tree = Vec::new();
            super::super::bulk::encode_message(
                0x1c,
                op_message(op),
                NLM_F_REQUEST,
                sequence,
                &mut tree,
            );
            let mut direct = vec![0xaa; 3];
            append_op(0x1c, op, NLM_F_REQUEST, sequence, &mut direct);
            // Appended after what was there, which it leaves alone.
            assert_eq!(direct[..3], [0xaa; 3]);
            assert_eq!(direct[3..], tree[..], "{op:?}");
        }
    }
}
