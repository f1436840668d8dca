//! keepalived.conf keywords read with keepalived's own semantics (issue 13):
//! settings that do nothing in haldir warn once per keyword per file,
//! global_defs defaults reach every instance, and keepalived's quiet fix-ups
//! (a long `auth_pass`, `state MASTER` with `nopreempt`, no `priority`)
//! happen as in keepalived, each with a warning naming its line.

use haldir_config::{parse_keepalived_with_warnings, Authentication, Model};

const FILE: &str = "keepalived.conf";

/// The model (which must be valid) and the warnings, as `file:line:col: message`.
fn read(text: &str) -> (Model, Vec<String>) {
    let (model, warnings) = parse_keepalived_with_warnings(text, FILE);
    let model = model.unwrap_or_else(|e| panic!("expected a valid file, got:\n{e}\n{text}"));
    (model, warnings.iter().map(ToString::to_string).collect())
}

fn instance(name: &str, vrid: u8, extra: &str) -> String {
    format!(
        "vrrp_instance {name} {{\n    interface eth0\n    virtual_router_id {vrid}\n    priority 100\n    virtual_ipaddress {{\n        192.0.2.{vrid}/24\n    }}\n{extra}}}\n"
    )
}

#[test]
fn mail_settings_are_accepted_with_one_warning_per_keyword_naming_its_line() {
    let text = format!(
        "global_defs {{\n    notification_email {{\n        ops@example.com\n    }}\n    notification_email_from lb@example.com\n    smtp_server 192.0.2.25\n    smtp_connect_timeout 30\n}}\n{}{}",
        instance("VI_1", 1, "    smtp_alert\n"),
        instance("VI_2", 2, "    smtp_alert\n"),
    );
    let (model, warnings) = read(&text);
    assert_eq!(model.vrrp_instances.len(), 2);
    let expected = [
        "keepalived.conf:2:5: `notification_email`",
        "keepalived.conf:5:5: `notification_email_from`",
        "keepalived.conf:6:5: `smtp_server`",
        "keepalived.conf:7:5: `smtp_connect_timeout`",
        // The first smtp_alert only: one warning per keyword per file.
        "keepalived.conf:16:5: `smtp_alert`",
    ];
    assert_eq!(warnings.len(), expected.len(), "{warnings:#?}");
    for (warning, start) in warnings.iter().zip(expected) {
        assert!(warning.starts_with(start), "{warning} should start {start}");
        assert!(
            warning.contains("haldir does not act on it"),
            "{warning} should say it is not acted on"
        );
    }
}

#[test]
fn a_keyword_that_changes_behaviour_and_is_not_implemented_stays_an_error() {
    let text = instance("VI_1", 1, "    dont_track_primary\n");
    let (model, _) = parse_keepalived_with_warnings(&text, FILE);
    let errors = model.unwrap_err().to_string();
    assert!(
        errors.contains(
            "keepalived.conf:8:5: `dont_track_primary` in vrrp_instance is not supported yet"
        ),
        "{errors}"
    );
}

