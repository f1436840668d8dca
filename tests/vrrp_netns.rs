//! haldir against haldir on a lab bridge: election, failover on a crash, handover on a
//! graceful stop, `haldir handover` and a priority-lowering reload (make-before-break),
//! preemption, IPv6, and clean-up of a crashed predecessor's addresses.
//!
//! Every behaviour is proven from outside the daemon: `ip addr` in the router namespaces,
//! frames captured on the bridge (decoded with haldir-vrrp's wire parsers), and a client
//! namespace probing the VIP. Version 3 at 100 ms keeps the suite fast; one test runs
//! version 2 at 1 s. Needs root (network namespaces); skipped loudly otherwise.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use haldir_lab::capture::{gratuitous_arps, vrrp_payload, Frame};
use haldir_lab::{
    self as lab, Capture, FrameKind, Haldir, HaldirInstance, Lab, ProbeReport, Prober, Responder,
};
use haldir_vrrp::wire::ndisc::NaRepr;
use haldir_vrrp::wire::vrrp::{AdvertRepr, Version};

const VRID: u8 = 51;
const VIP: &str = "10.0.0.100";
const VIP_CIDR: &str = "10.0.0.100/24";
const VIP6: &str = "fd00::100";
const VIP6_CIDR: &str = "fd00::100/64";
const PROBE_PORT: u16 = 7777;
/// Version 3 advert interval used wherever the behaviour does not need v2's 1 s.
const FAST: Duration = Duration::from_millis(100);
const HIGH: u8 = 150;
const LOW: u8 = 100;

use haldir_lab::skip_unless_root;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

/// RFC 5798 §6.1 Skew_Time for version 3: (256 - priority) * interval / 256.
fn skew_v3(priority: u8, interval: Duration) -> Duration {
    interval * (256 - u32::from(priority)) / 256
}

/// RFC 5798 §6.1 Master_Down_Interval: 3 * interval + Skew_Time.
fn master_down_v3(priority: u8, interval: Duration) -> Duration {
    interval * 3 + skew_v3(priority, interval)
}

/// Bound on a graceful handover (the priority-0 advert to the backup's first advert), whose
/// expected figure is Skew_Time (RFC 5798 §6.4.2): Master_Down_Interval minus one advert
/// interval, the earliest a backup that ignored the priority-0 advert could take over (its
/// Master_Down timer runs from the master's last regular advert, at most one interval
/// before the priority-0 one). That is 4.3 × Skew_Time here, so it holds on a loaded
/// machine (it was 3 × Skew_Time) and still tells Skew_Time from Master_Down_Interval.
/// Both instants are the capture's; the figure is printed.
fn graceful_handover_bound(skew: Duration, interval: Duration) -> Duration {
    interval * 3 + skew - interval
}

/// A lab with routers r1 (10.0.0.1), r2 (10.0.0.2) and client cl (10.0.0.9).
fn ipv4_lab(tag: &str) -> Lab {
    let lab = Lab::new(tag).unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
    lab.add_host("cl", &["10.0.0.9/24"]).unwrap();
    lab
}

fn v3(priority: u8) -> HaldirInstance {
    HaldirInstance::v3(VRID, priority, FAST, &[VIP_CIDR])
}

/// The routers among `hosts` whose kernel holds `vip`.
fn holders<'a>(lab: &Lab, hosts: &[&'a str], vip: &str) -> Vec<&'a str> {
    hosts
        .iter()
        .copied()
        .filter(|h| lab.has_address(h, vip))
        .collect()
}

use haldir_lab::describe_all as describe;

/// Waits until `master` is MASTER, `backup` BACKUP and only `master`'s host holds `vip`.
fn assert_elected(lab: &Lab, master: &Haldir, backup: &Haldir, vip: &str, timeout: Duration) {
    let hosts = [master.host(), backup.host()];
    let elected = lab::wait_until(timeout, || {
        master.state().as_deref() == Some("MASTER")
            && backup.state().as_deref() == Some("BACKUP")
            && holders(lab, &hosts, vip) == [master.host()]
    });
    assert!(
        elected,
        "expected {} MASTER holding {vip} and {} BACKUP within {timeout:?}; VIP on {:?}\n{}",
        master.host(),
        backup.host(),
        holders(lab, &hosts, vip),
        describe(&[master, backup])
    );
}

/// Over `window`, nothing changes: states, transition counters, the VIP's holder.
fn assert_stable(lab: &Lab, master: &Haldir, backup: &Haldir, vip: &str, window: Duration) {
    let transitions = (master.counter("transitions"), backup.counter("transitions"));
    let deadline = Instant::now() + window;
    let hosts = [master.host(), backup.host()];
    while Instant::now() < deadline {
        assert_eq!(
            master.state().as_deref(),
            Some("MASTER"),
            "{}",
            describe(&[master, backup])
        );
        assert_eq!(
            backup.state().as_deref(),
            Some("BACKUP"),
            "{}",
            describe(&[master, backup])
        );
        assert_eq!(holders(lab, &hosts, vip), [master.host()]);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        (master.counter("transitions"), backup.counter("transitions")),
        transitions,
        "a router changed state while the election should have been stable"
    );
}

