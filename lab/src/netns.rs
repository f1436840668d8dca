//! The lab topology: one switch namespace with bridge `br0`, and hosts on veths into it.
//!
//! ```text
//!   <prefix>-r1            <prefix>-sw                 <prefix>-cl
//!   eth0 ──veth── p-r1 ─┐                       ┌─ p-cl ──veth── eth0
//!                       └──────── br0 ──────────┘
//! ```
//!
//! Names are unique per [`Lab`]: every namespace is called `<prefix>-<name>` where the prefix
//! is `hl<pid>-<counter>`, so parallel tests (threads or processes) never collide. Interface
//! names live inside the lab's own namespaces, so they need no prefix (`eth0`, `br0`,
//! `p-<name>`) and stay within the kernel's 15-character limit.
//!
//! Dropping the [`Lab`] kills every process it spawned, then every process still inside one
//! of its namespaces, then deletes the namespaces. Namespaces left behind by a test process
//! that died without unwinding (SIGKILL, abort) are reaped by the next [`Lab::new`]: their
//! prefix names a pid that no longer exists.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{command_line, ip, lock, run_checked, run_unchecked, wait_until};

/// Where `ip netns add` mounts named namespaces.
const NETNS_RUN_DIR: &str = "/run/netns";
/// Host name reserved for the switch namespace.
const SWITCH: &str = "sw";
/// The bridge inside the switch namespace.
pub const BRIDGE: &str = "br0";
/// Longest host name: the bridge port `p-<name>` must fit IFNAMSIZ - 1 = 15 bytes.
const MAX_HOST_NAME: usize = 13;
/// Numbers Labs created by this process, so that each gets its own prefix.
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// One host of the lab.
#[derive(Debug, Clone)]
struct Host {
    namespace: String,
    mac: String,
}

/// A process started by [`Lab::spawn`], killed when the lab is dropped.
#[derive(Debug)]
struct Spawned {
    host: String,
    child: Child,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

/// A network-namespace topology that is torn down on drop. See the module documentation.
///
/// All methods take `&self`, so a `Lab` can be shared by the probes, captures and peers
/// built on it while hosts are still being added.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    dir: PathBuf,
    /// Every namespace created so far, switch first; deleted in reverse order.
    namespaces: Mutex<Vec<String>>,
    hosts: Mutex<BTreeMap<String, Host>>,
    spawned: Mutex<BTreeMap<u32, Spawned>>,
}

/// The account a root-started haldir runs as (`haldir run --user`, default `haldir`):
/// created here as the package creates it, when missing (uid, gid).
pub fn haldir_user() -> anyhow::Result<(u32, u32)> {
    let lookup = || nix::unistd::User::from_name("haldir").ok().flatten();
    if lookup().is_none() {
        let created = std::process::Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
            ])
            .args(["--shell", "/usr/sbin/nologin", "haldir"])
            .output();
        // Another test process may have created it meanwhile: look again either way.
        if lookup().is_none() {
            bail!(
                "no user haldir and `useradd haldir` failed ({created:?}): haldir started as \
                 root runs as it; create it (the package and .ci/run do)"
            );
        }
    }
    let user = lookup().context("user haldir vanished")?;
    Ok((user.uid.as_raw(), user.gid.as_raw()))
}

impl Lab {
    /// Creates the switch namespace `<prefix>-sw` with bridge `br0` up: no STP, forward delay
    /// 0 and multicast snooping off, so that VRRP multicast floods to every port. IPv6 is
    /// disabled in the switch namespace so the bridge itself stays silent.
    ///
    /// `tag` names the lab's temporary directory (logs, configs), to tell tests apart.
    pub fn new(tag: &str) -> anyhow::Result<Lab> {
        if !super::is_root() {
            bail!("the network lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)");
        }
        reap_stale_labs();
        let prefix = format!(
            "hl{}-{}",
            std::process::id(),
            NEXT_LAB.fetch_add(1, Ordering::Relaxed)
        );
        let tag: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let dir = std::env::temp_dir().join(format!("haldir-lab-{prefix}-{tag}"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create lab directory {}", dir.display()))?;
        {
            use std::os::unix::fs::PermissionsExt;
            // haldir started as root runs as the `haldir` user once up, and writes its
            // status file, control socket, dumps and state here as that user: the
            // directory is root's and sticky, as /tmp (no one replaces another's files, so
            // the configurations written here stay acceptable to enable_script_security).
            haldir_user()?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777))
                .with_context(|| format!("cannot chmod {}", dir.display()))?;
        }
        // From here on a failure drops `lab`, which removes whatever was created.
        let lab = Lab {
            prefix,
            dir,
            namespaces: Mutex::new(Vec::new()),
            hosts: Mutex::new(BTreeMap::new()),
            spawned: Mutex::new(BTreeMap::new()),
        };
        let sw = lab.switch_ns();
        lab.add_namespace(&sw)?;
        write_sysctls(
            &sw,
            &[
                ("net/ipv6/conf/all/disable_ipv6", "1"),
                ("net/ipv6/conf/default/disable_ipv6", "1"),
            ],
        )?;
        ip(["-n", &sw, "link", "add", BRIDGE, "type", "bridge"]
            .into_iter()
            .chain([
                "stp_state",
                "0",
                "forward_delay",
                "0",
                "mcast_snooping",
                "0",
            ]))?;
        ip(["-n", &sw, "link", "set", BRIDGE, "up"])?;
        Ok(lab)
    }

