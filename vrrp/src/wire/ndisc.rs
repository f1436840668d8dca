//! IPv6 Neighbor Advertisements (RFC 4861 §4.4) as whole Ethernet frames for
//! an `AF_PACKET` socket.
//!
//! A new VRRPv3 master announces each IPv6 virtual address with an unsolicited
//! Neighbor Advertisement (RFC 5798 §6.4.2: "for each IPv6 address ... send an
//! Unsolicited Neighbor Advertisement with the Router Flag (R) set to 1 if
//! the router is an IPv6 router"; haldir fronts real servers and is no router,
//! so R = 0; RFC 4861 §7.2.6 for the unsolicited form):
//! [`UnsolicitedNa`] builds that frame. [`NaRepr`] parses any NA frame,
//! applying the validity checks of RFC 4861 §7.1.2.
//!
//! Only frames without IPv6 extension headers are understood; a Neighbor
//! Advertisement never needs one.

use std::net::Ipv6Addr;

use super::checksum;
use super::ethernet::{self, EtherType, EthernetRepr, Frame};

/// Byte offsets in the IPv6 + ICMPv6 NA packet (the Ethernet frame's payload).
pub mod field {
    use std::ops::Range;

    /// IPv6 version (4 bits), traffic class (8), flow label (20).
    pub const IP_VER_TC_FLOW: Range<usize> = 0..4;
    /// IPv6 payload length.
    pub const IP_PAYLOAD_LEN: Range<usize> = 4..6;
    /// IPv6 next header.
    pub const IP_NEXT_HEADER: usize = 6;
    /// IPv6 hop limit.
    pub const IP_HOP_LIMIT: usize = 7;
    /// IPv6 source address.
    pub const IP_SRC: Range<usize> = 8..24;
    /// IPv6 destination address.
    pub const IP_DST: Range<usize> = 24..40;
    /// ICMPv6 type.
    pub const ICMP_TYPE: usize = 40;
    /// ICMPv6 code.
    pub const ICMP_CODE: usize = 41;
    /// ICMPv6 checksum.
    pub const ICMP_CHECKSUM: Range<usize> = 42..44;
    /// NA flags (R, S, O in the top bits) and 29 reserved bits.
    pub const NA_FLAGS: Range<usize> = 44..48;
    /// NA Target Address.
    pub const NA_TARGET: Range<usize> = 48..64;
    /// First NA option.
    pub const NA_OPTIONS: usize = 64;
}

/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// IPv6 next header of ICMPv6.
pub const NEXT_HEADER_ICMPV6: u8 = 58;
/// ICMPv6 type of a Neighbor Advertisement (RFC 4861 §4.4).
pub const ICMPV6_NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// The hop limit ND messages are sent with and must arrive with
/// (RFC 4861 §7.1.2).
pub const NDISC_HOP_LIMIT: u8 = 255;
/// Option type of Target Link-Layer Address (RFC 4861 §4.6.1).
pub const OPTION_TARGET_LINK_ADDR: u8 = 2;
/// The all-nodes multicast address an unsolicited NA goes to (RFC 4861 §7.2.6).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// The Ethernet address of ff02::1 (RFC 2464 §7: 33:33 + low 32 bits).
pub const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0x00, 0x00, 0x00, 0x01];
/// Length of the IPv6 header (no extension headers).
pub const IPV6_HEADER_LEN: usize = field::ICMP_TYPE;
/// Length of the NA message without options.
pub const NA_LEN: usize = field::NA_OPTIONS - field::ICMP_TYPE;

const FLAG_ROUTER: u8 = 0x80;
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;

