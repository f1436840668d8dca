//! The keepalived.conf front-end through the public API: every corpus file
//! in `tests/keepalived/` gives the same model as its TOML twin and survives
//! `to_toml` → `parse_toml`; syntax, keyword and value errors are reported at
//! file:line:col (naming included files); format detection.

use std::path::{Path, PathBuf};

use haldir_config::{
    detect_format, load_file, load_file_as, not_converted, parse_keepalived, parse_toml, to_toml,
    Format, Model, TrackFileInit, TrackedFile, MAX_INCLUDE_DEPTH,
};

const FILE: &str = "keepalived.conf";

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keepalived")
}

/// The top-level corpus files (the `.conf` files with a `.toml` twin).
fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "corpus missing: {files:?}");
    files
}

/// `model` with its source locations blanked (`Model::without_locations`).
fn without_locs(model: Model) -> Model {
    model.without_locations()
}

fn keepalived(text: &str) -> Model {
    parse_keepalived(text, FILE).unwrap_or_else(|e| panic!("unexpected errors:\n{e}"))
}

/// The display form of every error keepalived.conf `text` produces.
fn errors(text: &str) -> Vec<String> {
    match parse_keepalived(text, FILE) {
        Ok(model) => panic!("expected errors, got {model:#?}"),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

fn toml_errors(text: &str) -> Vec<String> {
    match parse_toml(text, "haldir.toml") {
        Ok(model) => panic!("expected errors, got {model:#?}"),
        Err(errors) => errors.0.iter().map(|e| e.message.clone()).collect(),
    }
}

/// A valid instance with `extra` lines added inside its block (from line 7 on).
fn instance(extra: &str) -> String {
    format!(
        "vrrp_instance VI_1 {{\n    interface eth0\n    virtual_router_id 51\n    priority 100\n    virtual_ipaddress {{ 192.0.2.10/24 }}\n    # extra lines follow\n{extra}}}\n"
    )
}

// ---- the corpus --------------------------------------------------------------

#[test]
fn every_corpus_file_equals_its_toml_twin() {
    for conf in corpus() {
        let from_conf = load_file_as(&conf, Format::Keepalived)
            .unwrap_or_else(|e| panic!("{}:\n{e}", conf.display()));
        let twin = conf.with_extension("toml");
        let from_toml = load_file_as(&twin, Format::Toml)
            .unwrap_or_else(|e| panic!("{}:\n{e}", twin.display()));
        assert_eq!(
            without_locs(from_conf),
            without_locs(from_toml),
            "{} and its twin differ",
            conf.display()
        );
    }
}

#[test]
fn every_corpus_file_round_trips_through_toml() {
    for conf in corpus() {
        let model = load_file(&conf).unwrap_or_else(|e| panic!("{}:\n{e}", conf.display()));
        assert_eq!(
            not_converted(&model),
            Vec::<String>::new(),
            "{}",
            conf.display()
        );
        let toml = to_toml(&model);
        let again = parse_toml(&toml, "converted.toml").unwrap_or_else(|e| {
            panic!(
                "{}: converted TOML is invalid:\n{e}\n{toml}",
                conf.display()
            )
        });
        assert_eq!(
            without_locs(again),
            without_locs(model),
            "{} changed in the round trip:\n{toml}",
            conf.display()
        );
    }
}

#[test]
fn corpus_files_are_detected_by_content() {
    for conf in corpus() {
        let text = std::fs::read_to_string(&conf).unwrap();
        assert_eq!(
            detect_format(&text, &conf),
            Format::Keepalived,
            "{}",
            conf.display()
        );
        let twin = conf.with_extension("toml");
        let text = std::fs::read_to_string(&twin).unwrap();
        assert_eq!(
            detect_format(&text, &twin),
            Format::Toml,
            "{}",
            twin.display()
        );
        // Content decides, not the name.
        assert_eq!(detect_format(&text, Path::new("x.conf")), Format::Toml);
    }
}

#[test]
fn the_dr_director_reads_into_the_expected_values() {
    let model = load_file(&corpus_dir().join("dr_director.conf")).unwrap();
    assert_eq!(model.router_id.as_deref(), Some("lvs-a"));
    let public = &model.vrrp_instances[0];
    assert_eq!(public.name, "VI_PUBLIC");
    assert_eq!(public.priority, 150);
    assert_eq!(public.garp_interval_millis, 1);
    assert_eq!(public.loc.line, 9);
    assert_eq!(public.loc.col, 1);
    let vs = &model.virtual_servers[0];
    assert_eq!(vs.loc.line, 43);
    assert_eq!(vs.real_servers[1].upper_threshold, 1000);
    assert_eq!(vs.real_servers[1].loc.line, 54);
    assert_eq!(vs.real_servers[1].loc.col, 5);
}

#[test]
fn notify_commands_keep_their_words() {
    let model = load_file(&corpus_dir().join("notify.conf")).unwrap();
    let notify = &model.vrrp_instances[0].notify;
    assert_eq!(
        notify.master.as_deref(),
        Some("/bin/true to-master.sh VI_N")
    );
    assert_eq!(
        notify.backup.as_deref(),
        Some("/bin/true to-backup.sh --quiet")
    );
    assert_eq!(
        notify.fault.as_deref(),
        Some("/bin/true fault.sh \"two words\"")
    );
    assert_eq!(model.scripts.user.as_deref(), Some("nobody"));
    assert_eq!(model.scripts.group.as_deref(), Some("nogroup"));
    assert_eq!(model.scripts.notify_timeout.as_millis(), 12_500);
}

#[test]
fn locations_in_included_files_name_those_files() {
    let model = load_file(&corpus_dir().join("includes.conf")).unwrap();
    let instance = &model.vrrp_instances[0];
    assert!(
        instance
            .loc
            .file
            .name()
            .ends_with("tests/keepalived/include.d/vrrp.conf"),
        "{}",
        instance.loc
    );
    assert_eq!((instance.loc.line, instance.loc.col), (1, 1));
    let rs = &model.virtual_servers[0].real_servers[1];
    assert!(
        rs.loc.file.name().ends_with("include.d/real/b.conf"),
        "{}",
        rs.loc
    );
}

// ---- syntax ------------------------------------------------------------------

#[test]
fn comments_quotes_and_crlf() {
    let text = "! comment\r\nvrrp_instance VI_1 { # comment\r\n interface eth0!comment\r\n virtual_router_id 51\r\n priority 100\r\n authentication {\r\n  auth_type PASS\r\n  auth_pass \"a b#c\"\r\n }\r\n virtual_ipaddress {\r\n  192.0.2.10\r\n }\r\n}\r\n";
    let model = keepalived(text);
    let instance = &model.vrrp_instances[0];
    assert_eq!(instance.interface, "eth0");
    assert_eq!(
        instance.authentication,
        Some(haldir_config::Authentication::Pass("a b#c".into()))
    );
}

#[test]
fn a_missing_closing_brace_is_reported_at_the_opening_one() {
    let text = "vrrp_instance VI_1 {\n    interface eth0\n    virtual_ipaddress {\n        192.0.2.10\n}\n";
    assert_eq!(
        errors(text),
        ["keepalived.conf:1:20: this block of `vrrp_instance` is never closed; add `}`"]
    );
}

#[test]
fn a_stray_closing_brace_is_reported() {
    let text = format!("{}}}\n", instance(""));
    assert_eq!(
        errors(&text),
        ["keepalived.conf:8:1: unexpected `}`: no block is open here; remove it"]
    );
}

#[test]
fn a_block_without_keyword_and_an_unclosed_quote_are_reported() {
    let text = "{\n}\nglobal_defs {\n    router_id \"lvs\n}\n";
    assert_eq!(
        errors(text),
        [
            "keepalived.conf:4:15: this quote is never closed; end the string with `\"` on the same line",
            "keepalived.conf:1:1: unexpected `{`: a block must follow a keyword, e.g. `vrrp_instance VI_1 {`",
        ]
    );
}

#[test]
fn a_seq_line_is_rejected_and_an_undefined_parameter_is_an_error() {
    let text = "~SEQ(VR, 1, 1, 3) vrrp_version 3\nglobal_defs {\n    router_id $NAME\n}\n";
    let errors = errors(text);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("keepalived.conf:1:1: `~SEQ` sequences are not supported"),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with("keepalived.conf:3:15: `$NAME` is not defined"),
        "{errors:?}"
    );
}

// ---- keywords ----------------------------------------------------------------

#[test]
fn an_unknown_keyword_is_named_with_its_line_and_column() {
    let text = instance("    prioirty 100\n    use_ipvlan\n");
    assert_eq!(
        errors(&text),
        [
            "keepalived.conf:7:5: unknown keyword `prioirty` in vrrp_instance: haldir does not implement it; did you mean `priority`? keywords haldir reads here: state, interface, virtual_router_id, priority, advert_int, version, virtual_ipaddress, virtual_ipaddress_excluded, virtual_routes, virtual_rules, use_vmac, vmac_xmit_base, nopreempt, preempt_delay, accept, no_accept, unicast_src_ip, unicast_peer, garp_master_delay, garp_master_repeat, garp_master_refresh, garp_master_refresh_repeat, garp_interval, authentication, auth_hmac, notify_master, notify_backup, notify_fault, notify_stop, notify, track_interface, track_script, track_file, track_process, mcast_src_ip, lvs_sync_daemon_interface",
            "keepalived.conf:8:5: `use_ipvlan` in vrrp_instance is not supported yet: ipvlan interfaces are not implemented; remove it for now",
        ]
    );
}

#[test]
fn static_entries_are_read_and_an_address_names_its_interface() {
    let text = format!(
        "static_ipaddress {{\n    192.0.2.1/24 dev eth1 scope link\n}}\nstatic_routes {{\n    10.98.0.0/16 via 192.0.2.254\n}}\nstatic_rules {{\n    from 192.0.2.1/32 table 9\n}}\n{}",
        instance("")
    );
    let model = keepalived(&text);
    assert_eq!(
        model.statics.addresses[0].to_string(),
        "192.0.2.1/24 dev eth1 scope link"
    );
    assert_eq!(
        model.statics.routes[0].to_string(),
        "10.98.0.0/16 via 192.0.2.254"
    );
    assert_eq!(
        model.statics.rules[0].to_string(),
        "from 192.0.2.1/32 table 9"
    );
    let no_dev = text.replace(" dev eth1", "");
    assert_eq!(
        errors(&no_dev),
        ["keepalived.conf:2:5: static_ipaddress entry \"192.0.2.1/24 scope link\": name its interface with `dev IF`"]
    );
}

#[test]
fn track_process_reads_keepalived_defaults_and_rejects_what_could_never_match() {
    let block = "vrrp_track_process web {\n    process /usr/sbin/nginx -g \"daemon off;\"\n    param_match partial\n    quorum 2\n    delay 0.5\n    fork_delay 2\n}\n";
    let text = format!(
        "{block}{}",
        instance("    track_process {\n        web weight -20 reverse\n    }\n")
    );
    let model = keepalived(&text);
    let p = &model.track_processes[0];
    assert_eq!(p.process, "/usr/sbin/nginx");
    assert_eq!(p.params, ["-g", "daemon off;"]);
    assert_eq!(p.param_match, Some(haldir_config::ParamMatch::Partial));
    assert!(p.full_command, "parameters match the command line");
    assert_eq!(
        (p.weight, p.quorum, p.quorum_max),
        (0, 2, None),
        "keepalived: weight 0"
    );
    assert_eq!(
        p.fork_delay,
        std::time::Duration::from_secs(2),
        "fork_delay beats delay"
    );
    assert_eq!(p.terminate_delay, std::time::Duration::from_millis(500));
    let tracked = &model.vrrp_instances[0].track_process[0];
    assert_eq!((tracked.weight, tracked.reverse), (-20, true));

    let none_running = format!(
        "vrrp_track_process gone {{\n    process old_daemon\n    quorum_max 0\n}}\n{}",
        instance("    track_process {\n        gone\n    }\n")
    );
    let gone = &keepalived(&none_running).track_processes[0];
    assert_eq!(
        (gone.quorum, gone.quorum_max),
        (0, Some(0)),
        "up while none runs"
    );

    let long = format!(
        "vrrp_track_process long {{\n    process a_process_name_of_20\n    quorum 3\n    quorum_max 2\n}}\n{}",
        instance("    track_process {\n        long\n    }\n")
    );
    assert_eq!(
        errors(&long),
        [
            "keepalived.conf:4:16: quorum_max = 2: is below quorum = 3; no number of processes would be up",
        ]
    );
    let long = long.replace("    quorum 3\n", "");
    assert_eq!(
        errors(&long),
        [
            "keepalived.conf:2:5: process \"a_process_name_of_20\": a process name holds at most 15 characters (/proc/PID/comm), so this would never match; add `full_command` to match the command line",
        ]
    );
    assert!(
        keepalived(&long.replace("    quorum_max 2\n", "    full_command\n")).track_processes[0]
            .full_command
    );
}

#[test]
fn notify_fifos_are_read_and_a_wrong_one_is_an_error() {
    let with = |globals: &str| format!("global_defs {{\n{globals}}}\n{}", instance(""));
    let model = keepalived(&with(
        "    notify_fifo /run/k.fifo root root\n    notify_fifo_script \"/bin/true --x\" nobody\n    lvs_notify_fifo /run/lvs.fifo\n    fifo_write_vrrp_states_on_reload\n",
    ));
    let fifos = &model.notify_fifos;
    assert!(fifos.write_states_on_reload);
    assert_eq!(fifos.fifos.len(), 2);
    let all = &fifos.fifos[0];
    assert_eq!(all.events, haldir_config::FifoEvents::All);
    assert_eq!(
        (all.path.as_str(), all.user.as_deref(), all.group.as_deref()),
        ("/run/k.fifo", Some("root"), Some("root"))
    );
    let script = all.script.as_ref().unwrap();
    assert_eq!(
        (script.command.as_str(), script.user.as_deref()),
        ("/bin/true --x", Some("nobody"))
    );
    assert_eq!(fifos.fifos[1].events, haldir_config::FifoEvents::Lvs);
    // And back through TOML: the same model.
    let toml = haldir_config::to_toml(&model);
    let again = haldir_config::parse_toml(&toml, "haldir.toml").unwrap();
    assert_eq!(again.notify_fifos, model.notify_fifos, "{toml}");

    assert_eq!(
        errors(&with("    notify_fifo run/k.fifo\n")),
        ["keepalived.conf:2:17: notify_fifo \"run/k.fifo\": give the FIFO's absolute path, e.g. /run/haldir/notify.fifo"]
    );
    assert_eq!(
        errors(&with("    notify_fifo /run/k.fifo\n    vrrp_notify_fifo /run/k.fifo\n")),
        ["keepalived.conf:3:22: vrrp_notify_fifo \"/run/k.fifo\": the FIFO at keepalived.conf:2:17 has this path; give each FIFO its own"]
    );
    assert_eq!(
        errors(&with("    vrrp_notify_fifo_script /bin/true\n")),
        ["keepalived.conf:2:29: vrrp_notify_fifo_script: it reads `vrrp_notify_fifo`, which is not set; add `vrrp_notify_fifo /run/haldir/notify.fifo`"]
    );
    assert_eq!(
        errors(&with("    notify_fifo /run/k.fifo no_such_user_here\n")),
        ["keepalived.conf:2:29: the FIFO's owner \"no_such_user_here\" does not exist; create the account or name another"]
    );
}

#[test]
fn lvs_notify_and_quorum_scripts_are_read_and_a_missing_one_is_an_error() {
    let text = "virtual_server 192.0.2.1 80 {\n    lb_kind DR\n    quorum_up \"/bin/true up\"\n    quorum_down /bin/true\n    real_server 10.0.0.1 80 {\n        notify_up /bin/true\n        notify_down \"/bin/true down now\"\n    }\n}\n";
    let model = keepalived(text);
    let vs = &model.virtual_servers[0];
    assert_eq!(vs.quorum_scripts.up(), Some("/bin/true up"));
    assert_eq!(vs.quorum_scripts.down(), Some("/bin/true"));
    let rs = &vs.real_servers[0];
    assert_eq!(rs.notify.up(), Some("/bin/true"));
    assert_eq!(rs.notify.down(), Some("/bin/true down now"));
    let again = haldir_config::parse_toml(&haldir_config::to_toml(&model), "haldir.toml").unwrap();
    assert_eq!(again.without_locations(), model.clone().without_locations());
    assert_eq!(
        errors(&text.replace("notify_up /bin/true", "notify_up /no/such/script")),
        ["keepalived.conf:6:19: notify_up = \"/no/such/script\": script \"/no/such/script\" does not exist"]
    );
}

#[test]
fn sync_group_members_lose_their_tracking_weights_as_in_keepalived_unless_the_group_keeps_them() {
    let text = |group_extra: &str| {
        format!(
            "vrrp_script chk {{\n    script /bin/true\n    weight -10\n}}\nvrrp_script plain {{\n    script /bin/true\n}}\ntrack_file f {{\n    file /run/f\n}}\nvrrp_sync_group VG {{\n    group {{\n        VI_1\n        VI_2\n    }}\n{group_extra}}}\nvrrp_instance VI_2 {{\n    interface eth1\n    virtual_router_id 52\n    virtual_ipaddress {{ 198.51.100.10/24 }}\n}}\n{}",
            instance("    track_interface {\n        eth1 weight -20\n    }\n    track_script {\n        chk\n        plain\n    }\n    track_file {\n        f\n    }\n")
        )
    };
    let (model, warnings) = haldir_config::parse_keepalived_with_warnings(&text(""), FILE);
    let model = model.unwrap();
    let vi = model
        .vrrp_instances
        .iter()
        .find(|i| i.name == "VI_1")
        .unwrap();
    assert_eq!(vi.track_interface[0].weight, 0, "weight taken as 0");
    let scripts: Vec<&str> = vi.track_script.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(scripts, ["plain"], "the weighted script is ignored");
    assert_eq!(vi.track_file[0].weight, 0, "default weight 1 taken as 0");
    let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings
            .iter()
            .all(|w| w.contains("without `sync_group_tracking_weight`")),
        "{warnings:?}"
    );

    let (kept, warnings) = haldir_config::parse_keepalived_with_warnings(
        &text("    sync_group_tracking_weight\n"),
        FILE,
    );
    let kept = kept.unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let vi = kept
        .vrrp_instances
        .iter()
        .find(|i| i.name == "VI_1")
        .unwrap();
    assert_eq!(vi.track_interface[0].weight, -20);
    assert_eq!(vi.track_script.len(), 2);
    assert_eq!(vi.track_file[0].weight, 1);
}

