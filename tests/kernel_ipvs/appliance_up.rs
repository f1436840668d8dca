//! The two-NIC appliance (`haldir_lab::appliance`) brought up for the VM tests that drive
//! it by hand (`tests/kernel_live_reload.rs`, `tests/kernel_metrics.rs`): both routers
//! started, r1 MASTER and r2 BACKUP with the VIPs on r1, r1's IPVS service complete and
//! both kernel sync daemons running; plus the readers of `ipvsadm` the tests judge by, a
//! reload with a bound for the emulated VM, and the client's connections judged from
//! their own exchanges.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use haldir_lab::appliance::{Appliance, REAL_SERVERS, SERVICE_PORT, VIP};
use haldir_lab::{poll_until, Haldir, Signal, TrafficReport};

/// Bound on anything the routers must do (elections, reloads, health checks) in the
/// loaded, software-emulated VM.
pub const SLOW: Duration = Duration::from_secs(60);

/// Starts haldir on r1 (with `r1_args`) and r2 and waits until r1 is MASTER of both
/// instances with r2 BACKUP, r1's service VIP:7000 has both real servers and the sync
/// daemons run (master on r1, backup on r2).
pub fn start_routers<'l>(
    app: &Appliance<'l>,
    binary: &std::path::Path,
    r1_args: &[&str],
) -> (Haldir<'l>, Haldir<'l>) {
    let start = |router: &str, args: &[&str]| {
        Haldir::start_with_timeout(
            app.lab(),
            router,
            binary,
            &app.router_config(router),
            args,
            SLOW,
        )
        .unwrap_or_else(|e| panic!("{e:#}"))
    };
    let r1 = start("r1", r1_args);
    let r2 = start("r2", &[]);
    assert!(
        app.wait_roles(&r1, Some(&r2), SLOW),
        "r1 not MASTER with r2 BACKUP: r1 {:?}, r2 {:?}, VIPs on {:?}\n{}\n{}",
        r1.states(),
        r2.states(),
        app.holders(),
        r1.log(),
        r2.log()
    );
    assert!(
        app.wait_ipvs_ready(SLOW),
        "IPVS not ready: r1 service {:?}, daemons r1 [{}], r2 [{}]\n{}",
        app.ipvs_destinations("r1"),
        app.sync_daemons("r1").unwrap_or_default(),
        app.sync_daemons("r2").unwrap_or_default(),
        r1.log()
    );
    (r1, r2)
}

/// `ipvsadm -Sn` in `router`: the table as rules, lines sorted.
pub fn rules(app: &Appliance<'_>, router: &str) -> Vec<String> {
    let mut lines: Vec<String> = app
        .ipvsadm(router, &["-Sn"])
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort();
    lines
}

/// The columns after the address of every service ("TCP 10.1.0.100:7000") and destination
/// ("-> 10.2.0.11:7000") line of `ipvsadm ARGS` in `router`, by that address (a
/// destination keyed "SERVICE -> DEST").
pub fn columns(app: &Appliance<'_>, router: &str, args: &[&str]) -> BTreeMap<String, Vec<u64>> {
    let mut table = BTreeMap::new();
    let mut service = String::new();
    for line in app.ipvsadm(router, args).unwrap().lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let numbers = |from: usize| -> Vec<u64> {
            fields[from..]
                .iter()
                .filter_map(|f| f.parse().ok())
                .collect()
        };
        match fields.as_slice() {
            ["TCP" | "UDP", addr, ..] => {
                service = (*addr).to_owned();
                table.insert(service.clone(), numbers(2));
            }
            ["->", addr, ..] if *addr != "RemoteAddress:Port" => {
                table.insert(format!("{service} -> {addr}"), numbers(2));
            }
            _ => {}
        }
    }
    table
}

/// Writes `config` over `router`'s file, sends SIGHUP and waits (up to [`SLOW`]: the lab's
/// own reload waits 10 s, too short in the emulated VM) until its log reports the reload
/// applied; panics when it is rejected or not reported.
pub fn reload(lab: &haldir_lab::Lab, router: &Haldir<'_>, config: &str) {
    let pending = write_config(router, config);
    lab.kill(router.pid(), Signal::SIGHUP).unwrap();
    pending.wait_applied(router);
}

/// A reload prepared by [`write_config`]: the log's counts of outcomes before it.
pub struct PendingReload {
    applied: usize,
    rejected: usize,
}

fn count(log: &str, what: &str) -> usize {
    log.matches(what).count()
}

/// Writes `config` over `router`'s file, for a SIGHUP the caller sends.
pub fn write_config(router: &Haldir<'_>, config: &str) -> PendingReload {
    let before = router.log();
    let pending = PendingReload {
        applied: count(&before, "reloaded"),
        rejected: count(&before, "reload rejected"),
    };
    std::fs::write(router.config_path(), config).unwrap();
    pending
}

impl PendingReload {
    /// Waits (up to [`SLOW`]) until `router`'s log reports the reload; panics unless it
    /// was applied.
    pub fn wait_applied(self, router: &Haldir<'_>) {
        let mut outcome = None;
        poll_until(SLOW, Duration::from_millis(20), || {
            let log = router.log();
            if count(&log, "reloaded") > self.applied {
                outcome = Some(true);
            } else if count(&log, "reload rejected") > self.rejected {
                outcome = Some(false);
            }
            outcome.is_some()
        });
        assert_eq!(
            outcome,
            Some(true),
            "the reload of {} was not applied:\n{}",
            router.host(),
            router.log()
        );
    }
}

