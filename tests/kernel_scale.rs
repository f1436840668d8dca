//! IPVS at scale, on the VM's real IPVS (skipped, loudly, outside the VM;
//! `bash tests/vm/run.sh at_scale` runs it): 10,000 virtual servers × 4 real servers
//! (`HALDIR_SCALE_SERVICES` sets another count) from a TOML file, no `vrrp_instance`.
//!
//! 1. `haldir run --ipvs-resync 10` programs the table: `ipvsadm -Sn` lists every service
//!    and destination.
//! 2. Drift made by hand in one `ipvsadm -R` (a changed weight, a deleted service, a
//!    deleted destination) is repaired within two drift-check periods plus 5 s (one
//!    period is the aim), seen from outside with `ipvsadm -Ln -t VIP:80` of the three
//!    services; the repair round applies exactly the 7 operations that undo it. The
//!    period is `--ipvs-resync`, or 100 times the CPU one read of the kernel's table
//!    costs when that is more (haldir logs it; under the VM's software emulation a
//!    read of 10,000 services costs about half a second).
//! 3. A SIGHUP changing one weight is applied with exactly one operation: `ipvsadm -Sn`
//!    before and after differs in that one destination's line, and haldir's round reports
//!    one operation applied.
//! 4. (Printed, not asserted) haldir's CPU over 20 s with nothing changing.

#[path = "kernel_ipvs/daemon.rs"]
#[allow(dead_code)]
mod daemon;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use daemon::{field, Daemon};
use haldir_lab::{vm::in_vm_or_skip, wait_until, Lab, Signal};

const RESYNC_SECS: f64 = 10.0;
const BROUGHT_IN_STEP: &str = "IPVS table brought in step";
const STILL_IN_STEP: &str = "IPVS table still in step";
const REAL_SERVERS: usize = 4;

fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "kernel_scale: {text}");
}

fn service_count() -> usize {
    std::env::var("HALDIR_SCALE_SERVICES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000)
}

/// The address of virtual server `i`.
fn vip(i: usize) -> String {
    format!("10.30.{}.{}", i / 250, i % 250 + 1)
}

/// The address of real server `j` (shared by every virtual server).
fn real_server(j: usize) -> String {
    format!("10.31.0.{}", j + 1)
}

/// `services` virtual servers on port 80, rr, DR, four real servers of weight 1, except
/// the first real server of the first virtual server, of weight `first_weight`.
fn config(services: usize, first_weight: u32) -> String {
    let mut toml = String::from("# kernel_scale: virtual servers only\n");
    for i in 0..services {
        toml.push_str(&format!(
            "\n[[virtual_server]]\nip = \"{}\"\nport = 80\nlb_algo = \"rr\"\nlb_kind = \"DR\"\n",
            vip(i)
        ));
        for j in 0..REAL_SERVERS {
            let weight = if i == 0 && j == 0 { first_weight } else { 1 };
            toml.push_str(&format!(
                "[[virtual_server.real_server]]\nip = \"{}\"\nweight = {weight}\n",
                real_server(j)
            ));
        }
    }
    toml
}

/// `ipvsadm ARGS` in `ns`: (success, stdout).
fn ipvsadm(ns: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ipvsadm"])
        .args(args)
        .output()
        .expect("run ipvsadm");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `ipvsadm -Sn` as a set of lines.
fn saved(ns: &str) -> BTreeSet<String> {
    let (ok, text) = ipvsadm(ns, &["-Sn"]);
    assert!(ok, "ipvsadm -Sn failed");
    text.lines().map(str::to_owned).collect()
}

/// Whether service `vip:80` is listed with its four real servers of weight 1.
fn service_as_configured(ns: &str, vip: &str) -> bool {
    let (ok, text) = ipvsadm(ns, &["-Ln", "-t", &format!("{vip}:80")]);
    if !ok {
        return false;
    }
    (0..REAL_SERVERS).all(|j| {
        text.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() >= 4
                && fields[1] == format!("{}:80", real_server(j))
                && fields[2] == "Route"
                && fields[3] == "1"
        })
    })
}

