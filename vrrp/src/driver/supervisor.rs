//! The supervisor: opens the links, carries reload plans out, follows the
//! interfaces' state and moves sync groups together.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::link::{Link, LinkCommand, MemberEvent};
use super::{
    plan_reload, DriverError, InstanceSpec, InstanceStatus, InstanceTransition, LinkStanding,
    LinkStatus, ReloadReport, ReloadStep, Status, SyncGroupSpec,
};
use crate::netif::{InterfaceInfo, Netif, NetifError};
use crate::router::State;
use crate::socket::{AdvertSocket, FrameSocket};
use crate::sync_group::{GroupOrder, Member};
use crate::vmac::{ChangedSysctl, VmacSpec, BASE_SYSCTLS, VMAC_SYSCTLS};

/// The sockets of one link are shared by the instances with the same interface,
/// advert source and unicast peers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct LinkKey {
    interface_index: u32,
    source: IpAddr,
    unicast_peers: Vec<IpAddr>,
}

pub(super) struct LinkHandle {
    pub(super) key: LinkKey,
    pub(super) names: Vec<String>,
    pub(super) commands: mpsc::UnboundedSender<LinkCommand>,
    pub(super) task: JoinHandle<()>,
}

pub(super) struct Supervisor {
    /// Given to each link, to report that it failed (interface and why).
    pub(super) failures: mpsc::UnboundedSender<String>,
    /// Where each link registers the heartbeat its loop stamps.
    pub(super) heartbeats: std::sync::Arc<super::Heartbeats>,
    /// Given to each link: its instances' `auth_hmac` state, kept across restarts.
    pub(super) replay: std::sync::Arc<crate::auth::ReplayStore>,
    pub(super) netif: Netif,
    pub(super) links: Vec<LinkHandle>,
    /// The instances running now, in configuration order.
    pub(super) running: Vec<InstanceSpec>,
    pub(super) status: watch::Sender<Status>,
    pub(super) shutdown: watch::Receiver<bool>,
    /// Addresses the accept-mode filter drops, as installed (`None`: not yet).
    pub(super) filtered: Option<Vec<IpAddr>>,
    /// Where every state change goes.
    pub(super) events: Option<broadcast::Sender<InstanceTransition>>,
    /// Given to each link, to report state changes.
    pub(super) members_tx: mpsc::UnboundedSender<MemberEvent>,
    /// The configured sync groups.
    pub(super) sync_groups: Vec<SyncGroupSpec>,
    /// Instances whose preemption is held: given again to a router that a
    /// reload replaces or starts.
    pub(super) preemption_holds: BTreeSet<String>,
    /// Instances handed over (`haldir handover`): given again to a router that
    /// a reload replaces or starts.
    pub(super) handovers: BTreeSet<String>,
    /// What the sync-group logic knows of each instance.
    pub(super) members: BTreeMap<String, Member>,
    /// The link standing last sent to each instance (absent: none sent).
    pub(super) link_faults: BTreeMap<String, LinkStanding>,
    /// Every configured instance, running or waiting, in configuration order.
    pub(super) configured: Vec<InstanceSpec>,
    /// Instances waiting for their interface to appear (`dynamic_interfaces`):
    /// in FAULT, with no link; started by the next apply that finds it.
    pub(super) waiting: BTreeSet<String>,
    /// Why the last start of appeared interfaces failed (logged once).
    pub(super) waiting_error: Option<String>,
    /// The `use_vmac` macvlans set up, by name.
    pub(super) vmacs: BTreeMap<String, VmacState>,
    /// What `use_vmac` changed on each base interface, given back when its
    /// last macvlan goes.
    pub(super) base_sysctls: BTreeMap<String, Vec<ChangedSysctl>>,
}

/// A `use_vmac` macvlan haldir set up.
pub(super) struct VmacState {
    /// The interface it sits on.
    base: String,
    /// haldir created it (else it was there: left in place at the end).
    created: bool,
}

/// A new link whose sockets the pre-flight opened.
struct NewLink {
    key: LinkKey,
    info: InterfaceInfo,
    adverts: AdvertSocket,
    frames: FrameSocket,
}

