//! The control socket, `haldir status`, `haldir reload` and `/metrics`, against
//! real haldir processes in lab namespaces (needs root; skipped loudly
//! otherwise).

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use haldir_lab::{self as lab, Haldir, HaldirInstance, Lab};
use serde_json::Value;

const FAST: Duration = Duration::from_millis(100);

use haldir_lab::skip_unless_root;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

fn two_router_lab(tag: &str) -> Lab {
    let lab = Lab::new(tag).unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
    lab
}

fn instance(priority: u8) -> HaldirInstance {
    HaldirInstance::v3(51, priority, FAST, &["10.0.0.100/24"])
}

fn haldir_cli(args: &[&str], socket: &Path) -> Output {
    Command::new(binary())
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .unwrap()
}

fn status_json(h: &Haldir) -> Value {
    let out = haldir_cli(&["status", "--json"], &h.control_socket());
    assert!(
        out.status.success(),
        "haldir status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    haldir_lab::schema_checked(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "haldir status --json is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    }))
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn status_json_describes_the_live_state_of_two_routers() {
    if skip_unless_root("status_json_describes_the_live_state_of_two_routers") {
        return;
    }
    let lab = two_router_lab("cst");
    let r1 = Haldir::start(&lab, "r1", binary(), &[instance(150)]).unwrap();
    let r2 = Haldir::start(&lab, "r2", binary(), &[instance(100)]).unwrap();
    assert!(
        r1.wait_state("MASTER", Duration::from_secs(5)),
        "{}",
        r1.log()
    );
    assert!(
        r2.wait_state("BACKUP", Duration::from_secs(5)),
        "{}",
        r2.log()
    );
    // The backup has seen the master's adverts.
    assert!(lab::wait_until(Duration::from_secs(3), || {
        status_json(&r2)["instances"][0]["master"] == "10.0.0.1"
    }));

    let socket = r1.control_socket();
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "the control socket is 0600"
    );

    for (h, state, priority) in [(&r1, "MASTER", 150), (&r2, "BACKUP", 100)] {
        let status = status_json(h);
        let i = &status["instances"][0];
        assert_eq!(i["name"], "VI_1", "{status:#}");
        assert_eq!(i["interface"], "eth0");
        assert_eq!(i["state"], state, "{status:#}");
        assert_eq!(i["priority"], priority);
        let since = i["since_unix"].as_f64().expect("since_unix");
        assert!(
            since <= now_unix() && since > now_unix() - 60.0,
            "since {since}"
        );
        assert!(
            i["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{status:#}"
        );
        assert!(i["adverts_sent"].is_u64());
        assert_eq!(status["pid"], h.pid());
        assert!(status["virtual_servers"].as_array().unwrap().is_empty());
    }
    // The lab's own way of asking (the DR ARP check's conflicts in the demo) reaches the
    // same daemon, with the operator's parts the status file lacks.
    let asked = r2.control_status().unwrap();
    assert_eq!(asked["pid"], r2.pid(), "{asked:#}");
    assert!(asked["dr_arp_check"].is_object(), "{asked:#}");
    let backup = status_json(&r2);
    assert_eq!(backup["instances"][0]["master"], "10.0.0.1");
    assert!(backup["instances"][0]["adverts_received"].as_u64().unwrap() > 0);

    // The table form names the same things.
    let out = haldir_cli(&["status"], &r2.control_socket());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for word in ["INSTANCE", "VI_1", "BACKUP", "10.0.0.1", "ago"] {
        assert!(table.contains(word), "{word} missing from:\n{table}");
    }

    // Nobody listening: a clear error, exit 2.
    let out = haldir_cli(&["status"], &lab.dir().join("nothing.sock"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is haldir running"));
}

#[test]
fn reload_reports_errors_and_keeps_running_then_applies_a_good_config() {
    if skip_unless_root("reload_reports_errors_and_keeps_running_then_applies_a_good_config") {
        return;
    }
    let lab = two_router_lab("crl");
    let r1 = Haldir::start(&lab, "r1", binary(), &[instance(150)]).unwrap();
    let r2 = Haldir::start(&lab, "r2", binary(), &[instance(100)]).unwrap();
    assert!(
        r1.wait_state("MASTER", Duration::from_secs(5)),
        "{}",
        r1.log()
    );
    assert!(r2.wait_state("BACKUP", Duration::from_secs(5)));
    let transitions = r1.counter("transitions");

    // A broken file: exit 1, every error printed, nothing changes.
    let good = instance(150).render();
    let broken = good
        .replace("priority = 150", "priority = 300")
        .replace("virtual_router_id = 51", "virtual_router_id = 0");
    std::fs::write(r1.config_path(), &broken).unwrap();
    let out = haldir_cli(&["reload"], &r1.control_socket());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("priority = 300"), "{stderr}");
    assert!(stderr.contains("virtual_router_id = 0"), "{stderr}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(r1.is_running());
    let status = status_json(&r1);
    assert_eq!(status["instances"][0]["state"], "MASTER");
    assert_eq!(status["instances"][0]["priority"], 150);
    assert_eq!(r1.counter("transitions"), transitions, "no transition");
    assert!(lab.has_address("r1", "10.0.0.100"));
    assert_eq!(r2.state().as_deref(), Some("BACKUP"));

    // A notify script that does not exist is an error too.
    std::fs::write(
        r1.config_path(),
        format!("{good}notify_master = \"/nonexistent/haldir-notify\"\n"),
    )
    .unwrap();
    let out = haldir_cli(&["reload"], &r1.control_socket());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("notify_master"), "{stderr}");

    // A good one: exit 0, applied in place.
    std::fs::write(r1.config_path(), instance(160).render()).unwrap();
    let out = haldir_cli(&["reload"], &r1.control_socket());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("reload accepted"), "{stdout}");
    assert!(stdout.contains("updated: VI_1"), "{stdout}");
    let status = status_json(&r1);
    assert_eq!(status["instances"][0]["priority"], 160);
    assert_eq!(status["instances"][0]["state"], "MASTER");
    assert_eq!(r1.counter("transitions"), transitions);
}

