//! A reusable network-namespace test bed made of real kernel objects.
//!
//! A [`Lab`] is one L2 segment: a switch namespace holding bridge `br0`, and hosts, each a
//! namespace whose `eth0` is a veth into that bridge. On top of it:
//!
//! - [`probe`]: a client-side outage meter (a [`Responder`] per router, a [`Prober`] that
//!   sends a UDP probe to the VIP every millisecond and records who answered, and when);
//! - [`capture`]: a packet capture on the bridge keeping VRRP, ARP and IPv6 NA frames;
//! - [`keepalived`]: Debian's keepalived as a reference VRRP peer, with a crash recipe;
//! - [`appliance`]: the two-NIC LVS-DR appliance (client, gateway, two routers, two real
//!   servers on three bridges) that the demo (`haldir-lab`) and `tests/kernel_appliance.rs` run;
//! - [`director_site`]: the site of issue 17 (a client, an upstream router, real servers in
//!   DR, long-lived connections) and the judging of an event there, which two director
//!   setups share:
//!   - [`active_active`]: directors behind an ECMP router, each announcing the VIP over BGP
//!     with FRR, that the demo (`--active-active`) and `tests/kernel_active_active.rs` run;
//!   - [`active_standby`]: a haldir VRRP pair instead (`--active-standby`, and the same
//!     test file), for the comparison;
//! - [`stall`]: how long the machine did not run the test process (the emulated VM on a busy
//!   host), to tell a slow daemon from a stalled machine;
//! - [`traffic`]: long-lived TCP connections through a VIP to echo servers, recording
//!   every connection lost or stalled.
//!
//! Everything the lab creates (namespaces, processes, sockets) is torn down when the [`Lab`]
//! is dropped, also while unwinding from a failed assertion. All traffic stays inside the
//! lab's own namespaces. Needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN).
//!
//! The lab is a crate of its own, never linked into the `haldir` binary: it runs the haldir
//! binary it is given (the tests pass `env!("CARGO_BIN_EXE_haldir")`) and reads its status
//! file or asks `haldir status`. [`demo`] is the demo, the `haldir-lab` binary
//! (`cargo run --release -p haldir-lab`).

pub mod active_active;
pub mod active_standby;
pub mod appliance;
pub mod capture;
pub mod demo;
pub mod director_site;
pub mod frr;
pub mod haldir;
pub mod inject;
pub mod keepalived;
pub mod netns;
pub mod pair;
pub mod probe;
pub mod stall;
pub mod traffic;
pub mod vm;

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

pub use capture::{Capture, FrameKind};
pub use frr::{Frr, FrrConfig};
pub use haldir::{describe_all, schema_checked, Haldir, HaldirInstance};
pub use inject::Injector;
pub use keepalived::{Keepalived, KeepalivedConfig, KeepalivedState};
pub use netns::{haldir_user, in_netns, spawn_in_netns, Lab};
/// Signals for [`Lab::kill`].
pub use nix::sys::signal::Signal;
pub use probe::{ProbeConfig, ProbeReport, Prober, Reply, Responder};
pub use traffic::{EchoServer, Traffic, TrafficConfig, TrafficReport};

/// True when the process runs as root (effective uid 0): the lab needs it.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// For tests that need root: true (and a loud SKIPPED line naming `test`) when
/// the process is not root, so the test returns instead of failing.
pub fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("\n!!!!!!!! SKIPPED {test}: needs root for network namespaces !!!!!!!!\n");
    true
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; true when it held.
///
/// The condition is always evaluated at least once, and once more after the deadline, so a
/// slow last poll does not turn a success into a timeout.
pub fn wait_until(timeout: Duration, cond: impl FnMut() -> bool) -> bool {
    poll_until(timeout, Duration::from_millis(10), cond)
}

/// [`wait_until`] with another polling interval (for conditions that are costly to
/// evaluate, say a command run in a namespace).
pub fn poll_until(timeout: Duration, interval: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return cond();
        }
        std::thread::sleep(interval);
    }
}

