//! The TOML form of the health-checking part of a model: `[[vrrp_script]]`,
//! an instance's `track_script`, a virtual server's quorum keys and a real
//! server's checkers. The model holds resolved values (a checker's settings
//! inherited from its real and virtual server), so every checker is written
//! with all its settings; reading them back gives the same values.

use std::net::SocketAddr;

use super::{decimal, line, string};
use crate::model_health::{
    CheckConnection, CheckKind, CheckTimingSpec, DnsCheckSpec, HealthCheck, HttpCheckOptions,
    HttpUrlSpec, MiscCheckSpec, SorryServer, TlsVerify, TrackScript, UrlOptions, VrrpScript,
};

/// One `[[vrrp_script]]` table.
pub(super) fn vrrp_script(out: &mut String, s: &VrrpScript) {
    let VrrpScript {
        name,
        script,
        interval_millis,
        timeout_millis,
        weight,
        rise,
        fall,
        user,
        group,
        init_fail,
        loc: _,
    } = s;
    out.push_str("[[vrrp_script]]\n");
    line(out, "name", string(name));
    line(out, "script", string(script.as_str()));
    line(out, "interval", decimal(*interval_millis, 1000));
    line(out, "timeout", decimal(*timeout_millis, 1000));
    line(out, "weight", weight);
    line(out, "rise", rise);
    line(out, "fall", fall);
    if let Some(user) = user {
        line(out, "user", string(user));
    }
    if let Some(group) = group {
        line(out, "group", string(group));
    }
    if *init_fail {
        line(out, "init_fail", true);
    }
}

/// An instance's `track_script` line (each entry with its resolved weight).
pub(super) fn track_script(out: &mut String, tracked: &[TrackScript]) {
    if tracked.is_empty() {
        return;
    }
    let entries: Vec<String> = tracked
        .iter()
        .map(|TrackScript { name, weight }| {
            format!("{{ name = {}, weight = {weight} }}", string(name))
        })
        .collect();
    line(out, "track_script", format!("[{}]", entries.join(", ")));
}

/// A virtual server's quorum keys (those that differ from the defaults).
pub(super) fn virtual_server(
    out: &mut String,
    quorum: u32,
    hysteresis: u32,
    sorry_server: &Option<SorryServer>,
    omega: bool,
) {
    if quorum != 1 {
        line(out, "quorum", quorum);
    }
    if hysteresis != 0 {
        line(out, "hysteresis", hysteresis);
    }
    if let Some(SorryServer { ip, port, inhibit }) = sorry_server {
        line(out, "sorry_server", string(&format!("{ip} {port}")));
        if *inhibit {
            line(out, "sorry_server_inhibit", true);
        }
    }
    if omega {
        line(out, "omega", true);
    }
}

/// A real server's `inhibit_on_failure` and checkers, after its own keys.
/// Checkers are written kind by kind (the order the TOML front-end reads them).
pub(super) fn real_server(out: &mut String, inhibit_on_failure: bool, checks: &[HealthCheck]) {
    if inhibit_on_failure {
        line(out, "inhibit_on_failure", true);
    }
    let mut sorted: Vec<&HealthCheck> = checks.iter().collect();
    sorted.sort_by_key(|c| c.kind.keyword());
    for check in sorted {
        health_check(out, check);
    }
}

