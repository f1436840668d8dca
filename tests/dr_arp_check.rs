//! The DR real-server ARP check (src/arp_check.rs) against real kernels in lab
//! namespaces: a real server that answers ARP for the VIP (arp_ignore=0) is
//! named in `haldir status`, in `/metrics` and in the log; a correctly
//! configured one (VIP on lo, arp_ignore=1, arp_announce=2) is not; fixing the
//! bad one clears the report; the other director, which answers for the VIP
//! while it holds it, is never reported. The host kernel has no IPVS: haldir
//! says so and the check runs all the same. Needs root (skipped loudly
//! otherwise).

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use haldir_lab::{
    self as lab, skip_unless_root, wait_until, Capture, FrameKind, Haldir, HaldirInstance, Lab,
};
use haldir_vrrp::wire::arp::{ArpRepr, Operation};
use serde_json::Value;

const VIP: &str = "10.0.0.100";
const RS1: &str = "10.0.0.11";
const RS2: &str = "10.0.0.12";

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

/// VRRP instance VI_1 holding the VIP, and the DR virtual server VIP:80 → rs1, rs2.
fn config(priority: u8) -> String {
    let vip = format!("{VIP}/24");
    let instance = HaldirInstance::v3(51, priority, Duration::from_millis(100), &[vip.as_str()]);
    format!(
        "{}\n[[virtual_server]]\nip = \"{VIP}\"\nport = 80\nlb_kind = \"DR\"\nlb_algo = \"rr\"\n\n\
         [[virtual_server.real_server]]\nip = \"{RS1}\"\n\n[[virtual_server.real_server]]\nip = \"{RS2}\"\n",
        instance.render()
    )
}

fn sysctl(lab: &Lab, host: &str, settings: &[&str]) {
    let mut args = vec!["sysctl", "-q", "-w"];
    args.extend_from_slice(settings);
    lab.run(host, &args).unwrap();
}

/// rs1 done right (VIP on lo, arp_ignore=1, arp_announce=2); rs2 with the VIP
/// on lo and the kernel defaults (arp_ignore=0): it answers ARP for the VIP.
fn add_real_servers(lab: &Lab) {
    lab.add_host("rs1", &[format!("{RS1}/24").as_str()])
        .unwrap();
    lab.add_host("rs2", &[format!("{RS2}/24").as_str()])
        .unwrap();
    for rs in ["rs1", "rs2"] {
        lab.run(
            rs,
            &["ip", "addr", "add", &format!("{VIP}/32"), "dev", "lo"],
        )
        .unwrap();
    }
    sysctl(
        lab,
        "rs1",
        &[
            "net.ipv4.conf.all.arp_ignore=1",
            "net.ipv4.conf.all.arp_announce=2",
            "net.ipv4.conf.eth0.arp_ignore=1",
            "net.ipv4.conf.eth0.arp_announce=2",
        ],
    );
}

fn status_json(h: &Haldir) -> Value {
    let out = Command::new(binary())
        .args(["status", "--json", "--socket"])
        .arg(h.control_socket())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "haldir status --json failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    haldir_lab::schema_checked(serde_json::from_slice(&out.stdout).unwrap())
}

