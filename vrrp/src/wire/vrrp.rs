//! VRRP advertisements: version 2 (RFC 3768 §5) and version 3 (RFC 5798 §5).
//!
//! This is the IP payload of protocol 112. [`Packet`] is a zero-copy view with
//! named offsets; [`AdvertRepr`] is the checked meaning the router works with.
//!
//! [`AdvertRepr::parse`] checks, in this order, so each rejection has one
//! meaningful counter name ([`DecodeError::as_str`]):
//!
//! 1. the 8-byte fixed header is present (`truncated`);
//! 2. version is 2 or 3 (`bad_version`);
//! 3. type is 1, ADVERTISEMENT (`bad_type`);
//! 4. the IP family fits the version: v2 is IPv4-only, v3 either, and source
//!    and destination agree (`bad_address_family`);
//! 5. the checksum verifies (`bad_checksum`);
//! 6. the length is exactly what the address count implies (`length_mismatch`);
//! 7. v2 authentication type is 0 or 1 (`unsupported_auth`).
//!
//! [`AdvertRepr::parse_signed`] also accepts a payload exactly
//! [`super::auth::TRAILER_LEN`] bytes longer than step 6 implies: an advert
//! with an authentication trailer (see [`super::auth`]); [`AdvertRepr::parse`]
//! rejects it as `length_mismatch`, as any receiver without the extension does.
//!
//! Step 6 is what keeps CARP (also protocol 112 to 224.0.0.18, first byte
//! 0x21) from being read as a VRRPv2 advert with priority 0: CARP's `authlen`
//! of 7 lands on the address count and implies 44 bytes, not CARP's 36.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::checksum;

/// IP protocol number of VRRP (RFC 5798 §5.1.1.4, RFC 3768 §5.2.4).
pub const VRRP_PROTOCOL: u8 = 112;
/// IPv4 multicast group for adverts (RFC 5798 §5.1.1.2, RFC 3768 §5.2.2).
pub const VRRP_MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 multicast group for adverts (RFC 5798 §5.1.2.2).
pub const VRRP_MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// TTL / hop limit adverts are sent with and must arrive with
/// (RFC 5798 §5.1.1.3, §5.1.2.3; RFC 3768 §5.2.3).
pub const VRRP_TTL: u8 = 255;
/// The only VRRP message type (RFC 5798 §5.2.2, RFC 3768 §5.3.2).
pub const TYPE_ADVERTISEMENT: u8 = 1;

/// Byte offsets of the VRRP header fields.
pub mod field {
    use std::ops::Range;

    /// Version (high nibble) and type (low nibble).
    pub const VER_TYPE: usize = 0;
    /// Virtual Router Identifier.
    pub const VRID: usize = 1;
    /// Priority.
    pub const PRIORITY: usize = 2;
    /// Count of IPv4/IPv6 addresses.
    pub const COUNT: usize = 3;
    /// v2: Authentication Type.
    pub const AUTH_TYPE: usize = 4;
    /// v2: Advertisement Interval in seconds.
    pub const ADVER_INT: usize = 5;
    /// v3: 4 reserved bits then 12 bits of Max Advertise Interval (centiseconds).
    pub const MAX_ADVER_INT: Range<usize> = 4..6;
    /// Checksum.
    pub const CHECKSUM: Range<usize> = 6..8;
    /// First address.
    pub const ADDRESSES: usize = 8;
}

/// Length of the fixed VRRP header (both versions).
pub const HEADER_LEN: usize = field::ADDRESSES;
/// Length of the v2 Authentication Data trailer (RFC 3768 §5.3.10).
pub const AUTH_DATA_LEN: usize = 8;
/// The largest v3 Max Advertise Interval: 12 bits (RFC 5798 §5.2.7).
pub const MAX_ADVER_INT_V3: u16 = 0x0fff;

/// v2 authentication types (RFC 3768 §5.3.6).
mod auth_type {
    pub const NONE: u8 = 0;
    pub const SIMPLE: u8 = 1;
}

/// VRRP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// RFC 3768, IPv4 only, whole-second intervals, optional simple-text auth.
    V2,
    /// RFC 5798, IPv4 or IPv6, centisecond intervals, no auth.
    V3,
}

impl Version {
    /// The number carried in the version nibble.
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

/// v2 authentication (RFC 3768 §5.3.6). Always [`Auth::None`] for v3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// Type 0. Authentication Data is sent as zero and ignored on receipt
    /// (RFC 3768 §5.3.6.1).
    None,
    /// Type 1, simple text password: up to 8 bytes, zero-padded
    /// (RFC 3768 §5.3.6.2, §5.3.10).
    Simple([u8; 8]),
}

/// The meaning of a VRRP advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertRepr {
    /// Protocol version.
    pub version: Version,
    /// Virtual Router Identifier.
    pub vrid: u8,
    /// Priority: 255 for the address owner, 0 when the master steps down.
    pub priority: u8,
    /// Advertisement interval in centiseconds. v2 carries whole seconds in 8
    /// bits (parse multiplies by 100; emit divides by 100, truncating, and
    /// saturates at 255 s); v3 carries 12 bits of centiseconds
    /// (RFC 5798 §5.2.7; emit saturates at 4095).
    pub advert_interval_centis: u16,
    /// v2 authentication; always [`Auth::None`] for v3.
    pub auth: Auth,
    /// The virtual addresses: all IPv4 or all IPv6 according to the packet's
    /// family. At most 255 (the count is 8 bits).
    pub addresses: Vec<IpAddr>,
}

