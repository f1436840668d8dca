//! haldir's IPVS client and reconciler against the VM's real IPVS (skipped, loudly, outside
//! the VM; `tests/vm/run.sh` runs them).
//!
//! A rich table (every scheduler the kernel ships, DR / NAT / TUN with ipip, GUE and GRE,
//! fwmark services for IPv4 and IPv6, an IPv6 service, persistence with granularity,
//! one-packet scheduling, scheduler flags, thresholds) is programmed through haldir's
//! `Reconciler`, and `ipvsadm -Ln` (with `--thresholds`, `--persistent-conn` and `-Sn` for
//! tunnel details) must show exactly that table plus a service haldir does not own. Then:
//! applying again changes nothing, a restarted reconciler adopts with zero changes, hand
//! edits with `ipvsadm` are repaired on the next reconcile, and the foreign service is never
//! touched. Each test works in a namespace of its own (IPVS tables are per namespace).
//!
//! The parser's own test, on listings captured from ipvsadm 1.31, runs everywhere.

#[path = "kernel_ipvs/ipvsadm.rs"]
mod ipvsadm;

use std::future::Future;
use std::net::IpAddr;

use haldir_ipvs::model::{
    AddressFamily, DestKey, Destination, Forwarding, Persistence, Protocol, Service, ServiceFlags,
    ServiceKey, Table, Tunnel, TunnelEncapsulation, TunnelFlags,
};
use haldir_ipvs::{IpvsClient, Op, ReconcileReport, Reconciler};
use haldir_lab::{self as lab, vm::in_vm_or_skip, Lab};

/// The schedulers the VM rig loaded (`HALDIR_VM_SCHEDULERS`), else every one Linux 6.1 has.
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

fn tcp(addr: &str, port: u16) -> ServiceKey {
    ServiceKey::Address {
        protocol: Protocol::Tcp,
        addr: ip(addr),
        port,
    }
}

fn dest(addr: &str, port: u16) -> DestKey {
    DestKey::new(ip(addr), port)
}

fn with_thresholds(mut d: Destination, upper: u32, lower: u32) -> Destination {
    d.upper_threshold = upper;
    d.lower_threshold = lower;
    d
}

fn tunnel(encapsulation: TunnelEncapsulation, port: u16, flags: TunnelFlags) -> Forwarding {
    Forwarding::Tunnel(Tunnel {
        encapsulation,
        port,
        flags,
    })
}

