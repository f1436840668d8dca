//! Gathers the typed status ([`haldir_status`]) from the daemon's live state: the
//! [`StatusSources`] the control socket and `/metrics` read, the [`document`] made from
//! them, and the [`status_file`]. Every rendering is the status crate's
//! ([`haldir_status::text::render`], [`haldir_status::prometheus::render`]).

use std::path::PathBuf;

use haldir_status::{StatusDocument, StatusFile, SCHEMA_VERSION};
use haldir_vrrp::driver::Status;
use tokio::sync::watch;

/// What the status document is gathered from (the control socket's `status`, `/metrics`).
#[derive(Clone)]
pub struct StatusSources {
    /// The VRRP driver's status.
    pub status: watch::Receiver<Status>,
    /// The virtual servers.
    pub live: watch::Receiver<crate::live::LiveView>,
    /// Asks the live reader for a fresh read of the kernel's figures ([`crate::live`]:
    /// it reads only when asked, so a daemon nobody watches reads nothing).
    pub live_demand: std::sync::Arc<tokio::sync::Notify>,
    /// The running configuration (for `router_id`).
    pub running: watch::Receiver<std::sync::Arc<haldir_config::Model>>,
    /// The configuration file.
    pub config_path: PathBuf,
    /// The DR real-server ARP check ([`crate::arp_check`]).
    pub arp_check: watch::Receiver<haldir_director::arp_check::Report>,
    /// The bulk resync ([`crate::bulk_resync`]).
    pub resync: watch::Receiver<haldir_ipvs::resync::ResyncStatus>,
    /// The BGP announcement of the VIPs ([`crate::announce`]).
    pub announce: watch::Receiver<haldir_director::announce::AnnounceStatus>,
    /// The BGP sessions reported over BMP ([`crate::bmp`]), shown within `announce`.
    pub bgp: watch::Receiver<crate::bmp::Collector>,
}

/// The status document of the running daemon, from its `sources`; with the daemon's
/// `counters` when given (for `/metrics`).
pub fn document(
    sources: &StatusSources,
    counters: Option<&crate::counters::DaemonCounters>,
) -> StatusDocument {
    let status = sources.status.borrow().clone();
    // This document has the last read's figures (`kernel_read_at` says how old); the
    // next one has the read this asks for.
    sources.live_demand.notify_one();
    let live = sources.live.borrow().clone().combined();
    StatusDocument {
        announce: {
            let mut announce = sources.announce.borrow().clone();
            announce.bgp = sources.bgp.borrow().as_ref().map(|c| c.status());
            announce
        },
        bulk_resync: sources.resync.borrow().clone(),
        config: sources.config_path.display().to_string(),
        dr_arp_check: sources.arp_check.borrow().clone(),
        instances: haldir_status::vrrp::instances(&status),
        kernel_error: live.kernel_error.clone(),
        kernel_read_at_unix: live.kernel_read_at_unix(),
        links: haldir_status::vrrp::links(&status),
        now_unix: haldir_status::time::unix_now(),
        pid: std::process::id(),
        router_id: sources.running.borrow().router_id.clone(),
        schema_version: SCHEMA_VERSION,
        virtual_servers: live.to_status(),
        daemon: counters.map(|c| c.snapshot()).unwrap_or_default(),
    }
}

/// The status file's content for the VRRP driver's `status`.
pub fn status_file(status: &Status, resync: &haldir_ipvs::resync::ResyncStatus) -> StatusFile {
    StatusFile::new(status, resync.clone())
}

