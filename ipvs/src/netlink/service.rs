//! Service attributes (`IPVS_SVC_ATTR_*`), nested in `IPVS_CMD_ATTR_SERVICE`.
//!
//! A service is identified by AF + (protocol, address, port) or AF + fwmark
//! (`ip_vs_genl_parse_service`); adding or editing one also needs the
//! scheduler name, the flags, the timeout and the netmask.

use netlink_packet_core::{
    emit_u16, emit_u16_be, emit_u32, emit_u32_be, parse_u16, parse_u16_be, parse_u32, parse_u32_be,
    DecodeError, DefaultNla, ErrorContext, Nla, NlaBuffer, Parseable,
};

use super::common::{emit_nul_string, exact, parse_nul_string, AddressFamily, InetAddr, Protocol};
use super::stats::Stats;

pub(crate) const AF: u16 = 1;
pub(crate) const PROTOCOL: u16 = 2;
pub(crate) const ADDR: u16 = 3;
pub(crate) const PORT: u16 = 4;
pub(crate) const FWMARK: u16 = 5;
pub(crate) const SCHED_NAME: u16 = 6;
pub(crate) const FLAGS: u16 = 7;
pub(crate) const TIMEOUT: u16 = 8;
pub(crate) const NETMASK: u16 = 9;
const STATS: u16 = 10;
pub(crate) const PE_NAME: u16 = 11;
const STATS64: u16 = 12;

/// `struct ip_vs_flags`: two host-order u32. The kernel applies
/// `(old & ~mask) | (flags & mask)` on add / edit and replies with mask `~0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FlagsWithMask {
    /// `IP_VS_SVC_F_*` bits.
    pub flags: u32,
    /// Which bits of `flags` to apply.
    pub mask: u32,
}

/// One service attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceAttribute {
    /// `IPVS_SVC_ATTR_AF` (1): NLA_U16.
    AddressFamily(AddressFamily),
    /// `IPVS_SVC_ATTR_PROTOCOL` (2): NLA_U16.
    Protocol(Protocol),
    /// `IPVS_SVC_ATTR_ADDR` (3): `union nf_inet_addr`.
    Address(InetAddr),
    /// `IPVS_SVC_ATTR_PORT` (4): big-endian u16.
    Port(u16),
    /// `IPVS_SVC_ATTR_FWMARK` (5): NLA_U32.
    Fwmark(u32),
    /// `IPVS_SVC_ATTR_SCHED_NAME` (6): NLA_NUL_STRING, at most 15 bytes.
    SchedName(String),
    /// `IPVS_SVC_ATTR_FLAGS` (7): `struct ip_vs_flags`.
    Flags(FlagsWithMask),
    /// `IPVS_SVC_ATTR_TIMEOUT` (8): persistence timeout in seconds, NLA_U32.
    Timeout(u32),
    /// `IPVS_SVC_ATTR_NETMASK` (9): the four bytes read big-endian. For IPv4
    /// a netmask (`0xffffff00` = /24); for IPv6 the kernel reads the same four
    /// bytes as a host-order prefix length (`(__force __u32) u->netmask`),
    /// so the model converts per family.
    Netmask(u32),
    /// `IPVS_SVC_ATTR_STATS` (10): nested 32-bit counters (bytes 64-bit).
    Stats(Stats),
    /// `IPVS_SVC_ATTR_PE_NAME` (11): persistence engine, NLA_NUL_STRING.
    PeName(String),
    /// `IPVS_SVC_ATTR_STATS64` (12): nested 64-bit counters.
    Stats64(Stats),
    /// An attribute this crate does not know.
    Other(DefaultNla),
}

