//! Long-lived TCP connections through a VIP, and the echo service behind it: what a
//! director's failover must not break.
//!
//! An [`EchoServer`] runs in a real server's namespace: it greets every connection with its
//! name (8 bytes, space padded) and then echoes whatever it reads. A [`Traffic`] driver in
//! the client's namespace holds N connections to `VIP:port`; each one sends a 16-byte
//! message every [`TrafficConfig::interval`] and waits for the identical echo before the next.
//!
//! ```text
//!  greeting (server → client, once)   message (client → server → client, every interval)
//!  +---------------------------+      +------+-------------+-------------+
//!  | name, space padded: 8 B   |      | HLEC | conn id u32 | seq u64     |
//!  +---------------------------+      +------+-------------+-------------+
//! ```
//!
//! Per connection the driver records: lost (connect failure, reset, EOF, any error, or an
//! echo that is not the message sent), every gap between two echoes longer than twice the
//! interval, the longest gap, and which real server greeted it. A connection whose gap
//! (finished, or still running when the report is taken) exceeded a threshold is *stalled*.
//!
//! Both sides run a current-thread tokio runtime on a thread that entered the namespace, so
//! hundreds of connections cost two threads. Everything stops on drop.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::lock;
use super::netns::{spawn_in_netns, Lab};

/// Length of the greeting: the server's name, space padded.
pub const GREETING_LEN: usize = 8;
const MESSAGE_MAGIC: &[u8; 4] = b"HLEC";
/// magic + connection id + sequence number.
const MESSAGE_LEN: usize = 4 + 4 + 8;