#[test]
fn at_scale_drift_is_repaired_within_two_resync_periods_and_a_weight_reload_is_one_op() {
    if !in_vm_or_skip(
        "kernel_scale::at_scale_drift_is_repaired_within_two_resync_periods_and_a_weight_reload_is_one_op",
    ) {
        return;
    }
    let services = service_count();
    let lab = Lab::new("kernel-scale").unwrap();
    lab.add_host("r1", &["10.30.255.254/16"]).unwrap();
    let ns = lab.ns_name("r1");
    let config_path = lab.dir().join("scale.toml");
    std::fs::write(&config_path, config(services, 1)).unwrap();
    let resync = Duration::from_secs_f64(RESYNC_SECS);

    // 1. Programmed.
    let started = Instant::now();
    let haldir = Daemon::start(&lab, "r1", &config_path, RESYNC_SECS);
    haldir.wait_for(BROUGHT_IN_STEP, 1, Duration::from_secs(150));
    let programmed_in = started.elapsed();
    let table = saved(&ns);
    let expected_lines = services * (1 + REAL_SERVERS);
    assert_eq!(
        table.len(),
        expected_lines,
        "ipvsadm -Sn lines after the first round"
    );
    say(&format!(
        "{services} services × {REAL_SERVERS} programmed {:.1} s after start",
        programmed_in.as_secs_f64()
    ));

    // 2. Drift by hand: a changed weight, a deleted service, a deleted destination, once a
    //    round has found the table in step (the steady state).
    // The keeper weighs the cost of its last three reads of the kernel's table before
    // it paces its rounds (the first round's read, and one per round since): in the
    // round of the second "still in step" it says whether it paces, just after that line.
    haldir.wait_for(STILL_IN_STEP, 2, Duration::from_secs(240));
    std::thread::sleep(Duration::from_secs(1));
    let resync = haldir.drift_period(resync);
    say(&format!("drift checks every {:.1} s", resync.as_secs_f64()));
    let (edited_vip, deleted_vip, thinned_vip) = (vip(5), vip(6), vip(7));
    let edits = format!(
        "-e -t {edited_vip}:80 -r {}:80 -g -w 7\n-D -t {deleted_vip}:80\n-d -t {thinned_vip}:80 -r {}:80\n",
        real_server(0),
        real_server(1)
    );
    let rounds_before = haldir.count(BROUGHT_IN_STEP);
    daemon::ipvsadm_r(&ns, &edits);
    let edited = Instant::now();
    assert!(!service_as_configured(&ns, &deleted_vip), "the edit landed");
    let repaired = wait_until(resync * 3, || {
        [&edited_vip, &deleted_vip, &thinned_vip]
            .iter()
            .all(|vip| service_as_configured(&ns, vip))
    });
    let repair_time = edited.elapsed();
    assert!(
        repaired,
        "the hand edits were not repaired within {:?}",
        resync * 3
    );
    say(&format!(
        "hand edits repaired {:.2} s after ipvsadm -R (drift checks every {:.1} s)",
        repair_time.as_secs_f64(),
        resync.as_secs_f64()
    ));
    // Issue 16 asks for one period. Bound: two periods plus the repair round's own time,
    // as kernel_daemon's (the edit can land just after a round read the table).
    assert!(
        repair_time <= 2 * resync + Duration::from_secs(5),
        "the repair took {repair_time:?}, more than two resync periods"
    );
    haldir.wait_for(BROUGHT_IN_STEP, rounds_before + 1, resync);
    let applied: u64 = haldir.lines(BROUGHT_IN_STEP)[rounds_before..]
        .iter()
        .map(|line| field(line, "applied"))
        .sum();
    assert_eq!(
        applied, 7,
        "1 weight + 1 service and 4 destinations + 1 destination"
    );

    // 3. A reload changing one weight: one operation, one changed line in the kernel.
    let before = saved(&ns);
    let rounds_before = haldir.count(BROUGHT_IN_STEP);
    let reloads_before = haldir.count("reloaded");
    std::fs::write(&config_path, config(services, 3)).unwrap();
    let sent = Instant::now();
    lab.kill(haldir.pid, Signal::SIGHUP).unwrap();
    let first = format!("-a -t {}:80 -r {}:80 -g -w 3", vip(0), real_server(0));
    let applied_in_kernel = wait_until(Duration::from_secs(60), || {
        ipvsadm(&ns, &["-Ln", "-t", &format!("{}:80", vip(0))])
            .1
            .lines()
            .any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.len() >= 4
                    && fields[1] == format!("{}:80", real_server(0))
                    && fields[3] == "3"
            })
    });
    let reload_time = sent.elapsed();
    assert!(applied_in_kernel, "the new weight never reached the kernel");
    haldir.wait_for("reloaded", reloads_before + 1, Duration::from_secs(10));
    haldir.wait_for(BROUGHT_IN_STEP, rounds_before + 1, Duration::from_secs(10));
    let round = &haldir.lines(BROUGHT_IN_STEP)[rounds_before];
    let after = saved(&ns);
    let gone: Vec<&String> = before.difference(&after).collect();
    let new: Vec<&String> = after.difference(&before).collect();
    say(&format!(
        "one-weight reload in the kernel {:.3} s after SIGHUP; -Sn lines gone {gone:?}, new {new:?}",
        reload_time.as_secs_f64()
    ));
    assert_eq!(new, [&first], "the only new line in ipvsadm -Sn");
    assert_eq!(gone.len(), 1, "the only line gone: {gone:?}");
    assert_eq!(field(round, "applied"), 1, "one operation: {round}");
    assert_eq!(field(round, "failed"), 0, "{round}");

    // 4. A figure for the report (not asserted: the VM's share of a core swings): haldir's
    //    CPU over 20 s with nothing changing.
    let cpu_before = cpu_seconds(haldir.pid);
    std::thread::sleep(STEADY);
    let steady = (cpu_seconds(haldir.pid) - cpu_before) / STEADY.as_secs_f64();
    say(&format!(
        "steady CPU over {STEADY:?} with nothing changing: {:.1} % of a core",
        steady * 100.0
    ));

    haldir.stop();
    haldir.assert_no_complaints();
}

/// How long the steady-state CPU is measured.
const STEADY: Duration = Duration::from_secs(20);

/// The CPU seconds (user + system) process `pid` has used, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    let after_name = &stat[stat.rfind(')').expect("a stat line") + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of proc(5), utime and stime, in clock ticks.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64 / per_second as f64
}