/// Why a frame is not a valid Neighbor Advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NdiscError {
    /// Shorter than its headers, its IPv6 payload length, or 24 bytes of NA.
    #[error("neighbor advertisement frame truncated")]
    Truncated,
    /// EtherType is not IPv6, or the IPv6 version is not 6.
    #[error("frame is not IPv6")]
    NotIpv6,
    /// The next header is not ICMPv6 (extension headers are not followed).
    #[error("IPv6 next header is not ICMPv6")]
    NotIcmpv6,
    /// ICMPv6 type is not 136.
    #[error("ICMPv6 message is not a neighbor advertisement")]
    NotNeighborAdvertisement,
    /// ICMPv6 code is not 0 (RFC 4861 §7.1.2).
    #[error("neighbor advertisement code is not 0")]
    BadCode,
    /// Hop limit is not 255, so it may come from off-link (RFC 4861 §7.1.2).
    #[error("neighbor advertisement hop limit is not 255")]
    BadHopLimit,
    /// The ICMPv6 checksum does not verify.
    #[error("neighbor advertisement checksum mismatch")]
    BadChecksum,
    /// The target is a multicast address (RFC 4861 §7.1.2).
    #[error("neighbor advertisement target is multicast")]
    MulticastTarget,
    /// An option has length zero or runs past the message (RFC 4861 §7.1.2).
    #[error("neighbor advertisement option malformed")]
    BadOption,
}

impl NdiscError {
    /// Every variant, in check order, e.g. to pre-register counters.
    pub const ALL: [NdiscError; 9] = [
        NdiscError::Truncated,
        NdiscError::NotIpv6,
        NdiscError::NotIcmpv6,
        NdiscError::NotNeighborAdvertisement,
        NdiscError::BadCode,
        NdiscError::BadHopLimit,
        NdiscError::BadChecksum,
        NdiscError::MulticastTarget,
        NdiscError::BadOption,
    ];

    /// A stable snake_case name, usable as a counter label.
    pub fn as_str(&self) -> &'static str {
        match self {
            NdiscError::Truncated => "truncated",
            NdiscError::NotIpv6 => "not_ipv6",
            NdiscError::NotIcmpv6 => "not_icmpv6",
            NdiscError::NotNeighborAdvertisement => "not_neighbor_advertisement",
            NdiscError::BadCode => "bad_code",
            NdiscError::BadHopLimit => "bad_hop_limit",
            NdiscError::BadChecksum => "bad_checksum",
            NdiscError::MulticastTarget => "multicast_target",
            NdiscError::BadOption => "bad_option",
        }
    }
}

