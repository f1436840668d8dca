//! Cheap drift detection: which services changed in the kernel since the last
//! look, found from one read of `/proc/net/ip_vs` (the kernel's whole-table
//! text view) instead of one netlink dump per service.
//!
//! Why this way (issue 16): the kernel keeps no generation counter for the
//! IPVS table, and netlink has no dump of every destination, so a netlink
//! read of N services costs N + 1 dumps (a full read of 10,000 services was
//! measured at 6.3 s in the emulated VM). `/proc/net/ip_vs` prints every
//! service and destination in one `seq_file`. [`WatchedClient`] reduces each
//! service's lines (its key, scheduler, flags, and each destination's address,
//! forwarding and weight; the connection counts are dropped) to a 64-bit
//! digest, compares the digests with the previous read's and dumps over
//! netlink only the services whose digests differ. Nothing is allocated per
//! line: a round that finds nothing changed is one read of the text through a
//! 64 KiB buffer, one pass over its bytes and a comparison
//! of two sorted lists (the first version kept every line as a string and,
//! with a clone of the known table per round, cost 12 % of a core at 10,000
//! services in the emulated VM). The text view omits a few settings
//! (thresholds, the persistence engine, tunnel options): drift made by hand in
//! those alone is not seen until that service changes otherwise or haldir
//! restarts.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::apply::Applier;
use crate::client::{IpvsClient, IpvsError};
use crate::diff::Op;
use crate::model::{Protocol, ServiceKey, Table};

/// The kernel's text view of the table, in the process's network namespace.
pub const PROC_IP_VS: &str = "/proc/net/ip_vs";

/// One read of the text view: for each service, the hash of its key as the
/// text prints it ([`key_hash`]) and the digest of its lines, sorted by key
/// hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextView {
    services: Vec<(u64, u64)>,
}

impl TextView {
    /// How many services the text listed.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// Whether it listed none.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

/// More than one service in this many changed: read everything.
const PARTIAL_READ_LIMIT: usize = 16;

/// FNV-1a over `fields`, each followed by a separator byte, then mixed
/// (splitmix64's finalizer) so that sums of digests stay well spread.
fn fields_hash<'a>(fields: impl Iterator<Item = &'a [u8]>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for field in fields {
        for &byte in field.iter().chain(std::iter::once(&b' ')) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// The whitespace-separated fields of a line.
fn words(line: &[u8]) -> impl Iterator<Item = &[u8]> + Clone {
    line.split(u8::is_ascii_whitespace)
        .filter(|w| !w.is_empty())
}

/// The hash a [`TextView`] keys a service by: that of its text key ([`text_key`]).
pub fn key_hash(text_key: &str) -> u64 {
    fields_hash(words(text_key.as_bytes()))
}

/// Parses `/proc/net/ip_vs` text into a [`TextView`]. The header lines are
/// skipped; a destination line (`  -> ADDR:PORT FORWARD WEIGHT ACTIVE
/// INACTIVE`, `ip_vs_info_seq_show` in `net/netfilter/ipvs/ip_vs_ctl.c`) counts
/// with its first four fields. A service's digest is its own line's hash plus
/// the sum of its destinations' (the order the kernel lists them in does not
/// matter).
pub fn parse_text_view(text: &[u8]) -> TextView {
    let mut digest = TextViewDigest::default();
    for line in text.split(|&b| b == b'\n') {
        digest.line(line);
    }
    digest.finish()
}

/// [`parse_text_view`] one line at a time, so that the text need not be held whole.
#[derive(Debug, Default)]
struct TextViewDigest {
    services: Vec<(u64, u64)>,
    current: Option<(u64, u64)>,
}

impl TextViewDigest {
    fn line(&mut self, line: &[u8]) {
        let fields = words(line);
        match fields.clone().next() {
            Some(b"->") => {
                // The header's "  -> RemoteAddress:Port ..." line has no service yet.
                if let Some((_, digest)) = &mut self.current {
                    *digest = digest.wrapping_add(fields_hash(fields.take(4)));
                }
            }
            Some(b"TCP" | b"UDP" | b"SCTP" | b"FWM") if fields.clone().nth(1).is_some() => {
                self.services.extend(self.current.take());
                let key = fields_hash(fields.clone().take(2));
                self.current = Some((key, fields_hash(fields)));
            }
            _ => {}
        }
    }

    fn finish(mut self) -> TextView {
        self.services.extend(self.current);
        self.services.sort_unstable();
        TextView {
            services: self.services,
        }
    }
}

/// Digests the text view at `path` line by line through a small buffer: held whole,
/// 10,000 services' text was a 4 MB buffer kept for good.
fn read_text_view_at(path: &std::path::Path) -> std::io::Result<TextView> {
    use std::io::BufRead as _;
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, std::fs::File::open(path)?);
    let mut digest = TextViewDigest::default();
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(digest.finish());
        }
        digest.line(&line);
    }
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

