//! haldir against Debian's keepalived (2.2.7): the two share one virtual router on a lab
//! bridge, each in its own network namespace, with real sockets and real kernel addresses.
//!
//! Every case runs haldir in one role and keepalived in the other (priorities 150 and 100,
//! r1 = 10.0.0.1 is the high-priority router, r2 = 10.0.0.2 the low one), then swaps:
//!
//! 1. election: the higher priority becomes master, the other backup, the VIP only on the
//!    master; the backup then stays backup for more than a Master_Down_Interval, which
//!    proves it accepts the master's adverts;
//! 2. failover after a crash (keepalived: `crash()`, haldir: kill -9): the backup takes over
//!    within a generous bound of Master_Down_Interval and the client reaches the VIP again;
//! 3. preemption: the higher-priority router, restarted, takes the VIP back;
//! 4. graceful stop of that master: it resigns with a priority-0 advert and the backup takes
//!    over about Skew_Time later, well before Master_Down_Interval.
//!
//! VRRPv2 (1 s, once with `authentication PASS`), VRRPv3 (100 ms) over multicast, and
//! unicast pairs (`unicast_src_ip` + `unicast_peer` on both sides; v2 and v3) with election
//! and failover. Everything is checked from outside: `ip addr`, keepalived's notify script,
//! haldir's status file, and a capture on the bridge whose adverts are decoded with
//! haldir's own parser (`haldir_vrrp::wire::vrrp::AdvertRepr::parse`).
//!
//! Needs root and /usr/sbin/keepalived; skipped loudly otherwise. Takeover times are printed
//! as `TAKEOVER ...` lines (run with `--nocapture` to see them).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use haldir_lab::{
    self as lab, capture, Capture, Haldir, HaldirInstance, Keepalived, KeepalivedConfig,
    KeepalivedState, Lab, ProbeConfig, ProbeReport, Prober, Responder,
};
use haldir_vrrp::wire::vrrp::{AdvertRepr, Auth, Version};

const VIP: &str = "10.0.0.100";
const VIP_CIDR: &str = "10.0.0.100/24";
const VRRP_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
const PROBE_PORT: u16 = 7777;
const VRID: u8 = 51;
const HIGH: u8 = 150;
const LOW: u8 = 100;
const AUTH_PASS: &str = "secret";
/// The two routers: lab host name and address. r1 always runs with priority HIGH.
const R1: (&str, Ipv4Addr) = ("r1", Ipv4Addr::new(10, 0, 0, 1));
const R2: (&str, Ipv4Addr) = ("r2", Ipv4Addr::new(10, 0, 0, 2));

fn skip(name: &str) -> bool {
    if !lab::is_root() {
        eprintln!("SKIPPED {name}: needs root");
        return true;
    }
    if !Path::new(lab::keepalived::KEEPALIVED).exists() {
        eprintln!(
            "\n!!!!!!!! SKIPPED {name}: {} is missing (apt-get install keepalived) !!!!!!!!\n",
            lab::keepalived::KEEPALIVED
        );
        return true;
    }
    false
}

/// Which implementation runs a router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Haldir,
    Keepalived,
}

impl Kind {
    fn other(self) -> Kind {
        match self {
            Kind::Haldir => Kind::Keepalived,
            Kind::Keepalived => Kind::Haldir,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Haldir => "haldir",
            Kind::Keepalived => "keepalived",
        }
    }
}

/// One interop scenario.
#[derive(Debug, Clone, Copy)]
struct Case {
    version: u8,
    /// `advert_int` of both routers, unless `r2_advert` is set.
    advert: Duration,
    /// v3: a different `advert_int` configured on r2, the low-priority router. As a
    /// backup it must time the master with the master's interval (RFC 5798 §6.4.2
    /// Master_Adver_Interval), not with its own.
    r2_advert: Option<Duration>,
    /// v2 `authentication PASS` on both sides.
    auth: bool,
    /// `unicast_src_ip` + `unicast_peer` on both sides instead of multicast.
    unicast: bool,
    /// What runs the high-priority router r1; the other runs r2.
    master: Kind,
    /// Also preemption and graceful stop, not only election and crash failover.
    full: bool,
}

