//! The DR real-server ARP check's detection, pure: finds real servers that answer ARP for a
//! virtual IP (the direct-routing "ARP problem"). No sockets, no clock of its own: the
//! `haldir` binary looks up routes, sends the requests this machine asks for, hands it the
//! replies and the time, and logs and publishes what it reports.
//!
//! In direct routing the real servers hold the VIP on `lo` and must never answer ARP for it
//! (`arp_ignore=1`, `arp_announce=2`). One that does makes the gateway (or any client on the
//! segment) send VIP traffic straight to it, past the director. The directors themselves keep
//! `arp_ignore=0`: the master answers for the VIP, and so may the other director when it
//! holds the VIP.
//!
//! A round, every [`CHECK_INTERVAL`] (sooner after a reload), on each segment of DR real
//! servers (the interface the route to a real server leaves by):
//!
//! 1. [`Event::RoundDue`]: the driver plans the round ([`RoundPlan`]: the [`Segment`]s from its
//!    route lookups) and hands it to [`ArpCheck::start_round`];
//! 2. [`ArpCheck::poll_transmit`] yields an ARP request (RFC 826) for each VIP of an IPv4 DR
//!    virtual server, each real server's own address and each known director's address; the
//!    VIP requests go out again [`VIP_REQUEST_GAP`] later;
//! 3. for [`REPLY_WINDOW`] the replies come in through [`ArpCheck::handle_reply`];
//! 4. at its end a reply for a VIP from a MAC that is not a director's is a conflict. Director
//!    MACs are this host's own interfaces' MACs, the VRRP virtual MACs of its VRIDs
//!    (RFC 5798 §7.3), and the MACs that answered for a director's address within
//!    [`DIRECTOR_MEMORY`] (directors run `arp_ignore=0`, so the peer answers for its own VRRP
//!    address from the same MAC it would answer for the VIP). The guilty real server is the
//!    one whose own address was answered from that MAC.
//!
//! New and cleared conflicts come out as [`Event`]s, once each; the current state is the
//! [`Report`] (the `dr_arp_check` object of `haldir status --json`; the status crate renders
//! it for `haldir status` and `/metrics`). IPv6 virtual servers are left alone (their
//! counterpart would be a Neighbor Solicitation for the VIP; not done).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime};

use haldir_config::{LvsMethod, Model, VirtualServerAddress};
use serde::{Deserialize, Serialize};

mod report;

use report::unix_seconds;
pub use report::{Report, SegmentReport, StandingConflict};

/// How often a round runs.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// How long a round listens for replies after its first requests.
pub const REPLY_WINDOW: Duration = Duration::from_secs(1);
/// The request for each VIP goes out twice, this far apart, so that one lost reply does not
/// clear a standing conflict.
pub const VIP_REQUEST_GAP: Duration = Duration::from_millis(200);
/// How long a MAC that answered for a director's address counts as a director's after it
/// last did.
pub const DIRECTOR_MEMORY: Duration = Duration::from_secs(600);

/// MACs kept per address asked in one round: a host forging replies from many MACs
/// gets this many conflicts (and log lines and metric series) per address, no more;
/// further replies are dropped and counted ([`ArpCheck::dropped_replies`]).
pub const MAX_MACS_PER_ADDRESS: usize = 4;

/// Director MACs remembered at most ([`DIRECTOR_MEMORY`]); a new one beyond is not.
pub const MAX_LEARNED_DIRECTOR_MACS: usize = 16;
/// The wait between a reload and the round that follows it.
pub const AFTER_RELOAD: Duration = Duration::from_millis(500);

/// An Ethernet address.
pub type Mac = [u8; 6];

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One IPv4 DR virtual server the check covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The service as `haldir status` names it (`TCP 10.0.0.100:80`).
    pub virtual_server: String,
    /// Its virtual IP.
    pub vip: Ipv4Addr,
    /// Its IPv4 real servers.
    pub real_servers: Vec<Ipv4Addr>,
}

/// The virtual servers to check: those with an IPv4 address (not a fwmark) that forward by
/// direct routing.
pub fn targets(model: &Model) -> Vec<Target> {
    model
        .virtual_servers
        .iter()
        .filter(|vs| vs.method == LvsMethod::DirectRouting)
        .filter_map(|vs| match vs.address {
            VirtualServerAddress::Socket {
                ip: IpAddr::V4(vip),
                ..
            } => Some(Target {
                virtual_server: crate::ipvs_table::service_key(vs).to_string(),
                vip,
                real_servers: vs.real_servers.iter().fold(Vec::new(), |mut all, rs| {
                    // The same address may serve several ports: asked for once.
                    match rs.ip {
                        IpAddr::V4(ip) if !all.contains(&ip) => all.push(ip),
                        _ => {}
                    }
                    all
                }),
            }),
            _ => None,
        })
        .collect()
}

/// Addresses of the other directors: the configured unicast peers and `masters`, the masters
/// the VRRP driver has seen (IPv4 only).
pub fn director_addresses(
    model: &Model,
    masters: impl IntoIterator<Item = IpAddr>,
) -> BTreeSet<Ipv4Addr> {
    let peers = model
        .vrrp_instances
        .iter()
        .flat_map(|i| i.unicast_peer.iter().copied());
    peers
        .chain(masters)
        .filter_map(|a| match a {
            IpAddr::V4(v4) if !v4.is_unspecified() => Some(v4),
            _ => None,
        })
        .collect()
}

