//! Hostile and malformed protocol-112 traffic against a running haldir pair.
//!
//! An attacker host on the lab bridge sends crafted packets to 224.0.0.18 through a raw
//! socket ([`haldir_lab::Injector`]): truncated adverts, bad checksums, TTL 254,
//! count/length mismatches, a foreign VRID, a version-2 advert to a version-3 pair, CARP as
//! ucarp sends it, and (to a version-2 pair with a password) wrong passwords and a wrong
//! interval. Each kind is sent 50 times. Each packet must be dropped and counted once under
//! its reason in both routers' status files, and nothing else may change: the master stays
//! master, the backup backup, no transition, the VIP on the master only, both processes
//! alive. A control (a valid low-priority advert from the same attacker) proves the
//! crafted traffic does reach both routers. Needs root; skipped loudly otherwise.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use haldir_lab::inject::{advert_repr, carp_packet};
use haldir_lab::pair::{describe, total_drops, Burst, Pair};
use haldir_lab::{self as lab, Haldir, HaldirInstance, Injector, Lab};
use haldir_vrrp::wire::vrrp::{field, Auth, Version, VRRP_TTL};

const VIP: &str = "10.0.0.100";
const VIP_CIDR: &str = "10.0.0.100/24";
const ATTACKER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 66);
/// How many copies of each hostile packet are sent.
const COPIES: u64 = 50;
const SPACING: Duration = Duration::from_millis(2);

use haldir_lab::skip_unless_root;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

fn vip() -> Ipv4Addr {
    VIP.parse().unwrap()
}

/// Routers r1 (10.0.0.1), r2 (10.0.0.2) and the attacker ev (10.0.0.66).
fn lab_with_attacker(tag: &str) -> Lab {
    let lab = Lab::new(tag).unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
    lab.add_host("ev", &[&format!("{ATTACKER}/24")]).unwrap();
    lab
}

/// Sends `payload` [`COPIES`] times with `ttl`: each copy is dropped and counted exactly
/// once, under `reason`, by both routers; no priority-0 advert is accepted; nothing changes.
fn assert_dropped(
    pair: &Pair,
    injector: &Injector,
    what: &str,
    payload: &[u8],
    ttl: u8,
    reason: &str,
) {
    pair.assert_dropped(
        injector,
        &Burst {
            what,
            payload,
            ttl,
            reason,
            copies: COPIES,
            spacing: SPACING,
            settle: Duration::from_millis(150),
            unmoved: ("priority_zero_received", false),
        },
    );
}

/// Control: `payload` (well-formed) is accepted by both routers, `COPIES` times.
fn assert_accepted(pair: &Pair, injector: &Injector, what: &str, payload: &[u8]) {
    let routers = pair.routers();
    let before: Vec<(u64, u64)> = routers
        .iter()
        .map(|h| (h.counter("adverts_received"), total_drops(h)))
        .collect();
    injector
        .send_many(payload, VRRP_TTL, COPIES as usize, SPACING)
        .unwrap();
    for (h, (received_before, _)) in routers.iter().zip(&before) {
        assert!(
            lab::wait_until(Duration::from_secs(5), || h.counter("adverts_received")
                >= received_before + COPIES),
            "{what}: {} accepted only {} of {COPIES}\n{}",
            h.host(),
            h.counter("adverts_received") - received_before,
            describe(&routers)
        );
    }
    for (h, (_, drops_before)) in routers.iter().zip(&before) {
        assert_eq!(
            total_drops(h),
            *drops_before,
            "{what}: {} dropped some",
            h.host()
        );
    }
    pair.assert_undisturbed(what);
}

