//! The VRRP router of one virtual router (one `vrrp_instance`), without I/O.
//!
//! This is the state machine of RFC 5798 §6 (and RFC 3768 §6 for version 2):
//! Initialize, Backup, Master, plus Fault for a tracked interface that is down.
//! It owns no socket, no task and no clock. The driver feeds it the time and its
//! inputs (`startup`, `handle_advert`, `handle_timeout`, `shutdown`, `set_priority`,
//! `set_fault`) and drains its outputs with `poll_action` (send an advert, add or
//! remove the virtual addresses, send one round of gratuitous ARP / unsolicited NA,
//! a state change) and `poll_timeout` (the next deadline). Its timers are data: a
//! small table of deadlines, never spawned tasks.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::auth::{AuthFailure, Verdict};
use crate::wire::vrrp::{AdvertRepr, Auth, Version};

/// The RFC 5798 §6.4 states, plus Fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started, or shut down.
    Initialize,
    /// Monitoring the master; takes over when Master_Down_Timer fires.
    Backup,
    /// Owns the virtual addresses and sends adverts.
    Master,
    /// A tracked interface is down: neither advertising nor taking over.
    Fault,
}

impl State {
    /// keepalived's spelling, used in logs, notify arguments and status.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transition happened; carried in logs and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionReason {
    /// Startup with priority 255 (RFC 5798 §6.4.1).
    AddressOwner,
    /// Startup with priority below 255 (RFC 5798 §6.4.1).
    Startup,
    /// Master_Down_Timer fired: no advert from a master for Master_Down_Interval.
    MasterDown,
    /// A master resigned with a priority-0 advert and Skew_Time passed.
    MasterResigned,
    /// A higher-priority (or equal priority, higher address) advert was received.
    HigherPriorityAdvert,
    /// The router was shut down (or the instance removed).
    Shutdown,
    /// A tracked interface went down.
    FaultRaised,
    /// The tracked interfaces are all up again.
    FaultCleared,
    /// Another member of the sync group changed state (keepalived's `vrrp_sync_group`).
    SyncGroup,
    /// The operator handed mastership over to a backup (`haldir handover`).
    HandOver,
}

impl TransitionReason {
    /// A short human-readable description.
    pub fn as_str(self) -> &'static str {
        match self {
            TransitionReason::AddressOwner => "address owner (priority 255) at startup",
            TransitionReason::Startup => "startup",
            TransitionReason::MasterDown => "no advert from the master for Master_Down_Interval",
            TransitionReason::MasterResigned => "master resigned (priority 0), Skew_Time passed",
            TransitionReason::HigherPriorityAdvert => "advert with a higher priority received",
            TransitionReason::Shutdown => "shutdown",
            TransitionReason::FaultRaised => "tracked interface down",
            TransitionReason::FaultCleared => "tracked interfaces up again",
            TransitionReason::SyncGroup => "another member of its sync group moved",
            TransitionReason::HandOver => "handed over to a backup on request (haldir handover)",
        }
    }
}

/// Why a received advert was dropped; each reason is a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// RFC 5798 §7.1: the TTL / hop limit is not 255.
    BadTtl,
    /// The advert's version is not the one configured.
    VersionMismatch,
    /// The advert is for another virtual router.
    VridMismatch,
    /// RFC 3768 §7.1: the authentication type or data differ from ours.
    AuthMismatch,
    /// RFC 3768 §7.1: version 2 adverts must carry our advertisement interval.
    IntervalMismatch,
    /// The advert was sent from our own primary address (looped back).
    OwnAdvert,
    /// The advert carries a zero advertisement interval (RFC 5798 §5.2.7 forbids it).
    ZeroInterval,
    /// `auth_hmac` in enforce mode: the advert failed authentication
    /// ([`crate::auth`]), or it carries a trailer we were not configured for.
    Auth(AuthFailure),
    /// We are the address owner (priority 255) and another router claims to be
    /// one too: a misconfiguration (RFC 5798 §5.2.4: 255 is for the router
    /// that owns the addresses). The owner keeps its addresses and its state.
    OwnerConflict,
    /// The advert lists no virtual address: RFC 5798 §5.2.5 sets the minimum
    /// "Count IPvX Addr" to 1 (RFC 3768 §5.3.5 likewise for version 2).
    NoAddresses,
}

impl DropReason {
    /// Stable snake_case name, used as a counter label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::BadTtl => "bad_ttl",
            DropReason::VersionMismatch => "version_mismatch",
            DropReason::VridMismatch => "vrid_mismatch",
            DropReason::AuthMismatch => "auth_mismatch",
            DropReason::IntervalMismatch => "interval_mismatch",
            DropReason::OwnAdvert => "own_advert",
            DropReason::ZeroInterval => "zero_interval",
            DropReason::Auth(failure) => failure.as_str(),
            DropReason::OwnerConflict => "owner_conflict",
            DropReason::NoAddresses => "no_addresses",
        }
    }
}

