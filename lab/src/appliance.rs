//! The two-NIC LVS direct-routing appliance: the topology haldir is built for, in network
//! namespaces, reusable by the demo (`haldir-lab`) and the tests.
//!
//! ```text
//!  client 10.9.0.10 ── br2 ── gw eth1 10.9.0.1          (upstream; gw forwards, rp_filter off)
//!                              gw eth0 10.1.0.254 ─┐
//!           r1 eth0 10.1.0.1 ──────────────────────┼── br0  public: VRRP VI_PUBLIC, VIP 10.1.0.100
//!           r2 eth0 10.1.0.2 ──────────────────────┘
//!           r1 eth1 10.2.0.1 ──────────────────────┐
//!           r2 eth1 10.2.0.2 ──────────────────────┤
//!              rs1 10.2.0.11 ──────────────────────┼── br1  private: VI_PRIVATE (10.2.0.100),
//!              rs2 10.2.0.12 ──────────────────────┤        DR forwarding, IPVS sync daemon
//!                              gw eth2 10.2.0.254 ─┘
//! ```
//!
//! The three bridges live in the lab's switch namespace. The routers run haldir with a
//! `vrrp_sync_group` of two VRRPv3 instances (VI_PUBLIC on eth0 with the VIP, VI_PRIVATE
//! on eth1 with a floating private address), priorities 150 (r1) and 100 (r2), preempt;
//! `lvs_sync_daemon` on eth1 following VI_PUBLIC; and a DR `virtual_server` VIP:7000 (rr)
//! over rs1 and rs2 with `TCP_CHECK`s. The real servers hold the VIP on `lo` with
//! `arp_ignore=1` / `arp_announce=2`, run an [`EchoServer`] on port 7000, and answer the
//! client through their default route, gw's private leg, never through a router.
//!
//! A [`ForwardWatch`] on the private bridge sees which router forwards the client's
//! packets to the real servers, and when that changes: the data path's side of a failover.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::capture::{Frame, FrameKind};
use super::haldir::Haldir;
use super::netns::{in_netns, Lab, BRIDGE, DR_REAL_SERVER_SYSCTLS};
use super::traffic::{EchoServer, TrafficConfig};
use super::{lock, poll_until, run_checked};
use serde_json::Value;

/// The public virtual address clients connect to.
pub const VIP: &str = "10.1.0.100";
/// The floating address on the private side (VI_PRIVATE).
pub const PRIVATE_VIP: &str = "10.2.0.100";
/// The service port of the virtual server and of the echo servers.
pub const SERVICE_PORT: u16 = 7000;
/// The two routers (directors), in priority order.
pub const ROUTERS: [&str; 2] = ["r1", "r2"];
/// The real servers and their private addresses.
pub const REAL_SERVERS: [(&str, &str); 2] = [("rs1", "10.2.0.11"), ("rs2", "10.2.0.12")];
/// The client host.
pub const CLIENT: &str = "client";
/// The upstream gateway.
pub const GATEWAY: &str = "gw";
/// The VRRP instance names of the sync group.
pub const INSTANCES: [&str; 2] = ["VI_PUBLIC", "VI_PRIVATE"];
/// The public bridge (the lab's own `br0`).
pub const PUBLIC_BRIDGE: &str = BRIDGE;
/// The private bridge.
pub const PRIVATE_BRIDGE: &str = "br1";
/// The bridge between the client and the gateway.
pub const UPSTREAM_BRIDGE: &str = "br2";

const CLIENT_ADDR: &str = "10.9.0.10/24";
const GW_UPSTREAM: &str = "10.9.0.1";
const GW_PUBLIC: &str = "10.1.0.254";
const GW_PRIVATE: &str = "10.2.0.254";

/// Settings of the appliance's routers.
#[derive(Debug, Clone)]
pub struct ApplianceOptions {
    /// VRRPv3 advertisement interval of both instances (default 100 ms).
    pub advert_int: Duration,
    /// Priorities of r1 and r2 (default 150, 100).
    pub priorities: [u8; 2],
    /// `preempt_delay` in seconds (default 0).
    pub preempt_delay: f64,
    /// The sync daemon's `id` (default 51).
    pub sync_id: u8,
    /// Extra lines for `[global_defs]`.
    pub global_extra: Vec<String>,
}

impl Default for ApplianceOptions {
    fn default() -> Self {
        ApplianceOptions {
            advert_int: Duration::from_millis(100),
            priorities: [150, 100],
            preempt_delay: 0.0,
            sync_id: 51,
            global_extra: Vec::new(),
        }
    }
}

/// The appliance's hosts, links and echo servers in a [`Lab`]; see the module docs.
#[derive(Debug)]
pub struct Appliance<'l> {
    lab: &'l Lab,
    options: ApplianceOptions,
    echo: Vec<EchoServer>,
}

