//! `haldir run` on a keepalived.conf behaves like the equivalent TOML, on the VM's real
//! IPVS (skipped, loudly, outside the VM; `tests/vm/run.sh` runs it). The SAME test body
//! runs three times in one lab, over the three files of one setup:
//!
//! 1. a keepalived.conf (`vrrp_sync_group` of two instances, a DR `virtual_server` whose
//!    two real servers have `HTTP_GET` checks), named `.conf`, detected by content;
//! 2. the equivalent haldir TOML, written by hand;
//! 3. what `haldir convert` prints for the keepalived.conf (it must pass `haldir check`).
//!
//! ```text
//!   r1 10.22.0.1 ──┐         r1: haldir; VI_1 (VIP 10.22.0.100) and VI_2 (VIP 10.22.0.101)
//!   rs1 10.22.0.11 ┼── br0       in sync group G1; IPVS TCP 10.22.0.100:80 rr -> rs1, rs2 (DR)
//!   rs2 10.22.0.12 ┘         rs1/rs2: python3 -m http.server on port 80
//! ```
//!
//! A second virtual server, 10.22.0.101:80, schedules with `mh` and the flags
//! `mh-port` and `mh-fallback` (keepalived.conf's bare keywords, TOML's `scheduler_flags`).
//!
//! Each run, from outside: both group members MASTER and both VIPs on r1; `ipvsadm` shows
//! both real servers, and the mh service with both flags; rs2's listener stopped → rs2
//! leaves the rr table (its HTTP_GET fails) and stays in the mh table with weight 0 (the
//! Maglev table keeps its slots); restarted → it is back. The full `ipvsadm` tables (parsed by `kernel_ipvs/ipvsadm.rs`)
//! of the three runs, all up and with rs2 down, are equal.

#[path = "kernel_ipvs/ipvsadm.rs"]
#[allow(dead_code)]
mod ipvsadm;

#[path = "kernel_ipvs/dr_lab.rs"]
#[allow(dead_code)]
mod dr_lab;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use haldir_ipvs::model::Table;
use haldir_lab::{vm::in_vm_or_skip, wait_until, Lab, Signal};

const VIP: &str = "10.22.0.100";
const SERVICE: &str = "10.22.0.100:80";
/// The `mh` service with `mh-port` and `mh-fallback`.
const MH_SERVICE: &str = "10.22.0.101:80";

const KEEPALIVED_CONF: &str = r#"! haldir kernel_formats: a sync group and a DR virtual server with HTTP_GET
global_defs {
    router_id r1
}

vrrp_sync_group G1 {
    group {
        VI_1
        VI_2
    }
}

vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 71
    priority 150
    advert_int 1
    virtual_ipaddress {
        10.22.0.100/32
    }
}

vrrp_instance VI_2 {
    state BACKUP
    interface eth0
    virtual_router_id 72
    priority 150
    advert_int 1
    virtual_ipaddress {
        10.22.0.101/32
    }
}

virtual_server 10.22.0.100 80 {
    delay_loop 1
    lb_algo rr
    lb_kind DR
    protocol TCP

    real_server 10.22.0.11 80 {
        weight 1
        HTTP_GET {
            url {
                path /
                status_code 200
            }
            connect_timeout 1
            retry 1
            delay_before_retry 0.5
        }
    }
    real_server 10.22.0.12 80 {
        weight 2
        HTTP_GET {
            url {
                path /
                status_code 200
            }
            connect_timeout 1
            retry 1
            delay_before_retry 0.5
        }
    }
}

virtual_server 10.22.0.101 80 {
    delay_loop 1
    lvs_sched mh
    mh-port
    mh-fallback
    lb_kind DR
    protocol TCP

    real_server 10.22.0.11 80 {
        weight 1
        HTTP_GET {
            url {
                path /
                status_code 200
            }
            connect_timeout 1
            retry 1
            delay_before_retry 0.5
        }
    }
    real_server 10.22.0.12 80 {
        weight 2
        HTTP_GET {
            url {
                path /
                status_code 200
            }
            connect_timeout 1
            retry 1
            delay_before_retry 0.5
        }
    }
}
"#;

const TOML: &str = r#"# haldir kernel_formats: the TOML equivalent of the keepalived.conf
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 71
priority = 150
advert_int = 1
virtual_ipaddress = ["10.22.0.100/32"]

[[vrrp_instance]]
name = "VI_2"
interface = "eth0"
virtual_router_id = 72
priority = 150
advert_int = 1
virtual_ipaddress = ["10.22.0.101/32"]

[[vrrp_sync_group]]
name = "G1"
group = ["VI_1", "VI_2"]

[[virtual_server]]
ip = "10.22.0.100"
port = 80
protocol = "TCP"
lb_algo = "rr"
lb_kind = "DR"
delay_loop = 1
retry = 1
delay_before_retry = 0.5
connect_timeout = 1

