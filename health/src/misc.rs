//! `MISC_CHECK`: run a script; exit 0 = up, anything else = down. With `misc_dynamic`, exit
//! 1 = down and 2..=255 = up with weight `status − 2` (keepalived `check_misc.c`).
//!
//! * The script runs as an unprivileged user (`user`, keepalived's `script_user`; default
//!   `keepalived_script` if that account exists, else `nobody`), with supplementary groups
//!   dropped, stdin/stdout/stderr on /dev/null, cwd `/`, in its own process group.
//! * It is NOT run through a shell: `misc_path` is split into argv the way keepalived does
//!   (whitespace separates, '…' and "…" quote, backslash escapes). A shell is used only for
//!   [`MiscCommand::Shell`], i.e. when the config asks for one.
//! * At `misc_timeout` the whole process group is killed with SIGKILL (a script's children
//!   die with it) and the run counts as a failure; dropping a run does the same.
//! * [`validate`] checks at config time that the script exists, is a regular file and is
//!   executable by the script user, so `haldir check` reports it before the daemon runs.
//!   With `enable_script_security` (and always for a script that runs as root) it also
//!   refuses a script that anyone but root can change ([`haldir_scripts::path_security`]).
//! * A root haldir that dropped its privileges cannot switch users itself: it starts
//!   scripts through its launcher process ([`crate::launcher`]), same rules.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Why a `MISC_CHECK` cannot run (shared with every script haldir runs).
pub use haldir_scripts::ScriptError as MiscError;
use haldir_scripts::{check_executable, resolve_program};
pub use haldir_scripts::{command_argv, split_command_line, with_args, ScriptUser};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::tcp::humanize;
use crate::{CheckFuture, CheckOutcome, Checker};

/// The command a `MISC_CHECK` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MiscCommand {
    /// `misc_path` split into argv (no shell). Use [`split_command_line`] on the config text.
    Exec(Vec<String>),
    /// Run the text with `/bin/sh -c` (only when the config explicitly asks for a shell).
    Shell(String),
}

impl MiscCommand {
    /// `misc_path` text → `Exec(argv)`, split like keepalived.
    pub fn parse(misc_path: &str) -> Result<Self, MiscError> {
        Ok(MiscCommand::Exec(split_command_line(misc_path)?))
    }

    fn argv(&self) -> Vec<String> {
        match self {
            MiscCommand::Exec(argv) => argv.clone(),
            MiscCommand::Shell(text) => vec!["/bin/sh".into(), "-c".into(), text.clone()],
        }
    }
}

/// A `MISC_CHECK` block as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiscCheckConfig {
    /// `misc_path`.
    pub command: MiscCommand,
    /// `misc_timeout` (keepalived's default is the check's `delay_loop`).
    pub timeout: Duration,
    /// `misc_dynamic`.
    pub dynamic: bool,
    /// `user` (keepalived `user USERNAME [GROUPNAME]`, or the global `script_user`);
    /// `None`: `keepalived_script` if it exists, else `nobody`.
    pub user: Option<String>,
    /// The group; `None`: the user's primary group.
    pub group: Option<String>,
    /// `enable_script_security`: refuse the script when anyone but root can change it or a
    /// directory on its path ([`haldir_scripts::path_security`]). Scripts that run as root (uid or
    /// gid 0, or set-uid/gid root) are checked whatever this says.
    pub security: bool,
}

impl MiscCheckConfig {
    /// A check running `command` with `timeout`, not dynamic, as the default user.
    pub fn new(command: MiscCommand, timeout: Duration) -> Self {
        MiscCheckConfig {
            command,
            timeout,
            dynamic: false,
            user: None,
            group: None,
            security: false,
        }
    }
}

/// Why the script of a valid `config` would be refused under `enable_script_security`
/// (`None`: it is secure, or it cannot run at all, which [`validate`] reports). For the
/// warnings haldir gives while the option is off.
pub fn security_warning(config: &MiscCheckConfig) -> Option<String> {
    let argv = config.command.argv();
    let program = resolve_program(argv.first()?).ok()?;
    haldir_scripts::path_security::check(&program)
        .err()
        .map(|error| format!("script {}: {error}", program.display()))
}

/// Config-time validation of a `MISC_CHECK`: the user exists, and the program exists, is a
/// regular file, and is executable by that user. (`haldir check` calls this.)
pub fn validate(config: &MiscCheckConfig) -> Result<(), MiscError> {
    MiscCheck::new(config.clone()).map(|_| ())
}