fn health_check(out: &mut String, c: &HealthCheck) {
    let HealthCheck {
        kind,
        timing,
        loc: _,
    } = c;
    out.push_str(&format!(
        "\n[[virtual_server.real_server.{}]]\n",
        kind.keyword()
    ));
    let CheckTimingSpec {
        delay_loop_millis,
        retry,
        delay_before_retry_millis,
        warmup_millis,
        alpha,
    } = timing;
    line(out, "delay_loop", decimal(*delay_loop_millis, 1000));
    line(out, "retry", retry);
    line(
        out,
        "delay_before_retry",
        decimal(*delay_before_retry_millis, 1000),
    );
    if let Some(warmup) = warmup_millis {
        line(out, "warmup", decimal(*warmup, 1000));
    }
    if *alpha {
        line(out, "alpha", true);
    }
    match kind {
        CheckKind::Tcp(connection) => self::connection(out, connection),
        CheckKind::Http(spec) => {
            let HttpCheckOptions {
                virtualhost,
                verify,
            } = spec.options();
            self::connection(out, &spec.connection);
            if let Some(host) = virtualhost {
                line(out, "virtualhost", string(host));
            }
            match verify {
                TlsVerify::Off => {}
                TlsVerify::SystemRoots => line(out, "verify", true),
                TlsVerify::CaFile(file) => line(out, "ca_file", string(file)),
            }
            let urls: Vec<String> = spec.urls.iter().map(url).collect();
            line(out, "url", format!("[{}]", urls.join(", ")));
        }
        CheckKind::Misc(spec) => {
            let MiscCheckSpec {
                misc_path,
                misc_timeout_millis,
                misc_dynamic,
                user,
                group,
            } = &**spec;
            line(out, "misc_path", string(misc_path.as_str()));
            line(out, "misc_timeout", decimal(*misc_timeout_millis, 1000));
            if *misc_dynamic {
                line(out, "misc_dynamic", true);
            }
            if let Some(user) = user {
                line(out, "user", string(user));
            }
            if let Some(group) = group {
                line(out, "group", string(group));
            }
        }
        CheckKind::Dns(spec) => {
            let DnsCheckSpec {
                connection,
                query_type,
                name,
            } = &**spec;
            self::connection(out, connection);
            line(out, "type", string(query_type.as_str()));
            line(out, "name", string(name));
        }
        CheckKind::Smtp(spec) => {
            let crate::model_health::SmtpCheckSpec {
                connection,
                helo_name,
            } = &**spec;
            self::connection(out, connection);
            line(out, "helo_name", string(helo_name));
        }
        CheckKind::Udp(spec) => {
            let crate::model_health::UdpCheckSpec {
                connection,
                payload,
                require_reply,
                min_reply_length,
                max_reply_length,
            } = &**spec;
            self::connection(out, connection);
            if !payload.data.is_empty() {
                line(out, "payload", string(&payload.to_string()));
            }
            if let Some(pattern) = require_reply {
                if pattern.data.is_empty() {
                    line(out, "require_reply", true);
                } else {
                    line(out, "require_reply", string(&pattern.to_string()));
                }
                line(out, "min_reply_length", min_reply_length);
                line(out, "max_reply_length", max_reply_length);
            }
        }
        CheckKind::Ping(connection) => self::connection(out, connection),
    }
}

fn connection(out: &mut String, c: &CheckConnection) {
    let CheckConnection {
        target,
        bind_to,
        connect_timeout_millis,
    } = c;
    line(out, "connect_ip", string(&target.ip().to_string()));
    if target.port() != 0 {
        line(out, "connect_port", target.port());
    }
    if let Some(bind) = bind_to {
        let bind: &SocketAddr = bind;
        line(out, "bindto", string(&bind.ip().to_string()));
        if bind.port() != 0 {
            line(out, "bind_port", bind.port());
        }
    }
    line(
        out,
        "connect_timeout",
        decimal(*connect_timeout_millis, 1000),
    );
}

/// One `url` as an inline table.
fn url(u: &HttpUrlSpec) -> String {
    let UrlOptions {
        digest,
        regex,
        regex_no_match,
        virtualhost,
    } = u.options();
    let mut keys = vec![format!("path = {}", string(&u.path))];
    if let Some(codes) = &u.status_code {
        keys.push(format!("status_code = {}", string(&codes.to_string())));
    }
    if let Some(digest) = digest {
        keys.push(format!("digest = {}", string(digest)));
    }
    if let Some(regex) = regex {
        keys.push(format!("regex = {}", string(regex)));
    }
    if *regex_no_match {
        keys.push("regex_no_match = true".to_owned());
    }
    if let Some(host) = virtualhost {
        keys.push(format!("virtualhost = {}", string(host)));
    }
    format!("{{ {} }}", keys.join(", "))
}
