//! The one typed status model of a running haldir: every output (control socket, `haldir
//! status`, the status file, `/metrics`) renders a value of these types.
//!
//! - [`StatusDocument`]: what the control socket answers to `status` (and `haldir status
//!   --json` prints); [`text::render`] turns it into the tables of `haldir status`,
//!   [`prometheus::render`] into `/metrics`. Two of its sections are the values of the
//!   machines that own them (the bulk resync's `haldir_ipvs::resync::ResyncStatus`, the DR
//!   ARP check's `haldir_director::arp_check::Report`); they are rendered here too.
//! - [`StatusFile`]: the content of `haldir run --status-file` (the VRRP part only).
//! - [`schema`]: the JSON Schema of both and [`schema::validate`].
//!
//! The fields of every struct are declared in alphabetical order: serialized, they come out
//! in the same order as the untyped `serde_json` maps the status was built from before.
//! Fields documented as "not in the JSON" feed `/metrics` only.
//!
//! The fields are described one by one in `docs/status.md`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

pub mod prometheus;
pub mod schema;
mod sections;
pub mod text;
pub mod time;
pub mod vrrp;

/// The version of the document's layout; bumped whenever a field changes meaning, type or
/// goes away (adding a field bumps it too: readers check with `deny_unknown_fields`).
pub const SCHEMA_VERSION: u32 = 3;

/// Accepts `null` or a value but, unlike serde's default for `Option`, not a missing field:
/// every field of the document is always present, `null` when it has no value.
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer)
}

/// The schema of a field that is always present and may be `null` (an `Option` read with
/// [`nullable`]); schemars leaves plain `Option` fields out of `required`.
struct Nullable<T>(std::marker::PhantomData<T>);

impl<T: JsonSchema> JsonSchema for Nullable<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Nullable_{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <Option<T>>::json_schema(generator)
    }
}

/// The whole status document of a running haldir (control socket `status`, `haldir status
/// --json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusDocument {
    /// The BGP announcement of the VIPs (`[announce]`, `haldir_director::announce`).
    pub announce: haldir_director::announce::AnnounceStatus,
    /// The bulk connection-table resync (the machine of `haldir_ipvs::resync`).
    pub bulk_resync: haldir_ipvs::resync::ResyncStatus,
    /// The configuration file the daemon runs from.
    pub config: String,
    /// The DR real-server ARP check (the machine of `haldir_director::arp_check`).
    pub dr_arp_check: haldir_director::arp_check::Report,
    /// One per VRRP instance, in configuration order.
    pub instances: Vec<Instance>,
    /// Why the kernel's IPVS table could not be read at the last try, or `null`.
    #[serde(deserialize_with = "nullable")]
    #[schemars(with = "Nullable<String>")]
    pub kernel_error: Option<String>,
    /// When the kernel's IPVS table was last read successfully, or `null`.
    #[serde(deserialize_with = "nullable")]
    #[schemars(with = "Nullable<f64>")]
    pub kernel_read_at_unix: Option<f64>,
    /// One per link (interface) the VRRP driver listens on.
    pub links: Vec<Link>,
    /// When the document was made (seconds since the Unix epoch).
    pub now_unix: f64,
    /// The daemon's process id.
    pub pid: u32,
    /// `global_defs.router_id` of the configuration, or `null`.
    #[serde(deserialize_with = "nullable")]
    #[schemars(with = "Nullable<String>")]
    pub router_id: Option<String>,
    /// The layout version of the document ([`SCHEMA_VERSION`]; readers check it).
    pub schema_version: u32,
    /// One per configured virtual server, in configuration order.
    pub virtual_servers: Vec<VirtualServer>,
    /// The daemon's own counters (not in the JSON: `/metrics` only).
    #[serde(skip)]
    #[schemars(skip)]
    pub daemon: DaemonCounters,
}

/// The content of the status file (`haldir run --status-file PATH`): the VRRP part of the
/// document and the bulk resync, rewritten whenever the VRRP status changes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusFile {
    /// As [`StatusDocument::bulk_resync`].
    pub bulk_resync: haldir_ipvs::resync::ResyncStatus,
    /// As [`StatusDocument::instances`].
    pub instances: Vec<Instance>,
    /// As [`StatusDocument::links`].
    pub links: Vec<Link>,
    /// The layout version of the document ([`SCHEMA_VERSION`]; readers check it).
    pub schema_version: u32,
}

impl StatusFile {
    /// The file's text: pretty-printed JSON.
    pub fn render(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// A VRRP state, spelled as keepalived spells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VrrpState {
    /// Not started yet.
    #[default]
    #[serde(rename = "INIT")]
    Initialize,
    /// Listening to the master.
    #[serde(rename = "BACKUP")]
    Backup,
    /// Holding the virtual addresses.
    #[serde(rename = "MASTER")]
    Master,
    /// Out of the election (tracked interface or script down).
    #[serde(rename = "FAULT")]
    Fault,
}

impl VrrpState {
    /// Every state, in the order `/metrics` lists them.
    pub const ALL: [VrrpState; 4] = [
        VrrpState::Initialize,
        VrrpState::Backup,
        VrrpState::Master,
        VrrpState::Fault,
    ];

