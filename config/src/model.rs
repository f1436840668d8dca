//! The validated configuration model: what every front-end (TOML today,
//! keepalived.conf later) produces and what the daemon is built from. A value of
//! these types has passed every check in `validate`, so consumers need not
//! re-check ranges.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::error::Loc;
use crate::virtual_ip::{VirtualIp, Vmac};
use crate::virtual_route::{VirtualRoute, VirtualRule};

/// A whole, validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    /// `global_defs.router_id`: a name for this router in logs and status
    /// output; no effect on the protocol.
    pub router_id: Option<String>,
    /// `global_defs.script_user` and `notify_timeout`.
    pub scripts: ScriptSettings,
    /// The VRRP instances, in file order. May be empty if `virtual_servers` is not.
    pub vrrp_instances: Vec<VrrpInstance>,
    /// The IPVS virtual servers, in file order. May be empty if
    /// `vrrp_instances` is not.
    pub virtual_servers: Vec<VirtualServer>,
    /// The `vrrp_script`s, in file order, each name once.
    pub vrrp_scripts: Vec<crate::model_health::VrrpScript>,
    /// The `vrrp_sync_group`s, in file order: each name once, each instance
    /// in at most one group.
    pub sync_groups: Vec<SyncGroup>,
    /// `global_defs.lvs_sync_daemon`: the kernel's connection-sync daemon.
    pub lvs_sync_daemon: Option<crate::lvs_sync::LvsSyncDaemon>,
    /// The `track_file` blocks, in file order, each name once.
    pub track_files: Vec<crate::track_file::TrackFile>,
    /// The `track_process` blocks, in file order, each name once.
    pub track_processes: Vec<crate::track_process::TrackProcess>,
    /// `global_defs.dynamic_interfaces`: an instance whose interface is
    /// missing waits for it in FAULT instead of failing the start.
    pub dynamic_interfaces: bool,
    /// keepalived's `static_ipaddress`, `static_routes` and `static_rules`:
    /// installed at start whatever the VRRP state, kept in step by reloads,
    /// removed at a graceful stop. Every address names its `dev`.
    pub statics: Statics,
    /// `global_defs.lvs_timeouts`: IPVS connection timeouts set at start and
    /// reload (`ipvsadm --set`).
    pub lvs_timeouts: LvsTimeouts,
    /// `global_defs`' notify FIFOs: one line per VRRP or checker event, in order.
    pub notify_fifos: crate::notify_fifo::NotifyFifos,
    /// `[announce]` (haldir extension, TOML only): the VIPs this director makes
    /// announceable over BGP by health (`docs/active-active.md`); `None`: nothing is
    /// announced and nothing changes.
    pub announce: Option<crate::announce::Announce>,
}

/// keepalived's `lvs_timeouts tcp N tcpfin N udp N`, in seconds; 0 leaves the
/// kernel's value as it is (IPVS_CMD_SET_CONFIG does the same).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LvsTimeouts {
    /// Established TCP connections.
    pub tcp_secs: u32,
    /// TCP connections after a FIN.
    pub tcp_fin_secs: u32,
    /// UDP.
    pub udp_secs: u32,
}

impl LvsTimeouts {
    /// The longest timeout the kernel takes: INT_MAX jiffies at HZ 1000.
    pub const MAX_SECS: u32 = 2_147_483;

    /// Reads `[tcp N] [tcpfin N] [udp N]` (any order, each once).
    pub fn from_words(words: &[String]) -> Result<LvsTimeouts, String> {
        let mut timeouts = LvsTimeouts::default();
        if words.is_empty() {
            return Err("lvs_timeouts: give at least one of `tcp N`, `tcpfin N`, `udp N`".into());
        }
        for pair in words.chunks(2) {
            let [key, value] = pair else {
                return Err(format!(
                    "lvs_timeouts: `{}` needs a number of seconds",
                    pair[0]
                ));
            };
            let slot = match key.as_str() {
                "tcp" => &mut timeouts.tcp_secs,
                "tcpfin" => &mut timeouts.tcp_fin_secs,
                "udp" => &mut timeouts.udp_secs,
                other => {
                    return Err(format!(
                        "lvs_timeouts: `{other}` is not `tcp`, `tcpfin` or `udp`"
                    ))
                }
            };
            let secs: u32 = value
                .parse()
                .ok()
                .filter(|s| (1..=Self::MAX_SECS).contains(s))
                .ok_or_else(|| {
                    format!(
                        "lvs_timeouts: `{key} {value}` must be 1..={} seconds",
                        Self::MAX_SECS
                    )
                })?;
            if *slot != 0 {
                return Err(format!("lvs_timeouts: `{key}` is given twice"));
            }
            *slot = secs;
        }
        Ok(timeouts)
    }

