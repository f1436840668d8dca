//! Where the virtual addresses go (keepalived.conf(5), `virtual_ipaddress` entry options
//! and `virtual_ipaddress_excluded`), between two haldir on a lab bridge, in
//! keepalived.conf syntax:
//!
//! * an entry with `dev pub0 label pub0:vip brd ... scope link` lands on `pub0`, a second
//!   interface of the router (not the instance's `eth0`), with that label, broadcast
//!   address and scope, and its gratuitous ARP leaves through `pub0` with `pub0`'s MAC,
//!   never through `eth0`;
//! * excluded addresses (one IPv4 on `pub0`, one IPv6 on the IPv4 instance's `eth0`) are
//!   added with the virtual addresses and announced, but the adverts do not carry them;
//! * when mastership moves (r1's priority lowered by a reload), all of them leave r1 and
//!   appear on r2, each on its interface;
//! * `virtual_routes` (a gateway route, a route with `src` in table 100, a blackhole) and
//!   `virtual_rules` (`from VIP table 100`) are in the master's kernel only, move with
//!   mastership, and a reload that changes one route swaps that route on the master
//!   without a state change.
//!
//! The second interface is one end of a veth pair inside each router. Needs root
//! (namespaces); skipped loudly otherwise.

use std::path::Path;
use std::time::Duration;

use haldir_lab::capture::{gratuitous_arps, Capture, FrameKind};
use haldir_lab::{pair, skip_unless_root, wait_until, Haldir, Lab};

const VIP: &str = "10.0.0.100";
const OTHER_NIC_VIP: &str = "198.51.100.10";
const EXCLUDED_V4: &str = "203.0.113.5";
const EXCLUDED_V6: &str = "fd00:5::5";

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

/// The same instance on both routers, at `priority`.
fn config(priority: u8) -> String {
    config_with(priority, "")
}

/// [`config`] with `extra` lines in the instance block.
fn config_with(priority: u8, extra: &str) -> String {
    format!(
        "vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    version 3
    virtual_router_id 51
    priority {priority}
    advert_int 0.1
    virtual_ipaddress {{
        {VIP}/24
        {OTHER_NIC_VIP}/24 dev pub0 label pub0:vip brd 198.51.100.200 scope link
    }}
    virtual_ipaddress_excluded {{
        {EXCLUDED_V4}/24 dev pub0
        {EXCLUDED_V6}/64
    }}
{extra}}}
"
    )
}

/// `ip -o addr show dev IFNAME` in `host`, one line per address.
fn address_lines(lab: &Lab, host: &str, ifname: &str) -> String {
    lab.stdout(host, &["ip", "-o", "addr", "show", "dev", ifname])
}

/// r1 and r2 on the lab bridge, each with a second interface `pub0` (one end of a
/// veth pair inside it).
fn two_routers_with_pub0(tag: &str) -> Lab {
    let lab = Lab::new(tag).unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
    for host in ["r1", "r2"] {
        lab.add_inner_veth(host, "pub0", "pub1").unwrap();
    }
    lab
}

fn holds(lab: &Lab, host: &str, ifname: &str, address: &str) -> bool {
    address_lines(lab, host, ifname).contains(&format!(" {address}/"))
}

fn mac_of(lab: &Lab, host: &str, ifname: &str) -> [u8; 6] {
    let text = lab.stdout(host, &["cat", &format!("/sys/class/net/{ifname}/address")]);
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(text.trim().split(':')) {
        *byte = u8::from_str_radix(part, 16).unwrap();
    }
    mac
}

/// Every address in its place on `host` (`true`) or on none of its interfaces (`false`).
fn placed(lab: &Lab, host: &str) -> [bool; 4] {
    [
        holds(lab, host, "eth0", VIP),
        holds(lab, host, "pub0", OTHER_NIC_VIP),
        holds(lab, host, "pub0", EXCLUDED_V4),
        holds(lab, host, "eth0", EXCLUDED_V6),
    ]
}

