//! The bulk-resync machine ([`haldir_ipvs::resync::Resync`]) on a simulated clock: routers
//! talking through an in-memory wire that delivers after a millisecond and can drop
//! packets, masters whose dumps take a set time, backups whose kernel socket counts drops.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use haldir_ipvs::client::DaemonRole;
use haldir_ipvs::resync::{
    Action, Addresses, DumpReport, FollowedInstance, InstanceState, Resync, ResyncConfig,
    ResyncStatus, HOLD_LIMIT,
};
use haldir_ipvs::sync_wire::{ResyncDone, ResyncMessage, ResyncRequest};
use haldir_vrrp::auth::{AntiReplay, AuthConfig, AuthKey, Mode};

const LATENCY: Duration = Duration::from_millis(1);
const SYNC_ID: u8 = 9;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The wall clock at the simulation's start (seconds since the Unix epoch).
const UNIX_START: u64 = 1_800_000_000;

fn config(auth: Option<AuthConfig>) -> ResyncConfig {
    ResyncConfig {
        sync_id: SYNC_ID,
        addresses: Addresses::new(None, None, None),
        auth,
        peers: Vec::new(),
    }
}

/// The routers' `auth_hmac`: one key of `secret`'s bytes, enforce, 5 s window.
fn hmac(secret: u8) -> AuthConfig {
    AuthConfig {
        keys: vec![AuthKey {
            id: 1,
            secret: vec![secret; 32],
        }],
        active_key: 1,
        mode: Mode::Enforce,
        anti_replay: AntiReplay::Time { window_secs: 5 },
    }
}

/// One router: its machine and what its driver would do.
struct Node {
    machine: Resync,
    address: SocketAddr,
    /// How long its dumps take.
    dump_time: Duration,
    /// Its dumps end with this error instead of a report.
    dump_error: Option<String>,
    /// A dump being sent: (finishes at, records).
    dumping: Option<Instant>,
    /// Dumps started: (at, for, pace).
    dumps: Vec<(Instant, SocketAddr, u8)>,
    /// Its kernel sync socket's drop counter (`None`: unreadable).
    kernel_drops: Option<u64>,
    /// Each dump received at a pace below this adds drops to `kernel_drops`.
    drops_below_pace: u8,
    /// Preemption hold actions: (at, held).
    holds: Vec<(Instant, bool)>,
    /// Event lines.
    log: Vec<String>,
}

struct Packet {
    deliver_at: Instant,
    from: usize,
    to: SocketAddr,
    message: Vec<u8>,
}

/// Decides, for each datagram sent (sender index, message), whether it is lost.
type LossRule = Box<dyn FnMut(usize, &ResyncMessage) -> bool>;

/// Routers on one segment and a clock.
struct Sim {
    start: Instant,
    now: Instant,
    nodes: Vec<Node>,
    wire: Vec<Packet>,
    lose: LossRule,
    /// Datagrams sent: (at, sender, message).
    sent: Vec<(Instant, usize, ResyncMessage)>,
    /// The bytes of every datagram sent, as on the wire (signed when `auth` is set).
    captured: Vec<Vec<u8>>,
    /// Every router's `auth_hmac`.
    auth: Option<AuthConfig>,
}

impl Sim {
    fn new(routers: usize) -> Sim {
        Sim::with_auth(routers, None)
    }

    fn with_auth(routers: usize, auth: Option<AuthConfig>) -> Sim {
        let start = Instant::now();
        let mut sim = Sim {
            start,
            now: start,
            nodes: Vec::new(),
            wire: Vec::new(),
            lose: Box::new(|_, _| false),
            sent: Vec::new(),
            captured: Vec::new(),
            auth,
        };
        for i in 0..routers {
            sim.add(i, Vec::new());
        }
        sim
    }

    fn add(&mut self, i: usize, held_at_start: Vec<String>) {
        let mut machine = Resync::new(self.now, held_at_start, 1000 + i as u64);
        machine.handle_config(self.now, Some(config(self.auth.clone())));
        machine.handle_listening(self.now);
        self.nodes.push(Node {
            machine,
            address: SocketAddr::new(IpAddr::from([10, 0, 0, 1 + i as u8]), 8849),
            dump_time: ms(200),
            dump_error: None,
            dumping: None,
            dumps: Vec::new(),
            kernel_drops: Some(0),
            drops_below_pace: 0,
            holds: Vec::new(),
            log: Vec::new(),
        });
        self.drain(i);
    }

