//! How haldir vets the scripts it runs (`MISC_CHECK`, `vrrp_script`, notify scripts), shared
//! by the configuration's validation (`haldir check`) and the health checkers that run them:
//!
//! * [`split_command_line`]: a command line split into argv the way keepalived does (no
//!   shell: whitespace separates, '…' and "…" quote, backslash escapes);
//! * [`command_argv`]: what runs for a command line: its words, or `/bin/sh -c LINE` when
//!   the line starts with shell syntax (keepalived hands a line whose first word is not a
//!   program to `system()`, so `script "</dev/tcp/127.0.0.1/80"` works there);
//! * [`ScriptUser`]: the account a script runs as (keepalived's `script_user`; default
//!   `keepalived_script` if that account exists, else `nobody`);
//! * [`vet`]: the program exists, is a regular file and is executable by that user, and —
//!   with `enable_script_security`, or always for a script that runs as root — neither it
//!   nor a directory on its path can be changed by anyone but root ([`path_security`]).
//!
//! Plain functions over the file system and the user database: no processes, no sockets.

pub mod path_security;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Group, Uid, User};

/// Why a script (`MISC_CHECK`, `vrrp_script`, notify) cannot run. Reported at config time
/// by [`vet`], and at run time when the world changed since.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ScriptError {
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
        error: Box<path_security::PathSecurityError>,
    },
}

/// The shell a command line that needs one runs in (keepalived's `system()` uses it too).
pub const SHELL: &str = "/bin/sh";

/// What runs for the command line `text`: its words ([`split_command_line`]), or
/// `/bin/sh -c TEXT` when its first word is shell syntax rather than a program: a
/// redirection (`</dev/tcp/127.0.0.1/80`, `>/dev/null`), a variable or command
/// substitution (`$CHECK`, `$(...)`, `` `...` ``), a pipe, a list or a subshell. keepalived
/// sends any line whose first word is not an executable file to the shell; haldir does so
/// only when the first word cannot be a program at all, so that a mistyped path stays a
/// configuration error instead of a script that fails every time it runs.
pub fn command_argv(text: &str) -> Result<Vec<String>, ScriptError> {
    let words = split_command_line(text)?;
    let shell_syntax = |c: char| matches!(c, '<' | '>' | '|' | '&' | ';' | '$' | '`' | '(' | ')');
    if words[0].contains(shell_syntax) {
        Ok(vec![
            SHELL.to_owned(),
            "-c".to_owned(),
            text.trim().to_owned(),
        ])
    } else {
        Ok(words)
    }
}

/// `argv` (from [`command_argv`]) with `extra` arguments after the command's own: appended
/// words, or, for a shell line, appended to the line quoted (as keepalived's `system()`
/// gets the notify arguments after the line).
pub fn with_args(mut argv: Vec<String>, extra: &[String]) -> Vec<String> {
    if argv.len() == 3 && argv[0] == SHELL && argv[1] == "-c" {
        for word in extra {
            argv[2].push_str(" '");
            argv[2].push_str(&word.replace('\'', "'\\''"));
            argv[2].push('\'');
        }
    } else {
        argv.extend(extra.iter().cloned());
    }
    argv
}

/// Split `misc_path` into argv like keepalived: unquoted whitespace separates words;
/// `'…'` is literal; `"…"` is literal except `\"` and `\\`; outside quotes a backslash
/// escapes the next character. No variables, globs or other shell syntax: `;`, `|`, `$HOME`
/// are passed through as plain characters.
pub fn split_command_line(text: &str) -> Result<Vec<String>, ScriptError> {
    let unbalanced = || ScriptError::Unbalanced(text.to_string());
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
        return Err(ScriptError::EmptyCommand);
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
    pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Self, ScriptError> {
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
                    .ok_or_else(|| ScriptError::UnknownGroup(g.to_string()))?
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

fn lookup_user(name: &str) -> Result<User, ScriptError> {
    let unknown = || ScriptError::UnknownUser(name.to_string());
    match name.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid))
            .ok()
            .flatten()
            .ok_or_else(unknown),
        Err(_) => User::from_name(name).ok().flatten().ok_or_else(unknown),
    }
}

