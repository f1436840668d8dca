//! keepalived's notify FIFOs (`notify_fifo`, `vrrp_notify_fifo`, `lvs_notify_fifo`): the
//! named pipes the notify task writes its lines to, in event order, as their one writer.
//!
//! - A FIFO that does not exist is created (mode 0644, owned by the configured user and
//!   group) and removed when haldir stops or a reload drops it; one that exists must be a
//!   FIFO owned by haldir's uid or the configured user (anything else, say a file planted
//!   in its place, is refused). It is opened read-write and non-blocking, as keepalived
//!   does: opening never waits for a reader, and a write never blocks the task. A line that
//!   does not fit (the reader has fallen 64 KiB behind) is dropped and counted, never
//!   half-written (lines are shorter than PIPE_BUF, so a pipe write is all or nothing).
//! - A FIFO's script (`notify_fifo_script`) is the reader: started with the FIFO's path as
//!   its last argument, as `script_user` unless it names its own user, through the script
//!   launcher like every script, and left running. It is stopped when its FIFO goes: the
//!   FIFO is closed first (the reader sees the end of the stream) and the script's process
//!   group is killed if it has not exited a second later.
//!
//! Created while haldir still holds its start-up capabilities; a FIFO a reload adds is
//! created with what is left (owner changes then need CAP_CHOWN, which is gone: logged).

use std::io::Write as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use haldir_config::{NotifyFifo, NotifyFifos, ScriptSettings};
use haldir_health::misc::{MiscCheck, MiscCheckConfig, MiscCommand};
use haldir_health::{CheckOutcome, Checker};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::counters::DaemonCounters;

/// Which events a line reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// Instance and sync group transitions.
    Vrrp,
    /// Virtual server quorum and real server changes.
    Lvs,
}

/// How long a FIFO's reader has to exit by itself once its FIFO is closed.
const READER_GRACE: Duration = Duration::from_secs(1);

/// A FIFO's script runs until it is stopped: no timeout of its own.
const READER_LIFETIME: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

struct OpenFifo {
    config: NotifyFifo,
    file: std::fs::File,
    /// haldir made it, so haldir removes it.
    created: bool,
    reader: Option<JoinHandle<()>>,
    /// A drop was logged and no line has been written since.
    dropping: bool,
}

/// The open notify FIFOs.
pub struct FifoSet {
    open: Vec<OpenFifo>,
    settings: ScriptSettings,
    counters: Arc<DaemonCounters>,
}

impl FifoSet {
    /// Creates (where missing) and opens every FIFO of `fifos`, and starts their scripts.
    /// A FIFO that cannot be used is logged and left out; the rest work.
    pub fn open(
        fifos: &NotifyFifos,
        settings: &ScriptSettings,
        counters: Arc<DaemonCounters>,
    ) -> FifoSet {
        let mut set = FifoSet {
            open: Vec::new(),
            settings: settings.clone(),
            counters,
        };
        set.add(&fifos.fifos);
        set
    }

    fn add(&mut self, fifos: &[NotifyFifo]) {
        for fifo in fifos {
            match open_fifo(fifo) {
                Ok((file, created)) => {
                    info!(
                        fifo = %fifo.path,
                        kind = fifo.events.keyword(),
                        created,
                        "notify FIFO open"
                    );
                    let reader = fifo
                        .script
                        .as_ref()
                        .map(|_| tokio::spawn(run_reader(fifo.clone(), self.settings.clone())));
                    self.open.push(OpenFifo {
                        config: fifo.clone(),
                        file,
                        created,
                        reader,
                        dropping: false,
                    });
                }
                Err(e) => warn!(
                    fifo = %fifo.path,
                    kind = fifo.events.keyword(),
                    "notify FIFO not used: {e}"
                ),
            }
        }
    }

    /// Brings the set in step with a reloaded configuration: FIFOs whose settings did not
    /// change stay open (their reader keeps running), the others are closed and opened
    /// as now configured.
    pub async fn reconfigure(&mut self, fifos: &NotifyFifos, settings: &ScriptSettings) {
        let script_settings_changed = *settings != self.settings;
        self.settings = settings.clone();
        let (keep, close): (Vec<OpenFifo>, Vec<OpenFifo>) =
            std::mem::take(&mut self.open).into_iter().partition(|o| {
                fifos.fifos.contains(&o.config)
                    && !(script_settings_changed && o.config.script.is_some())
            });
        self.open = keep;
        for fifo in close {
            close_fifo(fifo).await;
        }
        let missing: Vec<NotifyFifo> = fifos
            .fifos
            .iter()
            .filter(|f| !self.open.iter().any(|o| o.config == **f))
            .cloned()
            .collect();
        self.add(&missing);
    }

