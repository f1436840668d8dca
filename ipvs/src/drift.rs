//! Cheap drift detection: which services changed in the kernel since the last
//! look, found from one read of `/proc/net/ip_vs` (the kernel's whole-table
//! text view) instead of one netlink dump per service.
//!
//! Why this way (issue 16): the kernel keeps no generation counter for the
//! IPVS table, and netlink has no dump of every destination, so a netlink
//! read of N services costs N + 1 dumps (a full read of 10,000 services was
//! measured at 6.3 s in the emulated VM). `/proc/net/ip_vs` prints every
//! service and destination in one `seq_file`, read here with a large buffer
//! so the kernel restarts its walk only a few times. [`WatchedClient`]
//! compares each service's lines (its key, scheduler, flags, and each
//! destination's address, forwarding and weight; the connection counts are
//! dropped) with the previous read and dumps over netlink only the services
//! whose lines differ. The text view omits a few settings (thresholds, the
//! persistence engine, tunnel options): drift made by hand in those alone is
//! not seen until that service changes otherwise or haldir restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::apply::Applier;
use crate::client::{IpvsClient, IpvsError};
use crate::diff::Op;
use crate::model::{Protocol, ServiceKey, Table};

/// The kernel's text view of the table, in the process's network namespace.
pub const PROC_IP_VS: &str = "/proc/net/ip_vs";

/// One read of the text view: each service's key as the text prints it
/// (`TCP  C0000201:0050`) to its lines without the connection counts.
pub type TextView = BTreeMap<String, Vec<String>>;

/// More than one service in this many changed: read everything.
const PARTIAL_READ_LIMIT: usize = 16;

/// Parses `/proc/net/ip_vs` text into a [`TextView`]. The header lines are
/// skipped; a destination line (`  -> ADDR:PORT FORWARD WEIGHT ACTIVE
/// INACTIVE`, `ip_vs_info_seq_show` in `net/netfilter/ipvs/ip_vs_ctl.c`) keeps
/// its first four fields.
pub fn parse_text_view(text: &str) -> TextView {
    let mut view = TextView::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.first() {
            Some(&"->") => {
                // The header's "  -> RemoteAddress:Port ..." line has no service yet.
                if let Some(key) = &current {
                    let dest = fields[..fields.len().min(4)].join(" ");
                    view.get_mut(key).expect("inserted").push(dest);
                }
            }
            Some(&("TCP" | "UDP" | "SCTP" | "FWM")) if fields.len() >= 2 => {
                let key = format!("{} {}", fields[0], fields[1]);
                view.insert(key.clone(), vec![fields.join(" ")]);
                current = Some(key);
            }
            _ => {}
        }
    }
    for lines in view.values_mut() {
        lines[1..].sort();
    }
    view
}

/// How the text view prints `key` (`ip_vs_info_seq_show`): `TCP  %08X:%04X`,
/// `[%pI6]:%04X` for IPv6 (every group, four lower-case digits), `FWM  %08X`.
pub fn text_key(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Address {
            protocol,
            addr,
            port,
        } => {
            let protocol = match protocol {
                Protocol::Tcp => "TCP",
                Protocol::Udp => "UDP",
                Protocol::Sctp => "SCTP",
            };
            match addr {
                IpAddr::V4(v4) => format!("{protocol} {:08X}:{port:04X}", u32::from(*v4)),
                IpAddr::V6(v6) => {
                    let groups: Vec<String> =
                        v6.segments().iter().map(|g| format!("{g:04x}")).collect();
                    format!("{protocol} [{}]:{port:04X}", groups.join(":"))
                }
            }
        }
        ServiceKey::Fwmark { mark, .. } => format!("FWM {mark:08X}"),
    }
}

/// The services whose text differs between `before` and `now` (changed,
/// added or gone), as text keys.
pub fn changed_keys(before: &TextView, now: &TextView) -> BTreeSet<String> {
    let mut changed: BTreeSet<String> = BTreeSet::new();
    for (key, lines) in now {
        if before.get(key) != Some(lines) {
            changed.insert(key.clone());
        }
    }
    changed.extend(before.keys().filter(|k| !now.contains_key(*k)).cloned());
    changed
}

/// Reads the text view with one large buffer (each `read` restarts the
/// kernel's walk of the service hash from the start, so few reads matter).
fn read_text_view(path: &std::path::Path) -> std::io::Result<TextView> {
    let mut file = std::fs::File::open(path)?;
    let mut text = Vec::with_capacity(4 << 20);
    let mut chunk = vec![0u8; 4 << 20];
    loop {
        let n = file.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        text.extend_from_slice(&chunk[..n]);
    }
    Ok(parse_text_view(&String::from_utf8_lossy(&text)))
}

/// An [`IpvsClient`] whose [`Applier::read_since`] reads over netlink only the
/// services whose `/proc/net/ip_vs` lines changed since its previous read.
#[derive(Debug)]
pub struct WatchedClient {
    client: IpvsClient,
    path: PathBuf,
    previous: Option<TextView>,
    /// How many reads were partial, and of how many services in all (for
    /// tests and benchmarks).
    pub partial_reads: u64,
    /// Services dumped by partial reads.
    pub services_reread: u64,
    /// How many reads were full.
    pub full_reads: u64,
}

