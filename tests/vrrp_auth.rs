//! `auth_hmac` from the outside: haldir pairs in network namespaces, adverts
//! captured on the lab bridge, hostile adverts injected through raw sockets.
//!
//! - enforce: replayed (captured from a third, genuine router), forged (bad
//!   HMAC), wrong-secret, unknown-key-id, stale and unsigned adverts are each
//!   dropped and counted under their own reason by both routers, and none of
//!   them moves either router (each would, if accepted: priority 255 or a
//!   priority-0 resignation);
//! - permissive: failing adverts are counted and still accepted;
//! - receive-only: adverts go out unsigned, signed ones are verified;
//! - key rotation (v2, 1 s): both routers reloaded in turn through
//!   [old] → [old,new] signing old → [old,new] signing new → [new], with no
//!   transition, no authentication drop and no gap in the master's adverts
//!   beyond one interval plus a margin;
//! - IPv6: a signed pair authenticates, and ignores an unsigned router.
//!
//! Needs root; skipped loudly otherwise. Everything runs in namespaces the
//! lab creates and removes (also when a test fails).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use haldir_lab::capture::{Capture, Frame, FrameKind};
use haldir_lab::pair::{describe, total_drops, Burst, Pair};
use haldir_lab::{self as lab, skip_unless_root, Haldir, HaldirInstance, Injector, Lab};
use haldir_vrrp::auth::clock_sequence;
use haldir_vrrp::wire::auth::{self as wire_auth, TRAILER_LEN};
use haldir_vrrp::wire::vrrp::{AdvertRepr, Auth, Version, VRRP_MULTICAST_V4, VRRP_TTL};

const VIP: &str = "10.0.0.100";
const VIP_CIDR: &str = "10.0.0.100/24";
const VRID: u8 = 51;
const ATTACKER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 66);
const R3: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const FAST: Duration = Duration::from_millis(100);
/// Copies of each hostile advert.
const COPIES: u64 = 20;
const SPACING: Duration = Duration::from_millis(2);

/// The shared key (32 bytes) and a second one for the rotation.
const KEY_OLD: [u8; 32] = [0x5a; 32];
const KEY_NEW: [u8; 32] = [0xc3; 32];
/// A secret nobody configured.
const KEY_WRONG: [u8; 32] = [0x77; 32];

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

fn hex(bytes: &[u8]) -> String {
    let digits: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("hex:{digits}")
}

/// The `auth_hmac` line of an instance: `keys` as (id, value), signing with
/// `active`, in `mode`, with a 60 s freshness window (so a replay within the
/// test is told apart from a stale advert).
fn auth_line(keys: &[(u8, String)], active: u8, mode: &str) -> String {
    let keys: Vec<String> = keys
        .iter()
        .map(|(id, value)| format!("{{ id = {id}, value = {value:?} }}"))
        .collect();
    format!(
        "auth_hmac = {{ key = [{}], active_key = {active}, mode = {mode:?}, time_window = 60 }}",
        keys.join(", ")
    )
}

fn v3(priority: u8, auth: Option<String>) -> HaldirInstance {
    let mut instance = HaldirInstance::v3(VRID, priority, FAST, &[VIP_CIDR]);
    instance.extra_lines.extend(auth);
    instance
}

