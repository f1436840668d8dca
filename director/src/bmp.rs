//! BGP session state from the BGP speaker itself, over BMP (RFC 7854, the BGP Monitoring
//! Protocol): FRR's bgpd (started with `-M bmp`, configured with `bmp targets NAME` and
//! `bmp connect 127.0.0.1 port P`) connects to haldir and sends a Peer Up or Peer Down
//! notification for each of its BGP sessions as it changes (and, when it connects, a Peer Up
//! for each session already established). haldir keeps whether each session is up, so the
//! status says whether the routers hear this director, beside what it announces
//! (`docs/active-active.md`). A monitoring protocol the speaker already has, rather than
//! scraping its CLI (which would need FRR's vty group, i.e. the right to reconfigure BGP).
//!
//! Sans-IO: bytes in ([`BmpDecoder::feed`]), messages out; [`BgpSessions`] turns messages
//! into the sessions' state at a given `now`. The wiring (`src/bmp.rs`) owns the socket.
//!
//! Bounded: a message longer than [`MAX_MESSAGE`] or of another version than 3 ends the
//! connection (the speaker reconnects); the decoder never holds more than one message.
//! Messages haldir does not use (route monitoring, statistics, route mirroring) are skipped
//! by their length without being parsed.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The longest message accepted: a Peer Up carries two BGP OPEN messages, a route
/// monitoring message one UPDATE, each at most 65535 bytes with RFC 8654's extended
/// messages; four times that is room for any of them.
pub const MAX_MESSAGE: usize = 4 * 65535;
/// RFC 7854 §4.1: version (1), message length (4), message type (1).
const COMMON_HEADER: usize = 6;
/// RFC 7854 §4.2: type, flags, distinguisher (8), address (16), AS (4), BGP ID (4),
/// timestamp (8).
const PER_PEER_HEADER: usize = 42;
/// The only version RFC 7854 defines.
const VERSION: u8 = 3;

/// Message types (RFC 7854 §4.1).
const ROUTE_MONITORING: u8 = 0;
const STATISTICS_REPORT: u8 = 1;
const PEER_DOWN: u8 = 2;
const PEER_UP: u8 = 3;
const INITIATION: u8 = 4;
const TERMINATION: u8 = 5;
const ROUTE_MIRRORING: u8 = 6;

/// The Initiation information TLV type of the speaker's name (RFC 7854 §4.4).
const INFO_SYS_NAME: u16 = 2;

/// The peer of one BGP session, as the per-peer header names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BmpPeer {
    /// The neighbour's address.
    pub address: IpAddr,
    /// The neighbour's AS.
    pub asn: u32,
    /// The neighbour's BGP identifier.
    pub bgp_id: Ipv4Addr,
}

/// One decoded message, as far as haldir uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BmpMessage {
    /// The speaker introduces itself (its `sysName`, if sent).
    Initiation {
        /// The speaker's name.
        sys_name: Option<String>,
    },
    /// A BGP session reached Established.
    PeerUp(BmpPeer),
    /// A BGP session left Established, with the reason code of RFC 7854 §4.9.
    PeerDown(BmpPeer, u8),
    /// The speaker ends the BMP session.
    Termination,
    /// A message haldir does not use, skipped by its length.
    Skipped(u8),
}

/// Why a BMP stream cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BmpError {
    /// A version other than 3.
    Version(u8),
    /// A length below the common header or above [`MAX_MESSAGE`].
    Length(u32),
    /// A message too short for what its type must carry.
    Truncated(u8),
    /// A message type RFC 7854 does not define.
    UnknownType(u8),
}

impl fmt::Display for BmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BmpError::Version(v) => write!(f, "BMP version {v}, not 3"),
            BmpError::Length(n) => write!(
                f,
                "BMP message length {n} (must be {COMMON_HEADER}..={MAX_MESSAGE})"
            ),
            BmpError::Truncated(t) => write!(f, "BMP message of type {t} too short"),
            BmpError::UnknownType(t) => write!(f, "BMP message type {t} is not defined"),
        }
    }
}

impl std::error::Error for BmpError {}

/// Splits a byte stream into BMP messages.
#[derive(Debug, Default)]
pub struct BmpDecoder {
    buffer: Vec<u8>,
}

