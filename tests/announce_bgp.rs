//! Announcement by health (issue 17, active-active) end to end: an upstream router and a
//! director on a lab bridge, FRR's zebra and bgpd in each (eBGP, `timers bgp 1 3`), the
//! director's bgpd announcing `network 192.0.2.10/32` (import check on: the route exists
//! while the address does), haldir in the director with `[announce]` and a TCP_CHECK on
//! a real server's listener, and a VRRP instance beside it for a private floating address
//! (the two coexist). What the router's kernel routes to the VIP is the verdict:
//!
//! (a) once the real server is healthy, the VIP is announced: the router routes it to the
//!     director;
//! (b) the listener stops: the quorum is lost and the route is withdrawn at the router;
//!     the listener returns: the route comes back;
//! (c) SIGTERM: the route is withdrawn at the router while haldir still runs, and haldir
//!     exits only after its drain time.
//!
//! The director's bgpd also reports its BGP session to haldir over BMP (`bmp connect`,
//! `[announce] bmp_listen`): haldir's status shows the session with the router established.
//!
//! No IPVS is needed (the host kernel has none: haldir runs on without it). Needs root
//! and FRR; skipped loudly otherwise. The measured times are printed.

use std::path::Path;
use std::time::{Duration, Instant};

use haldir_lab::{frr, skip_unless_root, EchoServer, Frr, FrrConfig, Haldir, Lab, Signal};

const VIP: &str = "192.0.2.10";
const VIP_PREFIX: &str = "192.0.2.10/32";
const ROUTER: &str = "10.0.0.1";
const DIRECTOR: &str = "10.0.0.2";
const REAL_SERVER: &str = "10.0.0.3";
const PORT: u16 = 8080;
const DRAIN: Duration = Duration::from_millis(1500);
/// Where haldir collects the director's bgpd's BMP reports (`bmp connect`).
const BMP_PORT: u16 = 11019;
/// What a change may take to reach the router: the check's failure (delay_loop 0.2 s, one
/// retry after 0.1 s) or success, haldir's reaction, bgpd's import check (~125 ms
/// measured) and one BGP update; generous for a loaded 2-core machine.
const BOUND: Duration = Duration::from_secs(10);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

fn director_config() -> String {
    format!(
        r#"[[vrrp_instance]]
name = "VI_PRIVATE"
interface = "eth0"
version = 3
virtual_router_id = 51
priority = 150
advert_int = 0.1
virtual_ipaddress = ["10.0.0.200/24"]

[[virtual_server]]
ip = "{VIP}"
port = {PORT}
lb_kind = "DR"
delay_loop = 0.2
connect_timeout = 0.2
retry = 1
delay_before_retry = 0.1
warmup = 0
alpha = true
[[virtual_server.real_server]]
ip = "{REAL_SERVER}"
port = {PORT}
TCP_CHECK = {{}}

[announce]
drain = {}
track_interface = ["eth0"]
bmp_listen = "127.0.0.1:{BMP_PORT}"
"#,
        DRAIN.as_secs_f64()
    )
}

fn router_bgpd() -> String {
    format!(
        "router bgp 65001\n bgp router-id {ROUTER}\n no bgp ebgp-requires-policy\n \
         bgp bestpath as-path multipath-relax\n timers bgp 1 3\n \
         neighbor {DIRECTOR} remote-as 65002\n address-family ipv4 unicast\n  maximum-paths 8\n \
         exit-address-family\n"
    )
}

fn director_bgpd() -> String {
    format!(
        "router bgp 65002\n bgp router-id {DIRECTOR}\n no bgp ebgp-requires-policy\n \
         timers bgp 1 3\n neighbor {ROUTER} remote-as 65001\n address-family ipv4 unicast\n  \
         network {VIP_PREFIX}\n exit-address-family\n \
         bmp targets haldir\n  bmp connect 127.0.0.1 port {BMP_PORT} min-retry 100 max-retry 500\n \
         exit\n"
    )
}

/// Whether the router's kernel has a route to the VIP via the director.
fn routed_to_director(lab: &Lab) -> bool {
    lab.stdout("router", &["ip", "route", "show", VIP_PREFIX])
        .contains(&format!("via {DIRECTOR}"))
}