/// A captured VRRP advert, decoded with haldir-vrrp's parser.
fn decode_vrrp(frame: &Frame) -> Option<AdvertRepr> {
    let payload = vrrp_payload(&frame.bytes)?;
    let ip = &frame.bytes[14..];
    let (src, dst) = match frame.kind {
        FrameKind::Vrrp4 => (
            IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&ip[12..16]).ok()?)),
            IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&ip[16..20]).ok()?)),
        ),
        FrameKind::Vrrp6 => (
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).ok()?)),
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).ok()?)),
        ),
        _ => return None,
    };
    AdvertRepr::parse(payload, src, dst).ok()
}

/// Decoded VRRP adverts of VRID [`VRID`] sent from `mac`, in capture order.
fn adverts_from(frames: &[Frame], mac: [u8; 6]) -> Vec<(Instant, AdvertRepr)> {
    frames
        .iter()
        .filter(|f| f.kind.is_vrrp() && f.src_mac() == mac)
        .filter_map(|f| decode_vrrp(f).map(|a| (f.at, a)))
        .filter(|(_, a)| a.vrid == VRID)
        .collect()
}

fn report_summary(report: &ProbeReport) -> String {
    format!(
        "probes sent {}, replies {} (r1 {}, r2 {}), lost {}, send errors {}",
        report.sent,
        report.reply_count(),
        report.replies_from("r1"),
        report.replies_from("r2"),
        report.lost(),
        report.send_errors
    )
}

#[test]
fn two_v3_routers_elect_one_master_and_only_it_holds_the_vip() {
    if skip_unless_root("two_v3_routers_elect_one_master_and_only_it_holds_the_vip") {
        return;
    }
    let lab = ipv4_lab("v3-election");
    let capture = Capture::start(&lab).unwrap();
    let r1 = Haldir::start(&lab, "r1", binary(), &[v3(HIGH)]).unwrap();
    let r2 = Haldir::start(&lab, "r2", binary(), &[v3(LOW)]).unwrap();
    assert_elected(&lab, &r1, &r2, VIP, Duration::from_secs(5));
    // Settle (r2 may have started in the middle of r1's first adverts), then watch.
    std::thread::sleep(FAST * 3);
    let window_start = Instant::now();
    assert_stable(&lab, &r1, &r2, VIP, FAST * 10);

    // On the wire: only the master advertises, with its configuration.
    let frames = capture.stop();
    let r1_mac = lab.mac_bytes("r1").unwrap();
    let r2_mac = lab.mac_bytes("r2").unwrap();
    let in_window = |adverts: Vec<(Instant, AdvertRepr)>| -> Vec<AdvertRepr> {
        adverts
            .into_iter()
            .filter(|(at, _)| *at >= window_start)
            .map(|(_, a)| a)
            .collect()
    };
    let from_r1 = in_window(adverts_from(&frames, r1_mac));
    let from_r2 = in_window(adverts_from(&frames, r2_mac));
    assert!(
        from_r1.len() >= 5,
        "the master sent only {} adverts in 10 intervals",
        from_r1.len()
    );
    assert!(from_r2.is_empty(), "the backup advertised: {from_r2:?}");
    for advert in &from_r1 {
        assert_eq!(advert.version, Version::V3);
        assert_eq!(advert.priority, HIGH);
        assert_eq!(advert.advert_interval_centis, 10);
        assert_eq!(advert.addresses, [VIP.parse::<IpAddr>().unwrap()]);
    }
    assert!(r1.is_running() && r2.is_running());
}

#[test]
fn two_v2_routers_elect_one_master_and_a_graceful_stop_hands_over_after_skew_time() {
    if skip_unless_root(
        "two_v2_routers_elect_one_master_and_a_graceful_stop_hands_over_after_skew_time",
    ) {
        return;
    }
    let second = Duration::from_secs(1);
    let lab = ipv4_lab("v2-election");
    let capture = Capture::start(&lab).unwrap();
    let r1 = Haldir::start(
        &lab,
        "r1",
        binary(),
        &[HaldirInstance::v2(VRID, HIGH, second, &[VIP_CIDR])],
    )
    .unwrap();
    let r2 = Haldir::start(
        &lab,
        "r2",
        binary(),
        &[HaldirInstance::v2(VRID, LOW, second, &[VIP_CIDR])],
    )
    .unwrap();
    // Master_Down_Interval for v2 at 1 s is about 3.4-3.6 s.
    assert_elected(&lab, &r1, &r2, VIP, Duration::from_secs(12));
    assert_stable(&lab, &r1, &r2, VIP, Duration::from_millis(2500));

    let status = r1.stop().unwrap();
    assert!(status.success(), "haldir exited with {status} on SIGTERM");
    assert!(
        lab::wait_until(Duration::from_secs(5), || r2.state().as_deref()
            == Some("MASTER")
            && lab.has_address("r2", VIP)),
        "r2 did not take over\n{}",
        describe(&[&r2])
    );
    assert!(!lab.has_address("r1", VIP), "the stopped r1 kept the VIP");
    std::thread::sleep(Duration::from_millis(200));

    let frames = capture.stop();
    let resignation = adverts_from(&frames, lab.mac_bytes("r1").unwrap())
        .into_iter()
        .find(|(_, a)| a.priority == 0)
        .expect("no priority-0 advert from the stopping master r1");
    assert_eq!(resignation.1.version, Version::V2);
    let first_r2 = adverts_from(&frames, lab.mac_bytes("r2").unwrap())
        .into_iter()
        .find(|(at, _)| *at > resignation.0)
        .expect("no advert from r2 after r1 resigned");
    let handover = first_r2.0 - resignation.0;
    // RFC 3768 §6.1: Skew_Time = (256 - 100) / 256 s = 609 ms.
    let skew = Duration::from_micros(156 * 1_000_000 / 256);
    eprintln!(
        "v2 1 s graceful stop: priority 0 -> r2's first advert {handover:?} (Skew_Time {skew:?})"
    );
    assert_eq!(first_r2.1.priority, LOW);
    let bound = graceful_handover_bound(skew, second);
    assert!(
        handover >= skew / 2 && handover < bound,
        "r2 took over {handover:?} after the priority-0 advert; Skew_Time is {skew:?}, a \
         backup ignoring it would wait at least {bound:?}"
    );
}

