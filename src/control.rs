//! The control socket: a unix stream socket (mode 0600) on which `haldir
//! status` and `haldir reload` talk to the running daemon.
//!
//! Protocol: the client sends one line, a JSON object `{"command": "status"}`
//! or `{"command": "reload"}`; the daemon answers with one JSON document and
//! closes the connection.
//! - `status`: the live state: `instances` (state, priority, master, since,
//!   reason, counters), `links`, `virtual_servers` (destinations, weights,
//!   health, last check result).
//! - `reload`: `{"accepted": true, "kept": [...], "updated": [...], ...}` or
//!   `{"accepted": false, "errors": [...]}`. The daemon runs the same reload
//!   as on SIGHUP ([`crate::daemon::reload`]), serialised with it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use haldir_vrrp::driver::Status;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::daemon::ReloadOutcome;
use crate::live::LiveVirtualServers;

/// Where `haldir run` listens and `haldir status` / `haldir reload` connect
/// unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/haldir/haldir.sock";

/// A request the control socket hands to the daemon's main loop.
#[derive(Debug)]
pub enum ControlRequest {
    /// Reload the configuration file; the outcome goes back on the sender.
    Reload(oneshot::Sender<ReloadOutcome>),
}

/// What `status` answers from.
#[derive(Clone)]
pub struct StatusSources {
    /// The VRRP driver's status.
    pub status: watch::Receiver<Status>,
    /// The virtual servers.
    pub live: watch::Receiver<LiveVirtualServers>,
    /// The running configuration (for `router_id`).
    pub running: watch::Receiver<haldir_config::Model>,
    /// The configuration file.
    pub config_path: PathBuf,
    /// The DR real-server ARP check ([`crate::arp_check`]).
    pub arp_check: watch::Receiver<crate::arp_check::Report>,
    /// The bulk resync ([`crate::bulk_resync`]).
    pub resync: watch::Receiver<haldir_ipvs::resync::ResyncStatus>,
}

/// The whole status document.
pub fn status_document(sources: &StatusSources) -> Value {
    let mut document =
        crate::daemon::status_json(&sources.status.borrow(), &sources.resync.borrow());
    let live = crate::live::live_json(&sources.live.borrow());
    if let (Some(document), Value::Object(live)) = (document.as_object_mut(), live) {
        document.extend(live);
        document.insert(
            "router_id".into(),
            json!(sources.running.borrow().router_id.clone()),
        );
        document.insert("pid".into(), json!(std::process::id()));
        document.insert(
            "dr_arp_check".into(),
            crate::arp_check::report_json(&sources.arp_check.borrow()),
        );
        document.insert(
            "config".into(),
            json!(sources.config_path.display().to_string()),
        );
        document.insert(
            "now_unix".into(),
            json!(SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0)),
        );
    }
    document
}

/// A reload's outcome as JSON.
pub fn reload_json(outcome: &ReloadOutcome) -> Value {
    match outcome {
        ReloadOutcome::Applied(report) => json!({
            "accepted": true,
            "kept": report.kept,
            "updated": report.updated,
            "replaced": report.replaced,
            "added": report.added,
            "removed": report.removed,
        }),
        ReloadOutcome::Rejected(errors) => json!({ "accepted": false, "errors": errors }),
    }
}

/// Binds the control socket at `path`: creates its directory (0755) if
/// missing, replaces a stale socket file, refuses to take the socket of a
/// daemon that still answers on it, and makes the socket 0600.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                bail!(
                    "{} is in use by another running haldir; give this one its own --control-socket",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
        }
        Ok(_) => bail!(
            "{} exists and is not a socket; remove it or choose another --control-socket",
            path.display()
        ),
        Err(_) => {}
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} mode 0600", path.display()))?;
    Ok(listener)
}

/// Serves the control socket until `shutdown` turns true, then removes it.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    sources: StatusSources,
    requests: mpsc::Sender<ControlRequest>,
    mut shutdown: watch::Receiver<bool>,
) {
    info!(socket = %path.display(), "control socket ready");
    loop {
        let stream = tokio::select! {
            () = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!("control socket: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (sources, requests) = (sources.clone(), requests.clone());
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &sources, &requests).await {
                debug!("control connection: {e:#}");
            }
        });
    }
    let _ = std::fs::remove_file(&path);
}

async fn answer(
    stream: UnixStream,
    sources: &StatusSources,
    requests: &mpsc::Sender<ControlRequest>,
) -> anyhow::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut line = String::new();
    // A request is one short line: at most 4 KiB are read.
    let mut reader = tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(reader, 4096));
    tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
        .await
        .context("no request within 10 s")??;
    let command = serde_json::from_str::<Value>(line.trim())
        .ok()
        .and_then(|v| v["command"].as_str().map(str::to_owned))
        .unwrap_or_else(|| line.trim().to_owned());
    let response = match command.as_str() {
        "status" => status_document(sources),
        "reload" => {
            let (reply, outcome) = oneshot::channel();
            if requests.send(ControlRequest::Reload(reply)).await.is_err() {
                json!({"accepted": false, "errors": ["haldir is stopping"]})
            } else {
                match outcome.await {
                    Ok(outcome) => reload_json(&outcome),
                    Err(_) => json!({"accepted": false, "errors": ["haldir is stopping"]}),
                }
            }
        }
        other => json!({"error": format!("unknown command {other:?}: use status or reload")}),
    };
    let mut text = serde_json::to_vec(&response)?;
    text.push(b'\n');
    writer.write_all(&text).await?;
    writer.shutdown().await?;
    Ok(())
}