#[test]
fn an_unimplemented_top_level_block_is_an_error_and_a_mail_setting_a_warning() {
    let text = format!(
        "global_defs {{\n    smtp_server 192.0.2.25\n}}\nbfd_instance bfd1 {{\n    neighbor_ip 192.0.2.1\n}}\n{}",
        instance("")
    );
    let (model, warnings) = haldir_config::parse_keepalived_with_warnings(&text, FILE);
    let errors: Vec<String> = model
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(
            "keepalived.conf:4:1: `bfd_instance` in the top level is not supported yet"
        ),
        "{errors:?}"
    );
    let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("keepalived.conf:2:5: `smtp_server` in global_defs: accepted but haldir does not act on it"),
        "{warnings:?}"
    );
}

#[test]
fn health_keywords_are_read() {
    // Once "not supported yet"; now read like the TOML keys.
    let text = "vrrp_script chk {\n    script /bin/true\n    interval 1\n}\n\n\
                virtual_server 192.0.2.10 80 {\n    real_server 10.0.0.1 80 {\n        TCP_CHECK {\n            connect_timeout 3\n        }\n    }\n}\n";
    let model = keepalived(text);
    assert_eq!(model.vrrp_scripts.len(), 1);
    assert_eq!(model.vrrp_scripts[0].name, "chk");
    assert_eq!(model.virtual_servers[0].real_servers[0].checks.len(), 1);
}

