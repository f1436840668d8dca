//! SIGHUP reload with real sockets, proven from outside (a capture on the bridge,
//! `ip addr`, the status file): an identical configuration changes nothing on
//! the wire, changes apply in place without an election, removed instances
//! resign, new ones start in Backup, and a broken file changes nothing at all.
//! These are the places keepalived's reload is known to hurt (its issues
//! #2159, #349, #1009, #1720, #1877). Needs root.

use std::time::{Duration, Instant};

use haldir_lab::capture::Frame;
use haldir_lab::{is_root, wait_until, Capture, FrameKind, Haldir, HaldirInstance, Lab};
use haldir_vrrp::wire::arp::ArpRepr;
use haldir_vrrp::wire::vrrp::AdvertRepr;

const INTERVAL: Duration = Duration::from_millis(100);

fn binary() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_haldir"))
}

fn instance(name: &str, vrid: u8, priority: u8, vips: &[&str]) -> HaldirInstance {
    HaldirInstance {
        name: name.into(),
        ..HaldirInstance::v3(vrid, priority, INTERVAL, vips)
    }
}

fn render(instances: &[HaldirInstance]) -> String {
    instances
        .iter()
        .map(HaldirInstance::render)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Two routers, r1 (150) master and r2 (100) backup, and a capture.
fn pair<'l>(lab: &'l Lab, r1: &[HaldirInstance]) -> (Haldir<'l>, Haldir<'l>, Capture) {
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
    let capture = Capture::start(lab).unwrap();
    let one = Haldir::start(lab, "r1", binary(), r1).unwrap();
    let two = Haldir::start(
        lab,
        "r2",
        binary(),
        &[instance("VI_1", 51, 100, &["10.0.0.100/24"])],
    )
    .unwrap();
    assert!(
        one.wait_state("MASTER", Duration::from_secs(5)),
        "{}",
        one.log()
    );
    assert!(
        two.wait_state("BACKUP", Duration::from_secs(5)),
        "{}",
        two.log()
    );
    (one, two, capture)
}

/// The adverts a MAC sent after `since`, decoded.
fn adverts_from(frames: &[Frame], mac: [u8; 6], since: Instant) -> Vec<(Instant, AdvertRepr)> {
    frames
        .iter()
        .filter(|f| f.kind == FrameKind::Vrrp4 && f.src_mac() == mac && f.at >= since)
        .filter_map(|f| {
            let payload = haldir_lab::capture::vrrp_payload(&f.bytes)?;
            let src = std::net::Ipv4Addr::new(f.bytes[26], f.bytes[27], f.bytes[28], f.bytes[29]);
            let dst = std::net::Ipv4Addr::new(f.bytes[30], f.bytes[31], f.bytes[32], f.bytes[33]);
            AdvertRepr::parse(payload, src.into(), dst.into())
                .ok()
                .map(|a| (f.at, a))
        })
        .collect()
}

/// Gratuitous ARPs a MAC sent after `since`, by announced address.
fn garps_from(frames: &[Frame], mac: [u8; 6], since: Instant) -> Vec<std::net::Ipv4Addr> {
    frames
        .iter()
        .filter(|f| f.kind == FrameKind::Arp && f.src_mac() == mac && f.at >= since)
        .filter_map(|f| ArpRepr::parse(&f.bytes).ok())
        .filter(|arp| arp.sender_ip == arp.target_ip)
        .map(|arp| arp.sender_ip)
        .collect()
}

/// The largest gap allowed between two of the master's adverts around a reload: the
/// expected figure is one interval (100 ms); three times that (it was one interval + 40 ms)
/// holds on a loaded 2-core machine, where a capture or a daemon not scheduled for a while
/// shows as a late advert (seen: 130-230 ms now and then, with or without a reload), and is
/// still below r2's Master_Down_Interval (361 ms), so a reload that paused the adverts long
/// enough to matter fails it. The gap is taken over the reload only (from three intervals
/// before it to three after it was applied or rejected): a stall of the loaded machine half
/// a second later says nothing about the reload. The measured gap and the advert times are
/// printed.
const RELOAD_GAP_BOUND: Duration = Duration::from_millis(300);

/// The adverts in `times` from three intervals before `start` to three after `done`.
fn around(times: &[Instant], start: Instant, done: Instant) -> Vec<Instant> {
    times
        .iter()
        .copied()
        .filter(|at| *at + INTERVAL * 3 >= start && *at <= done + INTERVAL * 3)
        .collect()
}

