//! The renderings of a rich status, against goldens recorded from the untyped `json!`
//! builders and renderers this crate replaced (`src/daemon.rs::status_json`,
//! `src/live.rs::live_json`, `src/control.rs::render_table`, `src/metrics.rs::render` of
//! haldir before issue 11): the typed model must render byte for byte as they did, with
//! `schema_version` added.

use std::time::{Duration, UNIX_EPOCH};

use haldir_director::arp_check::Report;
use haldir_ipvs::resync::ResyncStatus;
use haldir_status::{
    CheckCounters, DaemonCounters, Destination, Health, IpvsStats, LastCheck, StatusDocument,
    StatusFile, VirtualServer, SCHEMA_VERSION,
};
use haldir_vrrp::auth::AuthFailure;
use haldir_vrrp::driver::{InstanceStatus, LinkStatus, Status};
use haldir_vrrp::router::{DropReason, RouterStats, State};

fn vrrp_status() -> Status {
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
        auth_accepted: [(AuthFailure::Stale, 13)].into(),
    };
    Status {
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
    }
}

/// An idle bulk resync (its JSON in the golden document is the untyped object it was).
fn bulk_resync() -> ResyncStatus {
    ResyncStatus::default()
}

fn rich() -> StatusDocument {
    let status = vrrp_status();
    let ipvs = IpvsStats {
        connections: 10,
        in_bytes: 40,
        in_packets: 20,
        out_bytes: 50,
        out_packets: 30,
    };
    let mut check_counters = CheckCounters::default();
    check_counters.observe(true, Duration::from_millis(3));
    check_counters.observe(false, Duration::from_millis(700));
    StatusDocument {
        announce: Default::default(),
        bulk_resync: bulk_resync(),
        config: "x".into(),
        dr_arp_check: Report::default(),
        instances: haldir_status::vrrp::instances(&status),
        kernel_error: Some("permission denied".into()),
        kernel_read_at_unix: Some(1_700_000_200.0),
        links: haldir_status::vrrp::links(&status),
        now_unix: 1_700_000_300.0,
        pid: 1,
        router_id: Some("lvs1".into()),
        schema_version: SCHEMA_VERSION,
        virtual_servers: vec![
            VirtualServer {
                destinations: vec![
                    Destination {
                        active_connections: 5,
                        address: "10.0.0.11".parse().unwrap(),
                        checker: Some("HTTP_GET".into()),
                        configured_weight: 3,
                        health: Health::Up,
                        inactive_connections: 6,
                        kernel_weight: Some(3),
                        last_check: Some(LastCheck {
                            at_unix: Some(1_700_000_100.5),
                            latency_seconds: 0.0025,
                            result: "ok \"quoted\"".into(),
                            up: true,
                        }),
                        port: 80,
                        stats: Some(ipvs),
                        check_counters,
                    },
                    Destination {
                        active_connections: 0,
                        address: "2001:db8::12".parse().unwrap(),
                        checker: None,
                        configured_weight: 0,
                        health: Health::Down,
                        inactive_connections: 0,
                        kernel_weight: None,
                        last_check: None,
                        port: 8080,
                        stats: None,
                        check_counters: CheckCounters::default(),
                    },
                ],
                in_kernel: true,
                scheduler: "wrr".into(),
                service: "TCP 192.0.2.10:80".into(),
                stats: Some(ipvs),
            },
            VirtualServer {
                destinations: vec![],
                in_kernel: false,
                scheduler: "mh".into(),
                service: "FWM 42 IPv4".into(),
                stats: None,
            },
        ],
        daemon: DaemonCounters {
            reconcile_runs: 1,
            op_failures: 2,
            notify_ok: 4,
            ..Default::default()
        },
    }
}

/// The golden file `name`; with `HALDIR_BLESS` set, `current` is written into it first
/// (review the diff: a golden changes only when the document's format does).
fn golden_for(name: &str, current: &str) -> String {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("HALDIR_BLESS").is_some() {
        std::fs::write(&path, current).unwrap();
    }
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn the_document_serializes_as_the_untyped_builders_did() {
    let text = serde_json::to_string_pretty(&rich()).unwrap();
    assert_eq!(
        text,
        golden_for("document.json", &format!("{text}\n")).trim_end()
    );
}

#[test]
fn the_document_reads_back_as_itself_but_for_the_metrics_only_counters() {
    let document = rich();
    let back: StatusDocument =
        serde_json::from_str(&serde_json::to_string(&document).unwrap()).unwrap();
    let mut expected = document;
    expected.daemon = DaemonCounters::default();
    for vs in &mut expected.virtual_servers {
        for d in &mut vs.destinations {
            d.check_counters = CheckCounters::default();
        }
    }
    assert_eq!(back, expected);
}

#[test]
fn the_text_is_the_table_of_haldir_status() {
    let text = haldir_status::text::render(&rich());
    assert_eq!(text, golden_for("status.txt", &text));
}

#[test]
fn the_metrics_are_those_of_the_untyped_renderer() {
    let text = haldir_status::prometheus::render(&rich(), "0.1.0");
    assert_eq!(text, golden_for("metrics.txt", &text));
}

#[test]
fn the_check_schedulers_figures_are_metrics_with_the_lateness_in_seconds() {
    let mut document = rich();
    document.daemon.health_checks_scheduled = 40_000;
    document.daemon.health_check_runs = 12;
    document.daemon.health_check_max_lateness_us = 1_500_000;
    document.daemon.health_table_publications = 40;
    document.daemon.health_table_publications_held = 7;
    let text = haldir_status::prometheus::render(&document, "0.1.0");
    for line in [
        "haldir_health_checks_scheduled 40000",
        "haldir_health_check_runs_total 12",
        "haldir_health_check_max_lateness_seconds 1.5",
        "haldir_health_table_publications_total 40",
        "haldir_health_table_publications_held_total 7",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
}

#[test]
fn the_status_file_holds_the_vrrp_part_and_the_bulk_resync() {
    let file = StatusFile::new(&vrrp_status(), bulk_resync());
    let value: serde_json::Value = serde_json::from_str(&file.render()).unwrap();
    let document = serde_json::to_value(rich()).unwrap();
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["bulk_resync", "instances", "links", "schema_version"]
    );
    for key in keys {
        assert_eq!(value[key], document[key], "{key}");
    }
}

#[test]
fn a_status_without_instances_or_virtual_servers_says_so() {
    let text = haldir_status::text::render(&StatusDocument::default());
    assert_eq!(text, "no VRRP instances\n");
}
