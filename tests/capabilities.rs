//! haldir runs as the systemd unit runs it (packaging/haldir.service): an
//! unprivileged user holding only CAP_NET_ADMIN and CAP_NET_RAW (ambient),
//! with no_new_privs; election, release and takeover still work. And the unit
//! file passes `systemd-analyze verify`. Started as root, haldir drops to the
//! same two capabilities once up and starts scripts through its launcher
//! (src/privilege.rs). Needs root for the lab; skipped loudly otherwise.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use haldir_lab::{self as lab, Haldir, HaldirInstance, Lab, OpenDir, Signal};
use serde_json::Value;

const FAST: Duration = Duration::from_millis(100);
const CAP_NET_ADMIN: u64 = 12;
const CAP_NET_RAW: u64 = 13;

use haldir_lab::skip_unless_root;

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
        // A rejected file fails `systemctl reload` (kill -HUP would report success).
        "ExecReload=/usr/sbin/haldir reload",
        "LimitNOFILE=",
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
    let status: Value = haldir_lab::schema_checked(serde_json::from_str(&text).ok()?);
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
    let dir = OpenDir::new("caps");
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
    haldir_lab::schema_checked(serde_json::from_slice(&out.stdout).expect("status is JSON"));

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

const CAP_KILL: u64 = 5;
const CAP_SETGID: u64 = 6;
const CAP_SETUID: u64 = 7;

/// A root-owned directory for scripts (0755, under the sticky /tmp, so it passes
/// `enable_script_security`) with an `out` directory the script user writes into.
struct ScriptDir(PathBuf);

impl ScriptDir {
    fn new() -> ScriptDir {
        let dir = std::env::temp_dir().join(format!("haldir-caps-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("out")).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dir.join("out"), std::fs::Permissions::from_mode(0o777)).unwrap();
        ScriptDir(dir)
    }

    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.0.join(name);
        haldir_lab::place_script(&path, body).unwrap();
        path
    }

    fn out(&self) -> PathBuf {
        self.0.join("out")
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.out().join(name)).unwrap_or_default()
    }
}

