//! `HTTP_GET` and `SSL_GET`: fetch each `url { path }` over HTTP/1.1 (hyper) — over TLS with
//! rustls (ring provider) for `SSL_GET` — and require, for every url, a status in
//! `status_code` (default 200-299), and if given the body's MD5 `digest` (hex, as
//! keepalived's `genhash` prints it) and a `regex` match. `virtualhost` sets the `Host`
//! header and the TLS SNI name. `connect_timeout` bounds each url's whole exchange: connect,
//! TLS handshake, request and the complete response, so a server that hangs is down.
//!
//! Certificate verification is off by default, like keepalived; when on, the chain is
//! checked against the system's roots or a CA file, for the `virtualhost` name (or the
//! server's IP address when there is none).

use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use compact_str::CompactString;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use md5::{Digest, Md5};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use smallvec::SmallVec;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::tcp::{connect, humanize, DEFAULT_CONNECT_TIMEOUT};
use crate::{CheckFuture, CheckOutcome, Checker};

/// Bodies larger than this fail the check (keepalived reads whole bodies too; this bounds
/// memory against a misbehaving server).
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;

/// `status_code`: a set of codes and ranges, e.g. `200-299 404`. Default `200-299`.
/// Up to two ranges are held inline: a check's codes are rarely more, and 40,000 checks
/// would otherwise hold 40,000 small allocations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCodes(SmallVec<[RangeInclusive<u16>; 2]>);

impl Default for StatusCodes {
    fn default() -> Self {
        StatusCodes(smallvec::smallvec![200..=299])
    }
}

impl StatusCodes {
    /// Codes and ranges from ranges.
    pub fn new(ranges: Vec<RangeInclusive<u16>>) -> Self {
        StatusCodes(ranges.into_iter().collect())
    }

    /// Whether `code` is accepted.
    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|r| r.contains(&code))
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

/// One `url { }` block as configured (strings, validated by [`HttpCheck::new`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlSpec {
    /// `path`: origin-form, starting with `/`.
    pub path: String,
    /// `status_code`.
    pub status_code: StatusCodes,
    /// `digest`: MD5 of the body, 32 hex digits (case ignored).
    pub digest: Option<String>,
    /// `regex`: must match somewhere in the body (`regex` crate syntax).
    pub regex: Option<String>,
    /// `regex_no_match`: invert `regex` (the body must NOT match).
    pub regex_no_match: bool,
    /// `virtualhost` for this url only (overrides the check's).
    pub virtualhost: Option<String>,
}

/// `HTTP_GET` or `SSL_GET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpKind {
    /// Plain HTTP.
    Http,
    /// HTTPS (rustls).
    Https,
}

/// Certificate verification of `SSL_GET`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CertVerification {
    /// Accept any certificate (keepalived's behaviour). The handshake's signatures are still
    /// checked against the presented certificate.
    #[default]
    Off,
    /// Verify against the system's trusted roots (rustls-native-certs).
    SystemRoots,
    /// Verify against the CA certificates in this PEM file.
    CaFile(PathBuf),
}

/// An `HTTP_GET` / `SSL_GET` block as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheckConfig {
    /// Which of the two.
    pub kind: HttpKind,
    /// `connect_ip` / `connect_port`.
    pub target: SocketAddr,
    /// `bind_to`.
    pub bind_to: Option<SocketAddr>,
    /// `connect_timeout`: bounds each url's connect + handshake + request + response.
    pub connect_timeout: Duration,
    /// `virtualhost`: `Host` header and SNI.
    pub virtualhost: Option<String>,
    /// The `url` blocks: all must pass.
    pub urls: Vec<UrlSpec>,
    /// `SSL_GET` certificate verification.
    pub verify: CertVerification,
    /// Largest body accepted.
    pub max_body: usize,
}

