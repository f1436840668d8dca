//! Benchmark (issue 16), in the VM only: haldir and keepalived side by side on the same
//! generated keepalived.conf, in one run: N virtual servers × 4 real servers (DR, rr), with
//! no checkers, with a TCP_CHECK and with an HTTP_GET on every real server against real
//! listeners.
//!
//!     bash tests/vm/run.sh --bench scale [--services 1000,10000] [--steady 60] [--checks none,tcp,http] [--no-reloads]
//!         [--daemons keepalived,haldir] [--starts 3] [--timeout 900]
//!
//! Each daemon runs alone in a fresh network namespace (IPVS tables are per namespace, and
//! a fresh one has no trash list of deleted destinations slowing its adds). First the
//! **start** figures, from `--starts` rounds (3) of one start of each daemon back to back,
//! the order turned each round, each start in a namespace of its own, once the machine is
//! quiet after the one before, and stopped once measured: from the spawn until the last service has its destinations (both daemons
//! program in the file's order), polled every 25 ms over a netlink socket the bench holds
//! in the daemon's namespace, then confirmed by one read of the whole
//! `/proc/PID/net/ip_vs`; the CPU seconds the daemon's processes used to get there and
//! their RSS then. Each daemon's figure is the median of its starts, and the ratio the
//! median of the rounds' ratios, so that the VM's drift over minutes reaches both daemons
//! of a round alike. Then each daemon is started once more, keepalived first, and its
//! other figures follow that start:
//! - **RSS** over the steady window (sampled every second: the
//!   median and the largest; haldir's drift round every 10 s holds its read for a moment,
//!   so one sample at the window's end said more about when it fell than about the
//!   daemon): the sum over the daemon's processes (keepalived's parent and checker child;
//!   haldir and its script launcher);
//! - **steady CPU** over `--steady` seconds with nothing changing (with checks: the checks'
//!   cost; a check every `delay_loop` = 60 s per real server), after a settling period:
//!   15 s, and for haldir until its two drift rounds after the programming have run (the
//!   first of them verifies the whole table over netlink);
//! - **reload, one weight**: the file rewritten with one weight changed, SIGHUP, until the
//!   kernel shows the weight (that one service's destinations, polled likewise);
//!   time and CPU seconds (exited children included). haldir's netlink writes for it come
//!   from its round's log line;
//! - **reload, +100 services**: likewise until the 100 new services are programmed;
//! - with checks, last, **a real server going down**: the fourth real server's address
//!   leaves the daemon's host, so its checks fail at once in every virtual server (the
//!   storm of a real server behind all of them). The time until no service holds it in
//!   the kernel (`/proc/PID/net/ip_vs` read every 2 s), and the daemon's CPU over that
//!   time, as a share of a core;
//! - with checks, **checks answered per second** over the steady window, and with
//!   `HTTP_GET`s the **lateness of a check**: each virtual server's checks ask for a path of
//!   its own, so the listeners know which check came and when. A check is due `delay_loop`
//!   after its previous arrival; its lateness is how much later it came (the median, the
//!   99th percentile and the worst over the checks due in the window, a check not come by
//!   the window's end counted as late until then). Measured where the checks arrive, the
//!   same way for both daemons. (`TCP_CHECK`s all look alike to a listener.)
//!
//! And once per size, the **kernel floor** of a start: the same services and destinations
//! added by haldir's IPVS library alone (`IpvsClient::apply_batch` of operations built
//! before the clock starts, pipelined) into a fresh namespace, with its wall time and the
//! system CPU it cost. The system time is the kernel's own work for the adds (genetlink,
//! IPVS, per-CPU counters), which any daemon pays before its table is complete; it bounds
//! how low a start's ratio to keepalived can go on this machine.
//!
//! Printed as a table per scenario with the ratio haldir / keepalived. The VM's absolute
//! times swing 2× between runs; the ratios within one run are the figures to read.
//! Outside the VM it says so and exits 0.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use haldir_ipvs::model::{DestKey, Destination, Forwarding, Protocol, Service, ServiceKey};
use haldir_ipvs::{IpvsClient, Op};
use haldir_lab::{in_netns, spawn_in_netns, vm, Lab, Signal};

const REAL_SERVERS: usize = 4;
const KEEPALIVED: &str = "/usr/sbin/keepalived";
/// A check of each real server every this many seconds (keepalived's `delay_loop`).
const DELAY_LOOP_SECS: u32 = 60;
/// The two daemons' binaries as they are run: copies in the VM's memory (`copies`, the
/// directory removed by [`Binaries::remove`]), or where they are installed when they could
/// not be copied.
///
/// The VM sees the host's files over 9p without a page cache: every start of a binary read
/// its pages from the host again (haldir's 19 MB: 440 major faults and 0.13 s more for
/// `haldir --version` than from a copy in memory; about 1,200 faults for a start), which a
/// host that has run a daemon once does not pay. Both are copied, so both start from
/// memory; their shared libraries come from the same place for both.
struct Binaries {
    keepalived: PathBuf,
    haldir: PathBuf,
    copies: Option<PathBuf>,
}

impl Binaries {
    fn copied() -> Binaries {
        let installed = (
            PathBuf::from(KEEPALIVED),
            PathBuf::from(env!("CARGO_BIN_EXE_haldir")),
        );
        let dir = std::env::temp_dir().join(format!("scale-bench-{}", std::process::id()));
        let copy = |from: &Path| -> std::io::Result<PathBuf> {
            let to = dir.join(from.file_name().unwrap_or_default());
            std::fs::copy(from, &to)?;
            Ok(to)
        };
        let copied = std::fs::create_dir_all(&dir)
            .and_then(|()| Ok((copy(&installed.0)?, copy(&installed.1)?)));
        match copied {
            Ok((keepalived, haldir)) => Binaries {
                keepalived,
                haldir,
                copies: Some(dir),
            },
            Err(e) => {
                println!("scale bench: cannot copy the binaries into memory ({e}); run from where they are");
                let _ = std::fs::remove_dir_all(&dir);
                Binaries {
                    keepalived: installed.0,
                    haldir: installed.1,
                    copies: None,
                }
            }
        }
    }

    fn of(&self, which: Impl) -> &Path {
        match which {
            Impl::Keepalived => &self.keepalived,
            Impl::Haldir => &self.haldir,
        }
    }

