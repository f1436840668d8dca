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
//!   refuses a script that anyone but root can change ([`crate::path_security`]).
//! * A root haldir that dropped its privileges cannot switch users itself: it starts
//!   scripts through its launcher process ([`crate::launcher`]), same rules.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::{Group, Pid, Uid, User};

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
    /// directory on its path ([`crate::path_security`]). Scripts that run as root (uid or
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

/// Why a `MISC_CHECK` cannot run. Reported at config time by [`validate`].
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MiscError {
    /// `misc_path` is empty.
    #[error("misc_path is empty: give the script to run")]
    EmptyCommand,
    /// Quotes do not balance.
    #[error("misc_path {0:?}: unterminated quote or trailing backslash")]
    Unbalanced(String),
    /// The script does not exist (or is not on PATH).
    #[error("script {0:?} does not exist")]
    NotFound(PathBuf),
    /// The script is not a regular file.
    #[error("script {0:?} is not a regular file")]
    NotAFile(PathBuf),
    /// The script is not executable by the user it runs as.
    #[error("script {path:?} is not executable by user {user} (uid {uid}): chmod it or change script_user")]
    NotExecutable {
        /// The script.
        path: PathBuf,
        /// The user name.
        user: String,
        /// Its uid.
        uid: u32,
    },
    /// The user does not exist.
    #[error("script user {0:?} does not exist")]
    UnknownUser(String),
    /// The group does not exist.
    #[error("script group {0:?} does not exist")]
    UnknownGroup(String),
    /// Someone other than root can change the script or a directory on its path, and
    /// `enable_script_security` is on or the script runs as root.
    #[error("{}refusing script {}: {error}", if *.as_root { "it runs as root, so its path is always checked: " } else { "enable_script_security: " }, .path.display())]
    Insecure {
        /// The script.
        path: PathBuf,
        /// The script runs with root's uid or gid.
        as_root: bool,
        /// What is wrong.
        error: crate::path_security::PathSecurityError,
    },
}

/// Split `misc_path` into argv like keepalived: unquoted whitespace separates words;
/// `'…'` is literal; `"…"` is literal except `\"` and `\\`; outside quotes a backslash
/// escapes the next character. No variables, globs or other shell syntax: `;`, `|`, `$HOME`
/// are passed through as plain characters.
pub fn split_command_line(text: &str) -> Result<Vec<String>, MiscError> {
    let unbalanced = || MiscError::Unbalanced(text.to_string());
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next().ok_or_else(unbalanced)? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next().ok_or_else(unbalanced)? {
                        '"' => break,
                        '\\' => match chars.next().ok_or_else(unbalanced)? {
                            c @ ('"' | '\\') => word.push(c),
                            c => {
                                word.push('\\');
                                word.push(c);
                            }
                        },
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next().ok_or_else(unbalanced)?);
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err(MiscError::EmptyCommand);
    }
    Ok(words)
}

/// The account a script runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptUser {
    /// User name (for messages).
    pub name: String,
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
}

impl ScriptUser {
    /// Look up `user` (name or numeric uid) and `group` (name or gid; default the user's
    /// primary group). With no user: `keepalived_script` if it exists, else `nobody`.
    pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Self, MiscError> {
        let found = match user {
            Some(name) => lookup_user(name)?,
            None => match User::from_name("keepalived_script").ok().flatten() {
                Some(u) => u,
                None => lookup_user("nobody")?,
            },
        };
        let gid = match group {
            Some(g) => match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => Group::from_name(g)
                    .ok()
                    .flatten()
                    .ok_or_else(|| MiscError::UnknownGroup(g.to_string()))?
                    .gid
                    .as_raw(),
            },
            None => found.gid.as_raw(),
        };
        Ok(ScriptUser {
            name: found.name,
            uid: found.uid.as_raw(),
            gid,
        })
    }
}

fn lookup_user(name: &str) -> Result<User, MiscError> {
    let unknown = || MiscError::UnknownUser(name.to_string());
    match name.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid))
            .ok()
            .flatten()
            .ok_or_else(unknown),
        Err(_) => User::from_name(name).ok().flatten().ok_or_else(unknown),
    }
}

