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

/// The first IPVS round as done: the real-server checks start at once.
fn table_programmed() -> watch::Receiver<bool> {
    watch::channel(true).1
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
        table_programmed(),
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
        table_programmed(),
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

#[test]
fn a_stopped_checks_id_never_reaches_the_next_occupant_of_its_slot() {
    let check = |real_server| {
        Target::Check(CheckerOf {
            real_server,
            index: 0,
        })
    };
    let place = |target: Option<&Target>| match target {
        Some(Target::Check(c)) => Some(c.real_server),
        _ => None,
    };
    let mut targets = Targets::default();
    let first = targets.insert(check(1));
    let second = targets.insert(check(2));
    targets.remove(first);
    assert_eq!(place(targets.get(first)), None);
    // The slot is taken again, under a new id.
    let third = targets.insert(check(3));
    assert_ne!(third, first);
    assert_eq!(place(targets.get(first)), None);
    assert_eq!(place(targets.get(third)), Some(3));
    // Re-pointing or removing through the old id leaves the new occupant alone.
    targets.set(first, check(9));
    targets.remove(first);
    assert_eq!(place(targets.get(third)), Some(3));
    assert_eq!(place(targets.get(second)), Some(2));
    targets.set(second, check(7));
    assert_eq!(place(targets.get(second)), Some(7));
    assert_eq!(targets.slots.len(), 2);
}

/// A reload that puts a virtual server before the checked one moves its real servers'
/// places in the model: their checkers keep running, and their verdicts still reach them.
#[tokio::test(flavor = "current_thread")]
async fn a_reload_that_moves_real_servers_keeps_their_checks_and_verdicts() {
    let mut a = Listener::new();
    let b = Listener::new();
    let (pa, pb) = (a.addr.port(), b.addr.port());
    let service = |vip: &str, ports: &[u16]| {
        let mut text = format!(
            "[[virtual_server]]\nip = \"{vip}\"\nport = 80\nlb_kind = \"DR\"\ndelay_loop = 0.2\n\
             connect_timeout = 0.2\nretry = 1\ndelay_before_retry = 0.1\nwarmup = 0\n"
        );
        for port in ports {
            text.push_str(&format!(
                "[[virtual_server.real_server]]\nip = \"127.0.0.1\"\nport = {port}\nTCP_CHECK = {{}}\n"
            ));
        }
        text
    };
    let (model_tx, model_rx) = watch::channel(std::sync::Arc::new(model(&service(
        "192.0.2.10",
        &[pa, pb],
    ))));
    let (driver_tx, _driver_rx) = mpsc::channel(16);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (notices_tx, _notices_rx) = mpsc::channel(64);
    let (mut table, _quorum, _task) = spawn(
        model_rx,
        driver_tx,
        notices_tx,
        Default::default(),
        table_programmed(),
        shutdown_rx,
    );
    let in_service = |t: &Table, vip: &str, port: u16| {
        t.services.iter().any(|(key, (_, dests))| {
            key.to_string().contains(vip)
                && dests.contains_key(&DestKey::new("127.0.0.1".parse().unwrap(), port))
        })
    };
    wait_for(&mut table, "a and b up", |t| {
        in_service(t, "192.0.2.10", pa) && in_service(t, "192.0.2.10", pb)
    })
    .await;
    // A new virtual server first (its own real server b): 192.0.2.10's real servers move.
    let reloaded = [
        service("192.0.2.9", &[pb]),
        service("192.0.2.10", &[pa, pb]),
    ]
    .concat();
    model_tx
        .send(std::sync::Arc::new(model(&reloaded)))
        .unwrap();
    wait_for(&mut table, "the new service with b", |t| {
        in_service(t, "192.0.2.9", pb) && in_service(t, "192.0.2.10", pa)
    })
    .await;
    a.close();
    wait_for(&mut table, "a out of 192.0.2.10 only", |t| {
        !in_service(t, "192.0.2.10", pa)
            && in_service(t, "192.0.2.10", pb)
            && in_service(t, "192.0.2.9", pb)
    })
    .await;
    a.open();
    wait_for(&mut table, "a back", |t| in_service(t, "192.0.2.10", pa)).await;
    let _ = shutdown_tx.send(true);
}

/// A virtual server of real servers on `ports` with a `TCP_CHECK` each, checked every
/// 0.2 s from the start (`warmup = 0`).
fn quick_checks(ports: &[u16]) -> String {
    let mut text = String::from(
        "[[virtual_server]]\nip = \"192.0.2.10\"\nport = 80\nlb_kind = \"DR\"\ndelay_loop = 0.2\n\
         connect_timeout = 0.2\nretry = 1\ndelay_before_retry = 0.1\nwarmup = 0\n",
    );
    for port in ports {
        text.push_str(&format!(
            "[[virtual_server.real_server]]\nip = \"127.0.0.1\"\nport = {port}\nTCP_CHECK = {{}}\n"
        ));
    }
    text
}

/// The wiring started on `config`, its first IPVS round reported on `programmed`.
struct Started {
    model: watch::Sender<std::sync::Arc<Model>>,
    table: watch::Receiver<std::sync::Arc<Table>>,
    shutdown: watch::Sender<bool>,
    counters: std::sync::Arc<crate::counters::DaemonCounters>,
    _others: (
        mpsc::Receiver<DriverCommand>,
        mpsc::Receiver<LvsNotice>,
        tokio::task::JoinHandle<()>,
    ),
}

fn start_waiting(config: &str, programmed: watch::Receiver<bool>) -> Started {
    start_waiting_on(model(config), programmed)
}

/// [`start_waiting`] on a model read already.
fn start_waiting_on(model: Model, programmed: watch::Receiver<bool>) -> Started {
    let (model_tx, model_rx) = watch::channel(std::sync::Arc::new(model));
    let (driver_tx, driver_rx) = mpsc::channel(16);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (notices_tx, notices_rx) = mpsc::channel(64);
    let counters = std::sync::Arc::new(crate::counters::DaemonCounters::default());
    let (table, _quorum, task) = spawn(
        model_rx,
        driver_tx,
        notices_tx,
        counters.clone(),
        programmed,
        shutdown_rx,
    );
    Started {
        model: model_tx,
        table,
        shutdown,
        counters,
        _others: (driver_rx, notices_rx, task),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_starts_real_server_checks_wait_for_the_first_ipvs_round() {
    // Nothing listens: the first check fails.
    let mut dead = Listener::new();
    dead.close();
    let port = dead.addr.port();
    let (programmed_tx, programmed_rx) = watch::channel(false);
    let mut wiring = start_waiting(&quick_checks(&[port]), programmed_rx);
    wait_for(&mut wiring.table, "the initial verdict (up)", |t| {
        has(t, port)
    })
    .await;
    // Checked every 0.2 s, it would be out within about 0.5 s; it waits for the table.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        has(&wiring.table.borrow(), port),
        "the real server was checked before the IPVS table was programmed: {:?}",
        wiring.table.borrow()
    );
    programmed_tx.send(true).unwrap();
    let took = wait_for(&mut wiring.table, "the dead real server removed", |t| {
        !has(t, port)
    })
    .await;
    assert!(took < Duration::from_secs(3), "removal took {took:?}");
    let _ = wiring.shutdown.send(true);
}

#[tokio::test(flavor = "current_thread")]
async fn a_starts_checkers_are_built_when_its_checks_may_start() {
    // An SSL_GET whose CA file went after the model was validated: its checker cannot be
    // built, and its real server counts as down from the moment the wiring tries.
    let ca = std::env::temp_dir().join(format!("haldir-wiring-ca-{}.pem", std::process::id()));
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    // Nothing is ever connected to: the checker is never built.
    let port = 9;
    let config = format!(
        "[[virtual_server]]\nip = \"192.0.2.10\"\nport = 443\nlb_kind = \"DR\"\n\
         delay_loop = 0.2\nwarmup = 0\n[[virtual_server.real_server]]\nip = \"127.0.0.1\"\n\
         port = {port}\nSSL_GET = {{ url = [{{ path = \"/\" }}], ca_file = {:?} }}\n",
        ca.display().to_string()
    );
    let validated = model(&config);
    std::fs::remove_file(&ca).unwrap();
    let (programmed_tx, programmed_rx) = watch::channel(false);
    let mut wiring = start_waiting_on(validated, programmed_rx);
    wait_for(&mut wiring.table, "the initial verdict (up)", |t| {
        has(t, port)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        has(&wiring.table.borrow(), port),
        "the checker was built before the IPVS table was programmed: {:?}",
        wiring.table.borrow()
    );
    programmed_tx.send(true).unwrap();
    wait_for(
        &mut wiring.table,
        "the real server whose checker failed removed",
        |t| !has(t, port),
    )
    .await;
    let _ = wiring.shutdown.send(true);
}

#[tokio::test(flavor = "current_thread")]
async fn a_reload_before_the_first_ipvs_round_starts_the_waiting_checks() {
    let mut dead = Listener::new();
    dead.close();
    let mut gone = Listener::new();
    gone.close();
    let (port, gone_port) = (dead.addr.port(), gone.addr.port());
    // The first round never comes (the sender stays, false).
    let (_programmed_tx, programmed_rx) = watch::channel(false);
    let mut wiring = start_waiting(&quick_checks(&[port, gone_port]), programmed_rx);
    wait_for(&mut wiring.table, "the initial verdicts (up)", |t| {
        has(t, port) && has(t, gone_port)
    })
    .await;
    // The reload drops one real server (its waiting check is stopped) and keeps the
    // other, whose check now runs.
    wiring
        .model
        .send(std::sync::Arc::new(model(&quick_checks(&[port]))))
        .unwrap();
    let took = wait_for(
        &mut wiring.table,
        "the kept dead real server removed",
        |t| !has(t, port) && !has(t, gone_port),
    )
    .await;
    assert!(took < Duration::from_secs(3), "removal took {took:?}");
    let _ = wiring.shutdown.send(true);
}

/// The `HTTP_GET` settings of the first real server of `model`.
fn http_settings(model: &Model) -> std::sync::Arc<haldir_config::HttpCheckSpec> {
    match &model.virtual_servers[0].real_servers[0].checks[0].kind {
        CheckKind::Http(settings) => settings.share(),
        other => panic!("not an HTTP_GET: {other:?}"),
    }
}

/// Waits up to 5 s for `done`, letting the wiring's tasks run.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_kept_http_get_runs_from_the_new_models_settings_and_the_old_ones_go() {
    let mut dead = Listener::new();
    dead.close();
    let port = dead.addr.port();
    let config = format!(
        "[[virtual_server]]\nip = \"192.0.2.10\"\nport = 80\nlb_kind = \"DR\"\n\
         [[virtual_server.real_server]]\nip = \"127.0.0.1\"\nport = {port}\n\
         HTTP_GET = {{ url = [{{ path = \"/health\" }}] }}\n"
    );
    let wiring = start_waiting(&config, table_programmed());
    let first = std::sync::Arc::downgrade(&http_settings(&wiring.model.borrow()));
    eventually("the check to run from the model's settings", || {
        first.strong_count() == 2
    })
    .await;

    // The same file again: the check is kept, and runs from the new model's settings.
    wiring
        .model
        .send(std::sync::Arc::new(model(&config)))
        .unwrap();
    let new = http_settings(&wiring.model.borrow());
    // The new model, this test, and the running check.
    eventually("the check to run from the new model's settings", || {
        std::sync::Arc::strong_count(&new) == 3
    })
    .await;
    eventually("the replaced model's settings to go", || {
        first.strong_count() == 0
    })
    .await;
    let _ = wiring.shutdown.send(true);
}

/// How many of the table's services hold 127.0.0.1:`port`.
fn services_with(t: &Table, port: u16) -> usize {
    let dest = DestKey::new("127.0.0.1".parse().unwrap(), port);
    t.services
        .values()
        .filter(|(_, d)| d.contains_key(&dest))
        .count()
}

/// A loopback listener that accepts every connection and drops it, for checks by the
/// thousand (a listener nobody accepts on fills its backlog, and checks time out), until
/// it is closed.
struct Accepting {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Accepting {
    fn new() -> Self {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let port = socket.local_addr().unwrap().port();
        let listener = tokio::net::TcpListener::from_std(socket).unwrap();
        let task = tokio::spawn(async move {
            loop {
                if let Ok((connection, _)) = listener.accept().await {
                    drop(connection);
                }
            }
        });
        Accepting { port, task }
    }

    /// Closes the listening socket: connections are refused from then on.
    async fn close(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn verdicts_held_by_the_publication_pace_are_all_published() {
    // A real server behind 1,500 virtual servers goes down: 1,500 verdicts over a
    // delay_loop, each table made of all 1,500 services. Publications are paced by their
    // cost, so verdicts arrive while one waits; the last of them must still be published
    // (nothing else comes after them: the other real server's checks keep passing).
    const SERVICES: usize = 1_500;
    let a = Accepting::new();
    let b = Accepting::new();
    let (pa, pb) = (a.port, b.port);
    let mut config = String::new();
    for i in 0..SERVICES {
        config.push_str(&format!(
            "[[virtual_server]]\nip = \"192.0.{}.{}\"\nport = 80\nlb_kind = \"DR\"\n\
             delay_loop = 0.5\nconnect_timeout = 2\nretry = 0\nwarmup = 0.5\n\
             [[virtual_server.real_server]]\nip = \"127.0.0.1\"\nport = {pa}\nTCP_CHECK = {{}}\n\
             [[virtual_server.real_server]]\nip = \"127.0.0.1\"\nport = {pb}\nTCP_CHECK = {{}}\n",
            i / 250,
            i % 250 + 1
        ));
    }
    let mut wiring = start_waiting(&config, table_programmed());
    wait_for(&mut wiring.table, "every service with a", |t| {
        services_with(t, pa) == SERVICES
    })
    .await;
    a.close().await;
    // Each check fails within a delay_loop (connections are refused at once); the
    // publications' waits are at most a second.
    let took = wait_for(&mut wiring.table, "a gone from every service", |t| {
        services_with(t, pa) == 0
    })
    .await;
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(services_with(&wiring.table.borrow(), pb), SERVICES);
    // The pace held verdicts back, and the counters say so.
    let counters = wiring.counters.snapshot();
    assert!(counters.health_table_publications_held > 0, "{counters:?}");
    assert!(counters.health_table_publications > 0, "{counters:?}");
    let _ = wiring.shutdown.send(true);
    b.close().await;
}
