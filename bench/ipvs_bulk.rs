//! Benchmark (issue 3 item 6), in the VM only: program 10,000 services × 4 destinations
//! into an empty IPVS table, then change one destination's weight on that table; haldir
//! (`Reconciler` over `IpvsClient::apply_batch`, pipelined) against `ipvsadm-restore` of the
//! same table, in the same run.
//!
//!     bash tests/vm/run.sh --bench        # builds this with `cargo bench --no-run`, runs it
//!
//! Each tool, in each trial, programs the table into a fresh network namespace of its own
//! (IPVS tables are per namespace), one after the other, the order alternating between
//! trials. Not a flush between the two: the kernel keeps deleted destinations in a
//! per-namespace trash list that every later add searches linearly until a 2-minute timer
//! empties it, so whoever came after a flush of 40,000 destinations was 4-5 times slower
//! (seen: ipvsadm-restore 145 s instead of 37 s, haldir 31 s instead of 7 s). Every
//! programmed table is read back and compared with the desired one. Reported: median / min /
//! max per step over the trials, and the ratio haldir / ipvsadm-restore.
//!
//! - haldir's time is `IpvsClient::connect` + `Reconciler::reconcile` (read the empty
//!   table, diff, apply the 50,000 operations); read and apply are shown separately.
//! - `ipvsadm-restore` is a bash wrapper (`grep`, `ipvsadm -C`, `ipvsadm -R`), started
//!   through `ip netns exec`; under software emulation a fork + exec costs 0.1-0.5 s, so it
//!   is also shown net of an empty restore (same processes, no input), which is the figure
//!   the ratio uses: the comparison is of the programming itself, not of process starts.
//! - The one-weight change: haldir's reconcile reads the whole table (one service dump and
//!   one destination dump per service), diffs, and applies exactly one operation (checked);
//!   the equivalent by hand is one `ipvsadm -e`.
//!
//! Environment, for a run by hand inside a VM (the rig does not pass it on):
//! `HALDIR_BENCH_TRIALS` (default 5), `HALDIR_BENCH_SERVICES` (default 10000). Outside the
//! VM it says so and exits 0.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use haldir_ipvs::model::{DestKey, Destination, Forwarding, Protocol, Service, ServiceKey, Table};
use haldir_ipvs::{Applier, IpvsClient, IpvsError, Op, Reconciler};
use haldir_lab::{in_netns, vm};

const DESTS_PER_SERVICE: usize = 4;

/// An [`Applier`] that times what the reconciler asks of the kernel.
struct Timed {
    client: IpvsClient,
    read: Duration,
    apply: Duration,
    ops: usize,
}

impl Applier for Timed {
    async fn read_table(&mut self) -> Result<Table, IpvsError> {
        let start = Instant::now();
        let table = self.client.table().await;
        self.read = start.elapsed();
        table
    }

    async fn apply(&mut self, ops: std::sync::Arc<Vec<Op>>) -> Vec<Result<(), IpvsError>> {
        let start = Instant::now();
        self.ops = ops.len();
        let results = Applier::apply(&mut self.client, ops).await;
        self.apply = start.elapsed();
        results
    }
}

fn service_key(i: usize) -> ServiceKey {
    ServiceKey::Address {
        protocol: Protocol::Tcp,
        addr: IpAddr::V4(Ipv4Addr::new(10, 100, (i / 250) as u8, (i % 250 + 1) as u8)),
        port: 80,
    }
}

fn dest_key(i: usize, k: usize) -> DestKey {
    DestKey::new(
        IpAddr::V4(Ipv4Addr::new(
            10,
            200 + k as u8,
            (i / 250) as u8,
            (i % 250 + 1) as u8,
        )),
        80,
    )
}

/// The table, and the same as `ipvsadm-restore` input.
fn workload(services: usize) -> (Table, String) {
    let mut table = Table::new();
    let mut restore = String::new();
    for i in 0..services {
        let key = service_key(i);
        table.insert_service(key, Service::new("wlc"));
        writeln!(
            restore,
            "-A -t {key_text} -s wlc",
            key_text = addr_port(&key)
        )
        .unwrap();
        for k in 0..DESTS_PER_SERVICE {
            let dest = dest_key(i, k);
            let weight = 1 + k as u32;
            table.insert_dest(
                &key,
                dest,
                Destination::new(Forwarding::DirectRoute, weight),
            );
            writeln!(
                restore,
                "-a -t {} -r {dest} -g -w {weight}",
                addr_port(&key)
            )
            .unwrap();
        }
    }
    (table, restore)
}

fn addr_port(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Address { addr, port, .. } => DestKey::new(*addr, *port).to_string(),
        ServiceKey::Fwmark { .. } => unreachable!("the workload has no fwmark services"),
    }
}

