//! SIGHUP reload while the appliance carries traffic, on the VM's real IPVS and sync
//! daemon (skipped, loudly, outside the VM; `bash tests/vm/run.sh a_reload` runs it).
//! The appliance is `haldir_lab::appliance` (client - gw - r1/r2 - rs1/rs2, DR service
//! VIP:7000, kernel sync daemon on eth1); the client holds [`CONNECTIONS`] long-lived
//! connections through the VIP, each exchanging a message every second and checking the
//! echo (under software emulation the VM carries a few hundred messages a second through
//! the appliance's hops, not the thousand that 100 connections at 100 ms would need).
//!
//! The reload changes what an operator changes: rs2's weight in VIP:7000 (1 → 3) and a
//! new virtual server VIP:7001. Proof from outside: `ipvsadm -Sn` in the router's
//! namespace equals the table written out here, before and after; the kernel's counters
//! of VIP:7000 (`ipvsadm -Ln --stats --exact`: a deleted and re-added service starts
//! again from zero) and its active connections (`ipvsadm -Ln`) carry on; and the client's
//! own exchanges: every connection keeps echoing, none is lost.
//!
//! 1. r1, the master, is reloaded during the traffic: the change lands, nothing else in
//!    the table moves, no connection is lost or silent for long, r2 stays BACKUP.
//! 2. r1 is killed (kill -9) and cut off both segments; r2 is reloaded twice across its
//!    takeover: in the instant of the kill (rs2's weight; r2 still BACKUP, waiting out
//!    the master-down interval), and again at the first sign of r2 taking over (an instance of r2 reports
//!    MASTER; the whole change). r2 ends MASTER of both instances holding both VIPs and
//!    running the master sync daemon, the change is in r2's table, and every connection,
//!    known to r2 through the kernel's sync daemon, keeps echoing through r2 (r1 is gone,
//!    so nothing else can carry them).

#[path = "kernel_ipvs/appliance_up.rs"]
#[allow(dead_code)]
mod appliance_up;

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use appliance_up::{
    changed_config, columns, open_all, reload, rules, rules_after, rules_before, start_routers,
    wait_judged, weight_changed_config, write_config, SLOW,
};
use haldir_lab::appliance::{Appliance, ApplianceOptions, CLIENT, VIP};
use haldir_lab::vm::in_vm_or_skip;
use haldir_lab::{poll_until, Lab, Signal, Traffic, TrafficConfig};

/// Long-lived client connections through the VIP.
const CONNECTIONS: usize = 100;

/// Echoes every connection must count after the change before it is judged (at one a
/// second: a few seconds of traffic).
const ECHOES_AFTER: u64 = 3;

fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "kernel_live_reload: {text}");
}

fn traffic_config() -> TrafficConfig {
    TrafficConfig {
        interval: Duration::from_secs(1),
        ..TrafficConfig::default()
    }
}

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

/// The service line's first column of `ipvsadm -Ln --stats --exact`: its Conns.
fn service_conns(app: &Appliance<'_>, router: &str) -> u64 {
    columns(app, router, &["-Ln", "--stats", "--exact"])
        .get(&format!("{VIP}:7000"))
        .and_then(|c| c.first().copied())
        .unwrap_or(0)
}

/// Sum of ActiveConn of VIP:7000's destinations (`ipvsadm -Ln`: weight, ActiveConn,
/// InActConn).
fn active_conns(app: &Appliance<'_>, router: &str) -> u64 {
    columns(app, router, &["-Ln"])
        .iter()
        .filter(|(key, _)| key.starts_with(&format!("{VIP}:7000 -> ")))
        .map(|(_, c)| c.get(1).copied().unwrap_or(0))
        .sum()
}

