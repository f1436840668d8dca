//! `track_script` between two haldir on a lab bridge (keepalived semantics, issue 4):
//!
//! * with a negative weight, a failing script lowers the master's priority below the
//!   backup's, so the backup preempts and takes the VIP; when the script recovers, the
//!   master's priority is back and it preempts again;
//! * with weight 0, a failing script puts the instance in FAULT: it releases its VIP and
//!   the peer takes over; recovery leaves FAULT.
//!
//! The script is the real `test -e FLAG` (the first test, no shell), or the shell line
//! `<FLAG` (the second: a redirection, run with `/bin/sh -c` as keepalived's `system()`
//! would), run by haldir as the unprivileged default user; the test flips the flag file. Needs root (namespaces); skipped loudly otherwise.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use haldir_lab::{pair, Haldir, HaldirInstance, Lab};

const VIP: &str = "10.0.0.100";
const VIP_CIDR: &str = "10.0.0.100/24";
const FAST: Duration = Duration::from_millis(100);

use haldir_lab::skip_unless_root;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

/// A directory the unprivileged script user can look into, with the flag file in it.
struct Flag {
    dir: PathBuf,
    path: PathBuf,
}

impl Flag {
    fn new(tag: &str) -> Flag {
        let dir = std::env::temp_dir().join(format!("haldir-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.join("ok");
        std::fs::write(&path, "").unwrap();
        Flag { dir, path }
    }

    fn set(&self, ok: bool) {
        if ok {
            std::fs::write(&self.path, "").unwrap();
        } else {
            std::fs::remove_file(&self.path).unwrap();
        }
    }
}

impl Drop for Flag {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How the script tests the flag: the program `test -e FLAG`, or the shell line `<FLAG`
/// (a redirection, which keepalived and haldir run with `/bin/sh -c`).
#[derive(Clone, Copy)]
enum Form {
    Program,
    ShellLine,
}

fn config(instance: HaldirInstance, script: Option<(&Flag, i32, Form)>) -> String {
    let mut text = String::new();
    let mut instance = instance;
    if let Some((flag, weight, form)) = script {
        let line = match form {
            Form::Program => format!("test -e {}", flag.path.display()),
            Form::ShellLine => format!("<{}", flag.path.display()),
        };
        text.push_str(&format!(
            "[[vrrp_script]]\nname = \"chk\"\nscript = \"{line}\"\ninterval = 0.1\ntimeout = 1\nweight = {weight}\n\n"
        ));
        instance.extra_lines.push("track_script = [\"chk\"]".into());
    }
    text.push_str(&instance.render());
    text
}

fn lab(tag: &str) -> Lab {
    let lab = Lab::new(tag).unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
    lab
}

#[test]
fn a_failing_track_script_lowers_the_priority_so_the_peer_takes_over() {
    if skip_unless_root("a_failing_track_script_lowers_the_priority_so_the_peer_takes_over") {
        return;
    }
    let lab = lab("track-weight");
    let flag = Flag::new("track-weight");
    let r1 = Haldir::start_with_config(
        &lab,
        "r1",
        binary(),
        &config(
            HaldirInstance::v3(51, 150, FAST, &[VIP_CIDR]),
            Some((&flag, -60, Form::Program)),
        ),
    )
    .unwrap();
    let r2 = Haldir::start_with_config(
        &lab,
        "r2",
        binary(),
        &config(HaldirInstance::v3(51, 100, FAST, &[VIP_CIDR]), None),
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

    flag.set(false);
    let took = pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "script failing: 150 - 60 < 100",
        ("BACKUP", "MASTER"),
        &["r2"],
    );
    eprintln!(
        "track_script: failing script → peer master in {:.0} ms",
        took.as_secs_f64() * 1000.0
    );
    let status = r1.status().unwrap();
    assert_eq!(status["instances"][0]["priority"], 90, "{status}");

    flag.set(true);
    let took = pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "script OK again",
        ("MASTER", "BACKUP"),
        &["r1"],
    );
    eprintln!(
        "track_script: recovered script → master again in {:.0} ms",
        took.as_secs_f64() * 1000.0
    );
    assert!(r1
        .log()
        .contains("tracked scripts, files or processes changed the instance's standing"));
}

#[test]
fn a_failing_track_script_of_weight_zero_puts_the_instance_in_fault() {
    if skip_unless_root("a_failing_track_script_of_weight_zero_puts_the_instance_in_fault") {
        return;
    }
    let lab = lab("track-fault");
    let flag = Flag::new("track-fault");
    let r1 = Haldir::start_with_config(
        &lab,
        "r1",
        binary(),
        &config(
            HaldirInstance::v3(51, 150, FAST, &[VIP_CIDR]),
            Some((&flag, 0, Form::ShellLine)),
        ),
    )
    .unwrap();
    let r2 = Haldir::start_with_config(
        &lab,
        "r2",
        binary(),
        &config(HaldirInstance::v3(51, 100, FAST, &[VIP_CIDR]), None),
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

    flag.set(false);
    let took = pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "weight 0 script failing: FAULT",
        ("FAULT", "MASTER"),
        &["r2"],
    );
    eprintln!(
        "track_script weight 0: failing script → FAULT, peer master in {:.0} ms",
        took.as_secs_f64() * 1000.0
    );

    flag.set(true);
    pair::wait_for_roles(
        &lab,
        (&r1, &r2),
        VIP,
        "script OK again: out of FAULT, preempts",
        ("MASTER", "BACKUP"),
        &["r1"],
    );
}
