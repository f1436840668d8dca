//! Several sans-IO VRRP routers on a simulated link and a simulated clock.
//!
//! Adverts travel as bytes (emitted and re-parsed by the wire codec) through an
//! in-memory segment that can lose packets, partition routers apart, and lose a
//! crashed router. Time only moves when the simulation says so, so the tests
//! check the RFC 5798 timing bounds exactly and run in microseconds.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use haldir_vrrp::router::{
    Action, DropReason, GarpConfig, Router, RouterConfig, State, TransitionReason,
    ANSWER_SOURCES_MAX,
};
use haldir_vrrp::wire::vrrp::{AdvertRepr, Auth, Version};

/// One-way delay of the simulated link.
const LINK_DELAY: Duration = Duration::from_micros(100);

struct Node {
    router: Router,
    alive: bool,
    holds_addresses: bool,
    /// When the addresses were added (true) or removed (false).
    address_changes: Vec<(Instant, bool)>,
    announcements: Vec<Instant>,
    transitions: Vec<(Instant, State, State, TransitionReason)>,
    adverts_sent: Vec<(Instant, u8)>,
}

struct InFlight {
    deliver_at: Instant,
    from: usize,
    to: usize,
    bytes: Vec<u8>,
    source: IpAddr,
    destination: IpAddr,
}

struct Sim {
    start: Instant,
    now: Instant,
    nodes: Vec<Node>,
    in_flight: Vec<InFlight>,
    /// Percentage of packets lost on the link.
    loss_percent: u64,
    rng: u64,
    /// Pairs (a, b) that cannot hear each other.
    cut: HashSet<(usize, usize)>,
}

fn config(version: Version, priority: u8, last_octet: u8) -> RouterConfig {
    RouterConfig {
        version,
        vrid: 51,
        priority,
        advert_interval_centis: match version {
            Version::V2 => 100,
            Version::V3 => 5,
        },
        preempt: true,
        preempt_delay: Duration::ZERO,
        primary_address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last_octet)),
        virtual_addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100))],
        excluded_addresses: Vec::new(),
        auth: Auth::None,
        garp: GarpConfig::default(),
    }
}

impl Sim {
    fn new(configs: Vec<RouterConfig>) -> Sim {
        let start = Instant::now();
        let nodes = configs
            .into_iter()
            .map(|c| Node {
                router: Router::new(c),
                alive: false,
                holds_addresses: false,
                address_changes: Vec::new(),
                announcements: Vec::new(),
                transitions: Vec::new(),
                adverts_sent: Vec::new(),
            })
            .collect();
        Sim {
            start,
            now: start,
            nodes,
            in_flight: Vec::new(),
            loss_percent: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
            cut: HashSet::new(),
        }
    }

    fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start_node(i);
        }
    }

    fn start_node(&mut self, i: usize) {
        self.nodes[i].alive = true;
        self.nodes[i].router.startup(self.now);
        self.drain(i);
    }

    /// A crash: the router stops dead; its addresses stay where they were.
    fn crash(&mut self, i: usize) {
        self.nodes[i].alive = false;
    }

    /// A new process on a crashed node: a fresh router with the same configuration.
    fn restart(&mut self, i: usize) {
        let config = self.nodes[i].router.config().clone();
        self.nodes[i].router = Router::new(config);
        self.start_node(i);
    }

    fn shutdown(&mut self, i: usize) {
        self.nodes[i].router.shutdown(self.now);
        self.drain(i);
        self.nodes[i].alive = false;
    }

    /// A make-before-break stop: the process stays up until the router is done leaving.
    fn leave(&mut self, i: usize) {
        self.nodes[i].router.begin_leaving(self.now);
        self.drain(i);
    }

    /// `haldir handover` on node `i`.
    fn hand_over(&mut self, i: usize) {
        let now = self.now;
        assert!(self.nodes[i].router.hand_over(now), "handover refused");
        self.drain(i);
    }

    /// When node `i` last removed its addresses.
    fn released_at(&self, i: usize) -> Option<Instant> {
        self.nodes[i]
            .address_changes
            .iter()
            .rev()
            .find(|c| !c.1)
            .map(|c| c.0)
    }

    /// When node `i` last added its addresses.
    fn acquired_at(&self, i: usize) -> Option<Instant> {
        self.nodes[i]
            .address_changes
            .iter()
            .rev()
            .find(|c| c.1)
            .map(|c| c.0)
    }

    fn random_percent(&mut self) -> u64 {
        // xorshift64: deterministic loss pattern per test.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % 100
    }

    fn drain(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].router.poll_action() {
            match action {
                Action::SendAdvert(advert) => self.send(i, &advert),
                Action::AddVirtualAddresses(_) => {
                    self.nodes[i].holds_addresses = true;
                    self.nodes[i].address_changes.push((self.now, true));
                }
                Action::RemoveVirtualAddresses(_) => {
                    self.nodes[i].holds_addresses = false;
                    self.nodes[i].address_changes.push((self.now, false));
                }
                Action::Announce(_) => self.nodes[i].announcements.push(self.now),
                Action::StateChanged { from, to, reason } => {
                    self.nodes[i].transitions.push((self.now, from, to, reason))
                }
            }
        }
    }

    fn send(&mut self, from: usize, advert: &AdvertRepr) {
        self.nodes[from]
            .adverts_sent
            .push((self.now, advert.priority));
        let source = self.nodes[from].router.config().primary_address;
        let destination = match source {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18)),
            IpAddr::V6(_) => IpAddr::V6("ff02::12".parse::<Ipv6Addr>().unwrap()),
        };
        let mut bytes = vec![0; advert.buffer_len()];
        advert.emit(&mut bytes, source, destination);
        for to in 0..self.nodes.len() {
            if to == from || self.cut.contains(&(from, to)) || self.cut.contains(&(to, from)) {
                continue;
            }
            if self.loss_percent > 0 && self.random_percent() < self.loss_percent {
                continue;
            }
            self.in_flight.push(InFlight {
                deliver_at: self.now + LINK_DELAY,
                from,
                to,
                bytes: bytes.clone(),
                source,
                destination,
            });
        }
    }

    /// Runs the simulation until `self.now + span`.
    fn run_for(&mut self, span: Duration) {
        let until = self.now + span;
        loop {
            let next_timer = self
                .nodes
                .iter()
                .filter(|n| n.alive)
                .filter_map(|n| n.router.poll_timeout())
                .min();
            let next_delivery = self.in_flight.iter().map(|p| p.deliver_at).min();
            let next = match (next_timer, next_delivery) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            let due: Vec<InFlight> = {
                let (due, later) = std::mem::take(&mut self.in_flight)
                    .into_iter()
                    .partition(|p| p.deliver_at <= self.now);
                self.in_flight = later;
                due
            };
            for packet in due {
                let _ = packet.from;
                if !self.nodes[packet.to].alive {
                    continue;
                }
                let advert = AdvertRepr::parse(&packet.bytes, packet.source, packet.destination)
                    .expect("the codec parses what it emitted");
                let _ = self.nodes[packet.to].router.handle_advert(
                    self.now,
                    packet.source,
                    255,
                    &advert,
                );
                self.drain(packet.to);
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].alive
                    && self.nodes[i]
                        .router
                        .poll_timeout()
                        .is_some_and(|t| t <= self.now)
                {
                    self.nodes[i].router.handle_timeout(self.now);
                    self.drain(i);
                }
            }
        }
        self.now = until;
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive && self.nodes[i].router.state() == State::Master)
            .collect()
    }

    fn holders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].holds_addresses)
            .collect()
    }

    /// When node `i` last became master.
    fn became_master_at(&self, i: usize) -> Option<Instant> {
        self.nodes[i]
            .transitions
            .iter()
            .rev()
            .find(|t| t.2 == State::Master)
            .map(|t| t.0)
    }

    fn last_advert_of(&self, i: usize) -> Instant {
        self.nodes[i]
            .adverts_sent
            .last()
            .expect("node sent adverts")
            .0
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }
}

#[test]
fn two_routers_elect_the_higher_priority_and_only_it_holds_the_addresses() {
    for version in [Version::V2, Version::V3] {
        let mut sim = Sim::new(vec![config(version, 100, 2), config(version, 150, 1)]);
        sim.start_all();
        sim.run_for(Duration::from_secs(10));
        assert_eq!(sim.masters(), vec![1], "{version:?}");
        assert_eq!(sim.holders(), vec![1], "{version:?}");
        assert_eq!(sim.nodes[0].router.state(), State::Backup);
        assert!(
            !sim.nodes[1].announcements.is_empty(),
            "the master announced"
        );
        assert!(
            sim.nodes[0].announcements.is_empty(),
            "the backup never announced"
        );
        // Exactly one transition into master over the whole run: no flapping.
        assert_eq!(sim.nodes[1].router.stats().became_master, 1);
        assert_eq!(sim.nodes[0].router.stats().became_master, 0);
    }
}

#[test]
fn backup_takes_over_within_master_down_interval_after_a_crash() {
    for version in [Version::V2, Version::V3] {
        let mut sim = Sim::new(vec![config(version, 150, 1), config(version, 100, 2)]);
        sim.start_all();
        sim.run_for(Duration::from_secs(10));
        assert_eq!(sim.masters(), vec![0]);
        sim.crash(0);
        let last_advert = sim.last_advert_of(0);
        sim.run_for(Duration::from_secs(10));
        assert_eq!(sim.masters(), vec![1]);
        let took_over = sim.became_master_at(1).unwrap();
        let outage = took_over - last_advert;
        // Master_Down_Interval of the backup (priority 100) plus the link delay.
        let bound = sim.nodes[1].router.master_down_interval() + LINK_DELAY;
        assert!(outage <= bound, "{version:?}: {outage:?} > {bound:?}");
        // And not early: at least 3 advert intervals passed.
        let interval =
            Duration::from_millis(10 * u64::from(config(version, 1, 1).advert_interval_centis));
        assert!(
            outage >= 3 * interval,
            "{version:?}: premature takeover after {outage:?}"
        );
        // The crashed one still holds its (stale) addresses: both hold them now.
        assert_eq!(sim.holders(), vec![0, 1]);
        assert_eq!(
            sim.nodes[1].transitions.last().unwrap().3,
            TransitionReason::MasterDown
        );
    }
}

