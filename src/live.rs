//! The live state of the virtual servers, for the status ([`LiveVirtualServers::to_status`]):
//! each configured virtual server with its real servers, the weight each has
//! in the configuration and in the kernel, the health its checker reports and
//! the kernel's counters.
//!
//! Two inputs, two owners:
//! - [`HealthMap`], on a `watch` channel, is fed by the health wiring: one
//!   [`RealServerHealth`] per (service, real server) with a checker. A real
//!   server missing from the map has health [`Health::Unknown`].
//! - The kernel table is read here, by [`run`], when the status is asked for
//!   (`demand`: `haldir status`, a `/metrics` scrape, a SIGUSR1 dump; the
//!   document shows the last read's figures and asks for the next), at most
//!   every `interval`, and never sooner than
//!   [`READ_COST_FACTOR`] times the last read's cost after it: a read costs
//!   one netlink dump per service (seconds at 10,000 services in a slow VM),
//!   and this bounds the reader to about 0.5 % of a core at any table size (issue
//!   16: the daemon's whole steady cost at 10,000 services must stay within 2 % of a
//!   core, drift detection included; the price is that at that size under software
//!   emulation the status's kernel figures are up to 20 minutes old, which the status
//!   shows as `kernel_read_at`). The cost is the CPU time the process spent during the read, or its
//!   wall time if that is less: a read that waited for a core (a loaded host, a
//!   descheduled vCPU) did not cost the waiting, and must not push the next
//!   read minutes away. Between reads, a health or configuration change is
//!   combined with the last read. The reader runs on a thread of its own ([`spawn`]),
//!   netlink connection included, and the cost is that thread's CPU time: the
//!   process's would count the rest of haldir's work during the read (at start, all
//!   of it), which once pushed the next read of a half-programmed table a minute away.
//!
//! Each request of a read (one dump) must answer within [`KERNEL_REQUEST_TIMEOUT`]: a
//! dump whose answer never comes (a reply lost on the netlink socket) would otherwise
//! hold the reader, and every figure with it, for good. A read that fails or times out
//! drops its socket; the next read opens a new one.
//!
//! [`run`] publishes a [`LiveVirtualServers`] on its own `watch` channel.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use haldir_config::VirtualServer;
use haldir_ipvs::client::{DestEntry, ServiceEntry};
use haldir_ipvs::netlink::Stats;
use haldir_ipvs::{DestKey, IpvsClient, ServiceKey};
use tokio::sync::watch;

pub use haldir_status::{CheckCounters, Health, LATENCY_BUCKETS};

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

/// The kernel table as the last read found it, for the configured services.
pub type KernelTable = BTreeMap<ServiceKey, KernelService>;

/// What the status's virtual servers are made of, as [`run`] publishes it: the running
/// configuration, the last kernel read and the health map, shared rather than combined.
/// [`LiveView::combined`] joins them when a document is rendered: kept combined, the view
/// held about 1.3 KB per virtual server (13 MB at 10,000) whether or not anyone asked.
#[derive(Debug, Clone, Default)]
pub struct LiveView {
    /// The running configuration (`None` before the reader's first round).
    pub model: Option<std::sync::Arc<haldir_config::Model>>,
    /// The last successful kernel read.
    pub kernel: Option<std::sync::Arc<KernelTable>>,
    /// The health map when the view was published.
    pub health: std::sync::Arc<HealthMap>,
    /// When the kernel table was last read successfully.
    pub kernel_read_at: Option<SystemTime>,
    /// Why the kernel table could not be read, if it could not.
    pub kernel_error: Option<String>,
}

impl LiveView {
    /// The view for `model`, before any kernel read.
    pub fn configured(model: std::sync::Arc<haldir_config::Model>) -> LiveView {
        LiveView {
            model: Some(model),
            ..LiveView::default()
        }
    }

    /// The virtual servers joined with the kernel's figures and their health.
    pub fn combined(&self) -> LiveVirtualServers {
        LiveVirtualServers {
            virtual_servers: self.model.as_ref().map_or_else(Vec::new, |model| {
                combine(&model.virtual_servers, self.kernel.as_deref(), &self.health)
            }),
            kernel_read_at: self.kernel_read_at,
            kernel_error: self.kernel_error.clone(),
        }
    }
}