    /// `INIT`, `BACKUP`, `MASTER` or `FAULT`.
    pub fn as_str(self) -> &'static str {
        match self {
            VrrpState::Initialize => "INIT",
            VrrpState::Backup => "BACKUP",
            VrrpState::Master => "MASTER",
            VrrpState::Fault => "FAULT",
        }
    }
}

/// One VRRP instance: its state and its counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    /// Adverts accepted whose virtual address list differs from ours.
    pub address_list_mismatch: u64,
    /// Adverts whose `auth_hmac` trailer verified.
    pub adverts_authenticated: u64,
    /// Valid adverts received and processed.
    pub adverts_received: u64,
    /// Adverts sent.
    pub adverts_sent: u64,
    /// Rounds of gratuitous ARP / unsolicited NA sent.
    pub announcements: u64,
    /// Adverts that failed `auth_hmac` checks and were accepted anyway, by reason.
    pub auth_accepted: BTreeMap<String, u64>,
    /// Transitions into MASTER.
    pub became_master: u64,
    /// Adverts dropped, by reason.
    pub drops: BTreeMap<String, u64>,
    /// Mastership handed over on request (`haldir handover`): it stays backup
    /// until the handover is cancelled.
    pub handed_over: bool,
    /// The interface it runs on.
    pub interface: String,
    /// The primary address of the master as last seen, or `null`.
    #[serde(deserialize_with = "nullable")]
    #[schemars(with = "Nullable<IpAddr>")]
    pub master: Option<IpAddr>,
    /// The instance's name.
    pub name: String,
    /// Preemption held while the connection table is resynced.
    pub preemption_held: bool,
    /// The priority it runs with now.
    pub priority: u8,
    /// Priority-0 (resignation) adverts received.
    pub priority_zero_received: u64,
    /// Priority-0 (resignation) adverts sent.
    pub priority_zero_sent: u64,
    /// Why the last transition happened, or `null`.
    #[serde(deserialize_with = "nullable")]
    #[schemars(with = "Nullable<String>")]
    pub reason: Option<String>,
    /// When the last transition happened (seconds since the Unix epoch), or `null`.
    #[serde(deserialize_with = "nullable")]
    #[schemars(with = "Nullable<f64>")]
    pub since_unix: Option<f64>,
    /// Its state.
    pub state: VrrpState,
    /// State transitions.
    pub transitions: u64,
}

/// Counters of one link that belong to no single instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// Packets dropped before reaching an instance, by reason.
    pub drops: BTreeMap<String, u64>,
    /// The interface.
    pub interface: String,
    /// Adverts that could not be sent.
    pub send_errors: u64,
    /// Source address of our adverts, or `null`.
    #[serde(deserialize_with = "nullable")]
    #[schemars(with = "Nullable<IpAddr>")]
    pub source: Option<IpAddr>,
}

/// The kernel's counters of an IPVS service or destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpvsStats {
    /// Connections scheduled.
    pub connections: u64,
    /// Incoming bytes.
    pub in_bytes: u64,
    /// Incoming packets.
    pub in_packets: u64,
    /// Outgoing bytes.
    pub out_bytes: u64,
    /// Outgoing packets.
    pub out_packets: u64,
}

/// One configured virtual server, live.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VirtualServer {
    /// Its real servers in configuration order, then any destination the kernel has that
    /// the configuration does not (about to be removed).
    pub destinations: Vec<Destination>,
    /// Whether the service is in the kernel's table.
    pub in_kernel: bool,
    /// The scheduler configured.
    pub scheduler: String,
    /// `TCP 192.0.2.10:80`, `UDP [2001:db8::1]:53`, `FWM 42 IPv4`.
    pub service: String,
    /// The kernel's counters, or `null` when it is not in the table.
    #[serde(deserialize_with = "nullable")]
    #[schemars(with = "Nullable<IpvsStats>")]
    pub stats: Option<IpvsStats>,
}

/// What the checker of a real server says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// The checker says up (or the real server has no checker and counts as up).
    Up,
    /// The checker says down: the real server is out of the IPVS table.
    Down,
    /// No checker result yet (or no health wiring).
    #[default]
    Unknown,
}

impl Health {
    /// `up`, `down` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
            Health::Unknown => "unknown",
        }
    }
}

