//! Forwarding benchmark (issue 17): the aggregate forwarding rate of an active-active
//! director tier with one director and with three, in one run, and the ratio 3 / 1.
//!
//! ```text
//!   client ──► router ══ECMP══► d1 ─┐
//!   (8 source   (L4 hash,   ══► d2 ─┼──► real server (VIP on lo)
//!    addresses,  one next   ══► d3 ─┘         │
//!    48 flows)   hop per                      │ replies (DR): straight to the router,
//!     ▲          director)                    │ never through a director
//!     └──────────────── router ◄──────────────┘
//! ```
//!
//! Host network namespaces on one lab bridge ([`Lab`], veths). The client streams bulk TCP
//! data to `VIP:port` over `--flows` connections (48) from 8 source addresses and as many
//! source ports; the router holds the VIP's route with one next hop per active director
//! and hashes flows on their L4 header (`fib_multipath_hash_policy=1`); each director
//! routes the VIP to the real server, which holds the VIP on `lo` (`arp_ignore=1`,
//! `arp_announce=2`) and sends its ACKs straight back through the router, as in LVS-DR.
//! The route is the router's kernel multipath route installed by FRR's bgpd (eBGP, one
//! session per director, `maximum-paths 8`, `bgp bestpath as-path multipath-relax`; each
//! director announces `network VIP/32`, valid while its main table's route to the VIP
//! exists, so deleting that route withdraws it, as haldir's address on `lo` does; it
//! forwards by a table of its own (`ip rule iif eth0`), so a withdrawn director keeps
//! forwarding what still reaches it and a switch loses no packets); without
//! FRR, or with `--static-route`, the same route written by `ip route replace VIP nexthop
//! via ... nexthop via ...`.
//!
//! The host kernel has no IPVS, so a director forwards by plain IP routing: the kernel
//! path that IPVS DR forwarding shares from the ingress up to the neighbour output (IPVS
//! adds its connection lookup/scheduling at LOCAL_IN and hands the packet to the same
//! output path). The figures are the rate of that shared path, not of IPVS.
//!
//! The flows run for the whole benchmark; only the router's route (1 or 3 next hops) and
//! the directors' qdiscs change between trials. Per trial: change, wait until the router's
//! kernel route has the wanted number of next hops, let TCP settle (`--settle`, 1.5 s),
//! then count the bytes the real server received over `--secs` (5 s) and each director's
//! `eth0` tx bytes / packets (its forwarded traffic: it forwards out of the interface it
//! receives on). Two configurations, trials interleaved (uncapped 1, uncapped 3, capped 1,
//! capped 3, repeated `--trials` times, 5), so that load drifting on the machine hits all
//! alike:
//!
//! - **uncapped**: every namespace shares the host's CPUs, so the aggregate is bounded by
//!   the CPU time of the whole path (sender, router, director, bridge, receiver), not by
//!   any director: adding directors adds no CPU, and the ratio is near 1 by construction;
//! - **capped**: each director's egress toward the real server is limited by a `tbf` qdisc
//!   to `--cap-mbit` (300 Mbit/s), well below what the host forwards uncapped: directors
//!   whose own capacity is the bottleneck. The ratio shows what ECMP spreading gives.
//!
//! Printed on stdout: per configuration and director count the median goodput (received
//! payload) over the trials, min–max, how many flows the router hashes to each director
//! (asked with `ip route get` per flow, which the kernel hashes like a forwarded packet),
//! each director's share of the forwarded bytes and packets (summed over the trials), and
//! the ratio of the medians 3 / 1. The packets are
//! the kernel's (GSO) packets as the veth counts them, not wire-size frames.
//!
//! ```text
//! cargo bench --bench forwarding                          # 5 trials × 5 s per row
//! cargo bench --bench forwarding -- --trials 3 --secs 2   # quicker
//! cargo bench --bench forwarding -- --static-route --cap-mbit 200 --flows 64
//! ```
//! Needs root (skips loudly otherwise). Ctrl-C stops after the current trial and prints
//! what was measured; the lab (namespaces, FRR, the flows' threads) is torn down on every
//! way out.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use haldir_lab::{frr, in_netns, poll_until, Frr, FrrConfig, Lab};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use socket2::{Domain, Socket, Type};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const VIP_PREFIX: &str = "192.0.2.10/32";
const PORT: u16 = 9000;
/// The router: toward the directors and the real server, and toward the client.
const ROUTER_INSIDE: &str = "10.0.0.1";
const ROUTER_OUTSIDE: &str = "10.0.1.1";
const REAL_SERVER: &str = "10.0.0.20";
const ROUTER_AS: u32 = 65001;
/// The most directors the bench builds (`d1`..`d3`).
const DIRECTORS: usize = 3;
/// Source addresses of the client (10.0.1.10 ..).
const CLIENT_ADDRESSES: u8 = 8;
/// What one write of a flow hands the kernel.
const WRITE_SIZE: usize = 128 * 1024;
/// How long a flow's blocking write or read waits before looking at the stop flag.
const IO_POLL: Duration = Duration::from_millis(300);
/// The directors' routing table for forwarded packets (`ip rule iif eth0`).
const FORWARDING_TABLE: &str = "100";
const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(30);

