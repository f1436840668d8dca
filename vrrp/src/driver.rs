//! The tokio driver: real sockets, rtnetlink and one timer around sans-IO routers.
//!
//! Virtual routers are grouped by link (interface, address family, source
//! address). Each link is one task that owns its sockets and its routers, waits
//! on the receive socket, a shutdown signal and ONE sleep set to the earliest
//! deadline of its routers, and carries out the actions the routers hand out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::auth::{AuthConfig, Authenticator, Verdict};
use crate::netif::{InterfaceInfo, Netif, NetifError};
use crate::router::{Action, Router, RouterConfig, RouterStats, State, TransitionReason};
use crate::socket::{AdvertSocket, FrameSocket, ReceiveError, ReceivedAdvert};
use crate::sync_group::{GroupOrder, Member};
use crate::timer::PreciseTimer;
use crate::wire::arp::GratuitousArp;
use crate::wire::ndisc::UnsolicitedNa;
use crate::wire::vrrp::AdvertRepr;

/// Largest VRRP message: 255 IPv6 addresses plus headers, rounded up.
const RECEIVE_BUFFER: usize = 9000;
/// At most this many already-queued packets are read before acting on a deadline.
const MAX_QUEUED_BEFORE_TIMERS: usize = 64;
/// How often the interfaces of the instances (and their tracked ones) are read.
const LINK_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// The wall-clock time since the Unix epoch (sequence numbers and the
/// freshness window of `auth_hmac` are wall-clock based).
fn unix_now() -> std::time::Duration {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

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
    /// `track_interface`: while any of these interfaces (or the instance's
    /// own) is down or missing, the instance is in FAULT.
    pub track_interfaces: Vec<String>,
    /// `auth_hmac`: HMAC authentication of adverts ([`crate::auth`]).
    pub auth: Option<AuthConfig>,
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
    /// Preemption held (see [`DriverCommand::HoldPreemption`]).
    pub preemption_held: bool,
    /// The router's counters.
    pub stats: RouterStats,
}

/// One state change of one instance, as it happened: every transition is
/// sent, in order, on the driver's event channel (see [`run_with_events`]),
/// for notify scripts and anything else that must not miss one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceTransition {
    /// Instance name.
    pub name: String,
    /// Previous state.
    pub from: State,
    /// New state.
    pub to: State,
    /// Why.
    pub reason: TransitionReason,
    /// The instance's priority at the transition.
    pub priority: u8,
    /// Wall-clock time of the transition.
    pub at: SystemTime,
}

/// Counters of one link that belong to no single instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStatus {
    /// Interface.
    pub interface: String,
    /// Its kernel index.
    pub interface_index: u32,
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
    /// What tracked scripts and objects say (keepalived's `track_script`).
    tracking: Tracking,
    /// Held in Fault because another member of its sync group has a fault.
    group_fault: bool,
    /// Its interface or a tracked interface (`track_interface`) is down.
    link_fault: bool,
    /// `auth_hmac`: keys, send sequence and replay marks.
    auth: Option<Authenticator>,
}

impl Instance {
    /// A fault of the instance's own (tracked scripts or interfaces), as
    /// opposed to one its sync group imposes.
    fn own_fault(&self) -> bool {
        self.tracking.fault || self.link_fault
    }
}

/// The effect of tracked objects on an instance (keepalived semantics): the
/// priority moves by the sum of the weights of the tracked objects in their
/// weighted state, and a failing object of weight 0 puts the instance in FAULT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tracking {
    /// Added to the configured priority (negative lowers it).
    pub priority_delta: i32,
    /// A tracked object with weight 0 is failing.
    pub fault: bool,
}

impl Tracking {
    /// The priority to run with: the address owner keeps 255, everyone else
    /// stays within 1..=254 (RFC 5798 §5.2.4).
    pub fn effective_priority(self, configured: u8) -> u8 {
        if configured == 255 {
            return 255;
        }
        (i32::from(configured) + self.priority_delta).clamp(1, 254) as u8
    }
}

/// The sockets of one link are shared by the instances with the same interface,
/// advert source and unicast peers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct LinkKey {
    interface_index: u32,
    source: IpAddr,
    unicast_peers: Vec<IpAddr>,
}

struct Link {
    info: InterfaceInfo,
    source: IpAddr,
    unicast_peers: Vec<IpAddr>,
    adverts: AdvertSocket,
    frames: FrameSocket,
    netif: Netif,
    instances: Vec<Instance>,
    status: watch::Sender<Status>,
    events: Option<broadcast::Sender<InstanceTransition>>,
    /// State changes reported to the supervisor, for sync groups.
    members: mpsc::UnboundedSender<MemberEvent>,
}

/// A member's state change, as the supervisor's sync-group logic needs it.
struct MemberEvent {
    name: String,
    from: State,
    to: State,
    own_fault: bool,
}

/// A sync group: instances that move together (keepalived's `vrrp_sync_group`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupSpec {
    /// The group's name.
    pub name: String,
    /// Its members, by instance name.
    pub members: Vec<String>,
}

