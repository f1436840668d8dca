//! `haldir run`: builds the VRRP driver's instances from the validated model,
//! wires the signals (SIGTERM / SIGINT: graceful stop; SIGHUP: reload) and
//! publishes the live status as a JSON file for operators and tests.

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use haldir_config::VirtualServer;
use haldir_config::{Authentication, Model, VrrpInstance, VrrpVersion};
use haldir_ipvs::apply::Reconciler;
use haldir_ipvs::IpvsClient;
use haldir_vrrp::driver::{self, DriverCommand, InstanceSpec, ReloadReport, Status};
use haldir_vrrp::router::{GarpConfig, RouterConfig};
use haldir_vrrp::wire::vrrp::{Auth, Version};
use serde_json::{json, Value};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

/// Options of `haldir run` beyond the configuration itself.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where to keep a JSON snapshot of the live status (rewritten on change).
    pub status_file: Option<PathBuf>,
    /// How often the IPVS table is re-read and repaired.
    pub ipvs_resync: Duration,
    /// The configuration file, read again on SIGHUP.
    pub config_path: PathBuf,
    /// Its syntax, as chosen at start (`--format`), kept for reloads.
    pub config_format: haldir_config::Format,
    /// The control socket for `haldir status` / `haldir reload` (`None`: none).
    pub control_socket: Option<PathBuf>,
    /// Where to serve Prometheus metrics (`None`: off).
    pub metrics_address: Option<std::net::SocketAddr>,
}

/// The driver's view of one configured instance.
pub fn instance_spec(instance: &VrrpInstance) -> InstanceSpec {
    let auth = match &instance.authentication {
        None => Auth::None,
        Some(Authentication::Pass(password)) => {
            // RFC 3768 §5.3.10: the password, zero-padded to 8 bytes.
            let mut data = [0u8; 8];
            let bytes = password.as_bytes();
            data[..bytes.len().min(8)].copy_from_slice(&bytes[..bytes.len().min(8)]);
            Auth::Simple(data)
        }
    };
    InstanceSpec {
        name: instance.name.clone(),
        interface: instance.interface.clone(),
        router: RouterConfig {
            version: match instance.version {
                VrrpVersion::V2 => Version::V2,
                VrrpVersion::V3 => Version::V3,
            },
            vrid: instance.virtual_router_id,
            priority: instance.priority,
            advert_interval_centis: instance.advert_int_centis,
            preempt: instance.preempt,
            preempt_delay: Duration::from_secs(u64::from(instance.preempt_delay_secs)),
            // Set by the driver from the interface (or unicast_src_ip).
            primary_address: instance
                .unicast_src_ip
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            virtual_addresses: instance.virtual_ipaddress.iter().map(|v| v.addr).collect(),
            auth,
            garp: GarpConfig {
                repeat: instance.garp_master_repeat,
                interval: Duration::from_millis(u64::from(instance.garp_interval_millis)),
                master_delay: Duration::from_secs(u64::from(instance.garp_master_delay_secs)),
                refresh: (instance.garp_master_refresh_secs > 0)
                    .then(|| Duration::from_secs(u64::from(instance.garp_master_refresh_secs))),
            },
        },
        virtual_prefix_lens: instance
            .virtual_ipaddress
            .iter()
            .map(|v| v.prefix_len)
            .collect(),
        unicast_source: instance.unicast_src_ip,
        unicast_peers: instance.unicast_peer.clone(),
        accept: instance.accept,
        track_interfaces: instance.track_interface.clone(),
        auth: instance
            .auth_hmac
            .as_ref()
            .map(|a| auth_config(a, instance.advert_int_centis)),
    }
}

/// The driver's view of an instance's `auth_hmac`.
fn auth_config(
    auth: &haldir_config::AuthHmac,
    advert_int_centis: u16,
) -> haldir_vrrp::auth::AuthConfig {
    use haldir_config::AuthHmacMode;
    use haldir_vrrp::auth::{AntiReplay, AuthConfig, AuthKey, Mode};
    AuthConfig {
        keys: auth
            .keys
            .iter()
            .map(|k| AuthKey {
                id: k.id,
                secret: k.secret.clone(),
            })
            .collect(),
        active_key: auth.active_key,
        mode: match auth.mode {
            AuthHmacMode::Enforce => Mode::Enforce,
            AuthHmacMode::Permissive => Mode::Permissive,
            AuthHmacMode::ReceiveOnly => Mode::ReceiveOnly,
        },
        anti_replay: if auth.anti_replay_time {
            AntiReplay::Time {
                window_secs: auth.time_window_secs(advert_int_centis),
            }
        } else {
            AntiReplay::Monotonic
        },
    }
}

