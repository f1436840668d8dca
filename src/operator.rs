//! The operator's side of `haldir run`, started next to the VRRP driver and
//! the IPVS task: the live virtual-server status ([`crate::live`]), the
//! control socket ([`crate::control`]), the metrics endpoint
//! ([`crate::metrics`]), the SIGUSR1 / SIGUSR2 dumps ([`crate::dumps`]), the notify
//! scripts ([`crate::notify`]) and systemd's notify protocol ([`crate::systemd`]).

use std::sync::Arc;
use std::time::Duration;

use haldir_config::Model;
use haldir_vrrp::driver::{InstanceTransition, Status};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::control::ControlRequest;
use crate::counters::DaemonCounters;
use crate::live::{HealthMap, LiveView};
use crate::options::RunOptions;
use crate::status::StatusSources;

/// How often the kernel's IPVS table is read for status and metrics.
const LIVE_INTERVAL: Duration = Duration::from_secs(2);

/// The running operator tasks.
pub struct Operator {
    /// What the live reader needs, until it is started.
    live_reader: Option<LiveReaderInputs>,
    /// The notify task (`None` once it has ended).
    notify: Option<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
    /// Feeds the real servers' health into the status and metrics; the health
    /// wiring takes it with [`Operator::health`].
    health: watch::Sender<HealthMap>,
    /// The live virtual servers.
    live: watch::Receiver<LiveView>,
    running: watch::Receiver<std::sync::Arc<Model>>,
}

/// The live reader's inputs: the running model (its virtual servers), the health map,
/// where the live view goes, the status's requests for a read, the stop.
type LiveReaderInputs = (
    watch::Receiver<std::sync::Arc<Model>>,
    watch::Receiver<HealthMap>,
    watch::Sender<LiveView>,
    Arc<tokio::sync::Notify>,
    watch::Receiver<bool>,
);

/// Starts the operator tasks. A control socket or metrics address that
/// cannot be opened is logged as an error; the daemon runs on without it.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    options: &RunOptions,
    running: watch::Receiver<std::sync::Arc<Model>>,
    status: watch::Receiver<Status>,
    events: broadcast::Receiver<InstanceTransition>,
    control: mpsc::Sender<ControlRequest>,
    counters: Arc<DaemonCounters>,
    shutdown: watch::Receiver<bool>,
    resync: watch::Receiver<haldir_ipvs::resync::ResyncStatus>,
    lvs_notices: mpsc::Receiver<crate::notify::LvsNotice>,
    heartbeats: Arc<haldir_vrrp::driver::Heartbeats>,
    announce: watch::Receiver<haldir_director::announce::AnnounceStatus>,
    bgp: watch::Receiver<crate::bmp::Collector>,
) -> anyhow::Result<Operator> {
    let (health_tx, health_rx) = watch::channel(HealthMap::new());
    let (live_tx, live_rx) = watch::channel(LiveView::configured(Arc::clone(&running.borrow())));
    // The live reader runs on a thread of its own, started by [`Operator::start_live_reader`]
    // once the daemon has dropped its privileges (no thread may exist before that).
    let live_demand = Arc::new(tokio::sync::Notify::new());
    let live_reader = Some((
        running.clone(),
        health_rx,
        live_tx,
        live_demand.clone(),
        shutdown.clone(),
    ));
    let mut tasks = Vec::new();
    // The DR real-server ARP check (src/arp_check.rs), shown in status and metrics.
    let (arp_check, arp_report) =
        crate::arp_check::spawn(running.clone(), status.clone(), shutdown.clone());
    tasks.push(arp_check);
    // An operator tool that cannot start is logged, never a reason to stop
    // VRRP: failover matters more than status.
    let status_sources = StatusSources {
        status: status.clone(),
        live: live_rx.clone(),
        live_demand,
        running: running.clone(),
        config_path: options.config_path.clone(),
        arp_check: arp_report.clone(),
        resync,
        announce,
        bgp,
    };
    // SIGUSR1 / SIGUSR2 (src/dumps.rs): installed here, before any instance starts, so
    // that neither signal ever has its default action (terminating haldir).
    match crate::dumps::spawn(
        options.dump_dir.clone(),
        status_sources.clone(),
        counters.clone(),
        shutdown.clone(),
    ) {
        Ok(task) => tasks.push(task),
        Err(e) => error!("no SIGUSR1 / SIGUSR2 dumps: {e:#}"),
    }
    if let Some(path) = &options.control_socket {
        match crate::control::bind(path) {
            Ok(listener) => tasks.push(tokio::spawn(crate::control::serve(
                listener,
                path.clone(),
                status_sources.clone(),
                control,
                shutdown.clone(),
            ))),
            Err(e) => error!("no control socket: {e:#}"),
        }
    }
    if let Some(address) = options.metrics_address {
        let sources = crate::metrics::Sources {
            status: status_sources.clone(),
            counters: counters.clone(),
        };
        match crate::metrics::serve(address, sources, shutdown.clone()).await {
            Ok(task) => tasks.push(task),
            Err(e) => error!("no metrics: cannot serve them on {address}: {e}"),
        }
    }
    if let Some(period) = crate::systemd::watchdog_interval() {
        info!(period = ?period, "systemd watchdog enabled");
        tasks.push(tokio::spawn(crate::systemd::watchdog(period, heartbeats)));
    }
    // READY once every configured instance has started (or after 10 s).
    let wanted = running.borrow().vrrp_instances.len();
    let mut ready_status = status;
    tasks.push(tokio::spawn(async move {
        let started = tokio::time::timeout(
            Duration::from_secs(10),
            ready_status.wait_for(|s| {
                s.instances.len() >= wanted
                    && s.instances
                        .iter()
                        .all(|i| i.state != haldir_vrrp::router::State::Initialize)
            }),
        )
        .await;
        if started.is_err() {
            warn!("the VRRP instances did not all start within 10 s; telling systemd we are ready anyway");
        }
        crate::systemd::ready("running");
    }));
    // The FIFOs are made now, while haldir may still change their owner.
    let fifos = {
        let model = running.borrow();
        crate::notify_fifo::FifoSet::open(&model.notify_fifos, &model.scripts, counters.clone())
    };
    let notify = tokio::spawn(crate::notify::run(
        events,
        lvs_notices,
        running.clone(),
        fifos,
        counters,
    ));
    Ok(Operator {
        live_reader,
        notify: Some(notify),
        tasks,
        health: health_tx,
        live: live_rx,
        running,
    })
}

