//! haldir's binary crate: wiring only. It builds the daemon's tasks from the validated
//! model and connects them: the VRRP driver (`haldir_vrrp`), the health checks and the
//! director's policy (`haldir_director`) feeding the IPVS keeper (`haldir_ipvs`), the thin
//! drivers of the bulk-resync and DR ARP-check machines, the notify scripts, signals and
//! process setup, and the operator's listeners (control socket, metrics, status file), which
//! render the one typed status (`haldir_status`). Protocols, policy and renderings live in
//! those library crates; `docs/architecture.md` is the map. The network-namespace test bed
//! is the `haldir-lab` crate (`lab/`), never part of this binary.

pub mod announce;
pub mod arp_check;
pub mod bmp;
pub mod bulk_resync;
pub mod control;
pub mod counters;
pub mod daemon;
pub mod dumps;
pub mod health_wiring;
pub mod ipvs_sysctl;
pub mod live;
pub mod logging;
pub mod lvs_timeouts;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod notify_fifo;
pub mod operator;
pub mod options;
pub mod own_thread;
pub mod privilege;
pub mod realserver;
pub mod replay_state;
pub mod statics;
pub mod status;
pub mod sync_daemon;
pub mod systemd;
