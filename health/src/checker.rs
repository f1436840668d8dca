//! A checker described as data ([`CheckerConfig`], one variant per kind) and [`build`],
//! which turns it into the running [`Checker`]. The wiring gets a `CheckerConfig` from the
//! validated configuration by a plain mapping; what can still fail here is the world at run
//! time, not the configuration: a script deleted or made unexecutable since `haldir check`,
//! its user gone, a CA file that no longer reads.

use std::sync::Arc;

use crate::dns::{DnsCheck, DnsCheckConfig};
use crate::http::{HttpCheck, HttpCheckConfig};
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
    /// `HTTP_GET` / `SSL_GET`.
    Http(HttpCheckConfig),
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
        CheckerConfig::Http(http) => Arc::new(HttpCheck::new(http).map_err(|e| e.to_string())?),
        CheckerConfig::Misc(misc) => Arc::new(MiscCheck::new(misc).map_err(|e| e.to_string())?),
        CheckerConfig::Dns(dns) => {
            Arc::new(DnsCheck::from_config(&dns).map_err(|e| e.to_string())?)
        }
        CheckerConfig::Smtp(smtp) => Arc::new(smtp),
        CheckerConfig::Udp(udp) => Arc::new(udp),
        CheckerConfig::Ping(ping) => Arc::new(ping),
    })
}