#[test]
fn graceful_stop_hands_over_after_skew_time() {
    for version in [Version::V2, Version::V3] {
        let mut sim = Sim::new(vec![config(version, 150, 1), config(version, 100, 2)]);
        sim.start_all();
        sim.run_for(Duration::from_secs(10));
        sim.shutdown(0);
        let resigned_at = sim.now;
        assert_eq!(
            sim.nodes[0].adverts_sent.last().unwrap().1,
            0,
            "priority 0 sent"
        );
        assert!(!sim.nodes[0].holds_addresses, "addresses released");
        sim.run_for(Duration::from_secs(5));
        let took_over = sim.became_master_at(1).unwrap();
        let skew = sim.nodes[1].router.skew_time();
        let handover = took_over - resigned_at;
        assert!(
            handover >= skew,
            "{version:?}: {handover:?} < skew {skew:?}"
        );
        assert!(
            handover <= skew + 2 * LINK_DELAY,
            "{version:?}: {handover:?}"
        );
        assert_eq!(
            sim.nodes[1].transitions.last().unwrap().3,
            TransitionReason::MasterResigned
        );
        assert_eq!(sim.holders(), vec![1]);
    }
}

#[test]
fn leaving_master_keeps_its_addresses_until_the_new_masters_first_advert() {
    for version in [Version::V2, Version::V3] {
        let mut sim = Sim::new(vec![config(version, 150, 1), config(version, 100, 2)]);
        sim.start_all();
        sim.run_for(Duration::from_secs(10));
        sim.leave(0);
        let left_at = sim.now;
        assert_eq!(
            sim.nodes[0].adverts_sent.last().unwrap().1,
            0,
            "priority 0 sent"
        );
        assert!(
            sim.nodes[0].holds_addresses,
            "{version:?}: addresses kept while leaving"
        );
        assert!(sim.nodes[0].router.is_leaving());
        sim.run_for(Duration::from_secs(5));
        let took_over = sim.became_master_at(1).expect("backup took over");
        let acquired = sim.acquired_at(1).unwrap();
        let released = sim.released_at(0).expect("leaving router released");
        let skew = sim.nodes[1].router.skew_time();
        assert!(took_over - left_at <= skew + 2 * LINK_DELAY, "{version:?}");
        // Make before break: the new master holds the addresses before the old one lets go...
        assert!(
            released >= acquired,
            "{version:?}: gap {:?}",
            acquired - released
        );
        // ...and the old one lets go as soon as the new master's first advert arrives.
        assert!(
            released - took_over <= LINK_DELAY,
            "{version:?}: released {:?} after the takeover",
            released - took_over
        );
        assert!(!sim.nodes[0].router.is_leaving());
        assert_eq!(sim.holders(), vec![1]);
        assert_eq!(sim.masters(), vec![1]);
    }
}

#[test]
fn leaving_master_without_a_peer_releases_after_master_down_interval() {
    for version in [Version::V2, Version::V3] {
        let mut sim = Sim::new(vec![config(version, 150, 1), config(version, 100, 2)]);
        sim.start_all();
        sim.run_for(Duration::from_secs(10));
        sim.crash(1);
        sim.leave(0);
        let left_at = sim.now;
        let bound = sim.nodes[0].router.master_down_interval();
        sim.run_for(bound / 2);
        assert!(
            sim.nodes[0].holds_addresses,
            "{version:?}: kept before the bound"
        );
        sim.run_for(bound);
        let released = sim.released_at(0).expect("released at the bound");
        assert_eq!(released - left_at, bound, "{version:?}");
        assert!(sim.holders().is_empty());
        assert!(!sim.nodes[0].router.is_leaving());
    }
}

#[test]
fn returning_higher_priority_router_preempts() {
    let mut sim = Sim::new(vec![
        config(Version::V3, 150, 1),
        config(Version::V3, 100, 2),
    ]);
    sim.start_all();
    sim.run_for(Duration::from_secs(2));
    sim.crash(0);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.masters(), vec![1]);
    sim.restart(0);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.masters(), vec![0]);
    assert_eq!(sim.nodes[1].router.state(), State::Backup);
    assert_eq!(sim.holders(), vec![0]);
}

#[test]
fn nopreempt_keeps_the_lower_priority_master() {
    let mut sim = Sim::new(vec![
        RouterConfig {
            preempt: false,
            ..config(Version::V3, 150, 1)
        },
        config(Version::V3, 100, 2),
    ]);
    sim.start_all();
    sim.run_for(Duration::from_secs(2));
    sim.crash(0);
    sim.run_for(Duration::from_secs(2));
    sim.restart(0);
    sim.run_for(Duration::from_secs(10));
    assert_eq!(sim.masters(), vec![1], "the returning router stays backup");
    assert_eq!(sim.nodes[0].router.state(), State::Backup);
}

#[test]
fn preempt_delay_postpones_preemption() {
    let delay = Duration::from_secs(3);
    let mut sim = Sim::new(vec![
        RouterConfig {
            preempt_delay: delay,
            ..config(Version::V3, 150, 1)
        },
        config(Version::V3, 100, 2),
    ]);
    sim.nodes[1].alive = true;
    sim.start_node(1);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.masters(), vec![1]);
    let started = sim.now;
    sim.start_node(0);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.masters(), vec![1], "no preemption before preempt_delay");
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.masters(), vec![0]);
    let took_over = sim.became_master_at(0).unwrap() - started;
    assert!(took_over >= delay, "preempted after {took_over:?}");
    assert!(took_over <= delay + sim.nodes[0].router.master_down_interval() + LINK_DELAY);
}

