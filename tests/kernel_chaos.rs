//! The IPVS rows of the chaos matrix (issue 7), on the VM's real IPVS (skipped, loudly,
//! outside the VM; `tests/vm/run.sh` runs them). Each outcome is read from the kernel by
//! the test itself with independent tools, never from haldir's own account: the expected
//! tables are written out here as `ipvsadm -Sn` lines, the kernel's table is the text
//! `ipvsadm -Sn` prints in the router's namespace, and the moment to kill haldir is
//! watched in the kernel's `/proc/net/ip_vs`.
//!
//! 1. kill -9 in the middle of a transition, restart: haldir is killed while it programs a
//!    table of 1,500 services × 4 real servers — from empty (twice, at different points)
//!    and in the middle of a SIGHUP reload that drops 1,400 services, adds 1,400 and
//!    re-weights every kept real server. The restarted haldir must leave the table
//!    exactly as configured (nothing lost, no leftover of the dropped services) and must
//!    do so with exactly the operations the interrupted table still needed: an entry the
//!    killed run had already made is neither deleted nor made again. The number needed is
//!    counted by the test from the two `ipvsadm -Sn` texts (one per line that must be added,
//!    changed or removed); haldir's logged count of applied operations must equal it (the
//!    log is the only witness of an entry deleted and made again within one round), and
//!    the table must stay a superset of the interrupted one's kept lines while the restart
//!    runs (sampled with `ipvsadm -Sn`).
//! 2. The kernel refuses an operation: the module of one service's scheduler cannot be
//!    loaded (`kernel.modprobe` pointed at /bin/false, the module removed). haldir names
//!    the service in its error, applies every other service, retries sooner than its
//!    resync period, and programs the refused service once the module loads again.

#[path = "kernel_ipvs/ipvsadm.rs"]
#[allow(dead_code)]
mod ipvsadm;

#[path = "kernel_ipvs/daemon.rs"]
#[allow(dead_code)]
mod daemon;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use daemon::{field, Daemon};
use haldir_lab::{self as lab, vm::in_vm_or_skip, wait_until, Lab, Signal};

const BROUGHT_IN_STEP: &str = "IPVS table brought in step with the configuration";
const VIP: &str = "10.22.0.100";

fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "kernel_chaos: {text}");
}

/// TOML: one VRRP instance holding the VIP (alone on its link: it becomes master while the
/// table is programmed) and a DR service per port in `ports`, each with four real servers
/// of weight `weight`.
fn config(ports: std::ops::Range<u16>, weight: u32) -> String {
    let mut toml = format!(
        r#"
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 22
priority = 150
version = 3
advert_int = 0.1
virtual_ipaddress = ["{VIP}/24"]
"#
    );
    for port in ports {
        toml.push_str(&format!(
            "\n[[virtual_server]]\nip = \"{VIP}\"\nport = {port}\nlb_algo = \"wrr\"\nlb_kind = \"DR\"\n"
        ));
        for host in 1..=4 {
            toml.push_str(&format!(
                "[[virtual_server.real_server]]\nip = \"10.22.1.{host}\"\nweight = {weight}\n"
            ));
        }
    }
    toml
}

/// The table `config(ports, weight)` asks for, written out as `ipvsadm -Sn` prints it: a
/// wrr service per port on the VIP, four direct-routing real servers on the same port.
fn expected_lines(ports: std::ops::Range<u16>, weight: u32) -> BTreeSet<String> {
    let mut lines = BTreeSet::new();
    for port in ports {
        lines.insert(format!("-A -t {VIP}:{port} -s wrr"));
        for host in 1..=4 {
            lines.insert(format!(
                "-a -t {VIP}:{port} -r 10.22.1.{host}:{port} -g -w {weight}"
            ));
        }
    }
    lines
}

/// The kernel table of namespace `ns` as the lines of `ipvsadm -Sn` (blanks squeezed).
fn kernel_lines(ns: &str) -> BTreeSet<String> {
    ipvsadm::run(Some(ns), &["-Sn"])
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|line| !line.is_empty())
        .collect()
}

/// What an `ipvsadm -Sn` line is about: its service (`-t ADDR:PORT`) and, for a real
/// server's `-a` line, the real server (`-r ADDR:PORT`).
fn identity(line: &str) -> (String, Option<String>) {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let service = tokens.get(1..3).map(|t| t.join(" ")).unwrap_or_default();
    let server = tokens
        .iter()
        .position(|t| *t == "-r")
        .and_then(|at| tokens.get(at + 1))
        .map(|t| (*t).to_owned());
    (service, server)
}

fn by_identity(lines: &BTreeSet<String>) -> BTreeMap<(String, Option<String>), &str> {
    lines.iter().map(|l| (identity(l), l.as_str())).collect()
}

