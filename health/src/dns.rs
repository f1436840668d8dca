//! `DNS_CHECK`: send one DNS query over UDP (`type`, default SOA; `name`, default `.`) with
//! RD set, and call the server up when a response with the same ID, QR set and RCODE 0
//! (NOERROR) arrives within `connect_timeout` (keepalived `check_dns.c`; an empty answer
//! section is still up). Datagrams with another ID or without QR are ignored, as keepalived
//! does, and the wait goes on.
//!
//! ```text
//!  RFC 1035 §4.1.1 header (12 bytes)
//!   0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15
//!  +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
//!  |                      ID                       |
//!  |QR|  Opcode   |AA|TC|RD|RA|   Z    |   RCODE   |
//!  |                    QDCOUNT                    |
//!  |                    ANCOUNT                    |
//!  |                    NSCOUNT                    |
//!  |                    ARCOUNT                    |
//!  +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;

use crate::tcp::{humanize, DEFAULT_CONNECT_TIMEOUT};
use crate::{CheckFuture, CheckOutcome, Checker};

/// Byte offsets and bits of the DNS header (RFC 1035 §4.1.1).
mod field {
    pub const ID: usize = 0;
    pub const FLAGS: usize = 2;
    pub const QDCOUNT: usize = 4;
    pub const HEADER_LEN: usize = 12;
    pub const QR: u16 = 0x8000;
    pub const RD: u16 = 0x0100;
    pub const RCODE_MASK: u16 = 0x000f;
}

/// Query types keepalived's `DNS_CHECK` accepts (RFC 1035 §3.2.2, RFC 3596 for AAAA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsType {
    /// 1
    A,
    /// 2
    Ns,
    /// 5
    Cname,
    /// 6 (keepalived's default)
    Soa,
    /// 15
    Mx,
    /// 16
    Txt,
    /// 28
    Aaaa,
}

impl DnsType {
    /// The wire value.
    pub fn code(self) -> u16 {
        match self {
            DnsType::A => 1,
            DnsType::Ns => 2,
            DnsType::Cname => 5,
            DnsType::Soa => 6,
            DnsType::Mx => 15,
            DnsType::Txt => 16,
            DnsType::Aaaa => 28,
        }
    }
}

/// Why a `DNS_CHECK` configuration is unusable.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DnsConfigError {
    /// A label is empty or longer than 63 bytes, or the name longer than 255.
    #[error("DNS name {0:?}: labels must be 1-63 bytes and the name at most 255")]
    Name(String),
}

/// A `DNS_CHECK` block as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsCheckConfig {
    /// Where to send the query (usually port 53).
    pub target: SocketAddr,
    /// `bind_to`: the query's source.
    pub bind_to: Option<SocketAddr>,
    /// `connect_timeout`: how long to wait for the answer.
    pub timeout: Duration,
    /// `type`.
    pub query_type: DnsType,
    /// `name`.
    pub name: String,
}

/// A `DNS_CHECK`.
#[derive(Debug, Clone)]
pub struct DnsCheck {
    target: SocketAddr,
    bind_to: Option<SocketAddr>,
    timeout: Duration,
    /// The query without its ID (bytes 0..2 are overwritten per run).
    query: Vec<u8>,
}

static NEXT_ID: AtomicU16 = AtomicU16::new(0);

impl DnsCheck {
    /// A check of `target` (usually port 53) asking `query_type` for `name`.
    pub fn new(
        target: SocketAddr,
        query_type: DnsType,
        name: &str,
    ) -> Result<Self, DnsConfigError> {
        Ok(DnsCheck {
            target,
            bind_to: None,
            timeout: DEFAULT_CONNECT_TIMEOUT,
            query: encode_query(0, query_type, name)?,
        })
    }

    /// The check `config` describes (fails only on a name [`encode_query`] refuses).
    pub fn from_config(config: &DnsCheckConfig) -> Result<Self, DnsConfigError> {
        let check = DnsCheck::new(config.target, config.query_type, &config.name)?
            .with_timeout(config.timeout);
        Ok(match config.bind_to {
            Some(source) => check.with_bind_to(source),
            None => check,
        })
    }

    /// `connect_timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `bind_to`.
    pub fn with_bind_to(mut self, source: SocketAddr) -> Self {
        self.bind_to = Some(source);
        self
    }