impl HttpCheckConfig {
    /// A check of `target` with keepalived's defaults and the given urls.
    pub fn new(kind: HttpKind, target: SocketAddr, urls: Vec<UrlSpec>) -> Self {
        HttpCheckConfig {
            kind,
            target,
            bind_to: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            virtualhost: None,
            urls,
            verify: CertVerification::Off,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// Why an HTTP check's configuration is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HttpConfigError {
    /// No `url` block.
    #[error("an HTTP_GET/SSL_GET needs at least one url {{ path ... }} block")]
    NoUrl,
    /// Bad `path`.
    #[error("url path {0:?}: must start with '/' (origin form, e.g. /health)")]
    Path(String),
    /// Bad `digest`.
    #[error("digest {0:?}: expected 32 hex digits (the MD5 that genhash prints)")]
    Digest(String),
    /// Bad `regex`.
    #[error("regex {pattern:?}: {error}")]
    Regex {
        /// The pattern.
        pattern: String,
        /// What the regex crate said.
        error: String,
    },
    /// Bad `virtualhost`.
    #[error("virtualhost {0:?}: not a valid host name for TLS SNI")]
    VirtualHost(String),
    /// The CA file could not be read.
    #[error("CA file {path}: {error}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: String,
    },
    /// No system roots could be loaded.
    #[error("no trusted root certificates found on this system ({0})")]
    SystemRoots(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// One url of a ready check, as small as it can be held: a check's settings live as long
/// as the check, 40,000 of them at 10,000 virtual servers of four real servers.
struct Url {
    /// Inline up to 24 bytes (nearly every path).
    path: CompactString,
    status_code: StatusCodes,
    /// The body's MD5.
    digest: Option<[u8; 16]>,
    regex: Option<Box<regex::bytes::Regex>>,
    regex_no_match: bool,
    /// `virtualhost` (the url's, else the check's): the `Host` header and the TLS SNI
    /// name; `None`: the target's address, and no SNI.
    virtualhost: Option<Box<str>>,
}

/// A validated, ready-to-run `HTTP_GET` / `SSL_GET`.
pub struct HttpCheck {
    kind: HttpKind,
    target: SocketAddr,
    /// Boxed: rarely set, and a `SocketAddr` is 32 bytes.
    bind_to: Option<Box<SocketAddr>>,
    connect_timeout: Duration,
    max_body: usize,
    /// Held inline when there is one (nearly always).
    urls: SmallVec<[Url; 1]>,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl fmt::Debug for HttpCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCheck")
            .field("kind", &self.kind)
            .field("target", &self.target)
            .field(
                "urls",
                &self.urls.iter().map(|u| &u.path).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl HttpCheck {
    /// Validate the configuration (paths, digests, regexes, names, CA file) and build the
    /// checker. The TLS client configuration is built here, once.
    pub fn new(config: HttpCheckConfig) -> Result<Self, HttpConfigError> {
        if config.urls.is_empty() {
            return Err(HttpConfigError::NoUrl);
        }
        let mut urls = SmallVec::with_capacity(config.urls.len());
        for spec in &config.urls {
            if !spec.path.starts_with('/') {
                return Err(HttpConfigError::Path(spec.path.clone()));
            }
            let digest = match &spec.digest {
                Some(d) => Some(parse_md5(d).ok_or_else(|| HttpConfigError::Digest(d.clone()))?),
                None => None,
            };
            let regex = match &spec.regex {
                Some(pattern) => Some(Box::new(regex::bytes::Regex::new(pattern).map_err(
                    |e| HttpConfigError::Regex {
                        pattern: pattern.clone(),
                        error: e.to_string(),
                    },
                )?)),
                None => None,
            };
            let virtualhost = spec.virtualhost.as_ref().or(config.virtualhost.as_ref());
            if let Some(name) = virtualhost {
                // Sent as the SNI name at every TLS connect: checked once here.
                ServerName::try_from(name.as_str())
                    .map_err(|_| HttpConfigError::VirtualHost(name.clone()))?;
            }
            urls.push(Url {
                path: CompactString::new(&spec.path),
                status_code: spec.status_code.clone(),
                digest,
                regex,
                regex_no_match: spec.regex_no_match,
                virtualhost: virtualhost.map(|name| name.as_str().into()),
            });
        }
        let tls = match config.kind {
            HttpKind::Http => None,
            HttpKind::Https => Some(tokio_rustls::TlsConnector::from(client_config(
                &config.verify,
            )?)),
        };
        Ok(HttpCheck {
            kind: config.kind,
            target: config.target,
            bind_to: config.bind_to.map(Box::new),
            connect_timeout: config.connect_timeout,
            max_body: config.max_body,
            urls,
            tls,
        })
    }

    /// The `Host` header of `url`: its virtualhost, else the target's address (and its
    /// port when it is not the scheme's).
    fn host<'u>(&self, url: &'u Url) -> std::borrow::Cow<'u, str> {
        match &url.virtualhost {
            Some(name) => std::borrow::Cow::Borrowed(name),
            None => {
                let default_port = match self.kind {
                    HttpKind::Http => 80,
                    HttpKind::Https => 443,
                };
                std::borrow::Cow::Owned(host_header(self.target, default_port))
            }
        }
    }

    async fn check_url(&self, url: &Url) -> Result<(), String> {
        let stream = connect(
            self.target,
            self.bind_to.as_deref().copied(),
            self.connect_timeout,
        )
        .await?;
        let (status, body) = match &self.tls {
            None => exchange(stream, url, &self.host(url), self.max_body).await?,
            Some(connector) => {
                // keepalived sends the virtualhost as SNI; an IP literal sends none.
                let server_name = match &url.virtualhost {
                    Some(name) => ServerName::try_from(name.to_string())
                        .map_err(|_| format!("virtualhost {name:?}: not a valid TLS name"))?,
                    None => ServerName::IpAddress(self.target.ip().into()),
                };
                let tls = connector
                    .connect(server_name, stream)
                    .await
                    .map_err(|e| format!("TLS handshake with {}: {e}", self.target))?;
                exchange(tls, url, &self.host(url), self.max_body).await?
            }
        };
        if !url.status_code.contains(status) {
            return Err(format!(
                "{}: HTTP status {status}, expected {}",
                url.path, url.status_code
            ));
        }
        if let Some(want) = &url.digest {
            let got: [u8; 16] = Md5::digest(&body).into();
            if &got != want {
                return Err(format!(
                    "{}: digest {}, expected {}",
                    url.path,
                    hex(&got),
                    hex(want)
                ));
            }
        }
        if let Some(regex) = &url.regex {
            let matched = regex.is_match(&body);
            if matched == url.regex_no_match {
                return Err(format!(
                    "{}: body {} regex {:?}",
                    url.path,
                    if matched { "matches" } else { "does not match" },
                    regex.as_str()
                ));
            }
        }
        Ok(())
    }
}

/// The MD5 of `body` as 32 lowercase hex digits, as keepalived's `genhash` prints it.
pub fn md5_hex(body: &[u8]) -> String {
    hex(&Md5::digest(body))
}

/// Bytes as lowercase hex digits.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// A `digest`'s 32 hex digits (either case) as the 16 bytes of an MD5.
fn parse_md5(text: &str) -> Option<[u8; 16]> {
    // Digits only (`from_str_radix` would take a sign).
    if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 16];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

fn host_header(target: SocketAddr, default_port: u16) -> String {
    let ip = match target {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    if target.port() == default_port {
        ip
    } else {
        format!("{ip}:{}", target.port())
    }
}

/// One HTTP/1.1 GET over `io` with `host` as its `Host` header; returns the status and
/// the whole body.
async fn exchange<T>(io: T, url: &Url, host: &str, max_body: usize) -> Result<(u16, Bytes), String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| format!("{}: HTTP handshake: {e}", url.path))?;
    let request = hyper::Request::get(&*url.path)
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "haldir-health")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("{}: request: {e}", url.path))?;
    let response = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{}: {e}", url.path))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| format!("{}: reading body: {e}", url.path))?
            .to_bytes();
        Ok::<_, String>((status, body))
    };
    // Drive the connection and the exchange together, in this task (no spawn per check).
    let mut connection = std::pin::pin!(connection);
    let mut response = std::pin::pin!(response);
    let mut connection_done = false;
    loop {
        tokio::select! {
            result = &mut response => return result,
            _ = &mut connection, if !connection_done => connection_done = true,
        }
    }
}

