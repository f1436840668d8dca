//! `auth_hmac` state on disk: each instance's send sequence and replay marks
//! ([`haldir_vrrp::auth::ReplayState`]), so that a restarted haldir neither accepts a
//! capture of an advert it had verified before (one replay of every captured advert, until
//! the sender's next one, was the gap) nor sends below what its peers already took (a
//! monotonic-mode sender whose clock was once ahead).
//!
//! One JSON file per haldir (keyed like the IPVS ownership file by the control socket, or
//! the configuration without one) in the state directory, `/var/lib/haldir` by default
//! (`StateDirectory=haldir` under systemd): it survives a reboot, which matters in
//! monotonic mode. The link tasks keep the states current in memory (a mutex and a copy of
//! at most 16 marks per verified or signed advert); this task writes the file when
//! something changed, at most every [`WRITE_PERIOD`], through a new 0600 file (`O_EXCL`,
//! `O_NOFOLLOW`), fsync'd, then renamed over the old; and once more when haldir stops.
//! A crash can so lose the last [`WRITE_PERIOD`] of marks: adverts captured in that span
//! can be replayed once after the restart, within the freshness window.
//!
//! The file is bounded: one entry per instance configured (others are dropped when
//! written), at most 16 marks each. An unreadable or malformed file is logged loudly and
//! ignored (the marks start empty, as before this file existed); it never stops a start.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use haldir_vrrp::auth::{ReplayState, ReplayStore, MAX_SENDERS};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

/// The default state directory.
pub const DEFAULT_DIR: &str = "/var/lib/haldir";
/// The file is rewritten at most this often.
pub const WRITE_PERIOD: Duration = Duration::from_millis(250);
/// A file larger than this is not read (255 instances × 16 marks take about 300 kB).
const MAX_FILE: u64 = 4 << 20;

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Mark {
    source: IpAddr,
    sequence: u64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Entry {
    last_sent: u64,
    marks: Vec<Mark>,
}

/// The file of this haldir in `dir`: `identity` is the ownership identity (`None`: the
/// default control socket).
pub fn path_for(dir: &Path, identity: Option<&str>) -> PathBuf {
    let suffix = identity.map_or(String::new(), |identity| {
        format!(
            "-{:016x}",
            haldir_ipvs::ownership::fnv1a(identity.as_bytes())
        )
    });
    dir.join(format!("auth-replay{suffix}.json"))
}

fn to_text(states: &BTreeMap<String, ReplayState>) -> String {
    let entries: BTreeMap<&String, Entry> = states
        .iter()
        .map(|(name, state)| {
            (
                name,
                Entry {
                    last_sent: state.last_sent,
                    marks: state
                        .marks
                        .iter()
                        .take(MAX_SENDERS)
                        .map(|(source, sequence)| Mark {
                            source: *source,
                            sequence: *sequence,
                        })
                        .collect(),
                },
            )
        })
        .collect();
    serde_json::to_string_pretty(&entries).unwrap_or_default() + "\n"
}

fn from_text(text: &str) -> Result<BTreeMap<String, ReplayState>, serde_json::Error> {
    let entries: BTreeMap<String, Entry> = serde_json::from_str(text)?;
    Ok(entries
        .into_iter()
        .map(|(name, entry)| {
            (
                name,
                ReplayState {
                    last_sent: entry.last_sent,
                    marks: entry
                        .marks
                        .into_iter()
                        .take(MAX_SENDERS)
                        .map(|m| (m.source, m.sequence))
                        .collect(),
                },
            )
        })
        .collect())
}

/// Reads the states kept in `path` for the instances named in `instances` (empty when
/// there is no file; a bad one is logged and ignored).
pub fn load(path: &Path, instances: &[String]) -> BTreeMap<String, ReplayState> {
    let read = std::fs::metadata(path).and_then(|m| {
        if m.len() > MAX_FILE {
            Err(std::io::Error::other(format!("{} bytes", m.len())))
        } else {
            std::fs::read_to_string(path)
        }
    });
    let text = match read {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return BTreeMap::new(),
        Err(e) => {
            warn!(
                "auth_hmac replay state {} unreadable ({e}): replay marks start empty",
                path.display()
            );
            return BTreeMap::new();
        }
    };
    match from_text(&text) {
        Ok(mut states) => {
            states.retain(|name, _| instances.contains(name));
            if !states.is_empty() {
                info!(
                    instances = states.len(),
                    "auth_hmac replay state read from {}",
                    path.display()
                );
            }
            states
        }
        Err(e) => {
            warn!(
                "auth_hmac replay state {} is not valid ({e}): replay marks start empty",
                path.display()
            );
            BTreeMap::new()
        }
    }
}

/// Writes `states` of the instances in `instances` to `path`, durably.
fn write(path: &Path, mut states: BTreeMap<String, ReplayState>, instances: &[String]) {
    states.retain(|name, _| instances.contains(name));
    if states.is_empty() && !path.exists() {
        // No instance signs or verifies: no file.
        return;
    }
    if let Some(dir) = path.parent() {
        if let Err(e) = std::fs::create_dir_all(dir) {
            warn!(
                "auth_hmac replay state: cannot create {}: {e}",
                dir.display()
            );
            return;
        }
    }
    if let Err(e) = crate::dumps::write_atomically(path, &to_text(&states)) {
        warn!(
            "auth_hmac replay state: cannot write {}: {e}",
            path.display()
        );
    }
}

/// Writes the store to `path` whenever it changed, at most every [`WRITE_PERIOD`], until
/// the stop; [`write_last`] writes the final state once the VRRP driver has ended.
/// Only the running configuration's instances are written.
pub fn spawn_writer(
    store: Arc<ReplayStore>,
    path: PathBuf,
    running: watch::Receiver<std::sync::Arc<haldir_config::Model>>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            // Asleep while nothing changes (no instance with authentication: always).
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => break,
                () = store.changed() => {}
            }
            if let Some(states) = store.take_changed() {
                let (path, names) = (path.clone(), instance_names(&running.borrow()));
                let _ = tokio::task::spawn_blocking(move || write(&path, states, &names)).await;
            }
            // At most one write per period: the changes meanwhile go in the next.
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => break,
                () = tokio::time::sleep(WRITE_PERIOD) => {}
            }
        }
        // The driver's last adverts (priority 0) are still to be signed: `write_last`
        // writes once it has ended.
    })
}

