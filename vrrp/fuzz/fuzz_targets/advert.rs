//! Fuzzes the VRRP advert decoder: it must never panic, and whatever it
//! accepts must emit and re-parse to the same advert.
//!
//! Each input is tried as received and, so the fuzzer gets past the checksum,
//! again with its checksum fixed up, over IPv4 and IPv6.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use haldir_vrrp::wire::vrrp::{AdvertRepr, Packet, VRRP_MULTICAST_V4, VRRP_MULTICAST_V6};
use libfuzzer_sys::fuzz_target;

fn round_trip(payload: &[u8], src: IpAddr, dst: IpAddr) {
    let Ok(advert) = AdvertRepr::parse(payload, src, dst) else {
        return;
    };
    // The length rule is exact, so the emitted message is as long as the input.
    assert_eq!(advert.buffer_len(), payload.len());
    let mut emitted = vec![0u8; advert.buffer_len()];
    advert.emit(&mut emitted, src, dst);
    let reparsed = AdvertRepr::parse(&emitted, src, dst).expect("emitted advert must parse");
    assert_eq!(reparsed, advert);
}

fuzz_target!(|data: &[u8]| {
    let families = [
        (
            IpAddr::V4(Ipv4Addr::new(10, 99, 0, 1)),
            IpAddr::V4(VRRP_MULTICAST_V4),
        ),
        (
            IpAddr::V6(Ipv6Addr::new(
                0xfe80, 0, 0, 0, 0x387b, 0xb1ff, 0xfee4, 0xf7c9,
            )),
            IpAddr::V6(VRRP_MULTICAST_V6),
        ),
    ];
    for (src, dst) in families {
        round_trip(data, src, dst);
        if let Ok(mut packet) = Packet::new_checked(data.to_vec()) {
            packet.fill_checksum(src, dst);
            round_trip(&packet.into_inner(), src, dst);
        }
    }
});