/// Node 1 (priority 100) has been master for 2 s; node 0 (priority 150,
/// preempt) starts with its preemption held, as a router returning before it
/// has the connection table.
fn held_router_returns() -> Sim {
    let mut sim = Sim::new(vec![
        config(Version::V3, 150, 1),
        config(Version::V3, 100, 2),
    ]);
    sim.start_node(1);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.masters(), vec![1]);
    sim.nodes[0].router.hold_preemption(true);
    sim.start_node(0);
    sim
}

#[test]
fn held_preemption_keeps_the_live_lower_priority_master_until_lifted() {
    let mut sim = held_router_returns();
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.masters(), vec![1], "a held backup preempted");
    assert_eq!(sim.nodes[0].router.state(), State::Backup);
    assert!(sim.became_master_at(0).is_none());
    // Lifted: it preempts within one Master_Down_Interval of the next advert.
    let lifted = sim.now;
    sim.nodes[0].router.hold_preemption(false);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.masters(), vec![0]);
    assert_eq!(sim.holders(), vec![0]);
    let took_over = sim.became_master_at(0).unwrap() - lifted;
    let bound = sim.nodes[0].router.master_down_interval()
        + Duration::from_millis(50) // one advert interval until the next advert
        + 2 * LINK_DELAY;
    assert!(took_over <= bound, "preempted {took_over:?} after the lift");
}

#[test]
fn held_preemption_still_takes_over_a_dead_master_at_full_speed() {
    let mut sim = held_router_returns();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.masters(), vec![1]);
    let crashed = sim.now;
    sim.crash(1);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.masters(), vec![0], "the held backup did not take over");
    assert_eq!(
        sim.nodes[0].transitions.last().unwrap().3,
        TransitionReason::MasterDown
    );
    // The held router kept its priority 150, so it waits the Master_Down_Interval
    // of priority 150 (RFC 5798 §6.1: 3 × interval + Skew_Time), not that of a
    // lowered priority.
    assert_eq!(sim.nodes[0].router.priority(), 150);
    let took_over = sim.became_master_at(0).unwrap() - crashed;
    let interval = Duration::from_millis(50);
    let skew_150 = interval * (256 - 150) / 256;
    assert!(
        took_over <= interval * 3 + skew_150 + LINK_DELAY,
        "took over {took_over:?} after the crash"
    );
}

#[test]
fn equal_priorities_elect_the_higher_primary_address() {
    let mut sim = Sim::new(vec![
        config(Version::V3, 100, 7),
        config(Version::V3, 100, 9),
    ]);
    sim.start_all();
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.masters(), vec![1]);
    assert_eq!(sim.holders(), vec![1]);
}

#[test]
fn address_owner_is_master_at_once() {
    let mut sim = Sim::new(vec![
        config(Version::V3, 255, 1),
        config(Version::V3, 254, 2),
    ]);
    sim.start_all();
    assert_eq!(sim.masters(), vec![0], "master before any time passed");
    assert_eq!(
        sim.nodes[0].transitions[0].3,
        TransitionReason::AddressOwner
    );
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.masters(), vec![0]);
}

#[test]
fn v3_backup_learns_the_masters_interval() {
    // The master advertises every 1 s; the backup is configured for 50 ms. Without
    // learning Master_Adver_Interval (RFC 5798 §6.4.2) it would take over at ~150 ms.
    let mut slow = config(Version::V3, 150, 1);
    slow.advert_interval_centis = 100;
    let mut sim = Sim::new(vec![slow, config(Version::V3, 100, 2)]);
    sim.start_all();
    // Until the backup hears the first advert it runs on its own 50 ms interval
    // and may take over briefly; the master's answer puts it back (RFC 5798 §6.4.3).
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.masters(), vec![0]);
    let takeovers = sim.nodes[1].router.stats().became_master;
    sim.run_for(Duration::from_secs(20));
    assert_eq!(sim.masters(), vec![0]);
    assert_eq!(
        sim.nodes[1].router.stats().became_master,
        takeovers,
        "no takeover once the 1 s interval is learned"
    );
    let expected = Duration::from_secs(3) + Duration::from_micros(156 * 1_000_000 / 256);
    assert_eq!(sim.nodes[1].router.master_down_interval(), expected);
}

#[test]
fn partition_gives_two_masters_and_healing_leaves_one_within_an_interval() {
    let mut sim = Sim::new(vec![
        config(Version::V3, 150, 1),
        config(Version::V3, 100, 2),
    ]);
    sim.start_all();
    sim.run_for(Duration::from_secs(1));
    sim.cut.insert((0, 1));
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.masters(), vec![0, 1], "split brain while partitioned");
    sim.cut.clear();
    let healed = sim.now;
    sim.run_for(Duration::from_millis(50 + 1));
    assert_eq!(
        sim.masters(),
        vec![0],
        "one master one interval after the heal"
    );
    assert_eq!(sim.holders(), vec![0]);
    // The winner re-announced after the heal.
    assert!(sim.nodes[0].announcements.iter().any(|&t| t >= healed));
}