    fn remove(self) {
        if let Some(dir) = self.copies {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// How long a wait for the kernel's table may take (a start, a reload); `--timeout SECONDS`.
static WAIT_TIMEOUT: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(900);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Impl {
    Keepalived,
    Haldir,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Keepalived => "keepalived",
            Impl::Haldir => "haldir",
        }
    }
}

struct Options {
    sizes: Vec<usize>,
    steady: Duration,
    checks: Vec<Checks>,
    /// `--no-reloads`: start and steady state only. keepalived's reload of one weight with
    /// 40,000 TCP checks takes about 650 s in the VM, and the two reloads make a run with
    /// checks longer than the VM's 30 minutes when the host is slow.
    reloads: bool,
    /// `--daemons keepalived,haldir`: which of the two run (both by default; one alone has
    /// no ratios, for looking into one daemon).
    daemons: Vec<Impl>,
    /// `--starts N`: how many rounds of paired starts the start figures come from. The VM's times
    /// swing from one start to the next (the same build's parse took 1.3 to 2.6 s in one
    /// boot), more than the figure's target leaves room for.
    starts: usize,
}

fn options() -> Options {
    let mut options = Options {
        sizes: vec![1_000, 10_000],
        steady: Duration::from_secs(60),
        checks: vec![Checks::None, Checks::Tcp, Checks::Http],
        reloads: true,
        daemons: vec![Impl::Keepalived, Impl::Haldir],
        starts: 3,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--services" => {
                options.sizes = value
                    .split(',')
                    .map(|n| n.parse().expect("--services N[,N...]"))
                    .collect();
                i += 1;
            }
            "--steady" => {
                options.steady = Duration::from_secs(value.parse().expect("--steady SECONDS"));
                i += 1;
            }
            "--no-reloads" => options.reloads = false,
            "--starts" => {
                options.starts = value.parse().expect("--starts N");
                assert!(options.starts >= 1, "--starts N: at least 1");
                i += 1;
            }
            "--timeout" => {
                let seconds = value.parse().expect("--timeout SECONDS");
                let _ = WAIT_TIMEOUT.set(Duration::from_secs(seconds));
                i += 1;
            }
            "--daemons" => {
                options.daemons = value
                    .split(',')
                    .map(|d| match d {
                        "keepalived" => Impl::Keepalived,
                        "haldir" => Impl::Haldir,
                        other => panic!("--daemons keepalived,haldir: not {other:?}"),
                    })
                    .collect();
                i += 1;
            }
            "--checks" => {
                options.checks = value
                    .split(',')
                    .map(|c| match c {
                        "none" => Checks::None,
                        "tcp" => Checks::Tcp,
                        "http" => Checks::Http,
                        other => panic!("--checks none,tcp,http: not {other:?}"),
                    })
                    .collect();
                i += 1;
            }
            _ => {} // the rig's --test-threads=1, a bench name
        }
        i += 1;
    }
    options
}

fn vip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 30, (i / 250) as u8, (i % 250 + 1) as u8)
}

fn real_server(j: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 31, 0, j as u8 + 1)
}

/// The checkers of a scenario: none, or one on every real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checks {
    None,
    /// `TCP_CHECK`: a connection to the real server's port 80.
    Tcp,
    /// `HTTP_GET` of a path of the virtual server's own (`/vs/I`), so that the listeners
    /// can tell every check from every other and time each one (see [`Arrivals`]).
    Http,
}

impl Checks {
    fn name(self) -> &'static str {
        match self {
            Checks::None => "none",
            Checks::Tcp => "tcp",
            Checks::Http => "http",
        }
    }

    fn describe(self) -> String {
        match self {
            Checks::None => "no checkers".into(),
            Checks::Tcp => {
                format!("TCP_CHECK on every real server (delay_loop {DELAY_LOOP_SECS} s)")
            }
            Checks::Http => format!(
                "HTTP_GET of /vs/<index> on every real server (delay_loop {DELAY_LOOP_SECS} s)"
            ),
        }
    }
}

/// The keepalived.conf both daemons read: `services` virtual servers, the first real
/// server of the first one of weight `first_weight`.
fn keepalived_conf(services: usize, first_weight: u32, checks: Checks) -> String {
    let mut conf = String::from("global_defs {\n    router_id scale_bench\n}\n");
    for i in 0..services {
        let _ = write!(
            conf,
            "virtual_server {} 80 {{\n    delay_loop {DELAY_LOOP_SECS}\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n",
            vip(i)
        );
        for j in 0..REAL_SERVERS {
            let weight = if i == 0 && j == 0 { first_weight } else { 1 };
            let _ = write!(
                conf,
                "    real_server {} 80 {{\n        weight {weight}\n",
                real_server(j)
            );
            match checks {
                Checks::None => {}
                Checks::Tcp => {
                    conf.push_str("        TCP_CHECK {\n            connect_timeout 5\n        }\n")
                }
                Checks::Http => {
                    let _ = write!(
                        conf,
                        "        HTTP_GET {{\n            url {{\n                path /vs/{i}\n                status_code 200\n            }}\n            connect_timeout 5\n        }}\n"
                    );
                }
            }
            conf.push_str("    }\n");
        }
        conf.push_str("}\n");
    }
    conf
}

/// What `/proc/PID/net/ip_vs` shows: services and destinations counted.
#[derive(Debug, Default)]
struct KernelView {
    services: usize,
    destinations: usize,
}

fn kernel_view(pid: u32) -> KernelView {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/ip_vs")).unwrap_or_default();
    let mut view = KernelView::default();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.first() {
            Some(&"TCP") => view.services += 1,
            Some(&"->")
                if fields
                    .get(1)
                    .is_some_and(|f| f.contains(':') && *f != "RemoteAddress:Port") =>
            {
                view.destinations += 1
            }
            _ => {}
        }
    }
    view
}

/// A process and its descendants, read from `/proc`.
struct ProcessTree {
    top: u32,
}

impl ProcessTree {
    fn members(&self) -> Vec<u32> {
        let mut parents: BTreeMap<u32, u32> = BTreeMap::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Some(fields) = stat_fields(pid) {
                parents.insert(pid, fields[1].parse().unwrap_or(0));
            }
        }
        let mut members = vec![self.top];
        let mut i = 0;
        while i < members.len() {
            let parent = members[i];
            members.extend(
                parents
                    .iter()
                    .filter(|(_, p)| **p == parent)
                    .map(|(c, _)| *c),
            );
            i += 1;
        }
        members
    }

    /// CPU seconds of the tree: every member's user + system time, plus the top's reaped
    /// children's (a keepalived reload replaces its checker child).
    fn cpu_seconds(&self) -> f64 {
        let mut ticks = 0u64;
        for pid in self.members() {
            let Some(fields) = stat_fields(pid) else {
                continue;
            };
            // proc(5): utime, stime, cutime, cstime are fields 14-17; `fields` starts at 3.
            let field = |n: usize| fields[n - 3].parse::<u64>().unwrap_or(0);
            ticks += field(14) + field(15);
            if pid == self.top {
                ticks += field(16) + field(17);
            }
        }
        ticks as f64 / clock_ticks_per_second()
    }

    /// CPU ticks (user + system) per thread name over the members, for the breakdown
    /// of a steady window.
    fn thread_ticks(&self) -> BTreeMap<String, u64> {
        let mut ticks = BTreeMap::new();
        for pid in self.members() {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for task in tasks.flatten() {
                let path = task.path();
                let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
                let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
                    continue;
                };
                let Some(close) = stat.rfind(')') else {
                    continue;
                };
                let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
                let used = fields
                    .get(11)
                    .and_then(|f| f.parse::<u64>().ok())
                    .unwrap_or(0)
                    + fields
                        .get(12)
                        .and_then(|f| f.parse::<u64>().ok())
                        .unwrap_or(0);
                *ticks.entry(format!("{pid}/{}", name.trim())).or_default() += used;
            }
        }
        ticks
    }

    /// The sum of the members' resident set sizes, in MB.
    fn rss_mb(&self) -> f64 {
        let kb: u64 = self
            .members()
            .into_iter()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .filter_map(|status| {
                status
                    .lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .sum();
        kb as f64 / 1024.0
    }
}

/// The unit of `/proc/PID/stat`'s CPU times.
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// Fields 3 onwards of `/proc/PID/stat` (after the command name).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    Some(after_name.split_whitespace().map(str::to_owned).collect())
}

/// The real servers' port 80 until dropped. For `TCP_CHECK`s it accepts and closes each
/// connection; for `HTTP_GET`s it reads the request, notes which check it is and when it
/// came ([`Arrivals`]), and answers `200 OK`.
struct Listeners {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    arrivals: Arc<Arrivals>,
}