/// Why a VRRP message was rejected. Checked in declaration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the 8-byte fixed header.
    #[error("VRRP message shorter than its 8-byte header")]
    Truncated,
    /// Version nibble is neither 2 nor 3.
    #[error("VRRP version is neither 2 nor 3")]
    BadVersion,
    /// Type nibble is not 1 (ADVERTISEMENT).
    #[error("VRRP type is not ADVERTISEMENT (1)")]
    BadType,
    /// v2 over IPv6, or source and destination of different families.
    #[error("VRRP version does not fit the IP family (v2 is IPv4-only)")]
    BadAddressFamily,
    /// Checksum does not verify.
    #[error("VRRP checksum mismatch")]
    BadChecksum,
    /// Length differs from header + count * address length (+ 8 auth bytes in v2).
    #[error("VRRP length does not match its address count")]
    LengthMismatch,
    /// v2 authentication type other than 0 (none) or 1 (simple text);
    /// type 2 (IP Authentication Header) is not supported.
    #[error("VRRP authentication type not supported")]
    UnsupportedAuth,
}

impl DecodeError {
    /// Every variant, in check order, e.g. to pre-register counters.
    pub const ALL: [DecodeError; 7] = [
        DecodeError::Truncated,
        DecodeError::BadVersion,
        DecodeError::BadType,
        DecodeError::BadAddressFamily,
        DecodeError::BadChecksum,
        DecodeError::LengthMismatch,
        DecodeError::UnsupportedAuth,
    ];

    /// A stable snake_case name, usable as a counter label.
    pub fn as_str(&self) -> &'static str {
        match self {
            DecodeError::Truncated => "truncated",
            DecodeError::BadVersion => "bad_version",
            DecodeError::BadType => "bad_type",
            DecodeError::BadAddressFamily => "bad_address_family",
            DecodeError::BadChecksum => "bad_checksum",
            DecodeError::LengthMismatch => "length_mismatch",
            DecodeError::UnsupportedAuth => "unsupported_auth",
        }
    }
}

/// A zero-copy view of a VRRP message.
///
/// Version 2 (RFC 3768 §5.1):
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version| Type  | Virtual Rtr ID|   Priority    | Count IP Addrs|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   Auth Type   |   Adver Int   |          Checksum             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         IP Address (1)                        |
/// |                            . . .                              |
/// |                         IP Address (n)                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                     Authentication Data (1)                   |
/// |                     Authentication Data (2)                   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// Version 3 (RFC 5798 §5.1), addresses are 4 or 16 bytes by IP family:
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |(rsvd) |     Max Adver Int     |          Checksum             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                       IPvX Address(es)                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// After [`Packet::new_checked`] the fixed-header accessors never panic; the
/// variable part (addresses, auth data) is read through `Option`-returning
/// accessors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length; accessors may panic.
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer holding at least the fixed header.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, DecodeError> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the fixed header is present.
    pub fn check_len(&self) -> Result<(), DecodeError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(DecodeError::Truncated)
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

    /// The version nibble.
    pub fn version(&self) -> u8 {
        self.bytes()[field::VER_TYPE] >> 4
    }

    /// The type nibble.
    pub fn msg_type(&self) -> u8 {
        self.bytes()[field::VER_TYPE] & 0x0f
    }

    /// The Virtual Router Identifier.
    pub fn vrid(&self) -> u8 {
        self.bytes()[field::VRID]
    }

    /// The priority.
    pub fn priority(&self) -> u8 {
        self.bytes()[field::PRIORITY]
    }

    /// The address count.
    pub fn count(&self) -> u8 {
        self.bytes()[field::COUNT]
    }

    /// v2 Authentication Type.
    pub fn auth_type(&self) -> u8 {
        self.bytes()[field::AUTH_TYPE]
    }

    /// v2 Advertisement Interval, seconds.
    pub fn adver_int(&self) -> u8 {
        self.bytes()[field::ADVER_INT]
    }

    /// v3 Max Advertise Interval, centiseconds; the reserved bits are masked
    /// off (RFC 5798 §5.2.6: ignored on reception).
    pub fn max_adver_int(&self) -> u16 {
        read_u16(&self.bytes()[field::MAX_ADVER_INT]) & MAX_ADVER_INT_V3
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(&self.bytes()[field::CHECKSUM])
    }

    /// The length the header's version and count imply for addresses of
    /// `addr_len` bytes (4 or 16), v2 auth data included.
    pub fn expected_len(&self, addr_len: usize) -> usize {
        let auth = if self.version() == 2 {
            AUTH_DATA_LEN
        } else {
            0
        };
        HEADER_LEN + usize::from(self.count()) * addr_len + auth
    }

    /// The `index`th address read as IPv4, if it lies within the buffer.
    pub fn address_v4(&self, index: usize) -> Option<Ipv4Addr> {
        let start = index.checked_mul(4)?.checked_add(HEADER_LEN)?;
        let octets: [u8; 4] = self
            .bytes()
            .get(start..start.checked_add(4)?)?
            .try_into()
            .ok()?;
        Some(Ipv4Addr::from(octets))
    }

    /// The `index`th address read as IPv6, if it lies within the buffer.
    pub fn address_v6(&self, index: usize) -> Option<Ipv6Addr> {
        let start = index.checked_mul(16)?.checked_add(HEADER_LEN)?;
        let octets: [u8; 16] = self
            .bytes()
            .get(start..start.checked_add(16)?)?
            .try_into()
            .ok()?;
        Some(Ipv6Addr::from(octets))
    }

    /// v2 Authentication Data: the 8 bytes after `count()` IPv4 addresses, if
    /// within the buffer.
    pub fn auth_data(&self) -> Option<[u8; 8]> {
        let start = HEADER_LEN + usize::from(self.count()) * 4;
        self.bytes()
            .get(start..start + AUTH_DATA_LEN)?
            .try_into()
            .ok()
    }

    /// Whether the checksum verifies for a message carried between `src` and
    /// `dst`: v2 over the message alone (RFC 3768 §5.3.8), v3 with the IP
    /// pseudo-header (RFC 5798 §5.2.8). False if the families differ.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        message_sum(self.version(), self.bytes(), src, dst).is_some_and(checksum::verifies)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Sets the version and type nibbles.
    pub fn set_version_type(&mut self, version: u8, msg_type: u8) {
        self.bytes_mut()[field::VER_TYPE] = (version << 4) | (msg_type & 0x0f);
    }

    /// Sets the Virtual Router Identifier.
    pub fn set_vrid(&mut self, value: u8) {
        self.bytes_mut()[field::VRID] = value;
    }

    /// Sets the priority.
    pub fn set_priority(&mut self, value: u8) {
        self.bytes_mut()[field::PRIORITY] = value;
    }

    /// Sets the address count.
    pub fn set_count(&mut self, value: u8) {
        self.bytes_mut()[field::COUNT] = value;
    }

    /// Sets the v2 Authentication Type.
    pub fn set_auth_type(&mut self, value: u8) {
        self.bytes_mut()[field::AUTH_TYPE] = value;
    }

    /// Sets the v2 Advertisement Interval (seconds).
    pub fn set_adver_int(&mut self, value: u8) {
        self.bytes_mut()[field::ADVER_INT] = value;
    }

    /// Sets the v3 Max Advertise Interval (centiseconds, 12 bits) with the
    /// reserved bits zero (RFC 5798 §5.2.6).
    pub fn set_max_adver_int(&mut self, value: u16) {
        let value = value & MAX_ADVER_INT_V3;
        self.bytes_mut()[field::MAX_ADVER_INT].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        self.bytes_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    /// Computes and stores the checksum over the whole buffer (see
    /// [`Packet::verify_checksum`]). Source and destination of different
    /// families are a caller bug; the IPv4 one is then taken as IPv4-mapped.
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        self.set_checksum(0);
        let (src, dst) = match (src, dst) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => (src, dst),
            _ => {
                debug_assert!(false, "VRRP emit with mixed families {src} -> {dst}");
                (as_v6(src), as_v6(dst))
            }
        };
        let sum = message_sum(self.version(), self.bytes(), src, dst).unwrap_or(0);
        self.set_checksum(checksum::finish(sum));
    }
}

