//! keepalived's `static_ipaddress`, `static_routes` and `static_rules`: installed when
//! haldir starts, whatever the VRRP state; a reload removes the ones no longer configured
//! and adds the new ones (the diff is `haldir_director::vrrp_specs::StaticSpecs`); a
//! graceful stop removes them all, as keepalived's VRRP process does when it stops.
//! Failures are logged and the rest goes on: a static entry is not worth a failed start.

use haldir_config::Model;
use haldir_director::vrrp_specs::StaticSpecs;
use haldir_vrrp::netif::Netif;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info};

/// Follows the running model until shutdown, then removes what it installed.
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
    let mut installed = StaticSpecs::default();
    let wanted = StaticSpecs::of(&running.borrow_and_update());
    let netif = match Netif::new() {
        Ok(netif) => netif,
        Err(e) => {
            error!("static addresses, routes and rules are not installed: {e}");
            // The daemon runs on; this task ends with it (not before: that is a failure).
            let _ = shutdown.wait_for(|stop| *stop).await;
            return;
        }
    };
    apply(&netif, &mut installed, wanted).await;
    loop {
        tokio::select! {
            changed = running.changed() => {
                if changed.is_err() {
                    break;
                }
                let wanted = StaticSpecs::of(&running.borrow_and_update());
                apply(&netif, &mut installed, wanted).await;
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    remove(&netif, &installed).await;
}

/// Moves the kernel from `installed` to `wanted`: removals first.
async fn apply(netif: &Netif, installed: &mut StaticSpecs, wanted: StaticSpecs) {
    if *installed == wanted {
        return;
    }
    remove(netif, &installed.without(&wanted)).await;
    let added = wanted.without(installed);
    for placement in &added.addresses {
        let device = placement.device.as_deref().unwrap_or_default();
        let outcome = match netif.interface(device).await {
            Ok(info) => {
                netif
                    .add_address(
                        info.index,
                        placement.address,
                        placement.prefix_len,
                        &placement.options,
                    )
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            error!(address = %placement.address, device, "cannot add static address: {e}");
        }
    }
    for rule in &added.rules {
        if let Err(e) = netif.add_rule(rule).await {
            error!("cannot add static rule: {e}");
        }
    }
    for route in &added.routes {
        if let Err(e) = netif.add_route(route).await {
            error!(destination = %route.destination, "cannot add static route: {e}");
        }
    }
    if !added.is_empty() {
        info!(
            addresses = added.addresses.len(),
            routes = added.routes.len(),
            rules = added.rules.len(),
            "static addresses, routes and rules installed"
        );
    }
    *installed = wanted;
}

/// Removes `statics` (absent ones are fine): routes and rules, then addresses.
async fn remove(netif: &Netif, statics: &StaticSpecs) {
    for route in &statics.routes {
        if let Err(e) = netif.remove_route(route).await {
            error!(destination = %route.destination, "cannot remove static route: {e}");
        }
    }
    for rule in &statics.rules {
        if let Err(e) = netif.remove_rule(rule).await {
            error!("cannot remove static rule: {e}");
        }
    }
    for placement in &statics.addresses {
        let device = placement.device.as_deref().unwrap_or_default();
        let outcome = match netif.interface(device).await {
            Ok(info) => netif.remove_address(info.index, placement.address).await,
            // The interface went, and its addresses with it.
            Err(haldir_vrrp::netif::NetifError::NoSuchInterface(_)) => Ok(false),
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            error!(address = %placement.address, device, "cannot remove static address: {e}");
        }
    }
}
