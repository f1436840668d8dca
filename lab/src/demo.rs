//! The demo, run by the `haldir-lab` binary (`cargo run --release -p haldir-lab`).
//!
//! By default, the whole two-NIC LVS direct-routing appliance of [`super::appliance`] in
//! network namespaces: two routers running haldir (a sync group over both NICs, IPVS, the
//! connection-sync daemon), two real servers, an upstream gateway and a client holding 200
//! long-lived TCP connections through the VIP. It kills the master's haldir (kill -9),
//! prints the timeline (election, gratuitous ARP, first packet forwarded by the new master)
//! and how many established connections survived, lets the old master return and preempt,
//! and removes everything it created. On a kernel without IPVS (no `/proc/net/ip_vs` after
//! `modprobe ip_vs`) it runs itself inside the VM rig of `tests/vm/run.sh --lab`.
//!
//! `--active-active`: the story of [`super::active_active`] instead (three directors behind an
//! ECMP router, FRR announcing the VIP for each; a director dies, returns, a fourth joins, one
//! loses its quorum, one is stopped, a real server dies), with the reroute time and the
//! connections lost at each step; in the VM like the appliance.
//!
//! `--active-standby`: the same site and story with a haldir VRRP pair instead of the ECMP
//! directors ([`super::active_standby`]): the master dies, returns, a real server dies.
//!
//! `--vrrp-only`: the VRRP part alone, on one bridge with two routers and a client (no
//! IPVS needed): it kills the master (kill -9, or a graceful stop), prints what the client
//! saw and the timeline on the wire, and lets the old master return and preempt.
//!
//! The routers run the `haldir` binary: `--haldir PATH`, else `$HALDIR_BIN`, else the
//! `haldir` beside this executable, which is built first (`$CARGO build -p haldir --bin
//! haldir`) when it is missing or older than this executable and `cargo run` started us.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::appliance::{self, StoryOptions};
use super::capture::{Capture, Frame, FrameKind};
use super::haldir::{Haldir, HaldirInstance};
use super::is_root;
use super::netns::Lab;
use super::probe::{Prober, Responder};

const PROBE_PORT: u16 = 7777;

/// The VM rig that runs the demo on a kernel with IPVS, relative to the source tree.
const VM_SCRIPT: &str = "tests/vm/run.sh";

/// Where the routers' haldir binary is taken from when `--haldir` is not given.
pub const HALDIR_BIN_ENV: &str = "HALDIR_BIN";

/// Options of the demo (`haldir-lab`).
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// Only the VRRP failover (two routers and a client on one bridge; no IPVS needed).
    #[arg(long)]
    pub vrrp_only: bool,
    /// Active-active instead: three directors behind an ECMP router, each announcing the
    /// VIP over BGP with FRR (needs IPVS and FRR).
    #[arg(long, conflicts_with = "active_standby")]
    pub active_active: bool,
    /// The active-active site's story with a haldir VRRP pair (active-standby) instead of
    /// the ECMP directors, for the comparison (needs IPVS).
    #[arg(long)]
    pub active_standby: bool,
    /// Long-lived TCP connections through the VIP (default 200; 300 with --active-active
    /// or --active-standby).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Seconds between two messages of one connection (default 0.1; 1 inside the VM,
    /// whose software emulation carries a few hundred messages per second, not 2000).
    #[arg(long)]
    pub interval: Option<f64>,
    /// VRRP version (2 or 3; the appliance uses 3).
    #[arg(long, default_value_t = 3)]
    pub version: u8,
    /// Advertisement interval in seconds (whole seconds for version 2).
    #[arg(long, default_value_t = 0.1)]
    pub advert_int: f64,
    /// Stop the master gracefully (SIGTERM) instead of kill -9.
    #[arg(long)]
    pub graceful: bool,
    /// Use an IPv6 virtual address (with --vrrp-only, version 3).
    #[arg(long)]
    pub ipv6: bool,
    /// The haldir binary the routers run (default: $HALDIR_BIN, else the `haldir` beside
    /// this executable, built first under `cargo run` when missing or older).
    #[arg(long, alias = "binary")]
    pub haldir: Option<PathBuf>,
    /// The VM rig, `tests/vm/run.sh` (default: found by walking up from the current
    /// directory and from this executable's directory).
    #[arg(long)]
    pub vm_script: Option<PathBuf>,
    /// Never re-run inside the VM: fail when this kernel has no IPVS.
    #[arg(long)]
    pub no_vm: bool,
}