/// A validated, ready-to-run `MISC_CHECK`.
#[derive(Clone)]
pub struct MiscCheck {
    program: PathBuf,
    args: Vec<OsString>,
    timeout: Duration,
    dynamic: bool,
    user: ScriptUser,
}

impl fmt::Debug for MiscCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MiscCheck")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("timeout", &self.timeout)
            .field("dynamic", &self.dynamic)
            .field("user", &self.user.name)
            .finish()
    }
}

impl MiscCheck {
    /// Resolve the user and the program and check them (see [`validate`]).
    pub fn new(config: MiscCheckConfig) -> Result<Self, MiscError> {
        let argv = config.command.argv();
        let vetted = haldir_scripts::vet(
            &argv,
            config.user.as_deref(),
            config.group.as_deref(),
            config.security,
        )?;
        Ok(MiscCheck {
            program: vetted.program,
            args: argv[1..].iter().map(OsString::from).collect(),
            timeout: config.timeout,
            dynamic: config.dynamic,
            user: vetted.user,
        })
    }

    /// Re-check that the program is still there and executable (e.g. on reload).
    pub fn validate(&self) -> Result<(), MiscError> {
        check_executable(&self.program, &self.user)
    }

    /// The account the script runs as.
    pub fn user(&self) -> &ScriptUser {
        &self.user
    }

    /// Map an exit status to an outcome (keepalived `check_misc.c`).
    fn outcome(&self, status: std::process::ExitStatus) -> CheckOutcome {
        match (status.code(), status.signal()) {
            (Some(0), _) => CheckOutcome::Up,
            (Some(code @ 2..=255), _) if self.dynamic => {
                CheckOutcome::UpWithWeight(code as u32 - 2)
            }
            (Some(code), _) => CheckOutcome::Down(format!(
                "{} exited with status {code}",
                self.program.display()
            )),
            (None, Some(signal)) => CheckOutcome::Down(format!(
                "{} killed by signal {signal}",
                self.program.display()
            )),
            (None, None) => CheckOutcome::Down(format!("{} ended oddly", self.program.display())),
        }
    }

    async fn run(&self) -> CheckOutcome {
        // A root haldir that dropped its privileges starts scripts through its launcher.
        if let Some(launcher) = crate::launcher::client() {
            return self.run_launched(launcher).await;
        }
        // Only root can switch users; unprivileged haldir runs scripts as itself.
        let user = nix::unistd::geteuid()
            .is_root()
            .then_some((self.user.uid, self.user.gid));
        let mut command = script_command(&self.program, &self.args, user);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                return CheckOutcome::Down(format!("cannot run {}: {e}", self.program.display()))
            }
        };
        let Some(pid) = child.id() else {
            return CheckOutcome::Down("script vanished before it could be waited for".into());
        };
        // Kills the group if this future is dropped (check removed, scheduler shut down).
        let mut guard = GroupKiller(Some(Pid::from_raw(pid as i32)));
        match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(Ok(status)) => {
                guard.0 = None;
                self.outcome(status)
            }
            Ok(Err(e)) => {
                CheckOutcome::Down(format!("waiting for {}: {e}", self.program.display()))
            }
            Err(_) => {
                guard.kill();
                let _ = child.wait().await; // reap
                CheckOutcome::Down(format!(
                    "{} timed out after {} (process group killed)",
                    self.program.display(),
                    humanize(self.timeout)
                ))
            }
        }
    }
}

impl MiscCheck {
    /// [`MiscCheck::run`] through the script launcher (see [`crate::launcher`]): the same
    /// timeout and process-group kill, done by the launcher on the daemon's request.
    async fn run_launched(&self, launcher: &crate::launcher::Client) -> CheckOutcome {
        let argv: Vec<OsString> = std::iter::once(self.program.clone().into_os_string())
            .chain(self.args.iter().cloned())
            .collect();
        let mut run = launcher.spawn(self.user.uid, self.user.gid, argv);
        match tokio::time::timeout(self.timeout, run.wait()).await {
            Ok(Ok(status)) => self.outcome(status),
            Ok(Err(e)) => CheckOutcome::Down(format!("cannot run {}: {e}", self.program.display())),
            Err(_) => {
                run.kill();
                // The launcher reports the killed script's end; don't wait forever for it.
                let _ = tokio::time::timeout(Duration::from_secs(5), run.wait()).await;
                CheckOutcome::Down(format!(
                    "{} timed out after {} (process group killed)",
                    self.program.display(),
                    humanize(self.timeout)
                ))
            }
        }
    }
}

