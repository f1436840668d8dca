//! Client-side outage measurement: what a client of the VIP actually experiences.
//!
//! A [`Responder`] per router answers UDP probes with the router's name; a [`Prober`] in the
//! client namespace sends one probe to `VIP:port` every millisecond and records every reply
//! (who answered, when). The largest gap between consecutive replies around a failover is
//! the client-visible outage ([`ProbeReport::largest_gap_after`]).
//!
//! ```text
//!  probe  (client → VIP:port)        reply (router → client)
//!  +------+---------+----------+     +------+---------+----------+----------------+
//!  | HLPB | seq u64 | sent u64 |     | HLPR | seq u64 | sent u64 | router name... |
//!  +------+---------+----------+     +------+---------+----------+----------------+
//!   4 B    8 B BE    8 B BE: ns since the prober started
//! ```
//!
//! The responder answers from a wildcard socket, so replies come from the router's primary
//! address on the link, not from the VIP; the prober's socket is unconnected and accepts
//! them. Plain threads and blocking sockets with short read timeouts; everything stops by
//! itself after [`ProbeConfig::max_duration`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};

use super::lock;
use super::netns::{in_netns, Lab};

const PROBE_MAGIC: &[u8; 4] = b"HLPB";
const REPLY_MAGIC: &[u8; 4] = b"HLPR";
/// magic + sequence number + send time.
const PROBE_LEN: usize = 4 + 8 + 8;
/// How often blocked threads look at their stop flag.
const POLL: Duration = Duration::from_millis(20);
/// How long the prober keeps listening for late replies after it stopped sending.
const DRAIN: Duration = Duration::from_millis(30);

/// Answers probes on one router: a dual-stack UDP socket bound to `[::]:port` inside the
/// router's namespace, so it answers for whatever VIP the router holds, IPv4 or IPv6.
/// Stops on drop.
#[derive(Debug)]
pub struct Responder {
    name: String,
    answering: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    /// Starts answering on `port` in host `host`'s namespace, naming itself `host`.
    pub fn start(lab: &Lab, host: &str, port: u16) -> anyhow::Result<Responder> {
        let ns = lab.ns_name(host);
        let socket = in_netns(&ns, || -> std::io::Result<UdpSocket> {
            let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
            socket.set_only_v6(false)?;
            socket.bind(&SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port).into())?;
            socket.set_read_timeout(Some(POLL))?;
            Ok(socket.into())
        })?
        .with_context(|| format!("cannot bind a UDP responder on [::]:{port} in {ns}"))?;
        let name = host.to_owned();
        let answering = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let thread = std::thread::Builder::new()
            .name(format!("responder-{host}"))
            .spawn({
                let (name, answering, stop, answered) = (
                    name.clone(),
                    answering.clone(),
                    stop.clone(),
                    answered.clone(),
                );
                move || respond(&socket, &name, &answering, &stop, &answered)
            })
            .context("cannot start the responder thread")?;
        Ok(Responder {
            name,
            answering,
            stop,
            answered,
            thread: Some(thread),
        })
    }

    /// The name this responder puts in its replies.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops (false) or resumes (true) answering without closing the socket: the router's
    /// service dies while its VRRP carries on.
    pub fn set_answering(&self, answering: bool) {
        self.answering.store(answering, Ordering::SeqCst);
    }

    /// How many probes this responder has answered.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::SeqCst)
    }

    /// Stops answering and closes the socket.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn respond(
    socket: &UdpSocket,
    name: &str,
    answering: &AtomicBool,
    stop: &AtomicBool,
    answered: &AtomicU64,
) {
    let mut buf = [0u8; 512];
    let mut reply = Vec::with_capacity(PROBE_LEN + name.len());
    while !stop.load(Ordering::SeqCst) {
        let Ok((len, from)) = socket.recv_from(&mut buf) else {
            continue; // timeout: look at the stop flag again
        };
        let probe = &buf[..len];
        if len != PROBE_LEN || &probe[..4] != PROBE_MAGIC || !answering.load(Ordering::SeqCst) {
            continue;
        }
        reply.clear();
        reply.extend_from_slice(REPLY_MAGIC);
        reply.extend_from_slice(&probe[4..PROBE_LEN]);
        reply.extend_from_slice(name.as_bytes());
        if socket.send_to(&reply, from).is_ok() {
            answered.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Probe pacing and bounds.
#[derive(Debug, Clone, Copy)]
pub struct ProbeConfig {
    /// Time between probes (default 1 ms).
    pub interval: Duration,
    /// The prober stops sending by itself after this long (default 60 s).
    pub max_duration: Duration,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            interval: Duration::from_millis(1),
            max_duration: Duration::from_secs(60),
        }
    }
}

/// One answered probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Sequence number of the probe (0, 1, 2, ...).
    pub seq: u64,
    /// When the probe was sent.
    pub sent: Instant,
    /// When its reply arrived.
    pub received: Instant,
    /// Name of the router that answered.
    pub responder: String,
}