/// Runs `program args` in namespace `ns` with stdin from `input`; returns the wall time.
fn timed_in_ns(ns: &str, program: &str, args: &[&str], input: &std::path::Path) -> Duration {
    let start = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .stdin(std::fs::File::open(input).expect("open the input"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run ip netns exec");
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{program} {args:?} in {ns} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `f` on a fresh current-thread runtime in namespace `ns`.
fn block_in<T: Send>(ns: &str, f: impl std::future::Future<Output = T> + Send) -> T {
    in_netns(ns, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    })
    .expect("enter the namespace")
}

/// Reads the namespace's table (not timed) and checks it against `expected`.
fn assert_table(ns: &str, expected: &Table, who: &str) {
    let actual = block_in(ns, async {
        IpvsClient::connect().await.unwrap().table().await.unwrap()
    });
    assert!(
        actual.service_count() == expected.service_count()
            && actual.dest_count() == expected.dest_count()
            && actual == *expected,
        "{who}: the kernel holds {} services, {} destinations, not the desired table",
        actual.service_count(),
        actual.dest_count()
    );
}

#[derive(Default)]
struct Trial {
    haldir_total: Duration,
    haldir_connect: Duration,
    haldir_read_empty: Duration,
    haldir_apply: Duration,
    restore_raw: Duration,
    restore_empty: Duration,
    change_total: Duration,
    change_read: Duration,
    change_apply: Duration,
    change_ops: usize,
    ipvsadm_edit: Duration,
}

impl Trial {
    fn restore_net(&self) -> Duration {
        self.restore_raw.saturating_sub(self.restore_empty)
    }
}

fn haldir_program(ns: &str, desired: &Table, changed: &Table, trial: &mut Trial) {
    let (connect, first, second) = block_in(ns, async {
        let start = Instant::now();
        let client = IpvsClient::connect().await.unwrap();
        let connect = start.elapsed();
        let mut reconciler = Reconciler::new(Timed {
            client,
            read: Duration::ZERO,
            apply: Duration::ZERO,
            ops: 0,
        });
        let report = reconciler.reconcile(desired).await.unwrap();
        let total = start.elapsed();
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        let t = reconciler.applier();
        let first = (total, t.read, t.apply, t.ops);

        let start = Instant::now();
        let report = reconciler.reconcile(changed).await.unwrap();
        let total = start.elapsed();
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        let t = reconciler.applier();
        let second = (total, t.read, t.apply, report.ops.len());
        (connect, first, second)
    });
    assert_eq!(first.3, desired.service_count() + desired.dest_count());
    trial.haldir_connect = connect;
    trial.haldir_total = first.0;
    trial.haldir_read_empty = first.1;
    trial.haldir_apply = first.2;
    trial.change_total = second.0;
    trial.change_read = second.1;
    trial.change_apply = second.2;
    trial.change_ops = second.3;
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn main() {
    if !vm::in_vm() {
        println!("SKIPPED ipvs_bulk: needs the IPVS kernel; run `bash tests/vm/run.sh --bench`");
        return;
    }
    let number = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let trials = number("HALDIR_BENCH_TRIALS", 5).max(1);
    let services = number("HALDIR_BENCH_SERVICES", 10_000).clamp(1, 62_500);
    let (desired, restore) = workload(services);
    let total_ops = desired.service_count() + desired.dest_count();
    // The change: one destination's weight.
    let mut changed = desired.clone();
    let (change_service, change_dest) = (service_key(services / 2), dest_key(services / 2, 2));
    changed
        .services
        .get_mut(&change_service)
        .unwrap()
        .1
        .get_mut(&change_dest)
        .unwrap()
        .weight = 42;

    let dir = std::env::temp_dir().join(format!("haldir-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let restore_file = dir.join("table.restore");
    std::fs::write(&restore_file, &restore).unwrap();
    let empty_file = dir.join("empty.restore");
    std::fs::write(&empty_file, "").unwrap();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "ipvs_bulk: {services} services x {DESTS_PER_SERVICE} destinations = {total_ops} operations, {trials} trials, kernel {}",
        kernel.trim()
    );

    let mut results = Vec::new();
    for n in 0..trials {
        let mut trial = Trial::default();
        let haldir_first = n % 2 == 0;
        for step in 0..2 {
            // A fresh namespace for each tool: a flushed table is no clean start, the
            // kernel keeps deleted destinations in a per-namespace trash list that every
            // later add searches (`ip_vs_trash_get_dest`) until a timer empties it.
            let haldir_turn = (step == 0) == haldir_first;
            let ns = format!(
                "hb{}-{n}-{}",
                std::process::id(),
                if haldir_turn { "haldir" } else { "ipvsadm" }
            );
            ip(&["netns", "add", &ns]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            if haldir_turn {
                haldir_program(&ns, &desired, &changed, &mut trial);
                assert_eq!(
                    trial.change_ops, 1,
                    "the one-weight change must be exactly one operation"
                );
                assert_table(&ns, &changed, "haldir");
            } else {
                trial.restore_empty = timed_in_ns(&ns, "ipvsadm-restore", &[], &empty_file);
                trial.restore_raw = timed_in_ns(&ns, "ipvsadm-restore", &[], &restore_file);
                let service = addr_port(&change_service);
                let dest = change_dest.to_string();
                trial.ipvsadm_edit = timed_in_ns(
                    &ns,
                    "ipvsadm",
                    &["-e", "-t", &service, "-r", &dest, "-g", "-w", "42"],
                    &empty_file,
                );
                assert_table(&ns, &changed, "ipvsadm-restore, then ipvsadm -e");
            }
            // Not timed: the namespace goes, and the kernel gets a moment to tear down
            // its table before the next measurement.
            ip(&["netns", "del", &ns]);
            std::thread::sleep(Duration::from_secs(3));
        }
        println!(
            "  trial {}: haldir {} ms (connect {}, read {}, apply {}), ipvsadm-restore {} ms ({} net of an empty restore); weight change: haldir {} ms ({} op), ipvsadm -e {} ms",
            n + 1,
            ms(trial.haldir_total),
            ms(trial.haldir_connect),
            ms(trial.haldir_read_empty),
            ms(trial.haldir_apply),
            ms(trial.restore_raw),
            ms(trial.restore_net()),
            ms(trial.change_total),
            trial.change_ops,
            ms(trial.ipvsadm_edit),
        );
        results.push(trial);
    }
    let _ = std::fs::remove_dir_all(&dir);

    let column = |f: &dyn Fn(&Trial) -> Duration| -> [Duration; 3] {
        let values: Vec<Duration> = results.iter().map(f).collect();
        [
            median(values.clone()),
            *values.iter().min().unwrap(),
            *values.iter().max().unwrap(),
        ]
    };
    let rows: Vec<(String, [Duration; 3])> = vec![
        (
            format!("haldir: program {total_ops} ops from empty (total)"),
            column(&|t| t.haldir_total),
        ),
        (
            "  connect (resolve the family)".into(),
            column(&|t| t.haldir_connect),
        ),
        (
            "  read the (empty) table".into(),
            column(&|t| t.haldir_read_empty),
        ),
        (
            format!("  apply_batch, {total_ops} ops pipelined"),
            column(&|t| t.haldir_apply),
        ),
        (
            "ipvsadm-restore (raw wall time)".into(),
            column(&|t| t.restore_raw),
        ),
        (
            "  empty ipvsadm-restore (process starts)".into(),
            column(&|t| t.restore_empty),
        ),
        (
            "  net of the empty restore".into(),
            column(&|t| t.restore_net()),
        ),
        (
            "haldir: one weight change (reconcile total)".into(),
            column(&|t| t.change_total),
        ),
        (
            format!("  read the table ({} dumps)", services + 1),
            column(&|t| t.change_read),
        ),
        ("  apply (1 op)".into(), column(&|t| t.change_apply)),
        (
            "ipvsadm -e, one weight (raw wall time)".into(),
            column(&|t| t.ipvsadm_edit),
        ),
    ];
    println!();
    println!(
        "{:<48} {:>10} {:>10} {:>10}",
        "step (ms)", "median", "min", "max"
    );
    for (name, [med, min, max]) in &rows {
        println!(
            "{name:<48} {:>10} {:>10} {:>10}",
            ms(*med),
            ms(*min),
            ms(*max)
        );
    }
    let haldir = median(results.iter().map(|t| t.haldir_total).collect());
    let raw = median(results.iter().map(|t| t.restore_raw).collect());
    let net = median(results.iter().map(Trial::restore_net).collect());
    let ratio_net = haldir.as_secs_f64() / net.as_secs_f64();
    let ratio_raw = haldir.as_secs_f64() / raw.as_secs_f64();
    println!();
    println!(
        "ratio haldir / ipvsadm-restore (medians): {ratio_net:.3} net of process starts, {ratio_raw:.3} raw; target <= 0.5: {}",
        if ratio_net <= 0.5 { "MET" } else { "NOT MET" }
    );
    println!(
        "one weight change: {} netlink operation(s) applied by haldir in every trial",
        results.iter().map(|t| t.change_ops).max().unwrap_or(0)
    );
}