/// The operations that turn the kernel table `actual` into `expected`, counted on their
/// `ipvsadm -Sn` texts when every service in the namespace is haldir's: one per expected
/// line that is missing or different (an add or a change), one per line of `actual` about
/// something `expected` does not have (a removal; a dropped service's real servers are
/// removed one by one before it).
fn ops_needed(expected: &BTreeSet<String>, actual: &BTreeSet<String>) -> usize {
    let expected = by_identity(expected);
    let actual = by_identity(actual);
    let adds_and_changes = expected
        .iter()
        .filter(|(key, line)| actual.get(*key) != Some(*line))
        .count();
    let removals = actual
        .keys()
        .filter(|key| !expected.contains_key(*key))
        .count();
    adds_and_changes + removals
}

/// The services of a table's lines.
fn service_count(lines: &BTreeSet<String>) -> usize {
    lines.iter().filter(|l| l.starts_with("-A ")).count()
}

/// Asserts the kernel table of `ns` is exactly `expected`: nothing missing, nothing else.
fn assert_exactly(ns: &str, expected: &BTreeSet<String>, what: &str) {
    let actual = kernel_lines(ns);
    let missing: Vec<&String> = expected.difference(&actual).collect();
    let extra: Vec<&String> = actual.difference(expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: `ipvsadm -Sn` differs from the configuration: {} line(s) missing, first {:?}; \
         {} line(s) not configured, first {:?}",
        missing.len(),
        &missing[..missing.len().min(5)],
        extra.len(),
        &extra[..extra.len().min(5)]
    );
}

/// The number of IPVS services the kernel of the calling thread's namespace lists in
/// `/proc/net/ip_vs` (the kernel's own text).
fn proc_service_count() -> usize {
    let Ok(mut file) = std::fs::File::open("/proc/thread-self/net/ip_vs") else {
        return 0;
    };
    let mut text = Vec::with_capacity(1 << 20);
    let _ = file.read_to_end(&mut text);
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| l.starts_with("TCP ") || l.starts_with("UDP ") || l.starts_with("SCTP "))
        .count()
}

/// Polls the kernel's service count in namespace `ns` and sends SIGKILL to `pid` the
/// moment `interrupt(count)` holds. Returns false if it never did within `timeout`.
fn kill_when(
    lab: &Lab,
    ns: &str,
    pid: u32,
    timeout: Duration,
    interrupt: impl Fn(usize) -> bool + Send + Sync,
) -> bool {
    lab::in_netns(ns, || {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if interrupt(proc_service_count()) {
                lab.kill(pid, Signal::SIGKILL).unwrap();
                return true;
            }
            // Leave the IPVS lock to haldir between two reads.
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    })
    .unwrap()
}

/// Waits for the restarted `daemon` to bring the table in step, sampling `ipvsadm -Sn`
/// meanwhile: every line of `kept` (lines of the interrupted table the configuration
/// keeps) must be there in every sample. Returns haldir's logged count of applied
/// operations (0 if it found the table in step already) and the number of samples.
fn restart_ops(daemon: &Daemon, ns: &str, kept: &BTreeSet<String>) -> (u64, usize) {
    let mut samples = 0;
    // A dump taken while haldir deletes other services can skip a few entries (the
    // kernel resumes each part of a netlink dump by position, and the deletions shift
    // it), so a line counts as gone only when two samples in a row lack it: a
    // flush-and-reprogram, or any removal that lasts, still shows.
    let mut gone_before: BTreeSet<String> = BTreeSet::new();
    let done = wait_until(Duration::from_secs(60), || {
        let finished = daemon.count(BROUGHT_IN_STEP) > 0
            || daemon.count("IPVS table already in step") > 0
            || !daemon.lab.is_running(daemon.pid);
        let sample = kernel_lines(ns);
        samples += 1;
        let gone_now: BTreeSet<String> = kept.difference(&sample).cloned().collect();
        let gone: Vec<&String> = gone_now.intersection(&gone_before).collect();
        assert!(
            gone.is_empty(),
            "while the restarted haldir worked, {} line(s) the killed run had made and the \
             configuration keeps were missing from two `ipvsadm -Sn` in a row, first {:?}",
            gone.len(),
            &gone[..gone.len().min(5)]
        );
        gone_before = gone_now;
        finished
    });
    assert!(
        done,
        "restarted haldir never reported on its first IPVS round"
    );
    let applied = match daemon.lines(BROUGHT_IN_STEP).first() {
        Some(line) => {
            assert_eq!(field(line, "failed"), 0, "{line}");
            field(line, "applied")
        }
        None => 0,
    };
    (applied, samples)
}

