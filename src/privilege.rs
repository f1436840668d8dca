//! Least privilege for a haldir started as root: after start the daemon runs as an
//! unprivileged account (`--user`, `haldir` by default) with only CAP_NET_ADMIN and
//! CAP_NET_RAW, as the systemd unit runs it; scripts are started by a separate launcher.
//!
//! # Why a launcher process
//!
//! Scripts (notify, `vrrp_script`, `MISC_CHECK`, FIFO readers, LVS notify scripts) must run
//! as their script user, and switching to it needs CAP_SETUID and CAP_SETGID; killing a
//! timed-out script's process group, which then belongs to another uid, needs CAP_KILL.
//! Keeping those in the daemon would leave it able to become any user. So, before the
//! runtime starts, [`start_script_launcher`] forks a small process
//! ([`haldir_health::launcher`]) that keeps uid 0 but only CAP_SETUID, CAP_SETGID and
//! CAP_KILL (bounding set included), with `no_new_privs` (nothing it starts gains
//! privileges from a set-uid file), and that starts only the scripts of the validated
//! configuration as their users: its [`haldir_health::launcher::Policy`] is fixed at the
//! fork and changes only when it reads the configuration file again itself, on a reload.
//! A spawn request for another uid (root included, unless the configuration's script user
//! is root) or another program is refused and logged. It is forked before anything is
//! opened, so it holds no socket or file of the daemon's; it sits in a process group of
//! its own (a terminal's Ctrl-C reaches the daemon, which then still runs the
//! `notify_stop` scripts through it) and exits, killing the scripts still running, when
//! the daemon's end of the socket closes.
//!
//! # The daemon
//!
//! Once the daemon has bound what needs more (the control socket, the metrics port) and
//! created its notify FIFOs, [`drop_to_network_only`] gives haldir's own directories
//! (`/run/haldir`, the dump and state directories) to the account, removes everything
//! but CAP_NET_ADMIN + CAP_NET_RAW from the bounding set, becomes the account (no
//! supplementary groups), keeps the two capabilities effective, permitted, inheritable
//! and ambient (so that `nft`, which accept mode executes, has CAP_NET_ADMIN as under the
//! unit's AmbientCapabilities), and sets `no_new_privs`. `--user root` keeps uid 0 with
//! the same capabilities (the behaviour before this account existed).
//!
//! What the account must be able to do, and so what an operator grants it (the package
//! creates the account): read the configuration, its includes and `auth_hmac` key files
//! again on reload (root:haldir 0640 for the file, owner haldir 0600 for key files; at
//! start haldir warns when a reload could not read them), write a status file's
//! directory, and write a `track_file` it initialises. What no longer works after the
//! drop: a health check source port below 1024 (`bind_port`, CAP_NET_BIND_SERVICE) —
//! kept when the starting configuration has one. IPVS, the sync daemon, addresses and
//! routes need CAP_NET_ADMIN; VRRP's raw and packet sockets CAP_NET_RAW.

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

/// Forks the script launcher (`haldir_health::launcher`) when started as root, before the
/// configuration is read: the child then holds none of the parse's memory. It waits for
/// its policy, which [`PendingLauncher::start`] sends once the configuration is validated;
/// if the daemon exits first, the launcher sees the socket close and exits too. `source`
/// is how the launcher reads its policy again on a reload (the configuration file, read
/// by the launcher itself). Must run while the process has one thread.
pub fn fork_script_launcher(
    source: haldir_health::launcher::PolicySource,
) -> anyhow::Result<Option<PendingLauncher>> {
    if !started_as_root() {
        return Ok(None);
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
            let code = match launcher_main(launcher_end, source) {
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
            Ok(Some(PendingLauncher {
                socket: daemon_end,
                pid: child.as_raw(),
            }))
        }
    }
}

/// A forked script launcher waiting for its policy.
#[derive(Debug)]
pub struct PendingLauncher {
    socket: std::os::unix::net::UnixStream,
    pid: i32,
}

impl PendingLauncher {
    /// Gives the launcher `policy` (what the validated configuration's scripts need) and
    /// makes it the way scripts are started.
    pub fn start(mut self, policy: &haldir_health::launcher::Policy) -> anyhow::Result<()> {
        use std::io::Write as _;
        self.socket
            .write_all(&policy.emit())
            .context("sending the script launcher its policy")?;
        haldir_health::launcher::install(self.socket);
        info!(pid = self.pid, "script launcher started");
        Ok(())
    }
}

fn launcher_main(
    mut socket: std::os::unix::net::UnixStream,
    source: haldir_health::launcher::PolicySource,
) -> anyhow::Result<()> {
    // Its own process group: a terminal's SIGINT goes to the daemon only. It ends when
    // the daemon's end of the socket closes (the kernel closes it however the daemon dies).
    nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0))
        .context("setpgid")?;
    // Nothing it starts can gain privileges (set-uid files, file capabilities), and its
    // bounding set holds only its three capabilities.
    keep_only(&LAUNCHER_CAPS, true).context("dropping the launcher's capabilities")?;
    set_no_new_privs()?;
    let Some(policy) = haldir_health::launcher::receive_policy(&mut socket)
        .context("reading the policy from the daemon")?
    else {
        // The daemon did not get as far as a valid configuration.
        return Ok(());
    };
    haldir_health::launcher::serve(socket, policy, source).context("serving the daemon")?;
    Ok(())
}

