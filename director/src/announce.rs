//! Announcement by health (issue 17, active-active behind ECMP): per VIP of `[announce]`,
//! whether this director should receive the VIP's traffic, and why not. Pure: the
//! caller (`src/announce.rs`) reads the links, follows the virtual servers' quorum as
//! [`crate::ipvs_policy::desired_table`] keeps it (with its hysteresis), and carries the
//! decision out by adding or removing the VIP's /32 (/128) on the announce interface,
//! which FRR's bgpd follows (`network VIP/32` with its import check; see
//! `docs/active-active.md`).
//!
//! A VIP is announced when, in this order of precedence:
//! 1. haldir is not stopping ([`Withdrawn::Stopping`]: a stopping director withdraws
//!    first and drains, so the router moves the traffic before anything is torn down);
//! 2. the announce interface and every `track_interface` are up ([`Withdrawn::LinkDown`]);
//! 3. EVERY virtual server with the VIP's address has its quorum
//!    ([`Withdrawn::BelowQuorum`], naming the ones that lack it);
//! 4. and, for a VIP not announced now, all of that has held for one round of its real
//!    servers' checks ([`Withdrawn::Settling`], kept by [`Settling`]).
//!
//! Why the wait: a quorum comes back with the first real server whose check passes, while
//! the others still count as down until their own next check. Announced then, this
//! director would take the flows ECMP moves to it with a table that differs from the other
//! directors': `mh` sends a moved flow whose real server is still down here to another one,
//! which resets it (seen in the VM test: 1 of 380 connections, when a director's checks
//! passed again). After one round every real server has been checked again, and this
//! director sees what the others see.
//!
//! Why every virtual server and not any: BGP announces an address, not a port. ECMP sends
//! a director the VIP's traffic on every port, so a director that announces the VIP while
//! one of its ports cannot be served black-holes that port's share of the clients, which
//! another director could serve. With "every", a director withdraws on a local failure
//! (it cannot reach a port's real servers) and the others take its share. The price: a
//! failure that every director sees alike (all real servers of one port down) withdraws
//! the VIP everywhere, its healthy ports too; services that must fail apart belong on
//! VIPs of their own.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use haldir_config::{Announce, Model, VirtualServerAddress};
use haldir_ipvs::model::ServiceKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ipvs_table::service_key;

/// What the announcement of a model's VIPs depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceSpec {
    /// The interface the VIPs' addresses go on.
    pub interface: String,
    /// `track_interface`: interfaces that must be up too.
    pub track_interfaces: Vec<String>,
    /// How long a stopping haldir waits after withdrawing.
    pub drain: Duration,
    /// Each VIP with the virtual servers that decide it, in configuration order.
    pub vips: Vec<VipSpec>,
}

/// One announced VIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipSpec {
    /// The address (announced as a /32, /128 for IPv6).
    pub address: IpAddr,
    /// The virtual servers with this address (every port), in configuration order.
    pub services: Vec<ServiceKey>,
    /// How long the VIP waits before it is announced (see [`Settling`]): one round of the
    /// slowest check of its real servers, its period and its connection timeout; zero
    /// without checks.
    pub settle: Duration,
}

impl VipSpec {
    /// The prefix length of the host route: 32, or 128 for IPv6.
    pub fn prefix_len(&self) -> u8 {
        host_prefix_len(&self.address)
    }
}

/// The prefix length an announced address has on the interface: 32, or 128 for IPv6.
pub fn host_prefix_len(address: &IpAddr) -> u8 {
    if address.is_ipv4() {
        32
    } else {
        128
    }
}

