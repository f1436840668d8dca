//! The kernel's IPVS connection table as `/proc/net/ip_vs_conn` (or
//! `/proc/net/ip_vs_conn_sync`) shows it, per network namespace, and its
//! mapping to sync-protocol records ([`crate::sync_wire::SyncConn`]).
//!
//! The format (`ip_vs_conn_seq_show`, net/netfilter/ipvs/ip_vs_conn.c, 6.1):
//!
//! ```text
//! Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
//! TCP 0A030009 9C40 0A030064 0050 0A03000B 0050 ESTABLISHED     899
//! ```
//!
//! IPv4 addresses are 8 hex digits (host order of the big-endian address),
//! IPv6 ones `%pI6` (eight groups of four hex digits), ports 4 hex digits,
//! the state by name, `Expires` in whole seconds left, then the persistence
//! engine's name and data when there is one. `ip_vs_conn_sync` has an
//! `Origin` column (`LOCAL` / `SYNC`) before `Expires` and no engine columns.
//!
//! What `/proc` does not show, and where the mapping takes it from: the
//! connection flags. The forwarding method and the firewall mark come from
//! the IPVS service table (the caller's [`Forwarder`]); the inactive flag
//! follows the state (TCP and SCTP connections are active only when
//! ESTABLISHED, as `set_tcp_state` / `set_sctp_state` count them); a
//! persistence template is recognised by its shape (state `ASSURED`, or
//! client port 0 with state `NONE`; protocol `IP` is a firewall-mark
//! template whose "virtual address" is the mark).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::{DestKey, Forwarding, Protocol, ServiceKey, Table};
use crate::sync_wire::{flags, proto, sctp_state, tcp_state, SyncConn, TEMPLATE_STATES};

/// One line of the connection table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnEntry {
    /// IP protocol number (`IP` templates: 0).
    pub protocol: u8,
    /// Client address (the client network for persistence templates).
    pub caddr: IpAddr,
    /// Client port.
    pub cport: u16,
    /// Virtual address (a firewall mark, for `IP` templates).
    pub vaddr: IpAddr,
    /// Virtual port.
    pub vport: u16,
    /// Destination address.
    pub daddr: IpAddr,
    /// Destination port.
    pub dport: u16,
    /// The state as printed.
    pub state: String,
    /// Whole seconds until it expires.
    pub expires: u32,
    /// A persistence engine's name and data follow (sip): not reproducible
    /// from `/proc` alone.
    pub has_pe_data: bool,
}

/// Why a line was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnLineError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub reason: &'static str,
}

fn protocol_number(name: &str) -> Option<u8> {
    match name {
        "TCP" => Some(proto::TCP),
        "UDP" => Some(proto::UDP),
        "SCTP" => Some(proto::SCTP),
        "IP" => Some(proto::IP),
        "ICMP" => Some(1),
        "ICMPv6" => Some(58),
        other => other.strip_prefix("IP_").and_then(|n| n.parse().ok()),
    }
}

fn address(text: &str) -> Option<IpAddr> {
    if text.len() == 8 && !text.contains(':') {
        return u32::from_str_radix(text, 16)
            .ok()
            .map(|v| IpAddr::V4(Ipv4Addr::from(v)));
    }
    text.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

fn port(text: &str) -> Option<u16> {
    if text.len() != 4 {
        return None;
    }
    u16::from_str_radix(text, 16).ok()
}

/// Parses the whole file: the entries read and the lines that were not.
pub fn parse_conn_table(text: &str) -> (Vec<ConnEntry>, Vec<ConnLineError>) {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    let mut with_origin = false;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("Pro ") {
            with_origin = line.contains("Origin");
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line, with_origin) {
            Ok(entry) => entries.push(entry),
            Err(reason) => errors.push(ConnLineError {
                line: i + 1,
                reason,
            }),
        }
    }
    (entries, errors)
}