/// GET `path` from `address` inside host `host`'s namespace.
fn http_get(lab: &Lab, host: &str, address: &str, path: &str) -> String {
    let ns = lab.ns_name(host);
    let address = address.to_owned();
    let path = path.to_owned();
    lab::in_netns(&ns, move || {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: haldir\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    })
    .unwrap()
}

/// A strict check of the text exposition format 0.0.4: every sample belongs to
/// the family declared just before it (TYPE before samples, HELP/TYPE once per
/// family), names and label names are valid, label values are quoted with
/// valid escapes, values are numbers, histograms have ordered `le` buckets
/// ending in +Inf equal to `_count`.
fn check_exposition(text: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let mut declared = std::collections::BTreeSet::new();
    let mut current: Option<(String, String)> = None;
    let valid_name = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    for (number, line) in text.lines().enumerate() {
        let at = format!("line {}: {line}", number + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            if !valid_name(name) {
                errors.push(format!("{at}: bad name"));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split(' ');
            let (name, kind) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                errors.push(format!("{at}: bad type"));
            }
            if !declared.insert(name.to_owned()) {
                errors.push(format!("{at}: family declared twice"));
            }
            current = Some((name.to_owned(), kind.to_owned()));
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        let Some((family, kind)) = &current else {
            errors.push(format!("{at}: sample before any TYPE"));
            continue;
        };
        let belongs = name == family
            || (kind == "histogram"
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(family.as_str())));
        if !belongs {
            errors.push(format!("{at}: not of family {family}"));
        }
        if kind == "counter" && !name.ends_with("_total") {
            errors.push(format!("{at}: counter without _total"));
        }
        let mut rest = &line[name_end..];
        if let Some(labels) = rest.strip_prefix('{') {
            // label="value",... }
            let mut chars = labels.char_indices().peekable();
            let mut end = None;
            loop {
                let start = match chars.peek() {
                    Some((i, '}')) => {
                        end = Some(*i);
                        break;
                    }
                    Some((i, _)) => *i,
                    None => break,
                };
                let eq = labels[start..].find('=').map(|e| start + e);
                let Some(eq) = eq else { break };
                if !valid_name(&labels[start..eq]) {
                    errors.push(format!("{at}: bad label name"));
                }
                while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                    chars.next();
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    errors.push(format!("{at}: unquoted label value"));
                    break;
                }
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\' | '"' | 'n')) => {}
                            _ => errors.push(format!("{at}: bad escape")),
                        },
                        Some((_, '"')) => break,
                        Some(_) => {}
                        None => {
                            errors.push(format!("{at}: unterminated label value"));
                            break;
                        }
                    }
                }
                if let Some((_, ',')) = chars.peek() {
                    chars.next();
                }
            }
            match end {
                Some(end) => rest = &labels[end + 1..],
                None => {
                    errors.push(format!("{at}: unterminated labels"));
                    continue;
                }
            }
        }
        let value = rest.trim_start_matches(' ');
        if !rest.starts_with(' ')
            || !(value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value))
        {
            errors.push(format!("{at}: bad value"));
        }
    }
    errors
}

