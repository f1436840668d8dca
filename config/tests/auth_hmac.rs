//! `auth_hmac` (HMAC-SHA256 advert authentication): both front-ends give the
//! same model, `to_toml` writes it back exactly (a `file:` key stays a file
//! reference), and mistakes are reported at file:line:col without echoing
//! secrets.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use haldir_config::{parse_keepalived, parse_toml, to_toml, AuthHmacMode, Model};

const HEX1: &str = "hex:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const ASCII2: &str = "an-ascii-key-of-at-least-32-bytes-long";

/// A key file with `mode`, in a directory of its own.
fn key_file(tag: &str, content: &str, mode: u32) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("haldir-auth-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vrrp.key");
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn keepalived(file: &str) -> String {
    format!(
        r#"vrrp_instance VI_1 {{
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    virtual_ipaddress {{
        192.0.2.10/24
    }}
    auth_hmac {{
        key 1 {HEX1}
        key 2 "{ASCII2}"
        key 3 file:{file}
        active_key 2
        mode permissive
        anti_replay monotonic
        time_window 7
    }}
}}
"#
    )
}

fn toml(file: &str) -> String {
    format!(
        r#"[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
priority = 150
advert_int = 1
virtual_ipaddress = ["192.0.2.10/24"]
auth_hmac = {{ key = [{{ id = 1, value = "{HEX1}" }}, {{ id = 2, value = "{ASCII2}" }}, {{ id = 3, value = "file:{file}" }}], active_key = 2, mode = "permissive", anti_replay = "monotonic", time_window = 7 }}
"#
    )
}

/// `model` with its source locations blanked (`Model::without_locations`).
fn without_locs(model: Model) -> Model {
    model.without_locations()
}

fn errors_keepalived(text: &str) -> Vec<String> {
    match parse_keepalived(text, "keepalived.conf") {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn both_front_ends_read_the_same_auth_hmac() {
    let path = key_file("same", &format!("{HEX1}\n"), 0o600);
    let file = path.display().to_string();
    let from_keepalived = parse_keepalived(&keepalived(&file), "keepalived.conf").unwrap();
    let from_toml = parse_toml(&toml(&file), "haldir.toml").unwrap();
    let auth = from_keepalived.vrrp_instances[0].auth_hmac.clone().unwrap();
    assert_eq!(auth.active_key, 2);
    assert_eq!(auth.mode, AuthHmacMode::Permissive);
    assert!(!auth.anti_replay_time);
    assert_eq!(auth.time_window, Some(7));
    let ids: Vec<u8> = auth.keys.iter().map(|k| k.id).collect();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(auth.keys[0].secret, (0u8..32).collect::<Vec<_>>());
    assert_eq!(auth.keys[1].secret, ASCII2.as_bytes());
    assert_eq!(auth.keys[2].secret, auth.keys[0].secret);
    assert_eq!(auth.keys[2].value, format!("file:{file}"));
    assert_eq!(without_locs(from_keepalived), without_locs(from_toml));
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn to_toml_writes_auth_hmac_back_with_file_keys_as_references() {
    let path = key_file("convert", &format!("{HEX1}\n"), 0o400);
    let file = path.display().to_string();
    let model = parse_keepalived(&keepalived(&file), "keepalived.conf").unwrap();
    let text = to_toml(&model);
    assert!(text.contains(&format!("value = \"file:{file}\"")), "{text}");
    let again = parse_toml(&text, "converted.toml").unwrap();
    assert_eq!(without_locs(again), without_locs(model));

    // Defaults are written out too, and read back the same.
    let minimal = keepalived(&file)
        .replace("        mode permissive\n", "")
        .replace("        anti_replay monotonic\n", "")
        .replace("        time_window 7\n", "");
    let model = parse_keepalived(&minimal, "keepalived.conf").unwrap();
    let auth = model.vrrp_instances[0].auth_hmac.clone().unwrap();
    assert_eq!(auth.mode, AuthHmacMode::Enforce);
    assert!(auth.anti_replay_time);
    assert_eq!(auth.time_window_secs(100), 5);
    let again = parse_toml(&to_toml(&model), "converted.toml").unwrap();
    assert_eq!(without_locs(again), without_locs(model));
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn a_key_file_open_to_others_is_refused_at_its_place() {
    let path = key_file("mode", &format!("{HEX1}\n"), 0o644);
    let file = path.display().to_string();
    let errors = errors_keepalived(&keepalived(&file));
    assert_eq!(
        errors,
        [format!(
            "keepalived.conf:12:15: auth_hmac key 3: key file {file} has mode 0644, so group or others may read or change the secret; run `chmod 600 {file}`"
        )]
    );
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn bad_values_are_reported_at_file_line_col_without_the_secret() {
    let text = r#"vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    priority 150
    virtual_ipaddress {
        192.0.2.10/24
    }
    auth_hmac {
        key 1 too-short-secret
        key 1 hex:0g
        key 300 hex:00
        active_key 9
        mode strict
        anti_replay clock
        time_window 301
        keys 2
    }
}
"#;
    let errors = errors_keepalived(text);
    let all = errors.join("\n");
    for expected in [
        "keepalived.conf:16:9: unknown keyword `keys` in auth_hmac",
        "keepalived.conf:9:15: auth_hmac key 1: is 16 bytes; must be 32..=64",
        "keepalived.conf:10:13: auth_hmac key 1: id already used at keepalived.conf:9:13",
        "keepalived.conf:10:15: auth_hmac key 1: hex: needs an even number of hex digits",
        "keepalived.conf:11:13: auth_hmac key id = 300: must be 1..=255",
        "keepalived.conf:13:14: auth_hmac mode \"strict\": must be enforce, permissive or receive-only",
        "keepalived.conf:14:21: auth_hmac anti_replay \"clock\": must be time or monotonic",
        "keepalived.conf:15:21: auth_hmac time_window = 301: must be 1..=300 seconds",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in\n{all}");
    }
    assert!(!all.contains("too-short-secret"), "{all}");
}

#[test]
fn auth_hmac_and_the_v2_password_exclude_each_other() {
    let text = format!(
        r#"vrrp_instance VI_1 {{
    interface eth0
    virtual_router_id 51
    priority 150
    version 2
    virtual_ipaddress {{
        192.0.2.10/24
    }}
    authentication {{
        auth_type PASS
        auth_pass secret
    }}
    auth_hmac {{
        key 1 {HEX1}
    }}
}}
"#
    );
    assert_eq!(
        errors_keepalived(&text),
        ["keepalived.conf:13:5: auth_hmac: cannot be combined with the `authentication` block at keepalived.conf:9:5 (keepalived drops the latter); remove one"]
    );
}

#[test]
fn toml_unknown_keys_in_auth_hmac_are_reported() {
    let text = format!(
        r#"[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
priority = 150
virtual_ipaddress = ["192.0.2.10/24"]
auth_hmac = {{ key = [{{ id = 1, value = "{HEX1}", secret = "x" }}], active = 1 }}
"#
    );
    let errors: Vec<String> = parse_toml(&text, "haldir.toml")
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
    let all = errors.join("\n");
    assert!(
        all.contains("unknown key `secret` in auth_hmac.key"),
        "{all}"
    );
    assert!(all.contains("unknown key `active` in auth_hmac"), "{all}");
    assert!(all.starts_with("haldir.toml:7:"), "{all}");
}
