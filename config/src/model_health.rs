//! The validated health-checking part of the model: the checkers of a real
//! server, a virtual server's quorum and sorry server, `vrrp_script`s and the
//! instances' `track_script`. Every default of keepalived is resolved here
//! (the checker inherits `delay_loop`, `retry`, ... from its real server, then
//! its virtual server), so the daemon reads plain values.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::{Deref, RangeInclusive};
use std::sync::Arc;

use compact_str::CompactString;
use smallvec::SmallVec;

use crate::error::Loc;

/// `status_code` of an HTTP check: codes and `low-high` ranges, each within 100..=599,
/// e.g. `200-299 404` (keepalived's syntax). The default is 200-299. Up to two are held
/// inline, without an allocation of their own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatusCodes(SmallVec<[RangeInclusive<u16>; 2]>);

/// `status_code` text that is not a list of codes and ranges within 100..=599.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("status_code {0:?}: expected codes or ranges within 100-599, e.g. \"200-299 404\"")]
pub struct StatusCodesError(pub String);

impl Default for StatusCodes {
    fn default() -> Self {
        StatusCodes(smallvec::smallvec![200..=299])
    }
}

impl StatusCodes {
    /// Parses keepalived's syntax: codes or `low-high` ranges separated by spaces or commas.
    pub fn parse(text: &str) -> Result<Self, StatusCodesError> {
        let bad = || StatusCodesError(text.to_string());
        let mut ranges = SmallVec::new();
        for word in text.split([' ', ',', '\t']).filter(|w| !w.is_empty()) {
            let (low, high) = match word.split_once('-') {
                Some((l, h)) => (l.parse::<u16>(), h.parse::<u16>()),
                None => (word.parse::<u16>(), word.parse::<u16>()),
            };
            let (low, high) = (low.map_err(|_| bad())?, high.map_err(|_| bad())?);
            if !(100..=599).contains(&low) || !(100..=599).contains(&high) || low > high {
                return Err(bad());
            }
            ranges.push(low..=high);
        }
        if ranges.is_empty() {
            return Err(bad());
        }
        Ok(StatusCodes(ranges))
    }

    /// The codes and ranges, in the order written.
    pub fn ranges(&self) -> &[RangeInclusive<u16>] {
        &self.0
    }

    /// Whether `code` is one of them.
    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|range| range.contains(&code))
    }
}

impl fmt::Display for StatusCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            if r.start() == r.end() {
                write!(f, "{}", r.start())?;
            } else {
                write!(f, "{}-{}", r.start(), r.end())?;
            }
        }
        Ok(())
    }
}

/// The query type of a `DNS_CHECK` (RFC 1035 §3.2.2, RFC 3596 for AAAA): the ones
/// keepalived accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsType {
    /// A host address.
    A,
    /// An authoritative name server.
    Ns,
    /// The canonical name of an alias.
    Cname,
    /// The start of a zone of authority (keepalived's default).
    Soa,
    /// Mail exchange.
    Mx,
    /// Text strings.
    Txt,
    /// An IPv6 host address.
    Aaaa,
}

impl DnsType {
    /// Every type, in the order error messages list them.
    pub const ALL: [DnsType; 7] = [
        DnsType::A,
        DnsType::Ns,
        DnsType::Cname,
        DnsType::Soa,
        DnsType::Mx,
        DnsType::Txt,
        DnsType::Aaaa,
    ];

    /// The configuration word (case-insensitive).
    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(word))
    }

    /// The type's name, upper case.
    pub fn as_str(self) -> &'static str {
        match self {
            DnsType::A => "A",
            DnsType::Ns => "NS",
            DnsType::Cname => "CNAME",
            DnsType::Soa => "SOA",
            DnsType::Mx => "MX",
            DnsType::Txt => "TXT",
            DnsType::Aaaa => "AAAA",
        }
    }
}

/// A script's command line (`misc_path`, `vrrp_script.script`), split into a program and
/// its arguments the way keepalived does, or `/bin/sh -c LINE` when the line starts with
/// shell syntax (see `haldir_scripts::command_argv`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScriptCommand {
    /// The line as written (for messages and for writing the configuration back).
    line: String,
    /// The words, at least one (the program).
    argv: Vec<String>,
}

impl ScriptCommand {
    /// Splits `line`; an empty line or an unbalanced quote is an error.
    pub fn parse(line: &str) -> Result<Self, haldir_scripts::ScriptError> {
        Ok(ScriptCommand {
            line: line.to_owned(),
            argv: haldir_scripts::command_argv(line)?,
        })
    }

    /// The line as written.
    pub fn as_str(&self) -> &str {
        &self.line
    }

    /// The program and its arguments.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// The program (a path, or a name looked up on `PATH`).
    pub fn program(&self) -> &str {
        &self.argv[0]
    }

    /// The arguments after the program.
    pub fn args(&self) -> &[String] {
        &self.argv[1..]
    }
}

impl fmt::Display for ScriptCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}

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

