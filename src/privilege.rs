//! Least privilege for a haldir started as root: after start the daemon keeps only
//! CAP_NET_ADMIN and CAP_NET_RAW; scripts are started by a separate launcher process.
//!
//! # Why a launcher process
//!
//! Scripts (notify, `vrrp_script`, `MISC_CHECK`) must run as the unprivileged script user,
//! and switching to it needs CAP_SETUID and CAP_SETGID; killing a timed-out script's
//! process group, which then belongs to another uid, needs CAP_KILL. Keeping those three
//! in the daemon would leave it able to become any user. So, before the runtime starts,
//! [`start_script_launcher`] forks a small process ([`haldir_health::launcher`]) that
//! holds only CAP_SETUID, CAP_SETGID and CAP_KILL and does nothing but start scripts as
//! the script user, and kill their process groups, when the daemon asks over a
//! socketpair. It is forked before anything is opened, so it holds no socket, file or
//! configuration of the daemon's; it sits in a process group of its own (a terminal's
//! Ctrl-C reaches the daemon, which then still runs the `notify_stop` scripts through it)
//! and exits, killing the scripts still running, when the daemon's end of the socket
//! closes. Its bounding set is left alone so that a script (or a `sudo` in it) behaves as
//! under keepalived.
//!
//! Once the daemon has bound what needs more than the network capabilities (the control
//! socket, the metrics port), [`drop_to_network_only`] sets its effective and permitted
//! sets to CAP_NET_ADMIN + CAP_NET_RAW, empties the inheritable and ambient sets, removes
//! everything else from the bounding set and sets `no_new_privs`.
//!
//! # What still works, and why
//!
//! The daemon keeps uid 0 (root without capabilities), so files that root OWNS stay
//! readable and writable without CAP_DAC_OVERRIDE: a root-owned 0600 configuration (and
//! its includes) is re-read on SIGHUP, the status file is rewritten in a root-owned
//! directory, the control socket is removed at exit. `nft` (accept mode) is executed as
//! uid 0 and gets CAP_NET_ADMIN from the bounding set. IPVS, the sync daemon, addresses
//! and routes need CAP_NET_ADMIN; VRRP's raw and packet sockets CAP_NET_RAW.
//!
//! What no longer works after the drop: files and directories root does not own and cannot
//! write by their mode (a status file in another user's 0755 directory), a health check
//! source port below 1024 (`bind_port`, CAP_NET_BIND_SERVICE) — kept when the starting
//! configuration has one — and a script user switch in the daemon itself (hence the
//! launcher).
//!
//! Limits: uid 0 still owns most of the file system, so a compromised daemon can write
//! root-owned files (e.g. under /etc); capabilities stop it from loading modules, tracing
//! processes, reading others' files, changing users. The systemd unit
//! (packaging/haldir.service) goes further and runs haldir as a dynamic unprivileged user;
//! this module is for a haldir started as root by hand or by another supervisor.

use std::collections::HashSet;

use anyhow::Context;
use caps::{CapSet, Capability, CapsHashSet};
use tracing::info;

/// What the daemon keeps.
pub const DAEMON_CAPS: [Capability; 2] = [Capability::CAP_NET_ADMIN, Capability::CAP_NET_RAW];
/// What the script launcher keeps.
pub const LAUNCHER_CAPS: [Capability; 3] = [
    Capability::CAP_SETUID,
    Capability::CAP_SETGID,
    Capability::CAP_KILL,
];

/// Whether this process is root and so drops its privileges after start.
pub fn started_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Forks the script launcher when haldir runs as root (else does nothing). Call before
/// the tokio runtime or any other thread exists: the child of a fork has only the
/// calling thread.
pub fn start_script_launcher() -> anyhow::Result<()> {
    if !started_as_root() {
        return Ok(());
    }
    // A forked child has only the forking thread: any other one's locks stay taken.
    let threads = thread_count()?;
    if threads != 1 {
        anyhow::bail!("cannot fork the script launcher: {threads} threads already run");
    }
    let (daemon_end, launcher_end) =
        std::os::unix::net::UnixStream::pair().context("creating the script launcher's socket")?;
    // SAFETY: the process is single-threaded here (no runtime yet), so the child may do
    // anything the parent could.
    match unsafe { nix::unistd::fork() }.context("forking the script launcher")? {
        nix::unistd::ForkResult::Child => {
            drop(daemon_end);
            let code = match launcher_main(launcher_end) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("haldir script launcher: {e:#}");
                    1
                }
            };
            // Never return into the daemon's main.
            std::process::exit(code);
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(launcher_end);
            haldir_health::launcher::install(daemon_end);
            info!(pid = child.as_raw(), "script launcher started");
            Ok(())
        }
    }
}

