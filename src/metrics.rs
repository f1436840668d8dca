//! Prometheus metrics (`haldir run --metrics-address ADDR`, off by default):
//! the text exposition format 0.0.4, rendered on each scrape from the status
//! document ([`crate::status::metrics`]) with the daemon's own
//! [`DaemonCounters`], served by a small hyper server at `/metrics`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use haldir_ipvs::Op;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::control::StatusSources;

/// Counters the daemon keeps outside the driver: the IPVS reconciler's and
/// the notify scripts'. Shared through an `Arc`, bumped with relaxed atomics.
#[derive(Debug, Default)]
pub struct DaemonCounters {
    /// Reconciliation rounds run.
    pub reconcile_runs: AtomicU64,
    /// Reading the kernel table failed (the round was skipped).
    pub reconcile_read_errors: AtomicU64,
    /// Operations applied, by kind: add / set / delete service / destination.
    pub ops_add_service: AtomicU64,
    /// See `ops_add_service`.
    pub ops_set_service: AtomicU64,
    /// See `ops_add_service`.
    pub ops_del_service: AtomicU64,
    /// See `ops_add_service`.
    pub ops_add_dest: AtomicU64,
    /// See `ops_add_service`.
    pub ops_set_dest: AtomicU64,
    /// See `ops_add_service`.
    pub ops_del_dest: AtomicU64,
    /// Operations the kernel refused.
    pub op_failures: AtomicU64,
    /// Notify scripts that exited 0.
    pub notify_ok: AtomicU64,
    /// Notify scripts that failed (non-zero exit, signal, could not start).
    pub notify_failed: AtomicU64,
    /// Notify scripts killed at `notify_timeout`.
    pub notify_timeout: AtomicU64,
    /// Transitions the notify task missed (its event channel overflowed).
    pub notify_missed: AtomicU64,
}

impl DaemonCounters {
    /// Counts one reconciliation round: the operations it carried out and
    /// the failed ones among them.
    pub fn count_reconcile(&self, ops: &[Op], failures: usize) {
        self.reconcile_runs.fetch_add(1, Ordering::Relaxed);
        for op in ops {
            let counter = match op {
                Op::AddService { .. } => &self.ops_add_service,
                Op::SetService { .. } => &self.ops_set_service,
                Op::DelService { .. } => &self.ops_del_service,
                Op::AddDest { .. } => &self.ops_add_dest,
                Op::SetDest { .. } => &self.ops_set_dest,
                Op::DelDest { .. } => &self.ops_del_dest,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.op_failures
            .fetch_add(failures as u64, Ordering::Relaxed);
    }

    /// The counters as they are now, for the status.
    pub fn snapshot(&self) -> haldir_status::DaemonCounters {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        haldir_status::DaemonCounters {
            reconcile_runs: get(&self.reconcile_runs),
            reconcile_read_errors: get(&self.reconcile_read_errors),
            ops_add_service: get(&self.ops_add_service),
            ops_set_service: get(&self.ops_set_service),
            ops_del_service: get(&self.ops_del_service),
            ops_add_dest: get(&self.ops_add_dest),
            ops_set_dest: get(&self.ops_set_dest),
            ops_del_dest: get(&self.ops_del_dest),
            op_failures: get(&self.op_failures),
            notify_ok: get(&self.notify_ok),
            notify_failed: get(&self.notify_failed),
            notify_timeout: get(&self.notify_timeout),
            notify_missed: get(&self.notify_missed),
        }
    }

    /// Counts a round whose read of the kernel table failed.
    pub fn count_read_error(&self) {
        self.reconcile_runs.fetch_add(1, Ordering::Relaxed);
        self.reconcile_read_errors.fetch_add(1, Ordering::Relaxed);
    }
}

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
            let text = crate::status::metrics(&document, &sources.status.arp_check.borrow());
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