fn vip() -> Ipv4Addr {
    VIP.parse().unwrap()
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// A VRRPv3 advert from `source` to 224.0.0.18, signed with `secret` under
/// `key_id` and `sequence`, or unsigned.
fn advert(source: Ipv4Addr, priority: u8, signed: Option<(&[u8], u8, u64)>) -> Vec<u8> {
    let repr = AdvertRepr {
        version: Version::V3,
        vrid: VRID,
        priority,
        advert_interval_centis: 10,
        auth: Auth::None,
        addresses: vec![IpAddr::V4(vip())],
    };
    let (src, dst) = (IpAddr::V4(source), IpAddr::V4(VRRP_MULTICAST_V4));
    match signed {
        Some((secret, key_id, sequence)) => {
            let mut buf = vec![0; repr.buffer_len() + TRAILER_LEN];
            let key = wire_auth::key(secret);
            repr.emit_signed(&mut buf, src, dst, &key, key_id, sequence);
            buf
        }
        None => {
            let mut buf = vec![0; repr.buffer_len()];
            repr.emit(&mut buf, src, dst);
            buf
        }
    }
}

/// The VRRP message of a captured frame, without Ethernet padding.
fn payload(frame: &Frame) -> Option<Vec<u8>> {
    let ip = frame.bytes.get(14..)?;
    match frame.kind {
        FrameKind::Vrrp4 => {
            let header = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            ip.get(header..total).map(<[u8]>::to_vec)
        }
        FrameKind::Vrrp6 => {
            let length = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            ip.get(40..40 + length).map(<[u8]>::to_vec)
        }
        _ => None,
    }
}

/// (capture time, VRRP message) of every advert sent from `mac`.
fn adverts_from(frames: &[Frame], mac: [u8; 6]) -> Vec<(Instant, Vec<u8>)> {
    frames
        .iter()
        .filter(|f| f.kind.is_vrrp() && f.src_mac() == mac)
        .filter_map(|f| Some((f.at, payload(f)?)))
        .collect()
}

fn status_u64(h: &Haldir, path: &[&str]) -> u64 {
    let Some(status) = h.status() else { return 0 };
    let mut value = &status["instances"][0];
    for key in path {
        value = &value[*key];
    }
    value.as_u64().unwrap_or(0)
}

fn accepted(h: &Haldir, reason: &str) -> u64 {
    status_u64(h, &["auth_accepted", reason])
}

/// Routers r1 and r2 on one segment, plus r3 and the attacker ev.
fn lab_of_four(tag: &str) -> Lab {
    let lab = Lab::new(tag).unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
    lab.add_host("r3", &[&format!("{R3}/24")]).unwrap();
    lab.add_host("ev", &[&format!("{ATTACKER}/24")]).unwrap();
    lab
}

/// Sends `payload` [`COPIES`] times: each copy is dropped and counted once under `reason`
/// by both routers, the master accepts nothing (the backup keeps accepting the master's own
/// adverts meanwhile), and nothing else changes.
fn assert_dropped(pair: &Pair, injector: &Injector, what: &str, payload: &[u8], reason: &str) {
    pair.assert_dropped(
        injector,
        &Burst {
            what,
            payload,
            ttl: VRRP_TTL,
            reason,
            copies: COPIES,
            spacing: SPACING,
            // Let the master's own adverts reach the backup: a late count under another
            // reason, or the master stepping down, shows up then.
            settle: Duration::from_millis(300),
            unmoved: ("adverts_received", true),
        },
    );
}

/// Sends `count` adverts made by `make(n)`; both routers accept every one
/// and count it with `counter` (a status path), dropping none.
fn assert_accepted(
    pair: &Pair,
    injector: &Injector,
    what: &str,
    make: impl Fn(u64) -> Vec<u8>,
    counter: &[&str],
) {
    let routers = pair.routers();
    let before: Vec<(u64, u64, u64)> = routers
        .iter()
        .map(|h| {
            (
                h.counter("adverts_received"),
                status_u64(h, counter),
                total_drops(h),
            )
        })
        .collect();
    for n in 0..COPIES {
        injector.send(&make(n), VRRP_TTL).unwrap();
        std::thread::sleep(SPACING);
    }
    for (h, (received, counted, _)) in routers.iter().zip(&before) {
        assert!(
            lab::wait_until(Duration::from_secs(5), || {
                h.counter("adverts_received") >= received + COPIES
                    && status_u64(h, counter) >= counted + COPIES
            }),
            "{what}: {} accepted {} and counted {} under {counter:?}, expected {COPIES}\n{}",
            h.host(),
            h.counter("adverts_received") - received,
            status_u64(h, counter) - counted,
            describe(&routers)
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    for (h, (_, _, drops)) in routers.iter().zip(&before) {
        assert_eq!(
            total_drops(h),
            *drops,
            "{what}: {} dropped some\n{}",
            h.host(),
            describe(&routers)
        );
    }
    pair.assert_undisturbed(what);
}

/// Whether the backup authenticated adverts from the master over `during`.
fn authenticates(backup: &Haldir, during: Duration) -> bool {
    let before = backup.counter("adverts_authenticated");
    std::thread::sleep(during);
    backup.counter("adverts_authenticated") > before
}

/// r1 (150) and r2 (100), signed with `KEY_OLD` in enforce mode and elected; then a
/// genuine third router r3 (200) takes over and resigns: its signed adverts (the
/// priority-200 and priority-0 ones among them), as captured on the bridge.
fn signed_pair_and_r3_adverts(lab: &Lab) -> (Haldir<'_>, Haldir<'_>, Vec<Vec<u8>>) {
    let keys = [(1, hex(&KEY_OLD))];
    let enforce = |priority| v3(priority, Some(auth_line(&keys, 1, "enforce")));
    let r1 = Haldir::start(lab, "r1", binary(), &[enforce(150)]).unwrap();
    let r2 = Haldir::start(lab, "r2", binary(), &[enforce(100)]).unwrap();
    Pair::elected(lab, &r1, &r2, VIP, Duration::from_secs(10));
    let capture = Capture::start(lab).unwrap();
    let r3 = Haldir::start(lab, "r3", binary(), &[enforce(200)]).unwrap();
    assert!(
        r3.wait_state("MASTER", Duration::from_secs(5))
            && r1.wait_state("BACKUP", Duration::from_secs(5))
            && r2.wait_state("BACKUP", Duration::from_secs(5)),
        "r3 did not take over\n{}",
        describe(&[&r1, &r2, &r3])
    );
    std::thread::sleep(Duration::from_millis(300));
    r3.stop().unwrap();
    Pair::elected(lab, &r1, &r2, VIP, Duration::from_secs(10));
    let frames = capture.stop();
    let from_r3 = adverts_from(&frames, lab.mac_bytes("r3").unwrap())
        .into_iter()
        .map(|(_, message)| message)
        .collect();
    (r1, r2, from_r3)
}

#[test]
fn enforce_drops_and_counts_replayed_forged_wrong_key_stale_and_unsigned_adverts() {
    let name = "enforce_drops_and_counts_replayed_forged_wrong_key_stale_and_unsigned_adverts";
    if skip_unless_root(name) {
        return;
    }
    let lab = lab_of_four("auth-enforce");
    let (r1, r2, from_r3) = signed_pair_and_r3_adverts(&lab);
    let pair = Pair::elected(&lab, &r1, &r2, VIP, Duration::from_secs(10));
    let find = |priority: u8| {
        from_r3
            .iter()
            .find(|m| m[2] == priority)
            .cloned()
            .unwrap_or_else(|| panic!("no priority-{priority} advert captured from r3"))
    };
    let (r3_takeover, r3_resign) = (find(200), find(0));
    for message in [&r3_takeover, &r3_resign] {
        assert_eq!(
            message.len(),
            12 + TRAILER_LEN,
            "r3's adverts carry a trailer"
        );
        assert_eq!(message[12..14], [1, 1], "HMAC-SHA256 trailer, key id 1");
    }
    assert!(
        authenticates(&r2, Duration::from_millis(500)),
        "{}",
        describe(&pair.routers())
    );

    // Replays, from r3's address as captured.
    let replayer = Injector::open(&lab, "r3", R3).unwrap();
    assert_dropped(
        &pair,
        &replayer,
        "replayed priority-200 advert",
        &r3_takeover,
        "auth_replay",
    );
    assert_dropped(
        &pair,
        &replayer,
        "replayed priority-0 advert",
        &r3_resign,
        "auth_replay",
    );

    // Forged: the captured advert with one HMAC bit flipped, and one with its
    // priority raised.
    let mut flipped = r3_takeover.clone();
    *flipped.last_mut().unwrap() ^= 0x01;
    assert_dropped(
        &pair,
        &replayer,
        "captured advert, HMAC bit flipped",
        &flipped,
        "auth_bad_hmac",
    );
    let mut raised = r3_takeover.clone();
    raised[2] = 255;
    replayer.refill_checksum(&mut raised[..12]);
    assert_dropped(
        &pair,
        &replayer,
        "captured advert, priority raised",
        &raised,
        "auth_bad_hmac",
    );

    // The attacker's own adverts: priority 255 (the master would yield) and
    // priority 0 (the backup would take over).
    let ev = Injector::open(&lab, "ev", ATTACKER).unwrap();
    let fresh = || clock_sequence(unix_now());
    for priority in [255, 0] {
        assert_dropped(
            &pair,
            &ev,
            &format!("priority {priority} signed with a wrong secret under key id 1"),
            &advert(ATTACKER, priority, Some((&KEY_WRONG, 1, fresh()))),
            "auth_bad_hmac",
        );
        assert_dropped(
            &pair,
            &ev,
            &format!("priority {priority} signed under unknown key id 9"),
            &advert(ATTACKER, priority, Some((&KEY_OLD, 9, fresh()))),
            "auth_unknown_key",
        );
        let two_minutes_ago = clock_sequence(unix_now() - Duration::from_secs(120));
        assert_dropped(
            &pair,
            &ev,
            &format!("priority {priority} correctly signed two minutes ago"),
            &advert(ATTACKER, priority, Some((&KEY_OLD, 1, two_minutes_ago))),
            "auth_stale",
        );
        assert_dropped(
            &pair,
            &ev,
            &format!("unsigned priority {priority}"),
            &advert(ATTACKER, priority, None),
            "auth_missing",
        );
    }

    // Control: correctly signed low-priority adverts from the attacker's
    // address, each with a fresh sequence, are accepted.
    let base = fresh();
    assert_accepted(
        &pair,
        &ev,
        "correctly signed priority-50 adverts",
        |n| advert(ATTACKER, 50, Some((&KEY_OLD, 1, base + n))),
        &["adverts_authenticated"],
    );
}

#[test]
fn captured_signed_adverts_replayed_after_a_receiver_restart_are_dropped() {
    let name = "captured_signed_adverts_replayed_after_a_receiver_restart_are_dropped";
    if skip_unless_root(name) {
        return;
    }
    let lab = lab_of_four("auth-restart");
    let keys = [(1, hex(&KEY_OLD))];
    let enforce = |priority| v3(priority, Some(auth_line(&keys, 1, "enforce")));
    let (r1, r2, from_r3) = signed_pair_and_r3_adverts(&lab);
    let r3_takeover = from_r3
        .into_iter()
        .find(|m| m[2] == 200)
        .expect("a priority-200 advert captured from r3");

    // Both receivers restart (r2 killed, r1 stopped gracefully): what they had verified
    // from r3 is read back from their state files.
    r2.crash().unwrap();
    // The file is written within 250 ms of a change; r3's last advert was long before.
    let r2 = Haldir::start(&lab, "r2", binary(), &[enforce(100)]).unwrap();
    r1.stop().unwrap();
    let r1 = Haldir::start(&lab, "r1", binary(), &[enforce(150)]).unwrap();
    let pair = Pair::elected(&lab, &r1, &r2, VIP, Duration::from_secs(10));
    for host in ["r1", "r2"] {
        let kept = std::fs::read_dir(lab.dir().join(format!("{host}-state")))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>();
        assert!(
            kept.iter().any(|n| n.starts_with("auth-replay")),
            "{host} kept no replay state: {kept:?}"
        );
    }
    assert!(
        authenticates(&r2, Duration::from_millis(500)),
        "{}",
        describe(&pair.routers())
    );
    // Within the 60 s freshness window, r3's captured takeover is still a replay to both.
    let replayer = Injector::open(&lab, "r3", R3).unwrap();
    assert_dropped(
        &pair,
        &replayer,
        "r3's takeover replayed after both receivers restarted",
        &r3_takeover,
        "auth_replay",
    );
}

#[test]
fn permissive_accepts_failing_adverts_and_counts_them() {
    let name = "permissive_accepts_failing_adverts_and_counts_them";
    if skip_unless_root(name) {
        return;
    }
    let lab = lab_of_four("auth-permissive");
    let keys = [(1, hex(&KEY_OLD))];
    let permissive = |priority| v3(priority, Some(auth_line(&keys, 1, "permissive")));
    let capture = Capture::start(&lab).unwrap();
    let r1 = Haldir::start(&lab, "r1", binary(), &[permissive(150)]).unwrap();
    let r2 = Haldir::start(&lab, "r2", binary(), &[permissive(100)]).unwrap();
    let pair = Pair::elected(&lab, &r1, &r2, VIP, Duration::from_secs(10));
    assert!(
        authenticates(&r2, Duration::from_millis(500)),
        "{}",
        describe(&pair.routers())
    );
    let signed = adverts_from(&capture.stop(), lab.mac_bytes("r1").unwrap());
    assert!(!signed.is_empty());
    assert!(
        signed
            .iter()
            .all(|(_, m)| m.len() == 12 + TRAILER_LEN && m[13] == 1),
        "permissive mode signs every advert"
    );

    let ev = Injector::open(&lab, "ev", ATTACKER).unwrap();
    let fresh = clock_sequence(unix_now());
    assert_accepted(
        &pair,
        &ev,
        "priority-50 adverts signed with a wrong secret",
        |n| advert(ATTACKER, 50, Some((&KEY_WRONG, 1, fresh + n))),
        &["auth_accepted", "auth_bad_hmac"],
    );
    assert_accepted(
        &pair,
        &ev,
        "unsigned priority-50 adverts",
        |_| advert(ATTACKER, 50, None),
        &["auth_accepted", "auth_missing"],
    );
    assert_accepted(
        &pair,
        &ev,
        "priority-50 adverts under unknown key id 9",
        |n| advert(ATTACKER, 50, Some((&KEY_OLD, 9, fresh + n))),
        &["auth_accepted", "auth_unknown_key"],
    );
    for h in pair.routers() {
        assert_eq!(h.drops("auth_bad_hmac") + h.drops("auth_missing"), 0);
    }
}

#[test]
fn receive_only_sends_unsigned_adverts_and_verifies_signed_ones() {
    let name = "receive_only_sends_unsigned_adverts_and_verifies_signed_ones";
    if skip_unless_root(name) {
        return;
    }
    let lab = lab_of_four("auth-recvonly");
    let keys = [(1, hex(&KEY_OLD))];
    let receive_only = |priority| v3(priority, Some(auth_line(&keys, 1, "receive-only")));
    let capture = Capture::start(&lab).unwrap();
    let r1 = Haldir::start(&lab, "r1", binary(), &[receive_only(150)]).unwrap();
    let r2 = Haldir::start(&lab, "r2", binary(), &[receive_only(100)]).unwrap();
    let pair = Pair::elected(&lab, &r1, &r2, VIP, Duration::from_secs(10));
    let missing_before = accepted(&r2, "auth_missing");
    std::thread::sleep(Duration::from_millis(500));
    let unsigned = adverts_from(&capture.stop(), lab.mac_bytes("r1").unwrap());
    assert!(!unsigned.is_empty());
    assert!(
        unsigned.iter().all(|(_, m)| m.len() == 12),
        "receive-only sends plain RFC 5798 adverts"
    );
    // The backup hears them, unsigned, and keeps following the master.
    assert!(
        accepted(&r2, "auth_missing") >= missing_before + 3,
        "{}",
        describe(&pair.routers())
    );
    assert_eq!(r2.counter("adverts_authenticated"), 0);
    pair.assert_undisturbed("unsigned adverts from the master");

    let ev = Injector::open(&lab, "ev", ATTACKER).unwrap();
    let fresh = clock_sequence(unix_now());
    assert_accepted(
        &pair,
        &ev,
        "correctly signed priority-50 adverts",
        |n| advert(ATTACKER, 50, Some((&KEY_OLD, 1, fresh + n))),
        &["adverts_authenticated"],
    );
    assert_accepted(
        &pair,
        &ev,
        "priority-50 adverts signed with a wrong secret",
        |n| advert(ATTACKER, 50, Some((&KEY_WRONG, 1, fresh + COPIES + n))),
        &["auth_accepted", "auth_bad_hmac"],
    );
}

#[test]
fn key_rotation_by_reloads_loses_no_advert() {
    let name = "key_rotation_by_reloads_loses_no_advert";
    if skip_unless_root(name) {
        return;
    }
    let lab = lab_of_four("auth-rotate");
    // r2 reads its keys from files (mode 0600), r1 has them inline.
    let file = |tag: &str, key: &[u8]| {
        let path = lab.dir().join(format!("r2-{tag}.key"));
        std::fs::write(&path, format!("{}\n", hex(key))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        // Read again on reload by haldir's user (started as root, it runs as haldir).
        let (uid, gid) = haldir_lab::haldir_user().unwrap();
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
        format!("file:{}", path.display())
    };
    let (old_file, new_file) = (file("old", &KEY_OLD), file("new", &KEY_NEW));
    let config = |host: &str, priority: u8, keys: &[u8], active: u8| {
        let value = |id: u8| match (host, id) {
            ("r2", 1) => old_file.clone(),
            ("r2", _) => new_file.clone(),
            (_, 1) => hex(&KEY_OLD),
            (_, _) => hex(&KEY_NEW),
        };
        let keys: Vec<(u8, String)> = keys.iter().map(|&id| (id, value(id))).collect();
        let mut instance = HaldirInstance::v2(VRID, priority, Duration::from_secs(1), &[VIP_CIDR]);
        instance
            .extra_lines
            .push(auth_line(&keys, active, "enforce"));
        instance.render()
    };
    let r1 = Haldir::start_with_config(&lab, "r1", binary(), &config("r1", 150, &[1], 1)).unwrap();
    let r2 = Haldir::start_with_config(&lab, "r2", binary(), &config("r2", 100, &[1], 1)).unwrap();
    let pair = Pair::elected(&lab, &r1, &r2, VIP, Duration::from_secs(10));
    let drops_before = (total_drops(&r1), total_drops(&r2));
    let authenticated_before = r2.counter("adverts_authenticated");

    let capture = Capture::start(&lab).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    // Make before break: add the new key everywhere, sign with it
    // everywhere, then retire the old one; each router in turn.
    for (keys, active) in [(&[1u8, 2][..], 1u8), (&[1, 2][..], 2), (&[2][..], 2)] {
        for (h, priority) in [(&r1, 150), (&r2, 100)] {
            let applied = h.reload(&config(h.host(), priority, keys, active)).unwrap();
            assert!(applied, "reload of {} rejected:\n{}", h.host(), h.log());
            std::thread::sleep(Duration::from_millis(1200));
        }
    }
    let finished = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let frames = capture.stop();

    pair.assert_undisturbed("the key rotation");
    assert_eq!(
        (total_drops(&r1), total_drops(&r2)),
        drops_before,
        "a router dropped adverts during the rotation\n{}",
        describe(&pair.routers())
    );
    assert!(r2.counter("adverts_authenticated") > authenticated_before + 5);

    let adverts = adverts_from(&frames, lab.mac_bytes("r1").unwrap());
    // v2: 8-byte header, one address, 8 bytes of auth data, the trailer.
    assert!(adverts.iter().all(|(_, m)| m.len() == 20 + TRAILER_LEN));
    let key_ids: Vec<u8> = adverts.iter().map(|(_, m)| m[21]).collect();
    let first_new = key_ids
        .iter()
        .position(|&id| id == 2)
        .expect("never signed with key 2");
    assert!(
        key_ids[..first_new].iter().all(|&id| id == 1),
        "{key_ids:?}"
    );
    assert!(
        key_ids[first_new..].iter().all(|&id| id == 2),
        "{key_ids:?}"
    );
    assert!(first_new > 0, "nothing signed with key 1 was captured");
    let margin = Duration::from_millis(300);
    let largest_gap = adverts.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap();
    assert!(
        largest_gap <= Duration::from_secs(1) + margin,
        "largest gap between r1's adverts {largest_gap:?} (rotation took {:?})",
        finished - started
    );
    let during = adverts
        .iter()
        .filter(|(at, _)| *at >= started && *at <= finished)
        .count();
    let expected = (finished - started).as_secs();
    assert!(
        during as u64 + 1 >= expected,
        "{during} adverts in {:?}",
        finished - started
    );
}

#[test]
fn ipv6_enforce_pair_authenticates_and_ignores_an_unsigned_router() {
    let name = "ipv6_enforce_pair_authenticates_and_ignores_an_unsigned_router";
    if skip_unless_root(name) {
        return;
    }
    const VIP6: &str = "fd00::100";
    let lab = Lab::new("auth-v6").unwrap();
    lab.add_host("r1", &["fd00::1/64"]).unwrap();
    lab.add_host("r2", &["fd00::2/64"]).unwrap();
    lab.add_host("r3", &["fd00::3/64"]).unwrap();
    let keys = [(1, hex(&KEY_OLD))];
    let v6 = |priority, auth: Option<String>| {
        let mut instance = HaldirInstance::v3(VRID, priority, FAST, &["fd00::100/64"]);
        instance.extra_lines.extend(auth);
        instance
    };
    let signed = |priority| v6(priority, Some(auth_line(&keys, 1, "enforce")));
    let capture = Capture::start(&lab).unwrap();
    let r1 = Haldir::start(&lab, "r1", binary(), &[signed(150)]).unwrap();
    let r2 = Haldir::start(&lab, "r2", binary(), &[signed(100)]).unwrap();
    let pair = Pair::elected(&lab, &r1, &r2, VIP6, Duration::from_secs(10));
    assert!(
        authenticates(&r2, Duration::from_millis(500)),
        "{}",
        describe(&pair.routers())
    );

    // An unsigned router with a higher priority: its adverts are dropped as
    // unauthenticated (it becomes master on its own, split from the pair).
    let missing = (r1.drops("auth_missing"), r2.drops("auth_missing"));
    let r3 = Haldir::start(&lab, "r3", binary(), &[v6(200, None)]).unwrap();
    assert!(
        r3.wait_state("MASTER", Duration::from_secs(5)),
        "{}",
        describe(&[&r3])
    );
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        r1.drops("auth_missing") >= missing.0 + 5,
        "{}",
        describe(&pair.routers())
    );
    assert!(
        r2.drops("auth_missing") >= missing.1 + 5,
        "{}",
        describe(&pair.routers())
    );
    // It counts the pair's signed adverts as unexpected trailers.
    assert!(r3.drops("auth_unexpected") >= 5, "{}", describe(&[&r3]));
    r3.stop().unwrap();
    pair.assert_undisturbed("an unsigned priority-200 router");

    let frames = capture.stop();
    let r1_mac = lab.mac_bytes("r1").unwrap();
    let from_r1: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.kind == FrameKind::Vrrp6 && f.src_mac() == r1_mac)
        .collect();
    assert!(!from_r1.is_empty());
    for frame in from_r1 {
        // 8-byte header, one IPv6 address, the trailer; the checksum covers
        // the trailer (the RFC 8200 §8.1 transport checksum keepalived's
        // kernel writes), which the parser verifies against the IP header.
        let message = payload(frame).unwrap();
        assert_eq!(message.len(), 8 + 16 + TRAILER_LEN);
        let ip = &frame.bytes[14..];
        let address = |at: usize| {
            IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(&ip[at..at + 16]).unwrap(),
            ))
        };
        let (advert, trailer) = AdvertRepr::parse_signed(&message, address(8), address(24))
            .expect("r1's IPv6 advert parses, checksum included");
        assert_eq!(advert.priority, 150);
        assert_eq!(trailer, Some(24..24 + TRAILER_LEN));
    }
}

