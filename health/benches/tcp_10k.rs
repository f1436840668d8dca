//! Benchmark: 10,000 TCP_CHECKs at `delay_loop 1s` against 10,000 real listeners on
//! 127.77.0.1-100 ports 21000-21099, for ~30 s (HALDIR_BENCH_SECS, HALDIR_BENCH_CHECKS).
//!
//! The listeners live in a child process (this same binary, `serve` mode) so the figures are
//! the checker's alone: CPU (% of one core, /proc/self/stat utime+stime), RSS
//! (/proc/self/status VmRSS), the worst lateness (actual start − due time), and the time from
//! a server's death (its listener closed) to its Down transition with `retry 1`
//! (`delay_before_retry 1s`, keepalived's default) and with `retry 0`.
//!
//! Run: `cargo bench -p haldir-health --bench tcp_10k`.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use haldir_health::tcp::TcpCheck;
use haldir_health::{spawn_scheduler, CheckId, CheckTiming, SchedulerConfig, Transition};

const PORTS_PER_ADDRESS: usize = 100;

fn addr_of(i: usize) -> SocketAddr {
    let host = i / PORTS_PER_ADDRESS + 1;
    let port = 21000 + (i % PORTS_PER_ADDRESS);
    format!("127.77.{}.{}:{port}", host / 250, host % 250 + 1)
        .parse()
        .unwrap()
}

fn raise_nofile() {
    let limit = libc::rlimit {
        rlim_cur: 200_000,
        rlim_max: 200_000,
    };
    // SAFETY: setrlimit with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        let mut cur = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit with valid structs.
        unsafe {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur);
            cur.rlim_cur = cur.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &cur);
        }
    }
}

