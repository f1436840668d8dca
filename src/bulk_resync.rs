//! The bulk-resync driver: the tokio task that runs the sans-IO machine
//! [`haldir_ipvs::resync::Resync`] (the protocol, its rules and its status; the why and how
//! are in that module and in `docs/bulk_resync.md`).
//!
//! It owns the UDP socket on the sync interface (group, sync port + 1), one sleep for the
//! machine's deadline, and the I/O the machine asks for: reading the kernel sync socket's
//! drops in `/proc/net/udp`, dumping this namespace's connection table
//! (`/proc/net/ip_vs_conn` and the IPVS service table over netlink, read and packed off
//! the runtime's thread, which also drives VRRP) to the sync group at the asked pace, and
//! the VRRP driver's `HoldPreemption` commands. It feeds the machine the running
//! configuration, the sync-daemon roles and the followed instance's state (with the
//! instances a hold covers, [`haldir_director::hold`]), and publishes the machine's
//! [`ResyncStatus`] on a watch channel for status and metrics.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use haldir_config::{LvsSyncDaemon, Model};
use haldir_ipvs::client::DaemonRole;
use haldir_ipvs::conn_table::{parse_conn_table, ServiceIndex, Skip};
use haldir_ipvs::resync::{
    kernel_receive_drops, pacing, Action, Addresses, DumpReport, Event, FollowedInstance,
    InstanceState, Level, Resync, ResyncConfig, ResyncStatus, Transmit, RESYNC_TTL,
};
use haldir_ipvs::sync_wire::{pack, ResyncMessage};
use haldir_ipvs::IpvsClient;
use haldir_vrrp::driver::{DriverCommand, Status};
use haldir_vrrp::router::State;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

pub use haldir_director::hold::held_at_start;

/// Where this namespace's connection table is.
const CONN_TABLE: &str = "/proc/net/ip_vs_conn";

/// The addresses `config` implies (the kernel's defaults where unset).
pub fn addresses(config: &LvsSyncDaemon) -> Addresses {
    Addresses::new(config.group, config.port, config.max_len)
}

/// What the machine needs of `config`: its addresses, and the followed instance's
/// `auth_hmac` (keys and mode) and `unicast_peer`s (the only requesters answered).
fn resync_config(config: &LvsSyncDaemon, model: &Model) -> ResyncConfig {
    let instance = config
        .instance
        .as_ref()
        .and_then(|name| model.vrrp_instances.iter().find(|i| &i.name == name));
    ResyncConfig {
        sync_id: config.sync_id,
        addresses: addresses(config),
        auth: instance.and_then(|i| {
            i.auth_hmac
                .as_ref()
                .map(|a| haldir_director::vrrp_specs::auth_config(a, i.advert_int_centis))
        }),
        peers: instance.map(|i| i.unicast_peer.clone()).unwrap_or_default(),
    }
}

struct Endpoint {
    socket: UdpSocket,
    addresses: Addresses,
    index: u32,
    interface: String,
}