/// The `PATH` every script gets.
pub const SCRIPT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables of haldir's own environment a script inherits, when set: locale and time
/// zone. Nothing else is passed on (not `NOTIFY_SOCKET`, which would let a script speak
/// for haldir to systemd, nor `JOURNAL_STREAM`, credentials or the operator's shell).
pub const SCRIPT_INHERITED_ENV: &[&str] = &["LANG", "LC_ALL", "TZ"];

/// How a script is started, directly or by the launcher: `program` with `args`, stdio on
/// /dev/null, cwd `/`, in a process group of its own, as `user` (uid, gid; `None`: as this
/// process) with no supplementary groups, without ambient capabilities, with the system's
/// transparent huge pages, and with an empty environment apart from `PATH`
/// ([`SCRIPT_PATH`]) and [`SCRIPT_INHERITED_ENV`].
pub(crate) fn script_command(
    program: &Path,
    args: &[OsString],
    user: Option<(u32, u32)>,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/")
        .process_group(0)
        .env_clear()
        .env("PATH", SCRIPT_PATH);
    for name in SCRIPT_INHERITED_ENV {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    if let Some((uid, gid)) = user {
        // std drops supplementary groups (setgroups(0)) when uid is set as root.
        command.uid(uid).gid(gid);
    }
    // Under systemd haldir holds CAP_NET_ADMIN and CAP_NET_RAW as ambient
    // capabilities, which a child would inherit across exec: scripts get none.
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            let rc = libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            );
            // EINVAL: a kernel without ambient capabilities has none to clear.
            if rc != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
                return Err(std::io::Error::last_os_error());
            }
            // The daemon keeps out of transparent huge pages (src/memory.rs), a setting
            // exec keeps: a script gets the system's. A kernel without THP has nothing to
            // give back.
            libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0);
            Ok(())
        });
    }
    command
}

/// Sends SIGKILL to a process group once, on `kill()` or on drop.
struct GroupKiller(Option<Pid>);

impl GroupKiller {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Checker for MiscCheck {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(self.run())
    }

    fn kind(&self) -> &'static str {
        "MISC_CHECK"
    }

    fn default_retry(&self) -> u32 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `/bin/sh -c "SHELL_COMMAND > FILE"`, started as [`script_command`] starts a
    /// script (its stdout is /dev/null), wrote to FILE (`name` tells the tests' files apart).
    async fn script_output(name: &str, shell_command: &str) -> String {
        let out = std::env::temp_dir().join(format!("haldir-script-{name}-{}", std::process::id()));
        let args = [
            OsString::from("-c"),
            OsString::from(format!("{shell_command} > {}", out.display())),
        ];
        let status = script_command(Path::new("/bin/sh"), &args, None)
            .status()
            .await
            .unwrap();
        assert!(status.success());
        let text = std::fs::read_to_string(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        text
    }

    #[tokio::test]
    async fn a_script_gets_an_empty_environment_apart_from_the_documented_list() {
        // Cargo sets CARGO_* and HOME for this process: none may reach the script.
        assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
        let env = script_output("env", "env").await;
        // What the shell itself sets (PWD, SHLVL, _) is allowed.
        let shell_own = ["PWD", "SHLVL", "_", "OLDPWD"];
        for line in env.lines() {
            let name = line.split('=').next().unwrap_or_default();
            assert!(
                name == "PATH" || SCRIPT_INHERITED_ENV.contains(&name) || shell_own.contains(&name),
                "the script inherited {line:?}; its whole environment:\n{env}"
            );
        }
        assert!(
            env.lines().any(|l| l == format!("PATH={SCRIPT_PATH}")),
            "{env}"
        );
    }

    /// `THP_enabled` of a `/proc/PID/status` text (Linux 5.0 on): whether the process may
    /// use transparent huge pages.
    fn thp_enabled(status: &str) -> Option<&str> {
        status
            .lines()
            .find_map(|l| l.strip_prefix("THP_enabled:"))
            .map(str::trim)
    }

    #[tokio::test]
    async fn a_script_gets_transparent_huge_pages_back_from_a_daemon_without_them() {
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        if thp_enabled(&own).is_none() {
            eprintln!("SKIP: this kernel's /proc/PID/status has no THP_enabled line (before 5.0)");
            return;
        }
        // As the daemon does at start (src/memory.rs); this test process keeps it.
        // SAFETY: prctl with integer arguments only.
        assert_eq!(
            unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) },
            0
        );
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert_eq!(thp_enabled(&own), Some("0"), "the opt-out took");
        let script = script_output("thp", "cat /proc/self/status").await;
        assert_eq!(
            thp_enabled(&script),
            Some("1"),
            "the script's status:\n{script}"
        );
    }
}