/// The folded sum a v2/v3 message checksum is computed over.
fn message_sum(version: u8, message: &[u8], src: IpAddr, dst: IpAddr) -> Option<u16> {
    let body = checksum::data(message);
    if version == 2 {
        // RFC 3768 §5.3.8: "the 16-bit one's complement of the one's complement
        // sum of the entire VRRP message" -- no pseudo-header.
        return Some(body);
    }
    // RFC 5798 §5.2.8: computed over the VRRP message plus the IPv4/IPv6
    // pseudo-header, protocol 112.
    let pseudo = checksum::pseudo_header(src, dst, VRRP_PROTOCOL, message.len())?;
    Some(checksum::combine(&[pseudo, body]))
}

fn as_v6(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
        v6 => v6,
    }
}

impl AdvertRepr {
    /// Parses a VRRP message (the IP payload). `src`/`dst` are the IP header's
    /// addresses (needed for the v3 pseudo-header checksum and to know the
    /// address family). Checks in the order listed in the module docs.
    ///
    /// A count of 0 is accepted here although RFC 5798 §5.2.5 sets a minimum
    /// of 1; comparing the addresses with the configuration is the router's
    /// business (RFC 3768 §7.1, RFC 5798 §7.1).
    pub fn parse(payload: &[u8], src: IpAddr, dst: IpAddr) -> Result<AdvertRepr, DecodeError> {
        match AdvertRepr::parse_signed(payload, src, dst)? {
            (advert, None) => Ok(advert),
            // A trailer is a length mismatch to a receiver that does not
            // expect one (RFC 5798 §7.1: the length MUST be checked).
            (_, Some(_)) => Err(DecodeError::LengthMismatch),
        }
    }

