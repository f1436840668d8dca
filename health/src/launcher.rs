//! The script launcher: a small process that starts scripts as the script user on behalf
//! of a daemon that has given up the right to switch users.
//!
//! When haldir starts as root it forks this process early (`src/privilege.rs`), keeps
//! only CAP_NET_ADMIN and CAP_NET_RAW in the daemon, and leaves the launcher with only
//! CAP_SETUID, CAP_SETGID (to become the script user) and CAP_KILL (to kill a timed-out
//! script's process group, which belongs to another uid). The two talk over a socketpair:
//!
//! * the daemon sends [`Request::Spawn`] (`id`, `uid`, `gid`, argv) and, when a run times
//!   out or is dropped, [`Request::Kill`] (`id`);
//! * the launcher answers each spawn exactly once: [`Reply::Exited`] with the raw wait
//!   status, or [`Reply::Failed`] when the script could not be started.
//!
//! What it starts is fixed at its start, from the validated configuration: a [`Policy`]
//! of the users (uid, gid) and the programs the configuration's scripts name. The launcher
//! is forked before the configuration is read (so that it does not carry a copy of the
//! parse's memory: at 10,000 virtual servers that was 100 MB of resident memory) and
//! waits for that policy: the daemon sends it once ([`Policy::emit`],
//! [`receive_policy`]), still as root and before anything from the network was read. A spawn for
//! any other user (uid 0 included, unless the configuration's script user is root) or
//! program is refused, answered as failed, and logged on the launcher's stderr, which is
//! the daemon's. The policy changes only through [`Request::Reload`]: the launcher reads
//! and validates the configuration file itself (the one it was started with) and takes its
//! scripts; the daemon cannot hand it a list. The launcher does nothing else: no network,
//! no files but the configuration. When the daemon goes away (end of stream) it kills the
//! process groups of the scripts still running and exits. [`crate::misc::MiscCheck`] uses it through [`client`] whenever one is installed
//! ([`install`]); without one (an unprivileged haldir, the tests) scripts are spawned
//! directly as before.
//!
//! Frames on the socket (all integers little-endian):
//!
//! ```text
//!  0      4      5              13
//! +------+------+---------------+---------------------------------------------+
//! | len  | kind | id (u64)      | kind 1 Spawn: uid u32, gid u32, argc u32,   |
//! | u32  | u8   |               |   then argc × (len u32, bytes)              |
//! |      |      |               | kind 2 Kill: nothing                        |
//! |      |      |               | kind 5 Reload: nothing (answered Exited 0   |
//! |      |      |               |   or Failed with the reason)                |
//! |      |      |               | kind 3 Exited: wait status i32              |
//! |      |      |               | kind 4 Failed: message (len u32, UTF-8)     |
//! |      |      |               | kind 6 Policy (first frame only): n u32,    |
//! |      |      |               |   n × (uid u32, gid u32), m u32, then       |
//! |      |      |               |   m × program (len u32, bytes)              |
//! +------+------+---------------+---------------------------------------------+
//! ```
//! `len` counts the bytes after itself, at most [`MAX_FRAME`].

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// The largest frame either side accepts (argv of a script, an error message).
pub const MAX_FRAME: usize = 1 << 20;
/// The most arguments a spawn request may carry.
const MAX_ARGS: usize = 4096;

const KIND_SPAWN: u8 = 1;
const KIND_KILL: u8 = 2;
const KIND_EXITED: u8 = 3;
const KIND_FAILED: u8 = 4;
const KIND_RELOAD: u8 = 5;
const KIND_POLICY: u8 = 6;
/// kind + id.
const HEADER_LEN: usize = 9;

/// What the daemon asks of the launcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Start `argv` as `uid`:`gid` (no supplementary groups), in its own process group,
    /// stdio on /dev/null, cwd `/`.
    Spawn {
        /// The daemon's name for this run.
        id: u64,
        /// The user to run as.
        uid: u32,
        /// The group to run as.
        gid: u32,
        /// Program (a path) and arguments.
        argv: Vec<OsString>,
    },
    /// Kill the process group of run `id` (SIGKILL), if it still runs.
    Kill {
        /// The run.
        id: u64,
    },
    /// Read the configuration file again and take its scripts as the policy.
    Reload {
        /// The request's id, answered once.
        id: u64,
    },
}

