//! The status as Prometheus metrics: the text exposition format 0.0.4 of `/metrics`.
//!
//! [`render`] writes the families of the VRRP instances, the virtual servers, the daemon's
//! counters, the bulk resync, the DR ARP check and the BGP announcement; [`Family`] is the writer.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::{DaemonCounters, Destination, IpvsStats, StatusDocument, VrrpState, LATENCY_BUCKETS};

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
pub struct Family<'o> {
    out: &'o mut String,
    name: &'static str,
}

impl<'o> Family<'o> {
    /// Writes the HELP and TYPE lines of family `name` of `kind` (`counter`, `gauge`,
    /// `histogram`).
    pub fn new(out: &'o mut String, name: &'static str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out, name }
    }

    /// Writes one sample.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Into<f64>) {
        self.sample_suffix("", labels, value);
    }

    /// Writes one sample of the series `name` + `suffix` (`_bucket`, `_sum`, `_count`).
    pub fn sample_suffix(&mut self, suffix: &str, labels: &[(&str, &str)], value: impl Into<f64>) {
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
pub fn n(value: u64) -> f64 {
    value as f64
}

/// The families of the VRRP instances and links, the virtual servers, the daemon's
/// counters, the bulk resync and the DR ARP check; `version` goes into `haldir_build_info`.
pub fn render(status: &StatusDocument, version: &str) -> String {
    let mut out = String::new();
    render_vrrp(&mut out, status);
    render_virtual_servers(&mut out, status);
    render_daemon(&mut out, &status.daemon, version);
    crate::sections::bulk_resync_metrics(&mut out, &status.bulk_resync);
    crate::sections::dr_arp_check_metrics(&mut out, &status.dr_arp_check);
    crate::sections::announce_metrics(&mut out, &status.announce);
    out
}

fn render_vrrp(out: &mut String, status: &StatusDocument) {
    let mut f = Family::new(
        out,
        "haldir_vrrp_state",
        "gauge",
        "1 for the state each VRRP instance is in, 0 for the others.",
    );
    for i in &status.instances {
        for state in VrrpState::ALL {
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
    type Get = fn(&crate::Instance) -> u64;
    let per_instance: [(&'static str, &str, Get); 9] = [
        (
            "haldir_vrrp_transitions_total",
            "State transitions of each VRRP instance.",
            |i| i.transitions,
        ),
        (
            "haldir_vrrp_became_master_total",
            "Transitions into MASTER.",
            |i| i.became_master,
        ),
        (
            "haldir_vrrp_adverts_sent_total",
            "VRRP adverts sent.",
            |i| i.adverts_sent,
        ),
        (
            "haldir_vrrp_adverts_received_total",
            "Valid VRRP adverts received and processed.",
            |i| i.adverts_received,
        ),
        (
            "haldir_vrrp_priority_zero_sent_total",
            "Priority-0 (resignation) adverts sent.",
            |i| i.priority_zero_sent,
        ),
        (
            "haldir_vrrp_priority_zero_received_total",
            "Priority-0 (resignation) adverts received.",
            |i| i.priority_zero_received,
        ),
        (
            "haldir_vrrp_announcements_total",
            "Rounds of gratuitous ARP / unsolicited NA sent (one packet per virtual address each).",
            |i| i.announcements,
        ),
        (
            "haldir_vrrp_address_list_mismatch_total",
            "Adverts accepted whose virtual address list differs from ours.",
            |i| i.address_list_mismatch,
        ),
        (
            "haldir_vrrp_adverts_authenticated_total",
            "Adverts whose auth_hmac trailer verified.",
            |i| i.adverts_authenticated,
        ),
    ];
    for (name, help, get) in per_instance {
        let mut f = Family::new(out, name, "counter", help);
        for i in &status.instances {
            f.sample(&[("instance", &i.name)], n(get(i)));
        }
    }
    let mut f = Family::new(
        out,
        "haldir_vrrp_receive_errors_total",
        "counter",
        "Adverts an instance dropped, by reason.",
    );
    for i in &status.instances {
        for (reason, count) in &i.drops {
            f.sample(&[("instance", &i.name), ("reason", reason)], n(*count));
        }
    }
    let mut f = Family::new(
        out,
        "haldir_vrrp_auth_accepted_total",
        "counter",
        "Adverts that failed auth_hmac checks and were accepted anyway (permissive, receive-only), by reason.",
    );
    for i in &status.instances {
        for (reason, count) in &i.auth_accepted {
            f.sample(&[("instance", &i.name), ("reason", reason)], n(*count));
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

/// Every destination that has a health checker, with its service and real-server labels.
fn checked_destinations(
    status: &StatusDocument,
) -> impl Iterator<Item = (&str, String, &Destination)> {
    status.virtual_servers.iter().flat_map(|vs| {
        vs.destinations
            .iter()
            .filter(|d| d.checker.is_some())
            .map(move |d| (vs.service.as_str(), d.address_text(), d))
    })
}

type Counter = (&'static str, &'static str, fn(&IpvsStats) -> u64);

const SERVICE_COUNTERS: [Counter; 5] = [
    (
        "haldir_ipvs_service_connections_total",
        "Connections scheduled by the IPVS service.",
        |s| s.connections,
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
];

const DESTINATION_COUNTERS: [Counter; 5] = [
    (
        "haldir_ipvs_destination_connections_total",
        "Connections scheduled to the real server.",
        |s| s.connections,
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
];

fn render_stats(out: &mut String, names: &[Counter], rows: &[(Vec<(&str, String)>, IpvsStats)]) {
    for (name, help, get) in names {
        let mut f = Family::new(out, name, "counter", help);
        for (labels, stats) in rows {
            let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            f.sample(&labels, n(get(stats)));
        }
    }
}

fn render_virtual_servers(out: &mut String, status: &StatusDocument) {
    let mut f = Family::new(
        out,
        "haldir_ipvs_kernel_readable",
        "gauge",
        "1 when the last read of the kernel's IPVS table succeeded.",
    );
    f.sample(&[], u8::from(status.kernel_error.is_none()));

    let mut f = Family::new(
        out,
        "haldir_real_server_health",
        "gauge",
        "1 for the health each real server's checker reports (up, down, unknown), 0 for the others.",
    );
    for vs in &status.virtual_servers {
        for d in &vs.destinations {
            let rs = d.address_text();
            for health in ["up", "down", "unknown"] {
                f.sample(
                    &[
                        ("service", &vs.service),
                        ("real_server", &rs),
                        ("health", health),
                    ],
                    u8::from(d.health.as_str() == health),
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
    for vs in &status.virtual_servers {
        for d in &vs.destinations {
            f.sample(
                &[("service", &vs.service), ("real_server", &d.address_text())],
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
    for vs in &status.virtual_servers {
        for d in &vs.destinations {
            if let Some(weight) = d.kernel_weight {
                f.sample(
                    &[("service", &vs.service), ("real_server", &d.address_text())],
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
        for vs in &status.virtual_servers {
            for d in vs.destinations.iter().filter(|d| d.kernel_weight.is_some()) {
                f.sample(
                    &[("service", &vs.service), ("real_server", &d.address_text())],
                    if active {
                        d.active_connections
                    } else {
                        d.inactive_connections
                    },
                );
            }
        }
    }
    let mut services = Vec::new();
    let mut dests = Vec::new();
    for vs in &status.virtual_servers {
        if let Some(stats) = &vs.stats {
            services.push((vec![("service", vs.service.clone())], *stats));
        }
        for d in &vs.destinations {
            if let Some(stats) = &d.stats {
                dests.push((
                    vec![
                        ("service", vs.service.clone()),
                        ("real_server", d.address_text()),
                    ],
                    *stats,
                ));
            }
        }
    }
    render_stats(out, &SERVICE_COUNTERS, &services);
    render_stats(out, &DESTINATION_COUNTERS, &dests);

    let mut f = Family::new(
        out,
        "haldir_checker_results_total",
        "counter",
        "Health check runs, by real server and result.",
    );
    for (service, rs, d) in checked_destinations(status) {
        let checker = d.checker.as_deref().unwrap_or_default();
        for (result, count) in [("up", d.check_counters.up), ("down", d.check_counters.down)] {
            f.sample(
                &[
                    ("service", service),
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
    for (service, rs, d) in checked_destinations(status) {
        let counters = &d.check_counters;
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(counters.latency_buckets) {
            cumulative += count;
            let le = format!("{bound}");
            f.sample_suffix(
                "_bucket",
                &[("service", service), ("real_server", &rs), ("le", &le)],
                n(cumulative),
            );
        }
        f.sample_suffix(
            "_bucket",
            &[("service", service), ("real_server", &rs), ("le", "+Inf")],
            n(counters.count()),
        );
        f.sample_suffix(
            "_sum",
            &[("service", service), ("real_server", &rs)],
            counters.latency_sum_seconds,
        );
        f.sample_suffix(
            "_count",
            &[("service", service), ("real_server", &rs)],
            n(counters.count()),
        );
    }
}

fn render_daemon(out: &mut String, c: &DaemonCounters, version: &str) {
    let mut f = Family::new(
        out,
        "haldir_ipvs_reconcile_runs_total",
        "counter",
        "Rounds of bringing the kernel's IPVS table in step with the configuration.",
    );
    f.sample(&[], n(c.reconcile_runs));
    let mut f = Family::new(
        out,
        "haldir_ipvs_reconcile_read_errors_total",
        "counter",
        "Rounds skipped because the kernel's IPVS table could not be read.",
    );
    f.sample(&[], n(c.reconcile_read_errors));
    let mut f = Family::new(
        out,
        "haldir_ipvs_reconcile_operations_total",
        "counter",
        "IPVS operations the reconciler carried out, by kind.",
    );
    for (op, object, count) in [
        ("add", "service", c.ops_add_service),
        ("set", "service", c.ops_set_service),
        ("delete", "service", c.ops_del_service),
        ("add", "destination", c.ops_add_dest),
        ("set", "destination", c.ops_set_dest),
        ("delete", "destination", c.ops_del_dest),
    ] {
        f.sample(&[("op", op), ("object", object)], n(count));
    }
    let mut f = Family::new(
        out,
        "haldir_ipvs_reconcile_errors_total",
        "counter",
        "IPVS operations the kernel refused.",
    );
    f.sample(&[], n(c.op_failures));
    let mut f = Family::new(
        out,
        "haldir_notify_scripts_total",
        "counter",
        "Notify scripts run, by result.",
    );
    for (result, count) in [
        ("ok", c.notify_ok),
        ("failed", c.notify_failed),
        ("timeout", c.notify_timeout),
    ] {
        f.sample(&[("result", result)], n(count));
    }
    let mut f = Family::new(
        out,
        "haldir_notify_missed_transitions_total",
        "counter",
        "Transitions whose notify scripts were not run (event channel overflow).",
    );
    f.sample(&[], n(c.notify_missed));
    let mut f = Family::new(
        out,
        "haldir_notify_fifo_lines_total",
        "counter",
        "Lines written to notify FIFOs, and lines dropped because a FIFO was full.",
    );
    for (result, count) in [
        ("written", c.notify_fifo_lines),
        ("dropped", c.notify_fifo_dropped),
    ] {
        f.sample(&[("result", result)], n(count));
    }
    let mut f = Family::new(
        out,
        "haldir_metrics_connections_refused_total",
        "counter",
        "Metrics connections closed at once because the server already had its maximum open.",
    );
    f.sample(&[], n(c.metrics_connections_refused));
    let mut f = Family::new(
        out,
        "haldir_health_checks_scheduled",
        "gauge",
        "Health checks scheduled.",
    );
    f.sample(&[], n(c.health_checks_scheduled));
    let mut f = Family::new(
        out,
        "haldir_health_check_runs_total",
        "counter",
        "Health check runs started.",
    );
    f.sample(&[], n(c.health_check_runs));
    let mut f = Family::new(
        out,
        "haldir_health_check_max_lateness_seconds",
        "gauge",
        "The worst lateness of a health check since haldir started: how long after its due time a run started.",
    );
    f.sample(&[], n(c.health_check_max_lateness_us) / 1e6);
    let mut f = Family::new(
        out,
        "haldir_health_table_publications_total",
        "counter",
        "Desired IPVS tables published because a health check's verdict changed.",
    );
    f.sample(&[], n(c.health_table_publications));
    let mut f = Family::new(
        out,
        "haldir_health_table_publications_held_total",
        "counter",
        "Times changed verdicts waited for the publication pace because a table had just been published: they went out together, at most 1 s later.",
    );
    f.sample(&[], n(c.health_table_publications_held));
    let mut f = Family::new(
        out,
        "haldir_build_info",
        "gauge",
        "Always 1; the version of haldir running.",
    );
    f.sample(&[("version", version)], 1u8);
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