impl AnnounceSpec {
    /// The spec of `model`'s `[announce]`, `None` without one (then nothing is announced
    /// and nothing is touched).
    pub fn of(model: &Model) -> Option<AnnounceSpec> {
        let announce: &Announce = model.announce.as_ref()?;
        let vips = announce
            .addresses(&model.virtual_servers)
            .into_iter()
            .map(|address| {
                let servers = || {
                    model.virtual_servers.iter().filter(|vs| {
                        matches!(vs.address, VirtualServerAddress::Socket { ip, .. } if ip == address)
                    })
                };
                let settle_millis = servers()
                    .flat_map(|vs| vs.real_servers.iter().flat_map(|rs| &rs.checks))
                    .map(|check| {
                        let timeout = check.kind.connection().map_or(0, |c| c.connect_timeout_millis);
                        u64::from(check.timing.delay_loop_millis) + u64::from(timeout)
                    })
                    .max()
                    .unwrap_or(0);
                VipSpec {
                    address,
                    services: servers().map(service_key).collect(),
                    settle: Duration::from_millis(settle_millis),
                }
            })
            .collect();
        Some(AnnounceSpec {
            interface: announce.interface.clone(),
            track_interfaces: announce.track_interfaces.clone(),
            drain: announce.drain,
            vips,
        })
    }

    /// Every interface whose state decides: the announce interface, then the tracked ones.
    pub fn interfaces(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.interface.as_str())
            .chain(self.track_interfaces.iter().map(String::as_str))
    }
}

/// Why a VIP is not announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Withdrawn {
    /// haldir is stopping (SIGTERM, or a part of it failed): withdrawn first, then drained.
    Stopping,
    /// The announce interface or a tracked one is down or missing.
    LinkDown {
        /// The first interface found down.
        interface: String,
    },
    /// These virtual servers of the VIP lack their quorum (or have no verdict yet).
    BelowQuorum {
        /// The virtual servers, as `TCP 192.0.2.10:80`.
        virtual_servers: Vec<String>,
    },
    /// The VIP is no longer in the configuration (a reload dropped it).
    NotConfigured,
    /// Every virtual server has its quorum, but not yet for one round of checks (see
    /// [`Settling`]).
    Settling {
        /// How long it still waits.
        left: Duration,
    },
}

impl fmt::Display for Withdrawn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Withdrawn::Stopping => f.write_str("haldir is stopping (withdrawn, draining)"),
            Withdrawn::LinkDown { interface } => write!(f, "link {interface} is down"),
            Withdrawn::BelowQuorum { virtual_servers } => {
                write!(f, "below quorum: {}", virtual_servers.join(", "))
            }
            Withdrawn::NotConfigured => f.write_str("not configured"),
            Withdrawn::Settling { left } => write!(
                f,
                "every virtual server has its quorum; announced in {:.1} s, after a round of \
                 checks of every real server",
                left.as_secs_f64()
            ),
        }
    }
}

/// The decision for one VIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// This director should receive the VIP's traffic: its address is on the interface.
    Announced,
    /// It should not: its address is removed.
    Withdrawn(Withdrawn),
}

impl Decision {
    /// Whether the VIP is announced.
    pub fn announced(&self) -> bool {
        matches!(self, Decision::Announced)
    }

    /// Why, in words (for the log and the status).
    pub fn reason(&self) -> String {
        match self {
            Decision::Announced => "every virtual server has its quorum".to_owned(),
            Decision::Withdrawn(why) => why.to_string(),
        }
    }
}

/// What the decision is made from, besides the spec.
pub struct Inputs<'a> {
    /// A virtual server's quorum as the IPVS policy keeps it (`None`: no verdict yet,
    /// e.g. just added by a reload; counts as lacking it).
    pub quorum: &'a dyn Fn(&ServiceKey) -> Option<bool>,
    /// Whether an interface is up (administratively and with carrier); false when it
    /// is missing.
    pub link_up: &'a dyn Fn(&str) -> bool,
    /// haldir is stopping.
    pub stopping: bool,
}

/// Each VIP of `spec` with its decision, in configuration order.
pub fn decide(spec: &AnnounceSpec, inputs: &Inputs<'_>) -> Vec<(IpAddr, Decision)> {
    let link_down = spec
        .interfaces()
        .find(|name| !(inputs.link_up)(name))
        .map(str::to_owned);
    spec.vips
        .iter()
        .map(|vip| {
            let decision = if inputs.stopping {
                Decision::Withdrawn(Withdrawn::Stopping)
            } else if let Some(interface) = &link_down {
                Decision::Withdrawn(Withdrawn::LinkDown {
                    interface: interface.clone(),
                })
            } else {
                let lacking: Vec<String> = vip
                    .services
                    .iter()
                    .filter(|service| (inputs.quorum)(service) != Some(true))
                    .map(ToString::to_string)
                    .collect();
                if lacking.is_empty() && !vip.services.is_empty() {
                    Decision::Announced
                } else {
                    Decision::Withdrawn(Withdrawn::BelowQuorum {
                        virtual_servers: lacking,
                    })
                }
            };
            (vip.address, decision)
        })
        .collect()
}