/// The text of `haldir status` for the control socket's answer (`Err`: it is not a status
/// document this haldir can read).
pub fn text_from_json(document: &serde_json::Value) -> Result<String, String> {
    haldir_status::schema::validate_document(document)
        .map(|typed| haldir_status::text::render(&typed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::*;
    use haldir_ipvs::{DestKey, ServiceKey};
    use haldir_vrrp::driver::{InstanceStatus, LinkStatus};
    use haldir_vrrp::router::{DropReason, RouterStats, State};
    use std::time::{Duration, UNIX_EPOCH};

    fn rich() -> (Status, LiveVirtualServers, crate::counters::DaemonCounters) {
        let stats = RouterStats {
            adverts_sent: 7,
            adverts_received: 8,
            priority_zero_sent: 1,
            priority_zero_received: 2,
            announcements: 3,
            became_master: 4,
            transitions: 5,
            address_list_mismatch: 6,
            adverts_authenticated: 9,
            drops: [(DropReason::BadTtl, 11), (DropReason::VridMismatch, 12)].into(),
            auth_accepted: [(haldir_vrrp::auth::AuthFailure::Stale, 13)].into(),
        };
        let status = Status {
            instances: vec![
                InstanceStatus {
                    name: "VI_1".into(),
                    interface: "eth0".into(),
                    state: State::Master,
                    priority: 150,
                    master: Some("10.0.0.1".parse().unwrap()),
                    since: Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_250)),
                    reason: Some("startup"),
                    preemption_held: true,
                    handed_over: false,
                    stats,
                },
                InstanceStatus {
                    name: "VI_6".into(),
                    interface: "eth1".into(),
                    state: State::Initialize,
                    priority: 100,
                    master: None,
                    since: None,
                    reason: None,
                    preemption_held: false,
                    handed_over: true,
                    stats: RouterStats::default(),
                },
            ],
            links: vec![
                LinkStatus {
                    interface: "eth0".into(),
                    interface_index: 2,
                    source: Some("fe80::1".parse().unwrap()),
                    drops: [("unknown_vrid", 4u64), ("bad_ip_header", 2)].into(),
                    send_errors: 3,
                },
                LinkStatus {
                    interface: "eth1".into(),
                    interface_index: 3,
                    source: None,
                    drops: Default::default(),
                    send_errors: 0,
                },
            ],
        };
        let service: ServiceKey = haldir_ipvs::ServiceKey::Address {
            protocol: haldir_ipvs::model::Protocol::Tcp,
            addr: "192.0.2.10".parse().unwrap(),
            port: 80,
        };
        let ipvs = haldir_ipvs::netlink::Stats {
            conns: 10,
            in_packets: 20,
            out_packets: 30,
            in_bytes: 40,
            out_bytes: 50,
            ..Default::default()
        };
        let mut counters = CheckCounters::default();
        counters.observe(true, Duration::from_millis(3));
        counters.observe(false, Duration::from_millis(700));
        let checked = RealServerHealth {
            health: Health::Up,
            checker: Some("HTTP_GET".into()),
            last_check: Some(CheckResult {
                up: true,
                text: "ok \"quoted\"".into(),
                at: UNIX_EPOCH + Duration::from_millis(1_700_000_100_500),
                latency: Duration::from_micros(2500),
            }),
            counters,
        };
        let live = LiveVirtualServers {
            virtual_servers: vec![
                VirtualServerStatus {
                    key: service,
                    scheduler: "wrr".into(),
                    in_kernel: true,
                    stats: Some(ipvs),
                    destinations: vec![
                        DestinationStatus {
                            key: DestKey::new("10.0.0.11".parse().unwrap(), 80),
                            configured_weight: 3,
                            kernel_weight: Some(3),
                            active_conns: 5,
                            inactive_conns: 6,
                            stats: Some(ipvs),
                            health: checked,
                        },
                        DestinationStatus {
                            key: DestKey::new("2001:db8::12".parse().unwrap(), 8080),
                            configured_weight: 0,
                            kernel_weight: None,
                            active_conns: 0,
                            inactive_conns: 0,
                            stats: None,
                            health: RealServerHealth {
                                health: Health::Down,
                                ..Default::default()
                            },
                        },
                    ],
                },
                VirtualServerStatus {
                    key: haldir_ipvs::ServiceKey::Fwmark {
                        family: haldir_ipvs::model::AddressFamily::Ipv4,
                        mark: 42,
                    },
                    scheduler: "mh".into(),
                    in_kernel: false,
                    stats: None,
                    destinations: vec![],
                },
            ],
            kernel_read_at: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_200)),
            kernel_error: Some("permission denied".into()),
        };
        let daemon = crate::counters::DaemonCounters::default();
        daemon.count_reconcile(&[], 2);
        daemon
            .notify_ok
            .fetch_add(4, std::sync::atomic::Ordering::Relaxed);
        (status, live, daemon)
    }

    /// The document of the rich sample: the same sample as the status crate's goldens
    /// (`status/tests/golden/`, recorded from the untyped builders this module replaced).
    fn rich_document() -> StatusDocument {
        let (status, live, daemon) = rich();
        StatusDocument {
            announce: Default::default(),
            bulk_resync: Default::default(),
            config: "x".into(),
            dr_arp_check: Default::default(),
            instances: haldir_status::vrrp::instances(&status),
            kernel_error: live.kernel_error.clone(),
            kernel_read_at_unix: live.kernel_read_at_unix(),
            links: haldir_status::vrrp::links(&status),
            now_unix: 1_700_000_300.0,
            pid: 1,
            router_id: Some("lvs1".into()),
            schema_version: SCHEMA_VERSION,
            virtual_servers: live.to_status(),
            daemon: daemon.snapshot(),
        }
    }

    fn golden(name: &str) -> String {
        let path = format!("{}/status/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn the_driver_status_and_live_servers_convert_to_the_golden_document() {
        let text = serde_json::to_string_pretty(&rich_document()).unwrap();
        assert_eq!(text, golden("document.json").trim_end());
    }

    #[test]
    fn the_metrics_are_the_golden_ones() {
        let text = haldir_status::prometheus::render(&rich_document(), "0.1.0");
        assert_eq!(text, golden("metrics.txt"));
    }

    #[test]
    fn the_status_file_is_the_vrrp_part_of_the_document() {
        let (status, _, _) = rich();
        let file = serde_json::to_value(status_file(&status, &Default::default())).unwrap();
        let document = serde_json::to_value(rich_document()).unwrap();
        for key in ["instances", "links", "schema_version"] {
            assert_eq!(file[key], document[key], "{key}");
        }
        haldir_status::schema::validate(&file).unwrap();
    }

    #[test]
    fn the_text_of_the_daemons_json_is_the_golden_table() {
        let json = serde_json::to_value(rich_document()).unwrap();
        assert_eq!(text_from_json(&json).unwrap(), golden("status.txt"));
        assert!(text_from_json(&serde_json::json!({"pid": 1})).is_err());
    }
}