/// Combines the configuration, the kernel table (`None`: not read) and the
/// health map.
pub fn combine(
    servers: &[VirtualServer],
    kernel: Option<&KernelTable>,
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
/// A kernel read is followed by at least this many times its own cost (see
/// [`haldir_ipvs::drift::cpu_cost`]) without one: the reader's share of a core stays under
/// 1 / 200 = 0.5 %.
pub const READ_COST_FACTOR: u32 = 200;

/// Runs [`run`] on a thread of its own ([`crate::own_thread`]), so that the thread's CPU
/// time is the reader's (its netlink connection task runs there too).
pub fn spawn(
    servers: watch::Receiver<std::sync::Arc<haldir_config::Model>>,
    health: watch::Receiver<HealthMap>,
    live: watch::Sender<LiveView>,
    demand: std::sync::Arc<tokio::sync::Notify>,
    interval: Duration,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    crate::own_thread::spawn("the status's kernel reader", move || {
        run(servers, health, live, demand, interval, shutdown)
    })
}

/// How long one request of a kernel read (one netlink dump) may take: far more than a
/// dump of one service's destinations or of 10,000 services costs.
pub const KERNEL_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `request`, or an error when it has not answered within [`KERNEL_REQUEST_TIMEOUT`].
async fn answered<T>(
    what: &str,
    request: impl std::future::Future<Output = Result<T, haldir_ipvs::IpvsError>>,
) -> Result<T, haldir_ipvs::IpvsError> {
    tokio::time::timeout(KERNEL_REQUEST_TIMEOUT, request)
        .await
        .unwrap_or_else(|_| {
            Err(haldir_ipvs::IpvsError::Transport(format!(
                "no answer to the {what} dump within {} s",
                KERNEL_REQUEST_TIMEOUT.as_secs()
            )))
        })
}

async fn read_kernel(
    client: &IpvsClient,
    keys: &std::collections::HashSet<ServiceKey>,
) -> Result<KernelTable, haldir_ipvs::IpvsError> {
    let mut table = BTreeMap::new();
    for service in answered("service", client.services()).await? {
        if !keys.contains(&service.key) {
            continue;
        }
        let dests = answered("destination", client.destinations(&service.key)).await?;
        table.insert(service.key, (service, dests));
    }
    Ok(table)
}

/// Keeps `live` up to date: on every change of `servers` or `health`, and
/// on `demand` (the kernel's counters and weights) a kernel read, at most every
/// `interval` and paced by [`READ_COST_FACTOR`]. Returns when `shutdown` turns
/// true.
pub async fn run(
    mut servers: watch::Receiver<std::sync::Arc<haldir_config::Model>>,
    mut health: watch::Receiver<HealthMap>,
    live: watch::Sender<LiveView>,
    demand: std::sync::Arc<tokio::sync::Notify>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut client: Option<IpvsClient> = None;
    let mut health_open = true;
    let mut kernel = None;
    let mut kernel_error = None;
    // When the last read ended, and the shortest gap before the next one.
    let mut last_read: Option<(tokio::time::Instant, Duration)> = None;
    // Whether a read was asked for since the last one.
    let mut demanded = false;
    // The health map as last published; copied again only when it changed.
    let mut map = std::sync::Arc::new(health.borrow_and_update().clone());
    let mut health_changed = false;
    loop {
        let running = std::sync::Arc::clone(&servers.borrow_and_update());
        let configured = &running.virtual_servers;
        if std::mem::take(&mut health_changed) {
            map = std::sync::Arc::new(health.borrow_and_update().clone());
        }
        let read_due = last_read.is_none_or(|(ended, gap)| ended.elapsed() >= gap);
        let mut read_now = false;
        if configured.is_empty() {
            kernel = None;
            kernel_error = None;
        } else if read_due && demanded {
            read_now = true;
            demanded = false;
            let began = tokio::time::Instant::now();
            let cpu_before = haldir_ipvs::drift::thread_cpu_time();
            if client.is_none() {
                match IpvsClient::connect().await {
                    Ok(c) => client = Some(c),
                    Err(e) => kernel_error = Some(e.to_string()),
                }
            }
            if let Some(c) = &client {
                let keys: std::collections::HashSet<ServiceKey> = configured
                    .iter()
                    .map(haldir_director::ipvs_table::service_key)
                    .collect();
                match read_kernel(c, &keys).await {
                    Ok(table) => {
                        kernel = Some(std::sync::Arc::new(table));
                        kernel_error = None;
                    }
                    Err(e) => {
                        if kernel_error.as_deref() != Some(&e.to_string()) {
                            tracing::warn!("cannot read the IPVS table for the status: {e}");
                        }
                        kernel = None;
                        kernel_error = Some(e.to_string());
                        // A socket that lost an answer may have lost its sequence too.
                        client = None;
                    }
                }
            }
            // The dump's messages are freed: back to the system (this thread's arena;
            // 10,000 services made tens of MB), before the cost is taken.
            crate::memory::release_free_memory();
            let ended = tokio::time::Instant::now();
            let cost = haldir_ipvs::drift::cpu_cost(
                ended - began,
                cpu_before,
                haldir_ipvs::drift::thread_cpu_time(),
            );
            last_read = Some((ended, interval.max(cost * READ_COST_FACTOR)));
        }
        live.send_modify(|l| {
            l.model = Some(std::sync::Arc::clone(&running));
            l.kernel = kernel.clone();
            l.health = std::sync::Arc::clone(&map);
            if read_now && kernel.is_some() {
                l.kernel_read_at = Some(SystemTime::now());
            }
            l.kernel_error = kernel_error.clone();
        });
        // A request that found the read not yet due gets one as soon as it is; without
        // one, nothing to do until something changes.
        let next_tick = if demanded && !configured.is_empty() {
            last_read.map_or(Duration::ZERO, |(ended, gap)| {
                gap.saturating_sub(ended.elapsed())
            })
        } else {
            Duration::MAX
        };
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            () = demand.notified() => demanded = true,
            changed = servers.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            changed = health.changed(), if health_open => {
                // Nobody feeds health (yet): the rest goes on.
                health_open = changed.is_ok();
                health_changed = health_open;
            }
            () = sleep_unless_forever(next_tick) => {}
        }
    }
}