/// A zero-copy view of an IPv6 packet carrying an ICMPv6 Neighbor
/// Advertisement: the payload of an Ethernet frame of type 0x86dd (the
/// Ethernet header is [`super::ethernet`]'s).
///
/// ```text
/// IPv6 (RFC 8200 §3), from byte 0:
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version| Traffic Class |           Flow Label                  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |         Payload Length        |  Next Hdr 58  | Hop Limit 255 |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                 Source Address (16 bytes)                     |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |               Destination Address (16 bytes)                  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///
/// Neighbor Advertisement (RFC 4861 §4.4), from byte 40:
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     Type 136  |     Code 0    |          Checksum             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |R|S|O|                     Reserved                            |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                  Target Address (16 bytes)                    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   Options ...  e.g. Target Link-Layer Address (RFC 4861 §4.6.1):
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |    Type 2     |   Length 1    |    Link-Layer Address ...     |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length; accessors may panic.
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>, NdiscError> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the headers, the announced IPv6 payload and at least the
    /// 24-byte NA body are present; afterwards no accessor panics.
    pub fn check_len(&self) -> Result<(), NdiscError> {
        let len = self.buffer.as_ref().len();
        if len < IPV6_HEADER_LEN {
            return Err(NdiscError::Truncated);
        }
        let icmp_len = usize::from(self.payload_len());
        if icmp_len < NA_LEN || len < IPV6_HEADER_LEN + icmp_len {
            return Err(NdiscError::Truncated);
        }
        Ok(())
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// IPv6 version nibble.
    pub fn ip_version(&self) -> u8 {
        self.bytes()[field::IP_VER_TC_FLOW.start] >> 4
    }

    /// IPv6 payload length (the ICMPv6 message, no extension headers).
    pub fn payload_len(&self) -> u16 {
        read_u16(&self.bytes()[field::IP_PAYLOAD_LEN])
    }

    /// IPv6 next header.
    pub fn next_header(&self) -> u8 {
        self.bytes()[field::IP_NEXT_HEADER]
    }

    /// IPv6 hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.bytes()[field::IP_HOP_LIMIT]
    }

    /// IPv6 source.
    pub fn src_ip(&self) -> Ipv6Addr {
        ipv6_at(self.bytes(), field::IP_SRC.start)
    }

    /// IPv6 destination.
    pub fn dst_ip(&self) -> Ipv6Addr {
        ipv6_at(self.bytes(), field::IP_DST.start)
    }

    /// ICMPv6 type.
    pub fn icmp_type(&self) -> u8 {
        self.bytes()[field::ICMP_TYPE]
    }

    /// ICMPv6 code.
    pub fn icmp_code(&self) -> u8 {
        self.bytes()[field::ICMP_CODE]
    }

    /// ICMPv6 checksum field.
    pub fn icmp_checksum(&self) -> u16 {
        read_u16(&self.bytes()[field::ICMP_CHECKSUM])
    }

    /// The R/S/O flags byte (top three bits).
    pub fn flags(&self) -> u8 {
        self.bytes()[field::NA_FLAGS.start]
    }

    /// The Target Address.
    pub fn target(&self) -> Ipv6Addr {
        ipv6_at(self.bytes(), field::NA_TARGET.start)
    }

    /// The ICMPv6 message: `payload_len()` bytes after the IPv6 header
    /// (Ethernet padding excluded).
    pub fn icmp_message(&self) -> &[u8] {
        &self.bytes()[IPV6_HEADER_LEN..IPV6_HEADER_LEN + usize::from(self.payload_len())]
    }

    /// The NA options area.
    pub fn options(&self) -> &[u8] {
        &self.icmp_message()[NA_LEN..]
    }

    /// Whether the ICMPv6 checksum verifies with the IPv6 pseudo-header
    /// (RFC 4443 §2.3).
    pub fn verify_checksum(&self) -> bool {
        let message = self.icmp_message();
        checksum::verifies(icmp_sum(self.src_ip(), self.dst_ip(), message))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the ICMPv6 checksum field.
    pub fn set_icmp_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::ICMP_CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    /// Computes and stores the ICMPv6 checksum over the pseudo-header and
    /// [`Packet::icmp_message`]. Requires a successful [`Packet::check_len`].
    pub fn fill_checksum(&mut self) {
        self.set_icmp_checksum(0);
        let sum = icmp_sum(self.src_ip(), self.dst_ip(), self.icmp_message());
        self.set_icmp_checksum(checksum::finish(sum));
    }
}

/// The folded sum of the ICMPv6 pseudo-header and `message`.
fn icmp_sum(src: Ipv6Addr, dst: Ipv6Addr, message: &[u8]) -> u16 {
    checksum::combine(&[
        checksum::pseudo_header_v6(src, dst, NEXT_HEADER_ICMPV6, message.len() as u32),
        checksum::data(message),
    ])
}

/// The meaning of a Neighbor Advertisement frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NaRepr {
    /// Ethernet source.
    pub src_mac: [u8; 6],
    /// Ethernet destination.
    pub dst_mac: [u8; 6],
    /// IPv6 source.
    pub src_ip: Ipv6Addr,
    /// IPv6 destination.
    pub dst_ip: Ipv6Addr,
    /// R flag: the sender is a router.
    pub router: bool,
    /// S flag: sent in response to a solicitation.
    pub solicited: bool,
    /// O flag: override existing cache entries.
    pub override_flag: bool,
    /// The address being advertised.
    pub target: Ipv6Addr,
    /// The Target Link-Layer Address option, if present (other options are
    /// skipped, RFC 4861 §4.4 "future versions ... may define new option
    /// types; receivers MUST silently ignore any options they do not
    /// recognize").
    pub target_link_addr: Option<[u8; 6]>,
}

