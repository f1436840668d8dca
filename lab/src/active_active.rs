//! Active-active directors behind an ECMP router (issue 17): the topology, and the story that
//! `tests/kernel_active_active.rs` asserts and the demo (`haldir-lab --active-active`) prints.
//!
//! ```text
//!   client 10.9.0.10 + 10.9.0.100-199 ── br1 ── eth1 10.9.0.1  router 10.0.0.1 eth0 ── br0
//!   (sources taken in turn)                      FRR zebra+bgpd+bfdd, AS 65001, ECMP         │
//!                                                                                             │
//!   br0: d1..d4 10.0.0.11-14 (haldir: IPVS DR mh, [announce]; FRR AS 65011-65014, BFD)  ──────┤
//!        rs1..rs3 10.0.0.21-23 (VIP/32 on lo, arp_ignore 1, arp_announce 2, default via router)
//! ```
//!
//! Every director announces the VIP over eBGP while its haldir keeps the VIP on `lo`; the
//! router combines the paths (`bgp bestpath as-path multipath-relax`, `maximum-paths 8`) and
//! hashes flows over them on the L4 ports (`fib_multipath_hash_policy = 1`); BFD takes a dead
//! director out. Every director schedules with `mh` (Maglev) over the same real servers in
//! the same order, so a flow that ECMP moves to another director keeps its real server; the
//! new director picks up the flow mid-stream because `net.ipv4.vs.sloppy_tcp` is on. The real
//! servers answer the client directly through the router (DR).
//!
//! The router's route to the VIP is followed by an `ip -o monitor route nexthop` in its
//! namespace ([`RouteWatch`]): every change is stamped when it arrives, with no polling fork.
//! Everything runs in one [`Lab`] and is torn down with it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::frr::{Frr, FrrConfig};
use super::haldir::Haldir;
use super::netns::{in_netns, Lab, DR_REAL_SERVER_SYSCTLS};
use super::traffic::{EchoServer, Traffic, TrafficConfig, TrafficReport};
use super::{lock, poll_until, run_checked};

/// The virtual address every director announces.
pub const VIP: &str = "192.0.2.10";
/// The VIP's prefix, as bgpd's `network` and the router's route have it.
pub const VIP_PREFIX: &str = "192.0.2.10/32";
/// The service port (the real servers' echo service, checked by TCP_CHECK).
pub const SERVICE_PORT: u16 = 7000;
/// The upstream router (ECMP, FRR).
pub const ROUTER: &str = "router";
/// The router's address on the directors' segment.
pub const ROUTER_ADDRESS: &str = "10.0.0.1";
/// The router's AS.
pub const ROUTER_AS: u32 = 65001;
/// The client host.
pub const CLIENT: &str = "client";
/// How many source addresses the client has (10.9.0.100 and up), taken in turn.
pub const CLIENT_SOURCES: u8 = 100;
/// Every director the lab may run, with its address; the first three start with the lab,
/// the fourth is added by the story.
pub const DIRECTORS: [(&str, &str); 4] = [
    ("d1", "10.0.0.11"),
    ("d2", "10.0.0.12"),
    ("d3", "10.0.0.13"),
    ("d4", "10.0.0.14"),
];
/// The real servers, with their addresses.
pub const REAL_SERVERS: [(&str, &str); 3] = [
    ("rs1", "10.0.0.21"),
    ("rs2", "10.0.0.22"),
    ("rs3", "10.0.0.23"),
];
/// The client-side bridge (in the switch namespace, beside the lab's `br0`).
const CLIENT_BRIDGE: &str = "br1";

/// How the directors are configured.
#[derive(Debug, Clone)]
pub struct ActiveActiveOptions {
    /// The haldir binary the directors run.
    pub binary: PathBuf,
    /// BFD transmit and receive interval of every session.
    pub bfd_interval: Duration,
    /// BFD detect multiplier.
    pub bfd_multiplier: u8,
    /// `scheduler_flags` of the virtual server (`mh-port`, `mh-fallback`); empty: none written.
    pub scheduler_flags: Vec<String>,
    /// Run the kernel's sync daemons (master and backup) on every director's `eth0`.
    pub sync_daemon: bool,
    /// `[announce] drain`.
    pub drain: Duration,
    /// Bound on a haldir's start (its first status file): slow in a loaded emulated VM.
    pub start_timeout: Duration,
}

impl ActiveActiveOptions {
    /// The lab's defaults: BFD 300 ms × 3 (100 ms × 3 flapped in the emulated VM on a busy
    /// host: every session at once when the router's bfdd was not scheduled for 0.3 s),
    /// `mh-port` + `mh-fallback`, sync daemons on, a 3 s drain.
    pub fn new(binary: PathBuf) -> ActiveActiveOptions {
        ActiveActiveOptions {
            binary,
            bfd_interval: Duration::from_millis(300),
            bfd_multiplier: 3,
            scheduler_flags: vec!["mh-port".into(), "mh-fallback".into()],
            sync_daemon: true,
            drain: Duration::from_secs(3),
            start_timeout: Duration::from_secs(180),
        }
    }
}

/// The address of director `name`.
pub fn director_address(name: &str) -> anyhow::Result<&'static str> {
    DIRECTORS
        .iter()
        .find(|(d, _)| *d == name)
        .map(|(_, a)| *a)
        .with_context(|| format!("no director {name:?}"))
}

fn director_as(name: &str) -> anyhow::Result<u32> {
    let index = DIRECTORS
        .iter()
        .position(|(d, _)| *d == name)
        .with_context(|| format!("no director {name:?}"))?;
    Ok(65011 + u32::try_from(index)?)
}

fn bfdd_config(options: &ActiveActiveOptions) -> String {
    let ms = options.bfd_interval.as_millis();
    format!(
        "bfd\n profile fast\n  detect-multiplier {}\n  receive-interval {ms}\n  \
         transmit-interval {ms}\n !\n!\n",
        options.bfd_multiplier
    )
}

