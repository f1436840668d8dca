//! The validated health-checking part of the model: the checkers of a real
//! server, a virtual server's quorum and sorry server, `vrrp_script`s and the
//! instances' `track_script`. Every default of keepalived is resolved here
//! (the checker inherits `delay_loop`, `retry`, ... from its real server, then
//! its virtual server), so the daemon reads plain values.

use std::net::{IpAddr, SocketAddr};

use crate::error::Loc;

/// Timing and hysteresis of one checker, every default resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CheckTimingSpec {
    /// `delay_loop`: milliseconds between rounds (checker, real server,
    /// virtual server, else 60 s).
    pub delay_loop_millis: u32,
    /// `retry`: extra attempts after a failure of a server that is up
    /// (default 1; `MISC_CHECK` 0; `DNS_CHECK` 3).
    pub retry: u32,
    /// `delay_before_retry`, milliseconds (default 1 s; `HTTP_GET` / `SSL_GET`
    /// 3 s; `DNS_CHECK` the `delay_loop`).
    pub delay_before_retry_millis: u32,
    /// `warmup`, milliseconds: the first run is at a random time up to this;
    /// `None`: up to `delay_loop` (keepalived's default).
    pub warmup_millis: Option<u32>,
    /// `alpha`: the server starts down until the checker proves it up.
    pub alpha: bool,
}

/// One health checker of a real server (keepalived `TCP_CHECK`, `HTTP_GET`,
/// `SSL_GET`, `MISC_CHECK`, `DNS_CHECK`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// What it checks and how.
    pub kind: CheckKind,
    /// When it runs.
    pub timing: CheckTimingSpec,
    /// Where the checker's table starts in the configuration file.
    pub loc: Loc,
}

/// Connection settings shared by the network checkers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CheckConnection {
    /// `connect_ip` / `connect_port`: where to connect (default the real
    /// server's address and port).
    pub target: SocketAddr,
    /// `bindto` / `bind_port`: the source of the check's traffic.
    pub bind_to: Option<SocketAddr>,
    /// `connect_timeout`, milliseconds (checker, real server, virtual server,
    /// else 5 s).
    pub connect_timeout_millis: u32,
}

/// The kind of a checker with its own settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// `TCP_CHECK`: a TCP connection completes.
    Tcp(CheckConnection),
    /// `HTTP_GET` / `SSL_GET`.
    Http(HttpCheckSpec),
    /// `MISC_CHECK`.
    Misc(MiscCheckSpec),
    /// `DNS_CHECK`.
    Dns(DnsCheckSpec),
}

impl CheckKind {
    /// keepalived's keyword for the kind.
    pub fn keyword(&self) -> &'static str {
        match self {
            CheckKind::Tcp(_) => "TCP_CHECK",
            CheckKind::Http(http) if http.tls => "SSL_GET",
            CheckKind::Http(_) => "HTTP_GET",
            CheckKind::Misc(_) => "MISC_CHECK",
            CheckKind::Dns(_) => "DNS_CHECK",
        }
    }
}

/// `HTTP_GET` / `SSL_GET`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpCheckSpec {
    /// `SSL_GET`.
    pub tls: bool,
    /// Where and how to connect.
    pub connection: CheckConnection,
    /// `virtualhost` (checker, real server, virtual server): Host header and SNI.
    pub virtualhost: Option<String>,
    /// The `url`s; all must pass. At least one.
    pub urls: Vec<HttpUrlSpec>,
    /// `SSL_GET` certificate verification.
    pub verify: TlsVerify,
}

/// One `url` of an HTTP check, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpUrlSpec {
    /// `path`, starting with `/`.
    pub path: String,
    /// `status_code` as written ("200-299 404"); `None`: 200-299.
    pub status_code: Option<String>,
    /// `digest`: MD5 of the body, 32 lower-case hex digits.
    pub digest: Option<String>,
    /// `regex`.
    pub regex: Option<String>,
    /// `regex_no_match`.
    pub regex_no_match: bool,
    /// `virtualhost` of this url.
    pub virtualhost: Option<String>,
}

/// Certificate verification of `SSL_GET`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum TlsVerify {
    /// Any certificate (keepalived's behaviour, the default).
    #[default]
    Off,
    /// The system's trusted roots (`verify = true`).
    SystemRoots,
    /// The CA certificates in this PEM file (`ca_file`).
    CaFile(String),
}

/// `MISC_CHECK`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MiscCheckSpec {
    /// `misc_path`: the command line (split like keepalived, no shell).
    pub misc_path: String,
    /// `misc_timeout`, milliseconds (default: the `delay_loop`).
    pub misc_timeout_millis: u32,
    /// `misc_dynamic`: exit 2..=255 sets the weight to status − 2.
    pub misc_dynamic: bool,
    /// `user` (else `global_defs.script_user`, else the default account).
    pub user: Option<String>,
    /// `group` (else the user's primary group).
    pub group: Option<String>,
}

/// `DNS_CHECK`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DnsCheckSpec {
    /// Where to send the query.
    pub connection: CheckConnection,
    /// `type`, upper case (default "SOA").
    pub query_type: String,
    /// `name` (default ".").
    pub name: String,
}

/// A virtual server's `sorry_server`: the one destination while the quorum is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SorryServer {
    /// Address.
    pub ip: IpAddr,
    /// Port (default the virtual server's).
    pub port: u16,
    /// `sorry_server_inhibit`: while the quorum holds, keep the sorry server
    /// with weight 0 instead of removing it.
    pub inhibit: bool,
}

/// A `vrrp_script`: a command run every `interval` whose exit status moves
/// the priority of the instances that track it (or puts them in FAULT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpScript {
    /// Unique name, referred to by `track_script`.
    pub name: String,
    /// `script`: the command line (split like keepalived, no shell).
    pub script: String,
    /// `interval`, milliseconds (default 1 s).
    pub interval_millis: u32,
    /// `timeout`, milliseconds (default: the interval); a script still
    /// running then is killed and counts as failed.
    pub timeout_millis: u32,
    /// `weight`, -253..=253 (default 0: failing puts the instances in FAULT).
    pub weight: i32,
    /// `rise`: successes in a row to become OK (default 1).
    pub rise: u32,
    /// `fall`: failures in a row to become failed (default 1).
    pub fall: u32,
    /// `user` (else `global_defs.script_user`, else the default account).
    pub user: Option<String>,
    /// `group`.
    pub group: Option<String>,
    /// `init_fail`: start failed instead of OK.
    pub init_fail: bool,
    /// Where the table starts.
    pub loc: Loc,
}

/// One `track_script` entry of an instance, its weight resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrackScript {
    /// The `vrrp_script`'s name.
    pub name: String,
    /// The entry's weight if written, else the script's.
    pub weight: i32,
}