#[test]
fn lowered_priority_on_the_master_lets_a_preempting_backup_take_over() {
    let mut sim = Sim::new(vec![
        config(Version::V3, 150, 1),
        config(Version::V3, 100, 2),
    ]);
    sim.start_all();
    sim.run_for(Duration::from_secs(1));
    sim.nodes[0].router.set_priority(sim.now, 50);
    sim.drain(0);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.masters(), vec![1]);
    assert_eq!(sim.holders(), vec![1]);
    sim.nodes[0].router.set_priority(sim.now, 150);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.masters(), vec![0]);
}

#[test]
fn fault_releases_addresses_and_clearing_it_returns_to_backup() {
    let mut sim = Sim::new(vec![
        config(Version::V3, 150, 1),
        config(Version::V3, 100, 2),
    ]);
    sim.start_all();
    sim.run_for(Duration::from_secs(1));
    sim.nodes[0].router.set_fault(sim.now, true);
    sim.drain(0);
    assert_eq!(sim.nodes[0].router.state(), State::Fault);
    assert!(!sim.nodes[0].holds_addresses);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.masters(), vec![1]);
    sim.nodes[0].router.set_fault(sim.now, false);
    sim.drain(0);
    assert_eq!(sim.nodes[0].router.state(), State::Backup);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.masters(), vec![0], "preempts once back");
}

#[test]
fn three_routers_fail_over_in_priority_order() {
    let mut sim = Sim::new(vec![
        config(Version::V3, 200, 1),
        config(Version::V3, 150, 2),
        config(Version::V3, 100, 3),
    ]);
    sim.start_all();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.masters(), vec![0]);
    sim.crash(0);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        sim.masters(),
        vec![1],
        "the higher backup has the shorter skew"
    );
    assert_eq!(sim.nodes[2].router.stats().became_master, 0);
    sim.crash(1);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.masters(), vec![2]);
}

#[test]
fn lossy_link_converges_and_counts_its_flaps() {
    let mut sim = Sim::new(vec![
        config(Version::V3, 150, 1),
        config(Version::V3, 100, 2),
    ]);
    sim.loss_percent = 30;
    sim.start_all();
    sim.run_for(Duration::from_secs(60));
    // With 30 % loss the backup sometimes misses three adverts in a row
    // (0.3^3 = 2.7 %) and takes over; the master's answer puts it back at once.
    let flaps = sim.nodes[1].router.stats().became_master;
    assert!(
        flaps > 0,
        "30 % loss over 60 s at 50 ms must cause some takeovers"
    );
    sim.loss_percent = 0;
    sim.run_for(Duration::from_millis(60));
    assert_eq!(sim.masters(), vec![0]);
    assert_eq!(sim.holders(), vec![0]);
    eprintln!("flaps under 30 % loss over {:?}: {flaps}", sim.elapsed());
}

#[test]
fn v2_adverts_with_another_interval_or_password_are_dropped_and_counted() {
    let mut router = Router::new(RouterConfig {
        auth: Auth::Simple(*b"secret\0\0"),
        ..config(Version::V2, 100, 2)
    });
    let now = Instant::now();
    router.startup(now);
    let source = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let good = AdvertRepr {
        version: Version::V2,
        vrid: 51,
        priority: 150,
        advert_interval_centis: 100,
        auth: Auth::Simple(*b"secret\0\0"),
        addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100))],
    };
    let cases = [
        (
            AdvertRepr {
                advert_interval_centis: 200,
                ..good.clone()
            },
            255,
            DropReason::IntervalMismatch,
        ),
        (
            AdvertRepr {
                auth: Auth::Simple(*b"wrong\0\0\0"),
                ..good.clone()
            },
            255,
            DropReason::AuthMismatch,
        ),
        (
            AdvertRepr {
                auth: Auth::None,
                ..good.clone()
            },
            255,
            DropReason::AuthMismatch,
        ),
        (
            AdvertRepr {
                vrid: 52,
                ..good.clone()
            },
            255,
            DropReason::VridMismatch,
        ),
        (
            AdvertRepr {
                version: Version::V3,
                auth: Auth::None,
                ..good.clone()
            },
            255,
            DropReason::VersionMismatch,
        ),
        (good.clone(), 254, DropReason::BadTtl),
    ];
    for (advert, ttl, reason) in &cases {
        // A priority-0 advert from a "master" would make us take over quickly if accepted.
        let advert = AdvertRepr {
            priority: 0,
            ..advert.clone()
        };
        assert_eq!(
            router.handle_advert(now, source, *ttl, &advert),
            Err(*reason)
        );
    }
    for (_, _, reason) in &cases {
        let expected = cases.iter().filter(|c| c.2 == *reason).count() as u64;
        assert_eq!(router.stats().drops[reason], expected, "{reason:?} counted");
    }
    assert_eq!(router.stats().adverts_received, 0);
    assert_eq!(router.state(), State::Backup);
    // None of them moved the Master_Down_Timer to Skew_Time.
    assert_eq!(
        router.poll_timeout(),
        Some(now + router.master_down_interval())
    );
    assert_eq!(router.handle_advert(now, source, 255, &good), Ok(()));
}