impl Supervisor {
    /// Moves the running instances to `specs`. Everything that can fail
    /// (interfaces, source addresses, sockets, the accept filter) is done
    /// before anything running is touched, so a failed reload changes nothing.
    pub(super) async fn apply(
        &mut self,
        specs: Vec<InstanceSpec>,
    ) -> Result<ReloadReport, DriverError> {
        let (specs, waiting) = self.present(specs).await?;
        let steps = plan_reload(&self.running, &specs);

        // Pre-flight: resolve every starting instance's link and open the
        // sockets of links that do not exist yet.
        let mut starting: Vec<(InstanceSpec, LinkKey)> = Vec::new();
        let mut new_links: Vec<NewLink> = Vec::new();
        for step in &steps {
            let (ReloadStep::Add(spec) | ReloadStep::Replace(spec)) = step else {
                continue;
            };
            let base = self.netif.interface(&spec.interface).await?;
            let source = source_address(&base, spec)?;
            // use_vmac: the adverts leave through the macvlan, from the base's address.
            let info = match &spec.vmac {
                Some(vmac) => {
                    let vmac_info = self.ensure_vmac(vmac, &base).await?;
                    if vmac.xmit_base {
                        base
                    } else {
                        vmac_info
                    }
                }
                None => base,
            };
            // `dev`: the other interfaces the addresses and routes go on exist, too.
            let mut devices: Vec<&String> = Vec::new();
            devices.extend(spec.addresses.iter().filter_map(|p| p.device.as_ref()));
            devices.extend(spec.routes.iter().filter_map(|r| r.device.as_ref()));
            for device in devices {
                self.netif.interface(device).await?;
            }
            let key = LinkKey {
                interface_index: info.index,
                source,
                unicast_peers: spec.unicast_peers.clone(),
            };
            let exists =
                self.links.iter().any(|l| l.key == key) || new_links.iter().any(|l| l.key == key);
            if !exists {
                let socket_error = |source| DriverError::Socket {
                    interface: spec.interface.clone(),
                    source,
                };
                new_links.push(NewLink {
                    adverts: AdvertSocket::open(&info.name, info.index, source)
                        .map_err(socket_error)?,
                    frames: FrameSocket::open(info.index).map_err(socket_error)?,
                    key: key.clone(),
                    info,
                });
            }
            let mut spec = spec.clone();
            spec.router.primary_address = source;
            starting.push((spec, key));
        }
        let filtered: Vec<IpAddr> = specs
            .iter()
            .filter(|s| !s.accept && s.router.priority != 255)
            .flat_map(|s| s.router.held_addresses())
            .collect();
        if self.filtered.as_ref() != Some(&filtered) {
            if filtered.is_empty() {
                // A crashed run with `accept = false` may have left its filter
                // behind; without nft there is nothing to remove.
                let removed = crate::accept::install_off_thread(Vec::new()).await;
                if self.filtered.is_some() {
                    removed?;
                }
            } else {
                crate::accept::install_off_thread(filtered.clone()).await?;
                info!(addresses = ?filtered, "accept = false: input to these virtual addresses is dropped");
            }
            self.filtered = Some(filtered);
        }

        // From here on nothing fails: carry the plan out. Instances started
        // anew begin without a link fault; the next poll tells them theirs.
        for step in &steps {
            if let ReloadStep::Add(spec) | ReloadStep::Replace(spec) = step {
                self.link_faults.remove(&spec.name);
            }
        }
        let mut report = ReloadReport::default();
        let mut touched: Vec<usize> = Vec::new();
        for step in &steps {
            match step {
                ReloadStep::Keep(name) => report.kept.push(name.clone()),
                ReloadStep::Remove(name) | ReloadStep::Replace(InstanceSpec { name, .. }) => {
                    if let Some(i) = self.link_of(name) {
                        let _ = self.links[i]
                            .commands
                            .send(LinkCommand::Remove(name.clone()));
                        self.links[i].names.retain(|n| n != name);
                        touched.push(i);
                    }
                    if matches!(step, ReloadStep::Remove(_)) {
                        report.removed.push(name.clone());
                    }
                }
                ReloadStep::Update(spec) => {
                    if let Some(i) = self.link_of(&spec.name) {
                        let running = self.running.iter().find(|r| r.name == spec.name);
                        let mut spec = spec.clone();
                        if let Some(running) = running {
                            // Same identity, so the same source as before.
                            spec.router.primary_address = running.router.primary_address;
                        }
                        let _ = self.links[i].commands.send(LinkCommand::Update(spec));
                        touched.push(i);
                    }
                    report.updated.push(spec.name.clone());
                }
                ReloadStep::Add(_) => {}
            }
        }
        for (spec, key) in starting {
            if let Err(e) = remove_stale_addresses(&self.netif, &spec).await {
                warn!(instance = %spec.name, "cannot look for stale virtual addresses: {e}");
            }
            let i = match self.links.iter().position(|l| l.key == key) {
                Some(i) => i,
                None => {
                    let new = new_links
                        .iter()
                        .position(|l| l.key == key)
                        .map(|i| new_links.swap_remove(i))
                        .expect("the pre-flight opened every new link");
                    self.spawn_link(new);
                    self.links.len() - 1
                }
            };
            match steps
                .iter()
                .any(|s| matches!(s, ReloadStep::Replace(r) if r.name == spec.name))
            {
                true => report.replaced.push(spec.name.clone()),
                false => report.added.push(spec.name.clone()),
            }
            self.links[i].names.push(spec.name.clone());
            self.status.send_modify(|s| {
                if !s.instances.iter().any(|e| e.name == spec.name) {
                    s.instances.push(InstanceStatus::starting(&spec));
                }
            });
            let held = self.preemption_holds.contains(&spec.name);
            let name = spec.name.clone();
            let _ = self.links[i].commands.send(LinkCommand::Add(spec));
            if held {
                let _ = self.links[i]
                    .commands
                    .send(LinkCommand::HoldPreemption(name.clone(), true));
            }
            if self.handovers.contains(&name) {
                let _ = self.links[i]
                    .commands
                    .send(LinkCommand::HandOver(name, true));
            }
            touched.push(i);
        }

        // Wait until every touched link has carried its commands out.
        self.wait_for_links(touched).await;
        // Links left without instances close their sockets.
        let (empty, kept): (Vec<LinkHandle>, Vec<LinkHandle>) = std::mem::take(&mut self.links)
            .into_iter()
            .partition(|l| l.names.is_empty());
        self.links = kept;
        for link in empty {
            drop(link.commands);
            let _ = link.task.await;
            self.status.send_modify(|s| {
                s.links.retain(|l| {
                    !(l.interface_index == link.key.interface_index
                        && l.source == Some(link.key.source))
                })
            });
        }
        self.set_waiting(waiting);
        self.remove_unused_vmacs().await;
        // The status lists the instances in configuration order.
        let configured = &self.configured;
        self.status.send_modify(|s| {
            let mut ordered = Vec::with_capacity(configured.len());
            for spec in configured {
                if let Some(i) = s.instances.iter().position(|e| e.name == spec.name) {
                    ordered.push(s.instances.swap_remove(i));
                }
            }
            s.instances = ordered;
        });
        self.handovers
            .retain(|name| specs.iter().any(|s| &s.name == name));
        self.running = specs
            .into_iter()
            .map(|mut spec| {
                if let Some(i) = self.link_of(&spec.name) {
                    spec.router.primary_address = self.links[i].key.source;
                }
                spec
            })
            .collect();
        Ok(report)
    }

