//! Bulk resync of the IPVS connection table (`src/bulk_resync.rs`) on the VM's real IPVS
//! (skipped, loudly, outside the VM; `tests/vm/run.sh` runs it): connections opened while
//! the backup router was down survive a failover one second after the backup rejoins; with
//! bulk resync off (the kernel's own sync alone, as keepalived runs it) the idle ones are
//! lost. The same story runs with an IPv6 VIP, IPv6 virtual service and IPv6 real servers
//! (the routers' VRRP and sync traffic stay on IPv4; the kernel's sync protocol version 1
//! carries IPv6 connections): `ipvsadm -Lnc` in the returning backup must list every IPv6
//! connection before the master fails. A further test times the bulk resync of 10,000 real
//! connections.
//!
//! ```text
//!   cl  10.40.0.9  ──┐      r1 (haldir, priority 200): VRRP v3 VI_1, VIP 10.40.0.100, IPVS
//!   r1  10.40.0.1  ──┤        TCP VIP:80 rr -> rs1, rs2 (DR); lvs_sync_daemon on eth0
//!   r2  10.40.0.2  ──┼─ br0  r2 (haldir, priority 100): the same configuration
//!   rs1 10.40.0.11 ──┤      rs1, rs2: VIP/32 on lo, ARP-silent, a line-echo server on :80
//!   rs2 10.40.0.12 ──┘
//! ```
//!
//! Each run: r1 alone is MASTER (kernel master sync daemon); the client opens IDLE idle and
//! ACTIVE busy connections through the VIP; r2 starts (kernel backup sync daemon, and, with
//! bulk resync on, its haldir asks r1's for the table); one second after r2 reports BACKUP,
//! r1's haldir is killed with SIGKILL and r1's link taken down (the machine is gone); r2
//! takes over; every connection then sends a line and must get its echo through r2. A
//! connection r2's IPVS does not know is answered with a reset by r2's own stack.

#[path = "kernel_ipvs/ipvsadm.rs"]
#[allow(dead_code)]
mod ipvsadm;

#[path = "kernel_ipvs/dr_lab.rs"]
#[allow(dead_code)]
mod dr_lab;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dr_lab::add_real_server;
use haldir_ipvs::sync_wire::{ResyncDone, ResyncMessage, ResyncRequest};
use haldir_lab::capture::{Capture, FrameKind};
use haldir_lab::haldir::HaldirInstance;
use haldir_lab::{self as lab, vm::in_vm_or_skip, wait_until, Lab, Signal};
use serde_json::Value;

const VIP: &str = "10.40.0.100";
const SYNC_ID: u8 = 42;
const IDLE: usize = 30;
const ACTIVE: usize = 10;

fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "kernel_resync: {text}");
}

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

/// A copy of the haldir binary taken once per test process: other builds sharing the
/// target directory may relink the original while a router starts.
fn private_binary() -> &'static Path {
    static COPY: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        let copy =
            std::env::temp_dir().join(format!("kernel_resync-haldir-{}", std::process::id()));
        haldir_lab::place_copy(binary(), &copy).expect("copy the haldir binary");
        copy
    })
}

/// The addresses of one run of the failover story: IPv4 throughout, or an IPv6 service
/// (VIP, virtual service, real servers) on routers whose VRRP and sync traffic stay IPv4.
struct Net {
    /// Lab name prefix.
    tag: &'static str,
    /// The VIP (the virtual service's address).
    vip: &'static str,
    /// The VIP with its prefix, as `virtual_ipaddress` names it.
    vip_cidr: &'static str,
    /// Prefix length of the VIP on a real server's `lo`.
    vip_on_lo: u8,
    /// The client's address on the service's family.
    client: &'static str,
    /// Extra addresses of the client and the routers (IPv6 ones besides the IPv4 ones).
    extra: [&'static str; 3],
    /// The real servers' addresses on the service's family.
    real_servers: [&'static str; 2],
}

const V4: Net = Net {
    tag: "kresync",
    vip: VIP,
    vip_cidr: "10.40.0.100/24",
    vip_on_lo: 32,
    client: "10.40.0.9",
    extra: ["", "", ""],
    real_servers: ["10.40.0.11", "10.40.0.12"],
};

const V6: Net = Net {
    tag: "kresync6",
    vip: "fd00:40::100",
    vip_cidr: "fd00:40::100/64",
    vip_on_lo: 128,
    client: "fd00:40::9",
    extra: ["fd00:40::9/64", "fd00:40::1/64", "fd00:40::2/64"],
    real_servers: ["fd00:40::11", "fd00:40::12"],
};

impl Net {
    /// `ip:port` as a socket address text (IPv6 in brackets).
    fn socket(&self, ip: &str, port: u16) -> String {
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    }

    /// The router configuration of this run.
    fn config(&self, priority: u8, bulk_resync: bool) -> String {
        let instance =
            HaldirInstance::v3(71, priority, Duration::from_millis(100), &[self.vip_cidr]);
        let mut text = format!(
            "[global_defs]\nlvs_sync_daemon = {{ interface = \"eth0\", instance = \"VI_1\", id = {SYNC_ID}, bulk_resync = {bulk_resync} }}\n\n{}\n\
             [[virtual_server]]\nip = \"{}\"\nport = 80\nprotocol = \"TCP\"\nlb_algo = \"rr\"\nlb_kind = \"DR\"\n",
            instance.render(),
            self.vip
        );
        for rs in self.real_servers {
            text.push_str(&format!(
                "\n[[virtual_server.real_server]]\nip = \"{rs}\"\nport = 80\nweight = 1\n"
            ));
        }
        text
    }
}

fn config_with(
    priority: u8,
    bulk_resync: bool,
    real_servers: &[&str],
    advert_int: Duration,
) -> String {
    let instance = HaldirInstance::v3(71, priority, advert_int, &[&format!("{VIP}/24")]);
    let mut text = format!(
        "[global_defs]\nlvs_sync_daemon = {{ interface = \"eth0\", instance = \"VI_1\", id = {SYNC_ID}, bulk_resync = {bulk_resync} }}\n\n{}\n\
         [[virtual_server]]\nip = \"{VIP}\"\nport = 80\nprotocol = \"TCP\"\nlb_algo = \"rr\"\nlb_kind = \"DR\"\n",
        instance.render()
    );
    for rs in real_servers {
        text.push_str(&format!(
            "\n[[virtual_server.real_server]]\nip = \"{rs}\"\nport = 80\nweight = 1\n"
        ));
    }
    text
}

/// haldir in a lab host (its own small runner: under software emulation, with other VM
/// users, a start can take longer than the lab's usual 10 s).
struct Router<'l> {
    lab: &'l Lab,
    host: &'static str,
    pid: u32,
    status_path: std::path::PathBuf,
}

impl<'l> Router<'l> {
    fn start(lab: &'l Lab, host: &'static str, config: &str) -> Router<'l> {
        // A start has been seen to die in ld.so before its first log line (SIGSEGV while
        // relocating): the shared target directory's binary was being relinked by a
        // concurrent build. The test runs a private copy (`private_binary`); should a
        // start still die, one more try, said out loud.
        match Router::try_start(lab, host, config) {
            Ok(router) => router,
            Err(why) => {
                say(&format!("RETRYING the start of haldir in {host}: {why}"));
                Router::try_start(lab, host, config)
                    .unwrap_or_else(|why| panic!("haldir in {host} did not start: {why}"))
            }
        }
    }

