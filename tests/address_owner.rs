//! An address owner run by the daemon, end to end (RFC 5798 §1 "IPvX Address
//! Owner", §5.2.4, §6.4.1, §6.4.3).
//!
//! r1's virtual address is its own interface address, 10.0.0.1, at priority
//! 255; r2 backs it up at priority 100 (haldir adds the address there on a
//! takeover). Everything is proven from outside haldir: the adverts and
//! gratuitous ARPs captured on the bridge (decoded with haldir-vrrp's wire
//! parsers), `ip addr` in the routers' namespaces, and the processes' exit
//! status. The status file only says which state each router reports.
//!
//! What a stopped owner leaves is a decision: it sends its priority-0 advert
//! (RFC 5798 §6.4.3 "Shutdown"), so r2 takes over after Skew_Time, adds the
//! address and announces it; r1 keeps the address, which is its interface's
//! and was never haldir's. Both kernels then hold it (that is the operator's
//! configuration: stopping VRRP on the owner does not unconfigure its
//! interface), and r2's announcements, sent after r1's last one, are what the
//! segment follows. The namespace tests need root and are skipped loudly
//! otherwise; the last test (`haldir check` accepts an owner) runs anywhere.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use haldir_lab::capture::{gratuitous_arps, vrrp_payload, Frame};
use haldir_lab::inject::advert_repr;
use haldir_lab::skip_unless_root;
use haldir_lab::{self as lab, Capture, FrameKind, Haldir, HaldirInstance, Injector, Lab};
use haldir_vrrp::wire::vrrp::{AdvertRepr, Auth, Version, VRRP_TTL};

const VRID: u8 = 51;
/// r1's interface address, and the virtual address: r1 owns it.
const OWNED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const OWNED_CIDR: &str = "10.0.0.1/24";
const FAST: Duration = Duration::from_millis(100);
const BACKUP_PRIORITY: u8 = 100;
/// The forging host: its address is above the owner's, so an owner that
/// applied RFC 5798 §6.4.3's tie-break to a second priority-255 advert would
/// step down.
const FORGER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 200);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

/// r1 owns 10.0.0.1; r2 is 10.0.0.2; x (10.0.0.200) is a bystander that can forge.
fn owner_lab(tag: &str) -> Lab {
    let lab = Lab::new(tag).unwrap();
    lab.add_host("r1", &[OWNED_CIDR]).unwrap();
    lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
    lab.add_host("x", &["10.0.0.200/24"]).unwrap();
    lab
}

fn instance(priority: u8) -> HaldirInstance {
    HaldirInstance::v3(VRID, priority, FAST, &[OWNED_CIDR])
}

use haldir_lab::describe_all as describe;

/// A captured advert of VRID [`VRID`] from `mac`: when, its IP source, the advert.
fn adverts_from(frames: &[Frame], mac: [u8; 6]) -> Vec<(Instant, Ipv4Addr, AdvertRepr)> {
    frames
        .iter()
        .filter(|f| f.kind == FrameKind::Vrrp4 && f.src_mac() == mac)
        .filter_map(|f| {
            let ip = &f.bytes[14..];
            let src = Ipv4Addr::from(<[u8; 4]>::try_from(ip.get(12..16)?).ok()?);
            let dst = Ipv4Addr::from(<[u8; 4]>::try_from(ip.get(16..20)?).ok()?);
            let advert =
                AdvertRepr::parse(vrrp_payload(&f.bytes)?, IpAddr::V4(src), IpAddr::V4(dst))
                    .ok()?;
            Some((f.at, src, advert))
        })
        .filter(|(_, _, a)| a.vrid == VRID)
        .collect()
}

/// `ip addr` of r1's eth0, for messages.
fn r1_addresses(lab: &Lab) -> Vec<String> {
    lab.addresses("r1", "eth0").unwrap_or_default()
}