/// How the new master announces its virtual addresses (keepalived's `garp_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GarpConfig {
    /// Packets per burst (`garp_master_repeat`); at least 1.
    pub repeat: u32,
    /// Spacing between the packets of one burst (`garp_interval`).
    pub interval: Duration,
    /// Delay of the second burst after becoming master (`garp_master_delay`); zero: none.
    pub master_delay: Duration,
    /// Period of refresh bursts while master (`garp_master_refresh`); `None`: off.
    pub refresh: Option<Duration>,
    /// Packets per refresh burst (`garp_master_refresh_repeat`); at least 1.
    pub refresh_repeat: u32,
}

impl Default for GarpConfig {
    /// keepalived's defaults: 5 packets, back to back, a second burst after 5 s, no
    /// refresh (and 1 packet per refresh when it is set).
    fn default() -> Self {
        GarpConfig {
            repeat: 5,
            interval: Duration::ZERO,
            master_delay: Duration::from_secs(5),
            refresh: None,
            refresh_repeat: 1,
        }
    }
}

/// The configuration of one virtual router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterConfig {
    /// Protocol version: 2 (RFC 3768) or 3 (RFC 5798).
    pub version: Version,
    /// Virtual router identifier, 1..=255.
    pub vrid: u8,
    /// Priority, 1..=255; 255 means we own the addresses.
    pub priority: u8,
    /// Advertisement_Interval in centiseconds (v2: a multiple of 100).
    pub advert_interval_centis: u16,
    /// Preempt_Mode: a higher-priority backup takes over from a lower-priority master.
    pub preempt: bool,
    /// keepalived's `preempt_delay`: no preemption until this long after startup.
    pub preempt_delay: Duration,
    /// Our primary address on the link: source of adverts, and the tie-breaker.
    pub primary_address: IpAddr,
    /// The virtual addresses carried in adverts.
    pub virtual_addresses: Vec<IpAddr>,
    /// keepalived's excluded addresses: held, announced and released with the
    /// virtual addresses, but not carried in adverts (so their family is free).
    pub excluded_addresses: Vec<IpAddr>,
    /// Version 2 authentication (none or simple text).
    pub auth: Auth,
    /// Announcement schedule.
    pub garp: GarpConfig,
}

impl RouterConfig {
    /// Every address the master holds: the virtual ones, then the excluded ones.
    pub fn held_addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.virtual_addresses
            .iter()
            .chain(&self.excluded_addresses)
            .copied()
    }

    /// Whether the master holds `address`.
    pub fn holds(&self, address: &IpAddr) -> bool {
        self.virtual_addresses.contains(address) || self.excluded_addresses.contains(address)
    }
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this advert (to the multicast group or the unicast peers).
    SendAdvert(AdvertRepr),
    /// Add these virtual addresses to the interface.
    AddVirtualAddresses(Vec<IpAddr>),
    /// Remove these virtual addresses from the interface.
    RemoveVirtualAddresses(Vec<IpAddr>),
    /// Send one gratuitous ARP / unsolicited NA for each of these addresses.
    Announce(Vec<IpAddr>),
    /// The state changed.
    StateChanged {
        /// Previous state.
        from: State,
        /// New state.
        to: State,
        /// Why.
        reason: TransitionReason,
    },
}

/// Counters of one router, for logs, status and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Adverts emitted.
    pub adverts_sent: u64,
    /// Valid adverts accepted for processing.
    pub adverts_received: u64,
    /// Priority-0 adverts emitted.
    pub priority_zero_sent: u64,
    /// Priority-0 adverts received.
    pub priority_zero_received: u64,
    /// Adverts dropped, by reason.
    pub drops: BTreeMap<DropReason, u64>,
    /// Announcement rounds emitted (each covers every virtual address).
    pub announcements: u64,
    /// Transitions into Master.
    pub became_master: u64,
    /// State transitions of any kind.
    pub transitions: u64,
    /// Adverts whose address list differs from ours (accepted; RFC 5798 §7.1 says MAY log).
    pub address_list_mismatch: u64,
    /// Adverts whose authentication trailer verified (`auth_hmac`).
    pub adverts_authenticated: u64,
    /// Adverts that failed authentication and were accepted anyway
    /// (`auth_hmac` in permissive or receive-only mode), by reason.
    pub auth_accepted: BTreeMap<AuthFailure, u64>,
}

/// How many sources of lower-priority adverts a master remembers answering
/// within the last advert interval. A flood from more (spoofed) sources than
/// this gets no answer at all until the oldest entries age out, so the
/// master's answers stay bounded by this many per interval.
pub const ANSWER_SOURCES_MAX: usize = 16;