    fn try_start(lab: &'l Lab, host: &'static str, config: &str) -> Result<Router<'l>, String> {
        let config_path = lab.dir().join(format!("{host}-haldir.toml"));
        let status_path = lab.dir().join(format!("{host}-haldir.status.json"));
        let _ = std::fs::remove_file(&status_path);
        std::fs::write(&config_path, config).unwrap();
        // The 10k test raises its own descriptor limit; haldir gets an ordinary one.
        let mut cmd = std::process::Command::new("prlimit");
        cmd.args(["--nofile=4096:4096", "--"])
            .arg(private_binary())
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .arg("--status-file")
            .arg(&status_path)
            .arg("--control-socket")
            .arg(lab.dir().join(format!("{host}-haldir.sock")))
            .env("HALDIR_LOG", "info");
        let pid = lab.spawn(host, cmd).map_err(|e| e.to_string())?;
        let router = Router {
            lab,
            host,
            pid,
            status_path,
        };
        let started = wait_until(Duration::from_secs(60), || {
            !lab.is_running(pid) || router.state().is_some_and(|s| s != "INIT")
        });
        if started && lab.is_running(pid) {
            return Ok(router);
        }
        let exit = lab.wait_exit(pid, Duration::from_secs(2));
        let dmesg = std::process::Command::new("dmesg")
            .output()
            .map(|o| {
                let text = String::from_utf8_lossy(&o.stdout).into_owned();
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(15)..].join("\n")
            })
            .unwrap_or_default();
        Err(format!(
            "exit {exit:?}; its log:\n{}\ndmesg:\n{dmesg}",
            router.log()
        ))
    }

    fn status(&self) -> Option<Value> {
        serde_json::from_str(&std::fs::read_to_string(&self.status_path).ok()?)
            .ok()
            .map(haldir_lab::schema_checked)
    }

    fn state(&self) -> Option<String> {
        self.status()?["instances"][0]["state"]
            .as_str()
            .map(str::to_owned)
    }

    fn wait_state(&self, state: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.state().as_deref() == Some(state))
    }

    fn log(&self) -> String {
        self.lab.log_text(self.pid)
    }

    /// kill -9.
    fn crash(&self) {
        self.lab.kill(self.pid, Signal::SIGKILL).unwrap();
        let _ = self.lab.wait_exit(self.pid, Duration::from_secs(10));
        say(&format!("haldir in {} killed (SIGKILL)", self.host));
    }
}

/// A line-echo server on VIP:80 in `host`: every line comes back prefixed with the host's
/// name. One thread per connection; they end when the peer closes.
fn echo_server(lab: &Lab, host: &'static str) {
    let listener = lab::in_netns(&lab.ns_name(host), || {
        // `::` with the default bindv6only=0: IPv4 and IPv6 alike.
        TcpListener::bind(("::", 80)).unwrap()
    })
    .unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 256];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            let mut answer = format!("{host} ").into_bytes();
                            answer.extend_from_slice(&buf[..n]);
                            if stream.write_all(&answer).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
}

