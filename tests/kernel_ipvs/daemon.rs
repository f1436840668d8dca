//! One `haldir run` process in a lab namespace, with JSON logs, for the kernel tests
//! (`tests/kernel_*.rs`): start it, wait for log lines, stop it and check it exited 0.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use haldir_lab::{wait_until, Lab, Signal};
use serde_json::Value;

/// One haldir process, started with JSON logs, and what it logged.
pub struct Daemon<'l> {
    pub lab: &'l Lab,
    pub pid: u32,
}

impl<'l> Daemon<'l> {
    pub fn start(lab: &'l Lab, host: &str, config: &Path, resync_secs: f64) -> Daemon<'l> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_haldir"));
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .args(["--ipvs-resync", &resync_secs.to_string()])
            .args(["--log-format", "json"])
            .env("HALDIR_LOG", "info,haldir_ipvs::keeper=debug");
        let pid = lab.spawn(host, cmd).expect("start haldir");
        Daemon { lab, pid }
    }

    /// Every JSON log line so far.
    pub fn log(&self) -> Vec<Value> {
        self.lab
            .log_text(self.pid)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The log lines whose message starts with `message`.
    pub fn lines(&self, message: &str) -> Vec<Value> {
        self.log()
            .into_iter()
            .filter(|line| {
                line["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message))
            })
            .collect()
    }

    pub fn count(&self, message: &str) -> usize {
        self.lines(message).len()
    }

    /// Waits until at least `n` lines start with `message`; panics with the log otherwise.
    pub fn wait_for(&self, message: &str, n: usize, timeout: Duration) {
        let ok = wait_until(timeout, || {
            self.count(message) >= n || !self.lab.is_running(self.pid)
        });
        assert!(
            ok && self.count(message) >= n,
            "haldir did not log {message:?} {n} time(s) within {timeout:?}; its log:\n{}",
            self.lab.log_text(self.pid)
        );
    }

    /// SIGTERM, and the exit status must be 0.
    pub fn stop(&self) {
        self.lab.kill(self.pid, Signal::SIGTERM).unwrap();
        let status = self
            .lab
            .wait_exit(self.pid, Duration::from_secs(10))
            .unwrap()
            .unwrap_or_else(|| panic!("haldir did not exit within 10 s of SIGTERM"));
        assert!(
            status.success(),
            "haldir must exit 0 on SIGTERM, it exited {status}; its log:\n{}",
            self.lab.log_text(self.pid)
        );
    }

    /// The period its drift checks run at: `resync` (`--ipvs-resync`), or what the keeper
    /// last said it paced them to (100 times what one read of the kernel's table costs,
    /// when that is more). The keeper weighs its last three reads before it paces, so
    /// this is settled once it has logged two rounds that found the table in step.
    pub fn drift_period(&self, resync: Duration) -> Duration {
        self.lines("IPVS drift checks paced")
            .last()
            .map_or(resync, |line| duration_field(line, "period"))
    }

    /// No WARN or ERROR line.
    pub fn assert_no_complaints(&self) {
        let bad: Vec<String> = self
            .log()
            .iter()
            .filter(|line| matches!(line["level"].as_str(), Some("WARN") | Some("ERROR")))
            .map(Value::to_string)
            .collect();
        assert!(bad.is_empty(), "haldir complained:\n{}", bad.join("\n"));
    }
}

/// The numeric field `name` of a log line.
pub fn field(line: &Value, name: &str) -> u64 {
    line["fields"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("log line without {name}: {line}"))
}

/// Feeds `commands` to `ipvsadm -R` in namespace `ns`: all hand edits land at once (not
/// `ipvsadm-restore`, which flushes the table first).
pub fn ipvsadm_r(ns: &str, commands: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "ipvsadm", "-R"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ipvsadm -R");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(commands.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ipvsadm -R failed: {}\ninput:\n{commands}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `Duration` field of a log line, as tracing prints it with `?` (`55.3s`, `800ms`).
fn duration_field(line: &serde_json::Value, name: &str) -> Duration {
    let text = line["fields"][name]
        .as_str()
        .unwrap_or_else(|| panic!("log line without {name}: {line}"));
    let (number, unit) = text
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|at| text.split_at(at))
        .unwrap_or_else(|| panic!("{name} {text:?} has no unit"));
    let number: f64 = number.parse().expect("a number");
    let seconds = match unit {
        "s" => number,
        "ms" => number / 1e3,
        "µs" | "us" => number / 1e6,
        "ns" => number / 1e9,
        other => panic!("unit {other:?} of {name}"),
    };
    Duration::from_secs_f64(seconds)
}
