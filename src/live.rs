//! The live state of the virtual servers, for `haldir status` and `/metrics`:
//! each configured virtual server with its real servers, the weight each has
//! in the configuration and in the kernel, the health its checker reports and
//! the kernel's counters.
//!
//! Two inputs, two owners:
//! - [`HealthMap`], on a `watch` channel, is fed by the health wiring: one
//!   [`RealServerHealth`] per (service, real server) with a checker. A real
//!   server missing from the map has health [`Health::Unknown`].
//! - The kernel table is read here, by [`run`], every `interval` and whenever
//!   the configuration or the health map changes.
//!
//! [`run`] publishes a [`LiveVirtualServers`] on its own `watch` channel.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use haldir_config::VirtualServer;
use haldir_ipvs::client::{DestEntry, ServiceEntry};
use haldir_ipvs::netlink::Stats;
use haldir_ipvs::{DestKey, IpvsClient, ServiceKey};
use serde_json::{json, Value};
use tokio::sync::watch;

/// What the checker of a real server says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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

/// One check run, as the last one went.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    /// Whether it found the server up.
    pub up: bool,
    /// `"ok"`, or why it failed (`"connect: connection refused"`, ...).
    pub text: String,
    /// When it finished.
    pub at: SystemTime,
    /// How long it took.
    pub latency: Duration,
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
    pub fn observe(&mut self, up: bool, latency: Duration) {
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

/// What the health wiring knows about one real server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RealServerHealth {
    /// Its state as the checker's hysteresis has it.
    pub health: Health,
    /// The checker's kind (`TCP_CHECK`, `HTTP_GET`, ...).
    pub checker: Option<String>,
    /// The last run.
    pub last_check: Option<CheckResult>,
    /// Cumulative counters, for metrics.
    pub counters: CheckCounters,
}

/// The health of every checked real server, fed by the health wiring.
pub type HealthMap = BTreeMap<(ServiceKey, DestKey), RealServerHealth>;

/// One real server of a virtual server, live.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationStatus {
    /// Its kernel key (address and port).
    pub key: DestKey,
    /// The weight the configuration gives it.
    pub configured_weight: u32,
    /// Its weight in the kernel table; `None` when it is not there (down, or
    /// the kernel table could not be read).
    pub kernel_weight: Option<u32>,
    /// Active connections (kernel).
    pub active_conns: u32,
    /// Inactive connections (kernel).
    pub inactive_conns: u32,
    /// The kernel's counters for it.
    pub stats: Option<Stats>,
    /// What its checker says.
    pub health: RealServerHealth,
}

/// One configured virtual server, live.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualServerStatus {
    /// Its kernel key.
    pub key: ServiceKey,
    /// The scheduler configured.
    pub scheduler: String,
    /// Whether the service is in the kernel table.
    pub in_kernel: bool,
    /// The kernel's counters for it.
    pub stats: Option<Stats>,
    /// Its real servers, in configuration order; then any destination the
    /// kernel has that the configuration does not (about to be removed).
    pub destinations: Vec<DestinationStatus>,
}

/// Every virtual server, live.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveVirtualServers {
    /// In configuration order.
    pub virtual_servers: Vec<VirtualServerStatus>,
    /// When the kernel table was last read successfully.
    pub kernel_read_at: Option<SystemTime>,
    /// Why the kernel table could not be read, if it could not.
    pub kernel_error: Option<String>,
}

/// The kernel's side of one service: settings, counters and destinations.
pub type KernelService = (ServiceEntry, Vec<DestEntry>);

