//! The Debian package (`packaging/build-deb.sh`): built from the test's own haldir binary and
//! installed with `dpkg --root=DIR -i` into an empty root (so the test never writes the host's
//! /usr or dpkg database), it holds the binary, the unit, the conffiles, modules-load.d and
//! the completions; `man -l` renders the installed page with its SIGNALS section; the
//! installed binary started the way the unit's `ExecStart` says (variables from its
//! `Environment=` and `EnvironmentFile=`, no systemd) comes up as VRRP master with the VIP in
//! a lab namespace; `haldir reload` with a broken file exits non-zero and the VIP stays.
//! Needs root (skipped loudly otherwise).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use haldir_lab::{skip_unless_root, wait_until, HaldirInstance, Lab};

const VIP: &str = "10.0.0.100";

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?}: {text}");
    text
}

/// The unit's `ExecStart`, with `${NAME}` / `$NAME` replaced from `env`, split into words.
fn exec_start(unit: &str, env: &HashMap<String, String>) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("the unit has ExecStart");
    let mut expanded = line.to_string();
    let mut names: Vec<&String> = env.keys().collect();
    names.sort_by_key(|name| std::cmp::Reverse(name.len()));
    for name in names {
        expanded = expanded
            .replace(&format!("${{{name}}}"), &env[name])
            .replace(&format!("${name}"), &env[name]);
    }
    expanded.split_whitespace().map(str::to_owned).collect()
}

/// `Environment=` lines, then each `KEY=VALUE` of the EnvironmentFile (quotes stripped).
fn unit_environment(unit: &str, root: &Path) -> HashMap<String, String> {
    let mut env = HashMap::new();
    let mut add = |assignment: &str| {
        if let Some((key, value)) = assignment.split_once('=') {
            env.insert(
                key.trim().to_owned(),
                value.trim().trim_matches('"').to_owned(),
            );
        }
    };
    for line in unit.lines() {
        if let Some(assignment) = line.strip_prefix("Environment=") {
            add(assignment);
        }
    }
    for line in unit.lines() {
        if let Some(file) = line.strip_prefix("EnvironmentFile=") {
            let file = file.trim_start_matches('-');
            let text = std::fs::read_to_string(rooted(root, file)).unwrap();
            for line in text.lines() {
                let line = line.trim();
                if !line.is_empty() && !line.starts_with('#') {
                    add(line);
                }
            }
        }
    }
    env
}