#[test]
fn v3_pair_drops_and_counts_malformed_and_foreign_protocol_112_packets() {
    let name = "v3_pair_drops_and_counts_malformed_and_foreign_protocol_112_packets";
    if skip_unless_root(name) {
        return;
    }
    let started = Instant::now();
    let lab = lab_with_attacker("hostile-v3");
    let instance =
        |priority| HaldirInstance::v3(51, priority, Duration::from_millis(100), &[VIP_CIDR]);
    let r1 = Haldir::start(&lab, "r1", binary(), &[instance(150)]).unwrap();
    let r2 = Haldir::start(&lab, "r2", binary(), &[instance(100)]).unwrap();
    let pair = Pair::elected(&lab, &r1, &r2, VIP, Duration::from_secs(5));
    let ev = Injector::open(&lab, "ev", ATTACKER).unwrap();
    let v3 = |vrid, priority| {
        ev.advert(&advert_repr(
            Version::V3,
            vrid,
            priority,
            10,
            Auth::None,
            &[vip()],
        ))
    };

    // Control: a valid advert from the attacker, priority 50 (below both), is accepted.
    assert_accepted(&pair, &ev, "valid priority-50 advert", &v3(51, 50));

    // Shorter than the 8-byte header, several lengths.
    let resign = v3(51, 0);
    for len in [0, 1, 4, 7] {
        assert_dropped(
            &pair,
            &ev,
            &format!("{len}-byte truncated advert"),
            &resign[..len],
            VRRP_TTL,
            "truncated",
        );
    }

    // A priority-0 advert with one bit of its checksum flipped.
    let mut bad_checksum = v3(51, 0);
    bad_checksum[field::CHECKSUM.start] ^= 0x01;
    assert_dropped(
        &pair,
        &ev,
        "bad checksum",
        &bad_checksum,
        VRRP_TTL,
        "bad_checksum",
    );

    // A valid priority-0 advert for our VRID that was routed (TTL 254): accepted, it
    // would make the backup take over after Skew_Time.
    assert_dropped(
        &pair,
        &ev,
        "TTL 254 priority-0 advert",
        &v3(51, 0),
        254,
        "bad_ttl",
    );

    // Count and length disagree; checksums valid so the length check is what rejects.
    let mut count_too_high = v3(51, 0);
    count_too_high[field::COUNT] = 2;
    ev.refill_checksum(&mut count_too_high);
    assert_dropped(
        &pair,
        &ev,
        "count 2, one address",
        &count_too_high,
        VRRP_TTL,
        "length_mismatch",
    );
    let mut count_too_low = ev.advert(&advert_repr(
        Version::V3,
        51,
        0,
        10,
        Auth::None,
        &[vip(), ATTACKER],
    ));
    count_too_low[field::COUNT] = 1;
    ev.refill_checksum(&mut count_too_low);
    assert_dropped(
        &pair,
        &ev,
        "count 1, two addresses",
        &count_too_low,
        VRRP_TTL,
        "length_mismatch",
    );
    let mut cut = v3(51, 0);
    cut.truncate(10);
    ev.refill_checksum(&mut cut);
    assert_dropped(
        &pair,
        &ev,
        "advert cut inside its address",
        &cut,
        VRRP_TTL,
        "length_mismatch",
    );
    let mut trailing = v3(51, 0);
    trailing.extend_from_slice(&[0; 4]);
    ev.refill_checksum(&mut trailing);
    assert_dropped(
        &pair,
        &ev,
        "advert with trailing bytes",
        &trailing,
        VRRP_TTL,
        "length_mismatch",
    );

    // Another virtual router, with a priority that would preempt ours.
    assert_dropped(
        &pair,
        &ev,
        "VRID 99, priority 200",
        &v3(99, 200),
        VRRP_TTL,
        "unknown_vrid",
    );

    // A well-formed version-2 priority-0 advert for our VRID: we run version 3.
    let v2_resign = ev.advert(&advert_repr(Version::V2, 51, 0, 100, Auth::None, &[vip()]));
    assert_dropped(
        &pair,
        &ev,
        "VRRPv2 advert",
        &v2_resign,
        VRRP_TTL,
        "version_mismatch",
    );

    // CARP (ucarp): first byte 0x21 like VRRPv2, advskew 0 where VRRP has the priority.
    let carp = carp_packet(51, 0, 1, 0x0000_0001_0000_002a, [0x5a; 20]);
    assert_dropped(
        &pair,
        &ev,
        "CARP advert for vhid 51",
        &carp,
        VRRP_TTL,
        "length_mismatch",
    );

    // Nothing deferred: wait several Master_Down_Intervals and look again.
    std::thread::sleep(Duration::from_millis(1200));
    pair.assert_undisturbed("the quiet period after the hostile traffic");

    // Control: the very advert sent with TTL 254 above, with TTL 255, is taken as a
    // resignation by both routers -- the TTL alone made the difference.
    let zero_before: Vec<u64> = pair
        .routers()
        .iter()
        .map(|h| h.counter("priority_zero_received"))
        .collect();
    ev.send_many(&v3(51, 0), VRRP_TTL, 5, Duration::from_millis(20))
        .unwrap();
    for (h, before) in pair.routers().iter().zip(zero_before) {
        assert!(
            lab::wait_until(Duration::from_secs(5), || h
                .counter("priority_zero_received")
                >= before + 5),
            "{} did not accept the TTL-255 priority-0 control",
            h.host()
        );
    }
    eprintln!("{name}: {:?}", started.elapsed());
}

