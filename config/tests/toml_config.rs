//! End-to-end tests of the TOML front-end and validation through the public
//! API: the documented example parses into the exact model, and every rule
//! reports its message at the exact line:col.

use std::net::IpAddr;
use std::path::Path;

use haldir_config::{
    load_file, parse_toml, AddressFamily, Authentication, Loc, Model, VirtualIp, VrrpInstance,
    VrrpVersion,
};

const FILE: &str = "haldir.toml";

/// The display form of every error `text` produces.
fn errors(text: &str) -> Vec<String> {
    match parse_toml(text, FILE) {
        Ok(model) => panic!("expected errors, got {model:#?}"),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

fn parse(text: &str) -> Model {
    parse_toml(text, FILE).unwrap_or_else(|e| panic!("unexpected errors:\n{e}"))
}

/// One `[[vrrp_instance]]` on line 1 with the required keys on lines 2..=6 in
/// this order: name, interface, virtual_router_id, priority, virtual_ipaddress.
/// An override replaces a required key's value in place (`None` drops the
/// line); other keys are appended from line 7 on, in the order given.
fn instance(overrides: &[(&str, Option<&str>)]) -> String {
    let required = [
        ("name", "\"VI_1\""),
        ("interface", "\"eth0\""),
        ("virtual_router_id", "51"),
        ("priority", "100"),
        ("virtual_ipaddress", "[\"192.0.2.10/24\"]"),
    ];
    let mut text = String::from("[[vrrp_instance]]\n");
    for (key, default) in required {
        let value = match overrides.iter().find(|(k, _)| *k == key) {
            Some((_, value)) => *value,
            None => Some(default),
        };
        if let Some(value) = value {
            text.push_str(&format!("{key} = {value}\n"));
        }
    }
    for (key, value) in overrides {
        if !required.iter().any(|(k, _)| k == key) {
            text.push_str(&format!(
                "{key} = {}\n",
                value.expect("extra keys need a value")
            ));
        }
    }
    text
}

fn loc(file: &str, line: u32, col: u32) -> Loc {
    Loc {
        file: file.into(),
        line,
        col,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn vip(s: &str) -> VirtualIp {
    s.parse().unwrap()
}

// ---- the good cases --------------------------------------------------------

#[test]
fn example_file_parses_into_the_expected_model() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/haldir.toml");
    let model = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let file = path.display().to_string();
    let public = VrrpInstance {
        name: "VI_PUBLIC".into(),
        interface: "eth0".into(),
        virtual_router_id: 51,
        priority: 150,
        advert_int_centis: 100,
        version: VrrpVersion::V2,
        family: AddressFamily::Ipv4,
        virtual_ipaddress: vec![vip("192.0.2.10/24"), vip("192.0.2.11/32")],
        virtual_ipaddress_excluded: Vec::new(),
        virtual_routes: Vec::new(),
        virtual_rules: Vec::new(),
        use_vmac: None,
        vmac_xmit_base: false,
        preempt: true,
        preempt_delay_secs: 0,
        accept: true,
        unicast_src_ip: None,
        unicast_peer: vec![],
        garp_master_delay_secs: 5,
        garp_master_repeat: 5,
        garp_master_refresh_secs: 0,
        garp_master_refresh_repeat: 1,
        garp_interval_millis: 1,
        authentication: Some(Authentication::Pass("secret".into())),
        auth_hmac: None,
        notify: Default::default(),
        track_script: Vec::new(),
        track_interface: Vec::new(),
        track_file: Vec::new(),
        track_process: Vec::new(),
        loc: loc(&file, 13, 1),
    };
    let private = VrrpInstance {
        name: "VI_PRIVATE".into(),
        interface: "eth1".into(),
        virtual_router_id: 52,
        virtual_ipaddress: vec![vip("10.0.0.254/24")],
        virtual_ipaddress_excluded: Vec::new(),
        virtual_routes: Vec::new(),
        virtual_rules: Vec::new(),
        use_vmac: None,
        vmac_xmit_base: false,
        unicast_src_ip: Some(ip("10.0.0.1")),
        unicast_peer: vec![ip("10.0.0.2")],
        garp_interval_millis: 0,
        authentication: None,
        auth_hmac: None,
        loc: loc(&file, 31, 1),
        ..public.clone()
    };
    let public6 = VrrpInstance {
        name: "VI_PUBLIC6".into(),
        advert_int_centis: 50,
        version: VrrpVersion::V3,
        family: AddressFamily::Ipv6,
        virtual_ipaddress: vec![vip("2001:db8::10/64")],
        virtual_ipaddress_excluded: Vec::new(),
        virtual_routes: Vec::new(),
        virtual_rules: Vec::new(),
        use_vmac: None,
        vmac_xmit_base: false,
        garp_interval_millis: 0,
        authentication: None,
        auth_hmac: None,
        loc: loc(&file, 42, 1),
        ..public.clone()
    };
    // The example's virtual servers are checked in tests/virtual_server.rs.
    assert_eq!(model.vrrp_instances, vec![public, private, public6]);
}

#[test]
fn minimal_instance_gets_keepalived_defaults() {
    let model = parse(&instance(&[]));
    assert_eq!(
        model.vrrp_instances,
        vec![VrrpInstance {
            name: "VI_1".into(),
            interface: "eth0".into(),
            virtual_router_id: 51,
            priority: 100,
            advert_int_centis: 100,
            version: VrrpVersion::V2,
            family: AddressFamily::Ipv4,
            virtual_ipaddress: vec![vip("192.0.2.10/24")],
            virtual_ipaddress_excluded: Vec::new(),
            virtual_routes: Vec::new(),
            virtual_rules: Vec::new(),
            use_vmac: None,
            vmac_xmit_base: false,
            preempt: true,
            preempt_delay_secs: 0,
            accept: true,
            unicast_src_ip: None,
            unicast_peer: vec![],
            garp_master_delay_secs: 5,
            garp_master_repeat: 5,
            garp_master_refresh_secs: 0,
            garp_master_refresh_repeat: 1,
            garp_interval_millis: 0,
            authentication: None,
            auth_hmac: None,
            notify: Default::default(),
            track_script: Vec::new(),
            track_interface: Vec::new(),
            track_file: Vec::new(),
            track_process: Vec::new(),
            loc: loc(FILE, 1, 1),
        }]
    );
}

#[test]
fn every_optional_key_is_read() {
    let model = parse(&instance(&[
        ("advert_int", Some("3")),
        ("nopreempt", Some("true")),
        ("preempt_delay", Some("1000")),
        ("accept", Some("false")),
        ("garp_master_delay", Some("0")),
        ("garp_master_repeat", Some("1")),
        ("garp_master_refresh", Some("60.0")),
        ("garp_interval", Some("0.25")),
    ]));
    let vi = &model.vrrp_instances[0];
    assert_eq!(vi.advert_int_centis, 300);
    assert!(!vi.preempt);
    assert_eq!(vi.preempt_delay_secs, 1000);
    assert!(!vi.accept);
    assert_eq!(vi.garp_master_delay_secs, 0);
    assert_eq!(vi.garp_master_repeat, 1);
    assert_eq!(vi.garp_master_refresh_secs, 60);
    assert_eq!(vi.garp_interval_millis, 250);
}

#[test]
fn version_3_accepts_centisecond_advert_intervals() {
    let model = parse(&instance(&[
        ("version", Some("3")),
        ("advert_int", Some("0.05")),
    ]));
    assert_eq!(model.vrrp_instances[0].version, VrrpVersion::V3);
    assert_eq!(model.vrrp_instances[0].advert_int_centis, 5);
    let model = parse(&instance(&[
        ("version", Some("3")),
        ("advert_int", Some("40.95")),
    ]));
    assert_eq!(model.vrrp_instances[0].advert_int_centis, 4095);
}

#[test]
fn ipv6_instances_default_to_version_3_even_when_the_global_default_is_2() {
    let text = format!(
        "[global_defs]\nvrrp_version = 2\n{}",
        instance(&[("virtual_ipaddress", Some("[\"2001:db8::1\"]"))])
    );
    let vi = &parse(&text).vrrp_instances[0];
    assert_eq!(vi.version, VrrpVersion::V3);
    assert_eq!(vi.family, AddressFamily::Ipv6);
    assert_eq!(vi.virtual_ipaddress, vec![vip("2001:db8::1/128")]);
}

#[test]
fn global_vrrp_version_sets_the_default_for_ipv4_instances() {
    let text = format!("[global_defs]\nvrrp_version = 3\n{}", instance(&[]));
    assert_eq!(parse(&text).vrrp_instances[0].version, VrrpVersion::V3);
}

#[test]
fn same_vrid_on_the_same_interface_is_fine_for_different_families() {
    let text = format!(
        "{}{}",
        instance(&[]),
        instance(&[
            ("name", Some("\"VI_6\"")),
            ("virtual_ipaddress", Some("[\"2001:db8::1\"]"))
        ])
    );
    assert_eq!(parse(&text).vrrp_instances.len(), 2);
}

// ---- file-level errors -----------------------------------------------------

#[test]
fn unreadable_file_is_one_error_without_position() {
    let errors = load_file(Path::new("/nonexistent/haldir.toml")).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert!(errors.0[0].loc.is_none());
    let shown = errors.to_string();
    assert!(
        shown.starts_with("/nonexistent/haldir.toml: cannot read the configuration file: "),
        "{shown}"
    );
}

#[test]
fn syntax_error_is_one_error_at_its_position() {
    let text = format!("{}priority = \n", instance(&[]));
    // Line 7 is `priority = ` with no value; a duplicate key would be line 7 too.
    let errors = errors(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("haldir.toml:7:12: TOML syntax error: "),
        "{errors:?}"
    );
}

#[test]
fn duplicate_key_is_a_syntax_error_at_the_second_key() {
    let text = format!("{}priority = 120\n", instance(&[]));
    assert_eq!(
        errors(&text),
        ["haldir.toml:7:1: TOML syntax error: duplicate key"]
    );
}

#[test]
fn file_without_instances_or_virtual_servers_is_an_error() {
    assert_eq!(
        errors("# nothing here\n"),
        ["haldir.toml: nothing to run: add at least one [[vrrp_instance]] or [[virtual_server]] table"]
    );
}

#[test]
fn vrrp_instance_must_be_an_array_of_tables() {
    let text = instance(&[]).replacen("[[vrrp_instance]]", "[vrrp_instance]", 1);
    assert_eq!(
        errors(&text),
        [
            "haldir.toml:1:1: vrrp_instance must be an array of tables: write the header as [[vrrp_instance]] (double brackets), once per instance",
            "haldir.toml: nothing to run: add at least one [[vrrp_instance]] or [[virtual_server]] table",
        ]
    );
}

// ---- shape errors: unknown keys, types, missing keys -----------------------

#[test]
fn unknown_key_names_the_key_its_place_and_the_accepted_keys() {
    let text = instance(&[("prioirty", Some("100"))]);
    assert_eq!(
        errors(&text),
        ["haldir.toml:7:1: unknown key `prioirty` in [[vrrp_instance]]; did you mean `priority`? \
          accepted keys: name, interface, virtual_router_id, priority, advert_int, version, \
          virtual_ipaddress, virtual_ipaddress_excluded, virtual_routes, virtual_rules, use_vmac, vmac_xmit_base, nopreempt, preempt_delay, accept, unicast_src_ip, unicast_peer, \
          garp_master_delay, garp_master_repeat, garp_master_refresh, garp_master_refresh_repeat, garp_interval, authentication, auth_hmac, notify_master, notify_backup, notify_fault, notify_stop, notify, track_script, track_interface, track_file, track_process"]
    );
}

#[test]
fn unknown_keys_at_top_level_in_global_defs_and_in_authentication() {
    let text = format!(
        "log_level = \"debug\"\n[global_defs]\nsmtp_server = \"192.0.2.25\"\n{}",
        instance(&[(
            "authentication",
            Some("{ auth_type = \"PASS\", auth_pass = \"x\", auth_hash = 1 }")
        )])
    );
    assert_eq!(
        errors(&text),
        [
            "haldir.toml:1:1: unknown key `log_level` in the top level; accepted keys: global_defs, vrrp_instance, virtual_server, vrrp_script, track_file, track_process, vrrp_sync_group, announce",
            "haldir.toml:3:1: unknown key `smtp_server` in [global_defs]; accepted keys: router_id, vrrp_version, script_user, notify_timeout, enable_script_security, lvs_sync_daemon, dynamic_interfaces, static_ipaddress, static_routes, static_rules, lvs_timeouts, notify_fifo, notify_fifo_script, vrrp_notify_fifo, vrrp_notify_fifo_script, lvs_notify_fifo, lvs_notify_fifo_script, fifo_write_vrrp_states_on_reload",
            "haldir.toml:10:57: unknown key `auth_hash` in authentication; did you mean `auth_pass`? accepted keys: auth_type, auth_pass",
        ]
    );
}

#[test]
fn wrong_types_are_reported_with_the_value_as_written() {
    let text = instance(&[
        ("priority", Some("\"150\"")),
        ("virtual_ipaddress", Some("[\"192.0.2.10\", 7]")),
        ("nopreempt", Some("\"yes\"")),
        ("advert_int", Some("\"1s\"")),
    ]);
    assert_eq!(
        errors(&text),
        [
            "haldir.toml:5:12: priority = \"150\": expected an integer, found a string",
            "haldir.toml:6:36: virtual_ipaddress: every element must be a string, found an integer `7`",
            "haldir.toml:7:13: nopreempt = \"yes\": expected true or false, found a string",
            "haldir.toml:8:14: advert_int = \"1s\": expected a number of seconds (integer or decimal), found a string",
        ]
    );
}

#[test]
fn missing_required_keys_are_reported_at_the_instance_header() {
    let text = "\n[[vrrp_instance]]\nname = \"VI_1\"\n";
    assert_eq!(
        errors(text),
        [
            "haldir.toml:2:1: vrrp_instance \"VI_1\" is missing `interface`; add e.g. `interface = \"eth0\"`",
            "haldir.toml:2:1: vrrp_instance \"VI_1\" is missing `virtual_router_id`; add e.g. `virtual_router_id = 51`",
            "haldir.toml:2:1: vrrp_instance \"VI_1\" is missing `priority`; add e.g. `priority = 100`",
            "haldir.toml:2:1: vrrp_instance \"VI_1\" is missing `virtual_ipaddress`; add e.g. `virtual_ipaddress = [\"192.0.2.10/24\"]` (an instance without addresses is not supported: its adverts would carry an address count of 0, and RFC 5798 §5.2.5 sets the minimum to 1)",
        ]
    );
}

#[test]
fn a_wrongly_typed_required_key_is_not_also_reported_missing() {
    let text = instance(&[("name", Some("1"))]);
    assert_eq!(
        errors(&text),
        ["haldir.toml:2:8: name = 1: expected a string, found an integer"]
    );
}

#[test]
fn three_different_mistakes_are_all_reported_in_file_order() {
    let text = "\
[[vrrp_instance]]
name = \"VI_1\"
interface = \"eth0\"
virtual_router_id = 0
priority = 300
virtual_ipaddress = [\"192.0.2.10/24\"]
garp_master_repet = 5
";
    assert_eq!(
        errors(text),
        [
            "haldir.toml:4:21: virtual_router_id = 0: must be 1..=255, the same on every router of this virtual router",
            "haldir.toml:5:12: priority = 300: must be 1..=255 (255 only for the address owner)",
            "haldir.toml:7:1: unknown key `garp_master_repet` in [[vrrp_instance]]; did you mean `garp_master_repeat`? \
             accepted keys: name, interface, virtual_router_id, priority, advert_int, version, virtual_ipaddress, \
             virtual_ipaddress_excluded, virtual_routes, virtual_rules, use_vmac, vmac_xmit_base, nopreempt, preempt_delay, accept, unicast_src_ip, unicast_peer, garp_master_delay, garp_master_repeat, \
             garp_master_refresh, garp_master_refresh_repeat, garp_interval, authentication, auth_hmac, notify_master, notify_backup, notify_fault, notify_stop, notify, track_script, track_interface, track_file, track_process",
        ]
    );
}

// ---- ranges ------------------------------------------------------------------

#[test]
fn virtual_router_id_must_be_1_to_255() {
    for bad in ["0", "256", "-1"] {
        assert_eq!(
            errors(&instance(&[("virtual_router_id", Some(bad))])),
            [format!("haldir.toml:4:21: virtual_router_id = {bad}: must be 1..=255, the same on every router of this virtual router")]
        );
    }
}

#[test]
fn priority_must_be_1_to_255() {
    assert_eq!(
        errors(&instance(&[("priority", Some("300"))])),
        ["haldir.toml:5:12: priority = 300: must be 1..=255 (255 only for the address owner)"]
    );
    assert_eq!(
        errors(&instance(&[("priority", Some("0"))])),
        ["haldir.toml:5:12: priority = 0: must be 1..=255 (255 only for the address owner)"]
    );
}

#[test]
fn version_2_advert_int_is_whole_seconds_1_to_255() {
    for bad in ["0.5", "0", "256"] {
        assert_eq!(
            errors(&instance(&[("advert_int", Some(bad))])),
            [format!("haldir.toml:7:14: advert_int = {bad}: VRRP version 2 adverts carry whole seconds 1..=255 (RFC 3768 §5.3.7); use a whole number, or set version = 3 for sub-second intervals")]
        );
    }
}

#[test]
fn version_3_advert_int_is_centiseconds_up_to_40_95() {
    for bad in ["0.005", "0", "41", "-1"] {
        assert_eq!(
            errors(&instance(&[("version", Some("3")), ("advert_int", Some(bad))])),
            [format!("haldir.toml:8:14: advert_int = {bad}: VRRP version 3 adverts carry 0.01..=40.95 seconds in steps of 0.01 (RFC 5798 §5.2.7)")]
        );
    }
}

#[test]
fn version_must_be_2_or_3_in_instance_and_global_defs() {
    let text = format!(
        "[global_defs]\nvrrp_version = 1\n{}",
        instance(&[("version", Some("4"))])
    );
    assert_eq!(
        errors(&text),
        [
            "haldir.toml:2:16: vrrp_version = 1: must be 2 (RFC 3768) or 3 (RFC 5798)",
            "haldir.toml:9:11: version = 4: must be 2 (RFC 3768) or 3 (RFC 5798)",
        ]
    );
}

#[test]
fn preempt_delay_is_whole_seconds_0_to_1000() {
    assert_eq!(
        errors(&instance(&[("preempt_delay", Some("1001"))])),
        ["haldir.toml:7:17: preempt_delay = 1001: must be whole seconds, 0..=1000"]
    );
    assert_eq!(
        errors(&instance(&[("preempt_delay", Some("2.5"))])),
        ["haldir.toml:7:17: preempt_delay = 2.5: must be whole seconds, 0..=1000"]
    );
}

#[test]
fn garp_master_repeat_must_be_at_least_1() {
    assert_eq!(
        errors(&instance(&[("garp_master_repeat", Some("0"))])),
        ["haldir.toml:7:22: garp_master_repeat = 0: must be at least 1 (the number of gratuitous ARPs / NAs per burst)"]
    );
}

#[test]
fn garp_delays_are_whole_non_negative_seconds() {
    assert_eq!(
        errors(&instance(&[
            ("garp_master_delay", Some("-1")),
            ("garp_master_refresh", Some("0.5")),
        ])),
        [
            "haldir.toml:7:21: garp_master_delay = -1: must be whole seconds, 0 or more",
            "haldir.toml:8:23: garp_master_refresh = 0.5: must be whole seconds, 0 or more",
        ]
    );
}

#[test]
fn garp_interval_is_whole_milliseconds() {
    assert_eq!(
        errors(&instance(&[("garp_interval", Some("0.0005"))])),
        ["haldir.toml:7:17: garp_interval = 0.0005: must be 0 or more seconds in steps of 0.001 (whole milliseconds)"]
    );
}

#[test]
fn non_finite_seconds_are_rejected() {
    assert_eq!(
        errors(&instance(&[("garp_interval", Some("nan"))])),
        ["haldir.toml:7:17: garp_interval = nan: must be a finite number of seconds"]
    );
}

// ---- addresses -----------------------------------------------------------------

#[test]
fn virtual_ipaddress_must_not_be_empty() {
    assert_eq!(
        errors(&instance(&[("virtual_ipaddress", Some("[]"))])),
        ["haldir.toml:6:21: virtual_ipaddress = []: list at least one address, e.g. [\"192.0.2.10/24\"]"]
    );
}

#[test]
fn virtual_addresses_must_parse_with_a_valid_prefix_length() {
    let text = instance(&[(
        "virtual_ipaddress",
        Some("[\"192.0.2.300\", \"192.0.2.10/33\", \"2001:db8::1/129\"]"),
    )]);
    assert_eq!(
        errors(&text),
        [
            "haldir.toml:6:22: virtual_ipaddress entry \"192.0.2.300\": not an IP address; write ADDRESS or ADDRESS/PREFIX, e.g. \"192.0.2.10/24\" or \"2001:db8::10/64\"",
            "haldir.toml:6:37: virtual_ipaddress entry \"192.0.2.10/33\": the prefix length of an IPv4 address must be 0..=32",
            "haldir.toml:6:54: virtual_ipaddress entry \"2001:db8::1/129\": the prefix length of an IPv6 address must be 0..=128",
        ]
    );
}

#[test]
fn virtual_addresses_must_all_be_one_family_and_listed_once() {
    let text = instance(&[(
        "virtual_ipaddress",
        Some("[\"192.0.2.10/24\", \"2001:db8::1\", \"192.0.2.10/32\"]"),
    )]);
    assert_eq!(
        errors(&text),
        [
            "haldir.toml:6:39: virtual_ipaddress entry \"2001:db8::1\": is IPv6 but \"192.0.2.10/24\" at haldir.toml:6:22 is IPv4; one instance carries one address family, so put these in a separate vrrp_instance (or list them in virtual_ipaddress_excluded, which adverts do not carry)",
            "haldir.toml:6:54: virtual_ipaddress entry \"192.0.2.10/32\": 192.0.2.10 is already listed at haldir.toml:6:22; list each address once",
        ]
    );
}

#[test]
fn ipv6_requires_version_3() {
    let text = instance(&[
        ("virtual_ipaddress", Some("[\"2001:db8::1/64\"]")),
        ("version", Some("2")),
    ]);
    assert_eq!(
        errors(&text),
        ["haldir.toml:7:11: version = 2: IPv6 virtual addresses need VRRP version 3 (RFC 3768 covers IPv4 only); set version = 3"]
    );
}

#[test]
fn unicast_addresses_must_match_the_virtual_address_family() {
    let text = instance(&[
        ("unicast_src_ip", Some("\"2001:db8::2\"")),
        (
            "unicast_peer",
            Some("[\"10.0.0.2\", \"2001:db8::3\", \"10.0.0.2\", \"peer-b\"]"),
        ),
    ]);
    assert_eq!(
        errors(&text),
        [
            "haldir.toml:7:18: unicast_src_ip = \"2001:db8::2\": is IPv6 but the virtual addresses are IPv4; use an IPv4 address",
            "haldir.toml:8:29: unicast_peer entry \"2001:db8::3\": is IPv6 but the virtual addresses are IPv4; use an IPv4 address",
            "haldir.toml:8:44: unicast_peer entry \"10.0.0.2\": already listed at haldir.toml:8:17; list each peer once",
            "haldir.toml:8:56: unicast_peer entry \"peer-b\": not an IP address (write it without a prefix length)",
        ]
    );
}

// ---- authentication --------------------------------------------------------------

#[test]
fn authentication_is_version_2_only() {
    let text = instance(&[
        ("version", Some("3")),
        (
            "authentication",
            Some("{ auth_type = \"PASS\", auth_pass = \"secret\" }"),
        ),
    ]);
    assert_eq!(
        errors(&text),
        ["haldir.toml:8:18: authentication: VRRP version 3 has no authentication (RFC 5798 §9 removed it); remove it or set version = 2"]
    );
}

#[test]
fn auth_type_must_be_pass() {
    let text = instance(&[(
        "authentication",
        Some("{ auth_type = \"AH\", auth_pass = \"secret\" }"),
    )]);
    assert_eq!(
        errors(&text),
        ["haldir.toml:7:32: auth_type = \"AH\": IPsec AH authentication is not supported (RFC 3768 removed it); use \"PASS\" or remove authentication"]
    );
    let text = instance(&[(
        "authentication",
        Some("{ auth_type = \"pass\", auth_pass = \"secret\" }"),
    )]);
    assert_eq!(
        errors(&text),
        ["haldir.toml:7:32: auth_type = \"pass\": must be \"PASS\" (simple password), the only type haldir supports"]
    );
}

#[test]
fn auth_pass_is_1_to_8_bytes_and_never_echoed() {
    let text = instance(&[(
        "authentication",
        Some("{ auth_type = \"PASS\", auth_pass = \"verysecret\" }"),
    )]);
    assert_eq!(
        errors(&text),
        ["haldir.toml:7:52: auth_pass: is 10 bytes; must be 1..=8 bytes (the VRRPv2 field holds 8; keepalived would silently truncate a longer one)"]
    );
}

#[test]
fn authentication_needs_both_keys() {
    let text = format!(
        "{}[vrrp_instance.authentication]\nauth_type = \"PASS\"\n",
        instance(&[])
    );
    assert_eq!(
        errors(&text),
        ["haldir.toml:7:1: authentication is missing `auth_pass`; add e.g. `auth_pass = \"secret\"`"]
    );
}

// ---- cross-field and cross-instance rules ---------------------------------------------

#[test]
fn address_owner_cannot_be_nopreempt() {
    let text = instance(&[("priority", Some("255")), ("nopreempt", Some("true"))]);
    assert_eq!(
        errors(&text),
        ["haldir.toml:7:13: nopreempt = true: contradicts priority = 255 at haldir.toml:5:12; the address owner always preempts (RFC 5798 §6.1); lower the priority or remove nopreempt"]
    );
}

#[test]
fn instance_names_must_be_unique() {
    let text = format!(
        "{}{}",
        instance(&[]),
        instance(&[("interface", Some("\"eth1\""))])
    );
    assert_eq!(
        errors(&text),
        ["haldir.toml:8:8: name = \"VI_1\": already used by the vrrp_instance at haldir.toml:1:1; give each instance its own name"]
    );
}

#[test]
fn interface_vrid_and_family_must_be_unique() {
    let text = format!(
        "{}{}",
        instance(&[]),
        instance(&[
            ("name", Some("\"VI_2\"")),
            ("virtual_ipaddress", Some("[\"192.0.2.20/24\"]"))
        ])
    );
    assert_eq!(
        errors(&text),
        ["haldir.toml:10:21: virtual_router_id = 51: already used on eth0 for IPv4 by vrrp_instance \"VI_1\" at haldir.toml:1:1; pick a different virtual_router_id"]
    );
}

#[test]
fn interface_name_must_be_a_linux_interface_name() {
    assert_eq!(
        errors(&instance(&[("interface", Some("\"a-very-long-interface0\""))])),
        ["haldir.toml:3:13: interface = \"a-very-long-interface0\": not a Linux interface name; use 1..=15 bytes without spaces or '/'"]
    );
}

#[test]
fn errors_display_one_per_line() {
    let text = instance(&[("priority", Some("0")), ("virtual_router_id", Some("0"))]);
    let shown = parse_toml(&text, FILE).unwrap_err().to_string();
    assert_eq!(shown.lines().count(), 2, "{shown}");
    assert!(shown.lines().all(|line| line.starts_with("haldir.toml:")));
}

#[test]
fn notify_scripts_must_run_as_the_script_user() {
    // Programs that exist pass, with their arguments.
    parse(&instance(&[
        ("notify_master", Some("\"/bin/true master\"")),
        ("notify", Some("\"true\"")),
    ]));
    assert_eq!(
        errors(&instance(&[
            ("notify_master", Some("\"/nonexistent/haldir-notify master\"")),
            ("notify_stop", Some("\"/bin/true 'open\"")),
        ])),
        [
            "haldir.toml:7:17: notify_master = \"/nonexistent/haldir-notify master\": script \"/nonexistent/haldir-notify\" does not exist",
            "haldir.toml:8:15: notify_stop = \"/bin/true 'open\": misc_path \"/bin/true 'open\": unterminated quote or trailing backslash",
        ]
    );
    // An unknown script user is reported once, at script_user.
    let text = format!(
        "[global_defs]\nscript_user = \"no-such-user-here\"\n\n{}",
        instance(&[
            ("notify_master", Some("\"/bin/true\"")),
            ("notify_backup", Some("\"/bin/true\"")),
        ])
    );
    assert_eq!(
        errors(&text),
        ["haldir.toml:2:15: script user \"no-such-user-here\" does not exist; create the account or name another"]
    );
}
