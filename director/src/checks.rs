//! The validated model's checkers and `vrrp_script`s → the health crate's configurations:
//! a plain mapping (the model already holds parsed status codes, DNS types and commands),
//! so it cannot fail on a valid model. Also their scheduler timing, and what identifies a
//! `vrrp_script` run across reloads.

use std::time::Duration;

use haldir_config::{CheckKind, CheckTimingSpec, DnsType, HealthCheck, VrrpScript};
use haldir_health::checker::CheckerConfig;
use haldir_health::dns::{self, DnsCheckConfig};
use haldir_health::misc::{MiscCheckConfig, MiscCommand};
use haldir_health::ping::PingCheck;
use haldir_health::smtp::SmtpCheck;
use haldir_health::tcp::TcpCheck;
use haldir_health::udp::{ReplyRule, UdpCheck};
use haldir_health::CheckTiming;

fn millis(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms))
}

/// The health crate's configuration of a model checker.
pub fn checker_config(check: &HealthCheck) -> CheckerConfig {
    match &check.kind {
        CheckKind::Tcp(c) => {
            let mut tcp = TcpCheck::new(c.target);
            tcp.bind_to = c.bind_to.clone();
            tcp.connect_timeout = millis(c.connect_timeout_millis);
            CheckerConfig::Tcp(tcp)
        }
        CheckKind::Http(settings) => CheckerConfig::Http(settings.share()),
        CheckKind::Misc(m) => {
            let command = MiscCommand::Exec(m.misc_path.argv().to_vec());
            let mut config = MiscCheckConfig::new(command, millis(m.misc_timeout_millis));
            config.dynamic = m.misc_dynamic;
            config.user = m.user.clone();
            config.group = m.group.clone();
            CheckerConfig::Misc(config)
        }
        CheckKind::Dns(d) => CheckerConfig::Dns(DnsCheckConfig {
            target: d.connection.target,
            bind_to: d.connection.bind_to.as_deref().copied(),
            timeout: millis(d.connection.connect_timeout_millis),
            query_type: dns_type(d.query_type),
            name: d.name.clone(),
        }),
        CheckKind::Smtp(s) => CheckerConfig::Smtp(SmtpCheck {
            target: s.connection.target,
            bind_to: s.connection.bind_to.as_deref().copied(),
            timeout: millis(s.connection.connect_timeout_millis),
            helo_name: s.helo_name.clone(),
        }),
        CheckKind::Udp(u) => CheckerConfig::Udp(UdpCheck {
            target: u.connection.target,
            bind_to: u.connection.bind_to.as_deref().copied(),
            timeout: millis(u.connection.connect_timeout_millis),
            payload: u.payload.data.clone(),
            require_reply: u.require_reply.as_ref().map(|pattern| ReplyRule {
                data: pattern.data.clone(),
                mask: pattern.mask.clone(),
                min_len: usize::from(u.min_reply_length),
                max_len: usize::from(u.max_reply_length),
            }),
        }),
        CheckKind::Ping(c) => CheckerConfig::Ping(PingCheck {
            target: c.target.ip(),
            bind_to: c.bind_to.as_deref().map(std::net::SocketAddr::ip),
            timeout: millis(c.connect_timeout_millis),
        }),
    }
}

/// The health crate's DNS query type.
pub fn dns_type(query_type: DnsType) -> dns::DnsType {
    match query_type {
        DnsType::A => dns::DnsType::A,
        DnsType::Ns => dns::DnsType::Ns,
        DnsType::Cname => dns::DnsType::Cname,
        DnsType::Soa => dns::DnsType::Soa,
        DnsType::Mx => dns::DnsType::Mx,
        DnsType::Txt => dns::DnsType::Txt,
        DnsType::Aaaa => dns::DnsType::Aaaa,
    }
}

/// The runner of a `vrrp_script`: run like a `MISC_CHECK` (no shell, as its unprivileged
/// user, killed with its process group at `timeout`).
pub fn script_config(script: &VrrpScript) -> CheckerConfig {
    let command = MiscCommand::Exec(script.script.argv().to_vec());
    let mut config = MiscCheckConfig::new(command, millis(script.timeout_millis));
    config.user = script.user.clone();
    config.group = script.group.clone();
    CheckerConfig::Misc(config)
}

/// The scheduler timing of a checker.
pub fn check_timing(timing: &CheckTimingSpec) -> CheckTiming {
    CheckTiming {
        delay_loop: millis(timing.delay_loop_millis),
        retry: timing.retry,
        delay_before_retry: millis(timing.delay_before_retry_millis),
        warmup: timing.warmup_millis.map(millis),
        rise: 1,
        fall: 1,
        alpha: timing.alpha,
    }
}

/// The scheduler timing of a `vrrp_script`: every `interval`, no retries, `rise` / `fall`,
/// first run at once, starting failed with `init_fail`.
pub fn script_timing(script: &VrrpScript) -> CheckTiming {
    let interval = millis(script.interval_millis);
    CheckTiming {
        delay_loop: interval,
        retry: 0,
        delay_before_retry: interval,
        warmup: Some(Duration::ZERO),
        rise: script.rise,
        fall: script.fall,
        alpha: script.init_fail,
    }
}

/// What identifies one `vrrp_script` run across reloads (its weight is not part of it:
/// a new weight changes the tracking, not the script's state).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScriptKey {
    /// The script's name (what `track_script` refers to).
    pub name: String,
    script: String,
    interval_millis: u32,
    timeout_millis: u32,
    rise: u32,
    fall: u32,
    user: Option<String>,
    group: Option<String>,
    init_fail: bool,
}

impl ScriptKey {
    /// The key of `script`.
    pub fn of(script: &VrrpScript) -> Self {
        ScriptKey {
            name: script.name.clone(),
            script: script.script.as_str().to_owned(),
            interval_millis: script.interval_millis,
            timeout_millis: script.timeout_millis,
            rise: script.rise,
            fall: script.fall,
            user: script.user.clone(),
            group: script.group.clone(),
            init_fail: script.init_fail,
        }
    }
}

#[cfg(test)]
mod tests;
