//! Whether anyone but root can change a file haldir runs or reads its configuration from:
//! the check behind keepalived's `enable_script_security`.
//!
//! A file is secure when neither it nor any directory on its path can be modified or
//! replaced by a user other than root. For every component, from `/` down to the file
//! itself (not following a final symlink), and again for the fully resolved path:
//!
//! * the owner must be root (uid 0): an owner can always chmod;
//! * a regular file, or a directory WITHOUT the sticky bit, must not be writable by a group
//!   other than root's (gid 0), nor by everyone;
//! * a directory WITH the sticky bit (`/tmp`, mode 1777) may be world-writable: others can
//!   create entries there but cannot rename or remove root's (as keepalived decides);
//! * a symlink's own mode means nothing; its owner must still be root, and where it leads
//!   is covered by the walk of the resolved path.
//!
//! Relative paths are made absolute against the current directory first, so its
//! ancestors are checked too.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};

/// Who besides root can change a path component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writer {
    /// The component is owned by this (non-root) user.
    Owner {
        /// uid.
        uid: u32,
        /// Name, if the account exists.
        name: Option<String>,
    },
    /// Writable by this (non-root) group.
    Group {
        /// gid.
        gid: u32,
        /// Name, if the group exists.
        name: Option<String>,
        /// The permission bits.
        mode: u32,
    },
    /// Writable by every user.
    Everyone {
        /// The permission bits.
        mode: u32,
    },
}

impl fmt::Display for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Writer::Owner { uid, name } => {
                write!(f, "is owned by uid {uid}")?;
                if let Some(name) = name {
                    write!(f, " ({name})")?;
                }
                write!(f, ", who can change it")
            }
            Writer::Group { gid, name, mode } => {
                write!(f, "is writable by group {gid}")?;
                if let Some(name) = name {
                    write!(f, " ({name})")?;
                }
                write!(f, " (mode {mode:04o})")
            }
            Writer::Everyone { mode } => write!(f, "is writable by everyone (mode {mode:04o})"),
        }
    }
}

/// Why a path is not secure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathSecurityError {
    /// A component can be changed by someone other than root.
    #[error("{component} {writer}{hint}", component = .component.display(), hint = hint(.component, .writer, *.directory_without_sticky))]
    Insecure {
        /// The file that was checked.
        path: PathBuf,
        /// The component at fault (`path` itself or one of its directories).
        component: PathBuf,
        /// Who can write it.
        writer: Writer,
        /// The component is a directory without the sticky bit.
        directory_without_sticky: bool,
    },
    /// A component could not be examined.
    #[error("cannot examine {component}: {error}", component = .component.display())]
    Unreadable {
        /// The file that was checked.
        path: PathBuf,
        /// The component that could not be examined.
        component: PathBuf,
        /// The error.
        error: String,
    },
}

fn hint(component: &Path, writer: &Writer, directory_without_sticky: bool) -> String {
    let what = if directory_without_sticky {
        " (a directory without the sticky bit)"
    } else {
        ""
    };
    let fix = match writer {
        Writer::Owner { .. } => format!("chown root {}", component.display()),
        Writer::Group { .. } => format!("chmod g-w {}", component.display()),
        Writer::Everyone { .. } => format!("chmod o-w {}", component.display()),
    };
    format!("{what}; only root may be able to change it: {fix}")
}

/// Checks `path` and, if it differs, its resolved form (see the module doc).
pub fn check(path: &Path) -> Result<(), PathSecurityError> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    walk(path, &absolute)?;
    match absolute.canonicalize() {
        Ok(resolved) if resolved != absolute => walk(path, &resolved),
        Ok(_) => Ok(()),
        Err(e) => Err(PathSecurityError::Unreadable {
            path: path.to_path_buf(),
            component: absolute,
            error: e.to_string(),
        }),
    }
}

/// Checks every prefix of the absolute path `walked`, `/` first.
fn walk(path: &Path, walked: &Path) -> Result<(), PathSecurityError> {
    let mut prefix = PathBuf::new();
    for component in walked.components() {
        match component {
            Component::RootDir | Component::Normal(_) => prefix.push(component),
            // `..` textually (as the kernel walks it after the symlinks before it; the
            // resolved walk covers where they lead).
            Component::ParentDir => {
                prefix.pop();
                continue;
            }
            Component::CurDir | Component::Prefix(_) => continue,
        }
        let meta =
            std::fs::symlink_metadata(&prefix).map_err(|e| PathSecurityError::Unreadable {
                path: path.to_path_buf(),
                component: prefix.clone(),
                error: e.to_string(),
            })?;
        if let Some((writer, directory_without_sticky)) = writer(&meta) {
            return Err(PathSecurityError::Insecure {
                path: path.to_path_buf(),
                component: prefix,
                writer,
                directory_without_sticky,
            });
        }
    }
    Ok(())
}

