//! Bulk resync of the IPVS connection table: a router whose kernel sync daemon
//! becomes **backup** (haldir starts, rejoins, or leaves MASTER) asks the
//! master router's haldir for the WHOLE connection table, and gets it as
//! ordinary sync-protocol messages that its own kernel installs.
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
//!   syncid, nonce, pace) and repeats it every second until a [`ResyncDone`]
//!   with its nonce arrives, unicast from the haldir whose sync role is master.
//! - **Dump** (master): the connection table is read from
//!   `/proc/net/ip_vs_conn` (this network namespace's), each entry mapped to a
//!   sync-protocol version 1 record ([`haldir_ipvs::conn_table`]: forwarding
//!   method and firewall mark from the kernel's own IPVS service table, read
//!   over netlink; inactive flag from the state; templates by their shape;
//!   timeout = the seconds the entry has left), packed into messages of at
//!   most `maxlen` bytes (default 1472, as the kernel's master) and sent to
//!   the sync daemon's group and port, then DONE (records, messages,
//!   milliseconds) to the requester. The backup's kernel sync daemon installs
//!   the records exactly as if its kernel peer had sent them (same syncid,
//!   version 1, the checks of `ip_vs_process_message`). Reading, parsing and
//!   packing run off the runtime's thread (which also drives VRRP): the
//!   kernel walks its whole table again for every read of the `/proc` file,
//!   seconds for 10,000 entries under emulation.
//! - **Flow control**: the backup's kernel receive socket drops what it
//!   cannot queue (`sync_sock_size`, default rmem). The backup's haldir reads
//!   that socket's drop counter (`/proc/net/udp`) before the request and after
//!   DONE; if it grew, it asks again with a slower pace (the request's pace
//!   byte: bursts of 16 >> pace messages per millisecond, then longer gaps),
//!   at most [`MAX_PACE`] times, and says so in the log.
//! - **Preemption hold**: a backup that could preempt (preempt on, e.g. the
//!   old master restarting with the higher priority) does not preempt from
//!   the moment its instance is BACKUP until its resync is done, or for at
//!   most [`HOLD_LIMIT`] (then it logs loudly and goes on). The hold covers
//!   the instance and every other member of its `vrrp_sync_group` (one
//!   member preempting would take the whole group, the VIP with it). It is
//!   the driver's [`DriverCommand::HoldPreemption`]: Preempt_Mode reads False
//!   meanwhile (RFC 5798 §6.4.2), priorities and tracking are untouched, so a
//!   takeover because the master died is not held and not slowed; the hold is
//!   lifted as soon as the instance leaves BACKUP.
//! - **Safety**: requests are answered only with the master sync role and a
//!   matching syncid; one dump per requester per 5 s, and after a dump that
//!   took T none for 4 T (at least 1 s); a bounded cache of
//!   recent answers (a repeated request gets its DONE again, not a second
//!   dump); malformed or unexpected packets are counted and dropped.
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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use haldir_config::{LvsSyncDaemon, Model};
use haldir_ipvs::client::DaemonRole;
use haldir_ipvs::conn_table::{parse_conn_table, ServiceIndex, Skip};
use haldir_ipvs::sync_wire::{
    pack, ResyncDone, ResyncMessage, ResyncRequest, ResyncWireError, DEFAULT_GROUP_V4,
    DEFAULT_MAXLEN_V4, DEFAULT_MAXLEN_V6, DEFAULT_PORT,
};
use haldir_ipvs::IpvsClient;
use haldir_vrrp::driver::{DriverCommand, Status};
use haldir_vrrp::router::State;
use serde_json::{json, Value};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

/// How often a pending request is repeated.
const RETRY: Duration = Duration::from_secs(1);
/// The slowest pace a backup asks for after drops.
pub const MAX_PACE: u8 = 8;
/// The longest a preemption waits for the resync.
pub const HOLD_LIMIT: Duration = Duration::from_secs(5);
/// A requester gets at most one dump in this time (a flapping backup does
/// not make the master read its table over and over).
const DUMP_INTERVAL: Duration = Duration::from_secs(5);
/// After a dump that took T, no other dump for max(1 s, DUTY × T): dumps take
/// at most a fifth of the master's time.
const DUTY: u32 = 4;
/// Answers kept for repeated requests.
const ANSWER_CACHE: usize = 32;
/// Requesters remembered for the rate limit.
const REQUESTERS: usize = 256;
/// Where this namespace's connection table is.
const CONN_TABLE: &str = "/proc/net/ip_vs_conn";

/// What one router knows about its bulk resyncs, for status and metrics.
#[derive(Debug, Clone)]
pub struct BulkStats {
    /// Configured and on.
    pub enabled: bool,
    /// "master", "backup", "both" or "none": the sync roles running.
    pub role: &'static str,
    /// A request waiting for its DONE: (since, unix seconds; attempts).
    pub pending: Option<(f64, u32)>,
    /// The last dump this router sent.
    pub last_sent: Option<Value>,
    /// The last resync this router received.
    pub last_received: Option<Value>,
    /// Requests multicast.
    pub requests_sent: u64,
    /// Requests received.
    pub requests_received: u64,
    /// Dumps sent.
    pub dumps_sent: u64,
    /// Records sent in all dumps.
    pub records_sent: u64,
    /// Resyncs completed as a backup.
    pub resyncs_received: u64,
    /// Preemptions held until a resync was done.
    pub preemption_holds: u64,
    /// Holds given up at [`HOLD_LIMIT`].
    pub hold_timeouts: u64,
    /// Packets dropped, by reason.
    pub drops: BTreeMap<&'static str, u64>,
}