#[test]
fn a_keyword_set_twice_is_an_error() {
    let text = instance("    priority 120\n    accept\n    no_accept\n");
    assert_eq!(
        errors(&text),
        [
            "keepalived.conf:7:5: `priority` is already set at keepalived.conf:4:5; keep one",
            "keepalived.conf:9:5: `no_accept` is already set at keepalived.conf:8:5; keep one",
        ]
    );
}

#[test]
fn wrong_shapes_of_values() {
    let text = instance(
        "    advert_int fast\n    nopreempt yes\n    preempt_delay\n    garp_master_repeat 1 2\n    unicast_peer {\n        10.0.0.2 min_ttl 2\n    }\n    state ACTIVE\n",
    );
    assert_eq!(
        errors(&text),
        [
            "keepalived.conf:7:16: `advert_int fast`: expected a number of seconds (integer or decimal)",
            "keepalived.conf:9:5: `preempt_delay` needs a value, e.g. `preempt_delay 5`",
            "keepalived.conf:10:26: `garp_master_repeat 1 2`: `garp_master_repeat` takes one value; remove `2`",
            "keepalived.conf:12:18: unicast_peer entry `10.0.0.2 min_ttl 2`: `min_ttl` and anything after the address is not supported; write only ADDRESS on each line",
            "keepalived.conf:14:11: `state ACTIVE`: state must be MASTER or BACKUP",
        ]
    );
}

