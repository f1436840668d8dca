//! A checker described as data ([`CheckerConfig`], one variant per kind) and [`build`],
//! which turns it into the running [`Checker`]. The wiring gets a `CheckerConfig` from the
//! validated configuration by a plain mapping; what can still fail here is the world at run
//! time, not the configuration: a script deleted or made unexecutable since `haldir check`,
//! its user gone, a CA file that no longer reads. [`Checkers`] builds many at once and
//! shares one running checker between equal `TCP_CHECK`s.

use std::collections::HashMap;
use std::sync::Arc;

use haldir_config::HttpCheckSpec;

use crate::dns::{DnsCheck, DnsCheckConfig};
use crate::misc::{MiscCheck, MiscCheckConfig};
use crate::ping::PingCheck;
use crate::smtp::SmtpCheck;
use crate::tcp::TcpCheck;
use crate::udp::UdpCheck;
use crate::Checker;

/// One checker of any kind, as configured.
#[derive(Debug, Clone)]
pub enum CheckerConfig {
    /// `TCP_CHECK` (ready to run as it is).
    Tcp(TcpCheck),
    /// `HTTP_GET` / `SSL_GET`: the model's settings, shared.
    Http(Arc<HttpCheckSpec>),
    /// `MISC_CHECK` (and `vrrp_script`, run the same way).
    Misc(MiscCheckConfig),
    /// `DNS_CHECK`.
    Dns(DnsCheckConfig),
    /// `SMTP_CHECK`.
    Smtp(SmtpCheck),
    /// `UDP_CHECK`.
    Udp(UdpCheck),
    /// `PING_CHECK`.
    Ping(PingCheck),
}

/// The running checker `config` describes. The error says why it cannot run now (see the
/// module comment: on a validated configuration, only the world can have changed).
pub fn build(config: CheckerConfig) -> Result<Arc<dyn Checker>, String> {
    Ok(match config {
        CheckerConfig::Tcp(tcp) => Arc::new(tcp),
        CheckerConfig::Http(http) => crate::http::checker(http).map_err(|e| e.to_string())?,
        CheckerConfig::Misc(misc) => Arc::new(MiscCheck::new(misc).map_err(|e| e.to_string())?),
        CheckerConfig::Dns(dns) => {
            Arc::new(DnsCheck::from_config(&dns).map_err(|e| e.to_string())?)
        }
        CheckerConfig::Smtp(smtp) => Arc::new(smtp),
        CheckerConfig::Udp(udp) => Arc::new(udp),
        CheckerConfig::Ping(ping) => Arc::new(ping),
    })
}

/// Builds the checkers of one start or reload: like [`build`], but equal `TCP_CHECK`s (the
/// same target, source, timeout and close) get one running checker, shared. A checker keeps
/// nothing between runs, so each check is still scheduled and run on its own, as often
/// as before; only the settings are held once. A real server behind many virtual servers
/// (a pool of servers behind thousands of VIPs; the scale benchmark's 10,000 virtual
/// servers of the same four) has one `TCP_CHECK` object instead of one per virtual
/// server: 96 bytes each, 3.8 MB at 40,000.
#[derive(Default)]
pub struct Checkers {
    tcp: HashMap<TcpCheck, Arc<dyn Checker>>,
}

impl Checkers {
    /// The running checker `config` describes (see [`build`]).
    pub fn build(&mut self, config: CheckerConfig) -> Result<Arc<dyn Checker>, String> {
        match config {
            CheckerConfig::Tcp(tcp) => Ok(Arc::clone(
                self.tcp
                    .entry(tcp)
                    .or_insert_with_key(|tcp| Arc::new(tcp.clone())),
            )),
            other => build(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;

    fn tcp(target: &str, timeout_ms: u64) -> CheckerConfig {
        let mut check = TcpCheck::new(target.parse::<SocketAddr>().unwrap());
        check.connect_timeout = Duration::from_millis(timeout_ms);
        CheckerConfig::Tcp(check)
    }

    #[test]
    fn equal_tcp_checks_share_one_checker_and_different_ones_do_not() {
        let mut checkers = Checkers::default();
        let first = checkers.build(tcp("10.0.0.1:80", 5000)).unwrap();
        let same = checkers.build(tcp("10.0.0.1:80", 5000)).unwrap();
        let other_port = checkers.build(tcp("10.0.0.1:81", 5000)).unwrap();
        let other_timeout = checkers.build(tcp("10.0.0.1:80", 3000)).unwrap();
        assert!(Arc::ptr_eq(&first, &same));
        assert!(!Arc::ptr_eq(&first, &other_port));
        assert!(!Arc::ptr_eq(&first, &other_timeout));
        // Apart from the one held for sharing: the two equal checks and the map.
        assert_eq!(Arc::strong_count(&first), 3);
    }
}
