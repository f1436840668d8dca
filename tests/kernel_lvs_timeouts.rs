//! keepalived's `lvs_timeouts` (global_defs) on the VM's real IPVS (skipped, loudly,
//! outside the VM; `tests/vm/run.sh lvs_timeouts` runs it): haldir started on a
//! keepalived.conf with `lvs_timeouts tcp 7200 tcpfin 120 udp 300` sets the timeouts of its
//! network namespace's IPVS, as `ipvsadm -L --timeout` shows them; a reload to
//! `lvs_timeouts tcp 900` changes the TCP one and leaves the other two as they were.

use std::path::Path;
use std::time::Duration;

use haldir_lab::vm::in_vm_or_skip;
use haldir_lab::{wait_until, Haldir, Lab};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

fn config(timeouts: &str) -> String {
    format!(
        "global_defs {{
    lvs_timeouts {timeouts}
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 100
    virtual_ipaddress {{
        10.0.0.100/24
    }}
}}
"
    )
}

/// `ipvsadm -L --timeout` in r1: "Timeout (tcp tcpfin udp): T F U".
fn timeouts(lab: &Lab) -> String {
    lab.stdout("r1", &["ipvsadm", "-L", "--timeout"])
        .trim()
        .to_owned()
}

#[test]
fn lvs_timeouts_are_set_at_start_and_changed_by_a_reload() {
    if !in_vm_or_skip("kernel_lvs_timeouts::lvs_timeouts_are_set_at_start_and_changed_by_a_reload")
    {
        return;
    }
    let lab = Lab::new("lvs-timeouts").unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    let before = timeouts(&lab);
    eprintln!("kernel_lvs_timeouts: before: {before}");
    let r1 =
        Haldir::start_with_config(&lab, "r1", binary(), &config("tcp 7200 tcpfin 120 udp 300"))
            .unwrap();
    let wanted = "Timeout (tcp tcpfin udp): 7200 120 300";
    assert!(
        wait_until(Duration::from_secs(30), || timeouts(&lab) == wanted),
        "after start: {:?}, wanted {wanted:?}\n{}",
        timeouts(&lab),
        r1.log()
    );
    assert!(r1.reload(&config("tcp 900")).unwrap(), "{}", r1.log());
    let wanted = "Timeout (tcp tcpfin udp): 900 120 300";
    assert!(
        wait_until(Duration::from_secs(30), || timeouts(&lab) == wanted),
        "after the reload: {:?}, wanted {wanted:?}\n{}",
        timeouts(&lab),
        r1.log()
    );
    r1.stop().unwrap();
}