/// `base` (an appliance router's configuration) with rs2's weight in VIP:7000 1 → 3.
pub fn weight_changed_config(base: &str) -> String {
    let rs2 = format!(
        "ip = \"{}\"\nport = {SERVICE_PORT}\nweight = 1",
        REAL_SERVERS[1].1
    );
    assert!(
        base.contains(&rs2),
        "the appliance's configuration changed:\n{base}"
    );
    base.replace(&rs2, &rs2.replace("weight = 1", "weight = 3"))
}

/// `base` changed the way the reload tests change it: rs2's weight in VIP:7000 1 → 3
/// ([`weight_changed_config`]), and a second virtual server VIP:7001 (DR, round robin)
/// over rs1 and rs2 without health checks.
pub fn changed_config(base: &str) -> String {
    let mut text = weight_changed_config(base);
    text.push_str(&format!(
        "\n[[virtual_server]]\nip = \"{VIP}\"\nport = 7001\nprotocol = \"TCP\"\nlb_algo = \"rr\"\nlb_kind = \"DR\"\n"
    ));
    for (_, address) in REAL_SERVERS {
        text.push_str(&format!(
            "\n[[virtual_server.real_server]]\nip = \"{address}\"\nport = 7001\nweight = 1\n"
        ));
    }
    text
}

/// The table of an appliance router before the change, as `ipvsadm -Sn` rules (sorted).
pub fn rules_before() -> Vec<String> {
    sorted(vec![
        format!("-A -t {VIP}:7000 -s rr"),
        format!("-a -t {VIP}:7000 -r 10.2.0.11:7000 -g -w 1"),
        format!("-a -t {VIP}:7000 -r 10.2.0.12:7000 -g -w 1"),
    ])
}

/// The table after [`changed_config`]: rs2's weight, and the new service.
pub fn rules_after() -> Vec<String> {
    sorted(vec![
        format!("-A -t {VIP}:7000 -s rr"),
        format!("-a -t {VIP}:7000 -r 10.2.0.11:7000 -g -w 1"),
        format!("-a -t {VIP}:7000 -r 10.2.0.12:7000 -g -w 3"),
        format!("-A -t {VIP}:7001 -s rr"),
        format!("-a -t {VIP}:7001 -r 10.2.0.11:7001 -g -w 1"),
        format!("-a -t {VIP}:7001 -r 10.2.0.12:7001 -g -w 1"),
    ])
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

/// The client's connections judged from their own exchanges between `mark` and `report`.
#[derive(Debug)]
pub struct Judged {
    /// Connections alive at the mark.
    pub alive_at_mark: usize,
    /// Of those, lost after it (described).
    pub lost: Vec<String>,
    /// Of those, with fewer than the wanted echoes after `since` (described).
    pub short: Vec<String>,
    /// The longest silence any of them saw after the mark, in seconds.
    pub longest_gap: f64,
}

/// Judges every connection alive at `mark` (greeted, not lost before it): lost after it,
/// or fewer than `wanted` echoes counted after `since` (from `at_since`, a report taken
/// then).
pub fn judge(
    report: &TrafficReport,
    at_since: &TrafficReport,
    mark: Instant,
    wanted: u64,
) -> Judged {
    let mut judged = Judged {
        alive_at_mark: 0,
        lost: Vec::new(),
        short: Vec::new(),
        longest_gap: report
            .longest_gap_after(mark)
            .map_or(0.0, |(gap, _)| gap.as_secs_f64()),
    };
    for c in &report.connections {
        let alive = c.opened < mark
            && c.server.is_some()
            && c.lost.as_ref().is_none_or(|(at, _)| *at >= mark);
        if !alive {
            continue;
        }
        judged.alive_at_mark += 1;
        if let Some((at, why)) = &c.lost {
            judged.lost.push(format!(
                "conn {} via {:?}: lost {:.3} s after the mark: {why}",
                c.id,
                c.server,
                at.saturating_duration_since(mark).as_secs_f64()
            ));
            continue;
        }
        let before = at_since.connections.get(c.id).map_or(0, |b| b.exchanges);
        if c.exchanges < before + wanted {
            judged.short.push(format!(
                "conn {} via {:?}: {} echoes since, {wanted} wanted",
                c.id,
                c.server,
                c.exchanges - before
            ));
        }
    }
    judged
}

/// Waits (up to [`SLOW`]) until every connection alive at `mark` has `wanted` echoes
/// after `since`'s report or is lost, and returns the judgement then.
pub fn wait_judged(
    traffic: &haldir_lab::Traffic,
    at_since: &TrafficReport,
    mark: Instant,
    wanted: u64,
) -> (Judged, TrafficReport) {
    let deadline = Instant::now() + SLOW;
    loop {
        let report = traffic.report();
        let judged = judge(&report, at_since, mark, wanted);
        if judged.short.is_empty() || Instant::now() > deadline {
            return (judged, report);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Opens `count` connections labelled "initial"; those that fail while being opened
/// (now and then a reset during the handshake in the loaded VM, before anything is
/// tested) are replaced, twice at most. Panics unless `count` are up.
pub fn open_all(traffic: &haldir_lab::Traffic, count: usize) {
    let mut up = traffic.open(count, "initial").unwrap();
    for _ in 0..2 {
        if up >= count {
            break;
        }
        up += traffic.open(count - up, "initial-replacement").unwrap();
    }
    assert!(
        up >= count,
        "only {up} of {count} connections came up:\n{}",
        traffic.report().describe_problems(Duration::from_secs(3))
    );
}