/// The MAC of a router's private NIC (`eth1`): `02:48:4c:01:00:0N`.
pub fn private_mac(router: &str) -> [u8; 6] {
    let n = if router == ROUTERS[0] { 1 } else { 2 };
    [0x02, 0x48, 0x4c, 0x01, 0x00, n]
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl<'l> Appliance<'l> {
    /// Builds the topology in `lab` (which must be fresh) and starts the echo servers.
    ///
    /// Commands are batched (`ip -n NS -batch FILE`) and sysctls written directly: under
    /// software emulation every fork+exec costs a good fraction of a second.
    pub fn build(lab: &'l Lab, options: ApplianceOptions) -> anyhow::Result<Appliance<'l>> {
        let sw = lab.switch_ns();
        let batch = |name: &str, ns: &str, lines: &[String]| -> anyhow::Result<()> {
            let file = lab.dir().join(format!("{name}.ip-batch"));
            std::fs::write(&file, lines.join("\n") + "\n")
                .with_context(|| format!("cannot write {}", file.display()))?;
            run_checked(
                std::process::Command::new("ip")
                    .args(["-n", ns, "-batch"])
                    .arg(&file),
            )
            .with_context(|| format!("ip -batch in {ns}:\n{}", lines.join("\n")))?;
            Ok(())
        };
        batch(
            "sw-bridges",
            &sw,
            &[PRIVATE_BRIDGE, UPSTREAM_BRIDGE]
                .iter()
                .flat_map(|bridge| {
                    [
                        format!(
                            "link add {bridge} type bridge stp_state 0 forward_delay 0 \
                             mcast_snooping 0"
                        ),
                        format!("link set {bridge} up"),
                    ]
                })
                .collect::<Vec<_>>(),
        )?;

        lab.add_host(GATEWAY, &[&format!("{GW_PUBLIC}/24")])?;
        lab.add_host(CLIENT, &[CLIENT_ADDR])?;
        for (n, router) in ROUTERS.iter().enumerate() {
            lab.add_host(router, &[&format!("10.1.0.{}/24", n + 1)])?;
        }
        for (server, address) in REAL_SERVERS {
            lab.add_host(server, &[&format!("{address}/24")])?;
        }

        // Second and third NICs.
        struct Nic {
            host: &'static str,
            ifname: &'static str,
            port: String,
            bridge: &'static str,
            mac: [u8; 6],
            address: String,
        }
        let mut nics = vec![
            Nic {
                host: GATEWAY,
                ifname: "eth1",
                port: "u-gw".into(),
                bridge: UPSTREAM_BRIDGE,
                mac: [0x02, 0x48, 0x4c, 0x02, 0x00, 0x01],
                address: format!("{GW_UPSTREAM}/24"),
            },
            Nic {
                host: GATEWAY,
                ifname: "eth2",
                port: "q-gw".into(),
                bridge: PRIVATE_BRIDGE,
                mac: [0x02, 0x48, 0x4c, 0x01, 0x00, 0xfe],
                address: format!("{GW_PRIVATE}/24"),
            },
        ];
        for (n, router) in ROUTERS.iter().enumerate() {
            nics.push(Nic {
                host: router,
                ifname: "eth1",
                port: format!("q-{router}"),
                bridge: PRIVATE_BRIDGE,
                mac: private_mac(router),
                address: format!("10.2.0.{}/24", n + 1),
            });
        }
        // The gateway forwards and must not drop the real servers' replies, which come
        // from the VIP on its private leg: no reverse-path filter (set before its NICs).
        lab.write_sysctls(
            GATEWAY,
            &[
                ("net/ipv4/ip_forward", "1"),
                ("net/ipv4/conf/all/rp_filter", "0"),
                ("net/ipv4/conf/default/rp_filter", "0"),
                ("net/ipv4/conf/eth0/rp_filter", "0"),
            ],
        )?;
        let mut sw_lines = Vec::new();
        for nic in &nics {
            sw_lines.push(format!(
                "link add {} type veth peer name {} netns {}",
                nic.port,
                nic.ifname,
                lab.ns_name(nic.host)
            ));
            sw_lines.push(format!("link set {} master {}", nic.port, nic.bridge));
            sw_lines.push(format!("link set {} up", nic.port));
        }
        // The client and the real servers were added on the public bridge: move them.
        for (host, bridge) in [
            (CLIENT, UPSTREAM_BRIDGE),
            (REAL_SERVERS[0].0, PRIVATE_BRIDGE),
            (REAL_SERVERS[1].0, PRIVATE_BRIDGE),
        ] {
            sw_lines.push(format!("link set p-{host} master {bridge}"));
        }
        batch("sw-ports", &sw, &sw_lines)?;

        let mut host_lines: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for nic in &nics {
            let (ifname, address) = (nic.ifname, &nic.address);
            let lines = host_lines.entry(nic.host).or_default();
            lines.push(format!("link set {ifname} address {}", mac_text(nic.mac)));
            lines.push(format!("addr add {address} dev {ifname}"));
            lines.push(format!("link set {ifname} up"));
        }
        host_lines
            .entry(CLIENT)
            .or_default()
            .push(format!("route add default via {GW_UPSTREAM}"));
        for router in ROUTERS {
            host_lines
                .entry(router)
                .or_default()
                .push(format!("route add default via {GW_PUBLIC}"));
        }
        for (server, _) in REAL_SERVERS {
            // The real servers hold the VIP on lo, never answer ARP for it nor use it in
            // ARP, and answer the client through the gateway.
            lab.write_sysctls(server, DR_REAL_SERVER_SYSCTLS)?;
            let lines = host_lines.entry(server).or_default();
            lines.push(format!("addr add {VIP}/32 dev lo"));
            lines.push(format!("route add default via {GW_PRIVATE}"));
        }
        for (host, lines) in &host_lines {
            batch(host, &lab.ns_name(host), lines)?;
        }

        let mut echo = Vec::new();
        for (server, _) in REAL_SERVERS {
            echo.push(EchoServer::start(lab, server, SERVICE_PORT)?);
        }
        Ok(Appliance { lab, options, echo })
    }

    /// The lab it lives in.
    pub fn lab(&self) -> &'l Lab {
        self.lab
    }

    /// Its options.
    pub fn options(&self) -> &ApplianceOptions {
        &self.options
    }

    /// The echo servers, rs1 first.
    pub fn echo_servers(&self) -> &[EchoServer] {
        &self.echo
    }

    /// Where the client connects: VIP:7000.
    pub fn target() -> SocketAddr {
        SocketAddr::new(
            VIP.parse::<Ipv4Addr>().expect("literal").into(),
            SERVICE_PORT,
        )
    }

    /// The haldir configuration (TOML) of `router` ("r1" or "r2").
    pub fn router_config(&self, router: &str) -> String {
        router_config(&self.options, router)
    }

    /// Starts haldir in `router` with [`Appliance::router_config`].
    pub fn start_router(&self, router: &str, binary: &Path) -> anyhow::Result<Haldir<'l>> {
        Haldir::start_with_timeout(
            self.lab,
            router,
            binary,
            &self.router_config(router),
            &[],
            Duration::from_secs(60),
        )
    }

    /// Which routers hold the public VIP, and which the private one (read with
    /// getifaddrs(3) inside each router's namespace: no fork).
    pub fn holders(&self) -> (Vec<&'static str>, Vec<&'static str>) {
        let vip: IpAddr = VIP.parse().expect("literal");
        let private: IpAddr = PRIVATE_VIP.parse().expect("literal");
        let mut public_on = Vec::new();
        let mut private_on = Vec::new();
        for router in ROUTERS {
            let addresses = self.addresses(router);
            if addresses.contains(&vip) {
                public_on.push(router);
            }
            if addresses.contains(&private) {
                private_on.push(router);
            }
        }
        (public_on, private_on)
    }

    /// Every address of host `host` (empty when it cannot be read).
    pub fn addresses(&self, host: &str) -> Vec<IpAddr> {
        in_netns(&self.lab.ns_name(host), || {
            nix::ifaddrs::getifaddrs()
                .map(|list| {
                    list.filter_map(|a| {
                        let address = a.address?;
                        if let Some(v4) = address.as_sockaddr_in() {
                            Some(IpAddr::V4(v4.ip()))
                        } else {
                            address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
                        }
                    })
                    .collect()
                })
                .unwrap_or_default()
        })
        .unwrap_or_default()
    }

    /// Waits up to `timeout` until `master` has both instances MASTER and `backup` both
    /// BACKUP (a `None` backup: not checked, e.g. killed), and both VIPs are on `master`
    /// and not on the backup.
    pub fn wait_roles(
        &self,
        master: &Haldir<'_>,
        backup: Option<&Haldir<'_>>,
        timeout: Duration,
    ) -> bool {
        poll_until(timeout, Duration::from_millis(50), || {
            let states_ok = INSTANCES.iter().all(|i| {
                master.instance_state(i).as_deref() == Some("MASTER")
                    && backup.is_none_or(|b| b.instance_state(i).as_deref() == Some("BACKUP"))
            });
            let (public, private) = self.holders();
            let holds = |list: &[&str]| {
                list.contains(&master.host()) && backup.is_none_or(|b| !list.contains(&b.host()))
            };
            states_ok && holds(&public) && holds(&private)
        })
    }

    /// Cuts (or restores) both of `router`'s links at the switch (public and private bridge
    /// ports): the router is gone from both segments, whatever its kernel still holds.
    pub fn set_links(&self, router: &str, up: bool) -> anyhow::Result<()> {
        self.lab.link_set("sw", &format!("p-{router}"), up)?;
        self.lab.link_set("sw", &format!("q-{router}"), up)
    }

    /// The link-layer address the gateway holds for [`VIP`] on the public bridge (`ip
    /// neigh`, read from outside the routers), if it has one.
    pub fn gateway_mac_for_vip(&self) -> Option<[u8; 6]> {
        let out = self
            .lab
            .run(GATEWAY, &["ip", "-4", "neigh", "show", VIP])
            .ok()?;
        neighbour_lladdr(&String::from_utf8_lossy(&out.stdout))
    }

    /// Cuts (or restores) `router`'s private link at the switch: its bridge port goes down,
    /// so the router's `eth1` loses carrier.
    pub fn set_private_link(&self, router: &str, up: bool) -> anyhow::Result<()> {
        self.lab.link_set("sw", &format!("q-{router}"), up)
    }

    /// `ipvsadm ARGS` in `router`'s namespace, its stdout.
    pub fn ipvsadm(&self, router: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["ipvsadm"];
        all.extend_from_slice(args);
        let out = self.lab.run(router, &all)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Established connections to VIP:7000 in `router`'s IPVS connection table.
    pub fn ipvs_established(&self, router: &str) -> anyhow::Result<usize> {
        let service = format!("{VIP}:{SERVICE_PORT}");
        Ok(self
            .ipvsadm(router, &["-Lnc"])?
            .lines()
            .filter(|l| l.contains("ESTABLISHED") && l.contains(&service))
            .count())
    }

    /// The real servers in `router`'s IPVS service VIP:7000 (addresses, sorted).
    pub fn ipvs_destinations(&self, router: &str) -> anyhow::Result<Vec<String>> {
        let service = format!("{VIP}:{SERVICE_PORT}");
        let mut in_service = false;
        let mut list = Vec::new();
        for line in self.ipvsadm(router, &["-Ln"])?.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["TCP", addr, ..] => in_service = *addr == service,
                ["->", addr, ..] if in_service && *addr != "RemoteAddress:Port" => {
                    list.push((*addr).to_owned())
                }
                _ => {}
            }
        }
        list.sort();
        Ok(list)
    }

    /// The real servers of the configured service, as `ipvsadm -Ln` lists them (sorted).
    pub fn configured_destinations(&self) -> Vec<String> {
        let mut want: Vec<String> = REAL_SERVERS
            .iter()
            .map(|(_, a)| format!("{a}:{SERVICE_PORT}"))
            .collect();
        want.sort();
        want
    }

    /// Waits up to `timeout` until r1's IPVS has the configured service with every real
    /// server, r1 runs the master sync daemon and r2 the backup one (read with `ipvsadm`).
    pub fn wait_ipvs_ready(&self, timeout: Duration) -> bool {
        let want = self.configured_destinations();
        poll_until(timeout, Duration::from_millis(500), || {
            self.ipvs_destinations("r1").ok().as_ref() == Some(&want)
                && self
                    .sync_daemons("r1")
                    .is_ok_and(|d| d.contains("master sync daemon"))
                && self
                    .sync_daemons("r2")
                    .is_ok_and(|d| d.contains("backup sync daemon"))
        })
    }

    /// The kernel's sync daemons in `router` (`ipvsadm -L --daemon`), one line each.
    pub fn sync_daemons(&self, router: &str) -> anyhow::Result<String> {
        Ok(self
            .ipvsadm(router, &["-L", "--daemon"])?
            .lines()
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("; "))
    }
}