/// What the launcher may start: the configuration's script users and programs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// The (uid, gid) pairs scripts run as.
    pub users: std::collections::BTreeSet<(u32, u32)>,
    /// The programs (absolute paths, as the daemon resolves them) scripts start.
    pub programs: std::collections::BTreeSet<PathBuf>,
}

impl Policy {
    /// Why `argv` may not run as `uid`:`gid`, if it may not.
    pub fn refuses(&self, uid: u32, gid: u32, argv: &[OsString]) -> Option<String> {
        if !self.users.contains(&(uid, gid)) {
            return Some(format!(
                "uid {uid} gid {gid} is not a script user of the configuration"
            ));
        }
        let program = argv.first().map(PathBuf::from).unwrap_or_default();
        if !self.programs.contains(&program) {
            return Some(format!(
                "{} is not a program of the configuration's scripts",
                program.display()
            ));
        }
        None
    }
}

impl Policy {
    /// The frame that gives a freshly started launcher its policy, length prefix included.
    pub fn emit(&self) -> Vec<u8> {
        frame(KIND_POLICY, 0, |out| {
            out.extend_from_slice(&(self.users.len() as u32).to_le_bytes());
            for (uid, gid) in &self.users {
                out.extend_from_slice(&uid.to_le_bytes());
                out.extend_from_slice(&gid.to_le_bytes());
            }
            out.extend_from_slice(&(self.programs.len() as u32).to_le_bytes());
            for program in &self.programs {
                put_bytes(out, program.as_os_str().as_bytes());
            }
        })
    }

    /// Parses a policy frame body (after the length prefix).
    pub fn parse(body: &[u8]) -> Result<Policy, FrameError> {
        let mut f = Fields(body);
        let kind = f.take(1)?[0];
        f.u64()?;
        if kind != KIND_POLICY {
            return Err(FrameError::UnknownKind(kind));
        }
        let mut policy = Policy::default();
        // Counts larger than the frame holds end in `Truncated`, never a long loop.
        for _ in 0..f.u32()? {
            let user = (f.u32()?, f.u32()?);
            policy.users.insert(user);
        }
        for _ in 0..f.u32()? {
            let program = OsString::from_vec(f.bytes()?.to_vec());
            policy.programs.insert(PathBuf::from(program));
        }
        Ok(policy)
    }
}

/// In a freshly started launcher: the policy the daemon sends first. `None` when the
/// daemon closed the socket without one (its configuration was rejected, it is exiting).
pub fn receive_policy(
    socket: &mut std::os::unix::net::UnixStream,
) -> std::io::Result<Option<Policy>> {
    use std::io::Read as _;
    let mut len = [0u8; 4];
    match socket.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    let invalid = |e: FrameError| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    if !(HEADER_LEN..=MAX_FRAME).contains(&len) {
        return Err(invalid(FrameError::TooLarge));
    }
    let mut body = vec![0u8; len];
    socket.read_exact(&mut body)?;
    Policy::parse(&body).map(Some).map_err(invalid)
}

/// How the launcher reads its policy again ([`Request::Reload`]): the configuration file
/// it was started with, read and validated by the launcher itself.
pub type PolicySource = Box<dyn FnMut() -> Result<Policy, String> + Send>;

/// What the launcher answers, once per spawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The script ended; its raw wait status.
    Exited {
        /// The run.
        id: u64,
        /// As from `waitpid` (`ExitStatus::from_raw`).
        status: i32,
    },
    /// The script could not be started.
    Failed {
        /// The run.
        id: u64,
        /// Why (the spawn error).
        message: String,
    },
}

/// A frame that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than its fields.
    #[error("launcher frame truncated")]
    Truncated,
    /// An unknown kind byte.
    #[error("unknown launcher frame kind {0}")]
    UnknownKind(u8),
    /// Over the limits.
    #[error("launcher frame too large")]
    TooLarge,
    /// A message that is not UTF-8.
    #[error("launcher message is not UTF-8")]
    NotUtf8,
}

/// Reads fields off a frame body, never past its end.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.0.len() < n {
            return Err(FrameError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Result<&'a [u8], FrameError> {
        let n = self.u32()? as usize;
        if n > MAX_FRAME {
            return Err(FrameError::TooLarge);
        }
        self.take(n)
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn frame(kind: u8, id: u64, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    out.push(kind);
    out.extend_from_slice(&id.to_le_bytes());
    body(&mut out);
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_le_bytes());
    out
}