/// Combines the configuration, the kernel table (`None`: not read) and the
/// health map.
pub fn combine(
    servers: &[VirtualServer],
    kernel: Option<&BTreeMap<ServiceKey, KernelService>>,
    health: &HealthMap,
) -> Vec<VirtualServerStatus> {
    servers
        .iter()
        .map(|vs| {
            let key = haldir_director::ipvs_table::service_key(vs);
            let in_kernel = kernel.and_then(|k| k.get(&key));
            let mut destinations: Vec<DestinationStatus> = vs
                .real_servers
                .iter()
                .map(|rs| {
                    let (dest_key, dest) = haldir_director::ipvs_table::destination(vs, rs);
                    let entry =
                        in_kernel.and_then(|(_, dests)| dests.iter().find(|d| d.key == dest_key));
                    DestinationStatus {
                        key: dest_key,
                        configured_weight: dest.weight,
                        kernel_weight: entry.map(|e| e.dest.weight),
                        active_conns: entry.map_or(0, |e| e.active_conns),
                        inactive_conns: entry.map_or(0, |e| e.inactive_conns),
                        stats: entry.map(|e| e.stats),
                        health: health.get(&(key, dest_key)).cloned().unwrap_or_default(),
                    }
                })
                .collect();
            if let Some((_, dests)) = in_kernel {
                let extras: Vec<&DestEntry> = dests
                    .iter()
                    .filter(|d| !destinations.iter().any(|c| c.key == d.key))
                    .collect();
                for extra in extras {
                    destinations.push(DestinationStatus {
                        key: extra.key,
                        configured_weight: 0,
                        kernel_weight: Some(extra.dest.weight),
                        active_conns: extra.active_conns,
                        inactive_conns: extra.inactive_conns,
                        stats: Some(extra.stats),
                        health: RealServerHealth::default(),
                    });
                }
            }
            VirtualServerStatus {
                key,
                scheduler: vs.scheduler.name().to_owned(),
                in_kernel: in_kernel.is_some(),
                stats: in_kernel.map(|(s, _)| s.stats),
                destinations,
            }
        })
        .collect()
}

/// Reads the services of `keys` and their destinations from the kernel.
async fn read_kernel(
    client: &IpvsClient,
    keys: &[ServiceKey],
) -> Result<BTreeMap<ServiceKey, KernelService>, haldir_ipvs::IpvsError> {
    let mut table = BTreeMap::new();
    for service in client.services().await? {
        if !keys.contains(&service.key) {
            continue;
        }
        let dests = client.destinations(&service.key).await?;
        table.insert(service.key, (service, dests));
    }
    Ok(table)
}

/// Keeps `live` up to date: on every change of `servers` or `health`, and
/// every `interval` (the kernel's counters and weights). Returns when
/// `shutdown` turns true.
pub async fn run(
    mut servers: watch::Receiver<Vec<VirtualServer>>,
    mut health: watch::Receiver<HealthMap>,
    live: watch::Sender<LiveVirtualServers>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut client: Option<IpvsClient> = None;
    let mut health_open = true;
    loop {
        let configured = servers.borrow_and_update().clone();
        let map = health.borrow_and_update().clone();
        let mut kernel_error = None;
        let mut kernel = None;
        if !configured.is_empty() {
            if client.is_none() {
                match IpvsClient::connect().await {
                    Ok(c) => client = Some(c),
                    Err(e) => kernel_error = Some(e.to_string()),
                }
            }
            if let Some(c) = &client {
                let keys: Vec<ServiceKey> = configured
                    .iter()
                    .map(haldir_director::ipvs_table::service_key)
                    .collect();
                match read_kernel(c, &keys).await {
                    Ok(table) => kernel = Some(table),
                    Err(e) => kernel_error = Some(e.to_string()),
                }
            }
        }
        let virtual_servers = combine(&configured, kernel.as_ref(), &map);
        live.send_modify(|l| {
            l.virtual_servers = virtual_servers;
            if kernel.is_some() {
                l.kernel_read_at = Some(SystemTime::now());
            }
            l.kernel_error = kernel_error;
        });
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            changed = servers.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            changed = health.changed(), if health_open => {
                // Nobody feeds health (yet): the rest goes on.
                health_open = changed.is_ok();
            }
            () = tokio::time::sleep(interval) => {}
        }
    }
}

fn unix_seconds(t: SystemTime) -> Option<f64> {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs_f64())
}

fn stats_json(stats: &Option<Stats>) -> Value {
    match stats {
        None => Value::Null,
        Some(s) => json!({
            "connections": s.conns,
            "in_packets": s.in_packets,
            "out_packets": s.out_packets,
            "in_bytes": s.in_bytes,
            "out_bytes": s.out_bytes,
        }),
    }
}