/// The haldir configuration (TOML) of appliance router `router` ("r1" or "r2").
pub fn router_config(o: &ApplianceOptions, router: &str) -> String {
    let priority = if router == ROUTERS[0] {
        o.priorities[0]
    } else {
        o.priorities[1]
    };
    let advert_int = format!("{:.2}", o.advert_int.as_secs_f64());
    let global_extra = o.global_extra.join("\n");
    let instance = |name: &str, interface: &str, vrid: u8, vip: &str| {
        format!(
            r#"[[vrrp_instance]]
name = "{name}"
interface = "{interface}"
version = 3
virtual_router_id = {vrid}
priority = {priority}
advert_int = {advert_int}
preempt_delay = {preempt_delay}
virtual_ipaddress = ["{vip}/32"]
"#,
            preempt_delay = o.preempt_delay,
        )
    };
    let real_servers: String = REAL_SERVERS
        .iter()
        .map(|(_, address)| {
            format!(
                "\n[[virtual_server.real_server]]\nip = \"{address}\"\nport = {SERVICE_PORT}\nweight = 1\nTCP_CHECK = {{ connect_timeout = 3, retry = 2, delay_before_retry = 1 }}\n"
            )
        })
        .collect();
    format!(
        r#"# haldir-lab appliance: router {router} (written by lab/src/appliance.rs)
[global_defs]
router_id = "{router}"
lvs_sync_daemon = {{ interface = "eth1", instance = "VI_PUBLIC", id = {sync_id} }}
{global_extra}

[[vrrp_sync_group]]
name = "VG_APPLIANCE"
group = ["VI_PUBLIC", "VI_PRIVATE"]

{public}
{private}
[[virtual_server]]
ip = "{VIP}"
port = {SERVICE_PORT}
protocol = "TCP"
lb_algo = "rr"
lb_kind = "DR"
delay_loop = 1
{real_servers}"#,
        sync_id = o.sync_id,
        public = instance("VI_PUBLIC", "eth0", 51, VIP),
        private = instance("VI_PRIVATE", "eth1", 52, PRIVATE_VIP),
    )
}

/// True when this kernel has IPVS (after trying `modprobe ip_vs`).
pub fn kernel_has_ipvs() -> bool {
    let present = || Path::new("/proc/net/ip_vs").exists();
    if present() {
        return true;
    }
    let _ = std::process::Command::new("modprobe")
        .arg("ip_vs")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    present()
}

/// A router starting or stopping to forward the VIP's traffic to the real servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardChange {
    /// When the first frame of the new forwarder was seen.
    pub at: Instant,
    /// The router that forwards from then on (index into [`ROUTERS`]).
    pub router: usize,
    /// When the previous forwarder's last frame was seen (`None` for the first).
    pub previous_last: Option<Instant>,
}

#[derive(Debug, Default)]
struct ForwardLog {
    changes: Vec<ForwardChange>,
    current: Option<usize>,
    last_frame: Option<Instant>,
    frames: [u64; 2],
}

/// Watches the private bridge for frames to the VIP sent by a router's `eth1` (direct
/// routing keeps the VIP as destination and rewrites only the MAC), and records every
/// change of forwarder. Stops on drop.
pub struct ForwardWatch {
    log: Arc<Mutex<ForwardLog>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ForwardWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardWatch").finish_non_exhaustive()
    }
}

impl ForwardWatch {
    /// Starts watching [`PRIVATE_BRIDGE`] in `lab`'s switch namespace.
    pub fn start(lab: &Lab) -> anyhow::Result<ForwardWatch> {
        let ns = lab.switch_ns();
        let mut receiver = super::capture::open_receiver(&ns, PRIVATE_BRIDGE, 1 << 20)?;
        let vip: Ipv4Addr = VIP.parse().expect("literal");
        let macs = [private_mac(ROUTERS[0]), private_mac(ROUTERS[1])];
        let log = Arc::new(Mutex::new(ForwardLog::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("forward-watch".into())
            .spawn({
                let (log, stop) = (log.clone(), stop.clone());
                move || {
                    while !stop.load(Ordering::SeqCst) {
                        let Ok(frame) = receiver.next() else { continue };
                        let at = Instant::now();
                        let Some(router) = forwarded_by(frame, vip, &macs) else {
                            continue;
                        };
                        let mut log = lock(&log);
                        log.frames[router] += 1;
                        if log.current != Some(router) {
                            let previous_last = log.current.and(log.last_frame);
                            log.changes.push(ForwardChange {
                                at,
                                router,
                                previous_last,
                            });
                            log.current = Some(router);
                        }
                        log.last_frame = Some(at);
                    }
                }
            })
            .context("cannot start the forward watch")?;
        Ok(ForwardWatch {
            log,
            stop,
            thread: Some(thread),
        })
    }

    /// Every change of forwarder so far.
    pub fn changes(&self) -> Vec<ForwardChange> {
        lock(&self.log).changes.clone()
    }

    /// Frames forwarded so far by r1 and r2.
    pub fn frames(&self) -> [u64; 2] {
        lock(&self.log).frames
    }

    /// The first change to `router` at or after `mark`.
    pub fn first_change_to(&self, router: usize, mark: Instant) -> Option<ForwardChange> {
        lock(&self.log)
            .changes
            .iter()
            .find(|c| c.router == router && c.at >= mark)
            .copied()
    }
}

impl Drop for ForwardWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The link-layer address of an `ip neigh show ADDRESS` line
/// (`10.1.0.100 dev eth0 lladdr 02:00:00:00:00:02 REACHABLE`), if it has one.
fn neighbour_lladdr(text: &str) -> Option<[u8; 6]> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let at = fields.iter().position(|f| *f == "lladdr")?;
    let parts: Vec<&str> = fields.get(at + 1)?.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    Some(mac)
}

/// Which router (index into `macs`) sent this IPv4 frame to `vip`, if any.
fn forwarded_by(frame: &[u8], vip: Ipv4Addr, macs: &[[u8; 6]; 2]) -> Option<usize> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let dst: [u8; 4] = frame.get(14 + 16..14 + 20)?.try_into().ok()?;
    if Ipv4Addr::from(dst) != vip {
        return None;
    }
    let src = frame.get(6..12)?;
    macs.iter().position(|m| m[..] == *src)
}

