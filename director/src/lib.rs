//! The director's policy, pure: what the validated configuration and the health of the real
//! servers mean for VRRP and IPVS. No sockets, no tasks, no clock of its own; the `haldir`
//! binary feeds it and carries out what it decides.

pub mod hold;
