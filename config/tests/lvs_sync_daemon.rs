//! `global_defs.lvs_sync_daemon`: keepalived.conf and TOML give the same
//! model, keepalived's defaults (sync id = the instance's VRID) and ranges
//! hold, `to_toml` writes it back exactly.

use haldir_config::{parse_keepalived, parse_toml, to_toml, LvsSyncDaemon};

const INSTANCE_CONF: &str = r#"
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    priority 150
    virtual_ipaddress {
        192.0.2.10/24
    }
}
"#;

const INSTANCE_TOML: &str = r#"
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
priority = 150
virtual_ipaddress = ["192.0.2.10/24"]
"#;

fn conf(line: &str) -> Result<Option<LvsSyncDaemon>, String> {
    let text = format!("global_defs {{\n    {line}\n}}\n{INSTANCE_CONF}");
    parse_keepalived(&text, "keepalived.conf")
        .map(|m| m.lvs_sync_daemon)
        .map_err(|e| e.to_string())
}

fn toml(value: &str) -> Result<Option<LvsSyncDaemon>, String> {
    let text = format!("[global_defs]\nlvs_sync_daemon = {value}\n{INSTANCE_TOML}");
    parse_toml(&text, "haldir.toml")
        .map(|m| m.lvs_sync_daemon)
        .map_err(|e| e.to_string())
}

fn full() -> LvsSyncDaemon {
    LvsSyncDaemon {
        interface: "eth1".into(),
        instance: Some("VI_1".into()),
        sync_id: 7,
        max_len: Some(1472),
        port: Some(8848),
        ttl: Some(1),
        group: Some("224.0.0.81".parse().unwrap()),
        bulk_resync: true,
    }
}

#[test]
fn both_front_ends_read_every_option() {
    let from_conf =
        conf("lvs_sync_daemon eth1 VI_1 id 7 maxlen 1472 port 8848 ttl 1 group 224.0.0.81")
            .unwrap();
    let from_toml = toml(
        r#"{ interface = "eth1", instance = "VI_1", id = 7, maxlen = 1472, port = 8848, ttl = 1, group = "224.0.0.81" }"#,
    )
    .unwrap();
    assert_eq!(from_conf, Some(full()));
    assert_eq!(from_toml, Some(full()));
}

#[test]
fn keepalived_spellings_inst_keyword_and_legacy_syncid() {
    let inst = conf("lvs_sync_daemon eth1 inst VI_1 id 7")
        .unwrap()
        .unwrap();
    assert_eq!(inst.instance.as_deref(), Some("VI_1"));
    assert_eq!(inst.sync_id, 7);
    // `lvs_sync_daemon IF INSTANCE SYNCID`: the pre-`id` form.
    let legacy = conf("lvs_sync_daemon eth1 VI_1 9").unwrap().unwrap();
    assert_eq!(legacy.sync_id, 9);
}

