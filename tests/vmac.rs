//! keepalived's `use_vmac` between two haldir on a lab bridge, in keepalived.conf syntax
//! (keepalived.conf(5), vrrp_instance `use_vmac`; RFC 5798 §7.3 virtual MAC):
//!
//! * each router gets the macvlan `vrrp.51` with MAC 00:00:5e:00:01:33; the master holds
//!   the VIP on it, the backup's holds nothing;
//! * a client's ARP request for the VIP is answered with the virtual MAC, by the master
//!   only, never with the master's own MAC; the client's traffic to the VIP reaches the
//!   master through the macvlan (a UDP responder answers);
//! * the master's adverts and gratuitous ARPs leave with the virtual MAC;
//! * after a graceful stop of the master the backup answers the same client, whose ARP
//!   entry for the VIP never changed, and the stopped router's macvlan is gone and its
//!   `arp_ignore` back to what it was.
//!
//! Needs root (namespaces); skipped loudly otherwise.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use haldir_lab::capture::{gratuitous_arps, Capture, FrameKind};
use haldir_lab::probe::{Prober, Responder};
use haldir_lab::{pair, skip_unless_root, wait_until, Haldir, Lab};
use haldir_vrrp::wire::arp::{ArpRepr, Operation};

const VIP: &str = "10.0.0.100";
const VMAC: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, 51];
const PORT: u16 = 7051;
/// The base interface's `arp_ignore`, which `use_vmac` sets and gives back.
const ARP_IGNORE: &str = "/proc/sys/net/ipv4/conf/eth0/arp_ignore";

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

fn config(priority: u8) -> String {
    format!(
        "vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    use_vmac
    version 3
    virtual_router_id 51
    priority {priority}
    advert_int 0.1
    virtual_ipaddress {{
        {VIP}/24
    }}
}}
"
    )
}

/// The client's neighbour entry for the VIP (`ip neigh show VIP`).
fn client_neighbour(lab: &Lab) -> String {
    lab.stdout("cl", &["ip", "neigh", "show", VIP])
}

/// ARP replies for the VIP seen on the segment, by sender MAC.
fn arp_replies(frames: &[haldir_lab::capture::Frame]) -> Vec<[u8; 6]> {
    let vip: std::net::Ipv4Addr = VIP.parse().unwrap();
    frames
        .iter()
        .filter(|f| f.kind == FrameKind::Arp)
        .filter_map(|f| ArpRepr::parse(&f.bytes).ok())
        .filter(|arp| arp.operation == Operation::Reply && arp.sender_ip == vip)
        .map(|arp| arp.sender_mac)
        .collect()
}

#[test]
fn use_vmac_answers_arp_with_the_virtual_mac_and_survives_a_failover() {
    if skip_unless_root("use_vmac_answers_arp_with_the_virtual_mac_and_survives_a_failover") {
        return;
    }
    let lab = Lab::new("vmac").unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
    lab.add_host("cl", &["10.0.0.9/24"]).unwrap();
    let arp_ignore_before = lab.stdout("r1", &["cat", ARP_IGNORE]);
    let segment = Capture::start(&lab).unwrap();

    let r1 = Haldir::start_with_config(&lab, "r1", binary(), &config(150)).unwrap();
    let r2 = Haldir::start_with_config(&lab, "r2", binary(), &config(100)).unwrap();
    pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "start",
        ("MASTER", "BACKUP"),
        &["r1"],
    );
    for host in ["r1", "r2"] {
        let link = lab.stdout(host, &["ip", "-d", "-o", "link", "show", "vrrp.51"]);
        assert!(
            link.contains("link/ether 00:00:5e:00:01:33") && link.contains("macvlan mode private"),
            "{host} has the macvlan with the virtual MAC: {link}"
        );
    }
    assert!(lab
        .addresses("r1", "vrrp.51")
        .unwrap()
        .contains(&format!("{VIP}/24")));
    assert!(lab.addresses("r2", "vrrp.51").unwrap().is_empty());

    // The client reaches the VIP: its ARP is answered with the virtual MAC.
    let _responders: Vec<Responder> = ["r1", "r2"]
        .iter()
        .map(|h| Responder::start(&lab, h, PORT).unwrap())
        .collect();
    let vip: IpAddr = VIP.parse().unwrap();
    let prober = Prober::start(&lab, "cl", vip, PORT).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || prober.replies_from("r1") > 50),
        "the client's probes to the VIP are answered by r1; neighbour: {}\nr1 log:\n{}",
        client_neighbour(&lab),
        r1.log()
    );
    let neighbour = client_neighbour(&lab);
    assert!(
        neighbour.contains("lladdr 00:00:5e:00:01:33"),
        "{neighbour}"
    );
    let frames = segment.kept();
    let replies = arp_replies(&frames);
    assert!(!replies.is_empty(), "an ARP reply for the VIP was seen");
    assert!(
        replies.iter().all(|mac| *mac == VMAC),
        "every ARP reply for the VIP carries the virtual MAC, none r1's own: {replies:02x?}"
    );
    assert!(
        !gratuitous_arps(&frames, VMAC, VIP.parse().unwrap()).is_empty(),
        "the master's gratuitous ARPs announce the virtual MAC"
    );
    assert!(
        frames
            .iter()
            .any(|f| f.kind == FrameKind::Vrrp4 && f.src_mac() == VMAC),
        "the adverts leave through the macvlan"
    );

    // Failover: the backup answers the same client; its ARP entry needs no change.
    let mark = prober.mark();
    r1.stop().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || {
            r2.state().as_deref() == Some("MASTER") && lab.has_address("r2", VIP)
        }),
        "r1 stopped: r2 takes over\nr2 log:\n{}",
        r2.log()
    );
    assert!(
        wait_until(Duration::from_secs(10), || prober.replies_from("r2") > 50),
        "after the failover r2 answers the client; neighbour: {}\nr2 log:\n{}",
        client_neighbour(&lab),
        r2.log()
    );
    let report = prober.stop();
    eprintln!(
        "use_vmac failover: longest silence {:.0} ms",
        report.largest_gap_after(mark).as_secs_f64() * 1000.0
    );
    assert!(client_neighbour(&lab).contains("lladdr 00:00:5e:00:01:33"));
    assert!(
        lab.stdout("r1", &["ip", "-o", "link", "show", "vrrp.51"])
            .is_empty(),
        "the stopped router deleted its macvlan"
    );
    assert_eq!(
        lab.stdout("r1", &["cat", ARP_IGNORE]),
        arp_ignore_before,
        "and gave arp_ignore back"
    );
    drop(segment.stop());
}