#[test]
fn virtual_address_entries_carry_dev_label_brd_and_scope() {
    let text = "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    priority 100\n    virtual_ipaddress {\n        192.0.2.10/24 dev eth0\n        198.51.100.10/24 dev eth1 label eth1:vip brd 198.51.100.255 scope global\n    }\n    virtual_ipaddress_excluded {\n        203.0.113.5/24 dev eth2\n        2001:db8::5/64 dev eth1\n    }\n}\n";
    let model = keepalived(text);
    let instance = &model.vrrp_instances[0];
    let entries: Vec<String> = instance
        .virtual_ipaddress
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        entries,
        [
            "192.0.2.10/24 dev eth0",
            "198.51.100.10/24 dev eth1 label eth1:vip brd 198.51.100.255 scope global"
        ]
    );
    assert_eq!(
        instance.virtual_ipaddress[1].device.as_deref(),
        Some("eth1")
    );
    // Excluded addresses are not in adverts: IPv6 beside an IPv4 instance is fine.
    let excluded: Vec<String> = instance
        .virtual_ipaddress_excluded
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        excluded,
        ["203.0.113.5/24 dev eth2", "2001:db8::5/64 dev eth1"]
    );
}

#[test]
fn a_virtual_address_option_haldir_does_not_carry_out_is_an_error() {
    let text = "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    priority 100\n    virtual_ipaddress {\n        192.0.2.10/24 dev eth0 peer 192.0.2.11\n    }\n    virtual_ipaddress_excluded {\n        192.0.2.10/24\n        2001:db8::1 label x\n    }\n}\n";
    assert_eq!(
        errors(text),
        [
            "keepalived.conf:6:9: virtual_ipaddress entry \"192.0.2.10/24 dev eth0 peer 192.0.2.11\": `peer` is not supported yet (point-to-point peer addresses are not implemented); haldir reads `ADDRESS[/PREFIX] [dev IF] [label LABEL] [brd ADDRESS] [scope SCOPE]`",
            "keepalived.conf:10:9: virtual_ipaddress_excluded entry \"2001:db8::1 label x\": `label` applies to IPv4 addresses only",
        ]
    );
    let twice = text
        .replace(" peer 192.0.2.11", "")
        .replace("        2001:db8::1 label x\n", "");
    assert_eq!(
        errors(&twice),
        ["keepalived.conf:9:9: virtual_ipaddress_excluded entry \"192.0.2.10/24\": 192.0.2.10 is already listed at keepalived.conf:6:9; list each address once"]
    );
}

