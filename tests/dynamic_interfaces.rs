//! keepalived's `dynamic_interfaces` (keepalived.conf(5), global_defs) between two haldir
//! on a lab bridge, in keepalived.conf syntax: r1's instance lives on `eth0`, which does
//! not exist when r1 starts (it is parked under another name). r1 starts anyway, reports
//! the instance in FAULT, and r2 is master; when `eth0` appears, r1 starts the instance
//! and, with the higher priority, takes the VIP over. Without `dynamic_interfaces` the
//! same start fails with the missing interface named. Needs root (namespaces); skipped
//! loudly otherwise.

use std::path::Path;
use std::time::Duration;

use haldir_lab::{pair, skip_unless_root, wait_until, Haldir, HaldirInstance, Lab};

const VIP: &str = "10.0.0.100";
const VIP_CIDR: &str = "10.0.0.100/24";
const FAST: Duration = Duration::from_millis(100);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

fn config(global_defs: &str) -> String {
    format!(
        "global_defs {{
{global_defs}}}
vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    version 3
    virtual_router_id 51
    priority 150
    advert_int 0.1
    virtual_ipaddress {{
        {VIP_CIDR}
    }}
}}
"
    )
}

/// Renames r1's `eth0` (down while renamed), so the instance's interface is missing.
fn rename(lab: &Lab, from: &str, to: &str) {
    lab.run("r1", &["ip", "link", "set", from, "down"]).unwrap();
    lab.run("r1", &["ip", "link", "set", from, "name", to])
        .unwrap();
    lab.run("r1", &["ip", "link", "set", to, "up"]).unwrap();
}

#[test]
fn an_instance_waits_for_its_missing_interface_then_takes_over() {
    if skip_unless_root("an_instance_waits_for_its_missing_interface_then_takes_over") {
        return;
    }
    let lab = Lab::new("dynif").unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
    rename(&lab, "eth0", "parked0");

    let r1 = Haldir::start_with_config(&lab, "r1", binary(), &config("    dynamic_interfaces\n"))
        .unwrap();
    let r2 = Haldir::start_with_config(
        &lab,
        "r2",
        binary(),
        &HaldirInstance::v3(51, 100, FAST, &[VIP_CIDR]).render(),
    )
    .unwrap();
    pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "start without r1's eth0",
        ("FAULT", "MASTER"),
        &["r2"],
    );
    let status = r1.status().unwrap();
    assert_eq!(
        status["instances"][0]["reason"], "interface missing (dynamic_interfaces)",
        "{status}"
    );
    assert!(
        r1.log().contains("interface eth0 does not exist"),
        "{}",
        r1.log()
    );

    rename(&lab, "parked0", "eth0");
    let took = pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "eth0 appeared in r1: priority 150 preempts 100",
        ("MASTER", "BACKUP"),
        &["r1"],
    );
    eprintln!(
        "dynamic_interfaces: interface appeared → master in {:.0} ms",
        took.as_secs_f64() * 1000.0
    );
}

#[test]
fn without_dynamic_interfaces_a_missing_interface_fails_the_start() {
    if skip_unless_root("without_dynamic_interfaces_a_missing_interface_fails_the_start") {
        return;
    }
    let lab = Lab::new("nodynif").unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    rename(&lab, "eth0", "parked0");
    let r1 = Haldir::start_with_timeout(
        &lab,
        "r1",
        binary(),
        &config(""),
        &[],
        Duration::from_secs(2),
    );
    let exited = match &r1 {
        Ok(h) => wait_until(Duration::from_secs(10), || !h.is_running()),
        Err(_) => true,
    };
    assert!(exited, "haldir must not run without its interface");
    let log = match &r1 {
        Ok(h) => h.log(),
        Err(e) => format!("{e:#}"),
    };
    assert!(log.contains("\"eth0\" does not exist"), "{log}");
}