fn launcher_main(socket: std::os::unix::net::UnixStream) -> anyhow::Result<()> {
    // Its own process group: a terminal's SIGINT goes to the daemon only. It ends when
    // the daemon's end of the socket closes (the kernel closes it however the daemon dies).
    nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0))
        .context("setpgid")?;
    keep_only(&LAUNCHER_CAPS, false).context("dropping the launcher's capabilities")?;
    haldir_health::launcher::serve(socket).context("serving the daemon")?;
    Ok(())
}

/// Drops the daemon to CAP_NET_ADMIN + CAP_NET_RAW (plus CAP_NET_BIND_SERVICE when
/// `keep_bind_service`), if it started as root. Call once, with this thread the only one.
pub fn drop_to_network_only(keep_bind_service: bool) -> anyhow::Result<()> {
    if !started_as_root() {
        return Ok(());
    }
    // Capabilities, the bounding set and no_new_privs belong to each thread: a thread that
    // already ran (tokio's blocking pool) would keep everything. Only this one may exist.
    let threads = thread_count()?;
    if threads != 1 {
        anyhow::bail!(
            "cannot drop privileges: {threads} threads already run, and capabilities are per thread"
        );
    }
    let mut keep = DAEMON_CAPS.to_vec();
    if keep_bind_service {
        keep.push(Capability::CAP_NET_BIND_SERVICE);
    }
    keep_only(&keep, true)?;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("setting no_new_privs");
    }
    let names: Vec<String> = keep.iter().map(ToString::to_string).collect();
    info!(
        capabilities = %names.join(","),
        "privileges dropped: scripts are started by the script launcher"
    );
    Ok(())
}

/// Makes `keep` (as far as this process has them) the only capabilities: effective and
/// permitted; inheritable and ambient emptied; with `bounding`, the rest leaves the bounding
/// set too.
fn keep_only(keep: &[Capability], bounding: bool) -> anyhow::Result<()> {
    let permitted = caps::read(None, CapSet::Permitted).context("reading the permitted set")?;
    let wanted: CapsHashSet = keep
        .iter()
        .copied()
        .filter(|c| permitted.contains(c))
        .collect();
    caps::clear(None, CapSet::Ambient).context("clearing the ambient set")?;
    caps::clear(None, CapSet::Inheritable).context("clearing the inheritable set")?;
    if bounding && permitted.contains(&Capability::CAP_SETPCAP) {
        // Needs CAP_SETPCAP, so before the permitted set shrinks.
        let kept: HashSet<u8> = keep.iter().map(|c| c.index()).collect();
        drop_bounding_except(&kept)?;
    } else if bounding {
        // A root without CAP_SETPCAP (some containers) cannot shrink it; what it holds is
        // already limited by whoever took CAP_SETPCAP away.
        tracing::warn!("no CAP_SETPCAP: the capability bounding set stays as it is");
    }
    caps::set(None, CapSet::Effective, &wanted).context("setting the effective set")?;
    caps::set(None, CapSet::Permitted, &wanted).context("setting the permitted set")?;
    Ok(())
}

/// Removes every capability the kernel knows (not only those the `caps` crate names) from
/// the bounding set, except `keep`.
fn drop_bounding_except(keep: &HashSet<u8>) -> anyhow::Result<()> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|text| text.trim().parse::<u8>().ok())
        .unwrap_or(63);
    for index in 0..=last {
        if keep.contains(&index) {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(index), 0, 0, 0) };
        if rc != 0 {
            let error = std::io::Error::last_os_error();
            // EINVAL: past the kernel's last capability.
            if error.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(error)
                .with_context(|| format!("dropping capability {index} from the bounding set"));
        }
    }
    Ok(())
}

/// How many threads this process has.
fn thread_count() -> anyhow::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")
        .context("counting this process's threads")?
        .count())
}

/// Whether the starting configuration has a health check bound to a source port below
/// 1024, which needs CAP_NET_BIND_SERVICE for every check run.
pub fn needs_bind_service(model: &haldir_config::Model) -> bool {
    model
        .virtual_servers
        .iter()
        .flat_map(|vs| vs.real_servers.iter())
        .flat_map(|rs| rs.checks.iter())
        .filter_map(|check| check.kind.connection()?.bind_to)
        .any(|source| source.port() != 0 && source.port() < 1024)
}