#[test]
fn a_non_number_where_an_integer_belongs() {
    let text = "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    priority high\n    virtual_ipaddress {\n        192.0.2.10\n    }\n}\n";
    assert_eq!(
        errors(text),
        ["keepalived.conf:4:14: `priority high`: expected an integer"]
    );
}

#[test]
fn virtual_server_headers() {
    let text = "virtual_server 192.0.2.10 {\n}\nvirtual_server group G1 {\n}\nvirtual_server 192.0.2.10 http {\n}\n";
    let errors = errors(text);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0]
        .starts_with("keepalived.conf:1:1: `virtual_server 192.0.2.10`: the port is missing"));
    assert!(
        errors[1].starts_with(
            "keepalived.conf:3:22: virtual_server group `G1`: no virtual_server_group of that name"
        ),
        "{errors:?}"
    );
    assert_eq!(
        errors[2],
        "keepalived.conf:5:27: `virtual_server 192.0.2.10 http`: expected an integer"
    );
}

// ---- the same rules give the same messages -----------------------------------

/// `message` with every `FILE:LINE:COL` it mentions replaced by `AT`.
fn without_positions(message: &str) -> String {
    let mut out = message.to_owned();
    for file in [FILE, "haldir.toml"] {
        while let Some(start) = out.find(&format!("{file}:")) {
            let rest = &out[start + file.len()..];
            let len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == ':'))
                .unwrap_or(rest.len());
            out.replace_range(start..start + file.len() + len, "AT");
        }
    }
    out
}

/// The errors' messages (without their own locations, and with the places
/// they mention replaced) are the same in both syntaxes.
fn same_message(conf: &str, toml: &str) {
    let from_conf: Vec<String> = match parse_keepalived(conf, FILE) {
        Ok(_) => panic!("expected an error from\n{conf}"),
        Err(errors) => errors
            .0
            .iter()
            .map(|e| without_positions(&e.message))
            .collect(),
    };
    let from_toml: Vec<String> = toml_errors(toml)
        .iter()
        .map(|m| without_positions(m))
        .collect();
    assert!(!from_conf.is_empty());
    assert_eq!(from_conf, from_toml);
}

#[test]
fn validation_messages_are_the_same_in_both_syntaxes() {
    let conf = |extra: &str| instance(extra);
    let toml = |extra: &str| {
        format!(
            "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = 100\nvirtual_ipaddress = [\"192.0.2.10/24\"]\n{extra}"
        )
    };
    // (keepalived line, TOML line)
    for (c, t) in [
        ("    advert_int 1.5\n", "advert_int = 1.5\n"),
        ("    version 4\n", "version = 4\n"),
        ("    preempt_delay 1001\n", "preempt_delay = 1001\n"),
        ("    garp_master_repeat 0\n", "garp_master_repeat = 0\n"),
        ("    garp_interval 0.0005\n", "garp_interval = 0.0005\n"),
        (
            "    unicast_src_ip 2001:db8::1\n",
            "unicast_src_ip = \"2001:db8::1\"\n",
        ),
        (
            "    authentication {\n        auth_type AH\n        auth_pass 12345678\n    }\n",
            "authentication = { auth_type = \"AH\", auth_pass = \"12345678\" }\n",
        ),
        (
            "    authentication {\n        auth_type PASS\n    }\n",
            "authentication = { auth_type = \"PASS\" }\n",
        ),
    ] {
        same_message(&conf(c), &toml(t));
    }
    // Values in the instance's header lines.
    same_message(
        &instance("").replace("priority 100", "priority 300"),
        &toml("").replace("priority = 100", "priority = 300"),
    );
    same_message(
        &instance("").replace("192.0.2.10/24", "192.0.2.10/33"),
        &toml("").replace("192.0.2.10/24", "192.0.2.10/33"),
    );
    same_message(
        &format!("{}{}", instance(""), instance("").replace("VI_1", "VI_2")),
        &format!("{}{}", toml(""), toml("").replace("VI_1", "VI_2")),
    );
}

#[test]
fn virtual_server_messages_are_the_same_in_both_syntaxes() {
    let conf = "virtual_server 192.0.2.10 80 {\n    lb_algo fastest\n    lb_kind DR\n    lvs_method NAT\n    ops\n    real_server 10.0.0.1 80 {\n        weight 70000\n        uthreshold 10\n        lthreshold 20\n    }\n    real_server 2001:db8::1 80\n}\n";
    let toml = "[[virtual_server]]\nip = \"192.0.2.10\"\nport = 80\nlb_algo = \"fastest\"\nlb_kind = \"DR\"\nlvs_method = \"NAT\"\nops = true\n[[virtual_server.real_server]]\nip = \"10.0.0.1\"\nport = 80\nweight = 70000\nuthreshold = 10\nlthreshold = 20\n[[virtual_server.real_server]]\nip = \"2001:db8::1\"\nport = 80\n";
    same_message(conf, toml);
}