    /// The prefix shared by all of this lab's namespace names, e.g. `hl4242-0`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The lab's own temporary directory: process logs, configs, notify files. Removed on
    /// drop unless the thread is panicking or `HALDIR_LAB_KEEP` is set.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The switch namespace, holding bridge [`BRIDGE`] and one `p-<host>` port per host.
    pub fn switch_ns(&self) -> String {
        format!("{}-{SWITCH}", self.prefix)
    }

    /// The namespace of host `name` (or of the switch, for `"sw"`): `<prefix>-<name>`.
    pub fn ns_name(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// Writes `/proc/sys/<key>` values in host `name`'s namespace, without a fork (cheap in
    /// the emulated VM, where a fork of `sysctl` costs a tenth of a second or more).
    pub fn write_sysctls(&self, name: &str, settings: &[(&str, &str)]) -> anyhow::Result<()> {
        write_sysctls(&self.ns_name(name), settings)
    }

    /// Names of the hosts added so far, sorted.
    pub fn hosts(&self) -> Vec<String> {
        lock(&self.hosts).keys().cloned().collect()
    }

    /// Adds host `name`: namespace `<prefix>-<name>` with `lo` up and `eth0`, a veth whose
    /// peer `p-<name>` is a port of `br0`. `eth0` gets the deterministic MAC [`Lab::mac`] and
    /// `addresses` (CIDR, e.g. `10.0.0.1/24`, `fd00::1/64`; IPv6 ones with `nodad`). DAD is
    /// off for the host's link-local address too, so IPv6 works as soon as the link is up.
    pub fn add_host(&self, name: &str, addresses: &[&str]) -> anyhow::Result<()> {
        if name.is_empty()
            || name.len() > MAX_HOST_NAME
            || name == SWITCH
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!(
                "bad host name {name:?}: use 1..={MAX_HOST_NAME} characters [A-Za-z0-9_-], \
                 and not {SWITCH:?} (reserved for the switch)"
            );
        }
        let index = {
            let hosts = lock(&self.hosts);
            if hosts.contains_key(name) {
                bail!("host {name:?} already exists in lab {}", self.prefix);
            }
            hosts.len() + 1
        };
        if index > 254 {
            bail!("a lab holds at most 254 hosts");
        }
        for address in addresses {
            parse_cidr(address)?;
        }
        let ns = self.ns_name(name);
        let sw = self.switch_ns();
        let port = format!("p-{name}");
        let mac = format!("02:48:4c:00:00:{index:02x}");
        self.add_namespace(&ns)?;
        ip(["-n", &ns, "link", "set", "lo", "up"])?;
        // Interfaces copy `default` when they appear in the namespace: set it before eth0.
        write_sysctls(
            &ns,
            &[
                ("net/ipv6/conf/all/accept_dad", "0"),
                ("net/ipv6/conf/default/accept_dad", "0"),
            ],
        )?;
        ip(["-n", &sw, "link", "add", &port, "type", "veth"]
            .into_iter()
            .chain(["peer", "name", "eth0", "netns", &ns]))?;
        ip(["-n", &ns, "link", "set", "eth0", "address", &mac])?;
        for address in addresses {
            let (addr, _) = parse_cidr(address)?;
            let mut args = vec!["-n", &ns, "addr", "add", address, "dev", "eth0"];
            if addr.is_ipv6() {
                args.push("nodad");
            }
            ip(args)?;
        }
        ip(["-n", &sw, "link", "set", &port, "master", BRIDGE])?;
        ip(["-n", &sw, "link", "set", &port, "up"])?;
        ip(["-n", &ns, "link", "set", "eth0", "up"])?;
        lock(&self.hosts).insert(name.to_owned(), Host { namespace: ns, mac });
        Ok(())
    }

