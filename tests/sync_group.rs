//! `vrrp_sync_group` + `track_interface` between two haldir (issue 6 item 1,
//! issue 5's "both formats"): each router runs two instances (two VRIDs on
//! eth0, standing in for the public and the private side) in one sync group;
//! the private-side instance tracks `priv0` (one end of a veth pair
//! inside the router, standing in for the private NIC). Cutting the master's tracked link puts that instance in FAULT, the
//! group follows, and BOTH virtual addresses move to the other router; link
//! up again → the first router preempts both back. The same test runs from
//! TOML and from keepalived.conf (detected by content).
//!
//! Needs root (namespaces); skipped loudly otherwise.

use std::path::Path;
use std::time::Duration;

use haldir_lab::{self as lab, Haldir, Lab};

const VIP_PUBLIC: &str = "10.0.0.100";
const VIP_PRIVATE: &str = "10.0.0.200";

use haldir_lab::skip_unless_root;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

#[derive(Clone, Copy)]
enum Syntax {
    Toml,
    Keepalived,
}

fn config(syntax: Syntax, priority: u8) -> String {
    match syntax {
        Syntax::Toml => format!(
            r#"[[vrrp_sync_group]]
name = "VG_1"
group = ["VI_PUBLIC", "VI_PRIVATE"]

[[vrrp_instance]]
name = "VI_PUBLIC"
interface = "eth0"
version = 3
virtual_router_id = 51
priority = {priority}
advert_int = 0.1
virtual_ipaddress = ["{VIP_PUBLIC}/24"]

[[vrrp_instance]]
name = "VI_PRIVATE"
interface = "eth0"
version = 3
virtual_router_id = 52
priority = {priority}
advert_int = 0.1
virtual_ipaddress = ["{VIP_PRIVATE}/24"]
track_interface = ["priv0"]
"#
        ),
        Syntax::Keepalived => format!(
            r#"! keepalived.conf
vrrp_sync_group VG_1 {{
    group {{
        VI_PUBLIC
        VI_PRIVATE
    }}
}}

vrrp_instance VI_PUBLIC {{
    state BACKUP
    interface eth0
    version 3
    virtual_router_id 51
    priority {priority}
    advert_int 0.1
    virtual_ipaddress {{
        {VIP_PUBLIC}/24
    }}
}}

vrrp_instance VI_PRIVATE {{
    state BACKUP
    interface eth0
    version 3
    virtual_router_id 52
    priority {priority}
    advert_int 0.1
    virtual_ipaddress {{
        {VIP_PRIVATE}/24
    }}
    track_interface {{
        priv0
    }}
}}
"#
        ),
    }
}

/// Which routers hold each VIP: (public, private).
fn holders(lab: &Lab) -> (Vec<&'static str>, Vec<&'static str>) {
    let on = |vip: &str| {
        ["r1", "r2"]
            .into_iter()
            .filter(|h| lab.has_address(h, vip))
            .collect()
    };
    (on(VIP_PUBLIC), on(VIP_PRIVATE))
}

/// Waits until both instances of r1 are in `r1_state`, both of r2 in
/// `r2_state`, and both VIPs are on `holder` only.
fn wait(lab: &Lab, r1: &Haldir, r2: &Haldir, what: &str, states: [&str; 2], holder: &str) {
    let ok = lab::wait_until(Duration::from_secs(10), || {
        ["VI_PUBLIC", "VI_PRIVATE"].iter().all(|i| {
            r1.instance_state(i).as_deref() == Some(states[0])
                && r2.instance_state(i).as_deref() == Some(states[1])
        }) && holders(lab) == (vec![holder], vec![holder])
    });
    assert!(
        ok,
        "{what}: expected r1 {} and r2 {} with both VIPs on {holder}; got r1 {:?}, r2 {:?}, VIPs on {:?}\nr1 log:\n{}\nr2 log:\n{}",
        states[0],
        states[1],
        r1.states(),
        r2.states(),
        holders(lab),
        r1.log(),
        r2.log()
    );
}

fn cutting_the_tracked_link_moves_the_whole_group(tag: &str, syntax: Syntax) {
    let lab = Lab::new(tag).unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
    for host in ["r1", "r2"] {
        lab.add_inner_veth(host, "priv0", "priv1").unwrap();
    }
    let r1 = Haldir::start_with_config(&lab, "r1", binary(), &config(syntax, 150)).unwrap();
    let r2 = Haldir::start_with_config(&lab, "r2", binary(), &config(syntax, 100)).unwrap();
    wait(&lab, &r1, &r2, "start", ["MASTER", "BACKUP"], "r1");

    lab.run("r1", &["ip", "link", "set", "priv0", "down"])
        .unwrap();
    wait(
        &lab,
        &r1,
        &r2,
        "priv0 down on r1",
        ["FAULT", "MASTER"],
        "r2",
    );

    lab.run("r1", &["ip", "link", "set", "priv0", "up"])
        .unwrap();
    wait(&lab, &r1, &r2, "priv0 up on r1", ["MASTER", "BACKUP"], "r1");
    r1.stop().unwrap();
    r2.stop().unwrap();
}

#[test]
fn toml_sync_group_follows_a_tracked_link() {
    if skip_unless_root("toml_sync_group_follows_a_tracked_link") {
        return;
    }
    cutting_the_tracked_link_moves_the_whole_group("syncgrp-toml", Syntax::Toml);
}

#[test]
fn keepalived_conf_sync_group_follows_a_tracked_link() {
    if skip_unless_root("keepalived_conf_sync_group_follows_a_tracked_link") {
        return;
    }
    cutting_the_tracked_link_moves_the_whole_group("syncgrp-kconf", Syntax::Keepalived);
}