impl Reply {
    /// Round-trip time of this probe.
    pub fn rtt(&self) -> Duration {
        self.received.saturating_duration_since(self.sent)
    }
}

#[derive(Debug)]
struct ProberShared {
    stop: AtomicBool,
    sent: AtomicU64,
    send_errors: AtomicU64,
    replies: Mutex<Vec<Reply>>,
    stopped_at: Mutex<Option<Instant>>,
}

/// Sends a probe to `VIP:port` every [`ProbeConfig::interval`] from a client namespace and
/// records the replies. Stops by itself after [`ProbeConfig::max_duration`], and on drop.
#[derive(Debug)]
pub struct Prober {
    started: Instant,
    shared: Arc<ProberShared>,
    sender: Option<JoinHandle<()>>,
    receiver: Option<JoinHandle<()>>,
}

impl Prober {
    /// Starts probing `vip:port` from host `client` with the default 1 ms interval.
    pub fn start(lab: &Lab, client: &str, vip: IpAddr, port: u16) -> anyhow::Result<Prober> {
        Prober::start_with(lab, client, vip, port, ProbeConfig::default())
    }

    /// Starts probing with explicit pacing.
    pub fn start_with(
        lab: &Lab,
        client: &str,
        vip: IpAddr,
        port: u16,
        config: ProbeConfig,
    ) -> anyhow::Result<Prober> {
        let ns = lab.ns_name(client);
        let local: SocketAddr = match vip {
            IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = in_netns(&ns, || -> std::io::Result<UdpSocket> {
            let socket = UdpSocket::bind(local)?;
            socket.set_read_timeout(Some(POLL))?;
            Ok(socket)
        })?
        .with_context(|| format!("cannot bind the prober's UDP socket in {ns}"))?;
        let send_socket = socket
            .try_clone()
            .context("cannot clone the prober socket")?;
        let started = Instant::now();
        let shared = Arc::new(ProberShared {
            stop: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            replies: Mutex::new(Vec::new()),
            stopped_at: Mutex::new(None),
        });
        let target = SocketAddr::new(vip, port);
        let sender = std::thread::Builder::new()
            .name(format!("prober-send-{client}"))
            .spawn({
                let shared = shared.clone();
                move || send_probes(&send_socket, target, started, config, &shared)
            })
            .context("cannot start the prober's sender")?;
        let receiver = std::thread::Builder::new()
            .name(format!("prober-recv-{client}"))
            .spawn({
                let shared = shared.clone();
                move || receive_replies(&socket, started, &shared)
            });
        let receiver = match receiver {
            Ok(receiver) => receiver,
            Err(e) => {
                shared.stop.store(true, Ordering::SeqCst);
                let _ = sender.join();
                return Err(e).context("cannot start the prober's receiver");
            }
        };
        Ok(Prober {
            started,
            shared,
            sender: Some(sender),
            receiver: Some(receiver),
        })
    }

    /// The current instant, to pass to [`ProbeReport::largest_gap_after`] later: call it
    /// right before the event whose outage you measure.
    pub fn mark(&self) -> Instant {
        Instant::now()
    }

    /// When probing started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Replies received so far.
    pub fn reply_count(&self) -> usize {
        lock(&self.shared.replies).len()
    }

    /// Replies received so far from router `name`.
    pub fn replies_from(&self, name: &str) -> usize {
        lock(&self.shared.replies)
            .iter()
            .filter(|r| r.responder == name)
            .count()
    }

    /// The router that sent the latest reply so far.
    pub fn last_responder(&self) -> Option<String> {
        lock(&self.shared.replies)
            .last()
            .map(|r| r.responder.clone())
    }

    /// Whether the prober is still sending (false after stop or max duration).
    pub fn is_running(&self) -> bool {
        !self.shared.stop.load(Ordering::SeqCst)
    }

    /// Stops probing, waits briefly for late replies, and returns what was seen.
    pub fn stop(mut self) -> ProbeReport {
        self.shutdown();
        let replies = std::mem::take(&mut *lock(&self.shared.replies));
        let stopped = lock(&self.shared.stopped_at).unwrap_or_else(Instant::now);
        ProbeReport::new(
            self.started,
            stopped,
            self.shared.sent.load(Ordering::SeqCst),
            self.shared.send_errors.load(Ordering::SeqCst),
            replies,
        )
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for thread in [self.sender.take(), self.receiver.take()]
            .into_iter()
            .flatten()
        {
            let _ = thread.join();
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn send_probes(
    socket: &UdpSocket,
    target: SocketAddr,
    started: Instant,
    config: ProbeConfig,
    shared: &ProberShared,
) {
    let mut next = started;
    let mut seq: u64 = 0;
    let mut probe = [0u8; PROBE_LEN];
    probe[..4].copy_from_slice(PROBE_MAGIC);
    while !shared.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now.duration_since(started) >= config.max_duration {
            break;
        }
        if next > now {
            std::thread::sleep(next - now);
        }
        let sent_at = Instant::now();
        let offset = u64::try_from(sent_at.duration_since(started).as_nanos()).unwrap_or(u64::MAX);
        probe[4..12].copy_from_slice(&seq.to_be_bytes());
        probe[12..20].copy_from_slice(&offset.to_be_bytes());
        match socket.send_to(&probe, target) {
            Ok(_) => shared.sent.fetch_add(1, Ordering::SeqCst),
            // e.g. EHOSTUNREACH while nobody answers ARP for the VIP
            Err(_) => shared.send_errors.fetch_add(1, Ordering::SeqCst),
        };
        seq += 1;
        // Pace from the schedule, but never burst to catch up after a stall.
        next = (next + config.interval).max(Instant::now());
    }
    *lock(&shared.stopped_at) = Some(Instant::now());
    shared.stop.store(true, Ordering::SeqCst);
}

fn receive_replies(socket: &UdpSocket, started: Instant, shared: &ProberShared) {
    let mut buf = [0u8; 512];
    let mut drain_until: Option<Instant> = None;
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            let until = *drain_until.get_or_insert_with(|| Instant::now() + DRAIN);
            if Instant::now() >= until {
                break;
            }
        }
        let Ok(len) = socket.recv(&mut buf) else {
            continue;
        };
        let received = Instant::now();
        if let Some((seq, offset, name)) = parse_reply(&buf[..len]) {
            lock(&shared.replies).push(Reply {
                seq,
                sent: started + Duration::from_nanos(offset),
                received,
                responder: name,
            });
        }
    }
}

fn parse_reply(reply: &[u8]) -> Option<(u64, u64, String)> {
    if reply.len() < PROBE_LEN || &reply[..4] != REPLY_MAGIC {
        return None;
    }
    let seq = u64::from_be_bytes(reply[4..12].try_into().ok()?);
    let offset = u64::from_be_bytes(reply[12..20].try_into().ok()?);
    let name = String::from_utf8_lossy(&reply[PROBE_LEN..]).into_owned();
    Some((seq, offset, name))
}

/// A silent stretch between two replies (or between a reply and the end of probing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The reply before the gap (or the mark, if nothing answered before it).
    pub start: Instant,
    /// The reply after the gap (or the end of probing).
    pub end: Instant,
    /// Who sent the reply before the gap.
    pub before: Option<String>,
    /// Who sent the reply after the gap; `None` when probing ended without a reply.
    pub after: Option<String>,
}

