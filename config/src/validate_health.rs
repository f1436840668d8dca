//! Validation of the health-checking settings: checker blocks (every
//! keepalived default resolved through checker → real server → virtual
//! server), quorum / hysteresis / sorry server, `vrrp_script`s and the
//! instances' `track_script`. Scripts (`MISC_CHECK`, `vrrp_script`) must exist
//! and be executable by the user they run as, checked here with the shared
//! script vetting (`haldir_scripts`, the rules the checkers run them by), so
//! `haldir check` (and a reload) reports them at their `file:line:col` instead
//! of the daemon failing later. The model keeps the parsed values (status
//! codes, DNS type, the command's argv), so building a checker from a valid
//! model is a plain mapping.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use haldir_scripts::ScriptError;

use crate::draft::{
    CheckDefaultsDraft, CheckDraft, CheckKindDraft, InstanceDraft, Located, RealServerDraft,
    ScriptsDraft, TrackScriptDraft, UrlDraft, VirtualServerDraft, VrrpScriptDraft,
};
use crate::error::{ConfigError, Loc};
use crate::model::{AddressFamily, LvsMethod, VrrpInstance};
use crate::model_health::{
    CheckConnection, CheckKind, CheckTimingSpec, DnsCheckSpec, DnsType, HealthCheck,
    HttpCheckOptions, HttpCheckSpec, HttpUrlSpec, MiscCheckSpec, ScriptCommand, Shared,
    SorryServer, StatusCodes, TlsVerify, TrackScript, UrlOptions, VrrpScript,
};
use crate::validate::{in_range, push, resolve_tracking, tracked_name, whole_units, TrackedKind};
use crate::validate_values::{ca_file_problem, dns_name_ok, tls_server_name_ok};

/// keepalived's default `delay_loop`.
const DEFAULT_DELAY_LOOP_MILLIS: u32 = 60_000;
/// keepalived's default `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT_MILLIS: u32 = 5_000;
/// keepalived's default `delay_before_retry` (HTTP_GET / SSL_GET: 3 s).
const DEFAULT_DELAY_BEFORE_RETRY_MILLIS: u32 = 1_000;
const DEFAULT_HTTP_DELAY_BEFORE_RETRY_MILLIS: u32 = 3_000;
/// keepalived's default `vrrp_script` interval.
const DEFAULT_SCRIPT_INTERVAL_MILLIS: u32 = 1_000;
/// keepalived's range of tracking weights.
const MAX_TRACK_WEIGHT: i64 = 253;
/// A sanity bound on `retry`, `rise` and `fall`.
const MAX_COUNT: i64 = 1_000_000;

/// A duration in whole milliseconds, more than `min_millis` exclusive when
/// `positive`; reports `key = value: hint` otherwise.
fn millis(
    errors: &mut Vec<ConfigError>,
    key: &str,
    value: &Located<f64>,
    positive: bool,
) -> Option<u32> {
    let ms = whole_units(value.value, 1000.0)
        .filter(|&ms| !positive || ms >= 1)
        .and_then(|ms| u32::try_from(ms).ok());
    if ms.is_none() {
        let bound = if positive { "more than 0" } else { "0 or more" };
        push(
            errors,
            &value.loc,
            format!(
                "{key} = {}: must be {bound} seconds, in steps of 0.001",
                value.value
            ),
        );
    }
    ms
}

/// The checker defaults of one level, validated (each `None` when absent or wrong).
#[derive(Debug, Default, Clone)]
struct Defaults {
    connect_timeout: Option<u32>,
    retry: Option<u32>,
    delay_before_retry: Option<u32>,
    warmup: Option<u32>,
    delay_loop: Option<u32>,
    alpha: Option<bool>,
}

impl Defaults {
    /// `inner`'s values where set, else `self`'s.
    fn under(&self, inner: &Defaults) -> Defaults {
        Defaults {
            connect_timeout: inner.connect_timeout.or(self.connect_timeout),
            retry: inner.retry.or(self.retry),
            delay_before_retry: inner.delay_before_retry.or(self.delay_before_retry),
            warmup: inner.warmup.or(self.warmup),
            delay_loop: inner.delay_loop.or(self.delay_loop),
            alpha: inner.alpha.or(self.alpha),
        }
    }
}

