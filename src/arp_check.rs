//! The DR real-server ARP check: finds real servers that answer ARP for a
//! virtual IP (the direct-routing "ARP problem").
//!
//! In direct routing the real servers hold the VIP on `lo` and must never
//! answer ARP for it (`arp_ignore=1`, `arp_announce=2`). One that does makes
//! the gateway (or any client on the segment) send VIP traffic straight to
//! it, past the director. The directors themselves keep `arp_ignore=0`: the
//! master answers for the VIP, and so may the other director when it holds
//! the VIP.
//!
//! Every [`CHECK_INTERVAL`] (and shortly after start and after a reload) a
//! round runs, on each segment of DR real servers (the interface the route to
//! a real server leaves by):
//!
//! 1. broadcast an ARP request (RFC 826) for each VIP of an IPv4 DR virtual
//!    server (twice, [`VIP_REQUEST_GAP`] apart), for each real server's own
//!    address, and for each address of a known director (the VRRP peers:
//!    `unicast_peer`, and the master the driver reports);
//! 2. listen for [`REPLY_WINDOW`] on a packet socket bound to that interface;
//! 3. a reply for a VIP from a MAC that is not a director's is a conflict.
//!    Director MACs are this host's own interfaces' MACs, the VRRP virtual MACs
//!    of its VRIDs (RFC 5798 §7.3), and the MACs that answered for a director's
//!    address (directors run `arp_ignore=0`, so the peer answers for its own
//!    VRRP address on any of its interfaces, from the same MAC it would answer
//!    for the VIP). The guilty real server is the one whose address was
//!    answered from that MAC.
//!
//! A new conflict is logged at error level once, its end once; the current
//! ones are in `haldir status` and in `/metrics`. The check reads only the
//! configuration model, never IPVS, so it runs where the kernel has none.
//! IPv6 virtual servers are left alone (their counterpart would be a
//! Neighbor Solicitation for the VIP; not done).
//!
//! The wire format is `haldir_vrrp::wire::arp`; frames go out through
//! `haldir_vrrp::socket::FrameSocket`. Replies come in through [`ArpListener`],
//! an `AF_PACKET` socket for ARP only, bound to one interface.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime};

use futures::TryStreamExt;
use haldir_config::{LvsMethod, Model, VirtualServerAddress};
use haldir_vrrp::driver::Status;
use haldir_vrrp::router::State;
use haldir_vrrp::socket::FrameSocket;
use haldir_vrrp::wire::arp::{ArpRepr, Operation, BROADCAST_MAC, ETHERTYPE_ARP};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteType};
use serde_json::{json, Value};
use socket2::{Domain, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

/// How often a round runs.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// How long a round listens for replies after its requests.
pub const REPLY_WINDOW: Duration = Duration::from_secs(1);
/// The request for each VIP goes out twice, this far apart, so that one lost
/// reply does not clear a standing conflict.
pub const VIP_REQUEST_GAP: Duration = Duration::from_millis(200);
/// How long a MAC that answered for a director's address counts as a
/// director's after it last did.
const DIRECTOR_MEMORY: Duration = Duration::from_secs(600);
/// The wait between a reload and the round that follows it.
const AFTER_RELOAD: Duration = Duration::from_millis(500);

/// An Ethernet address.
pub type Mac = [u8; 6];

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One IPv4 DR virtual server the check covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The service as `haldir status` names it (`TCP 10.0.0.100:80`).
    pub virtual_server: String,
    /// Its virtual IP.
    pub vip: Ipv4Addr,
    /// Its IPv4 real servers.
    pub real_servers: Vec<Ipv4Addr>,
}

/// The virtual servers to check: those with an IPv4 address (not a fwmark)
/// that forward by direct routing.
pub fn targets(model: &Model) -> Vec<Target> {
    model
        .virtual_servers
        .iter()
        .filter(|vs| vs.method == LvsMethod::DirectRouting)
        .filter_map(|vs| match vs.address {
            VirtualServerAddress::Socket {
                ip: IpAddr::V4(vip),
                ..
            } => Some(Target {
                virtual_server: haldir_director::ipvs_table::service_key(vs).to_string(),
                vip,
                real_servers: vs.real_servers.iter().fold(Vec::new(), |mut all, rs| {
                    // The same address may serve several ports: asked for once.
                    match rs.ip {
                        IpAddr::V4(ip) if !all.contains(&ip) => all.push(ip),
                        _ => {}
                    }
                    all
                }),
            }),
            _ => None,
        })
        .collect()
}