#[test]
fn kill_9_while_programming_or_reloading_loses_and_repeats_nothing() {
    if !in_vm_or_skip(
        "kernel_chaos::kill_9_while_programming_or_reloading_loses_and_repeats_nothing",
    ) {
        return;
    }
    let lab = Lab::new("kernel-chaos-kill").unwrap();
    lab.add_host("r1", &["10.22.0.1/24"]).unwrap();
    let ns = lab.ns_name("r1");
    let config_path = lab.dir().join("haldir.toml");
    let resync = 30.0; // only the first round matters here

    // a. From empty, killed after the first service, and again after 700 of 1,500.
    std::fs::write(&config_path, config(10000..11500, 1)).unwrap();
    let full = expected_lines(10000..11500, 1);
    for threshold in [1usize, 700] {
        ipvsadm::run(Some(&ns), &["-C"]);
        let first = Daemon::start(&lab, "r1", &config_path, resync);
        let caught = kill_when(&lab, &ns, first.pid, Duration::from_secs(120), |services| {
            services >= threshold
        });
        assert!(
            caught,
            "haldir never programmed {threshold} service(s); its log:\n{}",
            lab.log_text(first.pid)
        );
        lab.wait_exit(first.pid, Duration::from_secs(10)).unwrap();
        let partial = kernel_lines(&ns);
        let expected_ops = ops_needed(&full, &partial);
        say(&format!(
            "killed after >= {threshold} services: `ipvsadm -Sn` listed {} services in {} \
             lines of the configuration's {} and {}; {expected_ops} operations still needed",
            service_count(&partial),
            partial.len(),
            service_count(&full),
            full.len()
        ));
        assert!(
            expected_ops > 0,
            "the kill came after the table was complete: nothing left to prove"
        );
        let kept: BTreeSet<String> = partial.intersection(&full).cloned().collect();
        let second = Daemon::start(&lab, "r1", &config_path, resync);
        let (applied, samples) = restart_ops(&second, &ns, &kept);
        assert_exactly(&ns, &full, "after the restart");
        say(&format!(
            "restart: haldir applied {applied} operations ({expected_ops} needed by the \
             `ipvsadm -Sn` texts); {samples} samples kept every line it had found"
        ));
        assert_eq!(
            applied, expected_ops as u64,
            "the restart must apply exactly what the killed run left undone"
        );
        second.stop();
    }

    // b. In the middle of a reload: 1,400 services dropped, 1,400 added, 100 re-weighted.
    ipvsadm::run(Some(&ns), &["-C"]);
    let old = full;
    let running = Daemon::start(&lab, "r1", &config_path, resync);
    running.wait_for(BROUGHT_IN_STEP, 1, Duration::from_secs(60));
    assert_exactly(&ns, &old, "before the reload");
    std::fs::write(&config_path, config(11400..12900, 2)).unwrap();
    let new = expected_lines(11400..12900, 2);
    lab.kill(running.pid, Signal::SIGHUP).unwrap();
    // The reload's first operations are the 1,400 deletions: kill at the first one seen.
    let old_count = service_count(&old);
    let caught = kill_when(
        &lab,
        &ns,
        running.pid,
        Duration::from_secs(120),
        |services| services < old_count,
    );
    assert!(
        caught,
        "the reload never deleted a service; haldir's log:\n{}",
        lab.log_text(running.pid)
    );
    lab.wait_exit(running.pid, Duration::from_secs(10)).unwrap();
    let partial = kernel_lines(&ns);
    let expected_ops = ops_needed(&new, &partial);
    let new_services: BTreeSet<String> = new
        .iter()
        .filter(|l| l.starts_with("-A "))
        .map(|l| identity(l).0)
        .collect();
    let leftovers = partial
        .iter()
        .filter(|l| l.starts_with("-A ") && !new_services.contains(&identity(l).0))
        .count();
    say(&format!(
        "killed mid-reload: `ipvsadm -Sn` listed {} services ({leftovers} of them dropped by \
         the new file) in {} lines; {expected_ops} operations still needed",
        service_count(&partial),
        partial.len()
    ));
    assert!(
        leftovers > 0,
        "the kill came too late to leave services the reload drops"
    );
    let kept: BTreeSet<String> = partial.intersection(&new).cloned().collect();
    let restarted = Daemon::start(&lab, "r1", &config_path, resync);
    let (applied, samples) = restart_ops(&restarted, &ns, &kept);
    assert_exactly(
        &ns,
        &new,
        "after the restart that followed the killed reload",
    );
    say(&format!(
        "restart after the killed reload: haldir applied {applied} operations ({expected_ops} \
         needed by the `ipvsadm -Sn` texts); {samples} samples kept every line it had found"
    ));
    assert_eq!(
        applied, expected_ops as u64,
        "the restart must apply exactly what the killed reload left undone"
    );
    restarted.stop();
}

/// Points `kernel.modprobe` at /bin/false and removes one scheduler module, so the kernel
/// refuses services that use it; restores both when dropped (also on a failed assert).
struct SchedulerUnloadable {
    module: &'static str,
    saved_modprobe: String,
    restored: bool,
}