#[test]
fn announcements_follow_the_garp_schedule() {
    let mut cfg = config(Version::V3, 150, 1);
    cfg.garp = GarpConfig {
        repeat: 3,
        interval: Duration::from_millis(10),
        master_delay: Duration::from_secs(5),
        refresh: Some(Duration::from_secs(20)),
        refresh_repeat: 2,
    };
    let mut sim = Sim::new(vec![cfg]);
    sim.start_all();
    sim.run_for(Duration::from_secs(50));
    let became = sim.became_master_at(0).unwrap();
    let offsets: Vec<Duration> = sim.nodes[0]
        .announcements
        .iter()
        .map(|&t| t - became)
        .collect();
    let ms = Duration::from_millis;
    let expected = vec![
        ms(0),
        ms(10),
        ms(20), // first burst
        ms(5000),
        ms(5010),
        ms(5020), // garp_master_delay
        ms(20000),
        ms(20010), // refresh: garp_master_refresh_repeat
        ms(40000),
        ms(40010),
    ];
    assert_eq!(offsets, expected);
}

#[test]
fn late_wakeups_do_not_make_the_master_drift() {
    let mut cfg = config(Version::V3, 255, 1);
    cfg.advert_interval_centis = 1; // 10 ms
    let mut router = Router::new(cfg);
    let start = Instant::now();
    router.startup(start);
    let mut adverts = 0;
    let count = |router: &mut Router, adverts: &mut u32| {
        while let Some(action) = router.poll_action() {
            if matches!(action, Action::SendAdvert(_)) {
                *adverts += 1;
            }
        }
    };
    count(&mut router, &mut adverts);
    // Every wake-up comes 0.9 ms late, as a loaded host or a coarse timer would.
    while let Some(due) = router
        .poll_timeout()
        .filter(|&t| t <= start + Duration::from_secs(1))
    {
        router.handle_timeout(due + Duration::from_micros(900));
        count(&mut router, &mut adverts);
    }
    // One at startup plus one per 10 ms: lateness does not accumulate.
    assert_eq!(adverts, 101);
}

/// Every action a router has pending.
fn drain_actions(router: &mut Router) -> Vec<Action> {
    std::iter::from_fn(|| router.poll_action()).collect()
}

/// An owner started on an interface that already carries its address, as the
/// driver reports it (the add found the address there).
fn started_owner(now: Instant) -> Router {
    let mut owner = Router::new(config(Version::V3, 255, 1));
    owner.startup(now);
    for action in drain_actions(&mut owner) {
        if let Action::AddVirtualAddresses(addresses) = action {
            for address in addresses {
                owner.address_was_present(address);
            }
        }
    }
    owner
}

fn removals(actions: &[Action]) -> Vec<IpAddr> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::RemoveVirtualAddresses(addresses) => Some(addresses.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn addresses_present_before_start_are_never_released_and_the_owner_still_resigns() {
    let now = Instant::now();
    let mut owner = started_owner(now);
    assert_eq!(owner.state(), State::Master);
    assert_eq!(owner.added_addresses().count(), 0);
    owner.shutdown(now + Duration::from_secs(1));
    let actions = drain_actions(&mut owner);
    // RFC 5798 §6.4.3 "Shutdown": the priority-0 advert still goes out...
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::SendAdvert(advert) if advert.priority == 0)),
        "{actions:?}"
    );
    // ...but the address was the interface's before we started: it stays.
    assert_eq!(removals(&actions), Vec::<IpAddr>::new(), "{actions:?}");
    assert_eq!(owner.state(), State::Initialize);
}

#[test]
fn addresses_present_before_start_survive_a_fault_and_a_sync_group_step_down() {
    let now = Instant::now();
    let mut owner = started_owner(now);
    owner.set_fault(now, true);
    assert_eq!(owner.state(), State::Fault);
    owner.set_fault(now, false);
    assert_eq!(
        owner.state(),
        State::Master,
        "the owner is master at once again"
    );
    // The re-add found the address there again.
    for action in drain_actions(&mut owner) {
        if let Action::AddVirtualAddresses(addresses) = action {
            addresses
                .into_iter()
                .for_each(|a| owner.address_was_present(a));
        }
    }
    owner.force_backup(now);
    assert_eq!(removals(&drain_actions(&mut owner)), Vec::<IpAddr>::new());
}

#[test]
fn a_backup_releases_the_addresses_it_added() {
    let now = Instant::now();
    let mut router = Router::new(config(Version::V3, 100, 2));
    router.startup(now);
    router.handle_timeout(now + router.master_down_interval());
    assert_eq!(router.state(), State::Master);
    drain_actions(&mut router);
    router.shutdown(now + Duration::from_secs(5));
    assert_eq!(
        removals(&drain_actions(&mut router)),
        vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100))]
    );
}

