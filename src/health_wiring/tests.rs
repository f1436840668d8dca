//! The pure parts of the health wiring, and the running wiring against real TCP listeners
//! on the loopback (no IPVS needed: the desired table is a watch channel).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use haldir_ipvs::model::{DestKey, ServiceKey, Table};

use super::*;

fn model(text: &str) -> Model {
    haldir_config::parse_toml(text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn web() -> ServiceKey {
    ServiceKey::Address {
        protocol: haldir_ipvs::model::Protocol::Tcp,
        addr: "192.0.2.10".parse().unwrap(),
        port: 80,
    }
}

/// (ip, weight) of each destination of the web service, sorted.
fn dests(table: &Table) -> Vec<(String, u16, u32)> {
    let mut list: Vec<(String, u16, u32)> = table.services[&web()]
        .1
        .iter()
        .map(|(k, d)| (k.addr.to_string(), k.port, d.weight))
        .collect();
    list.sort();
    list
}

const FOUR: &str = r#"
[[virtual_server]]
ip = "192.0.2.10"
port = 80
lb_kind = "DR"
quorum = 6
hysteresis = 2
sorry_server = "10.0.0.250 8080"
[[virtual_server.real_server]]
ip = "10.0.0.1"
weight = 3
TCP_CHECK = {}
[[virtual_server.real_server]]
ip = "10.0.0.2"
weight = 3
inhibit_on_failure = true
TCP_CHECK = {}
[[virtual_server.real_server]]
ip = "10.0.0.3"
weight = 2
MISC_CHECK = { misc_path = "/bin/true", misc_dynamic = true }
[[virtual_server.real_server]]
ip = "10.0.0.4"
weight = 1
"#;

/// Sets the verdict of the (only) checker of real server `ip`.
fn set(
    model: &Model,
    verdicts: &mut HashMap<CheckKey, CheckVerdict>,
    ip: &str,
    up: bool,
    weight: Option<u32>,
) {
    let vs = &model.virtual_servers[0];
    let rs = vs
        .real_servers
        .iter()
        .find(|rs| rs.ip.to_string() == ip)
        .unwrap();
    for (key, _) in check_keys(vs, rs) {
        verdicts.insert(key, CheckVerdict { up, weight });
    }
}

fn table(
    model: &Model,
    verdicts: &HashMap<CheckKey, CheckVerdict>,
    quorum: &mut HashMap<ServiceKey, bool>,
) -> Table {
    desired_table(
        &model.virtual_servers,
        &|vs, rs| real_server_state(vs, rs, verdicts),
        quorum,
    )
}

#[test]
fn down_servers_leave_or_get_weight_zero_and_dynamic_weights_apply() {
    let m = model(FOUR);
    let mut verdicts = HashMap::new();
    let mut quorum = HashMap::new();
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        set(&m, &mut verdicts, ip, true, None);
    }
    assert_eq!(
        dests(&table(&m, &verdicts, &mut quorum)),
        vec![
            ("10.0.0.1".into(), 80, 3),
            ("10.0.0.2".into(), 80, 3),
            ("10.0.0.3".into(), 80, 2),
            ("10.0.0.4".into(), 80, 1),
        ],
        "all up (the server without a checker counts as up); no sorry server"
    );
    set(&m, &mut verdicts, "10.0.0.1", false, None);
    set(&m, &mut verdicts, "10.0.0.2", false, None);
    set(&m, &mut verdicts, "10.0.0.3", true, Some(7));
    assert_eq!(
        dests(&table(&m, &verdicts, &mut quorum)),
        vec![
            ("10.0.0.2".into(), 80, 0),
            ("10.0.0.3".into(), 80, 7),
            ("10.0.0.4".into(), 80, 1),
        ],
        "down: removed, or weight 0 with inhibit_on_failure; misc_dynamic weight 7; live 8 ≥ 6 - 2"
    );
}

#[test]
fn quorum_with_hysteresis_switches_to_the_sorry_server_and_back() {
    let m = model(FOUR);
    let mut verdicts = HashMap::new();
    let mut quorum = HashMap::new();
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        set(&m, &mut verdicts, ip, true, None);
    }
    table(&m, &verdicts, &mut quorum); // live 9: up
    set(&m, &mut verdicts, "10.0.0.1", false, None);
    // live 6 - 3 = 6 (3 + 2 + 1): still ≥ 4.
    assert!(quorum[&web()]);
    set(&m, &mut verdicts, "10.0.0.2", false, None);
    // live 3 (2 + 1) < 6 - 2: lost; the sorry server is the only live destination, the
    // inhibited real server stays with weight 0.
    assert_eq!(
        dests(&table(&m, &verdicts, &mut quorum)),
        vec![("10.0.0.2".into(), 80, 0), ("10.0.0.250".into(), 8080, 1)]
    );
    assert!(!quorum[&web()]);
    set(&m, &mut verdicts, "10.0.0.2", true, None);
    // live 6: at quorum but below quorum + hysteresis (8): still lost.
    let t = table(&m, &verdicts, &mut quorum);
    assert!(!quorum[&web()]);
    assert_eq!(
        dests(&t),
        vec![("10.0.0.2".into(), 80, 0), ("10.0.0.250".into(), 8080, 1)]
    );
    set(&m, &mut verdicts, "10.0.0.1", true, None);
    // live 9 ≥ 8: regained, the sorry server leaves.
    assert_eq!(
        dests(&table(&m, &verdicts, &mut quorum)),
        vec![
            ("10.0.0.1".into(), 80, 3),
            ("10.0.0.2".into(), 80, 3),
            ("10.0.0.3".into(), 80, 2),
            ("10.0.0.4".into(), 80, 1),
        ]
    );
}