impl Drop for ScriptDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn nobody() -> u32 {
    let out = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The first child of `pid` (the script launcher of a root haldir).
fn first_child(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn status_field(pid: u32, field: &str) -> String {
    status_field_if_any(pid, field).unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A field of /proc/PID/status, if this kernel shows it.
fn status_field_if_any(pid: u32, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text.lines().find(|l| l.starts_with(&format!("{field}:")))?;
    line.split_whitespace().nth(1).map(str::to_owned)
}

fn root_config(dir: &ScriptDir, priority: u8) -> String {
    let mut instance = HaldirInstance::v3(51, priority, FAST, &["10.0.0.100/24"]);
    instance.extra_lines = vec![
        format!("notify_master = \"{}\"", dir.0.join("master.sh").display()),
        format!("notify_backup = \"{}\"", dir.0.join("backup.sh").display()),
        "track_script = [\"chk\"]".into(),
    ];
    format!(
        "[global_defs]\nscript_user = \"nobody\"\nnotify_timeout = 1\nenable_script_security = true\n\n\
         [[vrrp_script]]\nname = \"chk\"\nscript = \"{}\"\ninterval = 0.1\ntimeout = 1\nweight = -100\n\n{}",
        dir.0.join("chk.sh").display(),
        instance.render()
    )
}

/// Started as root, haldir keeps only CAP_NET_ADMIN + CAP_NET_RAW (nothing inheritable,
/// ambient or in the bounding set beyond them); its script launcher keeps only
/// CAP_SETUID + CAP_SETGID + CAP_KILL. Notify and track scripts still run as the script
/// user and their exit codes still count (a failing track script hands over the VIP), a
/// hanging notify script of another uid is still killed at notify_timeout, and SIGHUP
/// still re-reads a root-owned 0600 configuration. The daemon and its launcher keep out of
/// transparent huge pages (src/memory.rs); the scripts get them back.
#[test]
fn root_haldir_drops_to_net_admin_and_net_raw_and_scripts_still_work() {
    if skip_unless_root("root_haldir_drops_to_net_admin_and_net_raw_and_scripts_still_work") {
        return;
    }
    let dir = ScriptDir::new();
    let out = dir.out().display().to_string();
    dir.script(
        "master.sh",
        &format!("id -u > {out}/master.uid; grep THP_enabled /proc/self/status > {out}/master.thp"),
    );
    // The hanging one: its pid is the sleep's (exec), killed with its group at 1 s.
    dir.script(
        "backup.sh",
        &format!("id -u > {out}/backup.uid; echo $$ > {out}/backup.pid; exec sleep 60"),
    );
    // Fails while out/fail exists.
    dir.script(
        "chk.sh",
        &format!("id -u > {out}/chk.uid; test ! -e {out}/fail"),
    );

    let lab = Lab::new("caprt").unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
    let r2 = Haldir::start(
        &lab,
        "r2",
        binary(),
        &[HaldirInstance::v3(51, 100, FAST, &["10.0.0.100/24"])],
    )
    .unwrap();
    // The test-only fault hook has the daemon ask its launcher for two spawns no script of
    // the configuration needs: /usr/bin/id as root, and an unlisted program as nobody.
    let faults = format!(
        "launcher_spawn:0:/usr/bin/touch:{marker};launcher_spawn:{nobody}:/usr/bin/touch:{marker}",
        marker = dir.out().join("touched").display(),
        nobody = nobody()
    );
    let r1 = Haldir::start_with_env(
        &lab,
        "r1",
        binary(),
        &root_config(&dir, 150),
        &[("HALDIR_TEST_FAULT", faults.as_str())],
    )
    .unwrap();
    let log = || r1.log();
    assert!(r1.wait_state("MASTER", Duration::from_secs(5)), "{}", log());
    assert!(r2.wait_state("BACKUP", Duration::from_secs(2)));

    // The daemon: the dedicated user haldir, exactly the two capabilities everywhere
    // (ambient, as under the systemd unit, so that the nft it runs has them), no_new_privs.
    let pid = r1.pid();
    let wanted = (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW);
    let (haldir_uid, _) = haldir_lab::haldir_user().unwrap();
    assert_eq!(uid(pid), haldir_uid.to_string(), "{}", log());
    assert_ne!(haldir_uid, 0);
    for set in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
        assert_eq!(caps(pid, set), wanted, "{set} of haldir\n{}", log());
    }
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    // Capabilities are per thread: every thread (tokio's blocking pool too) has dropped.
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            uid_line
                .split_whitespace()
                .skip(1)
                .all(|u| u == haldir_uid.to_string()),
            "a thread of haldir: {uid_line}"
        );
        for set in ["CapEff:", "CapPrm:", "CapBnd:"] {
            let line = status.lines().find(|l| l.starts_with(set)).unwrap();
            let value = u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap();
            assert_eq!(value, wanted, "a thread of haldir: {line}");
        }
    }
    // The launcher: only what switching users and killing their scripts needs.
    let launcher = first_child(pid).expect("the script launcher runs");
    let launcher_caps = (1 << CAP_SETUID) | (1 << CAP_SETGID) | (1 << CAP_KILL);
    assert_eq!(uid(launcher), "0");
    assert_eq!(caps(launcher, "CapEff"), launcher_caps);
    assert_eq!(caps(launcher, "CapPrm"), launcher_caps);
    assert_eq!(caps(launcher, "CapBnd"), launcher_caps);
    assert_eq!(caps(launcher, "CapInh"), 0);
    assert_eq!(caps(launcher, "CapAmb"), 0);
    assert_eq!(status_field(launcher, "NoNewPrivs"), "1");
    let thp = status_field_if_any(pid, "THP_enabled");
    match &thp {
        None => eprintln!("SKIP (huge pages only): no THP_enabled in /proc/PID/status here"),
        Some(daemon) => {
            assert_eq!(daemon, "0", "the daemon keeps out of huge pages");
            assert_eq!(status_field(launcher, "THP_enabled"), "0");
        }
    }
    // It refused both spawns the daemon asked for that no script of the file needs, and
    // said so on the daemon's log; the program never ran.
    assert!(
        lab::wait_until(Duration::from_secs(3), || log()
            .matches("haldir script launcher: refused to start \"/usr/bin/touch\"")
            .count()
            == 2),
        "{}",
        log()
    );
    assert!(
        log().contains("uid 0 gid 0 is not a script user"),
        "{}",
        log()
    );
    assert!(
        log().contains("/usr/bin/touch is not a program of the configuration"),
        "{}",
        log()
    );
    assert!(
        !dir.out().join("touched").exists(),
        "the refused program ran"
    );
    // The control socket is still 0600.
    let mode = std::fs::metadata(r1.control_socket())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "control socket mode {mode:o}");

    // Scripts ran as nobody: notify_master and the track script.
    let nobody = nobody().to_string();
    // The notify script writes master.thp after master.uid: waited for too (a CI run on a
    // loaded machine read it empty).
    assert!(
        lab::wait_until(Duration::from_secs(3), || dir.read("master.uid").trim()
            == nobody
            && dir.read("chk.uid").trim() == nobody
            && (thp.is_none() || !dir.read("master.thp").trim().is_empty())),
        "master.uid {:?}, chk.uid {:?}\n{}",
        dir.read("master.uid"),
        dir.read("chk.uid"),
        log()
    );
    if thp.is_some() {
        assert_eq!(
            dir.read("master.thp").trim(),
            "THP_enabled:\t1",
            "a script gets them back"
        );
    }

    // The track script's exit code counts: failing, it lowers r1 below r2, which takes over.
    std::fs::write(dir.out().join("fail"), "").unwrap();
    assert!(r2.wait_state("MASTER", Duration::from_secs(5)), "{}", log());
    assert!(r1.wait_state("BACKUP", Duration::from_secs(2)), "{}", log());
    assert!(lab::wait_until(Duration::from_secs(2), || lab
        .has_address("r2", "10.0.0.100")));
    assert!(!lab.has_address("r1", "10.0.0.100"));
    // notify_backup ran as nobody and hung; the launcher killed it at notify_timeout.
    assert!(
        lab::wait_until(Duration::from_secs(3), || !dir
            .read("backup.pid")
            .trim()
            .is_empty()),
        "{}",
        log()
    );
    assert_eq!(dir.read("backup.uid").trim(), nobody);
    let hung: u32 = dir.read("backup.pid").trim().parse().unwrap();
    assert!(
        lab::wait_until(Duration::from_secs(4), || !Path::new(&format!(
            "/proc/{hung}"
        ))
        .exists()),
        "the hanging notify script {hung} was not killed\n{}",
        log()
    );
    assert!(log().contains("timed out"), "{}", log());

    // Recovery: r1 preempts again.
    std::fs::remove_file(dir.out().join("fail")).unwrap();
    assert!(r1.wait_state("MASTER", Duration::from_secs(5)), "{}", log());

    // A reload reads the file as the user haldir: a root-owned 0600 file is refused (the
    // running configuration stays, and the error names the cause); readable by the
    // group haldir (root:haldir 0640, as docs/deployment.md says) it is applied.
    std::fs::set_permissions(r1.config_path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let meta = std::fs::metadata(r1.config_path()).unwrap();
    assert_eq!((meta.uid(), meta.permissions().mode() & 0o777), (0, 0o600));
    assert!(!r1.reload(&root_config(&dir, 160)).unwrap(), "{}", log());
    assert!(log().contains("Permission denied"), "{}", log());
    let (_, haldir_gid) = haldir_lab::haldir_user().unwrap();
    std::os::unix::fs::chown(r1.config_path(), Some(0), Some(haldir_gid)).unwrap();
    std::fs::set_permissions(r1.config_path(), std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(r1.reload(&root_config(&dir, 170)).unwrap(), "{}", log());
    assert!(
        lab::wait_until(Duration::from_secs(3), || r1
            .status()
            .and_then(|s| s["instances"][0]["priority"].as_u64())
            == Some(170)),
        "{}",
        log()
    );
    assert_eq!(
        caps(pid, "CapEff"),
        wanted,
        "still dropped after the reload"
    );

    // Graceful stop: the launcher goes with the daemon.
    let exit = r1.stop().unwrap();
    assert!(exit.success(), "{exit:?}\n{}", log());
    assert!(
        lab::wait_until(Duration::from_secs(3), || !Path::new(&format!(
            "/proc/{launcher}"
        ))
        .exists()
            || status_field(launcher, "State").starts_with('Z')),
        "the script launcher outlived haldir"
    );
}

/// A reload re-reads the configuration as the user haldir: started as root on a file only
/// root can read, haldir says at the start that a reload would fail, whether or not it has
/// virtual servers (with them, the warning waits for the start's IPVS table or its
/// failure: src/daemon.rs `warn_if_reload_unreadable`), and runs on.
#[test]
fn root_haldir_warns_at_the_start_when_its_user_cannot_read_the_configuration() {
    if skip_unless_root(
        "root_haldir_warns_at_the_start_when_its_user_cannot_read_the_configuration",
    ) {
        return;
    }
    let lab = Lab::new("capunread").unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
    let vrrp_only = HaldirInstance::v3(51, 150, FAST, &["10.0.0.100/24"]).render();
    let with_virtual_server = format!(
        "{}\n[[virtual_server]]\nip = \"10.0.0.101\"\nport = 80\nlb_kind = \"DR\"\nlb_algo = \"rr\"\n\n[[virtual_server.real_server]]\nip = \"10.0.1.1\"\nport = 80\n",
        HaldirInstance::v3(52, 150, FAST, &["10.0.0.101/24"]).render()
    );
    for (host, config) in [("r1", vrrp_only), ("r2", with_virtual_server)] {
        // The lab writes the configuration over this file, which keeps its owner and mode.
        let path = lab.dir().join(format!("{host}-haldir.toml"));
        std::fs::write(&path, "").unwrap();
        std::os::unix::fs::chown(&path, Some(0), Some(0)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let haldir = Haldir::start_with_config(&lab, host, binary(), &config).unwrap();
        let meta = std::fs::metadata(haldir.config_path()).unwrap();
        assert_eq!((meta.uid(), meta.permissions().mode() & 0o777), (0, 0o600));
        assert!(
            lab::wait_until(Duration::from_secs(15), || haldir
                .log()
                .contains("haldir cannot read its configuration again")),
            "{host}: no warning that a reload would fail\n{}",
            haldir.log()
        );
        assert!(
            haldir.log().contains("Permission denied"),
            "{}",
            haldir.log()
        );
        assert!(haldir.is_running());
        assert!(haldir.stop().unwrap().success());
    }
}