/// The VRRP virtual MACs of this host's virtual routers, `00:00:5e:00:01:{VRID}`
/// (RFC 5798 §7.3): a peer running with a virtual MAC (keepalived's `use_vmac`) answers for
/// the VIP from it.
pub fn virtual_router_macs(model: &Model) -> BTreeSet<Mac> {
    model
        .vrrp_instances
        .iter()
        .map(|i| [0x00, 0x00, 0x5e, 0x00, 0x01, i.virtual_router_id])
        .collect()
}

/// The wait before the first round: long enough for a backup to have heard the master's
/// adverts (3 advert intervals, plus a second), so that the master is known as a director;
/// at most [`CHECK_INTERVAL`].
pub fn first_round_delay(model: &Model) -> Duration {
    let advert = model
        .vrrp_instances
        .iter()
        .map(|i| Duration::from_millis(u64::from(i.advert_int_centis) * 10))
        .max()
        .unwrap_or_default();
    (advert * 3 + Duration::from_secs(1)).min(CHECK_INTERVAL)
}

/// One segment of DR real servers: an interface of this host and what is probed on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Interface name.
    pub interface: String,
    /// Its index.
    pub index: u32,
    /// Its MAC: the sender of the requests.
    pub mac: Mac,
    /// The sender address of the requests (the route's preferred source; unspecified if the
    /// interface has none: an RFC 5227 probe).
    pub source: Ipv4Addr,
    /// The virtual servers with a real server here, with those real servers.
    pub targets: Vec<Target>,
    /// Director addresses, asked to learn the directors' MACs here.
    pub directors: BTreeSet<Ipv4Addr>,
}

impl Segment {
    /// Every VIP asked for here.
    pub fn vips(&self) -> BTreeSet<Ipv4Addr> {
        self.targets.iter().map(|t| t.vip).collect()
    }

    /// Every real server asked for here.
    pub fn real_servers(&self) -> BTreeSet<Ipv4Addr> {
        self.targets
            .iter()
            .flat_map(|t| t.real_servers.iter().copied())
            .collect()
    }

    /// The addresses asked for besides the VIPs: real servers and directors.
    fn others(&self) -> BTreeSet<Ipv4Addr> {
        self.real_servers()
            .into_iter()
            .chain(self.directors.iter().copied())
            .collect()
    }
}

/// What answered on a segment in one round: each address asked for, with the sender MACs of
/// the replies for it.
pub type Answers = BTreeMap<Ipv4Addr, BTreeSet<Mac>>;

/// One real server (or unknown host) answering ARP for a VIP.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Conflict {
    /// The virtual server whose VIP it answers for.
    pub virtual_server: String,
    /// The VIP.
    pub vip: Ipv4Addr,
    /// The real server whose own address resolves to `mac`; `None` when no real server of
    /// the segment does (some other host answers).
    pub real_server: Option<Ipv4Addr>,
    /// The sender MAC of the reply.
    pub mac: Mac,
    /// Where it was seen.
    pub interface: String,
}

impl Conflict {
    /// `real server 10.0.0.12` or `a host that is no real server`.
    pub fn who(&self) -> String {
        match self.real_server {
            Some(rs) => format!("real server {rs}"),
            None => "a host that is no real server".into(),
        }
    }
}

/// The conflicts one segment's answers show: a reply for a VIP from a MAC not in `directors`,
/// named after the real server (of that virtual server first, else of any on the segment)
/// whose own address answered from it.
pub fn find_conflicts(
    segment: &Segment,
    answers: &Answers,
    directors: &BTreeSet<Mac>,
) -> Vec<Conflict> {
    let owner = |mac: &Mac, candidates: Vec<Ipv4Addr>| {
        candidates
            .into_iter()
            .find(|rs| answers.get(rs).is_some_and(|macs| macs.contains(mac)))
    };
    let mut found = Vec::new();
    for target in &segment.targets {
        let Some(macs) = answers.get(&target.vip) else {
            continue;
        };
        for mac in macs.iter().filter(|m| !directors.contains(*m)) {
            let real_server = owner(mac, target.real_servers.clone())
                .or_else(|| owner(mac, segment.real_servers().into_iter().collect()));
            found.push(Conflict {
                virtual_server: target.virtual_server.clone(),
                vip: target.vip,
                real_server,
                mac: *mac,
                interface: segment.interface.clone(),
            });
        }
    }
    found.sort();
    found.dedup();
    found
}

/// A real server the check cannot probe, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Skipped {
    /// The real server.
    pub real_server: Ipv4Addr,
    /// Why (`no route`, `routed via gateway 10.0.0.254: ...`, ...).
    pub reason: String,
}

/// What the driver found out before a round: where to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundPlan {
    /// Every virtual server the check covers now ([`targets`] of the running model; shared:
    /// the driver computes it again only when the model changes). None: nothing is probed
    /// and every standing conflict ends.
    pub targets: std::sync::Arc<Vec<Target>>,
    /// The segments to probe, or why the round cannot run at all (then what stood stays
    /// standing).
    pub segments: Result<Vec<Segment>, String>,
    /// Real servers left out, and why.
    pub skipped: Vec<Skipped>,
    /// MACs known to be directors' without asking: this host's interfaces' MACs and
    /// [`virtual_router_macs`].
    pub director_macs: BTreeSet<Mac>,
}