#[test]
fn kill_9_of_the_master_moves_the_vip_to_the_backup_within_master_down_interval() {
    if skip_unless_root(
        "kill_9_of_the_master_moves_the_vip_to_the_backup_within_master_down_interval",
    ) {
        return;
    }
    let lab = ipv4_lab("v3-crash");
    let capture = Capture::start(&lab).unwrap();
    let [responder_r1, _responder_r2] =
        ["r1", "r2"].map(|r| Responder::start(&lab, r, PROBE_PORT).unwrap());
    let r1 = Haldir::start(&lab, "r1", binary(), &[v3(HIGH)]).unwrap();
    let r2 = Haldir::start(&lab, "r2", binary(), &[v3(LOW)]).unwrap();
    assert_elected(&lab, &r1, &r2, VIP, Duration::from_secs(5));

    let vip: IpAddr = VIP.parse().unwrap();
    let prober = Prober::start(&lab, "cl", vip, PROBE_PORT).unwrap();
    assert!(
        lab::wait_until(Duration::from_secs(5), || prober.replies_from("r1") >= 50),
        "the client gets no replies from r1 through the VIP ({} so far)",
        prober.reply_count()
    );

    // The master's daemon dies without a word; its host stays up (with the stale VIP in
    // its kernel) but its service no longer answers.
    let crash = prober.mark();
    responder_r1.set_answering(false);
    r1.crash().unwrap();
    let master_down = master_down_v3(LOW, FAST);
    let took_over = lab::wait_until(master_down * 3, || {
        r2.state().as_deref() == Some("MASTER") && lab.has_address("r2", VIP)
    });
    let detected = crash.elapsed();
    assert!(
        took_over,
        "r2 did not become master holding the VIP within {:?} of the crash\n{}",
        master_down * 3,
        describe(&[&r2])
    );
    assert!(
        lab::wait_until(Duration::from_secs(5), || prober
            .last_responder()
            .as_deref()
            == Some("r2")),
        "the client does not reach the VIP through r2 (last reply from {:?})",
        prober.last_responder()
    );
    std::thread::sleep(Duration::from_millis(100));
    let report = prober.stop();
    let gap = report.largest_gap_detail_after(crash).unwrap();

    let frames = capture.stop();
    let r1_mac = lab.mac_bytes("r1").unwrap();
    let r2_mac = lab.mac_bytes("r2").unwrap();
    let last_r1 = adverts_from(&frames, r1_mac)
        .into_iter()
        .rfind(|(at, _)| *at <= crash)
        .expect("no advert from r1 before the crash");
    assert!(
        adverts_from(&frames, r1_mac)
            .iter()
            .all(|(_, a)| a.priority == HIGH),
        "the killed master sent a priority-0 advert"
    );
    let first_r2 = adverts_from(&frames, r2_mac)
        .into_iter()
        .find(|(at, _)| *at > crash)
        .expect("no advert from r2 after the crash");
    let first_garp = gratuitous_arps(&frames, r2_mac, VIP.parse().unwrap())
        .into_iter()
        .find(|at| *at > crash)
        .expect("no gratuitous ARP for the VIP from r2's MAC after the crash");
    let takeover = first_r2.0 - last_r1.0;
    eprintln!(
        "v3 100 ms kill -9: r1's last advert -> r2's first advert {takeover:?} \
         (Master_Down_Interval {master_down:?}); state seen MASTER {detected:?} after the kill; \
         GARP {:?} after r2's first advert; client outage {:?} ({:?} -> {:?}); {}",
        first_garp.saturating_duration_since(first_r2.0),
        gap.duration(),
        gap.before,
        gap.after,
        report_summary(&report)
    );
    assert_eq!(first_r2.1.priority, LOW);
    assert!(
        takeover >= master_down * 8 / 10 && takeover <= master_down * 3,
        "r2 took over {takeover:?} after r1's last advert; Master_Down_Interval is {master_down:?}"
    );
    assert!(report.first_reply_from_after("r2", crash).is_some());
    assert_eq!(report.last_responder(), Some("r2"));
    assert!(
        gap.duration() < Duration::from_secs(3),
        "client outage {:?}",
        gap.duration()
    );
}

