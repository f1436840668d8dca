//! The kernel's "IPVS" generic-netlink family, whole: commands, the top-level
//! attributes and the nested service / destination / sync-daemon / statistics /
//! info attributes, with the numbers, types and byte orders of
//! `include/uapi/linux/ip_vs.h` and the policies of
//! `net/netfilter/ipvs/ip_vs_ctl.c`.
//!
//! Every enum whose numbers come from the uapi is `#[non_exhaustive]` and keeps
//! unknown values in an `Other(raw)` variant, so a newer kernel's additions
//! round-trip instead of failing. [`IpvsMessage`] implements
//! netlink-packet-generic's [`GenlFamily`], [`Emitable`] and
//! [`ParseableParametrized`] so it plugs into `genetlink`.
//!
//! Byte orders, as the kernel puts and gets them:
//! - ports (service, destination, tunnel) and the service netmask are
//!   big-endian (`nla_put_be16` / `nla_put_be32`);
//! - the `{flags, mask}` struct, the daemon's multicast port, weights,
//!   thresholds and counters are host order;
//! - addresses are `union nf_inet_addr` (16 bytes, IPv4 in the first 4).

mod common;
mod daemon;
pub(crate) mod dest;
pub(crate) mod service;
mod stats;
#[cfg(test)]
mod tests;

pub use common::{AddressFamily, InetAddr, Protocol};
pub use daemon::{DaemonAttribute, DaemonState};
pub use dest::{DestAttribute, ForwardingMethod, TunnelType};
pub use service::{FlagsWithMask, ServiceAttribute};
pub use stats::{Stats, StatsCounter};

use netlink_packet_core::{
    emit_u32, parse_u32, DecodeError, DefaultNla, Emitable, ErrorContext, Nla, NlaBuffer,
    NlasIterator, Parseable, ParseableParametrized,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};

/// `IPVS_GENL_NAME`: the family name the controller resolves.
pub const IPVS_GENL_NAME: &str = "IPVS";
/// `IPVS_GENL_VERSION`.
pub const IPVS_GENL_VERSION: u8 = 1;

/// Declares a uapi enum with an `Other(raw)` catch-all and the two `From`
/// conversions to and from the raw number.
macro_rules! uapi_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident: $raw:ty {
            $( $(#[$vmeta:meta])* $variant:ident = $value:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A number this crate does not know, kept as sent.
            Other($raw),
        }

        impl From<$raw> for $name {
            fn from(raw: $raw) -> Self {
                match raw {
                    $( $value => $name::$variant, )*
                    other => $name::Other(other),
                }
            }
        }

        impl From<$name> for $raw {
            fn from(value: $name) -> $raw {
                match value {
                    $( $name::$variant => $value, )*
                    $name::Other(raw) => raw,
                }
            }
        }
    };
}
pub(crate) use uapi_enum;

uapi_enum! {
    /// `IPVS_CMD_*`: the generic-netlink command of a message.
    pub enum IpvsCommand: u8 {
        /// `IPVS_CMD_NEW_SERVICE`: add a service; also the command of service dump replies.
        NewService = 1,
        /// `IPVS_CMD_SET_SERVICE`: modify a service.
        SetService = 2,
        /// `IPVS_CMD_DEL_SERVICE`: delete a service (and its destinations).
        DelService = 3,
        /// `IPVS_CMD_GET_SERVICE`: get one service, or dump all with `NLM_F_DUMP`.
        GetService = 4,
        /// `IPVS_CMD_NEW_DEST`: add a destination; also the command of destination dump replies.
        NewDest = 5,
        /// `IPVS_CMD_SET_DEST`: modify a destination.
        SetDest = 6,
        /// `IPVS_CMD_DEL_DEST`: delete a destination.
        DelDest = 7,
        /// `IPVS_CMD_GET_DEST`: dump the destinations of one service.
        GetDest = 8,
        /// `IPVS_CMD_NEW_DAEMON`: start a sync daemon; also the command of daemon dump replies.
        NewDaemon = 9,
        /// `IPVS_CMD_DEL_DAEMON`: stop a sync daemon.
        DelDaemon = 10,
        /// `IPVS_CMD_GET_DAEMON`: dump the running sync daemons.
        GetDaemon = 11,
        /// `IPVS_CMD_SET_CONFIG`: set the timeouts; also the command of the GET_CONFIG reply.
        SetConfig = 12,
        /// `IPVS_CMD_GET_CONFIG`: get the timeouts.
        GetConfig = 13,
        /// `IPVS_CMD_SET_INFO`: only the command of the GET_INFO reply.
        SetInfo = 14,
        /// `IPVS_CMD_GET_INFO`: get the version and connection table size.
        GetInfo = 15,
        /// `IPVS_CMD_ZERO`: zero the counters of one service or of all.
        Zero = 16,
        /// `IPVS_CMD_FLUSH`: delete every service.
        Flush = 17,
    }
}

