//! The tokio driver: real sockets, rtnetlink and one timer around sans-IO routers.
//!
//! Virtual routers are grouped by link (interface, address family, source
//! address). Each link is one task that owns its sockets and its routers, waits
//! on the receive socket, a shutdown signal and ONE sleep set to the earliest
//! deadline of its routers, and carries out the actions the routers hand out.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use crate::netif::{InterfaceInfo, Netif, NetifError};
use crate::router::{Action, Router, RouterConfig, RouterStats, State};
use crate::socket::{AdvertSocket, FrameSocket, ReceiveError, ReceivedAdvert};
use crate::timer::PreciseTimer;
use crate::wire::arp::GratuitousArp;
use crate::wire::ndisc::UnsolicitedNa;
use crate::wire::vrrp::AdvertRepr;

/// Largest VRRP message: 255 IPv6 addresses plus headers, rounded up.
const RECEIVE_BUFFER: usize = 9000;
/// At most this many already-queued packets are read before acting on a deadline.
const MAX_QUEUED_BEFORE_TIMERS: usize = 64;

/// Everything the driver needs to run one virtual router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    /// The instance's name (keepalived's `vrrp_instance NAME`).
    pub name: String,
    /// Interface the instance lives on.
    pub interface: String,
    /// The router's configuration. `primary_address` is replaced by the driver
    /// with `unicast_source` or the interface's own address.
    pub router: RouterConfig,
    /// Prefix length of each entry of `router.virtual_addresses`.
    pub virtual_prefix_lens: Vec<u8>,
    /// `unicast_src_ip`: the source of adverts instead of the interface's address.
    pub unicast_source: Option<IpAddr>,
    /// `unicast_peer`: adverts go to these instead of the multicast group, and
    /// adverts from anyone else are dropped.
    pub unicast_peers: Vec<IpAddr>,
    /// RFC 5798 Accept_Mode: when false (and not the address owner), packets
    /// to the virtual addresses are filtered out on input (see [`crate::accept`]).
    pub accept: bool,
}

/// Errors that stop the driver from starting.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// rtnetlink failed.
    #[error(transparent)]
    Netif(#[from] NetifError),
    /// The interface has no address to send adverts from.
    #[error("interface {interface} has no {family} address to send adverts from; add one or set unicast_src_ip")]
    NoSourceAddress {
        /// Interface name.
        interface: String,
        /// "IPv4" or "IPv6 link-local".
        family: &'static str,
    },
    /// The accept-mode filter could not be installed.
    #[error(transparent)]
    AcceptFilter(#[from] crate::accept::AcceptFilterError),
    /// A socket could not be opened (raw sockets need CAP_NET_RAW).
    #[error(
        "cannot open the VRRP sockets on {interface}: {source} (raw sockets need CAP_NET_RAW)"
    )]
    Socket {
        /// Interface name.
        interface: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The live state of one instance, for status, logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    /// Instance name.
    pub name: String,
    /// Interface.
    pub interface: String,
    /// Current state.
    pub state: State,
    /// Current priority.
    pub priority: u8,
    /// Primary address of the master as last seen.
    pub master: Option<IpAddr>,
    /// Wall-clock time of the last transition.
    pub since: Option<SystemTime>,
    /// Why the last transition happened.
    pub reason: Option<&'static str>,
    /// The router's counters.
    pub stats: RouterStats,
}

/// Counters of one link that belong to no single instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStatus {
    /// Interface.
    pub interface: String,
    /// Source address of our adverts.
    pub source: Option<IpAddr>,
    /// Packets dropped before reaching an instance, by reason (decode errors,
    /// `unknown_vrid`, `unknown_peer`, `bad_ip_header`).
    pub drops: BTreeMap<&'static str, u64>,
    /// Send failures.
    pub send_errors: u64,
}

/// The driver's live state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// One entry per instance, in configuration order.
    pub instances: Vec<InstanceStatus>,
    /// One entry per link.
    pub links: Vec<LinkStatus>,
}

struct Instance {
    spec: InstanceSpec,
    router: Router,
    /// Index into `Status::instances`.
    slot: usize,
}

struct Link {
    info: InterfaceInfo,
    source: IpAddr,
    unicast_peers: Vec<IpAddr>,
    adverts: AdvertSocket,
    frames: FrameSocket,
    netif: Netif,
    instances: Vec<Instance>,
    /// Index into `Status::links`.
    slot: usize,
    status: watch::Sender<Status>,
}

