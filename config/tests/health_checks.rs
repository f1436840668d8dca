//! Health checking in the TOML configuration: checker tables with keepalived's
//! defaults resolved through checker → real server → virtual server, quorum /
//! hysteresis / sorry server, `[[vrrp_script]]` + `track_script`, and every
//! rule's message at its line:col. A script that does not exist or is not
//! executable is an error here (so `haldir check` reports it).

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;

use haldir_config::{
    parse_toml, CheckConnection, CheckKind, CheckTimingSpec, HttpCheckOptions, HttpUrlSpec, Model,
    SorryServer, StatusCodes, TlsVerify, TrackScript, UrlOptions,
};

const FILE: &str = "haldir.toml";

fn parse(text: &str) -> Model {
    parse_toml(text, FILE).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(text: &str) -> Vec<String> {
    match parse_toml(text, FILE) {
        Ok(model) => panic!("expected errors, got {model:#?}"),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

fn one_error(text: &str) -> String {
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    errors.into_iter().next().unwrap()
}

fn sock(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

const VS: &str = "[[virtual_server]]
ip = \"192.0.2.10\"
port = 80
lb_kind = \"DR\"
";

#[test]
fn checker_defaults_are_keepalived_s_per_kind() {
    let model = parse(&format!(
        "{VS}
[[virtual_server.real_server]]
ip = \"10.0.0.1\"
TCP_CHECK = {{}}
[[virtual_server.real_server]]
ip = \"10.0.0.2\"
HTTP_GET = {{ url = [{{ path = \"/\" }}] }}
[[virtual_server.real_server]]
ip = \"10.0.0.3\"
MISC_CHECK = {{ misc_path = \"/bin/true\" }}
[[virtual_server.real_server]]
ip = \"10.0.0.4\"
port = 53
DNS_CHECK = {{}}
[[virtual_server.real_server]]
ip = \"10.0.0.5\"
"
    ));
    let rs = &model.virtual_servers[0].real_servers;
    let timing = |retry, delay_before_retry_millis| CheckTimingSpec {
        delay_loop_millis: 60_000,
        retry,
        delay_before_retry_millis,
        warmup_millis: None,
        alpha: false,
    };
    assert_eq!(rs[0].checks[0].timing, timing(1, 1000));
    assert_eq!(
        rs[0].checks[0].kind,
        CheckKind::Tcp(CheckConnection {
            target: sock("10.0.0.1:80"),
            bind_to: None,
            connect_timeout_millis: 5000,
        })
    );
    assert_eq!(rs[1].checks[0].timing, timing(1, 3000));
    let CheckKind::Http(http) = &rs[1].checks[0].kind else {
        panic!("{:?}", rs[1].checks[0].kind)
    };
    assert!(!http.tls);
    assert_eq!(http.options().verify, TlsVerify::Off);
    assert_eq!(rs[2].checks[0].timing, timing(0, 1000));
    let CheckKind::Misc(misc) = &rs[2].checks[0].kind else {
        panic!()
    };
    assert_eq!(
        misc.misc_timeout_millis, 60_000,
        "misc_timeout defaults to delay_loop"
    );
    assert_eq!(rs[3].checks[0].timing, timing(3, 60_000));
    let CheckKind::Dns(dns) = &rs[3].checks[0].kind else {
        panic!()
    };
    assert_eq!((dns.query_type.as_str(), dns.name.as_str()), ("SOA", "."));
    assert_eq!(dns.connection.target, sock("10.0.0.4:53"));
    assert!(rs[4].checks.is_empty(), "no checker: always up");
    assert!(!rs[0].inhibit_on_failure);
    let vs = &model.virtual_servers[0];
    assert_eq!((vs.quorum, vs.hysteresis, vs.sorry_server), (1, 0, None));
}

#[test]
fn settings_are_inherited_checker_over_real_server_over_virtual_server() {
    let model = parse(
        "[[virtual_server]]
ip = \"192.0.2.10\"
port = 80
delay_loop = 2
retry = 4
connect_timeout = 3
warmup = 0.5
alpha = true
inhibit_on_failure = true
virtualhost = \"vs.example\"
[[virtual_server.real_server]]
ip = \"10.0.0.1\"
delay_before_retry = 0.25
retry = 2
alpha = false
inhibit_on_failure = false
[virtual_server.real_server.HTTP_GET]
connect_timeout = 0.75
connect_port = 8080
bindto = \"10.0.0.254\"
url = [{ path = \"/a\", status_code = 200, digest = \"9B3A0C85A887A256D6939DA88AABD8CD\" },
       { path = \"/b\", status_code = \"200-299 404\", regex = \"ok$\", virtualhost = \"b.example\" }]
[[virtual_server.real_server]]
ip = \"10.0.0.2\"
[[virtual_server.real_server.TCP_CHECK]]
nb_get_retry = 7
[[virtual_server.real_server.TCP_CHECK]]
connect_port = 22
",
    );
    let vs = &model.virtual_servers[0];
    let first = &vs.real_servers[0];
    assert!(
        !first.inhibit_on_failure,
        "the real server's own value wins"
    );
    assert!(vs.real_servers[1].inhibit_on_failure, "inherited");
    let check = &first.checks[0];
    assert_eq!(
        check.timing,
        CheckTimingSpec {
            delay_loop_millis: 2000,
            retry: 2,
            delay_before_retry_millis: 250,
            warmup_millis: Some(500),
            alpha: false,
        }
    );
    let CheckKind::Http(http) = &check.kind else {
        panic!()
    };
    assert_eq!(
        http.connection,
        CheckConnection {
            target: sock("10.0.0.1:8080"),
            bind_to: Some(Box::new(sock("10.0.0.254:0"))),
            connect_timeout_millis: 750,
        }
    );
    assert_eq!(http.options().virtualhost.as_deref(), Some("vs.example"));
    assert_eq!(
        http.urls.as_slice(),
        [
            HttpUrlSpec::new(
                "/a",
                Some(StatusCodes::parse("200").unwrap()),
                UrlOptions {
                    digest: Some("9b3a0c85a887a256d6939da88aabd8cd".into()),
                    ..UrlOptions::default()
                }
            ),
            HttpUrlSpec::new(
                "/b",
                Some(StatusCodes::parse("200-299 404").unwrap()),
                UrlOptions {
                    regex: Some("ok$".into()),
                    virtualhost: Some("b.example".into()),
                    ..UrlOptions::default()
                }
            )
        ]
    );
    let second = &vs.real_servers[1];
    assert_eq!(second.checks.len(), 2, "several checkers of one kind");
    assert_eq!(second.checks[0].timing.retry, 7, "nb_get_retry is retry");
    assert!(second.checks[0].timing.alpha);
    assert_eq!(second.checks[1].timing.retry, 4);
    let CheckKind::Tcp(tcp) = &second.checks[1].kind else {
        panic!()
    };
    assert_eq!(tcp.target, sock("10.0.0.2:22"));
    assert_eq!(tcp.connect_timeout_millis, 3000);
}

#[test]
fn quorum_hysteresis_and_sorry_server() {
    let model = parse(&format!(
        "{VS}quorum = 5
hysteresis = 2
sorry_server = \"10.0.0.250 8080\"
sorry_server_inhibit = true
omega = true
[[virtual_server]]
ip = \"192.0.2.11\"
port = 443
sorry_server = {{ ip = \"10.0.0.251\" }}
"
    ));
    let vs = &model.virtual_servers;
    assert_eq!((vs[0].quorum, vs[0].hysteresis, vs[0].omega), (5, 2, true));
    assert_eq!(
        vs[0].sorry_server,
        Some(SorryServer {
            ip: "10.0.0.250".parse().unwrap(),
            port: 8080,
            inhibit: true
        })
    );
    assert_eq!(
        vs[1].sorry_server,
        Some(SorryServer {
            ip: "10.0.0.251".parse().unwrap(),
            port: 443,
            inhibit: false
        })
    );
}

#[test]
fn quorum_rules_are_reported_where_written() {
    assert_eq!(
        one_error(&format!("{VS}quorum = 0\n")),
        "haldir.toml:5:10: quorum = 0: must be 1 or more (the sum of the weights of the live real servers the service needs)"
    );
    assert_eq!(
        one_error(&format!("{VS}quorum = 3\nhysteresis = 3\n")),
        "haldir.toml:6:14: hysteresis = 3: must be below quorum = 3, or the quorum could never be lost; lower it or raise quorum"
    );
    assert_eq!(
        one_error(&format!("{VS}sorry_server = \"10.0.0.1 80 x\"\n")),
        "haldir.toml:5:16: sorry_server = \"10.0.0.1 80 x\": write \"IP\" or \"IP PORT\", e.g. \"10.0.0.250 80\""
    );
    assert_eq!(
        one_error(&format!("{VS}sorry_server = \"2001:db8::1\"\n")),
        "haldir.toml:5:16: sorry_server 2001:db8::1: is IPv6 but the virtual server is IPv4; only lb_kind = \"TUN\" can mix families"
    );
    assert_eq!(
        one_error(&format!("{VS}sorry_server_inhibit = true\n")),
        "haldir.toml:5:24: sorry_server_inhibit: only means something with a sorry_server; add one or remove this"
    );
    assert_eq!(
        one_error(&format!(
            "{VS}sorry_server = \"10.0.0.1\"\n[[virtual_server.real_server]]\nip = \"10.0.0.1\"\n"
        )),
        "haldir.toml:5:16: sorry_server 10.0.0.1 port 80: is also the real_server at haldir.toml:6:1; a sorry server stands in for the real servers, so give it its own address or port"
    );
    assert_eq!(
        one_error(&format!("{VS}sorry_server = 80\n")),
        "haldir.toml:5:16: sorry_server = 80: expected \"IP PORT\" (a string) or a table { ip = \"IP\", port = PORT }"
    );
}

#[test]
fn checker_rules_are_reported_where_written() {
    let rs = format!("{VS}[[virtual_server.real_server]]\nip = \"10.0.0.1\"\n");
    let cases: &[(&str, &str)] = &[
        (
            "TCP_CHECK = { connect_timeout = 0 }",
            "haldir.toml:7:33: connect_timeout = 0: must be more than 0 seconds, in steps of 0.001",
        ),
        (
            "TCP_CHECK = { retry = -1 }",
            "haldir.toml:7:23: retry = -1: must be 0 or more (extra attempts before a server that is up is declared down)",
        ),
        (
            "TCP_CHECK = { retry = 1, nb_get_retry = 2 }",
            "haldir.toml:7:41: nb_get_retry = 2: retry at haldir.toml:7:23 already sets this (nb_get_retry is retry's old name); keep one",
        ),
        (
            "TCP_CHECK = { connect_port = 70000 }",
            "haldir.toml:7:30: connect_port = 70000: must be 1..=65535",
        ),
        (
            "TCP_CHECK = { bindto = \"2001:db8::1\" }",
            "haldir.toml:7:24: bindto = \"2001:db8::1\": the check connects to 10.0.0.1 (IPv4), so the source must be of the same family",
        ),
        (
            "TCP_CHECK = { misc_path = \"/bin/true\" }",
            "haldir.toml:7:15: unknown key `misc_path` in TCP_CHECK; accepted keys: connect_ip, connect_port, bindto, bind_port, connect_timeout, retry, nb_get_retry, delay_before_retry, warmup, delay_loop, alpha",
        ),
        (
            "HTTP_GET = { }",
            "haldir.toml:7:12: HTTP_GET has no url; add e.g. url = [{ path = \"/health\", status_code = 200 }]",
        ),
        (
            "HTTP_GET = { url = [{ path = \"health\" }] }",
            "haldir.toml:7:30: path = \"health\": must start with '/' and contain no spaces (origin form, e.g. \"/health\")",
        ),
        (
            "HTTP_GET = { url = [{ path = \"/\", status_code = \"600\" }] }",
            "haldir.toml:7:49: status_code = \"600\": status_code \"600\": expected codes or ranges within 100-599, e.g. \"200-299 404\"",
        ),
        (
            "HTTP_GET = { url = [{ path = \"/\", digest = \"abc\" }] }",
            "haldir.toml:7:44: digest = \"abc\": expected 32 hex digits, the MD5 of the body as genhash prints it",
        ),
        (
            "HTTP_GET = { url = [{ path = \"/\", regex = \"(\" }] }",
            "REGEX",
        ),
        (
            "HTTP_GET = { url = [{ path = \"/\", regex_no_match = true }] }",
            "haldir.toml:7:52: regex_no_match = true: only means something with a regex; add one or remove this",
        ),
        (
            "HTTP_GET = { url = [{ path = \"/\" }], verify = true }",
            "haldir.toml:7:38: unknown key `verify` in HTTP_GET; accepted keys: connect_ip, connect_port, bindto, bind_port, connect_timeout, retry, nb_get_retry, delay_before_retry, warmup, delay_loop, alpha, url, virtualhost",
        ),
        (
            "SSL_GET = { url = [{ path = \"/\" }], verify = false, ca_file = \"/nonexistent.pem\" }",
            "haldir.toml:7:46: verify = false: contradicts ca_file (which verifies against that CA); remove one",
        ),
        (
            "SSL_GET = { url = [{ path = \"/\" }], ca_file = \"/nonexistent.pem\" }",
            "CAFILE",
        ),
        (
            "SSL_GET = { url = [{ path = \"/\" }], virtualhost = \"bad_name!\" }",
            "haldir.toml:7:51: virtualhost \"bad_name!\": not a valid host name for TLS SNI",
        ),
        (
            "MISC_CHECK = { misc_timeout = 1 }",
            "haldir.toml:7:14: MISC_CHECK is missing `misc_path`; add e.g. misc_path = \"/usr/local/bin/check_web\"",
        ),
        (
            "MISC_CHECK = { misc_path = \"/nonexistent/check\" }",
            "haldir.toml:7:28: misc_path = \"/nonexistent/check\": script \"/nonexistent/check\" does not exist",
        ),
        (
            "MISC_CHECK = { misc_path = \"'/bin/true\" }",
            "haldir.toml:7:28: misc_path = \"'/bin/true\": misc_path \"'/bin/true\": unterminated quote or trailing backslash",
        ),
        (
            "MISC_CHECK = { misc_path = \"/bin/true\", user = \"no-such-user-here\" }",
            "haldir.toml:7:48: script user \"no-such-user-here\" does not exist; create the account or name another",
        ),
        (
            "MISC_CHECK = { misc_path = \"/bin/true\", connect_timeout = 1 }",
            "haldir.toml:7:41: unknown key `connect_timeout` in MISC_CHECK; accepted keys: misc_path, misc_timeout, misc_dynamic, user, group, retry, delay_before_retry, warmup, delay_loop, alpha",
        ),
        (
            "DNS_CHECK = { type = \"PTR\" }",
            "haldir.toml:7:22: type = \"PTR\": must be one of A, NS, CNAME, SOA, MX, TXT, AAAA",
        ),
        (
            "DNS_CHECK = { name = \"a..b\" }",
            "haldir.toml:7:22: name = \"a..b\": DNS name \"a..b\": labels must be 1-63 bytes and the name at most 255",
        ),
        (
            "TCP_CHECK = 5",
            "haldir.toml:7:13: TCP_CHECK = 5: expected a table, found an integer",
        ),
    ];
    let mut wrong = Vec::new();
    for (line, expected) in cases {
        let got = one_error(&format!("{rs}{line}\n"));
        match *expected {
            "REGEX" => assert!(
                got.starts_with("haldir.toml:7:43: regex = \"(\": regex \"(\""),
                "{line}: {got}"
            ),
            "CAFILE" => assert!(
                got.starts_with(
                    "haldir.toml:7:47: ca_file = \"/nonexistent.pem\": CA file /nonexistent.pem:"
                ),
                "{line}: {got}"
            ),
            _ if got != *expected => {
                wrong.push(format!("{line}\n  got:      {got}\n  expected: {expected}"))
            }
            _ => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_fwmark_real_server_needs_connect_port() {
    assert_eq!(
        one_error(
            "[[virtual_server]]\nfwmark = 1\n[[virtual_server.real_server]]\nip = \"10.0.0.1\"\nTCP_CHECK = {}\n"
        ),
        "haldir.toml:5:13: TCP_CHECK: the real server of a fwmark service has no port; set connect_port"
    );
    parse("[[virtual_server]]\nfwmark = 1\n[[virtual_server.real_server]]\nip = \"10.0.0.1\"\nTCP_CHECK = { connect_port = 80 }\n");
}

#[test]
fn a_script_that_is_not_executable_is_a_config_error() {
    let dir = std::env::temp_dir().join(format!("haldir-health-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("check.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = format!(
        "{VS}[[virtual_server.real_server]]\nip = \"10.0.0.1\"\nMISC_CHECK = {{ misc_path = \"{} arg\", user = \"nobody\" }}\n",
        script.display()
    );
    let got = one_error(&text);
    assert!(
        got.starts_with("haldir.toml:7:28: misc_path = ")
            && got.contains("is not executable by user nobody"),
        "{got}"
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    parse(&text);
    let _ = std::fs::remove_dir_all(&dir);
}

const INSTANCE: &str = "[[vrrp_instance]]
name = \"VI_1\"
interface = \"eth0\"
virtual_router_id = 51
priority = 100
virtual_ipaddress = [\"192.0.2.10/24\"]
";

#[test]
fn vrrp_scripts_and_track_script() {
    let model = parse(&format!(
        "[[vrrp_script]]
name = \"chk_web\"
script = \"/bin/true --quiet\"
interval = 2
weight = -20
rise = 3
fall = 2
user = \"nobody\"

[[vrrp_script]]
name = \"chk_db\"
script = \"/bin/false\"
init_fail = true

{INSTANCE}track_script = [\"chk_web\", {{ name = \"chk_db\", weight = 10 }}]
"
    ));
    let web = &model.vrrp_scripts[0];
    assert_eq!(
        (
            web.name.as_str(),
            web.script.as_str(),
            web.interval_millis,
            web.timeout_millis,
            web.weight,
            web.rise,
            web.fall,
            web.user.as_deref(),
            web.init_fail
        ),
        (
            "chk_web",
            "/bin/true --quiet",
            2000,
            2000,
            -20,
            3,
            2,
            Some("nobody"),
            false
        ),
        "timeout defaults to the interval"
    );
    let db = &model.vrrp_scripts[1];
    assert_eq!(
        (
            db.interval_millis,
            db.weight,
            db.rise,
            db.fall,
            db.init_fail
        ),
        (1000, 0, 1, 1, true)
    );
    assert_eq!(
        model.vrrp_instances[0].track_script,
        vec![
            TrackScript {
                name: "chk_web".into(),
                weight: -20
            },
            TrackScript {
                name: "chk_db".into(),
                weight: 10
            }
        ]
    );
}

#[test]
fn vrrp_script_rules_are_reported_where_written() {
    let script =
        |body: &str| format!("[[vrrp_script]]\nname = \"chk\"\nscript = \"/bin/true\"\n{body}\n");
    let cases: &[(String, &str)] = &[
        (
            "[[vrrp_script]]\nname = \"chk\"\n".into(),
            "haldir.toml:1:1: this vrrp_script is missing `script`; add e.g. `script = \"/usr/local/bin/check_web\"`",
        ),
        (
            "[[vrrp_script]]\nname = \"chk\"\nscript = \"/no/such/script --flag\"\n".into(),
            "haldir.toml:3:10: script = \"/no/such/script --flag\": script \"/no/such/script\" does not exist",
        ),
        (
            "[[vrrp_script]]\nname = \"chk\"\nscript = \"no-such-program-on-path\"\n".into(),
            "haldir.toml:3:10: script = \"no-such-program-on-path\": script \"no-such-program-on-path\" does not exist",
        ),
        (script("weight = 254"), "haldir.toml:4:10: weight = 254: must be -253..=253 (0: failing puts the tracking instances in FAULT)"),
        (script("rise = 0"), "haldir.toml:4:8: rise = 0: must be 1 or more"),
        (script("fall = 0"), "haldir.toml:4:8: fall = 0: must be 1 or more"),
        (script("interval = 0"), "haldir.toml:4:12: interval = 0: must be more than 0 seconds, in steps of 0.001"),
        (script("timeout = -1"), "haldir.toml:4:11: timeout = -1: must be more than 0 seconds, in steps of 0.001"),
        (script("period = 1"), "haldir.toml:4:1: unknown key `period` in [[vrrp_script]]; accepted keys: name, script, interval, timeout, weight, rise, fall, user, group, init_fail"),
        (
            format!("{}{}", script(""), script("")),
            "haldir.toml:6:8: name = \"chk\": already used by the vrrp_script at haldir.toml:1:1; give each script its own name",
        ),
        (
            format!("{INSTANCE}track_script = [\"chk_missing\"]\n"),
            "haldir.toml:7:17: track_script \"chk_missing\": no [[vrrp_script]] has this name; no [[vrrp_script]] is defined",
        ),
        (
            format!("{}{INSTANCE}track_script = [\"chk\", \"chx\"]\n", script("")),
            "haldir.toml:11:24: track_script \"chx\": no [[vrrp_script]] has this name; defined scripts: chk",
        ),
        (
            format!("{}{INSTANCE}track_script = [\"chk\", \"chk\"]\n", script("")),
            "haldir.toml:11:24: track_script \"chk\": already listed at haldir.toml:11:17; list each script once",
        ),
        (
            format!("{}{INSTANCE}track_script = [{{ name = \"chk\", weight = -300 }}]\n", script("")),
            "haldir.toml:11:42: weight = -300: must be -253..=253 (0: failing puts the instance in FAULT)",
        ),
        (
            format!("{}{INSTANCE}track_script = [{{ weight = 3 }}]\n", script("")),
            "haldir.toml:11:17: this track_script entry has no `name`; write { name = \"SCRIPT\", weight = N }",
        ),
        (
            format!("{}{INSTANCE}track_script = \"chk\"\n", script("")),
            "haldir.toml:11:16: track_script = \"chk\": expected an array of script names or { name, weight } tables, e.g. [\"chk_web\", { name = \"chk_db\", weight = -20 }]",
        ),
        (
            format!(
                "{}{}track_script = [{{ name = \"chk\", weight = -5 }}]\n",
                script(""),
                INSTANCE.replace("priority = 100", "priority = 255")
            ),
            "haldir.toml:11:16: track_script \"chk\" has weight -5: the address owner (priority = 255 at haldir.toml:9:12) always runs at 255, so a weight cannot move it; use weight 0 (FAULT on failure) or lower the priority",
        ),
    ];
    let mut wrong = Vec::new();
    for (text, expected) in cases {
        // A virtual server at the end keeps "nothing to run" away without moving lines.
        let got = one_error(&format!("{text}\n{VS}"));
        if got != *expected {
            wrong.push(format!("{text}\n  got:      {got}\n  expected: {expected}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The owner may track with weight 0 (FAULT on failure).
    parse(&format!(
        "{}{}track_script = [\"chk\"]\n",
        script(""),
        INSTANCE.replace("priority = 100", "priority = 255")
    ));
}

#[test]
fn smtp_udp_and_ping_checks_read_in_both_syntaxes_and_convert_back() {
    let conf = "virtual_server 192.0.2.10 25 {
    lb_kind DR
    real_server 10.0.0.1 25 {
        SMTP_CHECK {
            helo_name director.example
            connect_timeout 3
        }
        UDP_CHECK {
            connect_port 53
            payload 00 01 Ab1
            require_reply 00 0x
            min_reply_length 2
            max_reply_length 512
        }
        PING_CHECK {
            connect_timeout 1
        }
    }
}
";
    let model = haldir_config::parse_keepalived(conf, "keepalived.conf").unwrap();
    let checks = &model.virtual_servers[0].real_servers[0].checks;
    let kind = |keyword: &str| {
        checks
            .iter()
            .find(|c| c.kind.keyword() == keyword)
            .unwrap_or_else(|| panic!("no {keyword} in {checks:?}"))
    };
    let CheckKind::Smtp(smtp) = &kind("SMTP_CHECK").kind else {
        unreachable!()
    };
    assert_eq!(smtp.helo_name, "director.example");
    assert_eq!(
        smtp.connection.target,
        sock("10.0.0.1:25"),
        "the real server's port"
    );
    assert_eq!(kind("SMTP_CHECK").timing.retry, 1);
    let CheckKind::Udp(udp) = &kind("UDP_CHECK").kind else {
        unreachable!()
    };
    assert_eq!(udp.connection.target, sock("10.0.0.1:53"));
    assert_eq!(udp.payload.data, [0x00, 0x01, 0xab, 0x01]);
    let reply = udp.require_reply.as_ref().unwrap();
    assert_eq!(
        (reply.data.as_slice(), reply.mask.as_slice()),
        (&[0u8, 0][..], &[0u8, 0x0f][..])
    );
    assert_eq!((udp.min_reply_length, udp.max_reply_length), (2, 512));
    let CheckKind::Ping(ping) = &kind("PING_CHECK").kind else {
        unreachable!()
    };
    assert_eq!(ping.connect_timeout_millis, 1000);
    // And back through TOML: the same model.
    let toml = haldir_config::to_toml(&model);
    let again = parse(&toml);
    assert_eq!(
        again.without_locations(),
        model.clone().without_locations(),
        "{toml}"
    );
    assert!(toml.contains("payload = \"00 01 ab 01\""), "{toml}");
    assert!(toml.contains("require_reply = \"00 0x\""), "{toml}");
    // A bare require_reply is any reply; in TOML `require_reply = true`.
    let any = haldir_config::parse_keepalived(
        &conf.replace("require_reply 00 0x", "require_reply"),
        "k.conf",
    )
    .unwrap();
    let udp = any.virtual_servers[0].real_servers[0]
        .checks
        .iter()
        .find_map(|c| match &c.kind {
            CheckKind::Udp(udp) => Some(udp),
            _ => None,
        })
        .unwrap();
    assert_eq!(udp.require_reply.as_ref().map(|r| r.data.len()), Some(0));
    assert!(haldir_config::to_toml(&any).contains("require_reply = true"));
}

#[test]
fn smtp_and_udp_rules_are_reported_where_written() {
    let rs =
        |check: &str| format!("{VS}\n[[virtual_server.real_server]]\nip = \"10.0.0.1\"\n{check}\n");
    assert_eq!(
        one_error(&rs("UDP_CHECK = { payload = \"0g\" }")),
        "haldir.toml:8:25: payload \"0g\": 'g' is not a hex digit; write hex digits, e.g. \"00 01 ab cd\""
    );
    assert_eq!(
        one_error(&rs("UDP_CHECK = { payload = \"1x\" }")),
        "haldir.toml:8:25: payload \"1x\": 'x' is not a hex digit; write hex digits, e.g. \"00 01 ab cd\""
    );
    assert_eq!(
        one_error(&rs("UDP_CHECK = { require_reply = true, min_reply_length = 9, max_reply_length = 4 }")),
        "haldir.toml:8:56: min_reply_length = 9: is above max_reply_length = 4; no reply could pass"
    );
    assert_eq!(
        one_error(&rs("UDP_CHECK = { max_reply_length = 4 }")),
        "haldir.toml:8:34: max_reply_length: only means something with require_reply; add it or remove this"
    );
    assert_eq!(
        one_error(&rs("SMTP_CHECK = { helo_name = \"a b\" }")),
        "haldir.toml:8:28: helo_name = \"a b\": give one name without spaces (it is sent as `HELO name`)"
    );
}

#[test]
fn status_codes_accept_the_codes_and_ranges_written_and_default_to_2xx() {
    for (text, accepted, refused) in [
        ("200", &[200][..], &[201, 404][..]),
        ("200-299 404", &[200, 250, 299, 404], &[300, 403, 500]),
        ("200,301", &[200, 301], &[302]),
    ] {
        let codes = StatusCodes::parse(text).unwrap();
        for code in accepted {
            assert!(codes.contains(*code), "{text:?} accepts {code}");
        }
        for code in refused {
            assert!(!codes.contains(*code), "{text:?} refuses {code}");
        }
    }
    let default = StatusCodes::default();
    assert!(default.contains(200) && default.contains(299));
    assert!(!default.contains(300) && !default.contains(199));
    assert_eq!(default.to_string(), "200-299");
}

#[test]
fn urls_compare_by_their_settings_however_they_were_made() {
    let parsed = parse(&format!(
        "{VS}
[[virtual_server.real_server]]
ip = \"10.0.0.1\"
HTTP_GET = {{ url = [{{ path = \"/\" }}, {{ path = \"/\", digest = \"9B3A0C85A887A256D6939DA88AABD8CD\" }}] }}
"
    ));
    let CheckKind::Http(http) = &parsed.virtual_servers[0].real_servers[0].checks[0].kind else {
        panic!()
    };
    let plain = HttpUrlSpec::new("/", None, UrlOptions::default());
    assert_eq!(
        http.urls[0], plain,
        "no option set is the same as none held"
    );
    assert_eq!(http.urls[0].options(), &UrlOptions::default());
    let digest = UrlOptions {
        digest: Some("9b3a0c85a887a256d6939da88aabd8cd".into()),
        ..UrlOptions::default()
    };
    assert_eq!(http.urls[1], HttpUrlSpec::new("/", None, digest.clone()));
    assert_eq!(http.urls[1].options(), &digest);
    assert_ne!(http.urls[0], http.urls[1]);

    // The check's own options likewise.
    let mut same = (**http).clone();
    same.set_options(HttpCheckOptions::default());
    assert_eq!(&same, &**http, "no option set is the same as none held");
    let mut other = same.clone();
    other.set_options(HttpCheckOptions {
        virtualhost: Some("www.example.com".into()),
        ..HttpCheckOptions::default()
    });
    assert_ne!(other, same);
    assert_eq!(
        other.options().virtualhost.as_deref(),
        Some("www.example.com")
    );
}
