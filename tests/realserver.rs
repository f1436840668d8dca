//! `haldir realserver check|setup` in a fresh network namespace: on a host with the kernel's
//! defaults, `check` names each problem (VIP not on lo, arp_ignore, arp_announce) and exits
//! 1; `setup` fixes them; `check` then passes; and, seen from another host on the segment,
//! an ARP request for the VIP gets no reply (the client's ping to the VIP fails and its
//! neighbour entry for the VIP never resolves) while the real server's own address does.
//! Needs root (skipped loudly otherwise).

use std::path::Path;
use std::process::Output;

use haldir_lab::{skip_unless_root, Lab};

const VIP: &str = "10.0.0.100";
const RS: &str = "10.0.0.11";
const CLIENT: &str = "10.0.0.50";

fn binary() -> &'static str {
    Path::new(env!("CARGO_BIN_EXE_haldir")).to_str().unwrap()
}

fn realserver(lab: &Lab, action: &str) -> Output {
    lab.output("rs", &[binary(), "realserver", action, VIP])
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn realserver_check_names_the_problems_setup_fixes_them_and_the_vip_gets_no_arp_reply() {
    if skip_unless_root(
        "realserver_check_names_the_problems_setup_fixes_them_and_the_vip_gets_no_arp_reply",
    ) {
        return;
    }
    let lab = Lab::new("realserver").unwrap();
    lab.add_host("rs", &[format!("{RS}/24").as_str()]).unwrap();
    lab.add_host("client", &[format!("{CLIENT}/24").as_str()])
        .unwrap();
    // The kernel's defaults, whatever the host inherited (net.core.devconf_inherit_init_net).
    lab.run(
        "rs",
        &[
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.conf.all.arp_ignore=0",
            "net.ipv4.conf.all.arp_announce=0",
        ],
    )
    .unwrap();

    let before = realserver(&lab, "check");
    let said = text(&before);
    assert_eq!(
        before.status.code(),
        Some(1),
        "check on a fresh host: {said}"
    );
    for problem in [
        format!("VIP {VIP} is not on lo"),
        "arp_ignore is 0".to_string(),
        "arp_announce is 0".to_string(),
    ] {
        assert!(
            said.contains(&problem),
            "check must say {problem:?}: {said}"
        );
    }

    let setup = realserver(&lab, "setup");
    assert_eq!(setup.status.code(), Some(0), "setup: {}", text(&setup));

    // From outside haldir: the kernel's own account of lo and the sysctls.
    let lo = lab
        .run("rs", &["ip", "-o", "addr", "show", "dev", "lo"])
        .unwrap();
    assert!(
        String::from_utf8_lossy(&lo.stdout).contains(&format!("inet {VIP}/32")),
        "VIP on lo after setup: {}",
        String::from_utf8_lossy(&lo.stdout)
    );
    let after = realserver(&lab, "check");
    assert_eq!(
        after.status.code(),
        Some(0),
        "check after setup: {}",
        text(&after)
    );

    // The segment works: the real server's own address resolves and answers.
    let own = lab
        .output("client", &["ping", "-c", "1", "-W", "2", RS])
        .unwrap();
    assert!(own.status.success(), "ping {RS}: {}", text(&own));
    // The VIP does not: nobody answers ARP for it (3 requests, the kernel's ucast+mcast probes).
    let vip = lab
        .output("client", &["ping", "-c", "3", "-W", "3", VIP])
        .unwrap();
    assert!(
        !vip.status.success(),
        "the real server answered for the VIP: {}",
        text(&vip)
    );
    let neigh = lab.run("client", &["ip", "neigh", "show", VIP]).unwrap();
    let neigh = String::from_utf8_lossy(&neigh.stdout);
    assert!(
        !neigh.contains("lladdr"),
        "the client learned a MAC for the VIP: {neigh}"
    );
}
