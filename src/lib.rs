//! haldir: a keepalived replacement for LVS direct-routing clusters (VRRP + IPVS director).
//!
//! The library half of the crate holds the pieces that the `haldir` binary, the integration
//! tests (`tests/*.rs`) and the failover benchmark share. [`lab`] is the network-namespace
//! test bed: a bridge, hosts on veths, packet capture, client-side outage probes and
//! keepalived as a reference VRRP peer, all built from real kernel objects.
//! [`health_wiring`] runs the health checks and feeds the director's policy
//! (`haldir_director`), which turns them into the desired IPVS table. [`control`], [`metrics`], [`notify`], [`live`] and
//! [`systemd`] are the operator's tools (status and reload over a unix
//! socket, Prometheus metrics, notify scripts, sd-notify), started by
//! [`operator`].

pub mod arp_check;
pub mod bulk_resync;
pub mod control;
pub mod counters;
pub mod daemon;
pub mod health_wiring;
pub mod ipvs_ownership;
pub mod lab;
pub mod live;
pub mod metrics;
pub mod notify;
pub mod operator;
pub mod options;
pub mod privilege;
pub mod status;
pub mod sync_daemon;
pub mod systemd;