/// keepalived 2.2.7 (Debian's) has no `auth_hmac`: as the wire format
/// promises, it fails closed on a signed advert (too long for its address
/// count). With haldir enforcing and the higher priority, keepalived does not
/// hear it and becomes master too, while haldir drops keepalived's unsigned
/// adverts. With haldir in receive-only mode (unsigned adverts) and
/// keepalived the higher priority, haldir follows keepalived's unsigned
/// adverts, counting them, and no packet is rejected on either side.
#[test]
fn keepalived_without_the_extension_drops_signed_adverts_and_follows_receive_only() {
    use haldir_lab::keepalived::{Keepalived, KeepalivedConfig, KeepalivedState};
    let name = "keepalived_without_the_extension_drops_signed_adverts_and_follows_receive_only";
    if skip_unless_root(name) {
        return;
    }
    let keys = [(1, hex(&KEY_OLD))];
    for (mode, haldir_priority, keepalived_priority) in
        [("enforce", 200, 150), ("receive-only", 150, 200)]
    {
        let lab = lab_of_four(&format!("auth-ka-{}", &mode[..4]));
        let r1 = Haldir::start(
            &lab,
            "r1",
            binary(),
            &[v3(haldir_priority, Some(auth_line(&keys, 1, mode)))],
        )
        .unwrap();
        let ka = Keepalived::start(
            &lab,
            "r2",
            KeepalivedConfig::v3(VRID, keepalived_priority, FAST, &[VIP_CIDR]),
        )
        .unwrap();
        let context = || format!("{}\nkeepalived log:\n{}", describe(&[&r1]), ka.log());
        std::thread::sleep(Duration::from_millis(2000));
        if mode == "enforce" {
            assert!(ka.log().contains("vrrp packet too long"), "{}", context());
            assert_eq!(ka.state(), Some(KeepalivedState::Master), "{}", context());
            assert_eq!(r1.state().as_deref(), Some("MASTER"), "{}", context());
            assert!(r1.drops("auth_missing") >= 1, "{}", context());
        } else {
            assert_eq!(ka.state(), Some(KeepalivedState::Master), "{}", context());
            assert_eq!(r1.state().as_deref(), Some("BACKUP"), "{}", context());
            assert!(accepted(&r1, "auth_missing") >= 5, "{}", context());
            assert_eq!(total_drops(&r1), 0, "{}", context());
            assert!(!ka.log().contains("too long"), "{}", context());
        }
        ka.stop().unwrap();
        r1.stop().unwrap();
    }
}
