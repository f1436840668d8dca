//! `UDP_CHECK`: a datagram to the real server (the `payload`, else a few bytes of our own)
//! on a connected UDP socket, so that the ICMP errors the kernel reports for it (port or
//! host unreachable, RFC 1122 §4.1.3.3) reach this socket. Without `require_reply` the
//! server is up unless such an error comes back within `connect_timeout` (a UDP service
//! need not answer); with it, a reply must arrive in time, its length within
//! `min_reply_length..=max_reply_length`, and its first bytes must match the
//! `require_reply` pattern, where a pattern nibble written `x` matches anything
//! (keepalived's hex strings).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::tcp::humanize;
use crate::{CheckFuture, CheckOutcome, Checker};

/// What is sent when no `payload` is configured.
pub const DEFAULT_PAYLOAD: &[u8] = b"haldir UDP_CHECK";

/// The reply a `require_reply` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyRule {
    /// The bytes the reply starts with (compared up to the shorter of the two).
    pub data: Vec<u8>,
    /// Per byte, the bits that are not compared (a nibble written `x`).
    pub mask: Vec<u8>,
    /// `min_reply_length`.
    pub min_len: usize,
    /// `max_reply_length`.
    pub max_len: usize,
}

impl ReplyRule {
    /// Whether `reply` satisfies the rule; the error says how it does not.
    pub fn accepts(&self, reply: &[u8]) -> Result<(), String> {
        if reply.len() < self.min_len || reply.len() > self.max_len {
            return Err(format!(
                "a reply of {} bytes, outside {}..={}",
                reply.len(),
                self.min_len,
                self.max_len
            ));
        }
        // Compared up to the shorter of the two.
        for (i, (got, want)) in reply.iter().zip(&self.data).enumerate() {
            let mask = self.mask.get(i).copied().unwrap_or(0);
            if (got ^ want) & !mask != 0 {
                return Err(format!("the reply differs from require_reply at byte {i}"));
            }
        }
        Ok(())
    }
}

/// A `UDP_CHECK`.
#[derive(Debug, Clone)]
pub struct UdpCheck {
    /// `connect_ip` / `connect_port`.
    pub target: SocketAddr,
    /// `bindto` / `bind_port`.
    pub bind_to: Option<SocketAddr>,
    /// `connect_timeout`.
    pub timeout: Duration,
    /// `payload` (empty: [`DEFAULT_PAYLOAD`]).
    pub payload: Vec<u8>,
    /// `require_reply` with its lengths; `None`: no reply needed.
    pub require_reply: Option<ReplyRule>,
}

impl UdpCheck {
    async fn run(&self) -> Result<(), String> {
        let local = self.bind_to.unwrap_or(match self.target {
            SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
            SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
        });
        let socket = UdpSocket::bind(local)
            .await
            .map_err(|e| format!("bind to {local}: {e}"))?;
        socket
            .connect(self.target)
            .await
            .map_err(|e| format!("connect to {}: {e}", self.target))?;
        let payload = if self.payload.is_empty() {
            DEFAULT_PAYLOAD
        } else {
            &self.payload
        };
        socket
            .send(payload)
            .await
            .map_err(|e| format!("send to {}: {e}", self.target))?;
        let mut buffer = vec![0u8; 65_536];
        match tokio::time::timeout(self.timeout, socket.recv(&mut buffer)).await {
            Ok(Ok(n)) => match &self.require_reply {
                Some(rule) => rule.accepts(&buffer[..n]),
                None => Ok(()),
            },
            // The kernel's report of an ICMP error for our datagram (ECONNREFUSED for
            // port unreachable, EHOSTUNREACH, ...).
            Ok(Err(e)) => Err(format!("{}: {e}", self.target)),
            Err(_) if self.require_reply.is_some() => Err(format!(
                "no reply from {} within {}",
                self.target,
                humanize(self.timeout)
            )),
            // Silence is an answer for UDP: nothing said the port is closed.
            Err(_) => Ok(()),
        }
    }
}

impl Checker for UdpCheck {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            match self.run().await {
                Ok(()) => CheckOutcome::Up,
                Err(reason) => CheckOutcome::Down(format!("UDP {reason}")),
            }
        })
    }

    fn kind(&self) -> &'static str {
        "UDP_CHECK"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_rule_checks_lengths_and_the_unmasked_bits() {
        // "ab x1": the second byte's high nibble is not compared.
        let rule = ReplyRule {
            data: vec![0xab, 0x01],
            mask: vec![0x00, 0xf0],
            min_len: 2,
            max_len: 4,
        };
        assert!(rule.accepts(&[0xab, 0x71, 0x00]).is_ok());
        assert!(rule.accepts(&[0xab, 0x72]).is_err(), "low nibble compared");
        assert!(rule.accepts(&[0xab]).is_err(), "too short");
        assert!(rule.accepts(&[0xab, 0x01, 0, 0, 0]).is_err(), "too long");
    }
}