static STATS: Mutex<BulkStats> = Mutex::new(BulkStats {
    enabled: false,
    role: "none",
    pending: None,
    last_sent: None,
    last_received: None,
    requests_sent: 0,
    requests_received: 0,
    dumps_sent: 0,
    records_sent: 0,
    resyncs_received: 0,
    preemption_holds: 0,
    hold_timeouts: 0,
    drops: BTreeMap::new(),
});

fn stats<T>(f: impl FnOnce(&mut BulkStats) -> T) -> T {
    let mut guard = STATS.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut guard)
}

fn drop_packet(reason: &'static str) {
    stats(|s| *s.drops.entry(reason).or_default() += 1);
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The `bulk_resync` object of `haldir status --json`.
pub fn status_json() -> Value {
    stats(|s| {
        json!({
            "enabled": s.enabled,
            "role": s.role,
            "pending": s.pending.map(|(since, attempts)| json!({"since_unix": since, "attempts": attempts})),
            "last_sent": s.last_sent,
            "last_received": s.last_received,
            "requests_sent": s.requests_sent,
            "requests_received": s.requests_received,
            "dumps_sent": s.dumps_sent,
            "records_sent": s.records_sent,
            "resyncs_received": s.resyncs_received,
            "preemption_holds": s.preemption_holds,
            "hold_timeouts": s.hold_timeouts,
            "drops": s.drops,
        })
    })
}

/// The bulk-resync lines of `haldir status` (nothing when it is off).
pub fn render_text(status: &Value, now: f64) -> String {
    if status["enabled"].as_bool() != Some(true) {
        return String::new();
    }
    let mut out = format!(
        "\nbulk resync: sync role {}",
        status["role"].as_str().unwrap_or("-")
    );
    if let Some(pending) = status["pending"].as_object() {
        out.push_str(&format!(
            ", asking the master (attempt {})",
            pending.get("attempts").and_then(Value::as_u64).unwrap_or(0)
        ));
    }
    out.push('\n');
    let ago = |v: &Value| {
        v["at_unix"]
            .as_f64()
            .map_or("-".to_owned(), |t| crate::control::age_text(now - t))
    };
    let last = &status["last_sent"];
    if last.is_object() {
        out.push_str(&format!(
            "  last sent: {} connections to {} in {} ms, {} ago\n",
            last["records"],
            last["to"].as_str().unwrap_or("-"),
            last["millis"],
            ago(last)
        ));
    }
    let last = &status["last_received"];
    if last.is_object() {
        out.push_str(&format!(
            "  last received: {} connections from {} in {} ms, {} ago\n",
            last["records"],
            last["from"].as_str().unwrap_or("-"),
            last["millis"],
            ago(last)
        ));
    }
    out
}

/// Appends the bulk-resync metric families (Prometheus text format).
pub fn render_metrics(out: &mut String) {
    use std::fmt::Write as _;
    let s = stats(|s| s.clone());
    let field =
        |v: &Option<Value>, key: &str| v.as_ref().and_then(|v| v[key].as_f64()).unwrap_or(f64::NAN);
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            if value.is_nan() {
                continue;
            }
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    family(
        "haldir_bulk_resync_requests_total",
        "counter",
        "Bulk-resync requests, by direction.",
        &[
            ("{direction=\"sent\"}".into(), s.requests_sent as f64),
            (
                "{direction=\"received\"}".into(),
                s.requests_received as f64,
            ),
        ],
    );
    family(
        "haldir_bulk_resync_dumps_total",
        "counter",
        "Whole connection tables sent to a backup.",
        &[(String::new(), s.dumps_sent as f64)],
    );
    family(
        "haldir_bulk_resync_records_sent_total",
        "counter",
        "Connection records sent in bulk resyncs.",
        &[(String::new(), s.records_sent as f64)],
    );
    family(
        "haldir_bulk_resync_completed_total",
        "counter",
        "Bulk resyncs completed as a backup.",
        &[(String::new(), s.resyncs_received as f64)],
    );
    family(
        "haldir_bulk_resync_last_connections",
        "gauge",
        "Connection records in the last bulk resync, by direction.",
        &[
            (
                "{direction=\"sent\"}".into(),
                field(&s.last_sent, "records"),
            ),
            (
                "{direction=\"received\"}".into(),
                field(&s.last_received, "records"),
            ),
        ],
    );
    family(
        "haldir_bulk_resync_last_duration_seconds",
        "gauge",
        "Duration of the last bulk resync: dump (sent), request to DONE (received).",
        &[
            (
                "{direction=\"sent\"}".into(),
                field(&s.last_sent, "millis") / 1000.0,
            ),
            (
                "{direction=\"received\"}".into(),
                field(&s.last_received, "millis") / 1000.0,
            ),
        ],
    );
    family(
        "haldir_bulk_resync_last_timestamp_seconds",
        "gauge",
        "Unix time of the last bulk resync, by direction.",
        &[
            (
                "{direction=\"sent\"}".into(),
                field(&s.last_sent, "at_unix"),
            ),
            (
                "{direction=\"received\"}".into(),
                field(&s.last_received, "at_unix"),
            ),
        ],
    );
    family(
        "haldir_bulk_resync_preemption_holds_total",
        "counter",
        "Preemptions held until a bulk resync was done, by outcome.",
        &[
            (
                "{outcome=\"done\"}".into(),
                s.preemption_holds.saturating_sub(s.hold_timeouts) as f64,
            ),
            ("{outcome=\"timeout\"}".into(), s.hold_timeouts as f64),
        ],
    );
    let drops: Vec<(String, f64)> = s
        .drops
        .iter()
        .map(|(reason, n)| (format!("{{reason=\"{reason}\"}}"), *n as f64))
        .collect();
    family(
        "haldir_bulk_resync_dropped_packets_total",
        "counter",
        "Bulk-resync packets dropped, by reason.",
        &drops,
    );
}

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
    /// The addresses `config` implies (the kernel's defaults where unset).
    pub fn of(config: &LvsSyncDaemon) -> Self {
        let group = config.group.unwrap_or(IpAddr::V4(DEFAULT_GROUP_V4));
        let sync_port = config.port.unwrap_or(DEFAULT_PORT);
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
            max_len: config.max_len.map_or(default_len, usize::from),
        }
    }
}