/// One takeover, as seen on the wire and by the client, relative to `mark` (the event).
#[derive(Debug, Clone)]
pub struct Timeline {
    /// The event all offsets are relative to.
    pub mark: Instant,
    /// (when, what), sorted.
    pub events: Vec<(Instant, String)>,
    /// The new master's first gratuitous ARP for [`VIP`] on the public bridge, at or
    /// after the event (`None`: not seen).
    pub garp_from_new: Option<Instant>,
    /// The first client packet the new master forwarded to a real server (a frame to
    /// [`VIP`] from its private MAC on the private bridge), at or after the event
    /// (`None`: not seen).
    pub first_forwarded_by_new: Option<Instant>,
}

impl Timeline {
    /// Builds the timeline of `new` taking over from `old` (router names) after `mark`,
    /// from the public bridge's frames and the forward watch.
    pub fn of_takeover(
        lab: &Lab,
        frames: &[Frame],
        forward: &ForwardWatch,
        mark: Instant,
        old: &str,
        new: &str,
    ) -> anyhow::Result<Timeline> {
        let old_mac = lab.mac_bytes(old)?;
        let new_mac = lab.mac_bytes(new)?;
        let vip: Ipv4Addr = VIP.parse().expect("literal");
        let mut events = Vec::new();
        let mut garp_from_new = None;
        let mut first_forwarded_by_new = None;
        if let Some(f) = frames
            .iter()
            .rfind(|f| f.kind.is_vrrp() && f.src_mac() == old_mac && f.at <= mark)
        {
            events.push((
                f.at,
                format!("last VRRP advert from {old} before the event"),
            ));
        }
        if let Some(f) = frames
            .iter()
            .find(|f| f.kind.is_vrrp() && f.src_mac() == new_mac && f.at >= mark)
        {
            events.push((f.at, format!("first VRRP advert from {new} (master)")));
        }
        if let Some(f) = frames.iter().find(|f| {
            f.kind == FrameKind::Arp
                && f.src_mac() == new_mac
                && f.at >= mark
                && arp_target(&f.bytes) == Some(vip)
        }) {
            events.push((f.at, format!("first gratuitous ARP for {VIP} from {new}")));
            garp_from_new = Some(f.at);
        }
        let new_index = ROUTERS.iter().position(|r| *r == new).unwrap_or(0);
        if let Some(change) = forward.first_change_to(new_index, mark) {
            if let Some(last) = change.previous_last {
                events.push((last, format!("last client packet forwarded by {old}")));
            }
            events.push((
                change.at,
                format!("first client packet forwarded by {new} to a real server"),
            ));
            first_forwarded_by_new = Some(change.at);
        }
        events.sort_by_key(|(at, _)| *at);
        Ok(Timeline {
            mark,
            events,
            garp_from_new,
            first_forwarded_by_new,
        })
    }

    /// Adds an event.
    pub fn push(&mut self, at: Instant, what: impl Into<String>) {
        self.events.push((at, what.into()));
        self.events.sort_by_key(|(at, _)| *at);
    }

    /// The offset of the event described by a line containing `what`, if any.
    pub fn offset_of(&self, what: &str) -> Option<f64> {
        self.events
            .iter()
            .find(|(_, w)| w.contains(what))
            .map(|(at, _)| offset_ms(self.mark, *at))
    }
}

fn offset_ms(mark: Instant, at: Instant) -> f64 {
    if at >= mark {
        (at - mark).as_secs_f64() * 1000.0
    } else {
        -((mark - at).as_secs_f64() * 1000.0)
    }
}

impl std::fmt::Display for Timeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (at, what) in &self.events {
            writeln!(f, "   {:+10.1} ms  {what}", offset_ms(self.mark, *at))?;
        }
        Ok(())
    }
}

/// The target protocol address of an ARP frame.
fn arp_target(frame: &[u8]) -> Option<Ipv4Addr> {
    let bytes: [u8; 4] = frame.get(14 + 24..14 + 28)?.try_into().ok()?;
    Some(Ipv4Addr::from(bytes))
}

/// The address part of [`VIP`].
pub fn vip() -> IpAddr {
    VIP.parse().expect("literal")
}

/// What [`run_story`] does: how many connections, how to fail the master, how long to wait.
#[derive(Debug, Clone)]
pub struct StoryOptions {
    /// The haldir binary the routers run.
    pub binary: std::path::PathBuf,
    /// The routers' settings.
    pub appliance: ApplianceOptions,
    /// Long-lived connections opened before the failure (default 200).
    pub connections: usize,
    /// New connections opened after each takeover (default 20).
    pub new_connections: usize,
    /// Stop the master with SIGTERM instead of kill -9.
    pub graceful: bool,
    /// After stopping the master's haldir, also cut both of its links at the switch: the
    /// old master is really gone (its kernel, which keeps the VIPs and the IPVS table after
    /// a kill -9, can no longer forward), so the connections survive only if the new
    /// master moved the traffic (gratuitous ARP) and forwards it. The links come back
    /// just before haldir starts again on it. Default false.
    pub isolate_old_master: bool,
    /// Run the acts after the two failovers (bulk resync report, DR ARP check, private
    /// link cut). Default true.
    pub extras: bool,
    /// A connection silent for longer than this is stalled (default 3 s).
    pub stall_threshold: Duration,
    /// How long the traffic runs after each takeover before it is judged (default 4 s,
    /// longer than the stall threshold so that a black-holed connection shows).
    pub settle: Duration,
    /// Bound on each election or takeover (default 60 s: a returning master may hold its
    /// preemption until it has the connection table).
    pub takeover_timeout: Duration,
    /// Pacing of the connections.
    pub traffic: TrafficConfig,
}

impl StoryOptions {
    /// The defaults, with routers running `binary`.
    pub fn new(binary: std::path::PathBuf) -> StoryOptions {
        StoryOptions {
            binary,
            appliance: ApplianceOptions::default(),
            connections: 200,
            new_connections: 20,
            graceful: false,
            isolate_old_master: false,
            extras: true,
            stall_threshold: Duration::from_secs(3),
            settle: Duration::from_secs(4),
            takeover_timeout: Duration::from_secs(60),
            traffic: TrafficConfig::default(),
        }
    }
}

/// One takeover of the story, judged from the client's side.
#[derive(Debug, Clone)]
pub struct Leg {
    /// What happened ("kill -9 of haldir on r1", ...).
    pub name: String,
    /// The router that took over.
    pub new_master: String,
    /// The wire and the routers around the event (0 = the event).
    pub timeline: Timeline,
    /// From the event until the new master reported both instances MASTER.
    pub takeover: Duration,
    /// Connections alive at the event.
    pub established: usize,
    /// Of those, the ones that kept exchanging (neither lost nor stalled).
    pub survived: usize,
    /// Those lost after the event, described.
    pub lost: Vec<String>,
    /// Those stalled after the event, described.
    pub stalled: Vec<String>,
    /// The longest silence of any connection that ended after the event (None: every
    /// connection kept its pace, no gap over twice the interval) and its connection id.
    pub longest_gap: Option<(Duration, usize)>,
    /// New connections opened after the takeover, and how many came up.
    pub new_opened: usize,
    /// See `new_opened`.
    pub new_up: usize,
    /// How many connections the new master's IPVS knew (ESTABLISHED) just before the
    /// event, thanks to the sync daemon.
    pub synced_before: usize,
    /// Messages echoed per second from the event until the leg was judged, and what the
    /// connections alive at the event would echo at their pace: a much lower rate means
    /// the machine (say, a loaded, software-emulated VM) could not keep up.
    pub echo_rate: (f64, f64),
    /// Why new connections failed, if any did.
    pub new_failures: Vec<String>,
    /// The new master's first gratuitous ARP for the VIP on the public bridge, after the
    /// event (from the capture; `None`: not seen).
    pub garp_seen: Option<Duration>,
    /// The first client packet the new master forwarded to a real server, after the event
    /// (from the private bridge; `None`: not seen).
    pub first_forwarded: Option<Duration>,
    /// Whether the gateway's neighbour entry for the VIP (`ip neigh`, read when the leg is
    /// judged) names the new master's public MAC.
    pub gateway_follows_new: bool,
    /// Whether the old master was cut off both segments for this leg (see
    /// [`StoryOptions::isolate_old_master`]).
    pub old_master_isolated: bool,
    /// Times the client program itself was not scheduled for more than half a second
    /// after the event: (offset from the event in ms, how long). Silences overlapping
    /// them come from the machine (a starved VM), not from the network.
    pub driver_lags: Vec<(f64, Duration)>,
}

