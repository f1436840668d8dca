//! The site both director stories of issue 17 run on, and how one event there is judged.
//! The active-active directors behind ECMP ([`super::active_active`]) and the active-standby
//! VRRP pair ([`super::active_standby`]) share all of it; they differ only in how the
//! router reaches a director.
//!
//! ```text
//!   client 10.9.0.10 + 10.9.0.100-199 ── br1 ── eth1 10.9.0.1  router 10.0.0.1 eth0 ── br0
//!   (sources taken in turn)                                                             │
//!   br0: the directors 10.0.0.11-14 (haldir: IPVS DR mh over rs1-rs3, TCP_CHECKs)  ─────┤
//!        rs1..rs3 10.0.0.21-23 (VIP/32 on lo, arp_ignore 1, arp_announce 2, default via router)
//! ```
//!
//! A [`Segment`] is that site without its directors. Its [`RouterWatch`] follows how the
//! router reaches the VIP (the next hops of its route, or its neighbour entry for a floating
//! address), each change stamped when `ip monitor` prints it, with no polling fork; its
//! [`StallMeter`] notes when the machine (the emulated VM) stopped running this process.
//! [`run_event`] acts, waits for the router's change and judges the long-lived connections
//! of a [`Traffic`] driver: an [`Event`]. Everything runs in one [`Lab`] and is torn down
//! with it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::haldir::Haldir;
use super::netns::{in_netns, Lab, DR_REAL_SERVER_SYSCTLS};
use super::stall::StallMeter;
use super::traffic::{EchoServer, Traffic, TrafficConfig, TrafficReport};
use super::{lock, poll_until, run_checked};

/// The virtual address of the service.
pub const VIP: &str = "192.0.2.10";
/// The service port (the real servers' echo service, checked by TCP_CHECK).
pub const SERVICE_PORT: u16 = 7000;
/// The upstream router.
pub const ROUTER: &str = "router";
/// The router's address on the directors' segment.
pub const ROUTER_ADDRESS: &str = "10.0.0.1";
/// The client host.
pub const CLIENT: &str = "client";
/// How many source addresses the client has (10.9.0.100 and up), taken in turn.
pub const CLIENT_SOURCES: u8 = 100;
/// Every director the sites may run, with its address: d1-d3 (and d4 later) of the
/// active-active site, d1 and d2 of the active-standby pair.
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
/// The real server that both stories stop.
pub const DYING_REAL_SERVER: &str = "rs2";
/// The client-side bridge (in the switch namespace, beside the lab's `br0`).
const CLIENT_BRIDGE: &str = "br1";

/// The service, as the client reaches it.
pub fn target() -> SocketAddr {
    SocketAddr::new(VIP.parse().expect("a valid literal"), SERVICE_PORT)
}

/// The address of director `name`.
pub fn director_address(name: &str) -> anyhow::Result<&'static str> {
    DIRECTORS
        .iter()
        .find(|(d, _)| *d == name)
        .map(|(_, a)| *a)
        .with_context(|| format!("no director {name:?}"))
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

/// The virtual server every director runs (TOML): IPVS DR `mh` with `scheduler_flags`
/// over rs1-rs3, in that order, each with a TCP_CHECK.
pub fn virtual_server_config(scheduler_flags: &[String]) -> String {
    let flags = if scheduler_flags.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = scheduler_flags.iter().map(|f| format!("{f:?}")).collect();
        format!("scheduler_flags = [{}]\n", quoted.join(", "))
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
        r#"[[virtual_server]]
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
{real_servers}"#
    )
}

/// Starts one haldir per name with `start`, all at once (a start is slow in the emulated
/// VM); every start's outcome, in the order of `names`.
pub fn start_together<'l>(
    names: &[&'static str],
    start: impl Fn(&'static str) -> anyhow::Result<Haldir<'l>> + Sync,
) -> Vec<anyhow::Result<Haldir<'l>>> {
    let start = &start;
    std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .iter()
            .map(|name| scope.spawn(move || start(name)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| bail!("a haldir start panicked"))
            })
            .collect()
    })
}