/// Client side: sends `command` to the daemon at `socket` and returns its answer.
pub fn request(socket: &Path, command: &str, timeout: Duration) -> anyhow::Result<Value> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot connect to {} (is haldir running? is this its --control-socket?)",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    writeln!(stream, "{}", json!({ "command": command }))?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .with_context(|| format!("no answer from {}", socket.display()))?;
    let value: Value = serde_json::from_str(line.trim())
        .with_context(|| format!("{} answered something that is not JSON", socket.display()))?;
    if let Some(error) = value["error"].as_str() {
        bail!("haldir: {error}");
    }
    Ok(value)
}

/// `YYYY-MM-DD HH:MM:SSZ` for seconds since the epoch (UTC).
pub fn utc_text(unix: f64) -> String {
    let secs = unix.floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `3d4h`, `5m12s`, `42s`.
pub fn age_text(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Left-aligned columns, two spaces apart.
fn table(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_owned();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The status document as tables, for `haldir status`.
pub fn render_table(status: &Value) -> String {
    let now = status["now_unix"].as_f64().unwrap_or(0.0);
    let text = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = String::new();
    if let Some(id) = status["router_id"].as_str() {
        out.push_str(&format!("router {id}\n"));
    }
    let instances = status["instances"].as_array().cloned().unwrap_or_default();
    if instances.is_empty() {
        out.push_str("no VRRP instances\n");
    } else {
        let mut rows = vec![[
            "INSTANCE",
            "INTERFACE",
            "STATE",
            "PRIORITY",
            "MASTER",
            "SINCE",
            "REASON",
        ]
        .map(String::from)
        .to_vec()];
        for i in &instances {
            let since = match i["since_unix"].as_f64() {
                Some(t) => format!("{} ({} ago)", utc_text(t), age_text(now - t)),
                None => "-".into(),
            };
            let mut state = text(&i["state"]);
            if i["preemption_held"].as_bool() == Some(true) {
                // src/bulk_resync.rs: waiting for the connection table.
                state.push_str(" (preemption held)");
            }
            rows.push(vec![
                text(&i["name"]),
                text(&i["interface"]),
                state,
                text(&i["priority"]),
                text(&i["master"]),
                since,
                text(&i["reason"]),
            ]);
        }
        out.push_str(&table(&rows, ""));
    }
    let servers = status["virtual_servers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !servers.is_empty() {
        out.push('\n');
        if let Some(error) = status["kernel_error"].as_str() {
            out.push_str(&format!("IPVS table not readable: {error}\n"));
        }
        for vs in &servers {
            out.push_str(&format!(
                "{}  {}{}\n",
                text(&vs["service"]),
                text(&vs["scheduler"]),
                if vs["in_kernel"].as_bool() == Some(true) {
                    ""
                } else {
                    "  (not in the kernel table)"
                }
            ));
            let mut rows = vec![[
                "REAL SERVER",
                "WEIGHT",
                "KERNEL",
                "ACTIVE",
                "HEALTH",
                "LAST CHECK",
            ]
            .map(String::from)
            .to_vec()];
            for d in vs["destinations"].as_array().cloned().unwrap_or_default() {
                let address = text(&d["address"]);
                let address = if address.contains(':') {
                    format!("[{address}]:{}", text(&d["port"]))
                } else {
                    format!("{address}:{}", text(&d["port"]))
                };
                let last = match &d["last_check"] {
                    Value::Null => "-".to_owned(),
                    c => format!(
                        "{} ({} ago)",
                        text(&c["result"]),
                        age_text(now - c["at_unix"].as_f64().unwrap_or(now))
                    ),
                };
                rows.push(vec![
                    address,
                    text(&d["configured_weight"]),
                    text(&d["kernel_weight"]),
                    text(&d["active_connections"]),
                    text(&d["health"]),
                    last,
                ]);
            }
            out.push_str(&table(&rows, "  "));
        }
    }
    out.push_str(&crate::arp_check::render_text(&status["dr_arp_check"], now));
    if let Ok(resync) =
        serde_json::from_value::<haldir_ipvs::resync::ResyncStatus>(status["bulk_resync"].clone())
    {
        out.push_str(&resync.render_text(now, age_text));
    }
    out
}

/// Resolves once `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_text_is_the_civil_date() {
        assert_eq!(utc_text(0.0), "1970-01-01 00:00:00Z");
        assert_eq!(utc_text(951_782_400.0), "2000-02-29 00:00:00Z");
        assert_eq!(utc_text(1_735_689_599.0), "2024-12-31 23:59:59Z");
    }

    #[test]
    fn the_table_shows_instances_and_virtual_servers() {
        let status = json!({
            "now_unix": 100.0,
            "instances": [{"name": "VI_1", "interface": "eth0", "state": "MASTER", "priority": 150,
                           "master": "10.0.0.1", "since_unix": 40.0, "reason": "startup"}],
            "virtual_servers": [{"service": "TCP 192.0.2.10:80", "scheduler": "wrr", "in_kernel": true,
                "destinations": [{"address": "10.0.0.11", "port": 80, "configured_weight": 3,
                                  "kernel_weight": 3, "active_connections": 0, "health": "unknown",
                                  "last_check": null}]}],
        });
        let text = render_table(&status);
        assert!(text.contains("VI_1"), "{text}");
        assert!(text.contains("1970-01-01 00:00:40Z (1m0s ago)"), "{text}");
        assert!(text.contains("10.0.0.11:80"), "{text}");
        assert!(text.contains("unknown"), "{text}");
    }
}
