//! The IPVS side of SIGHUP reload, on the VM's real IPVS (skipped, loudly, outside the VM;
//! `tests/vm/run.sh` runs it), proven from outside: `ipvsadm -Ln` and `ipvsadm -Ln --stats
//! --exact` before and after, the reconciler's operation counters on `/metrics`, and
//! haldir's log.
//!
//! ```text
//!   cl 10.21.0.9 ──┐
//!   r1 10.21.0.1 ──┼── br0   r1: haldir, VRRP VI_1 (alone: MASTER) holding VIP 10.21.0.100,
//!   rs1..rs3 .11-.13          IPVS TCP VIP:80 wrr -> rs1, rs2, rs3 (DR, TCP_CHECK each)
//! ```
//!
//! Client traffic through the VIP first fills the kernel's counters: service and
//! destination `Conns`/`InPkts`/`InBytes`, `InActConn` (finished connections in FIN_WAIT,
//! whose timeout is raised to 600 s) and `ActiveConn` (one connection held open). Deleting
//! and re-adding a service or a destination would reset those, so equal listings prove the
//! entries were not touched.
//!
//! a. SIGHUP with an identical file: zero reconciler operations, no "brought in step" log
//!    line, both listings byte-identical.
//! b. rs1's weight 1 → 3 in the file: exactly one `set destination` operation; in the
//!    listings only rs1's weight changed, every counter is equal.
//! d. A broken file (`haldir reload` over the control socket reports the error): zero
//!    operations, listings identical.
//! c. rs3's listener is stopped: its TCP_CHECK takes it out. A reload that changes rs2's
//!    weight and the VRRP priority, while a thread polls the table over netlink every few
//!    milliseconds: rs3 never reappears (and no add/delete operation is counted), only
//!    rs2's weight is set. rs3 comes back once its listener is back.

#[path = "kernel_ipvs/ipvsadm.rs"]
#[allow(dead_code)]
mod ipvsadm;

#[path = "kernel_ipvs/dr_lab.rs"]
#[allow(dead_code)]
mod dr_lab;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use haldir_ipvs::model::{DestKey, Protocol, ServiceKey};
use haldir_ipvs::IpvsClient;
use haldir_lab::{self as lab, vm::in_vm_or_skip, wait_until, Lab, Signal};

const VIP: &str = "10.21.0.100";
const SERVICE: &str = "10.21.0.100:80";
const METRICS: &str = "10.21.0.1:9650";
const BROUGHT_IN_STEP: &str = "IPVS table brought in step with the configuration";

fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "kernel_reload: {text}");
}

/// The configuration: VI_1 at `priority`, real servers rs1..rs3 with `weights`.
fn config(priority: u8, weights: [u32; 3]) -> String {
    let mut text = format!(
        r#"
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 61
priority = {priority}
advert_int = 1
virtual_ipaddress = ["{VIP}/32"]

[[virtual_server]]
ip = "{VIP}"
port = 80
lb_kind = "DR"
lb_algo = "wrr"
delay_loop = 1
retry = 1
delay_before_retry = 0.5
connect_timeout = 1
"#
    );
    for (i, weight) in weights.iter().enumerate() {
        text.push_str(&format!(
            "\n[[virtual_server.real_server]]\nip = \"10.21.0.1{}\"\nport = 80\nweight = {weight}\nTCP_CHECK = {{}}\n",
            i + 1
        ));
    }
    text
}

/// What the outside sees: `ipvsadm -Ln` (weights, ActiveConn, InActConn) and
/// `ipvsadm -Ln --stats --exact` (cumulative counters).
#[derive(Debug, PartialEq)]
struct Snapshot {
    list: String,
    stats: String,
}

fn snapshot(ns: &str) -> Snapshot {
    Snapshot {
        list: ipvsadm::run(Some(ns), &["-Ln"]),
        stats: ipvsadm::run(Some(ns), &["-Ln", "--stats", "--exact"]),
    }
}

/// The lines of `after` that differ from `before` (same line count required).
fn changed_lines(before: &str, after: &str) -> Vec<(String, String)> {
    let (b, a): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
    assert_eq!(b.len(), a.len(), "before:\n{before}\nafter:\n{after}");
    b.iter()
        .zip(&a)
        .filter(|(x, y)| x != y)
        .map(|(x, y)| ((*x).to_owned(), (*y).to_owned()))
        .collect()
}

/// Waits two resync rounds (1 s each) after a reload so that any operation it causes has
/// happened, then returns the reconciler counters.
fn settle(lab: &Lab) -> BTreeMap<String, u64> {
    std::thread::sleep(Duration::from_secs(3));
    dr_lab::reconcile_ops(lab, "r1", METRICS)
}

