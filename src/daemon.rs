//! `haldir run`: builds the VRRP driver's instances from the validated model,
//! wires the signals (SIGTERM / SIGINT: graceful stop; SIGHUP: reload) and
//! publishes the live status as a JSON file for operators and tests.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use haldir_config::Model;
use haldir_director::vrrp_specs::{instance_specs, sync_group_specs};
use haldir_ipvs::apply::{ReconcileReport, Reconciler};
use haldir_ipvs::{IpvsClient, IpvsError, KeeperHooks, ServiceKey};
use haldir_vrrp::driver::{self, DriverCommand, InstanceSpec, Status};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::control::ReloadOutcome;
use crate::options::RunOptions;

/// Real server and quorum changes waiting for the notify task; more are dropped and
/// counted there (a burst of this size means the whole table changed at once).
const LVS_NOTICES: usize = 4096;

/// Runs the daemon until SIGTERM or SIGINT, then stops gracefully. SIGHUP
/// reloads `options.config_path`.
pub async fn run(model: Model, options: RunOptions) -> anyhow::Result<()> {
    let specs: Vec<InstanceSpec> = instance_specs(&model);
    let (status_tx, status_rx) = watch::channel(Status::default());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (commands_tx, commands_rx) = mpsc::channel(4);
    // Operator tools (src/control.rs, metrics.rs, notify.rs, live.rs).
    // One copy of the model, shared by every task: at 10,000 virtual servers a copy is
    // megabytes.
    let model = std::sync::Arc::new(model);
    let (running_tx, running_rx) = watch::channel(std::sync::Arc::clone(&model));
    let counters = std::sync::Arc::new(crate::counters::DaemonCounters::default());
    let (events_tx, events_rx) = broadcast::channel(1024);
    let (control_tx, mut control_rx) = mpsc::channel::<crate::control::ControlRequest>(4);
    // The bulk resync's status (src/bulk_resync.rs publishes it).
    let (resync_tx, resync_rx) = watch::channel(haldir_ipvs::resync::ResyncStatus::default());
    // Real server and quorum changes, from the health wiring to the notify task.
    let (lvs_notices_tx, lvs_notices_rx) = mpsc::channel(LVS_NOTICES);
    // The VRRP links' heartbeats: the systemd watchdog is fed while they are fresh.
    let heartbeats = std::sync::Arc::new(driver::Heartbeats::default());
    // The BGP announcement of the VIPs (src/announce.rs) and its stop: `withdraw` is raised
    // when the stop begins, `withdrawn` once every VIP is off the interface.
    let (announce_status_tx, announce_status_rx) = watch::channel(Default::default());
    let (withdraw_tx, withdraw_rx) = watch::channel(false);
    let (withdrawn_tx, mut withdrawn_rx) = watch::channel(false);
    // The BGP sessions as bgpd reports them over BMP (src/bmp.rs, `[announce] bmp_listen`).
    let (bgp_tx, bgp_rx) = watch::channel(None);
    let operator = crate::operator::start(
        &options,
        running_rx,
        status_rx.clone(),
        events_rx,
        control_tx,
        counters.clone(),
        shutdown_rx.clone(),
        resync_rx.clone(),
        lvs_notices_rx,
        heartbeats.clone(),
        announce_status_rx,
        bgp_rx,
    )
    .await?;
    // Started as root: from here on only CAP_NET_ADMIN + CAP_NET_RAW (src/privilege.rs);
    // the control socket and the metrics port are bound, scripts go through the launcher.
    if let Some(user) = &options.user {
        // haldir's own directories become the user's: dumps, the ownership file, the
        // control socket's default place, the replay state.
        for dir in [
            options.dump_dir.as_path(),
            std::path::Path::new(haldir_ipvs::ownership::STATE_DIR),
            options.state_dir.as_path(),
        ] {
            user.own_dir(dir)?;
        }
    }
    // The start's reading of the configuration is dropped on a thread of its own
    // (src/memory.rs), which must be done before the privileges go.
    crate::memory::wait_released();
    crate::privilege::drop_to_network_only(
        crate::privilege::needs_bind_service(&model),
        options.user.as_ref(),
    )
    .context("dropping privileges")?;
    launcher_fault_hook();
    let mut operator = operator;
    operator.start_live_reader();
    for line in haldir_director::script_security::warnings(&model) {
        warn!("{line}");
    }

    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;

    if let Some(path) = options.status_file.clone() {
        tokio::spawn(publish_status(status_rx, resync_rx, path));
    }
    // Freed memory back to the system after a reload, a large IPVS round or answer.
    tokio::spawn(crate::memory::run_releases(shutdown_rx.clone()));
    // Health checks (src/health_wiring.rs) follow the running model and turn it into the
    // desired IPVS table; tracked scripts move the instances' priorities. The real-server
    // checks start once the first IPVS round is done (`table_programmed`; closed when
    // IPVS cannot start).
    let (table_programmed_tx, table_programmed_rx) = watch::channel(false);
    let (desired_rx, quorum_rx, health) = crate::health_wiring::spawn(
        running_tx.subscribe(),
        commands_tx.clone(),
        lvs_notices_tx,
        counters.clone(),
        table_programmed_rx.clone(),
        shutdown_rx.clone(),
    );
    // The IPVS keeper on a thread of its own (src/own_thread.rs): a start's table is
    // seconds of kernel work inside `sendmsg` at 10,000 virtual servers (50,000
    // operations), which must not hold up the adverts. It starts on the table the health
    // wiring made before its first apply (every real server at its initial verdict), and
    // the wiring builds a start's checkers once that table is programmed.
    let ipvs = {
        let (counters, identity) = (counters.clone(), ownership_identity(&options));
        let (resync, shutdown) = (options.ipvs_resync, shutdown_rx.clone());
        crate::own_thread::spawn("the IPVS keeper", move || {
            haldir_ipvs::keep_in_step(
                desired_rx,
                start_ipvs(counters, identity, table_programmed_tx),
                resync,
                shutdown,
            )
        })
    };
    if let Some(user) = options.user.clone() {
        tokio::spawn(warn_if_reload_unreadable(
            user,
            (options.config_path.clone(), options.config_format),
            table_programmed_rx,
            !model.virtual_servers.is_empty(),
        ));
    }
    // The kernel's connection-sync daemon follows the instance named in
    // lvs_sync_daemon (src/sync_daemon.rs).
    let (sync_roles_tx, sync_roles_rx) = watch::channel(Vec::new());
    let sync_daemon = crate::sync_daemon::spawn(
        running_tx.subscribe(),
        status_tx.subscribe(),
        events_tx.subscribe(),
        shutdown_rx.clone(),
        sync_roles_tx,
    );
    // Bulk resync of the connection table between haldir routers
    // (src/bulk_resync.rs), following the sync daemon's role.
    // Its preemption hold is in place before the instances start.
    let held_at_start = crate::bulk_resync::held_at_start(&model);
    // auth_hmac's send sequences and replay marks, kept across restarts (src/replay_state.rs).
    let replay_store = std::sync::Arc::new(haldir_vrrp::auth::ReplayStore::default());
    let replay_path =
        crate::replay_state::path_for(&options.state_dir, ownership_identity(&options).as_deref());
    replay_store.load(crate::replay_state::load(
        &replay_path,
        &crate::replay_state::instance_names(&model),
    ));
    let replay_writer = crate::replay_state::spawn_writer(
        replay_store.clone(),
        replay_path.clone(),
        running_tx.subscribe(),
        shutdown_rx.clone(),
    );
    let bulk_resync = crate::bulk_resync::spawn(
        running_tx.subscribe(),
        sync_roles_rx,
        status_tx.subscribe(),
        commands_tx.clone(),
        shutdown_rx.clone(),
        held_at_start.clone(),
        resync_tx,
    );
    // keepalived's static addresses, routes and rules (src/statics.rs).
    let statics = crate::statics::spawn(running_tx.subscribe(), shutdown_rx.clone());
    let lvs_timeouts = crate::lvs_timeouts::spawn(running_tx.subscribe(), shutdown_rx.clone());
    // `[announce]`'s sloppy_tcp / sloppy_sctp sysctls (src/ipvs_sysctl.rs).
    let ipvs_sysctl = crate::ipvs_sysctl::spawn(running_tx.subscribe(), shutdown_rx.clone());
    // `[announce]`: the VIPs' addresses on the announce interface by health, for FRR.
    let announce = crate::announce::spawn(crate::announce::Channels {
        running: running_tx.subscribe(),
        quorum: quorum_rx,
        withdraw: withdraw_rx,
        withdrawn: withdrawn_tx,
        shutdown: shutdown_rx.clone(),
        status: announce_status_tx,
    });
    let bmp = crate::bmp::spawn(running_tx.subscribe(), shutdown_rx.clone(), bgp_tx);
    // Every long-lived task is watched: one that ends before the stop (a panic, an early
    // return) stops haldir the way SIGTERM does, and the exit status says it failed, so
    // that systemd restarts it. A half-dead daemon could keep VIPs it no longer defends.
    let mut supervised = futures::stream::FuturesUnordered::new();
    for (name, task) in [
        ("health checks", health),
        ("IPVS", ipvs),
        ("sync daemon", sync_daemon),
        ("bulk resync", bulk_resync),
        ("static addresses", statics),
        ("lvs_timeouts", lvs_timeouts),
        ("IPVS sysctls", ipvs_sysctl),
        ("announce", announce),
        ("BMP collector", bmp),
        ("auth_hmac replay state", replay_writer),
    ] {
        supervised.push(async move { (name, task.await) });
    }
    let driver = tokio::spawn(driver::run_with_events(
        specs,
        status_tx,
        commands_rx,
        shutdown_rx,
        Some(events_tx),
        driver::Shared {
            held_at_start: held_at_start.into_iter().collect(),
            heartbeats,
            replay: replay_store.clone(),
        },
    ));
    tokio::pin!(driver);
    // Queued behind the start: the driver reads it once its instances run.
    let _ = commands_tx
        .send(DriverCommand::SetSyncGroups(sync_group_specs(&model)))
        .await;
    crate::operator::ready(&model);
    let mut failure: Option<anyhow::Error> = None;
    let mut driver_ended = false;
    loop {
        tokio::select! {
            // The driver first: when it fails, the tasks fed by it end too, and its error
            // is the one that says why.
            biased;
            result = &mut driver => {
                // The driver returns early when it cannot start, or when a link failed
                // (its instances resigned already).
                driver_ended = true;
                failure = Some(match result {
                    Ok(Ok(())) => anyhow::anyhow!("the VRRP driver ended"),
                    Ok(Err(e)) => anyhow::Error::new(e),
                    Err(e) => anyhow::anyhow!("the VRRP driver panicked: {e}"),
                });
                break;
            }
            Some((name, outcome)) = futures::StreamExt::next(&mut supervised) => {
                let why = match outcome {
                    Ok(()) => format!("the {name} task ended"),
                    Err(e) => format!("the {name} task failed: {e}"),
                };
                failure = Some(anyhow::anyhow!(why));
                break;
            }
            why = operator.notify_ended() => {
                failure = Some(anyhow::anyhow!(why));
                break;
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                info!(config = %options.config_path.display(), "SIGHUP: reloading");
                crate::systemd::reloading();
                reload(&options.config_path, options.config_format, &commands_tx, &running_tx).await;
                crate::systemd::ready("running");
            }
            Some(request) = control_rx.recv() => match request {
                crate::control::ControlRequest::Reload(reply) => {
                    info!(config = %options.config_path.display(), "haldir reload: reloading");
                    crate::systemd::reloading();
                    let outcome =
                        reload(&options.config_path, options.config_format, &commands_tx, &running_tx).await;
                    crate::systemd::ready("running");
                    let _ = reply.send(outcome);
                }
                crate::control::ControlRequest::HandOver { instances, cancel, reply } => {
                    info!(?instances, cancel, "haldir handover");
                    tokio::spawn(hand_over(commands_tx.clone(), instances, cancel, reply));
                }
            },
        }
    }
    match &failure {
        Some(why) => {
            error!("{why:#}: haldir stops (priority 0, addresses removed) and exits with an error")
        }
        None => info!(
            "stopping: sending priority 0; the virtual addresses go when the new master advertises"
        ),
    }
    crate::systemd::stopping();
    // Active-active: out of the routers' ECMP first, then the drain, then the rest stops.
    let drain = running_tx
        .borrow()
        .announce
        .as_ref()
        .map(|announce| announce.drain);
    if let Some(drain) = drain {
        withdraw_and_drain(
            &withdraw_tx,
            &mut withdrawn_rx,
            drain,
            (&mut terminate, &mut interrupt),
        )
        .await;
    }
    let _ = shutdown_tx.send(true);
    if !driver_ended {
        match driver.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failure.get_or_insert_with(|| anyhow::Error::new(e));
            }
            Err(e) => {
                failure.get_or_insert_with(|| anyhow::anyhow!("the VRRP driver panicked: {e}"));
            }
        }
    }
    // Nothing signs or verifies any more: the marks and sequences as they end.
    let running_model = running_tx.borrow().clone();
    crate::replay_state::write_last(&replay_store, &replay_path, &running_model).await;
    while let Some((name, outcome)) = futures::StreamExt::next(&mut supervised).await {
        if let Err(e) = outcome {
            warn!("the {name} task failed while stopping: {e}");
        }
    }
    // The notify scripts of the last transitions (STOP) run to their end or timeout.
    operator.finish().await;
    match failure {
        Some(why) => Err(why.context("haldir stopped because a part of it failed")),
        None => {
            info!("stopped");
            Ok(())
        }
    }
}