uapi_enum! {
    /// `IPVS_INFO_ATTR_*`: what a GET_INFO reply carries.
    pub enum InfoKind: u16 {
        /// `IPVS_INFO_ATTR_VERSION`.
        Version = 1,
        /// `IPVS_INFO_ATTR_CONN_TAB_SIZE`.
        ConnTabSize = 2,
    }
}

/// One attribute of a GET_INFO reply (`IPVS_INFO_ATTR_*`, NLA_U32 each).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InfoAttribute {
    /// `IPVS_INFO_ATTR_VERSION`: `IP_VS_VERSION_CODE`, 0x00MMmmpp.
    Version(u32),
    /// `IPVS_INFO_ATTR_CONN_TAB_SIZE`: size of the connection hash table.
    ConnTabSize(u32),
    /// An attribute this crate does not know.
    Other(DefaultNla),
}

/// One top-level attribute (`IPVS_CMD_ATTR_*`).
///
/// A GET_INFO reply (command `SET_INFO`) is the exception: the kernel puts
/// `IPVS_INFO_ATTR_*` at the top level (`ip_vs_genl_get_cmd`), whose numbers
/// collide with `IPVS_CMD_ATTR_SERVICE` / `_DEST`; parsing therefore looks at
/// the command, and those attributes become [`IpvsAttribute::Info`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpvsAttribute {
    /// `IPVS_CMD_ATTR_SERVICE` (1), nested.
    Service(Vec<ServiceAttribute>),
    /// `IPVS_CMD_ATTR_DEST` (2), nested.
    Dest(Vec<DestAttribute>),
    /// `IPVS_CMD_ATTR_DAEMON` (3), nested.
    Daemon(Vec<DaemonAttribute>),
    /// `IPVS_CMD_ATTR_TIMEOUT_TCP` (4): seconds, NLA_U32.
    TimeoutTcp(u32),
    /// `IPVS_CMD_ATTR_TIMEOUT_TCP_FIN` (5): seconds, NLA_U32.
    TimeoutTcpFin(u32),
    /// `IPVS_CMD_ATTR_TIMEOUT_UDP` (6): seconds, NLA_U32.
    TimeoutUdp(u32),
    /// An `IPVS_INFO_ATTR_*` of a GET_INFO reply (see the type's documentation).
    Info(InfoAttribute),
    /// An attribute this crate does not know.
    Other(DefaultNla),
}

pub(crate) const CMD_ATTR_SERVICE: u16 = 1;
pub(crate) const CMD_ATTR_DEST: u16 = 2;
const CMD_ATTR_DAEMON: u16 = 3;
const CMD_ATTR_TIMEOUT_TCP: u16 = 4;
const CMD_ATTR_TIMEOUT_TCP_FIN: u16 = 5;
const CMD_ATTR_TIMEOUT_UDP: u16 = 6;

/// A whole IPVS generic-netlink payload: the command (from the generic
/// header) and the attributes after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsMessage {
    /// The command.
    pub command: IpvsCommand,
    /// The top-level attributes, in wire order.
    pub attributes: Vec<IpvsAttribute>,
}

impl IpvsMessage {
    /// A message with `command` and `attributes`.
    pub fn new(command: IpvsCommand, attributes: Vec<IpvsAttribute>) -> Self {
        IpvsMessage {
            command,
            attributes,
        }
    }

    /// The nested service attributes, if the message has them.
    pub fn service(&self) -> Option<&[ServiceAttribute]> {
        self.attributes.iter().find_map(|a| match a {
            IpvsAttribute::Service(s) => Some(s.as_slice()),
            _ => None,
        })
    }

    /// The nested destination attributes, if the message has them.
    pub fn dest(&self) -> Option<&[DestAttribute]> {
        self.attributes.iter().find_map(|a| match a {
            IpvsAttribute::Dest(d) => Some(d.as_slice()),
            _ => None,
        })
    }

    /// The nested daemon attributes, if the message has them.
    pub fn daemon(&self) -> Option<&[DaemonAttribute]> {
        self.attributes.iter().find_map(|a| match a {
            IpvsAttribute::Daemon(d) => Some(d.as_slice()),
            _ => None,
        })
    }
}

impl GenlFamily for IpvsMessage {
    fn family_name() -> &'static str {
        IPVS_GENL_NAME
    }

    fn command(&self) -> u8 {
        self.command.into()
    }

    fn version(&self) -> u8 {
        IPVS_GENL_VERSION
    }
}

impl Emitable for IpvsMessage {
    fn buffer_len(&self) -> usize {
        self.attributes.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attributes.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let command = IpvsCommand::from(header.cmd);
        let info_reply = command == IpvsCommand::SetInfo;
        let mut attributes = Vec::new();
        for nla in NlasIterator::new(buf) {
            let nla = nla.with_context(|| format!("IPVS {command:?} message"))?;
            let attribute = if info_reply {
                IpvsAttribute::Info(InfoAttribute::parse(&nla)?)
            } else {
                IpvsAttribute::parse(&nla)?
            };
            attributes.push(attribute);
        }
        Ok(IpvsMessage {
            command,
            attributes,
        })
    }
}

