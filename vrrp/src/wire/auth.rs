//! The HMAC-SHA256 authentication trailer of VRRP adverts, as keepalived's
//! `auth_hmac` extension puts it on the wire (draft-cassen-vrrp-auth-hmac).
//!
//! Neither RFC 3768 nor RFC 5798 authenticates adverts: RFC 3768 §5.3.6 kept
//! only a clear-text password (and removed IPsec AH), RFC 5798 §9 removed
//! authentication altogether and relies on the TTL 255 check (§7.1), which
//! protects nothing once adverts are routed (unicast). keepalived's newest
//! sources add an opt-in trailer; haldir uses the same layout so that the two
//! authenticate each other. It was read for facts only (field layout, HMAC
//! input, checksum coverage, key sizes) and checked against the draft's
//! appendix vectors (the tests at the bottom). The design is sound: a keyed
//! HMAC-SHA256 truncated to 128 bits over the whole advert plus a
//! pseudo-header binding family, version, VRID and the IP source, and a
//! 64-bit time-based sequence number for replay protection.
//!
//! The trailer follows the VRRP message in the IP payload (after the
//! addresses; in v2 after the 8 bytes of Authentication Data):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Ext Type (1) |    Key ID     |          Reserved (0)         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |            Sequence: UTC seconds since 1970 (32 bits)         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Sequence: 1/65536 s fraction |   Sequence: counter           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! |        HMAC-SHA256, first 16 bytes (128 bits)                 |
//! |                                                               |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The HMAC (RFC 2104, SHA-256, key of 32..=64 bytes) is computed over:
//!
//! ```text
//!  20-byte pseudo-header: family (4 or 6), VRRP version, VRID, 0,
//!                         IP source address (4 or 16 bytes), zero-padded
//!  the VRRP message with its checksum field read as zero
//!  the first 12 trailer bytes (type, key id, reserved, sequence)
//!  16 zero bytes (the HMAC field itself)
//! ```
//!
//! The IP header is not covered (TTL handling and unicast rewrite stay out),
//! nor the destination: one signed advert goes to every unicast peer.
//!
//! Presence is told by length alone: the IP payload is exactly the length the
//! VRRP count implies plus [`TRAILER_LEN`]. A receiver that does not know the
//! extension (keepalived before it, haldir without `auth_hmac`, or any
//! RFC-following peer, which MUST check the length — RFC 5798 §7.1, RFC 3768
//! §7.1) drops such an advert as too long: it fails closed, predictably.
//!
//! The VRRP checksum keeps its RFC meaning per family, as keepalived sends it:
//! over IPv4 it covers the VRRP message only (v2: RFC 3768 §5.3.8; v3 with the
//! pseudo-header of RFC 5798 §5.2.8 whose length is the message's), not the
//! trailer; over IPv6 it is the transport checksum of the whole payload,
//! trailer included (what the kernel's `IPV6_CHECKSUM` writes, RFC 8200 §8.1).

use std::net::IpAddr;

use ring::hmac;

/// Length of the trailer.
pub const TRAILER_LEN: usize = 28;
/// Length of the truncated HMAC.
pub const HMAC_LEN: usize = 16;
/// The only scheme defined: HMAC-SHA256 truncated to 128 bits.
pub const EXT_TYPE_HMAC_SHA256: u8 = 1;
/// Length of the pseudo-header bound into the HMAC.
pub const PSEUDO_HEADER_LEN: usize = 20;
/// Shortest key accepted (keepalived's floor: a 128-bit margin).
pub const KEY_MIN_LEN: usize = 32;
/// Longest key accepted (one SHA-256 block).
pub const KEY_MAX_LEN: usize = 64;
/// Offset of the checksum in the VRRP message (both versions).
const VRRP_CHECKSUM: std::ops::Range<usize> = 6..8;

/// Byte offsets of the trailer fields.
pub mod field {
    use std::ops::Range;