/// Addresses of the other directors: the configured unicast peers and the
/// masters the VRRP driver has seen (IPv4 only).
pub fn director_addresses(model: &Model, status: &Status) -> BTreeSet<Ipv4Addr> {
    let peers = model
        .vrrp_instances
        .iter()
        .flat_map(|i| i.unicast_peer.iter().copied());
    let masters = status.instances.iter().filter_map(|i| i.master);
    peers
        .chain(masters)
        .filter_map(|a| match a {
            IpAddr::V4(v4) if !v4.is_unspecified() => Some(v4),
            _ => None,
        })
        .collect()
}

/// The VRRP virtual MACs of this host's IPv4 virtual routers,
/// `00:00:5e:00:01:{VRID}` (RFC 5798 §7.3): a peer running with a virtual
/// MAC (keepalived's `use_vmac`) answers for the VIP from it.
pub fn virtual_router_macs(model: &Model) -> BTreeSet<Mac> {
    model
        .vrrp_instances
        .iter()
        .map(|i| [0x00, 0x00, 0x5e, 0x00, 0x01, i.virtual_router_id])
        .collect()
}

/// One segment of DR real servers: an interface of this host and what is
/// probed on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Interface name.
    pub interface: String,
    /// Its index.
    pub index: u32,
    /// Its MAC: the sender of the requests.
    pub mac: Mac,
    /// The sender address of the requests (the route's preferred source;
    /// unspecified if the interface has none: an RFC 5227 probe).
    pub source: Ipv4Addr,
    /// The virtual servers with a real server here, with those real servers.
    pub targets: Vec<Target>,
    /// Director addresses, asked to learn the directors' MACs here.
    pub directors: BTreeSet<Ipv4Addr>,
}

impl Segment {
    /// Every VIP asked for here.
    pub fn vips(&self) -> BTreeSet<Ipv4Addr> {
        self.targets.iter().map(|t| t.vip).collect()
    }

    /// Every real server asked for here.
    pub fn real_servers(&self) -> BTreeSet<Ipv4Addr> {
        self.targets
            .iter()
            .flat_map(|t| t.real_servers.iter().copied())
            .collect()
    }
}

/// What answered on a segment in one round: each address asked for, with
/// the sender MACs of the replies for it.
pub type Answers = BTreeMap<Ipv4Addr, BTreeSet<Mac>>;

/// One real server (or unknown host) answering ARP for a VIP.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Conflict {
    /// The virtual server whose VIP it answers for.
    pub virtual_server: String,
    /// The VIP.
    pub vip: Ipv4Addr,
    /// The real server whose own address resolves to `mac`; `None` when no
    /// real server of the segment does (some other host answers).
    pub real_server: Option<Ipv4Addr>,
    /// The sender MAC of the reply.
    pub mac: Mac,
    /// Where it was seen.
    pub interface: String,
}

impl Conflict {
    /// `real server 10.0.0.12` or `an unknown host`.
    fn who(&self) -> String {
        match self.real_server {
            Some(rs) => format!("real server {rs}"),
            None => "a host that is no real server".into(),
        }
    }
}

/// The conflicts one segment's answers show: a reply for a VIP from a MAC
/// not in `directors`, named after the real server (of that virtual server
/// first, else of any on the segment) whose own address answered from it.
pub fn find_conflicts(
    segment: &Segment,
    answers: &Answers,
    directors: &BTreeSet<Mac>,
) -> Vec<Conflict> {
    let owner = |mac: &Mac, candidates: Vec<Ipv4Addr>| {
        candidates
            .into_iter()
            .find(|rs| answers.get(rs).is_some_and(|macs| macs.contains(mac)))
    };
    let mut found = Vec::new();
    for target in &segment.targets {
        let Some(macs) = answers.get(&target.vip) else {
            continue;
        };
        for mac in macs.iter().filter(|m| !directors.contains(*m)) {
            let real_server = owner(mac, target.real_servers.clone())
                .or_else(|| owner(mac, segment.real_servers().into_iter().collect()));
            found.push(Conflict {
                virtual_server: target.virtual_server.clone(),
                vip: target.vip,
                real_server,
                mac: *mac,
                interface: segment.interface.clone(),
            });
        }
    }
    found.sort();
    found.dedup();
    found
}

/// The conflicts that stand, with when each was first seen; reports which
/// are new and which cleared after each round.
#[derive(Debug, Default)]
pub struct Tracker {
    active: BTreeMap<Conflict, SystemTime>,
}

