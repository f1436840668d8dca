//! Health → the desired IPVS table: which real servers of a virtual server are in the
//! kernel's table, with which weight (keepalived `ipwrapper.c` semantics).
//!
//! * A real server is up when every one of its checkers is up (one without checkers is
//!   always up); its weight is the last `misc_dynamic` weight reported, else the configured
//!   one ([`real_server_state`]).
//! * A real server that is down is left out, or kept with weight 0 under
//!   `inhibit_on_failure` and always for the `mh` scheduler (its table stays the same).
//! * Per virtual server the live weight (the sum of the up servers' weights) is compared
//!   with `quorum`, with `hysteresis`: lost when it drops to 0 or below
//!   `quorum - hysteresis`, regained at `quorum + hysteresis` ([`desired_table`]). While it
//!   is lost, the `sorry_server` is the only live destination.
//!
//! Pure: the caller owns the checkers and passes their verdicts in.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::IpAddr;

use haldir_config::{
    CheckKind, CheckTimingSpec, HealthCheck, LvsScheduler, RealServer, VirtualServer,
};
use haldir_ipvs::model::{Dests, Service, ServiceKey, Table};
use tracing::{info, warn};

use crate::ipvs_table::{destination, service, service_key};

/// A real server within its virtual server.
pub type RealServerKey = (IpAddr, u16);

/// What identifies one checker across reloads: where it is and everything it does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CheckKey {
    /// The virtual server.
    pub service: ServiceKey,
    /// The real server.
    pub real_server: RealServerKey,
    /// The checker's kind and settings.
    pub kind: CheckKind,
    /// Its timing.
    pub timing: CheckTimingSpec,
    /// Which of identical checkers of one real server (0 for the first).
    pub nth: usize,
}

/// The verdict of one checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckVerdict {
    /// Up.
    pub up: bool,
    /// The `misc_dynamic` weight last reported, if any.
    pub weight: Option<u32>,
}

/// Every checker of every real server, keyed, in configuration order per real server.
pub fn check_keys<'a>(vs: &VirtualServer, rs: &'a RealServer) -> Vec<(CheckKey, &'a HealthCheck)> {
    let service = service_key(vs);
    let mut seen: HashMap<(&CheckKind, &CheckTimingSpec), usize> = HashMap::new();
    rs.checks
        .iter()
        .map(|check| {
            let nth = seen.entry((&check.kind, &check.timing)).or_insert(0);
            let key = CheckKey {
                service,
                real_server: (rs.ip, rs.port),
                kind: check.kind.clone(),
                timing: check.timing.clone(),
                nth: *nth,
            };
            *nth += 1;
            (key, check)
        })
        .collect()
}

/// Whether a real server is up and with which weight: up when every checker is up (none:
/// always up); the weight is the last `misc_dynamic` weight reported, else the configured one.
/// `verdicts` are its checkers' verdicts in the order of `rs.checks`; a checker past the
/// end of `verdicts` has not started (yet) and counts as its initial verdict would: up
/// unless `alpha`. The caller keeps one short list per real server rather than a map keyed
/// by each checker's settings (at 40,000 checkers the keys alone were about 50 MB).
pub fn real_server_state(rs: &RealServer, verdicts: &[CheckVerdict]) -> (bool, u32) {
    let mut up = true;
    let mut weight = rs.weight;
    for (index, check) in rs.checks.iter().enumerate() {
        match verdicts.get(index) {
            Some(v) => {
                up &= v.up;
                if let Some(w) = v.weight {
                    weight = w;
                }
            }
            None => up &= !check.timing.alpha,
        }
    }
    (up, weight)
}

/// Where a real server is in the configuration: its virtual server's index in the list of
/// virtual servers, and its own index in that virtual server's `real_servers`.
pub type RealServerAt = (usize, usize);

