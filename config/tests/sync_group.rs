//! `vrrp_sync_group` and `track_interface`: both front-ends give the same
//! model, `to_toml` writes them back exactly, and every rule is reported at
//! file:line:col.

use haldir_config::{parse_keepalived, parse_toml, to_toml, Loc, Model, NotifyScripts, SyncGroup};

const KEEPALIVED: &str = r#"vrrp_sync_group VG_1 {
    group {
        VI_PUBLIC
        VI_PRIVATE
    }
    notify_master "/bin/true group.sh master"
    notify_fault /bin/true fault.sh
    notify /bin/true notify.sh
}

vrrp_instance VI_PUBLIC {
    interface eth0
    virtual_router_id 51
    priority 150
    virtual_ipaddress {
        192.0.2.10/24
    }
    track_interface {
        eth1
        eth2
    }
}

vrrp_instance VI_PRIVATE {
    interface eth1
    virtual_router_id 52
    priority 150
    virtual_ipaddress {
        10.0.0.1/24
    }
}
"#;

const TOML: &str = r#"[[vrrp_sync_group]]
name = "VG_1"
group = ["VI_PUBLIC", "VI_PRIVATE"]
notify_master = "/bin/true group.sh master"
notify_fault = "/bin/true fault.sh"
notify = "/bin/true notify.sh"

[[vrrp_instance]]
name = "VI_PUBLIC"
interface = "eth0"
virtual_router_id = 51
priority = 150
virtual_ipaddress = ["192.0.2.10/24"]
track_interface = ["eth1", "eth2"]

[[vrrp_instance]]
name = "VI_PRIVATE"
interface = "eth1"
virtual_router_id = 52
priority = 150
virtual_ipaddress = ["10.0.0.1/24"]
"#;

/// `model` with its source locations blanked (`Model::without_locations`).
fn without_locs(model: Model) -> Model {
    model.without_locations()
}

fn toml_errors(text: &str) -> Vec<String> {
    parse_toml(text, "haldir.toml")
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn keepalived_errors(text: &str) -> Vec<String> {
    parse_keepalived(text, "keepalived.conf")
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn both_front_ends_read_the_same_sync_group() {
    let from_toml = parse_toml(TOML, "haldir.toml").unwrap();
    let from_keepalived = parse_keepalived(KEEPALIVED, "keepalived.conf").unwrap();
    assert_eq!(
        from_toml.sync_groups,
        [SyncGroup {
            name: "VG_1".into(),
            members: vec!["VI_PUBLIC".into(), "VI_PRIVATE".into()],
            notify: NotifyScripts {
                master: Some("/bin/true group.sh master".into()),
                fault: Some("/bin/true fault.sh".into()),
                notify: Some("/bin/true notify.sh".into()),
                ..NotifyScripts::default()
            },
            loc: Loc {
                file: "haldir.toml".into(),
                line: 1,
                col: 1,
            },
        }]
    );
    let tracked: Vec<(&str, i32, bool)> = from_toml.vrrp_instances[0]
        .track_interface
        .iter()
        .map(|t| (t.name.as_str(), t.weight, t.reverse))
        .collect();
    assert_eq!(tracked, [("eth1", 0, false), ("eth2", 0, false)]);
    assert!(from_toml.vrrp_instances[1].track_interface.is_empty());
    assert_eq!(without_locs(from_toml), without_locs(from_keepalived));
}

#[test]
fn to_toml_writes_sync_groups_and_tracked_interfaces_back() {
    let model = parse_keepalived(KEEPALIVED, "keepalived.conf").unwrap();
    assert!(haldir_config::not_converted(&model).is_empty());
    let text = to_toml(&model);
    assert!(text.contains("[[vrrp_sync_group]]"), "{text}");
    assert!(
        text.contains("track_interface = [\"eth1\", \"eth2\"]"),
        "{text}"
    );
    let again = parse_toml(&text, "converted.toml").unwrap();
    assert_eq!(without_locs(again), without_locs(model));
}

#[test]
fn a_group_needs_two_defined_members_each_in_one_group() {
    let instances = &TOML[TOML.find("[[vrrp_instance]]").unwrap()..];
    let text = format!(
        "[[vrrp_sync_group]]\nname = \"A\"\ngroup = [\"VI_PUBLIC\", \"VI_NOPE\"]\n\n\
         [[vrrp_sync_group]]\nname = \"B\"\ngroup = [\"VI_PUBLIC\"]\n\n\
         [[vrrp_sync_group]]\nname = \"A\"\ngroup = [\"VI_PRIVATE\", \"VI_PRIVATE\"]\n\n\
         [[vrrp_sync_group]]\ngroup = []\nnotify_master = \"\"\n\n{instances}"
    );
    assert_eq!(
        toml_errors(&text),
        [
            "haldir.toml:3:23: group entry \"VI_NOPE\": no vrrp_instance has this name; defined: VI_PUBLIC, VI_PRIVATE",
            "haldir.toml:7:9: vrrp_sync_group \"B\": group lists 1 instance(s); a sync group needs at least two (keepalived rejects smaller ones too), e.g. [\"VI_1\", \"VI_2\"]",
            "haldir.toml:7:10: group entry \"VI_PUBLIC\": already in vrrp_sync_group \"A\" (listed at haldir.toml:3:10); an instance belongs to at most one sync group, listed once",
            "haldir.toml:10:8: name = \"A\": already used by the vrrp_sync_group at haldir.toml:2:8; give each sync group its own name",
            "haldir.toml:11:24: group entry \"VI_PRIVATE\": already in this group (listed at haldir.toml:11:10); an instance belongs to at most one sync group, listed once",
            "haldir.toml:13:1: this vrrp_sync_group is missing `name`; add e.g. `name = \"VG_1\"`",
            "haldir.toml:14:9: this vrrp_sync_group: group lists 0 instance(s); a sync group needs at least two (keepalived rejects smaller ones too), e.g. [\"VI_1\", \"VI_2\"]",
            "haldir.toml:15:17: notify_master = \"\": give the script to run, e.g. \"/etc/haldir/notify_master.sh\"",
        ]
    );
}

#[test]
fn keepalived_sync_group_errors_have_line_and_column() {
    let text = KEEPALIVED.replace("        VI_PRIVATE\n", "        VI_PRIVATE VI_GONE\n");
    assert_eq!(
        keepalived_errors(&text),
        ["keepalived.conf:4:20: group entry \"VI_GONE\": no vrrp_instance has this name; defined: VI_PUBLIC, VI_PRIVATE"]
    );
    // A keyword keepalived has there but that changes nothing in haldir: a warning.
    let text = KEEPALIVED.replace("    notify_fault", "    smtp_alert\n    notify_fault");
    let (model, warnings) = haldir_config::parse_keepalived_with_warnings(&text, "keepalived.conf");
    assert!(model.is_ok());
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]
            .to_string()
            .starts_with("keepalived.conf:7:5: `smtp_alert` in vrrp_sync_group: accepted but haldir does not act on it"),
        "{warnings:?}"
    );
}