    /// [`AdvertRepr::parse`], also accepting an advert followed by an
    /// authentication trailer ([`super::auth`]): a payload exactly
    /// [`super::auth::TRAILER_LEN`] bytes longer than the count implies.
    /// Returns where the trailer lies in `payload`; the message is
    /// `payload[..trailer.start]`. Over IPv4 the checksum covers the message
    /// only; over IPv6 the whole payload (see [`super::auth`]).
    pub fn parse_signed(
        payload: &[u8],
        src: IpAddr,
        dst: IpAddr,
    ) -> Result<(AdvertRepr, Option<std::ops::Range<usize>>), DecodeError> {
        let packet = Packet::new_checked(payload)?;

        let version = match packet.version() {
            2 => Version::V2,
            3 => Version::V3,
            _ => return Err(DecodeError::BadVersion),
        };

        // RFC 5798 §5.2.2 / RFC 3768 §5.3.2: type 1 is the only one; others
        // MUST be discarded.
        if packet.msg_type() != TYPE_ADVERTISEMENT {
            return Err(DecodeError::BadType);
        }

        let ipv6 = match (version, src, dst) {
            (_, IpAddr::V4(_), IpAddr::V4(_)) => false,
            (Version::V3, IpAddr::V6(_), IpAddr::V6(_)) => true,
            // RFC 3768 defines VRRPv2 for IPv4 only.
            _ => return Err(DecodeError::BadAddressFamily),
        };

        let addr_len = if ipv6 { 16 } else { 4 };
        let expected_len = packet.expected_len(addr_len);
        let signed = payload.len() == expected_len + super::auth::TRAILER_LEN;
        let message = if signed {
            &payload[..expected_len]
        } else {
            payload
        };

        // RFC 5798 §7.1 / RFC 3768 §7.1: MUST verify the checksum.
        let covered = if signed && !ipv6 { message } else { payload };
        if !Packet::new_unchecked(covered).verify_checksum(src, dst) {
            return Err(DecodeError::BadChecksum);
        }

        // Exact length, as keepalived does: no trailing bytes, no short packet.
        if message.len() != expected_len {
            return Err(DecodeError::LengthMismatch);
        }
        let packet = Packet::new_unchecked(message);

        let (advert_interval_centis, auth) = match version {
            Version::V2 => {
                let auth = match packet.auth_type() {
                    // RFC 3768 §5.3.6.1: auth data ignored on reception.
                    auth_type::NONE => Auth::None,
                    auth_type::SIMPLE => {
                        Auth::Simple(packet.auth_data().ok_or(DecodeError::LengthMismatch)?)
                    }
                    // Type 2 (IP Authentication Header) was removed from VRRP
                    // (RFC 3768 §5.3.6.3 history, RFC 5798 §9); others undefined.
                    _ => return Err(DecodeError::UnsupportedAuth),
                };
                // RFC 3768 §5.3.7: Adver Int is in seconds.
                (u16::from(packet.adver_int()) * 100, auth)
            }
            // RFC 5798 §5.2.7: Max Adver Int is in centiseconds.
            Version::V3 => (packet.max_adver_int(), Auth::None),
        };

        let count = usize::from(packet.count());
        let addresses = (0..count)
            .map(|index| {
                if ipv6 {
                    packet.address_v6(index).map(IpAddr::V6)
                } else {
                    packet.address_v4(index).map(IpAddr::V4)
                }
            })
            .collect::<Option<Vec<_>>>()
            .ok_or(DecodeError::LengthMismatch)?;

        let advert = AdvertRepr {
            version,
            vrid: packet.vrid(),
            priority: packet.priority(),
            advert_interval_centis,
            auth,
            addresses,
        };
        Ok((advert, signed.then_some(expected_len..payload.len())))
    }

    /// The length [`AdvertRepr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        let addresses: usize = self
            .addresses
            .iter()
            .map(|addr| match addr {
                IpAddr::V4(_) => 4,
                IpAddr::V6(_) => 16,
            })
            .sum();
        let auth = match self.version {
            Version::V2 => AUTH_DATA_LEN,
            Version::V3 => 0,
        };
        HEADER_LEN + addresses + auth
    }

    /// Emits into `buf[..buffer_len()]`, computing the checksum (v2: over the
    /// VRRP message only, RFC 3768 §5.3.8; v3: with the pseudo-header,
    /// RFC 5798 §5.2.8). `src`/`dst` are the IP addresses it will be sent
    /// between; the addresses must all be of their family.
    ///
    /// # Panics
    /// If `buf` is shorter than [`AdvertRepr::buffer_len`].
    pub fn emit(&self, buf: &mut [u8], src: IpAddr, dst: IpAddr) {
        let len = self.buffer_len();
        let mut packet = Packet::new_unchecked(&mut buf[..len]);
        packet.set_version_type(self.version.number(), TYPE_ADVERTISEMENT);
        packet.set_vrid(self.vrid);
        packet.set_priority(self.priority);
        debug_assert!(self.addresses.len() <= 255, "VRRP count is 8 bits");
        packet.set_count(self.addresses.len().min(255) as u8);
        match self.version {
            Version::V2 => {
                packet.set_auth_type(match self.auth {
                    Auth::None => auth_type::NONE,
                    Auth::Simple(_) => auth_type::SIMPLE,
                });
                packet.set_adver_int((self.advert_interval_centis / 100).min(255) as u8);
            }
            Version::V3 => {
                packet.set_max_adver_int(self.advert_interval_centis.min(MAX_ADVER_INT_V3));
            }
        }

        let bytes = packet.bytes_mut();
        let mut at = HEADER_LEN;
        for addr in &self.addresses {
            match addr {
                IpAddr::V4(v4) => {
                    bytes[at..at + 4].copy_from_slice(&v4.octets());
                    at += 4;
                }
                IpAddr::V6(v6) => {
                    bytes[at..at + 16].copy_from_slice(&v6.octets());
                    at += 16;
                }
            }
        }
        if self.version == Version::V2 {
            // RFC 3768 §5.3.10: zero for type 0; the zero-padded key for type 1.
            let data = match &self.auth {
                Auth::None => [0; AUTH_DATA_LEN],
                Auth::Simple(key) => *key,
            };
            bytes[at..at + AUTH_DATA_LEN].copy_from_slice(&data);
        }

        packet.fill_checksum(src, dst);
    }

    /// Emits the advert followed by an authentication trailer of `key_id` and
    /// `sequence`, signed with `key` ([`super::auth`]), into
    /// `buf[..buffer_len() + TRAILER_LEN]`. The checksum covers the message
    /// over IPv4 and the whole payload over IPv6.
    ///
    /// # Panics
    /// If `buf` is shorter than that.
    pub fn emit_signed(
        &self,
        buf: &mut [u8],
        src: IpAddr,
        dst: IpAddr,
        key: &ring::hmac::Key,
        key_id: u8,
        sequence: u64,
    ) {
        let len = self.buffer_len();
        let total = len + super::auth::TRAILER_LEN;
        self.emit(&mut buf[..len], src, dst);
        let hmac = super::auth::compute(key, src, &buf[..len], key_id, sequence);
        super::auth::TrailerRepr {
            key_id,
            sequence,
            hmac,
        }
        .emit(&mut buf[len..total]);
        if src.is_ipv6() {
            // The IPv6 transport checksum covers the trailer too.
            Packet::new_unchecked(&mut buf[..total]).fill_checksum(src, dst);
        }
    }
}