#[test]
fn sorry_server_inhibit_keeps_it_at_weight_zero_and_no_sorry_server_keeps_the_servers() {
    let m = model(&FOUR.replace(
        "sorry_server = \"10.0.0.250 8080\"",
        "sorry_server = \"10.0.0.250 8080\"\nsorry_server_inhibit = true",
    ));
    let mut verdicts = HashMap::new();
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        set(&m, &mut verdicts, ip, true, None);
    }
    let t = table(&m, &verdicts, &mut HashMap::new());
    assert!(dests(&t).contains(&("10.0.0.250".into(), 8080, 0)));

    // Without a sorry server, losing the quorum changes nothing in the table.
    let m = model(&FOUR.replace("sorry_server = \"10.0.0.250 8080\"", ""));
    let mut verdicts = HashMap::new();
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        set(&m, &mut verdicts, ip, false, None);
    }
    let mut quorum = HashMap::new();
    assert_eq!(
        dests(&table(&m, &verdicts, &mut quorum)),
        vec![("10.0.0.2".into(), 80, 0), ("10.0.0.4".into(), 80, 1)]
    );
    assert!(!quorum[&web()]);
}

#[test]
fn alpha_servers_start_down() {
    let m = model(&FOUR.replace("quorum = 6", "alpha = true\nquorum = 6"));
    let t = table(&m, &HashMap::new(), &mut HashMap::new());
    // Only the unchecked server is up (live 1 < 6): the sorry server stands in.
    assert_eq!(
        dests(&t),
        vec![("10.0.0.2".into(), 80, 0), ("10.0.0.250".into(), 8080, 1)]
    );
}

#[test]
fn tracking_follows_keepalived_weights() {
    let m = model(
        r#"
[[vrrp_script]]
name = "plus"
script = "/bin/true"
weight = 10
[[vrrp_script]]
name = "minus"
script = "/bin/true"
weight = -20
[[vrrp_script]]
name = "zero"
script = "/bin/true"
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
priority = 100
virtual_ipaddress = ["192.0.2.10/24"]
track_script = ["plus", "minus", { name = "zero", weight = 0 }]
"#,
    );
    let i = &m.vrrp_instances[0];
    let with = |states: &[(&str, bool)]| {
        let map: HashMap<&str, bool> = states.iter().copied().collect();
        tracking(i, &|name| map.get(name).copied())
    };
    assert_eq!(
        with(&[]),
        Tracking {
            priority_delta: 10,
            fault: false
        },
        "all OK: +10"
    );
    assert_eq!(
        with(&[("plus", false)]),
        Tracking {
            priority_delta: 0,
            fault: false
        }
    );
    assert_eq!(
        with(&[("minus", false)]),
        Tracking {
            priority_delta: -10,
            fault: false
        }
    );
    assert_eq!(
        with(&[("plus", false), ("minus", false), ("zero", false)]),
        Tracking {
            priority_delta: -20,
            fault: true
        }
    );
}

/// A loopback TCP listener that can be closed and reopened on the same port.
struct Listener {
    addr: std::net::SocketAddr,
    socket: Option<std::net::TcpListener>,
}

impl Listener {
    fn new() -> Self {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        Listener {
            addr: socket.local_addr().unwrap(),
            socket: Some(socket),
        }
    }
    fn close(&mut self) {
        self.socket = None;
    }
    fn open(&mut self) {
        self.socket = Some(std::net::TcpListener::bind(self.addr).unwrap());
    }
}

async fn wait_for(
    table: &mut watch::Receiver<Table>,
    what: &str,
    cond: impl Fn(&Table) -> bool,
) -> Duration {
    let start = Instant::now();
    let ok = tokio::time::timeout(Duration::from_secs(10), table.wait_for(|t| cond(t)))
        .await
        .is_ok();
    assert!(
        ok,
        "timed out waiting for {what}; table: {:?}",
        table.borrow()
    );
    start.elapsed()
}