fn set_no_new_privs() -> anyhow::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("setting no_new_privs");
    }
    Ok(())
}

/// The account a root-started daemon runs as (`--user`).
#[derive(Debug, Clone)]
pub struct DaemonUser {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary group.
    pub gid: u32,
}

/// The default `--user`.
pub const DEFAULT_USER: &str = "haldir";

impl DaemonUser {
    /// Looks `name` up; `None` for `root` (the daemon keeps uid 0, without capabilities
    /// beyond the two).
    pub fn lookup(name: &str) -> anyhow::Result<Option<DaemonUser>> {
        if name == "root" || name == "0" {
            return Ok(None);
        }
        let user = nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "user {name:?} does not exist: haldir started as root runs as it after start; \
                     create it (`useradd --system --no-create-home --shell /usr/sbin/nologin {name}`, \
                     as the package does) or name another with --user"
                )
            })?;
        anyhow::ensure!(
            !user.uid.is_root(),
            "user {name:?} has uid 0: name an unprivileged account with --user"
        );
        Ok(Some(DaemonUser {
            name: name.to_owned(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }))
    }

    /// Makes `dir` (created if missing) this user's, mode 0700: haldir's own directories
    /// (`/run/haldir`, the state directory), before the switch.
    pub fn own_dir(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        nix::unistd::chown(
            dir,
            Some(nix::unistd::Uid::from_raw(self.uid)),
            Some(nix::unistd::Gid::from_raw(self.gid)),
        )
        .with_context(|| format!("giving {} to {}", dir.display(), self.name))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod 0700 {}", dir.display()))?;
        Ok(())
    }
}

/// Drops the daemon to CAP_NET_ADMIN + CAP_NET_RAW (plus CAP_NET_BIND_SERVICE when
/// `keep_bind_service`), if it started as root, and switches it to `user` (`None`: it
/// keeps uid 0). The capabilities are then ambient too, so that `nft` (accept mode), which
/// haldir executes, has CAP_NET_ADMIN as under the systemd unit. Call once, with this
/// thread the only one.
pub fn drop_to_network_only(
    keep_bind_service: bool,
    user: Option<&DaemonUser>,
) -> anyhow::Result<()> {
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
    // The bounding set first, while CAP_SETPCAP is still effective; then the user switch,
    // while CAP_SETUID / CAP_SETGID are; then the sets themselves.
    let permitted = caps::read(None, CapSet::Permitted).context("reading the permitted set")?;
    if permitted.contains(&Capability::CAP_SETPCAP) {
        let kept: HashSet<u8> = keep.iter().map(|c| c.index()).collect();
        drop_bounding_except(&kept)?;
    } else {
        tracing::warn!("no CAP_SETPCAP: the capability bounding set stays as it is");
    }
    if let Some(user) = user {
        switch_user(user)?;
    }
    keep_only(&keep, false)?;
    if user.is_some() {
        // Ambient: kept across execve by a non-root uid (nft), as AmbientCapabilities does.
        let wanted: CapsHashSet = keep.iter().copied().collect();
        caps::set(None, CapSet::Inheritable, &wanted).context("setting the inheritable set")?;
        for cap in &keep {
            caps::raise(None, CapSet::Ambient, *cap)
                .with_context(|| format!("raising {cap} in the ambient set"))?;
        }
    }
    set_no_new_privs()?;
    let names: Vec<String> = keep.iter().map(ToString::to_string).collect();
    info!(
        capabilities = %names.join(","),
        user = user.map_or("root", |u| u.name.as_str()),
        "privileges dropped: scripts are started by the script launcher"
    );
    Ok(())
}

/// Becomes `user` (no supplementary groups), keeping the permitted capabilities across
/// the switch (PR_SET_KEEPCAPS) so that [`keep_only`] can keep the two it needs.
fn switch_user(user: &DaemonUser) -> anyhow::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("PR_SET_KEEPCAPS");
    }
    let gid = nix::unistd::Gid::from_raw(user.gid);
    let uid = nix::unistd::Uid::from_raw(user.uid);
    nix::unistd::setgroups(&[]).context("dropping supplementary groups")?;
    nix::unistd::setresgid(gid, gid, gid).context("setresgid")?;
    nix::unistd::setresuid(uid, uid, uid)
        .with_context(|| format!("becoming user {}", user.name))?;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("PR_SET_KEEPCAPS");
    }
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
        .filter_map(|check| check.kind.connection()?.bind_to.as_deref().copied())
        .any(|source| source.port() != 0 && source.port() < 1024)
}
