//! The control socket: a unix stream socket (mode 0600) on which `haldir
//! status` and `haldir reload` talk to the running daemon.
//!
//! Protocol: the client sends one line, a JSON object `{"command": "status"}`
//! or `{"command": "reload"}`; the daemon answers with one JSON document and
//! closes the connection.
//! - `status`: the live state, a [`haldir_status::StatusDocument`] gathered by
//!   [`crate::status::document`] (described in `docs/status.md`).
//! - `reload`: `{"accepted": true, "kept": [...], "updated": [...], ...}` or
//!   `{"accepted": false, "errors": [...]}`. The daemon runs the same reload
//!   as on SIGHUP ([`crate::daemon::reload`]), serialised with it.
//! - `handover`, with `"instances": [...]` or `"all": true`, and `"cancel":
//!   true` to cancel: `{"accepted": true, "instances": [...]}` (the sync
//!   groups' members included) or `{"accepted": false, "errors": [...]}`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::status::StatusSources;

/// Where `haldir run` listens and `haldir status` / `haldir reload` connect
/// unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/haldir/haldir.sock";

/// The outcome of a reload, for logs and for `haldir reload`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new configuration runs; what happened to each instance.
    Applied(haldir_vrrp::driver::ReloadReport),
    /// The new configuration is invalid or could not be applied; the running
    /// one stays, untouched. One line per error.
    Rejected(Vec<String>),
}

/// A request the control socket hands to the daemon's main loop.
#[derive(Debug)]
pub enum ControlRequest {
    /// Reload the configuration file; the outcome goes back on the sender.
    Reload(oneshot::Sender<ReloadOutcome>),
    /// Hand instances over to a backup, or cancel that
    /// ([`haldir_vrrp::driver::DriverCommand::HandOver`]).
    HandOver {
        /// The instances (`None`: all).
        instances: Option<Vec<String>>,
        /// Cancel an earlier handover.
        cancel: bool,
        /// The instances it applied to, or why not.
        reply: oneshot::Sender<Result<Vec<String>, String>>,
    },
}

/// Reads a `handover` request's instances (`"all": true` or a non-empty
/// `"instances"` list of names) and `"cancel"` flag.
fn handover_request(request: &Value) -> Result<(Option<Vec<String>>, bool), String> {
    let cancel = request["cancel"].as_bool().unwrap_or(false);
    if request["all"].as_bool() == Some(true) {
        return Ok((None, cancel));
    }
    let names: Option<Vec<String>> = request["instances"]
        .as_array()
        .and_then(|list| list.iter().map(|v| v.as_str().map(str::to_owned)).collect());
    match names {
        Some(names) if !names.is_empty() => Ok((Some(names), cancel)),
        _ => Err("handover needs \"all\": true or a non-empty \"instances\" list of names".into()),
    }
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
/// daemon that still answers on it, and makes the socket 0600 before it
/// appears at `path`.
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
    // Bound in a private (0700) directory beside it, made 0600 there, then renamed into
    // place: the socket never appears at `path` with the umask's mode, not even for the
    // instant between bind and chmod.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let private = dir.join(format!(".haldir-bind-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .with_context(|| format!("cannot create {}", private.display()))?;
    let bound = private.join("control");
    let result = UnixListener::bind(&bound)
        .with_context(|| format!("cannot listen on {}", path.display()))
        .and_then(|listener| {
            std::fs::set_permissions(&bound, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot make {} mode 0600", path.display()))?;
            std::fs::rename(&bound, path)
                .with_context(|| format!("cannot move the socket to {}", path.display()))?;
            Ok(listener)
        });
    let _ = std::fs::remove_dir_all(&private);
    result
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
    let request = serde_json::from_str::<Value>(line.trim()).unwrap_or(Value::Null);
    let command = request["command"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| line.trim().to_owned());
    let stopping = || json!({"accepted": false, "errors": ["haldir is stopping"]});
    // The status straight to its text: at 10,000 virtual servers a `Value` tree of it
    // took tens of MB.
    if command == "status" {
        let mut text = serde_json::to_vec(&crate::status::document(sources, None))?;
        text.push(b'\n');
        let written = write_answer(&mut writer, &text).await;
        crate::memory::release_after_answer(text.len());
        return written;
    }
    let response = match command.as_str() {
        "reload" => {
            let (reply, outcome) = oneshot::channel();
            if requests.send(ControlRequest::Reload(reply)).await.is_err() {
                stopping()
            } else {
                match outcome.await {
                    Ok(outcome) => reload_json(&outcome),
                    Err(_) => stopping(),
                }
            }
        }
        "handover" => match handover_request(&request) {
            Err(error) => json!({"accepted": false, "errors": [error]}),
            Ok((instances, cancel)) => {
                let (reply, outcome) = oneshot::channel();
                let asked = ControlRequest::HandOver {
                    instances,
                    cancel,
                    reply,
                };
                if requests.send(asked).await.is_err() {
                    stopping()
                } else {
                    match outcome.await {
                        Ok(Ok(names)) => json!({"accepted": true, "instances": names}),
                        Ok(Err(error)) => json!({"accepted": false, "errors": [error]}),
                        Err(_) => stopping(),
                    }
                }
            }
        },
        other => json!({
            "error": format!("unknown command {other:?}: use status, reload or handover")
        }),
    };
    let mut text = serde_json::to_vec(&response)?;
    text.push(b'\n');
    write_answer(&mut writer, &text).await
}

async fn write_answer(
    writer: &mut tokio::net::unix::OwnedWriteHalf,
    text: &[u8],
) -> anyhow::Result<()> {
    writer.write_all(text).await?;
    writer.shutdown().await?;
    Ok(())
}

/// Client side: sends `command` to the daemon at `socket` and returns its answer.
pub fn request(socket: &Path, command: &str, timeout: Duration) -> anyhow::Result<Value> {
    request_with(socket, &json!({ "command": command }), timeout)
}

/// Client side: sends the request `request` (an object with a `command`) to the daemon
/// at `socket` and returns its answer.
pub fn request_with(socket: &Path, request: &Value, timeout: Duration) -> anyhow::Result<Value> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot connect to {} (is haldir running? is this its --control-socket?)",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    writeln!(stream, "{request}")?;
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

/// Resolves once `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
