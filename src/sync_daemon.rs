//! The kernel's IPVS connection-sync daemon, driven by VRRP
//! (`global_defs.lvs_sync_daemon`).
//!
//! Roles follow keepalived 2.x (`ipvs_syncd_master` / `ipvs_syncd_backup` in
//! `keepalived/check/ipvswrapper.c`, called from `vrrp_state_become_master`
//! and `vrrp_state_leave_master`):
//!
//! - with an instance: one daemon at a time. While the instance is MASTER the
//!   kernel runs the **master** daemon (it multicasts the connection table);
//!   in every other state (BACKUP, FAULT, starting) the **backup** daemon
//!   (it receives). A transition stops the old role, then starts the new one.
//! - without an instance: keepalived's checker runs **both** daemons all the
//!   time (sync id 0 unless given); so does haldir.
//!
//! At start the kernel's daemons are adopted when they are what the
//! configuration asks for, else replaced (a previous run, or someone's
//! `ipvsadm --start-daemon`, may have left others). The kernel state is read
//! again every [`RESYNC`] and repaired. At shutdown (SIGTERM / SIGINT) the
//! daemons are stopped, as keepalived does. A kernel without IPVS is logged
//! once, loudly, and VRRP runs on without connection sync.
//!
//! The roles running as configured are published for the bulk resync
//! (`src/bulk_resync.rs`): when the backup role is taken, haldir asks the
//! master router for its whole connection table, which the kernel's own sync
//! would never send for idle connections.

use std::time::Duration;

use haldir_config::Model;
use haldir_director::sync_daemon::{describe, desired, plan, role_name, DaemonOp};
use haldir_ipvs::client::{DaemonRole, SyncDaemon};
use haldir_ipvs::{IpvsClient, IpvsError};
use haldir_vrrp::driver::{InstanceTransition, Status};
use haldir_vrrp::router::State;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

/// How often the kernel's daemons are read again and repaired.
const RESYNC: Duration = Duration::from_secs(10);

/// Starts the task, on a thread of its own ([`crate::own_thread`]): the kernel stops a
/// daemon inside the request, for seconds at times, and the VRRP runtime must not wait.
/// It ends after `shutdown` with the daemons stopped.
/// `roles` gets the roles of the daemons it has running as configured
/// (empty while none, or while the kernel refuses): the bulk resync
/// (`src/bulk_resync.rs`) follows it.
pub fn spawn(
    running: watch::Receiver<std::sync::Arc<Model>>,
    status: watch::Receiver<Status>,
    events: broadcast::Receiver<InstanceTransition>,
    shutdown: watch::Receiver<bool>,
    roles: watch::Sender<Vec<DaemonRole>>,
) -> JoinHandle<()> {
    crate::own_thread::spawn("lvs_sync_daemon", move || {
        run(running, status, events, shutdown, roles)
    })
}

/// The instance's state in `status`.
fn instance_state(status: &Status, name: &str) -> Option<State> {
    status
        .instances
        .iter()
        .find(|i| i.name == name)
        .map(|i| i.state)
}

async fn run(
    mut running: watch::Receiver<std::sync::Arc<Model>>,
    mut status: watch::Receiver<Status>,
    mut events: broadcast::Receiver<InstanceTransition>,
    mut shutdown: watch::Receiver<bool>,
    roles: watch::Sender<Vec<DaemonRole>>,
) {
    // Nothing to do (and no need for IPVS) until lvs_sync_daemon is configured.
    tokio::select! {
        _ = shutdown.wait_for(|stop| *stop) => return,
        _ = running.wait_for(|m| m.lvs_sync_daemon.is_some()) => {}
    }
    let client = match IpvsClient::connect().await {
        Ok(client) => client,
        Err(e) => {
            error!(
                "lvs_sync_daemon: {e}: no connection sync (the kernel's IPVS sync daemon cannot be started); VRRP runs on"
            );
            let _ = shutdown.wait_for(|stop| *stop).await;
            return;
        }
    };
    // What was last applied successfully; `None`: read the kernel and repair.
    let mut applied: Option<Vec<SyncDaemon>> = None;
    let mut managing = false;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let config = running.borrow_and_update().lvs_sync_daemon.clone();
        let wanted = match &config {
            Some(c) => {
                let state = c
                    .instance
                    .as_deref()
                    .and_then(|name| instance_state(&status.borrow_and_update(), name));
                desired(c, state)
            }
            None => Vec::new(),
        };
        // Without a configuration haldir leaves the kernel's daemons alone,
        // unless it started them itself (a reload removed lvs_sync_daemon).
        if (config.is_some() || managing) && applied.as_ref() != Some(&wanted) {
            match reconcile(&client, &wanted).await {
                Ok(()) => {
                    applied = Some(wanted.clone());
                    roles.send_if_modified(|r| {
                        let now: Vec<DaemonRole> = wanted.iter().map(|d| d.role).collect();
                        let changed = *r != now;
                        *r = now;
                        changed
                    });
                }
                Err(e) => {
                    warn!("lvs_sync_daemon: {e}; retrying in {}s", RESYNC.as_secs());
                    applied = None;
                    roles.send_if_modified(|r| {
                        let changed = !r.is_empty();
                        r.clear();
                        changed
                    });
                }
            }
            managing = config.is_some();
        }
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            changed = running.changed() => if changed.is_err() { break },
            changed = status.changed() => if changed.is_err() { break },
            event = events.recv() => match event {
                Ok(t) => debug!(instance = %t.name, to = t.to.as_str(), "lvs_sync_daemon: transition"),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {
                    // The driver is gone; the status still tells the state.
                    events = broadcast::channel(1).1;
                }
            },
            () = tokio::time::sleep(RESYNC) => applied = None,
        }
    }
    roles.send_replace(Vec::new());
    if managing {
        for role in [DaemonRole::Master, DaemonRole::Backup] {
            match client.daemons().await {
                Ok(list) if list.iter().all(|d| d.role != role) => continue,
                _ => {}
            }
            match client.stop_daemon(role).await {
                Ok(()) => info!("lvs_sync_daemon: stopped the {} daemon", role_name(role)),
                Err(e) => warn!(
                    "lvs_sync_daemon: stopping the {} daemon: {e}",
                    role_name(role)
                ),
            }
        }
    }
}

/// Reads the kernel's daemons and makes them `wanted`.
async fn reconcile(client: &IpvsClient, wanted: &[SyncDaemon]) -> Result<(), IpvsError> {
    let running = client.daemons().await?;
    let ops = plan(&running, wanted);
    if ops.is_empty() {
        debug!("lvs_sync_daemon: kernel daemons already as configured");
    }
    let mut first_error = None;
    for op in ops {
        let result = match &op {
            DaemonOp::Stop(role) => {
                let result = client.stop_daemon(*role).await;
                if result.is_ok() {
                    info!("lvs_sync_daemon: stopped the {} daemon", role_name(*role));
                }
                result
            }
            DaemonOp::Start(d) => {
                let result = client.start_daemon(d).await;
                if result.is_ok() {
                    info!("lvs_sync_daemon: started the {}", describe(d));
                }
                result
            }
        };
        if let Err(e) = result {
            error!("lvs_sync_daemon: {op:?} failed: {e}");
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        None => Ok(()),
        Some(e) => Err(e),
    }
}
