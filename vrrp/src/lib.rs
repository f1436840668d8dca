//! haldir's VRRP: wire formats (VRRP v2/v3 adverts, gratuitous ARP, unsolicited
//! neighbour advertisements), the sans-IO RFC 5798 router, and the tokio driver
//! that runs routers on real sockets and moves the virtual addresses; the
//! optional HMAC authentication of adverts (`auth`, `wire::auth`).

pub mod accept;
pub mod auth;
pub mod driver;
pub mod netif;
pub mod router;
pub mod socket;
pub mod sync_group;
pub mod timer;
pub mod vmac;
pub mod wire;