impl BmpDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        BmpDecoder::default()
    }

    /// Takes the next bytes of the stream and returns the messages they complete. After an
    /// error the stream is out of step: drop the connection.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<BmpMessage>, BmpError> {
        self.buffer.extend_from_slice(bytes);
        let mut messages = Vec::new();
        let mut start = 0;
        while self.buffer.len() - start >= COMMON_HEADER {
            let header = &self.buffer[start..start + COMMON_HEADER];
            if header[0] != VERSION {
                return Err(BmpError::Version(header[0]));
            }
            let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
            if (length as usize) < COMMON_HEADER || length as usize > MAX_MESSAGE {
                return Err(BmpError::Length(length));
            }
            let length = length as usize;
            if self.buffer.len() - start < length {
                break;
            }
            let message = &self.buffer[start..start + length];
            messages.push(decode(header[5], &message[COMMON_HEADER..])?);
            start += length;
        }
        self.buffer.drain(..start);
        Ok(messages)
    }
}

/// One message's body (after the common header).
fn decode(message_type: u8, body: &[u8]) -> Result<BmpMessage, BmpError> {
    match message_type {
        INITIATION => Ok(BmpMessage::Initiation {
            sys_name: information(body, INFO_SYS_NAME),
        }),
        PEER_UP => Ok(BmpMessage::PeerUp(peer(message_type, body)?)),
        PEER_DOWN => {
            let peer = peer(message_type, body)?;
            let reason = *body
                .get(PER_PEER_HEADER)
                .ok_or(BmpError::Truncated(message_type))?;
            Ok(BmpMessage::PeerDown(peer, reason))
        }
        TERMINATION => Ok(BmpMessage::Termination),
        ROUTE_MONITORING | STATISTICS_REPORT | ROUTE_MIRRORING => {
            Ok(BmpMessage::Skipped(message_type))
        }
        other => Err(BmpError::UnknownType(other)),
    }
}

/// The per-peer header at the start of `body` (RFC 7854 §4.2): the V flag (0x80) says
/// whether the address is IPv6; an IPv4 address is the field's last four bytes.
fn peer(message_type: u8, body: &[u8]) -> Result<BmpPeer, BmpError> {
    let header = body
        .get(..PER_PEER_HEADER)
        .ok_or(BmpError::Truncated(message_type))?;
    let field: [u8; 16] = header[10..26].try_into().expect("16 bytes");
    let address = if header[1] & 0x80 != 0 {
        IpAddr::V6(Ipv6Addr::from(field))
    } else {
        IpAddr::V4(Ipv4Addr::new(field[12], field[13], field[14], field[15]))
    };
    Ok(BmpPeer {
        address,
        asn: u32::from_be_bytes(header[26..30].try_into().expect("4 bytes")),
        bgp_id: Ipv4Addr::new(header[30], header[31], header[32], header[33]),
    })
}

/// The value of the first information TLV of `wanted` type (RFC 7854 §4.4), as text.
fn information(mut tlvs: &[u8], wanted: u16) -> Option<String> {
    while tlvs.len() >= 4 {
        let kind = u16::from_be_bytes([tlvs[0], tlvs[1]]);
        let length = usize::from(u16::from_be_bytes([tlvs[2], tlvs[3]]));
        let value = tlvs.get(4..4 + length)?;
        if kind == wanted {
            return Some(String::from_utf8_lossy(value).into_owned());
        }
        tlvs = &tlvs[4 + length..];
    }
    None
}

/// RFC 7854 §4.9's reason codes in words.
fn down_reason(code: u8) -> String {
    match code {
        1 => "this speaker sent a NOTIFICATION".into(),
        2 => "this speaker closed it (no NOTIFICATION)".into(),
        3 => "the neighbour sent a NOTIFICATION".into(),
        4 => "the neighbour closed it or the transport failed".into(),
        5 => "de-configured".into(),
        other => format!("reason {other}"),
    }
}

/// One BGP session's state, as last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Session {
    asn: u32,
    established: bool,
    since: Instant,
    down_reason: Option<String>,
}

/// The BGP sessions of the speakers connected over BMP.
#[derive(Debug, Clone, Default)]
pub struct BgpSessions {
    /// The speaker's `sysName`, from its Initiation.
    speaker: Option<String>,
    /// Whether a speaker is connected now.
    connected: bool,
    sessions: BTreeMap<IpAddr, Session>,
    /// Connections ended because of a malformed stream, or refused over the limit.
    rejected: u64,
}

