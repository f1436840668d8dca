//! `[[virtual_server]]` through the public API: the documented example parses
//! into the exact model, a file may hold only virtual servers, and every
//! rule reports its message at the exact line:col.

use std::net::IpAddr;
use std::path::Path;

use haldir_config::{
    load_file, parse_toml, AddressFamily, Loc, LvsMethod, LvsPersistence, LvsProtocol,
    LvsScheduler, RealServer, SchedulerFlags, VirtualServer, VirtualServerAddress,
};

const FILE: &str = "haldir.toml";

fn errors(text: &str) -> Vec<String> {
    match parse_toml(text, FILE) {
        Ok(model) => panic!("expected errors, got {model:#?}"),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn loc(file: &str, line: u32, col: u32) -> Loc {
    Loc {
        file: file.into(),
        line,
        col,
    }
}

/// A DR virtual server on line 1 with one real server table on line 6.
const MINIMAL: &str = "[[virtual_server]]
ip = \"192.0.2.10\"
port = 80
lb_kind = \"DR\"

[[virtual_server.real_server]]
ip = \"10.0.0.1\"
";

#[test]
fn documented_example_has_the_exact_virtual_servers() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/haldir.toml");
    let model = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let file = path.display().to_string();
    assert_eq!(model.virtual_servers.len(), 2);
    let web = &model.virtual_servers[0];
    assert_eq!(
        web.address,
        VirtualServerAddress::Socket {
            ip: ip("192.0.2.10"),
            port: 80
        }
    );
    assert_eq!(web.family, AddressFamily::Ipv4);
    assert_eq!(web.protocol, LvsProtocol::Tcp);
    assert_eq!(web.scheduler, LvsScheduler::Wrr);
    assert_eq!(web.method, LvsMethod::DirectRouting);
    assert_eq!(
        web.persistence,
        Some(LvsPersistence {
            timeout_secs: 300,
            granularity_prefix_len: 24
        })
    );
    assert!(!web.one_packet);
    assert_eq!(web.delay_loop_millis, Some(6000));
    assert_eq!(web.real_servers.len(), 2);
    let second = &web.real_servers[1];
    assert_eq!(
        (
            second.ip,
            second.port,
            second.weight,
            second.upper_threshold,
            second.lower_threshold
        ),
        (ip("10.0.0.12"), 80, 1, 1000, 800)
    );
    assert_eq!(&*second.loc.file.name(), file);

    let marked = &model.virtual_servers[1];
    assert_eq!(marked.address, VirtualServerAddress::Fwmark(1));
    assert_eq!(marked.protocol, LvsProtocol::Udp);
    assert_eq!(marked.scheduler, LvsScheduler::Sh);
    assert!(marked.one_packet);
    assert_eq!(marked.persistence, None);
    assert!(marked
        .real_servers
        .iter()
        .all(|rs| rs.port == 0 && rs.weight == 1));
}

#[test]
fn a_file_may_hold_only_virtual_servers_with_keepalived_defaults() {
    let model = parse_toml(MINIMAL, FILE).unwrap_or_else(|e| panic!("{e}"));
    assert!(model.vrrp_instances.is_empty());
    assert_eq!(
        model.virtual_servers,
        vec![VirtualServer {
            address: VirtualServerAddress::Socket {
                ip: ip("192.0.2.10"),
                port: 80
            },
            family: AddressFamily::Ipv4,
            protocol: LvsProtocol::Tcp,
            scheduler: LvsScheduler::Wlc,
            method: LvsMethod::DirectRouting,
            persistence: None,
            one_packet: false,
            scheduler_flags: SchedulerFlags::NONE,
            delay_loop_millis: None,
            quorum: 1,
            hysteresis: 0,
            sorry_server: None,
            omega: false,
            quorum_scripts: Default::default(),
            real_servers: vec![RealServer {
                ip: ip("10.0.0.1"),
                port: 80,
                weight: 1,
                upper_threshold: 0,
                lower_threshold: 0,
                inhibit_on_failure: false,
                checks: Vec::new(),
                notify: Default::default(),
                loc: loc(FILE, 6, 1),
            }],
            loc: loc(FILE, 1, 1),
        }]
    );
}

#[test]
fn every_scheduler_keepalived_knows_is_accepted_under_both_names() {
    for scheduler in LvsScheduler::ALL {
        for key in ["lb_algo", "lvs_sched"] {
            let text = MINIMAL.replace(
                "lb_kind = \"DR\"",
                &format!("lb_kind = \"DR\"\n{key} = \"{}\"", scheduler.name()),
            );
            let model = parse_toml(&text, FILE).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(model.virtual_servers[0].scheduler, scheduler);
        }
    }
}

#[test]
fn nat_is_the_default_method_as_in_keepalived_and_tun_is_accepted() {
    let nat = MINIMAL.replace("lb_kind = \"DR\"\n", "");
    assert_eq!(
        parse_toml(&nat, FILE).unwrap().virtual_servers[0].method,
        LvsMethod::Nat
    );
    let tun = MINIMAL.replace("lb_kind = \"DR\"", "lvs_method = \"TUN\"");
    assert_eq!(
        parse_toml(&tun, FILE).unwrap().virtual_servers[0].method,
        LvsMethod::Tunnel
    );
}

#[test]
fn ipv6_service_with_prefix_granularity() {
    let text = "[[virtual_server]]
ip = \"2001:db8::10\"
port = 443
lb_kind = \"DR\"
persistence_timeout = 600
persistence_granularity = \"64\"
[[virtual_server.real_server]]
ip = \"2001:db8:1::11\"
port = 8443
";
    let vs = &parse_toml(text, FILE).unwrap().virtual_servers[0];
    assert_eq!(vs.family, AddressFamily::Ipv6);
    assert_eq!(
        vs.persistence,
        Some(LvsPersistence {
            timeout_secs: 600,
            granularity_prefix_len: 64
        })
    );
    assert_eq!(vs.real_servers[0].port, 8443);
}

#[test]
fn address_rules() {
    assert_eq!(
        errors("[[virtual_server]]\nlb_kind = \"DR\"\n"),
        ["haldir.toml:1:1: this virtual_server has neither `ip` + `port` nor `fwmark`; add e.g. `ip = \"192.0.2.10\"` and `port = 80`, or `fwmark = 1`"]
    );
    assert_eq!(
        errors("[[virtual_server]]\nip = \"192.0.2.10\"\n"),
        ["haldir.toml:1:1: this virtual_server has `ip` but no `port`; add e.g. `port = 80` (or use `fwmark` instead of ip + port)"]
    );
    assert_eq!(
        errors("[[virtual_server]]\nip = \"192.0.2.10\"\nport = 80\nfwmark = 3\n"),
        ["haldir.toml:4:10: fwmark = 3: a virtual_server is either ip + port or fwmark, not both; remove one"]
    );
    assert_eq!(
        errors("[[virtual_server]]\nip = \"192.0.2.300\"\nport = 0\n"),
        [
            "haldir.toml:2:6: ip = \"192.0.2.300\": not an IP address (write it without a prefix length, e.g. \"192.0.2.10\")",
            "haldir.toml:3:8: port = 0: must be 1..=65535",
        ]
    );
    assert_eq!(
        errors("[[virtual_server]]\nfwmark = 0\nport = 80\n"),
        [
            "haldir.toml:2:10: fwmark = 0: must be 1..=4294967295 (the netfilter mark of the packets)",
            "haldir.toml:3:8: port = 80: a fwmark virtual_server has no port; remove it",
        ]
    );
    assert_eq!(
        errors("[[virtual_server]]\nfwmark = 4294967296\n"),
        ["haldir.toml:2:10: fwmark = 4294967296: must be 1..=4294967295 (the netfilter mark of the packets)"]
    );
}

#[test]
fn keyword_values_are_keepalived_spellings() {
    let text = MINIMAL.replace(
        "lb_kind = \"DR\"",
        "lb_kind = \"dr\"\nprotocol = \"tcp\"\nlb_algo = \"roundrobin\"",
    );
    assert_eq!(
        errors(&text),
        [
            "haldir.toml:4:11: lb_kind = \"dr\": must be \"DR\" (direct routing), \"NAT\" or \"TUN\" (tunnelling)",
            "haldir.toml:5:12: protocol = \"tcp\": must be \"TCP\", \"UDP\" or \"SCTP\" (upper case, as keepalived writes it)",
            "haldir.toml:6:11: lb_algo = \"roundrobin\": unknown scheduler; use one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos",
        ]
    );
}

#[test]
fn synonyms_may_not_both_be_written() {
    let text = MINIMAL.replace(
        "lb_kind = \"DR\"",
        "lb_kind = \"DR\"\nlvs_method = \"NAT\"\nlb_algo = \"rr\"\nlvs_sched = \"wrr\"",
    );
    assert_eq!(
        errors(&text),
        [
            "haldir.toml:5:14: lvs_method = \"NAT\": lb_kind at haldir.toml:4:11 already sets this (lvs_method and lb_kind are synonyms); keep one",
            "haldir.toml:7:13: lvs_sched = \"wrr\": lb_algo at haldir.toml:6:11 already sets this (lvs_sched and lb_algo are synonyms); keep one",
        ]
    );
}

#[test]
fn persistence_and_ops_rules() {
    let text = MINIMAL.replace(
        "lb_kind = \"DR\"",
        "lb_kind = \"DR\"\npersistence_granularity = \"255.0.255.0\"\nops = true\ndelay_loop = 0",
    );
    assert_eq!(
        errors(&text),
        [
            "haldir.toml:5:27: persistence_granularity = \"255.0.255.0\": only means something with persistence_timeout; set persistence_timeout or remove this",
            "haldir.toml:6:7: ops = true: one-packet scheduling is for UDP services only; set protocol = \"UDP\" or remove ops",
            "haldir.toml:7:14: delay_loop = 0: must be more than 0 seconds, in steps of 0.001",
        ]
    );
    let text = MINIMAL.replace(
        "lb_kind = \"DR\"",
        "lb_kind = \"DR\"\npersistence_timeout = 0.5\npersistence_granularity = \"255.0.255.0\"",
    );
    assert_eq!(
        errors(&text),
        [
            "haldir.toml:5:23: persistence_timeout = 0.5: must be whole seconds, 1 or more",
            "haldir.toml:6:27: persistence_granularity = \"255.0.255.0\": must be an IPv4 netmask such as \"255.255.255.0\" or a prefix length 0..=32",
        ]
    );
}

#[test]
fn real_server_rules() {
    let text = "[[virtual_server]]
ip = \"192.0.2.10\"
port = 80
lb_kind = \"DR\"
[[virtual_server.real_server]]
port = 80
[[virtual_server.real_server]]
ip = \"2001:db8::1\"
[[virtual_server.real_server]]
ip = \"10.0.0.1\"
weight = 65536
[[virtual_server.real_server]]
ip = \"10.0.0.2\"
uthreshold = 10
lthreshold = 50
[[virtual_server.real_server]]
ip = \"10.0.0.3\"
[[virtual_server.real_server]]
ip = \"10.0.0.3\"
port = 80
";
    assert_eq!(
        errors(text),
        [
            "haldir.toml:5:1: this real_server is missing `ip`; add e.g. `ip = \"10.0.0.1\"`",
            "haldir.toml:8:6: ip = \"2001:db8::1\": is IPv6 but the virtual server is IPv4; only lb_kind = \"TUN\" can mix families",
            "haldir.toml:11:10: weight = 65536: must be 0..=65535 (0 takes no new connections)",
            "haldir.toml:15:14: lthreshold = 50: is above uthreshold = 10; the kernel refuses a lower threshold above the upper one, so lower it or raise uthreshold",
            "haldir.toml:18:1: real_server 10.0.0.3 port 80 is already listed at haldir.toml:16:1; list each real server once",
        ]
    );
}

#[test]
fn duplicate_virtual_servers_point_at_the_first() {
    let text = format!("{MINIMAL}\n{MINIMAL}");
    assert_eq!(
        errors(&text),
        ["haldir.toml:9:1: virtual_server TCP 192.0.2.10:80 is already defined at haldir.toml:1:1; merge the two into one [[virtual_server]]"]
    );
    // Another protocol on the same address and port is another service.
    let udp = MINIMAL.replace("lb_kind = \"DR\"", "lb_kind = \"DR\"\nprotocol = \"UDP\"");
    assert!(parse_toml(&format!("{MINIMAL}\n{udp}"), FILE).is_ok());
}

#[test]
fn unknown_keys_in_virtual_servers_are_reported_with_a_suggestion() {
    let text = MINIMAL.replace(
        "lb_kind = \"DR\"",
        "lb_kind = \"DR\"\nlb_algorithm = \"rr\"",
    ) + "wieght = 2\n";
    let found = errors(&text);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].starts_with("haldir.toml:5:1: unknown key `lb_algorithm` in [[virtual_server]]"),
        "{}",
        found[0]
    );
    assert!(found[1].starts_with("haldir.toml:9:1: unknown key `wieght` in [[virtual_server.real_server]]; did you mean `weight`?"), "{}", found[1]);
}