impl Case {
    fn label(&self) -> String {
        format!(
            "v{} {:?}{}{}{}, {} master / {} backup",
            self.version,
            self.advert,
            if self.auth { " PASS" } else { "" },
            if self.unicast {
                " unicast"
            } else {
                " multicast"
            },
            self.r2_advert
                .map(|a| format!(" (r2 configured with {a:?})"))
                .unwrap_or_default(),
            self.master.name(),
            self.master.other().name(),
        )
    }

    /// RFC 5798 §6.1 Skew_Time of a backup with `priority` (v2 uses the same formula
    /// with whole seconds, RFC 3768 §6.1).
    fn skew(&self, priority: u8) -> Duration {
        self.advert * (256 - u32::from(priority)) / 256
    }

    /// Master_Down_Interval of a backup with `priority`.
    fn master_down(&self, priority: u8) -> Duration {
        self.advert * 3 + self.skew(priority)
    }

    /// The `advert_int` configured on `host`.
    fn advert_of(&self, host: &str) -> Duration {
        match self.r2_advert {
            Some(advert) if host == R2.0 => advert,
            _ => self.advert,
        }
    }

    fn kind_of(&self, host: &str) -> Kind {
        if host == R1.0 {
            self.master
        } else {
            self.master.other()
        }
    }
}

