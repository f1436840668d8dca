//! Notify scripts (keepalived's `notify_master`, `notify_backup`,
//! `notify_fault`, `notify_stop` and `notify`), run on every state change the
//! VRRP driver reports on its event channel.
//!
//! - `notify_STATE` runs with the arguments written in the configuration;
//!   `notify` gets keepalived's four appended: `INSTANCE NAME STATE PRIORITY`
//!   (`GROUP NAME STATE 0` for sync groups, as keepalived 2.x):
//!   [`haldir_director::notify`] decides what runs.
//! - Scripts run as `script_user` (see `haldir_health::misc`: no shell, no
//!   supplementary groups, stdio on /dev/null, own process group) and are
//!   killed with their process group at `notify_timeout`. A root haldir, which
//!   keeps only the network capabilities after start, has them started by its
//!   script launcher (`src/privilege.rs`, `haldir_health::launcher`).
//! - With `enable_script_security` a script anyone but root can change is
//!   refused at `haldir check`, start and reload (configuration validation), and again
//!   before each run (see `src/script_security.rs` for the rules).
//! - Nothing here holds the state machine up: the driver only sends an event;
//!   this task starts each script in its own task at once, so a hanging script
//!   delays neither the next transition nor the next script.
//! - On shutdown the task runs the scripts of the final transitions (STOP) and
//!   waits for the running ones, each bounded by its timeout.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use haldir_config::{Model, NotifyScripts, ScriptSettings};
use haldir_director::notify::{commands_for, group_commands, group_entered, notify_state};
use haldir_health::misc::{MiscCheck, MiscCheckConfig, MiscCommand};
use haldir_health::{CheckOutcome, Checker};
use haldir_vrrp::driver::InstanceTransition;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::counters::DaemonCounters;

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

/// Runs the notify scripts for the transitions on `events`, with the
/// configuration on `config`, until the driver closes the channel; then
/// waits for the scripts still running.
pub async fn run(
    mut events: broadcast::Receiver<InstanceTransition>,
    running: watch::Receiver<Model>,
    counters: Arc<DaemonCounters>,
) {
    let mut scripts: JoinSet<()> = JoinSet::new();
    // The last notified state of each instance and of each sync group.
    let mut instance_states: BTreeMap<String, &'static str> = BTreeMap::new();
    let mut group_states: BTreeMap<String, &'static str> = BTreeMap::new();
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            // Reap finished scripts as we go.
            Some(_) = scripts.join_next(), if !scripts.is_empty() => continue,
        };
        match event {
            Ok(event) => {
                let Some(state) = notify_state(event.to, event.reason) else {
                    continue;
                };
                instance_states.insert(event.name.clone(), state);
                let groups = group_scripts(
                    &running.borrow(),
                    &event.name,
                    state,
                    &instance_states,
                    &mut group_states,
                );
                for (group, what, argv) in groups {
                    scripts.spawn(run_one(
                        group,
                        what,
                        argv,
                        running.borrow().scripts.clone(),
                        counters.clone(),
                    ));
                }
                let current = NotifyConfig::from_model(&running.borrow());
                let Some(instance_scripts) = current.instances.get(&event.name) else {
                    continue;
                };
                let commands = match commands_for(
                    instance_scripts,
                    "INSTANCE",
                    &event.name,
                    state,
                    Some(event.priority),
                ) {
                    Ok(commands) => commands,
                    Err(e) => {
                        warn!(instance = %event.name, "cannot run a notify script: {e}");
                        continue;
                    }
                };
                for (what, argv) in commands {
                    scripts.spawn(run_one(
                        event.name.clone(),
                        what,
                        argv,
                        current.settings.clone(),
                        counters.clone(),
                    ));
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                counters.notify_missed.fetch_add(missed, Ordering::Relaxed);
                warn!(missed, "notify: transitions were missed (too many at once)");
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
    while scripts.join_next().await.is_some() {}
}

/// The scripts of the sync group that `instance` entering `state` makes enter it, if any,
/// logged; a command line that cannot be split is logged and skipped.
fn group_scripts(
    model: &Model,
    instance: &str,
    state: &'static str,
    instance_states: &BTreeMap<String, &'static str>,
    group_states: &mut BTreeMap<String, &'static str>,
) -> Vec<(String, &'static str, Vec<String>)> {
    let Some(group) = group_entered(
        &model.sync_groups,
        instance,
        state,
        instance_states,
        group_states,
    ) else {
        return Vec::new();
    };
    info!(group = %group.name, state, "sync group entered {state}");
    match group_commands(&group.notify, &group.name, state) {
        Ok(commands) => commands
            .into_iter()
            .map(|(what, argv)| (group.name.clone(), what, argv))
            .collect(),
        Err(e) => {
            warn!(group = %group.name, "cannot run a notify script: {e}");
            Vec::new()
        }
    }
}

/// Runs one script to its end or its timeout.
async fn run_one(
    instance: String,
    what: &'static str,
    argv: Vec<String>,
    settings: ScriptSettings,
    counters: Arc<DaemonCounters>,
) {
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