    /// Sets up `vmac` over `base` (see [`crate::vmac`]) unless it is already;
    /// returns the macvlan.
    async fn ensure_vmac(
        &mut self,
        vmac: &VmacSpec,
        base: &InterfaceInfo,
    ) -> Result<InterfaceInfo, DriverError> {
        if self.vmacs.contains_key(&vmac.name) {
            return Ok(self.netif.interface(&vmac.name).await?);
        }
        let created = self
            .netif
            .ensure_macvlan(&vmac.name, base.index, vmac.mac)
            .await?;
        let set = |interface: &str, (family, key, value): (&str, &str, &str)| {
            match crate::vmac::set_sysctl(family, interface, key, value) {
                Ok(changed) => changed,
                Err(e) => {
                    warn!(
                        interface,
                        "use_vmac: cannot set net.{family}.conf.{interface}.{key} = {value}: {e}"
                    );
                    None
                }
            }
        };
        for sysctl in VMAC_SYSCTLS {
            // Its own values go with it when it is deleted.
            set(&vmac.name, sysctl);
        }
        let base_changes = self.base_sysctls.entry(base.name.clone()).or_default();
        base_changes.extend(BASE_SYSCTLS.into_iter().filter_map(|s| set(&base.name, s)));
        if std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/rp_filter")
            .is_ok_and(|v| v.trim() != "0")
        {
            warn!(interface = %vmac.name, "use_vmac: net.ipv4.conf.all.rp_filter is not 0, so the macvlan's rp_filter = 0 does not hold: traffic to the virtual addresses may be dropped; set net.ipv4.conf.all.rp_filter = 0");
        }
        let info = self.netif.interface(&vmac.name).await?;
        self.netif.set_up(info.index).await?;
        info!(interface = %vmac.name, base = %base.name, created, "use_vmac: macvlan ready");
        self.vmacs.insert(
            vmac.name.clone(),
            VmacState {
                base: base.name.clone(),
                created,
            },
        );
        Ok(self.netif.interface(&vmac.name).await?)
    }

