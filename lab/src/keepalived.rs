//! Debian's keepalived (2.2.7) as a reference VRRP peer inside a lab host.
//!
//! One `vrrp_instance VI_1` per daemon, run VRRP-only in the foreground:
//! `keepalived -P -n -l -D -G -f CONF -p PIDFILE -r VRRP_PIDFILE` (console logging into the
//! lab log, no syslog). `instance <host>` at the top level plus `data_use_instance` keep
//! two daemons in two namespaces from sharing file names. State changes are observed
//! through a `notify` script that appends keepalived's arguments (`INSTANCE VI_1 MASTER
//! 150`) to a file in the lab directory.
//!
//! keepalived runs as two processes: the parent (the pid the lab spawned, `-p`) and the
//! VRRP child (`-r`). Killing only the parent is a graceful exit (the child still sends a
//! priority-0 advert), so [`Keepalived::crash`] freezes the parent, kills the child, then
//! kills the parent. A crashed master keeps its VIPs in its kernel.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::Signal;

use super::netns::{parse_cidr, Lab};
use super::wait_until;

/// Where Debian installs the daemon.
pub const KEEPALIVED: &str = "/usr/sbin/keepalived";
/// keepalived names its only instance like this.
const INSTANCE: &str = "VI_1";

/// One keepalived VRRP instance, rendered into a keepalived.conf.
#[derive(Debug, Clone, PartialEq)]
pub struct KeepalivedConfig {
    /// VRRP version, 2 or 3 (`vrrp_version` in global_defs).
    pub version: u8,
    /// Interface the instance runs on.
    pub interface: String,
    /// Virtual router id, 1..=255.
    pub vrid: u8,
    /// Priority, 1..=255.
    pub priority: u8,
    /// Advertisement interval: whole seconds for v2, centiseconds for v3.
    pub advert_int: Duration,
    /// `nopreempt` (keepalived then requires initial state BACKUP, which is what we use).
    pub nopreempt: bool,
    /// `unicast_src_ip`; unicast is used when `unicast_peers` is not empty.
    pub unicast_src_ip: Option<IpAddr>,
    /// `unicast_peer { ... }`.
    pub unicast_peers: Vec<IpAddr>,
    /// `virtual_ipaddress { ... }` entries, CIDR (`10.0.0.100/24`).
    pub virtual_ipaddresses: Vec<String>,
    /// Raw lines appended inside `vrrp_instance VI_1 { ... }`.
    pub extra_instance_lines: Vec<String>,
}

impl KeepalivedConfig {
    /// A VRRPv3 instance on `eth0`, multicast, preempting, with the given VIPs.
    pub fn v3(vrid: u8, priority: u8, advert_int: Duration, vips: &[&str]) -> Self {
        KeepalivedConfig {
            version: 3,
            interface: "eth0".into(),
            vrid,
            priority,
            advert_int,
            nopreempt: false,
            unicast_src_ip: None,
            unicast_peers: Vec::new(),
            virtual_ipaddresses: vips.iter().map(|v| v.to_string()).collect(),
            extra_instance_lines: Vec::new(),
        }
    }

    /// A VRRPv2 instance on `eth0` (whole-second `advert_int`).
    pub fn v2(vrid: u8, priority: u8, advert_int: Duration, vips: &[&str]) -> Self {
        KeepalivedConfig {
            version: 2,
            ..KeepalivedConfig::v3(vrid, priority, advert_int, vips)
        }
    }

    /// Sets `nopreempt`.
    pub fn nopreempt(mut self) -> Self {
        self.nopreempt = true;
        self
    }

    /// Switches to unicast adverts from `src` to `peers`.
    pub fn unicast(mut self, src: IpAddr, peers: &[IpAddr]) -> Self {
        self.unicast_src_ip = Some(src);
        self.unicast_peers = peers.to_vec();
        self
    }

