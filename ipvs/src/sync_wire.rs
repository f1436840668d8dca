//! The IPVS connection-sync protocol, version 1: what the kernel's master sync
//! daemon multicasts and its backup daemon installs (`net/netfilter/ipvs/ip_vs_sync.c`),
//! plus the two small messages haldir routers exchange to ask for and
//! acknowledge a bulk resync ([`ResyncRequest`], [`ResyncDone`]).
//!
//! haldir encodes sync messages itself to send a backup the master's WHOLE
//! connection table (`src/bulk_resync.rs`): the backup's kernel installs them
//! exactly as if its kernel peer had sent them. The layout, the checks and the
//! constants below are the kernel's (6.1, unchanged since version 1 appeared
//! in 2.6.39).
//!
//! ```text
//! Message header (8 bytes):
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   reserved 0  |    SyncID     |      Size (whole message)     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Count Conns  |  Version = 1  |          spare = 0            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! then Count Conns connection records, each padded to 4 bytes before the next:
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |    Type       |    Protocol   | Ver.  |        Size           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                             Flags                             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |            State              |         cport                 |
//! |            vport              |         dport                 |
//! |                             fwmark                            |
//! |                             timeout  (in sec.)                |
//! |         caddr, vaddr, daddr (4 bytes each, 16 for IPv6)       |
//! |         options: type (1), length (1), data ...               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! What the kernel's backup (`ip_vs_process_message`) demands, and
//! [`SyncMessage::parse`] checks the same way: the datagram is exactly `Size`
//! bytes; the SyncID equals the backup's unless the backup's is 0; version 1
//! with reserved and spare zero (anything else is read as the old version 0);
//! every record lies inside the datagram, has record-version 0 and type 0
//! (IPv4) or 1 (IPv6); options are non-empty and inside the record. It then
//! drops single records whose protocol it does not know or whose state is out
//! of range for the protocol (templates are exempt), so [`SyncConn`] states
//! must be the kernel's numbers ([`tcp_state`], [`sctp_state`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Length of the version 1 message header.
pub const HEADER_LEN: usize = 8;
/// The message version haldir speaks.
pub const SYNC_PROTO_VER: u8 = 1;
/// Length of an IPv4 connection record without options (`struct ip_vs_sync_v4`).
pub const CONN_V4_LEN: usize = 36;
/// Length of an IPv6 connection record without options (`struct ip_vs_sync_v6`).
pub const CONN_V6_LEN: usize = 72;
/// The kernel's default multicast group (`IP_VS_SYNC_GROUP`).
pub const DEFAULT_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// The kernel's default port (`IP_VS_SYNC_PORT`).
pub const DEFAULT_PORT: u16 = 8848;
/// The payload the kernel's master fills when no `maxlen` is set: a 1500-byte
/// MTU less the IPv4 and UDP headers (`start_sync_thread`).
pub const DEFAULT_MAXLEN_V4: usize = 1500 - 20 - 8;
/// The same for an IPv6 group (40-byte IPv6 header).
pub const DEFAULT_MAXLEN_V6: usize = 1500 - 40 - 8;

// Byte offsets in the message header.
const H_RESERVED: usize = 0;
const H_SYNCID: usize = 1;
const H_SIZE: usize = 2;
const H_NR_CONNS: usize = 4;
const H_VERSION: usize = 5;
const H_SPARE: usize = 6;

// Byte offsets in a connection record.
const C_TYPE: usize = 0;
const C_PROTOCOL: usize = 1;
const C_VER_SIZE: usize = 2;
const C_FLAGS: usize = 4;
const C_STATE: usize = 8;
const C_CPORT: usize = 10;
const C_VPORT: usize = 12;
const C_DPORT: usize = 14;
const C_FWMARK: usize = 16;
const C_TIMEOUT: usize = 20;
const C_ADDRS: usize = 24;

/// Type bit: the record carries IPv6 addresses (`STYPE_F_INET6`).
const STYPE_F_INET6: u8 = 1;
/// The record version lives in the top 4 bits of `ver_size` (`SVER_SHIFT`).
const SVER_SHIFT: u16 = 12;
const SVER_MASK: u16 = 0x0fff;