/// The wait of a VIP before it is announced again, once [`decide`] says it should be after
/// it said it should not (or at its first decision: a start, a VIP added by a reload): one
/// round of its real servers' checks ([`VipSpec::settle`]), so that every real server is
/// checked again first (see the module's documentation). A VIP that [`decide`] kept
/// announceable all along is not held (one removed by hand is put back at once), nor one
/// announced now; a withdrawal is never delayed.
#[derive(Debug, Default)]
pub struct Settling {
    /// The VIPs [`decide`] said should be announced last time.
    announceable: BTreeSet<IpAddr>,
    /// Since when each waiting VIP could be announced.
    since: BTreeMap<IpAddr, Instant>,
}

impl Settling {
    /// Withdraws each VIP of `decisions` that is waiting at `now` (see [`Settling`]); the
    /// VIPs in `announced` are announced now. Returns when the next wait ends (then decide
    /// again, with the same inputs).
    pub fn hold(
        &mut self,
        spec: &AnnounceSpec,
        decisions: &mut [(IpAddr, Decision)],
        announced: &BTreeSet<IpAddr>,
        now: Instant,
    ) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut announceable = BTreeSet::new();
        let mut waiting = BTreeMap::new();
        // `decide` gives the VIPs in the spec's order: each one's settle is at its index
        // (a search per VIP would be quadratic at thousands of VIPs).
        let settles = (spec.vips.iter()).map(|vip| (vip.address, vip.settle));
        for ((address, decision), (vip, settle)) in decisions.iter_mut().zip(settles) {
            if !decision.announced() {
                continue;
            }
            announceable.insert(*address);
            let since = match self.since.get(address) {
                Some(since) => *since,
                None if self.announceable.contains(address) => continue,
                None => now,
            };
            if announced.contains(address) {
                continue;
            }
            let settle = if vip == *address {
                settle
            } else {
                Duration::ZERO
            };
            let ends = since + settle;
            if now < ends {
                *decision = Decision::Withdrawn(Withdrawn::Settling { left: ends - now });
                waiting.insert(*address, since);
                next = Some(next.map_or(ends, |n| n.min(ends)));
            }
        }
        self.announceable = announceable;
        self.since = waiting;
        next
    }
}

/// One change to the interface's addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Add the VIP's address (announce it).
    Add(IpAddr),
    /// Remove the VIP's address (withdraw it), and why.
    Remove(IpAddr, Withdrawn),
}

/// The changes that take the interface from `present` (the announced VIPs' addresses
/// found on it) to `decisions`; `owned` are the VIPs haldir announced under an earlier
/// configuration (removed as [`Withdrawn::NotConfigured`] when a reload dropped them, or
/// the announce interface changed). Removals come first: a VIP that leaves does so
/// before another is added.
pub fn changes(
    decisions: &[(IpAddr, Decision)],
    present: &BTreeSet<IpAddr>,
    owned: &BTreeSet<IpAddr>,
) -> Vec<Change> {
    let wanted: BTreeMap<IpAddr, &Decision> = decisions.iter().map(|(a, d)| (*a, d)).collect();
    let mut removals: Vec<Change> = owned
        .iter()
        .filter(|a| !wanted.contains_key(a))
        .map(|a| Change::Remove(*a, Withdrawn::NotConfigured))
        .collect();
    let mut additions = Vec::new();
    for (address, decision) in decisions {
        match decision {
            Decision::Announced if !present.contains(address) => {
                additions.push(Change::Add(*address))
            }
            Decision::Withdrawn(why) if present.contains(address) => {
                removals.push(Change::Remove(*address, why.clone()))
            }
            _ => {}
        }
    }
    removals.extend(additions);
    removals
}

