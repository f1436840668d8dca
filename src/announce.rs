//! `[announce]` carried out (issue 17, active-active): the task that keeps each VIP's /32
//! (/128) on the announce interface while `haldir_director::announce` says this director
//! should receive its traffic, and off it otherwise; FRR's bgpd announces the address
//! (`network VIP/32`, import check on) and withdraws it with the address
//! (`docs/active-active.md`).
//!
//! It re-decides on every quorum change the health wiring publishes, on every reload, when
//! the stop begins, and every [`POLL`] (the links' state, as the VRRP driver's links read
//! their interfaces on the same period). The addresses as the kernel has them are read every
//! [`ADDRESS_POLL`] (one removed by hand is put back, one added by hand for a withdrawn VIP
//! removed): listing them dumps every address of the namespace, thousands with thousands of
//! VIPs, so between two reads the task goes by its own changes. Each change is logged at info with its reason; the
//! decisions go to the status ([`AnnounceStatus`]).
//!
//! The stop (`src/daemon.rs`): the daemon raises `withdraw`, waits until this task has
//! removed every VIP (`withdrawn`), drains, and only then stops the rest. At the end the
//! task removes whatever it still owns (a stop without drain, a failed part). Without
//! `[announce]` the task owns nothing and touches nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use haldir_config::Model;
use haldir_director::announce::{
    changes, decide, host_prefix_len, AnnounceSpec, AnnounceStatus, Change, Inputs, Settling,
};
use haldir_ipvs::ServiceKey;
use haldir_vrrp::netif::{AddressOptions, Netif, NetifError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

/// How often the links are read.
pub const POLL: Duration = Duration::from_millis(100);
/// How often the announce interface's addresses are read.
pub const ADDRESS_POLL: Duration = Duration::from_secs(1);

/// Each virtual server's quorum, as the health wiring keeps it.
pub type Quorum = Arc<HashMap<ServiceKey, bool>>;

/// The channels of the announce task.
pub struct Channels {
    /// The running configuration.
    pub running: watch::Receiver<Arc<Model>>,
    /// The virtual servers' quorum.
    pub quorum: watch::Receiver<Quorum>,
    /// Raised when the stop begins: every VIP is withdrawn.
    pub withdraw: watch::Receiver<bool>,
    /// Raised once every VIP is withdrawn after `withdraw`.
    pub withdrawn: watch::Sender<bool>,
    /// The end: what is still owned is removed and the task returns.
    pub shutdown: watch::Receiver<bool>,
    /// Where the status goes.
    pub status: watch::Sender<AnnounceStatus>,
}

/// Starts the task.
pub fn spawn(channels: Channels) -> JoinHandle<()> {
    tokio::spawn(run(channels))
}

/// What the task owns and knows.
struct Announcer {
    netif: Netif,
    spec: Option<AnnounceSpec>,
    /// The interface and VIPs of the configuration last applied: what haldir may remove.
    owned: Option<(String, BTreeSet<IpAddr>)>,
    /// Each VIP's announcement and reason, as last applied.
    state: BTreeMap<IpAddr, (bool, String)>,
    /// The last problem reading an interface, logged once until it changes.
    read_problem: Option<String>,
    /// The VIPs on the announce interface: when they were last read, and what is there
    /// since (that read, with this task's own changes).
    present: Option<(Instant, BTreeSet<IpAddr>)>,
    /// What the last decision was made from.
    last_seen: Option<Seen>,
    /// The VIPs waiting for a round of checks before they are announced.
    settling: Settling,
    /// When the next of those waits ends: then the same inputs decide otherwise.
    settle_ends: Option<Instant>,
}

/// The inputs of one decision: while they stay the same, so does the decision.
struct Seen {
    quorum: Quorum,
    link_up: HashMap<String, bool>,
    stopping: bool,
    present: BTreeSet<IpAddr>,
}

impl PartialEq for Seen {
    fn eq(&self, other: &Seen) -> bool {
        // The same map is the same quorum, without comparing it.
        (Arc::ptr_eq(&self.quorum, &other.quorum) || self.quorum == other.quorum)
            && self.link_up == other.link_up
            && self.stopping == other.stopping
            && self.present == other.present
    }
}

async fn run(mut channels: Channels) {
    let netif = match Netif::new() {
        Ok(netif) => netif,
        Err(e) => {
            error!("the VIPs cannot be announced: {e}");
            let _ = channels.shutdown.wait_for(|stop| *stop).await;
            return;
        }
    };
    let mut announcer = Announcer {
        netif,
        spec: None,
        owned: None,
        state: BTreeMap::new(),
        read_problem: None,
        present: None,
        last_seen: None,
        settling: Settling::default(),
        settle_ends: None,
    };
    let first = channels.running.borrow_and_update().clone();
    announcer.configure(&first).await;
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = *channels.withdraw.borrow_and_update();
        let quorum = channels.quorum.borrow_and_update().clone();
        if announcer.evaluate(&quorum, stopping).await || announcer.spec.is_none() {
            channels
                .status
                .send_if_modified(|status| announcer.publish(status));
        }
        if stopping {
            channels
                .withdrawn
                .send_if_modified(|done| !std::mem::replace(done, true));
        }
        tokio::select! {
            _ = poll.tick(), if announcer.spec.is_some() => {}
            changed = channels.quorum.changed() => if changed.is_err() { break },
            changed = channels.withdraw.changed() => if changed.is_err() { break },
            changed = channels.running.changed() => {
                if changed.is_err() {
                    break;
                }
                let model = channels.running.borrow_and_update().clone();
                announcer.configure(&model).await;
            }
            () = async { let _ = channels.shutdown.wait_for(|stop| *stop).await; } => break,
        }
    }
    announcer.remove_owned().await;
    channels
        .status
        .send_if_modified(|status| announcer.publish(status));
}

