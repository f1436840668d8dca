//! One entry of `virtual_ipaddress` / `virtual_ipaddress_excluded`: the address
//! and the options of `ip address add` that keepalived.conf(5) lets an entry
//! carry and haldir carries out: `dev` (another interface than the
//! instance's), `label`, `brd` and `scope`. Both front-ends write an entry as
//! the same string, `ADDRESS[/PREFIX] [dev IF] [label LABEL] [brd ADDRESS]
//! [scope SCOPE]`, parsed here once; `Display` writes it back in that order.
//!
//! keepalived's other entry options (`peer`, `home`, `-nodad`, `mngtmpaddr`,
//! `noprefixroute`, `autojoin`, `no_track`, `preferred_lft`, `use_vmac`)
//! change how the address is added or watched and are errors until haldir
//! implements them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use crate::model::{AddressFamily, VirtualAddress};

/// The scope an address is added with (`ip address add ... scope SCOPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressScope {
    /// `global` (the kernel's RT_SCOPE_UNIVERSE, the default).
    Global,
    /// `site` (IPv6 site-local; RT_SCOPE_SITE).
    Site,
    /// `link`: valid on this link only.
    Link,
    /// `host`: valid inside this host only.
    Host,
    /// `nowhere`: never used as a source.
    Nowhere,
}

impl AddressScope {
    const NAMES: [(&'static str, AddressScope); 5] = [
        ("global", AddressScope::Global),
        ("site", AddressScope::Site),
        ("link", AddressScope::Link),
        ("host", AddressScope::Host),
        ("nowhere", AddressScope::Nowhere),
    ];

    /// The scope named `name`, if it is one.
    pub fn from_name(name: &str) -> Option<AddressScope> {
        Self::NAMES
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, scope)| *scope)
    }

    /// The kernel's number of the scope (rtnetlink.h, RT_SCOPE_*).
    pub fn kernel_number(self) -> u8 {
        match self {
            AddressScope::Global => 0,
            AddressScope::Site => 200,
            AddressScope::Link => 253,
            AddressScope::Host => 254,
            AddressScope::Nowhere => 255,
        }
    }

    /// keepalived's (and `ip`'s) name of the scope.
    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, scope)| *scope == self)
            .map(|(name, _)| *name)
            .unwrap_or("global")
    }
}

/// One virtual address with where and how it is added.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VirtualIp {
    /// The address and its prefix length.
    pub address: VirtualAddress,
    /// `dev IF`: the interface it goes on; `None` is the instance's interface.
    pub device: Option<String>,
    /// `label LABEL`: the IPv4 address label (`ifconfig`'s alias name, `eth0:1`).
    pub label: Option<String>,
    /// `brd ADDRESS`: the IPv4 broadcast address; `None` is the prefix's
    /// all-ones address (what `ip address add ... brd +` sets).
    pub broadcast: Option<Ipv4Addr>,
    /// `scope SCOPE`; `None` is global.
    pub scope: Option<AddressScope>,
}

impl VirtualIp {
    /// The address itself.
    pub fn addr(&self) -> IpAddr {
        self.address.addr
    }

    /// The interface the address goes on, given the instance's.
    pub fn device_or<'a>(&'a self, instance_interface: &'a str) -> &'a str {
        self.device.as_deref().unwrap_or(instance_interface)
    }
}

impl From<VirtualAddress> for VirtualIp {
    fn from(address: VirtualAddress) -> VirtualIp {
        VirtualIp {
            address,
            device: None,
            label: None,
            broadcast: None,
            scope: None,
        }
    }
}

impl fmt::Display for VirtualIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.address)?;
        if let Some(device) = &self.device {
            write!(f, " dev {device}")?;
        }
        if let Some(label) = &self.label {
            write!(f, " label {label}")?;
        }
        if let Some(broadcast) = &self.broadcast {
            write!(f, " brd {broadcast}")?;
        }
        if let Some(scope) = self.scope {
            write!(f, " scope {}", scope.as_str())?;
        }
        Ok(())
    }
}

/// keepalived's `use_vmac`: a macvlan on the instance's interface with the
/// VRRP virtual MAC, carrying the virtual addresses (RFC 5798 §7.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Vmac {
    /// The macvlan's name (keepalived's default `vrrp.VRID`).
    pub name: String,
    /// Its MAC: 00-00-5E-00-01-VRID for IPv4 (RFC 5798 §7.3) unless given.
    pub mac: [u8; 6],
}

