//! `[announce]`'s `sloppy_tcp` / `sloppy_sctp` (config/src/announce.rs says why an
//! active-active director needs them): the kernel's `net.ipv4.vs.sloppy_tcp` and
//! `sloppy_sctp` in haldir's network namespace, written at start and again when a reload
//! changes them. Without `[announce]` they are left as they are. The files exist once the
//! ip_vs module is loaded, so the IPVS family is opened first (which loads it); a failure
//! (no IPVS) is logged once per change. Writing a network sysctl needs CAP_NET_ADMIN in
//! the namespace, which haldir keeps after dropping to its account.

use std::sync::Arc;

use haldir_config::Model;
use haldir_ipvs::IpvsClient;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info};

/// Where the IPVS sysctls are, for the namespace of the process that opens them.
const IPVS_SYSCTL_DIR: &str = "/proc/sys/net/ipv4/vs";

/// The sloppy settings `model` asks for: (`sloppy_tcp`, `sloppy_sctp`), or `None`
/// without `[announce]`.
fn wanted(model: &Model) -> Option<(bool, bool)> {
    model
        .announce
        .as_ref()
        .map(|announce| (announce.sloppy_tcp, announce.sloppy_sctp))
}

/// Follows the running model until the daemon stops.
pub fn spawn(
    running: watch::Receiver<Arc<Model>>,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(run(running, shutdown))
}

async fn run(mut running: watch::Receiver<Arc<Model>>, mut shutdown: watch::Receiver<bool>) {
    let mut set = None;
    loop {
        let now = wanted(&running.borrow_and_update());
        if now.is_some() && now != set {
            if let Some((tcp, sctp)) = now {
                match apply(tcp, sctp).await {
                    Ok(()) => info!(
                        sloppy_tcp = tcp,
                        sloppy_sctp = sctp,
                        "IPVS sloppy scheduling set ([announce]: flows moved by ECMP mid-stream are scheduled)"
                    ),
                    Err(e) => error!("[announce]: cannot set net.ipv4.vs.sloppy_tcp/sloppy_sctp: {e}"),
                }
            }
            set = now;
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

async fn apply(tcp: bool, sctp: bool) -> anyhow::Result<()> {
    // Opening the family loads ip_vs, whose sysctls are then there.
    IpvsClient::connect().await?;
    for (name, on) in [("sloppy_tcp", tcp), ("sloppy_sctp", sctp)] {
        let path = format!("{IPVS_SYSCTL_DIR}/{name}");
        // A procfs write: no disk behind it, done at once.
        std::fs::write(&path, if on { "1\n" } else { "0\n" })
            .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(text: &str) -> Model {
        haldir_config::parse_toml(text, "t.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    const SERVER: &str =
        "[[virtual_server]]\nip = \"192.0.2.10\"\nport = 80\nlb_kind = \"DR\"\nlb_algo = \"mh\"\n";

    #[test]
    fn only_an_announcing_director_sets_the_sloppy_sysctls() {
        assert_eq!(wanted(&model(SERVER)), None, "no [announce]: left alone");
        assert_eq!(
            wanted(&model(&format!("{SERVER}[announce]\n"))),
            Some((true, true))
        );
        assert_eq!(
            wanted(&model(&format!(
                "{SERVER}[announce]\nsloppy_sctp = false\n"
            ))),
            Some((true, false))
        );
    }
}