fn director_address(index: usize) -> String {
    format!("10.0.0.{}", 11 + index)
}

fn director_name(index: usize) -> String {
    format!("d{}", index + 1)
}

fn client_address(index: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 1, 10 + index)
}

/// Set by SIGINT: finish the current trial, tear down, print what we have.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// One SIGINT sets the flag; the handler resets itself, so a second one kills as usual.
fn install_sigint_handler() {
    let action = SigAction::new(
        SigHandler::Handler(on_sigint),
        SaFlags::SA_RESETHAND,
        SigSet::empty(),
    );
    // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
    if let Err(e) = unsafe { sigaction(Signal::SIGINT, &action) } {
        eprintln!("forwarding: cannot install the SIGINT handler ({e}); Ctrl-C aborts");
    }
}

// ---------------------------------------------------------------------------------------
// Options

struct Options {
    trials: usize,
    measure: Duration,
    settle: Duration,
    flows: usize,
    cap_mbit: u32,
    static_route: bool,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        trials: 5,
        measure: Duration::from_secs(5),
        settle: Duration::from_millis(1500),
        flows: 48,
        cap_mbit: 300,
        static_route: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--trials" => {
                options.trials = value.parse().context("--trials N")?;
                i += 1;
            }
            "--secs" => {
                options.measure = Duration::from_secs_f64(value.parse().context("--secs S")?);
                i += 1;
            }
            "--settle" => {
                options.settle = Duration::from_secs_f64(value.parse().context("--settle S")?);
                i += 1;
            }
            "--flows" => {
                options.flows = value.parse().context("--flows N")?;
                i += 1;
            }
            "--cap-mbit" => {
                options.cap_mbit = value.parse().context("--cap-mbit MBIT")?;
                i += 1;
            }
            "--static-route" => options.static_route = true,
            "--help" | "-h" => {
                println!(
                    "cargo bench --bench forwarding -- [--trials N (5)] [--secs S (5)] \
                     [--settle S (1.5)] [--flows N (48)] [--cap-mbit MBIT (300)] [--static-route]"
                );
                std::process::exit(0);
            }
            _ => {} // cargo's --bench, a bench name
        }
        i += 1;
    }
    if options.trials == 0 || options.flows == 0 || options.cap_mbit == 0 {
        bail!("--trials, --flows and --cap-mbit must be positive");
    }
    Ok(options)
}

// ---------------------------------------------------------------------------------------
// Bulk TCP: a sink on the real server, streaming sources on the client

/// `--flows` TCP connections from the client to `VIP:PORT`, each writing as fast as the
/// path takes it, and the sink on the real server counting what arrives. Stops on drop.
struct BulkFlows {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
    broken: Arc<AtomicU64>,
    /// The client end of every flow, for asking the router where it sends each.
    client_ends: Vec<SocketAddrV4>,
    threads: Vec<JoinHandle<()>>,
}