    /// Deletes the macvlans no configured instance uses any more (the ones
    /// haldir created) and gives a base interface its sysctls back when its
    /// last macvlan went.
    pub(super) async fn remove_unused_vmacs(&mut self) {
        let used: BTreeSet<&String> = self
            .configured
            .iter()
            .filter_map(|s| s.vmac.as_ref().map(|v| &v.name))
            .collect();
        let unused: Vec<String> = self
            .vmacs
            .keys()
            .filter(|name| !used.contains(name))
            .cloned()
            .collect();
        for name in unused {
            let Some(state) = self.vmacs.remove(&name) else {
                continue;
            };
            if state.created {
                if let Err(e) = self.netif.delete_link(&name).await {
                    warn!(interface = %name, "use_vmac: cannot delete the macvlan: {e}");
                }
            }
            if !self.vmacs.values().any(|v| v.base == state.base) {
                for change in self.base_sysctls.remove(&state.base).unwrap_or_default() {
                    if let Err(e) = change.restore() {
                        warn!(interface = %state.base, "use_vmac: cannot restore a sysctl: {e}");
                    }
                }
            }
        }
    }

    /// Keeps `specs` as the configuration and splits off the instances that
    /// wait for their interface (`dynamic_interfaces`, interface missing);
    /// returns the rest, to run, and the waiting ones.
    async fn present(
        &mut self,
        specs: Vec<InstanceSpec>,
    ) -> Result<(Vec<InstanceSpec>, Vec<InstanceSpec>), DriverError> {
        self.configured = specs.clone();
        let mut present = Vec::with_capacity(specs.len());
        let mut waiting = Vec::new();
        for spec in specs {
            if spec.wait_for_interface {
                match self.netif.interface(&spec.interface).await {
                    Err(NetifError::NoSuchInterface(_)) => {
                        waiting.push(spec);
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                    Ok(_) => {}
                }
            }
            present.push(spec);
        }
        Ok((present, waiting))
    }

    /// Publishes the waiting instances as FAULT (a sync group sees them as
    /// members with a fault of their own) and logs the newly waiting ones.
    fn set_waiting(&mut self, waiting: Vec<InstanceSpec>) {
        let names: BTreeSet<String> = waiting.iter().map(|s| s.name.clone()).collect();
        for spec in &waiting {
            if !self.waiting.contains(&spec.name) {
                warn!(
                    instance = %spec.name,
                    interface = %spec.interface,
                    "({}) interface {} does not exist: in FAULT until it appears (dynamic_interfaces)",
                    spec.name,
                    spec.interface
                );
            }
            self.members.insert(
                spec.name.clone(),
                Member {
                    state: State::Fault,
                    own_fault: true,
                    group_fault: false,
                },
            );
        }
        self.status.send_modify(|s| {
            for spec in &waiting {
                let entry = match s.instances.iter_mut().find(|e| e.name == spec.name) {
                    Some(entry) => entry,
                    None => {
                        s.instances.push(InstanceStatus::starting(spec));
                        s.instances.last_mut().expect("just pushed")
                    }
                };
                if entry.state != State::Fault {
                    entry.state = State::Fault;
                    entry.since = Some(std::time::SystemTime::now());
                }
                entry.reason = Some("interface missing (dynamic_interfaces)");
            }
        });
        self.waiting = names;
    }

    /// Starts the waiting instances whose interface appeared.
    async fn start_appeared(&mut self) {
        let mut appeared = Vec::new();
        for spec in self
            .configured
            .iter()
            .filter(|s| self.waiting.contains(&s.name))
        {
            if self.netif.interface(&spec.interface).await.is_ok() {
                appeared.push(spec.name.clone());
            }
        }
        if appeared.is_empty() {
            return;
        }
        // An interface without its address yet fails the start: tried again
        // at the next poll, logged once.
        match self.apply(self.configured.clone()).await {
            Ok(_) => {
                info!(instances = ?appeared, "interface appeared: started (dynamic_interfaces)");
                self.waiting_error = None;
            }
            Err(e) => {
                let error = e.to_string();
                if self.waiting_error.as_ref() != Some(&error) {
                    warn!(instances = ?appeared, "cannot start on the interface that appeared yet: {error}");
                    self.waiting_error = Some(error);
                }
            }
        }
    }

    /// Reads the state of every interface an instance runs on or tracks and
    /// tells each instance whose link fault changed; starts waiting instances
    /// whose interface appeared.
    /// Whether [`poll_links`](Self::poll_links) has anything to read: instances
    /// running or waiting for their interface.
    pub(super) fn has_links_to_poll(&self) -> bool {
        !self.running.is_empty() || !self.waiting.is_empty()
    }

    pub(super) async fn poll_links(&mut self) {
        if !self.waiting.is_empty() {
            self.start_appeared().await;
        }
        let mut up: BTreeMap<String, bool> = BTreeMap::new();
        for spec in &self.running {
            let tracked = spec.track_interfaces.iter().map(|t| &t.name);
            for name in std::iter::once(&spec.interface).chain(tracked) {
                if !up.contains_key(name) {
                    let is_up = match self.netif.interface(name).await {
                        Ok(info) => info.up,
                        Err(NetifError::NoSuchInterface(_)) => false,
                        Err(e) => {
                            debug!(interface = %name, "cannot read the link state: {e}");
                            continue;
                        }
                    };
                    up.insert(name.clone(), is_up);
                }
            }
        }
        for spec in &self.running {
            // An interface whose state could not be read counts for nothing this time.
            let mut standing = LinkStanding {
                fault: up.get(&spec.interface) == Some(&false),
                priority_delta: 0,
            };
            let mut faulty: Vec<&String> = Vec::new();
            if standing.fault {
                faulty.push(&spec.interface);
            }
            for track in &spec.track_interfaces {
                let Some(&is_up) = up.get(&track.name) else {
                    continue;
                };
                let (fault, delta) = track.effect(is_up);
                if fault {
                    faulty.push(&track.name);
                }
                standing.fault |= fault;
                standing.priority_delta = standing.priority_delta.saturating_add(delta);
            }
            let before = self.link_faults.get(&spec.name).copied();
            if before == Some(standing) {
                continue;
            }
            if standing.fault && before.is_none_or(|b| !b.fault) {
                warn!(instance = %spec.name, interfaces = ?faulty, "tracked interface state: FAULT");
            } else if !standing.fault && before.is_some_and(|b| b.fault) {
                info!(instance = %spec.name, "interfaces back: leaving FAULT");
            }
            if before.map_or(0, |b| b.priority_delta) != standing.priority_delta {
                info!(
                    instance = %spec.name,
                    priority_delta = standing.priority_delta,
                    "tracked interfaces moved the priority"
                );
            }
            if let Some(i) = self.link_of(&spec.name) {
                let _ = self.links[i]
                    .commands
                    .send(LinkCommand::LinkFault(spec.name.clone(), standing));
                self.link_faults.insert(spec.name.clone(), standing);
            }
        }
        let running = &self.running;
        self.link_faults
            .retain(|name, _| running.iter().any(|r| &r.name == name));
    }

    /// A member reported a state change: the rest of its sync group follows
    /// (see [`crate::sync_group`]).
    pub(super) fn member_moved(&mut self, event: MemberEvent) {
        let entry = self.members.entry(event.name.clone()).or_insert(Member {
            state: event.to,
            own_fault: false,
            group_fault: false,
        });
        entry.state = event.to;
        entry.own_fault = event.own_fault;
        let Some(group) = self
            .sync_groups
            .iter()
            .find(|g| g.members.contains(&event.name))
        else {
            return;
        };
        let names = group.members.clone();
        let members: Vec<Member> = names
            .iter()
            .map(|n| {
                self.members.get(n).copied().unwrap_or(Member {
                    state: State::Initialize,
                    own_fault: false,
                    group_fault: false,
                })
            })
            .collect();
        let moved = names
            .iter()
            .position(|n| *n == event.name)
            .expect("a member");
        for (i, order) in crate::sync_group::orders(&members, moved, event.from) {
            let name = &names[i];
            if let GroupOrder::GroupFault(held) = order {
                if let Some(member) = self.members.get_mut(name) {
                    member.group_fault = held;
                }
            }
            if let Some(link) = self.link_of(name) {
                let _ = self.links[link]
                    .commands
                    .send(LinkCommand::Group(name.clone(), order));
            }
        }
    }

    pub(super) fn hold_preemption(&mut self, instance: String, held: bool) {
        if let Some(i) = self.link_of(&instance) {
            let _ = self.links[i]
                .commands
                .send(LinkCommand::HoldPreemption(instance.clone(), held));
        }
        if held {
            self.preemption_holds.insert(instance);
        } else {
            self.preemption_holds.remove(&instance);
        }
    }

    /// `haldir handover`: hands the named instances (all when `None`) over to
    /// a backup, or cancels that. A member of a sync group takes its whole
    /// group along, so the group's other masters do not step down abruptly
    /// (a sync group's BecomeBackup releases at once). Every command goes to
    /// the links before any member event is read, so each member hands over
    /// on its own, make-before-break. Answers once the links have carried
    /// the commands out, with the names it applied to.
    pub(super) async fn hand_over(
        &mut self,
        instances: Option<Vec<String>>,
        cancel: bool,
    ) -> Result<Vec<String>, String> {
        let every = instances.is_none();
        let asked = match instances {
            None => self.running.iter().map(|s| s.name.clone()).collect(),
            Some(names) => names,
        };
        let unknown: Vec<&String> = asked
            .iter()
            .filter(|n| !self.running.iter().any(|s| &s.name == *n))
            .collect();
        if !unknown.is_empty() {
            return Err(format!("no instance named {unknown:?}"));
        }
        let mut names: Vec<String> = Vec::new();
        for name in &asked {
            let group = self.sync_groups.iter().find(|g| g.members.contains(name));
            let members = group.map_or_else(|| vec![name.clone()], |g| g.members.clone());
            for member in members {
                if self.running.iter().any(|s| s.name == member) && !names.contains(&member) {
                    names.push(member);
                }
            }
        }
        let is_owner = |name: &String| {
            self.running
                .iter()
                .any(|s| &s.name == name && s.router.priority == 255)
        };
        if every {
            // "All": every instance that can hand over; the owners stay.
            names.retain(|n| !is_owner(n));
        } else if !cancel {
            let owners: Vec<&String> = names.iter().filter(|n| is_owner(n)).collect();
            if !owners.is_empty() {
                return Err(format!(
                    "{owners:?}: the address owner (priority 255) is master by definition \
                     (RFC 5798 §6.4.1) and cannot hand over"
                ));
            }
        }
        let mut touched = Vec::new();
        for name in &names {
            if cancel {
                self.handovers.remove(name);
            } else {
                self.handovers.insert(name.clone());
            }
            if let Some(i) = self.link_of(name) {
                let _ = self.links[i]
                    .commands
                    .send(LinkCommand::HandOver(name.clone(), !cancel));
                touched.push(i);
            }
        }
        self.wait_for_links(touched).await;
        Ok(names)
    }

    /// Returns once each of the links `touched` (indices, repeats allowed) has carried
    /// out every command sent to it before.
    async fn wait_for_links(&self, mut touched: Vec<usize>) {
        touched.sort_unstable();
        touched.dedup();
        for i in touched {
            let (done, wait) = oneshot::channel();
            if self.links[i].commands.send(LinkCommand::Sync(done)).is_ok() {
                let _ = wait.await;
            }
        }
    }

    pub(super) fn link_of(&self, name: &str) -> Option<usize> {
        self.links
            .iter()
            .position(|l| l.names.iter().any(|n| n == name))
    }

    fn spawn_link(&mut self, new: NewLink) {
        let (commands, receiver) = mpsc::unbounded_channel();
        self.status.send_modify(|s| {
            s.links.push(LinkStatus {
                interface: new.info.name.clone(),
                interface_index: new.info.index,
                source: Some(new.key.source),
                ..LinkStatus::default()
            })
        });
        let link = Link {
            info: new.info,
            source: new.key.source,
            unicast_peers: new.key.unicast_peers.clone(),
            adverts: new.adverts,
            frames: new.frames,
            other_devices: Default::default(),
            // A netlink socket of its own: a dump on a socket that is busy with
            // another dump fails with EBUSY.
            netif: match Netif::new() {
                Ok(netif) => netif,
                Err(e) => {
                    warn!("cannot open a netlink socket for the link, sharing one: {e}");
                    self.netif.clone()
                }
            },
            instances: Vec::new(),
            counters_published_at: None,
            counters_pending: false,
            status: self.status.clone(),
            events: self.events.clone(),
            members: self.members_tx.clone(),
            heartbeat: self.heartbeats.register(),
            replay: self.replay.clone(),
        };
        let task = tokio::spawn(link.run(receiver, self.shutdown.clone(), self.failures.clone()));
        self.links.push(LinkHandle {
            key: new.key,
            names: Vec::new(),
            commands,
            task,
        });
    }
}

/// Removes the instance's held addresses (virtual and excluded, each from its
/// own interface), routes and rules that a crashed predecessor left behind. The address owner
/// (priority 255) keeps them: they are its own.
async fn remove_stale_addresses(netif: &Netif, spec: &InstanceSpec) -> Result<(), NetifError> {
    if spec.router.priority == 255 {
        return Ok(());
    }
    for address in spec.router.held_addresses() {
        let interface = spec
            .addresses
            .iter()
            .find(|p| p.address == address)
            .and_then(|p| p.device.as_deref())
            .unwrap_or(&spec.interface);
        let index = netif.interface(interface).await?.index;
        if netif.remove_address(index, address).await? {
            warn!(
                instance = %spec.name,
                %address,
                %interface,
                "removed a virtual address left behind by an earlier run"
            );
        }
    }
    for route in &spec.routes {
        if netif.remove_route(route).await? {
            warn!(instance = %spec.name, destination = %route.destination, "removed a virtual route left behind by an earlier run");
        }
    }
    for rule in &spec.rules {
        if netif.remove_rule(rule).await? {
            warn!(instance = %spec.name, "removed a virtual rule left behind by an earlier run");
        }
    }
    Ok(())
}

/// RFC 5798 §5.1.1.1 / §5.1.2.1: adverts come from the interface's primary IPv4
/// address, or its IPv6 link-local address; `unicast_src_ip` overrides.
/// A virtual address is skipped (a backup must not send from the address it
/// may take over), except for the address owner (priority 255): its virtual
/// address IS its interface's address (RFC 5798 §1 "IPvX Address Owner").
fn source_address(info: &InterfaceInfo, spec: &InstanceSpec) -> Result<IpAddr, DriverError> {
    if let Some(source) = spec.unicast_source {
        return Ok(source);
    }
    let v6 = spec
        .router
        .virtual_addresses
        .first()
        .is_some_and(|a| a.is_ipv6());
    let found = if v6 {
        info.ipv6_link_local().map(IpAddr::V6)
    } else {
        info.ipv4
            .iter()
            .map(|(a, _)| IpAddr::V4(*a))
            .find(|a| spec.router.priority == 255 || !spec.router.virtual_addresses.contains(a))
    };
    found.ok_or_else(|| DriverError::NoSourceAddress {
        interface: info.name.clone(),
        family: if v6 { "IPv6 link-local" } else { "IPv4" },
    })
}