    fn at(&self, offset: Duration) -> Instant {
        self.start + offset
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn roles(&mut self, i: usize, roles: &[DaemonRole]) {
        self.nodes[i].machine.handle_roles(self.now, roles);
        self.drain(i);
    }

    fn instance(&mut self, i: usize, state: InstanceState, master: Option<IpAddr>) {
        let followed = FollowedInstance {
            name: "VI_1".into(),
            state,
            master,
            hold: vec!["VI_1".into(), "VI_2".into()],
        };
        self.nodes[i]
            .machine
            .handle_instance(self.now, Some(followed));
        self.drain(i);
    }

    fn unix_now(&self) -> Duration {
        Duration::from_secs(UNIX_START) + self.elapsed()
    }

    fn inject(&mut self, i: usize, from: SocketAddr, bytes: &[u8]) {
        self.inject_with_ttl(i, from, 255, bytes);
    }

    fn inject_with_ttl(&mut self, i: usize, from: SocketAddr, ttl: u8, bytes: &[u8]) {
        let unix_now = self.unix_now();
        self.nodes[i]
            .machine
            .handle_packet(self.now, unix_now, from, Some(ttl), bytes);
        self.drain(i);
    }

    fn status(&self, i: usize) -> ResyncStatus {
        self.nodes[i].machine.status(self.now, 1_000_000.0)
    }

    fn drops(&self, i: usize, reason: &str) -> u64 {
        self.status(i).drops.get(reason).copied().unwrap_or(0)
    }

    /// Carries out what node `i` asks for, as the driver would.
    fn drain(&mut self, i: usize) {
        loop {
            let now = self.now;
            let unix_now = self.unix_now();
            let node = &mut self.nodes[i];
            while let Some(event) = node.machine.poll_event() {
                node.log.push(format!("{:?} {event}", now - self.start));
            }
            if let Some(transmit) = node.machine.poll_transmit() {
                let bytes = node.machine.encode(unix_now, node.address.ip(), &transmit);
                self.sent.push((now, i, transmit.message));
                self.captured.push(bytes.clone());
                if !(self.lose)(i, &transmit.message) {
                    self.wire.push(Packet {
                        deliver_at: now + LATENCY,
                        from: i,
                        to: transmit.to,
                        message: bytes,
                    });
                }
                continue;
            }
            let Some(action) = node.machine.poll_action() else {
                return;
            };
            match action {
                Action::ReadKernelDrops => {
                    let drops = node.kernel_drops;
                    node.machine.handle_kernel_drops(now, drops);
                }
                Action::Dump { to, pace } => {
                    assert!(node.dumping.is_none(), "one dump at a time");
                    node.dumps.push((now, to, pace));
                    node.dumping = Some(now + node.dump_time);
                    // The dump's messages reach the requester's kernel: drops at fast paces.
                    if let Some(target) = self.nodes.iter_mut().find(|n| n.address == to) {
                        if pace < target.drops_below_pace {
                            target.kernel_drops = target.kernel_drops.map(|d| d + 3);
                        }
                    }
                }
                Action::HoldPreemption { held, .. } => node.holds.push((now, held)),
            }
        }
    }

    /// The next thing that happens, if before `until`.
    fn next_time(&self, until: Instant) -> Option<Instant> {
        let wire = self.wire.iter().map(|p| p.deliver_at);
        let timers = self.nodes.iter().filter_map(|n| n.machine.poll_timeout());
        let dumps = self.nodes.iter().filter_map(|n| n.dumping);
        wire.chain(timers)
            .chain(dumps)
            .min()
            .filter(|t| *t <= until)
    }

    /// Runs until `offset` from the start.
    fn run_until(&mut self, offset: Duration) {
        let until = self.at(offset);
        while let Some(t) = self.next_time(until) {
            self.now = self.now.max(t);
            let now = self.now;
            // Deliver what is due.
            let (due, later): (Vec<Packet>, Vec<Packet>) =
                self.wire.drain(..).partition(|p| p.deliver_at <= now);
            self.wire = later;
            for packet in due {
                let multicast = packet.to.ip().is_multicast();
                for i in 0..self.nodes.len() {
                    let addressed = if multicast {
                        i != packet.from
                    } else {
                        self.nodes[i].address == packet.to
                    };
                    if addressed {
                        let from = self.nodes[packet.from].address;
                        self.inject(i, from, &packet.message);
                    }
                }
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].dumping.is_some_and(|t| t <= now) {
                    self.nodes[i].dumping = None;
                    let outcome = match self.nodes[i].dump_error.clone() {
                        Some(error) => Err(error),
                        None => Ok(DumpReport {
                            read_millis: 10,
                            entries: 40,
                            records: 40,
                            messages: 2,
                            ..DumpReport::default()
                        }),
                    };
                    self.nodes[i].machine.handle_dump_finished(now, outcome);
                    self.drain(i);
                }
                if self.nodes[i]
                    .machine
                    .poll_timeout()
                    .is_some_and(|t| t <= now)
                {
                    self.nodes[i].machine.handle_timeout(now);
                    self.drain(i);
                    // The driver's one sleep would spin on a deadline that stays past.
                    assert!(
                        self.nodes[i].machine.poll_timeout().is_none_or(|t| t > now),
                        "node {i}: deadline not moved by handle_timeout"
                    );
                }
            }
        }
        self.now = until;
    }

