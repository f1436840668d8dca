//! The DR ARP check's report: what [`super::ArpCheck`] publishes after each round, the
//! `dr_arp_check` object of the status document, with its text (`haldir status`) and
//! Prometheus (`/metrics`) renderings.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{mac_text, Conflict, Mac, Skipped, CHECK_INTERVAL};

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandingConflict {
    /// Where it was seen.
    pub interface: String,
    /// The sender MAC of the reply for the VIP.
    #[serde(with = "mac_serde")]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

impl Report {
    /// The report as text for `haldir status`, `now_unix` being the time of day (empty when
    /// no DR real server is checked and nothing stands).
    pub fn render_text(&self, now_unix: f64) -> String {
        if self.segments.is_empty() && self.conflicts.is_empty() && self.error.is_none() {
            return String::new();
        }
        let last = match self.last_round_unix {
            Some(t) => format!("last {} ago", age_text(now_unix - t)),
            None => "no round yet".into(),
        };
        let mut out = format!(
            "\nDR ARP check (every {}s, {last}): ",
            self.interval_seconds
        );
        if let Some(error) = &self.error {
            let _ = writeln!(out, "cannot run: {error}");
        } else if self.conflicts.is_empty() {
            out.push_str("no real server answers ARP for a VIP\n");
        } else {
            let _ = writeln!(
                out,
                "{} CONFLICT(S): real servers answering ARP for a VIP (set arp_ignore=1, arp_announce=2 on them)",
                self.conflicts.len()
            );
            for c in &self.conflicts {
                let who = c
                    .real_server
                    .map_or_else(|| "unknown host".to_owned(), |a| a.to_string());
                let _ = writeln!(
                    out,
                    "  {}  VIP {}  answered by {} ({}) on {}  since {} ({} ago)",
                    c.virtual_server,
                    c.vip,
                    who,
                    mac_text(&c.mac),
                    c.interface,
                    utc_text(c.since_unix),
                    age_text(now_unix - c.since_unix),
                );
            }
        }
        for s in &self.segments {
            if let Some(error) = &s.error {
                let _ = writeln!(out, "  {}: cannot probe: {error}", s.interface);
            }
        }
        out
    }

    /// The report's `/metrics` families (Prometheus text format 0.0.4): one sample per
    /// standing conflict, and the rounds.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        family(
            &mut out,
            "haldir_dr_arp_conflict",
            "gauge",
            "1 while a host answers ARP for the VIP of a DR virtual server (real_server: the real server with that MAC, or unknown).",
        );
        for c in &self.conflicts {
            let (vip, mac) = (c.vip.to_string(), mac_text(&c.mac));
            let rs = c
                .real_server
                .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
            sample(
                &mut out,
                "haldir_dr_arp_conflict",
                &[
                    ("virtual_server", &c.virtual_server),
                    ("vip", &vip),
                    ("real_server", &rs),
                    ("mac", &mac),
                ],
                1.0,
            );
        }
        family(
            &mut out,
            "haldir_dr_arp_check_rounds_total",
            "counter",
            "Rounds of the DR real-server ARP check.",
        );
        sample(
            &mut out,
            "haldir_dr_arp_check_rounds_total",
            &[],
            self.rounds as f64,
        );
        out
    }
}

/// The HELP and TYPE lines of a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line; label values escaped (backslash, double quote, newline).
// TODO(merge): `haldir_status::prometheus::Family` once the status crate may be used here.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let escaped = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = write!(out, "{key}=\"{escaped}\"");
        }
        out.push('}');
    }
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
        let _ = writeln!(out, " {}", value as i64);
    } else {
        let _ = writeln!(out, " {value}");
    }
}

/// `2024-05-01 12:00:00Z` for seconds since the Unix epoch.
// TODO(merge): one home for the time helpers (`haldir_status::time`).
fn utc_text(unix: f64) -> String {
    let secs = unix.floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `42s`, `3m2s`, `2h5m`, `3d4h`.
// TODO(merge): one home for the time helpers (`haldir_status::time`).
fn age_text(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
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
    fn the_status_text_names_the_guilty_real_server() {
        let report = Report {
            segments: vec![],
            conflicts: rich_report().conflicts[..1].to_vec(),
            ..rich_report()
        };
        let text = report.render_text(102.0);
        assert_eq!(
            text,
            "\nDR ARP check (every 10s, last 1s ago): 1 CONFLICT(S): real servers answering ARP for a VIP (set arp_ignore=1, arp_announce=2 on them)\n  \
             TCP 10.0.0.100:80  VIP 10.0.0.100  answered by 10.0.0.12 (02:00:00:00:00:12) on eth1  since 1970-01-01 00:00:40Z (1m2s ago)\n"
        );
        assert!(Report::default().render_text(0.0).is_empty());
        let quiet = Report {
            conflicts: vec![],
            ..rich_report()
        };
        assert!(quiet
            .render_text(102.0)
            .contains("no real server answers ARP for a VIP\n  eth2: cannot probe: cannot open"));
    }

    #[test]
    fn the_metrics_have_one_sample_per_conflict_and_the_rounds() {
        assert_eq!(
            rich_report().render_prometheus(),
            "# HELP haldir_dr_arp_conflict 1 while a host answers ARP for the VIP of a DR virtual server (real_server: the real server with that MAC, or unknown).\n\
             # TYPE haldir_dr_arp_conflict gauge\n\
             haldir_dr_arp_conflict{virtual_server=\"TCP 10.0.0.100:80\",vip=\"10.0.0.100\",real_server=\"10.0.0.12\",mac=\"02:00:00:00:00:12\"} 1\n\
             haldir_dr_arp_conflict{virtual_server=\"TCP 10.0.0.100:80\",vip=\"10.0.0.100\",real_server=\"unknown\",mac=\"02:00:00:00:00:99\"} 1\n\
             # HELP haldir_dr_arp_check_rounds_total Rounds of the DR real-server ARP check.\n\
             # TYPE haldir_dr_arp_check_rounds_total counter\n\
             haldir_dr_arp_check_rounds_total 3\n"
        );
    }
}
