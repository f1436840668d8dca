//! FRR (Debian's 8.4) in a lab host: zebra and bgpd (and bfdd when asked), for the
//! active-active tests where a director announces its VIPs over BGP to an upstream router
//! (`docs/active-active.md`). The future VM test reuses it.
//!
//! Each host's FRR runs under a pathspace of its own (`-N NAME`, NAME the host's namespace
//! name, unique per lab): pid files, vty and zserv sockets in `/var/run/frr/NAME/` (made
//! here, owned by `frr`, as the daemons drop to that user), the configuration and the logs
//! in a `frr-HOST` directory of the lab. The daemons run in the foreground under the lab
//! ([`Lab::spawn`]), so they are killed with the lab even if the test panics; [`Frr`]'s
//! drop stops them first and removes the run directory. Needs root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::Signal;

use crate::netns::Lab;
use crate::wait_until;

/// Where Debian installs the daemons.
pub const FRR_LIBEXEC: &str = "/usr/lib/frr";
/// How long a daemon may take to open its vty socket: a second on a quiet machine; over
/// 10 s seen for zebra in the emulated VM while the host ran other builds (load 9 on 2
/// cores). A daemon that exits is seen at once.
pub const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(90);
/// Where the per-name run directories go.
pub const FRR_RUN_DIR: &str = "/var/run/frr";

/// Whether FRR's zebra, bgpd and vtysh are installed (a test that needs them skips loudly
/// otherwise).
pub fn is_installed() -> bool {
    Path::new(FRR_LIBEXEC).join("zebra").exists()
        && Path::new(FRR_LIBEXEC).join("bgpd").exists()
        && Command::new("vtysh").arg("--version").output().is_ok()
}

/// The FRR daemons of one lab host.
pub struct Frr<'l> {
    lab: &'l Lab,
    host: String,
    name: String,
    dir: PathBuf,
    pids: Vec<(&'static str, u32)>,
}

/// What to start: bgpd's configuration, and bfdd's when BFD is wanted.
pub struct FrrConfig<'a> {
    /// `bgpd.conf` (with `-f`): `router bgp ...`.
    pub bgpd: &'a str,
    /// `bfdd.conf` (`bfd { profile ... }`), or `None` for no bfdd.
    pub bfdd: Option<&'a str>,
}