/// A broadcast ARP request (RFC 826) the driver sends: who has `target`?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRequest {
    /// The interface to send it on.
    pub interface_index: u32,
    /// Sender hardware address (the interface's MAC; also the Ethernet source).
    pub sender_mac: Mac,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// The address asked for.
    pub target: Ipv4Addr,
}

/// An ARP reply the driver received from the wire (not one this host sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpReply {
    /// The interface it came in on.
    pub interface_index: u32,
    /// Sender hardware address: the MAC the answered address lives at.
    pub sender_mac: Mac,
    /// Sender protocol address: the address answered for.
    pub sender_ip: Ipv4Addr,
}

/// What the check tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A round is due: look up the segments and call [`ArpCheck::start_round`].
    RoundDue,
    /// A conflict seen for the first time (log it at error level).
    ConflictFound(Conflict),
    /// A standing conflict that the last round did not see any more.
    ConflictCleared(Conflict),
    /// A standing conflict whose virtual server is no IPv4 DR virtual server any more.
    ConflictNoLongerChecked(Conflict),
    /// A round ended: [`ArpCheck::report`] has changed.
    RoundFinished,
}

/// The deadlines the check keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// The next round is due.
    NextRound,
    /// The VIP requests of the running round go out again.
    RepeatVipRequests,
    /// The running round stops listening and concludes.
    EndOfRound,
}

impl Timer {
    const ALL: [Timer; 3] = [
        Timer::NextRound,
        Timer::RepeatVipRequests,
        Timer::EndOfRound,
    ];
}

/// A table of deadlines, one per [`Timer`].
#[derive(Debug, Clone, Default)]
struct Timers([Option<Instant>; 3]);

impl Timers {
    fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer as usize] = Some(at);
    }

    fn stop(&mut self, timer: Timer) {
        self.0[timer as usize] = None;
    }

    fn get(&self, timer: Timer) -> Option<Instant> {
        self.0[timer as usize]
    }

    fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }

    /// Stops and returns a timer that has expired at `now`, in [`Timer::ALL`] order.
    fn take_expired(&mut self, now: Instant) -> Option<Timer> {
        let timer = Timer::ALL
            .into_iter()
            .find(|t| self.get(*t).is_some_and(|at| at <= now))?;
        self.stop(timer);
        Some(timer)
    }
}

/// One segment during a round.
#[derive(Debug, Clone)]
struct Probe {
    segment: Segment,
    /// Every address asked for here.
    asked: BTreeSet<Ipv4Addr>,
    answers: Answers,
    /// Why the segment could not be probed (its answers are not used then).
    error: Option<String>,
}

/// The round being run.
#[derive(Debug, Clone)]
struct Round {
    targets: std::sync::Arc<Vec<Target>>,
    /// `Err`: the round could not run at all.
    probes: Result<Vec<Probe>, String>,
    skipped: Vec<Skipped>,
    director_macs: BTreeSet<Mac>,
}

/// Where the check is between rounds.
#[derive(Debug, Clone)]
enum Phase {
    /// Waiting for [`Timer::NextRound`].
    Idle,
    /// [`Event::RoundDue`] given; waiting for [`ArpCheck::start_round`].
    Planning,
    /// Requests out, listening.
    Probing(Round),
}

/// The ARP check as a sans-IO state machine: inputs `start_round`, `handle_reply`,
/// `handle_segment_error`, `handle_reload`, `handle_timeout`; outputs `poll_transmit`,
/// `poll_event`, `poll_timeout`, and the [`Report`].
#[derive(Debug, Clone)]
pub struct ArpCheck {
    phase: Phase,
    timers: Timers,
    /// A reload came while a round was being planned or run: the next one follows soon.
    reloaded_during_round: bool,
    /// The standing conflicts, with when each was first seen.
    standing: BTreeMap<Conflict, SystemTime>,
    /// MACs that answered for a director's address, with when they last did.
    learned_director_macs: BTreeMap<Mac, Instant>,
    /// Replies dropped because their address already had [`MAX_MACS_PER_ADDRESS`] MACs.
    dropped_replies: u64,
    transmits: VecDeque<ArpRequest>,
    events: VecDeque<Event>,
    report: Report,
}

impl ArpCheck {
    /// A check whose first round is due at `first_round` (see [`first_round_delay`]).
    pub fn new(first_round: Instant) -> ArpCheck {
        let mut timers = Timers::default();
        timers.set(Timer::NextRound, first_round);
        ArpCheck {
            phase: Phase::Idle,
            timers,
            reloaded_during_round: false,
            standing: BTreeMap::new(),
            learned_director_macs: BTreeMap::new(),
            dropped_replies: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            report: Report::default(),
        }
    }

    /// The configuration was reloaded: a round follows within [`AFTER_RELOAD`] (after the
    /// running one, if one runs).
    pub fn handle_reload(&mut self, now: Instant) {
        match self.phase {
            Phase::Idle => {
                let soon = now + AFTER_RELOAD;
                let next = self
                    .timers
                    .get(Timer::NextRound)
                    .map_or(soon, |at| at.min(soon));
                self.timers.set(Timer::NextRound, next);
            }
            Phase::Planning | Phase::Probing(_) => self.reloaded_during_round = true,
        }
    }