/// Runs the given instances until `shutdown` turns true, then shuts every
/// router down gracefully (priority-0 advert, addresses released).
pub async fn run(
    specs: Vec<InstanceSpec>,
    status: watch::Sender<Status>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), DriverError> {
    let netif = Netif::new()?;
    let mut links: Vec<Link> = Vec::new();
    status.send_modify(|s| {
        s.instances = specs
            .iter()
            .map(|spec| InstanceStatus {
                name: spec.name.clone(),
                interface: spec.interface.clone(),
                state: State::Initialize,
                priority: spec.router.priority,
                master: None,
                since: None,
                reason: None,
                stats: RouterStats::default(),
            })
            .collect();
        s.links.clear();
    });
    for (slot, spec) in specs.into_iter().enumerate() {
        let info = netif.interface(&spec.interface).await?;
        remove_stale_addresses(&netif, &info, &spec).await?;
        let source = source_address(&info, &spec)?;
        let position = links.iter().position(|l| {
            l.info.index == info.index
                && l.source == source
                && l.unicast_peers == spec.unicast_peers
        });
        let link = match position {
            Some(i) => &mut links[i],
            None => {
                let socket_error = |source| DriverError::Socket {
                    interface: spec.interface.clone(),
                    source,
                };
                let adverts =
                    AdvertSocket::open(&info.name, info.index, source).map_err(socket_error)?;
                let frames = FrameSocket::open(info.index).map_err(socket_error)?;
                let link_slot = links.len();
                status.send_modify(|s| {
                    s.links.push(LinkStatus {
                        interface: info.name.clone(),
                        source: Some(source),
                        ..LinkStatus::default()
                    })
                });
                links.push(Link {
                    info: info.clone(),
                    source,
                    unicast_peers: spec.unicast_peers.clone(),
                    adverts,
                    frames,
                    netif: netif.clone(),
                    instances: Vec::new(),
                    slot: link_slot,
                    status: status.clone(),
                });
                links.last_mut().expect("just pushed")
            }
        };
        let mut config = spec.router.clone();
        config.primary_address = source;
        link.instances.push(Instance {
            router: Router::new(config),
            spec,
            slot,
        });
    }
    let filtered: Vec<IpAddr> = links
        .iter()
        .flat_map(|l| &l.instances)
        .filter(|i| !i.spec.accept && i.spec.router.priority != 255)
        .flat_map(|i| i.spec.router.virtual_addresses.iter().copied())
        .collect();
    if filtered.is_empty() {
        // A crashed run with `accept = false` may have left its filter behind;
        // without nft there is nothing to remove.
        let _ = crate::accept::install(&[]);
    } else {
        crate::accept::install(&filtered)?;
        info!(addresses = ?filtered, "accept = false: input to these virtual addresses is dropped");
    }
    if *shutdown.borrow_and_update() {
        return Ok(());
    }
    let mut tasks = JoinSet::new();
    for link in links {
        tasks.spawn(link.run(shutdown.clone()));
    }
    while tasks.join_next().await.is_some() {}
    if !filtered.is_empty() {
        if let Err(e) = crate::accept::install(&[]) {
            warn!("cannot remove the accept-mode filter: {e}");
        }
    }
    Ok(())
}

/// Removes the instance's virtual addresses that a crashed predecessor left on
/// the interface. The address owner (priority 255) keeps them: they are its own.
async fn remove_stale_addresses(
    netif: &Netif,
    info: &InterfaceInfo,
    spec: &InstanceSpec,
) -> Result<(), NetifError> {
    if spec.router.priority == 255 {
        return Ok(());
    }
    for address in &spec.router.virtual_addresses {
        if netif.remove_address(info.index, *address).await? {
            warn!(
                instance = %spec.name,
                %address,
                interface = %info.name,
                "removed a virtual address left behind by an earlier run"
            );
        }
    }
    Ok(())
}

/// RFC 5798 §5.1.1.1 / §5.1.2.1: adverts come from the interface's primary IPv4
/// address, or its IPv6 link-local address; `unicast_src_ip` overrides.
fn source_address(info: &InterfaceInfo, spec: &InstanceSpec) -> Result<IpAddr, DriverError> {
    if let Some(source) = spec.unicast_source {
        return Ok(source);
    }
    let v6 = spec
        .router
        .virtual_addresses
        .first()
        .is_some_and(|a| a.is_ipv6());
    let found = if v6 {
        info.ipv6_link_local().map(IpAddr::V6)
    } else {
        info.ipv4
            .iter()
            .map(|(a, _)| IpAddr::V4(*a))
            .find(|a| !spec.router.virtual_addresses.contains(a))
    };
    found.ok_or_else(|| DriverError::NoSourceAddress {
        interface: info.name.clone(),
        family: if v6 { "IPv6 link-local" } else { "IPv4" },
    })
}

