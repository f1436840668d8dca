//! Health checks driving the real IPVS table, in the VM (skipped, loudly, outside it;
//! `tests/vm/run.sh` runs it). The real `haldir` binary, a director namespace `r1`, and
//! three real servers in their own namespaces with real listeners (`python3 -m
//! http.server`): rs1 and rs3 checked with `TCP_CHECK`, rs2 with `HTTP_GET` and
//! `inhibit_on_failure`; `quorum = 3` with a sorry server.
//!
//! 1. All up: `ipvsadm -Ln` shows rs1 (weight 2), rs2 (2), rs3 (1), no sorry server.
//! 2. rs1's listener is killed: rs1 leaves the table within delay_loop × (1 + retry) +
//!    timeouts (the time from the kill to its absence in `ipvsadm`, polled, is printed:
//!    the issue's "death → removal" figure).
//! 3. rs2's listener is killed: rs2 stays with weight 0 (inhibit_on_failure), the live
//!    weight (1) is below the quorum (3), so the sorry server becomes the only live
//!    destination (rs3 leaves, keepalived semantics).
//! 4. rs1 is restarted: live weight 3 regains the quorum; rs1 and rs3 are back, the
//!    sorry server leaves. 5. rs2 is restarted: weight 2 again.

#[path = "kernel_ipvs/ipvsadm.rs"]
#[allow(dead_code)]
mod ipvsadm;

use std::io::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use haldir_lab::{vm::in_vm_or_skip, wait_until, Lab, Signal};

const CONFIG: &str = r#"
[[virtual_server]]
ip = "10.20.0.100"
port = 80
lb_kind = "DR"
lb_algo = "wrr"
delay_loop = 1
retry = 1
delay_before_retry = 0.5
connect_timeout = 1
warmup = 0.5
quorum = 3
sorry_server = "10.20.0.250 80"

[[virtual_server.real_server]]
ip = "10.20.0.11"
port = 8080
weight = 2
TCP_CHECK = {}

[[virtual_server.real_server]]
ip = "10.20.0.12"
port = 8080
weight = 2
inhibit_on_failure = true
HTTP_GET = { url = [{ path = "/", status_code = 200 }] }

[[virtual_server.real_server]]
ip = "10.20.0.13"
port = 8080
weight = 1
TCP_CHECK = {}
"#;

/// delay_loop × (1 + retry) + the retry delay + connect timeouts, with room for the
/// emulated VM (fork + exec of ipvsadm costs 0.1–0.5 s there).
const REMOVAL_BOUND: Duration = Duration::from_secs(8);

fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "kernel_health: {text}");
}

/// (last octet of the address, weight) of each destination of 10.20.0.100:80, sorted,
/// from ONE `ipvsadm -Ln` (a race-free snapshot: the table changes while the test polls).
fn dests(ns: &str) -> Vec<(u8, u32)> {
    let listing = ipvsadm::run(Some(ns), &["-Ln"]);
    let mut list = Vec::new();
    let mut in_service = false;
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["TCP", addr, ..] => in_service = *addr == "10.20.0.100:80",
            ["->", addr, _forward, weight, ..] if in_service => {
                let Some(ip) = addr.split(':').next() else {
                    continue;
                };
                let (Ok(ip), Ok(weight)) =
                    (ip.parse::<std::net::Ipv4Addr>(), weight.parse::<u32>())
                else {
                    continue;
                };
                list.push((ip.octets()[3], weight));
            }
            _ => {}
        }
    }
    list.sort();
    list
}

fn listener(lab: &Lab, host: &str, ip: &str) -> u32 {
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "http.server", "8080", "--bind", ip])
        .current_dir("/");
    lab.spawn(host, cmd).expect("start a listener")
}

/// Waits until the service's destinations are `want`; returns how long that took.
fn wait_table(lab: &Lab, ns: &str, haldir: u32, what: &str, want: &[(u8, u32)]) -> Duration {
    let start = Instant::now();
    let ok = wait_until(Duration::from_secs(30), || dests(ns) == want);
    assert!(
        ok,
        "{what}: expected {want:?}, ipvsadm -Ln:\n{}\nhaldir log:\n{}",
        ipvsadm::run(Some(ns), &["-Ln"]),
        lab.log_text(haldir)
    );
    start.elapsed()
}