/// Sends `line` and waits for its echo; the answering server's name, or why not.
fn exchange(stream: &mut TcpStream, line: &str, timeout: Duration) -> Result<String, String> {
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream
        .write_all(format!("{line}\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\n") {
        match stream.read(&mut byte) {
            Ok(0) => return Err("closed".into()),
            Ok(_) => answer.push(byte[0]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    match text.strip_suffix(&format!(" {line}\n")) {
        Some(server) => Ok(server.to_owned()),
        None => Err(format!("unexpected answer {text:?}")),
    }
}

/// Lines of `/proc/net/ip_vs_conn` in `ns` (the table `ipvsadm -Lnc` lists), read with a
/// large buffer: the kernel walks its table again from the start for every read call.
fn conn_count(ns: &str) -> usize {
    lab::in_netns(ns, || {
        let Ok(mut file) = std::fs::File::open("/proc/thread-self/net/ip_vs_conn") else {
            return 0;
        };
        let mut text = Vec::with_capacity(4 << 20);
        let mut chunk = vec![0u8; 2 << 20];
        loop {
            match file.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => text.extend_from_slice(&chunk[..n]),
            }
        }
        text.iter()
            .filter(|b| **b == b'\n')
            .count()
            .saturating_sub(1)
    })
    .unwrap()
}

/// Polls `cond` every `every` until it holds or `timeout` passes.
fn poll(timeout: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// The bulk-resync lines of a router's log.
fn resync_log(router: &Router) -> String {
    router
        .log()
        .lines()
        .filter(|l| l.contains("bulk resync") || l.contains("ERROR") || l.contains("WARN"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn daemons(lab: &Lab, host: &str) -> String {
    let out = lab.run(host, &["ipvsadm", "-L", "--daemon"]).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .replace('\n', " | ")
}

/// Sets up the lab: client, two routers, two real servers with echo servers.
fn lab(tag: &str) -> Lab {
    let lab = Lab::new(tag).unwrap();
    lab.add_host("cl", &["10.40.0.9/24"]).unwrap();
    lab.add_host("r1", &["10.40.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.40.0.2/24"]).unwrap();
    add_real_server(&lab, "rs1", "10.40.0.11", VIP);
    add_real_server(&lab, "rs2", "10.40.0.12", VIP);
    lab
}

/// The lab of `net`: as [`lab`] with the service's family added. A real server holds the
/// VIP on `lo` (an IPv6 one is not answered in neighbour discovery: Linux answers only for
/// addresses of the interface asked).
fn lab_for(net: &Net, tag: &str) -> Lab {
    if net.vip == VIP {
        return lab(tag);
    }
    let lab = Lab::new(tag).unwrap();
    for ((host, v4), extra) in [
        ("cl", "10.40.0.9/24"),
        ("r1", "10.40.0.1/24"),
        ("r2", "10.40.0.2/24"),
    ]
    .into_iter()
    .zip(net.extra)
    {
        lab.add_host(host, &[v4, extra]).unwrap();
    }
    for ((host, v4), v6) in [("rs1", "10.40.0.11/24"), ("rs2", "10.40.0.12/24")]
        .into_iter()
        .zip(net.real_servers)
    {
        lab.add_host(host, &[v4, &format!("{v6}/64")]).unwrap();
        lab.run(
            host,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/{}", net.vip, net.vip_on_lo),
                "dev",
                "lo",
                "nodad",
            ],
        )
        .unwrap();
    }
    lab
}

/// The client ports of the connections to `net`'s VIP:80 that `ipvsadm -Lnc` in `host`
/// lists, and the listing.
fn listed_client_ports(lab: &Lab, host: &str, net: &Net) -> (BTreeSet<u16>, String) {
    let out = lab.run(host, &["ipvsadm", "-Lnc"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let client = net.socket(net.client, 0);
    let client = client.strip_suffix('0').unwrap();
    let vip = net.socket(net.vip, 80);
    let ports = text
        .lines()
        .filter_map(|line| {
            // pro expire state source virtual destination
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 6 || fields[0] != "TCP" || fields[4] != vip {
                return None;
            }
            fields[3].strip_prefix(client)?.parse().ok()
        })
        .collect();
    (ports, text)
}

/// Waits until the IPVS service of `host` lists `count` real servers.
fn wait_service(lab: &Lab, host: &str, count: usize) {
    let ok = wait_until(Duration::from_secs(20), || {
        let out = lab.run(host, &["ipvsadm", "-Ln"]).unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.trim_start().starts_with("->") && l.contains(":80 "))
            .count()
            >= count
    });
    assert!(
        ok,
        "the IPVS service in {host} did not get {count} real servers"
    );
}

/// Waits until `host` runs the IPVS service with both real servers and the kernel's
/// master sync daemon.
fn wait_master_side(lab: &Lab, host: &str) {
    wait_service(lab, host, 2);
    assert!(
        wait_until(Duration::from_secs(15), || daemons(lab, host)
            .starts_with("master sync daemon")),
        "{host}: {}",
        daemons(lab, host)
    );
}

/// Opens `count` connections from the client to VIP:80, each echoing one line.
fn open_echoed(lab: &Lab, count: usize) -> Vec<TcpStream> {
    open_echoed_to(lab, &V4, count)
}

/// Opens `count` connections from the client to `net`'s VIP:80, each echoing one line.
fn open_echoed_to(lab: &Lab, net: &Net, count: usize) -> Vec<TcpStream> {
    let vip: SocketAddr = net.socket(net.vip, 80).parse().unwrap();
    let mut conns: Vec<TcpStream> = lab::in_netns(&lab.ns_name("cl"), || {
        (0..count)
            .map(|_| TcpStream::connect_timeout(&vip, Duration::from_secs(20)).unwrap())
            .collect()
    })
    .unwrap();
    for (i, c) in conns.iter_mut().enumerate() {
        exchange(c, &format!("hello{i}"), Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("connection {i} before the failover: {e}"));
    }
    conns
}

#[derive(Debug, Default)]
struct Outcome {
    idle_lost: usize,
    active_lost: usize,
    reasons: Vec<String>,
}

/// One run of the scenario; `bulk`: bulk resync on in both routers.
fn failover_run(bulk: bool) -> Outcome {
    failover_run_on(&V4, bulk)
}

/// One run of the scenario on `net`'s addresses. With bulk resync on, the connections must
/// be listed by `ipvsadm -Lnc` in r2 before r1 fails (for IPv4, one second after r2
/// rejoined; for IPv6, within 20 s of it).
fn failover_run_on(net: &Net, bulk: bool) -> Outcome {
    let v6 = net.vip != VIP;
    let mode = match (v6, bulk) {
        (false, true) => "bulk resync ON",
        (false, false) => "bulk resync OFF (kernel sync only)",
        (true, true) => "IPv6, bulk resync ON",
        (true, false) => "IPv6, bulk resync OFF (kernel sync only)",
    };
    let lab = lab_for(
        net,
        &format!("{}-{}", net.tag, if bulk { "on" } else { "off" }),
    );
    echo_server(&lab, "rs1");
    echo_server(&lab, "rs2");

    // 1. r1 alone: MASTER, kernel master sync daemon, the service programmed.
    let r1 = Router::start(&lab, "r1", &net.config(200, bulk));
    assert!(
        r1.wait_state("MASTER", Duration::from_secs(15)),
        "{}",
        r1.log()
    );
    wait_master_side(&lab, "r1");

    // 2. Connections while r2 is down.
    let mut conns = open_echoed_to(&lab, net, IDLE + ACTIVE);
    let client_ports: BTreeSet<u16> = conns
        .iter()
        .map(|c| c.local_addr().unwrap().port())
        .collect();
    say(&format!(
        "{mode}: {} connections open through r1; r1's table has {} entries",
        conns.len(),
        conn_count(&lab.ns_name("r1"))
    ));

    // The kernel's master daemon holds sync messages in a buffer for up to 2 s
    // (IPVS_SYNC_FLUSH_TIME, include/net/ip_vs.h) before it sends them: wait until those of
    // the connections just opened have gone out to a segment with no backup listening,
    // else a backup starting within that window would get them from the kernel itself.
    std::thread::sleep(Duration::from_secs(3));

    // The busy ones keep talking until the failover.
    let stop = Arc::new(AtomicBool::new(false));
    let mut active: Vec<TcpStream> = conns.split_off(IDLE);
    let talker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for c in active.iter_mut() {
                    let _ = exchange(c, &format!("tick{round}"), Duration::from_secs(2));
                }
                round += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            active
        })
    };

    // 3. r2 rejoins as BACKUP; one second later r1 dies.
    let r2 = Router::start(&lab, "r2", &net.config(100, bulk));
    assert!(
        r2.wait_state("BACKUP", Duration::from_secs(15)),
        "{}",
        r2.log()
    );
    let rejoined = Instant::now();
    std::thread::sleep(Duration::from_secs(1).saturating_sub(rejoined.elapsed()));
    say(&format!(
        "{mode}: 1 s after r2 rejoined: r2's table has {} entries; r1 {} ; r2 {}",
        conn_count(&lab.ns_name("r2")),
        daemons(&lab, "r1"),
        daemons(&lab, "r2")
    ));
    if v6 && bulk {
        // From outside: the kernel of r2 lists every connection the client opened.
        let mut listing = String::new();
        let mut missing = client_ports.clone();
        let complete = poll(Duration::from_secs(20), Duration::from_millis(500), || {
            let (listed, text) = listed_client_ports(&lab, "r2", net);
            listing = text;
            missing = client_ports.difference(&listed).copied().collect();
            missing.is_empty()
        });
        say(&format!(
            "{mode}: `ipvsadm -Lnc` in r2 {} s after it rejoined lists {} of the {} IPv6 \
             connections",
            rejoined.elapsed().as_secs(),
            client_ports.len() - missing.len(),
            client_ports.len()
        ));
        assert!(
            complete,
            "before the failover, `ipvsadm -Lnc` in r2 lacks the IPv6 connections from client \
             ports {missing:?}; r2 bulk_resync status {}; its listing:\n{listing}\nr1's bulk \
             resync log:\n{}\nr2's:\n{}",
            r2.status().unwrap_or_default()["bulk_resync"],
            resync_log(&r1),
            resync_log(&r2)
        );
    }
    if let Some(status) = r2.status() {
        say(&format!(
            "{mode}: r2 bulk_resync status: {}",
            status["bulk_resync"]
        ));
    }
    stop.store(true, Ordering::Relaxed);
    r1.crash();
    let killed = Instant::now();
    lab.link_set("r1", "eth0", false).unwrap();
    let mut active = talker.join().unwrap();
    assert!(
        r2.wait_state("MASTER", Duration::from_secs(15)),
        "r2 did not take over: {}",
        r2.log()
    );
    say(&format!(
        "{mode}: r2 MASTER {} ms after r1's haldir was killed",
        killed.elapsed().as_millis()
    ));
    if let Some(status) = r1.status() {
        say(&format!(
            "{mode}: r1 bulk_resync status (last written): {}",
            status["bulk_resync"]
        ));
    }

    // 4. Every connection talks through the new master.
    let mut outcome = Outcome::default();
    for (i, c) in conns.iter_mut().enumerate() {
        if let Err(e) = exchange(c, &format!("after{i}"), Duration::from_secs(5)) {
            outcome.idle_lost += 1;
            outcome.reasons.push(format!("idle {i}: {e}"));
        }
    }
    for (i, c) in active.iter_mut().enumerate() {
        if let Err(e) = exchange(c, &format!("after-active{i}"), Duration::from_secs(5)) {
            outcome.active_lost += 1;
            outcome.reasons.push(format!("active {i}: {e}"));
        }
    }
    say(&format!(
        "{mode}: RESULT idle connections lost {}/{IDLE}, busy connections lost {}/{ACTIVE}",
        outcome.idle_lost, outcome.active_lost
    ));
    if !outcome.reasons.is_empty() {
        say(&format!(
            "{mode}: first losses: {:?}",
            &outcome.reasons[..outcome.reasons.len().min(3)]
        ));
    }
    if bulk && outcome.idle_lost + outcome.active_lost > 0 {
        say(&format!("r2's log:\n{}", r2.log()));
        say(&format!("r1's log:\n{}", r1.log()));
    }
    outcome
}

#[test]
fn connections_opened_while_the_backup_was_down_survive_only_with_bulk_resync() {
    if !in_vm_or_skip(
        "kernel_resync::connections_opened_while_the_backup_was_down_survive_only_with_bulk_resync",
    ) {
        return;
    }
    let with_bulk = failover_run(true);
    let kernel_only = failover_run(false);
    say(&format!(
        "SUMMARY lost after failover (of {IDLE} idle + {ACTIVE} busy): bulk resync ON: {} idle + {} busy; \
         kernel sync only: {} idle + {} busy",
        with_bulk.idle_lost, with_bulk.active_lost, kernel_only.idle_lost, kernel_only.active_lost
    ));
    assert_eq!(
        (with_bulk.idle_lost, with_bulk.active_lost),
        (0, 0),
        "bulk resync lost connections: {:?}",
        with_bulk.reasons
    );
    assert_eq!(
        kernel_only.idle_lost, IDLE,
        "the kernel's sync alone kept idle connections it never sent: {:?}",
        kernel_only.reasons
    );
}

#[test]
fn ipv6_connections_opened_while_the_backup_was_down_survive_a_failover_with_bulk_resync() {
    if !in_vm_or_skip(
        "kernel_resync::ipv6_connections_opened_while_the_backup_was_down_survive_a_failover_with_bulk_resync",
    ) {
        return;
    }
    let outcome = failover_run_on(&V6, true);
    assert_eq!(
        (outcome.idle_lost, outcome.active_lost),
        (0, 0),
        "IPv6 connections lost after the failover: {:?}",
        outcome.reasons
    );
}

const MANY: usize = 10_000;

#[test]
fn bulk_resync_of_10000_connections_is_timed() {
    if !in_vm_or_skip("kernel_resync::bulk_resync_of_10000_connections_is_timed") {
        return;
    }
    haldir_lab::raise_fd_limit(4 * MANY as u64);
    let lab = Lab::new("kresync-10k").unwrap();
    lab.add_host("cl", &["10.40.0.9/24"]).unwrap();
    lab.add_host("r1", &["10.40.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.40.0.2/24"]).unwrap();
    add_real_server(&lab, "rs1", "10.40.0.11", VIP);
    // The real server accepts and holds every connection.
    let listener = lab::in_netns(&lab.ns_name("rs1"), || {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_reuse_address(true).unwrap();
        socket
            .bind(&"0.0.0.0:80".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        socket.listen(4096).unwrap();
        TcpListener::from(socket)
    })
    .unwrap();
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let held = held.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                held.lock().unwrap().push(stream);
            }
        });
    }
    let r1 = Router::start(
        &lab,
        "r1",
        &config_with(200, true, &["10.40.0.11"], Duration::from_secs(1)),
    );
    assert!(
        r1.wait_state("MASTER", Duration::from_secs(15)),
        "{}",
        r1.log()
    );
    wait_service(&lab, "r1", 1);

    let vip: SocketAddr = format!("{VIP}:80").parse().unwrap();
    let opening = Instant::now();
    let conns: Vec<TcpStream> = lab::in_netns(&lab.ns_name("cl"), || {
        (0..MANY)
            .map(|i| {
                TcpStream::connect_timeout(&vip, Duration::from_secs(20))
                    .unwrap_or_else(|e| panic!("connection {i}: {e}"))
            })
            .collect()
    })
    .unwrap();
    let r1_ns = lab.ns_name("r1");
    assert!(
        poll(
            Duration::from_secs(120),
            Duration::from_secs(1),
            || conn_count(&r1_ns) >= MANY
        ),
        "r1's table has {} entries",
        conn_count(&r1_ns)
    );
    say(&format!(
        "10k: {} connections open in {:.1} s; r1's table has {} entries",
        conns.len(),
        opening.elapsed().as_secs_f64(),
        conn_count(&r1_ns)
    ));

    // r2 joins; its haldir asks for the table as soon as its backup daemon runs.
    let r2_ns = lab.ns_name("r2");
    let start = Instant::now();
    let r2 = Router::start(
        &lab,
        "r2",
        &config_with(100, true, &["10.40.0.11"], Duration::from_secs(1)),
    );
    let started = start.elapsed();
    // Coarse polls: reading a 10,000-line table under emulation costs CPU the routers need.
    let mut done_at = None;
    let got_done = poll(Duration::from_secs(240), Duration::from_millis(200), || {
        let done = r2
            .status()
            .is_some_and(|s| s["bulk_resync"]["last_received"].is_object());
        if done {
            done_at = Some(start.elapsed());
        }
        done
    });
    // Counting the backup's table is itself a 10,000-entry /proc read: only once DONE is
    // in, then every 2 s.
    let mut backup_count_at = None;
    let all_there = poll(Duration::from_secs(120), Duration::from_secs(2), || {
        let n = conn_count(&r2_ns);
        if n >= MANY && backup_count_at.is_none() {
            backup_count_at = Some(start.elapsed());
        }
        n >= MANY
    });
    let received = r2
        .status()
        .map(|s| s["bulk_resync"]["last_received"].clone())
        .unwrap_or_default();
    // The status file is rewritten when the VRRP status changes (here with each 1 s
    // advert): the master's dump report can lag the backup's DONE by that much.
    let mut sent = Value::Null;
    poll(Duration::from_secs(5), Duration::from_millis(200), || {
        sent = r1
            .status()
            .map(|s| s["bulk_resync"]["last_sent"].clone())
            .unwrap_or_default();
        sent.is_object()
    });
    say(&format!("10k: r1's bulk resync log:\n{}", resync_log(&r1)));
    say(&format!("10k: r2's bulk resync log:\n{}", resync_log(&r2)));
    let listing = lab.run("r2", &["ipvsadm", "-Lnc"]).unwrap();
    let listed = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter(|l| l.starts_with("TCP"))
        .count();
    say(&format!(
        "10k FIGURES: haldir in r2 started (BACKUP) after {:.2} s; DONE seen in r2's status {:.2} s \
         after the start; bulk resync first request -> DONE {} ms (master's last dump {} ms, {} \
         records in {} messages, {} requests, pace {}); r2's table complete {:.2} s after r2's \
         haldir was started (first count after DONE, then every 2 s); `ipvsadm -Lnc` in r2 lists {listed} TCP \
         connections",
        started.as_secs_f64(),
        done_at.map_or(f64::NAN, |d| d.as_secs_f64()),
        received["millis"],
        sent["millis"],
        sent["records"],
        sent["messages"],
        received["attempts"],
        received["pace"],
        backup_count_at.map_or(f64::NAN, |d| d.as_secs_f64()),
    ));
    assert!(got_done, "r2 never completed its bulk resync");
    assert!(
        all_there,
        "r2's table has {} of {MANY} entries; r2's log:\n{}\nr1's log:\n{}",
        conn_count(&r2_ns),
        r2.log(),
        r1.log()
    );
    assert!(listed >= MANY, "ipvsadm -Lnc in r2 lists {listed}");
    drop(conns);
}

/// The default sync port of the kernel's daemon (`lvs_sync_daemon` without `port`): the
/// bulk-resync requests go to the next port.
const RESYNC_PORT: u16 = 8848 + 1;
/// The routers' own addresses on the lab segment.
const R1_ADDRESS: &str = "10.40.0.1";
const R2_ADDRESS: &str = "10.40.0.2";

/// The nonce of the first bulk-resync request seen on the bridge.
fn captured_request_nonce(capture: &Capture) -> Option<u64> {
    capture.kept().iter().find_map(|frame| {
        if frame.kind != FrameKind::ResyncControl4 {
            return None;
        }
        let ip = frame.bytes.get(14..)?;
        let payload = ip.get(usize::from(ip[0] & 0x0f) * 4 + 8..)?;
        match ResyncMessage::parse_signed(payload).ok()?.0 {
            ResyncMessage::Request(request) => Some(request.nonce),
            ResyncMessage::Done(_) => None,
        }
    })
}

/// Sends `payload` over UDP from host `host` with the IPv4 source `source` (spoofed: a
/// raw socket writes the header), TTL 255, to `to`:`port`.
fn send_spoofed_udp(lab: &Lab, host: &str, source: &str, to: &str, port: u16, payload: &[u8]) {
    let (source, to): (Ipv4Addr, Ipv4Addr) = (source.parse().unwrap(), to.parse().unwrap());
    let mut packet = vec![0u8; 28];
    packet[0] = 0x45;
    let total = (28 + payload.len()) as u16;
    packet[2..4].copy_from_slice(&total.to_be_bytes());
    packet[8] = 255;
    packet[9] = 17;
    packet[12..16].copy_from_slice(&source.octets());
    packet[16..20].copy_from_slice(&to.octets());
    packet[20..22].copy_from_slice(&40000u16.to_be_bytes());
    packet[22..24].copy_from_slice(&port.to_be_bytes());
    packet[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    packet.extend_from_slice(payload);
    lab::in_netns(&lab.ns_name(host), || {
        // IPPROTO_RAW: the header is ours (the kernel fills in the id and checksum).
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(libc::IPPROTO_RAW)),
        )
        .expect("raw socket");
        socket
            .send_to(&packet, &SocketAddr::new(to.into(), 0).into())
            .expect("send the spoofed datagram");
    })
    .unwrap();
}