/// An echo service on `0.0.0.0:port` in one lab host. Stops on drop.
#[derive(Debug)]
pub struct EchoServer {
    name: String,
    accepted: Arc<AtomicU64>,
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// Starts serving on `0.0.0.0:port` in host `host`, greeting with `host` as its name.
    /// Returns once the listener is bound.
    pub fn start(lab: &Lab, host: &str, port: u16) -> anyhow::Result<EchoServer> {
        if host.len() > GREETING_LEN {
            bail!("echo server name {host:?} is longer than {GREETING_LEN} bytes");
        }
        let mut greeting = [b' '; GREETING_LEN];
        greeting[..host.len()].copy_from_slice(host.as_bytes());
        let accepted = Arc::new(AtomicU64::new(0));
        let (stop, mut stopped) = watch::channel(false);
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let thread = spawn_in_netns(&lab.ns_name(host), &format!("echo-{host}"), {
            let accepted = accepted.clone();
            move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = bound_tx.send(Err(anyhow!(e).context("tokio runtime")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener =
                        match tokio::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).await {
                            Ok(listener) => listener,
                            Err(e) => {
                                let _ = bound_tx
                                    .send(Err(anyhow!(e).context(format!("bind 0.0.0.0:{port}"))));
                                return;
                            }
                        };
                    let _ = bound_tx.send(Ok(()));
                    loop {
                        tokio::select! {
                            _ = stopped.changed() => break,
                            accept = listener.accept() => {
                                let Ok((stream, _)) = accept else { continue };
                                accepted.fetch_add(1, Ordering::Relaxed);
                                tokio::spawn(echo(stream, greeting));
                            }
                        }
                    }
                });
                // Dropping the runtime closes every connection.
            }
        })?;
        match bound_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.context(format!("echo server in {host}"))),
            Err(_) => bail!("the echo server in {host} did not start"),
        }
        Ok(EchoServer {
            name: host.to_owned(),
            accepted,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The name it greets with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connections accepted so far (health checks included).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn echo(mut stream: tokio::net::TcpStream, greeting: [u8; GREETING_LEN]) {
    let _ = stream.set_nodelay(true);
    if stream.write_all(&greeting).await.is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Pacing of the [`Traffic`] driver.
#[derive(Debug, Clone, Copy)]
pub struct TrafficConfig {
    /// Time between two messages of one connection (default 100 ms).
    pub interval: Duration,
    /// Bound on connecting and reading the greeting (default 10 s).
    pub connect_timeout: Duration,
    /// Time between two connection attempts of one [`Traffic::open`] (default 10 ms), so
    /// that a burst of SYNs does not overflow queues on the way.
    pub connect_spacing: Duration,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig {
            interval: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(10),
            connect_spacing: Duration::from_millis(10),
        }
    }
}

/// What happened to one connection (a snapshot).
#[derive(Debug, Clone)]
pub struct Connection {
    /// Its number, from 0 in the order of opening.
    pub id: usize,
    /// The label given to [`Traffic::open`] (say, "before", "after-kill").
    pub label: String,
    /// When it was opened.
    pub opened: Instant,
    /// The real server that greeted it; `None` before the greeting.
    pub server: Option<String>,
    /// Messages echoed correctly.
    pub exchanges: u64,
    /// The last correct echo (or the greeting).
    pub last_echo: Option<Instant>,
    /// Longest time between two consecutive echoes.
    pub longest_gap: Duration,
    /// Every gap between two echoes longer than twice the interval: (previous echo, next).
    pub gaps: Vec<(Instant, Instant)>,
    /// When and why the connection broke: reset, EOF, error, wrong data, failed connect.
    pub lost: Option<(Instant, String)>,
}

impl Connection {
    fn new(id: usize, label: &str) -> Connection {
        Connection {
            id,
            label: label.to_owned(),
            opened: Instant::now(),
            server: None,
            exchanges: 0,
            last_echo: None,
            longest_gap: Duration::ZERO,
            gaps: Vec::new(),
            lost: None,
        }
    }

    /// The silence so far at `now`: since the last echo (or since opening).
    pub fn current_gap(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_echo.unwrap_or(self.opened))
    }
}

/// A snapshot of every connection of a [`Traffic`] driver.
#[derive(Debug, Clone)]
pub struct TrafficReport {
    /// When it was taken.
    pub at: Instant,
    /// Every connection, by id.
    pub connections: Vec<Connection>,
    /// When the driver itself ran late by more than [`LAG_NOTED`] (a 100 ms timer that
    /// fired that much later), and by how much: the machine did not schedule the client,
    /// so silences then say nothing about the network.
    pub driver_lags: Vec<(Instant, Duration)>,
}

impl TrafficReport {
    /// Connections that broke.
    pub fn lost(&self) -> Vec<&Connection> {
        self.connections
            .iter()
            .filter(|c| c.lost.is_some())
            .collect()
    }

    /// Connections not lost that went without an echo for longer than `threshold`, in a
    /// finished gap or in the one still running.
    pub fn stalled(&self, threshold: Duration) -> Vec<&Connection> {
        self.connections
            .iter()
            .filter(|c| {
                c.lost.is_none()
                    && (c.longest_gap > threshold || c.current_gap(self.at) > threshold)
            })
            .collect()
    }

    /// Connections neither lost nor stalled beyond `threshold`.
    pub fn healthy(&self, threshold: Duration) -> usize {
        self.connections.len() - self.lost().len() - self.stalled(threshold).len()
    }

    /// Connections with label `label`.
    pub fn labelled(&self, label: &str) -> usize {
        self.connections.iter().filter(|c| c.label == label).count()
    }

    /// The longest silence any connection saw that ended after `mark` (or is still
    /// running, or ended with the connection's loss), with that connection's id. Gaps of
    /// up to twice the interval are not recorded: for those only the silence since the
    /// last echo counts.
    pub fn longest_gap_after(&self, mark: Instant) -> Option<(Duration, usize)> {
        let mut longest: Option<(Duration, usize)> = None;
        for c in &self.connections {
            // A lost connection's silence ends when it broke.
            let end = c.lost.as_ref().map_or(self.at, |(at, _)| *at);
            let ongoing = c.last_echo.map(|last| (last, end));
            for (start, end) in c.gaps.iter().copied().chain(ongoing) {
                if end <= mark {
                    continue;
                }
                let gap = end.saturating_duration_since(start);
                if longest.is_none_or(|(d, _)| gap > d) {
                    longest = Some((gap, c.id));
                }
            }
        }
        longest
    }

    /// How many connections each real server holds (lost ones included).
    pub fn by_server(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for c in &self.connections {
            let server = c.server.clone().unwrap_or_else(|| "-".into());
            *counts.entry(server).or_insert(0) += 1;
        }
        counts
    }

    /// Total messages echoed.
    pub fn exchanges(&self) -> u64 {
        self.connections.iter().map(|c| c.exchanges).sum()
    }

    /// One line per lost or stalled connection, for failure messages.
    pub fn describe_problems(&self, threshold: Duration) -> String {
        let mut text = String::new();
        for c in self.lost() {
            let (at, why) = c.lost.as_ref().expect("lost");
            text.push_str(&format!(
                "  conn {} ({}, {}): LOST {:.3} s after opening: {why}; {} exchanges\n",
                c.id,
                c.label,
                c.server.as_deref().unwrap_or("-"),
                at.saturating_duration_since(c.opened).as_secs_f64(),
                c.exchanges
            ));
        }
        for c in self.stalled(threshold) {
            text.push_str(&format!(
                "  conn {} ({}, {}): STALLED, longest gap {:.3} s, silent for {:.3} s; {} exchanges\n",
                c.id,
                c.label,
                c.server.as_deref().unwrap_or("-"),
                c.longest_gap.as_secs_f64(),
                c.current_gap(self.at).as_secs_f64(),
                c.exchanges
            ));
        }
        text
    }
}

enum TrafficCommand {
    Open {
        first: usize,
        count: usize,
        /// Source addresses, taken in turn (connection `id` binds to
        /// `sources[id % len]`); empty: the kernel picks.
        sources: Arc<[IpAddr]>,
        connected: std::sync::mpsc::Sender<usize>,
    },
}

/// N long-lived connections from one lab host to `target`, opened on demand. Stops (closing
/// every connection) on [`Traffic::stop`] or drop.
#[derive(Debug)]
pub struct Traffic {
    config: TrafficConfig,
    connections: Arc<Mutex<Vec<Connection>>>,
    lags: Arc<Mutex<Vec<(Instant, Duration)>>>,
    commands: Option<mpsc::UnboundedSender<TrafficCommand>>,
    thread: Option<JoinHandle<()>>,
}

impl Traffic {
    /// Starts the driver in host `client`'s namespace; no connection yet.
    pub fn start(
        lab: &Lab,
        client: &str,
        target: SocketAddr,
        config: TrafficConfig,
    ) -> anyhow::Result<Traffic> {
        let connections = Arc::new(Mutex::new(Vec::<Connection>::new()));
        let lags = Arc::new(Mutex::new(Vec::new()));
        let (commands, mut received) = mpsc::unbounded_channel::<TrafficCommand>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot build the traffic runtime")?;
        let thread = spawn_in_netns(&lab.ns_name(client), &format!("traffic-{client}"), {
            let connections = connections.clone();
            let lags = lags.clone();
            move || {
                runtime.block_on(async move {
                    tokio::spawn(watch_lag(lags));
                    while let Some(command) = received.recv().await {
                        let TrafficCommand::Open {
                            first,
                            count,
                            sources,
                            connected,
                        } = command;
                        for (k, id) in (first..first + count).enumerate() {
                            let source = (!sources.is_empty()).then(|| sources[id % sources.len()]);
                            tokio::spawn(drive(
                                Endpoints { id, source, target },
                                config,
                                config.connect_spacing * u32::try_from(k).unwrap_or(u32::MAX),
                                connections.clone(),
                                connected.clone(),
                            ));
                        }
                    }
                });
                // The sender is gone: dropping the runtime closes every connection.
            }
        })?;
        Ok(Traffic {
            config,
            connections,
            lags,
            commands: Some(commands),
            thread: Some(thread),
        })
    }

    /// Opens `count` more connections labelled `label`, one every
    /// [`TrafficConfig::connect_spacing`], and waits until each has been greeted or failed
    /// (at most the spread plus the connect timeout plus 5 s). Returns how many are up.
    pub fn open(&self, count: usize, label: &str) -> anyhow::Result<usize> {
        self.open_from(count, label, &[])
    }

    /// Like [`Traffic::open`], each connection bound to a source address of `sources`,
    /// taken in turn by connection id (`sources[id % len]`): a client with many addresses,
    /// so that the flows spread over hash-based paths (ECMP, source hashing). The
    /// addresses must be on the client host.
    pub fn open_from(
        &self,
        count: usize,
        label: &str,
        sources: &[IpAddr],
    ) -> anyhow::Result<usize> {
        let first = {
            let mut connections = lock(&self.connections);
            let first = connections.len();
            connections.extend((first..first + count).map(|id| Connection::new(id, label)));
            first
        };
        let (connected, done) = std::sync::mpsc::channel();
        self.commands
            .as_ref()
            .context("the traffic driver stopped")?
            .send(TrafficCommand::Open {
                first,
                count,
                sources: sources.into(),
                connected,
            })
            .map_err(|_| anyhow!("the traffic driver's thread is gone"))?;
        let spread = self.config.connect_spacing * u32::try_from(count).unwrap_or(u32::MAX);
        let deadline =
            Instant::now() + spread + self.config.connect_timeout + Duration::from_secs(5);
        for _ in 0..count {
            let left = deadline.saturating_duration_since(Instant::now());
            if done.recv_timeout(left).is_err() {
                break;
            }
        }
        let connections = lock(&self.connections);
        Ok(connections[first..first + count]
            .iter()
            .filter(|c| c.server.is_some() && c.lost.is_none())
            .count())
    }

    /// A snapshot of every connection.
    pub fn report(&self) -> TrafficReport {
        TrafficReport {
            at: Instant::now(),
            connections: lock(&self.connections).clone(),
            driver_lags: lock(&self.lags).clone(),
        }
    }

    /// Closes every connection and returns the final snapshot (taken before closing).
    pub fn stop(mut self) -> TrafficReport {
        let report = self.report();
        self.shutdown();
        report
    }

    fn shutdown(&mut self) {
        self.commands.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A lateness of the driver's own 100 ms timer worth recording.
pub const LAG_NOTED: Duration = Duration::from_millis(500);

/// Notes every time a 100 ms sleep of the driver's runtime overran by more than
/// [`LAG_NOTED`]: the process (or the whole VM) was not scheduled.
async fn watch_lag(lags: Arc<Mutex<Vec<(Instant, Duration)>>>) {
    let tick = Duration::from_millis(100);
    loop {
        let before = Instant::now();
        tokio::time::sleep(tick).await;
        let late = before.elapsed().saturating_sub(tick);
        if late > LAG_NOTED {
            lock(&lags).push((before + tick, late));
        }
    }
}

/// Who one connection is: its id, its source address (if bound), and the target.
struct Endpoints {
    id: usize,
    source: Option<IpAddr>,
    target: SocketAddr,
}

/// Connects to `target`, from `source` when given.
async fn connect(
    source: Option<IpAddr>,
    target: SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let Some(source) = source else {
        return tokio::net::TcpStream::connect(target).await;
    };
    let socket = if target.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(target).await
}

/// One connection: connect, read the greeting, then a message every interval.
async fn drive(
    Endpoints { id, source, target }: Endpoints,
    config: TrafficConfig,
    delay: Duration,
    connections: Arc<Mutex<Vec<Connection>>>,
    connected: std::sync::mpsc::Sender<usize>,
) {
    let update = |f: &mut dyn FnMut(&mut Connection)| {
        if let Some(c) = lock(&connections).get_mut(id) {
            f(c);
        }
    };
    let lose = |why: String| {
        update(&mut |c| {
            if c.lost.is_none() {
                c.lost = Some((Instant::now(), why.clone()));
            }
        })
    };
    tokio::time::sleep(delay).await;
    if let Some(c) = lock(&connections).get_mut(id) {
        c.opened = Instant::now();
    }
    let opened = tokio::time::timeout(config.connect_timeout, async {
        let mut stream = connect(source, target).await?;
        stream.set_nodelay(true)?;
        let mut greeting = [0u8; GREETING_LEN];
        stream.read_exact(&mut greeting).await?;
        Ok::<_, std::io::Error>((stream, greeting))
    })
    .await;
    let mut stream = match opened {
        Ok(Ok((stream, greeting))) => {
            let name = String::from_utf8_lossy(&greeting).trim_end().to_owned();
            update(&mut |c| {
                c.server = Some(name.clone());
                c.last_echo = Some(Instant::now());
            });
            let _ = connected.send(id);
            stream
        }
        Ok(Err(e)) => {
            lose(format!("connect: {e}"));
            let _ = connected.send(id);
            return;
        }
        Err(_) => {
            lose(format!(
                "connect: no greeting within {:?}",
                config.connect_timeout
            ));
            let _ = connected.send(id);
            return;
        }
    };
    drop(connected);
    // Spread the connections over the interval so that they do not send in lockstep.
    let spread = config.interval.mul_f64((id % 97) as f64 / 97.0);
    let mut next = tokio::time::Instant::now() + spread;
    let id32 = u32::try_from(id).unwrap_or(u32::MAX);
    let mut message = [0u8; MESSAGE_LEN];
    message[..4].copy_from_slice(MESSAGE_MAGIC);
    message[4..8].copy_from_slice(&id32.to_be_bytes());
    let mut echo = [0u8; MESSAGE_LEN];
    let notable = config.interval * 2;
    for seq in 1u64.. {
        tokio::time::sleep_until(next).await;
        message[8..16].copy_from_slice(&seq.to_be_bytes());
        if let Err(e) = stream.write_all(&message).await {
            lose(format!("write: {e}"));
            return;
        }
        match stream.read_exact(&mut echo).await {
            Ok(_) if echo == message => {}
            Ok(_) => {
                lose(format!("wrong echo for message {seq}: {echo:02x?}"));
                return;
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                lose("EOF: the server side closed".into());
                return;
            }
            Err(e) => {
                lose(format!("read: {e}"));
                return;
            }
        }
        let now = Instant::now();
        update(&mut |c| {
            c.exchanges += 1;
            if let Some(last) = c.last_echo {
                let gap = now.saturating_duration_since(last);
                c.longest_gap = c.longest_gap.max(gap);
                if gap > notable {
                    c.gaps.push((last, now));
                }
            }
            c.last_echo = Some(now);
        });
        next = (next + config.interval).max(tokio::time::Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(id: usize, gaps: &[(u64, u64)], last_ms: u64, t0: Instant) -> Connection {
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        Connection {
            id,
            label: "t".into(),
            opened: t0,
            server: Some("rs1".into()),
            exchanges: 10,
            last_echo: Some(at(last_ms)),
            longest_gap: gaps
                .iter()
                .map(|&(a, b)| Duration::from_millis(b - a))
                .max()
                .unwrap_or(Duration::from_millis(100)),
            gaps: gaps.iter().map(|&(a, b)| (at(a), at(b))).collect(),
            lost: None,
        }
    }

    #[test]
    fn longest_gap_after_the_mark_includes_a_gap_still_running() {
        let t0 = Instant::now();
        let report = TrafficReport {
            at: t0 + Duration::from_millis(10_000),
            connections: vec![
                connection(0, &[(1000, 1500)], 9_950, t0),
                connection(1, &[(2000, 2300)], 6_000, t0),
            ],
            driver_lags: Vec::new(),
        };
        // conn 1 has been silent for 4 s when the report is taken.
        assert_eq!(
            report.longest_gap_after(t0 + Duration::from_millis(1800)),
            Some((Duration::from_millis(4000), 1))
        );
        assert_eq!(report.stalled(Duration::from_secs(3)).len(), 1);
        assert_eq!(report.healthy(Duration::from_secs(3)), 1);
    }

    #[test]
    fn gaps_that_ended_before_the_mark_do_not_count() {
        let t0 = Instant::now();
        let report = TrafficReport {
            at: t0 + Duration::from_millis(5_000),
            connections: vec![connection(0, &[(1000, 4000)], 4_950, t0)],
            driver_lags: Vec::new(),
        };
        // Only the 50 ms since the last echo is after the mark.
        assert_eq!(
            report.longest_gap_after(t0 + Duration::from_millis(4500)),
            Some((Duration::from_millis(50), 0))
        );
        // But the 3 s gap makes it stalled beyond 2 s.
        assert_eq!(report.stalled(Duration::from_secs(2)).len(), 1);
        assert!(report.lost().is_empty());
    }
}
