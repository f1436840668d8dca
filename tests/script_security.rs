//! `enable_script_security` (keepalived's `global_defs` keyword; TOML
//! `[global_defs] enable_script_security = true`): scripts and configuration files
//! that anyone but root can change — the file or any directory on its path, sticky
//! directories such as /tmp excepted — are refused by `haldir check`, at start and on
//! reload, with the file, the path component and who can write it; a refused reload
//! keeps the running configuration. Off (the default), such scripts are only warned
//! about, except a script that runs as root, which is always refused.
//!
//! Needs root (the files must be root's, and the reload case runs in a namespace);
//! skipped loudly otherwise.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use haldir_lab::{skip_unless_root, Haldir, HaldirInstance, Lab};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

/// A root-owned 0755 directory under the sticky /tmp; removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("haldir-scrsec-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Dir(dir)
    }

    fn subdir(&self, name: &str, mode: u32) -> PathBuf {
        let path = self.0.join(name);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn file(&self, path: &Path, text: &str, mode: u32) -> PathBuf {
        let path = self.0.join(path);
        haldir_lab::place_file(&path, text, mode).unwrap();
        path
    }

    fn script(&self, path: &str, mode: u32) -> PathBuf {
        self.file(Path::new(path), "#!/bin/sh\nexit 0\n", mode)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TOML configuration whose one instance runs `script` as notify_master, with
/// `global` lines in `[global_defs]`.
fn toml(global: &[&str], script: &Path) -> String {
    let mut instance = HaldirInstance::v3(51, 150, Duration::from_secs(1), &["10.0.0.100/24"]);
    instance.extra_lines = vec![format!("notify_master = \"{}\"", script.display())];
    format!(
        "[global_defs]\n{}\n\n{}",
        global.join("\n"),
        instance.render()
    )
}

/// `haldir check`: (success, stderr).
fn check(config: &Path) -> (bool, String) {
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SECURE: &str = "enable_script_security = true";

#[test]
fn insecure_scripts_are_refused_naming_the_component_and_who_can_write_it() {
    if skip_unless_root("insecure_scripts_are_refused_naming_the_component_and_who_can_write_it") {
        return;
    }
    let dir = Dir::new("scripts");
    let config = dir.0.join("haldir.toml");
    let write = |text: String| {
        std::fs::write(&config, text).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    };

    // Secure: root's script in root's 0755 directory, and in a sticky world-writable one.
    let good = dir.script("good.sh", 0o755);
    write(toml(&[SECURE], &good));
    let (ok, stderr) = check(&config);
    assert!(ok && stderr.is_empty(), "{stderr}");
    dir.subdir("sticky", 0o1777);
    let in_sticky = dir.script("sticky/x.sh", 0o755);
    write(toml(&[SECURE], &in_sticky));
    let (ok, stderr) = check(&config);
    assert!(ok && stderr.is_empty(), "{stderr}");

    // A world-writable script.
    let open = dir.script("open.sh", 0o777);
    write(toml(&[SECURE], &open));
    let (ok, stderr) = check(&config);
    assert!(!ok, "accepted a world-writable script");
    assert!(
        stderr.contains("notify_master")
            && stderr.contains(&format!(
                "enable_script_security: refusing script {}: {} is writable by everyone (mode 0777)",
                open.display(),
                open.display()
            ))
            && stderr.contains(&format!("chmod o-w {}", open.display())),
        "{stderr}"
    );

    // A root-owned script in a world-writable directory without the sticky bit.
    let loose = dir.subdir("loose", 0o777);
    let in_loose = dir.script("loose/x.sh", 0o755);
    write(toml(&[SECURE], &in_loose));
    let (ok, stderr) = check(&config);
    assert!(!ok, "accepted a script in a world-writable directory");
    assert!(
        stderr.contains(&format!(
            "{} is writable by everyone (mode 0777) (a directory without the sticky bit)",
            loose.display()
        )),
        "{stderr}"
    );

    // The same for a vrrp_script, in keepalived.conf syntax, at its line.
    let keepalived = dir.0.join("keepalived.conf");
    std::fs::write(
        &keepalived,
        format!(
            "global_defs {{\n  enable_script_security\n}}\nvrrp_script chk {{\n  script \"{}\"\n}}\n\
             vrrp_instance VI_1 {{\n  interface eth0\n  virtual_router_id 51\n  priority 150\n\
             virtual_ipaddress {{\n    10.0.0.100/24\n  }}\n  track_script {{\n    chk\n  }}\n}}\n",
            in_loose.display()
        ),
    )
    .unwrap();
    let (ok, stderr) = check(&keepalived);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("{}:5:", keepalived.display()))
            && stderr.contains(&format!("{} is writable by everyone", loose.display())),
        "{stderr}"
    );

    // Off (the default): accepted, with a warning naming the same problem.
    write(toml(&[], &open));
    let (ok, stderr) = check(&config);
    assert!(ok, "{stderr}");
    assert!(
        stderr.starts_with("warning: ")
            && stderr.contains(&format!("{} is writable by everyone", open.display()))
            && stderr.contains("enable_script_security would refuse it"),
        "{stderr}"
    );
    // ... except for a script that runs as root: always refused.
    write(toml(&["script_user = \"root\""], &open));
    let (ok, stderr) = check(&config);
    assert!(!ok, "accepted an insecure script that runs as root");
    assert!(
        stderr.contains("it runs as root, so its path is always checked"),
        "{stderr}"
    );
    // A secure one may run as root.
    write(toml(&["script_user = \"root\""], &good));
    let (ok, stderr) = check(&config);
    assert!(ok && stderr.is_empty(), "{stderr}");
}

#[test]
fn insecure_configuration_files_are_refused() {
    if skip_unless_root("insecure_configuration_files_are_refused") {
        return;
    }
    let dir = Dir::new("config");
    let good = dir.script("good.sh", 0o755);

    // Group-writable by a group other than root's.
    let config = dir.file(Path::new("haldir.toml"), &toml(&[SECURE], &good), 0o664);
    let (ok, stderr) = check(&config);
    assert!(ok && stderr.is_empty(), "group root may write: {stderr}");
    nix::unistd::chown(&config, None, Some(nix::unistd::Gid::from_raw(65534))).unwrap();
    let (ok, stderr) = check(&config);
    assert!(!ok, "accepted a configuration its group may change");
    assert!(
        stderr.starts_with(&format!(
            "{}: enable_script_security: refusing the configuration file: {} is writable by group 65534",
            config.display(),
            config.display()
        )) && stderr.contains("(mode 0664)")
            && stderr.contains("chmod g-w"),
        "{stderr}"
    );
    // Without the option the same file is fine.
    std::fs::write(&config, toml(&[], &good)).unwrap();
    let (ok, stderr) = check(&config);
    assert!(ok && stderr.is_empty(), "{stderr}");

    // keepalived.conf: an included file in a world-writable directory, reported at its include.
    let loose = dir.subdir("loose", 0o777);
    dir.file(Path::new("loose/vrrp.conf"), "vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 51\n  priority 150\n  virtual_ipaddress {\n    10.0.0.100/24\n  }\n}\n", 0o644);
    let main = dir.file(
        Path::new("keepalived.conf"),
        "global_defs {\n  enable_script_security\n}\ninclude loose/vrrp.conf\n",
        0o600,
    );
    let (ok, stderr) = check(&main);
    assert!(!ok, "accepted an insecure include");
    assert!(
        stderr.contains(&format!(
            "{}:4:9: enable_script_security: refusing the included file",
            main.display()
        )) && stderr.contains(&format!("{} is writable by everyone", loose.display())),
        "{stderr}"
    );
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (ok, stderr) = check(&main);
    assert!(ok && stderr.is_empty(), "{stderr}");
}

/// A configuration that becomes insecure is refused on reload (SIGHUP and `haldir
/// reload`), with the reason, and the running configuration stays.
#[test]
fn an_insecure_configuration_on_reload_keeps_the_running_one() {
    if skip_unless_root("an_insecure_configuration_on_reload_keeps_the_running_one") {
        return;
    }
    let dir = Dir::new("reload");
    let good = dir.script("good.sh", 0o755);
    let lab = Lab::new("scsec").unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    let r1 = Haldir::start_with_config(&lab, "r1", binary(), &toml(&[SECURE], &good)).unwrap();
    assert!(
        r1.wait_state("MASTER", Duration::from_secs(5)),
        "{}",
        r1.log()
    );

    // A new priority, but the file is now world-writable.
    std::fs::set_permissions(r1.config_path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let changed = toml(&[SECURE], &good).replace("priority = 150", "priority = 120");
    assert!(changed.contains("priority = 120"));
    assert!(
        !r1.reload(&changed).unwrap(),
        "SIGHUP applied an insecure file"
    );
    let out = Command::new(binary())
        .args(["reload", "--socket"])
        .arg(r1.control_socket())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refusing the configuration file")
            && stderr.contains(&format!(
                "{} is writable by everyone (mode 0666)",
                r1.config_path().display()
            )),
        "{stderr}"
    );
    assert!(r1.log().contains("reload rejected"), "{}", r1.log());
    let priority = || {
        r1.status()
            .and_then(|s| s["instances"][0]["priority"].as_u64())
    };
    assert_eq!(priority(), Some(150));
    assert_eq!(r1.state().as_deref(), Some("MASTER"));

    // Made secure again, the same file is applied.
    std::fs::set_permissions(r1.config_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(r1.reload(&changed).unwrap(), "{}", r1.log());
    assert!(
        haldir_lab::wait_until(Duration::from_secs(3), || priority() == Some(120)),
        "{}",
        r1.log()
    );
}