impl BulkFlows {
    fn start(lab: &Lab, client: &str, sink: &str, flows: usize) -> anyhow::Result<BulkFlows> {
        let mut bulk = BulkFlows {
            stop: Arc::new(AtomicBool::new(false)),
            received: Arc::new(AtomicU64::new(0)),
            accepted: Arc::new(AtomicU64::new(0)),
            broken: Arc::new(AtomicU64::new(0)),
            client_ends: Vec::new(),
            threads: Vec::new(),
        };
        // Sockets belong to the namespace they were created in, whichever thread uses them.
        let listener = in_netns(&lab.ns_name(sink), || {
            TcpListener::bind((Ipv4Addr::UNSPECIFIED, PORT))
        })?
        .with_context(|| format!("bind 0.0.0.0:{PORT} in {sink}"))?;
        listener.set_nonblocking(true)?;
        let (stop, received, accepted) = (
            bulk.stop.clone(),
            bulk.received.clone(),
            bulk.accepted.clone(),
        );
        bulk.threads.push(
            std::thread::Builder::new()
                .name("sink-accept".into())
                .spawn(move || accept_and_count(listener, stop, received, accepted))?,
        );
        let streams = in_netns(
            &lab.ns_name(client),
            || -> anyhow::Result<Vec<TcpStream>> {
                (0..flows)
                    .map(|flow| {
                        let source = client_address((flow % usize::from(CLIENT_ADDRESSES)) as u8);
                        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
                        socket.bind(&SocketAddr::from((source, 0)).into())?;
                        let target = SocketAddr::V4(SocketAddrV4::new(VIP, PORT));
                        socket
                            .connect_timeout(&target.into(), Duration::from_secs(10))
                            .with_context(|| format!("flow {flow}: connect {source} → {target}"))?;
                        Ok(TcpStream::from(socket))
                    })
                    .collect()
            },
        )??;
        for (flow, mut stream) in streams.into_iter().enumerate() {
            stream.set_write_timeout(Some(IO_POLL))?;
            match stream.local_addr()? {
                SocketAddr::V4(end) => bulk.client_ends.push(end),
                SocketAddr::V6(end) => bail!("flow {flow} has an IPv6 end {end}"),
            }
            let (stop, broken) = (bulk.stop.clone(), bulk.broken.clone());
            bulk.threads.push(
                std::thread::Builder::new()
                    .name(format!("source-{flow}"))
                    .spawn(move || {
                        let payload = vec![0x5a_u8; WRITE_SIZE];
                        while !stop.load(Ordering::Relaxed) {
                            match stream.write(&payload) {
                                Ok(_) => {}
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        ErrorKind::WouldBlock
                                            | ErrorKind::TimedOut
                                            | ErrorKind::Interrupted
                                    ) => {}
                                // At the end the sink may close first: not a failure.
                                Err(_) if stop.load(Ordering::Relaxed) => return,
                                Err(e) => {
                                    eprintln!("forwarding: flow {flow} broke: {e}");
                                    broken.fetch_add(1, Ordering::Relaxed);
                                    return;
                                }
                            }
                        }
                    })?,
            );
        }
        let all_accepted = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
            bulk.accepted() == flows as u64
        });
        if !all_accepted {
            bail!(
                "the sink accepted {} of {flows} flows",
                bulk.accepted.load(Ordering::Relaxed)
            );
        }
        Ok(bulk)
    }

    /// Payload bytes the sink has read so far, over every flow.
    fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Flows whose writer failed (reset, timeout of the connection): should stay 0.
    fn broken(&self) -> u64 {
        self.broken.load(Ordering::Relaxed)
    }
}

