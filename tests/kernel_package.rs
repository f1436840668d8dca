//! The Debian package installed for real, in the IPVS VM: `dpkg -i` (not into a side root),
//! the modules its modules-load.d file lists loaded, `man -l` on the installed page, and the
//! installed binary started the way the unit's `ExecStartPre` / `ExecStart` say (their
//! variables from `Environment=` and the `EnvironmentFile`, no systemd). It comes up as VRRP
//! master with the VIP and programs a DR virtual server into the kernel's IPVS table (read
//! with `ipvsadm`); the unit's `ExecReload` with a broken file exits non-zero and the VIP
//! and the table stay.
//!
//! The VM's file system is the host's: the install goes into overlays on /usr and /etc that
//! exist only in a private mount namespace of the lab router's, so nothing of it outlives
//! the test. `tests/package.rs` checks the package's contents on the host, without the kernel.
//! Runs inside the VM only (`bash tests/vm/run.sh package`); skipped loudly elsewhere.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use haldir_lab::vm::in_vm_or_skip;
use haldir_lab::{wait_until, HaldirInstance, Lab};

const VIP: &str = "10.0.0.100";
const REAL_SERVER: &str = "10.0.0.11";

/// Runs in r1's network namespace, in a mount namespace of its own: installs the package,
/// prints `STEP name: value` lines for the test to check, starts the unit's command line
/// in the background and returns. Arguments: work directory, .deb, configuration file.
const INSTALL_AND_START: &str = r#"
set -euo pipefail
work=$1 deb=$2 config=$3
# The overlays' upper layers on a tmpfs of this mount namespace (an upper layer on the VM's
# own root file system is refused).
mkdir -p "$work/overlay"
mount -t tmpfs haldir-package "$work/overlay"
for dir in usr etc; do
    mkdir -p "$work/overlay/$dir/upper" "$work/overlay/$dir/work"
    mount -t overlay overlay \
        -o "lowerdir=/$dir,upperdir=$work/overlay/$dir/upper,workdir=$work/overlay/$dir/work" "/$dir"
done
# man-db's trigger would index every manual page of the VM (minutes under emulation); it
# skips that when auto-update is off, so its flag file is hidden in this namespace.
if [[ -d /var/lib/man-db ]]; then
    mount -t tmpfs haldir-man-db /var/lib/man-db
fi
dpkg -i --force-depends "$deb" >"$work/dpkg.log" 2>&1
echo "STEP dpkg: $(dpkg-query -W -f='${Status}' haldir)"
grep -v '^#' /usr/lib/modules-load.d/haldir.conf | grep . | while read -r module; do
    modprobe "$module" && echo "STEP module: $module"
done
MANPAGER=cat MANWIDTH=100 man -l /usr/share/man/man8/haldir.8.gz >"$work/man.txt" 2>&1
echo "STEP man: $(grep -c . "$work/man.txt") lines"
cp "$config" /etc/haldir/vm.toml
echo 'HALDIR_CONFIG=/etc/haldir/vm.toml' >>/etc/default/haldir
unit=/usr/lib/systemd/system/haldir.service
# The unit's environment: its Environment= lines, then its EnvironmentFile.
while IFS= read -r assignment; do
    export "${assignment#Environment=}"
done < <(grep '^Environment=' "$unit")
set -a
. "$(sed -n 's/^EnvironmentFile=-\{0,1\}//p' "$unit")"
set +a
HALDIR_OPTS=${HALDIR_OPTS:-}
eval "set -- $(sed -n 's/^ExecStartPre=//p' "$unit")"
"$@" >"$work/check.log" 2>&1 && echo "STEP exec-start-pre: $*"
eval "set -- $(sed -n 's/^ExecStart=//p' "$unit")"
echo "STEP exec-start: $*"
setsid "$@" >"$work/haldir.log" 2>&1 </dev/null &
echo "STEP started: $!"
"#;

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// What `ipvsadm -Ln` prints in r1's namespace.
fn ipvs_table(lab: &Lab) -> String {
    lab.run("r1", &["ipvsadm", "-Ln"])
        .map(|o| text(&o))
        .unwrap_or_default()
}

fn vip_on_r1(lab: &Lab) -> bool {
    lab.run("r1", &["ip", "-o", "addr", "show", "dev", "eth0"])
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("inet {VIP}/")))
}

/// The installed binary, run in the mount namespace of the running daemon `pid` (where the
/// package is installed).
fn installed(pid: u32, args: &[&str]) -> std::process::Output {
    Command::new("nsenter")
        .arg(format!("--mount=/proc/{pid}/ns/mnt"))
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(args)
        .output()
        .unwrap()
}

/// Builds the .deb from the test's binary into `work/out` and returns its path.
fn build_deb(work: &Path) -> String {
    let built = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/packaging/build-deb.sh"
        ))
        .arg(work.join("out"))
        .env("HALDIR_BIN", env!("CARGO_BIN_EXE_haldir"))
        // xz of the binary takes minutes under the VM's software emulation.
        .env("HALDIR_DEB_COMPRESSION", "gzip")
        .output()
        .unwrap();
    assert!(built.status.success(), "build-deb.sh: {}", text(&built));
    text(&built)
        .lines()
        .find(|line| line.ends_with(".deb") && !line.contains(' '))
        .expect("build-deb.sh prints the .deb")
        .to_owned()
}

