//! The tokio driver: real sockets, rtnetlink and one timer around sans-IO routers.
//!
//! Virtual routers are grouped by link (interface, address family, source
//! address). Each link is one task that owns its sockets and its routers, waits
//! on the receive socket, a shutdown signal and ONE sleep set to the earliest
//! deadline of its routers, and carries out the actions the routers hand out.
//!
//! - this module: the driver's public API (what it runs, the commands it takes)
//!   and its main loop;
//! - `status`: the live state it publishes;
//! - `reload`: the pure plan of a reload;
//! - `supervisor`: the links, sync groups and preemption holds, and carrying a
//!   reload plan out;
//! - `link`: one link's task, its sockets and routers.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::warn;

use crate::auth::AuthConfig;
use crate::netif::{AddressOptions, Netif, NetifError, RouteSpec, RuleSpec};
use crate::router::RouterConfig;
use crate::vmac::VmacSpec;

mod heartbeat;
mod link;
mod reload;
mod status;
mod supervisor;

pub use reload::{plan_reload, ReloadReport, ReloadStep};
pub use status::{InstanceStatus, InstanceTransition, LinkStatus, Status};

pub use heartbeat::{Heartbeat, Heartbeats};

/// What the driver shares with the rest of the daemon beyond its channels.
#[derive(Debug, Default)]
pub struct Shared {
    /// Instances that start with their preemption held (as if
    /// [`DriverCommand::HoldPreemption`] had come first).
    pub held_at_start: BTreeSet<String>,
    /// Where each link's loop stamps its heartbeat (the systemd watchdog reads them).
    pub heartbeats: std::sync::Arc<Heartbeats>,
    /// Every instance's `auth_hmac` send sequence and replay marks: an instance added
    /// (at start, or replaced by a reload) takes its kept state up; links keep it current.
    pub replay: std::sync::Arc<crate::auth::ReplayStore>,
}

/// How often an idle link loop stamps its heartbeat.
pub fn heartbeat_idle_beat() -> std::time::Duration {
    heartbeat::IDLE_BEAT
}
use link::LinkCommand;
use supervisor::Supervisor;

/// How often the interfaces of the instances (and their tracked ones) are read.
const LINK_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Everything the driver needs to run one virtual router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    /// The instance's name (keepalived's `vrrp_instance NAME`).
    pub name: String,
    /// Interface the instance lives on.
    pub interface: String,
    /// The router's configuration. `primary_address` is replaced by the driver
    /// with `unicast_source` or the interface's own address.
    pub router: RouterConfig,
    /// How each of the router's held addresses (virtual and excluded) is added.
    pub addresses: Vec<AddressPlacement>,
    /// keepalived's `virtual_routes`: installed while the instance holds its
    /// addresses (after they are added), removed when it gives them up.
    pub routes: Vec<RouteSpec>,
    /// keepalived's `virtual_rules`: like the routes.
    pub rules: Vec<RuleSpec>,
    /// `unicast_src_ip`: the source of adverts instead of the interface's address.
    pub unicast_source: Option<IpAddr>,
    /// `unicast_peer`: adverts go to these instead of the multicast group, and
    /// adverts from anyone else are dropped.
    pub unicast_peers: Vec<IpAddr>,
    /// RFC 5798 Accept_Mode: when false (and not the address owner), packets
    /// to the virtual addresses are filtered out on input (see [`crate::accept`]).
    pub accept: bool,
    /// `track_interface`: interfaces whose state moves the instance (see
    /// [`InterfaceTrack`]); the instance's own interface down or missing is always FAULT.
    pub track_interfaces: Vec<InterfaceTrack>,
    /// `auth_hmac`: HMAC authentication of adverts ([`crate::auth`]).
    pub auth: Option<AuthConfig>,
    /// keepalived's `dynamic_interfaces`: a missing interface is not an
    /// error; the instance waits in FAULT until it appears, then starts.
    pub wait_for_interface: bool,
    /// keepalived's `use_vmac` (see [`crate::vmac`]): the macvlan the
    /// addresses go on (their placements name it) and the adverts leave through.
    pub vmac: Option<VmacSpec>,
}

