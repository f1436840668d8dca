//! `TCP_CHECK`: the server is up when a TCP connection to it completes within
//! `connect_timeout` (optionally from a `bind_to` source address). The connection is closed
//! right away, as keepalived does — by default with a reset (SO_LINGER 0, as HAProxy closes
//! its health-check connections), so 10,000 checks a second do not leave ~600,000 sockets in
//! TIME_WAIT on the director (more than Linux's default `tcp_max_tw_buckets`).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use crate::{CheckFuture, CheckOutcome, Checker};

/// keepalived's default `connect_timeout` (5 s).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A `TCP_CHECK`. Equal ones are interchangeable (a run keeps nothing in it), so
/// [`Checkers`](crate::checker::Checkers) builds one for all of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TcpCheck {
    /// `connect_ip` / `connect_port` (default: the real server's address and port).
    pub target: SocketAddr,
    /// `bind_to` (and `bind_port`): the source address of the check's connection. Boxed:
    /// few checks set one, and inline it made every `TCP_CHECK` (40,000 of them in a large
    /// configuration) 16 bytes larger.
    pub bind_to: Option<Box<SocketAddr>>,
    /// `connect_timeout`.
    pub connect_timeout: Duration,
    /// Close with a reset instead of FIN (no TIME_WAIT on the director). Default true.
    pub close_with_reset: bool,
}

impl TcpCheck {
    /// A check of `target` with keepalived's default timeout and no source address.
    pub fn new(target: SocketAddr) -> Self {
        TcpCheck {
            target,
            bind_to: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            close_with_reset: true,
        }
    }
}

/// Connect to `target` (from `bind_to` if set) within `timeout`; shared by the TCP and HTTP
/// checkers. The error says what failed, for the `Down` reason.
pub(crate) async fn connect(
    target: SocketAddr,
    bind_to: Option<SocketAddr>,
    timeout: Duration,
) -> Result<TcpStream, String> {
    let attempt = async {
        let socket = match target {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(|e| format!("socket: {e}"))?;
        if let Some(source) = bind_to {
            socket
                .bind(source)
                .map_err(|e| format!("bind to {source}: {e}"))?;
        }
        socket
            .connect(target)
            .await
            .map_err(|e: io::Error| format!("connect to {target}: {e}"))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "connect to {target}: timed out after {}",
            humanize(timeout)
        )),
    }
}

/// `1.5s`, `200ms`: durations in reasons.
pub(crate) fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

impl Checker for TcpCheck {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let bind_to = self.bind_to.as_deref().copied();
            match connect(self.target, bind_to, self.connect_timeout).await {
                Ok(stream) => {
                    if self.close_with_reset {
                        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                    }
                    drop(stream);
                    CheckOutcome::Up
                }
                Err(reason) => CheckOutcome::Down(reason),
            }
        })
    }

    fn kind(&self) -> &'static str {
        "TCP_CHECK"
    }
}
