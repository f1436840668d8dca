//! ARP over Ethernet (RFC 826) as whole frames for an `AF_PACKET` socket.
//!
//! A new VRRP master announces each IPv4 virtual address with a gratuitous
//! ARP (RFC 5798 §6.4.2, RFC 3768 §6.4.2: "broadcast a gratuitous ARP request
//! containing the virtual router MAC address for each IP address"):
//! [`GratuitousArp`] builds that frame. [`ArpRepr`] parses any ARP-in-Ethernet
//! frame (e.g. to see a real server answering ARP for a VIP) and emits
//! requests or replies such as probes. [`Packet`] views the ARP packet itself;
//! the Ethernet header in front of it is [`super::ethernet`]'s.

use std::net::Ipv4Addr;

use super::ethernet::{self, EtherType, EthernetRepr, Frame};

/// Byte offsets of the Ethernet/IPv4 ARP packet (the Ethernet frame's payload).
pub mod field {
    use std::ops::Range;

    /// Hardware type (1, Ethernet).
    pub const HTYPE: Range<usize> = 0..2;
    /// Protocol type (0x0800, IPv4).
    pub const PTYPE: Range<usize> = 2..4;
    /// Hardware address length (6).
    pub const HLEN: usize = 4;
    /// Protocol address length (4).
    pub const PLEN: usize = 5;
    /// Operation.
    pub const OPER: Range<usize> = 6..8;
    /// Sender hardware address.
    pub const SHA: Range<usize> = 8..14;
    /// Sender protocol address.
    pub const SPA: Range<usize> = 14..18;
    /// Target hardware address.
    pub const THA: Range<usize> = 18..24;
    /// Target protocol address.
    pub const TPA: Range<usize> = 24..28;
}

/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// ARP hardware type of Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;
/// ARP protocol type of IPv4 (the IPv4 EtherType).
pub const PTYPE_IPV4: u16 = 0x0800;
/// Length of the Ethernet/IPv4 ARP packet.
pub const ARP_LEN: usize = field::TPA.end;
/// Length of the Ethernet header plus the Ethernet/IPv4 ARP packet.
pub const ARP_FRAME_LEN: usize = ethernet::HEADER_LEN + ARP_LEN;
/// The Ethernet minimum frame length without FCS; emitted frames are
/// zero-padded to it.
pub const ETHERNET_MIN_FRAME_LEN: usize = ethernet::MIN_FRAME_LEN;
/// The Ethernet broadcast address.
pub const BROADCAST_MAC: [u8; 6] = ethernet::BROADCAST;

/// Why a frame is not an ARP packet we understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ArpError {
    /// Shorter than Ethernet header + 28-byte ARP body.
    #[error("ARP frame truncated")]
    Truncated,
    /// EtherType is not 0x0806.
    #[error("frame is not ARP")]
    NotArp,
    /// Hardware type/length is not Ethernet (1/6).
    #[error("ARP hardware type is not Ethernet")]
    UnsupportedHardware,
    /// Protocol type/length is not IPv4 (0x0800/4).
    #[error("ARP protocol type is not IPv4")]
    UnsupportedProtocol,
}

impl ArpError {
    /// Every variant, e.g. to pre-register counters.
    pub const ALL: [ArpError; 4] = [
        ArpError::Truncated,
        ArpError::NotArp,
        ArpError::UnsupportedHardware,
        ArpError::UnsupportedProtocol,
    ];

    /// A stable snake_case name, usable as a counter label.
    pub fn as_str(&self) -> &'static str {
        match self {
            ArpError::Truncated => "truncated",
            ArpError::NotArp => "not_arp",
            ArpError::UnsupportedHardware => "unsupported_hardware",
            ArpError::UnsupportedProtocol => "unsupported_protocol",
        }
    }
}

/// ARP operation code (RFC 826; IANA "ARP Operation Codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// 1, request.
    Request,
    /// 2, reply.
    Reply,
    /// Any other code, kept raw.
    Other(u16),
}

