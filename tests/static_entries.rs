//! keepalived's `static_ipaddress`, `static_routes` and `static_rules` (keepalived.conf(5),
//! top level) with two haldir on a lab bridge, in keepalived.conf syntax: r1 is the BACKUP
//! and still has its static address (on its second interface `pub0`), route and rule; a
//! reload that changes the route replaces that route alone; a graceful stop removes them
//! all. Needs root (namespaces); skipped loudly otherwise.

use std::path::Path;
use std::time::Duration;

use haldir_lab::{pair, skip_unless_root, wait_until, Haldir, HaldirInstance, Lab};

const VIP: &str = "10.0.0.100";
const FAST: Duration = Duration::from_millis(100);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

/// r1's file: priority 50, below r2's 100, with the static entries; `route` is the
/// static route's destination.
fn config(route: &str) -> String {
    format!(
        "static_ipaddress {{
    10.99.0.1/24 dev pub0 scope link
}}
static_routes {{
    {route} via 10.99.0.254
}}
static_rules {{
    from 10.99.0.1/32 table 99 priority 99
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    version 3
    virtual_router_id 51
    priority 50
    advert_int 0.1
    virtual_ipaddress {{
        {VIP}/24
    }}
}}
"
    )
}

/// Which of the static entries r1's kernel holds.
fn installed(lab: &Lab, route: &str) -> Vec<&'static str> {
    let mut found = Vec::new();
    if lab
        .stdout("r1", &["ip", "-o", "addr", "show", "dev", "pub0"])
        .contains("10.99.0.1/24")
    {
        found.push("address");
    }
    if lab
        .stdout("r1", &["ip", "route", "show"])
        .contains(&format!("{route} via 10.99.0.254 dev pub0"))
    {
        found.push("route");
    }
    if lab
        .stdout("r1", &["ip", "rule", "show"])
        .contains("99:\tfrom 10.99.0.1 lookup 99")
    {
        found.push("rule");
    }
    found
}

#[test]
fn static_entries_are_installed_whatever_the_state_follow_reloads_and_go_at_stop() {
    if skip_unless_root(
        "static_entries_are_installed_whatever_the_state_follow_reloads_and_go_at_stop",
    ) {
        return;
    }
    let lab = Lab::new("statics").unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
    lab.add_inner_veth("r1", "pub0", "pub1").unwrap();
    let first = "10.98.0.0/16";
    let r1 = Haldir::start_with_config(&lab, "r1", binary(), &config(first)).unwrap();
    let r2 = Haldir::start_with_config(
        &lab,
        "r2",
        binary(),
        &HaldirInstance::v3(51, 100, FAST, &[&format!("{VIP}/24")]).render(),
    )
    .unwrap();
    pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "start",
        ("BACKUP", "MASTER"),
        &["r2"],
    );
    assert!(
        wait_until(Duration::from_secs(10), || installed(&lab, first)
            == ["address", "route", "rule"]),
        "the BACKUP has its static entries; found {:?}\nr1 log:\n{}",
        installed(&lab, first),
        r1.log()
    );

    let second = "10.97.0.0/16";
    assert!(r1.reload(&config(second)).unwrap(), "{}", r1.log());
    assert!(
        wait_until(Duration::from_secs(10), || installed(&lab, second)
            == ["address", "route", "rule"]
            && !installed(&lab, first).contains(&"route")),
        "after the reload the new route replaced the old; routes:\n{}",
        lab.stdout("r1", &["ip", "route", "show"])
    );

    r1.stop().unwrap();
    assert!(
        installed(&lab, second).is_empty(),
        "a graceful stop removes every static entry; found {:?}",
        installed(&lab, second)
    );
}