/// The haldir binary the routers run: `--haldir`, else `$HALDIR_BIN`, else the `haldir`
/// beside this executable. Under `cargo run` (`$CARGO` set) that last one is built first
/// when it is missing or older than this executable, in this executable's profile.
pub fn haldir_binary(options: &DemoOptions) -> anyhow::Result<PathBuf> {
    let given = options
        .haldir
        .clone()
        .map(|path| (path, "--haldir"))
        .or_else(|| std::env::var_os(HALDIR_BIN_ENV).map(|path| (path.into(), "$HALDIR_BIN")));
    if let Some((path, from)) = given {
        if !path.is_file() {
            bail!(
                "the haldir binary {} (from {from}) does not exist",
                path.display()
            );
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let dir = exe
        .parent()
        .context("this executable has no parent directory")?;
    let sibling = dir.join("haldir");
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let stale = match (modified(&sibling), modified(&exe)) {
        (None, _) => true,
        (Some(haldir), Some(lab)) => haldir < lab,
        (Some(_), None) => false,
    };
    if stale {
        if let Some(cargo) = std::env::var_os("CARGO") {
            build_haldir(&cargo, dir.file_name() == Some("release".as_ref()))?;
        }
    }
    if !sibling.is_file() {
        bail!(
            "no haldir binary: {} does not exist; build it (`cargo build --release --bin \
             haldir`), run the demo with `cargo run --release -p haldir-lab`, or name one with \
             --haldir PATH or ${HALDIR_BIN_ENV}",
            sibling.display()
        );
    }
    Ok(sibling)
}

/// `$CARGO build -p haldir --bin haldir [--release]`, announced on stdout.
fn build_haldir(cargo: &OsString, release: bool) -> anyhow::Result<()> {
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "haldir", "--bin", "haldir"]);
    // `cargo run` described this package to us in the environment; build scripts that
    // watch those variables (ring's watches CARGO_MANIFEST_DIR) would otherwise be rerun,
    // and everything above them rebuilt, once here and once more by the next `cargo run`.
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_run) {
            cmd.env_remove(name);
        }
    }
    if release {
        cmd.arg("--release");
    }
    println!(
        "== building the haldir binary the routers run: {}",
        super::command_line(&cmd)
    );
    let status = cmd
        .status()
        .with_context(|| format!("cannot run `{}`", super::command_line(&cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", super::command_line(&cmd));
    }
    Ok(())
}

/// True for the variables `cargo run` sets to describe the package it runs.
fn set_by_cargo_run(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_MANIFEST_LINKS"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "OUT_DIR"
        )
}

/// The VM rig: `--vm-script`, else `tests/vm/run.sh` in the current directory or one of
/// its parents, else in this executable's directory or one of its parents.
fn vm_script(options: &DemoOptions) -> anyhow::Result<PathBuf> {
    if let Some(path) = &options.vm_script {
        if !path.is_file() {
            bail!("--vm-script {} does not exist", path.display());
        }
        return Ok(path.clone());
    }
    let starts = [
        std::env::current_dir().ok(),
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf)),
    ];
    starts
        .iter()
        .flatten()
        .flat_map(|start| start.ancestors())
        .map(|dir| dir.join(VM_SCRIPT))
        .find(|path| path.is_file())
        .with_context(|| {
            format!(
                "this kernel has no IPVS (no /proc/net/ip_vs, even after `modprobe ip_vs`), and \
                 the VM rig that would boot one, {VM_SCRIPT}, is not in the current directory, \
                 this executable's directory or any of their parents. Run the demo on a kernel \
                 with IPVS, from the source tree with `cargo run --release -p haldir-lab`, \
                 name the rig with --vm-script PATH, or use --vrrp-only (no IPVS needed)."
            )
        })
}