impl BgpSessions {
    /// No speaker yet.
    pub fn new() -> Self {
        BgpSessions::default()
    }

    /// A speaker connected: what an earlier one said is forgotten (a new BMP session
    /// reports every established BGP session again).
    pub fn connected(&mut self) {
        self.connected = true;
        self.speaker = None;
        self.sessions.clear();
    }

    /// The speaker's connection ended: nothing is known about the sessions any more.
    pub fn disconnected(&mut self) {
        self.connected = false;
        self.sessions.clear();
    }

    /// Counts a connection ended or refused for a bad stream or over the limit.
    pub fn rejected(&mut self) {
        self.rejected += 1;
    }

    /// Takes one message at `now`.
    pub fn apply(&mut self, message: &BmpMessage, now: Instant) {
        match message {
            BmpMessage::Initiation { sys_name } => self.speaker.clone_from(sys_name),
            BmpMessage::PeerUp(peer) => {
                self.sessions.insert(
                    peer.address,
                    Session {
                        asn: peer.asn,
                        established: true,
                        since: now,
                        down_reason: None,
                    },
                );
            }
            BmpMessage::PeerDown(peer, code) => {
                self.sessions.insert(
                    peer.address,
                    Session {
                        asn: peer.asn,
                        established: false,
                        since: now,
                        down_reason: Some(down_reason(*code)),
                    },
                );
            }
            BmpMessage::Termination => self.disconnected(),
            BmpMessage::Skipped(_) => {}
        }
    }

    /// The status section at `now`, for the collector listening on `listen`.
    pub fn status(&self, listen: &str, now: Instant) -> BgpStatus {
        BgpStatus {
            listen: listen.to_owned(),
            speaker_connected: self.connected,
            speaker: self.speaker.clone(),
            rejected_connections: self.rejected,
            peers: self
                .sessions
                .iter()
                .map(|(address, session)| BgpPeerStatus {
                    address: *address,
                    asn: session.asn,
                    established: session.established,
                    for_seconds: round_tenths(now.saturating_duration_since(session.since)),
                    down_reason: session.down_reason.clone(),
                })
                .collect(),
        }
    }
}

fn round_tenths(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

/// The BGP sessions as the speaker reports them over BMP (`announce.bgp` in
/// `haldir status --json`, present when `[announce] bmp_listen` is set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BgpStatus {
    /// Where haldir listens for the speaker's BMP connection.
    pub listen: String,
    /// Whether a speaker (bgpd) is connected; without one nothing is known of the sessions.
    pub speaker_connected: bool,
    /// The speaker's name (BMP sysName), if it sent one.
    pub speaker: Option<String>,
    /// Connections ended for a malformed stream or refused over the connection limit.
    pub rejected_connections: u64,
    /// Each BGP session by neighbour address.
    pub peers: Vec<BgpPeerStatus>,
}