impl Vmac {
    /// Reads `use_vmac [NAME] [MAC]` (either, both, or neither; a MAC of five
    /// octets gets `vrid` as the sixth, as keepalived does).
    pub fn from_args(args: &[String], vrid: u8) -> Result<Vmac, String> {
        let mut name = None;
        let mut mac = None;
        for arg in args {
            if arg.contains(':') {
                if mac.is_some() {
                    return Err(format!("`use_vmac`: a second MAC address `{arg}`"));
                }
                mac = Some(parse_mac(arg, vrid)?);
            } else {
                if name.is_some() {
                    return Err(format!("`use_vmac`: a second interface name `{arg}`"));
                }
                check_name("use_vmac", arg)?;
                name = Some(arg.clone());
            }
        }
        Ok(Vmac {
            name: name.unwrap_or_else(|| format!("vrrp.{vrid}")),
            mac: mac.unwrap_or([0x00, 0x00, 0x5e, 0x00, 0x01, vrid]),
        })
    }

    /// The MAC as `ip link` prints it.
    pub fn mac_text(&self) -> String {
        let octets: Vec<String> = self.mac.iter().map(|o| format!("{o:02x}")).collect();
        octets.join(":")
    }
}

/// A MAC of six octets, or five followed by `vrid`.
fn parse_mac(text: &str, vrid: u8) -> Result<[u8; 6], String> {
    let octets: Result<Vec<u8>, _> = text.split(':').map(|o| u8::from_str_radix(o, 16)).collect();
    let bad =
        || format!("`{text}` is not a MAC address (six, or five, hex octets separated by `:`)");
    let mut octets = octets.map_err(|_| bad())?;
    if octets.len() == 5 {
        octets.push(vrid);
    }
    let mac: [u8; 6] = octets.try_into().map_err(|_| bad())?;
    if mac[0] & 1 == 1 {
        return Err(format!("`{text}` is a multicast MAC address"));
    }
    Ok(mac)
}

/// The longest interface name (and address label) Linux takes: IFNAMSIZ - 1.
const MAX_NAME_LEN: usize = 15;

/// keepalived's entry options haldir does not carry out, with why.
const UNSUPPORTED_OPTIONS: &[(&str, &str)] = &[
    ("peer", "point-to-point peer addresses are not implemented"),
    ("home", "IPv6 home addresses are not implemented"),
    (
        "-nodad",
        "haldir already adds IPv6 virtual addresses without duplicate address detection",
    ),
    ("mngtmpaddr", "IPv6 temporary addresses are not implemented"),
    (
        "noprefixroute",
        "haldir lets the kernel add the prefix route",
    ),
    ("autojoin", "multicast autojoin is not implemented"),
    (
        "no_track",
        "haldir does not watch its virtual addresses for deletion, so there is nothing to turn off",
    ),
    (
        "preferred_lft",
        "haldir adds addresses with the kernel's default lifetimes",
    ),
    (
        "use_vmac",
        "the VRRP virtual MAC (macvlan) is not implemented",
    ),
];

impl FromStr for VirtualIp {
    type Err = String;

    /// Parses `ADDRESS[/PREFIX] [dev IF] [label LABEL] [brd ADDRESS] [scope
    /// SCOPE]` (options in any order, each once); the error says what is wrong.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut words = s.split_whitespace();
        let address: VirtualAddress = words
            .next()
            .ok_or_else(|| "empty; write ADDRESS[/PREFIX] [dev IF]".to_owned())?
            .parse()
            .map_err(|e| format!("{e}"))?;
        let mut vip = VirtualIp::from(address);
        while let Some(option) = words.next() {
            fn value<'s>(
                words: &mut std::str::SplitWhitespace<'s>,
                option: &str,
            ) -> Result<&'s str, String> {
                words
                    .next()
                    .ok_or_else(|| format!("`{option}` needs a value"))
            }
            let already = match option {
                "dev" => {
                    let device = value(&mut words, option)?;
                    check_name("dev", device)?;
                    vip.device.replace(device.to_owned()).is_some()
                }
                "label" => {
                    let label = value(&mut words, option)?;
                    check_name("label", label)?;
                    vip.label.replace(label.to_owned()).is_some()
                }
                "brd" | "broadcast" => {
                    let text = value(&mut words, option)?;
                    let broadcast = text.parse::<Ipv4Addr>().map_err(|_| {
                        format!("`brd {text}`: the broadcast address must be an IPv4 address")
                    })?;
                    vip.broadcast.replace(broadcast).is_some()
                }
                "scope" => {
                    let text = value(&mut words, option)?;
                    let scope = AddressScope::from_name(text).ok_or_else(|| {
                            format!(
                                "`scope {text}`: the scope must be one of global, site, link, host, nowhere"
                            )
                        })?;
                    vip.scope.replace(scope).is_some()
                }
                other => {
                    return Err(match UNSUPPORTED_OPTIONS.iter().find(|(k, _)| *k == other) {
                        Some((_, why)) => format!(
                            "`{other}` is not supported yet ({why}); haldir reads `ADDRESS[/PREFIX] [dev IF] [label LABEL] [brd ADDRESS] [scope SCOPE]`"
                        ),
                        None => format!(
                            "unknown option `{other}`; write `ADDRESS[/PREFIX] [dev IF] [label LABEL] [brd ADDRESS] [scope SCOPE]`"
                        ),
                    })
                }
            };
            if already {
                return Err(format!("`{option}` is given twice"));
            }
        }
        let family = AddressFamily::of(&vip.address.addr);
        if family == AddressFamily::Ipv6 {
            // Address labels and broadcast addresses exist for IPv4 only (IFA_LABEL, IFA_BROADCAST).
            if vip.label.is_some() {
                return Err("`label` applies to IPv4 addresses only".to_owned());
            }
            if vip.broadcast.is_some() {
                return Err("`brd` applies to IPv4 addresses only".to_owned());
            }
        }
        Ok(vip)
    }
}