#[test]
fn default_interface_gives_an_instance_without_interface_its_interface() {
    let text = "global_defs {\n    default_interface bond0\n}\nvrrp_instance VI_1 {\n    virtual_router_id 1\n    priority 100\n    virtual_ipaddress {\n        192.0.2.1/24\n    }\n}\n";
    let (model, warnings) = read(text);
    assert_eq!(model.vrrp_instances[0].interface, "bond0");
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn vrrp_strict_makes_no_accept_the_default_but_an_explicit_accept_wins() {
    let text = format!(
        "global_defs {{\n    vrrp_strict\n}}\n{}{}",
        instance("VI_1", 1, ""),
        instance("VI_2", 2, "    accept\n")
    );
    let (model, _) = read(&text);
    assert!(!model.vrrp_instances[0].accept);
    assert!(model.vrrp_instances[1].accept);
    // Without vrrp_strict haldir's default (accept) holds.
    let (model, _) = read(&instance("VI_1", 1, ""));
    assert!(model.vrrp_instances[0].accept);
}

#[test]
fn vrrp_garp_globals_are_defaults_an_instance_can_override() {
    let text = format!(
        "global_defs {{\n    vrrp_garp_master_delay 7\n    vrrp_garp_master_repeat 3\n    vrrp_garp_master_refresh 60\n    vrrp_garp_interval 0.01\n    vrrp_gna_interval 0.01\n}}\n{}{}",
        instance("VI_1", 1, ""),
        instance("VI_2", 2, "    garp_master_repeat 9\n")
    );
    let (model, warnings) = read(&text);
    let [one, two] = &model.vrrp_instances[..] else {
        panic!("two instances");
    };
    assert_eq!(one.garp_master_delay_secs, 7);
    assert_eq!(one.garp_master_repeat, 3);
    assert_eq!(one.garp_master_refresh_secs, 60);
    assert_eq!(one.garp_interval_millis, 10);
    assert_eq!(two.garp_master_repeat, 9);
    assert_eq!(two.garp_master_delay_secs, 7);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn different_garp_and_gna_intervals_are_an_error_as_haldir_has_one() {
    let text = format!(
        "global_defs {{\n    vrrp_garp_interval 0.01\n    vrrp_gna_interval 0.02\n}}\n{}",
        instance("VI_1", 1, "")
    );
    let (model, _) = parse_keepalived_with_warnings(&text, FILE);
    let errors = model.unwrap_err().to_string();
    assert!(
        errors.contains("keepalived.conf:3:5: `vrrp_gna_interval 0.02`: haldir has one interval"),
        "{errors}"
    );
}

#[test]
fn an_auth_pass_longer_than_8_bytes_keeps_its_first_8_with_a_warning() {
    let text = instance(
        "VI_1",
        1,
        "    authentication {\n        auth_type PASS\n        auth_pass 0123456789abcdef\n    }\n",
    );
    let (model, warnings) = read(&text);
    match &model.vrrp_instances[0].authentication {
        Some(Authentication::Pass(pass)) => assert_eq!(pass, "01234567"),
        other => panic!("expected a password, got {other:?}"),
    }
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("keepalived.conf:10:19: auth_pass is 16 bytes; only the first 8"),
        "{warnings:?}"
    );
}

#[test]
fn state_master_clears_nopreempt_and_preempt_delay_with_a_warning_each() {
    let text = instance(
        "VI_1",
        1,
        "    state MASTER\n    nopreempt\n    preempt_delay 30\n",
    );
    let (model, warnings) = read(&text);
    let vi = &model.vrrp_instances[0];
    assert!(vi.preempt, "state MASTER preempts, as in keepalived");
    assert_eq!(vi.preempt_delay_secs, 0);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].starts_with(
        "keepalived.conf:9:5: `nopreempt` is cleared by `state MASTER` at keepalived.conf:8:11"
    ));
    assert!(warnings[1]
        .starts_with("keepalived.conf:10:19: `preempt_delay` is cleared by `state MASTER`"));
    // With state BACKUP both stay.
    let text = instance(
        "VI_1",
        1,
        "    state BACKUP\n    nopreempt\n    preempt_delay 30\n",
    );
    let (model, warnings) = read(&text);
    assert!(!model.vrrp_instances[0].preempt);
    assert_eq!(model.vrrp_instances[0].preempt_delay_secs, 30);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn nopreempt_with_a_value_is_nopreempt_with_a_warning() {
    let (model, warnings) = read(&instance("VI_1", 1, "    nopreempt 1\n"));
    assert!(!model.vrrp_instances[0].preempt);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("keepalived.conf:8:5: `nopreempt 1`"));
}

#[test]
fn an_instance_without_priority_has_keepaliveds_default_100() {
    let text = "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 1\n    virtual_ipaddress {\n        192.0.2.1/24\n    }\n}\n";
    let (model, _) = read(text);
    assert_eq!(model.vrrp_instances[0].priority, 100);
}