/// Runs the demo and prints its story to stdout.
pub fn run(options: DemoOptions) -> anyhow::Result<()> {
    if options.vrrp_only {
        return run_vrrp_only(options);
    }
    if options.active_active || options.active_standby {
        return run_director_story(options);
    }
    if options.version != 3 || options.ipv6 {
        bail!(
            "the appliance demo runs VRRPv3 over IPv4; --version 2 and --ipv6 go with --vrrp-only"
        );
    }
    if !(0.01..=40.95).contains(&options.advert_int) {
        bail!("--advert-int must be 0.01..=40.95 seconds for VRRPv3");
    }
    if !is_root() {
        bail!("the demo builds network namespaces: run it as root");
    }
    let binary = haldir_binary(&options)?;
    if !appliance::kernel_has_ipvs() {
        return run_in_vm(&options, &binary);
    }
    let mut story = StoryOptions::new(binary);
    story.connections = options.connections.unwrap_or(200);
    story.graceful = options.graceful;
    story.appliance.advert_int = Duration::from_secs_f64(options.advert_int);
    let interval = options
        .interval
        .unwrap_or(if super::vm::in_vm() { 1.0 } else { 0.1 });
    if !(0.01..=10.0).contains(&interval) {
        bail!("--interval must be 0.01..=10 seconds");
    }
    story.traffic.interval = Duration::from_secs_f64(interval);
    println!(
        "== haldir-lab: a two-NIC LVS direct-routing appliance in network namespaces\n\
         \n\
         \x20  client 10.9.0.10 -- gw -- public bridge: r1, r2 eth0   VIP {vip} (VRRP VI_PUBLIC)\n\
         \x20                     gw -- private bridge: r1, r2 eth1  {private} (VRRP VI_PRIVATE),\n\
         \x20                           rs1 10.2.0.11, rs2 10.2.0.12  (VIP on lo; they answer the client via gw)\n\
         \n\
         \x20  r1 and r2 run haldir: sync group of VI_PUBLIC + VI_PRIVATE, priorities 150 / 100,\n\
         \x20  VRRPv3 adverts every {advert:?}; IPVS DR {vip}:{port} rr -> rs1, rs2 with TCP_CHECK;\n\
         \x20  the kernel's connection-sync daemon on eth1 follows VI_PUBLIC.\n\
         \x20  The client holds {connections} connections, each sending a message every {interval:?} and\n\
         \x20  checking the echo (lost: reset, EOF, error, wrong echo; stalled: no echo for {stall:?}).\n",
        vip = appliance::VIP,
        private = appliance::PRIVATE_VIP,
        port = appliance::SERVICE_PORT,
        advert = story.appliance.advert_int,
        connections = story.connections,
        interval = story.traffic.interval,
        stall = story.stall_threshold,
    );
    let mut say = |text: &str| println!("-- {text}");
    let outcome = appliance::run_story(&story, &mut say)?;
    println!();
    for leg in &outcome.legs {
        let gap = leg
            .longest_gap
            .map(|(gap, _)| format!("{:.0} ms", gap.as_secs_f64() * 1000.0))
            .unwrap_or_else(|| format!("under {:?}", story.traffic.interval * 2));
        println!(
            "== {}: {} of {} established connections survived, {} lost, {} stalled; \
             longest silence {gap}; new connections {}/{}",
            leg.name,
            leg.survived,
            leg.established,
            leg.lost.len(),
            leg.stalled.len(),
            leg.new_up,
            leg.new_opened
        );
    }
    println!(
        "== {} messages echoed over {} connections ({:?}); the demo took {:.0} s; namespaces and \
         processes removed",
        outcome.exchanges,
        outcome.by_server.values().sum::<usize>(),
        outcome.by_server,
        outcome.elapsed.as_secs_f64()
    );
    if !outcome.clean() {
        bail!("connections were lost or stalled (see above)");
    }
    Ok(())
}