/// One BGP session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BgpPeerStatus {
    /// The neighbour's address.
    pub address: IpAddr,
    /// The neighbour's AS.
    pub asn: u32,
    /// Whether the session is Established.
    pub established: bool,
    /// Seconds since it last went up or down (as reported to haldir).
    pub for_seconds: f64,
    /// Why it went down, when it is down.
    pub down_reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message of `message_type` with `body`, common header included.
    fn message(message_type: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![VERSION];
        out.extend_from_slice(&((COMMON_HEADER + body.len()) as u32).to_be_bytes());
        out.push(message_type);
        out.extend_from_slice(body);
        out
    }

    /// A per-peer header for an IPv4 neighbour.
    fn per_peer(address: Ipv4Addr, asn: u32) -> Vec<u8> {
        let mut out = vec![0, 0];
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&[0; 12]);
        out.extend_from_slice(&address.octets());
        out.extend_from_slice(&asn.to_be_bytes());
        out.extend_from_slice(&address.octets());
        out.extend_from_slice(&[0; 8]);
        out
    }

    const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    #[test]
    fn a_stream_cut_anywhere_decodes_to_the_same_messages() {
        let mut stream = message(INITIATION, &[0, 2, 0, 2, b'd', b'1']);
        let mut up = per_peer(ROUTER, 65001);
        up.extend_from_slice(&[0; 20]); // local address and ports; the OPENs are not read
        stream.extend(message(PEER_UP, &up));
        stream.extend(message(ROUTE_MONITORING, &per_peer(ROUTER, 65001)));
        let mut down = per_peer(ROUTER, 65001);
        down.push(4);
        stream.extend(message(PEER_DOWN, &down));
        let expected = vec![
            BmpMessage::Initiation {
                sys_name: Some("d1".into()),
            },
            BmpMessage::PeerUp(BmpPeer {
                address: IpAddr::V4(ROUTER),
                asn: 65001,
                bgp_id: ROUTER,
            }),
            BmpMessage::Skipped(ROUTE_MONITORING),
            BmpMessage::PeerDown(
                BmpPeer {
                    address: IpAddr::V4(ROUTER),
                    asn: 65001,
                    bgp_id: ROUTER,
                },
                4,
            ),
        ];
        for cut in 0..stream.len() {
            let mut decoder = BmpDecoder::new();
            let mut got = decoder.feed(&stream[..cut]).unwrap();
            got.extend(decoder.feed(&stream[cut..]).unwrap());
            assert_eq!(got, expected, "cut at {cut}");
            assert!(decoder.buffer.is_empty());
        }
    }

    #[test]
    fn a_bad_header_ends_the_stream_before_any_body_is_buffered() {
        let mut decoder = BmpDecoder::new();
        assert_eq!(decoder.feed(&[1, 0, 0, 0, 6, 4]), Err(BmpError::Version(1)));
        let mut decoder = BmpDecoder::new();
        let huge = (MAX_MESSAGE as u32 + 1).to_be_bytes();
        assert_eq!(
            decoder.feed(&[3, huge[0], huge[1], huge[2], huge[3], 0]),
            Err(BmpError::Length(MAX_MESSAGE as u32 + 1))
        );
        let mut decoder = BmpDecoder::new();
        assert_eq!(
            decoder.feed(&message(PEER_UP, &[0; 10])),
            Err(BmpError::Truncated(PEER_UP))
        );
        let mut decoder = BmpDecoder::new();
        assert_eq!(
            decoder.feed(&message(9, &[])),
            Err(BmpError::UnknownType(9))
        );
    }

    #[test]
    fn an_ipv6_neighbour_is_read_from_the_whole_address_field() {
        let mut header = per_peer(ROUTER, 65001);
        header[1] = 0x80;
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        header[10..26].copy_from_slice(&v6.octets());
        let mut decoder = BmpDecoder::new();
        let got = decoder.feed(&message(PEER_UP, &header)).unwrap();
        assert!(matches!(&got[..], [BmpMessage::PeerUp(p)] if p.address == IpAddr::V6(v6)));
    }

    #[test]
    fn sessions_follow_up_and_down_and_are_forgotten_with_the_speaker() {
        let t0 = Instant::now();
        let peer = BmpPeer {
            address: IpAddr::V4(ROUTER),
            asn: 65001,
            bgp_id: ROUTER,
        };
        let mut sessions = BgpSessions::new();
        sessions.connected();
        sessions.apply(
            &BmpMessage::Initiation {
                sys_name: Some("d1".into()),
            },
            t0,
        );
        sessions.apply(&BmpMessage::PeerUp(peer), t0);
        let status = sessions.status("127.0.0.1:11019", t0 + Duration::from_secs(3));
        assert!(status.speaker_connected);
        assert_eq!(status.speaker.as_deref(), Some("d1"));
        assert_eq!(status.peers.len(), 1);
        assert!(status.peers[0].established);
        assert_eq!(status.peers[0].for_seconds, 3.0);

        sessions.apply(&BmpMessage::PeerDown(peer, 3), t0 + Duration::from_secs(5));
        let status = sessions.status("127.0.0.1:11019", t0 + Duration::from_secs(6));
        assert!(!status.peers[0].established);
        assert_eq!(
            status.peers[0].down_reason.as_deref(),
            Some("the neighbour sent a NOTIFICATION")
        );

        sessions.disconnected();
        let status = sessions.status("127.0.0.1:11019", t0 + Duration::from_secs(7));
        assert!(!status.speaker_connected);
        assert!(
            status.peers.is_empty(),
            "nothing is known without the speaker"
        );
    }
}
