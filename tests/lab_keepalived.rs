//! Proves the lab harness with keepalived alone, before haldir takes part: two keepalived
//! (VRRPv3, 50 ms adverts, priorities 150/100) on a lab bridge elect a master, a client
//! measures the outage when that master crashes, and the bridge capture shows the adverts
//! and gratuitous ARP of the new master. Also proves the lab leaves nothing behind, even
//! when a test panics. Needs root; skipped (loudly) otherwise.

use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::process::Command;
use std::time::Duration;

use haldir_lab::{
    self as lab, Capture, FrameKind, Keepalived, KeepalivedConfig, KeepalivedState, Lab, Prober,
    Responder,
};

const VIP: &str = "10.0.0.100";
const PROBE_PORT: u16 = 7777;

fn skip_unless_root() -> bool {
    if lab::is_root() {
        return false;
    }
    eprintln!("\n!!!!!!!! SKIPPED: needs root (network namespaces) !!!!!!!!\n");
    true
}

/// Namespaces whose name starts with `prefix`.
fn namespaces_with_prefix(prefix: &str) -> Vec<String> {
    let output = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|ns| ns.starts_with(&format!("{prefix}-")))
        .map(str::to_owned)
        .collect()
}

fn holders<'a>(lab: &Lab, hosts: &[&'a str]) -> Vec<&'a str> {
    hosts
        .iter()
        .copied()
        .filter(|h| lab.has_address(h, VIP))
        .collect()
}

#[test]
fn keepalived_pair_fails_over_within_the_rfc_bound_when_the_master_crashes() {
    if skip_unless_root() {
        return;
    }
    let prefix;
    {
        let lab = Lab::new("ka-failover").unwrap();
        prefix = lab.prefix().to_owned();
        lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
        lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
        lab.add_host("cl", &["10.0.0.9/24"]).unwrap();
        let capture = Capture::start(&lab).unwrap();
        let [responder_r1, _responder_r2] =
            ["r1", "r2"].map(|r| Responder::start(&lab, r, PROBE_PORT).unwrap());

        let advert = Duration::from_millis(50);
        let ka1 = Keepalived::start(
            &lab,
            "r1",
            KeepalivedConfig::v3(51, 150, advert, &["10.0.0.100/24"]),
        )
        .unwrap();
        let ka2 = Keepalived::start(
            &lab,
            "r2",
            KeepalivedConfig::v3(51, 100, advert, &["10.0.0.100/24"]),
        )
        .unwrap();

        // Election: the higher priority wins, and exactly one router holds the VIP.
        let elected = lab::wait_until(Duration::from_secs(10), || {
            ka1.state() == Some(KeepalivedState::Master)
                && ka2.state() == Some(KeepalivedState::Backup)
                && holders(&lab, &["r1", "r2"]) == ["r1"]
        });
        assert!(
            elected,
            "no clean election: r1 {:?}, r2 {:?}, VIP on {:?}\nr1 log:\n{}\nr2 log:\n{}",
            ka1.state(),
            ka2.state(),
            holders(&lab, &["r1", "r2"]),
            ka1.log(),
            ka2.log()
        );
        assert!(lab.has_address("r1", VIP));
        assert!(!lab.has_address("r2", VIP));
        // Stable for a few adverts: no flapping.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(holders(&lab, &["r1", "r2"]), ["r1"]);

        // The client reaches the VIP, served by the master.
        let vip: IpAddr = VIP.parse().unwrap();
        let prober = Prober::start(&lab, "cl", vip, PROBE_PORT).unwrap();
        assert!(
            lab::wait_until(Duration::from_secs(5), || prober.replies_from("r1") >= 100),
            "the client gets no replies from r1 through the VIP ({} replies so far)",
            prober.reply_count()
        );
        assert_eq!(prober.last_responder().as_deref(), Some("r1"));

        // Crash the master as a machine dies: its service stops answering, keepalived dies
        // without a word, and the router drops off the segment (its kernel would otherwise
        // keep answering ARP for the stale VIP it still holds).
        let crash = prober.mark();
        responder_r1.set_answering(false);
        ka1.crash().unwrap();
        lab.link_set("r1", "eth0", false).unwrap();

        let took_over = lab::wait_until(Duration::from_secs(5), || {
            ka2.state() == Some(KeepalivedState::Master)
                && lab.has_address("r2", VIP)
                && prober.last_responder().as_deref() == Some("r2")
        });
        assert!(
            took_over,
            "r2 did not take over: state {:?}, VIP {}, last reply from {:?}\nr2 log:\n{}",
            ka2.state(),
            lab.has_address("r2", VIP),
            prober.last_responder(),
            ka2.log()
        );
        std::thread::sleep(Duration::from_millis(200));
        let report = prober.stop();
        let gap = report.largest_gap_detail_after(crash).unwrap();
        let outage = gap.duration();

        // What the bridge saw: r1's last advert, r2's first advert and first ARP as master.
        let r1_mac = lab.mac_bytes("r1").unwrap();
        let r2_mac = lab.mac_bytes("r2").unwrap();
        let frames = capture.stop();
        let vrrp_from = |mac: [u8; 6]| -> Vec<_> {
            frames
                .iter()
                .filter(|f| f.kind == FrameKind::Vrrp4 && f.src_mac() == mac)
                .collect()
        };
        let last_r1_advert = vrrp_from(r1_mac)
            .into_iter()
            .rfind(|f| f.at <= crash)
            .expect("the capture saw no advert from the master r1");
        let first_r2_advert = vrrp_from(r2_mac)
            .into_iter()
            .find(|f| f.at > crash)
            .expect("the capture saw no advert from the new master r2");
        let first_r2_arp = frames
            .iter()
            .find(|f| f.kind == FrameKind::Arp && f.src_mac() == r2_mac && f.at > crash)
            .expect("the capture saw no gratuitous ARP from the new master r2");
        assert!(
            vrrp_from(r2_mac).iter().all(|f| f.at > crash),
            "the backup r2 advertised before the crash"
        );

        let since_last_advert = first_r2_advert.at - last_r1_advert.at;
        let garp_after_advert = first_r2_arp
            .at
            .saturating_duration_since(first_r2_advert.at);
        eprintln!(
            "keepalived v3 50 ms, 150/100, crash of the master:\n  \
             client-visible outage {outage:?} ({:?} -> {:?}); crash {:?} after r1's last advert\n  \
             r1 last advert -> r2 first advert {since_last_advert:?} (RFC 5798 Master_Down_Interval \
             3*50 ms + skew (256-100)*50/256 ms = 180.5 ms)\n  \
             r2 first advert -> first ARP {garp_after_advert:?}\n  \
             probes sent {}, replies {} (r1 {}, r2 {}), lost {}, send errors {}",
            gap.before,
            gap.after,
            crash.saturating_duration_since(last_r1_advert.at),
            report.sent,
            report.reply_count(),
            report.replies_from("r1"),
            report.replies_from("r2"),
            report.lost(),
            report.send_errors,
        );
        assert_eq!(gap.before.as_deref(), Some("r1"));
        assert_eq!(gap.after.as_deref(), Some("r2"));
        assert!(outage > Duration::ZERO, "no outage measured");
        assert!(outage < Duration::from_secs(2), "outage {outage:?}");
        assert_eq!(report.responders_seen, ["r1", "r2"]);
        assert_eq!(report.last_responder(), Some("r2"));
        // Nothing but keepalived answered: the crashed master stayed silent.
        assert!(!ka1.is_running());
        assert!(ka2.is_running());
        ka2.stop().unwrap();
        assert_eq!(ka2.state(), Some(KeepalivedState::Stop));
    }
    assert_eq!(
        namespaces_with_prefix(&prefix),
        Vec::<String>::new(),
        "the lab left namespaces behind"
    );
}