#[test]
fn v2_pair_with_a_password_drops_wrong_passwords_intervals_ttl_and_carp() {
    let name = "v2_pair_with_a_password_drops_wrong_passwords_intervals_ttl_and_carp";
    if skip_unless_root(name) {
        return;
    }
    let started = Instant::now();
    let lab = lab_with_attacker("hostile-v2");
    let instance = |priority| {
        let mut i = HaldirInstance::v2(52, priority, Duration::from_secs(1), &[VIP_CIDR]);
        i.extra_lines
            .push(r#"authentication = { auth_type = "PASS", auth_pass = "secret" }"#.into());
        i
    };
    let r1 = Haldir::start(&lab, "r1", binary(), &[instance(150)]).unwrap();
    let r2 = Haldir::start(&lab, "r2", binary(), &[instance(100)]).unwrap();
    let pair = Pair::elected(&lab, &r1, &r2, VIP, Duration::from_secs(12));
    let ev = Injector::open(&lab, "ev", ATTACKER).unwrap();
    let password = |text: &[u8]| {
        let mut data = [0u8; 8];
        data[..text.len()].copy_from_slice(text);
        Auth::Simple(data)
    };
    let v2 = |priority, interval_centis, auth| {
        ev.advert(&advert_repr(
            Version::V2,
            52,
            priority,
            interval_centis,
            auth,
            &[vip()],
        ))
    };

    assert_accepted(
        &pair,
        &ev,
        "valid priority-50 advert",
        &v2(50, 100, password(b"secret")),
    );
    assert_dropped(
        &pair,
        &ev,
        "priority 0, wrong password",
        &v2(0, 100, password(b"guess")),
        VRRP_TTL,
        "auth_mismatch",
    );
    assert_dropped(
        &pair,
        &ev,
        "priority 0, no authentication",
        &v2(0, 100, Auth::None),
        VRRP_TTL,
        "auth_mismatch",
    );
    assert_dropped(
        &pair,
        &ev,
        "priority 0, interval 2 s",
        &v2(0, 200, password(b"secret")),
        VRRP_TTL,
        "interval_mismatch",
    );
    assert_dropped(
        &pair,
        &ev,
        "TTL 254 priority-0 advert",
        &v2(0, 100, password(b"secret")),
        254,
        "bad_ttl",
    );
    let carp = carp_packet(52, 0, 1, 7, [0xc3; 20]);
    assert_dropped(
        &pair,
        &ev,
        "CARP advert for vhid 52",
        &carp,
        VRRP_TTL,
        "length_mismatch",
    );

    // A resignation accepted by the backup would hand over after Skew_Time (0.61 s).
    std::thread::sleep(Duration::from_millis(1500));
    pair.assert_undisturbed("the quiet period after the hostile traffic");
    eprintln!("{name}: {:?}", started.elapsed());
}
