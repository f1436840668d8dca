//! The configuration-driven IPVS path end to end, on the VM's real IPVS (skipped, loudly,
//! outside the VM; `tests/vm/run.sh` runs it): the real `haldir` binary reads a TOML file of
//! `[[virtual_server]]`s (no `vrrp_instance`) and keeps the kernel table in step with it.
//!
//! In a fresh network namespace (IPVS state is per namespace) holding one service added by
//! hand that the configuration does not own:
//!
//! 1. `haldir run --config X --ipvs-resync 1` programs the table: `ipvsadm -Ln` (with
//!    `--thresholds`, `--persistent-conn` and `-Sn`, parsed by `kernel_ipvs/ipvsadm.rs`) shows
//!    exactly the configured virtual servers plus the foreign one, and the next resync rounds
//!    change nothing;
//! 2. SIGTERM exits 0 and leaves the table in place (no flush on exit: a restart must not
//!    disturb established connections);
//! 3. a restarted haldir adopts the table with zero changes (it logs "IPVS table already in
//!    step", never "IPVS table brought in step");
//! 4. hand edits with `ipvsadm` on owned services (destination deleted, added, re-weighted; a
//!    service deleted, another's scheduler changed) are repaired within two resync periods,
//!    while a service and a destination added by hand where haldir owns nothing stay.
//!
//! The expected table is written out here, from what the keywords mean (keepalived's
//! defaults included), independently of `haldir_director::ipvs_table`.

#[path = "kernel_ipvs/ipvsadm.rs"]
#[allow(dead_code)]
mod ipvsadm;

#[path = "kernel_ipvs/daemon.rs"]
#[allow(dead_code)]
mod daemon;

use std::io::Write as _;
use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use daemon::{field, Daemon};
use haldir_ipvs::model::{
    AddressFamily, DestKey, Destination, Forwarding, Persistence, Protocol, Service, ServiceFlags,
    ServiceKey, Table, Tunnel,
};
use haldir_lab::{vm::in_vm_or_skip, Lab};

/// Seconds between haldir's re-reads of the kernel table in this test.
const RESYNC_SECS: f64 = 1.0;

/// The messages of `src/daemon.rs` this test keys on.
const BROUGHT_IN_STEP: &str = "IPVS table brought in step with the configuration";
const ALREADY_IN_STEP: &str = "IPVS table already in step with the configuration";
const STILL_IN_STEP: &str = "IPVS table still in step with the configuration";

/// The service added by hand before haldir starts; the configuration does not own it.
const FOREIGN: &str = "10.99.0.1:80";