impl Announcer {
    /// Takes `model`'s `[announce]`; the VIPs it no longer has (or all of them, when the
    /// interface changed) are removed from the interface they were on.
    async fn configure(&mut self, model: &Model) {
        let spec = AnnounceSpec::of(model);
        if let Some((interface, owned)) = &self.owned {
            let kept: BTreeSet<IpAddr> = match &spec {
                Some(spec) if spec.interface == *interface => {
                    spec.vips.iter().map(|v| v.address).collect()
                }
                _ => BTreeSet::new(),
            };
            let dropped: Vec<IpAddr> = owned.difference(&kept).copied().collect();
            let interface = interface.clone();
            if !dropped.is_empty() {
                let index = self.index_of(&interface).await;
                for address in dropped {
                    self.remove(&index, &interface, address, "not configured")
                        .await;
                    self.state.remove(&address);
                }
            }
        }
        self.owned = spec.as_ref().map(|spec| {
            (
                spec.interface.clone(),
                spec.vips.iter().map(|v| v.address).collect(),
            )
        });
        if let Some(spec) = &spec {
            info!(
                interface = %spec.interface,
                vips = spec.vips.len(),
                drain_ms = spec.drain.as_millis() as u64,
                "announcing VIPs by health"
            );
        }
        self.spec = spec;
        // Another interface or other VIPs: read what is there again, and decide.
        self.present = None;
        self.last_seen = None;
    }

    /// Reads the links and the interface's addresses, decides, and applies the changes.
    /// True when it decided again (something it reads had changed): the status may change.
    async fn evaluate(&mut self, quorum: &Quorum, stopping: bool) -> bool {
        let Some(spec) = self.spec.clone() else {
            return false;
        };
        let mut link_up: HashMap<String, bool> = HashMap::new();
        let mut index = None;
        let mut problem = None;
        for name in spec.interfaces() {
            if link_up.contains_key(name) {
                continue;
            }
            let up = match self.netif.link(name).await {
                Ok(info) => {
                    if name == spec.interface {
                        index = Some(info.index);
                    }
                    info.up
                }
                Err(NetifError::NoSuchInterface(_)) => false,
                Err(e) => {
                    problem = Some(format!("cannot read interface {name}: {e}"));
                    false
                }
            };
            link_up.insert(name.to_owned(), up);
        }
        let present = match (index, &self.present) {
            // The interface is gone, and its addresses with it.
            (None, _) => {
                self.present = None;
                BTreeSet::new()
            }
            (Some(_), Some((read_at, present))) if read_at.elapsed() < ADDRESS_POLL => {
                present.clone()
            }
            (Some(_), _) => match self.read_present(&spec).await {
                Ok(present) => {
                    self.present = Some((Instant::now(), present.clone()));
                    present
                }
                Err(e) => {
                    problem = Some(e);
                    self.present = None;
                    BTreeSet::new()
                }
            },
        };
        if problem != self.read_problem {
            if let Some(p) = &problem {
                warn!("{p}; the VIPs count as withdrawn until it reads again");
            }
            self.read_problem = problem;
        }
        // Nothing the decision reads has changed since the last one (the common poll: the
        // links as they were, the addresses as haldir left them): nothing to decide or
        // publish, at any number of VIPs.
        let seen = Seen {
            quorum: Arc::clone(quorum),
            link_up: link_up.clone(),
            stopping,
            present: present.clone(),
        };
        let settled = self.settle_ends.is_some_and(|ends| Instant::now() >= ends);
        if self.last_seen.as_ref() == Some(&seen) && !settled {
            return false;
        }
        self.last_seen = Some(seen);
        let mut decisions = decide(
            &spec,
            &Inputs {
                quorum: &|key| quorum.get(key).copied(),
                link_up: &|name| link_up.get(name).copied().unwrap_or(false),
                stopping,
            },
        );
        self.settle_ends = self
            .settling
            .hold(&spec, &mut decisions, &present, Instant::now());
        let owned = self
            .owned
            .as_ref()
            .map(|(_, owned)| owned.clone())
            .unwrap_or_default();
        let mut announced = present.clone();
        let mut failures: HashMap<IpAddr, String> = HashMap::new();
        let mut unapplied = false;
        for change in changes(&decisions, &present, &owned) {
            match change {
                Change::Add(address) => {
                    let Some(index) = index else { continue };
                    let prefix_len = host_prefix_len(&address);
                    match self
                        .netif
                        .add_address(index, address, prefix_len, &AddressOptions::default())
                        .await
                    {
                        Ok(_) => {
                            info!(vip = %address, interface = %spec.interface, reason = "every virtual server has its quorum", "VIP announced");
                            announced.insert(address);
                        }
                        Err(e) => {
                            error!(vip = %address, interface = %spec.interface, "cannot announce the VIP: {e}");
                            failures.insert(address, format!("cannot add the address: {e}"));
                        }
                    }
                }
                Change::Remove(address, why) => {
                    // The interface was read above; without it, its addresses are gone.
                    if self
                        .remove(&Ok(index), &spec.interface, address, &why.to_string())
                        .await
                    {
                        announced.remove(&address);
                    } else {
                        unapplied = true;
                    }
                }
            }
        }
        if unapplied || !failures.is_empty() {
            // Tried again at the next poll, not only when something else changes.
            self.last_seen = None;
        }
        if let Some((_, present)) = &mut self.present {
            present.clone_from(&announced);
        }
        for (address, decision) in &decisions {
            let is_announced = announced.contains(address);
            let reason = match failures.remove(address) {
                Some(failure) => failure,
                None if is_announced && !decision.announced() => format!(
                    "{}, but the address could not be removed",
                    decision.reason()
                ),
                None => decision.reason(),
            };
            self.state.insert(*address, (is_announced, reason));
        }
        true
    }