/// Where and how one held address is added (keepalived's `virtual_ipaddress`
/// entry: `ADDRESS/PREFIX [dev IF] [label L] [brd B] [scope S]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPlacement {
    /// The address.
    pub address: IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// `dev IF` naming another interface than the instance's; `None` (or the
    /// instance's own name) is the instance's interface. Announcements for
    /// the address go out on that interface, with its MAC.
    pub device: Option<String>,
    /// Label, broadcast address and scope.
    pub options: AddressOptions,
}

/// Errors that stop the driver from starting.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// rtnetlink failed.
    #[error(transparent)]
    Netif(#[from] NetifError),
    /// The interface has no address to send adverts from.
    #[error("interface {interface} has no {family} address to send adverts from; add one or set unicast_src_ip")]
    NoSourceAddress {
        /// Interface name.
        interface: String,
        /// "IPv4" or "IPv6 link-local".
        family: &'static str,
    },
    /// The accept-mode filter could not be installed.
    #[error(transparent)]
    AcceptFilter(#[from] crate::accept::AcceptFilterError),
    /// A socket could not be opened (raw sockets need CAP_NET_RAW).
    #[error(
        "cannot open the VRRP sockets on {interface}: {source} (raw sockets need CAP_NET_RAW)"
    )]
    Socket {
        /// Interface name.
        interface: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A link's task failed (a panic, or an error it cannot go on after): its routers
    /// resigned, and the driver stopped every other link the way a graceful stop does.
    #[error("the VRRP task of {0}; every instance resigned and haldir stops")]
    LinkFailed(String),
}

/// The effect of tracked objects on an instance (keepalived semantics): the
/// priority moves by the sum of the weights of the tracked objects in their
/// weighted state, and a failing object of weight 0 puts the instance in FAULT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tracking {
    /// Added to the configured priority (negative lowers it).
    pub priority_delta: i32,
    /// A tracked object with weight 0 is failing.
    pub fault: bool,
}

impl Tracking {
    /// The priority to run with: the address owner keeps 255, everyone else
    /// stays within 1..=254 (RFC 5798 §5.2.4).
    pub fn effective_priority(self, configured: u8) -> u8 {
        if configured == 255 {
            return 255;
        }
        // Saturating: a tracked file's value times its weight may be as large as i32.
        i32::from(configured)
            .saturating_add(self.priority_delta)
            .clamp(1, 254) as u8
    }
}

/// One tracked interface of an instance (keepalived's `track_interface` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceTrack {
    /// The interface's name.
    pub name: String,
    /// 0: down means FAULT; else added to the priority (see [`InterfaceTrack::effect`]).
    pub weight: i32,
    /// `reverse`: the adjustment (or the FAULT) goes the other way.
    pub reverse: bool,
}

impl InterfaceTrack {
    /// What the interface's state does to the instance (keepalived.conf(5),
    /// `track_interface`): with weight 0, down is FAULT (with `reverse`, up is); a
    /// positive weight is added while the interface is up, a negative one while it is
    /// down, and `reverse` negates the adjustment. Returns (fault, priority change).
    pub fn effect(&self, up: bool) -> (bool, i32) {
        if self.weight == 0 {
            return (up == self.reverse, 0);
        }
        let applies = if self.weight > 0 { up } else { !up };
        let direction = if self.reverse { -1 } else { 1 };
        (false, if applies { self.weight * direction } else { 0 })
    }
}

/// What an instance's interfaces say together: FAULT, and the priority change of the
/// weighted tracked interfaces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStanding {
    /// The instance's interface, or a tracked one of weight 0, is in its failing state.
    pub fault: bool,
    /// The sum of the weighted tracked interfaces' changes.
    pub priority_delta: i32,
}

/// A sync group: instances that move together (keepalived's `vrrp_sync_group`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupSpec {
    /// The group's name.
    pub name: String,
    /// Its members, by instance name.
    pub members: Vec<String>,
}

