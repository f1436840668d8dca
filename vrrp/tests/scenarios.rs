//! Scenario tests stored as data: `tests/scenarios/*.scn`.
//!
//! A scenario is a router configuration and numbered steps. Inputs are wire
//! bytes (hex) as they would arrive, outputs are the actions the router hands
//! out, adverts as the exact bytes it would send. A case therefore states a
//! fact about the protocol (RFC 3768 / RFC 5798), not about our types; each
//! file cites the section it checks. The grammar:
//!
//! ```text
//! config version=3 vrid=51 priority=100 interval=100 primary=10.0.0.2 vips=10.0.0.100
//!        [preempt=no] [preempt_delay=S] [auth=PASSWORD] [garp_repeat=N] [garp_delay=S]
//! at MS startup | shutdown | timeout | set_priority N | fault on|off
//! at MS reload KEY=VALUE...      the configuration changes in place (SIGHUP)
//! at MS recv SRC DST TTL HEX...
//! expect state STATE             the next action is a transition into STATE
//! expect send DST HEX...         ... an advert; emitted from `primary` to DST it is HEX
//! expect add | remove | announce [A,B]  address or announcement actions, for
//!                                the addresses listed (default: all configured)
//! expect drop REASON             the last `recv` was dropped for REASON
//! expect accepted                the last `recv` was accepted
//! expect deadline MS             the next timer is due at MS
//! expect quiet                   no action is pending
//! ```
//! `at MS timeout` moves the clock to MS, firing every deadline on the way.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use haldir_vrrp::router::{Action, GarpConfig, Router, RouterConfig, State};
use haldir_vrrp::wire::vrrp::{AdvertRepr, Auth, Version};

struct Runner {
    name: String,
    start: Instant,
    router: Option<Router>,
    primary: Option<IpAddr>,
    pending: VecDeque<Action>,
    last_receive: Option<Result<(), String>>,
}