/// The router's bgpd.conf: every director a neighbour (the absent ones simply stay idle).
pub fn router_bgpd() -> String {
    let mut text = format!(
        "router bgp {ROUTER_AS}\n bgp router-id {ROUTER_ADDRESS}\n no bgp ebgp-requires-policy\n \
         bgp log-neighbor-changes\n bgp bestpath as-path multipath-relax\n timers bgp 3 9\n"
    );
    for (n, (_, address)) in DIRECTORS.iter().enumerate() {
        text.push_str(&format!(
            " neighbor {address} remote-as {}\n neighbor {address} bfd profile fast\n \
             neighbor {address} timers connect 1\n",
            65011 + n
        ));
    }
    text.push_str(" address-family ipv4 unicast\n  maximum-paths 8\n exit-address-family\n");
    text
}

/// Director `name`'s bgpd.conf: announces `network VIP/32` (import check on: while the
/// VIP is on its `lo`).
pub fn director_bgpd(name: &str) -> anyhow::Result<String> {
    let address = director_address(name)?;
    Ok(format!(
        "router bgp {}\n bgp router-id {address}\n no bgp ebgp-requires-policy\n timers bgp 3 9\n \
         neighbor {ROUTER_ADDRESS} remote-as {ROUTER_AS}\n neighbor {ROUTER_ADDRESS} bfd profile fast\n \
         neighbor {ROUTER_ADDRESS} timers connect 1\n address-family ipv4 unicast\n  \
         network {VIP_PREFIX}\n exit-address-family\n",
        director_as(name)?
    ))
}

/// Director `name`'s haldir configuration (TOML).
pub fn director_config(options: &ActiveActiveOptions, name: &str) -> String {
    let flags = if options.scheduler_flags.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = options
            .scheduler_flags
            .iter()
            .map(|f| format!("{f:?}"))
            .collect();
        format!("scheduler_flags = [{}]\n", quoted.join(", "))
    };
    let sync = if options.sync_daemon {
        "lvs_sync_daemon = { interface = \"eth0\" }\n"
    } else {
        ""
    };
    let real_servers: String = REAL_SERVERS
        .iter()
        .map(|(_, address)| {
            format!(
                "\n[[virtual_server.real_server]]\nip = \"{address}\"\nport = {SERVICE_PORT}\n\
                 TCP_CHECK = {{}}\n"
            )
        })
        .collect();
    format!(
        r#"# haldir-lab active-active: director {name} (written by lab/src/active_active.rs)
[global_defs]
router_id = "{name}"
{sync}
[[virtual_server]]
ip = "{VIP}"
port = {SERVICE_PORT}
protocol = "TCP"
lb_algo = "mh"
{flags}lb_kind = "DR"
delay_loop = 1
connect_timeout = 1
retry = 1
delay_before_retry = 0.2
warmup = 0
{real_servers}
[announce]
interface = "lo"
drain = {drain}
track_interface = ["eth0"]
"#,
        drain = options.drain.as_secs_f64(),
    )
}

/// `ip -n NS -batch FILE` of `lines`.
fn ip_batch(lab: &Lab, name: &str, ns: &str, lines: &[String]) -> anyhow::Result<()> {
    let file = lab.dir().join(format!("{name}.ip-batch"));
    std::fs::write(&file, lines.join("\n") + "\n")
        .with_context(|| format!("cannot write {}", file.display()))?;
    run_checked(Command::new("ip").args(["-n", ns, "-batch"]).arg(&file))
        .with_context(|| format!("ip -batch in {ns}:\n{}", lines.join("\n")))?;
    Ok(())
}

/// One running director: its FRR and its haldir.
pub struct Director<'l> {
    /// Its host name (`d1`...).
    pub name: &'static str,
    /// zebra, bfdd, bgpd.
    pub frr: Frr<'l>,
    /// haldir.
    pub haldir: Haldir<'l>,
}

/// The lab's active-active site. See the module documentation.
pub struct ActiveActive<'l> {
    lab: &'l Lab,
    options: ActiveActiveOptions,
    router: Frr<'l>,
    directors: Vec<Director<'l>>,
    echo: Vec<Option<EchoServer>>,
    routes: RouteWatch,
}

impl<'l> ActiveActive<'l> {
    /// Builds the router, the client, the real servers (echo servers up) and the directors
    /// `first_directors` (FRR and haldir started); returns once they all run.
    pub fn build(
        lab: &'l Lab,
        options: ActiveActiveOptions,
        first_directors: &[&'static str],
    ) -> anyhow::Result<ActiveActive<'l>> {
        lab.add_host(ROUTER, &[&format!("{ROUTER_ADDRESS}/24")])?;
        lab.add_host(CLIENT, &["10.9.0.10/24"])?;
        for (server, address) in REAL_SERVERS {
            lab.add_host(server, &[&format!("{address}/24")])?;
        }
        let sw = lab.switch_ns();
        // The client moves to a bridge of its own, which the router's eth1 joins.
        ip_batch(
            lab,
            "sw",
            &sw,
            &[
                format!(
                    "link add {CLIENT_BRIDGE} type bridge stp_state 0 forward_delay 0 \
                     mcast_snooping 0"
                ),
                format!("link set {CLIENT_BRIDGE} up"),
                format!(
                    "link add u-{ROUTER} type veth peer name eth1 netns {}",
                    lab.ns_name(ROUTER)
                ),
                format!("link set u-{ROUTER} master {CLIENT_BRIDGE}"),
                format!("link set u-{ROUTER} up"),
                format!("link set p-{CLIENT} master {CLIENT_BRIDGE}"),
            ],
        )?;
        // The router forwards, hashes on the L4 ports, and takes the real servers'
        // replies (from the VIP) on the segment: loose reverse-path filter.
        lab.write_sysctls(
            ROUTER,
            &[
                ("net/ipv4/ip_forward", "1"),
                ("net/ipv4/fib_multipath_hash_policy", "1"),
                ("net/ipv4/conf/all/rp_filter", "2"),
                ("net/ipv4/conf/default/rp_filter", "2"),
                ("net/ipv4/conf/eth0/rp_filter", "2"),
            ],
        )?;
        ip_batch(
            lab,
            ROUTER,
            &lab.ns_name(ROUTER),
            &[
                "addr add 10.9.0.1/24 dev eth1".into(),
                "link set eth1 up".into(),
            ],
        )?;
        let mut client_lines: Vec<String> = client_sources()
            .iter()
            .map(|a| format!("addr add {a}/24 dev eth0"))
            .collect();
        client_lines.push("route add default via 10.9.0.1".into());
        ip_batch(lab, CLIENT, &lab.ns_name(CLIENT), &client_lines)?;
        for (server, _) in REAL_SERVERS {
            lab.write_sysctls(server, DR_REAL_SERVER_SYSCTLS)?;
            ip_batch(
                lab,
                server,
                &lab.ns_name(server),
                &[
                    format!("addr add {VIP}/32 dev lo"),
                    format!("route add default via {ROUTER_ADDRESS}"),
                ],
            )?;
        }
        let mut echo = Vec::new();
        for (server, _) in REAL_SERVERS {
            echo.push(Some(EchoServer::start(lab, server, SERVICE_PORT)?));
        }
        let routes = RouteWatch::start(lab, ROUTER, VIP)?;
        let router = Frr::start(
            lab,
            ROUTER,
            &FrrConfig {
                bgpd: &router_bgpd(),
                bfdd: Some(&bfdd_config(&options)),
            },
        )?;
        let mut site = ActiveActive {
            lab,
            options,
            router,
            directors: Vec::new(),
            echo,
            routes,
        };
        site.add_directors(first_directors)?;
        Ok(site)
    }