    /// Checks what keepalived would otherwise reject or silently round.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.vrid == 0 {
            bail!("virtual_router_id must be 1..=255");
        }
        if self.priority == 0 {
            bail!("priority must be 1..=255 (0 is reserved for resignation)");
        }
        let centis = self.advert_int.as_millis() / 10;
        let whole_centis = u64::try_from(centis)
            .is_ok_and(|c| c.checked_mul(10).map(Duration::from_millis) == Some(self.advert_int));
        match self.version {
            2 if self.advert_int.subsec_nanos() != 0 || self.advert_int.as_secs() == 0 => {
                bail!(
                    "VRRPv2 advert_int must be whole seconds >= 1, not {:?}",
                    self.advert_int
                )
            }
            3 if !whole_centis || !(1..=4095).contains(&centis) => {
                bail!(
                    "VRRPv3 advert_int must be a multiple of 10 ms in 10 ms..=40.95 s, not {:?}",
                    self.advert_int
                )
            }
            2 | 3 => {}
            v => bail!("vrrp_version must be 2 or 3, not {v}"),
        }
        for vip in &self.virtual_ipaddresses {
            parse_cidr(vip)?;
        }
        Ok(())
    }

    /// The keepalived.conf text for instance `instance`, notifying through `notify`.
    pub fn render(&self, instance: &str, notify: &Path) -> String {
        let mut conf = format!(
            "# generated by haldir's lab\n\
             instance {instance}\n\
             global_defs {{\n    \
                 router_id {instance}\n    \
                 data_use_instance\n    \
                 vrrp_version {version}\n    \
                 script_user root\n\
             }}\n\
             vrrp_instance {INSTANCE} {{\n    \
                 state BACKUP\n    \
                 interface {interface}\n    \
                 virtual_router_id {vrid}\n    \
                 priority {priority}\n    \
                 advert_int {advert}\n",
            version = self.version,
            interface = self.interface,
            vrid = self.vrid,
            priority = self.priority,
            advert = format_advert_int(self.advert_int),
        );
        if self.nopreempt {
            conf.push_str("    nopreempt\n");
        }
        if !self.unicast_peers.is_empty() {
            if let Some(src) = self.unicast_src_ip {
                conf.push_str(&format!("    unicast_src_ip {src}\n"));
            }
            conf.push_str("    unicast_peer {\n");
            for peer in &self.unicast_peers {
                conf.push_str(&format!("        {peer}\n"));
            }
            conf.push_str("    }\n");
        }
        conf.push_str("    virtual_ipaddress {\n");
        for vip in &self.virtual_ipaddresses {
            conf.push_str(&format!("        {vip}\n"));
        }
        conf.push_str("    }\n");
        conf.push_str(&format!("    notify \"{}\"\n", notify.display()));
        for line in &self.extra_instance_lines {
            conf.push_str(&format!("    {line}\n"));
        }
        conf.push_str("}\n");
        conf
    }
}

/// `1` for whole seconds, `0.05` otherwise (keepalived reads centiseconds for v3).
fn format_advert_int(advert_int: Duration) -> String {
    if advert_int.subsec_nanos() == 0 {
        advert_int.as_secs().to_string()
    } else {
        format!("{:.2}", advert_int.as_secs_f64())
    }
}

/// A state keepalived reported through its notify script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepalivedState {
    /// MASTER
    Master,
    /// BACKUP
    Backup,
    /// FAULT
    Fault,
    /// STOP (the instance shut down)
    Stop,
    /// Anything else keepalived may print.
    Other(String),
}

impl KeepalivedState {
    fn parse(word: &str) -> KeepalivedState {
        match word {
            "MASTER" => KeepalivedState::Master,
            "BACKUP" => KeepalivedState::Backup,
            "FAULT" => KeepalivedState::Fault,
            "STOP" => KeepalivedState::Stop,
            other => KeepalivedState::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for KeepalivedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepalivedState::Master => f.write_str("MASTER"),
            KeepalivedState::Backup => f.write_str("BACKUP"),
            KeepalivedState::Fault => f.write_str("FAULT"),
            KeepalivedState::Stop => f.write_str("STOP"),
            KeepalivedState::Other(s) => f.write_str(s),
        }
    }
}

/// A running keepalived in one lab host. Killed with the lab if still running.
#[derive(Debug)]
pub struct Keepalived<'l> {
    lab: &'l Lab,
    host: String,
    pid: u32,
    config: KeepalivedConfig,
    conf_path: PathBuf,
    vrrp_pid_path: PathBuf,
    notify_path: PathBuf,
}