/// The whole story's outcome.
#[derive(Debug, Clone)]
pub struct Story {
    /// The failover, then the return of the old master.
    pub legs: Vec<Leg>,
    /// Connections by real server, over the whole run.
    pub by_server: std::collections::BTreeMap<String, usize>,
    /// Messages echoed over the whole run.
    pub exchanges: u64,
    /// Wall time of the whole story, topology to cleanup.
    pub elapsed: Duration,
    /// Connections that failed while being opened at the start, before any event, and
    /// were replaced (why each failed).
    pub setup_failures: Vec<String>,
    /// The acts after the failovers.
    pub extras: Extras,
}

impl Story {
    /// True when no connection was lost or stalled and every new connection came up.
    pub fn clean(&self) -> bool {
        self.legs.iter().all(|l| {
            l.lost.is_empty()
                && l.stalled.is_empty()
                && l.garp_seen.is_some()
                && l.first_forwarded.is_some()
                && l.gateway_follows_new
                && l.survived == l.established
                && l.new_up == l.new_opened
        })
    }
}

/// One takeover as the story saw it, before the client's traffic is judged.
struct LegEvent<'a> {
    name: String,
    new_master: &'a str,
    /// The event (0 of the timeline).
    mark: Instant,
    /// When the new master reported both instances MASTER.
    took_over: Instant,
    exchanges_at_mark: u64,
    synced_before: usize,
    new_up: usize,
    gateway_follows_new: bool,
    old_master_isolated: bool,
    /// The traffic label of the connections opened after the takeover.
    new_label: &'a str,
}

/// Judges the client's traffic around `event`.
fn judge_leg(
    event: LegEvent<'_>,
    timeline: Timeline,
    report: &super::traffic::TrafficReport,
    options: &StoryOptions,
) -> Leg {
    let mark = event.mark;
    let (established, survived, lost, stalled) = leg_outcome(report, mark, options.stall_threshold);
    let after_mark = |at: Option<Instant>| at.map(|at| at.saturating_duration_since(mark));
    let garp_seen = after_mark(timeline.garp_from_new);
    let first_forwarded = after_mark(timeline.first_forwarded_by_new);
    Leg {
        name: event.name,
        new_master: event.new_master.into(),
        timeline,
        takeover: event.took_over - mark,
        established,
        survived,
        lost,
        stalled,
        longest_gap: report.longest_gap_after(mark),
        new_opened: options.new_connections,
        new_up: event.new_up,
        synced_before: event.synced_before,
        echo_rate: echo_rate(
            report,
            event.exchanges_at_mark,
            mark,
            established,
            options.traffic.interval,
        ),
        new_failures: failures_of(report, event.new_label),
        driver_lags: lags_after(report, mark),
        garp_seen,
        first_forwarded,
        gateway_follows_new: event.gateway_follows_new,
        old_master_isolated: event.old_master_isolated,
    }
}

fn leg_outcome(
    report: &super::traffic::TrafficReport,
    mark: Instant,
    threshold: Duration,
) -> (usize, usize, Vec<String>, Vec<String>) {
    let mut established = 0;
    let mut lost = Vec::new();
    let mut stalled = Vec::new();
    for c in &report.connections {
        let alive_at_mark = c.opened < mark
            && c.server.is_some()
            && c.lost.as_ref().is_none_or(|(at, _)| *at >= mark);
        if !alive_at_mark {
            continue;
        }
        established += 1;
        let who = who(c);
        if let Some((at, why)) = &c.lost {
            lost.push(format!(
                "{who}: lost {:+.3} s after the event, after {} exchanges, the last echo at \
                 {}: {why}",
                offset_ms(mark, *at) / 1000.0,
                c.exchanges,
                c.last_echo
                    .map(|t| format!("{:+.3} s", offset_ms(mark, t) / 1000.0))
                    .unwrap_or_else(|| "-".into())
            ));
            continue;
        }
        // A silence counts against the event when it lasted past `mark + threshold` and is
        // longer than the threshold once the time the client program itself was not
        // scheduled is taken out (then nothing could be measured: a starved VM). One that
        // began before the event and ended soon after it did not come from the event.
        let ongoing = c.last_echo.map(|last| (last, report.at));
        let worst = c
            .gaps
            .iter()
            .copied()
            .chain(ongoing)
            .filter(|(_, end)| *end > mark + threshold)
            .map(|(start, end)| {
                let gap = end.saturating_duration_since(start);
                (
                    gap.saturating_sub(frozen_within(report, start, end)),
                    gap,
                    start,
                )
            })
            .filter(|(effective, _, _)| *effective > threshold)
            .max();
        if let Some((effective, gap, start)) = worst {
            stalled.push(format!(
                "{who}: no echo for {:.3} s from {:+.3} s ({:.3} s without the client's own \
                 unscheduled time)",
                gap.as_secs_f64(),
                offset_ms(mark, start) / 1000.0,
                effective.as_secs_f64()
            ));
        }
    }
    let survived = established - lost.len() - stalled.len();
    (established, survived, lost, stalled)
}

/// How much of `[start, end]` the traffic driver itself spent unscheduled (its own timer
/// firing late, see [`super::traffic::TrafficReport::driver_lags`]).
fn frozen_within(report: &super::traffic::TrafficReport, start: Instant, end: Instant) -> Duration {
    report
        .driver_lags
        .iter()
        .map(|(at, late)| {
            let (from, to) = (*at, *at + *late);
            let (from, to) = (from.max(start), to.min(end));
            to.saturating_duration_since(from)
        })
        .sum()
}

fn echo_rate(
    report: &super::traffic::TrafficReport,
    exchanges_at_mark: u64,
    mark: Instant,
    established: usize,
    interval: Duration,
) -> (f64, f64) {
    let seconds = report
        .at
        .saturating_duration_since(mark)
        .as_secs_f64()
        .max(0.001);
    let measured = (report.exchanges() - exchanges_at_mark) as f64 / seconds;
    (measured, established as f64 / interval.as_secs_f64())
}

/// Why the connections labelled `label` that did not come up failed.
fn failures_of(report: &super::traffic::TrafficReport, label: &str) -> Vec<String> {
    report
        .connections
        .iter()
        .filter(|c| c.label == label && c.server.is_none())
        .map(|c| {
            format!(
                "new conn {}: {}",
                c.id,
                c.lost
                    .as_ref()
                    .map_or("no greeting yet".to_owned(), |(_, why)| why.clone())
            )
        })
        .collect()
}

/// `conn ID (LABEL, via SERVER)`, as the story names a connection.
fn who(c: &super::traffic::Connection) -> String {
    format!(
        "conn {} ({}, via {})",
        c.id,
        c.label,
        c.server.as_deref().unwrap_or("-")
    )
}

/// Connections that came up (a real server greeted them) and were lost since: who, which
/// real server, after how long, why.
fn lost_while_up(report: &super::traffic::TrafficReport) -> Vec<String> {
    report
        .connections
        .iter()
        .filter_map(|c| {
            let (at, why) = c.lost.as_ref()?;
            c.server.as_ref()?;
            Some(format!(
                "{} lost {:.3} s after it opened, after {} exchanges: {why}",
                who(c),
                at.saturating_duration_since(c.opened).as_secs_f64(),
                c.exchanges
            ))
        })
        .collect()
}