impl Listeners {
    /// One thread in the namespace, serving every connection asynchronously. (A first
    /// version answered on four threads polling a non-blocking socket, a second on 16
    /// threads each blocked reading one client's request: in the VM both fell behind, the
    /// first with connects timing out on a full backlog of 128, the second at 340-490
    /// answers a second, with checks waiting their turn for a thread.)
    fn start(ns: &str, checks: Checks, services: usize) -> Listeners {
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let arrivals = Arc::new(Arrivals::new(services * REAL_SERVERS));
        let (stop_flag, count, noted) = (stop.clone(), accepted.clone(), arrivals.clone());
        spawn_in_netns(ns, "listeners", move || {
            use socket2::{Domain, Socket, Type};
            let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a TCP socket");
            socket.set_reuse_address(true).unwrap();
            socket
                .bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 80)).into())
                .expect("bind the real servers' port 80");
            socket.listen(4096).expect("listen");
            socket.set_nonblocking(true).unwrap();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the listeners");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(TcpListener::from(socket))
                    .expect("the listener on the runtime");
                let mut look = tokio::time::interval(Duration::from_millis(200));
                while !stop_flag.load(Ordering::Relaxed) {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            count.fetch_add(1, Ordering::Relaxed);
                            if checks == Checks::Http {
                                tokio::spawn(answer_http(stream, Instant::now(), noted.clone()));
                            }
                        }
                        _ = look.tick() => {}
                    }
                }
            });
        })
        .expect("start the listeners");
        Listeners {
            stop,
            accepted,
            arrivals,
        }
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads one `GET /vs/I` request, notes its arrival (`came`: when it was accepted) as
/// check I × 4 + the real server's number, and answers 200 with a short body.
async fn answer_http(mut stream: tokio::net::TcpStream, came: Instant, arrivals: Arc<Arrivals>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = Vec::with_capacity(256);
    let mut buffer = [0u8; 512];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 4096 {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => request.extend_from_slice(&buffer[..n]),
            _ => {
                arrivals.no_request.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
    let index = std::str::from_utf8(&request)
        .ok()
        .and_then(|text| text.strip_prefix("GET /vs/"))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|index| index.parse::<usize>().ok());
    let real_server = match stream.local_addr() {
        Ok(SocketAddr::V4(local)) => (local.ip().octets()[3] as usize).checked_sub(1),
        _ => None,
    };
    match (index, real_server) {
        (Some(index), Some(real_server)) => arrivals.note(index * REAL_SERVERS + real_server, came),
        _ => {
            arrivals.unknown_request.fetch_add(1, Ordering::Relaxed);
        }
    }
    let _ = stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        .await;
    let _ = stream.shutdown().await;
}

/// When each `HTTP_GET` check (a virtual server's path on one real server) came to the
/// listeners, for the worst lateness of a check: measured where the checks arrive, the
/// same way for both daemons.
struct Arrivals {
    checks: usize,
    times: std::sync::Mutex<Vec<(u32, Instant)>>,
    /// Connections whose request did not come within 5 s, or was not a `GET /vs/I`
    /// (answered all the same).
    no_request: AtomicU64,
    unknown_request: AtomicU64,
}

impl Arrivals {
    fn new(checks: usize) -> Arrivals {
        Arrivals {
            checks,
            times: std::sync::Mutex::new(Vec::new()),
            no_request: AtomicU64::new(0),
            unknown_request: AtomicU64::new(0),
        }
    }

    fn note(&self, check: usize, at: Instant) {
        if check < self.checks {
            let mut times = self.times.lock().unwrap_or_else(|e| e.into_inner());
            times.push((check as u32, at));
        }
    }

    /// The lateness of the checks due in `window`: a check is due `period` after the same
    /// check's previous arrival, and late by how much later it came. A check still not come
    /// at the window's end is late by at least the time since it was due.
    fn lateness(&self, window: std::ops::Range<Instant>, period: Duration) -> Lateness {
        let mut last: Vec<Option<Instant>> = vec![None; self.checks];
        let mut lateness = Lateness {
            no_request: self.no_request.load(Ordering::Relaxed),
            unknown_request: self.unknown_request.load(Ordering::Relaxed),
            ..Lateness::default()
        };
        let times = self.times.lock().unwrap_or_else(|e| e.into_inner());
        // Noted in arrival order per answering thread; sorted, every check's arrivals
        // follow each other in time.
        let mut times = times.clone();
        times.sort_by_key(|&(_, at)| at);
        for &(check, at) in times.iter().filter(|(_, at)| *at < window.end) {
            let previous = last[check as usize].replace(at);
            if let Some(previous) = previous {
                if at >= window.start {
                    lateness
                        .samples
                        .push(at.saturating_duration_since(previous + period));
                }
            }
        }
        for previous in &last {
            match previous {
                None => lateness.never += 1,
                Some(previous) if window.end > *previous + period => {
                    lateness.overdue += 1;
                    lateness
                        .samples
                        .push(window.end.saturating_duration_since(*previous + period));
                }
                Some(_) => {}
            }
        }
        lateness.samples.sort();
        lateness
    }
}

/// The lateness of a daemon's checks over the steady window.
#[derive(Debug, Default, Clone)]
struct Lateness {
    /// Lateness of every check due in the window, sorted.
    samples: Vec<Duration>,
    /// Checks due in the window that had not come by its end.
    overdue: usize,
    /// Checks that never came, from the start to the window's end.
    never: usize,
    /// Connections without a request within 5 s, and with one that was not a check's,
    /// from the start to the window's end.
    no_request: u64,
    unknown_request: u64,
}

impl Lateness {
    /// `None` when no check was due in the window (a daemon whose first checks had not
    /// all come by its end).
    fn percentile(&self, fraction: f64) -> Option<Duration> {
        let at = ((self.samples.len() as f64 - 1.0) * fraction).round() as usize;
        self.samples.get(at).copied()
    }
}

/// One daemon's figures in one scenario.
#[derive(Debug, Default, Clone)]
struct Figures {
    /// The start the figures below follow (not a paired start: see [`paired_starts`]).
    own_start: Start,
    /// Median and largest of the samples over the steady window.
    steady_rss_mb: f64,
    steady_rss_max_mb: f64,
    steady_cpu_pct: f64,
    reload_s: f64,
    reload_cpu_s: f64,
    reload_ops: Option<u64>,
    add_s: f64,
    add_cpu_s: f64,
    checks_per_s: Option<f64>,
    /// With `HTTP_GET`s: the lateness of the checks due in the steady window.
    lateness: Option<Lateness>,
    /// With checks: a real server behind every virtual server going down.
    down: Option<Down>,
}

/// A real server behind every virtual server going down: how long until the kernel
/// holds it in no service, and the daemon's share of a core meanwhile.
#[derive(Debug, Default, Clone, Copy)]
struct Down {
    /// Until it was out of every service, or until the watch gave up (`left` > 0).
    gone_s: f64,
    cpu_pct: f64,
    /// The services still holding it when the watch gave up: a daemon whose checker
    /// cannot keep the pace (keepalived's, under emulation) is reported, not dropped
    /// with the rest of its figures.
    left: usize,
}

impl Down {
    fn said(&self) -> String {
        if self.left == 0 {
            format!("out of every service in {:.1} s", self.gone_s)
        } else {
            format!("still in {} services after {:.0} s", self.left, self.gone_s)
        }
    }
}

fn say(text: &str) {
    eprintln!("scale: {text}");
}

/// Polls the daemon's kernel view until `done` holds; the time since `since`.
fn wait_view(
    lab: &Lab,
    pid: u32,
    since: Instant,
    what: &str,
    done: impl Fn(&KernelView) -> bool,
) -> anyhow::Result<f64> {
    wait_kernel(lab, pid, since, what, VIEW_POLL, || {
        let view = kernel_view(pid);
        done(&view).then_some(()).ok_or(view)
    })
}

/// A netlink connection to IPVS in the daemon's namespace, opened by the bench's own
/// process before the clock starts: what the probes that wait for a change poll.
///
/// Under emulation a read of the whole `/proc/net/ip_vs` at 10,000 services costs
/// 0.3-0.5 s of kernel CPU, and an `nsenter ipvsadm -Ln -t` per poll (a fork and two execs
/// every 100 ms) took the VM's two CPUs from the daemon being measured: the start of a
/// daemon that programs 10,000 services in 2.1-2.6 s measured 3.9-4.3 s. One dump of one
/// service's destinations on an open socket costs neither.
struct KernelProbe {
    runtime: tokio::runtime::Runtime,
    client: IpvsClient,
    /// The namespace the socket is in (`net:[INODE]`), for a failure's message.
    namespace: String,
}

impl KernelProbe {
    /// Connects inside namespace `ns` (the socket stays in it; the queries run here).
    fn open(ns: &str) -> anyhow::Result<KernelProbe> {
        in_netns(ns, || -> anyhow::Result<KernelProbe> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let client = runtime.block_on(IpvsClient::connect())?;
            let namespace = std::fs::read_link("/proc/thread-self/ns/net")?
                .display()
                .to_string();
            Ok(KernelProbe {
                runtime,
                client,
                namespace,
            })
        })?
    }

    /// The destinations of virtual server `vip:80` with their weights (`ipvsadm -Ln -t`
    /// of that one service); none when the service is not there (yet).
    fn service_weights(&self, vip: Ipv4Addr) -> Result<Vec<(SocketAddr, u32)>, String> {
        let key = ServiceKey::Address {
            protocol: Protocol::Tcp,
            addr: vip.into(),
            port: 80,
        };
        let entries = self
            .runtime
            .block_on(self.client.destinations(&key))
            .map_err(|e| format!("{e} (probe in {})", self.namespace))?;
        Ok(entries
            .into_iter()
            .map(|entry| {
                (
                    SocketAddr::new(entry.key.addr, entry.key.port),
                    entry.dest.weight,
                )
            })
            .collect())
    }

    /// The weight of the first real server of the first virtual server: what a
    /// one-weight reload changes.
    fn first_weight(&self) -> Option<u32> {
        let dest = SocketAddr::from((real_server(0), 80));
        self.service_weights(vip(0))
            .ok()?
            .into_iter()
            .find_map(|(d, weight)| (d == dest).then_some(weight))
    }

    /// Stops the daemon and empties the table it leaves (keepalived removes its services
    /// as it stops, or part of them before its parent stops waiting; haldir leaves them),
    /// so that none stays in the kernel once the namespace goes. Kernels up to 6.1 keep
    /// every namespace's services in one hash table; `/proc/net/ip_vs` walks all of it but
    /// counts positions only over its own namespace's (`ip_vs_info_seq_next` against
    /// `ip_vs_info_array`), so with another namespace's 10,000 services in the table the
    /// next daemon's text view ended at about half of its own, and a namespace that goes
    /// with its table full tears it down while the next daemon starts.
    fn stop(&self, lab: &Lab, pid: u32) -> anyhow::Result<()> {
        lab.kill(pid, Signal::SIGTERM)?;
        let _ = lab.wait_exit(pid, Duration::from_secs(30));
        self.runtime.block_on(self.client.flush())?;
        Ok(())
    }

    /// Waits until the table has `services` services of [`REAL_SERVERS`] destinations
    /// each: polls the last service until its destinations are all in (both daemons
    /// program in the file's order, which is the addresses'), then reads the whole view
    /// once to confirm. The time is the poll's that saw the last destinations; if the
    /// whole view disagrees, it is polled on and its time counts instead.
    fn wait_table(
        &self,
        lab: &Lab,
        pid: u32,
        since: Instant,
        services: usize,
        what: &str,
    ) -> anyhow::Result<f64> {
        let last_in = wait_kernel(lab, pid, since, what, PROBE_POLL, || {
            match self.service_weights(vip(services - 1)) {
                Ok(last) if last.len() == REAL_SERVERS => Ok(()),
                Ok(last) => Err(format!(
                    "the last service has {last:?} (probe in {})",
                    self.namespace
                )),
                Err(e) => Err(e),
            }
        })?;
        let complete =
            |v: &KernelView| v.services == services && v.destinations == services * REAL_SERVERS;
        if complete(&kernel_view(pid)) {
            return Ok(last_in);
        }
        wait_view(lab, pid, since, what, complete)
    }
}