/// The schedulers the VM rig loaded (`HALDIR_VM_SCHEDULERS`), else those of Linux 6.1.
fn schedulers() -> Vec<String> {
    let loaded = std::env::var("HALDIR_VM_SCHEDULERS").unwrap_or_default();
    let list: Vec<String> = loaded.split_whitespace().map(str::to_owned).collect();
    if list.is_empty() {
        "rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh"
            .split(' ')
            .map(str::to_owned)
            .collect()
    } else {
        list
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn key(protocol: Protocol, addr: &str, port: u16) -> ServiceKey {
    ServiceKey::Address {
        protocol,
        addr: ip(addr),
        port,
    }
}

fn dest(addr: &str, port: u16) -> DestKey {
    DestKey::new(ip(addr), port)
}

fn thresholds(mut d: Destination, upper: u32, lower: u32) -> Destination {
    d.upper_threshold = upper;
    d.lower_threshold = lower;
    d
}

fn persistent(scheduler: &str, timeout_secs: u32, netmask_prefix_len: u8) -> Service {
    Service {
        persistence: Some(Persistence {
            timeout_secs,
            netmask_prefix_len,
        }),
        ..Service::new(scheduler)
    }
}

const TUN: Forwarding = Forwarding::Tunnel(Tunnel {
    encapsulation: haldir_ipvs::model::TunnelEncapsulation::Ipip,
    port: 0,
    flags: haldir_ipvs::model::TunnelFlags(0),
});

/// The configuration file and the table it means.
fn rich_config() -> (String, Table) {
    let mut toml = String::from("# kernel_daemon: virtual servers only, no vrrp_instance\n");
    let mut table = Table::new();

    // One TCP service per scheduler the kernel has, the forwarding method rotating through
    // DR / NAT / TUN, each with a real server with thresholds (default port: the service's)
    // and one on another port with weight 0.
    for (i, scheduler) in schedulers().iter().enumerate() {
        let port = 8000 + i as u16;
        let (kind, forwarding) = [
            ("DR", Forwarding::DirectRoute),
            ("NAT", Forwarding::Masquerade),
            ("TUN", TUN),
        ][i % 3];
        toml.push_str(&format!(
            r#"
[[virtual_server]]
ip = "10.20.0.1"
port = {port}
lb_algo = "{scheduler}"
lb_kind = "{kind}"
[[virtual_server.real_server]]
ip = "10.20.1.1"
weight = 3
uthreshold = 100
lthreshold = 10
[[virtual_server.real_server]]
ip = "10.20.1.2"
port = 8080
weight = 0
"#
        ));
        let k = key(Protocol::Tcp, "10.20.0.1", port);
        table.insert_service(k, Service::new(scheduler.as_str()));
        table.insert_dest(
            &k,
            dest("10.20.1.1", port),
            thresholds(Destination::new(forwarding, 3), 100, 10),
        );
        table.insert_dest(&k, dest("10.20.1.2", 8080), Destination::new(forwarding, 0));
    }

    toml.push_str(
        r#"
# Persistence with a netmask granularity; lb_algo left out: keepalived's default wlc.
[[virtual_server]]
ip = "10.20.0.2"
port = 443
lb_kind = "DR"
persistence_timeout = 300
persistence_granularity = "255.255.255.0"
[[virtual_server.real_server]]
ip = "10.20.1.3"
[[virtual_server.real_server]]
ip = "10.20.1.4"
port = 443
weight = 5

# UDP with one-packet scheduling (keepalived's lvs_sched / lvs_method spellings).
[[virtual_server]]
ip = "10.20.0.3"
port = 53
protocol = "UDP"
lvs_sched = "rr"
lvs_method = "DR"
ops = true
[[virtual_server.real_server]]
ip = "10.20.1.6"
[[virtual_server.real_server]]
ip = "10.20.1.7"
weight = 4

# SCTP with every default: wlc, NAT (keepalived's default lb_kind).
[[virtual_server]]
ip = "10.20.0.4"
port = 9
protocol = "SCTP"
[[virtual_server.real_server]]
ip = "10.20.1.8"
port = 9999

# A service without real servers (yet).
[[virtual_server]]
ip = "10.20.0.5"
port = 25
lb_algo = "lc"
lb_kind = "DR"

# An IPv4 service tunnelling to an IPv6 real server (mixed families: TUN only).
[[virtual_server]]
ip = "10.20.0.6"
port = 80
lb_algo = "wrr"
lb_kind = "TUN"
[[virtual_server.real_server]]
ip = "10.20.1.9"
weight = 2
[[virtual_server.real_server]]
ip = "2001:db8:20::6"
weight = 1

# Firewall marks: IPv4 persistent with a prefix-length granularity, IPv6 (from its real
# servers) tunnelled, persistent per /64.
[[virtual_server]]
fwmark = 5
lb_algo = "wrr"
lb_kind = "DR"
persistence_timeout = 60
persistence_granularity = "16"
[[virtual_server.real_server]]
ip = "10.20.1.11"
weight = 7

[[virtual_server]]
fwmark = 6
protocol = "UDP"
lb_algo = "sh"
lb_kind = "TUN"
ops = true
persistence_timeout = 120
persistence_granularity = "64"
[[virtual_server.real_server]]
ip = "2001:db8:20::9"
[[virtual_server.real_server]]
ip = "2001:db8:20::10"
weight = 2

# IPv6: persistence per /64, thresholds, NAT to another port.
[[virtual_server]]
ip = "2001:db8:20::1"
port = 80
lb_algo = "lc"
lb_kind = "NAT"
persistence_timeout = 600
persistence_granularity = "64"
[[virtual_server.real_server]]
ip = "2001:db8:20::2"
uthreshold = 5
lthreshold = 1
[[virtual_server.real_server]]
ip = "2001:db8:20::3"
port = 8080
weight = 2
"#,
    );
    let https = key(Protocol::Tcp, "10.20.0.2", 443);
    table.insert_service(https, persistent("wlc", 300, 24));
    table.insert_dest(
        &https,
        dest("10.20.1.3", 443),
        Destination::new(Forwarding::DirectRoute, 1),
    );
    table.insert_dest(
        &https,
        dest("10.20.1.4", 443),
        Destination::new(Forwarding::DirectRoute, 5),
    );

    let dns = key(Protocol::Udp, "10.20.0.3", 53);
    table.insert_service(
        dns,
        Service {
            flags: ServiceFlags::ONE_PACKET,
            ..Service::new("rr")
        },
    );
    table.insert_dest(
        &dns,
        dest("10.20.1.6", 53),
        Destination::new(Forwarding::DirectRoute, 1),
    );
    table.insert_dest(
        &dns,
        dest("10.20.1.7", 53),
        Destination::new(Forwarding::DirectRoute, 4),
    );

    let sctp = key(Protocol::Sctp, "10.20.0.4", 9);
    table.insert_service(sctp, Service::new("wlc"));
    table.insert_dest(
        &sctp,
        dest("10.20.1.8", 9999),
        Destination::new(Forwarding::Masquerade, 1),
    );

    table.insert_service(key(Protocol::Tcp, "10.20.0.5", 25), Service::new("lc"));

    let mixed = key(Protocol::Tcp, "10.20.0.6", 80);
    table.insert_service(mixed, Service::new("wrr"));
    table.insert_dest(&mixed, dest("10.20.1.9", 80), Destination::new(TUN, 2));
    table.insert_dest(&mixed, dest("2001:db8:20::6", 80), Destination::new(TUN, 1));

    let mark4 = ServiceKey::Fwmark {
        family: AddressFamily::Ipv4,
        mark: 5,
    };
    table.insert_service(mark4, persistent("wrr", 60, 16));
    table.insert_dest(
        &mark4,
        dest("10.20.1.11", 0),
        Destination::new(Forwarding::DirectRoute, 7),
    );

    let mark6 = ServiceKey::Fwmark {
        family: AddressFamily::Ipv6,
        mark: 6,
    };
    table.insert_service(
        mark6,
        Service {
            flags: ServiceFlags::ONE_PACKET,
            ..persistent("sh", 120, 64)
        },
    );
    table.insert_dest(&mark6, dest("2001:db8:20::9", 0), Destination::new(TUN, 1));
    table.insert_dest(&mark6, dest("2001:db8:20::10", 0), Destination::new(TUN, 2));

    let v6 = key(Protocol::Tcp, "2001:db8:20::1", 80);
    table.insert_service(v6, persistent("lc", 600, 64));
    table.insert_dest(
        &v6,
        dest("2001:db8:20::2", 80),
        thresholds(Destination::new(Forwarding::Masquerade, 1), 5, 1),
    );
    table.insert_dest(
        &v6,
        dest("2001:db8:20::3", 8080),
        Destination::new(Forwarding::Masquerade, 2),
    );
    (toml, table)
}

fn foreign_table() -> Table {
    let mut table = Table::new();
    let k = key(Protocol::Tcp, "10.99.0.1", 80);
    table.insert_service(k, Service::new("lc"));
    table.insert_dest(
        &k,
        dest("10.99.1.1", 80),
        Destination::new(Forwarding::DirectRoute, 9),
    );
    table
}

/// `a` with every service of `b` added.
fn union(a: &Table, b: &Table) -> Table {
    let mut out = a.clone();
    for (k, entry) in &b.services {
        out.services.insert(*k, entry.clone());
    }
    out
}

/// A readable diff of two tables for assertion messages.
fn table_diff(expected: &Table, actual: &Table) -> String {
    let mut out = String::new();
    let keys: std::collections::BTreeSet<_> = expected
        .services
        .keys()
        .chain(actual.services.keys())
        .collect();
    for k in keys {
        let (e, a) = (expected.services.get(k), actual.services.get(k));
        if e != a {
            out.push_str(&format!("{k}:\n  expected {e:?}\n  actual   {a:?}\n"));
        }
    }
    out
}

fn assert_tables_equal(expected: &Table, actual: &Table, what: &str) {
    assert!(
        expected == actual,
        "{what}: tables differ:\n{}",
        table_diff(expected, actual)
    );
}

/// Says `text` on stderr, uncaptured (the rig shows it for passing tests too).
fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "kernel_daemon: {text}");
}

