//! Unit tests of the resync module's plain parts: addresses (the status value's JSON shape
//! and its renderings are tested in the status crate, `status/src/sections.rs`). The machine's
//! behaviour is tested on a simulated clock in `ipvs/tests/resync_sim.rs`.

use std::net::IpAddr;

use super::*;

#[test]
fn addresses_follow_the_kernel_defaults_and_the_configuration() {
    let a = Addresses::new(None, None, None);
    assert_eq!(a.group, IpAddr::V4(DEFAULT_GROUP_V4));
    assert_eq!((a.sync_port, a.control_port, a.max_len), (8848, 8849, 1472));
    let group: IpAddr = "ff02::8148".parse().unwrap();
    let a = Addresses::new(Some(group), Some(9000), Some(1200));
    assert_eq!((a.sync_port, a.control_port, a.max_len), (9000, 9001, 1200));
    assert_eq!(Addresses::new(Some(group), Some(9000), None).max_len, 1452);
    assert_eq!(
        Addresses::new(None, Some(u16::MAX), None).control_port,
        65534
    );
}