    /// Written back as keepalived's words, only the ones set.
    pub fn words(&self) -> String {
        [
            ("tcp", self.tcp_secs),
            ("tcpfin", self.tcp_fin_secs),
            ("udp", self.udp_secs),
        ]
        .iter()
        .filter(|(_, secs)| *secs != 0)
        .map(|(key, secs)| format!("{key} {secs}"))
        .collect::<Vec<_>>()
        .join(" ")
    }
}

/// keepalived's static addresses, routes and rules (see [`Model::statics`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Statics {
    /// `static_ipaddress`, each with `dev`.
    pub addresses: Vec<VirtualIp>,
    /// `static_routes`.
    pub routes: Vec<VirtualRoute>,
    /// `static_rules`.
    pub rules: Vec<VirtualRule>,
}

impl Model {
    /// The same model with every source location replaced by one empty value: two
    /// models read from different files or syntaxes compare equal when they configure
    /// the same thing (`haldir convert`'s round trip, the corpus tests, the fuzzers).
    pub fn without_locations(mut self) -> Model {
        let nowhere = Loc {
            file: "".into(),
            line: 0,
            col: 0,
        };
        for instance in &mut self.vrrp_instances {
            instance.loc = nowhere;
        }
        for vs in &mut self.virtual_servers {
            vs.loc = nowhere;
            for rs in &mut vs.real_servers {
                rs.loc = nowhere;
                for check in &mut rs.checks {
                    check.loc = nowhere;
                }
            }
        }
        for script in &mut self.vrrp_scripts {
            script.loc = nowhere;
        }
        for group in &mut self.sync_groups {
            group.loc = nowhere;
        }
        for file in &mut self.track_files {
            file.loc = nowhere;
        }
        for process in &mut self.track_processes {
            process.loc = nowhere;
        }
        self
    }
}

/// One `track_interface` entry (keepalived.conf(5), `vrrp_instance`): with weight 0, the
/// interface down puts the instance in FAULT (with `reverse`, the interface up does); a
/// positive weight is added to the priority while the interface is up, a negative one
/// while it is down; `reverse` turns the adjustment round.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrackedInterface {
    /// The interface's name.
    pub name: String,
    /// -253..=253; 0: FAULT instead of a priority change.
    pub weight: i32,
    /// `reverse`.
    pub reverse: bool,
}

/// A sync group (keepalived's `vrrp_sync_group`): instances that change
/// state together. One member going to FAULT puts all in FAULT; one
/// becoming MASTER or BACKUP takes the others along.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroup {
    /// Unique group name.
    pub name: String,
    /// The member instances, by name, in the order written; at least two,
    /// each defined and listed once.
    pub members: Vec<String>,
    /// The group's notify scripts (`notify` gets `GROUP NAME STATE 0`).
    pub notify: NotifyScripts,
    /// Where the group starts in the configuration file.
    pub loc: Loc,
}

/// How notify scripts (and other scripts haldir runs) are run: `global_defs`
/// `script_user` and `notify_timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptSettings {
    /// `script_user USER [GROUP]`: the account scripts run as; `None`:
    /// `keepalived_script` if that account exists, else `nobody`.
    pub user: Option<String>,
    /// The group of `script_user`; `None`: the user's primary group.
    pub group: Option<String>,
    /// `notify_timeout`: a notify script still running after this long is
    /// killed (with its process group).
    pub notify_timeout: std::time::Duration,
    /// `enable_script_security`: refuse every script, and the configuration
    /// file and its includes, that anyone but root can change (the file or a
    /// directory on its path). Off by default, as in keepalived; scripts that
    /// run as root are checked either way.
    pub security: bool,
}