impl Drop for BulkFlows {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The sink: accepts until stopped; a reader thread per connection adds what it reads to
/// `received`. Returns after every reader has ended.
fn accept_and_count(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
) {
    let mut readers = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                accepted.fetch_add(1, Ordering::Relaxed);
                let (stop, received) = (stop.clone(), received.clone());
                let reader = std::thread::Builder::new()
                    .name("sink-read".into())
                    .spawn(move || read_and_count(stream, &stop, &received));
                match reader {
                    Ok(reader) => readers.push(reader),
                    Err(e) => eprintln!("forwarding: no reader thread: {e}"),
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                eprintln!("forwarding: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
}

fn read_and_count(mut stream: TcpStream, stop: &AtomicBool, received: &AtomicU64) {
    if stream.set_nonblocking(false).is_err() || stream.set_read_timeout(Some(IO_POLL)).is_err() {
        return;
    }
    let mut buffer = vec![0_u8; 256 * 1024];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => {
                received.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The topology and how the router's route is changed

/// How the router's multipath route to the VIP is made.
enum Routing<'l> {
    /// bgpd on the router and on every director; a director announces while its own
    /// kernel route to the VIP exists.
    Bgp {
        router: Frr<'l>,
        _directors: Vec<Frr<'l>>,
    },
    /// `ip route replace` on the router.
    Static,
}

impl Routing<'_> {
    fn describe(&self) -> &'static str {
        match self {
            Routing::Bgp { .. } => {
                "FRR bgpd, eBGP per director, maximum-paths 8, as-path multipath-relax \
                 (the kernel multipath route zebra installs)"
            }
            Routing::Static => "static kernel multipath route (ip route replace VIP nexthop ...)",
        }
    }
}

fn router_bgpd() -> String {
    let mut conf = format!(
        "router bgp {ROUTER_AS}\n bgp router-id {ROUTER_INSIDE}\n no bgp ebgp-requires-policy\n \
         bgp bestpath as-path multipath-relax\n timers bgp 1 3\n"
    );
    for index in 0..DIRECTORS {
        conf.push_str(&format!(
            " neighbor {} remote-as {}\n",
            director_address(index),
            ROUTER_AS + 10 + index as u32
        ));
    }
    conf.push_str(" address-family ipv4 unicast\n  maximum-paths 8\n");
    // The router keeps what it learns to itself: a director that withdrew must not learn
    // the VIP back from the router through another director.
    for index in 0..DIRECTORS {
        conf.push_str(&format!(
            "  neighbor {} route-map NOTHING out\n",
            director_address(index)
        ));
    }
    conf.push_str(" exit-address-family\nroute-map NOTHING deny 10\n");
    conf
}

fn director_bgpd(index: usize) -> String {
    format!(
        "router bgp {}\n bgp router-id {}\n no bgp ebgp-requires-policy\n timers bgp 1 3\n \
         neighbor {ROUTER_INSIDE} remote-as {ROUTER_AS}\n address-family ipv4 unicast\n  \
         network {VIP_PREFIX}\n exit-address-family\n",
        ROUTER_AS + 10 + index as u32,
        director_address(index)
    )
}

/// Sets sysctls in a lab host (`key=value`, as `sysctl -w` takes them).
fn sysctls(lab: &Lab, host: &str, settings: &[&str]) -> anyhow::Result<()> {
    let mut args = vec!["sysctl", "-qw"];
    args.extend_from_slice(settings);
    lab.run(host, &args)?;
    Ok(())
}

/// Builds the hosts on the lab's bridge: `client`, `router`, `d1`..`d3`, `rs`.
fn build_topology(lab: &Lab) -> anyhow::Result<()> {
    let client_addresses: Vec<String> = (0..CLIENT_ADDRESSES)
        .map(|i| format!("{}/24", client_address(i)))
        .collect();
    let client_refs: Vec<&str> = client_addresses.iter().map(String::as_str).collect();
    lab.add_host("client", &client_refs)?;
    lab.add_host(
        "router",
        &[
            &format!("{ROUTER_INSIDE}/24"),
            &format!("{ROUTER_OUTSIDE}/24"),
        ],
    )?;
    for index in 0..DIRECTORS {
        lab.add_host(
            &director_name(index),
            &[&format!("{}/24", director_address(index))],
        )?;
    }
    lab.add_host("rs", &[&format!("{REAL_SERVER}/24")])?;

    // Everyone routes through one bridge, in and out of the same eth0: no redirects.
    let no_redirects = [
        "net.ipv4.conf.all.send_redirects=0",
        "net.ipv4.conf.eth0.send_redirects=0",
        "net.ipv4.conf.all.accept_redirects=0",
        "net.ipv4.conf.eth0.accept_redirects=0",
    ];
    for host in lab.hosts() {
        sysctls(lab, &host, &no_redirects)?;
    }
    lab.run(
        "client",
        &["ip", "route", "add", "192.0.2.0/24", "via", ROUTER_OUTSIDE],
    )?;
    sysctls(
        lab,
        "router",
        &[
            "net.ipv4.ip_forward=1",
            "net.ipv4.fib_multipath_hash_policy=1",
        ],
    )?;
    for index in 0..DIRECTORS {
        let director = director_name(index);
        sysctls(lab, &director, &["net.ipv4.ip_forward=1"])?;
        lab.run(
            &director,
            &["ip", "route", "add", "default", "via", ROUTER_INSIDE],
        )?;
        // Forwarding looks up a table of its own, so that a director keeps forwarding what
        // still reaches it after its withdrawal (the main table's route to the VIP is
        // only bgpd's announcement trigger): the rows measure the rate, not the losses of
        // a withdrawal (issue 17's VM test measures those, with IPVS).
        lab.run(
            &director,
            &[
                "ip",
                "route",
                "add",
                VIP_PREFIX,
                "via",
                REAL_SERVER,
                "table",
                FORWARDING_TABLE,
            ],
        )?;
        lab.run(
            &director,
            &[
                "ip",
                "rule",
                "add",
                "iif",
                "eth0",
                "lookup",
                FORWARDING_TABLE,
                "pref",
                "100",
            ],
        )?;
    }
    // The real server: the VIP on lo, silent about it in ARP; replies via the router.
    sysctls(
        lab,
        "rs",
        &[
            "net.ipv4.conf.all.arp_ignore=1",
            "net.ipv4.conf.eth0.arp_ignore=1",
            "net.ipv4.conf.all.arp_announce=2",
            "net.ipv4.conf.eth0.arp_announce=2",
        ],
    )?;
    lab.run(
        "rs",
        &["ip", "addr", "add", &format!("{VIP}/32"), "dev", "lo"],
    )?;
    lab.run(
        "rs",
        &["ip", "route", "add", "default", "via", ROUTER_INSIDE],
    )?;
    Ok(())
}

/// Starts FRR on the router and every director and waits for the three sessions.
fn start_bgp(lab: &Lab) -> anyhow::Result<Routing<'_>> {
    let router = Frr::start(
        lab,
        "router",
        &FrrConfig {
            bgpd: &router_bgpd(),
            bfdd: None,
        },
    )?;
    let directors = (0..DIRECTORS)
        .map(|index| {
            Frr::start(
                lab,
                &director_name(index),
                &FrrConfig {
                    bgpd: &director_bgpd(index),
                    bfdd: None,
                },
            )
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let established = poll_until(CONVERGENCE_TIMEOUT, Duration::from_millis(200), || {
        (0..DIRECTORS).all(|index| {
            router
                .vtysh(&format!(
                    "show bgp neighbors {} json",
                    director_address(index)
                ))
                .is_ok_and(|text| text.contains("\"bgpState\":\"Established\""))
        })
    });
    if !established {
        let logs: String = std::iter::once(&router)
            .chain(&directors)
            .map(Frr::logs)
            .collect();
        bail!("the BGP sessions did not come up:\n{logs}");
    }
    Ok(Routing::Bgp {
        router,
        _directors: directors,
    })
}

/// Next hops of the router's kernel route to the VIP (0 when there is none).
fn router_nexthops(lab: &Lab) -> usize {
    lab.stdout("router", &["ip", "route", "show", VIP_PREFIX])
        .matches(" via ")
        .count()
}

/// Makes the first `active` directors the router's next hops for the VIP and waits until
/// the router's kernel route has exactly those.
fn set_active_directors(lab: &Lab, routing: &Routing<'_>, active: usize) -> anyhow::Result<()> {
    match routing {
        Routing::Static => {
            let mut args = vec![
                "ip".to_owned(),
                "route".into(),
                "replace".into(),
                VIP_PREFIX.into(),
            ];
            for index in 0..active {
                args.extend(["nexthop".into(), "via".into(), director_address(index)]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            lab.run("router", &args)?;
        }
        Routing::Bgp { .. } => {
            // A director announces while its main table's route to the VIP exists (import
            // check); it forwards by its own table either way.
            for index in 0..DIRECTORS {
                let verb = if index < active { "replace" } else { "del" };
                let director = director_name(index);
                let output = lab.output(
                    &director,
                    &["ip", "route", verb, VIP_PREFIX, "via", REAL_SERVER],
                )?;
                if verb == "replace" && !output.status.success() {
                    bail!(
                        "ip route replace in {director}: {}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                }
            }
        }
    }
    let converged = poll_until(CONVERGENCE_TIMEOUT, Duration::from_millis(20), || {
        router_nexthops(lab) == active
    });
    if !converged {
        let logs = match routing {
            Routing::Bgp { router, .. } => router.logs(),
            Routing::Static => String::new(),
        };
        bail!(
            "the router's route to {VIP} did not reach {active} next hops: {}\n{logs}",
            lab.stdout("router", &["ip", "route", "show", VIP_PREFIX])
        );
    }
    Ok(())
}

/// Limits every director's egress (toward the real server) to `cap_mbit`, or lifts it.
fn set_director_caps(lab: &Lab, cap_mbit: Option<u32>) -> anyhow::Result<()> {
    for index in 0..DIRECTORS {
        let director = director_name(index);
        match cap_mbit {
            Some(mbit) => {
                let rate = format!("{mbit}mbit");
                lab.run(
                    &director,
                    &[
                        "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", &rate,
                        "burst", "256kb", "latency", "50ms",
                    ],
                )?;
            }
            None => {
                // Fails when there is no root qdisc to delete: nothing to lift.
                lab.output(&director, &["tc", "qdisc", "del", "dev", "eth0", "root"])?;
            }
        }
    }
    Ok(())
}

/// How many of the flows the router's ECMP hash sends to each director now: `ip route
/// get` with each flow's addresses and ports, as a forwarded packet (`iif eth0`), which the
/// kernel hashes like the real packets (`fib_multipath_hash_policy=1`).
fn flows_per_director(lab: &Lab, client_ends: &[SocketAddrV4]) -> anyhow::Result<Vec<usize>> {
    let mut counts = vec![0; DIRECTORS];
    for end in client_ends {
        let (source, port) = (end.ip().to_string(), end.port().to_string());
        let route = lab.stdout(
            "router",
            &[
                "ip",
                "route",
                "get",
                VIP_PREFIX,
                "from",
                &source,
                "iif",
                "eth0",
                "ipproto",
                "tcp",
                "sport",
                &port,
                "dport",
                &PORT.to_string(),
            ],
        );
        let director = (0..DIRECTORS)
            .find(|&index| route.contains(&format!("via {} ", director_address(index))))
            .with_context(|| format!("the router routes flow {end} to no director: {route}"))?;
        counts[director] += 1;
    }
    Ok(counts)
}

// ---------------------------------------------------------------------------------------
// Measuring

/// A director's `eth0` transmit counters.
#[derive(Debug, Clone, Copy, Default)]
struct TxCounters {
    bytes: u64,
    packets: u64,
}

fn tx_counters(lab: &Lab, host: &str) -> anyhow::Result<TxCounters> {
    let output = Command::new("ip")
        .args([
            "-n",
            &lab.ns_name(host),
            "-s",
            "-j",
            "link",
            "show",
            "dev",
            "eth0",
        ])
        .output()
        .context("cannot run ip")?;
    let links: serde_json::Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("ip -s -j link in {host} printed no JSON"))?;
    let tx = &links[0]["stats64"]["tx"];
    match (tx["bytes"].as_u64(), tx["packets"].as_u64()) {
        (Some(bytes), Some(packets)) => Ok(TxCounters { bytes, packets }),
        _ => bail!("no tx counters for eth0 in {host}: {links}"),
    }
}

fn all_tx_counters(lab: &Lab) -> anyhow::Result<Vec<TxCounters>> {
    (0..DIRECTORS)
        .map(|index| tx_counters(lab, &director_name(index)))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capacity {
    Uncapped,
    Capped,
}

/// One row of the table: a configuration and a director count, over the trials.
struct Row {
    capacity: Capacity,
    directors: usize,
    /// Goodput of each trial, Mbit/s.
    rates: Vec<f64>,
    /// Per director, forwarded bytes and packets summed over the trials.
    forwarded: Vec<TxCounters>,
    /// Per director, the flows the router hashed to it (the same in every trial).
    flows: Vec<usize>,
}

/// One trial: the goodput over `measure` and what each director forwarded meanwhile.
fn measure(
    lab: &Lab,
    flows: &BulkFlows,
    window: Duration,
) -> anyhow::Result<(f64, Vec<TxCounters>)> {
    let counters_before = all_tx_counters(lab)?;
    let (received_before, start) = (flows.received(), Instant::now());
    std::thread::sleep(window);
    let (received_after, elapsed) = (flows.received(), start.elapsed());
    let counters_after = all_tx_counters(lab)?;
    let mbit = (received_after - received_before) as f64 * 8.0 / elapsed.as_secs_f64() / 1e6;
    let forwarded = counters_before
        .iter()
        .zip(&counters_after)
        .map(|(before, after)| TxCounters {
            bytes: after.bytes - before.bytes,
            packets: after.packets - before.packets,
        })
        .collect();
    Ok((mbit, forwarded))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 0 {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    }
}

/// `34/33/33` — each director's share of the total, in percent.
fn shares(values: &[u64], active: usize) -> String {
    let total: u64 = values.iter().sum();
    if total == 0 {
        return "-".into();
    }
    values[..active.max(1)]
        .iter()
        .map(|v| format!("{:.0}", *v as f64 * 100.0 / total as f64))
        .collect::<Vec<_>>()
        .join("/")
}

fn print_table(rows: &[Row], options: &Options) {
    println!(
        "\n| config | directors | trials | median Mbit/s | min–max Mbit/s | flows d1/d2/d3 | share of bytes d1/d2/d3 % | share of packets % | ratio 3/1 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        if row.rates.is_empty() {
            continue;
        }
        let config = match row.capacity {
            Capacity::Uncapped => "uncapped".to_owned(),
            Capacity::Capped => format!("tbf {} Mbit/s per director", options.cap_mbit),
        };
        let min = row.rates.iter().copied().fold(f64::INFINITY, f64::min);
        let max = row.rates.iter().copied().fold(0.0, f64::max);
        let one = rows
            .iter()
            .find(|r| r.capacity == row.capacity && r.directors == 1 && !r.rates.is_empty());
        let ratio = match one {
            Some(one) if row.directors > 1 => {
                format!("{:.2}", median(&row.rates) / median(&one.rates))
            }
            _ => String::new(),
        };
        let bytes: Vec<u64> = row.forwarded.iter().map(|c| c.bytes).collect();
        let packets: Vec<u64> = row.forwarded.iter().map(|c| c.packets).collect();
        println!(
            "| {config} | {} | {} | {:.0} | {:.0}–{:.0} | {} | {} | {} | {ratio} |",
            row.directors,
            row.rates.len(),
            median(&row.rates),
            min,
            max,
            row.flows[..row.directors]
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join("/"),
            shares(&bytes, row.directors),
            shares(&packets, row.directors),
        );
    }
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    if !haldir_lab::is_root() {
        eprintln!(
            "\n!!!!!!!! forwarding bench SKIPPED: needs root (network namespaces) !!!!!!!!\n"
        );
        return Ok(());
    }
    install_sigint_handler();
    let lab = Lab::new("forwarding")?;
    build_topology(&lab)?;
    let routing = if options.static_route {
        Routing::Static
    } else if frr::is_installed() {
        start_bgp(&lab)?
    } else {
        eprintln!("forwarding: FRR is not installed: the static multipath route instead");
        Routing::Static
    };
    set_active_directors(&lab, &routing, DIRECTORS)?;
    set_director_caps(&lab, None)?;
    let flows = BulkFlows::start(&lab, "client", "rs", options.flows)?;
    eprintln!(
        "forwarding: {} flows from {CLIENT_ADDRESSES} client addresses to {VIP}:{PORT}, {} trials × {:?} per row (+ {:?} settling), route: {}",
        options.flows,
        options.trials,
        options.measure,
        options.settle,
        routing.describe()
    );

    let mut rows: Vec<Row> = [Capacity::Uncapped, Capacity::Capped]
        .into_iter()
        .flat_map(|capacity| {
            [1, DIRECTORS].map(|directors| Row {
                capacity,
                directors,
                rates: Vec::new(),
                forwarded: vec![TxCounters::default(); DIRECTORS],
                flows: Vec::new(),
            })
        })
        .collect();
    'trials: for trial in 1..=options.trials {
        for row in rows.iter_mut() {
            if interrupted() {
                eprintln!("forwarding: interrupted; the trials so far:");
                break 'trials;
            }
            set_director_caps(
                &lab,
                (row.capacity == Capacity::Capped).then_some(options.cap_mbit),
            )?;
            set_active_directors(&lab, &routing, row.directors)?;
            if row.flows.is_empty() {
                row.flows = flows_per_director(&lab, &flows.client_ends)?;
            }
            std::thread::sleep(options.settle);
            let (mbit, forwarded) = measure(&lab, &flows, options.measure)?;
            eprintln!(
                "forwarding: trial {trial} {:?} × {}: {mbit:.0} Mbit/s, forwarded bytes per director {:?}",
                row.capacity,
                row.directors,
                forwarded.iter().map(|c| c.bytes).collect::<Vec<_>>()
            );
            row.rates.push(mbit);
            for (total, trial) in row.forwarded.iter_mut().zip(&forwarded) {
                total.bytes += trial.bytes;
                total.packets += trial.packets;
            }
        }
    }
    let broken = flows.broken();
    drop(flows);
    println!(
        "\nforwarding rate, one director vs three ({} flows, {} trials × {:?} per row, median; \
         goodput received by the real server)",
        options.flows, options.trials, options.measure
    );
    println!("route at the router: {}", routing.describe());
    println!(
        "directors forward by plain kernel IP routing (the host has no IPVS): the path IPVS DR \
         shares up to the neighbour output; replies go real server → router → client (DR)"
    );
    print_table(&rows, &options);
    println!(
        "\nuncapped: every namespace shares this host's {} CPUs, so the whole path is CPU-bound \
         and more directors add no capacity (ratio ≈ 1 by construction). capped: tbf at {} \
         Mbit/s on each director's egress, directors as the bottleneck: the ratio is what ECMP \
         spreading gives. Flows: where the router's L4 hash sends each flow (ip route get). \
         Shares: each director's eth0 tx counters, summed over the trials (packets are GSO \
         packets as the veth counts them).",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        options.cap_mbit
    );
    if broken > 0 {
        println!("WARNING: {broken} flows broke during the run");
    }
    drop(routing);
    drop(lab);
    Ok(())
}