/// The key hashes of the services whose digests differ between `before` and
/// `now` (changed, added or gone), in order.
pub fn changed_keys(before: &TextView, now: &TextView) -> Vec<u64> {
    let (mut a, mut b) = (
        before.services.iter().peekable(),
        now.services.iter().peekable(),
    );
    let mut changed = Vec::new();
    loop {
        let step = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(x), Some(y)) if x == y => (true, true, None),
            (Some(x), Some(y)) if x.0 == y.0 => (true, true, Some(x.0)),
            (Some(x), Some(y)) if x.0 < y.0 => (true, false, Some(x.0)),
            (Some(x), None) => (true, false, Some(x.0)),
            (_, Some(y)) => (false, true, Some(y.0)),
        };
        if step.0 {
            a.next();
        }
        if step.1 {
            b.next();
        }
        changed.extend(step.2);
    }
    changed.dedup();
    changed
}

/// An [`IpvsClient`] whose [`Applier::read_since`] reads over netlink only the
/// services whose `/proc/net/ip_vs` lines changed since its previous read.
#[derive(Debug)]
pub struct WatchedClient {
    client: IpvsClient,
    path: PathBuf,
    previous: Option<TextView>,
    /// Whether the last `read_since` found no service's lines changed.
    unchanged: bool,
    /// The CPU time the last reads of the text view took (the kernel's walk and
    /// formatting, and the digest).
    read_costs: ReadCosts,
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
            read_costs: ReadCosts::default(),
            unchanged: false,
            partial_reads: 0,
            services_reread: 0,
            full_reads: 0,
        }
    }

    /// The netlink client.
    pub fn client(&self) -> &IpvsClient {
        &self.client
    }

    /// Reads the text view and digests it, on the blocking pool: at 10,000 services
    /// the kernel takes half a second of emulated CPU to print it (its walk restarts
    /// from the first service for every page read), time the runtime's thread owes to
    /// the VRRP adverts.
    async fn read_text_view(&mut self) -> std::io::Result<TextView> {
        let path = self.path.clone();
        let (view, cost) = tokio::task::spawn_blocking(move || {
            let cpu_before = thread_cpu_time();
            let view = read_text_view_at(&path);
            let cost = thread_cpu_time()
                .zip(cpu_before)
                .map(|(after, before)| after.saturating_sub(before));
            (view, cost)
        })
        .await
        .map_err(std::io::Error::other)?;
        if let Some(cost) = cost {
            self.read_costs.record(cost);
        }
        view
    }

    async fn read_full(&mut self) -> Result<Table, IpvsError> {
        self.full_reads += 1;
        self.client.table().await
    }

    async fn read_changed(
        &mut self,
        known: Arc<Table>,
        changed: Vec<u64>,
    ) -> Result<Arc<Table>, IpvsError> {
        if changed.is_empty() {
            return Ok(known);
        }
        let by_hash: BTreeMap<u64, ServiceKey> = known
            .services
            .keys()
            .map(|k| (key_hash(&text_key(k)), *k))
            .collect();
        // A changed service haldir did not know of (one added by hand, or an
        // ambiguous fwmark): read everything rather than guess.
        let Some(keys) = changed
            .iter()
            .map(|hash| by_hash.get(hash).copied())
            .collect::<Option<Vec<ServiceKey>>>()
        else {
            return self.read_full().await.map(Arc::new);
        };
        // Many changes (the first look after programming, say): the bulk read of
        // everything is cheaper than a dump per changed service.
        if keys.len() * PARTIAL_READ_LIMIT > known.services.len() {
            return self.read_full().await.map(Arc::new);
        }
        self.partial_reads += 1;
        // A copy when it is shared (with the desired table): only when something drifted.
        let mut known = Arc::unwrap_or_clone(known);
        self.services_reread += keys.len() as u64;
        for key in keys {
            known.services.remove(&key);
            let Some(entry) = self.client.service(&key).await? else {
                continue;
            };
            known.insert_service(key, entry.service.clone());
            for dest in self.client.destinations(&key).await? {
                known.insert_dest(&key, dest.key, dest.dest);
            }
        }
        Ok(Arc::new(known))
    }
}