/// The pacing of a dump: `burst` messages, then `gap`.
pub fn pacing(pace: u8) -> (usize, Duration) {
    let pace = u32::from(pace.min(MAX_PACE));
    if pace <= 4 {
        ((16usize >> pace).max(1), Duration::from_millis(1))
    } else {
        (1, Duration::from_millis(u64::from(pace - 3)))
    }
}

struct Endpoint {
    socket: UdpSocket,
    addresses: Addresses,
}

impl Endpoint {
    fn open(config: &LvsSyncDaemon) -> anyhow::Result<Endpoint> {
        use socket2::{Domain, Protocol, Socket, Type};
        let addresses = Addresses::of(config);
        let index = nix::net::if_::if_nametoindex(config.interface.as_str())
            .map_err(|e| anyhow::anyhow!("interface {}: {e}", config.interface))?;
        let socket = Socket::new(
            Domain::for_address(SocketAddr::new(addresses.group, 0)),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        socket.set_reuse_address(true)?;
        socket.bind_device(Some(config.interface.as_bytes()))?;
        let ttl = u32::from(config.ttl.unwrap_or(1));
        match addresses.group {
            IpAddr::V4(group) => {
                socket.bind(
                    &SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), addresses.control_port).into(),
                )?;
                socket
                    .join_multicast_v4_n(&group, &socket2::InterfaceIndexOrAddress::Index(index))?;
                socket.set_multicast_loop_v4(false)?;
                socket.set_multicast_ttl_v4(ttl)?;
            }
            IpAddr::V6(group) => {
                socket.set_only_v6(true)?;
                socket.bind(
                    &SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), addresses.control_port).into(),
                )?;
                socket.join_multicast_v6(&group, index)?;
                socket.set_multicast_if_v6(index)?;
                socket.set_multicast_loop_v6(false)?;
                socket.set_multicast_hops_v6(ttl)?;
            }
        }
        socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(socket.into())?;
        Ok(Endpoint { socket, addresses })
    }

    async fn send(&self, bytes: &[u8], to: SocketAddr) -> std::io::Result<()> {
        // ENOBUFS: the interface queue is full; wait a little and try again.
        let mut tries = 0;
        loop {
            match self.socket.send_to(bytes, to).await {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) && tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A request waiting for its DONE.
#[derive(Debug, Clone)]
struct Pending {
    nonce: u64,
    pace: u8,
    /// The first request of this resync (all paces).
    started: Instant,
    started_unix: f64,
    attempts: u32,
    last_sent: Option<Instant>,
    /// Drops of the kernel's receive socket when this pace was asked.
    drops_before: Option<u64>,
}

fn new_nonce() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one((
        std::process::id(),
        SystemTime::now(),
        Instant::now(),
    ))
}

/// Drops counted on the kernel's sync receive socket (bound to the group and
/// port) in this namespace's `/proc/net/udp`; `None`: not found (IPv6, or no
/// backup daemon).
pub fn kernel_receive_drops(udp_table: &str, group: IpAddr, port: u16) -> Option<u64> {
    let IpAddr::V4(group) = group else {
        return None;
    };
    // The address is printed as the raw 32-bit word, in host byte order.
    let wanted = format!("{:08X}:{:04X}", u32::from_ne_bytes(group.octets()), port);
    udp_table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&wanted.as_str()))
            .then(|| fields.last().and_then(|d| d.parse().ok()))
            .flatten()
    })
}

async fn read_receive_drops(addresses: &Addresses) -> Option<u64> {
    let text = read_proc("/proc/net/udp").await.ok()?;
    kernel_receive_drops(&text, addresses.group, addresses.sync_port)
}

/// Reads a /proc file with a large buffer (few read calls: a seq_file such as
/// `ip_vs_conn` walks the kernel's table again from the start for each).
fn read_proc_blocking(path: &str) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut text = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut chunk)? {
            0 => break,
            n => text.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8(text).map_err(std::io::Error::other)
}

/// [`read_proc_blocking`] off the runtime's thread.
async fn read_proc(path: &'static str) -> std::io::Result<String> {
    tokio::task::spawn_blocking(move || read_proc_blocking(path))
        .await
        .map_err(std::io::Error::other)?
}

/// A dump ready to send.
struct PreparedDump {
    datagrams: Vec<Vec<u8>>,
    entries: u32,
    records: u32,
    skipped: BTreeMap<&'static str, u32>,
}