#[test]
fn graceful_stop_sends_priority_zero_and_the_backup_takes_over_after_skew_time() {
    if skip_unless_root(
        "graceful_stop_sends_priority_zero_and_the_backup_takes_over_after_skew_time",
    ) {
        return;
    }
    let lab = ipv4_lab("v3-graceful");
    let capture = Capture::start(&lab).unwrap();
    let r1 = Haldir::start(&lab, "r1", binary(), &[v3(HIGH)]).unwrap();
    let r2 = Haldir::start(&lab, "r2", binary(), &[v3(LOW)]).unwrap();
    assert_elected(&lab, &r1, &r2, VIP, Duration::from_secs(5));
    std::thread::sleep(FAST * 3);

    let stopping = Instant::now();
    let status = r1.stop().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "haldir exited with {status} on SIGTERM"
    );
    assert!(
        !lab.has_address("r1", VIP),
        "the stopped master kept the VIP"
    );
    assert!(
        lab::wait_until(Duration::from_secs(3), || r2.state().as_deref()
            == Some("MASTER")
            && lab.has_address("r2", VIP)),
        "r2 did not take over\n{}",
        describe(&[&r2])
    );
    std::thread::sleep(FAST * 2);

    let frames = capture.stop();
    let r1_adverts = adverts_from(&frames, lab.mac_bytes("r1").unwrap());
    let resignations: Vec<_> = r1_adverts.iter().filter(|(_, a)| a.priority == 0).collect();
    assert_eq!(
        resignations.len(),
        1,
        "expected exactly one priority-0 advert from r1"
    );
    let resigned_at = resignations[0].0;
    assert!(resigned_at >= stopping);
    assert!(
        r1_adverts.iter().all(|(at, _)| *at <= resigned_at),
        "r1 advertised after resigning"
    );
    let first_r2 = adverts_from(&frames, lab.mac_bytes("r2").unwrap())
        .into_iter()
        .find(|(at, _)| *at > resigned_at)
        .expect("no advert from r2 after r1 resigned");
    let handover = first_r2.0 - resigned_at;
    let skew = skew_v3(LOW, FAST);
    eprintln!("v3 100 ms graceful stop: priority 0 -> r2's first advert {handover:?} (Skew_Time {skew:?})");
    let bound = graceful_handover_bound(skew, FAST);
    assert!(
        handover >= skew / 2 && handover < bound,
        "r2 took over {handover:?} after the priority-0 advert; Skew_Time is {skew:?}, a \
         backup ignoring it would wait at least {bound:?}"
    );
}

#[test]
fn a_returning_higher_priority_router_preempts_and_takes_the_vip_back() {
    if skip_unless_root("a_returning_higher_priority_router_preempts_and_takes_the_vip_back") {
        return;
    }
    let lab = ipv4_lab("v3-preempt");
    let r1 = Haldir::start(&lab, "r1", binary(), &[v3(HIGH)]).unwrap();
    let r2 = Haldir::start(&lab, "r2", binary(), &[v3(LOW)]).unwrap();
    assert_elected(&lab, &r1, &r2, VIP, Duration::from_secs(5));
    assert!(r1.stop().unwrap().success());
    assert!(
        lab::wait_until(Duration::from_secs(3), || r2.state().as_deref()
            == Some("MASTER")
            && holders(&lab, &["r1", "r2"], VIP) == ["r2"]),
        "r2 did not take over from the stopped r1\n{}",
        describe(&[&r2])
    );
    std::thread::sleep(FAST * 3);

    // r1 comes back with the higher priority: it preempts r2.
    let returned = Instant::now();
    let r1 = Haldir::start(&lab, "r1", binary(), &[v3(HIGH)]).unwrap();
    assert_elected(&lab, &r1, &r2, VIP, master_down_v3(HIGH, FAST) * 3);
    eprintln!(
        "v3 100 ms preemption: VIP back on r1 {:?} after its restart",
        returned.elapsed()
    );
    let reason = r2.status().unwrap()["instances"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason.contains("higher priority"),
        "r2 stepped down because {reason:?}"
    );
    assert_stable(&lab, &r1, &r2, VIP, FAST * 5);
}

#[test]
fn with_nopreempt_a_returning_higher_priority_router_stays_backup() {
    if skip_unless_root("with_nopreempt_a_returning_higher_priority_router_stays_backup") {
        return;
    }
    let lab = ipv4_lab("v3-nopreempt");
    let r1 = Haldir::start(&lab, "r1", binary(), &[v3(HIGH).nopreempt()]).unwrap();
    let r2 = Haldir::start(&lab, "r2", binary(), &[v3(LOW)]).unwrap();
    assert_elected(&lab, &r1, &r2, VIP, Duration::from_secs(5));
    assert!(r1.stop().unwrap().success());
    assert!(
        lab::wait_until(Duration::from_secs(3), || r2.state().as_deref()
            == Some("MASTER")
            && holders(&lab, &["r1", "r2"], VIP) == ["r2"]),
        "r2 did not take over from the stopped r1\n{}",
        describe(&[&r2])
    );

    // r1 comes back with the higher priority but nopreempt: r2 keeps the VIP, for many
    // times r1's Master_Down_Interval.
    let r1 = Haldir::start(&lab, "r1", binary(), &[v3(HIGH).nopreempt()]).unwrap();
    assert_eq!(r1.state().as_deref(), Some("BACKUP"));
    assert_stable(&lab, &r2, &r1, VIP, master_down_v3(HIGH, FAST) * 5);
    assert_eq!(r1.counter("became_master"), 0);
}

