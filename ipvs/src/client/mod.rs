//! The async IPVS client (tokio): one `genetlink` connection for single
//! requests and listings, and a blocking socket on the blocking pool for the
//! bulk paths (pipelined [`IpvsClient::apply_batch`], whole-table
//! [`IpvsClient::table`]).
//!
//! Kernel errors become [`IpvsError`]s that name the service or destination;
//! a kernel without the family says to load `ip_vs`.

mod bulk;
mod convert;
mod error;
mod op_wire;

use std::net::IpAddr;
use std::sync::Arc;

use futures::StreamExt;
use genetlink::{GenetlinkError, GenetlinkHandle};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_generic::GenlMessage;

pub use convert::{DestEntry, ServiceEntry};
pub use error::IpvsError;

use crate::apply::Applier;
use crate::diff::Op;
use crate::model::{DestKey, Destination, Service, ServiceKey, Table};
use crate::netlink::{
    DaemonAttribute, DaemonState, InfoAttribute, IpvsAttribute, IpvsCommand, IpvsMessage,
};
use bulk::BulkSocket;

/// What GET_INFO reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    /// IPVS version (major, minor, patch), e.g. (1, 2, 1).
    pub version: (u8, u8, u8),
    /// Size of the connection hash table.
    pub conn_table_size: u32,
}

/// Connection timeouts in seconds (`ipvsadm --set`). In
/// [`IpvsClient::set_timeouts`], 0 leaves a value unchanged (`ip_vs_set_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeouts {
    /// Established TCP sessions.
    pub tcp_secs: u32,
    /// TCP sessions after a FIN.
    pub tcp_fin_secs: u32,
    /// UDP.
    pub udp_secs: u32,
}

/// The role of a connection-sync daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DaemonRole {
    /// Sends the connection table (the active router).
    Master,
    /// Receives it (the standby).
    Backup,
}

impl DaemonRole {
    fn state(self) -> DaemonState {
        match self {
            DaemonRole::Master => DaemonState::Master,
            DaemonRole::Backup => DaemonState::Backup,
        }
    }
}

/// A connection-sync daemon, to start or as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncDaemon {
    /// Master or backup.
    pub role: DaemonRole,
    /// Interface the sync messages go out / come in on.
    pub interface: String,
    /// Sync id (0..=255): only messages with the same id are accepted.
    pub sync_id: u8,
    /// UDP payload size; `None` = the kernel's default (from the MTU).
    pub max_len: Option<u16>,
    /// Multicast group; `None` = 224.0.0.81.
    pub group: Option<IpAddr>,
    /// UDP port; `None` = 8848.
    pub port: Option<u16>,
    /// Multicast TTL; `None` = 1.
    pub ttl: Option<u8>,
}

/// The IPVS client. Cheap to share by reference: every method takes `&self`.
pub struct IpvsClient {
    handle: GenetlinkHandle,
    family_id: u16,
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for IpvsClient {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl std::fmt::Debug for IpvsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpvsClient")
            .field("family_id", &self.family_id)
            .finish_non_exhaustive()
    }
}

impl IpvsClient {
    /// Opens a generic-netlink connection and resolves the "IPVS" family.
    /// Must run inside a tokio runtime. Fails with [`IpvsError::NoIpvs`] when
    /// the kernel has no IPVS (the family is unknown: ENOENT).
    pub async fn connect() -> Result<IpvsClient, IpvsError> {
        let (connection, handle, _) =
            genetlink::new_connection().map_err(|e| IpvsError::Transport(e.to_string()))?;
        let connection = tokio::spawn(connection);
        let family = match handle.resolve_family::<IpvsMessage>().await {
            Ok(family) => family,
            Err(e) => {
                connection.abort();
                return Err(resolve_error(e));
            }
        };
        Ok(IpvsClient {
            handle,
            family_id: family.id,
            connection,
        })
    }

    /// The family id the controller assigned to "IPVS".
    pub fn family_id(&self) -> u16 {
        self.family_id
    }