/// Reads this namespace's connection table and turns it into sync messages.
fn prepare_dump(
    table: &haldir_ipvs::Table,
    sync_id: u8,
    max_len: usize,
) -> anyhow::Result<PreparedDump> {
    let text = read_proc_blocking(CONN_TABLE).map_err(|e| anyhow::anyhow!("{CONN_TABLE}: {e}"))?;
    let (entries, errors) = parse_conn_table(&text);
    if !errors.is_empty() {
        warn!(
            "bulk resync: {} unreadable lines in {CONN_TABLE} (first: line {}: {})",
            errors.len(),
            errors[0].line,
            errors[0].reason
        );
    }
    let index = ServiceIndex::new(table);
    let mut records = Vec::with_capacity(entries.len());
    let mut skipped: BTreeMap<&'static str, u32> = BTreeMap::new();
    for entry in &entries {
        match entry.to_sync(&index) {
            Ok(record) => records.push(record),
            Err(skip) => {
                *skipped
                    .entry(match skip {
                        Skip::NoService => "no_service",
                        Skip::PeData => "pe_data",
                        Skip::Expiring => "expiring",
                        Skip::UnknownState => "unknown_state",
                    })
                    .or_default() += 1
            }
        }
    }
    let (datagrams, too_big) = pack(sync_id, &records, max_len);
    if too_big > 0 {
        skipped.insert("larger_than_maxlen", too_big as u32);
    }
    Ok(PreparedDump {
        datagrams,
        entries: entries.len() as u32,
        records: (records.len() - too_big) as u32,
        skipped,
    })
}

/// An answered request, for repeats.
struct Answer {
    from: SocketAddr,
    done: ResyncDone,
}

struct Task {
    config: Option<LvsSyncDaemon>,
    endpoint: Option<Endpoint>,
    open_error: Option<String>,
    roles: Vec<DaemonRole>,
    pending: Option<Pending>,
    answers: VecDeque<Answer>,
    last_dump: HashMap<IpAddr, Instant>,
    /// No dump to anyone before this.
    next_dump: Option<Instant>,
    client: Option<IpvsClient>,
    commands: Option<mpsc::Sender<DriverCommand>>,
    hold: Option<Hold>,
    /// The hold timed out in this BACKUP period: not again until it ends.
    hold_spent: bool,
    /// A resync completed since the sync role last became backup.
    resynced_since_backup: bool,
    /// The nonce of the last resync completed.
    completed_nonce: Option<u64>,
}

/// A preemption held until the resync is done.
struct Hold {
    /// The instances held: it and the other members of its sync groups.
    held: Vec<String>,
    since: Instant,
}

/// Starts the task. `roles` are the sync-daemon roles running
/// (`src/sync_daemon.rs`); `status` and `commands` are the VRRP driver's,
/// for the preemption hold; `held_at_start` the instances the driver starts
/// with their preemption held ([`held_at_start`]): this task lifts it.
pub fn spawn(
    running: watch::Receiver<Model>,
    roles: watch::Receiver<Vec<DaemonRole>>,
    status: watch::Receiver<Status>,
    commands: mpsc::Sender<DriverCommand>,
    shutdown: watch::Receiver<bool>,
    held_at_start: Vec<String>,
) -> JoinHandle<()> {
    tokio::spawn(run(
        running,
        roles,
        status,
        commands,
        shutdown,
        held_at_start,
    ))
}

/// The instances whose preemption is held from haldir's start: those of the
/// hold ([`instances_to_hold`]) when bulk resync is on and follows an
/// instance. A backup may preempt one Master_Down_Interval after it starts,
/// before a hold sent once it runs could arrive (seen in the VM: a second
/// instance's start kept the driver busy that long), so the driver starts
/// them held and the task lifts the hold as usual.
pub fn held_at_start(model: &Model) -> Vec<String> {
    match &model.lvs_sync_daemon {
        Some(LvsSyncDaemon {
            bulk_resync: true,
            instance: Some(instance),
            ..
        }) => instances_to_hold(model, instance),
        _ => Vec::new(),
    }
}

