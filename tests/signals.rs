//! keepalived operators' habits, run against the daemon in a namespace lab: SIGUSR1 and
//! SIGUSR2 write the data dump and the statistics (keepalived's `kill -USR1` / `-USR2`)
//! and never stop haldir or move the VIP; the log carries no colour when stderr is not a
//! terminal, and `--log-format journald` prefixes each line with its syslog priority.
//! Proof from outside: the adverts on the wire (capture), `ip addr`, the files written.
//! Needs root; skipped loudly otherwise.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use haldir_lab::capture::{vrrp_payload, Frame};
use haldir_lab::{
    self as lab, skip_unless_root, Capture, FrameKind, Haldir, HaldirInstance, Lab, Signal,
};

const FAST: Duration = Duration::from_millis(100);
const VIP: &str = "10.0.0.100";

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

fn pair_lab(tag: &str) -> Lab {
    let lab = Lab::new(tag).unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
    lab
}

fn instance(priority: u8) -> HaldirInstance {
    HaldirInstance::v3(51, priority, FAST, &[&format!("{VIP}/24")])
}

/// (time, priority) of each VRRP advert `mac` sent.
fn adverts(frames: &[Frame], mac: [u8; 6]) -> Vec<(Instant, u8)> {
    frames
        .iter()
        .filter(|f| f.kind == FrameKind::Vrrp4 && f.src_mac() == mac)
        .filter_map(|f| Some((f.at, *vrrp_payload(&f.bytes)?.get(2)?)))
        .collect()
}

#[test]
fn sigusr1_and_sigusr2_write_their_dumps_and_never_stop_haldir_or_move_the_vip() {
    let test = "sigusr1_and_sigusr2_write_their_dumps_and_never_stop_haldir_or_move_the_vip";
    if skip_unless_root(test) {
        return;
    }
    let lab = pair_lab("sigusr");
    let capture = Capture::start(&lab).unwrap();
    let r1 = Haldir::start(&lab, "r1", binary(), &[instance(150)]).unwrap();
    let r2 = Haldir::start(&lab, "r2", binary(), &[instance(100)]).unwrap();
    assert!(
        lab::wait_until(Duration::from_secs(5), || r1.state().as_deref()
            == Some("MASTER")
            && r2.state().as_deref() == Some("BACKUP")
            && lab.has_address("r1", VIP)),
        "no election:\n{}\n{}",
        r1.describe(),
        r2.describe()
    );
    // An attacker's symlink where the data dump goes: it must be replaced, its target kept.
    let dir = r1.dump_dir();
    // haldir made it at start; made here too, so that a haldir without dumps fails below
    // on the signal, not here.
    std::fs::create_dir_all(&dir).unwrap();
    let victim = lab.dir().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let data = dir.join("haldir.data");
    let stats = dir.join("haldir.stats");
    std::os::unix::fs::symlink(&victim, &data).unwrap();
    let transitions = (r1.counter("transitions"), r2.counter("transitions"));

    // As an operator's loop would: a hundred of each, back to back.
    let signalled = Instant::now();
    for _ in 0..100 {
        lab.kill(r1.pid(), Signal::SIGUSR1).unwrap();
        lab.kill(r1.pid(), Signal::SIGUSR2).unwrap();
    }
    let written = lab::wait_until(Duration::from_secs(10), || {
        let log = r1.log();
        log.contains("SIGUSR1: dump written") && log.contains("SIGUSR2: dump written")
    });
    assert!(written, "no dump written:\n{}", r1.describe());
    // Ten intervals after the signals: the master advertised all along.
    std::thread::sleep(FAST * 10);
    let frames = capture.stop();

    assert!(r1.is_running(), "a signal stopped haldir:\n{}", r1.log());
    assert_eq!(r1.state().as_deref(), Some("MASTER"));
    assert!(lab.has_address("r1", VIP) && !lab.has_address("r2", VIP));
    assert_eq!(
        (r1.counter("transitions"), r2.counter("transitions")),
        transitions,
        "no transition on either router"
    );
    let r1_mac = lab.mac_bytes("r1").unwrap();
    let r2_mac = lab.mac_bytes("r2").unwrap();
    let after: Vec<(Instant, u8)> = adverts(&frames, r1_mac)
        .into_iter()
        .filter(|(at, _)| *at >= signalled)
        .collect();
    assert!(
        after.len() >= 5 && after.iter().all(|(_, priority)| *priority == 150),
        "r1 kept advertising at 150 after the signals (a resigning haldir sends 0): {:?}",
        after.iter().map(|(_, p)| p).collect::<Vec<_>>()
    );
    assert!(
        adverts(&frames, r2_mac)
            .iter()
            .all(|(at, _)| *at < signalled),
        "r2 advertised: it took over"
    );

    // The files: regular, 0600, whole; the symlink's target untouched.
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    for path in [&data, &stats] {
        let meta = std::fs::symlink_metadata(path).unwrap();
        assert!(
            meta.file_type().is_file(),
            "{} is a regular file",
            path.display()
        );
        assert_eq!(
            meta.mode() & 0o777,
            0o600,
            "{} has mode 0600",
            path.display()
        );
    }
    let data_text = std::fs::read_to_string(&data).unwrap();
    assert!(
        data_text.contains("data dump")
            && data_text.contains("VI_1")
            && data_text.contains("MASTER"),
        "the data dump shows the instance and its state:\n{data_text}"
    );
    let stats_text = std::fs::read_to_string(&stats).unwrap();
    assert!(
        stats_text.contains("haldir_vrrp_adverts_sent_total{instance=\"VI_1\"")
            && stats_text.contains("haldir_vrrp_transitions_total"),
        "the statistics hold the counters:\n{stats_text}"
    );
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn the_log_has_no_colour_off_a_terminal_and_journald_lines_carry_their_priority() {
    let test = "the_log_has_no_colour_off_a_terminal_and_journald_lines_carry_their_priority";
    if skip_unless_root(test) {
        return;
    }
    let lab = pair_lab("logfmt");
    let config = instance(150).render();
    let text = Haldir::start_with_config(&lab, "r1", binary(), &config).unwrap();
    let journal =
        Haldir::start_with_args(&lab, "r2", binary(), &config, &["--log-format", "journald"])
            .unwrap();
    // An error to log: a reload of a broken file is rejected.
    assert!(!journal
        .reload(&config.replace("priority = 150", "priority = 300"))
        .unwrap());
    // Equal priorities: one of them wins (RFC 5798 §6.4.3, the higher address), both log.
    assert!(lab::wait_until(Duration::from_secs(5), || text
        .log()
        .contains("Entering")));

    let text_log = text.log();
    assert!(
        !text_log.is_empty() && !text_log.contains('\x1b'),
        "colour escapes in a log written to a file:\n{text_log:?}"
    );
    let journal_log = journal.log();
    let lines: Vec<&str> = journal_log.lines().filter(|l| !l.is_empty()).collect();
    let prefixed = |line: &str| {
        let bytes = line.as_bytes();
        bytes.len() > 3 && bytes[0] == b'<' && bytes[1].is_ascii_digit() && bytes[2] == b'>'
    };
    // A multi-line message continues on lines of its own; every entry starts prefixed.
    assert!(
        lines.first().is_some_and(|l| prefixed(l)) && !journal_log.contains('\x1b'),
        "journald lines: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<3>") && l.contains("reload rejected")),
        "the rejected reload logged at priority 3 (err): {lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<6>") && l.contains("Entering")),
        "transitions at priority 6 (info), keepalived's text kept: {lines:?}"
    );
}
