//! Health checks → the desired IPVS table and the VRRP priorities: the task that runs the
//! checkers and feeds the director's policy (`haldir_director`: the model → checker
//! mapping in `checks`, the table in `ipvs_policy`, tracked scripts in `vrrp_specs`).
//!
//! One task ([`spawn`]) watches the running [`Model`] (the daemon replaces it on a
//! successful reload), runs every checker of every real server and every tracked
//! `vrrp_script` on one `haldir_health` scheduler, and publishes:
//!
//! * the desired IPVS table on a `watch` channel (the daemon's IPVS task reconciles the
//!   kernel with it on every change), as `ipvs_policy::desired_table` computes it from the
//!   checkers' verdicts (removal or `inhibit_on_failure`, `misc_dynamic` weights, quorum
//!   with hysteresis, the sorry server);
//! * `DriverCommand::Track` to the VRRP driver for every instance with a `track_script`,
//!   as `vrrp_specs::tracking` decides it.
//!
//! Checks are keyed by (virtual server, real server, checker settings): a reload that
//! leaves a checker unchanged leaves its state alone (no server goes down and back up
//! because of a reload); only added or changed checkers start afresh, removed ones stop.
//! keepalived has no direct "track a virtual server's quorum" for VRRP instances (it is
//! done with `quorum_up` / `quorum_down` scripts and `track_file`), so neither has haldir.

use std::collections::{HashMap, HashSet};

use haldir_config::{HealthCheck, Model, VrrpScript};
use haldir_director::checks::{
    check_timing, checker_config, script_config, script_timing, ScriptKey,
};
use haldir_director::ipvs_policy::{
    check_keys, desired_table, real_server_state, CheckKey, CheckVerdict,
};
use haldir_director::vrrp_specs::tracking;
use haldir_health::checker::build;
use haldir_health::{
    spawn_scheduler, CheckId, Event, SchedulerConfig, SchedulerHandle, Transition,
};
use haldir_ipvs::model::{DestKey, ServiceKey, Table};
use haldir_vrrp::driver::{DriverCommand, Tracking};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

#[derive(Debug, Clone)]
enum Target {
    Check(CheckKey),
    Script(ScriptKey),
}

/// The running state: which checks run under which id, and what they say.
struct Wiring {
    scheduler: SchedulerHandle,
    next_id: u64,
    targets: HashMap<CheckId, Target>,
    check_ids: HashMap<CheckKey, CheckId>,
    verdicts: HashMap<CheckKey, CheckVerdict>,
    script_ids: HashMap<ScriptKey, CheckId>,
    script_ok: HashMap<ScriptKey, bool>,
    quorum_up: HashMap<ServiceKey, bool>,
    model: Model,
    /// The tracking last sent per instance.
    sent: HashMap<String, Tracking>,
    table: watch::Sender<Table>,
    driver: mpsc::Sender<DriverCommand>,
}

impl Wiring {
    fn id(&mut self, target: Target) -> CheckId {
        self.next_id += 1;
        let id = CheckId(self.next_id);
        self.targets.insert(id, target);
        id
    }

    /// Starts the checks and scripts `model` has and the running set lacks, stops the
    /// ones it no longer has; unchanged ones keep running with their state.
    async fn apply(&mut self, model: Model) {
        let mut wanted: HashMap<CheckKey, &HealthCheck> = HashMap::new();
        for vs in &model.virtual_servers {
            for rs in &vs.real_servers {
                wanted.extend(check_keys(vs, rs));
            }
        }
        let stale: Vec<CheckKey> = self
            .check_ids
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for key in stale {
            if let Some(id) = self.check_ids.remove(&key) {
                self.scheduler.remove(id);
                self.targets.remove(&id);
            }
            self.verdicts.remove(&key);
        }
        let (mut added, kept) = (0usize, self.check_ids.len());
        for (key, check) in wanted {
            if self.check_ids.contains_key(&key) {
                continue;
            }
            added += 1;
            // On a validated model only the world can make this fail (a script removed
            // since `haldir check`, a CA file that no longer reads).
            match build(checker_config(check)) {
                Ok(checker) => {
                    let id = self.id(Target::Check(key.clone()));
                    let up = self
                        .scheduler
                        .add(id, checker, check_timing(&check.timing))
                        .await;
                    self.check_ids.insert(key.clone(), id);
                    self.verdicts.insert(key, CheckVerdict { up, weight: None });
                }
                Err(e) => {
                    error!(at = %check.loc, "cannot start {}: {e}; the real server counts as down", check.kind.keyword());
                    self.verdicts.insert(
                        key,
                        CheckVerdict {
                            up: false,
                            weight: None,
                        },
                    );
                }
            }
        }

        // vrrp_scripts: only those some instance tracks run (as keepalived).
        let tracked: HashSet<&str> = model
            .vrrp_instances
            .iter()
            .flat_map(|i| i.track_script.iter().map(|t| t.name.as_str()))
            .collect();
        let scripts: Vec<&VrrpScript> = model
            .vrrp_scripts
            .iter()
            .filter(|s| tracked.contains(s.name.as_str()))
            .collect();
        let wanted_scripts: HashSet<ScriptKey> = scripts.iter().map(|s| ScriptKey::of(s)).collect();
        let stale: Vec<ScriptKey> = self
            .script_ids
            .keys()
            .filter(|k| !wanted_scripts.contains(*k))
            .cloned()
            .collect();
        for key in stale {
            if let Some(id) = self.script_ids.remove(&key) {
                self.scheduler.remove(id);
                self.targets.remove(&id);
            }
            self.script_ok.remove(&key);
        }
        for script in scripts {
            let key = ScriptKey::of(script);
            if self.script_ids.contains_key(&key) {
                continue;
            }
            match build(script_config(script)) {
                Ok(runner) => {
                    let id = self.id(Target::Script(key.clone()));
                    let ok = self.scheduler.add(id, runner, script_timing(script)).await;
                    self.script_ids.insert(key.clone(), id);
                    self.script_ok.insert(key, ok);
                }
                Err(e) => {
                    error!(at = %script.loc, "cannot run vrrp_script {:?}: {e}; it counts as failing", script.name);
                    self.script_ok.insert(key, false);
                }
            }
        }
        info!(
            checks = self.check_ids.len(),
            kept,
            added,
            scripts = self.script_ids.len(),
            "health checks in step with the configuration"
        );
        self.model = model;
        self.publish();
        // Every instance's tracking again: a reload may have replaced an instance (which
        // then starts untracked) or changed a weight.
        self.sent.clear();
        self.send_tracking().await;
    }