fn defaults(errors: &mut Vec<ConfigError>, d: &CheckDefaultsDraft) -> Defaults {
    Defaults {
        connect_timeout: d
            .connect_timeout
            .as_ref()
            .and_then(|v| millis(errors, "connect_timeout", v, true)),
        retry: d.retry.as_ref().and_then(|v| {
            in_range(
                errors,
                "retry",
                v,
                0..=MAX_COUNT,
                "must be 0 or more (extra attempts before a server that is up is declared down)",
            )
            .map(|n| n as u32)
        }),
        delay_before_retry: d
            .delay_before_retry
            .as_ref()
            .and_then(|v| millis(errors, "delay_before_retry", v, false)),
        warmup: d
            .warmup
            .as_ref()
            .and_then(|v| millis(errors, "warmup", v, false)),
        delay_loop: d
            .delay_loop
            .as_ref()
            .and_then(|v| millis(errors, "delay_loop", v, true)),
        alpha: d.alpha.as_ref().map(|a| a.value),
    }
}

/// What a virtual server adds for health checking; `None` fields are wrong (reported).
pub(crate) struct VirtualServerHealth {
    pub(crate) quorum: u32,
    pub(crate) hysteresis: u32,
    pub(crate) sorry_server: Option<SorryServer>,
    pub(crate) omega: bool,
}

/// Validates a virtual server's quorum, hysteresis, sorry server and omega.
/// `default_port` is the service's port (0 for fwmark).
pub(crate) fn virtual_server(
    errors: &mut Vec<ConfigError>,
    d: &VirtualServerDraft,
    family: Option<AddressFamily>,
    method: Option<LvsMethod>,
    default_port: u16,
) -> VirtualServerHealth {
    // Validated here once; real_server() re-reads them for the inheritance.
    defaults(errors, &d.extras().check_defaults);
    if let Some(v) = &d.extras().virtualhost {
        virtualhost(errors, v);
    }
    let quorum = match &d.extras().quorum {
        Some(q) => in_range(
            errors,
            "quorum",
            q,
            1..=i64::from(u32::MAX),
            "must be 1 or more (the sum of the weights of the live real servers the service needs)",
        )
        .map_or(1, |q| q as u32),
        None => 1,
    };
    let hysteresis = match &d.extras().hysteresis {
        Some(h) => {
            let value = in_range(
                errors,
                "hysteresis",
                h,
                0..=i64::from(u32::MAX),
                "must be 0 or more",
            )
            .map_or(0, |h| h as u32);
            if value >= quorum {
                push(
                    errors,
                    &h.loc,
                    format!(
                        "hysteresis = {value}: must be below quorum = {quorum}, or the quorum could never be lost; lower it or raise quorum"
                    ),
                );
            }
            value
        }
        None => 0,
    };
    let sorry_server = d.extras().sorry_server.as_ref().and_then(|s| {
        let (ip, port) = match (&s.value.text, &s.value.ip) {
            (Some(text), _) => {
                let mut words = text.value.split_whitespace();
                let ip = words.next().and_then(|w| w.parse::<IpAddr>().ok());
                let port = match words.next() {
                    None => Some(default_port),
                    Some(p) => p.parse::<u16>().ok().filter(|&p| p > 0),
                };
                match (ip, port, words.next()) {
                    (Some(ip), Some(port), None) => (ip, port),
                    _ => {
                        push(
                            errors,
                            &text.loc,
                            format!(
                                "sorry_server = {:?}: write \"IP\" or \"IP PORT\", e.g. \"10.0.0.250 80\"",
                                text.value
                            ),
                        );
                        return None;
                    }
                }
            }
            (None, Some(ip_text)) => {
                let Ok(ip) = ip_text.value.parse::<IpAddr>() else {
                    push(
                        errors,
                        &ip_text.loc,
                        format!("ip = {:?}: not an IP address", ip_text.value),
                    );
                    return None;
                };
                let port = match &s.value.port {
                    Some(p) => in_range(errors, "port", p, 1..=65535, "must be 1..=65535")? as u16,
                    None => default_port,
                };
                (ip, port)
            }
            (None, None) => {
                push(
                    errors,
                    &s.loc,
                    "sorry_server has no `ip`; write sorry_server = \"IP PORT\" or { ip = \"IP\", port = PORT }",
                );
                return None;
            }
        };
        if let Some(family) = family {
            if AddressFamily::of(&ip) != family && method != Some(LvsMethod::Tunnel) {
                push(
                    errors,
                    &s.loc,
                    format!(
                        "sorry_server {ip}: is {} but the virtual server is {family}; only lb_kind = \"TUN\" can mix families",
                        AddressFamily::of(&ip)
                    ),
                );
                return None;
            }
        }
        if let Some(rs) = d.real_servers.iter().find(|rs| {
            rs.ip.as_ref().and_then(|t| t.value.parse::<IpAddr>().ok()) == Some(ip)
                && rs
                    .port
                    .as_ref()
                    .map_or(default_port, |p| p.value as u16)
                    == port
        }) {
            push(
                errors,
                &s.loc,
                format!(
                    "sorry_server {ip} port {port}: is also the real_server at {}; a sorry server stands in for the real servers, so give it its own address or port",
                    rs.loc
                ),
            );
            return None;
        }
        Some(SorryServer {
            ip,
            port,
            inhibit: d.extras().sorry_server_inhibit.as_ref().is_some_and(|i| i.value),
        })
    });
    if let (Some(inhibit), None) = (&d.extras().sorry_server_inhibit, &d.extras().sorry_server) {
        push(
            errors,
            &inhibit.loc,
            "sorry_server_inhibit: only means something with a sorry_server; add one or remove this",
        );
    }
    VirtualServerHealth {
        quorum,
        hysteresis,
        sorry_server,
        omega: d.extras().omega.as_ref().is_some_and(|o| o.value),
    }
}