    /// The VIPs of `spec` on its interface as host addresses (/32, /128), read now.
    async fn read_present(&self, spec: &AnnounceSpec) -> Result<BTreeSet<IpAddr>, String> {
        let info = match self.netif.interface(&spec.interface).await {
            Ok(info) => info,
            Err(NetifError::NoSuchInterface(_)) => return Ok(BTreeSet::new()),
            Err(e) => return Err(format!("cannot read interface {}: {e}", spec.interface)),
        };
        let host = |address: IpAddr, len: u8| (len == host_prefix_len(&address)).then_some(address);
        let vips: BTreeSet<IpAddr> = spec.vips.iter().map(|v| v.address).collect();
        Ok(info
            .ipv4
            .iter()
            .filter_map(|(a, len)| host(IpAddr::V4(*a), *len))
            .chain(
                info.ipv6
                    .iter()
                    .filter_map(|(a, len)| host(IpAddr::V6(*a), *len)),
            )
            .filter(|a| vips.contains(a))
            .collect())
    }

    /// The index of `interface`, `None` when it is gone (and its addresses with it): read
    /// once for a batch of removals, not once per address.
    async fn index_of(&self, interface: &str) -> Result<Option<u32>, String> {
        match self.netif.interface(interface).await {
            Ok(info) => Ok(Some(info.index)),
            Err(NetifError::NoSuchInterface(_)) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Removes `address` from `interface` (its index as [`Self::index_of`] read it),
    /// logging it; true when it is gone.
    async fn remove(
        &self,
        index: &Result<Option<u32>, String>,
        interface: &str,
        address: IpAddr,
        reason: &str,
    ) -> bool {
        let outcome = match index {
            Ok(Some(index)) => self
                .netif
                .remove_exact_address(*index, address, host_prefix_len(&address))
                .await
                .map_err(|e| e.to_string()),
            // The interface went, and its addresses with it.
            Ok(None) => Ok(false),
            Err(e) => Err(e.clone()),
        };
        match outcome {
            Ok(true) => {
                info!(vip = %address, interface, reason, "VIP withdrawn");
                true
            }
            Ok(false) => true,
            Err(e) => {
                error!(vip = %address, interface, "cannot withdraw the VIP: {e}");
                false
            }
        }
    }

    /// Removes every VIP haldir owns (the end of a stop).
    async fn remove_owned(&mut self) {
        let Some((interface, owned)) = self.owned.clone() else {
            return;
        };
        let index = self.index_of(&interface).await;
        for address in owned {
            if self
                .remove(&index, &interface, address, "haldir stopped")
                .await
            {
                self.state
                    .insert(address, (false, "haldir stopped".to_owned()));
            }
        }
    }

    /// Writes the status into `status`; true when it changed.
    fn publish(&self, status: &mut AnnounceStatus) -> bool {
        let now = AnnounceStatus::of(self.spec.as_ref(), &self.state);
        let changed = *status != now;
        if changed {
            *status = now;
        }
        changed
    }
}