    /// Requests sent by node `i`.
    fn requests_by(&self, i: usize) -> Vec<(Instant, ResyncRequest)> {
        self.sent
            .iter()
            .filter_map(|(at, from, m)| match m {
                ResyncMessage::Request(r) if *from == i => Some((*at, *r)),
                _ => None,
            })
            .collect()
    }
}

const MASTER: usize = 0;
const BACKUP: usize = 1;

/// Router 0 master, router 1 becomes backup at the start.
fn master_and_backup() -> Sim {
    let mut sim = Sim::new(2);
    sim.roles(MASTER, &[DaemonRole::Master]);
    sim
}

#[test]
fn a_backup_gets_the_table_once_and_the_status_says_so() {
    let mut sim = master_and_backup();
    sim.roles(BACKUP, &[DaemonRole::Backup]);
    sim.run_until(ms(3000));
    assert_eq!(sim.nodes[MASTER].dumps.len(), 1);
    let backup = sim.status(BACKUP);
    assert_eq!(backup.resyncs_received, 1);
    assert_eq!(backup.requests_sent, 1);
    assert!(backup.pending.is_none());
    let received = backup.last_received.unwrap();
    assert_eq!((received.from.as_str(), received.records), ("10.0.0.1", 40));
    // Request 1 ms, dump 200 ms, DONE 1 ms, then the kernel socket is read 50 ms later.
    assert_eq!(received.millis, 252);
    assert_eq!(received.kernel_socket_drops, Some(0));
    let master = sim.status(MASTER);
    assert_eq!((master.dumps_sent, master.records_sent), (1, 40));
    assert_eq!(master.last_sent.unwrap().to, "10.0.0.2");
}

#[test]
fn a_lost_request_is_asked_again_a_second_later_and_dumped_once() {
    let mut sim = master_and_backup();
    let mut lost = 0;
    sim.lose = Box::new(move |_, m| {
        let first = matches!(m, ResyncMessage::Request(_)) && lost == 0;
        lost += usize::from(first);
        first
    });
    sim.roles(BACKUP, &[DaemonRole::Backup]);
    sim.run_until(ms(5000));
    let requests = sim.requests_by(BACKUP);
    assert_eq!(requests.len(), 2, "{:?}", sim.nodes[BACKUP].log);
    assert_eq!(requests[1].0 - requests[0].0, ms(1000));
    assert_eq!(requests[0].1.nonce, requests[1].1.nonce, "the same resync");
    assert_eq!(sim.nodes[MASTER].dumps.len(), 1);
    let received = sim.status(BACKUP).last_received.unwrap();
    assert_eq!((received.attempts, received.millis), (2, 1252));
}

#[test]
fn a_lost_done_is_answered_again_from_the_cache_without_a_second_dump() {
    let mut sim = master_and_backup();
    let mut lost = 0;
    sim.lose = Box::new(move |_, m| {
        let first = matches!(m, ResyncMessage::Done(_)) && lost == 0;
        lost += usize::from(first);
        first
    });
    sim.roles(BACKUP, &[DaemonRole::Backup]);
    sim.run_until(ms(10_000));
    assert_eq!(
        sim.nodes[MASTER].dumps.len(),
        1,
        "{:?}",
        sim.nodes[MASTER].log
    );
    assert_eq!(sim.drops(MASTER, "repeat_answered"), 1);
    let received = sim.status(BACKUP).last_received.unwrap();
    // The repeated request a second after the first gets the cached DONE at once.
    assert_eq!((received.attempts, received.millis), (2, 1052));
}