impl Request {
    /// The frame, length prefix included.
    pub fn emit(&self) -> Vec<u8> {
        match self {
            Request::Spawn { id, uid, gid, argv } => frame(KIND_SPAWN, *id, |out| {
                out.extend_from_slice(&uid.to_le_bytes());
                out.extend_from_slice(&gid.to_le_bytes());
                out.extend_from_slice(&(argv.len() as u32).to_le_bytes());
                for arg in argv {
                    put_bytes(out, arg.as_bytes());
                }
            }),
            Request::Kill { id } => frame(KIND_KILL, *id, |_| {}),
            Request::Reload { id } => frame(KIND_RELOAD, *id, |_| {}),
        }
    }

    /// Parses a frame body (after the length prefix).
    pub fn parse(body: &[u8]) -> Result<Request, FrameError> {
        let mut f = Fields(body);
        let kind = f.take(1)?[0];
        let id = f.u64()?;
        match kind {
            KIND_SPAWN => {
                let uid = f.u32()?;
                let gid = f.u32()?;
                let argc = f.u32()? as usize;
                if argc > MAX_ARGS {
                    return Err(FrameError::TooLarge);
                }
                let argv = (0..argc)
                    .map(|_| f.bytes().map(|b| OsString::from_vec(b.to_vec())))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Request::Spawn { id, uid, gid, argv })
            }
            KIND_KILL => Ok(Request::Kill { id }),
            KIND_RELOAD => Ok(Request::Reload { id }),
            other => Err(FrameError::UnknownKind(other)),
        }
    }
}

impl Reply {
    /// The frame, length prefix included.
    pub fn emit(&self) -> Vec<u8> {
        match self {
            Reply::Exited { id, status } => frame(KIND_EXITED, *id, |out| {
                out.extend_from_slice(&status.to_le_bytes())
            }),
            Reply::Failed { id, message } => {
                frame(KIND_FAILED, *id, |out| put_bytes(out, message.as_bytes()))
            }
        }
    }

    /// Parses a frame body (after the length prefix).
    pub fn parse(body: &[u8]) -> Result<Reply, FrameError> {
        let mut f = Fields(body);
        let kind = f.take(1)?[0];
        let id = f.u64()?;
        match kind {
            KIND_EXITED => Ok(Reply::Exited {
                id,
                status: f.u32()? as i32,
            }),
            KIND_FAILED => Ok(Reply::Failed {
                id,
                message: String::from_utf8(f.bytes()?.to_vec()).map_err(|_| FrameError::NotUtf8)?,
            }),
            other => Err(FrameError::UnknownKind(other)),
        }
    }

    fn id(&self) -> u64 {
        match self {
            Reply::Exited { id, .. } | Reply::Failed { id, .. } => *id,
        }
    }
}

/// Reads one frame body; `None` at a clean end of stream.
async fn read_frame<R: AsyncReadExt + Unpin>(reader: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if !(HEADER_LEN..=MAX_FRAME).contains(&len) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            FrameError::TooLarge,
        ));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    Ok(Some(body))
}

// ---------------------------------------------------------------------------------------
// The launcher process.

/// Runs the launcher on `socket` until the daemon closes it; then kills the process groups
/// of the scripts still running. It starts only what `policy` allows, and takes a new one
/// from `reload` when asked. Call in the freshly forked child, which has no runtime.
pub fn serve(
    socket: std::os::unix::net::UnixStream,
    policy: Policy,
    reload: PolicySource,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve_async(socket, policy, reload))
}