/// Each time as milliseconds from `reference` (`+12.3`, `-98.7`), space separated, for the
/// printed advert timeline.
fn offsets_ms(times: &[Instant], reference: Instant) -> String {
    times
        .iter()
        .map(|at| {
            if *at >= reference {
                format!("+{:.1}", (*at - reference).as_secs_f64() * 1000.0)
            } else {
                format!("-{:.1}", (reference - *at).as_secs_f64() * 1000.0)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn largest_gap(times: &[Instant]) -> Duration {
    times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

macro_rules! needs_root {
    ($name:expr) => {
        if !is_root() {
            eprintln!("SKIPPED {}: needs root for network namespaces", $name);
            return;
        }
    };
}

#[test]
fn reloading_an_identical_configuration_changes_nothing_on_the_wire() {
    needs_root!("reloading_an_identical_configuration_changes_nothing_on_the_wire");
    let lab = Lab::new("reload-same").unwrap();
    let config = [instance("VI_1", 51, 150, &["10.0.0.100/24"])];
    let (r1, r2, capture) = pair(&lab, &config);
    let r1_mac = lab.mac_bytes("r1").unwrap();
    // Let the master's second GARP burst (garp_master_delay) pass first.
    std::thread::sleep(Duration::from_secs(6));
    let transitions = (r1.counter("transitions"), r2.counter("transitions"));
    let reloaded_at = Instant::now();
    assert!(r1.reload(&render(&config)).unwrap(), "{}", r1.log());
    let r1_done = reloaded_at.elapsed();
    assert!(r2
        .reload(&render(&[instance("VI_1", 51, 100, &["10.0.0.100/24"])]))
        .unwrap());
    let r2_done = reloaded_at.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let frames = capture.kept();
    let adverts: Vec<Instant> = adverts_from(&frames, r1_mac, reloaded_at - INTERVAL * 3)
        .into_iter()
        .map(|(at, _)| at)
        .collect();
    assert!(
        adverts.len() >= 10,
        "the master kept advertising: {}",
        adverts.len()
    );
    let gap = largest_gap(&around(&adverts, reloaded_at, reloaded_at + r2_done));
    let offsets = offsets_ms(&adverts, reloaded_at);
    eprintln!(
        "identical reload: {} adverts, the largest gap {gap:?} (interval {INTERVAL:?}); adverts \
         at (ms from the reload, r1 reloaded after {r1_done:?}, r2 after {r2_done:?}): {}",
        adverts.len(),
        offsets
    );
    assert!(
        gap < RELOAD_GAP_BOUND,
        "the adverts paused across the reload: the largest gap was {gap:?}"
    );
    assert!(
        garps_from(&frames, r1_mac, reloaded_at).is_empty(),
        "no extra gratuitous ARP"
    );
    assert_eq!(
        (r1.counter("transitions"), r2.counter("transitions")),
        transitions,
        "no transition"
    );
    assert!(r1.log().contains("kept"), "{}", r1.log());
    assert!(lab.has_address("r1", "10.0.0.100") && !lab.has_address("r2", "10.0.0.100"));
}

#[test]
fn a_lower_priority_applies_in_place_and_the_peer_preempts() {
    needs_root!("a_lower_priority_applies_in_place_and_the_peer_preempts");
    let lab = Lab::new("reload-prio").unwrap();
    let (r1, r2, capture) = pair(&lab, &[instance("VI_1", 51, 150, &["10.0.0.100/24"])]);
    let r1_mac = lab.mac_bytes("r1").unwrap();
    let reloaded_at = Instant::now();
    assert!(r1
        .reload(&render(&[instance("VI_1", 51, 50, &["10.0.0.100/24"])]))
        .unwrap());
    assert!(
        r2.wait_state("MASTER", Duration::from_secs(3)),
        "{}",
        r2.log()
    );
    assert!(r1.wait_state("BACKUP", Duration::from_secs(3)));
    assert!(wait_until(Duration::from_secs(2), || lab
        .has_address("r2", "10.0.0.100")
        && !lab.has_address("r1", "10.0.0.100")));
    let sent: Vec<u8> = adverts_from(&capture.kept(), r1_mac, reloaded_at)
        .into_iter()
        .map(|(_, a)| a.priority)
        .collect();
    assert!(sent.contains(&50), "the new priority went out: {sent:?}");
    assert!(
        !sent.contains(&0),
        "changed in place: the router did not resign and restart: {sent:?}"
    );
    assert_eq!(r1.counter("became_master"), 1, "no new election on r1");
}

#[test]
fn an_added_address_is_added_and_announced_a_removed_one_released() {
    needs_root!("an_added_address_is_added_and_announced_a_removed_one_released");
    let lab = Lab::new("reload-vips").unwrap();
    let (r1, r2, capture) = pair(&lab, &[instance("VI_1", 51, 150, &["10.0.0.100/24"])]);
    let r1_mac = lab.mac_bytes("r1").unwrap();
    let transitions = r1.counter("transitions");
    let reloaded_at = Instant::now();
    assert!(r1
        .reload(&render(&[instance(
            "VI_1",
            51,
            150,
            &["10.0.0.100/24", "10.0.0.101/24"]
        )]))
        .unwrap());
    assert!(wait_until(Duration::from_secs(2), || lab
        .has_address("r1", "10.0.0.101")));
    std::thread::sleep(Duration::from_millis(300));
    let announced = garps_from(&capture.kept(), r1_mac, reloaded_at);
    assert!(
        announced.contains(&"10.0.0.101".parse().unwrap()),
        "the new address was announced: {announced:?}"
    );
    assert!(
        !announced.contains(&"10.0.0.100".parse().unwrap()),
        "the unchanged one was not re-announced: {announced:?}"
    );
    let removed_at = Instant::now();
    assert!(r1
        .reload(&render(&[instance("VI_1", 51, 150, &["10.0.0.101/24"])]))
        .unwrap());
    assert!(wait_until(Duration::from_secs(2), || !lab
        .has_address("r1", "10.0.0.100")));
    assert!(lab.has_address("r1", "10.0.0.101"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(garps_from(&capture.kept(), r1_mac, removed_at).is_empty());
    assert_eq!(r1.counter("transitions"), transitions, "no transition");
    assert_eq!(r1.state().as_deref(), Some("MASTER"));
    assert_eq!(r2.state().as_deref(), Some("BACKUP"));
}

#[test]
fn a_removed_instance_resigns_and_a_new_one_starts_in_backup() {
    needs_root!("a_removed_instance_resigns_and_a_new_one_starts_in_backup");
    let lab = Lab::new("reload-swap").unwrap();
    let (r1, r2, capture) = pair(&lab, &[instance("VI_1", 51, 150, &["10.0.0.100/24"])]);
    let r1_mac = lab.mac_bytes("r1").unwrap();
    let reloaded_at = Instant::now();
    assert!(r1
        .reload(&render(&[instance("VI_2", 52, 150, &["10.0.0.200/24"])]))
        .unwrap());
    // The new instance starts in Backup (RFC 5798 §6.4.1) ...
    assert!(
        r1.log().contains("(VI_2) Entering BACKUP STATE"),
        "{}",
        r1.log()
    );
    // ... and with no peer for VRID 52 becomes master after Master_Down_Interval.
    assert!(
        wait_until(Duration::from_secs(3), || r1
            .instance_state("VI_2")
            .as_deref()
            == Some("MASTER")),
        "{}",
        r1.log()
    );
    assert_eq!(
        r1.instance_state("VI_1"),
        None,
        "VI_1 is gone from the status"
    );
    assert!(lab.has_address("r1", "10.0.0.200"));
    // VI_1 resigned with priority 0, so r2 took it over after Skew_Time.
    assert!(
        r2.wait_state("MASTER", Duration::from_secs(3)),
        "{}",
        r2.log()
    );
    assert!(!lab.has_address("r1", "10.0.0.100"));
    let resigned = adverts_from(&capture.kept(), r1_mac, reloaded_at)
        .into_iter()
        .any(|(_, a)| a.vrid == 51 && a.priority == 0);
    assert!(resigned, "a priority-0 advert for VRID 51");
}

#[test]
fn a_broken_configuration_on_reload_changes_nothing() {
    needs_root!("a_broken_configuration_on_reload_changes_nothing");
    let lab = Lab::new("reload-bad").unwrap();
    let config = [instance("VI_1", 51, 150, &["10.0.0.100/24"])];
    let (r1, r2, capture) = pair(&lab, &config);
    let r1_mac = lab.mac_bytes("r1").unwrap();
    // Past the election: the window below starts three intervals before the reload and
    // must hold steady-state adverts only.
    std::thread::sleep(INTERVAL * 5);
    let transitions = (r1.counter("transitions"), r2.counter("transitions"));
    let reloaded_at = Instant::now();
    let broken = render(&config).replace("priority = 150", "priority = 300");
    assert!(!r1.reload(&broken).unwrap(), "the reload is rejected");
    let rejected = reloaded_at.elapsed();
    let log = r1.log();
    assert!(
        log.contains("haldir.toml:") && log.contains("priority"),
        "the error names file:line:col: {log}"
    );
    std::thread::sleep(Duration::from_millis(800));
    // From three intervals before the reload: a gap at the reload itself shows too.
    let adverts: Vec<(Instant, AdvertRepr)> =
        adverts_from(&capture.kept(), r1_mac, reloaded_at - INTERVAL * 3);
    let times: Vec<Instant> = adverts.iter().map(|(at, _)| *at).collect();
    let gap = largest_gap(&around(&times, reloaded_at, reloaded_at + rejected));
    let offsets = offsets_ms(&times, reloaded_at);
    eprintln!(
        "broken reload: {} adverts, the largest gap {gap:?} (interval {INTERVAL:?}); adverts \
         at (ms from the reload, rejected after {rejected:?}): {}",
        adverts.len(),
        offsets
    );
    // About 11 adverts in those 1.1 s or more; fewer than half of that
    // means the master stopped (or the capture saw nothing, which proves nothing either).
    assert!(
        adverts.len() >= 5,
        "the master kept advertising through the rejected reload: {} adverts captured",
        adverts.len()
    );
    assert!(
        adverts.iter().all(|(_, a)| a.priority == 150),
        "priority unchanged: {:?}",
        adverts.iter().map(|(_, a)| a.priority).collect::<Vec<_>>()
    );
    assert!(
        gap < RELOAD_GAP_BOUND,
        "the adverts paused across the rejected reload: the largest gap was {gap:?}"
    );
    assert_eq!(
        (r1.counter("transitions"), r2.counter("transitions")),
        transitions
    );
    assert!(lab.has_address("r1", "10.0.0.100"));
    assert!(r1.is_running());
}
