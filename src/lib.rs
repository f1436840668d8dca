//! haldir: a keepalived replacement for LVS direct-routing clusters (VRRP + IPVS director).
//!
//! The library half of the crate holds the pieces that the `haldir` binary, the integration
//! tests (`tests/*.rs`) and the failover benchmark share. [`lab`] is the network-namespace
//! test bed: a bridge, hosts on veths, packet capture, client-side outage probes and
//! keepalived as a reference VRRP peer, all built from real kernel objects.
//! [`ipvs_wiring`] turns the configuration's virtual servers into the
//! desired IPVS table.

pub mod daemon;
pub mod ipvs_wiring;
pub mod lab;
