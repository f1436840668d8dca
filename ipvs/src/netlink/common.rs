//! Value types shared by the service and destination attributes: the address
//! family, the transport protocol and the 16-byte `union nf_inet_addr`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::DecodeError;

use super::uapi_enum;

uapi_enum! {
    /// An address family number (`AF_*`, NLA_U16 in host order).
    pub enum AddressFamily: u16 {
        /// `AF_INET`.
        Inet = 2,
        /// `AF_INET6`.
        Inet6 = 10,
    }
}

impl AddressFamily {
    /// The family of `addr`.
    pub fn of(addr: &IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        }
    }
}

uapi_enum! {
    /// A service's transport protocol (`IPPROTO_*`, NLA_U16 in host order).
    pub enum Protocol: u16 {
        /// `IPPROTO_TCP`.
        Tcp = 6,
        /// `IPPROTO_UDP`.
        Udp = 17,
        /// `IPPROTO_SCTP`.
        Sctp = 132,
    }
}

/// `union nf_inet_addr`: 16 bytes, an IPv4 address in the first four (network
/// order) and zeros after it. The kernel always puts all 16 bytes
/// (`nla_put(skb, IPVS_SVC_ATTR_ADDR, sizeof(svc->addr), ...)`); the policy
/// accepts up to 16, so a shorter attribute is zero-padded on parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct InetAddr(pub [u8; 16]);

impl InetAddr {
    /// Length on the wire.
    pub const LEN: usize = 16;

    /// Reads up to 16 bytes, zero-padding the rest.
    pub fn parse(value: &[u8], what: &str) -> Result<Self, DecodeError> {
        if value.len() > Self::LEN {
            return Err(DecodeError::from(format!(
                "{what}: {} bytes, more than the 16 of union nf_inet_addr",
                value.len()
            )));
        }
        let mut bytes = [0u8; 16];
        bytes[..value.len()].copy_from_slice(value);
        Ok(InetAddr(bytes))
    }

    /// The address as `family` reads it; `None` for a family other than IPv4 / IPv6.
    pub fn to_ip(&self, family: AddressFamily) -> Option<IpAddr> {
        match family {
            AddressFamily::Inet => {
                let [a, b, c, d, ..] = self.0;
                Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
            }
            AddressFamily::Inet6 => Some(IpAddr::V6(Ipv6Addr::from(self.0))),
            AddressFamily::Other(_) => None,
        }
    }
}

impl From<IpAddr> for InetAddr {
    fn from(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(v4) => {
                let mut bytes = [0u8; 16];
                bytes[..4].copy_from_slice(&v4.octets());
                InetAddr(bytes)
            }
            IpAddr::V6(v6) => InetAddr(v6.octets()),
        }
    }
}

/// A NUL-terminated string attribute (NLA_NUL_STRING): the value without its
/// terminator. Bytes after the first NUL are ignored, as the kernel does.
pub(crate) fn parse_nul_string(value: &[u8], what: &str) -> Result<String, DecodeError> {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8(value[..end].to_vec())
        .map_err(|_| DecodeError::from(format!("{what}: not UTF-8")))
}

/// Emits `s` followed by its NUL terminator.
pub(crate) fn emit_nul_string(buffer: &mut [u8], s: &str) {
    buffer[..s.len()].copy_from_slice(s.as_bytes());
    buffer[s.len()] = 0;
}

/// Checks that a fixed-size attribute has exactly `len` bytes.
pub(crate) fn exact<'a>(value: &'a [u8], len: usize, what: &str) -> Result<&'a [u8], DecodeError> {
    if value.len() == len {
        Ok(value)
    } else {
        Err(DecodeError::from(format!(
            "{what}: {} bytes, expected {len}",
            value.len()
        )))
    }
}