#[test]
fn an_owner_ignores_a_255_advert_from_a_higher_address() {
    let now = Instant::now();
    let mut owner = started_owner(now);
    let forged = AdvertRepr {
        version: Version::V3,
        vrid: 51,
        priority: 255,
        advert_interval_centis: 5,
        auth: Auth::None,
        addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100))],
    };
    let higher = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 200));
    for k in 0..3 {
        let at = now + Duration::from_millis(10 * k);
        assert_eq!(
            owner.handle_advert(at, higher, 255, &forged),
            Err(DropReason::OwnerConflict)
        );
    }
    let actions = drain_actions(&mut owner);
    assert_eq!(owner.state(), State::Master, "{actions:?}");
    assert_eq!(removals(&actions), Vec::<IpAddr>::new());
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::StateChanged { .. })),
        "{actions:?}"
    );
    assert_eq!(owner.stats().drops[&DropReason::OwnerConflict], 3);
    // It goes on advertising as master.
    let deadline = owner.poll_timeout().expect("the Adver_Timer");
    owner.handle_timeout(deadline);
    assert!(drain_actions(&mut owner)
        .iter()
        .any(|a| matches!(a, Action::SendAdvert(advert) if advert.priority == 255)));
}

#[test]
fn a_non_owner_still_yields_to_the_owner() {
    let now = Instant::now();
    let mut router = Router::new(config(Version::V3, 254, 9));
    router.startup(now);
    router.handle_timeout(now + router.master_down_interval());
    assert_eq!(router.state(), State::Master);
    drain_actions(&mut router);
    let owner_advert = AdvertRepr {
        version: Version::V3,
        vrid: 51,
        priority: 255,
        advert_interval_centis: 5,
        auth: Auth::None,
        addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100))],
    };
    let later = now + Duration::from_secs(2);
    router
        .handle_advert(
            later,
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            255,
            &owner_advert,
        )
        .unwrap();
    assert_eq!(router.state(), State::Backup);
    assert_eq!(
        removals(&drain_actions(&mut router)),
        vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100))]
    );
}

/// A lower-priority advert for the owner's router, from `source`.
fn lower_priority_advert(priority: u8) -> AdvertRepr {
    AdvertRepr {
        version: Version::V3,
        vrid: 51,
        priority,
        advert_interval_centis: 5,
        auth: Auth::None,
        addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100))],
    }
}

/// Counts the answers in `actions`: (adverts sent, announcement rounds).
fn answers(actions: &[Action]) -> (usize, usize) {
    let adverts = actions
        .iter()
        .filter(|a| matches!(a, Action::SendAdvert(_)))
        .count();
    let announcements = actions
        .iter()
        .filter(|a| matches!(a, Action::Announce(_)))
        .count();
    (adverts, announcements)
}

#[test]
fn a_flood_of_lower_priority_adverts_from_one_source_is_answered_once_per_interval() {
    let start = Instant::now();
    let mut master = started_owner(start);
    drain_actions(&mut master);
    let attacker = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 66));
    // 10 adverts per millisecond for one second (10k pps); the interval is 50 ms.
    let mut actions = Vec::new();
    for step in 0..10_000u64 {
        let now = start + Duration::from_micros(100 * step);
        while master.poll_timeout().is_some_and(|due| due <= now) {
            let due = master.poll_timeout().unwrap();
            master.handle_timeout(due);
        }
        for priority in [100, 0] {
            let _ = master.handle_advert(now, attacker, 255, &lower_priority_advert(priority));
        }
        actions.extend(drain_actions(&mut master));
    }
    let (adverts, announcements) = answers(&actions);
    // One second at 50 ms: 20 answers at most (+1 for the edges); the
    // scheduled adverts themselves are 20 more.
    assert!(announcements <= 21, "{announcements} announcement rounds");
    assert!(adverts <= 21 + 21, "{adverts} adverts");
    assert_eq!(master.state(), State::Master);
}

#[test]
fn a_flood_of_lower_priority_adverts_from_spoofed_sources_gets_bounded_answers() {
    let start = Instant::now();
    let mut master = started_owner(start);
    drain_actions(&mut master);
    // 1,000 distinct sources inside one interval.
    for k in 0..1_000u32 {
        let source = IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + k));
        let now = start + Duration::from_micros(u64::from(k));
        let _ = master.handle_advert(now, source, 255, &lower_priority_advert(100));
    }
    let (_, announcements) = answers(&drain_actions(&mut master));
    assert!(
        announcements <= ANSWER_SOURCES_MAX,
        "{announcements} announcement rounds"
    );
    assert!(
        announcements >= 1,
        "the first lower-priority router is answered"
    );
}

#[test]
fn an_advert_without_addresses_is_dropped_and_counted() {
    let start = Instant::now();
    let mut master = started_owner(start);
    drain_actions(&mut master);
    let mut empty = lower_priority_advert(100);
    empty.addresses.clear();
    let source = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 66));
    assert_eq!(
        master.handle_advert(start, source, 255, &empty),
        Err(DropReason::NoAddresses)
    );
    assert_eq!(master.stats().drops[&DropReason::NoAddresses], 1);
    assert_eq!(answers(&drain_actions(&mut master)), (0, 0));
}

