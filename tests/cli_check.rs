//! `haldir check --config FILE`: pure parsing and validation. Exit 0 on a valid file; exit 1
//! on a broken one, printing every error as `file:line:col: message`. It touches nothing:
//! no files are created or changed, and it needs no privileges (when the suite runs as
//! root, each check is also run as `nobody`). No namespaces are involved.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::SystemTime;

const VALID: &str = r#"# a valid pair member: IPv4 over VRRPv3 and IPv6
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
version = 3
virtual_router_id = 51
priority = 150
advert_int = 0.05
virtual_ipaddress = ["10.0.0.100/24", "10.0.0.101"]

[[vrrp_instance]]
name = "VI_6"
interface = "eth0"
virtual_router_id = 51
priority = 150
virtual_ipaddress = ["fd00::100/64"]
"#;

/// Four mistakes, at known places: priority out of range (6:12), an unknown key (7:1), a
/// malformed virtual address (8:22), and an instance without `interface` (reported at its
/// table header, 10:1).
const BROKEN: &str = r#"# haldir configuration with four mistakes
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
priority = 300
advert_intt = 1
virtual_ipaddress = ["10.0.0.300/24"]

[[vrrp_instance]]
name = "VI_2"
virtual_router_id = 52
priority = 100
virtual_ipaddress = ["10.0.1.100/24"]
"#;

/// A scratch directory, world-readable so `nobody` can read the configs; removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "haldir-cli-{}-{}-{tag}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        path
    }

    /// Every entry with its size and modification time.
    fn snapshot(&self) -> BTreeMap<String, (u64, SystemTime)> {
        std::fs::read_dir(&self.0)
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let meta = entry.metadata().unwrap();
                (
                    entry.file_name().to_string_lossy().into_owned(),
                    (meta.len(), meta.modified().unwrap()),
                )
            })
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `haldir check --config CONFIG`, run in `cwd`: as the current user, and additionally as
/// `nobody` (uid/gid 65534, no groups) when we are root. Both must behave identically; the
/// unprivileged output is returned when there is one.
fn check(cwd: &Path, config: &Path) -> Output {
    let binary = env!("CARGO_BIN_EXE_haldir");
    let run = |mut cmd: Command| -> Output {
        cmd.current_dir(cwd)
            .env_remove("HALDIR_LOG")
            .output()
            .expect("cannot run haldir")
    };
    let mut own = Command::new(binary);
    own.arg("check").arg("--config").arg(config);
    let own = run(own);
    if !is_root() {
        return own;
    }
    let mut nobody = Command::new("setpriv");
    nobody
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", binary])
        .arg("check")
        .arg("--config")
        .arg(config);
    let nobody = run(nobody);
    assert_eq!(
        (nobody.status.code(), &nobody.stdout, &nobody.stderr),
        (own.status.code(), &own.stdout, &own.stderr),
        "`haldir check` as nobody differs from as root:\nnobody stderr:\n{}",
        String::from_utf8_lossy(&nobody.stderr)
    );
    nobody
}

#[test]
fn check_accepts_a_valid_file_with_exit_0_and_changes_nothing() {
    let scratch = Scratch::new("valid");
    let config = scratch.write("haldir.toml", VALID);
    let before = scratch.snapshot();
    let output = check(&scratch.0, &config);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.trim(),
        format!("{}: valid (2 vrrp_instances)", config.display())
    );
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        scratch.snapshot(),
        before,
        "`haldir check` created or changed files"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), VALID);
}

#[test]
fn check_reports_every_error_of_a_broken_file_at_its_line_and_column_with_exit_1() {
    let scratch = Scratch::new("broken");
    let config = scratch.write("broken.toml", BROKEN);
    let before = scratch.snapshot();
    let output = check(&scratch.0, &config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        output.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );

    let file = config.display().to_string();
    let lines: Vec<&str> = stderr.lines().collect();
    // (position, words the message must contain), in file order.
    let expected: [(&str, &[&str]); 4] = [
        ("6:12", &["priority = 300", "1..=255"]),
        (
            "7:1",
            &["unknown key `advert_intt`", "did you mean `advert_int`"],
        ),
        ("8:22", &["\"10.0.0.300/24\"", "not an IP address"]),
        ("10:1", &["\"VI_2\"", "missing `interface`"]),
    ];
    assert_eq!(
        lines.len(),
        expected.len(),
        "expected exactly {} errors, got:\n{stderr}",
        expected.len()
    );
    for (line, (position, words)) in lines.iter().zip(expected) {
        let prefix = format!("{file}:{position}: ");
        assert!(
            line.starts_with(&prefix),
            "expected an error at {prefix:?}, got {line:?}\nall errors:\n{stderr}"
        );
        for word in words {
            assert!(line.contains(word), "{line:?} does not mention {word:?}");
        }
    }
    assert_eq!(
        scratch.snapshot(),
        before,
        "`haldir check` created or changed files"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), BROKEN);
}

#[test]
fn check_of_a_missing_file_exits_1_naming_the_file() {
    let scratch = Scratch::new("missing");
    let config = scratch.0.join("absent.toml");
    let output = check(&scratch.0, &config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.starts_with(&format!("{}: cannot read", config.display())),
        "{stderr}"
    );
    assert!(!config.exists(), "`haldir check` created the missing file");
    assert!(scratch.snapshot().is_empty());
}

/// A keepalived.conf as a distribution installs it: mail settings haldir accepts without
/// acting on them (issue 13).
const WITH_MAIL: &str = "global_defs {\n    notification_email {\n        ops@example.com\n    }\n    smtp_server 127.0.0.1\n}\nvrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    priority 100\n    smtp_alert\n    virtual_ipaddress {\n        10.0.0.100/24\n    }\n}\n";

#[test]
fn check_prints_one_warning_per_no_effect_keyword_and_strict_rejects_the_file() {
    let scratch = Scratch::new("warnings");
    let config = scratch.write("keepalived.conf", WITH_MAIL);
    let output = check(&scratch.0, &config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr:\n{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    let at = config.display();
    assert_eq!(warnings.len(), 3, "stderr:\n{stderr}");
    for (warning, (line_col, keyword)) in warnings.iter().zip([
        ("2:5", "notification_email"),
        ("5:5", "smtp_server"),
        ("11:5", "smtp_alert"),
    ]) {
        assert!(
            warning.starts_with(&format!("warning: {at}:{line_col}: `{keyword}`"))
                && warning.contains("haldir does not act on it"),
            "{warning}"
        );
    }

    let strict = Command::new(env!("CARGO_BIN_EXE_haldir"))
        .args(["check", "--strict", "--config"])
        .arg(&config)
        .env_remove("HALDIR_LOG")
        .output()
        .expect("cannot run haldir");
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert_eq!(strict.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!("error (--strict): {at}:5:5: `smtp_server`")),
        "stderr:\n{stderr}"
    );
    assert!(strict.stdout.is_empty(), "--strict printed `valid`");
}