#[test]
fn a_reload_on_the_master_during_traffic_applies_the_change_and_drops_no_connection() {
    if !in_vm_or_skip(
        "kernel_live_reload::a_reload_on_the_master_during_traffic_applies_the_change_and_drops_no_connection",
    ) {
        return;
    }
    let started = Instant::now();
    let lab = Lab::new("live-reload").unwrap();
    let app = Appliance::build(&lab, ApplianceOptions::default()).unwrap();
    let (r1, r2) = start_routers(&app, binary(), &[]);
    assert_eq!(rules(&app, "r1"), rules_before(), "r1's table before");

    let traffic = Traffic::start(&lab, CLIENT, Appliance::target(), traffic_config()).unwrap();
    open_all(&traffic, CONNECTIONS);
    // Past two rounds of the kernel's estimator (2 s), which folds the per-CPU counters
    // into `--stats`: the counters read next are settled (no new connection comes).
    std::thread::sleep(Duration::from_secs(5));
    let conns_before = service_conns(&app, "r1");
    let active_before = active_conns(&app, "r1");
    say(&format!(
        "{CONNECTIONS} connections up ({:?}) in {:.1} s; r1: Conns {conns_before}, ActiveConn {active_before}",
        traffic.report().by_server(),
        started.elapsed().as_secs_f64()
    ));
    assert!(
        active_before >= CONNECTIONS as u64 && conns_before >= CONNECTIONS as u64,
        "r1's kernel does not count the connections:\n{}",
        app.ipvsadm("r1", &["-Ln"]).unwrap()
    );

    let mark = Instant::now();
    reload(&lab, &r1, &changed_config(&app.router_config("r1")));
    let reported = mark.elapsed();
    let mut table = Vec::new();
    let landed = poll_until(SLOW, Duration::from_millis(200), || {
        table = rules(&app, "r1");
        table == rules_after()
    });
    assert!(
        landed,
        "r1's table after the reload:\n{}\nwanted:\n{}\n{}",
        table.join("\n"),
        rules_after().join("\n"),
        r1.log()
    );
    let at_landed = traffic.report();
    say(&format!(
        "reload reported after {:.2} s, the change in `ipvsadm -Sn` after {:.2} s",
        reported.as_secs_f64(),
        mark.elapsed().as_secs_f64()
    ));

    let (judged, report) = wait_judged(&traffic, &at_landed, mark, ECHOES_AFTER);
    say(&format!(
        "{} connections alive at the reload; {} echoes in all; longest silence after it {:.2} s",
        judged.alive_at_mark,
        report.exchanges(),
        judged.longest_gap
    ));
    assert_eq!(
        judged.alive_at_mark, CONNECTIONS,
        "connections alive at the reload"
    );
    assert!(judged.lost.is_empty(), "lost: {:#?}", judged.lost);
    assert!(
        judged.short.is_empty(),
        "stopped echoing after the reload: {:#?}",
        judged.short
    );
    // Nothing in a reload that leaves VIP:7000's entries alone silences a connection; the
    // bound leaves room for a starved VM (10 echo intervals).
    assert!(
        judged.longest_gap < 10.0,
        "a connection was silent for {:.2} s after the reload",
        judged.longest_gap
    );

    // VIP:7000's kernel entries were not deleted and re-added: its connection counter
    // carries on (a new service starts at 0) and its destinations still count every
    // connection as active.
    std::thread::sleep(Duration::from_secs(5));
    let conns_after = service_conns(&app, "r1");
    let active_after = active_conns(&app, "r1");
    say(&format!(
        "r1 after: Conns {conns_after}, ActiveConn {active_after}\n{}",
        app.ipvsadm("r1", &["-Ln"]).unwrap()
    ));
    assert!(
        conns_after >= conns_before,
        "VIP:7000's connection counter went from {conns_before} to {conns_after}: the service was re-created"
    );
    assert!(
        active_after >= active_before,
        "VIP:7000's active connections went from {active_before} to {active_after}"
    );
    assert_eq!(rules(&app, "r1"), rules_after(), "r1's table at the end");

    // No failover: r1 keeps both VIPs, r2 stays BACKUP.
    let (public, private) = app.holders();
    assert_eq!((public, private), (vec!["r1"], vec!["r1"]), "VIP holders");
    assert_eq!(
        r2.states(),
        Some(vec!["BACKUP".to_owned(), "BACKUP".to_owned()]),
        "r2"
    );
    traffic.stop();
    say(&format!(
        "whole test {:.1} s",
        started.elapsed().as_secs_f64()
    ));
}