impl Gap {
    /// Length of the gap: the client-visible outage.
    pub fn duration(&self) -> Duration {
        self.end.saturating_duration_since(self.start)
    }
}

/// What a [`Prober`] saw.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// When probing started.
    pub started: Instant,
    /// When the last probe was sent.
    pub stopped: Instant,
    /// Probes sent.
    pub sent: u64,
    /// Probes the kernel refused to send (e.g. unresolved neighbour).
    pub send_errors: u64,
    /// Replies in arrival order.
    pub replies: Vec<Reply>,
    /// Routers that answered, in order of their first reply.
    pub responders_seen: Vec<String>,
}

impl ProbeReport {
    fn new(
        started: Instant,
        stopped: Instant,
        sent: u64,
        send_errors: u64,
        mut replies: Vec<Reply>,
    ) -> ProbeReport {
        replies.sort_by_key(|r| r.received);
        let mut responders_seen: Vec<String> = Vec::new();
        for reply in &replies {
            if !responders_seen.contains(&reply.responder) {
                responders_seen.push(reply.responder.clone());
            }
        }
        ProbeReport {
            started,
            stopped,
            sent,
            send_errors,
            replies,
            responders_seen,
        }
    }

    /// The largest silence the client saw after `mark`, see [`ProbeReport::largest_gap_detail_after`].
    pub fn largest_gap_after(&self, mark: Instant) -> Duration {
        self.largest_gap_detail_after(mark)
            .map(|gap| gap.duration())
            .unwrap_or_default()
    }