/// Logs what runs (systemd's READY is sent by the task [`start`] spawns).
pub fn ready(model: &Model) {
    info!(
        instances = model.vrrp_instances.len(),
        virtual_servers = model.virtual_servers.len(),
        "haldir running"
    );
}

impl Operator {
    /// Where the health wiring publishes each real server's health.
    pub fn health(&self) -> watch::Sender<HealthMap> {
        self.health.clone()
    }

    /// Starts the reader of the kernel's IPVS figures for the status (a thread of its own:
    /// call once the daemon runs with its final privileges).
    pub fn start_live_reader(&mut self) {
        if let Some((servers, health, live, demand, shutdown)) = self.live_reader.take() {
            self.tasks.push(crate::live::spawn(
                servers,
                health,
                live,
                demand,
                LIVE_INTERVAL,
                shutdown,
            ));
        }
    }

    /// Waits for the notify task to end (before shutdown it must not: the caller treats
    /// that as a failure). Pending forever once it has ended and been seen.
    pub async fn notify_ended(&mut self) -> String {
        let Some(task) = self.notify.as_mut() else {
            return std::future::pending().await;
        };
        let outcome = task.await;
        self.notify = None;
        match outcome {
            Ok(()) => "the notify task ended".to_owned(),
            Err(e) => format!("the notify task failed: {e}"),
        }
    }

    /// The live virtual servers.
    pub fn live(&self) -> watch::Receiver<LiveView> {
        self.live.clone()
    }

    /// Waits (after the driver stopped) for the last notify scripts, bounded
    /// by `notify_timeout`, and for the other tasks to see the shutdown.
    pub async fn finish(self) {
        let limit = self.running.borrow().scripts.notify_timeout + Duration::from_secs(1);
        if let Some(notify) = self.notify {
            if tokio::time::timeout(limit, notify).await.is_err() {
                warn!("notify scripts still running at exit");
            }
        }
        for mut task in self.tasks {
            if tokio::time::timeout(Duration::from_secs(1), &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
    }
}
