//! The bulk path: a plain (blocking) generic-netlink socket that pipelines
//! requests and reads whole tables, used from `spawn_blocking`.
//!
//! Pipelining: many requests go out in one `send` (one datagram holding
//! back-to-back netlink messages). Only the last message of each datagram
//! asks for an ACK; the kernel still answers every failing one with an
//! `NLMSG_ERROR` (`netlink_rcv_skb` acks when `NLM_F_ACK` is set *or* the
//! handler failed). Replies are matched to requests by sequence number, so a
//! datagram costs one `send` plus one `recv` per failure plus one for the
//! final ACK, instead of a send and a receive per request as `ipvsadm`
//! does. `NETLINK_CAP_ACK` keeps error replies small, and a large receive
//! buffer keeps a burst of failures from overflowing it.

use std::io;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_generic::GenlMessage;
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

use crate::netlink::IpvsMessage;

/// Netlink message types of the control messages.
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// Most bytes of requests per datagram; well under the default send buffer.
const MAX_DATAGRAM_BYTES: usize = 32 * 1024;
/// Most requests per datagram, so that even all of them failing fits the
/// receive buffer.
const MAX_DATAGRAM_REQUESTS: usize = 256;
/// A reply that has not come after this long means a lost ACK.
const RECEIVE_TIMEOUT_SECS: i64 = 10;
/// Receive buffer asked for (with SO_RCVBUFFORCE when allowed).
const RECEIVE_BUFFER_BYTES: i32 = 8 * 1024 * 1024;
/// Size of one receive: dumps fill skbs of up to 32 KiB.
const RECEIVE_CHUNK_BYTES: usize = 128 * 1024;

/// The outcome of one request: `Err(errno)` (positive) if the kernel refused it.
pub(crate) type Outcome = Result<(), i32>;

/// A blocking IPVS socket for bulk work.
pub(crate) struct BulkSocket {
    socket: Socket,
    family_id: u16,
    next_sequence: u32,
    receive_buffer: Vec<u8>,
}

