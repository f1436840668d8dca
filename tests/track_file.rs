//! `track_file` between two haldir on a lab bridge, written in keepalived.conf syntax as
//! a keepalived user has it (keepalived.conf(5), "Track files"):
//!
//! * `init_file 0 overwrite` writes the file at start; a value written into it, times the
//!   weight (-1), lowers the master's priority below the backup's, so the backup preempts
//!   and takes the VIP; writing 0 again gives the master its priority back and it
//!   preempts again;
//! * with weight 0 a non-zero value puts the instance in FAULT (it releases the VIP and the
//!   peer takes over); a value of 0 leaves FAULT.
//!
//! Needs root (namespaces); skipped loudly otherwise.

use std::path::{Path, PathBuf};
use std::time::Duration;

use haldir_lab::{pair, skip_unless_root, Haldir, HaldirInstance, Lab};

const VIP: &str = "10.0.0.100";
const VIP_CIDR: &str = "10.0.0.100/24";
const FAST: Duration = Duration::from_millis(100);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

/// r1's keepalived.conf: priority 150, tracking `file` with `weight`.
fn tracking_config(file: &Path, weight: i32) -> String {
    format!(
        "track_file load {{
    file \"{}\"
    weight {weight}
    init_file 0 overwrite
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
    track_file {{
        load
    }}
}}
",
        file.display()
    )
}

/// A lab of two routers and the path of the file r1 tracks, holding 77.
fn start(tag: &str) -> (Lab, PathBuf) {
    let lab = Lab::new(tag).unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
    let file = lab.dir().join("load");
    // init_file ... overwrite must replace what is there: a file haldir (its user, once
    // started as root) may write, as docs/deployment.md asks of a file it initialises.
    std::fs::write(&file, "77\n").unwrap();
    let (uid, gid) = haldir_lab::haldir_user().unwrap();
    std::os::unix::fs::chown(&file, Some(uid), Some(gid)).unwrap();
    (lab, file)
}

fn set(file: &Path, value: &str) {
    // Written whole and renamed into place, as a careful writer would; the poll reads
    // the new file either way.
    let next = file.with_extension("next");
    std::fs::write(&next, value).unwrap();
    std::fs::rename(&next, file).unwrap();
}

#[test]
fn a_track_file_value_times_its_weight_hands_mastership_over() {
    if skip_unless_root("a_track_file_value_times_its_weight_hands_mastership_over") {
        return;
    }
    let (lab, file) = start("trackfile-weight");
    let r1 = Haldir::start_with_config(&lab, "r1", binary(), &tracking_config(&file, -1)).unwrap();
    let r2 = Haldir::start_with_config(
        &lab,
        "r2",
        binary(),
        &HaldirInstance::v3(51, 100, FAST, &[VIP_CIDR]).render(),
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        "0",
        "init_file 0 overwrite replaces the 77 that was there"
    );
    pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "start",
        ("MASTER", "BACKUP"),
        &["r1"],
    );

    set(&file, "60\n");
    let took = pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "file 60 x weight -1: 150 - 60 < 100",
        ("BACKUP", "MASTER"),
        &["r2"],
    );
    eprintln!(
        "track_file: value 60 → peer master in {:.0} ms",
        took.as_secs_f64() * 1000.0
    );
    let status = r1.status().unwrap();
    assert_eq!(status["instances"][0]["priority"], 90, "{status}");

    set(&file, "0");
    let took = pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "file 0: priority 150 again",
        ("MASTER", "BACKUP"),
        &["r1"],
    );
    eprintln!(
        "track_file: value 0 → master again in {:.0} ms",
        took.as_secs_f64() * 1000.0
    );
    let log = r1.log();
    assert!(
        log.contains("tracked file changed"),
        "the change is logged:\n{log}"
    );
}

#[test]
fn a_non_zero_track_file_of_weight_zero_puts_the_instance_in_fault() {
    if skip_unless_root("a_non_zero_track_file_of_weight_zero_puts_the_instance_in_fault") {
        return;
    }
    let (lab, file) = start("trackfile-fault");
    let r1 = Haldir::start_with_config(&lab, "r1", binary(), &tracking_config(&file, 0)).unwrap();
    let r2 = Haldir::start_with_config(
        &lab,
        "r2",
        binary(),
        &HaldirInstance::v3(51, 100, FAST, &[VIP_CIDR]).render(),
    )
    .unwrap();
    pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "start",
        ("MASTER", "BACKUP"),
        &["r1"],
    );

    set(&file, "1\n");
    let took = pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "weight 0, value 1: FAULT",
        ("FAULT", "MASTER"),
        &["r2"],
    );
    eprintln!(
        "track_file weight 0: value 1 → FAULT, peer master in {:.0} ms",
        took.as_secs_f64() * 1000.0
    );

    set(&file, "0\n");
    pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "value 0: out of FAULT, preempts",
        ("MASTER", "BACKUP"),
        &["r1"],
    );
}