fn status_text(h: &Haldir) -> String {
    let out = Command::new(binary())
        .args(["status", "--socket"])
        .arg(h.control_socket())
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The standing conflicts: (real_server or "unknown", mac).
fn conflicts(h: &Haldir) -> Vec<(String, String)> {
    status_json(h)["dr_arp_check"]["conflicts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            (
                c["real_server"].as_str().unwrap_or("unknown").to_owned(),
                c["mac"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn rounds(h: &Haldir) -> u64 {
    status_json(h)["dr_arp_check"]["rounds"]
        .as_u64()
        .unwrap_or(0)
}

/// GET /metrics from `address` inside host `host`'s namespace: the body.
fn metrics(lab: &Lab, host: &str, address: &str) -> String {
    let address = address.to_owned();
    lab::in_netns(&lab.ns_name(host), move || {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: haldir\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default()
    })
    .unwrap()
}

/// The `haldir_dr_arp_conflict` samples of a scrape.
fn conflict_samples(body: &str) -> Vec<String> {
    body.lines()
        .filter(|l| l.starts_with("haldir_dr_arp_conflict{"))
        .map(str::to_owned)
        .collect()
}

fn without_ipvs() -> bool {
    !Path::new("/proc/net/ip_vs").exists()
}

#[test]
fn a_real_server_answering_arp_for_the_vip_is_reported_until_it_is_fixed() {
    if skip_unless_root("a_real_server_answering_arp_for_the_vip_is_reported_until_it_is_fixed") {
        return;
    }
    let lab = Lab::new("drarp").unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    add_real_servers(&lab);
    let rs2_mac = lab.mac("rs2").unwrap();

    let started = Instant::now();
    let r1 = Haldir::start_with_args(
        &lab,
        "r1",
        binary(),
        &config(150),
        &["--metrics-address", "127.0.0.1:9661"],
    )
    .unwrap();
    assert!(
        r1.wait_state("MASTER", Duration::from_secs(5)),
        "{}",
        r1.log()
    );

    // rs2, and only rs2, is reported: in status --json ...
    let reported = wait_until(Duration::from_secs(20), || !conflicts(&r1).is_empty());
    let detection = started.elapsed();
    assert!(reported, "no conflict reported; log:\n{}", r1.log());
    eprintln!("dr_arp_check: rs2 reported {detection:?} after haldir started");
    assert_eq!(
        conflicts(&r1),
        [(RS2.to_owned(), rs2_mac.clone())],
        "{}",
        r1.log()
    );
    let status = status_json(&r1);
    let conflict = &status["dr_arp_check"]["conflicts"][0];
    assert_eq!(conflict["vip"], VIP);
    assert_eq!(conflict["virtual_server"], format!("TCP {VIP}:80"));
    assert_eq!(conflict["interface"], "eth0");
    let segment = &status["dr_arp_check"]["segments"][0];
    assert_eq!(segment["interface"], "eth0");
    assert_eq!(segment["real_servers"], serde_json::json!([RS1, RS2]));
    assert_eq!(segment["unresolved_real_servers"], serde_json::json!([]));
    // ... in the status text ...
    let text = status_text(&r1);
    assert!(text.contains("1 CONFLICT"), "{text}");
    assert!(
        text.contains(&format!("answered by {RS2} ({rs2_mac})")),
        "{text}"
    );
    assert!(!text.contains(&format!("answered by {RS1}")), "{text}");
    // ... in /metrics ...
    let body = metrics(&lab, "r1", "127.0.0.1:9661");
    assert_eq!(
        conflict_samples(&body),
        [format!(
            "haldir_dr_arp_conflict{{virtual_server=\"TCP {VIP}:80\",vip=\"{VIP}\",real_server=\"{RS2}\",mac=\"{rs2_mac}\"}} 1"
        )],
        "{body}"
    );
    // ... and in the log, at error level, once.
    let log = r1.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("DR ARP conflict:"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains("ERROR"), "{}", lines[0]);
    assert!(
        lines[0].contains(&format!("real server {RS2}")),
        "{}",
        lines[0]
    );
    assert!(!log.contains(&format!("real server {RS1}")), "{log}");
    // No IPVS on this kernel: haldir said so, and the check ran all the same.
    if without_ipvs() {
        assert!(
            log.contains("this kernel has no IPVS; load the ip_vs module"),
            "{log}"
        );
    }
    // A second round keeps it standing, without a second log line.
    let after = rounds(&r1);
    assert!(wait_until(Duration::from_secs(15), || rounds(&r1) > after));
    assert_eq!(conflicts(&r1), [(RS2.to_owned(), rs2_mac.clone())]);
    assert_eq!(r1.log().matches("DR ARP conflict:").count(), 1);

    // Fixed: rs2 stops answering for the VIP; the next round clears the report.
    sysctl(
        &lab,
        "rs2",
        &[
            "net.ipv4.conf.all.arp_ignore=1",
            "net.ipv4.conf.all.arp_announce=2",
        ],
    );
    let fixed = Instant::now();
    assert!(
        wait_until(Duration::from_secs(25), || conflicts(&r1).is_empty()),
        "the conflict did not clear; log:\n{}",
        r1.log()
    );
    eprintln!("dr_arp_check: cleared {:?} after the fix", fixed.elapsed());
    assert!(
        r1.log()
            .contains(&format!("DR ARP conflict cleared: real server {RS2}")),
        "{}",
        r1.log()
    );
    assert!(conflict_samples(&metrics(&lab, "r1", "127.0.0.1:9661")).is_empty());
    assert!(status_text(&r1).contains("no real server answers ARP for a VIP"));

    // Broken again, then a reload: the round that follows a reload comes at once,
    // not at the next period.
    sysctl(&lab, "rs2", &["net.ipv4.conf.all.arp_ignore=0"]);
    assert!(r1.reload(&config(150)).unwrap(), "{}", r1.log());
    let reloaded = Instant::now();
    assert!(
        wait_until(Duration::from_secs(4), || !conflicts(&r1).is_empty()),
        "no round right after the reload; log:\n{}",
        r1.log()
    );
    eprintln!(
        "dr_arp_check: reported again {:?} after a reload",
        reloaded.elapsed()
    );
    assert_eq!(conflicts(&r1), [(RS2.to_owned(), rs2_mac.clone())]);
    assert_eq!(r1.log().matches("DR ARP conflict:").count(), 2);
    assert!(r1.is_running());
    assert!(r1.stop().unwrap().success());
}

#[test]
fn the_other_director_holding_the_vip_is_not_reported() {
    if skip_unless_root("the_other_director_holding_the_vip_is_not_reported") {
        return;
    }
    let lab = Lab::new("drarp2").unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
    add_real_servers(&lab);
    let (r1_mac, r2_mac) = (lab.mac_bytes("r1").unwrap(), lab.mac_bytes("r2").unwrap());
    let rs2_mac = lab.mac("rs2").unwrap();
    let capture = Capture::start(&lab).unwrap();

    let r1 = Haldir::start_with_config(&lab, "r1", binary(), &config(150)).unwrap();
    assert!(
        r1.wait_state("MASTER", Duration::from_secs(5)),
        "{}",
        r1.log()
    );
    let r2 = Haldir::start_with_config(&lab, "r2", binary(), &config(100)).unwrap();
    assert!(
        r2.wait_state("BACKUP", Duration::from_secs(5)),
        "{}",
        r2.log()
    );
    // Two full rounds of r2's after it knew its master.
    assert!(wait_until(Duration::from_secs(30), || rounds(&r2) >= 2));

    // r1, holding the VIP, did answer r2's request for it ...
    let vip: std::net::Ipv4Addr = VIP.parse().unwrap();
    let answered = capture.kept().iter().any(|f| {
        f.kind == FrameKind::Arp
            && ArpRepr::parse(&f.bytes).is_ok_and(|arp| {
                arp.operation == Operation::Reply
                    && arp.sender_ip == vip
                    && arp.sender_mac == r1_mac
                    && arp.target_mac == r2_mac
            })
    });
    assert!(answered, "r1 never answered r2's ARP request for the VIP");
    // ... and neither director reports the other: only rs2, on both.
    for h in [&r1, &r2] {
        assert_eq!(
            conflicts(h),
            [(RS2.to_owned(), rs2_mac.clone())],
            "{} reports the wrong hosts; log:\n{}",
            h.host(),
            h.log()
        );
        assert!(
            !h.log().contains("a host that is no real server"),
            "{}",
            h.log()
        );
    }
    assert!(r2.stop().unwrap().success());
    assert!(r1.stop().unwrap().success());
}
