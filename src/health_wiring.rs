//! Health checks → the desired IPVS table and the VRRP priorities.
//!
//! One task ([`spawn`]) watches the running [`Model`] (the daemon replaces it on a
//! successful reload), runs every checker of every real server and every tracked
//! `vrrp_script` on one `haldir_health` scheduler, and publishes:
//!
//! * the desired IPVS table on a `watch` channel (the daemon's IPVS task reconciles the
//!   kernel with it on every change): a real server whose checkers are not all up is left
//!   out, or kept with weight 0 under `inhibit_on_failure`; an up one has its configured
//!   weight, or the `misc_dynamic` weight its script reported; per virtual server the live
//!   weight is compared with `quorum` (with `hysteresis`) and below it the `sorry_server` is
//!   the only destination (keepalived `ipwrapper.c` semantics);
//! * `DriverCommand::Track` to the VRRP driver for every instance with a `track_script`
//!   (keepalived semantics: a positive weight is added while the script is OK, a negative
//!   one while it fails, a failing script of weight 0 puts the instance in FAULT).
//!
//! Checks are keyed by (virtual server, real server, checker settings): a reload that
//! leaves a checker unchanged leaves its state alone (no server goes down and back up
//! because of a reload); only added or changed checkers start afresh, removed ones stop.
//! keepalived has no direct "track a virtual server's quorum" for VRRP instances (it is
//! done with `quorum_up` / `quorum_down` scripts and `track_file`), so neither has haldir.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use haldir_config::{
    CheckKind, CheckTimingSpec, HealthCheck, Model, RealServer, TlsVerify, VirtualServer,
    VrrpInstance, VrrpScript,
};
use haldir_health::http::{
    CertVerification, HttpCheck, HttpCheckConfig, HttpKind, StatusCodes, UrlSpec,
};
use haldir_health::misc::{MiscCheck, MiscCheckConfig, MiscCommand};
use haldir_health::{
    spawn_scheduler, CheckId, CheckTiming, Checker, Event, SchedulerConfig, SchedulerHandle,
    Transition,
};
use haldir_ipvs::model::{DestKey, ServiceKey, Table};
use haldir_vrrp::driver::{DriverCommand, Tracking};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::ipvs_wiring::{destination, service, service_key};

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

/// What identifies one `vrrp_script` run across reloads (its weight is not part of it:
/// a new weight changes the tracking, not the script's state).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScriptKey {
    name: String,
    script: String,
    interval_millis: u32,
    timeout_millis: u32,
    rise: u32,
    fall: u32,
    user: Option<String>,
    group: Option<String>,
    init_fail: bool,
}

impl ScriptKey {
    fn of(script: &VrrpScript) -> Self {
        ScriptKey {
            name: script.name.clone(),
            script: script.script.clone(),
            interval_millis: script.interval_millis,
            timeout_millis: script.timeout_millis,
            rise: script.rise,
            fall: script.fall,
            user: script.user.clone(),
            group: script.group.clone(),
            init_fail: script.init_fail,
        }
    }
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
pub fn real_server_state(
    vs: &VirtualServer,
    rs: &RealServer,
    verdicts: &HashMap<CheckKey, CheckVerdict>,
) -> (bool, u32) {
    let mut up = true;
    let mut weight = rs.weight;
    for (key, _) in check_keys(vs, rs) {
        match verdicts.get(&key) {
            Some(v) => {
                up &= v.up;
                if let Some(w) = v.weight {
                    weight = w;
                }
            }
            // Not started (yet): treated as its initial verdict would be.
            None => up &= !key.timing.alpha,
        }
    }
    (up, weight)
}

/// The desired table from the servers' states, updating each virtual server's quorum
/// state (`quorum_up`, keyed by service) with keepalived's hysteresis:
/// lost when the live weight drops to 0 or below `quorum - hysteresis`, regained at
/// `quorum + hysteresis`; the first evaluation compares with `quorum` alone.
pub fn desired_table(
    servers: &[VirtualServer],
    state: &dyn Fn(&VirtualServer, &RealServer) -> (bool, u32),
    quorum_up: &mut HashMap<ServiceKey, bool>,
) -> Table {
    let mut table = Table::new();
    let mut present = HashSet::new();
    for vs in servers {
        let key = service_key(vs);
        present.insert(key);
        table.insert_service(key, service(vs));
        let states: Vec<(bool, u32)> = vs.real_servers.iter().map(|rs| state(vs, rs)).collect();
        let live: u64 = states
            .iter()
            .filter(|(up, _)| *up)
            .map(|(_, w)| u64::from(*w))
            .sum();
        let (quorum, hysteresis) = (u64::from(vs.quorum), u64::from(vs.hysteresis));
        let up = match quorum_up.get(&key) {
            None => live >= quorum,
            Some(true) => !(live == 0 || live < quorum.saturating_sub(hysteresis)),
            Some(false) => live >= quorum + hysteresis,
        };
        let before = quorum_up.insert(key, up);
        if before.is_some() && before != Some(up) {
            if up {
                info!(service = %key, live_weight = live, quorum, "virtual server quorum gained");
            } else {
                warn!(service = %key, live_weight = live, quorum, "virtual server quorum lost");
            }
        }
        let sorry_only = !up && vs.sorry_server.is_some();
        for (rs, (rs_up, weight)) in vs.real_servers.iter().zip(&states) {
            let (dest_key, mut dest) = destination(vs, rs);
            if *rs_up && !sorry_only {
                dest.weight = *weight;
                table.insert_dest(&key, dest_key, dest);
            } else if rs.inhibit_on_failure {
                dest.weight = 0;
                table.insert_dest(&key, dest_key, dest);
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
                    loc: vs.loc.clone(),
                };
                let (dest_key, dest) = destination(vs, &stand_in);
                table.insert_dest(&key, dest_key, dest);
            }
        }
    }
    quorum_up.retain(|key, _| present.contains(key));
    table
}