#[test]
fn virtual_server_must_be_an_array_of_tables() {
    let text = MINIMAL
        .replace("[[virtual_server]]", "[virtual_server]")
        .replace("[[virtual_server.real_server]]\nip = \"10.0.0.1\"\n", "");
    let found = errors(&text);
    assert_eq!(
        found[0],
        "haldir.toml:1:1: virtual_server must be an array of tables: write the header as [[virtual_server]] (double brackets), once per entry"
    );
}

/// keepalived.conf(5)'s scheduler flags: `mh-port` / `mh-fallback` for `mh` (what
/// active-active directors use, docs/active-active.md), `sh-*` for `sh`, `flag-N` for any.
#[test]
fn scheduler_flags_are_read_from_keepalived_conf_and_toml_alike() {
    let conf = "virtual_server 192.0.2.10 80 {
    lvs_sched mh
    mh-port
    mh-fallback
    lb_kind DR
    real_server 10.0.0.1 80 {
    }
}
";
    let from_conf =
        haldir_config::parse_keepalived(conf, "keepalived.conf").unwrap_or_else(|e| panic!("{e}"));
    let flags = from_conf.virtual_servers[0].scheduler_flags;
    assert!(flags.contains(1) && flags.contains(2) && !flags.contains(3));
    assert_eq!(flags.names(LvsScheduler::Mh), ["mh-fallback", "mh-port"]);

    let toml = MINIMAL.replace(
        "lb_kind = \"DR\"",
        "lb_kind = \"DR\"\nlb_algo = \"mh\"\nscheduler_flags = [\"mh-port\", \"mh-fallback\"]",
    );
    let from_toml = parse_toml(&toml, FILE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(from_toml.virtual_servers[0].scheduler_flags, flags);

    // Written back (`haldir convert`) and read again: the same flags.
    let written = haldir_config::to_toml(&from_conf);
    assert!(
        written.contains("scheduler_flags = [\"mh-fallback\", \"mh-port\"]"),
        "{written}"
    );
    let again = parse_toml(&written, FILE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.virtual_servers[0].scheduler_flags, flags);
}

#[test]
fn a_scheduler_flag_of_another_scheduler_or_an_unknown_one_is_refused_where_written() {
    let toml = MINIMAL.replace(
        "lb_kind = \"DR\"",
        "lb_kind = \"DR\"\nlb_algo = \"wrr\"\nscheduler_flags = [\"flag-3\", \"mh-port\", \"hash-all\"]",
    );
    let errors = errors(&toml);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors[0].starts_with("haldir.toml:6:")
            && errors[0].contains("\"mh-port\" is a flag of the mh scheduler")
            && errors[0].contains("scheduler is wrr"),
        "{errors:#?}"
    );
    assert!(
        errors[1].starts_with("haldir.toml:6:")
            && errors[1].contains("\"hash-all\": unknown; use one of flag-1"),
        "{errors:#?}"
    );
}