impl WatchedClient {
    /// Watches the text view at [`PROC_IP_VS`].
    pub fn new(client: IpvsClient) -> Self {
        WatchedClient {
            client,
            path: PathBuf::from(PROC_IP_VS),
            previous: None,
            partial_reads: 0,
            services_reread: 0,
            full_reads: 0,
        }
    }

    /// The netlink client.
    pub fn client(&self) -> &IpvsClient {
        &self.client
    }

    async fn read_full(&mut self) -> Result<Table, IpvsError> {
        self.full_reads += 1;
        self.client.table().await
    }

    async fn read_changed(
        &mut self,
        known: &Table,
        changed: BTreeSet<String>,
    ) -> Result<Table, IpvsError> {
        let by_text: BTreeMap<String, ServiceKey> =
            known.services.keys().map(|k| (text_key(k), *k)).collect();
        // A changed service haldir did not know of (one added by hand, or an
        // ambiguous fwmark): read everything rather than guess.
        let Some(keys) = changed
            .iter()
            .map(|text| by_text.get(text).copied())
            .collect::<Option<Vec<ServiceKey>>>()
        else {
            return self.read_full().await;
        };
        if keys.is_empty() {
            return Ok(known.clone());
        }
        // Many changes (the first look after programming, say): the bulk read of
        // everything is cheaper than a dump per changed service.
        if keys.len() * PARTIAL_READ_LIMIT > known.services.len() {
            return self.read_full().await;
        }
        self.partial_reads += 1;
        self.services_reread += keys.len() as u64;
        let mut table = known.clone();
        for key in keys {
            table.services.remove(&key);
            let Some(entry) = self.client.service(&key).await? else {
                continue;
            };
            table.insert_service(key, entry.service.clone());
            for dest in self.client.destinations(&key).await? {
                table.insert_dest(&key, dest.key, dest.dest);
            }
        }
        Ok(table)
    }
}

impl Applier for WatchedClient {
    async fn read_table(&mut self) -> Result<Table, IpvsError> {
        self.previous = read_text_view(&self.path).ok();
        self.read_full().await
    }

    async fn read_since(&mut self, known: Option<&Table>) -> Result<Table, IpvsError> {
        // The text is read before netlink, so what changes in between shows
        // in the next comparison.
        let now = read_text_view(&self.path).ok();
        let previous = std::mem::replace(&mut self.previous, now.clone());
        match (known, previous, now) {
            (Some(known), Some(previous), Some(now)) => {
                let changed = changed_keys(&previous, &now);
                self.read_changed(known, changed).await
            }
            _ => self.read_full().await,
        }
    }

    async fn apply(&mut self, ops: &[Op]) -> Vec<Result<(), IpvsError>> {
        self.client.apply(ops).await
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    const TEXT: &str = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
TCP  C0000201:0050 wrr 
  -> 0A000002:0050      Route   1      7          3         
  -> 0A000001:0050      Route   2      0          0         
FWM  00000001 rr persistent 300 FFFFFFFF
  -> 0A000001:0000      Route   1      0          0         
";

    #[test]
    fn the_text_view_keeps_keys_settings_and_weights_but_not_connection_counts() {
        let view = parse_text_view(TEXT);
        assert_eq!(view.len(), 2);
        assert_eq!(
            view["TCP C0000201:0050"],
            [
                "TCP C0000201:0050 wrr",
                "-> 0A000001:0050 Route 2",
                "-> 0A000002:0050 Route 1"
            ]
        );
        let busier = TEXT.replace("7          3", "9          1");
        assert!(changed_keys(&view, &parse_text_view(&busier)).is_empty());
    }

    #[test]
    fn a_changed_weight_a_deleted_service_and_a_new_one_are_the_changed_keys() {
        let before = parse_text_view(TEXT);
        let edited = TEXT
            .replace("Route   2", "Route   5")
            .replace("FWM  00000001 rr persistent 300 FFFFFFFF\n  -> 0A000001:0000      Route   1      0          0         \n", "UDP  C0000202:0035 rr \n");
        let changed = changed_keys(&before, &parse_text_view(&edited));
        assert_eq!(
            changed.into_iter().collect::<Vec<_>>(),
            ["FWM 00000001", "TCP C0000201:0050", "UDP C0000202:0035"]
        );
    }

    #[test]
    fn keys_are_printed_as_the_kernel_prints_them() {
        let v4 = ServiceKey::Address {
            protocol: Protocol::Tcp,
            addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            port: 80,
        };
        assert_eq!(text_key(&v4), "TCP C0000201:0050");
        let v6 = ServiceKey::Address {
            protocol: Protocol::Udp,
            addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            port: 53,
        };
        assert_eq!(
            text_key(&v6),
            "UDP [2001:0db8:0000:0000:0000:0000:0000:0001]:0035"
        );
    }
}