/// The address this router sends resync messages from on `interface` to `to` (forced with
/// `IP_PKTINFO` / `IPV6_PKTINFO`, as the HMAC binds it): IPv4, the interface's first
/// (primary) address whose subnet holds `to`, else its first; IPv6, its link-local address.
fn source_address(interface: &str, to: IpAddr) -> Option<IpAddr> {
    let addresses: Vec<(IpAddr, Option<IpAddr>)> = nix::ifaddrs::getifaddrs()
        .ok()?
        .filter(|a| a.interface_name == interface)
        .filter_map(|a| {
            let address = a.address?;
            let mask = a.netmask;
            if let Some(v4) = address.as_sockaddr_in() {
                let mask = mask.and_then(|m| m.as_sockaddr_in().map(|m| IpAddr::V4(m.ip())));
                Some((IpAddr::V4(v4.ip()), mask))
            } else {
                address
                    .as_sockaddr_in6()
                    .map(|v6| (IpAddr::V6(v6.ip()), None))
            }
        })
        .collect();
    match to {
        IpAddr::V4(to) => {
            let v4: Vec<(Ipv4Addr, Ipv4Addr)> = addresses
                .iter()
                .filter_map(|(a, m)| match (a, m) {
                    (IpAddr::V4(a), Some(IpAddr::V4(m))) => Some((*a, *m)),
                    (IpAddr::V4(a), None) => Some((*a, Ipv4Addr::BROADCAST)),
                    _ => None,
                })
                .collect();
            let in_subnet = |(a, m): &&(Ipv4Addr, Ipv4Addr)| {
                u32::from(*a) & u32::from(*m) == u32::from(to) & u32::from(*m)
            };
            v4.iter()
                .find(in_subnet)
                .or(v4.first())
                .map(|(a, _)| IpAddr::V4(*a))
        }
        IpAddr::V6(_) => addresses.iter().find_map(|(a, _)| match a {
            IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => Some(*a),
            _ => None,
        }),
    }
}

/// Receives one datagram with the TTL (hop limit) it arrived with.
fn receive_with_ttl(
    fd: std::os::fd::RawFd,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, Option<u8>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!(libc::c_int, libc::c_int);
    let message =
        recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut space), MsgFlags::MSG_DONTWAIT)?;
    let ttl = message.cmsgs()?.find_map(|c| match c {
        ControlMessageOwned::Ipv4Ttl(ttl) => u8::try_from(ttl).ok(),
        ControlMessageOwned::Ipv6HopLimit(hops) => u8::try_from(hops).ok(),
        _ => None,
    });
    let from = message
        .address
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| SocketAddr::new(IpAddr::V4(v4.ip()), v4.port()))
                .or_else(|| {
                    a.as_sockaddr_in6().map(|v6| {
                        SocketAddr::V6(std::net::SocketAddrV6::new(
                            v6.ip(),
                            v6.port(),
                            v6.flowinfo(),
                            v6.scope_id(),
                        ))
                    })
                })
        })
        .ok_or_else(|| std::io::Error::other("datagram without a source address"))?;
    Ok((message.bytes, from, ttl))
}

/// Sends `bytes` to `to` from `source` with TTL (hop limit) [`RESYNC_TTL`].
fn send_control(
    fd: std::os::fd::RawFd,
    index: u32,
    source: IpAddr,
    bytes: &[u8],
    to: SocketAddr,
) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, SockaddrStorage};
    let iov = [std::io::IoSlice::new(bytes)];
    let ttl = libc::c_int::from(RESYNC_TTL);
    let to = match to {
        // A link-local destination names its interface.
        SocketAddr::V6(v6) if v6.scope_id() == 0 && v6.ip().segments()[0] & 0xffc0 == 0xfe80 => {
            SocketAddr::V6(std::net::SocketAddrV6::new(*v6.ip(), v6.port(), 0, index))
        }
        other => other,
    };
    let destination = SockaddrStorage::from(to);
    let sent = match source {
        IpAddr::V4(source) => {
            let info = libc::in_pktinfo {
                ipi_ifindex: index as libc::c_int,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(source).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            let cmsgs = [
                ControlMessage::Ipv4PacketInfo(&info),
                ControlMessage::Ipv4Ttl(&ttl),
            ];
            sendmsg(fd, &iov, &cmsgs, MsgFlags::MSG_DONTWAIT, Some(&destination))
        }
        IpAddr::V6(source) => {
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: source.octets(),
                },
                ipi6_ifindex: index,
            };
            let cmsgs = [
                ControlMessage::Ipv6PacketInfo(&info),
                ControlMessage::Ipv6HopLimit(&ttl),
            ];
            sendmsg(fd, &iov, &cmsgs, MsgFlags::MSG_DONTWAIT, Some(&destination))
        }
    };
    sent.map(|_| ()).map_err(std::io::Error::from)
}

