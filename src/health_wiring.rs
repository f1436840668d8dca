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
//! * a [`LvsNotice`] to the notify task whenever a real server comes up or goes down (all
//!   its checkers up, or one down) or a virtual server gains or loses its quorum, with its
//!   `notify_up` / `notify_down` / `quorum_up` / `quorum_down` script; the states the
//!   first evaluation finds are the baseline and are not reported;
//! * `DriverCommand::Track` to the VRRP driver for every instance with a `track_script`,
//!   a `track_file` or a `track_process`, as `vrrp_specs::tracking` decides it;
//! * each virtual server's quorum on a `watch` channel, whenever one changes (the
//!   announcement of the VIPs follows it, `src/announce.rs`).
//!
//! Tracked files are read every [`TRACK_FILE_POLL`] (keepalived watches them with
//! inotify; a poll of one short read per file costs less than following inotify through
//! renames, deletions and directories created later, and reacts well within an advert
//! interval's failover time). `init_file` is written when this process first tracks a
//! path.
//!
//! Tracked processes are counted by a scan of `/proc` every [`TRACK_PROCESS_POLL`], off
//! the async threads (keepalived follows the kernel's process-event connector; a scan
//! reads one small `stat` file per process, and `cmdline` only where a block matches
//! the command line). `haldir_director::track_process` decides what matches and when a
//! quorum change counts.
//!
//! A start's real-server checks wait for the first IPVS round, as keepalived's checker
//! programs its table (`init_services`) before it registers its checks: their first runs
//! are spread over `warmup` (or `delay_loop`) from the moment the table is in the kernel,
//! or [`FIRST_CHECKS_WAIT_AT_MOST`] after the start if that comes first. Until then a
//! real server has its initial verdict (up unless `alpha`). At 40,000 checks a minute the
//! runs would otherwise take a core's half from the programming of the table they feed.
//! Their checkers are built then too, not before: building 40,000 of them is a few
//! hundred milliseconds of CPU under emulation that the programming, on the IPVS
//! keeper's thread, needs at the same time. `vrrp_script`s do not wait; a reload's checks
//! start at once.
//!
//! Checks are keyed by (virtual server, real server, checker settings): a reload that
//! leaves a checker unchanged leaves its state alone (no server goes down and back up
//! because of a reload); only added or changed checkers start afresh, removed ones stop.
//! keepalived has no direct "track a virtual server's quorum" for VRRP instances (it is
//! done with `quorum_up` / `quorum_down` scripts and `track_file`), so neither has haldir.

use std::collections::{HashMap, HashSet};
use std::io::Read as _;
use std::time::Duration;

use haldir_config::{
    CheckKind, HealthCheck, Model, RealServer, TrackFile, TrackProcess, VirtualServer, VrrpScript,
};
use haldir_director::checks::{
    check_timing, checker_config, script_config, script_timing, ScriptKey,
};
use haldir_director::ipvs_policy::{
    check_keys, desired_table, real_server_state, CheckVerdict, RealServerAt, RealServerKey,
};
use haldir_director::ipvs_table::service_key;
use haldir_director::publish_pace::PublishPacer;
use haldir_director::track_process::{matches, QuorumState, RunningProcess};
use haldir_director::vrrp_specs::{track_file_value, tracking, TRACK_FILE_READ_LIMIT};
use haldir_health::checker::{build, Checkers};
use haldir_health::http;
use haldir_health::{
    initially_up, spawn_scheduler, CheckId, Event, NewCheck, SchedulerConfig, SchedulerHandle,
    Transition,
};
use haldir_ipvs::model::{DestKey, ServiceKey, Table};
use haldir_vrrp::driver::{DriverCommand, Tracking};
use smallvec::SmallVec;
use tokio::sync::{mpsc, watch};

use crate::notify::LvsNotice;
use tracing::{error, info, warn};

/// An apply of at least this many checkers returns its garbage to the system at once.
const LARGE_APPLY_CHECKS: usize = 1000;

/// How often tracked files are read.
pub const TRACK_FILE_POLL: Duration = Duration::from_millis(250);
/// How often `/proc` is scanned for tracked processes.
pub const TRACK_PROCESS_POLL: Duration = Duration::from_millis(250);

/// A real server within its virtual server: what a real server's checkers are filed under.
type RealServerId = (ServiceKey, RealServerKey);

/// Where a real server is in the running model: its virtual server's index and its own.
type ModelPlace = (u32, u32);

/// One checker of a real server, at its place in the real server's `checks`.
#[derive(Debug, Clone, Copy)]
struct CheckerOf {
    /// Its real server's index in [`Wiring::checks`].
    real_server: u32,
    /// Its index in the real server's `checks` (and in its [`RealServerChecks::checkers`]).
    /// (Its keyword, for the log, is read from the model there: kept here it made every
    /// checker's slot in [`Targets`] a third larger.)
    index: u32,
}

/// A checker of a real server the wiring started, or failed to start (`id` `None`: it
/// counts as down and a reload tries it again).
#[derive(Debug, Clone, Copy)]
struct RunningCheck {
    id: Option<CheckId>,
    verdict: CheckVerdict,
}