/// What the supervisor tells a link task.
enum LinkCommand {
    /// Start a new instance (its `router.primary_address` already resolved).
    Add(InstanceSpec),
    /// Apply a changed configuration to a running instance, in place.
    Update(InstanceSpec),
    /// Shut an instance down gracefully (priority 0, addresses released).
    Remove(String),
    /// Tracked objects changed for an instance.
    Track(String, Tracking),
    /// Preemption held or resumed for an instance.
    HoldPreemption(String, bool),
    /// An order of the instance's sync group.
    Group(String, GroupOrder),
    /// Whether the instance's interface or a tracked one is down.
    LinkFault(String, bool),
    /// Answer once every earlier command has been carried out.
    Sync(oneshot::Sender<()>),
}

struct LinkHandle {
    key: LinkKey,
    names: Vec<String>,
    commands: mpsc::UnboundedSender<LinkCommand>,
    task: JoinHandle<()>,
}

/// A request to the running driver.
pub enum DriverCommand {
    /// Replace the running instances by these (a reload): unchanged instances
    /// are left alone, changed ones are changed in place where possible.
    Reload {
        /// The new configuration.
        specs: Vec<InstanceSpec>,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<ReloadReport, DriverError>>,
    },
    /// The sync groups from now on (at start and after each reload).
    SetSyncGroups(Vec<SyncGroupSpec>),
    /// What the tracked objects of an instance say now (unknown names are ignored).
    Track {
        /// The instance.
        instance: String,
        /// The tracked objects' combined effect.
        tracking: Tracking,
    },
    /// Suspend (`held`) or resume an instance's preemption of a live master
    /// of lower priority ([`Router::hold_preemption`]); independent of its
    /// priority and tracking, and kept across reloads until lifted.
    HoldPreemption {
        /// The instance (an unknown name is remembered for when it starts).
        instance: String,
        /// Suspend (true) or resume (false).
        held: bool,
    },
}

/// What a reload did, by instance name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Identical configuration: untouched (state, timers and adverts go on).
    pub kept: Vec<String>,
    /// Changed in place (priority, interval, addresses, preemption, ...).
    pub updated: Vec<String>,
    /// Changed identity (interface, VRID, version, family, source, peers): the
    /// old router resigned and a new one started in Backup.
    pub replaced: Vec<String>,
    /// New: started in Backup (Master at once for an address owner).
    pub added: Vec<String>,
    /// Gone: resigned with a priority-0 advert and released its addresses.
    pub removed: Vec<String>,
}

/// What a reload does with one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadStep {
    /// Unchanged.
    Keep(String),
    /// Same identity, other settings: change in place.
    Update(InstanceSpec),
    /// Same name, other identity: remove the old router, start a new one.
    Replace(InstanceSpec),
    /// A new instance.
    Add(InstanceSpec),
    /// An instance that is no longer configured.
    Remove(String),
}

/// Whether two specs describe the same virtual router on the same link, so a
/// change between them can be applied in place.
fn same_identity(a: &InstanceSpec, b: &InstanceSpec) -> bool {
    let family = |s: &InstanceSpec| s.router.virtual_addresses.first().map(IpAddr::is_ipv6);
    a.interface == b.interface
        && a.router.vrid == b.router.vrid
        && a.router.version == b.router.version
        && a.unicast_source == b.unicast_source
        && a.unicast_peers == b.unicast_peers
        && family(a) == family(b)
}

/// The pure plan of a reload: instances are matched by name. Removals come
/// first in the result, so an address or VRID that moves between instances is
/// released before it is taken again.
pub fn plan_reload(old: &[InstanceSpec], new: &[InstanceSpec]) -> Vec<ReloadStep> {
    let mut steps: Vec<ReloadStep> = old
        .iter()
        .filter(|o| !new.iter().any(|n| n.name == o.name))
        .map(|o| ReloadStep::Remove(o.name.clone()))
        .collect();
    for spec in new {
        let step = match old.iter().find(|o| o.name == spec.name) {
            None => ReloadStep::Add(spec.clone()),
            Some(o) if o == spec => ReloadStep::Keep(spec.name.clone()),
            Some(o) if same_identity(o, spec) => ReloadStep::Update(spec.clone()),
            Some(_) => ReloadStep::Replace(spec.clone()),
        };
        steps.push(step);
    }
    steps
}

/// Runs the given instances until `shutdown` turns true, then shuts every
/// router down gracefully (priority-0 advert, addresses released). Reloads
/// arrive on `commands`.
pub async fn run(
    specs: Vec<InstanceSpec>,
    status: watch::Sender<Status>,
    commands: mpsc::Receiver<DriverCommand>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), DriverError> {
    run_with_events(specs, status, commands, shutdown, None, BTreeSet::new()).await
}