/// One real server of a virtual server, live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// Active connections (kernel; 0 when not in the table).
    pub active_connections: u32,
    /// Its address.
    pub address: IpAddr,
    /// The checker's kind (`TCP_CHECK`, `HTTP_GET`, ...), or `null` when it has none.
    #[serde(deserialize_with = "nullable")]
    #[schemars(with = "Nullable<String>")]
    pub checker: Option<String>,
    /// The weight the configuration gives it (0: not configured).
    pub configured_weight: u32,
    /// What its checker says.
    pub health: Health,
    /// Inactive connections (kernel; 0 when not in the table).
    pub inactive_connections: u32,
    /// Its weight in the kernel's table, or `null` when it is not there.
    #[serde(deserialize_with = "nullable")]
    #[schemars(with = "Nullable<u32>")]
    pub kernel_weight: Option<u32>,
    /// The last check run, or `null` before the first.
    #[serde(deserialize_with = "nullable")]
    #[schemars(with = "Nullable<LastCheck>")]
    pub last_check: Option<LastCheck>,
    /// Its port.
    pub port: u16,
    /// The kernel's counters, or `null` when it is not in the table.
    #[serde(deserialize_with = "nullable")]
    #[schemars(with = "Nullable<IpvsStats>")]
    pub stats: Option<IpvsStats>,
    /// The checker's cumulative counters (not in the JSON: `/metrics` only).
    #[serde(skip)]
    #[schemars(skip)]
    pub check_counters: CheckCounters,
}

impl Destination {
    /// `ip:port`, with brackets for IPv6.
    pub fn address_text(&self) -> String {
        match self.address {
            IpAddr::V6(a) => format!("[{a}]:{}", self.port),
            IpAddr::V4(a) => format!("{a}:{}", self.port),
        }
    }
}

/// One check run, as the last one went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LastCheck {
    /// When it finished (seconds since the Unix epoch), or `null` on a clock before 1970.
    #[serde(deserialize_with = "nullable")]
    #[schemars(with = "Nullable<f64>")]
    pub at_unix: Option<f64>,
    /// How long it took, in seconds.
    pub latency_seconds: f64,
    /// `ok`, or why it failed (`connect: connection refused`, ...).
    pub result: String,
    /// Whether it found the server up.
    pub up: bool,
}

/// Upper bounds (seconds) of the checker latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Cumulative counters of one checker: results and a latency histogram.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckCounters {
    /// Runs that found the server up.
    pub up: u64,
    /// Runs that found it down.
    pub down: u64,
    /// Runs per bucket of [`LATENCY_BUCKETS`] (not cumulative: a run counts in
    /// the first bucket whose bound is at least its latency; slower ones in none).
    pub latency_buckets: [u64; LATENCY_BUCKETS.len()],
    /// Sum of every run's latency, in seconds.
    pub latency_sum_seconds: f64,
}

impl CheckCounters {
    /// Counts one run.
    pub fn observe(&mut self, up: bool, latency: std::time::Duration) {
        if up {
            self.up += 1;
        } else {
            self.down += 1;
        }
        let seconds = latency.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| seconds <= *b) {
            self.latency_buckets[i] += 1;
        }
        self.latency_sum_seconds += seconds;
    }

    /// Runs counted.
    pub fn count(&self) -> u64 {
        self.up + self.down
    }
}

/// Counters the daemon keeps outside the VRRP driver: the IPVS reconciler's, the notify
/// scripts' and the metrics server's (a snapshot; `/metrics` only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonCounters {
    /// Reconciliation rounds run.
    pub reconcile_runs: u64,
    /// Rounds whose read of the kernel table failed (the round was skipped).
    pub reconcile_read_errors: u64,
    /// Services added.
    pub ops_add_service: u64,
    /// Services changed in place.
    pub ops_set_service: u64,
    /// Services deleted.
    pub ops_del_service: u64,
    /// Destinations added.
    pub ops_add_dest: u64,
    /// Destinations changed in place.
    pub ops_set_dest: u64,
    /// Destinations deleted.
    pub ops_del_dest: u64,
    /// Operations the kernel refused.
    pub op_failures: u64,
    /// Notify scripts that exited 0.
    pub notify_ok: u64,
    /// Notify scripts that failed (non-zero exit, signal, could not start).
    pub notify_failed: u64,
    /// Notify scripts killed at `notify_timeout`.
    pub notify_timeout: u64,
    /// Transitions the notify task missed (its event channel overflowed).
    pub notify_missed: u64,
    /// Lines written to notify FIFOs (one per FIFO written to).
    pub notify_fifo_lines: u64,
    /// Lines a notify FIFO could not take (full: its reader is behind or gone).
    pub notify_fifo_dropped: u64,
    /// Connections to `/metrics` closed at once because the server had its maximum open.
    pub metrics_connections_refused: u64,
    /// Health checks scheduled now.
    pub health_checks_scheduled: u64,
    /// Health check runs started since haldir started.
    pub health_check_runs: u64,
    /// The worst lateness of a health check since haldir started: how long after its due
    /// time a run started (microseconds).
    pub health_check_max_lateness_us: u64,
    /// Desired IPVS tables published because a health check's verdict changed.
    pub health_table_publications: u64,
    /// Times changed verdicts waited for the publication pace (a table had just been
    /// published; they go out together, at most 1 s later).
    pub health_table_publications_held: u64,
}