/// What a real server adds for health checking.
pub(crate) struct RealServerHealth {
    pub(crate) inhibit_on_failure: bool,
    pub(crate) checks: Vec<HealthCheck>,
}

/// Validates a real server's checkers. `ip` / `port` are the real server's
/// (when valid); `scripts` are the global script settings.
pub(crate) fn real_server(
    errors: &mut Vec<ConfigError>,
    vs: &VirtualServerDraft,
    d: &RealServerDraft,
    ip: Option<IpAddr>,
    port: Option<u16>,
    scripts: &ScriptsDraft,
) -> RealServerHealth {
    // The virtual server's defaults were reported by virtual_server(); read them quietly.
    let mut quiet = Vec::new();
    let mut vs_defaults = defaults(&mut quiet, &vs.extras().check_defaults);
    vs_defaults.delay_loop = vs
        .delay_loop
        .as_ref()
        .and_then(|v| millis(&mut quiet, "delay_loop", v, true));
    let rs_defaults = vs_defaults.under(&defaults(errors, &d.extras().check_defaults));
    if let Some(v) = &d.extras().virtualhost {
        virtualhost(errors, v);
    }
    let inhibit_on_failure = d
        .extras()
        .inhibit_on_failure
        .as_ref()
        .or(vs.extras().inhibit_on_failure.as_ref())
        .is_some_and(|i| i.value);
    let vhost = d
        .extras()
        .virtualhost
        .as_ref()
        .or(vs.extras().virtualhost.as_ref())
        .map(|v| v.value.clone());
    // Sized to the drafts (nearly always one): collected from a `filter_map`, the list
    // started at four checks (480 bytes for one of 120), 19 MB at 40,000 checked real
    // servers, which the start's parse paid for in page faults.
    let mut checks = Vec::with_capacity(d.checks.len());
    checks.extend(
        d.checks
            .iter()
            .filter_map(|c| check(errors, c, &rs_defaults, ip, port, vhost.as_deref(), scripts)),
    );
    RealServerHealth {
        inhibit_on_failure,
        checks,
    }
}

fn virtualhost(errors: &mut Vec<ConfigError>, v: &Located<String>) -> bool {
    let ok = !v.value.is_empty()
        && !v
            .value
            .contains(|c: char| c.is_whitespace() || c.is_control());
    if !ok {
        push(
            errors,
            &v.loc,
            format!(
                "virtualhost = {:?}: give a host name without spaces, e.g. \"www.example.com\"",
                v.value
            ),
        );
    }
    ok
}

/// `global_defs.script_user` split into (user, group).
fn global_script_user(scripts: &ScriptsDraft) -> (Option<String>, Option<String>) {
    let Some(text) = &scripts.script_user else {
        return (None, None);
    };
    let mut words = text.value.split_whitespace();
    (
        words.next().map(str::to_owned),
        words.next().map(str::to_owned),
    )
}

/// A virtual server's `quorum_up` / `quorum_down` or a real server's `notify_up` /
/// `notify_down`: each a command line that runs as `script_user` (checked as every script
/// is: it splits, the user exists, the program runs).
pub(crate) fn lvs_scripts(
    errors: &mut Vec<ConfigError>,
    (up_key, up): (&str, &Option<Located<String>>),
    (down_key, down): (&str, &Option<Located<String>>),
    scripts: &ScriptsDraft,
) -> crate::model::LvsScripts {
    let (user, group) = global_script_user(scripts);
    let mut one = |key: &str, script: &Option<Located<String>>| {
        let script = script.as_ref()?;
        let user_loc = *scripts.script_user.as_ref().map_or(&script.loc, |u| &u.loc);
        script_runs(
            errors,
            key,
            script,
            (user.as_deref(), group.as_deref()),
            &user_loc,
            script_security(scripts),
        )?;
        Some(script.value.clone())
    };
    let up = one(up_key, up);
    crate::model::LvsScripts::new(up, one(down_key, down))
}