async fn recv(endpoint: &Option<Endpoint>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match endpoint {
        Some(e) => e.socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

async fn run(
    mut running: watch::Receiver<Model>,
    mut roles: watch::Receiver<Vec<DaemonRole>>,
    mut status: watch::Receiver<Status>,
    commands: mpsc::Sender<DriverCommand>,
    mut shutdown: watch::Receiver<bool>,
    held_at_start: Vec<String>,
) {
    if !held_at_start.is_empty() {
        info!(
            "bulk resync: {} start with any preemption held until the connection table is here (at most {} s in BACKUP)",
            held_at_start.join(", "),
            HOLD_LIMIT.as_secs()
        );
        stats(|s| s.preemption_holds += 1);
    }
    let mut task = Task {
        config: None,
        endpoint: None,
        open_error: None,
        roles: Vec::new(),
        pending: None,
        answers: VecDeque::new(),
        last_dump: HashMap::new(),
        next_dump: None,
        client: None,
        commands: Some(commands),
        hold: (!held_at_start.is_empty()).then(|| Hold {
            held: held_at_start,
            since: Instant::now(),
        }),
        hold_spent: false,
        resynced_since_backup: false,
        completed_nonce: None,
    };
    let mut buf = vec![0u8; 2048];
    let (mut roles_closed, mut status_closed) = (false, false);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *shutdown.borrow() {
            break;
        }
        let config = running
            .borrow_and_update()
            .lvs_sync_daemon
            .clone()
            .filter(|c| c.bulk_resync);
        if config != task.config {
            if config.is_none() {
                task.release_hold("bulk resync is off").await;
            }
            task.endpoint = None;
            task.pending = None;
            task.open_error = None;
            task.config = config;
            stats(|s| s.enabled = task.config.is_some());
        }
        if task.endpoint.is_none() {
            if let Some(config) = &task.config {
                match Endpoint::open(config) {
                    Ok(endpoint) => {
                        info!(
                            group = %endpoint.addresses.group,
                            port = endpoint.addresses.control_port,
                            "bulk resync: listening on {}",
                            config.interface
                        );
                        task.endpoint = Some(endpoint);
                        task.open_error = None;
                        // A backup role taken before the socket opened asks now.
                        task.roles.clear();
                    }
                    Err(e) => {
                        let text = e.to_string();
                        if task.open_error.as_ref() != Some(&text) {
                            warn!("bulk resync: cannot open its socket: {text}; retrying");
                            task.open_error = Some(text);
                        }
                    }
                }
            }
        }
        let now_roles = roles.borrow_and_update().clone();
        task.follow_roles(now_roles).await;
        let model = running.borrow().clone();
        let now_status = status.borrow_and_update().clone();
        task.check_hold(&model, &now_status).await;
        enum Event {
            Stop,
            Changed,
            Packet(usize, SocketAddr),
            ReceiveError,
            Tick,
        }
        let event = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => Event::Stop,
            changed = running.changed() => if changed.is_err() { Event::Stop } else { Event::Changed },
            // The sync-daemon task ends when the kernel has no IPVS, and the
            // driver's status may end before us: the last value stays.
            changed = roles.changed(), if !roles_closed => {
                roles_closed = changed.is_err();
                Event::Changed
            }
            changed = status.changed(), if !status_closed => {
                status_closed = changed.is_err();
                Event::Changed
            }
            received = recv(&task.endpoint, &mut buf) => match received {
                Ok((len, from)) => Event::Packet(len, from),
                Err(e) => {
                    debug!("bulk resync: receive: {e}");
                    Event::ReceiveError
                }
            },
            _ = tick.tick() => Event::Tick,
        };
        match event {
            Event::Stop => break,
            Event::Changed => {}
            Event::Packet(len, from) => task.handle(&buf[..len], from).await,
            Event::ReceiveError => tokio::time::sleep(Duration::from_millis(50)).await,
            Event::Tick => task.retry().await,
        }
    }
    task.release_hold("haldir stops").await;
}