/// haldir or keepalived running one router.
enum Router<'l> {
    Haldir(Haldir<'l>),
    Keepalived(Keepalived<'l>),
}

impl<'l> Router<'l> {
    fn start(lab: &'l Lab, case: &Case, host: &str) -> Router<'l> {
        let advert = case.advert_of(host);
        let (priority, me, peer) = if host == R1.0 {
            (HIGH, R1.1, R2.1)
        } else {
            (LOW, R2.1, R1.1)
        };
        match case.kind_of(host) {
            Kind::Haldir => {
                let mut inst = if case.version == 2 {
                    HaldirInstance::v2(VRID, priority, advert, &[VIP_CIDR])
                } else {
                    HaldirInstance::v3(VRID, priority, advert, &[VIP_CIDR])
                };
                if case.unicast {
                    inst = inst.unicast(me.into(), &[peer.into()]);
                }
                if case.auth {
                    inst.extra_lines.push(format!(
                        "authentication = {{ auth_type = \"PASS\", auth_pass = \"{AUTH_PASS}\" }}"
                    ));
                }
                let binary = Path::new(env!("CARGO_BIN_EXE_haldir"));
                Router::Haldir(
                    Haldir::start(lab, host, binary, &[inst])
                        .unwrap_or_else(|e| panic!("haldir in {host}: {e:#}")),
                )
            }
            Kind::Keepalived => {
                let mut conf = if case.version == 2 {
                    KeepalivedConfig::v2(VRID, priority, advert, &[VIP_CIDR])
                } else {
                    KeepalivedConfig::v3(VRID, priority, advert, &[VIP_CIDR])
                };
                if case.unicast {
                    conf = conf.unicast(me.into(), &[peer.into()]);
                }
                if case.auth {
                    conf.extra_instance_lines.extend([
                        "authentication {".to_owned(),
                        "    auth_type PASS".to_owned(),
                        format!("    auth_pass {AUTH_PASS}"),
                        "}".to_owned(),
                    ]);
                }
                Router::Keepalived(
                    Keepalived::start(lab, host, conf)
                        .unwrap_or_else(|e| panic!("keepalived in {host}: {e:#}")),
                )
            }
        }
    }

    /// "MASTER", "BACKUP", ... from haldir's status file or keepalived's notify script.
    fn state(&self) -> Option<String> {
        match self {
            Router::Haldir(h) => h.state(),
            Router::Keepalived(k) => k.state().map(|s| s.to_string()),
        }
    }

    /// How many times it became master so far.
    fn masterships(&self) -> u64 {
        match self {
            Router::Haldir(h) => h.counter("became_master"),
            Router::Keepalived(k) => k
                .states()
                .iter()
                .filter(|s| **s == KeepalivedState::Master)
                .count() as u64,
        }
    }

    fn crash(&self) {
        match self {
            Router::Haldir(h) => h.crash().unwrap(),
            Router::Keepalived(k) => k.crash().unwrap(),
        }
    }

    fn stop(&self) {
        match self {
            Router::Haldir(h) => {
                let status = h.stop().unwrap();
                assert!(
                    status.success(),
                    "haldir exited with {status}:\n{}",
                    h.log()
                );
            }
            Router::Keepalived(k) => k.stop().unwrap(),
        }
    }

    fn log(&self) -> String {
        match self {
            Router::Haldir(h) => h.log(),
            Router::Keepalived(k) => k.log(),
        }
    }

    /// haldir: no advert from the peer was dropped, by the link (decode errors, unknown
    /// peer, ...) or by the router (auth, interval, TTL, version mismatch, ...).
    /// keepalived: its log shows no complaint about a received advert.
    fn assert_accepts_peer(&self, what: &str) {
        match self {
            Router::Haldir(h) => {
                let status = h.status().expect("haldir status");
                let mut drops = BTreeMap::new();
                for (scope, map) in [
                    ("instance", &status["instances"][0]["drops"]),
                    ("link", &status["links"][0]["drops"]),
                ] {
                    for (reason, count) in map.as_object().into_iter().flatten() {
                        if count.as_u64().unwrap_or(0) > 0 {
                            drops.insert(format!("{scope}.{reason}"), count.clone());
                        }
                    }
                }
                assert!(
                    drops.is_empty(),
                    "{what}: haldir dropped adverts: {drops:?}\nstatus: {status:#}\nlog:\n{}",
                    h.log()
                );
            }
            Router::Keepalived(k) => {
                let log = k.log();
                let complaints: Vec<&str> = log
                    .lines()
                    .filter(|l| {
                        let l = l.to_ascii_lowercase();
                        // A preempting backup discards a lower-priority master's adverts.
                        !l.contains("received lower priority")
                            && [
                                "invalid",
                                "mismatch",
                                "bad ",
                                "wrong",
                                "error",
                                "discard",
                                "ignor",
                                "authentication",
                                "checksum",
                                "ttl",
                            ]
                            .iter()
                            .any(|w| l.contains(w))
                    })
                    .collect();
                assert!(
                    complaints.is_empty(),
                    "{what}: keepalived complains about the adverts it receives:\n{}\nfull log:\n{log}",
                    complaints.join("\n")
                );
            }
        }
    }
}

/// An advert seen on the bridge, decoded with haldir's parser.
#[derive(Debug)]
struct Seen {
    at: Instant,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    advert: AdvertRepr,
}

/// Decodes every IPv4 VRRP frame of the capture so far; panics on one haldir cannot parse.
fn adverts(capture: &Capture) -> Vec<Seen> {
    capture
        .kept()
        .into_iter()
        .filter(|f| f.kind == capture::FrameKind::Vrrp4)
        .map(|f| {
            let ip = &f.bytes[14..];
            let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            let payload = capture::vrrp_payload(&f.bytes).expect("VRRP payload");
            let advert = AdvertRepr::parse(payload, src.into(), dst.into()).unwrap_or_else(|e| {
                panic!("haldir cannot parse an advert from {src} to {dst}: {e} ({payload:02x?})")
            });
            Seen {
                at: f.at,
                src,
                dst,
                ttl: ip[8],
                advert,
            }
        })
        .collect()
}

/// Both routers speak the case's version, interval, auth and addressing, and every advert
/// on the wire is one haldir accepts. `hosts` must have advertised at least once.
fn check_wire(case: &Case, seen: &[Seen], hosts: &[&str]) {
    let want_auth = if case.auth {
        let mut data = [0u8; 8];
        data[..AUTH_PASS.len()].copy_from_slice(AUTH_PASS.as_bytes());
        Auth::Simple(data)
    } else {
        Auth::None
    };
    let version = if case.version == 2 {
        Version::V2
    } else {
        Version::V3
    };
    for host in [R1, R2] {
        let from: Vec<&Seen> = seen.iter().filter(|s| s.src == host.1).collect();
        assert!(
            !from.is_empty() || !hosts.contains(&host.0),
            "{}: no advert from {} ({}) on the bridge",
            case.label(),
            host.0,
            case.kind_of(host.0).name()
        );
        let peer = if host == R1 { R2.1 } else { R1.1 };
        for s in from {
            let who = format!(
                "{}: advert from {} ({})",
                case.label(),
                host.0,
                case.kind_of(host.0).name()
            );
            assert_eq!(s.advert.version, version, "{who}: {s:?}");
            assert_eq!(s.advert.vrid, VRID, "{who}: {s:?}");
            assert_eq!(
                u128::from(s.advert.advert_interval_centis) * 10,
                case.advert_of(host.0).as_millis(),
                "{who}: {s:?}"
            );
            assert_eq!(s.advert.auth, want_auth, "{who}: {s:?}");
            assert_eq!(
                s.advert.addresses,
                [VIP.parse::<IpAddr>().unwrap()],
                "{who}: {s:?}"
            );
            assert_eq!(s.ttl, 255, "{who}: {s:?}");
            let dst = if case.unicast { peer } else { VRRP_GROUP };
            assert_eq!(s.dst, dst, "{who}: {s:?}");
        }
    }
}

/// Samples one router's addresses (getifaddrs, i.e. netlink, in its namespace) every
/// millisecond until stopped, and records when the VIP was first seen missing.
struct VipGoneWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(Option<Instant>, u64)>,
}

impl VipGoneWatch {
    fn start(lab: &Lab, host: &str) -> VipGoneWatch {
        use std::sync::atomic::Ordering;
        let vip: Ipv4Addr = VIP.parse().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = lab::spawn_in_netns(&lab.ns_name(host), &format!("vipgone-{host}"), {
            let stop = stop.clone();
            move || {
                let mut samples = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let at = Instant::now();
                    let held = nix::ifaddrs::getifaddrs().is_ok_and(|mut addrs| {
                        addrs.any(|a| {
                            a.address
                                .and_then(|s| s.as_sockaddr_in().map(|s| s.ip() == vip))
                                .unwrap_or(false)
                        })
                    });
                    samples += 1;
                    if !held {
                        return (Some(at), samples);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                (None, samples)
            }
        })
        .unwrap();
        VipGoneWatch { stop, thread }
    }

    /// Stops; when the VIP was first seen missing, and the number of samples.
    fn stop(self) -> (Option<Instant>, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

fn holders(lab: &Lab) -> Vec<&'static str> {
    [R1.0, R2.0]
        .into_iter()
        .filter(|h| lab.has_address(h, VIP))
        .collect()
}

/// Waits until `master` is MASTER and the only VIP holder, `backup` is BACKUP, and the
/// client's latest reply came from the master's host.
fn wait_for_roles(
    lab: &Lab,
    case: &Case,
    prober: &Prober,
    (master_host, master): (&str, &Router),
    backup: Option<(&str, &Router)>,
    timeout: Duration,
    step: &str,
) {
    let settled = lab::wait_until(timeout, || {
        master.state().as_deref() == Some("MASTER")
            && backup.is_none_or(|(_, b)| b.state().as_deref() == Some("BACKUP"))
            && lab.has_address(master_host, VIP)
            && backup.is_none_or(|(h, _)| !lab.has_address(h, VIP))
            && prober.last_responder().as_deref() == Some(master_host)
    });
    assert!(
        settled,
        "{} / {step}: expected {master_host} ({}) MASTER with the VIP{}; got {master_host} {:?}, \
         {} VIP on {:?}, client last answered by {:?}\n{master_host} log:\n{}\n{}",
        case.label(),
        case.kind_of(master_host).name(),
        backup
            .map(|(h, _)| format!(" and {h} BACKUP"))
            .unwrap_or_default(),
        master.state(),
        backup
            .map(|(h, b)| format!("{h} {:?},", b.state()))
            .unwrap_or_default(),
        holders(lab),
        prober.last_responder(),
        master.log(),
        backup
            .map(|(h, b)| format!("{h} log:\n{}", b.log()))
            .unwrap_or_default(),
    );
}

/// Time from the last advert of `from` to the first advert of `to` after `mark` (the kill).
/// The old master may still send one advert between `mark` and the kill taking effect, so
/// its last advert is searched before the new master's first, not before `mark`.
fn takeover_after(seen: &[Seen], from: Ipv4Addr, to: Ipv4Addr, mark: Instant) -> Duration {
    let first = seen
        .iter()
        .find(|s| s.src == to && s.at > mark)
        .expect("no advert from the new master after the mark");
    let last = seen
        .iter()
        .rfind(|s| s.src == from && s.at < first.at)
        .expect("no advert from the old master before the new master's first");
    first.at.saturating_duration_since(last.at)
}

/// Runs one case; returns nothing, prints `TAKEOVER` lines.
fn run_case(case: Case) {
    let label = case.label();
    let lab = Lab::new(&format!(
        "interop-v{}-{}{}",
        case.version,
        case.master.name(),
        if case.unicast { "-unicast" } else { "" }
    ))
    .unwrap();
    lab.add_host(R1.0, &["10.0.0.1/24"]).unwrap();
    lab.add_host(R2.0, &["10.0.0.2/24"]).unwrap();
    lab.add_host("cl", &["10.0.0.9/24"]).unwrap();
    let capture = Capture::start(&lab).unwrap();
    let [resp1, _resp2] = [R1.0, R2.0].map(|r| Responder::start(&lab, r, PROBE_PORT).unwrap());
    let prober = Prober::start_with(
        &lab,
        "cl",
        VIP.parse().unwrap(),
        PROBE_PORT,
        ProbeConfig {
            interval: Duration::from_millis(2),
            max_duration: Duration::from_secs(240),
        },
    )
    .unwrap();
    let down_r2 = case.master_down(LOW);
    // Generous: the machine is loaded and runs other labs at the same time.
    let slack = Duration::from_secs(5).max(case.advert * 4);

    // 1. Election.
    let r1 = Router::start(&lab, &case, R1.0);
    let r2 = Router::start(&lab, &case, R2.0);
    wait_for_roles(
        &lab,
        &case,
        &prober,
        (R1.0, &r1),
        Some((R2.0, &r2)),
        case.master_down(HIGH) * 2 + slack,
        "election",
    );
    // The backup keeps accepting the master's adverts: no takeover for well over a
    // Master_Down_Interval.
    let r2_masterships = r2.masterships();
    std::thread::sleep(down_r2 + case.advert * 2);
    assert_eq!(r1.state().as_deref(), Some("MASTER"), "{label}: r1 flapped");
    assert_eq!(r2.state().as_deref(), Some("BACKUP"), "{label}: r2 flapped");
    assert_eq!(holders(&lab), [R1.0], "{label}: VIP moved");
    assert_eq!(
        r2.masterships(),
        r2_masterships,
        "{label}: the backup r2 became master while r1 advertised:\n{}",
        r2.log()
    );
    if let Router::Haldir(h) = &r2 {
        assert!(
            h.counter("adverts_received") > 0,
            "{label}: {:?}",
            h.status()
        );
        let master = h.status().unwrap()["instances"][0]["master"].clone();
        assert_eq!(
            master.as_str(),
            Some("10.0.0.1"),
            "{label}: haldir's master"
        );
    }
    r1.assert_accepts_peer(&format!("{label}, election"));
    r2.assert_accepts_peer(&format!("{label}, election"));
    check_wire(&case, &adverts(&capture), &[R1.0]);

    // 2. Failover after a crash: the router dies without a word and leaves the segment
    // (its kernel keeps the stale VIP and would otherwise answer ARP for it).
    let crash = Instant::now();
    resp1.set_answering(false);
    r1.crash();
    lab.link_set(R1.0, "eth0", false).unwrap();
    wait_for_roles(
        &lab,
        &case,
        &prober,
        (R2.0, &r2),
        None,
        down_r2 + slack,
        "failover after a crash of the master",
    );
    std::thread::sleep(case.advert * 2);
    let seen = adverts(&capture);
    let crash_takeover = takeover_after(&seen, R1.1, R2.1, crash);
    eprintln!(
        "TAKEOVER crash    {label}: r1's last advert -> r2's first advert {crash_takeover:?} \
         (Master_Down_Interval {down_r2:?}; {} as backup)",
        case.kind_of(R2.0).name()
    );
    assert!(
        crash_takeover >= case.advert * 2,
        "{label}: r2 took over only {crash_takeover:?} after r1's last advert"
    );
    assert!(
        crash_takeover <= down_r2 + Duration::from_secs(1).max(case.advert * 2),
        "{label}: r2 took over {crash_takeover:?} after r1's last advert \
         (Master_Down_Interval {down_r2:?})"
    );
    r2.assert_accepts_peer(&format!("{label}, failover"));
    if !case.full {
        check_wire(&case, &seen, &[R1.0, R2.0]);
        print_outage(&label, "crash", &prober.stop(), crash);
        return;
    }

    // 3. Preemption: r1 comes back (both remove the crashed run's stale VIP at start) and
    // takes the VIP back.
    assert!(
        lab.has_address(R1.0, VIP),
        "{label}: the crashed r1 lost its VIP"
    );
    lab.link_set(R1.0, "eth0", true).unwrap();
    resp1.set_answering(true);
    // The restarted r1 starts as backup (RFC 5798 §6.4.1: priority below 255) and must
    // remove the stale VIP before it preempts and adds it again: a sampler in r1's
    // namespace, started before r1, must see the VIP gone at least once.
    let stale_watch = VipGoneWatch::start(&lab, R1.0);
    let restart = Instant::now();
    let r1 = Router::start(&lab, &case, R1.0);
    wait_for_roles(
        &lab,
        &case,
        &prober,
        (R1.0, &r1),
        Some((R2.0, &r2)),
        case.master_down(HIGH) + slack,
        "preemption by the restarted r1",
    );
    let elapsed = restart.elapsed();
    let (gone_at, samples) = stale_watch.stop();
    eprintln!(
        "TAKEOVER preempt  {label}: r1 restart -> r1 master, VIP back, client served by r1: \
         {elapsed:?}; the stale VIP was gone from r1 {:?} after the restart ({samples} samples)",
        gone_at.map(|at| at.saturating_duration_since(restart))
    );
    assert!(
        gone_at.is_some(),
        "{label}: the restarted r1 never removed the stale VIP before it became master again \
         ({samples} samples of its addresses)"
    );

    // 4. Graceful stop of the master: priority 0, then r2 takes over after Skew_Time.
    std::thread::sleep(case.advert * 2);
    r1.assert_accepts_peer(&format!("{label}, preemption"));
    r2.assert_accepts_peer(&format!("{label}, preemption"));
    let r2_zero = match &r2 {
        Router::Haldir(h) => h.counter("priority_zero_received"),
        Router::Keepalived(_) => 0,
    };
    let stop = Instant::now();
    resp1.set_answering(false);
    r1.stop();
    assert!(
        !lab.has_address(R1.0, VIP),
        "{label}: r1 kept the VIP after a graceful stop"
    );
    wait_for_roles(
        &lab,
        &case,
        &prober,
        (R2.0, &r2),
        None,
        down_r2 + slack,
        "takeover after a graceful stop of the master",
    );
    std::thread::sleep(case.advert * 2);
    let seen = adverts(&capture);
    let resign = seen
        .iter()
        .find(|s| s.src == R1.1 && s.at > stop && s.advert.priority == 0)
        .unwrap_or_else(|| panic!("{label}: r1 sent no priority-0 advert when stopped"));
    let first = seen
        .iter()
        .find(|s| s.src == R2.1 && s.at > resign.at)
        .unwrap_or_else(|| panic!("{label}: r2 sent no advert after r1 resigned"));
    let graceful = first.at.saturating_duration_since(resign.at);
    eprintln!(
        "TAKEOVER graceful {label}: r1's priority-0 advert -> r2's first advert {graceful:?} \
         (Skew_Time {:?}; {} as backup)",
        case.skew(LOW),
        case.kind_of(R2.0).name()
    );
    // Well before Master_Down_Interval: the backup acted on the resignation.
    assert!(
        graceful < down_r2,
        "{label}: r2 took over {graceful:?} after r1 resigned, not ~Skew_Time {:?}",
        case.skew(LOW)
    );
    if let Router::Haldir(h) = &r2 {
        assert!(
            h.counter("priority_zero_received") > r2_zero,
            "{label}: haldir did not count keepalived's priority-0 advert: {:?}",
            h.status()
        );
        let reason = h.status().unwrap()["instances"][0]["reason"].clone();
        assert!(
            reason.as_str().is_some_and(|r| r.contains("resigned")),
            "{label}: haldir took over for another reason: {reason}"
        );
    }
    r2.assert_accepts_peer(&format!("{label}, graceful stop"));
    check_wire(&case, &seen, &[R1.0, R2.0]);
    let report = prober.stop();
    print_outage(&label, "crash", &report, crash);
    print_outage(&label, "graceful", &report, stop);
}

/// Prints the client-visible outage around `mark`: the last reply before it to the first
/// reply from r2 (the new master) after it.
fn print_outage(label: &str, what: &str, report: &ProbeReport, mark: Instant) {
    let before = report
        .replies
        .iter()
        .rfind(|r| r.received <= mark)
        .expect("no reply before the mark");
    let after = report
        .first_reply_from_after(R2.0, mark)
        .expect("no reply from r2 after the mark");
    eprintln!(
        "OUTAGE   {what:<8} {label}: client saw no reply for {:?}",
        after.received.saturating_duration_since(before.received)
    );
}

fn v2(master: Kind) -> Case {
    Case {
        version: 2,
        advert: Duration::from_secs(1),
        r2_advert: None,
        auth: false,
        unicast: false,
        master,
        full: true,
    }
}

fn v3(master: Kind) -> Case {
    Case {
        version: 3,
        advert: Duration::from_millis(100),
        ..v2(master)
    }
}

// The two v2 multicast cases are separate tests (each takes ~20 s) so that they overlap
// with the others.
#[test]
fn v2_pass_auth_haldir_master_keepalived_backup() {
    if skip("v2_pass_auth_haldir_master_keepalived_backup") {
        return;
    }
    run_case(Case {
        auth: true,
        ..v2(Kind::Haldir)
    });
}

#[test]
fn v2_pass_auth_keepalived_master_haldir_backup() {
    if skip("v2_pass_auth_keepalived_master_haldir_backup") {
        return;
    }
    run_case(Case {
        auth: true,
        ..v2(Kind::Keepalived)
    });
}

#[test]
fn v3_both_roles() {
    if skip("v3_both_roles") {
        return;
    }
    for master in [Kind::Haldir, Kind::Keepalived] {
        run_case(v3(master));
    }
}

#[test]
fn v3_unicast_both_roles() {
    if skip("v3_unicast_both_roles") {
        return;
    }
    for master in [Kind::Haldir, Kind::Keepalived] {
        run_case(Case {
            advert: Duration::from_millis(50),
            unicast: true,
            full: false,
            ..v3(master)
        });
    }
}

#[test]
fn v2_unicast_both_roles() {
    if skip("v2_unicast_both_roles") {
        return;
    }
    for master in [Kind::Keepalived, Kind::Haldir] {
        run_case(Case {
            unicast: true,
            full: false,
            ..v2(master)
        });
    }
}

/// A v3 backup configured with a slower `advert_int` (1 s) than the master (50 ms) takes
/// over after the master's Master_Down_Interval (~180 ms), not its own (~3.6 s).
#[test]
fn v3_backup_times_the_master_with_the_masters_interval() {
    if skip("v3_backup_times_the_master_with_the_masters_interval") {
        return;
    }
    for master in [Kind::Keepalived, Kind::Haldir] {
        run_case(Case {
            advert: Duration::from_millis(50),
            r2_advert: Some(Duration::from_secs(1)),
            full: false,
            ..v3(master)
        });
    }
}
