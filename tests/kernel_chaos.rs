//! The IPVS rows of the chaos matrix (issue 7), on the VM's real IPVS (skipped, loudly,
//! outside the VM; `tests/vm/run.sh` runs them). Each outcome is read from the kernel over
//! netlink by the test itself, never from haldir's own account.
//!
//! 1. kill -9 in the middle of a transition, restart: haldir is killed while it programs a
//!    table of 1,500 services × 4 real servers — from empty (twice, at different points)
//!    and in the middle of a SIGHUP reload that drops 1,400 services, adds 1,400 and
//!    re-weights every kept real server. The restarted haldir must leave the table
//!    exactly as configured (nothing lost, no leftover of the dropped services) and must
//!    do so with exactly the operations the interrupted table still needed: an entry the
//!    killed run had already made is neither deleted nor made again.
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

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use daemon::{field, Daemon};
use haldir_ipvs::diff::diff;
use haldir_ipvs::model::{ServiceKey, Table};
use haldir_ipvs::IpvsClient;
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

/// The table `config` asks for, as haldir's own wiring computes it from the parsed file
/// (every real server up: there are no health checkers).
fn desired(config: &Path) -> Table {
    let model = haldir_config::load_file(config).expect("the test's configuration is valid");
    let servers = &model.virtual_servers;
    haldir_director::ipvs_policy::desired_table(
        servers,
        &|vs, rs| haldir_director::ipvs_policy::real_server_state(vs, rs, &Default::default()),
        &mut Default::default(),
    )
}

/// A runtime for the netlink client on the calling (namespace) thread.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The kernel table of namespace `ns`, over netlink.
fn kernel_table(ns: &str) -> Table {
    lab::in_netns(ns, || {
        runtime().block_on(async {
            let client = IpvsClient::connect().await.unwrap();
            client.table().await.unwrap()
        })
    })
    .unwrap()
}

/// Polls the service list of namespace `ns` and sends SIGKILL to `pid` the moment
/// `interrupt(services)` holds. Returns false if it never did within `timeout`.
fn kill_when(
    lab: &Lab,
    ns: &str,
    pid: u32,
    timeout: Duration,
    interrupt: impl Fn(&[ServiceKey]) -> bool + Send + Sync,
) -> bool {
    lab::in_netns(ns, || {
        runtime().block_on(async {
            let client = IpvsClient::connect().await.unwrap();
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                let services: Vec<ServiceKey> = client
                    .services()
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|entry| entry.key)
                    .collect();
                if interrupt(&services) {
                    lab.kill(pid, Signal::SIGKILL).unwrap();
                    return true;
                }
                // Leave the IPVS lock to haldir between two dumps.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            false
        })
    })
    .unwrap()
}

/// The operations that turn `actual` into `desired` when haldir owns `owned` as well as
/// what `desired` names: what a correct restart must do, no more.
fn needed(desired: &Table, actual: &Table, owned: &BTreeSet<ServiceKey>) -> usize {
    diff(desired, actual, &|key| owned.contains(key)).len()
}