    /// Extension type.
    pub const EXT_TYPE: usize = 0;
    /// Key id.
    pub const KEY_ID: usize = 1;
    /// Reserved, zero.
    pub const RESERVED: Range<usize> = 2..4;
    /// The 64-bit sequence number (seconds, fraction, counter).
    pub const SEQUENCE: Range<usize> = 4..12;
    /// The truncated HMAC.
    pub const HMAC: Range<usize> = 12..28;
}

/// Why a trailer is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TrailerError {
    /// Not exactly [`TRAILER_LEN`] bytes.
    #[error("authentication trailer is not {TRAILER_LEN} bytes")]
    BadLength,
    /// Extension type other than 1 (HMAC-SHA256/128).
    #[error("authentication trailer type is not HMAC-SHA256 (1)")]
    UnknownType,
    /// The reserved field is not zero.
    #[error("authentication trailer reserved field is not zero")]
    ReservedNotZero,
}

/// A zero-copy view of a trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps exactly [`TRAILER_LEN`] bytes.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, TrailerError> {
        if buffer.as_ref().len() != TRAILER_LEN {
            return Err(TrailerError::BadLength);
        }
        Ok(Packet { buffer })
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Extension type.
    pub fn ext_type(&self) -> u8 {
        self.bytes()[field::EXT_TYPE]
    }

    /// Key id.
    pub fn key_id(&self) -> u8 {
        self.bytes()[field::KEY_ID]
    }

    /// The reserved field.
    pub fn reserved(&self) -> u16 {
        let r = &self.bytes()[field::RESERVED];
        u16::from_be_bytes([r[0], r[1]])
    }

    /// The 64-bit sequence number.
    pub fn sequence(&self) -> u64 {
        let mut s = [0u8; 8];
        s.copy_from_slice(&self.bytes()[field::SEQUENCE]);
        u64::from_be_bytes(s)
    }

    /// The truncated HMAC.
    pub fn hmac(&self) -> [u8; HMAC_LEN] {
        let mut h = [0u8; HMAC_LEN];
        h.copy_from_slice(&self.bytes()[field::HMAC]);
        h
    }
}

/// The meaning of a trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrailerRepr {
    /// Which configured key signed it.
    pub key_id: u8,
    /// Sequence number: UTC seconds << 32 | 1/65536 s << 16 | counter.
    pub sequence: u64,
    /// The first 16 bytes of the HMAC-SHA256.
    pub hmac: [u8; HMAC_LEN],
}

impl TrailerRepr {
    /// Parses exactly [`TRAILER_LEN`] bytes; an unknown type or a non-zero
    /// reserved field is malformed (a receiver cannot know what it means).
    pub fn parse(bytes: &[u8]) -> Result<TrailerRepr, TrailerError> {
        let packet = Packet::new_checked(bytes)?;
        if packet.ext_type() != EXT_TYPE_HMAC_SHA256 {
            return Err(TrailerError::UnknownType);
        }
        if packet.reserved() != 0 {
            return Err(TrailerError::ReservedNotZero);
        }
        Ok(TrailerRepr {
            key_id: packet.key_id(),
            sequence: packet.sequence(),
            hmac: packet.hmac(),
        })
    }

    /// Writes the trailer into `buf[..TRAILER_LEN]`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`TRAILER_LEN`].
    pub fn emit(&self, buf: &mut [u8]) {
        let buf = &mut buf[..TRAILER_LEN];
        buf[field::EXT_TYPE] = EXT_TYPE_HMAC_SHA256;
        buf[field::KEY_ID] = self.key_id;
        buf[field::RESERVED].fill(0);
        buf[field::SEQUENCE].copy_from_slice(&self.sequence.to_be_bytes());
        buf[field::HMAC].copy_from_slice(&self.hmac);
    }
}

/// What the HMAC binds besides the message: family, version, VRID and the
/// IP source address.
pub fn pseudo_header(version: u8, vrid: u8, source: IpAddr) -> [u8; PSEUDO_HEADER_LEN] {
    let mut out = [0u8; PSEUDO_HEADER_LEN];
    out[1] = version;
    out[2] = vrid;
    match source {
        IpAddr::V4(v4) => {
            out[0] = 4;
            out[4..8].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out[0] = 6;
            out[4..20].copy_from_slice(&v6.octets());
        }
    }
    out
}

