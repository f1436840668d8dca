//! One link's task: its sockets, its routers and ONE timer set to their
//! earliest deadline; it carries out what the routers hand out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use super::{InstanceSpec, InstanceTransition, LinkStanding, LinkStatus, Status, Tracking};
use crate::auth::{Authenticator, Verdict};
use crate::netif::{InterfaceInfo, Netif};
use crate::router::{Action, DropReason, Router, State};
use crate::socket::{AdvertSocket, FrameSocket, ReceiveError, ReceivedAdvert};
use crate::sync_group::GroupOrder;
use crate::timer::PreciseTimer;
use crate::wire::arp::GratuitousArp;
use crate::wire::ndisc::UnsolicitedNa;
use crate::wire::vrrp::AdvertRepr;

/// Largest VRRP message: 255 IPv6 addresses plus headers, rounded up.
const RECEIVE_BUFFER: usize = 9000;
/// Already-queued packets are read before acting on a deadline for at most this long, so
/// that a flood delays the timers by no more than this (a stalled process with many
/// instances on the link can find thousands of genuine adverts queued: a count cap small
/// enough for a flood would leave most of them behind the Master_Down timers they cancel).
const DRAIN_BEFORE_TIMERS: std::time::Duration = std::time::Duration::from_millis(20);
/// A graceful stop waits at most this long for the new master's advert
/// (Master_Down_Interval is the bound below it; a v2 router at a long
/// interval would otherwise hold the stop for minutes).
const LEAVING_CAP: std::time::Duration = std::time::Duration::from_secs(4);

/// How long a virtual address's addition or removal may wait for the kernel's answer. The
/// request is sent at once and the kernel acts on it; a reply that never comes must not
/// hold back the rest of a transition (its log line, status, notifications). A host test
/// once saw a backup's transition stall after the removal of its VIP: the address was gone
/// from the kernel 3 ms after the advert, and neither the log nor the status said BACKUP
/// a second later.
const ADDRESS_ANSWER_LIMIT: std::time::Duration = std::time::Duration::from_millis(500);

