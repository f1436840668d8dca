//! keepalived's `lvs_timeouts` (global_defs): the IPVS connection timeouts, set when
//! haldir starts and again when a reload changes them (`ipvsadm --set`). A timeout not
//! given stays as the kernel has it. Without IPVS the failure is logged once per change.

use haldir_config::{LvsTimeouts, Model};
use haldir_ipvs::client::Timeouts;
use haldir_ipvs::IpvsClient;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info};

/// Follows the running model until the daemon stops.
pub fn spawn(
    running: watch::Receiver<std::sync::Arc<Model>>,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(run(running, shutdown))
}

async fn run(
    mut running: watch::Receiver<std::sync::Arc<Model>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut set = LvsTimeouts::default();
    loop {
        let wanted = running.borrow_and_update().lvs_timeouts;
        if wanted != set && wanted != LvsTimeouts::default() {
            match apply(wanted).await {
                Ok(()) => info!(
                    tcp = wanted.tcp_secs,
                    tcpfin = wanted.tcp_fin_secs,
                    udp = wanted.udp_secs,
                    "IPVS timeouts set (lvs_timeouts; 0 = left as it was)"
                ),
                Err(e) => error!("lvs_timeouts: cannot set the IPVS timeouts: {e}"),
            }
            set = wanted;
        }
        tokio::select! {
            changed = running.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

async fn apply(timeouts: LvsTimeouts) -> Result<(), haldir_ipvs::IpvsError> {
    let client = IpvsClient::connect().await?;
    client
        .set_timeouts(&Timeouts {
            tcp_secs: timeouts.tcp_secs,
            tcp_fin_secs: timeouts.tcp_fin_secs,
            udp_secs: timeouts.udp_secs,
        })
        .await
}