#[test]
fn an_empty_file_has_nothing_to_run_in_either_syntax() {
    same_message("! only a comment\n", "# only a comment\n");
}

// ---- includes ----------------------------------------------------------------

#[test]
fn a_missing_include_is_an_error_naming_the_path() {
    let path = corpus_dir().join("errors/include_missing.conf");
    let errors = load_file(&path).unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    let error = &errors.0[0];
    let loc = error.loc.as_ref().unwrap();
    assert_eq!((loc.line, loc.col), (4, 9));
    assert!(loc.file.name().ends_with("errors/include_missing.conf"));
    assert!(
        error
            .message
            .starts_with("include does-not-exist.conf: cannot read ")
            && error.message.contains("errors/does-not-exist.conf: "),
        "{error}"
    );
}

#[test]
fn an_include_loop_is_an_error() {
    let path = corpus_dir().join("errors/loop_a.conf");
    let errors = load_file(&path).unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    let error = &errors.0[0];
    let loc = error.loc.as_ref().unwrap();
    // Reported at the include that closes the loop, in loop_b.conf.
    assert!(loc.file.name().ends_with("errors/loop_b.conf"), "{error}");
    assert_eq!((loc.line, loc.col), (2, 13));
    assert!(error.message.contains("include loop ("), "{error}");
    assert!(error.message.contains("loop_a.conf → "), "{error}");
}

#[test]
fn errors_inside_an_included_file_name_that_file() {
    let path = corpus_dir().join("errors/bad_in_include.conf");
    let errors = load_file(&path).unwrap_err();
    let shown: Vec<String> = errors
        .0
        .iter()
        .map(|e| {
            let loc = e.loc.as_ref().unwrap();
            let file = Path::new(&*loc.file.name())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            format!("{file}:{}:{}", loc.line, loc.col)
        })
        .collect();
    assert_eq!(
        shown,
        ["bad_part.conf:2:5", "bad_part.conf:5:16"],
        "{errors}"
    );
    assert!(errors.0[0].message.contains("`track_bfd`"));
    assert!(errors.0[1]
        .message
        .starts_with("advert_int = 0.5: VRRP version 2"));
    assert!(errors.0[0]
        .file
        .name()
        .ends_with("errors/parts/bad_part.conf"));
}