#[test]
fn ipv6_pair_fails_over_on_kill_9_with_an_unsolicited_na_and_the_client_follows() {
    if skip_unless_root(
        "ipv6_pair_fails_over_on_kill_9_with_an_unsolicited_na_and_the_client_follows",
    ) {
        return;
    }
    let lab = Lab::new("v3-ipv6").unwrap();
    lab.add_host("r1", &["fd00::1/64"]).unwrap();
    lab.add_host("r2", &["fd00::2/64"]).unwrap();
    lab.add_host("cl", &["fd00::9/64"]).unwrap();
    let capture = Capture::start(&lab).unwrap();
    let [responder_r1, _responder_r2] =
        ["r1", "r2"].map(|r| Responder::start(&lab, r, PROBE_PORT).unwrap());
    let v6 = |priority| HaldirInstance::v3(VRID, priority, FAST, &[VIP6_CIDR]);
    let r1 = Haldir::start(&lab, "r1", binary(), &[v6(HIGH)]).unwrap();
    let r2 = Haldir::start(&lab, "r2", binary(), &[v6(LOW)]).unwrap();
    assert_elected(&lab, &r1, &r2, VIP6, Duration::from_secs(5));

    let vip: IpAddr = VIP6.parse().unwrap();
    let prober = Prober::start(&lab, "cl", vip, PROBE_PORT).unwrap();
    assert!(
        lab::wait_until(Duration::from_secs(5), || prober.replies_from("r1") >= 50),
        "the client gets no replies from r1 through [{VIP6}] ({} so far)",
        prober.reply_count()
    );

    // The master dies as a machine does: service, daemon and link.
    let crash = prober.mark();
    responder_r1.set_answering(false);
    r1.crash().unwrap();
    lab.link_set("r1", "eth0", false).unwrap();
    let master_down = master_down_v3(LOW, FAST);
    assert!(
        lab::wait_until(master_down * 3, || r2.state().as_deref() == Some("MASTER")
            && lab.has_address("r2", VIP6)),
        "r2 did not become master holding {VIP6} within {:?}\n{}",
        master_down * 3,
        describe(&[&r2])
    );
    assert!(
        lab::wait_until(Duration::from_secs(5), || prober
            .last_responder()
            .as_deref()
            == Some("r2")),
        "the client does not reach [{VIP6}] through r2 (last reply from {:?})",
        prober.last_responder()
    );
    std::thread::sleep(Duration::from_millis(100));
    let report = prober.stop();
    let gap = report.largest_gap_detail_after(crash).unwrap();

    let frames = capture.stop();
    let r1_mac = lab.mac_bytes("r1").unwrap();
    let r2_mac = lab.mac_bytes("r2").unwrap();
    let last_r1 = adverts_from(&frames, r1_mac)
        .into_iter()
        .rfind(|(at, _)| *at <= crash)
        .expect("no IPv6 advert from r1 before the crash");
    let first_r2 = adverts_from(&frames, r2_mac)
        .into_iter()
        .find(|(at, _)| *at > crash)
        .expect("no IPv6 advert from r2 after the crash");
    assert_eq!(first_r2.1.version, Version::V3);
    assert_eq!(first_r2.1.addresses, [vip]);
    let vip6: Ipv6Addr = VIP6.parse().unwrap();
    let first_na = frames
        .iter()
        .filter(|f| f.kind == FrameKind::NeighborAdvert && f.at > crash)
        .filter_map(|f| NaRepr::parse(&f.bytes).ok().map(|na| (f.at, na)))
        .find(|(_, na)| na.target == vip6 && na.src_mac == r2_mac)
        .expect("no unsolicited NA for the VIP from r2's MAC after the crash");
    assert!(first_na.1.override_flag, "the NA lacks the Override flag");
    assert!(!first_na.1.solicited, "an unsolicited NA has S set");
    assert_eq!(first_na.1.target_link_addr, Some(r2_mac));
    let takeover = first_r2.0 - last_r1.0;
    eprintln!(
        "v3 IPv6 100 ms kill -9: r1's last advert -> r2's first advert {takeover:?} \
         (Master_Down_Interval {master_down:?}); NA {:?} after r2's first advert; \
         client outage {:?}; {}",
        first_na.0.saturating_duration_since(first_r2.0),
        gap.duration(),
        report_summary(&report)
    );
    assert!(
        takeover >= master_down * 8 / 10 && takeover <= master_down * 3,
        "r2 took over {takeover:?} after r1's last advert; Master_Down_Interval is {master_down:?}"
    );
    assert!(report.first_reply_from_after("r2", crash).is_some());
    assert_eq!(report.last_responder(), Some("r2"));
}

