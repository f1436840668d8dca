//! The Ethernet II header (IEEE 802.3 §3.2.6 "Length/Type" used as a type, RFC 894) in
//! front of the frames haldir writes to and reads from `AF_PACKET` sockets: ARP
//! ([`super::arp`]) and IPv6 Neighbor Advertisements ([`super::ndisc`]). The preamble and
//! the frame check sequence are the NIC's business and never appear here.

/// Byte offsets of the Ethernet header fields.
pub mod field {
    use std::ops::{Range, RangeFrom};

    /// Destination MAC.
    pub const DESTINATION: Range<usize> = 0..6;
    /// Source MAC.
    pub const SOURCE: Range<usize> = 6..12;
    /// EtherType.
    pub const ETHERTYPE: Range<usize> = 12..14;
    /// What the header carries.
    pub const PAYLOAD: RangeFrom<usize> = 14..;
}

/// Length of the Ethernet header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;
/// The Ethernet minimum frame length without FCS (64 - 4); shorter frames are
/// zero-padded to it on the wire (a veth does not pad).
pub const MIN_FRAME_LEN: usize = 60;
/// The broadcast address.
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// An EtherType (IEEE 802 numbers, IANA "IEEE 802 Numbers").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EtherType {
    /// 0x0800.
    Ipv4,
    /// 0x0806 (RFC 826).
    Arp,
    /// 0x86dd (RFC 2464).
    Ipv6,
    /// Any other, kept raw.
    Other(u16),
}

impl From<u16> for EtherType {
    fn from(value: u16) -> Self {
        match value {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            0x86dd => EtherType::Ipv6,
            other => EtherType::Other(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(value: EtherType) -> Self {
        match value {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Other(other) => other,
        }
    }
}

/// Why bytes are not an Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EthernetError {
    /// Shorter than the 14-byte header.
    #[error("Ethernet frame truncated")]
    Truncated,
}

/// A zero-copy view of an Ethernet II frame.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                 Destination MAC (6 bytes) ...                 |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   ... Destination MAC         |   Source MAC (6 bytes) ...    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                     ... Source MAC                            |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |          EtherType            |   Payload ...                 |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking its length; accessors may panic.
    pub fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps a buffer of at least [`HEADER_LEN`] bytes.
    pub fn new_checked(buffer: T) -> Result<Frame<T>, EthernetError> {
        let frame = Frame::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the header is present; afterwards no accessor panics.
    pub fn check_len(&self) -> Result<(), EthernetError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(EthernetError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC.
    pub fn destination(&self) -> [u8; 6] {
        mac(&self.buffer.as_ref()[field::DESTINATION])
    }

    /// Source MAC.
    pub fn source(&self) -> [u8; 6] {
        mac(&self.buffer.as_ref()[field::SOURCE])
    }

    /// EtherType.
    pub fn ethertype(&self) -> EtherType {
        let bytes = &self.buffer.as_ref()[field::ETHERTYPE];
        EtherType::from(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    /// Everything after the header (any padding included).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination MAC.
    pub fn set_destination(&mut self, value: [u8; 6]) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&value);
    }

    /// Sets the source MAC.
    pub fn set_source(&mut self, value: [u8; 6]) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&value);
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, value: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&u16::from(value).to_be_bytes());
    }

    /// Everything after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// The meaning of an Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    /// Source MAC.
    pub source: [u8; 6],
    /// Destination MAC.
    pub destination: [u8; 6],
    /// What the payload is.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Reads the header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> EthernetRepr {
        EthernetRepr {
            source: frame.source(),
            destination: frame.destination(),
            ethertype: frame.ethertype(),
        }
    }

    /// The header's length ([`HEADER_LEN`]).
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into a frame of at least [`HEADER_LEN`] bytes; the payload is
    /// left alone.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        frame.set_destination(self.destination);
        frame.set_source(self.source);
        frame.set_ethertype(self.ethertype);
    }
}

fn mac(bytes: &[u8]) -> [u8; 6] {
    let mut mac = [0; 6];
    mac.copy_from_slice(bytes);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header of keepalived 2.2.7's gratuitous ARP, as captured on a veth, with the
    /// first bytes of its ARP body.
    const GARP_START: [u8; 20] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // destination: broadcast
        0x3a, 0x7b, 0xb1, 0xe4, 0xf7, 0xc9, // source
        0x08, 0x06, // ARP
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, // ARP body: Ethernet, IPv4, 6, 4
    ];

    /// The header of keepalived 2.2.7's unsolicited NA, as captured.
    const NA_HEADER: [u8; 14] = [
        0x33, 0x33, 0x00, 0x00, 0x00, 0x01, // destination: ff02::1's MAC
        0x3a, 0x7b, 0xb1, 0xe4, 0xf7, 0xc9, // source
        0x86, 0xdd, // IPv6
    ];

    #[test]
    fn parses_a_captured_arp_header_and_emits_it_back_identically() {
        let frame = Frame::new_checked(&GARP_START[..]).unwrap();
        let repr = EthernetRepr::parse(&frame);
        assert_eq!(
            repr,
            EthernetRepr {
                source: [0x3a, 0x7b, 0xb1, 0xe4, 0xf7, 0xc9],
                destination: BROADCAST,
                ethertype: EtherType::Arp,
            }
        );
        assert_eq!(frame.payload(), &GARP_START[HEADER_LEN..]);
        let mut buffer = GARP_START;
        buffer[..HEADER_LEN].fill(0xa5);
        let mut out = Frame::new_unchecked(&mut buffer[..]);
        repr.emit(&mut out);
        assert_eq!(buffer, GARP_START, "header rewritten, payload untouched");
    }

    #[test]
    fn parses_a_captured_ipv6_header_and_emits_it_back_identically() {
        let repr = EthernetRepr::parse(&Frame::new_checked(&NA_HEADER[..]).unwrap());
        assert_eq!(repr.ethertype, EtherType::Ipv6);
        assert_eq!(repr.destination, [0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(repr.buffer_len(), NA_HEADER.len());
        let mut buffer = [0u8; HEADER_LEN];
        repr.emit(&mut Frame::new_unchecked(&mut buffer[..]));
        assert_eq!(buffer, NA_HEADER);
    }

    #[test]
    fn an_unknown_ethertype_is_kept_raw() {
        let mut bytes = NA_HEADER;
        bytes[field::ETHERTYPE].copy_from_slice(&[0x88, 0xcc]); // LLDP
        let repr = EthernetRepr::parse(&Frame::new_checked(&bytes[..]).unwrap());
        assert_eq!(repr.ethertype, EtherType::Other(0x88cc));
        let mut buffer = [0u8; HEADER_LEN];
        repr.emit(&mut Frame::new_unchecked(&mut buffer[..]));
        assert_eq!(buffer, bytes);
    }

    #[test]
    fn shorter_than_the_header_is_truncated() {
        for length in 0..HEADER_LEN {
            assert_eq!(
                Frame::new_checked(&NA_HEADER[..length]).err(),
                Some(EthernetError::Truncated),
                "length {length}"
            );
        }
    }
}