/// Connection flags (`IP_VS_CONN_F_*`, include/uapi/linux/ip_vs.h).
pub mod flags {
    /// Mask of the forwarding method.
    pub const FWD_MASK: u32 = 0x0007;
    /// Masquerading (NAT).
    pub const MASQ: u32 = 0x0000;
    /// Local node.
    pub const LOCALNODE: u32 = 0x0001;
    /// Tunnelling.
    pub const TUNNEL: u32 = 0x0002;
    /// Direct routing.
    pub const DROUTE: u32 = 0x0003;
    /// Cache bypass.
    pub const BYPASS: u32 = 0x0004;
    /// The entry was created by sync (the backup sets it itself).
    pub const SYNC: u32 = 0x0020;
    /// Hashed entry (never sent).
    pub const HASHED: u32 = 0x0040;
    /// No output packets.
    pub const NOOUTPUT: u32 = 0x0080;
    /// Not established (counted as an inactive connection).
    pub const INACTIVE: u32 = 0x0100;
    /// Output sequence adjustment.
    pub const OUT_SEQ: u32 = 0x0200;
    /// Input sequence adjustment.
    pub const IN_SEQ: u32 = 0x0400;
    /// No client port yet.
    pub const NO_CPORT: u32 = 0x0800;
    /// A persistence template, not a connection.
    pub const TEMPLATE: u32 = 0x1000;
    /// One-packet scheduling (never synced).
    pub const ONE_PACKET: u32 = 0x2000;
    /// What a backup keeps of the flags it receives (`IP_VS_CONN_F_BACKUP_MASK`).
    pub const BACKUP_MASK: u32 =
        FWD_MASK | NOOUTPUT | INACTIVE | IN_SEQ | OUT_SEQ | NO_CPORT | TEMPLATE;
}

/// IP protocol numbers IPVS balances.
pub mod proto {
    /// `IPPROTO_IP`: the protocol of firewall-mark persistence templates.
    pub const IP: u8 = 0;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// SCTP.
    pub const SCTP: u8 = 132;
}

/// TCP states, by the name `/proc/net/ip_vs_conn` prints, in the kernel's
/// numbering (`IP_VS_TCP_S_*`); the kernel's backup refuses a number past the last.
pub const TCP_STATES: [&str; 11] = [
    "NONE",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "SYNACK",
];

/// SCTP states (`IP_VS_SCTP_S_*`), by their `/proc` names.
pub const SCTP_STATES: [&str; 13] = [
    "NONE",
    "INIT1",
    "INIT",
    "C-SENT",
    "C-REPLIED",
    "C-WAIT",
    "C-ECHOED",
    "ESTABLISHED",
    "S-SENT",
    "S-RECEIVED",
    "S-ACK-SENT",
    "REJECTED",
    "CLOSED",
];

/// Template states (`IP_VS_CTPL_S_*`).
pub const TEMPLATE_STATES: [&str; 2] = ["NONE", "ASSURED"];

/// The kernel's number of TCP state `name`.
pub fn tcp_state(name: &str) -> Option<u16> {
    TCP_STATES.iter().position(|s| *s == name).map(|i| i as u16)
}

/// The kernel's number of SCTP state `name`.
pub fn sctp_state(name: &str) -> Option<u16> {
    SCTP_STATES
        .iter()
        .position(|s| *s == name)
        .map(|i| i as u16)
}

/// Why bytes are not a version 1 sync message, in the order the kernel checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncWireError {
    /// Shorter than the header.
    TooShort,
    /// `Size` is not the datagram's length.
    SizeMismatch {
        /// What the header says.
        header: u16,
        /// The datagram's length.
        actual: usize,
    },
    /// Not version 1 (or reserved / spare not zero: the old version 0).
    NotVersion1,
    /// A record runs past the datagram.
    Truncated,
    /// A record's version nibble is not 0.
    RecordVersion(u8),
    /// A record's type is neither IPv4 (0) nor IPv6 (1).
    RecordType(u8),
    /// A record's size is smaller than its fixed part.
    RecordSize(u16),
    /// An option is empty or runs past its record.
    BadOption,
}

