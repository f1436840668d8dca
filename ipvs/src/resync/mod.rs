//! Bulk resync of the IPVS connection table, without I/O: a router whose kernel sync daemon
//! becomes **backup** (haldir starts, rejoins, or leaves MASTER) asks the master router's
//! haldir for the WHOLE connection table, and gets it as ordinary sync-protocol messages
//! that its own kernel installs. `docs/bulk_resync.md` has the measurements.
//!
//! This module is the protocol as a machine ([`Resync`]), the shape of
//! `vrrp/src/router.rs`: it owns no socket, no task and no clock. The driver
//! (`src/bulk_resync.rs`) feeds it the time and its inputs (`handle_config`,
//! `handle_listening`, `handle_roles`, `handle_instance`, `handle_packet`,
//! `handle_kernel_drops`, `handle_dump_finished`, `handle_timeout`, `handle_stop`) and
//! carries out its outputs: [`Resync::poll_transmit`] (a request multicast, a DONE
//! unicast), [`Resync::poll_action`] (read the kernel socket's drops, dump the table to a
//! requester at a pace, hold or lift a preemption), [`Resync::poll_event`] (what is worth a
//! log line) and [`Resync::poll_timeout`] (the next deadline). Reading
//! `/proc/net/ip_vs_conn`, netlink and packing the dump are the driver's.
//!
//! # Why
//!
//! The kernel's master sync daemon sends a connection only when its packet
//! count hits `sync_threshold` / `sync_period` or its state changes
//! (`ip_vs_sync_conn_needed`, net/netfilter/ipvs/ip_vs_sync.c). A backup that
//! starts late (a restart, a replaced machine) never learns the connections
//! that stay idle, and learns busy ones only at their next threshold: after a
//! failover they are reset. keepalived has the same gap (its issues #1966,
//! #1076). haldir closes it.
//!
//! # How
//!
//! - **Trigger** (haldir to haldir, UDP, on the sync interface, port = sync
//!   port + 1, same multicast group): whenever the sync role becomes backup,
//!   the backup's haldir multicasts a [`ResyncRequest`] (magic, version,
//!   syncid, nonce, pace) and repeats it every second ([`RETRY`]) until a
//!   [`ResyncDone`] with its nonce arrives, unicast from the haldir whose sync
//!   role is master.
//! - **Dump** (master): the connection table is read from
//!   `/proc/net/ip_vs_conn` (this network namespace's), each entry mapped to a
//!   sync-protocol version 1 record ([`crate::conn_table`]: forwarding
//!   method and firewall mark from the kernel's own IPVS service table, read
//!   over netlink; inactive flag from the state; templates by their shape;
//!   timeout = the seconds the entry has left), packed into messages of at
//!   most `maxlen` bytes (default 1472, as the kernel's master) and sent to
//!   the sync daemon's group and port, then DONE (records, messages,
//!   milliseconds) to the requester. The backup's kernel sync daemon installs
//!   the records exactly as if its kernel peer had sent them (same syncid,
//!   version 1, the checks of `ip_vs_process_message`). The driver reads,
//!   parses and packs off the runtime's thread (which also drives VRRP): the
//!   kernel walks its whole table again for every read of the `/proc` file,
//!   seconds for 10,000 entries under emulation.
//! - **Flow control**: the backup's kernel receive socket drops what it
//!   cannot queue (`sync_sock_size`, default rmem). The backup reads that
//!   socket's drop counter (`/proc/net/udp`, [`kernel_receive_drops`]) before
//!   the request and [`SETTLE`] after DONE; if it grew, it asks again with a
//!   slower pace (the request's pace byte, [`pacing`]), up to [`MAX_PACE`],
//!   and says so in the log.
//! - **Preemption hold**: a backup that could preempt (preempt on, e.g. the
//!   old master restarting with the higher priority) does not preempt from
//!   the moment its instance is BACKUP until its resync is done, or for at
//!   most [`HOLD_LIMIT`] (then it logs loudly and goes on). The hold covers
//!   the instance and every other member of its `vrrp_sync_group` (one
//!   member preempting would take the whole group, the VIP with it; which
//!   instances is director policy, the driver passes their names). It is
//!   the VRRP driver's `HoldPreemption` command: Preempt_Mode reads False
//!   meanwhile (RFC 5798 §6.4.2), priorities and tracking are untouched, so a
//!   takeover because the master died is not held and not slowed; the hold is
//!   lifted as soon as the instance leaves BACKUP.
//! - **Safety**: requests are answered only with the master sync role and a
//!   matching syncid; one dump per requester per [`DUMP_INTERVAL`], one dump
//!   at a time, and after a dump that took T none for [`DUTY`] × T (at least
//!   1 s); a bounded cache of recent answers ([`ANSWER_CACHE`]: a repeated
//!   request gets its DONE again, not a second dump); at most [`REQUESTERS`]
//!   requesters remembered; malformed or unexpected packets are counted by
//!   [`DropReason`] and dropped.
//!
//! # Alternatives rejected
//!
//! - `net.ipv4.vs.sync_refresh_period`: makes the kernel re-send busy
//!   connections periodically, but still only on a packet: idle connections
//!   are never re-sent, and it multiplies steady-state sync traffic.
//! - conntrack (conntrackd): IPVS connections are not conntrack entries
//!   unless `conntrack=1`, and installing conntrack state does not create
//!   IPVS connections on the backup.
//! - making the kernel send its table: no such interface (netlink has no
//!   connection dump); a kernel patch is out of reach for a director that
//!   must run on distribution kernels.
//! - a userspace receiver installing connections: there is no netlink
//!   command to add a connection; the kernel's backup daemon is the only way
//!   in, so haldir speaks its protocol.