fn parse_line(line: &str, with_origin: bool) -> Result<ConnEntry, &'static str> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let needed = if with_origin { 10 } else { 9 };
    if fields.len() < needed {
        return Err("too few fields");
    }
    let protocol = protocol_number(fields[0]).ok_or("unknown protocol")?;
    let caddr = address(fields[1]).ok_or("bad client address")?;
    let cport = port(fields[2]).ok_or("bad client port")?;
    let vaddr = address(fields[3]).ok_or("bad virtual address")?;
    let vport = port(fields[4]).ok_or("bad virtual port")?;
    let daddr = address(fields[5]).ok_or("bad destination address")?;
    let dport = port(fields[6]).ok_or("bad destination port")?;
    let state = fields[7].to_owned();
    let expires_at = if with_origin { 9 } else { 8 };
    let expires = fields[expires_at]
        .parse::<u32>()
        .map_err(|_| "bad expires")?;
    if caddr.is_ipv4() != vaddr.is_ipv4() {
        return Err("mixed address families");
    }
    Ok(ConnEntry {
        protocol,
        caddr,
        cport,
        vaddr,
        vport,
        daddr,
        dport,
        state,
        expires,
        has_pe_data: !with_origin && fields.len() > 9,
    })
}

/// Where the forwarding method and firewall mark of a connection come from:
/// the service table. `None`: no service of this table has that destination.
pub trait Forwarder {
    /// (`IP_VS_CONN_F_*` forwarding method, firewall mark or 0) of the
    /// service that `entry` belongs to.
    fn lookup(&self, entry: &ConnEntry) -> Option<(u32, u32)>;
}

/// The `IP_VS_CONN_F_*` forwarding bits of `forwarding`.
pub fn forwarding_flags(forwarding: &Forwarding) -> u32 {
    match forwarding {
        Forwarding::Masquerade => flags::MASQ,
        Forwarding::LocalNode => flags::LOCALNODE,
        Forwarding::Tunnel(_) => flags::TUNNEL,
        Forwarding::DirectRoute => flags::DROUTE,
        Forwarding::Bypass => flags::BYPASS,
    }
}

/// A [`Forwarder`] built from an IPVS table (read from the kernel): the
/// destination of an entry is looked up in the service of its protocol,
/// virtual address and port, then in the firewall-mark services (whose
/// connections show the packet's own address and port).
#[derive(Debug, Default)]
pub struct ServiceIndex {
    by_address: HashMap<(u8, IpAddr, u16), Vec<(DestKey, u32)>>,
    by_mark: Vec<(u32, Vec<(DestKey, u32)>)>,
}

impl ServiceIndex {
    /// Indexes `table`.
    pub fn new(table: &Table) -> Self {
        let mut index = ServiceIndex::default();
        for (key, (_, dests)) in &table.services {
            let dests: Vec<(DestKey, u32)> = dests
                .iter()
                .map(|(k, d)| (*k, forwarding_flags(&d.forwarding)))
                .collect();
            match key {
                ServiceKey::Address {
                    protocol,
                    addr,
                    port,
                } => {
                    let number = match protocol {
                        Protocol::Tcp => proto::TCP,
                        Protocol::Udp => proto::UDP,
                        Protocol::Sctp => proto::SCTP,
                    };
                    index.by_address.insert((number, *addr, *port), dests);
                }
                ServiceKey::Fwmark { mark, .. } => index.by_mark.push((*mark, dests)),
            }
        }
        index
    }

    /// Number of services indexed.
    pub fn len(&self) -> usize {
        self.by_address.len() + self.by_mark.len()
    }

    /// Whether no service is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn find_dest(dests: &[(DestKey, u32)], entry: &ConnEntry) -> Option<u32> {
    // Exact port first; direct routing and tunnelling ignore the port.
    dests
        .iter()
        .find(|(k, _)| k.addr == entry.daddr && k.port == entry.dport)
        .or_else(|| dests.iter().find(|(k, _)| k.addr == entry.daddr))
        .map(|(_, fwd)| *fwd)
}

impl Forwarder for ServiceIndex {
    fn lookup(&self, entry: &ConnEntry) -> Option<(u32, u32)> {
        if entry.protocol != proto::IP {
            for vport in [entry.vport, 0] {
                if let Some(dests) = self.by_address.get(&(entry.protocol, entry.vaddr, vport)) {
                    if let Some(fwd) = find_dest(dests, entry) {
                        return Some((fwd, 0));
                    }
                }
            }
        }
        let wanted_mark = match (entry.protocol, entry.vaddr) {
            (proto::IP, IpAddr::V4(mark)) => Some(u32::from(mark)),
            _ => None,
        };
        self.by_mark
            .iter()
            .filter(|(mark, _)| wanted_mark.is_none_or(|m| m == *mark))
            .find_map(|(mark, dests)| find_dest(dests, entry).map(|fwd| (fwd, *mark)))
    }
}