impl Checker for HttpCheck {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            for url in &self.urls {
                match tokio::time::timeout(self.connect_timeout, self.check_url(url)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(reason)) => return CheckOutcome::Down(reason),
                    Err(_) => {
                        return CheckOutcome::Down(format!(
                            "{}: no complete response from {} within {}",
                            url.path,
                            self.target,
                            humanize(self.connect_timeout)
                        ))
                    }
                }
            }
            CheckOutcome::Up
        })
    }

    fn kind(&self) -> &'static str {
        match self.kind {
            HttpKind::Http => "HTTP_GET",
            HttpKind::Https => "SSL_GET",
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The rustls client configuration for a verification mode. `Off` and `SystemRoots` are
/// built once per process and shared; a CA file is read each time (the wiring may share the
/// resulting checker settings).
pub fn client_config(verify: &CertVerification) -> Result<Arc<ClientConfig>, HttpConfigError> {
    static OFF: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    static SYSTEM: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    let builder = || {
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| HttpConfigError::Tls(e.to_string()))
    };
    match verify {
        CertVerification::Off => {
            if let Some(config) = OFF.get() {
                return Ok(config.clone());
            }
            let config = Arc::new(
                builder()?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
                    .with_no_client_auth(),
            );
            Ok(OFF.get_or_init(|| config).clone())
        }
        CertVerification::SystemRoots => {
            if let Some(config) = SYSTEM.get() {
                return Ok(config.clone());
            }
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let errors: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
                return Err(HttpConfigError::SystemRoots(if errors.is_empty() {
                    "none found".into()
                } else {
                    errors.join("; ")
                }));
            }
            let config = Arc::new(
                builder()?
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            );
            Ok(SYSTEM.get_or_init(|| config).clone())
        }
        CertVerification::CaFile(path) => {
            let ca_error = |error: String| HttpConfigError::CaFile {
                path: path.clone(),
                error,
            };
            // Only a regular file: /dev/zero or a FIFO would be read forever.
            match std::fs::metadata(path) {
                Ok(meta) if !meta.is_file() => {
                    return Err(ca_error("not a regular file".into()));
                }
                Ok(_) => {}
                Err(e) => return Err(ca_error(e.to_string())),
            }
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))? {
                let cert = cert.map_err(|e| ca_error(e.to_string()))?;
                roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(ca_error("no certificate in the file".into()));
            }
            Ok(Arc::new(
                builder()?
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            ))
        }
    }
}

