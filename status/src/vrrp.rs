//! The VRRP part of the status, from the VRRP driver's [`Status`].

use haldir_vrrp::driver::Status;
use haldir_vrrp::router::State;

use crate::{Instance, Link, StatusFile, VrrpState, SCHEMA_VERSION};

impl From<State> for VrrpState {
    fn from(state: State) -> Self {
        match state {
            State::Initialize => VrrpState::Initialize,
            State::Backup => VrrpState::Backup,
            State::Master => VrrpState::Master,
            State::Fault => VrrpState::Fault,
        }
    }
}

/// One [`Instance`] per instance of the driver, in its order.
pub fn instances(status: &Status) -> Vec<Instance> {
    status
        .instances
        .iter()
        .map(|i| Instance {
            address_list_mismatch: i.stats.address_list_mismatch,
            adverts_authenticated: i.stats.adverts_authenticated,
            adverts_received: i.stats.adverts_received,
            adverts_sent: i.stats.adverts_sent,
            announcements: i.stats.announcements,
            auth_accepted: i
                .stats
                .auth_accepted
                .iter()
                .map(|(reason, count)| (reason.as_str().to_owned(), *count))
                .collect(),
            became_master: i.stats.became_master,
            drops: i
                .stats
                .drops
                .iter()
                .map(|(reason, count)| (reason.as_str().to_owned(), *count))
                .collect(),
            handed_over: i.handed_over,
            interface: i.interface.clone(),
            master: i.master,
            name: i.name.clone(),
            preemption_held: i.preemption_held,
            priority: i.priority,
            priority_zero_received: i.stats.priority_zero_received,
            priority_zero_sent: i.stats.priority_zero_sent,
            reason: i.reason.map(str::to_owned),
            since_unix: i.since.and_then(crate::time::unix_seconds),
            state: i.state.into(),
            transitions: i.stats.transitions,
        })
        .collect()
}

/// One [`Link`] per link of the driver, in its order.
pub fn links(status: &Status) -> Vec<Link> {
    status
        .links
        .iter()
        .map(|l| Link {
            drops: l
                .drops
                .iter()
                .map(|(reason, count)| ((*reason).to_owned(), *count))
                .collect(),
            interface: l.interface.clone(),
            send_errors: l.send_errors,
            source: l.source,
        })
        .collect()
}

impl StatusFile {
    /// The status file of the driver's `status`, with the bulk resync's part.
    pub fn new(status: &Status, bulk_resync: haldir_ipvs::resync::ResyncStatus) -> Self {
        StatusFile {
            bulk_resync,
            instances: instances(status),
            links: links(status),
            schema_version: SCHEMA_VERSION,
        }
    }
}