/// `haldir run` in r1 (started by hand rather than with `lab::Haldir`, whose start and
/// reload timeouts are too short under the VM's emulation).
struct Daemon<'l> {
    lab: &'l Lab,
    pid: u32,
    config: PathBuf,
    status: PathBuf,
    socket: PathBuf,
}

impl<'l> Daemon<'l> {
    fn start(lab: &'l Lab, binary: &Path, config: &str) -> Daemon<'l> {
        let dir = lab.dir();
        let daemon = Daemon {
            lab,
            pid: 0,
            config: dir.join("r1-haldir.toml"),
            status: dir.join("r1-haldir.status.json"),
            socket: dir.join("r1-haldir.sock"),
        };
        std::fs::write(&daemon.config, config).unwrap();
        let mut cmd = Command::new(binary);
        cmd.arg("run")
            .arg("--config")
            .arg(&daemon.config)
            .arg("--status-file")
            .arg(&daemon.status)
            .arg("--control-socket")
            .arg(&daemon.socket)
            .args(["--ipvs-resync", "1", "--metrics-address", METRICS])
            .env("HALDIR_LOG", "info")
            .env("NO_COLOR", "1");
        Daemon {
            pid: lab.spawn("r1", cmd).expect("start haldir"),
            ..daemon
        }
    }

    /// Its log, without terminal colours.
    fn log(&self) -> String {
        let text = self.lab.log_text(self.pid);
        let mut plain = String::with_capacity(text.len());
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                // CSI: ESC [ parameters final-byte
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                plain.push(c);
            }
        }
        plain
    }

    fn status(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(&self.status).ok()?)
            .ok()
            .map(haldir_lab::schema_checked)
    }

    fn state(&self) -> Option<String> {
        self.status()?["instances"][0]["state"]
            .as_str()
            .map(str::to_owned)
    }

    fn config_path(&self) -> &Path {
        &self.config
    }

    fn control_socket(&self) -> &Path {
        &self.socket
    }

    fn is_running(&self) -> bool {
        self.lab.is_running(self.pid)
    }

    /// Writes `config`, sends SIGHUP and waits for the log to report the reload;
    /// true when applied.
    fn reload(&self, config: &str) -> Result<bool, String> {
        let count = |what: &str| self.log().matches(what).count();
        let (applied, rejected) = (count("reloaded"), count("reload rejected"));
        std::fs::write(&self.config, config).unwrap();
        self.lab.kill(self.pid, Signal::SIGHUP).unwrap();
        let mut outcome = None;
        wait_until(Duration::from_secs(60), || {
            if count("reloaded") > applied {
                outcome = Some(true);
            } else if count("reload rejected") > rejected {
                outcome = Some(false);
            }
            outcome.is_some()
        });
        outcome.ok_or_else(|| format!("the reload was not reported:\n{}", self.log()))
    }

    fn stop(&self) -> std::process::ExitStatus {
        self.lab.kill(self.pid, Signal::SIGTERM).unwrap();
        self.lab
            .wait_exit(self.pid, Duration::from_secs(30))
            .unwrap()
            .unwrap_or_else(|| panic!("haldir did not stop:\n{}", self.log()))
    }
}