    /// Adds directors `names` to the segment: host, FRR, then their haldirs (started
    /// together: a start is slow in the emulated VM). Returns once every haldir runs.
    pub fn add_directors(&mut self, names: &[&'static str]) -> anyhow::Result<()> {
        let lab = self.lab;
        for name in names {
            let address = director_address(name)?;
            lab.add_host(name, &[&format!("{address}/24")])?;
            // The VIP on lo must not be answered for on eth0; the client's packets come
            // from addresses the director has no route to but the default one.
            lab.write_sysctls(
                name,
                &[
                    ("net/ipv4/conf/all/arp_ignore", "1"),
                    ("net/ipv4/conf/all/arp_announce", "2"),
                    ("net/ipv4/conf/all/rp_filter", "0"),
                    ("net/ipv4/conf/default/rp_filter", "0"),
                    ("net/ipv4/conf/eth0/rp_filter", "0"),
                ],
            )?;
            ip_batch(
                lab,
                name,
                &lab.ns_name(name),
                &[format!("route add default via {ROUTER_ADDRESS}")],
            )?;
        }
        let mut frrs = Vec::new();
        for name in names {
            frrs.push(Frr::start(
                lab,
                name,
                &FrrConfig {
                    bgpd: &director_bgpd(name)?,
                    bfdd: Some(&bfdd_config(&self.options)),
                },
            )?);
        }
        let options = &self.options;
        let started: Vec<anyhow::Result<Haldir<'l>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = names
                .iter()
                .map(|name| {
                    scope.spawn(move || {
                        Haldir::start_without_vrrp(
                            lab,
                            name,
                            &options.binary,
                            &director_config(options, name),
                            options.start_timeout,
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| bail!("a haldir start panicked"))
                })
                .collect()
        });
        for ((name, frr), haldir) in names.iter().zip(frrs).zip(started) {
            self.directors.push(Director {
                name,
                frr,
                haldir: haldir?,
            });
        }
        Ok(())
    }

    /// The lab.
    pub fn lab(&self) -> &'l Lab {
        self.lab
    }

    /// The options.
    pub fn options(&self) -> &ActiveActiveOptions {
        &self.options
    }

    /// The router's FRR.
    pub fn router(&self) -> &Frr<'l> {
        &self.router
    }

    /// The running directors, in order of addition.
    pub fn directors(&self) -> &[Director<'l>] {
        &self.directors
    }

    /// Director `name`.
    pub fn director(&self, name: &str) -> anyhow::Result<&Director<'l>> {
        self.directors
            .iter()
            .find(|d| d.name == name)
            .with_context(|| format!("director {name} is not running"))
    }

    /// The service, as the client reaches it.
    pub fn target() -> SocketAddr {
        SocketAddr::new(VIP.parse().expect("a valid literal"), SERVICE_PORT)
    }

    /// The router's route changes so far.
    pub fn routes(&self) -> &RouteWatch {
        &self.routes
    }

    /// Cuts (or restores) director `name`'s link at the switch: its bridge port goes down
    /// and its `eth0` loses carrier. Neither haldir nor FRR is told.
    pub fn set_director_link(&self, name: &str, up: bool) -> anyhow::Result<()> {
        self.lab.link_set("sw", &format!("p-{name}"), up)
    }

    /// Stops real server `name`'s service: its connections are closed, its check fails.
    pub fn stop_real_server(&mut self, name: &str) -> anyhow::Result<()> {
        let index = REAL_SERVERS
            .iter()
            .position(|(s, _)| *s == name)
            .with_context(|| format!("no real server {name:?}"))?;
        self.echo[index].take();
        Ok(())
    }

    /// IPVS counters of director `name` (its namespace's `/proc/net/ip_vs_stats`): the
    /// connections it scheduled and the packets it forwarded, since its IPVS started.
    pub fn ipvs_counters(&self, name: &str) -> anyhow::Result<IpvsCounters> {
        let text = read_proc_net(self.lab, name, "ip_vs_stats")?;
        parse_ip_vs_stats(&text).with_context(|| format!("ip_vs_stats of {name}: {text}"))
    }

    /// The weight of every real server in director `name`'s service (its namespace's
    /// `/proc/net/ip_vs`), by real server name, in the kernel's order.
    pub fn real_server_weights(&self, name: &str) -> anyhow::Result<Vec<(String, u32)>> {
        let text = read_proc_net(self.lab, name, "ip_vs")?;
        Ok(parse_ip_vs_weights(&text))
    }
}

/// Reads `/proc/thread-self/net/FILE` from inside host `host`'s namespace (no fork).
fn read_proc_net(lab: &Lab, host: &str, file: &str) -> anyhow::Result<String> {
    let path = Path::new("/proc/thread-self/net").join(file);
    in_netns(&lab.ns_name(host), || std::fs::read_to_string(&path))?
        .with_context(|| format!("cannot read {} in {host}", path.display()))
}