/// `global_defs.enable_script_security`.
fn script_security(scripts: &ScriptsDraft) -> bool {
    scripts
        .enable_script_security
        .as_ref()
        .is_some_and(|f| f.value)
}

/// Checks that a script can run: the command line splits, the user and
/// group exist, the program exists and the user may execute it. Errors go
/// to `path_loc`, or to `user_loc` for an unknown user or group.
pub(crate) fn script_runs(
    errors: &mut Vec<ConfigError>,
    key: &str,
    path: &Located<String>,
    user: (Option<&str>, Option<&str>),
    user_loc: &Loc,
    security: bool,
) -> Option<ScriptCommand> {
    let command = match ScriptCommand::parse(&path.value) {
        Ok(command) => command,
        Err(e) => {
            push(errors, &path.loc, format!("{key} = {:?}: {e}", path.value));
            return None;
        }
    };
    match haldir_scripts::vet(command.argv(), user.0, user.1, security) {
        Ok(_) => Some(command),
        Err(e @ (ScriptError::UnknownUser(_) | ScriptError::UnknownGroup(_))) => {
            push(
                errors,
                user_loc,
                format!("{e}; create the account or name another"),
            );
            None
        }
        Err(e) => {
            push(errors, &path.loc, format!("{key} = {:?}: {e}", path.value));
            None
        }
    }
}

/// The socket address of `ip` text and `port`, reporting bad addresses.
fn address(errors: &mut Vec<ConfigError>, key: &str, text: &Located<String>) -> Option<IpAddr> {
    match text.value.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            push(
                errors,
                &text.loc,
                format!("{key} = {:?}: not an IP address", text.value),
            );
            None
        }
    }
}

