//! What a direct-routing real server needs, as a pure decision: the policy of
//! `haldir realserver check|setup VIP...` (whose reading and changing of the host is in the
//! binary, `src/realserver.rs`).
//!
//! In LVS direct routing the director forwards a packet to the real server unchanged (its
//! destination is still the VIP), so each real server must accept the VIP as a local address
//! (the VIP on `lo`, /32 or /128) without ever answering ARP for it or using it as the source
//! of its own ARP requests: otherwise the real server and the director's master both claim
//! the VIP on the segment. The kernel settings for that are `arp_ignore=1` (reply only for
//! addresses on the receiving interface) and `arp_announce=2` (use the best local address as
//! the ARP source), both of which the kernel takes as the maximum of `conf/all` and the
//! interface's own value (Documentation/networking/ip-sysctl.rst), so `conf/all` suffices.
//!
//! [`problems`] says what is wrong given an [`Observed`] state; [`parse_ip_addr_lines`]
//! reads `ip -o addr` output into it.

use std::fmt;
use std::net::IpAddr;

/// The lowest `arp_ignore` that keeps a real server from answering ARP for the VIP on `lo`.
pub const ARP_IGNORE_NEEDED: u8 = 1;
/// The lowest `arp_announce` that keeps the VIP out of the real server's own ARP requests.
pub const ARP_ANNOUNCE_NEEDED: u8 = 2;

/// What a real server looks like, as far as direct routing cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// The addresses on `lo` with their prefix lengths.
    pub loopback_addresses: Vec<(IpAddr, u8)>,
    /// `net.ipv4.conf.all.arp_ignore`.
    pub arp_ignore_all: u8,
    /// `net.ipv4.conf.all.arp_announce`.
    pub arp_announce_all: u8,
    /// `net.ipv4.conf.all.rp_filter` (1 = strict).
    pub rp_filter_all: u8,
}

/// One thing that keeps a real server from serving a VIP by direct routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The VIP is not on `lo`: the kernel drops the forwarded packets.
    VipMissing(IpAddr),
    /// The VIP is on `lo` with a prefix other than /32 (/128): the real server then treats
    /// the whole subnet as local.
    VipWrongPrefix(IpAddr, u8),
    /// `arp_ignore` too low: the real server answers ARP for the VIP.
    ArpIgnore(u8),
    /// `arp_announce` too low: the real server's ARP requests carry the VIP as source.
    ArpAnnounce(u8),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::VipMissing(vip) => write!(
                f,
                "VIP {vip} is not on lo: packets forwarded to it are dropped (fix: ip addr add {vip}/{} dev lo)",
                host_prefix(*vip)
            ),
            Problem::VipWrongPrefix(vip, prefix) => write!(
                f,
                "VIP {vip} is on lo as /{prefix}, not /{}: the whole subnet becomes local",
                host_prefix(*vip)
            ),
            Problem::ArpIgnore(value) => write!(
                f,
                "net.ipv4.conf.all.arp_ignore is {value}, needs >= {ARP_IGNORE_NEEDED}: this host answers ARP for the VIP next to the director"
            ),
            Problem::ArpAnnounce(value) => write!(
                f,
                "net.ipv4.conf.all.arp_announce is {value}, needs >= {ARP_ANNOUNCE_NEEDED}: this host's ARP requests may carry the VIP as source"
            ),
        }
    }
}

/// The host prefix length of an address family: 32 or 128.
pub fn host_prefix(address: IpAddr) -> u8 {
    if address.is_ipv4() {
        32
    } else {
        128
    }
}

/// What is wrong with `observed` for serving `vips` by direct routing; empty when nothing.
/// The ARP sysctls matter only when an IPv4 VIP is asked for (IPv6 has no ARP; neighbour
/// discovery answers only for addresses on the receiving interface).
pub fn problems(observed: &Observed, vips: &[IpAddr]) -> Vec<Problem> {
    let mut found = Vec::new();
    for &vip in vips {
        match observed
            .loopback_addresses
            .iter()
            .find(|(address, _)| *address == vip)
        {
            None => found.push(Problem::VipMissing(vip)),
            Some(&(_, prefix)) if prefix != host_prefix(vip) => {
                found.push(Problem::VipWrongPrefix(vip, prefix))
            }
            Some(_) => {}
        }
    }
    if vips.iter().any(IpAddr::is_ipv4) {
        if observed.arp_ignore_all < ARP_IGNORE_NEEDED {
            found.push(Problem::ArpIgnore(observed.arp_ignore_all));
        }
        if observed.arp_announce_all < ARP_ANNOUNCE_NEEDED {
            found.push(Problem::ArpAnnounce(observed.arp_announce_all));
        }
    }
    found
}