/// The client's source addresses, 10.9.0.100 and up.
pub fn client_sources() -> Vec<IpAddr> {
    (0..CLIENT_SOURCES)
        .map(|n| IpAddr::V4(Ipv4Addr::new(10, 9, 0, 100 + n)))
        .collect()
}

/// A director's IPVS totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpvsCounters {
    /// Connections scheduled (sloppy pick-ups of moved flows included; synced ones not).
    pub connections: u64,
    /// Packets received for the virtual services (and forwarded).
    pub packets: u64,
}

/// `/proc/net/ip_vs_stats`: the third line holds the totals, in hexadecimal.
fn parse_ip_vs_stats(text: &str) -> Option<IpvsCounters> {
    let line = text.lines().nth(2)?;
    let mut fields = line.split_whitespace();
    let connections = u64::from_str_radix(fields.next()?, 16).ok()?;
    let packets = u64::from_str_radix(fields.next()?, 16).ok()?;
    Some(IpvsCounters {
        connections,
        packets,
    })
}

/// `/proc/net/ip_vs` destination lines (`  -> 0A000015:1B58      Route   1      0   0`) as
/// (real server name, weight); an address not of the lab's real servers keeps its text.
fn parse_ip_vs_weights(text: &str) -> Vec<(String, u32)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            if fields.next()? != "->" {
                return None;
            }
            let (address, _) = fields.next()?.split_once(':')?;
            let _forward = fields.next()?;
            let weight: u32 = fields.next()?.parse().ok()?;
            let address = Ipv4Addr::from(u32::from_str_radix(address, 16).ok()?);
            let name = REAL_SERVERS
                .iter()
                .find(|(_, a)| a.parse::<Ipv4Addr>().ok() == Some(address))
                .map_or_else(|| address.to_string(), |(n, _)| (*n).to_owned());
            Some((name, weight))
        })
        .collect()
}

/// One state of the router's route to the VIP: its next hops (empty: no route), and when
/// the change arrived.
#[derive(Debug, Clone)]
pub struct RouteChange {
    /// When `ip monitor` printed it.
    pub at: Instant,
    /// The next hops' addresses, sorted.
    pub nexthops: Vec<String>,
    /// The route as `ip` printed it.
    pub line: String,
}

/// The router's route to one prefix, followed by `ip -o monitor route nexthop` in the
/// router's namespace. Stops on drop.
pub struct RouteWatch {
    child: Child,
    changes: Arc<Mutex<Vec<RouteChange>>>,
    reader: Option<JoinHandle<()>>,
}

