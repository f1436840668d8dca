//! `lvs_sync_daemon` on the VM's real IPVS (skipped, loudly, outside the VM;
//! `tests/vm/run.sh kernel_syncd` runs it): the kernel's connection-sync daemon
//! follows the VRRP role of the instance it names.
//!
//! Two routers r1, r2 on one bridge, each in its own namespace (IPVS and its
//! sync daemons are per namespace):
//!
//! 1. a stray backup daemon (syncid 5) is started by hand in r1; haldir in r1,
//!    alone, becomes MASTER: `ipvsadm -L --daemon` shows only the master daemon
//!    with the configured interface and syncid (the stray one replaced);
//! 2. r2 starts with a higher priority and preempts: r2 runs the master daemon,
//!    r1 (now BACKUP) the backup daemon and no master;
//! 3. r2 stops gracefully: r1 is MASTER again with the master daemon, and r2's
//!    namespace has no daemon left;
//! 4. r1 stops gracefully: no daemon left in r1.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use haldir_lab::haldir::{Haldir, HaldirInstance};
use haldir_lab::{vm::in_vm_or_skip, wait_until, Lab};

const SYNC_ID: u8 = 42;

fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "kernel_syncd: {text}");
}

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

fn config(priority: u8) -> String {
    let instance = HaldirInstance::v3(
        61,
        priority,
        Duration::from_millis(100),
        &["10.30.0.100/24"],
    );
    format!(
        "[global_defs]\nlvs_sync_daemon = {{ interface = \"eth0\", instance = \"VI_1\", id = {SYNC_ID} }}\n\n{}",
        instance.render()
    )
}

/// `ipvsadm -L --daemon` in `ns`.
fn daemons(ns: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "ipvsadm", "-L", "--daemon"])
        .output()
        .expect("run ipvsadm");
    assert!(
        out.status.success(),
        "ipvsadm -L --daemon failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn has(list: &str, role: &str, sync_id: u8) -> bool {
    list.lines()
        .any(|l| l.starts_with(&format!("{role} sync daemon (mcast=eth0, syncid={sync_id}")))
}

fn has_role(list: &str, role: &str) -> bool {
    list.lines()
        .any(|l| l.starts_with(&format!("{role} sync daemon")))
}

/// Waits until `cond` holds for `ipvsadm -L --daemon` in `ns`.
fn wait_daemons(ns: &str, what: &str, cond: impl Fn(&str) -> bool, log: impl Fn() -> String) {
    let ok = wait_until(Duration::from_secs(10), || cond(&daemons(ns)));
    assert!(
        ok,
        "{what}: ipvsadm -L --daemon in {ns} shows:\n{}\nhaldir's log:\n{}",
        daemons(ns),
        log()
    );
    say(&format!(
        "{what}: {ns}: {}",
        daemons(ns).trim().replace('\n', " | ")
    ));
}

#[test]
fn the_sync_daemon_role_follows_vrrp() {
    if !in_vm_or_skip("kernel_syncd::the_sync_daemon_role_follows_vrrp") {
        return;
    }
    let lab = Lab::new("kernel-syncd").unwrap();
    lab.add_host("r1", &["10.30.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.30.0.2/24"]).unwrap();
    let (ns1, ns2) = (lab.ns_name("r1"), lab.ns_name("r2"));

    // A stray daemon, as a previous run or an operator may leave.
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns1, "ipvsadm", "--start-daemon", "backup"])
        .args(["--mcast-interface", "eth0", "--syncid", "5"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ipvsadm --start-daemon: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(has(&daemons(&ns1), "backup", 5), "{}", daemons(&ns1));

    // 1. Alone: MASTER, master daemon only, the stray one gone.
    let r1 = Haldir::start_with_config(&lab, "r1", binary(), &config(100)).unwrap();
    assert!(
        r1.wait_state("MASTER", Duration::from_secs(10)),
        "{}",
        r1.log()
    );
    wait_daemons(
        &ns1,
        "r1 MASTER alone",
        |l| has(l, "master", SYNC_ID) && !has_role(l, "backup"),
        || r1.log(),
    );

    // 2. r2 preempts: roles swap.
    let r2 = Haldir::start_with_config(&lab, "r2", binary(), &config(200)).unwrap();
    assert!(
        r2.wait_state("MASTER", Duration::from_secs(10)),
        "{}",
        r2.log()
    );
    assert!(
        r1.wait_state("BACKUP", Duration::from_secs(10)),
        "{}",
        r1.log()
    );
    wait_daemons(
        &ns2,
        "r2 MASTER",
        |l| has(l, "master", SYNC_ID) && !has_role(l, "backup"),
        || r2.log(),
    );
    wait_daemons(
        &ns1,
        "r1 BACKUP",
        |l| has(l, "backup", SYNC_ID) && !has_role(l, "master"),
        || r1.log(),
    );

    // 3. r2 stops gracefully: r1 master again, r2's daemons stopped.
    assert!(r2.stop().unwrap().success(), "{}", r2.log());
    assert!(
        r1.wait_state("MASTER", Duration::from_secs(10)),
        "{}",
        r1.log()
    );
    wait_daemons(
        &ns1,
        "r1 MASTER again",
        |l| has(l, "master", SYNC_ID) && !has_role(l, "backup"),
        || r1.log(),
    );
    wait_daemons(&ns2, "r2 stopped", |l| l.trim().is_empty(), || r2.log());

    // 4. r1 stops: nothing left.
    assert!(r1.stop().unwrap().success(), "{}", r1.log());
    wait_daemons(&ns1, "r1 stopped", |l| l.trim().is_empty(), || r1.log());
    for (name, haldir) in [("r1", &r1), ("r2", &r2)] {
        let log = haldir.log();
        assert!(
            !log.contains("ERROR"),
            "haldir in {name} logged an error:\n{log}"
        );
    }
}
