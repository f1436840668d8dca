//! The renderings of the sections whose values their owners produce: the bulk resync
//! ([`ResyncStatus`], `haldir-ipvs`), the DR ARP check ([`Report`], `haldir-director`) and
//! the BGP announcement ([`AnnounceStatus`], `haldir-director`).
//! [`crate::text::render`] and [`crate::prometheus::render`] call these after their own
//! tables and families: text first the DR ARP check then the bulk resync, `/metrics` first
//! the bulk resync then the DR ARP check (the order haldir always had); the announcement
//! last in both, and only when `[announce]` is configured.

use std::fmt::Write as _;

use haldir_director::announce::AnnounceStatus;
use haldir_director::arp_check::{mac_text, Report};
use haldir_director::bmp::BgpStatus;
use haldir_ipvs::resync::ResyncStatus;

use crate::prometheus::{n, Family};
use crate::time::{age_text, utc_text};

/// The bulk-resync lines of `haldir status` (nothing when it is off); `now_unix` is the
/// document's time.
pub(crate) fn bulk_resync_text(resync: &ResyncStatus, now_unix: f64) -> String {
    if !resync.enabled {
        return String::new();
    }
    let mut out = format!("\nbulk resync: sync role {}", resync.role.as_str());
    if let Some(pending) = &resync.pending {
        let _ = write!(out, ", asking the master (attempt {})", pending.attempts);
    }
    out.push('\n');
    if let Some(last) = &resync.last_sent {
        let _ = writeln!(
            out,
            "  last sent: {} connections to {} in {} ms, {} ago",
            last.records,
            last.to,
            last.millis,
            age_text(now_unix - last.at_unix)
        );
    }
    if let Some(last) = &resync.last_received {
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

/// The DR ARP check's lines of `haldir status`, `now_unix` being the document's time (empty
/// when no DR real server is checked and nothing stands).
pub(crate) fn dr_arp_check_text(report: &Report, now_unix: f64) -> String {
    if report.segments.is_empty() && report.conflicts.is_empty() && report.error.is_none() {
        return String::new();
    }
    let last = match report.last_round_unix {
        Some(t) => format!("last {} ago", age_text(now_unix - t)),
        None => "no round yet".into(),
    };
    let mut out = format!(
        "\nDR ARP check (every {}s, {last}): ",
        report.interval_seconds
    );
    if let Some(error) = &report.error {
        let _ = writeln!(out, "cannot run: {error}");
    } else if report.conflicts.is_empty() {
        out.push_str("no real server answers ARP for a VIP\n");
    } else {
        let _ = writeln!(
            out,
            "{} CONFLICT(S): real servers answering ARP for a VIP (set arp_ignore=1, arp_announce=2 on them)",
            report.conflicts.len()
        );
        for c in &report.conflicts {
            let who = c
                .real_server
                .map_or_else(|| "unknown host".to_owned(), |a| a.to_string());
            let _ = writeln!(
                out,
                "  {}  VIP {}  answered by {} ({}) on {}  since {} ({} ago)",
                c.virtual_server,
                c.vip,
                who,
                mac_text(&c.mac),
                c.interface,
                utc_text(c.since_unix),
                age_text(now_unix - c.since_unix),
            );
        }
    }
    for s in &report.segments {
        if let Some(error) = &s.error {
            let _ = writeln!(out, "  {}: cannot probe: {error}", s.interface);
        }
    }
    out
}

/// The announcement lines of `haldir status` (nothing without `[announce]`): one per VIP,
/// announced or withdrawn and why.
pub(crate) fn announce_text(announce: &AnnounceStatus) -> String {
    if !announce.configured {
        return String::new();
    }
    let mut out = format!(
        "\nBGP announcement (addresses on {}, drain {}s):\n",
        announce.interface, announce.drain_seconds
    );
    for vip in &announce.vips {
        let _ = writeln!(
            out,
            "  {:<39}  {:<9}  {}",
            vip.address.to_string(),
            if vip.announced {
                "announced"
            } else {
                "withdrawn"
            },
            vip.reason
        );
    }
    if let Some(bgp) = &announce.bgp {
        bgp_text(&mut out, bgp);
    }
    out
}

/// The BGP sessions' lines (`[announce] bmp_listen`): the speaker, then one per session.
fn bgp_text(out: &mut String, bgp: &BgpStatus) {
    if !bgp.speaker_connected {
        let _ = writeln!(
            out,
            "  BGP sessions: unknown, no BGP speaker connected over BMP to {}",
            bgp.listen
        );
        return;
    }
    let _ = writeln!(
        out,
        "  BGP sessions (reported over BMP by {}):",
        bgp.speaker.as_deref().unwrap_or("the BGP speaker")
    );
    if bgp.peers.is_empty() {
        let _ = writeln!(out, "    none reported");
    }
    for peer in &bgp.peers {
        let state = if peer.established {
            format!("established for {}s", peer.for_seconds)
        } else {
            format!(
                "down for {}s ({})",
                peer.for_seconds,
                peer.down_reason.as_deref().unwrap_or("no reason given")
            )
        };
        let _ = writeln!(
            out,
            "    {:<39}  AS {:<10}  {state}",
            peer.address.to_string(),
            peer.asn
        );
    }
}

/// Appends the announcement's family (nothing without `[announce]`): one gauge per VIP,
/// 1 while announced.
pub(crate) fn announce_metrics(out: &mut String, announce: &AnnounceStatus) {
    if !announce.configured {
        return;
    }
    let mut family = Family::new(
        out,
        "haldir_vip_announced",
        "gauge",
        "1 while the VIP's address is on the announce interface (FRR announces it over BGP), 0 while withdrawn.",
    );
    for vip in &announce.vips {
        let address = vip.address.to_string();
        family.sample(&[("vip", &address)], if vip.announced { 1.0 } else { 0.0 });
    }
    let Some(bgp) = &announce.bgp else {
        return;
    };
    Family::new(
        out,
        "haldir_bmp_speaker_connected",
        "gauge",
        "1 while the BGP speaker is connected to haldir over BMP (bmp_listen); without it the sessions are unknown.",
    )
    .sample(&[], if bgp.speaker_connected { 1.0 } else { 0.0 });
    Family::new(
        out,
        "haldir_bmp_rejected_connections_total",
        "counter",
        "BMP connections ended for a malformed stream or replaced by a newer one.",
    )
    .sample(&[], bgp.rejected_connections as f64);
    let mut family = Family::new(
        out,
        "haldir_bgp_session_established",
        "gauge",
        "1 while the BGP session with the neighbour is Established, as the speaker reports it over BMP.",
    );
    for peer in &bgp.peers {
        let address = peer.address.to_string();
        family.sample(
            &[("peer", &address)],
            if peer.established { 1.0 } else { 0.0 },
        );
    }
}

/// The two samples of a family by `direction` (`sent`, `received`); an absent value (no
/// resync yet) has no sample.
fn by_direction(family: &mut Family<'_>, sent: Option<f64>, received: Option<f64>) {
    for (direction, value) in [("sent", sent), ("received", received)] {
        if let Some(value) = value {
            family.sample(&[("direction", direction)], value);
        }
    }
}

/// Appends the bulk-resync families.
pub(crate) fn bulk_resync_metrics(out: &mut String, resync: &ResyncStatus) {
    let sent = resync.last_sent.as_ref();
    let received = resync.last_received.as_ref();
    by_direction(
        &mut Family::new(
            out,
            "haldir_bulk_resync_requests_total",
            "counter",
            "Bulk-resync requests, by direction.",
        ),
        Some(n(resync.requests_sent)),
        Some(n(resync.requests_received)),
    );
    Family::new(
        out,
        "haldir_bulk_resync_dumps_total",
        "counter",
        "Whole connection tables sent to a backup.",
    )
    .sample(&[], n(resync.dumps_sent));
    Family::new(
        out,
        "haldir_bulk_resync_records_sent_total",
        "counter",
        "Connection records sent in bulk resyncs.",
    )
    .sample(&[], n(resync.records_sent));
    Family::new(
        out,
        "haldir_bulk_resync_completed_total",
        "counter",
        "Bulk resyncs completed as a backup.",
    )
    .sample(&[], n(resync.resyncs_received));
    by_direction(
        &mut Family::new(
            out,
            "haldir_bulk_resync_last_connections",
            "gauge",
            "Connection records in the last bulk resync, by direction.",
        ),
        sent.map(|s| f64::from(s.records)),
        received.map(|r| f64::from(r.records)),
    );
    by_direction(
        &mut Family::new(
            out,
            "haldir_bulk_resync_last_duration_seconds",
            "gauge",
            "Duration of the last bulk resync: dump (sent), request to DONE (received).",
        ),
        sent.map(|s| f64::from(s.millis) / 1000.0),
        received.map(|r| r.millis as f64 / 1000.0),
    );
    by_direction(
        &mut Family::new(
            out,
            "haldir_bulk_resync_last_timestamp_seconds",
            "gauge",
            "Unix time of the last bulk resync, by direction.",
        ),
        sent.map(|s| s.at_unix),
        received.map(|r| r.at_unix),
    );
    let mut holds = Family::new(
        out,
        "haldir_bulk_resync_preemption_holds_total",
        "counter",
        "Preemptions held until a bulk resync was done, by outcome.",
    );
    holds.sample(
        &[("outcome", "done")],
        n(resync.preemption_holds.saturating_sub(resync.hold_timeouts)),
    );
    holds.sample(&[("outcome", "timeout")], n(resync.hold_timeouts));
    let mut drops = Family::new(
        out,
        "haldir_bulk_resync_dropped_packets_total",
        "counter",
        "Bulk-resync packets dropped, by reason.",
    );
    for (reason, count) in &resync.drops {
        drops.sample(&[("reason", reason)], n(*count));
    }
}

/// Appends the DR ARP check's families: one sample per standing conflict, and the rounds.
pub(crate) fn dr_arp_check_metrics(out: &mut String, report: &Report) {
    let mut conflicts = Family::new(
        out,
        "haldir_dr_arp_conflict",
        "gauge",
        "1 while a host answers ARP for the VIP of a DR virtual server (real_server: the real server with that MAC, or unknown).",
    );
    for c in &report.conflicts {
        let (vip, mac) = (c.vip.to_string(), mac_text(&c.mac));
        let real_server = c
            .real_server
            .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        conflicts.sample(
            &[
                ("virtual_server", &c.virtual_server),
                ("vip", &vip),
                ("real_server", &real_server),
                ("mac", &mac),
            ],
            1.0,
        );
    }
    Family::new(
        out,
        "haldir_dr_arp_check_rounds_total",
        "counter",
        "Rounds of the DR real-server ARP check.",
    )
    .sample(&[], n(report.rounds));
}

#[cfg(test)]
mod tests {
    use haldir_director::announce::VipStatus;
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    use haldir_director::arp_check::{SegmentReport, Skipped, StandingConflict};
    use haldir_ipvs::resync::{PendingStatus, ReceivedStatus, ResyncRole, SentStatus};
    use serde_json::json;

    use super::*;

    fn full_resync() -> ResyncStatus {
        ResyncStatus {
            enabled: true,
            role: ResyncRole::Both,
            pending: Some(PendingStatus {
                since_unix: 99.5,
                attempts: 3,
            }),
            last_sent: Some(SentStatus {
                at_unix: 90.25,
                to: "10.0.0.2".into(),
                records: 40,
                messages: 2,
                entries: 41,
                skipped: BTreeMap::from([("pe_data".to_owned(), 1)]),
                pace: 1,
                millis: 512,
                read_millis: 300,
            }),
            last_received: Some(ReceivedStatus {
                at_unix: 100.0,
                from: "10.0.0.1".into(),
                records: 40,
                messages: 2,
                master_millis: 500,
                millis: 767,
                attempts: 2,
                pace: 0,
                kernel_socket_drops: None,
            }),
            requests_sent: 5,
            requests_received: 6,
            dumps_sent: 1,
            records_sent: 40,
            resyncs_received: 1,
            preemption_holds: 2,
            hold_timeouts: 1,
            drops: BTreeMap::from([("not_master".to_owned(), 4), ("bad_magic".to_owned(), 1)]),
        }
    }

    /// The JSON is the one the binary built with `json!` before the resync machine: same
    /// keys, same values, same shape (the tests of the binary and the VM read it).
    #[test]
    fn the_status_serializes_as_the_bulk_resync_object_always_did() {
        let expected = json!({
            "enabled": true,
            "role": "both",
            "pending": {"since_unix": 99.5, "attempts": 3},
            "last_sent": {
                "at_unix": 90.25, "to": "10.0.0.2", "records": 40, "messages": 2, "entries": 41,
                "skipped": {"pe_data": 1}, "pace": 1, "millis": 512, "read_millis": 300,
            },
            "last_received": {
                "at_unix": 100.0, "from": "10.0.0.1", "records": 40, "messages": 2,
                "master_millis": 500, "millis": 767, "attempts": 2, "pace": 0,
                "kernel_socket_drops": null,
            },
            "requests_sent": 5,
            "requests_received": 6,
            "dumps_sent": 1,
            "records_sent": 40,
            "resyncs_received": 1,
            "preemption_holds": 2,
            "hold_timeouts": 1,
            "drops": {"bad_magic": 1, "not_master": 4},
        });
        assert_eq!(serde_json::to_value(full_resync()).unwrap(), expected);
        let idle = json!({
            "enabled": false, "role": "none", "pending": null, "last_sent": null,
            "last_received": null, "requests_sent": 0, "requests_received": 0, "dumps_sent": 0,
            "records_sent": 0, "resyncs_received": 0, "preemption_holds": 0, "hold_timeouts": 0,
            "drops": {},
        });
        assert_eq!(serde_json::to_value(ResyncStatus::default()).unwrap(), idle);
        // And back: `haldir status` renders the daemon's JSON.
        let back: ResyncStatus = serde_json::from_value(expected).unwrap();
        assert_eq!(back, full_resync());
    }

    #[test]
    fn the_resync_text_shows_the_role_the_pending_request_and_the_last_resyncs() {
        assert_eq!(
            bulk_resync_text(&full_resync(), 160.0),
            "\nbulk resync: sync role both, asking the master (attempt 3)\n\
             \x20 last sent: 40 connections to 10.0.0.2 in 512 ms, 1m9s ago\n\
             \x20 last received: 40 connections from 10.0.0.1 in 767 ms, 1m0s ago\n"
        );
        let quiet = ResyncStatus {
            enabled: true,
            role: ResyncRole::Backup,
            ..ResyncStatus::default()
        };
        assert_eq!(
            bulk_resync_text(&quiet, 0.0),
            "\nbulk resync: sync role backup\n"
        );
        assert!(bulk_resync_text(&ResyncStatus::default(), 0.0).is_empty());
    }

    #[test]
    fn the_resync_metrics_have_every_family_and_no_sample_for_what_did_not_happen() {
        let mut metrics = String::new();
        bulk_resync_metrics(&mut metrics, &ResyncStatus::default());
        assert_eq!(
            metrics,
            "# HELP haldir_bulk_resync_requests_total Bulk-resync requests, by direction.\n\
             # TYPE haldir_bulk_resync_requests_total counter\n\
             haldir_bulk_resync_requests_total{direction=\"sent\"} 0\n\
             haldir_bulk_resync_requests_total{direction=\"received\"} 0\n\
             # HELP haldir_bulk_resync_dumps_total Whole connection tables sent to a backup.\n\
             # TYPE haldir_bulk_resync_dumps_total counter\n\
             haldir_bulk_resync_dumps_total 0\n\
             # HELP haldir_bulk_resync_records_sent_total Connection records sent in bulk resyncs.\n\
             # TYPE haldir_bulk_resync_records_sent_total counter\n\
             haldir_bulk_resync_records_sent_total 0\n\
             # HELP haldir_bulk_resync_completed_total Bulk resyncs completed as a backup.\n\
             # TYPE haldir_bulk_resync_completed_total counter\n\
             haldir_bulk_resync_completed_total 0\n\
             # HELP haldir_bulk_resync_last_connections Connection records in the last bulk resync, by direction.\n\
             # TYPE haldir_bulk_resync_last_connections gauge\n\
             # HELP haldir_bulk_resync_last_duration_seconds Duration of the last bulk resync: dump (sent), request to DONE (received).\n\
             # TYPE haldir_bulk_resync_last_duration_seconds gauge\n\
             # HELP haldir_bulk_resync_last_timestamp_seconds Unix time of the last bulk resync, by direction.\n\
             # TYPE haldir_bulk_resync_last_timestamp_seconds gauge\n\
             # HELP haldir_bulk_resync_preemption_holds_total Preemptions held until a bulk resync was done, by outcome.\n\
             # TYPE haldir_bulk_resync_preemption_holds_total counter\n\
             haldir_bulk_resync_preemption_holds_total{outcome=\"done\"} 0\n\
             haldir_bulk_resync_preemption_holds_total{outcome=\"timeout\"} 0\n\
             # HELP haldir_bulk_resync_dropped_packets_total Bulk-resync packets dropped, by reason.\n\
             # TYPE haldir_bulk_resync_dropped_packets_total counter\n"
        );

        let mut metrics = String::new();
        bulk_resync_metrics(&mut metrics, &full_resync());
        for line in [
            "haldir_bulk_resync_requests_total{direction=\"sent\"} 5",
            "haldir_bulk_resync_requests_total{direction=\"received\"} 6",
            "haldir_bulk_resync_dumps_total 1",
            "haldir_bulk_resync_records_sent_total 40",
            "haldir_bulk_resync_completed_total 1",
            "haldir_bulk_resync_last_connections{direction=\"sent\"} 40",
            "haldir_bulk_resync_last_connections{direction=\"received\"} 40",
            "haldir_bulk_resync_last_duration_seconds{direction=\"sent\"} 0.512",
            "haldir_bulk_resync_last_duration_seconds{direction=\"received\"} 0.767",
            "haldir_bulk_resync_last_timestamp_seconds{direction=\"sent\"} 90.25",
            "haldir_bulk_resync_last_timestamp_seconds{direction=\"received\"} 100",
            "haldir_bulk_resync_preemption_holds_total{outcome=\"done\"} 1",
            "haldir_bulk_resync_preemption_holds_total{outcome=\"timeout\"} 1",
            "haldir_bulk_resync_dropped_packets_total{reason=\"bad_magic\"} 1",
            "haldir_bulk_resync_dropped_packets_total{reason=\"not_master\"} 4",
        ] {
            assert!(metrics.lines().any(|l| l == line), "{line}:\n{metrics}");
        }
    }

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
    const RS1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
    const RS2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 12);

    fn conflict(real_server: Option<Ipv4Addr>, last_byte: u8, since_unix: f64) -> StandingConflict {
        StandingConflict {
            interface: "eth1".into(),
            mac: [2, 0, 0, 0, 0, last_byte],
            real_server,
            since_unix,
            vip: VIP,
            virtual_server: "TCP 10.0.0.100:80".into(),
        }
    }

    fn rich_report() -> Report {
        Report {
            rounds: 3,
            last_round_unix: Some(100.5),
            segments: vec![
                SegmentReport {
                    error: None,
                    interface: "eth1".into(),
                    real_servers: vec![RS1, RS2],
                    unresolved: vec![RS1],
                    vips: vec![VIP],
                },
                SegmentReport {
                    error: Some("cannot open: operation not permitted".into()),
                    interface: "eth2".into(),
                    real_servers: vec![],
                    unresolved: vec![],
                    vips: vec![],
                },
            ],
            skipped: vec![Skipped {
                real_server: Ipv4Addr::new(10, 0, 9, 9),
                reason: "no route".into(),
            }],
            conflicts: vec![conflict(Some(RS2), 0x12, 40.0), conflict(None, 0x99, 41.25)],
            ..Report::default()
        }
    }

    #[test]
    fn the_arp_check_text_names_the_guilty_real_server() {
        let report = Report {
            segments: vec![],
            conflicts: rich_report().conflicts[..1].to_vec(),
            ..rich_report()
        };
        assert_eq!(
            dr_arp_check_text(&report, 102.0),
            "\nDR ARP check (every 10s, last 1s ago): 1 CONFLICT(S): real servers answering ARP for a VIP (set arp_ignore=1, arp_announce=2 on them)\n  \
             TCP 10.0.0.100:80  VIP 10.0.0.100  answered by 10.0.0.12 (02:00:00:00:00:12) on eth1  since 1970-01-01 00:00:40Z (1m2s ago)\n"
        );
        assert!(dr_arp_check_text(&Report::default(), 0.0).is_empty());
        let quiet = Report {
            conflicts: vec![],
            ..rich_report()
        };
        assert!(dr_arp_check_text(&quiet, 102.0)
            .contains("no real server answers ARP for a VIP\n  eth2: cannot probe: cannot open"));
        let failed = Report {
            error: Some("listing interfaces: denied".into()),
            last_round_unix: None,
            ..Report::default()
        };
        assert_eq!(
            dr_arp_check_text(&failed, 0.0),
            "\nDR ARP check (every 10s, no round yet): cannot run: listing interfaces: denied\n"
        );
    }

    #[test]
    fn the_arp_check_metrics_have_one_sample_per_conflict_and_the_rounds() {
        let mut metrics = String::new();
        dr_arp_check_metrics(&mut metrics, &rich_report());
        assert_eq!(
            metrics,
            "# HELP haldir_dr_arp_conflict 1 while a host answers ARP for the VIP of a DR virtual server (real_server: the real server with that MAC, or unknown).\n\
             # TYPE haldir_dr_arp_conflict gauge\n\
             haldir_dr_arp_conflict{virtual_server=\"TCP 10.0.0.100:80\",vip=\"10.0.0.100\",real_server=\"10.0.0.12\",mac=\"02:00:00:00:00:12\"} 1\n\
             haldir_dr_arp_conflict{virtual_server=\"TCP 10.0.0.100:80\",vip=\"10.0.0.100\",real_server=\"unknown\",mac=\"02:00:00:00:00:99\"} 1\n\
             # HELP haldir_dr_arp_check_rounds_total Rounds of the DR real-server ARP check.\n\
             # TYPE haldir_dr_arp_check_rounds_total counter\n\
             haldir_dr_arp_check_rounds_total 3\n"
        );
    }

    #[test]
    fn the_whole_text_and_metrics_end_with_the_sections_in_the_order_haldir_always_had() {
        let document = crate::StatusDocument {
            bulk_resync: full_resync(),
            dr_arp_check: rich_report(),
            now_unix: 160.0,
            ..Default::default()
        };
        let text = crate::text::render(&document);
        let sections =
            dr_arp_check_text(&rich_report(), 160.0) + &bulk_resync_text(&full_resync(), 160.0);
        assert!(text.ends_with(&sections), "{text}");
        assert!(
            text.starts_with("no VRRP instances\n\nDR ARP check"),
            "{text}"
        );

        let metrics = crate::prometheus::render(&document, "0.1.0");
        let mut sections = String::new();
        bulk_resync_metrics(&mut sections, &full_resync());
        dr_arp_check_metrics(&mut sections, &rich_report());
        assert!(metrics.ends_with(&sections), "{metrics}");
        assert!(metrics.len() > sections.len());
    }

    #[test]
    fn the_announcement_is_one_line_and_one_gauge_per_vip_and_nothing_when_not_configured() {
        assert_eq!(announce_text(&AnnounceStatus::default()), "");
        let mut none = String::new();
        announce_metrics(&mut none, &AnnounceStatus::default());
        assert_eq!(none, "");

        let announce = AnnounceStatus {
            configured: true,
            drain_seconds: 5.0,
            interface: "lo".into(),
            vips: vec![
                VipStatus {
                    address: "192.0.2.10".parse().unwrap(),
                    announced: true,
                    reason: "every virtual server has its quorum".into(),
                    virtual_servers: vec!["TCP 192.0.2.10:80".into()],
                },
                VipStatus {
                    address: "2001:db8::10".parse().unwrap(),
                    announced: false,
                    reason: "below quorum: TCP [2001:db8::10]:80".into(),
                    virtual_servers: vec!["TCP [2001:db8::10]:80".into()],
                },
            ],
            bgp: None,
        };
        assert_eq!(
            announce_text(&announce),
            "\nBGP announcement (addresses on lo, drain 5s):\n\
             \x20 192.0.2.10                               announced  every virtual server has its quorum\n\
             \x20 2001:db8::10                             withdrawn  below quorum: TCP [2001:db8::10]:80\n"
        );
        let mut metrics = String::new();
        announce_metrics(&mut metrics, &announce);
        assert_eq!(
            metrics,
            "# HELP haldir_vip_announced 1 while the VIP's address is on the announce interface (FRR announces it over BGP), 0 while withdrawn.\n\
             # TYPE haldir_vip_announced gauge\n\
             haldir_vip_announced{vip=\"192.0.2.10\"} 1\n\
             haldir_vip_announced{vip=\"2001:db8::10\"} 0\n"
        );
        let document = crate::StatusDocument {
            announce: announce.clone(),
            ..Default::default()
        };
        assert!(crate::text::render(&document).ends_with(&announce_text(&announce)));
        assert!(crate::prometheus::render(&document, "0.1.0").ends_with(&metrics));
    }

    #[test]
    fn the_bgp_sessions_follow_the_vips_when_bmp_is_configured() {
        use haldir_director::bmp::BgpPeerStatus;
        let mut announce = AnnounceStatus {
            configured: true,
            drain_seconds: 5.0,
            interface: "lo".into(),
            vips: Vec::new(),
            bgp: Some(BgpStatus {
                listen: "127.0.0.1:11019".into(),
                speaker_connected: true,
                speaker: Some("d1".into()),
                rejected_connections: 1,
                peers: vec![
                    BgpPeerStatus {
                        address: "10.0.0.1".parse().unwrap(),
                        asn: 65001,
                        established: true,
                        for_seconds: 12.5,
                        down_reason: None,
                    },
                    BgpPeerStatus {
                        address: "10.0.0.9".parse().unwrap(),
                        asn: 65009,
                        established: false,
                        for_seconds: 3.0,
                        down_reason: Some("the neighbour sent a NOTIFICATION".into()),
                    },
                ],
            }),
        };
        assert_eq!(
            announce_text(&announce),
            "\nBGP announcement (addresses on lo, drain 5s):\n\
             \x20 BGP sessions (reported over BMP by d1):\n\
             \x20   10.0.0.1                                 AS 65001       established for 12.5s\n\
             \x20   10.0.0.9                                 AS 65009       down for 3s (the neighbour sent a NOTIFICATION)\n"
        );
        let mut metrics = String::new();
        announce_metrics(&mut metrics, &announce);
        assert!(
            metrics.contains("haldir_bmp_speaker_connected 1\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("haldir_bmp_rejected_connections_total 1\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("haldir_bgp_session_established{peer=\"10.0.0.1\"} 1\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("haldir_bgp_session_established{peer=\"10.0.0.9\"} 0\n"),
            "{metrics}"
        );

        announce.bgp.as_mut().unwrap().speaker_connected = false;
        assert!(announce_text(&announce).ends_with(
            "  BGP sessions: unknown, no BGP speaker connected over BMP to 127.0.0.1:11019\n"
        ));
    }
}