/// [`run`], also sending every state change of every instance on `events`
/// (the graceful shutdown's included). The driver never waits for a
/// receiver: a receiver that lags behind the channel's capacity loses events.
///
/// The instances named in `held_at_start` start with their preemption held
/// (as if [`DriverCommand::HoldPreemption`] had come first): a command sent
/// once they run could come after a preemption, since a backup may preempt
/// one Master_Down_Interval after it starts.
pub async fn run_with_events(
    specs: Vec<InstanceSpec>,
    status: watch::Sender<Status>,
    mut commands: mpsc::Receiver<DriverCommand>,
    mut shutdown: watch::Receiver<bool>,
    events: Option<broadcast::Sender<InstanceTransition>>,
    held_at_start: BTreeSet<String>,
) -> Result<(), DriverError> {
    let (members_tx, mut member_events) = mpsc::unbounded_channel();
    let mut supervisor = Supervisor {
        events,
        members_tx,
        sync_groups: Vec::new(),
        preemption_holds: held_at_start,
        members: BTreeMap::new(),
        link_faults: BTreeMap::new(),
        netif: Netif::new()?,
        links: Vec::new(),
        running: Vec::new(),
        status,
        shutdown: shutdown.clone(),
        filtered: None,
    };
    supervisor.apply(specs).await?;
    let mut link_poll = tokio::time::interval(LINK_POLL_INTERVAL);
    link_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = link_poll.tick() => supervisor.poll_links().await,
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            command = commands.recv() => match command {
                Some(DriverCommand::Reload { specs, reply }) => {
                    let outcome = supervisor.apply(specs).await;
                    let _ = reply.send(outcome);
                }
                Some(DriverCommand::SetSyncGroups(groups)) => {
                    supervisor.sync_groups = groups;
                    supervisor.members.retain(|name, _| {
                        supervisor.running.iter().any(|r| &r.name == name)
                    });
                }
                Some(DriverCommand::Track { instance, tracking }) => {
                    if let Some(i) = supervisor.link_of(&instance) {
                        let _ = supervisor.links[i]
                            .commands
                            .send(LinkCommand::Track(instance, tracking));
                    }
                }
                Some(DriverCommand::HoldPreemption { instance, held }) => {
                    supervisor.hold_preemption(instance, held);
                }
                None => {
                    // Nobody can reload any more; run until shutdown.
                    let _ = shutdown.wait_for(|stop| *stop).await;
                    break;
                }
            },
            Some(event) = member_events.recv() => supervisor.member_moved(event),
        }
    }
    // Every link task watches the same signal and resigns its routers.
    for link in supervisor.links.drain(..) {
        let _ = link.task.await;
    }
    if supervisor.filtered.as_ref().is_some_and(|f| !f.is_empty()) {
        if let Err(e) = crate::accept::install(&[]) {
            warn!("cannot remove the accept-mode filter: {e}");
        }
    }
    Ok(())
}

struct Supervisor {
    netif: Netif,
    links: Vec<LinkHandle>,
    /// The instances running now, in configuration order.
    running: Vec<InstanceSpec>,
    status: watch::Sender<Status>,
    shutdown: watch::Receiver<bool>,
    /// Addresses the accept-mode filter drops, as installed (`None`: not yet).
    filtered: Option<Vec<IpAddr>>,
    /// Where every state change goes.
    events: Option<broadcast::Sender<InstanceTransition>>,
    /// Given to each link, to report state changes.
    members_tx: mpsc::UnboundedSender<MemberEvent>,
    /// The configured sync groups.
    sync_groups: Vec<SyncGroupSpec>,
    /// Instances whose preemption is held: given again to a router that a
    /// reload replaces or starts.
    preemption_holds: BTreeSet<String>,
    /// What the sync-group logic knows of each instance.
    members: BTreeMap<String, Member>,
    /// The link fault last sent to each instance (absent: none sent).
    link_faults: BTreeMap<String, bool>,
}

/// A new link whose sockets the pre-flight opened.
struct NewLink {
    key: LinkKey,
    info: InterfaceInfo,
    adverts: AdvertSocket,
    frames: FrameSocket,
}

