//! A minimal IPv4 header (RFC 791 §3.1) for what a raw `IPPROTO_VRRP` socket
//! hands us: on Linux a raw IPv4 socket delivers the IP header in front of the
//! payload, and VRRP needs its TTL (RFC 5798 §7.1 / RFC 3768 §7.1: must be 255),
//! protocol and addresses.
//!
//! Options are honoured by skipping `IHL * 4` bytes; their content is ignored.
//! The header checksum is verified. Fragmentation fields are not inspected: the
//! kernel reassembles before delivering to a raw socket.

use std::net::Ipv4Addr;

use super::checksum;

/// Byte offsets of the IPv4 header fields (RFC 791 §3.1).
mod field {
    use std::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// Why an IPv4 datagram was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ipv4Error {
    /// Shorter than the fixed header, or than the header length it announces.
    #[error("IPv4 datagram truncated")]
    Truncated,
    /// The version field is not 4.
    #[error("not an IPv4 datagram")]
    NotIpv4,
    /// IHL below 5 words.
    #[error("IPv4 header length below 20 bytes")]
    BadHeaderLength,
    /// Total length shorter than the header or longer than the bytes received.
    #[error("IPv4 total length inconsistent with header length or bytes received")]
    BadTotalLength,
    /// The header checksum does not verify.
    #[error("IPv4 header checksum mismatch")]
    BadChecksum,
}

impl Ipv4Error {
    /// Every variant, e.g. to pre-register counters.
    pub const ALL: [Ipv4Error; 5] = [
        Ipv4Error::Truncated,
        Ipv4Error::NotIpv4,
        Ipv4Error::BadHeaderLength,
        Ipv4Error::BadTotalLength,
        Ipv4Error::BadChecksum,
    ];

    /// A stable snake_case name, usable as a counter label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Ipv4Error::Truncated => "truncated",
            Ipv4Error::NotIpv4 => "not_ipv4",
            Ipv4Error::BadHeaderLength => "bad_header_length",
            Ipv4Error::BadTotalLength => "bad_total_length",
            Ipv4Error::BadChecksum => "bad_checksum",
        }
    }
}