#[test]
fn includes_nest_only_so_deep() {
    let dir = std::env::temp_dir().join(format!("haldir-include-depth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let chain = MAX_INCLUDE_DEPTH + 2;
    for i in 0..chain {
        std::fs::write(
            dir.join(format!("{i}.conf")),
            format!("include {}.conf\n", i + 1),
        )
        .unwrap();
    }
    std::fs::write(dir.join(format!("{chain}.conf")), "global_defs {\n}\n").unwrap();
    let errors = load_file_as(&dir.join("0.conf"), Format::Keepalived).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert!(
        errors.0[0].to_string().ends_with(&format!(
            "{MAX_INCLUDE_DEPTH}.conf:1:9: include {}.conf: includes nest more than {MAX_INCLUDE_DEPTH} deep; flatten them",
            MAX_INCLUDE_DEPTH + 1
        )),
        "{errors}"
    );
}

// ---- detection ---------------------------------------------------------------

#[test]
fn detection_by_content() {
    let conf = Path::new("x.conf");
    let toml = Path::new("x.toml");
    let none = Path::new("x");
    assert_eq!(detect_format("[[vrrp_instance]]\n", conf), Format::Toml);
    assert_eq!(detect_format("# c\n\nname = \"x\"\n", conf), Format::Toml);
    assert_eq!(
        detect_format("global_defs {\n}\n", toml),
        Format::Keepalived
    );
    assert_eq!(
        detect_format("# c\nvrrp_instance VI_1 {\n", none),
        Format::Keepalived
    );
    assert_eq!(detect_format("! c\n", toml), Format::Keepalived);
    assert_eq!(
        detect_format("include /etc/k/*.conf\n", none),
        Format::Keepalived
    );
    // Nothing but comments: the extension is the hint.
    assert_eq!(detect_format("# c\n", conf), Format::Keepalived);
    assert_eq!(detect_format("# c\n", none), Format::Toml);
    assert_eq!("keepalived".parse::<Format>(), Ok(Format::Keepalived));
    assert!("xml".parse::<Format>().is_err());
}

#[test]
fn the_format_can_be_forced() {
    let path = corpus_dir().join("lvs_only.conf");
    assert!(load_file_as(&path, Format::Auto).is_ok());
    let errors = load_file_as(&path, Format::Toml).unwrap_err();
    assert!(errors.to_string().contains("TOML syntax error"), "{errors}");
}

#[test]
fn hostile_input_gives_errors_not_panics() {
    let deep = errors(&"a {".repeat(100_000));
    assert_eq!(deep.len(), 1, "{deep:?}");
    assert!(deep[0].contains("blocks nest more than"), "{deep:?}");
    assert!(!errors(&"{".repeat(100_000)).is_empty());
    for text in [
        "}",
        "\"",
        "include",
        "include a b",
        "\\",
        "a \"b\" \"",
        "{}{}{}",
        "$",
        "@",
        "~",
    ] {
        assert!(parse_keepalived(text, FILE).is_err(), "{text:?}");
    }
    let dev_zero = errors("include /dev/zero\n");
    assert!(
        dev_zero[0].ends_with("cannot read /dev/zero: not a regular file"),
        "{dev_zero:?}"
    );
}

// ---- health checking ---------------------------------------------------------

#[test]
fn the_health_corpus_file_reads_into_the_expected_values() {
    let model = load_file(&corpus_dir().join("dr_http_get.conf")).unwrap();
    assert_eq!(model.vrrp_scripts.len(), 2);
    assert_eq!(model.vrrp_scripts[0].weight, -20);
    assert_eq!(model.vrrp_scripts[0].timeout_millis, 1500);
    assert!(model.vrrp_scripts[0].init_fail);
    let web = &model.vrrp_instances[0];
    let tracked: Vec<(&str, i32)> = web
        .track_script
        .iter()
        .map(|t| (t.name.as_str(), t.weight))
        .collect();
    assert_eq!(tracked, [("chk_director", -20), ("chk_fault", 0)]);
    assert_eq!(model.vrrp_instances[1].track_script[0].weight, 10);
    let vs = &model.virtual_servers[0];
    assert_eq!((vs.quorum, vs.hysteresis, vs.omega), (2, 1, true));
    let sorry = vs.sorry_server.unwrap();
    assert_eq!(
        (sorry.ip.to_string(), sorry.port, sorry.inhibit),
        ("10.0.0.250".into(), 8080, true)
    );
    let rs = &vs.real_servers[0];
    assert!(rs.inhibit_on_failure);
    // Checkers are kept kind by kind (HTTP_GET before TCP_CHECK), as TOML reads them.
    let kinds: Vec<&str> = rs.checks.iter().map(|c| c.kind.keyword()).collect();
    assert_eq!(kinds, ["HTTP_GET", "TCP_CHECK"]);
    // nb_get_retry on the checker beats the virtual server's retry.
    assert_eq!(rs.checks[0].timing.retry, 3);
    assert_eq!(rs.checks[1].timing.retry, 2);
    assert_eq!(rs.checks[1].timing.delay_loop_millis, 5000);
}

#[test]
fn checker_keys_are_checked_with_their_locations() {
    let text = "virtual_server 192.0.2.10 80 {\n    quorum two\n    real_server 10.0.0.1 80 {\n        HTTP_GET {\n            url {\n                path /health\n                status\n            }\n            retry 1\n            nb_get_retry 2\n        }\n        MISC_CHECK {\n            connect_port 80\n        }\n    }\n}\n";
    let errors = errors(text);
    assert_eq!(errors.len(), 5, "{errors:?}");
    assert_eq!(
        errors[0],
        "keepalived.conf:2:12: `quorum two`: expected an integer"
    );
    assert!(
        errors[1].starts_with("keepalived.conf:7:17: unknown keyword `status` in url"),
        "{errors:?}"
    );
    assert_eq!(
        errors[2],
        "keepalived.conf:10:13: `nb_get_retry` is already set at keepalived.conf:9:13; keep one"
    );
    // Validation's message, reported with the keyword errors.
    assert!(
        errors[3].starts_with("keepalived.conf:12:9: MISC_CHECK is missing `misc_path`"),
        "{errors:?}"
    );
    assert!(
        errors[4]
            .starts_with("keepalived.conf:13:13: unknown keyword `connect_port` in MISC_CHECK"),
        "{errors:?}"
    );
}

#[test]
fn track_script_entries_and_scripts_are_validated() {
    let text = format!(
        "vrrp_script chk {{\n    script /bin/true\n    weight 300\n}}\n{}",
        instance("    track_script {\n        chk weight 5 extra\n        missing\n    }\n")
    );
    let errors = errors(&text);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("keepalived.conf:3:12: ")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(
            |e| e.starts_with("keepalived.conf:12:22: track_script entry `chk weight 5 extra`")
        ),
        "{errors:?}"
    );
}

#[test]
fn a_tracked_script_must_be_defined() {
    let text = format!(
        "vrrp_script chk {{\n    script /bin/true\n}}\n{}",
        instance("    track_script {\n        chk\n        missing weight -5\n    }\n")
    );
    assert_eq!(
        errors(&text),
        ["keepalived.conf:12:9: track_script \"missing\": no [[vrrp_script]] has this name; defined scripts: chk"]
    );
}

#[test]
fn track_file_blocks_and_entries_read_as_keepalived_writes_them() {
    let text = format!(
        "track_file load {{\n    file \"/run/app/load\"\n    weight -2 reverse\n    init_file 5 overwrite\n}}\n\
         vrrp_track_file gate {{\n    file /run/app/gate\n}}\n{}",
        instance("    track_file {\n        load\n        gate weight 0 reverse\n    }\n")
    );
    let model = keepalived(&text);
    let files: Vec<(&str, &str, i32, bool, Option<TrackFileInit>)> = model
        .track_files
        .iter()
        .map(|f| {
            (
                f.name.as_str(),
                f.path.as_str(),
                f.weight,
                f.reverse,
                f.init,
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            (
                "load",
                "/run/app/load",
                -2,
                true,
                Some(TrackFileInit {
                    value: 5,
                    overwrite: true
                })
            ),
            ("gate", "/run/app/gate", 1, false, None),
        ],
        "the block's weight defaults to 1; vrrp_track_file is the same block"
    );
    assert_eq!(
        model.vrrp_instances[0].track_file,
        [
            TrackedFile {
                name: "load".into(),
                weight: -2,
                reverse: true
            },
            TrackedFile {
                name: "gate".into(),
                weight: 0,
                reverse: true
            },
        ],
        "an entry without weight takes the block's weight and direction"
    );
    let toml = to_toml(&model);
    let back = parse_toml(&toml, "haldir.toml").unwrap_or_else(|e| panic!("{e}\n{toml}"));
    assert_eq!(without_locs(back), without_locs(model), "{toml}");
}

#[test]
fn track_file_mistakes_are_named_with_their_place() {
    let text = format!(
        "track_file load {{\n    file run/load\n    weight 2 sideways\n    init_file 1 2\n}}\n{}",
        instance("    track_file {\n        load weight 300\n        other reverse extra\n    }\n")
    );
    let errors = errors(&text);
    for expected in [
        "keepalived.conf:2:10: file = \"run/load\": give an absolute path",
        "keepalived.conf:3:14: `weight 2 sideways`: write `weight N` or `weight N reverse`; remove `sideways`",
        "keepalived.conf:4:17: `init_file 1 2`: write `init_file [VALUE] [overwrite]`; remove `2`",
        "keepalived.conf:14:23: track_file entry `other reverse extra`: write `NAME [weight N] [reverse|noreverse]` on each line; remove `extra`",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "no error starting {expected:?} in {errors:#?}"
        );
    }
}

#[test]
fn a_tracked_file_must_be_defined_and_its_entry_weight_in_range() {
    let text = format!(
        "track_file load {{\n    file /run/load\n}}\n{}",
        instance("    track_file {\n        load weight 300\n        missing\n    }\n")
    );
    let errors = errors(&text);
    assert_eq!(
        errors,
        [
            "keepalived.conf:11:21: weight = 300: must be -254..=254 (0: a non-zero value puts the instance in FAULT)",
            "keepalived.conf:12:9: track_file \"missing\": no track_file block has this name; defined track files: load",
        ]
    );
}

#[test]
fn an_address_owner_tracks_a_file_only_with_weight_zero() {
    let text = "track_file load {\n    file /run/load\n}\n\
                vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    priority 255\n    virtual_ipaddress { 192.0.2.10/24 }\n    track_file {\n        load\n    }\n}\n";
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("track_file \"load\" has weight 1: the address owner"),
        "{errors:?}"
    );
    let owner_with_zero = text.replace("        load\n", "        load weight 0\n");
    assert_eq!(
        keepalived(&owner_with_zero).vrrp_instances[0].track_file[0].weight,
        0
    );
}