fn check(
    errors: &mut Vec<ConfigError>,
    d: &CheckDraft,
    inherited: &Defaults,
    rs_ip: Option<IpAddr>,
    rs_port: Option<u16>,
    vhost: Option<&str>,
    scripts: &ScriptsDraft,
) -> Option<HealthCheck> {
    let errors_before = errors.len();
    let keyword = d.kind.keyword();
    let extras = d.extras();
    let own = defaults(errors, &d.defaults);
    let all = inherited.under(&own);
    let delay_loop = all.delay_loop.unwrap_or(DEFAULT_DELAY_LOOP_MILLIS);
    let (default_retry, default_delay_before_retry) = match d.kind {
        CheckKindDraft::Misc => (0, DEFAULT_DELAY_BEFORE_RETRY_MILLIS),
        CheckKindDraft::Dns => (3, delay_loop),
        CheckKindDraft::Http | CheckKindDraft::Ssl => (1, DEFAULT_HTTP_DELAY_BEFORE_RETRY_MILLIS),
        CheckKindDraft::Tcp | CheckKindDraft::Smtp | CheckKindDraft::Udp | CheckKindDraft::Ping => {
            (1, DEFAULT_DELAY_BEFORE_RETRY_MILLIS)
        }
    };
    let timing = CheckTimingSpec {
        delay_loop_millis: delay_loop,
        retry: all.retry.unwrap_or(default_retry),
        delay_before_retry_millis: all.delay_before_retry.unwrap_or(default_delay_before_retry),
        warmup_millis: all.warmup,
        alpha: all.alpha.unwrap_or(false),
    };

    // Where network checkers connect, from where, and for how long.
    let connection = |errors: &mut Vec<ConfigError>| -> Option<CheckConnection> {
        let ip = match &d.connect_ip {
            Some(text) => address(errors, "connect_ip", text),
            None => rs_ip,
        };
        let port = match &d.connect_port {
            Some(p) => in_range(errors, "connect_port", p, 1..=65535, "must be 1..=65535")
                .map(|p| p as u16),
            None => match rs_port {
                Some(0) => {
                    push(
                        errors,
                        &d.loc,
                        format!(
                            "{keyword}: the real server of a fwmark service has no port; set connect_port"
                        ),
                    );
                    None
                }
                other => other,
            },
        };
        let target = SocketAddr::new(ip?, port?);
        let bind_ip = match &extras.bindto {
            Some(text) => {
                let bind = address(errors, "bindto", text)?;
                if bind.is_ipv4() != target.is_ipv4() {
                    push(
                        errors,
                        &text.loc,
                        format!(
                            "bindto = {:?}: the check connects to {} ({}), so the source must be of the same family",
                            text.value,
                            target.ip(),
                            AddressFamily::of(&target.ip())
                        ),
                    );
                    return None;
                }
                Some(bind)
            }
            None => None,
        };
        let bind_port = match &extras.bind_port {
            Some(p) => {
                Some(in_range(errors, "bind_port", p, 1..=65535, "must be 1..=65535")? as u16)
            }
            None => None,
        };
        let bind_to = match (bind_ip, bind_port) {
            (None, None) => None,
            (ip, port) => Some(SocketAddr::new(
                ip.unwrap_or(if target.is_ipv4() {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                } else {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                }),
                port.unwrap_or(0),
            )),
        };
        Some(CheckConnection {
            target,
            bind_to: bind_to.map(Box::new),
            connect_timeout_millis: all
                .connect_timeout
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT_MILLIS),
        })
    };

    let kind = match d.kind {
        CheckKindDraft::Tcp => connection(errors).map(CheckKind::Tcp),
        CheckKindDraft::Http | CheckKindDraft::Ssl => {
            let tls = d.kind == CheckKindDraft::Ssl;
            let connection = connection(errors);
            let own_vhost = extras
                .virtualhost
                .as_ref()
                .filter(|v| virtualhost(errors, v));
            let vhost = own_vhost
                .map(|v| v.value.clone())
                .or(vhost.map(str::to_owned));
            if d.urls.is_empty() && !d.present.contains(&"url") {
                push(
                    errors,
                    &d.loc,
                    format!(
                        "{keyword} has no url; add e.g. url = [{{ path = \"/health\", status_code = 200 }}]"
                    ),
                );
            }
            let urls: Vec<Option<HttpUrlSpec>> =
                d.urls.iter().map(|u| url(errors, u, tls)).collect();
            let verify = match (&extras.verify, &extras.ca_file) {
                (Some(v), Some(_)) if !v.value => {
                    push(
                        errors,
                        &v.loc,
                        "verify = false: contradicts ca_file (which verifies against that CA); remove one",
                    );
                    None
                }
                (_, Some(ca)) => match ca_file_problem(std::path::Path::new(&ca.value)) {
                    None => Some(TlsVerify::CaFile(ca.value.clone())),
                    Some(problem) => {
                        push(
                            errors,
                            &ca.loc,
                            format!("ca_file = {:?}: CA file {}: {problem}", ca.value, ca.value),
                        );
                        None
                    }
                },
                (Some(v), None) if v.value => Some(TlsVerify::SystemRoots),
                _ => Some(TlsVerify::Off),
            };
            if tls {
                // SNI needs a DNS name.
                if let Some(name) = &vhost {
                    if !tls_server_name_ok(name) {
                        let at = extras.virtualhost.as_ref().map_or(&d.loc, |v| &v.loc);
                        push(
                            errors,
                            at,
                            format!("virtualhost {name:?}: not a valid host name for TLS SNI"),
                        );
                    }
                }
            }
            match (connection, verify, urls.iter().all(Option::is_some)) {
                (Some(connection), Some(verify), true) if !urls.is_empty() => {
                    Some(CheckKind::Http(Shared::new(HttpCheckSpec::new(
                        tls,
                        connection,
                        urls.into_iter().flatten(),
                        HttpCheckOptions {
                            virtualhost: vhost,
                            verify,
                        },
                    ))))
                }
                _ => None,
            }
        }
        CheckKindDraft::Misc => {
            let timeout = match &extras.misc_timeout {
                Some(t) => millis(errors, "misc_timeout", t, true),
                None => Some(delay_loop),
            };
            let (global_user, global_group) = global_script_user(scripts);
            let user = extras
                .user
                .as_ref()
                .map(|u| u.value.clone())
                .or(global_user);
            let group = match &extras.user {
                Some(_) => extras.group.as_ref().map(|g| g.value.clone()),
                None => extras
                    .group
                    .as_ref()
                    .map(|g| g.value.clone())
                    .or(global_group),
            };
            let user_loc = *extras
                .user
                .as_ref()
                .or(extras.group.as_ref())
                .map_or(&d.loc, |u| &u.loc);
            match &extras.misc_path {
                None => {
                    if !d.present.contains(&"misc_path") {
                        push(
                            errors,
                            &d.loc,
                            "MISC_CHECK is missing `misc_path`; add e.g. misc_path = \"/usr/local/bin/check_web\"",
                        );
                    }
                    None
                }
                Some(path) => {
                    let command = script_runs(
                        errors,
                        "misc_path",
                        path,
                        (user.as_deref(), group.as_deref()),
                        &user_loc,
                        script_security(scripts),
                    );
                    match (command, timeout) {
                        (Some(command), Some(timeout)) => {
                            Some(CheckKind::Misc(Box::new(MiscCheckSpec {
                                misc_path: command,
                                misc_timeout_millis: timeout,
                                misc_dynamic: extras.misc_dynamic.as_ref().is_some_and(|m| m.value),
                                user,
                                group,
                            })))
                        }
                        _ => None,
                    }
                }
            }
        }
        CheckKindDraft::Dns => {
            let connection = connection(errors);
            let query_type = match &extras.dns_type {
                Some(t) => match DnsType::parse(&t.value) {
                    Some(query_type) => Some(query_type),
                    None => {
                        push(
                            errors,
                            &t.loc,
                            format!(
                                "type = {:?}: must be one of A, NS, CNAME, SOA, MX, TXT, AAAA",
                                t.value
                            ),
                        );
                        None
                    }
                },
                None => Some(DnsType::Soa),
            };
            let name = match &extras.dns_name {
                Some(n) if dns_name_ok(&n.value) => Some(n.value.clone()),
                Some(n) => {
                    push(
                        errors,
                        &n.loc,
                        format!(
                            "name = {:?}: DNS name {:?}: labels must be 1-63 bytes and the name at most 255",
                            n.value, n.value
                        ),
                    );
                    None
                }
                None => Some(".".to_owned()),
            };
            Some(CheckKind::Dns(Box::new(DnsCheckSpec {
                connection: connection?,
                query_type: query_type?,
                name: name?,
            })))
        }
        CheckKindDraft::Smtp => {
            let connection = connection(errors);
            let helo_name = match &extras.helo_name {
                Some(n)
                    if !n.value.is_empty()
                        && !n
                            .value
                            .contains(|c: char| c.is_whitespace() || c.is_control()) =>
                {
                    Some(n.value.clone())
                }
                Some(n) => {
                    push(
                        errors,
                        &n.loc,
                        format!("helo_name = {:?}: give one name without spaces (it is sent as `HELO name`)", n.value),
                    );
                    None
                }
                None => Some(crate::model_health::DEFAULT_HELO_NAME.to_owned()),
            };
            Some(CheckKind::Smtp(Box::new(
                crate::model_health::SmtpCheckSpec {
                    connection: connection?,
                    helo_name: helo_name?,
                },
            )))
        }
        CheckKindDraft::Udp => {
            let connection = connection(errors);
            udp(errors, d, connection)
        }
        CheckKindDraft::Ping => connection(errors).map(CheckKind::Ping),
    };
    if errors.len() > errors_before {
        return None;
    }
    Some(HealthCheck {
        kind: kind?,
        timing,
        loc: d.loc,
    })
}