/// `--active-active` and `--active-standby`: the story of [`super::active_active`] or of
/// [`super::active_standby`] (the same site with a VRRP pair), narrated, with a summary.
fn run_director_story(options: DemoOptions) -> anyhow::Result<()> {
    use super::active_active as aa;
    use super::active_standby as standby;
    use super::director_site::{self as site, event_line};
    if !is_root() {
        bail!("the demo builds network namespaces: run it as root");
    }
    let binary = haldir_binary(&options)?;
    if !appliance::kernel_has_ipvs() {
        return run_in_vm(&options, &binary);
    }
    let outcome = if options.active_standby {
        let mut story = standby::StoryOptions::new(binary);
        pace(&mut story, &options)?;
        println!(
            "== haldir-lab --active-standby: a haldir VRRP pair on the active-active site\n\
             \n\
             \x20  client (100 source addresses) -- router ({vip}/32 via {floating}, static; no FRR)\n\
             \x20  router -- segment: d1 (priority 150) d2 (100): haldir (VRRPv3 advert {advert:?}, {floating}\n\
             \x20                     and {vip} on the master, IPVS DR {vip}:{port} mh, TCP_CHECK,\n\
             \x20                     sync daemon following the instance, bulk resync)\n\
             \x20                     rs1 rs2 rs3 (VIP on lo; they answer the client via the router)\n\
             {}",
            pacing(&story),
            vip = site::VIP,
            floating = standby::FLOATING_ADDRESS,
            port = site::SERVICE_PORT,
            advert = story.site.advert_int,
        );
        let mut say = |text: &str| println!("-- {text}");
        standby::run_story(&story, &mut say)?
    } else {
        if !super::frr::is_installed() {
            bail!("--active-active needs FRR (zebra, bgpd, bfdd, vtysh): apt-get install frr");
        }
        let mut story = aa::StoryOptions::new(binary);
        pace(&mut story, &options)?;
        println!(
            "== haldir-lab --active-active: directors behind an ECMP router, announced over BGP\n\
             \n\
             \x20  client (100 source addresses) -- router (FRR bgpd + bfdd, maximum-paths 8, L4 hash)\n\
             \x20  router -- segment: d1 d2 d3 (later d4): haldir ([announce], IPVS DR {vip}:{port} mh,\n\
             \x20                     TCP_CHECK, sync daemons) + FRR (network {vip}/32, BFD {bfd:?} x {mult})\n\
             \x20                     rs1 rs2 rs3 (VIP on lo; they answer the client via the router)\n\
             {}",
            pacing(&story),
            vip = site::VIP,
            port = site::SERVICE_PORT,
            bfd = story.site.bfd_interval,
            mult = story.site.bfd_multiplier,
        );
        let mut say = |text: &str| println!("-- {text}");
        aa::run_story(&story, &mut say)?
    };
    println!();
    println!(
        "== spread: connections scheduled per director {:?}; per real server {:?}",
        outcome.connections_by_director, outcome.by_server
    );
    println!("== sync daemons: {:?}", outcome.sync_daemons);
    let mut clean = true;
    for event in &outcome.events {
        println!("== {}", event_line(event));
        let expected = if event.name.contains(site::DYING_REAL_SERVER) {
            outcome.dead_server_share
        } else {
            0
        };
        clean &= event.lost_total() == expected && event.new_up == event.new_opened;
    }
    println!(
        "== the demo took {:.0} s; namespaces and processes removed",
        outcome.elapsed.as_secs_f64()
    );
    if !clean {
        bail!(
            "connections were lost beyond the dead real server's, or new ones failed (see above)"
        );
    }
    Ok(())
}

/// The lines of a director story's header about its connections.
fn pacing<O>(story: &super::director_site::StoryOptions<O>) -> String {
    format!(
        "\x20  {} connections, a message every {:?} each; a connection is lost on a reset,\n\
         \x20  EOF or error, or after {:?} of silence (TCP's retransmission backoff fits in it).\n",
        story.connections, story.traffic.interval, story.stall_bound
    )
}

/// `--connections` and `--interval` into a story's pacing.
fn pace<O>(
    story: &mut super::director_site::StoryOptions<O>,
    options: &DemoOptions,
) -> anyhow::Result<()> {
    if let Some(connections) = options.connections {
        story.connections = connections;
    }
    if let Some(interval) = options.interval {
        if !(0.01..=10.0).contains(&interval) {
            bail!("--interval must be 0.01..=10 seconds");
        }
        story.traffic.interval = Duration::from_secs_f64(interval);
    }
    Ok(())
}

/// Runs this same binary with the same arguments inside the VM rig (a kernel with IPVS),
/// telling it the haldir binary (`--haldir`, as an absolute path: the VM sees the host's
/// file system, not its environment).
fn run_in_vm(options: &DemoOptions, haldir: &Path) -> anyhow::Result<()> {
    if super::vm::in_vm() || options.no_vm {
        bail!(
            "this kernel has no IPVS (no /proc/net/ip_vs, even after `modprobe ip_vs`); \
             `haldir-lab --vrrp-only` needs none"
        );
    }
    let script = vm_script(options)?;
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let haldir = std::path::absolute(haldir)
        .with_context(|| format!("cannot make {} absolute", haldir.display()))?;
    println!(
        "== this kernel has no IPVS: running the demo inside a VM (Debian's kernel under qemu) \
         with `bash {} --lab`",
        script.display()
    );
    // The demo's binary parser lets a later --haldir override an earlier one.
    let status = Command::new("bash")
        .arg(&script)
        .arg("--lab")
        .arg(&exe)
        .args(std::env::args_os().skip(1))
        .arg("--haldir")
        .arg(&haldir)
        .status()
        .with_context(|| format!("cannot run bash {}", script.display()))?;
    if !status.success() {
        bail!("the demo in the VM failed ({status})");
    }
    Ok(())
}