#[test]
fn mcast_src_ip_is_the_adverts_source_address_like_unicast_src_ip() {
    let (model, _) = read(&instance("VI_1", 1, "    mcast_src_ip 192.0.2.200\n"));
    assert_eq!(
        model.vrrp_instances[0].unicast_src_ip,
        Some("192.0.2.200".parse().unwrap())
    );
    // Both spellings set one thing: writing both is a duplicate.
    let text = instance(
        "VI_1",
        1,
        "    mcast_src_ip 192.0.2.200\n    unicast_src_ip 192.0.2.201\n",
    );
    let (model, _) = parse_keepalived_with_warnings(&text, FILE);
    assert!(model.unwrap_err().to_string().contains("already set"));
}

#[test]
fn a_utf8_byte_order_mark_is_skipped() {
    let text = format!("\u{feff}! keepalived.conf\n{}", instance("VI_1", 1, ""));
    let (model, _) = read(&text);
    assert_eq!(model.vrrp_instances.len(), 1);
    assert_eq!(
        haldir_config::detect_format(&text, std::path::Path::new("x")),
        haldir_config::Format::Keepalived
    );
}

#[test]
fn instance_and_process_tuning_in_global_defs_warn() {
    let text = format!(
        "global_defs {{\n    instance lb-a\n    max_auto_priority 10\n    data_use_instance\n    vrrp_skip_check_adv_addr\n}}\n{}",
        instance("VI_1", 1, "")
    );
    let (_, warnings) = read(&text);
    assert_eq!(warnings.len(), 4, "{warnings:#?}");
    for (warning, keyword) in warnings.iter().zip([
        "instance",
        "max_auto_priority",
        "data_use_instance",
        "vrrp_skip_check_adv_addr",
    ]) {
        assert!(warning.contains(&format!("`{keyword}` in global_defs: accepted")));
    }
}

#[test]
fn parameters_are_defined_with_dollar_name_and_substituted_also_over_several_lines() {
    let text = "$IFACE=eth1\n$VIP=192.0.2.77\n$EXTRA=nopreempt \\\n    preempt_delay 5\nvrrp_instance VI_1 {\n    interface $IFACE\n    virtual_router_id 73\n    priority 100\n    virtual_ipaddress {\n        ${VIP}/24\n    }\n    $EXTRA\n}\n";
    let (model, _) = read(text);
    let vi = &model.vrrp_instances[0];
    assert_eq!(vi.interface, "eth1");
    assert_eq!(vi.virtual_ipaddress[0].to_string(), "192.0.2.77/24");
    // The multi-line value gave two statements.
    assert!(!vi.preempt);
    assert_eq!(vi.preempt_delay_secs, 5);
}

#[test]
fn a_definition_is_one_after_any_leading_white_space_and_with_crlf_line_ends() {
    // Tab, vertical tab, form feed and a no-break space (Unicode white space) before
    // `$`, as `str::trim_start` allows them.
    let text = "\t$IFACE=eth1\r\n\x0b$VIP=192.0.2.77\r\n\x0c$ID=75\r\n\u{a0}$PRIO=120\r\nvrrp_instance VI_1 {\r\n    interface $IFACE\r\n    virtual_router_id $ID\r\n    priority $PRIO\r\n    virtual_ipaddress {\r\n        ${VIP}/24\r\n    }\r\n}\r\n";
    let (model, _) = read(text);
    let vi = &model.vrrp_instances[0];
    assert_eq!(vi.interface, "eth1");
    assert_eq!(vi.virtual_router_id, 75);
    assert_eq!(vi.priority, 120);
    assert_eq!(vi.virtual_ipaddress[0].to_string(), "192.0.2.77/24");
}

