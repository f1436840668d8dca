//! `[announce] bmp_listen` carried out: haldir as the BMP collector (RFC 7854) of the BGP
//! speaker on this director. FRR's bgpd, started with `-M bmp` and configured with
//! `bmp targets NAME` / `bmp connect ADDRESS port PORT`, connects here and reports each BGP
//! session going up or down; `haldir_director::bmp` decodes the stream and keeps the
//! sessions, and the status shows them under `announce.bgp` (`docs/active-active.md`).
//!
//! One speaker at a time: a new connection replaces the current one (bgpd restarted; its
//! old connection is gone or about to be), counted. A malformed stream ends its connection,
//! counted; the speaker reconnects by itself. The listener follows reloads (a changed or
//! removed `bmp_listen` closes it). Put it on a loopback address: BMP has no
//! authentication, and the decoder's bounds (one message of at most
//! `haldir_director::bmp::MAX_MESSAGE` bytes buffered) are what limits a stranger.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use haldir_config::Model;
use haldir_director::bmp::{BgpSessions, BgpStatus, BmpDecoder, BmpMessage};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

/// The collector's state for the status: where it listens and what the speaker said.
#[derive(Debug, Clone)]
pub struct BgpCollector {
    /// `bmp_listen`.
    pub listen: SocketAddr,
    /// The sessions as reported.
    pub sessions: BgpSessions,
}

impl BgpCollector {
    /// The status section now.
    pub fn status(&self) -> BgpStatus {
        self.sessions
            .status(&self.listen.to_string(), Instant::now())
    }
}

/// What the status reads: `None` without `bmp_listen`.
pub type Collector = Option<BgpCollector>;

/// Follows the running model until the daemon stops.
pub fn spawn(
    running: watch::Receiver<Arc<Model>>,
    shutdown: watch::Receiver<bool>,
    status: watch::Sender<Collector>,
) -> JoinHandle<()> {
    tokio::spawn(run(running, shutdown, status))
}

fn listen_of(model: &Model) -> Option<SocketAddr> {
    model.announce.as_ref().and_then(|a| a.bmp_listen)
}

async fn run(
    mut running: watch::Receiver<Arc<Model>>,
    mut shutdown: watch::Receiver<bool>,
    status: watch::Sender<Collector>,
) {
    loop {
        let listen = listen_of(&running.borrow_and_update());
        let listener = match listen {
            None => None,
            Some(address) => match TcpListener::bind(address).await {
                Ok(listener) => {
                    info!(%address, "listening for the BGP speaker's BMP connection");
                    Some(listener)
                }
                Err(e) => {
                    error!(%address, "bmp_listen: cannot listen: {e}; BGP sessions not shown");
                    None
                }
            },
        };
        status.send_replace(listen.map(|listen| BgpCollector {
            listen,
            sessions: BgpSessions::new(),
        }));
        let stop = match (listen, listener) {
            (Some(listen), Some(listener)) => {
                serve(listener, listen, &mut running, &mut shutdown, &status).await
            }
            _ => wait_for_change(&mut running, &mut shutdown).await,
        };
        if stop {
            return;
        }
    }
}

/// Waits for a reload that changes `bmp_listen`; true when the daemon stops instead.
async fn wait_for_change(
    running: &mut watch::Receiver<Arc<Model>>,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let before = listen_of(&running.borrow());
    loop {
        tokio::select! {
            changed = running.changed() => {
                if changed.is_err() {
                    return true;
                }
                if listen_of(&running.borrow()) != before {
                    return false;
                }
            }
            _ = shutdown.wait_for(|stop| *stop) => return true,
        }
    }
}

/// Accepts the speaker and reads its stream until `bmp_listen` changes (false) or the
/// daemon stops (true).
async fn serve(
    listener: TcpListener,
    listen: SocketAddr,
    running: &mut watch::Receiver<Arc<Model>>,
    shutdown: &mut watch::Receiver<bool>,
    status: &watch::Sender<Collector>,
) -> bool {
    let mut speaker: Option<(TcpStream, SocketAddr, BmpDecoder)> = None;
    let mut buffer = vec![0u8; 16 * 1024];
    let update = |f: &mut dyn FnMut(&mut BgpSessions)| {
        status.send_modify(|collector| {
            if let Some(collector) = collector {
                f(&mut collector.sessions);
            }
        });
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, from)) => {
                    if let Some((_, previous, _)) = &speaker {
                        warn!(%from, %previous, "a new BMP connection replaces the current one");
                        update(&mut |s| s.rejected());
                    }
                    info!(%from, "the BGP speaker connected over BMP");
                    speaker = Some((stream, from, BmpDecoder::new()));
                    update(&mut |s| s.connected());
                }
                Err(e) => warn!("bmp_listen: accept failed: {e}"),
            },
            read = async {
                match speaker.as_mut() {
                    Some((stream, _, _)) => stream.read(&mut buffer).await,
                    None => std::future::pending().await,
                }
            } => {
                let Some((_, from, decoder)) = speaker.as_mut() else { continue };
                let from = *from;
                let decoded = match read {
                    Ok(0) => Err("it closed the connection".to_owned()),
                    Ok(n) => decoder.feed(&buffer[..n]).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match decoded {
                    Ok(messages) => {
                        for message in &messages {
                            log_message(message);
                        }
                        let now = Instant::now();
                        update(&mut |s| messages.iter().for_each(|m| s.apply(m, now)));
                    }
                    Err(why) => {
                        warn!(%from, "the BGP speaker's BMP connection ended: {why}; BGP sessions unknown until it reconnects");
                        if !why.starts_with("it closed") {
                            update(&mut |s| s.rejected());
                        }
                        speaker = None;
                        update(&mut |s| s.disconnected());
                    }
                }
            }
            changed = running.changed() => {
                if changed.is_err() {
                    return true;
                }
                if listen_of(&running.borrow()) != Some(listen) {
                    info!(%listen, "bmp_listen changed: the BMP listener closes");
                    return false;
                }
            }
            _ = shutdown.wait_for(|stop| *stop) => return true,
        }
    }
}

/// Each session's change at info, as the VIPs' announcements are logged.
fn log_message(message: &BmpMessage) {
    match message {
        BmpMessage::PeerUp(peer) => {
            info!(peer = %peer.address, asn = peer.asn, "BGP session established (BMP)")
        }
        BmpMessage::PeerDown(peer, code) => {
            warn!(peer = %peer.address, asn = peer.asn, reason = code, "BGP session down (BMP)")
        }
        BmpMessage::Initiation { sys_name } => {
            info!(
                speaker = sys_name.as_deref().unwrap_or("?"),
                "BMP session initiated"
            )
        }
        BmpMessage::Termination => info!("the BGP speaker terminated the BMP session"),
        BmpMessage::Skipped(_) => {}
    }
}