impl BulkSocket {
    /// Opens and binds a generic-netlink socket for the family `family_id`.
    pub(crate) fn open(family_id: u16) -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_GENERIC)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Best effort: both only shrink replies / grow the buffer.
        let _ = socket.set_cap_ack(true);
        if !set_receive_buffer_force(&socket, RECEIVE_BUFFER_BYTES) {
            let _ = socket.set_rx_buf_sz(RECEIVE_BUFFER_BYTES);
        }
        set_receive_timeout(&socket, RECEIVE_TIMEOUT_SECS)?;
        Ok(BulkSocket {
            socket,
            family_id,
            next_sequence: 1,
            receive_buffer: Vec::with_capacity(RECEIVE_CHUNK_BYTES),
        })
    }

    /// Sends every request, pipelined, and returns one outcome per request in
    /// the same order. An `Err` of the whole call means the socket failed.
    ///
    /// Each request is written into its datagram (by `append`: the request, the netlink
    /// flags, the sequence number, the datagram) only when that datagram is filled, so a
    /// batch of 50,000 operations never holds 50,000 messages at once.
    pub(crate) fn execute_pipelined<R>(
        &mut self,
        requests: &[R],
        append: impl Fn(&R, u16, u32, &mut Vec<u8>),
    ) -> io::Result<Vec<Outcome>> {
        let mut outcomes = vec![Ok(()); requests.len()];
        let mut datagram = Vec::with_capacity(MAX_DATAGRAM_BYTES + 4096);
        let mut start = 0;
        while start < requests.len() {
            let first_sequence = self.next_sequence;
            let end = fill_datagram(requests, start, first_sequence, &append, &mut datagram);
            self.next_sequence = self.next_sequence.wrapping_add((end - start) as u32);
            self.socket.send(&datagram, 0)?;

            let last_sequence = first_sequence.wrapping_add((end - start - 1) as u32);
            let mut finished = false;
            while !finished {
                self.receive()?;
                for reply in replies(&self.receive_buffer) {
                    let index = reply.sequence.wrapping_sub(first_sequence) as usize;
                    if reply.message_type != NLMSG_ERROR || index >= end - start {
                        continue;
                    }
                    if let Some(code) = reply.error_code() {
                        if code != 0 {
                            outcomes[start + index] = Err(-code);
                        }
                    }
                    if reply.sequence == last_sequence {
                        finished = true;
                    }
                }
            }
            start = end;
        }
        Ok(outcomes)
    }

    /// Runs one dump request and returns every reply message, or the errno
    /// the kernel answered with.
    pub(crate) fn dump(
        &mut self,
        request: &IpvsMessage,
    ) -> io::Result<Result<Vec<IpvsMessage>, i32>> {
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        let mut datagram = Vec::new();
        encode_message(
            self.family_id,
            request.clone(),
            NLM_F_REQUEST | NLM_F_DUMP,
            sequence,
            &mut datagram,
        );
        self.socket.send(&datagram, 0)?;
        let mut messages = Vec::new();
        loop {
            self.receive()?;
            for reply in replies(&self.receive_buffer) {
                if reply.sequence != sequence {
                    continue;
                }
                match reply.message_type {
                    NLMSG_DONE => return Ok(Ok(messages)),
                    NLMSG_ERROR => match reply.error_code() {
                        Some(0) | None => return Ok(Ok(messages)),
                        Some(code) => return Ok(Err(-code)),
                    },
                    _ => {
                        let parsed =
                            NetlinkMessage::<GenlMessage<IpvsMessage>>::deserialize(reply.bytes)
                                .map_err(|e| {
                                    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
                                })?;
                        if let NetlinkPayload::InnerMessage(genl) = parsed.payload {
                            messages.push(genl.payload);
                        }
                    }
                }
            }
        }
    }

    fn receive(&mut self) -> io::Result<()> {
        self.receive_buffer.clear();
        self.receive_buffer.reserve(RECEIVE_CHUNK_BYTES);
        loop {
            match self.socket.recv(&mut self.receive_buffer, 0) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// SO_RCVBUFFORCE (CAP_NET_ADMIN) lifts the rmem_max cap; false if refused.
fn set_receive_buffer_force(socket: &Socket, bytes: i32) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt with a valid fd and a pointer to a live c_int of the given size.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    result == 0
}

/// SO_RCVTIMEO, so a lost reply is an error instead of a hang.
fn set_receive_timeout(socket: &Socket, seconds: i64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let timeout = libc::timeval {
        tv_sec: seconds as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: setsockopt with a valid fd and a pointer to a live timeval of the given size.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One netlink message in a received datagram.
struct Reply<'a> {
    message_type: u16,
    sequence: u32,
    bytes: &'a [u8],
}

impl Reply<'_> {
    /// The (negative) error code of an `NLMSG_ERROR`, 0 for an ACK.
    fn error_code(&self) -> Option<i32> {
        let code = self.bytes.get(16..20)?;
        Some(i32::from_ne_bytes([code[0], code[1], code[2], code[3]]))
    }
}

/// The netlink messages in `datagram`: `struct nlmsghdr` is length (u32),
/// type (u16), flags (u16), sequence (u32), port (u32), each message padded
/// to 4 bytes. A truncated tail is ignored.
fn replies(datagram: &[u8]) -> impl Iterator<Item = Reply<'_>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let header = datagram.get(at..at + 16)?;
        let length = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if length < 16 || at + length > datagram.len() {
            return None;
        }
        let reply = Reply {
            message_type: u16::from_ne_bytes([header[4], header[5]]),
            sequence: u32::from_ne_bytes([header[8], header[9], header[10], header[11]]),
            bytes: &datagram[at..at + length],
        };
        at += (length + 3) & !3;
        Some(reply)
    })
}

/// Appends `message` as one netlink message of the family `family_id` to `out`.
pub(crate) fn encode_message(
    family_id: u16,
    message: IpvsMessage,
    flags: u16,
    sequence: u32,
    out: &mut Vec<u8>,
) {
    let mut genl = GenlMessage::from_payload(message);
    genl.set_resolved_family_id(family_id);
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = sequence;
    let mut netlink = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(genl));
    netlink.finalize();
    let start = out.len();
    out.resize(start + netlink.buffer_len(), 0);
    netlink.serialize(&mut out[start..]);
}