/// The driver's own lateness after `mark`.
fn lags_after(report: &super::traffic::TrafficReport, mark: Instant) -> Vec<(f64, Duration)> {
    report
        .driver_lags
        .iter()
        .filter(|(at, _)| *at >= mark)
        .map(|(at, late)| (offset_ms(mark, *at), *late))
        .collect()
}

/// The warnings and errors of a log (the last 20), then its last `lines` lines.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let warnings: Vec<&str> = all
        .iter()
        .copied()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    format!(
        "(warnings and errors)\n{}\n(last lines)\n{}",
        warnings[warnings.len().saturating_sub(20)..].join("\n"),
        all[all.len().saturating_sub(lines)..].join("\n")
    )
}

/// The appliance's failover story, told through `say`: build the appliance in a new lab,
/// elect r1, open the long-lived connections, fail r1's haldir (kill -9 unless graceful),
/// let r2 take over, open new connections, restart r1's haldir and let it preempt, open new
/// connections again; then stop everything and remove the lab. Each takeover is judged
/// from the client's side ([`Leg`]). Fails (with the routers' logs) only when the story
/// cannot go on: no election, no takeover, connections that cannot be opened at start.
pub fn run_story(options: &StoryOptions, say: &mut dyn FnMut(&str)) -> anyhow::Result<Story> {
    use super::capture::Capture;
    use super::traffic::Traffic;

    let started = Instant::now();
    let lab = Lab::new("appliance")?;
    let app = Appliance::build(&lab, options.appliance.clone())?;
    say(&format!(
        "built the appliance in {:.1} s: client - gw - public bridge (r1, r2 eth0) and private \
         bridge (r1, r2 eth1, rs1, rs2, gw)",
        started.elapsed().as_secs_f64()
    ));
    let capture = Capture::start(&lab)?;
    let watch = ForwardWatch::start(&lab)?;
    let logs = |routers: &[&Haldir<'_>]| {
        routers
            .iter()
            .map(|r| format!("--- haldir in {}:\n{}", r.host(), tail(&r.log(), 30)))
            .collect::<Vec<_>>()
            .join("\n")
    };

    let r1 = app.start_router("r1", &options.binary)?;
    let r2 = app.start_router("r2", &options.binary)?;
    if !app.wait_roles(&r1, Some(&r2), options.takeover_timeout) {
        bail!(
            "r1 did not become master of both instances with r2 backup: r1 {:?}, r2 {:?}, VIPs \
             on {:?}\n{}",
            r1.states(),
            r2.states(),
            app.holders(),
            logs(&[&r1, &r2])
        );
    }
    let want = app.configured_destinations();
    if !app.wait_ipvs_ready(Duration::from_secs(60)) {
        bail!(
            "the IPVS side is not ready: r1 service {:?}, daemons r1 [{}], r2 [{}]\n{}",
            app.ipvs_destinations("r1"),
            app.sync_daemons("r1").unwrap_or_default(),
            app.sync_daemons("r2").unwrap_or_default(),
            logs(&[&r1, &r2])
        );
    }
    say(&format!(
        "election: r1 MASTER of VI_PUBLIC and VI_PRIVATE, r2 BACKUP; {VIP} and {PRIVATE_VIP} on \
         r1; IPVS {VIP}:{SERVICE_PORT} -> {}; sync daemons: r1 [{}], r2 [{}]",
        want.join(", "),
        app.sync_daemons("r1")?,
        app.sync_daemons("r2")?
    ));

    let traffic = Traffic::start(&lab, CLIENT, Appliance::target(), options.traffic)?;
    let mut up = traffic.open(options.connections, "initial")?;
    // Connections that fail while being opened, before anything happens to the routers,
    // are not what the story judges (seen now and then in the loaded VM: a reset during
    // the handshake); they are reported, and replaced, twice at most.
    let mut setup_failures = Vec::new();
    for _ in 0..2 {
        if up >= options.connections {
            break;
        }
        let report = traffic.report();
        setup_failures.extend(failures_of(&report, "initial"));
        setup_failures.extend(failures_of(&report, "initial-replacement"));
        up += traffic.open(options.connections - up, "initial-replacement")?;
    }
    let report = traffic.report();
    if up < options.connections {
        bail!(
            "only {up} of {} connections to {VIP}:{SERVICE_PORT} came up:\n{}\n{}",
            options.connections,
            report.describe_problems(options.stall_threshold),
            logs(&[&r1, &r2])
        );
    }
    if !setup_failures.is_empty() {
        say(&format!(
            "{} connections failed while being opened (replaced): {}",
            setup_failures.len(),
            setup_failures.join("; ")
        ));
    }
    say(&format!(
        "{up} connections through {VIP}:{SERVICE_PORT} ({:?}), each exchanging a message every \
         {:?}",
        report.by_server(),
        options.traffic.interval
    ));
    std::thread::sleep(Duration::from_secs(2));
    // Connections that were up and were lost before anything happened to the routers: the
    // story counts them against the first leg (its connections alive at the event); this
    // says which and why.
    let quiet_losses = lost_while_up(&traffic.report());
    if !quiet_losses.is_empty() {
        say(&format!(
            "{} connections lost before the event, with the routers untouched: {}",
            quiet_losses.len(),
            quiet_losses.join("; ")
        ));
    }

    let mut legs = Vec::new();
    // Leg 1: the master fails.
    let synced = app.ipvs_established("r2").unwrap_or(0);
    say(&format!(
        "r2's IPVS already knows {synced} established connections (the kernel's sync daemon)"
    ));
    let how = match (options.graceful, options.isolate_old_master) {
        (true, false) => "SIGTERM to haldir on r1 (graceful: priority-0 adverts, VIPs removed)",
        (true, true) => {
            "SIGTERM to haldir on r1, then r1's links cut at the switch (r1 is gone from both \
             segments)"
        }
        (false, false) => "kill -9 of haldir on r1 (its kernel keeps the VIPs and the IPVS table)",
        (false, true) => {
            "kill -9 of haldir on r1, then r1's links cut at the switch (r1 is gone: its \
             kernel, which keeps the VIPs and the IPVS table, can no longer forward)"
        }
    };
    say(how);
    let exchanges_at_mark = traffic.report().exchanges();
    let mark = Instant::now();
    if options.graceful {
        r1.stop()?;
    } else {
        r1.crash()?;
    }
    if options.isolate_old_master {
        app.set_links("r1", false)?;
    }
    if !app.wait_roles(&r2, None, options.takeover_timeout) {
        bail!(
            "r2 did not take over: r2 {:?}, VIPs on {:?}\n{}",
            r2.states(),
            app.holders(),
            logs(&[&r2])
        );
    }
    let took_over = Instant::now();
    let (public, private) = app.holders();
    say(&format!(
        "r2 is MASTER of both instances; {VIP} is on {public:?}, {PRIVATE_VIP} on {private:?}{}",
        if public.contains(&"r1") && options.isolate_old_master {
            " (r1's kernel keeps a stale copy, but r1 is cut off both segments)"
        } else if public.contains(&"r1") {
            " (r1's kernel keeps a stale copy until haldir starts there again; the gateway \
             follows r2's gratuitous ARP)"
        } else {
            ""
        }
    ));
    std::thread::sleep(options.settle);
    let new_up = traffic.open(options.new_connections, "after-failover")?;
    std::thread::sleep(Duration::from_secs(1));
    let report = traffic.report();
    let gateway_follows_new = app.gateway_mac_for_vip() == Some(lab.mac_bytes("r2")?);
    let name = how.split(" (").next().unwrap_or(how).to_owned();
    let mut timeline = Timeline::of_takeover(&lab, &capture.kept(), &watch, mark, "r1", "r2")?;
    timeline.push(mark, name.clone());
    timeline.push(
        took_over,
        "r2 reports MASTER for both instances (status file)",
    );
    legs.push(judge_leg(
        LegEvent {
            name,
            new_master: "r2",
            mark,
            took_over,
            exchanges_at_mark,
            synced_before: synced,
            new_up,
            new_label: "after-failover",
            gateway_follows_new,
            old_master_isolated: options.isolate_old_master,
        },
        timeline,
        &report,
        options,
    ));
    say(&describe_leg(legs.last().expect("pushed")));

    // Leg 2: the old master returns and preempts.
    let synced = app.ipvs_established("r1").unwrap_or(0);
    say("haldir on r1 starts again (it removes the VIPs its killed predecessor left) and preempts");
    let exchanges_at_mark = traffic.report().exchanges();
    let mark = Instant::now();
    if options.isolate_old_master {
        // r1's links come back just before its haldir starts (which removes the stale
        // VIPs its predecessor left in the kernel).
        app.set_links("r1", true)?;
    }
    let r1 = app.start_router("r1", &options.binary)?;
    let r1_up = Instant::now();
    if !app.wait_roles(&r1, Some(&r2), options.takeover_timeout) {
        bail!(
            "r1 did not preempt: r1 {:?}, r2 {:?}, VIPs on {:?}\n{}",
            r1.states(),
            r2.states(),
            app.holders(),
            logs(&[&r1, &r2])
        );
    }
    let took_over = Instant::now();
    std::thread::sleep(options.settle);
    let new_up = traffic.open(options.new_connections, "after-preempt")?;
    std::thread::sleep(Duration::from_secs(1));
    let report = traffic.stop();
    let gateway_follows_new = app.gateway_mac_for_vip() == Some(lab.mac_bytes("r1")?);
    let mut timeline = Timeline::of_takeover(&lab, &capture.kept(), &watch, mark, "r2", "r1")?;
    timeline.push(mark, "haldir on r1 started");
    timeline.push(r1_up, "haldir on r1 up, out of INIT (status file)");
    timeline.push(
        took_over,
        "r1 reports MASTER for both instances (status file)",
    );
    legs.push(judge_leg(
        LegEvent {
            name: "r1 returns and preempts".into(),
            new_master: "r1",
            mark,
            took_over,
            exchanges_at_mark,
            synced_before: synced,
            new_up,
            new_label: "after-preempt",
            gateway_follows_new,
            old_master_isolated: false,
        },
        timeline,
        &report,
        options,
    ));
    say(&describe_leg(legs.last().expect("pushed")));

    let extras = if options.extras {
        run_extras(&app, &r1, &r2, options, say)
            .with_context(|| format!("after the failovers\n{}", logs(&[&r1, &r2])))?
    } else {
        Extras::default()
    };

    for router in [&r1, &r2] {
        let status = router.stop()?;
        if !status.success() {
            bail!(
                "haldir in {} exited with {status}\n{}",
                router.host(),
                logs(&[router])
            );
        }
    }
    drop(watch);
    drop(capture);
    drop(app);
    drop(lab);
    Ok(Story {
        legs,
        by_server: report.by_server(),
        exchanges: report.exchanges(),
        elapsed: started.elapsed(),
        setup_failures,
        extras,
    })
}