impl NaRepr {
    /// Parses an Ethernet frame carrying an ICMPv6 Neighbor Advertisement,
    /// checking (in order) lengths, IPv6, ICMPv6, type and code, hop limit,
    /// checksum, target and options (RFC 4861 §7.1.2).
    pub fn parse(frame: &[u8]) -> Result<NaRepr, NdiscError> {
        if frame.len() < ethernet::HEADER_LEN + IPV6_HEADER_LEN {
            return Err(NdiscError::Truncated);
        }
        let frame = Frame::new_unchecked(frame);
        let unchecked = Packet::new_unchecked(frame.payload());
        if frame.ethertype() != EtherType::Ipv6 || unchecked.ip_version() != 6 {
            return Err(NdiscError::NotIpv6);
        }
        if unchecked.next_header() != NEXT_HEADER_ICMPV6 {
            return Err(NdiscError::NotIcmpv6);
        }
        let packet = Packet::new_checked(frame.payload())?;
        if packet.icmp_type() != ICMPV6_NEIGHBOR_ADVERTISEMENT {
            return Err(NdiscError::NotNeighborAdvertisement);
        }
        // RFC 4861 §7.1.2: ICMP Code is 0.
        if packet.icmp_code() != 0 {
            return Err(NdiscError::BadCode);
        }
        // RFC 4861 §7.1.2: IP Hop Limit is 255, so it cannot have been forwarded.
        if packet.hop_limit() != NDISC_HOP_LIMIT {
            return Err(NdiscError::BadHopLimit);
        }
        if !packet.verify_checksum() {
            return Err(NdiscError::BadChecksum);
        }
        // RFC 4861 §7.1.2: Target Address is not a multicast address.
        let target = packet.target();
        if target.is_multicast() {
            return Err(NdiscError::MulticastTarget);
        }

        let mut target_link_addr = None;
        let mut options = packet.options();
        while !options.is_empty() {
            // RFC 4861 §4.6: type, length in units of 8 octets; §7.1.2: all
            // options have a length greater than zero.
            let [kind, units, ..] = *options else {
                return Err(NdiscError::BadOption);
            };
            let len = usize::from(units) * 8;
            if len == 0 || len > options.len() {
                return Err(NdiscError::BadOption);
            }
            if kind == OPTION_TARGET_LINK_ADDR && target_link_addr.is_none() {
                // Ethernet: length 1, six address bytes (RFC 2464 §6).
                target_link_addr = options.get(2..8).and_then(|mac| mac.try_into().ok());
            }
            options = &options[len..];
        }

        let flags = packet.flags();
        Ok(NaRepr {
            src_mac: frame.source(),
            dst_mac: frame.destination(),
            src_ip: packet.src_ip(),
            dst_ip: packet.dst_ip(),
            router: flags & FLAG_ROUTER != 0,
            solicited: flags & FLAG_SOLICITED != 0,
            override_flag: flags & FLAG_OVERRIDE != 0,
            target,
            target_link_addr,
        })
    }

    /// The ICMPv6 message length (NA plus the optional 8-byte option).
    fn icmp_len(&self) -> usize {
        NA_LEN
            + if self.target_link_addr.is_some() {
                8
            } else {
                0
            }
    }

    /// The frame length [`NaRepr::emit`] writes.
    pub fn frame_len(&self) -> usize {
        ethernet::HEADER_LEN + IPV6_HEADER_LEN + self.icmp_len()
    }