impl Default for ScriptSettings {
    fn default() -> Self {
        ScriptSettings {
            user: None,
            group: None,
            notify_timeout: std::time::Duration::from_secs(30),
            security: false,
        }
    }
}

/// An instance's notify scripts (keepalived's `notify_*`), as written: a
/// command line split like keepalived (no shell). `notify` is called with
/// `INSTANCE NAME STATE PRIORITY` appended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyScripts {
    /// `notify_master`: run on entering MASTER.
    pub master: Option<String>,
    /// `notify_backup`: run on entering BACKUP.
    pub backup: Option<String>,
    /// `notify_fault`: run on entering FAULT.
    pub fault: Option<String>,
    /// `notify_stop`: run when the instance stops.
    pub stop: Option<String>,
    /// `notify`: run on every transition, with keepalived's arguments.
    pub notify: Option<String>,
}

impl NotifyScripts {
    /// Every configured script as (keyword, command line).
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("notify_master", &self.master),
            ("notify_backup", &self.backup),
            ("notify_fault", &self.fault),
            ("notify_stop", &self.stop),
            ("notify", &self.notify),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    }
}

/// One VRRP virtual router (keepalived's `vrrp_instance`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpInstance {
    /// Unique instance name.
    pub name: String,
    /// Interface the adverts are sent and received on.
    pub interface: String,
    /// Virtual router identifier, 1..=255.
    pub virtual_router_id: u8,
    /// Priority, 1..=255; 255 means this router owns the virtual addresses.
    pub priority: u8,
    /// Advertisement interval in centiseconds: a multiple of 100 in 100..=25500
    /// for version 2, 1..=4095 for version 3.
    pub advert_int_centis: u16,
    /// Protocol version.
    pub version: VrrpVersion,
    /// Address family of every virtual address (and of the unicast addresses).
    pub family: AddressFamily,
    /// The virtual addresses, in file order; non-empty, all of `family`, no
    /// duplicates. These are carried in adverts.
    pub virtual_ipaddress: Vec<VirtualIp>,
    /// keepalived's `virtual_ipaddress_excluded`: added and removed with the
    /// virtual addresses, announced with them, but not carried in adverts, so
    /// they may be of either family; no address is in both lists.
    pub virtual_ipaddress_excluded: Vec<VirtualIp>,
    /// keepalived's `virtual_routes`: added once the addresses are, while the
    /// instance holds them (master), and deleted when it gives them up.
    pub virtual_routes: Vec<VirtualRoute>,
    /// keepalived's `virtual_rules`: policy-routing rules, like the routes.
    pub virtual_rules: Vec<VirtualRule>,
    /// keepalived's `use_vmac`: the addresses of the instance's family that
    /// name no other `dev` go on this macvlan with the virtual MAC.
    pub use_vmac: Option<Vmac>,
    /// keepalived's `vmac_xmit_base`: adverts leave through the instance's
    /// interface instead of the macvlan.
    pub vmac_xmit_base: bool,
    /// Whether a higher-priority backup takes over from a lower-priority master
    /// (keepalived's `nopreempt` inverted). Always true when `priority` is 255.
    pub preempt: bool,
    /// Seconds to wait after start-up before preempting, 0..=1000.
    pub preempt_delay_secs: u16,
    /// Whether the master accepts packets addressed to the virtual addresses
    /// it does not own (RFC 5798 Accept_Mode).
    pub accept: bool,
    /// Source address for unicast adverts; `None` = the interface's primary address.
    pub unicast_src_ip: Option<IpAddr>,
    /// Peers for unicast adverts; empty = multicast.
    pub unicast_peer: Vec<IpAddr>,
    /// Seconds after becoming master before the second burst of gratuitous
    /// ARPs / unsolicited NAs; 0 = no second burst.
    pub garp_master_delay_secs: u32,
    /// Gratuitous ARPs / NAs per burst, at least 1.
    pub garp_master_repeat: u32,
    /// Seconds between periodic refresh bursts while master; 0 = off.
    pub garp_master_refresh_secs: u32,
    /// Gratuitous ARPs / NAs per refresh burst, at least 1 (keepalived's
    /// `garp_master_refresh_repeat`, default 1).
    pub garp_master_refresh_repeat: u32,
    /// Milliseconds between the gratuitous ARPs / NAs of one burst.
    pub garp_interval_millis: u32,
    /// Version 2 simple-password authentication; always `None` for version 3.
    pub authentication: Option<Authentication>,
    /// `auth_hmac`: HMAC-SHA256 authentication of adverts (v2 and v3).
    pub auth_hmac: Option<crate::auth_hmac::AuthHmac>,
    /// Notify scripts (`notify_master`, `notify_backup`, `notify_fault`,
    /// `notify_stop`, `notify`).
    pub notify: NotifyScripts,
    /// `track_script`: the `vrrp_script`s whose state moves this instance's
    /// priority (or puts it in FAULT), each name once and defined.
    pub track_script: Vec<crate::model_health::TrackScript>,
    /// `track_interface`: interfaces whose state (administratively up and with
    /// carrier) moves this instance: with weight 0 (the default) while one is down the
    /// instance is in FAULT; a weight moves its priority instead. Each name once.
    pub track_interface: Vec<TrackedInterface>,
    /// `track_file`: the `track_file` blocks whose value moves this instance's
    /// priority (or puts it in FAULT), each name once and defined.
    pub track_file: Vec<crate::track_file::TrackedFile>,
    /// `track_process`: the `track_process` blocks whose quorum moves this instance's
    /// priority (or puts it in FAULT), each name once and defined.
    pub track_process: Vec<crate::track_process::TrackedProcess>,
    /// Where the instance's table starts in the configuration file.
    pub loc: Loc,
}