/// Who other than root can change an entry with this metadata (and whether it is a
/// directory without the sticky bit), or `None`.
fn writer(meta: &std::fs::Metadata) -> Option<(Writer, bool)> {
    let mode = meta.mode() & 0o7777;
    if meta.uid() != 0 {
        return Some((
            Writer::Owner {
                uid: meta.uid(),
                name: User::from_uid(Uid::from_raw(meta.uid()))
                    .ok()
                    .flatten()
                    .map(|u| u.name),
            },
            false,
        ));
    }
    let file_type = meta.file_type();
    if file_type.is_symlink() {
        return None;
    }
    let directory_without_sticky = file_type.is_dir() && mode & 0o1000 == 0;
    // A sticky directory only lets others add entries, never replace root's; devices,
    // FIFOs and sockets are not judged here (the callers insist on a regular file).
    if !(directory_without_sticky || file_type.is_file()) {
        return None;
    }
    if mode & 0o002 != 0 {
        return Some((Writer::Everyone { mode }, directory_without_sticky));
    }
    if meta.gid() != 0 && mode & 0o020 != 0 {
        return Some((
            Writer::Group {
                gid: meta.gid(),
                name: Group::from_gid(Gid::from_raw(meta.gid()))
                    .ok()
                    .flatten()
                    .map(|g| g.name),
                mode,
            },
            directory_without_sticky,
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// A root-owned scratch directory under a root-owned, sticky or 0755 parent.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("haldir-pathsec-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn file(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn system_binaries_are_secure() {
        check(Path::new("/bin/sh")).unwrap();
        check(Path::new("/")).unwrap();
    }

    #[test]
    fn world_writable_file_and_non_sticky_directory_are_refused_sticky_is_not() {
        if !is_root() {
            eprintln!("SKIPPED: needs root to own the scratch files");
            return;
        }
        let scratch = Scratch::new("modes");
        let good = file(&scratch.0, "good.sh", 0o755);
        check(&good).unwrap();

        let open = file(&scratch.0, "open.sh", 0o757);
        let err = check(&open).unwrap_err();
        assert!(
            matches!(&err, PathSecurityError::Insecure { component, writer: Writer::Everyone { mode: 0o757 }, .. } if component == &open),
            "{err}"
        );
        assert!(err.to_string().contains("chmod o-w"), "{err}");

        let loose = scratch.0.join("loose");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o777)).unwrap();
        let inside = file(&loose, "x.sh", 0o755);
        let err = check(&inside).unwrap_err();
        assert!(
            matches!(&err, PathSecurityError::Insecure { component, directory_without_sticky: true, .. } if component == &loose),
            "{err}"
        );
        assert!(err.to_string().contains("without the sticky bit"), "{err}");

        let sticky = scratch.0.join("sticky");
        std::fs::create_dir(&sticky).unwrap();
        std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).unwrap();
        check(&file(&sticky, "x.sh", 0o755)).unwrap();

        // Group-writable with a non-root group; the same with root's group is fine.
        let grouped = file(&scratch.0, "grouped.sh", 0o775);
        check(&grouped).unwrap();
        nix::unistd::chown(&grouped, None, Some(Gid::from_raw(65534))).unwrap();
        let err = check(&grouped).unwrap_err();
        assert!(
            matches!(
                &err,
                PathSecurityError::Insecure {
                    writer: Writer::Group { gid: 65534, .. },
                    ..
                }
            ),
            "{err}"
        );

        // Not owned by root.
        let owned = file(&scratch.0, "owned.sh", 0o755);
        nix::unistd::chown(&owned, Some(Uid::from_raw(65534)), None).unwrap();
        assert!(matches!(
            check(&owned).unwrap_err(),
            PathSecurityError::Insecure {
                writer: Writer::Owner { uid: 65534, .. },
                ..
            }
        ));
    }

    #[test]
    fn a_symlink_is_judged_by_where_it_leads() {
        if !is_root() {
            eprintln!("SKIPPED: needs root to own the scratch files");
            return;
        }
        let scratch = Scratch::new("link");
        let loose = scratch.0.join("loose");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o777)).unwrap();
        let target = file(&loose, "x.sh", 0o755);
        let link = scratch.0.join("link.sh");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = check(&link).unwrap_err();
        assert!(
            matches!(&err, PathSecurityError::Insecure { component, .. } if component == &loose),
            "{err}"
        );
    }
}