[[virtual_server.real_server]]
ip = "10.22.0.11"
port = 80
weight = 1
HTTP_GET = { url = [{ path = "/", status_code = 200 }] }

[[virtual_server.real_server]]
ip = "10.22.0.12"
port = 80
weight = 2
HTTP_GET = { url = [{ path = "/", status_code = 200 }] }

[[virtual_server]]
ip = "10.22.0.101"
port = 80
protocol = "TCP"
lb_algo = "mh"
scheduler_flags = ["mh-port", "mh-fallback"]
lb_kind = "DR"
delay_loop = 1
retry = 1
delay_before_retry = 0.5
connect_timeout = 1

[[virtual_server.real_server]]
ip = "10.22.0.11"
port = 80
weight = 1
HTTP_GET = { url = [{ path = "/", status_code = 200 }] }

[[virtual_server.real_server]]
ip = "10.22.0.12"
port = 80
weight = 2
HTTP_GET = { url = [{ path = "/", status_code = 200 }] }
"#;

fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "kernel_formats: {text}");
}

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

fn check(path: &Path) {
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "haldir check {}: {}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The state of every instance, by name, from the status file.
fn states(status_file: &Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(status_file) else {
        return Vec::new();
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    let json = haldir_lab::schema_checked(json);
    let mut list: Vec<(String, String)> = json["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            (
                i["name"].as_str().unwrap_or_default().to_owned(),
                i["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    list.sort();
    list
}

/// What one run showed: the table with both real servers up, then with rs2 down.
struct Observed {
    all_up: Table,
    rs2_down: Table,
}

/// The table as `ipvsadm` reads it once the rr service's destinations are `rr` and the mh
/// service's `mh`, and still are after the read (a health checker starved on a loaded VM
/// may flap a real server between two reads; the snapshot must be of the state the test
/// waited for). `None` when that does not happen within 60 s.
fn settled_table(ns: &str, rr: &[(String, u32)], mh: &[(String, u32)]) -> Option<Table> {
    let settled = || dr_lab::dests(ns, SERVICE) == rr && dr_lab::dests(ns, MH_SERVICE) == mh;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if !wait_until(deadline.saturating_duration_since(Instant::now()), settled) {
            return None;
        }
        let table = ipvsadm::read_table(Some(ns));
        if settled() {
            return Some(table);
        }
    }
    None
}

/// THE test body, the same for every file: starts `haldir run --config FILE` in r1 over an
/// empty IPVS table, checks the sync group and the table, stops and restarts rs2's
/// listener, stops haldir and clears the table.
fn run_haldir(lab: &Lab, listeners: &mut [u32; 2], what: &str, file: &Path) -> Observed {
    let started = Instant::now();
    let ns = lab.ns_name("r1");
    check(file);
    let status_file = lab.dir().join(format!("{what}.status.json"));
    let mut cmd = Command::new(binary());
    cmd.arg("run")
        .arg("--config")
        .arg(file)
        .arg("--status-file")
        .arg(&status_file)
        .arg("--control-socket")
        .arg(lab.dir().join(format!("{what}.sock")))
        .args(["--ipvs-resync", "1"])
        .env("HALDIR_LOG", "info");
    let pid = lab.spawn("r1", cmd).unwrap();
    let log = || lab.log_text(pid);

    // The sync group: both members MASTER (alone on the link), both VIPs held.
    let masters = vec![
        ("VI_1".to_owned(), "MASTER".to_owned()),
        ("VI_2".to_owned(), "MASTER".to_owned()),
    ];
    assert!(
        wait_until(Duration::from_secs(60), || states(&status_file) == masters),
        "{what}: states {:?}\n{}",
        states(&status_file),
        log()
    );
    for vip in [VIP, "10.22.0.101"] {
        assert!(lab.has_address("r1", vip), "{what}: {vip} not on r1");
    }

    // Both real servers up (HTTP_GET passes).
    let up = vec![
        ("10.22.0.11:80".to_owned(), 1),
        ("10.22.0.12:80".to_owned(), 2),
    ];
    let all_up = settled_table(&ns, &up, &up).unwrap_or_else(|| {
        panic!(
            "{what}: not all up:\n{}\n{}",
            ipvsadm::run(Some(&ns), &["-Ln"]),
            log()
        )
    });
    let to_up = started.elapsed();
    let listing = ipvsadm::run(Some(&ns), &["-Ln", "-t", MH_SERVICE]);
    assert!(
        listing.contains("mh (mh-fallback,mh-port)")
            || listing.contains("mh (mh-port,mh-fallback)"),
        "{what}: the mh service lacks its flags in the kernel:\n{listing}"
    );

    // rs2's listener stops: its HTTP_GET fails, it leaves the rr table and is quiesced in
    // the mh one; back when restarted.
    dr_lab::stop_listener(lab, listeners[1]);
    let t = Instant::now();
    assert!(
        wait_until(Duration::from_secs(60), || dr_lab::dests(&ns, SERVICE)
            == up[..1]),
        "{what}: rs2 not removed:\n{}\n{}",
        ipvsadm::run(Some(&ns), &["-Ln"]),
        log()
    );
    let removal = t.elapsed();
    // The mh service keeps rs2, quiesced: its Maglev slots stay where they were.
    let quiesced = vec![
        ("10.22.0.11:80".to_owned(), 1),
        ("10.22.0.12:80".to_owned(), 0),
    ];
    assert!(
        wait_until(Duration::from_secs(60), || dr_lab::dests(&ns, MH_SERVICE)
            == quiesced),
        "{what}: rs2 not quiesced in the mh service:\n{}\n{}",
        ipvsadm::run(Some(&ns), &["-Ln"]),
        log()
    );
    let rs2_down = settled_table(&ns, &up[..1], &quiesced).unwrap_or_else(|| {
        panic!(
            "{what}: rs2's removal did not hold:\n{}\n{}",
            ipvsadm::run(Some(&ns), &["-Ln"]),
            log()
        )
    });
    listeners[1] = dr_lab::start_listener(lab, "rs2", "10.22.0.12");
    let t = Instant::now();
    assert!(
        wait_until(Duration::from_secs(60), || dr_lab::dests(&ns, SERVICE)
            == up),
        "{what}: rs2 not back:\n{}\n{}",
        ipvsadm::run(Some(&ns), &["-Ln"]),
        log()
    );
    assert!(
        wait_until(Duration::from_secs(60), || dr_lab::dests(&ns, MH_SERVICE)
            == up),
        "{what}: rs2's weight not back in the mh service:\n{}\n{}",
        ipvsadm::run(Some(&ns), &["-Ln"]),
        log()
    );
    let back = t.elapsed();

    lab.kill(pid, Signal::SIGTERM).unwrap();
    let status = lab.wait_exit(pid, Duration::from_secs(15)).unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "{what}: exit {status:?}\n{}",
        log()
    );
    // The next run starts from an empty table (haldir leaves it in place on exit).
    ipvsadm::run(Some(&ns), &["-C"]);
    say(&format!(
        "{what}: both MASTER and all up after {:.1} s; rs2 removed {:.1} s after its listener stopped, back {:.1} s after restart",
        to_up.as_secs_f64(),
        removal.as_secs_f64(),
        back.as_secs_f64()
    ));
    Observed { all_up, rs2_down }
}

#[test]
fn formats_keepalived_conf_toml_and_converted_toml_run_the_same() {
    if !in_vm_or_skip(
        "kernel_formats::formats_keepalived_conf_toml_and_converted_toml_run_the_same",
    ) {
        return;
    }
    let started = Instant::now();
    let lab = Lab::new("kernel-formats").unwrap();
    lab.add_host("r1", &["10.22.0.1/24"]).unwrap();
    dr_lab::add_real_server(&lab, "rs1", "10.22.0.11", VIP);
    dr_lab::add_real_server(&lab, "rs2", "10.22.0.12", VIP);
    let mut listeners = [
        dr_lab::start_listener(&lab, "rs1", "10.22.0.11"),
        dr_lab::start_listener(&lab, "rs2", "10.22.0.12"),
    ];

    let conf: PathBuf = lab.dir().join("keepalived.conf");
    std::fs::write(&conf, KEEPALIVED_CONF).unwrap();
    let toml = lab.dir().join("haldir.toml");
    std::fs::write(&toml, TOML).unwrap();
    let out = Command::new(binary())
        .arg("convert")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "haldir convert: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let converted = lab.dir().join("converted.toml");
    std::fs::write(&converted, &out.stdout).unwrap();

    let runs: Vec<(&str, Observed)> = [
        ("keepalived.conf", &conf),
        ("toml", &toml),
        ("converted", &converted),
    ]
    .into_iter()
    .map(|(what, file)| (what, run_haldir(&lab, &mut listeners, what, file)))
    .collect();

    let (first, reference) = &runs[0];
    for (what, observed) in &runs[1..] {
        assert_eq!(
            observed.all_up, reference.all_up,
            "all up: {what} and {first} programmed different tables"
        );
        assert_eq!(
            observed.rs2_down, reference.rs2_down,
            "rs2 down: {what} and {first} programmed different tables"
        );
    }
    assert_ne!(reference.all_up, reference.rs2_down);
    say(&format!(
        "the three runs programmed the same tables; whole test {:.1} s",
        started.elapsed().as_secs_f64()
    ));
}