/// VRRP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VrrpVersion {
    /// RFC 3768: IPv4 only, advert interval in whole seconds, optional password.
    V2,
    /// RFC 5798: IPv4 and IPv6, advert interval in centiseconds, no authentication.
    V3,
}

/// IP address family of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

impl AddressFamily {
    /// The family of `addr`.
    pub fn of(addr: &IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => AddressFamily::Ipv4,
            IpAddr::V6(_) => AddressFamily::Ipv6,
        }
    }

    /// The longest prefix length of the family (32 or 128).
    pub fn max_prefix_len(self) -> u8 {
        match self {
            AddressFamily::Ipv4 => 32,
            AddressFamily::Ipv6 => 128,
        }
    }
}

impl fmt::Display for AddressFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressFamily::Ipv4 => "IPv4",
            AddressFamily::Ipv6 => "IPv6",
        })
    }
}

/// A virtual address with the prefix length it is added with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VirtualAddress {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length, at most 32 (IPv4) or 128 (IPv6).
    pub prefix_len: u8,
}

impl fmt::Display for VirtualAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Why a string is not a virtual address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VirtualAddressError {
    /// The part before `/` is not an IP address.
    BadAddress,
    /// The part after `/` is not a number in range for the family.
    BadPrefixLen {
        /// The family of the address, which sets the range.
        family: AddressFamily,
    },
}

impl fmt::Display for VirtualAddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VirtualAddressError::BadAddress => f.write_str(
                "not an IP address; write ADDRESS or ADDRESS/PREFIX, e.g. \"192.0.2.10/24\" or \"2001:db8::10/64\"",
            ),
            VirtualAddressError::BadPrefixLen { family } => write!(
                f,
                "the prefix length of an {family} address must be 0..={}",
                family.max_prefix_len()
            ),
        }
    }
}

impl std::error::Error for VirtualAddressError {}

impl FromStr for VirtualAddress {
    type Err = VirtualAddressError;

    /// Parses `ADDRESS` or `ADDRESS/PREFIX`; without a prefix the address is a
    /// host address (/32 or /128), as keepalived does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| VirtualAddressError::BadAddress)?;
        let family = AddressFamily::of(&addr);
        let prefix_len = match prefix {
            None => family.max_prefix_len(),
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&len| len <= family.max_prefix_len() && !p.starts_with('+'))
                .ok_or(VirtualAddressError::BadPrefixLen { family })?,
        };
        Ok(VirtualAddress { addr, prefix_len })
    }
}

