//! Prometheus metrics (`haldir run --metrics-address ADDR`, off by default):
//! the text exposition format 0.0.4, rendered on each scrape by
//! [`haldir_status::prometheus::render`] from the status document
//! ([`crate::status::document`]) with the daemon's own [`DaemonCounters`],
//! served by a small hyper server at `/metrics`.
//!
//! The port faces a segment a hostile host may share, so the server bounds what a crowd
//! of idle or slow clients can hold: at most [`MAX_CONNECTIONS`] at once (one more is
//! accepted and closed at once, and counted in `haldir_metrics_connections_refused_total`),
//! a request head must arrive within [`HEADER_READ_TIMEOUT`] of the connection opening or
//! of the previous response (so an idle connection is closed then), and no connection
//! lives longer than [`CONNECTION_LIFETIME`]. The daemon's own file descriptors
//! (netlink, checkers, scripts) therefore never run out because of scrapers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::counters::DaemonCounters;
use crate::status::StatusSources;

/// Connections served at once; a Prometheus server needs one per scrape target, so this
/// leaves room for many scrapers and still bounds the descriptors a crowd can take.
pub const MAX_CONNECTIONS: usize = 256;

/// Time a connection has to send a complete request head, from its opening or from the
/// previous response: an idle connection is closed after it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest a connection is served, whatever it does (a client that never reads
/// its response).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// What `/metrics` is rendered from.
#[derive(Clone)]
pub struct Sources {
    /// The sources of the status document.
    pub status: StatusSources,
    /// The daemon's counters.
    pub counters: Arc<DaemonCounters>,
}

async fn handle(
    request: Request<hyper::body::Incoming>,
    sources: Sources,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match (request.method(), request.uri().path()) {
        (&hyper::Method::GET | &hyper::Method::HEAD, "/metrics") => {
            let document = crate::status::document(&sources.status, Some(&sources.counters));
            let text = haldir_status::prometheus::render(&document, env!("CARGO_PKG_VERSION"));
            drop(document);
            crate::memory::release_after_answer(text.len());
            Response::builder()
                .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                .body(Full::new(Bytes::from(text)))
        }
        (_, "/metrics") => Response::builder()
            .status(405)
            .body(Full::new(Bytes::from_static(b"GET /metrics\n"))),
        _ => Response::builder()
            .status(404)
            .body(Full::new(Bytes::from_static(
                b"haldir: metrics are at /metrics\n",
            ))),
    };
    Ok(response.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

/// Binds `address` (an error if it cannot) and returns the task serving
/// `/metrics` there until `shutdown` turns true.
pub async fn serve(
    address: SocketAddr,
    sources: Sources,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    info!(address = %listener.local_addr()?, "serving Prometheus metrics at /metrics");
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    Ok(tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                () = stopped(&mut shutdown) => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        warn!("metrics: accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                // Dropping the stream closes it.
                let refused = &sources.counters.metrics_connections_refused;
                if refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
                    warn!(%peer, "metrics: {MAX_CONNECTIONS} connections open, refusing more");
                }
                continue;
            };
            let sources = sources.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let service =
                    hyper::service::service_fn(move |request| handle(request, sources.clone()));
                let io = hyper_util::rt::TokioIo::new(stream);
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(io, service);
                match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => debug!(%peer, "metrics connection: {e}"),
                    Err(_) => {
                        debug!(%peer, "metrics connection: closed after {CONNECTION_LIFETIME:?}")
                    }
                }
            });
        }
    }))
}

/// Resolves once `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
