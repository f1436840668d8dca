//! Destination (real server) attributes (`IPVS_DEST_ATTR_*`), nested in
//! `IPVS_CMD_ATTR_DEST`.
//!
//! A destination is identified by address + port within its service; adding
//! or editing one also needs the forwarding method, weight and both
//! thresholds (`ip_vs_genl_parse_dest`); the tunnel attributes are optional.

use netlink_packet_core::{
    emit_u16, emit_u16_be, emit_u32, parse_u16, parse_u16_be, parse_u32, parse_u8, DecodeError,
    DefaultNla, ErrorContext, Nla, NlaBuffer, Parseable,
};

use super::common::{AddressFamily, InetAddr};
use super::stats::Stats;
use super::uapi_enum;

pub(crate) const ADDR: u16 = 1;
pub(crate) const PORT: u16 = 2;
pub(crate) const FWD_METHOD: u16 = 3;
pub(crate) const WEIGHT: u16 = 4;
pub(crate) const U_THRESH: u16 = 5;
pub(crate) const L_THRESH: u16 = 6;
const ACTIVE_CONNS: u16 = 7;
const INACT_CONNS: u16 = 8;
const PERSIST_CONNS: u16 = 9;
const STATS: u16 = 10;
pub(crate) const ADDR_FAMILY: u16 = 11;
const STATS64: u16 = 12;
pub(crate) const TUN_TYPE: u16 = 13;
pub(crate) const TUN_PORT: u16 = 14;
pub(crate) const TUN_FLAGS: u16 = 15;

uapi_enum! {
    /// `IP_VS_CONN_F_*` forwarding methods (the `IP_VS_CONN_F_FWD_MASK` bits),
    /// NLA_U32; the kernel masks what it receives with `IP_VS_CONN_F_FWD_MASK`.
    pub enum ForwardingMethod: u32 {
        /// `IP_VS_CONN_F_MASQ`: NAT.
        Masquerade = 0,
        /// `IP_VS_CONN_F_LOCALNODE`: the destination is this host.
        LocalNode = 1,
        /// `IP_VS_CONN_F_TUNNEL`: IP-in-IP / GUE / GRE tunnelling.
        Tunnel = 2,
        /// `IP_VS_CONN_F_DROUTE`: direct routing.
        DirectRoute = 3,
        /// `IP_VS_CONN_F_BYPASS`: cache bypass.
        Bypass = 4,
    }
}

uapi_enum! {
    /// `IP_VS_CONN_F_TUNNEL_TYPE_*`, NLA_U8.
    pub enum TunnelType: u8 {
        /// `IP_VS_CONN_F_TUNNEL_TYPE_IPIP`.
        Ipip = 0,
        /// `IP_VS_CONN_F_TUNNEL_TYPE_GUE`.
        Gue = 1,
        /// `IP_VS_CONN_F_TUNNEL_TYPE_GRE`.
        Gre = 2,
    }
}

/// One destination attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DestAttribute {
    /// `IPVS_DEST_ATTR_ADDR` (1): `union nf_inet_addr`.
    Address(InetAddr),
    /// `IPVS_DEST_ATTR_PORT` (2): big-endian u16.
    Port(u16),
    /// `IPVS_DEST_ATTR_FWD_METHOD` (3): NLA_U32.
    ForwardingMethod(ForwardingMethod),
    /// `IPVS_DEST_ATTR_WEIGHT` (4): NLA_U32 (an `int` in the kernel, which
    /// rejects negative values with ERANGE).
    Weight(u32),
    /// `IPVS_DEST_ATTR_U_THRESH` (5): upper connection threshold, 0 = none.
    UpperThreshold(u32),
    /// `IPVS_DEST_ATTR_L_THRESH` (6): lower connection threshold.
    LowerThreshold(u32),
    /// `IPVS_DEST_ATTR_ACTIVE_CONNS` (7): reply only.
    ActiveConns(u32),
    /// `IPVS_DEST_ATTR_INACT_CONNS` (8): reply only.
    InactiveConns(u32),
    /// `IPVS_DEST_ATTR_PERSIST_CONNS` (9): reply only.
    PersistentConns(u32),
    /// `IPVS_DEST_ATTR_STATS` (10): nested 32-bit counters (bytes 64-bit).
    Stats(Stats),
    /// `IPVS_DEST_ATTR_ADDR_FAMILY` (11): NLA_U16; absent = the service's.
    AddressFamily(AddressFamily),
    /// `IPVS_DEST_ATTR_STATS64` (12): nested 64-bit counters.
    Stats64(Stats),
    /// `IPVS_DEST_ATTR_TUN_TYPE` (13): NLA_U8.
    TunnelType(TunnelType),
    /// `IPVS_DEST_ATTR_TUN_PORT` (14): big-endian u16 (`nla_get_be16`).
    TunnelPort(u16),
    /// `IPVS_DEST_ATTR_TUN_FLAGS` (15): `IP_VS_TUNNEL_ENCAP_FLAG_*`, host-order u16.
    TunnelFlags(u16),
    /// An attribute this crate does not know.
    Other(DefaultNla),
}