/// VRRP version 2 authentication.
#[derive(Clone, PartialEq, Eq)]
pub enum Authentication {
    /// Simple text password (RFC 2338 §5.3.6), 1..=8 bytes.
    Pass(String),
}

/// Keeps the password out of logs.
impl fmt::Debug for Authentication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Authentication::Pass(_) => f.write_str("Pass(<redacted>)"),
        }
    }
}

/// What identifies a virtual server: an address and port, or a firewall mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VirtualServerAddress {
    /// `ip` + `port`.
    Socket {
        /// Virtual address.
        ip: IpAddr,
        /// Virtual port, 1..=65535.
        port: u16,
    },
    /// `fwmark`, 1..=2^32-1.
    Fwmark(u32),
}

/// Transport protocol of a virtual server (keepalived `protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LvsProtocol {
    /// "TCP" (the default).
    Tcp,
    /// "UDP".
    Udp,
    /// "SCTP".
    Sctp,
}

/// An IPVS scheduler (keepalived `lb_algo` / `lvs_sched`); each is the
/// kernel module `ip_vs_<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LvsScheduler {
    /// Round robin.
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connection.
    Lc,
    /// Weighted least connection (ipvsadm's default).
    Wlc,
    /// Locality-based least connection.
    Lblc,
    /// Locality-based least connection with replication.
    Lblcr,
    /// Destination hashing.
    Dh,
    /// Source hashing.
    Sh,
    /// Shortest expected delay.
    Sed,
    /// Never queue.
    Nq,
    /// Weighted failover.
    Fo,
    /// Weighted overflow.
    Ovf,
    /// Maglev hashing.
    Mh,
    /// Weighted random twos choice.
    Twos,
}

impl LvsScheduler {
    /// Every scheduler, in the order the docs list them.
    pub const ALL: [LvsScheduler; 14] = [
        LvsScheduler::Rr,
        LvsScheduler::Wrr,
        LvsScheduler::Lc,
        LvsScheduler::Wlc,
        LvsScheduler::Lblc,
        LvsScheduler::Lblcr,
        LvsScheduler::Dh,
        LvsScheduler::Sh,
        LvsScheduler::Sed,
        LvsScheduler::Nq,
        LvsScheduler::Fo,
        LvsScheduler::Ovf,
        LvsScheduler::Mh,
        LvsScheduler::Twos,
    ];

    /// The name the kernel and keepalived use ("wrr").
    pub fn name(self) -> &'static str {
        match self {
            LvsScheduler::Rr => "rr",
            LvsScheduler::Wrr => "wrr",
            LvsScheduler::Lc => "lc",
            LvsScheduler::Wlc => "wlc",
            LvsScheduler::Lblc => "lblc",
            LvsScheduler::Lblcr => "lblcr",
            LvsScheduler::Dh => "dh",
            LvsScheduler::Sh => "sh",
            LvsScheduler::Sed => "sed",
            LvsScheduler::Nq => "nq",
            LvsScheduler::Fo => "fo",
            LvsScheduler::Ovf => "ovf",
            LvsScheduler::Mh => "mh",
            LvsScheduler::Twos => "twos",
        }
    }

    /// The scheduler called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// How the director forwards to the real servers (keepalived `lb_kind` / `lvs_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LvsMethod {
    /// "DR": direct routing; replies go straight from the real server to the client.
    DirectRouting,
    /// "NAT": masquerading (keepalived's default).
    Nat,
    /// "TUN": IP-in-IP tunnelling.
    Tunnel,
}

/// Client persistence of a virtual server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LvsPersistence {
    /// Seconds (`persistence_timeout`), at least 1.
    pub timeout_secs: u32,
    /// Client networks of this prefix length share a real server
    /// (`persistence_granularity`; default /32 or /128).
    pub granularity_prefix_len: u8,
}