    /// Writes the whole frame (hop limit 255, traffic class and flow label 0,
    /// checksum computed) into `buf[..frame_len()]`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`NaRepr::frame_len`].
    pub fn emit(&self, buf: &mut [u8]) {
        let icmp_len = self.icmp_len();
        let mut frame = Frame::new_unchecked(&mut buf[..self.frame_len()]);
        EthernetRepr {
            source: self.src_mac,
            destination: self.dst_mac,
            ethertype: EtherType::Ipv6,
        }
        .emit(&mut frame);
        let packet = frame.payload_mut();
        packet[field::IP_VER_TC_FLOW].copy_from_slice(&[0x60, 0, 0, 0]);
        packet[field::IP_PAYLOAD_LEN].copy_from_slice(&(icmp_len as u16).to_be_bytes());
        packet[field::IP_NEXT_HEADER] = NEXT_HEADER_ICMPV6;
        packet[field::IP_HOP_LIMIT] = NDISC_HOP_LIMIT;
        packet[field::IP_SRC].copy_from_slice(&self.src_ip.octets());
        packet[field::IP_DST].copy_from_slice(&self.dst_ip.octets());
        packet[field::ICMP_TYPE] = ICMPV6_NEIGHBOR_ADVERTISEMENT;
        packet[field::ICMP_CODE] = 0;
        packet[field::ICMP_CHECKSUM].fill(0);
        let mut flags = 0;
        if self.router {
            flags |= FLAG_ROUTER;
        }
        if self.solicited {
            flags |= FLAG_SOLICITED;
        }
        if self.override_flag {
            flags |= FLAG_OVERRIDE;
        }
        packet[field::NA_FLAGS].copy_from_slice(&[flags, 0, 0, 0]);
        packet[field::NA_TARGET].copy_from_slice(&self.target.octets());
        if let Some(mac) = self.target_link_addr {
            let at = field::NA_OPTIONS;
            packet[at] = OPTION_TARGET_LINK_ADDR;
            packet[at + 1] = 1;
            packet[at + 2..at + 8].copy_from_slice(&mac);
        }
        let sum = icmp_sum(self.src_ip, self.dst_ip, &packet[IPV6_HEADER_LEN..]);
        packet[field::ICMP_CHECKSUM].copy_from_slice(&checksum::finish(sum).to_be_bytes());
    }
}

/// An unsolicited Neighbor Advertisement announcing that `target` now lives
/// at `src_mac` (RFC 4861 §7.2.6; RFC 5798 §6.4.2).
///
/// Sent to ff02::1 (33:33:00:00:00:01) with hop limit 255, R = 0, S = 0
/// (unsolicited), O = 1 (replace cached entries), and a Target Link-Layer
/// Address option carrying `src_mac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsolicitedNa {
    /// The MAC the address now lives at; Ethernet source and option value.
    pub src_mac: [u8; 6],
    /// IPv6 source: normally the interface's link-local address
    /// (keepalived 2.2.7 uses the virtual address itself; both are valid,
    /// RFC 4861 §4.4 only requires an address of the sending interface).
    pub src_ip: Ipv6Addr,
    /// The virtual address being announced.
    pub target: Ipv6Addr,
}

impl UnsolicitedNa {
    /// The NA this announcement is.
    pub fn repr(&self) -> NaRepr {
        NaRepr {
            src_mac: self.src_mac,
            dst_mac: ALL_NODES_MAC,
            src_ip: self.src_ip,
            dst_ip: ALL_NODES,
            router: false,
            solicited: false,
            override_flag: true,
            target: self.target,
            target_link_addr: Some(self.src_mac),
        }
    }

    /// The frame length [`UnsolicitedNa::emit`] writes (86).
    pub fn frame_len(&self) -> usize {
        self.repr().frame_len()
    }

    /// Writes the whole frame into `buf[..frame_len()]`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`UnsolicitedNa::frame_len`].
    pub fn emit(&self, buf: &mut [u8]) {
        self.repr().emit(buf);
    }

