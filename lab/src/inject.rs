//! A hostile host on the lab segment: sends hand-crafted IP protocol 112 packets.
//!
//! An [`Injector`] is a raw IPv4 socket (protocol 112) created inside one lab host's
//! namespace. The kernel writes the IP header (source = the host's address, protocol 112,
//! total length, header checksum); the caller chooses the payload byte for byte and the
//! TTL, so any malformed VRRP message, a wrong TTL, or a foreign protocol sharing number 112
//! (CARP) can be put on the wire. Only the lab's own multicast group address is used.
//!
//! ```text
//!  CARP header as ucarp sends it (36 bytes, IP protocol 112 to 224.0.0.18):
//!  0 ver(2)/type(1) = 0x21 | 1 vhid | 2 advskew | 3 authlen (7) | 4 demote | 5 advbase
//!  6..8 checksum (Internet checksum of the 36 bytes) | 8..16 counter | 16..36 HMAC-SHA1
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use haldir_vrrp::wire::checksum;
use haldir_vrrp::wire::vrrp::{AdvertRepr, Auth, Packet, Version, VRRP_MULTICAST_V4};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::netns::{in_netns, Lab};

/// IANA protocol number shared by VRRP and CARP.
const IPPROTO_VRRP: i32 = 112;
/// Length of a CARP header (OpenBSD `struct carp_header`, as ucarp sends it).
pub const CARP_LEN: usize = 36;

/// A raw protocol-112 sender in one lab host. Closed on drop.
#[derive(Debug)]
pub struct Injector {
    socket: Socket,
    source: Ipv4Addr,
}

impl Injector {
    /// Opens the raw socket in host `host`, whose `eth0` holds `source`; packets leave
    /// through that address's interface.
    pub fn open(lab: &Lab, host: &str, source: Ipv4Addr) -> anyhow::Result<Injector> {
        let ns = lab.ns_name(host);
        let socket = in_netns(&ns, || -> std::io::Result<Socket> {
            let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_VRRP)))?;
            socket.bind(&SockAddr::from(SocketAddr::new(IpAddr::V4(source), 0)))?;
            socket.set_multicast_if_v4(&source)?;
            socket.set_multicast_loop_v4(false)?;
            // Never read from: a filter that accepts nothing keeps the queue empty.
            socket.attach_filter(&[socket2::SockFilter::new(0x06, 0, 0, 0)])?;
            Ok(socket)
        })?
        .with_context(|| format!("cannot open a raw protocol-112 socket in {ns}"))?;
        Ok(Injector { socket, source })
    }

    /// The IP source address of what this injector sends.
    pub fn source(&self) -> Ipv4Addr {
        self.source
    }

    /// Sends `payload` once as an IP protocol 112 datagram to 224.0.0.18 with IP TTL `ttl`.
    pub fn send(&self, payload: &[u8], ttl: u8) -> anyhow::Result<()> {
        self.socket
            .set_multicast_ttl_v4(u32::from(ttl))
            .context("IP_MULTICAST_TTL")?;
        self.socket.set_ttl_v4(u32::from(ttl)).context("IP_TTL")?;
        let group = SockAddr::from(SocketAddr::new(IpAddr::V4(VRRP_MULTICAST_V4), 0));
        let sent = self
            .socket
            .send_to(payload, &group)
            .with_context(|| format!("sending {} bytes to 224.0.0.18", payload.len()))?;
        anyhow::ensure!(
            sent == payload.len(),
            "short send: {sent} of {}",
            payload.len()
        );
        Ok(())
    }

    /// Sends `payload` `count` times, `spacing` apart.
    pub fn send_many(
        &self,
        payload: &[u8],
        ttl: u8,
        count: usize,
        spacing: Duration,
    ) -> anyhow::Result<()> {
        for _ in 0..count {
            self.send(payload, ttl)?;
            if !spacing.is_zero() {
                std::thread::sleep(spacing);
            }
        }
        Ok(())
    }

    /// A well-formed VRRP advert from this injector to 224.0.0.18 (checksum filled in).
    pub fn advert(&self, advert: &AdvertRepr) -> Vec<u8> {
        let mut message = vec![0u8; advert.buffer_len()];
        advert.emit(
            &mut message,
            IpAddr::V4(self.source),
            IpAddr::V4(VRRP_MULTICAST_V4),
        );
        message
    }

    /// Recomputes the VRRP checksum of a (possibly malformed) message of at least 8 bytes
    /// as this injector would send it: v2 over the message, v3 with the pseudo-header.
    pub fn refill_checksum(&self, message: &mut [u8]) {
        let mut packet = Packet::new_unchecked(message);
        packet.fill_checksum(IpAddr::V4(self.source), IpAddr::V4(VRRP_MULTICAST_V4));
    }
}

/// A VRRP advert with the given fields, for [`Injector::advert`].
pub fn advert_repr(
    version: Version,
    vrid: u8,
    priority: u8,
    advert_interval_centis: u16,
    auth: Auth,
    addresses: &[Ipv4Addr],
) -> AdvertRepr {
    AdvertRepr {
        version,
        vrid,
        priority,
        advert_interval_centis,
        auth,
        addresses: addresses.iter().copied().map(IpAddr::V4).collect(),
    }
}

/// The CARP advertisement ucarp sends for `vhid`: version 2, type 1, `advskew`, authlen 7,
/// demote 0, `advbase` seconds, the 64-bit replay counter and a 20-byte HMAC, with the
/// CARP checksum (Internet checksum over the 36 header bytes, no pseudo-header) valid.
pub fn carp_packet(vhid: u8, advskew: u8, advbase: u8, counter: u64, hmac: [u8; 20]) -> Vec<u8> {
    let mut packet = vec![0u8; CARP_LEN];
    packet[0] = 0x21;
    packet[1] = vhid;
    packet[2] = advskew;
    packet[3] = 7;
    packet[4] = 0;
    packet[5] = advbase;
    packet[8..16].copy_from_slice(&counter.to_be_bytes());
    packet[16..36].copy_from_slice(&hmac);
    let sum = checksum::finish(checksum::data(&packet));
    packet[6..8].copy_from_slice(&sum.to_be_bytes());
    packet
}

#[cfg(test)]
mod tests {
    use super::*;
    use haldir_vrrp::wire::vrrp::DecodeError;

    #[test]
    fn carp_checksum_verifies_and_vrrp_rejects_it_on_length() {
        let carp = carp_packet(51, 0, 1, 0x0102_0304_0506_0708, [0xab; 20]);
        assert_eq!(carp.len(), CARP_LEN);
        assert!(checksum::verifies(checksum::data(&carp)));
        let src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 66));
        let dst = IpAddr::V4(VRRP_MULTICAST_V4);
        assert_eq!(
            AdvertRepr::parse(&carp, src, dst),
            Err(DecodeError::LengthMismatch)
        );
    }
}