/// The checkers of one real server and its state as last reported.
#[derive(Debug)]
struct RealServerChecks {
    /// The real server's place in the running model.
    at: ModelPlace,
    /// In the order of the real server's `checks` in the running model. Held inline when
    /// there is one, as there nearly always is: a list of its own cost a real server 32
    /// bytes more (its header, and a 48-byte block for 32 bytes; 1.3 MB at 40,000
    /// checked real servers).
    checkers: SmallVec<[RunningCheck; 1]>,
    /// Up or down, as last reported to the notify task (`None`: not evaluated yet; the
    /// first evaluation is the baseline and not reported). Kept across a reload that
    /// changes the checkers.
    reported_up: Option<bool>,
}

impl RealServerChecks {
    fn verdicts(&self) -> Vec<CheckVerdict> {
        self.checkers.iter().map(|c| c.verdict).collect()
    }

    fn ids(self) -> impl Iterator<Item = CheckId> {
        self.checkers.into_iter().filter_map(|c| c.id)
    }
}

/// What a scheduled check is. A script's key is boxed: scripts are few, and unboxed its
/// strings would make every checker's slot in [`Targets`] several times as large.
#[derive(Debug, Clone)]
enum Target {
    Check(CheckerOf),
    Script(Box<ScriptKey>),
}

/// The scheduled checks and scripts by id. A [`CheckId`] is a slot of this list (its low
/// 32 bits) and how many times the slot was taken (its high 32 bits), so the late event of
/// a check stopped since never reaches the slot's next occupant. A list rather than a hash
/// map keyed by id: at 40,000 checkers the map's entries, each holding its real server's
/// whole key, cost about 160 bytes a checker; a slot costs 24.
#[derive(Debug, Default)]
struct Targets {
    slots: Vec<(u32, Option<Target>)>,
    free: Vec<u32>,
}

impl Targets {
    /// Room for `more` checks beyond those running (a start or a reload adds them at once).
    fn reserve(&mut self, more: usize) {
        self.slots.reserve(more.saturating_sub(self.free.len()));
    }

    fn insert(&mut self, target: Target) -> CheckId {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push((0, None));
            u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 checks")
        });
        let (taken, entry) = &mut self.slots[slot as usize];
        *taken = taken.wrapping_add(1);
        *entry = Some(target);
        CheckId(u64::from(*taken) << 32 | u64::from(slot))
    }

    /// The slot of `id`, if `id` is its current occupant's.
    fn slot(&mut self, id: CheckId) -> Option<&mut Option<Target>> {
        let slot = usize::try_from(id.0 & u64::from(u32::MAX)).ok()?;
        let taken = u32::try_from(id.0 >> 32).ok()?;
        self.slots
            .get_mut(slot)
            .filter(|(t, _)| *t == taken)
            .map(|(_, target)| target)
    }

    fn get(&mut self, id: CheckId) -> Option<&Target> {
        self.slot(id)?.as_ref()
    }

    /// Points the running check `id` at `target` (its real server moved in the model).
    fn set(&mut self, id: CheckId, target: Target) {
        if let Some(slot @ Some(_)) = self.slot(id) {
            *slot = Some(target);
        }
    }

    fn remove(&mut self, id: CheckId) {
        if let Some(slot) = self.slot(id) {
            if slot.take().is_some() {
                self.free.push((id.0 & u64::from(u32::MAX)) as u32);
            }
        }
    }
}

/// The longest a start's real-server checks wait for the first IPVS round (see the module
/// comment): a table that cannot be programmed, or one with no service, does not keep the
/// checks from running.
pub const FIRST_CHECKS_WAIT_AT_MOST: Duration = Duration::from_secs(10);