impl std::fmt::Display for SyncWireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncWireError::TooShort => write!(f, "shorter than the 8-byte header"),
            SyncWireError::SizeMismatch { header, actual } => {
                write!(f, "header size {header} but {actual} bytes")
            }
            SyncWireError::NotVersion1 => write!(f, "not a version 1 message"),
            SyncWireError::Truncated => write!(f, "a connection record runs past the message"),
            SyncWireError::RecordVersion(v) => write!(f, "connection record version {v}"),
            SyncWireError::RecordType(t) => write!(f, "connection record type {t}"),
            SyncWireError::RecordSize(s) => write!(f, "connection record size {s}"),
            SyncWireError::BadOption => write!(f, "bad connection record option"),
        }
    }
}

impl std::error::Error for SyncWireError {}

/// One connection (or persistence template) as the sync protocol carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConn {
    /// IP protocol (6 TCP, 17 UDP, 132 SCTP, 0 for firewall-mark templates).
    pub protocol: u8,
    /// `IP_VS_CONN_F_*` ([`flags`]).
    pub flags: u32,
    /// The state number of the protocol ([`tcp_state`], ...).
    pub state: u16,
    /// Client port.
    pub cport: u16,
    /// Virtual port.
    pub vport: u16,
    /// Destination (real server) port.
    pub dport: u16,
    /// Firewall mark of the service (0: none).
    pub fwmark: u32,
    /// Seconds until the entry expires on the backup (0: the backup's default).
    pub timeout: u32,
    /// Client address (all three addresses are of one family).
    pub caddr: IpAddr,
    /// Virtual address.
    pub vaddr: IpAddr,
    /// Destination address.
    pub daddr: IpAddr,
    /// Options as they were on the wire: (type, data).
    pub options: Vec<(u8, Vec<u8>)>,
}

impl SyncConn {
    /// Whether its addresses are IPv6.
    pub fn is_ipv6(&self) -> bool {
        self.caddr.is_ipv6()
    }

    /// Bytes of the record, without trailing padding.
    pub fn buffer_len(&self) -> usize {
        let fixed = if self.is_ipv6() {
            CONN_V6_LEN
        } else {
            CONN_V4_LEN
        };
        fixed
            + self
                .options
                .iter()
                .map(|(_, data)| 2 + data.len())
                .sum::<usize>()
    }