struct Addresses {
    routers: [&'static str; 2],
    client: &'static str,
    vip: &'static str,
    vip_cidr: &'static str,
}

const IPV4: Addresses = Addresses {
    routers: ["10.0.0.1/24", "10.0.0.2/24"],
    client: "10.0.0.10/24",
    vip: "10.0.0.100",
    vip_cidr: "10.0.0.100/24",
};

const IPV6: Addresses = Addresses {
    routers: ["fd00::1/64", "fd00::2/64"],
    client: "fd00::10/64",
    vip: "fd00::100",
    vip_cidr: "fd00::100/64",
};

/// `--vrrp-only`: two routers and a client on one bridge.
fn run_vrrp_only(options: DemoOptions) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the demo builds network namespaces: run it as root");
    }
    if options.ipv6 && options.version != 3 {
        bail!("IPv6 needs VRRP version 3 (--version 3)");
    }
    let binary = haldir_binary(&options)?;
    let interval = Duration::from_secs_f64(options.advert_int);
    let addresses = if options.ipv6 { &IPV6 } else { &IPV4 };
    let vip: IpAddr = addresses.vip.parse().expect("a valid literal");

    println!(
        "== haldir-lab: two routers (r1 priority 150, r2 priority 100) and a client on one bridge"
    );
    let lab = Lab::new("demo")?;
    lab.add_host("r1", &[addresses.routers[0]])?;
    lab.add_host("r2", &[addresses.routers[1]])?;
    lab.add_host("client", &[addresses.client])?;
    let capture = Capture::start(&lab)?;
    let instance = |priority| {
        let make = if options.version == 2 {
            HaldirInstance::v2
        } else {
            HaldirInstance::v3
        };
        make(51, priority, interval, &[addresses.vip_cidr])
    };
    // RFC 5798 §6.1 for the backup (priority 100); RFC 3768 §6.1 for version 2.
    let skew = if options.version == 2 {
        Duration::from_secs(1).mul_f64(f64::from(256 - 100) / 256.0)
    } else {
        interval.mul_f64(f64::from(256 - 100) / 256.0)
    };
    let master_down = 3 * interval + skew;
    println!(
        "   VRRPv{} advert_int {:?}; the backup's Master_Down_Interval is {:?}",
        options.version, interval, master_down
    );
    let r1 = Haldir::start(&lab, "r1", &binary, &[instance(150)])?;
    let r2 = Haldir::start(&lab, "r2", &binary, &[instance(100)])?;
    let responders = [
        Responder::start(&lab, "r1", PROBE_PORT)?,
        Responder::start(&lab, "r2", PROBE_PORT)?,
    ];
    if !r1.wait_state("MASTER", master_down * 3 + Duration::from_secs(3)) {
        bail!("r1 did not become master; its log:\n{}", r1.log());
    }
    println!(
        "-- election: r1 is {}, r2 is {}; {} is on r1: {}, on r2: {}",
        r1.state().unwrap_or_default(),
        r2.state().unwrap_or_default(),
        addresses.vip,
        lab.has_address("r1", addresses.vip),
        lab.has_address("r2", addresses.vip)
    );

    let prober = Prober::start(&lab, "client", vip, PROBE_PORT)?;
    std::thread::sleep(Duration::from_secs(1));
    println!(
        "-- the client sends a probe to {}:{PROBE_PORT} every ms; replies so far from r1: {}, r2: {}",
        addresses.vip,
        prober.replies_from("r1"),
        prober.replies_from("r2")
    );
    let r1_mac = lab.mac_bytes("r1")?;
    let r2_mac = lab.mac_bytes("r2")?;
    // The router is gone as far as the client is concerned: its responder stops
    // answering (a crashed master's kernel would otherwise still answer for the
    // address it keeps).
    responders[0].set_answering(false);
    let failed_at = prober.mark();
    if options.graceful {
        println!("-- stopping r1 gracefully (SIGTERM)");
        r1.stop()?;
    } else {
        println!("-- kill -9 of r1 (no goodbye advert; its address stays behind in its kernel)");
        r1.crash()?;
    }
    if !r2.wait_state("MASTER", master_down * 3 + Duration::from_secs(2)) {
        bail!("r2 did not take over; its log:\n{}", r2.log());
    }
    std::thread::sleep(Duration::from_secs(1));
    let report = prober.stop();
    let gap = report.largest_gap_after(failed_at);
    let frames = capture.kept();
    println!("-- takeover: r2 is {}", r2.state().unwrap_or_default());
    print_timeline(&frames, failed_at, r1_mac, r2_mac, options.ipv6);
    let (bound_name, bound) = if options.graceful {
        ("Skew_Time after the priority-0 advert", skew)
    } else {
        ("Master_Down_Interval after the last advert", master_down)
    };
    println!(
        "== the client saw an outage of {:.1} ms (RFC 5798 bound: {bound_name}, {:.1} ms); last reply from {}",
        gap.as_secs_f64() * 1000.0,
        bound.as_secs_f64() * 1000.0,
        report.last_responder().unwrap_or("nobody")
    );

    println!(
        "-- r1 comes back (haldir removes the address its killed predecessor left) and preempts"
    );
    let r1 = Haldir::start(&lab, "r1", &binary, &[instance(150)])?;
    if r1.wait_state("MASTER", master_down * 3 + Duration::from_secs(3)) {
        println!(
            "-- r1 is {} again, r2 is {}; {} on r1: {}, on r2: {}",
            r1.state().unwrap_or_default(),
            r2.state().unwrap_or_default(),
            addresses.vip,
            lab.has_address("r1", addresses.vip),
            lab.has_address("r2", addresses.vip)
        );
    } else {
        println!("-- r1 did not preempt; its log:\n{}", r1.log());
    }
    r1.stop()?;
    r2.stop()?;
    drop(capture);
    println!("== done; namespaces and processes removed");
    Ok(())
}