#[test]
fn track_file_reads_the_same_in_toml() {
    let conf = format!(
        "track_file load {{\n    file /run/load\n    weight 3\n    init_file\n}}\n{}",
        instance("    track_file {\n        load weight -4\n    }\n")
    );
    let toml = "[[track_file]]\nname = \"load\"\nfile = \"/run/load\"\nweight = 3\ninit_file = {}\n\n\
                [[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = 100\n\
                virtual_ipaddress = [\"192.0.2.10/24\"]\ntrack_file = [{ name = \"load\", weight = -4 }]\n";
    let from_toml = parse_toml(toml, "haldir.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(without_locs(keepalived(&conf)), without_locs(from_toml));
    assert_eq!(
        toml_errors("[[track_file]]\nname = \"x\"\n[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = 100\nvirtual_ipaddress = [\"192.0.2.10/24\"]\n"),
        ["this track_file is missing `file`; add e.g. `file = \"/run/app/ready\"`"]
    );
}

/// Found by fuzzing (issue 7 item 3): brace groups in an include pattern
/// multiply, so `{a,b}` twenty times (a 108-byte line) meant a million
/// lookups and minutes of work; now the expansion is cut off and reported.
#[test]
fn an_include_whose_braces_explode_is_refused_quickly() {
    let started = std::time::Instant::now();
    let errors = errors(&format!("include {}.conf\n", "{a,b}".repeat(20)));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("too many names"), "{errors:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

// ---- a large file --------------------------------------------------------------

/// `count` virtual servers of two real servers each, about 250 bytes apiece.
fn many_virtual_servers(count: usize) -> String {
    let mut text = String::from("# many virtual servers\nglobal_defs {\n    router_id big\n}\n");
    for i in 0..count {
        text.push_str(&format!(
            "virtual_server 10.40.{}.{} 80 {{\n    delay_loop 60\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n    real_server 10.41.0.1 80 {{\n        weight 1\n    }}\n    real_server 10.41.0.2 80 {{\n        weight 2\n    }}\n}}\n",
            i / 250,
            i % 250 + 1
        ));
    }
    text
}

#[test]
fn a_file_of_many_pieces_loads_as_its_whole_text_parses() {
    // Over a megabyte: the loader reads it in several pieces (`config/src/pieces.rs`).
    let text = many_virtual_servers(5_000);
    assert!(text.len() > 1_000_000);
    let dir = std::env::temp_dir().join(format!("haldir-pieces-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keepalived.conf");
    let name = path.display().to_string();
    std::fs::write(&path, &text).unwrap();
    let loaded = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded, parse_keepalived(&text, &name).unwrap());
    assert_eq!(loaded.virtual_servers.len(), 5_000);

    // An error near the end is reported at its line, as from the whole text.
    let bad = text.replacen("weight 2", "weight two", 1).replace(
        "10.40.19.250 80 {\n    delay_loop 60",
        "10.40.19.250 80 {\n    delay_loop sixty",
    );
    std::fs::write(&path, &bad).unwrap();
    let from_file: Vec<String> = load_file(&path)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
    let from_text: Vec<String> = parse_keepalived(&bad, &name)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(from_file, from_text);
    assert_eq!(from_file.len(), 2, "{from_file:?}");
    let last_line = bad.lines().position(|l| l.contains("sixty")).unwrap() + 1;
    assert!(
        from_file[1].starts_with(&format!("{name}:{last_line}:")),
        "{from_file:?}"
    );

    // A byte that is not UTF-8 past the first piece: the file cannot be read.
    let mut bytes = text.into_bytes();
    let at = bytes.len() - 100;
    bytes[at] = 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let errors = load_file(&path).unwrap_err().0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].to_string(),
        format!("{name}: cannot read the configuration file: stream did not contain valid UTF-8")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
