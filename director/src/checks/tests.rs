//! The mapping is total on valid models (every checker of a valid model builds), and the
//! configuration's own rules for single values agree with the health checkers' (status
//! codes, DNS types, TLS server names), so a value `haldir check` accepts never fails when
//! the daemon builds its checker.

use std::sync::Arc;

use haldir_config::{
    CheckConnection, CheckKind, HttpCheckOptions, HttpCheckSpec, HttpUrlSpec, Model, TlsVerify,
    UrlOptions,
};
use haldir_health::checker::build;

use super::*;

fn model(text: &str) -> Result<Model, String> {
    haldir_config::parse_toml(text, "test.toml").map_err(|e| e.to_string())
}

/// An `SSL_GET` of `/` on 10.0.0.1:443 made without the configuration's validation: what
/// the checker alone says of `virtualhost` and `verify`.
fn ssl_get(virtualhost: Option<&str>, verify: TlsVerify) -> Arc<HttpCheckSpec> {
    let connection = CheckConnection {
        target: "10.0.0.1:443".parse().unwrap(),
        bind_to: None,
        connect_timeout_millis: 5000,
    };
    let options = HttpCheckOptions {
        virtualhost: virtualhost.map(str::to_owned),
        verify,
    };
    let url = HttpUrlSpec::new("/", None, UrlOptions::default());
    Arc::new(HttpCheckSpec::new(true, connection, [url], options))
}

fn server(check: &str) -> String {
    servers(&[check])
}

/// One virtual server per checker (ports 80, 81, ...), each with one real server.
fn servers(checks: &[&str]) -> String {
    checks
        .iter()
        .enumerate()
        .map(|(i, check)| {
            format!(
                "[[virtual_server]]\nip = \"192.0.2.10\"\nport = {}\nlb_kind = \"DR\"\n\
                 [[virtual_server.real_server]]\nip = \"10.0.0.1\"\n{check}\n",
                80 + i
            )
        })
        .collect()
}

#[test]
fn every_checker_and_script_of_a_valid_model_builds() {
    let text = format!(
        "{}[[vrrp_script]]\nname = \"chk\"\nscript = \"/bin/true --flag\"\n",
        servers(&[
            "TCP_CHECK = { bindto = \"10.0.0.9\", bind_port = 4000 }",
            "HTTP_GET = { url = [{ path = \"/a\", status_code = \"200-299, 404\", \
             digest = \"9B3A0C85A887A256D6939DA88AABD8CD\", regex = \"ok$\" }] }",
            "SSL_GET = { virtualhost = \"www.example.com\", url = [{ path = \"/\" }] }",
            "MISC_CHECK = { misc_path = \"/bin/sh -c 'exit 0'\", misc_dynamic = true }",
            "DNS_CHECK = { type = \"aaaa\", name = \"www.example.com.\" }",
        ]),
    );
    let m = model(&text).unwrap();
    let mut kinds = Vec::new();
    for vs in &m.virtual_servers {
        for rs in &vs.real_servers {
            for check in &rs.checks {
                let checker = build(checker_config(check))
                    .unwrap_or_else(|e| panic!("{}: {e}", check.kind.keyword()));
                kinds.push(checker.kind());
            }
        }
    }
    assert_eq!(
        kinds,
        [
            "TCP_CHECK",
            "HTTP_GET",
            "SSL_GET",
            "MISC_CHECK",
            "DNS_CHECK"
        ]
    );
    build(script_config(&m.vrrp_scripts[0])).unwrap();
}

#[test]
fn the_mapping_keeps_every_setting() {
    let m = model(&servers(&[
        "HTTP_GET = { url = [{ path = \"/a\", status_code = \"200 404-405\" }], \
         connect_timeout = 2.5 }",
        "MISC_CHECK = { misc_path = \"/bin/true 'a b' c\", misc_timeout = 3, user = \"nobody\" }",
    ]))
    .unwrap();
    let http = &m.virtual_servers[0].real_servers[0].checks[0];
    let CheckerConfig::Http(config) = checker_config(http) else {
        panic!("not HTTP");
    };
    let CheckKind::Http(settings) = &http.kind else {
        panic!("not HTTP");
    };
    // The checker runs from the model's settings, not a copy.
    assert!(std::ptr::eq(&*config, &**settings));
    assert_eq!(config.connection.connect_timeout_millis, 2500);
    let codes = config.urls[0].status_code.as_ref().unwrap();
    assert_eq!(codes.to_string(), "200 404-405");
    let misc = &m.virtual_servers[1].real_servers[0].checks[0];
    let CheckerConfig::Misc(config) = checker_config(misc) else {
        panic!("not MISC");
    };
    assert_eq!(
        config.command,
        MiscCommand::Exec(vec!["/bin/true".into(), "a b".into(), "c".into()])
    );
    assert_eq!(config.timeout, Duration::from_secs(3));
    assert_eq!(config.user.as_deref(), Some("nobody"));
}