/// An interface name or address label as the kernel takes it.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME_LEN || name.contains('/') {
        return Err(format!(
            "`{what} {name}`: at most {MAX_NAME_LEN} bytes and no `/` (Linux's limit on interface names and labels)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_address_has_no_options() {
        let vip: VirtualIp = "192.0.2.10/24".parse().unwrap();
        assert_eq!(
            vip,
            VirtualIp::from("192.0.2.10/24".parse::<VirtualAddress>().unwrap())
        );
        assert_eq!(vip.to_string(), "192.0.2.10/24");
    }

    #[test]
    fn options_in_any_order_write_back_in_one_order() {
        let vip: VirtualIp = "192.0.2.80/24 scope link brd 192.0.2.255 label eth1:vip dev eth1"
            .parse()
            .unwrap();
        assert_eq!(vip.device.as_deref(), Some("eth1"));
        assert_eq!(vip.label.as_deref(), Some("eth1:vip"));
        assert_eq!(vip.broadcast, Some(Ipv4Addr::new(192, 0, 2, 255)));
        assert_eq!(vip.scope, Some(AddressScope::Link));
        assert_eq!(
            vip.to_string(),
            "192.0.2.80/24 dev eth1 label eth1:vip brd 192.0.2.255 scope link"
        );
        assert_eq!(vip.to_string().parse::<VirtualIp>().unwrap(), vip);
        assert_eq!(vip.device_or("eth0"), "eth1");
    }

    #[test]
    fn a_vmac_defaults_to_vrrp_vrid_and_the_rfc_mac() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let default = Vmac::from_args(&[], 51).unwrap();
        assert_eq!(default.name, "vrrp.51");
        assert_eq!(default.mac_text(), "00:00:5e:00:01:33");
        let named = Vmac::from_args(&args(&["vrrp51", "02:00:00:00:00"]), 51).unwrap();
        assert_eq!(
            (named.name.as_str(), named.mac_text()),
            ("vrrp51", "02:00:00:00:00:33".to_owned())
        );
        assert!(Vmac::from_args(&args(&["01:00:5e:00:01:01"]), 1)
            .unwrap_err()
            .contains("multicast"));
        assert!(Vmac::from_args(&args(&["a", "b"]), 1)
            .unwrap_err()
            .contains("second"));
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        let error = |s: &str| s.parse::<VirtualIp>().unwrap_err();
        assert!(error("192.0.2.1 dev").contains("`dev` needs a value"));
        assert!(error("192.0.2.1 dev a dev b").contains("given twice"));
        assert!(error("192.0.2.1 scope galaxy").contains("one of global"));
        assert!(error("192.0.2.1 brd 2001:db8::1").contains("IPv4"));
        assert!(error("2001:db8::1 label eth0:1").contains("IPv4 addresses only"));
        assert!(error("192.0.2.1 label averyveryverylonglabel").contains("15 bytes"));
        assert!(error("192.0.2.1 peer 192.0.2.2").contains("not supported yet"));
        assert!(error("192.0.2.1 colour blue").contains("unknown option `colour`"));
        assert!(error("192.0.2.300").contains("not an IP address"));
    }
}
