//! Supervision (issue 15): a part of haldir that fails stops all of it cleanly, and one
//! that stalls stops the systemd watchdog's pings. Through the test-only fault hook:
//!
//! * `HALDIR_TEST_FAULT=link_panic:eth0:MS` makes the VRRP task of the master's link panic;
//!   what a peer and systemd see: a priority-0 advert from the master on the wire, its VIP
//!   gone, the backup master, and haldir exited with a failure status (so that systemd's
//!   `Restart=on-failure` restarts it) instead of running on half dead with the VIP and no
//!   adverts;
//! * `link_stall:eth0:MS` makes that loop wait for ever: the watchdog pings, fed from the
//!   loops' heartbeats, stop, so systemd would kill and restart haldir.
//!
//! Needs root (namespaces); skipped loudly otherwise.

use std::path::Path;
use std::time::Duration;

use haldir_lab::{self as lab, skip_unless_root, Capture, Haldir, HaldirInstance, Lab};
use nix::sys::signal::Signal;

const VIP: &str = "10.0.0.100";

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

/// The priority of a VRRP frame (IPv4), if it is one for `vrid`.
fn vrrp_priority(frame: &[u8], vrid: u8) -> Option<u8> {
    let ip = frame.get(14..)?;
    let header = usize::from(ip.first()? & 0x0f) * 4;
    let vrrp = ip.get(header..)?;
    (*vrrp.get(1)? == vrid).then(|| vrrp.get(2).copied())?
}

#[test]
fn a_panicking_link_task_stops_haldir_with_priority_zero_no_vip_and_a_failure_status() {
    if skip_unless_root(
        "a_panicking_link_task_stops_haldir_with_priority_zero_no_vip_and_a_failure_status",
    ) {
        return;
    }
    let lab = Lab::new("supervise").unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
    let capture = Capture::start(&lab).unwrap();
    let fast = Duration::from_millis(100);
    let config = |priority| HaldirInstance::v3(51, priority, fast, &["10.0.0.100/24"]).render();
    // The fault fires 4 s into the link's life: r1 (150) is master long before.
    let r1 = Haldir::start_with_env(
        &lab,
        "r1",
        binary(),
        &config(150),
        &[("HALDIR_TEST_FAULT", "link_panic:eth0:4000")],
    )
    .unwrap();
    let r2 = Haldir::start_with_config(&lab, "r2", binary(), &config(100)).unwrap();
    assert!(
        r1.wait_state("MASTER", Duration::from_secs(3)),
        "{}",
        r1.log()
    );
    assert!(
        r2.wait_state("BACKUP", Duration::from_secs(3)),
        "{}",
        r2.log()
    );
    assert!(lab.has_address("r1", VIP));

    let status = lab
        .wait_exit(r1.pid(), Duration::from_secs(15))
        .unwrap()
        .unwrap_or_else(|| {
            let _ = lab.kill(r1.pid(), Signal::SIGKILL);
            panic!("haldir ran on after its link task panicked:\n{}", r1.log())
        });
    let log = r1.log();
    assert!(
        !status.success(),
        "haldir exited {status} after a failure:\n{log}"
    );
    assert!(
        log.contains("injected by HALDIR_TEST_FAULT") && log.contains("the link's task failed"),
        "the failure is logged:\n{log}"
    );
    assert!(
        !lab.has_address("r1", VIP),
        "the failed master kept the VIP:\n{log}"
    );
    assert!(
        lab::wait_until(Duration::from_secs(3), || r2.state().as_deref()
            == Some("MASTER")
            && lab.has_address("r2", VIP)),
        "the backup did not take over:\n{}",
        r2.log()
    );
    let frames = capture.stop();
    let r1_mac = lab.mac_bytes("r1").unwrap();
    let resignations = frames
        .iter()
        .filter(|f| f.kind.is_vrrp() && f.src_mac() == r1_mac)
        .filter(|f| vrrp_priority(&f.bytes, 51) == Some(0))
        .count();
    assert_eq!(
        resignations, 1,
        "one priority-0 advert from the failed master:\n{log}"
    );
}

#[test]
fn a_stalled_link_loop_stops_the_systemd_watchdog_pings() {
    if skip_unless_root("a_stalled_link_loop_stops_the_systemd_watchdog_pings") {
        return;
    }
    use std::os::unix::net::UnixDatagram;
    let lab = Lab::new("watchdog").unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    // systemd's side: the notify socket, and a watchdog period of 1 s (pings every 0.5 s).
    let socket_path = lab.dir().join("notify.sock");
    let systemd = UnixDatagram::bind(&socket_path).unwrap();
    // As systemd's own: haldir sends to it as its unprivileged user.
    std::fs::set_permissions(
        &socket_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    systemd
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let config =
        HaldirInstance::v3(51, 150, Duration::from_millis(100), &["10.0.0.100/24"]).render();
    let r1 = Haldir::start_with_env(
        &lab,
        "r1",
        binary(),
        &config,
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
            // eth0's loop waits for ever 3 s into its life, as on a call that never
            // answers, while the rest of haldir (the watchdog's task too) runs on.
            ("HALDIR_TEST_FAULT", "link_stall:eth0:3000"),
        ],
    )
    .unwrap();
    let started = std::time::Instant::now();
    // Pings seen, by when (from `started`).
    let mut pings = Vec::new();
    let mut buffer = [0u8; 512];
    while started.elapsed() < Duration::from_secs(10) {
        if let Ok(n) = systemd.recv(&mut buffer) {
            if buffer[..n].windows(10).any(|w| w == b"WATCHDOG=1") {
                pings.push(started.elapsed());
            }
        }
    }
    let _ = lab.kill(r1.pid(), Signal::SIGKILL);
    let log = r1.log();
    // The stall begins at most 3 s after `started`; a stamp older than 3 s (three idle
    // beats) stops the pings, so none may come after 6.5 s (7.5 s given).
    assert!(
        pings.iter().any(|at| *at < Duration::from_secs(2)),
        "the watchdog was fed while the loop ran: pings at {pings:?}\n{log}"
    );
    assert!(
        pings.iter().all(|at| *at < Duration::from_millis(7500)),
        "the watchdog was still fed with the link's loop stalled: pings at {pings:?}\n{log}"
    );
    assert!(
        log.contains("the systemd watchdog is no longer fed"),
        "the stall is logged:\n{log}"
    );
}