fn rooted(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

#[test]
fn the_package_installs_its_man_page_renders_and_the_units_exec_start_runs_and_refuses_a_broken_reload(
) {
    if skip_unless_root("the_package_installs_its_man_page_renders_and_the_units_exec_start_runs_and_refuses_a_broken_reload") {
        return;
    }
    let lab = Lab::new("package").unwrap();
    let work = lab.dir().join("package");
    let root = work.join("root");
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();

    let built = run(Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/packaging/build-deb.sh"
        ))
        .arg(work.join("out"))
        .env("HALDIR_BIN", env!("CARGO_BIN_EXE_haldir")));
    let deb = built
        .lines()
        .find(|line| line.ends_with(".deb") && !line.contains(' '))
        .expect("build-deb.sh prints the .deb")
        .to_owned();
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-depends", "--force-script-chrootless", "-i", &deb]));
    // dpkg's own account: the package is installed, /etc files are conffiles.
    let status = std::fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    assert!(
        status.contains("Package: haldir\nStatus: install ok installed"),
        "{status}"
    );
    assert!(status.contains(" /etc/haldir/haldir.toml "), "{status}");
    // It asks for the C library the binary needs: no older than any GLIBC_2.x version the
    // binary names, nor than 2.36 with packed relocations (GLIBC_ABI_DT_RELR).
    let needs = run(Command::new("readelf")
        .arg("-V")
        .arg(root.join("usr/sbin/haldir")));
    // (major, minor) of "2.34" or "2.2.5".
    let version = |v: &str| -> (u32, u32) {
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap_or(0))
    };
    let mut needed = needs
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter_map(|word| word.strip_prefix("GLIBC_"))
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        .map(version)
        .max()
        .expect("the binary names glibc versions");
    if needs.contains("GLIBC_ABI_DT_RELR") {
        needed = needed.max((2, 36));
    }
    let depends = status
        .lines()
        .skip_while(|l| *l != "Package: haldir")
        .find_map(|l| l.strip_prefix("Depends: "))
        .expect("the package's Depends");
    let libc = depends
        .split(", ")
        .find_map(|d| d.strip_prefix("libc6 (>= ")?.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no versioned libc6 in Depends: {depends}"));
    assert!(
        version(libc) >= needed,
        "Depends: {depends}; the binary needs glibc {needed:?}"
    );
    for file in [
        "usr/sbin/haldir",
        "usr/lib/systemd/system/haldir.service",
        "etc/default/haldir",
        "etc/haldir/haldir.toml",
        "usr/share/bash-completion/completions/haldir",
        "usr/share/zsh/vendor-completions/_haldir",
        "usr/share/fish/vendor_completions.d/haldir.fish",
        "usr/share/doc/haldir/examples/haldir.nft",
        "usr/share/doc/haldir/examples/keepalived-conf.conf",
    ] {
        assert!(root.join(file).is_file(), "{file} not installed");
    }
    let modules = std::fs::read_to_string(root.join("usr/lib/modules-load.d/haldir.conf")).unwrap();
    assert!(modules.lines().any(|l| l == "ip_vs") && modules.lines().any(|l| l == "ip_vs_wlc"));
    // The example configuration is valid.
    run(Command::new(root.join("usr/sbin/haldir"))
        .args(["check", "--config"])
        .arg(root.join("etc/haldir/haldir.toml")));

    let page = run(Command::new("man")
        .arg("-l")
        .arg(root.join("usr/share/man/man8/haldir.8.gz"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100"));
    for expected in [
        "SIGNALS",
        "SIGHUP",
        "SIGUSR1",
        "SIGUSR2",
        "SIGTERM",
        "realserver",
    ] {
        assert!(page.contains(expected), "man page lacks {expected}: {page}");
    }

    // The operator's settings, in the installed EnvironmentFile.
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    let instance = HaldirInstance::v3(51, 200, Duration::from_millis(100), &[&format!("{VIP}/24")]);
    let config = root.join("etc/haldir/lab.toml");
    std::fs::write(&config, instance.render()).unwrap();
    let socket = work.join("haldir.sock");
    let mut defaults = std::fs::read_to_string(root.join("etc/default/haldir")).unwrap();
    defaults.push_str(&format!(
        "HALDIR_CONFIG={}\nHALDIR_OPTS=\"--control-socket {} --dump-dir {}\"\n",
        config.display(),
        socket.display(),
        work.join("dumps").display()
    ));
    std::fs::write(root.join("etc/default/haldir"), defaults).unwrap();

    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/haldir.service")).unwrap();
    let argv = exec_start(&unit, &unit_environment(&unit, &root));
    assert_eq!(argv[0], "/usr/sbin/haldir", "{argv:?}");
    let mut start = Command::new(rooted(&root, &argv[0]));
    start.args(&argv[1..]);
    lab.spawn("r1", start).unwrap();

    let installed = rooted(&root, "/usr/sbin/haldir");
    let status_answers = || {
        Command::new(&installed)
            .args(["status", "--socket"])
            .arg(&socket)
            .output()
            .is_ok_and(|out| out.status.success())
    };
    let vip_on_r1 = || {
        lab.run("r1", &["ip", "-o", "addr", "show", "dev", "eth0"])
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(&format!("inet {VIP}/")))
    };
    assert!(
        wait_until(Duration::from_secs(20), || status_answers() && vip_on_r1()),
        "the installed haldir did not come up with the VIP: {argv:?}"
    );

    std::fs::write(&config, "this is [not a valid configuration\n").unwrap();
    let reload = Command::new(&installed)
        .args(["reload", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(
        !reload.status.success(),
        "reload of a broken file succeeded: {}",
        String::from_utf8_lossy(&reload.stdout)
    );
    assert!(
        status_answers() && vip_on_r1(),
        "the running configuration did not stay"
    );
}