/// Find `program` like execvp: a name with a `/` is a path, otherwise search `PATH`.
pub fn resolve_program(program: &str) -> Result<PathBuf, ScriptError> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return if path.exists() {
            // Relative to haldir's directory now, not to the script's cwd (`/`).
            Ok(std::path::absolute(&path).unwrap_or(path))
        } else {
            Err(ScriptError::NotFound(path))
        };
    }
    let path_var =
        std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path_var)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| ScriptError::NotFound(PathBuf::from(program)))
}

/// Whether `user` may execute `path`, from the mode bits (root: any x bit).
pub fn check_executable(path: &Path, user: &ScriptUser) -> Result<(), ScriptError> {
    let meta = std::fs::metadata(path).map_err(|_| ScriptError::NotFound(path.to_path_buf()))?;
    if !meta.is_file() {
        return Err(ScriptError::NotAFile(path.to_path_buf()));
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
        Err(ScriptError::NotExecutable {
            path: path.to_path_buf(),
            user: user.name.clone(),
            uid: user.uid,
        })
    }
}

/// Whether the script runs with root's uid or gid: as a root or gid-0 script user, or as a
/// set-uid/set-gid root file (keepalived checks the same cases even without
/// `enable_script_security`; haldir refuses them when insecure).
pub fn runs_as_root(program: &Path, user: &ScriptUser) -> bool {
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

/// A script that may run: its program's full path and the account it runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VettedScript {
    /// The program, resolved like execvp (a name without `/` is looked up on `PATH`).
    pub program: PathBuf,
    /// The account.
    pub user: ScriptUser,
}

/// Checks that `argv` can run as `user` / `group`: the account exists, the program exists,
/// is a regular file and is executable by it; with `security` (`enable_script_security`),
/// or when the script would run as root, its path must be changeable by root only.
pub fn vet(
    argv: &[String],
    user: Option<&str>,
    group: Option<&str>,
    security: bool,
) -> Result<VettedScript, ScriptError> {
    let user = ScriptUser::resolve(user, group)?;
    let program = argv.first().ok_or(ScriptError::EmptyCommand)?;
    let program = resolve_program(program)?;
    check_executable(&program, &user)?;
    let as_root = runs_as_root(&program, &user);
    if security || as_root {
        path_security::check(&program).map_err(|error| ScriptError::Insecure {
            path: program.clone(),
            as_root,
            error: Box::new(error),
        })?;
    }
    Ok(VettedScript { program, user })
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_line_that_starts_with_shell_syntax_runs_in_the_shell_and_others_are_words() {
        assert_eq!(
            command_argv("</dev/tcp/127.0.0.1/6443").unwrap(),
            ["/bin/sh", "-c", "</dev/tcp/127.0.0.1/6443"]
        );
        assert_eq!(command_argv("$CHECK --x").unwrap()[0], "/bin/sh");
        assert_eq!(
            command_argv("/usr/bin/killall -0 haproxy").unwrap(),
            ["/usr/bin/killall", "-0", "haproxy"]
        );
        // A later word with shell characters is only an argument, as keepalived execs it.
        assert_eq!(command_argv("pidof a|b").unwrap(), ["pidof", "a|b"]);
        assert_eq!(
            with_args(
                command_argv("</dev/tcp/h/1").unwrap(),
                &["it's".into(), "VI_1".into()]
            ),
            ["/bin/sh", "-c", "</dev/tcp/h/1 'it'\\''s' 'VI_1'"]
        );
        assert_eq!(
            with_args(vec!["/n".into()], &["INSTANCE".into()]),
            ["/n", "INSTANCE"]
        );
    }

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
            ScriptError::EmptyCommand
        );
        assert!(matches!(
            split_command_line("/x 'open").unwrap_err(),
            ScriptError::Unbalanced(_)
        ));
        assert!(matches!(
            split_command_line("/x \\").unwrap_err(),
            ScriptError::Unbalanced(_)
        ));
    }

    #[test]
    fn default_script_user_is_unprivileged() {
        let user = ScriptUser::resolve(None, None).unwrap();
        assert_ne!(user.uid, 0);
        assert!(user.name == "keepalived_script" || user.name == "nobody");
        assert_eq!(
            ScriptUser::resolve(Some("no-such-user-haldir"), None).unwrap_err(),
            ScriptError::UnknownUser("no-such-user-haldir".into())
        );
    }
}