/// How often a [`KernelProbe`] query polls: a figure is late by half of it on average, 1 %
/// of a 2.5 s start (every 100 ms, it was 2 %, against 0.4 % of keepalived's five times
/// longer start). A dump of one service's destinations is small beside a full read.
const PROBE_POLL: Duration = Duration::from_millis(25);

/// How often a read of the whole `/proc/PID/net/ip_vs` polls (0.3-0.5 s of kernel CPU at
/// 10,000 services under emulation).
const VIEW_POLL: Duration = Duration::from_millis(100);

/// Polls `probe` every `poll` until it says done (`Ok`); its `Err` is shown on timeout.
fn wait_kernel<T: std::fmt::Debug>(
    lab: &Lab,
    pid: u32,
    since: Instant,
    what: &str,
    poll: Duration,
    probe: impl Fn() -> Result<(), T>,
) -> anyhow::Result<f64> {
    loop {
        let view = match probe() {
            Ok(()) => return Ok(since.elapsed().as_secs_f64()),
            Err(view) => view,
        };
        if !lab.is_running(pid) {
            anyhow::bail!(
                "the daemon exited before {what}; its log:\n{}",
                tail(&lab.log_text(pid))
            );
        }
        let timeout = *WAIT_TIMEOUT.get_or_init(|| DEFAULT_WAIT_TIMEOUT);
        if since.elapsed() > timeout {
            anyhow::bail!(
                "{what}: not within {timeout:?} ({view:?}); {}; the daemon's threads:\n{}\nits log:\n{}",
                second_opinion(pid),
                threads_waiting(pid),
                tail(&lab.log_text(pid))
            );
        }
        std::thread::sleep(poll);
    }
}