/// The names of `model`'s VRRP instances.
pub fn instance_names(model: &haldir_config::Model) -> Vec<String> {
    model
        .vrrp_instances
        .iter()
        .map(|i| i.name.clone())
        .collect()
}

/// The final write, once nothing signs or verifies any more.
pub async fn write_last(store: &ReplayStore, path: &Path, model: &haldir_config::Model) {
    let (path, names, states) = (path.to_owned(), instance_names(model), store.all());
    let _ = tokio::task::spawn_blocking(move || write(&path, states, &names)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_survive_the_file_and_only_configured_instances_are_kept() {
        let dir = std::env::temp_dir().join(format!("haldir-replay-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = path_for(&dir, Some("control /tmp/x.sock"));
        let mut states = BTreeMap::new();
        states.insert(
            "VI_1".to_owned(),
            ReplayState {
                last_sent: 7 << 32,
                marks: vec![
                    ("10.0.0.2".parse().unwrap(), 9 << 32),
                    ("fe80::2".parse().unwrap(), 3),
                ],
            },
        );
        states.insert("VI_OLD".to_owned(), ReplayState::default());
        let names = vec!["VI_1".to_owned()];
        write(&path, states.clone(), &names);
        let read = load(&path, &names);
        assert_eq!(read.len(), 1);
        assert_eq!(read["VI_1"], states["VI_1"]);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A damaged file is ignored, not fatal.
        std::fs::write(&path, "{ not json").unwrap();
        assert!(load(&path, &names).is_empty());
        assert!(load(&dir.join("absent.json"), &names).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_file_is_named_by_the_identity() {
        let dir = Path::new("/var/lib/haldir");
        assert_eq!(path_for(dir, None), dir.join("auth-replay.json"));
        assert_ne!(
            path_for(dir, Some("control /a")),
            path_for(dir, Some("control /b"))
        );
    }
}