    /// Sends `message` and collects the replies: with `dump`, every message
    /// of the dump; otherwise the reply (if any) before the ACK. An error
    /// reply becomes `on_errno(errno)`.
    pub async fn request(
        &self,
        message: IpvsMessage,
        dump: bool,
        on_errno: impl FnOnce(i32) -> IpvsError,
    ) -> Result<Vec<IpvsMessage>, IpvsError> {
        let mut genl = GenlMessage::from_payload(message);
        genl.set_resolved_family_id(self.family_id);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
        let mut netlink = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(genl));
        netlink.finalize();
        let mut handle = self.handle.clone();
        let mut replies = handle
            .send_request(netlink)
            .map_err(|e| IpvsError::Transport(e.to_string()))?;
        let mut messages = Vec::new();
        while let Some(reply) = replies.next().await {
            let reply = reply.map_err(|e| IpvsError::Decode(e.to_string()))?;
            match reply.payload {
                NetlinkPayload::InnerMessage(genl) => messages.push(genl.payload),
                NetlinkPayload::Error(e) => match e.code {
                    Some(code) => return Err(on_errno(-code.get())),
                    None => break,
                },
                NetlinkPayload::Done(_) => break,
                _ => {}
            }
        }
        Ok(messages)
    }

    async fn command(&self, message: IpvsMessage, operation: &str) -> Result<(), IpvsError> {
        self.request(message, false, |errno| {
            IpvsError::for_request(operation, errno)
        })
        .await
        .map(drop)
    }

    /// IPVS version and connection table size.
    pub async fn info(&self) -> Result<Info, IpvsError> {
        let replies = self
            .request(
                IpvsMessage::new(IpvsCommand::GetInfo, vec![]),
                false,
                |errno| IpvsError::for_request("get IPVS info", errno),
            )
            .await?;
        let mut info = Info {
            version: (0, 0, 0),
            conn_table_size: 0,
        };
        for attribute in replies.iter().flat_map(|m| &m.attributes) {
            match attribute {
                IpvsAttribute::Info(InfoAttribute::Version(v)) => {
                    info.version = ((v >> 16) as u8, (v >> 8) as u8, *v as u8)
                }
                IpvsAttribute::Info(InfoAttribute::ConnTabSize(n)) => info.conn_table_size = *n,
                _ => {}
            }
        }
        Ok(info)
    }

    /// Every service in the kernel (of this network namespace).
    pub async fn services(&self) -> Result<Vec<ServiceEntry>, IpvsError> {
        let replies = self
            .request(
                IpvsMessage::new(IpvsCommand::GetService, vec![]),
                true,
                |errno| IpvsError::for_request("list services", errno),
            )
            .await?;
        replies
            .iter()
            .filter_map(|m| m.service())
            .map(|attributes| convert::service_entry(attributes).map_err(IpvsError::Decode))
            .collect()
    }

    /// One service's settings and counters (`None`: the kernel has no such
    /// service; it answers ESRCH, `ip_vs_genl_get_cmd`).
    pub async fn service(&self, key: &ServiceKey) -> Result<Option<ServiceEntry>, IpvsError> {
        let request = IpvsMessage::new(
            IpvsCommand::GetService,
            vec![IpvsAttribute::Service(convert::service_key_attributes(key))],
        );
        let operation = format!("get service {key}");
        let missing = std::sync::atomic::AtomicBool::new(false);
        let replies = self
            .request(request, false, |errno| {
                missing.store(errno == libc::ESRCH, std::sync::atomic::Ordering::Relaxed);
                IpvsError::for_request(&operation, errno)
            })
            .await;
        match replies {
            Err(_) if missing.load(std::sync::atomic::Ordering::Relaxed) => Ok(None),
            Err(e) => Err(e),
            Ok(replies) => replies
                .iter()
                .find_map(|m| m.service())
                .map(|attributes| convert::service_entry(attributes).map_err(IpvsError::Decode))
                .transpose(),
        }
    }

    /// The destinations of `service`. The kernel answers an unknown service
    /// with an empty dump.
    pub async fn destinations(&self, service: &ServiceKey) -> Result<Vec<DestEntry>, IpvsError> {
        let request = IpvsMessage::new(
            IpvsCommand::GetDest,
            vec![IpvsAttribute::Service(convert::service_key_attributes(
                service,
            ))],
        );
        let operation = format!("list destinations of service {service}");
        let replies = self
            .request(request, true, |errno| {
                IpvsError::for_request(&operation, errno)
            })
            .await?;
        replies
            .iter()
            .filter_map(|m| m.dest())
            .map(|attributes| {
                convert::dest_entry(attributes, service.family()).map_err(IpvsError::Decode)
            })
            .collect()
    }

    /// The whole table, read on the bulk socket: one service dump, then one
    /// destination dump per service.
    pub async fn table(&self) -> Result<Table, IpvsError> {
        let family_id = self.family_id;
        tokio::task::spawn_blocking(move || read_table(family_id))
            .await
            .map_err(|e| IpvsError::Transport(e.to_string()))?
    }

    /// Performs one operation and waits for its ACK.
    pub async fn execute(&self, op: &Op) -> Result<(), IpvsError> {
        self.request(convert::op_message(op), false, |errno| {
            IpvsError::for_op(op, errno)
        })
        .await
        .map(drop)
    }

    /// Performs `ops` in order, pipelined (see the `bulk` module: many
    /// requests per datagram, replies matched by sequence number), and
    /// returns one result per op. A failing op does not stop the ones after
    /// it. The outer error is a socket failure, after which nothing is known.
    pub async fn apply_batch(&self, ops: &[Op]) -> Result<Vec<Result<(), IpvsError>>, IpvsError> {
        self.apply_shared(Arc::new(ops.to_vec())).await
    }

    /// [`apply_batch`](Self::apply_batch) of operations already shared: they go to the
    /// blocking thread as they are, not copied.
    pub async fn apply_shared(
        &self,
        ops: Arc<Vec<Op>>,
    ) -> Result<Vec<Result<(), IpvsError>>, IpvsError> {
        let family_id = self.family_id;
        let requests = Arc::clone(&ops);
        let outcomes = tokio::task::spawn_blocking(move || {
            BulkSocket::open(family_id)?.execute_pipelined(&requests, |op, flags, sequence, out| {
                op_wire::append_op(family_id, op, flags, sequence, out)
            })
        })
        .await
        .map_err(|e| IpvsError::Transport(e.to_string()))?
        .map_err(|e| IpvsError::Transport(e.to_string()))?;
        Ok(ops
            .iter()
            .zip(outcomes)
            .map(|(op, outcome)| outcome.map_err(|errno| IpvsError::for_op(op, errno)))
            .collect())
    }

    /// Adds a service.
    pub async fn add_service(&self, key: &ServiceKey, service: &Service) -> Result<(), IpvsError> {
        self.execute(&Op::AddService {
            key: *key,
            service: service.clone(),
        })
        .await
    }

    /// Changes a service's settings in place.
    pub async fn set_service(&self, key: &ServiceKey, service: &Service) -> Result<(), IpvsError> {
        self.execute(&Op::SetService {
            key: *key,
            service: service.clone(),
        })
        .await
    }

    /// Deletes a service and its destinations.
    pub async fn del_service(&self, key: &ServiceKey) -> Result<(), IpvsError> {
        self.execute(&Op::DelService { key: *key }).await
    }

    /// Adds a destination to a service.
    pub async fn add_dest(
        &self,
        service: &ServiceKey,
        key: &DestKey,
        dest: &Destination,
    ) -> Result<(), IpvsError> {
        self.execute(&Op::AddDest {
            service: *service,
            key: *key,
            dest: *dest,
        })
        .await
    }

    /// Changes a destination's settings in place (forwarding method included).
    pub async fn set_dest(
        &self,
        service: &ServiceKey,
        key: &DestKey,
        dest: &Destination,
    ) -> Result<(), IpvsError> {
        self.execute(&Op::SetDest {
            service: *service,
            key: *key,
            dest: *dest,
        })
        .await
    }

    /// Deletes a destination.
    pub async fn del_dest(&self, service: &ServiceKey, key: &DestKey) -> Result<(), IpvsError> {
        self.execute(&Op::DelDest {
            service: *service,
            key: *key,
        })
        .await
    }

    /// Deletes every service (`ipvsadm -C`). haldir itself never calls this
    /// on its own; it is for tests and explicit operator requests.
    pub async fn flush(&self) -> Result<(), IpvsError> {
        self.command(
            IpvsMessage::new(IpvsCommand::Flush, vec![]),
            "flush the IPVS table",
        )
        .await
    }

    /// Zeroes the counters of every service (`ipvsadm -Z`).
    pub async fn zero(&self) -> Result<(), IpvsError> {
        self.command(
            IpvsMessage::new(IpvsCommand::Zero, vec![]),
            "zero the IPVS counters",
        )
        .await
    }

    /// Zeroes the counters of one service.
    pub async fn zero_service(&self, key: &ServiceKey) -> Result<(), IpvsError> {
        let message = IpvsMessage::new(
            IpvsCommand::Zero,
            vec![IpvsAttribute::Service(convert::service_key_attributes(key))],
        );
        self.request(message, false, |errno| match errno {
            libc::ESRCH => IpvsError::NoSuchService {
                operation: format!("zero the counters of service {key}"),
                service: *key,
            },
            _ => IpvsError::for_request(&format!("zero the counters of service {key}"), errno),
        })
        .await
        .map(drop)
    }

    /// The connection timeouts.
    pub async fn timeouts(&self) -> Result<Timeouts, IpvsError> {
        let replies = self
            .request(
                IpvsMessage::new(IpvsCommand::GetConfig, vec![]),
                false,
                |errno| IpvsError::for_request("get the IPVS timeouts", errno),
            )
            .await?;
        let mut timeouts = Timeouts::default();
        for attribute in replies.iter().flat_map(|m| &m.attributes) {
            match attribute {
                IpvsAttribute::TimeoutTcp(s) => timeouts.tcp_secs = *s,
                IpvsAttribute::TimeoutTcpFin(s) => timeouts.tcp_fin_secs = *s,
                IpvsAttribute::TimeoutUdp(s) => timeouts.udp_secs = *s,
                _ => {}
            }
        }
        Ok(timeouts)
    }

    /// Sets the connection timeouts; a 0 leaves that timeout unchanged.
    pub async fn set_timeouts(&self, timeouts: &Timeouts) -> Result<(), IpvsError> {
        let message = IpvsMessage::new(
            IpvsCommand::SetConfig,
            vec![
                IpvsAttribute::TimeoutTcp(timeouts.tcp_secs),
                IpvsAttribute::TimeoutTcpFin(timeouts.tcp_fin_secs),
                IpvsAttribute::TimeoutUdp(timeouts.udp_secs),
            ],
        );
        self.command(message, "set the IPVS timeouts").await
    }

    /// The running sync daemons (at most one master and one backup).
    pub async fn daemons(&self) -> Result<Vec<SyncDaemon>, IpvsError> {
        let replies = self
            .request(
                IpvsMessage::new(IpvsCommand::GetDaemon, vec![]),
                true,
                |errno| IpvsError::for_request("list the sync daemons", errno),
            )
            .await?;
        Ok(replies
            .iter()
            .filter_map(|m| m.daemon())
            .filter_map(sync_daemon)
            .collect())
    }

    /// Starts a sync daemon (`ipvsadm --start-daemon`).
    pub async fn start_daemon(&self, daemon: &SyncDaemon) -> Result<(), IpvsError> {
        let mut attributes = vec![
            DaemonAttribute::State(daemon.role.state()),
            DaemonAttribute::McastInterface(daemon.interface.clone()),
            DaemonAttribute::SyncId(daemon.sync_id.into()),
        ];
        if let Some(max_len) = daemon.max_len {
            attributes.push(DaemonAttribute::SyncMaxLen(max_len));
        }
        match daemon.group {
            Some(IpAddr::V4(group)) => attributes.push(DaemonAttribute::McastGroup(group)),
            Some(IpAddr::V6(group)) => attributes.push(DaemonAttribute::McastGroup6(group)),
            None => {}
        }
        if let Some(port) = daemon.port {
            attributes.push(DaemonAttribute::McastPort(port));
        }
        if let Some(ttl) = daemon.ttl {
            attributes.push(DaemonAttribute::McastTtl(ttl));
        }
        let message = IpvsMessage::new(
            IpvsCommand::NewDaemon,
            vec![IpvsAttribute::Daemon(attributes)],
        );
        let operation = format!(
            "start the {:?} sync daemon on {}",
            daemon.role, daemon.interface
        );
        self.command(message, &operation).await
    }

    /// Stops the sync daemon of `role`.
    pub async fn stop_daemon(&self, role: DaemonRole) -> Result<(), IpvsError> {
        let message = IpvsMessage::new(
            IpvsCommand::DelDaemon,
            vec![IpvsAttribute::Daemon(vec![DaemonAttribute::State(
                role.state(),
            )])],
        );
        self.command(message, &format!("stop the {role:?} sync daemon"))
            .await
    }
}