#[test]
fn two_backups_asking_at_once_get_one_dump_each_one_after_the_other() {
    let mut sim = Sim::new(3);
    sim.roles(MASTER, &[DaemonRole::Master]);
    sim.roles(1, &[DaemonRole::Backup]);
    sim.roles(2, &[DaemonRole::Backup]);
    sim.run_until(ms(10_000));
    let dumps = &sim.nodes[MASTER].dumps;
    assert_eq!(dumps.len(), 2, "{:?}", sim.nodes[MASTER].log);
    assert_ne!(dumps[0].1, dumps[1].1, "one dump for each backup");
    // The second waits for the first (200 ms) and the pause after it (1 s at least).
    assert!(dumps[1].0 - dumps[0].0 >= ms(1200), "{dumps:?}");
    assert!(sim.drops(MASTER, "rate_limited") >= 1);
    for backup in [1, 2] {
        assert_eq!(sim.status(backup).resyncs_received, 1);
        // A backup does not answer the other's multicast request.
        assert_eq!(sim.status(backup).dumps_sent, 0);
        assert!(sim.drops(backup, "not_master") >= 1);
    }
}

#[test]
fn when_the_master_changes_mid_dump_the_backup_gets_its_table_from_the_new_master() {
    let mut sim = Sim::new(3);
    let (old_master, backup, new_master) = (0, 1, 2);
    sim.roles(old_master, &[DaemonRole::Master]);
    sim.nodes[old_master].dump_time = ms(500);
    sim.roles(backup, &[DaemonRole::Backup]);
    sim.run_until(ms(100));
    assert_eq!(sim.nodes[old_master].dumps.len(), 1);
    // The old master goes away from the segment: its dump fails, its role is none.
    sim.nodes[old_master].dump_error = Some("network is down".into());
    sim.roles(old_master, &[]);
    sim.roles(new_master, &[DaemonRole::Master]);
    sim.run_until(ms(5000));
    assert!(sim.nodes[old_master]
        .log
        .iter()
        .any(|l| l.contains("failed")));
    assert_eq!(sim.status(old_master).dumps_sent, 0);
    assert!(
        sim.drops(old_master, "not_master") >= 1,
        "the old master stops answering"
    );
    assert_eq!(sim.nodes[new_master].dumps.len(), 1);
    let received = sim.status(backup).last_received.unwrap();
    assert_eq!(received.from, "10.0.0.3");
    assert_eq!(received.attempts, 2);
}

#[test]
fn a_requester_gets_no_second_dump_within_five_seconds() {
    let mut sim = master_and_backup();
    sim.roles(BACKUP, &[DaemonRole::Backup]);
    sim.run_until(ms(2000));
    assert_eq!(sim.status(BACKUP).resyncs_received, 1);
    // The backup flaps: leaves and takes the backup role again: a new resync.
    sim.roles(BACKUP, &[]);
    sim.roles(BACKUP, &[DaemonRole::Backup]);
    sim.run_until(ms(9000));
    let dumps = &sim.nodes[MASTER].dumps;
    assert_eq!(dumps.len(), 2, "{:?}", sim.nodes[MASTER].log);
    assert!(dumps[1].0 - dumps[0].0 >= ms(5000), "{dumps:?}");
    assert!(
        dumps[1].0 - dumps[0].0 < ms(6000),
        "served once allowed: {dumps:?}"
    );
    assert!(sim.drops(MASTER, "rate_limited") >= 2);
    assert_eq!(sim.status(BACKUP).resyncs_received, 2);
}