/// Polls the router until its route to the VIP is (`present`) or is not there; how long
/// that took, or a failure naming `what` with everything needed to see why.
fn wait_route(
    lab: &Lab,
    present: bool,
    what: &str,
    haldir: &Haldir<'_>,
    frrs: &[&Frr<'_>],
) -> Duration {
    let start = Instant::now();
    let ok = haldir_lab::poll_until(BOUND, Duration::from_millis(5), || {
        routed_to_director(lab) == present
    });
    if !ok {
        let logs: String = frrs.iter().map(|f| f.logs()).collect();
        panic!(
            "{what}: the router's route to {VIP} did not {} within {BOUND:?}\nrouter: {}\nhaldir:\n{}\n{logs}",
            if present { "appear" } else { "go" },
            lab.stdout("router", &["ip", "route"]),
            haldir.log()
        );
    }
    start.elapsed()
}

/// The announcement of the VIP in haldir's status: (announced, reason).
fn announcement(haldir: &Haldir<'_>) -> (bool, String) {
    let status = haldir_lab::schema_checked(haldir.control_status().unwrap());
    let vip = &status["announce"]["vips"][0];
    assert_eq!(vip["address"], VIP, "{status:#}");
    (
        vip["announced"].as_bool().unwrap(),
        vip["reason"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn a_vip_is_announced_by_health_and_withdrawn_before_a_stop() {
    let test = "a_vip_is_announced_by_health_and_withdrawn_before_a_stop";
    if skip_unless_root(test) {
        return;
    }
    if !frr::is_installed() {
        eprintln!(
            "\n!!!!!!!! SKIPPED {test}: FRR (zebra, bgpd, vtysh) is not installed !!!!!!!!\n"
        );
        return;
    }
    let lab = Lab::new("announce-bgp").unwrap();
    lab.add_host("router", &["10.0.0.1/24"]).unwrap();
    lab.add_host("director", &["10.0.0.2/24"]).unwrap();
    lab.add_host("rs", &["10.0.0.3/24"]).unwrap();
    let router = Frr::start(
        &lab,
        "router",
        &FrrConfig {
            bgpd: &router_bgpd(),
            bfdd: None,
        },
    )
    .unwrap();
    let director_frr = Frr::start(
        &lab,
        "director",
        &FrrConfig {
            bgpd: &director_bgpd(),
            bfdd: None,
        },
    )
    .unwrap();
    // The session first: the VIP is not on the director yet, so nothing is announced.
    let established =
        haldir_lab::poll_until(Duration::from_secs(30), Duration::from_millis(100), || {
            router
                .vtysh(&format!("show bgp neighbors {DIRECTOR} json"))
                .is_ok_and(|text| text.contains("\"bgpState\":\"Established\""))
        });
    assert!(
        established,
        "the BGP session did not come up\n{}{}",
        router.logs(),
        director_frr.logs()
    );
    assert!(!routed_to_director(&lab), "announced before haldir runs");

    // (a) The real server listens; haldir starts with it down (alpha) and announces the VIP
    // once its check passes.
    let mut listener = Some(EchoServer::start(&lab, "rs", PORT).unwrap());
    let started = Instant::now();
    let haldir = Haldir::start_with_config(&lab, "director", binary(), &director_config()).unwrap();
    wait_route(
        &lab,
        true,
        "(a) healthy",
        &haldir,
        &[&router, &director_frr],
    );
    let announced_after = started.elapsed();
    assert!(
        lab.has_address("director", VIP),
        "the VIP is not on the director's lo"
    );
    assert_eq!(
        router.active_nexthops(VIP_PREFIX).unwrap(),
        vec![DIRECTOR.to_owned()],
        "zebra's route on the router"
    );
    assert_eq!(
        announcement(&haldir),
        (true, "every virtual server has its quorum".to_owned())
    );
    // bgpd reports its session with the router to haldir over BMP: the status shows it.
    let mut bgp = serde_json::Value::Null;
    let reported = haldir_lab::poll_until(BOUND, Duration::from_millis(100), || {
        let status = haldir_lab::schema_checked(haldir.control_status().unwrap());
        bgp = status["announce"]["bgp"].clone();
        bgp["speaker_connected"] == true
            && bgp["peers"][0]["address"] == ROUTER
            && bgp["peers"][0]["established"] == true
    });
    assert!(
        reported,
        "the BGP session is not in haldir's status over BMP: {bgp:#}\n{}\n{}",
        haldir.log(),
        director_frr.logs()
    );
    assert_eq!(bgp["peers"][0]["asn"], 65001, "{bgp:#}");
    eprintln!(
        "announce_bgp: haldir's status over BMP: {}",
        bgp["peers"][0]
    );
    // The VRRP instance beside it holds its private floating address as usual.
    assert!(haldir.wait_state("MASTER", Duration::from_secs(10)));
    assert!(lab.has_address("director", "10.0.0.200"));

    // The VIP's address removed by hand is put back (the addresses are read every second).
    let removed = Instant::now();
    lab.run("director", &["ip", "addr", "del", VIP_PREFIX, "dev", "lo"])
        .unwrap();
    let put_back = haldir_lab::poll_until(BOUND, Duration::from_millis(20), || {
        lab.has_address("director", VIP)
    });
    assert!(
        put_back,
        "the VIP removed by hand was not put back:\n{}",
        haldir.log()
    );
    let put_back_after = removed.elapsed();
    wait_route(
        &lab,
        true,
        "(a) put back",
        &haldir,
        &[&router, &director_frr],
    );

    // (b) The listener stops: the check fails, the quorum (1) is lost, the route goes.
    drop(listener.take());
    let withdrawn_after = wait_route(
        &lab,
        false,
        "(b) quorum lost",
        &haldir,
        &[&router, &director_frr],
    );
    assert!(!lab.has_address("director", VIP));
    assert_eq!(
        announcement(&haldir),
        (false, format!("below quorum: TCP {VIP}:{PORT}"))
    );
    assert!(
        haldir.log().contains("VIP withdrawn"),
        "the withdrawal is logged:\n{}",
        haldir.log()
    );
    // ... and comes back with the listener.
    listener = Some(EchoServer::start(&lab, "rs", PORT).unwrap());
    let back_after = wait_route(
        &lab,
        true,
        "(b) quorum back",
        &haldir,
        &[&router, &director_frr],
    );
    eprintln!("announce_bgp: the VIP removed by hand was put back after {put_back_after:?}");
    eprintln!(
        "announce_bgp: announced {announced_after:?} after haldir's start; listener stopped → \
         route withdrawn at the router after {withdrawn_after:?}; listener back → route back \
         after {back_after:?}"
    );

    // (c) SIGTERM: withdrawn at the router while haldir still runs, then the drain.
    let term = Instant::now();
    lab.kill(haldir.pid(), Signal::SIGTERM).unwrap();
    let mut withdrawn_while_running = None;
    let gone = haldir_lab::poll_until(BOUND, Duration::from_millis(5), || {
        if routed_to_director(&lab) {
            return false;
        }
        // Read after the route: running now means running when it went.
        withdrawn_while_running = Some(lab.is_running(haldir.pid()));
        true
    });
    let route_gone_after = term.elapsed();
    assert!(
        gone,
        "(c) the route stayed after SIGTERM:\n{}",
        haldir.log()
    );
    assert_eq!(
        withdrawn_while_running,
        Some(true),
        "(c) haldir exited before the router had withdrawn the route:\n{}",
        haldir.log()
    );
    let exit = lab
        .wait_exit(haldir.pid(), DRAIN + BOUND)
        .unwrap()
        .unwrap_or_else(|| panic!("(c) haldir did not exit:\n{}", haldir.log()));
    let exited_after = term.elapsed();
    assert!(exit.success(), "(c) {exit:?}:\n{}", haldir.log());
    assert!(
        exited_after >= DRAIN,
        "(c) haldir exited {exited_after:?} after SIGTERM, before its drain of {DRAIN:?}"
    );
    let log = haldir.log();
    let withdrawn_at = log
        .find("every VIP withdrawn from BGP; draining before the stop")
        .unwrap_or_else(|| panic!("(c) the withdrawal before the drain is not logged:\n{log}"));
    let drain_over_at = log
        .find("drain over: stopping")
        .unwrap_or_else(|| panic!("(c) the drain's end is not logged:\n{log}"));
    assert!(withdrawn_at < drain_over_at);
    assert!(!lab.has_address("director", VIP));
    eprintln!(
        "announce_bgp: SIGTERM → route withdrawn at the router after {route_gone_after:?}, \
         haldir exited after {exited_after:?} (drain {DRAIN:?})"
    );
    drop(listener);
}