impl SchedulerUnloadable {
    const MODPROBE: &'static str = "/proc/sys/kernel/modprobe";

    fn new(module: &'static str) -> SchedulerUnloadable {
        let saved_modprobe = std::fs::read_to_string(Self::MODPROBE)
            .unwrap()
            .trim()
            .to_owned();
        std::fs::write(Self::MODPROBE, "/bin/false").unwrap();
        let guard = SchedulerUnloadable {
            module,
            saved_modprobe,
            restored: false,
        };
        let _ = Command::new("rmmod").arg(module).status();
        assert!(
            !Path::new("/sys/module").join(module).exists(),
            "cannot remove module {module} (in use?)"
        );
        guard
    }

    fn restore(&mut self) {
        if self.restored {
            return;
        }
        self.restored = true;
        let _ = std::fs::write(Self::MODPROBE, &self.saved_modprobe);
        let _ = Command::new("modprobe").arg(self.module).status();
    }
}

impl Drop for SchedulerUnloadable {
    fn drop(&mut self) {
        self.restore();
    }
}

#[test]
fn a_refused_operation_is_named_retried_and_the_others_applied() {
    if !in_vm_or_skip("kernel_chaos::a_refused_operation_is_named_retried_and_the_others_applied") {
        return;
    }
    let lab = Lab::new("kernel-chaos-refused").unwrap();
    lab.add_host("r1", &["10.23.0.1/24"]).unwrap();
    let ns = lab.ns_name("r1");
    let config_path = lab.dir().join("haldir.toml");
    let mut toml = String::new();
    for (port, scheduler) in [(80, "rr"), (443, "sed"), (8080, "wlc")] {
        toml.push_str(&format!(
            "\n[[virtual_server]]\nip = \"10.23.0.100\"\nport = {port}\nlb_algo = \"{scheduler}\"\n\
             lb_kind = \"DR\"\n[[virtual_server.real_server]]\nip = \"10.23.1.1\"\n\
             [[virtual_server.real_server]]\nip = \"10.23.1.2\"\n"
        ));
    }
    std::fs::write(&config_path, toml).unwrap();
    // What the file asks for, as `ipvsadm -Sn` prints it (weight 1: the default).
    let full: BTreeSet<String> = [(80, "rr"), (443, "sed"), (8080, "wlc")]
        .into_iter()
        .flat_map(|(port, scheduler)| {
            [
                format!("-A -t 10.23.0.100:{port} -s {scheduler}"),
                format!("-a -t 10.23.0.100:{port} -r 10.23.1.1:{port} -g -w 1"),
                format!("-a -t 10.23.0.100:{port} -r 10.23.1.2:{port} -g -w 1"),
            ]
        })
        .collect();

    let mut blocked = SchedulerUnloadable::new("ip_vs_sed");
    // The refusal is the kernel's own: ipvsadm gets it too.
    let by_hand = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "ipvsadm",
            "-A",
            "-t",
            "10.23.9.9:1",
            "-s",
            "sed",
        ])
        .output()
        .unwrap();
    assert!(
        !by_hand.status.success(),
        "the kernel accepted a sed service without its module"
    );
    say(&format!(
        "ipvsadm without the module: {}",
        String::from_utf8_lossy(&by_hand.stderr).trim()
    ));

    let resync = 30.0;
    let started = Instant::now();
    let haldir = Daemon::start(&lab, "r1", &config_path, resync);
    let refused = "IPVS: add service TCP 10.23.0.100:443 failed";
    haldir.wait_for(refused, 1, Duration::from_secs(30));
    // Retried well before the 30 s resync: 1 s, then 2 s after the first failure.
    haldir.wait_for(refused, 3, Duration::from_secs(15));
    let retried_within = started.elapsed();
    let line = &haldir.lines(refused)[0];
    say(&format!("haldir logged: {}", line["fields"]["message"]));
    // Every service but the refused one, each with both real servers: the configuration's
    // lines less those of port 443.
    let others: BTreeSet<String> = full
        .iter()
        .filter(|l| !l.contains("10.23.0.100:443 "))
        .cloned()
        .collect();
    assert_eq!(
        kernel_lines(&ns),
        others,
        "every service but the refused one must be programmed, as configured"
    );

    blocked.restore();
    let programmed = wait_until(Duration::from_secs(20), || kernel_lines(&ns) == full);
    assert!(
        programmed,
        "the refused service was not programmed after its module loaded again; log:\n{}",
        lab.log_text(haldir.pid)
    );
    say(&format!(
        "refused 3 times within {retried_within:?} (resync period {resync} s), programmed \
         once the module was back: {} services, {} lines of `ipvsadm -Sn`",
        service_count(&full),
        full.len()
    ));
    haldir.stop();
}
