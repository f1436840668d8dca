//! One entry of `virtual_routes` or `virtual_rules` (keepalived.conf(5): routes and
//! policy-routing rules added when the instance becomes master and deleted when it
//! leaves, "most of the options match the options of the command ip route/rule add").
//! Both front-ends write an entry as the same string, parsed here once; `Display`
//! writes it back in one order, which parses to the same value.
//!
//! Routes: `[TYPE] [to] PREFIX|default [src ADDRESS] [via|gw ADDRESS] [dev IF]
//! [scope SCOPE] [table N] [metric|priority|preference N] [protocol P] [onlink]`,
//! TYPE one of `unicast` (the default), `blackhole`, `unreachable`, `prohibit`, `throw`.
//! Rules: `[from PREFIX|all] [to PREFIX|all] [iif IF] [oif IF] [fwmark N[/MASK]]
//! [priority|preference|pref N] [table N]` (the main table when not given).
//! keepalived's other options (multipath `nexthop` / `or`, route metrics such as `mtu`,
//! `no_track`, `track_group`, rule actions other than a table, ...) are errors until
//! haldir implements them: they change what is installed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::model::{AddressFamily, VirtualAddress};
use crate::virtual_ip::AddressScope;

/// A route's type (`ip route add TYPE ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// An ordinary route (RTN_UNICAST).
    Unicast,
    /// Packets are discarded silently (RTN_BLACKHOLE).
    Blackhole,
    /// Packets are refused with "host unreachable" (RTN_UNREACHABLE).
    Unreachable,
    /// Packets are refused with "administratively prohibited" (RTN_PROHIBIT).
    Prohibit,
    /// Lookup goes on in the next rule's table (RTN_THROW).
    Throw,
}

impl RouteKind {
    const NAMES: [(&'static str, RouteKind); 5] = [
        ("unicast", RouteKind::Unicast),
        ("blackhole", RouteKind::Blackhole),
        ("unreachable", RouteKind::Unreachable),
        ("prohibit", RouteKind::Prohibit),
        ("throw", RouteKind::Throw),
    ];

    fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, kind)| *kind == self)
            .map_or("unicast", |(name, _)| name)
    }
}

/// The route protocol names `ip` knows without `/etc/iproute2/rt_protos`, with
/// their numbers (rtnetlink.h, RTPROT_*).
const PROTOCOLS: [(&str, u8); 6] = [
    ("kernel", 2),
    ("boot", 3),
    ("static", 4),
    ("ra", 9),
    ("dhcp", 16),
    ("keepalived", 18),
];

/// The routing tables with names (`/etc/iproute2/rt_tables` as shipped).
const TABLES: [(&str, u32); 3] = [("default", 253), ("main", 254), ("local", 255)];

/// One `virtual_routes` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VirtualRoute {
    /// Its type.
    pub kind: RouteKind,
    /// The destination prefix (`default` is the family's /0).
    pub destination: VirtualAddress,
    /// `src`: the preferred source address.
    pub source: Option<IpAddr>,
    /// `via` / `gw`: the gateway.
    pub gateway: Option<IpAddr>,
    /// `dev`: the output interface.
    pub device: Option<String>,
    /// `scope`.
    pub scope: Option<AddressScope>,
    /// `table`: the routing table number; `None` is main.
    pub table: Option<u32>,
    /// `metric` / `priority` / `preference`.
    pub metric: Option<u32>,
    /// `protocol` / `proto`: the kernel's number; `None` is `boot` (what `ip` sets).
    pub protocol: Option<u8>,
    /// `onlink`: the gateway is on the link even outside its prefixes.
    pub onlink: bool,
}