/// The announcement part of the status document (`announce` in `haldir status --json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnounceStatus {
    /// Whether the configuration has an `[announce]` table.
    pub configured: bool,
    /// The drain time of a stop, in seconds (0 when not configured).
    pub drain_seconds: f64,
    /// The interface the VIPs' addresses go on (empty when not configured).
    pub interface: String,
    /// One per announced VIP, in configuration order.
    pub vips: Vec<VipStatus>,
    /// The BGP sessions as the speaker reports them over BMP (`bmp_listen`), if configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<crate::bmp::BgpStatus>,
}

/// One VIP's announcement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VipStatus {
    /// The VIP.
    pub address: IpAddr,
    /// Whether it is announced (its address is on the interface).
    pub announced: bool,
    /// Why it is announced or withdrawn: `every virtual server has its quorum`,
    /// `below quorum: TCP 192.0.2.10:80`, `link eth0 is down`, `haldir is stopping
    /// (withdrawn, draining)`, or why its address could not be changed.
    pub reason: String,
    /// The virtual servers that decide it, as `TCP 192.0.2.10:80`.
    pub virtual_servers: Vec<String>,
}

impl AnnounceStatus {
    /// The status of `spec` with `state` (each VIP's announcement and reason as applied).
    pub fn of(spec: Option<&AnnounceSpec>, state: &BTreeMap<IpAddr, (bool, String)>) -> Self {
        let Some(spec) = spec else {
            return AnnounceStatus::default();
        };
        AnnounceStatus {
            configured: true,
            drain_seconds: spec.drain.as_secs_f64(),
            interface: spec.interface.clone(),
            vips: spec
                .vips
                .iter()
                .map(|vip| {
                    let (announced, reason) = state
                        .get(&vip.address)
                        .cloned()
                        .unwrap_or_else(|| (false, "not evaluated yet".to_owned()));
                    VipStatus {
                        address: vip.address,
                        announced,
                        reason,
                        virtual_servers: vip.services.iter().map(ToString::to_string).collect(),
                    }
                })
                .collect(),
            // Filled in by the status assembly from the BMP collector's own report.
            bgp: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const CONFIG: &str = r#"
[[virtual_server]]
ip = "192.0.2.10"
port = 80
[[virtual_server.real_server]]
ip = "10.0.0.11"
[[virtual_server]]
ip = "192.0.2.10"
port = 443
[[virtual_server.real_server]]
ip = "10.0.0.11"
[[virtual_server]]
ip = "2001:db8::10"
port = 53
protocol = "UDP"
[[virtual_server.real_server]]
ip = "2001:db8:1::11"
[[virtual_server]]
fwmark = 7
[[virtual_server.real_server]]
ip = "10.0.0.11"

[announce]
track_interface = ["eth0"]
"#;

    fn spec(config: &str) -> AnnounceSpec {
        let model =
            haldir_config::parse_toml(config, "test.toml").unwrap_or_else(|e| panic!("{e}"));
        AnnounceSpec::of(&model).expect("[announce]")
    }

    fn web(port: u16) -> ServiceKey {
        ServiceKey::Address {
            protocol: haldir_ipvs::model::Protocol::Tcp,
            addr: "192.0.2.10".parse().unwrap(),
            port,
        }
    }

    fn v4() -> IpAddr {
        "192.0.2.10".parse().unwrap()
    }

    fn v6() -> IpAddr {
        "2001:db8::10".parse().unwrap()
    }

    /// The decisions with the quorum of the listed services as given (the others have it)
    /// and the listed interfaces down.
    fn decisions(
        quorum: &[(ServiceKey, Option<bool>)],
        down: &[&str],
        stopping: bool,
    ) -> Vec<(IpAddr, Decision)> {
        let quorum: HashMap<ServiceKey, Option<bool>> = quorum.iter().cloned().collect();
        decide(
            &spec(CONFIG),
            &Inputs {
                quorum: &|key| quorum.get(key).copied().unwrap_or(Some(true)),
                link_up: &|name| !down.contains(&name),
                stopping,
            },
        )
    }

    #[test]
    fn a_model_without_announce_has_no_spec() {
        let model = haldir_config::parse_toml(
            "[[virtual_server]]\nip = \"192.0.2.10\"\nport = 80\n",
            "test.toml",
        )
        .unwrap();
        assert_eq!(AnnounceSpec::of(&model), None);
        assert_eq!(
            AnnounceStatus::of(None, &BTreeMap::new()),
            AnnounceStatus::default()
        );
    }

    #[test]
    fn each_vip_is_decided_by_every_virtual_server_with_its_address() {
        let spec = spec(CONFIG);
        assert_eq!(spec.interface, "lo");
        assert_eq!(spec.interfaces().collect::<Vec<_>>(), vec!["lo", "eth0"]);
        let addresses: Vec<IpAddr> = spec.vips.iter().map(|v| v.address).collect();
        assert_eq!(addresses, vec![v4(), v6()], "the fwmark service has no VIP");
        assert_eq!(spec.vips[0].services, vec![web(80), web(443)]);
        assert_eq!(spec.vips[0].prefix_len(), 32);
        assert_eq!(spec.vips[1].prefix_len(), 128);
    }

    #[test]
    fn every_vip_is_announced_when_all_is_well() {
        let all = decisions(&[], &[], false);
        assert_eq!(
            all,
            vec![(v4(), Decision::Announced), (v6(), Decision::Announced)]
        );
        assert_eq!(all[0].1.reason(), "every virtual server has its quorum");
    }

    #[test]
    fn one_port_below_quorum_withdraws_the_vip_and_names_it() {
        let all = decisions(&[(web(443), Some(false))], &[], false);
        assert_eq!(
            all[0].1,
            Decision::Withdrawn(Withdrawn::BelowQuorum {
                virtual_servers: vec!["TCP 192.0.2.10:443".into()]
            })
        );
        assert_eq!(all[0].1.reason(), "below quorum: TCP 192.0.2.10:443");
        assert_eq!(
            all[1].1,
            Decision::Announced,
            "the other VIP is not affected"
        );
    }

    #[test]
    fn a_virtual_server_without_a_verdict_counts_as_below_quorum() {
        let all = decisions(&[(web(80), None)], &[], false);
        assert!(!all[0].1.announced());
        assert_eq!(all[0].1.reason(), "below quorum: TCP 192.0.2.10:80");
    }

    #[test]
    fn a_link_down_withdraws_everything_before_the_quorum_is_looked_at() {
        for interface in ["eth0", "lo"] {
            let all = decisions(&[(web(80), Some(false))], &[interface], false);
            for (_, decision) in &all {
                assert_eq!(
                    *decision,
                    Decision::Withdrawn(Withdrawn::LinkDown {
                        interface: interface.into()
                    })
                );
            }
            assert_eq!(all[0].1.reason(), format!("link {interface} is down"));
        }
    }

    #[test]
    fn stopping_withdraws_everything_whatever_else_holds() {
        for (quorum, down) in [(None, vec![]), (Some(false), vec!["eth0"])] {
            let all = decisions(&[(web(80), quorum)], &down, true);
            assert!(all
                .iter()
                .all(|(_, d)| *d == Decision::Withdrawn(Withdrawn::Stopping)));
        }
    }

    #[test]
    fn changes_add_what_is_announced_and_missing_and_remove_what_is_withdrawn_and_present() {
        let decisions = vec![
            (v4(), Decision::Announced),
            (v6(), Decision::Withdrawn(Withdrawn::Stopping)),
        ];
        let gone: IpAddr = "192.0.2.99".parse().unwrap();
        // Nothing present: v4 is added, v6 (withdrawn, absent) needs nothing.
        assert_eq!(
            changes(&decisions, &BTreeSet::new(), &BTreeSet::new()),
            vec![Change::Add(v4())]
        );
        // Both present, and a VIP a reload dropped: removals first, then nothing to add.
        let present: BTreeSet<IpAddr> = [v4(), v6(), gone].into();
        assert_eq!(
            changes(&decisions, &present, &[gone].into()),
            vec![
                Change::Remove(gone, Withdrawn::NotConfigured),
                Change::Remove(v6(), Withdrawn::Stopping),
            ]
        );
        // In step: nothing.
        assert_eq!(
            changes(&decisions, &[v4()].into(), &[v4(), v6()].into()),
            vec![]
        );
    }

    #[test]
    fn the_status_lists_every_vip_with_its_state_and_reason() {
        let spec = spec(CONFIG);
        let state: BTreeMap<IpAddr, (bool, String)> =
            [(v4(), (false, "below quorum: TCP 192.0.2.10:80".to_owned()))].into();
        let status = AnnounceStatus::of(Some(&spec), &state);
        assert!(status.configured);
        assert_eq!(status.drain_seconds, 5.0);
        assert_eq!(status.interface, "lo");
        assert_eq!(
            status.vips[0],
            VipStatus {
                address: v4(),
                announced: false,
                reason: "below quorum: TCP 192.0.2.10:80".into(),
                virtual_servers: vec!["TCP 192.0.2.10:80".into(), "TCP 192.0.2.10:443".into()],
            }
        );
        assert_eq!(status.vips[1].reason, "not evaluated yet");
    }

    #[test]
    fn a_vip_waits_one_round_of_its_checks_before_it_is_announced_again() {
        // 192.0.2.10:80's real server checked every 2 s with a 0.5 s connection timeout.
        let spec = spec(&CONFIG.replace(
            "port = 80\n[[virtual_server.real_server]]\nip = \"10.0.0.11\"\n",
            "port = 80\n[[virtual_server.real_server]]\nip = \"10.0.0.11\"\n\
             TCP_CHECK = { delay_loop = 2, connect_timeout = 0.5 }\n",
        ));
        let vip =
            |s: &AnnounceSpec, a: IpAddr| s.vips.iter().find(|v| v.address == a).unwrap().settle;
        assert_eq!(vip(&spec, v4()), Duration::from_millis(2500));
        assert_eq!(vip(&spec, v6()), Duration::ZERO, "no checks: no wait");
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut settling = Settling::default();
        let mut decide_at = |ms: u64, quorum: Option<bool>, announced: &[IpAddr]| {
            let mut all = decisions(&[(web(80), quorum)], &[], false);
            let next = settling.hold(
                &spec,
                &mut all,
                &announced.iter().copied().collect(),
                at(ms),
            );
            let v4_decision = all.iter().find(|(a, _)| *a == v4()).unwrap().1.clone();
            let v6_decision = all.iter().find(|(a, _)| *a == v6()).unwrap().1.clone();
            (v4_decision, v6_decision, next)
        };
        // The quorum is back at 0 ms: the VIP waits 2.5 s; the one without checks does not.
        let (d4, d6, next) = decide_at(0, Some(true), &[]);
        assert_eq!(
            d4,
            Decision::Withdrawn(Withdrawn::Settling {
                left: Duration::from_millis(2500)
            })
        );
        assert!(
            d4.reason().contains("announced in 2.5 s"),
            "{}",
            d4.reason()
        );
        assert_eq!(d6, Decision::Announced);
        assert_eq!(next, Some(at(2500)));
        let (d4, _, _) = decide_at(2000, Some(true), &[v6()]);
        assert!(!d4.announced());
        let (d4, _, next) = decide_at(2500, Some(true), &[v6()]);
        assert_eq!((d4, next), (Decision::Announced, None));
        // Announced: it stays so without a wait; lost and regained: a new wait.
        let (d4, _, next) = decide_at(3000, Some(true), &[v4(), v6()]);
        assert_eq!((d4, next), (Decision::Announced, None));
        let (d4, _, _) = decide_at(3100, Some(false), &[v4(), v6()]);
        assert!(matches!(
            d4,
            Decision::Withdrawn(Withdrawn::BelowQuorum { .. })
        ));
        let (d4, _, next) = decide_at(4000, Some(true), &[v6()]);
        assert!(matches!(
            d4,
            Decision::Withdrawn(Withdrawn::Settling { .. })
        ));
        assert_eq!(next, Some(at(6500)));
        // A withdrawal during the wait starts it afresh.
        let (d4, _, _) = decide_at(5000, Some(false), &[v6()]);
        assert!(!d4.announced());
        let (_, _, next) = decide_at(6000, Some(true), &[v6()]);
        assert_eq!(next, Some(at(8500)));
        let (d4, _, _) = decide_at(8500, Some(true), &[v6()]);
        assert_eq!(d4, Decision::Announced);
        // Announceable all along but gone from the interface (removed by hand): back at once.
        let (d4, _, next) = decide_at(9000, Some(true), &[v6()]);
        assert_eq!((d4, next), (Decision::Announced, None));
    }
}