impl Applier for IpvsClient {
    async fn read_table(&mut self) -> Result<Table, IpvsError> {
        self.table().await
    }

    async fn apply(&mut self, ops: Arc<Vec<Op>>) -> Vec<Result<(), IpvsError>> {
        match self.apply_shared(Arc::clone(&ops)).await {
            Ok(results) => results,
            Err(e) => {
                let reason = e.to_string();
                ops.iter()
                    .map(|_| Err(IpvsError::Transport(reason.clone())))
                    .collect()
            }
        }
    }
}

/// What a failed family lookup means.
fn resolve_error(error: GenetlinkError) -> IpvsError {
    match &error {
        GenetlinkError::NetlinkError(io) if io.raw_os_error() == Some(libc::ENOENT) => {
            IpvsError::NoIpvs
        }
        GenetlinkError::NetlinkError(io) if io.raw_os_error() == Some(libc::EPERM) => {
            IpvsError::PermissionDenied {
                operation: "resolve the IPVS netlink family".into(),
            }
        }
        _ => IpvsError::Transport(error.to_string()),
    }
}

/// A daemon from its dump attributes; `None` without a known state.
fn sync_daemon(attributes: &[DaemonAttribute]) -> Option<SyncDaemon> {
    let mut daemon = SyncDaemon {
        role: DaemonRole::Master,
        interface: String::new(),
        sync_id: 0,
        max_len: None,
        group: None,
        port: None,
        ttl: None,
    };
    let mut role = None;
    for attribute in attributes {
        match attribute {
            DaemonAttribute::State(DaemonState::Master) => role = Some(DaemonRole::Master),
            DaemonAttribute::State(DaemonState::Backup) => role = Some(DaemonRole::Backup),
            DaemonAttribute::McastInterface(name) => daemon.interface = name.clone(),
            DaemonAttribute::SyncId(id) => daemon.sync_id = *id as u8,
            DaemonAttribute::SyncMaxLen(n) => daemon.max_len = Some(*n),
            DaemonAttribute::McastGroup(g) => daemon.group = Some(IpAddr::V4(*g)),
            DaemonAttribute::McastGroup6(g) => daemon.group = Some(IpAddr::V6(*g)),
            DaemonAttribute::McastPort(p) => daemon.port = Some(*p),
            DaemonAttribute::McastTtl(t) => daemon.ttl = Some(*t),
            _ => {}
        }
    }
    daemon.role = role?;
    Some(daemon)
}