/// The desired table from the servers' states (`state(at, vs, rs)`: up, weight), updating
/// each virtual server's quorum state (`quorum_up`, keyed by service) with keepalived's
/// hysteresis: lost when the live weight drops to 0 or below `quorum - hysteresis`,
/// regained at `quorum + hysteresis`; the first evaluation compares with `quorum` alone.
/// The table before any checker reported is this with no verdicts
/// (`real_server_state(rs, &[])`).
pub fn desired_table(
    servers: &[VirtualServer],
    state: &dyn Fn(RealServerAt, &VirtualServer, &RealServer) -> (bool, u32),
    quorum_up: &mut HashMap<ServiceKey, bool>,
) -> Table {
    // Each virtual server's entry is built whole, then the map at once from the list: at
    // 10,000 virtual servers a B-tree search per service and per destination was a third
    // of this function's time. Configurations usually list their virtual servers in
    // order, which the map's sort then only confirms.
    let mut entries: Vec<(ServiceKey, (Service, Dests))> = Vec::with_capacity(servers.len());
    let mut states: Vec<(bool, u32)> = Vec::new();
    for (vs_index, vs) in servers.iter().enumerate() {
        let key = service_key(vs);
        states.clear();
        states.extend(
            (vs.real_servers.iter().enumerate())
                .map(|(rs_index, rs)| state((vs_index, rs_index), vs, rs)),
        );
        let live: u64 = states
            .iter()
            .filter(|(up, _)| *up)
            .map(|(_, w)| u64::from(*w))
            .sum();
        let (quorum, hysteresis) = (u64::from(vs.quorum), u64::from(vs.hysteresis));
        let up = match quorum_up.entry(key) {
            Entry::Vacant(first) => *first.insert(live >= quorum),
            Entry::Occupied(mut known) => {
                let was_up = *known.get();
                let up = if was_up {
                    !(live == 0 || live < quorum.saturating_sub(hysteresis))
                } else {
                    live >= quorum + hysteresis
                };
                known.insert(up);
                if up != was_up {
                    if up {
                        info!(service = %key, live_weight = live, quorum, "virtual server quorum gained");
                    } else {
                        warn!(service = %key, live_weight = live, quorum, "virtual server quorum lost");
                    }
                }
                up
            }
        };
        let sorry_only = !up && vs.sorry_server.is_some();
        let mut dests = Dests::with_capacity(vs.real_servers.len());
        for (rs, (rs_up, weight)) in vs.real_servers.iter().zip(&states) {
            let (dest_key, mut dest) = destination(vs, rs);
            if *rs_up && !sorry_only {
                dest.weight = *weight;
                dests.insert(dest_key, dest);
            } else if rs.inhibit_on_failure || vs.scheduler == LvsScheduler::Mh {
                // `mh`: every director must hold the same Maglev table for the same
                // configuration (docs/active-active.md). The kernel builds it over the
                // destination list in list order and keeps a destination quiesced to
                // weight 0 in it (its `last_weight`; `ip_vs_mh.c`), so a down server stays
                // at weight 0 rather than leaving: the table does not change, and with
                // `mh-fallback` its flows go on to the next server by hash.
                dest.weight = 0;
                dests.insert(dest_key, dest);
            }
        }
        if let Some(sorry) = &vs.sorry_server {
            if sorry_only || sorry.inhibit {
                let stand_in = RealServer {
                    ip: sorry.ip,
                    port: sorry.port,
                    weight: u32::from(sorry_only),
                    upper_threshold: 0,
                    lower_threshold: 0,
                    inhibit_on_failure: sorry.inhibit,
                    checks: Vec::new(),
                    notify: Default::default(),
                    loc: vs.loc,
                };
                let (dest_key, dest) = destination(vs, &stand_in);
                dests.insert(dest_key, dest);
            }
        }
        entries.push((key, (service(vs), dests)));
    }
    // Collected from a list, a B-tree is sorted once and built in one pass. A validated
    // model has each key once (`validate_ipvs`); were one repeated, the later virtual
    // server would replace the earlier.
    let table = Table {
        services: entries.into_iter().collect(),
    };
    // Only a reload that dropped virtual servers leaves stale quorum states behind.
    if quorum_up.len() > table.service_count() {
        quorum_up.retain(|key, _| table.services.contains_key(key));
    }
    table
}

#[cfg(test)]
mod tests;
