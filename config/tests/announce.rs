//! `[announce]` (issue 17, active-active): the defaults, every key, every rule's
//! message at its `file:line:col`, and the TOML round trip of `haldir convert`.

use std::net::IpAddr;
use std::time::Duration;

use haldir_config::{parse_toml, to_toml, Model};

const FILE: &str = "haldir.toml";

/// Two virtual servers on 192.0.2.10 (ports 80 and 443), one on 2001:db8::10 and a
/// fwmark service (lines 1..=17), then `extra`.
fn config(extra: &str) -> String {
    format!(
        r#"[[virtual_server]]
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
port = 80
[[virtual_server.real_server]]
ip = "2001:db8:1::11"
[[virtual_server]]
fwmark = 7
{extra}"#
    )
}

fn parse(text: &str) -> Model {
    parse_toml(text, FILE).unwrap_or_else(|e| panic!("unexpected errors:\n{e}"))
}

fn errors(text: &str) -> Vec<String> {
    match parse_toml(text, FILE) {
        Ok(model) => panic!("expected errors, got {:#?}", model.announce),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn without_the_table_nothing_is_announced() {
    assert_eq!(parse(&config("")).announce, None);
}

#[test]
fn an_empty_table_announces_every_virtual_server_address_from_lo_with_a_5_s_drain() {
    let model = parse(&config("[announce]\n"));
    let announce = model.announce.clone().expect("announce");
    assert_eq!(announce.interface, "lo");
    assert_eq!(announce.drain, Duration::from_secs(5));
    assert_eq!(announce.vips, None);
    assert!(announce.track_interfaces.is_empty());
    assert!(
        announce.sloppy_tcp && announce.sloppy_sctp,
        "sloppy by default"
    );
    // Each address once, in configuration order; the fwmark service has none.
    assert_eq!(
        announce.addresses(&model.virtual_servers),
        vec![ip("192.0.2.10"), ip("2001:db8::10")]
    );
}

#[test]
fn every_key_is_read() {
    let model = parse(&config(
        "[announce]\ninterface = \"vips0\"\ndrain = 0.25\nvips = [\"2001:db8::10\"]\ntrack_interface = [\"eth0\", \"eth1\"]\nsloppy_tcp = false\nsloppy_sctp = false\nbmp_listen = \"127.0.0.1:11019\"\n",
    ));
    let announce = model.announce.clone().unwrap();
    assert_eq!(
        announce.bmp_listen,
        Some("127.0.0.1:11019".parse().unwrap())
    );
    assert!(!announce.sloppy_tcp && !announce.sloppy_sctp);
    assert_eq!(announce.interface, "vips0");
    assert_eq!(announce.drain, Duration::from_millis(250));
    assert_eq!(announce.vips, Some(vec![ip("2001:db8::10")]));
    assert_eq!(announce.track_interfaces, vec!["eth0", "eth1"]);
    assert_eq!(
        announce.addresses(&model.virtual_servers),
        vec![ip("2001:db8::10")]
    );
}

#[test]
fn each_wrong_value_is_reported_at_its_place() {
    // Line 18 is `[announce]`.
    let text = config(
        "[announce]\ninterface = \"a/b\"\ndrain = 3601\nvips = [\"192.0.2.99\", \"x\", \"192.0.2.10\", \"192.0.2.10\"]\ntrack_interface = [\"eth0\", \"eth0\"]\nbmp_listen = \"localhost\"\nport = 1\n",
    );
    assert_eq!(
        errors(&text),
        vec![
            "haldir.toml:19:13: announce interface = \"a/b\": not a Linux interface name; use 1..=15 bytes without spaces or '/' (e.g. \"lo\" or a dummy interface)",
            "haldir.toml:20:9: announce drain = 3601: give 0..=3600 seconds in whole milliseconds (e.g. 5 or 0.5)",
            "haldir.toml:21:9: announce vips entry 192.0.2.99: no [[virtual_server]] has this address, so no health decides its announcement; announce only virtual server addresses",
            "haldir.toml:21:23: announce vips entry \"x\": not an IP address (write the address alone, e.g. \"192.0.2.10\"; it is announced as a /32, /128 for IPv6)",
            "haldir.toml:21:42: announce vips entry 192.0.2.10: listed twice; list each VIP once",
            "haldir.toml:22:28: announce track_interface \"eth0\": listed twice; list each interface once",
            "haldir.toml:23:14: announce bmp_listen = \"localhost\": give an address and port, e.g. \"127.0.0.1:11019\" (FRR: `bmp connect 127.0.0.1 port 11019`)",
            "haldir.toml:24:1: unknown key `port` in [announce]; accepted keys: interface, drain, vips, track_interface, sloppy_tcp, sloppy_sctp, bmp_listen",
        ]
    );
}

#[test]
fn an_announced_vip_may_not_also_be_a_vrrp_address() {
    let vrrp = "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = 100\nvirtual_ipaddress = [\"192.0.2.10/24\"]\n";
    // Listed explicitly: reported at the entry.
    let listed = config(&format!("{vrrp}[announce]\nvips = [\"192.0.2.10\"]\n"));
    assert_eq!(
        errors(&listed),
        vec!["haldir.toml:25:9: announce: 192.0.2.10 is also a virtual_ipaddress of vrrp_instance \"VI_1\"; an address is either moved by VRRP or announced over BGP, not both"]
    );
    // By default: reported at the table, with the way out.
    let default = config(&format!("{vrrp}[announce]\n"));
    assert_eq!(
        errors(&default),
        vec!["haldir.toml:24:1: announce: 192.0.2.10 (a virtual server address, announced by default) is also a virtual_ipaddress of vrrp_instance \"VI_1\"; an address is either moved by VRRP or announced over BGP, not both (list the VIPs to announce with `vips = [...]`)"]
    );
    // Another VIP of the same file is fine: VRRP and BGP side by side.
    let side_by_side = parse(&config(&format!(
        "{vrrp}[announce]\nvips = [\"2001:db8::10\"]\n"
    )));
    assert!(side_by_side.announce.is_some());
}

#[test]
fn nothing_to_announce_is_an_error() {
    let text = "[[virtual_server]]\nfwmark = 7\n[announce]\n";
    assert_eq!(
        errors(text),
        vec!["haldir.toml:3:1: [announce] has nothing to announce: no [[virtual_server]] has an address (fwmark services have none); add a virtual server with `ip` and `port`"]
    );
    let empty = config("[announce]\nvips = []\n");
    assert_eq!(
        errors(&empty),
        vec!["haldir.toml:19:8: announce vips = []: list at least one VIP, or leave `vips` out to announce every virtual server address"]
    );
}

#[test]
fn to_toml_writes_the_table_back_exactly() {
    for extra in [
        "[announce]\n",
        "[announce]\ninterface = \"vips0\"\ndrain = 0.25\nvips = [\"2001:db8::10\", \"192.0.2.10\"]\ntrack_interface = [\"eth1\"]\nsloppy_tcp = false\nbmp_listen = \"[::1]:11019\"\n",
    ] {
        let model = parse(&config(extra));
        let text = to_toml(&model);
        assert!(text.contains("[announce]"), "{text}");
        let again = parse_toml(&text, "converted.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(again.announce, model.announce, "{text}");
    }
}