/// How long the stop waits for the announce task to withdraw every VIP (it is one netlink
/// request per VIP; a task that does not answer must not hold the stop).
const WITHDRAW_TIMEOUT: Duration = Duration::from_secs(2);

/// The stop of an active-active director (`[announce]`): every VIP withdrawn (its address
/// off the announce interface, so FRR withdraws the route), then `drain` while the routers
/// move the traffic and IPVS, the checks and VRRP keep running; a second SIGTERM or SIGINT
/// ends the drain early.
async fn withdraw_and_drain(
    withdraw: &watch::Sender<bool>,
    withdrawn: &mut watch::Receiver<bool>,
    drain: Duration,
    (terminate, interrupt): (
        &mut tokio::signal::unix::Signal,
        &mut tokio::signal::unix::Signal,
    ),
) {
    let _ = withdraw.send(true);
    // The guard `wait_for` returns is dropped at once: held, it would block the announce
    // task's next write of `withdrawn`.
    let confirmed = matches!(
        tokio::time::timeout(WITHDRAW_TIMEOUT, withdrawn.wait_for(|done| *done)).await,
        Ok(Ok(_))
    );
    if confirmed {
        info!(
            drain_ms = drain.as_millis() as u64,
            "every VIP withdrawn from BGP; draining before the stop"
        );
    } else {
        warn!(
            drain_ms = drain.as_millis() as u64,
            "the VIPs' withdrawal did not confirm within {WITHDRAW_TIMEOUT:?}; draining anyway"
        );
    }
    tokio::select! {
        () = tokio::time::sleep(drain) => info!("drain over: stopping"),
        _ = terminate.recv() => warn!("SIGTERM again: the drain is cut short"),
        _ = interrupt.recv() => warn!("SIGINT: the drain is cut short"),
    }
}