#[test]
fn a_restarted_haldir_removes_the_vip_its_killed_predecessor_left_behind() {
    if skip_unless_root("a_restarted_haldir_removes_the_vip_its_killed_predecessor_left_behind") {
        return;
    }
    let lab = ipv4_lab("v3-stale");
    // nopreempt, so that the restarted r1 stays backup and any VIP on it would be stale.
    let r1 = Haldir::start(&lab, "r1", binary(), &[v3(HIGH).nopreempt()]).unwrap();
    let r2 = Haldir::start(&lab, "r2", binary(), &[v3(LOW)]).unwrap();
    assert_elected(&lab, &r1, &r2, VIP, Duration::from_secs(5));

    r1.crash().unwrap();
    assert!(
        lab::wait_until(Duration::from_secs(3), || r2.state().as_deref()
            == Some("MASTER")
            && lab.has_address("r2", VIP)),
        "r2 did not take over\n{}",
        describe(&[&r2])
    );
    assert!(
        lab.has_address("r1", VIP),
        "the kill -9'd master should have left its VIP behind (precondition)"
    );

    let r1 = Haldir::start(&lab, "r1", binary(), &[v3(HIGH).nopreempt()]).unwrap();
    assert!(
        lab::wait_until(Duration::from_secs(2), || !lab.has_address("r1", VIP)),
        "the restarted haldir did not remove the stale VIP from r1: {:?}\n{}",
        lab.addresses("r1", "eth0"),
        describe(&[&r1])
    );
    assert!(
        r1.log().contains("left behind"),
        "no log line about the stale address:\n{}",
        r1.log()
    );
    assert_stable(&lab, &r2, &r1, VIP, FAST * 10);
}

#[test]
fn a_backup_thawed_after_a_stall_reads_the_queued_adverts_before_declaring_the_master_down() {
    if skip_unless_root(
        "a_backup_thawed_after_a_stall_reads_the_queued_adverts_before_declaring_the_master_down",
    ) {
        return;
    }
    let lab = ipv4_lab("v3-stall");
    let r1 = Haldir::start(&lab, "r1", binary(), &[v3(HIGH)]).unwrap();
    let r2 = Haldir::start(&lab, "r2", binary(), &[v3(LOW)]).unwrap();
    assert_elected(&lab, &r1, &r2, VIP, Duration::from_secs(5));
    std::thread::sleep(FAST * 3);
    let transitions = r2.counter("transitions");

    // The backup's process stalls (a loaded host, a slow disk) for several times its
    // Master_Down_Interval while the master keeps advertising: when it runs again, its
    // timer has expired but the master's adverts are waiting in its socket.
    r2.freeze(true).unwrap();
    std::thread::sleep(master_down_v3(LOW, FAST) * 3);
    r2.freeze(false).unwrap();
    std::thread::sleep(FAST * 5);
    assert_eq!(
        r2.counter("transitions"),
        transitions,
        "the thawed backup took over from a live master\n{}",
        describe(&[&r1, &r2])
    );
    assert_stable(&lab, &r1, &r2, VIP, FAST * 5);
}

/// An ARP frame whose sender protocol address is `vip` (a reply, or a gratuitous ARP).
fn arp_claims(frame: &Frame, vip: Ipv4Addr) -> bool {
    // Ethernet (14) + htype, ptype, hlen, plen, oper (8) + sender MAC (6) = sender IP at 28.
    frame.kind == FrameKind::Arp && frame.bytes.get(28..32) == Some(&vip.octets()[..])
}

/// `haldir handover ARGS` against the daemon `router`.
fn handover(router: &Haldir, args: &[&str]) -> std::process::Output {
    std::process::Command::new(binary())
        .arg("handover")
        .args(args)
        .arg("--socket")
        .arg(router.control_socket())
        .output()
        .unwrap()
}

/// How the planned switchover of [`assert_switchover_is_make_before_break`] is asked for.
#[derive(Clone, Copy, Debug)]
enum Switchover {
    /// SIGTERM of the master.
    Stop,
    /// `haldir handover --all` on the master; it keeps running.
    HandOver,
    /// A reload that lowers the master's priority below the backup's.
    LowerPriority,
}