impl Task {
    fn role_name(&self) -> &'static str {
        match (
            self.roles.contains(&DaemonRole::Master),
            self.roles.contains(&DaemonRole::Backup),
        ) {
            (true, true) => "both",
            (true, false) => "master",
            (false, true) => "backup",
            (false, false) => "none",
        }
    }

    /// Starts a resync when the backup role is taken, forgets it when left.
    async fn follow_roles(&mut self, roles: Vec<DaemonRole>) {
        if self.endpoint.is_none() || roles == self.roles {
            return;
        }
        let was_backup = self.roles.contains(&DaemonRole::Backup);
        self.roles = roles;
        let is_backup = self.roles.contains(&DaemonRole::Backup);
        let role = self.role_name();
        stats(|s| s.role = role);
        if is_backup && !was_backup {
            self.resynced_since_backup = false;
            let addresses = self.endpoint.as_ref().map(|e| e.addresses);
            let drops_before = match addresses {
                Some(a) => read_receive_drops(&a).await,
                None => None,
            };
            self.pending = Some(Pending {
                nonce: new_nonce(),
                pace: 0,
                started: Instant::now(),
                started_unix: unix_now(),
                attempts: 0,
                last_sent: None,
                drops_before,
            });
            info!(
                "bulk resync: the sync role is backup: asking the master for its connection table"
            );
            self.send_request().await;
        } else if !is_backup && self.pending.take().is_some() {
            stats(|s| s.pending = None);
            debug!("bulk resync: no longer backup; request abandoned");
        }
        if self.roles.contains(&DaemonRole::Master) {
            self.release_hold("the sync role is master").await;
        }
    }

    async fn send_request(&mut self) {
        let (Some(endpoint), Some(config), Some(pending)) =
            (&self.endpoint, &self.config, &mut self.pending)
        else {
            return;
        };
        let request = ResyncMessage::Request(ResyncRequest {
            sync_id: config.sync_id,
            nonce: pending.nonce,
            pace: pending.pace,
        });
        let to = SocketAddr::new(endpoint.addresses.group, endpoint.addresses.control_port);
        pending.attempts += 1;
        pending.last_sent = Some(Instant::now());
        match endpoint.send(&request.emit(), to).await {
            Ok(()) => stats(|s| {
                s.requests_sent += 1;
                s.pending = Some((pending.started_unix, pending.attempts));
            }),
            Err(e) => warn!("bulk resync: sending the request to {to}: {e}"),
        }
    }

    async fn retry(&mut self) {
        let due = self
            .pending
            .as_ref()
            .is_some_and(|p| p.last_sent.is_none_or(|t| t.elapsed() >= RETRY));
        if due {
            self.send_request().await;
        }
    }

    async fn handle(&mut self, bytes: &[u8], from: SocketAddr) {
        let message = match ResyncMessage::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                drop_packet(match e {
                    ResyncWireError::BadMagic => "bad_magic",
                    ResyncWireError::BadVersion(_) => "bad_version",
                    ResyncWireError::BadKind(_) => "bad_kind",
                    ResyncWireError::BadLength(_) => "bad_length",
                    ResyncWireError::Reserved(_) => "bad_reserved",
                });
                debug!(%from, "bulk resync: dropped: {e}");
                return;
            }
        };
        let Some(config) = self.config.clone() else {
            return;
        };
        match message {
            ResyncMessage::Request(request) => self.answer(request, from, &config).await,
            ResyncMessage::Done(done) => self.complete(done, from, &config).await,
        }
    }

    async fn answer(&mut self, request: ResyncRequest, from: SocketAddr, config: &LvsSyncDaemon) {
        stats(|s| s.requests_received += 1);
        if request.sync_id != config.sync_id {
            drop_packet("other_syncid");
            return;
        }
        if !self.roles.contains(&DaemonRole::Master) {
            // Other backups hear the multicast request too.
            drop_packet("not_master");
            return;
        }
        if let Some(answer) = self
            .answers
            .iter()
            .find(|a| a.from == from && a.done.nonce == request.nonce)
        {
            let done = ResyncMessage::Done(answer.done).emit();
            if let Some(endpoint) = &self.endpoint {
                let _ = endpoint.send(&done, from).await;
            }
            drop_packet("repeat_answered");
            return;
        }
        // The backup asks again every second: a request refused here is served
        // once the limits allow.
        if self
            .last_dump
            .get(&from.ip())
            .is_some_and(|t| t.elapsed() < DUMP_INTERVAL)
            || self.next_dump.is_some_and(|t| Instant::now() < t)
        {
            drop_packet("rate_limited");
            return;
        }
        if self.last_dump.len() >= REQUESTERS {
            self.last_dump.retain(|_, t| t.elapsed() < DUMP_INTERVAL);
            if self.last_dump.len() >= REQUESTERS {
                drop_packet("too_many_requesters");
                return;
            }
        }
        self.last_dump.insert(from.ip(), Instant::now());
        let started = Instant::now();
        let report = match self.dump(config, request.pace).await {
            Ok(report) => report,
            Err(e) => {
                error!("bulk resync: the dump for {from} failed: {e}");
                return;
            }
        };
        let took = started.elapsed();
        self.next_dump = Some(Instant::now() + (took * DUTY).max(Duration::from_secs(1)));
        let millis = took.as_millis().min(u128::from(u32::MAX)) as u32;
        let done = ResyncDone {
            sync_id: config.sync_id,
            nonce: request.nonce,
            records: report.records,
            messages: report.messages,
            millis,
        };
        if let Some(endpoint) = &self.endpoint {
            if let Err(e) = endpoint.send(&ResyncMessage::Done(done).emit(), from).await {
                warn!("bulk resync: sending DONE to {from}: {e}");
            }
        }
        if self.answers.len() >= ANSWER_CACHE {
            self.answers.pop_front();
        }
        self.answers.push_back(Answer { from, done });
        info!(
            "bulk resync: sent {} connections in {} messages to {} in {} ms ({} ms reading the table; pace {}; {} entries skipped)",
            report.records,
            report.messages,
            from,
            millis,
            report.read_millis,
            request.pace,
            report.skipped.values().sum::<u32>()
        );
        let sent = json!({
            "at_unix": unix_now(),
            "to": from.ip().to_string(),
            "records": report.records,
            "messages": report.messages,
            "entries": report.entries,
            "skipped": report.skipped,
            "pace": request.pace,
            "millis": millis,
            "read_millis": report.read_millis,
        });
        stats(|s| {
            s.dumps_sent += 1;
            s.records_sent += u64::from(report.records);
            s.last_sent = Some(sent);
        });
    }

    async fn dump(&mut self, config: &LvsSyncDaemon, pace: u8) -> anyhow::Result<DumpReport> {
        let started = Instant::now();
        if self.client.is_none() {
            self.client = Some(IpvsClient::connect().await?);
        }
        let table = match &self.client {
            Some(client) => client.table().await?,
            None => unreachable!("connected above"),
        };
        let Some(endpoint) = &self.endpoint else {
            anyhow::bail!("no socket");
        };
        // Reading, parsing and packing are CPU work (a 10,000-entry table costs the
        // kernel a walk per read call): off the runtime, which also drives VRRP.
        let (sync_id, max_len) = (config.sync_id, endpoint.addresses.max_len);
        let prepared = tokio::task::spawn_blocking(move || prepare_dump(&table, sync_id, max_len))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))??;
        let read_millis = started.elapsed().as_millis() as u64;
        let to = SocketAddr::new(endpoint.addresses.group, endpoint.addresses.sync_port);
        let (burst, gap) = pacing(pace);
        let datagrams = &prepared.datagrams;
        for (i, datagram) in datagrams.iter().enumerate() {
            endpoint.send(datagram, to).await?;
            if (i + 1) % burst == 0 && i + 1 < datagrams.len() {
                tokio::time::sleep(gap).await;
            }
        }
        Ok(DumpReport {
            read_millis,
            entries: prepared.entries,
            records: prepared.records,
            messages: datagrams.len() as u32,
            skipped: prepared.skipped,
        })
    }

    async fn complete(&mut self, done: ResyncDone, from: SocketAddr, config: &LvsSyncDaemon) {
        let Some(pending) = self.pending.clone() else {
            // A repeated request while the dump ran gets its DONE twice.
            drop_packet(if self.completed_nonce == Some(done.nonce) {
                "duplicate_done"
            } else {
                "unexpected_done"
            });
            return;
        };
        if done.nonce != pending.nonce || done.sync_id != config.sync_id {
            drop_packet("unexpected_done");
            return;
        }
        // Did the kernel's receive socket drop part of the dump?
        let addresses = self.endpoint.as_ref().map(|e| e.addresses);
        let mut drops_after = None;
        if let (Some(addresses), Some(before)) = (addresses, pending.drops_before) {
            // The kernel thread may still be reading its queue.
            tokio::time::sleep(Duration::from_millis(50)).await;
            drops_after = read_receive_drops(&addresses).await;
            if let Some(after) = drops_after.filter(|after| *after > before) {
                if pending.pace < MAX_PACE {
                    warn!(
                        "bulk resync: the kernel's sync socket dropped {} messages of the dump from {from}; asking again at pace {}",
                        after - before,
                        pending.pace + 1
                    );
                    self.pending = Some(Pending {
                        nonce: new_nonce(),
                        pace: pending.pace + 1,
                        attempts: pending.attempts,
                        last_sent: None,
                        drops_before: Some(after),
                        ..pending
                    });
                    self.send_request().await;
                    return;
                }
                error!(
                    "bulk resync: the kernel's sync socket dropped {} messages even at the slowest pace; raise net.ipv4.vs.sync_sock_size",
                    after - before
                );
            }
        }
        let millis = pending.started.elapsed().as_millis() as u64;
        info!(
            "bulk resync: received {} connections in {} messages from {} ({} ms from the first request, {} attempts)",
            done.records, done.messages, from, millis, pending.attempts
        );
        let received = json!({
            "at_unix": unix_now(),
            "from": from.ip().to_string(),
            "records": done.records,
            "messages": done.messages,
            "master_millis": done.millis,
            "millis": millis,
            "attempts": pending.attempts,
            "pace": pending.pace,
            "kernel_socket_drops": drops_after.zip(pending.drops_before).map(|(a, b)| a.saturating_sub(b)),
        });
        stats(|s| {
            s.resyncs_received += 1;
            s.pending = None;
            s.last_received = Some(received);
        });
        self.pending = None;
        self.completed_nonce = Some(done.nonce);
        self.resynced_since_backup = true;
        self.release_hold("the bulk resync is done").await;
    }

    /// Holds a preemption while no resync has completed since the instance
    /// entered BACKUP, for the instance and the other members of its sync
    /// groups, until the resync is done, the sync role becomes master, or
    /// [`HOLD_LIMIT`] passes. A held backup still takes over when the
    /// master's adverts stop (a dead master is not waited for); it only does
    /// not preempt a live one.
    async fn check_hold(&mut self, model: &Model, status: &Status) {
        let Some(config) = &self.config else {
            return;
        };
        let Some(name) = config.instance.clone() else {
            return;
        };
        let Some(instance) = status.instances.iter().find(|i| i.name == name) else {
            return;
        };
        if let Some(hold) = &mut self.hold {
            if instance.state == State::Initialize {
                // Held from the start (`held_at_start`): the limit counts
                // from BACKUP.
                hold.since = Instant::now();
            } else if instance.state != State::Backup {
                self.release_hold("the instance left BACKUP").await;
            } else if hold.since.elapsed() >= HOLD_LIMIT {
                match instance.master {
                    Some(master) => error!(
                        "bulk resync: the master {master} has not sent its connection table within {} s; lifting the preemption hold of {name}: connections it did not bring will be reset if this router takes over",
                        HOLD_LIMIT.as_secs()
                    ),
                    None => warn!(
                        "bulk resync: no connection table within {} s; lifting the preemption hold of {name}",
                        HOLD_LIMIT.as_secs()
                    ),
                }
                stats(|s| s.hold_timeouts += 1);
                self.release_hold("the hold timed out").await;
                self.hold_spent = true;
            }
            return;
        }
        if instance.state != State::Backup {
            self.hold_spent = false;
            return;
        }
        if self.hold_spent || self.resynced_since_backup {
            return;
        }
        let held = instances_to_hold(model, &name);
        if held.is_empty() {
            return;
        }
        if let Some(commands) = &self.commands {
            for instance in &held {
                let command = DriverCommand::HoldPreemption {
                    instance: instance.clone(),
                    held: true,
                };
                if commands.send(command).await.is_err() {
                    return;
                }
            }
        }
        info!(
            "bulk resync: holding any preemption by {} until the connection table is here (at most {} s)",
            held.join(", "),
            HOLD_LIMIT.as_secs()
        );
        stats(|s| s.preemption_holds += 1);
        self.hold = Some(Hold {
            held,
            since: Instant::now(),
        });
    }

    async fn release_hold(&mut self, why: &str) {
        let Some(hold) = self.hold.take() else {
            return;
        };
        info!(
            "bulk resync: preemption hold of {} lifted after {} ms: {why}",
            hold.held.join(", "),
            hold.since.elapsed().as_millis()
        );
        if let Some(commands) = &self.commands {
            for instance in hold.held {
                let _ = commands
                    .send(DriverCommand::HoldPreemption {
                        instance,
                        held: false,
                    })
                    .await;
            }
        }
    }
}

