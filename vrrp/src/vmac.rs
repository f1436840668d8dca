//! keepalived's `use_vmac`: the virtual router's own MAC (RFC 5798 §7.3,
//! 00-00-5E-00-01-VRID for IPv4) on a macvlan over the instance's interface.
//! The virtual addresses go on the macvlan, so the kernel answers ARP for
//! them with the virtual MAC and a takeover needs no ARP cache change at all
//! (the gratuitous ARPs only move the switches' MAC tables).
//!
//! What haldir sets up, as keepalived does (keepalived.conf(5), `use_vmac`):
//! - the macvlan in `private` mode, its MAC, IPv6 off on it (an IPv4
//!   instance's macvlan must send nothing: on a backup it would pull the
//!   virtual MAC over to itself in the switches), then up;
//! - on the base interface `arp_ignore = 1` and `arp_filter = 1`: it answers
//!   ARP only for its own addresses, so a request for a virtual address is
//!   answered by the macvlan alone, with the virtual MAC;
//! - `rp_filter = 0` on the macvlan: traffic to a virtual address arrives on
//!   the macvlan while the route back to the client is through the base.
//!
//! The previous values of the sysctls are given back, and the macvlan
//! deleted, when the instance goes (reload or stop).

use std::io;
use std::path::PathBuf;

/// An instance's virtual-MAC interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmacSpec {
    /// The macvlan's name.
    pub name: String,
    /// Its MAC.
    pub mac: [u8; 6],
    /// `vmac_xmit_base`: adverts leave through the base interface.
    pub xmit_base: bool,
}

/// One sysctl haldir changed, with the value to give back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedSysctl {
    path: PathBuf,
    before: String,
}

impl ChangedSysctl {
    /// Writes the value it had back (an interface gone meanwhile is fine).
    pub fn restore(&self) -> io::Result<()> {
        match std::fs::write(&self.path, &self.before) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

/// `net.ipv4.conf.IFNAME.KEY` (or `ipv6`) in the current network namespace.
fn sysctl_path(family: &str, interface: &str, key: &str) -> PathBuf {
    // The directory is the interface's name as is: a `.` in it stays a `.`.
    PathBuf::from(format!("/proc/sys/net/{family}/conf/{interface}/{key}"))
}

/// Sets `net.FAMILY.conf.INTERFACE.KEY` to `value` unless it already is;
/// returns what to give back when it changed.
pub fn set_sysctl(
    family: &str,
    interface: &str,
    key: &str,
    value: &str,
) -> io::Result<Option<ChangedSysctl>> {
    let path = sysctl_path(family, interface, key);
    let before = std::fs::read_to_string(&path)?.trim().to_owned();
    if before == value {
        return Ok(None);
    }
    std::fs::write(&path, value)?;
    Ok(Some(ChangedSysctl { path, before }))
}

/// The sysctls `use_vmac` needs on the base interface and on the macvlan
/// (set before the macvlan is up).
pub const BASE_SYSCTLS: [(&str, &str, &str); 2] =
    [("ipv4", "arp_ignore", "1"), ("ipv4", "arp_filter", "1")];

/// The macvlan's own sysctls.
pub const VMAC_SYSCTLS: [(&str, &str, &str); 2] =
    [("ipv6", "disable_ipv6", "1"), ("ipv4", "rp_filter", "0")];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dot_in_the_interface_name_stays_in_the_path() {
        assert_eq!(
            sysctl_path("ipv4", "vrrp.51", "arp_ignore"),
            PathBuf::from("/proc/sys/net/ipv4/conf/vrrp.51/arp_ignore")
        );
    }
}