/// Fills `datagram` with the requests from `start` on, numbered from `first_sequence`,
/// and returns the index after the last one it holds: at most [`MAX_DATAGRAM_REQUESTS`]
/// and [`MAX_DATAGRAM_BYTES`] (a request that would overflow it is taken off again and
/// opens the next datagram; one request alone always fits). Only the last asks for an ACK.
fn fill_datagram<R>(
    requests: &[R],
    start: usize,
    first_sequence: u32,
    append: &impl Fn(&R, u16, u32, &mut Vec<u8>),
    datagram: &mut Vec<u8>,
) -> usize {
    datagram.clear();
    let mut end = start;
    let mut last_at = 0;
    while end < requests.len() && end - start < MAX_DATAGRAM_REQUESTS {
        let at = datagram.len();
        let sequence = first_sequence.wrapping_add((end - start) as u32);
        append(&requests[end], NLM_F_REQUEST, sequence, datagram);
        if end > start && datagram.len() > MAX_DATAGRAM_BYTES {
            datagram.truncate(at);
            break;
        }
        last_at = at;
        end += 1;
    }
    // The last request's header (nlmsghdr: length u32, type u16, flags u16) gains
    // NLM_F_ACK.
    let flags_at = last_at + 6;
    let flags = u16::from_ne_bytes([datagram[flags_at], datagram[flags_at + 1]]);
    datagram[flags_at..flags_at + 2].copy_from_slice(&(flags | NLM_F_ACK).to_ne_bytes());
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_split_on_aligned_lengths() {
        // An ACK (seq 5) and an error -17 (seq 6) back to back.
        let mut datagram = Vec::new();
        for (sequence, code) in [(5u32, 0i32), (6, -17)] {
            datagram.extend_from_slice(&36u32.to_ne_bytes());
            datagram.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            datagram.extend_from_slice(&0u16.to_ne_bytes());
            datagram.extend_from_slice(&sequence.to_ne_bytes());
            datagram.extend_from_slice(&0u32.to_ne_bytes());
            datagram.extend_from_slice(&code.to_ne_bytes());
            datagram.extend_from_slice(&[0; 16]);
        }
        let parsed: Vec<(u32, Option<i32>)> = replies(&datagram)
            .map(|r| (r.sequence, r.error_code()))
            .collect();
        assert_eq!(parsed, vec![(5, Some(0)), (6, Some(-17))]);
        assert_eq!(replies(&datagram[..20]).count(), 0);
    }

    #[test]
    fn datagrams_are_filled_to_their_limits_with_only_the_last_request_acked() {
        use std::net::{IpAddr, Ipv4Addr};

        use crate::diff::Op;
        use crate::model::{DestKey, Protocol, Service, ServiceKey};

        let service = ServiceKey::Address {
            protocol: Protocol::Tcp,
            addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            port: 80,
        };
        // Small requests first (a datagram is full by their count), then large ones (full
        // by its bytes).
        let small = (0..1000u32).map(|i| Op::DelDest {
            service,
            key: DestKey::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 80),
        });
        let large = (0..1000u16).map(|port| Op::AddService {
            key: ServiceKey::Address {
                protocol: Protocol::Udp,
                addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
                port,
            },
            service: Service::new("x".repeat(300)),
        });
        let ops: Vec<Op> = small.chain(large).collect();
        let mut datagram = Vec::new();
        let (mut start, mut sequence) = (0, 7u32);
        let mut per_datagram = Vec::new();
        while start < ops.len() {
            let end = fill_datagram(
                &ops,
                start,
                sequence,
                &|op: &Op, flags, sequence, out: &mut Vec<u8>| {
                    crate::client::op_wire::append_op(1234, op, flags, sequence, out)
                },
                &mut datagram,
            );
            assert!(end > start && datagram.len() <= MAX_DATAGRAM_BYTES);
            // Walk the messages: consecutive sequence numbers, the family, and the ACK
            // flag on the last one alone.
            let mut at = 0;
            let mut count = 0;
            while at < datagram.len() {
                let length = u32::from_ne_bytes(datagram[at..at + 4].try_into().unwrap()) as usize;
                let kind = u16::from_ne_bytes(datagram[at + 4..at + 6].try_into().unwrap());
                let flags = u16::from_ne_bytes(datagram[at + 6..at + 8].try_into().unwrap());
                let seq = u32::from_ne_bytes(datagram[at + 8..at + 12].try_into().unwrap());
                assert_eq!(kind, 1234);
                assert_eq!(seq, sequence.wrapping_add(count));
                assert_ne!(flags & NLM_F_REQUEST, 0);
                let last = at + length.next_multiple_of(4) >= datagram.len();
                assert_eq!(flags & NLM_F_ACK != 0, last, "message {count}");
                at += length.next_multiple_of(4);
                count += 1;
            }
            assert_eq!(count as usize, end - start);
            // Full, unless it holds the last request: by count, or the next one would not
            // have fitted.
            if end < ops.len() && end - start < MAX_DATAGRAM_REQUESTS {
                let mut next = Vec::new();
                crate::client::op_wire::append_op(1234, &ops[end], 0, 0, &mut next);
                assert!(datagram.len() + next.len() > MAX_DATAGRAM_BYTES);
            }
            per_datagram.push(end - start);
            sequence = sequence.wrapping_add(count);
            start = end;
        }
        assert_eq!(per_datagram.iter().sum::<usize>(), ops.len());
        // Both limits were met.
        assert!(
            per_datagram.contains(&MAX_DATAGRAM_REQUESTS),
            "{per_datagram:?}"
        );
        assert!(
            per_datagram[per_datagram.len() - 2] < MAX_DATAGRAM_REQUESTS,
            "{per_datagram:?}"
        );
    }
}