/// `haldir handover`: asks the driver and passes its answer on (the driver
/// answers once the links have carried the handover out).
async fn hand_over(
    driver: mpsc::Sender<DriverCommand>,
    instances: Option<Vec<String>>,
    cancel: bool,
    reply: oneshot::Sender<Result<Vec<String>, String>>,
) {
    let (answer, answered) = oneshot::channel();
    let command = DriverCommand::HandOver {
        instances,
        cancel,
        reply: answer,
    };
    let outcome = match driver.send(command).await {
        Ok(()) => answered
            .await
            .unwrap_or_else(|_| Err("haldir is stopping".into())),
        Err(_) => Err("haldir is stopping".into()),
    };
    match &outcome {
        Ok(names) if cancel => info!(instances = ?names, "handover cancelled"),
        Ok(names) => info!(instances = ?names, "handed over"),
        Err(e) => warn!("handover refused: {e}"),
    }
    let _ = reply.send(outcome);
}

/// A test-only fault hook: `HALDIR_TEST_FAULT=launcher_spawn:UID:PROGRAM:ARG` (several
/// separated by `;`) makes the daemon ask its script launcher to start `PROGRAM ARG` as
/// UID (and the same gid) once, at start, and log the answer: tests/capabilities.rs shows
/// with it that the launcher refuses what the configuration's scripts do not need. Unset,
/// as in any real run, it does nothing.
fn launcher_fault_hook() {
    let Ok(spec) = std::env::var("HALDIR_TEST_FAULT") else {
        return;
    };
    let Some(launcher) = haldir_health::launcher::client() else {
        return;
    };
    for fault in spec.split(';') {
        let mut parts = fault.splitn(4, ':');
        let (Some("launcher_spawn"), Some(uid), Some(program), Some(arg)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Ok(uid) = uid.parse::<u32>() else {
            continue;
        };
        let argv = vec![program.into(), arg.into()];
        tokio::spawn(async move {
            let outcome = launcher.spawn(uid, uid, argv).wait().await;
            warn!(?outcome, "HALDIR_TEST_FAULT launcher_spawn as uid {uid}");
        });
    }
}

/// Reads and validates the configuration again and, if it is valid, applies
/// only the difference. An invalid file changes nothing: every error is logged
/// and the running configuration stays.
pub async fn reload(
    path: &std::path::Path,
    format: haldir_config::Format,
    driver: &mpsc::Sender<DriverCommand>,
    running: &watch::Sender<std::sync::Arc<Model>>,
) -> ReloadOutcome {
    // On the blocking pool: reading and validating a file (scripts, users, paths) is
    // work the runtime thread must not do while it also times the adverts.
    // With a script launcher, whether the new file's scripts differ from the running
    // ones' (users and programs resolved here too: NSS and file lookups).
    let launcher = haldir_health::launcher::client();
    let loaded = tokio::task::spawn_blocking({
        let path = path.to_owned();
        let running_model = launcher.is_some().then(|| running.borrow().clone());
        move || {
            // Read apart, so that the parse's garbage leaves nothing resident.
            let (loaded, warnings) = crate::memory::built_apart(|| {
                haldir_config::load_file_with_warnings(&path, format)
            });
            let scripts_changed = match (&loaded, running_model) {
                (Ok(new), Some(old)) => {
                    haldir_director::script_security::launcher_policy(new)
                        != haldir_director::script_security::launcher_policy(&old)
                }
                _ => false,
            };
            (loaded, warnings, scripts_changed)
        }
    })
    .await;
    let (loaded, scripts_changed) = match loaded {
        Ok((loaded, warnings, scripts_changed)) => {
            // The same warnings `haldir run` logs at start: keywords accepted, not acted on.
            for warning in &warnings {
                warn!("{warning}");
            }
            (loaded, scripts_changed)
        }
        Err(e) => return ReloadOutcome::Rejected(vec![format!("reading the file failed: {e}")]),
    };
    let model = match loaded {
        Ok(model) => {
            for line in haldir_director::script_security::warnings(&model) {
                warn!("{line}");
            }
            // The script launcher (root-started haldir) reads the file itself and takes its
            // scripts as what it may start: the daemon cannot widen that on its own. Only
            // when they changed: the launcher's read is a second parse of the whole file.
            if let Some(launcher) = launcher.filter(|_| scripts_changed) {
                if let Err(e) = launcher.reload().await {
                    warn!("the script launcher kept its scripts (new ones will be refused): {e}");
                }
            }
            model
        }
        Err(errors) => {
            let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
            for line in &lines {
                error!("reload rejected: {line}");
            }
            warn!("reload rejected: the running configuration stays");
            return ReloadOutcome::Rejected(lines);
        }
    };
    let specs: Vec<InstanceSpec> = instance_specs(&model);
    let (reply, answer) = oneshot::channel();
    if driver
        .send(DriverCommand::Reload { specs, reply })
        .await
        .is_err()
    {
        return ReloadOutcome::Rejected(vec!["the VRRP driver is not running".into()]);
    }
    match answer.await {
        Ok(Ok(report)) => {
            let _ = driver
                .send(DriverCommand::SetSyncGroups(sync_group_specs(&model)))
                .await;
            info!(
                kept = ?report.kept,
                updated = ?report.updated,
                replaced = ?report.replaced,
                added = ?report.added,
                removed = ?report.removed,
                "reloaded"
            );
            // The IPVS side diffs the table itself: only changed entries are touched.
            drop(running.send_replace(std::sync::Arc::new(model)));
            // The parse's garbage and the replaced model and table back to the system.
            crate::memory::release_soon();
            ReloadOutcome::Applied(report)
        }
        Ok(Err(e)) => {
            error!("reload failed, nothing changed: {e}");
            ReloadOutcome::Rejected(vec![e.to_string()])
        }
        Err(_) => ReloadOutcome::Rejected(vec!["the VRRP driver stopped".into()]),
    }
}

/// A reload re-reads the configuration as `user` (`--user`): says once, at the start, if it
/// could not. The check reads the file again, and parses it whole when it names other
/// files (megabytes, and a second of emulated CPU at 10,000 virtual servers), so with
/// virtual servers configured it waits until the start's IPVS table is programmed, IPVS could not
/// start (`table_programmed` closed), or the health checks' wait for it is over
/// ([`crate::health_wiring::FIRST_CHECKS_WAIT_AT_MOST`]): it does not take CPU from the
/// start.
async fn warn_if_reload_unreadable(
    user: crate::privilege::DaemonUser,
    (path, format): (PathBuf, haldir_config::Format),
    mut table_programmed: watch::Receiver<bool>,
    has_virtual_servers: bool,
) {
    if has_virtual_servers {
        let _ = tokio::time::timeout(
            crate::health_wiring::FIRST_CHECKS_WAIT_AT_MOST,
            table_programmed.wait_for(|programmed| *programmed),
        )
        .await;
    }
    let problem = tokio::task::spawn_blocking(move || reload_read_problem(&path, format)).await;
    if let Ok(Some(errors)) = problem {
        warn!(
            "as user {}, haldir cannot read its configuration again, so a reload would fail \
             (give the user read access to the file, its includes and key files): {errors}",
            user.name
        );
    }
}

/// Why a reload, reading as this process's user, would fail to read the configuration,
/// if it would. A file that names no other file (no `include`, no `file:` key, no
/// `ca_file`, no `$` parameter that could spell one) only needs to be readable; any other
/// is read and validated again (a second parse: at 10,000 virtual servers that doubled the
/// CPU of a start, issue 16).
fn reload_read_problem(path: &std::path::Path, format: haldir_config::Format) -> Option<String> {
    use std::io::BufRead as _;
    let unreadable = |e: std::io::Error| Some(format!("{}: {e}", path.display()));
    // Line by line, one line held at a time: at 10,000 virtual servers the file is
    // megabytes, and a copy of it read as the start's table completes was the daemon's
    // resident size at that moment.
    let mut reader = match std::fs::File::open(path) {
        Ok(file) => std::io::BufReader::new(file),
        Err(e) => return unreadable(e),
    };
    let mut line = Vec::new();
    let names_other_files = loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break false,
            Ok(_) => {}
            Err(e) => return unreadable(e),
        }
        let names = [&b"include"[..], b"file:", b"ca_file", b"$"]
            .iter()
            .any(|word| line.windows(word.len()).any(|at| at == *word));
        if names {
            break true;
        }
    };
    if !names_other_files {
        return None;
    }
    haldir_config::load_file_with_warnings(path, format)
        .0
        .err()
        .map(|errors| errors.to_string())
}

