//! Real servers for the checker tests: an HTTP/1.1 server (optionally over TLS with a
//! certificate generated here) whose behaviour the test switches at run time, plus small
//! helpers (temp dirs, scheduler setup, event waiting).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use haldir_health::{spawn_scheduler, Event, SchedulerConfig, SchedulerHandle};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What the HTTP server does with the next request.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Answer with this status and body.
    Respond(u16, Vec<u8>),
    /// Read the request, then never answer.
    Hang,
}

#[derive(Default)]
pub struct Seen {
    pub requests: AtomicUsize,
    pub hosts: Mutex<Vec<String>>,
    pub paths: Mutex<Vec<String>>,
    pub sni: Mutex<Vec<Option<String>>>,
}

/// A real HTTP(S) server on 127.0.0.1 that can stop listening and start again on the same port.
pub struct HttpServer {
    pub addr: SocketAddr,
    pub behaviour: Arc<Mutex<Behaviour>>,
    /// Per-path overrides of `behaviour`.
    pub by_path: Arc<Mutex<Vec<(String, Behaviour)>>>,
    pub seen: Arc<Seen>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    accept_task: Option<JoinHandle<()>>,
}

impl HttpServer {
    pub async fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut server = HttpServer {
            addr,
            behaviour: Arc::new(Mutex::new(Behaviour::Respond(200, b"hello".to_vec()))),
            by_path: Arc::new(Mutex::new(Vec::new())),
            seen: Arc::new(Seen::default()),
            tls,
            accept_task: None,
        };
        server.serve(listener);
        server
    }

    pub fn set(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap() = b;
    }

    pub fn requests(&self) -> usize {
        self.seen.requests.load(Ordering::SeqCst)
    }

    /// Close the listening socket (connections are refused from now on).
    pub fn stop_listening(&mut self) {
        if let Some(task) = self.accept_task.take() {
            task.abort();
        }
    }

    /// Listen again on the same port.
    pub async fn listen_again(&mut self) {
        // The aborted accept task drops its listener asynchronously: retry briefly.
        for _ in 0..50 {
            if let Ok(listener) = TcpListener::bind(self.addr).await {
                self.serve(listener);
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("could not listen on {} again", self.addr);
    }

    fn serve(&mut self, listener: TcpListener) {
        let behaviour = self.behaviour.clone();
        let by_path = self.by_path.clone();
        let seen = self.seen.clone();
        let tls = self.tls.clone();
        self.accept_task = Some(tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (behaviour, by_path, seen, tls) = (
                    behaviour.clone(),
                    by_path.clone(),
                    seen.clone(),
                    tls.clone(),
                );
                tokio::spawn(async move {
                    match tls {
                        None => handle(stream, None, behaviour, by_path, seen).await,
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(stream).await else {
                                return;
                            };
                            let sni = tls.get_ref().1.server_name().map(str::to_string);
                            handle(tls, Some(sni), behaviour, by_path, seen).await
                        }
                    }
                });
            }
        }));
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop_listening();
    }
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    sni: Option<Option<String>>,
    behaviour: Arc<Mutex<Behaviour>>,
    by_path: Arc<Mutex<Vec<(String, Behaviour)>>>,
    seen: Arc<Seen>,
) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request).to_string();
    let path = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string();
    let host = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("host: ")
                .or_else(|| l.strip_prefix("Host: "))
                .map(str::to_string)
        })
        .unwrap_or_default();
    seen.hosts.lock().unwrap().push(host);
    seen.paths.lock().unwrap().push(path.clone());
    if let Some(sni) = sni {
        seen.sni.lock().unwrap().push(sni);
    }
    let b = by_path
        .lock()
        .unwrap()
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, b)| b.clone())
        .unwrap_or_else(|| behaviour.lock().unwrap().clone());
    seen.requests.fetch_add(1, Ordering::SeqCst);
    match b {
        Behaviour::Respond(status, body) => {
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body).await;
            let _ = stream.shutdown().await;
        }
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
}

/// A self-signed certificate for `names`, as a TLS acceptor and the PEM of the certificate
/// (to use as a CA file).
pub fn self_signed(names: &[&str]) -> (tokio_rustls::TlsAcceptor, String) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    let cert_der = certified.cert.der().clone();
    let key_der =
        rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key_der)
        .unwrap();
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        certified.cert.pem(),
    )
}

/// A fresh directory under /tmp, world-writable so scripts run as `nobody` can write to it.
pub fn temp_dir(tag: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "haldir-health-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// Writes an executable script. The text is staged in this process and the script itself is
/// placed by `install`, a child process: a file this process held open for writing could be
/// inherited by another test thread's child between its fork and exec, and executing it would
/// then fail with ETXTBSY.
pub fn script(dir: &std::path::Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    let staged = dir.join(format!("{name}.staged"));
    std::fs::write(&staged, format!("#!/bin/sh\n{body}\n")).unwrap();
    let status = std::process::Command::new("install")
        .args(["-m", "755"])
        .arg(&staged)
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success(), "install {} failed", path.display());
    std::fs::remove_file(&staged).unwrap();
    path
}

pub fn scheduler() -> (SchedulerHandle, mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (handle, _join) = spawn_scheduler(
        SchedulerConfig {
            max_in_flight: 64,
            seed: Some(1),
        },
        tx,
    );
    (handle, rx)
}

/// The next event, or panic after `within`.
pub async fn next_event(rx: &mut mpsc::UnboundedReceiver<Event>, within: Duration) -> Event {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("no event in time")
        .expect("scheduler gone")
}

/// Assert that no event arrives for `quiet`.
pub async fn no_event(rx: &mut mpsc::UnboundedReceiver<Event>, quiet: Duration) {
    if let Ok(Some(event)) = tokio::time::timeout(quiet, rx.recv()).await {
        panic!("unexpected event {event:?}");
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