pub mod auth;
mod flow;
mod status;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

pub use flow::{kernel_receive_drops, pacing};
pub use status::{PendingStatus, ReceivedStatus, ResyncRole, ResyncStatus, SentStatus};

use haldir_vrrp::auth::{AuthConfig, AuthFailure, Authenticator, Verdict};

use crate::client::DaemonRole;
use crate::sync_wire::{
    ResyncDone, ResyncMessage, ResyncRequest, ResyncWireError, DEFAULT_GROUP_V4, DEFAULT_MAXLEN_V4,
    DEFAULT_MAXLEN_V6, DEFAULT_PORT,
};

/// The least time between two sendings of one cached DONE (a spoofed flood of repeats
/// gets no more).
pub const REPEAT_PAUSE: Duration = Duration::from_millis(500);

/// How often a pending request is repeated.
pub const RETRY: Duration = Duration::from_secs(1);
/// The slowest pace a backup asks for after drops.
pub const MAX_PACE: u8 = 8;
/// The longest a preemption waits for the resync.
pub const HOLD_LIMIT: Duration = Duration::from_secs(5);
/// A requester gets at most one dump in this time (a flapping backup does
/// not make the master read its table over and over).
pub const DUMP_INTERVAL: Duration = Duration::from_secs(5);
/// After a dump that took T, no other dump for max(1 s, DUTY × T): dumps take
/// at most a fifth of the master's time.
pub const DUTY: u32 = 4;
/// The shortest pause after a dump.
pub const MIN_DUMP_PAUSE: Duration = Duration::from_secs(1);
/// Answers kept for repeated requests.
pub const ANSWER_CACHE: usize = 32;
/// Requesters remembered for the rate limit.
pub const REQUESTERS: usize = 256;
/// After DONE, the backup reads its kernel socket's drops this much later: the kernel
/// thread may still be reading its queue.
pub const SETTLE: Duration = Duration::from_millis(50);

/// Where the sync traffic goes, from `lvs_sync_daemon`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// The sync daemons' multicast group.
    pub group: IpAddr,
    /// The sync daemons' port (dumps go there).
    pub sync_port: u16,
    /// haldir's requests go to the group on this port; DONE answers too.
    pub control_port: u16,
    /// Largest sync message.
    pub max_len: usize,
}

impl Addresses {
    /// The addresses a sync daemon configured with `group`, `port` and `max_len` uses (the
    /// kernel's defaults where unset); the control port is the next one (the one below
    /// for port 65535).
    pub fn new(group: Option<IpAddr>, port: Option<u16>, max_len: Option<u16>) -> Self {
        let group = group.unwrap_or(IpAddr::V4(DEFAULT_GROUP_V4));
        let sync_port = port.unwrap_or(DEFAULT_PORT);
        let default_len = if group.is_ipv6() {
            DEFAULT_MAXLEN_V6
        } else {
            DEFAULT_MAXLEN_V4
        };
        Addresses {
            group,
            sync_port,
            control_port: if sync_port == u16::MAX {
                sync_port - 1
            } else {
                sync_port + 1
            },
            max_len: max_len.map_or(default_len, usize::from),
        }
    }
}

/// What the machine needs of `lvs_sync_daemon` (bulk resync on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResyncConfig {
    /// The sync daemons' id: requests of another are not answered.
    pub sync_id: u8,
    /// Where requests, answers and dumps go.
    pub addresses: Addresses,
    /// The followed instance's `auth_hmac`: requests and DONEs are signed and checked with
    /// it ([`auth`]). `None`: unsigned (and a warning at load).
    pub auth: Option<AuthConfig>,
    /// The only sources whose requests are answered (the followed instance's
    /// `unicast_peer`s); empty: any source the other checks pass.
    pub peers: Vec<IpAddr>,
}

/// The TTL (IPv4) or hop limit (IPv6) every resync message is sent with and must arrive
/// with: one that crossed a router is not from the segment (as RFC 5798 §5.1.1.3 and
/// §7.1 rule for adverts).
pub const RESYNC_TTL: u8 = 255;

/// Why a received packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// Not "HLDR".
    BadMagic,
    /// Another version.
    BadVersion,
    /// Neither request nor DONE.
    BadKind,
    /// The wrong length for its kind.
    BadLength,
    /// A DONE with its reserved byte set.
    BadReserved,
    /// A request of another sync id.
    OtherSyncid,
    /// A request while this router's sync role is not master (other backups hear the
    /// multicast request too).
    NotMaster,
    /// A request already answered: its DONE is sent again, no second dump.
    RepeatAnswered,
    /// A request refused by the dump rate limits (the requester asks again).
    RateLimited,
    /// A request from a new requester while [`REQUESTERS`] are remembered.
    TooManyRequesters,
    /// A DONE for the resync already completed.
    DuplicateDone,
    /// A DONE for no pending request, another nonce or another sync id.
    UnexpectedDone,
    /// Arrived with a TTL (hop limit) other than [`RESYNC_TTL`]: routed to us.
    BadTtl,
    /// A request from an address that is not one of the configured peers.
    NotPeer,
    /// A DONE from another address than the master the request was sent to.
    NotAskedMaster,
    /// Failed authentication (the instance's `auth_hmac` in enforce mode).
    Auth(AuthFailure),
}