/// One `virtual_rules` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VirtualRule {
    /// `from PREFIX`: the source prefix (`None` is `all`).
    pub from: Option<VirtualAddress>,
    /// `to PREFIX`: the destination prefix (`None` is `all`).
    pub to: Option<VirtualAddress>,
    /// `iif`: the input interface.
    pub input_interface: Option<String>,
    /// `oif`: the output interface.
    pub output_interface: Option<String>,
    /// `fwmark N[/MASK]`.
    pub fwmark: Option<(u32, Option<u32>)>,
    /// `priority` / `preference` / `pref`: the rule's position.
    pub priority: Option<u32>,
    /// `table` / `lookup`: the table it sends to; `None` is main.
    pub table: Option<u32>,
    /// The family: the one of its prefixes, else IPv6 with `inet6`, else IPv4
    /// (as `ip rule` without `-6`).
    pub family: AddressFamily,
}

impl VirtualRule {
    /// The family of the rule.
    pub fn family(&self) -> AddressFamily {
        self.family
    }
}

/// Words of an entry, with the option being read for messages.
struct Words<'s> {
    words: std::iter::Peekable<std::str::SplitWhitespace<'s>>,
}

impl<'s> Words<'s> {
    fn new(s: &'s str) -> Words<'s> {
        Words {
            words: s.split_whitespace().peekable(),
        }
    }

    fn next(&mut self) -> Option<&'s str> {
        self.words.next()
    }

    fn value(&mut self, option: &str) -> Result<&'s str, String> {
        self.words
            .next()
            .ok_or_else(|| format!("`{option}` needs a value"))
    }
}

fn set_once<T>(slot: &mut Option<T>, option: &str, value: T) -> Result<(), String> {
    if slot.replace(value).is_some() {
        return Err(format!("`{option}` is given twice"));
    }
    Ok(())
}

fn address(option: &str, text: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("`{option} {text}`: not an IP address"))
}

/// A prefix, or `default` / `all` (the /0 of `family`).
fn prefix(option: &str, text: &str, family: AddressFamily) -> Result<VirtualAddress, String> {
    if text == "default" || text == "all" {
        let addr = match family {
            AddressFamily::Ipv4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            AddressFamily::Ipv6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        return Ok(VirtualAddress {
            addr,
            prefix_len: 0,
        });
    }
    text.parse().map_err(|e| {
        format!(
            "`{option}{}{text}`: {e}",
            if option.is_empty() { "" } else { " " }
        )
    })
}

fn number(option: &str, text: &str) -> Result<u32, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("`{option} {text}`: not a number (0..=4294967295)"))
}

fn table(option: &str, text: &str) -> Result<u32, String> {
    match TABLES.iter().find(|(name, _)| *name == text) {
        Some((_, id)) => Ok(*id),
        None => number(option, text),
    }
}

fn scope(text: &str) -> Result<AddressScope, String> {
    AddressScope::from_name(text).ok_or_else(|| {
        format!("`scope {text}`: the scope must be one of global, site, link, host, nowhere")
    })
}

fn check_name(option: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 || name.contains('/') {
        return Err(format!(
            "`{option} {name}`: an interface name has 1..=15 bytes and no `/`"
        ));
    }
    Ok(())
}

fn unsupported(option: &str, form: &str) -> String {
    format!("`{option}` is not supported yet; haldir reads `{form}`")
}

const ROUTE_FORM: &str = "[TYPE] PREFIX [src ADDRESS] [via ADDRESS] [dev IF] [scope SCOPE] [table N] [metric N] [protocol P] [onlink]";
const RULE_FORM: &str =
    "[from PREFIX] [to PREFIX] [iif IF] [oif IF] [fwmark N[/MASK]] [priority N] [table N]";

