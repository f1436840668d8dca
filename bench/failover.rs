//! Failover benchmark: the outage a client of the VIP sees when the master goes away, for
//! haldir and for keepalived side by side in the same run, plus a CPU-starvation soak.
//!
//! Every trial builds a fresh lab (bridge, routers `r1` (priority 150) and `r2` (100), client
//! `cl`), starts both routers with the same implementation, waits for a settled election,
//! starts a [`Prober`] that sends a UDP probe to the VIP every millisecond, waits for a fresh
//! advert of the master (so that every trial hits the same advert phase), then either
//!
//! - `crash`: the master host dies: its responder stops, the daemon is killed (-9; for
//!   keepalived the STOP/KILL/KILL recipe, so no priority-0 advert), its link goes down;
//! - `stop`: the master daemon gets SIGTERM (it resigns with a priority-0 advert);
//! - `handover`: mastership moves on purpose and the master keeps running. haldir:
//!   `haldir handover --all` (a priority-0 advert, the VIP kept until the new master
//!   advertises). keepalived has no such command; its operators reload with the master's
//!   priority lowered below the backup's (the backup preempts after Master_Down_Interval).
//!
//! Measured per trial: the client outage (largest gap between replies around the event, from
//! the prober's report), and from the bridge capture the time from the old master's last
//! advert (crash) or priority-0 advert (stop) to the new master's first advert and to its
//! first gratuitous ARP for the VIP.
//!
//! Second part: both routers at VRRPv3 10 ms adverts for `--hog-secs` (60) seconds while
//! `stress-ng --cpu 2` loads both cores; counts spurious transitions after the initial
//! election (keepalived notify lines, haldir's `transitions` counters).
//!
//! Third part: a reload on the master (SIGHUP, the configuration file unchanged) at v3 50 ms,
//! `--trials` times per implementation: the master's largest advert gap across the reload
//! (capture timestamps), the client's largest reply gap, and whether the backup advertised
//! (a flap). The reload tests assert a bound with margin; the figure is this one.
//!
//! ```text
//! cargo bench --bench failover                       # full run: 10 trials, all configs
//! cargo bench --bench failover -- --quick            # 3 trials, 10 s soak (smoke run)
//! cargo bench --bench failover -- --trials 20 --config v3-50ms --scenario crash --no-hog
//! cargo bench --bench failover -- --help
//! ```
//! Needs root. The table goes to stdout, progress to stderr. Ctrl-C stops after the current
//! step and prints what was measured; every lab is torn down on the way out.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use haldir_lab::capture::{vrrp_payload, Frame};
use haldir_lab::{
    self as lab, Capture, FrameKind, Haldir, HaldirInstance, Keepalived, KeepalivedConfig,
    KeepalivedState, Lab, ProbeConfig, Prober, Responder,
};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
const VIP_CIDR: &str = "10.0.0.100/24";
const VRID: u8 = 51;
const PROBE_PORT: u16 = 7777;
const MASTER_PRIORITY: u8 = 150;
const BACKUP_PRIORITY: u8 = 100;

/// Set by SIGINT: finish the current step, tear down, print what we have.
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
        eprintln!("failover: cannot install the SIGINT handler ({e}); Ctrl-C aborts");
    }
}

// ---------------------------------------------------------------------------------------
// What is measured

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Impl {
    Haldir,
    Keepalived,
}

impl Impl {
    const ALL: [Impl; 2] = [Impl::Haldir, Impl::Keepalived];

    fn name(self) -> &'static str {
        match self {
            Impl::Haldir => "haldir",
            Impl::Keepalived => "keepalived",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// kill -9 of the master, its host drops off the segment.
    Crash,
    /// SIGTERM of the master daemon: priority-0 advert.
    Stop,
    /// Mastership moved on purpose, the master daemon still running.
    Handover,
}

impl Scenario {
    const ALL: [Scenario; 3] = [Scenario::Crash, Scenario::Stop, Scenario::Handover];

    fn name(self) -> &'static str {
        match self {
            Scenario::Crash => "crash",
            Scenario::Stop => "stop",
            Scenario::Handover => "handover",
        }
    }
}

/// The master's priority after keepalived's handover (a reload), below the backup's.
const LOWERED_PRIORITY: u8 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Config {
    name: &'static str,
    version: u8,
    advert: Duration,
}

const CONFIGS: [Config; 3] = [
    Config {
        name: "v2-1s",
        version: 2,
        advert: Duration::from_secs(1),
    },
    Config {
        name: "v3-50ms",
        version: 3,
        advert: Duration::from_millis(50),
    },
    Config {
        name: "v3-10ms",
        version: 3,
        advert: Duration::from_millis(10),
    },
];

const HOG_CONFIG: Config = CONFIGS[2];
const RELOAD_CONFIG: Config = CONFIGS[1];

impl Config {
    /// Skew_Time of the backup (priority 100): RFC 3768 §6.1 (v2, in seconds) and RFC 5798
    /// §6.1 (v3, a fraction of the advert interval).
    fn skew(self) -> Duration {
        let factor = f64::from(256 - u32::from(BACKUP_PRIORITY)) / 256.0;
        match self.version {
            2 => Duration::from_secs_f64(factor),
            _ => self.advert.mul_f64(factor),
        }
    }

