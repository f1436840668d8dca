//! haldir: a keepalived replacement for LVS direct-routing clusters (VRRP + IPVS director).
//!
//! The library half of the crate holds the pieces that the `haldir` binary, the integration
//! tests (`tests/*.rs`) and the failover benchmark share. The network-namespace test bed
//! they run on is the `haldir-lab` crate (`lab/`), never part of this binary.
//! [`ipvs_wiring`] turns the configuration's virtual servers into the
//! desired IPVS table. [`control`], [`metrics`], [`notify`], [`live`] and
//! [`systemd`] are the operator's tools (status and reload over a unix
//! socket, Prometheus metrics, notify scripts, sd-notify), started by
//! [`operator`].

pub mod arp_check;
pub mod bulk_resync;
pub mod control;
pub mod daemon;
pub mod health_wiring;
pub mod ipvs_ownership;
pub mod ipvs_wiring;
pub mod live;
pub mod metrics;
pub mod notify;
pub mod operator;
pub mod privilege;
pub mod script_security;
pub mod sync_daemon;
pub mod systemd;