/// A `UDP_CHECK`'s own settings (keepalived's hex strings and reply lengths).
fn udp(
    errors: &mut Vec<ConfigError>,
    d: &CheckDraft,
    connection: Option<CheckConnection>,
) -> Option<CheckKind> {
    let extras = d.extras();
    let hex =
        |errors: &mut Vec<ConfigError>, key: &str, text: &Located<String>, wildcards: bool| {
            crate::model_health::HexBytes::parse(&text.value, wildcards)
                .map_err(|why| {
                    let hint = if wildcards {
                        "hex digits, `x` for a nibble not compared, e.g. \"0a 1x ff\""
                    } else {
                        "hex digits, e.g. \"00 01 ab cd\""
                    };
                    push(
                        errors,
                        &text.loc,
                        format!("{key} {:?}: {why}; write {hint}", text.value),
                    );
                })
                .ok()
        };
    let payload = match &extras.payload {
        Some(text) => hex(errors, "payload", text, false),
        None => Some(crate::model_health::HexBytes::default()),
    };
    let require_reply = match &extras.require_reply {
        Some(text) => hex(errors, "require_reply", text, true).map(Some),
        None => Some(None),
    };
    let length = |errors: &mut Vec<ConfigError>,
                  key: &str,
                  value: &Option<Located<i64>>,
                  default: u16| match value {
        Some(v) => in_range(errors, key, v, 0..=65_535, "must be 0..=65535").map(|n| n as u16),
        None => Some(default),
    };
    let min = length(errors, "min_reply_length", &extras.min_reply_length, 0);
    let max = length(errors, "max_reply_length", &extras.max_reply_length, 255);
    if extras.require_reply.is_none() {
        for (key, value) in [
            ("min_reply_length", &extras.min_reply_length),
            ("max_reply_length", &extras.max_reply_length),
        ] {
            if let Some(v) = value {
                push(
                    errors,
                    &v.loc,
                    format!(
                        "{key}: only means something with require_reply; add it or remove this"
                    ),
                );
            }
        }
    }
    if let (Some(lo), Some(hi), Some(at)) = (min, max, extras.min_reply_length.as_ref()) {
        if lo > hi {
            push(
                errors,
                &at.loc,
                format!("min_reply_length = {lo}: is above max_reply_length = {hi}; no reply could pass"),
            );
        }
    }
    Some(CheckKind::Udp(Box::new(
        crate::model_health::UdpCheckSpec {
            connection: connection?,
            payload: payload?,
            require_reply: require_reply?,
            min_reply_length: min?,
            max_reply_length: max?,
        },
    )))
}