#[test]
fn after_a_dump_that_took_t_no_dump_for_four_t() {
    let mut sim = Sim::new(3);
    sim.roles(MASTER, &[DaemonRole::Master]);
    sim.nodes[MASTER].dump_time = ms(2000);
    sim.roles(1, &[DaemonRole::Backup]);
    sim.run_until(ms(2500));
    assert_eq!(sim.nodes[MASTER].dumps.len(), 1);
    // The first dump ran 1 ms .. 2001 ms: none to anyone before 2001 + 4 × 2000 ms.
    sim.roles(2, &[DaemonRole::Backup]);
    sim.run_until(ms(20_000));
    let dumps = &sim.nodes[MASTER].dumps;
    assert_eq!(dumps.len(), 2);
    let second = dumps[1].0 - sim.start;
    assert!(second >= ms(10_001) && second < ms(11_100), "{second:?}");
    // A short dump still pauses for a second.
    let mut sim = Sim::new(3);
    sim.roles(MASTER, &[DaemonRole::Master]);
    sim.nodes[MASTER].dump_time = ms(10);
    sim.roles(1, &[DaemonRole::Backup]);
    sim.run_until(ms(100));
    sim.roles(2, &[DaemonRole::Backup]);
    sim.run_until(ms(5000));
    let dumps = &sim.nodes[MASTER].dumps;
    assert!(dumps[1].0 - dumps[0].0 >= ms(1010), "{dumps:?}");
}

#[test]
fn kernel_socket_drops_make_the_backup_ask_again_slower() {
    let mut sim = master_and_backup();
    sim.nodes[BACKUP].drops_below_pace = 2;
    sim.roles(BACKUP, &[DaemonRole::Backup]);
    sim.run_until(ms(20_000));
    let paces: Vec<u8> = sim.nodes[MASTER].dumps.iter().map(|d| d.2).collect();
    assert_eq!(paces, [0, 1, 2], "{:?}", sim.nodes[BACKUP].log);
    let status = sim.status(BACKUP);
    assert_eq!(status.resyncs_received, 1);
    let received = status.last_received.unwrap();
    assert_eq!((received.pace, received.kernel_socket_drops), (2, Some(0)));
    let slower = sim.nodes[BACKUP].log.iter();
    assert_eq!(
        slower
            .filter(|l| l.contains("asking again at pace"))
            .count(),
        2
    );
    // A new nonce for each pace: the master's cache does not answer the slower request.
    let nonces: std::collections::BTreeSet<u64> =
        sim.requests_by(BACKUP).iter().map(|r| r.1.nonce).collect();
    assert_eq!(nonces.len(), 3);
}

#[test]
fn at_the_slowest_pace_drops_are_reported_and_the_resync_completes() {
    let mut sim = master_and_backup();
    sim.nodes[BACKUP].drops_below_pace = u8::MAX;
    sim.roles(BACKUP, &[DaemonRole::Backup]);
    sim.run_until(ms(60_000));
    let paces: Vec<u8> = sim.nodes[MASTER].dumps.iter().map(|d| d.2).collect();
    assert_eq!(paces, (0..=8).collect::<Vec<u8>>());
    let received = sim.status(BACKUP).last_received.unwrap();
    assert_eq!((received.pace, received.kernel_socket_drops), (8, Some(3)));
    assert!(sim.nodes[BACKUP]
        .log
        .iter()
        .any(|l| l.contains("raise net.ipv4.vs.sync_sock_size")));
}

#[test]
fn requests_are_answered_only_by_the_master_with_the_same_syncid() {
    let mut sim = master_and_backup();
    let stranger: SocketAddr = "10.0.0.66:40000".parse().unwrap();
    let request = |sync_id| {
        ResyncMessage::Request(ResyncRequest {
            sync_id,
            pace: 0,
            nonce: 5,
        })
        .emit()
    };
    sim.inject(MASTER, stranger, &request(SYNC_ID + 1));
    sim.inject(BACKUP, stranger, &request(SYNC_ID));
    sim.run_until(ms(1000));
    assert_eq!(sim.drops(MASTER, "other_syncid"), 1);
    assert_eq!(sim.drops(BACKUP, "not_master"), 1);
    assert!(sim.nodes[MASTER].dumps.is_empty() && sim.nodes[BACKUP].dumps.is_empty());
    // The same request with the master's syncid is answered.
    sim.inject(MASTER, stranger, &request(SYNC_ID));
    assert_eq!(sim.nodes[MASTER].dumps.len(), 1);
}