/// `tokio::time::sleep(wait)`, or never for `Duration::MAX`.
async fn sleep_unless_forever(wait: Duration) {
    if wait == Duration::MAX {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(wait).await;
}

fn ipvs_stats(stats: &Option<Stats>) -> Option<haldir_status::IpvsStats> {
    stats.map(|s| haldir_status::IpvsStats {
        connections: s.conns,
        in_bytes: s.in_bytes,
        in_packets: s.in_packets,
        out_bytes: s.out_bytes,
        out_packets: s.out_packets,
    })
}

impl LiveVirtualServers {
    /// The virtual servers as the status shows them.
    pub fn to_status(&self) -> Vec<haldir_status::VirtualServer> {
        self.virtual_servers
            .iter()
            .map(|vs| haldir_status::VirtualServer {
                destinations: vs
                    .destinations
                    .iter()
                    .map(|d| haldir_status::Destination {
                        active_connections: d.active_conns,
                        address: d.key.addr,
                        checker: d.health.checker.clone(),
                        configured_weight: d.configured_weight,
                        health: d.health.health,
                        inactive_connections: d.inactive_conns,
                        kernel_weight: d.kernel_weight,
                        last_check: d.health.last_check.as_ref().map(|c| {
                            haldir_status::LastCheck {
                                at_unix: haldir_status::time::unix_seconds(c.at),
                                latency_seconds: c.latency.as_secs_f64(),
                                result: c.text.clone(),
                                up: c.up,
                            }
                        }),
                        port: d.key.port,
                        stats: ipvs_stats(&d.stats),
                        check_counters: d.health.counters.clone(),
                    })
                    .collect(),
                in_kernel: vs.in_kernel,
                scheduler: vs.scheduler.clone(),
                service: vs.key.to_string(),
                stats: ipvs_stats(&vs.stats),
            })
            .collect()
    }

    /// When the kernel table was last read, in seconds since the Unix epoch.
    pub fn kernel_read_at_unix(&self) -> Option<f64> {
        self.kernel_read_at
            .and_then(haldir_status::time::unix_seconds)
    }
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
        let status = LiveVirtualServers {
            virtual_servers: live,
            ..Default::default()
        }
        .to_status();
        assert_eq!(status[0].service, "TCP 192.0.2.10:80");
        assert_eq!(status[0].destinations[1].health, Health::Unknown);
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