fn url(errors: &mut Vec<ConfigError>, d: &UrlDraft, tls: bool) -> Option<HttpUrlSpec> {
    let errors_before = errors.len();
    let path = match &d.path {
        Some(p) if p.value.starts_with('/') && !p.value.contains(char::is_whitespace) => {
            // Copied inline when short (from a `String` its buffer would be kept).
            Some(compact_str::CompactString::new(&p.value))
        }
        Some(p) => {
            push(
                errors,
                &p.loc,
                format!(
                    "path = {:?}: must start with '/' and contain no spaces (origin form, e.g. \"/health\")",
                    p.value
                ),
            );
            None
        }
        None => {
            if !d.present.contains(&"path") {
                push(
                    errors,
                    &d.loc,
                    "this url has no `path`; add e.g. path = \"/health\"",
                );
            }
            None
        }
    };
    let status_code = d
        .status_code
        .as_ref()
        .and_then(|s| match StatusCodes::parse(&s.value) {
            Ok(codes) => Some(codes),
            Err(e) => {
                push(errors, &s.loc, format!("status_code = {:?}: {e}", s.value));
                None
            }
        });
    let digest = d.digest.as_ref().and_then(|g| {
        if g.value.len() == 32 && g.value.bytes().all(|b| b.is_ascii_hexdigit()) {
            Some(g.value.to_ascii_lowercase())
        } else {
            push(
                errors,
                &g.loc,
                format!(
                    "digest = {:?}: expected 32 hex digits, the MD5 of the body as genhash prints it",
                    g.value
                ),
            );
            None
        }
    });
    if let Some(r) = &d.regex {
        // The checker matches bodies with regex::bytes: the same syntax is checked here.
        if let Err(e) = regex::bytes::Regex::new(&r.value) {
            push(
                errors,
                &r.loc,
                format!("regex = {:?}: regex {:?}: {e}", r.value, r.value),
            );
        }
    }
    if let Some(rnm) = &d.regex_no_match {
        if rnm.value && d.regex.is_none() {
            push(
                errors,
                &rnm.loc,
                "regex_no_match = true: only means something with a regex; add one or remove this",
            );
        }
    }
    if let Some(v) = &d.virtualhost {
        if virtualhost(errors, v) && tls && !tls_server_name_ok(&v.value) {
            push(
                errors,
                &v.loc,
                format!(
                    "virtualhost = {:?}: not a valid host name for TLS SNI",
                    v.value
                ),
            );
        }
    }
    if errors.len() > errors_before {
        return None;
    }
    let options = UrlOptions {
        digest,
        regex: d.regex.as_ref().map(|r| r.value.clone()),
        regex_no_match: d.regex_no_match.as_ref().is_some_and(|r| r.value),
        virtualhost: d.virtualhost.as_ref().map(|v| v.value.clone()),
    };
    Some(HttpUrlSpec::new(path?, status_code, options))
}