fn read_u16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- vectors captured from keepalived 2.2.7 on a veth in a private netns ----

    /// VRRPv2, vrid 51, priority 150, auth PASS "secret", 1 s, 10.99.0.100,
    /// from 10.99.0.1 to 224.0.0.18.
    const V2_PASS: [u8; 20] = [
        0x21, // version 2, type 1
        0x33, // vrid 51
        0x96, // priority 150
        0x01, // count 1
        0x01, // auth type 1 (simple text)
        0x01, // adver int 1 s
        0x00, 0xb7, // checksum
        0x0a, 0x63, 0x00, 0x64, // 10.99.0.100
        b's', b'e', b'c', b'r', b'e', b't', 0x00, 0x00, // auth data
    ];

    /// VRRPv3 over IPv4, vrid 52, priority 200, 100 cs, 10.99.0.101 and .102,
    /// from 10.99.0.1 to 224.0.0.18.
    const V3_IPV4: [u8; 16] = [
        0x31, // version 3, type 1
        0x34, // vrid 52
        0xc8, // priority 200
        0x02, // count 2
        0x00, 0x64, // rsvd 0, max adver int 100 cs
        0x05, 0xdd, // checksum (with IPv4 pseudo-header)
        0x0a, 0x63, 0x00, 0x65, // 10.99.0.101
        0x0a, 0x63, 0x00, 0x66, // 10.99.0.102
    ];

    /// The same instance's priority-0 advert sent while shutting down.
    const V3_IPV4_PRIORITY_0: [u8; 16] = [
        0x31, 0x34, 0x00, 0x02, 0x00, 0x64, 0xcd, 0xdd, 0x0a, 0x63, 0x00, 0x65, 0x0a, 0x63, 0x00,
        0x66,
    ];

    /// VRRPv3 over IPv6, vrid 53, priority 100, 50 cs, fd00:99::100 and
    /// fd00:99::101, from fe80::387b:b1ff:fee4:f7c9 to ff02::12.
    const V3_IPV6: [u8; 40] = [
        0x31, // version 3, type 1
        0x35, // vrid 53
        0x64, // priority 100
        0x02, // count 2
        0x00, 0x32, // rsvd 0, max adver int 50 cs
        0x8e, 0x09, // checksum (with IPv6 pseudo-header)
        0xfd, 0x00, 0x00, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, // fd00:99::100
        0xfd, 0x00, 0x00, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x01, // fd00:99::101
    ];

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn src_v4() -> IpAddr {
        v4(10, 99, 0, 1)
    }

    fn dst_v4() -> IpAddr {
        IpAddr::V4(VRRP_MULTICAST_V4)
    }

    fn src_v6() -> IpAddr {
        IpAddr::V6("fe80::387b:b1ff:fee4:f7c9".parse().unwrap())
    }

    fn dst_v6() -> IpAddr {
        IpAddr::V6(VRRP_MULTICAST_V6)
    }

    // ---- an independent reference checksum (not using `checksum`) ----

    /// Textbook RFC 1071: add 16-bit words with end-around carry, complement.
    fn reference_checksum(bytes: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut i = 0;
        while i < bytes.len() {
            let hi = u32::from(bytes[i]) << 8;
            let lo = u32::from(*bytes.get(i + 1).unwrap_or(&0));
            sum += hi | lo;
            if sum > 0xffff {
                sum = (sum & 0xffff) + 1;
            }
            i += 2;
        }
        !(sum as u16)
    }

    /// The RFC 5798 §5.2.8 pseudo-header as bytes, followed by the message.
    fn with_pseudo_header(message: &[u8], src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let mut bytes = Vec::new();
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                bytes.extend_from_slice(&s.octets());
                bytes.extend_from_slice(&d.octets());
                bytes.extend_from_slice(&[0, 112]);
                bytes.extend_from_slice(&(message.len() as u16).to_be_bytes());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                bytes.extend_from_slice(&s.octets());
                bytes.extend_from_slice(&d.octets());
                bytes.extend_from_slice(&(message.len() as u32).to_be_bytes());
                bytes.extend_from_slice(&[0, 0, 0, 112]);
            }
            _ => unreachable!(),
        }
        bytes.extend_from_slice(message);
        bytes
    }

    /// Recomputes bytes 6..8 with the reference sum, v2 or v3 by the first byte.
    fn refill_checksum(message: &mut [u8], src: IpAddr, dst: IpAddr) {
        message[6] = 0;
        message[7] = 0;
        let sum = if message[0] >> 4 == 3 {
            reference_checksum(&with_pseudo_header(message, src, dst))
        } else {
            reference_checksum(message)
        };
        message[6..8].copy_from_slice(&sum.to_be_bytes());
    }

    fn v2_pass_repr() -> AdvertRepr {
        AdvertRepr {
            version: Version::V2,
            vrid: 51,
            priority: 150,
            advert_interval_centis: 100,
            auth: Auth::Simple(*b"secret\0\0"),
            addresses: vec![v4(10, 99, 0, 100)],
        }
    }

    fn v3_ipv4_repr() -> AdvertRepr {
        AdvertRepr {
            version: Version::V3,
            vrid: 52,
            priority: 200,
            advert_interval_centis: 100,
            auth: Auth::None,
            addresses: vec![v4(10, 99, 0, 101), v4(10, 99, 0, 102)],
        }
    }

    fn v3_ipv6_repr() -> AdvertRepr {
        AdvertRepr {
            version: Version::V3,
            vrid: 53,
            priority: 100,
            advert_interval_centis: 50,
            auth: Auth::None,
            addresses: vec![
                IpAddr::V6("fd00:99::100".parse().unwrap()),
                IpAddr::V6("fd00:99::101".parse().unwrap()),
            ],
        }
    }

    fn emit_vec(repr: &AdvertRepr, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let mut buf = vec![0xa5; repr.buffer_len()];
        repr.emit(&mut buf, src, dst);
        buf
    }

    // ---- the captured checksums agree with the reference and the RFC rules ----

    #[test]
    fn captured_checksums_match_reference_sum() {
        let mut v2 = V2_PASS;
        refill_checksum(&mut v2, src_v4(), dst_v4());
        assert_eq!(v2, V2_PASS);
        let mut v3 = V3_IPV4;
        refill_checksum(&mut v3, src_v4(), dst_v4());
        assert_eq!(v3, V3_IPV4);
        let mut v6 = V3_IPV6;
        refill_checksum(&mut v6, src_v6(), dst_v6());
        assert_eq!(v6, V3_IPV6);
    }

    // ---- parse and emit, both ways ----

    #[test]
    fn v2_with_simple_auth_parses_and_emits_identically() {
        let repr = AdvertRepr::parse(&V2_PASS, src_v4(), dst_v4()).unwrap();
        assert_eq!(repr, v2_pass_repr());
        assert_eq!(repr.buffer_len(), V2_PASS.len());
        assert_eq!(emit_vec(&repr, src_v4(), dst_v4()), V2_PASS);
    }

    #[test]
    fn v3_ipv4_parses_and_emits_identically() {
        let repr = AdvertRepr::parse(&V3_IPV4, src_v4(), dst_v4()).unwrap();
        assert_eq!(repr, v3_ipv4_repr());
        assert_eq!(emit_vec(&repr, src_v4(), dst_v4()), V3_IPV4);
    }

    #[test]
    fn v3_priority_zero_parses_and_emits_identically() {
        let repr = AdvertRepr::parse(&V3_IPV4_PRIORITY_0, src_v4(), dst_v4()).unwrap();
        assert_eq!(repr.priority, 0);
        assert_eq!(
            emit_vec(&repr, src_v4(), dst_v4()),
            V3_IPV4_PRIORITY_0.to_vec()
        );
    }

    #[test]
    fn v3_ipv6_with_two_addresses_parses_and_emits_identically() {
        let repr = AdvertRepr::parse(&V3_IPV6, src_v6(), dst_v6()).unwrap();
        assert_eq!(repr, v3_ipv6_repr());
        assert_eq!(emit_vec(&repr, src_v6(), dst_v6()), V3_IPV6.to_vec());
    }

    #[test]
    fn v2_without_auth_matches_hand_built_rfc3768_layout() {
        // Hand-assembled from RFC 3768 §5.1: vrid 1, priority 255 (owner),
        // 2 addresses, auth 0, 3 s; checksum from the reference sum.
        let mut expected = [
            0x21, 0x01, 0xff, 0x02, 0x00, 0x03, 0x00, 0x00, 192, 0, 2, 1, 192, 0, 2, 2, 0, 0, 0, 0,
            0, 0, 0, 0,
        ];
        refill_checksum(&mut expected, src_v4(), dst_v4());
        let repr = AdvertRepr {
            version: Version::V2,
            vrid: 1,
            priority: 255,
            advert_interval_centis: 300,
            auth: Auth::None,
            addresses: vec![v4(192, 0, 2, 1), v4(192, 0, 2, 2)],
        };
        assert_eq!(emit_vec(&repr, src_v4(), dst_v4()), expected);
        assert_eq!(
            AdvertRepr::parse(&expected, src_v4(), dst_v4()).unwrap(),
            repr
        );
    }

    #[test]
    fn v2_auth_none_ignores_auth_data() {
        // RFC 3768 §5.3.6.1: ignored on reception.
        let mut bytes = V2_PASS;
        bytes[field::AUTH_TYPE] = 0;
        refill_checksum(&mut bytes, src_v4(), dst_v4());
        let repr = AdvertRepr::parse(&bytes, src_v4(), dst_v4()).unwrap();
        assert_eq!(repr.auth, Auth::None);
    }

    #[test]
    fn v3_ignores_reserved_bits_and_caps_interval_at_12_bits() {
        let mut bytes = V3_IPV4;
        bytes[4] = 0xff; // rsvd all ones, interval 0xf64
        refill_checksum(&mut bytes, src_v4(), dst_v4());
        let repr = AdvertRepr::parse(&bytes, src_v4(), dst_v4()).unwrap();
        assert_eq!(repr.advert_interval_centis, 0xf64);

        let mut long = v3_ipv4_repr();
        long.advert_interval_centis = 5000;
        let emitted = emit_vec(&long, src_v4(), dst_v4());
        assert_eq!(&emitted[4..6], &[0x0f, 0xff]);
    }

    #[test]
    fn v2_interval_is_whole_seconds() {
        let mut repr = v2_pass_repr();
        repr.advert_interval_centis = 250;
        assert_eq!(emit_vec(&repr, src_v4(), dst_v4())[field::ADVER_INT], 2);
        repr.advert_interval_centis = u16::MAX;
        assert_eq!(emit_vec(&repr, src_v4(), dst_v4())[field::ADVER_INT], 255);
        let mut bytes = V2_PASS;
        bytes[field::ADVER_INT] = 255;
        refill_checksum(&mut bytes, src_v4(), dst_v4());
        let parsed = AdvertRepr::parse(&bytes, src_v4(), dst_v4()).unwrap();
        assert_eq!(parsed.advert_interval_centis, 25500);
    }

    #[test]
    fn emit_writes_only_buffer_len_bytes() {
        let repr = v3_ipv4_repr();
        let mut buf = [0xa5u8; 64];
        repr.emit(&mut buf, src_v4(), dst_v4());
        assert_eq!(&buf[..16], &V3_IPV4);
        assert!(buf[16..].iter().all(|&b| b == 0xa5));
    }

    // ---- rejections ----

    #[test]
    fn truncated_at_every_length_is_rejected() {
        let cases: [(&[u8], IpAddr, IpAddr); 3] = [
            (&V2_PASS, src_v4(), dst_v4()),
            (&V3_IPV4, src_v4(), dst_v4()),
            (&V3_IPV6, src_v6(), dst_v6()),
        ];
        for (full, src, dst) in cases {
            for len in 0..full.len() {
                let err = AdvertRepr::parse(&full[..len], src, dst).unwrap_err();
                if len < HEADER_LEN {
                    assert_eq!(err, DecodeError::Truncated, "len {len}");
                } else {
                    // Cutting bytes usually breaks the checksum first; when the
                    // cut bytes sum to zero (v2's zero key padding) the length
                    // check catches it.
                    assert!(
                        matches!(err, DecodeError::BadChecksum | DecodeError::LengthMismatch),
                        "len {len}: {err:?}"
                    );
                    // With a valid checksum for the shorter message, it is a
                    // length mismatch.
                    let mut short = full[..len].to_vec();
                    refill_checksum(&mut short, src, dst);
                    assert_eq!(
                        AdvertRepr::parse(&short, src, dst).unwrap_err(),
                        DecodeError::LengthMismatch,
                        "len {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn bad_checksum_is_rejected() {
        for bit in 0..8 {
            let mut bytes = V3_IPV4;
            bytes[7] ^= 1 << bit;
            assert_eq!(
                AdvertRepr::parse(&bytes, src_v4(), dst_v4()),
                Err(DecodeError::BadChecksum)
            );
        }
        // A flipped address bit is caught too.
        let mut bytes = V2_PASS;
        bytes[11] ^= 0x01;
        assert_eq!(
            AdvertRepr::parse(&bytes, src_v4(), dst_v4()),
            Err(DecodeError::BadChecksum)
        );
    }

    #[test]
    fn v3_checksum_without_pseudo_header_is_rejected() {
        // Some old implementations summed only the message for v3 over IPv4;
        // RFC 5798 §5.2.8 requires the pseudo-header.
        let mut bytes = V3_IPV4;
        bytes[6] = 0;
        bytes[7] = 0;
        let sum = reference_checksum(&bytes);
        bytes[6..8].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(
            AdvertRepr::parse(&bytes, src_v4(), dst_v4()),
            Err(DecodeError::BadChecksum)
        );
    }

    #[test]
    fn v3_checksum_depends_on_ip_addresses() {
        assert_eq!(
            AdvertRepr::parse(&V3_IPV4, v4(10, 99, 0, 2), dst_v4()),
            Err(DecodeError::BadChecksum)
        );
        // v2 has no pseudo-header, so the source does not matter.
        assert!(AdvertRepr::parse(&V2_PASS, v4(10, 99, 0, 2), dst_v4()).is_ok());
    }

    #[test]
    fn wrong_version_is_rejected_before_checksum() {
        for first in [0x01, 0x11, 0x41, 0xf1] {
            let mut bytes = V3_IPV4;
            bytes[0] = first;
            assert_eq!(
                AdvertRepr::parse(&bytes, src_v4(), dst_v4()),
                Err(DecodeError::BadVersion),
                "{first:#x}"
            );
        }
    }

    #[test]
    fn wrong_type_is_rejected() {
        for first in [0x20, 0x22, 0x2f, 0x30, 0x32] {
            let mut bytes = V2_PASS;
            bytes[0] = first;
            refill_checksum(&mut bytes, src_v4(), dst_v4());
            assert_eq!(
                AdvertRepr::parse(&bytes, src_v4(), dst_v4()),
                Err(DecodeError::BadType),
                "{first:#x}"
            );
        }
    }

    #[test]
    fn count_larger_than_addresses_is_length_mismatch() {
        let mut bytes = V3_IPV4;
        bytes[field::COUNT] = 3;
        refill_checksum(&mut bytes, src_v4(), dst_v4());
        assert_eq!(
            AdvertRepr::parse(&bytes, src_v4(), dst_v4()),
            Err(DecodeError::LengthMismatch)
        );
    }

    #[test]
    fn count_smaller_than_addresses_is_length_mismatch() {
        let mut bytes = V3_IPV6;
        bytes[field::COUNT] = 1;
        refill_checksum(&mut bytes, src_v6(), dst_v6());
        assert_eq!(
            AdvertRepr::parse(&bytes, src_v6(), dst_v6()),
            Err(DecodeError::LengthMismatch)
        );
    }

    #[test]
    fn trailing_bytes_are_length_mismatch() {
        // Zero padding keeps the v2 checksum valid, so only the length rule can
        // catch it.
        let mut bytes = V2_PASS.to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            AdvertRepr::parse(&bytes, src_v4(), dst_v4()),
            Err(DecodeError::LengthMismatch)
        );
        let mut bytes = V3_IPV4.to_vec();
        bytes.extend_from_slice(&[0, 0]);
        refill_checksum(&mut bytes, src_v4(), dst_v4());
        assert_eq!(
            AdvertRepr::parse(&bytes, src_v4(), dst_v4()),
            Err(DecodeError::LengthMismatch)
        );
    }

    #[test]
    fn v3_ipv4_addresses_read_as_ipv6_is_length_mismatch() {
        // 16 bytes with count 2 is right for IPv4, wrong for IPv6.
        let mut bytes = V3_IPV4;
        refill_checksum(&mut bytes, src_v6(), dst_v6());
        assert_eq!(
            AdvertRepr::parse(&bytes, src_v6(), dst_v6()),
            Err(DecodeError::LengthMismatch)
        );
    }

    #[test]
    fn v2_over_ipv6_is_bad_address_family() {
        assert_eq!(
            AdvertRepr::parse(&V2_PASS, src_v6(), dst_v6()),
            Err(DecodeError::BadAddressFamily)
        );
    }

    #[test]
    fn mixed_source_and_destination_families_are_rejected() {
        assert_eq!(
            AdvertRepr::parse(&V3_IPV4, src_v4(), dst_v6()),
            Err(DecodeError::BadAddressFamily)
        );
        assert_eq!(
            AdvertRepr::parse(&V3_IPV6, src_v6(), dst_v4()),
            Err(DecodeError::BadAddressFamily)
        );
    }

    #[test]
    fn auth_type_ah_and_unknown_are_unsupported() {
        for auth in [2, 3, 255] {
            let mut bytes = V2_PASS;
            bytes[field::AUTH_TYPE] = auth;
            refill_checksum(&mut bytes, src_v4(), dst_v4());
            assert_eq!(
                AdvertRepr::parse(&bytes, src_v4(), dst_v4()),
                Err(DecodeError::UnsupportedAuth),
                "auth type {auth}"
            );
        }
    }

    #[test]
    fn carp_advert_is_rejected_not_read_as_priority_zero() {
        // A ucarp/OpenBSD CARP advert, same protocol and group as VRRPv2:
        // version 2 type 1, vhid 10, advskew 0, authlen 7, demote 0,
        // advbase 1, checksum, 8-byte counter, 20-byte SHA1-HMAC.
        let mut carp = vec![0x21, 0x0a, 0x00, 0x07, 0x00, 0x01, 0x00, 0x00];
        carp.extend_from_slice(&[0x5e, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]);
        carp.extend_from_slice(&[
            0x9a, 0x3f, 0x10, 0xc2, 0x7e, 0x55, 0x01, 0xd4, 0x88, 0x2b, 0xe7, 0x41, 0x06, 0xfa,
            0x93, 0x6c, 0x2d, 0xb0, 0x17, 0xe8,
        ]);
        assert_eq!(carp.len(), 36);
        // CARP's checksum is the same Internet checksum over its header, so
        // it verifies as a v2 checksum.
        refill_checksum(&mut carp, src_v4(), dst_v4());
        assert_eq!(
            AdvertRepr::parse(&carp, src_v4(), dst_v4()),
            Err(DecodeError::LengthMismatch)
        );
    }

    #[test]
    fn decode_error_names_are_stable() {
        let names: Vec<_> = DecodeError::ALL.iter().map(DecodeError::as_str).collect();
        assert_eq!(
            names,
            [
                "truncated",
                "bad_version",
                "bad_type",
                "bad_address_family",
                "bad_checksum",
                "length_mismatch",
                "unsupported_auth",
            ]
        );
    }

    #[test]
    fn packet_view_reads_fields_without_panicking_past_the_end() {
        let packet = Packet::new_checked(&V3_IPV4[..]).unwrap();
        assert_eq!(packet.version(), 3);
        assert_eq!(packet.msg_type(), 1);
        assert_eq!(packet.vrid(), 52);
        assert_eq!(packet.count(), 2);
        assert_eq!(packet.max_adver_int(), 100);
        assert_eq!(packet.checksum(), 0x05dd);
        assert_eq!(packet.address_v4(1), Some(Ipv4Addr::new(10, 99, 0, 102)));
        assert_eq!(packet.address_v4(2), None);
        assert_eq!(packet.address_v6(0), None);
        assert_eq!(packet.address_v4(usize::MAX), None);
        assert_eq!(packet.address_v6(usize::MAX / 8), None);
        assert_eq!(packet.auth_data(), None);
        assert_eq!(
            Packet::new_checked(&V3_IPV4[..7]).unwrap_err(),
            DecodeError::Truncated
        );
    }
}