impl<'l> Keepalived<'l> {
    /// Writes the config and notify script into the lab directory, starts keepalived in
    /// host `host`, and waits (up to 10 s) until its VRRP child has written its pid file.
    pub fn start(
        lab: &'l Lab,
        host: &str,
        config: KeepalivedConfig,
    ) -> anyhow::Result<Keepalived<'l>> {
        config
            .validate()
            .with_context(|| format!("keepalived config for {host}"))?;
        let dir = lab.dir();
        let conf_path = dir.join(format!("{host}-keepalived.conf"));
        let pid_path = dir.join(format!("{host}-keepalived.pid"));
        let vrrp_pid_path = dir.join(format!("{host}-keepalived.vrrp.pid"));
        let notify_path = dir.join(format!("{host}-keepalived.notify"));
        let script_path = dir.join(format!("{host}-notify.sh"));
        for stale in [&pid_path, &vrrp_pid_path, &notify_path] {
            let _ = std::fs::remove_file(stale);
        }
        crate::place_file(
            &script_path,
            &format!(
                "#!/bin/sh\n# keepalived calls: INSTANCE|GROUP NAME STATE PRIORITY\necho \"$*\" >> '{}'\n",
                notify_path.display()
            ),
            0o755,
        )?;
        let instance = lab.ns_name(host);
        std::fs::write(&conf_path, config.render(&instance, &script_path))
            .with_context(|| format!("cannot write {}", conf_path.display()))?;
        let mut cmd = Command::new(KEEPALIVED);
        cmd.args(["-P", "-n", "-l", "-D", "-G", "-f"])
            .arg(&conf_path)
            .arg("-p")
            .arg(&pid_path)
            .arg("-r")
            .arg(&vrrp_pid_path);
        let pid = lab
            .spawn(host, cmd)
            .with_context(|| format!("cannot start keepalived in {host}"))?;
        let keepalived = Keepalived {
            lab,
            host: host.to_owned(),
            pid,
            config,
            conf_path,
            vrrp_pid_path,
            notify_path,
        };
        let started = wait_until(Duration::from_secs(10), || {
            keepalived.vrrp_pid().is_ok() || !lab.is_running(pid)
        });
        if !started || !lab.is_running(pid) {
            bail!(
                "keepalived in {host} did not start its VRRP child (config {}); its log:\n{}",
                keepalived.conf_path.display(),
                keepalived.log()
            );
        }
        Ok(keepalived)
    }

    /// The lab host this daemon runs in.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &KeepalivedConfig {
        &self.config
    }

    /// Path of the generated keepalived.conf.
    pub fn conf_path(&self) -> &Path {
        &self.conf_path
    }

    /// Path of the file the notify script appends to.
    pub fn notify_path(&self) -> &Path {
        &self.notify_path
    }

    /// Pid of the parent process (the one the lab spawned).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Pid of the VRRP child, from the `-r` pid file.
    pub fn vrrp_pid(&self) -> anyhow::Result<u32> {
        let text = std::fs::read_to_string(&self.vrrp_pid_path)
            .with_context(|| format!("cannot read {}", self.vrrp_pid_path.display()))?;
        text.trim()
            .parse()
            .with_context(|| format!("bad pid {text:?} in {}", self.vrrp_pid_path.display()))
    }

    /// Every state reported by the notify script so far, oldest first.
    pub fn states(&self) -> Vec<KeepalivedState> {
        std::fs::read_to_string(&self.notify_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_whitespace().nth(2))
            .map(KeepalivedState::parse)
            .collect()
    }

    /// The latest state reported by the notify script, `None` before the first report.
    pub fn state(&self) -> Option<KeepalivedState> {
        self.states().pop()
    }

    /// Waits up to `timeout` for the latest reported state to be `state`.
    pub fn wait_state(&self, state: KeepalivedState, timeout: Duration) -> bool {
        wait_until(timeout, || self.state().as_ref() == Some(&state))
    }

    /// Whether the parent process is still running.
    pub fn is_running(&self) -> bool {
        self.lab.is_running(self.pid)
    }

    /// keepalived's console log so far.
    pub fn log(&self) -> String {
        self.lab.log_text(self.pid)
    }

    /// Crashes the daemon without any goodbye: SIGSTOP the parent (so it cannot respawn or
    /// clean up), SIGKILL the VRRP child, SIGKILL the parent. No priority-0 advert is sent
    /// and the VIPs stay in the host's kernel.
    pub fn crash(&self) -> anyhow::Result<()> {
        let child = self.vrrp_pid()?;
        self.lab.kill(self.pid, Signal::SIGSTOP)?;
        self.lab.kill(child, Signal::SIGKILL)?;
        self.lab.kill(self.pid, Signal::SIGKILL)?;
        self.lab
            .wait_exit(self.pid, Duration::from_secs(5))?
            .ok_or_else(|| anyhow!("keepalived {} survived SIGKILL", self.pid))?;
        // The orphaned child is reaped by init; wait until it is gone or a zombie.
        wait_until(Duration::from_secs(2), || !process_alive(child));
        Ok(())
    }

    /// Rewrites its keepalived.conf from `config` (same instance name and notify script)
    /// and sends SIGHUP, keepalived's reload. Returns at once: keepalived reports a reload
    /// only in its log.
    pub fn reload(&self, config: &KeepalivedConfig) -> anyhow::Result<()> {
        config
            .validate()
            .with_context(|| format!("keepalived config for {}", self.host))?;
        let script_path = self.lab.dir().join(format!("{}-notify.sh", self.host));
        let instance = self.lab.ns_name(&self.host);
        std::fs::write(&self.conf_path, config.render(&instance, &script_path))
            .with_context(|| format!("cannot write {}", self.conf_path.display()))?;
        self.lab.kill(self.pid, Signal::SIGHUP)
    }

    /// Stops the daemon gracefully (SIGTERM: a master resigns with a priority-0 advert and
    /// removes its VIPs) and waits up to 10 s for it to exit.
    pub fn stop(&self) -> anyhow::Result<()> {
        self.lab.kill(self.pid, Signal::SIGTERM)?;
        match self.lab.wait_exit(self.pid, Duration::from_secs(10))? {
            Some(_) => Ok(()),
            None => bail!(
                "keepalived in {} did not exit within 10 s of SIGTERM",
                self.host
            ),
        }
    }
}