#[test]
fn configured_virtual_servers_are_programmed_adopted_on_restart_and_repaired() {
    if !in_vm_or_skip(
        "kernel_daemon::configured_virtual_servers_are_programmed_adopted_on_restart_and_repaired",
    ) {
        return;
    }
    let lab = Lab::new("kernel-daemon").unwrap();
    lab.add_host("r1", &["10.20.0.254/24"]).unwrap();
    let ns = lab.ns_name("r1");
    ipvsadm::run(Some(&ns), &["-A", "-t", FOREIGN, "-s", "lc"]);
    ipvsadm::run(
        Some(&ns),
        &["-a", "-t", FOREIGN, "-r", "10.99.1.1:80", "-g", "-w", "9"],
    );

    let (toml, configured) = rich_config();
    let config = lab.dir().join("ipvs.toml");
    std::fs::write(&config, &toml).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_haldir"))
        .arg("check")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "haldir check refused the test's configuration:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let expected = union(&configured, &foreign_table());
    let resync = Duration::from_secs_f64(RESYNC_SECS);

    // 1. Programmed from (almost) empty, exactly; the next rounds change nothing.
    let first = Daemon::start(&lab, "r1", &config, RESYNC_SECS);
    first.wait_for(BROUGHT_IN_STEP, 1, Duration::from_secs(30));
    let programmed = &first.lines(BROUGHT_IN_STEP)[0];
    assert_eq!(
        field(programmed, "applied") as usize,
        configured.service_count() + configured.dest_count(),
        "one add per service and destination: {programmed}"
    );
    assert_eq!(field(programmed, "failed"), 0, "{programmed}");
    assert_tables_equal(
        &expected,
        &ipvsadm::read_table(Some(&ns)),
        "ipvsadm after haldir's first round",
    );
    first.wait_for(STILL_IN_STEP, 2, 5 * resync);
    assert_eq!(
        first.count(BROUGHT_IN_STEP),
        1,
        "the rounds after the first must change nothing"
    );
    say(&format!(
        "{} services, {} destinations programmed from the configuration; ipvsadm -Ln:\n{}",
        configured.service_count(),
        configured.dest_count(),
        ipvsadm::run(Some(&ns), &["-Ln"])
    ));

    // 2. SIGTERM: exit 0, the table stays.
    first.stop();
    first.assert_no_complaints();
    assert_tables_equal(
        &expected,
        &ipvsadm::read_table(Some(&ns)),
        "ipvsadm after SIGTERM (no flush on exit)",
    );

    // 3. A restarted haldir adopts the table with zero changes.
    let second = Daemon::start(&lab, "r1", &config, RESYNC_SECS);
    second.wait_for(ALREADY_IN_STEP, 1, Duration::from_secs(30));
    let adopted = &second.lines(ALREADY_IN_STEP)[0];
    assert_eq!(
        field(adopted, "services") as usize,
        configured.service_count()
    );
    assert_eq!(
        field(adopted, "destinations") as usize,
        configured.dest_count()
    );
    second.wait_for(STILL_IN_STEP, 2, 5 * resync);
    assert_eq!(
        second.count(BROUGHT_IN_STEP),
        0,
        "a restarted haldir must adopt the table with zero changes; its log:\n{}",
        lab.log_text(second.pid)
    );

    // 4. Hand edits, all at once (one `ipvsadm -R`): on owned services, five changes
    //    needing seven operations to undo; where haldir owns nothing, a new service and a
    //    new destination of the foreign one.
    //    The keeper stretches its period when a read of the kernel's table costs more than
    //    1 % of it (10 ms here: a loaded, emulated VM gets there); it has weighed its reads
    //    and said so by the round after the second one that found the table in step.
    second.wait_for(STILL_IN_STEP, 3, Duration::from_secs(30));
    let period = second.drift_period(resync);
    let edits = "\
-d -t 10.20.0.2:443 -r 10.20.1.3:443
-a -t 10.20.0.2:443 -r 10.20.1.99:443 -g -w 1
-e -t 10.20.0.1:8000 -r 10.20.1.1:8000 -g -w 9 -x 100 -y 10
-D -u 10.20.0.3:53
-E -t 10.20.0.5:25 -s rr
-A -t 10.98.0.1:25 -s rr
-a -t 10.98.0.1:25 -r 10.98.1.1:25 -g -w 2
-a -t 10.99.0.1:80 -r 10.99.1.3:80 -g -w 1
";
    let before = second.count(BROUGHT_IN_STEP);
    daemon::ipvsadm_r(&ns, edits);
    let edited = Instant::now();
    second.wait_for(BROUGHT_IN_STEP, before + 1, 4 * period);
    let mut repair_time = edited.elapsed();
    let mut applied: u64 = second.lines(BROUGHT_IN_STEP)[before..]
        .iter()
        .map(|line| field(line, "applied"))
        .sum();
    if applied < 7 {
        // A round ran in the middle of the edits: the next one finishes the repair.
        second.wait_for(BROUGHT_IN_STEP, before + 2, 4 * period);
        repair_time = edited.elapsed();
        applied = second.lines(BROUGHT_IN_STEP)[before..]
            .iter()
            .map(|line| field(line, "applied"))
            .sum();
    }
    say(&format!(
        "hand edits repaired {:.0} ms after ipvsadm -R returned (resync every {RESYNC_SECS} s, drift checks every {:.2} s), {applied} operations",
        repair_time.as_secs_f64() * 1000.0,
        period.as_secs_f64()
    ));
    assert_eq!(applied, 7, "operations to undo the hand edits");
    // Two periods: the edits can land just after a round read the table. Plus the
    // repair round's own time (a read and seven operations).
    assert!(
        repair_time <= 2 * period + Duration::from_secs(1),
        "the repair took {repair_time:?}, more than two drift-check periods of {period:?}; its log:\n{}",
        lab.log_text(second.pid)
    );
    let mut hand_made = foreign_table();
    let foreign_key = key(Protocol::Tcp, "10.99.0.1", 80);
    hand_made.insert_dest(
        &foreign_key,
        dest("10.99.1.3", 80),
        Destination::new(Forwarding::DirectRoute, 1),
    );
    let new_foreign = key(Protocol::Tcp, "10.98.0.1", 25);
    hand_made.insert_service(new_foreign, Service::new("rr"));
    hand_made.insert_dest(
        &new_foreign,
        dest("10.98.1.1", 25),
        Destination::new(Forwarding::DirectRoute, 2),
    );
    let repaired = union(&configured, &hand_made);
    assert_tables_equal(
        &repaired,
        &ipvsadm::read_table(Some(&ns)),
        "ipvsadm after the repair",
    );
    // Repaired for good: the next rounds change nothing.
    let repairs = second.count(BROUGHT_IN_STEP);
    let settled = second.count(STILL_IN_STEP);
    second.wait_for(STILL_IN_STEP, settled + 2, 5 * resync);
    assert_eq!(
        second.count(BROUGHT_IN_STEP),
        repairs,
        "the rounds after the repair must change nothing"
    );

    // 5. SIGTERM again: exit 0, the repaired table (and what is not haldir's) stays.
    second.stop();
    second.assert_no_complaints();
    assert_tables_equal(
        &repaired,
        &ipvsadm::read_table(Some(&ns)),
        "ipvsadm after the second SIGTERM",
    );
}
