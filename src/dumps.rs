//! keepalived's signal habits: SIGUSR1 writes a data dump (everything `haldir status`
//! shows, as text) and SIGUSR2 the statistics (every counter, as `/metrics` renders them),
//! each to a file in the dump directory, `/run/haldir` by default (keepalived writes
//! `/tmp/keepalived.data` and `/tmp/keepalived.stats`). Neither signal ever stops haldir:
//! the handlers are installed before the VRRP instances start and stay for the life of
//! the process.
//!
//! A dump is written to a new file (created exclusively, mode 0600, so a symlink planted
//! at its name is never followed) and renamed over the old one, so a reader sees the old
//! dump or the new one whole.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::counters::DaemonCounters;
use crate::status::StatusSources;

/// Where the dumps go unless `--dump-dir` says otherwise (the systemd unit's
/// `RuntimeDirectory`).
pub const DEFAULT_DIR: &str = "/run/haldir";
/// The SIGUSR1 data dump's file name.
pub const DATA_FILE: &str = "haldir.data";
/// The SIGUSR2 statistics' file name.
pub const STATS_FILE: &str = "haldir.stats";

/// Which dump a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dump {
    /// SIGUSR1: the status, as `haldir status` prints it.
    Data,
    /// SIGUSR2: every counter, in the Prometheus text format.
    Stats,
}

impl Dump {
    fn file(self) -> &'static str {
        match self {
            Dump::Data => DATA_FILE,
            Dump::Stats => STATS_FILE,
        }
    }

    fn signal(self) -> &'static str {
        match self {
            Dump::Data => "SIGUSR1",
            Dump::Stats => "SIGUSR2",
        }
    }
}

/// Creates the dump directory if it is missing (called while haldir may still create it)
/// and installs the SIGUSR1 / SIGUSR2 handlers; the task writes a dump per signal until
/// shutdown. After shutdown the handlers stay installed: a late signal is ignored.
pub fn spawn(
    dir: PathBuf,
    sources: StatusSources,
    counters: Arc<DaemonCounters>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let mut usr1 = signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?;
    let mut usr2 = signal(SignalKind::user_defined2()).context("installing the SIGUSR2 handler")?;
    if let Err(e) = std::fs::create_dir_all(&dir) {
        warn!(dir = %dir.display(), "the SIGUSR1 / SIGUSR2 dumps cannot be written there: {e}");
    }
    Ok(tokio::spawn(async move {
        loop {
            let dump = tokio::select! {
                _ = usr1.recv() => Dump::Data,
                _ = usr2.recv() => Dump::Stats,
                _ = shutdown.changed() => return,
            };
            let document = crate::status::document(&sources, Some(&counters));
            let text = match dump {
                Dump::Data => format!(
                    "haldir {} data dump, {} (pid {})\n\n{}",
                    env!("CARGO_PKG_VERSION"),
                    haldir_status::time::utc_text(haldir_status::time::unix_now()),
                    std::process::id(),
                    haldir_status::text::render(&document)
                ),
                Dump::Stats => {
                    haldir_status::prometheus::render(&document, env!("CARGO_PKG_VERSION"))
                }
            };
            drop(document);
            let size = text.len();
            let path = dir.join(dump.file());
            let written = tokio::task::spawn_blocking({
                let path = path.clone();
                move || write_atomically(&path, &text)
            })
            .await;
            crate::memory::release_after_answer(size);
            match written {
                Ok(Ok(())) => info!(path = %path.display(), "{}: dump written", dump.signal()),
                Ok(Err(e)) => {
                    error!(path = %path.display(), "{}: cannot write the dump: {e}", dump.signal())
                }
                Err(e) => {
                    error!(path = %path.display(), "{}: writing the dump failed: {e}", dump.signal())
                }
            }
        }
    }))
}

/// Writes `text` to `path` through a new file beside it, created exclusively with mode
/// 0600, then renamed over `path` (a symlink at `path` is replaced, never followed).
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    write_atomically_with(path, text, 0o600, true)
}

/// [`write_atomically`] with the file's `mode`, and an fsync before the rename only when
/// `durable` (the status file, rewritten on every change, is not).
pub fn write_atomically_with(
    path: &Path,
    text: &str,
    mode: u32,
    durable: bool,
) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    // Left by an earlier failed write; unlink removes a symlink itself, not its target.
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&temporary)?;
    let written =
        file.write_all(text.as_bytes())
            .and_then(|()| if durable { file.sync_all() } else { Ok(()) });
    drop(file);
    if let Err(e) = written.and_then(|()| std::fs::rename(&temporary, path)) {
        let _ = std::fs::remove_file(&temporary);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("haldir-dumps-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_dump_replaces_a_planted_symlink_and_leaves_its_target_alone() {
        let dir = scratch("symlink");
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = dir.join(DATA_FILE);
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_atomically(&path, "the dump\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(
            meta.file_type().is_file(),
            "the symlink itself was replaced"
        );
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "the dump\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_status_file_is_written_through_an_exclusive_temporary_that_never_follows_a_link() {
        let dir = scratch("status");
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let path = dir.join("status.json");
        let temporary = dir.join(format!(".status.json.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &temporary).unwrap();
        write_atomically_with(&path, "{}\n", 0o644, false).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // The umask may only narrow it.
        assert_eq!(mode & !0o644, 0, "mode {mode:o}");
        assert!(!temporary.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_planted_symlink_at_the_temporary_name_is_not_followed() {
        let dir = scratch("temporary");
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let path = dir.join(STATS_FILE);
        let temporary = dir.join(format!(".{STATS_FILE}.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &temporary).unwrap();
        write_atomically(&path, "counters\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "counters\n");
        assert!(!temporary.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_dump_into_a_missing_directory_is_an_error_not_a_panic() {
        let dir = scratch("missing").join("no-such-dir");
        assert!(write_atomically(&dir.join(DATA_FILE), "x").is_err());
    }
}