/// Find `program` like execvp: a name with a `/` is a path, otherwise search `PATH`.
fn resolve_program(program: &str) -> Result<PathBuf, MiscError> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return if path.exists() {
            // Relative to haldir's directory now, not to the script's cwd (`/`).
            Ok(std::path::absolute(&path).unwrap_or(path))
        } else {
            Err(MiscError::NotFound(path))
        };
    }
    let path_var =
        std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path_var)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| MiscError::NotFound(PathBuf::from(program)))
}

/// Whether `user` may execute `path`, from the mode bits (root: any x bit).
fn check_executable(path: &Path, user: &ScriptUser) -> Result<(), MiscError> {
    let meta = std::fs::metadata(path).map_err(|_| MiscError::NotFound(path.to_path_buf()))?;
    if !meta.is_file() {
        return Err(MiscError::NotAFile(path.to_path_buf()));
    }
    use std::os::unix::fs::MetadataExt;
    let mode = meta.permissions().mode();
    let allowed = if user.uid == 0 {
        mode & 0o111 != 0
    } else if meta.uid() == user.uid {
        mode & 0o100 != 0
    } else if meta.gid() == user.gid {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    };
    if allowed {
        Ok(())
    } else {
        Err(MiscError::NotExecutable {
            path: path.to_path_buf(),
            user: user.name.clone(),
            uid: user.uid,
        })
    }
}

/// Whether the script runs with root's uid or gid: as a root or gid-0 script user, or as a
/// set-uid/set-gid root file (keepalived checks the same cases even without
/// `enable_script_security`; haldir refuses them when insecure).
fn runs_as_root(program: &Path, user: &ScriptUser) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(program) else {
        return false;
    };
    let mode = meta.mode();
    user.uid == 0
        || user.gid == 0
        || (meta.uid() == 0 && mode & 0o4100 == 0o4100)
        || (meta.gid() == 0 && mode & 0o2010 == 0o2010)
}

/// Why the script of a valid `config` would be refused under `enable_script_security`
/// (`None`: it is secure, or it cannot run at all, which [`validate`] reports). For the
/// warnings haldir gives while the option is off.
pub fn security_warning(config: &MiscCheckConfig) -> Option<String> {
    let argv = config.command.argv();
    let program = resolve_program(argv.first()?).ok()?;
    crate::path_security::check(&program)
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
        let user = ScriptUser::resolve(config.user.as_deref(), config.group.as_deref())?;
        let argv = config.command.argv();
        let (program, args) = argv.split_first().ok_or(MiscError::EmptyCommand)?;
        let program = resolve_program(program)?;
        check_executable(&program, &user)?;
        let as_root = runs_as_root(&program, &user);
        if config.security || as_root {
            crate::path_security::check(&program).map_err(|error| MiscError::Insecure {
                path: program.clone(),
                as_root,
                error,
            })?;
        }
        Ok(MiscCheck {
            program,
            args: args.iter().map(OsString::from).collect(),
            timeout: config.timeout,
            dynamic: config.dynamic,
            user,
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

/// How a script is started, directly or by the launcher: `program` with `args`, stdio on
/// /dev/null, cwd `/`, in a process group of its own, as `user` (uid, gid; `None`: as this
/// process) with no supplementary groups, and without ambient capabilities.
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
        .process_group(0);
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

    #[test]
    fn split_honours_quotes_and_escapes_and_ignores_shell_syntax() {
        assert_eq!(
            split_command_line(r#"/bin/check  -x 'a b' "c \"d\" \e" f\ g ;rm $HOME|x"#).unwrap(),
            vec![
                "/bin/check",
                "-x",
                "a b",
                r#"c "d" \e"#,
                "f g",
                ";rm",
                "$HOME|x"
            ]
        );
        assert_eq!(split_command_line("''").unwrap(), vec![""]);
        assert_eq!(
            split_command_line("   ").unwrap_err(),
            MiscError::EmptyCommand
        );
        assert!(matches!(
            split_command_line("/x 'open").unwrap_err(),
            MiscError::Unbalanced(_)
        ));
        assert!(matches!(
            split_command_line("/x \\").unwrap_err(),
            MiscError::Unbalanced(_)
        ));
    }

    #[test]
    fn default_script_user_is_unprivileged() {
        let user = ScriptUser::resolve(None, None).unwrap();
        assert_ne!(user.uid, 0);
        assert!(user.name == "keepalived_script" || user.name == "nobody");
        assert_eq!(
            ScriptUser::resolve(Some("no-such-user-haldir"), None).unwrap_err(),
            MiscError::UnknownUser("no-such-user-haldir".into())
        );
    }
}