#[test]
fn addresses_go_on_their_dev_with_label_and_move_with_mastership() {
    if skip_unless_root("addresses_go_on_their_dev_with_label_and_move_with_mastership") {
        return;
    }
    let lab = two_routers_with_pub0("vip-dev");
    let other_nic = Capture::start_on(&lab, "r1", "pub1").unwrap();
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
    assert!(
        wait_until(Duration::from_secs(10), || placed(&lab, "r1") == [true; 4]),
        "r1 is master: every address on its interface; r1 eth0:\n{}r1 pub0:\n{}\nr1 log:\n{}",
        address_lines(&lab, "r1", "eth0"),
        address_lines(&lab, "r1", "pub0"),
        r1.log()
    );
    assert_eq!(placed(&lab, "r2"), [false; 4], "the backup holds none");
    assert!(
        !holds(&lab, "r1", "eth0", OTHER_NIC_VIP) && !holds(&lab, "r1", "pub0", VIP),
        "each address on its own interface only"
    );
    let pub0 = address_lines(&lab, "r1", "pub0");
    let line = pub0
        .lines()
        .find(|l| l.contains(&format!(" {OTHER_NIC_VIP}/24 ")))
        .unwrap_or_else(|| panic!("no {OTHER_NIC_VIP} on pub0:\n{pub0}"));
    for option in ["brd 198.51.100.200", "scope link", "pub0:vip"] {
        assert!(line.contains(option), "`{option}` missing from: {line}");
    }

    // Announced on pub0 with pub0's MAC; never on eth0.
    let pub0_mac = mac_of(&lab, "r1", "pub0");
    let eth0_mac = lab.mac_bytes("r1").unwrap();
    let announced = |frames: &[haldir_lab::capture::Frame], mac, address: &str| {
        !gratuitous_arps(frames, mac, address.parse().unwrap()).is_empty()
    };
    assert!(
        wait_until(Duration::from_secs(10), || {
            let frames = other_nic.kept();
            announced(&frames, pub0_mac, OTHER_NIC_VIP) && announced(&frames, pub0_mac, EXCLUDED_V4)
        }),
        "gratuitous ARPs for {OTHER_NIC_VIP} and {EXCLUDED_V4} from pub0's MAC on pub0\nr1 log:\n{}",
        r1.log()
    );
    let on_segment = segment.kept();
    assert!(
        announced(&on_segment, eth0_mac, VIP),
        "the eth0 VIP is announced on eth0"
    );
    assert!(
        !announced(&on_segment, eth0_mac, OTHER_NIC_VIP),
        "{OTHER_NIC_VIP} (dev pub0) must not be announced on eth0"
    );
    assert!(
        on_segment
            .iter()
            .any(|f| f.kind == FrameKind::NeighborAdvert && f.src_mac() == eth0_mac),
        "the excluded IPv6 address is announced (unsolicited NA) on eth0"
    );
    // Adverts carry the virtual addresses only: 2 IPv4 addresses, never the excluded ones.
    let advert = on_segment
        .iter()
        .filter(|f| f.kind == FrameKind::Vrrp4 && f.src_mac() == eth0_mac)
        .filter_map(|f| haldir_lab::capture::vrrp_payload(&f.bytes))
        .next_back()
        .expect("r1 sends adverts")
        .to_vec();
    assert_eq!(
        advert[3], 2,
        "count of addresses in r1's advert: {advert:?}"
    );

    // Mastership moves: every address leaves r1 and appears on r2.
    assert!(r1.reload(&config(50)).unwrap(), "{}", r1.log());
    pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "r1 reloaded with priority 50",
        ("BACKUP", "MASTER"),
        &["r2"],
    );
    assert!(
        wait_until(Duration::from_secs(10), || placed(&lab, "r2") == [true; 4]
            && placed(&lab, "r1") == [false; 4]),
        "after the handover r2 holds everything, r1 nothing: r1 {:?}, r2 {:?}\nr1 log:\n{}\nr2 log:\n{}",
        placed(&lab, "r1"),
        placed(&lab, "r2"),
        r1.log(),
        r2.log()
    );
    let r2_pub0 = address_lines(&lab, "r2", "pub0");
    assert!(r2_pub0.contains("pub0:vip"), "{r2_pub0}");
    drop(other_nic.stop());
    drop(segment.stop());
}

/// The routes and rules of the second test; `blackhole` is the blackhole's prefix.
fn routing(blackhole: &str) -> String {
    format!(
        "    virtual_routes {{
        198.51.100.0/25 via 10.0.0.254 dev eth0
        src {VIP} to 192.0.2.0/24 via 10.0.0.254 table 100
        blackhole {blackhole}
    }}
    virtual_rules {{
        from {VIP}/32 table 100 priority 100
    }}