    /// Master_Down_Interval = 3 × Advertisement_Interval + Skew_Time.
    fn master_down(self) -> Duration {
        self.advert * 3 + self.skew()
    }

    /// What the RFC says the backup waits after the event's reference advert.
    fn bound(self, scenario: Scenario) -> Duration {
        match scenario {
            Scenario::Crash => self.master_down(),
            // keepalived's handover (a lowered priority) waits Master_Down_Interval.
            Scenario::Stop | Scenario::Handover => self.skew(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Command line

#[derive(Debug, Clone)]
struct Options {
    trials: usize,
    configs: Vec<Config>,
    scenarios: Vec<Scenario>,
    impls: Vec<Impl>,
    hog: Option<Duration>,
    /// Reload trials per implementation (0: none).
    reload_trials: usize,
    haldir: PathBuf,
}

const USAGE: &str = "\
usage: cargo bench --bench failover -- [options]

  --trials N        trials per config x scenario x implementation (default 10)
  --quick           3 trials and a 10 s soak (smoke run)
  --config NAME     only this configuration: v2-1s, v3-50ms or v3-10ms (repeatable)
  --scenario NAME   only crash, stop or handover (repeatable)
  --impl NAME       only haldir or keepalived (repeatable; ratios need both)
  --hog-secs N      length of the CPU-hog soak at v3 10 ms (default 60; 0 = skip)
  --no-hog          skip the soak
  --no-failover     skip the failover trials
  --no-reload       skip the reload trials (--trials of them per implementation, at least 3)
  --haldir PATH     the haldir binary (default: the one cargo built for this bench)

environment: FAILOVER_DEBUG=1 prints the master's largest advert gaps and haldir's status
after each soak; TMPDIR decides where the labs (configs, logs, status files) live.
";

fn parse_args() -> anyhow::Result<Options> {
    let mut options = Options {
        trials: 10,
        configs: Vec::new(),
        scenarios: Vec::new(),
        impls: Vec::new(),
        hog: Some(Duration::from_secs(60)),
        reload_trials: 0,
        haldir: PathBuf::from(env!("CARGO_BIN_EXE_haldir")),
    };
    let mut trials = None;
    let mut hog_secs = None;
    let mut quick = false;
    let mut no_failover = false;
    let mut no_reload = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| anyhow!("{name} needs a value"));
        match arg.as_str() {
            // cargo bench appends --bench to a harness = false target.
            "--bench" => {}
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--quick" => quick = true,
            "--no-hog" => hog_secs = Some(0),
            "--no-failover" => no_failover = true,
            "--no-reload" => no_reload = true,
            "--trials" => trials = Some(value("--trials")?.parse().context("--trials")?),
            "--hog-secs" => hog_secs = Some(value("--hog-secs")?.parse().context("--hog-secs")?),
            "--haldir" => options.haldir = PathBuf::from(value("--haldir")?),
            "--config" => {
                let name = value("--config")?;
                let config = CONFIGS
                    .iter()
                    .find(|c| c.name == name)
                    .ok_or_else(|| anyhow!("unknown config {name:?}\n{USAGE}"))?;
                options.configs.push(*config);
            }
            "--scenario" => {
                let name = value("--scenario")?;
                let scenario = Scenario::ALL
                    .into_iter()
                    .find(|s| s.name() == name)
                    .ok_or_else(|| anyhow!("unknown scenario {name:?}\n{USAGE}"))?;
                options.scenarios.push(scenario);
            }
            "--impl" => {
                let name = value("--impl")?;
                let imp = Impl::ALL
                    .into_iter()
                    .find(|i| i.name() == name)
                    .ok_or_else(|| anyhow!("unknown implementation {name:?}\n{USAGE}"))?;
                options.impls.push(imp);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    options.trials = trials.unwrap_or(if quick { 3 } else { 10 });
    let hog_secs = hog_secs.unwrap_or(if quick { 10 } else { 60 });
    options.hog = (hog_secs > 0).then(|| Duration::from_secs(hog_secs));
    if options.configs.is_empty() {
        options.configs = CONFIGS.to_vec();
    }
    if options.scenarios.is_empty() {
        options.scenarios = Scenario::ALL.to_vec();
    }
    if options.impls.is_empty() {
        options.impls = Impl::ALL.to_vec();
    }
    if !no_reload {
        options.reload_trials = options.trials.max(3);
    }
    if no_failover {
        options.trials = 0;
    }
    Ok(options)
}

// ---------------------------------------------------------------------------------------
// Routers of either implementation

enum Router<'l> {
    Haldir(Haldir<'l>),
    Keepalived(Keepalived<'l>),
}

impl<'l> Router<'l> {
    fn start(
        lab: &'l Lab,
        host: &str,
        imp: Impl,
        config: Config,
        priority: u8,
        haldir: &Path,
    ) -> anyhow::Result<Router<'l>> {
        Ok(match imp {
            Impl::Haldir => {
                let instance = match config.version {
                    2 => HaldirInstance::v2(VRID, priority, config.advert, &[VIP_CIDR]),
                    _ => HaldirInstance::v3(VRID, priority, config.advert, &[VIP_CIDR]),
                };
                Router::Haldir(Haldir::start(lab, host, haldir, &[instance])?)
            }
            Impl::Keepalived => {
                let conf = match config.version {
                    2 => KeepalivedConfig::v2(VRID, priority, config.advert, &[VIP_CIDR]),
                    _ => KeepalivedConfig::v3(VRID, priority, config.advert, &[VIP_CIDR]),
                };
                Router::Keepalived(Keepalived::start(lab, host, conf)?)
            }
        })
    }

    fn state(&self) -> String {
        match self {
            Router::Haldir(h) => h.state().unwrap_or_else(|| "?".into()),
            Router::Keepalived(k) => k.state().map_or_else(|| "?".into(), |s| s.to_string()),
        }
    }

    fn is(&self, state: &str) -> bool {
        match self {
            Router::Haldir(h) => h.state().as_deref() == Some(state),
            Router::Keepalived(k) => {
                let wanted = match state {
                    "MASTER" => KeepalivedState::Master,
                    "BACKUP" => KeepalivedState::Backup,
                    _ => return false,
                };
                k.state() == Some(wanted)
            }
        }
    }

    /// State transitions so far (haldir's counter; keepalived's notify lines).
    fn transitions(&self) -> u64 {
        match self {
            Router::Haldir(h) => h.counter("transitions"),
            Router::Keepalived(k) => k.states().len() as u64,
        }
    }

    /// Times it became master so far.
    fn became_master(&self) -> u64 {
        match self {
            Router::Haldir(h) => h.counter("became_master"),
            Router::Keepalived(k) => k
                .states()
                .iter()
                .filter(|s| **s == KeepalivedState::Master)
                .count() as u64,
        }
    }

    fn crash(&self) -> anyhow::Result<()> {
        match self {
            Router::Haldir(h) => h.crash(),
            Router::Keepalived(k) => k.crash(),
        }
    }

    fn stop(&self) -> anyhow::Result<()> {
        match self {
            Router::Haldir(h) => h.stop().map(drop),
            Router::Keepalived(k) => k.stop(),
        }
    }

    /// Moves mastership to the peer on purpose: `haldir handover --all`; keepalived has
    /// no such command, so its way: a reload with the priority below the backup's.
    fn hand_over(&self, haldir: &Path) -> anyhow::Result<()> {
        match self {
            Router::Haldir(h) => {
                let output = Command::new(haldir)
                    .args(["handover", "--all", "--socket"])
                    .arg(h.control_socket())
                    .output()?;
                if !output.status.success() {
                    bail!(
                        "haldir handover failed: {}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                }
                Ok(())
            }
            Router::Keepalived(k) => {
                let mut lowered = k.config().clone();
                lowered.priority = LOWERED_PRIORITY;
                k.reload(&lowered)
            }
        }
    }

    fn is_running(&self) -> bool {
        match self {
            Router::Haldir(h) => h.is_running(),
            Router::Keepalived(k) => k.is_running(),
        }
    }

    fn log(&self) -> String {
        match self {
            Router::Haldir(h) => h.log(),
            Router::Keepalived(k) => k.log(),
        }
    }
}

/// Polls `cond` every `poll` until it holds (true), `timeout` passes or Ctrl-C (false).
fn wait_for(timeout: Duration, poll: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if interrupted() || Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(poll);
    }
}

/// Sleeps `duration` unless Ctrl-C comes first; false when interrupted.
fn sleep_unless_interrupted(duration: Duration) -> bool {
    !wait_for(duration, Duration::from_millis(50), interrupted)
}

/// While alive, threads spawned by the calling thread get SCHED_RR priority 1: the
/// instruments (capture, responders, prober) must not be starved by the CPU hog or by other
/// load on the machine, or their timestamps lie. Only threads started inside the guard are
/// affected; the routers and stress-ng are spawned outside it and stay SCHED_OTHER.
struct Realtime {
    entered: bool,
}

impl Realtime {
    fn enter() -> Realtime {
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: plain syscall on the calling thread (pid 0) with a valid parameter.
        let entered = unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &param) } == 0;
        Realtime { entered }
    }
}

impl Drop for Realtime {
    fn drop(&mut self) {
        if self.entered {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: as above, back to the default policy.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
        }
    }
}

/// Priority field of a captured VRRP frame (byte 2 in v2 and v3 alike).
fn vrrp_priority(frame: &Frame) -> Option<u8> {
    vrrp_payload(&frame.bytes)?.get(2).copied()
}

/// A gratuitous ARP for the VIP: an ARP whose sender protocol address is the VIP.
fn is_vip_garp(frame: &Frame) -> bool {
    // Ethernet (14) + htype, ptype, hlen, plen, oper (8) + sender MAC (6) = sender IP at 28.
    frame.kind == FrameKind::Arp && frame.bytes.get(28..32) == Some(&VIP.octets()[..])
}

/// Two routers, a client, a capture and responders on a fresh lab, with a settled election.
struct Bed<'l> {
    lab: &'l Lab,
    capture: Capture,
    responders: [Responder; 2],
    routers: [Router<'l>; 2],
    macs: [[u8; 6]; 2],
}

impl<'l> Bed<'l> {
    fn new(lab: &'l Lab, imp: Impl, config: Config, haldir: &Path) -> anyhow::Result<Bed<'l>> {
        lab.add_host("r1", &["10.0.0.1/24"])?;
        lab.add_host("r2", &["10.0.0.2/24"])?;
        lab.add_host("cl", &["10.0.0.9/24"])?;
        let (capture, responders) = {
            let _rt = Realtime::enter();
            let capture = Capture::start(lab)?;
            let responders = [
                Responder::start(lab, "r1", PROBE_PORT)?,
                Responder::start(lab, "r2", PROBE_PORT)?,
            ];
            (capture, responders)
        };
        let r1 = Router::start(lab, "r1", imp, config, MASTER_PRIORITY, haldir)?;
        let r2 = Router::start(lab, "r2", imp, config, BACKUP_PRIORITY, haldir)?;
        let macs = [lab.mac_bytes("r1")?, lab.mac_bytes("r2")?];
        let bed = Bed {
            lab,
            capture,
            responders,
            routers: [r1, r2],
            macs,
        };
        let elected = wait_for(
            config.master_down() * 3 + Duration::from_secs(10),
            Duration::from_millis(10),
            || {
                bed.routers[0].is("MASTER")
                    && bed.routers[1].is("BACKUP")
                    && lab.has_address("r1", &VIP.to_string())
                    && !lab.has_address("r2", &VIP.to_string())
            },
        );
        if interrupted() {
            bail!("interrupted");
        }
        if !elected {
            bail!(
                "no clean election: r1 {}, r2 {}\n--- r1 log:\n{}\n--- r2 log:\n{}",
                bed.routers[0].state(),
                bed.routers[1].state(),
                bed.routers[0].log(),
                bed.routers[1].log()
            );
        }
        Ok(bed)
    }

    fn adverts_from(&self, router: usize) -> usize {
        let mac = self.macs[router];
        self.capture
            .kept()
            .iter()
            .filter(|f| f.kind.is_vrrp() && f.src_mac() == mac)
            .count()
    }

    /// Starts the prober and waits until the master answers it steadily.
    fn probe(&self, max_duration: Duration) -> anyhow::Result<Prober> {
        let rt = Realtime::enter();
        let prober = Prober::start_with(
            self.lab,
            "cl",
            IpAddr::V4(VIP),
            PROBE_PORT,
            ProbeConfig {
                interval: Duration::from_millis(1),
                max_duration,
            },
        )?;
        drop(rt);
        if !wait_for(Duration::from_secs(5), Duration::from_millis(10), || {
            prober.replies_from("r1") >= 100
        }) {
            bail!(
                "the client gets no steady replies from r1 ({} so far)",
                prober.replies_from("r1")
            );
        }
        Ok(prober)
    }
}

// ---------------------------------------------------------------------------------------
// Part 1: failover trials

#[derive(Debug, Clone)]
struct Trial {
    /// Largest gap in replies around the event.
    outage: Duration,
    /// Old master's last (crash) / priority-0 (stop) advert -> new master's first advert.
    advert_gap: Option<Duration>,
    /// Same reference -> new master's first gratuitous ARP for the VIP.
    garp_gap: Option<Duration>,
    /// Who answered after the largest gap (should be r2).
    after: Option<String>,
    /// Old master's last reply to the client -> the reference advert, in ms (negative when
    /// the advert came first). For `stop`: how long before its priority-0 advert the old
    /// master stopped serving the VIP.
    served_until: Option<f64>,
}

fn run_trial(
    imp: Impl,
    config: Config,
    scenario: Scenario,
    haldir: &Path,
) -> anyhow::Result<Trial> {
    let lab = Lab::new(&format!(
        "bench-{}-{}-{}",
        config.name,
        scenario.name(),
        imp.name()
    ))?;
    let bed = Bed::new(&lab, imp, config, haldir)?;
    let timeout = config.bound(Scenario::Crash) * 3 + Duration::from_secs(3);
    let prober = bed.probe(timeout + Duration::from_secs(30))?;

    // Hit the same advert phase every time: right after a fresh advert of the master.
    let seen = bed.adverts_from(0);
    if !wait_for(
        config.advert * 3 + Duration::from_secs(1),
        Duration::from_micros(500),
        || bed.adverts_from(0) > seen,
    ) {
        bail!("no advert from the master r1 on the bridge");
    }

    let mark = prober.mark();
    match scenario {
        Scenario::Crash => {
            // A host dies: its service, its VRRP daemon and its link all go at once.
            bed.responders[0].set_answering(false);
            bed.routers[0].crash()?;
            lab.link_set("r1", "eth0", false)?;
        }
        Scenario::Stop => bed.routers[0].stop()?,
        Scenario::Handover => bed.routers[0].hand_over(haldir)?,
    }
    let took_over = wait_for(timeout, Duration::from_millis(1), || {
        prober.last_responder().as_deref() == Some("r2")
    });
    if !took_over {
        bail!(
            "r2 did not take over within {timeout:?}: r2 {}, VIP on r2 {}\n--- r2 log:\n{}",
            bed.routers[1].state(),
            lab.has_address("r2", &VIP.to_string()),
            bed.routers[1].log()
        );
    }
    // Let late frames (GARP repeats, adverts) arrive, and catch any later gap.
    std::thread::sleep(Duration::from_millis(150).max(config.advert / 2));
    let report = prober.stop();
    let gap = report
        .largest_gap_detail_after(mark)
        .ok_or_else(|| anyhow!("no gap found"))?;
    let frames = bed.capture.kept();
    let [r1_mac, r2_mac] = bed.macs;
    let from = |mac: [u8; 6]| frames.iter().filter(move |f| f.src_mac() == mac);
    let r1_last =
        from(r1_mac).rfind(|f| f.kind.is_vrrp() && f.at <= mark && vrrp_priority(f) != Some(0));
    let reference = match scenario {
        Scenario::Crash => r1_last,
        Scenario::Stop => from(r1_mac)
            .find(|f| f.kind.is_vrrp() && f.at > mark && vrrp_priority(f) == Some(0))
            .or(r1_last),
        // haldir's priority-0 advert, or keepalived's first advert at the lowered priority.
        Scenario::Handover => from(r1_mac)
            .find(|f| {
                f.kind.is_vrrp()
                    && f.at > mark
                    && matches!(vrrp_priority(f), Some(0 | LOWERED_PRIORITY))
            })
            .or(r1_last),
    };
    let r2_first =
        from(r2_mac).find(|f| f.kind.is_vrrp() && f.at > mark && vrrp_priority(f) != Some(0));
    let r2_garp = from(r2_mac).find(|f| f.at > mark && is_vip_garp(f));
    let since = |later: Option<&Frame>| later?.at.checked_duration_since(reference?.at);
    Ok(Trial {
        outage: gap.duration(),
        advert_gap: since(r2_first),
        garp_gap: since(r2_garp),
        after: gap.after,
        served_until: reference.map(|r| signed_ms(gap.start, r.at)),
    })
}

// ---------------------------------------------------------------------------------------
// Part 2: 10 ms adverts under a CPU hog

#[derive(Debug, Clone)]
struct Soak {
    imp: Impl,
    duration: Duration,
    /// Transitions after the initial election, per router.
    transitions: [u64; 2],
    /// Times r2 became master after the initial election.
    r2_became_master: u64,
    /// Adverts r2 sent during the soak (a backup sends none).
    r2_adverts: usize,
    /// Adverts r1 sent during the soak, and the longest pause between two of them.
    r1_adverts: usize,
    r1_max_interval: Duration,
    /// Largest gap in client replies during the soak.
    client_max_gap: Duration,
    final_states: [String; 2],
}

fn run_soak(imp: Impl, duration: Duration, haldir: &Path) -> anyhow::Result<Soak> {
    let lab = Lab::new(&format!("bench-soak-{}", imp.name()))?;
    let bed = Bed::new(&lab, imp, HOG_CONFIG, haldir)?;
    if !sleep_unless_interrupted(Duration::from_secs(1)) {
        bail!("interrupted");
    }
    let base: [u64; 2] = [bed.routers[0].transitions(), bed.routers[1].transitions()];
    let base_r2_master = bed.routers[1].became_master();
    let prober = bed.probe(duration + Duration::from_secs(30))?;

    let mut hog = Command::new("stress-ng");
    hog.args(["--cpu", "2", "--timeout"])
        .arg(format!("{}s", duration.as_secs() + 5));
    let start = Instant::now();
    let hog_pid = lab.spawn("cl", hog).context("cannot start stress-ng")?;
    let completed = sleep_unless_interrupted(duration);
    let end = Instant::now();
    let _ = lab.kill(hog_pid, Signal::SIGTERM);
    if lab.wait_exit(hog_pid, Duration::from_secs(5))?.is_none() {
        let _ = lab.kill(hog_pid, Signal::SIGKILL);
    }
    if !completed {
        bail!("interrupted");
    }
    // Let the status files catch up.
    std::thread::sleep(Duration::from_millis(500));
    let report = prober.stop();
    let transitions = [
        bed.routers[0].transitions().saturating_sub(base[0]),
        bed.routers[1].transitions().saturating_sub(base[1]),
    ];
    let r2_became_master = bed.routers[1]
        .became_master()
        .saturating_sub(base_r2_master);
    let frames = bed.capture.kept();
    let in_soak = |f: &&Frame| f.kind.is_vrrp() && f.at >= start && f.at <= end;
    let r1: Vec<Instant> = frames
        .iter()
        .filter(in_soak)
        .filter(|f| f.src_mac() == bed.macs[0])
        .map(|f| f.at)
        .collect();
    let r2_adverts = frames
        .iter()
        .filter(in_soak)
        .filter(|f| f.src_mac() == bed.macs[1])
        .count();
    if std::env::var_os("FAILOVER_DEBUG").is_some() {
        let mut gaps: Vec<(Duration, Duration)> =
            r1.windows(2).map(|w| (w[1] - w[0], w[0] - start)).collect();
        gaps.sort();
        eprintln!(
            "largest r1 advert gaps (gap, at): {:?}",
            &gaps[gaps.len().saturating_sub(8)..]
        );
        if let Router::Haldir(h) = &bed.routers[0] {
            eprintln!("r1 status: {}", h.status().unwrap_or_default());
        }
        if let Router::Haldir(h) = &bed.routers[1] {
            eprintln!("r2 status: {}", h.status().unwrap_or_default());
        }
    }
    let r1_max_interval = r1.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    let received: Vec<Instant> = report
        .replies
        .iter()
        .map(|r| r.received)
        .filter(|&t| t >= start && t <= end)
        .collect();
    let client_max_gap = received
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(end - start);
    Ok(Soak {
        imp,
        duration: end - start,
        transitions,
        r2_became_master,
        r2_adverts,
        r1_adverts: r1.len(),
        r1_max_interval,
        client_max_gap,
        final_states: [bed.routers[0].state(), bed.routers[1].state()],
    })
}

// ---------------------------------------------------------------------------------------
// Report

fn median(values: &[Duration]) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort();
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

/// `later - earlier` in milliseconds, negative when `later` is earlier.
fn signed_ms(earlier: Instant, later: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(d) => d.as_secs_f64() * 1e3,
        None => -(earlier - later).as_secs_f64() * 1e3,
    }
}

fn median_f64(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".into(), |d| format!("{:.1}", d.as_secs_f64() * 1e3))
}

fn ratio(a: Option<Duration>, b: Option<Duration>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if !b.is_zero() => format!("{:.2}", a.as_secs_f64() / b.as_secs_f64()),
        _ => "-".into(),
    }
}

struct Cell {
    config: Config,
    scenario: Scenario,
    imp: Impl,
    trials: Vec<Trial>,
    failures: usize,
}

impl Cell {
    fn outages(&self) -> Vec<Duration> {
        self.trials.iter().map(|t| t.outage).collect()
    }
    fn median_outage(&self) -> Option<Duration> {
        median(&self.outages())
    }
    fn median_advert_gap(&self) -> Option<Duration> {
        median(
            &self
                .trials
                .iter()
                .filter_map(|t| t.advert_gap)
                .collect::<Vec<_>>(),
        )
    }
    fn median_garp_gap(&self) -> Option<Duration> {
        median(
            &self
                .trials
                .iter()
                .filter_map(|t| t.garp_gap)
                .collect::<Vec<_>>(),
        )
    }
    fn median_served_until(&self) -> Option<f64> {
        median_f64(
            &self
                .trials
                .iter()
                .filter_map(|t| t.served_until)
                .collect::<Vec<_>>(),
        )
    }
}

fn print_table(cells: &[Cell]) {
    println!();
    println!("Client-observed failover, both routers of one implementation (priorities 150/100).");
    println!("outage = largest gap in 1 ms probe replies; adv gap / GARP = old master's last");
    println!("(crash) or priority-0 (stop) advert -> new master's first advert / first GARP;");
    println!("handover: haldir's priority-0 advert, keepalived's first advert at priority 50");
    println!("(keepalived has no handover command: a reload lowering the master's priority).");
    println!("RFC bound: crash = Master_Down_Interval = 3*interval + skew; stop, handover =");
    println!("Skew_Time (a lowered priority waits Master_Down_Interval instead).");
    println!("served = old master's last reply to the client -> that reference advert");
    println!("(stop: > 0 means it released the VIP before sending priority 0).");
    println!("h/k = haldir median / keepalived median (outage; adv gap).");
    println!();
    println!(
        "{:<8} {:<8} {:<11} {:>5} {:>11} {:>11} {:>11} {:>11} {:>8} {:>10} {:>8} {:>8}",
        "config",
        "event",
        "impl",
        "n/ok",
        "outage med",
        "outage max",
        "adv gap med",
        "GARP med",
        "served",
        "RFC bound",
        "h/k out",
        "h/k adv"
    );
    println!("{}", "-".repeat(123));
    for cell in cells {
        let other = cells
            .iter()
            .find(|c| c.config == cell.config && c.scenario == cell.scenario && c.imp != cell.imp);
        let (h_k_out, h_k_adv) = match (cell.imp, other) {
            (Impl::Keepalived, Some(h)) => (
                ratio(h.median_outage(), cell.median_outage()),
                ratio(h.median_advert_gap(), cell.median_advert_gap()),
            ),
            _ => (String::new(), String::new()),
        };
        println!(
            "{:<8} {:<8} {:<11} {:>5} {:>11} {:>11} {:>11} {:>11} {:>8} {:>10} {:>8} {:>8}",
            cell.config.name,
            cell.scenario.name(),
            cell.imp.name(),
            format!(
                "{}/{}",
                cell.trials.len() + cell.failures,
                cell.trials.len()
            ),
            ms(cell.median_outage()),
            ms(cell.outages().into_iter().max()),
            ms(cell.median_advert_gap()),
            ms(cell.median_garp_gap()),
            cell.median_served_until()
                .map_or_else(|| "-".into(), |v| format!("{v:.1}")),
            ms(Some(cell.config.bound(cell.scenario))),
            h_k_out,
            h_k_adv,
        );
    }
    println!("(all times in ms)");
}

fn print_soaks(soaks: &[Soak]) {
    println!();
    println!(
        "CPU hog: VRRPv3 10 ms adverts, stress-ng --cpu 2 on both cores \
         (Master_Down_Interval {} ms).",
        ms(Some(HOG_CONFIG.master_down()))
    );
    println!("spurious = transitions after the initial election (r1 + r2).");
    println!();
    println!(
        "{:<11} {:>6} {:>9} {:>7} {:>7} {:>10} {:>10} {:>12} {:>12} {:>15}",
        "impl",
        "secs",
        "spurious",
        "r1",
        "r2",
        "r2->MASTER",
        "r2 adverts",
        "r1 adv/s",
        "r1 max gap",
        "client max gap"
    );
    println!("{}", "-".repeat(108));
    for soak in soaks {
        let secs = soak.duration.as_secs_f64();
        println!(
            "{:<11} {:>6.1} {:>9} {:>7} {:>7} {:>10} {:>10} {:>12.1} {:>12} {:>15}",
            soak.imp.name(),
            secs,
            soak.transitions[0] + soak.transitions[1],
            soak.transitions[0],
            soak.transitions[1],
            soak.r2_became_master,
            soak.r2_adverts,
            soak.r1_adverts as f64 / secs,
            ms(Some(soak.r1_max_interval)),
            ms(Some(soak.client_max_gap)),
        );
        if soak.final_states != ["MASTER", "BACKUP"] {
            println!(
                "{:<11} final states r1 {}, r2 {}",
                "", soak.final_states[0], soak.final_states[1]
            );
        }
    }
    println!("(r1 max gap / client max gap in ms)");
}

// ---------------------------------------------------------------------------------------
// Part 3: a reload on the master

#[derive(Debug, Clone)]
struct ReloadTrial {
    /// The master's largest gap between two adverts from 5 intervals before the SIGHUP
    /// to 2 s after it.
    advert_gap: Duration,
    /// The client's largest gap between replies over the same time.
    outage: Duration,
    /// Adverts the backup sent over it (a flap when not zero).
    backup_adverts: usize,
}

fn run_reload_trial(imp: Impl, haldir: &Path) -> anyhow::Result<ReloadTrial> {
    let config = RELOAD_CONFIG;
    let lab = Lab::new(&format!("bench-reload-{}", imp.name()))?;
    let bed = Bed::new(&lab, imp, config, haldir)?;
    // Past the master's second GARP burst (garp_master_delay, 5 s in both).
    if !sleep_unless_interrupted(Duration::from_secs(6)) {
        bail!("interrupted");
    }
    let after = Duration::from_secs(2);
    let prober = bed.probe(after + Duration::from_secs(10))?;
    let mark = prober.mark();
    let pid = match &bed.routers[0] {
        Router::Haldir(h) => h.pid(),
        Router::Keepalived(k) => k.pid(),
    };
    let hup = Instant::now();
    lab.kill(pid, nix::sys::signal::Signal::SIGHUP)?;
    if !sleep_unless_interrupted(after) {
        bail!("interrupted");
    }
    let report = prober.stop();
    let window = (hup - config.advert * 5)..=(hup + after);
    let frames = bed.capture.kept();
    let in_window = |mac: [u8; 6]| -> Vec<Instant> {
        frames
            .iter()
            .filter(|f| f.kind.is_vrrp() && f.src_mac() == mac && window.contains(&f.at))
            .map(|f| f.at)
            .collect()
    };
    let master = in_window(bed.macs[0]);
    if master.len() < 3 {
        bail!(
            "only {} adverts from the master around the reload",
            master.len()
        );
    }
    let advert_gap = master
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap_or_default();
    let outage = report
        .largest_gap_detail_after(mark)
        .map(|gap| gap.duration())
        .unwrap_or_default();
    if !bed.routers[0].is_running() {
        bail!("the master exited on SIGHUP:\n{}", bed.routers[0].log());
    }
    Ok(ReloadTrial {
        advert_gap,
        outage,
        backup_adverts: in_window(bed.macs[1]).len(),
    })
}

fn print_reloads(results: &[(Impl, Vec<ReloadTrial>, usize)]) {
    println!();
    println!(
        "Reload on the master: SIGHUP with the file unchanged, VRRPv3 {} ms adverts; from 5 \
         intervals before to 2 s after.",
        ms(Some(RELOAD_CONFIG.advert))
    );
    println!();
    println!(
        "{:<11} {:>6} {:>8} {:>15} {:>15} {:>15} {:>12}",
        "impl", "trials", "failed", "adv gap median", "adv gap max", "client gap med", "flaps"
    );
    println!("{}", "-".repeat(88));
    let median_gap = |wanted: Impl| {
        results
            .iter()
            .find(|(imp, _, _)| *imp == wanted)
            .and_then(|(_, trials, _)| {
                median(&trials.iter().map(|t| t.advert_gap).collect::<Vec<_>>())
            })
    };
    for (imp, trials, failures) in results {
        let gaps: Vec<Duration> = trials.iter().map(|t| t.advert_gap).collect();
        let outages: Vec<Duration> = trials.iter().map(|t| t.outage).collect();
        println!(
            "{:<11} {:>6} {:>8} {:>15} {:>15} {:>15} {:>12}",
            imp.name(),
            trials.len(),
            failures,
            ms(median(&gaps)),
            ms(gaps.iter().max().copied()),
            ms(median(&outages)),
            trials.iter().filter(|t| t.backup_adverts > 0).count(),
        );
    }
    println!(
        "haldir / keepalived, median advert gap: {}",
        ratio(median_gap(Impl::Haldir), median_gap(Impl::Keepalived))
    );
    println!("(gaps in ms; flaps = trials in which the backup advertised)");
}

fn main() -> anyhow::Result<()> {
    let options = parse_args()?;
    if !lab::is_root() {
        eprintln!("failover bench: SKIPPED, needs root (network namespaces)");
        return Ok(());
    }
    if !options.haldir.is_file() {
        bail!(
            "no haldir binary at {} (build it: cargo build --release)",
            options.haldir.display()
        );
    }
    install_sigint_handler();
    let started = Instant::now();

    let mut cells: Vec<Cell> = Vec::new();
    for &config in &options.configs {
        for &scenario in &options.scenarios {
            for &imp in &options.impls {
                cells.push(Cell {
                    config,
                    scenario,
                    imp,
                    trials: Vec::new(),
                    failures: 0,
                });
            }
        }
    }
    let total = cells.len() * options.trials;
    eprintln!(
        "failover bench: {} trials ({} per cell), haldir {}, soak {}",
        total,
        options.trials,
        options.haldir.display(),
        options.hog.map_or_else(
            || "skipped".into(),
            |d| format!("{} s per implementation", d.as_secs())
        )
    );
    // Interleave the implementations trial by trial, so that a noisy minute on the machine
    // hits both alike.
    let mut done = 0;
    'cells: for group in cells.chunk_by_mut(|a, b| a.config == b.config && a.scenario == b.scenario)
    {
        for trial in 0..options.trials {
            for cell in group.iter_mut() {
                if interrupted() {
                    break 'cells;
                }
                done += 1;
                let result = run_trial(cell.imp, cell.config, cell.scenario, &options.haldir);
                let head = format!(
                    "[{done}/{total} {:>4.0}s] {} {} {} #{}",
                    started.elapsed().as_secs_f64(),
                    cell.config.name,
                    cell.scenario.name(),
                    cell.imp.name(),
                    trial + 1
                );
                match result {
                    Ok(t) => {
                        eprintln!(
                            "{head}: outage {} ms (-> {}), adv gap {} ms, GARP {} ms, served {} ms",
                            ms(Some(t.outage)),
                            t.after.as_deref().unwrap_or("nobody"),
                            ms(t.advert_gap),
                            ms(t.garp_gap),
                            t.served_until
                                .map_or_else(|| "-".into(), |v| format!("{v:.1}"))
                        );
                        cell.trials.push(t);
                    }
                    Err(e) if interrupted() => {
                        eprintln!("{head}: interrupted ({e:#})");
                        break 'cells;
                    }
                    Err(e) => {
                        eprintln!("{head}: FAILED: {e:#}");
                        cell.failures += 1;
                    }
                }
            }
        }
    }
    if options.trials > 0 {
        print_table(&cells);
    }

    let mut soaks = Vec::new();
    if let Some(duration) = options.hog {
        for &imp in &options.impls {
            if interrupted() {
                break;
            }
            eprintln!(
                "[{:>4.0}s] soak {}: v3 10 ms under stress-ng --cpu 2 for {} s",
                started.elapsed().as_secs_f64(),
                imp.name(),
                duration.as_secs()
            );
            match run_soak(imp, duration, &options.haldir) {
                Ok(soak) => {
                    eprintln!(
                        "[{:>4.0}s] soak {}: {} spurious transitions, client max gap {} ms",
                        started.elapsed().as_secs_f64(),
                        imp.name(),
                        soak.transitions[0] + soak.transitions[1],
                        ms(Some(soak.client_max_gap))
                    );
                    soaks.push(soak);
                }
                Err(e) => eprintln!("soak {}: FAILED: {e:#}", imp.name()),
            }
        }
        if !soaks.is_empty() {
            print_soaks(&soaks);
        }
    }
    if options.reload_trials > 0 {
        let mut results = Vec::new();
        for &imp in &options.impls {
            let (mut trials, mut failures) = (Vec::new(), 0);
            for trial in 0..options.reload_trials {
                if interrupted() {
                    break;
                }
                match run_reload_trial(imp, &options.haldir) {
                    Ok(t) => {
                        eprintln!(
                            "[{:>4.0}s] reload {} #{}: advert gap {} ms, client gap {} ms, \
                             backup adverts {}",
                            started.elapsed().as_secs_f64(),
                            imp.name(),
                            trial + 1,
                            ms(Some(t.advert_gap)),
                            ms(Some(t.outage)),
                            t.backup_adverts
                        );
                        trials.push(t);
                    }
                    Err(e) => {
                        eprintln!("reload {} #{}: FAILED: {e:#}", imp.name(), trial + 1);
                        failures += 1;
                    }
                }
            }
            results.push((imp, trials, failures));
        }
        print_reloads(&results);
    }
    eprintln!(
        "failover bench: done in {:.0} s{}",
        started.elapsed().as_secs_f64(),
        if interrupted() { " (interrupted)" } else { "" }
    );
    Ok(())
}
