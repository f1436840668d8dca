//! What one router knows about its bulk resyncs, as a value ([`ResyncStatus`]): the
//! `bulk_resync` object of `haldir status --json` and the status file. The machine
//! ([`super::Resync::status`]) produces it; the daemon publishes it on a watch channel; the
//! status crate (`haldir-status`) renders it as text and Prometheus metrics.
//!
//! The fields of every struct are declared in alphabetical order: serialized, they come out
//! in the order the keys had when the object was an untyped JSON map.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The sync-daemon roles running, as status shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResyncRole {
    /// The master daemon only: this router answers requests.
    Master,
    /// The backup daemon only: this router asks.
    Backup,
    /// Both daemons.
    Both,
    /// Neither.
    #[default]
    None,
}

impl ResyncRole {
    /// `master`, `backup`, `both`, `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResyncRole::Master => "master",
            ResyncRole::Backup => "backup",
            ResyncRole::Both => "both",
            ResyncRole::None => "none",
        }
    }
}

/// A request waiting for its DONE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PendingStatus {
    /// Requests sent for it so far (all paces).
    pub attempts: u32,
    /// The first request of this resync, unix seconds.
    pub since_unix: f64,
}

/// The last dump this router sent (as master).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SentStatus {
    /// When it finished, unix seconds.
    pub at_unix: f64,
    /// Entries of the connection table read.
    pub entries: u32,
    /// Sync messages sent.
    pub messages: u32,
    /// Milliseconds from the request to the last message sent.
    pub millis: u32,
    /// The pace asked for.
    pub pace: u8,
    /// Of which reading and packing the table.
    pub read_millis: u64,
    /// Connection records sent.
    pub records: u32,
    /// Entries not sent, by reason.
    pub skipped: BTreeMap<String, u32>,
    /// The requester's address.
    pub to: String,
}

/// The last resync this router received (as backup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceivedStatus {
    /// When it completed, unix seconds.
    pub at_unix: f64,
    /// Requests sent (all paces).
    pub attempts: u32,
    /// The master that answered.
    pub from: String,
    /// Messages the kernel's receive socket dropped during the last dump (`None`: not
    /// readable, e.g. IPv6).
    pub kernel_socket_drops: Option<u64>,
    /// The master's dump, milliseconds.
    pub master_millis: u32,
    /// Sync messages the master sent.
    pub messages: u32,
    /// Milliseconds from the first request to DONE.
    pub millis: u64,
    /// The pace of the answered request.
    pub pace: u8,
    /// Connection records the master sent.
    pub records: u32,
}

/// The `bulk_resync` object of `haldir status --json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResyncStatus {
    /// Packets dropped, by reason ([`super::DropReason::as_str`]).
    pub drops: BTreeMap<String, u64>,
    /// Dumps sent.
    pub dumps_sent: u64,
    /// Configured and on.
    pub enabled: bool,
    /// Holds given up at the hold limit.
    pub hold_timeouts: u64,
    /// The last resync this router received.
    pub last_received: Option<ReceivedStatus>,
    /// The last dump this router sent.
    pub last_sent: Option<SentStatus>,
    /// A request waiting for its DONE.
    pub pending: Option<PendingStatus>,
    /// Preemptions held until a resync was done (or the hold limit).
    pub preemption_holds: u64,
    /// Records sent in all dumps.
    pub records_sent: u64,
    /// Requests received.
    pub requests_received: u64,
    /// Requests multicast.
    pub requests_sent: u64,
    /// Resyncs completed as a backup.
    pub resyncs_received: u64,
    /// The sync roles running.
    pub role: ResyncRole,
}