/// Waits until the daemon's log has `count` lines whose message starts with `prefix`.
fn wait_log(
    lab: &Lab,
    pid: u32,
    prefix: &str,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let since = Instant::now();
    loop {
        let seen = log_lines(lab, pid, prefix).len();
        if seen >= count {
            return Ok(());
        }
        if since.elapsed() > timeout {
            // What the daemon said meanwhile, but its debug lines.
            let log = lab.log_text(pid);
            let said: Vec<&str> = log.lines().filter(|l| !l.contains("\"DEBUG\"")).collect();
            anyhow::bail!(
                "{seen} of {count} log lines \"{prefix}…\" within {timeout:?}; its last lines above debug:\n{}",
                said[said.len().saturating_sub(30)..].join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What `ipvsadm` run in the daemon's namespace sees, and which namespace that is.
fn second_opinion(pid: u32) -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("nsenter")
            .args(["--target", &pid.to_string(), "--net"])
            .args(args)
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_else(|e| e.to_string())
    };
    let listing = run(&["ipvsadm", "-Ln"]);
    let services = listing.lines().filter(|l| l.starts_with("TCP")).count();
    let dests = listing
        .lines()
        .filter(|l| l.trim_start().starts_with("->"))
        .count();
    let namespace = std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let text_view = std::fs::read_to_string(format!("/proc/{pid}/net/ip_vs"))
        .map(|text| text.lines().filter(|l| l.starts_with("TCP")).count())
        .unwrap_or(0);
    let namespaces = std::process::Command::new("lsns")
        .args(["-t", "net", "-o", "NS,NPROCS,PID,COMMAND"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_else(|e| e.to_string());
    format!(
        "ipvsadm -Ln in the daemon's namespace ({namespace}): {services} services, {} destinations; its text view (/proc/PID/net/ip_vs) {text_view} services; network namespaces with processes:\n{namespaces}",
        dests.saturating_sub(1)
    )
}

/// Where each thread of process `pid` is: name, state, the kernel function it waits in
/// and its kernel stack (for a daemon that stopped making progress).
fn threads_waiting(pid: u32) -> String {
    let mut out = String::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    for task in tasks.flatten() {
        let dir = task.path();
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        let state = read("status")
            .lines()
            .find(|line| line.starts_with("State:"))
            .unwrap_or_default()
            .to_owned();
        let _ = writeln!(
            out,
            "{} {} {state} wchan {}\n{}",
            task.file_name().to_string_lossy(),
            read("comm").trim(),
            read("wchan"),
            read("stack")
        );
    }
    out
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn spawn_daemon(lab: &Lab, which: Impl, binary: &Path, conf: &Path) -> anyhow::Result<u32> {
    let dir = lab.dir();
    let mut cmd;
    match which {
        Impl::Keepalived => {
            cmd = Command::new(binary);
            cmd.args(["-n", "-l", "-D", "-C", "-f"])
                .arg(conf)
                .arg("-p")
                .arg(dir.join("keepalived.pid"))
                .arg("-c")
                .arg(dir.join("keepalived.checkers.pid"));
        }
        Impl::Haldir => {
            cmd = Command::new(binary);
            cmd.arg("run")
                .arg("--config")
                .arg(conf)
                .args(["--log-format", "json", "--ipvs-resync", "10"])
                .arg("--control-socket")
                .arg(dir.join("haldir.sock"))
                .arg("--dump-dir")
                .arg(dir.join("dumps"))
                .arg("--state-dir")
                .arg(dir.join("state"))
                .env("HALDIR_LOG", "info,haldir_ipvs::keeper=debug");
        }
    }
    lab.spawn("d", cmd)
}

/// The daemon's JSON log lines whose message starts with `prefix`.
fn log_lines(lab: &Lab, pid: u32, prefix: &str) -> Vec<serde_json::Value> {
    lab.log_text(pid)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| {
            line["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(prefix))
        })
        .collect()
}

/// haldir's netlink writes in the rounds logged after the first `skip` ones.
fn haldir_ops_after(lab: &Lab, pid: u32, skip: usize) -> (usize, u64) {
    let rounds = log_lines(lab, pid, "IPVS table brought in step");
    let ops = rounds
        .iter()
        .skip(skip)
        .filter_map(|round| round["fields"]["applied"].as_u64())
        .sum();
    (rounds.len(), ops)
}

/// Where a daemon runs: a fresh namespace whose host has the real servers' addresses (the
/// listeners answer the checks locally; the VIPs are only IPVS services), the listeners
/// when there are checks, and the keepalived.conf.
struct Scene {
    lab: Lab,
    ns: String,
    listeners: Option<Listeners>,
    conf: PathBuf,
}

impl Scene {
    fn new(which: Impl, services: usize, checks: Checks) -> anyhow::Result<Scene> {
        let lab = Lab::new(&format!("scale-{}", which.name()))?;
        lab.add_host("d", &["10.30.255.254/16"])?;
        let ns = lab.ns_name("d");
        for j in 0..REAL_SERVERS {
            lab.run(
                "d",
                &[
                    "ip",
                    "addr",
                    "add",
                    &format!("{}/32", real_server(j)),
                    "dev",
                    "lo",
                ],
            )?;
        }
        let listeners = (checks != Checks::None).then(|| Listeners::start(&ns, checks, services));
        let conf = lab.dir().join("keepalived.conf");
        std::fs::write(&conf, keepalived_conf(services, 1, checks))?;
        if which == Impl::Haldir {
            let (uid, gid) = haldir_lab::haldir_user()?;
            for dir in ["dumps", "state"] {
                let path: PathBuf = lab.dir().join(dir);
                std::fs::create_dir_all(&path)?;
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
            }
            std::os::unix::fs::chown(&conf, None, Some(gid))?;
        }
        Ok(Scene {
            lab,
            ns,
            listeners,
            conf,
        })
    }
}

/// One start: from the spawn to a complete table, the CPU seconds the daemon's processes
/// used to get there, and their RSS then.
#[derive(Debug, Default, Clone, Copy)]
struct Start {
    wall_s: f64,
    cpu_s: f64,
    rss_mb: f64,
}

/// A daemon started in a scene of its own, its table complete.
struct Running {
    scene: Scene,
    probe: KernelProbe,
    pid: u32,
}

/// Starts `which` in a fresh namespace, once the machine is quiet ([`settle`]), and waits
/// for its table; on a failed wait the daemon is stopped.
fn timed_start(
    which: Impl,
    binary: &Path,
    services: usize,
    checks: Checks,
) -> anyhow::Result<(Start, Running)> {
    settle();
    let scene = Scene::new(which, services, checks)?;
    let probe = KernelProbe::open(&scene.ns)?;
    let started = Instant::now();
    let pid = spawn_daemon(&scene.lab, which, binary, &scene.conf)?;
    let wall_s = match probe.wait_table(&scene.lab, pid, started, services, "the table complete") {
        Ok(wall_s) => wall_s,
        Err(e) => {
            probe.stop(&scene.lab, pid)?;
            return Err(e);
        }
    };
    let tree = ProcessTree { top: pid };
    let start = Start {
        wall_s,
        cpu_s: tree.cpu_seconds(),
        rss_mb: tree.rss_mb(),
    };
    Ok((start, Running { scene, probe, pid }))
}

/// The starts the start figures are taken from: `rounds` rounds of one start of each
/// daemon, back to back, the order turned each round (keepalived first, then haldir first):
/// the two starts of a round see the same host, and the ratio is taken per round. The VM's
/// speed drifts over minutes (the kernel floor of one build measured 0.78 s in one run and
/// 1.21 s in another); with every start of one daemon taken before the other's, minutes
/// apart, the drift went into the ratio. Each start runs in a namespace of its own, used
/// once: a flushed table leaves its 40,000 destinations in the namespace's trash, which
/// every add searches (`ip_vs_trash_get_dest`), and keepalived's start in a namespace used
/// before took 66 s instead of 12-16.
fn paired_starts(
    binaries: &Binaries,
    daemons: &[Impl],
    services: usize,
    checks: Checks,
    rounds: usize,
) -> anyhow::Result<Vec<Vec<(Impl, Start)>>> {
    let mut taken = Vec::new();
    for round in 0..rounds {
        let mut order = daemons.to_vec();
        order.rotate_left(round % daemons.len().max(1));
        let mut this_round = Vec::new();
        for which in order {
            let (start, running) = timed_start(which, binaries.of(which), services, checks)
                .with_context(|| format!("{} start {}", which.name(), round + 1))?;
            running.probe.stop(&running.scene.lab, running.pid)?;
            drop(running);
            say(&format!(
                "round {}: {} programmed in {:.2} s, {:.2} CPU s, RSS {:.1} MB",
                round + 1,
                which.name(),
                start.wall_s,
                start.cpu_s,
                start.rss_mb
            ));
            this_round.push((which, start));
        }
        taken.push(this_round);
    }
    Ok(taken)
}

/// The figures after a start, with the daemon's own start (not one of the paired starts
/// of the start figures): RSS and CPU over the steady window, the reloads, a real server
/// going down.
fn run_one(
    which: Impl,
    binary: &Path,
    services: usize,
    checks: Checks,
    steady: Duration,
    reloads: bool,
) -> anyhow::Result<Figures> {
    let mut figures = Figures::default();
    let (
        start,
        Running {
            scene:
                Scene {
                    lab,
                    listeners,
                    conf,
                    ..
                },
            probe,
            pid,
        },
    ) = timed_start(which, binary, services, checks)?;
    figures.own_start = start;
    let tree = ProcessTree { top: pid };
    say(&format!(
        "{} {services} services{}: programmed in {:.1} s, {:.1} CPU s, RSS {:.1} MB",
        which.name(),
        match checks {
            Checks::None => "",
            Checks::Tcp => " with TCP checks",
            Checks::Http => " with HTTP checks",
        },
        start.wall_s,
        start.cpu_s,
        start.rss_mb
    ));

    // Steady state: a settling period first, then the measured window. keepalived: its
    // first checks, 15 s. haldir: also its start-up drift rounds. The first round after
    // programming finds every service changed since the text view it read before, and
    // verifies the whole table over netlink (about 5 s of emulated CPU at 10,000 services,
    // ending some 15 s after the start); the rounds after it weigh the read cost that
    // paces the checks. The window starts once two rounds have followed the programming.
    std::thread::sleep(Duration::from_secs(15));
    if which == Impl::Haldir {
        wait_log(
            &lab,
            pid,
            "IPVS table still in step",
            2,
            Duration::from_secs(120),
        )?;
    }
    let accepted_before = listeners
        .as_ref()
        .map(|l| l.accepted.load(Ordering::Relaxed));
    let cpu_before = tree.cpu_seconds();
    let threads_before = tree.thread_ticks();
    let window = Instant::now();
    let mut rss_samples = Vec::new();
    while window.elapsed() < steady {
        std::thread::sleep(Duration::from_secs(1).min(steady.saturating_sub(window.elapsed())));
        rss_samples.push(tree.rss_mb());
    }
    let window_end = Instant::now();
    figures.steady_cpu_pct = (tree.cpu_seconds() - cpu_before) / steady.as_secs_f64() * 100.0;
    rss_samples.sort_by(f64::total_cmp);
    figures.steady_rss_mb = rss_samples
        .get(rss_samples.len() / 2)
        .copied()
        .unwrap_or(0.0);
    figures.steady_rss_max_mb = rss_samples.last().copied().unwrap_or(0.0);
    let busy: Vec<String> = tree
        .thread_ticks()
        .into_iter()
        .filter_map(|(thread, after)| {
            let used = after.saturating_sub(threads_before.get(&thread).copied().unwrap_or(0));
            (used > 0).then(|| format!("{thread} {used}"))
        })
        .collect();
    say(&format!(
        "{} steady window: clock ticks per thread (pid/name): {}",
        which.name(),
        if busy.is_empty() {
            "none".into()
        } else {
            busy.join(", ")
        }
    ));
    if let (Some(listeners), Some(before)) = (&listeners, accepted_before) {
        figures.checks_per_s = Some(
            (listeners.accepted.load(Ordering::Relaxed) - before) as f64 / steady.as_secs_f64(),
        );
        if checks == Checks::Http {
            let period = Duration::from_secs(DELAY_LOOP_SECS.into());
            figures.lateness = Some(listeners.arrivals.lateness(window..window_end, period));
        }
    }
    if kernel_view(pid).services != services {
        anyhow::bail!("the table changed during the steady window");
    }

    if reloads {
        reload_figures(
            &lab,
            pid,
            &probe,
            &tree,
            &conf,
            which,
            services,
            checks,
            &mut figures,
        )?;
    }
    if checks != Checks::None {
        // The reloads leave 100 services more.
        let in_table = if reloads { services + 100 } else { services };
        figures.down = Some(real_server_down(&lab, pid, &tree, in_table)?);
    }
    probe.stop(&lab, pid)?;
    drop(listeners);
    Ok(figures)
}

/// The last real server's address leaves the daemon's host (see the module comment).
fn real_server_down(
    lab: &Lab,
    pid: u32,
    tree: &ProcessTree,
    services: usize,
) -> anyhow::Result<Down> {
    let gone = real_server(REAL_SERVERS - 1);
    let hex = format!("{:08X}:", u32::from(gone));
    let holding = || {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/ip_vs")).unwrap_or_default();
        text.lines()
            .filter(|line| {
                line.trim_start()
                    .strip_prefix("-> ")
                    .is_some_and(|rest| rest.starts_with(&hex))
            })
            .count()
    };
    let before = holding();
    if before != services {
        anyhow::bail!("{gone} is in {before} services before it goes, not {services}");
    }
    let cpu_before = tree.cpu_seconds();
    let since = Instant::now();
    lab.run(
        "d",
        &["ip", "addr", "del", &format!("{gone}/32"), "dev", "lo"],
    )?;
    let left = loop {
        std::thread::sleep(Duration::from_secs(2));
        let left = holding();
        if left == 0 {
            break 0;
        }
        if !lab.is_running(pid) {
            anyhow::bail!(
                "the daemon exited while {gone} was going; its log:\n{}",
                tail(&lab.log_text(pid))
            );
        }
        if since.elapsed() > Duration::from_secs(DELAY_LOOP_SECS as u64 * 4) {
            break left;
        }
    };
    let gone_s = since.elapsed().as_secs_f64();
    let down = Down {
        gone_s,
        cpu_pct: (tree.cpu_seconds() - cpu_before) / gone_s * 100.0,
        left,
    };
    say(&format!(
        "{gone} went from behind {services} services: {} (read every 2 s), the daemon at {:.1} % of a core meanwhile",
        down.said(),
        down.cpu_pct
    ));
    Ok(down)
}

/// The two reloads: one weight, then 100 more services.
#[allow(clippy::too_many_arguments)]
fn reload_figures(
    lab: &Lab,
    pid: u32,
    probe: &KernelProbe,
    tree: &ProcessTree,
    conf: &Path,
    which: Impl,
    services: usize,
    checks: Checks,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    // Reload: one weight.
    let rounds_before = if which == Impl::Haldir {
        haldir_ops_after(lab, pid, 0).0
    } else {
        0
    };
    std::fs::write(conf, keepalived_conf(services, 3, checks))?;
    let cpu_before = tree.cpu_seconds();
    let sent = Instant::now();
    lab.kill(pid, Signal::SIGHUP)?;
    figures.reload_s = wait_kernel(lab, pid, sent, "the reloaded weight", PROBE_POLL, || {
        let weight = probe.first_weight();
        (weight == Some(3)).then_some(()).ok_or(weight)
    })?;
    figures.reload_cpu_s = tree.cpu_seconds() - cpu_before;
    if which == Impl::Haldir {
        // The round's log line comes right after its writes.
        let ok = haldir_lab::wait_until(Duration::from_secs(10), || {
            haldir_ops_after(lab, pid, 0).0 > rounds_before
        });
        figures.reload_ops = ok.then(|| haldir_ops_after(lab, pid, rounds_before).1);
    }
    // Let the reload's tail (keepalived's new checker child, haldir's round) finish.
    std::thread::sleep(Duration::from_secs(5));

    // Reload: 100 more services.
    std::fs::write(conf, keepalived_conf(services + 100, 3, checks))?;
    let cpu_before = tree.cpu_seconds();
    let sent = Instant::now();
    lab.kill(pid, Signal::SIGHUP)?;
    figures.add_s = probe.wait_table(lab, pid, sent, services + 100, "the 100 added services")?;
    figures.add_cpu_s = tree.cpu_seconds() - cpu_before;
    Ok(())
}

/// The kernel floor of a start (see the module comment).
struct Floor {
    wall_s: f64,
    system_s: f64,
    user_s: f64,
}

/// This process's (user, system) CPU seconds so far.
fn own_cpu_seconds() -> (f64, f64) {
    let fields = stat_fields(std::process::id()).unwrap_or_default();
    // proc(5): utime and stime are fields 14 and 15; `fields` starts at 3.
    let seconds = |n: usize| {
        let ticks = fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        ticks.unwrap_or(0) as f64 / clock_ticks_per_second()
    };
    (seconds(14), seconds(15))
}

/// Waits until the machine is quiet before a start, so that no start shares the CPUs with
/// what came before it: the namespace torn down before it (kernel work that goes on after
/// `ip netns delete` returns) and the last daemon's exit. Quiet: the CPUs 90 % idle over a
/// second, twice in a row, after 2 s; at most 60 s. It replaced a fixed 10 s pause after a
/// run where haldir's starts right after one of keepalived's took 3.1 s against 2.3 s
/// after one of its own; in the runs since, every start found the machine quiet at the
/// first look (4 s), and a slow start came after either daemon, so that was not the cause.
fn settle() {
    std::thread::sleep(Duration::from_secs(2));
    let began = Instant::now();
    let mut before = cpu_times();
    let mut quiet_seconds = 0;
    while began.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_secs(1));
        let after = cpu_times();
        let (idle, total) = (after.0 - before.0, after.1 - before.1);
        before = after;
        quiet_seconds = if total > 0 && idle * 10 >= total * 9 {
            quiet_seconds + 1
        } else {
            0
        };
        if quiet_seconds == 2 {
            say(&format!(
                "quiet after {:.0} s",
                began.elapsed().as_secs_f64() + 2.0
            ));
            return;
        }
    }
    say("the machine was not quiet after 60 s; starting all the same");
}

/// The machine's idle and total CPU time so far, in clock ticks (`/proc/stat`'s `cpu`
/// line: user nice system idle iowait irq softirq steal; idle and iowait are idle).
fn cpu_times() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|t| t.parse().unwrap_or(0))
        .collect();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    (idle, ticks.iter().sum())
}

/// Adds the file's `services` × [`REAL_SERVERS`] with the IPVS library alone, in a fresh
/// namespace, and checks the count.
fn kernel_floor(services: usize) -> anyhow::Result<Floor> {
    let lab = Lab::new("scale-floor")?;
    lab.add_host("f", &["10.30.255.254/16"])?;
    let mut ops = Vec::with_capacity(services * (1 + REAL_SERVERS));
    for i in 0..services {
        let key = ServiceKey::Address {
            protocol: Protocol::Tcp,
            addr: vip(i).into(),
            port: 80,
        };
        ops.push(Op::AddService {
            key,
            service: Service::new("rr"),
        });
        for j in 0..REAL_SERVERS {
            ops.push(Op::AddDest {
                service: key,
                key: DestKey::new(real_server(j).into(), 80),
                dest: Destination::new(Forwarding::DirectRoute, 1),
            });
        }
    }
    let floor = in_netns(&lab.ns_name("f"), || -> anyhow::Result<Floor> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let client = IpvsClient::connect().await?;
            let (user_before, system_before) = own_cpu_seconds();
            let started = Instant::now();
            let outcomes = client.apply_batch(&ops).await?;
            let wall_s = started.elapsed().as_secs_f64();
            let (user_after, system_after) = own_cpu_seconds();
            let failed = outcomes.iter().filter(|o| o.is_err()).count();
            anyhow::ensure!(failed == 0, "{failed} of {} adds failed", ops.len());
            Ok(Floor {
                wall_s,
                system_s: system_after - system_before,
                user_s: user_after - user_before,
            })
        })
    })??;
    say(&format!(
        "kernel floor, {services} services: the library's batch took {:.2} s, {:.2} s system + {:.2} s user CPU",
        floor.wall_s, floor.system_s, floor.user_s
    ));
    Ok(floor)
}