/// keepalived's default: any certificate is accepted, but the handshake signatures must
/// still be made by the presented certificate's key.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_hold_lists_and_ranges_and_default_to_2xx() {
        let s = StatusCodes::new(vec![200..=299, 404..=404, 301..=301]);
        assert!(s.contains(204) && s.contains(404) && s.contains(301));
        assert!(!s.contains(500) && !s.contains(302));
        assert_eq!(s.to_string(), "200-299 404 301");
        assert!(StatusCodes::default().contains(200));
        assert!(!StatusCodes::default().contains(500));
    }

    #[test]
    fn a_digest_is_32_hex_digits_of_either_case_and_nothing_else() {
        let bytes = parse_md5("5D41402abc4b2a76b9719d911017c592").unwrap();
        assert_eq!(hex(&bytes), "5d41402abc4b2a76b9719d911017c592");
        assert_eq!(parse_md5("5d41402abc4b2a76b9719d911017c59"), None);
        assert_eq!(parse_md5("+d41402abc4b2a76b9719d911017c592"), None);
        assert_eq!(parse_md5("5d41402abc4b2a76b9719d911017c59g"), None);
        assert_eq!(parse_md5("5d41402abc4b2a76b9719d911017c5é"), None);
    }

    #[test]
    fn md5_hex_matches_genhash_output() {
        // `echo -n "hello" | md5sum`
        assert_eq!(md5_hex(b"hello"), "5d41402abc4b2a76b9719d911017c592");
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn config_errors_name_the_bad_value() {
        let target: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let mk =
            |url: UrlSpec| HttpCheck::new(HttpCheckConfig::new(HttpKind::Http, target, vec![url]));
        let err = mk(UrlSpec {
            path: "health".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err, HttpConfigError::Path("health".into()));
        let err = mk(UrlSpec {
            path: "/".into(),
            digest: Some("xyz".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("32 hex digits"));
        let err = mk(UrlSpec {
            path: "/".into(),
            regex: Some("(".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, HttpConfigError::Regex { .. }));
        assert_eq!(
            HttpCheck::new(HttpCheckConfig::new(HttpKind::Http, target, vec![])).unwrap_err(),
            HttpConfigError::NoUrl
        );
    }

    #[test]
    fn host_header_omits_the_default_port_and_brackets_ipv6() {
        assert_eq!(host_header("10.0.0.1:80".parse().unwrap(), 80), "10.0.0.1");
        assert_eq!(
            host_header("10.0.0.1:8080".parse().unwrap(), 80),
            "10.0.0.1:8080"
        );
        assert_eq!(host_header("[::1]:443".parse().unwrap(), 443), "[::1]");
    }
}