/// The deadlines the router keeps.
#[derive(Debug, Clone, Copy, Default)]
struct Timers {
    /// RFC 5798 Adver_Timer (Master only).
    advert: Option<Instant>,
    /// RFC 5798 Master_Down_Timer (Backup only).
    master_down: Option<Instant>,
    /// Next packet of the current announcement burst.
    announce_next: Option<Instant>,
    /// Second burst after becoming master (`garp_master_delay`).
    announce_second_burst: Option<Instant>,
    /// Next refresh burst (`garp_master_refresh`).
    announce_refresh: Option<Instant>,
}

/// One VRRP virtual router, sans I/O.
#[derive(Debug)]
pub struct Router {
    config: RouterConfig,
    state: State,
    /// Current priority (the configured one, changed by tracking).
    priority: u8,
    /// RFC 5798 Master_Adver_Interval, in microseconds (learned from the master in v3).
    master_advert_interval_micros: u64,
    timers: Timers,
    /// Packets still to send in the current announcement burst.
    announce_remaining: u32,
    /// Preemption is allowed from this instant on (`preempt_delay`).
    preempt_allowed_at: Option<Instant>,
    /// Preemption suspended from outside (the bulk resync of the connection
    /// table is not done yet): Preempt_Mode reads as False meanwhile.
    preemption_held: bool,
    /// Mastership handed over on request ([`Router::hand_over`]): Preempt_Mode
    /// reads as False until [`Router::cancel_handover`].
    handed_over: bool,
    /// Whether a tracked interface is down.
    fault: bool,
    /// The Master_Down_Timer runs because the master sent priority 0.
    master_resigned: bool,
    /// The primary address of the current master, as last seen.
    master_address: Option<IpAddr>,
    /// Make-before-break leaving ([`Router::begin_leaving`]): the instant the
    /// kept addresses go at the latest if no new master's advert arrives first.
    leaving_deadline: Option<Instant>,
    /// The virtual addresses this router added to the interface and has not
    /// removed since: the only ones it ever removes. An address the driver
    /// found already there ([`Router::address_was_present`]) is not in it.
    added: BTreeSet<IpAddr>,
    /// When the current state was entered.
    state_since: Option<Instant>,
    last_reason: Option<TransitionReason>,
    actions: VecDeque<Action>,
    stats: RouterStats,
    /// As master: when each source of a lower-priority advert was last
    /// answered (advert + announcement), for the once-per-interval limit.
    answered: BTreeMap<IpAddr, Instant>,
}

impl Router {
    /// A router in Initialize; nothing happens until [`Router::startup`].
    pub fn new(config: RouterConfig) -> Router {
        let priority = config.priority;
        let master_advert_interval_micros = u64::from(config.advert_interval_centis) * 10_000;
        Router {
            config,
            state: State::Initialize,
            priority,
            master_advert_interval_micros,
            timers: Timers::default(),
            announce_remaining: 0,
            preempt_allowed_at: None,
            preemption_held: false,
            handed_over: false,
            fault: false,
            master_resigned: false,
            master_address: None,
            leaving_deadline: None,
            added: BTreeSet::new(),
            state_since: None,
            last_reason: None,
            actions: VecDeque::new(),
            stats: RouterStats::default(),
            answered: BTreeMap::new(),
        }
    }

    /// The configuration this router runs.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The current priority.
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// The primary address of the master as last seen (ours when we are master).
    pub fn master_address(&self) -> Option<IpAddr> {
        self.master_address
    }

    /// When the current state was entered, and why.
    pub fn state_since(&self) -> Option<(Instant, TransitionReason)> {
        self.state_since.zip(self.last_reason)
    }

    /// The counters.
    pub fn stats(&self) -> &RouterStats {
        &self.stats
    }

    /// RFC 5798 §6.1 Skew_Time; RFC 3768 §6.1 for version 2.
    pub fn skew_time(&self) -> Duration {
        let headroom = 256 - u64::from(self.priority);
        match self.config.version {
            // RFC 3768 §6.1: Skew_Time = (256 - Priority) / 256 seconds.
            Version::V2 => Duration::from_micros(headroom * 1_000_000 / 256),
            // RFC 5798 §6.1: Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256.
            Version::V3 => {
                Duration::from_micros(headroom * self.master_advert_interval_micros / 256)
            }
        }
    }