impl FromStr for VirtualRoute {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut words = Words::new(s);
        let mut kind = None;
        let mut destination_text = None;
        let mut source = None;
        let mut gateway = None;
        let mut device = None;
        let mut scope_value = None;
        let mut table_value = None;
        let mut metric = None;
        let mut protocol = None;
        let mut onlink = false;
        let mut inet6 = false;
        while let Some(word) = words.next() {
            match word {
                // keepalived.conf(5): "To force a route/rule to be IPv6, add the keyword inet6."
                "inet6" => inet6 = true,
                "src" => set_once(&mut source, word, address(word, words.value(word)?)?)?,
                "via" | "gw" => set_once(&mut gateway, "via", address(word, words.value(word)?)?)?,
                "dev" | "oif" => {
                    let name = words.value(word)?;
                    check_name(word, name)?;
                    set_once(&mut device, "dev", name.to_owned())?
                }
                "scope" => set_once(&mut scope_value, word, scope(words.value(word)?)?)?,
                "table" => set_once(&mut table_value, word, table(word, words.value(word)?)?)?,
                "metric" | "priority" | "preference" => {
                    set_once(&mut metric, "metric", number(word, words.value(word)?)?)?
                }
                "protocol" | "proto" => {
                    let text = words.value(word)?;
                    let value = match PROTOCOLS.iter().find(|(name, _)| *name == text) {
                        Some((_, n)) => *n,
                        None => text.parse::<u8>().map_err(|_| {
                            format!("`{word} {text}`: a protocol is one of kernel, boot, static, ra, dhcp, keepalived, or a number 0..=255")
                        })?,
                    };
                    set_once(&mut protocol, "protocol", value)?
                }
                "onlink" => onlink = true,
                "to" => set_once(&mut destination_text, "to", words.value(word)?)?,
                kind_name
                    if destination_text.is_none()
                        && kind.is_none()
                        && RouteKind::NAMES.iter().any(|(n, _)| *n == kind_name) =>
                {
                    kind = RouteKind::NAMES
                        .iter()
                        .find(|(n, _)| *n == kind_name)
                        .map(|(_, k)| *k);
                }
                other
                    if destination_text.is_none()
                        && (other == "default" || other.parse::<VirtualAddress>().is_ok()) =>
                {
                    destination_text = Some(other);
                }
                other => return Err(unsupported(other, ROUTE_FORM)),
            }
        }
        let destination_text =
            destination_text.ok_or_else(|| format!("no destination; write `{ROUTE_FORM}`"))?;
        // `default` takes the family of the gateway or source, else IPv4 (`inet6`: IPv6).
        let family = gateway.or(source).map_or(
            if inet6 {
                AddressFamily::Ipv6
            } else {
                AddressFamily::Ipv4
            },
            |a| AddressFamily::of(&a),
        );
        let destination = prefix("", destination_text, family)?;
        let family = AddressFamily::of(&destination.addr);
        for (option, value) in [("src", source), ("via", gateway)] {
            if let Some(value) = value {
                if AddressFamily::of(&value) != family {
                    return Err(format!(
                        "`{option} {value}` is not of the destination's family ({family})"
                    ));
                }
            }
        }
        let kind = kind.unwrap_or(RouteKind::Unicast);
        if kind != RouteKind::Unicast && (gateway.is_some() || device.is_some()) {
            return Err(format!("a {} route takes no `via` or `dev`", kind.name()));
        }
        if onlink && gateway.is_none() {
            return Err("`onlink` needs `via`".to_owned());
        }
        Ok(VirtualRoute {
            kind,
            destination,
            source,
            gateway,
            device,
            scope: scope_value,
            table: table_value,
            metric,
            protocol,
            onlink,
        })
    }
}

impl fmt::Display for VirtualRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind != RouteKind::Unicast {
            write!(f, "{} ", self.kind.name())?;
        }
        write!(f, "{}", self.destination)?;
        if let Some(source) = self.source {
            write!(f, " src {source}")?;
        }
        if let Some(gateway) = self.gateway {
            write!(f, " via {gateway}")?;
        }
        if let Some(device) = &self.device {
            write!(f, " dev {device}")?;
        }
        if let Some(scope) = self.scope {
            write!(f, " scope {}", scope.as_str())?;
        }
        if let Some(table) = self.table {
            write!(f, " table {table}")?;
        }
        if let Some(metric) = self.metric {
            write!(f, " metric {metric}")?;
        }
        if let Some(protocol) = self.protocol {
            match PROTOCOLS.iter().find(|(_, n)| *n == protocol) {
                Some((name, _)) => write!(f, " protocol {name}")?,
                None => write!(f, " protocol {protocol}")?,
            }
        }
        if self.onlink {
            f.write_str(" onlink")?;
        }
        Ok(())
    }
}

