//! The appliance's `vrrp_sync_group` over both NICs (VI_PUBLIC on eth0, VI_PRIVATE on eth1,
//! see `haldir_lab::appliance`): cutting the master's private link at the switch (its
//! bridge port down, so its eth1 loses carrier) puts VI_PRIVATE in FAULT, the group
//! follows, and BOTH virtual addresses move to the other router, as `ip addr` shows in
//! both namespaces; the link back up, the first router preempts both back.
//!
//! VRRP only: it runs on the host (no IPVS needed; haldir says the kernel has none and
//! carries on). Needs root; skipped loudly otherwise.

use std::path::Path;
use std::time::Duration;

use haldir_lab::appliance::{Appliance, ApplianceOptions, INSTANCES, PRIVATE_VIP, VIP};
use haldir_lab::{skip_unless_root, wait_until, Haldir, Lab};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

/// Waits until every instance of r1 is in `states[0]` and of r2 in `states[1]`, and both
/// VIPs are on `holder` only (per `ip -o addr show` in each router's namespace).
fn wait(app: &Appliance, r1: &Haldir, r2: &Haldir, what: &str, states: [&str; 2], holder: &str) {
    let ok = wait_until(Duration::from_secs(15), || {
        INSTANCES.iter().all(|i| {
            r1.instance_state(i).as_deref() == Some(states[0])
                && r2.instance_state(i).as_deref() == Some(states[1])
        }) && app.holders() == (vec![holder], vec![holder])
    });
    assert!(
        ok,
        "{what}: expected r1 {} and r2 {} with {VIP} and {PRIVATE_VIP} on {holder} only; got r1 \
         {:?}, r2 {:?}, VIPs on {:?}\nr1 log:\n{}\nr2 log:\n{}",
        states[0],
        states[1],
        r1.states(),
        r2.states(),
        app.holders(),
        r1.log(),
        r2.log()
    );
    // The same, from `ip -o addr show` in each router's namespace.
    for router in ["r1", "r2"] {
        for vip in [VIP, PRIVATE_VIP] {
            assert_eq!(
                app.lab().has_address(router, vip),
                router == holder,
                "{what}: `ip addr` in {router} for {vip}"
            );
        }
    }
}

#[test]
fn cutting_the_masters_private_link_moves_both_vips() {
    if skip_unless_root("cutting_the_masters_private_link_moves_both_vips") {
        return;
    }
    let lab = Lab::new("appliance-links").unwrap();
    let app = Appliance::build(&lab, ApplianceOptions::default()).unwrap();
    let r1 = app.start_router("r1", binary()).unwrap();
    let r2 = app.start_router("r2", binary()).unwrap();
    wait(&app, &r1, &r2, "start", ["MASTER", "BACKUP"], "r1");

    app.set_private_link("r1", false).unwrap();
    wait(
        &app,
        &r1,
        &r2,
        "r1's private link cut",
        ["FAULT", "MASTER"],
        "r2",
    );

    app.set_private_link("r1", true).unwrap();
    wait(
        &app,
        &r1,
        &r2,
        "r1's private link back",
        ["MASTER", "BACKUP"],
        "r1",
    );
    assert!(r1.stop().unwrap().success(), "{}", r1.log());
    assert!(r2.stop().unwrap().success(), "{}", r2.log());
}