/// The master r1 (priority 150) leaves by `how` while a client probes the VIP every
/// millisecond and forgets its ARP entry every 5 ms (so it keeps asking, and a router still
/// holding the VIP answers). Asserts, from outside: the client's largest gap is within 3 x
/// the 10 ms target (the precise figure is printed; `bench/failover.rs` compares it with
/// keepalived's), and r1 answers no ARP request for the VIP once r2's first advert as
/// master is on the wire (plus 15 ms, 3 x the advert's delivery and one netlink round trip).
/// Returns r1 if it still runs (handover, reload), for the caller's further checks.
fn assert_switchover_is_make_before_break<'l>(
    lab: &'l Lab,
    instance: fn(u8) -> HaldirInstance,
    how: Switchover,
) -> Option<Haldir<'l>> {
    let capture = Capture::start(lab).unwrap();
    let _responders = [
        Responder::start(lab, "r1", PROBE_PORT).unwrap(),
        Responder::start(lab, "r2", PROBE_PORT).unwrap(),
    ];
    let r1 = Haldir::start(lab, "r1", binary(), &[instance(HIGH)]).unwrap();
    let r2 = Haldir::start(lab, "r2", binary(), &[instance(LOW)]).unwrap();
    // v2 at 1 s: Master_Down_Interval is about 3.4 s before the first master.
    assert_elected(lab, &r1, &r2, VIP, Duration::from_secs(12));
    let vip: IpAddr = VIP.parse().unwrap();
    let prober = Prober::start(lab, "cl", vip, PROBE_PORT).unwrap();
    assert!(
        lab::wait_until(Duration::from_secs(5), || prober.replies_from("r1") >= 100),
        "no steady replies from r1"
    );
    let asking = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flusher = {
        let asking = asking.clone();
        let ns = lab.ns_name("cl");
        std::thread::spawn(move || {
            while asking.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::process::Command::new("ip")
                    .args(["-n", &ns, "neigh", "flush", "to", VIP])
                    .output();
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mark = Instant::now();
    match how {
        Switchover::Stop => assert!(r1.stop().unwrap().success()),
        Switchover::HandOver => {
            let output = handover(&r1, &["--all"]);
            assert!(
                output.status.success(),
                "haldir handover failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Switchover::LowerPriority => {
            let mut lowered = instance(HIGH);
            lowered.priority = LOW - 50;
            assert!(
                r1.reload(&lowered.render()).unwrap(),
                "the reload was rejected"
            );
        }
    }
    // Lowering the priority hands over after r2's Master_Down_Interval (up to 3.6 s in v2).
    assert!(
        lab::wait_until(Duration::from_secs(8), || r2.state().as_deref()
            == Some("MASTER")
            && lab.has_address("r2", VIP)),
        "r2 did not take over after {how:?}\n{}",
        describe(&[&r1, &r2])
    );
    std::thread::sleep(Duration::from_millis(300));
    asking.store(false, std::sync::atomic::Ordering::Relaxed);
    flusher.join().unwrap();
    let report = prober.stop();
    let frames = capture.stop();

    let version = instance(HIGH).version;
    let gap = report.largest_gap_after(mark);
    eprintln!("v{version} {how:?}: client's largest gap {gap:?}");
    // Expected: a millisecond or two (the old master serves until the new one has the VIP);
    // removing the VIPs at once costs Skew_Time (61 ms at v3 100 ms, 609 ms at v2 1 s).
    assert!(
        gap <= Duration::from_millis(30),
        "v{version} {how:?}: client outage {gap:?}; {}",
        report_summary(&report)
    );
    let r1_mac = lab.mac_bytes("r1").unwrap();
    let r2_adverts = adverts_from(&frames, lab.mac_bytes("r2").unwrap());
    let new_master_at = match how {
        Switchover::Stop | Switchover::HandOver => {
            let resigned_at = adverts_from(&frames, r1_mac)
                .into_iter()
                .find(|(at, a)| *at >= mark && a.priority == 0)
                .expect("no priority-0 advert from r1")
                .0;
            r2_adverts
                .into_iter()
                .find(|(at, a)| *at > resigned_at && a.priority > 0)
                .expect("no advert from r2 after r1 resigned")
                .0
        }
        Switchover::LowerPriority => {
            r2_adverts
                .into_iter()
                .find(|(at, a)| *at >= mark && a.priority == LOW)
                .expect("no advert from r2 after the reload")
                .0
        }
    };
    let late: Vec<Duration> = frames
        .iter()
        .filter(|f| f.src_mac() == r1_mac && arp_claims(f, VIP.parse().unwrap()))
        .filter(|f| f.at > new_master_at + Duration::from_millis(15))
        .map(|f| f.at - new_master_at)
        .collect();
    assert!(
        late.is_empty(),
        "v{version} {how:?}: r1 still answered ARP for the VIP after r2's first advert: {:?}\n{}",
        &late[..late.len().min(5)],
        describe(&[&r1, &r2])
    );
    match how {
        Switchover::Stop => None,
        Switchover::HandOver | Switchover::LowerPriority => {
            assert_eq!(
                r1.state().as_deref(),
                Some("BACKUP"),
                "{}",
                describe(&[&r1])
            );
            assert!(!lab.has_address("r1", VIP), "r1 kept the VIP");
            Some(r1)
        }
    }
}

fn v2_second(priority: u8) -> HaldirInstance {
    HaldirInstance::v2(VRID, priority, Duration::from_secs(1), &[VIP_CIDR])
}

#[test]
fn a_graceful_stop_is_make_before_break_no_client_outage_and_one_router_answering_arp() {
    if skip_unless_root(
        "a_graceful_stop_is_make_before_break_no_client_outage_and_one_router_answering_arp",
    ) {
        return;
    }
    let lab = ipv4_lab("v3-mbb");
    assert_switchover_is_make_before_break(&lab, v3, Switchover::Stop);
}

#[test]
fn a_graceful_stop_at_v2_one_second_is_make_before_break() {
    if skip_unless_root("a_graceful_stop_at_v2_one_second_is_make_before_break") {
        return;
    }
    let lab = ipv4_lab("v2-mbb");
    assert_switchover_is_make_before_break(&lab, v2_second, Switchover::Stop);
}

#[test]
fn haldir_handover_is_make_before_break_and_holds_until_cancelled() {
    if skip_unless_root("haldir_handover_is_make_before_break_and_holds_until_cancelled") {
        return;
    }
    let lab = ipv4_lab("v3-handover");
    let r1 = assert_switchover_is_make_before_break(&lab, v3, Switchover::HandOver).unwrap();
    // Priority 150 against the master's 100, preempt on: still backup, handed over.
    std::thread::sleep(master_down_v3(HIGH, FAST) * 3);
    let status = r1.control_status().unwrap();
    let instance = &status["instances"][0];
    assert_eq!(instance["state"], "BACKUP", "r1 preempted back: {status}");
    assert_eq!(instance["handed_over"], true, "{status}");
    assert!(!lab.has_address("r1", VIP));
    let cancelled = handover(&r1, &["--cancel", "--all"]);
    assert!(cancelled.status.success(), "{cancelled:?}");
    assert!(
        lab::wait_until(Duration::from_secs(5), || r1.state().as_deref()
            == Some("MASTER")
            && lab.has_address("r1", VIP)),
        "r1 did not preempt once the handover was cancelled\n{}",
        describe(&[&r1])
    );
}

#[test]
fn haldir_handover_at_v2_one_second_is_make_before_break() {
    if skip_unless_root("haldir_handover_at_v2_one_second_is_make_before_break") {
        return;
    }
    let lab = ipv4_lab("v2-handover");
    assert_switchover_is_make_before_break(&lab, v2_second, Switchover::HandOver);
}

#[test]
fn a_reload_lowering_the_masters_priority_hands_over_make_before_break() {
    if skip_unless_root("a_reload_lowering_the_masters_priority_hands_over_make_before_break") {
        return;
    }
    let lab = ipv4_lab("v3-lowered");
    assert_switchover_is_make_before_break(&lab, v3, Switchover::LowerPriority);
}

#[test]
fn haldir_handover_refuses_an_unknown_instance_and_changes_nothing() {
    if skip_unless_root("haldir_handover_refuses_an_unknown_instance_and_changes_nothing") {
        return;
    }
    let lab = ipv4_lab("handover-unknown");
    let r1 = Haldir::start(&lab, "r1", binary(), &[v3(HIGH)]).unwrap();
    assert!(r1.wait_state("MASTER", Duration::from_secs(5)));
    let transitions = r1.counter("transitions");
    let output = handover(&r1, &["VI_NOPE"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("VI_NOPE"), "{stderr}");
    std::thread::sleep(FAST * 5);
    assert_eq!(r1.state().as_deref(), Some("MASTER"));
    assert_eq!(
        r1.counter("transitions"),
        transitions,
        "{}",
        describe(&[&r1])
    );
}

#[test]
fn haldir_handover_of_one_sync_group_member_hands_the_whole_group_over_member_by_member() {
    if skip_unless_root(
        "haldir_handover_of_one_sync_group_member_hands_the_whole_group_over_member_by_member",
    ) {
        return;
    }
    const VIP2: &str = "10.0.0.101";
    let lab = ipv4_lab("handover-group");
    let config = |priority: u8| {
        let first = v3(priority);
        let mut second = HaldirInstance::v3(VRID + 1, priority, FAST, &[&format!("{VIP2}/24")]);
        second.name = "VI_2".into();
        format!(
            "[[vrrp_sync_group]]\nname = \"G\"\ngroup = [\"VI_1\", \"VI_2\"]\n\n{}\n{}",
            first.render(),
            second.render()
        )
    };
    let r1 = Haldir::start_with_config(&lab, "r1", binary(), &config(HIGH)).unwrap();
    let r2 = Haldir::start_with_config(&lab, "r2", binary(), &config(LOW)).unwrap();
    let both = |h: &Haldir, state: &str| {
        h.states()
            .is_some_and(|s| s.len() == 2 && s.iter().all(|s| s == state))
    };
    assert!(
        lab::wait_until(Duration::from_secs(5), || both(&r1, "MASTER")
            && both(&r2, "BACKUP")),
        "{}",
        describe(&[&r1, &r2])
    );
    let output = handover(&r1, &["VI_1"]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("VI_1") && stdout.contains("VI_2"),
        "the group's other member is not named: {stdout}"
    );
    assert!(
        lab::wait_until(Duration::from_secs(5), || both(&r2, "MASTER")
            && lab.has_address("r2", VIP)
            && lab.has_address("r2", VIP2)
            && !lab.has_address("r1", VIP)
            && !lab.has_address("r1", VIP2)),
        "the group did not move to r2\n{}",
        describe(&[&r1, &r2])
    );
    // Each member handed over itself (priority 0, addresses kept until r2 advertised); a
    // member stepped down by the sync group instead would give the group's reason and
    // would have dropped its VIP at once.
    let status = r1.control_status().unwrap();
    for instance in status["instances"].as_array().unwrap() {
        assert_eq!(instance["state"], "BACKUP", "{status}");
        assert_eq!(instance["handed_over"], true, "{status}");
        assert_eq!(
            instance["reason"], "handed over to a backup on request (haldir handover)",
            "{status}"
        );
        assert_eq!(instance["priority_zero_sent"], 1, "{status}");
    }
    std::thread::sleep(master_down_v3(HIGH, FAST) * 3);
    assert!(
        both(&r1, "BACKUP"),
        "r1 preempted back\n{}",
        describe(&[&r1])
    );
}
