//! Prometheus metrics (`haldir run --metrics-address ADDR`, off by default):
//! the text exposition format 0.0.4, rendered on each scrape by
//! [`haldir_status::prometheus::render`] from the status document
//! ([`crate::status::document`]) with the daemon's own [`DaemonCounters`],
//! served by a small hyper server at `/metrics`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::counters::DaemonCounters;
use crate::status::StatusSources;

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
            let sources = sources.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request| handle(request, sources.clone()));
                let io = hyper_util::rt::TokioIo::new(stream);
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(io, service);
                if let Err(e) = connection.await {
                    debug!(%peer, "metrics connection: {e}");
                }
            });
        }
    }))
}

/// Resolves once `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
