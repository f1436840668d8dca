//! Wire formats haldir sends and receives: VRRP v2/v3 adverts and the raw
//! IPv4 header in front of them, gratuitous ARP and unsolicited IPv6 Neighbor
//! Advertisements with the Ethernet header they share ([`ethernet`]), and the
//! Internet checksum; the optional
//! HMAC-SHA256 trailer that authenticates adverts ([`auth`]).
//!
//! Each format is a zero-copy `Packet<T: AsRef<[u8]>>` view with named byte
//! offsets plus a checked `*Repr` with `parse` and `emit`. Decode errors are
//! small per-format enums whose `as_str` names are stable counter labels;
//! nothing here panics on received bytes.

pub mod arp;
pub mod auth;
pub mod checksum;
pub mod ethernet;
pub mod ipv4;
pub mod ndisc;
pub mod vrrp;

pub use arp::{ArpError, ArpRepr, GratuitousArp, Operation as ArpOperation};
pub use ipv4::{Ipv4Error, Ipv4Repr};
pub use ndisc::{NaRepr, NdiscError, UnsolicitedNa};
pub use vrrp::{
    AdvertRepr, Auth, DecodeError, Version, VRRP_MULTICAST_V4, VRRP_MULTICAST_V6, VRRP_PROTOCOL,
    VRRP_TTL,
};