impl Nla for ServiceAttribute {
    fn value_len(&self) -> usize {
        match self {
            ServiceAttribute::AddressFamily(_)
            | ServiceAttribute::Protocol(_)
            | ServiceAttribute::Port(_) => 2,
            ServiceAttribute::Address(_) => InetAddr::LEN,
            ServiceAttribute::Fwmark(_)
            | ServiceAttribute::Timeout(_)
            | ServiceAttribute::Netmask(_) => 4,
            ServiceAttribute::SchedName(s) | ServiceAttribute::PeName(s) => s.len() + 1,
            ServiceAttribute::Flags(_) => 8,
            ServiceAttribute::Stats(stats) => stats.value_len(false),
            ServiceAttribute::Stats64(stats) => stats.value_len(true),
            ServiceAttribute::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            ServiceAttribute::AddressFamily(_) => AF,
            ServiceAttribute::Protocol(_) => PROTOCOL,
            ServiceAttribute::Address(_) => ADDR,
            ServiceAttribute::Port(_) => PORT,
            ServiceAttribute::Fwmark(_) => FWMARK,
            ServiceAttribute::SchedName(_) => SCHED_NAME,
            ServiceAttribute::Flags(_) => FLAGS,
            ServiceAttribute::Timeout(_) => TIMEOUT,
            ServiceAttribute::Netmask(_) => NETMASK,
            ServiceAttribute::Stats(_) => STATS,
            ServiceAttribute::PeName(_) => PE_NAME,
            ServiceAttribute::Stats64(_) => STATS64,
            ServiceAttribute::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        const FITS: &str = "value buffer sized by value_len";
        match self {
            ServiceAttribute::AddressFamily(af) => emit_u16(buffer, (*af).into()).expect(FITS),
            ServiceAttribute::Protocol(p) => emit_u16(buffer, (*p).into()).expect(FITS),
            ServiceAttribute::Address(addr) => buffer.copy_from_slice(&addr.0),
            ServiceAttribute::Port(port) => emit_u16_be(buffer, *port).expect(FITS),
            ServiceAttribute::Fwmark(v) | ServiceAttribute::Timeout(v) => {
                emit_u32(buffer, *v).expect(FITS)
            }
            ServiceAttribute::Netmask(mask) => emit_u32_be(buffer, *mask).expect(FITS),
            ServiceAttribute::SchedName(s) | ServiceAttribute::PeName(s) => {
                emit_nul_string(buffer, s)
            }
            ServiceAttribute::Flags(f) => {
                emit_u32(&mut buffer[..4], f.flags).expect(FITS);
                emit_u32(&mut buffer[4..8], f.mask).expect(FITS);
            }
            ServiceAttribute::Stats(stats) => stats.emit(buffer, false),
            ServiceAttribute::Stats64(stats) => stats.emit(buffer, true),
            ServiceAttribute::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for ServiceAttribute {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let value = buf.value();
        Ok(match buf.kind() {
            AF => ServiceAttribute::AddressFamily(
                parse_u16(value).context("IPVS_SVC_ATTR_AF")?.into(),
            ),
            PROTOCOL => ServiceAttribute::Protocol(
                parse_u16(value).context("IPVS_SVC_ATTR_PROTOCOL")?.into(),
            ),
            ADDR => ServiceAttribute::Address(InetAddr::parse(value, "IPVS_SVC_ATTR_ADDR")?),
            PORT => ServiceAttribute::Port(parse_u16_be(value).context("IPVS_SVC_ATTR_PORT")?),
            FWMARK => ServiceAttribute::Fwmark(parse_u32(value).context("IPVS_SVC_ATTR_FWMARK")?),
            SCHED_NAME => {
                ServiceAttribute::SchedName(parse_nul_string(value, "IPVS_SVC_ATTR_SCHED_NAME")?)
            }
            FLAGS => {
                let value = exact(value, 8, "IPVS_SVC_ATTR_FLAGS (struct ip_vs_flags)")?;
                ServiceAttribute::Flags(FlagsWithMask {
                    flags: parse_u32(&value[..4])?,
                    mask: parse_u32(&value[4..])?,
                })
            }
            TIMEOUT => {
                ServiceAttribute::Timeout(parse_u32(value).context("IPVS_SVC_ATTR_TIMEOUT")?)
            }
            NETMASK => {
                ServiceAttribute::Netmask(parse_u32_be(value).context("IPVS_SVC_ATTR_NETMASK")?)
            }
            STATS => ServiceAttribute::Stats(Stats::parse(value, "IPVS_SVC_ATTR_STATS")?),
            PE_NAME => ServiceAttribute::PeName(parse_nul_string(value, "IPVS_SVC_ATTR_PE_NAME")?),
            STATS64 => ServiceAttribute::Stats64(Stats::parse(value, "IPVS_SVC_ATTR_STATS64")?),
            _ => ServiceAttribute::Other(DefaultNla::parse(buf)?),
        })
    }
}