    /// The earliest deadline, for the driver's one sleep; `None` while a round is being
    /// planned.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Acts on every deadline that has passed at `now`. `wall_clock` is the time of day at
    /// `now`: the report's times (last round, first seen) are taken from it.
    pub fn handle_timeout(&mut self, now: Instant, wall_clock: SystemTime) {
        while let Some(timer) = self.timers.take_expired(now) {
            match timer {
                Timer::NextRound => {
                    if matches!(self.phase, Phase::Idle) {
                        self.phase = Phase::Planning;
                        self.events.push_back(Event::RoundDue);
                    }
                }
                Timer::RepeatVipRequests => {
                    if let Phase::Probing(Round {
                        probes: Ok(probes), ..
                    }) = &self.phase
                    {
                        for probe in probes {
                            for vip in probe.segment.vips() {
                                self.transmits.push_back(request(&probe.segment, vip));
                            }
                        }
                    }
                }
                Timer::EndOfRound => self.finish_round(now, wall_clock),
            }
        }
    }

    /// Starts the round [`Event::RoundDue`] asked for, on the segments of `plan`: queues its
    /// requests (each VIP, then each real server and director address, per segment). A round
    /// with nothing to probe ends at once.
    pub fn start_round(&mut self, now: Instant, wall_clock: SystemTime, plan: RoundPlan) {
        let probes = plan.segments.map(|segments| {
            segments
                .into_iter()
                .map(|segment| {
                    let vips = segment.vips();
                    let others = segment.others();
                    for address in vips.iter().chain(others.iter()) {
                        self.transmits.push_back(request(&segment, *address));
                    }
                    Probe {
                        asked: vips.union(&others).copied().collect(),
                        segment,
                        answers: Answers::new(),
                        error: None,
                    }
                })
                .collect::<Vec<_>>()
        });
        let nothing_to_probe = probes.as_ref().map_or(true, Vec::is_empty);
        self.phase = Phase::Probing(Round {
            targets: plan.targets,
            probes,
            skipped: plan.skipped,
            director_macs: plan.director_macs,
        });
        self.timers.stop(Timer::NextRound);
        if nothing_to_probe {
            self.finish_round(now, wall_clock);
        } else {
            self.timers
                .set(Timer::RepeatVipRequests, now + VIP_REQUEST_GAP);
            self.timers.set(Timer::EndOfRound, now + REPLY_WINDOW);
        }
    }

    /// The next request to send. Requests for a segment that has failed are dropped.
    pub fn poll_transmit(&mut self) -> Option<ArpRequest> {
        while let Some(request) = self.transmits.pop_front() {
            if self.probe_mut(request.interface_index).is_some() {
                return Some(request);
            }
        }
        None
    }

    /// An ARP reply received on an interface while a round listens. Replies for addresses
    /// the round did not ask for, or outside a round, are ignored. (`now` is not needed
    /// yet: a reply counts for the round it arrives in, whenever in it.)
    /// At most [`MAX_MACS_PER_ADDRESS`] MACs are kept per address; the rest are counted.
    pub fn handle_reply(&mut self, _now: Instant, reply: ArpReply) {
        let mut dropped = false;
        if let Some(probe) = self.probe_mut(reply.interface_index) {
            if probe.asked.contains(&reply.sender_ip) {
                let macs = probe.answers.entry(reply.sender_ip).or_default();
                if macs.len() < MAX_MACS_PER_ADDRESS || macs.contains(&reply.sender_mac) {
                    macs.insert(reply.sender_mac);
                } else {
                    dropped = true;
                }
            }
        }
        if dropped {
            self.dropped_replies += 1;
        }
    }

    /// Replies dropped so far because their address had [`MAX_MACS_PER_ADDRESS`] MACs.
    pub fn dropped_replies(&self) -> u64 {
        self.dropped_replies
    }

    /// The segment on `interface_index` cannot be probed this round (its socket would not
    /// open, send or receive): nothing it answered counts, and what stood on it stays.
    pub fn handle_segment_error(&mut self, interface_index: u32, error: String) {
        if let Some(probe) = self.probe_mut(interface_index) {
            probe.error = Some(error);
        }
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The state after the last round.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The probe of the running round on `interface_index`, unless it has failed.
    fn probe_mut(&mut self, interface_index: u32) -> Option<&mut Probe> {
        match &mut self.phase {
            Phase::Probing(Round {
                probes: Ok(probes), ..
            }) => probes
                .iter_mut()
                .find(|p| p.segment.index == interface_index && p.error.is_none()),
            _ => None,
        }
    }

    /// Concludes the running round: director MACs, conflicts, events, report.
    fn finish_round(&mut self, now: Instant, wall_clock: SystemTime) {
        let Phase::Probing(round) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return;
        };
        self.timers.stop(Timer::RepeatVipRequests);
        self.timers.stop(Timer::EndOfRound);
        self.transmits.clear();
        self.report.segments.clear();
        self.report.skipped = round.skipped;
        self.report.error = None;
        let found: BTreeSet<Conflict> = match round.probes {
            _ if round.targets.is_empty() => BTreeSet::new(),
            Err(error) => {
                self.report.error = Some(error);
                // Nothing was seen: what stood stays standing.
                self.standing.keys().cloned().collect()
            }
            Ok(probes) => self.conclude(now, &probes, &round.director_macs),
        };

        let cleared: Vec<Conflict> = self
            .standing
            .keys()
            .filter(|c| !found.contains(*c))
            .cloned()
            .collect();
        for conflict in cleared {
            self.standing.remove(&conflict);
            let checked = round
                .targets
                .iter()
                .any(|t| t.virtual_server == conflict.virtual_server);
            self.events.push_back(if checked {
                Event::ConflictCleared(conflict)
            } else {
                Event::ConflictNoLongerChecked(conflict)
            });
        }
        for conflict in found {
            if !self.standing.contains_key(&conflict) {
                self.standing.insert(conflict.clone(), wall_clock);
                self.events.push_back(Event::ConflictFound(conflict));
            }
        }

        self.report.rounds += 1;
        self.report.last_round_unix = Some(unix_seconds(wall_clock).unwrap_or(0.0));
        self.report.conflicts = self
            .standing
            .iter()
            .map(|(c, since)| StandingConflict::new(c, *since))
            .collect();
        let wait = if std::mem::take(&mut self.reloaded_during_round) {
            AFTER_RELOAD
        } else {
            CHECK_INTERVAL
        };
        self.timers.set(Timer::NextRound, now + wait);
        self.events.push_back(Event::RoundFinished);
    }

