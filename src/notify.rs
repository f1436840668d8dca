//! Notify scripts (keepalived's `notify_master`, `notify_backup`,
//! `notify_fault`, `notify_stop` and `notify`) and notify FIFOs, for every state change
//! the VRRP driver reports on its event channel and every real server or quorum change
//! the health wiring reports.
//!
//! - A real server's `notify_up` / `notify_down` and a virtual server's `quorum_up` /
//!   `quorum_down` run, with the arguments written, when the health wiring reports the
//!   change, in the same queue.
//! - `notify_STATE` runs with the arguments written in the configuration;
//!   `notify` gets keepalived's four appended: `INSTANCE NAME STATE PRIORITY`
//!   (`GROUP NAME STATE 0` for sync groups, as keepalived 2.x):
//!   [`haldir_director::notify`] decides what runs and what a FIFO line says.
//! - Scripts run in the order of the events, one at a time: the next starts when the
//!   last has exited or was killed at `notify_timeout` (keepalived starts them at once,
//!   so that a quick MASTER → BACKUP could run its scripts in either order; a script
//!   written for keepalived sees no difference but the order).
//! - Scripts run as `script_user` (see `haldir_health::misc`: no shell, no
//!   supplementary groups, stdio on /dev/null, own process group) and are
//!   killed with their process group at `notify_timeout`. A root haldir, which
//!   keeps only the network capabilities after start, has them started by its
//!   script launcher (`src/privilege.rs`, `haldir_health::launcher`).
//! - With `enable_script_security` a script anyone but root can change is
//!   refused at `haldir check`, start and reload (configuration validation), and again
//!   before each run (see `src/script_security.rs` for the rules).
//! - This task is the one writer of the notify FIFOs ([`crate::notify_fifo`]): a line is
//!   written when its event arrives, before any script of it runs, so a FIFO's reader
//!   sees every transition in order even while a script hangs.
//! - Nothing here holds the state machine up: the driver only sends an event, and
//!   scripts wait in a queue of this task's.
//! - On shutdown the task writes the final transitions (STOP) to the FIFOs, closes them,
//!   then runs the scripts still queued, the STOP ones last.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use haldir_config::{Model, NotifyScripts, ScriptSettings};
use haldir_director::notify::{
    commands_for, fifo_vrrp_line, group_commands, group_entered, notify_state,
};
use haldir_health::misc::{MiscCheck, MiscCheckConfig, MiscCommand};
use haldir_health::{CheckOutcome, Checker};
use haldir_vrrp::driver::InstanceTransition;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{info, warn};

use crate::counters::DaemonCounters;
use crate::notify_fifo::{FifoSet, LineKind};

/// The notify configuration the task runs with; replaced on reload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyConfig {
    /// `script_user`, `notify_timeout`.
    pub settings: ScriptSettings,
    /// Each instance's scripts, by instance name.
    pub instances: BTreeMap<String, NotifyScripts>,
}

impl NotifyConfig {
    /// The notify part of a configuration.
    pub fn from_model(model: &Model) -> Self {
        NotifyConfig {
            settings: model.scripts.clone(),
            instances: model
                .vrrp_instances
                .iter()
                .filter(|i| i.notify.iter().next().is_some())
                .map(|i| (i.name.clone(), i.notify.clone()))
                .collect(),
        }
    }
}

/// A real server or virtual server change the health wiring reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvsNotice {
    /// The notify FIFO line (`RS ... UP`, `VS ... DOWN`).
    pub fifo_line: String,
    /// The script to run for it, if one is configured: (`notify_up`, `notify_down`,
    /// `quorum_up` or `quorum_down`; its command line).
    pub script: Option<(&'static str, String)>,
}