/// The scheduler flags of a virtual server (`IP_VS_SVC_F_SCHED1..3`, ipvsadm `-b`):
/// keepalived's `flag-1`..`flag-3`, which the `sh` and `mh` schedulers name: flag-1 is
/// `sh-fallback` / `mh-fallback` (a real server that is unavailable passes its share to
/// the next by hash), flag-2 is `sh-port` / `mh-port` (the source port is hashed too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SchedulerFlags(u8);

/// Every scheduler flag name: the flag (1..=3) and the scheduler it is a flag of, if it
/// is one scheduler's (keepalived's `check_parser.c` takes `sh-*` for `sh` only and
/// `mh-*` for `mh` only).
const SCHEDULER_FLAG_NAMES: [(&str, u8, Option<LvsScheduler>); 7] = [
    ("flag-1", 1, None),
    ("flag-2", 2, None),
    ("flag-3", 3, None),
    ("sh-fallback", 1, Some(LvsScheduler::Sh)),
    ("sh-port", 2, Some(LvsScheduler::Sh)),
    ("mh-fallback", 1, Some(LvsScheduler::Mh)),
    ("mh-port", 2, Some(LvsScheduler::Mh)),
];

impl SchedulerFlags {
    /// No flag.
    pub const NONE: SchedulerFlags = SchedulerFlags(0);

    /// Every name a flag can be written with.
    pub fn all_names() -> impl Iterator<Item = &'static str> {
        SCHEDULER_FLAG_NAMES.iter().map(|(name, _, _)| *name)
    }

    /// The flag called `name` (1..=3) and the scheduler it belongs to, if only one.
    pub fn parse_name(name: &str) -> Option<(u8, Option<LvsScheduler>)> {
        SCHEDULER_FLAG_NAMES
            .iter()
            .find(|(known, _, _)| *known == name)
            .map(|(_, flag, scheduler)| (*flag, *scheduler))
    }

    /// These flags and flag `flag` (1..=3).
    pub fn with(self, flag: u8) -> SchedulerFlags {
        debug_assert!((1..=3).contains(&flag));
        SchedulerFlags(self.0 | 1 << (flag - 1))
    }

    /// Whether flag `flag` (1..=3) is set.
    pub fn contains(self, flag: u8) -> bool {
        (1..=3).contains(&flag) && self.0 & (1 << (flag - 1)) != 0
    }

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set flags by the names `scheduler` gives them (`mh-port` for `mh`,
    /// `flag-2` for a scheduler without names), in flag order.
    pub fn names(self, scheduler: LvsScheduler) -> Vec<&'static str> {
        (1..=3)
            .filter(|&flag| self.contains(flag))
            .map(|flag| {
                let own = SCHEDULER_FLAG_NAMES
                    .iter()
                    .find(|(_, f, s)| *f == flag && *s == Some(scheduler));
                let generic = SCHEDULER_FLAG_NAMES
                    .iter()
                    .find(|(_, f, s)| *f == flag && s.is_none());
                own.or(generic).map_or("flag-?", |(name, _, _)| *name)
            })
            .collect()
    }
}

/// One IPVS virtual service with its real servers (keepalived `virtual_server`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualServer {
    /// Address + port, or fwmark.
    pub address: VirtualServerAddress,
    /// Family of the service (of `ip`; for a fwmark, of the real servers, IPv4 if none).
    pub family: AddressFamily,
    /// Transport protocol (ignored by the kernel for a fwmark service).
    pub protocol: LvsProtocol,
    /// Scheduler.
    pub scheduler: LvsScheduler,
    /// Forwarding method of every real server.
    pub method: LvsMethod,
    /// Client persistence, if `persistence_timeout` is set.
    pub persistence: Option<LvsPersistence>,
    /// One-packet scheduling (`ops`, UDP only).
    pub one_packet: bool,
    /// The scheduler's own flags (`mh-port`, `sh-fallback`, `flag-3`, ...).
    pub scheduler_flags: SchedulerFlags,
    /// Milliseconds between health-check rounds (`delay_loop`), if set.
    pub delay_loop_millis: Option<u32>,
    /// `quorum`: the live weight (sum of the weights of the real servers that
    /// are up) the service needs (default 1).
    pub quorum: u32,
    /// `hysteresis`: the quorum is lost below `quorum - hysteresis` and
    /// regained at `quorum + hysteresis` (default 0).
    pub hysteresis: u32,
    /// `sorry_server`: the only destination while the quorum is lost.
    pub sorry_server: Option<crate::model_health::SorryServer>,
    /// `omega`: on shutdown, report the servers still up as going down.
    pub omega: bool,
    /// `quorum_up` / `quorum_down`: run (as `script_user`) when the quorum is gained
    /// or lost.
    pub quorum_scripts: LvsScripts,
    /// The real servers, in file order, each (ip, port) once.
    pub real_servers: Vec<RealServer>,
    /// Where the table starts in the configuration file.
    pub loc: Loc,
}