impl Supervisor {
    /// Moves the running instances to `specs`. Everything that can fail
    /// (interfaces, source addresses, sockets, the accept filter) is done
    /// before anything running is touched, so a failed reload changes nothing.
    async fn apply(&mut self, specs: Vec<InstanceSpec>) -> Result<ReloadReport, DriverError> {
        let steps = plan_reload(&self.running, &specs);

        // Pre-flight: resolve every starting instance's link and open the
        // sockets of links that do not exist yet.
        let mut starting: Vec<(InstanceSpec, LinkKey)> = Vec::new();
        let mut new_links: Vec<NewLink> = Vec::new();
        for step in &steps {
            let (ReloadStep::Add(spec) | ReloadStep::Replace(spec)) = step else {
                continue;
            };
            let info = self.netif.interface(&spec.interface).await?;
            let source = source_address(&info, spec)?;
            let key = LinkKey {
                interface_index: info.index,
                source,
                unicast_peers: spec.unicast_peers.clone(),
            };
            let exists =
                self.links.iter().any(|l| l.key == key) || new_links.iter().any(|l| l.key == key);
            if !exists {
                let socket_error = |source| DriverError::Socket {
                    interface: spec.interface.clone(),
                    source,
                };
                new_links.push(NewLink {
                    adverts: AdvertSocket::open(&info.name, info.index, source)
                        .map_err(socket_error)?,
                    frames: FrameSocket::open(info.index).map_err(socket_error)?,
                    key: key.clone(),
                    info,
                });
            }
            let mut spec = spec.clone();
            spec.router.primary_address = source;
            starting.push((spec, key));
        }
        let filtered: Vec<IpAddr> = specs
            .iter()
            .filter(|s| !s.accept && s.router.priority != 255)
            .flat_map(|s| s.router.virtual_addresses.iter().copied())
            .collect();
        if self.filtered.as_ref() != Some(&filtered) {
            if filtered.is_empty() {
                // A crashed run with `accept = false` may have left its filter
                // behind; without nft there is nothing to remove.
                let removed = crate::accept::install(&[]);
                if self.filtered.is_some() {
                    removed?;
                }
            } else {
                crate::accept::install(&filtered)?;
                info!(addresses = ?filtered, "accept = false: input to these virtual addresses is dropped");
            }
            self.filtered = Some(filtered);
        }

        // From here on nothing fails: carry the plan out. Instances started
        // anew begin without a link fault; the next poll tells them theirs.
        for step in &steps {
            if let ReloadStep::Add(spec) | ReloadStep::Replace(spec) = step {
                self.link_faults.remove(&spec.name);
            }
        }
        let mut report = ReloadReport::default();
        let mut touched: Vec<usize> = Vec::new();
        for step in &steps {
            match step {
                ReloadStep::Keep(name) => report.kept.push(name.clone()),
                ReloadStep::Remove(name) | ReloadStep::Replace(InstanceSpec { name, .. }) => {
                    if let Some(i) = self.link_of(name) {
                        let _ = self.links[i]
                            .commands
                            .send(LinkCommand::Remove(name.clone()));
                        self.links[i].names.retain(|n| n != name);
                        touched.push(i);
                    }
                    if matches!(step, ReloadStep::Remove(_)) {
                        report.removed.push(name.clone());
                    }
                }
                ReloadStep::Update(spec) => {
                    if let Some(i) = self.link_of(&spec.name) {
                        let running = self.running.iter().find(|r| r.name == spec.name);
                        let mut spec = spec.clone();
                        if let Some(running) = running {
                            // Same identity, so the same source as before.
                            spec.router.primary_address = running.router.primary_address;
                        }
                        let _ = self.links[i].commands.send(LinkCommand::Update(spec));
                        touched.push(i);
                    }
                    report.updated.push(spec.name.clone());
                }
                ReloadStep::Add(_) => {}
            }
        }
        for (spec, key) in starting {
            if let Err(e) = remove_stale_addresses(&self.netif, &spec).await {
                warn!(instance = %spec.name, "cannot look for stale virtual addresses: {e}");
            }
            let i = match self.links.iter().position(|l| l.key == key) {
                Some(i) => i,
                None => {
                    let new = new_links
                        .iter()
                        .position(|l| l.key == key)
                        .map(|i| new_links.swap_remove(i))
                        .expect("the pre-flight opened every new link");
                    self.spawn_link(new);
                    self.links.len() - 1
                }
            };
            match steps
                .iter()
                .any(|s| matches!(s, ReloadStep::Replace(r) if r.name == spec.name))
            {
                true => report.replaced.push(spec.name.clone()),
                false => report.added.push(spec.name.clone()),
            }
            self.links[i].names.push(spec.name.clone());
            self.status.send_modify(|s| {
                if !s.instances.iter().any(|e| e.name == spec.name) {
                    s.instances.push(InstanceStatus::starting(&spec));
                }
            });
            let held = self.preemption_holds.contains(&spec.name);
            let name = spec.name.clone();
            let _ = self.links[i].commands.send(LinkCommand::Add(spec));
            if held {
                let _ = self.links[i]
                    .commands
                    .send(LinkCommand::HoldPreemption(name, true));
            }
            touched.push(i);
        }

        // Wait until every touched link has carried its commands out.
        touched.sort_unstable();
        touched.dedup();
        for i in touched {
            let (done, wait) = oneshot::channel();
            if self.links[i].commands.send(LinkCommand::Sync(done)).is_ok() {
                let _ = wait.await;
            }
        }
        // Links left without instances close their sockets.
        let (empty, kept): (Vec<LinkHandle>, Vec<LinkHandle>) = std::mem::take(&mut self.links)
            .into_iter()
            .partition(|l| l.names.is_empty());
        self.links = kept;
        for link in empty {
            drop(link.commands);
            let _ = link.task.await;
            self.status.send_modify(|s| {
                s.links.retain(|l| {
                    !(l.interface_index == link.key.interface_index
                        && l.source == Some(link.key.source))
                })
            });
        }
        // The status lists the instances in configuration order.
        self.status.send_modify(|s| {
            let mut ordered = Vec::with_capacity(specs.len());
            for spec in &specs {
                if let Some(i) = s.instances.iter().position(|e| e.name == spec.name) {
                    ordered.push(s.instances.swap_remove(i));
                }
            }
            s.instances = ordered;
        });
        self.running = specs
            .into_iter()
            .map(|mut spec| {
                if let Some(i) = self.link_of(&spec.name) {
                    spec.router.primary_address = self.links[i].key.source;
                }
                spec
            })
            .collect();
        Ok(report)
    }