#[test]
fn lab_removes_namespaces_and_processes_when_a_test_panics() {
    if skip_unless_root() {
        return;
    }
    let mut seen = None;
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let lab = Lab::new("panic").unwrap();
        lab.add_host("a", &["10.0.0.1/24", "fd00::1/64"]).unwrap();
        lab.add_host("b", &["10.0.0.2/24"]).unwrap();
        let mut sleeper = Command::new("sleep");
        sleeper.arg("600");
        let pid = lab.spawn("a", sleeper).unwrap();
        assert!(lab.is_running(pid));
        seen = Some((lab.prefix().to_owned(), pid, lab.dir().to_owned()));
        assert_eq!(
            lab.addresses("a", "eth0").unwrap()[..2],
            ["10.0.0.1/24".to_owned(), "fd00::1/64".to_owned()]
        );
        assert_eq!(lab.mac("b").unwrap(), "02:48:4c:00:00:02");
        lab.run("a", &["ping", "-c1", "-W2", "10.0.0.2"]).unwrap();
        panic!("deliberate failure inside a lab");
    }));
    assert!(outcome.is_err(), "the closure should have panicked");
    let (prefix, pid, dir) = seen.expect("the lab was not set up");
    // A panicking lab keeps its logs for the post-mortem; this panic was deliberate.
    assert!(dir.exists(), "a failed lab should keep its logs");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        namespaces_with_prefix(&prefix),
        Vec::<String>::new(),
        "namespaces left behind after a panic"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "spawned process {pid} survived the lab"
    );
}