#[test]
fn metrics_parse_and_carry_the_expected_families() {
    if skip_unless_root("metrics_parse_and_carry_the_expected_families") {
        return;
    }
    let lab = two_router_lab("cmt");
    let vs = "\n[[virtual_server]]\nip = \"10.0.0.100\"\nport = 80\nlb_algo = \"wrr\"\nlb_kind = \"DR\"\n[[virtual_server.real_server]]\nip = \"10.0.0.11\"\nweight = 3\n[[virtual_server.real_server]]\nip = \"10.0.0.12\"\n[virtual_server.real_server.TCP_CHECK]\nconnect_timeout = 1\n";
    let config = format!("{}{vs}", instance(150).render());
    let r1 = Haldir::start_with_args(
        &lab,
        "r1",
        binary(),
        &config,
        &["--metrics-address", "127.0.0.1:9650"],
    )
    .unwrap();
    let r2 = Haldir::start(&lab, "r2", binary(), &[instance(100)]).unwrap();
    assert!(
        r1.wait_state("MASTER", Duration::from_secs(5)),
        "{}",
        r1.log()
    );
    assert!(r2.wait_state("BACKUP", Duration::from_secs(5)));
    // A few adverts.
    std::thread::sleep(Duration::from_millis(500));

    let response = http_get(&lab, "r1", "127.0.0.1:9650", "/metrics");
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let errors = check_exposition(body);
    assert!(errors.is_empty(), "{errors:#?}\n{body}");

    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("prometheus-parse: {e}\n{body}"));
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    assert_eq!(
        value(
            "haldir_vrrp_state",
            &[("instance", "VI_1"), ("state", "MASTER")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            "haldir_vrrp_state",
            &[("instance", "VI_1"), ("state", "BACKUP")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value("haldir_vrrp_priority", &[("instance", "VI_1")]),
        Some(150.0)
    );
    assert!(value("haldir_vrrp_adverts_sent_total", &[("instance", "VI_1")]).unwrap() >= 3.0);
    assert!(value("haldir_vrrp_transitions_total", &[("instance", "VI_1")]).unwrap() >= 1.0);
    assert!(value("haldir_vrrp_became_master_total", &[("instance", "VI_1")]).unwrap() >= 1.0);
    assert!(value("haldir_vrrp_announcements_total", &[("instance", "VI_1")]).unwrap() >= 1.0);
    assert_eq!(
        value(
            "haldir_ipvs_destination_configured_weight",
            &[
                ("service", "TCP 10.0.0.100:80"),
                ("real_server", "10.0.0.11:80")
            ]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            "haldir_real_server_health",
            &[("real_server", "10.0.0.11:80"), ("health", "unknown")]
        ),
        Some(1.0)
    );
    // The one TCP_CHECK (of 10.0.0.12) is scheduled; its lateness is a figure.
    assert_eq!(value("haldir_health_checks_scheduled", &[]), Some(1.0));
    assert!(value("haldir_health_check_max_lateness_seconds", &[]).is_some_and(|s| s >= 0.0));
    assert!(value("haldir_health_check_runs_total", &[]).is_some());
    assert!(value("haldir_health_table_publications_total", &[]).is_some());
    assert!(value("haldir_health_table_publications_held_total", &[]).is_some());
    assert!(value("haldir_ipvs_reconcile_runs_total", &[]).is_some());
    assert!(value("haldir_ipvs_kernel_readable", &[]).is_some());
    for family in [
        "haldir_vrrp_adverts_received_total",
        "haldir_vrrp_receive_errors_total",
        "haldir_vrrp_link_receive_errors_total",
        "haldir_ipvs_reconcile_operations_total",
        "haldir_ipvs_reconcile_errors_total",
        "haldir_ipvs_service_connections_total",
        "haldir_ipvs_destination_connections_total",
        "haldir_checker_results_total",
        "haldir_checker_latency_seconds",
        "haldir_notify_scripts_total",
    ] {
        assert!(
            body.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{body}"
        );
    }
    let response = http_get(&lab, "r1", "127.0.0.1:9650", "/nothing");
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
}