    /// Appends the record (no padding) to `out`. Addresses of another family
    /// than `caddr` are written as that family's unspecified address.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let len = self.buffer_len();
        out.resize(start + C_ADDRS, 0);
        let b = &mut out[start..];
        b[C_TYPE] = if self.is_ipv6() { STYPE_F_INET6 } else { 0 };
        b[C_PROTOCOL] = self.protocol;
        b[C_VER_SIZE..C_VER_SIZE + 2].copy_from_slice(&((len as u16) & SVER_MASK).to_be_bytes());
        b[C_FLAGS..C_FLAGS + 4].copy_from_slice(&self.flags.to_be_bytes());
        b[C_STATE..C_STATE + 2].copy_from_slice(&self.state.to_be_bytes());
        b[C_CPORT..C_CPORT + 2].copy_from_slice(&self.cport.to_be_bytes());
        b[C_VPORT..C_VPORT + 2].copy_from_slice(&self.vport.to_be_bytes());
        b[C_DPORT..C_DPORT + 2].copy_from_slice(&self.dport.to_be_bytes());
        b[C_FWMARK..C_FWMARK + 4].copy_from_slice(&self.fwmark.to_be_bytes());
        b[C_TIMEOUT..C_TIMEOUT + 4].copy_from_slice(&self.timeout.to_be_bytes());
        let v6 = self.is_ipv6();
        for addr in [self.caddr, self.vaddr, self.daddr] {
            match (v6, addr) {
                (false, IpAddr::V4(a)) => out.extend_from_slice(&a.octets()),
                (false, IpAddr::V6(_)) => out.extend_from_slice(&[0; 4]),
                (true, IpAddr::V6(a)) => out.extend_from_slice(&a.octets()),
                (true, IpAddr::V4(a)) => out.extend_from_slice(&a.to_ipv6_mapped().octets()),
            }
        }
        for (kind, data) in &self.options {
            out.push(*kind);
            out.push(data.len() as u8);
            out.extend_from_slice(data);
        }
    }

    /// Reads one record from `record` (exactly its `Size` bytes).
    fn parse(record: &[u8]) -> Result<SyncConn, SyncWireError> {
        let kind = record[C_TYPE];
        let v6 = match kind {
            0 => false,
            STYPE_F_INET6 => true,
            other => return Err(SyncWireError::RecordType(other)),
        };
        let fixed = if v6 { CONN_V6_LEN } else { CONN_V4_LEN };
        if record.len() < fixed {
            return Err(SyncWireError::RecordSize(record.len() as u16));
        }
        let u16_at = |at: usize| u16::from_be_bytes([record[at], record[at + 1]]);
        let u32_at = |at: usize| {
            u32::from_be_bytes([record[at], record[at + 1], record[at + 2], record[at + 3]])
        };
        let addr = |i: usize| -> IpAddr {
            if v6 {
                let at = C_ADDRS + 16 * i;
                let mut o = [0u8; 16];
                o.copy_from_slice(&record[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(o))
            } else {
                let at = C_ADDRS + 4 * i;
                IpAddr::V4(Ipv4Addr::new(
                    record[at],
                    record[at + 1],
                    record[at + 2],
                    record[at + 3],
                ))
            }
        };
        // Options: type, length (non-zero), data; all inside the record.
        let mut options = Vec::new();
        let mut p = fixed;
        while p < record.len() {
            if p + 2 > record.len() {
                return Err(SyncWireError::BadOption);
            }
            let (kind, len) = (record[p], usize::from(record[p + 1]));
            p += 2;
            if len == 0 || p + len > record.len() {
                return Err(SyncWireError::BadOption);
            }
            options.push((kind, record[p..p + len].to_vec()));
            p += len;
        }
        Ok(SyncConn {
            protocol: record[C_PROTOCOL],
            flags: u32_at(C_FLAGS),
            state: u16_at(C_STATE),
            cport: u16_at(C_CPORT),
            vport: u16_at(C_VPORT),
            dport: u16_at(C_DPORT),
            fwmark: u32_at(C_FWMARK),
            timeout: u32_at(C_TIMEOUT),
            caddr: addr(0),
            vaddr: addr(1),
            daddr: addr(2),
            options,
        })
    }
}

/// Bytes of padding after a record of `len` bytes (records start 4-aligned).
fn padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// A version 1 sync message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncMessage {
    /// The sync id (a backup with a non-zero id drops other ids).
    pub sync_id: u8,
    /// Its records (at most 255).
    pub conns: Vec<SyncConn>,
}

impl SyncMessage {
    /// Parses a datagram with the kernel backup's checks (see the module doc).
    pub fn parse(bytes: &[u8]) -> Result<SyncMessage, SyncWireError> {
        if bytes.len() < HEADER_LEN {
            return Err(SyncWireError::TooShort);
        }
        let size = u16::from_be_bytes([bytes[H_SIZE], bytes[H_SIZE + 1]]);
        if usize::from(size) != bytes.len() {
            return Err(SyncWireError::SizeMismatch {
                header: size,
                actual: bytes.len(),
            });
        }
        if bytes[H_VERSION] != SYNC_PROTO_VER
            || bytes[H_RESERVED] != 0
            || bytes[H_SPARE] != 0
            || bytes[H_SPARE + 1] != 0
        {
            return Err(SyncWireError::NotVersion1);
        }
        let count = usize::from(bytes[H_NR_CONNS]);
        let mut conns = Vec::with_capacity(count);
        let mut p = HEADER_LEN;
        for _ in 0..count {
            if p + CONN_V4_LEN > bytes.len() {
                return Err(SyncWireError::Truncated);
            }
            let ver_size = u16::from_be_bytes([bytes[p + C_VER_SIZE], bytes[p + C_VER_SIZE + 1]]);
            let size = usize::from(ver_size & SVER_MASK);
            if p + size > bytes.len() {
                return Err(SyncWireError::Truncated);
            }
            if ver_size >> SVER_SHIFT != 0 {
                return Err(SyncWireError::RecordVersion((ver_size >> SVER_SHIFT) as u8));
            }
            if size < C_ADDRS {
                return Err(SyncWireError::RecordSize(size as u16));
            }
            conns.push(SyncConn::parse(&bytes[p..p + size])?);
            p += size + padding(size);
        }
        Ok(SyncMessage {
            sync_id: bytes[H_SYNCID],
            conns,
        })
    }

