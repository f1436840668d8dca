//! What one router knows about its bulk resyncs, as a value ([`ResyncStatus`]): the
//! `bulk_resync` object of `haldir status --json` and the status file, and its text and
//! Prometheus renderings. The machine ([`super::Resync::status`]) produces it; the daemon
//! publishes it on a watch channel.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The sync-daemon roles running, as status shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingStatus {
    /// The first request of this resync, unix seconds.
    pub since_unix: f64,
    /// Requests sent for it so far (all paces).
    pub attempts: u32,
}

/// The last dump this router sent (as master).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentStatus {
    /// When it finished, unix seconds.
    pub at_unix: f64,
    /// The requester's address.
    pub to: String,
    /// Connection records sent.
    pub records: u32,
    /// Sync messages sent.
    pub messages: u32,
    /// Entries of the connection table read.
    pub entries: u32,
    /// Entries not sent, by reason.
    pub skipped: BTreeMap<String, u32>,
    /// The pace asked for.
    pub pace: u8,
    /// Milliseconds from the request to the last message sent.
    pub millis: u32,
    /// Of which reading and packing the table.
    pub read_millis: u64,
}

/// The last resync this router received (as backup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceivedStatus {
    /// When it completed, unix seconds.
    pub at_unix: f64,
    /// The master that answered.
    pub from: String,
    /// Connection records the master sent.
    pub records: u32,
    /// Sync messages the master sent.
    pub messages: u32,
    /// The master's dump, milliseconds.
    pub master_millis: u32,
    /// Milliseconds from the first request to DONE.
    pub millis: u64,
    /// Requests sent (all paces).
    pub attempts: u32,
    /// The pace of the answered request.
    pub pace: u8,
    /// Messages the kernel's receive socket dropped during the last dump (`None`: not
    /// readable, e.g. IPv6).
    pub kernel_socket_drops: Option<u64>,
}

/// The `bulk_resync` object of `haldir status --json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResyncStatus {
    /// Configured and on.
    pub enabled: bool,
    /// The sync roles running.
    pub role: ResyncRole,
    /// A request waiting for its DONE.
    pub pending: Option<PendingStatus>,
    /// The last dump this router sent.
    pub last_sent: Option<SentStatus>,
    /// The last resync this router received.
    pub last_received: Option<ReceivedStatus>,
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
    /// Preemptions held until a resync was done (or the hold limit).
    pub preemption_holds: u64,
    /// Holds given up at the hold limit.
    pub hold_timeouts: u64,
    /// Packets dropped, by reason ([`super::DropReason::as_str`]).
    pub drops: BTreeMap<String, u64>,
}

impl ResyncStatus {
    /// The bulk-resync lines of `haldir status` (nothing when it is off). `now_unix` is the
    /// status document's time; `age_text` spells a number of seconds ("5m12s").
    pub fn render_text(&self, now_unix: f64, age_text: impl Fn(f64) -> String) -> String {
        if !self.enabled {
            return String::new();
        }
        let mut out = format!("\nbulk resync: sync role {}", self.role.as_str());
        if let Some(pending) = &self.pending {
            let _ = write!(out, ", asking the master (attempt {})", pending.attempts);
        }
        out.push('\n');
        if let Some(last) = &self.last_sent {
            let _ = writeln!(
                out,
                "  last sent: {} connections to {} in {} ms, {} ago",
                last.records,
                last.to,
                last.millis,
                age_text(now_unix - last.at_unix)
            );
        }
        if let Some(last) = &self.last_received {
            let _ = writeln!(
                out,
                "  last received: {} connections from {} in {} ms, {} ago",
                last.records,
                last.from,
                last.millis,
                age_text(now_unix - last.at_unix)
            );
        }
        out
    }

    /// Appends the bulk-resync metric families (Prometheus text format).
    pub fn render_prometheus(&self, out: &mut String) {
        let sent = self.last_sent.as_ref();
        let received = self.last_received.as_ref();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                // An absent value (no resync yet) has no sample.
                if value.is_nan() {
                    continue;
                }
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let by_direction = |sent: Option<f64>, received: Option<f64>| {
            [
                ("{direction=\"sent\"}".to_owned(), sent.unwrap_or(f64::NAN)),
                (
                    "{direction=\"received\"}".to_owned(),
                    received.unwrap_or(f64::NAN),
                ),
            ]
        };
        family(
            "haldir_bulk_resync_requests_total",
            "counter",
            "Bulk-resync requests, by direction.",
            &by_direction(
                Some(self.requests_sent as f64),
                Some(self.requests_received as f64),
            ),
        );
        family(
            "haldir_bulk_resync_dumps_total",
            "counter",
            "Whole connection tables sent to a backup.",
            &[(String::new(), self.dumps_sent as f64)],
        );
        family(
            "haldir_bulk_resync_records_sent_total",
            "counter",
            "Connection records sent in bulk resyncs.",
            &[(String::new(), self.records_sent as f64)],
        );
        family(
            "haldir_bulk_resync_completed_total",
            "counter",
            "Bulk resyncs completed as a backup.",
            &[(String::new(), self.resyncs_received as f64)],
        );
        family(
            "haldir_bulk_resync_last_connections",
            "gauge",
            "Connection records in the last bulk resync, by direction.",
            &by_direction(
                sent.map(|s| f64::from(s.records)),
                received.map(|r| f64::from(r.records)),
            ),
        );
        family(
            "haldir_bulk_resync_last_duration_seconds",
            "gauge",
            "Duration of the last bulk resync: dump (sent), request to DONE (received).",
            &by_direction(
                sent.map(|s| f64::from(s.millis) / 1000.0),
                received.map(|r| r.millis as f64 / 1000.0),
            ),
        );
        family(
            "haldir_bulk_resync_last_timestamp_seconds",
            "gauge",
            "Unix time of the last bulk resync, by direction.",
            &by_direction(sent.map(|s| s.at_unix), received.map(|r| r.at_unix)),
        );
        family(
            "haldir_bulk_resync_preemption_holds_total",
            "counter",
            "Preemptions held until a bulk resync was done, by outcome.",
            &[
                (
                    "{outcome=\"done\"}".into(),
                    self.preemption_holds.saturating_sub(self.hold_timeouts) as f64,
                ),
                ("{outcome=\"timeout\"}".into(), self.hold_timeouts as f64),
            ],
        );
        let drops: Vec<(String, f64)> = self
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
}
