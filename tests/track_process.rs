//! `track_process` between two haldir on a lab bridge, written in keepalived.conf syntax as
//! a keepalived user has it (keepalived.conf(5), "VRRP track processes"). The tracked
//! process is a copy of `sleep` under a name of the test's own (so no other process on the
//! machine matches), started and killed by the test:
//!
//! * by process name with weight -60: while it runs r1 (150) is master; killed, r1 drops
//!   to 90 and the peer (100) takes over; started again, r1 preempts back;
//! * by command line (`full_command`, its parameters matched exactly) with weight 0 and a
//!   `terminate_delay`: killed, r1 stays master within the delay, then goes to FAULT and
//!   the peer takes over; a process with other parameters does not count; started again, r1 leaves FAULT.
//!
//! Needs root (namespaces); skipped loudly otherwise.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use haldir_lab::{pair, skip_unless_root, Haldir, HaldirInstance, Lab};

const VIP: &str = "10.0.0.100";
const VIP_CIDR: &str = "10.0.0.100/24";
const FAST: Duration = Duration::from_millis(100);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

/// A copy of `sleep` named `name` in the lab's directory (its process name is `name`).
fn program(lab: &Lab, name: &str) -> PathBuf {
    assert!(name.len() <= 15, "a process name keeps 15 characters");
    let path = lab.dir().join(name);
    haldir_lab::place_copy(Path::new("/bin/sleep"), &path).unwrap();
    path
}

/// A running tracked process, killed when dropped (also when the test fails).
struct Running(Child);

impl Running {
    fn start(program: &Path, args: &[&str]) -> Running {
        Running(
            Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A name no other process has: the test's, this process's id and a tag.
fn unique_name(tag: &str) -> String {
    format!("hd{tag}{}", std::process::id() % 1_000_000)
}

/// r1's keepalived.conf: priority 150, tracking the block `process_block`.
fn tracking_config(process_block: &str) -> String {
    format!(
        "vrrp_track_process app {{
{process_block}
}}

vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    version 3
    virtual_router_id 51
    priority 150
    advert_int 0.1
    virtual_ipaddress {{
        {VIP_CIDR}
    }}
    track_process {{
        app
    }}
}}
"
    )
}

fn start_pair<'l>(lab: &'l Lab, r1_config: &str) -> (Haldir<'l>, Haldir<'l>) {
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
    let r1 = Haldir::start_with_config(lab, "r1", binary(), r1_config).unwrap();
    let r2 = Haldir::start_with_config(
        lab,
        "r2",
        binary(),
        &HaldirInstance::v3(51, 100, FAST, &[VIP_CIDR]).render(),
    )
    .unwrap();
    (r1, r2)
}

#[test]
fn a_tracked_process_by_name_moves_priority_by_its_weight() {
    if skip_unless_root("a_tracked_process_by_name_moves_priority_by_its_weight") {
        return;
    }
    let lab = Lab::new("trackproc-weight").unwrap();
    let name = unique_name("w");
    let program = program(&lab, &name);
    let mut running = Some(Running::start(&program, &["1000"]));
    let config = tracking_config(&format!("    process {name}\n    weight -60"));
    let (r1, r2) = start_pair(&lab, &config);
    pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "start, the process running",
        ("MASTER", "BACKUP"),
        &["r1"],
    );

    drop(running.take());
    let took = pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "process killed: 150 - 60 < 100",
        ("BACKUP", "MASTER"),
        &["r2"],
    );
    eprintln!(
        "track_process: process killed → peer master in {:.0} ms",
        took.as_secs_f64() * 1000.0
    );
    let status = r1.status().unwrap();
    assert_eq!(status["instances"][0]["priority"], 90, "{status}");

    // Another process whose name only starts like it does not count (no pattern match).
    let longer = lab.dir().join(format!("{name}x"));
    haldir_lab::place_copy(Path::new("/bin/sleep"), &longer).unwrap();
    let _longer = Running::start(&longer, &["1000"]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        r1.status().unwrap()["instances"][0]["state"],
        "BACKUP",
        "a process named {name}x is not {name}"
    );

    let _again = Running::start(&program, &["1000"]);
    let took = pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "process running again: priority 150",
        ("MASTER", "BACKUP"),
        &["r1"],
    );
    eprintln!(
        "track_process: process started → master again in {:.0} ms",
        took.as_secs_f64() * 1000.0
    );
    let log = r1.log();
    assert!(
        log.contains("tracked process quorum lost")
            && log.contains("tracked process quorum gained"),
        "the changes are logged:\n{log}"
    );
}

#[test]
fn a_lost_command_line_of_weight_zero_faults_after_its_terminate_delay() {
    if skip_unless_root("a_lost_command_line_of_weight_zero_faults_after_its_terminate_delay") {
        return;
    }
    let lab = Lab::new("trackproc-fault").unwrap();
    let name = unique_name("f");
    let program = program(&lab, &name);
    let mut running = Some(Running::start(&program, &["1000", "2000"]));
    let config = tracking_config(&format!(
        "    process {} 1000 2000\n    full_command\n    terminate_delay 1",
        program.display()
    ));
    let (r1, r2) = start_pair(&lab, &config);
    pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "start, the command running",
        ("MASTER", "BACKUP"),
        &["r1"],
    );

    // The same program with other parameters is not the command tracked.
    let _other = Running::start(&program, &["1000"]);
    drop(running.take());
    // Within the delay the instance stays master (the scan has seen the loss by then).
    std::thread::sleep(Duration::from_millis(500));
    let status = r1.status().unwrap();
    assert_eq!(
        status["instances"][0]["state"], "MASTER",
        "half the terminate_delay after the kill: {status}"
    );
    let took = pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "command killed, weight 0: FAULT after terminate_delay",
        ("FAULT", "MASTER"),
        &["r2"],
    );
    eprintln!(
        "track_process weight 0: command killed → FAULT, peer master {:.0} ms after the check at 500 ms (terminate_delay 1 s)",
        took.as_secs_f64() * 1000.0
    );

    let _again = Running::start(&program, &["1000", "2000"]);
    pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "command running again: out of FAULT, preempts",
        ("MASTER", "BACKUP"),
        &["r1"],
    );
}