impl DropReason {
    /// The reason's name in status and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::BadMagic => "bad_magic",
            DropReason::BadVersion => "bad_version",
            DropReason::BadKind => "bad_kind",
            DropReason::BadLength => "bad_length",
            DropReason::BadReserved => "bad_reserved",
            DropReason::OtherSyncid => "other_syncid",
            DropReason::NotMaster => "not_master",
            DropReason::RepeatAnswered => "repeat_answered",
            DropReason::RateLimited => "rate_limited",
            DropReason::TooManyRequesters => "too_many_requesters",
            DropReason::DuplicateDone => "duplicate_done",
            DropReason::UnexpectedDone => "unexpected_done",
            DropReason::BadTtl => "bad_ttl",
            DropReason::NotPeer => "not_peer",
            DropReason::NotAskedMaster => "not_asked_master",
            DropReason::Auth(failure) => failure.as_str(),
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where: the group and control port (a request), or the requester (a DONE).
    pub to: SocketAddr,
    /// What.
    pub message: ResyncMessage,
}

/// The state of the VRRP instance `lvs_sync_daemon` follows, for the preemption hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    /// Not started yet (or stopped).
    Initialize,
    /// Backup: the hold applies.
    Backup,
    /// Master or Fault.
    Other,
}

/// The followed instance as the hold sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowedInstance {
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: InstanceState,
    /// The master it hears, if any.
    pub master: Option<IpAddr>,
    /// The instances a hold would cover (it and its sync-group peers that could preempt;
    /// director policy). Empty: nothing to hold.
    pub hold: Vec<String>,
}

/// What a dump sent, reported by the driver.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DumpReport {
    /// Milliseconds reading and packing the table (the rest of the dump is sending).
    pub read_millis: u64,
    /// Entries of the connection table read.
    pub entries: u32,
    /// Records sent.
    pub records: u32,
    /// Messages sent.
    pub messages: u32,
    /// Entries not sent, by reason.
    pub skipped: BTreeMap<String, u32>,
}

/// Work for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read the kernel sync socket's receive drops and report them with
    /// [`Resync::handle_kernel_drops`].
    ReadKernelDrops,
    /// Dump the connection table to the sync group at `pace` for `to`, then report with
    /// [`Resync::handle_dump_finished`].
    Dump {
        /// The requester.
        to: SocketAddr,
        /// The pace it asked for ([`pacing`]).
        pace: u8,
    },
    /// Hold (or lift) the preemption of these instances.
    HoldPreemption {
        /// The instances.
        instances: Vec<String>,
        /// Hold (`true`) or lift (`false`).
        held: bool,
    },
}

/// How loud an [`Event`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something to look at.
    Warn,
    /// Something is wrong.
    Error,
}

/// Something worth a log line; its `Display` is the line (without "bulk resync: ").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Instances started with their preemption held.
    HeldAtStart {
        /// The instances.
        instances: Vec<String>,
    },
    /// The sync role became backup: a resync starts.
    Asking,
    /// The sync role is no longer backup: the pending request is forgotten.
    Abandoned,
    /// A packet could not be parsed.
    Malformed {
        /// The sender.
        from: SocketAddr,
        /// Why.
        error: ResyncWireError,
    },
    /// A packet failed authentication (counted; logged at debug level only, so a flood
    /// costs no log line).
    AuthFailed {
        /// The sender.
        from: SocketAddr,
        /// Why.
        failure: AuthFailure,
        /// Dropped (enforce), or accepted anyway (permissive, receive-only).
        dropped: bool,
    },
    /// The kernel socket dropped part of a dump: asking again, slower.
    SlowingDown {
        /// The master.
        from: SocketAddr,
        /// Messages dropped.
        dropped: u64,
        /// The new pace.
        pace: u8,
    },
    /// The kernel socket dropped part of a dump at [`MAX_PACE`].
    DroppedAtSlowestPace {
        /// Messages dropped.
        dropped: u64,
    },
    /// A resync completed.
    Received {
        /// The master.
        from: SocketAddr,
        /// Its DONE.
        done: ResyncDone,
        /// Milliseconds from the first request.
        millis: u64,
        /// Requests sent.
        attempts: u32,
    },
    /// A dump failed.
    DumpFailed {
        /// The requester.
        to: SocketAddr,
        /// The driver's error.
        error: String,
    },
    /// A dump was sent.
    Sent {
        /// The requester.
        to: SocketAddr,
        /// Its report.
        report: DumpReport,
        /// Milliseconds of the whole dump.
        millis: u32,
        /// The pace.
        pace: u8,
    },
    /// A preemption hold starts.
    Holding {
        /// The instances.
        instances: Vec<String>,
    },
    /// A hold timed out.
    HoldTimedOut {
        /// The instance followed.
        instance: String,
        /// The master it heard, if any.
        master: Option<IpAddr>,
    },
    /// A hold was lifted.
    HoldLifted {
        /// The instances.
        instances: Vec<String>,
        /// How long it lasted.
        millis: u128,
        /// Why.
        why: &'static str,
    },
}