#[test]
fn every_dns_type_maps_to_its_wire_type() {
    // RFC 1035 §3.2.2 and RFC 3596 §2.1.
    let wire = |name: &str| match name {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        other => panic!("unexpected DNS type {other}"),
    };
    for ours in DnsType::ALL {
        assert_eq!(
            dns_type(ours).code(),
            wire(&ours.as_str().to_ascii_uppercase()),
            "{ours:?}"
        );
    }
}

#[test]
fn tls_server_names_the_configuration_accepts_are_the_ones_the_checker_accepts() {
    for name in [
        "www.example.com",
        "www.example.com.",
        "a-b_c.example",
        "10.0.0.1",
        "2001:db8::1",
        "bad_name!",
        "-a.example",
        "a-.example",
        "example.123",
        "0x1f",
        "a..b",
        &"a".repeat(64),
        &format!("{}.example", vec!["a".repeat(60); 4].join(".")),
    ] {
        let ours = model(&server(&format!(
            "SSL_GET = {{ virtualhost = \"{name}\", url = [{{ path = \"/\" }}] }}"
        )));
        let theirs = haldir_health::http::checker(ssl_get(Some(name), TlsVerify::Off));
        assert_eq!(ours.is_ok(), theirs.is_ok(), "{name:?}: {ours:?}");
    }
}

#[test]
fn a_dns_name_the_configuration_accepts_encodes() {
    for name in [
        ".",
        "example",
        "www.example.com.",
        &vec!["a".repeat(63); 3].join("."),
    ] {
        let m = model(&server(&format!("DNS_CHECK = {{ name = \"{name}\" }}"))).unwrap();
        let check = &m.virtual_servers[0].real_servers[0].checks[0];
        let CheckKind::Dns(spec) = &check.kind else {
            panic!("not DNS");
        };
        assert!(
            dns::encode_query(0, dns_type(spec.query_type), &spec.name).is_ok(),
            "{name}"
        );
    }
    for name in ["a..b", &"a".repeat(64), &vec!["a".repeat(63); 4].join(".")] {
        assert!(model(&server(&format!("DNS_CHECK = {{ name = \"{name}\" }}"))).is_err());
        assert!(
            dns::encode_query(0, dns::DnsType::Soa, name).is_err(),
            "{name}"
        );
    }
}

#[test]
fn a_ca_file_the_configuration_accepts_builds_and_one_it_refuses_would_not() {
    let dir = std::env::temp_dir().join(format!("haldir-director-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ssl = |path: &std::path::Path| {
        server(&format!(
            "SSL_GET = {{ ca_file = \"{}\", url = [{{ path = \"/\" }}] }}",
            path.display()
        ))
    };
    let good = dir.join("ca.pem");
    let certified = rcgen::generate_simple_self_signed(vec!["www.example.com".into()]).unwrap();
    std::fs::write(&good, certified.cert.pem()).unwrap();
    let m = model(&ssl(&good)).unwrap();
    build(checker_config(
        &m.virtual_servers[0].real_servers[0].checks[0],
    ))
    .unwrap();

    let garbage = dir.join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "no certificate here\n").unwrap();
    for (path, why) in [
        (&garbage, "not valid base64-encoded DER"),
        (&empty, "no certificate in the file"),
    ] {
        let error = model(&ssl(path)).unwrap_err();
        assert!(error.contains(why), "{error}");
        let verify = TlsVerify::CaFile(path.to_str().unwrap().to_owned());
        assert!(
            haldir_health::http::checker(ssl_get(None, verify)).is_err(),
            "{why}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