impl From<u16> for Operation {
    fn from(value: u16) -> Self {
        match value {
            1 => Operation::Request,
            2 => Operation::Reply,
            other => Operation::Other(other),
        }
    }
}

impl From<Operation> for u16 {
    fn from(value: Operation) -> Self {
        match value {
            Operation::Request => 1,
            Operation::Reply => 2,
            Operation::Other(other) => other,
        }
    }
}

/// A zero-copy view of an Ethernet/IPv4 ARP packet (RFC 826 "Packet format"), the payload
/// of an Ethernet frame of type 0x0806.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   Hardware Type (1)           |   Protocol Type (0x0800)      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  HLEN (6)     |  PLEN (4)     |         Operation             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |              Sender Hardware Address (6 bytes) ...            |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |          ... SHA              |  Sender Protocol Address ...  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |      ... SPA                  |  Target Hardware Address ...  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                          ... THA                              |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                  Target Protocol Address                      |
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

    /// Wraps a buffer of at least [`ARP_LEN`] bytes.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, ArpError> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that a full Ethernet/IPv4 ARP packet is present; afterwards no
    /// accessor panics. Padding after it is allowed.
    pub fn check_len(&self) -> Result<(), ArpError> {
        if self.buffer.as_ref().len() < ARP_LEN {
            Err(ArpError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Hardware type.
    pub fn hardware_type(&self) -> u16 {
        read_u16(&self.bytes()[field::HTYPE])
    }

    /// Protocol type.
    pub fn protocol_type(&self) -> u16 {
        read_u16(&self.bytes()[field::PTYPE])
    }

    /// Hardware address length.
    pub fn hardware_len(&self) -> u8 {
        self.bytes()[field::HLEN]
    }

    /// Protocol address length.
    pub fn protocol_len(&self) -> u8 {
        self.bytes()[field::PLEN]
    }

    /// Operation.
    pub fn operation(&self) -> Operation {
        Operation::from(read_u16(&self.bytes()[field::OPER]))
    }

    /// Sender hardware address.
    pub fn sender_mac(&self) -> [u8; 6] {
        mac_at(self.bytes(), field::SHA.start)
    }

    /// Sender protocol address.
    pub fn sender_ip(&self) -> Ipv4Addr {
        ipv4_at(self.bytes(), field::SPA.start)
    }

    /// Target hardware address.
    pub fn target_mac(&self) -> [u8; 6] {
        mac_at(self.bytes(), field::THA.start)
    }

    /// Target protocol address.
    pub fn target_ip(&self) -> Ipv4Addr {
        ipv4_at(self.bytes(), field::TPA.start)
    }
}

/// The meaning of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    /// Request, reply or other.
    pub operation: Operation,
    /// Sender hardware address.
    pub sender_mac: [u8; 6],
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address.
    pub target_mac: [u8; 6],
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Parses an Ethernet frame carrying Ethernet/IPv4 ARP. Trailing bytes
    /// (Ethernet padding) are ignored; the Ethernet addresses are not part of
    /// the result (read them with [`ethernet::Frame`] if needed).
    pub fn parse(frame: &[u8]) -> Result<ArpRepr, ArpError> {
        let frame = Frame::new_checked(frame).map_err(|_| ArpError::Truncated)?;
        let packet = Packet::new_checked(frame.payload())?;
        if frame.ethertype() != EtherType::Arp {
            return Err(ArpError::NotArp);
        }
        ArpRepr::parse_packet(&packet)
    }

    /// Parses an Ethernet/IPv4 ARP packet (without the Ethernet header).
    pub fn parse_packet<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<ArpRepr, ArpError> {
        packet.check_len()?;
        if packet.hardware_type() != HTYPE_ETHERNET || packet.hardware_len() != 6 {
            return Err(ArpError::UnsupportedHardware);
        }
        if packet.protocol_type() != PTYPE_IPV4 || packet.protocol_len() != 4 {
            return Err(ArpError::UnsupportedProtocol);
        }
        Ok(ArpRepr {
            operation: packet.operation(),
            sender_mac: packet.sender_mac(),
            sender_ip: packet.sender_ip(),
            target_mac: packet.target_mac(),
            target_ip: packet.target_ip(),
        })
    }

    /// The length [`ArpRepr::emit_packet`] writes ([`ARP_LEN`]).
    pub fn buffer_len(&self) -> usize {
        ARP_LEN
    }

    /// Writes the ARP packet (without the Ethernet header) into
    /// `packet[..ARP_LEN]`.
    ///
    /// # Panics
    /// If the packet's buffer is shorter than [`ARP_LEN`].
    pub fn emit_packet<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let bytes = packet.buffer.as_mut();
        bytes[field::HTYPE].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        bytes[field::PTYPE].copy_from_slice(&PTYPE_IPV4.to_be_bytes());
        bytes[field::HLEN] = 6;
        bytes[field::PLEN] = 4;
        bytes[field::OPER].copy_from_slice(&u16::from(self.operation).to_be_bytes());
        bytes[field::SHA].copy_from_slice(&self.sender_mac);
        bytes[field::SPA].copy_from_slice(&self.sender_ip.octets());
        bytes[field::THA].copy_from_slice(&self.target_mac);
        bytes[field::TPA].copy_from_slice(&self.target_ip.octets());
    }

    /// The frame length [`ArpRepr::emit_frame`] writes: the Ethernet minimum.
    pub fn frame_len(&self) -> usize {
        ETHERNET_MIN_FRAME_LEN
    }

    /// Writes a whole Ethernet frame from `src_mac` to `dst_mac` carrying this
    /// ARP packet into `buf[..frame_len()]`, zero-padded to 60 bytes.
    ///
    /// # Panics
    /// If `buf` is shorter than [`ArpRepr::frame_len`].
    pub fn emit_frame(&self, src_mac: [u8; 6], dst_mac: [u8; 6], buf: &mut [u8]) {
        let mut frame = Frame::new_unchecked(&mut buf[..ETHERNET_MIN_FRAME_LEN]);
        EthernetRepr {
            source: src_mac,
            destination: dst_mac,
            ethertype: EtherType::Arp,
        }
        .emit(&mut frame);
        let payload = frame.payload_mut();
        self.emit_packet(&mut Packet::new_unchecked(&mut payload[..ARP_LEN]));
        payload[ARP_LEN..].fill(0);
    }

    /// An ARP request probe asking who has `target_ip` (RFC 826), from
    /// `sender_mac`/`sender_ip`; target hardware address zero.
    pub fn request(sender_mac: [u8; 6], sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> ArpRepr {
        ArpRepr {
            operation: Operation::Request,
            sender_mac,
            sender_ip,
            target_mac: [0; 6],
            target_ip,
        }
    }
}

/// A gratuitous ARP announcing `address` at `sender_mac`.
///
/// Broadcast ARP request with sender IP = target IP = `address` and target
/// hardware address 00:00:00:00:00:00 (RFC 5227 §3 "ARP Announcement": the
/// target hardware address is ignored and SHOULD be zero; the Linux kernel's
/// own announcements use zero too). Receivers update their cache from the
/// sender fields (RFC 826 "Packet Reception"). keepalived 2.2.7 sends
/// ff:ff:ff:ff:ff:ff there instead; both are accepted by receivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GratuitousArp {
    /// The MAC the address now lives at (interface MAC, or the virtual router
    /// MAC 00:00:5e:00:01:{vrid} per RFC 5798 §7.3).
    pub sender_mac: [u8; 6],
    /// The announced IPv4 address.
    pub address: Ipv4Addr,
}