    /// The MAC address of host `name`'s `eth0` (`02:48:4c:00:00:NN`, NN = order of
    /// addition starting at 01), lower case, as the kernel prints it.
    pub fn mac(&self, name: &str) -> anyhow::Result<String> {
        Ok(self.host(name)?.mac)
    }

    /// The MAC of host `name`'s `eth0` as bytes, for matching captured frames.
    pub fn mac_bytes(&self, name: &str) -> anyhow::Result<[u8; 6]> {
        let mac = self.mac(name)?;
        let mut bytes = [0u8; 6];
        for (byte, part) in bytes.iter_mut().zip(mac.split(':')) {
            *byte = u8::from_str_radix(part, 16).context("malformed lab MAC")?;
        }
        Ok(bytes)
    }

    /// Runs `args` inside host `name`'s namespace (`ip netns exec`) and waits for it; fails
    /// with the command line and its stderr unless it exits 0. `"sw"` is the switch.
    pub fn run(&self, name: &str, args: &[&str]) -> anyhow::Result<Output> {
        run_checked(&mut self.exec_command(name, args)?)
    }

    /// Like [`Lab::run`], but returns the output whatever the exit status.
    pub fn output(&self, name: &str, args: &[&str]) -> anyhow::Result<Output> {
        run_unchecked(&mut self.exec_command(name, args)?)
    }