#[test]
fn an_address_owner_starts_as_master_and_keeps_its_own_address_through_sigterm() {
    let test = "an_address_owner_starts_as_master_and_keeps_its_own_address_through_sigterm";
    if skip_unless_root(test) {
        return;
    }
    let lab = owner_lab("owner-term");
    let r1_mac = lab.mac_bytes("r1").unwrap();
    let r2_mac = lab.mac_bytes("r2").unwrap();
    let capture = Capture::start(&lab).unwrap();
    // Today's bug was here: with its only address a virtual one, the owner
    // found nothing to send from and exited.
    let r1 = Haldir::start(&lab, "r1", binary(), &[instance(255)]).unwrap();
    let r2 = Haldir::start(&lab, "r2", binary(), &[instance(BACKUP_PRIORITY)]).unwrap();
    assert!(
        lab::wait_until(Duration::from_secs(5), || r1.state().as_deref()
            == Some("MASTER")
            && r2.state().as_deref() == Some("BACKUP")),
        "expected r1 MASTER and r2 BACKUP\n{}",
        describe(&[&r1, &r2])
    );
    // A few intervals of a settled pair: r2, hearing the owner, never adds the address.
    std::thread::sleep(FAST * 5);
    assert!(
        !lab.has_address("r2", "10.0.0.1"),
        "r2 added the owner's address while r1 was master\n{}",
        describe(&[&r1, &r2])
    );
    assert_eq!(r2.state().as_deref(), Some("BACKUP"));

    let stopping = Instant::now();
    let status = r1.stop().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "haldir exited with {status} on SIGTERM"
    );
    let after_exit = r1_addresses(&lab);
    assert!(
        after_exit.iter().any(|a| a == OWNED_CIDR),
        "r1's interface lost its own address {OWNED_CIDR} when haldir stopped: eth0 has {after_exit:?}\n{}",
        describe(&[&r1])
    );
    assert!(
        lab::wait_until(Duration::from_secs(3), || r2.state().as_deref()
            == Some("MASTER")
            && lab.has_address("r2", "10.0.0.1")),
        "r2 did not take over after the owner stopped\n{}",
        describe(&[&r2])
    );
    std::thread::sleep(FAST * 3);
    let frames = capture.stop();

    // On the wire: the owner advertised at 255 from its own (the owned) address...
    let r1_adverts = adverts_from(&frames, r1_mac);
    let running: Vec<_> = r1_adverts
        .iter()
        .filter(|(_, _, a)| a.priority != 0)
        .collect();
    assert!(
        running.len() >= 5,
        "expected r1's adverts on the wire, saw {}",
        running.len()
    );
    for (_, source, advert) in &running {
        assert_eq!(advert.priority, 255, "r1 advertised {advert:?}");
        assert_eq!(*source, OWNED, "r1's advert came from {source}");
        assert_eq!(advert.addresses, vec![IpAddr::V4(OWNED)]);
    }
    // ...announced its address as soon as it started (RFC 5798 §6.4.1)...
    let first_advert = running[0].0;
    let r1_garps = gratuitous_arps(&frames, r1_mac, OWNED);
    assert!(
        r1_garps.iter().any(|at| *at < first_advert + FAST * 10),
        "no gratuitous ARP for {OWNED} from r1 on start (r1's GARPs at {r1_garps:?}, first advert at {first_advert:?})"
    );
    // ...and resigned with priority 0 on SIGTERM (RFC 5798 §6.4.3), still from its address.
    let resignations: Vec<_> = r1_adverts
        .iter()
        .filter(|(_, _, a)| a.priority == 0)
        .collect();
    assert_eq!(
        resignations.len(),
        1,
        "expected exactly one priority-0 advert from r1: {resignations:?}"
    );
    let (resigned_at, resign_source, _) = resignations[0];
    assert!(*resigned_at >= stopping);
    assert_eq!(*resign_source, OWNED);
    // r2 took over: it advertises, and announces the address after r1's last
    // announcement, so the segment follows r2.
    assert!(
        adverts_from(&frames, r2_mac)
            .iter()
            .any(|(at, _, a)| at > resigned_at && a.priority == BACKUP_PRIORITY),
        "no advert from r2 after r1 resigned"
    );
    // After r1's last advert at 255: on a loaded host r1's priority-0 advert can come
    // after r2's master-down timer (a CI run saw r1's link task send it 370 ms after
    // SIGTERM, and r2 take over 20 ms before it); r2 announces either way.
    let last_running = running
        .iter()
        .map(|(at, _, _)| *at)
        .max()
        .expect("r1 advertised");
    let r2_garps = gratuitous_arps(&frames, r2_mac, OWNED);
    assert!(
        r2_garps.iter().any(|at| *at > last_running),
        "r2 did not announce {OWNED} after taking over (r1's last advert at 255: {last_running:?}, r2's GARPs at {r2_garps:?})"
    );
    assert!(
        r2_garps.iter().max() > r1_garps.iter().max(),
        "r1 announced {OWNED} after r2 took over"
    );
    // And still, after everything: the owner's interface keeps its own address.
    assert!(
        r1_addresses(&lab).iter().any(|a| a == OWNED_CIDR),
        "r1's eth0 lost {OWNED_CIDR}: {:?}",
        r1_addresses(&lab)
    );
}