impl Tracker {
    /// Takes a round's conflicts: returns (new, cleared).
    pub fn update(
        &mut self,
        found: Vec<Conflict>,
        now: SystemTime,
    ) -> (Vec<Conflict>, Vec<Conflict>) {
        let found: BTreeSet<Conflict> = found.into_iter().collect();
        let cleared: Vec<Conflict> = self
            .active
            .keys()
            .filter(|c| !found.contains(*c))
            .cloned()
            .collect();
        for c in &cleared {
            self.active.remove(c);
        }
        let mut new = Vec::new();
        for c in found {
            if !self.active.contains_key(&c) {
                self.active.insert(c.clone(), now);
                new.push(c);
            }
        }
        (new, cleared)
    }

    /// The standing conflicts with when each was first seen.
    pub fn active(&self) -> Vec<(Conflict, SystemTime)> {
        self.active.iter().map(|(c, t)| (c.clone(), *t)).collect()
    }
}

/// A real server the check cannot probe, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The real server.
    pub real_server: Ipv4Addr,
    /// Why (`no route`, `via gateway 10.0.0.254: not on a segment of this host`, ...).
    pub reason: String,
}

/// One segment as the last round saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentReport {
    /// Interface.
    pub interface: String,
    /// VIPs asked for.
    pub vips: Vec<Ipv4Addr>,
    /// Real servers asked for.
    pub real_servers: Vec<Ipv4Addr>,
    /// Real servers that did not answer for their own address.
    pub unresolved: Vec<Ipv4Addr>,
    /// Why the segment could not be probed, if it could not.
    pub error: Option<String>,
}

/// What the check publishes after each round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The period of the rounds.
    pub interval: Duration,
    /// Rounds run so far.
    pub rounds: u64,
    /// When the last round ended.
    pub last_round: Option<SystemTime>,
    /// The segments probed in the last round.
    pub segments: Vec<SegmentReport>,
    /// Real servers left out of the last round.
    pub skipped: Vec<Skipped>,
    /// The standing conflicts, each with when it was first seen.
    pub conflicts: Vec<(Conflict, SystemTime)>,
    /// Why the last round could not run, if it could not.
    pub error: Option<String>,
}