/// What a [`RouterWatch`] follows in the router.
#[derive(Debug, Clone, Copy)]
pub enum Watched<'a> {
    /// The route to this address (/32): its next hops (`ip monitor route nexthop`).
    Route(&'a str),
    /// The neighbour entry of this address: its link-layer address (`ip monitor neigh`).
    Neighbour(&'a str),
}

/// The router, the client and the real servers with their echo services, on the lab's
/// segment; the directors are the sites' own. See the module documentation.
pub struct Segment<'l> {
    lab: &'l Lab,
    echo: Vec<Option<EchoServer>>,
    watch: RouterWatch,
    stalls: StallMeter,
}

impl<'l> Segment<'l> {
    /// Builds the router (forwarding, hashing multipath routes on the L4 ports, loose
    /// reverse-path filter), the client on a bridge of its own with its source addresses,
    /// the real servers (VIP on `lo`, echo servers up); then starts following `watched`
    /// in the router and measuring stalls.
    pub fn build(lab: &'l Lab, watched: Watched<'_>) -> anyhow::Result<Segment<'l>> {
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
        let watch = RouterWatch::start(lab, ROUTER, watched)?;
        Ok(Segment {
            lab,
            echo,
            watch,
            stalls: StallMeter::start()?,
        })
    }

    /// The lab.
    pub fn lab(&self) -> &'l Lab {
        self.lab
    }

    /// The router's way to the VIP, as followed since the build.
    pub fn watch(&self) -> &RouterWatch {
        &self.watch
    }

    /// This process's stalls since the build.
    pub fn stalls(&self) -> &StallMeter {
        &self.stalls
    }

    /// Adds director host `name` with `address` on the segment, its default route via the
    /// router; it answers ARP only for addresses of the interface asked on (a VIP on `lo`
    /// stays its own), and takes the client's packets on any interface (no reverse-path
    /// filter: their sources are reachable only by the default route).
    pub fn add_director_host(&self, name: &str, address: &str) -> anyhow::Result<()> {
        let lab = self.lab;
        lab.add_host(name, &[&format!("{address}/24")])?;
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
        )
    }

    /// Cuts (or restores) director `name`'s link at the switch: its bridge port goes down
    /// and its `eth0` loses carrier. Nothing on the director is told.
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

    /// The kernel's sync daemons in director `name` (`ipvsadm -L --daemon`, one line each),
    /// or why they could not be read.
    pub fn sync_daemons(&self, name: &str) -> String {
        self.lab
            .run(name, &["ipvsadm", "-L", "--daemon"])
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_else(|e| format!("{e:#}"))
    }
}

/// What [`run_event`] and the shared steps of a story need of a site.
pub trait DirectorSite<'l> {
    /// The router, client and real servers.
    fn segment(&self) -> &Segment<'l>;
    /// The same, to stop a real server.
    fn segment_mut(&mut self) -> &mut Segment<'l>;
    /// Every director added so far, and whether its haldir still runs.
    fn directors_running(&self) -> Vec<(&'static str, bool)>;
    /// How often the directors have let the VIP go so far: `VIP withdrawn` log lines
    /// (active-active), VRRP state transitions (active-standby).
    fn departures(&self) -> usize;
    /// Everything a failure message needs.
    fn describe(&self) -> String;
}

/// The router's changes so far, then each of `directors`' weights, sync daemons and
/// haldir (state, status, log tail): the site's part of a failure message.
pub fn describe_directors<'a, 'l: 'a>(
    segment: &Segment<'l>,
    directors: impl IntoIterator<Item = (&'a str, &'a Haldir<'l>)>,
) -> String {
    let mut text = format!(
        "the router's changes: {:?}\n",
        segment
            .watch()
            .changes()
            .iter()
            .map(|c| &c.nexthops)
            .collect::<Vec<_>>()
    );
    for (name, haldir) in directors {
        text.push_str(&format!(
            "--- {name} weights {:?}; sync daemons: {}\n{}\n",
            segment.real_server_weights(name).unwrap_or_default(),
            segment.sync_daemons(name),
            haldir.describe()
        ));
    }
    text
}