fn has(t: &Table, port: u16) -> bool {
    t.services
        .values()
        .any(|(_, d)| d.contains_key(&DestKey::new("127.0.0.1".parse().unwrap(), port)))
}

#[tokio::test(flavor = "current_thread")]
async fn real_listeners_drive_the_table_and_a_reload_keeps_unchanged_checks() {
    let mut a = Listener::new();
    let b = Listener::new();
    let (pa, pb) = (a.addr.port(), b.addr.port());
    let config = |extra: &str| {
        format!(
            r#"
[[virtual_server]]
ip = "192.0.2.10"
port = 80
lb_kind = "DR"
delay_loop = 0.2
connect_timeout = 0.2
retry = 1
delay_before_retry = 0.1
warmup = 0
[[virtual_server.real_server]]
ip = "127.0.0.1"
port = {}
TCP_CHECK = {{}}
[[virtual_server.real_server]]
ip = "127.0.0.1"
port = {}
TCP_CHECK = {{}}
{extra}"#,
            pa, pb
        )
    };
    let (model_tx, model_rx) = watch::channel(model(&config("")));
    let (driver_tx, _driver_rx) = mpsc::channel(16);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut table = spawn(model_rx, driver_tx, shutdown_rx);
    wait_for(&mut table, "both up", |t| has(t, pa) && has(t, pb)).await;

    a.close();
    let took = wait_for(&mut table, "a removed", |t| !has(t, pa) && has(t, pb)).await;
    // delay_loop 0.2 + one retry after 0.1 (+ connect refusals are immediate).
    assert!(took < Duration::from_secs(2), "removal took {took:?}");

    // A reload that adds a real server: the unchanged checks keep their state (a stays
    // out without a new round of failures, b is never removed).
    let mut c = Listener::new();
    let extra = format!(
        "[[virtual_server.real_server]]\nip = \"127.0.0.1\"\nport = {}\nTCP_CHECK = {{}}\n",
        c.addr.port()
    );
    let mut changes = table.clone();
    changes.mark_unchanged();
    model_tx.send(model(&config(&extra))).unwrap();
    let pc = c.addr.port();
    wait_for(&mut table, "c added", |t| has(t, pc)).await;
    assert!(!has(&table.borrow(), pa) && has(&table.borrow(), pb));
    // Every table published since the reload had b and never had a.
    let mut seen = 0;
    while changes.has_changed().unwrap_or(false) {
        let t = changes.borrow_and_update().clone();
        assert!(has(&t, pb) && !has(&t, pa), "{t:?}");
        seen += 1;
    }
    assert!(seen >= 1);

    a.open();
    wait_for(&mut table, "a back", |t| has(t, pa)).await;
    c.close();
    wait_for(&mut table, "c removed", |t| !has(t, pc)).await;
    let _ = shutdown_tx.send(true);
}

#[tokio::test(flavor = "current_thread")]
async fn a_failing_script_sends_tracking_to_the_driver() {
    let dir = std::env::temp_dir().join(format!("haldir-wiring-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let flag = dir.join("ok");
    std::fs::write(&flag, "").unwrap();
    let script = dir.join("check.sh");
    std::fs::write(&script, format!("#!/bin/sh\ntest -e {}\n", flag.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let m = model(&format!(
        r#"
[[vrrp_script]]
name = "chk"
script = "{}"
interval = 0.1
weight = -30
fall = 2
rise = 2
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
priority = 100
virtual_ipaddress = ["192.0.2.10/24"]
track_script = ["chk"]
"#,
        script.display()
    ));
    let (_model_tx, model_rx) = watch::channel(m);
    let (driver_tx, mut driver_rx) = mpsc::channel(16);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let _table = spawn(model_rx, driver_tx, shutdown_rx);
    assert_eq!(
        next(&mut driver_rx).await,
        ("VI_1".to_string(), Tracking::default())
    );
    std::fs::remove_file(&flag).unwrap();
    assert_eq!(
        next(&mut driver_rx).await,
        (
            "VI_1".to_string(),
            Tracking {
                priority_delta: -30,
                fault: false
            }
        )
    );
    std::fs::write(&flag, "").unwrap();
    assert_eq!(
        next(&mut driver_rx).await,
        ("VI_1".to_string(), Tracking::default())
    );
    let _ = shutdown_tx.send(true);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn next(rx: &mut mpsc::Receiver<DriverCommand>) -> (String, Tracking) {
    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        Ok(Some(DriverCommand::Track { instance, tracking })) => (instance, tracking),
        _ => panic!("no Track command"),
    }
}