#[test]
fn conditional_lines_apply_only_on_the_router_whose_id_they_name() {
    // keepalived's default configuration id: the host name up to its first dot.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim().split('.').next().unwrap().to_owned();
    let text = format!(
        "vrrp_instance VI_1 {{\n    interface eth0\n    virtual_router_id 74\n    @{host} priority 150\n    @not-{host} priority 50\n    @^{host} nopreempt\n    virtual_ipaddress {{\n        192.0.2.78/24\n    }}\n}}\n"
    );
    let (model, _) = read(&text);
    assert_eq!(model.vrrp_instances[0].priority, 150);
    assert!(
        model.vrrp_instances[0].preempt,
        "@^{host} must not apply here"
    );
}

/// keepalived accepts an instance without `virtual_ipaddress`; haldir cannot
/// advertise one (RFC 5798 §5.2.5: at least one address), so it is an error at
/// the instance's line that gives that reason.
#[test]
fn an_instance_without_addresses_is_an_error_citing_the_rfc_minimum() {
    let text = "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 1\n    priority 100\n    notify_master /bin/true\n}\n";
    let errors = haldir_config::parse_keepalived(text, FILE)
        .expect_err("must fail")
        .to_string();
    assert!(
        errors
            .contains("keepalived.conf:1:1: vrrp_instance \"VI_1\" is missing `virtual_ipaddress`")
            && errors.contains("RFC 5798 §5.2.5 sets the minimum to 1"),
        "{errors}"
    );
}

/// The front validates a `virtual_server` block where it was read unless it runs a script
/// (see `VirtualServerSlot`): a `global_defs` written after it must still reach its
/// scripts, and the errors and duplicates of blocks validated early are reported as any.
#[test]
fn virtual_servers_validated_as_read_keep_file_wide_rules() {
    let misc_first = "virtual_server 192.0.2.10 80 {\n    lb_kind DR\n    real_server 10.0.0.1 80 {\n        MISC_CHECK {\n            misc_path /bin/true\n        }\n    }\n}\nglobal_defs {\n    script_user nobody\n}\n";
    let (model, _) = read(misc_first);
    let check = &model.virtual_servers[0].real_servers[0].checks[0];
    match &check.kind {
        haldir_config::CheckKind::Misc(spec) => assert_eq!(spec.user.as_deref(), Some("nobody")),
        other => panic!("expected a MISC_CHECK, got {other:?}"),
    }

    let plain = |address: &str, weight: u32| {
        format!(
            "virtual_server {address} 80 {{\n    real_server 10.0.0.1 80 {{\n        weight {weight}\n    }}\n}}\n"
        )
    };
    let text = [
        plain("192.0.2.10", 1),
        plain("192.0.2.11", 70000),
        plain("192.0.2.10", 1),
    ]
    .concat();
    let errors: Vec<String> = match haldir_config::parse_keepalived(&text, FILE) {
        Ok(_) => panic!("expected errors in:\n{text}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    };
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors[0].starts_with("keepalived.conf:8:16: weight"),
        "{errors:#?}"
    );
    assert!(
        errors[1].starts_with("keepalived.conf:11:1: virtual_server TCP 192.0.2.10:80 is already defined at keepalived.conf:1:1"),
        "{errors:#?}"
    );
    // The blocks validated as read keep their file order; a group's members follow them, as
    // they always did (a group may be defined after its virtual_server).
    let grouped = format!(
        "{}virtual_server group WEB {{\n    real_server 10.0.0.1 80\n}}\nvirtual_server_group WEB {{\n    192.0.2.21 80\n}}\n{}",
        plain("192.0.2.20", 1),
        plain("192.0.2.22", 1)
    );
    let (model, _) = read(&grouped);
    let order: Vec<String> = model
        .virtual_servers
        .iter()
        .map(|vs| format!("{:?}", vs.address))
        .collect();
    assert_eq!(order.len(), 3, "{order:?}");
    assert!(
        order[0].contains("192.0.2.20")
            && order[1].contains("192.0.2.22")
            && order[2].contains("192.0.2.21"),
        "{order:?}"
    );
}