"
    )
}

/// What `host`'s kernel holds of the routes and rules: (main routes, table 100, rules).
fn routing_state(lab: &Lab, host: &str) -> String {
    let text = |args: &[&str]| lab.stdout(host, args);
    format!(
        "{}{}{}",
        text(&["ip", "route", "show"]),
        text(&["ip", "route", "show", "table", "100"]),
        text(&["ip", "rule", "show"])
    )
}

/// Which of the expected routes and rules `host` holds, by name.
fn installed(lab: &Lab, host: &str, blackhole: &str) -> Vec<&'static str> {
    let state = routing_state(lab, host);
    let mut found = Vec::new();
    if state.contains("198.51.100.0/25 via 10.0.0.254 dev eth0") {
        found.push("gateway route");
    }
    if state
        .lines()
        .any(|l| l.starts_with("192.0.2.0/24 via 10.0.0.254") && l.contains(&format!("src {VIP}")))
    {
        found.push("table 100 route");
    }
    if state.contains(&format!("blackhole {blackhole}")) {
        found.push("blackhole");
    }
    if state.contains(&format!("100:\tfrom {VIP} lookup 100")) {
        found.push("rule");
    }
    found
}

const ALL_ROUTING: [&str; 4] = ["gateway route", "table 100 route", "blackhole", "rule"];

#[test]
fn virtual_routes_and_rules_follow_mastership_and_reload() {
    if skip_unless_root("virtual_routes_and_rules_follow_mastership_and_reload") {
        return;
    }
    let lab = two_routers_with_pub0("vroutes");
    let first = "203.0.113.128/25";
    let r1 = Haldir::start_with_config(&lab, "r1", binary(), &config_with(150, &routing(first)))
        .unwrap();
    let r2 = Haldir::start_with_config(&lab, "r2", binary(), &config_with(100, &routing(first)))
        .unwrap();
    pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "start",
        ("MASTER", "BACKUP"),
        &["r1"],
    );
    assert!(
        wait_until(Duration::from_secs(10), || installed(&lab, "r1", first)
            == ALL_ROUTING),
        "the master installs every route and rule; r1 has {:?}:\n{}\nr1 log:\n{}",
        installed(&lab, "r1", first),
        routing_state(&lab, "r1"),
        r1.log()
    );
    assert!(
        installed(&lab, "r2", first).is_empty(),
        "the backup installs none:\n{}",
        routing_state(&lab, "r2")
    );

    assert!(
        r1.reload(&config_with(50, &routing(first))).unwrap(),
        "{}",
        r1.log()
    );
    pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "r1 reloaded with priority 50",
        ("BACKUP", "MASTER"),
        &["r2"],
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            installed(&lab, "r2", first) == ALL_ROUTING && installed(&lab, "r1", first).is_empty()
        }),
        "the routes and rules move with mastership: r1 {:?}, r2 {:?}\nr2 log:\n{}",
        installed(&lab, "r1", first),
        installed(&lab, "r2", first),
        r2.log()
    );

    // One route changed by a reload: swapped in place, the master stays master.
    let second = "203.0.113.0/25";
    let transitions = r2.log().matches("Entering").count();
    assert!(
        r2.reload(&config_with(100, &routing(second))).unwrap(),
        "{}",
        r2.log()
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            installed(&lab, "r2", second) == ALL_ROUTING
                && !routing_state(&lab, "r2").contains(&format!("blackhole {first}"))
        }),
        "after the reload r2 has the new blackhole and not the old:\n{}\nr2 log:\n{}",
        routing_state(&lab, "r2"),
        r2.log()
    );
    assert_eq!(r2.state().as_deref(), Some("MASTER"));
    assert_eq!(
        r2.log().matches("Entering").count(),
        transitions,
        "a routes-only reload changes no state:\n{}",
        r2.log()
    );

    // A graceful stop takes them away with the addresses.
    r2.stop().unwrap();
    assert!(
        installed(&lab, "r2", second).is_empty(),
        "stopped, r2 keeps no route or rule:\n{}",
        routing_state(&lab, "r2")
    );
}