impl Applier for WatchedClient {
    async fn read_table(&mut self) -> Result<Table, IpvsError> {
        self.previous = self.read_text_view().await.ok();
        self.read_full().await
    }

    async fn read_since(&mut self, known: Option<Arc<Table>>) -> Result<Arc<Table>, IpvsError> {
        self.unchanged = false;
        // The text is read before netlink, so what changes in between shows
        // in the next comparison.
        let now = self.read_text_view().await.ok();
        let previous = std::mem::replace(&mut self.previous, now);
        match (known, previous, &self.previous) {
            (Some(known), Some(previous), Some(now)) => {
                let changed = changed_keys(&previous, now);
                self.unchanged = changed.is_empty();
                self.read_changed(known, changed).await
            }
            _ => self.read_full().await.map(Arc::new),
        }
    }

    fn read_cost(&self) -> Option<Duration> {
        self.read_costs.typical()
    }

    fn unchanged_since_known(&self) -> bool {
        self.unchanged
    }

    async fn apply(&mut self, ops: Arc<Vec<Op>>) -> Vec<Result<(), IpvsError>> {
        self.client.apply(ops).await
    }
}

/// What a read of the text view costs, judged from the last
/// [`ReadCosts::WINDOW`] reads: their median (the health wiring weighs its table
/// publications the same way). A thread's CPU clock also runs
/// while a virtual machine's vCPU is descheduled by its host, so one read can
/// show ten times its cost; pacing drift checks by that one read would stretch
/// the period for nothing. The least of them would pace too fast: reads of the
/// same table vary threefold under emulation, and the share of a core would
/// exceed its budget. Nothing is said until the window is full.
#[derive(Debug, Clone, Default)]
pub struct ReadCosts {
    last: std::collections::VecDeque<Duration>,
}

impl ReadCosts {
    /// How many reads are weighed.
    pub const WINDOW: usize = 3;

    /// Counts one read's cost, forgetting the oldest beyond the window.
    pub fn record(&mut self, cost: Duration) {
        if self.last.len() == Self::WINDOW {
            self.last.pop_front();
        }
        self.last.push_back(cost);
    }

    /// The median cost of the last [`WINDOW`](Self::WINDOW) reads, once there
    /// were that many.
    pub fn typical(&self) -> Option<Duration> {
        if self.last.len() < Self::WINDOW {
            return None;
        }
        let mut costs: Vec<Duration> = self.last.iter().copied().collect();
        costs.sort_unstable();
        Some(costs[costs.len() / 2])
    }
}

/// What a piece of work on one thread cost: the thread's CPU time over it
/// ([`thread_cpu_time`] before and after), capped by its wall time; the wall time alone
/// when the CPU clock could not be read. Work that waited for a core (a host
/// descheduling a VM's vCPU) costs what it used, not what it waited.
pub fn cpu_cost(
    wall: Duration,
    cpu_before: Option<Duration>,
    cpu_after: Option<Duration>,
) -> Duration {
    match (cpu_before, cpu_after) {
        (Some(before), Some(after)) => after.saturating_sub(before).min(wall),
        _ => wall,
    }
}