/// The wall-clock time since the Unix epoch (sequence numbers and the
/// freshness window of `auth_hmac` are wall-clock based).
fn unix_now() -> std::time::Duration {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

pub(super) struct Instance {
    spec: InstanceSpec,
    router: Router,
    /// What tracked scripts and objects say (keepalived's `track_script`).
    tracking: Tracking,
    /// Held in Fault because another member of its sync group has a fault.
    group_fault: bool,
    /// Its interface, or a tracked interface (`track_interface`) of weight 0, is in its
    /// failing state.
    link_fault: bool,
    /// The priority change of its weighted tracked interfaces.
    link_delta: i32,
    /// `auth_hmac`: keys, send sequence and replay marks.
    auth: Option<Authenticator>,
    /// Routers already logged as claiming our addresses with priority 255
    /// (each is logged once; the `owner_conflict` drop counter counts them all).
    owner_conflicts_logged: BTreeSet<IpAddr>,
    /// The interface index each address it added went on: a reload that
    /// drops an address from the configuration still removes it from there.
    added_on: BTreeMap<IpAddr, u32>,
    /// Its `virtual_routes` and `virtual_rules` are installed.
    routes_installed: bool,
}

impl Instance {
    /// A fault of the instance's own (tracked scripts or interfaces), as
    /// opposed to one its sync group imposes.
    fn own_fault(&self) -> bool {
        self.tracking.fault || self.link_fault
    }

    /// The priority to run with for `configured`: tracked scripts and files, and tracked
    /// interfaces, move it (the address owner stays at 255).
    fn tracked_priority(&self, configured: u8) -> u8 {
        Tracking {
            priority_delta: self.tracking.priority_delta.saturating_add(self.link_delta),
            fault: false,
        }
        .effective_priority(configured)
    }
}

pub(super) struct Link {
    pub(super) info: InterfaceInfo,
    pub(super) source: IpAddr,
    pub(super) unicast_peers: Vec<IpAddr>,
    pub(super) adverts: AdvertSocket,
    pub(super) frames: FrameSocket,
    /// Interfaces other than this link's that virtual addresses go on
    /// (`dev`), by name; looked up again each time addresses are added there.
    pub(super) other_devices: BTreeMap<String, OtherDevice>,
    pub(super) netif: Netif,
    pub(super) instances: Vec<Instance>,
    pub(super) status: watch::Sender<Status>,
    pub(super) events: Option<broadcast::Sender<InstanceTransition>>,
    /// State changes reported to the supervisor, for sync groups.
    pub(super) members: mpsc::UnboundedSender<MemberEvent>,
    /// When a change of counters alone last woke the status's watchers
    /// ([`COUNTERS_PUBLISH_PERIOD`]).
    pub(super) counters_published_at: Option<Instant>,
    /// Counters changed since then without waking the watchers: they are
    /// woken when the period ends.
    pub(super) counters_pending: bool,
    /// Stamped by the loop, for the watchdog.
    pub(super) heartbeat: std::sync::Arc<super::Heartbeat>,
    /// The instances' `auth_hmac` state, taken up when one is added and kept current.
    pub(super) replay: std::sync::Arc<crate::auth::ReplayStore>,
}

/// An interface other than the link's that some virtual addresses go on:
/// the announcements for them leave through it, with its MAC.
pub(super) struct OtherDevice {
    info: InterfaceInfo,
    frames: FrameSocket,
}

/// Counters that change alone (adverts received, packets dropped) wake the
/// status's watchers at most this often: a flood of packets must not make
/// every watcher clone the whole status once per packet. The counters are
/// still updated in place, and any real change (state, priority, master)
/// publishes them at once.
pub(super) const COUNTERS_PUBLISH_PERIOD: Duration = Duration::from_millis(250);

/// A member's state change, as the supervisor's sync-group logic needs it.
pub(super) struct MemberEvent {
    pub(super) name: String,
    pub(super) from: State,
    pub(super) to: State,
    pub(super) own_fault: bool,
}

/// What the supervisor tells a link task.
pub(super) enum LinkCommand {
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
    /// Hand mastership over (`true`, [`Router::hand_over`]) or cancel that (`false`).
    HandOver(String, bool),
    /// An order of the instance's sync group.
    Group(String, GroupOrder),
    /// What the instance's interface and its tracked ones say now.
    LinkFault(String, LinkStanding),
    /// Answer once every earlier command has been carried out.
    Sync(oneshot::Sender<()>),
}

impl Link {
    /// Runs the link until the driver stops it (its routers resign make-before-break) or
    /// closes it. If the link fails (a panic in its work, or a timer it cannot create),
    /// its routers resign at once (priority 0, addresses removed) and the failure goes to
    /// the driver on `failed`, which then stops every link: a half-dead daemon, whose
    /// addresses stay while its adverts have stopped, would make two masters.
    pub(super) async fn run(
        mut self,
        commands: mpsc::UnboundedReceiver<LinkCommand>,
        shutdown: watch::Receiver<bool>,
        failed: mpsc::UnboundedSender<String>,
    ) {
        use futures::FutureExt as _;
        let outcome = std::panic::AssertUnwindSafe(self.serve(commands, shutdown))
            .catch_unwind()
            .await;
        let why = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(why)) => why,
            Err(panic) => {
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned());
                format!("panicked: {text}")
            }
        };
        error!(interface = %self.info.name, "the link's task failed ({why}): its instances resign now");
        let now = Instant::now();
        for i in 0..self.instances.len() {
            self.instances[i].router.shutdown(now);
            self.carry_out(i).await;
        }
        let _ = failed.send(format!("{} {why}", self.info.name));
    }

    /// The link's work; `Err` when it cannot go on.
    async fn serve(
        &mut self,
        mut commands: mpsc::UnboundedReceiver<LinkCommand>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), String> {
        let mut buffer = vec![0u8; RECEIVE_BUFFER];
        let mut timer = PreciseTimer::new().map_err(|e| format!("cannot create the timer: {e}"))?;
        let fault = injected_fault(&self.info.name);
        let mut idle_beat = tokio::time::interval(super::heartbeat::IDLE_BEAT);
        idle_beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.heartbeat.stamp();
            if let Err(e) = timer.set(self.next_deadline()) {
                error!(interface = %self.info.name, "cannot arm the timer: {e}");
            }
            let armed = timer.deadline().is_some();
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        self.shut_down(&mut timer, &mut buffer).await;
                        return Ok(());
                    }
                }
                command = commands.recv() => match command {
                    Some(command) => self.handle_command(command).await,
                    // The supervisor closed this link: its instances are gone.
                    None => return Ok(()),
                },
                _ = idle_beat.tick() => {}
                () = async { tokio::time::sleep_until(fault.expect("guarded").0.into()).await }, if fault.is_some() => {
                    match fault.expect("guarded").1 {
                        Fault::Panic => panic!("injected by HALDIR_TEST_FAULT"),
                        // This loop waits for ever, as on a call that never answers, while
                        // the rest of the daemon runs on.
                        Fault::Stall => std::future::pending::<()>().await,
                    }
                }
                fired = timer.expired(), if armed => {
                    if let Err(e) = fired {
                        error!(interface = %self.info.name, "timer failed: {e}");
                    }
                    // Adverts already queued arrived before we got round to this
                    // deadline: after a stall (a loaded host, a slow disk) they must
                    // count before a timer declares the master down. Bounded in time
                    // (DRAIN_BEFORE_TIMERS), so a flood cannot hold the timers back.
                    let draining = Instant::now();
                    while draining.elapsed() < DRAIN_BEFORE_TIMERS {
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
                    self.flush_counters(now);
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
                let mut auth = spec.auth.clone().map(Authenticator::new);
                // A restart, or an instance replaced by a reload, goes on from the state
                // kept: no replay of a capture from before, no sequence below it.
                if let (Some(auth), Some(kept)) = (&mut auth, self.replay.get(&spec.name)) {
                    auth.restore(&kept);
                }
                self.instances.push(Instance {
                    spec,
                    router,
                    tracking: Tracking::default(),
                    group_fault: false,
                    link_fault: false,
                    link_delta: 0,
                    auth,
                    owner_conflicts_logged: BTreeSet::new(),
                    added_on: BTreeMap::new(),
                    routes_installed: false,
                });
                self.carry_out(self.instances.len() - 1).await;
            }
            LinkCommand::Update(spec) => {
                if let Some(i) = self.position(&spec.name) {
                    let instance = &mut self.instances[i];
                    let mut config = spec.router.clone();
                    // Tracking still applies on top of the new configured priority.
                    config.priority = instance.tracked_priority(config.priority);
                    // New keys or mode; the send sequence and the replay marks stay.
                    instance.auth = match (instance.auth.take(), spec.auth.clone()) {
                        (Some(mut auth), Some(config)) => {
                            auth.reconfigure(config);
                            Some(auth)
                        }
                        (_, config) => config.map(Authenticator::new),
                    };
                    instance.router.reconfigure(now, config);
                    // Changed routes or rules: the old ones go now, the new ones
                    // follow in `carry_out` while the instance holds its addresses.
                    let routes_changed = (&instance.spec.routes, &instance.spec.rules)
                        != (&spec.routes, &spec.rules);
                    let old = std::mem::replace(&mut instance.spec, spec);
                    if routes_changed && self.instances[i].routes_installed {
                        self.remove_routes(&old).await;
                        self.instances[i].routes_installed = false;
                    }
                    self.carry_out(i).await;
                }
            }
            LinkCommand::Track(name, tracking) => {
                if let Some(i) = self.position(&name) {
                    let instance = &mut self.instances[i];
                    let own_before = instance.own_fault();
                    instance.tracking = tracking;
                    let priority = instance.tracked_priority(instance.spec.router.priority);
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
            LinkCommand::HandOver(name, on) => {
                if let Some(i) = self.position(&name) {
                    let router = &mut self.instances[i].router;
                    if on {
                        let was_master = router.state() == State::Master;
                        if router.hand_over(now) && was_master {
                            info!(
                                instance = %name,
                                "handing over: priority 0 sent; the virtual addresses stay until the new master advertises"
                            );
                        }
                    } else if router.handed_over() {
                        router.cancel_handover();
                        info!(instance = %name, "handover cancelled: preempts again");
                    }
                    self.carry_out(i).await;
                }
            }
            LinkCommand::LinkFault(name, standing) => {
                if let Some(i) = self.position(&name) {
                    let instance = &mut self.instances[i];
                    let own_before = instance.own_fault();
                    instance.link_fault = standing.fault;
                    if instance.link_delta != standing.priority_delta {
                        instance.link_delta = standing.priority_delta;
                        let priority = instance.tracked_priority(instance.spec.router.priority);
                        instance.router.set_priority(now, priority);
                    }
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
            .chain(self.counters_flush_due())
            .min()
    }

    /// Graceful stop, make-before-break: every master sends priority 0 but
    /// keeps its virtual addresses until the new master's first advert or its
    /// Master_Down_Interval ([`Router::begin_leaving`]), at most
    /// [`LEAVING_CAP`]; then every instance shuts down.
    async fn shut_down(&mut self, timer: &mut PreciseTimer, buffer: &mut [u8]) {
        let started = Instant::now();
        for i in 0..self.instances.len() {
            self.instances[i].router.begin_leaving(started);
            self.carry_out(i).await;
        }
        let cap = started + LEAVING_CAP;
        while self.instances.iter().any(|i| i.router.is_leaving()) && Instant::now() < cap {
            let deadline = self.next_deadline().map_or(cap, |t| t.min(cap));
            if let Err(e) = timer.set(Some(deadline)) {
                error!(interface = %self.info.name, "cannot arm the timer: {e}");
                break;
            }
            tokio::select! {
                biased;
                received = self.adverts.receive(buffer) => {
                    if !self.handle_received(received, buffer).await {
                        break;
                    }
                }
                _ = timer.expired() => {
                    let now = Instant::now();
                    for i in 0..self.instances.len() {
                        if self.instances[i].router.poll_timeout().is_some_and(|t| t <= now) {
                            self.instances[i].router.handle_timeout(now);
                            self.carry_out(i).await;
                        }
                    }
                    // The counters' deadline is in `next_deadline` too: left pending,
                    // it would fire at once on every turn, a busy loop that starves
                    // this thread's socket readiness until the leave's deadline.
                    self.flush_counters(now);
                }
            }
        }
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
            let instance = &mut self.instances[i];
            let count = instance.router.stats().drops[&reason];
            if reason == DropReason::OwnerConflict {
                if instance.owner_conflicts_logged.insert(*source) {
                    error!(
                        instance = %instance.spec.name,
                        %source,
                        "another router advertises priority 255 for our addresses: two address owners (RFC 5798 §5.2.4); keeping ours, ignoring its adverts (counted as drops, reason owner_conflict)"
                    );
                }
            } else if count <= 10 || count % 1000 == 0 {
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
        if verdict == Verdict::Authenticated {
            if let Some(auth) = &instance.auth {
                self.replay.put(&instance.spec.name, auth.replay_state());
            }
        }
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

    /// Whether a change of counters alone may wake the status's watchers now.
    fn counters_due(&mut self) -> bool {
        let now = Instant::now();
        let due = self
            .counters_published_at
            .is_none_or(|at| now.saturating_duration_since(at) >= COUNTERS_PUBLISH_PERIOD);
        if due {
            self.counters_published_at = Some(now);
        }
        self.counters_pending = !due;
        due
    }

    /// Wakes the status's watchers for counters left unpublished, once
    /// [`COUNTERS_PUBLISH_PERIOD`] has passed.
    fn flush_counters(&mut self, now: Instant) {
        if self.counters_pending && self.counters_flush_due().is_some_and(|due| now >= due) {
            self.counters_pending = false;
            self.counters_published_at = Some(now);
            self.status.send_modify(|_| {});
        }
    }

    /// When the counters left unpublished are due, if any are.
    fn counters_flush_due(&self) -> Option<Instant> {
        self.counters_pending
            .then(|| {
                self.counters_published_at
                    .map(|at| at + COUNTERS_PUBLISH_PERIOD)
            })
            .flatten()
    }

    fn count_drop(&mut self, reason: &'static str) {
        let mut count = 0;
        let publish = self.counters_due();
        self.status.send_if_modified(|s| {
            if let Some(link) = self.link_status(s) {
                let entry = link.drops.entry(reason).or_default();
                *entry += 1;
                count = *entry;
            }
            publish
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
                    for address in addresses {
                        self.add_address(i, address).await;
                    }
                }
                Action::RemoveVirtualAddresses(addresses) => {
                    for address in addresses {
                        let instance = &mut self.instances[i];
                        let index = instance
                            .added_on
                            .remove(&address)
                            .unwrap_or(self.info.index);
                        let removed = tokio::time::timeout(
                            ADDRESS_ANSWER_LIMIT,
                            self.netif.remove_address(index, address),
                        )
                        .await;
                        match removed {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => {
                                error!(instance = %instance.spec.name, "cannot remove virtual address: {e}")
                            }
                            Err(_) => error!(
                                instance = %instance.spec.name,
                                %address,
                                "removing a virtual address: no answer from the kernel within {ADDRESS_ANSWER_LIMIT:?}; going on"
                            ),
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
        self.sync_routes(i).await;
        let counters_due = self.counters_due();
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
                entry.handed_over,
            );
            entry.state = instance.router.state();
            entry.priority = instance.router.priority();
            entry.master = instance.router.master_address();
            entry.preemption_held = instance.router.preemption_held();
            entry.handed_over = instance.router.handed_over();
            let stats = instance.router.stats();
            let counters_changed = entry.stats != *stats;
            if counters_changed {
                entry.stats.clone_from(stats);
            }
            let changed = before
                != (
                    entry.state,
                    entry.priority,
                    entry.master,
                    entry.preemption_held,
                    entry.handed_over,
                );
            // Counters alone: coalesced (COUNTERS_PUBLISH_PERIOD).
            changed || (counters_changed && counters_due)
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
        if let (Some(_), Some(auth)) = (&signing, &self.instances[i].auth) {
            self.replay
                .put(&self.instances[i].spec.name, auth.replay_state());
        }
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

    /// Installs instance `i`'s routes and rules while it holds its addresses
    /// (master, or a backup still holding them during a handover), and
    /// removes them once it holds none: after the addresses are added (a
    /// route's `src` must be local) and after they are removed.
    async fn sync_routes(&mut self, i: usize) {
        let instance = &self.instances[i];
        let spec = &instance.spec;
        if spec.routes.is_empty() && spec.rules.is_empty() {
            return;
        }
        let holding = instance.router.state() == State::Master
            || instance.router.added_addresses().next().is_some();
        if holding == instance.routes_installed {
            return;
        }
        if holding {
            for rule in &spec.rules {
                if let Err(e) = self.netif.add_rule(rule).await {
                    error!(instance = %spec.name, "cannot add virtual rule: {e}");
                }
            }
            for route in &spec.routes {
                if let Err(e) = self.netif.add_route(route).await {
                    error!(instance = %spec.name, "cannot add virtual route: {e}");
                }
            }
        } else {
            self.remove_routes(spec).await;
        }
        self.instances[i].routes_installed = holding;
    }

    /// Removes the routes and rules of `spec` (absent ones are fine).
    async fn remove_routes(&self, spec: &InstanceSpec) {
        for route in &spec.routes {
            if let Err(e) = self.netif.remove_route(route).await {
                error!(instance = %spec.name, "cannot remove virtual route: {e}");
            }
        }
        for rule in &spec.rules {
            if let Err(e) = self.netif.remove_rule(rule).await {
                error!(instance = %spec.name, "cannot remove virtual rule: {e}");
            }
        }
    }

    /// Adds one held address of instance `i` where its placement says, and
    /// notes where it went.
    async fn add_address(&mut self, i: usize, address: IpAddr) {
        let spec = &self.instances[i].spec;
        let placement = spec.addresses.iter().find(|p| p.address == address);
        let prefix_len =
            placement.map_or(if address.is_ipv4() { 32 } else { 128 }, |p| p.prefix_len);
        let options = placement.map(|p| p.options.clone()).unwrap_or_default();
        let device = placement
            .and_then(|p| p.device.clone())
            .filter(|device| *device != self.info.name);
        let index = match device {
            None => self.info.index,
            Some(name) => match self.other_device(&name).await {
                Ok(index) => index,
                Err(e) => {
                    let spec = &self.instances[i].spec;
                    error!(instance = %spec.name, %address, device = %name, "cannot add virtual address: {e}");
                    return;
                }
            },
        };
        let instance = &mut self.instances[i];
        let spec = &instance.spec;
        let added = tokio::time::timeout(
            ADDRESS_ANSWER_LIMIT,
            self.netif.add_address(index, address, prefix_len, &options),
        )
        .await;
        let added = added.unwrap_or_else(|_| {
            error!(
                instance = %spec.name,
                %address,
                "adding a virtual address: no answer from the kernel within {ADDRESS_ANSWER_LIMIT:?}; going on as if added"
            );
            Ok(true)
        });
        match added {
            Ok(true) => {
                instance.added_on.insert(address, index);
            }
            Ok(false) => {
                // Not ours (the address owner's own address,
                // or the operator's): never removed by us.
                info!(instance = %spec.name, %address, "virtual address already on the interface: it stays there when this instance leaves MASTER");
                instance.router.address_was_present(address);
            }
            Err(e) => {
                error!(instance = %spec.name, "cannot add virtual address: {e}")
            }
        }
    }

    /// Looks `name` up (again: its MAC or index may have changed) and keeps
    /// a socket to announce on it; returns its index.
    async fn other_device(&mut self, name: &str) -> Result<u32, String> {
        let info = self
            .netif
            .interface(name)
            .await
            .map_err(|e| e.to_string())?;
        let index = info.index;
        match self.other_devices.get_mut(name) {
            Some(device) if device.info.index == index => device.info = info,
            _ => {
                let frames = FrameSocket::open(index)
                    .map_err(|e| format!("cannot open a packet socket on {name}: {e}"))?;
                self.other_devices
                    .insert(name.to_owned(), OtherDevice { info, frames });
            }
        }
        Ok(index)
    }

    /// The interface an address is announced on: its `dev`, or the link's.
    fn announcing_device(&self, i: usize, address: IpAddr) -> (&InterfaceInfo, &FrameSocket) {
        let device = self.instances[i]
            .spec
            .addresses
            .iter()
            .find(|p| p.address == address)
            .and_then(|p| p.device.as_ref())
            .and_then(|name| self.other_devices.get(name));
        match device {
            Some(device) => (&device.info, &device.frames),
            None => (&self.info, &self.frames),
        }
    }

    /// One gratuitous ARP / unsolicited NA per address (RFC 5798 §6.4.2), out of
    /// the interface the address is on.
    fn announce(&self, i: usize, addresses: &[IpAddr]) {
        let spec = &self.instances[i].spec;
        for address in addresses {
            let (info, frames) = self.announcing_device(i, *address);
            let frame = match address {
                IpAddr::V4(v4) => {
                    let arp = GratuitousArp {
                        sender_mac: info.mac,
                        address: *v4,
                    };
                    let mut frame = vec![0; arp.frame_len()];
                    arp.emit(&mut frame);
                    frame
                }
                IpAddr::V6(v6) => match info.ipv6_link_local() {
                    Some(link_local) => {
                        let na = UnsolicitedNa {
                            src_mac: info.mac,
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
            if let Err(e) = frames.send(&frame) {
                warn!(instance = %spec.name, %address, "sending an announcement failed: {e}");
            } else {
                debug!(instance = %spec.name, %address, "announced");
            }
        }
    }
}

/// What the test-only fault hook does to a link's loop.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Panic,
    Stall,
}

/// A test-only fault hook: `HALDIR_TEST_FAULT=link_panic:IFNAME:MS` makes the task of the
/// link on IFNAME panic MS milliseconds after it starts, `link_stall:IFNAME:MS` makes it
/// wait for ever then (tests/supervision.rs proves with them that a failed link stops the daemon
/// cleanly and that a stalled one stops the watchdog's pings). Unset, as in any real run,
/// it does nothing.
fn injected_fault(interface: &str) -> Option<(Instant, Fault)> {
    let spec = std::env::var("HALDIR_TEST_FAULT").ok()?;
    let mut parts = spec.splitn(3, ':');
    let (Some(kind), Some(name), Some(millis)) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let fault = match kind {
        "link_panic" => Fault::Panic,
        "link_stall" => Fault::Stall,
        _ => return None,
    };
    let millis: u64 = millis.parse().ok()?;
    (name == interface).then(|| (Instant::now() + Duration::from_millis(millis), fault))
}