impl RouteWatch {
    /// Starts watching `prefix`'s route (an address: the /32) in host `host`.
    pub fn start(lab: &Lab, host: &str, address: &str) -> anyhow::Result<RouteWatch> {
        use std::io::BufRead as _;
        let ns = lab.ns_name(host);
        let mut child = Command::new("ip")
            .args(["-n", &ns, "-o", "monitor", "route", "nexthop"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start ip monitor")?;
        let stdout = child.stdout.take().context("ip monitor has no stdout")?;
        let (nexthops, line) = read_route(&ns, address);
        let changes = Arc::new(Mutex::new(vec![RouteChange {
            at: Instant::now(),
            nexthops,
            line,
        }]));
        let reader = std::thread::Builder::new()
            .name(format!("routes-{host}"))
            .spawn({
                let changes = changes.clone();
                let address = address.to_owned();
                move || {
                    for line in std::io::BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        let at = Instant::now();
                        let (nexthops, line) = match parse_monitor_line(&line, &address) {
                            Some(hops) => (hops, line),
                            // A nexthop object changed: zebra may have changed the route's
                            // group in place, which prints no route line: read the route.
                            None if line.starts_with("id ") || line.starts_with("Deleted id ") => {
                                read_route(&ns, &address)
                            }
                            None => continue,
                        };
                        let mut changes = lock(&changes);
                        if changes.last().map(|c| &c.nexthops) != Some(&nexthops) {
                            changes.push(RouteChange { at, nexthops, line });
                        }
                    }
                }
            })
            .context("cannot start the route reader")?;
        Ok(RouteWatch {
            child,
            changes,
            reader: Some(reader),
        })
    }

    /// Every change so far, the state at the start first.
    pub fn changes(&self) -> Vec<RouteChange> {
        lock(&self.changes).clone()
    }

    /// The next hops now.
    pub fn nexthops(&self) -> Vec<String> {
        lock(&self.changes)
            .last()
            .map(|c| c.nexthops.clone())
            .unwrap_or_default()
    }

    /// Waits up to `timeout` for the first state after `mark` whose next hops satisfy
    /// `wanted` (or the current one, if it already does and changed before `mark`);
    /// returns when that change arrived, relative to `mark` (zero when it already held).
    pub fn wait_for(
        &self,
        mark: Instant,
        timeout: Duration,
        wanted: impl Fn(&[String]) -> bool,
    ) -> Option<Duration> {
        let mut found = None;
        poll_until(timeout, Duration::from_millis(5), || {
            let changes = lock(&self.changes);
            found = changes
                .iter()
                .rev()
                .take_while(|c| c.at >= mark)
                .filter(|c| wanted(&c.nexthops))
                .last()
                .map(|c| c.at.saturating_duration_since(mark))
                .or_else(|| {
                    changes
                        .last()
                        .filter(|c| c.at < mark && wanted(&c.nexthops))
                        .map(|_| Duration::ZERO)
                });
            found.is_some()
        });
        found
    }
}

impl Drop for RouteWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// `ip -n NS -o route show ADDRESS/32`: the next hops of the route and the line (a fork:
/// only at the start and on a nexthop object's change).
fn read_route(ns: &str, address: &str) -> (Vec<String>, String) {
    let output = Command::new("ip")
        .args(["-n", ns, "-o", "route", "show", &format!("{address}/32")])
        .stdin(Stdio::null())
        .output();
    let text = output
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    text.lines()
        .find_map(|line| parse_monitor_line(line, address).map(|hops| (hops, line.to_owned())))
        .unwrap_or_default()
}

/// The next hops (sorted) of a route line of `ip -o monitor route` / `ip -o route show`
/// for `address`: `192.0.2.10 nhid 7 \t nexthop via 10.0.0.11 dev eth0 weight 1 \ ...`,
/// `192.0.2.10 via 10.0.0.11 dev eth0 ...`; `Deleted 192.0.2.10 ...` is no next hop.
/// `None` for a line about anything else.
fn parse_monitor_line(line: &str, address: &str) -> Option<Vec<String>> {
    let (deleted, rest) = match line.strip_prefix("Deleted ") {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let mut words = rest.split_whitespace();
    let first = words.next()?;
    if first != address && first != format!("{address}/32") {
        return None;
    }
    if deleted {
        return Some(Vec::new());
    }
    let mut hops = Vec::new();
    let mut words = words.peekable();
    while let Some(word) = words.next() {
        if word == "via" {
            if let Some(hop) = words.next() {
                hops.push(hop.to_owned());
            }
        }
    }
    hops.sort();
    hops.dedup();
    Some(hops)
}

/// The story's pacing and bounds.
#[derive(Debug, Clone)]
pub struct StoryOptions {
    /// The site.
    pub site: ActiveActiveOptions,
    /// Long-lived connections opened at the start.
    pub connections: usize,
    /// New connections opened after each event.
    pub new_per_event: usize,
    /// The connections' pacing (a message every `interval`).
    pub traffic: TrafficConfig,
    /// A connection silent for longer than this counts as lost: it covers TCP's
    /// retransmission backoff after a reroute (retries about 0.2, 0.6, 1.4, 3.0, 6.2, 12.6 s
    /// after the first loss: a reroute of 3 s in a starved VM can cost 6-9 s of silence).
    pub stall_bound: Duration,
    /// Bound on a route change at the router after an event that BFD or a withdrawal
    /// handles (a link cut, lost quorum, SIGTERM); generous, the story prints the figure.
    pub reroute_bound: Duration,
    /// Bound on a director's (re)appearance in the router's route (BGP session set-up).
    pub appear_bound: Duration,
}

impl StoryOptions {
    /// 300 connections, a message every second each (what the emulated VM carries), 20 new
    /// connections per event, lost beyond 10 s of silence.
    pub fn new(binary: PathBuf) -> StoryOptions {
        StoryOptions {
            site: ActiveActiveOptions::new(binary),
            connections: 300,
            new_per_event: 20,
            traffic: TrafficConfig {
                interval: Duration::from_secs(1),
                connect_timeout: Duration::from_secs(20),
                connect_spacing: Duration::from_millis(10),
            },
            stall_bound: Duration::from_secs(20),
            reroute_bound: Duration::from_secs(30),
            appear_bound: Duration::from_secs(120),
        }
    }
}

/// What one event did.
#[derive(Debug, Clone)]
pub struct Event {
    /// What happened ("d2's links down").
    pub name: String,
    /// The router's next hops after it.
    pub nexthops: Vec<String>,
    /// When the router's route changed, after the event's action ended (`None`: it did not, within the
    /// bound; for an event that must not change it, `None` is right).
    pub reroute: Option<Duration>,
    /// Connections established before the event and alive then.
    pub established: usize,
    /// Of those, connections broken (reset, EOF, error) after the event, with their real
    /// server.
    pub lost: Vec<(usize, String)>,
    /// Of those, connections silent beyond the stall bound (counted as lost too).
    pub stalled: Vec<(usize, String)>,
    /// The longest silence of any connection after the event.
    pub worst_gap: Option<Duration>,
    /// New connections opened after the event, and how many came up.
    pub new_opened: usize,
    /// How many of them came up.
    pub new_up: usize,
    /// New connections per real server.
    pub new_by_server: std::collections::BTreeMap<String, usize>,
    /// Why new connections failed, one line each.
    pub new_failures: Vec<String>,
    /// The router's route changes from the event to its end (more than one: a flap).
    pub route_changes: usize,
    /// The router's route at the end, as `ip` printed it.
    pub route_line: String,
    /// VIP withdrawals the directors' haldirs logged during the event (`VIP withdrawn`).
    pub withdrawals: usize,
    /// Packets each director forwarded in the 5 s after the event settled.
    pub packets_by_director: Vec<(String, u64)>,
}

impl Event {
    /// Lost and stalled together.
    pub fn lost_total(&self) -> usize {
        self.lost.len() + self.stalled.len()
    }

    /// Lost or stalled connections per real server.
    pub fn lost_by_server(&self) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for (_, server) in self.lost.iter().chain(&self.stalled) {
            *counts.entry(server.clone()).or_insert(0) += 1;
        }
        counts
    }
}

/// What the story measured.
#[derive(Debug, Clone, Default)]
pub struct Story {
    /// Seconds from the directors' start to the router's route over all three.
    pub converged_after: Option<Duration>,
    /// The long-lived connections up, of those opened.
    pub opened: (usize, usize),
    /// Connections scheduled by each director while they were opened (the spread).
    pub connections_by_director: Vec<(String, u64)>,
    /// Packets each director forwarded in a few seconds of steady traffic.
    pub packets_by_director: Vec<(String, u64)>,
    /// The long-lived connections by real server.
    pub by_server: std::collections::BTreeMap<String, usize>,
    /// The sync daemons of each director (`ipvsadm -L --daemon`), or why not read.
    pub sync_daemons: Vec<(String, String)>,
    /// `net.ipv4.vs.sloppy_tcp` in each director, as haldir set it.
    pub sloppy_tcp: Vec<(String, String)>,
    /// The router's neighbour table at the end (`ip neigh`).
    pub router_neighbours: String,
    /// The router's bgpd log of its sessions going up and down and why (`%ADJCHANGE` and
    /// `%NOTIFICATION` lines: `6/10 (Cease/BFD Down)` when BFD took a session down).
    pub router_adjacency_changes: Vec<String>,
    /// The events, in order.
    pub events: Vec<Event>,
    /// Connections with the lost real server at the time it died.
    pub dead_server_share: usize,
    /// Driver lags: the client was not scheduled (the VM was busy).
    pub driver_lags: Vec<Duration>,
    /// Total time.
    pub elapsed: Duration,
}

impl Story {
    /// Tells `event`'s line and keeps it.
    fn record(&mut self, event: Event, say: &mut dyn FnMut(&str)) {
        say(&event_line(&event));
        self.events.push(event);
    }
}

/// How often the kernel brings `/proc/net/ip_vs_stats` up to date (its estimator's period,
/// a bit more): a shorter window reads stale totals.
const STATS_PERIOD: Duration = Duration::from_millis(2500);

/// The real server that [`run_story`] stops.
pub const DYING_REAL_SERVER: &str = "rs2";

/// Runs the whole story in a fresh lab, narrating through `say`; returns the figures. Fails
/// (with everything needed to see why) only when the site cannot be built or an event's
/// route change never comes; the caller judges the figures.
pub fn run_story(options: &StoryOptions, say: &mut dyn FnMut(&str)) -> anyhow::Result<Story> {
    let started = Instant::now();
    let lab = Lab::new("active-active")?;
    let mut story = Story::default();
    say("building: router, client, rs1-rs3, d1-d3 (FRR zebra + bfdd + bgpd, haldir)");
    let mut site = ActiveActive::build(&lab, options.site.clone(), &["d1", "d2", "d3"])?;
    let three: Vec<String> = ["d1", "d2", "d3"]
        .iter()
        .map(|d| director_address(d).map(str::to_owned))
        .collect::<anyhow::Result<_>>()?;
    let up_at = Instant::now();
    story.converged_after = site.routes.wait_for(up_at, options.appear_bound, |hops| {
        three.iter().all(|a| hops.contains(a))
    });
    if story.converged_after.is_none() {
        bail!(
            "the router's route to {VIP} never had d1-d3 (now {:?})\n{}",
            site.routes.nexthops(),
            site.describe()
        );
    }
    say(&format!(
        "the router routes {VIP} over {:?} ({:.1} s after the haldirs ran)",
        site.routes.nexthops(),
        story.converged_after.unwrap_or_default().as_secs_f64()
    ));
    for director in site.directors() {
        let daemons = site
            .lab
            .run(director.name, &["ipvsadm", "-L", "--daemon"])
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_else(|e| format!("{e:#}"));
        story.sync_daemons.push((director.name.to_owned(), daemons));
        let sloppy = in_netns(&lab.ns_name(director.name), || {
            std::fs::read_to_string("/proc/sys/net/ipv4/vs/sloppy_tcp")
        })
        .map_or_else(
            |e| format!("{e:#}"),
            |read| read.map_or_else(|e| e.to_string(), |v| v.trim().to_owned()),
        );
        story.sloppy_tcp.push((director.name.to_owned(), sloppy));
    }

    let traffic = Traffic::start(&lab, CLIENT, ActiveActive::target(), options.traffic)?;
    let before: Vec<(String, IpvsCounters)> = site.counters();
    let up = traffic.open_from(options.connections, "initial", &client_sources())?;
    story.opened = (up, options.connections);
    // The kernel folds its per-CPU counters into /proc/net/ip_vs_stats every 2 s.
    std::thread::sleep(STATS_PERIOD);
    let after: Vec<(String, IpvsCounters)> = site.counters();
    story.connections_by_director = delta(&before, &after, |c| c.connections);
    story.by_server = traffic.report().by_server();
    say(&format!(
        "{up} of {} connections up from {CLIENT_SOURCES} source addresses; scheduled per \
         director {:?}; per real server {:?}",
        options.connections, story.connections_by_director, story.by_server
    ));
    if up < options.connections {
        bail!(
            "only {up} of {} connections came up:\n{}\n{}",
            options.connections,
            traffic.report().describe_problems(options.stall_bound),
            site.describe()
        );
    }
    story.packets_by_director = site.packets_over(Duration::from_secs(5));
    say(&format!(
        "packets per director over 5 s: {:?}",
        story.packets_by_director
    ));

    let address = |d: &str| director_address(d).unwrap_or_default().to_owned();
    // 1. A director dies whole: its link goes down at the switch.
    let d2 = address("d2");
    let event = run_event(
        &mut site,
        &traffic,
        options,
        "d2's link cut (the director dies whole; haldir not told)",
        |site| site.set_director_link("d2", false),
        Some(&|hops: &[String]| !hops.contains(&d2) && !hops.is_empty()),
        options.reroute_bound,
    )?;
    story.record(event, say);
    // 2. It comes back.
    let event = run_event(
        &mut site,
        &traffic,
        options,
        "d2's link restored",
        |site| site.set_director_link("d2", true),
        Some(&|hops: &[String]| hops.contains(&d2)),
        options.appear_bound,
    )?;
    story.record(event, say);
    // 3. A fourth director joins.
    let d4 = address("d4");
    let event = run_event(
        &mut site,
        &traffic,
        options,
        "d4 added (host, FRR, haldir started)",
        |site| site.add_directors(&["d4"]),
        Some(&|hops: &[String]| hops.contains(&d4) && hops.len() == 4),
        options.appear_bound,
    )?;
    story.record(event, say);
    // 4. One director loses its virtual server's quorum: its checks are refused.
    let d1 = address("d1");
    let event = run_event(
        &mut site,
        &traffic,
        options,
        "d1's health checks refused (its quorum lost)",
        |site| site.refuse_checks("d1", true),
        Some(&|hops: &[String]| !hops.contains(&d1) && !hops.is_empty()),
        options.reroute_bound,
    )?;
    story.record(event, say);
    let event = run_event(
        &mut site,
        &traffic,
        options,
        "d1's health checks pass again (quorum back)",
        |site| site.refuse_checks("d1", false),
        Some(&|hops: &[String]| hops.contains(&d1)),
        options.appear_bound,
    )?;
    story.record(event, say);
    // 5. SIGTERM of one haldir: withdrawn before its traffic stops, then the drain.
    let d3 = address("d3");
    let event = run_event(
        &mut site,
        &traffic,
        options,
        "SIGTERM to d3's haldir",
        |site| {
            let director = site.director("d3")?;
            site.lab.kill(director.haldir.pid(), super::Signal::SIGTERM)
        },
        Some(&|hops: &[String]| !hops.contains(&d3) && !hops.is_empty()),
        options.reroute_bound,
    )?;
    story.record(event, say);
    // 6. A real server dies: only its connections may go.
    story.dead_server_share = traffic
        .report()
        .connections
        .iter()
        .filter(|c| c.lost.is_none() && c.server.as_deref() == Some(DYING_REAL_SERVER))
        .count();
    let event = run_event(
        &mut site,
        &traffic,
        options,
        "rs2's service stopped (the real server dies)",
        |site| {
            site.stop_real_server(DYING_REAL_SERVER)?;
            // New connections only once every director has taken it out.
            let out = poll_until(Duration::from_secs(60), Duration::from_millis(200), || {
                site.directors().iter().all(|d| {
                    !d.haldir.is_running()
                        || site.real_server_weights(d.name).is_ok_and(|w| {
                            w.iter()
                                .any(|(name, weight)| name == DYING_REAL_SERVER && *weight == 0)
                        })
                })
            });
            if !out {
                bail!("the directors did not take {DYING_REAL_SERVER} out within 60 s");
            }
            Ok(())
        },
        None,
        Duration::ZERO,
    )?;
    story.record(event, say);

    story.router_neighbours = lab.stdout(ROUTER, &["ip", "neigh"]);
    story.router_adjacency_changes = site
        .router
        .logs()
        .lines()
        .filter(|l| l.contains("ADJCHANGE") || l.contains("NOTIFICATION"))
        .map(str::to_owned)
        .collect();
    let report = traffic.stop();
    story.driver_lags = report.driver_lags.iter().map(|(_, lag)| *lag).collect();
    drop(site);
    drop(lab);
    story.elapsed = started.elapsed();
    Ok(story)
}

/// One line about an event, for the narration.
pub fn event_line(event: &Event) -> String {
    let reroute = event.reroute.map_or_else(
        || "route unchanged".to_owned(),
        |d| {
            format!(
                "rerouted at the router after {:.0} ms",
                d.as_secs_f64() * 1000.0
            )
        },
    );
    let gap = event
        .worst_gap
        .map_or_else(|| "-".to_owned(), |g| format!("{:.2} s", g.as_secs_f64()));
    format!(
        "{}: {reroute} (next hops {:?}, {} route changes; `{}`); lost {} of {} established \
         {:?}; worst silence {gap}; new connections {}/{} {:?}{}; packets per director since {:?}",
        event.name,
        event.nexthops,
        event.route_changes,
        event.route_line.replace('\t', " "),
        event.lost_total(),
        event.established,
        event.lost_by_server(),
        event.new_up,
        event.new_opened,
        event.new_by_server,
        if event.new_failures.is_empty() {
            String::new()
        } else {
            format!(" (failed: {})", event.new_failures.join("; "))
        },
        event.packets_by_director
    )
}

impl ActiveActive<'_> {
    /// Every running director's IPVS counters.
    fn counters(&self) -> Vec<(String, IpvsCounters)> {
        self.directors
            .iter()
            .map(|d| {
                (
                    d.name.to_owned(),
                    self.ipvs_counters(d.name).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// `VIP withdrawn` lines in every director's haldir log so far.
    fn withdrawals_logged(&self) -> usize {
        self.directors
            .iter()
            .map(|d| d.haldir.log().matches("VIP withdrawn").count())
            .sum()
    }

    /// Packets each director forwarded over `window`.
    fn packets_over(&self, window: Duration) -> Vec<(String, u64)> {
        let before = self.counters();
        std::thread::sleep(window);
        delta(&before, &self.counters(), |c| c.packets)
    }

    /// Makes director `name`'s health checks fail (refused by a firewall rule in its own
    /// namespace, on the real servers' service port; forwarded client packets, addressed
    /// to the VIP, pass), or removes the rule.
    pub fn refuse_checks(&self, name: &str, refuse: bool) -> anyhow::Result<()> {
        let servers: Vec<&str> = REAL_SERVERS.iter().map(|(_, a)| *a).collect();
        let ruleset = if refuse {
            format!(
                "table inet haldir_lab_checks {{\n chain out {{\n  type filter hook output \
                 priority 0; policy accept;\n  ip daddr {{ {} }} tcp dport {SERVICE_PORT} \
                 reject with tcp reset\n }}\n}}\n",
                servers.join(", ")
            )
        } else {
            "delete table inet haldir_lab_checks\n".to_owned()
        };
        let file = self.lab.dir().join(format!("{name}-checks.nft"));
        std::fs::write(&file, ruleset)?;
        self.lab
            .run(name, &["nft", "-f", &file.to_string_lossy()])?;
        Ok(())
    }

    /// Everything a failure message needs: the route, the directors' haldir logs and FRR
    /// logs.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "router route changes: {:?}\n",
            self.routes
                .changes()
                .iter()
                .map(|c| &c.nexthops)
                .collect::<Vec<_>>()
        );
        for d in &self.directors {
            text.push_str(&format!(
                "--- {} weights {:?}\n{}\n",
                d.name,
                self.real_server_weights(d.name).unwrap_or_default(),
                d.haldir.describe()
            ));
        }
        text.push_str(&self.router.logs());
        text
    }
}

fn delta(
    before: &[(String, IpvsCounters)],
    after: &[(String, IpvsCounters)],
    field: impl Fn(&IpvsCounters) -> u64,
) -> Vec<(String, u64)> {
    after
        .iter()
        .map(|(name, a)| {
            let b = before
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, b)| field(b));
            (name.clone(), field(a).saturating_sub(b))
        })
        .collect()
}