/// Settings the model owns and lends to what runs them: [`Shared::share`] hands out the
/// same allocation (a running `HTTP_GET` runs from the model's settings, so 40,000 of
/// them are held once, not once in the model and again in the checker).
///
/// A clone is a copy of its own, as a `Box`'s is: a copy of the model made once the
/// parse's garbage is free (`built_apart` in the daemon) holds nothing of the original,
/// whose pages then go back whole.
#[derive(PartialEq, Eq, Hash)]
pub struct Shared<T>(Arc<T>);

impl<T> Shared<T> {
    /// Settings owned by the model.
    pub fn new(value: T) -> Self {
        Shared(Arc::new(value))
    }

    /// The same settings, for something that runs them.
    pub fn share(&self) -> Arc<T> {
        Arc::clone(&self.0)
    }
}

impl<T: Clone> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared::new(T::clone(&self.0))
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
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
    /// Boxed: rarely set, and a `SocketAddr` is 32 bytes (every checker of the model
    /// held one).
    pub bind_to: Option<Box<SocketAddr>>,
    /// `connect_timeout`, milliseconds (checker, real server, virtual server,
    /// else 5 s).
    pub connect_timeout_millis: u32,
}

/// The kind of a checker with its own settings.
///
/// The kinds with more settings than a connection are boxed: unboxed, every checker of the
/// model (40,000 `TCP_CHECK`s at 10,000 virtual servers) would be as large as an
/// `HTTP_GET`. An `HTTP_GET`'s settings are [`Shared`] with its running checker.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// `TCP_CHECK`: a TCP connection completes.
    Tcp(CheckConnection),
    /// `HTTP_GET` / `SSL_GET`.
    Http(Shared<HttpCheckSpec>),
    /// `MISC_CHECK`.
    Misc(Box<MiscCheckSpec>),
    /// `DNS_CHECK`.
    Dns(Box<DnsCheckSpec>),
    /// `SMTP_CHECK`.
    Smtp(Box<SmtpCheckSpec>),
    /// `UDP_CHECK`.
    Udp(Box<UdpCheckSpec>),
    /// `PING_CHECK`: an ICMP echo to the connection's address (its port is not used).
    Ping(CheckConnection),
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
            CheckKind::Smtp(_) => "SMTP_CHECK",
            CheckKind::Udp(_) => "UDP_CHECK",
            CheckKind::Ping(_) => "PING_CHECK",
        }
    }

    /// Where a network checker connects (`None` for `MISC_CHECK`).
    pub fn connection(&self) -> Option<&CheckConnection> {
        match self {
            CheckKind::Tcp(c) | CheckKind::Ping(c) => Some(c),
            CheckKind::Http(h) => Some(&h.connection),
            CheckKind::Dns(d) => Some(&d.connection),
            CheckKind::Smtp(s) => Some(&s.connection),
            CheckKind::Udp(u) => Some(&u.connection),
            CheckKind::Misc(_) => None,
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
    /// The `url`s; all must pass. At least one, held inline when there is one (nearly
    /// always): 40,000 checks held 40,000 lists of one.
    pub urls: SmallVec<[HttpUrlSpec; 1]>,
    /// The settings most checks leave out, boxed; `None` when none is set (see
    /// [`HttpCheckSpec::new`]).
    options: Option<Box<HttpCheckOptions>>,
}

/// The settings of an `HTTP_GET` / `SSL_GET` that most leave out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct HttpCheckOptions {
    /// `virtualhost` (checker, real server, virtual server): Host header and SNI.
    pub virtualhost: Option<String>,
    /// `SSL_GET` certificate verification.
    pub verify: TlsVerify,
}

/// A check's options when it sets none.
static NO_HTTP_OPTIONS: HttpCheckOptions = HttpCheckOptions {
    virtualhost: None,
    verify: TlsVerify::Off,
};

impl HttpCheckSpec {
    /// An `HTTP_GET` (`SSL_GET` with `tls`). Options that are all unset are not held, so
    /// that equal checks compare equal however they were made.
    pub fn new(
        tls: bool,
        connection: CheckConnection,
        urls: impl IntoIterator<Item = HttpUrlSpec>,
        options: HttpCheckOptions,
    ) -> Self {
        let mut spec = HttpCheckSpec {
            tls,
            connection,
            urls: urls.into_iter().collect(),
            options: None,
        };
        spec.set_options(options);
        spec
    }

    /// Its `virtualhost` and certificate verification.
    pub fn options(&self) -> &HttpCheckOptions {
        self.options.as_deref().unwrap_or(&NO_HTTP_OPTIONS)
    }

    /// Sets its `virtualhost` and certificate verification.
    pub fn set_options(&mut self, options: HttpCheckOptions) {
        self.options = (options != NO_HTTP_OPTIONS).then(|| Box::new(options));
    }
}