/// One real server (keepalived `real_server`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealServer {
    /// Address.
    pub ip: IpAddr,
    /// Port (default: the virtual server's; 0 for a fwmark service).
    pub port: u16,
    /// Weight, 0..=65535 (default 1); 0 takes no new connections.
    pub weight: u32,
    /// Upper connection threshold, 0 = none.
    pub upper_threshold: u32,
    /// Lower connection threshold, at most the upper one.
    pub lower_threshold: u32,
    /// `inhibit_on_failure` (real server's, else the virtual server's): a
    /// failed server stays in the table with weight 0 instead of being removed.
    pub inhibit_on_failure: bool,
    /// The health checkers; the server is up when all are (none: always up).
    pub checks: Vec<crate::model_health::HealthCheck>,
    /// `notify_up` / `notify_down`: run (as `script_user`) when the real server comes up
    /// (all its checkers up) or goes down.
    pub notify: LvsScripts,
    /// Where the table starts in the configuration file.
    pub loc: Loc,
}

/// The command lines keepalived runs on a virtual server's quorum change (`quorum_up`,
/// `quorum_down`) or a real server's (`notify_up`, `notify_down`); no arguments added.
/// One pointer wide, allocated only when one is set: every real server has these
/// settings and few use them (at 10,000 virtual servers × 4, two inline `Option<String>`s
/// were 2 MB of the model).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LvsScripts(Option<Box<[Option<String>; 2]>>);

impl LvsScripts {
    /// `up` runs on the way up, `down` on the way down.
    pub fn new(up: Option<String>, down: Option<String>) -> Self {
        if up.is_none() && down.is_none() {
            LvsScripts(None)
        } else {
            LvsScripts(Some(Box::new([up, down])))
        }
    }

    /// Run on the way up.
    pub fn up(&self) -> Option<&str> {
        self.0.as_ref().and_then(|pair| pair[0].as_deref())
    }

    /// Run on the way down.
    pub fn down(&self) -> Option<&str> {
        self.0.as_ref().and_then(|pair| pair[1].as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_address_without_prefix_is_a_host_address() {
        let v4: VirtualAddress = "192.0.2.10".parse().unwrap();
        assert_eq!(v4.to_string(), "192.0.2.10/32");
        let v6: VirtualAddress = "2001:db8::10".parse().unwrap();
        assert_eq!(v6.to_string(), "2001:db8::10/128");
    }

    #[test]
    fn virtual_address_prefix_must_fit_the_family() {
        assert_eq!(
            "192.0.2.10/24"
                .parse::<VirtualAddress>()
                .unwrap()
                .prefix_len,
            24
        );
        assert_eq!(
            "192.0.2.10/33".parse::<VirtualAddress>(),
            Err(VirtualAddressError::BadPrefixLen {
                family: AddressFamily::Ipv4
            })
        );
        assert!("2001:db8::1/128".parse::<VirtualAddress>().is_ok());
        assert!("2001:db8::1/129".parse::<VirtualAddress>().is_err());
        assert!("192.0.2.10/+8".parse::<VirtualAddress>().is_err());
        assert_eq!(
            "192.0.2.300".parse::<VirtualAddress>(),
            Err(VirtualAddressError::BadAddress)
        );
    }

    #[test]
    fn authentication_debug_hides_the_password() {
        let auth = Authentication::Pass("secret".into());
        assert_eq!(format!("{auth:?}"), "Pass(<redacted>)");
    }
}
