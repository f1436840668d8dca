//! `HTTP_GET` and `SSL_GET`: fetch each `url { path }` over HTTP/1.1 (hyper) — over TLS with
//! rustls (ring provider) for `SSL_GET` — and require, for every url, a status in
//! `status_code` (default 200-299), and if given the body's MD5 `digest` (hex, as
//! keepalived's `genhash` prints it) and a `regex` match. `virtualhost` sets the `Host`
//! header and the TLS SNI name. `connect_timeout` bounds each url's whole exchange: connect,
//! TLS handshake, request and the complete response, so a server that hangs is down.
//!
//! A check runs from the validated model's settings ([`HttpCheckSpec`]), shared with the
//! model rather than copied: a plain `HTTP_GET` (no TLS, no regex), nearly every one, is
//! its settings and nothing more; an `SSL_GET` or a url with a `regex` also holds what is
//! made once for it (the TLS connector, the compiled regexes).
//!
//! Certificate verification is off by default, like keepalived; when on, the chain is
//! checked against the system's roots or a CA file, for the `virtualhost` name (or the
//! server's IP address when there is none).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use haldir_config::{HttpCheckSpec, HttpUrlSpec, StatusCodes, TlsVerify};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use md5::{Digest, Md5};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::tcp::{connect, humanize};
use crate::{CheckFuture, CheckOutcome, Checker};

/// Bodies larger than this fail the check (keepalived reads whole bodies too; this bounds
/// memory against a misbehaving server).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// Why an HTTP check's settings cannot run.
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

/// The running checker of `settings` (the model's, shared). What the model validated is
/// checked again (a url, paths, digests, regexes, TLS names), since nothing here requires a
/// validated model; what can fail only now is the world: a CA file that no longer reads, a
/// system without trusted roots.
pub fn checker(settings: Arc<HttpCheckSpec>) -> Result<Arc<dyn Checker>, HttpConfigError> {
    if settings.urls.is_empty() {
        return Err(HttpConfigError::NoUrl);
    }
    for url in &settings.urls {
        if !url.path.starts_with('/') {
            return Err(HttpConfigError::Path(url.path.to_string()));
        }
        if let Some(digest) = &url.options().digest {
            parse_md5(digest).ok_or_else(|| HttpConfigError::Digest(digest.clone()))?;
        }
        if settings.tls {
            if let Some(name) = virtualhost(&settings, url) {
                // Sent as the SNI name at every TLS connect: checked once here.
                ServerName::try_from(name)
                    .map_err(|_| HttpConfigError::VirtualHost(name.to_owned()))?;
            }
        }
    }
    match Prepared::new(&settings)? {
        None => Ok(settings),
        Some(prepared) => Ok(Arc::new(HttpCheck { settings, prepared })),
    }
}

/// `settings` as their own checker when they need nothing made (no TLS, no `regex`):
/// what [`checker`] returns for them, without its checks of the settings; `None` for
/// settings that need a checker of their own.
pub fn plain_checker(settings: Arc<HttpCheckSpec>) -> Option<Arc<dyn Checker>> {
    is_plain(&settings).then_some(settings as Arc<dyn Checker>)
}

/// Whether `settings` run as they are: no TLS, no `regex`.
fn is_plain(settings: &HttpCheckSpec) -> bool {
    !settings.tls
        && settings
            .urls
            .iter()
            .all(|url| url.options().regex.is_none())
}

/// An `SSL_GET`, or an `HTTP_GET` with a `regex`: the settings and what was made for them.
pub struct HttpCheck {
    settings: Arc<HttpCheckSpec>,
    prepared: Prepared,
}

/// What running some settings needs besides them, made once.
struct Prepared {
    /// `SSL_GET`'s client.
    tls: Option<tokio_rustls::TlsConnector>,
    /// Each url's compiled `regex`, in the urls' order (empty when none has one).
    regexes: Vec<Option<regex::bytes::Regex>>,
}