/// A request to the running driver.
pub enum DriverCommand {
    /// Replace the running instances by these (a reload): unchanged instances
    /// are left alone, changed ones are changed in place where possible.
    Reload {
        /// The new configuration.
        specs: Vec<InstanceSpec>,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<ReloadReport, DriverError>>,
    },
    /// The sync groups from now on (at start and after each reload).
    SetSyncGroups(Vec<SyncGroupSpec>),
    /// What the tracked objects of an instance say now (unknown names are ignored).
    Track {
        /// The instance.
        instance: String,
        /// The tracked objects' combined effect.
        tracking: Tracking,
    },
    /// Suspend (`held`) or resume an instance's preemption of a live master
    /// of lower priority ([`Router::hold_preemption`]); independent of its
    /// priority and tracking, and kept across reloads until lifted.
    ///
    /// [`Router::hold_preemption`]: crate::router::Router::hold_preemption
    HoldPreemption {
        /// The instance (an unknown name is remembered for when it starts).
        instance: String,
        /// Suspend (true) or resume (false).
        held: bool,
    },
    /// Hand mastership over to a backup without stopping (`haldir handover`),
    /// make-before-break ([`Router::hand_over`]), or cancel that (`cancel`).
    /// An instance in a sync group takes its whole group along: the members
    /// move together. Kept across reloads until cancelled.
    ///
    /// [`Router::hand_over`]: crate::router::Router::hand_over
    HandOver {
        /// The instances (`None`: every instance).
        instances: Option<Vec<String>>,
        /// Cancel an earlier handover instead.
        cancel: bool,
        /// The instances it applied to (with their sync groups' members), or
        /// why nothing was done.
        reply: oneshot::Sender<Result<Vec<String>, String>>,
    },
}

/// Runs the given instances until `shutdown` turns true, then shuts every
/// router down gracefully (priority-0 advert, addresses released). Reloads
/// arrive on `commands`.
pub async fn run(
    specs: Vec<InstanceSpec>,
    status: watch::Sender<Status>,
    commands: mpsc::Receiver<DriverCommand>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), DriverError> {
    run_with_events(specs, status, commands, shutdown, None, Shared::default()).await
}