/// Connects to IPVS once a virtual server is configured (called by
/// [`haldir_ipvs::keep_in_step`]), owning the services a previous run owned
/// (the configuration may since have dropped them, and that run may have been
/// killed before deleting them). `None` when the kernel has no IPVS for us.
async fn start_ipvs(
    counters: std::sync::Arc<crate::counters::DaemonCounters>,
    identity: Option<String>,
    table_programmed: watch::Sender<bool>,
) -> Option<(Reconciler<haldir_ipvs::drift::WatchedClient>, IpvsRounds)> {
    let client = match IpvsClient::connect().await {
        Ok(client) => client,
        Err(e) => {
            error!("{e}: the virtual servers are not programmed; VRRP runs on");
            return None;
        }
    };
    let (ownership, previously_owned) = haldir_ipvs::ownership::OwnershipFile::open(
        haldir_ipvs::ownership::path_for(identity.as_deref()),
    );
    // Drift repair reads only the services whose /proc/net/ip_vs lines changed.
    let client = haldir_ipvs::drift::WatchedClient::new(client);
    let reconciler = Reconciler::with_owned(client, previously_owned);
    Some((
        reconciler,
        IpvsRounds {
            ownership,
            counters,
            table_programmed,
        },
    ))
}

/// What tells this daemon's IPVS ownership file from another haldir's in the same
/// namespace (`haldir_ipvs::ownership::path_for`): its control socket path; the config
/// path when it has no control socket; `None` (the name files had before) on the default
/// control socket.
fn ownership_identity(options: &RunOptions) -> Option<String> {
    match &options.control_socket {
        Some(socket) if socket == std::path::Path::new(crate::control::DEFAULT_SOCKET) => None,
        Some(socket) => Some(format!("control {}", socket.display())),
        None => Some(format!("config {}", options.config_path.display())),
    }
}