/// The driver's view of the configured sync groups.
pub fn sync_group_specs(model: &Model) -> Vec<driver::SyncGroupSpec> {
    model
        .sync_groups
        .iter()
        .map(|g| driver::SyncGroupSpec {
            name: g.name.clone(),
            members: g.members.clone(),
        })
        .collect()
}

/// The outcome of a reload, for logs and for `haldir reload`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new configuration runs; what happened to each instance.
    Applied(ReloadReport),
    /// The new configuration is invalid or could not be applied; the running
    /// one stays, untouched. One line per error.
    Rejected(Vec<String>),
}

/// Runs the daemon until SIGTERM or SIGINT, then stops gracefully. SIGHUP
/// reloads `options.config_path`.
pub async fn run(model: Model, options: RunOptions) -> anyhow::Result<()> {
    let script_errors = crate::notify::check_model(&model);
    if !script_errors.is_empty() {
        anyhow::bail!("{}", script_errors.join("\n"));
    }
    let specs: Vec<InstanceSpec> = model.vrrp_instances.iter().map(instance_spec).collect();
    let (status_tx, status_rx) = watch::channel(Status::default());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (commands_tx, commands_rx) = mpsc::channel(4);
    let (virtual_servers_tx, virtual_servers_rx) = watch::channel(model.virtual_servers.clone());
    // Operator tools (src/control.rs, metrics.rs, notify.rs, live.rs).
    let (running_tx, running_rx) = watch::channel(model.clone());
    let counters = std::sync::Arc::new(crate::metrics::DaemonCounters::default());
    let (events_tx, events_rx) = broadcast::channel(1024);
    let (control_tx, mut control_rx) = mpsc::channel::<crate::control::ControlRequest>(4);
    // The bulk resync's status (src/bulk_resync.rs publishes it).
    let (resync_tx, resync_rx) = watch::channel(haldir_ipvs::resync::ResyncStatus::default());
    let operator = crate::operator::start(
        &options,
        running_rx,
        status_rx.clone(),
        virtual_servers_rx.clone(),
        events_rx,
        control_tx,
        counters.clone(),
        shutdown_rx.clone(),
        resync_rx.clone(),
    )
    .await?;
    // Started as root: from here on only CAP_NET_ADMIN + CAP_NET_RAW (src/privilege.rs);
    // the control socket and the metrics port are bound, scripts go through the launcher.
    crate::privilege::drop_to_network_only(crate::privilege::needs_bind_service(&model))
        .context("dropping privileges")?;
    for line in crate::script_security::warnings(&model) {
        warn!("{line}");
    }

    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;

    if let Some(path) = options.status_file.clone() {
        tokio::spawn(publish_status(status_rx, resync_rx, path));
    }
    // Health checks (src/health_wiring.rs) follow the running model and turn it into the
    // desired IPVS table; tracked scripts move the instances' priorities.
    let desired_rx = crate::health_wiring::spawn(
        running_tx.subscribe(),
        commands_tx.clone(),
        shutdown_rx.clone(),
    );
    let ipvs = tokio::spawn(keep_ipvs_in_step(
        desired_rx,
        options.ipvs_resync,
        shutdown_rx.clone(),
        counters.clone(),
    ));
    // The kernel's connection-sync daemon follows the instance named in
    // lvs_sync_daemon (src/sync_daemon.rs).
    let (sync_roles_tx, sync_roles_rx) = watch::channel(Vec::new());
    let sync_daemon = crate::sync_daemon::spawn(
        running_tx.subscribe(),
        status_tx.subscribe(),
        events_tx.subscribe(),
        shutdown_rx.clone(),
        sync_roles_tx,
    );
    // Bulk resync of the connection table between haldir routers
    // (src/bulk_resync.rs), following the sync daemon's role.
    // Its preemption hold is in place before the instances start.
    let held_at_start = crate::bulk_resync::held_at_start(&model);
    let bulk_resync = crate::bulk_resync::spawn(
        running_tx.subscribe(),
        sync_roles_rx,
        status_tx.subscribe(),
        commands_tx.clone(),
        shutdown_rx.clone(),
        held_at_start.clone(),
        resync_tx,
    );
    let driver = tokio::spawn(driver::run_with_events(
        specs,
        status_tx,
        commands_rx,
        shutdown_rx,
        Some(events_tx),
        held_at_start.into_iter().collect(),
    ));
    tokio::pin!(driver);
    // Queued behind the start: the driver reads it once its instances run.
    let _ = commands_tx
        .send(DriverCommand::SetSyncGroups(sync_group_specs(&model)))
        .await;
    crate::operator::ready(&model);
    loop {
        tokio::select! {
            result = &mut driver => {
                // The driver only returns early when it cannot start.
                result.context("the VRRP driver panicked")??;
                return Ok(());
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                info!(config = %options.config_path.display(), "SIGHUP: reloading");
                crate::systemd::reloading();
                reload(&options.config_path, options.config_format, &commands_tx, &virtual_servers_tx, &running_tx).await;
                crate::systemd::ready("running");
            }
            Some(request) = control_rx.recv() => match request {
                crate::control::ControlRequest::Reload(reply) => {
                    info!(config = %options.config_path.display(), "haldir reload: reloading");
                    crate::systemd::reloading();
                    let outcome =
                        reload(&options.config_path, options.config_format, &commands_tx, &virtual_servers_tx, &running_tx).await;
                    crate::systemd::ready("running");
                    let _ = reply.send(outcome);
                }
            },
        }
    }
    info!("stopping: sending priority 0 and releasing the virtual addresses");
    crate::systemd::stopping();
    let _ = shutdown_tx.send(true);
    driver.await.context("the VRRP driver panicked")??;
    let _ = ipvs.await;
    let _ = sync_daemon.await;
    let _ = bulk_resync.await;
    // The notify scripts of the last transitions (STOP) run to their end or timeout.
    operator.finish().await;
    info!("stopped");
    Ok(())
}