    /// Writes `line` to every FIFO that takes its kind.
    pub fn write(&mut self, kind: LineKind, line: &str) {
        for fifo in &mut self.open {
            let takes = match kind {
                LineKind::Vrrp => fifo.config.events.takes_vrrp(),
                LineKind::Lvs => fifo.config.events.takes_lvs(),
            };
            if !takes {
                continue;
            }
            match fifo.file.write(line.as_bytes()) {
                Ok(n) if n == line.len() => {
                    self.counters
                        .notify_fifo_lines
                        .fetch_add(1, Ordering::Relaxed);
                    fifo.dropping = false;
                }
                result => {
                    self.counters
                        .notify_fifo_dropped
                        .fetch_add(1, Ordering::Relaxed);
                    if !fifo.dropping {
                        let why = match result {
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                "the FIFO is full (its reader is behind or gone)".to_owned()
                            }
                            Err(e) => e.to_string(),
                            Ok(n) => format!("only {n} of {} bytes written", line.len()),
                        };
                        warn!(fifo = %fifo.config.path, "notify FIFO line dropped: {why}; further drops are counted until a line goes through");
                        fifo.dropping = true;
                    }
                }
            }
        }
    }

    /// Closes every FIFO (removing those haldir created) and stops their scripts.
    pub async fn close(self) {
        for fifo in self.open {
            close_fifo(fifo).await;
        }
    }
}

/// Makes the FIFO if it is missing and opens it; refuses what is not a FIFO of ours.
fn open_fifo(fifo: &NotifyFifo) -> Result<(std::fs::File, bool), String> {
    use nix::sys::stat::Mode;
    let path = std::path::Path::new(&fifo.path);
    let owner = match &fifo.user {
        Some(user) => Some(
            haldir_health::misc::ScriptUser::resolve(Some(user), fifo.group.as_deref())
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let created = match nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o644)) {
        Ok(()) => true,
        Err(nix::errno::Errno::EEXIST) => false,
        Err(e) => return Err(format!("cannot create it: {e}")),
    };
    if created {
        if let Some(owner) = &owner {
            if let Err(e) = nix::unistd::chown(
                path,
                Some(nix::unistd::Uid::from_raw(owner.uid)),
                Some(nix::unistd::Gid::from_raw(owner.gid)),
            ) {
                warn!(fifo = %fifo.path, "cannot give the FIFO to {}: {e}", owner.name);
            }
        }
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            if created {
                let _ = std::fs::remove_file(path);
            }
            format!("cannot open it: {e}")
        })?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    let ours = meta.uid() == nix::unistd::geteuid().as_raw()
        || owner.as_ref().is_some_and(|o| o.uid == meta.uid());
    if !meta.file_type().is_fifo() || !ours {
        return Err(format!(
            "{} exists and is not a FIFO owned by haldir or the configured user",
            fifo.path
        ));
    }
    Ok((file, created))
}

/// Runs a FIFO's script with the FIFO's path appended, until it exits or is stopped.
async fn run_reader(fifo: NotifyFifo, settings: ScriptSettings) {
    let Some(script) = &fifo.script else {
        return;
    };
    let argv = match haldir_health::misc::command_argv(&script.command) {
        Ok(argv) => haldir_health::misc::with_args(argv, std::slice::from_ref(&fifo.path)),
        Err(e) => {
            warn!(fifo = %fifo.path, "cannot run {}: {e}", fifo.events.script_keyword());
            return;
        }
    };
    let (user, group) = match &script.user {
        Some(user) => (Some(user.clone()), script.group.clone()),
        None => (settings.user.clone(), settings.group.clone()),
    };
    let check = match MiscCheck::new(MiscCheckConfig {
        command: MiscCommand::Exec(argv.clone()),
        timeout: READER_LIFETIME,
        dynamic: false,
        user,
        group,
        security: settings.security,
    }) {
        Ok(check) => check,
        Err(e) => {
            warn!(fifo = %fifo.path, "cannot run {}: {e}", argv.join(" "));
            return;
        }
    };
    info!(fifo = %fifo.path, user = %check.user().name, "started the FIFO's script {}", argv.join(" "));
    match check.check().await {
        CheckOutcome::Down(why) => warn!(fifo = %fifo.path, "the FIFO's script ended: {why}"),
        _ => info!(fifo = %fifo.path, "the FIFO's script exited"),
    }
}

async fn close_fifo(fifo: OpenFifo) {
    let OpenFifo {
        config,
        file,
        created,
        reader,
        ..
    } = fifo;
    // Removed first, so that a reader reopening the path cannot find it again.
    if created {
        if let Err(e) = std::fs::remove_file(&config.path) {
            warn!(fifo = %config.path, "cannot remove the FIFO: {e}");
        }
    }
    drop(file);
    if let Some(mut reader) = reader {
        if tokio::time::timeout(READER_GRACE, &mut reader)
            .await
            .is_err()
        {
            // Dropping the run kills the script's process group.
            reader.abort();
            let _ = reader.await;
        }
    }
    info!(fifo = %config.path, "notify FIFO closed");
}