/// True while `pid` exists and is not a zombie.
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_config_renders_centisecond_advert_int_and_unicast_peers() {
        let config = KeepalivedConfig::v3(51, 150, Duration::from_millis(50), &["10.0.0.100/24"])
            .nopreempt()
            .unicast("10.0.0.1".parse().unwrap(), &["10.0.0.2".parse().unwrap()]);
        config.validate().unwrap();
        let text = config.render("hl1-0-r1", Path::new("/tmp/x/notify.sh"));
        for expected in [
            "instance hl1-0-r1\n",
            "    data_use_instance\n",
            "    vrrp_version 3\n",
            "    virtual_router_id 51\n",
            "    priority 150\n",
            "    advert_int 0.05\n",
            "    nopreempt\n",
            "    unicast_src_ip 10.0.0.1\n",
            "    unicast_peer {\n        10.0.0.2\n    }\n",
            "        10.0.0.100/24\n",
            "    notify \"/tmp/x/notify.sh\"\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        // `instance` must be at the top level, before global_defs.
        assert!(text.find("instance hl1-0-r1").unwrap() < text.find("global_defs").unwrap());
    }

    #[test]
    fn advert_int_must_suit_the_version() {
        let v2 = KeepalivedConfig::v2(1, 100, Duration::from_millis(50), &[]);
        assert!(v2.validate().is_err());
        let v2 = KeepalivedConfig::v2(1, 100, Duration::from_secs(1), &[]);
        v2.validate().unwrap();
        assert!(v2.render("i", Path::new("/n")).contains("advert_int 1\n"));
        let v3 = KeepalivedConfig::v3(1, 100, Duration::from_millis(55), &[]);
        assert!(v3.validate().is_err());
    }

    #[test]
    fn notify_lines_parse_into_states() {
        assert_eq!(KeepalivedState::parse("MASTER"), KeepalivedState::Master);
        assert_eq!(
            KeepalivedState::parse("DELETED"),
            KeepalivedState::Other("DELETED".into())
        );
    }
}