/// The last notified state (and priority) of each instance, by name.
type InstanceStates = BTreeMap<String, (&'static str, u8)>;
/// The last notified state of each sync group, by name.
type GroupStates = BTreeMap<String, &'static str>;
/// Command lines to run: (which script, argv).
type Commands = Vec<(&'static str, Vec<String>)>;

/// One script waiting for its turn.
struct QueuedScript {
    /// The instance or group it is for.
    owner: String,
    what: &'static str,
    argv: Vec<String>,
    settings: ScriptSettings,
}

/// Runs the notify scripts and writes the FIFO lines for the transitions on `events` and
/// the changes on `lvs`, with the configuration on `running`, until the driver closes
/// `events`; then closes the FIFOs and runs the scripts still queued.
pub async fn run(
    mut events: broadcast::Receiver<InstanceTransition>,
    mut lvs: mpsc::Receiver<LvsNotice>,
    mut running: watch::Receiver<std::sync::Arc<Model>>,
    mut fifos: FifoSet,
    counters: Arc<DaemonCounters>,
) {
    let mut queue: VecDeque<QueuedScript> = VecDeque::new();
    let mut current: Option<tokio::task::JoinHandle<()>> = None;
    // The last notified state (and priority) of each instance, and each sync group's.
    let mut instance_states = InstanceStates::new();
    let mut group_states = GroupStates::new();
    let (mut lvs_open, mut model_open) = (true, true);
    loop {
        if current.is_none() {
            current = queue
                .pop_front()
                .map(|s| tokio::spawn(run_one(s, counters.clone())));
        }
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => {
                    let Some(state) = notify_state(event.to, event.reason) else {
                        continue;
                    };
                    instance_states.insert(event.name.clone(), (state, event.priority));
                    transition(
                        &event,
                        state,
                        &running.borrow(),
                        (&instance_states, &mut group_states),
                        &mut fifos,
                        &mut queue,
                    );
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    counters.notify_missed.fetch_add(missed, Ordering::Relaxed);
                    warn!(missed, "notify: transitions were missed (too many at once)");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            notice = lvs.recv(), if lvs_open => match notice {
                Some(notice) => {
                    fifos.write(LineKind::Lvs, &notice.fifo_line);
                    if let Some((what, line)) = notice.script {
                        match haldir_health::misc::command_argv(&line) {
                            Ok(argv) => queue.push_back(QueuedScript {
                                owner: notice.fifo_line.trim_end().to_owned(),
                                what,
                                argv,
                                settings: running.borrow().scripts.clone(),
                            }),
                            Err(e) => warn!("cannot run {what} {line}: {e}"),
                        }
                    }
                }
                None => lvs_open = false,
            },
            _ = async { current.as_mut().expect("guarded").await }, if current.is_some() => {
                current = None;
            }
            changed = running.changed(), if model_open => {
                if changed.is_err() {
                    model_open = false;
                    continue;
                }
                let model = running.borrow_and_update().clone();
                fifos.reconfigure(&model.notify_fifos, &model.scripts).await;
                if model.notify_fifos.write_states_on_reload {
                    for (name, (state, priority)) in &instance_states {
                        fifos.write(LineKind::Vrrp, &fifo_vrrp_line("INSTANCE", name, state, *priority));
                    }
                    for (name, state) in &group_states {
                        fifos.write(LineKind::Vrrp, &fifo_vrrp_line("GROUP", name, state, 0));
                    }
                }
            }
        }
    }
    // The STOP lines are written; the FIFOs go before the scripts, whose timeouts may
    // outlast the time the daemon has to stop.
    fifos.close().await;
    if let Some(script) = current {
        let _ = script.await;
    }
    while let Some(script) = queue.pop_front() {
        run_one(script, counters.clone()).await;
    }
}

/// One transition: its FIFO lines (the instance's, then its sync group's if the group
/// enters the state with it) and its scripts, queued in the same order.
fn transition(
    event: &InstanceTransition,
    state: &'static str,
    model: &Model,
    (instance_states, group_states): (&InstanceStates, &mut GroupStates),
    fifos: &mut FifoSet,
    queue: &mut VecDeque<QueuedScript>,
) {
    fifos.write(
        LineKind::Vrrp,
        &fifo_vrrp_line("INSTANCE", &event.name, state, event.priority),
    );
    let states: BTreeMap<String, &'static str> = instance_states
        .iter()
        .map(|(name, (state, _))| (name.clone(), *state))
        .collect();
    let groups = group_scripts(model, &event.name, state, &states, group_states);
    let current = NotifyConfig::from_model(model);
    if let Some(instance_scripts) = current.instances.get(&event.name) {
        match commands_for(
            instance_scripts,
            "INSTANCE",
            &event.name,
            state,
            Some(event.priority),
        ) {
            Ok(commands) => queue.extend(commands.into_iter().map(|(what, argv)| QueuedScript {
                owner: event.name.clone(),
                what,
                argv,
                settings: current.settings.clone(),
            })),
            Err(e) => warn!(instance = %event.name, "cannot run a notify script: {e}"),
        }
    }
    if let Some((group, commands)) = groups {
        fifos.write(LineKind::Vrrp, &fifo_vrrp_line("GROUP", &group, state, 0));
        queue.extend(commands.into_iter().map(|(what, argv)| QueuedScript {
            owner: group.clone(),
            what,
            argv,
            settings: model.scripts.clone(),
        }));
    }
}

/// The sync group that `instance` entering `state` makes enter it, if any (logged), with
/// its scripts; a command line that cannot be split is logged and skipped.
fn group_scripts(
    model: &Model,
    instance: &str,
    state: &'static str,
    instance_states: &BTreeMap<String, &'static str>,
    group_states: &mut BTreeMap<String, &'static str>,
) -> Option<(String, Commands)> {
    let group = group_entered(
        &model.sync_groups,
        instance,
        state,
        instance_states,
        group_states,
    )?;
    info!(group = %group.name, state, "sync group entered {state}");
    let commands = group_commands(&group.notify, &group.name, state).unwrap_or_else(|e| {
        warn!(group = %group.name, "cannot run a notify script: {e}");
        Vec::new()
    });
    Some((group.name.clone(), commands))
}

/// Runs one script to its end or its timeout.
async fn run_one(script: QueuedScript, counters: Arc<DaemonCounters>) {
    let QueuedScript {
        owner: instance,
        what,
        argv,
        settings,
    } = script;
    let check = match MiscCheck::new(MiscCheckConfig {
        command: MiscCommand::Exec(argv.clone()),
        timeout: settings.notify_timeout,
        dynamic: false,
        user: settings.user.clone(),
        group: settings.group.clone(),
        security: settings.security,
    }) {
        Ok(check) => check,
        Err(e) => {
            counters.notify_failed.fetch_add(1, Ordering::Relaxed);
            warn!(%instance, script = what, "cannot run {}: {e}", argv.join(" "));
            return;
        }
    };
    let started = std::time::Instant::now();
    match check.check().await {
        CheckOutcome::Up | CheckOutcome::UpWithWeight(_) => {
            counters.notify_ok.fetch_add(1, Ordering::Relaxed);
            info!(
                %instance,
                script = what,
                user = %check.user().name,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "ran {}",
                argv.join(" ")
            );
        }
        CheckOutcome::Down(reason) => {
            if reason.contains("timed out after") {
                counters.notify_timeout.fetch_add(1, Ordering::Relaxed);
            } else {
                counters.notify_failed.fetch_add(1, Ordering::Relaxed);
            }
            warn!(%instance, script = what, user = %check.user().name, "{}: {reason}", argv.join(" "));
        }
    }
}
