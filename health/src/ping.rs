//! `PING_CHECK`: the server is up when it answers an ICMP echo (RFC 792; ICMPv6, RFC 4443
//! §4) within `connect_timeout`. The request goes out on an ICMP datagram socket when the
//! kernel allows one to this process (`net.ipv4.ping_group_range`): the kernel then picks
//! the identifier and hands this socket only its own replies. Otherwise on a raw socket
//! (CAP_NET_RAW, which haldir keeps), filtering the replies by source, identifier and
//! sequence itself. The payload carries a per-run token that the reply must echo.

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::tcp::humanize;
use crate::{CheckFuture, CheckOutcome, Checker};

/// ICMP echo request / reply types (RFC 792), and ICMPv6's (RFC 4443 §4.1, §4.2).
const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

/// Sequence numbers, one per run across all checks.
static SEQUENCE: AtomicU16 = AtomicU16::new(1);

/// A `PING_CHECK`.
#[derive(Debug, Clone)]
pub struct PingCheck {
    /// `connect_ip` (default the real server).
    pub target: IpAddr,
    /// `bindto`: the request's source address.
    pub bind_to: Option<IpAddr>,
    /// `connect_timeout`.
    pub timeout: Duration,
}

/// The Internet checksum (RFC 1071) of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request (ICMPv6's checksum is the kernel's: it covers a pseudo-header).
pub fn echo_request(v6: bool, identifier: u16, sequence: u16, token: &[u8]) -> Vec<u8> {
    let mut packet = vec![if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 }, 0, 0, 0];
    packet.extend_from_slice(&identifier.to_be_bytes());
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend_from_slice(token);
    if !v6 {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// Whether `packet` (an ICMP message, after any IP header) is the reply to our request:
/// an echo reply with our sequence and token (and identifier, when `identifier` is
/// given: a datagram socket's kernel rewrites it and filters for us).
pub fn is_our_reply(
    v6: bool,
    packet: &[u8],
    identifier: Option<u16>,
    sequence: u16,
    token: &[u8],
) -> bool {
    let reply_type = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
    packet.len() >= 8 + token.len()
        && packet[0] == reply_type
        && identifier.is_none_or(|id| packet[4..6] == id.to_be_bytes())
        && packet[6..8] == sequence.to_be_bytes()
        && &packet[8..8 + token.len()] == token
}

impl PingCheck {
    fn open(&self) -> io::Result<(Socket, bool)> {
        let (domain, protocol) = match self.target {
            IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
            IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
        };
        let (socket, raw) = match Socket::new(domain, Type::DGRAM, Some(protocol)) {
            Ok(socket) => (socket, false),
            Err(_) => (Socket::new(domain, Type::RAW, Some(protocol))?, true),
        };
        socket.set_nonblocking(true)?;
        if let Some(source) = self.bind_to {
            socket.bind(&SockAddr::from(SocketAddr::new(source, 0)))?;
        }
        Ok((socket, raw))
    }

    async fn run(&self) -> Result<(), String> {
        let v6 = self.target.is_ipv6();
        let (socket, raw) = self.open().map_err(|e| format!("ICMP socket: {e}"))?;
        // SAFETY: the socket owns its descriptor, which nothing else closes or replaces
        // while the AsyncFd holds it.
        let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
            .map_err(|e| format!("ICMP socket: {e}"))?;
        let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let token: [u8; 8] = rand_token();
        // A raw socket sees every ICMP message of the host: ours carry our process id.
        let identifier = std::process::id() as u16;
        let request = echo_request(v6, identifier, sequence, &token);
        let to = SockAddr::from(SocketAddr::new(self.target, 0));
        socket
            .get_ref()
            .send_to(&request, &to)
            .map_err(|e| format!("send to {}: {e}", self.target))?;
        let mut buffer = [MaybeUninit::<u8>::uninit(); 1500];
        loop {
            let mut guard = socket
                .readable()
                .await
                .map_err(|e| format!("waiting for the reply: {e}"))?;
            let received = match guard.try_io(|s| s.get_ref().recv_from(&mut buffer)) {
                Ok(result) => result.map_err(|e| format!("{}: {e}", self.target))?,
                Err(_would_block) => continue,
            };
            let (n, from) = received;
            // SAFETY: recv_from initialised the first `n` bytes.
            let bytes: &[u8] =
                unsafe { std::slice::from_raw_parts(buffer.as_ptr().cast::<u8>(), n) };
            if from.as_socket().map(|a| a.ip()) != Some(self.target) {
                continue;
            }
            // A raw IPv4 socket delivers the IP header too; IPv6 and datagram ones do not.
            let icmp = if raw && !v6 {
                let header = usize::from(bytes.first().map_or(0, |b| b & 0x0f)) * 4;
                bytes.get(header..).unwrap_or_default()
            } else {
                bytes
            };
            let wanted_identifier = raw.then_some(identifier);
            if is_our_reply(v6, icmp, wanted_identifier, sequence, &token) {
                return Ok(());
            }
        }
    }
}

/// Eight bytes that differ between runs (not secret: they only tell our reply apart).
fn rand_token() -> [u8; 8] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (nanos ^ u64::from(SEQUENCE.load(Ordering::Relaxed)).rotate_left(40)).to_be_bytes()
}

impl Checker for PingCheck {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, self.run()).await {
                Ok(Ok(())) => CheckOutcome::Up,
                Ok(Err(reason)) => CheckOutcome::Down(format!("PING {reason}")),
                Err(_) => CheckOutcome::Down(format!(
                    "PING {}: no echo reply within {}",
                    self.target,
                    humanize(self.timeout)
                )),
            }
        })
    }

    fn kind(&self) -> &'static str {
        "PING_CHECK"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_request_has_a_valid_checksum_and_our_reply_is_recognised() {
        let request = echo_request(false, 0x1234, 7, b"tokentok");
        assert_eq!(request[0], 8);
        assert_eq!(
            checksum(&request),
            0,
            "a packet with its checksum sums to 0"
        );
        let mut reply = request.clone();
        reply[0] = 0;
        assert!(is_our_reply(false, &reply, Some(0x1234), 7, b"tokentok"));
        assert!(is_our_reply(false, &reply, None, 7, b"tokentok"));
        assert!(!is_our_reply(false, &reply, Some(0x1235), 7, b"tokentok"));
        assert!(!is_our_reply(false, &reply, None, 8, b"tokentok"));
        assert!(
            !is_our_reply(false, &request, None, 7, b"tokentok"),
            "a request is not a reply"
        );
        assert!(!is_our_reply(false, &reply, None, 7, b"tokenXok"));
    }
}
