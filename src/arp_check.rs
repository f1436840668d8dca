//! The DR real-server ARP check's driver: finds real servers that answer ARP
//! for a virtual IP (the direct-routing "ARP problem"). The detection is the
//! sans-IO machine [`haldir_director::arp_check::ArpCheck`] (read its module
//! doc for what a round does and what counts as a conflict); this task feeds
//! it:
//!
//! - one sleep until the machine's next deadline ([`ArpCheck::poll_timeout`]);
//! - when a round is due, rtnetlink lookups: this host's interfaces and the
//!   route to each real server (the interface it leaves by is its segment);
//! - an [`ArpSocket`] per segment for the round, which sends the requests the
//!   machine asks for (`haldir_vrrp::wire::arp` frames) and hands it the
//!   replies;
//! - the machine's events as log lines (a new conflict at error level once,
//!   its end once), and its [`Report`] on a `watch` channel, shown by
//!   `haldir status` and `/metrics`.
//!
//! The check reads only the configuration model, never IPVS, so it runs where
//! the kernel has none.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use futures::TryStreamExt;
use haldir_config::Model;
use haldir_director::arp_check::{
    director_addresses, first_round_delay, targets, virtual_router_macs, ArpCheck, ArpReply,
    ArpRequest, Conflict, Event, Mac, RoundPlan, Segment, Skipped, Target, CHECK_INTERVAL,
};
use haldir_vrrp::driver::Status;
use haldir_vrrp::router::State;
use haldir_vrrp::socket::ArpSocket;
use haldir_vrrp::wire::arp::{ArpRepr, Operation, BROADCAST_MAC};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteType};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use haldir_director::arp_check::{mac_text, Report};

/// A round over at least this many VIPs returns its garbage to the system when it ends.
const LARGE_ROUND_TARGETS: usize = 1000;

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
    // Where each target already is in a segment's list (a linear search per real
    // server was quadratic: 10,000 targets on one segment).
    let mut placed: std::collections::HashMap<(u32, usize), usize> =
        std::collections::HashMap::new();
    for (target_index, target) in targets.iter().enumerate() {
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
            match placed.get(&(index, target_index)) {
                Some(&at) => segment.targets[at].real_servers.push(*rs),
                None => {
                    placed.insert((index, target_index), segment.targets.len());
                    segment.targets.push(Target {
                        real_servers: vec![*rs],
                        ..target.clone()
                    });
                }
            }
        }
    }
    (by_index.into_values().collect(), skipped)
}

/// The running check: the machine, its sockets and rtnetlink handle.
struct Driver {
    check: ArpCheck,
    handle: Option<rtnetlink::Handle>,
    /// The sockets of the round being run, one per segment still probed.
    sockets: Vec<ArpSocket>,
    /// Whether the round being run has virtual servers to check.
    checking: bool,
    /// The last error logged per interface ("" for the whole round): a
    /// failure that repeats every round is logged once.
    errors: BTreeMap<String, String>,
    /// The model the last round planned for, with its targets.
    targets: Option<(std::sync::Arc<Model>, std::sync::Arc<Vec<Target>>)>,
}

impl Driver {
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

    /// What a round probes: the segments of the model's DR real servers.
    async fn plan(&mut self, model: &std::sync::Arc<Model>, status: &Status) -> RoundPlan {
        // The targets of the model the last round had, unless a reload replaced it: at
        // 10,000 virtual servers naming each one every round was 2 % of a core (emulated).
        let targets = match &self.targets {
            Some((of, targets)) if std::sync::Arc::ptr_eq(of, model) => targets.clone(),
            _ => {
                let targets = std::sync::Arc::new(targets(model));
                self.targets = Some((model.clone(), targets.clone()));
                targets
            }
        };
        let mut plan = RoundPlan {
            targets,
            segments: Ok(Vec::new()),
            skipped: Vec::new(),
            director_macs: BTreeSet::new(),
        };
        if plan.targets.is_empty() {
            return plan;
        }
        let handle = match self.handle() {
            Ok(handle) => handle,
            Err(e) => {
                plan.segments = Err(e);
                return plan;
            }
        };
        let links = match own_links(&handle).await {
            Ok(links) => links,
            Err(e) => {
                plan.segments = Err(e);
                return plan;
            }
        };
        let directors = director_addresses(model, status.instances.iter().filter_map(|i| i.master));
        let (segments, skipped) = segments(&handle, &plan.targets, &links, &directors).await;
        for s in &skipped {
            debug!(real_server = %s.real_server, "DR ARP check leaves it out: {}", s.reason);
        }
        // Directors without asking: this host's interfaces and its virtual MACs.
        plan.director_macs = links.values().map(|(_, mac)| *mac).collect();
        plan.director_macs.extend(virtual_router_macs(model));
        plan.segments = Ok(segments);
        plan.skipped = skipped;
        plan
    }

    /// Plans the round the machine asks for, opens its sockets and starts it.
    async fn start_round(&mut self, model: &std::sync::Arc<Model>, status: &Status) {
        let plan = self.plan(model, status).await;
        self.checking = !plan.targets.is_empty();
        let mut failed = Vec::new();
        self.sockets.clear();
        for segment in plan.segments.iter().flatten() {
            match ArpSocket::open(segment.index) {
                Ok(socket) => self.sockets.push(socket),
                Err(e) => failed.push((segment.index, e.to_string())),
            }
        }
        self.check
            .start_round(Instant::now(), SystemTime::now(), plan);
        for (index, error) in failed {
            self.check.handle_segment_error(index, error);
        }
    }

    /// A segment's socket failed: the machine gives up on it for this round.
    fn segment_failed(&mut self, index: u32, error: String) {
        self.sockets.retain(|s| s.interface_index() != index);
        self.check.handle_segment_error(index, error);
    }