/// (utime, stime) in clock ticks.
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // After the comm field: state is [0]; utime is field 14 overall → [11], stime [12].
    (
        fields[11].parse::<u64>().unwrap(),
        fields[12].parse::<u64>().unwrap(),
    )
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Child: bind the listeners, accept and close forever; `kill N` on stdin closes listener N.
fn serve(n: usize) {
    raise_nofile();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket.set_reuse_address(true).unwrap();
            socket.set_nonblocking(true).unwrap();
            socket
                .bind(&addr_of(i).into())
                .unwrap_or_else(|e| panic!("bind {}: {e}", addr_of(i)));
            socket.listen(1024).unwrap();
            let listener = tokio::net::TcpListener::from_std(socket.into()).unwrap();
            tasks.push(tokio::spawn(async move {
                loop {
                    if let Ok((stream, _)) = listener.accept().await {
                        drop(stream);
                    }
                }
            }));
        }
        println!("ready");
        let (line_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { break };
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        while let Some(line) = lines.recv().await {
            if let Some(i) = line
                .strip_prefix("kill ")
                .and_then(|v| v.parse::<usize>().ok())
            {
                tasks[i].abort();
                let _ = (&mut tasks[i]).await; // the listener is closed once the task is gone
                println!("killed {i}");
            }
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = std::env::var("HALDIR_BENCH_CHECKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    if args.get(1).map(String::as_str) == Some("serve") {
        serve(n);
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench binaries without `--bench`: skip the 30 s run.
        println!("tcp_10k: run with `cargo bench -p haldir-health --bench tcp_10k`");
        return;
    }
    let secs: u64 = std::env::var("HALDIR_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    raise_nofile();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_child = child.stdin.take().unwrap();
    let mut from_child = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    from_child.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "server child failed");

    // The floor: the same connects (blocking, reset on close) from one plain thread at the
    // same rate, with no scheduler. On loopback the kernel runs BOTH ends of the handshake
    // in the connecting process's context, so this is kernel time no checker can avoid here.
    let floor_secs = 5;
    let floor = {
        let cpu0 = cpu_ticks();
        let t0 = Instant::now();
        let mut done = 0usize;
        while t0.elapsed() < Duration::from_secs(floor_secs) {
            let target_done = (t0.elapsed().as_secs_f64() * n as f64) as usize;
            while done < target_done {
                if let Ok(stream) = std::net::TcpStream::connect(addr_of(done % n)) {
                    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                }
                done += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let cpu1 = cpu_ticks();
        let secs = t0.elapsed().as_secs_f64();
        (
            done as f64 / secs,
            100.0 * ((cpu1.0 + cpu1.1) - (cpu0.0 + cpu0.1)) as f64 / 100.0 / secs,
        )
    };

    // HALDIR_BENCH_RUNTIME=multi: tokio's multi-thread runtime (2 workers); default: the
    // current-thread runtime.
    let multi = std::env::var("HALDIR_BENCH_RUNTIME").as_deref() == Ok("multi");
    let rt = if multi {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .unwrap();
    rt.block_on(async move {
        let floor = floor;
        let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let (handle, _join) = spawn_scheduler(SchedulerConfig::default(), tx);
        let timing = |retry| CheckTiming {
            delay_loop: Duration::from_secs(1),
            retry,
            delay_before_retry: Duration::from_secs(1),
            warmup: None,
            rise: 1,
            fall: 1,
            alpha: false,
        };
        let rss_before = rss_kib();
        for i in 0..n {
            let mut check = TcpCheck::new(addr_of(i));
            check.connect_timeout = Duration::from_secs(2);
            // The last 20 servers die during the run: 10 with retry 1, 10 with retry 0.
            let retry = if i >= n - 10 { 0 } else { 1 };
            handle.add(CheckId(i as u64), Arc::new(check), timing(retry));
        }
        // Warm-up: one delay_loop for the spread first runs, then measure.
        tokio::time::sleep(Duration::from_secs(2)).await;
        handle.reset_max_lateness();
        let runs0 = handle.stats().runs_started;
        let cpu0 = cpu_ticks();
        let t0 = Instant::now();

        let mut death_to_down: Vec<(u32, Duration)> = Vec::new();
        let mut unexpected = 0usize;
        let kill_every = Duration::from_secs(secs) / 22;
        let mut next_kill = t0 + kill_every;
        let mut killed: std::collections::HashMap<u64, (u32, Instant)> = Default::default();
        let victims: Vec<usize> = (n - 20..n).collect();
        let mut victim = 0;
        let end = t0 + Duration::from_secs(secs);
        let mut peak_rss = rss_kib();
        while Instant::now() < end {
            let wake = next_kill.min(end);
            tokio::select! {
                e = events.recv() => {
                    let e = e.unwrap();
                    match (killed.remove(&e.id.0), &e.transition) {
                        (Some((retry, at)), Transition::Down { .. }) => death_to_down.push((retry, at.elapsed())),
                        _ => unexpected += 1,
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    peak_rss = peak_rss.max(rss_kib());
                    if Instant::now() >= next_kill && victim < victims.len() {
                        let i = victims[victim];
                        victim += 1;
                        writeln!(to_child, "kill {i}").unwrap();
                        to_child.flush().unwrap();
                        let mut reply = String::new();
                        from_child.read_line(&mut reply).unwrap();
                        let retry = if i >= n - 10 { 0 } else { 1 };
                        killed.insert(i as u64, (retry, Instant::now()));
                        next_kill += kill_every;
                    }
                }
            }
        }
        // Let the last deaths be detected.
        let grace = Instant::now() + Duration::from_secs(4);
        while !killed.is_empty() && Instant::now() < grace {
            if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(100), events.recv()).await {
                if let (Some((retry, at)), Transition::Down { .. }) = (killed.remove(&e.id.0), &e.transition) {
                    death_to_down.push((retry, at.elapsed()));
                }
            }
        }
        let elapsed = t0.elapsed();
        let cpu1 = cpu_ticks();
        // CLK_TCK is 100 on Linux.
        let (user, system) = ((cpu1.0 - cpu0.0) as f64 / 100.0, (cpu1.1 - cpu0.1) as f64 / 100.0);
        let cpu = user + system;
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let stats = handle.stats();
        let runs = stats.runs_started - runs0;
        peak_rss = peak_rss.max(rss_kib());

        println!("haldir-health TCP_CHECK benchmark");
        println!("  checks:                 {n} at delay_loop 1s ({} runtime)", if multi { "multi-thread" } else { "current-thread" });
        println!("  measured for:           {:.1} s", elapsed.as_secs_f64());
        println!("  check runs:             {runs} ({:.0}/s)", runs as f64 / elapsed.as_secs_f64());
        println!(
            "  CPU:                    {:.1} % of one core (user {:.1} %, system {:.1} %)",
            100.0 * cpu / elapsed.as_secs_f64(),
            100.0 * user / elapsed.as_secs_f64(),
            100.0 * system / elapsed.as_secs_f64()
        );
        println!("  CPU per check run:      {:.1} µs", cpu * 1e6 / runs as f64);
        println!(
            "  kernel floor:           {:.1} % of one core for {:.0} bare blocking connects/s (same listeners, no scheduler)",
            floor.1, floor.0
        );
        println!(
            "  checker above floor:    {:.1} % of one core",
            100.0 * cpu / elapsed.as_secs_f64() - floor.1 * (runs as f64 / elapsed.as_secs_f64()) / floor.0
        );
        println!("  machine load average:   {}", load.trim());
        println!("  RSS:                    {:.1} MB peak (before adding checks {:.1} MB)", peak_rss as f64 / 1024.0, rss_before as f64 / 1024.0);
        println!("  worst lateness:         {:.1} ms", stats.max_lateness.as_secs_f64() * 1000.0);
        for retry in [1, 0] {
            let mut d: Vec<f64> = death_to_down
                .iter()
                .filter(|(r, _)| *r == retry)
                .map(|(_, d)| d.as_secs_f64())
                .collect();
            d.sort_by(|a, b| a.partial_cmp(b).unwrap());
            if d.is_empty() {
                println!("  death→Down (retry {retry}):  none observed");
            } else {
                println!(
                    "  death→Down (retry {retry}):  min {:.2} s, median {:.2} s, max {:.2} s over {} deaths (delay_before_retry 1s)",
                    d[0], d[d.len() / 2], d[d.len() - 1], d.len()
                );
            }
        }
        println!("  deaths not detected:    {}", killed.len());
        println!("  unexpected transitions: {unexpected}");
        handle.shutdown(false).await;
    });
    let _ = child.kill();
    let _ = child.wait();
}