    /// RFC 5798 §6.1 Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        Duration::from_micros(3 * self.master_advert_interval_micros) + self.skew_time()
    }

    fn advert_interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.config.advert_interval_centis) * 10)
    }

    /// The next instant [`Router::handle_timeout`] must be called at.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = &self.timers;
        [
            t.advert,
            t.master_down,
            t.announce_next,
            t.announce_second_burst,
            t.announce_refresh,
            self.leaving_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// RFC 5798 §6.4.1: leave Initialize.
    pub fn startup(&mut self, now: Instant) {
        if self.state != State::Initialize {
            return;
        }
        if !self.config.preempt_delay.is_zero() {
            self.preempt_allowed_at = Some(now + self.config.preempt_delay);
        }
        if self.fault {
            self.enter_fault(now);
        } else {
            self.enter_from_initialize(now, TransitionReason::Startup);
        }
    }

    fn enter_from_initialize(&mut self, now: Instant, reason: TransitionReason) {
        if self.priority == 255 {
            // RFC 5798 §6.4.1: the address owner becomes Master at once.
            self.become_master(now, TransitionReason::AddressOwner);
        } else {
            self.become_backup(now, reason);
        }
    }

    /// RFC 5798 §6.4.2 / §6.4.3 leave Backup or Master on Shutdown: the master sends
    /// an advert with priority 0 and releases the addresses; we return to Initialize.
    pub fn shutdown(&mut self, now: Instant) {
        match self.state {
            State::Initialize => {
                // A shutdown while leaving make-before-break cuts it short.
                self.finish_leaving();
                return;
            }
            State::Master => self.resign(),
            // A handover's kept addresses go too (the instance is going away).
            State::Backup | State::Fault => self.finish_leaving(),
        }
        self.timers = Timers::default();
        self.announce_remaining = 0;
        self.transition(now, State::Initialize, TransitionReason::Shutdown);
    }

    /// Make-before-break leaving, for a planned stop or handover. As master:
    /// the priority-0 advert of RFC 5798 §6.4.3 / RFC 3768 §6.4.3 ("If a
    /// Shutdown event is received ... Send an ADVERTISEMENT with Priority =
    /// 0") goes out at once and the router returns to Initialize, but the
    /// virtual addresses stay on the interface so the kernel keeps
    /// forwarding until a backup has taken over (after its Skew_Time). They go
    /// on the first advert with a priority above 0 from another router for
    /// this VRID (the new master's: from then on only it answers ARP), or
    /// after Master_Down_Interval if none comes. Any other state: as
    /// [`Router::shutdown`]. [`Router::is_leaving`] says when it is done.
    pub fn begin_leaving(&mut self, now: Instant) {
        if self.state == State::Backup && self.leaving_deadline.is_some() {
            // Stopped in the middle of a handover: the leave goes on as it was.
            self.timers = Timers::default();
            self.transition(now, State::Initialize, TransitionReason::Shutdown);
            return;
        }
        if self.state != State::Master {
            self.shutdown(now);
            return;
        }
        self.push_advert(0);
        self.timers = Timers::default();
        self.announce_remaining = 0;
        self.leaving_deadline = Some(now + self.master_down_interval());
        self.transition(now, State::Initialize, TransitionReason::Shutdown);
    }

    /// A planned handover without stopping (`haldir handover`), make-before-break
    /// like [`Router::begin_leaving`]. A master sends the priority-0 advert of
    /// RFC 5798 §6.4.3 (a backup takes over after its Skew_Time, §6.4.2) and
    /// becomes Backup at once, but keeps its virtual addresses until the new
    /// master's first advert, or Master_Down_Interval if none comes. Until
    /// [`Router::cancel_handover`] it does not preempt a live master, as if
    /// Preempt_Mode were False; it still takes over when the master's adverts
    /// stop. So a handover that no backup takes returns to Master after
    /// Master_Down_Interval, and the addresses never leave the interface.
    ///
    /// In any other state only the hold is taken. The address owner (priority
    /// 255) is master by definition (RFC 5798 §6.4.1) and refuses: false.
    pub fn hand_over(&mut self, now: Instant) -> bool {
        if self.priority == 255 {
            return false;
        }
        self.handed_over = true;
        if self.state == State::Master {
            self.push_advert(0);
            self.leaving_deadline = Some(now + self.master_down_interval());
            self.master_address = None;
            self.become_backup(now, TransitionReason::HandOver);
        }
        true
    }

    /// Ends a handover's hold ([`Router::hand_over`]): a backup of higher
    /// priority preempts the live master again, when its next advert arrives.
    pub fn cancel_handover(&mut self) {
        self.handed_over = false;
    }

    /// Whether mastership is handed over ([`Router::hand_over`]).
    pub fn handed_over(&self) -> bool {
        self.handed_over
    }

    /// Whether a make-before-break leave still holds the virtual addresses.
    pub fn is_leaving(&self) -> bool {
        self.leaving_deadline.is_some()
    }

    /// Ends a make-before-break leave: the kept addresses go.
    fn finish_leaving(&mut self) {
        if self.leaving_deadline.take().is_some() {
            self.remove_addresses();
        }
    }

    /// Master leaves: a priority-0 advert (RFC 5798 §6.4.3) and the addresses go.
    fn resign(&mut self) {
        self.push_advert(0);
        self.remove_addresses();
    }

    /// Releases the virtual addresses this router added, and only those: an
    /// address that was on the interface before (the address owner's own,
    /// RFC 5798 §1 "IPvX Address Owner") belongs to whoever put it there.
    fn remove_addresses(&mut self) {
        let held: Vec<IpAddr> = self.config.held_addresses().collect();
        let ours: Vec<IpAddr> = held.into_iter().filter(|a| self.added.remove(a)).collect();
        if !ours.is_empty() {
            self.actions.push_back(Action::RemoveVirtualAddresses(ours));
        }
    }

    /// Asks the driver to add `addresses`; they count as ours until the driver
    /// says one was there already ([`Router::address_was_present`]).
    fn add_addresses(&mut self, addresses: Vec<IpAddr>) {
        self.added.extend(addresses.iter().copied());
        self.actions
            .push_back(Action::AddVirtualAddresses(addresses));
    }

    /// The driver, carrying out [`Action::AddVirtualAddresses`], found
    /// `address` already on the interface: this router did not add it, so it
    /// never removes it (on resign, shutdown, stepping down or a reload).
    pub fn address_was_present(&mut self, address: IpAddr) {
        self.added.remove(&address);
    }

    /// The virtual addresses this router added and would release on leaving Master.
    pub fn added_addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.added.iter().copied()
    }

    /// A tracked interface changed: `true` = some tracked interface is down.
    pub fn set_fault(&mut self, now: Instant, fault: bool) {
        if self.fault == fault {
            return;
        }
        self.fault = fault;
        match (self.state, fault) {
            (State::Initialize, _) => {}
            (State::Fault, false) => {
                self.enter_from_initialize(now, TransitionReason::FaultCleared)
            }
            (_, true) => self.enter_fault(now),
            (_, false) => {}
        }
    }

    fn enter_fault(&mut self, now: Instant) {
        if self.state == State::Master {
            // Let the backup take over after Skew_Time rather than Master_Down_Interval.
            self.resign();
        }
        // A handover's kept addresses go at once: a faulty router must not hold them.
        self.finish_leaving();
        self.timers = Timers::default();
        self.announce_remaining = 0;
        self.master_address = None;
        self.transition(now, State::Fault, TransitionReason::FaultRaised);
    }

    /// Sync group: another member became master, so this backup does too
    /// (keepalived's `vrrp_sync_group`: the members move together).
    pub fn force_master(&mut self, now: Instant) {
        if self.state == State::Backup {
            self.become_master(now, TransitionReason::SyncGroup);
        }
    }

    /// Sync group: another member stepped down to backup, so this master does
    /// too. It keeps listening and takes over again when the group does.
    pub fn force_backup(&mut self, now: Instant) {
        if self.state == State::Master {
            self.remove_addresses();
            self.become_backup(now, TransitionReason::SyncGroup);
        }
    }

    /// Suspends (`true`) or resumes preemption: while held, this router does
    /// not take over from a live master of lower priority, as if Preempt_Mode
    /// were False (RFC 5798 §6.4.2), yet it still takes over when the master's
    /// adverts stop or it resigns. It keeps its priority, so a held backup
    /// takes over a dead master exactly as fast as an unheld one. Once lifted,
    /// the next advert of a lower-priority master is discarded and the backup
    /// preempts when its Master_Down_Timer fires.
    pub fn hold_preemption(&mut self, held: bool) {
        self.preemption_held = held;
    }

    /// Whether preemption is held ([`Router::hold_preemption`]).
    pub fn preemption_held(&self) -> bool {
        self.preemption_held
    }

    /// Tracking changed our priority (1..=254; the address owner keeps 255).
    pub fn set_priority(&mut self, now: Instant, priority: u8) {
        let priority = priority.clamp(1, 255);
        if priority == self.priority {
            return;
        }
        self.priority = priority;
        match self.state {
            // The new priority goes out at once so a better backup can preempt.
            State::Master => self.send_advert_now(now),
            // Skew_Time depends on the priority; the running timer keeps its deadline.
            State::Backup | State::Initialize | State::Fault => {}
        }
    }

    /// Applies a reloaded configuration in place, keeping the state, the timers
    /// and the counters: a reload must not cause a transition or a gap in the
    /// adverts. Changes that alter the router's identity (VRID, version, primary
    /// address) are not in-place changes; the driver replaces the router instead.
    ///
    /// As master: removed addresses are released, added ones are added and
    /// announced, and a changed advert goes out at once so the backups learn
    /// the new priority, interval and address list.
    pub fn reconfigure(&mut self, now: Instant, config: RouterConfig) {
        debug_assert_eq!(
            (config.vrid, config.version, config.primary_address),
            (
                self.config.vrid,
                self.config.version,
                self.config.primary_address
            ),
            "identity changes need a new router"
        );
        let old = std::mem::replace(&mut self.config, config);
        let removed: Vec<IpAddr> = old
            .held_addresses()
            .filter(|a| !self.config.holds(a))
            .collect();
        let added: Vec<IpAddr> = self
            .config
            .held_addresses()
            .filter(|a| !old.holds(a))
            .collect();
        if old.priority != self.config.priority {
            self.priority = self.config.priority;
        }
        // Only what we added goes (see `remove_addresses`); as master, or as a
        // backup still holding them after a handover.
        let removed: Vec<IpAddr> = removed
            .into_iter()
            .filter(|a| self.added.remove(a))
            .collect();
        if !removed.is_empty() {
            self.actions
                .push_back(Action::RemoveVirtualAddresses(removed));
        }
        if self.state != State::Master {
            return;
        }
        if !added.is_empty() {
            self.add_addresses(added.clone());
            self.stats.announcements += 1;
            self.actions.push_back(Action::Announce(added));
        }
        let advert_changed = old.priority != self.config.priority
            || old.advert_interval_centis != self.config.advert_interval_centis
            || old.virtual_addresses != self.config.virtual_addresses
            || old.auth != self.config.auth;
        if advert_changed {
            self.send_advert_now(now);
        }
    }

    /// Counts the authentication verdict on an advert about to be handed to
    /// [`Router::handle_advert`] (see [`crate::auth`]); false when it must be
    /// dropped instead (counted as a drop, like the RFC 5798 §7.1 checks).
    pub fn record_auth(&mut self, verdict: Verdict) -> bool {
        match verdict {
            Verdict::Authenticated => self.stats.adverts_authenticated += 1,
            Verdict::Accepted(failure) => {
                *self.stats.auth_accepted.entry(failure).or_default() += 1
            }
            Verdict::Dropped(failure) => {
                *self
                    .stats
                    .drops
                    .entry(DropReason::Auth(failure))
                    .or_default() += 1;
                return false;
            }
        }
        true
    }

    /// A decoded advert arrived from `source` with IP TTL / hop limit `ttl`.
    ///
    /// Returns the reason when the advert is dropped (it is also counted).
    pub fn handle_advert(
        &mut self,
        now: Instant,
        source: IpAddr,
        ttl: u8,
        advert: &AdvertRepr,
    ) -> Result<(), DropReason> {
        let owner_conflict = self.priority == 255 && advert.priority == 255;
        if let Err(reason) = self.validate(source, ttl, advert).and(if owner_conflict {
            // RFC 5798 §5.2.4: priority 255 is the address owner's alone.
            // Two owners is a misconfiguration; stepping down (§6.4.3's
            // tie-break on the address) would hand our own address's
            // traffic to another router, so the owner ignores the other.
            Err(DropReason::OwnerConflict)
        } else {
            Ok(())
        }) {
            *self.stats.drops.entry(reason).or_default() += 1;
            return Err(reason);
        }
        self.stats.adverts_received += 1;
        if advert.priority == 0 {
            self.stats.priority_zero_received += 1;
        }
        if !same_addresses(&advert.addresses, &self.config.virtual_addresses) {
            // RFC 5798 §7.1: MAY log; keepalived logs and carries on too.
            self.stats.address_list_mismatch += 1;
        }
        if advert.priority > 0 && self.leaving_deadline.is_some() {
            // The new master is up: release at once so that only it answers ARP.
            self.finish_leaving();
        }
        match self.state {
            State::Backup => self.backup_receives(now, source, advert),
            State::Master => self.master_receives(now, source, advert),
            State::Initialize | State::Fault => {}
        }
        Ok(())
    }

    /// RFC 5798 §7.1 (and RFC 3768 §7.1) receive checks that need our configuration.
    /// The checks of the packet alone (checksum, length, type) happen in the decoder.
    fn validate(&self, source: IpAddr, ttl: u8, advert: &AdvertRepr) -> Result<(), DropReason> {
        // RFC 5798 §7.1: the TTL / hop limit MUST be 255.
        if ttl != 255 {
            return Err(DropReason::BadTtl);
        }
        if advert.version != self.config.version {
            return Err(DropReason::VersionMismatch);
        }
        if advert.vrid != self.config.vrid {
            return Err(DropReason::VridMismatch);
        }
        if source == self.config.primary_address {
            return Err(DropReason::OwnAdvert);
        }
        if advert.advert_interval_centis == 0 {
            return Err(DropReason::ZeroInterval);
        }
        if advert.addresses.is_empty() {
            // RFC 5798 §5.2.5: Count IPvX Addr is at least 1.
            return Err(DropReason::NoAddresses);
        }
        if advert.version == Version::V2 {
            // RFC 3768 §7.1: the authentication type and data must match ours...
            if advert.auth != self.config.auth {
                return Err(DropReason::AuthMismatch);
            }
            // ...and so must the advertisement interval.
            if advert.advert_interval_centis != self.config.advert_interval_centis {
                return Err(DropReason::IntervalMismatch);
            }
        }
        Ok(())
    }

    /// RFC 5798 §6.4.2, an ADVERTISEMENT received in Backup.
    fn backup_receives(&mut self, now: Instant, source: IpAddr, advert: &AdvertRepr) {
        if advert.priority == 0 {
            // The master resigned: take over after Skew_Time.
            self.timers.master_down = Some(now + self.skew_time());
            self.master_resigned = true;
            return;
        }
        let preempt_now = self.config.preempt
            && !self.preemption_held
            && !self.handed_over
            && self.preempt_allowed_at.is_none_or(|allowed| now >= allowed);
        if !preempt_now || advert.priority >= self.priority {
            if self.config.version == Version::V3 {
                // RFC 5798 §6.4.2: learn the master's interval, recompute the timers.
                self.master_advert_interval_micros =
                    u64::from(advert.advert_interval_centis) * 10_000;
            }
            self.master_address = Some(source);
            self.master_resigned = false;
            self.timers.master_down = Some(now + self.master_down_interval());
        }
        // Otherwise (preempting, advert of lower priority): discard; our
        // Master_Down_Timer runs out and we take over.
    }

    /// RFC 5798 §6.4.3, an ADVERTISEMENT received in Master.
    fn master_receives(&mut self, now: Instant, source: IpAddr, advert: &AdvertRepr) {
        if advert.priority == 0 {
            // Another router resigned: assert ourselves at once (once per
            // interval per source, see `may_answer`).
            if self.may_answer(now, source) {
                self.send_advert_now(now);
            }
            return;
        }
        let higher = advert.priority > self.priority
            || (advert.priority == self.priority
                && address_key(source) > address_key(self.config.primary_address));
        if higher {
            // One last advert of ours before stepping down (keepalived's
            // `vrrp_higher_prio_send_advert`; keepalived #166): after a split brain
            // the winner may never have heard us, yet our announcements moved the
            // segment's ARP caches to our MAC. This advert makes it answer with its
            // own round of announcements (the `else` branch below, on its side).
            self.send_advert_now(now);
            self.remove_addresses();
            if self.config.version == Version::V3 {
                self.master_advert_interval_micros =
                    u64::from(advert.advert_interval_centis) * 10_000;
            }
            self.master_address = Some(source);
            self.become_backup(now, TransitionReason::HigherPriorityAdvert);
        } else {
            // RFC 5798 §6.4.3 says discard. Like keepalived we also answer at once
            // with our own advert and a round of announcements: the lower router
            // (back from a partition, or a stuck master) yields within one
            // interval, and the segment relearns which MAC holds the addresses.
            // A flood of such adverts must not turn us into an amplifier (one
            // advert plus one frame per address for each packet received): the
            // answer goes out at most once per advert interval per source.
            if self.may_answer(now, source) {
                self.send_advert_now(now);
                self.announce_once();
            }
        }
    }

    /// Whether a master may answer a lower-priority or priority-0 advert from
    /// `source` now; records the answer when it may. One answer per advert
    /// interval per source, and answers to at most [`ANSWER_SOURCES_MAX`]
    /// sources per interval.
    fn may_answer(&mut self, now: Instant, source: IpAddr) -> bool {
        let interval = self.advert_interval();
        self.answered
            .retain(|_, answered_at| now.saturating_duration_since(*answered_at) < interval);
        if self.answered.contains_key(&source) || self.answered.len() >= ANSWER_SOURCES_MAX {
            return false;
        }
        self.answered.insert(source, now);
        true
    }

    /// Call when [`Router::poll_timeout`]'s deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Before the leave's deadline: a handover that no backup took ends in
        // Master again, and the kept addresses must stay, not go and come back.
        if self.timers.master_down.is_some_and(|t| now >= t) {
            self.timers.master_down = None;
            if self.state == State::Backup {
                let reason = if self.master_resigned {
                    TransitionReason::MasterResigned
                } else {
                    TransitionReason::MasterDown
                };
                self.become_master(now, reason);
            }
        }
        if self.leaving_deadline.is_some_and(|t| now >= t) {
            // Master_Down_Interval without a new master: release anyway.
            self.finish_leaving();
        }
        if let Some(due) = self.timers.advert.filter(|&t| now >= t) {
            self.send_advert_now(now);
            // The next advert is due one interval after this one was due, not
            // after we got round to it: a late wake-up must not push every later
            // advert back (RFC 5798 §6.4.3 "Reset the Adver_Timer to
            // Advertisement_Interval"). After a long stall, restart from now.
            let next = due + self.advert_interval();
            if next > now && self.state == State::Master {
                self.timers.advert = Some(next);
            }
        }
        if self.timers.announce_second_burst.is_some_and(|t| now >= t) {
            self.timers.announce_second_burst = None;
            self.start_announce_burst(now);
        }
        if self.timers.announce_refresh.is_some_and(|t| now >= t) {
            self.timers.announce_refresh = self.config.garp.refresh.map(|period| now + period);
            self.announce_remaining = self.config.garp.refresh_repeat.max(1);
            self.announce_step(now);
        }
        if self.timers.announce_next.is_some_and(|t| now >= t) {
            self.announce_step(now);
        }
    }

    fn become_master(&mut self, now: Instant, reason: TransitionReason) {
        // RFC 5798 §6.4.2 "If the Master_Down_Timer fires": send an advert, announce
        // every virtual address, start the Adver_Timer.
        self.timers.master_down = None;
        self.master_resigned = false;
        self.transition(now, State::Master, reason);
        self.stats.became_master += 1;
        self.master_address = Some(self.config.primary_address);
        // The advert goes first: it stops the other backups' timers, and adding
        // the addresses costs the driver a netlink round trip. The announcements
        // follow the addresses, so they never point at an address not yet there.
        self.send_advert_now(now);
        // Back to Master in the middle of a handover's leave: the addresses it
        // kept are still on the interface; only the missing ones are added.
        self.leaving_deadline = None;
        let missing: Vec<IpAddr> = self
            .config
            .held_addresses()
            .filter(|a| !self.added.contains(a))
            .collect();
        if !missing.is_empty() {
            self.add_addresses(missing);
        }
        self.start_announce_burst(now);
        if !self.config.garp.master_delay.is_zero() {
            self.timers.announce_second_burst = Some(now + self.config.garp.master_delay);
        }
        self.timers.announce_refresh = self.config.garp.refresh.map(|period| now + period);
    }

    fn become_backup(&mut self, now: Instant, reason: TransitionReason) {
        // RFC 5798 §6.4.1: Master_Adver_Interval = Advertisement_Interval when we
        // start; a master that steps down keeps the interval it just learned.
        if reason != TransitionReason::HigherPriorityAdvert {
            self.master_advert_interval_micros =
                u64::from(self.config.advert_interval_centis) * 10_000;
        }
        self.timers = Timers {
            master_down: Some(now + self.master_down_interval()),
            ..Timers::default()
        };
        self.announce_remaining = 0;
        self.transition(now, State::Backup, reason);
    }

    fn transition(&mut self, now: Instant, to: State, reason: TransitionReason) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        self.state_since = Some(now);
        self.last_reason = Some(reason);
        self.stats.transitions += 1;
        self.actions
            .push_back(Action::StateChanged { from, to, reason });
    }

    fn send_advert_now(&mut self, now: Instant) {
        if self.state != State::Master {
            return;
        }
        self.push_advert(self.priority);
        self.timers.advert = Some(now + self.advert_interval());
    }

    fn push_advert(&mut self, priority: u8) {
        let advert = AdvertRepr {
            version: self.config.version,
            vrid: self.config.vrid,
            priority,
            advert_interval_centis: self.config.advert_interval_centis,
            auth: match self.config.version {
                Version::V2 => self.config.auth.clone(),
                Version::V3 => Auth::None,
            },
            addresses: self.config.virtual_addresses.clone(),
        };
        self.stats.adverts_sent += 1;
        if priority == 0 {
            self.stats.priority_zero_sent += 1;
        }
        self.actions.push_back(Action::SendAdvert(advert));
    }

    fn start_announce_burst(&mut self, now: Instant) {
        self.announce_remaining = self.config.garp.repeat.max(1);
        self.announce_step(now);
    }

    /// Emits the due packets of the current burst and schedules the next one.
    fn announce_step(&mut self, now: Instant) {
        self.timers.announce_next = None;
        while self.announce_remaining > 0 {
            self.announce_once();
            self.announce_remaining -= 1;
            if self.announce_remaining > 0 && !self.config.garp.interval.is_zero() {
                self.timers.announce_next = Some(now + self.config.garp.interval);
                break;
            }
        }
    }

    fn announce_once(&mut self) {
        if self.state == State::Master {
            self.stats.announcements += 1;
            let addresses = self.config.held_addresses().collect();
            self.actions.push_back(Action::Announce(addresses));
        }
    }
}

/// Compares primary addresses as unsigned integers in network byte order
/// (RFC 5798 §6.4.3 tie-break).
fn address_key(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn same_addresses(a: &[IpAddr], b: &[IpAddr]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}