/// Raises this process's open-file limit (RLIMIT_NOFILE) to at least `wanted`, the hard
/// limit with it (root may): for tests that hold thousands of connections.
pub fn raise_fd_limit(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = wanted.max(limit.rlim_cur);
        limit.rlim_max = limit.rlim_max.max(limit.rlim_cur);
        assert_eq!(
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit),
            0,
            "cannot raise RLIMIT_NOFILE to {wanted}"
        );
    }
}

/// A world-writable scratch directory under the system's temporary directory, for what
/// an unprivileged process the test starts writes (scripts run as `nobody`, a haldir
/// started without root); removed on drop unless the test failed (kept to look at).
pub struct OpenDir(pub std::path::PathBuf);

impl OpenDir {
    /// `haldir-TAG-PID`, made fresh.
    pub fn new(tag: &str) -> OpenDir {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("haldir-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        OpenDir(dir)
    }
}

impl Drop for OpenDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Locks `mutex`, taking over a poisoned one: the lab's shared records (captured frames,
/// spawned processes, counters) stay readable after a panicking thread.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Renders a command line for error messages: `ip -n ns link set eth0 up`.
pub(crate) fn command_line(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs `cmd` to completion and fails, naming the command and quoting its stderr, unless it
/// exits with status 0.
pub(crate) fn run_checked(cmd: &mut Command) -> anyhow::Result<Output> {
    let output = run_unchecked(cmd)?;
    if !output.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            command_line(cmd),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output)
}

/// Runs `cmd` to completion, failing only when it cannot be started.
pub(crate) fn run_unchecked(cmd: &mut Command) -> anyhow::Result<Output> {
    cmd.stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{}`", command_line(cmd)))
}

/// `ip ARGS...`, checked.
pub(crate) fn ip<I, S>(args: I) -> anyhow::Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_checked(Command::new("ip").args(args))
}

/// Places a file at `path` holding `text` with permissions `mode`, written by a child
/// process (`install`) so that no descriptor open for writing on it lives in this process.
///
/// A test process forks from many threads at once. A file this process wrote itself can
/// have its write descriptor inherited by another thread's child in the instant between
/// that child's fork and exec, and executing the file then fails with ETXTBSY ("Text file
/// busy"). Scripts and programs that tests (or the haldir they start) execute are placed
/// with this instead.
pub fn place_file(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let staged = path.with_extension(format!("staged-{}", std::process::id()));
    std::fs::write(&staged, text).with_context(|| format!("cannot write {}", staged.display()))?;
    let placed = install(&staged, path, mode);
    let _ = std::fs::remove_file(&staged);
    placed
}

/// [`place_file`] with `#!/bin/sh` and `body`, mode 0755: a shell script to execute.
pub fn place_script(path: &Path, body: &str) -> anyhow::Result<()> {
    place_file(path, &format!("#!/bin/sh\n{body}\n"), 0o755)
}

/// Copies `from` (say a system binary) to `to` with mode 0755 by a child process, for the
/// reason [`place_file`] gives.
pub fn place_copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    install(from, to, 0o755)
}

fn install(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    let status = Command::new("install")
        .arg("-m")
        .arg(format!("{mode:o}"))
        .arg(from)
        .arg(to)
        .status()
        .context("cannot run install")?;
    anyhow::ensure!(
        status.success(),
        "install {} {} failed: {status}",
        from.display(),
        to.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_returns_true_as_soon_as_the_condition_holds() {
        let mut polls = 0;
        assert!(wait_until(Duration::from_secs(5), || {
            polls += 1;
            polls == 3
        }));
        assert_eq!(polls, 3);
    }

    #[test]
    fn wait_until_gives_up_after_the_timeout() {
        let start = Instant::now();
        assert!(!wait_until(Duration::from_millis(50), || false));
        assert!(start.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn failed_command_error_names_the_command_and_its_stderr() {
        let err = run_checked(Command::new("sh").args(["-c", "echo boom >&2; exit 3"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sh -c echo boom >&2; exit 3"), "{err}");
        assert!(err.contains("boom"), "{err}");
    }
}