#[test]
fn a_handover_is_make_before_break_and_the_backup_keeps_mastership_until_cancelled() {
    for version in [Version::V2, Version::V3] {
        let mut sim = Sim::new(vec![config(version, 150, 1), config(version, 100, 2)]);
        sim.start_all();
        sim.run_for(Duration::from_secs(10));
        assert_eq!(sim.masters(), vec![0]);
        sim.hand_over(0);
        let handed_at = sim.now;
        assert_eq!(
            sim.nodes[0].adverts_sent.last().unwrap().1,
            0,
            "priority 0 sent"
        );
        assert_eq!(sim.nodes[0].router.state(), State::Backup, "{version:?}");
        assert!(
            sim.nodes[0].holds_addresses,
            "{version:?}: addresses kept until the new master advertises"
        );
        sim.run_for(Duration::from_secs(5));
        let took_over = sim.became_master_at(1).expect("the backup took over");
        let skew = sim.nodes[1].router.skew_time();
        assert!(
            took_over - handed_at <= skew + 2 * LINK_DELAY,
            "{version:?}"
        );
        let (acquired, released) = (sim.acquired_at(1).unwrap(), sim.released_at(0).unwrap());
        assert!(
            released >= acquired,
            "{version:?}: gap {:?}",
            acquired - released
        );
        assert!(released - took_over <= LINK_DELAY, "{version:?}");
        // Node 0 has the higher priority and preempt on, yet stays backup: handed over.
        sim.run_for(Duration::from_secs(20));
        assert_eq!(sim.masters(), vec![1], "{version:?}: preempted back");
        assert_eq!(sim.holders(), vec![1]);
        assert!(sim.nodes[0].router.handed_over());
        // Cancelled: it preempts at the master's next advert plus Master_Down_Interval.
        let cancelled = sim.now;
        sim.nodes[0].router.cancel_handover();
        sim.run_for(Duration::from_secs(10));
        assert_eq!(sim.masters(), vec![0], "{version:?}");
        assert_eq!(sim.holders(), vec![0]);
        let interval =
            Duration::from_millis(u64::from(config(version, 1, 1).advert_interval_centis) * 10);
        let bound = sim.nodes[0].router.master_down_interval() + interval + 2 * LINK_DELAY;
        assert!(
            sim.became_master_at(0).unwrap() - cancelled <= bound,
            "{version:?}"
        );
    }
}

#[test]
fn a_handover_nobody_takes_returns_to_master_without_dropping_the_addresses() {
    for version in [Version::V2, Version::V3] {
        let mut sim = Sim::new(vec![config(version, 150, 1), config(version, 100, 2)]);
        sim.start_all();
        sim.run_for(Duration::from_secs(10));
        sim.crash(1);
        let changes_before = sim.nodes[0].address_changes.len();
        sim.hand_over(0);
        let handed_at = sim.now;
        let bound = sim.nodes[0].router.master_down_interval();
        sim.run_for(bound * 2);
        assert_eq!(sim.masters(), vec![0], "{version:?}");
        assert_eq!(
            sim.became_master_at(0).unwrap() - handed_at,
            bound,
            "{version:?}: back to Master after Master_Down_Interval"
        );
        assert_eq!(
            sim.nodes[0].address_changes.len(),
            changes_before,
            "{version:?}: the addresses never left nor were added again"
        );
        assert!(sim.nodes[0].holds_addresses);
        assert!(!sim.nodes[0].router.is_leaving());
    }
}

#[test]
fn stopping_during_a_handover_keeps_the_addresses_until_the_new_master_advertises() {
    let mut sim = Sim::new(vec![
        config(Version::V3, 150, 1),
        config(Version::V3, 100, 2),
    ]);
    sim.start_all();
    sim.run_for(Duration::from_secs(2));
    sim.hand_over(0);
    sim.leave(0);
    assert!(
        sim.nodes[0].holds_addresses,
        "the stop kept the handover's leave"
    );
    assert!(sim.nodes[0].router.is_leaving());
    sim.run_for(Duration::from_secs(2));
    let (acquired, released) = (sim.acquired_at(1).unwrap(), sim.released_at(0).unwrap());
    assert!(released >= acquired, "gap {:?}", acquired - released);
    assert_eq!(sim.holders(), vec![1]);
}

#[test]
fn the_address_owner_refuses_a_handover() {
    let start = Instant::now();
    let mut owner = started_owner(start);
    drain_actions(&mut owner);
    assert!(!owner.hand_over(start));
    assert!(!owner.handed_over());
    assert_eq!(owner.state(), State::Master);
    assert!(drain_actions(&mut owner).is_empty());
}

#[test]
fn a_reload_lowering_the_masters_priority_below_the_backups_is_make_before_break() {
    let mut sim = Sim::new(vec![
        config(Version::V3, 150, 1),
        config(Version::V3, 100, 2),
    ]);
    sim.start_all();
    sim.run_for(Duration::from_secs(1));
    let mut lowered = sim.nodes[0].router.config().clone();
    lowered.priority = 50;
    let now = sim.now;
    sim.nodes[0].router.reconfigure(now, lowered);
    sim.drain(0);
    assert_eq!(
        sim.nodes[0].adverts_sent.last().unwrap().1,
        50,
        "the new priority went out at once"
    );
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.masters(), vec![1]);
    assert_eq!(sim.holders(), vec![1]);
    let (acquired, released) = (sim.acquired_at(1).unwrap(), sim.released_at(0).unwrap());
    assert!(released >= acquired, "gap {:?}", acquired - released);
    assert!(released - sim.became_master_at(1).unwrap() <= LINK_DELAY);
}