/// Every director's IPVS counters (zero where they cannot be read).
fn counters<'l>(site: &impl DirectorSite<'l>) -> Vec<(String, IpvsCounters)> {
    let segment = site.segment();
    site.directors_running()
        .into_iter()
        .map(|(name, _)| {
            (
                name.to_owned(),
                segment.ipvs_counters(name).unwrap_or_default(),
            )
        })
        .collect()
}

/// Packets each director forwarded over `window`.
fn packets_over<'l>(site: &impl DirectorSite<'l>, window: Duration) -> Vec<(String, u64)> {
    let before = counters(site);
    std::thread::sleep(window);
    delta(&before, &counters(site), |c| c.packets)
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

/// One state of the router's way to the VIP, and when the change arrived.
#[derive(Debug, Clone)]
pub struct RouteChange {
    /// When `ip monitor` printed it.
    pub at: Instant,
    /// Where the router sends the VIP's packets: the next hops of its route, sorted
    /// (empty: no route), or the link-layer address of its neighbour entry (empty:
    /// unresolved).
    pub nexthops: Vec<String>,
    /// The route or neighbour entry as `ip` printed it.
    pub line: String,
}

/// The router's way to the VIP, followed by `ip -o monitor` in the router's namespace
/// ([`Watched`]). Stops on drop.
pub struct RouterWatch {
    child: Child,
    changes: Arc<Mutex<Vec<RouteChange>>>,
    reader: Option<JoinHandle<()>>,
}

impl RouterWatch {
    /// Starts following `watched` in host `host`.
    pub fn start(lab: &Lab, host: &str, watched: Watched<'_>) -> anyhow::Result<RouterWatch> {
        use std::io::BufRead as _;
        let ns = lab.ns_name(host);
        let (address, objects) = match watched {
            Watched::Route(address) => (address.to_owned(), ["route", "nexthop"].as_slice()),
            Watched::Neighbour(address) => (address.to_owned(), ["neigh"].as_slice()),
        };
        let mut child = Command::new("ip")
            .args(["-n", &ns, "-o", "monitor"])
            .args(objects)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start ip monitor")?;
        let stdout = child.stdout.take().context("ip monitor has no stdout")?;
        let route = matches!(watched, Watched::Route(_));
        let parse = if route {
            parse_monitor_line
        } else {
            parse_neighbour_line
        };
        let show: Vec<String> = if route {
            ["-o", "route", "show", &format!("{address}/32")]
                .map(String::from)
                .to_vec()
        } else {
            ["neigh", "show", &address].map(String::from).to_vec()
        };
        let read_current = move |ns: &str, address: &str| {
            let show: Vec<&str> = show.iter().map(String::as_str).collect();
            read_now(ns, &show, address, parse)
        };
        let (nexthops, line) = read_current(&ns, &address);
        let changes = Arc::new(Mutex::new(vec![RouteChange {
            at: Instant::now(),
            nexthops,
            line,
        }]));
        let reader = std::thread::Builder::new()
            .name(format!("watch-{host}"))
            .spawn({
                let changes = changes.clone();
                move || {
                    for line in std::io::BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        let at = Instant::now();
                        let (nexthops, line) = match parse(&line, &address) {
                            Some(hops) => (hops, line),
                            // A nexthop object changed: zebra may have changed the route's
                            // group in place, which prints no route line: read the route.
                            None if route
                                && (line.starts_with("id ") || line.starts_with("Deleted id ")) =>
                            {
                                read_current(&ns, &address)
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
            .context("cannot start the watch's reader")?;
        Ok(RouterWatch {
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

impl Drop for RouterWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// `ip -n NS ARGS...`, the first line of its output that `parse` reads as about `address`,
/// parsed, and the line (a fork: only at the start, and on a nexthop object's change).
fn read_now(
    ns: &str,
    args: &[&str],
    address: &str,
    parse: fn(&str, &str) -> Option<Vec<String>>,
) -> (Vec<String>, String) {
    let output = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .stdin(Stdio::null())
        .output();
    let text = output
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    text.lines()
        .find_map(|line| parse(line, address).map(|hops| (hops, line.to_owned())))
        .unwrap_or_default()
}

/// The link-layer address of a neighbour line of `ip monitor neigh` / `ip neigh show` for
/// `address`: `10.0.0.10 dev eth0 lladdr 02:00:00:00:00:0b REACHABLE`; an entry without one
/// (`INCOMPLETE`, `FAILED`) or `Deleted ...` is none. `None` for a line about anything else
/// (`miss ...`: a resolution request, no new state).
fn parse_neighbour_line(line: &str, address: &str) -> Option<Vec<String>> {
    let (deleted, rest) = match line.strip_prefix("Deleted ") {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let mut words = rest.split_whitespace();
    if words.next()? != address {
        return None;
    }
    if deleted {
        return Some(Vec::new());
    }
    let mut mac = Vec::new();
    while let Some(word) = words.next() {
        if word == "lladdr" {
            mac.extend(words.next().map(str::to_owned));
        }
    }
    Some(mac)
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

/// A story's site options `O`, pacing and bounds.
#[derive(Debug, Clone)]
pub struct StoryOptions<O> {
    /// The site.
    pub site: O,
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
    /// Bound on a change at the router after an event that takes a director out (a link
    /// cut, lost quorum, SIGTERM); generous, the story prints the figure.
    pub reroute_bound: Duration,
    /// Bound on a director's (re)appearance at the router (BGP session set-up, VRRP
    /// preemption after the bulk resync).
    pub appear_bound: Duration,
}

impl<O> StoryOptions<O> {
    /// 300 connections, a message every second each (what the emulated VM carries), 20 new
    /// connections per event, lost beyond 20 s of silence.
    pub fn with_site(site: O) -> StoryOptions<O> {
        StoryOptions {
            site,
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
    /// Where the router sends the VIP's packets after it ([`RouteChange::nexthops`]).
    pub nexthops: Vec<String>,
    /// When the router's way to the VIP changed, after the event's action ended (`None`: it
    /// did not, within the bound; for an event that must not change it, `None` is right).
    pub reroute: Option<Duration>,
    /// The time this process was not run ([`StallMeter`]) between the end of the action
    /// and the reroute (or the end of the action alone, without one): the time the machine
    /// took from the router's and the directors' daemons too, in all and the longest once.
    pub stalled_for: (Duration, Duration),
    /// Connections established before the event and alive then.
    pub established: usize,
    /// Of those, connections broken (reset, EOF, error) after the event, with their real
    /// server.
    pub lost: Vec<(usize, String)>,
    /// Of those, connections silent beyond the stall bound (counted as lost too).
    pub stalled: Vec<(usize, String)>,
    /// Why and when each lost connection broke, one line each.
    pub lost_why: Vec<String>,
    /// The site's description ([`DirectorSite::describe`]: the directors' logs) right after
    /// the event, when any connection was lost or stalled.
    pub lost_context: Option<String>,
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
    /// The router's changes from the event to its end (more than one: a flap).
    pub route_changes: usize,
    /// The router's route or neighbour entry at the end, as `ip` printed it.
    pub route_line: String,
    /// How often the directors let the VIP go during the event
    /// ([`DirectorSite::departures`]).
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
    /// From the directors' start to the router's reaching the VIP through them (the route
    /// over d1-d3; the neighbour entry at the master's MAC).
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
    /// `net.ipv4.vs.sloppy_tcp` in each director, as haldir set it (active-active).
    pub sloppy_tcp: Vec<(String, String)>,
    /// The router's neighbours on the directors' segment at the end (`ip neigh show dev
    /// eth0`).
    pub router_neighbours: String,
    /// The router's bgpd log of its sessions going up and down and why (`%ADJCHANGE` and
    /// `%NOTIFICATION` lines: `6/10 (Cease/BFD Down)` when BFD took a session down;
    /// active-active).
    pub router_adjacency_changes: Vec<String>,
    /// The events, in order.
    pub events: Vec<Event>,
    /// Connections with the lost real server at the time it died.
    pub dead_server_share: usize,
    /// Driver lags: the client was not scheduled (the VM was busy).
    pub driver_lags: Vec<Duration>,
    /// This process's stalls over the whole story ([`StallMeter`]): in all, the longest.
    pub stalled_for: (Duration, Duration),
    /// Total time.
    pub elapsed: Duration,
}

impl Story {
    /// Tells `event`'s line and keeps it.
    pub(crate) fn record(&mut self, event: Event, say: &mut dyn FnMut(&str)) {
        say(&event_line(&event));
        self.events.push(event);
    }
}

/// How often the kernel brings `/proc/net/ip_vs_stats` up to date (its estimator's period,
/// a bit more): a shorter window reads stale totals.
const STATS_PERIOD: Duration = Duration::from_millis(2500);

/// The stories' opening: starts the client's traffic, opens the long-lived connections
/// from its source addresses, and reads the spread (the connections each director
/// scheduled, the connections per real server) and the packets each director forwards.
/// Fails unless every connection came up.
pub(crate) fn open_connections<'l, O>(
    site: &impl DirectorSite<'l>,
    options: &StoryOptions<O>,
    story: &mut Story,
    say: &mut dyn FnMut(&str),
) -> anyhow::Result<Traffic> {
    let traffic = Traffic::start(site.segment().lab(), CLIENT, target(), options.traffic)?;
    let before = counters(site);
    let up = traffic.open_from(options.connections, "initial", &client_sources())?;
    story.opened = (up, options.connections);
    // The kernel folds its per-CPU counters into /proc/net/ip_vs_stats every 2 s.
    std::thread::sleep(STATS_PERIOD);
    story.connections_by_director = delta(&before, &counters(site), |c| c.connections);
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
    story.packets_by_director = packets_over(site, Duration::from_secs(5));
    say(&format!(
        "packets per director over 5 s: {:?}",
        story.packets_by_director
    ));
    Ok(traffic)
}

/// The stories' last event: [`DYING_REAL_SERVER`]'s service stops; only its connections
/// may go. The new connections are opened once every running director has taken it out
/// (weight 0).
pub(crate) fn real_server_dies<'l, S: DirectorSite<'l>, O>(
    site: &mut S,
    traffic: &Traffic,
    options: &StoryOptions<O>,
    story: &mut Story,
    say: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    story.dead_server_share = traffic
        .report()
        .connections
        .iter()
        .filter(|c| c.lost.is_none() && c.server.as_deref() == Some(DYING_REAL_SERVER))
        .count();
    let event = run_event(
        site,
        traffic,
        options,
        "rs2's service stopped (the real server dies)",
        |site| {
            site.segment_mut().stop_real_server(DYING_REAL_SERVER)?;
            let segment = site.segment();
            let out = poll_until(Duration::from_secs(60), Duration::from_millis(200), || {
                site.directors_running().iter().all(|(name, running)| {
                    !running
                        || segment.real_server_weights(name).is_ok_and(|w| {
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
    Ok(())
}

/// The stories' end: the router's neighbours on the directors' segment, then the traffic
/// stops; its lags and
/// the stalls of the whole story are kept.
pub(crate) fn finish(story: &mut Story, segment: &Segment<'_>, traffic: Traffic) {
    story.router_neighbours = segment
        .lab()
        .stdout(ROUTER, &["ip", "neigh", "show", "dev", "eth0"]);
    let report = traffic.stop();
    story.driver_lags = report.driver_lags.iter().map(|(_, lag)| *lag).collect();
    story.stalled_for = segment.stalls().total();
}

/// One line about an event, for the narration.
pub fn event_line(event: &Event) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (stalled, worst_stall) = event.stalled_for;
    let reroute = event.reroute.map_or_else(
        || "unchanged at the router".to_owned(),
        |d| {
            format!(
                "rerouted at the router after {:.0} ms (this process stalled {:.0} ms in it, \
                 {:.0} ms at worst)",
                ms(d),
                ms(stalled),
                ms(worst_stall)
            )
        },
    );
    let gap = event
        .worst_gap
        .map_or_else(|| "-".to_owned(), |g| format!("{:.2} s", g.as_secs_f64()));
    format!(
        "{}: {reroute} (via {:?}, {} changes; `{}`); lost {} of {} established \
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

/// What the router's way to the VIP must be after an event.
pub type RouteCondition<'a> = &'a dyn Fn(&[String]) -> bool;

/// Runs one event: `act`, then waits for the router's route to satisfy `route_after`
/// (when given), then until every connection alive before the event has echoed after it
/// (or the stall bound passed), then opens new connections.
pub fn run_event<'l, S: DirectorSite<'l>, O>(
    site: &mut S,
    traffic: &Traffic,
    options: &StoryOptions<O>,
    name: &str,
    act: impl FnOnce(&mut S) -> anyhow::Result<()>,
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
    let withdrawals_before = site.departures();
    let mark = Instant::now();
    act(site).with_context(|| format!("event {name:?}"))?;
    // The reroute is timed from the end of the action: in the emulated VM the fork and exec
    // of `ip link set` or `nft` alone takes a good part of a second, and the change it makes
    // comes at its very end. (d4's addition: from the moment its haldir runs.)
    let acted = Instant::now();
    let watch = site.segment().watch();
    let reroute = match route_after {
        Some(wanted) => {
            let Some(after) = watch.wait_for(mark, route_bound, wanted) else {
                bail!(
                    "{name}: the router's way to the VIP did not change as expected within \
                     {route_bound:?} (now {:?})\n{}",
                    watch.nexthops(),
                    site.describe()
                );
            };
            Some((mark + after).saturating_duration_since(acted))
        }
        None => None,
    };
    let stalled_for = site
        .segment()
        .stalls()
        .stalled_between(acted, acted + reroute.unwrap_or_default());
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
    let mut lost_why = Vec::new();
    for &id in &alive {
        let c = &report.connections[id];
        let server = c.server.clone().unwrap_or_default();
        if let Some((at, why)) = c.lost.as_ref().filter(|(at, _)| *at >= mark) {
            lost_why.push(format!(
                "conn {id} ({server}, opened {}): {:.3} s after the action: {why}",
                c.label,
                at.saturating_duration_since(mark).as_secs_f64()
            ));
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
    // What the directors logged, while it is there, when anything was lost.
    let lost_context = (!lost.is_empty() || !stalled.is_empty()).then(|| site.describe());
    let label = format!("after {name}");
    let packets_by_director = packets_over(site, STATS_PERIOD * 2);
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
    let watch = site.segment().watch();
    let changes = watch.changes();
    let withdrawals = site.departures().saturating_sub(withdrawals_before);
    Ok(Event {
        name: name.to_owned(),
        nexthops: watch.nexthops(),
        reroute,
        stalled_for,
        established: alive.len(),
        lost,
        stalled,
        lost_why,
        lost_context,
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
    fn neighbour_lines_give_the_link_layer_address() {
        let address = "10.0.0.10";
        assert_eq!(
            parse_neighbour_line(
                "10.0.0.10 dev eth0 lladdr 02:48:4c:00:00:0c REACHABLE",
                address
            ),
            Some(vec!["02:48:4c:00:00:0c".to_owned()])
        );
        assert_eq!(
            parse_neighbour_line("10.0.0.10 dev eth0 lladdr 02:48:4c:00:00:0b STALE", address),
            Some(vec!["02:48:4c:00:00:0b".to_owned()])
        );
        assert_eq!(
            parse_neighbour_line("10.0.0.10 dev eth0  FAILED", address),
            Some(Vec::new())
        );
        assert_eq!(
            parse_neighbour_line(
                "Deleted 10.0.0.10 dev eth0 lladdr 02:48:4c:00:00:0b STALE",
                address
            ),
            Some(Vec::new())
        );
        assert_eq!(
            parse_neighbour_line("miss 10.0.0.10 dev eth0  INCOMPLETE", address),
            None
        );
        assert_eq!(
            parse_neighbour_line(
                "10.0.0.100 dev eth0 lladdr 02:48:4c:00:00:0b STALE",
                address
            ),
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
}