    /// The frame as a new vector of [`UnsolicitedNa::frame_len`] bytes.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut frame = vec![0; self.frame_len()];
        self.emit(&mut frame);
        frame
    }

    /// Parses any Neighbor Advertisement frame; same as [`NaRepr::parse`].
    pub fn parse(frame: &[u8]) -> Result<NaRepr, NdiscError> {
        NaRepr::parse(frame)
    }
}

fn read_u16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

fn ipv6_at(bytes: &[u8], at: usize) -> Ipv6Addr {
    let mut octets = [0; 16];
    octets.copy_from_slice(&bytes[at..at + 16]);
    Ipv6Addr::from(octets)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x3a, 0x7b, 0xb1, 0xe4, 0xf7, 0xc9];

    /// keepalived 2.2.7's unsolicited NA for fd00:99::100, as captured.
    const KEEPALIVED_NA: [u8; 86] = [
        0x33, 0x33, 0x00, 0x00, 0x00, 0x01, // eth dst (ff02::1)
        0x3a, 0x7b, 0xb1, 0xe4, 0xf7, 0xc9, // eth src
        0x86, 0xdd, // IPv6
        0x60, 0x00, 0x00, 0x00, // version 6, tc 0, flow 0
        0x00, 0x20, 0x3a, 0xff, // payload 32, ICMPv6, hop limit 255
        0xfd, 0x00, 0x00, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, // src fd00:99::100
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // dst ff02::1
        0x88, 0x00, 0x75, 0x42, // type 136, code 0, checksum
        0x20, 0x00, 0x00, 0x00, // R=0 S=0 O=1
        0xfd, 0x00, 0x00, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, // target
        0x02, 0x01, 0x3a, 0x7b, 0xb1, 0xe4, 0xf7, 0xc9, // TLLA option
    ];

    fn vip() -> Ipv6Addr {
        "fd00:99::100".parse().unwrap()
    }

    /// Textbook RFC 1071 over pseudo-header bytes + message, independent of
    /// the `checksum` module.
    fn reference_icmp_checksum(src: Ipv6Addr, dst: Ipv6Addr, message: &[u8]) -> u16 {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&(message.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 58]);
        bytes.extend_from_slice(message);
        let mut sum: u32 = 0;
        for pair in bytes.chunks(2) {
            sum += u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
            if sum > 0xffff {
                sum = (sum & 0xffff) + 1;
            }
        }
        !(sum as u16)
    }

    fn refill(frame: &mut [u8]) {
        frame[56] = 0;
        frame[57] = 0;
        let src = ipv6_at(frame, 22);
        let dst = ipv6_at(frame, 38);
        let len = usize::from(read_u16(&frame[18..20]));
        let sum = reference_icmp_checksum(src, dst, &frame[54..54 + len]);
        frame[56..58].copy_from_slice(&sum.to_be_bytes());
    }

    #[test]
    fn captured_checksum_matches_reference() {
        let mut frame = KEEPALIVED_NA;
        refill(&mut frame);
        assert_eq!(frame, KEEPALIVED_NA);
    }

    #[test]
    fn parses_keepalived_na_and_emits_it_identically() {
        let repr = NaRepr::parse(&KEEPALIVED_NA).unwrap();
        let na = UnsolicitedNa {
            src_mac: MAC,
            src_ip: vip(),
            target: vip(),
        };
        assert_eq!(repr, na.repr());
        assert_eq!(na.frame_len(), 86);
        let mut buf = [0xa5u8; 90];
        na.emit(&mut buf);
        assert_eq!(&buf[..86], &KEEPALIVED_NA);
        assert_eq!(&buf[86..], &[0xa5; 4]);
    }

    #[test]
    fn link_local_source_form_verifies_with_reference_checksum() {
        let link_local: Ipv6Addr = "fe80::387b:b1ff:fee4:f7c9".parse().unwrap();
        let na = UnsolicitedNa {
            src_mac: MAC,
            src_ip: link_local,
            target: vip(),
        };
        let mut buf = [0u8; 86];
        na.emit(&mut buf);
        let mut expected = KEEPALIVED_NA;
        expected[ethernet::HEADER_LEN..][field::IP_SRC].copy_from_slice(&link_local.octets());
        refill(&mut expected);
        assert_eq!(buf, expected);
        assert_eq!(UnsolicitedNa::parse(&buf).unwrap(), na.repr());
    }

    #[test]
    fn ethernet_padding_and_unknown_options_are_ignored() {
        // Add a nonce option (type 14, length 1) before the TLLA option.
        let mut frame = KEEPALIVED_NA[..78].to_vec();
        frame[19] = 40;
        frame.extend_from_slice(&[14, 1, 1, 2, 3, 4, 5, 6]);
        frame.extend_from_slice(&KEEPALIVED_NA[78..]);
        frame.extend_from_slice(&[0; 10]); // padding beyond payload length
        refill(&mut frame);
        let repr = NaRepr::parse(&frame).unwrap();
        assert_eq!(repr.target_link_addr, Some(MAC));
        assert!(repr.override_flag && !repr.router && !repr.solicited);
    }

    #[test]
    fn na_without_options_round_trips() {
        let repr = NaRepr {
            src_mac: MAC,
            dst_mac: MAC,
            src_ip: vip(),
            dst_ip: vip(),
            router: true,
            solicited: true,
            override_flag: false,
            target: vip(),
            target_link_addr: None,
        };
        let mut buf = [0u8; 78];
        repr.emit(&mut buf);
        assert_eq!(buf[ethernet::HEADER_LEN..][field::NA_FLAGS.start], 0xc0);
        assert_eq!(NaRepr::parse(&buf).unwrap(), repr);
    }

    #[test]
    fn truncated_at_every_length_is_rejected() {
        for len in 0..KEEPALIVED_NA.len() {
            assert_eq!(
                NaRepr::parse(&KEEPALIVED_NA[..len]),
                Err(NdiscError::Truncated),
                "len {len}"
            );
        }
    }

    #[test]
    fn rejects_invalid_advertisements() {
        type Mutation = fn(&mut Vec<u8>);
        let cases: [(Mutation, NdiscError); 10] = [
            (|f| f[12] = 0x08, NdiscError::NotIpv6),
            (|f| f[14] = 0x40, NdiscError::NotIpv6),
            (|f| f[20] = 0, NdiscError::NotIcmpv6), // hop-by-hop header
            (|f| f[54] = 135, NdiscError::NotNeighborAdvertisement),
            (|f| f[55] = 1, NdiscError::BadCode),
            (|f| f[21] = 64, NdiscError::BadHopLimit),
            (|f| f[63] ^= 1, NdiscError::BadChecksum),
            (|f| f[19] = 16, NdiscError::Truncated), // shorter than NA body
            (
                |f| {
                    f[62] = 0xff;
                    refill(f);
                },
                NdiscError::MulticastTarget,
            ),
            (
                |f| {
                    f[79] = 0;
                    refill(f);
                },
                NdiscError::BadOption,
            ),
        ];
        for (index, (mutate, expected)) in cases.into_iter().enumerate() {
            let mut frame = KEEPALIVED_NA.to_vec();
            mutate(&mut frame);
            assert_eq!(NaRepr::parse(&frame), Err(expected), "case {index}");
        }
        // Option running past the message.
        let mut frame = KEEPALIVED_NA.to_vec();
        frame[79] = 2;
        refill(&mut frame);
        assert_eq!(NaRepr::parse(&frame), Err(NdiscError::BadOption));
    }

    #[test]
    fn error_names_are_distinct() {
        let names: std::collections::HashSet<_> =
            NdiscError::ALL.iter().map(NdiscError::as_str).collect();
        assert_eq!(names.len(), NdiscError::ALL.len());
    }
}