/// The paired starts of one scenario ([`paired_starts`]), round by round.
struct Rounds(Vec<Vec<(Impl, Start)>>);

impl Rounds {
    /// The median over `which`'s starts of one of their figures.
    fn median(&self, which: Impl, figure: fn(&Start) -> f64) -> f64 {
        let samples: Vec<f64> = self
            .0
            .iter()
            .flatten()
            .filter(|(w, _)| *w == which)
            .map(|(_, start)| figure(start))
            .collect();
        median(&samples)
    }

    /// haldir's figure over keepalived's, one ratio per round that has both.
    fn ratios(&self, figure: fn(&Start) -> f64) -> Vec<f64> {
        self.0
            .iter()
            .filter_map(|round| {
                let of = |which| {
                    round
                        .iter()
                        .find(|(w, _)| *w == which)
                        .map(|(_, s)| figure(s))
                };
                match (of(Impl::Haldir), of(Impl::Keepalived)) {
                    (Some(h), Some(k)) if k > 0.0 => Some(h / k),
                    _ => None,
                }
            })
            .collect()
    }
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn ratio(h: f64, k: f64) -> String {
    if k > 0.0 {
        format!("{:.2}", h / k)
    } else {
        "—".into()
    }
}

fn report(
    services: usize,
    checks: Checks,
    k: &Figures,
    h: &Figures,
    rounds: &Rounds,
    floor: Option<&Floor>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{services} virtual servers × {REAL_SERVERS} real servers, {}",
        checks.describe()
    );
    let _ = writeln!(
        out,
        "{:<44} {:>12} {:>12} {:>8}",
        "figure", "keepalived", "haldir", "h/k"
    );
    // The start rows: each daemon's median over the paired starts, and the median of the
    // rounds' ratios.
    let mut paired_row = |name: &str, figure: fn(&Start) -> f64, unit: &str| {
        let ratios = rounds.ratios(figure);
        let _ = writeln!(
            out,
            "{:<44} {:>12} {:>12} {:>8}",
            name,
            format!("{:.2}{unit}", rounds.median(Impl::Keepalived, figure)),
            format!("{:.2}{unit}", rounds.median(Impl::Haldir, figure)),
            if ratios.is_empty() {
                "—".into()
            } else {
                format!("{:.3}", median(&ratios))
            }
        );
    };
    paired_row(
        &format!("start → table complete, {} rounds", rounds.0.len()),
        |s| s.wall_s,
        " s",
    );
    paired_row("  CPU to get there", |s| s.cpu_s, " s");
    paired_row("RSS once programmed", |s| s.rss_mb, " MB");
    let mut row = |name: &str, kv: f64, hv: f64, unit: &str| {
        let _ = writeln!(
            out,
            "{:<44} {:>12} {:>12} {:>8}",
            name,
            format!("{kv:.2}{unit}"),
            format!("{hv:.2}{unit}"),
            ratio(hv, kv)
        );
    };
    row(
        "RSS over the steady window, median",
        k.steady_rss_mb,
        h.steady_rss_mb,
        " MB",
    );
    row("  largest", k.steady_rss_max_mb, h.steady_rss_max_mb, " MB");
    row(
        "steady CPU (% of a core)",
        k.steady_cpu_pct,
        h.steady_cpu_pct,
        " %",
    );
    // Not measured with --no-reloads.
    if k.reload_s > 0.0 || h.reload_s > 0.0 {
        row(
            "reload, one weight → in the kernel",
            k.reload_s,
            h.reload_s,
            " s",
        );
        row("  its CPU", k.reload_cpu_s, h.reload_cpu_s, " s");
        row(
            "reload, +100 services → in the kernel",
            k.add_s,
            h.add_s,
            " s",
        );
        row("  its CPU", k.add_cpu_s, h.add_cpu_s, " s");
    }
    if let (Some(kc), Some(hc)) = (k.checks_per_s, h.checks_per_s) {
        row("checks answered per second", kc, hc, "");
    }
    // A daemon that did not take the real server out of every service has no time to
    // compare: said in words, after the rows.
    let mut down_note = None;
    if let (Some(kd), Some(hd)) = (k.down, h.down) {
        if kd.left == 0 && hd.left == 0 {
            row(
                "a real server down → out of every service",
                kd.gone_s,
                hd.gone_s,
                " s",
            );
            row(
                "  CPU meanwhile (% of a core)",
                kd.cpu_pct,
                hd.cpu_pct,
                " %",
            );
        } else {
            down_note = Some(format!(
                "a real server down: keepalived {} at {:.1} % of a core; haldir {} at {:.1} %",
                kd.said(),
                kd.cpu_pct,
                hd.said(),
                hd.cpu_pct
            ));
        }
    }
    if let Some(note) = down_note {
        let _ = writeln!(out, "{note}");
    }
    if let (Some(kl), Some(hl)) = (&k.lateness, &h.lateness) {
        for (name, fraction) in [
            ("lateness of a check due in the window, median", 0.5),
            ("  99th percentile", 0.99),
            ("  worst", 1.0),
        ] {
            let ms = |l: &Lateness| l.percentile(fraction).map(|d| d.as_secs_f64() * 1000.0);
            let shown = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.2} ms"));
            let (kv, hv) = (ms(kl), ms(hl));
            let _ = writeln!(
                out,
                "{name:<44} {:>12} {:>12} {:>8}",
                shown(kv),
                shown(hv),
                match (kv, hv) {
                    (Some(kv), Some(hv)) => ratio(hv, kv),
                    _ => "—".into(),
                }
            );
        }
        let _ = writeln!(
            out,
            "checks due in the window and not come by its end: keepalived {} of {}, haldir {} of {}; \
             never come since the start: keepalived {}, haldir {}; connections without a request \
             within 5 s: keepalived {}, haldir {}; with another request: keepalived {}, haldir {}",
            kl.overdue,
            kl.samples.len(),
            hl.overdue,
            hl.samples.len(),
            kl.never,
            hl.never,
            kl.no_request,
            hl.no_request,
            kl.unknown_request,
            hl.unknown_request
        );
    }
    let _ = writeln!(
        out,
        "start rows: each daemon's median over the rounds' starts, h/k the median of the \
         rounds' ratios; the rounds (start → table complete, h/k):"
    );
    for (nth, round) in rounds.0.iter().enumerate() {
        let starts: Vec<String> = round
            .iter()
            .map(|(which, start)| format!("{} {:.2} s", which.name(), start.wall_s))
            .collect();
        let ratio = Rounds(vec![round.clone()]).ratios(|s| s.wall_s);
        let _ = writeln!(
            out,
            "  round {}: {}{}",
            nth + 1,
            starts.join(", "),
            ratio
                .first()
                .map_or(String::new(), |r| format!(" ({r:.3})"))
        );
    }
    let _ = writeln!(
        out,
        "the start the other figures follow: keepalived {:.2} s, {:.2} CPU s, {:.1} MB; \
         haldir {:.2} s, {:.2} CPU s, {:.1} MB",
        k.own_start.wall_s,
        k.own_start.cpu_s,
        k.own_start.rss_mb,
        h.own_start.wall_s,
        h.own_start.cpu_s,
        h.own_start.rss_mb
    );
    if h.reload_s > 0.0 {
        let _ = writeln!(
            out,
            "haldir's netlink writes for the one-weight reload: {}",
            h.reload_ops.map_or("not logged".into(), |n| n.to_string())
        );
    }
    if let Some(floor) = floor {
        let _ = writeln!(
            out,
            "kernel floor of a start (the adds alone, by the library, ops built beforehand): \
             {:.2} s wall, of it {:.2} s the kernel's own (system CPU) = {} × keepalived's start; \
             haldir's start is {:.2} s above the floor",
            floor.wall_s,
            floor.system_s,
            ratio(
                floor.system_s,
                rounds.median(Impl::Keepalived, |s| s.wall_s)
            ),
            rounds.median(Impl::Haldir, |s| s.wall_s) - floor.wall_s
        );
    }
    out
}