/// Why an entry is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// No service with its destination (or the protocol is not balanced).
    NoService,
    /// A persistence engine's data (cannot be rebuilt from `/proc`).
    PeData,
    /// About to expire (0 seconds left).
    Expiring,
    /// State name unknown for its protocol.
    UnknownState,
}

impl ConnEntry {
    /// Whether it is a persistence template.
    pub fn is_template(&self) -> bool {
        self.protocol == proto::IP
            || self.state == "ASSURED"
            || (self.cport == 0 && self.state == "NONE")
    }

    /// The sync record for it, or why none is sent.
    pub fn to_sync(&self, forwarder: &dyn Forwarder) -> Result<SyncConn, Skip> {
        if self.has_pe_data {
            return Err(Skip::PeData);
        }
        if self.expires == 0 {
            return Err(Skip::Expiring);
        }
        let template = self.is_template();
        let state = if template {
            TEMPLATE_STATES
                .iter()
                .position(|s| *s == self.state)
                .map(|i| i as u16)
        } else {
            match self.protocol {
                proto::TCP => tcp_state(&self.state),
                proto::SCTP => sctp_state(&self.state),
                // UDP and the others have the one state IP_VS_UDP_S_NORMAL.
                _ => Some(0),
            }
        }
        .ok_or(Skip::UnknownState)?;
        let (forwarding, mut fwmark) = forwarder.lookup(self).ok_or(Skip::NoService)?;
        let mut flag_bits = forwarding & flags::FWD_MASK;
        if template {
            flag_bits |= flags::TEMPLATE;
            if self.protocol == proto::IP {
                // The template of a firewall-mark service keeps the mark in vaddr.
                if let IpAddr::V4(mark) = self.vaddr {
                    fwmark = u32::from(mark);
                }
            }
        } else {
            let established = match self.protocol {
                proto::TCP => tcp_state("ESTABLISHED"),
                proto::SCTP => sctp_state("ESTABLISHED"),
                _ => Some(state),
            };
            if Some(state) != established {
                flag_bits |= flags::INACTIVE;
            }
        }
        Ok(SyncConn {
            protocol: self.protocol,
            flags: flag_bits,
            state,
            cport: self.cport,
            vport: self.vport,
            dport: self.dport,
            fwmark,
            // `/proc` rounds down; one second more never expires it early.
            timeout: self.expires.saturating_add(1),
            caddr: self.caddr,
            vaddr: self.vaddr,
            daddr: self.daddr,
            options: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
TCP 0A030009 9C40 0A030064 0050 0A03000B 0050 ESTABLISHED     899
TCP 0A030009 9C41 0A030064 0050 0A03000C 0050 FIN_WAIT         95
UDP 0A030009 1F90 0A030064 0035 0A03000B 0035 UDP             299
TCP 0A030000 0000 0A030064 0050 0A03000B 0050 NONE            359
IP  0A030009 0000 00000001 0000 0A03000B 0000 ASSURED         300
TCP 2001:0db8:0000:0000:0000:0000:0000:0009 9C40 2001:0db8:0000:0000:0000:0000:0000:0100 0050 2001:0db8:0000:0000:0000:0000:0000:0011 0050 SYN_RECV         59
UDP 0A030009 13C4 0A030064 13C4 0A03000B 13C4 UDP              30 sip 1234@x
TCP zz
";

    struct Dr;
    impl Forwarder for Dr {
        fn lookup(&self, _: &ConnEntry) -> Option<(u32, u32)> {
            Some((flags::DROUTE, 0))
        }
    }

    #[test]
    fn the_proc_table_parses_with_every_column() {
        let (entries, errors) = parse_conn_table(TABLE);
        assert_eq!(
            errors,
            [ConnLineError {
                line: 9,
                reason: "too few fields"
            }]
        );
        assert_eq!(entries.len(), 7);
        let first = &entries[0];
        assert_eq!(first.protocol, proto::TCP);
        assert_eq!(first.caddr, "10.3.0.9".parse::<IpAddr>().unwrap());
        assert_eq!(first.cport, 40000);
        assert_eq!(first.vaddr, "10.3.0.100".parse::<IpAddr>().unwrap());
        assert_eq!((first.vport, first.dport), (80, 80));
        assert_eq!(first.daddr, "10.3.0.11".parse::<IpAddr>().unwrap());
        assert_eq!((first.state.as_str(), first.expires), ("ESTABLISHED", 899));
        assert_eq!(entries[5].caddr, "2001:db8::9".parse::<IpAddr>().unwrap());
        assert_eq!(entries[5].daddr, "2001:db8::11".parse::<IpAddr>().unwrap());
        assert!(entries[6].has_pe_data);
    }

    #[test]
    fn the_sync_table_variant_with_origin_parses() {
        let text = "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Origin Expires\n\
                    TCP 0A030009 9C40 0A030064 0050 0A03000B 0050 ESTABLISHED LOCAL      899\n";
        let (entries, errors) = parse_conn_table(text);
        assert!(errors.is_empty());
        assert_eq!(entries[0].expires, 899);
        assert!(!entries[0].has_pe_data);
    }

    #[test]
    fn entries_map_to_records_with_flags_from_state_and_service() {
        let (entries, _) = parse_conn_table(TABLE);
        let sync: Vec<Result<SyncConn, Skip>> = entries.iter().map(|e| e.to_sync(&Dr)).collect();
        let established = sync[0].as_ref().unwrap();
        assert_eq!(established.flags, flags::DROUTE);
        assert_eq!((established.state, established.timeout), (1, 900));
        let fin_wait = sync[1].as_ref().unwrap();
        assert_eq!(fin_wait.flags, flags::DROUTE | flags::INACTIVE);
        assert_eq!(fin_wait.state, 4);
        let udp = sync[2].as_ref().unwrap();
        assert_eq!((udp.flags, udp.state), (flags::DROUTE, 0));
        let template = sync[3].as_ref().unwrap();
        assert_eq!(template.flags, flags::DROUTE | flags::TEMPLATE);
        let mark_template = sync[4].as_ref().unwrap();
        assert_eq!(
            (
                mark_template.flags,
                mark_template.state,
                mark_template.fwmark
            ),
            (flags::DROUTE | flags::TEMPLATE, 1, 1)
        );
        assert!(sync[5].as_ref().unwrap().is_ipv6());
        assert_eq!(sync[6], Err(Skip::PeData));
    }

    #[test]
    fn the_service_table_gives_the_forwarding_method_and_mark() {
        use crate::model::{AddressFamily, Destination, Service};
        let mut table = Table::new();
        let web = ServiceKey::Address {
            protocol: Protocol::Tcp,
            addr: "10.3.0.100".parse().unwrap(),
            port: 80,
        };
        table.insert_service(web, Service::new("rr"));
        table.insert_dest(
            &web,
            DestKey::new("10.3.0.11".parse().unwrap(), 80),
            Destination::new(Forwarding::DirectRoute, 1),
        );
        let marked = ServiceKey::Fwmark {
            family: AddressFamily::Ipv4,
            mark: 1,
        };
        table.insert_service(marked, Service::new("rr"));
        table.insert_dest(
            &marked,
            DestKey::new("10.3.0.12".parse().unwrap(), 0),
            Destination::new(Forwarding::Masquerade, 1),
        );
        let index = ServiceIndex::new(&table);
        let (entries, _) = parse_conn_table(TABLE);
        assert_eq!(index.lookup(&entries[0]), Some((flags::DROUTE, 0)));
        // 10.3.0.12 is only in the fwmark service.
        assert_eq!(index.lookup(&entries[1]), Some((flags::MASQ, 1)));
        // UDP 10.3.0.100:53 has no service.
        assert_eq!(index.lookup(&entries[2]), None);
        assert_eq!(entries[2].to_sync(&index), Err(Skip::NoService));
    }
}