/// The advert interval of the hold test's routers (see `group_config`).
const HOLD_TEST_ADVERT_INT: Duration = Duration::from_millis(400);

/// The configuration of the hold test: a sync group of VI_1 (the VIP, the sync daemon's
/// instance, with a `track_script` that always succeeds) and VI_2 (a second address) on
/// eth0, both preempting.
fn group_config(priority: u8, real_servers: &[&str]) -> String {
    // 400 ms, not 100: with 100 ms the backup declares the master dead after 0.32 s without
    // an advert (RFC 5798 §6.1: 3 × 100 ms + skew). One CI run in the emulated VM logged
    // such a gap, and r1 took over as from a dead master, which no hold delays (by design);
    // a later one ended the same way (r1 master of both before the table), without logs.
    // 400 ms gives 1.29 s, which is also when a preemption that is not held comes: a
    // lower-priority advert is discarded and the Master_Down_Timer runs out (§6.4.2).
    let advert_int = HOLD_TEST_ADVERT_INT;
    let mut vi1 = HaldirInstance::v3(71, priority, advert_int, &[&format!("{VIP}/24")]);
    vi1.extra_lines
        .push("track_script = [\"always_fine\"]".into());
    // Signed adverts, and so a signed bulk resync (its REQUEST and DONE).
    vi1.extra_lines.push(format!(
        "auth_hmac = {{ key = [{{ id = 1, value = \"{}\" }}], active_key = 1, mode = \"enforce\" }}",
        "5a".repeat(32)
    ));
    let mut vi2 = HaldirInstance::v3(72, priority, advert_int, &["10.40.0.101/24"]);
    vi2.name = "VI_2".into();
    let mut text = format!(
        "[global_defs]\nlvs_sync_daemon = {{ interface = \"eth0\", instance = \"VI_1\", id = {SYNC_ID} }}\n\n\
         [[vrrp_script]]\nname = \"always_fine\"\nscript = \"true\"\ninterval = 1\ntimeout = 2\nweight = -20\n\n\
         [[vrrp_sync_group]]\nname = \"VG_1\"\ngroup = [\"VI_1\", \"VI_2\"]\n\n{}\n{}\n\
         [[virtual_server]]\nip = \"{VIP}\"\nport = 80\nprotocol = \"TCP\"\nlb_algo = \"rr\"\nlb_kind = \"DR\"\n",
        vi1.render(),
        vi2.render()
    );
    for rs in real_servers {
        text.push_str(&format!(
            "\n[[virtual_server.real_server]]\nip = \"{rs}\"\nport = 80\nweight = 1\n"
        ));
    }
    text
}