/// The instances whose preemption a hold for `instance` (the
/// `lvs_sync_daemon` one) covers: it and every other member of the sync
/// groups it belongs to, those that could preempt (preempt on, not the
/// address owner); empty when none could.
fn instances_to_hold(model: &Model, instance: &str) -> Vec<String> {
    let mut names = vec![instance.to_owned()];
    for group in &model.sync_groups {
        if group.members.iter().any(|m| m == instance) {
            for member in &group.members {
                if !names.contains(member) {
                    names.push(member.clone());
                }
            }
        }
    }
    names
        .into_iter()
        .filter(|name| {
            model
                .vrrp_instances
                .iter()
                .any(|i| &i.name == name && i.preempt && i.priority != 255)
        })
        .collect()
}

struct DumpReport {
    /// Reading and packing the table (the rest of the dump is sending).
    read_millis: u64,
    entries: u32,
    records: u32,
    messages: u32,
    skipped: BTreeMap<&'static str, u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LvsSyncDaemon {
        LvsSyncDaemon {
            interface: "eth1".into(),
            instance: Some("VI_1".into()),
            sync_id: 7,
            max_len: None,
            port: None,
            ttl: None,
            group: None,
            bulk_resync: true,
        }
    }

    fn model(text: &str) -> Model {
        haldir_config::parse_toml(text, "test.toml").unwrap()
    }

    const GROUP: &str = r#"
