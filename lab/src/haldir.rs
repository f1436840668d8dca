//! haldir itself as a lab router: writes its TOML configuration, runs
//! `haldir run --status-file` in a lab host, and reads its state from that file.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use serde_json::Value;

use super::netns::Lab;
use super::{run_checked, wait_until};

/// How long [`Haldir::start`] waits for every instance to leave INIT. A start takes about
/// a second; the first start of a debug binary in a freshly booted, software-emulated VM
/// on a loaded host (its pages read over the VM's shared file system) was seen at 10.5 s.
/// A haldir that exits is seen at once, whatever the bound.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One `[[vrrp_instance]]` of a lab router, rendered as TOML.
#[derive(Debug, Clone, PartialEq)]
pub struct HaldirInstance {
    /// `name`.
    pub name: String,
    /// `interface`.
    pub interface: String,
    /// `version` (2 or 3).
    pub version: u8,
    /// `virtual_router_id`.
    pub vrid: u8,
    /// `priority`.
    pub priority: u8,
    /// `advert_int`, in centiseconds.
    pub advert_int_centis: u16,
    /// `virtual_ipaddress` entries ("10.0.0.100/24").
    pub virtual_ipaddress: Vec<String>,
    /// `nopreempt`.
    pub nopreempt: bool,
    /// `unicast_src_ip`.
    pub unicast_src_ip: Option<IpAddr>,
    /// `unicast_peer`.
    pub unicast_peer: Vec<IpAddr>,
    /// Extra `key = value` lines for the instance table.
    pub extra_lines: Vec<String>,
}

impl HaldirInstance {
    /// A version 3 instance `VI_1` on `eth0`.
    pub fn v3(vrid: u8, priority: u8, advert_int: Duration, vips: &[&str]) -> Self {
        HaldirInstance {
            name: "VI_1".into(),
            interface: "eth0".into(),
            version: 3,
            vrid,
            priority,
            advert_int_centis: u16::try_from(advert_int.as_millis() / 10).unwrap_or(u16::MAX),
            virtual_ipaddress: vips.iter().map(|v| (*v).to_owned()).collect(),
            nopreempt: false,
            unicast_src_ip: None,
            unicast_peer: Vec::new(),
            extra_lines: Vec::new(),
        }
    }

    /// A version 2 instance `VI_1` on `eth0` (advert_int in whole seconds).
    pub fn v2(vrid: u8, priority: u8, advert_int: Duration, vips: &[&str]) -> Self {
        HaldirInstance {
            version: 2,
            ..HaldirInstance::v3(vrid, priority, advert_int, vips)
        }
    }

    /// Sets `nopreempt = true`.
    pub fn nopreempt(mut self) -> Self {
        self.nopreempt = true;
        self
    }

    /// Unicast adverts from `src` to `peers`.
    pub fn unicast(mut self, src: IpAddr, peers: &[IpAddr]) -> Self {
        self.unicast_src_ip = Some(src);
        self.unicast_peer = peers.to_vec();
        self
    }