impl FromStr for VirtualRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut words = Words::new(s);
        let mut from_text = None;
        let mut to_text = None;
        let mut inet6 = false;
        let mut rule = VirtualRule {
            from: None,
            to: None,
            input_interface: None,
            output_interface: None,
            fwmark: None,
            priority: None,
            table: None,
            family: AddressFamily::Ipv4,
        };
        while let Some(word) = words.next() {
            match word {
                "inet6" => inet6 = true,
                "from" => set_once(&mut from_text, word, words.value(word)?)?,
                "to" => set_once(&mut to_text, word, words.value(word)?)?,
                "iif" | "dev" => {
                    let name = words.value(word)?;
                    check_name(word, name)?;
                    set_once(&mut rule.input_interface, "iif", name.to_owned())?
                }
                "oif" => {
                    let name = words.value(word)?;
                    check_name(word, name)?;
                    set_once(&mut rule.output_interface, "oif", name.to_owned())?
                }
                "fwmark" => {
                    let text = words.value(word)?;
                    let (mark, mask) = match text.split_once('/') {
                        Some((mark, mask)) => (number(word, mark)?, Some(number(word, mask)?)),
                        None => (number(word, text)?, None),
                    };
                    set_once(&mut rule.fwmark, word, (mark, mask))?
                }
                "priority" | "preference" | "pref" | "prio" => set_once(
                    &mut rule.priority,
                    "priority",
                    number(word, words.value(word)?)?,
                )?,
                "table" | "lookup" => {
                    set_once(&mut rule.table, "table", table(word, words.value(word)?)?)?
                }
                other => return Err(unsupported(other, RULE_FORM)),
            }
        }
        // A prefix given as an address fixes the family; `all` follows it.
        let family = [from_text, to_text]
            .into_iter()
            .flatten()
            .filter_map(|t| t.parse::<VirtualAddress>().ok())
            .map(|p| AddressFamily::of(&p.addr))
            .next()
            .unwrap_or(if inet6 {
                AddressFamily::Ipv6
            } else {
                AddressFamily::Ipv4
            });
        rule.family = family;
        rule.from = from_text.map(|t| prefix("from", t, family)).transpose()?;
        rule.to = to_text.map(|t| prefix("to", t, family)).transpose()?;
        if let (Some(from), Some(to)) = (rule.from, rule.to) {
            if AddressFamily::of(&from.addr) != AddressFamily::of(&to.addr) {
                return Err("`from` and `to` are of different families".to_owned());
            }
        }
        Ok(rule)
    }
}

