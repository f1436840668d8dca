//! Fuzzes the frame decoders (ARP, Neighbor Advertisement, IPv4 header): they
//! must never panic, and whatever they accept must emit and re-parse to the
//! same meaning. NA and IPv4 inputs are also tried with checksums fixed up.

#![no_main]

use haldir_vrrp::wire::{arp, ethernet, ipv4, ndisc};
use libfuzzer_sys::fuzz_target;

fn arp_round_trip(frame: &[u8]) {
    let Ok(repr) = arp::ArpRepr::parse(frame) else {
        return;
    };
    let ether = ethernet::Frame::new_checked(frame).expect("a parsed frame has its header");
    let mut emitted = vec![0u8; repr.frame_len()];
    repr.emit_frame(ether.source(), ether.destination(), &mut emitted);
    assert_eq!(arp::ArpRepr::parse(&emitted), Ok(repr));
}

fn na_round_trip(frame: &[u8]) {
    let Ok(repr) = ndisc::NaRepr::parse(frame) else {
        return;
    };
    let mut emitted = vec![0u8; repr.frame_len()];
    repr.emit(&mut emitted);
    assert_eq!(ndisc::NaRepr::parse(&emitted), Ok(repr));
}

fn ipv4_round_trip(datagram: &[u8]) {
    let Ok((repr, payload)) = ipv4::Ipv4Repr::parse(datagram) else {
        return;
    };
    assert_eq!(repr.payload_len, payload.len());
    let mut emitted = vec![0u8; repr.buffer_len() + payload.len()];
    repr.emit(&mut emitted);
    emitted[repr.buffer_len()..].copy_from_slice(payload);
    let (again, again_payload) =
        ipv4::Ipv4Repr::parse(&emitted).expect("emitted header must parse");
    assert_eq!(again, repr);
    assert_eq!(again_payload, payload);
}

fuzz_target!(|data: &[u8]| {
    arp_round_trip(data);
    na_round_trip(data);
    ipv4_round_trip(data);

    if let Ok(mut packet) = ndisc::Packet::new_checked(data.to_vec()) {
        packet.fill_checksum();
        na_round_trip(&packet.into_inner());
    }
    if let Ok(mut packet) = ipv4::Packet::new_checked(data.to_vec()) {
        packet.fill_checksum();
        ipv4_round_trip(&packet.into_inner());
    }
});