#[test]
fn sync_id_defaults_to_the_instance_vrid_else_zero() {
    let with_instance = conf("lvs_sync_daemon eth1 VI_1").unwrap().unwrap();
    assert_eq!(with_instance.sync_id, 51);
    assert_eq!(with_instance.max_len, None);
    assert_eq!(with_instance.group, None);
    let without = conf("lvs_sync_daemon eth1").unwrap().unwrap();
    assert_eq!(without.instance, None);
    assert_eq!(without.sync_id, 0);
    let toml_default = toml(r#"{ interface = "eth1", instance = "VI_1" }"#)
        .unwrap()
        .unwrap();
    assert_eq!(toml_default.sync_id, 51);
}

#[test]
fn absent_means_none() {
    let model = parse_toml(INSTANCE_TOML, "haldir.toml").unwrap();
    assert_eq!(model.lvs_sync_daemon, None);
}

#[test]
fn the_instance_must_exist() {
    let error = conf("lvs_sync_daemon eth1 VI_9").unwrap_err();
    assert!(error.contains("keepalived.conf:2:"), "{error}");
    assert!(
        error.contains("\"VI_9\"") && error.contains("VI_1"),
        "{error}"
    );
    let error = toml(r#"{ interface = "eth1", instance = "VI_9" }"#).unwrap_err();
    assert!(error.contains("no vrrp_instance"), "{error}");
}

#[test]
fn ranges_and_names_are_checked() {
    for (line, what) in [
        ("lvs_sync_daemon eth1 VI_1 id 256", "id = 256"),
        ("lvs_sync_daemon eth1 VI_1 maxlen 0", "maxlen = 0"),
        ("lvs_sync_daemon eth1 VI_1 maxlen 65508", "maxlen = 65508"),
        ("lvs_sync_daemon eth1 VI_1 port 0", "port = 0"),
        ("lvs_sync_daemon eth1 VI_1 port 65536", "port = 65536"),
        ("lvs_sync_daemon eth1 VI_1 ttl 0", "ttl = 0"),
        ("lvs_sync_daemon eth1 VI_1 ttl 256", "ttl = 256"),
        (
            "lvs_sync_daemon eth1 VI_1 group 10.0.0.1",
            "not a multicast",
        ),
        (
            "lvs_sync_daemon eth1 VI_1 group nonsense",
            "not an IP address",
        ),
        (
            "lvs_sync_daemon a-very-long-interface-name VI_1",
            "not a Linux interface name",
        ),
        (
            "lvs_sync_daemon eth1 VI_1 colour blue",
            "unknown lvs_sync_daemon option",
        ),
        ("lvs_sync_daemon eth1 VI_1 id", "needs a value"),
        ("lvs_sync_daemon", "needs an interface"),
    ] {
        let error = conf(line).expect_err(line);
        assert!(error.contains(what), "{line}: {error}");
    }
    let error = toml(r#"{ interface = "eth1", port = 70000 }"#).unwrap_err();
    assert!(error.contains("port = 70000"), "{error}");
    let error = toml(r#"{ instance = "VI_1" }"#).unwrap_err();
    assert!(error.contains("needs an interface"), "{error}");
    let error = toml(r#"{ interface = "eth1", prt = 1 }"#).unwrap_err();
    assert!(error.contains("did you mean `port`"), "{error}");
    let error = toml(r#""eth1""#).unwrap_err();
    assert!(error.contains("expected a table"), "{error}");
}

#[test]
fn to_toml_writes_it_back() {
    let text = format!(
        "global_defs {{\n    lvs_sync_daemon eth1 VI_1 id 7 maxlen 1472 port 8848 ttl 1 group 224.0.0.81\n}}\n{INSTANCE_CONF}"
    );
    let model = parse_keepalived(&text, "keepalived.conf").unwrap();
    let written = to_toml(&model);
    assert!(
        written.contains(
            r#"lvs_sync_daemon = { interface = "eth1", instance = "VI_1", id = 7, maxlen = 1472, port = 8848, ttl = 1, group = "224.0.0.81" }"#
        ),
        "{written}"
    );
    let back = parse_toml(&written, "back.toml").unwrap();
    assert_eq!(back.lvs_sync_daemon, model.lvs_sync_daemon);
    // Only the defaults: id written resolved, the kernel's defaults left out.
    let minimal = to_toml(
        &parse_keepalived(
            &format!("global_defs {{\n    lvs_sync_daemon eth1\n}}\n{INSTANCE_CONF}"),
            "k.conf",
        )
        .unwrap(),
    );
    assert!(
        minimal.contains(r#"lvs_sync_daemon = { interface = "eth1", id = 0 }"#),
        "{minimal}"
    );
    let back = parse_toml(&minimal, "back.toml").unwrap();
    assert_eq!(back.lvs_sync_daemon.unwrap().instance, None);
}

#[test]
fn bulk_resync_is_on_by_default_and_turns_off_in_both_formats_and_survives_convert() {
    assert!(
        conf("lvs_sync_daemon eth1 VI_1")
            .unwrap()
            .unwrap()
            .bulk_resync
    );
    assert!(
        toml(r#"{ interface = "eth1" }"#)
            .unwrap()
            .unwrap()
            .bulk_resync
    );
    let off = conf("lvs_sync_daemon eth1 VI_1 id 7 bulk_resync off")
        .unwrap()
        .unwrap();
    assert!(!off.bulk_resync);
    assert!(
        conf("lvs_sync_daemon eth1 VI_1 bulk_resync on")
            .unwrap()
            .unwrap()
            .bulk_resync
    );
    let from_toml =
        toml(r#"{ interface = "eth1", instance = "VI_1", id = 7, bulk_resync = false }"#)
            .unwrap()
            .unwrap();
    assert_eq!(from_toml, off);
    let error = conf("lvs_sync_daemon eth1 VI_1 bulk_resync maybe").unwrap_err();
    assert!(error.contains("use on or off"), "{error}");
    let text = format!(
        "global_defs {{\n    lvs_sync_daemon eth1 VI_1 bulk_resync off\n}}\n{INSTANCE_CONF}"
    );
    let model = parse_keepalived(&text, "keepalived.conf").unwrap();
    let written = to_toml(&model);
    assert!(written.contains("bulk_resync = false"), "{written}");
    let back = parse_toml(&written, "back.toml").unwrap();
    assert_eq!(back.lvs_sync_daemon, model.lvs_sync_daemon);
}

/// keepalived's old syntax: `lvs_sync_daemon_interface IF` inside a
/// vrrp_instance is `lvs_sync_daemon IF THAT_INSTANCE` (keepalived's
/// vrrp_parser.c), read with a deprecation warning naming its line.
#[test]
fn old_instance_keyword_is_the_sync_daemon_of_that_instance_with_a_warning() {
    let text = "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    lvs_sync_daemon_interface eth1\n    virtual_ipaddress {\n        192.0.2.10/24\n    }\n}\n";
    let (model, warnings) = haldir_config::parse_keepalived_with_warnings(text, "keepalived.conf");
    let sync = model
        .unwrap_or_else(|e| panic!("{e}"))
        .lvs_sync_daemon
        .expect("a sync daemon");
    assert_eq!(sync.interface, "eth1");
    assert_eq!(sync.instance.as_deref(), Some("VI_1"));
    assert_eq!(sync.sync_id, 51);
    let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert!(
        warnings.iter().any(|w| w.starts_with(
            "keepalived.conf:4:5: `lvs_sync_daemon_interface` in a vrrp_instance is deprecated"
        )),
        "{warnings:?}"
    );
}

/// keepalived keeps global_defs' `lvs_sync_daemon`; the instance's old
/// keyword is then ignored, with a warning.
#[test]
fn global_sync_daemon_wins_over_the_old_instance_keyword() {
    let text = format!(
        "global_defs {{\n    lvs_sync_daemon eth0 VI_1\n}}\n{}",
        INSTANCE_CONF.replace(
            "priority 150",
            "priority 150\n    lvs_sync_daemon_interface eth9"
        )
    );
    let (model, warnings) = haldir_config::parse_keepalived_with_warnings(&text, "keepalived.conf");
    let sync = model.unwrap().lvs_sync_daemon.unwrap();
    assert_eq!(sync.interface, "eth0");
    assert!(
        warnings.iter().any(|w| w
            .to_string()
            .contains("is ignored: global_defs sets lvs_sync_daemon")),
        "{warnings:?}"
    );
}

/// keepalived has no `lvs_sync_daemon_interface` in global_defs: an error
/// that names both spellings keepalived reads.
#[test]
fn old_keyword_in_global_defs_is_an_error_naming_the_spellings() {
    let error = conf("lvs_sync_daemon_interface eth1").expect_err("must fail");
    assert!(
        error.contains("keepalived reads it only inside a vrrp_instance"),
        "{error}"
    );
}