#[test]
fn ipvs_reload_touches_only_what_changed_keeps_down_servers_down_and_survives_a_broken_file() {
    if !in_vm_or_skip(
        "kernel_reload::ipvs_reload_touches_only_what_changed_keeps_down_servers_down_and_survives_a_broken_file",
    ) {
        return;
    }
    let started = Instant::now();
    let lab = Lab::new("kernel-reload").unwrap();
    lab.add_host("cl", &["10.21.0.9/24"]).unwrap();
    lab.add_host("r1", &["10.21.0.1/24"]).unwrap();
    let ns = lab.ns_name("r1");
    let mut listeners = Vec::new();
    for (i, host) in ["rs1", "rs2", "rs3"].iter().enumerate() {
        let ip = format!("10.21.0.1{}", i + 1);
        dr_lab::add_real_server(&lab, host, &ip, VIP);
        listeners.push(dr_lab::start_listener(&lab, host, &ip));
    }
    // Finished DR connections sit in FIN_WAIT (InActConn) for tcpfin seconds: long enough
    // to outlive the test. (Per namespace.)
    ipvsadm::run(Some(&ns), &["--set", "900", "600", "300"]);

    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_haldir"));
    let base = config(150, [1, 1, 1]);
    let haldir = Daemon::start(&lab, binary, &base);
    assert!(
        wait_until(Duration::from_secs(60), || haldir.state().as_deref()
            == Some("MASTER")),
        "{}",
        haldir.log()
    );
    let all_up: Vec<(String, u32)> = (1..=3).map(|i| (format!("10.21.0.1{i}:80"), 1)).collect();
    assert!(
        wait_until(Duration::from_secs(60), || dr_lab::dests(&ns, SERVICE)
            == all_up),
        "not all up:\n{}\n{}",
        ipvsadm::run(Some(&ns), &["-Ln"]),
        haldir.log()
    );

    // Traffic: 6 finished connections (InActConn, Conns, InPkts) and one held open
    // (ActiveConn).
    let answers = dr_lab::requests(&lab, "cl", VIP, 6);
    assert!(
        answers.iter().all(|a| a.starts_with("HTTP/1.0 200")),
        "answers through the VIP: {answers:?}"
    );
    let _held: TcpStream = lab::in_netns(&lab.ns_name("cl"), || {
        TcpStream::connect_timeout(
            &format!("{VIP}:80").parse().unwrap(),
            Duration::from_secs(20),
        )
        .expect("connect to the VIP")
    })
    .unwrap();
    // The kernel folds its per-CPU counters into `--stats` from its estimation
    // timer (every 2 s): wait past two of its rounds so the snapshot is settled.
    std::thread::sleep(Duration::from_secs(5));
    let mut before = snapshot(&ns);
    say(&format!(
        "setup done in {:.1} s; table with traffic:\n{}{}",
        started.elapsed().as_secs_f64(),
        before.list,
        before.stats
    ));
    assert!(
        before.list.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&"->") && f.get(4).is_some_and(|n| *n != "0")
        }),
        "no InActConn anywhere:\n{}",
        before.list
    );

    // a. Identical file: nothing at all.
    let ops0 = dr_lab::reconcile_ops(&lab, "r1", METRICS);
    let logged = haldir.log().matches(BROUGHT_IN_STEP).count();
    let t = Instant::now();
    assert!(haldir.reload(&base).unwrap(), "{}", haldir.log());
    let reload_a = t.elapsed();
    let ops1 = settle(&lab);
    let after = snapshot(&ns);
    assert_eq!(
        dr_lab::delta(&ops0, &ops1),
        BTreeMap::new(),
        "an identical reload caused IPVS operations"
    );
    assert_eq!(
        haldir.log().matches(BROUGHT_IN_STEP).count(),
        logged,
        "{}",
        haldir.log()
    );
    assert_eq!(
        after, before,
        "an identical reload changed the kernel table"
    );
    say(&format!(
        "a. identical reload (reported in {:.2} s): 0 operations, listings and counters identical",
        reload_a.as_secs_f64()
    ));

    // b. rs1's weight 1 → 3: one SET on that destination, nothing else.
    let t = Instant::now();
    assert!(
        haldir.reload(&config(150, [3, 1, 1])).unwrap(),
        "{}",
        haldir.log()
    );
    let reload_b = t.elapsed();
    let ops2 = settle(&lab);
    let after = snapshot(&ns);
    assert_eq!(
        dr_lab::delta(&ops1, &ops2),
        BTreeMap::from([("set destination".to_owned(), 1)]),
        "changing one weight"
    );
    let log = haldir.log();
    assert_eq!(log.matches(BROUGHT_IN_STEP).count(), logged + 1, "{log}");
    let line = log.lines().rfind(|l| l.contains(BROUGHT_IN_STEP)).unwrap();
    assert!(
        line.contains("applied=1") && line.contains("failed=0"),
        "{line}"
    );
    assert_eq!(
        after.stats, before.stats,
        "counters changed: an entry was re-added"
    );
    let changed = changed_lines(&before.list, &after.list);
    assert_eq!(changed.len(), 1, "{changed:?}");
    let (old, new) = &changed[0];
    let (old, new): (Vec<&str>, Vec<&str>) = (
        old.split_whitespace().collect(),
        new.split_whitespace().collect(),
    );
    assert_eq!(old[1], "10.21.0.11:80", "{old:?}");
    assert_eq!((old[3], new[3]), ("1", "3"), "weight of rs1");
    assert_eq!(
        (&old[..3], &old[4..]),
        (&new[..3], &new[4..]),
        "only the weight may change"
    );
    say(&format!(
        "b. weight change (reported in {:.2} s): 1 set destination, log line {line:?}",
        reload_b.as_secs_f64()
    ));
    before = after;

    // d. A broken file: rejected with its error by `haldir reload`; nothing changes.
    std::fs::write(
        haldir.config_path(),
        config(150, [3, 1, 1]).replace("lb_algo = \"wrr\"", "lb_algo = \"wrr\"\nbogus_key = 1"),
    )
    .unwrap();
    let out = Command::new(binary)
        .args(["reload", "--socket"])
        .arg(haldir.control_socket())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a broken file was accepted: {stderr}"
    );
    assert!(
        stderr.contains("bogus_key"),
        "the error is not reported: {stderr}"
    );
    let ops3 = settle(&lab);
    assert_eq!(
        dr_lab::delta(&ops2, &ops3),
        BTreeMap::new(),
        "a rejected reload"
    );
    assert_eq!(snapshot(&ns), before, "a rejected reload changed the table");
    assert!(haldir.is_running());
    say(&format!(
        "d. broken file: rejected ({}), 0 operations, table identical",
        stderr.trim().replace('\n', " | ")
    ));

    // c. rs3 down, then a reload of a changed file: rs3 must not come back, not even
    // for a moment.
    dr_lab::stop_listener(&lab, listeners[2]);
    let rs3_down: Vec<(String, u32)> =
        vec![("10.21.0.11:80".into(), 3), ("10.21.0.12:80".into(), 1)];
    let t = Instant::now();
    assert!(
        wait_until(Duration::from_secs(60), || dr_lab::dests(&ns, SERVICE)
            == rs3_down),
        "rs3 not removed:\n{}\n{}",
        ipvsadm::run(Some(&ns), &["-Ln"]),
        haldir.log()
    );
    say(&format!(
        "c. rs3's listener stopped: out of the table after {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    std::thread::sleep(Duration::from_secs(2));
    let ops4 = dr_lab::reconcile_ops(&lab, "r1", METRICS);

    // The watcher: reads the service's destinations over netlink, back to back.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = lab::spawn_in_netns(&ns, "ipvs-watch", {
        let stop = stop.clone();
        move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let client = IpvsClient::connect().await.unwrap();
                let key = ServiceKey::Address {
                    protocol: Protocol::Tcp,
                    addr: VIP.parse().unwrap(),
                    port: 80,
                };
                let rs3 = DestKey::new("10.21.0.13".parse().unwrap(), 80);
                let (mut reads, mut seen) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let dests = client.destinations(&key).await.unwrap();
                    reads += 1;
                    if dests.iter().any(|d| d.key == rs3) {
                        seen += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (reads, seen)
            })
        }
    })
    .unwrap();
    let t = Instant::now();
    assert!(
        haldir.reload(&config(120, [3, 2, 1])).unwrap(),
        "{}",
        haldir.log()
    );
    let reload_c = t.elapsed();
    let ops5 = settle(&lab);
    stop.store(true, Ordering::Relaxed);
    let (reads, seen) = watcher.join().unwrap();
    let after = snapshot(&ns);
    assert_eq!(
        seen, 0,
        "rs3 reappeared in {seen} of {reads} reads during the reload"
    );
    assert!(reads > 10, "the watcher read the table only {reads} times");
    assert_eq!(
        dr_lab::delta(&ops4, &ops5),
        BTreeMap::from([("set destination".to_owned(), 1)]),
        "the reload of a changed file with rs3 down"
    );
    assert_eq!(
        dr_lab::dests(&ns, SERVICE),
        vec![
            ("10.21.0.11:80".to_owned(), 3),
            ("10.21.0.12:80".to_owned(), 2)
        ]
    );
    let instance = haldir.status().unwrap()["instances"][0].clone();
    assert_eq!(instance["priority"], 120, "{instance}");
    say(&format!(
        "c. reload with rs3 down (reported in {:.2} s): {reads} netlink reads during and after it, rs3 in none; 1 set destination\n{}",
        reload_c.as_secs_f64(),
        after.list
    ));

    // rs3's checker says UP again: back, with the weight of the file.
    dr_lab::start_listener(&lab, "rs3", "10.21.0.13");
    let t = Instant::now();
    let all_back = vec![
        ("10.21.0.11:80".to_owned(), 3),
        ("10.21.0.12:80".to_owned(), 2),
        ("10.21.0.13:80".to_owned(), 1),
    ];
    assert!(
        wait_until(Duration::from_secs(60), || dr_lab::dests(&ns, SERVICE)
            == all_back),
        "rs3 not back:\n{}\n{}",
        ipvsadm::run(Some(&ns), &["-Ln"]),
        haldir.log()
    );
    say(&format!(
        "c. rs3's listener restarted: back after {:.1} s; whole test {:.1} s",
        t.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    ));

    let status = haldir.stop();
    assert!(status.success(), "{}", haldir.log());
}