    /// Reads the state of every interface an instance runs on or tracks and
    /// tells each instance whose link fault changed.
    async fn poll_links(&mut self) {
        let mut up: BTreeMap<String, bool> = BTreeMap::new();
        for spec in &self.running {
            for name in std::iter::once(&spec.interface).chain(&spec.track_interfaces) {
                if !up.contains_key(name) {
                    let is_up = match self.netif.interface(name).await {
                        Ok(info) => info.up,
                        Err(NetifError::NoSuchInterface(_)) => false,
                        Err(e) => {
                            debug!(interface = %name, "cannot read the link state: {e}");
                            continue;
                        }
                    };
                    up.insert(name.clone(), is_up);
                }
            }
        }
        for spec in &self.running {
            let down: Vec<&String> = std::iter::once(&spec.interface)
                .chain(&spec.track_interfaces)
                .filter(|name| up.get(*name) == Some(&false))
                .collect();
            let fault = !down.is_empty();
            if self.link_faults.get(&spec.name) == Some(&fault) {
                continue;
            }
            if fault {
                warn!(instance = %spec.name, interfaces = ?down, "interface down: FAULT");
            } else if self.link_faults.contains_key(&spec.name) {
                info!(instance = %spec.name, "interfaces up again: leaving FAULT");
            }
            if let Some(i) = self.link_of(&spec.name) {
                let _ = self.links[i]
                    .commands
                    .send(LinkCommand::LinkFault(spec.name.clone(), fault));
                self.link_faults.insert(spec.name.clone(), fault);
            }
        }
        let running = &self.running;
        self.link_faults
            .retain(|name, _| running.iter().any(|r| &r.name == name));
    }

    /// A member reported a state change: the rest of its sync group follows
    /// (see [`crate::sync_group`]).
    fn member_moved(&mut self, event: MemberEvent) {
        let entry = self.members.entry(event.name.clone()).or_insert(Member {
            state: event.to,
            own_fault: false,
            group_fault: false,
        });
        entry.state = event.to;
        entry.own_fault = event.own_fault;
        let Some(group) = self
            .sync_groups
            .iter()
            .find(|g| g.members.contains(&event.name))
        else {
            return;
        };
        let names = group.members.clone();
        let members: Vec<Member> = names
            .iter()
            .map(|n| {
                self.members.get(n).copied().unwrap_or(Member {
                    state: State::Initialize,
                    own_fault: false,
                    group_fault: false,
                })
            })
            .collect();
        let moved = names
            .iter()
            .position(|n| *n == event.name)
            .expect("a member");
        for (i, order) in crate::sync_group::orders(&members, moved, event.from) {
            let name = &names[i];
            if let GroupOrder::GroupFault(held) = order {
                if let Some(member) = self.members.get_mut(name) {
                    member.group_fault = held;
                }
            }
            if let Some(link) = self.link_of(name) {
                let _ = self.links[link]
                    .commands
                    .send(LinkCommand::Group(name.clone(), order));
            }
        }
    }

    fn hold_preemption(&mut self, instance: String, held: bool) {
        if let Some(i) = self.link_of(&instance) {
            let _ = self.links[i]
                .commands
                .send(LinkCommand::HoldPreemption(instance.clone(), held));
        }
        if held {
            self.preemption_holds.insert(instance);
        } else {
            self.preemption_holds.remove(&instance);
        }
    }

    fn link_of(&self, name: &str) -> Option<usize> {
        self.links
            .iter()
            .position(|l| l.names.iter().any(|n| n == name))
    }

    fn spawn_link(&mut self, new: NewLink) {
        let (commands, receiver) = mpsc::unbounded_channel();
        self.status.send_modify(|s| {
            s.links.push(LinkStatus {
                interface: new.info.name.clone(),
                interface_index: new.info.index,
                source: Some(new.key.source),
                ..LinkStatus::default()
            })
        });
        let link = Link {
            info: new.info,
            source: new.key.source,
            unicast_peers: new.key.unicast_peers.clone(),
            adverts: new.adverts,
            frames: new.frames,
            // A netlink socket of its own: a dump on a socket that is busy with
            // another dump fails with EBUSY.
            netif: match Netif::new() {
                Ok(netif) => netif,
                Err(e) => {
                    warn!("cannot open a netlink socket for the link, sharing one: {e}");
                    self.netif.clone()
                }
            },
            instances: Vec::new(),
            status: self.status.clone(),
            events: self.events.clone(),
            members: self.members_tx.clone(),
        };
        let task = tokio::spawn(link.run(receiver, self.shutdown.clone()));
        self.links.push(LinkHandle {
            key: new.key,
            names: Vec::new(),
            commands,
            task,
        });
    }
}

