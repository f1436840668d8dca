//! `haldir realserver check|setup VIP...`: reads and changes this host (`/proc/sys`, `ip`)
//! for the decision in [`haldir_director::realserver`] (what a direct-routing real server
//! needs, and why).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
pub use haldir_director::realserver::{
    host_prefix, notes, parse_ip_addr_lines, problems, Observed, Problem, ARP_ANNOUNCE_NEEDED,
    ARP_IGNORE_NEEDED,
};

fn read_sysctl(name: &str) -> Result<u8> {
    let path = Path::new("/proc/sys").join(name.replace('.', "/"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("parsing {}: {text:?}", path.display()))
}

fn write_sysctl(name: &str, value: u8) -> Result<()> {
    let path = Path::new("/proc/sys").join(name.replace('.', "/"));
    std::fs::write(&path, format!("{value}\n"))
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads this host's state (its network namespace's `/proc/sys` and `lo`).
pub fn observe() -> Result<Observed> {
    let output = Command::new("ip")
        .args(["-o", "addr", "show", "dev", "lo"])
        .output()
        .context("running ip -o addr show dev lo")?;
    if !output.status.success() {
        bail!(
            "ip -o addr show dev lo: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(Observed {
        loopback_addresses: parse_ip_addr_lines(&String::from_utf8_lossy(&output.stdout)),
        arp_ignore_all: read_sysctl("net.ipv4.conf.all.arp_ignore")?,
        arp_announce_all: read_sysctl("net.ipv4.conf.all.arp_announce")?,
        rp_filter_all: read_sysctl("net.ipv4.conf.all.rp_filter").unwrap_or(0),
    })
}

/// Fixes each problem: adds missing VIPs to `lo` and raises the ARP sysctls (runtime only;
/// `docs/deployment.md` shows the sysctl.d file that keeps them across boots).
pub fn setup(found: &[Problem]) -> Result<()> {
    for problem in found {
        match problem {
            Problem::VipMissing(vip) => {
                let with_prefix = format!("{vip}/{}", host_prefix(*vip));
                let status = Command::new("ip")
                    .args(["addr", "add", &with_prefix, "dev", "lo"])
                    .status()
                    .context("running ip addr add")?;
                if !status.success() {
                    bail!("ip addr add {with_prefix} dev lo failed");
                }
            }
            Problem::VipWrongPrefix(vip, prefix) => {
                bail!("VIP {vip} is on lo as /{prefix}: remove it first (ip addr del {vip}/{prefix} dev lo)")
            }
            Problem::ArpIgnore(_) => {
                write_sysctl("net.ipv4.conf.all.arp_ignore", ARP_IGNORE_NEEDED)?
            }
            Problem::ArpAnnounce(_) => {
                write_sysctl("net.ipv4.conf.all.arp_announce", ARP_ANNOUNCE_NEEDED)?
            }
        }
    }
    Ok(())
}