impl Nla for InfoAttribute {
    fn value_len(&self) -> usize {
        match self {
            InfoAttribute::Version(_) | InfoAttribute::ConnTabSize(_) => 4,
            InfoAttribute::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            InfoAttribute::Version(_) => InfoKind::Version.into(),
            InfoAttribute::ConnTabSize(_) => InfoKind::ConnTabSize.into(),
            InfoAttribute::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            InfoAttribute::Version(v) | InfoAttribute::ConnTabSize(v) => {
                emit_u32(buffer, *v).expect("4-byte value buffer")
            }
            InfoAttribute::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for InfoAttribute {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let value = buf.value();
        Ok(match InfoKind::from(buf.kind()) {
            InfoKind::Version => {
                InfoAttribute::Version(parse_u32(value).context("IPVS_INFO_ATTR_VERSION")?)
            }
            InfoKind::ConnTabSize => InfoAttribute::ConnTabSize(
                parse_u32(value).context("IPVS_INFO_ATTR_CONN_TAB_SIZE")?,
            ),
            InfoKind::Other(_) => InfoAttribute::Other(DefaultNla::parse(buf)?),
        })
    }
}

impl Nla for IpvsAttribute {
    fn value_len(&self) -> usize {
        match self {
            IpvsAttribute::Service(nested) => nested.as_slice().buffer_len(),
            IpvsAttribute::Dest(nested) => nested.as_slice().buffer_len(),
            IpvsAttribute::Daemon(nested) => nested.as_slice().buffer_len(),
            IpvsAttribute::TimeoutTcp(_)
            | IpvsAttribute::TimeoutTcpFin(_)
            | IpvsAttribute::TimeoutUdp(_) => 4,
            IpvsAttribute::Info(info) => info.value_len(),
            IpvsAttribute::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        // The kernel nests with nla_nest_start_noflag (no NLA_F_NESTED); so do we.
        match self {
            IpvsAttribute::Service(_) => CMD_ATTR_SERVICE,
            IpvsAttribute::Dest(_) => CMD_ATTR_DEST,
            IpvsAttribute::Daemon(_) => CMD_ATTR_DAEMON,
            IpvsAttribute::TimeoutTcp(_) => CMD_ATTR_TIMEOUT_TCP,
            IpvsAttribute::TimeoutTcpFin(_) => CMD_ATTR_TIMEOUT_TCP_FIN,
            IpvsAttribute::TimeoutUdp(_) => CMD_ATTR_TIMEOUT_UDP,
            IpvsAttribute::Info(info) => info.kind(),
            IpvsAttribute::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            IpvsAttribute::Service(nested) => nested.as_slice().emit(buffer),
            IpvsAttribute::Dest(nested) => nested.as_slice().emit(buffer),
            IpvsAttribute::Daemon(nested) => nested.as_slice().emit(buffer),
            IpvsAttribute::TimeoutTcp(v)
            | IpvsAttribute::TimeoutTcpFin(v)
            | IpvsAttribute::TimeoutUdp(v) => emit_u32(buffer, *v).expect("4-byte value buffer"),
            IpvsAttribute::Info(info) => info.emit_value(buffer),
            IpvsAttribute::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for IpvsAttribute {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let value = buf.value();
        Ok(match buf.kind() {
            CMD_ATTR_SERVICE => {
                IpvsAttribute::Service(parse_nested(value).context("in IPVS_CMD_ATTR_SERVICE")?)
            }
            CMD_ATTR_DEST => {
                IpvsAttribute::Dest(parse_nested(value).context("in IPVS_CMD_ATTR_DEST")?)
            }
            CMD_ATTR_DAEMON => {
                IpvsAttribute::Daemon(parse_nested(value).context("in IPVS_CMD_ATTR_DAEMON")?)
            }
            CMD_ATTR_TIMEOUT_TCP => {
                IpvsAttribute::TimeoutTcp(parse_u32(value).context("IPVS_CMD_ATTR_TIMEOUT_TCP")?)
            }
            CMD_ATTR_TIMEOUT_TCP_FIN => IpvsAttribute::TimeoutTcpFin(
                parse_u32(value).context("IPVS_CMD_ATTR_TIMEOUT_TCP_FIN")?,
            ),
            CMD_ATTR_TIMEOUT_UDP => {
                IpvsAttribute::TimeoutUdp(parse_u32(value).context("IPVS_CMD_ATTR_TIMEOUT_UDP")?)
            }
            _ => IpvsAttribute::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// Parses a nested attribute list into `A`s.
pub(crate) fn parse_nested<A>(value: &[u8]) -> Result<Vec<A>, DecodeError>
where
    A: for<'b> Parseable<NlaBuffer<&'b [u8]>>,
{
    NlasIterator::new(value)
        .map(|nla| A::parse(&nla?))
        .collect()
}