/// The truncated HMAC of `message` (the VRRP message, without trailer) sent
/// from `source` with a trailer of `key_id` and `sequence`. The version and
/// VRID bound into the pseudo-header are read from the message itself.
///
/// # Panics
/// If `message` is shorter than the 8-byte VRRP header.
pub fn compute(
    key: &hmac::Key,
    source: IpAddr,
    message: &[u8],
    key_id: u8,
    sequence: u64,
) -> [u8; HMAC_LEN] {
    let pseudo = pseudo_header(message[0] >> 4, message[1], source);
    let prefix = trailer_header(key_id, sequence);
    let mut context = hmac::Context::with_key(key);
    context.update(&pseudo);
    context.update(&message[..VRRP_CHECKSUM.start]);
    context.update(&[0, 0]);
    context.update(&message[VRRP_CHECKSUM.end..]);
    context.update(&prefix);
    context.update(&[0u8; HMAC_LEN]);
    truncated(&context.sign())
}

/// The first [`HMAC_LEN`] bytes of an HMAC-SHA256 tag, as the trailer carries them.
pub fn truncated(tag: &hmac::Tag) -> [u8; HMAC_LEN] {
    let mut out = [0u8; HMAC_LEN];
    out.copy_from_slice(&tag.as_ref()[..HMAC_LEN]);
    out
}

/// The trailer's first 12 bytes (type, key id, reserved, sequence), as the HMAC covers
/// them.
pub fn trailer_header(key_id: u8, sequence: u64) -> [u8; TRAILER_LEN - HMAC_LEN] {
    let mut header = [0u8; TRAILER_LEN - HMAC_LEN];
    header[field::EXT_TYPE] = EXT_TYPE_HMAC_SHA256;
    header[field::KEY_ID] = key_id;
    header[field::SEQUENCE].copy_from_slice(&sequence.to_be_bytes());
    header
}

