//! The director's policy, pure: what the validated configuration and the health of the real
//! servers mean for VRRP and IPVS. No sockets, no tasks, no clock of its own; the `haldir`
//! binary feeds it and carries out what it decides.

pub mod announce;
pub mod arp_check;
pub mod bmp;
pub mod checks;
pub mod hold;
pub mod ipvs_policy;
pub mod ipvs_table;
pub mod notify;
pub mod publish_pace;
pub mod realserver;
pub mod script_security;
pub mod sync_daemon;
pub mod track_process;
pub mod vrrp_specs;