/// [`run`], also sending every state change of every instance on `events`
/// (the graceful shutdown's included). The driver never waits for a
/// receiver: a receiver that lags behind the channel's capacity loses events.
///
/// The instances named in `held_at_start` start with their preemption held
/// (as if [`DriverCommand::HoldPreemption`] had come first): a command sent
/// once they run could come after a preemption, since a backup may preempt
/// one Master_Down_Interval after it starts.
pub async fn run_with_events(
    specs: Vec<InstanceSpec>,
    status: watch::Sender<Status>,
    mut commands: mpsc::Receiver<DriverCommand>,
    mut shutdown: watch::Receiver<bool>,
    events: Option<broadcast::Sender<InstanceTransition>>,
    shared: Shared,
) -> Result<(), DriverError> {
    let Shared {
        held_at_start,
        heartbeats,
        replay,
    } = shared;
    let (members_tx, mut member_events) = mpsc::unbounded_channel();
    // The links stop when the daemon stops, or when one of them fails (then all resign).
    let (links_stop, links_stopping) = watch::channel(false);
    let (failures_tx, mut failures) = mpsc::unbounded_channel();
    let mut supervisor = Supervisor {
        failures: failures_tx,
        heartbeats,
        replay,
        events,
        members_tx,
        sync_groups: Vec::new(),
        preemption_holds: held_at_start,
        handovers: BTreeSet::new(),
        members: BTreeMap::new(),
        link_faults: BTreeMap::new(),
        configured: Vec::new(),
        waiting: BTreeSet::new(),
        waiting_error: None,
        vmacs: BTreeMap::new(),
        base_sysctls: BTreeMap::new(),
        netif: Netif::new()?,
        links: Vec::new(),
        running: Vec::new(),
        status,
        shutdown: links_stopping,
        filtered: None,
    };
    supervisor.apply(specs).await?;
    let mut failure = None;
    let mut link_poll = tokio::time::interval(LINK_POLL_INTERVAL);
    link_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Nothing to read without instances: an idle daemon is not woken 10 times a second.
            _ = link_poll.tick(), if supervisor.has_links_to_poll() => supervisor.poll_links().await,
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            command = commands.recv() => match command {
                Some(DriverCommand::Reload { specs, reply }) => {
                    let outcome = supervisor.apply(specs).await;
                    let _ = reply.send(outcome);
                }
                Some(DriverCommand::SetSyncGroups(groups)) => {
                    supervisor.sync_groups = groups;
                    supervisor.members.retain(|name, _| {
                        supervisor.configured.iter().any(|r| &r.name == name)
                    });
                }
                Some(DriverCommand::Track { instance, tracking }) => {
                    if let Some(i) = supervisor.link_of(&instance) {
                        let _ = supervisor.links[i]
                            .commands
                            .send(LinkCommand::Track(instance, tracking));
                    }
                }
                Some(DriverCommand::HoldPreemption { instance, held }) => {
                    supervisor.hold_preemption(instance, held);
                }
                Some(DriverCommand::HandOver { instances, cancel, reply }) => {
                    let outcome = supervisor.hand_over(instances, cancel).await;
                    let _ = reply.send(outcome);
                }
                None => {
                    // Nobody can reload any more; run until shutdown.
                    let _ = shutdown.wait_for(|stop| *stop).await;
                    break;
                }
            },
            Some(event) = member_events.recv() => supervisor.member_moved(event),
            Some(why) = failures.recv() => {
                failure = Some(why);
                break;
            }
        }
    }
    // Every link task watches the same signal and resigns its routers.
    let _ = links_stop.send(true);
    for link in supervisor.links.drain(..) {
        if let Err(e) = link.task.await {
            // Caught inside the task; a second panic while resigning ends up here.
            failure.get_or_insert_with(|| format!("a link task panicked while resigning: {e}"));
        }
    }
    supervisor.configured.clear();
    supervisor.remove_unused_vmacs().await;
    if supervisor.filtered.as_ref().is_some_and(|f| !f.is_empty()) {
        if let Err(e) = crate::accept::install_off_thread(Vec::new()).await {
            warn!("cannot remove the accept-mode filter: {e}");
        }
    }
    match failure {
        Some(why) => Err(DriverError::LinkFailed(why)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_moves_the_priority_within_the_rfc_range() {
        let down = Tracking {
            priority_delta: -60,
            fault: false,
        };
        assert_eq!(down.effective_priority(100), 40);
        assert_eq!(down.effective_priority(50), 1, "never 0: that means resign");
        let up = Tracking {
            priority_delta: 200,
            fault: false,
        };
        assert_eq!(up.effective_priority(100), 254, "255 is the owner's alone");
        assert_eq!(down.effective_priority(255), 255, "the owner keeps 255");
        let huge = Tracking {
            priority_delta: i32::MAX,
            fault: false,
        };
        assert_eq!(huge.effective_priority(100), 254, "no overflow");
    }

    #[test]
    fn a_tracked_interface_moves_the_priority_or_faults_as_keepalived() {
        let track = |weight, reverse| InterfaceTrack {
            name: "eth1".into(),
            weight,
            reverse,
        };
        assert_eq!(track(0, false).effect(true), (false, 0));
        assert_eq!(
            track(0, false).effect(false),
            (true, 0),
            "weight 0: down is FAULT"
        );
        assert_eq!(
            track(0, true).effect(true),
            (true, 0),
            "reverse: up is FAULT"
        );
        assert_eq!(track(0, true).effect(false), (false, 0));
        assert_eq!(
            track(10, false).effect(true),
            (false, 10),
            "positive: added while up"
        );
        assert_eq!(track(10, false).effect(false), (false, 0));
        assert_eq!(
            track(-20, false).effect(false),
            (false, -20),
            "negative: while down"
        );
        assert_eq!(track(-20, false).effect(true), (false, 0));
        assert_eq!(
            track(10, true).effect(true),
            (false, -10),
            "reverse turns it round"
        );
        assert_eq!(track(-20, true).effect(false), (false, 20));
    }
}