/// The acts after the two failovers, with r1 master and r2 backup again: what the bulk
/// resync carried to r1, a real server that answers ARP for the VIP, and r1's private link
/// cut. Each fails the story (an error) when its outcome does not hold.
fn run_extras(
    app: &Appliance<'_>,
    r1: &Haldir<'_>,
    r2: &Haldir<'_>,
    options: &StoryOptions,
    say: &mut dyn FnMut(&str),
) -> anyhow::Result<Extras> {
    let mut extras = Extras::default();
    // The bulk resync r1 received when it came back as backup.
    let last = r1
        .status()
        .map(|s| s["bulk_resync"]["last_received"].clone())
        .unwrap_or_default();
    if let Some(records) = last["records"].as_u64() {
        extras.bulk_resync = Some((records, last["millis"].as_f64().unwrap_or(f64::NAN)));
        say(&format!(
            "bulk resync: when r1 rejoined as backup, {} sent it the whole connection table, {records} \
             records in {} ms (request to DONE); the kernel's own sync sends a connection only \
             when it sees traffic, so the ones opened while r1 was down were new to r1",
            last["from"].as_str().unwrap_or("the master"),
            last["millis"]
        ));
    }

    // A real server with the DR "ARP problem".
    let (rs2, rs2_address) = REAL_SERVERS[1];
    let conflicts = |router: &Haldir<'_>| -> Vec<Value> {
        router
            .control_status()
            .ok()
            .and_then(|s| s["dr_arp_check"]["conflicts"].as_array().cloned())
            .unwrap_or_default()
    };
    say(&format!(
        "{rs2} misconfigured: arp_ignore=0, so it answers ARP for the VIP it holds on lo"
    ));
    let arp_ignore = |value: &str| {
        app.lab().write_sysctls(
            rs2,
            &[
                ("net/ipv4/conf/all/arp_ignore", value),
                ("net/ipv4/conf/eth0/arp_ignore", value),
            ],
        )
    };
    arp_ignore("0")?;
    // A reload (of the same file) makes the check run a round at once.
    r1.reload(&app.router_config("r1"))?;
    let mark = Instant::now();
    let named = |c: &Value| c["real_server"].as_str() == Some(rs2_address);
    if !poll_until(Duration::from_secs(30), Duration::from_millis(250), || {
        conflicts(r1).iter().any(named)
    }) {
        bail!("r1 did not report {rs2} ({rs2_address}) answering ARP for {VIP}");
    }
    let found = conflicts(r1);
    extras.arp_reported = Some(mark.elapsed());
    for conflict in found.iter().filter(|c| named(c)) {
        say(&format!(
            "r1 reports (log, `haldir status`, /metrics) after {:.1} s: real server {} (MAC {}) \
             answers ARP for VIP {} on {}",
            mark.elapsed().as_secs_f64(),
            conflict["real_server"].as_str().unwrap_or("?"),
            conflict["mac"].as_str().unwrap_or("?"),
            conflict["vip"].as_str().unwrap_or("?"),
            conflict["interface"].as_str().unwrap_or("?"),
        ));
    }
    arp_ignore("1")?;
    r1.reload(&app.router_config("r1"))?;
    if !poll_until(Duration::from_secs(30), Duration::from_millis(250), || {
        conflicts(r1).is_empty()
    }) {
        bail!("r1 still reports an ARP conflict after {rs2} was fixed");
    }
    say(&format!("{rs2} fixed (arp_ignore=1): the report clears"));

    // The private link of the master is cut: the sync group moves both VIPs.
    say("r1's private link (eth1) is cut at the switch");
    let mark = Instant::now();
    app.set_private_link("r1", false)?;
    if !app.wait_roles(r2, None, options.takeover_timeout) {
        bail!(
            "r2 did not take both instances: r2 {:?}, VIPs on {:?}",
            r2.states(),
            app.holders()
        );
    }
    let moved = mark.elapsed();
    let (public, private) = app.holders();
    say(&format!(
        "after {:.0} ms r2 is MASTER of both instances: {VIP} on {public:?}, {PRIVATE_VIP} on \
         {private:?}; r1 is {:?} (the sync group took VI_PUBLIC along with VI_PRIVATE)",
        moved.as_secs_f64() * 1000.0,
        r1.states().unwrap_or_default()
    ));
    app.set_private_link("r1", true)?;
    let mark = Instant::now();
    if !app.wait_roles(r1, Some(r2), options.takeover_timeout) {
        bail!(
            "r1 did not take both instances back: r1 {:?}, r2 {:?}, VIPs on {:?}",
            r1.states(),
            r2.states(),
            app.holders()
        );
    }
    say(&format!(
        "link restored: r1 preempts both instances back after {:.0} ms",
        mark.elapsed().as_secs_f64() * 1000.0
    ));
    extras.link_cut_moved_both = Some(moved);
    Ok(extras)
}

