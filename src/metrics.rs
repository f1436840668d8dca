//! Prometheus metrics (`haldir run --metrics-address ADDR`, off by default):
//! the text exposition format 0.0.4, rendered on each scrape from the live
//! state (the VRRP driver's [`Status`], the virtual servers'
//! [`LiveVirtualServers`]) and the daemon's own [`DaemonCounters`], served by
//! a small hyper server at `/metrics`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use haldir_ipvs::netlink::Stats;
use haldir_ipvs::Op;
use haldir_vrrp::driver::Status;
use haldir_vrrp::router::State;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::live::{dest_text, LiveVirtualServers, LATENCY_BUCKETS};

/// Counters the daemon keeps outside the driver: the IPVS reconciler's and
/// the notify scripts'. Shared through an `Arc`, bumped with relaxed atomics.
#[derive(Debug, Default)]
pub struct DaemonCounters {
    /// Reconciliation rounds run.
    pub reconcile_runs: AtomicU64,
    /// Reading the kernel table failed (the round was skipped).
    pub reconcile_read_errors: AtomicU64,
    /// Operations applied, by kind: add / set / delete service / destination.
    pub ops_add_service: AtomicU64,
    /// See `ops_add_service`.
    pub ops_set_service: AtomicU64,
    /// See `ops_add_service`.
    pub ops_del_service: AtomicU64,
    /// See `ops_add_service`.
    pub ops_add_dest: AtomicU64,
    /// See `ops_add_service`.
    pub ops_set_dest: AtomicU64,
    /// See `ops_add_service`.
    pub ops_del_dest: AtomicU64,
    /// Operations the kernel refused.
    pub op_failures: AtomicU64,
    /// Notify scripts that exited 0.
    pub notify_ok: AtomicU64,
    /// Notify scripts that failed (non-zero exit, signal, could not start).
    pub notify_failed: AtomicU64,
    /// Notify scripts killed at `notify_timeout`.
    pub notify_timeout: AtomicU64,
    /// Transitions the notify task missed (its event channel overflowed).
    pub notify_missed: AtomicU64,
}

impl DaemonCounters {
    /// Counts one reconciliation round: the operations it carried out and
    /// the failed ones among them.
    pub fn count_reconcile(&self, ops: &[Op], failures: usize) {
        self.reconcile_runs.fetch_add(1, Ordering::Relaxed);
        for op in ops {
            let counter = match op {
                Op::AddService { .. } => &self.ops_add_service,
                Op::SetService { .. } => &self.ops_set_service,
                Op::DelService { .. } => &self.ops_del_service,
                Op::AddDest { .. } => &self.ops_add_dest,
                Op::SetDest { .. } => &self.ops_set_dest,
                Op::DelDest { .. } => &self.ops_del_dest,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.op_failures
            .fetch_add(failures as u64, Ordering::Relaxed);
    }

    /// Counts a round whose read of the kernel table failed.
    pub fn count_read_error(&self) {
        self.reconcile_runs.fetch_add(1, Ordering::Relaxed);
        self.reconcile_read_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// What `/metrics` is rendered from.
#[derive(Clone)]
pub struct Sources {
    /// The VRRP driver's status.
    pub status: watch::Receiver<Status>,
    /// The virtual servers.
    pub live: watch::Receiver<LiveVirtualServers>,
    /// The daemon's counters.
    pub counters: Arc<DaemonCounters>,
    /// The DR real-server ARP check ([`crate::arp_check`]).
    pub arp_check: watch::Receiver<crate::arp_check::Report>,
    /// The bulk resync ([`crate::bulk_resync`]).
    pub resync: watch::Receiver<haldir_ipvs::resync::ResyncStatus>,
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A metric family being written: HELP and TYPE once, then samples.
struct Family<'o> {
    out: &'o mut String,
    name: &'static str,
}

impl<'o> Family<'o> {
    fn new(out: &'o mut String, name: &'static str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out, name }
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: impl Into<f64>) {
        self.sample_suffix("", labels, value);
    }

    fn sample_suffix(&mut self, suffix: &str, labels: &[(&str, &str)], value: impl Into<f64>) {
        let _ = write!(self.out, "{}{suffix}", self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape(value));
            }
            self.out.push('}');
        }
        let value: f64 = value.into();
        if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
            let _ = writeln!(self.out, " {}", value as i64);
        } else {
            let _ = writeln!(self.out, " {value}");
        }
    }
}