    /// The conflicts the probes show (a failed segment keeps what stood on it), with the
    /// director MACs learned from them; fills the report's segments.
    fn conclude(
        &mut self,
        now: Instant,
        probes: &[Probe],
        known_director_macs: &BTreeSet<Mac>,
    ) -> BTreeSet<Conflict> {
        // Directors: this host, its virtual MACs, whoever answered for a director address.
        // A MAC that also answers for a real server's address is that real server's:
        // answering for a director's address too never makes it a director's (a real
        // server forging that reply would otherwise hide its answers for the VIP).
        for probe in probes.iter().filter(|p| p.error.is_none()) {
            let real_server_macs: BTreeSet<Mac> = probe
                .segment
                .real_servers()
                .iter()
                .filter(|rs| !probe.segment.directors.contains(rs))
                .filter_map(|rs| probe.answers.get(rs))
                .flatten()
                .copied()
                .collect();
            for director in &probe.segment.directors {
                for mac in probe.answers.get(director).into_iter().flatten() {
                    if real_server_macs.contains(mac) {
                        continue;
                    }
                    if self.learned_director_macs.len() < MAX_LEARNED_DIRECTOR_MACS
                        || self.learned_director_macs.contains_key(mac)
                    {
                        self.learned_director_macs.insert(*mac, now);
                    }
                }
            }
        }
        self.learned_director_macs
            .retain(|_, seen| now.duration_since(*seen) < DIRECTOR_MEMORY);
        let mut director_macs = known_director_macs.clone();
        director_macs.extend(self.learned_director_macs.keys().copied());

        let mut found = BTreeSet::new();
        for probe in probes {
            let segment = &probe.segment;
            let real_servers: Vec<Ipv4Addr> = segment.real_servers().into_iter().collect();
            let mut report = SegmentReport {
                error: None,
                interface: segment.interface.clone(),
                real_servers: real_servers.clone(),
                unresolved: Vec::new(),
                vips: segment.vips().into_iter().collect(),
            };
            match &probe.error {
                None => {
                    report.unresolved = real_servers
                        .into_iter()
                        .filter(|rs| !probe.answers.contains_key(rs))
                        .collect();
                    found.extend(find_conflicts(segment, &probe.answers, &director_macs));
                }
                Some(error) => {
                    report.error = Some(error.clone());
                    // Not seen this round: what stood on this segment stays.
                    found.extend(
                        self.standing
                            .keys()
                            .filter(|c| c.interface == segment.interface)
                            .cloned(),
                    );
                }
            }
            self.report.segments.push(report);
        }
        found
    }
}