/// What [`run_extras`] saw.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// Records r1 received in its bulk resync, and the milliseconds it took.
    pub bulk_resync: Option<(u64, f64)>,
    /// How long until r1 named the misconfigured real server.
    pub arp_reported: Option<Duration>,
    /// How long until both VIPs were on r2 after r1's private link was cut.
    pub link_cut_moved_both: Option<Duration>,
}

/// A few lines on one leg: the timeline, then what the client saw.
pub fn describe_leg(leg: &Leg) -> String {
    let mut text = format!(
        "{}: {} took over in {:.0} ms\n",
        leg.name,
        leg.new_master,
        leg.takeover.as_secs_f64() * 1000.0
    );
    text.push_str("   timeline (0 = the event):\n");
    text.push_str(&leg.timeline.to_string());
    let seen = |at: Option<Duration>| match at {
        Some(at) => format!("seen at +{:.1} ms", at.as_secs_f64() * 1000.0),
        None => "NOT seen".into(),
    };
    text.push_str(&format!(
        "   from outside: {}'s gratuitous ARP {}; its first forwarded client packet {}; the \
         gateway's neighbour entry for the VIP {} {}{}\n",
        leg.new_master,
        seen(leg.garp_seen),
        seen(leg.first_forwarded),
        if leg.gateway_follows_new {
            "names"
        } else {
            "does NOT name"
        },
        leg.new_master,
        if leg.old_master_isolated {
            "; the old master was cut off both segments"
        } else {
            ""
        }
    ));
    let gap = match leg.longest_gap {
        Some((gap, id)) => format!("{:.0} ms (conn {id})", gap.as_secs_f64() * 1000.0),
        None => "none over twice the interval".into(),
    };
    text.push_str(&format!(
        "   client: {} of {} established connections survived ({} lost, {} stalled); the \
         longest silence of one connection: {gap}; new connections: {} of {} up\n",
        leg.survived,
        leg.established,
        leg.lost.len(),
        leg.stalled.len(),
        leg.new_up,
        leg.new_opened
    ));
    text.push_str(&format!(
        "   {} of them known to {}'s IPVS just before the event (connection sync); {:.0} \
         messages echoed per second after it (at their pace: {:.0})\n",
        leg.synced_before, leg.new_master, leg.echo_rate.0, leg.echo_rate.1
    ));
    if !leg.driver_lags.is_empty() {
        let lags: Vec<String> = leg
            .driver_lags
            .iter()
            .map(|(at, late)| format!("{:.1} s at {:+.1} s", late.as_secs_f64(), at / 1000.0))
            .collect();
        text.push_str(&format!(
            "   the client program itself was not scheduled for {} (a starved machine)\n",
            lags.join(", ")
        ));
    }
    for (what, list) in [
        ("lost", &leg.lost),
        ("stalled", &leg.stalled),
        ("failed", &leg.new_failures),
    ] {
        for line in list.iter().take(5) {
            text.push_str(&format!("     {line}\n"));
        }
        if list.len() > 5 {
            text.push_str(&format!("     ... and {} more {what}\n", list.len() - 5));
        }
    }
    text.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::super::traffic::{Connection, TrafficReport};
    use super::*;

    fn frame(src: [u8; 6], ethertype: u16, dst_ip: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20];
        f[6..12].copy_from_slice(&src);
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        f[14] = 0x45;
        f[14 + 16..14 + 20].copy_from_slice(&dst_ip);
        f
    }

    #[test]
    fn a_frame_to_the_vip_from_a_routers_private_mac_names_that_router() {
        let vip: Ipv4Addr = VIP.parse().unwrap();
        let macs = [private_mac("r1"), private_mac("r2")];
        let to_vip = vip.octets();
        assert_eq!(
            forwarded_by(&frame(macs[1], 0x0800, to_vip), vip, &macs),
            Some(1)
        );
        assert_eq!(
            forwarded_by(&frame(macs[0], 0x0800, to_vip), vip, &macs),
            Some(0)
        );
        // Another destination, another sender, another ethertype, a runt: not forwarding.
        assert_eq!(
            forwarded_by(&frame(macs[0], 0x0800, [10, 2, 0, 1]), vip, &macs),
            None
        );
        assert_eq!(
            forwarded_by(&frame([2, 0, 0, 0, 0, 9], 0x0800, to_vip), vip, &macs),
            None
        );
        assert_eq!(
            forwarded_by(&frame(macs[0], 0x0806, to_vip), vip, &macs),
            None
        );
        assert_eq!(
            forwarded_by(&frame(macs[0], 0x0800, to_vip)[..20], vip, &macs),
            None
        );
    }

    /// A gratuitous ARP request for 10.0.0.100 captured from keepalived (see capture.rs).
    #[test]
    fn the_gateways_neighbour_entry_yields_its_link_layer_address() {
        assert_eq!(
            neighbour_lladdr("10.1.0.100 dev eth0 lladdr 02:48:4c:00:00:0a STALE\n"),
            Some([0x02, 0x48, 0x4c, 0, 0, 0x0a])
        );
        assert_eq!(neighbour_lladdr("10.1.0.100 dev eth0 FAILED\n"), None);
        assert_eq!(neighbour_lladdr(""), None);
        assert_eq!(neighbour_lladdr("x lladdr 02:48:4c:00:00\n"), None);
    }

    #[test]
    fn arp_target_reads_the_target_protocol_address() {
        let digits = "ffffffffffff02484c00000108060001080006040001\
                      02484c0000010a000064ffffffffffff0a000064";
        let bytes: Vec<u8> = (0..digits.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(arp_target(&bytes), Some(Ipv4Addr::new(10, 0, 0, 100)));
    }

    #[test]
    fn router_config_is_a_valid_haldir_configuration() {
        for (router, priority) in [("r1", 150), ("r2", 100)] {
            let text = router_config(&ApplianceOptions::default(), router);
            let model = haldir_config::parse_toml(&text, "appliance.toml")
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(model.vrrp_instances.len(), 2, "{text}");
            assert_eq!(model.virtual_servers.len(), 1, "{text}");
            assert!(text.contains(&format!("priority = {priority}")), "{text}");
        }
    }

    fn connection(gaps: &[(Instant, Instant)], last: Instant, opened: Instant) -> Connection {
        Connection {
            id: 0,
            label: "initial".into(),
            opened,
            server: Some("rs1".into()),
            exchanges: 10,
            last_echo: Some(last),
            longest_gap: Duration::from_secs(4),
            gaps: gaps.to_vec(),
            lost: None,
        }
    }

    #[test]
    fn a_silence_past_the_threshold_is_a_stall_unless_the_client_itself_was_frozen() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mark = ms(10_000);
        let threshold = Duration::from_secs(3);
        // Silent from -0.1 s to +3.3 s after the event.
        let conn = connection(&[(ms(9_900), ms(13_300))], ms(15_000), t0);
        let mut report = TrafficReport {
            at: ms(15_100),
            connections: vec![conn],
            driver_lags: Vec::new(),
        };
        let (established, survived, lost, stalled) = leg_outcome(&report, mark, threshold);
        assert_eq!(
            (established, survived, lost.len(), stalled.len()),
            (1, 0, 0, 1)
        );
        // The client program was not scheduled for 1.9 s of it: 1.5 s of real silence.
        report.driver_lags = vec![(ms(10_300), Duration::from_millis(1_900))];
        let (_, survived, _, stalled) = leg_outcome(&report, mark, threshold);
        assert_eq!((survived, stalled.len()), (1, 0), "{stalled:?}");
        // A silence that began before the event and ended within the threshold after it
        // is not the event's.
        report.driver_lags.clear();
        report.connections[0].gaps = vec![(ms(7_000), ms(11_000))];
        let (_, survived, _, _) = leg_outcome(&report, mark, threshold);
        assert_eq!(survived, 1);
        // Lost after the event: counted, with its reason.
        report.connections[0].lost = Some((ms(12_000), "read: reset".into()));
        let (established, survived, lost, _) = leg_outcome(&report, mark, threshold);
        assert_eq!((established, survived), (1, 0));
        assert!(lost[0].contains("read: reset"), "{lost:?}");
    }
}