/// What the router's next hops must be after an event.
type RouteCondition<'a> = &'a dyn Fn(&[String]) -> bool;

/// Runs one event: `act`, then waits for the router's route to satisfy `route_after`
/// (when given), then until every connection alive before the event has echoed after it
/// (or the stall bound passed), then opens new connections.
fn run_event<'l>(
    site: &mut ActiveActive<'l>,
    traffic: &Traffic,
    options: &StoryOptions,
    name: &str,
    act: impl FnOnce(&mut ActiveActive<'l>) -> anyhow::Result<()>,
    route_after: Option<RouteCondition<'_>>,
    route_bound: Duration,
) -> anyhow::Result<Event> {
    let before = traffic.report();
    let alive: Vec<usize> = before
        .connections
        .iter()
        .filter(|c| c.lost.is_none() && c.server.is_some())
        .map(|c| c.id)
        .collect();
    let withdrawals_before = site.withdrawals_logged();
    let mark = Instant::now();
    act(site).with_context(|| format!("event {name:?}"))?;
    // The reroute is timed from the end of the action: in the emulated VM the fork and exec
    // of `ip link set` or `nft` alone takes a good part of a second, and the change it makes
    // comes at its very end. (d4's addition: from the moment its haldir runs.)
    let acted = Instant::now();
    let reroute = match route_after {
        Some(wanted) => {
            let Some(after) = site.routes.wait_for(mark, route_bound, wanted) else {
                bail!(
                    "{name}: the router's route did not change as expected within \
                     {route_bound:?} (now {:?})\n{}",
                    site.routes.nexthops(),
                    site.describe()
                );
            };
            Some((mark + after).saturating_duration_since(acted))
        }
        None => None,
    };
    // Every connection alive before must echo after the route settled, within the bound.
    let settled = Instant::now();
    poll_until(
        options.stall_bound + options.traffic.interval * 2,
        Duration::from_millis(200),
        || {
            let report = traffic.report();
            alive.iter().all(|&id| {
                let c = &report.connections[id];
                c.lost.is_some() || c.last_echo.is_some_and(|t| t > settled)
            })
        },
    );
    let report: TrafficReport = traffic.report();
    let mut lost = Vec::new();
    let mut stalled = Vec::new();
    for &id in &alive {
        let c = &report.connections[id];
        let server = c.server.clone().unwrap_or_default();
        if c.lost.as_ref().is_some_and(|(at, _)| *at >= mark) {
            lost.push((id, server));
        } else if c.lost.is_none()
            && (c.current_gap(report.at) > options.stall_bound
                || c.gaps.iter().any(|(from, to)| {
                    *to >= mark && to.saturating_duration_since(*from) > options.stall_bound
                }))
        {
            stalled.push((id, server));
        }
    }
    let worst_gap = report.longest_gap_after(mark).map(|(gap, _)| gap);
    let label = format!("after {name}");
    let packets_by_director = site.packets_over(STATS_PERIOD * 2);
    let first_new = report.connections.len();
    let new_up = traffic.open_from(options.new_per_event, &label, &client_sources())?;
    let mut new_by_server = std::collections::BTreeMap::new();
    let mut new_failures = Vec::new();
    for c in &traffic.report().connections[first_new..] {
        if let Some((_, why)) = &c.lost {
            new_failures.push(format!("conn {}: {why}", c.id));
        } else if let Some(server) = &c.server {
            *new_by_server.entry(server.clone()).or_insert(0) += 1;
        }
    }
    let changes = site.routes.changes();
    let withdrawals = site.withdrawals_logged().saturating_sub(withdrawals_before);
    Ok(Event {
        name: name.to_owned(),
        nexthops: site.routes.nexthops(),
        reroute,
        established: alive.len(),
        lost,
        stalled,
        worst_gap,
        new_opened: options.new_per_event,
        new_up,
        new_by_server,
        new_failures,
        route_changes: changes.iter().filter(|c| c.at >= mark).count(),
        route_line: changes.last().map(|c| c.line.clone()).unwrap_or_default(),
        withdrawals,
        packets_by_director,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_lines_give_the_routes_next_hops() {
        let multipath = "192.0.2.10 nhid 7 proto bgp metric 20 \\\tnexthop via 10.0.0.13 dev eth0 weight 1 \\\tnexthop via 10.0.0.11 dev eth0 weight 1 ";
        assert_eq!(
            parse_monitor_line(multipath, VIP),
            Some(vec!["10.0.0.11".to_owned(), "10.0.0.13".to_owned()])
        );
        assert_eq!(
            parse_monitor_line(
                "192.0.2.10 nhid 9 via 10.0.0.12 dev eth0 proto bgp metric 20 ",
                VIP
            ),
            Some(vec!["10.0.0.12".to_owned()])
        );
        assert_eq!(
            parse_monitor_line("Deleted 192.0.2.10 nhid 9 via 10.0.0.12 dev eth0 ", VIP),
            Some(Vec::new())
        );
        assert_eq!(
            parse_monitor_line("local 10.0.0.1 dev eth0 table local proto kernel", VIP),
            None
        );
        assert_eq!(
            parse_monitor_line("192.0.2.100 via 10.0.0.12 dev eth0", VIP),
            None
        );
    }

    #[test]
    fn ip_vs_files_give_the_totals_and_the_weights() {
        let stats = "   Total Incoming Outgoing         Incoming         Outgoing\n   Conns  Packets  Packets            Bytes            Bytes\n     12C     1A2B        0           1E2F3A                0\n\n Conns/s   Pkts/s   Pkts/s          Bytes/s          Bytes/s\n       0        0        0                0                0\n";
        assert_eq!(
            parse_ip_vs_stats(stats),
            Some(IpvsCounters {
                connections: 0x12c,
                packets: 0x1a2b
            })
        );
        let table = "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\nTCP  C000020A:1B58 mh \n  -> 0A000015:1B58      Route   1      100        0\n  -> 0A000016:1B58      Route   0      0          0\n";
        assert_eq!(
            parse_ip_vs_weights(table),
            vec![("rs1".to_owned(), 1), ("rs2".to_owned(), 0)]
        );
    }

    #[test]
    fn every_director_announces_the_vip_and_the_router_lists_every_director() {
        let router = router_bgpd();
        assert!(router.contains("bgp bestpath as-path multipath-relax"));
        assert!(router.contains("maximum-paths 8"));
        for (name, address) in DIRECTORS {
            assert!(router.contains(&format!("neighbor {address} bfd profile fast")));
            let bgpd = director_bgpd(name).unwrap();
            assert!(bgpd.contains(&format!("network {VIP_PREFIX}")), "{bgpd}");
        }
    }
}