/// The running state: which checks run under which id, and what they say.
struct Wiring {
    scheduler: SchedulerHandle,
    /// A start's real-server checks wait for the first IPVS round; their checkers are
    /// built and sent to the scheduler then (see the module comment). Until then `checks`
    /// is empty and every real server has its initial verdict.
    checks_waiting: bool,
    targets: Targets,
    /// Each real server's checkers, in the order of its `checks` in the running model
    /// (`model`), and its state as last reported; only real servers with checkers, in the
    /// running model's order. A checker's identity across reloads is its settings
    /// (`check_keys`), compared with the running model's only on a reload: kept once per
    /// checker, the settings cost more than the checker (40,000 `TCP_CHECK`s held 50 MB of
    /// keys in three maps).
    checks: Vec<RealServerChecks>,
    /// Where each virtual server's real servers start in `checks` (by the virtual server's
    /// index in the running model; one more at the end): a virtual server's entries are
    /// `checks[first_checks[i]..first_checks[i + 1]]`, in the order of its real servers.
    /// 4 bytes a virtual server, where a map by place cost about 30 a real server.
    first_checks: Vec<u32>,
    /// A check's verdict changed since the table was last published.
    unpublished: bool,
    /// When the next table may be published after a verdict changed (a reload's is
    /// published at once).
    pacer: PublishPacer,
    /// Changed verdicts are waiting for the pace (counted once per wait).
    held: bool,
    /// The publications and waits are counted for `/metrics`.
    counters: std::sync::Arc<crate::counters::DaemonCounters>,
    script_ids: HashMap<ScriptKey, CheckId>,
    script_ok: HashMap<ScriptKey, bool>,
    /// The value last read from each tracked file, by `track_file` name.
    file_values: HashMap<String, i64>,
    /// The paths whose `init_file` this process has applied (once per path).
    initialized_files: HashSet<String>,
    /// The last problem reading each tracked file, logged once until it changes.
    file_problems: HashMap<String, String>,
    /// Each tracked process block (as configured) and its counted quorum, by name.
    processes: HashMap<String, (TrackProcess, QuorumState)>,
    quorum_up: HashMap<ServiceKey, bool>,
    /// Where real server and quorum changes go, and how many were dropped (full).
    lvs_notices: mpsc::Sender<LvsNotice>,
    lvs_dropped: u64,
    model: std::sync::Arc<Model>,
    /// The tracking last sent per instance.
    sent: HashMap<String, Tracking>,
    table: watch::Sender<std::sync::Arc<Table>>,
    /// Each virtual server's quorum, for the announcement of the VIPs (`src/announce.rs`).
    quorum: watch::Sender<crate::announce::Quorum>,
    driver: mpsc::Sender<DriverCommand>,
}