    /// Bytes of the message.
    pub fn buffer_len(&self) -> usize {
        let mut len = HEADER_LEN;
        for (i, conn) in self.conns.iter().enumerate() {
            if i > 0 {
                len += padding(len);
            }
            len += conn.buffer_len();
        }
        len
    }

    /// The datagram, laid out as the kernel's master lays it out: padding
    /// only between records.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buffer_len());
        out.extend_from_slice(&[0, self.sync_id, 0, 0, 0, SYNC_PROTO_VER, 0, 0]);
        let count = self.conns.len().min(255);
        for (i, conn) in self.conns[..count].iter().enumerate() {
            if i > 0 {
                out.resize(out.len() + padding(out.len()), 0);
            }
            conn.emit(&mut out);
        }
        let size = out.len() as u16;
        out[H_SIZE..H_SIZE + 2].copy_from_slice(&size.to_be_bytes());
        out[H_NR_CONNS] = count as u8;
        out
    }
}

/// Packs `conns` into datagrams of at most `max_len` bytes (and 255 records)
/// each, as the kernel's master fills its buffers. A record that cannot fit
/// even alone is left out and counted in the second value.
pub fn pack(sync_id: u8, conns: &[SyncConn], max_len: usize) -> (Vec<Vec<u8>>, usize) {
    let mut datagrams = Vec::new();
    let mut current = SyncMessage {
        sync_id,
        conns: Vec::new(),
    };
    let mut len = HEADER_LEN;
    let mut too_big = 0;
    for conn in conns {
        let need = conn.buffer_len();
        if HEADER_LEN + need > max_len {
            too_big += 1;
            continue;
        }
        let pad = if current.conns.is_empty() {
            0
        } else {
            padding(len)
        };
        if len + pad + need > max_len || current.conns.len() == 255 {
            datagrams.push(current.emit());
            current.conns.clear();
            len = HEADER_LEN;
            current.conns.push(conn.clone());
            len += need;
        } else {
            current.conns.push(conn.clone());
            len += pad + need;
        }
    }
    if !current.conns.is_empty() {
        datagrams.push(current.emit());
    }
    (datagrams, too_big)
}

/// Magic of haldir's resync messages: "HLDR".
pub const RESYNC_MAGIC: [u8; 4] = *b"HLDR";
/// Version of haldir's resync messages.
pub const RESYNC_VERSION: u8 = 1;
/// Length of a [`ResyncRequest`].
pub const RESYNC_REQUEST_LEN: usize = 16;
/// Length of a [`ResyncDone`].
pub const RESYNC_DONE_LEN: usize = 28;
const KIND_REQUEST: u8 = 1;
const KIND_DONE: u8 = 2;

/// A backup haldir asks the master haldir for the whole connection table.
///
/// ```text
/// | "HLDR" (4) | version 1 | kind 1 | syncid | pace | nonce (8) |
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResyncRequest {
    /// The sync id of the asking backup.
    pub sync_id: u8,
    /// How slowly to send: 0 fastest; the backup asks again with a higher
    /// pace when its kernel's receive socket dropped messages.
    pub pace: u8,
    /// Chosen by the backup for this resync; echoed in the [`ResyncDone`].
    pub nonce: u64,
}

/// The master haldir has sent the whole table for `nonce`.
///
/// ```text
/// | "HLDR" (4) | version 1 | kind 2 | syncid | 0 | nonce (8) |
/// | records (4) | messages (4) | dump milliseconds (4) |
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResyncDone {
    /// The master's sync id.
    pub sync_id: u8,
    /// The request's nonce.
    pub nonce: u64,
    /// Connection records sent.
    pub records: u32,
    /// Sync messages sent.
    pub messages: u32,
    /// Milliseconds from reading the table to the last message sent.
    pub millis: u32,
}

/// A haldir resync message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncMessage {
    /// See [`ResyncRequest`].
    Request(ResyncRequest),
    /// See [`ResyncDone`].
    Done(ResyncDone),
}