#[test]
fn a_reload_of_r2_while_it_takes_over_lands_in_its_table_and_keeps_every_connection() {
    if !in_vm_or_skip(
        "kernel_live_reload::a_reload_of_r2_while_it_takes_over_lands_in_its_table_and_keeps_every_connection",
    ) {
        return;
    }
    let started = Instant::now();
    let lab = Lab::new("failover-reload").unwrap();
    let app = Appliance::build(&lab, ApplianceOptions::default()).unwrap();
    let (r1, r2) = start_routers(&app, binary(), &[]);
    assert_eq!(rules(&app, "r2"), rules_before(), "r2's table before");

    let traffic = Traffic::start(&lab, CLIENT, Appliance::target(), traffic_config()).unwrap();
    open_all(&traffic, CONNECTIONS);
    // The backup learns the connections from r1's sync daemon as they carry traffic.
    let mut synced = 0;
    let all_synced = poll_until(SLOW, Duration::from_millis(500), || {
        synced = app.ipvs_established("r2").unwrap_or(0);
        synced >= CONNECTIONS
    });
    assert!(
        all_synced,
        "r2's IPVS knows only {synced} of {CONNECTIONS} connections:\n{}",
        app.ipvsadm("r2", &["-Lnc"]).unwrap()
    );
    say(&format!(
        "{CONNECTIONS} connections up ({:?}), all {synced} known to r2 (sync daemon), after {:.1} s",
        traffic.report().by_server(),
        started.elapsed().as_secs_f64()
    ));

    // The master dies, r2 is sent SIGHUP in the same instant (no fork between them: r2
    // is still BACKUP, waiting out the master-down interval of about 360 ms), and r1 is
    // cut off both segments.
    let pending = write_config(&r2, &weight_changed_config(&app.router_config("r2")));
    let mark = Instant::now();
    lab.kill(r1.pid(), Signal::SIGKILL).unwrap();
    lab.kill(r2.pid(), Signal::SIGHUP).unwrap();
    let states_first = r2.states();
    let hup_first = mark.elapsed();
    assert!(
        lab.wait_exit(r1.pid(), Duration::from_secs(10))
            .unwrap()
            .is_some(),
        "r1's haldir survived kill -9"
    );
    app.set_links("r1", false).unwrap();
    pending.wait_applied(&r2);
    say(&format!(
        "r1 killed; r2 sent SIGHUP (rs2's weight) {:.3} s after, its instances then \
         {states_first:?}; r1 cut off; the reload reported {:.3} s after the kill",
        hup_first.as_secs_f64(),
        mark.elapsed().as_secs_f64()
    ));
    // The takeover starts: the first instance of r2 to report MASTER. The whole change
    // goes in then.
    let mut states = None;
    let taking_over = poll_until(SLOW, Duration::from_millis(5), || {
        states = r2.states();
        states
            .as_ref()
            .is_some_and(|s| s.iter().any(|s| s == "MASTER"))
    });
    assert!(taking_over, "r2 did not start taking over:\n{}", r2.log());
    let at_hup = mark.elapsed();
    let holders_at_hup = app.holders();
    let daemons_at_hup = app.sync_daemons("r2").unwrap_or_default();
    reload(&lab, &r2, &changed_config(&app.router_config("r2")));
    say(&format!(
        "r2 reloaded again {:.3} s after the kill, when its instances were {states:?}, the \
         VIPs on {holders_at_hup:?} and its sync daemons [{daemons_at_hup}]; reported after \
         {:.2} s",
        at_hup.as_secs_f64(),
        mark.elapsed().as_secs_f64()
    ));

    assert!(
        app.wait_roles(&r2, None, SLOW),
        "r2 did not end MASTER of both instances holding both VIPs: {:?}, VIPs on {:?}\n{}",
        r2.states(),
        app.holders(),
        r2.log()
    );
    let took_over = mark.elapsed();
    let mut table = Vec::new();
    let landed = poll_until(SLOW, Duration::from_millis(200), || {
        table = rules(&app, "r2");
        table == rules_after()
    });
    assert!(
        landed,
        "r2's table after the reload:\n{}\nwanted:\n{}\n{}",
        table.join("\n"),
        rules_after().join("\n"),
        r2.log()
    );
    let mut daemons = String::new();
    assert!(
        poll_until(SLOW, Duration::from_millis(200), || {
            daemons = app.sync_daemons("r2").unwrap_or_default();
            daemons.contains("master sync daemon") && !daemons.contains("backup sync daemon")
        }),
        "r2, MASTER, does not run the master sync daemon alone: [{daemons}]\n{}",
        r2.log()
    );
    let at_landed = traffic.report();
    let (judged, report) = wait_judged(&traffic, &at_landed, mark, ECHOES_AFTER);
    let carried = app.ipvs_established("r2").unwrap_or(0);
    say(&format!(
        "r2 MASTER with both VIPs {:.2} s after the kill; {} connections alive at the kill; \
         {} echoes in all; longest silence after the kill {:.2} s; r2's IPVS holds {carried} \
         established\n{}",
        took_over.as_secs_f64(),
        judged.alive_at_mark,
        report.exchanges(),
        judged.longest_gap,
        app.ipvsadm("r2", &["-Ln"]).unwrap()
    ));
    assert_eq!(
        judged.alive_at_mark, CONNECTIONS,
        "connections alive at the kill"
    );
    assert!(judged.lost.is_empty(), "lost: {:#?}", judged.lost);
    assert!(
        judged.short.is_empty(),
        "stopped echoing after the takeover: {:#?}",
        judged.short
    );
    // The silence through a takeover is the takeover plus TCP's retransmission backoff
    // (0.2, 0.6, 1.4, 3.0, 6.2, 12.6 s after the first loss): generous for a starved VM.
    assert!(
        judged.longest_gap < 30.0,
        "a connection was silent for {:.2} s after the kill",
        judged.longest_gap
    );
    assert!(
        carried >= CONNECTIONS,
        "r2's IPVS holds {carried} established connections, {CONNECTIONS} carried through it"
    );
    traffic.stop();
    say(&format!(
        "whole test {:.1} s",
        started.elapsed().as_secs_f64()
    ));
}