impl Wiring {
    /// Starts the checks and scripts `model` has and the running set lacks, stops the
    /// ones it no longer has; unchanged ones keep running with their state.
    async fn apply(&mut self, model: std::sync::Arc<Model>) {
        let (added, kept) = if self.checks_waiting {
            (0, 0)
        } else {
            self.apply_checks(&model).await
        };
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
                self.targets.remove(id);
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
                    let id = self.targets.insert(Target::Script(Box::new(key.clone())));
                    let ok = self.scheduler.add(id, runner, script_timing(script));
                    self.script_ids.insert(key.clone(), id);
                    self.script_ok.insert(key, ok);
                }
                Err(e) => {
                    error!(at = %script.loc, "cannot run vrrp_script {:?}: {e}; it counts as failing", script.name);
                    self.script_ok.insert(key, false);
                }
            }
        }
        // track_files: only those some instance tracks are read (as keepalived).
        let tracked_files: HashSet<&str> = model
            .vrrp_instances
            .iter()
            .flat_map(|i| i.track_file.iter().map(|t| t.name.as_str()))
            .collect();
        self.file_values
            .retain(|name, _| tracked_files.contains(name.as_str()));
        let tracked_files: Vec<TrackFile> = model
            .track_files
            .iter()
            .filter(|f| tracked_files.contains(f.name.as_str()))
            .cloned()
            .collect();
        for file in &tracked_files {
            if self.initialized_files.insert(file.path.clone()) {
                init_file(file);
            }
            let value = self.read_file(file).unwrap_or(0);
            self.file_values.insert(file.name.clone(), value);
        }
        // track_processes: only those some instance tracks are counted; a block a reload
        // changed starts afresh.
        let tracked_processes: HashSet<&str> = model
            .vrrp_instances
            .iter()
            .flat_map(|i| i.track_process.iter().map(|t| t.name.as_str()))
            .collect();
        let wanted: Vec<&TrackProcess> = model
            .track_processes
            .iter()
            .filter(|p| tracked_processes.contains(p.name.as_str()))
            .collect();
        self.processes
            .retain(|name, (block, _)| wanted.iter().any(|w| w.name == *name && *w == block));
        for block in wanted {
            self.processes
                .entry(block.name.clone())
                .or_insert_with(|| (block.clone(), QuorumState::default()));
        }
        self.scan_processes(false).await;
        info!(
            checks = self.checks.iter().map(|c| c.checkers.len()).sum::<usize>(),
            kept,
            added,
            scripts = self.script_ids.len(),
            files = self.file_values.len(),
            processes = self.processes.len(),
            "health checks in step with the configuration"
        );
        self.model = model;
        self.publish();
        if added + kept >= LARGE_APPLY_CHECKS {
            // Starting thousands of checkers, and the tables of the old and the new
            // checkers, leave megabytes of garbage that nothing else would return soon.
            crate::memory::release_now();
        }
        // Every instance's tracking again: a reload may have replaced an instance (which
        // then starts untracked) or changed a weight.
        self.sent.clear();
        self.send_tracking().await;
    }

    /// Builds a start's real-server checkers and sends their checks to the scheduler, if
    /// they still wait; their first runs are spread from now.
    async fn send_waiting_checks(&mut self, why: &str) {
        if !std::mem::take(&mut self.checks_waiting) {
            return;
        }
        let model = std::sync::Arc::clone(&self.model);
        let (added, _) = self.apply_checks(&model).await;
        if added > 0 {
            info!(checks = added, "real-server checks start: {why}");
        }
        // The first verdicts the notices compare with, and a checker that could not be
        // built counts as down.
        self.publish();
        if added >= LARGE_APPLY_CHECKS {
            crate::memory::release_now();
        }
    }

    /// Brings the checkers in step with `model` (the running model is still the old one):
    /// a real server's checker whose settings are unchanged keeps running with its state;
    /// added or changed ones start, and ones that failed to start are tried again; the
    /// rest stop. Returns how many started and how many were kept.
    async fn apply_checks(&mut self, model: &Model) -> (usize, usize) {
        let running_model = std::sync::Arc::clone(&self.model);
        let mut before: HashMap<RealServerId, (&VirtualServer, &RealServer, RealServerChecks)> =
            HashMap::with_capacity(self.checks.len());
        // Filed under a real server the running model does not have: none on a validated
        // model; stopped all the same.
        let mut stale: Vec<CheckId> = Vec::new();
        self.first_checks.clear();
        for checks in std::mem::take(&mut self.checks) {
            let (vs_index, rs_index) = checks.at;
            let place = running_model
                .virtual_servers
                .get(vs_index as usize)
                .and_then(|vs| Some((vs, vs.real_servers.get(rs_index as usize)?)));
            match place {
                Some((vs, rs)) => {
                    before.insert((service_key(vs), (rs.ip, rs.port)), (vs, rs, checks));
                }
                None => stale.extend(checks.ids()),
            }
        }
        let wanted: usize = (model.virtual_servers.iter())
            .flat_map(|vs| vs.real_servers.iter().map(|rs| rs.checks.len()))
            .sum();
        let more = wanted.saturating_sub(before.values().map(|(_, _, c)| c.checkers.len()).sum());
        self.targets.reserve(more);
        self.scheduler.reserve(more);
        // The new checks go to the scheduler at once, after the walk (one command).
        let mut new_checks = Vec::with_capacity(more);
        let mut checkers = Checkers::default();
        // Kept checks to run from the new model's settings (one command, after the walk).
        let mut rebound = Vec::new();
        let (mut added, mut kept) = (0usize, 0usize);
        self.first_checks
            .reserve_exact(model.virtual_servers.len() + 1);
        for (vs_index, vs) in (0u32..).zip(&model.virtual_servers) {
            let service = service_key(vs);
            self.first_checks
                .push(u32::try_from(self.checks.len()).expect("fewer than 2^32 real servers"));
            for (rs_index, rs) in (0u32..).zip(&vs.real_servers) {
                if rs.checks.is_empty() {
                    continue;
                }
                let real_server = (service, (rs.ip, rs.port));
                let place = u32::try_from(self.checks.len()).expect("fewer than 2^32 real servers");
                // The running checkers of this real server, by their settings.
                let (mut previous, reported_up): (Vec<_>, _) = match before.remove(&real_server) {
                    Some((old_vs, old_rs, old)) => (
                        check_keys(old_vs, old_rs)
                            .into_iter()
                            .map(|(key, _)| key)
                            .zip(old.checkers)
                            .map(Some)
                            .collect(),
                        old.reported_up,
                    ),
                    None => (Vec::new(), None),
                };
                let mut list = SmallVec::with_capacity(rs.checks.len());
                for (index, (key, check)) in (0u32..).zip(check_keys(vs, rs)) {
                    let target = CheckerOf {
                        real_server: place,
                        index,
                    };
                    let same = previous.iter_mut().find(|slot| {
                        slot.as_ref()
                            .is_some_and(|(old, running)| *old == key && running.id.is_some())
                    });
                    if let Some((_, running)) = same.and_then(Option::take) {
                        if let Some(id) = running.id {
                            self.targets.set(id, Target::Check(target));
                            if let CheckKind::Http(settings) = &check.kind {
                                // A plain HTTP_GET runs from the replaced model's settings:
                                // from now on from this model's (equal), so the replaced
                                // ones go. One with TLS or a regex keeps its checker (and
                                // its settings): new settings would have its connector and
                                // regexes made again, a CA file read for every check.
                                if let Some(checker) = http::plain_checker(settings.share()) {
                                    rebound.push((id, checker));
                                }
                            }
                        }
                        kept += 1;
                        list.push(running);
                        continue;
                    }
                    added += 1;
                    list.push(self.start_check(check, target, &mut checkers, &mut new_checks));
                }
                stale.extend(previous.into_iter().flatten().filter_map(|(_, c)| c.id));
                self.checks.push(RealServerChecks {
                    at: (vs_index, rs_index),
                    checkers: list,
                    reported_up,
                });
            }
        }
        self.first_checks
            .push(u32::try_from(self.checks.len()).expect("fewer than 2^32 real servers"));
        self.checks.shrink_to_fit();
        self.scheduler.add_all(new_checks);
        self.scheduler.rebind_all(rebound);
        stale.extend(before.into_values().flat_map(|(_, _, checks)| checks.ids()));
        for id in stale {
            self.scheduler.remove(id);
            self.targets.remove(id);
        }
        (added, kept)
    }

    /// Starts one checker of a real server (built by `checkers`, into `new_checks` for the
    /// scheduler); its initial verdict, or down if it cannot start.
    fn start_check(
        &mut self,
        check: &HealthCheck,
        target: CheckerOf,
        checkers: &mut Checkers,
        new_checks: &mut Vec<NewCheck>,
    ) -> RunningCheck {
        // On a validated model only the world can make this fail (a script removed
        // since `haldir check`, a CA file that no longer reads).
        match checkers.build(checker_config(check)) {
            Ok(checker) => {
                let id = self.targets.insert(Target::Check(target));
                let timing = check_timing(&check.timing);
                let up = initially_up(&timing);
                new_checks.push(NewCheck {
                    id,
                    checker,
                    timing,
                });
                RunningCheck {
                    id: Some(id),
                    verdict: CheckVerdict { up, weight: None },
                }
            }
            Err(e) => {
                error!(at = %check.loc, "cannot start {}: {e}; the real server counts as down", check.kind.keyword());
                RunningCheck {
                    id: None,
                    verdict: CheckVerdict {
                        up: false,
                        weight: None,
                    },
                }
            }
        }
    }

    /// The verdicts of the checkers of the real server at `at` in the running model, in the
    /// order of its `checks` (empty for one without checkers).
    fn verdicts_at(&self, (vs_index, rs_index): RealServerAt) -> Vec<CheckVerdict> {
        let place = (u32::try_from(vs_index), u32::try_from(rs_index));
        let (Ok(vs_index), Ok(rs_index)) = place else {
            return Vec::new();
        };
        (self.place((vs_index, rs_index)))
            .map(|place| self.checks[place].verdicts())
            .unwrap_or_default()
    }

    /// The index in `checks` of the real server at `at` in the running model, if it has
    /// checkers.
    fn place(&self, (vs_index, rs_index): ModelPlace) -> Option<usize> {
        let start = *self.first_checks.get(vs_index as usize)? as usize;
        let end = *self.first_checks.get(vs_index as usize + 1)? as usize;
        let entries = self.checks.get(start..end)?;
        let found = entries.binary_search_by_key(&rs_index, |checks| checks.at.1);
        found.ok().map(|offset| start + offset)
    }

    /// Publishes the table if a verdict changed since it was last published and the pace
    /// allows it: once for a burst of verdicts (a real server behind many virtual servers
    /// going down), and while verdicts keep changing, once per [`PublishPacer`]'s wait.
    fn publish_changes(&mut self) {
        if !self.unpublished {
            return;
        }
        if self.pacer.may_publish(std::time::Instant::now()) {
            self.publish();
            self.counters
                .table_publications
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        } else if !self.held {
            self.held = true;
            self.counters
                .table_publications_held
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// When verdicts wait for the pace: the time they may be published.
    fn publish_due(&self) -> Option<std::time::Instant> {
        self.pacer.next_allowed().filter(|_| self.unpublished)
    }

    fn publish(&mut self) {
        // What the table costs to make, on this thread's CPU clock (a host descheduling
        // the thread does not count).
        let began = std::time::Instant::now();
        let cpu_before = haldir_ipvs::drift::thread_cpu_time();
        self.publish_table();
        let ended = std::time::Instant::now();
        let cost = haldir_ipvs::drift::cpu_cost(
            ended - began,
            cpu_before,
            haldir_ipvs::drift::thread_cpu_time(),
        );
        self.pacer.published(ended, cost);
    }

    fn publish_table(&mut self) {
        self.unpublished = false;
        self.held = false;
        let quorum_before = self.quorum_up.clone();
        let mut quorum_up = std::mem::take(&mut self.quorum_up);
        let table = desired_table(
            &self.model.virtual_servers,
            &|at, _, rs| real_server_state(rs, &self.verdicts_at(at)),
            &mut quorum_up,
        );
        self.quorum_up = quorum_up;
        self.notice_changes(&quorum_before);
        if self.quorum_up != quorum_before {
            let quorum = std::sync::Arc::new(self.quorum_up.clone());
            self.quorum.send_replace(quorum);
        }
        // Shared with the IPVS keeper, which keeps it between rounds without a copy.
        self.table.send_if_modified(|current| {
            let changed = **current != table;
            if changed {
                *current = std::sync::Arc::new(table);
            }
            changed
        });
    }

    /// Reports the real servers whose state and the virtual servers whose quorum changed
    /// since the last evaluation (`quorum_before`) to the notify task.
    fn notice_changes(&mut self, quorum_before: &HashMap<ServiceKey, bool>) {
        let mut notices = Vec::new();
        for (vs_index, vs) in (0u32..).zip(&self.model.virtual_servers) {
            let service = haldir_director::ipvs_table::service_key(vs);
            // The real servers first, then the quorum they moved (keepalived's order).
            // A real server without checkers is up for good: nothing to notice, nothing
            // to remember (40,000 entries at 10,000 virtual servers).
            for (rs_index, rs) in (0u32..).zip(&vs.real_servers) {
                let Some(place) = self.place((vs_index, rs_index)) else {
                    continue;
                };
                let checks = &mut self.checks[place];
                let (up, _) = real_server_state(rs, &checks.verdicts());
                if let Some(before) = checks.reported_up.replace(up) {
                    if before != up {
                        let script = if up {
                            rs.notify.up().map(|s| ("notify_up", s.to_owned()))
                        } else {
                            rs.notify.down().map(|s| ("notify_down", s.to_owned()))
                        };
                        notices.push(LvsNotice {
                            fifo_line: haldir_director::notify::fifo_real_server_line(vs, rs, up),
                            script,
                        });
                    }
                }
            }
            if let (Some(before), Some(now)) =
                (quorum_before.get(&service), self.quorum_up.get(&service))
            {
                if before != now {
                    let script = if *now {
                        vs.quorum_scripts.up().map(|s| ("quorum_up", s.to_owned()))
                    } else {
                        vs.quorum_scripts
                            .down()
                            .map(|s| ("quorum_down", s.to_owned()))
                    };
                    notices.push(LvsNotice {
                        fifo_line: haldir_director::notify::fifo_quorum_line(vs, *now),
                        script,
                    });
                }
            }
        }
        for notice in notices {
            if self.lvs_notices.try_send(notice).is_err() {
                self.lvs_dropped += 1;
                warn!(
                    dropped = self.lvs_dropped,
                    "the notify task is behind: a real server change was not reported to it"
                );
            }
        }
    }

    /// Reads `file`; a problem is logged when it first appears, not on every poll.
    fn read_file(&mut self, file: &TrackFile) -> Option<i64> {
        let (value, problem) = read_track_file(&file.path);
        let before = match &problem {
            Some(p) => self.file_problems.insert(file.name.clone(), p.clone()),
            None => self.file_problems.remove(&file.name),
        };
        if let Some(p) = problem.filter(|p| before.as_ref() != Some(p)) {
            warn!(track_file = %file.name, path = %file.path, "{p}");
        }
        value
    }

    /// Reads every tracked file again; the instances' standing is sent if a value changed.
    async fn poll_files(&mut self) {
        let mut changed = false;
        // The shared model, held for the loop (read_file records problems on self): no
        // copy, this runs four times a second.
        let model = std::sync::Arc::clone(&self.model);
        for file in &model.track_files {
            let Some(before) = self.file_values.get(&file.name).copied() else {
                continue;
            };
            // Out of range: ignored, the last value stays (as keepalived).
            let Some(now) = self.read_file(file) else {
                continue;
            };
            if now != before {
                info!(track_file = %file.name, path = %file.path, before, now, "tracked file changed");
                self.file_values.insert(file.name.clone(), now);
                changed = true;
            }
        }
        if changed {
            self.send_tracking().await;
        }
    }

    /// Counts the tracked processes in `/proc`; the instances' standing is sent if a
    /// block's counted quorum changed (and `send` is set).
    async fn scan_processes(&mut self, send: bool) {
        if self.processes.is_empty() {
            return;
        }
        let blocks: Vec<TrackProcess> = self.processes.values().map(|(b, _)| b.clone()).collect();
        let counts = match tokio::task::spawn_blocking(move || {
            let counts = count_processes(&blocks);
            blocks
                .into_iter()
                .map(|b| b.name)
                .zip(counts)
                .collect::<Vec<_>>()
        })
        .await
        {
            Ok(counts) => counts,
            Err(e) => {
                warn!("the scan of /proc for tracked processes failed: {e}");
                return;
            }
        };
        let now = std::time::Instant::now();
        let mut changed = false;
        for (name, count) in counts {
            let Some((block, state)) = self.processes.get_mut(&name) else {
                continue;
            };
            let before = state.up();
            if let Some(up) = state.observe(block, count, now) {
                info!(
                    track_process = %name,
                    process = %block.process,
                    count,
                    quorum = block.quorum,
                    "tracked process quorum {}",
                    if up { "gained" } else { "lost" }
                );
                changed |= before.is_some();
            }
        }
        if changed && send {
            self.send_tracking().await;
        }
    }

    async fn send_tracking(&mut self) {
        let by_name: HashMap<&str, bool> = self
            .script_ok
            .iter()
            .map(|(k, ok)| (k.name.as_str(), *ok))
            .collect();
        let file_values = &self.file_values;
        let processes = &self.processes;
        let mut commands = Vec::new();
        for instance in &self.model.vrrp_instances {
            let now = tracking(
                instance,
                &|name| by_name.get(name).copied(),
                &|name| file_values.get(name).copied(),
                &|name| processes.get(name).and_then(|(_, state)| state.up()),
            );
            let before = self.sent.get(&instance.name).copied();
            let tracks_anything = !instance.track_script.is_empty()
                || !instance.track_file.is_empty()
                || !instance.track_process.is_empty();
            // An instance that never tracked anything needs no command.
            if before != Some(now) && (before.is_some() || tracks_anything) {
                commands.push((instance.name.clone(), now));
            }
        }
        for (instance, tracking) in commands {
            info!(
                instance = %instance,
                priority_delta = tracking.priority_delta,
                fault = tracking.fault,
                "tracked scripts, files or processes changed the instance's standing"
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
        match self.targets.get(event.id).cloned() {
            Some(Target::Check(checker)) => {
                let Some(checks) = self.checks.get_mut(checker.real_server as usize) else {
                    return;
                };
                let (vs_index, rs_index) = checks.at;
                let Some(running) = checks.checkers.get_mut(checker.index as usize) else {
                    return;
                };
                let verdict = &mut running.verdict;
                match &event.transition {
                    Transition::Up { weight } => {
                        verdict.up = true;
                        verdict.weight = *weight;
                    }
                    Transition::Down { .. } => verdict.up = false,
                    Transition::WeightChanged { weight } => verdict.weight = Some(*weight),
                }
                let Some((service, (ip, port), keyword)) =
                    (self.model.virtual_servers.get(vs_index as usize)).and_then(|vs| {
                        let rs = vs.real_servers.get(rs_index as usize)?;
                        let keyword = rs.checks.get(checker.index as usize)?.kind.keyword();
                        Some((service_key(vs), (rs.ip, rs.port), keyword))
                    })
                else {
                    return;
                };
                match &event.transition {
                    Transition::Down { reason } => warn!(
                        service = %service,
                        real_server = %DestKey::new(ip, port),
                        check = keyword,
                        reason = %reason,
                        "real server check down"
                    ),
                    other => info!(
                        service = %service,
                        real_server = %DestKey::new(ip, port),
                        check = keyword,
                        transition = ?other,
                        "real server check up"
                    ),
                }
                self.unpublished = true;
            }
            Some(Target::Script(key)) => {
                let ok = !matches!(event.transition, Transition::Down { .. });
                if let Transition::Down { reason } = &event.transition {
                    warn!(script = %key.name, reason = %reason, "vrrp_script failing");
                } else {
                    info!(script = %key.name, "vrrp_script OK");
                }
                self.script_ok.insert(*key, ok);
                self.send_tracking().await;
            }
            None => {}
        }
    }
}

/// Starts the health wiring for `model` (and every model sent on it later) and returns
/// the desired IPVS table, updated on every health change and every reload, and each
/// virtual server's quorum, updated when one changes. Tracking
/// changes go to `driver`; the check scheduler's counters to `counters`. The first
/// model's real-server checks start when `table_programmed` turns true or closes (the
/// first IPVS round is done, or there will be none), or after
/// [`FIRST_CHECKS_WAIT_AT_MOST`]. Stops when `shutdown` turns true.
pub fn spawn(
    mut model: watch::Receiver<std::sync::Arc<Model>>,
    driver: mpsc::Sender<DriverCommand>,
    lvs_notices: mpsc::Sender<LvsNotice>,
    counters: std::sync::Arc<crate::counters::DaemonCounters>,
    mut table_programmed: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) -> (
    watch::Receiver<std::sync::Arc<Table>>,
    watch::Receiver<crate::announce::Quorum>,
    tokio::task::JoinHandle<()>,
) {
    let first = model.borrow_and_update().clone();
    // Until the checks are added, the table as keepalived starts it (alpha: down).
    let mut quorum_up = HashMap::new();
    let initial = desired_table(
        &first.virtual_servers,
        &|_, _, rs| real_server_state(rs, &[]),
        &mut quorum_up,
    );
    let (table_tx, table_rx) = watch::channel(std::sync::Arc::new(initial));
    let (quorum_tx, quorum_rx) = watch::channel(std::sync::Arc::new(quorum_up.clone()));
    let task = tokio::spawn(async move {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let (scheduler, _join) = spawn_scheduler(SchedulerConfig::default(), events_tx);
        // Checks scheduled and their worst lateness, for `/metrics` (one scheduler per
        // daemon: a second start leaves the first reader).
        let _ = counters.health_checks.set(scheduler.stats_reader());
        let first_checks_due = tokio::time::Instant::now() + FIRST_CHECKS_WAIT_AT_MOST;
        let mut wiring = Wiring {
            scheduler: scheduler.clone(),
            checks_waiting: true,
            targets: Targets::default(),
            checks: Vec::new(),
            first_checks: Vec::new(),
            unpublished: false,
            pacer: PublishPacer::new(),
            held: false,
            counters: counters.clone(),
            script_ids: HashMap::new(),
            script_ok: HashMap::new(),
            file_values: HashMap::new(),
            initialized_files: HashSet::new(),
            file_problems: HashMap::new(),
            processes: HashMap::new(),
            quorum_up,
            lvs_notices,
            lvs_dropped: 0,
            model: first.clone(),
            sent: HashMap::new(),
            table: table_tx,
            quorum: quorum_tx,
            driver,
        };
        wiring.apply(first).await;
        let mut file_poll = tokio::time::interval(TRACK_FILE_POLL);
        file_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut process_poll = tokio::time::interval(TRACK_PROCESS_POLL);
        process_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
                Some(event) = events.recv() => {
                    wiring.handle(event).await;
                    // The verdicts already waiting, then one table for all of them.
                    while let Ok(event) = events.try_recv() {
                        wiring.handle(event).await;
                    }
                    wiring.publish_changes();
                }
                // Verdicts held by the pace go out when it allows.
                () = async {
                    if let Some(due) = wiring.publish_due() {
                        tokio::time::sleep_until(due.into()).await;
                    }
                }, if wiring.publish_due().is_some() => wiring.publish_changes(),
                programmed = async { table_programmed.wait_for(|done| *done).await.is_ok() }, if wiring.checks_waiting => {
                    wiring.send_waiting_checks(if programmed {
                        "the IPVS table is programmed"
                    } else {
                        "no IPVS table will be programmed"
                    }).await;
                }
                () = tokio::time::sleep_until(first_checks_due), if wiring.checks_waiting => {
                    wiring.send_waiting_checks("the IPVS table is not programmed yet").await;
                }
                // Polled only while something is tracked: an idle daemon sleeps.
                _ = file_poll.tick(), if !wiring.file_values.is_empty() => wiring.poll_files().await,
                _ = process_poll.tick(), if !wiring.processes.is_empty() => wiring.scan_processes(true).await,
                changed = model.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let next = model.borrow_and_update().clone();
                    // A reload's removes must find the start's checks in the scheduler.
                    wiring.send_waiting_checks("a reload came first").await;
                    wiring.apply(next).await;
                }
            }
        }
        scheduler.shutdown(false).await;
    });
    (table_rx, quorum_rx, task)
}