impl Prepared {
    /// What `settings` need made, or `None` when they run as they are.
    fn new(settings: &HttpCheckSpec) -> Result<Option<Self>, HttpConfigError> {
        if is_plain(settings) {
            return Ok(None);
        }
        let regexes = if settings
            .urls
            .iter()
            .any(|url| url.options().regex.is_some())
        {
            let compile = |url: &HttpUrlSpec| match &url.options().regex {
                Some(pattern) => regex::bytes::Regex::new(pattern).map(Some).map_err(|e| {
                    HttpConfigError::Regex {
                        pattern: pattern.clone(),
                        error: e.to_string(),
                    }
                }),
                None => Ok(None),
            };
            settings
                .urls
                .iter()
                .map(compile)
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let tls = match settings.tls {
            true => Some(tokio_rustls::TlsConnector::from(client_config(
                &settings.options().verify,
            )?)),
            false => None,
        };
        Ok(Some(Prepared { tls, regexes }))
    }
}

impl std::fmt::Debug for HttpCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCheck")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// keepalived's keyword for the settings.
fn keyword(settings: &HttpCheckSpec) -> &'static str {
    if settings.tls {
        "SSL_GET"
    } else {
        "HTTP_GET"
    }
}

/// The `virtualhost` of `url`: its own, else the check's.
fn virtualhost<'s>(settings: &'s HttpCheckSpec, url: &'s HttpUrlSpec) -> Option<&'s str> {
    (url.options().virtualhost.as_deref()).or(settings.options().virtualhost.as_deref())
}

/// The `Host` header of `url`: its virtualhost, else the target's address (and its port
/// when it is not the scheme's).
fn host<'s>(settings: &'s HttpCheckSpec, url: &'s HttpUrlSpec) -> Cow<'s, str> {
    match virtualhost(settings, url) {
        Some(name) => Cow::Borrowed(name),
        None => {
            let default_port = if settings.tls { 443 } else { 80 };
            Cow::Owned(host_header(settings.connection.target, default_port))
        }
    }
}

/// Runs every url of `settings`; `prepared` is what [`checker`] made for them. Settings
/// run without it ([`Checker`] for [`HttpCheckSpec`] itself) that need something made
/// have it made for this run.
async fn run(settings: &HttpCheckSpec, prepared: Option<&Prepared>) -> CheckOutcome {
    let made_now;
    let prepared = match prepared {
        Some(prepared) => Some(prepared),
        None => match Prepared::new(settings) {
            Ok(made) => {
                made_now = made;
                made_now.as_ref()
            }
            Err(e) => return CheckOutcome::Down(e.to_string()),
        },
    };
    let timeout = Duration::from_millis(u64::from(settings.connection.connect_timeout_millis));
    for (index, url) in settings.urls.iter().enumerate() {
        match tokio::time::timeout(timeout, check_url(settings, prepared, index, url)).await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return CheckOutcome::Down(reason),
            Err(_) => {
                return CheckOutcome::Down(format!(
                    "{}: no complete response from {} within {}",
                    url.path,
                    settings.connection.target,
                    humanize(timeout)
                ))
            }
        }
    }
    CheckOutcome::Up
}

/// One url's exchange and its verdict.
async fn check_url(
    settings: &HttpCheckSpec,
    prepared: Option<&Prepared>,
    index: usize,
    url: &HttpUrlSpec,
) -> Result<(), String> {
    let connection = &settings.connection;
    let target = connection.target;
    let stream = connect(
        target,
        connection.bind_to.as_deref().copied(),
        Duration::from_millis(u64::from(connection.connect_timeout_millis)),
    )
    .await?;
    let host = host(settings, url);
    let tls = prepared.and_then(|p| p.tls.as_ref());
    let (status, body) = match tls {
        None => exchange(stream, &url.path, &host).await?,
        Some(connector) => {
            // keepalived sends the virtualhost as SNI; an IP literal sends none.
            let server_name = match virtualhost(settings, url) {
                Some(name) => ServerName::try_from(name.to_owned())
                    .map_err(|_| format!("virtualhost {name:?}: not a valid TLS name"))?,
                None => ServerName::IpAddress(target.ip().into()),
            };
            let tls = connector
                .connect(server_name, stream)
                .await
                .map_err(|e| format!("TLS handshake with {target}: {e}"))?;
            exchange(tls, &url.path, &host).await?
        }
    };
    let default_codes;
    let codes = match &url.status_code {
        Some(codes) => codes,
        None => {
            default_codes = StatusCodes::default();
            &default_codes
        }
    };
    if !codes.contains(status) {
        return Err(format!(
            "{}: HTTP status {status}, expected {codes}",
            url.path
        ));
    }
    if let Some(want) = &url.options().digest {
        let got = hex(&Md5::digest(&body));
        if !got.eq_ignore_ascii_case(want) {
            return Err(format!(
                "{}: digest {got}, expected {}",
                url.path,
                want.to_ascii_lowercase()
            ));
        }
    }
    let regex = prepared
        .and_then(|p| p.regexes.get(index))
        .and_then(Option::as_ref);
    if let Some(regex) = regex {
        let matched = regex.is_match(&body);
        if matched == url.options().regex_no_match {
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

/// One HTTP/1.1 GET of `path` over `io` with `host` as its `Host` header; returns the
/// status and the whole body.
async fn exchange<T>(io: T, path: &str, host: &str) -> Result<(u16, Bytes), String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| format!("{path}: HTTP handshake: {e}"))?;
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "haldir-health")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("{path}: request: {e}"))?;
    let response = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("{path}: reading body: {e}"))?
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