/// A zero-copy view of an IPv4 header and what follows it.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version|  IHL  |   DSCP/ECN    |          Total Length         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |         Identification        |Flags|      Fragment Offset    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Time to Live |    Protocol   |         Header Checksum       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                       Source Address                          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Destination Address                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Options (IHL > 5)                          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
/// (RFC 791 §3.1)
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
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Ipv4Error> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the fixed header, the announced header length and the
    /// announced total length all fit in the buffer; afterwards no accessor
    /// panics. Also rejects non-IPv4 versions, since IHL means nothing then.
    pub fn check_len(&self) -> Result<(), Ipv4Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Ipv4Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Ipv4Error::NotIpv4);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(Ipv4Error::BadHeaderLength);
        }
        if len < header_len {
            return Err(Ipv4Error::Truncated);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len || total_len > len {
            return Err(Ipv4Error::BadTotalLength);
        }
        Ok(())
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (4 for IPv4).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// The header length in bytes (IHL * 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The DSCP/ECN byte (formerly Type of Service).
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// The total length of the datagram, header included.
    pub fn total_len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::TOTAL_LEN])
    }

    /// The identification field.
    pub fn ident(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::IDENT])
    }

    /// The flags and fragment offset, as one 16-bit word.
    pub fn flags_frag(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::FLAGS_FRAG])
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The payload's protocol number (112 for VRRP).
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// The header checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// The source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::SRC_ADDR.start)
    }

    /// The destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::DST_ADDR.start)
    }

    /// Whether the header checksum (over `header_len()` bytes) verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::verifies(checksum::data(&self.buffer.as_ref()[..self.header_len()]))
    }

    /// The payload: the bytes after the header up to the total length (any
    /// link-layer padding beyond it is excluded).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Sets version 4 and the header length in bytes (a multiple of 4).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.bytes_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }

    /// Sets the DSCP/ECN byte.
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.bytes_mut()[field::DSCP_ECN] = value;
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, value: u16) {
        self.bytes_mut()[field::TOTAL_LEN].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the identification field.
    pub fn set_ident(&mut self, value: u16) {
        self.bytes_mut()[field::IDENT].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the flags and fragment offset word.
    pub fn set_flags_frag(&mut self, value: u16) {
        self.bytes_mut()[field::FLAGS_FRAG].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the time to live.
    pub fn set_ttl(&mut self, value: u8) {
        self.bytes_mut()[field::TTL] = value;
    }

    /// Sets the protocol number.
    pub fn set_protocol(&mut self, value: u8) {
        self.bytes_mut()[field::PROTOCOL] = value;
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        self.bytes_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.bytes_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.bytes_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Computes and stores the header checksum over `header_len()` bytes.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let header_len = self.header_len();
        let sum = checksum::data(&self.buffer.as_ref()[..header_len]);
        self.set_checksum(checksum::finish(sum));
    }
}

/// The meaning of an IPv4 header, as far as VRRP cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Payload protocol number.
    pub protocol: u8,
    /// Time to live (VRRP requires 255: RFC 5798 §5.1.1.3, RFC 3768 §5.2.3).
    pub ttl: u8,
    /// DSCP/ECN byte (keepalived sends 0xc0, network control).
    pub dscp_ecn: u8,
    /// Payload length in bytes.
    pub payload_len: usize,
}

impl Ipv4Repr {
    /// Parses a received datagram into its header meaning and its payload.
    ///
    /// Checks, in order: fixed header present, version 4, IHL >= 5, header and
    /// total length fit, header checksum.
    pub fn parse(datagram: &[u8]) -> Result<(Ipv4Repr, &[u8]), Ipv4Error> {
        let packet = Packet::new_checked(datagram)?;
        if !packet.verify_checksum() {
            return Err(Ipv4Error::BadChecksum);
        }
        // Sliced from `datagram` (not `packet.payload()`) to keep its lifetime.
        let payload = &datagram[packet.header_len()..usize::from(packet.total_len())];
        let repr = Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            ttl: packet.ttl(),
            dscp_ecn: packet.dscp_ecn(),
            payload_len: payload.len(),
        };
        Ok((repr, payload))
    }

    /// The header length [`Ipv4Repr::emit`] writes (no options).
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes an option-less header (identification 0, Don't Fragment clear)
    /// into `buf[..HEADER_LEN]`, checksum included; the payload goes after it.
    ///
    /// # Panics
    /// If `buf` is shorter than [`HEADER_LEN`].
    pub fn emit(&self, buf: &mut [u8]) {
        let mut packet = Packet::new_unchecked(&mut buf[..HEADER_LEN]);
        packet.set_version_and_header_len(HEADER_LEN);
        packet.set_dscp_ecn(self.dscp_ecn);
        packet.set_total_len((HEADER_LEN + self.payload_len) as u16);
        packet.set_ident(0);
        packet.set_flags_frag(0);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

fn read_u16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

fn ipv4_at(bytes: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IPv4 header + VRRPv3 payload captured from keepalived 2.2.7 (vrid 52).
    const KEEPALIVED_V3: [u8; 36] = [
        0x45, 0xc0, 0x00, 0x24, 0x00, 0x01, 0x00, 0x00, 0xff, 0x70, 0xd0, 0x32, // ver..cksum
        0x0a, 0x63, 0x00, 0x01, // src 10.99.0.1
        0xe0, 0x00, 0x00, 0x12, // dst 224.0.0.18
        0x31, 0x34, 0xc8, 0x02, 0x00, 0x64, 0x05, 0xdd, 0x0a, 0x63, 0x00, 0x65, 0x0a, 0x63, 0x00,
        0x66,
    ];

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 99, 0, 1),
            dst_addr: Ipv4Addr::new(224, 0, 0, 18),
            protocol: 112,
            ttl: 255,
            dscp_ecn: 0xc0,
            payload_len: 16,
        }
    }

    #[test]
    fn parses_captured_keepalived_datagram() {
        let (parsed, payload) = Ipv4Repr::parse(&KEEPALIVED_V3).unwrap();
        assert_eq!(parsed, repr());
        assert_eq!(payload, &KEEPALIVED_V3[20..]);
    }

    #[test]
    fn emits_captured_header_except_ident() {
        let mut buf = [0u8; 20];
        repr().emit(&mut buf);
        // keepalived's identification was 1; ours is 0, so the checksum is one higher.
        let mut expected = KEEPALIVED_V3;
        expected[5] = 0x00;
        expected[10..12].copy_from_slice(&[0xd0, 0x33]);
        assert_eq!(buf, expected[..20]);
        assert!(Packet::new_unchecked(&buf[..]).verify_checksum());
    }

    #[test]
    fn honours_options_and_ignores_link_padding() {
        // IHL 6 with a 4-byte NOP/EOL option, then 2 payload bytes, then padding.
        let mut buf = [0u8; 30];
        buf[20] = 0x01; // NOP option
        buf[24] = 0xaa;
        buf[25] = 0xbb;
        buf[26] = 0xcc; // padding beyond total length
        let mut packet = Packet::new_unchecked(&mut buf[..]);
        packet.set_version_and_header_len(24);
        packet.set_total_len(26);
        packet.set_ttl(255);
        packet.set_protocol(112);
        packet.fill_checksum();
        let (parsed, payload) = Ipv4Repr::parse(&buf).unwrap();
        assert_eq!(payload, &[0xaa, 0xbb]);
        assert_eq!(parsed.payload_len, 2);
    }

    #[test]
    fn truncated_at_every_length_is_an_error() {
        for len in 0..KEEPALIVED_V3.len() {
            let err = Ipv4Repr::parse(&KEEPALIVED_V3[..len]).unwrap_err();
            let expected = if len < HEADER_LEN {
                Ipv4Error::Truncated
            } else {
                Ipv4Error::BadTotalLength
            };
            assert_eq!(err, expected, "len {len}");
        }
    }

    #[test]
    fn rejects_bad_fields() {
        let mut v6 = KEEPALIVED_V3;
        v6[0] = 0x65;
        assert_eq!(Ipv4Repr::parse(&v6).unwrap_err(), Ipv4Error::NotIpv4);

        let mut short_ihl = KEEPALIVED_V3;
        short_ihl[0] = 0x44;
        assert_eq!(
            Ipv4Repr::parse(&short_ihl).unwrap_err(),
            Ipv4Error::BadHeaderLength
        );

        let mut long_ihl = KEEPALIVED_V3;
        long_ihl[0] = 0x4f; // 60 bytes > 36 received
        assert_eq!(
            Ipv4Repr::parse(&long_ihl).unwrap_err(),
            Ipv4Error::Truncated
        );

        let mut total_below_header = KEEPALIVED_V3;
        total_below_header[3] = 19;
        assert_eq!(
            Ipv4Repr::parse(&total_below_header).unwrap_err(),
            Ipv4Error::BadTotalLength
        );

        let mut bad_sum = KEEPALIVED_V3;
        bad_sum[11] ^= 0x01;
        assert_eq!(
            Ipv4Repr::parse(&bad_sum).unwrap_err(),
            Ipv4Error::BadChecksum
        );
    }

    #[test]
    fn error_names_are_distinct() {
        let names: std::collections::HashSet<_> =
            Ipv4Error::ALL.iter().map(Ipv4Error::as_str).collect();
        assert_eq!(names.len(), Ipv4Error::ALL.len());
    }
}