/// Whether two HMACs are equal, in the same time wherever they differ.
pub fn tags_equal(a: &[u8; HMAC_LEN], b: &[u8; HMAC_LEN]) -> bool {
    let difference = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// Whether `trailer` carries the right HMAC for `message` from `source`
/// under `key`. The comparison takes the same time wherever they differ.
pub fn verifies(key: &hmac::Key, source: IpAddr, message: &[u8], trailer: &TrailerRepr) -> bool {
    if message.len() < VRRP_CHECKSUM.end {
        return false;
    }
    let expected = compute(key, source, message, trailer.key_id, trailer.sequence);
    tags_equal(&expected, &trailer.hmac)
}

/// A signing key for [`compute`].
pub fn key(bytes: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::vrrp::{AdvertRepr, DecodeError};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The key of the draft's appendix: bytes 0x00..=0x1f.
    fn appendix_key() -> hmac::Key {
        key(&(0u8..32).collect::<Vec<_>>())
    }

    /// draft-cassen-vrrp-auth-hmac appendix, IPv4: VRID 51, priority 200,
    /// 1 s, VIP 192.0.2.100, from 198.51.100.10, key id 1, sequence
    /// 0x6800000080000000 (checksum over the message only, no pseudo-header).
    const APPENDIX_V4: &str = concat!(
        "3133c80100644402c0000264",
        "010100006800000080000000",
        "1b84bc4e8e43892dc6d98448f8ee2265"
    );
    /// The same, IPv6: VIP fe80::100 from fe80::10 to fe80::20; the checksum
    /// is the transport checksum of the whole payload, trailer included.
    const APPENDIX_V6: &str = concat!(
        "3133c8010064a2e9",
        "fe800000000000000000000000000100",
        "010100006800000080000000",
        "c8c56146ebfd66ee10ec4d8186461b78"
    );

    fn src_v4() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10))
    }

    fn src_v6() -> IpAddr {
        IpAddr::V6("fe80::10".parse().unwrap())
    }

    #[test]
    fn trailer_parses_and_emits_identically() {
        let bytes = unhex(APPENDIX_V4);
        let trailer_bytes = &bytes[12..];
        let trailer = TrailerRepr::parse(trailer_bytes).unwrap();
        assert_eq!(trailer.key_id, 1);
        assert_eq!(trailer.sequence, 0x6800_0000_8000_0000);
        assert_eq!(trailer.hmac[0], 0x1b);
        let mut out = [0xa5u8; TRAILER_LEN];
        trailer.emit(&mut out);
        assert_eq!(&out[..], trailer_bytes);
    }

    #[test]
    fn appendix_ipv4_vector_verifies_and_recomputes() {
        let bytes = unhex(APPENDIX_V4);
        let (message, trailer) = bytes.split_at(12);
        let trailer = TrailerRepr::parse(trailer).unwrap();
        assert!(verifies(&appendix_key(), src_v4(), message, &trailer));
        assert_eq!(
            compute(&appendix_key(), src_v4(), message, 1, trailer.sequence),
            trailer.hmac
        );
    }

    #[test]
    fn appendix_ipv6_vector_verifies_and_parses_as_a_signed_advert() {
        let bytes = unhex(APPENDIX_V6);
        let dst = IpAddr::V6("fe80::20".parse().unwrap());
        let (advert, trailer) = AdvertRepr::parse_signed(&bytes, src_v6(), dst).unwrap();
        assert_eq!(advert.vrid, 51);
        assert_eq!(advert.priority, 200);
        assert_eq!(
            advert.addresses,
            vec![IpAddr::V6("fe80::100".parse::<Ipv6Addr>().unwrap())]
        );
        let trailer = trailer.expect("a trailer");
        let parsed = TrailerRepr::parse(&bytes[trailer]).unwrap();
        assert!(verifies(&appendix_key(), src_v6(), &bytes[..24], &parsed));
        // The unsigned parser still rejects it on length (fails closed).
        assert_eq!(
            AdvertRepr::parse(&bytes, src_v6(), dst),
            Err(DecodeError::LengthMismatch)
        );
    }

    #[test]
    fn every_covered_byte_changes_the_hmac_but_the_checksum_does_not() {
        let bytes = unhex(APPENDIX_V6);
        let key = appendix_key();
        for offset in 0..bytes.len() {
            let mut copy = bytes.clone();
            copy[offset] ^= 0x01;
            let (message, trailer) = copy.split_at(24);
            let verdict = match TrailerRepr::parse(trailer) {
                Ok(trailer) => verifies(&key, src_v6(), message, &trailer),
                // Type and reserved bytes: malformed, never verified.
                Err(_) => {
                    assert!(matches!(offset - 24, 0 | 2 | 3), "offset {offset}");
                    continue;
                }
            };
            // Only the checksum (offsets 6 and 7) is outside the HMAC.
            assert_eq!(verdict, (6..8).contains(&offset), "offset {offset}");
        }
    }

    #[test]
    fn source_and_vrid_are_bound() {
        let bytes = unhex(APPENDIX_V6);
        let (message, trailer) = bytes.split_at(24);
        let trailer = TrailerRepr::parse(trailer).unwrap();
        let other = IpAddr::V6("fe80::11".parse().unwrap());
        assert!(!verifies(&appendix_key(), other, message, &trailer));
        let wrong_key = key(&[0x42; 32]);
        assert!(!verifies(&wrong_key, src_v6(), message, &trailer));
    }

    #[test]
    fn malformed_trailers_are_rejected() {
        let good = unhex(APPENDIX_V4)[12..].to_vec();
        assert_eq!(
            TrailerRepr::parse(&good[..27]),
            Err(TrailerError::BadLength)
        );
        let mut bad_type = good.clone();
        bad_type[0] = 2;
        assert_eq!(
            TrailerRepr::parse(&bad_type),
            Err(TrailerError::UnknownType)
        );
        let mut reserved = good.clone();
        reserved[3] = 1;
        assert_eq!(
            TrailerRepr::parse(&reserved),
            Err(TrailerError::ReservedNotZero)
        );
    }

    #[test]
    fn v2_signed_advert_keeps_the_rfc3768_message_and_checksum() {
        use crate::wire::vrrp::{Auth, Version, VRRP_MULTICAST_V4};
        // RFC 3768 §5.1: vrid 51, priority 150, 1 address, auth 0, 1 s.
        let advert = AdvertRepr {
            version: Version::V2,
            vrid: 51,
            priority: 150,
            advert_interval_centis: 100,
            auth: Auth::None,
            addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100))],
        };
        let (src, dst) = (src_v4(), IpAddr::V4(VRRP_MULTICAST_V4));
        let mut plain = vec![0; 20];
        advert.emit(&mut plain, src, dst);
        let mut signed = vec![0; 20 + TRAILER_LEN];
        let sequence = 0x6800_0000_8000_0005;
        advert.emit_signed(&mut signed, src, dst, &appendix_key(), 7, sequence);
        // The VRRP message is unchanged, checksum included (IPv4: the
        // checksum does not cover the trailer).
        assert_eq!(&signed[..20], &plain[..]);
        assert_eq!(&signed[20..32], &[1, 7, 0, 0, 0x68, 0, 0, 0, 0x80, 0, 0, 5]);
        let (parsed, trailer) = AdvertRepr::parse_signed(&signed, src, dst).unwrap();
        assert_eq!(parsed, advert);
        assert_eq!(trailer, Some(20..48));
        let repr = TrailerRepr::parse(&signed[20..]).unwrap();
        assert_eq!((repr.key_id, repr.sequence), (7, sequence));
        assert!(verifies(&appendix_key(), src, &signed[..20], &repr));
    }

    #[test]
    fn ipv6_checksum_covers_the_trailer() {
        use crate::wire::vrrp::{Auth, Version, VRRP_MULTICAST_V6};
        let advert = AdvertRepr {
            version: Version::V3,
            vrid: 51,
            priority: 200,
            advert_interval_centis: 100,
            auth: Auth::None,
            addresses: vec![IpAddr::V6("fe80::100".parse().unwrap())],
        };
        let (src, dst) = (src_v6(), IpAddr::V6(VRRP_MULTICAST_V6));
        let mut signed = vec![0; 24 + TRAILER_LEN];
        advert.emit_signed(&mut signed, src, dst, &appendix_key(), 1, 42);
        assert!(AdvertRepr::parse_signed(&signed, src, dst).is_ok());
        // A flipped trailer bit is a checksum error over IPv6...
        let mut flipped = signed.clone();
        flipped[30] ^= 0x01;
        assert_eq!(
            AdvertRepr::parse_signed(&flipped, src, dst),
            Err(DecodeError::BadChecksum)
        );
        // ...while over IPv4 only the HMAC catches it.
        let v4 = AdvertRepr {
            addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100))],
            ..advert
        };
        let (src, dst) = (src_v4(), IpAddr::V4(crate::wire::vrrp::VRRP_MULTICAST_V4));
        let mut signed = vec![0; 12 + TRAILER_LEN];
        v4.emit_signed(&mut signed, src, dst, &appendix_key(), 1, 42);
        signed[18] ^= 0x01;
        let (_, trailer) = AdvertRepr::parse_signed(&signed, src, dst).unwrap();
        let repr = TrailerRepr::parse(&signed[trailer.unwrap()]).unwrap();
        assert!(!verifies(&appendix_key(), src, &signed[..12], &repr));
    }

    #[test]
    fn pseudo_header_layout() {
        let p = pseudo_header(3, 51, src_v4());
        assert_eq!(&p[..8], &[4, 3, 51, 0, 198, 51, 100, 10]);
        assert!(p[8..].iter().all(|&b| b == 0));
        let p = pseudo_header(3, 51, src_v6());
        assert_eq!(&p[..4], &[6, 3, 51, 0]);
        assert_eq!(&p[4..], &"fe80::10".parse::<Ipv6Addr>().unwrap().octets());
    }
}