#[test]
fn track_interface_names_are_checked() {
    let text = TOML.replace(
        "track_interface = [\"eth1\", \"eth2\"]",
        "track_interface = [\"eth1\", \"eth1\", \"a/b\"]",
    );
    assert_eq!(
        toml_errors(&text),
        [
            "haldir.toml:14:28: track_interface entry \"eth1\": already listed at haldir.toml:14:20; list each interface once",
            "haldir.toml:14:36: track_interface entry \"a/b\": not a Linux interface name; use 1..=15 bytes without spaces or '/'",
        ]
    );
    let text = KEEPALIVED.replace("        eth2\n", "        eth2 weight 300\n");
    assert_eq!(
        keepalived_errors(&text),
        ["keepalived.conf:20:21: weight = 300: must be -253..=253 (0: the interface down puts the instance in FAULT)"]
    );
}

#[test]
fn weighted_tracked_interfaces_read_the_same_in_both_syntaxes_and_convert_back() {
    // keepalived keeps a sync group member's weights only with sync_group_tracking_weight.
    let conf = KEEPALIVED
        .replace("        eth2\n", "        eth2 weight -20 reverse\n")
        .replace(
            "vrrp_sync_group VG_1 {\n",
            "vrrp_sync_group VG_1 {\n    sync_group_tracking_weight\n",
        );
    let toml = TOML.replace(
        "track_interface = [\"eth1\", \"eth2\"]",
        "track_interface = [\"eth1\", { name = \"eth2\", weight = -20, reverse = true }]",
    );
    let from_conf = parse_keepalived(&conf, "keepalived.conf").unwrap();
    let from_toml = parse_toml(&toml, "haldir.toml").unwrap();
    let eth2 = &from_conf.vrrp_instances[0].track_interface[1];
    assert_eq!(
        (eth2.name.as_str(), eth2.weight, eth2.reverse),
        ("eth2", -20, true)
    );
    assert_eq!(without_locs(from_conf.clone()), without_locs(from_toml));
    let text = to_toml(&from_conf);
    assert!(
        text.contains(
            "track_interface = [\"eth1\", { name = \"eth2\", weight = -20, reverse = true }]"
        ),
        "{text}"
    );
    let again = parse_toml(&text, "converted.toml").unwrap();
    assert_eq!(without_locs(again), without_locs(from_conf));
}

#[test]
fn an_address_owner_tracks_interfaces_only_with_weight_zero() {
    let text = TOML
        .replacen("priority = 150", "priority = 255", 1)
        .replace(
            "track_interface = [\"eth1\", \"eth2\"]",
            "track_interface = [\"eth1\", { name = \"eth2\", weight = 5 }]",
        );
    let errors = toml_errors(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("track_interface \"eth2\" has weight 5: the address owner"),
        "{errors:?}"
    );
}