impl Event {
    /// How loud it is.
    pub fn level(&self) -> Level {
        match self {
            Event::Abandoned | Event::Malformed { .. } | Event::AuthFailed { .. } => Level::Debug,
            Event::SlowingDown { .. } => Level::Warn,
            Event::HoldTimedOut { master: None, .. } => Level::Warn,
            Event::DroppedAtSlowestPace { .. }
            | Event::DumpFailed { .. }
            | Event::HoldTimedOut { .. } => Level::Error,
            _ => Level::Info,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limit = HOLD_LIMIT.as_secs();
        match self {
            Event::HeldAtStart { instances } => write!(
                f,
                "{} start with any preemption held until the connection table is here (at most {limit} s in BACKUP)",
                instances.join(", ")
            ),
            Event::Asking => {
                f.write_str("the sync role is backup: asking the master for its connection table")
            }
            Event::Abandoned => f.write_str("no longer backup; request abandoned"),
            Event::Malformed { from, error } => write!(f, "dropped from {from}: {error}"),
            Event::AuthFailed {
                from,
                failure,
                dropped,
            } => write!(
                f,
                "{} from {from}: {}",
                if *dropped { "dropped" } else { "accepted" },
                failure.as_str()
            ),
            Event::SlowingDown { from, dropped, pace } => write!(
                f,
                "the kernel's sync socket dropped {dropped} messages of the dump from {from}; asking again at pace {pace}"
            ),
            Event::DroppedAtSlowestPace { dropped } => write!(
                f,
                "the kernel's sync socket dropped {dropped} messages even at the slowest pace; raise net.ipv4.vs.sync_sock_size"
            ),
            Event::Received { from, done, millis, attempts } => write!(
                f,
                "received {} connections in {} messages from {from} ({millis} ms from the first request, {attempts} attempts)",
                done.records, done.messages
            ),
            Event::DumpFailed { to, error } => write!(f, "the dump for {to} failed: {error}"),
            Event::Sent { to, report, millis, pace } => write!(
                f,
                "sent {} connections in {} messages to {to} in {millis} ms ({} ms reading the table; pace {pace}; {} entries skipped)",
                report.records,
                report.messages,
                report.read_millis,
                report.skipped.values().sum::<u32>()
            ),
            Event::Holding { instances } => write!(
                f,
                "holding any preemption by {} until the connection table is here (at most {limit} s)",
                instances.join(", ")
            ),
            Event::HoldTimedOut { instance, master: Some(master) } => write!(
                f,
                "the master {master} has not sent its connection table within {limit} s; lifting the preemption hold of {instance}: connections it did not bring will be reset if this router takes over"
            ),
            Event::HoldTimedOut { instance, master: None } => write!(
                f,
                "no connection table within {limit} s; lifting the preemption hold of {instance}"
            ),
            Event::HoldLifted { instances, millis, why } => write!(
                f,
                "preemption hold of {} lifted after {millis} ms: {why}",
                instances.join(", ")
            ),
        }
    }
}

/// Where a pending resync stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the kernel socket's drops before the first request.
    MeasuringBefore,
    /// Requests sent (the last at `last_sent`), waiting for DONE.
    Asking { last_sent: Instant },
    /// DONE arrived; the drops are read at `until`.
    Settling {
        done: ResyncDone,
        from: SocketAddr,
        until: Instant,
    },
    /// DONE arrived; the drops reading is asked for.
    MeasuringAfter { done: ResyncDone, from: SocketAddr },
}

/// A resync this router (backup) waits for.
#[derive(Debug, Clone)]
struct Pending {
    nonce: u64,
    pace: u8,
    /// The first request of this resync (all paces).
    started: Instant,
    attempts: u32,
    /// Drops of the kernel's receive socket when this pace was asked.
    drops_before: Option<u64>,
    /// The master the last request was sent to (unicast); `None`: to the group.
    asked: Option<IpAddr>,
    phase: Phase,
}

/// A dump this router (master) is sending.
#[derive(Debug, Clone)]
struct Dumping {
    to: SocketAddr,
    request: ResyncRequest,
    sync_id: u8,
    started: Instant,
}

/// An answered request, for repeats.
#[derive(Debug, Clone)]
struct Answer {
    from: SocketAddr,
    done: ResyncDone,
    /// When the DONE was last sent: repeats at most once per [`REPEAT_PAUSE`].
    sent: Instant,
}

/// A preemption held until the resync is done.
#[derive(Debug, Clone)]
struct Hold {
    /// The instances held: it and the other members of its sync groups.
    held: Vec<String>,
    since: Instant,
}

/// Counters and the last resyncs, as [`ResyncStatus`] shows them.
#[derive(Debug, Clone, Default)]
struct Counters {
    requests_sent: u64,
    requests_received: u64,
    dumps_sent: u64,
    records_sent: u64,
    resyncs_received: u64,
    preemption_holds: u64,
    hold_timeouts: u64,
    drops: BTreeMap<DropReason, u64>,
    last_sent: Option<(Instant, SentStatus)>,
    last_received: Option<(Instant, ReceivedStatus)>,
}

/// The bulk-resync protocol of one router, both sides: it asks when its sync role becomes
/// backup and answers while it is master.
#[derive(Debug)]
pub struct Resync {
    config: Option<ResyncConfig>,
    /// Signs what is sent and checks what arrives, when `config.auth` is set; kept across
    /// configurations (a reload must not reopen the door to a replay).
    authenticator: Option<Authenticator>,
    /// The driver's socket is open: roles are followed.
    listening: bool,
    roles: Vec<DaemonRole>,
    pending: Option<Pending>,
    /// The nonce of the last resync completed.
    completed_nonce: Option<u64>,
    /// A resync completed since the sync role last became backup.
    resynced_since_backup: bool,
    dumping: Option<Dumping>,
    answers: VecDeque<Answer>,
    last_dump: HashMap<IpAddr, Instant>,
    /// No dump to anyone before this.
    next_dump: Option<Instant>,
    instance: Option<FollowedInstance>,
    hold: Option<Hold>,
    /// The hold timed out in this BACKUP period: not again until it ends.
    hold_spent: bool,
    nonce_state: u64,
    counters: Counters,
    transmits: VecDeque<Transmit>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
}