/// One `url` of an HTTP check, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpUrlSpec {
    /// `path`, starting with `/` (held inline up to 24 bytes).
    pub path: CompactString,
    /// `status_code` if written; `None`: 200-299.
    pub status_code: Option<StatusCodes>,
    /// The settings most urls leave out, boxed; `None` when none is set (see
    /// [`HttpUrlSpec::new`]). Inline, 40,000 urls held 72 bytes each of unset ones.
    options: Option<Box<UrlOptions>>,
}

/// The settings of a `url` that most urls leave out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct UrlOptions {
    /// `digest`: MD5 of the body, 32 lower-case hex digits.
    pub digest: Option<String>,
    /// `regex`.
    pub regex: Option<String>,
    /// `regex_no_match`.
    pub regex_no_match: bool,
    /// `virtualhost` of this url.
    pub virtualhost: Option<String>,
}

/// A url's options when it sets none.
static NO_URL_OPTIONS: UrlOptions = UrlOptions {
    digest: None,
    regex: None,
    regex_no_match: false,
    virtualhost: None,
};

impl HttpUrlSpec {
    /// A url of `path`. Options that are all unset are not held, so that equal urls
    /// compare equal however they were made.
    pub fn new(
        path: impl Into<CompactString>,
        status_code: Option<StatusCodes>,
        options: UrlOptions,
    ) -> Self {
        HttpUrlSpec {
            path: path.into(),
            status_code,
            options: (options != NO_URL_OPTIONS).then(|| Box::new(options)),
        }
    }

    /// Its `digest`, `regex`, `regex_no_match` and `virtualhost`.
    pub fn options(&self) -> &UrlOptions {
        self.options.as_deref().unwrap_or(&NO_URL_OPTIONS)
    }
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
    /// `misc_path`: the command (split like keepalived, no shell).
    pub misc_path: ScriptCommand,
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
    /// `type` (default SOA).
    pub query_type: DnsType,
    /// `name` (default "."), a valid DNS name (labels of 1-63 bytes, at most 255 encoded).
    pub name: String,
}

/// `SMTP_CHECK`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SmtpCheckSpec {
    /// Where to connect.
    pub connection: CheckConnection,
    /// `helo_name` (default keepalived's `smtpchecker.keepalived.org`).
    pub helo_name: String,
}

/// keepalived's default `helo_name`.
pub const DEFAULT_HELO_NAME: &str = "smtpchecker.keepalived.org";

/// `UDP_CHECK`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UdpCheckSpec {
    /// Where to send.
    pub connection: CheckConnection,
    /// `payload` (empty: haldir's own few bytes).
    pub payload: HexBytes,
    /// `require_reply`: `None` when no reply is required; the pattern may be empty.
    pub require_reply: Option<HexBytes>,
    /// `min_reply_length` (default 0).
    pub min_reply_length: u16,
    /// `max_reply_length` (default 255).
    pub max_reply_length: u16,
}

/// keepalived's hex strings (`payload`, `require_reply`): bytes, and per byte the bits not
/// compared (a nibble written `x` in `require_reply`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct HexBytes {
    /// The bytes.
    pub data: Vec<u8>,
    /// The bits of each byte that are not compared.
    pub mask: Vec<u8>,
}

impl HexBytes {
    /// Reads keepalived's form: pairs of hex digits, spaces between bytes allowed, a lone
    /// digit before a space or the end is one byte (`Ab12f 3` is `ab 12 0f 03`); with
    /// `wildcards`, `x` / `X` is a nibble not compared.
    pub fn parse(text: &str, wildcards: bool) -> Result<HexBytes, String> {
        let nibble = |c: char| -> Result<(u8, u8), String> {
            match c {
                'x' | 'X' if wildcards => Ok((0, 0x0f)),
                c => c
                    .to_digit(16)
                    .map(|d| (d as u8, 0))
                    .ok_or_else(|| format!("{c:?} is not a hex digit")),
            }
        };
        let mut bytes = HexBytes::default();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c == ' ' || c == '\t' {
                continue;
            }
            let (mut value, mut mask) = nibble(c)?;
            if let Some(&next) = chars.peek().filter(|n| **n != ' ' && **n != '\t') {
                chars.next();
                let (low, low_mask) = nibble(next)?;
                value = value << 4 | low;
                mask = mask << 4 | low_mask;
            }
            bytes.data.push(value);
            bytes.mask.push(mask);
        }
        Ok(bytes)
    }
}

impl fmt::Display for HexBytes {
    /// Two digits a byte, `x` for a nibble not compared, bytes separated by spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (byte, mask)) in self.data.iter().zip(&self.mask).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            for (shift, nibble_mask) in [(4, 0xf0u8), (0, 0x0f)] {
                if mask & nibble_mask != 0 {
                    f.write_str("x")?;
                } else {
                    write!(f, "{:x}", (byte >> shift) & 0x0f)?;
                }
            }
        }
        Ok(())
    }
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
    /// `script`: the command (split like keepalived, no shell).
    pub script: ScriptCommand,
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