/// `init_file`: writes the value when the file is missing, or always with `overwrite`.
fn init_file(file: &TrackFile) {
    let Some(init) = file.init else {
        return;
    };
    let path = std::path::Path::new(&file.path);
    if !init.overwrite && path.exists() {
        return;
    }
    match std::fs::write(path, format!("{}\n", init.value)) {
        Ok(()) => {
            info!(track_file = %file.name, path = %file.path, value = init.value, "init_file written")
        }
        Err(e) => warn!(track_file = %file.name, path = %file.path, "cannot write init_file: {e}"),
    }
}

/// One read of a tracked file, as keepalived reads it: a missing file or one that cannot
/// be read is 0. The value is `None` when the number is out of range (the last value then
/// stays); the problem, if any, says what went wrong.
fn read_track_file(path: &str) -> (Option<i64>, Option<String>) {
    let mut text = Vec::with_capacity(TRACK_FILE_READ_LIMIT);
    let mut problem = None;
    match std::fs::File::open(path) {
        Ok(f) => {
            // The length is bounded: a huge or endless file costs one short read.
            if let Err(e) = f.take(TRACK_FILE_READ_LIMIT as u64).read_to_end(&mut text) {
                problem = Some(format!("cannot read: {e}; it counts as 0"));
                text.clear();
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => problem = Some(format!("cannot open: {e}; it counts as 0")),
    }
    let value = track_file_value(&text);
    if value.is_none() {
        problem = Some("the number read is outside 32 bits; ignored".to_owned());
    }
    (value, problem)
}

#[cfg(test)]
mod tests;

/// How much of `/proc/PID/cmdline` is read: enough for any command line a block can
/// name; a longer one is compared by its start.
const CMDLINE_READ_LIMIT: u64 = 4096;

/// How many running processes (not threads, not zombies) each block matches, by one scan
/// of `/proc`. A process that ends during the scan is not counted.
fn count_processes(blocks: &[TrackProcess]) -> Vec<u32> {
    let mut counts = vec![0u32; blocks.len()];
    let need_cmdline = blocks.iter().any(|b| b.full_command);
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return counts;
    };
    let mut stat = Vec::with_capacity(512);
    let mut cmdline = Vec::with_capacity(512);
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        stat.clear();
        let read = std::fs::File::open(format!("/proc/{pid}/stat"))
            .and_then(|f| f.take(1024).read_to_end(&mut stat));
        if read.is_err() {
            continue;
        }
        // `PID (COMM) STATE ...`: the name may hold spaces and parentheses, so it runs to
        // the last `)`.
        let (Some(open), Some(close)) = (
            stat.iter().position(|&b| b == b'('),
            stat.iter().rposition(|&b| b == b')'),
        ) else {
            continue;
        };
        if close < open || matches!(stat.get(close + 2), Some(b'Z' | b'X')) {
            continue;
        }
        let comm = &stat[open + 1..close];
        cmdline.clear();
        if need_cmdline {
            let _ = std::fs::File::open(format!("/proc/{pid}/cmdline"))
                .and_then(|f| f.take(CMDLINE_READ_LIMIT).read_to_end(&mut cmdline));
        }
        let text = cmdline.strip_suffix(&[0]).unwrap_or(&cmdline);
        let argv: Vec<&[u8]> = if text.is_empty() {
            Vec::new()
        } else {
            text.split(|&b| b == 0).collect()
        };
        let process = RunningProcess { comm, argv: &argv };
        for (block, count) in blocks.iter().zip(counts.iter_mut()) {
            if matches(block, &process) {
                *count += 1;
            }
        }
    }
    counts
}
