//! The running wiring against real TCP listeners on the loopback (no IPVS needed: the
//! desired table is a watch channel) and a real `vrrp_script`. The policy itself is tested
//! without sockets in `haldir_director`.

use std::time::{Duration, Instant};

use haldir_ipvs::model::{DestKey, Table};

use super::*;

fn model(text: &str) -> Model {
    haldir_config::parse_toml(text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
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
    table: &mut watch::Receiver<std::sync::Arc<Table>>,
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
    let (model_tx, model_rx) = watch::channel(std::sync::Arc::new(model(&config(""))));
    let (driver_tx, _driver_rx) = mpsc::channel(16);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (notices_tx, _notices_rx) = mpsc::channel(64);
    let (mut table, quorum, _task) = spawn(
        model_rx,
        driver_tx,
        notices_tx,
        Default::default(),
        shutdown_rx,
    );
    wait_for(&mut table, "both up", |t| has(t, pa) && has(t, pb)).await;
    // The quorum (1, of a live weight of 2) is published for the announcement of the VIPs.
    let quorum_of = |q: &watch::Receiver<crate::announce::Quorum>| {
        q.borrow().values().copied().collect::<Vec<bool>>()
    };
    assert_eq!(quorum_of(&quorum), vec![true]);

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
    model_tx
        .send(std::sync::Arc::new(model(&config(&extra))))
        .unwrap();
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
    haldir_lab::place_script(&script, &format!("test -e {}", flag.display())).unwrap();
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
    let (_model_tx, model_rx) = watch::channel(std::sync::Arc::new(m));
    let (driver_tx, mut driver_rx) = mpsc::channel(16);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (notices_tx, _notices_rx) = mpsc::channel(64);
    let (_table, _quorum, _task) = spawn(
        model_rx,
        driver_tx,
        notices_tx,
        Default::default(),
        shutdown_rx,
    );
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