[global_defs]
lvs_sync_daemon = { interface = "eth0", instance = "VI_PUB", id = 1 }

[[vrrp_sync_group]]
name = "G"
group = ["VI_PUB", "VI_PRIV"]

[[vrrp_instance]]
name = "VI_PUB"
interface = "eth0"
virtual_router_id = 1
priority = 150
virtual_ipaddress = ["10.0.0.100/24"]

[[vrrp_instance]]
name = "VI_PRIV"
interface = "eth1"
virtual_router_id = 2
priority = 150
virtual_ipaddress = ["10.1.0.100/24"]

[[vrrp_instance]]
name = "VI_OTHER"
interface = "eth2"
virtual_router_id = 3
priority = 150
virtual_ipaddress = ["10.2.0.100/24"]
"#;

    #[test]
    fn the_hold_covers_the_sync_daemons_instance_and_its_sync_group_only() {
        assert_eq!(held_at_start(&model(GROUP)), ["VI_PUB", "VI_PRIV"]);
    }

    #[test]
    fn instances_that_cannot_preempt_are_not_held() {
        let text = GROUP.replacen(
            "virtual_router_id = 2\npriority = 150",
            "virtual_router_id = 2\npriority = 150\nnopreempt = true",
            1,
        );
        assert_eq!(held_at_start(&model(&text)), ["VI_PUB"]);
        let owner = GROUP.replacen(
            "virtual_router_id = 1\npriority = 150",
            "virtual_router_id = 1\npriority = 255",
            1,
        );
        assert_eq!(held_at_start(&model(&owner)), ["VI_PRIV"]);
    }

    #[test]
    fn nothing_is_held_at_start_without_bulk_resync_or_an_instance() {
        let off = GROUP.replacen("id = 1 }", "id = 1, bulk_resync = false }", 1);
        assert!(held_at_start(&model(&off)).is_empty());
        let no_instance = GROUP.replacen("instance = \"VI_PUB\", ", "", 1);
        assert!(held_at_start(&model(&no_instance)).is_empty());
    }

    #[test]
    fn addresses_follow_the_kernel_defaults_and_the_configuration() {
        let a = Addresses::of(&config());
        assert_eq!(a.group, IpAddr::V4(DEFAULT_GROUP_V4));
        assert_eq!((a.sync_port, a.control_port, a.max_len), (8848, 8849, 1472));
        let mut c = config();
        c.group = Some("ff02::8148".parse().unwrap());
        c.port = Some(9000);
        c.max_len = Some(1200);
        let a = Addresses::of(&c);
        assert_eq!((a.sync_port, a.control_port, a.max_len), (9000, 9001, 1200));
        c.max_len = None;
        assert_eq!(Addresses::of(&c).max_len, 1452);
    }

    #[test]
    fn status_text_and_metrics_show_the_last_resyncs() {
        let status = json!({
            "enabled": true,
            "role": "backup",
            "pending": null,
            "last_sent": null,
            "last_received": {"at_unix": 100.0, "from": "10.0.0.1", "records": 40, "millis": 767},
        });
        let text = render_text(&status, 160.0);
        assert!(text.contains("sync role backup"), "{text}");
        assert!(
            text.contains("last received: 40 connections from 10.0.0.1 in 767 ms"),
            "{text}"
        );
        assert!(render_text(&json!({"enabled": false}), 0.0).is_empty());
        let mut metrics = String::new();
        render_metrics(&mut metrics);
        for family in [
            "haldir_bulk_resync_requests_total",
            "haldir_bulk_resync_dumps_total",
            "haldir_bulk_resync_last_duration_seconds",
            "haldir_bulk_resync_dropped_packets_total",
        ] {
            assert!(
                metrics.contains(&format!("# TYPE {family} ")),
                "{family}:\n{metrics}"
            );
        }
        assert!(!metrics.contains("NaN"), "{metrics}");
    }

    #[test]
    fn the_pace_slows_down_step_by_step() {
        assert_eq!(pacing(0), (16, Duration::from_millis(1)));
        assert_eq!(pacing(4), (1, Duration::from_millis(1)));
        assert_eq!(pacing(5), (1, Duration::from_millis(2)));
        assert_eq!(pacing(200), pacing(MAX_PACE));
    }

    #[test]
    fn the_kernel_sockets_drops_are_read_from_proc_net_udp() {
        // 224.0.0.81:8848 as a little-endian machine prints it.
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
   12: 510000E0:2290 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 0 2 0000000000000000 17\n\
   13: 00000000:2291 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5 2 0000000000000000 0\n";
        let group: IpAddr = "224.0.0.81".parse().unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(kernel_receive_drops(table, group, 8848), Some(17));
        }
        assert_eq!(kernel_receive_drops(table, group, 9999), None);
    }
}