/// The configured table: what haldir owns.
fn rich_table() -> Table {
    let mut table = Table::new();
    // One TCP service per scheduler, each with a DR, a NAT and an IPIP destination.
    for (i, scheduler) in schedulers().iter().enumerate() {
        let port = 8000 + i as u16;
        let key = tcp("10.10.0.1", port);
        table.insert_service(key, Service::new(scheduler.as_str()));
        table.insert_dest(
            &key,
            dest("10.10.1.1", port),
            with_thresholds(Destination::new(Forwarding::DirectRoute, 3), 100, 10),
        );
        table.insert_dest(
            &key,
            dest("10.10.1.2", 8080),
            Destination::new(Forwarding::Masquerade, 0),
        );
        table.insert_dest(
            &key,
            dest("10.10.1.3", port),
            Destination::new(
                tunnel(TunnelEncapsulation::Ipip, 0, TunnelFlags::default()),
                2,
            ),
        );
    }
    // Persistence with a /24 granularity.
    let https = tcp("10.10.0.2", 443);
    table.insert_service(
        https,
        Service {
            persistence: Some(Persistence {
                timeout_secs: 300,
                netmask_prefix_len: 24,
            }),
            ..Service::new("wlc")
        },
    );
    for (n, weight) in [("10.10.1.1", 1), ("10.10.1.4", 5)] {
        table.insert_dest(
            &https,
            dest(n, 443),
            Destination::new(Forwarding::DirectRoute, weight),
        );
    }
    // A port-less persistent service (keepalived's "all ports" idiom).
    let all_ports = tcp("10.10.0.3", 0);
    table.insert_service(
        all_ports,
        Service {
            persistence: Some(Persistence {
                timeout_secs: 600,
                netmask_prefix_len: 32,
            }),
            ..Service::new("rr")
        },
    );
    table.insert_dest(
        &all_ports,
        dest("10.10.1.5", 0),
        Destination::new(Forwarding::DirectRoute, 1),
    );
    // UDP, one-packet scheduling, source hashing with both scheduler flags.
    let dns = ServiceKey::Address {
        protocol: Protocol::Udp,
        addr: ip("10.10.0.1"),
        port: 53,
    };
    table.insert_service(
        dns,
        Service {
            flags: ServiceFlags::ONE_PACKET | ServiceFlags::SCHED1 | ServiceFlags::SCHED2,
            ..Service::new("sh")
        },
    );
    table.insert_dest(
        &dns,
        dest("10.10.1.6", 53),
        Destination::new(Forwarding::DirectRoute, 1),
    );
    table.insert_dest(
        &dns,
        dest("10.10.1.7", 53),
        Destination::new(Forwarding::DirectRoute, 4),
    );
    // SCTP with GUE and GRE tunnels and their checksum options.
    let sctp = ServiceKey::Address {
        protocol: Protocol::Sctp,
        addr: ip("10.10.0.4"),
        port: 9,
    };
    table.insert_service(sctp, Service::new("fo"));
    table.insert_dest(
        &sctp,
        dest("10.10.1.8", 9),
        Destination::new(
            tunnel(TunnelEncapsulation::Gue, 6080, TunnelFlags::CHECKSUM),
            1,
        ),
    );
    table.insert_dest(
        &sctp,
        dest("10.10.1.9", 9),
        Destination::new(
            tunnel(TunnelEncapsulation::Gue, 6081, TunnelFlags::REMOTE_CHECKSUM),
            1,
        ),
    );
    table.insert_dest(
        &sctp,
        dest("10.10.1.10", 9),
        Destination::new(
            tunnel(TunnelEncapsulation::Gre, 0, TunnelFlags::default()),
            1,
        ),
    );
    // Firewall marks, IPv4 (persistent) and IPv6 (maglev with the port flag).
    let mark4 = ServiceKey::Fwmark {
        family: AddressFamily::Ipv4,
        mark: 5,
    };
    table.insert_service(
        mark4,
        Service {
            persistence: Some(Persistence {
                timeout_secs: 60,
                netmask_prefix_len: 32,
            }),
            ..Service::new("wrr")
        },
    );
    table.insert_dest(
        &mark4,
        dest("10.10.1.11", 0),
        Destination::new(Forwarding::DirectRoute, 7),
    );
    let mark6 = ServiceKey::Fwmark {
        family: AddressFamily::Ipv6,
        mark: 6,
    };
    let mh = schedulers().iter().any(|s| s == "mh");
    table.insert_service(
        mark6,
        if mh {
            Service {
                flags: ServiceFlags::SCHED2,
                ..Service::new("mh")
            }
        } else {
            Service::new("wlc")
        },
    );
    table.insert_dest(
        &mark6,
        dest("2001:db8:10::9", 0),
        Destination::new(Forwarding::DirectRoute, 1),
    );
    // IPv6 address service: persistence /64, thresholds, DR and NAT.
    let v6 = tcp("2001:db8:10::1", 80);
    table.insert_service(
        v6,
        Service {
            persistence: Some(Persistence {
                timeout_secs: 100,
                netmask_prefix_len: 64,
            }),
            ..Service::new("lblc")
        },
    );
    table.insert_dest(
        &v6,
        dest("2001:db8:10::2", 80),
        with_thresholds(Destination::new(Forwarding::DirectRoute, 1), 5, 1),
    );
    table.insert_dest(
        &v6,
        dest("2001:db8:10::3", 8080),
        Destination::new(Forwarding::Masquerade, 2),
    );
    table
}