/// `u64` as the `f64` Prometheus carries.
fn n(value: u64) -> f64 {
    value as f64
}

const STATES: [State; 4] = [
    State::Initialize,
    State::Backup,
    State::Master,
    State::Fault,
];

/// Renders every metric family.
pub fn render(status: &Status, live: &LiveVirtualServers, counters: &DaemonCounters) -> String {
    let mut out = String::new();
    render_vrrp(&mut out, status);
    render_virtual_servers(&mut out, live);
    render_daemon(&mut out, counters);
    out
}

fn render_vrrp(out: &mut String, status: &Status) {
    let mut f = Family::new(
        out,
        "haldir_vrrp_state",
        "gauge",
        "1 for the state each VRRP instance is in, 0 for the others.",
    );
    for i in &status.instances {
        for state in STATES {
            f.sample(
                &[
                    ("instance", &i.name),
                    ("interface", &i.interface),
                    ("state", state.as_str()),
                ],
                u8::from(i.state == state),
            );
        }
    }
    let mut f = Family::new(
        out,
        "haldir_vrrp_priority",
        "gauge",
        "The priority each VRRP instance runs with now.",
    );
    for i in &status.instances {
        f.sample(&[("instance", &i.name)], i.priority);
    }
    type Get = fn(&haldir_vrrp::router::RouterStats) -> u64;
    let per_instance: [(&'static str, &str, Get); 9] = [
        (
            "haldir_vrrp_transitions_total",
            "State transitions of each VRRP instance.",
            |s| s.transitions,
        ),
        (
            "haldir_vrrp_became_master_total",
            "Transitions into MASTER.",
            |s| s.became_master,
        ),
        (
            "haldir_vrrp_adverts_sent_total",
            "VRRP adverts sent.",
            |s| s.adverts_sent,
        ),
        (
            "haldir_vrrp_adverts_received_total",
            "Valid VRRP adverts received and processed.",
            |s| s.adverts_received,
        ),
        (
            "haldir_vrrp_priority_zero_sent_total",
            "Priority-0 (resignation) adverts sent.",
            |s| s.priority_zero_sent,
        ),
        (
            "haldir_vrrp_priority_zero_received_total",
            "Priority-0 (resignation) adverts received.",
            |s| s.priority_zero_received,
        ),
        (
            "haldir_vrrp_announcements_total",
            "Rounds of gratuitous ARP / unsolicited NA sent (one packet per virtual address each).",
            |s| s.announcements,
        ),
        (
            "haldir_vrrp_address_list_mismatch_total",
            "Adverts accepted whose virtual address list differs from ours.",
            |s| s.address_list_mismatch,
        ),
        (
            "haldir_vrrp_adverts_authenticated_total",
            "Adverts whose auth_hmac trailer verified.",
            |s| s.adverts_authenticated,
        ),
    ];
    for (name, help, get) in per_instance {
        let mut f = Family::new(out, name, "counter", help);
        for i in &status.instances {
            f.sample(&[("instance", &i.name)], n(get(&i.stats)));
        }
    }
    let mut f = Family::new(
        out,
        "haldir_vrrp_receive_errors_total",
        "counter",
        "Adverts an instance dropped, by reason.",
    );
    for i in &status.instances {
        for (reason, count) in &i.stats.drops {
            f.sample(
                &[("instance", &i.name), ("reason", reason.as_str())],
                n(*count),
            );
        }
    }
    let mut f = Family::new(
        out,
        "haldir_vrrp_auth_accepted_total",
        "counter",
        "Adverts that failed auth_hmac checks and were accepted anyway (permissive, receive-only), by reason.",
    );
    for i in &status.instances {
        for (reason, count) in &i.stats.auth_accepted {
            f.sample(
                &[("instance", &i.name), ("reason", reason.as_str())],
                n(*count),
            );
        }
    }
    let mut f = Family::new(
        out,
        "haldir_vrrp_link_receive_errors_total",
        "counter",
        "Packets dropped on a link before reaching an instance, by reason.",
    );
    for l in &status.links {
        let source = l.source.map(|a| a.to_string()).unwrap_or_default();
        for (reason, count) in &l.drops {
            f.sample(
                &[
                    ("interface", &l.interface),
                    ("source", &source),
                    ("reason", reason),
                ],
                n(*count),
            );
        }
    }
    let mut f = Family::new(
        out,
        "haldir_vrrp_send_errors_total",
        "counter",
        "Adverts that could not be sent, by link.",
    );
    for l in &status.links {
        let source = l.source.map(|a| a.to_string()).unwrap_or_default();
        f.sample(
            &[("interface", &l.interface), ("source", &source)],
            n(l.send_errors),
        );
    }
}

/// Every destination that has a health checker, with its service and
/// real-server labels.
fn checked_destinations(
    live: &LiveVirtualServers,
) -> impl Iterator<Item = (String, String, &crate::live::DestinationStatus)> {
    live.virtual_servers.iter().flat_map(|vs| {
        let service = vs.key.to_string();
        vs.destinations
            .iter()
            .filter(|d| d.health.checker.is_some())
            .map(move |d| (service.clone(), dest_text(&d.key), d))
    })
}

fn render_stats(out: &mut String, prefix: &str, rows: &[(Vec<(&str, String)>, Stats)]) {
    type Counter = (&'static str, &'static str, fn(&Stats) -> u64);
    let names: [Counter; 5] = if prefix == "service" {
        [
            (
                "haldir_ipvs_service_connections_total",
                "Connections scheduled by the IPVS service.",
                |s| s.conns,
            ),
            (
                "haldir_ipvs_service_in_packets_total",
                "Incoming packets of the IPVS service.",
                |s| s.in_packets,
            ),
            (
                "haldir_ipvs_service_out_packets_total",
                "Outgoing packets of the IPVS service.",
                |s| s.out_packets,
            ),
            (
                "haldir_ipvs_service_in_bytes_total",
                "Incoming bytes of the IPVS service.",
                |s| s.in_bytes,
            ),
            (
                "haldir_ipvs_service_out_bytes_total",
                "Outgoing bytes of the IPVS service.",
                |s| s.out_bytes,
            ),
        ]
    } else {
        [
            (
                "haldir_ipvs_destination_connections_total",
                "Connections scheduled to the real server.",
                |s| s.conns,
            ),
            (
                "haldir_ipvs_destination_in_packets_total",
                "Incoming packets to the real server.",
                |s| s.in_packets,
            ),
            (
                "haldir_ipvs_destination_out_packets_total",
                "Outgoing packets from the real server.",
                |s| s.out_packets,
            ),
            (
                "haldir_ipvs_destination_in_bytes_total",
                "Incoming bytes to the real server.",
                |s| s.in_bytes,
            ),
            (
                "haldir_ipvs_destination_out_bytes_total",
                "Outgoing bytes from the real server.",
                |s| s.out_bytes,
            ),
        ]
    };
    for (name, help, get) in names {
        let mut f = Family::new(out, name, "counter", help);
        for (labels, stats) in rows {
            let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            f.sample(&labels, n(get(stats)));
        }
    }
}

fn render_virtual_servers(out: &mut String, live: &LiveVirtualServers) {
    let mut f = Family::new(
        out,
        "haldir_ipvs_kernel_readable",
        "gauge",
        "1 when the last read of the kernel's IPVS table succeeded.",
    );
    f.sample(&[], u8::from(live.kernel_error.is_none()));

    let mut services = Vec::new();
    let mut dests = Vec::new();
    let mut f = Family::new(
        out,
        "haldir_real_server_health",
        "gauge",
        "1 for the health each real server's checker reports (up, down, unknown), 0 for the others.",
    );
    for vs in &live.virtual_servers {
        let service = vs.key.to_string();
        for d in &vs.destinations {
            let rs = dest_text(&d.key);
            for health in ["up", "down", "unknown"] {
                f.sample(
                    &[
                        ("service", &service),
                        ("real_server", &rs),
                        ("health", health),
                    ],
                    u8::from(d.health.health.as_str() == health),
                );
            }
        }
    }
    let mut f = Family::new(
        out,
        "haldir_ipvs_destination_configured_weight",
        "gauge",
        "The weight the configuration gives each real server.",
    );
    for vs in &live.virtual_servers {
        let service = vs.key.to_string();
        for d in &vs.destinations {
            f.sample(
                &[("service", &service), ("real_server", &dest_text(&d.key))],
                d.configured_weight,
            );
        }
    }
    let mut f = Family::new(
        out,
        "haldir_ipvs_destination_weight",
        "gauge",
        "The weight of each real server in the kernel's IPVS table (absent: not in the table).",
    );
    for vs in &live.virtual_servers {
        let service = vs.key.to_string();
        for d in &vs.destinations {
            if let Some(weight) = d.kernel_weight {
                f.sample(
                    &[("service", &service), ("real_server", &dest_text(&d.key))],
                    weight,
                );
            }
        }
    }
    for (name, help, active) in [
        (
            "haldir_ipvs_destination_active_connections",
            "Active connections to each real server (kernel).",
            true,
        ),
        (
            "haldir_ipvs_destination_inactive_connections",
            "Inactive connections to each real server (kernel).",
            false,
        ),
    ] {
        let mut f = Family::new(out, name, "gauge", help);
        for vs in &live.virtual_servers {
            let service = vs.key.to_string();
            for d in vs.destinations.iter().filter(|d| d.kernel_weight.is_some()) {
                f.sample(
                    &[("service", &service), ("real_server", &dest_text(&d.key))],
                    if active {
                        d.active_conns
                    } else {
                        d.inactive_conns
                    },
                );
            }
        }
    }
    for vs in &live.virtual_servers {
        let service = vs.key.to_string();
        if let Some(stats) = &vs.stats {
            services.push((vec![("service", service.clone())], *stats));
        }
        for d in &vs.destinations {
            if let Some(stats) = &d.stats {
                dests.push((
                    vec![
                        ("service", service.clone()),
                        ("real_server", dest_text(&d.key)),
                    ],
                    *stats,
                ));
            }
        }
    }
    render_stats(out, "service", &services);
    render_stats(out, "destination", &dests);

    let mut f = Family::new(
        out,
        "haldir_checker_results_total",
        "counter",
        "Health check runs, by real server and result.",
    );
    for (service, rs, d) in checked_destinations(live) {
        let checker = d.health.checker.as_deref().unwrap_or_default();
        for (result, count) in [
            ("up", d.health.counters.up),
            ("down", d.health.counters.down),
        ] {
            f.sample(
                &[
                    ("service", &service),
                    ("real_server", &rs),
                    ("checker", checker),
                    ("result", result),
                ],
                n(count),
            );
        }
    }
    let mut f = Family::new(
        out,
        "haldir_checker_latency_seconds",
        "histogram",
        "How long health check runs took.",
    );
    for (service, rs, d) in checked_destinations(live) {
        let counters = &d.health.counters;
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(counters.latency_buckets) {
            cumulative += count;
            let le = format!("{bound}");
            f.sample_suffix(
                "_bucket",
                &[("service", &service), ("real_server", &rs), ("le", &le)],
                n(cumulative),
            );
        }
        f.sample_suffix(
            "_bucket",
            &[("service", &service), ("real_server", &rs), ("le", "+Inf")],
            n(counters.count()),
        );
        f.sample_suffix(
            "_sum",
            &[("service", &service), ("real_server", &rs)],
            counters.latency_sum_seconds,
        );
        f.sample_suffix(
            "_count",
            &[("service", &service), ("real_server", &rs)],
            n(counters.count()),
        );
    }
}

fn render_daemon(out: &mut String, c: &DaemonCounters) {
    let get = |a: &AtomicU64| n(a.load(Ordering::Relaxed));
    let mut f = Family::new(
        out,
        "haldir_ipvs_reconcile_runs_total",
        "counter",
        "Rounds of bringing the kernel's IPVS table in step with the configuration.",
    );
    f.sample(&[], get(&c.reconcile_runs));
    let mut f = Family::new(
        out,
        "haldir_ipvs_reconcile_read_errors_total",
        "counter",
        "Rounds skipped because the kernel's IPVS table could not be read.",
    );
    f.sample(&[], get(&c.reconcile_read_errors));
    let mut f = Family::new(
        out,
        "haldir_ipvs_reconcile_operations_total",
        "counter",
        "IPVS operations the reconciler carried out, by kind.",
    );
    for (op, object, counter) in [
        ("add", "service", &c.ops_add_service),
        ("set", "service", &c.ops_set_service),
        ("delete", "service", &c.ops_del_service),
        ("add", "destination", &c.ops_add_dest),
        ("set", "destination", &c.ops_set_dest),
        ("delete", "destination", &c.ops_del_dest),
    ] {
        f.sample(&[("op", op), ("object", object)], get(counter));
    }
    let mut f = Family::new(
        out,
        "haldir_ipvs_reconcile_errors_total",
        "counter",
        "IPVS operations the kernel refused.",
    );
    f.sample(&[], get(&c.op_failures));
    let mut f = Family::new(
        out,
        "haldir_notify_scripts_total",
        "counter",
        "Notify scripts run, by result.",
    );
    for (result, counter) in [
        ("ok", &c.notify_ok),
        ("failed", &c.notify_failed),
        ("timeout", &c.notify_timeout),
    ] {
        f.sample(&[("result", result)], get(counter));
    }
    let mut f = Family::new(
        out,
        "haldir_notify_missed_transitions_total",
        "counter",
        "Transitions whose notify scripts were not run (event channel overflow).",
    );
    f.sample(&[], get(&c.notify_missed));
    let mut f = Family::new(
        out,
        "haldir_build_info",
        "gauge",
        "Always 1; the version of haldir running.",
    );
    f.sample(&[("version", env!("CARGO_PKG_VERSION"))], 1u8);
}

/// The DR real-server ARP check: one sample per standing conflict.
pub fn render_dr_arp_check(out: &mut String, report: &crate::arp_check::Report) {
    let mut f = Family::new(
        out,
        "haldir_dr_arp_conflict",
        "gauge",
        "1 while a host answers ARP for the VIP of a DR virtual server (real_server: the real server with that MAC, or unknown).",
    );
    for (c, _) in &report.conflicts {
        let (vip, mac) = (c.vip.to_string(), crate::arp_check::mac_text(&c.mac));
        let rs = c
            .real_server
            .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        f.sample(
            &[
                ("virtual_server", &c.virtual_server),
                ("vip", &vip),
                ("real_server", &rs),
                ("mac", &mac),
            ],
            1u8,
        );
    }
    let mut f = Family::new(
        out,
        "haldir_dr_arp_check_rounds_total",
        "counter",
        "Rounds of the DR real-server ARP check.",
    );
    f.sample(&[], n(report.rounds));
}

async fn handle(
    request: Request<hyper::body::Incoming>,
    sources: Sources,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match (request.method(), request.uri().path()) {
        (&hyper::Method::GET | &hyper::Method::HEAD, "/metrics") => {
            let mut text = render(
                &sources.status.borrow(),
                &sources.live.borrow(),
                &sources.counters,
            );
            sources.resync.borrow().render_prometheus(&mut text);
            render_dr_arp_check(&mut text, &sources.arp_check.borrow());
            Response::builder()
                .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                .body(Full::new(Bytes::from(text)))
        }
        (_, "/metrics") => Response::builder()
            .status(405)
            .body(Full::new(Bytes::from_static(b"GET /metrics\n"))),
        _ => Response::builder()
            .status(404)
            .body(Full::new(Bytes::from_static(
                b"haldir: metrics are at /metrics\n",
            ))),
    };
    Ok(response.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

/// Binds `address` (an error if it cannot) and returns the task serving
/// `/metrics` there until `shutdown` turns true.
pub async fn serve(
    address: SocketAddr,
    sources: Sources,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    info!(address = %listener.local_addr()?, "serving Prometheus metrics at /metrics");
    Ok(tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                () = stopped(&mut shutdown) => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        warn!("metrics: accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let sources = sources.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request| handle(request, sources.clone()));
                let io = hyper_util::rt::TokioIo::new(stream);
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(io, service);
                if let Err(e) = connection.await {
                    debug!(%peer, "metrics connection: {e}");
                }
            });
        }
    }))
}

/// Families and their sample counts, for tests and debugging: `name → samples`.
pub fn families(text: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.split_whitespace().next() {
                out.entry(name.to_owned()).or_insert(0);
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| out.contains_key(*f)))
                .unwrap_or(&name)
                .to_owned();
            *out.entry(family).or_insert(0) += 1;
        }
    }
    out
}

/// Resolves once `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