async fn serve_async(
    socket: std::os::unix::net::UnixStream,
    mut policy: Policy,
    mut reload: PolicySource,
) -> std::io::Result<()> {
    socket.set_nonblocking(true)?;
    let socket = tokio::net::UnixStream::from_std(socket)?;
    let (mut reader, mut writer) = socket.into_split();
    // Process groups of the running scripts, by run id.
    let running: Arc<Mutex<HashMap<u64, Pid>>> = Arc::default();
    let (replies_tx, mut replies_rx) = mpsc::unbounded_channel::<Reply>();
    let write = tokio::spawn(async move {
        while let Some(reply) = replies_rx.recv().await {
            if writer.write_all(&reply.emit()).await.is_err() {
                return;
            }
        }
    });
    let result = loop {
        let body = match read_frame(&mut reader).await {
            Ok(Some(body)) => body,
            Ok(None) => break Ok(()),
            // The daemon exited with replies it never read.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break Ok(()),
            Err(e) => break Err(e),
        };
        match Request::parse(&body) {
            Ok(Request::Spawn { id, uid, gid, argv }) => {
                if let Some(why) = policy.refuses(uid, gid, &argv) {
                    eprintln!(
                        "haldir script launcher: refused to start {:?}: {why}",
                        argv.first()
                            .map(|p| p.to_string_lossy().into_owned())
                            .unwrap_or_default()
                    );
                    let _ = replies_tx.send(Reply::Failed {
                        id,
                        message: format!("refused by the script launcher: {why}"),
                    });
                    continue;
                }
                spawn_one(id, uid, gid, argv, &running, &replies_tx);
            }
            Ok(Request::Reload { id }) => {
                // Reading and validating a file: blocking work, but nothing else waits on
                // this process meanwhile that matters more than the reload itself.
                let reply = match reload() {
                    Ok(new) => {
                        policy = new;
                        Reply::Exited { id, status: 0 }
                    }
                    Err(message) => {
                        eprintln!(
                            "haldir script launcher: reload refused, scripts unchanged: {message}"
                        );
                        Reply::Failed { id, message }
                    }
                };
                let _ = replies_tx.send(reply);
            }
            Ok(Request::Kill { id }) => {
                if let Some(pgid) = running.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
                    let _ = killpg(*pgid, Signal::SIGKILL);
                }
            }
            Err(e) => {
                break Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
            }
        }
    };
    // The daemon is gone: its scripts go with it (as a dropped run does).
    for pgid in running.lock().unwrap_or_else(|e| e.into_inner()).values() {
        let _ = killpg(*pgid, Signal::SIGKILL);
    }
    drop(replies_tx);
    write.abort();
    result
}

fn spawn_one(
    id: u64,
    uid: u32,
    gid: u32,
    argv: Vec<OsString>,
    running: &Arc<Mutex<HashMap<u64, Pid>>>,
    replies: &mpsc::UnboundedSender<Reply>,
) {
    let Some((program, args)) = argv.split_first() else {
        let _ = replies.send(Reply::Failed {
            id,
            message: "empty command".into(),
        });
        return;
    };
    // Only an absolute path: the daemon resolved it at configuration time.
    let program = PathBuf::from(program);
    if !program.is_absolute() {
        let _ = replies.send(Reply::Failed {
            id,
            message: format!("{} is not an absolute path", program.display()),
        });
        return;
    }
    let mut command = crate::misc::script_command(&program, args, Some((uid, gid)));
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = replies.send(Reply::Failed {
                id,
                message: e.to_string(),
            });
            return;
        }
    };
    let Some(pid) = child.id() else {
        let _ = replies.send(Reply::Failed {
            id,
            message: "the script vanished before it could be waited for".into(),
        });
        return;
    };
    running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, Pid::from_raw(pid as i32));
    let running = running.clone();
    let replies = replies.clone();
    tokio::spawn(async move {
        let reply = match child.wait().await {
            Ok(status) => Reply::Exited {
                id,
                status: status.into_raw(),
            },
            Err(e) => Reply::Failed {
                id,
                message: format!("waiting for it: {e}"),
            },
        };
        running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        let _ = replies.send(reply);
    });
}

// ---------------------------------------------------------------------------------------
// The daemon's side.

/// The launcher's socket, waiting for the daemon's runtime to take it.
static SOCKET: Mutex<Option<std::os::unix::net::UnixStream>> = Mutex::new(None);
/// The client, made on first use inside the runtime.
static CLIENT: OnceLock<Client> = OnceLock::new();

/// Makes every script of this process go through the launcher at the other end of
/// `socket` (call once, before the runtime starts).
pub fn install(socket: std::os::unix::net::UnixStream) {
    *SOCKET.lock().unwrap_or_else(|e| e.into_inner()) = Some(socket);
}

/// The launcher client, if one was installed; must be called inside a tokio runtime.
pub fn client() -> Option<&'static Client> {
    if let Some(client) = CLIENT.get() {
        return Some(client);
    }
    let socket = SOCKET.lock().unwrap_or_else(|e| e.into_inner()).take()?;
    Some(CLIENT.get_or_init(|| Client::start(socket)))
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<ExitStatus, String>>>>>;