impl Endpoint {
    fn open(config: &LvsSyncDaemon) -> anyhow::Result<Endpoint> {
        use socket2::{Domain, Protocol, Socket, Type};
        let addresses = addresses(config);
        let index = nix::net::if_::if_nametoindex(config.interface.as_str())
            .map_err(|e| anyhow::anyhow!("interface {}: {e}", config.interface))?;
        let socket = Socket::new(
            Domain::for_address(SocketAddr::new(addresses.group, 0)),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        socket.set_reuse_address(true)?;
        socket.bind_device(Some(config.interface.as_bytes()))?;
        let ttl = u32::from(config.ttl.unwrap_or(1));
        match addresses.group {
            IpAddr::V4(group) => {
                socket.bind(
                    &SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), addresses.control_port).into(),
                )?;
                socket
                    .join_multicast_v4_n(&group, &socket2::InterfaceIndexOrAddress::Index(index))?;
                socket.set_multicast_loop_v4(false)?;
                socket.set_multicast_ttl_v4(ttl)?;
            }
            IpAddr::V6(group) => {
                socket.set_only_v6(true)?;
                socket.bind(
                    &SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), addresses.control_port).into(),
                )?;
                socket.join_multicast_v6(&group, index)?;
                socket.set_multicast_if_v6(index)?;
                socket.set_multicast_loop_v6(false)?;
                socket.set_multicast_hops_v6(ttl)?;
            }
        }
        // The TTL each control message arrived with (`RESYNC_TTL` required).
        if addresses.group.is_ipv4() {
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::Ipv4RecvTtl, &true)?;
        } else {
            nix::sys::socket::setsockopt(
                &socket,
                nix::sys::socket::sockopt::Ipv6RecvHopLimit,
                &true,
            )?;
        }
        socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(socket.into())?;
        Ok(Endpoint {
            socket,
            addresses,
            index,
            interface: config.interface.clone(),
        })
    }

    /// A request or DONE, sent from this router's own address with TTL [`RESYNC_TTL`].
    async fn send_control(&self, machine: &mut Resync, transmit: &Transmit) -> std::io::Result<()> {
        use std::os::fd::AsRawFd as _;
        let source = source_address(&self.interface, transmit.to.ip()).ok_or_else(|| {
            std::io::Error::other(format!("{} has no address to send from", self.interface))
        })?;
        let bytes = machine.encode(wall_clock(), source, transmit);
        loop {
            self.socket.writable().await?;
            match self.socket.try_io(tokio::io::Interest::WRITABLE, || {
                send_control(
                    self.socket.as_raw_fd(),
                    self.index,
                    source,
                    &bytes,
                    transmit.to,
                )
            }) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    async fn receive(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr, Option<u8>)> {
        use std::os::fd::AsRawFd as _;
        loop {
            self.socket.readable().await?;
            match self.socket.try_io(tokio::io::Interest::READABLE, || {
                receive_with_ttl(self.socket.as_raw_fd(), buf)
            }) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    async fn send(&self, bytes: &[u8], to: SocketAddr) -> std::io::Result<()> {
        // ENOBUFS: the interface queue is full; wait a little and try again.
        let mut tries = 0;
        loop {
            match self.socket.send_to(bytes, to).await {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) && tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The wall-clock time since the Unix epoch (the authentication's sequence numbers).
fn wall_clock() -> Duration {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// A random seed for the machine's request nonces.
fn nonce_seed() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one((
        std::process::id(),
        SystemTime::now(),
        Instant::now(),
    ))
}

async fn read_receive_drops(addresses: &Addresses) -> Option<u64> {
    let text = read_proc("/proc/net/udp").await.ok()?;
    kernel_receive_drops(&text, addresses.group, addresses.sync_port)
}

/// Reads a /proc file with a large buffer (few read calls: a seq_file such as
/// `ip_vs_conn` walks the kernel's table again from the start for each).
fn read_proc_blocking(path: &str) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut text = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut chunk)? {
            0 => break,
            n => text.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8(text).map_err(std::io::Error::other)
}

/// [`read_proc_blocking`] off the runtime's thread.
async fn read_proc(path: &'static str) -> std::io::Result<String> {
    tokio::task::spawn_blocking(move || read_proc_blocking(path))
        .await
        .map_err(std::io::Error::other)?
}

/// A dump ready to send.
struct PreparedDump {
    datagrams: Vec<Vec<u8>>,
    entries: u32,
    records: u32,
    skipped: BTreeMap<String, u32>,
}

/// Reads this namespace's connection table and turns it into sync messages.
fn prepare_dump(
    table: &haldir_ipvs::Table,
    sync_id: u8,
    max_len: usize,
) -> anyhow::Result<PreparedDump> {
    let text = read_proc_blocking(CONN_TABLE).map_err(|e| anyhow::anyhow!("{CONN_TABLE}: {e}"))?;
    let (entries, errors) = parse_conn_table(&text);
    if !errors.is_empty() {
        warn!(
            "bulk resync: {} unreadable lines in {CONN_TABLE} (first: line {}: {})",
            errors.len(),
            errors[0].line,
            errors[0].reason
        );
    }
    let index = ServiceIndex::new(table);
    let mut records = Vec::with_capacity(entries.len());
    let mut skipped: BTreeMap<String, u32> = BTreeMap::new();
    for entry in &entries {
        match entry.to_sync(&index) {
            Ok(record) => records.push(record),
            Err(skip) => {
                let reason = match skip {
                    Skip::NoService => "no_service",
                    Skip::PeData => "pe_data",
                    Skip::Expiring => "expiring",
                    Skip::UnknownState => "unknown_state",
                };
                *skipped.entry(reason.to_owned()).or_default() += 1
            }
        }
    }
    let (datagrams, too_big) = pack(sync_id, &records, max_len);
    if too_big > 0 {
        skipped.insert("larger_than_maxlen".to_owned(), too_big as u32);
    }
    Ok(PreparedDump {
        datagrams,
        entries: entries.len() as u32,
        records: (records.len() - too_big) as u32,
        skipped,
    })
}

/// The machine and the I/O it asks for.
struct Driver {
    machine: Resync,
    /// The running `lvs_sync_daemon`, bulk resync on.
    config: Option<LvsSyncDaemon>,
    /// What the machine was last configured with.
    resync: Option<ResyncConfig>,
    endpoint: Option<Endpoint>,
    open_error: Option<String>,
    client: Option<IpvsClient>,
    commands: mpsc::Sender<DriverCommand>,
    published: watch::Sender<ResyncStatus>,
    /// A fixed time for [`Driver::publish`]'s change detection.
    anchor: Instant,
    /// The status at `anchor` last published.
    shown: Option<ResyncStatus>,
}

/// Starts the task. `roles` are the sync-daemon roles running
/// (`src/sync_daemon.rs`); `status` and `commands` are the VRRP driver's,
/// for the preemption hold; `held_at_start` the instances the driver starts
/// with their preemption held ([`held_at_start`]): this task lifts it;
/// `published` receives the bulk-resync status whenever it changes.
pub fn spawn(
    running: watch::Receiver<std::sync::Arc<Model>>,
    roles: watch::Receiver<Vec<DaemonRole>>,
    status: watch::Receiver<Status>,
    commands: mpsc::Sender<DriverCommand>,
    shutdown: watch::Receiver<bool>,
    held_at_start: Vec<String>,
    published: watch::Sender<ResyncStatus>,
) -> JoinHandle<()> {
    tokio::spawn(run(
        running,
        roles,
        status,
        commands,
        shutdown,
        held_at_start,
        published,
    ))
}

async fn recv(
    endpoint: &Option<Endpoint>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, Option<u8>)> {
    match endpoint {
        Some(e) => e.receive(buf).await,
        None => std::future::pending().await,
    }
}

/// The followed instance as the machine's hold sees it.
fn followed_instance(
    config: Option<&LvsSyncDaemon>,
    model: &Model,
    status: &Status,
) -> Option<FollowedInstance> {
    let name = config?.instance.as_ref()?;
    let instance = status.instances.iter().find(|i| &i.name == name)?;
    Some(FollowedInstance {
        name: name.clone(),
        state: match instance.state {
            State::Initialize => InstanceState::Initialize,
            State::Backup => InstanceState::Backup,
            State::Master | State::Fault => InstanceState::Other,
        },
        master: instance.master,
        hold: haldir_director::hold::instances_to_hold(model, name),
    })
}

async fn run(
    mut running: watch::Receiver<std::sync::Arc<Model>>,
    mut roles: watch::Receiver<Vec<DaemonRole>>,
    mut status: watch::Receiver<Status>,
    commands: mpsc::Sender<DriverCommand>,
    mut shutdown: watch::Receiver<bool>,
    held_at_start: Vec<String>,
    published: watch::Sender<ResyncStatus>,
) {
    let started = Instant::now();
    let mut driver = Driver {
        machine: Resync::new(started, held_at_start, nonce_seed()),
        config: None,
        resync: None,
        endpoint: None,
        open_error: None,
        client: None,
        commands,
        published,
        anchor: started,
        shown: None,
    };
    let mut buf = vec![0u8; 2048];
    let (mut roles_closed, mut status_closed) = (false, false);
    // The one sleep: the machine's next deadline, reset when it changes.
    let sleep = tokio::time::sleep_until(started.into());
    tokio::pin!(sleep);
    let mut deadline: Option<Instant> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let (config, resync) = {
            let model = running.borrow_and_update();
            let config = model.lvs_sync_daemon.clone().filter(|c| c.bulk_resync);
            let resync = config.as_ref().map(|c| resync_config(c, &model));
            (config, resync)
        };
        if config != driver.config || resync != driver.resync {
            driver.endpoint = None;
            driver.open_error = None;
            if let Some(resync) = resync.as_ref().filter(|r| r.auth.is_none()) {
                warn!(
                    "bulk resync is not authenticated: any host on {} that sends a request from {} gets the connection table, and a forged DONE lifts the preemption hold; give the followed instance an auth_hmac (docs/bulk_resync.md)",
                    config.as_ref().map_or("", |c| c.interface.as_str()),
                    if resync.peers.is_empty() { "any address".to_owned() } else { "a unicast_peer address".to_owned() },
                );
            }
            driver.machine.handle_config(Instant::now(), resync.clone());
            driver.config = config;
            driver.resync = resync;
        }
        driver.open();
        let now_roles = roles.borrow_and_update().clone();
        driver.machine.handle_roles(Instant::now(), &now_roles);
        let followed = followed_instance(
            driver.config.as_ref(),
            &running.borrow(),
            &status.borrow_and_update(),
        );
        driver.machine.handle_instance(Instant::now(), followed);
        driver.carry_out().await;
        let next = driver.machine.poll_timeout();
        if next != deadline {
            deadline = next;
            if let Some(at) = next {
                sleep.as_mut().reset(at.into());
            }
        }
        enum Wake {
            Stop,
            Changed,
            Packet(usize, SocketAddr, Option<u8>),
            ReceiveError,
            Timeout,
        }
        let wake = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => Wake::Stop,
            changed = running.changed() => if changed.is_err() { Wake::Stop } else { Wake::Changed },
            // The sync-daemon task ends when the kernel has no IPVS, and the
            // driver's status may end before us: the last value stays.
            changed = roles.changed(), if !roles_closed => {
                roles_closed = changed.is_err();
                Wake::Changed
            }
            changed = status.changed(), if !status_closed => {
                status_closed = changed.is_err();
                Wake::Changed
            }
            received = recv(&driver.endpoint, &mut buf) => match received {
                Ok((len, from, ttl)) => Wake::Packet(len, from, ttl),
                Err(e) => {
                    debug!("bulk resync: receive: {e}");
                    Wake::ReceiveError
                }
            },
            () = &mut sleep, if deadline.is_some() => Wake::Timeout,
        };
        match wake {
            Wake::Stop => break,
            Wake::Changed => {}
            Wake::Packet(len, from, ttl) => {
                driver
                    .machine
                    .handle_packet(Instant::now(), wall_clock(), from, ttl, &buf[..len])
            }
            Wake::ReceiveError => tokio::time::sleep(Duration::from_millis(50)).await,
            Wake::Timeout => driver.machine.handle_timeout(Instant::now()),
        }
    }
    driver.machine.handle_stop(Instant::now());
    driver.carry_out().await;
}

impl Driver {
    /// Opens the socket when bulk resync is on and it is not open yet.
    fn open(&mut self) {
        if self.endpoint.is_some() {
            return;
        }
        let Some(config) = &self.config else {
            return;
        };
        match Endpoint::open(config) {
            Ok(endpoint) => {
                info!(
                    group = %endpoint.addresses.group,
                    port = endpoint.addresses.control_port,
                    "bulk resync: listening on {}",
                    config.interface
                );
                self.endpoint = Some(endpoint);
                self.open_error = None;
                // A backup role taken before the socket opened asks now.
                self.machine.handle_listening(Instant::now());
            }
            Err(e) => {
                let text = e.to_string();
                if self.open_error.as_ref() != Some(&text) {
                    warn!("bulk resync: cannot open its socket: {text}; retrying");
                    self.open_error = Some(text);
                }
            }
        }
    }

    /// Carries out everything the machine asks for, then publishes its status.
    async fn carry_out(&mut self) {
        loop {
            while let Some(event) = self.machine.poll_event() {
                log(&event);
            }
            if let Some(transmit) = self.machine.poll_transmit() {
                self.transmit(transmit).await;
                continue;
            }
            let Some(action) = self.machine.poll_action() else {
                break;
            };
            match action {
                Action::ReadKernelDrops => {
                    let drops = match self.endpoint.as_ref().map(|e| e.addresses) {
                        Some(addresses) => read_receive_drops(&addresses).await,
                        None => None,
                    };
                    self.machine.handle_kernel_drops(Instant::now(), drops);
                }
                Action::Dump { to: _, pace } => {
                    let outcome = self.dump(pace).await.map_err(|e| e.to_string());
                    self.machine.handle_dump_finished(Instant::now(), outcome);
                }
                Action::HoldPreemption { instances, held } => {
                    for instance in instances {
                        let command = DriverCommand::HoldPreemption { instance, held };
                        if self.commands.send(command).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
        self.publish();
    }

    async fn transmit(&mut self, transmit: Transmit) {
        let Some(endpoint) = &self.endpoint else {
            return;
        };
        if let Err(e) = endpoint.send_control(&mut self.machine, &transmit).await {
            match transmit.message {
                ResyncMessage::Request(_) => {
                    warn!("bulk resync: sending the request to {}: {e}", transmit.to)
                }
                ResyncMessage::Done(_) => {
                    warn!("bulk resync: sending DONE to {}: {e}", transmit.to)
                }
            }
        }
    }

    /// Publishes the status when it changed (compared at a fixed time, so that the unix
    /// times computed from `now` do not count as changes).
    fn publish(&mut self) {
        let probe = self.machine.status(self.anchor, 0.0);
        if self.shown.as_ref() == Some(&probe) {
            return;
        }
        self.shown = Some(probe);
        self.published.send_replace(
            self.machine
                .status(Instant::now(), haldir_status::time::unix_now()),
        );
    }

    async fn dump(&mut self, pace: u8) -> anyhow::Result<DumpReport> {
        let started = Instant::now();
        let (Some(config), Some(endpoint)) = (&self.config, &self.endpoint) else {
            anyhow::bail!("no socket");
        };
        if self.client.is_none() {
            self.client = Some(IpvsClient::connect().await?);
        }
        let table = match &self.client {
            Some(client) => client.table().await?,
            None => unreachable!("connected above"),
        };
        // Reading, parsing and packing are CPU work (a 10,000-entry table costs the
        // kernel a walk per read call): off the runtime, which also drives VRRP.
        let (sync_id, max_len) = (config.sync_id, endpoint.addresses.max_len);
        let prepared = tokio::task::spawn_blocking(move || prepare_dump(&table, sync_id, max_len))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))??;
        let read_millis = started.elapsed().as_millis() as u64;
        let to = SocketAddr::new(endpoint.addresses.group, endpoint.addresses.sync_port);
        let (burst, gap) = pacing(pace);
        let datagrams = &prepared.datagrams;
        for (i, datagram) in datagrams.iter().enumerate() {
            endpoint.send(datagram, to).await?;
            if (i + 1) % burst == 0 && i + 1 < datagrams.len() {
                tokio::time::sleep(gap).await;
            }
        }
        Ok(DumpReport {
            read_millis,
            entries: prepared.entries,
            records: prepared.records,
            messages: datagrams.len() as u32,
            skipped: prepared.skipped,
        })
    }
}

/// One log line for a machine event.
fn log(event: &Event) {
    match event.level() {
        Level::Debug => debug!("bulk resync: {event}"),
        Level::Info => info!("bulk resync: {event}"),
        Level::Warn => warn!("bulk resync: {event}"),
        Level::Error => error!("bulk resync: {event}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haldir_ipvs::sync_wire::DEFAULT_GROUP_V4;

    fn config() -> LvsSyncDaemon {
        LvsSyncDaemon {
            interface: "eth1".into(),
            instance: Some("VI_1".into()),
            sync_id: 7,
            max_len: None,
            port: None,
            ttl: None,
            group: None,
            bulk_resync: true,
        }
    }

    #[test]
    fn addresses_follow_the_kernel_defaults_and_the_configuration() {
        let a = addresses(&config());
        assert_eq!(a.group, IpAddr::V4(DEFAULT_GROUP_V4));
        assert_eq!((a.sync_port, a.control_port, a.max_len), (8848, 8849, 1472));
        let mut c = config();
        c.group = Some("ff02::8148".parse().unwrap());
        c.port = Some(9000);
        c.max_len = Some(1200);
        let a = addresses(&c);
        assert_eq!((a.sync_port, a.control_port, a.max_len), (9000, 9001, 1200));
        c.max_len = None;
        assert_eq!(addresses(&c).max_len, 1452);
    }

    #[test]
    fn the_resync_is_keyed_and_bounded_by_the_followed_instance() {
        let model = haldir_config::parse_toml(
            &format!(
                r#"
[global_defs]
lvs_sync_daemon = {{ interface = "eth1", instance = "VI_1", id = 7 }}

[[vrrp_instance]]
name = "VI_1"
interface = "eth1"
virtual_router_id = 1
priority = 150
unicast_peer = ["10.1.0.2"]
virtual_ipaddress = ["10.1.0.100/24"]
auth_hmac = {{ key = [{{ id = 3, value = "{}" }}], active_key = 3, mode = "permissive" }}
"#,
                "ab".repeat(32)
            ),
            "test.toml",
        )
        .unwrap();
        let resync = resync_config(model.lvs_sync_daemon.as_ref().unwrap(), &model);
        assert_eq!(resync.sync_id, 7);
        assert_eq!(resync.peers, vec!["10.1.0.2".parse::<IpAddr>().unwrap()]);
        let auth = resync.auth.unwrap();
        assert_eq!((auth.active_key, auth.keys[0].secret.len()), (3, 64));
        assert_eq!(auth.mode, haldir_vrrp::auth::Mode::Permissive);
    }
}