impl fmt::Display for VirtualRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.family == AddressFamily::Ipv6 && self.from.is_none() && self.to.is_none() {
            parts.push("inet6".to_owned());
        }
        // Written as `all` for a /0 so the family survives: `from all` alone is IPv4.
        let prefix_text = |p: &VirtualAddress| {
            if p.prefix_len == 0 && p.addr.is_unspecified() && p.addr.is_ipv4() {
                "all".to_owned()
            } else {
                p.to_string()
            }
        };
        if let Some(from) = &self.from {
            parts.push(format!("from {}", prefix_text(from)));
        }
        if let Some(to) = &self.to {
            parts.push(format!("to {}", prefix_text(to)));
        }
        if let Some(iif) = &self.input_interface {
            parts.push(format!("iif {iif}"));
        }
        if let Some(oif) = &self.output_interface {
            parts.push(format!("oif {oif}"));
        }
        match self.fwmark {
            Some((mark, Some(mask))) => parts.push(format!("fwmark {mark:#x}/{mask:#x}")),
            Some((mark, None)) => parts.push(format!("fwmark {mark:#x}")),
            None => {}
        }
        if let Some(priority) = self.priority {
            parts.push(format!("priority {priority}"));
        }
        if let Some(table) = self.table {
            parts.push(format!("table {table}"));
        }
        f.write_str(&parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(s: &str) -> VirtualRoute {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn routes_read_keepalived_forms_and_write_back_one_form() {
        let r = route("10.0.0.0/24 dev eth1 src 10.0.0.5 scope link table 1");
        assert_eq!(r.device.as_deref(), Some("eth1"));
        assert_eq!(r.table, Some(1));
        assert_eq!(
            r.to_string(),
            "10.0.0.0/24 src 10.0.0.5 dev eth1 scope link table 1"
        );
        let v6 = route("::/0 via fe80::1 dev qg-1 protocol static");
        assert_eq!(v6.protocol, Some(4));
        assert_eq!(v6.to_string(), "::/0 via fe80::1 dev qg-1 protocol static");
        let default = route("default gw 2001:db8::1");
        assert_eq!(default.destination.to_string(), "::/0");
        assert_eq!(
            route("inet6 blackhole default").destination.to_string(),
            "::/0"
        );
        let hole = route("blackhole 192.168.114.0/24");
        assert_eq!(hole.kind, RouteKind::Blackhole);
        assert_eq!(hole.to_string(), "blackhole 192.168.114.0/24");
        let to = route("to 192.168.2.0/24 via 192.168.1.1 metric 5 table main onlink");
        assert_eq!((to.metric, to.table, to.onlink), (Some(5), Some(254), true));
        for r in [r, v6, default, hole, to] {
            assert_eq!(route(&r.to_string()), r, "{r}");
        }
    }

    #[test]
    fn bad_routes_say_what_is_wrong() {
        let error = |s: &str| s.parse::<VirtualRoute>().unwrap_err();
        assert!(error("via 10.0.0.1").contains("no destination"));
        assert!(error("10.0.0.0/8 via fe80::1").contains("family"));
        assert!(error("10.0.0.0/8 via 10.0.0.1 or 10.0.0.2").contains("`or` is not supported yet"));
        assert!(error("10.0.0.0/8 mtu 1400").contains("`mtu` is not supported yet"));
        assert!(error("10.0.0.0/8 table x").contains("not a number"));
        assert!(error("blackhole 10.0.0.0/8 dev eth0").contains("takes no"));
        assert!(error("10.0.0.0/8 onlink").contains("needs `via`"));
        assert!(error("10.0.0.0/8 dev a dev b").contains("twice"));
    }

    #[test]
    fn rules_read_keepalived_forms_and_write_back_one_form() {
        let rule: VirtualRule = "from 10.0.0.5/32 table 1 priority 100".parse().unwrap();
        assert_eq!(rule.to_string(), "from 10.0.0.5/32 priority 100 table 1");
        let marked: VirtualRule = "fwmark 0x10/0xff lookup 7 iif eth0".parse().unwrap();
        assert_eq!(marked.fwmark, Some((16, Some(255))));
        assert_eq!(marked.family(), AddressFamily::Ipv4);
        let v6: VirtualRule = "to 2001:db8::/64 from all table 9".parse().unwrap();
        assert_eq!(v6.family(), AddressFamily::Ipv6);
        let marked6: VirtualRule = "inet6 fwmark 3 table 9".parse().unwrap();
        assert_eq!(marked6.family(), AddressFamily::Ipv6);
        assert_eq!(marked6.to_string(), "inet6 fwmark 0x3 table 9");
        for rule in [rule, marked, v6, marked6] {
            assert_eq!(rule.to_string().parse::<VirtualRule>().unwrap(), rule);
        }
        let error = |s: &str| s.parse::<VirtualRule>().unwrap_err();
        assert!(error("from 10.0.0.0/8 goto 40").contains("`goto` is not supported yet"));
        assert!(error("from 10.0.0.0/8 to 2001:db8::/64").contains("families"));
    }
}