#[test]
fn malformed_and_unexpected_packets_are_counted_by_reason() {
    let mut sim = master_and_backup();
    let stranger: SocketAddr = "10.0.0.66:40000".parse().unwrap();
    let done = |nonce| {
        ResyncMessage::Done(haldir_ipvs::sync_wire::ResyncDone {
            sync_id: SYNC_ID,
            nonce,
            records: 1,
            messages: 1,
            millis: 1,
        })
        .emit()
    };
    let mut reserved = done(1);
    reserved[7] = 1;
    for bytes in [
        b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        b"HLDR\x07\x01\x09\x00".to_vec(),
        b"HLDR\x01\x63\x09\x00".to_vec(),
        done(1)[..27].to_vec(),
        reserved,
        done(1),
    ] {
        sim.inject(BACKUP, stranger, &bytes);
    }
    let status = sim.status(BACKUP);
    let expected: Vec<(&str, u64)> = vec![
        ("bad_kind", 1),
        ("bad_length", 1),
        ("bad_magic", 1),
        ("bad_reserved", 1),
        ("bad_version", 1),
        ("unexpected_done", 1),
    ];
    let counted: Vec<(&str, u64)> = status.drops.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(counted, expected);
    // A DONE for another nonce while asking is unexpected; the resync's own DONE twice is a
    // duplicate.
    sim.roles(BACKUP, &[DaemonRole::Backup]);
    sim.inject(BACKUP, stranger, &done(1));
    assert_eq!(sim.drops(BACKUP, "unexpected_done"), 2);
    sim.run_until(ms(2000));
    let nonce = sim.requests_by(BACKUP)[0].1.nonce;
    sim.inject(BACKUP, stranger, &done(nonce));
    assert_eq!(sim.drops(BACKUP, "duplicate_done"), 1);
    assert_eq!(sim.status(BACKUP).resyncs_received, 1);
}

#[test]
fn the_hold_is_lifted_when_the_table_is_here() {
    let mut sim = master_and_backup();
    sim.instance(
        BACKUP,
        InstanceState::Backup,
        Some("10.0.0.1".parse().unwrap()),
    );
    assert_eq!(sim.nodes[BACKUP].holds, [(sim.start, true)]);
    sim.roles(BACKUP, &[DaemonRole::Backup]);
    sim.run_until(ms(3000));
    let done_at = sim.at(ms(252));
    assert_eq!(
        sim.nodes[BACKUP].holds,
        [(sim.start, true), (done_at, false)]
    );
    let status = sim.status(BACKUP);
    assert_eq!((status.preemption_holds, status.hold_timeouts), (1, 0));
    // Still BACKUP, resynced: no new hold.
    sim.instance(BACKUP, InstanceState::Backup, None);
    assert_eq!(sim.nodes[BACKUP].holds.len(), 2);
}

#[test]
fn the_hold_is_lifted_when_the_instance_leaves_backup_or_the_sync_role_is_master() {
    let mut sim = Sim::new(1);
    sim.instance(0, InstanceState::Backup, None);
    sim.run_until(ms(1000));
    sim.instance(0, InstanceState::Other, None);
    assert_eq!(
        sim.nodes[0].holds,
        [(sim.start, true), (sim.at(ms(1000)), false)]
    );
    // BACKUP again (no resync since): held again, until the master role.
    sim.instance(0, InstanceState::Backup, None);
    sim.run_until(ms(2000));
    sim.roles(0, &[DaemonRole::Master]);
    assert_eq!(sim.nodes[0].holds.len(), 4);
    assert_eq!(sim.nodes[0].holds[3], (sim.at(ms(2000)), false));
    assert_eq!(sim.status(0).hold_timeouts, 0);
}

#[test]
fn without_an_answer_the_hold_is_lifted_after_the_hold_limit_once_per_backup_period() {
    let mut sim = Sim::new(1);
    sim.roles(0, &[DaemonRole::Backup]);
    sim.instance(0, InstanceState::Backup, Some("10.0.0.9".parse().unwrap()));
    sim.run_until(ms(20_000));
    assert_eq!(
        sim.nodes[0].holds,
        [(sim.start, true), (sim.at(HOLD_LIMIT), false)],
        "{:?}",
        sim.nodes[0].log
    );
    assert!(sim.nodes[0]
        .log
        .iter()
        .any(|l| l.contains("the master 10.0.0.9 has not sent")));
    let status = sim.status(0);
    assert_eq!((status.preemption_holds, status.hold_timeouts), (1, 1));
    // Still asking, every second (0 s, 1 s, ... 20 s).
    assert_eq!(status.pending.unwrap().attempts, 21);
    // A new BACKUP period holds again.
    sim.instance(0, InstanceState::Other, None);
    sim.instance(0, InstanceState::Backup, None);
    assert_eq!(sim.nodes[0].holds.len(), 3);
}