    fn publish(&mut self) {
        let verdicts = &self.verdicts;
        let table = desired_table(
            &self.model.virtual_servers,
            &|vs, rs| real_server_state(vs, rs, verdicts),
            &mut self.quorum_up,
        );
        self.table.send_if_modified(|current| {
            let changed = *current != table;
            *current = table;
            changed
        });
    }

    async fn send_tracking(&mut self) {
        let by_name: HashMap<&str, bool> = self
            .script_ok
            .iter()
            .map(|(k, ok)| (k.name.as_str(), *ok))
            .collect();
        let mut commands = Vec::new();
        for instance in &self.model.vrrp_instances {
            let now = tracking(instance, &|name| by_name.get(name).copied());
            let before = self.sent.get(&instance.name).copied();
            // An instance that never tracked anything needs no command.
            if before != Some(now) && (before.is_some() || !instance.track_script.is_empty()) {
                commands.push((instance.name.clone(), now));
            }
        }
        for (instance, tracking) in commands {
            info!(
                instance = %instance,
                priority_delta = tracking.priority_delta,
                fault = tracking.fault,
                "tracked scripts changed the instance's standing"
            );
            self.sent.insert(instance.clone(), tracking);
            if self
                .driver
                .send(DriverCommand::Track { instance, tracking })
                .await
                .is_err()
            {
                return;
            }
        }
    }

    async fn handle(&mut self, event: Event) {
        match self.targets.get(&event.id).cloned() {
            Some(Target::Check(key)) => {
                let verdict = self.verdicts.entry(key.clone()).or_insert(CheckVerdict {
                    up: false,
                    weight: None,
                });
                match &event.transition {
                    Transition::Up { weight } => {
                        verdict.up = true;
                        verdict.weight = *weight;
                    }
                    Transition::Down { .. } => verdict.up = false,
                    Transition::WeightChanged { weight } => verdict.weight = Some(*weight),
                }
                match &event.transition {
                    Transition::Down { reason } => warn!(
                        service = %key.service,
                        real_server = %DestKey::new(key.real_server.0, key.real_server.1),
                        check = key.kind.keyword(),
                        reason = %reason,
                        "real server check down"
                    ),
                    other => info!(
                        service = %key.service,
                        real_server = %DestKey::new(key.real_server.0, key.real_server.1),
                        check = key.kind.keyword(),
                        transition = ?other,
                        "real server check up"
                    ),
                }
                self.publish();
            }
            Some(Target::Script(key)) => {
                let ok = !matches!(event.transition, Transition::Down { .. });
                if let Transition::Down { reason } = &event.transition {
                    warn!(script = %key.name, reason = %reason, "vrrp_script failing");
                } else {
                    info!(script = %key.name, "vrrp_script OK");
                }
                self.script_ok.insert(key, ok);
                self.send_tracking().await;
            }
            None => {}
        }
    }
}

/// Starts the health wiring for `model` (and every model sent on it later) and returns
/// the desired IPVS table, updated on every health change and every reload. Tracking
/// changes go to `driver`. Stops when `shutdown` turns true.
pub fn spawn(
    mut model: watch::Receiver<Model>,
    driver: mpsc::Sender<DriverCommand>,
    mut shutdown: watch::Receiver<bool>,
) -> watch::Receiver<Table> {
    let first = model.borrow_and_update().clone();
    // Until the checks are added, the table as keepalived starts it (alpha: down).
    let mut quorum_up = HashMap::new();
    let initial = desired_table(
        &first.virtual_servers,
        &|vs, rs| real_server_state(vs, rs, &HashMap::new()),
        &mut quorum_up,
    );
    let (table_tx, table_rx) = watch::channel(initial);
    tokio::spawn(async move {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let (scheduler, _join) = spawn_scheduler(SchedulerConfig::default(), events_tx);
        let mut wiring = Wiring {
            scheduler: scheduler.clone(),
            next_id: 0,
            targets: HashMap::new(),
            check_ids: HashMap::new(),
            verdicts: HashMap::new(),
            script_ids: HashMap::new(),
            script_ok: HashMap::new(),
            quorum_up,
            model: first.clone(),
            sent: HashMap::new(),
            table: table_tx,
            driver,
        };
        wiring.apply(first).await;
        loop {
            tokio::select! {
                () = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
                Some(event) = events.recv() => wiring.handle(event).await,
                changed = model.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let next = model.borrow_and_update().clone();
                    wiring.apply(next).await;
                }
            }
        }
        scheduler.shutdown(false).await;
    });
    table_rx
}

#[cfg(test)]
mod tests;