/// Where the IPVS rounds go: the ownership file (`haldir_ipvs::ownership`), the
/// counters of `/metrics`, and the health wiring, whose real-server checks wait for the
/// first round.
struct IpvsRounds {
    ownership: haldir_ipvs::ownership::OwnershipFile,
    counters: std::sync::Arc<crate::counters::DaemonCounters>,
    table_programmed: watch::Sender<bool>,
}

impl KeeperHooks for IpvsRounds {
    fn will_own(&mut self, owned: &BTreeSet<ServiceKey>) {
        // Written before any service can be created, so a crash cannot leave an owned
        // service the file does not know.
        self.ownership.update(owned);
    }

    fn round_done(
        &mut self,
        owned: &BTreeSet<ServiceKey>,
        outcome: &Result<ReconcileReport, IpvsError>,
    ) {
        self.ownership.update(owned);
        // Whatever the round did: a refused operation is retried, the checks run on.
        self.table_programmed
            .send_if_modified(|done| !std::mem::replace(done, true));
        match outcome {
            Ok(report) => self
                .counters
                .count_reconcile(&report.ops, report.failures.len()),
            Err(_) => self.counters.count_read_error(),
        }
        // A round's garbage goes back to the system rather than into the resident size
        // for good: a large round's requests and replies (50,000 operations at 10,000
        // virtual servers: tens of MB), a drift round's read of the kernel's table and
        // the known table it replaced (about 3 MB at 10,000 virtual servers, every 10 s).
        // At once: the round is over and nothing else of it is coming, and waiting for
        // things to settle kept each drift round's 3 MB resident for 2 s more (2 s of
        // every 10 in the scale bench's samples). Rounds are paced to at most 1 % of a
        // core, and a release costs a fraction of a round.
        crate::memory::release_now();
    }
}