/// Reads and validates the configuration again and, if it is valid, applies
/// only the difference. An invalid file changes nothing: every error is logged
/// and the running configuration stays.
pub async fn reload(
    path: &std::path::Path,
    format: haldir_config::Format,
    driver: &mpsc::Sender<DriverCommand>,
    virtual_servers: &watch::Sender<Vec<VirtualServer>>,
    running: &watch::Sender<Model>,
) -> ReloadOutcome {
    let model = match haldir_config::load_file_as(path, format) {
        Ok(model) if !crate::notify::check_model(&model).is_empty() => {
            let lines = crate::notify::check_model(&model);
            for line in &lines {
                error!("reload rejected: {line}");
            }
            warn!("reload rejected: the running configuration stays");
            return ReloadOutcome::Rejected(lines);
        }
        Ok(model) => {
            for line in crate::script_security::warnings(&model) {
                warn!("{line}");
            }
            model
        }
        Err(errors) => {
            let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
            for line in &lines {
                error!("reload rejected: {line}");
            }
            warn!("reload rejected: the running configuration stays");
            return ReloadOutcome::Rejected(lines);
        }
    };
    let specs: Vec<InstanceSpec> = model.vrrp_instances.iter().map(instance_spec).collect();
    let (reply, answer) = oneshot::channel();
    if driver
        .send(DriverCommand::Reload { specs, reply })
        .await
        .is_err()
    {
        return ReloadOutcome::Rejected(vec!["the VRRP driver is not running".into()]);
    }
    match answer.await {
        Ok(Ok(report)) => {
            let _ = driver
                .send(DriverCommand::SetSyncGroups(sync_group_specs(&model)))
                .await;
            info!(
                kept = ?report.kept,
                updated = ?report.updated,
                replaced = ?report.replaced,
                added = ?report.added,
                removed = ?report.removed,
                "reloaded"
            );
            // The IPVS side diffs the table itself: only changed entries are touched.
            virtual_servers.send_if_modified(|current| {
                let changed = *current != model.virtual_servers;
                *current = model.virtual_servers.clone();
                changed
            });
            running.send_replace(model);
            ReloadOutcome::Applied(report)
        }
        Ok(Err(e)) => {
            error!("reload failed, nothing changed: {e}");
            ReloadOutcome::Rejected(vec![e.to_string()])
        }
        Err(_) => ReloadOutcome::Rejected(vec!["the VRRP driver stopped".into()]),
    }
}

