//! A small LVS-DR lab for the VM tests that run the real `haldir` binary over IPVS
//! (`tests/kernel_reload.rs`, `tests/kernel_formats.rs`): a client, the director `r1` and
//! real servers that hold the VIP on `lo` (ARP-silent) and serve HTTP on port 80
//! (`python3 -m http.server`), plus readers of what the outside can see: `ipvsadm`
//! listings and haldir's Prometheus counters.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use haldir_lab::{self as lab, Lab, Signal};

/// Adds real server `host` at `ip` (/24 on eth0) holding `vip`/32 on `lo`, never answering
/// ARP for it (the usual DR setup).
pub fn add_real_server(lab: &Lab, host: &str, ip: &str, vip: &str) {
    lab.add_host(host, &[&format!("{ip}/24")]).unwrap();
    for (key, value) in [
        ("net.ipv4.conf.all.arp_ignore", "1"),
        ("net.ipv4.conf.all.arp_announce", "2"),
        ("net.ipv4.conf.eth0.arp_ignore", "1"),
        ("net.ipv4.conf.eth0.arp_announce", "2"),
    ] {
        lab.run(host, &["sysctl", "-q", "-w", &format!("{key}={value}")])
            .unwrap();
    }
    lab.run(
        host,
        &["ip", "addr", "add", &format!("{vip}/32"), "dev", "lo"],
    )
    .unwrap();
}

/// Starts an HTTP listener on port 80 of every address of `host` (its own and the VIP);
/// returns its pid. Waits until it accepts on `ip`.
pub fn start_listener(lab: &Lab, host: &str, ip: &str) -> u32 {
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "http.server", "80", "--bind", "0.0.0.0"])
        .current_dir("/");
    let pid = lab.spawn(host, cmd).expect("start a listener");
    let ns = lab.ns_name(host);
    let addr: std::net::SocketAddr = format!("{ip}:80").parse().unwrap();
    let up = lab::wait_until(Duration::from_secs(30), || {
        lab::in_netns(&ns, || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
        })
        .unwrap_or(false)
    });
    assert!(
        up,
        "the listener in {host} did not start: {}",
        lab.log_text(pid)
    );
    pid
}

/// Kills a listener and waits for it to exit.
pub fn stop_listener(lab: &Lab, pid: u32) {
    lab.kill(pid, Signal::SIGKILL).unwrap();
    let _ = lab.wait_exit(pid, Duration::from_secs(5));
}

/// `count` HTTP/1.0 GETs from `client` to `vip`:80, each on its own connection; returns
/// the first line of every answer.
pub fn requests(lab: &Lab, client: &str, vip: &str, count: usize) -> Vec<String> {
    let addr: std::net::SocketAddr = format!("{vip}:80").parse().unwrap();
    lab::in_netns(&lab.ns_name(client), || {
        (0..count)
            .map(|_| {
                let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(20))
                    .expect("connect to the VIP");
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
                let mut answer = Vec::new();
                let _ = stream.read_to_end(&mut answer);
                String::from_utf8_lossy(&answer)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    })
    .unwrap()
}

/// (address, weight) of every destination of TCP `service` ("10.1.0.100:80"), sorted,
/// from ONE `ipvsadm -Ln` in namespace `ns`.
pub fn dests(ns: &str, service: &str) -> Vec<(String, u32)> {
    let listing = super::ipvsadm::run(Some(ns), &["-Ln"]);
    let mut list = Vec::new();
    let mut in_service = false;
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["TCP", addr, ..] => in_service = *addr == service,
            ["->", addr, _forward, weight, ..] if in_service => {
                if let Ok(weight) = weight.parse() {
                    list.push(((*addr).to_owned(), weight));
                }
            }
            _ => {}
        }
    }
    list.sort();
    list
}

/// haldir's `haldir_ipvs_reconcile_operations_total` by "op object" ("set destination"),
/// scraped from `http://ADDR/metrics` inside host `host`.
pub fn reconcile_ops(lab: &Lab, host: &str, addr: &str) -> std::collections::BTreeMap<String, u64> {
    let out = lab
        .run(
            host,
            &[
                "curl",
                "-sf",
                "--max-time",
                "10",
                &format!("http://{addr}/metrics"),
            ],
        )
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut ops = std::collections::BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("haldir_ipvs_reconcile_operations_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once('}') else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        let value: f64 = value.trim().parse().unwrap_or(f64::NAN);
        ops.insert(format!("{} {}", label("op"), label("object")), value as u64);
    }
    assert!(
        !ops.is_empty(),
        "no reconciler counters in /metrics:\n{text}"
    );
    ops
}

/// `after - before`, per key, leaving out zeros.
pub fn delta(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v != 0)
        .collect()
}