fn parse_hex(words: &[&str]) -> Vec<u8> {
    words
        .iter()
        .map(|w| u8::from_str_radix(w, 16).unwrap_or_else(|_| panic!("bad hex byte {w:?}")))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_state(word: &str) -> State {
    match word {
        "INIT" => State::Initialize,
        "BACKUP" => State::Backup,
        "MASTER" => State::Master,
        "FAULT" => State::Fault,
        other => panic!("unknown state {other}"),
    }
}

impl Runner {
    fn router(&mut self) -> &mut Router {
        self.router.as_mut().expect("`config` comes first")
    }

    fn at(&self, ms: &str) -> Instant {
        let ms: f64 = ms.parse().expect("milliseconds");
        self.start + Duration::from_micros((ms * 1000.0).round() as u64)
    }

    /// The addresses listed (comma-separated), or else all configured ones.
    fn addresses(&mut self, listed: &[&str]) -> Vec<IpAddr> {
        match listed {
            [] => self.router().config().virtual_addresses.clone(),
            [list] => list.split(',').map(|a| a.parse().unwrap()).collect(),
            _ => panic!("{}: write addresses comma-separated", self.name),
        }
    }

    fn collect(&mut self) {
        while let Some(action) = self.router().poll_action() {
            self.pending.push_back(action);
        }
    }

    fn configure(&mut self, words: &[&str]) {
        let mut config = RouterConfig {
            version: Version::V3,
            vrid: 0,
            priority: 0,
            advert_interval_centis: 100,
            preempt: true,
            preempt_delay: Duration::ZERO,
            primary_address: "0.0.0.0".parse().unwrap(),
            virtual_addresses: Vec::new(),
            excluded_addresses: Vec::new(),
            auth: Auth::None,
            garp: GarpConfig {
                repeat: 1,
                interval: Duration::ZERO,
                master_delay: Duration::ZERO,
                refresh: None,
                refresh_repeat: 1,
            },
        };
        self.apply_words(&mut config, words);
        self.primary = Some(config.primary_address);
        self.router = Some(Router::new(config));
    }

    fn apply_words(&self, config: &mut RouterConfig, words: &[&str]) {
        for word in words {
            let (key, value) = word.split_once('=').expect("key=value");
            match key {
                "version" => {
                    config.version = if value == "2" {
                        Version::V2
                    } else {
                        Version::V3
                    }
                }
                "vrid" => config.vrid = value.parse().unwrap(),
                "priority" => config.priority = value.parse().unwrap(),
                "interval" => config.advert_interval_centis = value.parse().unwrap(),
                "primary" => config.primary_address = value.parse().unwrap(),
                "vips" => {
                    config.virtual_addresses =
                        value.split(',').map(|a| a.parse().unwrap()).collect()
                }
                "preempt" => config.preempt = value == "yes",
                "preempt_delay" => {
                    config.preempt_delay = Duration::from_secs(value.parse().unwrap())
                }
                "auth" => {
                    let mut data = [0u8; 8];
                    data[..value.len()].copy_from_slice(value.as_bytes());
                    config.auth = Auth::Simple(data);
                }
                "garp_repeat" => config.garp.repeat = value.parse().unwrap(),
                "garp_delay" => {
                    config.garp.master_delay = Duration::from_secs(value.parse().unwrap())
                }
                other => panic!("{}: unknown config key {other}", self.name),
            }
        }
    }

    fn step(&mut self, line_number: usize, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let context = format!("{}:{}: {line}", self.name, line_number);
        match words.as_slice() {
            ["config", rest @ ..] => self.configure(rest),
            ["at", ms, event @ ..] => {
                let now = self.at(ms);
                match event {
                    ["startup"] => self.router().startup(now),
                    ["shutdown"] => self.router().shutdown(now),
                    ["timeout"] => {
                        while let Some(due) = self.router().poll_timeout().filter(|&t| t <= now) {
                            self.router().handle_timeout(due);
                            self.collect();
                        }
                    }
                    ["set_priority", priority] => {
                        let priority = priority.parse().unwrap();
                        self.router().set_priority(now, priority)
                    }
                    ["fault", on] => self.router().set_fault(now, *on == "on"),
                    ["reload", changes @ ..] => {
                        let mut config = self.router().config().clone();
                        self.apply_words(&mut config, changes);
                        self.router().reconfigure(now, config);
                    }
                    ["recv", src, dst, ttl, bytes @ ..] => {
                        let source: IpAddr = src.parse().unwrap();
                        let destination: IpAddr = dst.parse().unwrap();
                        let ttl: u8 = ttl.parse().unwrap();
                        let bytes = parse_hex(bytes);
                        self.last_receive =
                            Some(match AdvertRepr::parse(&bytes, source, destination) {
                                Err(e) => Err(e.as_str().to_owned()),
                                Ok(advert) => self
                                    .router()
                                    .handle_advert(now, source, ttl, &advert)
                                    .map_err(|r| r.as_str().to_owned()),
                            });
                    }
                    other => panic!("{context}: unknown event {other:?}"),
                }
                self.collect();
            }
            ["expect", "state", state] => match self.pending.pop_front() {
                Some(Action::StateChanged { to, .. }) => {
                    assert_eq!(to, parse_state(state), "{context}")
                }
                other => panic!("{context}: got {other:?}"),
            },
            ["expect", "send", dst, bytes @ ..] => match self.pending.pop_front() {
                Some(Action::SendAdvert(advert)) => {
                    let destination: IpAddr = dst.parse().unwrap();
                    let mut emitted = vec![0; advert.buffer_len()];
                    advert.emit(&mut emitted, self.primary.unwrap(), destination);
                    assert_eq!(hex(&emitted), hex(&parse_hex(bytes)), "{context}");
                }
                other => panic!("{context}: got {other:?}"),
            },
            ["expect", "add", listed @ ..] => {
                let addresses = self.addresses(listed);
                assert_eq!(
                    self.pending.pop_front(),
                    Some(Action::AddVirtualAddresses(addresses)),
                    "{context}"
                )
            }
            ["expect", "remove", listed @ ..] => {
                let addresses = self.addresses(listed);
                assert_eq!(
                    self.pending.pop_front(),
                    Some(Action::RemoveVirtualAddresses(addresses)),
                    "{context}"
                )
            }
            ["expect", "announce", listed @ ..] => {
                let addresses = self.addresses(listed);
                assert_eq!(
                    self.pending.pop_front(),
                    Some(Action::Announce(addresses)),
                    "{context}"
                )
            }
            ["expect", "drop", reason] => assert_eq!(
                self.last_receive.take(),
                Some(Err((*reason).to_owned())),
                "{context}"
            ),
            ["expect", "accepted"] => {
                assert_eq!(self.last_receive.take(), Some(Ok(())), "{context}")
            }
            ["expect", "deadline", ms] => {
                let expected = self.at(ms);
                assert_eq!(self.router().poll_timeout(), Some(expected), "{context}");
            }
            ["expect", "quiet"] => {
                assert!(self.pending.is_empty(), "{context}: {:?}", self.pending)
            }
            other => panic!("{context}: cannot read {other:?}"),
        }
    }
}

fn run_scenario(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut runner = Runner {
        name: path.file_name().unwrap().to_string_lossy().into_owned(),
        start: Instant::now(),
        router: None,
        primary: None,
        pending: VecDeque::new(),
        last_receive: None,
    };
    for (index, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap().trim();
        if !line.is_empty() {
            runner.step(index + 1, line);
        }
    }
    assert!(
        runner.pending.is_empty(),
        "{}: actions left unchecked at the end: {:?}",
        runner.name,
        runner.pending
    );
}

#[test]
fn every_stored_scenario_holds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "scn"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 5, "scenarios missing in {}", dir.display());
    for path in paths {
        run_scenario(&path);
        eprintln!("scenario ok: {}", path.display());
    }
}
