//! The driver's live state: what every instance and link is doing, and the
//! transitions as they happen.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::SystemTime;

use super::InstanceSpec;
use crate::router::{RouterStats, State, TransitionReason};

/// The live state of one instance, for status, logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    /// Instance name.
    pub name: String,
    /// Interface.
    pub interface: String,
    /// Current state.
    pub state: State,
    /// Current priority.
    pub priority: u8,
    /// Primary address of the master as last seen.
    pub master: Option<IpAddr>,
    /// Wall-clock time of the last transition.
    pub since: Option<SystemTime>,
    /// Why the last transition happened.
    pub reason: Option<&'static str>,
    /// Preemption held (see
    /// [`DriverCommand::HoldPreemption`](super::DriverCommand::HoldPreemption)).
    pub preemption_held: bool,
    /// Mastership handed over on request (see
    /// [`DriverCommand::HandOver`](super::DriverCommand::HandOver)): it does
    /// not preempt until the handover is cancelled.
    pub handed_over: bool,
    /// The router's counters.
    pub stats: RouterStats,
}

/// One state change of one instance, as it happened: every transition is
/// sent, in order, on the driver's event channel (see
/// [`run_with_events`](super::run_with_events)), for notify scripts and
/// anything else that must not miss one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceTransition {
    /// Instance name.
    pub name: String,
    /// Previous state.
    pub from: State,
    /// New state.
    pub to: State,
    /// Why.
    pub reason: TransitionReason,
    /// The instance's priority at the transition.
    pub priority: u8,
    /// Wall-clock time of the transition.
    pub at: SystemTime,
}

/// Counters of one link that belong to no single instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStatus {
    /// Interface.
    pub interface: String,
    /// Its kernel index.
    pub interface_index: u32,
    /// Source address of our adverts.
    pub source: Option<IpAddr>,
    /// Packets dropped before reaching an instance, by reason (decode errors,
    /// `unknown_vrid`, `unknown_peer`, `bad_ip_header`).
    pub drops: BTreeMap<&'static str, u64>,
    /// Send failures.
    pub send_errors: u64,
}

/// The driver's live state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// One entry per instance, in configuration order.
    pub instances: Vec<InstanceStatus>,
    /// One entry per link.
    pub links: Vec<LinkStatus>,
}

impl InstanceStatus {
    pub(super) fn starting(spec: &InstanceSpec) -> InstanceStatus {
        InstanceStatus {
            name: spec.name.clone(),
            interface: spec.interface.clone(),
            state: State::Initialize,
            priority: spec.router.priority,
            master: None,
            since: None,
            reason: None,
            preemption_held: false,
            handed_over: false,
            stats: RouterStats::default(),
        }
    }
}