    /// The standard output of `args` run in host `name`, as text, whatever the exit status
    /// (empty when it produced none or could not run): for reading `ip` listings.
    pub fn stdout(&self, name: &str, args: &[&str]) -> String {
        self.output(name, args)
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn exec_command(&self, name: &str, args: &[&str]) -> anyhow::Result<Command> {
        let ns = self.namespace_of(name)?;
        if args.is_empty() {
            bail!("nothing to run in {ns}");
        }
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns]).args(args);
        Ok(cmd)
    }

    /// Starts `cmd` inside host `name`'s namespace and returns its pid. The process is
    /// tracked: [`Lab::kill`], [`Lab::wait_exit`], and killed (SIGKILL) on drop. Its stdin is
    /// null, stdout and stderr go to a log file in [`Lab::dir`] (see [`Lab::log_path`]).
    ///
    /// The program, arguments, environment changes and working directory of `cmd` are
    /// kept; it runs under `ip netns exec`, which execs in place (the pid is the program's)
    /// and gives it a `/sys` matching the namespace.
    pub fn spawn(&self, name: &str, cmd: Command) -> anyhow::Result<u32> {
        let ns = self.namespace_of(name)?;
        let program = Path::new(cmd.get_program())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "cmd".into());
        let mut wrapped = Command::new("ip");
        wrapped
            .args(["netns", "exec", &ns])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        if let Some(cwd) = cmd.get_current_dir() {
            wrapped.current_dir(cwd);
        }
        let serial = lock(&self.spawned).len();
        let log = self.dir.join(format!("{name}-{program}-{serial}.log"));
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        wrapped
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let child = wrapped
            .spawn()
            .with_context(|| format!("cannot start `{}`", command_line(&wrapped)))?;
        let pid = child.id();
        lock(&self.spawned).insert(
            pid,
            Spawned {
                host: name.to_owned(),
                child,
                log,
                exit: None,
            },
        );
        Ok(pid)
    }

    /// The log file (stdout + stderr) of a process started by [`Lab::spawn`].
    pub fn log_path(&self, pid: u32) -> Option<PathBuf> {
        lock(&self.spawned).get(&pid).map(|s| s.log.clone())
    }

    /// The log of a spawned process, as text (empty if unreadable).
    pub fn log_text(&self, pid: u32) -> String {
        self.log_path(pid)
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default()
    }

    /// Sends `signal` to `pid`: a process of this lab (spawned, or forked by one).
    pub fn kill(&self, pid: u32, signal: Signal) -> anyhow::Result<()> {
        let raw = i32::try_from(pid).map_err(|_| anyhow!("pid {pid} out of range"))?;
        kill(Pid::from_raw(raw), signal)
            .with_context(|| format!("cannot send {signal} to pid {pid}"))
    }

    /// Whether a process started by [`Lab::spawn`] is still running (false once it exited
    /// and was reaped, and for pids the lab did not spawn).
    pub fn is_running(&self, pid: u32) -> bool {
        let mut spawned = lock(&self.spawned);
        match spawned.get_mut(&pid) {
            Some(s) => poll_exit(s).is_none(),
            None => false,
        }
    }

    /// Waits up to `timeout` for a spawned process to exit and reaps it. `Ok(None)` if it
    /// is still running; an error if the lab did not spawn `pid`.
    pub fn wait_exit(&self, pid: u32, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        if !lock(&self.spawned).contains_key(&pid) {
            bail!("pid {pid} was not spawned by lab {}", self.prefix);
        }
        let mut status = None;
        wait_until(timeout, || {
            status = lock(&self.spawned).get_mut(&pid).and_then(poll_exit);
            status.is_some()
        });
        Ok(status)
    }

    /// Addresses on `ifname` in host `name`, as `address/prefixlen` strings, in the order
    /// the kernel lists them (`ip -n NS -o addr show dev IFNAME`).
    pub fn addresses(&self, name: &str, ifname: &str) -> anyhow::Result<Vec<String>> {
        let ns = self.namespace_of(name)?;
        let output = ip(["-n", &ns, "-o", "addr", "show", "dev", ifname])?;
        Ok(parse_ip_o_addr(&String::from_utf8_lossy(&output.stdout)))
    }

    /// Whether any interface of host `name` holds `address` (e.g. `"10.0.0.100"`,
    /// `"fd00::100"`). False also when the host cannot be queried.
    pub fn has_address(&self, name: &str, address: &str) -> bool {
        let Ok(wanted) = address.parse::<IpAddr>() else {
            return false;
        };
        let Ok(ns) = self.namespace_of(name) else {
            return false;
        };
        let Ok(output) = ip(["-n", &ns, "-o", "addr", "show"]) else {
            return false;
        };
        parse_ip_o_addr(&String::from_utf8_lossy(&output.stdout))
            .iter()
            .filter_map(|cidr| parse_cidr(cidr).ok())
            .any(|(addr, _)| addr == wanted)
    }

    /// A veth pair `a`/`b` inside host `name`, both up: a link of the host's own to track
    /// and cut (`link_set(name, a, false)`); the test kernels have no dummy driver.
    pub fn add_inner_veth(&self, name: &str, a: &str, b: &str) -> anyhow::Result<()> {
        self.run(
            name,
            &["ip", "link", "add", a, "type", "veth", "peer", "name", b],
        )?;
        for ifname in [a, b] {
            self.link_set(name, ifname, true)?;
        }
        Ok(())
    }

    /// `ip link set IFNAME up|down` in host `name` (`"sw"` for the switch's ports).
    pub fn link_set(&self, name: &str, ifname: &str, up: bool) -> anyhow::Result<()> {
        let ns = self.namespace_of(name)?;
        ip([
            "-n",
            &ns,
            "link",
            "set",
            ifname,
            if up { "up" } else { "down" },
        ])?;
        Ok(())
    }

    fn host(&self, name: &str) -> anyhow::Result<Host> {
        lock(&self.hosts)
            .get(name)
            .cloned()
            .ok_or_else(|| anyhow!("no host {name:?} in lab {}", self.prefix))
    }

    /// The namespace of host `name`, or of the switch for `"sw"`.
    fn namespace_of(&self, name: &str) -> anyhow::Result<String> {
        if name == SWITCH {
            Ok(self.switch_ns())
        } else {
            Ok(self.host(name)?.namespace)
        }
    }

    fn add_namespace(&self, ns: &str) -> anyhow::Result<()> {
        ip(["netns", "add", ns])?;
        lock(&self.namespaces).push(ns.to_owned());
        Ok(())
    }
}