/// Why bytes are not a haldir resync message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncWireError {
    /// Not the magic "HLDR".
    BadMagic,
    /// Another version.
    BadVersion(u8),
    /// Unknown kind.
    BadKind(u8),
    /// Not the length of its kind.
    BadLength(usize),
    /// The reserved byte of a DONE is not zero.
    Reserved(u8),
}

impl std::fmt::Display for ResyncWireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResyncWireError::BadMagic => write!(f, "not a haldir resync message (magic)"),
            ResyncWireError::BadVersion(v) => write!(f, "resync message version {v}"),
            ResyncWireError::BadKind(k) => write!(f, "resync message kind {k}"),
            ResyncWireError::BadLength(l) => write!(f, "resync message of {l} bytes"),
            ResyncWireError::Reserved(r) => write!(f, "resync DONE with reserved byte {r}"),
        }
    }
}

impl std::error::Error for ResyncWireError {}

/// Length of the authentication trailer a resync message may end with (the `auth_hmac`
/// trailer of VRRP adverts, `haldir_vrrp::wire::auth`; its presence is told by length).
pub const RESYNC_TRAILER_LEN: usize = 28;

impl ResyncMessage {
    /// Parses a datagram that may end with an authentication trailer: the message, and the
    /// trailer's bytes when the datagram is exactly one trailer longer than its kind.
    pub fn parse_signed(bytes: &[u8]) -> Result<(ResyncMessage, Option<&[u8]>), ResyncWireError> {
        let unsigned_len = match bytes.get(5) {
            Some(&KIND_REQUEST) => RESYNC_REQUEST_LEN,
            Some(&KIND_DONE) => RESYNC_DONE_LEN,
            _ => bytes.len(),
        };
        if bytes.len() == unsigned_len + RESYNC_TRAILER_LEN {
            let (message, trailer) = bytes.split_at(unsigned_len);
            return Ok((ResyncMessage::parse(message)?, Some(trailer)));
        }
        Ok((ResyncMessage::parse(bytes)?, None))
    }

    /// Parses a datagram; anything but an exact request or done is an error.
    pub fn parse(bytes: &[u8]) -> Result<ResyncMessage, ResyncWireError> {
        if bytes.len() < 8 || bytes[..4] != RESYNC_MAGIC {
            return Err(ResyncWireError::BadMagic);
        }
        if bytes[4] != RESYNC_VERSION {
            return Err(ResyncWireError::BadVersion(bytes[4]));
        }
        let u32_at = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let nonce = |bytes: &[u8]| {
            let mut n = [0u8; 8];
            n.copy_from_slice(&bytes[8..16]);
            u64::from_be_bytes(n)
        };
        match bytes[5] {
            KIND_REQUEST if bytes.len() == RESYNC_REQUEST_LEN => {
                Ok(ResyncMessage::Request(ResyncRequest {
                    sync_id: bytes[6],
                    pace: bytes[7],
                    nonce: nonce(bytes),
                }))
            }
            KIND_DONE if bytes.len() == RESYNC_DONE_LEN && bytes[7] != 0 => {
                Err(ResyncWireError::Reserved(bytes[7]))
            }
            KIND_DONE if bytes.len() == RESYNC_DONE_LEN => Ok(ResyncMessage::Done(ResyncDone {
                sync_id: bytes[6],
                nonce: nonce(bytes),
                records: u32_at(16),
                messages: u32_at(20),
                millis: u32_at(24),
            })),
            KIND_REQUEST | KIND_DONE => Err(ResyncWireError::BadLength(bytes.len())),
            other => Err(ResyncWireError::BadKind(other)),
        }
    }