/// A plain `HTTP_GET` runs from its settings as they are ([`checker`] hands them out as
/// the checker). Settings that need something made (TLS, a regex) have it made for each
/// run here; [`checker`] makes it once instead.
impl Checker for HttpCheckSpec {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(run(self, None))
    }

    fn kind(&self) -> &'static str {
        keyword(self)
    }
}

impl Checker for HttpCheck {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(run(&self.settings, Some(&self.prepared)))
    }

    fn kind(&self) -> &'static str {
        keyword(&self.settings)
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
pub fn client_config(verify: &TlsVerify) -> Result<Arc<ClientConfig>, HttpConfigError> {
    static OFF: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    static SYSTEM: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    let builder = || {
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| HttpConfigError::Tls(e.to_string()))
    };
    match verify {
        TlsVerify::Off => {
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
        TlsVerify::SystemRoots => {
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
        TlsVerify::CaFile(path) => {
            let ca_error = |error: String| HttpConfigError::CaFile {
                path: PathBuf::from(path),
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
    use haldir_config::{CheckConnection, HttpCheckOptions, UrlOptions};

    use super::*;

    fn settings(urls: Vec<HttpUrlSpec>) -> Arc<HttpCheckSpec> {
        let connection = CheckConnection {
            target: "127.0.0.1:80".parse().unwrap(),
            bind_to: None,
            connect_timeout_millis: 5000,
        };
        Arc::new(HttpCheckSpec::new(
            false,
            connection,
            urls,
            HttpCheckOptions::default(),
        ))
    }

    fn url(path: &str) -> HttpUrlSpec {
        HttpUrlSpec::new(path, None, UrlOptions::default())
    }

    fn url_with(path: &str, options: UrlOptions) -> HttpUrlSpec {
        HttpUrlSpec::new(path, None, options)
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
    fn settings_that_cannot_run_are_refused_naming_the_bad_value() {
        let refused = |url: HttpUrlSpec| checker(settings(vec![url])).err();
        let bad = |options| refused(url_with("/", options));
        assert_eq!(
            refused(url("health")),
            Some(HttpConfigError::Path("health".into()))
        );
        let digest = bad(UrlOptions {
            digest: Some("xyz".into()),
            ..UrlOptions::default()
        });
        assert!(digest.unwrap().to_string().contains("32 hex digits"));
        let regex = bad(UrlOptions {
            regex: Some("(".into()),
            ..UrlOptions::default()
        });
        assert!(matches!(regex, Some(HttpConfigError::Regex { .. })));
        assert_eq!(
            checker(settings(vec![])).err(),
            Some(HttpConfigError::NoUrl)
        );
    }

    #[test]
    fn a_plain_http_get_runs_from_the_shared_settings_and_nothing_else() {
        let plain = settings(vec![url("/health")]);
        let running = checker(Arc::clone(&plain)).unwrap();
        // The checker is the settings themselves: the same allocation, nothing more.
        assert!(std::ptr::addr_eq(
            Arc::as_ptr(&running),
            Arc::as_ptr(&plain)
        ));
        assert_eq!(running.kind(), "HTTP_GET");
        let with_regex = settings(vec![url_with(
            "/health",
            UrlOptions {
                regex: Some("ok".into()),
                ..UrlOptions::default()
            },
        )]);
        let running = checker(Arc::clone(&with_regex)).unwrap();
        assert!(!std::ptr::addr_eq(
            Arc::as_ptr(&running),
            Arc::as_ptr(&with_regex)
        ));
        assert_eq!(Arc::strong_count(&with_regex), 2, "held by its checker");

        // As a reload hands a kept check its new settings: only plain ones.
        let again = plain_checker(Arc::clone(&plain)).expect("plain settings");
        assert!(std::ptr::addr_eq(Arc::as_ptr(&again), Arc::as_ptr(&plain)));
        assert!(plain_checker(with_regex).is_none());
        let mut over_tls = (*settings(vec![url("/")])).clone();
        over_tls.tls = true;
        assert!(plain_checker(Arc::new(over_tls)).is_none());
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