impl Resync {
    /// A machine with no configuration yet. `held_at_start` are the instances the VRRP
    /// driver starts with their preemption held (the machine lifts that hold as any
    /// other); `nonce_seed` seeds the request nonces (random in the daemon, fixed in tests).
    pub fn new(now: Instant, held_at_start: Vec<String>, nonce_seed: u64) -> Resync {
        let mut machine = Resync {
            config: None,
            authenticator: None,
            listening: false,
            roles: Vec::new(),
            pending: None,
            completed_nonce: None,
            resynced_since_backup: false,
            dumping: None,
            answers: VecDeque::new(),
            last_dump: HashMap::new(),
            next_dump: None,
            instance: None,
            hold: None,
            hold_spent: false,
            nonce_state: nonce_seed,
            counters: Counters::default(),
            transmits: VecDeque::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
        };
        if !held_at_start.is_empty() {
            machine.events.push_back(Event::HeldAtStart {
                instances: held_at_start.clone(),
            });
            machine.counters.preemption_holds += 1;
            machine.hold = Some(Hold {
                held: held_at_start,
                since: now,
            });
        }
        machine
    }

    /// The configuration (`None`: bulk resync off). Called again when anything of
    /// `lvs_sync_daemon` changes: the driver reopens its socket, a pending request is
    /// forgotten, and roles are followed again once [`handle_listening`](Self::handle_listening).
    pub fn handle_config(&mut self, now: Instant, config: Option<ResyncConfig>) {
        if config.is_none() {
            self.release_hold(now, "bulk resync is off");
        }
        self.pending = None;
        self.listening = false;
        match (
            config.as_ref().and_then(|c| c.auth.clone()),
            &mut self.authenticator,
        ) {
            (Some(auth), Some(authenticator)) => authenticator.reconfigure(auth),
            (Some(auth), None) => self.authenticator = Some(Authenticator::new(auth)),
            (None, _) => self.authenticator = None,
        }
        self.config = config;
    }

    /// The driver's socket is open: the roles given next are taken as new (a backup role
    /// taken before the socket opened asks now).
    pub fn handle_listening(&mut self, _now: Instant) {
        self.listening = true;
        self.roles.clear();
    }

    /// The sync-daemon roles running. Becoming backup starts a resync; leaving backup
    /// forgets it; the master role lifts a preemption hold.
    pub fn handle_roles(&mut self, now: Instant, roles: &[DaemonRole]) {
        if !self.listening || roles == self.roles.as_slice() {
            return;
        }
        let was_backup = self.roles.contains(&DaemonRole::Backup);
        self.roles = roles.to_vec();
        let is_backup = self.roles.contains(&DaemonRole::Backup);
        if is_backup && !was_backup {
            self.resynced_since_backup = false;
            self.pending = Some(Pending {
                nonce: self.new_nonce(),
                pace: 0,
                started: now,
                attempts: 0,
                drops_before: None,
                asked: None,
                phase: Phase::MeasuringBefore,
            });
            self.events.push_back(Event::Asking);
            // The socket's drops before the first request: compared after DONE.
            self.actions.push_back(Action::ReadKernelDrops);
        } else if !is_backup && self.pending.take().is_some() {
            self.events.push_back(Event::Abandoned);
        }
        if self.roles.contains(&DaemonRole::Master) {
            self.release_hold(now, "the sync role is master");
        }
    }

    /// A reading of the kernel sync socket's receive drops, asked for by
    /// [`Action::ReadKernelDrops`] (`None`: not readable).
    pub fn handle_kernel_drops(&mut self, now: Instant, drops: Option<u64>) {
        let Some(pending) = &mut self.pending else {
            return;
        };
        match pending.phase {
            Phase::MeasuringBefore => {
                pending.drops_before = drops;
                self.send_request(now);
            }
            Phase::MeasuringAfter { done, from } => {
                let before = pending.drops_before;
                let after = drops;
                if let (Some(before), Some(after)) = (before, after) {
                    if after > before {
                        let dropped = after - before;
                        if pending.pace < MAX_PACE {
                            pending.pace += 1;
                            pending.drops_before = Some(after);
                            let pace = pending.pace;
                            self.events.push_back(Event::SlowingDown {
                                from,
                                dropped,
                                pace,
                            });
                            let nonce = self.new_nonce();
                            if let Some(pending) = &mut self.pending {
                                pending.nonce = nonce;
                            }
                            self.send_request(now);
                            return;
                        }
                        self.events
                            .push_back(Event::DroppedAtSlowestPace { dropped });
                    }
                }
                let kernel_socket_drops = after.zip(before).map(|(a, b)| a.saturating_sub(b));
                self.complete(now, done, from, kernel_socket_drops);
            }
            Phase::Asking { .. } | Phase::Settling { .. } => {}
        }
    }