/// The daemon's handle on the launcher: one task owns the socket; runs wait on oneshots.
pub struct Client {
    requests: mpsc::UnboundedSender<Request>,
    pending: Pending,
    next_id: AtomicU64,
}

impl Client {
    fn start(socket: std::os::unix::net::UnixStream) -> Client {
        let (requests, mut requests_rx) = mpsc::unbounded_channel::<Request>();
        let pending: Pending = Arc::default();
        let task_pending = pending.clone();
        tokio::spawn(async move {
            let gone = |why: String| {
                tracing::error!("the script launcher is gone ({why}): scripts cannot run");
            };
            let socket = match socket
                .set_nonblocking(true)
                .and_then(|()| tokio::net::UnixStream::from_std(socket))
            {
                Ok(socket) => socket,
                Err(e) => {
                    gone(e.to_string());
                    task_pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clear();
                    return;
                }
            };
            let (mut reader, mut writer) = socket.into_split();
            loop {
                tokio::select! {
                    request = requests_rx.recv() => {
                        let Some(request) = request else { return };
                        if let Err(e) = writer.write_all(&request.emit()).await {
                            gone(e.to_string());
                            break;
                        }
                    }
                    body = read_frame(&mut reader) => {
                        let reply = match body {
                            Ok(Some(body)) => Reply::parse(&body),
                            Ok(None) => { gone("end of stream".into()); break; }
                            Err(e) => { gone(e.to_string()); break; }
                        };
                        let reply = match reply {
                            Ok(reply) => reply,
                            Err(e) => { gone(e.to_string()); break; }
                        };
                        let waiter = task_pending
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&reply.id());
                        if let Some(waiter) = waiter {
                            let _ = waiter.send(match reply {
                                Reply::Exited { status, .. } => Ok(ExitStatus::from_raw(status)),
                                Reply::Failed { message, .. } => Err(message),
                            });
                        }
                    }
                }
            }
            // Every waiting run learns that its script's fate is unknown.
            task_pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            // Later requests fail at once: the receiver is dropped with this task.
        });
        Client {
            requests,
            pending,
            next_id: AtomicU64::new(1),
        }
    }

    /// A new request id and the receiver of its one answer.
    fn register(&self) -> (u64, oneshot::Receiver<Result<ExitStatus, String>>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        (id, rx)
    }

    /// Asks the launcher to read the configuration again and take its scripts; `Err` with
    /// the launcher's reason when it refused the file (its scripts stay).
    pub async fn reload(&self) -> Result<(), String> {
        let (id, rx) = self.register();
        if self.requests.send(Request::Reload { id }).is_err() {
            return Err("the script launcher is gone".into());
        }
        match rx.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(message)) => Err(message),
            Err(_) => Err("the script launcher is gone".into()),
        }
    }

    /// Starts `argv` as `uid`:`gid`. The returned run kills the script's process group
    /// when dropped before the script ended.
    pub fn spawn(&self, uid: u32, gid: u32, argv: Vec<OsString>) -> LaunchedRun<'_> {
        let (id, rx) = self.register();
        if self
            .requests
            .send(Request::Spawn { id, uid, gid, argv })
            .is_err()
        {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        }
        LaunchedRun {
            client: self,
            id,
            exit: rx,
            ended: false,
        }
    }
}

/// A script started through the launcher.
pub struct LaunchedRun<'a> {
    client: &'a Client,
    id: u64,
    exit: oneshot::Receiver<Result<ExitStatus, String>>,
    ended: bool,
}

impl LaunchedRun<'_> {
    /// Waits for the script's end: its exit status, or why it did not run.
    pub async fn wait(&mut self) -> Result<ExitStatus, String> {
        let result = match (&mut self.exit).await {
            Ok(result) => result,
            Err(_) => Err("the script launcher is gone".into()),
        };
        self.ended = true;
        result
    }

    /// Kills the script's process group (SIGKILL); [`LaunchedRun::wait`] then returns.
    pub fn kill(&self) {
        let _ = self.client.requests.send(Request::Kill { id: self.id });
    }
}