/// The state and `preemption_held` of every instance in a router's status.
fn instance_states(router: &Router) -> Vec<(String, String, bool)> {
    let Some(status) = router.status() else {
        return Vec::new();
    };
    status["instances"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|i| {
                    (
                        i["name"].as_str().unwrap_or("?").to_owned(),
                        i["state"].as_str().unwrap_or("?").to_owned(),
                        i["preemption_held"].as_bool() == Some(true),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn all_in(router: &Router, state: &str) -> bool {
    let states = instance_states(router);
    states.len() == 2 && states.iter().all(|(_, s, _)| s == state)
}

#[test]
fn a_returning_router_holds_preemption_of_its_whole_sync_group_until_the_table_is_here() {
    if !in_vm_or_skip(
        "kernel_resync::a_returning_router_holds_preemption_of_its_whole_sync_group_until_the_table_is_here",
    ) {
        return;
    }
    const CONNECTIONS: usize = 20;
    // How long r1 must be seen held in BACKUP, the table blocked, before the requests pass.
    // The hold itself lasts at most HOLD_LIMIT (5 s) from BACKUP: the rest of that is the
    // margin for deleting the nft rule (a fork+exec, slow under emulation), the next request
    // (every 1 s) and the dump, on a loaded machine. An unheld preemption comes one
    // master-down interval after BACKUP (1.29 s at HOLD_TEST_ADVERT_INT), about when this
    // wait ends: a hold that does not work is caught for certain by the checks after it
    // (still held after the forged DONEs, about 2 s in; master only after the DONE).
    const HELD_FOR: Duration = Duration::from_secs(1);
    // The status file is read (and checked against the schema) this often: more often
    // costs the emulated VM's CPU that the routers need. A preemption between two reads is
    // still caught: the instance's `since_unix` is compared with the resync's DONE below.
    const POLL: Duration = Duration::from_millis(200);
    let lab = lab("kresync-hold");
    echo_server(&lab, "rs1");
    echo_server(&lab, "rs2");
    let servers = ["10.40.0.11", "10.40.0.12"];

    // 1. r2 (priority 100) alone: master of both instances, idle connections through it.
    let r2 = Router::start(&lab, "r2", &group_config(100, &servers));
    assert!(
        lab::poll_until(Duration::from_secs(20), POLL, || all_in(&r2, "MASTER")),
        "r2 did not become master of both: {:?}\n{}",
        instance_states(&r2),
        r2.log()
    );
    wait_master_side(&lab, "r2");
    let mut conns = open_echoed(&lab, CONNECTIONS);
    // Past the kernel's 2 s sync flush (see failover_run): only a bulk resync can bring
    // these idle connections to r1 now.
    std::thread::sleep(Duration::from_secs(3));

    // 2. r2's haldir does not hear resync requests for a while: the table is late.
    let rules = lab.dir().join("block-resync.nft");
    std::fs::write(
        &rules,
        format!(
            "table inet haldir_hold {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    udp dport {RESYNC_PORT} counter drop\n  }}\n}}\n"
        ),
    )
    .unwrap();
    lab.run("r2", &["nft", "-f", rules.to_str().unwrap()])
        .expect("nft in the VM");

    // 3. r1 (priority 200, preempt) returns. While the table cannot come, neither member
    //    of its sync group may preempt: VI_2 is not the sync daemon's instance, VI_1 has a
    //    track_script. The bridge is watched for r1's request (3b).
    let capture = Capture::start(&lab).expect("capture on the lab bridge");
    let r1 = Router::start(&lab, "r1", &group_config(200, &servers));
    let returned = Instant::now();
    let mut seen_held = Vec::new();
    let mut preempted = None;
    // From the moment both members are seen held, HELD_FOR more (20 s at most in all: r1 can
    // take seconds to leave INIT under emulation).
    let mut both_held_at: Option<Instant> = None;
    while both_held_at.is_none_or(|at| at.elapsed() < HELD_FOR)
        && returned.elapsed() < Duration::from_secs(20)
    {
        for (name, state, held) in instance_states(&r1) {
            if state == "MASTER" && preempted.is_none() {
                preempted = Some(format!(
                    "{name} MASTER {} ms after r1 was up",
                    returned.elapsed().as_millis()
                ));
            }
            if held && !seen_held.contains(&name) {
                seen_held.push(name);
            }
        }
        if both_held_at.is_none() && seen_held.len() == 2 {
            both_held_at = Some(Instant::now());
        }
        std::thread::sleep(POLL);
    }
    let r2_states = instance_states(&r2);
    let blocked_status = r1.status().unwrap_or_default();
    say(&format!(
        "hold: {} ms with the table blocked ({} s of it seen held): r1 {:?}, r2 {r2_states:?}, \
         preempted {preempted:?}, held seen for {seen_held:?}; r1 bulk_resync {}",
        returned.elapsed().as_millis(),
        HELD_FOR.as_secs(),
        instance_states(&r1),
        blocked_status["bulk_resync"]
    ));
    assert_eq!(
        preempted,
        None,
        "r1 preempted before it had the connection table\nr1's log:\n{}\nr2's log:\n{}",
        r1.log(),
        r2.log()
    );
    assert!(
        r2_states.iter().all(|(_, s, _)| s == "MASTER"),
        "r2 lost mastership while r1 was held: {r2_states:?}"
    );
    seen_held.sort();
    assert_eq!(
        seen_held,
        ["VI_1", "VI_2"],
        "`haldir status` did not show both members held"
    );

    // 3b. A real server attacks the resync while the table is blocked: it asks r2 for the
    //     table itself, and forges r2's DONE to r1 with the nonce it read off r1's request
    //     and r2's address as its source (what an unauthenticated resync would believe).
    let nonce = captured_request_nonce(&capture)
        .unwrap_or_else(|| panic!("no request from r1 seen on the bridge\n{}", resync_log(&r1)));
    drop(capture);
    let forged = ResyncMessage::Done(ResyncDone {
        sync_id: SYNC_ID,
        nonce,
        records: 20,
        messages: 1,
        millis: 5,
    })
    .emit();
    let request = ResyncMessage::Request(ResyncRequest {
        sync_id: SYNC_ID,
        pace: 0,
        nonce: 77,
    })
    .emit();
    for _ in 0..3 {
        send_spoofed_udp(&lab, "rs1", R2_ADDRESS, R1_ADDRESS, RESYNC_PORT, &forged);
        send_spoofed_udp(&lab, "rs1", "10.40.0.11", R2_ADDRESS, RESYNC_PORT, &request);
    }
    std::thread::sleep(Duration::from_millis(600));
    let r1_drops = r1.status().unwrap_or_default()["bulk_resync"]["drops"].clone();
    say(&format!(
        "hold: a real server sent 3 forged DONEs (nonce {nonce:#x}, from r2's address) to r1 \
         and 3 requests to r2 (blocked here by nft, so r2 counts none); r1 drops {r1_drops}; \
         r1 {:?}",
        instance_states(&r1)
    ));
    assert_eq!(
        r1_drops["auth_missing"].as_u64(),
        Some(3),
        "r1 did not drop the forged DONEs as unsigned: {r1_drops}"
    );
    assert!(
        instance_states(&r1)
            .iter()
            .all(|(_, state, held)| state == "BACKUP" && *held),
        "a forged DONE lifted r1's hold: {:?}\nr1 bulk_resync {}\nr2 {:?}\nr1's log:\n{}\nr2's log:\n{}",
        instance_states(&r1),
        r1.status().unwrap_or_default()["bulk_resync"],
        instance_states(&r2),
        r1.log(),
        r2.log()
    );

    // 4. The requests get through: the table arrives, then r1 preempts both.
    lab.run("r2", &["nft", "delete", "table", "inet", "haldir_hold"])
        .unwrap();
    for _ in 0..3 {
        send_spoofed_udp(&lab, "rs1", "10.40.0.11", R2_ADDRESS, RESYNC_PORT, &request);
    }
    let unblocked = Instant::now();
    assert!(
        lab::poll_until(Duration::from_secs(20), POLL, || all_in(&r1, "MASTER")),
        "r1 did not preempt once the table could come: {:?}\n{}",
        instance_states(&r1),
        resync_log(&r1)
    );
    let status = r1.status().unwrap();
    let resync = &status["bulk_resync"];
    let done_at = resync["last_received"]["at_unix"]
        .as_f64()
        .unwrap_or_else(|| {
            panic!(
                "r1 has no completed resync: {resync}\nr2's: {}\nr1's log:\n{}\nr2's log:\n{}",
                r2.status().unwrap_or_default()["bulk_resync"],
                r1.log(),
                r2.log()
            )
        });
    let master_since: Vec<f64> = status["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["since_unix"].as_f64().unwrap())
        .collect();
    say(&format!(
        "hold: unblocked -> r1 master of both after {} ms; resync {} records; r1 became master \
         {:?} ms after the resync's DONE; holds {} timeouts {}",
        unblocked.elapsed().as_millis(),
        resync["last_received"]["records"],
        master_since
            .iter()
            .map(|t| ((t - done_at) * 1000.0).round())
            .collect::<Vec<_>>(),
        resync["preemption_holds"],
        resync["hold_timeouts"],
    ));
    assert_eq!(resync["hold_timeouts"], 0, "the hold timed out: {resync}");
    let r2_resync = r2.status().unwrap_or_default()["bulk_resync"].clone();
    say(&format!(
        "hold: r2 answered {} dump(s); its drops {}",
        r2_resync["dumps_sent"], r2_resync["drops"]
    ));
    assert_eq!(
        r2_resync["drops"]["auth_missing"].as_u64(),
        Some(3),
        "r2 did not drop the real server's unsigned requests: {r2_resync}"
    );
    // The real server's requests were dropped before any dump was decided (the count
    // above); what r2 dumped went to r1. The count of dumps is not asserted: one CI run
    // saw r2 dump twice, with one unexpected DONE counted, not explained yet (issue 16's
    // note of 2026-12-05).
    assert!(
        r2_resync["dumps_sent"].as_u64() >= Some(1),
        "r2 never dumped: {r2_resync}"
    );
    assert_eq!(
        r2_resync["last_sent"]["to"], R1_ADDRESS,
        "r2's last dump went to someone else: {r2_resync}"
    );
    assert!(
        master_since.iter().all(|t| *t >= done_at),
        "an instance became master before the resync was done: {master_since:?} vs {done_at}\n\
         r1's log:\n{}\nr2's log:\n{}",
        r1.log(),
        r2.log()
    );
    assert!(
        instance_states(&r1).iter().all(|(_, _, held)| !held),
        "the hold was not lifted: {:?}",
        instance_states(&r1)
    );

    // 5. The idle connections opened through r2 go on through r1.
    let mut lost = Vec::new();
    for (i, c) in conns.iter_mut().enumerate() {
        if let Err(e) = exchange(c, &format!("after{i}"), Duration::from_secs(5)) {
            lost.push(format!("{i}: {e}"));
        }
    }
    say(&format!(
        "hold: RESULT {} of {CONNECTIONS} idle connections lost after r1 preempted",
        lost.len()
    ));
    assert!(lost.is_empty(), "connections lost: {lost:?}");
}
