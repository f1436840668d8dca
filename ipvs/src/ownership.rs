//! Which IPVS services haldir owns, kept across crashes.
//!
//! haldir adopts the kernel's table at start and never flushes it, so a restart does not
//! disturb established connections. A service is *owned* while the configuration names it;
//! when a reload drops it, the running process deletes it because it remembers owning it.
//! A process killed (kill -9, OOM, power loss of the daemon but not the kernel) in the
//! middle of such a change would leave the dropped services behind for ever: the restarted
//! process sees them as foreign and, rightly, leaves foreign services alone.
//!
//! So the owned set is written to a small file before any operation that could create an
//! owned service, and after deletions. The file lives under `/run/haldir/` (tmpfs: gone at
//! reboot, together with the kernel table it describes) and is keyed by the network
//! namespace's cookie (`SO_NETNS_COOKIE`, Linux 5.14+), because the IPVS table is per
//! namespace. Not by the namespace's inode: inodes are reused once a namespace is gone,
//! and a stale file must never make haldir delete another namespace's services; a cookie
//! is never reused within a boot. One line per service, in a form close to `ipvsadm -Ln`:
//!
//! ```text
//! TCP 192.0.2.10 80
//! UDP 2001:db8::1 53
//! FWM 1 IPv4
//! ```
//!
//! A file that cannot be read or written is logged and haldir runs on without it (the
//! only loss is the clean-up after a crash).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};

use crate::model::{AddressFamily, Protocol, ServiceKey};

/// The directory of the ownership files.
pub const STATE_DIR: &str = "/run/haldir";

/// `SO_NETNS_COOKIE` (include/uapi/asm-generic/socket.h; x86 and arm use the generic
/// value).
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The cookie of the calling thread's network namespace: unique within a boot.
pub fn netns_cookie() -> std::io::Result<u64> {
    // Any socket carries its namespace; an unbound unix one needs no address (a fresh
    // namespace's loopback may still be down).
    let socket = std::os::unix::net::UnixDatagram::unbound()?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cookie)
}

/// The ownership file for the calling thread's network namespace, or `None` (logged) if
/// the namespace cannot be identified. Only for the daemon known by the default control
/// socket; see [`path_for`].
pub fn default_path() -> Option<PathBuf> {
    path_for(None)
}

/// The ownership file of one daemon: keyed by the network namespace (the IPVS table is
/// per namespace) and by `identity`, what tells this daemon from another one in the same
/// namespace (its control socket path). Two haldir in one namespace thus never read each
/// other's owned set, so neither deletes the other's services after a restart. `None`:
/// the daemon on the default control socket, whose file keeps the name it had before
/// identities existed. `None` (logged) if the namespace cannot be identified.
pub fn path_for(identity: Option<&str>) -> Option<PathBuf> {
    let suffix = identity.map_or(String::new(), |identity| {
        format!("-{:016x}", fnv1a(identity.as_bytes()))
    });
    match netns_cookie() {
        Ok(cookie) => Some(Path::new(STATE_DIR).join(format!("ipvs-owned-netns-{cookie}{suffix}"))),
        Err(e) => {
            tracing::warn!(
                "cannot identify the network namespace ({e}); services a crashed run \
                 dropped from the configuration will not be cleaned up"
            );
            None
        }
    }
}

/// 64-bit FNV-1a: a hash that stays the same across builds and Rust versions (the
/// standard library's does not promise that), so a file name survives an upgrade.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// One line of the file (without its newline), onto the end of `text`: a file of 10,000
/// keys is one buffer, not a string per key.
fn write_key(text: &mut String, key: &ServiceKey) {
    use std::fmt::Write as _;
    let _ = match key {
        ServiceKey::Address {
            protocol,
            addr,
            port,
        } => write!(text, "{protocol} {addr} {port}"),
        ServiceKey::Fwmark { family, mark } => write!(text, "FWM {mark} {family}"),
    };
}

/// Reads one line back; `None` for anything malformed.
pub fn parse_key(line: &str) -> Option<ServiceKey> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    match fields.as_slice() {
        ["FWM", mark, family] => {
            let family = match *family {
                "IPv4" => AddressFamily::Ipv4,
                "IPv6" => AddressFamily::Ipv6,
                _ => return None,
            };
            let mark: u32 = mark.parse().ok()?;
            (mark != 0).then_some(ServiceKey::Fwmark { family, mark })
        }
        [protocol, addr, port] => {
            let protocol = match *protocol {
                "TCP" => Protocol::Tcp,
                "UDP" => Protocol::Udp,
                "SCTP" => Protocol::Sctp,
                _ => return None,
            };
            Some(ServiceKey::Address {
                protocol,
                addr: addr.parse::<IpAddr>().ok()?,
                port: port.parse().ok()?,
            })
        }
        _ => None,
    }
}

/// The owned set a previous run left in `path`: empty if there is no file. Malformed lines
/// are skipped and counted in the second value.
pub fn load(path: &Path) -> std::io::Result<(BTreeSet<ServiceKey>, usize)> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(e),
    };
    let mut owned = BTreeSet::new();
    let mut malformed = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match parse_key(line) {
            Some(key) => {
                owned.insert(key);
            }
            None => malformed += 1,
        }
    }
    Ok((owned, malformed))
}