/// Reads the whole table on a fresh bulk socket (blocking).
fn read_table(family_id: u16) -> Result<Table, IpvsError> {
    let transport = |e: std::io::Error| IpvsError::Transport(e.to_string());
    let mut socket = BulkSocket::open(family_id).map_err(transport)?;
    let services = socket
        .dump(&IpvsMessage::new(IpvsCommand::GetService, vec![]))
        .map_err(transport)?
        .map_err(|errno| IpvsError::for_request("list services", errno))?;
    let mut table = Table::new();
    for message in &services {
        let Some(attributes) = message.service() else {
            continue;
        };
        let entry = convert::service_entry(attributes).map_err(IpvsError::Decode)?;
        let request = IpvsMessage::new(
            IpvsCommand::GetDest,
            vec![IpvsAttribute::Service(convert::service_key_attributes(
                &entry.key,
            ))],
        );
        let dests = socket.dump(&request).map_err(transport)?.map_err(|errno| {
            IpvsError::for_request(&format!("list destinations of {}", entry.key), errno)
        })?;
        table.insert_service(entry.key, entry.service);
        for dest in dests.iter().filter_map(|m| m.dest()) {
            let dest = convert::dest_entry(dest, entry.key.family()).map_err(IpvsError::Decode)?;
            table.insert_dest(&entry.key, dest.key, dest.dest);
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host this is developed on has no IPVS; where a kernel has it
    /// (the VM rig), the client must connect instead.
    #[tokio::test]
    async fn connect_says_to_load_ip_vs_when_the_family_is_missing() {
        match IpvsClient::connect().await {
            Err(IpvsError::NoIpvs) => {
                assert_eq!(
                    IpvsError::NoIpvs.to_string(),
                    "this kernel has no IPVS; load the ip_vs module (modprobe ip_vs)"
                );
            }
            Ok(client) => assert!(client.family_id() > 0),
            Err(other) => panic!("unexpected error: {other}"),
        }
    }

    #[test]
    fn daemon_dump_becomes_a_sync_daemon() {
        let daemon = sync_daemon(&[
            DaemonAttribute::State(DaemonState::Backup),
            DaemonAttribute::McastInterface("eth1".into()),
            DaemonAttribute::SyncId(9),
            DaemonAttribute::McastPort(8848),
        ])
        .unwrap();
        assert_eq!(daemon.role, DaemonRole::Backup);
        assert_eq!(daemon.interface, "eth1");
        assert_eq!(daemon.sync_id, 9);
        assert_eq!(daemon.port, Some(8848));
        assert_eq!(sync_daemon(&[DaemonAttribute::SyncId(1)]), None);
    }
}