impl Nla for DestAttribute {
    fn value_len(&self) -> usize {
        match self {
            DestAttribute::Address(_) => InetAddr::LEN,
            DestAttribute::Port(_)
            | DestAttribute::AddressFamily(_)
            | DestAttribute::TunnelPort(_)
            | DestAttribute::TunnelFlags(_) => 2,
            DestAttribute::ForwardingMethod(_)
            | DestAttribute::Weight(_)
            | DestAttribute::UpperThreshold(_)
            | DestAttribute::LowerThreshold(_)
            | DestAttribute::ActiveConns(_)
            | DestAttribute::InactiveConns(_)
            | DestAttribute::PersistentConns(_) => 4,
            DestAttribute::TunnelType(_) => 1,
            DestAttribute::Stats(stats) => stats.value_len(false),
            DestAttribute::Stats64(stats) => stats.value_len(true),
            DestAttribute::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            DestAttribute::Address(_) => ADDR,
            DestAttribute::Port(_) => PORT,
            DestAttribute::ForwardingMethod(_) => FWD_METHOD,
            DestAttribute::Weight(_) => WEIGHT,
            DestAttribute::UpperThreshold(_) => U_THRESH,
            DestAttribute::LowerThreshold(_) => L_THRESH,
            DestAttribute::ActiveConns(_) => ACTIVE_CONNS,
            DestAttribute::InactiveConns(_) => INACT_CONNS,
            DestAttribute::PersistentConns(_) => PERSIST_CONNS,
            DestAttribute::Stats(_) => STATS,
            DestAttribute::AddressFamily(_) => ADDR_FAMILY,
            DestAttribute::Stats64(_) => STATS64,
            DestAttribute::TunnelType(_) => TUN_TYPE,
            DestAttribute::TunnelPort(_) => TUN_PORT,
            DestAttribute::TunnelFlags(_) => TUN_FLAGS,
            DestAttribute::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        const FITS: &str = "value buffer sized by value_len";
        match self {
            DestAttribute::Address(addr) => buffer.copy_from_slice(&addr.0),
            DestAttribute::Port(port) | DestAttribute::TunnelPort(port) => {
                emit_u16_be(buffer, *port).expect(FITS)
            }
            DestAttribute::ForwardingMethod(m) => emit_u32(buffer, (*m).into()).expect(FITS),
            DestAttribute::Weight(v)
            | DestAttribute::UpperThreshold(v)
            | DestAttribute::LowerThreshold(v)
            | DestAttribute::ActiveConns(v)
            | DestAttribute::InactiveConns(v)
            | DestAttribute::PersistentConns(v) => emit_u32(buffer, *v).expect(FITS),
            DestAttribute::AddressFamily(af) => emit_u16(buffer, (*af).into()).expect(FITS),
            DestAttribute::TunnelFlags(flags) => emit_u16(buffer, *flags).expect(FITS),
            DestAttribute::TunnelType(t) => buffer[0] = (*t).into(),
            DestAttribute::Stats(stats) => stats.emit(buffer, false),
            DestAttribute::Stats64(stats) => stats.emit(buffer, true),
            DestAttribute::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for DestAttribute {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let value = buf.value();
        Ok(match buf.kind() {
            ADDR => DestAttribute::Address(InetAddr::parse(value, "IPVS_DEST_ATTR_ADDR")?),
            PORT => DestAttribute::Port(parse_u16_be(value).context("IPVS_DEST_ATTR_PORT")?),
            FWD_METHOD => DestAttribute::ForwardingMethod(
                parse_u32(value)
                    .context("IPVS_DEST_ATTR_FWD_METHOD")?
                    .into(),
            ),
            WEIGHT => DestAttribute::Weight(parse_u32(value).context("IPVS_DEST_ATTR_WEIGHT")?),
            U_THRESH => {
                DestAttribute::UpperThreshold(parse_u32(value).context("IPVS_DEST_ATTR_U_THRESH")?)
            }
            L_THRESH => {
                DestAttribute::LowerThreshold(parse_u32(value).context("IPVS_DEST_ATTR_L_THRESH")?)
            }
            ACTIVE_CONNS => {
                DestAttribute::ActiveConns(parse_u32(value).context("IPVS_DEST_ATTR_ACTIVE_CONNS")?)
            }
            INACT_CONNS => DestAttribute::InactiveConns(
                parse_u32(value).context("IPVS_DEST_ATTR_INACT_CONNS")?,
            ),
            PERSIST_CONNS => DestAttribute::PersistentConns(
                parse_u32(value).context("IPVS_DEST_ATTR_PERSIST_CONNS")?,
            ),
            STATS => DestAttribute::Stats(Stats::parse(value, "IPVS_DEST_ATTR_STATS")?),
            ADDR_FAMILY => DestAttribute::AddressFamily(
                parse_u16(value)
                    .context("IPVS_DEST_ATTR_ADDR_FAMILY")?
                    .into(),
            ),
            STATS64 => DestAttribute::Stats64(Stats::parse(value, "IPVS_DEST_ATTR_STATS64")?),
            TUN_TYPE => DestAttribute::TunnelType(
                parse_u8(value).context("IPVS_DEST_ATTR_TUN_TYPE")?.into(),
            ),
            TUN_PORT => {
                DestAttribute::TunnelPort(parse_u16_be(value).context("IPVS_DEST_ATTR_TUN_PORT")?)
            }
            TUN_FLAGS => {
                DestAttribute::TunnelFlags(parse_u16(value).context("IPVS_DEST_ATTR_TUN_FLAGS")?)
            }
            _ => DestAttribute::Other(DefaultNla::parse(buf)?),
        })
    }
}