/// `ip:port`, with brackets for IPv6.
pub fn dest_text(key: &DestKey) -> String {
    match key.addr {
        IpAddr::V4(a) => format!("{a}:{}", key.port),
        IpAddr::V6(a) => format!("[{a}]:{}", key.port),
    }
}

/// The live virtual servers as JSON, for `haldir status --json`.
pub fn live_json(live: &LiveVirtualServers) -> Value {
    let servers: Vec<Value> = live
        .virtual_servers
        .iter()
        .map(|vs| {
            let destinations: Vec<Value> = vs
                .destinations
                .iter()
                .map(|d| {
                    json!({
                        "address": d.key.addr.to_string(),
                        "port": d.key.port,
                        "configured_weight": d.configured_weight,
                        "kernel_weight": d.kernel_weight,
                        "active_connections": d.active_conns,
                        "inactive_connections": d.inactive_conns,
                        "health": d.health.health.as_str(),
                        "checker": d.health.checker,
                        "last_check": d.health.last_check.as_ref().map(|c| json!({
                            "up": c.up,
                            "result": c.text,
                            "at_unix": unix_seconds(c.at),
                            "latency_seconds": c.latency.as_secs_f64(),
                        })),
                        "stats": stats_json(&d.stats),
                    })
                })
                .collect();
            json!({
                "service": vs.key.to_string(),
                "scheduler": vs.scheduler,
                "in_kernel": vs.in_kernel,
                "stats": stats_json(&vs.stats),
                "destinations": destinations,
            })
        })
        .collect();
    json!({
        "virtual_servers": servers,
        "kernel_read_at_unix": live.kernel_read_at.and_then(unix_seconds),
        "kernel_error": live.kernel_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers() -> Vec<VirtualServer> {
        haldir_config::parse_toml(
            r#"
[[virtual_server]]
ip = "192.0.2.10"
port = 80
lb_algo = "wrr"
lb_kind = "DR"
[[virtual_server.real_server]]
ip = "10.0.0.11"
weight = 3
[[virtual_server.real_server]]
ip = "10.0.0.12"
"#,
            "t.toml",
        )
        .unwrap()
        .virtual_servers
    }

    #[test]
    fn without_kernel_or_health_the_configured_table_shows_with_unknown_health() {
        let live = combine(&servers(), None, &HealthMap::new());
        assert_eq!(live.len(), 1);
        assert!(!live[0].in_kernel);
        assert_eq!(live[0].scheduler, "wrr");
        let weights: Vec<u32> = live[0]
            .destinations
            .iter()
            .map(|d| d.configured_weight)
            .collect();
        assert_eq!(weights, vec![3, 1]);
        assert!(live[0]
            .destinations
            .iter()
            .all(|d| d.kernel_weight.is_none() && d.health.health == Health::Unknown));
        let json = live_json(&LiveVirtualServers {
            virtual_servers: live,
            ..Default::default()
        });
        assert_eq!(json["virtual_servers"][0]["service"], "TCP 192.0.2.10:80");
        assert_eq!(
            json["virtual_servers"][0]["destinations"][1]["health"],
            "unknown"
        );
    }

    #[test]
    fn the_health_map_is_joined_by_service_and_real_server() {
        let servers = servers();
        let key = haldir_director::ipvs_table::service_key(&servers[0]);
        let dest = DestKey::new("10.0.0.12".parse().unwrap(), 80);
        let mut counters = CheckCounters::default();
        counters.observe(false, Duration::from_millis(3));
        let mut map = HealthMap::new();
        map.insert(
            (key, dest),
            RealServerHealth {
                health: Health::Down,
                checker: Some("TCP_CHECK".into()),
                last_check: Some(CheckResult {
                    up: false,
                    text: "connection refused".into(),
                    at: SystemTime::now(),
                    latency: Duration::from_millis(3),
                }),
                counters,
            },
        );
        let live = combine(&servers, None, &map);
        assert_eq!(live[0].destinations[0].health.health, Health::Unknown);
        assert_eq!(live[0].destinations[1].health.health, Health::Down);
        assert_eq!(live[0].destinations[1].health.counters.down, 1);
        assert_eq!(
            live[0].destinations[1].health.counters.latency_buckets[1],
            1
        );
    }
}