impl Default for Report {
    fn default() -> Self {
        Report {
            interval: CHECK_INTERVAL,
            rounds: 0,
            last_round: None,
            segments: Vec::new(),
            skipped: Vec::new(),
            conflicts: Vec::new(),
            error: None,
        }
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The report as the `dr_arp_check` object of the status document.
pub fn report_json(report: &Report) -> Value {
    let text = |items: &[Ipv4Addr]| items.iter().map(ToString::to_string).collect::<Vec<_>>();
    json!({
        "interval_seconds": report.interval.as_secs_f64(),
        "rounds": report.rounds,
        "last_round_unix": report.last_round.map(unix_seconds),
        "error": report.error,
        "segments": report.segments.iter().map(|s| json!({
            "interface": s.interface,
            "vips": text(&s.vips),
            "real_servers": text(&s.real_servers),
            "unresolved_real_servers": text(&s.unresolved),
            "error": s.error,
        })).collect::<Vec<_>>(),
        "skipped": report.skipped.iter().map(|s| json!({
            "real_server": s.real_server.to_string(),
            "reason": s.reason,
        })).collect::<Vec<_>>(),
        "conflicts": report.conflicts.iter().map(|(c, since)| json!({
            "virtual_server": c.virtual_server,
            "vip": c.vip.to_string(),
            "real_server": c.real_server.map(|a| a.to_string()),
            "mac": mac_text(&c.mac),
            "interface": c.interface,
            "since_unix": unix_seconds(*since),
        })).collect::<Vec<_>>(),
    })
}

/// The `dr_arp_check` object as text for `haldir status` (empty when no DR
/// real server is checked and nothing stands).
pub fn render_text(check: &Value, now_unix: f64) -> String {
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let (segments, conflicts) = (list(&check["segments"]), list(&check["conflicts"]));
    if segments.is_empty() && conflicts.is_empty() && check["error"].is_null() {
        return String::new();
    }
    let last = match check["last_round_unix"].as_f64() {
        Some(t) => format!("last {} ago", crate::control::age_text(now_unix - t)),
        None => "no round yet".into(),
    };
    let every = check["interval_seconds"].as_f64().unwrap_or(0.0);
    let mut out = format!("\nDR ARP check (every {every}s, {last}): ");
    if let Some(error) = check["error"].as_str() {
        out.push_str(&format!("cannot run: {error}\n"));
    } else if conflicts.is_empty() {
        out.push_str("no real server answers ARP for a VIP\n");
    } else {
        out.push_str(&format!(
            "{} CONFLICT(S): real servers answering ARP for a VIP (set arp_ignore=1, arp_announce=2 on them)\n",
            conflicts.len()
        ));
        for c in &conflicts {
            let who = c["real_server"].as_str().unwrap_or("unknown host");
            let since = c["since_unix"].as_f64().unwrap_or(now_unix);
            out.push_str(&format!(
                "  {}  VIP {}  answered by {} ({}) on {}  since {} ({} ago)\n",
                c["virtual_server"].as_str().unwrap_or("-"),
                c["vip"].as_str().unwrap_or("-"),
                who,
                c["mac"].as_str().unwrap_or("-"),
                c["interface"].as_str().unwrap_or("-"),
                crate::control::utc_text(since),
                crate::control::age_text(now_unix - since),
            ));
        }
    }
    for s in &segments {
        if let Some(error) = s["error"].as_str() {
            out.push_str(&format!(
                "  {}: cannot probe: {error}\n",
                s["interface"].as_str().unwrap_or("-")
            ));
        }
    }
    out
}

/// An `AF_PACKET` socket that receives the ARP frames of one interface.
pub struct ArpListener {
    socket: AsyncFd<Socket>,
    index: u32,
}

/// `sll_pkttype` of frames this host sent itself.
const PACKET_OUTGOING: u8 = 4;

impl ArpListener {
    /// Opens it on interface `index`. Created with protocol 0 (receiving
    /// nothing) and bound with ETH_P_ARP and the interface at once, so no
    /// frame of another interface is ever queued.
    pub fn open(index: u32) -> io::Result<ArpListener> {
        let socket = Socket::new(Domain::PACKET, Type::RAW, None)?;
        socket.set_nonblocking(true)?;
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut link: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        link.sll_family = libc::AF_PACKET as u16;
        link.sll_protocol = ETHERTYPE_ARP.to_be();
        link.sll_ifindex = index as i32;
        // SAFETY: the pointer and length describe the sockaddr_ll above.
        let rc = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                (&link as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the socket owns its descriptor, which nothing else closes or
        // replaces while the AsyncFd holds it.
        let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE)? };
        Ok(ArpListener { socket, index })
    }

    /// Waits for the next ARP frame that arrived from the wire (frames this
    /// host sent are skipped); returns its length in `buffer`.
    pub async fn receive(&self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.socket.readable().await?;
            match guard.try_io(|fd| receive_from(fd.get_ref(), buffer)) {
                Ok(Ok((length, pkttype, index))) => {
                    if pkttype != PACKET_OUTGOING && index == self.index {
                        return Ok(length);
                    }
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    }
}

/// One `recvfrom`: (length, packet type, interface index).
fn receive_from(socket: &Socket, buffer: &mut [u8]) -> io::Result<(usize, u8, u32)> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut link: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut length = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: buffer and link are valid for writes of the lengths given.
    let rc = unsafe {
        libc::recvfrom(
            socket.as_raw_fd(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            0,
            (&mut link as *mut libc::sockaddr_ll).cast(),
            &mut length,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((rc as usize, link.sll_pkttype, link.sll_ifindex as u32))
}

/// Asks, on one segment, for every VIP, real server and director address,
/// and collects the replies for [`REPLY_WINDOW`].
pub async fn probe(segment: &Segment) -> io::Result<Answers> {
    let listener = ArpListener::open(segment.index)?;
    let sender = FrameSocket::open(segment.index)?;
    let vips = segment.vips();
    let others: BTreeSet<Ipv4Addr> = segment
        .real_servers()
        .into_iter()
        .chain(segment.directors.iter().copied())
        .collect();
    let asked: BTreeSet<Ipv4Addr> = vips.iter().chain(others.iter()).copied().collect();
    let send = |target: Ipv4Addr| -> io::Result<()> {
        let mut frame = [0u8; 60];
        let request = ArpRepr::request(segment.mac, segment.source, target);
        request.emit_frame(
            segment.mac,
            BROADCAST_MAC,
            &mut frame[..request.frame_len()],
        );
        sender.send(&frame[..request.frame_len()])
    };
    for address in vips.iter().chain(others.iter()) {
        send(*address)?;
    }
    let mut answers = Answers::new();
    let mut buffer = [0u8; 1514];
    let start = tokio::time::Instant::now();
    let mut repeated = false;
    loop {
        let deadline = if repeated {
            start + REPLY_WINDOW
        } else {
            start + VIP_REQUEST_GAP
        };
        tokio::select! {
            received = listener.receive(&mut buffer) => {
                let length = received?;
                let Ok(arp) = ArpRepr::parse(&buffer[..length]) else { continue };
                if arp.operation == Operation::Reply && asked.contains(&arp.sender_ip) {
                    answers.entry(arp.sender_ip).or_default().insert(arp.sender_mac);
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                if repeated {
                    return Ok(answers);
                }
                repeated = true;
                for vip in &vips {
                    send(*vip)?;
                }
            }
        }
    }
}

/// This host's interfaces by index: (name, MAC).
async fn own_links(handle: &rtnetlink::Handle) -> Result<BTreeMap<u32, (String, Mac)>, String> {
    let mut links = handle.link().get().execute();
    let mut out = BTreeMap::new();
    while let Some(link) = links
        .try_next()
        .await
        .map_err(|e| format!("listing interfaces: {e}"))?
    {
        let mut name = String::new();
        let mut mac = [0u8; 6];
        for attribute in &link.attributes {
            match attribute {
                LinkAttribute::IfName(n) => name = n.clone(),
                LinkAttribute::Address(bytes) if bytes.len() == 6 => mac.copy_from_slice(bytes),
                _ => {}
            }
        }
        out.insert(link.header.index, (name, mac));
    }
    Ok(out)
}

/// Where the route to `address` leaves: (interface index, preferred
/// source), or why it is not on a segment of this host.
async fn route_to(
    handle: &rtnetlink::Handle,
    address: Ipv4Addr,
) -> Result<(u32, Option<Ipv4Addr>), String> {
    let request = rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(address, 32)
        .build();
    let mut routes = handle.route().get(request).execute();
    let route = match routes.try_next().await {
        Ok(Some(route)) => route,
        Ok(None) => return Err("no route".into()),
        Err(e) => return Err(format!("no route ({e})")),
    };
    if route.header.kind == RouteType::Local {
        return Err("a local address of this host".into());
    }
    let (mut oif, mut source) = (None, None);
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Oif(index) => oif = Some(*index),
            RouteAttribute::PrefSource(RouteAddress::Inet(a)) => source = Some(*a),
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => {
                return Err(format!(
                    "routed via gateway {g}: not on a segment of this host, as DR needs"
                ))
            }
            _ => {}
        }
    }
    oif.map(|index| (index, source))
        .ok_or_else(|| "the route names no interface".into())
}

/// Groups the targets' real servers by the interface their route leaves by.
async fn segments(
    handle: &rtnetlink::Handle,
    targets: &[Target],
    links: &BTreeMap<u32, (String, Mac)>,
    directors: &BTreeSet<Ipv4Addr>,
) -> (Vec<Segment>, Vec<Skipped>) {
    let mut routes = BTreeMap::new();
    let mut skipped = Vec::new();
    let all: BTreeSet<Ipv4Addr> = targets
        .iter()
        .flat_map(|t| t.real_servers.iter().copied())
        .collect();
    for rs in all {
        let route =
            route_to(handle, rs)
                .await
                .and_then(|(index, source)| match links.get(&index) {
                    Some((_, mac)) if *mac != [0; 6] => Ok((index, source)),
                    Some((name, _)) => Err(format!("its interface {name} has no Ethernet address")),
                    None => Err(format!("its interface (index {index}) is gone")),
                });
        match route {
            Ok(route) => {
                routes.insert(rs, route);
            }
            Err(reason) => skipped.push(Skipped {
                real_server: rs,
                reason,
            }),
        }
    }
    let mut by_index: BTreeMap<u32, Segment> = BTreeMap::new();
    for target in targets {
        for rs in &target.real_servers {
            let Some(&(index, source)) = routes.get(rs) else {
                continue;
            };
            let Some((name, mac)) = links.get(&index) else {
                continue;
            };
            let segment = by_index.entry(index).or_insert_with(|| Segment {
                interface: name.clone(),
                index,
                mac: *mac,
                source: source.unwrap_or(Ipv4Addr::UNSPECIFIED),
                targets: Vec::new(),
                directors: directors.clone(),
            });
            match segment
                .targets
                .iter_mut()
                .find(|t| t.virtual_server == target.virtual_server)
            {
                Some(t) => t.real_servers.push(*rs),
                None => segment.targets.push(Target {
                    real_servers: vec![*rs],
                    ..target.clone()
                }),
            }
        }
    }
    (by_index.into_values().collect(), skipped)
}

/// The running check: its rtnetlink handle, what it learned and what stands.
struct Check {
    handle: Option<rtnetlink::Handle>,
    tracker: Tracker,
    /// The last error logged per interface ("" for the whole round): a
    /// failure that repeats every round is logged once.
    errors: BTreeMap<String, String>,
    /// MACs that answered for a director's address, with when they last did.
    director_macs: BTreeMap<Mac, Instant>,
    report: Report,
}

impl Check {
    fn handle(&mut self) -> Result<rtnetlink::Handle, String> {
        if let Some(handle) = &self.handle {
            return Ok(handle.clone());
        }
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(|e| format!("cannot open a routing netlink socket: {e}"))?;
        tokio::spawn(connection);
        self.handle = Some(handle.clone());
        Ok(handle)
    }

    /// Logs a failure on `interface` ("": of the whole round) unless it is
    /// the one logged last time.
    fn failed(&mut self, interface: &str, error: &str) {
        if self.errors.get(interface).map(String::as_str) == Some(error) {
            debug!(interface, "DR ARP check still failing: {error}");
        } else if interface.is_empty() {
            warn!("DR ARP check cannot run: {error}");
        } else {
            warn!(interface, "DR ARP check cannot probe: {error}");
        }
        self.errors.insert(interface.to_owned(), error.to_owned());
    }

    /// One round: probes every segment, updates and logs the conflicts.
    async fn round(&mut self, model: &Model, status: &Status) {
        let targets = targets(model);
        let mut found = Vec::new();
        self.report.segments.clear();
        self.report.skipped.clear();
        self.report.error = None;
        if !targets.is_empty() {
            match self.probe_all(model, status, &targets).await {
                Ok(conflicts) => {
                    self.errors.remove("");
                    found = conflicts;
                }
                Err(e) => {
                    self.failed("", &e);
                    self.report.error = Some(e);
                    // Nothing was seen: what stood stays standing.
                    found = self.tracker.active().into_iter().map(|(c, _)| c).collect();
                }
            }
        }
        let now = SystemTime::now();
        let (new, cleared) = self.tracker.update(found, now);
        for c in &new {
            error!(
                virtual_server = %c.virtual_server,
                vip = %c.vip,
                real_server = %c.real_server.map(|a| a.to_string()).unwrap_or_default(),
                mac = %mac_text(&c.mac),
                interface = %c.interface,
                "DR ARP conflict: {} ({}) answers ARP for VIP {} of {} on {}: it takes the VIP's traffic from the director; give it arp_ignore=1 and arp_announce=2",
                c.who(), mac_text(&c.mac), c.vip, c.virtual_server, c.interface
            );
        }
        for c in &cleared {
            if !targets.iter().any(|t| t.virtual_server == c.virtual_server) {
                info!(
                    virtual_server = %c.virtual_server,
                    "DR ARP conflict no longer checked: {} is no IPv4 DR virtual server any more",
                    c.virtual_server
                );
                continue;
            }
            info!(
                virtual_server = %c.virtual_server,
                vip = %c.vip,
                real_server = %c.real_server.map(|a| a.to_string()).unwrap_or_default(),
                mac = %mac_text(&c.mac),
                interface = %c.interface,
                "DR ARP conflict cleared: {} ({}) no longer answers ARP for VIP {} of {} on {}",
                c.who(), mac_text(&c.mac), c.vip, c.virtual_server, c.interface
            );
        }
        self.report.rounds += 1;
        self.report.last_round = Some(now);
        self.report.conflicts = self.tracker.active();
    }

    async fn probe_all(
        &mut self,
        model: &Model,
        status: &Status,
        targets: &[Target],
    ) -> Result<Vec<Conflict>, String> {
        let handle = self.handle()?;
        let links = own_links(&handle).await?;
        let directors = director_addresses(model, status);
        let (segments, skipped) = segments(&handle, targets, &links, &directors).await;
        for s in &skipped {
            debug!(real_server = %s.real_server, "DR ARP check leaves it out: {}", s.reason);
        }
        self.report.skipped = skipped;
        let mut probes = tokio::task::JoinSet::new();
        for (position, segment) in segments.iter().cloned().enumerate() {
            probes.spawn(async move { (position, probe(&segment).await) });
        }
        let mut answers: Vec<Option<io::Result<Answers>>> = segments.iter().map(|_| None).collect();
        while let Some(done) = probes.join_next().await {
            if let Ok((position, result)) = done {
                answers[position] = Some(result);
            }
        }
        // Directors: this host, its virtual MACs, whoever answered for a director address.
        let now = Instant::now();
        for (segment, result) in segments.iter().zip(&answers) {
            if let Some(Ok(answers)) = result {
                for director in &segment.directors {
                    for mac in answers.get(director).into_iter().flatten() {
                        self.director_macs.insert(*mac, now);
                    }
                }
            }
        }
        self.director_macs
            .retain(|_, seen| now.duration_since(*seen) < DIRECTOR_MEMORY);
        let mut director_macs: BTreeSet<Mac> = links.values().map(|(_, mac)| *mac).collect();
        director_macs.extend(virtual_router_macs(model));
        director_macs.extend(self.director_macs.keys().copied());

        let mut conflicts = Vec::new();
        for (segment, result) in segments.iter().zip(answers) {
            let mut report = SegmentReport {
                interface: segment.interface.clone(),
                vips: segment.vips().into_iter().collect(),
                real_servers: segment.real_servers().into_iter().collect(),
                unresolved: Vec::new(),
                error: None,
            };
            match result {
                Some(Ok(answers)) => {
                    self.errors.remove(&segment.interface);
                    report.unresolved = report
                        .real_servers
                        .iter()
                        .filter(|rs| !answers.contains_key(rs))
                        .copied()
                        .collect();
                    conflicts.extend(find_conflicts(segment, &answers, &director_macs));
                }
                failed => {
                    let e = match failed {
                        Some(Err(e)) => e.to_string(),
                        _ => "the probe task failed".to_owned(),
                    };
                    self.failed(&segment.interface, &e);
                    report.error = Some(e);
                    // Not seen this round: what stood on this segment stays.
                    conflicts.extend(
                        self.tracker
                            .active()
                            .into_iter()
                            .map(|(c, _)| c)
                            .filter(|c| c.interface == segment.interface),
                    );
                }
            }
            self.report.segments.push(report);
        }
        Ok(conflicts)
    }
}

/// The wait before the first round: long enough for a backup to have heard
/// the master's adverts (3 advert intervals, plus a second), so that the
/// master is known as a director; at most [`CHECK_INTERVAL`].
pub fn first_round_delay(model: &Model) -> Duration {
    let advert = model
        .vrrp_instances
        .iter()
        .map(|i| Duration::from_millis(u64::from(i.advert_int_centis) * 10))
        .max()
        .unwrap_or_default();
    (advert * 3 + Duration::from_secs(1)).min(CHECK_INTERVAL)
}

/// Starts the check; it follows `running` (a reload triggers a round) and
/// stops when `shutdown` turns true. The receiver carries its report.
pub fn spawn(
    mut running: watch::Receiver<Model>,
    status: watch::Receiver<Status>,
    mut shutdown: watch::Receiver<bool>,
) -> (JoinHandle<()>, watch::Receiver<Report>) {
    let (report_tx, report_rx) = watch::channel(Report::default());
    let task = tokio::spawn(async move {
        let mut check = Check {
            handle: None,
            tracker: Tracker::default(),
            errors: BTreeMap::new(),
            director_macs: BTreeMap::new(),
            report: Report::default(),
        };
        // The first round also waits for the VRRP instances to leave Initialize (slow
        // starts happen: 5-7 s under emulation), else a backup would not yet know its
        // master and would take the master's answer for the VIP for a stranger's.
        let mut started = status.clone();
        tokio::select! {
            () = stopped(&mut shutdown) => return,
            _ = tokio::time::timeout(
                CHECK_INTERVAL,
                started.wait_for(|s| s.instances.iter().all(|i| i.state != State::Initialize)),
            ) => {}
        }
        let mut next = tokio::time::Instant::now() + first_round_delay(&running.borrow());
        loop {
            tokio::select! {
                () = stopped(&mut shutdown) => return,
                changed = running.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    next = next.min(tokio::time::Instant::now() + AFTER_RELOAD);
                }
                () = tokio::time::sleep_until(next) => {
                    let model = running.borrow_and_update().clone();
                    let status = status.borrow().clone();
                    check.round(&model, &status).await;
                    report_tx.send_replace(check.report.clone());
                    next = tokio::time::Instant::now() + CHECK_INTERVAL;
                }
            }
        }
    });
    (task, report_rx)
}

/// Resolves once `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
    const RS1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
    const RS2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 12);
    const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const MAC_RS1: Mac = [2, 0, 0, 0, 0, 0x11];
    const MAC_RS2: Mac = [2, 0, 0, 0, 0, 0x12];
    const MAC_PEER: Mac = [2, 0, 0, 0, 0, 0x02];
    const MAC_OWN: Mac = [2, 0, 0, 0, 0, 0x01];

    fn segment() -> Segment {
        Segment {
            interface: "eth1".into(),
            index: 3,
            mac: MAC_OWN,
            source: Ipv4Addr::new(10, 0, 0, 1),
            targets: vec![Target {
                virtual_server: "TCP 10.0.0.100:80".into(),
                vip: VIP,
                real_servers: vec![RS1, RS2],
            }],
            directors: [PEER].into(),
        }
    }

    fn answers(pairs: &[(Ipv4Addr, Mac)]) -> Answers {
        let mut out = Answers::new();
        for (ip, mac) in pairs {
            out.entry(*ip).or_default().insert(*mac);
        }
        out
    }

    #[test]
    fn a_real_server_answering_for_the_vip_is_named_by_its_own_address() {
        let seen = answers(&[
            (RS1, MAC_RS1),
            (RS2, MAC_RS2),
            (VIP, MAC_RS2),
            (VIP, MAC_OWN),
        ]);
        let found = find_conflicts(&segment(), &seen, &[MAC_OWN].into());
        assert_eq!(
            found,
            [Conflict {
                virtual_server: "TCP 10.0.0.100:80".into(),
                vip: VIP,
                real_server: Some(RS2),
                mac: MAC_RS2,
                interface: "eth1".into(),
            }]
        );
    }

    #[test]
    fn a_director_answering_for_the_vip_is_no_conflict() {
        let seen = answers(&[(RS1, MAC_RS1), (PEER, MAC_PEER), (VIP, MAC_PEER)]);
        assert!(find_conflicts(&segment(), &seen, &[MAC_OWN, MAC_PEER].into()).is_empty());
    }

    #[test]
    fn an_unknown_host_answering_for_the_vip_is_a_conflict_without_a_name() {
        let stranger = [2, 0, 0, 0, 0, 0x99];
        let seen = answers(&[(RS1, MAC_RS1), (VIP, stranger)]);
        let found = find_conflicts(&segment(), &seen, &[MAC_OWN].into());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].real_server, None);
        assert_eq!(found[0].mac, stranger);
    }

    #[test]
    fn the_tracker_reports_a_conflict_once_and_its_end_once() {
        let conflict = find_conflicts(
            &segment(),
            &answers(&[(RS2, MAC_RS2), (VIP, MAC_RS2)]),
            &BTreeSet::new(),
        );
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let mut tracker = Tracker::default();
        assert_eq!(
            tracker.update(conflict.clone(), t0),
            (conflict.clone(), vec![])
        );
        let t1 = t0 + CHECK_INTERVAL;
        assert_eq!(tracker.update(conflict.clone(), t1), (vec![], vec![]));
        assert_eq!(
            tracker.active(),
            vec![(conflict[0].clone(), t0)],
            "first seen stays"
        );
        assert_eq!(tracker.update(vec![], t1), (vec![], conflict));
        assert!(tracker.active().is_empty());
    }

    #[test]
    fn only_ipv4_direct_routing_virtual_servers_are_checked() {
        let text = r#"
[[virtual_server]]
ip = "10.0.0.100"
port = 80
lb_kind = "DR"
[[virtual_server.real_server]]
ip = "10.0.0.11"
[[virtual_server.real_server]]
ip = "10.0.0.12"

[[virtual_server]]
ip = "10.0.0.101"
port = 80
lb_kind = "NAT"
[[virtual_server.real_server]]
ip = "10.0.0.13"

[[virtual_server]]
ip = "2001:db8::100"
port = 80
lb_kind = "DR"
[[virtual_server.real_server]]
ip = "2001:db8::11"
"#;
        let model = haldir_config::parse_toml(text, "test.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            targets(&model),
            [Target {
                virtual_server: "TCP 10.0.0.100:80".into(),
                vip: VIP,
                real_servers: vec![RS1, RS2],
            }]
        );
    }

    #[test]
    fn the_status_text_names_the_guilty_real_server() {
        let report = Report {
            rounds: 3,
            last_round: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(100)),
            conflicts: vec![(
                Conflict {
                    virtual_server: "TCP 10.0.0.100:80".into(),
                    vip: VIP,
                    real_server: Some(RS2),
                    mac: MAC_RS2,
                    interface: "eth1".into(),
                },
                SystemTime::UNIX_EPOCH + Duration::from_secs(40),
            )],
            ..Report::default()
        };
        let text = render_text(&report_json(&report), 102.0);
        assert!(text.contains("1 CONFLICT"), "{text}");
        assert!(
            text.contains("VIP 10.0.0.100  answered by 10.0.0.12 (02:00:00:00:00:12) on eth1"),
            "{text}"
        );
        assert!(text.contains("(1m2s ago)"), "{text}");
        assert!(render_text(&report_json(&Report::default()), 0.0).is_empty());
    }
}
