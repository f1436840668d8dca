//! haldir runs as the systemd unit runs it (packaging/haldir.service): an
//! unprivileged user holding only CAP_NET_ADMIN and CAP_NET_RAW (ambient),
//! with no_new_privs; election, release and takeover still work. And the unit
//! file passes `systemd-analyze verify`. Needs root for the lab; skipped
//! loudly otherwise.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use haldir::lab::{self, Haldir, HaldirInstance, Lab, Signal};
use serde_json::Value;

const FAST: Duration = Duration::from_millis(100);
const CAP_NET_ADMIN: u64 = 12;
const CAP_NET_RAW: u64 = 13;

use haldir::lab::skip_unless_root;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

fn unit_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/haldir.service")
}

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("\n!!!!!!!! SKIPPED the_unit_file_passes_systemd_analyze_verify: no systemd-analyze (apt-get install systemd) !!!!!!!!\n");
        return;
    }
    let text = std::fs::read_to_string(unit_file()).unwrap();
    for wanted in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW",
        "WatchdogSec=",
        "NoNewPrivileges=yes",
    ] {
        assert!(text.contains(wanted), "{wanted} missing from the unit");
    }
    // verify checks that ExecStart's program exists: point it at the built binary.
    let dir = std::env::temp_dir().join(format!("haldir-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unit = dir.join("haldir.service");
    std::fs::write(
        &unit,
        text.replace("/usr/sbin/haldir", &binary().display().to_string()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
}

/// A directory the unprivileged haldir can write its status file and control
/// socket into.
struct OpenDir(PathBuf);

impl OpenDir {
    fn new() -> OpenDir {
        let dir = std::env::temp_dir().join(format!("haldir-caps-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        OpenDir(dir)
    }
}

impl Drop for OpenDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Starts haldir in `host` as `nobody` with only CAP_NET_ADMIN + CAP_NET_RAW.
fn start_unprivileged(lab: &Lab, host: &str, dir: &Path, config: &str) -> u32 {
    let config_path = dir.join(format!("{host}.toml"));
    std::fs::write(&config_path, config).unwrap();
    std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--inh-caps=-all,+net_admin,+net_raw",
        "--ambient-caps=-all,+net_admin,+net_raw",
        "--bounding-set=-all,+net_admin,+net_raw",
        "--no-new-privs",
        "--",
    ])
    .arg(binary())
    .arg("run")
    .arg("--config")
    .arg(&config_path)
    .arg("--status-file")
    .arg(dir.join(format!("{host}.json")))
    .arg("--control-socket")
    .arg(dir.join(format!("{host}.sock")))
    .env("HALDIR_LOG", "info");
    lab.spawn(host, cmd).unwrap()
}

fn state(dir: &Path, host: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(format!("{host}.json"))).ok()?;
    let status: Value = serde_json::from_str(&text).ok()?;
    status["instances"][0]["state"].as_str().map(str::to_owned)
}

/// A capability set from /proc/PID/status (`CapEff`, `CapBnd`, ...).
fn caps(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap();
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

fn uid(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_owned()
}

#[test]
fn haldir_runs_unprivileged_with_only_net_admin_and_net_raw() {
    if skip_unless_root("haldir_runs_unprivileged_with_only_net_admin_and_net_raw") {
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("\n!!!!!!!! SKIPPED: no setpriv (util-linux) !!!!!!!!\n");
        return;
    }
    let dir = OpenDir::new();
    let lab = Lab::new("cap").unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
    let high = HaldirInstance::v3(51, 150, FAST, &["10.0.0.100/24"]).render();
    let low = HaldirInstance::v3(51, 100, FAST, &["10.0.0.100/24"]);

    let r2 = Haldir::start(&lab, "r2", binary(), &[low]).unwrap();
    assert!(r2.wait_state("MASTER", Duration::from_secs(5)));

    // Election: the unprivileged router preempts the root one and takes the address.
    let r1 = start_unprivileged(&lab, "r1", &dir.0, &high);
    let log = || lab.log_text(r1);
    assert!(
        lab::wait_until(Duration::from_secs(5), || state(&dir.0, "r1").as_deref()
            == Some("MASTER")),
        "{}",
        log()
    );
    assert!(lab::wait_until(Duration::from_secs(2), || lab
        .has_address("r1", "10.0.0.100")));
    assert!(r2.wait_state("BACKUP", Duration::from_secs(2)));
    assert!(!lab.has_address("r2", "10.0.0.100"));

    // It really runs as nobody with exactly the two capabilities.
    let wanted = (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW);
    assert_ne!(uid(r1), "0");
    assert_eq!(caps(r1, "CapEff"), wanted, "{}", log());
    assert_eq!(caps(r1, "CapPrm"), wanted);
    assert_eq!(caps(r1, "CapBnd"), wanted);

    // The control socket works for it too.
    let out = Command::new(binary())
        .args(["status", "--json", "--socket"])
        .arg(dir.0.join("r1.sock"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Graceful stop: it resigns and releases the address; the root router takes over.
    lab.kill(r1, Signal::SIGTERM).unwrap();
    let exit = lab.wait_exit(r1, Duration::from_secs(10)).unwrap();
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}\n{}", log());
    assert!(r2.wait_state("MASTER", Duration::from_secs(2)));
    assert!(!lab.has_address("r1", "10.0.0.100"));
    assert!(lab.has_address("r2", "10.0.0.100"));

    // Failover towards it: as backup, it takes over when the master crashes.
    let low_config = HaldirInstance::v3(51, 90, FAST, &["10.0.0.100/24"]).render();
    let r1 = start_unprivileged(&lab, "r1", &dir.0, &low_config);
    assert!(lab::wait_until(Duration::from_secs(5), || state(
        &dir.0, "r1"
    )
    .as_deref()
        == Some("BACKUP")));
    r2.crash().unwrap();
    assert!(
        lab::wait_until(Duration::from_secs(3), || state(&dir.0, "r1").as_deref()
            == Some("MASTER")),
        "{}",
        lab.log_text(r1)
    );
    assert!(lab::wait_until(Duration::from_secs(2), || lab
        .has_address("r1", "10.0.0.100")));
}