    /// The state of the VRRP instance `lvs_sync_daemon` follows (`None`: none, or not
    /// running), for the preemption hold.
    pub fn handle_instance(&mut self, now: Instant, instance: Option<FollowedInstance>) {
        if let (Some(hold), Some(new)) = (&mut self.hold, &instance) {
            // Held from the start: the limit counts from BACKUP.
            let was_starting = self
                .instance
                .as_ref()
                .is_none_or(|i| i.state == InstanceState::Initialize);
            if new.state == InstanceState::Backup && was_starting {
                hold.since = now;
            }
        }
        self.instance = instance;
        self.check_hold(now);
    }

    /// A datagram received on the control port at `now` (`unix_now` on the wall clock, for
    /// the authentication's freshness), with the TTL or hop limit it arrived with.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        unix_now: Duration,
        from: SocketAddr,
        ttl: Option<u8>,
        bytes: &[u8],
    ) {
        // The cheap checks first; the HMAC last, and only for a packet that could matter.
        if ttl != Some(RESYNC_TTL) {
            self.count_drop(DropReason::BadTtl);
            return;
        }
        let (message, trailer) = match ResyncMessage::parse_signed(bytes) {
            Ok(parsed) => parsed,
            Err(error) => {
                self.count_drop(match error {
                    ResyncWireError::BadMagic => DropReason::BadMagic,
                    ResyncWireError::BadVersion(_) => DropReason::BadVersion,
                    ResyncWireError::BadKind(_) => DropReason::BadKind,
                    ResyncWireError::BadLength(_) => DropReason::BadLength,
                    ResyncWireError::Reserved(_) => DropReason::BadReserved,
                });
                self.events.push_back(Event::Malformed { from, error });
                return;
            }
        };
        let Some(config) = &self.config else {
            return;
        };
        let sync_id = config.sync_id;
        if let ResyncMessage::Request(_) = message {
            if !config.peers.is_empty() && !config.peers.contains(&from.ip()) {
                self.counters.requests_received += 1;
                self.count_drop(DropReason::NotPeer);
                return;
            }
        }
        if let Some(authenticator) = &mut self.authenticator {
            let signed = &bytes[..bytes.len() - trailer.map_or(0, <[u8]>::len)];
            match auth::check(authenticator, unix_now, from.ip(), signed, trailer) {
                Verdict::Authenticated => {}
                Verdict::Accepted(failure) => {
                    self.events.push_back(Event::AuthFailed {
                        from,
                        failure,
                        dropped: false,
                    });
                }
                Verdict::Dropped(failure) => {
                    if let ResyncMessage::Request(_) = message {
                        self.counters.requests_received += 1;
                    }
                    self.count_drop(DropReason::Auth(failure));
                    self.events.push_back(Event::AuthFailed {
                        from,
                        failure,
                        dropped: true,
                    });
                    return;
                }
            }
        } else if trailer.is_some() {
            // Signed, and this router has no key: as the length mismatch it is.
            self.count_drop(DropReason::BadLength);
            return;
        }
        match message {
            ResyncMessage::Request(request) => self.handle_request(now, from, request, sync_id),
            ResyncMessage::Done(done) => self.handle_done(now, from, done, sync_id),
        }
    }

    /// The bytes of `transmit` as sent from `source` at `unix_now`: signed when the
    /// followed instance has `auth_hmac`.
    pub fn encode(&mut self, unix_now: Duration, source: IpAddr, transmit: &Transmit) -> Vec<u8> {
        auth::seal(
            self.authenticator.as_mut(),
            unix_now,
            source,
            transmit.message.emit(),
        )
    }

    /// The dump asked for by [`Action::Dump`] ended: `Ok` with what it sent, or the error.
    pub fn handle_dump_finished(&mut self, now: Instant, outcome: Result<DumpReport, String>) {
        let Some(dumping) = self.dumping.take() else {
            return;
        };
        let report = match outcome {
            Ok(report) => report,
            Err(error) => {
                self.events.push_back(Event::DumpFailed {
                    to: dumping.to,
                    error,
                });
                return;
            }
        };
        let took = now.saturating_duration_since(dumping.started);
        // The duty cycle: dumps take at most 1 / (DUTY + 1) of the master's time.
        self.next_dump = Some(now + (took * DUTY).max(MIN_DUMP_PAUSE));
        let millis = took.as_millis().min(u128::from(u32::MAX)) as u32;
        let done = ResyncDone {
            sync_id: dumping.sync_id,
            nonce: dumping.request.nonce,
            records: report.records,
            messages: report.messages,
            millis,
        };
        self.transmits.push_back(Transmit {
            to: dumping.to,
            message: ResyncMessage::Done(done),
        });
        if self.answers.len() >= ANSWER_CACHE {
            self.answers.pop_front();
        }
        self.answers.push_back(Answer {
            from: dumping.to,
            done,
            sent: now,
        });
        let pace = dumping.request.pace;
        self.counters.dumps_sent += 1;
        self.counters.records_sent += u64::from(report.records);
        self.counters.last_sent = Some((
            now,
            SentStatus {
                at_unix: 0.0,
                to: dumping.to.ip().to_string(),
                records: report.records,
                messages: report.messages,
                entries: report.entries,
                skipped: report.skipped.clone(),
                pace,
                millis,
                read_millis: report.read_millis,
            },
        ));
        self.events.push_back(Event::Sent {
            to: dumping.to,
            report,
            millis,
            pace,
        });
    }

    /// The deadline of [`poll_timeout`](Self::poll_timeout) passed (or any time: nothing
    /// happens before its time).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(pending) = &mut self.pending {
            match pending.phase {
                Phase::Asking { last_sent } if now >= last_sent + RETRY => self.send_request(now),
                Phase::Settling { done, from, until } if now >= until => {
                    pending.phase = Phase::MeasuringAfter { done, from };
                    self.actions.push_back(Action::ReadKernelDrops);
                }
                _ => {}
            }
        }
        self.check_hold(now);
    }

    /// haldir stops: a hold is lifted.
    pub fn handle_stop(&mut self, now: Instant) {
        self.release_hold(now, "haldir stops");
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next piece of work for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next log-worthy event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due: a request's retry, the
    /// drops reading after DONE, the hold limit.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pending = self.pending.as_ref().and_then(|p| match p.phase {
            Phase::Asking { last_sent } => Some(last_sent + RETRY),
            Phase::Settling { until, .. } => Some(until),
            Phase::MeasuringBefore | Phase::MeasuringAfter { .. } => None,
        });
        // The hold limit counts only in BACKUP (`check_hold`).
        let hold = self
            .hold
            .as_ref()
            .filter(|_| self.config.is_some())
            .filter(|_| {
                self.instance
                    .as_ref()
                    .is_some_and(|i| i.state == InstanceState::Backup)
            })
            .map(|h| h.since + HOLD_LIMIT);
        [pending, hold].into_iter().flatten().min()
    }

    /// A preemption is held.
    pub fn holding(&self) -> bool {
        self.hold.is_some()
    }

    /// The status at `now`, whose wall-clock time is `now_unix` (the times of past events
    /// are given in unix seconds from it).
    pub fn status(&self, now: Instant, now_unix: f64) -> ResyncStatus {
        let unix = |at: Instant| now_unix - now.saturating_duration_since(at).as_secs_f64();
        let role = match (
            self.roles.contains(&DaemonRole::Master),
            self.roles.contains(&DaemonRole::Backup),
        ) {
            (true, true) => ResyncRole::Both,
            (true, false) => ResyncRole::Master,
            (false, true) => ResyncRole::Backup,
            (false, false) => ResyncRole::None,
        };
        let c = &self.counters;
        ResyncStatus {
            enabled: self.config.is_some(),
            role,
            pending: self
                .pending
                .as_ref()
                .filter(|p| p.attempts > 0)
                .map(|p| PendingStatus {
                    since_unix: unix(p.started),
                    attempts: p.attempts,
                }),
            last_sent: c.last_sent.as_ref().map(|(at, s)| SentStatus {
                at_unix: unix(*at),
                ..s.clone()
            }),
            last_received: c.last_received.as_ref().map(|(at, r)| ReceivedStatus {
                at_unix: unix(*at),
                ..r.clone()
            }),
            requests_sent: c.requests_sent,
            requests_received: c.requests_received,
            dumps_sent: c.dumps_sent,
            records_sent: c.records_sent,
            resyncs_received: c.resyncs_received,
            preemption_holds: c.preemption_holds,
            hold_timeouts: c.hold_timeouts,
            drops: c
                .drops
                .iter()
                .map(|(reason, n)| (reason.as_str().to_owned(), *n))
                .collect(),
        }
    }

    fn count_drop(&mut self, reason: DropReason) {
        *self.counters.drops.entry(reason).or_default() += 1;
    }

    /// splitmix64: distinct nonces from one random seed.
    fn new_nonce(&mut self) -> u64 {
        self.nonce_state = self.nonce_state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.nonce_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn send_request(&mut self, now: Instant) {
        let (Some(config), Some(pending)) = (&self.config, &mut self.pending) else {
            return;
        };
        pending.attempts += 1;
        pending.phase = Phase::Asking { last_sent: now };
        // To the master this router's instance hears, when it is of the group's family: only
        // its DONE is taken. Else to the group (the master answers, backups count a drop).
        let master = self
            .instance
            .as_ref()
            .and_then(|i| i.master)
            .filter(|m| m.is_ipv4() == config.addresses.group.is_ipv4());
        pending.asked = master;
        self.transmits.push_back(Transmit {
            to: SocketAddr::new(
                master.unwrap_or(config.addresses.group),
                config.addresses.control_port,
            ),
            message: ResyncMessage::Request(ResyncRequest {
                sync_id: config.sync_id,
                nonce: pending.nonce,
                pace: pending.pace,
            }),
        });
        self.counters.requests_sent += 1;
    }

    fn handle_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        request: ResyncRequest,
        sync_id: u8,
    ) {
        self.counters.requests_received += 1;
        if request.sync_id != sync_id {
            self.count_drop(DropReason::OtherSyncid);
            return;
        }
        if !self.roles.contains(&DaemonRole::Master) {
            // Other backups hear the multicast request too.
            self.count_drop(DropReason::NotMaster);
            return;
        }
        if let Some(answer) = self
            .answers
            .iter_mut()
            .find(|a| a.from == from && a.done.nonce == request.nonce)
        {
            // The DONE was lost (or is late): the same answer again, not a second dump, and
            // at most once per REPEAT_PAUSE (the backup itself asks once per RETRY).
            if now.saturating_duration_since(answer.sent) >= REPEAT_PAUSE {
                answer.sent = now;
                let done = answer.done;
                self.transmits.push_back(Transmit {
                    to: from,
                    message: ResyncMessage::Done(done),
                });
            }
            self.count_drop(DropReason::RepeatAnswered);
            return;
        }
        // The backup asks again every second: a request refused here is served
        // once the limits allow.
        if self.dumping.is_some()
            || self
                .last_dump
                .get(&from.ip())
                .is_some_and(|t| now.saturating_duration_since(*t) < DUMP_INTERVAL)
            || self.next_dump.is_some_and(|t| now < t)
        {
            self.count_drop(DropReason::RateLimited);
            return;
        }
        if self.last_dump.len() >= REQUESTERS {
            self.last_dump
                .retain(|_, t| now.saturating_duration_since(*t) < DUMP_INTERVAL);
            if self.last_dump.len() >= REQUESTERS {
                self.count_drop(DropReason::TooManyRequesters);
                return;
            }
        }
        self.last_dump.insert(from.ip(), now);
        self.dumping = Some(Dumping {
            to: from,
            request,
            sync_id,
            started: now,
        });
        self.actions.push_back(Action::Dump {
            to: from,
            pace: request.pace,
        });
    }

    fn handle_done(&mut self, now: Instant, from: SocketAddr, done: ResyncDone, sync_id: u8) {
        let Some(pending) = &mut self.pending else {
            // A repeated request while the dump ran gets its DONE twice.
            self.count_drop(if self.completed_nonce == Some(done.nonce) {
                DropReason::DuplicateDone
            } else {
                DropReason::UnexpectedDone
            });
            return;
        };
        if pending.asked.is_some_and(|master| master != from.ip()) {
            self.count_drop(DropReason::NotAskedMaster);
            return;
        }
        if done.nonce != pending.nonce || done.sync_id != sync_id {
            self.count_drop(DropReason::UnexpectedDone);
            return;
        }
        match pending.phase {
            Phase::Asking { .. } => {}
            Phase::MeasuringBefore => {
                self.count_drop(DropReason::UnexpectedDone);
                return;
            }
            Phase::Settling { .. } | Phase::MeasuringAfter { .. } => {
                self.count_drop(DropReason::DuplicateDone);
                return;
            }
        }
        if pending.drops_before.is_some() {
            // Did the kernel's receive socket drop part of the dump? Read it once the
            // kernel thread has had time to read its queue.
            pending.phase = Phase::Settling {
                done,
                from,
                until: now + SETTLE,
            };
            return;
        }
        self.complete(now, done, from, None);
    }

    fn complete(
        &mut self,
        now: Instant,
        done: ResyncDone,
        from: SocketAddr,
        kernel_socket_drops: Option<u64>,
    ) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let millis = now.saturating_duration_since(pending.started).as_millis() as u64;
        self.events.push_back(Event::Received {
            from,
            done,
            millis,
            attempts: pending.attempts,
        });
        self.counters.resyncs_received += 1;
        self.counters.last_received = Some((
            now,
            ReceivedStatus {
                at_unix: 0.0,
                from: from.ip().to_string(),
                records: done.records,
                messages: done.messages,
                master_millis: done.millis,
                millis,
                attempts: pending.attempts,
                pace: pending.pace,
                kernel_socket_drops,
            },
        ));
        self.completed_nonce = Some(done.nonce);
        self.resynced_since_backup = true;
        self.release_hold(now, "the bulk resync is done");
    }

    /// Holds a preemption while no resync has completed since the instance
    /// entered BACKUP, for the instance and the other members of its sync
    /// groups, until the resync is done, the sync role becomes master, or
    /// [`HOLD_LIMIT`] passes. A held backup still takes over when the
    /// master's adverts stop (a dead master is not waited for); it only does
    /// not preempt a live one (RFC 5798 §6.4.2: Preempt_Mode False).
    fn check_hold(&mut self, now: Instant) {
        if self.config.is_none() {
            return;
        }
        let Some(instance) = &self.instance else {
            return;
        };
        if let Some(hold) = &mut self.hold {
            if instance.state == InstanceState::Initialize {
                // Held from the start: the limit counts from BACKUP.
                hold.since = now;
            } else if instance.state != InstanceState::Backup {
                self.release_hold(now, "the instance left BACKUP");
            } else if now.saturating_duration_since(hold.since) >= HOLD_LIMIT {
                let event = Event::HoldTimedOut {
                    instance: instance.name.clone(),
                    master: instance.master,
                };
                self.events.push_back(event);
                self.counters.hold_timeouts += 1;
                self.release_hold(now, "the hold timed out");
                self.hold_spent = true;
            }
            return;
        }
        if instance.state != InstanceState::Backup {
            self.hold_spent = false;
            return;
        }
        if self.hold_spent || self.resynced_since_backup || instance.hold.is_empty() {
            return;
        }
        let held = instance.hold.clone();
        self.actions.push_back(Action::HoldPreemption {
            instances: held.clone(),
            held: true,
        });
        self.events.push_back(Event::Holding {
            instances: held.clone(),
        });
        self.counters.preemption_holds += 1;
        self.hold = Some(Hold { held, since: now });
    }

    fn release_hold(&mut self, now: Instant, why: &'static str) {
        let Some(hold) = self.hold.take() else {
            return;
        };
        self.events.push_back(Event::HoldLifted {
            instances: hold.held.clone(),
            millis: now.saturating_duration_since(hold.since).as_millis(),
            why,
        });
        self.actions.push_back(Action::HoldPreemption {
            instances: hold.held,
            held: false,
        });
    }
}

#[cfg(test)]
mod tests;