#[test]
fn a_hold_from_the_start_counts_its_limit_from_backup() {
    let mut sim = Sim::new(0);
    sim.add(0, vec!["VI_1".into(), "VI_2".into()]);
    assert_eq!(sim.status(0).preemption_holds, 1);
    sim.instance(0, InstanceState::Initialize, None);
    sim.run_until(ms(3000));
    sim.instance(0, InstanceState::Initialize, None);
    sim.run_until(ms(4000));
    sim.instance(0, InstanceState::Backup, None);
    sim.run_until(ms(30_000));
    // Held at start (no action: the VRRP driver starts them held), lifted 5 s after BACKUP.
    assert_eq!(sim.nodes[0].holds, [(sim.at(ms(9000)), false)]);
    assert_eq!(sim.elapsed(), ms(30_000));
}

/// A host on the segment that is no router: a real server.
fn stranger() -> SocketAddr {
    SocketAddr::new(IpAddr::from([10, 0, 0, 66]), 40000)
}

/// Master and backup with `auth_hmac`; the backup's instance hears the master.
fn signed_pair() -> Sim {
    let mut sim = Sim::with_auth(2, Some(hmac(7)));
    sim.roles(MASTER, &[DaemonRole::Master]);
    let master = sim.nodes[MASTER].address.ip();
    sim.instance(BACKUP, InstanceState::Backup, Some(master));
    sim
}

fn request(nonce: u64) -> Vec<u8> {
    ResyncMessage::Request(ResyncRequest {
        sync_id: SYNC_ID,
        pace: 0,
        nonce,
    })
    .emit()
}

fn done(nonce: u64) -> Vec<u8> {
    ResyncMessage::Done(ResyncDone {
        sync_id: SYNC_ID,
        nonce,
        records: 1,
        messages: 1,
        millis: 1,
    })
    .emit()
}

#[test]
fn signed_routers_resync_and_an_unsigned_or_foreign_request_gets_no_dump() {
    let mut sim = signed_pair();
    // A real server asks, unsigned, and with a key of its own.
    sim.inject(MASTER, stranger(), &request(1));
    let mut foreign = Sim::with_auth(1, Some(hmac(8)));
    foreign.roles(0, &[DaemonRole::Backup]);
    foreign.run_until(ms(10));
    let forged = foreign.captured[0].clone();
    sim.inject(MASTER, stranger(), &forged);
    assert_eq!(sim.drops(MASTER, "auth_missing"), 1);
    assert_eq!(sim.drops(MASTER, "auth_bad_hmac"), 1);
    assert!(sim.nodes[MASTER].dumps.is_empty());
    // The real backup is answered.
    sim.roles(BACKUP, &[DaemonRole::Backup]);
    sim.run_until(ms(3000));
    assert_eq!(sim.nodes[MASTER].dumps.len(), 1);
    assert_eq!(sim.status(BACKUP).resyncs_received, 1);
    assert_eq!(sim.status(MASTER).requests_received, 3);
}

#[test]
fn a_forged_done_does_not_lift_the_hold_the_real_one_does() {
    let mut sim = signed_pair();
    // The master's dump takes 2 s; a real server forges the DONE meanwhile, with the nonce
    // it read in the request and the master's address as its source.
    sim.nodes[MASTER].dump_time = ms(2000);
    sim.add(2, Vec::new());
    sim.roles(BACKUP, &[DaemonRole::Backup]);
    sim.run_until(ms(100));
    assert_eq!(sim.nodes[BACKUP].holds, vec![(sim.at(ms(0)), true)]);
    let nonce = sim.requests_by(BACKUP)[0].1.nonce;
    let master = sim.nodes[MASTER].address;
    sim.inject(BACKUP, master, &done(nonce));
    sim.inject(BACKUP, stranger(), &done(nonce));
    sim.run_until(ms(1500));
    assert_eq!(
        sim.drops(BACKUP, "auth_missing"),
        2,
        "{:?}",
        sim.status(BACKUP).drops
    );
    assert!(sim.status(BACKUP).pending.is_some());
    assert_eq!(sim.nodes[BACKUP].holds.len(), 1, "the hold stays");
    // The real DONE, 2 s after the request, lifts it.
    sim.run_until(ms(3000));
    assert_eq!(sim.status(BACKUP).resyncs_received, 1);
    assert_eq!(sim.nodes[BACKUP].holds.last().map(|h| h.1), Some(false));
}