/// The CPU time the calling thread has used (what the drift reader and the
/// status's kernel reader pace themselves by).
pub fn thread_cpu_time() -> Option<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `now` is.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } == 0;
    ok.then(|| Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn a_read_costs_its_cpu_time_capped_by_its_wall_time() {
        let ms = Duration::from_millis;
        // A read that waited 2 s for a core but used 10 ms of CPU costs 10 ms.
        assert_eq!(cpu_cost(ms(2000), Some(ms(500)), Some(ms(510))), ms(10));
        // More CPU than wall time cannot be the read's: capped at 20 ms.
        assert_eq!(cpu_cost(ms(20), Some(ms(500)), Some(ms(700))), ms(20));
        // No CPU clock: wall time.
        assert_eq!(cpu_cost(ms(30), None, Some(ms(700))), ms(30));
        assert!(thread_cpu_time().is_some());
    }

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
        let view = parse_text_view(TEXT.as_bytes());
        assert_eq!(view.len(), 2);
        let busier = TEXT.replace("7          3", "9          1");
        assert!(changed_keys(&view, &parse_text_view(busier.as_bytes())).is_empty());
        // The kernel lists destinations in the order they were added: a destination
        // deleted and added again by hand moves, and that alone is no change.
        let reordered = TEXT.replace(
            "  -> 0A000002:0050      Route   1      7          3         \n  -> 0A000001:0050      Route   2      0          0         \n",
            "  -> 0A000001:0050      Route   2      0          0         \n  -> 0A000002:0050      Route   1      7          3         \n",
        );
        assert_ne!(reordered, TEXT);
        assert!(changed_keys(&view, &parse_text_view(reordered.as_bytes())).is_empty());
        // A weight, a scheduler or a forwarding method is a change.
        for edited in [
            TEXT.replace("Route   2", "Route   3"),
            TEXT.replace("wrr", "rr"),
            TEXT.replace("0A000002:0050      Route", "0A000002:0050      Masq "),
        ] {
            assert_eq!(
                changed_keys(&view, &parse_text_view(edited.as_bytes())),
                [key_hash("TCP C0000201:0050")]
            );
        }
    }

    #[test]
    fn the_pace_is_the_median_of_three_reads_so_one_costly_read_does_not_set_it() {
        let ms = Duration::from_millis;
        let mut costs = ReadCosts::default();
        // A first read inflated by a descheduled vCPU says nothing on its own.
        costs.record(ms(61));
        costs.record(ms(4));
        assert_eq!(costs.typical(), None);
        costs.record(ms(5));
        assert_eq!(costs.typical(), Some(ms(5)));
        costs.record(ms(60));
        assert_eq!(costs.typical(), Some(ms(5)));
        // Reads that stay costly (a larger table) set the pace once two of the three
        // are.
        costs.record(ms(500));
        assert_eq!(costs.typical(), Some(ms(60)));
        costs.record(ms(150));
        assert_eq!(costs.typical(), Some(ms(150)));
        costs.record(ms(450));
        assert_eq!(costs.typical(), Some(ms(450)));
    }

    #[test]
    fn the_file_read_line_by_line_digests_as_the_whole_text_does() {
        let dir = std::env::temp_dir().join(format!("haldir-drift-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ip_vs");
        // A last line without its newline counts too.
        let text = TEXT.trim_end_matches('\n').to_owned();
        std::fs::write(&path, &text).unwrap();
        let read = read_text_view_at(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(read, parse_text_view(TEXT.as_bytes()));
        assert_eq!(read.len(), 2);
        assert!(read_text_view_at(&dir.join("absent")).is_err());
    }

    #[test]
    fn a_changed_weight_a_deleted_service_and_a_new_one_are_the_changed_keys() {
        let before = parse_text_view(TEXT.as_bytes());
        let edited = TEXT
            .replace("Route   2", "Route   5")
            .replace("FWM  00000001 rr persistent 300 FFFFFFFF\n  -> 0A000001:0000      Route   1      0          0         \n", "UDP  C0000202:0035 rr \n");
        let changed = changed_keys(&before, &parse_text_view(edited.as_bytes()));
        let mut expected: Vec<u64> = ["FWM 00000001", "TCP C0000201:0050", "UDP C0000202:0035"]
            .into_iter()
            .map(key_hash)
            .collect();
        expected.sort_unstable();
        assert_eq!(changed, expected);
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