    /// The TOML table of this instance.
    pub fn render(&self) -> String {
        let quoted = |items: &[String]| {
            items
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let advert_int = if self.advert_int_centis % 100 == 0 {
            format!("{}", self.advert_int_centis / 100)
        } else {
            format!("{:.2}", f64::from(self.advert_int_centis) / 100.0)
        };
        let mut text = format!(
            "[[vrrp_instance]]\nname = {:?}\ninterface = {:?}\nversion = {}\nvirtual_router_id = {}\npriority = {}\nadvert_int = {}\nvirtual_ipaddress = [{}]\nnopreempt = {}\n",
            self.name,
            self.interface,
            self.version,
            self.vrid,
            self.priority,
            advert_int,
            quoted(&self.virtual_ipaddress),
            self.nopreempt,
        );
        if let Some(src) = self.unicast_src_ip {
            text.push_str(&format!("unicast_src_ip = \"{src}\"\n"));
        }
        if !self.unicast_peer.is_empty() {
            let peers: Vec<String> = self.unicast_peer.iter().map(ToString::to_string).collect();
            text.push_str(&format!("unicast_peer = [{}]\n", quoted(&peers)));
        }
        for line in &self.extra_lines {
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

/// [`Haldir::describe`] of each router, one after the other.
pub fn describe_all(routers: &[&Haldir<'_>]) -> String {
    routers
        .iter()
        .map(|h| h.describe())
        .collect::<Vec<_>>()
        .join("\n")
}

/// When a starting haldir counts as up.
#[derive(Debug, Clone, Copy)]
enum Ready {
    /// Every VRRP instance has left INIT.
    InstancesOutOfInit,
    /// The first status file is written (a haldir without VRRP instances).
    StatusWritten,
}

/// A running haldir in one lab host. Killed with the lab if still running.
#[derive(Debug)]
pub struct Haldir<'l> {
    lab: &'l Lab,
    host: String,
    pid: u32,
    binary: PathBuf,
    config_path: PathBuf,
    status_path: PathBuf,
}

impl<'l> Haldir<'l> {
    /// Writes the configuration, starts `binary run` in `host` and waits (up to 10 s)
    /// until every instance has left INIT.
    pub fn start(
        lab: &'l Lab,
        host: &str,
        binary: &Path,
        instances: &[HaldirInstance],
    ) -> anyhow::Result<Haldir<'l>> {
        let text: Vec<String> = instances.iter().map(HaldirInstance::render).collect();
        Haldir::start_with_config(lab, host, binary, &text.join("\n"))
    }

    /// Like [`Haldir::start`] with the configuration text given whole.
    pub fn start_with_config(
        lab: &'l Lab,
        host: &str,
        binary: &Path,
        config: &str,
    ) -> anyhow::Result<Haldir<'l>> {
        Haldir::start_with_args(lab, host, binary, config, &[])
    }

    /// Like [`Haldir::start_with_config`], with extra arguments for `haldir run`
    /// (`--metrics-address ...`).
    pub fn start_with_args(
        lab: &'l Lab,
        host: &str,
        binary: &Path,
        config: &str,
        extra_args: &[&str],
    ) -> anyhow::Result<Haldir<'l>> {
        Haldir::start_with_timeout(lab, host, binary, config, extra_args, START_TIMEOUT)
    }

    /// Like [`Haldir::start_with_args`], waiting up to `timeout` (instead of [`START_TIMEOUT`]) for
    /// every instance to leave INIT: a loaded, software-emulated VM can need more.
    pub fn start_with_timeout(
        lab: &'l Lab,
        host: &str,
        binary: &Path,
        config: &str,
        extra_args: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<Haldir<'l>> {
        Haldir::launch(lab, host, binary, config, (extra_args, &[]), timeout)
    }

    /// Starts a haldir that runs no VRRP instance (say, an active-active director: IPVS,
    /// checks and `[announce]` only), waiting up to `timeout` until it has written its
    /// first status file (there is no instance to leave INIT).
    pub fn start_without_vrrp(
        lab: &'l Lab,
        host: &str,
        binary: &Path,
        config: &str,
        timeout: Duration,
    ) -> anyhow::Result<Haldir<'l>> {
        Haldir::launch_until(
            lab,
            host,
            binary,
            config,
            (&[], &[]),
            timeout,
            Ready::StatusWritten,
        )
    }

    /// Like [`Haldir::start_with_config`], with extra environment variables for the
    /// process (test-only hooks such as `HALDIR_TEST_FAULT`).
    pub fn start_with_env(
        lab: &'l Lab,
        host: &str,
        binary: &Path,
        config: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Haldir<'l>> {
        Haldir::launch(lab, host, binary, config, (&[], env), START_TIMEOUT)
    }