/// Advice that is not a fault: strict reverse-path filtering is harmless for DR (replies
/// leave by the default route) but worth knowing when replies take another path.
pub fn notes(observed: &Observed) -> Vec<String> {
    let mut notes = Vec::new();
    if observed.rp_filter_all == 1 {
        notes.push(
            "net.ipv4.conf.all.rp_filter is 1 (strict): fine when client traffic arrives on the interface of the route back to the client; set 2 (loose) otherwise"
                .to_string(),
        );
    }
    notes
}

/// Parses `ip -o addr show dev lo` output into (address, prefix) pairs.
pub fn parse_ip_addr_lines(text: &str) -> Vec<(IpAddr, u8)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|word| *word == "inet" || *word == "inet6")?;
            let (address, prefix) = words.next()?.split_once('/')?;
            Some((address.parse().ok()?, prefix.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vip4() -> IpAddr {
        "192.0.2.10".parse().unwrap()
    }

    fn vip6() -> IpAddr {
        "2001:db8::10".parse().unwrap()
    }

    fn ready() -> Observed {
        Observed {
            loopback_addresses: vec![
                ("127.0.0.1".parse().unwrap(), 8),
                (vip4(), 32),
                (vip6(), 128),
            ],
            arp_ignore_all: 1,
            arp_announce_all: 2,
            rp_filter_all: 0,
        }
    }

    #[test]
    fn a_prepared_real_server_has_no_problems() {
        assert_eq!(problems(&ready(), &[vip4(), vip6()]), vec![]);
    }

    #[test]
    fn a_fresh_host_lacks_the_vip_and_both_arp_sysctls() {
        let fresh = Observed {
            loopback_addresses: vec![("127.0.0.1".parse().unwrap(), 8)],
            ..Observed::default()
        };
        assert_eq!(
            problems(&fresh, &[vip4()]),
            vec![
                Problem::VipMissing(vip4()),
                Problem::ArpIgnore(0),
                Problem::ArpAnnounce(0)
            ]
        );
    }

    #[test]
    fn a_vip_with_a_subnet_prefix_is_named() {
        let mut observed = ready();
        observed.loopback_addresses[1].1 = 24;
        assert_eq!(
            problems(&observed, &[vip4()]),
            vec![Problem::VipWrongPrefix(vip4(), 24)]
        );
    }

    #[test]
    fn higher_arp_values_are_accepted() {
        let mut observed = ready();
        observed.arp_ignore_all = 2;
        assert_eq!(problems(&observed, &[vip4()]), vec![]);
    }

    #[test]
    fn ipv6_only_vips_do_not_need_the_arp_sysctls() {
        let mut observed = ready();
        observed.arp_ignore_all = 0;
        observed.arp_announce_all = 0;
        assert_eq!(problems(&observed, &[vip6()]), vec![]);
    }

    #[test]
    fn strict_rp_filter_gets_a_note_not_a_problem() {
        let mut observed = ready();
        observed.rp_filter_all = 1;
        assert_eq!(problems(&observed, &[vip4()]), vec![]);
        assert_eq!(notes(&observed).len(), 1);
    }

    #[test]
    fn ip_addr_output_is_parsed() {
        let text = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n\
                    1: lo    inet 192.0.2.10/32 scope global lo\\       valid_lft forever\n\
                    1: lo    inet6 ::1/128 scope host \\       valid_lft forever\n";
        assert_eq!(
            parse_ip_addr_lines(text),
            vec![
                ("127.0.0.1".parse().unwrap(), 8),
                (vip4(), 32),
                ("::1".parse().unwrap(), 128)
            ]
        );
    }
}
