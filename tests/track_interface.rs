//! A weighted `track_interface` between two haldir on a lab bridge, in keepalived.conf
//! syntax (keepalived.conf(5), vrrp_instance `track_interface`):
//!
//! * `weight -60`: the tracked interface going down lowers the master's priority from 150
//!   to 90, below the backup's 100, so the backup preempts and takes the VIP; the
//!   interface back up gives the master its priority back and it preempts again. The
//!   instance never enters FAULT (that is the unweighted entry's behaviour, proved by
//!   `tests/sync_group.rs`);
//! * `weight 0 reverse`: the interface **up** is the failing state, so the instance is in
//!   FAULT until the interface goes down.
//!
//! The tracked interface is one end of a veth pair inside r1. Needs root (namespaces);
//! skipped loudly otherwise.

use std::path::Path;
use std::time::Duration;

use haldir_lab::{pair, skip_unless_root, Haldir, HaldirInstance, Lab};

const VIP: &str = "10.0.0.100";
const VIP_CIDR: &str = "10.0.0.100/24";
const FAST: Duration = Duration::from_millis(100);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

/// r1's keepalived.conf: priority 150, tracking `trk0` with the entry `tracked`.
fn tracking_config(tracked: &str) -> String {
    format!(
        "vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    version 3
    virtual_router_id 51
    priority 150
    advert_int 0.1
    virtual_ipaddress {{
        {VIP_CIDR}
    }}
    track_interface {{
        {tracked}
    }}
}}
"
    )
}

/// Two routers; r1 has the veth pair trk0/trk1, both up.
fn lab(tag: &str) -> Lab {
    let lab = Lab::new(tag).unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
    lab.add_inner_veth("r1", "trk0", "trk1").unwrap();
    lab
}

fn set_link(lab: &Lab, up: bool) {
    lab.run(
        "r1",
        &["ip", "link", "set", "trk0", if up { "up" } else { "down" }],
    )
    .unwrap();
}

fn backup(lab: &Lab) -> Haldir<'_> {
    Haldir::start_with_config(
        lab,
        "r2",
        binary(),
        &HaldirInstance::v3(51, 100, FAST, &[VIP_CIDR]).render(),
    )
    .unwrap()
}

#[test]
fn a_weighted_tracked_interface_going_down_hands_mastership_over_without_fault() {
    if skip_unless_root(
        "a_weighted_tracked_interface_going_down_hands_mastership_over_without_fault",
    ) {
        return;
    }
    let lab = lab("trackif-weight");
    let r1 = Haldir::start_with_config(&lab, "r1", binary(), &tracking_config("trk0 weight -60"))
        .unwrap();
    let r2 = backup(&lab);
    pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "start",
        ("MASTER", "BACKUP"),
        &["r1"],
    );

    set_link(&lab, false);
    let took = pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "trk0 down: 150 - 60 < 100",
        ("BACKUP", "MASTER"),
        &["r2"],
    );
    eprintln!(
        "track_interface weight -60: link down → peer master in {:.0} ms",
        took.as_secs_f64() * 1000.0
    );
    let status = r1.status().unwrap();
    assert_eq!(status["instances"][0]["priority"], 90, "{status}");

    set_link(&lab, true);
    pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "trk0 up: priority 150 again",
        ("MASTER", "BACKUP"),
        &["r1"],
    );
    let log = r1.log();
    assert!(
        !log.contains("Entering FAULT STATE"),
        "a weighted interface moves the priority, it never faults:\n{log}"
    );
}

#[test]
fn a_tracked_interface_of_weight_zero_reverse_faults_while_up() {
    if skip_unless_root("a_tracked_interface_of_weight_zero_reverse_faults_while_up") {
        return;
    }
    let lab = lab("trackif-reverse");
    set_link(&lab, false);
    let r1 = Haldir::start_with_config(
        &lab,
        "r1",
        binary(),
        &tracking_config("trk0 weight 0 reverse"),
    )
    .unwrap();
    let r2 = backup(&lab);
    pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "start, trk0 down",
        ("MASTER", "BACKUP"),
        &["r1"],
    );

    set_link(&lab, true);
    pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "trk0 up: FAULT (reverse)",
        ("FAULT", "MASTER"),
        &["r2"],
    );

    set_link(&lab, false);
    pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "trk0 down: out of FAULT, preempts",
        ("MASTER", "BACKUP"),
        &["r1"],
    );
}