    async fn run(&self) -> Result<(), String> {
        let source = self.bind_to.unwrap_or(match self.target {
            SocketAddr::V4(_) => "0.0.0.0:0".parse().expect("literal"),
            SocketAddr::V6(_) => "[::]:0".parse().expect("literal"),
        });
        let socket = UdpSocket::bind(source)
            .await
            .map_err(|e| format!("bind {source}: {e}"))?;
        socket
            .connect(self.target)
            .await
            .map_err(|e| format!("connect {}: {e}", self.target))?;
        let id = query_id();
        let mut query = self.query.clone();
        query[field::ID..field::ID + 2].copy_from_slice(&id.to_be_bytes());
        socket
            .send(&query)
            .await
            .map_err(|e| format!("send to {}: {e}", self.target))?;
        let mut buf = [0u8; 512];
        loop {
            let n = socket
                .recv(&mut buf)
                .await
                .map_err(|e| format!("receive from {}: {e}", self.target))?;
            match check_response(&buf[..n], id) {
                Response::Ignore => continue,
                Response::Ok => return Ok(()),
                Response::Error(rcode) => {
                    return Err(format!("{} answered with RCODE {rcode}", self.target))
                }
            }
        }
    }
}

fn query_id() -> u16 {
    let clock = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (clock as u16) ^ NEXT_ID.fetch_add(0x9e37, Ordering::Relaxed)
}

/// Encode a query: header (ID, RD, QDCOUNT 1), QNAME, QTYPE, QCLASS IN.
pub fn encode_query(id: u16, query_type: DnsType, name: &str) -> Result<Vec<u8>, DnsConfigError> {
    let bad = || DnsConfigError::Name(name.to_string());
    let mut out = vec![0u8; field::HEADER_LEN];
    out[field::ID..field::ID + 2].copy_from_slice(&id.to_be_bytes());
    out[field::FLAGS..field::FLAGS + 2].copy_from_slice(&field::RD.to_be_bytes());
    out[field::QDCOUNT..field::QDCOUNT + 2].copy_from_slice(&1u16.to_be_bytes());
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(bad());
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    if out.len() - field::HEADER_LEN > 255 {
        return Err(bad());
    }
    out.extend_from_slice(&query_type.code().to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // QCLASS IN
    Ok(out)
}

#[derive(Debug, PartialEq, Eq)]
enum Response {
    /// Not ours (short, other ID, or not a response): keep waiting.
    Ignore,
    Ok,
    Error(u16),
}

fn check_response(packet: &[u8], id: u16) -> Response {
    if packet.len() < field::HEADER_LEN {
        return Response::Ignore;
    }
    let got_id = u16::from_be_bytes([packet[field::ID], packet[field::ID + 1]]);
    let flags = u16::from_be_bytes([packet[field::FLAGS], packet[field::FLAGS + 1]]);
    if got_id != id || flags & field::QR == 0 {
        return Response::Ignore;
    }
    match flags & field::RCODE_MASK {
        0 => Response::Ok,
        rcode => Response::Error(rcode),
    }
}

impl Checker for DnsCheck {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, self.run()).await {
                Ok(Ok(())) => CheckOutcome::Up,
                Ok(Err(reason)) => CheckOutcome::Down(reason),
                Err(_) => CheckOutcome::Down(format!(
                    "no DNS response from {} within {}",
                    self.target,
                    humanize(self.timeout)
                )),
            }
        })
    }

    fn kind(&self) -> &'static str {
        "DNS_CHECK"
    }

    fn default_retry(&self) -> u32 {
        3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_bytes_match_dig_for_a_example_com() {
        // `dig +norec`-style header with RD: id 0x1234, flags 0x0100, qdcount 1.
        let q = encode_query(0x1234, DnsType::A, "example.com").unwrap();
        let want: &[u8] = &[
            0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
            7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, //
            0x00, 0x01, 0x00, 0x01,
        ];
        assert_eq!(q, want);
        assert_eq!(
            encode_query(0x1234, DnsType::A, "example.com.").unwrap(),
            want
        );
    }

    #[test]
    fn root_soa_query_is_keepalived_default() {
        let q = encode_query(1, DnsType::Soa, ".").unwrap();
        assert_eq!(&q[12..], &[0, 0x00, 0x06, 0x00, 0x01]);
    }

    #[test]
    fn bad_names_are_config_errors() {
        assert!(encode_query(1, DnsType::A, "a..b").is_err());
        assert!(encode_query(1, DnsType::A, &"x".repeat(64)).is_err());
    }

    #[test]
    fn responses_are_matched_by_id_and_qr_and_judged_by_rcode() {
        let mut r = encode_query(7, DnsType::A, "x").unwrap();
        assert_eq!(check_response(&r, 7), Response::Ignore); // a query, QR clear
        r[2] |= 0x80;
        assert_eq!(check_response(&r, 7), Response::Ok);
        assert_eq!(check_response(&r, 8), Response::Ignore);
        r[3] |= 3; // NXDOMAIN
        assert_eq!(check_response(&r, 7), Response::Error(3));
        assert_eq!(check_response(&r[..5], 7), Response::Ignore);
    }
}