/// The effect of an instance's tracked scripts (keepalived semantics): a positive weight
/// is added while its script is OK, a negative one while it fails; a failing script of
/// weight 0 means FAULT. `ok(name)` is the script's state (unknown: OK).
pub fn tracking(instance: &VrrpInstance, ok: &dyn Fn(&str) -> Option<bool>) -> Tracking {
    let mut result = Tracking::default();
    for tracked in &instance.track_script {
        let ok = ok(&tracked.name).unwrap_or(true);
        match (tracked.weight, ok) {
            (w, true) if w > 0 => result.priority_delta += w,
            (w, false) if w < 0 => result.priority_delta += w,
            (0, false) => result.fault = true,
            _ => {}
        }
    }
    result
}

/// The scheduler timing of a checker.
pub fn check_timing(timing: &CheckTimingSpec) -> CheckTiming {
    let ms = |m: u32| Duration::from_millis(u64::from(m));
    CheckTiming {
        delay_loop: ms(timing.delay_loop_millis),
        retry: timing.retry,
        delay_before_retry: ms(timing.delay_before_retry_millis),
        warmup: timing.warmup_millis.map(ms),
        rise: 1,
        fall: 1,
        alpha: timing.alpha,
    }
}

/// The scheduler timing of a `vrrp_script`: every `interval`, no retries, `rise` / `fall`,
/// first run at once, starting failed with `init_fail`.
pub fn script_timing(script: &VrrpScript) -> CheckTiming {
    let interval = Duration::from_millis(u64::from(script.interval_millis));
    CheckTiming {
        delay_loop: interval,
        retry: 0,
        delay_before_retry: interval,
        warmup: Some(Duration::ZERO),
        rise: script.rise,
        fall: script.fall,
        alpha: script.init_fail,
    }
}

/// Builds the checker a model checker describes.
pub fn build_checker(check: &HealthCheck) -> Result<Arc<dyn Checker>, String> {
    let ms = |m: u32| Duration::from_millis(u64::from(m));
    Ok(match &check.kind {
        CheckKind::Tcp(c) => {
            let mut tcp = haldir_health::tcp::TcpCheck::new(c.target);
            tcp.bind_to = c.bind_to;
            tcp.connect_timeout = ms(c.connect_timeout_millis);
            Arc::new(tcp)
        }
        CheckKind::Http(h) => {
            let kind = if h.tls {
                HttpKind::Https
            } else {
                HttpKind::Http
            };
            let mut urls = Vec::with_capacity(h.urls.len());
            for u in &h.urls {
                urls.push(UrlSpec {
                    path: u.path.clone(),
                    status_code: match &u.status_code {
                        Some(text) => StatusCodes::parse(text).map_err(|e| e.to_string())?,
                        None => StatusCodes::default(),
                    },
                    digest: u.digest.clone(),
                    regex: u.regex.clone(),
                    regex_no_match: u.regex_no_match,
                    virtualhost: u.virtualhost.clone(),
                });
            }
            let mut config = HttpCheckConfig::new(kind, h.connection.target, urls);
            config.bind_to = h.connection.bind_to;
            config.connect_timeout = ms(h.connection.connect_timeout_millis);
            config.virtualhost = h.virtualhost.clone();
            config.verify = match &h.verify {
                TlsVerify::Off => CertVerification::Off,
                TlsVerify::SystemRoots => CertVerification::SystemRoots,
                TlsVerify::CaFile(path) => CertVerification::CaFile(path.into()),
            };
            Arc::new(HttpCheck::new(config).map_err(|e| e.to_string())?)
        }
        CheckKind::Misc(m) => {
            let command = MiscCommand::parse(&m.misc_path).map_err(|e| e.to_string())?;
            let mut config = MiscCheckConfig::new(command, ms(m.misc_timeout_millis));
            config.dynamic = m.misc_dynamic;
            config.user = m.user.clone();
            config.group = m.group.clone();
            Arc::new(MiscCheck::new(config).map_err(|e| e.to_string())?)
        }
        CheckKind::Dns(d) => {
            let query_type = haldir_health::dns::DnsType::parse(&d.query_type)
                .ok_or_else(|| format!("unknown DNS type {}", d.query_type))?;
            let mut dns =
                haldir_health::dns::DnsCheck::new(d.connection.target, query_type, &d.name)
                    .map_err(|e| e.to_string())?
                    .with_timeout(ms(d.connection.connect_timeout_millis));
            if let Some(source) = d.connection.bind_to {
                dns = dns.with_bind_to(source);
            }
            Arc::new(dns)
        }
    })
}

/// Builds the runner of a `vrrp_script` (run like a `MISC_CHECK`: no shell, as its
/// unprivileged user, killed with its process group at `timeout`).
pub fn build_script(script: &VrrpScript) -> Result<Arc<dyn Checker>, String> {
    let command = MiscCommand::parse(&script.script).map_err(|e| e.to_string())?;
    let mut config = MiscCheckConfig::new(
        command,
        Duration::from_millis(u64::from(script.timeout_millis)),
    );
    config.user = script.user.clone();
    config.group = script.group.clone();
    Ok(Arc::new(MiscCheck::new(config).map_err(|e| e.to_string())?))
}

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
            match build_checker(check) {
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
            match build_script(script) {
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