impl Drop for Lab {
    /// Best effort, never panics: kill spawned processes, kill whatever else still runs in
    /// the lab's namespaces, delete the namespaces (hosts first, switch last), then remove
    /// the lab directory unless a panic is unwinding or `HALDIR_LAB_KEEP` is set.
    fn drop(&mut self) {
        let mut spawned = std::mem::take(
            self.spawned
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for s in spawned.values_mut() {
            if poll_exit(s).is_none() {
                let _ = s.child.kill();
            }
        }
        for s in spawned.values_mut() {
            wait_until(Duration::from_secs(2), || poll_exit(s).is_some());
        }
        let namespaces = std::mem::take(
            self.namespaces
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for ns in namespaces.iter().rev() {
            remove_namespace(ns);
        }
        if std::thread::panicking() || std::env::var_os("HALDIR_LAB_KEEP").is_some() {
            eprintln!("lab {}: logs kept in {}", self.prefix, self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Reaps a spawned process without blocking, remembering its exit status.
fn poll_exit(spawned: &mut Spawned) -> Option<ExitStatus> {
    if spawned.exit.is_none() {
        if let Ok(Some(status)) = spawned.child.try_wait() {
            tracing::debug!(host = %spawned.host, %status, "lab process exited");
            spawned.exit = Some(status);
        }
    }
    spawned.exit
}

/// Kills every process left in `ns` (never this one), then deletes it. Best effort.
fn remove_namespace(ns: &str) {
    let pids_in = || -> Vec<i32> {
        run_unchecked(Command::new("ip").args(["netns", "pids", ns]))
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .filter(|&p| p != std::process::id() as i32)
                    .collect()
            })
            .unwrap_or_default()
    };
    let leftovers = pids_in();
    if !leftovers.is_empty() {
        for &pid in &leftovers {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        wait_until(Duration::from_secs(2), || pids_in().is_empty());
    }
    match run_unchecked(Command::new("ip").args(["netns", "del", ns])) {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!(
            "lab cleanup: `ip netns del {ns}` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => eprintln!("lab cleanup: {e:#}"),
    }
}

/// Deletes namespaces named `hl<pid>-<n>-...` whose creating process no longer exists: they
/// were left by a test process killed before it could unwind.
fn reap_stale_labs() {
    let Ok(output) = run_unchecked(Command::new("ip").args(["netns", "list"])) else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some(ns) = line.split_whitespace().next() else {
            continue;
        };
        let Some(owner) = stale_lab_owner(ns) else {
            continue;
        };
        // ESRCH: no such process. EPERM would mean it exists (under another user).
        if kill(Pid::from_raw(owner), None) == Err(nix::errno::Errno::ESRCH) {
            eprintln!("lab: removing stale namespace {ns} (its creator, pid {owner}, is gone)");
            remove_namespace(ns);
        }
    }
}

/// The creator pid encoded in a lab namespace name `hl<pid>-<counter>-<name>`.
fn stale_lab_owner(ns: &str) -> Option<i32> {
    let rest = ns.strip_prefix("hl")?;
    let mut parts = rest.splitn(3, '-');
    let pid = parts.next()?;
    let counter = parts.next()?;
    parts.next()?;
    if pid.is_empty() || counter.is_empty() || !counter.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok().filter(|&p| p > 0)
}

/// Writes `/proc/sys/<key>` values as seen from inside `ns`.
fn write_sysctls(ns: &str, settings: &[(&str, &str)]) -> anyhow::Result<()> {
    in_netns(ns, || -> anyhow::Result<()> {
        for (key, value) in settings {
            let path = Path::new("/proc/sys").join(key);
            std::fs::write(&path, value)
                .with_context(|| format!("cannot write {value} to {} in {ns}", path.display()))?;
        }
        Ok(())
    })?
}

/// What a real server of a direct-routing cluster sets so that it never answers ARP for
/// the VIP it holds on `lo` nor uses it in ARP (`arp_ignore=1`, `arp_announce=2`).
pub const DR_REAL_SERVER_SYSCTLS: &[(&str, &str)] = &[
    ("net/ipv4/conf/all/arp_ignore", "1"),
    ("net/ipv4/conf/all/arp_announce", "2"),
    ("net/ipv4/conf/eth0/arp_ignore", "1"),
    ("net/ipv4/conf/eth0/arp_announce", "2"),
];

/// Runs `f` on a scoped thread that first joins network namespace `/run/netns/<ns>`: every
/// socket `f` creates belongs to that namespace (and keeps belonging to it when used from
/// other threads later). The calling thread never changes namespace. A panic in `f` is
/// propagated.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name(format!("netns-{ns}"))
            .spawn_scoped(scope, || -> anyhow::Result<T> {
                enter_netns(ns)?;
                Ok(f())
            })
            .context("cannot start a thread")?;
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Like [`in_netns`] for long-lived work (say, a tokio runtime serving a namespace): starts
/// a named thread that joins `ns` and then runs `f`. Fails, without running `f`, if the
/// namespace cannot be entered.
pub fn spawn_in_netns<T: Send + 'static>(
    ns: &str,
    thread_name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<JoinHandle<T>> {
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let ns_owned = ns.to_owned();
    let handle = std::thread::Builder::new()
        .name(thread_name.to_owned())
        .spawn(move || {
            let entered = enter_netns(&ns_owned);
            let ok = entered.is_ok();
            let _ = entered_tx.send(entered);
            if !ok {
                // The caller already has the error and dropped the handle: end the thread
                // without running `f` (resume_unwind skips the panic hook: no noise).
                std::panic::resume_unwind(Box::new("network namespace not entered"));
            }
            f()
        })
        .context("cannot start a thread")?;
    match entered_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(e),
        Err(_) => bail!("thread {thread_name} died before entering {ns}"),
    }
}

/// Moves the calling thread into network namespace `/run/netns/<ns>`.
fn enter_netns(ns: &str) -> anyhow::Result<()> {
    let path = Path::new(NETNS_RUN_DIR).join(ns);
    let file = File::open(&path)
        .with_context(|| format!("cannot open network namespace {}", path.display()))?;
    nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("setns({}) failed", path.display()))
}

/// Parses `10.0.0.1/24` or `fd00::1/64`.
pub(crate) fn parse_cidr(cidr: &str) -> anyhow::Result<(IpAddr, u8)> {
    let (addr, len) = cidr
        .split_once('/')
        .ok_or_else(|| anyhow!("{cidr:?} is not ADDRESS/PREFIXLEN"))?;
    let addr: IpAddr = addr
        .parse()
        .with_context(|| format!("bad address in {cidr:?}"))?;
    let len: u8 = len
        .parse()
        .with_context(|| format!("bad prefix length in {cidr:?}"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        bail!("prefix length {len} in {cidr:?} exceeds {max}");
    }
    Ok((addr, len))
}

/// Extracts `address/prefixlen` from `ip -o addr show` lines, which read
/// `2: eth0    inet 10.0.0.1/24 brd 10.0.0.255 scope global eth0\ ...`.
fn parse_ip_o_addr(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet" || *w == "inet6")?;
            words.next().map(str::to_owned)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_o_addr_lines_yield_address_and_prefix() {
        let text = "2: eth0    inet 10.0.0.1/24 brd 10.0.0.255 scope global eth0\\       valid_lft forever preferred_lft forever\n\
                    2: eth0    inet 10.0.0.100/24 scope global secondary eth0\\       valid_lft forever\n\
                    2: eth0    inet6 fd00::1/64 scope global nodad \\       valid_lft forever\n";
        assert_eq!(
            parse_ip_o_addr(text),
            ["10.0.0.1/24", "10.0.0.100/24", "fd00::1/64"]
        );
    }

    #[test]
    fn stale_lab_owner_reads_the_pid_from_lab_names_only() {
        assert_eq!(stale_lab_owner("hl4242-0-sw"), Some(4242));
        assert_eq!(stale_lab_owner("hl17-3-r1"), Some(17));
        assert_eq!(stale_lab_owner("hl17-3"), None);
        assert_eq!(stale_lab_owner("hlx-3-r1"), None);
        assert_eq!(stale_lab_owner("kcap"), None);
        assert_eq!(stale_lab_owner("hl0-1-a"), None);
    }

    #[test]
    fn spawn_in_netns_fails_for_a_missing_namespace() {
        let err = spawn_in_netns("haldir-no-such-ns", "t", || 1).unwrap_err();
        assert!(
            format!("{err:#}").contains("/run/netns/haldir-no-such-ns"),
            "{err:#}"
        );
        let err = in_netns("haldir-no-such-ns", || 1).unwrap_err();
        assert!(format!("{err:#}").contains("haldir-no-such-ns"), "{err:#}");
    }

    #[test]
    fn lab_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Lab>();
    }

    #[test]
    fn cidr_parsing_rejects_overlong_prefixes() {
        assert!(parse_cidr("10.0.0.1/24").is_ok());
        assert!(parse_cidr("fd00::1/64").is_ok());
        assert!(parse_cidr("10.0.0.1/33").is_err());
        assert!(parse_cidr("10.0.0.1").is_err());
    }
}
