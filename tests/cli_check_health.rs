//! `haldir check` on health-checking configurations: a `vrrp_script` or `MISC_CHECK` whose
//! script does not exist (or is not executable) is a configuration error reported at its
//! `file:line:col`, exit 1 — not a surprise when the daemon runs. A valid one passes.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const CONFIG: &str = r#"[[vrrp_script]]
name = "chk_web"
script = "SCRIPT --quiet"
interval = 2
weight = -20

[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
priority = 150
virtual_ipaddress = ["10.0.0.100/24"]
track_script = ["chk_web"]

[[virtual_server]]
ip = "10.0.0.100"
port = 80
lb_kind = "DR"
[[virtual_server.real_server]]
ip = "10.0.1.1"
MISC_CHECK = { misc_path = "SCRIPT", misc_timeout = 3 }
"#;

fn check(dir: &std::path::Path, script: &str) -> (bool, String) {
    let path = dir.join("haldir.toml");
    std::fs::write(&path, CONFIG.replace("SCRIPT", script)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_haldir"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).replace(&format!("{}/", dir.display()), ""),
    )
}

#[test]
fn a_missing_or_non_executable_script_is_a_check_error_at_its_place() {
    let dir = std::env::temp_dir().join(format!("haldir-cli-health-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();

    let missing = dir.join("missing.sh");
    let (ok, stderr) = check(&dir, &missing.display().to_string());
    assert!(!ok, "haldir check accepted a missing script");
    let m = "missing.sh";
    assert_eq!(
        stderr.trim_end(),
        format!(
            "haldir.toml:3:10: script = \"{m} --quiet\": script \"{m}\" does not exist\n\
             haldir.toml:21:28: misc_path = \"{m}\": script \"{m}\" does not exist"
        )
    );

    let script = dir.join("check.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, stderr) = check(&dir, &script.display().to_string());
    assert!(!ok);
    assert!(
        stderr.contains("haldir.toml:3:10:") && stderr.contains("is not executable by user"),
        "{stderr}"
    );

    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (ok, stderr) = check(&dir, &script.display().to_string());
    assert!(ok, "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
