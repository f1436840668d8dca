//! Fuzzes the advert authentication trailer (`auth_hmac`): the trailer
//! parser, the signed-advert decoder and the receive checks must never
//! panic; a trailer that parses must emit back to the same bytes; an advert
//! that decodes, signed again with the same key id and sequence, must decode
//! to the same advert and verify — and its replay must not.
//!
//! Inputs are tried over IPv4 (from 198.51.100.10) and IPv6 (from fe80::10),
//! as received and with the checksum fixed up (over the message for IPv4,
//! over the whole payload for IPv6, as the wire format says). The key is the
//! draft appendix's (bytes 0..32), so the seed corpus verifies.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use haldir_vrrp::auth::{AntiReplay, AuthConfig, AuthKey, Authenticator, Mode, Verdict};
use haldir_vrrp::wire::auth::{self, TrailerRepr, TRAILER_LEN};
use haldir_vrrp::wire::vrrp::{AdvertRepr, Packet, VRRP_MULTICAST_V4, VRRP_MULTICAST_V6};
use libfuzzer_sys::fuzz_target;

fn secret() -> Vec<u8> {
    (0u8..32).collect()
}

fn authenticator() -> Authenticator {
    Authenticator::new(AuthConfig {
        keys: vec![AuthKey {
            id: 1,
            secret: secret(),
        }],
        active_key: 1,
        mode: Mode::Enforce,
        anti_replay: AntiReplay::Monotonic,
    })
}

fn decode(payload: &[u8], src: IpAddr, dst: IpAddr) {
    let Ok((advert, trailer)) = AdvertRepr::parse_signed(payload, src, dst) else {
        return;
    };
    let Some(range) = trailer else {
        return;
    };
    assert_eq!(range.len(), TRAILER_LEN);
    assert_eq!(range.end, payload.len());
    let (message, trailer_bytes) = payload.split_at(range.start);
    let now = Duration::from_secs(1_750_000_000);
    let _ = authenticator().check(now, src, message, Some(trailer_bytes));
    let Ok(trailer) = TrailerRepr::parse(trailer_bytes) else {
        return;
    };
    // Signed again with the same key id and sequence: same advert, verifies once.
    let key = auth::key(&secret());
    let mut signed = vec![0u8; advert.buffer_len() + TRAILER_LEN];
    advert.emit_signed(&mut signed, src, dst, &key, 1, trailer.sequence);
    let (again, again_trailer) =
        AdvertRepr::parse_signed(&signed, src, dst).expect("a signed advert must decode");
    assert_eq!(again, advert);
    let split = again_trailer.expect("it has a trailer").start;
    let mut receiver = authenticator();
    assert_eq!(
        receiver.check(now, src, &signed[..split], Some(&signed[split..])),
        Verdict::Authenticated
    );
    assert_eq!(
        receiver.check(now, src, &signed[..split], Some(&signed[split..])),
        Verdict::Dropped(haldir_vrrp::auth::AuthFailure::Replay)
    );
}

/// The checksum fixed up as a sender would compute it.
fn fixed_up(data: &[u8], src: IpAddr, dst: IpAddr) -> Option<Vec<u8>> {
    let mut bytes = data.to_vec();
    let covered = if src.is_ipv4() && bytes.len() > TRAILER_LEN + 8 {
        bytes.len() - TRAILER_LEN
    } else {
        bytes.len()
    };
    let mut packet = Packet::new_checked(&mut bytes[..covered]).ok()?;
    packet.fill_checksum(src, dst);
    Some(bytes)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(trailer) = TrailerRepr::parse(data) {
        let mut out = [0u8; TRAILER_LEN];
        trailer.emit(&mut out);
        assert_eq!(&out[..], data);
    }
    let families = [
        (
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10)),
            IpAddr::V4(VRRP_MULTICAST_V4),
        ),
        (
            IpAddr::V6("fe80::10".parse::<Ipv6Addr>().unwrap()),
            IpAddr::V6(VRRP_MULTICAST_V6),
        ),
    ];
    for (src, dst) in families {
        decode(data, src, dst);
        if let Some(fixed) = fixed_up(data, src, dst) {
            decode(&fixed, src, dst);
        }
        // Any split into message and trailer: the checks must not panic.
        let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
        let _ = authenticator().check(
            Duration::from_secs(1_750_000_000),
            src,
            &data[..split],
            Some(&data[split..]),
        );
    }
});