/// Prints the adverts and announcements around the failure, relative to it.
fn print_timeline(frames: &[Frame], failed_at: Instant, old: [u8; 6], new: [u8; 6], ipv6: bool) {
    let offset = |at: Instant| {
        if at >= failed_at {
            format!("+{:8.1} ms", (at - failed_at).as_secs_f64() * 1000.0)
        } else {
            format!("-{:8.1} ms", (failed_at - at).as_secs_f64() * 1000.0)
        }
    };
    let announce_kind = if ipv6 {
        FrameKind::NeighborAdvert
    } else {
        FrameKind::Arp
    };
    let last_old_advert = frames.iter().rfind(|f| {
        f.kind.is_vrrp() && f.src_mac() == old && f.at <= failed_at + Duration::from_millis(50)
    });
    let first_new_advert = frames
        .iter()
        .find(|f| f.kind.is_vrrp() && f.src_mac() == new && f.at >= failed_at);
    let first_announce = frames
        .iter()
        .find(|f| f.kind == announce_kind && f.src_mac() == new && f.at >= failed_at);
    println!("   timeline (0 = the failure):");
    if let Some(f) = last_old_advert {
        println!("   {}  last advert from r1", offset(f.at));
    }
    if let Some(f) = first_new_advert {
        println!("   {}  first advert from r2 as master", offset(f.at));
    }
    if let Some(f) = first_announce {
        let what = if ipv6 {
            "unsolicited NA"
        } else {
            "gratuitous ARP"
        };
        println!("   {}  first {what} from r2", offset(f.at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        demo: DemoOptions,
    }

    fn options(args: &[&str]) -> DemoOptions {
        Cli::try_parse_from(std::iter::once("haldir-lab").chain(args.iter().copied()))
            .expect("valid options")
            .demo
    }

    #[test]
    fn the_vm_rig_is_found_by_walking_up_from_the_current_directory() {
        // `cargo test` runs this in lab/, one level below the tree's tests/vm/run.sh.
        let script = vm_script(&options(&[])).expect("the rig is in this source tree");
        assert!(script.ends_with(VM_SCRIPT), "{}", script.display());
        assert!(script.is_file());
    }

    #[test]
    fn a_missing_vm_rig_named_on_the_command_line_is_an_error() {
        let err = vm_script(&options(&["--vm-script", "/nonexistent/run.sh"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/run.sh"), "{err}");
    }

    #[test]
    fn a_missing_haldir_binary_named_on_the_command_line_is_an_error() {
        let err = haldir_binary(&options(&["--haldir", "/nonexistent/haldir"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/haldir"), "{err}");
        assert!(err.contains("--haldir"), "{err}");
    }

    #[test]
    fn the_haldir_binary_named_on_the_command_line_is_used_as_is() {
        // Any existing file will do: no build, no check beyond its existence.
        let path = std::env::current_exe().expect("the test binary");
        let given = path.to_str().expect("a UTF-8 path");
        assert_eq!(haldir_binary(&options(&["--haldir", given])).unwrap(), path);
    }
}