/// The service added by hand that haldir does not own.
const FOREIGN: &str = "10.99.0.1:80";

fn foreign_table() -> Table {
    let mut table = Table::new();
    let key = tcp("10.99.0.1", 80);
    table.insert_service(key, Service::new("lc"));
    table.insert_dest(
        &key,
        dest("10.99.1.1", 80),
        Destination::new(Forwarding::DirectRoute, 9),
    );
    table
}

/// `a` with every service of `b` added.
fn union(a: &Table, b: &Table) -> Table {
    let mut out = a.clone();
    for (key, entry) in &b.services {
        out.services.insert(*key, entry.clone());
    }
    out
}

/// Runs `f` on a current-thread tokio runtime inside namespace `ns`: the netlink sockets the
/// client opens (also on its blocking threads, spawned from there) belong to that namespace.
fn in_ns<T: Send>(ns: &str, f: impl Future<Output = T> + Send) -> T {
    lab::in_netns(ns, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    })
    .unwrap()
}

/// A lab with one router namespace holding the foreign service.
fn router_lab(tag: &str) -> (Lab, String) {
    let lab = Lab::new(tag).unwrap();
    lab.add_host("r1", &["10.10.0.254/24"]).unwrap();
    let ns = lab.ns_name("r1");
    ipvsadm::run(Some(&ns), &["-A", "-t", FOREIGN, "-s", "lc"]);
    ipvsadm::run(
        Some(&ns),
        &["-a", "-t", FOREIGN, "-r", "10.99.1.1:80", "-g", "-w", "9"],
    );
    (lab, ns)
}

fn assert_clean(report: &ReconcileReport, what: &str) {
    assert!(
        report.failures.is_empty(),
        "{what}: failed ops: {:#?}",
        report.failures
    );
}

fn describe(ops: &[Op]) -> Vec<String> {
    ops.iter().map(ToString::to_string).collect()
}