#[test]
fn the_installed_package_runs_from_its_units_command_lines_programs_ipvs_and_refuses_a_broken_reload(
) {
    if !in_vm_or_skip("the_installed_package_runs_from_its_units_command_lines_programs_ipvs_and_refuses_a_broken_reload") {
        return;
    }
    let lab = Lab::new("kpackage").unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    let work = lab.dir().join("package");
    std::fs::create_dir_all(&work).unwrap();

    // tests/vm/run.sh builds the package on the host (HALDIR_VM_DEB), from the same
    // target/debug/haldir; run any other way, the test builds it here.
    let prebuilt = std::env::var("HALDIR_VM_DEB")
        .ok()
        .filter(|path| Path::new(path).is_file());
    let deb = match prebuilt {
        Some(deb) => deb,
        None => build_deb(&work),
    };

    let instance = HaldirInstance::v3(51, 200, Duration::from_millis(100), &[&format!("{VIP}/24")]);
    let config = format!(
        "{}\n[[virtual_server]]\nip = \"{VIP}\"\nport = 80\nprotocol = \"TCP\"\nlb_algo = \"wlc\"\n\
         lb_kind = \"DR\"\n\n[[virtual_server.real_server]]\nip = \"{REAL_SERVER}\"\nport = 80\nweight = 3\n",
        instance.render()
    );
    let config_path = work.join("vm.toml");
    std::fs::write(&config_path, &config).unwrap();
    let script = work.join("install-and-start.sh");
    std::fs::write(&script, INSTALL_AND_START).unwrap();

    let output = lab
        .run(
            "r1",
            &[
                "unshare",
                "-m",
                "--propagation",
                "private",
                "bash",
                &script.display().to_string(),
                &work.display().to_string(),
                &deb,
                &config_path.display().to_string(),
            ],
        )
        .unwrap();
    let log = text(&output);
    let file = |name: &str| std::fs::read_to_string(work.join(name)).unwrap_or_default();
    assert!(
        output.status.success(),
        "install and start failed: {log}\n--- dpkg:\n{}\n--- check:\n{}",
        file("dpkg.log"),
        file("check.log")
    );
    eprintln!("{log}");
    assert!(log.contains("STEP dpkg: install ok installed"), "{log}");
    for module in ["ip_vs", "ip_vs_wlc"] {
        assert!(
            log.contains(&format!("STEP module: {module}\n")),
            "{module} not loaded from modules-load.d: {log}"
        );
    }
    let page = file("man.txt");
    for expected in ["SIGNALS", "SIGHUP", "handover", "realserver"] {
        assert!(
            page.contains(expected),
            "the installed man page lacks {expected}: {page}"
        );
    }
    assert!(
        log.contains("STEP exec-start-pre: /usr/sbin/haldir check"),
        "{log}"
    );
    let pid: u32 = log
        .lines()
        .find_map(|line| line.strip_prefix("STEP started: "))
        .and_then(|pid| pid.trim().parse().ok())
        .expect("the script printed the daemon's pid");

    // From outside the daemon: the VIP on r1's interface, the service and its real server
    // in the kernel's table.
    let service = format!("TCP  {VIP}:80 wlc");
    let destination = format!("-> {REAL_SERVER}:80");
    let up = wait_until(Duration::from_secs(60), || {
        let table = ipvs_table(&lab);
        vip_on_r1(&lab) && table.contains(&service) && table.contains(&destination)
    });
    assert!(
        up,
        "the installed haldir did not come up with the VIP and the virtual server:\n{}\n--- haldir log:\n{}",
        ipvs_table(&lab),
        file("haldir.log")
    );
    let table = ipvs_table(&lab);
    let line = table
        .lines()
        .find(|l| l.contains(&destination))
        .expect("the real server's line");
    assert!(
        line.contains("Route") && line.split_whitespace().nth(3) == Some("3"),
        "{line}"
    );

    // The unit's ExecReload with a broken file: refused, non-zero, and nothing changes.
    std::fs::write(
        work.join("broken.toml"),
        "this is [not a valid configuration\n",
    )
    .unwrap();
    let copied = installed(
        pid,
        &[
            "cp",
            &work.join("broken.toml").display().to_string(),
            "/etc/haldir/vm.toml",
        ],
    );
    assert!(copied.status.success(), "{}", text(&copied));
    let unit = String::from_utf8_lossy(
        &installed(pid, &["cat", "/usr/lib/systemd/system/haldir.service"]).stdout,
    )
    .into_owned();
    let reload_line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecReload="))
        .expect("the unit has ExecReload")
        .to_owned();
    let reload_args: Vec<&str> = reload_line.split_whitespace().collect();
    let reload = installed(pid, &reload_args);
    assert!(
        !reload.status.success(),
        "ExecReload of a broken file succeeded: {}",
        text(&reload)
    );
    assert!(
        text(&reload).contains("rejected"),
        "the refused reload does not say so: {}",
        text(&reload)
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(vip_on_r1(&lab), "the VIP went after a refused reload");
    assert_eq!(
        ipvs_table(&lab),
        table,
        "the IPVS table changed after a refused reload"
    );
}