#[test]
fn a_forged_priority_255_advert_from_a_higher_address_neither_demotes_the_owner_nor_takes_its_address(
) {
    let test = "a_forged_priority_255_advert_from_a_higher_address_neither_demotes_the_owner_nor_takes_its_address";
    if skip_unless_root(test) {
        return;
    }
    let lab = owner_lab("owner-forged");
    let r1_mac = lab.mac_bytes("r1").unwrap();
    let r1 = Haldir::start(&lab, "r1", binary(), &[instance(255)]).unwrap();
    assert!(
        lab::wait_until(Duration::from_secs(5), || r1.state().as_deref()
            == Some("MASTER")),
        "r1 did not become MASTER\n{}",
        describe(&[&r1])
    );
    let transitions = r1.counter("transitions");
    let capture = Capture::start(&lab).unwrap();
    let forger = Injector::open(&lab, "x", FORGER).unwrap();
    let forged = forger.advert(&advert_repr(
        Version::V3,
        VRID,
        255,
        10,
        Auth::None,
        &[OWNED],
    ));
    // 30 forged adverts over 1.5 s: an owner that yielded would stop
    // advertising for the whole burst.
    let forging = Instant::now();
    forger
        .send_many(&forged, VRRP_TTL, 30, Duration::from_millis(50))
        .unwrap();
    let forged_until = Instant::now();
    std::thread::sleep(FAST * 5);
    let frames = capture.stop();

    // On the wire: the forged adverts went out, and r1 kept advertising at 255
    // all through them, never resigning.
    let forged_seen = frames
        .iter()
        .filter(|f| f.kind == FrameKind::Vrrp4 && f.src_mac() == lab.mac_bytes("x").unwrap())
        .count();
    assert!(
        forged_seen >= 30,
        "only {forged_seen} forged adverts on the wire"
    );
    let r1_adverts = adverts_from(&frames, r1_mac);
    assert!(
        r1_adverts.iter().all(|(_, _, a)| a.priority == 255),
        "r1 sent an advert below 255: {:?}",
        r1_adverts
            .iter()
            .map(|(_, _, a)| a.priority)
            .collect::<Vec<_>>()
    );
    let during = r1_adverts
        .iter()
        .filter(|(at, _, _)| *at > forging + FAST * 3 && *at < forged_until)
        .count();
    let expected = ((forged_until - forging).as_millis() / FAST.as_millis()) as usize;
    assert!(
        during >= expected / 3,
        "r1 sent {during} adverts while being forged at (about {expected} expected): it stepped down\n{}",
        describe(&[&r1])
    );
    assert!(
        r1_adverts.iter().any(|(at, _, _)| *at > forged_until),
        "r1 stopped advertising after the forged adverts"
    );
    // The kernel: the owner's address is where it was.
    assert!(
        r1_addresses(&lab).iter().any(|a| a == OWNED_CIDR),
        "r1's eth0 lost {OWNED_CIDR}: {:?}",
        r1_addresses(&lab)
    );
    // haldir's account agrees: no transition, every forged advert counted as a conflict,
    // logged once for the forger.
    assert_eq!(r1.state().as_deref(), Some("MASTER"));
    assert_eq!(r1.counter("transitions"), transitions);
    assert!(
        lab::wait_until(Duration::from_secs(2), || r1.drops("owner_conflict") >= 30),
        "owner_conflict drops: {}\n{}",
        r1.drops("owner_conflict"),
        describe(&[&r1])
    );
    assert_eq!(
        r1.log().matches("two address owners").count(),
        1,
        "the conflict is logged once per peer\n{}",
        r1.log()
    );
    let status = r1.stop().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        r1_addresses(&lab).iter().any(|a| a == OWNED_CIDR),
        "r1's eth0 lost {OWNED_CIDR} on stop: {:?}",
        r1_addresses(&lab)
    );
}

/// `haldir check` on `text` written to `dir/name`: its exit code and output.
fn check(dir: &Path, name: &str, text: &str) -> (Option<i32>, String) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let output = std::process::Command::new(binary())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .env_remove("HALDIR_LOG")
        .output()
        .expect("cannot run haldir");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[test]
fn check_accepts_an_address_owner_configuration_in_toml_and_keepalived_syntax() {
    let dir = std::env::temp_dir().join(format!("haldir-owner-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nversion = 3\n\
                virtual_router_id = 51\npriority = 255\nadvert_int = 1\n\
                virtual_ipaddress = [\"10.0.0.1/24\"]\n";
    let keepalived = "vrrp_instance VI_1 {\n    state MASTER\n    interface eth0\n    \
                      virtual_router_id 51\n    priority 255\n    advert_int 1\n    \
                      virtual_ipaddress {\n        10.0.0.1/24\n    }\n}\n";
    let results = [
        check(&dir, "owner.toml", toml),
        check(&dir, "keepalived.conf", keepalived),
    ];
    let _ = std::fs::remove_dir_all(&dir);
    for (code, output) in results {
        assert_eq!(code, Some(0), "haldir check rejected an owner: {output}");
        assert!(output.contains("valid (1 vrrp_instance)"), "{output}");
    }
}