/// Keeps the kernel's IPVS table equal to the configured virtual servers: reads
/// what is there and adopts it (never a flush), applies the difference, and
/// re-reads every `resync` to repair drift (someone ran ipvsadm by hand). A
/// failed operation is logged with its service or destination and retried on
/// the next round; the others are applied. The table stays in place on exit,
/// so a restart does not disturb established connections.
async fn keep_ipvs_in_step(
    mut servers: watch::Receiver<haldir_ipvs::model::Table>,
    resync: Duration,
    mut shutdown: watch::Receiver<bool>,
    counters: std::sync::Arc<crate::metrics::DaemonCounters>,
) {
    // Nothing to do (and no need for IPVS) until some virtual server is configured.
    tokio::select! {
        _ = shutdown.wait_for(|stop| *stop) => return,
        _ = servers.wait_for(|t| t.service_count() > 0) => {}
    }
    let client = match IpvsClient::connect().await {
        Ok(client) => client,
        Err(e) => {
            error!("{e}: the virtual servers are not programmed; VRRP runs on");
            return;
        }
    };
    let mut desired = servers.borrow_and_update().clone();
    // Services a previous run owned (the configuration may since have dropped them, and
    // that run may have been killed before deleting them).
    let (mut ownership, previously_owned) =
        crate::ipvs_ownership::OwnershipFile::open(crate::ipvs_ownership::default_path());
    let mut reconciler = Reconciler::with_owned(client, previously_owned);
    let mut first_round = true;
    // After a refused operation the next round comes sooner than `resync`: 1 s, then
    // doubling up to `resync`, back to `resync` once a round applies everything.
    let mut retry = RetryBackoff::new(resync);
    loop {
        // Written before any service can be created, so a crash cannot leave an owned
        // service the file does not know.
        let mut will_own = reconciler.owned().clone();
        will_own.extend(desired.services.keys().copied());
        ownership.update(&will_own);
        let outcome = reconciler.reconcile(&desired).await;
        ownership.update(reconciler.owned());
        let next_round = match outcome {
            Ok(report) => {
                counters.count_reconcile(&report.ops, report.failures.len());
                for failure in &report.failures {
                    error!(
                        "IPVS: {} failed: {}; retrying in {:?}, the other changes are applied",
                        failure.op,
                        failure.error,
                        retry.peek(!report.failures.is_empty())
                    );
                }
                if !report.was_in_sync() {
                    info!(
                        applied = report.applied(),
                        failed = report.failures.len(),
                        "IPVS table brought in step with the configuration"
                    );
                } else if first_round {
                    // A restart over a table a previous run programmed: adopted as it is.
                    info!(
                        services = desired.service_count(),
                        destinations = desired.dest_count(),
                        "IPVS table already in step with the configuration (adopted, no changes)"
                    );
                } else {
                    debug!("IPVS table still in step with the configuration");
                }
                first_round = false;
                retry.next(!report.failures.is_empty())
            }
            Err(e) => {
                counters.count_read_error();
                let wait = retry.next(true);
                warn!("IPVS: reading the kernel table failed: {e}; retrying in {wait:?}");
                wait
            }
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            changed = servers.changed() => {
                if changed.is_err() {
                    return;
                }
                desired = servers.borrow_and_update().clone();
            }
            () = tokio::time::sleep(next_round) => {}
        }
    }
}

/// When the next IPVS round runs: `resync` while every operation succeeds; after a
/// failure 1 s, then doubling, never more than `resync`.
struct RetryBackoff {
    resync: Duration,
    failed_rounds: u32,
}

impl RetryBackoff {
    const FIRST: Duration = Duration::from_secs(1);

    fn new(resync: Duration) -> Self {
        RetryBackoff {
            resync,
            failed_rounds: 0,
        }
    }