impl InstanceStatus {
    fn starting(spec: &InstanceSpec) -> InstanceStatus {
        InstanceStatus {
            name: spec.name.clone(),
            interface: spec.interface.clone(),
            state: State::Initialize,
            priority: spec.router.priority,
            master: None,
            since: None,
            reason: None,
            preemption_held: false,
            stats: RouterStats::default(),
        }
    }
}

/// Removes the instance's virtual addresses that a crashed predecessor left on
/// the interface. The address owner (priority 255) keeps them: they are its own.
async fn remove_stale_addresses(netif: &Netif, spec: &InstanceSpec) -> Result<(), NetifError> {
    if spec.router.priority == 255 {
        return Ok(());
    }
    for address in &spec.router.virtual_addresses {
        let index = netif.interface(&spec.interface).await?.index;
        if netif.remove_address(index, *address).await? {
            warn!(
                instance = %spec.name,
                %address,
                interface = %spec.interface,
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
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<LinkCommand>,
        mut shutdown: watch::Receiver<bool>,
    ) {
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
                command = commands.recv() => match command {
                    Some(command) => self.handle_command(command).await,
                    // The supervisor closed this link: its instances are gone.
                    None => return,
                },
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

    async fn handle_command(&mut self, command: LinkCommand) {
        let now = Instant::now();
        match command {
            LinkCommand::Add(spec) => {
                let mut router = Router::new(spec.router.clone());
                router.startup(now);
                let auth = spec.auth.clone().map(Authenticator::new);
                self.instances.push(Instance {
                    spec,
                    router,
                    tracking: Tracking::default(),
                    group_fault: false,
                    link_fault: false,
                    auth,
                });
                self.carry_out(self.instances.len() - 1).await;
            }
            LinkCommand::Update(spec) => {
                if let Some(i) = self.position(&spec.name) {
                    let instance = &mut self.instances[i];
                    let mut config = spec.router.clone();
                    // Tracking still applies on top of the new configured priority.
                    config.priority = instance.tracking.effective_priority(config.priority);
                    // New keys or mode; the send sequence and the replay marks stay.
                    instance.auth = match (instance.auth.take(), spec.auth.clone()) {
                        (Some(mut auth), Some(config)) => {
                            auth.reconfigure(config);
                            Some(auth)
                        }
                        (_, config) => config.map(Authenticator::new),
                    };
                    instance.router.reconfigure(now, config);
                    instance.spec = spec;
                    self.carry_out(i).await;
                }
            }
            LinkCommand::Track(name, tracking) => {
                if let Some(i) = self.position(&name) {
                    let instance = &mut self.instances[i];
                    let own_before = instance.own_fault();
                    instance.tracking = tracking;
                    let priority = tracking.effective_priority(instance.spec.router.priority);
                    instance.router.set_priority(now, priority);
                    self.refresh_fault(i, now, own_before);
                    self.carry_out(i).await;
                }
            }
            LinkCommand::HoldPreemption(name, held) => {
                if let Some(i) = self.position(&name) {
                    let router = &mut self.instances[i].router;
                    if router.preemption_held() != held {
                        info!(
                            instance = %name,
                            state = router.state().as_str(),
                            "preemption {}",
                            if held { "held" } else { "resumed" }
                        );
                    }
                    router.hold_preemption(held);
                    self.carry_out(i).await;
                }
            }
            LinkCommand::LinkFault(name, down) => {
                if let Some(i) = self.position(&name) {
                    let own_before = self.instances[i].own_fault();
                    self.instances[i].link_fault = down;
                    self.refresh_fault(i, now, own_before);
                    self.carry_out(i).await;
                }
            }
            LinkCommand::Group(name, order) => {
                if let Some(i) = self.position(&name) {
                    let instance = &mut self.instances[i];
                    match order {
                        GroupOrder::BecomeMaster => instance.router.force_master(now),
                        GroupOrder::BecomeBackup => instance.router.force_backup(now),
                        GroupOrder::GroupFault(held) => {
                            instance.group_fault = held;
                            let fault = instance.own_fault() || held;
                            instance.router.set_fault(now, fault);
                        }
                    }
                    self.carry_out(i).await;
                }
            }
            LinkCommand::Remove(name) => {
                if let Some(i) = self.position(&name) {
                    self.instances[i].router.shutdown(now);
                    self.carry_out(i).await;
                    self.instances.remove(i);
                }
            }
            LinkCommand::Sync(done) => {
                let _ = done.send(());
            }
        }
    }

    /// Gives instance `i`'s router its combined fault (its own, or its sync
    /// group's), and tells the group when its own fault changed: the group must
    /// know even when the state does not change (a member already held in
    /// Fault gets a fault of its own).
    fn refresh_fault(&mut self, i: usize, now: Instant, own_before: bool) {
        let instance = &mut self.instances[i];
        let own_fault = instance.own_fault();
        instance
            .router
            .set_fault(now, own_fault || instance.group_fault);
        if own_before != own_fault {
            let state = instance.router.state();
            let _ = self.members.send(MemberEvent {
                name: instance.spec.name.clone(),
                from: state,
                to: state,
                own_fault,
            });
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.instances.iter().position(|i| i.spec.name == name)
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
        let (advert, trailer) = match AdvertRepr::parse_signed(payload, *source, *destination) {
            Ok(parsed) => parsed,
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
        if !self.authenticate(i, source, payload, trailer) {
            // Publishes the counted drop.
            self.carry_out(i).await;
            return;
        }
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

    /// Runs instance `i`'s `auth_hmac` checks on an advert (`payload`, with
    /// its trailer at `trailer`) and counts the verdict; false when the
    /// advert must be dropped.
    fn authenticate(
        &mut self,
        i: usize,
        source: &IpAddr,
        payload: &[u8],
        trailer: Option<std::ops::Range<usize>>,
    ) -> bool {
        let message = &payload[..trailer.as_ref().map_or(payload.len(), |t| t.start)];
        let instance = &mut self.instances[i];
        let verdict = match &mut instance.auth {
            Some(auth) => auth.check(unix_now(), *source, message, trailer.map(|t| &payload[t])),
            // Not configured: a trailer is a length mismatch to us, as to
            // any receiver without the extension.
            None if trailer.is_some() => Verdict::Dropped(crate::auth::AuthFailure::Unexpected),
            None => return true,
        };
        let keep = instance.router.record_auth(verdict);
        if let Verdict::Accepted(failure) | Verdict::Dropped(failure) = verdict {
            let stats = instance.router.stats();
            let count = if keep {
                stats.auth_accepted[&failure]
            } else {
                stats.drops[&crate::router::DropReason::Auth(failure)]
            };
            if count <= 10 || count % 1000 == 0 {
                warn!(
                    instance = %instance.spec.name,
                    %source,
                    reason = failure.as_str(),
                    accepted = keep,
                    count,
                    "advert failed authentication"
                );
            }
        }
        keep
    }

    /// This link's entry in the status.
    fn link_status<'s>(&self, status: &'s mut Status) -> Option<&'s mut LinkStatus> {
        status
            .links
            .iter_mut()
            .find(|l| l.interface_index == self.info.index && l.source == Some(self.source))
    }

    fn count_drop(&mut self, reason: &'static str) {
        let mut count = 0;
        self.status.send_modify(|s| {
            if let Some(link) = self.link_status(s) {
                let entry = link.drops.entry(reason).or_default();
                *entry += 1;
                count = *entry;
            }
        });
        if count <= 10 || count % 1000 == 0 {
            warn!(interface = %self.info.name, reason, count, "dropped a packet");
        }
    }

    /// Carries out every pending action of instance `i`, then publishes its status.
    async fn carry_out(&mut self, i: usize) {
        while let Some(action) = self.instances[i].router.poll_action() {
            match action {
                Action::SendAdvert(advert) => self.send_advert(i, &advert),
                Action::AddVirtualAddresses(addresses) => {
                    let spec = &self.instances[i].spec;
                    for address in addresses {
                        let prefix_len = spec
                            .router
                            .virtual_addresses
                            .iter()
                            .zip(&spec.virtual_prefix_lens)
                            .find(|(a, _)| **a == address)
                            .map_or(if address.is_ipv4() { 32 } else { 128 }, |(_, p)| *p);
                        if let Err(e) = self
                            .netif
                            .add_address(self.info.index, address, prefix_len)
                            .await
                        {
                            error!(instance = %spec.name, "cannot add virtual address: {e}");
                        }
                    }
                }
                Action::RemoveVirtualAddresses(addresses) => {
                    let spec = &self.instances[i].spec;
                    for address in addresses {
                        if let Err(e) = self.netif.remove_address(self.info.index, address).await {
                            error!(instance = %spec.name, "cannot remove virtual address: {e}");
                        }
                    }
                }
                Action::Announce(addresses) => self.announce(i, &addresses),
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
                    let name = &instance.spec.name;
                    let _ = self.members.send(MemberEvent {
                        name: name.clone(),
                        from,
                        to,
                        own_fault: instance.own_fault(),
                    });
                    if let Some(events) = &self.events {
                        let _ = events.send(InstanceTransition {
                            name: name.clone(),
                            from,
                            to,
                            reason,
                            priority: instance.router.priority(),
                            at: SystemTime::now(),
                        });
                    }
                    self.status.send_modify(|s| {
                        if let Some(entry) = s.instances.iter_mut().find(|e| &e.name == name) {
                            entry.since = Some(SystemTime::now());
                            entry.reason = Some(reason.as_str());
                        }
                    });
                }
            }
        }
        let instance = &self.instances[i];
        self.status.send_if_modified(|s| {
            let Some(entry) = s
                .instances
                .iter_mut()
                .find(|e| e.name == instance.spec.name)
            else {
                return false;
            };
            let before = (
                entry.state,
                entry.priority,
                entry.master,
                entry.preemption_held,
                entry.stats.clone(),
            );
            entry.state = instance.router.state();
            entry.priority = instance.router.priority();
            entry.master = instance.router.master_address();
            entry.preemption_held = instance.router.preemption_held();
            entry.stats = instance.router.stats().clone();
            before
                != (
                    entry.state,
                    entry.priority,
                    entry.master,
                    entry.preemption_held,
                    entry.stats.clone(),
                )
        });
    }

    fn send_advert(&mut self, i: usize, advert: &AdvertRepr) {
        let destinations = if self.unicast_peers.is_empty() {
            vec![self.adverts.multicast_group()]
        } else {
            self.unicast_peers.clone()
        };
        // One sequence number per advert: every unicast peer gets the same
        // signed advert (the HMAC does not cover the destination).
        let signing = self.instances[i]
            .auth
            .as_mut()
            .and_then(|auth| auth.sign(unix_now()));
        let extra = if signing.is_some() {
            crate::wire::auth::TRAILER_LEN
        } else {
            0
        };
        let mut message = vec![0u8; advert.buffer_len() + extra];
        for destination in destinations {
            match &signing {
                Some((key, key_id, sequence)) => advert.emit_signed(
                    &mut message,
                    self.source,
                    destination,
                    key,
                    *key_id,
                    *sequence,
                ),
                None => advert.emit(&mut message, self.source, destination),
            }
            if let Err(e) = self.adverts.send(&message, destination) {
                self.status.send_modify(|s| {
                    if let Some(link) = self.link_status(s) {
                        link.send_errors += 1;
                    }
                });
                warn!(interface = %self.info.name, %destination, "sending an advert failed: {e}");
            }
        }
    }

    /// One gratuitous ARP / unsolicited NA per address (RFC 5798 §6.4.2).
    fn announce(&self, i: usize, addresses: &[IpAddr]) {
        let spec = &self.instances[i].spec;
        for address in addresses {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::router::GarpConfig;
    use crate::wire::vrrp::{Auth, Version};

    fn spec(name: &str, vrid: u8, priority: u8) -> InstanceSpec {
        InstanceSpec {
            name: name.into(),
            interface: "eth0".into(),
            router: RouterConfig {
                version: Version::V3,
                vrid,
                priority,
                advert_interval_centis: 100,
                preempt: true,
                preempt_delay: Duration::ZERO,
                primary_address: "0.0.0.0".parse().unwrap(),
                virtual_addresses: vec!["10.0.0.100".parse().unwrap()],
                auth: Auth::None,
                garp: GarpConfig::default(),
            },
            virtual_prefix_lens: vec![24],
            unicast_source: None,
            unicast_peers: Vec::new(),
            track_interfaces: Vec::new(),
            auth: None,
            accept: true,
        }
    }

    #[test]
    fn identical_configuration_keeps_every_instance() {
        let old = vec![spec("a", 1, 100), spec("b", 2, 100)];
        assert_eq!(
            plan_reload(&old, &old),
            vec![ReloadStep::Keep("a".into()), ReloadStep::Keep("b".into())]
        );
    }

    #[test]
    fn settings_change_in_place_and_identity_changes_replace() {
        let old = vec![spec("a", 1, 100), spec("b", 2, 100), spec("gone", 3, 100)];
        let mut a = spec("a", 1, 120);
        a.router
            .virtual_addresses
            .push("10.0.0.101".parse().unwrap());
        a.virtual_prefix_lens.push(24);
        let b = spec("b", 9, 100);
        let new = vec![a.clone(), b.clone(), spec("new", 4, 100)];
        assert_eq!(
            plan_reload(&old, &new),
            vec![
                ReloadStep::Remove("gone".into()),
                ReloadStep::Update(a),
                ReloadStep::Replace(b),
                ReloadStep::Add(spec("new", 4, 100)),
            ]
        );
    }

    #[test]
    fn interface_family_peers_and_version_are_identity() {
        let old = spec("a", 1, 100);
        let mut changes = Vec::new();
        let mut other = old.clone();
        other.interface = "eth1".into();
        changes.push(other);
        let mut other = old.clone();
        other.router.version = Version::V2;
        changes.push(other);
        let mut other = old.clone();
        other.router.virtual_addresses = vec!["fd00::100".parse().unwrap()];
        changes.push(other);
        let mut other = old.clone();
        other.unicast_peers = vec!["10.0.0.2".parse().unwrap()];
        changes.push(other);
        for new in changes {
            assert_eq!(
                plan_reload(std::slice::from_ref(&old), std::slice::from_ref(&new)),
                vec![ReloadStep::Replace(new.clone())]
            );
        }
    }

    #[test]
    fn tracking_moves_the_priority_within_the_rfc_range() {
        let down = Tracking {
            priority_delta: -60,
            fault: false,
        };
        assert_eq!(down.effective_priority(100), 40);
        assert_eq!(down.effective_priority(50), 1, "never 0: that means resign");
        let up = Tracking {
            priority_delta: 200,
            fault: false,
        };
        assert_eq!(up.effective_priority(100), 254, "255 is the owner's alone");
        assert_eq!(down.effective_priority(255), 255, "the owner keeps 255");
    }
}
