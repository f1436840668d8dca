//! Fuzzes the IPv4 receive path as the driver runs it: the raw socket's
//! datagram (IP header included) is decoded with `Ipv4Repr::parse`, its
//! payload with `AdvertRepr::parse` against the header's addresses, and an
//! advert that decodes is handed to a router (in Backup and in Master, v2 and
//! v3) with the header's TTL. Nothing may panic.
//!
//! Each input is tried as received and with both checksums (IP header, VRRP)
//! fixed up, so the fuzzer gets to the router.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use haldir_vrrp::router::{GarpConfig, Router, RouterConfig, State};
use haldir_vrrp::wire::ipv4::{self, Ipv4Repr};
use haldir_vrrp::wire::vrrp::{self, AdvertRepr, Auth, Version};
use libfuzzer_sys::fuzz_target;

fn router(advert: &AdvertRepr, priority: u8, auth: Auth) -> Router {
    Router::new(RouterConfig {
        version: advert.version,
        vrid: advert.vrid,
        priority,
        advert_interval_centis: match advert.version {
            Version::V2 => 100,
            _ => 5,
        },
        preempt: priority % 2 == 0,
        preempt_delay: Duration::ZERO,
        primary_address: IpAddr::V4(Ipv4Addr::new(10, 99, 0, 2)),
        virtual_addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 99, 0, 100))],
        excluded_addresses: Vec::new(),
        auth,
        garp: GarpConfig::default(),
    })
}

fn receive(datagram: &[u8]) {
    let Ok((header, payload)) = Ipv4Repr::parse(datagram) else {
        return;
    };
    let (source, destination) = (IpAddr::V4(header.src_addr), IpAddr::V4(header.dst_addr));
    let Ok(advert) = AdvertRepr::parse(payload, source, destination) else {
        return;
    };
    let start = Instant::now();
    // A backup (priority 100) and an address owner (255, so master at once),
    // with the advert's own authentication so v2 adverts get through.
    for priority in [100, 254, 255] {
        let mut r = router(&advert, priority, advert.auth.clone());
        r.startup(start);
        assert_ne!(r.state(), State::Initialize);
        let _ = r.handle_advert(start, source, header.ttl, &advert);
        while r.poll_action().is_some() {}
        // Let the timers run once, then hear the advert again.
        let later = r.poll_timeout().unwrap_or(start) + Duration::from_millis(1);
        r.handle_timeout(later);
        let _ = r.handle_advert(later, source, header.ttl, &advert);
        while r.poll_action().is_some() {}
    }
}

fn fixed_up(data: &[u8]) -> Option<Vec<u8>> {
    let mut ip = ipv4::Packet::new_checked(data.to_vec()).ok()?;
    ip.fill_checksum();
    let mut datagram = ip.into_inner();
    let (header, payload) = Ipv4Repr::parse(&datagram).ok()?;
    let offset = payload.as_ptr() as usize - datagram.as_ptr() as usize;
    let mut advert = vrrp::Packet::new_checked(payload.to_vec()).ok()?;
    advert.fill_checksum(header.src_addr.into(), header.dst_addr.into());
    let advert = advert.into_inner();
    datagram[offset..offset + advert.len()].copy_from_slice(&advert);
    Some(datagram)
}

fuzz_target!(|data: &[u8]| {
    receive(data);
    if let Some(datagram) = fixed_up(data) {
        receive(&datagram);
    }
});