#[test]
fn checks_remove_inhibit_and_restore_real_servers_and_the_quorum_brings_in_the_sorry_server() {
    if !in_vm_or_skip(
        "kernel_health::checks_remove_inhibit_and_restore_real_servers_and_the_quorum_brings_in_the_sorry_server",
    ) {
        return;
    }
    let lab = Lab::new("kernel-health").unwrap();
    lab.add_host("r1", &["10.20.0.254/24"]).unwrap();
    for (host, ip) in [
        ("rs1", "10.20.0.11/24"),
        ("rs2", "10.20.0.12/24"),
        ("rs3", "10.20.0.13/24"),
    ] {
        lab.add_host(host, &[ip]).unwrap();
    }
    let ns = lab.ns_name("r1");
    let mut rs1 = listener(&lab, "rs1", "10.20.0.11");
    let mut rs2 = listener(&lab, "rs2", "10.20.0.12");
    let _rs3 = listener(&lab, "rs3", "10.20.0.13");

    let config = lab.dir().join("health.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_haldir"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "haldir check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_haldir"));
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .args(["--ipvs-resync", "5"])
        .env("HALDIR_LOG", "info");
    let haldir = lab.spawn("r1", cmd).expect("start haldir");

    // 1. Everything up (the listeners may still be starting: wait for the first rounds).
    let took = wait_table(&lab, &ns, haldir, "all up", &[(11, 2), (12, 2), (13, 1)]);
    say(&format!(
        "all real servers in the table after {:.1} s",
        took.as_secs_f64()
    ));
    std::thread::sleep(Duration::from_secs(2));

    // 2. rs1 dies: removed.
    lab.kill(rs1, Signal::SIGKILL).unwrap();
    let _ = lab.wait_exit(rs1, Duration::from_secs(5));
    let removal = wait_table(&lab, &ns, haldir, "rs1 removed", &[(12, 2), (13, 1)]);
    say(&format!(
        "death → removal from IPVS (TCP_CHECK, delay_loop 1 s, retry 1, delay_before_retry 0.5 s): {:.2} s",
        removal.as_secs_f64()
    ));
    assert!(removal <= REMOVAL_BOUND, "removal took {removal:?}");

    // 3. rs2 dies: weight 0; live weight 1 < quorum 3: the sorry server alone.
    lab.kill(rs2, Signal::SIGKILL).unwrap();
    let _ = lab.wait_exit(rs2, Duration::from_secs(5));
    let sorry = wait_table(&lab, &ns, haldir, "quorum lost", &[(12, 0), (250, 1)]);
    say(&format!(
        "death of rs2 → weight 0 and the sorry server (HTTP_GET, inhibit_on_failure, quorum lost): {:.2} s",
        sorry.as_secs_f64()
    ));
    assert!(sorry <= REMOVAL_BOUND, "quorum loss took {sorry:?}");

    // 4. rs1 back: the quorum is regained, the sorry server leaves.
    rs1 = listener(&lab, "rs1", "10.20.0.11");
    let back = wait_table(
        &lab,
        &ns,
        haldir,
        "quorum regained",
        &[(11, 2), (12, 0), (13, 1)],
    );
    say(&format!(
        "rs1 restarted → quorum regained in {:.2} s",
        back.as_secs_f64()
    ));

    // 5. rs2 back: its weight is restored.
    rs2 = listener(&lab, "rs2", "10.20.0.12");
    wait_table(
        &lab,
        &ns,
        haldir,
        "rs2 restored",
        &[(11, 2), (12, 2), (13, 1)],
    );
    say(&format!(
        "final table:\n{}",
        ipvsadm::run(Some(&ns), &["-Ln"])
    ));
    let _ = (rs1, rs2);

    lab.kill(haldir, Signal::SIGTERM).unwrap();
    let status = lab.wait_exit(haldir, Duration::from_secs(10)).unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "{}",
        lab.log_text(haldir)
    );
}