/// Validates the `vrrp_script`s: names unique, the script runnable by its user.
pub(crate) fn vrrp_scripts(
    errors: &mut Vec<ConfigError>,
    drafts: &[VrrpScriptDraft],
    scripts: &ScriptsDraft,
) -> Vec<VrrpScript> {
    let mut seen: HashMap<String, Loc> = HashMap::new();
    let mut result = Vec::new();
    for d in drafts {
        let errors_before = errors.len();
        for (key, example) in [
            ("name", "name = \"chk_web\""),
            ("script", "script = \"/usr/local/bin/check_web\""),
        ] {
            if !d.present.contains(&key) {
                push(
                    errors,
                    &d.loc,
                    format!("this vrrp_script is missing `{key}`; add e.g. `{example}`"),
                );
            }
        }
        let name = d.name.as_ref().and_then(|n| {
            if n.value.is_empty() || n.value.contains(char::is_whitespace) {
                push(
                    errors,
                    &n.loc,
                    format!("name = {:?}: give the script a name without spaces", n.value),
                );
                return None;
            }
            if let Some(first) = seen.get(&n.value) {
                push(
                    errors,
                    &n.loc,
                    format!(
                        "name = {:?}: already used by the vrrp_script at {first}; give each script its own name",
                        n.value
                    ),
                );
                return None;
            }
            seen.insert(n.value.clone(), d.loc);
            Some(n.value.clone())
        });
        let interval = match &d.interval {
            Some(i) => millis(errors, "interval", i, true),
            None => Some(DEFAULT_SCRIPT_INTERVAL_MILLIS),
        };
        let timeout = match &d.timeout {
            Some(t) => millis(errors, "timeout", t, true),
            None => interval,
        };
        let weight = match &d.weight {
            Some(w) => in_range(
                errors,
                "weight",
                w,
                -MAX_TRACK_WEIGHT..=MAX_TRACK_WEIGHT,
                "must be -253..=253 (0: failing puts the tracking instances in FAULT)",
            )
            .map(|w| w as i32),
            None => Some(0),
        };
        let count = |errors: &mut Vec<ConfigError>, key: &str, v: &Option<Located<i64>>| match v {
            Some(v) => {
                in_range(errors, key, v, 1..=MAX_COUNT, "must be 1 or more").map(|n| n as u32)
            }
            None => Some(1),
        };
        let rise = count(errors, "rise", &d.rise);
        let fall = count(errors, "fall", &d.fall);
        let (global_user, global_group) = global_script_user(scripts);
        let user = d.user.as_ref().map(|u| u.value.clone()).or(global_user);
        let group = match &d.user {
            Some(_) => d.group.as_ref().map(|g| g.value.clone()),
            None => d.group.as_ref().map(|g| g.value.clone()).or(global_group),
        };
        let user_loc = *d
            .user
            .as_ref()
            .or(d.group.as_ref())
            .map_or(&d.loc, |u| &u.loc);
        let command = d.script.as_ref().and_then(|script| {
            script_runs(
                errors,
                "script",
                script,
                (user.as_deref(), group.as_deref()),
                &user_loc,
                script_security(scripts),
            )
        });
        if errors.len() > errors_before {
            continue;
        }
        let (Some(name), Some(script), Some(interval_millis), Some(timeout_millis)) =
            (name, command, interval, timeout)
        else {
            continue;
        };
        let (Some(weight), Some(rise), Some(fall)) = (weight, rise, fall) else {
            continue;
        };
        result.push(VrrpScript {
            name,
            script,
            interval_millis,
            timeout_millis,
            weight,
            rise,
            fall,
            user,
            group,
            init_fail: d.init_fail.as_ref().is_some_and(|i| i.value),
            loc: d.loc,
        });
    }
    result
}

/// Resolves every instance's `track_script` against the scripts and stores
/// it in the validated instance (`instances` is aligned with `drafts`).
pub(crate) fn track_scripts(
    errors: &mut Vec<ConfigError>,
    drafts: &[InstanceDraft],
    instances: &mut [Option<VrrpInstance>],
    script_drafts: &[VrrpScriptDraft],
    scripts: &[VrrpScript],
) {
    let defined: Vec<&str> = script_drafts
        .iter()
        .filter_map(|s| s.name.as_ref().map(|n| n.value.as_str()))
        .collect();
    resolve_tracking(
        errors,
        &SCRIPTS,
        (drafts, instances),
        |d| d.track_script.as_ref(),
        |errors, entry, seen| track_entry(errors, entry, &defined, scripts, seen),
        |t| (t.name.as_str(), t.weight),
        |instance, tracked| instance.track_script = tracked,
    );
}

/// What `track_script` refers to, for the shared messages.
const SCRIPTS: TrackedKind = TrackedKind {
    keyword: "track_script",
    item: "script",
    block: "[[vrrp_script]]",
    items: "scripts",
    weight_zero: "FAULT on failure",
};

fn track_entry<'a>(
    errors: &mut Vec<ConfigError>,
    entry: &'a TrackScriptDraft,
    defined: &[&str],
    scripts: &[VrrpScript],
    seen: &mut HashMap<&'a str, &'a Loc>,
) -> Option<TrackScript> {
    let name = entry.name.as_ref()?;
    if !tracked_name(errors, &SCRIPTS, (&entry.loc, name), defined, seen) {
        return None;
    }
    let weight = match &entry.weight {
        Some(w) => in_range(
            errors,
            "weight",
            w,
            -MAX_TRACK_WEIGHT..=MAX_TRACK_WEIGHT,
            "must be -253..=253 (0: failing puts the instance in FAULT)",
        )? as i32,
        // The script itself is invalid (reported there) when it is not in `scripts`.
        None => scripts.iter().find(|s| s.name == name.value)?.weight,
    };
    Some(TrackScript {
        name: name.value.clone(),
        weight,
    })
}