    fn launch(
        lab: &'l Lab,
        host: &str,
        binary: &Path,
        config: &str,
        args_env: (&[&str], &[(&str, &str)]),
        timeout: Duration,
    ) -> anyhow::Result<Haldir<'l>> {
        Haldir::launch_until(
            lab,
            host,
            binary,
            config,
            args_env,
            timeout,
            Ready::InstancesOutOfInit,
        )
    }

    fn launch_until(
        lab: &'l Lab,
        host: &str,
        binary: &Path,
        config: &str,
        (extra_args, env): (&[&str], &[(&str, &str)]),
        timeout: Duration,
        ready: Ready,
    ) -> anyhow::Result<Haldir<'l>> {
        let dir = lab.dir();
        let config_path = dir.join(format!("{host}-haldir.toml"));
        let status_path = dir.join(format!("{host}-haldir.status.json"));
        let _ = std::fs::remove_file(&status_path);
        std::fs::write(&config_path, config)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        let mut cmd = Command::new(binary);
        cmd.arg("run")
            .arg("--config")
            .arg(&config_path)
            .arg("--status-file")
            .arg(&status_path)
            .arg("--control-socket")
            .arg(dir.join(format!("{host}-haldir.sock")))
            .arg("--dump-dir")
            .arg(dir.join(format!("{host}-dumps")))
            // Kept across a restart in the same lab host (auth_hmac's replay marks).
            .arg("--state-dir")
            .arg(dir.join(format!("{host}-state")))
            .args(extra_args)
            .env("HALDIR_LOG", "info,haldir_vrrp=debug")
            .envs(env.iter().copied());
        let pid = lab
            .spawn(host, cmd)
            .with_context(|| format!("cannot start haldir in {host}"))?;
        let haldir = Haldir {
            lab,
            host: host.to_owned(),
            pid,
            binary: binary.to_owned(),
            config_path,
            status_path,
        };
        let started = wait_until(timeout, || {
            !lab.is_running(pid)
                || match ready {
                    Ready::InstancesOutOfInit => haldir
                        .states()
                        .is_some_and(|s| !s.is_empty() && s.iter().all(|s| s != "INIT")),
                    Ready::StatusWritten => haldir.status().is_some(),
                }
        });
        if !started || !lab.is_running(pid) {
            bail!(
                "haldir in {host} did not start (config {}); its log:\n{}",
                haldir.config_path.display(),
                haldir.log()
            );
        }
        Ok(haldir)
    }

    /// The lab host it runs in.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Where SIGUSR1 / SIGUSR2 write its dumps (`haldir.data`, `haldir.stats`).
    pub fn dump_dir(&self) -> PathBuf {
        self.lab.dir().join(format!("{}-dumps", self.host))
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its control socket (`haldir status --socket ...`).
    pub fn control_socket(&self) -> PathBuf {
        self.lab.dir().join(format!("{}-haldir.sock", self.host))
    }

    /// Its live status document, as `haldir status --json --socket ...` prints it: the
    /// status file ([`Haldir::status`]) holds only the VRRP part, not the operator's parts
    /// such as `dr_arp_check`.
    pub fn control_status(&self) -> anyhow::Result<Value> {
        let output = run_checked(
            Command::new(&self.binary)
                .args(["status", "--json", "--socket"])
                .arg(self.control_socket()),
        )?;
        let document = serde_json::from_slice(&output.stdout).with_context(|| {
            format!(
                "`haldir status --json` of {} printed no JSON: {}",
                self.host,
                String::from_utf8_lossy(&output.stdout)
            )
        })?;
        Ok(schema_checked(document))
    }

    /// The configuration file it was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The last status snapshot it wrote (`None` before the first, or once unreadable).
    pub fn status(&self) -> Option<Value> {
        let text = std::fs::read_to_string(&self.status_path).ok()?;
        serde_json::from_str(&text).ok().map(schema_checked)
    }

    /// The state of every instance ("BACKUP", "MASTER", ...), in configuration order.
    pub fn states(&self) -> Option<Vec<String>> {
        let status = self.status()?;
        Some(
            status["instances"]
                .as_array()?
                .iter()
                .filter_map(|i| i["state"].as_str().map(str::to_owned))
                .collect(),
        )
    }

    /// The state of the instance called `name`.
    pub fn instance_state(&self, name: &str) -> Option<String> {
        let status = self.status()?;
        status["instances"]
            .as_array()?
            .iter()
            .find(|i| i["name"].as_str() == Some(name))
            .and_then(|i| i["state"].as_str().map(str::to_owned))
    }

    /// The state of the first instance.
    pub fn state(&self) -> Option<String> {
        self.states()?.into_iter().next()
    }

    /// Waits up to `timeout` until the first instance is in `state`.
    pub fn wait_state(&self, state: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.state().as_deref() == Some(state))
    }

    /// A counter of the first instance (`adverts_sent`, `became_master`, ...).
    pub fn counter(&self, name: &str) -> u64 {
        self.status()
            .and_then(|s| s["instances"][0][name].as_u64())
            .unwrap_or(0)
    }

    /// A drop counter: by the router (`bad_ttl`, ...) or by the link (`bad_checksum`, ...).
    pub fn drops(&self, reason: &str) -> u64 {
        let Some(status) = self.status() else {
            return 0;
        };
        let by_router = status["instances"][0]["drops"][reason]
            .as_u64()
            .unwrap_or(0);
        let by_link = status["links"][0]["drops"][reason].as_u64().unwrap_or(0);
        by_router + by_link
    }

    /// Whether the process still runs.
    pub fn is_running(&self) -> bool {
        self.lab.is_running(self.pid)
    }

    /// Its log (stdout and stderr).
    pub fn log(&self) -> String {
        self.lab.log_text(self.pid)
    }

    /// kill -9: no priority-0 advert, the virtual addresses stay behind.
    pub fn crash(&self) -> anyhow::Result<()> {
        self.lab.kill(self.pid, Signal::SIGKILL)?;
        self.lab.wait_exit(self.pid, Duration::from_secs(5))?;
        Ok(())
    }

    /// Everything a failed assertion should show of this router: host, pid, whether it
    /// runs, its state, its status document and its log.
    pub fn describe(&self) -> String {
        format!(
            "--- {} (pid {}, running {}): state {:?}\nstatus: {}\nlog:\n{}",
            self.host(),
            self.pid(),
            self.is_running(),
            self.state(),
            self.status().map(|s| s.to_string()).unwrap_or_default(),
            self.log()
        )
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the process.
    pub fn freeze(&self, frozen: bool) -> anyhow::Result<()> {
        let signal = if frozen {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        self.lab.kill(self.pid, signal)
    }

    /// Replaces the configuration file with `config` and sends SIGHUP; waits
    /// (up to 10 s) until the log reports the reload as applied or rejected,
    /// and returns which (`true`: applied).
    pub fn reload(&self, config: &str) -> anyhow::Result<bool> {
        let before = self.log();
        let count = |log: &str, what: &str| log.matches(what).count();
        let (applied, rejected) = (
            count(&before, "reloaded"),
            count(&before, "reload rejected"),
        );
        std::fs::write(&self.config_path, config)
            .with_context(|| format!("cannot write {}", self.config_path.display()))?;
        self.lab.kill(self.pid, Signal::SIGHUP)?;
        let mut outcome = None;
        wait_until(Duration::from_secs(10), || {
            let log = self.log();
            if count(&log, "reloaded") > applied {
                outcome = Some(true);
            } else if count(&log, "reload rejected") > rejected {
                outcome = Some(false);
            }
            outcome.is_some()
        });
        outcome.with_context(|| {
            format!(
                "haldir in {} did not report the reload:\n{}",
                self.host,
                self.log()
            )
        })
    }

    /// Graceful stop (SIGTERM); returns the exit status.
    pub fn stop(&self) -> anyhow::Result<ExitStatus> {
        self.lab.kill(self.pid, Signal::SIGTERM)?;
        match self.lab.wait_exit(self.pid, Duration::from_secs(10))? {
            Some(status) => Ok(status),
            None => bail!(
                "haldir in {} did not exit within 10 s of SIGTERM",
                self.host
            ),
        }
    }
}

/// Every status document or status file a test reads goes through here: it is checked
/// against the status schema (`docs/status.schema.json`, by way of the typed model in
/// `haldir_status`), and one that breaks it fails the test that read it, naming what is wrong.
/// The file is written whole (write, then rename), so a complete read is always a document.
pub fn schema_checked(document: serde_json::Value) -> serde_json::Value {
    if let Err(e) = haldir_status::schema::validate(&document) {
        panic!("a status document breaks the status schema: {e}\n{document:#}");
    }
    document
}
