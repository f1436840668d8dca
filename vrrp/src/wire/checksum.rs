//! The Internet checksum (RFC 1071) and the IPv4/IPv6 pseudo-header sums that
//! VRRPv3 (RFC 5798 §5.2.8) and ICMPv6 (RFC 4443 §2.3) fold into it.
//!
//! All helpers return the *folded one's-complement sum* of their input (not yet
//! complemented), so partial sums over separate pieces can be combined with
//! [`combine`]. A checksum field is filled with `!sum`, and a received message
//! verifies when the sum over the message (checksum field included) plus the
//! pseudo-header is `0xffff` (RFC 1071 §1, step (3)).
//!
//! Pieces combined with [`combine`] must each start at an even offset of the
//! checksummed byte stream: [`data`] pads an odd trailing byte with a zero, as
//! RFC 1071 §4.1 does for the last piece.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Folds a wide one's-complement accumulator into 16 bits (RFC 1071 §2 (C)).
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The folded one's-complement sum of `bytes`, read as big-endian 16-bit words;
/// an odd trailing byte is padded with zero (RFC 1071 §4.1).
pub fn data(bytes: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut words = bytes.chunks_exact(2);
    for word in &mut words {
        sum += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(u16::from_be_bytes([*last, 0]));
    }
    fold(sum)
}

/// Combines folded partial sums into one folded sum (one's-complement addition
/// is associative and commutative, RFC 1071 §2 (A), (B)).
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// The sum of the IPv4 pseudo-header: source, destination, zero, protocol and
/// upper-layer length (RFC 768 / RFC 793 §3.1 layout, used by RFC 5798 §5.2.8).
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u16 {
    combine(&[
        data(&src.octets()),
        data(&dst.octets()),
        u16::from(protocol),
        length,
    ])
}

/// The sum of the IPv6 pseudo-header: source, destination, 32-bit upper-layer
/// length, three zero bytes and the next header (RFC 8200 §8.1).
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u16 {
    combine(&[
        data(&src.octets()),
        data(&dst.octets()),
        (length >> 16) as u16,
        length as u16,
        u16::from(next_header),
    ])
}

/// The pseudo-header sum for whichever family `src` and `dst` share.
///
/// Returns `None` when the families differ; no pseudo-header is defined then.
pub fn pseudo_header(src: IpAddr, dst: IpAddr, protocol: u8, length: usize) -> Option<u16> {
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            // A length above 65535 cannot be carried by IPv4; the sum then
            // simply will not match, which is the right outcome.
            Some(pseudo_header_v4(src, dst, protocol, length as u16))
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            Some(pseudo_header_v6(src, dst, protocol, length as u32))
        }
        _ => None,
    }
}

/// The value to store in a checksum field: the one's complement of `sum`.
pub fn finish(sum: u16) -> u16 {
    !sum
}

/// Whether a message whose folded sum (checksum field included, pseudo-header
/// added) is `sum` verifies.
pub fn verifies(sum: u16) -> bool {
    sum == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_worked_example_sums_to_ddf2() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        assert_eq!(
            data(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn odd_length_pads_last_byte_with_zero() {
        assert_eq!(data(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(data(&[]), 0);
    }

    #[test]
    fn combine_matches_sum_over_concatenation() {
        let a = [0xff, 0xff, 0x80, 0x01];
        let b = [0x80, 0x00, 0x12, 0x34, 0x56];
        let whole: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        assert_eq!(combine(&[data(&a), data(&b)]), data(&whole));
    }

    #[test]
    fn large_input_does_not_overflow() {
        let big = vec![0xffu8; 1 << 20];
        assert_eq!(data(&big), 0xffff);
    }

    #[test]
    fn ipv4_header_checksum_verifies() {
        // IPv4 header of a captured keepalived VRRPv3 advert (checksum d032).
        let header = [
            0x45, 0xc0, 0x00, 0x24, 0x00, 0x01, 0x00, 0x00, 0xff, 0x70, 0xd0, 0x32, 0x0a, 0x63,
            0x00, 0x01, 0xe0, 0x00, 0x00, 0x12,
        ];
        assert!(verifies(data(&header)));
        let mut zeroed = header;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(finish(data(&zeroed)), 0xd032);
    }

    #[test]
    fn pseudo_header_rejects_mixed_families() {
        let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(pseudo_header(v4, v6, 112, 8), None);
        assert!(pseudo_header(v4, v4, 112, 8).is_some());
        assert!(pseudo_header(v6, v6, 58, 8).is_some());
    }

    #[test]
    fn pseudo_header_v6_layout() {
        // Sum by hand: 2 * ::1 contributes 2, length 0x0001_0002 contributes 1 + 2,
        // next header 58.
        let sum = pseudo_header_v6(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, 58, 0x0001_0002);
        assert_eq!(sum, 2 + 1 + 2 + 58);
    }
}