fn main() {
    if !vm::in_vm() {
        println!(
            "scale bench: SKIPPED, needs the IPVS kernel: run `bash tests/vm/run.sh --bench scale`"
        );
        return;
    }
    let options = options();
    haldir_lab::raise_fd_limit(65_536);
    let binaries = Binaries::copied();
    let mut reports = String::new();
    let mut failed = false;
    for &services in &options.sizes {
        let mut pairs = Vec::new();
        for &checks in &options.checks {
            let rounds = match paired_starts(
                &binaries,
                &options.daemons,
                services,
                checks,
                options.starts,
            ) {
                Ok(rounds) => Rounds(rounds),
                Err(e) => {
                    println!(
                        "{services} {}: the paired starts FAILED: {e:#}",
                        checks.name()
                    );
                    failed = true;
                    continue;
                }
            };
            let mut results = Vec::new();
            for &which in &options.daemons {
                let binary = binaries.of(which);
                match run_one(
                    which,
                    binary,
                    services,
                    checks,
                    options.steady,
                    options.reloads,
                ) {
                    Ok(figures) => results.push(figures),
                    Err(e) => {
                        println!(
                            "{} {services} {}: FAILED: {e:#}",
                            which.name(),
                            checks.name()
                        );
                        failed = true;
                    }
                }
            }
            if let Ok([k, h]) = <[Figures; 2]>::try_from(results) {
                pairs.push((checks, k, h, rounds));
            }
        }
        // Last, so that tearing its namespace down does not slow a daemon's start; once
        // the daemons' namespaces are torn down.
        settle();
        let floor = match kernel_floor(services) {
            Ok(floor) => Some(floor),
            Err(e) => {
                println!("kernel floor {services}: FAILED: {e:#}");
                failed = true;
                None
            }
        };
        for (checks, k, h, rounds) in &pairs {
            let text = report(services, *checks, k, h, rounds, floor.as_ref());
            println!("{text}");
            reports.push_str(&text);
        }
    }
    println!("\n===== scale bench, all scenarios =====\n{reports}");
    binaries.remove();
    if failed {
        std::process::exit(1);
    }
}
