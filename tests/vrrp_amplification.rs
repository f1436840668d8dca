//! Amplification (issue 15, item 4): a master must not answer a flood of
//! lower-priority adverts with an advert plus one gratuitous ARP per virtual
//! address for each packet.
//!
//! In namespaces: r1 (priority 200) is master of one version-3 instance with 20
//! virtual addresses at 100 ms, r2 (priority 100) its backup. An attacker host
//! floods lower-priority adverts for the instance at ~10k packets/s through a raw
//! socket for two seconds. From the bridge capture: r1 sends at most about one
//! round of gratuitous ARPs per advert interval (the router answers each source
//! at most once per interval), r1's adverts keep flowing with the gaps a backup
//! needs (the gap bound and the median jitter are printed), and r2 never takes
//! over. Needs root; skipped loudly otherwise.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use haldir_lab::capture::{gratuitous_arps, vrrp_payload, Frame};
use haldir_lab::inject::advert_repr;
use haldir_lab::skip_unless_root;
use haldir_lab::{self as lab, Capture, Haldir, HaldirInstance, Injector, Lab};
use haldir_vrrp::wire::vrrp::{AdvertRepr, Auth, Version, VRRP_TTL};

const VRID: u8 = 51;
const INTERVAL: Duration = Duration::from_millis(100);
const VIP_COUNT: u8 = 20;
const ATTACKER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 66);
const FLOOD: Duration = Duration::from_secs(2);
/// Packets per millisecond of the flood (10k pps).
const PER_MILLISECOND: u32 = 10;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

fn vips() -> Vec<Ipv4Addr> {
    (0..VIP_COUNT)
        .map(|k| Ipv4Addr::new(10, 0, 0, 100 + k))
        .collect()
}

/// r1's adverts in the capture, decoded: (kernel receive time, advert).
fn adverts_from(frames: &[Frame], mac: [u8; 6]) -> Vec<(Instant, AdvertRepr)> {
    frames
        .iter()
        .filter(|f| f.kind.is_vrrp() && f.src_mac() == mac)
        .filter_map(|f| {
            let payload = vrrp_payload(&f.bytes)?;
            let source = std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
            let group = std::net::IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18));
            AdvertRepr::parse(payload, source, group)
                .ok()
                .map(|a| (f.at, a))
        })
        .filter(|(_, a)| a.vrid == VRID)
        .collect()
}

#[test]
fn a_flood_of_lower_priority_adverts_gets_at_most_one_garp_round_per_interval() {
    let name = "a_flood_of_lower_priority_adverts_gets_at_most_one_garp_round_per_interval";
    if skip_unless_root(name) {
        return;
    }
    let lab = Lab::new("amplify").unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
    lab.add_host("ev", &[&format!("{ATTACKER}/24")]).unwrap();
    let cidrs: Vec<String> = vips().iter().map(|v| format!("{v}/24")).collect();
    let cidr_refs: Vec<&str> = cidrs.iter().map(String::as_str).collect();
    let r1 = Haldir::start(
        &lab,
        "r1",
        binary(),
        &[HaldirInstance::v3(VRID, 200, INTERVAL, &cidr_refs)],
    )
    .unwrap();
    let r2 = Haldir::start(
        &lab,
        "r2",
        binary(),
        &[HaldirInstance::v3(VRID, 100, INTERVAL, &cidr_refs)],
    )
    .unwrap();
    let first_vip = vips()[0].to_string();
    let elected = lab::wait_until(Duration::from_secs(10), || {
        r1.state().as_deref() == Some("MASTER")
            && r2.state().as_deref() == Some("BACKUP")
            && lab.has_address("r1", &first_vip)
            && !lab.has_address("r2", &first_vip)
    });
    assert!(elected, "no election\n{}", lab::describe_all(&[&r1, &r2]));
    // Let the new master's announcement bursts end before watching.
    std::thread::sleep(Duration::from_secs(2));

    let injector = Injector::open(&lab, "ev", ATTACKER).unwrap();
    let flood = injector.advert(&advert_repr(Version::V3, VRID, 50, 10, Auth::None, &vips()));
    let capture = Capture::start(&lab).unwrap();
    let started = Instant::now();
    let mut sent = 0u64;
    let mut tick = started;
    while started.elapsed() < FLOOD {
        for _ in 0..PER_MILLISECOND {
            if injector.send(&flood, VRRP_TTL).is_ok() {
                sent += 1;
            }
        }
        tick += Duration::from_millis(1);
        if let Some(rest) = tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(rest);
        }
    }
    let flood_span = started.elapsed();
    // Late answers still in flight.
    std::thread::sleep(INTERVAL * 3);
    let frames = capture.stop();
    let ended = started + flood_span;

    let r1_mac = lab.mac_bytes("r1").unwrap();
    let intervals = (flood_span.as_millis() / INTERVAL.as_millis()) as usize;
    // One answer per interval, plus the edges and a margin for timer slack.
    let bound = 2 * intervals + 5;
    let mut total_garps = 0;
    for vip in vips() {
        let garps = gratuitous_arps(&frames, r1_mac, vip)
            .into_iter()
            .filter(|at| *at >= started)
            .count();
        total_garps += garps;
        assert!(
            garps <= bound,
            "r1 sent {garps} gratuitous ARPs for {vip} while flooded for {flood_span:?} \
             ({sent} lower-priority adverts sent); at most {bound} expected"
        );
    }
    println!(
        "{name}: {sent} lower-priority adverts in {flood_span:?} ({:.0} pps); r1 sent {total_garps} \
         gratuitous ARPs for {VIP_COUNT} addresses",
        sent as f64 / flood_span.as_secs_f64()
    );
    assert!(
        sent as f64 / flood_span.as_secs_f64() >= 2_000.0,
        "the flood was too thin to prove anything: {sent} packets"
    );

    // r1's adverts keep their pace under the flood: the gaps as the capture saw them.
    let adverts: Vec<Instant> = adverts_from(&frames, r1_mac)
        .into_iter()
        .filter(|(at, a)| *at >= started && *at <= ended && a.priority == 200)
        .map(|(at, _)| at)
        .collect();
    assert!(
        adverts.len() >= intervals / 2,
        "r1 sent only {} adverts in {flood_span:?}",
        adverts.len()
    );
    let gaps: Vec<Duration> = adverts.windows(2).map(|w| w[1] - w[0]).collect();
    let mut jitter: Vec<Duration> = gaps.iter().map(|g| g.abs_diff(INTERVAL)).collect();
    jitter.sort();
    let median = jitter[jitter.len() / 2];
    let worst_gap = gaps.iter().max().copied().unwrap_or_default();
    println!(
        "{name}: r1's advert gaps under the flood: median jitter {median:?}, worst gap {worst_gap:?} \
         ({} gaps)",
        gaps.len()
    );
    // The backup takes over after 3 intervals + skew: the worst gap must stay
    // well below; 2.5 intervals holds on a loaded 2-core machine.
    assert!(
        worst_gap < INTERVAL * 5 / 2,
        "a gap of {worst_gap:?} between r1's adverts under the flood"
    );
    assert!(
        median < INTERVAL / 4,
        "median advert jitter {median:?} under the flood"
    );

    // Nothing moved.
    assert_eq!(r1.state().as_deref(), Some("MASTER"));
    assert_eq!(r2.state().as_deref(), Some("BACKUP"));
    assert!(lab.has_address("r1", &first_vip) && !lab.has_address("r2", &first_vip));
    assert!(r1.is_running() && r2.is_running());
}