impl Link {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let now = Instant::now();
        for i in 0..self.instances.len() {
            self.instances[i].router.startup(now);
            self.carry_out(i).await;
        }
        let mut buffer = vec![0u8; RECEIVE_BUFFER];
        let mut timer = match PreciseTimer::new() {
            Ok(timer) => timer,
            Err(e) => {
                error!(interface = %self.info.name, "cannot create the timer: {e}");
                return;
            }
        };
        loop {
            if let Err(e) = timer.set(self.next_deadline()) {
                error!(interface = %self.info.name, "cannot arm the timer: {e}");
            }
            let armed = timer.deadline().is_some();
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        self.shut_down().await;
                        return;
                    }
                }
                fired = timer.expired(), if armed => {
                    if let Err(e) = fired {
                        error!(interface = %self.info.name, "timer failed: {e}");
                    }
                    // Adverts already queued arrived before we got round to this
                    // deadline: after a stall (a loaded host, a slow disk) they must
                    // count before a timer declares the master down. Bounded, so a
                    // flood cannot hold the timers back.
                    for _ in 0..MAX_QUEUED_BEFORE_TIMERS {
                        let Some(received) = self.adverts.try_receive(&mut buffer) else {
                            break;
                        };
                        if !self.handle_received(received, &buffer).await {
                            break;
                        }
                    }
                    let now = Instant::now();
                    for i in 0..self.instances.len() {
                        if self.instances[i].router.poll_timeout().is_some_and(|t| t <= now) {
                            self.instances[i].router.handle_timeout(now);
                            self.carry_out(i).await;
                        }
                    }
                }
                received = self.adverts.receive(&mut buffer) => {
                    self.handle_received(received, &buffer).await;
                }
            }
        }
    }

    /// Handles one received datagram (its VRRP message is in `buffer`); false after a
    /// socket error.
    async fn handle_received(
        &mut self,
        received: Result<ReceivedAdvert, ReceiveError>,
        buffer: &[u8],
    ) -> bool {
        match received {
            Ok(packet) => {
                let payload = buffer[packet.payload.clone()].to_vec();
                self.handle_packet(&packet.source, &packet.destination, packet.ttl, &payload)
                    .await;
                true
            }
            Err(ReceiveError::BadIpHeader(reason)) => {
                self.count_drop(reason);
                true
            }
            Err(ReceiveError::Io(e)) => {
                error!(interface = %self.info.name, "receiving adverts failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                false
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.instances
            .iter()
            .filter_map(|i| i.router.poll_timeout())
            .min()
    }

    async fn shut_down(&mut self) {
        let now = Instant::now();
        for i in 0..self.instances.len() {
            self.instances[i].router.shutdown(now);
            self.carry_out(i).await;
        }
    }

    async fn handle_packet(
        &mut self,
        source: &IpAddr,
        destination: &IpAddr,
        ttl: u8,
        payload: &[u8],
    ) {
        let advert = match AdvertRepr::parse(payload, *source, *destination) {
            Ok(advert) => advert,
            Err(e) => {
                self.count_drop(e.as_str());
                return;
            }
        };
        if !self.unicast_peers.is_empty() && !self.unicast_peers.contains(source) {
            self.count_drop("unknown_peer");
            return;
        }
        let Some(i) = self
            .instances
            .iter()
            .position(|i| i.router.config().vrid == advert.vrid)
        else {
            self.count_drop("unknown_vrid");
            return;
        };
        let now = Instant::now();
        if let Err(reason) = self.instances[i]
            .router
            .handle_advert(now, *source, ttl, &advert)
        {
            let count = self.instances[i].router.stats().drops[&reason];
            if count <= 10 || count % 1000 == 0 {
                warn!(
                    instance = %self.instances[i].spec.name,
                    %source,
                    reason = reason.as_str(),
                    count,
                    "dropped an advert"
                );
            }
        }
        self.carry_out(i).await;
    }

    fn count_drop(&mut self, reason: &'static str) {
        let slot = self.slot;
        let mut count = 0;
        self.status.send_modify(|s| {
            let entry = s.links[slot].drops.entry(reason).or_default();
            *entry += 1;
            count = *entry;
        });
        if count <= 10 || count % 1000 == 0 {
            warn!(interface = %self.info.name, reason, count, "dropped a packet");
        }
    }

    /// Carries out every pending action of instance `i`, then publishes its status.
    async fn carry_out(&mut self, i: usize) {
        while let Some(action) = self.instances[i].router.poll_action() {
            match action {
                Action::SendAdvert(advert) => self.send_advert(&advert),
                Action::AddVirtualAddresses => {
                    let spec = &self.instances[i].spec;
                    for (address, prefix_len) in spec
                        .router
                        .virtual_addresses
                        .iter()
                        .zip(&spec.virtual_prefix_lens)
                    {
                        if let Err(e) = self
                            .netif
                            .add_address(self.info.index, *address, *prefix_len)
                            .await
                        {
                            error!(instance = %spec.name, "cannot add virtual address: {e}");
                        }
                    }
                }
                Action::RemoveVirtualAddresses => {
                    let spec = &self.instances[i].spec;
                    for address in &spec.router.virtual_addresses {
                        if let Err(e) = self.netif.remove_address(self.info.index, *address).await {
                            error!(instance = %spec.name, "cannot remove virtual address: {e}");
                        }
                    }
                }
                Action::Announce => self.announce(i),
                Action::StateChanged { from, to, reason } => {
                    let instance = &self.instances[i];
                    info!(
                        instance = %instance.spec.name,
                        from = from.as_str(),
                        to = to.as_str(),
                        reason = reason.as_str(),
                        priority = instance.router.priority(),
                        "({}) Entering {} STATE",
                        instance.spec.name,
                        to.as_str()
                    );
                    let slot = instance.slot;
                    self.status.send_modify(|s| {
                        s.instances[slot].since = Some(SystemTime::now());
                        s.instances[slot].reason = Some(reason.as_str());
                    });
                }
            }
        }
        let instance = &self.instances[i];
        let slot = instance.slot;
        self.status.send_if_modified(|s| {
            let entry = &mut s.instances[slot];
            let before = (
                entry.state,
                entry.priority,
                entry.master,
                entry.stats.clone(),
            );
            entry.state = instance.router.state();
            entry.priority = instance.router.priority();
            entry.master = instance.router.master_address();
            entry.stats = instance.router.stats().clone();
            before
                != (
                    entry.state,
                    entry.priority,
                    entry.master,
                    entry.stats.clone(),
                )
        });
    }

    fn send_advert(&mut self, advert: &AdvertRepr) {
        let mut message = vec![0u8; advert.buffer_len()];
        let destinations = if self.unicast_peers.is_empty() {
            vec![self.adverts.multicast_group()]
        } else {
            self.unicast_peers.clone()
        };
        for destination in destinations {
            advert.emit(&mut message, self.source, destination);
            if let Err(e) = self.adverts.send(&message, destination) {
                let slot = self.slot;
                self.status.send_modify(|s| s.links[slot].send_errors += 1);
                warn!(interface = %self.info.name, %destination, "sending an advert failed: {e}");
            }
        }
    }

    /// One gratuitous ARP / unsolicited NA per virtual address (RFC 5798 §6.4.2).
    fn announce(&mut self, i: usize) {
        let spec = &self.instances[i].spec;
        for address in &spec.router.virtual_addresses {
            let frame = match address {
                IpAddr::V4(v4) => {
                    let arp = GratuitousArp {
                        sender_mac: self.info.mac,
                        address: *v4,
                    };
                    let mut frame = vec![0; arp.frame_len()];
                    arp.emit(&mut frame);
                    frame
                }
                IpAddr::V6(v6) => match self.info.ipv6_link_local() {
                    Some(link_local) => {
                        let na = UnsolicitedNa {
                            src_mac: self.info.mac,
                            src_ip: link_local,
                            target: *v6,
                        };
                        let mut frame = vec![0; na.frame_len()];
                        na.emit(&mut frame);
                        frame
                    }
                    None => {
                        warn!(instance = %spec.name, "no link-local address: cannot send a neighbour advertisement");
                        continue;
                    }
                },
            };
            if let Err(e) = self.frames.send(&frame) {
                warn!(instance = %spec.name, %address, "sending an announcement failed: {e}");
            } else {
                debug!(instance = %spec.name, %address, "announced");
            }
        }
    }
}