impl<'l> Frr<'l> {
    /// Starts zebra, then bfdd (if configured) and bgpd in host `host`, and waits (up to
    /// [`DAEMON_START_TIMEOUT`] each) until each daemon's vty socket is there.
    pub fn start(lab: &'l Lab, host: &str, config: &FrrConfig<'_>) -> anyhow::Result<Frr<'l>> {
        let name = lab.ns_name(host);
        let dir = lab.dir().join(format!("frr-{host}"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let run_dir = Path::new(FRR_RUN_DIR).join(&name);
        std::fs::create_dir_all(&run_dir)
            .with_context(|| format!("cannot create {}", run_dir.display()))?;
        // The daemons drop to `frr`: their run directory and log directory are theirs.
        for path in [&run_dir, &dir] {
            let status = Command::new("chown").args(["frr:frr"]).arg(path).status()?;
            if !status.success() {
                bail!("cannot chown {} to frr", path.display());
            }
        }
        let mut frr = Frr {
            lab,
            host: host.to_owned(),
            name,
            dir,
            pids: Vec::new(),
        };
        frr.daemon("zebra", &format!("hostname {host}\n"))?;
        if let Some(bfdd) = config.bfdd {
            frr.daemon("bfdd", bfdd)?;
        }
        frr.daemon("bgpd", config.bgpd)?;
        Ok(frr)
    }

    /// Writes `NAME.conf`, starts the daemon and waits until vtysh reaches it.
    fn daemon(&mut self, daemon: &'static str, config: &str) -> anyhow::Result<()> {
        let conf = self.dir.join(format!("{daemon}.conf"));
        std::fs::write(&conf, config)
            .with_context(|| format!("cannot write {}", conf.display()))?;
        let mut cmd = Command::new(Path::new(FRR_LIBEXEC).join(daemon));
        if daemon == "bgpd" {
            // BMP (RFC 7854), inert unless bgpd.conf has `bmp targets`: how a director's
            // bgpd reports its sessions to haldir (`[announce] bmp_listen`).
            cmd.args(["-M", "bmp"]);
        }
        cmd.arg("-N")
            .arg(&self.name)
            .arg("-f")
            .arg(&conf)
            .arg("--log")
            .arg(format!(
                "file:{}",
                self.dir.join(format!("{daemon}.log")).display()
            ));
        let pid = self.lab.spawn(&self.host, cmd)?;
        self.pids.push((daemon, pid));
        let vty = Path::new(FRR_RUN_DIR)
            .join(&self.name)
            .join(format!("{daemon}.vty"));
        if !wait_until(DAEMON_START_TIMEOUT, || {
            vty.exists() || !self.lab.is_running(pid)
        }) || !self.lab.is_running(pid)
        {
            bail!(
                "FRR {daemon} in {} did not start: {}",
                self.host,
                self.lab.log_text(pid)
            );
        }
        Ok(())
    }

    /// The pathspace name (`vtysh -N NAME`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs one vtysh command against this host's daemons; its standard output.
    pub fn vtysh(&self, command: &str) -> anyhow::Result<String> {
        let output = Command::new("vtysh")
            .args(["-N", &self.name, "-c", command])
            .output()
            .context("cannot run vtysh")?;
        if !output.status.success() {
            bail!(
                "vtysh -N {} -c {command:?} failed: {}",
                self.name,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `show ip route PREFIX json` (`show ipv6 route` for IPv6) as JSON: an empty object
    /// when zebra has no such route.
    pub fn route(&self, prefix: &str) -> anyhow::Result<serde_json::Value> {
        let family = if prefix.contains(':') { "ipv6" } else { "ip" };
        let text = self.vtysh(&format!("show {family} route {prefix} json"))?;
        serde_json::from_str(&text).with_context(|| format!("vtysh printed no JSON: {text}"))
    }

    /// The next hops of zebra's selected route to `prefix` that are active (an empty list
    /// when there is none): the addresses the router sends the prefix's traffic to.
    pub fn active_nexthops(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let routes = self.route(prefix)?;
        let mut hops = Vec::new();
        for route in routes
            .get(prefix)
            .and_then(|r| r.as_array())
            .into_iter()
            .flatten()
        {
            if route.get("selected") != Some(&serde_json::Value::Bool(true)) {
                continue;
            }
            for hop in route
                .get("nexthops")
                .and_then(|n| n.as_array())
                .into_iter()
                .flatten()
            {
                if hop.get("active") == Some(&serde_json::Value::Bool(true)) {
                    if let Some(ip) = hop.get("ip").and_then(|ip| ip.as_str()) {
                        hops.push(ip.to_owned());
                    }
                }
            }
        }
        Ok(hops)
    }

    /// The daemons' logs, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (daemon, pid) in &self.pids {
            let file =
                std::fs::read_to_string(self.dir.join(format!("{daemon}.log"))).unwrap_or_default();
            out.push_str(&format!(
                "--- {} {daemon} (pid {pid}) ---\n{}{file}\n",
                self.host,
                self.lab.log_text(*pid)
            ));
        }
        out
    }
}

impl Drop for Frr<'_> {
    fn drop(&mut self) {
        // bgpd first (it withdraws cleanly), zebra last; the lab kills whatever remains.
        for (_, pid) in self.pids.iter().rev() {
            let _ = self.lab.kill(*pid, Signal::SIGTERM);
            if !matches!(
                self.lab.wait_exit(*pid, Duration::from_secs(3)),
                Ok(Some(_))
            ) {
                let _ = self.lab.kill(*pid, Signal::SIGKILL);
                let _ = self.lab.wait_exit(*pid, Duration::from_secs(1));
            }
        }
        let _ = std::fs::remove_dir_all(Path::new(FRR_RUN_DIR).join(&self.name));
    }
}