impl GratuitousArp {
    /// The ARP packet this announcement carries.
    pub fn repr(&self) -> ArpRepr {
        ArpRepr {
            operation: Operation::Request,
            sender_mac: self.sender_mac,
            sender_ip: self.address,
            target_mac: [0; 6],
            target_ip: self.address,
        }
    }

    /// The frame length [`GratuitousArp::emit`] writes (60).
    pub fn frame_len(&self) -> usize {
        ETHERNET_MIN_FRAME_LEN
    }

    /// Writes the broadcast frame into `buf[..frame_len()]`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`GratuitousArp::frame_len`].
    pub fn emit(&self, buf: &mut [u8]) {
        self.repr().emit_frame(self.sender_mac, BROADCAST_MAC, buf);
    }

    /// The frame as a new vector of [`GratuitousArp::frame_len`] bytes.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut frame = vec![0; self.frame_len()];
        self.emit(&mut frame);
        frame
    }
}

fn read_u16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

fn mac_at(bytes: &[u8], at: usize) -> [u8; 6] {
    let mut mac = [0; 6];
    mac.copy_from_slice(&bytes[at..at + 6]);
    mac
}

fn ipv4_at(bytes: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x3a, 0x7b, 0xb1, 0xe4, 0xf7, 0xc9];

    /// keepalived 2.2.7's gratuitous ARP for 10.99.0.100, as captured (42
    /// bytes; a veth does not pad). Note its target MAC of all ones.
    const KEEPALIVED_GARP: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // eth dst broadcast
        0x3a, 0x7b, 0xb1, 0xe4, 0xf7, 0xc9, // eth src
        0x08, 0x06, // ARP
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, // Ethernet, IPv4, 6, 4
        0x00, 0x01, // request
        0x3a, 0x7b, 0xb1, 0xe4, 0xf7, 0xc9, // sender MAC
        0x0a, 0x63, 0x00, 0x64, // sender IP 10.99.0.100
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // target MAC
        0x0a, 0x63, 0x00, 0x64, // target IP 10.99.0.100
    ];

    fn keepalived_repr() -> ArpRepr {
        ArpRepr {
            operation: Operation::Request,
            sender_mac: MAC,
            sender_ip: Ipv4Addr::new(10, 99, 0, 100),
            target_mac: BROADCAST_MAC,
            target_ip: Ipv4Addr::new(10, 99, 0, 100),
        }
    }

    #[test]
    fn parses_keepalived_garp_and_emits_it_back_padded() {
        let repr = ArpRepr::parse(&KEEPALIVED_GARP).unwrap();
        assert_eq!(repr, keepalived_repr());
        let mut buf = [0xa5u8; 64];
        repr.emit_frame(MAC, BROADCAST_MAC, &mut buf);
        assert_eq!(&buf[..42], &KEEPALIVED_GARP);
        assert_eq!(&buf[42..60], &[0u8; 18]);
        assert_eq!(&buf[60..], &[0xa5; 4]);
    }

    #[test]
    fn gratuitous_arp_frame_layout() {
        let garp = GratuitousArp {
            sender_mac: MAC,
            address: Ipv4Addr::new(10, 99, 0, 100),
        };
        let mut buf = [0xa5u8; 60];
        garp.emit(&mut buf);
        let mut expected = [0u8; 60];
        expected[..42].copy_from_slice(&KEEPALIVED_GARP);
        expected[ethernet::HEADER_LEN..][field::THA].fill(0); // RFC 5227 §3: zero target MAC
        assert_eq!(buf, expected);
        let parsed = ArpRepr::parse(&buf).unwrap();
        assert_eq!(parsed, garp.repr());
        assert_eq!(parsed.sender_ip, parsed.target_ip);
    }

    #[test]
    fn reply_round_trips() {
        // A real server answering who-has 10.99.0.100 (the VIP) with its MAC.
        let reply: [u8; 60] = {
            let mut f = [0u8; 60];
            f[..42].copy_from_slice(&[
                0x3a, 0x7b, 0xb1, 0xe4, 0xf7, 0xc9, 0x6a, 0x56, 0xc7, 0xb2, 0x29, 0x7a, 0x08, 0x06,
                0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0x6a, 0x56, 0xc7, 0xb2, 0x29, 0x7a,
                0x0a, 0x63, 0x00, 0x64, 0x3a, 0x7b, 0xb1, 0xe4, 0xf7, 0xc9, 0x0a, 0x63, 0x00, 0x01,
            ]);
            f
        };
        let repr = ArpRepr::parse(&reply).unwrap();
        assert_eq!(repr.operation, Operation::Reply);
        assert_eq!(repr.sender_mac, [0x6a, 0x56, 0xc7, 0xb2, 0x29, 0x7a]);
        assert_eq!(repr.sender_ip, Ipv4Addr::new(10, 99, 0, 100));
        let frame = Frame::new_checked(&reply[..]).unwrap();
        let mut buf = [0u8; 60];
        repr.emit_frame(frame.source(), frame.destination(), &mut buf);
        assert_eq!(buf, reply);
    }

    #[test]
    fn request_probe_has_zero_target_mac() {
        let probe = ArpRepr::request(
            MAC,
            Ipv4Addr::new(10, 99, 0, 1),
            Ipv4Addr::new(10, 99, 0, 7),
        );
        let mut buf = [0u8; 60];
        probe.emit_frame(MAC, BROADCAST_MAC, &mut buf);
        let arp = &buf[ethernet::HEADER_LEN..];
        assert_eq!(&arp[field::OPER], &[0, 1]);
        assert_eq!(&arp[field::THA], &[0; 6]);
        assert_eq!(ArpRepr::parse(&buf).unwrap(), probe);
    }

    #[test]
    fn unknown_operation_is_kept_raw() {
        let mut frame = KEEPALIVED_GARP;
        frame[ethernet::HEADER_LEN..][field::OPER].copy_from_slice(&[0x00, 0x08]); // InARP request
        let repr = ArpRepr::parse(&frame).unwrap();
        assert_eq!(repr.operation, Operation::Other(8));
        let mut buf = [0u8; 60];
        repr.emit_frame(MAC, BROADCAST_MAC, &mut buf);
        assert_eq!(&buf[..42], &frame);
    }

    #[test]
    fn truncated_at_every_length_is_rejected() {
        for len in 0..KEEPALIVED_GARP.len() {
            assert_eq!(
                ArpRepr::parse(&KEEPALIVED_GARP[..len]),
                Err(ArpError::Truncated),
                "len {len}"
            );
        }
    }

    #[test]
    fn rejects_non_arp_and_non_ethernet_ipv4() {
        let mut ipv4 = KEEPALIVED_GARP;
        ipv4[ethernet::field::ETHERTYPE].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(ArpRepr::parse(&ipv4), Err(ArpError::NotArp));

        let mut ieee802 = KEEPALIVED_GARP;
        ieee802[ethernet::HEADER_LEN..][field::HTYPE].copy_from_slice(&[0x00, 0x06]);
        assert_eq!(ArpRepr::parse(&ieee802), Err(ArpError::UnsupportedHardware));

        let mut hlen = KEEPALIVED_GARP;
        hlen[ethernet::HEADER_LEN..][field::HLEN] = 8;
        assert_eq!(ArpRepr::parse(&hlen), Err(ArpError::UnsupportedHardware));

        let mut ptype = KEEPALIVED_GARP;
        ptype[ethernet::HEADER_LEN..][field::PTYPE].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(ArpRepr::parse(&ptype), Err(ArpError::UnsupportedProtocol));

        let mut plen = KEEPALIVED_GARP;
        plen[ethernet::HEADER_LEN..][field::PLEN] = 16;
        assert_eq!(ArpRepr::parse(&plen), Err(ArpError::UnsupportedProtocol));
    }

    #[test]
    fn error_names_are_distinct() {
        let names: std::collections::HashSet<_> =
            ArpError::ALL.iter().map(ArpError::as_str).collect();
        assert_eq!(names.len(), ArpError::ALL.len());
    }
}
