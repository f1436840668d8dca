//! Connection-sync daemon attributes (`IPVS_DAEMON_ATTR_*`), nested in
//! `IPVS_CMD_ATTR_DAEMON`.
//!
//! NEW_DAEMON needs state, interface and sync id; the rest is optional
//! (`ip_vs_genl_new_daemon`). DEL_DAEMON needs only the state.

use std::net::{Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{
    emit_u16, emit_u32, parse_u16, parse_u32, parse_u8, DecodeError, DefaultNla, ErrorContext, Nla,
    NlaBuffer, Parseable,
};

use super::common::{emit_nul_string, exact, parse_nul_string};
use super::uapi_enum;

const STATE: u16 = 1;
const MCAST_IFN: u16 = 2;
const SYNC_ID: u16 = 3;
const SYNC_MAXLEN: u16 = 4;
const MCAST_GROUP: u16 = 5;
const MCAST_GROUP6: u16 = 6;
const MCAST_PORT: u16 = 7;
const MCAST_TTL: u16 = 8;

uapi_enum! {
    /// `IP_VS_STATE_*`: the role of a sync daemon, NLA_U32.
    pub enum DaemonState: u32 {
        /// `IP_VS_STATE_NONE`: stopped.
        None = 0,
        /// `IP_VS_STATE_MASTER`: sends the connection table.
        Master = 1,
        /// `IP_VS_STATE_BACKUP`: receives it.
        Backup = 2,
    }
}

/// One sync-daemon attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DaemonAttribute {
    /// `IPVS_DAEMON_ATTR_STATE` (1).
    State(DaemonState),
    /// `IPVS_DAEMON_ATTR_MCAST_IFN` (2): interface, NLA_NUL_STRING of at most 15 bytes.
    McastInterface(String),
    /// `IPVS_DAEMON_ATTR_SYNC_ID` (3): NLA_U32 (the kernel keeps the low 8 bits).
    SyncId(u32),
    /// `IPVS_DAEMON_ATTR_SYNC_MAXLEN` (4): UDP payload size, NLA_U16.
    SyncMaxLen(u16),
    /// `IPVS_DAEMON_ATTR_MCAST_GROUP` (5): IPv4 group (`nla_put_in_addr`, network order).
    McastGroup(Ipv4Addr),
    /// `IPVS_DAEMON_ATTR_MCAST_GROUP6` (6): IPv6 group, 16 bytes.
    McastGroup6(Ipv6Addr),
    /// `IPVS_DAEMON_ATTR_MCAST_PORT` (7): NLA_U16 in host order (`nla_get_u16`).
    McastPort(u16),
    /// `IPVS_DAEMON_ATTR_MCAST_TTL` (8): NLA_U8.
    McastTtl(u8),
    /// An attribute this crate does not know.
    Other(DefaultNla),
}

impl Nla for DaemonAttribute {
    fn value_len(&self) -> usize {
        match self {
            DaemonAttribute::State(_) | DaemonAttribute::SyncId(_) => 4,
            DaemonAttribute::McastInterface(name) => name.len() + 1,
            DaemonAttribute::SyncMaxLen(_) | DaemonAttribute::McastPort(_) => 2,
            DaemonAttribute::McastGroup(_) => 4,
            DaemonAttribute::McastGroup6(_) => 16,
            DaemonAttribute::McastTtl(_) => 1,
            DaemonAttribute::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            DaemonAttribute::State(_) => STATE,
            DaemonAttribute::McastInterface(_) => MCAST_IFN,
            DaemonAttribute::SyncId(_) => SYNC_ID,
            DaemonAttribute::SyncMaxLen(_) => SYNC_MAXLEN,
            DaemonAttribute::McastGroup(_) => MCAST_GROUP,
            DaemonAttribute::McastGroup6(_) => MCAST_GROUP6,
            DaemonAttribute::McastPort(_) => MCAST_PORT,
            DaemonAttribute::McastTtl(_) => MCAST_TTL,
            DaemonAttribute::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        const FITS: &str = "value buffer sized by value_len";
        match self {
            DaemonAttribute::State(state) => emit_u32(buffer, (*state).into()).expect(FITS),
            DaemonAttribute::McastInterface(name) => emit_nul_string(buffer, name),
            DaemonAttribute::SyncId(id) => emit_u32(buffer, *id).expect(FITS),
            DaemonAttribute::SyncMaxLen(v) | DaemonAttribute::McastPort(v) => {
                emit_u16(buffer, *v).expect(FITS)
            }
            DaemonAttribute::McastGroup(group) => buffer.copy_from_slice(&group.octets()),
            DaemonAttribute::McastGroup6(group) => buffer.copy_from_slice(&group.octets()),
            DaemonAttribute::McastTtl(ttl) => buffer[0] = *ttl,
            DaemonAttribute::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for DaemonAttribute {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let value = buf.value();
        Ok(match buf.kind() {
            STATE => {
                DaemonAttribute::State(parse_u32(value).context("IPVS_DAEMON_ATTR_STATE")?.into())
            }
            MCAST_IFN => DaemonAttribute::McastInterface(parse_nul_string(
                value,
                "IPVS_DAEMON_ATTR_MCAST_IFN",
            )?),
            SYNC_ID => {
                DaemonAttribute::SyncId(parse_u32(value).context("IPVS_DAEMON_ATTR_SYNC_ID")?)
            }
            SYNC_MAXLEN => DaemonAttribute::SyncMaxLen(
                parse_u16(value).context("IPVS_DAEMON_ATTR_SYNC_MAXLEN")?,
            ),
            MCAST_GROUP => {
                let v = exact(value, 4, "IPVS_DAEMON_ATTR_MCAST_GROUP")?;
                DaemonAttribute::McastGroup(Ipv4Addr::new(v[0], v[1], v[2], v[3]))
            }
            MCAST_GROUP6 => {
                let v = exact(value, 16, "IPVS_DAEMON_ATTR_MCAST_GROUP6")?;
                let mut octets = [0u8; 16];
                octets.copy_from_slice(v);
                DaemonAttribute::McastGroup6(Ipv6Addr::from(octets))
            }
            MCAST_PORT => {
                DaemonAttribute::McastPort(parse_u16(value).context("IPVS_DAEMON_ATTR_MCAST_PORT")?)
            }
            MCAST_TTL => {
                DaemonAttribute::McastTtl(parse_u8(value).context("IPVS_DAEMON_ATTR_MCAST_TTL")?)
            }
            _ => DaemonAttribute::Other(DefaultNla::parse(buf)?),
        })
    }
}