    /// The datagram.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = RESYNC_MAGIC.to_vec();
        out.push(RESYNC_VERSION);
        match self {
            ResyncMessage::Request(r) => {
                out.extend_from_slice(&[KIND_REQUEST, r.sync_id, r.pace]);
                out.extend_from_slice(&r.nonce.to_be_bytes());
            }
            ResyncMessage::Done(d) => {
                out.extend_from_slice(&[KIND_DONE, d.sync_id, 0]);
                out.extend_from_slice(&d.nonce.to_be_bytes());
                out.extend_from_slice(&d.records.to_be_bytes());
                out.extend_from_slice(&d.messages.to_be_bytes());
                out.extend_from_slice(&d.millis.to_be_bytes());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One IPv4 DR connection, ESTABLISHED, 10.3.0.9:40000 -> 10.3.0.100:80 -> 10.3.0.11:80,
    /// 900 s, syncid 42: the bytes a 6.1 master daemon sends for it.
    const ONE_V4: [u8; 44] = [
        0x00, 0x2a, 0x00, 0x2c, // reserved, syncid 42, size 44
        0x01, 0x01, 0x00, 0x00, // 1 conn, version 1, spare
        0x00, 0x06, 0x00, 0x24, // type v4, TCP, ver 0 size 36
        0x00, 0x00, 0x00, 0x03, // flags: DROUTE
        0x00, 0x01, 0x9c, 0x40, // state ESTABLISHED, cport 40000
        0x00, 0x50, 0x00, 0x50, // vport 80, dport 80
        0x00, 0x00, 0x00, 0x00, // fwmark
        0x00, 0x00, 0x03, 0x84, // timeout 900
        0x0a, 0x03, 0x00, 0x09, // caddr
        0x0a, 0x03, 0x00, 0x64, // vaddr
        0x0a, 0x03, 0x00, 0x0b, // daddr
    ];

    fn conn_v4(cport: u16) -> SyncConn {
        SyncConn {
            protocol: proto::TCP,
            flags: flags::DROUTE,
            state: tcp_state("ESTABLISHED").unwrap(),
            cport,
            vport: 80,
            dport: 80,
            fwmark: 0,
            timeout: 900,
            caddr: "10.3.0.9".parse().unwrap(),
            vaddr: "10.3.0.100".parse().unwrap(),
            daddr: "10.3.0.11".parse().unwrap(),
            options: Vec::new(),
        }
    }

    #[test]
    fn an_ipv4_connection_parses_and_emits_byte_for_byte() {
        let message = SyncMessage::parse(&ONE_V4).unwrap();
        assert_eq!(message.sync_id, 42);
        assert_eq!(message.conns, [conn_v4(40000)]);
        assert_eq!(message.emit(), ONE_V4);
        assert_eq!(message.buffer_len(), ONE_V4.len());
    }

    #[test]
    fn an_ipv6_record_with_a_sequence_option_round_trips_with_padding() {
        let mut v6 = conn_v4(1234);
        v6.caddr = "2001:db8::9".parse().unwrap();
        v6.vaddr = "2001:db8::100".parse().unwrap();
        v6.daddr = "2001:db8::11".parse().unwrap();
        v6.flags |= flags::IN_SEQ;
        v6.options = vec![(1, vec![7; 24])];
        let mut odd = conn_v4(5);
        odd.options = vec![(0x41, vec![1])]; // 36 + 3 bytes: 1 byte of padding follows
        let message = SyncMessage {
            sync_id: 0,
            conns: vec![odd.clone(), v6.clone(), conn_v4(6)],
        };
        let bytes = message.emit();
        assert_eq!(bytes.len(), 8 + 39 + 1 + (72 + 26) + 2 + 36);
        assert_eq!(bytes[8 + 39], 0, "padding");
        // The IPv6 record: type 1, size 98.
        assert_eq!(&bytes[48..52], &[1, 6, 0, 98]);
        assert_eq!(SyncMessage::parse(&bytes).unwrap(), message);
    }

    #[test]
    fn the_kernel_backups_checks_reject_what_it_would_drop() {
        let mut b = ONE_V4.to_vec();
        assert_eq!(SyncMessage::parse(&b[..7]), Err(SyncWireError::TooShort));
        b.push(0);
        assert!(matches!(
            SyncMessage::parse(&b),
            Err(SyncWireError::SizeMismatch { .. })
        ));
        let mut b = ONE_V4.to_vec();
        b[5] = 0;
        assert_eq!(SyncMessage::parse(&b), Err(SyncWireError::NotVersion1));
        let mut b = ONE_V4.to_vec();
        b[0] = 1; // a version 0 message has the count here
        assert_eq!(SyncMessage::parse(&b), Err(SyncWireError::NotVersion1));
        let mut b = ONE_V4.to_vec();
        b[10] = 0x10; // record version 1
        assert_eq!(SyncMessage::parse(&b), Err(SyncWireError::RecordVersion(1)));
        let mut b = ONE_V4.to_vec();
        b[8] = 2;
        assert_eq!(SyncMessage::parse(&b), Err(SyncWireError::RecordType(2)));
        let mut b = ONE_V4.to_vec();
        b[4] = 2; // two records announced, one present
        assert_eq!(SyncMessage::parse(&b), Err(SyncWireError::Truncated));
        let mut b = ONE_V4.to_vec();
        b[8] = 1; // IPv6 type in an IPv4-sized record
        assert_eq!(SyncMessage::parse(&b), Err(SyncWireError::RecordSize(36)));
    }

    #[test]
    fn an_empty_option_is_refused() {
        let mut c = conn_v4(1);
        c.options = vec![(3, vec![])];
        let bytes = SyncMessage {
            sync_id: 1,
            conns: vec![c],
        }
        .emit();
        assert_eq!(SyncMessage::parse(&bytes), Err(SyncWireError::BadOption));
    }

    #[test]
    fn packing_fills_datagrams_up_to_maxlen_like_the_kernel() {
        let conns: Vec<SyncConn> = (0..100).map(conn_v4).collect();
        let (datagrams, too_big) = pack(7, &conns, DEFAULT_MAXLEN_V4);
        assert_eq!(too_big, 0);
        // (1472 - 8) / 36 = 40 records per datagram.
        assert_eq!(
            datagrams.iter().map(Vec::len).collect::<Vec<_>>(),
            [8 + 40 * 36, 8 + 40 * 36, 8 + 20 * 36]
        );
        let back: Vec<SyncConn> = datagrams
            .iter()
            .flat_map(|d| SyncMessage::parse(d).unwrap().conns)
            .collect();
        assert_eq!(back, conns);
        let (datagrams, too_big) = pack(7, &conns[..1], 40);
        assert!(datagrams.is_empty());
        assert_eq!(too_big, 1);
        let (datagrams, _) = pack(7, &(0..600).map(conn_v4).collect::<Vec<_>>(), 60000);
        assert_eq!(datagrams.len(), 3, "at most 255 records a message");
    }

    #[test]
    fn resync_messages_round_trip_and_junk_is_refused() {
        let request = ResyncMessage::Request(ResyncRequest {
            sync_id: 42,
            pace: 3,
            nonce: 0x0102_0304_0506_0708,
        });
        let bytes = request.emit();
        assert_eq!(
            bytes,
            [b'H', b'L', b'D', b'R', 1, 1, 42, 3, 1, 2, 3, 4, 5, 6, 7, 8]
        );
        assert_eq!(ResyncMessage::parse(&bytes), Ok(request));
        let done = ResyncMessage::Done(ResyncDone {
            sync_id: 42,
            nonce: 9,
            records: 10_000,
            messages: 250,
            millis: 77,
        });
        let bytes = done.emit();
        assert_eq!(bytes.len(), RESYNC_DONE_LEN);
        assert_eq!(&bytes[16..20], &10_000u32.to_be_bytes());
        assert_eq!(ResyncMessage::parse(&bytes), Ok(done));
        assert_eq!(
            ResyncMessage::parse(&bytes[..27]),
            Err(ResyncWireError::BadLength(27))
        );
        let mut reserved = bytes.clone();
        reserved[7] = 0xff; // found by the fuzzer: it was ignored, and not emitted back
        assert_eq!(
            ResyncMessage::parse(&reserved),
            Err(ResyncWireError::Reserved(0xff))
        );
        assert_eq!(
            ResyncMessage::parse(b"HLDX\x01\x01\x00\x00"),
            Err(ResyncWireError::BadMagic)
        );
        assert_eq!(
            ResyncMessage::parse(b"HLDR\x02\x01\x00\x00"),
            Err(ResyncWireError::BadVersion(2))
        );
        assert_eq!(
            ResyncMessage::parse(b"HLDR\x01\x09\x00\x00"),
            Err(ResyncWireError::BadKind(9))
        );
    }
}