/// A readable diff of two tables for assertion messages.
fn table_diff(expected: &Table, actual: &Table) -> String {
    let mut out = String::new();
    let keys: std::collections::BTreeSet<_> = expected
        .services
        .keys()
        .chain(actual.services.keys())
        .collect();
    for key in keys {
        let (e, a) = (expected.services.get(key), actual.services.get(key));
        if e != a {
            out.push_str(&format!("{key}:\n  expected {e:?}\n  actual   {a:?}\n"));
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

#[test]
fn ipvsadm_parser_reads_the_captured_listings() {
    // Captured in the VM (ipvsadm 1.31, Linux 6.1) after programming the table by hand.
    let list = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.1.0.1:80 rr
  -> 10.1.0.2:80                  Route   3      0          0         
  -> 10.1.0.3:8080                Masq    0      0          0         
TCP  10.1.0.1:443 wlc persistent 300 mask 255.255.255.0
UDP  10.1.0.1:53 sh (sh-fallback,sh-port) ops
SCTP 10.1.0.1:9 fo
  -> 10.1.0.5:9                   Tunnel  1      0          0         
TCP  [2001:db8::1]:80 lblc persistent 100 mask 64
  -> [2001:db8::2]:80             Route   1      0          0         
FWM  5 wrr persistent 60
FWM  6 IPv6 mh (mh-port)
  -> [2001:db8::9]:0              Route   1      0          0         
";
    let thresholds = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  10.1.0.1:80 rr
  -> 10.1.0.2:80                  100        10         0          0         
  -> 10.1.0.3:8080                0          0          0          0         
TCP  10.1.0.1:443 wlc persistent 300 mask 255.255.255.0
UDP  10.1.0.1:53 sh (sh-fallback,sh-port) ops
SCTP 10.1.0.1:9 fo
  -> 10.1.0.5:9                   0          0          0          0         
TCP  [2001:db8::1]:80 lblc persistent 100 mask 64
  -> [2001:db8::2]:80             5          1          0          0         
FWM  5 wrr persistent 60
FWM  6 IPv6 mh (mh-port)
  -> [2001:db8::9]:0              0          0          0          0         
";
    let persistent = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  10.1.0.1:80 rr
  -> 10.1.0.2:80                  3         0           0          0         
  -> 10.1.0.3:8080                0         0           0          0         
TCP  10.1.0.1:443 wlc persistent 300 mask 255.255.255.0
UDP  10.1.0.1:53 sh (sh-fallback,sh-port) ops
SCTP 10.1.0.1:9 fo
  -> 10.1.0.5:9                   1         0           0          0         
TCP  [2001:db8::1]:80 lblc persistent 100 mask 64
  -> [2001:db8::2]:80             1         0           0          0         
FWM  5 wrr persistent 60
FWM  6 IPv6 mh (mh-port)
  -> [2001:db8::9]:0              1         0           0          0         
";
    let save = "\
-A -t 10.1.0.1:80 -s rr
-a -t 10.1.0.1:80 -r 10.1.0.2:80 -g -w 3
-a -t 10.1.0.1:80 -r 10.1.0.3:8080 -m -w 0
-A -t 10.1.0.1:443 -s wlc -p 300 -M 255.255.255.0
-A -u 10.1.0.1:53 -s sh -o -b sh-fallback,sh-port
-A --sctp-service 10.1.0.1:9 -s fo
-a --sctp-service 10.1.0.1:9 -r 10.1.0.5:9 -i -w 1 --tun-type gue --tun-port 6080 --tun-nocsum
-A -t [2001:db8::1]:80 -s lblc -p 100 -M 64
-a -t [2001:db8::1]:80 -r [2001:db8::2]:80 -g -w 1
-A -f 5 -s wrr -p 60
-A -f 6 -6 -s mh -b mh-port
-a -f 6 -6 -r [2001:db8::9]:0 -g -w 1
";
    let parsed = ipvsadm::parse(list, thresholds, persistent, save).unwrap();

    let mut expected = Table::new();
    let web = tcp("10.1.0.1", 80);
    expected.insert_service(web, Service::new("rr"));
    expected.insert_dest(
        &web,
        dest("10.1.0.2", 80),
        with_thresholds(Destination::new(Forwarding::DirectRoute, 3), 100, 10),
    );
    expected.insert_dest(
        &web,
        dest("10.1.0.3", 8080),
        Destination::new(Forwarding::Masquerade, 0),
    );
    expected.insert_service(
        tcp("10.1.0.1", 443),
        Service {
            persistence: Some(Persistence {
                timeout_secs: 300,
                netmask_prefix_len: 24,
            }),
            ..Service::new("wlc")
        },
    );
    expected.insert_service(
        ServiceKey::Address {
            protocol: Protocol::Udp,
            addr: ip("10.1.0.1"),
            port: 53,
        },
        Service {
            flags: ServiceFlags::ONE_PACKET | ServiceFlags::SCHED1 | ServiceFlags::SCHED2,
            ..Service::new("sh")
        },
    );
    let sctp = ServiceKey::Address {
        protocol: Protocol::Sctp,
        addr: ip("10.1.0.1"),
        port: 9,
    };
    expected.insert_service(sctp, Service::new("fo"));
    expected.insert_dest(
        &sctp,
        dest("10.1.0.5", 9),
        Destination::new(
            tunnel(TunnelEncapsulation::Gue, 6080, TunnelFlags::default()),
            1,
        ),
    );
    let v6 = tcp("2001:db8::1", 80);
    expected.insert_service(
        v6,
        Service {
            persistence: Some(Persistence {
                timeout_secs: 100,
                netmask_prefix_len: 64,
            }),
            ..Service::new("lblc")
        },
    );
    expected.insert_dest(
        &v6,
        dest("2001:db8::2", 80),
        with_thresholds(Destination::new(Forwarding::DirectRoute, 1), 5, 1),
    );
    expected.insert_service(
        ServiceKey::Fwmark {
            family: AddressFamily::Ipv4,
            mark: 5,
        },
        Service {
            persistence: Some(Persistence {
                timeout_secs: 60,
                netmask_prefix_len: 32,
            }),
            ..Service::new("wrr")
        },
    );
    let mark6 = ServiceKey::Fwmark {
        family: AddressFamily::Ipv6,
        mark: 6,
    };
    expected.insert_service(
        mark6,
        Service {
            flags: ServiceFlags::SCHED2,
            ..Service::new("mh")
        },
    );
    expected.insert_dest(
        &mark6,
        dest("2001:db8::9", 0),
        Destination::new(Forwarding::DirectRoute, 1),
    );
    assert_tables_equal(&expected, &parsed, "parsed listings");
}

#[test]
fn client_connects_and_reads_the_kernel_version() {
    if !in_vm_or_skip("kernel_ipvs::client_connects_and_reads_the_kernel_version") {
        return;
    }
    let (_lab, ns) = router_lab("kernel-ipvs-info");
    let (info, table) = in_ns(&ns, async {
        let client = IpvsClient::connect().await.expect("connect in the VM");
        (client.info().await.unwrap(), client.table().await.unwrap())
    });
    eprintln!("{info:?}");
    // haldir's own reader and ipvsadm agree on the hand-made foreign service.
    assert_tables_equal(
        &foreign_table(),
        &table,
        "client read of the foreign service",
    );
    assert_tables_equal(
        &foreign_table(),
        &ipvsadm::read_table(Some(&ns)),
        "ipvsadm read",
    );
}

#[test]
fn rich_table_is_programmed_exactly_and_reapplying_changes_nothing() {
    if !in_vm_or_skip(
        "kernel_ipvs::rich_table_is_programmed_exactly_and_reapplying_changes_nothing",
    ) {
        return;
    }
    let (_lab, ns) = router_lab("kernel-ipvs-rich");
    let desired = rich_table();
    let expected = union(&desired, &foreign_table());

    let (first, second, read_back) = in_ns(&ns, async {
        let client = IpvsClient::connect().await.unwrap();
        let mut reconciler = Reconciler::new(client);
        let first = reconciler.reconcile(&desired).await.unwrap();
        let second = reconciler.reconcile(&desired).await.unwrap();
        let read_back = reconciler.applier().table().await.unwrap();
        (first, second, read_back)
    });
    assert_clean(&first, "first apply");
    assert_eq!(
        first.ops.len(),
        desired.service_count() + desired.dest_count(),
        "first apply from empty: one add per service and destination: {:#?}",
        describe(&first.ops)
    );
    let shown = ipvsadm::read_table(Some(&ns));
    assert_tables_equal(&expected, &shown, "ipvsadm after the first apply");
    assert_tables_equal(
        &expected,
        &read_back,
        "haldir's own read after the first apply",
    );
    assert!(
        second.was_in_sync(),
        "applying the same table again must change nothing, it did: {:#?}",
        describe(&second.ops)
    );
    let listing = ipvsadm::run(Some(&ns), &["-Ln"]);
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "rich table: {} services, {} destinations programmed by haldir, shown by ipvsadm:\n{listing}",
        desired.service_count(),
        desired.dest_count()
    );
}

#[test]
fn restarted_reconciler_adopts_and_hand_edits_are_repaired() {
    if !in_vm_or_skip("kernel_ipvs::restarted_reconciler_adopts_and_hand_edits_are_repaired") {
        return;
    }
    let (_lab, ns) = router_lab("kernel-ipvs-drift");
    let desired = rich_table();
    let first = in_ns(&ns, async {
        let mut reconciler = Reconciler::new(IpvsClient::connect().await.unwrap());
        reconciler.reconcile(&desired).await.unwrap()
    });
    assert_clean(&first, "first apply");

    // A restarted haldir: new connection, new reconciler, same configuration.
    let adopted = in_ns(&ns, async {
        let mut reconciler = Reconciler::new(IpvsClient::connect().await.unwrap());
        reconciler.reconcile(&desired).await.unwrap()
    });
    assert!(
        adopted.was_in_sync(),
        "a restarted reconciler must adopt the table with zero changes, it did: {:#?}",
        describe(&adopted.ops)
    );

    // Hand edits, each on what haldir owns, plus one on the foreign service.
    let web = "10.10.0.1:8000";
    let hand_edits: [&[&str]; 7] = [
        // a destination deleted, one added, one re-weighted
        &["-d", "-t", web, "-r", "10.10.1.2:8080"],
        &["-a", "-t", web, "-r", "10.10.1.77:8000", "-g", "-w", "1"],
        &[
            "-e",
            "-t",
            web,
            "-r",
            "10.10.1.1:8000",
            "-g",
            "-w",
            "50",
            "-x",
            "100",
            "-y",
            "10",
        ],
        // a whole service deleted, another's scheduler changed
        &["-D", "-t", "10.10.0.2:443"],
        &["-E", "-u", "10.10.0.1:53", "-s", "rr"],
        // a service added by hand: not haldir's, so it must stay
        &["-A", "-t", "10.98.0.1:25", "-s", "rr"],
        // the foreign service's destination re-weighted: not haldir's either
        &["-e", "-t", FOREIGN, "-r", "10.99.1.1:80", "-g", "-w", "4"],
    ];
    for edit in hand_edits {
        ipvsadm::run(Some(&ns), edit);
    }
    let mut hand_made = foreign_table();
    let foreign_key = tcp("10.99.0.1", 80);
    hand_made
        .services
        .get_mut(&foreign_key)
        .unwrap()
        .1
        .get_mut(&dest("10.99.1.1", 80))
        .unwrap()
        .weight = 4;
    hand_made.insert_service(tcp("10.98.0.1", 25), Service::new("rr"));
    let expected_after = union(&desired, &hand_made);
    assert_ne!(
        ipvsadm::read_table(Some(&ns)),
        expected_after,
        "the hand edits did nothing"
    );

    let (repair, again) = in_ns(&ns, async {
        let mut reconciler = Reconciler::new(IpvsClient::connect().await.unwrap());
        let repair = reconciler.reconcile(&desired).await.unwrap();
        let again = reconciler.reconcile(&desired).await.unwrap();
        (repair, again)
    });
    assert_clean(&repair, "repair");
    let repaired = describe(&repair.ops);
    assert_tables_equal(
        &expected_after,
        &ipvsadm::read_table(Some(&ns)),
        "after the repair",
    );
    // Exactly the drift was repaired: 1 dest back, 1 dest removed, 1 dest set, 1 service
    // with its 2 dests back, 1 service set.
    assert_eq!(repair.ops.len(), 1 + 1 + 1 + 3 + 1, "{repaired:#?}");
    assert!(
        repair
            .ops
            .iter()
            .all(|op| op.service_key() != &foreign_key && op.service_key() != &tcp("10.98.0.1", 25)),
        "the repair touched a service haldir does not own: {repaired:#?}"
    );
    assert!(again.was_in_sync(), "{:#?}", describe(&again.ops));

    // A service removed from the configuration is deleted (it was haldir's); the foreign
    // and hand-added ones stay.
    let mut smaller = desired.clone();
    smaller.services.remove(&tcp("10.10.0.3", 0));
    let shrink = in_ns(&ns, async {
        let mut reconciler = Reconciler::new(IpvsClient::connect().await.unwrap());
        reconciler.reconcile(&desired).await.unwrap();
        reconciler.reconcile(&smaller).await.unwrap()
    });
    assert_clean(&shrink, "shrink");
    assert_eq!(shrink.ops.len(), 2, "{:#?}", describe(&shrink.ops));
    assert_tables_equal(
        &union(&smaller, &hand_made),
        &ipvsadm::read_table(Some(&ns)),
        "after removing a service from the configuration",
    );
}