impl Drop for LaunchedRun<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(frame: &[u8]) -> &[u8] {
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        assert_eq!(len, frame.len() - 4);
        &frame[4..]
    }

    #[test]
    fn spawn_request_bytes_parse_and_emit_back() {
        let bytes: &[u8] = &[
            0x1a, 0, 0, 0, // len 26
            1, // spawn
            7, 0, 0, 0, 0, 0, 0, 0, // id 7
            0xfe, 0xff, 0, 0, // uid 65534
            0xfe, 0xff, 0, 0, // gid 65534
            1, 0, 0, 0, // argc 1
            1, 0, 0, 0, b'/', // "/"
        ];
        let request = Request::parse(body(bytes)).unwrap();
        assert_eq!(
            request,
            Request::Spawn {
                id: 7,
                uid: 65534,
                gid: 65534,
                argv: vec!["/".into()]
            }
        );
        assert_eq!(request.emit(), bytes);
        let kill = Request::Kill { id: 9 };
        assert_eq!(Request::parse(body(&kill.emit())).unwrap(), kill);
    }

    #[test]
    fn the_first_policy_crosses_the_socket_whole_and_a_closed_socket_is_no_policy() {
        use std::io::Write as _;
        let policy = Policy {
            users: [(0, 0), (65534, 65534)].into(),
            programs: ["/bin/true".into(), "/usr/local/bin/check it".into()].into(),
        };
        let (mut daemon, mut launcher) = std::os::unix::net::UnixStream::pair().unwrap();
        daemon.write_all(&policy.emit()).unwrap();
        drop(daemon);
        assert_eq!(receive_policy(&mut launcher).unwrap(), Some(policy.clone()));
        assert_eq!(receive_policy(&mut launcher).unwrap(), None);
        // A frame whose counts promise more than it holds is refused, whole.
        let frame = policy.emit();
        for cut in 14..frame.len() - 1 {
            let mut short = frame[..cut].to_vec();
            short[..4].copy_from_slice(&((cut - 4) as u32).to_le_bytes());
            assert!(Policy::parse(body(&short)).is_err(), "cut at {cut}");
        }
        // Another kind of frame is not a policy.
        assert!(Policy::parse(body(&Request::Kill { id: 1 }.emit())).is_err());
    }

    /// The launcher itself, on a socketpair: exit statuses come back raw, a program that
    /// cannot start is a failure, a kill ends the script's group, and the end of the
    /// stream ends the launcher.
    #[test]
    fn launcher_runs_reports_and_kills_scripts() {
        use std::io::{Read, Write};
        let (mut daemon, launcher) = std::os::unix::net::UnixStream::pair().unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let policy = Policy {
            users: [(uid, gid)].into(),
            programs: [
                "/bin/sh",
                "/nonexistent/haldir-script",
                "/bin/sleep",
                "relative/script",
            ]
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        };
        let server =
            std::thread::spawn(move || serve(launcher, policy, Box::new(|| Err("unused".into()))));
        let mut send = |request: Request| daemon.write_all(&request.emit()).unwrap();
        let argv = |args: &[&str]| args.iter().map(OsString::from).collect::<Vec<_>>();
        send(Request::Spawn {
            id: 1,
            uid,
            gid,
            argv: argv(&["/bin/sh", "-c", "exit 3"]),
        });
        send(Request::Spawn {
            id: 2,
            uid,
            gid,
            argv: argv(&["/nonexistent/haldir-script"]),
        });
        send(Request::Spawn {
            id: 3,
            uid,
            gid,
            argv: argv(&["/bin/sleep", "30"]),
        });
        send(Request::Spawn {
            id: 4,
            uid,
            gid,
            argv: argv(&["relative/script"]),
        });
        let mut daemon_reader = daemon.try_clone().unwrap();
        let mut read = || {
            let mut len = [0u8; 4];
            daemon_reader.read_exact(&mut len).unwrap();
            let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
            daemon_reader.read_exact(&mut body).unwrap();
            Reply::parse(&body).unwrap()
        };
        let mut replies = std::collections::BTreeMap::new();
        for _ in 0..3 {
            let reply = read();
            replies.insert(reply.id(), reply);
        }
        assert_eq!(
            replies[&1],
            Reply::Exited {
                id: 1,
                status: 3 << 8
            }
        );
        assert!(
            matches!(&replies[&2], Reply::Failed { message, .. } if message.contains("No such file")),
            "{:?}",
            replies[&2]
        );
        assert!(
            matches!(&replies[&4], Reply::Failed { message, .. } if message.contains("absolute")),
            "{:?}",
            replies[&4]
        );
        daemon.write_all(&Request::Kill { id: 3 }.emit()).unwrap();
        let killed = read();
        assert_eq!(killed.id(), 3);
        let Reply::Exited { status, .. } = killed else {
            panic!("{killed:?}")
        };
        assert_eq!(ExitStatus::from_raw(status).signal(), Some(9));
        drop(daemon);
        drop(daemon_reader);
        server.join().unwrap().unwrap();
    }

    /// What the launcher may start is the policy it forked with, changed only by a reload
    /// it reads itself: another uid (root included) or an unlisted program is refused.
    #[test]
    fn the_launcher_refuses_other_users_and_programs_until_a_reload_allows_them() {
        use std::io::{Read, Write};
        let (mut daemon, launcher) = std::os::unix::net::UnixStream::pair().unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let other_uid = if uid == 0 { 65534 } else { 0 };
        let policy = Policy {
            users: [(uid, gid)].into(),
            programs: [PathBuf::from("/bin/true")].into(),
        };
        let mut reloads = 0;
        let source: PolicySource = Box::new(move || {
            reloads += 1;
            if reloads == 1 {
                return Err("t.conf:3: bad".into());
            }
            Ok(Policy {
                users: [(uid, gid)].into(),
                programs: [PathBuf::from("/bin/true"), PathBuf::from("/bin/false")].into(),
            })
        });
        let server = std::thread::spawn(move || serve(launcher, policy, source));
        let mut reader = daemon.try_clone().unwrap();
        let mut ask = |request: Request| {
            daemon.write_all(&request.emit()).unwrap();
            let mut len = [0u8; 4];
            reader.read_exact(&mut len).unwrap();
            let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
            reader.read_exact(&mut body).unwrap();
            Reply::parse(&body).unwrap()
        };
        let spawn = |id, uid, program: &str| Request::Spawn {
            id,
            uid,
            gid,
            argv: vec![OsString::from(program)],
        };
        assert_eq!(
            ask(spawn(1, uid, "/bin/true")),
            Reply::Exited { id: 1, status: 0 }
        );
        let refused = |reply: Reply, what: &str| match reply {
            Reply::Failed { message, .. } => {
                assert!(
                    message.contains("refused") && message.contains(what),
                    "{message}"
                )
            }
            other => panic!("not refused: {other:?}"),
        };
        refused(
            ask(spawn(2, other_uid, "/bin/true")),
            &format!("uid {other_uid}"),
        );
        refused(ask(spawn(3, uid, "/bin/false")), "/bin/false");
        // A reload the launcher rejects changes nothing; one it accepts widens the list.
        assert!(matches!(
            ask(Request::Reload { id: 4 }),
            Reply::Failed { id: 4, .. }
        ));
        refused(ask(spawn(5, uid, "/bin/false")), "/bin/false");
        assert_eq!(
            ask(Request::Reload { id: 6 }),
            Reply::Exited { id: 6, status: 0 }
        );
        assert_eq!(
            ask(spawn(7, uid, "/bin/false")),
            Reply::Exited {
                id: 7,
                status: 1 << 8
            }
        );
        drop(daemon);
        drop(reader);
        server.join().unwrap().unwrap();
    }

    #[test]
    fn replies_round_trip_and_bad_frames_are_errors() {
        let exited: &[u8] = &[13, 0, 0, 0, 3, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0];
        let reply = Reply::parse(body(exited)).unwrap();
        assert_eq!(reply, Reply::Exited { id: 2, status: 256 });
        assert_eq!(ExitStatus::from_raw(256).code(), Some(1));
        assert_eq!(reply.emit(), exited);
        let failed = Reply::Failed {
            id: 3,
            message: "Permission denied".into(),
        };
        assert_eq!(Reply::parse(body(&failed.emit())).unwrap(), failed);
        assert_eq!(Reply::parse(&[3, 1]), Err(FrameError::Truncated));
        assert_eq!(
            Request::parse(&[9, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::UnknownKind(9))
        );
        // An argument longer than the frame.
        let mut spawn = Request::Spawn {
            id: 1,
            uid: 0,
            gid: 0,
            argv: vec!["/bin/true".into()],
        }
        .emit();
        spawn.truncate(spawn.len() - 2);
        assert_eq!(Request::parse(&spawn[4..]), Err(FrameError::Truncated));
    }
}