/// Asserts the kernel table of `ns` is exactly `desired`: nothing missing, nothing else.
fn assert_exactly(ns: &str, desired: &Table, what: &str) {
    let actual = kernel_table(ns);
    let off = diff(desired, &actual, &|_| true);
    assert!(
        off.is_empty(),
        "{what}: the kernel table differs from the configuration by {} operation(s), first: {:?}",
        off.len(),
        off.iter()
            .take(5)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
}

/// Waits for the restarted `daemon` to bring the table in step and returns the number of
/// operations it applied (0 if it found the table in step already).
fn restart_ops(daemon: &Daemon) -> u64 {
    let done = wait_until(Duration::from_secs(60), || {
        daemon.count(BROUGHT_IN_STEP) > 0
            || daemon.count("IPVS table already in step") > 0
            || !daemon.lab.is_running(daemon.pid)
    });
    assert!(
        done,
        "restarted haldir never reported on its first IPVS round"
    );
    match daemon.lines(BROUGHT_IN_STEP).first() {
        Some(line) => {
            assert_eq!(field(line, "failed"), 0, "{line}");
            field(line, "applied")
        }
        None => 0,
    }
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
    let full = desired(&config_path);
    for threshold in [1usize, 700] {
        ipvsadm::run(Some(&ns), &["-C"]);
        let first = Daemon::start(&lab, "r1", &config_path, resync);
        let caught = kill_when(&lab, &ns, first.pid, Duration::from_secs(120), |services| {
            services.len() >= threshold
        });
        assert!(
            caught,
            "haldir never programmed {threshold} service(s); its log:\n{}",
            lab.log_text(first.pid)
        );
        lab.wait_exit(first.pid, Duration::from_secs(10)).unwrap();
        let partial = kernel_table(&ns);
        let owned: BTreeSet<ServiceKey> = full.services.keys().copied().collect();
        let expected_ops = needed(&full, &partial, &owned);
        say(&format!(
            "killed after >= {threshold} services: the kernel held {} services and {} \
             destinations of {} and {}; {expected_ops} operations still needed",
            partial.service_count(),
            partial.dest_count(),
            full.service_count(),
            full.dest_count()
        ));
        let second = Daemon::start(&lab, "r1", &config_path, resync);
        let applied = restart_ops(&second);
        assert_exactly(&ns, &full, "after the restart");
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
    let new = desired(&config_path);
    lab.kill(running.pid, Signal::SIGHUP).unwrap();
    // The reload's first operations are the 1,400 deletions: kill at the first one seen.
    let old_count = old.service_count();
    let caught = kill_when(
        &lab,
        &ns,
        running.pid,
        Duration::from_secs(120),
        |services| services.len() < old_count,
    );
    assert!(
        caught,
        "the reload never deleted a service; haldir's log:\n{}",
        lab.log_text(running.pid)
    );
    lab.wait_exit(running.pid, Duration::from_secs(10)).unwrap();
    let partial = kernel_table(&ns);
    let owned: BTreeSet<ServiceKey> = old
        .services
        .keys()
        .chain(new.services.keys())
        .copied()
        .collect();
    let expected_ops = needed(&new, &partial, &owned);
    let leftovers = partial
        .services
        .keys()
        .filter(|key| !new.services.contains_key(key))
        .count();
    say(&format!(
        "killed mid-reload: the kernel held {} services ({leftovers} of them dropped by the \
         new file) and {} destinations; {expected_ops} operations still needed",
        partial.service_count(),
        partial.dest_count()
    ));
    assert!(
        leftovers > 0,
        "the kill came too late to leave services the reload drops"
    );
    let restarted = Daemon::start(&lab, "r1", &config_path, resync);
    let applied = restart_ops(&restarted);
    assert_exactly(
        &ns,
        &new,
        "after the restart that followed the killed reload",
    );
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
    let full = desired(&config_path);

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
    let actual = kernel_table(&ns);
    let present: BTreeSet<String> = actual.services.keys().map(ToString::to_string).collect();
    assert_eq!(
        present,
        BTreeSet::from([
            "TCP 10.23.0.100:80".to_owned(),
            "TCP 10.23.0.100:8080".to_owned()
        ]),
        "every service but the refused one must be programmed"
    );
    for key in actual.services.keys() {
        assert_eq!(
            actual.services[key].1.len(),
            2,
            "{key} must have both real servers"
        );
    }

    blocked.restore();
    let programmed = wait_until(Duration::from_secs(20), || {
        diff(&full, &kernel_table(&ns), &|_| true).is_empty()
    });
    assert!(
        programmed,
        "the refused service was not programmed after its module loaded again; log:\n{}",
        lab.log_text(haldir.pid)
    );
    say(&format!(
        "refused 3 times within {retried_within:?} (resync period {resync} s), programmed \
         once the module was back: {} services, {} destinations",
        full.service_count(),
        full.dest_count()
    ));
    haldir.stop();
}