#[test]
fn a_done_from_another_address_than_the_asked_master_is_dropped_even_unsigned() {
    let mut sim = master_and_backup();
    let master = sim.nodes[MASTER].address;
    sim.instance(BACKUP, InstanceState::Backup, Some(master.ip()));
    sim.nodes[MASTER].dump_time = ms(2000);
    sim.roles(BACKUP, &[DaemonRole::Backup]);
    sim.run_until(ms(100));
    let (_, request) = sim.requests_by(BACKUP)[0];
    // Asked unicast, of the master it hears.
    assert!(sim
        .sent
        .iter()
        .any(|(_, from, m)| *from == BACKUP && matches!(m, ResyncMessage::Request(_))));
    sim.inject(BACKUP, stranger(), &done(request.nonce));
    assert_eq!(sim.drops(BACKUP, "not_asked_master"), 1);
    assert!(sim.status(BACKUP).pending.is_some());
    sim.run_until(ms(3000));
    assert_eq!(sim.status(BACKUP).resyncs_received, 1);
}

#[test]
fn a_replayed_signed_request_is_dropped_and_gets_no_second_dump() {
    let mut sim = signed_pair();
    sim.roles(BACKUP, &[DaemonRole::Backup]);
    sim.run_until(ms(3000));
    assert_eq!(sim.nodes[MASTER].dumps.len(), 1);
    let captured_request = sim.captured[0].clone();
    let backup = sim.nodes[BACKUP].address;
    sim.run_until(ms(3500));
    sim.inject(MASTER, backup, &captured_request);
    assert_eq!(sim.drops(MASTER, "auth_replay"), 1);
    // From a spoofed address the capture does not even verify (the source is signed).
    sim.inject(MASTER, stranger(), &captured_request);
    assert_eq!(sim.drops(MASTER, "auth_bad_hmac"), 1);
    // Past the 5 s window it is stale, whatever the dump limits would allow by then.
    sim.run_until(ms(12_000));
    sim.inject(MASTER, backup, &captured_request);
    assert_eq!(sim.drops(MASTER, "auth_stale"), 1);
    sim.run_until(ms(15_000));
    assert_eq!(sim.nodes[MASTER].dumps.len(), 1);
}

#[test]
fn a_request_routed_to_us_or_from_a_non_peer_is_dropped() {
    let mut sim = master_and_backup();
    let backup = sim.nodes[BACKUP].address;
    sim.inject_with_ttl(MASTER, backup, 64, &request(5));
    assert_eq!(sim.drops(MASTER, "bad_ttl"), 1);
    let mut peers_only = config(None);
    peers_only.peers = vec![backup.ip()];
    sim.nodes[MASTER]
        .machine
        .handle_config(sim.now, Some(peers_only));
    sim.nodes[MASTER].machine.handle_listening(sim.now);
    sim.roles(MASTER, &[DaemonRole::Master]);
    sim.inject(MASTER, stranger(), &request(6));
    assert_eq!(sim.drops(MASTER, "not_peer"), 1);
    assert!(sim.nodes[MASTER].dumps.is_empty());
    sim.inject(MASTER, backup, &request(7));
    assert_eq!(sim.nodes[MASTER].dumps.len(), 1);
}

#[test]
fn a_flood_of_repeats_gets_the_cached_done_at_most_twice_a_second() {
    let mut sim = master_and_backup();
    sim.roles(BACKUP, &[DaemonRole::Backup]);
    sim.run_until(ms(3000));
    let (_, asked) = sim.requests_by(BACKUP)[0];
    let backup = sim.nodes[BACKUP].address;
    let before = sim.sent.len();
    for step in 0..1000 {
        sim.run_until(ms(3000 + step));
        sim.inject(MASTER, backup, &request(asked.nonce));
    }
    let dones = sim.sent[before..]
        .iter()
        .filter(|(_, from, m)| *from == MASTER && matches!(m, ResyncMessage::Done(_)))
        .count();
    assert_eq!(dones, 2, "1000 repeats over one second");
    assert_eq!(sim.nodes[MASTER].dumps.len(), 1);
}