    /// The wait [`next`](Self::next) would return, without counting the round.
    fn peek(&self, failed: bool) -> Duration {
        if !failed {
            return self.resync;
        }
        let doubled = Self::FIRST.saturating_mul(1 << self.failed_rounds.min(16));
        doubled.min(self.resync)
    }

    /// Counts a round (`failed`: some operation was refused) and returns the wait.
    fn next(&mut self, failed: bool) -> Duration {
        let wait = self.peek(failed);
        self.failed_rounds = if failed { self.failed_rounds + 1 } else { 0 };
        wait
    }
}

/// Rewrites `path` (atomically, through a rename) whenever the status changes.
async fn publish_status(
    mut status: watch::Receiver<Status>,
    mut resync: watch::Receiver<haldir_ipvs::resync::ResyncStatus>,
    path: PathBuf,
) {
    let temporary = path.with_extension("tmp");
    loop {
        let snapshot = status_json(&status.borrow_and_update(), &resync.borrow_and_update());
        let text = serde_json::to_string_pretty(&snapshot).unwrap_or_default();
        // On the blocking pool: this runtime also runs the VRRP timers, and a write or
        // rename can stall for a long time on a busy disk (journal commits).
        let written = tokio::task::spawn_blocking({
            let (temporary, path) = (temporary.clone(), path.clone());
            move || {
                std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, &path))
            }
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(path = %path.display(), "cannot write the status file: {e}"),
            Err(e) => warn!(path = %path.display(), "writing the status file failed: {e}"),
        }
        let changed = tokio::select! {
            changed = status.changed() => changed,
            // The bulk-resync task may end first: its last status stays.
            Ok(()) = resync.changed() => Ok(()),
        };
        if changed.is_err() {
            return;
        }
        // Coalesce bursts of changes (an advert every 10 ms changes counters).
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The status as JSON: one object per instance and per link.
pub fn status_json(status: &Status, resync: &haldir_ipvs::resync::ResyncStatus) -> Value {
    let instances: Vec<Value> = status
        .instances
        .iter()
        .map(|i| {
            let drops: serde_json::Map<String, Value> = i
                .stats
                .drops
                .iter()
                .map(|(reason, count)| (reason.as_str().to_owned(), json!(count)))
                .collect();
            let auth_accepted: serde_json::Map<String, Value> = i
                .stats
                .auth_accepted
                .iter()
                .map(|(reason, count)| (reason.as_str().to_owned(), json!(count)))
                .collect();
            json!({
                "name": i.name,
                "interface": i.interface,
                "state": i.state.as_str(),
                "priority": i.priority,
                "master": i.master.map(|a| a.to_string()),
                "since_unix": i.since.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs_f64()),
                "reason": i.reason,
                "preemption_held": i.preemption_held,
                "adverts_sent": i.stats.adverts_sent,
                "adverts_received": i.stats.adverts_received,
                "priority_zero_sent": i.stats.priority_zero_sent,
                "priority_zero_received": i.stats.priority_zero_received,
                "announcements": i.stats.announcements,
                "became_master": i.stats.became_master,
                "transitions": i.stats.transitions,
                "address_list_mismatch": i.stats.address_list_mismatch,
                "adverts_authenticated": i.stats.adverts_authenticated,
                "auth_accepted": auth_accepted,
                "drops": drops,
            })
        })
        .collect();
    let links: Vec<Value> = status
        .links
        .iter()
        .map(|l| {
            json!({
                "interface": l.interface,
                "source": l.source.map(|a| a.to_string()),
                "drops": l.drops,
                "send_errors": l.send_errors,
            })
        })
        .collect();
    json!({
        "instances": instances,
        "links": links,
        "bulk_resync": resync,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_operation_is_retried_sooner_backing_off_to_the_resync_period() {
        let mut retry = RetryBackoff::new(Duration::from_secs(10));
        assert_eq!(retry.next(false), Duration::from_secs(10));
        let waits: Vec<u64> = (0..6).map(|_| retry.next(true).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(retry.next(false), Duration::from_secs(10), "success resets");
        assert_eq!(retry.next(true), Duration::from_secs(1));
    }
}
