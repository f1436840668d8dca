//! The DR ARP check's report: what [`super::ArpCheck`] publishes after each round, the
//! `dr_arp_check` object of the status document (the status crate, `haldir-status`, renders
//! it as text for `haldir status` and as Prometheus metrics for `/metrics`).

use std::net::Ipv4Addr;
use std::time::SystemTime;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Conflict, Mac, Skipped, CHECK_INTERVAL};

/// Parses `aa:bb:cc:dd:ee:ff`.
fn parse_mac(text: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Seconds since the Unix epoch; `None` before it.
pub(super) fn unix_seconds(t: SystemTime) -> Option<f64> {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs_f64())
}

/// One segment as the last round saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentReport {
    /// Why the segment could not be probed, if it could not.
    pub error: Option<String>,
    /// Interface.
    pub interface: String,
    /// Real servers asked for.
    pub real_servers: Vec<Ipv4Addr>,
    /// Real servers that did not answer for their own address.
    #[serde(rename = "unresolved_real_servers")]
    pub unresolved: Vec<Ipv4Addr>,
    /// VIPs asked for.
    pub vips: Vec<Ipv4Addr>,
}

/// A standing conflict as the report shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StandingConflict {
    /// Where it was seen.
    pub interface: String,
    /// The sender MAC of the reply for the VIP.
    #[serde(with = "mac_serde")]
    #[schemars(with = "String")]
    pub mac: Mac,
    /// The real server whose own address resolves to `mac`, or `null`.
    pub real_server: Option<Ipv4Addr>,
    /// When it was first seen (seconds since the Unix epoch).
    pub since_unix: f64,
    /// The VIP.
    pub vip: Ipv4Addr,
    /// The virtual server whose VIP it answers for.
    pub virtual_server: String,
}

impl StandingConflict {
    /// `conflict`, first seen at `since`.
    pub(super) fn new(conflict: &Conflict, since: SystemTime) -> StandingConflict {
        StandingConflict {
            interface: conflict.interface.clone(),
            mac: conflict.mac,
            real_server: conflict.real_server,
            since_unix: unix_seconds(since).unwrap_or(0.0),
            vip: conflict.vip,
            virtual_server: conflict.virtual_server.clone(),
        }
    }
}

/// `Mac` as `aa:bb:cc:dd:ee:ff` text.
mod mac_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mac: &super::super::Mac, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::super::mac_text(mac))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<super::super::Mac, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_mac(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not a MAC address: {text}")))
    }
}

/// What the check publishes after each round: the `dr_arp_check` object of the status
/// document. The fields are declared in alphabetical order, the order the keys had when the
/// object was an untyped JSON map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The standing conflicts, each with when it was first seen.
    pub conflicts: Vec<StandingConflict>,
    /// Why the last round could not run, if it could not.
    pub error: Option<String>,
    /// The period of the rounds, in seconds.
    pub interval_seconds: f64,
    /// When the last round ended (seconds since the Unix epoch), `null` before the first.
    pub last_round_unix: Option<f64>,
    /// Rounds run so far.
    pub rounds: u64,
    /// The segments probed in the last round.
    pub segments: Vec<SegmentReport>,
    /// Real servers left out of the last round.
    pub skipped: Vec<Skipped>,
}

impl Default for Report {
    fn default() -> Self {
        Report {
            conflicts: Vec::new(),
            error: None,
            interval_seconds: CHECK_INTERVAL.as_secs_f64(),
            last_round_unix: None,
            rounds: 0,
            segments: Vec::new(),
            skipped: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
    const RS1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
    const RS2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 12);
    const MAC_RS2: Mac = [2, 0, 0, 0, 0, 0x12];
    const STRANGER: Mac = [2, 0, 0, 0, 0, 0x99];

    fn rs2_conflict() -> Conflict {
        Conflict {
            virtual_server: "TCP 10.0.0.100:80".into(),
            vip: VIP,
            real_server: Some(RS2),
            mac: MAC_RS2,
            interface: "eth1".into(),
        }
    }

    /// The report as the status document's untyped `dr_arp_check` object had it.
    fn untyped(report_rounds: u64) -> serde_json::Value {
        serde_json::json!({
            "interval_seconds": 10.0,
            "rounds": report_rounds,
            "last_round_unix": 100.5,
            "error": null,
            "segments": [{
                "interface": "eth1",
                "vips": ["10.0.0.100"],
                "real_servers": ["10.0.0.11", "10.0.0.12"],
                "unresolved_real_servers": ["10.0.0.11"],
                "error": null,
            }, {
                "interface": "eth2",
                "vips": [],
                "real_servers": [],
                "unresolved_real_servers": [],
                "error": "cannot open: operation not permitted",
            }],
            "skipped": [{"real_server": "10.0.9.9", "reason": "no route"}],
            "conflicts": [{
                "virtual_server": "TCP 10.0.0.100:80",
                "vip": "10.0.0.100",
                "real_server": "10.0.0.12",
                "mac": "02:00:00:00:00:12",
                "interface": "eth1",
                "since_unix": 40.0,
            }, {
                "virtual_server": "TCP 10.0.0.100:80",
                "vip": "10.0.0.100",
                "real_server": null,
                "mac": "02:00:00:00:00:99",
                "interface": "eth1",
                "since_unix": 41.25,
            }],
        })
    }

    fn rich_report() -> Report {
        Report {
            rounds: 3,
            last_round_unix: Some(100.5),
            segments: vec![
                SegmentReport {
                    error: None,
                    interface: "eth1".into(),
                    real_servers: vec![RS1, RS2],
                    unresolved: vec![RS1],
                    vips: vec![VIP],
                },
                SegmentReport {
                    error: Some("cannot open: operation not permitted".into()),
                    interface: "eth2".into(),
                    real_servers: vec![],
                    unresolved: vec![],
                    vips: vec![],
                },
            ],
            skipped: vec![Skipped {
                real_server: Ipv4Addr::new(10, 0, 9, 9),
                reason: "no route".into(),
            }],
            conflicts: vec![
                StandingConflict::new(
                    &rs2_conflict(),
                    SystemTime::UNIX_EPOCH + Duration::from_secs(40),
                ),
                StandingConflict::new(
                    &Conflict {
                        real_server: None,
                        mac: STRANGER,
                        ..rs2_conflict()
                    },
                    SystemTime::UNIX_EPOCH + Duration::from_millis(41_250),
                ),
            ],
            ..Report::default()
        }
    }

    #[test]
    fn the_report_serializes_as_the_untyped_status_object_did_and_reads_back() {
        let report = rich_report();
        let typed = serde_json::to_string(&report).unwrap();
        assert_eq!(typed, serde_json::to_string(&untyped(3)).unwrap());
        let back: Report = serde_json::from_str(&typed).unwrap();
        assert_eq!(back, report);
        assert_eq!(
            serde_json::to_value(Report::default()).unwrap(),
            serde_json::json!({
                "interval_seconds": 10.0, "rounds": 0, "last_round_unix": null, "error": null,
                "segments": [], "skipped": [], "conflicts": [],
            })
        );
    }

    #[test]
    fn an_unknown_field_is_refused() {
        let mut json = untyped(3);
        json["segments"][0]["mtu"] = serde_json::json!(1500);
        let error = serde_json::from_value::<Report>(json)
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `mtu`"), "{error}");
    }
}