/// Rewrites `path` (atomically, through a rename; [`crate::dumps::write_atomically_with`])
/// whenever the status changes.
async fn publish_status(
    mut status: watch::Receiver<Status>,
    mut resync: watch::Receiver<haldir_ipvs::resync::ResyncStatus>,
    path: PathBuf,
) {
    loop {
        let text =
            crate::status::status_file(&status.borrow_and_update(), &resync.borrow_and_update())
                .render();
        // On the blocking pool: this runtime also runs the VRRP timers, and a write or
        // rename can stall for a long time on a busy disk (journal commits).
        // Through an exclusive temporary that never follows a planted link (0644:
        // operators' tools read it).
        let written = tokio::task::spawn_blocking({
            let path = path.clone();
            move || crate::dumps::write_atomically_with(&path, &text, 0o644, false)
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(path = %path.display(), "cannot write the status file: {e}"),
            Err(e) => warn!(path = %path.display(), "writing the status file failed: {e}"),
        }
        let changed = tokio::select! {
            changed = status.changed() => changed,
            // The bulk-resync task may end first: its last status stays.
            Ok(()) = resync.changed() => Ok(()),
        };
        if changed.is_err() {
            return;
        }
        // Coalesce bursts of changes (an advert every 10 ms changes counters).
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reload_read_check_parses_only_a_file_that_names_other_files() {
        let dir = std::env::temp_dir().join(format!("haldir-read-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = dir.join("plain.conf");
        // Not valid, but naming no other file: only read, so no error to report.
        std::fs::write(&plain, "vrrp_instance VI_1 {\n    no_such_keyword 1\n}\n").unwrap();
        assert_eq!(
            reload_read_problem(&plain, haldir_config::Format::Keepalived),
            None
        );
        // An include of a file that is not there: parsed, and the parse's error reported.
        let including = dir.join("including.conf");
        std::fs::write(&including, "global_defs {\n}\ninclude missing.conf\n").unwrap();
        let problem = reload_read_problem(&including, haldir_config::Format::Keepalived);
        assert!(
            problem
                .as_deref()
                .is_some_and(|p| p.contains("missing.conf")),
            "{problem:?}"
        );
        let absent = dir.join("absent.conf");
        let problem = reload_read_problem(&absent, haldir_config::Format::Keepalived);
        assert!(
            problem
                .as_deref()
                .is_some_and(|p| p.contains("absent.conf")),
            "{problem:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