/// The request for `target` on `segment`.
fn request(segment: &Segment, target: Ipv4Addr) -> ArpRequest {
    ArpRequest {
        interface_index: segment.index,
        sender_mac: segment.mac,
        sender_ip: segment.source,
        target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
    const RS1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
    const RS2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 12);
    const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const MAC_RS1: Mac = [2, 0, 0, 0, 0, 0x11];
    const MAC_RS2: Mac = [2, 0, 0, 0, 0, 0x12];
    const MAC_PEER: Mac = [2, 0, 0, 0, 0, 0x02];
    const MAC_OWN: Mac = [2, 0, 0, 0, 0, 0x01];
    const STRANGER: Mac = [2, 0, 0, 0, 0, 0x99];
    const ETH1: u32 = 3;

    fn target() -> Target {
        Target {
            virtual_server: "TCP 10.0.0.100:80".into(),
            vip: VIP,
            real_servers: vec![RS1, RS2],
        }
    }

    fn segment() -> Segment {
        Segment {
            interface: "eth1".into(),
            index: ETH1,
            mac: MAC_OWN,
            source: Ipv4Addr::new(10, 0, 0, 1),
            targets: vec![target()],
            directors: [PEER].into(),
        }
    }

    fn answers(pairs: &[(Ipv4Addr, Mac)]) -> Answers {
        let mut out = Answers::new();
        for (ip, mac) in pairs {
            out.entry(*ip).or_default().insert(*mac);
        }
        out
    }

    fn rs2_conflict() -> Conflict {
        Conflict {
            virtual_server: "TCP 10.0.0.100:80".into(),
            vip: VIP,
            real_server: Some(RS2),
            mac: MAC_RS2,
            interface: "eth1".into(),
        }
    }

    #[test]
    fn a_real_server_answering_for_the_vip_is_named_by_its_own_address() {
        let seen = answers(&[
            (RS1, MAC_RS1),
            (RS2, MAC_RS2),
            (VIP, MAC_RS2),
            (VIP, MAC_OWN),
        ]);
        let found = find_conflicts(&segment(), &seen, &[MAC_OWN].into());
        assert_eq!(found, [rs2_conflict()]);
    }

    #[test]
    fn a_director_answering_for_the_vip_is_no_conflict() {
        let seen = answers(&[(RS1, MAC_RS1), (PEER, MAC_PEER), (VIP, MAC_PEER)]);
        assert!(find_conflicts(&segment(), &seen, &[MAC_OWN, MAC_PEER].into()).is_empty());
    }

    #[test]
    fn an_unknown_host_answering_for_the_vip_is_a_conflict_without_a_name() {
        let seen = answers(&[(RS1, MAC_RS1), (VIP, STRANGER)]);
        let found = find_conflicts(&segment(), &seen, &[MAC_OWN].into());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].real_server, None);
        assert_eq!(found[0].mac, STRANGER);
    }

    #[test]
    fn only_ipv4_direct_routing_virtual_servers_are_checked() {
        let text = r#"
[[virtual_server]]
ip = "10.0.0.100"
port = 80
lb_kind = "DR"
[[virtual_server.real_server]]
ip = "10.0.0.11"
[[virtual_server.real_server]]
ip = "10.0.0.12"

[[virtual_server]]
ip = "10.0.0.101"
port = 80
lb_kind = "NAT"
[[virtual_server.real_server]]
ip = "10.0.0.13"

[[virtual_server]]
ip = "2001:db8::100"
port = 80
lb_kind = "DR"
[[virtual_server.real_server]]
ip = "2001:db8::11"
"#;
        let model = haldir_config::parse_toml(text, "test.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(targets(&model), [target()]);
    }

    /// A simulated segment: who answers ARP for which address, and the clock.
    struct Sim {
        check: ArpCheck,
        /// The monotonic clock; the wall clock runs alongside from `epoch`.
        now: Instant,
        start: Instant,
        epoch: SystemTime,
        /// address -> the MACs that answer a request for it.
        answering: BTreeMap<Ipv4Addr, Vec<Mac>>,
        /// Requests seen on the wire, in order.
        sent: Vec<ArpRequest>,
        events: Vec<Event>,
    }

    impl Sim {
        fn new(answering: &[(Ipv4Addr, Mac)]) -> Sim {
            let start = Instant::now();
            let mut sim = Sim {
                check: ArpCheck::new(start + Duration::from_secs(1)),
                now: start,
                start,
                epoch: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
                answering: BTreeMap::new(),
                sent: Vec::new(),
                events: Vec::new(),
            };
            sim.set_answering(answering);
            sim
        }

        fn set_answering(&mut self, answering: &[(Ipv4Addr, Mac)]) {
            self.answering.clear();
            for (ip, mac) in answering {
                self.answering.entry(*ip).or_default().push(*mac);
            }
        }

        fn wall(&self) -> SystemTime {
            self.epoch + (self.now - self.start)
        }

        /// Moves the clock to `at`, firing deadlines on the way, and carries out what
        /// the check asks for: plans rounds on [`segment`], puts its requests on the wire,
        /// hands back the replies.
        fn advance_to(&mut self, at: Instant) {
            while let Some(deadline) = self.check.poll_timeout().filter(|d| *d <= at) {
                self.now = self.now.max(deadline);
                let wall = self.wall();
                self.check.handle_timeout(self.now, wall);
                self.pump();
            }
            self.now = at;
        }

        fn advance(&mut self, by: Duration) {
            let at = self.now + by;
            self.advance_to(at);
        }

        fn pump(&mut self) {
            loop {
                while let Some(request) = self.check.poll_transmit() {
                    self.sent.push(request);
                    for mac in self
                        .answering
                        .get(&request.target)
                        .cloned()
                        .unwrap_or_default()
                    {
                        let reply = ArpReply {
                            interface_index: request.interface_index,
                            sender_mac: mac,
                            sender_ip: request.target,
                        };
                        self.check.handle_reply(self.now, reply);
                    }
                }
                let Some(event) = self.check.poll_event() else {
                    return;
                };
                if event == Event::RoundDue {
                    let wall = self.wall();
                    self.check
                        .start_round(self.now, wall, plan(vec![segment()]));
                }
                self.events.push(event);
            }
        }

        /// Runs the clock until the next round has finished; returns its events.
        fn round(&mut self) -> Vec<Event> {
            self.events.clear();
            let rounds = self.check.report().rounds;
            while self.check.report().rounds == rounds {
                let next = self.check.poll_timeout().expect("a deadline");
                self.advance_to(next);
            }
            std::mem::take(&mut self.events)
        }

        fn standing(&self) -> Vec<(Option<Ipv4Addr>, Mac)> {
            self.check
                .report()
                .conflicts
                .iter()
                .map(|c| (c.real_server, c.mac))
                .collect()
        }
    }

    fn plan(segments: Vec<Segment>) -> RoundPlan {
        RoundPlan {
            targets: vec![target()].into(),
            segments: Ok(segments),
            skipped: Vec::new(),
            director_macs: [MAC_OWN].into(),
        }
    }

    fn found_and_cleared(events: &[Event]) -> (Vec<Conflict>, Vec<Conflict>) {
        let mut found = Vec::new();
        let mut cleared = Vec::new();
        for event in events {
            match event {
                Event::ConflictFound(c) => found.push(c.clone()),
                Event::ConflictCleared(c) | Event::ConflictNoLongerChecked(c) => {
                    cleared.push(c.clone())
                }
                _ => {}
            }
        }
        (found, cleared)
    }

    #[test]
    fn a_real_server_answering_for_a_vip_is_a_conflict_named_after_it() {
        let mut sim = Sim::new(&[(RS1, MAC_RS1), (RS2, MAC_RS2), (VIP, MAC_RS2)]);
        let events = sim.round();
        assert_eq!(found_and_cleared(&events), (vec![rs2_conflict()], vec![]));
        assert_eq!(sim.standing(), [(Some(RS2), MAC_RS2)]);
        let report = sim.check.report();
        assert_eq!(report.segments[0].unresolved, Vec::<Ipv4Addr>::new());
        // Seen at the end of the round: one second of listening after the first at 1 s.
        assert_eq!(report.conflicts[0].since_unix, 1_000_002.0);
    }

    #[test]
    fn a_round_asks_for_every_vip_twice_then_each_address_once_and_listens_one_second() {
        let mut sim = Sim::new(&[]);
        sim.advance_to(sim.start + Duration::from_secs(1));
        let targets: Vec<Ipv4Addr> = sim.sent.iter().map(|r| r.target).collect();
        assert_eq!(targets, [VIP, PEER, RS1, RS2]);
        assert!(sim
            .sent
            .iter()
            .all(|r| r.sender_mac == MAC_OWN && r.interface_index == ETH1));
        sim.advance(VIP_REQUEST_GAP - Duration::from_millis(1));
        assert_eq!(sim.sent.len(), 4, "no repeat before the gap");
        sim.advance(Duration::from_millis(1));
        assert_eq!(sim.sent.len(), 5);
        assert_eq!(sim.sent[4].target, VIP);
        sim.advance(REPLY_WINDOW - VIP_REQUEST_GAP - Duration::from_millis(1));
        assert_eq!(sim.check.report().rounds, 0, "still listening");
        sim.advance(Duration::from_millis(1));
        assert_eq!(sim.check.report().rounds, 1);
        assert_eq!(sim.check.report().segments[0].unresolved, [RS1, RS2]);
        assert_eq!(
            sim.check.poll_timeout(),
            Some(sim.start + Duration::from_secs(2) + CHECK_INTERVAL)
        );
    }

    #[test]
    fn the_peer_director_answering_for_the_vip_is_no_conflict_once_its_mac_answered_for_its_own_address(
    ) {
        // The peer holds the VIP and answers for it; it also answers for its own address.
        let mut sim = Sim::new(&[(RS1, MAC_RS1), (PEER, MAC_PEER), (VIP, MAC_PEER)]);
        assert_eq!(found_and_cleared(&sim.round()), (vec![], vec![]));
        assert!(sim.standing().is_empty());

        // The same answer for the VIP from a MAC no director address resolves to is a
        // stranger's.
        let mut sim = Sim::new(&[(RS1, MAC_RS1), (VIP, MAC_PEER)]);
        sim.round();
        assert_eq!(sim.standing(), [(None, MAC_PEER)]);
    }

    #[test]
    fn a_real_server_forging_a_reply_for_the_peers_address_is_still_a_conflict() {
        // rs2 answers for the VIP, and also for the peer director's address with its own
        // MAC, hoping to be taken for a director.
        let mut sim = Sim::new(&[(RS2, MAC_RS2), (PEER, MAC_RS2), (VIP, MAC_RS2)]);
        assert_eq!(found_and_cleared(&sim.round()).0, [rs2_conflict()]);
        assert_eq!(sim.standing(), [(Some(RS2), MAC_RS2)]);
    }

    #[test]
    fn replies_from_many_macs_for_one_address_are_capped_and_counted() {
        let forged: Vec<(Ipv4Addr, Mac)> = (0..200u8).map(|k| (VIP, [2, 0, 0, 0, 9, k])).collect();
        let mut sim = Sim::new(&forged);
        sim.round();
        assert_eq!(sim.standing().len(), MAX_MACS_PER_ADDRESS);
        // Each of the other 196 MACs is dropped (once per request it answered).
        assert!(sim.check.dropped_replies() >= 200 - MAX_MACS_PER_ADDRESS as u64);
    }

    #[test]
    fn a_remembered_director_mac_expires_after_ten_minutes() {
        let mut sim = Sim::new(&[(PEER, MAC_PEER), (VIP, MAC_PEER)]);
        sim.round();
        assert!(sim.standing().is_empty());
        let learned = sim.now;
        // The peer stops answering for its own address (its replies are lost, say) but
        // still answers for the VIP: its MAC is remembered as a director's ...
        sim.set_answering(&[(VIP, MAC_PEER)]);
        sim.advance_to(learned + DIRECTOR_MEMORY - CHECK_INTERVAL - REPLY_WINDOW);
        assert!(found_and_cleared(&sim.round()).0.is_empty());
        assert!(sim.now < learned + DIRECTOR_MEMORY);
        assert!(sim.standing().is_empty(), "remembered within ten minutes");
        // ... for ten minutes after it last answered.
        let mut events = Vec::new();
        while sim.now < learned + DIRECTOR_MEMORY {
            events.extend(sim.round());
        }
        let (found, _) = found_and_cleared(&events);
        assert_eq!(found.len(), 1, "{events:?}");
        assert_eq!(sim.standing(), [(None, MAC_PEER)]);
    }

    #[test]
    fn a_conflict_is_reported_once_and_clears_when_a_round_has_no_such_reply() {
        let mut sim = Sim::new(&[(RS2, MAC_RS2), (VIP, MAC_RS2)]);
        assert_eq!(found_and_cleared(&sim.round()).0, [rs2_conflict()]);
        let first_seen = sim.check.report().conflicts[0].since_unix;
        assert_eq!(found_and_cleared(&sim.round()), (vec![], vec![]));
        assert_eq!(sim.check.report().conflicts[0].since_unix, first_seen);
        // rs2 gets arp_ignore=1: it still answers for its own address, not for the VIP.
        sim.set_answering(&[(RS2, MAC_RS2)]);
        let events = sim.round();
        assert_eq!(found_and_cleared(&events), (vec![], vec![rs2_conflict()]));
        assert!(events.contains(&Event::ConflictCleared(rs2_conflict())));
        assert!(sim.standing().is_empty());
        assert_eq!(sim.check.report().rounds, 3);
    }

    #[test]
    fn one_answer_to_the_repeated_vip_request_is_enough() {
        let mut sim = Sim::new(&[(RS2, MAC_RS2)]);
        sim.advance_to(sim.start + Duration::from_secs(1));
        // The first request for the VIP went unanswered; the repeat is answered.
        sim.set_answering(&[(RS2, MAC_RS2), (VIP, MAC_RS2)]);
        sim.round();
        assert_eq!(sim.standing(), [(Some(RS2), MAC_RS2)]);
    }

    #[test]
    fn a_segment_that_cannot_be_probed_keeps_what_stood_on_it() {
        let mut sim = Sim::new(&[(RS2, MAC_RS2), (VIP, MAC_RS2)]);
        sim.round();
        sim.set_answering(&[]);
        let due = sim.check.poll_timeout().unwrap();
        sim.check.handle_timeout(due, sim.epoch);
        assert_eq!(sim.check.poll_event(), Some(Event::RoundDue));
        sim.check.start_round(due, sim.epoch, plan(vec![segment()]));
        assert!(sim.check.poll_transmit().is_some());
        sim.check
            .handle_segment_error(ETH1, "sending: network is down".into());
        assert_eq!(
            sim.check.poll_transmit(),
            None,
            "nothing more to a failed segment"
        );
        sim.check.handle_timeout(due + REPLY_WINDOW, sim.epoch);
        let report = sim.check.report();
        assert_eq!(report.rounds, 2);
        assert_eq!(
            report.segments[0].error.as_deref(),
            Some("sending: network is down")
        );
        assert_eq!(sim.standing(), [(Some(RS2), MAC_RS2)]);
    }

    #[test]
    fn a_round_that_cannot_run_keeps_every_conflict_and_one_without_targets_ends_them() {
        let mut sim = Sim::new(&[(RS2, MAC_RS2), (VIP, MAC_RS2)]);
        sim.round();
        let due = sim.check.poll_timeout().unwrap();
        sim.check.handle_timeout(due, sim.epoch);
        assert_eq!(sim.check.poll_event(), Some(Event::RoundDue));
        let failed = RoundPlan {
            segments: Err("listing interfaces: denied".into()),
            ..plan(vec![])
        };
        sim.check.start_round(due, sim.epoch, failed);
        assert_eq!(sim.check.poll_event(), Some(Event::RoundFinished));
        assert_eq!(
            sim.check.report().error.as_deref(),
            Some("listing interfaces: denied")
        );
        assert_eq!(sim.standing(), [(Some(RS2), MAC_RS2)]);

        let due = sim.check.poll_timeout().unwrap();
        sim.check.handle_timeout(due, sim.epoch);
        assert_eq!(sim.check.poll_event(), Some(Event::RoundDue));
        let unchecked = RoundPlan {
            targets: Vec::new().into(),
            ..plan(vec![])
        };
        sim.check.start_round(due, sim.epoch, unchecked);
        assert_eq!(
            sim.check.poll_event(),
            Some(Event::ConflictNoLongerChecked(rs2_conflict()))
        );
        assert!(sim.standing().is_empty());
        let report = sim.check.report();
        assert!(
            report.segments.is_empty() && report.conflicts.is_empty() && report.error.is_none()
        );
    }

    #[test]
    fn a_reload_brings_the_next_round_forward_even_when_it_comes_during_one() {
        let mut sim = Sim::new(&[]);
        sim.round();
        let finished = sim.now;
        assert_eq!(sim.check.poll_timeout(), Some(finished + CHECK_INTERVAL));
        sim.check.handle_reload(finished + Duration::from_secs(2));
        assert_eq!(
            sim.check.poll_timeout(),
            Some(finished + Duration::from_secs(2) + AFTER_RELOAD)
        );
        sim.advance_to(finished + Duration::from_secs(2) + AFTER_RELOAD);
        // Now listening: a reload waits for the round's end, then comes soon after it.
        sim.check.handle_reload(sim.now);
        let end = sim.now + REPLY_WINDOW;
        sim.advance_to(end);
        assert_eq!(sim.check.poll_timeout(), Some(end + AFTER_RELOAD));
    }
}
