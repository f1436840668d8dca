//! systemd's notify protocol (`Type=notify`), without libsystemd: datagrams
//! to `$NOTIFY_SOCKET` (a path, or an abstract socket written `@name`).
//!
//! - `READY=1` once the VRRP instances run (and the control socket listens);
//! - `WATCHDOG=1` every half `$WATCHDOG_USEC` while the runtime is alive,
//!   when the unit sets `WatchdogSec=`;
//! - `RELOADING=1` / `READY=1` around a reload, `STOPPING=1` on the way out,
//!   `STATUS=` lines for `systemctl status`.
//!
//! Outside systemd (`$NOTIFY_SOCKET` unset) every call does nothing.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Sends `state` (newline-separated `KEY=VALUE` assignments) to systemd.
/// Returns false outside systemd or when sending failed.
pub fn notify(state: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let path = path.to_string_lossy().into_owned();
    let address = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&path),
    };
    let Ok(address) = address else {
        return false;
    };
    let Ok(socket) = UnixDatagram::unbound() else {
        return false;
    };
    socket.send_to_addr(state.as_bytes(), &address).is_ok()
}

/// `READY=1` with a status line.
pub fn ready(status: &str) -> bool {
    notify(&format!("READY=1\nSTATUS={status}"))
}

/// `RELOADING=1` with the monotonic time systemd wants with it.
pub fn reloading() -> bool {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
        .unwrap_or(0);
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={now}"))
}

/// `STOPPING=1`.
pub fn stopping() -> bool {
    notify("STOPPING=1\nSTATUS=stopping: releasing the virtual addresses")
}

/// The watchdog period systemd asks for (`$WATCHDOG_USEC`, for this process
/// per `$WATCHDOG_PID`), if any.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings the watchdog every half period while every VRRP link's protocol loop has
/// stamped its heartbeat lately (within half the period, and at least 3 idle beats): a
/// stalled loop, or a stalled runtime, stops the pings and systemd restarts haldir. The
/// pings do not prove that some task runs; they prove the loops that run the VRRP timers
/// do. A daemon without VRRP instances pings as long as its runtime runs.
pub async fn watchdog(
    period: Duration,
    heartbeats: std::sync::Arc<haldir_vrrp::driver::Heartbeats>,
) {
    let mut interval = tokio::time::interval(period / 2);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let fresh = (period / 2).max(3 * haldir_vrrp::driver::heartbeat_idle_beat());
    let mut stalled = false;
    loop {
        interval.tick().await;
        match heartbeats.stalest() {
            Some(age) if age > fresh => {
                if !stalled {
                    tracing::error!(
                        since_ms = age.as_millis() as u64,
                        "a VRRP link's loop has not run for {age:?}: the systemd watchdog is no longer fed"
                    );
                }
                stalled = true;
            }
            _ => {
                stalled = false;
                notify("WATCHDOG=1");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_reaches_the_socket_named_in_the_environment() {
        let dir = std::env::temp_dir().join(format!("haldir-sd-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let receiver = UnixDatagram::bind(&path).unwrap();
        // SAFETY: this test is the only one touching NOTIFY_SOCKET.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
        assert!(ready("running"));
        let mut buffer = [0u8; 256];
        let n = receiver.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"READY=1\nSTATUS=running");
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        assert!(!notify("WATCHDOG=1"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