    fn send(&mut self, request: ArpRequest) {
        let Some(socket) = self
            .sockets
            .iter()
            .find(|s| s.interface_index() == request.interface_index)
        else {
            return;
        };
        let arp = ArpRepr::request(request.sender_mac, request.sender_ip, request.target);
        let mut frame = [0u8; 60];
        let length = arp.frame_len();
        arp.emit_frame(request.sender_mac, BROADCAST_MAC, &mut frame[..length]);
        if let Err(e) = socket.send(&frame[..length]) {
            self.segment_failed(request.interface_index, e.to_string());
        }
    }

    /// A frame that arrived on interface `index`.
    fn received(&mut self, index: u32, frame: &[u8]) {
        let Ok(arp) = ArpRepr::parse(frame) else {
            return;
        };
        if arp.operation == Operation::Reply {
            let reply = ArpReply {
                interface_index: index,
                sender_mac: arp.sender_mac,
                sender_ip: arp.sender_ip,
            };
            self.check.handle_reply(Instant::now(), reply);
        }
    }

    /// Carries out what the machine asks for until it asks for nothing more.
    async fn pump(
        &mut self,
        running: &mut watch::Receiver<std::sync::Arc<Model>>,
        status: &watch::Receiver<Status>,
        report: &watch::Sender<Report>,
    ) {
        loop {
            while let Some(request) = self.check.poll_transmit() {
                self.send(request);
            }
            let Some(event) = self.check.poll_event() else {
                return;
            };
            match event {
                Event::RoundDue => {
                    let model = running.borrow_and_update().clone();
                    let status = status.borrow().clone();
                    self.start_round(&model, &status).await;
                }
                Event::ConflictFound(c) => log_found(&c),
                Event::ConflictCleared(c) => log_cleared(&c),
                Event::ConflictNoLongerChecked(c) => info!(
                    virtual_server = %c.virtual_server,
                    "DR ARP conflict no longer checked: {} is no IPv4 DR virtual server any more",
                    c.virtual_server
                ),
                Event::RoundFinished => {
                    self.sockets.clear();
                    let finished = self.check.report().clone();
                    match &finished.error {
                        Some(e) => self.failed("", e),
                        None if self.checking => {
                            self.errors.remove("");
                        }
                        None => {}
                    }
                    for segment in &finished.segments {
                        match &segment.error {
                            Some(e) => self.failed(&segment.interface, e),
                            None => {
                                self.errors.remove(&segment.interface);
                            }
                        }
                    }
                    report.send_replace(finished);
                    // A round over thousands of VIPs (a request, an asked set and the
                    // answers per VIP: about 4 MB at 10,000) leaves as much garbage,
                    // every CHECK_INTERVAL; it goes back to the system at once, as an
                    // IPVS round's does: the round is over, and waiting for things to
                    // settle kept it resident 2 s of every 10.
                    if self
                        .targets
                        .as_ref()
                        .is_some_and(|(_, t)| t.len() >= LARGE_ROUND_TARGETS)
                    {
                        crate::memory::release_now();
                    }
                }
            }
        }
    }
}

fn log_found(c: &Conflict) {
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

fn log_cleared(c: &Conflict) {
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

/// The next ARP frame from any of `sockets`: (interface index, its length in
/// `buffer` or the socket's error).
fn poll_receive_any(
    sockets: &[ArpSocket],
    cx: &mut Context<'_>,
    buffer: &mut [u8],
) -> Poll<(u32, std::io::Result<usize>)> {
    for socket in sockets {
        if let Poll::Ready(received) = socket.poll_receive(cx, buffer) {
            return Poll::Ready((socket.interface_index(), received));
        }
    }
    Poll::Pending
}

/// Starts the check; it follows `running` (a reload triggers a round) and
/// stops when `shutdown` turns true. The receiver carries its report.
pub fn spawn(
    mut running: watch::Receiver<std::sync::Arc<Model>>,
    status: watch::Receiver<Status>,
    mut shutdown: watch::Receiver<bool>,
) -> (JoinHandle<()>, watch::Receiver<Report>) {
    let (report_tx, report_rx) = watch::channel(Report::default());
    let task = tokio::spawn(async move {
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
        let first_round = Instant::now() + first_round_delay(&running.borrow());
        let mut driver = Driver {
            check: ArpCheck::new(first_round),
            handle: None,
            sockets: Vec::new(),
            checking: false,
            errors: BTreeMap::new(),
            targets: None,
        };
        let mut buffer = [0u8; 1514];
        let sleep = tokio::time::sleep_until(first_round.into());
        tokio::pin!(sleep);
        let mut armed = Some(first_round);
        loop {
            // The one sleep, reset only when the machine's deadline moves.
            let deadline = driver.check.poll_timeout();
            if deadline != armed {
                if let Some(at) = deadline {
                    sleep.as_mut().reset(at.into());
                }
                armed = deadline;
            }
            tokio::select! {
                () = stopped(&mut shutdown) => return,
                changed = running.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    driver.check.handle_reload(Instant::now());
                }
                () = &mut sleep, if armed.is_some() => {
                    armed = None;
                    driver.check.handle_timeout(Instant::now(), SystemTime::now());
                }
                (index, received) = std::future::poll_fn(|cx| {
                    poll_receive_any(&driver.sockets, cx, &mut buffer)
                }) => match received {
                    Ok(length) => driver.received(index, &buffer[..length]),
                    Err(e) => driver.segment_failed(index, e.to_string()),
                },
            }
            driver.pump(&mut running, &status, &report_tx).await;
        }
    });
    (task, report_rx)
}

/// Resolves once `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