    /// The largest gap between consecutive replies that ends after `mark`. The gap that
    /// straddles `mark` counts from the last reply before it (so an outage starting just
    /// before the mark is measured whole); if nothing answered before `mark`, from `mark`.
    /// If replies stopped for good, the trailing gap runs to the end of probing.
    pub fn largest_gap_detail_after(&self, mark: Instant) -> Option<Gap> {
        let split = self.replies.partition_point(|r| r.received <= mark);
        let mut points: Vec<(Instant, Option<&str>)> = Vec::new();
        match split.checked_sub(1).map(|i| &self.replies[i]) {
            Some(before) => points.push((before.received, Some(&before.responder))),
            None => points.push((mark, None)),
        }
        points.extend(
            self.replies[split..]
                .iter()
                .map(|r| (r.received, Some(r.responder.as_str()))),
        );
        if self.stopped > points[points.len() - 1].0 {
            points.push((self.stopped, None));
        }
        points
            .windows(2)
            .map(|pair| Gap {
                start: pair[0].0,
                end: pair[1].0,
                before: pair[0].1.map(str::to_owned),
                after: pair[1].1.map(str::to_owned),
            })
            .max_by_key(Gap::duration)
    }

    /// The router that sent the last reply.
    pub fn last_responder(&self) -> Option<&str> {
        self.replies.last().map(|r| r.responder.as_str())
    }

    /// Number of replies.
    pub fn reply_count(&self) -> usize {
        self.replies.len()
    }

    /// Number of replies from router `name`.
    pub fn replies_from(&self, name: &str) -> usize {
        self.replies.iter().filter(|r| r.responder == name).count()
    }

    /// The first reply from router `name` received after `mark`.
    pub fn first_reply_from_after(&self, name: &str, mark: Instant) -> Option<&Reply> {
        self.replies
            .iter()
            .find(|r| r.received > mark && r.responder == name)
    }

    /// The last reply from router `name`.
    pub fn last_reply_from(&self, name: &str) -> Option<&Reply> {
        self.replies.iter().rev().find(|r| r.responder == name)
    }

    /// Probes sent but never answered (duplicates counted once).
    pub fn lost(&self) -> u64 {
        let mut seqs: Vec<u64> = self.replies.iter().map(|r| r.seq).collect();
        seqs.sort_unstable();
        seqs.dedup();
        self.sent.saturating_sub(seqs.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(start: Instant, arrivals: &[(u64, &str)], stopped_ms: u64) -> ProbeReport {
        let at = |ms: u64| start + Duration::from_millis(ms);
        let replies = arrivals
            .iter()
            .enumerate()
            .map(|(i, &(ms, who))| Reply {
                seq: i as u64,
                sent: at(ms),
                received: at(ms),
                responder: who.to_owned(),
            })
            .collect();
        ProbeReport::new(start, at(stopped_ms), 100, 0, replies)
    }

    #[test]
    fn gap_straddling_the_mark_counts_from_the_last_reply_before_it() {
        let t0 = Instant::now();
        let r = report(
            t0,
            &[(1, "r1"), (2, "r1"), (3, "r1"), (183, "r2"), (184, "r2")],
            185,
        );
        let gap = r
            .largest_gap_detail_after(t0 + Duration::from_millis(10))
            .unwrap();
        assert_eq!(gap.duration(), Duration::from_millis(180));
        assert_eq!(gap.before.as_deref(), Some("r1"));
        assert_eq!(gap.after.as_deref(), Some("r2"));
        assert_eq!(r.responders_seen, ["r1", "r2"]);
        assert_eq!(r.last_responder(), Some("r2"));
    }

    #[test]
    fn gaps_that_ended_before_the_mark_are_ignored() {
        let t0 = Instant::now();
        let r = report(t0, &[(1, "r1"), (500, "r1"), (501, "r1"), (502, "r1")], 503);
        assert_eq!(
            r.largest_gap_after(t0 + Duration::from_millis(500)),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn replies_that_never_come_back_make_a_trailing_gap() {
        let t0 = Instant::now();
        let r = report(t0, &[(1, "r1"), (2, "r1")], 1002);
        let gap = r
            .largest_gap_detail_after(t0 + Duration::from_millis(5))
            .unwrap();
        assert_eq!(gap.duration(), Duration::from_secs(1));
        assert_eq!(gap.after, None);
    }

    #[test]
    fn reply_wire_format_round_trips() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(REPLY_MAGIC);
        bytes.extend_from_slice(&7u64.to_be_bytes());
        bytes.extend_from_slice(&1_000_000u64.to_be_bytes());
        bytes.extend_from_slice(b"r2");
        assert_eq!(parse_reply(&bytes), Some((7, 1_000_000, "r2".into())));
        assert_eq!(parse_reply(&bytes[..10]), None);
        bytes[0] = b'X';
        assert_eq!(parse_reply(&bytes), None);
    }
}