/// Replaces `path` with `owned`, atomically (write a temporary file, fsync, rename).
/// The directory is created 0700 (and set to 0700 when it exists); the temporary is
/// created 0600 with `O_EXCL | O_NOFOLLOW`, so a link planted at its name is never
/// followed (a stale one, from a crash, is unlinked first: unlinking a symlink removes
/// the link itself).
pub fn save(path: &Path, owned: &BTreeSet<ServiceKey>) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let temporary = path.with_extension("tmp");
    match std::fs::remove_file(&temporary) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&temporary)?;
    // About 24 bytes a line.
    let mut text = String::with_capacity(owned.len() * 24);
    for key in owned {
        write_key(&mut text, key);
        text.push('\n');
    }
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// Keeps the file equal to an owned set, writing only when the set changed.
pub struct OwnershipFile {
    path: Option<PathBuf>,
    written: BTreeSet<ServiceKey>,
    failed_once: bool,
}

impl OwnershipFile {
    /// Opens `path` (no file: nothing owned yet) and returns the set it holds.
    pub fn open(path: Option<PathBuf>) -> (OwnershipFile, BTreeSet<ServiceKey>) {
        let mut loaded = BTreeSet::new();
        if let Some(path) = &path {
            match load(path) {
                Ok((owned, malformed)) => {
                    if malformed > 0 {
                        tracing::warn!(
                            file = %path.display(),
                            malformed,
                            "IPVS ownership file: malformed lines skipped"
                        );
                    }
                    loaded = owned;
                }
                Err(e) => tracing::warn!(
                    file = %path.display(),
                    "IPVS ownership file unreadable ({e}): services a crashed run dropped \
                     from the configuration will not be cleaned up"
                ),
            }
        }
        let file = OwnershipFile {
            path,
            written: loaded.clone(),
            failed_once: false,
        };
        (file, loaded)
    }

    /// Writes `owned` if it differs from what the file holds.
    pub fn update(&mut self, owned: &BTreeSet<ServiceKey>) {
        let Some(path) = &self.path else { return };
        if *owned == self.written {
            return;
        }
        match save(path, owned) {
            Ok(()) => self.written = owned.clone(),
            Err(e) if !self.failed_once => {
                self.failed_once = true;
                tracing::warn!(
                    file = %path.display(),
                    "cannot write the IPVS ownership file ({e}); after a crash, services \
                     dropped from the configuration may be left in the kernel"
                );
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> BTreeSet<ServiceKey> {
        [
            ServiceKey::Address {
                protocol: Protocol::Tcp,
                addr: "192.0.2.10".parse().unwrap(),
                port: 80,
            },
            ServiceKey::Address {
                protocol: Protocol::Udp,
                addr: "2001:db8::1".parse().unwrap(),
                port: 53,
            },
            ServiceKey::Address {
                protocol: Protocol::Sctp,
                addr: "192.0.2.11".parse().unwrap(),
                port: 0,
            },
            ServiceKey::Fwmark {
                family: AddressFamily::Ipv6,
                mark: 7,
            },
        ]
        .into()
    }

    #[test]
    fn every_kind_of_key_survives_a_write_and_a_read() {
        let dir = scratch_dir("roundtrip");
        let path = dir.join("sub").join("owned");
        save(&path, &keys()).unwrap();
        let (loaded, malformed) = load(&path).unwrap();
        assert_eq!(loaded, keys());
        assert_eq!(malformed, 0);
    }

    #[test]
    fn a_missing_file_owns_nothing_and_garbage_lines_are_counted() {
        let dir = scratch_dir("garbage");
        let path = dir.join("owned");
        assert_eq!(load(&path).unwrap(), (BTreeSet::new(), 0));
        std::fs::write(
            &path,
            "TCP 192.0.2.10 80\nTCP nonsense\nFWM 0 IPv4\n\u{0}\n",
        )
        .unwrap();
        let (loaded, malformed) = load(&path).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(malformed, 3);
    }

    #[test]
    fn the_file_is_rewritten_only_when_the_set_changes() {
        let dir = scratch_dir("rewrite");
        let path = dir.join("owned");
        let (mut file, loaded) = OwnershipFile::open(Some(path.clone()));
        assert!(loaded.is_empty());
        file.update(&keys());
        assert_eq!(load(&path).unwrap().0, keys());
        std::fs::remove_file(&path).unwrap();
        file.update(&keys());
        assert!(!path.exists(), "an unchanged set must not be written again");
        let mut fewer = keys();
        fewer.pop_first();
        file.update(&fewer);
        assert_eq!(load(&path).unwrap().0, fewer);
    }

    #[test]
    fn two_identities_in_one_namespace_get_two_files() {
        let ours = path_for(Some("/run/haldir/a.sock")).unwrap();
        let theirs = path_for(Some("/run/haldir/b.sock")).unwrap();
        assert_ne!(ours, theirs);
        assert_ne!(ours, default_path().unwrap());
        assert_eq!(ours, path_for(Some("/run/haldir/a.sock")).unwrap());
    }

    #[test]
    fn a_symlink_planted_at_the_temporary_is_not_followed() {
        let dir = scratch_dir("planted");
        let path = dir.join("owned");
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        std::os::unix::fs::symlink(&victim, path.with_extension("tmp")).unwrap();
        save(&path, &keys()).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        assert_eq!(load(&path).unwrap().0, keys());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
    }

    #[test]
    fn the_namespace_cookie_is_stable_within_a_namespace() {
        let first = netns_cookie().unwrap();
        assert_eq!(netns_cookie().unwrap(), first);
        assert_ne!(first, 0);
    }

    /// A fresh directory under the system's temporary directory.
    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "haldir-ipvs-ownership-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
